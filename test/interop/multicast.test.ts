/**
 * Multicast across the overlay with stock WireGuard clients: `weft server run` with multicast on, four
 * members on real clients (wg-quick + wireguard-go), and real sockets joining groups (so the members' kernels
 * send real IGMPv3, or IGMPv2 where forced). Each step is one `it`, in order.
 *
 *   1. init (default allow), groups eng and muted, a policy denying muted → 239.2.0.0/16, a receive rule
 *      letting eng receive every group (`--receive`; muted has none), multicast on; members alice, bob, carol
 *      (eng) and dave (muted); their configs route 224.0.0.0/4 and the subnet.
 *   2. server run; the clients come up; carol's interface is forced to IGMPv2.
 *   3. bob (IGMPv3) and carol (IGMPv2) join 239.1.1.1; the gateway learns both joins. alice sends 20
 *      datagrams with TTL 4: bob and carol get all of them with TTL 3 (one routed hop); dave, who did not join,
 *      gets none on his interface, and nothing comes back to alice.
 *   4. TTL 1 to a routed group does not leave alice's link: nobody gets it.
 *   5. mDNS-style 224.0.0.251 with TTL 255 from alice to bob: received with TTL 255 (link-local: unchanged).
 *   6. Policy: dave, denied sending to 239.2.0.0/16, sends to 239.2.2.2 which bob joined: nothing arrives, and
 *      dave's policy drops go up.
 *   7. bob leaves (IGMPv3): the gateway drops him at once (measured), and the next datagrams reach carol only.
 *   8. carol leaves (IGMPv2): delivery stops within the last member query time (2 × 1 s; measured), while
 *      alice keeps sending.
 *   9. IPv6: bob (MLDv2) and carol (forced to MLDv1) join ff15::1:1 through real sockets (IPV6_JOIN_GROUP);
 *      the gateway, MLD querier from fe80::1, learns both from reports sent from the members' link-local
 *      addresses. alice sends with hop limit 4: bob and carol get every datagram with hop limit 3, from
 *      alice's IPv6 address; dave gets none, nothing comes back to alice.
 *  10. bob leaves (MLDv2): dropped at once (measured); the next datagrams reach carol only.
 *  11. erin, an OpenVPN member (the real openvpn 2.6 client with her `.ovpn`), gets 224.0.0.0/4 and ff00::/8
 *      routed into her tun by the push, joins 239.1.1.1 (IGMPv3) and ff15::1:1 (MLDv2): the gateway learns
 *      both (ovpn:erin), and alice's datagrams (WireGuard) reach her, TTL / hop limit 4 → 3.
 *  12. erin sends to 239.3.3.3, which bob joined, and to ff15::1:1 (carol): both receive every datagram from
 *      her address.
 *  13. `weft multicast list` (what the running server writes to the data directory) shows the groups with
 *      their receivers and senders, the packets, and dave's policy drops; the same as JSON.
 *  14. IPv6 link-local, as mDNS sends it: bob and carol join ff02::fb; alice sends to ff02::fb:5353 with hop
 *      limit 255, from her fe80:: address (the kernel picks a link-local source for a link-local group):
 *      both get every datagram from that fe80:: address with hop limit 255 (their AllowedIPs hold fe80::/64).
 *      A unicast datagram from alice's fe80:: to carol's fe80:: is not routed: carol gets none of them.
 *  15. frank, an OpenVPN member over TCP (the real openvpn 2.6 client, `--proto-force tcp-client`), joins
 *      239.1.1.1 and ff15::1:1: alice's datagrams reach him (TTL / hop limit 4 → 3), and his to 239.3.3.3 reach
 *      bob.
 *  16. IPv6 link-local between OpenVPN members: frank (TCP) joins ff02::fb; erin (UDP) sends mDNS-style from
 *      her tun's fe80:: address with hop limit 255: frank gets every datagram, source and hop limit unchanged;
 *      and the other way round.
 *  17. The gateway's host as a receiver, with short querier timers (group membership interval 7 s): a socket
 *      on the gateway joins 239.4.4.4 and ff15::4:4 on the TUN device; the host is queried (IGMP from
 *      0.0.0.0, MLD from fe80::1; tcpdump on the TUN device), answers, and stays joined past the interval;
 *      alice's datagrams reach it; its leave ends the membership.
 *  18. Receive rules: bob (eng, allowed to receive any group) and dave (muted, no receive rule) join
 *      239.5.5.5; alice sends 10: bob gets 10/10, dave 0/10, and `weft multicast list` counts 10
 *      `policy-receive` drops on alice's port. `weft policy allow muted 239.5.0.0/16 --receive` while the
 *      server runs: the next 10 reach dave too; `weft policy deny muted 239.5.5.0/24 --receive`: none again.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  capture,
  interopSkip,
  Lab,
  parsePcap,
  waitFor,
  type ExecResult,
  type ManagedProcess,
  type Netns,
} from './harness.js';
import { weftCli, WEFT_MAIN } from './gateway-lab.js';
import { parseWgQuick, replaceConfigLine, wgQuickUp, type WgQuickClient } from './people-lab.js';
import { MulticastPeer } from './multicast-peer.js';

const TOOLS = ['ip', 'wireguard-go', 'wg', 'wg-quick', 'python3', 'ping', 'openvpn', 'tcpdump'];
const SUBNET = '10.67.0.0/24';
const SUBNET6 = 'fd67::/64';
const GATEWAY_IP = '10.67.0.1';
const UNDERLAY = '192.168.71.1';
const PORT = 51820;
const GROUP = '239.1.1.1';
const GROUP6 = 'ff15::1:1';
const DENIED_GROUP = '239.2.2.2';
const ERIN_GROUP = '239.3.3.3';
const MDNS = '224.0.0.251';
const MDNS6 = 'ff02::fb';
const DATA_PORT = 5000;
const MDNS_PORT = 5353;
const HOST_GROUP = '239.4.4.4';
const HOST_GROUP6 = 'ff15::4:4';
const KEYS = ['a', 'b', 'c', 'd'] as const;
type Key = (typeof KEYS)[number];
const NAMES: Record<Key, string> = { a: 'alice', b: 'bob', c: 'carol', d: 'dave' };
const PEER_LIFETIME_S = 300;
/** How long the gateway may take to report policy drops to the store. */
const STATUS_WAIT_MS = 8_000;

