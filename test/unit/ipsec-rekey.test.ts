/**
 * Two IKEv2 cores in one process through CREATE_CHILD_SA (RFC 7296 §1.3): CHILD SA rekeys with and without
 * PFS from either side, IKE SA rekeys from either side, simultaneous rekeys of both kinds (§2.8.1, §2.8.2)
 * that must end with exactly one surviving SA on both sides, a rekey crossing a delete, TEMPORARY_FAILURE and
 * its retry (§2.25), lost and duplicated messages, lifetimes on the simulated clock, an additional CHILD SA.
 * After each rekey the ESP keys of the surviving SA carry a packet each way (src/ipsec/esp.ts).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import type { ChildSaSpec } from '../../src/ipsec/child-sa.js';
import { EXCHANGE } from '../../src/ipsec/constants.js';
import { EspInboundSa, EspOutboundSa } from '../../src/ipsec/esp.js';
import { echo } from '../../src/net/icmp.js';
import { Pair, ts } from './ipsec-pair.js';

/** One ping A→B and one B→A over the CHILD SA pair: each side's outbound opens on the other's inbound. */
function espWorks(a: ChildSaSpec, b: ChildSaSpec): void {
  const ab = echo(
    'request',
    a.localSelectors[0]!.startAddress,
    b.localSelectors[0]!.startAddress,
    7,
    1,
    new Uint8Array(32).fill(0x61),
  );
  const ba = echo(
    'reply',
    b.localSelectors[0]!.startAddress,
    a.localSelectors[0]!.startAddress,
    7,
    1,
    new Uint8Array(32).fill(0x62),
  );
  for (const [from, to, packet] of [
    [a, b, ab],
    [b, a, ba],
  ] as const) {
    const tx = new EspOutboundSa(from);
    const rx = new EspInboundSa(to);
    const buf = new Uint8Array(tx.sealedLength(packet.length));
    const n = tx.seal(packet, 4, buf);
    const out = new Uint8Array(n);
    assert.equal(rx.open(buf.subarray(0, n), out), 'ok');
    assert.deepEqual(out.subarray(0, rx.opened.length), packet);
    tx.dispose();
    rx.dispose();
  }
}

/** Both sides have exactly one CHILD SA up, the mirror image of each other, and ESP passes both ways. */
function oneChild(p: Pair): { a: ChildSaSpec; b: ChildSaSpec } {
  const la = p.liveChildren('a');
  const lb = p.liveChildren('b');
  assert.equal(
    la.length,
    1,
    `A has ${la.length} CHILD SAs up; failed: ${JSON.stringify(p.of('a', 'failed'))}`,
  );
  assert.equal(
    lb.length,
    1,
    `B has ${lb.length} CHILD SAs up; failed: ${JSON.stringify(p.of('b', 'failed'))}`,
  );
  const [a, b] = [la[0]!, lb[0]!];
  assert.equal(a.inboundSpi, b.outboundSpi);
  assert.equal(a.outboundSpi, b.inboundSpi);
  assert.deepEqual(a.inbound, b.outbound);
  assert.deepEqual(a.outbound, b.inbound);
  espWorks(a, b);
  return { a, b };
}

/** Both sides have exactly one IKE SA up, the same one, and the cores hold only it (plus nothing half-dead). */
function oneIke(p: Pair): string {
  const a = p.liveIke('a');
  const b = p.liveIke('b');
  assert.equal(a.length, 1, `A: ${a.join(' ')}`);
  assert.deepEqual(a, b);
  for (const core of [p.a, p.b]) {
    const up = core.list().filter((sa) => sa.state === 'established' && sa.announced);
    assert.equal(up.length, 1);
    assert.equal(`${up[0]!.spiI.toString('hex')}/${up[0]!.spiR.toString('hex')}`, a[0]);
  }
  return a[0]!;
}

function noFailures(p: Pair): void {
  assert.deepEqual(p.of('a', 'failed'), []);
  assert.deepEqual(p.of('b', 'failed'), []);
}

function establish(p: Pair): { a: ChildSaSpec; b: ChildSaSpec } {
  p.initiate();
  p.run();
  return oneChild(p);
}

