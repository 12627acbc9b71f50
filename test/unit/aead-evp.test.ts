/**
 * The keyed AEAD contexts of src/crypto/aead-evp.ts (OpenVPN's data channel and ESP) against published
 * vectors, on every backend: the default choice, libsodium (AES-256-GCM with AES-NI, ChaCha20-Poly1305), the
 * OpenSSL functions the node binary exports, and node:crypto.
 */
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  createAeadKey,
  createEvpAeadKey,
  createLibsodiumAeadKey,
  createNodeAeadKey,
  type AeadDirection,
  type AeadKey,
  type AeadName,
  AEAD_KEY_BYTES,
  AEAD_SPLIT_BYTES,
} from '../../src/crypto/aead-evp.js';
import { sodiumServes } from '../../src/crypto/aead-keyed-sodium.js';

function h(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
}
function randomBytes(n: number): Uint8Array {
  return new Uint8Array(nodeRandomBytes(n));
}
function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

interface Vector {
  readonly source: string;
  readonly name: AeadName;
  readonly key: Uint8Array;
  readonly nonce: Uint8Array;
  readonly ad: Uint8Array;
  readonly plaintext: Uint8Array;
  readonly ciphertext: Uint8Array;
  readonly tag: Uint8Array;
}

// McGrew and Viega, "The Galois/Counter Mode of Operation (GCM)", Appendix B: Test Cases 4 (AES-128) and 16
// (AES-256), which share the plaintext, the associated data and the 96-bit IV.
const GCM_P = h(`d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
  1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39`);
const GCM_A = h('feedfacedeadbeeffeedfacedeadbeefabaddad2');
const GCM_IV = h('cafebabefacedbaddecaf888');

const GCM_P64 = h(`d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
  1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255`);

const VECTORS: readonly Vector[] = [
  {
    source: 'GCM spec Test Case 3 (AES-128-GCM, no AD)',
    name: 'aes-128-gcm',
    key: h('feffe9928665731c6d6a8f9467308308'),
    nonce: GCM_IV,
    ad: new Uint8Array(0),
    plaintext: GCM_P64,
    ciphertext: h(`42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e
      21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985`),
    tag: h('4d5c2af327cd64a62cf35abd2ba6fab4'),
  },
  {
    source: 'GCM spec Test Case 14 (AES-256-GCM, zero key and IV)',
    name: 'aes-256-gcm',
    key: new Uint8Array(32),
    nonce: new Uint8Array(12),
    ad: new Uint8Array(0),
    plaintext: new Uint8Array(16),
    ciphertext: h('cea7403d4d606b6e074ec5d3baf39d18'),
    tag: h('d0d1c8a799996bf0265b98b5d48ab919'),
  },
  {
    source: 'GCM spec Test Case 15 (AES-256-GCM, no AD)',
    name: 'aes-256-gcm',
    key: h('feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308'),
    nonce: GCM_IV,
    ad: new Uint8Array(0),
    plaintext: GCM_P64,
    ciphertext: h(`522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
      8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad`),
    tag: h('b094dac5d93471bdec1a502270e3cc6c'),
  },
  {
    source: 'GCM spec Test Case 4 (AES-128-GCM)',
    name: 'aes-128-gcm',
    key: h('feffe9928665731c6d6a8f9467308308'),
    nonce: GCM_IV,
    ad: GCM_A,
    plaintext: GCM_P,
    ciphertext: h(`42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e
      21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091`),
    tag: h('5bc94fbc3221a5db94fae95ae7121a47'),
  },
  {
    source: 'GCM spec Test Case 16 (AES-256-GCM)',
    name: 'aes-256-gcm',
    key: h('feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308'),
    nonce: GCM_IV,
    ad: GCM_A,
    plaintext: GCM_P,
    ciphertext: h(`522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
      8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662`),
    tag: h('76fc6ece0f4e1768cddf8853bb2d551b'),
  },
  {
    source: 'RFC 8439 §2.8.2 (ChaCha20-Poly1305)',
    name: 'chacha20-poly1305',
    key: h('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f'),
    nonce: h('070000004041424344454647'),
    ad: h('50515253c0c1c2c3c4c5c6c7'),
    plaintext: new Uint8Array(
      Buffer.from(
        "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
        'latin1',
      ),
    ),
    ciphertext: h(`d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
      3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
      92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
      3ff4def08e4b7a9de576d26586cec64b6116`),
    tag: h('1ae10b594f09e26a7e902ecbd0600691'),
  },
];

