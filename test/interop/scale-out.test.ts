/**
 * Three gateways on one PostgreSQL database: real `weft server run` processes in namespaces of their own, a
 * real WireGuard member (wg-quick + wireguard-go), PostgreSQL from postgres-harness.ts (its Unix socket is how
 * the namespaces reach it). Steps, in order (a step whose prerequisite failed says so):
 *   1. `server init --store URL` for gateway A (recorded in A's data directory); B joins with `gateway join`
 *      (registered, listed by `gateway list` through A, heartbeating); C names the store with WEFT_STORE; all
 *      three run, each with an interface of its own.
 *   2. A member added through A's REST API, its config fetched through A's API, connects to B (the endpoint
 *      in its config): handshake and ping through B.
 *   3. `disable` through C's API ends the member's session on B: the ping stops; then N disable/enable pairs
 *      through C, each timed from the request sent to C until B logs it applied (p50/p99 printed; bar 1 s).
 *   4. PostgreSQL restarted while the member pings through B every 100 ms: the ping goes on, B logs the store
 *      lost once and back once, and a change made through A after the restart is applied on B exactly once.
 *   4b. /status and /metrics report the store (kind, role, reachable, revision, lag); the member's status,
 *      reported by B, is not overwritten by A or C, which never saw it.
 *   5. SIGTERM: each gateway exits 0.
 *
 * Topology: namespace `m` holds a bridge with the member's underlay address 192.168.71.100/24; gateways A, B,
 * C hang off it at 192.168.71.1, .2, .3 (UDP 51820). Each gateway's API listens on 127.0.0.1:8780 in its own
 * namespace; a small client (api-client.ts) runs in A's and in C's namespace.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join as joinPath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { interopSkip, JsonLinesProcess, Lab, type ManagedProcess, type Netns } from './harness.js';
import { ping, weftCli, WEFT_MAIN, within } from './gateway-lab.js';
import { PEOPLE_TOOLS, wgQuickUp, type WgQuickClient } from './people-lab.js';
import { canRunPostgres, startPostgres, type PostgresServer } from './postgres-harness.js';

const SUBNET = '10.67.0.0/24';
const GATEWAY_IP = '10.67.0.1';
const PORT = 51820;
const UNDERLAY = { a: '192.168.71.1', b: '192.168.71.2', c: '192.168.71.3', member: '192.168.71.100' };
/** Disable/enable pairs timed in step 3. */
const CHANGES = 50;
const API_CLIENT = fileURLToPath(new URL('./api-client.js', import.meta.url));

type GatewayKey = 'a' | 'b' | 'c';
const GATEWAYS: readonly GatewayKey[] = ['a', 'b', 'c'];

interface ApiEvent {
  ev: string;
  id?: number;
  status?: number;
  body?: unknown;
  sentAt?: number;
  doneAt?: number;
}

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`prerequisite missing: ${what} (an earlier step failed)`);
  return value;
}