const QUIET = { dpdIntervalMs: 0, ikeRekeyMs: 0, childRekeyMs: 0 };

describe('IKEv2 CREATE_CHILD_SA: CHILD SA rekey', () => {
  const cases: [string, string, 'a' | 'b'][] = [
    ['no PFS, A (the IKE initiator) rekeys', 'aes256gcm16', 'a'],
    ['no PFS, B (the IKE responder) rekeys', 'aes256gcm16', 'b'],
    ['PFS x25519, A rekeys', 'aes256gcm16-x25519', 'a'],
    ['PFS modp2048 with CBC/HMAC, B rekeys', 'aes128-sha256-modp2048', 'b'],
  ];
  for (const [name, esp, side] of cases) {
    it(`${name}: new SPIs and keys, rekeyOf, the old SA down as 'rekeyed' on both sides`, () => {
      const p = Pair.create({ ...QUIET, espProposals: [esp] }, { ...QUIET, espProposals: [esp] });
      const first = establish(p);
      const mine = side === 'a' ? first.a : first.b;
      p.take(side, p.core(side).rekeyChild(mine.outboundSpi, p.now));
      p.run();
      noFailures(p);
      const now = oneChild(p);
      assert.notEqual(now.a.inboundSpi, first.a.inboundSpi);
      assert.notEqual(now.a.outboundSpi, first.a.outboundSpi);
      assert.notDeepEqual(now.a.inbound, first.a.inbound);
      for (const s of ['a', 'b'] as const) {
        const old = first[s];
        const ups = p.of(s, 'child-sa-up');
        assert.equal(ups.length, 2);
        assert.deepEqual(ups[1]!.rekeyOf, { inboundSpi: old.inboundSpi, outboundSpi: old.outboundSpi });
        const downs = p.of(s, 'child-sa-down');
        assert.deepEqual(
          downs.map((d) => [d.inboundSpi, d.reason]),
          [[old.inboundSpi, 'rekeyed']],
        );
        assert.equal(p.of(s, 'ike-sa-down').length, 0);
      }
      assert.deepEqual(now.a.localSelectors, first.a.localSelectors);
      // The IKE SA goes on: a liveness check is answered.
      p.take('a', p.a.dpd(p.now));
      p.run();
      assert.equal(p.a.stats.processed, p.a.stats.received);
      assert.equal(p.b.stats.processed, p.b.stats.received);
    });
  }

  it('PFS on one side only: the rekey is refused with NO_PROPOSAL_CHOSEN and the old SA stays', () => {
    const p = Pair.create({ ...QUIET, espProposals: ['aes256gcm16-x25519'] }, { ...QUIET });
    const first = establish(p);
    p.take('a', p.a.rekeyChild(first.a.outboundSpi, p.now));
    p.run();
    assert.deepEqual(
      p.of('b', 'failed').map((f) => f.failure),
      ['child-no-proposal-chosen'],
    );
    assert.match(p.of('b', 'failed')[0]!.message, /x25519/);
    assert.deepEqual(
      p.of('a', 'failed').map((f) => f.failure),
      ['child-no-proposal-chosen'],
    );
    assert.deepEqual(oneChild(p).a, first.a);
  });

  it('PFS with another group first: INVALID_KE_PAYLOAD, and the rekey is repeated with the group asked for', () => {
    const p = Pair.create(
      { ...QUIET, espProposals: ['aes256gcm16-ecp256', 'aes256gcm16-x25519'] },
      { ...QUIET, espProposals: ['aes256gcm16-x25519'] },
    );
    const first = establish(p);
    p.take('a', p.a.rekeyChild(first.a.outboundSpi, p.now));
    p.run();
    noFailures(p);
    const now = oneChild(p);
    assert.notEqual(now.a.inboundSpi, first.a.inboundSpi);
  });

  it('rekeyChild with an SPI no CHILD SA has does nothing', () => {
    const p = Pair.create(QUIET, QUIET);
    establish(p);
    assert.deepEqual(p.a.rekeyChild(0x12345678, p.now), []);
  });

  it('lost request, lost response, duplicated messages: retransmission completes exactly one rekey', () => {
    const p = Pair.create(QUIET, QUIET);
    const first = establish(p);
    let creates = 0;
    p.filter = (d) => {
      const x = Pair.exchangeOf(d);
      if (x?.exchange === EXCHANGE.CREATE_CHILD_SA) {
        creates++;
        // The first request is lost, the first response is lost, then everything arrives twice.
        if (creates <= 2) return 'lose';
        return 'duplicate';
      }
      if (x?.exchange === EXCHANGE.INFORMATIONAL) return 'duplicate';
      return 'deliver';
    };
    p.take('a', p.a.rekeyChild(first.a.outboundSpi, p.now));
    p.run();
    p.advance(60_000);
    noFailures(p);
    const now = oneChild(p);
    assert.notEqual(now.a.inboundSpi, first.a.inboundSpi);
    assert.equal(p.of('a', 'child-sa-up').length, 2);
    assert.equal(p.of('b', 'child-sa-up').length, 2);
    assert.ok(p.b.stats.drops['unexpected-response'] + p.a.stats.drops['unexpected-response'] > 0);
  });
});

