/**
 * The IPsec shell without root: Weft gateways (MemoryTun, Gateway, IpsecInterface) whose UDP 500 and 4500 binds
 * talk over a MemoryNetwork, on a clock the test advances. The dispatch rules (a site by the sender's address,
 * else the `%any` site; an unknown SPI and a new IKE_SA_INIT nobody accepts are dropped, counted, unanswered;
 * an IKEv1 header is logged once and unanswered), traffic through the negotiated CHILD SA, update() adding,
 * removing (INFORMATIONAL delete), disabling and changing sites, start action on-traffic, a CHILD SA rekeyed
 * once as its sequence numbers near their end, and close().
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Gateway } from '../../src/gateway/gateway.js';
import { IpsecInterface } from '../../src/gateway/ipsec-interface.js';
import type { Datagram } from '../../src/io/bind.js';
import { MemoryNetwork, MemoryTun } from '../../src/io/memory.js';
import type { SiteSpec } from '../../src/ipsec/site-spec.js';
import type { Endpoint } from '../../src/net/endpoint.js';
import { echo, readEcho } from '../../src/net/icmp.js';

const PSK = 'unit-test-psk-0123456789-abcdef';

async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

function spec(over: Partial<SiteSpec> & Pick<SiteSpec, 'name' | 'remoteAddress'>): SiteSpec {
  return {
    enabled: true,
    localId: null,
    remoteId: null,
    psk: PSK,
    forceShortPsk: false,
    localSubnets: ['10.1.0.0/24'],
    remoteSubnets: ['10.2.0.0/24'],
    mode: 'tunnel',
    ikeProposals: ['aes256gcm16-prfsha256-x25519'],
    espProposals: ['aes256gcm16'],
    allowLegacyGroups: false,
    ikeLifetimeSec: 14_400,
    childLifetimeSec: 3_600,
    dpdIntervalSec: 30,
    dpdAction: 'restart',
    startAction: 'wait',
    groups: [],
    ...over,
  };
}

/** The mirror image of a site: what the peer at `address` configures for us. */
function mirror(
  s: SiteSpec,
  name: string,
  remoteAddress: string | null,
  over: Partial<SiteSpec> = {},
): SiteSpec {
  return {
    ...s,
    name,
    remoteAddress,
    localSubnets: s.remoteSubnets,
    remoteSubnets: s.localSubnets,
    ...over,
  };
}

class World {
  readonly net = new MemoryNetwork();
  now = 1_000_000;
  readonly sent: { from: Endpoint; d: Datagram }[] = [];
  constructor() {
    this.net.filter = (from, d) => {
      this.sent.push({ from, d });
      return true;
    };
  }

  gateway(address: string, sites: SiteSpec[]) {
    const tun = new MemoryTun(`tun-${address}`);
    const gw = new Gateway(tun, () => this.now);
    gw.start();
    const logs: string[] = [];
    const ipsec = new IpsecInterface({
      gateway: gw,
      ike: this.net.bind(address, 500),
      natt: this.net.bind(address, 4500),
      log: (l) => logs.push(l),
      clock: () => this.now,
      tickMs: 0,
      localAddressFor: () => address,
    });
    ipsec.update(sites);
    return { tun, gw, ipsec, logs, address };
  }

  /** Advances the clock in steps, ticking every interface, letting datagrams arrive between steps. */
  async advance(ms: number, gateways: { ipsec: IpsecInterface }[], step = 100): Promise<void> {
    for (let t = 0; t < ms; t += step) {
      this.now += step;
      for (const g of gateways) g.ipsec.tick();
      await settle(3);
    }
  }

  sentBy(address: string): number {
    return this.sent.filter((s) => s.from.address === address).length;
  }
}

function state(g: { ipsec: IpsecInterface }, name: string): string | undefined {
  return g.ipsec.status().find((s) => s.name === name)?.state;
}

