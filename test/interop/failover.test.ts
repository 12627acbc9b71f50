/**
 * Failover of a shared member-facing address: two real `weft server run` gateways in namespaces of their own on
 * one PostgreSQL database (postgres-harness.ts), both run with `--shared-address`; two real WireGuard members
 * (wg-quick + wireguard-go) whose Endpoint is the shared address, and a real OpenVPN member (openvpn 2.6) whose
 * profile lists the shared address, then each gateway's own address. Steps, in order:
 *   1. `server init --store` and `gateway join` for A and B; A starts first and holds the address, B stands by.
 *   2. Both WireGuard members connect through the shared address (A) and A reports their endpoints to the store;
 *      the OpenVPN member's profile has a `remote` per gateway and a short server-poll-timeout, and it connects
 *      through the shared address (A), which pushes it a ping every second and a restart after 5 s of silence.
 *   3. Each member pings the gateway every 100 ms; A is killed with SIGKILL. B takes the lease, adds the address,
 *      announces it and starts handshakes to both WireGuard members: the longest gap between two replies is
 *      measured per member (printed; bar: 5 s, the issue's). The OpenVPN member restarts after its ping-restart
 *      and reconnects to B (bar: 15 s). B knows the members' hardware addresses beforehand (static
 *      neighbour entries), so it is B's gratuitous ARP, not an ARP request of its kernel, that moves the
 *      members' caches off A, whose kernel (still up, with the address on its interface) would otherwise keep
 *      receiving their packets.
 *   4. B holds the lease and the address; A, started again, removes the address its crash left behind and
 *      stands by; the members still reach the gateway; `gateway list` shows B as the holder; /status and
 *      /metrics on each report its role.
 *   5. SIGTERM to B: it gives the address up, and A takes it; both exit 0.
 *
 * Topology: namespace `lan` holds a bridge with member 1's underlay address 192.168.74.201/24; member 2
 * (192.168.74.202), the OpenVPN member 3 (192.168.74.203), gateway A (192.168.74.1) and B (192.168.74.2) hang off it; the shared address is
 * 192.168.74.100/24 on the gateway's LAN interface. Each gateway's API listens on 127.0.0.1:8780 in its namespace.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { interopSkip, type ManagedProcess, type Netns } from './harness.js';
import { ping, WEFT_MAIN, within } from './gateway-lab.js';
import { PEOPLE_TOOLS, wgQuickUp } from './people-lab.js';
import { canRunPostgres } from './postgres-harness.js';
import { FailoverLab, need, replyTimes, type GatewayKey } from './failover-lab.js';

const SUBNET = '10.68.0.0/24';
const GATEWAY_IP = '10.68.0.1';
const PORT = 51820;
const SHARED = '192.168.74.100';
const UNDERLAY = {
  a: '192.168.74.1',
  b: '192.168.74.2',
  m1: '192.168.74.201',
  m2: '192.168.74.202',
  m3: '192.168.74.203',
};
/** The bar for the gap in replies when the holder is killed. */
const GAP_BAR_MS = 5000;
/** The OpenVPN member's: its ping-restart (5 s), a restart pause and a new TLS handshake with B. */
const OPENVPN_GAP_BAR_MS = 15_000;
const OPENVPN_MEMBER = 'carol';
const TOOLS = [...PEOPLE_TOOLS, 'openvpn'];
type MemberKey = 'm1' | 'm2';
const MEMBERS: Record<MemberKey, string> = { m1: 'alice', m2: 'bob' };

const pgCan = canRunPostgres();
const skip = interopSkip(TOOLS) || (pgCan.ok ? false : pgCan.reason);

