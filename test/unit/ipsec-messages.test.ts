/**
 * The IKEv2 codec: every payload kind survives build → parse unchanged; every truncation of a valid message
 * (with and without the header length fixed up to match) is a typed drop, never an exception; IKEv1 and
 * other versions are recognised from the header alone.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { EXCHANGE } from '../../src/ipsec/constants.js';
import { IKE_DROP_REASONS } from '../../src/ipsec/drops.js';
import { buildMessage, parseMessage, type IkeHeader, type Payload } from '../../src/ipsec/messages.js';
import { Pair, ts } from './ipsec-pair.js';

const header: Omit<IkeHeader, 'nextPayload'> = {
  spiI: Buffer.from('0102030405060708', 'hex'),
  spiR: Buffer.from('1112131415161718', 'hex'),
  exchange: EXCHANGE.INFORMATIONAL,
  initiator: true,
  response: false,
  messageId: 7,
};

const everyKind: Payload[] = [
  {
    kind: 'sa',
    proposals: [
      {
        num: 1,
        protocol: 1,
        spi: Buffer.alloc(0),
        transforms: [
          { type: 1, id: 20, keyLength: 256 },
          { type: 2, id: 5, keyLength: null },
          { type: 4, id: 31, keyLength: null },
        ],
      },
      {
        num: 2,
        protocol: 3,
        spi: Buffer.from('c0ffee01', 'hex'),
        transforms: [
          { type: 1, id: 28, keyLength: null },
          { type: 5, id: 1, keyLength: null },
        ],
      },
    ],
  },
  { kind: 'ke', group: 31, data: Buffer.alloc(32, 9) },
  { kind: 'nonce', data: Buffer.alloc(32, 7) },
  {
    kind: 'notify',
    protocol: 3,
    spi: Buffer.from('01020304', 'hex'),
    notify: 16388,
    data: Buffer.alloc(20, 1),
  },
  { kind: 'id', initiator: true, idType: 2, data: Buffer.from('a.example') },
  { kind: 'id', initiator: false, idType: 1, data: Buffer.from([192, 0, 2, 1]) },
  { kind: 'auth', method: 2, data: Buffer.alloc(32, 3) },
  { kind: 'certreq', encoding: 4, data: Buffer.alloc(20, 4) },
  { kind: 'cert', encoding: 4, data: Buffer.alloc(5, 4) },
  { kind: 'ts', initiator: true, selectors: [ts('10.1.0.0/16'), ts('10.3.0.0/24'), ts('fd00:1::/64')] },
  {
    kind: 'ts',
    initiator: false,
    selectors: [{ ...ts('10.2.0.0/16'), protocol: 6, startPort: 80, endPort: 443 }],
  },
  { kind: 'delete', protocol: 3, spis: [Buffer.from('01020304', 'hex'), Buffer.from('0a0b0c0d', 'hex')] },
  { kind: 'delete', protocol: 1, spis: [] },
  { kind: 'vendor', data: Buffer.from('weft') },
  { kind: 'unknown', type: 200, data: Buffer.from('xyz') },
];

function reasonsAreTyped(buf: Buffer): void {
  const r = parseMessage(buf);
  if (!r.ok) assert.ok((IKE_DROP_REASONS as readonly string[]).includes(r.reason), r.reason);
}

describe('IKEv2 codec', () => {
  it('every payload kind round-trips through build and parse', () => {
    const msg = buildMessage(header, everyKind);
    const r = parseMessage(msg);
    assert.ok(r.ok, r.ok ? '' : r.reason);
    assert.deepEqual(r.value.payloads, everyKind);
    assert.deepEqual({ ...r.value.header, nextPayload: undefined }, { ...header, nextPayload: undefined });
    assert.equal(buildMessage(header, r.value.payloads).toString('hex'), msg.toString('hex'));
  });

  it('every truncation of every message of a real exchange is a typed drop (header length as sent, and fixed up)', () => {
    const p = Pair.create(
      { espProposals: ['aes128-sha256'], ikeProposals: ['aes128-sha256-modp2048'] },
      { espProposals: ['aes128-sha256'], ikeProposals: ['aes128-sha256-modp2048'] },
    );
    p.initiate();
    p.run();
    const messages = [...p.of('a', 'send'), ...p.of('b', 'send')].map((s) => s.data);
    messages.push(buildMessage(header, everyKind));
    assert.ok(messages.length >= 5);
    let cases = 0;
    for (const m of messages) {
      assert.ok(parseMessage(m).ok);
      for (let n = 0; n < m.length; n++) {
        const cut = Buffer.from(m.subarray(0, n));
        const r = parseMessage(cut);
        assert.equal(r.ok, false, `truncated to ${n}`);
        reasonsAreTyped(cut);
        if (n >= 28) {
          cut.writeUInt32BE(n, 24);
          const fixed = parseMessage(cut);
          if (n < m.length) assert.equal(fixed.ok, false, `truncated to ${n} with the length fixed up`);
          reasonsAreTyped(cut);
        }
        cases++;
      }
    }
    assert.ok(cases > 1000);
  });

  it('header checks: too short, wrong length, IKEv1, unknown major version', () => {
    const m = buildMessage(header, [{ kind: 'nonce', data: Buffer.alloc(16) }]);
    assert.deepEqual(parseMessage(m.subarray(0, 27)), { ok: false, reason: 'too-short' });
    const longer = Buffer.concat([m, Buffer.alloc(1)]);
    assert.deepEqual(parseMessage(longer), { ok: false, reason: 'bad-length' });
    const v1 = Buffer.from(m);
    v1[17] = 0x10;
    assert.deepEqual(parseMessage(v1), { ok: false, reason: 'ikev1-not-supported' });
    const v3 = Buffer.from(m);
    v3[17] = 0x30;
    assert.deepEqual(parseMessage(v3), { ok: false, reason: 'bad-version' });
  });

  it('structure checks: a critical unknown payload, SK not last, bad proposal and transform flags, TS lengths', () => {
    const crit = buildMessage(header, [{ kind: 'unknown', type: 200, data: Buffer.alloc(4) }]);
    crit[29] = 0x80;
    assert.deepEqual(parseMessage(crit), { ok: false, reason: 'unsupported-critical-payload' });
    const sk = buildMessage(header, [{ kind: 'sk', firstInner: 0, body: Buffer.alloc(20) }]);
    assert.ok(parseMessage(sk).ok);
    const skThenMore = Buffer.concat([sk, Buffer.alloc(4)]);
    skThenMore.writeUInt32BE(skThenMore.length, 24);
    assert.deepEqual(parseMessage(skThenMore), { ok: false, reason: 'sk-not-last' });
    const sa = buildMessage(header, [everyKind[0]!]);
    const lastFlag = Buffer.from(sa);
    lastFlag[32] = 0; // "last proposal" while another follows
    assert.deepEqual(parseMessage(lastFlag), { ok: false, reason: 'bad-payload' });
    const tsMsg = buildMessage(header, [everyKind[9]!]);
    const badTs = Buffer.from(tsMsg);
    badTs[32] = 4; // selector count beyond the bytes
    assert.deepEqual(parseMessage(badTs), { ok: false, reason: 'bad-payload' });
  });
});