interface Member {
  ip: string;
  ip6: string;
  config: string;
  client?: WgQuickClient;
  peer?: MulticastPeer;
}

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`prerequisite missing: ${what} (an earlier step failed)`);
  return value;
}

describe(
  'multicast: `weft server run` replicating to real WireGuard and OpenVPN clients',
  { skip: interopSkip(TOOLS) },
  () => {
    let lab: Lab;
    let gw: Netns | undefined;
    const ns: Partial<Record<Key, Netns>> = {};
    const members: Partial<Record<Key, Member>> = {};
    let dataDir = '';
    let serverIf = '';
    let server: ManagedProcess | undefined;
    interface OpenVpnMember {
      ip: string;
      ip6: string;
      profile: string;
      client?: ManagedProcess;
      peer?: MulticastPeer;
    }
    /** erin: an OpenVPN member. */
    let erinNs: Netns | undefined;
    let erin: OpenVpnMember | undefined;
    /** frank: an OpenVPN member over TCP. */
    let frankNs: Netns | undefined;
    let frank: OpenVpnMember | undefined;
    let hostPeer: MulticastPeer | undefined;

    before(async () => {
      assert.ok(fs.existsSync(WEFT_MAIN), `${WEFT_MAIN} is missing: build first (npm run build)`);
      lab = await Lab.create('mcast', { tools: TOOLS });
      dataDir = lab.file('data');
      serverIf = lab.ifname('wg');
      lab.registerWgInterface(serverIf);
      const g = await lab.netns('gw');
      const bridge = lab.ifname('br');
      await g.exec('ip', ['link', 'add', bridge, 'type', 'bridge']);
      await g.exec('ip', ['link', 'set', bridge, 'up']);
      await g.exec('ip', ['addr', 'add', `${UNDERLAY}/24`, 'dev', bridge]);
      for (const [i, key] of KEYS.entries()) {
        const m = await lab.netns(`m${key}`);
        const { aIf } = await lab.veth(g, m, {
          aName: `p${key}`,
          bName: `u${key}`,
          bAddr: `192.168.71.${11 + i}/24`,
        });
        await g.exec('ip', ['link', 'set', aIf, 'master', bridge]);
        ns[key] = m;
      }
      erinNs = await lab.netns('me');
      const { aIf } = await lab.veth(g, erinNs, { aName: 'pe', bName: 'ue', bAddr: '192.168.71.15/24' });
      await g.exec('ip', ['link', 'set', aIf, 'master', bridge]);
      frankNs = await lab.netns('mf');
      const f = await lab.veth(g, frankNs, { aName: 'pf', bName: 'uf', bAddr: '192.168.71.16/24' });
      await g.exec('ip', ['link', 'set', f.aIf, 'master', bridge]);
      gw = g;
    });

    after(async () => {
      if (!lab) return;
      try {
        for (const m of Object.values(members)) m.peer?.process.kill('SIGTERM');
        erin?.peer?.process.kill('SIGTERM');
        frank?.peer?.process.kill('SIGTERM');
        hostPeer?.process.kill('SIGTERM');
        await erin?.client?.stop(3_000).catch(() => undefined);
        await frank?.client?.stop(3_000).catch(() => undefined);
        if (server?.running) await server.stop(8_000).catch(() => undefined);
        for (const m of Object.values(members)) await m.client?.down().catch(() => undefined);
      } finally {
        await lab.cleanup();
      }
    });

    const weft = (command: readonly string[], args: readonly string[] = []): Promise<ExecResult> =>
      weftCli(need(gw, 'the gateway namespace'), [...command, '--data', dataDir, ...args], {
        timeoutMs: 20_000,
      });
    const member = (key: Key): Member => need(members[key], `member ${NAMES[key]}`);
    const peer = (key: Key): MulticastPeer => need(members[key]?.peer, `${NAMES[key]}'s multicast probe`);
    const liveServer = (): ManagedProcess => {
      const proc = need(server, 'a running server');
      if (!proc.running) throw new Error(`the gateway is no longer running: ${proc.describe()}`);
      return proc;
    };
    /** Waits for a gateway log line; returns the time it was logged (its ISO prefix, ms since the epoch). */
    const logLine = async (pattern: RegExp, timeoutMs: number): Promise<number> => {
      const proc = liveServer();
      await proc.waitForOutput(pattern, timeoutMs);
      const line = proc.stderr.split('\n').find((l) => pattern.test(l)) ?? '';
      const at = Date.parse(line.split(' ')[0] ?? '');
      return Number.isNaN(at) ? Date.now() : at;
    };
    const drops = async (key: Key): Promise<number> => {
      const r = await weft(['member', 'show'], [NAMES[key], '--json']);
      const shown = JSON.parse(r.stdout) as { status: { policyDrops: number } | null };
      return shown.status?.policyDrops ?? 0;
    };

    it('1. init with multicast on; member configs route 224.0.0.0/4 and the member subnet', async (t) => {
      await weft(
        ['server', 'init'],
        [
          '--endpoint',
          `${UNDERLAY}:${PORT}`,
          '--subnet',
          SUBNET,
          '--subnet6',
          SUBNET6,
          '--interface',
          serverIf,
          '--default-policy',
          'allow',
        ],
      );
      await weft(['group', 'add'], ['eng']);
      await weft(['group', 'add'], ['muted']);
      await weft(['policy', 'deny'], ['muted', '239.2.0.0/16']);
      // Deny by default for receiving: eng may receive every group, muted none (step 15).
      const receive = await weft(['policy', 'allow'], ['eng', 'any', '--receive']);
      assert.match(receive.stdout, /allow eng any receive/, receive.stdout);
      const off = await weft(['server', 'multicast']);
      assert.equal(off.stdout.trim(), 'off', 'multicast is off by default');
      const on = await weft(['server', 'multicast'], ['on']);
      assert.match(on.stdout, /multicast on/, on.stdout);
      assert.equal((await weft(['server', 'multicast'])).stdout.trim(), 'on');
      for (const key of KEYS) {
        await weft(['member', 'add'], [NAMES[key], '--group', key === 'd' ? 'muted' : 'eng']);
        const shown = JSON.parse((await weft(['member', 'show'], [NAMES[key], '--json'])).stdout) as {
          ip: string;
          ip6: string;
        };
        let config = (await weft(['member', 'config'], [NAMES[key]])).stdout;
        const allowed = parseWgQuick(config).peers[0]?.get('allowedips') ?? [];
        for (const range of ['224.0.0.0/4', SUBNET, 'ff00::/8', SUBNET6, 'fe80::/64'])
          assert.ok(
            allowed.includes(range),
            `${NAMES[key]}'s AllowedIPs lack ${range}: ${allowed.join(', ')}`,
          );
        const addresses = parseWgQuick(config).iface.get('address') ?? [];
        assert.ok(
          addresses.some((a) => a.startsWith('fe80::') && a.endsWith('/64')),
          `${NAMES[key]}'s Address has a link-local address for MLD: ${addresses.join(', ')}`,
        );
        if (parseWgQuick(config).iface.has('dns')) config = replaceConfigLine(config, 'DNS', null);
        members[key] = { ip: shown.ip, ip6: shown.ip6, config };
      }
      t.diagnostic(
        `alice's AllowedIPs: ${parseWgQuick(member('a').config).peers[0]?.get('allowedips')?.join(', ')}`,
      );
      await weft(['member', 'add'], ['erin', '--group', 'eng']);
      const shown = JSON.parse((await weft(['member', 'show'], ['erin', '--json'])).stdout) as {
        ip: string;
        ip6: string;
      };
      const profile = (await weft(['member', 'config'], ['erin', '--openvpn'])).stdout;
      erin = { ip: shown.ip, ip6: shown.ip6, profile };
      await weft(['member', 'add'], ['frank', '--group', 'eng']);
      const shownF = JSON.parse((await weft(['member', 'show'], ['frank', '--json'])).stdout) as {
        ip: string;
        ip6: string;
      };
      const profileF = (await weft(['member', 'config'], ['frank', '--openvpn'])).stdout;
      assert.match(profileF, /^remote \S+ \d+ tcp-client$/m, 'the profile has a TCP remote');
      frank = { ip: shownF.ip, ip6: shownF.ip6, profile: profileF };
    });

    it('2. server run; the clients come up (carol forced to IGMPv2)', async (t) => {
      const g = need(gw, 'the gateway namespace');
      server = g.spawn(process.execPath, [WEFT_MAIN, 'server', 'run', '--data', dataDir]);
      await server.waitForOutput(/ready/, 20_000);
      assert.match(server.stderr, /multicast: on/, server.describe());
      for (const key of KEYS) {
        const m = member(key);
        const ifname = lab.ifname(`m${key}`);
        const n = need(ns[key], `${NAMES[key]}'s namespace`);
        m.client = await wgQuickUp(n, ifname, m.config);
        const link = await n.exec('ip', ['-o', 'link', 'show', 'dev', ifname]);
        // wireguard-go's TUN device has the MULTICAST flag (the kernel sends IGMP only on such interfaces).
        assert.match(link.stdout, /[<,]MULTICAST[,>]/, `${ifname}: ${link.stdout}`);
        if (key === 'c') {
          await n.sysctl(`net/ipv4/conf/${ifname}/force_igmp_version`, 2);
          await n.sysctl(`net/ipv6/conf/${ifname}/force_mld_version`, 1);
        }
        const ping = await n.exec('ping', ['-c', '1', '-W', '3', GATEWAY_IP], { allowFail: true });
        assert.equal(ping.code, 0, `${NAMES[key]} reaches the gateway: ${ping.stdout}${ping.stderr}`);
        m.peer = await MulticastPeer.start(n, ifname, m.ip, [DATA_PORT, MDNS_PORT], PEER_LIFETIME_S);
      }
      t.diagnostic(`wireguard-go interface flags: MULTICAST present by default`);
    });

    it('3. bob (IGMPv3) and carol (IGMPv2) join; alice reaches both, TTL decremented; dave gets nothing', async (t) => {
      const joinedAt = Date.now();
      await peer('b').join(GROUP);
      await peer('c').join(GROUP);
      await logLine(new RegExp(`multicast: wg:bob joined ${GROUP.replaceAll('.', '\\.')}`), 5_000);
      await logLine(new RegExp(`multicast: wg:carol joined ${GROUP.replaceAll('.', '\\.')}`), 5_000);
      t.diagnostic(`both joins learned ${Date.now() - joinedAt} ms after the sockets joined`);

      await peer('a').send(GROUP, DATA_PORT, 4, 20, 20, 'g1');
      await delay(500);
      for (const key of ['b', 'c'] as const) {
        const rx = peer(key).tagged('rx', 'g1');
        assert.equal(
          rx.length,
          20,
          `${NAMES[key]} received ${rx.length}/20: ${JSON.stringify(rx.slice(0, 3))}`,
        );
        assert.ok(
          rx.every((e) => e.ttl === 3 && e.src === member('a').ip),
          `TTL 4 → 3 after the gateway, source alice: ${JSON.stringify(rx[0])} (sent with ${JSON.stringify(
            peer('a')
              .tagged('sent-wire', 'g1')
              .map((e) => e.ttl),
          )})`,
        );
      }
      assert.equal(peer('d').tagged('wire', 'g1').length, 0, 'dave did not join: nothing on his interface');
      assert.equal(peer('a').tagged('wire', 'g1').length, 0, 'nothing comes back to the sender');
    });

    it("4. TTL 1 to a routed group does not leave the sender's link", async () => {
      await peer('a').send(GROUP, DATA_PORT, 1, 5, 20, 'ttl1');
      await delay(500);
      for (const key of ['b', 'c', 'd'] as const)
        assert.equal(peer(key).tagged('wire', 'ttl1').length, 0, `${NAMES[key]} got a TTL 1 packet`);
    });

    it('5. mDNS-style 224.0.0.251 with TTL 255: received with TTL 255', async () => {
      await peer('b').join(MDNS);
      await logLine(/multicast: wg:bob joined 224\.0\.0\.251/, 5_000);
      await peer('a').send(MDNS, MDNS_PORT, 255, 5, 20, 'mdns');
      await delay(500);
      const rx = peer('b').tagged('rx', 'mdns');
      assert.equal(rx.length, 5, `bob received ${rx.length}/5`);
      assert.ok(
        rx.every((e) => e.ttl === 255),
        `TTL kept: ${rx.map((e) => e.ttl).join(',')}`,
      );
      assert.equal(peer('d').tagged('wire', 'mdns').length, 0);
    });

    it('6. policy: dave may not send to 239.2.0.0/16; his datagrams are dropped and counted', async (t) => {
      await peer('b').join(DENIED_GROUP);
      await logLine(/multicast: wg:bob joined 239\.2\.2\.2/, 5_000);
      const before = await drops('d');
      await peer('d').send(DENIED_GROUP, DATA_PORT, 4, 10, 20, 'denied');
      await delay(500);
      assert.equal(peer('b').tagged('wire', 'denied').length, 0, 'a denied sender reaches nobody');
      let now = before;
      await waitFor(
        "dave's policy drops in his status",
        async () => {
          now = await drops('d');
          return now >= before + 10;
        },
        { timeoutMs: STATUS_WAIT_MS, intervalMs: 250 },
      );
      t.diagnostic(`dave's policy drops: ${before} → ${now}`);
    });

    it('7. bob leaves (IGMPv3): dropped at once; the next datagrams reach carol only', async (t) => {
      const left = await peer('b').leave(GROUP);
      const seen = await logLine(/multicast: wg:bob left \(leave\) 239\.1\.1\.1/, 3_000);
      t.diagnostic(
        `IGMPv3 leave: the gateway dropped bob ${Math.round(seen - left.t)} ms after the socket left`,
      );
      await peer('a').send(GROUP, DATA_PORT, 4, 10, 20, 'g2');
      await delay(500);
      assert.equal(peer('b').tagged('wire', 'g2').length, 0, 'nothing for bob after his leave');
      assert.equal(peer('c').tagged('rx', 'g2').length, 10, 'carol still gets every datagram');
    });

    it('8. carol leaves (IGMPv2): delivery stops within the last member query time', async (t) => {
      const sending = peer('a').send(GROUP, DATA_PORT, 4, 50, 100, 'g3');
      await delay(1_000);
      const left = await peer('c').leave(GROUP);
      const seen = await logLine(/multicast: wg:carol left \(expired\) 239\.1\.1\.1/, 6_000);
      await sending;
      await delay(300);
      const wire = peer('c').tagged('wire', 'g3');
      const after = wire.filter((e) => e.t > left.t);
      const last = wire.length > 0 ? Math.max(...wire.map((e) => e.t)) : left.t;
      t.diagnostic(
        `IGMPv2 leave: gateway expiry ${Math.round(seen - left.t)} ms after the leave; ` +
          `last datagram on carol's interface ${Math.round(last - left.t)} ms after it (${after.length} arrived after the leave)`,
      );
      assert.ok(wire.length >= 5, `carol got datagrams before she left (${wire.length})`);
      assert.ok(
        last - left.t < 3_000,
        `delivery stopped within 3 s of the leave: ${Math.round(last - left.t)} ms`,
      );
      assert.ok(seen - left.t < 3_000, 'the gateway expired the membership within 2 s + a tick');
    });

    it('9. IPv6: bob (MLDv2) and carol (MLDv1) join ff15::1:1; alice reaches both, hop limit decremented', async (t) => {
      const joinedAt = Date.now();
      await peer('b').join(GROUP6);
      await peer('c').join(GROUP6);
      await logLine(/multicast: wg:bob joined ff15::1:1/, 5_000);
      await logLine(/multicast: wg:carol joined ff15::1:1/, 5_000);
      t.diagnostic(`both MLD joins learned ${Date.now() - joinedAt} ms after the sockets joined`);

      await peer('a').send(GROUP6, DATA_PORT, 4, 20, 20, 'v6a');
      await delay(500);
      for (const key of ['b', 'c'] as const) {
        const rx = peer(key).tagged('rx', 'v6a');
        assert.equal(
          rx.length,
          20,
          `${NAMES[key]} received ${rx.length}/20: ${JSON.stringify(rx.slice(0, 3))}`,
        );
        assert.ok(
          rx.every((e) => e.ttl === 3 && e.src === member('a').ip6),
          `hop limit 4 → 3 after the gateway, source alice (${member('a').ip6}): ${JSON.stringify(rx[0])}`,
        );
      }
      assert.equal(peer('d').tagged('wire', 'v6a').length, 0, 'dave did not join: nothing on his interface');
      assert.equal(peer('a').tagged('wire', 'v6a').length, 0, 'nothing comes back to the sender');
    });

    it('10. IPv6: bob leaves (MLDv2): dropped at once; the next datagrams reach carol only', async (t) => {
      const left = await peer('b').leave(GROUP6);
      const seen = await logLine(/multicast: wg:bob left \(leave\) ff15::1:1/, 3_000);
      t.diagnostic(
        `MLDv2 leave: the gateway dropped bob ${Math.round(seen - left.t)} ms after the socket left`,
      );
      await peer('a').send(GROUP6, DATA_PORT, 4, 10, 20, 'v6b');
      await delay(500);
      assert.equal(peer('b').tagged('wire', 'v6b').length, 0, 'nothing for bob after his leave');
      assert.equal(peer('c').tagged('rx', 'v6b').length, 10, 'carol still gets every datagram');
    });

    /** The tun device holding `ip` in `n` (an OpenVPN client's). */
    const tunOf = async (n: Netns, ip: string): Promise<string> => {
      const text = (await n.exec('ip', ['-o', 'addr', 'show'])).stdout;
      const tun = new RegExp(`^\\d+: (\\S+)\\s+inet ${ip.replaceAll('.', '\\.')}/`, 'm').exec(text)?.[1];
      assert.ok(tun, `a tun device holds ${ip}: ${text}`);
      return tun;
    };

    /**
     * Starts the member's real openvpn client with the profile Weft printed (`transport`: the options that pick UDP or
     * TCP) and waits until it is up; returns its tun device.
     */
    const startOpenVpn = async (
      m: OpenVpnMember,
      n: Netns,
      name: string,
      transport: readonly string[],
    ): Promise<string> => {
      const file = await lab.writeSecret(`${name}-${Date.now()}.ovpn`, m.profile);
      m.client = n.spawn('openvpn', [
        '--config',
        file,
        '--verb',
        '3',
        ...transport,
        '--connect-retry',
        '1',
        '1',
      ]);
      await m.client.waitForOutput(/Initialization Sequence Completed/, 30_000);
      return tunOf(n, m.ip);
    };

    /**
     * A probe on the OpenVPN member's tun joins GROUP and GROUP6; alice sends 20 datagrams to each (tagged `tag` + 4
     * or 6): every one arrives, with TTL / hop limit 4 → 3, from alice. Returns the counts received.
     */
    const joinAndHearAlice = async (
      m: OpenVpnMember,
      n: Netns,
      name: string,
      tun: string,
      tag: string,
    ): Promise<{ peer: MulticastPeer; v4: number; v6: number }> => {
      const probe = await MulticastPeer.start(n, tun, m.ip, [DATA_PORT, MDNS_PORT], PEER_LIFETIME_S);
      m.peer = probe;
      await probe.join(GROUP);
      await probe.join(GROUP6);
      await logLine(new RegExp(`multicast: ovpn:${name} joined 239\\.1\\.1\\.1`), 5_000);
      await logLine(new RegExp(`multicast: ovpn:${name} joined ff15::1:1`), 5_000);
      await peer('a').send(GROUP, DATA_PORT, 4, 20, 20, `${tag}4`);
      await peer('a').send(GROUP6, DATA_PORT, 4, 20, 20, `${tag}6`);
      await delay(500);
      const rx4 = probe.tagged('rx', `${tag}4`);
      const rx6 = probe.tagged('rx', `${tag}6`);
      assert.equal(rx4.length, 20, `${name} received ${rx4.length}/20 (IPv4)`);
      assert.equal(rx6.length, 20, `${name} received ${rx6.length}/20 (IPv6)`);
      assert.ok(
        rx4.every((x) => x.ttl === 3 && x.src === member('a').ip),
        `TTL 3, from alice: ${JSON.stringify(rx4[0])}`,
      );
      assert.ok(
        rx6.every((x) => x.ttl === 3 && x.src === member('a').ip6),
        `hop limit 3, from alice: ${JSON.stringify(rx6[0])}`,
      );
      return { peer: probe, v4: rx4.length, v6: rx6.length };
    };

    it('11. erin (OpenVPN) joins 239.1.1.1 and ff15::1:1; alice (WireGuard) reaches her', async (t) => {
      const e = need(erin, 'erin');
      const n = need(erinNs, "erin's namespace");
      const tun = await startOpenVpn(e, n, 'erin', ['--proto', 'udp']);
      const routes4 = (await n.exec('ip', ['route', 'show'])).stdout;
      const routes6 = (await n.exec('ip', ['-6', 'route', 'show'])).stdout;
      assert.match(routes4, /^224\.0\.0\.0\/4 /m, `the push routes 224.0.0.0/4 into the tunnel: ${routes4}`);
      assert.match(routes6, /^ff00::\/8 /m, `the push routes ff00::/8 into the tunnel: ${routes6}`);
      const heard = await joinAndHearAlice(e, n, 'erin', tun, 'ov');
      t.diagnostic(`erin received ${heard.v4}/20 over IPv4 and ${heard.v6}/20 over IPv6`);
      assert.equal(peer('d').tagged('wire', 'ov4').length, 0, 'dave did not join');
    });

    it('12. erin (OpenVPN) sends: bob gets 239.3.3.3, carol ff15::1:1', async () => {
      const e = need(erin?.peer, "erin's multicast probe");
      await peer('b').join(ERIN_GROUP);
      await logLine(/multicast: wg:bob joined 239\.3\.3\.3/, 5_000);
      await e.send(ERIN_GROUP, DATA_PORT, 4, 20, 20, 'fe4');
      await e.send(GROUP6, DATA_PORT, 4, 20, 20, 'fe6');
      await delay(500);
      const bob = peer('b').tagged('rx', 'fe4');
      const carol = peer('c').tagged('rx', 'fe6');
      assert.equal(bob.length, 20, `bob received ${bob.length}/20 from erin`);
      assert.ok(
        bob.every((x) => x.src === need(erin, 'erin').ip && x.ttl === 3),
        JSON.stringify(bob[0]),
      );
      assert.equal(carol.length, 20, `carol received ${carol.length}/20 from erin`);
      assert.ok(
        carol.every((x) => x.src === need(erin, 'erin').ip6 && x.ttl === 3),
        JSON.stringify(carol[0]),
      );
      assert.equal(peer('d').tagged('wire', 'fe4').length, 0, 'dave did not join');
    });

    it('13. `weft multicast list`: groups, receivers, senders, packets, drops and why', async (t) => {
      interface Listed {
        at: string;
        groups: {
          group: string;
          receivers: { port: string; expiresInS: number | null }[];
          packets: number;
          senders: { port: string; packets: number }[];
        }[];
        ports: { port: string; sent: number; received: number; drops: Record<string, number> }[];
        drops: Record<string, number>;
      }
      let listed: Listed | undefined;
      // The server writes its status every 2 s: wait for one written after step 12.
      const since = Date.now();
      await waitFor(
        'a multicast status written after step 12',
        async () => {
          const r = await weft(['multicast', 'list'], ['--json']);
          listed = JSON.parse(r.stdout) as Listed;
          return Date.parse(listed.at) > since;
        },
        { timeoutMs: 8_000, intervalMs: 500 },
      );
      const l = need(listed, 'the listed status');
      const group = (g: string) => l.groups.find((x) => x.group === g);
      const g3 = group(ERIN_GROUP);
      assert.deepEqual(
        g3?.receivers.map((r) => r.port),
        ['wg:bob'],
        JSON.stringify(l.groups),
      );
      assert.deepEqual(g3?.senders, [{ port: 'ovpn:erin', packets: 20 }]);
      assert.ok((g3?.receivers[0]?.expiresInS ?? 0) > 200, 'a fresh membership: ~260 s left');
      const g6 = group(GROUP6);
      assert.deepEqual(g6?.receivers.map((r) => r.port).sort(), ['ovpn:erin', 'wg:carol']);
      assert.ok((g6?.packets ?? 0) >= 50, `ff15::1:1 counted alice's and erin's packets: ${g6?.packets}`);
      const dave = l.ports.find((p) => p.port === 'wg:dave');
      assert.equal(dave?.drops['policy-send'], 10, JSON.stringify(dave));
      assert.ok((l.drops['policy-send'] ?? 0) >= 10);
      const text = (await weft(['multicast', 'list'])).stdout;
      assert.match(text, /group 239\.3\.3\.3: 20 packet\(s\), 20 copies/, text);
      assert.match(text, /senders: +ovpn:erin \(20\)/, text);
      t.diagnostic(text);
    });
    it("14. IPv6 link-local: mDNS to ff02::fb from alice's fe80:: reaches bob and carol, hop limit 255", async (t) => {
      await peer('b').join(MDNS6);
      await peer('c').join(MDNS6);
      await logLine(/multicast: wg:bob joined ff02::fb/, 5_000);
      await logLine(/multicast: wg:carol joined ff02::fb/, 5_000);
      await peer('a').send(MDNS6, MDNS_PORT, 255, 10, 20, 'll6');
      await delay(500);
      const sources = new Set<string>();
      for (const key of ['b', 'c'] as const) {
        const rx = peer(key).tagged('rx', 'll6');
        assert.equal(
          rx.length,
          10,
          `${NAMES[key]} received ${rx.length}/10: ${JSON.stringify(rx.slice(0, 3))}`,
        );
        for (const e of rx) sources.add(e.src.split('%')[0]!);
        assert.ok(
          rx.every((e) => e.ttl === 255 && e.src.startsWith('fe80:')),
          `hop limit 255, from a link-local source: ${JSON.stringify(rx[0])}`,
        );
      }
      // One sender: every copy carries alice's one link-local source.
      assert.equal(sources.size, 1, [...sources].join(', '));
      t.diagnostic(`alice sent from ${[...sources].join('')}; bob and carol got 10/10 each, hop limit 255`);
      assert.equal(peer('d').tagged('wire', 'll6').length, 0, 'dave did not join ff02::fb');
      assert.equal(peer('a').tagged('wire', 'll6').length, 0, 'nothing comes back to the sender');

      // Unicast between link-local addresses is not routed: each tunnel is a link of its own.
      const carolLl = (
        await need(ns.c, "carol's namespace").exec('ip', [
          '-6',
          '-o',
          'addr',
          'show',
          'dev',
          lab.ifname('mc'),
          'scope',
          'link',
        ])
      ).stdout
        .split('\n')
        .map((l) => / inet6 (fe80::[0-9a-f:]+)\//.exec(l)?.[1])
        .filter((a): a is string => a !== undefined);
      assert.ok(carolLl.length > 0, "carol's tunnel has a link-local address");
      for (const a of carolLl)
        await peer('a').send(`${a}%${lab.ifname('ma')}`, MDNS_PORT, 64, 5, 10, `uc-${a}`);
      await delay(500);
      for (const a of carolLl) {
        // It left alice into her tunnel (her AllowedIPs hold fe80::/64); the gateway does not route it on.
        assert.equal(peer('a').tagged('sent-wire', `uc-${a}`).length, 5, `alice sent 5 datagrams to ${a}`);
        assert.equal(peer('c').tagged('wire', `uc-${a}`).length, 0, `unicast to ${a} reached carol`);
        assert.equal(peer('c').tagged('rx', `uc-${a}`).length, 0, `unicast to ${a} reached carol`);
      }
    });

    it('15. frank (OpenVPN over TCP) joins 239.1.1.1 and ff15::1:1; alice reaches him; he reaches bob', async (t) => {
      const f = need(frank, 'frank');
      const n = need(frankNs, "frank's namespace");
      const tun = await startOpenVpn(f, n, 'frank', ['--proto-force', 'tcp-client']);
      await logLine(/member frank connected over OpenVPN \(TCP/, 5_000);
      const heard = await joinAndHearAlice(f, n, 'frank', tun, 'tcp');
      await heard.peer.send(ERIN_GROUP, DATA_PORT, 4, 20, 20, 'ft4');
      await delay(500);
      const bob = peer('b').tagged('rx', 'ft4');
      assert.equal(bob.length, 20, `bob received ${bob.length}/20 from frank (TCP)`);
      assert.ok(
        bob.every((x) => x.src === f.ip && x.ttl === 3),
        JSON.stringify(bob[0]),
      );
      t.diagnostic(
        `over TCP: alice → frank ${heard.v4}/20 (v4), ${heard.v6}/20 (v6); frank → bob ${bob.length}/20`,
      );
    });

    it('16. IPv6 link-local between OpenVPN members: mDNS to ff02::fb from fe80::, hop limit 255, both ways', async (t) => {
      const e = need(erin?.peer, "erin's multicast probe");
      const f = need(frank?.peer, "frank's multicast probe");
      const pairs = [
        { from: e, to: f, toName: 'frank', tag: 'll-ef' },
        { from: f, to: e, toName: 'erin', tag: 'll-fe' },
      ];
      await f.join(MDNS6);
      await e.join(MDNS6);
      await logLine(/multicast: ovpn:frank joined ff02::fb/, 5_000);
      await logLine(/multicast: ovpn:erin joined ff02::fb/, 5_000);
      const seen: string[] = [];
      for (const { from, to, toName, tag } of pairs) {
        await from.send(MDNS6, MDNS_PORT, 255, 10, 20, tag);
        await delay(500);
        const rx = to.tagged('rx', tag);
        assert.equal(rx.length, 10, `${toName} received ${rx.length}/10: ${JSON.stringify(rx.slice(0, 2))}`);
        assert.ok(
          rx.every((x) => x.ttl === 255 && x.src.startsWith('fe80:')),
          `hop limit 255, from a link-local source: ${JSON.stringify(rx[0])}`,
        );
        assert.equal(new Set(rx.map((x) => x.src.split('%')[0])).size, 1, 'one sender, one source');
        seen.push(`${toName} ${rx.length}/10 from ${rx[0]?.src.split('%')[0]}`);
        // (Its own socket, joined too, gets its datagrams by the kernel's multicast loopback, not the tunnel.)
        assert.equal(
          from.tagged('wire', tag).length,
          0,
          'nothing comes back to the sender through the tunnel',
        );
      }
      t.diagnostic(seen.join('; '));
    });

    it('17. the host as a receiver: queried (IGMP from 0.0.0.0, MLD from fe80::1), stays joined past the interval', async (t) => {
      const g = need(gw, 'the gateway namespace');
      const proc = liveServer();
      // Group membership interval 2 × 3 s + 1 s = 7 s.
      await weft(
        ['multicast', 'querier'],
        ['--robustness', '2', '--query-interval', '3', '--query-response-interval', '1'],
      );
      await logLine(/multicast: querier timers .*"queryIntervalS":3\b/, 10_000);
      // (MLD sits behind a hop-by-hop header, which tcpdump's `icmp6` does not look past.)
      const cap = await capture(g, serverIf, 'igmp or ip6');
      hostPeer = await MulticastPeer.start(g, serverIf, GATEWAY_IP, [DATA_PORT], 60);
      await hostPeer.join(HOST_GROUP);
      await hostPeer.join(HOST_GROUP6);
      await logLine(/multicast: host joined 239\.4\.4\.4/, 5_000);
      await logLine(/multicast: host joined ff15::4:4/, 5_000);
      const joined = Date.now();
      await delay(12_000);
      const listed = JSON.parse((await weft(['multicast', 'list'], ['--json'])).stdout) as {
        groups: { group: string; receivers: { port: string; expiresInS: number | null }[] }[];
      };
      for (const group of [HOST_GROUP, HOST_GROUP6]) {
        const r = listed.groups.find((x) => x.group === group)?.receivers ?? [];
        assert.deepEqual(
          r.map((x) => x.port),
          ['host'],
          `${group}: the host still joined ${Date.now() - joined} ms after its report (interval 7 s): ${JSON.stringify(r)}`,
        );
        assert.ok(r[0]?.expiresInS !== null, 'learned from its reports, not static');
      }
      assert.doesNotMatch(proc.stderr, /multicast: host left \(expired\)/);
      await peer('a').send(HOST_GROUP, DATA_PORT, 4, 10, 20, 'h4');
      await peer('a').send(HOST_GROUP6, DATA_PORT, 4, 10, 20, 'h6');
      await delay(500);
      const rx4 = hostPeer.tagged('rx', 'h4');
      const rx6 = hostPeer.tagged('rx', 'h6');
      assert.equal(rx4.length, 10, `the host received ${rx4.length}/10 (IPv4)`);
      assert.equal(rx6.length, 10, `the host received ${rx6.length}/10 (IPv6)`);
      await hostPeer.leave(HOST_GROUP);
      await logLine(/multicast: host left \(leave\) 239\.4\.4\.4/, 5_000);
      await cap.stop({ settleMs: 300 });
      await weft(['multicast', 'querier'], ['--defaults']);
      const packets = parsePcap(await fs.promises.readFile(cap.file)).records.map((r) => r.data);
      const v4 = (d: Uint8Array, o: number): string => [...d.subarray(o, o + 4)].join('.');
      const igmpQueries = packets.filter(
        (d) => d[0]! >> 4 === 4 && d[9] === 2 && d[(d[0]! & 15) * 4] === 0x11,
      );
      const fromZero = igmpQueries.filter((d) => v4(d, 12) === '0.0.0.0' && v4(d, 16) === '224.0.0.1');
      const reports = packets.filter(
        (d) => d[0]! >> 4 === 4 && d[9] === 2 && d[(d[0]! & 15) * 4] === 0x22 && v4(d, 12) === GATEWAY_IP,
      );
      const mldAt = (d: Uint8Array): number => (d[6] === 0 ? 40 + (d[41]! + 1) * 8 : 40);
      const mldQueries = packets.filter(
        (d) =>
          d[0]! >> 4 === 6 &&
          d[mldAt(d)] === 130 &&
          Buffer.from(d.subarray(8, 24)).toString('hex') === 'fe800000000000000000000000000001',
      );
      const mldReports = packets.filter((d) => d[0]! >> 4 === 6 && d[mldAt(d)] === 143);
      t.diagnostic(
        `on the TUN device: ${fromZero.length} IGMP general queries from 0.0.0.0 (of ${igmpQueries.length}), ` +
          `${reports.length} IGMPv3 reports from ${GATEWAY_IP}; ${mldQueries.length} MLD queries from fe80::1, ` +
          `${mldReports.length} MLDv2 reports; the host received ${rx4.length}/10 and ${rx6.length}/10`,
      );
      assert.equal(fromZero.length, igmpQueries.length, 'every IGMP query to the host comes from 0.0.0.0');
      assert.ok(fromZero.length >= 3, `the host was queried: ${fromZero.length}`);
      assert.ok(reports.length >= 3, `the host answered: ${reports.length}`);
      assert.ok(mldQueries.length >= 3 && mldReports.length >= 3, 'the same over MLD');
    });

    it('18. receive rules: a member whose groups may not receive a group gets no copy, counted policy-receive', async (t) => {
      const RX_GROUP = '239.5.5.5';
      const escaped = RX_GROUP.replaceAll('.', '\\.');
      await peer('b').join(RX_GROUP);
      await peer('d').join(RX_GROUP);
      await logLine(new RegExp(`multicast: wg:bob joined ${escaped}`), 5_000);
      await logLine(new RegExp(`multicast: wg:dave joined ${escaped}`), 5_000);
      interface Listed {
        at: string;
        ports: { port: string; drops: Record<string, number> }[];
      }
      /** alice's policy-receive drops, as a status written after `since` says. */
      const receiveDrops = async (since: number): Promise<number> => {
        let listed: Listed | undefined;
        await waitFor(
          'a multicast status written after the datagrams',
          async () => {
            listed = JSON.parse((await weft(['multicast', 'list'], ['--json'])).stdout) as Listed;
            return Date.parse(listed.at) > since;
          },
          { timeoutMs: 8_000, intervalMs: 500 },
        );
        const alice = need(listed, 'the listed status').ports.find((p) => p.port === 'wg:alice');
        return alice?.drops['policy-receive'] ?? 0;
      };
      const round = async (tag: string): Promise<{ bob: number; dave: number; drops: number }> => {
        await peer('a').send(RX_GROUP, DATA_PORT, 4, 10, 20, tag);
        await delay(500);
        const sent = Date.now();
        return {
          bob: peer('b').tagged('rx', tag).length,
          dave: peer('d').tagged('wire', tag).length,
          drops: await receiveDrops(sent),
        };
      };
      const before = await receiveDrops(0);
      const denied = await round('rx1');
      assert.equal(denied.bob, 10, `bob (eng may receive any group) received ${denied.bob}/10`);
      assert.equal(denied.dave, 0, `dave (muted: no receive rule) received ${denied.dave}/10`);
      assert.equal(
        denied.drops - before,
        10,
        `policy-receive drops on wg:alice: ${before} → ${denied.drops}`,
      );

      // A receive rule for muted, added while the server runs, applies to the next packet.
      await weft(['policy', 'allow'], ['muted', '239.5.0.0/16', '--receive']);
      await delay(1_000);
      const allowed = await round('rx2');
      assert.equal(allowed.bob, 10);
      assert.equal(allowed.dave, 10, `dave (muted may receive 239.5.0.0/16) received ${allowed.dave}/10`);
      assert.equal(allowed.drops, denied.drops, 'no more policy-receive drops');

      // A receive deny rule wins over the allow rule.
      await weft(['policy', 'deny'], ['muted', '239.5.5.0/24', '--receive']);
      await delay(1_000);
      const denyWins = await round('rx3');
      assert.equal(denyWins.bob, 10);
      assert.equal(denyWins.dave, 0, `dave (a receive deny rule) received ${denyWins.dave}/10`);
      assert.equal(denyWins.drops - allowed.drops, 10);
      t.diagnostic(
        `bob/dave: no rule ${denied.bob}/${denied.dave}, allow ${allowed.bob}/${allowed.dave}, ` +
          `deny ${denyWins.bob}/${denyWins.dave}; policy-receive drops on wg:alice ${before} → ${denyWins.drops}`,
      );
    });
  },
);