describe('IKEv2 CREATE_CHILD_SA: IKE SA rekey', () => {
  for (const side of ['a', 'b'] as const) {
    it(`${side.toUpperCase()} rekeys the IKE SA: new SPIs, rekeyOf, the old one down as 'rekeyed', CHILD SAs untouched`, () => {
      const p = Pair.create(QUIET, QUIET);
      const first = establish(p);
      const old = oneIke(p);
      p.take(side, p.core(side).rekeyIke(p.now));
      p.run();
      noFailures(p);
      const fresh = oneIke(p);
      assert.notEqual(fresh, old);
      const [spiI, spiR] = old.split('/');
      for (const s of ['a', 'b'] as const) {
        const ups = p.of(s, 'ike-sa-up');
        assert.equal(ups.length, 2);
        assert.deepEqual(ups[1]!.rekeyOf, { spiI, spiR });
        assert.deepEqual(
          p.of(s, 'ike-sa-down').map((d) => [`${d.spiI}/${d.spiR}`, d.reason]),
          [[old, 'rekeyed']],
        );
        assert.equal(p.of(s, 'child-sa-up').length, 1, 'CHILD SAs are not reported again');
        assert.equal(p.of(s, 'child-sa-down').length, 0);
        assert.equal(p.core(s).list().length, 1);
      }
      // The rekeying side is the initiator of the new IKE SA (§2.18).
      const saA = p.a.list()[0]!;
      assert.equal(saA.role, side === 'a' ? 'initiator' : 'responder');
      assert.deepEqual(oneChild(p).a, first.a);
      // The new IKE SA carries the next exchanges: a CHILD rekey (keys from the new SK_d) and DPD.
      p.take('b', p.b.rekeyChild(first.b.outboundSpi, p.now));
      p.run();
      noFailures(p);
      assert.notEqual(oneChild(p).a.inboundSpi, first.a.inboundSpi);
      p.take('a', p.a.dpd(p.now));
      p.take('b', p.b.dpd(p.now));
      p.run();
      assert.equal(p.a.stats.processed, p.a.stats.received);
      assert.equal(p.b.stats.processed, p.b.stats.received);
      // And a second IKE rekey from the other side.
      p.take(side === 'a' ? 'b' : 'a', p.core(side === 'a' ? 'b' : 'a').rekeyIke(p.now));
      p.run();
      noFailures(p);
      assert.notEqual(oneIke(p), fresh);
      oneChild(p);
    });
  }

  it('lost and duplicated messages during an IKE rekey', () => {
    const p = Pair.create(QUIET, QUIET);
    establish(p);
    let n = 0;
    p.filter = (d) => {
      const x = Pair.exchangeOf(d);
      if (x?.exchange === EXCHANGE.CREATE_CHILD_SA || x?.exchange === EXCHANGE.INFORMATIONAL) {
        n++;
        return n % 3 === 1 ? 'lose' : n % 3 === 2 ? 'duplicate' : 'deliver';
      }
      return 'deliver';
    };
    const old = oneIke(p);
    p.take('a', p.a.rekeyIke(p.now));
    p.run();
    p.advance(120_000);
    noFailures(p);
    assert.notEqual(oneIke(p), old);
    oneChild(p);
    assert.equal(p.a.list().length, 1);
    assert.equal(p.b.list().length, 1);
  });
});