describe('failover: a shared address moves when its holder is killed', { skip }, () => {
  const fl = new FailoverLab({ kind: 'fover', tools: TOOLS, shared: `${SHARED}/24` });
  const pingers: ManagedProcess[] = [];
  let openvpnClient: ManagedProcess | undefined;

  before(async () => {
    assert.ok(fs.existsSync(WEFT_MAIN), `${WEFT_MAIN} is missing: build first (npm run build)`);
    await fl.setup();
    const lan = await fl.createLan('lan', [`${UNDERLAY.m1}/24`]);
    fl.ns.lan = lan;
    fl.ns.m1 = lan;
    const m2 = await fl.lab.netns('m2');
    fl.ns.m2 = m2;
    await fl.attach(m2, 'm2', `${UNDERLAY.m2}/24`);
    const m3 = await fl.lab.netns('m3');
    fl.ns.m3 = m3;
    await fl.attach(m3, 'm3', `${UNDERLAY.m3}/24`);
    for (const key of ['a', 'b'] as const)
      await fl.addGateway(key, `g${key}`, `${UNDERLAY[key]}/24`, `w${key}`);
  });

  after(async () => {
    await fl.cleanup(8_000, [...pingers, openvpnClient]);
  });

  const netns = (key: GatewayKey | MemberKey | 'm3' | 'lan'): Netns => fl.netns(key);
  const server = (key: GatewayKey): ManagedProcess => fl.server(key);
  const weft = (key: GatewayKey, args: readonly string[]) => fl.weft(key, args);
  const start = (key: GatewayKey): ManagedProcess => fl.start(key);
  const hasShared = (key: GatewayKey): Promise<boolean> => fl.hasShared(key);
  const get = (key: GatewayKey, paths: readonly string[]) => fl.get(key, paths);

  it('1. A holds the shared address, B stands by (the lease in PostgreSQL decides)', async (t) => {
    const init = await fl.init(fl.storeUrl, `${SHARED}:${PORT}`, SUBNET, ['--default-policy', 'allow']);
    fl.token = /^api token: (\S+)/m.exec(init.stdout)?.[1] ?? '';
    assert.ok(fl.token, init.stdout);
    await fl.join(fl.storeUrl, { a: `${UNDERLAY.a}:${PORT}`, b: `${UNDERLAY.b}:${PORT}` });
    const started = Date.now();
    const a = start('a');
    await a.waitForOutput(/ready:/, 30_000);
    await a.waitForOutput(/failover: holder of 192\.168\.74\.100\/24/, 5_000);
    const b = start('b');
    await b.waitForOutput(/ready:/, 30_000);
    await b.waitForOutput(/failover: standby for 192\.168\.74\.100\/24/, 5_000);
    t.diagnostic(`both gateways ready after ${Date.now() - started} ms`);
    await delay(1_000); // B has tried the lease a few times by now
    assert.doesNotMatch(b.stderr, /failover: holder/, b.stderr);
    assert.equal(await hasShared('a'), true, 'A has the shared address');
    assert.equal(await hasShared('b'), false, 'B has not');
  });

  it('2. both members connect through the shared address; A reports their endpoints', async () => {
    await Promise.all(
      (['m1', 'm2'] as const).map(async (key) => {
        await weft('a', ['member', 'add', MEMBERS[key]]);
        const config = (await weft('a', ['member', 'config', MEMBERS[key]])).stdout;
        assert.match(config, new RegExp(`Endpoint = ${SHARED.replaceAll('.', '\\.')}:${PORT}`));
        fl.members[key] = await wgQuickUp(netns(key), fl.lab.ifname(`c${key}`), config);
        const p = await ping(netns(key), GATEWAY_IP, { count: 2, waitS: 3 });
        assert.ok(p.received >= 1, `${MEMBERS[key]} → ${GATEWAY_IP} through A:\n${p.output}`);
      }),
    );
    // B knows the members' hardware addresses already (as a gateway on their LAN would): at the takeover its
    // kernel sends them no ARP request of its own, so only B's announcement tells them where the address went.
    for (const [key, dev] of [
      ['m1', fl.lab.ifname('br')],
      ['m2', fl.lab.ifname('um2')],
    ] as const) {
      const link = JSON.parse((await netns(key).exec('ip', ['-j', 'link', 'show', 'dev', dev])).stdout) as {
        address: string;
      }[];
      const mac = need(link[0]?.address, `${dev}'s hardware address`);
      await netns('b').exec('ip', [
        'neigh',
        'replace',
        UNDERLAY[key],
        'lladdr',
        mac,
        'dev',
        fl.lanIf.b,
        'nud',
        'permanent',
      ]);
    }
    // The OpenVPN member: every gateway is a remote of its profile, the shared address first.
    await weft('a', ['member', 'add', OPENVPN_MEMBER]);
    const profile = (await weft('a', ['member', 'config', OPENVPN_MEMBER, '--openvpn'])).stdout;
    const remotes = profile.split('\n').filter((l) => l.startsWith('remote '));
    assert.deepEqual(
      remotes.filter((l) => l.endsWith(' udp')),
      [SHARED, UNDERLAY.a, UNDERLAY.b].map((h) => `remote ${h} 1194 udp`),
      profile,
    );
    assert.match(profile, /^server-poll-timeout \d+$/m);
    const file = await fl.lab.writeSecret(`${OPENVPN_MEMBER}.ovpn`, profile);
    openvpnClient = netns('m3').spawn('openvpn', ['--config', file]);
    await openvpnClient.waitForOutput(/Initialization Sequence Completed/, 30_000);
    assert.match(openvpnClient.stdout + openvpnClient.stderr, /PUSH_REPLY.*ping 1,ping-restart 5/);
    const p3 = await ping(netns('m3'), GATEWAY_IP, { count: 2, waitS: 3 });
    assert.ok(p3.received >= 1, `${OPENVPN_MEMBER} → ${GATEWAY_IP} through A:\n${p3.output}`);
    // "connected" is logged by the status report that writes the member's endpoint to the store.
    await server('a').waitForOutput(/member alice connected/, 8_000);
    await server('a').waitForOutput(/member bob connected/, 8_000);
    await delay(300);
  });

  it('3. kill -9 the holder during a ping every 100 ms: B takes over; the gap is measured', async (t) => {
    const a = server('a');
    const b = server('b');
    const who = [MEMBERS.m1, MEMBERS.m2, OPENVPN_MEMBER];
    for (const key of ['m1', 'm2', 'm3'] as const)
      pingers.push(
        netns(key).spawn('ping', ['-4', '-n', '-D', '-i', '0.1', '-W', '1', '-w', '50', GATEWAY_IP]),
      );
    await delay(1_500);
    for (const [i, p] of pingers.entries())
      assert.ok(replyTimes(p.stdout).length >= 5, `${who[i]} pings before the kill:\n${p.stdout}`);
    const killedAt = Date.now();
    a.kill('SIGKILL');
    await within(a.exited, 5_000);
    // Until each member has had replies for a second after the kill (at most 25 s: the OpenVPN member restarts).
    const deadline = Date.now() + 25_000;
    while (Date.now() < deadline) {
      if (pingers.every((p) => replyTimes(p.stdout).filter((at) => at > killedAt).length >= 10)) break;
      await delay(100);
    }
    for (const p of pingers) p.kill('SIGINT');
    await Promise.all(pingers.map((p) => within(p.exited, 5_000)));
    const took =
      /failover: holder of \S+ on \S+ \(took it in (\d+) ms; handshakes started with (\d+) member/.exec(
        b.stderr,
      );
    assert.ok(took, `B never became the holder:\n${b.stderr}`);
    t.diagnostic(
      `B: takeover (lease, address, announcement, handshakes) took ${took[1]} ms, handshakes started with ${took[2]} member(s)`,
    );
    assert.equal(took[2], '2', b.stderr);
    const lines: string[] = [];
    const gaps: number[] = [];
    for (const [i, p] of pingers.entries()) {
      const times = replyTimes(p.stdout);
      const before = times.filter((at) => at <= killedAt).at(-1);
      const afterKill = times.find((at) => at > killedAt);
      if (before === undefined || afterKill === undefined) {
        assert.fail(
          `${who[i]}: no reply ${before === undefined ? 'before' : 'after'} the kill:\n${p.stdout}\n` +
            (i === 2 ? need(openvpnClient, 'the OpenVPN member').describe() : ''),
        );
      }
      const gap = afterKill - before;
      gaps.push(gap);
      lines.push(
        `${who[i]}: gap in replies ${gap} ms (first reply ${afterKill - killedAt} ms after kill -9)`,
      );
    }
    const ovpnLog = need(openvpnClient, 'the OpenVPN member').stdout;
    const remotes = [...ovpnLog.matchAll(/link remote: \[AF_INET\]([\d.]+):\d+/g)].map((m) => m[1]);
    const line =
      `failover (kill -9 of the holder, ping every 100 ms): ${lines.join('; ')}; ` +
      `${OPENVPN_MEMBER} connected to ${remotes.join(', then ')}`;
    console.log(line);
    t.diagnostic(line);
    assert.ok(gaps[0]! <= GAP_BAR_MS && gaps[1]! <= GAP_BAR_MS, `${line}\nB:\n${b.stderr}`);
    assert.ok(gaps[2]! <= OPENVPN_GAP_BAR_MS, `${line}\nOpenVPN member:\n${ovpnLog}`);
    // It restarted on its ping-restart (not on some other error) and reconnected.
    assert.match(ovpnLog, /Inactivity timeout \(--ping-restart\), restarting/);
    assert.equal(ovpnLog.match(/Initialization Sequence Completed/g)?.length, 2, ovpnLog);
  });

  it('4. B holds the lease and the address; A restarted removes its leftover address and stands by', async (t) => {
    const b = server('b');
    assert.equal(await hasShared('b'), true, 'B has the shared address');
    assert.equal(await hasShared('a'), true, 'the address kill -9 left on A (nothing removed it yet)');
    const a = start('a');
    await a.waitForOutput(/ready:/, 30_000);
    await a.waitForOutput(/failover: standby for 192\.168\.74\.100\/24/, 5_000);
    assert.equal(await hasShared('a'), false, 'A removed the address its crash left');
    await delay(1_000);
    assert.doesNotMatch(a.stderr, /failover: holder/, a.stderr);
    assert.equal(await hasShared('b'), true);
    // The members still reach the gateway (B), A's restart notwithstanding.
    await Promise.all(
      (['m1', 'm2'] as const).map(async (key) => {
        const p = await ping(netns(key), GATEWAY_IP, { count: 5, intervalS: 0.1, waitS: 2 });
        assert.equal(p.received, 5, `${MEMBERS[key]} after A's restart:\n${p.output}\n${b.describe()}`);
      }),
    );
    const [listed, shown, [statusA, metricsA], [statusB, metricsB]] = await Promise.all([
      weft('a', ['gateway', 'list', '--json']),
      weft('b', ['gateway', 'list']),
      get('a', ['/status', '/metrics']),
      get('b', ['/status', '/metrics']),
    ]);
    const list = JSON.parse(listed.stdout) as { name: string; holds: string[] }[];
    assert.deepEqual(
      list.map((g) => [g.name, g.holds]),
      [
        ['gw-a', []],
        ['gw-b', [SHARED]],
      ],
    );
    assert.match(shown.stdout, /^gw-b .* 192\.168\.74\.100 /m, shown.stdout);
    t.diagnostic(shown.stdout.trim());
    for (const [status, metricsReply, role, gauge] of [
      [statusA, metricsA, 'standby', 0],
      [statusB, metricsB, 'holder', 1],
    ] as const) {
      const failover = (status?.body as { live?: { failover?: Record<string, unknown> } }).live?.failover;
      assert.equal(failover?.['role'], role, JSON.stringify(status?.body));
      assert.equal(failover?.['address'], `${SHARED}/24`);
      assert.match(
        String(metricsReply?.body),
        new RegExp(`^weft_failover_holder\\{address="192\\.168\\.74\\.100/24"\\} ${gauge}$`, 'm'),
      );
    }
  });

  it('5. SIGTERM to the holder hands the address over; both exit 0', async () => {
    const a = server('a');
    const b = server('b');
    b.kill('SIGTERM');
    const bStatus = await within(b.exited, 10_000);
    assert.equal(bStatus?.code, 0, b.describe());
    assert.match(b.stderr, /failover: released 192\.168\.74\.100\/24/);
    await a.waitForOutput(/failover: holder of 192\.168\.74\.100\/24/, 5_000);
    assert.equal(await hasShared('a'), true);
    assert.equal(await hasShared('b'), false);
    a.kill('SIGTERM');
    const aStatus = await within(a.exited, 10_000);
    assert.equal(aStatus?.code, 0, a.describe());
    assert.equal(await hasShared('a'), false, 'a stopped holder removes the address');
  });
});

/**
 * An IPv6 shared address: the same pair of real gateways on a PostgreSQL of their own, `--shared-address
 * fd74::100/64`, and a neighbour on their LAN (namespace `lan6`, the bridge's fd74::201) that pings the shared
 * address every 100 ms. The holder A's LAN link is taken down and A killed with SIGKILL right after (its machine
 * gone: its kernel, which still has the address, no longer answers). B takes the lease, adds the address
 * (nodad) and sends an unsolicited Neighbour Advertisement: the neighbour's cache entry for the shared address
 * moves from A's hardware address to B's, and the gap in replies is measured (bar: 5 s; without the
 * advertisement the neighbour would keep sending to A's address until its entry failed Neighbour Unreachability
 * Detection, 20–50 s later). B knows the neighbour's hardware address beforehand (a static entry), so no
 * solicitation of B's kernel moves the neighbour's cache instead. SIGTERM to B then removes the address.
 */
describe(
  'failover: an IPv6 shared address moves with an unsolicited neighbour advertisement',
  { skip },
  () => {
    const SHARED6 = 'fd74::100';
    const LAN6 = { a: 'fd74::1', b: 'fd74::2', n: 'fd74::201' };
    const fl = new FailoverLab({ kind: 'fov6', tools: TOOLS, shared: `${SHARED6}/64` });
    const macs: Record<GatewayKey | 'n', string> = { a: '', b: '', n: '' };
    let pinger: ManagedProcess | undefined;

    const netns = (key: GatewayKey | 'lan'): Netns => fl.netns(key);
    const macOf = async (n: Netns, dev: string): Promise<string> => {
      const link = JSON.parse((await n.exec('ip', ['-j', 'link', 'show', 'dev', dev])).stdout) as {
        address: string;
      }[];
      return need(link[0]?.address, `${dev}'s hardware address`);
    };
    const hasShared6 = (key: GatewayKey): Promise<boolean> => fl.hasShared(key);
    /** The neighbour's cached hardware address for the shared address ('' when it has none). */
    const cached = async (): Promise<string> => {
      const { stdout } = await netns('lan').exec('ip', ['-6', 'neigh', 'show', SHARED6]);
      return /lladdr (\S+)/.exec(stdout)?.[1] ?? '';
    };
    const start = (key: GatewayKey): ManagedProcess => fl.start(key);

    before(async () => {
      await fl.setup();
      // A fixed hardware address: a bridge's own otherwise follows its ports' as they join (B's static entry).
      const lan = await fl.createLan('lan6', [`${LAN6.n}/64`], { mac: '02:00:00:74:02:01', nodad: true });
      fl.ns.lan = lan;
      macs.n = await macOf(lan, fl.bridge);
      for (const key of ['a', 'b'] as const) {
        const g = await fl.addGateway(key, `g${key}6`, `${LAN6[key]}/64`, `v${key}`);
        macs[key] = await macOf(g, fl.lanIf[key]);
      }
      // B knows the neighbour (as a gateway on its LAN would): its kernel sends no solicitation of its own.
      await netns('b').exec('ip', [
        '-6',
        'neigh',
        'replace',
        LAN6.n,
        'lladdr',
        macs.n,
        'dev',
        fl.lanIf.b,
        'nud',
        'permanent',
      ]);
    });

    after(async () => {
      await fl.cleanup(8_000, [pinger]);
    });

    it('A holds fd74::100, the neighbour caches A; kill -9 of A: the neighbour moves to B; SIGTERM to B removes it', async (t) => {
      await fl.init(fl.storeUrl, `[${SHARED6}]:${PORT}`, SUBNET);
      await fl.join(fl.storeUrl, { a: `[${LAN6.a}]:${PORT}`, b: `[${LAN6.b}]:${PORT}` });
      const a = start('a');
      await a.waitForOutput(/failover: holder of fd74::100\/64/, 30_000);
      const b = start('b');
      await b.waitForOutput(/failover: standby for fd74::100\/64/, 30_000);
      assert.equal(await hasShared6('a'), true, 'A has the shared address');
      assert.equal(await hasShared6('b'), false, 'B has not');
      pinger = netns('lan').spawn('ping', ['-6', '-n', '-D', '-i', '0.1', '-W', '1', '-w', '30', SHARED6]);
      await delay(1_000);
      assert.ok(replyTimes(pinger.stdout).length >= 5, `the neighbour pings A:\n${pinger.stdout}`);
      assert.equal(await cached(), macs.a, 'the neighbour caches A for the shared address');
      // A's machine goes: its LAN link first (so its kernel answers nothing more), then its process.
      await netns('a').exec('ip', ['link', 'set', fl.lanIf.a, 'down']);
      const killedAt = Date.now();
      a.kill('SIGKILL');
      await within(a.exited, 5_000);
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline && replyTimes(pinger.stdout).filter((at) => at > killedAt).length < 10)
        await delay(100);
      pinger.kill('SIGINT');
      await within(pinger.exited, 5_000);
      const times = replyTimes(pinger.stdout);
      const last = times.filter((at) => at <= killedAt).at(-1);
      const first = times.find((at) => at > killedAt);
      if (last === undefined || first === undefined) {
        const state = await Promise.all([
          netns('lan').exec('ip', ['-6', 'neigh']),
          netns('b').exec('ip', ['-6', 'addr']),
          netns('b').exec('ip', ['-6', 'neigh']),
          netns('b').exec('nft', ['list', 'ruleset']),
        ]);
        assert.fail(
          `no reply ${last === undefined ? 'before' : 'after'} the kill:\n${pinger.stdout}\nB:\n${b.stderr}\n` +
            `macs ${JSON.stringify(macs)}\n${state.map((r) => r.stdout).join('\n')}`,
        );
      }
      const took = /failover: holder of \S+ on \S+ \(took it in (\d+) ms/.exec(b.stderr);
      const line =
        `IPv6 failover (the holder's link down, then kill -9; ping every 100 ms): gap in replies ${first - last} ms ` +
        `(first reply ${first - killedAt} ms after the link went down; B's takeover ${took?.[1] ?? '?'} ms)`;
      console.log(line);
      t.diagnostic(line);
      assert.equal(await cached(), macs.b, `the neighbour's entry moved to B: ${line}`);
      assert.equal(await hasShared6('b'), true);
      assert.ok(first - last <= GAP_BAR_MS, `${line}\nB:\n${b.stderr}`);
      b.kill('SIGTERM');
      assert.equal((await within(b.exited, 10_000))?.code, 0, b.describe());
      assert.match(b.stderr, /failover: released fd74::100\/64/);
      assert.equal(await hasShared6('b'), false, 'a stopped holder removes the IPv6 address');
    });
  },
);
