/**
 * Two IKEv2 cores (initiator and responder) in one process with a fake clock: IKE_SA_INIT, IKE_AUTH with a
 * PSK and the first CHILD SA, mirror-image ChildSaSpecs, lost and duplicated messages, failures with the
 * messages they promise, narrowing, DPD, delete and retransmission give-up.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import type { ChildSaSpec } from '../../src/ipsec/child-sa.js';
import { IkeCore } from '../../src/ipsec/core.js';
import { Pair, siteA, ts } from './ipsec-pair.js';

function mirror(a: ChildSaSpec, b: ChildSaSpec): void {
  assert.equal(a.inboundSpi, b.outboundSpi);
  assert.equal(a.outboundSpi, b.inboundSpi);
  assert.deepEqual(a.inbound, b.outbound);
  assert.deepEqual(a.outbound, b.inbound);
  assert.notDeepEqual(a.inbound.encryptionKey, a.outbound.encryptionKey);
  assert.equal(a.encryption, b.encryption);
  assert.equal(a.encryptionKeyBits, b.encryptionKeyBits);
  assert.equal(a.integrity, b.integrity);
  assert.equal(a.esn, b.esn);
  assert.equal(a.mode, b.mode);
  assert.deepEqual(a.localSelectors, b.remoteSelectors);
  assert.deepEqual(a.remoteSelectors, b.localSelectors);
}

function established(p: Pair): { a: ChildSaSpec; b: ChildSaSpec } {
  assert.equal(p.of('a', 'ike-sa-up').length, 1, JSON.stringify(p.of('a', 'failed')));
  assert.equal(p.of('b', 'ike-sa-up').length, 1, JSON.stringify(p.of('b', 'failed')));
  const ca = p.of('a', 'child-sa-up');
  const cb = p.of('b', 'child-sa-up');
  assert.equal(ca.length, 1, JSON.stringify(p.of('a', 'failed')));
  assert.equal(cb.length, 1, JSON.stringify(p.of('b', 'failed')));
  mirror(ca[0]!.spec, cb[0]!.spec);
  return { a: ca[0]!.spec, b: cb[0]!.spec };
}

describe('IKEv2 two cores: establishment', () => {
  const suites: [string, string, number, number, number | null][] = [
    ['aes256gcm16-prfsha256-x25519', 'aes256gcm16', 20, 256, null],
    ['aes128-sha256-modp2048', 'aes128-sha256', 12, 128, 12],
    ['chacha20poly1305-prfsha512-ecp384', 'chacha20poly1305', 28, 256, null],
    ['aes256-sha512-ecp521', 'aes256-sha1-esn', 12, 256, 2],
    ['aes128gcm16-prfsha384-ecp256', 'aes128gcm16', 20, 128, null],
    ['aes256-sha384-modp1536', 'aes256-sha384', 12, 256, 13],
  ];
  for (const [ike, esp, encr, bits, integ] of suites) {
    it(`${ike} / esp ${esp}: both sides up with mirror-image CHILD SAs`, () => {
      const legacy = ike.includes('modp1536');
      const p = Pair.create(
        { ikeProposals: [ike], espProposals: [esp], allowLegacyGroups: legacy },
        { ikeProposals: [ike], espProposals: [esp], allowLegacyGroups: legacy },
      );
      p.initiate();
      p.run();
      const { a } = established(p);
      assert.equal(a.encryption, encr);
      assert.equal(a.encryptionKeyBits, bits);
      assert.equal(a.integrity, integ);
      assert.equal(a.esn, esp.endsWith('-esn'));
      const keyBytes = bits / 8 + (encr === 12 ? 0 : 4);
      assert.equal(a.inbound.encryptionKey.length, keyBytes);
      assert.equal(p.of('a', 'ike-sa-up')[0]!.proposal, p.of('b', 'ike-sa-up')[0]!.proposal);
      assert.equal(p.a.stats.processed, p.a.stats.received);
      assert.equal(p.b.stats.processed, p.b.stats.received);
    });
  }

  it('the responder initiating works as well (roles swapped)', () => {
    const p = Pair.create();
    p.initiate('b');
    p.run();
    established(p);
  });

  it('INVALID_KE_PAYLOAD: the initiator retries with the group the responder asks for', () => {
    const p = Pair.create(
      { ikeProposals: ['aes256gcm16-prfsha256-x25519', 'aes256gcm16-prfsha256-ecp256'] },
      { ikeProposals: ['aes256gcm16-prfsha256-ecp256'] },
    );
    p.initiate();
    p.run();
    established(p);
    assert.match(p.of('a', 'ike-sa-up')[0]!.proposal, /ecp256/);
  });

  it('transport mode with USE_TRANSPORT_MODE on both sides', () => {
    const p = Pair.create({ mode: 'transport' }, { mode: 'transport' });
    p.initiate();
    p.run();
    const { a } = established(p);
    assert.equal(a.mode, 'transport');
  });

  it('transport asked, tunnel configured at the responder: tunnel', () => {
    const p = Pair.create({ mode: 'transport' });
    p.initiate();
    p.run();
    assert.equal(established(p).a.mode, 'tunnel');
  });

  it('forced encapsulation moves IKE_AUTH to UDP 4500 with the non-ESP marker', () => {
    const p = Pair.create({}, { forceEncapsulation: true });
    p.initiate();
    p.run();
    established(p);
    const sends = p.of('a', 'send');
    assert.equal(sends[0]!.localPort, 500);
    assert.equal(sends[1]!.localPort, 4500);
    assert.equal(sends[1]!.remote.port, 4500);
    assert.ok(sends[1]!.nonEspMarker);
    assert.equal(sends[1]!.data.readUInt32BE(0), 0);
    const ca = p.of('a', 'child-sa-up')[0]!;
    assert.deepEqual(ca.encapsulation, { localPort: 4500, remote: { address: '192.0.2.2', port: 4500 } });
    assert.ok(
      p
        .of('b', 'send')
        .slice(1)
        .every((s) => s.localPort === 4500 && s.nonEspMarker),
    );
  });
});

describe('IKEv2 two cores: NAT traversal', () => {
  it('A behind a NAT: both move to 4500 after IKE_SA_INIT, A keeps the mapping open with 0xFF keepalives', () => {
    const p = Pair.create({ dpdIntervalMs: 0, keepaliveIntervalMs: 20_000 }, { dpdIntervalMs: 0 });
    p.natA = { address: '198.51.100.7', ports: { 500: 40500, 4500: 44500 } };
    p.initiate();
    p.run();
    established(p);
    assert.equal(p.of('a', 'ike-sa-up')[0]!.behindNat, true);
    assert.equal(p.of('b', 'ike-sa-up')[0]!.behindNat, false);
    const cb = p.of('b', 'child-sa-up')[0]!;
    assert.deepEqual(cb.encapsulation, { localPort: 4500, remote: { address: '198.51.100.7', port: 44500 } });
    const sendsBefore = p.of('a', 'send').length;
    p.advance(61_000);
    const keepalives = p.of('a', 'send').slice(sendsBefore);
    assert.equal(keepalives.length, 3);
    for (const k of keepalives) {
      assert.deepEqual([...k.data], [0xff]);
      assert.equal(k.localPort, 4500);
      assert.equal(k.nonEspMarker, false);
    }
    assert.equal(p.b.stats.drops['natt-keepalive'], 3);
    assert.equal(p.of('b', 'send').length, 2, 'B, not behind a NAT, sends no keepalives');
  });
});

describe('IKEv2 two cores: traffic selectors', () => {
  it('several subnets in one TS payload, narrowed to what the responder allows', () => {
    const p = Pair.create(
      {
        localSelectors: [ts('10.1.0.0/16'), ts('10.3.0.0/16')],
        remoteSelectors: [ts('10.2.0.0/16'), ts('10.4.0.0/16')],
      },
      {
        localSelectors: [ts('10.2.1.0/24'), ts('10.4.0.0/16')],
        remoteSelectors: [ts('10.1.0.0/16'), ts('10.3.0.0/16')],
      },
    );
    p.initiate();
    p.run();
    const { a } = established(p);
    assert.deepEqual(
      a.remoteSelectors.map((s) => `${s.startAddress}-${s.endAddress}`),
      ['10.2.1.0-10.2.1.255', '10.4.0.0-10.4.255.255'],
    );
    assert.equal(a.localSelectors.length, 2);
  });

  it('no overlap: TS_UNACCEPTABLE, IKE SA up, no CHILD SA, both sides say why', () => {
    const p = Pair.create({}, { remoteSelectors: [ts('10.9.0.0/16')] });
    p.initiate();
    p.run();
    assert.equal(p.of('a', 'ike-sa-up').length, 1);
    assert.equal(p.of('a', 'child-sa-up').length, 0);
    assert.equal(p.of('b', 'child-sa-up').length, 0);
    assert.equal(p.of('a', 'failed')[0]!.failure, 'ts-unacceptable');
    const bf = p.of('b', 'failed')[0]!;
    assert.equal(bf.failure, 'ts-unacceptable');
    assert.match(bf.message, /10\.1\.0\.0\.\.10\.1\.255\.255/);
    assert.match(bf.message, /10\.9\.0\.0/);
  });
});

describe('IKEv2 two cores: failures', () => {
  it('a wrong PSK: AUTHENTICATION_FAILED to the initiator, a typed reason on both sides, no SA', () => {
    const p = Pair.create({ psk: 'this is not the same key at all' });
    p.initiate();
    p.run();
    const fa = p.of('a', 'failed');
    const fb = p.of('b', 'failed');
    assert.equal(fa[0]?.failure, 'authentication-failed');
    assert.match(fa[0]!.message, /AUTHENTICATION_FAILED/);
    assert.equal(fb[0]?.failure, 'authentication-failed');
    assert.match(fb[0]!.message, /does not verify with our pre-shared key/);
    assert.equal(p.of('a', 'ike-sa-up').length + p.of('b', 'ike-sa-up').length, 0);
    assert.equal(p.a.list().length + p.b.list().length, 0);
  });

  it('a wrong peer ID: AUTHENTICATION_FAILED naming both IDs', () => {
    const p = Pair.create({ localId: { type: 'fqdn', value: 'intruder.example' } });
    p.initiate();
    p.run();
    assert.match(p.of('b', 'failed')[0]!.message, /fqdn:intruder\.example.*fqdn:a\.example/);
    assert.equal(p.of('a', 'failed')[0]!.failure, 'authentication-failed');
  });

  it('no common IKE proposal: NO_PROPOSAL_CHOSEN, and the responder names both sides proposals', () => {
    const p = Pair.create(
      { ikeProposals: ['aes128-sha256-modp2048'] },
      { ikeProposals: ['aes256gcm16-prfsha256-x25519'] },
    );
    p.initiate();
    p.run();
    const fb = p.of('b', 'failed')[0]!;
    assert.equal(fb.failure, 'no-proposal-chosen');
    assert.match(
      fb.message,
      /peer offered \[aes128-sha256-prfsha256-modp2048\]; we accept \[aes256gcm16-prfsha256-x25519\]/,
    );
    const fa = p.of('a', 'failed')[0]!;
    assert.equal(fa.failure, 'no-proposal-chosen');
    assert.match(fa.message, /aes128-sha256-prfsha256-modp2048/);
    assert.equal(p.a.list().length + p.b.list().length, 0);
  });

  it('no common ESP proposal: IKE SA up, CHILD refused with both lists named', () => {
    const p = Pair.create({ espProposals: ['aes128-sha1'] }, { espProposals: ['aes256gcm16'] });
    p.initiate();
    p.run();
    assert.equal(p.of('a', 'ike-sa-up').length, 1);
    assert.equal(p.of('a', 'failed')[0]!.failure, 'child-no-proposal-chosen');
    assert.match(
      p.of('b', 'failed')[0]!.message,
      /peer offered \[aes128-sha1-noesn\]; we accept \[aes256gcm16-noesn\]/,
    );
  });

  it('a PSK under 20 characters is refused unless forced', () => {
    const r = IkeCore.create(siteA({ psk: 'short secret' }));
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.error.field, 'psk');
      assert.match(r.error.message, /12 characters; at least 20/);
    }
    assert.equal(IkeCore.create(siteA({ psk: 'short secret', forceShortPsk: true })).ok, true);
  });

  it('legacy DH groups only where allowed', () => {
    const r = IkeCore.create(siteA({ ikeProposals: ['aes128-sha1-modp1024'] }));
    assert.equal(r.ok, false);
    assert.equal(
      IkeCore.create(siteA({ ikeProposals: ['aes128-sha1-modp1024'], allowLegacyGroups: true })).ok,
      true,
    );
  });

  it('an unreachable peer: retransmissions with exponential backoff, then give-up', () => {
    const p = Pair.create();
    p.filter = () => 'lose';
    p.initiate();
    const start = p.now;
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t = p.a.nextDeadline();
      if (t === null) break;
      p.now = t;
      const acts = p.a.tick(t);
      if (acts.some((x) => x.type === 'send')) times.push(t - start);
      p.take('a', acts);
    }
    assert.deepEqual(times, [4000, 11200, 24160, 47488, 89478]);
    const f = p.of('a', 'failed');
    assert.equal(f[0]?.failure, 'peer-unreachable');
    assert.equal(p.a.nextDeadline(), null);
  });
});

describe('IKEv2 two cores: lost and duplicated messages', () => {
  for (const lost of [0, 1, 2, 3]) {
    it(`message ${lost} of the 4 lost once: retransmitted, established`, () => {
      const p = Pair.create();
      const seen = new Set<number>();
      p.filter = (_d, i) => {
        if (i === lost && !seen.has(i)) {
          seen.add(i);
          return 'lose';
        }
        return 'deliver';
      };
      p.initiate();
      p.run();
      p.advance(10_000);
      established(p);
    });
  }

  it('every message duplicated: duplicate requests re-answered from the cache, duplicate responses dropped', () => {
    const p = Pair.create();
    p.filter = () => 'duplicate';
    p.initiate();
    p.run(1000);
    established(p);
    assert.ok(p.b.stats.drops['unexpected-response'] === 0);
    assert.ok(p.a.stats.drops['unexpected-response'] >= 2);
    // The responder answered each duplicate request with the very same bytes.
    const bs = p.of('b', 'send').map((s) => s.data.toString('hex'));
    assert.equal(new Set(bs).size, 2);
  });
});

describe('IKEv2 two cores: INFORMATIONAL', () => {
  it('DPD: after the interval without traffic an empty INFORMATIONAL is sent and answered', () => {
    const p = Pair.create({ dpdIntervalMs: 30_000 }, { dpdIntervalMs: 0 });
    p.initiate();
    p.run();
    established(p);
    const before = p.of('b', 'send').length;
    p.advance(31_000);
    assert.equal(p.of('b', 'send').length, before + 1);
    assert.equal(p.of('a', 'ike-sa-down').length, 0);
  });

  it('DPD: a dead peer is declared down after the give-up time', () => {
    const p = Pair.create({ dpdIntervalMs: 30_000 }, { dpdIntervalMs: 0 });
    p.initiate();
    p.run();
    established(p);
    p.filter = () => 'lose';
    p.advance(30_000 + 200_000);
    const down = p.of('a', 'ike-sa-down');
    assert.equal(down.length, 1);
    assert.match(down[0]!.reason, /did not answer the liveness check/);
    assert.equal(p.of('a', 'child-sa-down').length, 1);
  });

  it('delete of the CHILD SA: both sides take it down, the IKE SA stays', () => {
    const p = Pair.create();
    p.initiate();
    p.run();
    const { a } = established(p);
    p.take('a', p.a.deleteChildren(p.now));
    p.run();
    assert.deepEqual(
      p.of('b', 'child-sa-down').map((x) => [x.inboundSpi, x.outboundSpi]),
      [[a.outboundSpi, a.inboundSpi]],
    );
    assert.equal(p.of('a', 'child-sa-down').length, 1);
    assert.equal(p.of('b', 'ike-sa-down').length, 0);
  });

  it('delete of the IKE SA: both sides down, CHILD SAs with it', () => {
    const p = Pair.create();
    p.initiate();
    p.run();
    established(p);
    p.take('b', p.b.deleteAll(p.now));
    p.run();
    for (const side of ['a', 'b'] as const) {
      assert.equal(p.of(side, 'ike-sa-down').length, 1);
      assert.equal(p.of(side, 'child-sa-down').length, 1);
      assert.equal(p.core(side).list().length, 0);
    }
  });
});