describe('IKEv2 CREATE_CHILD_SA: collisions (§2.8.1, §2.8.2, §2.25)', () => {
  const seeds: [string, string][] = Array.from({ length: 10 }, (_, i) => [`s${i + 1}-a`, `s${i + 1}-b`]);

  it('simultaneous CHILD rekeys: exactly one new SA survives on both sides, whichever nonce is lowest', () => {
    const winners = new Set<string>();
    for (const [sa, sb] of seeds) {
      for (const esp of ['aes256gcm16', 'aes256gcm16-x25519']) {
        const p = Pair.create({ ...QUIET, espProposals: [esp] }, { ...QUIET, espProposals: [esp] }, [sa, sb]);
        const first = establish(p);
        p.take('a', p.a.rekeyChild(first.a.outboundSpi, p.now));
        p.take('b', p.b.rekeyChild(first.b.outboundSpi, p.now));
        p.run();
        noFailures(p);
        const now = oneChild(p);
        assert.notEqual(now.a.inboundSpi, first.a.inboundSpi);
        // Each side saw two new SAs (its own and the peer's); one of them was deleted again.
        assert.equal(p.of('a', 'child-sa-up').length, 3);
        assert.equal(p.of('b', 'child-sa-up').length, 3);
        for (const s of ['a', 'b'] as const)
          assert.ok(p.of(s, 'child-sa-down').every((d) => d.reason === 'rekeyed'));
        // Who won: the survivor is the one whose exchange B initiated, or A's.
        const survivorUp = p.of('a', 'child-sa-up').find((u) => u.spec.inboundSpi === now.a.inboundSpi)!;
        winners.add(p.log.a.indexOf(survivorUp) < p.log.a.indexOf(p.of('a', 'child-sa-up')[2]!) ? 'b' : 'a');
      }
    }
    assert.equal(winners.size, 2, 'both outcomes of the nonce comparison were exercised');
  });

  it('crossed CHILD rekeys where one answer arrives before the other request: TEMPORARY_FAILURE settles it', () => {
    const p = Pair.create(QUIET, QUIET);
    const first = establish(p);
    p.take('a', p.a.rekeyChild(first.a.outboundSpi, p.now));
    p.take('b', p.b.rekeyChild(first.b.outboundSpi, p.now));
    // Wire: [A's request, B's request]. B answers A's request first; A gets that answer before B's request.
    p.deliver(0);
    const answer = p.wire.findIndex((d) => d.from === 'b' && Pair.exchangeOf(d)?.response === true);
    p.deliver(answer);
    p.run();
    p.advance(10_000);
    noFailures(p);
    oneChild(p);
  });

  it('simultaneous IKE rekeys: exactly one new IKE SA survives on both sides with the CHILD SA', () => {
    const winners = new Set<string>();
    for (const [sa, sb] of seeds) {
      const p = Pair.create(QUIET, QUIET, [sa, sb]);
      const first = establish(p);
      const old = oneIke(p);
      p.take('a', p.a.rekeyIke(p.now));
      p.take('b', p.b.rekeyIke(p.now));
      p.run();
      noFailures(p);
      const fresh = oneIke(p);
      assert.notEqual(fresh, old);
      for (const s of ['a', 'b'] as const) {
        assert.equal(p.core(s).list().length, 1, `${s} holds only the survivor`);
        assert.equal(p.of(s, 'child-sa-down').length, 0);
        assert.deepEqual(
          p.of(s, 'ike-sa-down').map((d) => d.reason),
          ['rekeyed'],
        );
      }
      assert.deepEqual(oneChild(p).a, first.a);
      winners.add(p.a.list()[0]!.role);
      // The survivor works: a CHILD rekey over it.
      p.take('a', p.a.rekeyChild(first.a.outboundSpi, p.now));
      p.run();
      noFailures(p);
      assert.notEqual(oneChild(p).a.inboundSpi, first.a.inboundSpi);
    }
    assert.equal(winners.size, 2, 'both outcomes of the nonce comparison were exercised');
  });

  it('an IKE rekey crossing a CHILD rekey: both refused with TEMPORARY_FAILURE, both retried and done', () => {
    const p = Pair.create(QUIET, QUIET);
    const first = establish(p);
    const old = oneIke(p);
    p.take('a', p.a.rekeyIke(p.now));
    p.take('b', p.b.rekeyChild(first.b.outboundSpi, p.now));
    p.run();
    // Both got TEMPORARY_FAILURE; nothing changed yet.
    assert.equal(oneIke(p), old);
    assert.deepEqual(oneChild(p).a, first.a);
    p.advance(30_000);
    noFailures(p);
    assert.notEqual(oneIke(p), old);
    assert.notEqual(oneChild(p).a.inboundSpi, first.a.inboundSpi);
  });

  it('a CHILD rekey crossing a delete of that CHILD SA: the SA is gone on both sides, the IKE SA stays', () => {
    const p = Pair.create(QUIET, QUIET);
    const first = establish(p);
    p.take('a', p.a.rekeyChild(first.a.outboundSpi, p.now));
    p.take('b', p.b.deleteChildren(p.now));
    p.run();
    p.advance(30_000);
    noFailures(p);
    assert.deepEqual(p.liveChildren('a'), []);
    assert.deepEqual(p.liveChildren('b'), []);
    oneIke(p);
    assert.equal(p.a.stats.processed, p.a.stats.received);
    assert.equal(p.b.stats.processed, p.b.stats.received);
  });

  it('an IKE rekey crossing an IKE delete: the IKE SA ends on both sides', () => {
    const p = Pair.create(QUIET, QUIET);
    establish(p);
    p.take('a', p.a.rekeyIke(p.now));
    p.take('b', p.b.deleteAll(p.now));
    p.run();
    p.advance(120_000);
    assert.deepEqual(p.liveIke('a'), []);
    assert.deepEqual(p.liveIke('b'), []);
    assert.deepEqual(p.liveChildren('a'), []);
    assert.deepEqual(p.liveChildren('b'), []);
  });
});

