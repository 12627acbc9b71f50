#!/usr/bin/env node
/**
 * The people VPN at scale on PostgreSQL (issue 14, run by `npm run bench:people` after the SQLite part; needs
 * root and Debian's postgresql package, else it says why and exits 0):
 *
 *   1. PostgreSQL 15 in a temporary directory (test/interop/postgres-harness.ts); three namespaces, one
 *      `weft server run` gateway in each (A made the store with `server init --store URL`, B and C registered
 *      with `gateway join`), all following the store's change feed; the database is reached through its Unix
 *      socket, so the gateways' namespaces need no network to it.
 *   2. BENCH_MEMBERS (10,000) members created through A's REST API in one POST /apply (in three groups, as the
 *      SQLite part does), then BENCH_ADDS (200) more one at a time (POST /members, one request after the
 *      other, from a client in A's namespace): members added per second both ways, and each single add's
 *      latency with 10,000 present.
 *   3. One change made visible on every gateway: a member disabled through A, waited for in each gateway's
 *      log (each has then applied all the adds before it, in feed order).
 *   4. Propagation latency, as test/interop/scale-out.test.ts measures it: BENCH_CHANGES (50) disable/enable
 *      pairs through C's API, each timed from the request sent to C until B logs it applied; p50 / p99.
 *   5. RSS (VmRSS, and VmHWM) of each gateway with every member installed.
 * Bars: ≤ 200 MB RSS per gateway; p99 ≤ 1 s. Prints a table; writes bench/results/people-pg-<time>.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { interopAvailable, Lab, type ManagedProcess, type Netns } from '../test/interop/harness.js';
import { canRunPostgres, startPostgres, type PostgresServer } from '../test/interop/postgres-harness.js';
import { WEFT_MAIN } from './configurations.js';
import { memoryOf, withDescendants } from './procstat.js';

const MEMBERS = Number(process.env['BENCH_MEMBERS'] ?? 10_000);
const ADDS = Number(process.env['BENCH_ADDS'] ?? 200);
const CHANGES = Number(process.env['BENCH_CHANGES'] ?? 50);
const RSS_LIMIT = 200e6;
const P99_LIMIT_MS = 1000;
/** Bound on the bulk creation (a store far slower than expected ends the run instead of hanging it). */
const APPLY_TIMEOUT_MS = 20 * 60_000;
const API_CLIENT = fileURLToPath(new URL('../test/interop/api-client.js', import.meta.url));
const SUBNET = '10.64.0.0/16';
const KEYS = ['a', 'b', 'c'] as const;
type Key = (typeof KEYS)[number];

interface Reply {
  ev: string;
  id: number;
  status: number;
  body: unknown;
  sentAt: number;
  doneAt: number;
}

function quantile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

/** The times (ms since the epoch) at which the gateway logged `line` (its stderr lines start with ISO time). */
function loggedAt(stderr: string, line: RegExp): number[] {
  const out: number[] = [];
  for (const l of stderr.split('\n')) {
    const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z) (.*)$/.exec(l);
    if (m && line.test(m[2]!)) out.push(Date.parse(m[1]!));
  }
  return out;
}

/**
 * The REST client in a gateway's namespace, kept running; every reply is kept here (the lab's process wrapper
 * keeps only the tail of the output, and 10,000 replies are more than that).
 */