type Make = (name: AeadName, key: Uint8Array, direction: AeadDirection) => AeadKey;
/** A backend and the ciphers it serves here (libsodium: no AES-128-GCM; AES-256-GCM only with AES-NI). */
const BACKENDS: readonly [string, Make, (name: AeadName) => boolean][] = [
  ['default', createAeadKey, () => true],
  [
    'libsodium',
    (name, key, direction) => {
      const k = createLibsodiumAeadKey(name, key, direction);
      if (!k) throw new Error(`libsodium does not serve ${name}`);
      return k;
    },
    sodiumServes,
  ],
  [
    'openssl',
    (name, key, direction) => {
      const k = createEvpAeadKey(name, key, direction);
      if (!k) throw new Error('EVP is not exported by this node binary');
      return k;
    },
    () => createEvpAeadKey('aes-128-gcm', new Uint8Array(16), 'seal') !== null,
  ],
  ['node', createNodeAeadKey, () => true],
];

for (const [backendName, make, serves] of BACKENDS) {
  describe(`keyed AEAD (${backendName} backend)`, () => {
    for (const v of VECTORS.filter((vector) => serves(vector.name))) {
      it(`${v.source}: seal gives the published ciphertext and tag`, () => {
        const key = make(v.name, v.key, 'seal');
        const out = new Uint8Array(v.plaintext.length);
        const tag = new Uint8Array(16);
        key.sealInto(v.nonce, v.plaintext, out, tag, v.ad);
        assert.equal(hex(out), hex(v.ciphertext));
        assert.equal(hex(tag), hex(v.tag));
        // The same context again (the nonce is reset per call, the key kept).
        const again = new Uint8Array(v.plaintext.length);
        key.sealInto(v.nonce, v.plaintext, again, tag, v.ad);
        assert.equal(hex(again), hex(v.ciphertext));
        key.dispose();
      });

      it(`${v.source}: open returns the plaintext, in place too`, () => {
        const key = make(v.name, v.key, 'open');
        const out = new Uint8Array(v.ciphertext.length);
        assert.equal(key.openInto(v.nonce, v.ciphertext, v.tag, out, v.ad), true);
        assert.equal(hex(out), hex(v.plaintext));
        const buffer = Uint8Array.from(v.ciphertext);
        assert.equal(key.openInto(v.nonce, buffer, v.tag, buffer, v.ad), true);
        assert.equal(hex(buffer), hex(v.plaintext));
        key.dispose();
      });

      it(`${v.source}: a flipped bit in ciphertext, tag, AD or nonce is refused; the key still works after`, () => {
        const key: AeadKey = make(v.name, v.key, 'open');
        const out = new Uint8Array(v.ciphertext.length);
        const flip = (b: Uint8Array, i: number): Uint8Array => {
          const c = Uint8Array.from(b);
          c[i] = c[i]! ^ 0x01;
          return c;
        };
        assert.equal(key.openInto(v.nonce, flip(v.ciphertext, 5), v.tag, out, v.ad), false);
        assert.equal(key.openInto(v.nonce, v.ciphertext, flip(v.tag, 15), out, v.ad), false);
        const otherAd = v.ad.length > 0 ? flip(v.ad, 0) : new Uint8Array(1);
        assert.equal(key.openInto(v.nonce, v.ciphertext, v.tag, out, otherAd), false);
        assert.equal(key.openInto(flip(v.nonce, 11), v.ciphertext, v.tag, out, v.ad), false);
        assert.equal(key.openInto(v.nonce, v.ciphertext, v.tag.subarray(0, 12), out, v.ad), false);
        assert.equal(key.openInto(v.nonce, v.ciphertext, v.tag, out, v.ad), true);
        assert.equal(hex(out), hex(v.plaintext));
        key.dispose();
      });
    }

    it('seals and opens subarrays of a larger buffer (the packet layout: header, tag, body)', (t) => {
      if (!serves('aes-256-gcm')) return t.skip('no AES-256-GCM in this backend here');
      const key = h('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff');
      const seal = make('aes-256-gcm', key, 'seal');
      const open = make('aes-256-gcm', key, 'open');
      const packet = new Uint8Array(8 + 16 + 1400);
      for (let i = 0; i < 1400; i++) packet[24 + i] = i & 0xff;
      const nonce = h('000000010203040506070809');
      seal.sealInto(
        nonce,
        packet.subarray(24),
        packet.subarray(24),
        packet.subarray(8, 24),
        packet.subarray(0, 8),
      );
      assert.notEqual(packet[24 + 7], 7);
      assert.equal(
        open.openInto(
          nonce,
          packet.subarray(24),
          packet.subarray(8, 24),
          packet.subarray(24),
          packet.subarray(0, 8),
        ),
        true,
      );
      for (let i = 0; i < 1400; i++) assert.equal(packet[24 + i], i & 0xff);
      seal.dispose();
      open.dispose();
    });

    it('refuses a key of the wrong length and misuse of a direction', () => {
      assert.throws(() => make('aes-256-gcm', new Uint8Array(16), 'seal'), RangeError);
      assert.throws(() => make('chacha20-poly1305', new Uint8Array(31), 'open'), RangeError);
      const name: AeadName = serves('aes-128-gcm') ? 'aes-128-gcm' : 'chacha20-poly1305';
      const k = make(name, new Uint8Array(AEAD_KEY_BYTES[name]), 'open');
      assert.throws(() =>
        k.sealInto(
          new Uint8Array(12),
          new Uint8Array(1),
          new Uint8Array(1),
          new Uint8Array(16),
          new Uint8Array(0),
        ),
      );
      k.dispose();
    });
  });
}

