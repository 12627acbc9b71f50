/**
 * The LAN bridge (an IGMP proxy on a gateway interface, RFC 4605): `weft server run` with multicast on and
 * `--lan` naming the gateway's veth into a LAN namespace, two members on real clients (wg-quick +
 * wireguard-go), and a LAN host with real sockets. The LAN is a Linux bridge without IGMP snooping (a plain
 * switch floods multicast); the gateway has two ports into it (the proxied one and a second one, two paths),
 * and the proxied port is in hairpin mode, so every packet the gateway sends to the LAN comes straight back
 * to it: a loop the proxy must not turn into extra copies.
 *
 *   1. init, a route for the LAN subnet (so member configs carry it in AllowedIPs), multicast on with
 *      --lan; members alice and bob.
 *   2. server run (logs the proxy); the clients and the probes come up.
 *   3. (a) the LAN host joins 239.5.5.5; alice sends 10 datagrams with TTL 4: the host gets exactly 10, with
 *      TTL 3, from alice's address; (c) bob, who joined nothing, gets none.
 *   4. (b) alice joins 239.6.6.6 on her tunnel: the gateway joins it on the LAN (logged, and the LAN host's
 *      interface sees the gateway's IGMP report); the LAN host sends 10 with TTL 4: alice gets exactly 10,
 *      TTL 3, from the host's address; bob none.
 *   5. (d) the LAN host joins 239.6.6.6 too; bob sends 10 with TTL 4: alice and the LAN host each get exactly
 *      10; the 10 hairpinned copies that return to the gateway are dropped as a loop (counted on the LAN
 *      port in `weft multicast list`), and the LAN port sent in only the host's 10 of step 4.
 *   6. alice leaves: the gateway leaves the group on the LAN (logged).
 *   7. IPv6 (an MLD proxy): the LAN host joins ff15::5:5; alice sends 10 datagrams with hop limit 4 from her
 *      IPv6 address: the host gets exactly 10, hop limit 3, from alice.
 *   8. alice joins ff15::6:6: the gateway joins it on the LAN (logged; the kernel sends the MLD report); the
 *      LAN host sends 10 with hop limit 4 from its IPv6 address: alice gets exactly 10, hop limit 3; bob none.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { interopSkip, Lab, type ExecResult, type ManagedProcess, type Netns } from './harness.js';
import { weftCli, WEFT_MAIN } from './gateway-lab.js';
import { parseWgQuick, replaceConfigLine, wgQuickUp, type WgQuickClient } from './people-lab.js';
import { MulticastPeer } from './multicast-peer.js';

const TOOLS = ['ip', 'bridge', 'wireguard-go', 'wg', 'wg-quick', 'python3', 'ping'];
const SUBNET = '10.68.0.0/24';
const GATEWAY_IP = '10.68.0.1';
const UNDERLAY = '192.168.73.1';
const LAN_SUBNET = '192.168.74.0/24';
const LAN_GW = '192.168.74.1';
const LAN_GW2 = '192.168.74.2';
const LAN_HOST = '192.168.74.10';
const SUBNET6 = 'fd68::/64';
const LAN_SUBNET6 = 'fd74::/64';
const LAN_HOST6 = 'fd74::10';
const TO_LAN6 = 'ff15::5:5';
const FROM_LAN6 = 'ff15::6:6';
const PORT = 51820;
const TO_LAN = '239.5.5.5';
const FROM_LAN = '239.6.6.6';
const DATA_PORT = 5000;
const PEER_LIFETIME_S = 200;
const KEYS = ['a', 'b'] as const;
type Key = (typeof KEYS)[number];
const NAMES: Record<Key, string> = { a: 'alice', b: 'bob' };

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

const escape = (s: string): string => s.replaceAll('.', '\\.');

describe(
  'multicast LAN bridge: an IGMP and MLD proxy between members and a LAN',
  { skip: interopSkip(TOOLS) },
  () => {
    let lab: Lab;
    let gw: Netns | undefined;
    let lanNs: Netns | undefined;
    let lanBridge = '';
    let lanIf = '';
    const ns: Partial<Record<Key, Netns>> = {};
    const members: Partial<Record<Key, Member>> = {};
    let dataDir = '';
    let serverIf = '';
    let server: ManagedProcess | undefined;
    let host: MulticastPeer | undefined;

    before(async () => {
      assert.ok(fs.existsSync(WEFT_MAIN), `${WEFT_MAIN} is missing: build first (npm run build)`);
      lab = await Lab.create('mclan', { tools: TOOLS });
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
          bAddr: `192.168.73.${11 + i}/24`,
        });
        await g.exec('ip', ['link', 'set', aIf, 'master', bridge]);
        ns[key] = m;
      }
      // The LAN: a bridge without IGMP snooping (flooding, like an unmanaged switch) whose own address is the
      // LAN host; the gateway has two ports into it, the first (proxied) one in hairpin mode.
      const l = await lab.netns('lan');
      lanBridge = lab.ifname('lbr');
      await l.exec('ip', ['link', 'add', lanBridge, 'type', 'bridge', 'mcast_snooping', '0']);
      await l.exec('ip', ['link', 'set', lanBridge, 'up']);
      await l.exec('ip', ['addr', 'add', `${LAN_HOST}/24`, 'dev', lanBridge]);
      await l.exec('ip', ['-6', 'addr', 'add', `${LAN_HOST6}/64`, 'dev', lanBridge, 'nodad']);
      await l.exec('ip', ['route', 'add', SUBNET, 'via', LAN_GW]);
      const first = await lab.veth(g, l, { aName: 'l1', bName: 'k1', aAddr: `${LAN_GW}/24` });
      const second = await lab.veth(g, l, { aName: 'l2', bName: 'k2', aAddr: `${LAN_GW2}/24` });
      await g.exec('ip', ['-6', 'addr', 'add', 'fd74::1/64', 'dev', first.aIf, 'nodad']);
      await g.exec('ip', ['-6', 'addr', 'add', 'fd74::2/64', 'dev', second.aIf, 'nodad']);
      for (const port of [first.bIf, second.bIf])
        await l.exec('ip', ['link', 'set', port, 'master', lanBridge]);
      await l.exec('bridge', ['link', 'set', 'dev', first.bIf, 'hairpin', 'on']);
      lanIf = first.aIf;
      lanNs = l;
      gw = g;
    });

    after(async () => {
      if (!lab) return;
      try {
        for (const m of Object.values(members)) m.peer?.process.kill('SIGTERM');
        host?.process.kill('SIGTERM');
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
    const lanHost = (): MulticastPeer => need(host, 'the LAN host probe');
    const logged = (pattern: RegExp, timeoutMs: number): Promise<void> => {
      const proc = need(server, 'a running server');
      if (!proc.running) throw new Error(`the gateway is no longer running: ${proc.describe()}`);
      return proc.waitForOutput(pattern, timeoutMs).then(() => undefined);
    };

    it('1. init with multicast on and --lan; member configs carry the LAN subnet', async () => {
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
      await weft(['route', 'add'], [LAN_SUBNET, '--description', 'the LAN behind the gateway']);
      await weft(['route', 'add'], [LAN_SUBNET6, '--description', 'the LAN behind the gateway, IPv6']);
      const on = await weft(['server', 'multicast'], ['on', '--lan', lanIf]);
      assert.match(on.stdout, new RegExp(`multicast LAN: ${lanIf}`), on.stdout);
      assert.equal((await weft(['server', 'multicast'])).stdout.trim(), `on (LAN ${lanIf})`);
      const bad = await weftCli(
        need(gw, 'gw'),
        ['server', 'multicast', '--lan', 'no/such', '--data', dataDir],
        {
          allowFail: true,
        },
      );
      assert.notEqual(bad.code, 0, 'an invalid interface name is refused');
      assert.match(bad.stderr, /multicastLan/, bad.stderr);
      await weft(['group', 'add'], ['eng']);
      // Receiving is deny by default: the members (eng) may receive every group.
      await weft(['policy', 'allow'], ['eng', 'any', '--receive']);
      for (const key of KEYS) {
        await weft(['member', 'add'], [NAMES[key], '--group', 'eng']);
        const shown = JSON.parse((await weft(['member', 'show'], [NAMES[key], '--json'])).stdout) as {
          ip: string;
          ip6: string;
        };
        let config = (await weft(['member', 'config'], [NAMES[key]])).stdout;
        const allowed = parseWgQuick(config).peers[0]?.get('allowedips') ?? [];
        for (const range of ['224.0.0.0/4', SUBNET, LAN_SUBNET, 'ff00::/8', LAN_SUBNET6])
          assert.ok(
            allowed.includes(range),
            `${NAMES[key]}'s AllowedIPs lack ${range}: ${allowed.join(', ')}`,
          );
        if (parseWgQuick(config).iface.has('dns')) config = replaceConfigLine(config, 'DNS', null);
        members[key] = { ip: shown.ip, ip6: shown.ip6, config };
      }
    });

    it('2. server run with the proxy; clients and probes come up', async () => {
      const g = need(gw, 'the gateway namespace');
      server = g.spawn(process.execPath, [WEFT_MAIN, 'server', 'run', '--data', dataDir]);
      await server.waitForOutput(/ready/, 20_000);
      assert.match(server.stderr, new RegExp(`IGMP proxy on ${lanIf}`), server.describe());
      for (const key of KEYS) {
        const m = member(key);
        const ifname = lab.ifname(`m${key}`);
        const n = need(ns[key], `${NAMES[key]}'s namespace`);
        m.client = await wgQuickUp(n, ifname, m.config);
        const ping = await n.exec('ping', ['-c', '1', '-W', '3', GATEWAY_IP], { allowFail: true });
        assert.equal(ping.code, 0, `${NAMES[key]} reaches the gateway: ${ping.stdout}${ping.stderr}`);
        m.peer = await MulticastPeer.start(n, ifname, m.ip, [DATA_PORT], PEER_LIFETIME_S);
      }
      host = await MulticastPeer.start(
        need(lanNs, 'the LAN'),
        lanBridge,
        LAN_HOST,
        [DATA_PORT],
        PEER_LIFETIME_S,
      );
    });

    it('3. a member sender reaches a LAN host that joined; a member that did not join gets nothing', async () => {
      await lanHost().join(TO_LAN);
      await peer('a').send(TO_LAN, DATA_PORT, 4, 10, 20, 'down');
      await delay(700);
      const rx = lanHost().tagged('rx', 'down');
      assert.equal(rx.length, 10, `the LAN host received ${rx.length}/10: ${JSON.stringify(rx.slice(0, 2))}`);
      assert.ok(
        rx.every((e) => e.ttl === 3 && e.src === member('a').ip),
        `TTL 4 → 3, from alice: ${JSON.stringify(rx[0])}`,
      );
      assert.equal(peer('b').tagged('wire', 'down').length, 0, 'bob did not join: nothing on his interface');
      assert.equal(peer('a').tagged('wire', 'down').length, 0, 'nothing comes back to the sender');
    });

    it('4. the gateway joins upstream for a member; a LAN sender reaches her, and only her', async (t) => {
      const started = Date.now();
      await peer('a').join(FROM_LAN);
      await logged(new RegExp(`multicast: lan:${lanIf} joined ${escape(FROM_LAN)}`), 5_000);
      t.diagnostic(`upstream join ${Date.now() - started} ms after alice's socket joined`);
      await delay(300);
      await lanHost().send(FROM_LAN, DATA_PORT, 4, 10, 20, 'up');
      await delay(700);
      const rx = peer('a').tagged('rx', 'up');
      assert.equal(rx.length, 10, `alice received ${rx.length}/10`);
      assert.ok(
        rx.every((e) => e.ttl === 3 && e.src === LAN_HOST),
        `TTL 4 → 3, from the host: ${JSON.stringify(rx[0])}`,
      );
      assert.equal(peer('b').tagged('wire', 'up').length, 0, 'bob did not join: nothing');
      assert.equal(
        lanHost().tagged('wire', 'up').length,
        0,
        "the host's own datagrams do not come back to it",
      );
    });

    it('5. two paths and a hairpin between the LAN and the gateway: every receiver gets each datagram once', async () => {
      await lanHost().join(FROM_LAN);
      await peer('b').send(FROM_LAN, DATA_PORT, 4, 10, 20, 'loop');
      await delay(1_000);
      const toAlice = peer('a').tagged('rx', 'loop');
      const toHost = lanHost().tagged('rx', 'loop');
      assert.equal(toAlice.length, 10, `alice received ${toAlice.length}/10 (more: a loop)`);
      assert.equal(toHost.length, 10, `the LAN host received ${toHost.length}/10 (more: a loop)`);
      assert.equal(new Set(toAlice.map((e) => e.data)).size, 10, 'ten distinct datagrams');
      assert.equal(peer('b').tagged('wire', 'loop').length, 0, 'nothing comes back to the sender');
      await delay(2_500); // the running server writes what `weft multicast list` reads every 2 s
      const list = JSON.parse((await weft(['multicast', 'list'], ['--json'])).stdout) as {
        ports: { port: string; sent: number; received: number; drops: Record<string, number> }[];
      };
      const lan = list.ports.find((p) => p.port === `lan:${lanIf}`);
      assert.ok(lan, `the LAN port is listed: ${JSON.stringify(list.ports)}`);
      assert.equal(
        lan.sent,
        10,
        `from the LAN, only the host's 10 datagrams were taken in: ${JSON.stringify(lan)}`,
      );
    });

    it('6. the last member leaves: the gateway leaves the group on the LAN', async () => {
      await peer('a').leave(FROM_LAN);
      await logged(new RegExp(`multicast: lan:${lanIf} left ${escape(FROM_LAN)}`), 5_000);
    });
    it('7. IPv6 (MLD proxy): a member sender reaches a LAN host that joined an ff15:: group', async () => {
      await lanHost().join(TO_LAN6);
      await delay(300);
      await peer('a').send(TO_LAN6, DATA_PORT, 4, 10, 20, 'down6');
      await delay(700);
      const rx = lanHost().tagged('rx', 'down6');
      assert.equal(rx.length, 10, `the LAN host received ${rx.length}/10: ${JSON.stringify(rx.slice(0, 2))}`);
      assert.ok(
        rx.every((e) => e.ttl === 3 && e.src === member('a').ip6),
        `hop limit 4 → 3, from alice (${member('a').ip6}): ${JSON.stringify(rx[0])}`,
      );
      assert.equal(peer('b').tagged('wire', 'down6').length, 0, 'bob did not join: nothing on his interface');
      assert.equal(peer('a').tagged('wire', 'down6').length, 0, 'nothing comes back to the sender');
    });

    it('8. IPv6: the gateway joins an ff15:: group on the LAN for a member; a LAN sender reaches her', async (t) => {
      const started = Date.now();
      await peer('a').join(FROM_LAN6);
      await logged(new RegExp(`multicast: lan:${lanIf} joined ff15::6:6\\n`), 5_000);
      t.diagnostic(`upstream MLD join ${Date.now() - started} ms after alice's socket joined`);
      await delay(300);
      await lanHost().send(FROM_LAN6, DATA_PORT, 4, 10, 20, 'up6');
      await delay(700);
      const rx = peer('a').tagged('rx', 'up6');
      assert.equal(rx.length, 10, `alice received ${rx.length}/10: ${JSON.stringify(rx.slice(0, 2))}`);
      assert.ok(
        rx.every((e) => e.ttl === 3 && e.src === LAN_HOST6),
        `hop limit 4 → 3, from the host: ${JSON.stringify(rx[0])}`,
      );
      assert.equal(peer('b').tagged('wire', 'up6').length, 0, 'bob did not join: nothing');
      await peer('a').leave(FROM_LAN6);
      await logged(new RegExp(`multicast: lan:${lanIf} left ff15::6:6`), 5_000);
    });
  },
);
