/**
 * What the API acknowledged survives kill -9. A child process (api-crash-server.ts) serves the REST API over a
 * SQLite store on a real socket; this test sends it a burst of POST /api/v1/members (first one at a time, then
 * CONCURRENCY in flight), records every member whose 201 it read, SIGKILLs the server as soon as ACKS have
 * been acknowledged (with more requests in flight), then reopens the store and checks that
 *   1. SQLite's integrity check says "ok";
 *   2. every acknowledged member is there, with the address its 201 gave;
 *   3. every stored member (acknowledged or not) has its member.add audit entry with that address, and its
 *      change in the feed: the three are written in one transaction, so none is ever found without the rest.
 * Each of ROUNDS rounds uses a fresh store. Every wait is bounded in time and every loop in count.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ControlPlane } from '../../src/control/control-plane.js';
import { openSqliteStore } from '../../src/control/store-sqlite.js';

const ROUNDS = 3;
/** Acknowledged members before the kill. */
const ACKS = 200;
/** Sent one at a time, each awaited, before the concurrent part of the burst. */
const SEQUENTIAL = 40;
/** Requests in flight during the rest of the burst. */
const CONCURRENCY = 4;
/** Give up on a round that has not reached ACKS by then... */
const BURST_TIMEOUT_MS = 20_000;
/** ...or after this many requests. */
const MAX_REQUESTS = 5_000;
const REQUEST_TIMEOUT_MS = 5_000;
const START_TIMEOUT_MS = 10_000;
const EXIT_TIMEOUT_MS = 5_000;
const SERVER = fileURLToPath(new URL('./api-crash-server.js', import.meta.url));

type Server = ChildProcessByStdio<Writable, Readable, Readable>;

interface Burst {
  /** Name -> the IPv4 address its 201 gave. */
  readonly acked: Map<string, string>;
  readonly sent: number;
  /** Responses other than 201, and failed requests, before the kill. */
  readonly unexpected: string[];
  readonly killed: boolean;
  readonly ms: number;
}

interface Running {
  readonly server: Server;
  readonly port: number;
  /** How the server ended (listened for from the start, so an early end is not missed). */
  readonly exited: Promise<[code: number | null, signal: NodeJS.Signals | null]>;
  readonly stderr: () => string;
}

/** Starts the server on the store; resolves once it listens. */
async function startServer(path: string, token: string): Promise<Running> {
  const server = spawn(process.execPath, [SERVER, path, token], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = once(server, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  let stderr = '';
  server.stderr.setEncoding('utf8');
  server.stderr.on('data', (chunk: string) => (stderr += chunk));
  server.stdout.setEncoding('utf8');
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const finish = (err: Error | null, port?: number): void => {
        clearTimeout(timer);
        server.stdout.off('data', onData);
        server.off('exit', onExit);
        if (err) reject(err);
        else resolve(port ?? 0);
      };
      const onData = (chunk: string): void => {
        out += chunk;
        const end = out.indexOf('\n');
        if (end < 0) return;
        try {
          const { port } = JSON.parse(out.slice(0, end)) as { port: unknown };
          if (typeof port !== 'number' || !Number.isInteger(port) || port <= 0)
            throw new Error(`bad port ${String(port)}`);
          finish(null, port);
        } catch (err) {
          finish(new Error(`server said ${JSON.stringify(out)}: ${String(err)}`));
        }
      };
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void =>
        finish(new Error(`server exited (${code ?? signal}) before listening: ${stderr}`));
      const timer = setTimeout(
        () => finish(new Error(`server did not listen within ${START_TIMEOUT_MS} ms: ${stderr}`)),
        START_TIMEOUT_MS,
      );
      server.stdout.on('data', onData);
      server.on('exit', onExit);
    });
    return { server, port, exited, stderr: () => stderr };
  } catch (err) {
    server.kill('SIGKILL');
    throw err;
  }
}