describe('IKEv2 lifetimes on a simulated clock', () => {
  it('CHILD and IKE SAs are rekeyed by whichever side reaches its jittered lifetime first, for hours', () => {
    const cfg = { childRekeyMs: 10 * 60_000, ikeRekeyMs: 45 * 60_000 };
    const p = Pair.create(cfg, cfg);
    establish(p);
    p.advance(4 * 3600_000);
    noFailures(p);
    oneIke(p);
    oneChild(p);
    const childRekeys = p.of('a', 'child-sa-up').filter((u) => u.rekeyOf).length;
    const ikeRekeys = p.of('a', 'ike-sa-up').filter((u) => u.rekeyOf).length;
    // 4 h / (9..10 min) CHILD lifetimes; 4 h / (40.5..45 min) IKE lifetimes.
    assert.ok(childRekeys >= 24 && childRekeys <= 27, `${childRekeys} CHILD rekeys`);
    assert.ok(ikeRekeys >= 5 && ikeRekeys <= 6, `${ikeRekeys} IKE rekeys`);
    for (const side of ['a', 'b'] as const)
      assert.equal(p.of(side, 'child-sa-down').filter((d) => d.reason === 'rekeyed').length, childRekeys);
    // Both sides started some (jitter decides who is first each time).
    const requests = (side: 'a' | 'b') =>
      p.of(side, 'send').filter((x) => {
        const e = Pair.exchangeOf({ from: side, data: x.data, localPort: x.localPort, remotePort: 0 });
        return e?.exchange === EXCHANGE.CREATE_CHILD_SA && !e.response;
      }).length;
    assert.ok(requests('a') > 0 && requests('b') > 0, `${requests('a')} / ${requests('b')}`);
    assert.equal(p.a.list().length, 1);
    assert.equal(p.b.list().length, 1);
  });

  it('the defaults are 4 h and 1 h; 0 never rekeys', () => {
    const p = Pair.create({}, {});
    establish(p);
    p.advance(3600_000 - 6 * 60_000 - 1);
    assert.equal(p.of('a', 'child-sa-up').length, 1, 'not before 54 min');
    p.advance(6 * 60_000 + 1);
    assert.equal(p.of('a', 'child-sa-up').length, 2, 'by 60 min');
    assert.equal(p.of('a', 'ike-sa-up').length, 1);
    p.advance(3 * 3600_000);
    assert.ok(p.of('a', 'ike-sa-up').length >= 2, 'by 4 h');
    const never = Pair.create(QUIET, QUIET);
    establish(never);
    never.advance(24 * 3600_000);
    assert.equal(never.of('a', 'child-sa-up').length, 1);
    assert.equal(never.of('a', 'ike-sa-up').length, 1);
  });

  it('a negative lifetime is refused naming the field', async () => {
    const { IkeCore } = await import('../../src/ipsec/core.js');
    const { siteA } = await import('./ipsec-pair.js');
    const r = IkeCore.create(siteA({ childRekeyMs: -1 }));
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.error.field, 'childRekeyMs');
  });
});

