/**
 * Published vectors for every primitive the IKEv2 core uses: HMAC (RFC 2202, RFC 4231) as PRF and as
 * truncated integrity, prf+ against a value derived by hand from RFC 7296 §2.13, AES-CBC (RFC 3602),
 * AES-GCM (GCM spec test cases) and ChaCha20-Poly1305 (RFC 8439 §2.8.2) with the IKE key | salt layout,
 * X25519 (RFC 7748 §6.1) and ECP-256 (RFC 5903 §8.1) through the KE code, and the key derivation layout.
 */
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { encrSuite } from '../../src/ipsec/algorithms.js';
import { DH_GROUP, ENCR, PRF } from '../../src/ipsec/constants.js';
import { generateDh } from '../../src/ipsec/dh.js';
import { deriveChildKeys, deriveIkeKeys } from '../../src/ipsec/keys.js';
import { prf, prfPlus } from '../../src/ipsec/prf.js';
import { aeadOpen, aeadSeal, cbc } from '../../src/ipsec/sk.js';
import { integSuite } from '../../src/ipsec/algorithms.js';

const h = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('IKEv2 PRFs (HMAC)', () => {
  const key1 = Buffer.alloc(20, 0x0b);
  const hiThere = Buffer.from('Hi There');
  const jefe = Buffer.from('Jefe');
  const what = Buffer.from('what do ya want for nothing?');
  it('RFC 2202 test case 1: PRF_HMAC_SHA1', () => {
    assert.equal(hex(prf(PRF.HMAC_SHA1, key1, hiThere)), 'b617318655057264e28bc0b6fb378c8ef146be00');
  });
  it('RFC 4231 test case 1: PRF_HMAC_SHA2_256/384/512', () => {
    assert.equal(
      hex(prf(PRF.HMAC_SHA2_256, key1, hiThere)),
      'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
    );
    assert.equal(
      hex(prf(PRF.HMAC_SHA2_384, key1, hiThere)),
      'afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6',
    );
    assert.equal(
      hex(prf(PRF.HMAC_SHA2_512, key1, hiThere)),
      '87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854',
    );
  });
  it('RFC 4231 test case 2: a short key, data given in two parts', () => {
    assert.equal(
      hex(prf(PRF.HMAC_SHA2_256, jefe, what.subarray(0, 5), what.subarray(5))),
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    );
    assert.equal(
      hex(prf(PRF.HMAC_SHA2_512, jefe, what)),
      '164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737',
    );
  });
  it('integrity transforms are HMAC truncated: HMAC_SHA2_256_128 of RFC 4231 test case 2 is its first 16 bytes', () => {
    const s = integSuite(12)!;
    assert.equal(s.icvLength, 16);
    assert.equal(
      hex(createHmac(s.hash, jefe).update(what).digest().subarray(0, s.icvLength)),
      '5bdcc146bf60754e6a042426089575c7',
    );
    assert.deepEqual(
      [2, 12, 13, 14].map((id) => [integSuite(id)!.keyLength, integSuite(id)!.icvLength]),
      [
        [20, 12],
        [32, 16],
        [48, 24],
        [64, 32],
      ],
    );
  });
});

describe('prf+ (RFC 7296 §2.13)', () => {
  it('T1 = prf(K, S | 0x01), T2 = prf(K, T1 | S | 0x02), ... computed by hand from the definition', () => {
    const K = Buffer.from('key');
    const S = Buffer.from('seed');
    const hmac = (d: Buffer) => createHmac('sha256', K).update(d).digest();
    const t1 = hmac(Buffer.concat([S, Buffer.of(1)]));
    const t2 = hmac(Buffer.concat([t1, S, Buffer.of(2)]));
    const t3 = hmac(Buffer.concat([t2, S, Buffer.of(3)]));
    const out = prfPlus(PRF.HMAC_SHA2_256, K, S, 80);
    assert.equal(hex(out), hex(Buffer.concat([t1, t2, t3]).subarray(0, 80)));
    // The same value written out, so a change in node's HMAC or in prf+ itself shows here.
    assert.equal(hex(t1), hex(createHmac('sha256', 'key').update('seed\x01').digest()));
  });
  it('refuses to run the one-octet counter past 255', () => {
    assert.equal(prfPlus(PRF.HMAC_SHA1, Buffer.from('k'), Buffer.alloc(0), 255 * 20).length, 255 * 20);
    assert.throws(() => prfPlus(PRF.HMAC_SHA1, Buffer.from('k'), Buffer.alloc(0), 255 * 20 + 1), RangeError);
  });
});

