/**
 * The people VPN as an operator runs it: `weft server init` / `weft server run` in a gateway namespace, the store
 * driven by the CLI, and three members on REAL WireGuard clients (wg-quick + wireguard-go, from the configs
 * `weft member config` prints). Each step of the scenario is one `it`, in order; a step whose prerequisite
 * failed fails with a message naming it.
 *
 *   1. init (default deny, NAT egress), groups eng/sales, route 10.20.0.0/24, policies, members A (eng, fixed
 *      10.66.0.10), B (sales, allocated), C (eng, own key pair from `wg genkey`); the configs route what the
 *      policies allow, plus the gateway's tunnel address.
 *   2. `server run` says ready; the three clients come up with their members' addresses and reach the gateway.
 *   3. A reaches the routed cloud host (no NAT toward it); B does not, nothing of B's reaches the cloud, and the
 *      gateway counts B's drops (B's config is widened by hand, as a member editing it would, so that the
 *      gateway's enforcement is what is tested).
 *   4. Member to member follows the policy per direction and port: A↔C both ways (eng → group:eng); B → A on
 *      tcp/7001 only (sales → group:eng:tcp/7001), whose replies pass although eng → sales is not allowed;
 *      B → A ping, B → A tcp/7002, A → B ping and A → B tcp/7001 are dropped.
 *   5. NAT: the internet host sees the gateway's egress address, never the member's; one weft nft table with
 *      one masquerade rule.
 *   6. Disabling B cuts B's pings (every 0.1 s) within 1 s of the command returning, while A's rate-limited
 *      iperf3 to the cloud runs without a gap; enabling B restores B's traffic (after the client re-handshakes).
 *   7. export → apply on the same store: "no changes" (twice); init a second store, apply the export (changes,
 *      then "no changes"), and its export has the same members, groups, routes and policies; no private keys.
 *   8. C, with its own key pair, handshakes with the gateway and reaches it.
 *   9. SIGTERM: exit 0, no interface, no weft nft table; a restart installs the NAT rule exactly once, and NAT
 *      works again.
 *
 * Topology: see people-lab.ts (endpoint 192.168.70.1:51820 on a bridge in the gateway namespace; cloud
 * 10.20.0.10 behind 10.20.0.1; internet 198.51.100.10 behind the NAT egress 198.51.100.1).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  capture,
  interopSkip,
  Lab,
  type ExecOptions,
  type ExecResult,
  type ManagedProcess,
} from './harness.js';
import { ping, weftCli, WEFT_MAIN, within } from './gateway-lab.js';
import {
  anyContains,
  CLOUD,
  exportDigest,
  INTERNET,
  iperf3Intervals,
  MEMBER_KEYS,
  natRuleCount,
  nftRuleset,
  parseWgQuick,
  PEOPLE_TOOLS,
  peopleTopology,
  pingFinished,
  pingTimeline,
  replaceConfigLine,
  tcpProbe,
  tcpServer,
  UNDERLAY,
  weftTables,
  wgQuickUp,
  type MemberKey,
  type PeopleTopology,
  type TcpServer,
  type WgQuickClient,
} from './people-lab.js';

const SUBNET = '10.66.0.0/24';
const GATEWAY_IP = '10.66.0.1';
const A_IP = '10.66.0.10';
const PORT = 51820;
const ENDPOINT = `${UNDERLAY.gateway}:${PORT}`;
const NAMES: Record<MemberKey, string> = { a: 'alice', b: 'bob', c: 'carol' };
const CLOUD_PORT = 7100;
const INTERNET_PORT = 7200;
const ALLOWED_PORT = 7001;
const OTHER_PORT = 7002;
/** How long the running gateway may take to report a member's status to the store ("every few seconds"). */
const STATUS_WAIT_MS = 8_000;
/** A refused TCP connection attempt: nothing answers within this. */
const DROP_PROBE_MS = 1_500;

interface MemberJson {
  name: string;
  ip: string;
  disabled: boolean;
  publicKey?: string;
  hasPrivateKey?: boolean;
  status: { online: boolean; rxBytes: number; txBytes: number; policyDrops: number } | null;
}

interface MemberState {
  name: string;
  ip: string;
  /** The config as `weft member config` printed it. */
  printed: string;
  /** The config the client runs. */
  config: string;
  client?: WgQuickClient;
}

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`prerequisite missing: ${what} (an earlier step failed)`);
  return value;
}