describe('IKEv2 CREATE_CHILD_SA: additional CHILD SAs', () => {
  it('the peer asks for another CHILD SA: answered with narrowed selectors, both SAs up', () => {
    const p = Pair.create(QUIET, {
      ...QUIET,
      localSelectors: [ts('10.2.0.0/16')],
      remoteSelectors: [ts('10.1.0.0/24')],
    });
    // B only allows 10.1.0.0/24 from A: the first CHILD SA is narrowed already.
    const first = establish(p);
    assert.deepEqual(first.b.remoteSelectors, [ts('10.1.0.0/24')]);
    p.take('a', p.a.createChild(p.now, [ts('10.1.0.0/25')], [ts('10.2.5.0/24')]));
    p.run();
    noFailures(p);
    const la = p.liveChildren('a');
    const lb = p.liveChildren('b');
    assert.equal(la.length, 2);
    assert.equal(lb.length, 2);
    const extra = { a: la[1]!, b: lb[1]! };
    assert.deepEqual(extra.a.localSelectors, [ts('10.1.0.0/25')]);
    assert.deepEqual(extra.b.localSelectors, [ts('10.2.5.0/24')]);
    assert.equal(extra.a.inboundSpi, extra.b.outboundSpi);
    assert.deepEqual(extra.a.inbound, extra.b.outbound);
    espWorks(extra.a, extra.b);
    assert.equal(p.of('a', 'child-sa-up')[1]!.rekeyOf, undefined);
  });

  it('selectors outside the policy are refused with TS_UNACCEPTABLE', () => {
    const p = Pair.create(QUIET, QUIET);
    establish(p);
    p.take('a', p.a.createChild(p.now, [ts('10.9.0.0/16')], [ts('10.2.0.0/16')]));
    p.run();
    assert.deepEqual(
      p.of('b', 'failed').map((f) => f.failure),
      ['ts-unacceptable'],
    );
    assert.deepEqual(
      p.of('a', 'failed').map((f) => f.failure),
      ['ts-unacceptable'],
    );
    assert.equal(p.liveChildren('a').length, 1);
  });
});

