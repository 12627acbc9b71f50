/**
 * A real PostgreSQL server for a test, from Debian's `postgresql` package, in a temporary directory of its own:
 *   1. a directory under the system temp dir, owned by the `postgres` user (the server refuses to run as
 *      root; initdb, pg_ctl and psql run through `runuser -u postgres --`);
 *   2. initdb with trust authentication for a superuser `weft`, the C locale, UTF-8, fsync off (a test
 *      server: speed over durability);
 *   3. pg_ctl start on 127.0.0.1 at a free port and a Unix socket in that directory (nothing else on the
 *      machine is touched, so several test processes can each run one);
 *   4. `stop()` stops it (immediate mode) and removes the directory, also after a failure; a process exit
 *      handler does the same for a test that never reached its cleanup.
 * Needs root (for runuser). Later tests use it through `startPostgres()`.
 */
import { spawn } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export const PG_BIN = '/usr/lib/postgresql/15/bin';
const USER = 'postgres';
const SUPERUSER = 'weft';
/** Bounds on every step, so a broken server fails the test rather than hanging it. */
const STEP_TIMEOUT_MS = 60_000;

export interface PostgresServer {
  /** The temporary directory (data directory, socket, log). */
  readonly dir: string;
  readonly port: number;
  /** postgres://weft@127.0.0.1:PORT/DB (DB defaults to "postgres"). */
  url(database?: string): string;
  /** Creates an empty database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  dropDatabase(name: string): Promise<void>;
  /** Stops the server (fast mode), leaving its data. */
  halt(): Promise<void>;
  /** Starts a halted server again, same port and data. */
  resume(): Promise<void>;
  /** pg_ctl restart (fast mode). */
  restart(): Promise<void>;
  /** The server's log so far (for failure messages). */
  log(): string;
  /** Stops the server and removes everything; safe to call twice. */
  stop(): Promise<void>;
}

export function canRunPostgres(): { ok: true } | { ok: false; reason: string } {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'needs root (runuser to the postgres user)' };
  try {
    readFileSync(join(PG_BIN, 'initdb'));
  } catch {
    return { ok: false, reason: `PostgreSQL 15 is not installed (${PG_BIN}; Debian package postgresql)` };
  }
  return { ok: true };
}

/** Runs a command as the postgres user; rejects with its output when it fails or overruns. */
function runAsPostgres(args: readonly string[], timeoutMs = STEP_TIMEOUT_MS): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('runuser', ['-u', USER, '--', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${out}`));
    });
  });
}

/** A TCP port free on 127.0.0.1 at the moment of asking. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

const running = new Set<PostgresServer>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const server of running) {
      // Synchronous last resort: SIGQUIT is PostgreSQL's immediate shutdown.
      try {
        const pid = Number(readFileSync(join(server.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
        if (Number.isInteger(pid) && pid > 0) process.kill(pid, 'SIGQUIT');
      } catch {
        // not running
      }
      rmSync(server.dir, { recursive: true, force: true });
    }
  });
}

export async function startPostgres(): Promise<PostgresServer> {
  const can = canRunPostgres();
  if (!can.ok) throw new Error(`cannot start PostgreSQL: ${can.reason}`);
  const dir = mkdtempSync(join(tmpdir(), 'weft-pg-'));
  const data = join(dir, 'data');
  const socketDir = join(dir, 'socket');
  const logFile = join(dir, 'server.log');
  let started = false;
  let port = 0;
  try {
    const { uid, gid } = postgresIds();
    mkdirSync(socketDir);
    chownSync(dir, uid, gid);
    chownSync(socketDir, uid, gid);
    await runAsPostgres([
      join(PG_BIN, 'initdb'),
      '-D',
      data,
      '-U',
      SUPERUSER,
      '--auth=trust',
      '--locale=C',
      '--encoding=UTF8',
      '--no-sync',
    ]);
    const pgCtl = (...args: string[]): Promise<string> =>
      runAsPostgres([
        join(PG_BIN, 'pg_ctl'),
        '-D',
        data,
        '-l',
        logFile,
        '-w',
        '-t',
        '60',
        '-o',
        `-p ${port} -k ${socketDir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off ` +
          '-c full_page_writes=off -c max_connections=200',
        ...args,
      ]);
    // The port is free when chosen; another process may take it before the server binds: try again then.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        await pgCtl('start');
        break;
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }
    started = true;

    const admin = async <T>(fn: (client: pg.Client) => Promise<T>): Promise<T> => {
      const client = new pg.Client({ connectionString: server.url(), connectionTimeoutMillis: 10_000 });
      await client.connect();
      try {
        return await fn(client);
      } finally {
        await client.end();
      }
    };
    let stopped = false;
    const server: PostgresServer = {
      dir,
      port,
      url: (database = 'postgres') => `postgres://${SUPERUSER}@127.0.0.1:${port}/${database}`,
      createDatabase: async (name) => {
        await admin((c) => c.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`));
        return server.url(name);
      },
      dropDatabase: async (name) => {
        await admin((c) => c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`));
      },
      halt: async () => {
        await pgCtl('stop', '-m', 'fast');
      },
      resume: async () => {
        await pgCtl('start');
      },
      restart: async () => {
        await pgCtl('restart', '-m', 'fast');
      },
      log: () => {
        try {
          return readFileSync(logFile, 'utf8');
        } catch {
          return '';
        }
      },
      stop: async () => {
        if (stopped) return;
        stopped = true;
        running.delete(server);
        try {
          await pgCtl('stop', '-m', 'immediate');
        } catch {
          // already stopped (a test that halted it)
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    };
    installExitHook();
    running.add(server);
    return server;
  } catch (err) {
    if (started) {
      await runAsPostgres([join(PG_BIN, 'pg_ctl'), '-D', data, '-m', 'immediate', 'stop']).catch(() => {});
    }
    let log = '';
    try {
      log = readFileSync(logFile, 'utf8');
    } catch {
      // no log yet
    }
    rmSync(dir, { recursive: true, force: true });
    throw new Error(
      `could not start PostgreSQL: ${err instanceof Error ? err.message : String(err)}\n${log}`,
    );
  }
}

function postgresIds(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${USER}:`));
  const fields = line?.split(':');
  const uid = Number(fields?.[2]);
  const gid = Number(fields?.[3]);
  if (!Number.isInteger(uid) || !Number.isInteger(gid))
    throw new Error(`there is no ${USER} user (it comes with Debian's postgresql package)`);
  return { uid, gid };
}