describe('people VPN: `weft server` with real WireGuard clients', { skip: interopSkip(PEOPLE_TOOLS) }, () => {
  let lab: Lab;
  let topo: PeopleTopology | undefined;
  let dataDir = '';
  let serverIf = '';
  let server: ManagedProcess | undefined;
  let gatewayPublicKey: string | undefined;
  let cKeys: { privateKey: string; publicKey: string } | undefined;
  const members: Partial<Record<MemberKey, MemberState>> = {};
  const servers: { cloud?: TcpServer; inet?: TcpServer } = {};
  const suiteStart = Date.now();

  before(async () => {
    assert.ok(fs.existsSync(WEFT_MAIN), `${WEFT_MAIN} is missing: build first (npm run build)`);
    lab = await Lab.create('people', { tools: PEOPLE_TOOLS });
    dataDir = lab.file('data');
    serverIf = lab.ifname('wg');
    lab.registerWgInterface(serverIf); // in case the gateway opens a UAPI socket
    topo = await peopleTopology(lab);
  });

  after(async () => {
    if (!lab) return;
    try {
      if (server?.running) await server.stop(8_000).catch(() => undefined);
      for (const m of Object.values(members)) await m.client?.down().catch(() => undefined);
    } finally {
      await lab.cleanup();
    }
  });

  const net = (): PeopleTopology => need(topo, 'the topology');
  const member = (key: MemberKey): MemberState => need(members[key], `member ${NAMES[key]}`);
  const client = (key: MemberKey): WgQuickClient => need(members[key]?.client, `${NAMES[key]}'s client`);

  /** `weft CMD... --data DIR ARGS...` in the gateway namespace; throws on a non-zero exit unless allowFail. */
  const weft = (
    command: readonly string[],
    args: readonly string[] = [],
    { dir = dataDir, ...options }: ExecOptions & { dir?: string } = {},
  ): Promise<ExecResult> =>
    weftCli(net().gw, [...command, '--data', dir, ...args], { timeoutMs: 20_000, ...options });

  const show = async (key: MemberKey): Promise<MemberJson> => {
    const r = await weft(['member', 'show'], [NAMES[key], '--json']);
    try {
      return JSON.parse(r.stdout) as MemberJson;
    } catch {
      throw new Error(`member show ${NAMES[key]} --json printed no JSON:\n${r.stdout}${r.stderr}`);
    }
  };

  /** Waits (bounded) until the gateway's reported status of `key` satisfies `check`; returns it. */
  const statusWhen = async (
    key: MemberKey,
    what: string,
    check: (s: NonNullable<MemberJson['status']>) => boolean,
  ): Promise<NonNullable<MemberJson['status']>> => {
    const deadline = Date.now() + STATUS_WAIT_MS;
    let last: MemberJson | undefined;
    for (;;) {
      last = await show(key);
      if (last.status && check(last.status)) return last.status;
      if (Date.now() > deadline) {
        throw new Error(
          `${NAMES[key]}'s status: ${what} not reported within ${STATUS_WAIT_MS} ms; last: ${JSON.stringify(last)}`,
        );
      }
      await delay(250);
    }
  };

  /** The running gateway; throws with its output if it has exited (e.g. crashed during an earlier step). */
  const liveServer = (): ManagedProcess => {
    const proc = need(server, 'a running server');
    if (!proc.running) throw new Error(`the gateway is no longer running: ${proc.describe()}`);
    return proc;
  };

  const startServer = async (): Promise<ManagedProcess> => {
    const proc = net().gw.spawn(process.execPath, [WEFT_MAIN, 'server', 'run', '--data', dataDir]);
    try {
      await proc.waitForOutput(/ready/, 20_000);
    } catch (error) {
      await proc.stop().catch(() => undefined);
      throw error;
    }
    assert.match(proc.stderr, /ready/, `"ready" should be on stderr: ${proc.describe()}`);
    return proc;
  };

  const stopServer = async (t: TestContext): Promise<void> => {
    const proc = liveServer();
    const started = Date.now();
    proc.kill('SIGTERM');
    const status = await within(proc.exited, 10_000);
    if (!status) {
      await proc.stop().catch(() => undefined);
      assert.fail(`weft server run did not exit within 10 s of SIGTERM: ${proc.describe()}`);
    }
    t.diagnostic(`server stopped ${Date.now() - started} ms after SIGTERM (exit ${status.code})`);
    assert.equal(status.code, 0, proc.describe());
    server = undefined;
    const link = await net().gw.exec('ip', ['link', 'show', 'dev', serverIf], { allowFail: true });
    assert.notEqual(link.code, 0, `${serverIf} still exists after the server stopped`);
    const ruleset = await nftRuleset(net().gw);
    assert.deepEqual(weftTables(ruleset), [], `weft tables remain after SIGTERM:\n${ruleset}`);
  };

  const drops = async (key: MemberKey): Promise<number> => (await show(key)).status?.policyDrops ?? 0;

  // -------------------------------------------------------------------------------------------------------------

  it('1. init, groups, route, policies, members; configs route what the policies allow', async (t) => {
    const { gw, egressIf } = net();
    const init = await weft(
      ['server', 'init'],
      [
        '--endpoint',
        ENDPOINT,
        '--subnet',
        SUBNET,
        '--nat-egress',
        egressIf,
        '--interface',
        serverIf,
        '--default-policy',
        'deny',
      ],
    );
    assert.match(init.stdout, /^admin password: \S+/m, init.stdout);
    assert.match(init.stdout, /^api token: \S+/m, init.stdout);

    await weft(['group', 'add'], ['eng']);
    await weft(['group', 'add'], ['sales']);
    await weft(['route', 'add'], [CLOUD.subnet]);
    await weft(['policy', 'allow'], ['eng', CLOUD.subnet]);
    await weft(['policy', 'allow'], ['eng', INTERNET.subnet]);
    await weft(['policy', 'allow'], ['eng', 'group:eng']);
    await weft(['policy', 'allow'], ['sales', `group:eng:tcp/${ALLOWED_PORT}`]);

    // C's key pair, made the way a member would make it.
    const keys = await gw.exec('sh', [
      '-c',
      'k=$(wg genkey) && printf "%s\\n" "$k" && printf "%s" "$k" | wg pubkey',
    ]);
    const [privateKey, publicKey] = keys.stdout.trim().split('\n');
    assert.ok(privateKey && publicKey, keys.stdout);
    cKeys = { privateKey, publicKey };

    await weft(['member', 'add'], [NAMES.a, '--ip', A_IP, '--group', 'eng']);
    await weft(['member', 'add'], [NAMES.b, '--group', 'sales']);
    await weft(['member', 'add'], [NAMES.c, '--group', 'eng', '--public-key', publicKey]);

    const shown = { a: await show('a'), b: await show('b'), c: await show('c') };
    assert.equal(shown.a.ip, A_IP);
    for (const key of MEMBER_KEYS) {
      assert.equal(shown[key].disabled, false, JSON.stringify(shown[key]));
      assert.ok(
        anyContains([SUBNET], shown[key].ip),
        `${NAMES[key]}'s ip ${shown[key].ip} is outside ${SUBNET}`,
      );
      assert.ok(![GATEWAY_IP, '10.66.0.0', '10.66.0.255'].includes(shown[key].ip), shown[key].ip);
    }
    assert.equal(new Set(MEMBER_KEYS.map((k) => shown[k].ip)).size, 3, 'member ips are distinct');
    if (shown.c.publicKey !== undefined) assert.equal(shown.c.publicKey, publicKey);
    if (shown.c.hasPrivateKey !== undefined) assert.equal(shown.c.hasPrivateKey, false);
    t.diagnostic(`ips: ${MEMBER_KEYS.map((k) => `${NAMES[k]} ${shown[k].ip}`).join(', ')}`);

    const list = await weft(['member', 'list'], ['--json']);
    const listed = JSON.parse(list.stdout) as MemberJson[] | { items: MemberJson[] };
    const names = (Array.isArray(listed) ? listed : listed.items).map((m) => m.name).sort();
    assert.deepEqual(names, [NAMES.a, NAMES.b, NAMES.c]);

    for (const key of MEMBER_KEYS) {
      const printed = (await weft(['member', 'config'], [NAMES[key]])).stdout;
      const parsed = parseWgQuick(printed);
      assert.equal(parsed.peers.length, 1, printed);
      const peer = parsed.peers[0]!;
      assert.ok(
        (parsed.iface.get('address') ?? []).some((a) => a.split('/')[0] === shown[key].ip),
        `${NAMES[key]}'s config has Address ${shown[key].ip}:\n${printed}`,
      );
      assert.deepEqual(peer.get('endpoint'), [ENDPOINT], printed);
      const allowed = peer.get('allowedips') ?? [];
      assert.ok(anyContains(allowed, GATEWAY_IP), `${NAMES[key]}'s AllowedIPs lack the gateway:\n${printed}`);
      gatewayPublicKey ??= peer.get('publickey')?.[0];
      assert.equal(peer.get('publickey')?.[0], gatewayPublicKey, 'one gateway key');

      let config = printed;
      if (parsed.iface.has('dns')) {
        // No --dns was given; a DNS line would make wg-quick need resolvconf.
        t.diagnostic(
          `${NAMES[key]}'s config has a DNS line although init had no --dns; removed for wg-quick`,
        );
        config = replaceConfigLine(config, 'DNS', null);
      }
      if (key === 'a' || key === 'c') {
        for (const ip of [CLOUD.host, INTERNET.host, shown.a.ip, shown.c.ip]) {
          assert.ok(
            anyContains(allowed, ip),
            `${NAMES[key]} (eng) should route ${ip}: AllowedIPs ${allowed.join(', ')}`,
          );
        }
      } else {
        for (const ip of [CLOUD.host, INTERNET.host]) {
          assert.ok(
            !anyContains(allowed, ip),
            `${NAMES[key]} (sales) must not route ${ip}: ${allowed.join(', ')}`,
          );
        }
        assert.ok(
          anyContains(allowed, shown.a.ip),
          `bob may reach eng on tcp/${ALLOWED_PORT}: ${allowed.join(', ')}`,
        );
        // A member editing its config: everything goes into the tunnel, so the gateway has to refuse it.
        config = replaceConfigLine(
          config,
          'AllowedIPs',
          `AllowedIPs = ${[...allowed, CLOUD.subnet, INTERNET.subnet, SUBNET].join(', ')}`,
        );
      }
      if (key === 'c') {
        const placeholder = parsed.iface.get('privatekey')?.[0] ?? '';
        assert.ok(
          !/^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/.test(placeholder),
          `C brought its own key: the config must not hold a private key, got ${JSON.stringify(placeholder)}`,
        );
        config = replaceConfigLine(config, 'PrivateKey', `PrivateKey = ${privateKey}`);
      }
      members[key] = { name: NAMES[key], ip: shown[key].ip, printed, config };
    }
    t.diagnostic(
      `alice's AllowedIPs: ${parseWgQuick(member('a').printed).peers[0]?.get('allowedips')?.join(', ')}`,
    );
    t.diagnostic(
      `bob's AllowedIPs: ${parseWgQuick(member('b').printed).peers[0]?.get('allowedips')?.join(', ')}`,
    );
  });

  it("2. server run: ready; the clients come up with their members' addresses and reach the gateway", async (t) => {
    const { gw } = net();
    const started = Date.now();
    server = await startServer();
    t.diagnostic(`server ready after ${Date.now() - started} ms`);
    const addr = await gw.exec('ip', ['-4', '-o', 'addr', 'show', 'dev', serverIf]);
    assert.match(addr.stdout, new RegExp(`inet ${GATEWAY_IP.replaceAll('.', '\\.')}/24\\b`), addr.stdout);
    const forwarding = await gw.exec('cat', ['/proc/sys/net/ipv4/ip_forward']);
    assert.equal(forwarding.stdout.trim(), '1', 'IPv4 forwarding in the gateway namespace');

    for (const key of MEMBER_KEYS) {
      const m = member(key);
      m.client = await wgQuickUp(net().members[key], lab.ifname(`m${key}`), m.config);
      const addresses = await m.client.addresses();
      assert.ok(
        addresses.some((a) => a.split('/')[0] === m.ip),
        `${m.name}'s interface has ${addresses.join(', ')}, expected ${m.ip}`,
      );
    }
    assert.ok((await client('a').addresses()).some((a) => a.startsWith(`${A_IP}/`)));
    for (const key of MEMBER_KEYS) {
      const p = await ping(net().members[key], GATEWAY_IP, { count: 3, waitS: 3 });
      assert.equal(
        p.received,
        3,
        `${NAMES[key]} → gateway ${GATEWAY_IP}:\n${p.output}\n${server.describe()}`,
      );
    }
  });

  it('3. A reaches the cloud host, B is dropped at the gateway and counted', async (t) => {
    const { members: ns, cloud, cloudIf } = net();
    liveServer();
    client('a');
    const b = member('b');
    client('b');
    servers.cloud = tcpServer(cloud, '0.0.0.0', [CLOUD_PORT]);
    await servers.cloud.ready();

    const pa = await ping(ns.a, CLOUD.host, { count: 3, waitS: 2 });
    assert.equal(pa.received, 3, `alice → cloud:\n${pa.output}`);
    const ta = await tcpProbe(ns.a, CLOUD.host, CLOUD_PORT);
    assert.ok(ta.ok, `alice → cloud tcp: ${JSON.stringify(ta)}`);
    assert.equal(ta.reply.remote, A_IP, 'the routed subnet sees the member address (no NAT toward it)');

    const dropsBefore = await drops('b');
    const cap = await capture(cloud, cloudIf, `host ${b.ip}`);
    const pb = await ping(ns.b, CLOUD.host, { count: 3, intervalS: 0.2, waitS: 1 });
    const tb = await tcpProbe(ns.b, CLOUD.host, CLOUD_PORT, { timeoutMs: DROP_PROBE_MS });
    const leaked = await cap.stop();
    assert.equal(pb.received, 0, `bob → cloud must fail:\n${pb.output}`);
    assert.ok(!tb.ok, `bob → cloud tcp must fail: ${JSON.stringify(tb)}`);
    assert.equal(leaked, 0, `${leaked} packets from bob reached the cloud subnet`);
    assert.ok(!servers.cloud.connections().some((c) => c.remote === b.ip), 'the cloud host saw bob');
    const waitStart = Date.now();
    const status = await statusWhen('b', `policyDrops > ${dropsBefore}`, (s) => s.policyDrops > dropsBefore);
    t.diagnostic(
      `bob's policyDrops ${dropsBefore} → ${status.policyDrops} (reported within ${Date.now() - waitStart} ms); ` +
        `tcp probe: ${tb.ok ? 'ok' : tb.error}`,
    );
    const sa = await statusWhen(
      'a',
      'online with traffic',
      (s) => s.online && s.rxBytes > 0 && s.txBytes > 0,
    );
    t.diagnostic(`alice's status: ${JSON.stringify(sa)}`);
  });

  it('4. member to member follows the policy in each direction (and port); replies to allowed flows pass', async (t) => {
    const { members: ns } = net();
    liveServer();
    const [a, b, c] = [member('a'), member('b'), member('c')];
    for (const key of MEMBER_KEYS) client(key);
    for (const [from, to] of [
      ['a', c],
      ['c', a],
    ] as const) {
      const p = await ping(ns[from], to.ip, { count: 3, waitS: 2 });
      assert.equal(p.received, 3, `${NAMES[from]} → ${to.name} (eng ↔ eng):\n${p.output}`);
    }

    const onA = tcpServer(ns.a, '0.0.0.0', [ALLOWED_PORT, OTHER_PORT]);
    const onB = tcpServer(ns.b, '0.0.0.0', [ALLOWED_PORT]);
    try {
      await onA.ready();
      await onB.ready();
      const aDropsBefore = await drops('a');
      const bDropsBefore = await drops('b');

      const allowed = await tcpProbe(ns.b, a.ip, ALLOWED_PORT);
      assert.ok(
        allowed.ok,
        `bob → alice tcp/${ALLOWED_PORT} (sales → group:eng:tcp/${ALLOWED_PORT}): ${JSON.stringify(allowed)}`,
      );
      assert.equal(allowed.reply.remote, b.ip, "alice sees bob's own address");

      const otherPort = await tcpProbe(ns.b, a.ip, OTHER_PORT, { timeoutMs: DROP_PROBE_MS });
      assert.ok(!otherPort.ok, `bob → alice tcp/${OTHER_PORT} must fail: ${JSON.stringify(otherPort)}`);
      const bToA = await ping(ns.b, a.ip, { count: 2, intervalS: 0.2, waitS: 1 });
      assert.equal(bToA.received, 0, `bob → alice ping must fail:\n${bToA.output}`);
      const aToB = await ping(ns.a, b.ip, { count: 2, intervalS: 0.2, waitS: 1 });
      assert.equal(
        aToB.received,
        0,
        `alice → bob ping must fail (eng has no rule toward sales):\n${aToB.output}`,
      );
      const aToBTcp = await tcpProbe(ns.a, b.ip, ALLOWED_PORT, { timeoutMs: DROP_PROBE_MS });
      assert.ok(!aToBTcp.ok, `alice → bob tcp/${ALLOWED_PORT} must fail: ${JSON.stringify(aToBTcp)}`);

      assert.deepEqual(
        onA.connections(),
        [{ port: ALLOWED_PORT, remote: b.ip }],
        'alice accepted exactly the one allowed connection',
      );
      assert.deepEqual(onB.connections(), [], 'bob accepted nothing');
      t.diagnostic(
        `refused probes: bob→alice tcp/${OTHER_PORT} ${otherPort.ok ? 'ok' : otherPort.error}, ` +
          `alice→bob tcp/${ALLOWED_PORT} ${aToBTcp.ok ? 'ok' : aToBTcp.error}`,
      );
      const sb = await statusWhen('b', `policyDrops > ${bDropsBefore}`, (s) => s.policyDrops > bDropsBefore);
      t.diagnostic(`policyDrops: bob ${bDropsBefore} → ${sb.policyDrops}`);
      // alice's packets to bob reach the gateway only if her config routes bob's address into the tunnel.
      const aAllowed = parseWgQuick(a.config).peers[0]?.get('allowedips') ?? [];
      if (anyContains(aAllowed, b.ip)) {
        const sa = await statusWhen(
          'a',
          `policyDrops > ${aDropsBefore}`,
          (s) => s.policyDrops > aDropsBefore,
        );
        t.diagnostic(`policyDrops: alice ${aDropsBefore} → ${sa.policyDrops}`);
      } else {
        t.diagnostic(`alice's config does not route ${b.ip}: her packets to bob never leave her device`);
      }
    } finally {
      await onA.stop();
      await onB.stop();
    }
  });

  it("5. NAT: the internet host sees the gateway's egress address; one weft table, one masquerade rule", async (t) => {
    const { members: ns, inet, gw } = net();
    liveServer();
    client('a');
    client('b');
    servers.inet = tcpServer(inet, '0.0.0.0', [INTERNET_PORT]);
    await servers.inet.ready();
    const r = await tcpProbe(ns.a, INTERNET.host, INTERNET_PORT);
    assert.ok(r.ok, `alice → internet host: ${JSON.stringify(r)}`);
    assert.equal(r.reply.remote, INTERNET.gateway, 'the internet host sees the egress address');
    const seen = servers.inet.connections();
    assert.ok(seen.length > 0 && seen.every((c) => c.remote === INTERNET.gateway), JSON.stringify(seen));

    const rb = await tcpProbe(ns.b, INTERNET.host, INTERNET_PORT, { timeoutMs: DROP_PROBE_MS });
    assert.ok(!rb.ok, `bob (sales) → internet must fail: ${JSON.stringify(rb)}`);
    assert.equal(servers.inet.connections().length, seen.length, 'bob reached the internet host');

    const ruleset = await nftRuleset(gw);
    assert.equal(weftTables(ruleset).length, 1, ruleset);
    assert.equal(natRuleCount(ruleset), 1, ruleset);
    t.diagnostic(`weft nft table: ${weftTables(ruleset).join(', ')}`);
  });

  it("6. disabling B cuts it off within 1 s while A's transfer runs on; enabling B restores it", async (t) => {
    const { members: ns, cloud } = net();
    liveServer();
    client('a');
    const b = member('b');
    client('b');
    let pinger: ManagedProcess | undefined;
    let pingStart = 0;
    let commandStart = 0;
    let commandEnd = 0;
    const transfer = iperf3Intervals(ns.a, cloud, CLOUD.host, {
      seconds: 6,
      intervalS: 0.5,
      rate: '50M',
      onStarted: () => {
        pingStart = Date.now();
        pinger = pingTimeline(ns.b, GATEWAY_IP, { intervalS: 0.1, deadlineS: 5 });
      },
    });
    const disabling = (async () => {
      await delay(1_800);
      commandStart = Date.now();
      await weft(['member', 'disable'], [b.name]);
      commandEnd = Date.now();
    })();
    const [iperf] = await Promise.all([transfer, disabling]);
    const pingProc = need(pinger, 'the ping timeline');
    const replies = await pingFinished(pingProc, 10_000);
    // The ping kept sending (one echo request per 0.1 s) until well after the command: silence is not its doing.
    const transmitted = Number(/(\d+) packets transmitted/.exec(pingProc.stdout)?.[1] ?? 0);
    const lastSentMs = pingStart + (transmitted - 1) * 100;
    assert.ok(
      lastSentMs >= commandEnd + 1_500,
      `bob's ping stopped sending too early (${transmitted} sent): ${pingProc.describe()}`,
    );

    const before = replies.filter((r) => r.atMs >= commandStart - 1_000 && r.atMs < commandStart);
    assert.ok(
      before.length >= 5,
      `bob's pings flowed before the command: ${before.length} replies in the last second`,
    );
    const last = replies.at(-1)!;
    const late = replies.filter((r) => r.atMs > commandEnd + 1_000);
    const cutoffS = (last.atMs - commandEnd) / 1000;
    const replied = new Set(replies.map((r) => r.seq));
    let firstLost = last.seq + 1;
    for (let seq = replies[0]!.seq; seq <= last.seq; seq++) {
      if (!replied.has(seq) && pingStart + (seq - 1) * 100 >= commandStart - 1_000) {
        firstLost = seq;
        break;
      }
    }
    t.diagnostic(
      `disable: command took ${commandEnd - commandStart} ms; bob's last reply ${cutoffS.toFixed(3)} s after it ` +
        `returned (seq ${last.seq}); first lost seq ${firstLost}, sent ~${((pingStart + (firstLost - 1) * 100 - commandEnd) / 1000).toFixed(2)} s ` +
        `after it returned; ${replies.length} of ${transmitted} answered`,
    );
    assert.deepEqual(late, [], `bob still got replies more than 1 s after \`member disable\` returned`);
    assert.equal((await show('b')).disabled, true);

    assert.equal(iperf.code, 0, `alice's iperf3 failed: ${iperf.error ?? ''}`);
    assert.ok(iperf.intervals.length >= 10, `iperf3 intervals: ${JSON.stringify(iperf.intervals)}`);
    const sorted = iperf.intervals.map((i) => i.bytes).sort((x, y) => x - y);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    const min = sorted[0]!;
    t.diagnostic(
      `alice's transfer: ${iperf.receivedBytes} bytes received of ${iperf.sentBytes} sent, per 0.5 s interval ` +
        `min ${min} / median ${median} bytes, ${iperf.retransmits} retransmits`,
    );
    assert.ok(
      median > 0 && min >= median / 4,
      `alice's transfer stalled: ${JSON.stringify(iperf.intervals)}`,
    );
    assert.ok(iperf.receivedBytes >= iperf.sentBytes * 0.9, JSON.stringify(iperf));

    const enabledAt = Date.now();
    await weft(['member', 'enable'], [b.name]);
    const again = pingTimeline(ns.b, GATEWAY_IP, { intervalS: 0.2, deadlineS: 25 });
    try {
      await again.waitForOutput(/bytes from/, 25_000);
    } finally {
      await again.stop();
    }
    const restoredS = (Date.now() - enabledAt) / 1000;
    t.diagnostic(`enable: bob's first reply ${restoredS.toFixed(1)} s after \`member enable\` began`);
    assert.equal((await show('b')).disabled, false);
    // The gateway reaches out to bob's last endpoint when he is enabled again, so his client does not have to
    // wait out its own 15 s retry.
    assert.ok(restoredS <= 3, `bob's traffic came back only after ${restoredS} s`);
  });

  it('7. export → apply: "no changes" on the same store; a fresh store reproduces the state', async (t) => {
    for (const key of MEMBER_KEYS) member(key);
    const exported = (await weft(['export'])).stdout;
    const file = lab.file('export.yaml');
    await fsp.writeFile(file, exported, { mode: 0o600 });
    for (const key of MEMBER_KEYS) {
      const privateKey = parseWgQuick(member(key).config).iface.get('privatekey')?.[0] ?? '';
      assert.ok(
        privateKey.length > 0 && !exported.includes(privateKey),
        `the export holds ${NAMES[key]}'s private key`,
      );
    }
    const digest = exportDigest(exported);
    assert.deepEqual(
      digest.members.map((m) => [m.name, m.ip]),
      MEMBER_KEYS.map((k) => [NAMES[k], member(k).ip]).sort(),
      exported,
    );
    assert.deepEqual(digest.groups, ['eng', 'sales'], exported);
    assert.deepEqual(digest.routes, [CLOUD.subnet], exported);
    assert.equal(digest.policies.length, 4, exported);

    for (const round of [1, 2]) {
      const r = await weft(['apply'], ['-f', file]);
      assert.match(
        r.stdout + r.stderr,
        /no changes/i,
        `apply #${round} on the same store:\n${r.stdout}${r.stderr}`,
      );
    }

    const dir2 = lab.file('data2');
    await weft(
      ['server', 'init'],
      [
        '--endpoint',
        ENDPOINT,
        '--subnet',
        SUBNET,
        '--nat-egress',
        net().egressIf,
        '--interface',
        lab.ifname('wg2'),
        '--default-policy',
        'deny',
      ],
      { dir: dir2 },
    );
    const first = await weft(['apply'], ['-f', file], { dir: dir2 });
    assert.doesNotMatch(first.stdout, /no changes/i, `apply into a fresh store:\n${first.stdout}`);
    for (const key of MEMBER_KEYS) assert.match(first.stdout, new RegExp(NAMES[key]), first.stdout);
    const second = await weft(['apply'], ['-f', file], { dir: dir2 });
    assert.match(
      second.stdout + second.stderr,
      /no changes/i,
      `second apply into the fresh store:\n${second.stdout}`,
    );
    const exported2 = (await weft(['export'], [], { dir: dir2 })).stdout;
    assert.deepEqual(
      exportDigest(exported2),
      digest,
      `export of the fresh store:\n${exported2}\nfirst:\n${exported}`,
    );
    t.diagnostic(`apply into a fresh store: ${first.stdout.trim().split('\n').length} lines of changes`);
  });

  it('8. C, with its own key pair, handshakes with the gateway and reaches it', async (t) => {
    const { members: ns } = net();
    liveServer();
    client('c');
    const p = await ping(ns.c, GATEWAY_IP, { count: 3, waitS: 2 });
    assert.equal(p.received, 3, `carol → gateway:\n${p.output}`);
    const dump = await client('c').dump();
    assert.equal(dump.interface.publicKey, need(cKeys, "C's keys").publicKey);
    assert.equal(dump.peers.length, 1);
    assert.equal(dump.peers[0]!.publicKey, gatewayPublicKey);
    assert.ok(dump.peers[0]!.latestHandshake > 0, 'carol has a handshake with the gateway');
    const s = await statusWhen('c', 'online', (st) => st.online && st.rxBytes > 0);
    t.diagnostic(`carol's status: ${JSON.stringify(s)}`);
  });

  it('9. SIGTERM removes the interface and NAT rules; a restart installs the rule once and NAT works again', async (t) => {
    client('a');
    await stopServer(t);
    const { gw, members: ns } = net();
    server = await startServer();
    const ruleset = await nftRuleset(gw);
    assert.equal(weftTables(ruleset).length, 1, `after the restart:\n${ruleset}`);
    assert.equal(natRuleCount(ruleset), 1, `after the restart:\n${ruleset}`);

    // The restarted gateway has no sessions: make A handshake again at once rather than after wireguard-go's
    // 15 s "sent but heard nothing" timer.
    await client('a').rehandshake();
    const r = await tcpProbe(ns.a, INTERNET.host, INTERNET_PORT, { timeoutMs: 8_000 });
    assert.ok(r.ok, `alice → internet after the restart: ${JSON.stringify(r)}`);
    assert.equal(r.reply.remote, INTERNET.gateway);

    await stopServer(t);
    t.diagnostic(`suite time ${((Date.now() - suiteStart) / 1000).toFixed(1)} s`);
  });
});
