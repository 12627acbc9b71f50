/**
 * TOTP (src/control/totp.ts) against the published vectors: RFC 4648 section 10 for base32, RFC 4226
 * Appendix D for HOTP, RFC 6238 Appendix B (the SHA-1 rows, 8 digits) for TOTP; then the window, replay
 * refusal, secrets and the otpauth URI.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  base32Decode,
  base32Encode,
  hotp,
  newTotpSecret,
  otpauthUrl,
  totp,
  totpKey,
  totpStep,
  verifyTotp,
} from '../../src/control/totp.js';

const ascii = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'ascii'));

describe('base32 (RFC 4648)', () => {
  // Section 10, test vectors.
  const vectors: [string, string][] = [
    ['', ''],
    ['f', 'MY======'],
    ['fo', 'MZXQ===='],
    ['foo', 'MZXW6==='],
    ['foob', 'MZXW6YQ='],
    ['fooba', 'MZXW6YTB'],
    ['foobar', 'MZXW6YTBOI======'],
  ];

  it('encodes the section 10 vectors, with and without padding', () => {
    for (const [plain, encoded] of vectors) {
      assert.equal(base32Encode(ascii(plain)), encoded, plain);
      assert.equal(base32Encode(ascii(plain), false), encoded.replace(/=+$/, ''), plain);
    }
  });

  it('decodes them back, forgiving case, spaces and missing padding', () => {
    for (const [plain, encoded] of vectors) {
      assert.deepEqual(base32Decode(encoded), ascii(plain), encoded);
      assert.deepEqual(base32Decode(encoded.replace(/=+$/, '').toLowerCase()), ascii(plain), encoded);
    }
    assert.deepEqual(base32Decode('MZXW 6YTB OI'), ascii('foobar'));
  });

  it('refuses what is not base32', () => {
    for (const bad of ['MZXW6YT1', 'MZXW6YT!', 'MZ=XW', 'M', 'MZXW6YTBOJ']) {
      assert.equal(base32Decode(bad), undefined, bad);
    }
  });

  it('round-trips random bytes of every length', () => {
    for (let n = 0; n < 41; n++) {
      const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n * 11) & 0xff);
      assert.deepEqual(base32Decode(base32Encode(bytes)), bytes, `${n} bytes`);
    }
  });
});

describe('HOTP (RFC 4226)', () => {
  it('gives the Appendix D values for the counters 0-9', () => {
    const key = ascii('12345678901234567890');
    const expected = [
      '755224',
      '287082',
      '359152',
      '969429',
      '338314',
      '254676',
      '287922',
      '162583',
      '399871',
      '520489',
    ];
    expected.forEach((code, counter) => assert.equal(hotp(key, BigInt(counter)), code, `counter ${counter}`));
  });

  it('refuses fewer than 6 or more than 10 digits', () => {
    assert.throws(() => hotp(ascii('x'), 0n, 5), RangeError);
    assert.throws(() => hotp(ascii('x'), 0n, 11), RangeError);
  });
});

describe('TOTP (RFC 6238)', () => {
  it('gives the Appendix B values (SHA-1, 8 digits)', () => {
    const key = ascii('12345678901234567890');
    // Appendix B: time (s), T (hex), TOTP for the SHA1 rows.
    const rows: [number, string, string][] = [
      [59, '0000000000000001', '94287082'],
      [1111111109, '00000000023523EC', '07081804'],
      [1111111111, '00000000023523ED', '14050471'],
      [1234567890, '000000000273EF07', '89005924'],
      [2000000000, '0000000003F940AA', '69279037'],
      [20000000000, '0000000027BC86AA', '65353130'],
    ];
    for (const [seconds, stepHex, code] of rows) {
      assert.equal(totpStep(seconds * 1000), BigInt(`0x${stepHex}`), `T at ${seconds}`);
      assert.equal(totp(key, seconds * 1000, { digits: 8 }), code, `TOTP at ${seconds}`);
    }
  });

  it('also gives the SHA-256 and SHA-512 rows, with their longer seeds', () => {
    const sha256 = ascii('12345678901234567890123456789012');
    const sha512 = ascii('1234567890123456789012345678901234567890123456789012345678901234');
    assert.equal(totp(sha256, 59_000, { digits: 8, algorithm: 'sha256' }), '46119246');
    assert.equal(totp(sha512, 59_000, { digits: 8, algorithm: 'sha512' }), '90693936');
  });

  it('accepts the current step and one either side, and says which it matched', () => {
    const key = ascii('12345678901234567890');
    const t = 1111111111_000;
    const now = totpStep(t);
    for (const offset of [-1n, 0n, 1n]) {
      const code = hotp(key, now + offset);
      assert.equal(verifyTotp(key, code, t), now + offset, `offset ${offset}`);
    }
    for (const offset of [-3n, -2n, 2n, 3n]) {
      assert.equal(verifyTotp(key, hotp(key, now + offset), t), undefined, `offset ${offset}`);
    }
    assert.equal(verifyTotp(key, hotp(key, now + 2n), t, { window: 2 }), now + 2n);
  });

  it('refuses a replay: steps up to afterStep do not count', () => {
    const key = ascii('12345678901234567890');
    const t = 2000000000_000;
    const now = totpStep(t);
    const code = hotp(key, now);
    assert.equal(verifyTotp(key, code, t), now);
    assert.equal(verifyTotp(key, code, t, { afterStep: now }), undefined);
    assert.equal(verifyTotp(key, code, t, { afterStep: now - 1n }), now);
    assert.equal(verifyTotp(key, hotp(key, now - 1n), t, { afterStep: now - 1n }), undefined);
    assert.equal(verifyTotp(key, hotp(key, now + 1n), t, { afterStep: now }), now + 1n);
  });

  it('refuses malformed codes; forgives spaces', () => {
    const key = ascii('12345678901234567890');
    const t = 59_000;
    const code = totp(key, t);
    assert.equal(verifyTotp(key, `${code.slice(0, 3)} ${code.slice(3)}`, t), totpStep(t));
    for (const bad of ['', '12345', '1234567', 'abcdef', `${code}0`, `-${code.slice(1)}`, '١٢٣٤٥٦']) {
      assert.equal(verifyTotp(key, bad, t), undefined, bad);
    }
  });
});

describe('secrets and the otpauth URI', () => {
  it('makes 160-bit secrets in unpadded base32, different each time', () => {
    const a = newTotpSecret();
    const b = newTotpSecret();
    assert.match(a, /^[A-Z2-7]{32}$/);
    assert.notEqual(a, b);
    assert.equal(totpKey(a).length, 20);
    assert.throws(() => totpKey('not base32!'));
  });

  it('writes the Key Uri Format authenticator apps scan', () => {
    assert.equal(
      otpauthUrl('JBSWY3DPEHPK3PXP', 'admin'),
      'otpauth://totp/Weft:admin?secret=JBSWY3DPEHPK3PXP&issuer=Weft',
    );
    assert.equal(
      otpauthUrl('JBSWY3DPEHPK3PXP', 'a b', 'My Co'),
      'otpauth://totp/My%20Co:a%20b?secret=JBSWY3DPEHPK3PXP&issuer=My%20Co',
    );
  });
});