describe('IKEv2: one CHILD SA per subnet pair (initiator option childPerSubnetPair)', () => {
  const A = {
    ...QUIET,
    localSelectors: [ts('10.1.0.0/24'), ts('10.1.1.0/24'), ts('fd01::/64')],
    remoteSelectors: [ts('10.2.0.0/24'), ts('10.2.1.0/24'), ts('fd02::/64')],
  };
  const B = {
    ...QUIET,
    localSelectors: [ts('10.2.0.0/16'), ts('fd02::/48')],
    remoteSelectors: [ts('10.1.0.0/16'), ts('fd01::/48')],
  };

  it('pairs of one family: the first in IKE_AUTH, the other four by CREATE_CHILD_SA, each its own SA', () => {
    const p = Pair.create({ ...A, childPerSubnetPair: true }, B);
    p.initiate();
    p.run();
    noFailures(p);
    const pairs = (side: 'a' | 'b') =>
      p
        .liveChildren(side)
        .map(
          (c) =>
            `${c.localSelectors.map((s) => s.startAddress).join()}>${c.remoteSelectors.map((s) => s.startAddress).join()}`,
        );
    assert.deepEqual(pairs('a'), [
      '10.1.0.0>10.2.0.0',
      '10.1.0.0>10.2.1.0',
      '10.1.1.0>10.2.0.0',
      '10.1.1.0>10.2.1.0',
      'fd01::>fd02::',
    ]);
    assert.deepEqual(
      pairs('b'),
      pairs('a').map((x) => x.split('>').reverse().join('>')),
    );
    const creates = p.of('a', 'send').filter((x) => {
      const e = Pair.exchangeOf({ from: 'a', data: x.data, localPort: x.localPort, remotePort: 0 });
      return e?.exchange === EXCHANGE.CREATE_CHILD_SA && !e.response;
    });
    assert.equal(creates.length, 4);
    const la = p.liveChildren('a');
    const lb = p.liveChildren('b');
    // ESP both ways on each IPv4 pair (espWorks sends IPv4 echoes).
    for (const [i, a] of la.entries()) if (a.localSelectors[0]!.family === 4) espWorks(a, lb[i]!);
    assert.equal(new Set(la.map((c) => c.inboundSpi)).size, 5);
  });

  it('each pair is rekeyed on its own: one rekey replaces one SA, the other four stay', () => {
    const p = Pair.create({ ...A, childPerSubnetPair: true }, B);
    p.initiate();
    p.run();
    const before = p.liveChildren('a');
    p.take('a', p.a.rekeyChild(before[2]!.outboundSpi, p.now));
    p.run();
    noFailures(p);
    const after = p.liveChildren('a');
    assert.equal(after.length, 5);
    assert.deepEqual(
      after.filter((c) => before.some((b) => b.inboundSpi === c.inboundSpi)).map((c) => c.inboundSpi),
      before.filter((_, i) => i !== 2).map((c) => c.inboundSpi),
    );
    const fresh = after.find((c) => !before.some((b) => b.inboundSpi === c.inboundSpi))!;
    assert.deepEqual(fresh.localSelectors, before[2]!.localSelectors);
    assert.deepEqual(fresh.remoteSelectors, before[2]!.remoteSelectors);
  });

  it('without the option: one CHILD SA for all selectors, no CREATE_CHILD_SA', () => {
    const p = Pair.create(A, B);
    p.initiate();
    p.run();
    noFailures(p);
    assert.equal(p.liveChildren('a').length, 1);
    assert.equal(p.liveChildren('a')[0]!.localSelectors.length, 3);
  });

  it('no local and remote subnet of one family: refused naming childPerSubnetPair', async () => {
    const { IkeCore } = await import('../../src/ipsec/core.js');
    const r = IkeCore.create({
      ...A,
      localId: { type: 'fqdn', value: 'a.example' },
      remoteId: null,
      psk: 'correct horse battery staple 42',
      ikeProposals: ['aes256gcm16-prfsha256-x25519'],
      espProposals: ['aes256gcm16'],
      mode: 'tunnel',
      localSelectors: [ts('10.1.0.0/24')],
      remoteSelectors: [ts('fd02::/64')],
      childPerSubnetPair: true,
    });
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.error.field, 'childPerSubnetPair');
  });
});

