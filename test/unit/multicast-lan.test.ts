import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LanBridge, type LanSocket } from '../../src/gateway/multicast-lan.js';
import { Replicator, type MulticastPort } from '../../src/gateway/multicast.js';
import { buildReport, internetChecksum } from '../../src/multicast/messages.js';
import { readIpHeader } from '../../src/net/ip-packet.js';

const v4 = (...b: number[]): Uint8Array => Uint8Array.from(b);
const G = v4(239, 1, 2, 3);
const G2 = v4(239, 9, 9, 9);
const MDNS = v4(224, 0, 0, 251);

interface Port extends MulticastPort {
  readonly got: Uint8Array[];
}

function port(id: string): Port {
  const got: Uint8Array[] = [];
  return {
    id,
    families: [4],
    got,
    send: (packet, header) => void got.push(packet.slice(0, header.length)),
    flush: () => undefined,
  };
}

class FakeLan implements LanSocket {
  readonly name = 'eth1';
  readonly members = new Set<string>();
  readonly calls: string[] = [];
  readonly sent: Uint8Array[] = [];
  membership(group: Uint8Array, join: boolean): boolean {
    const g = group.join('.');
    this.calls.push(`${join ? 'join' : 'leave'} ${g}`);
    if (join) this.members.add(g);
    else this.members.delete(g);
    return true;
  }
  send(packet: Uint8Array): void {
    this.sent.push(packet.slice());
  }
}

/** A UDP datagram from `source` to `group` (IPv4 header checksum correct, UDP checksum as given). */
function datagram(source: Uint8Array, group: Uint8Array, ttl: number, id = 1, udpSum = 0x1234): Uint8Array {
  const data = new TextEncoder().encode('payload');
  const p = new Uint8Array(28 + data.length);
  p.set([0x45, 0, 0, p.length, id >> 8, id & 0xff, 0x40, 0, ttl, 17], 0);
  p.set(source, 12);
  p.set(group, 16);
  p.set([0x13, 0x88, 0x13, 0x88, 0, 8 + data.length, udpSum >> 8, udpSum & 0xff], 20);
  p.set(data, 28);
  const c = internetChecksum(p.subarray(0, 20));
  p[10] = c >> 8;
  p[11] = c & 0xff;
  return p;
}

/** Verifies a UDP checksum over the IPv4 pseudo-header (0 when correct). */
function udpCheck(p: Uint8Array): number {
  const udp = p.subarray(20);
  const pseudo = new Uint8Array(12 + udp.length + (udp.length % 2));
  pseudo.set(p.subarray(12, 20), 0);
  pseudo.set([0, 17, udp.length >> 8, udp.length & 0xff], 8);
  pseudo.set(udp, 12);
  return internetChecksum(pseudo);
}

const LAN_HOST = v4(192, 168, 74, 10);
const ALICE = v4(10, 66, 0, 2);

function setup() {
  const lan = new FakeLan();
  const hook: { bridge?: LanBridge } = {};
  const replicator = new Replicator({
    querySource4: v4(10, 66, 0, 1),
    onAction: (a) => hook.bridge?.onAction(a),
  });
  const bridge = new LanBridge(replicator, lan, (s) => s[0] === 10 && s[1] === 66 && s[2] === 0);
  hook.bridge = bridge;
  const [a, b] = ['wg:a', 'wg:b'].map(port) as [Port, Port];
  for (const p of [a, b]) replicator.addPort(p, 0);
  for (const p of [a, b]) p.got.length = 0;
  const join = (p: Port, group: Uint8Array, type: 3 | 4 = 4): void => {
    const rep = buildReport(4, v4(10, 66, 0, 9), [{ type, group }]);
    replicator.receive(rep, readIpHeader(rep)!, p, 0);
  };
  return { replicator, lan, bridge, a, b, join };
}

