/**
 * The gateway as an operator runs it: `weft up FILE.conf` (the CLI, a TUN device, the UDP port, the UAPI
 * socket) inside network namespaces, against wireguard-go (Debian package, configured with `wg`) and against
 * another Weft. Each requirement is one `it`:
 *
 *   1. Weft ↔ wireguard-go: ping and TCP (iperf3 and a sha256-verified transfer), IPv4 and IPv6 in the
 *      tunnel, with each side initiating (fresh sessions for the second direction via `wg set ... remove`).
 *   2. Weft ↔ Weft: the same, over an IPv6 outer path.
 *   3. `wg show NAME dump` against Weft: peer, endpoint, recent handshake, growing counters.
 *   4. Roaming: wireguard-go moves to a new address and port mid-ping; traffic resumes; Weft follows.
 *   5. Probe silence: ~2,600 garbage and forged datagrams from a third namespace get no answer at all.
 *   6. Packets for destinations no peer owns leave nothing on the wire.
 *   7. Configuration errors: FILE:LINE: KEY messages, exit status 1, nothing created.
 *   8. `weft down NAME` and SIGTERM remove the interface, its routes, the UAPI socket and the pid file.
 *   9. Nothing the suite created remains.
 *
 * Topology (N = subnet number): veth 192.168.N.1/24 + fdNN::1/64 ↔ .2; tunnel 10.N.0.1/24 + fd00:N::1/64 ↔ .2.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import { after, before, describe, it, type TestContext } from 'node:test';
import {
  capture,
  DEFAULT_TOOLS,
  interopSkip,
  Lab,
  run,
  startWireguardGo,
  waitFor,
  type Netns,
  type WireguardGo,
} from './harness.js';
import {
  generateKeyPair,
  iperf3,
  labProcesses,
  linkedPair,
  outerSubnet,
  ping,
  readCapture,
  registerWeftInterface,
  sendDatagrams,
  startWeft,
  stopWeftInterfaces,
  tunnelAddress,
  verifiedTransfer,
  weftArtifacts,
  weftCli,
  weftInterfaceNames,
  within,
  WEFT_MAIN,
  wgQuickConfig,
  wireguardType,
  writeConfigFile,
  type WeftInterface,
  type WgQuickSpec,
} from './gateway-lab.js';

const TOOLS = [...DEFAULT_TOOLS, 'iperf3', 'ss'];
const IPERF_SECONDS = 2;
const TRANSFER_BYTES = 4 << 20;

function memo<T>(make: () => Promise<T>): () => Promise<T> {
  let value: Promise<T> | undefined;
  return () => (value ??= make());
}

/** One side of a tunnel, for the traffic proofs. */
interface End {
  label: string;
  ns: Netns;
  /** Outer address its datagrams come from (as decoded from a capture). */
  outer: () => string;
  tunnel: { v4: string; v6: string };
}

