/**
 * Published test vectors for every construction in src/crypto/. Each vector names its source in the comment
 * above it; the values are facts transcribed from those documents, nothing here is computed by another
 * implementation and then trusted.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';

import { hash, hmac, kdf1, kdf2, kdf3, mac } from '../../src/crypto/blake2s.js';
import { dh, publicFromPrivate, X25519Private } from '../../src/crypto/x25519.js';
import { counterNonce, xaeadOpen, xaeadSeal } from '../../src/crypto/aead.js';
import { PresharedKey, PrivateKey, PublicKey } from '../../src/crypto/keys.js';
import { backends } from './chacha-backends.js';

/** Hex (whitespace ignored, so RFC hex dumps can be pasted line by line) to bytes. */
function h(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, '');
  assert.match(clean, /^(?:[0-9a-fA-F]{2})*$/, 'test vector is not whole bytes of hex');
  return new Uint8Array(Buffer.from(clean, 'hex'));
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

function ascii(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'latin1'));
}

/** The bytes 0, 1, ..., n-1 (mod 256): the input pattern of the BLAKE2 and kernel self-test vectors. */
function seq(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = i & 0xff;
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

/** A copy with one bit flipped at `index`. */
function flip(bytes: Uint8Array, index: number, bit = 0x01): Uint8Array {
  const out = Uint8Array.from(bytes);
  out[index] = out[index]! ^ bit;
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// BLAKE2s
// ---------------------------------------------------------------------------------------------------------

describe('BLAKE2s-256 HASH', () => {
  it('RFC 7693 Appendix B: BLAKE2s-256("abc")', () => {
    // RFC 7693, Appendix B (Example Digest Output).
    assert.equal(hex(hash(ascii('abc'))), '508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982');
  });

  // BLAKE2 reference repository, testvectors/blake2-kat.h, blake2s_kat[] (unkeyed, 32-byte digest,
  // input = the bytes 00 01 02 ... of the given length). Lengths 63/64/65 straddle the 64-byte block.
  const unkeyedKat: [number, string][] = [
    [0, '69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9'],
    [1, 'e34d74dbaf4ff4c6abd871cc220451d2ea2648846c7757fbaac82fe51ad64bea'],
    [2, 'ddad9ab15dac4549ba42f49d262496bef6c0bae1dd342a8808f8ea267c6e210c'],
    [3, 'e8f91c6ef232a041452ab0e149070cdd7dd1769e75b3a5921be37876c45c9900'],
    [63, 'e57cb79487dd57902432b250733813bd96a84efce59f650fac26e6696aefafc3'],
    [64, '56f34e8b96557e90c1f24b52d0c89d51086acf1b00f634cf1dde9233b8eaaa3e'],
    [65, '1b53ee94aaf34e4b159d48de352c7f0661d0a40edff95a0b1639b4090e974472'],
  ];
  for (const [length, digest] of unkeyedKat) {
    it(`BLAKE2 KAT blake2s_kat[${length}] (unkeyed, ${length}-byte input)`, () => {
      assert.equal(hex(hash(seq(length))), digest);
    });
  }

  it('hashes the concatenation of its parts (KAT blake2s_kat[65] split across the block boundary)', () => {
    const input = seq(65);
    const expected = '1b53ee94aaf34e4b159d48de352c7f0661d0a40edff95a0b1639b4090e974472';
    assert.equal(hex(hash(input.subarray(0, 64), input.subarray(64))), expected);
    assert.equal(hex(hash(input.subarray(0, 1), input.subarray(1, 33), input.subarray(33))), expected);
    assert.equal(hex(hash(new Uint8Array(0), input, new Uint8Array(0))), expected);
  });

  it('WireGuard initial chaining key C = HASH("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s")', () => {
    // WireGuard whitepaper §5.4.2; constant INITIAL_CHAIN_KEY in cloudflare/boringtun
    // boringtun/src/noise/handshake.rs (there as decimal bytes 96, 226, 109, ... 205, 54).
    assert.equal(
      hex(hash(ascii('Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s'))),
      '60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36',
    );
  });

  it('WireGuard initial hash H = HASH(C || "WireGuard v1 zx2c4 Jason@zx2c4.com")', () => {
    // WireGuard whitepaper §5.4.2; constant INITIAL_CHAIN_HASH in cloudflare/boringtun
    // boringtun/src/noise/handshake.rs (there as decimal bytes 34, 17, 179, ... 158, 243).
    const c = h('60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36');
    const expected = '2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3';
    assert.equal(hex(hash(c, ascii('WireGuard v1 zx2c4 Jason@zx2c4.com'))), expected);
    assert.equal(hex(hash(concat(c, ascii('WireGuard v1 zx2c4 Jason@zx2c4.com')))), expected);
  });
});

/** The 32-byte key of the Linux kernel BLAKE2s self-test: 1, 1, 2, 3, 5, 8, ... (Fibonacci mod 256). */
function kernelSelftestKey(): Uint8Array {
  const key = new Uint8Array(32);
  key[0] = 1;
  key[1] = 1;
  for (let i = 2; i < 32; i++) key[i] = (key[i - 2]! + key[i - 1]!) & 0xff;
  return key;
}

describe('BLAKE2s-128 MAC (keyed, 16-byte digest)', () => {
  // Linux kernel lib/crypto/blake2s-selftest.c (v5.10), blake2s_testvecs[i]: keyed BLAKE2s with
  // outlen = 1 + i % 32, keylen = (13 * i) % 33, key = the last keylen bytes of the Fibonacci key above,
  // input = the bytes 00 01 ... (i - 1). The entries with i % 32 == 15 have outlen 16: exactly MAC().
  const key = kernelSelftestKey();
  const macVectors: [number, string][] = [
    [15, '4fe0f95212da84b7abaeb0a6472ac7f5'],
    [47, 'a3504da51d0368e95778d604f1c394d8'],
    [79, 'b1dec9f5dbf32f4cd6417d39183ec7c3'],
    [111, '08975b80aec41d5077df1fd024f017c0'],
    [143, '798ebc9e20b9194b6380f316af39bd92'],
    [175, 'b0cf2c4c5e5b4f2a23255847e5310670'],
    [207, 'afb8bc630f184de27add4644c8240ab7'],
    [239, 'e4717b94dba0d2ff9bebad8e958ac5ed'],
  ];
  for (const [i, digest] of macVectors) {
    const keylen = (13 * i) % 33;
    it(`kernel blake2s_testvecs[${i}]: ${keylen}-byte key, ${i}-byte input`, () => {
      assert.equal(1 + (i % 32), 16, 'vector is not a 16-byte digest');
      const out = mac(key.subarray(32 - keylen), seq(i));
      assert.equal(out.length, 16);
      assert.equal(hex(out), digest);
    });
  }

  it('is not a truncation of keyed BLAKE2s-256 (the digest length is a parameter of the hash)', () => {
    // BLAKE2 reference repository, testvectors/blake2s-test.txt: key 000102..1f, empty input.
    const keyed256 = h('48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49');
    const out = mac(seq(32), new Uint8Array(0));
    assert.equal(out.length, 16);
    assert.notEqual(hex(out), hex(keyed256.subarray(0, 16)));
    // Same for input 00 (blake2s-test.txt, second entry).
    const keyed256b = h('40d15fee7c328830166ac3f918650f807e7e01e177258cdc0a39b11f598066f1');
    assert.notEqual(hex(mac(seq(32), seq(1))), hex(keyed256b.subarray(0, 16)));
  });
});

describe('HMAC-BLAKE2s-256', () => {
  // Linux kernel lib/crypto/blake2s-selftest.c (v5.10), blake2s_hmac_testvecs[] (generated there with
  // OpenSSL's HMAC(EVP_blake2s256())). buf = the bytes 00 01 ... ff (256 bytes), key = the Fibonacci key.
  const key = kernelSelftestKey();
  const buf = seq(256);

  it('kernel blake2s_hmac_testvecs[0]: HMAC(key = 32-byte Fibonacci key, msg = 256 bytes)', () => {
    assert.equal(hex(hmac(key, buf)), 'cee1576982dcbf43ad564c70ed681696cfa473e8e8fc3279080a7582da3f0511');
  });

  it('kernel blake2s_hmac_testvecs[1]: HMAC(key = 256 bytes, longer than a block, msg = 32 bytes)', () => {
    assert.equal(hex(hmac(buf, key)), '772f0c7141f44b2bb3c6b6f960dee4523866e8bf9b96c49f60d9243799d6ec31');
  });

  it('HMAC over several parts equals HMAC over their concatenation', () => {
    const expected = 'cee1576982dcbf43ad564c70ed681696cfa473e8e8fc3279080a7582da3f0511';
    assert.equal(hex(hmac(key, buf.subarray(0, 100), buf.subarray(100))), expected);
  });
});

describe('KDF_n (HKDF over HMAC-BLAKE2s)', () => {
  // wireguard-go, device/kdf_test.go, TestKDF: KDF3(key, input) -> t0, t1, t2 (wireguard-go's t0 is the
  // paper's τ1). KDF1 and KDF2 must return the same prefixes.
  const vectors = [
    {
      name: 'key "test-key", input "test-input"',
      key: '746573742d6b6579',
      input: '746573742d696e707574',
      t: [
        '6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633',
        'df1194df20802a4fe594cde27e92991c8cae66c366e8106aaa937a55fa371e8a',
        'fac6e2745a325f5dc5d11a5b165aad08b0ada28e7b4e666b7c077934a4d76c24',
      ],
    },
    {
      name: 'key "wireguard", input "wireguard"',
      key: '776972656775617264',
      input: '776972656775617264',
      t: [
        '491d43bbfdaa8750aaf535e334ecbfe5129967cd64635101c566d4caefda96e8',
        '1e71a379baefd8a79aa4662212fcafe19a23e2b609a3db7d6bcba8f560e3d25f',
        '31e1ae48bddfbe5de38f295e5452b1909a1b4e38e183926af3780b0c1e1f0160',
      ],
    },
    {
      name: 'empty key, empty input',
      key: '',
      input: '',
      t: [
        '8387b46bf43eccfcf349552a095d8315c4055beb90208fb1be23b894bc2ed5d0',
        '58a0e5f6faefccf4807bff1f05fa8a9217945762040bcec2f4b4a62bdfe0e86e',
        '0ce6ea98ec548f8e281e93e32db65621c45eb18dc6f0a7ad94178610a2f7338e',
      ],
    },
  ];
  for (const v of vectors) {
    it(`wireguard-go TestKDF: ${v.name}`, () => {
      const key = h(v.key);
      const input = h(v.input);
      assert.deepEqual(kdf3(key, input).map(hex), v.t);
      assert.deepEqual(kdf2(key, input).map(hex), v.t.slice(0, 2));
      assert.equal(hex(kdf1(key, input)), v.t[0]);
    });
  }
});

// ---------------------------------------------------------------------------------------------------------
// X25519
// ---------------------------------------------------------------------------------------------------------

/** DH that must succeed. */
function x25519(scalar: Uint8Array, u: Uint8Array): Uint8Array {
  const out = dh(scalar, u);
  assert.ok(out, 'dh unexpectedly returned null');
  return out;
}

// RFC 7748 §6.1 (Curve25519 Diffie-Hellman example).
const ALICE_PRIVATE = '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a';
const ALICE_PUBLIC = '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a';
const BOB_PRIVATE = '5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb';
const BOB_PUBLIC = 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f';
const SHARED_SECRET = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';

describe('X25519', () => {
  // RFC 7748 §5.2, the two single scalar-multiplication vectors. The second u-coordinate has its top bit
  // set, which X25519 must mask off.
  it('RFC 7748 §5.2 vector 1', () => {
    const k = h('a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4');
    const u = h('e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c');
    assert.equal(hex(x25519(k, u)), 'c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552');
  });

  it('RFC 7748 §5.2 vector 2 (u with the top bit set)', () => {
    const k = h('4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d');
    const u = h('e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493');
    assert.equal(hex(x25519(k, u)), '95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957');
  });

  it('RFC 7748 §5.2 iterated test: 1 and 1,000 iterations', () => {
    // k = u = 9; each step: r = X25519(k, u); u = k; k = r.
    let k: Uint8Array = h('0900000000000000000000000000000000000000000000000000000000000000');
    let u: Uint8Array = Uint8Array.from(k);
    for (let i = 1; i <= 1000; i++) {
      const r = x25519(k, u);
      u = k;
      k = r;
      if (i === 1) assert.equal(hex(k), '422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079');
    }
    assert.equal(hex(k), '684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51');
  });

  it('RFC 7748 §6.1: Alice and Bob public keys', () => {
    assert.equal(hex(publicFromPrivate(h(ALICE_PRIVATE))), ALICE_PUBLIC);
    assert.equal(hex(publicFromPrivate(h(BOB_PRIVATE))), BOB_PUBLIC);
  });

  it('RFC 7748 §6.1: both sides derive the shared secret K', () => {
    assert.equal(hex(x25519(h(ALICE_PRIVATE), h(BOB_PUBLIC))), SHARED_SECRET);
    assert.equal(hex(x25519(h(BOB_PRIVATE), h(ALICE_PUBLIC))), SHARED_SECRET);
  });

  it('RFC 7748 §6.1 through X25519Private (the cached key object)', () => {
    const alice = new X25519Private(h(ALICE_PRIVATE));
    const bob = new X25519Private(h(BOB_PRIVATE));
    assert.equal(hex(alice.publicKey), ALICE_PUBLIC);
    assert.equal(hex(bob.publicKey), BOB_PUBLIC);
    assert.equal(hex(alice.dh(h(BOB_PUBLIC)) ?? new Uint8Array(0)), SHARED_SECRET);
    assert.equal(hex(bob.dh(h(ALICE_PUBLIC)) ?? new Uint8Array(0)), SHARED_SECRET);
  });

  // Linux kernel lib/crypto/curve25519-selftest.c (v5.10), curve25519_test_vectors[] with .valid = true
  // (the "wycheproof" ones are from Project Wycheproof's x25519_test.json).
  const valid: { source: string; priv: string; pub: string; out: string }[] = [
    {
      source: 'kernel selftest: scalar 1, u = 0x25',
      priv: '0100000000000000000000000000000000000000000000000000000000000000',
      pub: '2500000000000000000000000000000000000000000000000000000000000000',
      out: '3c7777caf997b264416077665b4e229d0b9548dc0cd81998ddcdc5c8533c797f',
    },
    {
      source: 'kernel selftest: scalar 1, u = ff..ff (non-canonical, top bit set)',
      priv: '0100000000000000000000000000000000000000000000000000000000000000',
      pub: 'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
      out: 'b32d1362c248d62fe62619cff04dd43db73ffc1b6308ede30b78d87380f1e834',
    },
    {
      source: 'kernel selftest / Wycheproof: normal case',
      priv: '4852834d9d6b77dadeabaaf2e11dca66d19fe74993a7bec36c6e16a0983feaba',
      pub: '9c647d9ae589b9f58fdc3ca4947efbc915c4b2e08e744a0edf469dac59c8f85a',
      out: '87b7f212b627f7a54ca5e0bcdaddd5389d9de6156cdbcf8ebe14ffbcfb436551',
    },
    {
      source: 'kernel selftest / Wycheproof: public key on twist',
      priv: '588c061a50804ac488ad774ac716c3f5ba714b2712e048491379a500211998a8',
      pub: '63aa40c6e38346c5caf23a6df0a5e6c80889a08647e551b3563449befcfc9733',
      out: 'b1a707519495ffffb298ff941716b06dfab87cf8d91123fe2be9a233dda22212',
    },
    {
      source: 'kernel selftest / Wycheproof: public key >= p',
      priv: 'f01e48dafac9d7bcf589cbc382c878d18bda3550589ffb5d50b523bebe329dae',
      pub: 'efffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
      out: 'bd36a0790eb883098c988b21786773de0b3a4df162282cf110de18dd484ce74b',
    },
  ];
  for (const v of valid) {
    it(v.source, () => {
      assert.equal(hex(x25519(h(v.priv), h(v.pub))), v.out);
    });
  }

  // Linux kernel lib/crypto/curve25519-selftest.c (v5.10), curve25519_test_vectors[] with .valid = false:
  // the result is all zeros (a point of small order), which dh() must refuse by returning null.
  const lowOrder: { source: string; priv: string; pub: string }[] = [
    {
      source: 'kernel selftest: private 01020304.., public 0',
      priv: '0102030400000000000000000000000000000000000000000000000000000000',
      pub: '0000000000000000000000000000000000000000000000000000000000000000',
    },
    {
      source: 'kernel selftest: private 02040608.., public of order 8 (e0eb7a7c..b800)',
      priv: '0204060800000000000000000000000000000000000000000000000000000000',
      pub: 'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
    },
    {
      source: 'kernel selftest / Wycheproof: public key = 0',
      priv: '207494038f2bb811d47805bcdf04a2ac585ada7f2f23389bfd4658f9ddd4debc',
      pub: '0000000000000000000000000000000000000000000000000000000000000000',
    },
    {
      source: 'kernel selftest / Wycheproof: public key = 1',
      priv: '202e8972b61c7e61930eb9450b5070eae1c670475685541f0476217e4818cfab',
      pub: '0100000000000000000000000000000000000000000000000000000000000000',
    },
    {
      source: 'kernel selftest / Wycheproof: low order 5f9c95bc..1157',
      priv: '78f1e8edf14481b389448dac8f59c70b038e7cf92ef2c7eff57a72466e115296',
      pub: '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
    },
    {
      source: 'kernel selftest / Wycheproof: low order p - 1',
      priv: 'a0a05a3e8f9f44204d5f8059a94ac7dfc39a49ac016dd743dbfa43c5d671fd88',
      pub: 'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    },
    {
      source: 'kernel selftest / Wycheproof: low order p',
      priv: 'd0dbb3ed1906663f15420af31f4eaf6509d9a9949723500605ad7c1c6e7450a9',
      pub: 'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    },
    {
      source: 'kernel selftest / Wycheproof: low order p + 1',
      priv: 'c0b1d0eb22b244fe3291140072cdd9d989b5f0ecd96c100feb5bca241c1d9f8f',
      pub: 'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    },
    {
      source: 'kernel selftest / Wycheproof: low order 0 with the top bit set',
      priv: '480bf45f594942a8bc0f3353c6e8b8853d77f351f1c2ca6c2d1abf8a00b4229c',
      pub: '0000000000000000000000000000000000000000000000000000000000000080',
    },
    {
      source: 'kernel selftest / Wycheproof: low order 1 with the top bit set',
      priv: '30f993fcf8514fc89bd8db14cd43ba0d4b2530e73c4276a05e1b145d420cedb4',
      pub: '0100000000000000000000000000000000000000000000000000000000000080',
    },
    {
      source: 'kernel selftest / Wycheproof: low order e0eb7a7c..b880 (top bit set)',
      priv: 'c04974b758380e2a5b5df6eb09bb2f6b3434f982722a8e676d3da251d1b3de83',
      pub: 'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880',
    },
  ];
  for (const v of lowOrder) {
    it(`${v.source} -> null`, () => {
      assert.equal(h(v.priv).length, 32);
      assert.equal(h(v.pub).length, 32);
      // The private key itself is fine: with a regular public key it gives a (nonzero) secret.
      assert.notEqual(dh(h(v.priv), h(ALICE_PUBLIC)), null);
      assert.equal(dh(h(v.priv), h(v.pub)), null);
      assert.equal(new X25519Private(h(v.priv)).dh(h(v.pub)), null);
    });
  }
});

// ---------------------------------------------------------------------------------------------------------
// ChaCha20-Poly1305 (every backend)
// ---------------------------------------------------------------------------------------------------------

// RFC 8439 §2.8.2, Example and Test Vector for AEAD_CHACHA20_POLY1305.
const RFC8439_282 = {
  key: h('808182838485868788898a8b8c8d8e8f 909192939495969798999a9b9c9d9e9f'),
  // 32-bit fixed-common part 07000000, then IV 4041424344454647.
  nonce: h('07000000 4041424344454647'),
  ad: h('50515253c0c1c2c3c4c5c6c7'),
  plaintext: h(`
    4c 61 64 69 65 73 20 61 6e 64 20 47 65 6e 74 6c
    65 6d 65 6e 20 6f 66 20 74 68 65 20 63 6c 61 73
    73 20 6f 66 20 27 39 39 3a 20 49 66 20 49 20 63
    6f 75 6c 64 20 6f 66 66 65 72 20 79 6f 75 20 6f
    6e 6c 79 20 6f 6e 65 20 74 69 70 20 66 6f 72 20
    74 68 65 20 66 75 74 75 72 65 2c 20 73 75 6e 73
    63 72 65 65 6e 20 77 6f 75 6c 64 20 62 65 20 69
    74 2e`),
  ciphertext: h(`
    d3 1a 8d 34 64 8e 60 db 7b 86 af bc 53 ef 7e c2
    a4 ad ed 51 29 6e 08 fe a9 e2 b5 a7 36 ee 62 d6
    3d be a4 5e 8c a9 67 12 82 fa fb 69 da 92 72 8b
    1a 71 de 0a 9e 06 0b 29 05 d6 a5 b6 7e cd 3b 36
    92 dd bd 7f 2d 77 8b 8c 98 03 ae e3 28 09 1b 58
    fa b3 24 e4 fa d6 75 94 55 85 80 8b 48 31 d7 bc
    3f f4 de f0 8e 4b 7a 9d e5 76 d2 65 86 ce c6 4b
    61 16`),
  tag: h('1a e1 0b 59 4f 09 e2 6a 7e 90 2e cb d0 60 06 91'),
};

// RFC 8439 Appendix A.5, ChaCha20-Poly1305 AEAD Decryption.
const RFC8439_A5 = {
  key: h('1c 92 40 a5 eb 55 d3 8a f3 33 88 86 04 f6 b5 f0 47 39 17 c1 40 2b 80 09 9d ca 5c bc 20 70 75 c0'),
  nonce: h('00 00 00 00 01 02 03 04 05 06 07 08'),
  ad: h('f3 33 88 86 00 00 00 00 00 00 4e 91'),
  ciphertext: h(`
    64 a0 86 15 75 86 1a f4 60 f0 62 c7 9b e6 43 bd
    5e 80 5c fd 34 5c f3 89 f1 08 67 0a c7 6c 8c b2
    4c 6c fc 18 75 5d 43 ee a0 9e e9 4e 38 2d 26 b0
    bd b7 b7 3c 32 1b 01 00 d4 f0 3b 7f 35 58 94 cf
    33 2f 83 0e 71 0b 97 ce 98 c8 a8 4a bd 0b 94 81
    14 ad 17 6e 00 8d 33 bd 60 f9 82 b1 ff 37 c8 55
    97 97 a0 6e f4 f0 ef 61 c1 86 32 4e 2b 35 06 38
    36 06 90 7b 6a 7c 02 b0 f9 f6 15 7b 53 c8 67 e4
    b9 16 6c 76 7b 80 4d 46 a5 9b 52 16 cd e7 a4 e9
    90 40 c5 a4 04 33 22 5e e2 82 a1 b0 a0 6c 52 3e
    af 45 34 d7 f8 3f a1 15 5b 00 47 71 8c bc 54 6a
    0d 07 2b 04 b3 56 4e ea 1b 42 22 73 f5 48 27 1a
    0b b2 31 60 53 fa 76 99 19 55 eb d6 31 59 43 4e
    ce bb 4e 46 6d ae 5a 10 73 a6 72 76 27 09 7a 10
    49 e6 17 d9 1d 36 10 94 fa 68 f0 ff 77 98 71 30
    30 5b ea ba 2e da 04 df 99 7b 71 4d 6c 6f 2c 29
    a6 ad 5c b4 02 2b 02 70 9b`),
  tag: h('ee ad 9d 67 89 0c bb 22 39 23 36 fe a1 85 1f 38'),
  plaintext: h(`
    49 6e 74 65 72 6e 65 74 2d 44 72 61 66 74 73 20
    61 72 65 20 64 72 61 66 74 20 64 6f 63 75 6d 65
    6e 74 73 20 76 61 6c 69 64 20 66 6f 72 20 61 20
    6d 61 78 69 6d 75 6d 20 6f 66 20 73 69 78 20 6d
    6f 6e 74 68 73 20 61 6e 64 20 6d 61 79 20 62 65
    20 75 70 64 61 74 65 64 2c 20 72 65 70 6c 61 63
    65 64 2c 20 6f 72 20 6f 62 73 6f 6c 65 74 65 64
    20 62 79 20 6f 74 68 65 72 20 64 6f 63 75 6d 65
    6e 74 73 20 61 74 20 61 6e 79 20 74 69 6d 65 2e
    20 49 74 20 69 73 20 69 6e 61 70 70 72 6f 70 72
    69 61 74 65 20 74 6f 20 75 73 65 20 49 6e 74 65
    72 6e 65 74 2d 44 72 61 66 74 73 20 61 73 20 72
    65 66 65 72 65 6e 63 65 20 6d 61 74 65 72 69 61
    6c 20 6f 72 20 74 6f 20 63 69 74 65 20 74 68 65
    6d 20 6f 74 68 65 72 20 74 68 61 6e 20 61 73 20
    2f e2 80 9c 77 6f 72 6b 20 69 6e 20 70 72 6f 67
    72 65 73 73 2e 2f e2 80 9d`),
};

// Project Wycheproof, testvectors/chacha20_poly1305_test.json (C2SP/wycheproof), valid cases with an empty
// plaintext and/or an empty AD -- the shapes WireGuard uses (keepalives are empty; transport data has no AD).
const WYCHEPROOF: {
  tcId: number;
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
}[] = [
  {
    tcId: 2,
    key: '80ba3192c803ce965ea371d5ff073cf0f43b6a2ab576b208426e11409c09b9b0',
    iv: '4da5bf8dfd5852c1ea12379d',
    aad: '',
    msg: '',
    ct: '',
    tag: '76acb342cf3166a5b63c0c0ea1383c8d',
  },
  {
    tcId: 3,
    key: '7a4cd759172e02eb204db2c3f5c746227df584fc1345196391dbb9577a250742',
    iv: 'a92ef0ac991dd516a3c6f689',
    aad: 'bd506764f2d2c410',
    msg: '',
    ct: '',
    tag: '906fa6284b52f87b7359cbaa7563c709',
  },
  {
    tcId: 4,
    key: 'cc56b680552eb75008f5484b4cb803fa5063ebd6eab91f6ab6aef4916a766273',
    iv: '99e23ec48985bccdeeab60f1',
    aad: '',
    msg: '2a',
    ct: '3a',
    tag: 'cac27dec0968801e9f6eded69d807522',
  },
  {
    tcId: 34,
    key: '59d4eafb4de0cfc7d3db99a8f54b15d7b39f0acc8da69763b019c1699f87674a',
    iv: '2fcb1b38a99e71b84740ad9b',
    aad: '',
    msg: '549b365af913f3b081131ccb6b825588',
    ct: 'e9110e9f56ab3ca483500ceabab67a13',
    tag: '836ccabf15a6a22a51c1071cfa68fa0c',
  },
];

for (const backend of backends) {
  describe(`ChaCha20-Poly1305 backend "${backend.name}"`, () => {
    it('RFC 8439 §2.8.2: seal gives the published ciphertext and tag', () => {
      const v = RFC8439_282;
      const sealed = backend.seal(v.key, v.nonce, v.plaintext, v.ad);
      assert.equal(hex(sealed), hex(concat(v.ciphertext, v.tag)));
    });

    it('RFC 8439 §2.8.2: open returns the plaintext', () => {
      const v = RFC8439_282;
      const opened = backend.open(v.key, v.nonce, concat(v.ciphertext, v.tag), v.ad);
      assert.ok(opened);
      assert.equal(hex(opened), hex(v.plaintext));
      assert.equal(Buffer.from(opened).toString('latin1').slice(0, 20), 'Ladies and Gentlemen');
    });

    it('RFC 8439 §2.8.2: a flipped ciphertext bit, tag bit or AD bit is refused', () => {
      const v = RFC8439_282;
      const sealed = concat(v.ciphertext, v.tag);
      assert.equal(backend.open(v.key, v.nonce, flip(sealed, 0), v.ad), null);
      assert.equal(backend.open(v.key, v.nonce, flip(sealed, v.ciphertext.length - 1, 0x80), v.ad), null);
      assert.equal(backend.open(v.key, v.nonce, flip(sealed, v.ciphertext.length), v.ad), null);
      assert.equal(backend.open(v.key, v.nonce, flip(sealed, sealed.length - 1, 0x80), v.ad), null);
      assert.equal(backend.open(v.key, v.nonce, sealed, flip(v.ad, 0)), null);
      assert.equal(backend.open(v.key, v.nonce, sealed, new Uint8Array(0)), null);
      assert.equal(backend.open(v.key, flip(v.nonce, 11), sealed, v.ad), null);
      assert.equal(backend.open(flip(v.key, 31), v.nonce, sealed, v.ad), null);
      assert.equal(backend.open(v.key, v.nonce, sealed.subarray(0, sealed.length - 1), v.ad), null);
    });

    it('RFC 8439 Appendix A.5: open (decryption example)', () => {
      const v = RFC8439_A5;
      const opened = backend.open(v.key, v.nonce, concat(v.ciphertext, v.tag), v.ad);
      assert.ok(opened);
      assert.equal(hex(opened), hex(v.plaintext));
    });

    it('RFC 8439 Appendix A.5: seal reproduces the received ciphertext and tag', () => {
      const v = RFC8439_A5;
      assert.equal(hex(backend.seal(v.key, v.nonce, v.plaintext, v.ad)), hex(concat(v.ciphertext, v.tag)));
    });

    it('RFC 8439 Appendix A.5: a flipped tag bit is refused', () => {
      const v = RFC8439_A5;
      const sealed = concat(v.ciphertext, v.tag);
      assert.equal(backend.open(v.key, v.nonce, flip(sealed, v.ciphertext.length + 7), v.ad), null);
    });

    for (const w of WYCHEPROOF) {
      it(`Wycheproof chacha20_poly1305 tcId ${w.tcId} (${w.msg.length / 2}-byte msg, ${w.aad.length / 2}-byte AD)`, () => {
        const sealed = backend.seal(h(w.key), h(w.iv), h(w.msg), h(w.aad));
        assert.equal(hex(sealed), w.ct + w.tag);
        const opened = backend.open(h(w.key), h(w.iv), h(w.ct + w.tag), h(w.aad));
        assert.ok(opened);
        assert.equal(hex(opened), w.msg);
        assert.equal(backend.open(h(w.key), h(w.iv), flip(h(w.ct + w.tag), w.ct.length / 2), h(w.aad)), null);
      });
    }

    it('a sealed input shorter than the 16-byte tag is refused', () => {
      const v = RFC8439_282;
      for (const n of [0, 1, 15]) {
        assert.equal(backend.open(v.key, v.nonce, v.tag.subarray(0, n), v.ad), null, `length ${n}`);
        assert.equal(
          backend.open(v.key, v.nonce, v.tag.subarray(0, n), new Uint8Array(0)),
          null,
          `length ${n}`,
        );
      }
    });
  });
}

for (const backend of backends) {
  describe(`ChaCha20-Poly1305 backend "${backend.name}": in-place transport API`, () => {
    it("sealInPlace reproduces RFC 8439 §2.8.2 in the caller's buffer", () => {
      const v = RFC8439_282;
      const data = Uint8Array.from(v.plaintext);
      const tag = new Uint8Array(16);
      backend.sealInPlace(v.key, v.nonce, data, tag, v.ad);
      assert.equal(hex(data), hex(v.ciphertext));
      assert.equal(hex(tag), hex(v.tag));
    });

    it('openInto recovers RFC 8439 Appendix A.5 and refuses any tampering', () => {
      const v = RFC8439_A5;
      const sealed = concat(v.ciphertext, v.tag);
      const out = new Uint8Array(v.ciphertext.length);
      assert.equal(backend.openInto(v.key, v.nonce, sealed, out, v.ad), true);
      assert.equal(hex(out), hex(v.plaintext));
      for (const at of [0, v.ciphertext.length - 1, sealed.length - 1]) {
        const bad = Uint8Array.from(sealed);
        bad[at]! ^= 1;
        assert.equal(backend.openInto(v.key, v.nonce, bad, out, v.ad), false, `flip at ${at}`);
      }
      assert.equal(backend.openInto(v.key, v.nonce, sealed, out, new Uint8Array(0)), false, 'wrong AD');
      assert.equal(backend.openInto(v.key, v.nonce, sealed.subarray(0, 15), out, v.ad), false, 'short');
    });

    it('openInto decrypts in place (out over the front of sealed), as the transport path does', () => {
      const v = RFC8439_A5;
      for (const length of [0, 1, 63, 64, 65, v.ciphertext.length]) {
        const plaintext = v.plaintext.subarray(0, length);
        const sealed = backend.seal(v.key, v.nonce, plaintext, v.ad);
        const expected = hex(sealed.subarray(length));
        assert.equal(backend.openInto(v.key, v.nonce, sealed, sealed.subarray(0, length), v.ad), true);
        assert.equal(hex(sealed.subarray(0, length)), hex(plaintext), `length ${length}`);
        assert.equal(hex(sealed.subarray(length)), expected, 'the tag is left alone');
      }
      const sealed = concat(v.ciphertext, v.tag);
      assert.equal(
        backend.openInto(v.key, v.nonce, sealed, sealed.subarray(0, v.ciphertext.length), v.ad),
        true,
      );
      assert.equal(hex(sealed.subarray(0, v.ciphertext.length)), hex(v.plaintext), 'RFC 8439 A.5 in place');
    });

    it('agrees with every other backend on random transport-shaped inputs (no AD, subarray views)', () => {
      for (let i = 0; i < 200; i++) {
        const key = Uint8Array.from({ length: 32 }, (_, j) => (i * 31 + j * 7) & 0xff);
        const nonce = counterNonce(i * 1_000_003);
        const len = (i * 37) % 1441;
        const buf = new Uint8Array(16 + len + 16).map((_, j) => (j * 13 + i) & 0xff);
        const plain = Uint8Array.from(buf.subarray(16, 16 + len));
        backend.sealInPlace(
          key,
          nonce,
          buf.subarray(16, 16 + len),
          buf.subarray(16 + len),
          new Uint8Array(0),
        );
        for (const other of backends) {
          const out = new Uint8Array(len);
          assert.equal(
            other.openInto(key, nonce, buf.subarray(16), out, new Uint8Array(0)),
            true,
            other.name,
          );
          assert.equal(hex(out), hex(plain));
          assert.equal(hex(other.seal(key, nonce, plain, new Uint8Array(0))), hex(buf.subarray(16)));
        }
      }
    });
  });
}

describe('counterNonce', () => {
  // WireGuard whitepaper §5.4 (AEAD): 32 bits of zeros followed by the 64-bit little-endian counter.
  it('counter 0', () => {
    assert.equal(hex(counterNonce(0)), '000000000000000000000000');
  });

  it('counter 1 -> 00000000 0100000000000000', () => {
    assert.equal(hex(counterNonce(1)), '00000000' + '0100000000000000');
  });

  it('counter 0x1_0000_0002 (above 2^32) -> 00000000 0200000001000000', () => {
    assert.equal(hex(counterNonce(0x1_0000_0002)), '00000000' + '0200000001000000');
  });

  it('counter 0xffff_ffff and 2^32', () => {
    assert.equal(hex(counterNonce(0xffff_ffff)), '00000000' + 'ffffffff00000000');
    assert.equal(hex(counterNonce(0x1_0000_0000)), '00000000' + '0000000001000000');
  });

  it('counter 2^53 - 1 (largest exact JS integer)', () => {
    assert.equal(hex(counterNonce(Number.MAX_SAFE_INTEGER)), '00000000' + 'ffffffffffff1f00');
  });

  it('is a fresh 12-byte array each call', () => {
    const a = counterNonce(5);
    a[4] = 0xaa;
    assert.equal(hex(counterNonce(5)), '00000000' + '0500000000000000');
  });
});

// ---------------------------------------------------------------------------------------------------------
// XChaCha20-Poly1305
// ---------------------------------------------------------------------------------------------------------

describe('XChaCha20-Poly1305 (XAEAD)', () => {
  // draft-irtf-cfrg-xchacha-03, Appendix A.3.1, Example and Test Vector for AEAD_XCHACHA20_POLY1305
  // (plaintext, AD and key are those of RFC 8439 §2.8.2).
  const key = RFC8439_282.key;
  const ad = RFC8439_282.ad;
  const plaintext = RFC8439_282.plaintext;
  const nonce = h('40 41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f 50 51 52 53 54 55 56 57');
  const ciphertext = h(`
    bd 6d 17 9d 3e 83 d4 3b 95 76 57 94 93 c0 e9 39
    57 2a 17 00 25 2b fa cc be d2 90 2c 21 39 6c bb
    73 1c 7f 1b 0b 4a a6 44 0b f3 a8 2f 4e da 7e 39
    ae 64 c6 70 8c 54 c2 16 cb 96 b7 2e 12 13 b4 52
    2f 8c 9b a4 0d b5 d9 45 b1 1b 69 b9 82 c1 bb 9e
    3f 3f ac 2b c3 69 48 8f 76 b2 38 35 65 d3 ff f9
    21 f9 66 4c 97 63 7d a9 76 88 12 f6 15 c6 8b 13
    b5 2e`);
  const tag = h('c0 87 59 24 c1 c7 98 79 47 de af d8 78 0a cf 49');

  it('draft-irtf-cfrg-xchacha-03 A.3.1: seal gives the published ciphertext and tag', () => {
    assert.equal(hex(xaeadSeal(key, nonce, plaintext, ad)), hex(concat(ciphertext, tag)));
  });

  it('draft-irtf-cfrg-xchacha-03 A.3.1: open returns the plaintext', () => {
    const opened = xaeadOpen(key, nonce, concat(ciphertext, tag), ad);
    assert.ok(opened);
    assert.equal(hex(opened), hex(plaintext));
  });

  it('tampered ciphertext, tag, AD, nonce or key is refused', () => {
    const sealed = concat(ciphertext, tag);
    assert.equal(xaeadOpen(key, nonce, flip(sealed, 0), ad), null);
    assert.equal(xaeadOpen(key, nonce, flip(sealed, ciphertext.length), ad), null);
    assert.equal(xaeadOpen(key, nonce, flip(sealed, sealed.length - 1, 0x80), ad), null);
    assert.equal(xaeadOpen(key, nonce, sealed, flip(ad, 3)), null);
    assert.equal(xaeadOpen(key, flip(nonce, 23), sealed, ad), null);
    assert.equal(xaeadOpen(key, flip(nonce, 0), sealed, ad), null);
    assert.equal(xaeadOpen(flip(key, 0), nonce, sealed, ad), null);
  });

  it('an input shorter than the tag is refused', () => {
    assert.equal(xaeadOpen(key, nonce, new Uint8Array(0), ad), null);
    assert.equal(xaeadOpen(key, nonce, tag.subarray(0, 15), ad), null);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------------------

describe('keys', () => {
  const aliceB64 = Buffer.from(h(ALICE_PRIVATE)).toString('base64');
  const alicePubB64 = Buffer.from(h(ALICE_PUBLIC)).toString('base64');
  const bobPubB64 = Buffer.from(h(BOB_PUBLIC)).toString('base64');

  it('base64 forms of the RFC 7748 §6.1 keys are as expected', () => {
    assert.equal(aliceB64, 'dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=');
    assert.equal(alicePubB64, 'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=');
  });

  it('PrivateKey.publicKey() of the RFC 7748 Alice private key is her published public key', () => {
    const parsed = PrivateKey.parse(aliceB64);
    assert.ok(parsed.ok);
    assert.equal(hex(parsed.key.publicKey().bytes), ALICE_PUBLIC);
    assert.equal(parsed.key.publicKey().toBase64(), alicePubB64);
    assert.equal(hex(PrivateKey.fromBytes(h(BOB_PRIVATE)).publicKey().bytes), BOB_PUBLIC);
  });

  it('PrivateKey.generate is clamped', () => {
    for (let i = 0; i < 64; i++) {
      const b = PrivateKey.generate().bytes;
      assert.equal(b.length, 32);
      assert.equal(b[0]! & 7, 0);
      assert.equal(b[31]! & 128, 0);
      assert.equal(b[31]! & 64, 64);
    }
    const allOnes = PrivateKey.generate((n) => new Uint8Array(n).fill(0xff)).bytes;
    assert.equal(allOnes[0], 0xf8);
    assert.equal(allOnes[31], 0x7f);
    const allZeros = PrivateKey.generate((n) => new Uint8Array(n)).bytes;
    assert.equal(allZeros[0], 0x00);
    assert.equal(allZeros[31], 0x40);
  });

  it('PublicKey.parse accepts a wg-style key, also with a trailing newline', () => {
    for (const text of [alicePubB64, `${alicePubB64}\n`]) {
      const r = PublicKey.parse(text);
      assert.ok(r.ok, JSON.stringify(text));
      assert.equal(hex(r.key.bytes), ALICE_PUBLIC);
    }
  });

  it('PublicKey.parse rejects 43- and 45-character strings', () => {
    assert.equal(PublicKey.parse(alicePubB64.slice(0, 43)).ok, false);
    assert.equal(PublicKey.parse(alicePubB64.slice(1)).ok, false);
    assert.equal(PublicKey.parse(`${alicePubB64}=`).ok, false);
    assert.equal(PublicKey.parse(`A${alicePubB64}`).ok, false);
  });

  it('PublicKey.parse rejects non-base64 text', () => {
    assert.equal(PublicKey.parse('').ok, false);
    assert.equal(PublicKey.parse(alicePubB64.replace('/', '_')).ok, false); // base64url alphabet
    assert.equal(PublicKey.parse(`!${alicePubB64.slice(1)}`).ok, false);
    assert.equal(PublicKey.parse(`${alicePubB64.slice(0, 20)} ${alicePubB64.slice(21)}`).ok, false);
    assert.equal(PublicKey.parse(ALICE_PUBLIC).ok, false); // hex, 64 characters
    assert.equal(PublicKey.parse(`${alicePubB64.slice(0, 42)}==`).ok, false);
  });

  it('PublicKey.parse rejects a 44-character string whose last digit has nonzero padding bits', () => {
    // 'o' (40 = 0b101000) ends Alice's key; 'p' (41) decodes to the same bytes in lenient decoders but
    // sets one of the two bits that must be zero.
    assert.equal(alicePubB64[42], 'o');
    for (const digit of ['p', 'q', 'r', 'B', 'z', '9', '/']) {
      const text = `${alicePubB64.slice(0, 42)}${digit}=`;
      assert.equal(PublicKey.parse(text).ok, false, text);
    }
  });

  it('PrivateKey never prints its base64 text', () => {
    const key = PrivateKey.fromBytes(h(ALICE_PRIVATE));
    const forms = [
      inspect(key),
      inspect({ nested: { key } }, { depth: 5 }),
      JSON.stringify(key),
      JSON.stringify({ key }),
      String(key),
      `${key}`,
      key.toString(),
    ];
    for (const form of forms) {
      assert.ok(!form.includes(aliceB64), form);
      assert.ok(!form.includes(aliceB64.slice(0, 16)), form);
      assert.ok(!form.includes(ALICE_PRIVATE.slice(0, 16)), form);
    }
    assert.equal(key.toBase64(), aliceB64); // the explicit accessor still works
  });

  it('PresharedKey never prints its base64 text', () => {
    const psk = PresharedKey.fromBytes(h(ALICE_PRIVATE));
    for (const form of [inspect(psk), JSON.stringify({ psk }), String(psk), `${psk}`]) {
      assert.ok(!form.includes(aliceB64.slice(0, 16)), form);
    }
  });

  it('PublicKey prints as its base64 text', () => {
    const r = PublicKey.parse(alicePubB64);
    assert.ok(r.ok);
    assert.equal(String(r.key), alicePubB64);
    assert.equal(JSON.stringify(r.key), JSON.stringify(alicePubB64));
  });

  it('equals()', () => {
    const a1 = PublicKey.fromBytes(h(ALICE_PUBLIC));
    const a2 = PublicKey.parse(alicePubB64);
    const b = PublicKey.parse(bobPubB64);
    assert.ok(a2.ok && b.ok);
    assert.equal(a1.equals(a2.key), true);
    assert.equal(a2.key.equals(a1), true);
    assert.equal(a1.equals(b.key), false);
    assert.equal(a1.equals(PublicKey.fromBytes(flip(h(ALICE_PUBLIC), 31, 0x80))), false);
    const p1 = PrivateKey.fromBytes(h(ALICE_PRIVATE));
    const p2 = PrivateKey.fromBytes(h(ALICE_PRIVATE));
    assert.equal(p1.equals(p2), true);
    assert.equal(p1.equals(PrivateKey.fromBytes(h(BOB_PRIVATE))), false);
  });

  it('fromBytes copies its input and rejects the wrong length', () => {
    const raw = h(ALICE_PUBLIC);
    const key = PublicKey.fromBytes(raw);
    raw[0] = 0;
    assert.equal(hex(key.bytes), ALICE_PUBLIC);
    assert.throws(() => PublicKey.fromBytes(new Uint8Array(31)), RangeError);
    assert.throws(() => PrivateKey.fromBytes(new Uint8Array(33)), RangeError);
  });
});