describe('LAN bridge (IGMP proxy)', () => {
  it('joins a routed group on the LAN with its first overlay receiver and leaves with its last', () => {
    const { lan, a, b, join } = setup();
    join(a, G);
    join(b, G);
    join(a, MDNS);
    assert.deepEqual(
      lan.calls,
      ['join 239.1.2.3'],
      'one upstream join; link-local groups stay in the overlay',
    );
    join(a, G, 3); // TO_IN({}): a leaves at once
    assert.deepEqual(lan.calls, ['join 239.1.2.3']);
    join(b, G, 3);
    assert.deepEqual(lan.calls, ['join 239.1.2.3', 'leave 239.1.2.3']);
  });

  it('overlay → LAN: every routed group goes upstream, joined or not, TTL decremented; link-local does not', () => {
    const { replicator, lan, a } = setup();
    const p = datagram(ALICE, G2, 4);
    assert.ok(replicator.receive(p, readIpHeader(p)!, a, 1));
    assert.equal(lan.sent.length, 1);
    assert.equal(lan.sent[0]![8], 3);
    const m = datagram(ALICE, MDNS, 255, 2);
    assert.equal(replicator.receive(m, readIpHeader(m)!, a, 1), false);
    assert.equal(lan.sent.length, 1);
    assert.equal(replicator.drops['no-receivers'], 1);
  });

  it('LAN → overlay: to joined members only, not back to the LAN; the UDP checksum is completed', () => {
    const { replicator, bridge, lan, a, b, join } = setup();
    join(a, G);
    bridge.input([datagram(LAN_HOST, G, 4, 1, 0xbeef)], 1);
    assert.equal(a.got.length, 1);
    assert.equal(b.got.length, 0, 'b did not join');
    assert.equal(lan.sent.length, 0, 'nothing goes back to the LAN');
    assert.equal(a.got[0]![8], 3);
    assert.equal(udpCheck(a.got[0]!), 0, 'a valid UDP checksum');
    const none = datagram(LAN_HOST, G, 4, 2, 0);
    bridge.input([none], 2);
    assert.equal(a.got[1]![26] === 0 && a.got[1]![27] === 0, true, 'no checksum sent: none added');
    assert.equal(replicator.snapshot(3).ports.find((p) => p.port === 'lan:eth1')?.sent, 2);
  });

  it('loops: a copy back from the overlay is dropped by source; one arriving twice is copied once', () => {
    const { replicator, bridge, a, b, join } = setup();
    join(a, G);
    join(b, G);
    const p = datagram(ALICE, G, 4, 7);
    replicator.receive(p, readIpHeader(p)!, a, 1);
    assert.equal(b.got.length, 1);
    bridge.input([datagram(ALICE, G, 3, 7)], 2);
    assert.equal(b.got.length, 1, 'our own copy back from the LAN');
    assert.equal(bridge.counters.loop, 1);
    assert.equal(replicator.drops.loop, 1);
    // The same LAN datagram by two paths (e.g. two LAN ports into one broadcast domain): copied once.
    bridge.input([datagram(LAN_HOST, G, 4, 9), datagram(LAN_HOST, G, 4, 9)], 3);
    assert.deepEqual([a.got.length, b.got.length], [1, 2]);
    assert.equal(replicator.drops.duplicate, 1);
  });

  it('close() leaves every group on the LAN and stops sending upstream', () => {
    const { replicator, bridge, lan, a, join } = setup();
    join(a, G);
    bridge.close();
    assert.deepEqual(lan.calls, ['join 239.1.2.3', 'leave 239.1.2.3']);
    const p = datagram(ALICE, G2, 4);
    replicator.receive(p, readIpHeader(p)!, a, 1);
    assert.equal(lan.sent.length, 0);
  });
});