describe('Weft gateway (`weft up`) against real peers', { skip: interopSkip(TOOLS) }, () => {
  let lab: Lab;
  const started: WeftInterface[] = [];
  const peers: WireguardGo[] = [];
  const suiteStart = Date.now();

  before(async () => {
    assert.ok(fs.existsSync(WEFT_MAIN), `${WEFT_MAIN} is missing: build first (npx tsc -p tsconfig.json)`);
    lab = await Lab.create('gateway', { tools: TOOLS });
  });

  after(async () => {
    if (!lab) return;
    try {
      await stopWeftInterfaces(lab);
    } finally {
      await lab.cleanup();
    }
  });

  const up = async (...args: Parameters<typeof startWeft>): Promise<WeftInterface> => {
    const w = await startWeft(...args);
    started.push(w);
    return w;
  };

  // -------------------------------------------------------------------------------------------------------------
  // Site 1: Weft (namespace wfa) ↔ wireguard-go (namespace wgb).

  const WEFT1_PORT = 51820;
  const WGO1_PORT = 51821;
  const site1 = memo(async () => {
    const pair = await linkedPair(lab, 'wfa', 'wgb', 1);
    const weftKeys = generateKeyPair();
    const wgoKeys = generateKeyPair();
    const weftT = tunnelAddress(1, 1);
    const wgoT = tunnelAddress(1, 2);
    const wgoPeer = {
      publicKey: weftKeys.publicKey,
      endpoint: `${pair.a4}:${WEFT1_PORT}`,
      allowedIps: [`${weftT.v4}/32`, `${weftT.v6}/128`],
    };
    const weftPeer = {
      publicKey: wgoKeys.publicKey,
      endpoint: `${pair.b4}:${WGO1_PORT}`,
      allowedIps: [`${wgoT.v4}/32`, `${wgoT.v6}/128`],
    };
    const wgo = await startWireguardGo(pair.b, lab.ifname('g1'), {
      privateKey: wgoKeys.privateKey,
      listenPort: WGO1_PORT,
      addresses: [`${wgoT.v4}/24`, `${wgoT.v6}/64`],
      peers: [wgoPeer],
    });
    peers.push(wgo);
    const weft = await up(pair.a, lab.ifname('w1'), {
      privateKey: weftKeys.privateKey,
      listenPort: WEFT1_PORT,
      addresses: [`${weftT.v4}/24`, `${weftT.v6}/64`],
      peers: [weftPeer],
    });
    const state = { wgoOuter: pair.b4, wgoPort: WGO1_PORT };
    const weftEnd: End = { label: 'Weft', ns: pair.a, outer: () => pair.a4, tunnel: weftT };
    const wgoEnd: End = { label: 'wireguard-go', ns: pair.b, outer: () => state.wgoOuter, tunnel: wgoT };
    return { pair, weft, wgo, weftKeys, wgoKeys, weftT, wgoT, wgoPeer, weftPeer, state, weftEnd, wgoEnd };
  });

  // -------------------------------------------------------------------------------------------------------------
  // Site 2: Weft (namespace wwa) ↔ Weft (namespace wwb), outer path over IPv6.

  const WEFT2A_PORT = 51822;
  const WEFT2B_PORT = 51823;
  const site2 = memo(async () => {
    const pair = await linkedPair(lab, 'wwa', 'wwb', 2);
    const aKeys = generateKeyPair();
    const bKeys = generateKeyPair();
    const aT = tunnelAddress(2, 1);
    const bT = tunnelAddress(2, 2);
    const aPeer = {
      publicKey: bKeys.publicKey,
      endpoint: `[${pair.b6}]:${WEFT2B_PORT}`,
      allowedIps: [`${bT.v4}/32`, `${bT.v6}/128`],
    };
    const bPeer = {
      publicKey: aKeys.publicKey,
      endpoint: `[${pair.a6}]:${WEFT2A_PORT}`,
      allowedIps: [`${aT.v4}/32`, `${aT.v6}/128`],
    };
    const a = await up(pair.a, lab.ifname('w2a'), {
      privateKey: aKeys.privateKey,
      listenPort: WEFT2A_PORT,
      addresses: [`${aT.v4}/24`, `${aT.v6}/64`],
      peers: [aPeer],
    });
    // The second one as a daemon (`weft up FILE`), the first in the foreground: both ways of running it.
    const b = await up(
      pair.b,
      lab.ifname('w2b'),
      {
        privateKey: bKeys.privateKey,
        listenPort: WEFT2B_PORT,
        addresses: [`${bT.v4}/24`, `${bT.v6}/64`],
        peers: [bPeer],
      },
      { daemon: true },
    );
    const aEnd: End = { label: 'Weft A', ns: pair.a, outer: () => pair.a6, tunnel: aT };
    const bEnd: End = { label: 'Weft B', ns: pair.b, outer: () => pair.b6, tunnel: bT };
    return { pair, a, b, aKeys, bKeys, aPeer, bPeer, aEnd, bEnd };
  });

  /**
   * From fresh sessions: `initiator` pings `responder` (IPv4 and IPv6) while a capture on `captureAt` proves
   * who sent the first handshake initiation; then iperf3 and a verified transfer, both families.
   */
  async function proveTunnel(
    t: TestContext,
    initiator: End,
    responder: End,
    captureAt: { ns: Netns; iface: string; port: number },
  ): Promise<void> {
    const cap = await capture(captureAt.ns, captureAt.iface, `udp port ${captureAt.port}`);
    const p4 = await ping(initiator.ns, responder.tunnel.v4, { count: 3, waitS: 3 });
    assert.equal(p4.received, 3, `IPv4 ping ${initiator.label} → ${responder.label}:\n${p4.output}`);
    const p6 = await ping(initiator.ns, responder.tunnel.v6, { count: 3, waitS: 3 });
    assert.equal(p6.received, 3, `IPv6 ping ${initiator.label} → ${responder.label}:\n${p6.output}`);
    await cap.stop();

    const packets = await readCapture(cap.file);
    const handshakes = packets.filter((p) => {
      const type = wireguardType(p);
      return type === 1 || type === 2;
    });
    const first = handshakes.find((p) => wireguardType(p) === 1);
    assert.ok(first, `no handshake initiation captured (${packets.length} datagrams)`);
    assert.equal(first.src, initiator.outer(), `the first initiation came from ${first.src}`);
    assert.equal(first.dst, responder.outer());
    const response = handshakes.find((p) => wireguardType(p) === 2 && p.timeMs >= first.timeMs);
    assert.ok(response, 'no handshake response captured');
    assert.equal(response.src, responder.outer());
    assert.equal(
      handshakes.filter((p) => wireguardType(p) === 1 && p.src === responder.outer()).length,
      0,
      `${responder.label} should not have initiated`,
    );
    assert.ok(
      packets.some((p) => wireguardType(p) === 4 && p.src === responder.outer()),
      'no transport data came back',
    );

    for (const family of ['v4', 'v6'] as const) {
      const r = await iperf3(initiator.ns, responder.ns, responder.tunnel[family], {
        seconds: IPERF_SECONDS,
      });
      assert.ok(r.sentBytes > 0 && r.receivedBytes > 0, `iperf3 over ${family}: ${JSON.stringify(r)}`);
      t.diagnostic(
        `iperf3 ${initiator.label} → ${responder.label} ${family}: ${(r.bitsPerSecond / 1e6).toFixed(0)} Mbit/s, ` +
          `${r.receivedBytes} bytes, ${r.retransmits} retransmits`,
      );
      const x = await verifiedTransfer(initiator.ns, responder.ns, responder.tunnel[family], {
        bytes: TRANSFER_BYTES,
      });
      assert.equal(x.sent.bytes, TRANSFER_BYTES);
      assert.equal(x.received.bytes, TRANSFER_BYTES, `transfer over ${family}: ${JSON.stringify(x)}`);
      assert.equal(x.sent.sha256, x.expectedSha256);
      assert.equal(x.received.sha256, x.expectedSha256, `transfer over ${family} corrupted data`);
      t.diagnostic(`verified transfer ${family}: ${TRANSFER_BYTES} bytes in ${x.ms} ms, sha256 ok`);
    }
  }

  /** `wg set IF peer KEY remove`, then the peer again: a fresh start with no session. */
  async function readdPeer(
    ns: Netns,
    ifname: string,
    peer: { publicKey: string; endpoint: string; allowedIps: readonly string[] },
  ): Promise<void> {
    await ns.exec('wg', ['set', ifname, 'peer', peer.publicKey, 'remove']);
    const dump = (await ns.exec('wg', ['show', ifname, 'peers'])).stdout;
    assert.ok(!dump.includes(peer.publicKey), `${ifname} still lists the removed peer`);
    await ns.exec('wg', [
      'set',
      ifname,
      'peer',
      peer.publicKey,
      'endpoint',
      peer.endpoint,
      'allowed-ips',
      peer.allowedIps.join(','),
    ]);
  }

  // -------------------------------------------------------------------------------------------------------------

  it('1a. Weft ↔ wireguard-go, Weft initiates: ping, iperf3, verified TCP transfer; IPv4 and IPv6', async (t) => {
    const s = await site1();
    await proveTunnel(t, s.weftEnd, s.wgoEnd, { ns: s.pair.a, iface: s.pair.aIf, port: WEFT1_PORT });
  });

  it('1b. Weft ↔ wireguard-go, wireguard-go initiates (fresh sessions): the same', async (t) => {
    const s = await site1();
    await readdPeer(s.pair.b, s.wgo.ifname, s.wgoPeer);
    await readdPeer(s.pair.a, s.weft.ifname, s.weftPeer);
    const [peer] = (await s.weft.dump()).peers;
    assert.equal(peer?.latestHandshake, 0, 'Weft kept a session across peer remove / re-add');
    await proveTunnel(t, s.wgoEnd, s.weftEnd, { ns: s.pair.a, iface: s.pair.aIf, port: WEFT1_PORT });
  });

  it('2a. Weft ↔ Weft (outer IPv6), A initiates: ping, iperf3, verified TCP transfer; IPv4 and IPv6', async (t) => {
    const s = await site2();
    await proveTunnel(t, s.aEnd, s.bEnd, { ns: s.pair.a, iface: s.pair.aIf, port: WEFT2A_PORT });
  });

  it('2b. Weft ↔ Weft, B initiates (fresh sessions): the same', async (t) => {
    const s = await site2();
    await readdPeer(s.pair.a, s.a.ifname, s.aPeer);
    await readdPeer(s.pair.b, s.b.ifname, s.bPeer);
    await proveTunnel(t, s.bEnd, s.aEnd, { ns: s.pair.a, iface: s.pair.aIf, port: WEFT2A_PORT });
  });

  it('3. `wg show NAME dump` against Weft: peer, endpoint, recent handshake, growing counters', async () => {
    const s = await site1();
    const warm = await ping(s.pair.a, s.wgoT.v4, { count: 1, waitS: 3 });
    assert.equal(warm.received, 1, warm.output);

    const first = await s.weft.dump();
    assert.equal(first.interface.privateKey, s.weftKeys.privateKey);
    assert.equal(first.interface.publicKey, s.weftKeys.publicKey);
    assert.equal(first.interface.listenPort, WEFT1_PORT);
    assert.equal(first.peers.length, 1);
    const p1 = first.peers[0]!;
    assert.equal(p1.publicKey, s.wgoKeys.publicKey);
    assert.equal(p1.endpoint, `${s.state.wgoOuter}:${s.state.wgoPort}`);
    assert.deepEqual([...p1.allowedIps].sort(), [...s.weftPeer.allowedIps].sort());
    const now = Date.now() / 1000;
    assert.ok(
      p1.latestHandshake > now - 60 && p1.latestHandshake <= now + 2,
      `latest handshake ${p1.latestHandshake} is not within the last minute of ${now.toFixed(0)}`,
    );
    assert.ok(p1.rxBytes > 0 && p1.txBytes > 0, JSON.stringify(p1));

    const traffic = await ping(s.pair.a, s.wgoT.v6, { count: 5, intervalS: 0.05, waitS: 3 });
    assert.equal(traffic.received, 5, traffic.output);
    const p2 = (await s.weft.dump()).peers[0]!;
    // Five echo requests out and five replies in, each at least 32 bytes of WireGuard framing + 104 of IPv6.
    assert.ok(p2.txBytes >= p1.txBytes + 5 * 128, `tx ${p1.txBytes} → ${p2.txBytes}`);
    assert.ok(p2.rxBytes >= p1.rxBytes + 5 * 128, `rx ${p1.rxBytes} → ${p2.rxBytes}`);
    assert.ok(p2.latestHandshake >= p1.latestHandshake);

    // wireguard-go agrees on the counters' direction (its rx is Weft's tx, give or take in-flight packets).
    const theirs = (await s.wgo.dump()).peers[0]!;
    assert.ok(theirs.rxBytes > 0 && theirs.txBytes > 0);
  });

  it('4. roaming: wireguard-go moves to a new address and port mid-ping; traffic resumes, Weft follows', async (t) => {
    const s = await site1();
    const { v4, v6 } = outerSubnet(1);
    const newAddr = `${v4}.3`;
    const newPort = WGO1_PORT + 100;
    // A long-running ping from wireguard-go's side (bounded by -w), with receive timestamps (-D).
    const pinger = s.pair.b.spawn('ping', ['-4', '-n', '-D', '-i', '0.1', '-W', '1', '-w', '30', s.weftT.v4]);
    const replies = (): { ts: number; seq: number }[] =>
      [...pinger.stdout.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)/gm)].map((m) => ({
        ts: Number(m[1]),
        seq: Number(m[2]),
      }));
    await waitFor('replies before the move', () => replies().length >= 3, { timeoutMs: 5_000 });

    const moved = Date.now() / 1000;
    await s.pair.b.exec('ip', ['addr', 'flush', 'dev', s.pair.bIf]);
    await s.pair.b.exec('ip', ['addr', 'add', `${newAddr}/24`, 'dev', s.pair.bIf]);
    await s.pair.b.exec('ip', ['addr', 'add', `${v6}3/64`, 'dev', s.pair.bIf, 'nodad']);
    await s.pair.b.exec('wg', ['set', s.wgo.ifname, 'listen-port', String(newPort)]);
    s.state.wgoOuter = newAddr;
    s.state.wgoPort = newPort;
    const rebound = Date.now() / 1000;

    const resumed = await waitFor('a reply after the move', () => replies().find((r) => r.ts > rebound), {
      timeoutMs: 8_000,
    }).catch((error: Error) => {
      throw new Error(`${error.message}\n${pinger.describe()}`, { cause: error });
    });
    const gap = resumed.ts - moved;
    t.diagnostic(
      `first reply ${(resumed.ts - rebound).toFixed(2)} s after the rebind (${gap.toFixed(2)} s after the move)`,
    );
    assert.ok(resumed.ts - rebound < 3, `traffic took ${(resumed.ts - rebound).toFixed(2)} s to resume`);

    const peer = await waitFor(
      'Weft to report the new endpoint',
      async () => {
        const p = (await s.weft.dump()).peers[0];
        return p?.endpoint === `${newAddr}:${newPort}` ? p : undefined;
      },
      { timeoutMs: 3_000 },
    );
    assert.equal(peer.endpoint, `${newAddr}:${newPort}`);
    // Keeps flowing: a few more replies after the first one.
    await waitFor(
      'steady replies after the move',
      () => replies().filter((r) => r.ts > rebound).length >= 5,
      {
        timeoutMs: 3_000,
      },
    );
    await pinger.stop();

    // And Weft-initiated traffic now goes to the new endpoint.
    const back = await ping(s.pair.a, s.wgoT.v6, { count: 2, waitS: 3 });
    assert.equal(back.received, 2, back.output);
  });

  it('5. probe silence: garbage and forged handshakes from a third namespace get no answer at all', async (t) => {
    const s = await site1();
    const attacker = await lab.netns('atk');
    const { v4, v6 } = outerSubnet(201);
    const atk4 = `${v4}.2`;
    const atk6 = `${v6}2`;
    const { bIf: weftSide } = await lab.veth(attacker, s.pair.a, {
      aAddr: `${atk4}/24`,
      bAddr: `${v4}.1/24`,
      aAddr6: `${atk6}/64`,
      bAddr6: `${v6}1/64`,
    });
    // Everything to or from the attacker on Weft's side of its link.
    const cap = await capture(s.pair.a, weftSide, `host ${atk4} or host ${atk6}`);

    const header = (type: number, length: number): Buffer => {
      const b = randomBytes(length);
      if (length >= 4) b.writeUInt32LE(type, 0);
      return b;
    };
    const datagrams: Buffer[] = [];
    for (let i = 0; i < 2000; i++) datagrams.push(randomBytes(randomInt(0, 1401)));
    for (let i = 0; i < 300; i++) datagrams.push(header(1, 148)); // initiations with a bad mac1
    for (let i = 0; i < 50; i++) datagrams.push(header(2, 92)); // responses to nothing
    for (let i = 0; i < 50; i++) datagrams.push(header(3, 64)); // cookie replies to nothing
    for (let i = 0; i < 250; i++) datagrams.push(header(4, randomInt(32, 201))); // data, random receiver index
    for (let i = datagrams.length - 1; i > 0; i--) {
      const j = randomInt(i + 1);
      [datagrams[i], datagrams[j]] = [datagrams[j]!, datagrams[i]!];
    }
    const half = Math.floor(datagrams.length / 2);
    const sent4 = await sendDatagrams(attacker, `${v4}.1`, WEFT1_PORT, datagrams.slice(0, half));
    const sent6 = await sendDatagrams(attacker, `${v6}1`, WEFT1_PORT, datagrams.slice(half));
    assert.equal(sent4.failed + sent6.failed, 0);

    // Still healthy: the tunnel works, and `wg show` answers.
    const health = await ping(s.pair.a, s.wgoT.v4, { count: 3, waitS: 3 });
    assert.equal(health.received, 3, health.output);
    const health6 = await ping(s.pair.b, s.weftT.v6, { count: 2, waitS: 3 });
    assert.equal(health6.received, 2, health6.output);
    assert.equal((await s.weft.dump()).peers.length, 1);
    assert.ok(s.weft.process?.running, 'Weft exited');
    await cap.stop({ settleMs: 300 });

    const packets = await readCapture(cap.file);
    const attackerAddrs = new Set([atk4, atk6]);
    const inbound = packets.filter(
      (p) => attackerAddrs.has(p.src) && p.protocol === 17 && p.dstPort === WEFT1_PORT,
    );
    // Neighbour discovery (ICMPv6 133–137) is the kernel's, not Weft's; anything else towards the attacker counts.
    const outbound = packets.filter(
      (p) =>
        attackerAddrs.has(p.dst) &&
        !(p.protocol === 58 && p.icmpType !== undefined && p.icmpType >= 133 && p.icmpType <= 137),
    );
    t.diagnostic(
      `sent ${sent4.sent + sent6.sent} datagrams (v4 ${sent4.sent}, v6 ${sent6.sent}); captured ${inbound.length} ` +
        `arriving at Weft's port, ${outbound.length} going back`,
    );
    assert.deepEqual(
      outbound
        .slice(0, 5)
        .map((p) => `${p.src}:${p.srcPort ?? ''} → ${p.dst}:${p.dstPort ?? ''} proto ${p.protocol}`),
      [],
      `${outbound.length} packets went back to the attacker`,
    );
    // The capture saw the probes arrive (tcpdump may lose a few under load, but not most).
    assert.ok(
      inbound.length >= datagrams.length / 2,
      `only ${inbound.length} of ${datagrams.length} captured`,
    );
  });

  it('6. packets for destinations no peer owns: nothing leaves on the wire, the ping fails', async () => {
    const pair = await linkedPair(lab, 'lone', 'sink', 6);
    const keys = generateKeyPair();
    const peerKeys = generateKeyPair();
    const me = tunnelAddress(6, 1);
    const peer = tunnelAddress(6, 2);
    const port = 51826;
    const weft = await up(pair.a, lab.ifname('w6'), {
      privateKey: keys.privateKey,
      listenPort: port,
      addresses: [`${me.v4}/24`, `${me.v6}/64`],
      // An endpoint in the sink namespace where nobody answers: whatever Weft would send is visible there.
      peers: [
        {
          publicKey: peerKeys.publicKey,
          endpoint: `${pair.b4}:51820`,
          allowedIps: [`${peer.v4}/32`, `${peer.v6}/128`],
        },
      ],
    });
    await pair.a.exec('ip', ['route', 'add', '10.99.0.0/24', 'dev', weft.ifname]);
    await pair.a.exec('ip', ['-6', 'route', 'add', 'fd00:99::/64', 'dev', weft.ifname]);

    const cap = await capture(pair.a, pair.aIf, 'udp');
    const [p4, p6] = await Promise.all([
      ping(pair.a, '10.99.0.5', { count: 3, waitS: 1 }),
      ping(pair.a, 'fd00:99::5', { count: 3, waitS: 1 }),
    ]);
    assert.equal(p4.received, 0, p4.output);
    assert.notEqual(p4.code, 0);
    assert.equal(p6.received, 0, p6.output);
    assert.notEqual(p6.code, 0);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await cap.count(), 0, 'a datagram left for a destination no peer owns');

    // Control: a destination the peer owns does make Weft send (a handshake initiation to the endpoint), so the
    // capture above would have seen a leak.
    await ping(pair.a, peer.v4, { count: 1, waitS: 1 });
    await waitFor('the control initiation on the wire', async () => (await cap.count()) >= 1, {
      timeoutMs: 5_000,
    });
    await cap.stop();
    const packets = await readCapture(cap.file);
    assert.ok(packets.length >= 1);
    for (const p of packets) {
      assert.equal(p.dst, pair.b4);
      assert.equal(p.dstPort, 51820);
      assert.equal(wireguardType(p), 1);
    }
  });

  it('7. configuration errors: FILE:LINE: KEY on stderr, exit status 1, nothing created', async (t) => {
    const ns = await lab.netns('cfg');
    // Another interface holding the addresses. No dummy driver on our machines: a veth pair with both ends
    // in this namespace stands in.
    const dummy = lab.ifname('d7');
    const taken = tunnelAddress(7, 1);
    await ns.exec('ip', ['link', 'add', dummy, 'type', 'veth', 'peer', 'name', lab.ifname('d7p')]);
    await ns.exec('ip', ['link', 'set', dummy, 'up']);
    await ns.exec('ip', ['addr', 'add', `${taken.v4}/24`, 'dev', dummy]);
    await ns.exec('ip', ['addr', 'add', `${taken.v6}/64`, 'dev', dummy, 'nodad']);
    const links = async (): Promise<string[]> =>
      JSON.parse((await ns.exec('ip', ['-j', 'link', 'show'])).stdout).map(
        (l: { ifname: string }) => l.ifname,
      );
    const before = await links();
    const keys = generateKeyPair();
    const peerKeys = generateKeyPair();
    const base = (addresses: string[]): WgQuickSpec => ({
      privateKey: keys.privateKey,
      addresses,
      peers: [{ publicKey: peerKeys.publicKey, allowedIps: ['10.7.9.0/24'] }],
    });

    const expectFailure = async (
      name: string,
      text: string,
      check: (stderr: string, file: string) => void,
    ): Promise<string> => {
      const file = await writeConfigFile(lab, `${name}.conf`, text);
      const messages: string[] = [];
      for (const args of [
        ['up', file],
        ['up', '--foreground', file],
      ]) {
        const r = await weftCli(ns, args, { allowFail: true, timeoutMs: 15_000 });
        assert.equal(r.code, 1, `weft ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
        check(r.stderr, file);
        assert.deepEqual(await links(), before, `weft ${args.join(' ')} left a link behind`);
        const { socket, pidFile } = weftArtifacts(name);
        assert.ok(!fs.existsSync(socket), `weft ${args.join(' ')} left ${socket}`);
        assert.ok(!fs.existsSync(pidFile), `weft ${args.join(' ')} left ${pidFile}`);
        messages.push(r.stderr.trim());
      }
      assert.equal(messages[0], messages[1], 'weft up and weft up --foreground report differently');
      return messages[0]!.split('\n').join(' | ');
    };

    // (a) A bad key line and a bad value: each reported as FILE:LINE: KEY: message.
    const badName = lab.ifname('c7a');
    registerWeftInterface(lab, badName);
    const goodText = wgQuickConfig(base([`${tunnelAddress(7, 5).v4}/24`]));
    const lines = goodText.split('\n');
    lines.splice(2, 0, 'Foo = bar', 'ListenPort = 70000'); // lines 3 and 4
    const badKey = await expectFailure(badName, lines.join('\n'), (stderr, file) => {
      assert.match(stderr, new RegExp(`^${escapeRegExp(file)}:3: Foo: .+`, 'm'), stderr);
      assert.match(stderr, new RegExp(`^${escapeRegExp(file)}:4: ListenPort: .+`, 'm'), stderr);
    });
    t.diagnostic(badKey);

    // (b) An Address already on another interface of this namespace: named, with the interface.
    const dupName = lab.ifname('c7b');
    registerWeftInterface(lab, dupName);
    const dup = await expectFailure(dupName, wgQuickConfig(base([`${taken.v4}/24`])), (stderr) => {
      assert.ok(stderr.includes(taken.v4) && stderr.includes(dummy), stderr);
    });
    t.diagnostic(dup);
    const dup6Name = lab.ifname('c7c');
    registerWeftInterface(lab, dup6Name);
    await expectFailure(
      dup6Name,
      wgQuickConfig(base([`${tunnelAddress(7, 9).v4}/24`, 'fd00:7:0:0::1/64'])),
      (stderr) => {
        assert.ok(stderr.includes(taken.v6) && stderr.includes(dummy), stderr);
      },
    );

    // (c) A file name that cannot be an interface name: too long, or a character outside [a-zA-Z0-9_=+.-].
    for (const name of [`${lab.prefix}this-is-too-long`, `${lab.prefix}a b`, `${lab.prefix}a:b`]) {
      const bad = await expectFailure(name, goodText, (stderr) => {
        assert.ok(stderr.includes(name) && /interface name/.test(stderr), stderr);
      });
      if (name.endsWith('long')) t.diagnostic(bad);
    }
  });

  it('8. `weft down NAME` and SIGTERM remove the interface, its routes, the UAPI socket and the pid file', async () => {
    const ns = await lab.netns('dn');
    const keys = generateKeyPair();
    const peerKeys = generateKeyPair();
    const spec: WgQuickSpec = {
      privateKey: keys.privateKey,
      addresses: ['10.8.0.1/24', 'fd00:8::1/64'],
      // Prefixes outside the interface's subnets, so that `weft up` adds routes for them.
      peers: [{ publicKey: peerKeys.publicKey, allowedIps: ['10.8.0.2/32', '10.98.0.0/24', 'fd00:98::/64'] }],
    };
    const routes = async (): Promise<string> =>
      (await ns.exec('ip', ['-4', 'route', 'show'])).stdout +
      (await ns.exec('ip', ['-6', 'route', 'show'])).stdout;

    for (const daemon of [true, false]) {
      const ifname = lab.ifname(daemon ? 'w8d' : 'w8f');
      const w = await up(ns, ifname, spec, { daemon });
      const { socket, pidFile } = weftArtifacts(ifname);
      await ns.exec('ip', ['link', 'show', 'dev', ifname]);
      const routed = await routes();
      assert.match(routed, new RegExp(`^10\\.98\\.0\\.0/24 dev ${ifname}\\b`, 'm'), routed);
      assert.match(routed, new RegExp(`^fd00:98::/64 dev ${ifname}\\b`, 'm'), routed);
      assert.ok(fs.existsSync(socket) && fs.existsSync(pidFile));
      assert.equal(Number(fs.readFileSync(pidFile, 'utf8')), w.pid);

      if (daemon) {
        const r = await weftCli(ns, ['down', ifname], { timeoutMs: 20_000 });
        assert.match(r.stdout, new RegExp(`${ifname} is down`));
        assert.ok(!labProcesses(lab).some((p) => p.pid === w.pid), 'the daemon is still running');
      } else {
        const proc = w.process!;
        proc.kill('SIGTERM');
        const status = await within(proc.exited, 8_000);
        assert.ok(status, `weft up --foreground did not exit on SIGTERM: ${proc.describe()}`);
        assert.equal(status.code, 0, proc.describe());
      }
      const link = await ns.exec('ip', ['link', 'show', 'dev', ifname], { allowFail: true });
      assert.notEqual(link.code, 0, `${ifname} still exists`);
      const left = await routes();
      assert.ok(!left.includes(ifname) && !left.includes('10.98.0.0') && !left.includes('fd00:98::'), left);
      assert.ok(!fs.existsSync(socket), `${socket} remains`);
      assert.ok(!fs.existsSync(pidFile), `${pidFile} remains`);
    }
  });

  it('8b. AllowedIPs 0.0.0.0/0 and ::/0: the default route goes into the tunnel, the tunnel never carries itself', async () => {
    const pair = await linkedPair(lab, 'dfa', 'dfb', 9);
    const weftKeys = generateKeyPair();
    const wgoKeys = generateKeyPair();
    const weftT = tunnelAddress(9, 1);
    const wgoT = tunnelAddress(9, 2);
    const wgo = await startWireguardGo(pair.b, lab.ifname('g9'), {
      privateKey: wgoKeys.privateKey,
      listenPort: 51829,
      addresses: [`${wgoT.v4}/24`, `${wgoT.v6}/64`],
      peers: [{ publicKey: weftKeys.publicKey, allowedIps: [`${weftT.v4}/32`, `${weftT.v6}/128`] }],
    });
    peers.push(wgo);
    // The outer path to the peer goes through a gateway, as on a real host's default route.
    await pair.a.exec('ip', ['route', 'add', 'default', 'via', pair.b4]);
    const ifname = lab.ifname('w9');
    const weft = await up(pair.a, ifname, {
      privateKey: weftKeys.privateKey,
      listenPort: 51828,
      addresses: [`${weftT.v4}/24`, `${weftT.v6}/64`],
      peers: [
        { publicKey: wgoKeys.publicKey, endpoint: `${pair.b4}:51829`, allowedIps: ['0.0.0.0/0', '::/0'] },
      ],
    });
    const routes = async (): Promise<string> =>
      (await pair.a.exec('ip', ['-4', 'route', 'show'])).stdout +
      (await pair.a.exec('ip', ['-6', 'route', 'show'])).stdout;
    const table = await routes();
    for (const half of ['0.0.0.0/1', '128.0.0.0/1', '::/1', '8000::/1']) {
      assert.match(table, new RegExp(`^${half.replaceAll('.', '\\.')} dev ${ifname}\\b`, 'm'), table);
    }
    assert.match(
      table,
      new RegExp(`^${pair.b4.replaceAll('.', '\\.')} dev ${pair.aIf}\\b`, 'm'),
      'endpoint pinned',
    );

    // The handshake reaches the endpoint (its packets do not enter the tunnel), and data flows.
    const through = await ping(pair.a, wgoT.v4, { count: 3, waitS: 3 });
    assert.equal(through.received, 3, through.output);
    // Any other destination now goes into the tunnel: wireguard-go receives it (and has nowhere to send it).
    const rxBefore = (await wgo.dump()).peers[0]!.rxBytes;
    await ping(pair.a, '10.250.0.9', { count: 2, waitS: 1 });
    assert.ok((await wgo.dump()).peers[0]!.rxBytes > rxBefore, 'a default-routed packet crossed the tunnel');

    await weft.stop();
    const after = await routes();
    assert.doesNotMatch(after, new RegExp(`dev ${ifname}\\b`), after);
    assert.doesNotMatch(
      after,
      new RegExp(`^${pair.b4.replaceAll('.', '\\.')} dev`, 'm'),
      'pinned route removed',
    );
  });

  it('9. nothing the suite created remains: sockets, pid files, processes, namespaces', async (t) => {
    // Bring every interface down the normal way first: what Weft leaves is Weft's fault, not the lab's.
    for (const w of started) await w.stop();
    for (const name of weftInterfaceNames(lab)) {
      const { socket, pidFile } = weftArtifacts(name);
      assert.ok(!fs.existsSync(socket), `${socket} remains after Weft stopped`);
      assert.ok(!fs.existsSync(pidFile), `${pidFile} remains after Weft stopped`);
    }
    for (const g of peers) await g.stop();
    const names = [...weftInterfaceNames(lab), ...peers.map((g) => g.ifname)];
    const prefix = lab.prefix;
    await stopWeftInterfaces(lab);
    await lab.cleanup();

    for (const name of names) {
      const { socket, pidFile, logFile } = weftArtifacts(name);
      for (const f of [socket, pidFile, logFile]) assert.ok(!fs.existsSync(f), `${f} remains`);
    }
    assert.deepEqual(labProcesses(lab), [], 'processes of the lab are still alive');
    const weftProcs = labProcesses(lab).filter((p) => p.cmdline.includes(WEFT_MAIN));
    assert.deepEqual(weftProcs, []);
    const namespaces = (await run('ip', ['netns', 'list'])).stdout;
    assert.ok(!namespaces.split('\n').some((l) => l.startsWith(`${prefix}-`)), namespaces);
    t.diagnostic(`suite time ${((Date.now() - suiteStart) / 1000).toFixed(1)} s`);
  });
});

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