describe('IKEv2: a per-pair CHILD SA that is lost is asked for again, the IKE SA kept', () => {
  const A = {
    ...QUIET,
    localSelectors: [ts('10.1.0.0/24'), ts('10.1.1.0/24')],
    remoteSelectors: [ts('10.2.0.0/24'), ts('10.2.1.0/24')],
    childPerSubnetPair: true,
  };
  const B = { ...QUIET, localSelectors: [ts('10.2.0.0/16')], remoteSelectors: [ts('10.1.0.0/16')] };
  const pairOf = (c: ChildSaSpec) =>
    `${c.localSelectors[0]!.startAddress}>${c.remoteSelectors[0]!.startAddress}`;
  /** The CREATE_CHILD_SA requests A sent (not rekeys: no REKEY_SA here), with the time each left. */
  function watchCreates(p: Pair): number[] {
    const times: number[] = [];
    const filter = p.filter;
    p.filter = (d, i) => {
      const e = Pair.exchangeOf(d);
      if (d.from === 'a' && e?.exchange === EXCHANGE.CREATE_CHILD_SA && !e.response) times.push(p.now);
      return filter(d, i);
    };
    return times;
  }

  it('deleted by the peer: asked for again after 1 s with CREATE_CHILD_SA, no new IKE_SA_INIT', () => {
    const p = Pair.create(A, B);
    p.initiate();
    p.run();
    noFailures(p);
    const before = p.liveChildren('a');
    assert.equal(before.length, 4);
    const ike = p.liveIke('a');
    const lost = p.liveChildren('b')[2]!;
    const creates = watchCreates(p);
    const t0 = p.now;
    p.take('b', p.b.deleteChild(lost.inboundSpi, p.now));
    p.run();
    assert.equal(p.liveChildren('a').length, 3);
    assert.ok(p.of('a', 'child-sa-down').some((d) => d.reason === 'deleted by peer'));
    p.advance(900);
    assert.equal(creates.length, 0, 'not before the first wait');
    p.advance(200);
    noFailures(p);
    assert.deepEqual(creates, [t0 + 1_000]);
    const after = p.liveChildren('a');
    assert.equal(after.length, 4);
    assert.deepEqual(after.map(pairOf).sort(), before.map(pairOf).sort());
    assert.deepEqual(p.liveIke('a'), ike);
    assert.equal(p.liveChildren('b').length, 4);
    const fresh = after.find((c) => !before.some((b) => b.inboundSpi === c.inboundSpi))!;
    espWorks(
      fresh,
      p.liveChildren('b').find((c) => c.outboundSpi === fresh.inboundSpi)!,
    );
    // Nothing more is asked once every pair has its SA.
    p.advance(120_000);
    assert.equal(creates.length, 1);
  });

  it('past its hard lifetime (no rekey): each pair asked for again on the same IKE SA', () => {
    const p = Pair.create({ ...A, childRekeyMs: 0, childHardLifetimeMs: 100_000 }, B);
    p.initiate();
    p.run();
    const before = p.liveChildren('a');
    assert.equal(before.length, 4);
    const ike = p.liveIke('a');
    p.advance(100_000);
    const downs = p.of('a', 'child-sa-down').filter((d) => d.reason.startsWith('hard lifetime'));
    assert.equal(downs.length, 4);
    assert.equal(p.liveChildren('a').length, 0);
    p.advance(1_100);
    noFailures(p);
    const after = p.liveChildren('a');
    assert.deepEqual(after.map(pairOf).sort(), before.map(pairOf).sort());
    assert.ok(after.every((c) => !before.some((b) => b.inboundSpi === c.inboundSpi)));
    assert.deepEqual(p.liveIke('a'), ike);
    assert.equal(p.liveChildren('b').length, 4);
  });

  it('refused by the peer: asked again with a doubling wait, bounded at 60 s', () => {
    // B accepts only 10.2.0.0/24 behind it: the pairs towards 10.2.1.0/24 are refused (TS_UNACCEPTABLE).
    const p = Pair.create(A, { ...B, localSelectors: [ts('10.2.0.0/24')] });
    p.initiate();
    p.run();
    assert.equal(p.liveChildren('a').length, 2);
    const creates = watchCreates(p);
    const lost = p.liveChildren('b')[0]!;
    const t0 = p.now;
    p.take('b', p.b.deleteChild(lost.inboundSpi, p.now));
    p.run();
    p.advance(300_000);
    assert.equal(p.liveChildren('a').length, 2);
    assert.equal(p.liveIke('a').length, 1);
    // First look: the lost pair and the two refused ones; then only the refused ones, each look twice as late.
    const looks = [...new Set(creates)].map((t) => t - t0);
    assert.deepEqual(looks.slice(0, 7), [1_000, 3_000, 7_000, 15_000, 31_000, 63_000, 123_000]);
    assert.equal(creates.filter((t) => t === t0 + 1_000).length, 3);
    assert.equal(creates.filter((t) => t === t0 + 3_000).length, 2);
    assert.ok(p.of('a', 'failed').every((f) => f.failure === 'ts-unacceptable'));
  });
});