function percentile(sorted: readonly number[], p: number): number {
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

const pgCan = canRunPostgres();
const skip = interopSkip(PEOPLE_TOOLS) || (pgCan.ok ? false : pgCan.reason);

describe('scale-out: three gateways on one PostgreSQL store', { skip }, () => {
  let lab: Lab;
  let pgServer: PostgresServer | undefined;
  let storeUrl = '';
  let token = '';
  const ns: Partial<Record<GatewayKey | 'm', Netns>> = {};
  const dirs: Record<GatewayKey, string> = { a: '', b: '', c: '' };
  const ifnames: Record<GatewayKey, string> = { a: '', b: '', c: '' };
  const servers: Partial<Record<GatewayKey, ManagedProcess>> = {};
  const api: Partial<Record<'a' | 'c', JsonLinesProcess<ApiEvent>>> = {};
  let member: WgQuickClient | undefined;
  let requests = 0;

  before(async () => {
    assert.ok(fs.existsSync(WEFT_MAIN), `${WEFT_MAIN} is missing: build first (npm run build)`);
    lab = await Lab.create('scale', { tools: PEOPLE_TOOLS });
    pgServer = await startPostgres();
    await pgServer.createDatabase('weft');
    // The Unix socket reaches every namespace (it is a file); the server listens on no shared network.
    storeUrl = `postgres://weft@localhost:${pgServer.port}/weft?host=${encodeURIComponent(joinPath(pgServer.dir, 'socket'))}`;
    const m = await lab.netns('m');
    ns.m = m;
    const bridge = lab.ifname('br');
    await m.exec('ip', ['link', 'add', bridge, 'type', 'bridge']);
    await m.exec('ip', ['link', 'set', bridge, 'up']);
    await m.exec('ip', ['addr', 'add', `${UNDERLAY.member}/24`, 'dev', bridge]);
    for (const key of GATEWAYS) {
      const g = await lab.netns(`g${key}`);
      ns[key] = g;
      const { bIf } = await lab.veth(g, m, {
        aName: `u${key}`,
        bName: `p${key}`,
        aAddr: `${UNDERLAY[key]}/24`,
      });
      await m.exec('ip', ['link', 'set', bIf, 'master', bridge]);
      dirs[key] = lab.file(`data-${key}`);
      ifnames[key] = lab.ifname(`w${key}`);
      lab.registerWgInterface(ifnames[key]);
    }
  });

  after(async () => {
    try {
      for (const p of Object.values(api)) p?.process.kill('SIGTERM');
      for (const s of Object.values(servers)) if (s?.running) await s.stop(8_000).catch(() => undefined);
      await member?.down().catch(() => undefined);
    } finally {
      try {
        await lab?.cleanup();
      } finally {
        await pgServer?.stop();
      }
    }
  });

  const netns = (key: GatewayKey | 'm'): Netns => need(ns[key], `namespace ${key}`);
  const server = (key: GatewayKey): ManagedProcess => {
    const s = need(servers[key], `gateway ${key.toUpperCase()}`);
    if (!s.running) throw new Error(`gateway ${key.toUpperCase()} is no longer running: ${s.describe()}`);
    return s;
  };
  const env = (key: GatewayKey): Record<string, string> =>
    // A and B name the store in their data directories (written by init / gateway join); C by the environment.
    key === 'c' ? { WEFT_STORE: storeUrl } : {};

  /** One API call through gateway `via`'s API; resolves with the reply event. */
  const call = async (via: 'a' | 'c', method: string, path: string, body?: unknown): Promise<ApiEvent> => {
    const client = need(api[via], `the API client of ${via.toUpperCase()}`);
    const id = ++requests;
    client.command({ id, method, path, ...(body === undefined ? {} : { body }) });
    return client.waitFor(`reply ${id} (${method} ${path})`, (e) => e.ev === 'reply' && e.id === id, 15_000);
  };

  it('1. init --store on A; A, B and C run on the same store', async (t) => {
    const init = await weftCli(
      netns('a'),
      [
        'server',
        'init',
        '--data',
        dirs.a,
        '--store',
        storeUrl,
        '--endpoint',
        `${UNDERLAY.b}:${PORT}`,
        '--subnet',
        SUBNET,
        '--default-policy',
        'allow',
      ],
      { timeoutMs: 30_000 },
    );
    token = /^api token: (\S+)/m.exec(init.stdout)?.[1] ?? '';
    assert.ok(token, init.stdout);
    assert.match(init.stdout, /^initialised postgres:\/\/weft@localhost/m);
    const pointer = fs.statSync(joinPath(dirs.a, 'store-url'));
    assert.equal(pointer.mode & 0o777, 0o600, 'store-url is 0600');
    assert.ok(!fs.existsSync(joinPath(dirs.a, 'weft.db')), 'no SQLite store made');

    // B joins as a registered gateway (its own key pair; `server run` then heartbeats it).
    const join = await weftCli(
      netns('b'),
      [
        'gateway',
        'join',
        '--data',
        dirs.b,
        '--store',
        storeUrl,
        '--name',
        'gw-b',
        '--endpoint',
        `${UNDERLAY.b}:${PORT}`,
        '--region',
        'lab',
      ],
      { timeoutMs: 30_000 },
    );
    assert.match(
      join.stdout,
      /^gateway gw-b \(192\.168\.71\.2:51820, lab\) joined postgres:\/\/weft@localhost/m,
    );
    assert.equal(fs.statSync(joinPath(dirs.b, 'gateway-key')).mode & 0o777, 0o600, 'gateway-key is 0600');

    const started = Date.now();
    await Promise.all(
      GATEWAYS.map(async (key) => {
        const proc = netns(key).spawn(
          process.execPath,
          [WEFT_MAIN, 'server', 'run', '--data', dirs[key], '--interface', ifnames[key]],
          { env: env(key) },
        );
        servers[key] = proc;
        await proc.waitForOutput(/ready:/, 30_000);
        await proc.waitForOutput(/store: PostgreSQL/, 2_000);
        assert.match(proc.stderr, /store: PostgreSQL postgres:\/\/weft@localhost.*following its change feed/);
      }),
    );
    t.diagnostic(`three gateways ready after ${Date.now() - started} ms`);
    // The registration, seen from A; B's heartbeat keeps it fresh.
    const list = await weftCli(netns('a'), ['gateway', 'list', '--json', '--data', dirs.a], {
      timeoutMs: 30_000,
    });
    const gateways = JSON.parse(list.stdout) as {
      name: string;
      endpoint: string;
      region: string;
      silentMs: number;
    }[];
    assert.deepEqual(
      gateways.map((g) => [g.name, g.endpoint, g.region]),
      [['gw-b', `${UNDERLAY.b}:${PORT}`, 'lab']],
    );
    assert.ok(gateways[0]!.silentMs < 10_000, list.stdout);
    assert.equal((gateways[0] as { membersOnline?: number | null }).membersOnline, 0, 'nobody online yet');
    for (const via of ['a', 'c'] as const) {
      const p = new JsonLinesProcess<ApiEvent>(
        netns(via).spawn(process.execPath, [API_CLIENT], {
          env: { WEFT_API: 'http://127.0.0.1:8780/api/v1', WEFT_TOKEN: token },
        }),
      );
      await p.next('ready');
      api[via] = p;
    }
  });

  it("2. a member added through A's API connects to B (handshake, ping)", async () => {
    const added = await call('a', 'POST', '/members', { name: 'alice' });
    assert.equal(added.status, 201, JSON.stringify(added));
    await call('a', 'POST', '/members', { name: 'carol' });
    const config = await call('a', 'GET', '/members/alice/config');
    assert.equal(config.status, 200, JSON.stringify(config));
    assert.match(String(config.body), new RegExp(`Endpoint = ${UNDERLAY.b}:${PORT}`));
    member = await wgQuickUp(netns('m'), lab.ifname('ma'), String(config.body));
    const p = await ping(netns('m'), GATEWAY_IP, { count: 3, waitS: 3 });
    assert.equal(p.received, 3, `alice → ${GATEWAY_IP} through B:\n${p.output}\n${server('b').describe()}`);
    await server('b').waitForOutput(/member alice connected/, 8_000);
  });

  it('3. disable through C ends the session on B; N changes timed (p50/p99)', async (t) => {
    const b = server('b');
    need(member, "alice's client");
    // The first disable, checked on the data path: once B has applied it, B no longer answers alice.
    const first = await call('c', 'POST', '/members/alice/disable');
    assert.equal(first.status, 200, JSON.stringify(first));
    await b.waitForOutput(/member alice disabled/, 5_000);
    const cut = await ping(netns('m'), GATEWAY_IP, { count: 3, intervalS: 0.2, waitS: 1 });
    assert.equal(cut.received, 0, `alice still answered after the disable through C:\n${cut.output}`);
    const enable = await call('c', 'POST', '/members/alice/enable');
    assert.equal(enable.status, 200, JSON.stringify(enable));

    const latencies: number[] = [];
    const started = Date.now();
    const waitLogged = async (what: RegExp, since: number): Promise<number> => {
      const deadline = Date.now() + 5_000;
      for (;;) {
        const at = loggedAt(b.stderr, what).find((ms) => ms >= since);
        if (at !== undefined) return at;
        if (Date.now() > deadline) throw new Error(`B did not log ${what} within 5 s: ${b.describe()}`);
        await delay(5);
      }
    };
    await waitLogged(/^member alice enabled$/, enable.sentAt ?? 0);
    for (let i = 0; i < CHANGES; i++) {
      const off = await call('c', 'POST', '/members/alice/disable');
      assert.equal(off.status, 200, JSON.stringify(off));
      latencies.push((await waitLogged(/^member alice disabled/, need(off.sentAt, 'sentAt'))) - off.sentAt!);
      const on = await call('c', 'POST', '/members/alice/enable');
      assert.equal(on.status, 200, JSON.stringify(on));
      latencies.push((await waitLogged(/^member alice enabled$/, need(on.sentAt, 'sentAt'))) - on.sentAt!);
    }
    const sorted = [...latencies].sort((x, y) => x - y);
    const p50 = percentile(sorted, 50);
    const p99 = percentile(sorted, 99);
    const line =
      `change through C's API -> applied on B: p50 ${p50} ms, p99 ${p99} ms, max ${sorted.at(-1)} ms ` +
      `over ${latencies.length} changes (${CHANGES} disable/enable pairs, ${Date.now() - started} ms)`;
    console.log(line);
    t.diagnostic(line);
    assert.ok(p99 <= 1000, line);

    // Enabled again, alice reaches the gateway (B starts the handshake when it re-installs her).
    const back = await ping(netns('m'), GATEWAY_IP, { count: 5, intervalS: 0.2, waitS: 3 });
    assert.ok(back.received >= 1, `alice after the last enable:\n${back.output}\n${b.describe()}`);
  });

  it('4. PostgreSQL restarted: B keeps forwarding, logs lost/back once, applies a later change once', async (t) => {
    const b = server('b');
    const s = need(pgServer, 'PostgreSQL');
    // Ping every 100 ms through B for 12 s while the database goes away and comes back.
    const pinger = netns('m').spawn('ping', ['-4', '-n', '-i', '0.1', '-c', '120', '-W', '1', GATEWAY_IP]);
    await delay(1_000);
    const restartAt = Date.now();
    await s.restart();
    t.diagnostic(`pg_ctl restart took ${Date.now() - restartAt} ms`);
    // The change: made through A after the restart (A's store reconnects; retried while A still sees it away).
    let change: ApiEvent | undefined;
    for (let i = 0; i < 50; i++) {
      change = await call('a', 'POST', '/members/carol/disable');
      if (change.status === 200) break;
      await delay(200);
    }
    assert.equal(change?.status, 200, JSON.stringify(change));
    const deadline = Date.now() + 10_000;
    while (loggedAt(b.stderr, /^member carol disabled/).length === 0 && Date.now() < deadline)
      await delay(20);
    const status = await within(pinger.exited, 20_000);
    assert.ok(status, 'ping finished');
    const stats = /(\d+) packets transmitted, (\d+) received/.exec(pinger.stdout);
    const sent = Number(stats?.[1] ?? 0);
    const received = Number(stats?.[2] ?? 0);
    const line = `ping through B across the PostgreSQL restart: ${received}/${sent} answered`;
    console.log(line);
    t.diagnostic(line);
    assert.ok(sent >= 100 && received >= sent - 3, `${line}\n${pinger.stdout.slice(-2000)}`);

    const lost = loggedAt(b.stderr, /^store: unreachable/);
    const back = loggedAt(b.stderr, /^store: reachable again/);
    assert.ok(
      lost.length <= 1 && back.length === lost.length,
      `lost ${lost.length}, back ${back.length}:\n${b.stderr}`,
    );
    t.diagnostic(
      lost.length === 0
        ? 'B never saw the store away (its calls fell between the restart)'
        : `B: store lost at +${lost[0]! - restartAt} ms, back at +${back[0]! - restartAt} ms`,
    );
    assert.equal(
      loggedAt(b.stderr, /^member carol disabled/).length,
      1,
      `carol's disable applied once:\n${b.stderr}`,
    );
    // B goes on following: one more change after all that.
    const again = await call('a', 'POST', '/members/carol/enable');
    assert.equal(again.status, 200);
    const d2 = Date.now() + 5_000;
    while (loggedAt(b.stderr, /^member carol enabled$/).length === 0 && Date.now() < d2) await delay(20);
    assert.equal(loggedAt(b.stderr, /^member carol enabled$/).length, 1, b.describe());
  });

  it("4b. /status and /metrics report the store; the member's status is B's, not overwritten by A or C", async () => {
    const status = await call('a', 'GET', '/status');
    assert.equal(status.status, 200, JSON.stringify(status));
    const store = (status.body as { live?: { store?: Record<string, unknown> } }).live?.store;
    assert.ok(store, JSON.stringify(status.body));
    assert.equal(store['kind'], 'postgres');
    assert.equal(store['role'], 'shared');
    assert.equal(store['reachable'], true);
    assert.match(String(store['location']), /^postgres:\/\/weft@localhost/);
    assert.ok(Number(store['revision']) > 2 * CHANGES, JSON.stringify(store));
    assert.ok(Number(store['lagSeconds']) < 1, JSON.stringify(store));
    // Alice is connected to B only: A and C, which never saw her, do not overwrite B's report of her.
    const deadline = Date.now() + 12_000;
    let shown: ApiEvent | undefined;
    for (;;) {
      shown = await call('a', 'GET', '/members/alice');
      const st = (shown.body as { status?: { online?: boolean } | null }).status;
      if (st?.online === true) break;
      if (Date.now() > deadline) assert.fail(`alice never shown online: ${JSON.stringify(shown.body)}`);
      await delay(250);
    }
    await delay(5_500); // every gateway reports again
    const again = await call('c', 'GET', '/members/alice');
    assert.equal(
      (again.body as { status?: { online?: boolean } }).status?.online,
      true,
      JSON.stringify(again.body),
    );
    // The gateways, through A's API: B registered and up; alice online on B where the statuses say which
    // gateway holds a member, else not known per gateway (null).
    const gateways = await call('a', 'GET', '/gateways');
    assert.equal(gateways.status, 200, JSON.stringify(gateways));
    const listed = gateways.body as { name: string; state: string; membersOnline: number | null }[];
    assert.deepEqual(
      listed.map((g) => [g.name, g.state]),
      [['gw-b', 'up']],
    );
    assert.ok([null, 1].includes(listed[0]!.membersOnline), JSON.stringify(listed));
    const metrics = await call('a', 'GET', '/metrics');
    assert.match(String(metrics.body), /^weft_store_up\{kind="postgres",role="shared"\} 1$/m);
    assert.match(
      String(metrics.body),
      /^weft_store_lag_seconds\{kind="postgres",role="shared"\} 0(\.\d+)?$/m,
    );
  });

  it('5. SIGTERM: every gateway exits 0', async () => {
    for (const key of GATEWAYS) {
      const proc = server(key);
      proc.kill('SIGTERM');
      const status = await within(proc.exited, 10_000);
      assert.equal(status?.code, 0, proc.describe());
    }
  });
});