/** Adds members until ACKS are acknowledged, then SIGKILLs the server, with requests still in flight. */
async function burst(server: Server, port: number, token: string, prefix: string): Promise<Burst> {
  const acked = new Map<string, string>();
  const unexpected: string[] = [];
  const start = Date.now();
  const deadline = start + BURST_TIMEOUT_MS;
  let sent = 0;
  let killed = false;

  const kill = (): void => {
    if (killed) return;
    killed = true;
    server.kill('SIGKILL');
  };

  /** One POST; false when the burst is over for this worker. */
  const addOne = async (): Promise<boolean> => {
    if (killed || sent >= MAX_REQUESTS || Date.now() >= deadline) return false;
    const name = `${prefix}${String(sent++).padStart(5, '0')}`;
    try {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/members`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      const text = await res.text();
      if (res.status !== 201) {
        if (!killed) unexpected.push(`${name}: ${res.status} ${text}`);
        return !killed;
      }
      const body = JSON.parse(text) as { name?: unknown; ip?: unknown };
      assert.equal(body.name, name);
      assert.equal(typeof body.ip, 'string');
      acked.set(name, body.ip as string);
      if (acked.size >= ACKS) kill();
      return !killed;
    } catch (err) {
      // After the kill, requests in flight fail (connection reset); before it, nothing should.
      if (!killed) unexpected.push(`${name}: ${String(err)}`);
      return false;
    }
  };

  const worker = async (limit: number): Promise<void> => {
    for (let i = 0; i < limit && (await addOne()); i++);
  };

  await worker(SEQUENTIAL);
  await Promise.all(Array.from({ length: CONCURRENCY }, () => worker(MAX_REQUESTS)));
  const wasKilled = killed;
  kill();
  return { acked, sent, unexpected, killed: wasKilled, ms: Date.now() - start };
}

test(`kill -9 of the API server loses no acknowledged member (${ROUNDS} rounds)`, async (t) => {
  for (let round = 0; round < ROUNDS; round++) {
    const dir = mkdtempSync(join(tmpdir(), 'weft-api-crash-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'weft.db');

    const setup = openSqliteStore(path);
    let token: string;
    let baseRevision: number;
    try {
      token = ControlPlane.init(setup, {
        endpoint: 'vpn.example.com:51820',
        subnet: '10.88.0.0/16',
      }).apiToken;
      baseRevision = setup.revision();
    } finally {
      setup.close();
    }

    const { server, port, exited, stderr } = await startServer(path, token);
    let result: Burst;
    try {
      result = await burst(server, port, token, `r${round}-`);
    } finally {
      server.kill('SIGKILL');
    }
    let exitTimer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      exitTimer = setTimeout(
        () => reject(new Error('the server did not exit after SIGKILL')),
        EXIT_TIMEOUT_MS,
      );
    });
    const [code, signal] = await Promise.race([exited, timeout]).finally(() => clearTimeout(exitTimer));

    assert.deepEqual(result.unexpected, [], `round ${round}: failures before the kill`);
    assert.ok(
      result.killed,
      `round ${round}: ${result.acked.size} of ${ACKS} acknowledged in ${result.ms} ms (${result.sent} sent)`,
    );
    assert.equal(
      signal,
      'SIGKILL',
      `round ${round}: the server exited on its own (code ${code}): ${stderr()}`,
    );

    const store = openSqliteStore(path);
    try {
      assert.equal(store.integrityCheck(), 'ok', `round ${round}`);
      const lost: string[] = [];
      for (const [name, ip] of result.acked) {
        const member = store.getMember(name);
        if (member === undefined) lost.push(name);
        else assert.equal(member.ip, ip, `round ${round}: ${name}'s address`);
      }
      assert.deepEqual(lost, [], `round ${round}: acknowledged but lost`);

      const stored = store.allMembers();
      assert.ok(stored.length >= result.acked.size);
      assert.ok(stored.length <= result.sent);
      const adds = new Map<string, unknown>();
      for (const entry of store.listAudit({ limit: 2 * MAX_REQUESTS })) {
        if (entry.action === 'member.add') {
          assert.ok(!adds.has(entry.target), `round ${round}: two member.add entries for ${entry.target}`);
          adds.set(entry.target, entry.detail.ip);
        }
      }
      for (const name of result.acked.keys())
        assert.ok(adds.has(name), `round ${round}: ${name} was acknowledged but has no member.add entry`);
      assert.deepEqual(
        new Map(stored.map((m) => [m.name, m.ip])),
        adds,
        `round ${round}: the stored members and the member.add entries (with their addresses) match`,
      );
      assert.equal(
        store.revision(),
        baseRevision + stored.length,
        `round ${round}: one change per stored member, and no more`,
      );
      t.diagnostic(
        `round ${round}: ${result.sent} sent, ${result.acked.size} acknowledged in ${result.ms} ms, ` +
          `${stored.length} stored`,
      );
    } finally {
      store.close();
    }
  }
});
