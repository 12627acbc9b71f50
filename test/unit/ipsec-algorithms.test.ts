/**
 * Legacy DH groups (2 and 5) between two cores: accepted with allowLegacyGroups, refused without it, and the
 * refusal's log line says what to change (the interop matrix against strongSwan is
 * test/interop/ipsec-algorithms.test.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { legacyGroupHint, parseProposal } from '../../src/ipsec/algorithms.js';
import type { Transform } from '../../src/ipsec/messages.js';
import { Pair } from './ipsec-pair.js';

function proposal(text: string, kind: 'ike' | 'esp' = 'ike'): Transform[] {
  const p = parseProposal(text, kind);
  assert.ok(p.ok);
  return p.value;
}

describe('legacy DH groups', () => {
  it('the hint names the legacy groups the peer offered when we have none', () => {
    assert.equal(
      legacyGroupHint([proposal('aes128-sha1-modp1024')], [proposal('aes128-sha1-modp2048')]),
      ' (modp1024 is a legacy DH group: the site accepts it only with allowLegacyGroups)',
    );
    assert.equal(
      legacyGroupHint(
        [proposal('aes128-sha1-modp1024'), proposal('aes128-sha1-modp1536')],
        [proposal('aes128-sha1-modp2048')],
      ),
      ' (modp1024 and modp1536 are legacy DH groups: the site accepts them only with allowLegacyGroups)',
    );
  });

  it('no hint when the peer offers no legacy group, or when we allow one', () => {
    assert.equal(legacyGroupHint([proposal('aes128-sha1-ecp256')], [proposal('aes128-sha1-modp2048')]), '');
    assert.equal(legacyGroupHint([proposal('aes128-sha1-modp1024')], [proposal('aes128-sha1-modp1536')]), '');
  });

  it('a peer offering only group 2 to a site without allowLegacyGroups: NO_PROPOSAL_CHOSEN, and the line says why', () => {
    const p = Pair.create(
      { ikeProposals: ['aes256-sha256-modp1024'], allowLegacyGroups: true },
      { ikeProposals: ['aes256-sha256-modp2048'] },
    );
    p.initiate();
    p.run();
    const fb = p.of('b', 'failed')[0]!;
    assert.equal(fb.failure, 'no-proposal-chosen');
    assert.match(
      fb.message,
      /peer offered \[aes256-sha256-prfsha256-modp1024\]; we accept \[aes256-sha256-prfsha256-modp2048\] \(modp1024 is a legacy DH group: the site accepts it only with allowLegacyGroups\)$/,
    );
    assert.equal(p.a.list().length + p.b.list().length, 0);
  });

  for (const group of ['modp1024', 'modp1536']) {
    it(`${group} with allowLegacyGroups on both sides: IKE SA and CHILD SA up, CHILD rekey with PFS in ${group}`, () => {
      const p = Pair.create(
        {
          ikeProposals: [`aes128-sha256-${group}`],
          espProposals: [`aes128-sha256-${group}`],
          allowLegacyGroups: true,
        },
        {
          ikeProposals: [`aes128-sha256-${group}`],
          espProposals: [`aes128-sha256-${group}`],
          allowLegacyGroups: true,
        },
      );
      p.initiate();
      p.run();
      const up = p.of('a', 'ike-sa-up');
      assert.equal(up.length, 1);
      assert.equal(up[0]!.proposal, `aes128-sha256-prfsha256-${group}`);
      assert.equal(p.of('a', 'child-sa-up')[0]!.proposal, 'aes128-sha256-noesn');
      const [child] = p.liveChildren('a');
      p.take('a', p.a.rekeyChild(child!.outboundSpi, p.now));
      p.run();
      const rekeyed = p.of('a', 'child-sa-up').filter((c) => c.rekeyOf !== undefined);
      assert.equal(rekeyed.length, 1);
      assert.equal(rekeyed[0]!.proposal, `aes128-sha256-${group}-noesn`);
      assert.equal(p.of('a', 'failed').length + p.of('b', 'failed').length, 0);
    });
  }

  it('a legacy group in a site without allowLegacyGroups is a configuration error naming the field', () => {
    assert.throws(
      () => Pair.create({ ikeProposals: ['aes256-sha256-modp1536'] }),
      /ikeProposals: "aes256-sha256-modp1536" uses a legacy DH group/,
    );
  });
});