describe('SK ciphers', () => {
  it('RFC 3602 case 1: AES-128-CBC, "Single block msg"', () => {
    const s = encrSuite(ENCR.AES_CBC, 128)!;
    const ct = cbc(
      s,
      h('06a9214036b8a15b512e03d534120006'),
      h('3dafba429d9eb430b422da802c9fac41'),
      Buffer.from('Single block msg'),
      true,
    );
    assert.equal(hex(ct), 'e353779c1079aeb82708942dbe77181a');
    assert.equal(
      cbc(
        s,
        h('06a9214036b8a15b512e03d534120006'),
        h('3dafba429d9eb430b422da802c9fac41'),
        ct,
        false,
      ).toString(),
      'Single block msg',
    );
  });

  // McGrew and Viega, GCM Appendix B, test cases 4 (AES-128) and 16 (AES-256); the 12-byte IV splits into
  // the 4-byte salt at the end of the IKE key and the 8-byte explicit IV of the SK payload (RFC 5282 §4).
  const P = h(`d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
    1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39`);
  const A = h('feedfacedeadbeeffeedfacedeadbeefabaddad2');
  const vectors: [string, number, number, Buffer, Buffer, Buffer, Buffer, Buffer][] = [
    [
      'GCM test case 4 (AES-128-GCM-16)',
      ENCR.AES_GCM_16,
      128,
      h('feffe9928665731c6d6a8f9467308308'),
      h('cafebabefacedbaddecaf888'),
      A,
      P,
      h(`42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091
         5bc94fbc3221a5db94fae95ae7121a47`),
    ],
    [
      'GCM test case 16 (AES-256-GCM-16)',
      ENCR.AES_GCM_16,
      256,
      h('feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308'),
      h('cafebabefacedbaddecaf888'),
      A,
      P,
      h(`522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662
         76fc6ece0f4e1768cddf8853bb2d551b`),
    ],
    [
      'RFC 8439 §2.8.2 (ChaCha20-Poly1305, RFC 7634 layout)',
      ENCR.CHACHA20_POLY1305,
      256,
      h('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f'),
      h('070000004041424344454647'),
      h('50515253c0c1c2c3c4c5c6c7'),
      Buffer.from(
        "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
        'latin1',
      ),
      h(`d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
         92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116 1ae10b594f09e26a7e902ecbd0600691`),
    ],
  ];
  for (const [name, id, bits, key, nonce, aad, plain, sealed] of vectors) {
    it(`${name}: seal and open with key | salt`, () => {
      const s = encrSuite(id, id === ENCR.CHACHA20_POLY1305 ? null : bits)!;
      const ikeKey = Buffer.concat([key, nonce.subarray(0, 4)]);
      assert.equal(ikeKey.length, s.keymatLength);
      const iv = nonce.subarray(4);
      assert.equal(iv.length, s.ivLength);
      assert.equal(hex(aeadSeal(s, ikeKey, iv, aad, plain)), hex(sealed));
      assert.equal(hex(aeadOpen(s, ikeKey, iv, aad, sealed)!), hex(plain));
      const bad = Buffer.from(sealed);
      bad[bad.length - 1]! ^= 1;
      assert.equal(aeadOpen(s, ikeKey, iv, aad, bad), null);
    });
  }
});