it('the default backend: libsodium for small packets and EVP for large where libsodium serves the cipher, EVP for AES-128-GCM (WEFT_CRYPTO moves the start)', () => {
  const wanted = process.env.WEFT_CRYPTO;
  const expect = (name: AeadName): string =>
    wanted === 'node'
      ? 'node'
      : wanted !== 'openssl' && sodiumServes(name)
        ? 'libsodium-ffi+openssl-ffi'
        : 'openssl-ffi';
  for (const name of ['aes-128-gcm', 'aes-256-gcm', 'chacha20-poly1305'] as const) {
    const k = createAeadKey(name, new Uint8Array(AEAD_KEY_BYTES[name]), 'seal');
    assert.equal(k.backend, expect(name), name);
    k.dispose();
  }
  // This machine has AES-NI (the bench machines all do): libsodium must be serving AES-256-GCM here.
  if (wanted === undefined) assert.equal(sodiumServes('aes-256-gcm'), true);
});

it("the default key gives node:crypto's output on both sides of the size split (1 to 1500 bytes)", () => {
  for (const name of ['aes-128-gcm', 'aes-256-gcm', 'chacha20-poly1305'] as const) {
    const key = randomBytes(AEAD_KEY_BYTES[name]);
    const seal = createAeadKey(name, key, 'seal');
    const open = createAeadKey(name, key, 'open');
    const reference = createNodeAeadKey(name, key, 'seal');
    for (const length of [1, 84, AEAD_SPLIT_BYTES - 1, AEAD_SPLIT_BYTES, AEAD_SPLIT_BYTES + 1, 1400, 1500]) {
      const data = randomBytes(length);
      const ad = randomBytes(8);
      const nonce = randomBytes(12);
      const out = new Uint8Array(length);
      const tag = new Uint8Array(16);
      const refOut = new Uint8Array(length);
      const refTag = new Uint8Array(16);
      seal.sealInto(nonce, data, out, tag, ad);
      reference.sealInto(nonce, data, refOut, refTag, ad);
      assert.deepEqual(out, refOut, `${name} ${length}`);
      assert.deepEqual(tag, refTag, `${name} ${length}`);
      const back = new Uint8Array(length);
      assert.equal(open.openInto(nonce, out, tag, back, ad), true, `${name} ${length}`);
      assert.deepEqual(back, data);
      tag[0] = tag[0]! ^ 1;
      assert.equal(open.openInto(nonce, out, tag, back, ad), false, `${name} ${length}: a bad tag`);
    }
    seal.dispose();
    open.dispose();
    reference.dispose();
  }
});

it('a disposed libsodium key refuses to work, and disposing twice is harmless', (t) => {
  if (!sodiumServes('aes-256-gcm')) return t.skip('no libsodium AES-256-GCM here');
  const k = createLibsodiumAeadKey('aes-256-gcm', new Uint8Array(32), 'seal')!;
  k.dispose();
  k.dispose();
  assert.throws(() =>
    k.sealInto(
      new Uint8Array(12),
      new Uint8Array(1),
      new Uint8Array(1),
      new Uint8Array(16),
      new Uint8Array(0),
    ),
  );
});

it('libsodium and OpenSSL agree on 1,000 random messages of random lengths, AD and nonces', (t) => {
  const evpOk = createEvpAeadKey('aes-256-gcm', new Uint8Array(32), 'seal');
  if (!evpOk) return t.skip('no EVP here');
  evpOk.dispose();
  for (const name of ['aes-256-gcm', 'chacha20-poly1305'] as const) {
    if (!sodiumServes(name)) continue;
    const key = randomBytes(32);
    const a = createLibsodiumAeadKey(name, key, 'seal')!;
    const b = createEvpAeadKey(name, key, 'seal')!;
    const openA = createLibsodiumAeadKey(name, key, 'open')!;
    for (let i = 0; i < 1000; i++) {
      const data = randomBytes(1 + (i % 1500));
      const ad = randomBytes(i % 3 === 0 ? 0 : 8);
      const nonce = randomBytes(12);
      const outA = new Uint8Array(data.length);
      const outB = new Uint8Array(data.length);
      const tagA = new Uint8Array(16);
      const tagB = new Uint8Array(16);
      a.sealInto(nonce, data, outA, tagA, ad);
      b.sealInto(nonce, data, outB, tagB, ad);
      assert.deepEqual(outA, outB);
      assert.deepEqual(tagA, tagB);
      const back = new Uint8Array(data.length);
      assert.equal(openA.openInto(nonce, outB, tagB, back, ad), true);
      assert.deepEqual(back, data);
    }
    a.dispose();
    b.dispose();
    openA.dispose();
  }
});