class Api {
  private readonly replies = new Map<number, Reply>();
  private readonly waiters = new Map<number, (r: Reply) => void>();
  private nextId = 0;
  private constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      const r = JSON.parse(line) as Reply;
      if (r.ev !== 'reply') return;
      const waiter = this.waiters.get(r.id);
      if (waiter) {
        this.waiters.delete(r.id);
        waiter(r);
      } else this.replies.set(r.id, r);
    });
  }

  static async start(ns: Netns, token: string): Promise<Api> {
    const child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, API_CLIENT], {
      env: {
        ...process.env,
        WEFT_API: 'http://127.0.0.1:8780/api/v1',
        WEFT_TOKEN: token,
        WEFT_API_TIMEOUT_MS: String(APPLY_TIMEOUT_MS),
      },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.stdout!.once('data', () => resolve());
    });
    return new Api(child);
  }

  send(method: string, path: string, body?: unknown, timeoutMs = 60_000): Promise<Reply> {
    const id = ++this.nextId;
    this.child.stdin!.write(
      `${JSON.stringify({ id, method, path, ...(body === undefined ? {} : { body }) })}\n`,
    );
    const have = this.replies.get(id);
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no reply to ${method} ${path} within ${timeoutMs / 1000} s`)),
        timeoutMs,
      );
      this.waiters.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
  }

  stop(): void {
    this.child.stdin?.end();
    this.child.kill('SIGTERM');
  }
}

/**
 * POST /apply of a large state from A's namespace with node:http (fetch gives up on an answer after 300 s;
 * this waits up to APPLY_TIMEOUT_MS).
 */
async function bulkApply(
  ns: Netns,
  token: string,
  state: unknown,
  file: string,
): Promise<{ status: number; body: string; ms: number }> {
  fs.writeFileSync(file, JSON.stringify(state), { mode: 0o600 });
  const script = `
    import { request } from 'node:http';
    import { readFileSync } from 'node:fs';
    const body = readFileSync(process.argv[1]);
    const t0 = Date.now();
    const req = request('http://127.0.0.1:8780/api/v1/apply', { method: 'POST', headers: {
      authorization: 'Bearer ' + process.env.WEFT_TOKEN, 'content-type': 'application/json',
      'content-length': body.length } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, body: text, ms: Date.now() - t0 })));
    });
    req.on('error', (e) => console.log(JSON.stringify({ status: 0, body: String(e), ms: Date.now() - t0 })));
    req.end(body);`;
  const r = await ns.exec(process.execPath, ['--input-type=module', '-e', script, file], {
    timeoutMs: APPLY_TIMEOUT_MS,
    env: { WEFT_TOKEN: token },
  });
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as {
    status: number;
    body: string;
    ms: number;
  };
}

/** The node process of a gateway (the spawned `ip netns exec` execs node, but look below it too). */
function gatewayMemory(proc: ManagedProcess): { rss: number; peakRss: number } {
  let best = { rss: 0, peakRss: 0 };
  for (const pid of withDescendants([proc.pid])) {
    const m = memoryOf(pid);
    if (m && m.rss > best.rss) best = m;
  }
  return best;
}

async function main(): Promise<number> {
  const pgCan = canRunPostgres();
  const labCan = interopAvailable(['ip']);
  if (!pgCan.ok || !labCan.ok) {
    console.log(`PostgreSQL part skipped: ${pgCan.ok ? '' : pgCan.reason}${labCan.ok ? '' : labCan.reason}`);
    return 0;
  }
  if (!fs.existsSync(WEFT_MAIN)) throw new Error(`${WEFT_MAIN} is missing: build first (npm run build)`);
  const startedAt = new Date();
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  log(`PostgreSQL: ${MEMBERS} members, three gateways, ${CHANGES} timed change pairs`);
  const lab = await Lab.create('people-pg');
  let pgServer: PostgresServer | undefined;
  // The lab reaps its namespaces and processes on a signal; the database is stopped here (its own exit hook
  // does not run when the process ends by a signal).
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
    process.on(signal, () => {
      void (pgServer?.stop() ?? Promise.resolve()).finally(() =>
        process.exit(signal === 'SIGINT' ? 130 : 143),
      );
    });
  const servers: Partial<Record<Key, ManagedProcess>> = {};
  const apis: Api[] = [];
  try {
    pgServer = await startPostgres();
    await pgServer.createDatabase('weft');
    const storeUrl = `postgres://weft@localhost:${pgServer.port}/weft?host=${encodeURIComponent(join(pgServer.dir, 'socket'))}`;
    const ns = {} as Record<Key, Netns>;
    const dirs = {} as Record<Key, string>;
    for (const key of KEYS) {
      ns[key] = await lab.netns(`g${key}`);
      dirs[key] = lab.file(`data-${key}`);
    }
    const cli = (key: Key, args: readonly string[]): Promise<{ stdout: string }> =>
      ns[key].exec(process.execPath, [WEFT_MAIN, ...args], { timeoutMs: 60_000 });
    const init = await cli('a', [
      'server',
      'init',
      '--data',
      dirs.a,
      '--store',
      storeUrl,
      '--endpoint',
      'vpn.example.com:51820',
      '--subnet',
      SUBNET,
      '--default-policy',
      'allow',
    ]);
    const token = /^api token: (\S+)/m.exec(init.stdout)?.[1];
    if (!token) throw new Error(`server init printed no token:\n${init.stdout}`);
    for (const key of ['b', 'c'] as const)
      await cli(key, [
        'gateway',
        'join',
        '--data',
        dirs[key],
        '--store',
        storeUrl,
        '--name',
        `gw-${key}`,
        '--endpoint',
        `vpn-${key}.example.com:51820`,
        '--region',
        'bench',
      ]);
    await Promise.all(
      KEYS.map(async (key) => {
        const ifname = lab.ifname(`pw${key}`);
        lab.registerWgInterface(ifname);
        const proc = ns[key].spawn(process.execPath, [
          WEFT_MAIN,
          'server',
          'run',
          '--data',
          dirs[key],
          '--interface',
          ifname,
        ]);
        servers[key] = proc;
        await proc.waitForOutput(/ready:/, 60_000);
      }),
    );
    const gw = (key: Key): ManagedProcess => {
      const s = servers[key];
      if (!s?.running) throw new Error(`gateway ${key.toUpperCase()} is not running: ${s?.describe() ?? ''}`);
      return s;
    };
    const rssStart = Object.fromEntries(KEYS.map((k) => [k, gatewayMemory(gw(k)).rss]));
    log(
      `  three gateways ready; RSS ${KEYS.map((k) => `${k.toUpperCase()} ${(rssStart[k]! / 1e6).toFixed(0)} MB`).join(', ')}`,
    );
    const apiA = await Api.start(ns.a, token);
    const apiC = await Api.start(ns.c, token);
    apis.push(apiA, apiC);

    // 2. The members: in bulk (one POST /apply), then one request after the other, through A's API.
    const state = {
      groups: ['eng', 'sales', 'ops'],
      routes: ['10.20.0.0/24'],
      policies: [
        { allow: 'eng', to: '10.20.0.0/24' },
        { allow: 'ops', to: 'any' },
        { allow: 'sales', to: 'group:eng:tcp/443' },
      ],
      members: Array.from({ length: MEMBERS }, (_, i) => ({
        name: `m${String(i).padStart(5, '0')}`,
        groups: [['eng', 'sales', 'ops'][i % 3]!],
      })),
    };
    const applied = await bulkApply(ns.a, token, state, lab.file('state.json'));
    if (applied.status !== 200) throw new Error(`apply: ${applied.status} ${applied.body.slice(0, 500)}`);
    const applySeconds = applied.ms / 1000;
    log(`  ${MEMBERS} members created by POST /apply in ${applySeconds.toFixed(1)} s`);
    const addMs: number[] = [];
    const addStarted = performance.now();
    for (let i = 0; i < ADDS; i++) {
      const r = await apiA.send('POST', '/members', { name: `extra${i}`, groups: ['eng'] });
      if (r.status !== 201) throw new Error(`member extra${i}: ${r.status} ${JSON.stringify(r.body)}`);
      addMs.push(r.doneAt - r.sentAt);
    }
    const addSeconds = (performance.now() - addStarted) / 1000;
    log(`  ${ADDS} members added one at a time in ${addSeconds.toFixed(1)} s`);

    // 3. One more change, seen by every gateway: all the adds before it are then applied everywhere.
    const last = 'm00001';
    const lastOff = await apiA.send('POST', `/members/${last}/disable`);
    if (lastOff.status !== 200) throw new Error(`disable ${last}: ${lastOff.status}`);
    const caughtUp: Partial<Record<Key, number>> = {};
    for (const key of KEYS) {
      const deadline = Date.now() + 120_000;
      for (;;) {
        const at = loggedAt(gw(key).stderr, new RegExp(`^member ${last} disabled`)).find(
          (t) => t >= lastOff.sentAt,
        );
        if (at !== undefined) {
          caughtUp[key] = at - lastOff.sentAt;
          break;
        }
        if (Date.now() > deadline)
          throw new Error(`gateway ${key.toUpperCase()} never applied the last change`);
        await delay(20);
      }
    }
    log(`  every gateway holds ${MEMBERS + ADDS} members`);

    // 4. Propagation: changes through C, applied on B.
    const b = gw('b');
    const waitLogged = async (what: RegExp, since: number): Promise<number> => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const at = loggedAt(b.stderr, what).find((ms) => ms >= since);
        if (at !== undefined) return at;
        if (Date.now() > deadline) throw new Error(`B did not log ${what} within 10 s: ${b.describe()}`);
        await delay(5);
      }
    };
    const target = 'm00000';
    const latencies: number[] = [];
    for (let i = 0; i < CHANGES; i++) {
      for (const verb of ['disable', 'enable'] as const) {
        const r = await apiC.send('POST', `/members/${target}/${verb}`);
        if (r.status !== 200) throw new Error(`${verb} ${target} through C: ${r.status}`);
        const pattern =
          verb === 'disable'
            ? new RegExp(`^member ${target} disabled`)
            : new RegExp(`^member ${target} enabled$`);
        latencies.push((await waitLogged(pattern, r.sentAt)) - r.sentAt);
      }
    }

    // 5. Memory with everything installed.
    await delay(1000);
    const memory = Object.fromEntries(KEYS.map((k) => [k, gatewayMemory(gw(k))])) as Record<
      Key,
      { rss: number; peakRss: number }
    >;

    const sortedAdd = [...addMs].sort((x, y) => x - y);
    const sortedLat = [...latencies].sort((x, y) => x - y);
    const p50 = quantile(sortedLat, 50);
    const p99 = quantile(sortedLat, 99);
    const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;
    const rows: [string, string, string, string][] = [
      ...KEYS.map((k): [string, string, string, string] => [
        `gateway ${k.toUpperCase()} RSS (peak)`,
        `${mb(memory[k].rss)} (${mb(memory[k].peakRss)})`,
        `≤ ${RSS_LIMIT / 1e6} MB`,
        memory[k].rss <= RSS_LIMIT ? 'PASS' : 'FAIL',
      ]),
      [
        `change through C -> applied on B, p50 / p99 (${latencies.length} changes)`,
        `${p50} / ${p99} ms (max ${sortedLat.at(-1)})`,
        `p99 ≤ ${P99_LIMIT_MS} ms`,
        p99 <= P99_LIMIT_MS ? 'PASS' : 'FAIL',
      ],
      [
        `members created through A's API in one POST /apply (${MEMBERS})`,
        `${(MEMBERS / applySeconds).toFixed(0)}/s (${applySeconds.toFixed(1)} s)`,
        '—',
        '',
      ],
      [
        `members added one at a time through A's API (${ADDS}, ${MEMBERS} present)`,
        `${(ADDS / addSeconds).toFixed(1)}/s (p50 ${quantile(sortedAdd, 50)} ms, p99 ${quantile(sortedAdd, 99)} ms)`,
        '—',
        '',
      ],
      [
        'a change through A -> applied on A / B / C',
        KEYS.map((k) => `${caughtUp[k]} ms`).join(' / '),
        '—',
        '',
      ],
    ];
    const w = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length), 11));
    console.log(`\nPeople VPN on PostgreSQL: ${MEMBERS} members, three gateways following`);
    console.log(`${'measurement'.padEnd(w[0]!)}  ${'result'.padEnd(w[1]!)}  ${'bar'.padEnd(w[2]!)}`);
    for (const [x, y, z, s] of rows)
      console.log(`${x.padEnd(w[0]!)}  ${y.padEnd(w[1]!)}  ${z.padEnd(w[2]!)}  ${s}`);
    const outDir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
    fs.mkdirSync(outDir, { recursive: true });
    const file = join(outDir, `people-pg-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
    fs.writeFileSync(
      file,
      `${JSON.stringify(
        {
          startedAt: startedAt.toISOString(),
          members: MEMBERS,
          adds: ADDS,
          changes: CHANGES,
          applySeconds,
          appliedPerSecond: MEMBERS / applySeconds,
          addSeconds,
          addsPerSecond: ADDS / addSeconds,
          addMsP50: quantile(sortedAdd, 50),
          addMsP99: quantile(sortedAdd, 99),
          caughtUpMs: caughtUp,
          propagationMs: latencies,
          propagationP50Ms: p50,
          propagationP99Ms: p99,
          rssStart,
          memory,
          limits: { rssBytes: RSS_LIMIT, p99Ms: P99_LIMIT_MS },
        },
        null,
        2,
      )}\n`,
    );
    console.log(`results: ${file}`);
    return 0;
  } finally {
    for (const a of apis) a.stop();
    for (const s of Object.values(servers)) if (s?.running) await s.stop(8_000).catch(() => undefined);
    try {
      await lab.cleanup();
    } finally {
      await pgServer?.stop();
    }
  }
}

process.exitCode = await main();