describe('DH groups through the KE code', () => {
  it('RFC 7748 §6.1: X25519 (group 31) public values and shared secret', () => {
    const alice = generateDh(
      DH_GROUP.CURVE25519,
      h('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'),
    );
    const bob = generateDh(
      DH_GROUP.CURVE25519,
      h('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'),
    );
    assert.equal(hex(alice.publicValue), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    assert.equal(hex(bob.publicValue), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    const k = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
    assert.equal(hex(alice.computeSecret(bob.publicValue)!), k);
    assert.equal(hex(bob.computeSecret(alice.publicValue)!), k);
    assert.equal(
      alice.computeSecret(Buffer.alloc(32)),
      null,
      'an all-zero result (low-order point) is refused',
    );
    assert.equal(alice.computeSecret(Buffer.alloc(31)), null);
  });

  it('RFC 5903 §8.1: ECP-256 (group 19), KE data x | y, shared secret x', () => {
    const i = generateDh(
      DH_GROUP.ECP_256,
      h('C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433'),
    );
    const r = generateDh(
      DH_GROUP.ECP_256,
      h('C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53'),
    );
    assert.equal(
      hex(i.publicValue),
      hex(
        h(
          'DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180 5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3',
        ),
      ),
    );
    assert.equal(
      hex(r.publicValue),
      hex(
        h(
          'D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63 56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB',
        ),
      ),
    );
    const girx = 'd6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de';
    assert.equal(hex(i.computeSecret(r.publicValue)!), girx);
    assert.equal(hex(r.computeSecret(i.publicValue)!), girx);
    assert.equal(i.computeSecret(Buffer.alloc(64, 1)), null, 'a point off the curve is refused');
  });

  for (const group of [
    DH_GROUP.MODP_1024,
    DH_GROUP.MODP_1536,
    DH_GROUP.MODP_2048,
    DH_GROUP.ECP_384,
    DH_GROUP.ECP_521,
  ]) {
    it(`group ${group}: both sides agree, fixed-length values, degenerate values refused`, () => {
      const a = generateDh(group);
      const b = generateDh(group);
      const s = a.computeSecret(b.publicValue)!;
      assert.ok(s);
      assert.equal(hex(s), hex(b.computeSecret(a.publicValue)!));
      assert.equal(a.computeSecret(b.publicValue.subarray(1)), null);
      if (group <= DH_GROUP.MODP_2048) {
        const one = Buffer.alloc(a.publicValue.length);
        one[one.length - 1] = 1;
        assert.equal(a.computeSecret(one), null);
      }
    });
  }
});

describe('key derivation layout (RFC 7296 §2.14, §2.17)', () => {
  it('SKEYSEED and the seven keys come from prf+ in order; KEYMAT splits initiator-to-responder first', () => {
    const ni = Buffer.alloc(32, 1);
    const nr = Buffer.alloc(32, 2);
    const gir = Buffer.alloc(32, 3);
    const spiI = Buffer.alloc(8, 4);
    const spiR = Buffer.alloc(8, 5);
    const encr = encrSuite(ENCR.AES_CBC, 128)!;
    const integ = integSuite(12)!;
    const k = deriveIkeKeys(PRF.HMAC_SHA2_256, encr, integ, ni, nr, gir, spiI, spiR);
    const seed = createHmac('sha256', Buffer.concat([ni, nr]))
      .update(gir)
      .digest();
    const stream = prfPlus(
      PRF.HMAC_SHA2_256,
      seed,
      Buffer.concat([ni, nr, spiI, spiR]),
      32 * 3 + 32 * 2 + 16 * 2,
    );
    assert.equal(hex(k.skD), hex(stream.subarray(0, 32)));
    assert.equal(hex(k.initiator.integKey!), hex(stream.subarray(32, 64)));
    assert.equal(hex(k.responder.integKey!), hex(stream.subarray(64, 96)));
    assert.equal(hex(k.initiator.encrKey), hex(stream.subarray(96, 112)));
    assert.equal(hex(k.responder.encrKey), hex(stream.subarray(112, 128)));
    assert.equal(hex(k.skPi), hex(stream.subarray(128, 160)));
    assert.equal(hex(k.skPr), hex(stream.subarray(160, 192)));

    const gcm = encrSuite(ENCR.AES_GCM_16, 256)!;
    const c = deriveChildKeys(PRF.HMAC_SHA2_256, k.skD, ni, nr, gcm, null);
    const km = prfPlus(PRF.HMAC_SHA2_256, k.skD, Buffer.concat([ni, nr]), 72);
    assert.equal(
      hex(c.initiatorToResponder.encryptionKey),
      hex(km.subarray(0, 36)),
      'key and salt, 36 bytes',
    );
    assert.equal(hex(c.responderToInitiator.encryptionKey), hex(km.subarray(36, 72)));
    assert.equal(c.initiatorToResponder.integrityKey, null);
  });
});
