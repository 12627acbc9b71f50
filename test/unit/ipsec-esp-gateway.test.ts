/**
 * The ESP shell without root: two gateways (MemoryTun) whose EspPorts talk over a MemoryNetwork on port
 * 4500, each with an IpsecSite holding mirror-image CHILD SAs. Pings both ways (IPv4 and IPv6 inner), transport
 * mode with the rebuilt header, a replayed and a wrong-SPI datagram dropped and counted, IKE and keepalives
 * demultiplexed (RFC 3948), the peer's endpoint following a NAT mapping change, and SA replacement.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { Gateway } from '../../src/gateway/gateway.js';
import { EspPort } from '../../src/gateway/esp-port.js';
import { IpsecSite } from '../../src/gateway/ipsec-site.js';
import { MemoryBind, MemoryNetwork, MemoryTun } from '../../src/io/memory.js';
import { echo, readEcho } from '../../src/net/icmp.js';
import { parsePrefix } from '../../src/net/ip.js';
import type { Datagram } from '../../src/io/bind.js';
import type { Endpoint } from '../../src/net/endpoint.js';
import { mirrorSpecs, selector } from '../support/esp-specs.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function prefix(text: string) {
  const p = parsePrefix(text);
  if (!p.ok) throw new Error(p.error);
  return p.value;
}

function lab(mode: 'tunnel' | 'transport' = 'tunnel', random?: (n: number) => Buffer) {
  const net = new MemoryNetwork();
  const sent: { from: Endpoint; d: Datagram }[] = [];
  net.filter = (from, d) => {
    sent.push({ from, d: { data: Uint8Array.from(d.data), endpoint: d.endpoint } });
    return true;
  };
  const side = (addr: string) => {
    const tun = new MemoryTun(`tun-${addr}`);
    const gw = new Gateway(tun);
    const ike: Uint8Array[] = [];
    const bind: MemoryBind = net.bind(addr, 4500);
    const port = new EspPort({ udp: bind, onIke: (m) => ike.push(m) });
    const site = new IpsecSite({
      name: `site-${addr}`,
      port,
      deliver: gw.deliver,
      ...(random ? { random } : {}),
    });
    gw.start();
    port.start();
    return { tun, gw, port, site, ike, bind };
  };
  const a = side('192.0.2.1');
  const b = side('192.0.2.2');
  const netA =
    mode === 'tunnel'
      ? [selector('10.1.0.0', '10.1.0.255'), selector('fd00:1::', 'fd00:1::ffff')]
      : [selector('192.0.2.1', '192.0.2.1')];
  const netB =
    mode === 'tunnel'
      ? [selector('10.2.0.0', '10.2.0.255'), selector('fd00:2::', 'fd00:2::ffff')]
      : [selector('192.0.2.2', '192.0.2.2')];
  const specs = mirrorSpecs(netA, netB, { mode });
  a.site.installChildSa(specs.a, {
    peer: { address: '192.0.2.2', port: 4500 },
    carrier: 'udp',
    localAddress: '192.0.2.1',
  });
  b.site.installChildSa(specs.b, {
    peer: { address: '192.0.2.1', port: 4500 },
    carrier: 'udp',
    localAddress: '192.0.2.2',
  });
  if (mode === 'tunnel') {
    a.gw.setRoutes(a.site, [prefix('10.2.0.0/24'), prefix('fd00:2::/64')]);
    b.gw.setRoutes(b.site, [prefix('10.1.0.0/24'), prefix('fd00:1::/64')]);
  } else {
    a.gw.setRoutes(a.site, [prefix('192.0.2.2/32')]);
    b.gw.setRoutes(b.site, [prefix('192.0.2.1/32')]);
  }
  return { net, sent, a, b, specs };
}

describe('ESP shell (EspPort + IpsecSite)', () => {
  it('carries pings both ways, IPv4 and IPv6 inner, in tunnel mode', async () => {
    const { a, b } = lab();
    a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, 1, new Uint8Array(32)));
    a.tun.inject(echo('request', 'fd00:1::5', 'fd00:2::7', 1, 2, new Uint8Array(32)));
    await tick();
    assert.equal(b.tun.written.length, 2);
    assert.equal(readEcho(b.tun.written[0]!)?.seq, 1);
    assert.equal(readEcho(b.tun.written[1]!)?.family, 6);
    b.tun.inject(echo('reply', '10.2.0.7', '10.1.0.5', 1, 1, new Uint8Array(32)));
    await tick();
    assert.equal(a.tun.written.length, 1);
    const [status] = b.site.childSas();
    assert.equal(status?.inbound.packets, 2);
    assert.equal(status?.outbound?.packets, 1);
  });

  it('transport mode: the payload travels, the receiver rebuilds the IP header', async () => {
    const { a, b } = lab('transport');
    const ping = echo('request', '192.0.2.1', '192.0.2.2', 9, 3, new Uint8Array(16).fill(7));
    a.tun.inject(ping);
    await tick();
    assert.equal(b.tun.written.length, 1);
    const got = b.tun.written[0]!;
    assert.deepEqual(got.subarray(20), ping.subarray(20), 'ICMP message unchanged');
    assert.equal(readEcho(got)?.seq, 3, 'a valid IPv4 header in front');
    assert.deepEqual([...got.subarray(12, 20)], [192, 0, 2, 1, 192, 0, 2, 2]);
  });

  it('byte lifetimes: listed for a rekey at the soft one; past the hard one, nothing sealed or delivered', async () => {
    const { a, b, specs } = lab();
    // 60-byte inner packets. A: rekey at 150, hard at 300 bytes; B: receives at most 120 bytes.
    a.site.installChildSa(specs.a, {
      peer: { address: '192.0.2.2', port: 4500 },
      carrier: 'udp',
      rekeyBytes: 150,
      lifeBytes: 300,
    });
    b.site.installChildSa(specs.b, {
      peer: { address: '192.0.2.1', port: 4500 },
      carrier: 'udp',
      lifeBytes: 120,
    });
    const send = async (n: number, from = 1): Promise<void> => {
      for (let seq = from; seq < from + n; seq++)
        a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, seq, new Uint8Array(32)));
      await tick();
    };
    await send(2);
    assert.deepEqual(a.site.rekeyDue(), []);
    await send(1, 3);
    assert.equal(a.site.rekeyDue()[0]?.why, 'bytes');
    assert.equal(a.site.rekeyDue()[0]?.inboundSpi, specs.a.inboundSpi);
    // B delivered two (120 bytes), dropped the third; A sealed five (300 bytes), refused the sixth.
    assert.equal(b.tun.written.length, 2);
    assert.equal(b.site.counters.expired, 1);
    assert.equal(b.site.expiredDue()[0]?.bytesIn, 180);
    await send(3, 4);
    assert.equal(a.site.counters.packetsOut, 5);
    assert.equal(a.site.counters.expired, 1);
    assert.deepEqual(a.site.expiredDue(), [
      { inboundSpi: specs.a.inboundSpi, outboundSpi: specs.a.outboundSpi, bytesIn: 0, bytesOut: 300 },
    ]);
  });

  it('several CHILD SAs: each packet on the SA whose selectors hold it; none: dropped as unmatched', async () => {
    const { a, b, sent } = lab();
    // A second pair: 10.1.1.0/24 ↔ 10.2.1.0/24 on its own SAs.
    const pair2 = mirrorSpecs([selector('10.1.1.0', '10.1.1.255')], [selector('10.2.1.0', '10.2.1.255')], {
      spiA: 0xc0a00002,
      spiB: 0xc0b00002,
    });
    a.site.installChildSa(pair2.a, { peer: { address: '192.0.2.2', port: 4500 }, carrier: 'udp' });
    b.site.installChildSa(pair2.b, { peer: { address: '192.0.2.1', port: 4500 }, carrier: 'udp' });
    a.gw.setRoutes(a.site, [prefix('10.2.0.0/24'), prefix('10.2.1.0/24'), prefix('fd00:2::/64')]);
    const outOf = (spi: number) =>
      a.site.childSas().find((c) => c.inboundSpi === spi)?.outbound?.packets ?? 0;
    a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, 1, new Uint8Array(32)));
    a.tun.inject(echo('request', '10.1.1.5', '10.2.1.7', 1, 2, new Uint8Array(32)));
    a.tun.inject(echo('request', '10.1.1.5', '10.2.1.8', 1, 3, new Uint8Array(32)));
    await tick();
    assert.deepEqual([outOf(0xc0a00001), outOf(0xc0a00002)], [1, 2]);
    assert.equal(b.tun.written.length, 3);
    // A source of one pair and a destination of the other: no SA's selectors hold it.
    const onWire = sent.length;
    a.tun.inject(echo('request', '10.1.1.5', '10.2.0.7', 1, 4, new Uint8Array(32)));
    await tick();
    assert.equal(a.site.counters.unmatched, 1);
    assert.equal(sent.length, onWire, 'nothing sent');
    // The second pair's SA goes: its packets are dropped, not sealed with the first pair's SA.
    a.site.removeChildSa(pair2.a.inboundSpi);
    a.tun.inject(echo('request', '10.1.1.5', '10.2.1.7', 1, 5, new Uint8Array(32)));
    a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, 6, new Uint8Array(32)));
    await tick();
    assert.equal(a.site.counters.unmatched, 2);
    assert.deepEqual([outOf(0xc0a00001), a.site.counters.packetsOut], [2, 4]);
    assert.equal(b.tun.written.length, 4);
    assert.equal(readEcho(b.tun.written[3]!)?.seq, 6);
    assert.equal(a.site.counters.noSa, 0);
  });

  it('one CHILD SA: by selectors only when asked (a per-pair site), otherwise every routed packet', async () => {
    const { a, b } = lab();
    a.gw.setRoutes(a.site, [prefix('10.2.0.0/24'), prefix('fd00:2::/64')]);
    // A source outside A's selectors (e.g. a member elsewhere): sealed as before on a plain site.
    a.tun.inject(echo('request', '10.9.0.5', '10.2.0.7', 1, 1, new Uint8Array(32)));
    await tick();
    assert.equal(a.site.counters.packetsOut, 1);
    a.site.selectBySelectors = true;
    a.tun.inject(echo('request', '10.9.0.5', '10.2.0.7', 1, 2, new Uint8Array(32)));
    a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, 3, new Uint8Array(32)));
    await tick();
    assert.deepEqual([a.site.counters.packetsOut, a.site.counters.unmatched], [2, 1]);
    assert.equal(readEcho(b.tun.written[b.tun.written.length - 1]!)?.seq, 3);
  });

  it('byte lifetimes with jitter: the rekey count is drawn per SA in the 10% below the configured one', async () => {
    // 60-byte inner packets, rekey at 10 000 bytes less (random × 10%): the draw decides after which packet.
    const cases: [string, number, number][] = [
      ['00000000', 10_000, 167], // no jitter: 167 × 60 = 10 020 is the first count past 10 000
      ['80000000', 9_500, 159],
      ['ffffffff', 9_001, 151],
    ];
    for (const [draw, limit, packets] of cases) {
      const { a, specs } = lab('tunnel', (n) =>
        Buffer.from(draw.repeat(Math.ceil(n / 4)), 'hex').subarray(0, n),
      );
      a.site.installChildSa(specs.a, {
        peer: { address: '192.0.2.2', port: 4500 },
        carrier: 'udp',
        rekeyBytes: 10_000,
        lifeBytes: 20_000,
      });
      let sent = 0;
      while (a.site.rekeyDue().length === 0 && sent < 400) {
        a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, ++sent, new Uint8Array(32)));
        await tick();
      }
      assert.equal(sent, packets, `draw ${draw}`);
      assert.equal(a.site.rekeyDue()[0]?.rekeyBytes, limit);
      assert.deepEqual(a.site.expiredDue(), []);
    }
  });

  it('drops a replayed datagram and one with a wrong SPI, and counts them', async () => {
    const { a, b, sent, net } = lab();
    a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, 1, new Uint8Array(32)));
    await tick();
    const captured = sent[0]!;
    net.transmit(captured.from, captured.d);
    const wrong = Uint8Array.from(captured.d.data);
    wrong[0]! ^= 0x55;
    net.transmit(captured.from, { data: wrong, endpoint: captured.d.endpoint });
    await tick();
    assert.equal(b.tun.written.length, 1);
    assert.equal(b.site.childSas()[0]?.inbound.drops.replay, 1);
    assert.equal(b.port.inbound.drops.unknownSpi, 1);
  });

  it('hands IKE (non-ESP marker) to the IKE side and ignores NAT keepalives', async () => {
    const { a, b } = lab();
    a.bind.send([
      { data: Uint8Array.of(0, 0, 0, 0, 1, 2, 3), endpoint: { address: '192.0.2.2', port: 4500 } },
    ]);
    a.bind.send([{ data: Uint8Array.of(0xff), endpoint: { address: '192.0.2.2', port: 4500 } }]);
    a.bind.send([{ data: Uint8Array.of(1, 2), endpoint: { address: '192.0.2.2', port: 4500 } }]);
    await tick();
    assert.deepEqual(b.ike, [Uint8Array.of(1, 2, 3)]);
    assert.equal(b.port.counters.keepalives, 1);
    assert.equal(b.port.counters.invalid, 1);
  });

  it("answers at the peer's new endpoint after its NAT mapping changed", async () => {
    const { a, b, net } = lab();
    a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, 1, new Uint8Array(8)));
    await tick();
    // A's packets now arrive from another port (the NAT rebound): B follows once one authenticates.
    const moved = net.bind('192.0.2.1', 34567);
    const seen: Uint8Array[] = [];
    moved.start((ds) => ds.forEach((d) => seen.push(d.data)));
    const sa = a.site.childSas()[0]!;
    assert.equal(sa.peer.port, 4500);
    const captured: Datagram[] = [];
    net.filter = (from, d) => {
      if (from.port === 4500 && from.address === '192.0.2.1') {
        captured.push(d);
        return false;
      }
      return true;
    };
    a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, 2, new Uint8Array(8)));
    await tick();
    net.filter = () => true;
    moved.send(captured);
    await tick();
    assert.equal(b.site.childSas()[0]?.peer.port, 34567);
    b.tun.inject(echo('reply', '10.2.0.7', '10.1.0.5', 1, 2, new Uint8Array(8)));
    await tick();
    assert.equal(seen.length, 1);
  });

  it('a rekey: the new SA carries outbound traffic, the old one still opens until removed', async () => {
    const { a, b, specs } = lab();
    const next = mirrorSpecs(specs.a.localSelectors, specs.a.remoteSelectors, { spiA: 0x1111, spiB: 0x2222 });
    // Only A moves to the new SA at first; B still sends on the old one.
    b.site.installChildSa(next.b, { peer: { address: '192.0.2.1', port: 4500 }, carrier: 'udp' });
    a.site.installChildSa(next.a, { peer: { address: '192.0.2.2', port: 4500 }, carrier: 'udp' });
    a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, 1, new Uint8Array(8)));
    await tick();
    assert.equal(b.tun.written.length, 1);
    assert.deepEqual(
      b.site.childSas().map((s) => [s.inboundSpi, s.inbound.packets]),
      [
        [0xc0b00001, 0],
        [0x2222, 1],
      ],
    );
    assert.equal(a.site.removeChildSa(0xc0a00001), true);
    assert.equal(a.site.childSas().length, 1);
  });

  it('the responder of a rekey keeps sending on the old SA until the peer uses the new one', async () => {
    const { a, b, specs } = lab();
    const next = mirrorSpecs(specs.a.localSelectors, specs.a.remoteSelectors, { spiA: 0x1111, spiB: 0x2222 });
    const outSpis = (side: typeof b): number[] =>
      side.site
        .childSas()
        .filter((s) => s.outbound !== null && s.outbound.packets > 0)
        .map((s) => s.outboundSpi);
    // B answered the rekey: it has the new SA but must not send on it before A shows it has it too.
    b.site.installChildSa(next.b, {
      peer: { address: '192.0.2.1', port: 4500 },
      carrier: 'udp',
      outboundLater: true,
    });
    b.tun.inject(echo('request', '10.2.0.7', '10.1.0.5', 1, 1, new Uint8Array(8)));
    await tick();
    assert.equal(a.tun.written.length, 1, 'the old SA still carries B → A');
    assert.deepEqual(outSpis(b), [specs.b.outboundSpi]);
    // A gets the response and moves to the new SA; its first packet there moves B as well.
    a.site.installChildSa(next.a, { peer: { address: '192.0.2.2', port: 4500 }, carrier: 'udp' });
    a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, 2, new Uint8Array(8)));
    await tick();
    assert.equal(b.tun.written.length, 1);
    b.tun.inject(echo('request', '10.2.0.7', '10.1.0.5', 1, 3, new Uint8Array(8)));
    await tick();
    assert.equal(a.tun.written.length, 2);
    assert.deepEqual(
      a.site.childSas().map((s) => [s.inboundSpi, s.inbound.packets]),
      [
        [specs.a.inboundSpi, 1],
        [0x1111, 1],
      ],
    );
  });

  it('the responder of a rekey moves to the new SA when the old one is removed (the delete)', async () => {
    const { a, b, specs } = lab();
    const next = mirrorSpecs(specs.a.localSelectors, specs.a.remoteSelectors, { spiA: 0x1111, spiB: 0x2222 });
    b.site.installChildSa(next.b, {
      peer: { address: '192.0.2.1', port: 4500 },
      carrier: 'udp',
      outboundLater: true,
    });
    a.site.installChildSa(next.a, { peer: { address: '192.0.2.2', port: 4500 }, carrier: 'udp' });
    assert.equal(b.site.removeChildSa(specs.b.inboundSpi), true);
    b.tun.inject(echo('request', '10.2.0.7', '10.1.0.5', 1, 1, new Uint8Array(8)));
    await tick();
    assert.equal(a.tun.written.length, 1);
    assert.deepEqual(
      a.site.childSas().map((s) => [s.inboundSpi, s.inbound.packets]),
      [
        [specs.a.inboundSpi, 0],
        [0x1111, 1],
      ],
    );
  });
});
