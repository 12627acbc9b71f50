/**
 * Hard lifetimes (RFC 7296 §2.8, strongSwan's rekey_time / life_time split) on a simulated clock: an SA whose
 * rekey never completes is deleted at its hard lifetime; an SA that rekeys in time is never hit by it; the
 * default is 110% of the rekey time, and a hard lifetime not longer than the rekey time is refused.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { checkConfig } from '../../src/ipsec/config.js';
import { EXCHANGE } from '../../src/ipsec/constants.js';
import { Pair, siteA } from './ipsec-pair.js';

/** A pair with its first SAs up; from then on, every CREATE_CHILD_SA from a is lost (its rekeys fail). */
function upWithLostRekeys(over: Parameters<typeof Pair.create>[0]): Pair {
  const p = Pair.create({ dpdIntervalMs: 0, ...over }, { ikeRekeyMs: 0, childRekeyMs: 0, dpdIntervalMs: 0 });
  p.initiate();
  p.run();
  assert.equal(p.liveChildren('a').length, 1);
  p.filter = (d) =>
    d.from === 'a' && Pair.exchangeOf(d)?.exchange === EXCHANGE.CREATE_CHILD_SA ? 'lose' : 'deliver';
  return p;
}

describe('IKEv2 hard lifetimes', () => {
  it('a CHILD SA whose rekey gets no answer is deleted at its hard lifetime, the IKE SA stays', () => {
    const p = upWithLostRekeys({ ikeRekeyMs: 0, childRekeyMs: 10_000, childHardLifetimeMs: 30_000 });
    const [child] = p.liveChildren('a');
    p.advance(29_000);
    assert.equal(p.liveChildren('a').length, 1, 'still there before its hard lifetime');
    assert.ok(p.wire.length === 0);
    p.advance(1_500);
    assert.equal(p.liveChildren('a').length, 0);
    const down = p.of('a', 'child-sa-down').filter((d) => d.inboundSpi === child!.inboundSpi);
    assert.equal(down.length, 1);
    assert.match(down[0]!.reason, /hard lifetime reached/);
    assert.equal(p.liveIke('a').length, 1, 'the IKE SA is not touched by a CHILD SA expiring');
  });

  it('a CHILD SA whose rekey is refused (the peer takes no PFS group) is deleted at its hard lifetime', () => {
    const p = Pair.create(
      {
        espProposals: ['aes256gcm16-x25519'],
        childRekeyMs: 10_000,
        childHardLifetimeMs: 20_000,
        dpdIntervalMs: 0,
      },
      { espProposals: ['aes256gcm16'], ikeRekeyMs: 0, childRekeyMs: 0, dpdIntervalMs: 0 },
    );
    p.initiate();
    p.run();
    assert.equal(p.liveChildren('a').length, 1);
    p.advance(15_000);
    assert.equal(p.of('a', 'failed')[0]?.failure, 'child-no-proposal-chosen');
    assert.equal(p.liveChildren('a').length, 1, 'the old CHILD SA stays until its hard lifetime');
    p.advance(6_000);
    assert.equal(p.liveChildren('a').length, 0);
    assert.match(p.of('a', 'child-sa-down')[0]!.reason, /hard lifetime reached/);
    // The peer is told with an INFORMATIONAL DELETE and drops its side too.
    assert.equal(p.liveChildren('b').length, 0);
    assert.equal(p.liveIke('a').length, 1);
    assert.equal(p.liveIke('b').length, 1);
  });

  it('an IKE SA whose rekey gets no answer is closed at its hard lifetime, with its CHILD SAs', () => {
    const p = upWithLostRekeys({ ikeRekeyMs: 10_000, ikeHardLifetimeMs: 20_000, childRekeyMs: 0 });
    p.advance(19_000);
    assert.equal(p.liveIke('a').length, 1);
    p.advance(1_500);
    assert.equal(p.liveIke('a').length, 0);
    assert.equal(p.liveChildren('a').length, 0);
    assert.match(p.of('a', 'ike-sa-down')[0]!.reason, /hard lifetime reached/);
  });

  it('SAs that rekey in time never reach a hard lifetime: 5 minutes of 10 s CHILD / 25 s IKE rekeys', () => {
    const p = Pair.create(
      { childRekeyMs: 10_000, ikeRekeyMs: 25_000, dpdIntervalMs: 0 },
      { ikeRekeyMs: 0, childRekeyMs: 0, dpdIntervalMs: 0 },
    );
    p.initiate();
    p.run();
    p.advance(300_000);
    const reasons = [...p.of('a', 'child-sa-down'), ...p.of('a', 'ike-sa-down')].map((d) => d.reason);
    assert.ok(reasons.length >= 30, `${reasons.length} SAs replaced`);
    assert.ok(
      reasons.every((r) => !/hard lifetime/.test(r)),
      reasons.filter((r) => /hard/.test(r)).join(', '),
    );
    assert.equal(p.liveChildren('a').length, 1);
    assert.equal(p.liveIke('a').length, 1);
  });

  it('the hard lifetime defaults to 110% of the rekey time, at least the retransmission budget beyond it (0 with rekeying off); a shorter one is refused', () => {
    const d = checkConfig(siteA({ ikeRekeyMs: 3_600_000, childRekeyMs: 0 }));
    assert.ok(d.ok);
    assert.equal(d.value.ikeHardLifetimeMs, 3_960_000);
    assert.equal(d.value.childHardLifetimeMs, 0);
    // Short rekey times: the margin is at least the retransmission budget (1 + 2 + 4 s here).
    const short = checkConfig(
      siteA({ childRekeyMs: 10_000, retransmitTimeoutMs: 1_000, retransmitBase: 2, retransmitTries: 2 }),
    );
    assert.ok(short.ok);
    assert.equal(short.value.childHardLifetimeMs, 17_000);
    const bad = checkConfig(siteA({ childRekeyMs: 60_000, childHardLifetimeMs: 60_000 }));
    assert.ok(!bad.ok);
    assert.equal(bad.error.field, 'childHardLifetimeMs');
    assert.match(bad.error.message, /must be longer than the rekey time/);
  });
});