/** A bare IKE header (RFC 7296 §3.1) with the given SPIs, version byte, exchange and flags. */
function ikeHeader(spiI: number, spiR: number, version: number, exchange: number, flags: number): Uint8Array {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(spiI, 4);
  h.writeUInt32BE(spiR, 12);
  h[16] = 33;
  h[17] = version;
  h[18] = exchange;
  h[19] = flags;
  h.writeUInt32BE(28, 24);
  return h;
}

describe('IpsecInterface', () => {
  it('brings a site up from either side and carries packets both ways', async () => {
    const w = new World();
    const aSite = spec({ name: 'to-b', remoteAddress: '192.0.2.2', startAction: 'initiate' });
    const b = w.gateway('192.0.2.2', [mirror(aSite, 'to-a', '192.0.2.1', { startAction: 'wait' })]);
    const a = w.gateway('192.0.2.1', [aSite]);
    await w.advance(500, [a, b]);
    assert.equal(state(a, 'to-b'), 'up', a.logs.join('\n'));
    assert.equal(state(b, 'to-a'), 'up', b.logs.join('\n'));
    const sa = a.ipsec.status()[0]!;
    assert.equal(sa.ike?.initiator, true);
    assert.equal(sa.ike?.peerId, 'ipv4:192.0.2.2');
    assert.equal(sa.children[0]!.carrier, 'udp', 'no raw ESP bind: UDP encapsulation is forced');
    assert.deepEqual(sa.children[0]!.remoteSubnets, ['10.2.0.0/24']);

    a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, 1, new Uint8Array(32)));
    await settle();
    assert.equal(b.tun.written.length, 1);
    assert.equal(readEcho(b.tun.written[0]!)?.seq, 1);
    b.tun.inject(echo('reply', '10.2.0.7', '10.1.0.5', 1, 1, new Uint8Array(32)));
    await settle();
    assert.equal(a.tun.written.length, 1);
    const after = a.ipsec.status()[0]!.children[0]!;
    assert.equal(after.packetsOut, 1);
    assert.equal(after.packetsIn, 1);
    assert.ok(after.bytesIn > 0 && after.bytesOut > 0);
  });

  it('dispatches a new IKE_SA_INIT to the site with the sender’s address, else to the %any site', async () => {
    const w = new World();
    const toHub = spec({ name: 'hub', remoteAddress: '192.0.2.10', startAction: 'initiate' });
    const hub = w.gateway('192.0.2.10', [
      mirror(toHub, 'branch-1', '192.0.2.1', { startAction: 'wait' }),
      mirror(toHub, 'branch-3', '192.0.2.3', { startAction: 'wait' }),
      mirror(toHub, 'roaming', null, { startAction: 'wait' }),
    ]);
    const one = w.gateway('192.0.2.1', [toHub]);
    const other = w.gateway('192.0.2.7', [toHub]);
    await w.advance(500, [hub, one, other]);
    assert.equal(state(hub, 'branch-1'), 'up', hub.logs.join('\n'));
    assert.equal(state(hub, 'branch-3'), 'down');
    assert.equal(state(hub, 'roaming'), 'up');
    assert.equal(hub.ipsec.status().find((s) => s.name === 'roaming')?.ike?.peerId, 'ipv4:192.0.2.7');
    assert.equal(state(one, 'hub'), 'up');
    assert.equal(state(other, 'hub'), 'up');
    assert.equal(hub.ipsec.counters.noSite, 0);
  });

  it('drops, counts and never answers: no site for the sender, an unknown SPI, IKEv1 (logged once)', async () => {
    const w = new World();
    const s = spec({ name: 'only', remoteAddress: '192.0.2.1' });
    const b = w.gateway('192.0.2.2', [s]);
    // A real IKE_SA_INIT from an address no site names (and there is no %any site).
    const stranger = w.gateway('192.0.2.66', [
      mirror(s, 'x', '192.0.2.2', { startAction: 'initiate', dpdIntervalSec: 0 }),
    ]);
    await w.advance(300, [b, stranger]);
    assert.ok(b.ipsec.counters.noSite >= 1);
    assert.equal(w.sentBy('192.0.2.2'), 0, 'nothing answered');

    const inject = (data: Uint8Array, port = 500): void =>
      w.net.transmit(
        { address: '192.0.2.99', port: 500 },
        { data, endpoint: { address: '192.0.2.2', port } },
      );
    // INFORMATIONAL naming SPIs nobody holds.
    inject(ikeHeader(7, 9, 0x20, 37, 0x08));
    // The same on 4500, after the non-ESP marker.
    inject(Buffer.concat([Buffer.alloc(4), ikeHeader(7, 9, 0x20, 37, 0x08)]), 4500);
    // IKEv1 (major version 1), twice: one log line.
    inject(ikeHeader(1, 0, 0x10, 2, 0));
    inject(ikeHeader(2, 0, 0x10, 2, 0));
    // Too short for a header.
    inject(new Uint8Array(10));
    await settle();
    assert.equal(b.ipsec.counters.unknownSpi, 2);
    assert.equal(b.ipsec.counters.ikev1, 2);
    assert.equal(b.ipsec.counters.malformed, 1);
    assert.equal(b.logs.filter((l) => /IKEv1 is not supported/.test(l)).length, 1);
    assert.equal(w.sentBy('192.0.2.2'), 0, 'nothing answered');
  });

  it('update(): a removed site deletes its SAs (the peer hears it), a disabled one stops answering', async () => {
    const w = new World();
    const aSite = spec({ name: 'to-b', remoteAddress: '192.0.2.2', startAction: 'wait' });
    const bSite = mirror(aSite, 'to-a', '192.0.2.1', { startAction: 'initiate' });
    const a = w.gateway('192.0.2.1', [aSite]);
    const b = w.gateway('192.0.2.2', [bSite]);
    await w.advance(500, [a, b]);
    assert.equal(state(a, 'to-b'), 'up');

    a.ipsec.update([]);
    await w.advance(300, [a, b]);
    assert.deepEqual(a.ipsec.status(), []);
    assert.match(b.logs.join('\n'), /IPsec site to-a: IKE SA down: deleted by peer/);
    assert.notEqual(state(b, 'to-a'), 'up');
    // The peer tries again (start action initiate), and nobody here takes it.
    const noSite = a.ipsec.counters.noSite;
    await w.advance(2_500, [a, b]);
    assert.ok(a.ipsec.counters.noSite > noSite, 'the retry found no site');

    a.ipsec.update([{ ...aSite, enabled: false }]);
    assert.equal(state(a, 'to-b'), 'disabled');
    await w.advance(5_000, [a, b]);
    assert.equal(state(a, 'to-b'), 'disabled');
    assert.notEqual(state(b, 'to-a'), 'up');

    // Enabled again: the peer's next retry (bounded backoff) brings it up.
    a.ipsec.update([aSite]);
    await w.advance(20_000, [a, b], 250);
    assert.equal(state(a, 'to-b'), 'up', a.logs.join('\n'));
    assert.equal(state(b, 'to-a'), 'up');
  });

  it('update(): a changed site restarts with the new configuration', async () => {
    const w = new World();
    const aSite = spec({ name: 'to-b', remoteAddress: '192.0.2.2', startAction: 'initiate' });
    const b = w.gateway('192.0.2.2', [
      mirror(aSite, 'to-a', '192.0.2.1', {
        startAction: 'wait',
        espProposals: ['aes128gcm16', 'aes256gcm16'],
      }),
    ]);
    const a = w.gateway('192.0.2.1', [aSite]);
    await w.advance(500, [a, b]);
    assert.equal(a.ipsec.status()[0]!.children[0]!.proposal.startsWith('aes256gcm16'), true);
    const firstSpi = a.ipsec.status()[0]!.ike!.spiI;
    a.ipsec.update([{ ...aSite, espProposals: ['aes128gcm16'] }]);
    await w.advance(1_000, [a, b]);
    const st = a.ipsec.status()[0]!;
    assert.equal(st.state, 'up', a.logs.join('\n'));
    assert.notEqual(st.ike!.spiI, firstSpi, 'a new IKE SA');
    assert.equal(st.children.length, 1);
    assert.match(st.children[0]!.proposal, /^aes128gcm16/);
    assert.equal(b.ipsec.status()[0]!.children.length, 1, 'the old CHILD SA was deleted on the peer');
  });

  it('start action on-traffic: the first packet routed to the site initiates', async () => {
    const w = new World();
    const aSite = spec({ name: 'to-b', remoteAddress: '192.0.2.2', startAction: 'on-traffic' });
    const a = w.gateway('192.0.2.1', [aSite]);
    const b = w.gateway('192.0.2.2', [mirror(aSite, 'to-a', '192.0.2.1', { startAction: 'wait' })]);
    await w.advance(1_000, [a, b]);
    assert.equal(state(a, 'to-b'), 'down');
    assert.equal(w.sentBy('192.0.2.1'), 0);
    a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, 1, new Uint8Array(32)));
    await w.advance(500, [a, b]);
    assert.equal(state(a, 'to-b'), 'up', a.logs.join('\n'));
    assert.equal(a.ipsec.site('to-b')?.counters.noSa, 1);
    a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, 2, new Uint8Array(32)));
    await settle();
    assert.equal(readEcho(b.tun.written[0]!)?.seq, 2);
  });

  it('rekeys, once, a CHILD SA whose outbound sequence numbers near their end (RFC 4303 §3.3.3)', async () => {
    const w = new World();
    const aSite = spec({ name: 'to-b', remoteAddress: '192.0.2.2', startAction: 'initiate' });
    const b = w.gateway('192.0.2.2', [mirror(aSite, 'to-a', '192.0.2.1', { startAction: 'wait' })]);
    const a = w.gateway('192.0.2.1', [aSite]);
    await w.advance(500, [a, b]);
    assert.equal(state(a, 'to-b'), 'up', a.logs.join('\n'));
    const before = a.ipsec.status()[0]!.children;
    assert.equal(before.length, 1);
    const old = before[0]!;
    /**
     * CREATE_CHILD_SA requests (exchange 36, response flag clear) `address` sent, on 500 or after the marker on
     * 4500, by message ID (a retransmission is the same request).
     */
    const createChildRequests = (address: string): number => {
      const requests = w.sent.filter(({ from, d }) => {
        if (from.address !== address) return false;
        const off = d.endpoint.port === 4500 ? 4 : 0;
        if (off === 4 && (d.data.length < 4 || d.data[0]! + d.data[1]! + d.data[2]! + d.data[3]! !== 0))
          return false;
        return d.data.length >= off + 28 && d.data[off + 18] === 36 && (d.data[off + 19]! & 0x20) === 0;
      });
      const off = (d: Datagram): number => (d.endpoint.port === 4500 ? 4 : 0);
      return new Set(requests.map(({ d }) => Buffer.from(d.data).readUInt32BE(off(d) + 20))).size;
    };

    // Far from the end: ticking asks for nothing.
    await w.advance(1_000, [a, b]);
    assert.equal(createChildRequests('192.0.2.1'), 0);
    assert.equal(a.ipsec.site('to-b')!.rekeyDue().length, 0);

    // Just inside the margin (2^24 before 2^32−1): the next tick rekeys.
    const next = 0xffff_ffff - (1 << 24) + 1;
    a.ipsec.site('to-b')!.skipSequenceForTest(next);
    assert.equal(a.ipsec.site('to-b')!.rekeyDue()[0]?.outboundSpi, parseInt(old.outboundSpi, 16));
    // The old SA still sends meanwhile, with its high sequence numbers.
    a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, 1, new Uint8Array(32)));
    await settle();
    assert.equal(readEcho(b.tun.written.at(-1)!)?.seq, 1);
    // The peer's answers are lost for 1.5 s, so the old SA stays due over ~15 ticks while the request is out;
    // the retransmission (after ~3.7 s) completes the rekey.
    const holdUntil = w.now + 1_500;
    const record = w.net.filter;
    w.net.filter = (from, d) => record(from, d) && !(from.address === '192.0.2.2' && w.now < holdUntil);
    await w.advance(1_500, [a, b]);
    assert.equal(a.ipsec.status()[0]!.children[0]!.outboundSpi, old.outboundSpi, 'not rekeyed yet');
    await w.advance(5_000, [a, b]);

    const lines = a.logs.filter((l) => /nears its last sequence number/.test(l));
    assert.equal(lines.length, 1, a.logs.join('\n'));
    assert.match(
      lines[0]!,
      new RegExp(`to-b: CHILD SA ${old.inboundSpi}/${old.outboundSpi} .*next ${next + 1}\\), rekeying`),
    );
    assert.equal(createChildRequests('192.0.2.1'), 1, 'one CREATE_CHILD_SA over 65 ticks');
    assert.equal(createChildRequests('192.0.2.2'), 0);

    const after = a.ipsec.status()[0]!.children;
    assert.equal(after.length, 1, 'the old CHILD SA is deleted');
    const fresh = after[0]!;
    assert.notEqual(fresh.outboundSpi, old.outboundSpi);
    assert.notEqual(fresh.inboundSpi, old.inboundSpi);
    assert.ok(fresh.rekeyedAt !== null);
    const peer = b.ipsec.status()[0]!.children;
    assert.equal(peer.length, 1, 'and gone on the peer too');
    assert.equal(peer[0]!.inboundSpi, fresh.outboundSpi);
    assert.equal(a.ipsec.site('to-b')!.rekeyDue().length, 0);

    // The new SA carries traffic both ways, from sequence number 1.
    a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, 2, new Uint8Array(32)));
    await settle();
    assert.equal(readEcho(b.tun.written.at(-1)!)?.seq, 2);
    b.tun.inject(echo('reply', '10.2.0.7', '10.1.0.5', 1, 2, new Uint8Array(32)));
    await settle();
    assert.equal(readEcho(a.tun.written.at(-1)!)?.seq, 2);
    const used = a.ipsec.status()[0]!.children[0]!;
    assert.equal(used.packetsOut, 1);
    assert.equal(used.packetsIn, 1);
    assert.equal(b.ipsec.status()[0]!.children[0]!.packetsIn, 1);
    assert.equal(a.ipsec.site('to-b')!.counters.exhausted, 0);

    // Nothing more is asked once the new SA is in place.
    await w.advance(2_000, [a, b]);
    assert.equal(createChildRequests('192.0.2.1'), 1);
    assert.equal(a.logs.filter((l) => /nears its last sequence number/.test(l)).length, 1);
  });

  it('byte lifetimes: the soft one rekeys the CHILD SA, the hard one deletes it on both sides', async () => {
    const w = new World();
    // Each ping is a 60-byte inner packet: rekey after 5 (300 bytes), delete past 10 (600 bytes).
    const aSite = spec({
      name: 'to-b',
      remoteAddress: '192.0.2.2',
      startAction: 'initiate',
      childRekeyBytes: 300,
      childLifeBytes: 600,
    });
    const b = w.gateway('192.0.2.2', [mirror(aSite, 'to-a', '192.0.2.1', { startAction: 'wait' })]);
    const a = w.gateway('192.0.2.1', [aSite]);
    await w.advance(500, [a, b]);
    assert.equal(state(a, 'to-b'), 'up', a.logs.join('\n'));
    const old = a.ipsec.status()[0]!.children[0]!;
    const ping = async (seq: number): Promise<void> => {
      a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, seq, new Uint8Array(32)));
      await settle();
    };
    for (let seq = 1; seq <= 4; seq++) await ping(seq);
    await w.advance(300, [a, b]);
    assert.equal(a.ipsec.status()[0]!.children[0]!.outboundSpi, old.outboundSpi, 'under the soft limit');
    await ping(5);
    await w.advance(1_000, [a, b]);
    assert.equal(
      a.logs.filter((l) =>
        /reached its rekey byte count \((2[7-9]\d|300); 300 configured, less up to 10% jitter\), rekeying/.test(
          l,
        ),
      ).length,
      1,
      a.logs.join('\n'),
    );
    const fresh = a.ipsec.status()[0]!.children;
    assert.equal(fresh.length, 1);
    assert.notEqual(fresh[0]!.outboundSpi, old.outboundSpi);
    assert.ok(fresh[0]!.rekeyedAt !== null);

    // The new SA starts counting from zero.
    assert.equal(a.ipsec.site('to-b')!.rekeyDue().length, 0);
  });

  it('a hard byte lifetime alone: past it nothing more is sealed, and the CHILD SA is deleted on both sides', async () => {
    const w = new World();
    const aSite = spec({
      name: 'to-b',
      remoteAddress: '192.0.2.2',
      startAction: 'initiate',
      childLifeBytes: 300,
    });
    const b = w.gateway('192.0.2.2', [
      mirror(aSite, 'to-a', '192.0.2.1', { startAction: 'wait', childLifeBytes: 0 }),
    ]);
    const a = w.gateway('192.0.2.1', [aSite]);
    await w.advance(500, [a, b]);
    assert.equal(state(a, 'to-b'), 'up', a.logs.join('\n'));
    const site = a.ipsec.site('to-b')!;
    // Five 60-byte packets fill the 300 bytes exactly; the sixth would pass them and is a counted drop.
    for (let seq = 1; seq <= 6; seq++)
      a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, seq, new Uint8Array(32)));
    await settle();
    assert.equal(b.tun.written.length, 5);
    assert.equal(site.counters.expired, 1);
    assert.equal(site.expiredDue().length, 1);
    assert.equal(site.rekeyDue().length, 0, 'no soft limit set');
    await w.advance(1_000, [a, b]);
    assert.equal(
      a.logs.filter((l) => /[0-9a-f]{8} byte lifetime reached \(0 bytes in, 300 out; limit 300\)/.test(l))
        .length,
      1,
      a.logs.join('\n'),
    );
    assert.equal(a.ipsec.status()[0]!.children.length, 0);
    assert.equal(b.ipsec.status()[0]!.children.length, 0, 'the peer deleted it on our DELETE');
    assert.equal(site.expiredDue().length, 0);
  });

  it('a wrong PSK: the site says so, with its name, and keeps it as its last error', async () => {
    const w = new World();
    const aSite = spec({ name: 'to-b', remoteAddress: '192.0.2.2', startAction: 'initiate' });
    const b = w.gateway('192.0.2.2', [
      mirror(aSite, 'to-a', '192.0.2.1', { startAction: 'wait', psk: 'another-psk-0123456789-xyz' }),
    ]);
    const a = w.gateway('192.0.2.1', [aSite]);
    await w.advance(500, [a, b]);
    assert.ok(
      b.logs.some((l) => /^IPsec site to-a: authentication-failed: /.test(l)),
      b.logs.join('\n'),
    );
    assert.match(b.ipsec.status()[0]!.lastError?.message ?? '', /pre-shared key/);
    assert.ok(
      a.logs.some((l) => /^IPsec site to-b: authentication-failed: /.test(l)),
      a.logs.join('\n'),
    );
  });

  it('close() deletes every IKE SA politely', async () => {
    const w = new World();
    const aSite = spec({ name: 'to-b', remoteAddress: '192.0.2.2', startAction: 'initiate' });
    const b = w.gateway('192.0.2.2', [mirror(aSite, 'to-a', '192.0.2.1', { startAction: 'wait' })]);
    const a = w.gateway('192.0.2.1', [aSite]);
    await w.advance(500, [a, b]);
    assert.equal(state(b, 'to-a'), 'up');
    await a.ipsec.close(500);
    await settle();
    assert.match(b.logs.join('\n'), /IKE SA down: deleted by peer/);
    assert.equal(b.ipsec.status()[0]!.children.length, 0);
  });
});
