/** Early negotiation TLVs in OpenVPN 2.6 reset payloads (src/openvpn/early-negotiation.ts). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  announcesEarlyNegotiation,
  encodeEarlyNegotiation,
  parseEarlyNegotiation,
} from '../../src/openvpn/early-negotiation.js';

describe('OpenVPN early negotiation', () => {
  it('the resend-WKc flag is TLV type 1, length 2, value 1 (ssl_pkt.c tls_reset_standalone)', () => {
    assert.deepEqual([...encodeEarlyNegotiation({ resendWkc: true })], [0, 1, 0, 2, 0, 1]);
    assert.deepEqual([...encodeEarlyNegotiation({ resendWkc: false })], []);
  });

  it('parses its own encoding, an empty payload, and skips unknown types', () => {
    assert.deepEqual(parseEarlyNegotiation(encodeEarlyNegotiation({ resendWkc: true })), {
      ok: true,
      value: { resendWkc: true },
    });
    assert.deepEqual(parseEarlyNegotiation(new Uint8Array(0)), { ok: true, value: { resendWkc: false } });
    assert.deepEqual(parseEarlyNegotiation(Uint8Array.of(0, 9, 0, 3, 1, 2, 3, 0, 1, 0, 2, 0, 1)), {
      ok: true,
      value: { resendWkc: true },
    });
  });

  it('every truncation and a flags TLV of the wrong length are typed drops', () => {
    const full = Uint8Array.of(0, 9, 0, 3, 1, 2, 3, 0, 1, 0, 2, 0, 1);
    for (const cut of [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12]) {
      assert.deepEqual(
        parseEarlyNegotiation(full.subarray(0, cut)),
        { ok: false, drop: 'malformed-tlv' },
        `${cut}`,
      );
    }
    assert.deepEqual(parseEarlyNegotiation(Uint8Array.of(0, 1, 0, 1, 1)), {
      ok: false,
      drop: 'malformed-tlv',
    });
  });

  it('a client announces support through a first tls-crypt packet id of 0x0f......', () => {
    assert.equal(announcesEarlyNegotiation(0x0f000001), true);
    assert.equal(announcesEarlyNegotiation(1), false);
    assert.equal(announcesEarlyNegotiation(0x1f000001), false);
  });
});