describe('LAN bridge over IPv6 (MLD proxy)', () => {
  const v6 = (head: number[], tail: number[]): Uint8Array => {
    const a = new Uint8Array(16);
    a.set(head, 0);
    a.set(tail, 16 - tail.length);
    return a;
  };
  const G6 = v6([0xff, 0x15], [0, 1]);
  const MDNS6 = v6([0xff, 0x02], [0, 0xfb]);
  const HOST6 = v6([0xfd, 0x74], [0, 0x10]);
  const ALICE6 = v6([0xfd, 0x66], [0, 2]);

  /** An IPv6/UDP datagram (UDP checksum as given: a sender's offloaded checksum is not final). */
  function datagram6(source: Uint8Array, group: Uint8Array, hops: number, udpSum = 0x1234): Uint8Array {
    const data = new TextEncoder().encode('payload6');
    const p = new Uint8Array(48 + data.length);
    p.set([0x60, 0, 0, 0, 0, 8 + data.length, 17, hops], 0);
    p.set(source, 8);
    p.set(group, 24);
    p.set([0x13, 0x88, 0x13, 0x88, 0, 8 + data.length, udpSum >> 8, udpSum & 0xff], 40);
    p.set(data, 48);
    return p;
  }
  /** Verifies a UDP checksum over the IPv6 pseudo-header (0 when correct). */
  function udp6Check(p: Uint8Array): number {
    const udp = p.subarray(40);
    const pseudo = new Uint8Array(40 + udp.length + (udp.length % 2));
    pseudo.set(p.subarray(8, 40), 0);
    pseudo.set([0, 0, udp.length >> 8, udp.length & 0xff, 0, 0, 0, 17], 32);
    pseudo.set(udp, 40);
    return internetChecksum(pseudo);
  }

  function setup6() {
    const lan = new FakeLan();
    const hook: { bridge?: LanBridge } = {};
    const replicator = new Replicator({
      querySource6: v6([0xfe, 0x80], [1]),
      onAction: (a) => hook.bridge?.onAction(a),
    });
    const overlay = (s: Uint8Array): boolean => s.length === 16 && s[0] === 0xfd && s[1] === 0x66;
    const bridge = new LanBridge(replicator, lan, overlay);
    hook.bridge = bridge;
    const a: Port = { ...port('wg:a'), families: [6] };
    replicator.addPort(a, 0);
    a.got.length = 0;
    const join = (group: Uint8Array, type: 3 | 4 = 4): void => {
      const rep = buildReport(6, v6([0xfe, 0x80], [9]), [{ type, group }]);
      replicator.receive(rep, readIpHeader(rep)!, a, 0);
    };
    return { replicator, lan, bridge, a, join };
  }

  it('joins an ff15:: group on the LAN for the overlay (MLD), never an ff02:: one; leaves with the last', () => {
    const { lan, join } = setup6();
    join(G6);
    join(MDNS6);
    assert.deepEqual(lan.calls, [`join ${G6.join('.')}`]);
    join(G6, 3);
    assert.deepEqual(lan.calls, [`join ${G6.join('.')}`, `leave ${G6.join('.')}`]);
  });

  it('LAN → overlay: hop limit decremented, UDP checksum completed; a copy from the overlay is a loop', () => {
    const { replicator, bridge, a, join } = setup6();
    join(G6);
    bridge.input([datagram6(HOST6, G6, 4)], 1);
    assert.equal(a.got.length, 1);
    assert.equal(a.got[0]![7], 3, 'hop limit 4 → 3');
    assert.equal(udp6Check(a.got[0]!), 0, 'a valid UDP checksum');
    bridge.input([datagram6(ALICE6, G6, 4)], 2);
    assert.equal(a.got.length, 1);
    assert.equal(bridge.counters.loop, 1);
    assert.equal(replicator.drops.loop, 1);
    bridge.input([datagram6(HOST6, G6, 4).subarray(0, 45)], 3);
    assert.equal(bridge.counters.malformed, 1, 'a truncated packet is counted, not taken');
  });

  it('overlay → LAN: a routed IPv6 group goes upstream, hop limit decremented; ff02:: does not', () => {
    const { replicator, lan, a } = setup6();
    const p = datagram6(ALICE6, G6, 4);
    assert.ok(replicator.receive(p, readIpHeader(p)!, a, 1));
    assert.equal(lan.sent.length, 1);
    assert.equal(lan.sent[0]![7], 3);
    const m = datagram6(ALICE6, MDNS6, 255);
    assert.equal(replicator.receive(m, readIpHeader(m)!, a, 1), false);
    assert.equal(lan.sent.length, 1);
  });
});
