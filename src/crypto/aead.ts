/**
 * AEAD constructions (WireGuard paper §5.4):
 * - AEAD(key, counter, plaintext, ad): ChaCha20-Poly1305 (RFC 8439) with a 96-bit nonce of 32 zero bits
 *   followed by the 64-bit little-endian counter.
 * - XAEAD(key, nonce24, plaintext, ad): XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha), used only for cookie
 *   replies.
 *
 * The ChaCha20-Poly1305 implementation sits behind `ChaChaPoly` so a faster backend can replace the
 * node:crypto one; every backend is held to the same vectors by the shared conformance test.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';

export const AEAD_TAG_LENGTH = 16;
export const AEAD_KEY_LENGTH = 32;
export const XAEAD_NONCE_LENGTH = 24;

export interface ChaChaPoly {
  readonly name: string;
  /** Returns ciphertext ‖ tag. */
  seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Uint8Array;
  /** Returns the plaintext, or null if the tag does not verify. */
  open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Uint8Array | null;
  /** Encrypts `data` in place and writes the 16-byte tag into `tag` (the transport hot path: no copies). */
  sealInPlace(key: Uint8Array, nonce: Uint8Array, data: Uint8Array, tag: Uint8Array, ad: Uint8Array): void;
  /**
   * Decrypts `sealed` (ciphertext ‖ tag) into `out` (at least sealed.length − 16 bytes); false if the tag
   * does not verify (then `out` holds garbage and must not be used).
   */
  openInto(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, out: Uint8Array, ad: Uint8Array): boolean;
}

/** Encrypts `data` into `out` (the same length; may be `data` itself) and writes the tag into `tag`. */
export type SealInto = (
  key: Uint8Array,
  nonce: Uint8Array,
  data: Uint8Array,
  out: Uint8Array,
  tag: Uint8Array,
  ad: Uint8Array,
) => void;

/** A ChaChaPoly from a backend's two primitives (the FFI backends): the allocating forms wrap them. */
export function chachaPolyFrom(
  name: string,
  sealInto: SealInto,
  openInto: ChaChaPoly['openInto'],
): ChaChaPoly {
  return {
    name,
    seal(key, nonce, plaintext, ad) {
      const out = new Uint8Array(plaintext.length + AEAD_TAG_LENGTH);
      sealInto(key, nonce, plaintext, out, out.subarray(plaintext.length), ad);
      return out;
    },
    open(key, nonce, sealed, ad) {
      if (sealed.length < AEAD_TAG_LENGTH) return null;
      const out = new Uint8Array(sealed.length - AEAD_TAG_LENGTH);
      return openInto(key, nonce, sealed, out, ad) ? out : null;
    },
    sealInPlace(key, nonce, data, tag, ad) {
      sealInto(key, nonce, data, data, tag, ad);
    },
    openInto,
  };
}

/** ChaCha20-Poly1305 through node:crypto (OpenSSL). */
export const nodeChaChaPoly: ChaChaPoly = {
  name: 'node:crypto',
  seal(key, nonce, plaintext, ad) {
    const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_LENGTH });
    if (ad.length > 0) c.setAAD(ad, { plaintextLength: plaintext.length });
    const head = c.update(plaintext);
    c.final();
    const out = new Uint8Array(head.length + AEAD_TAG_LENGTH);
    out.set(head, 0);
    out.set(c.getAuthTag(), head.length);
    return out;
  },
  open(key, nonce, sealed, ad) {
    if (sealed.length < AEAD_TAG_LENGTH) return null;
    const body = sealed.subarray(0, sealed.length - AEAD_TAG_LENGTH);
    const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_LENGTH });
    d.setAuthTag(sealed.subarray(sealed.length - AEAD_TAG_LENGTH));
    if (ad.length > 0) d.setAAD(ad, { plaintextLength: body.length });
    const out = d.update(body);
    try {
      d.final();
    } catch {
      return null;
    }
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  },
  sealInPlace(key, nonce, data, tag, ad) {
    const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_LENGTH });
    if (ad.length > 0) c.setAAD(ad, { plaintextLength: data.length });
    data.set(c.update(data));
    c.final();
    tag.set(c.getAuthTag());
  },
  openInto(key, nonce, sealed, out, ad) {
    const plain = this.open(key, nonce, sealed, ad);
    if (!plain || out.length < plain.length) return false;
    out.set(plain);
    return true;
  },
};

/** Writes the nonce for `counter` into a 12-byte buffer (see counterNonce), without allocating. */
export function writeCounterNonce(n: Uint8Array, counter: number): Uint8Array {
  n[0] = n[1] = n[2] = n[3] = 0;
  const lo = counter >>> 0;
  const hi = Math.floor(counter / 0x1_0000_0000);
  n[4] = lo & 0xff;
  n[5] = (lo >>> 8) & 0xff;
  n[6] = (lo >>> 16) & 0xff;
  n[7] = lo >>> 24;
  n[8] = hi & 0xff;
  n[9] = (hi >>> 8) & 0xff;
  n[10] = (hi >>> 16) & 0xff;
  n[11] = hi >>> 24;
  return n;
}

/** The 96-bit nonce for a 64-bit counter: 4 zero bytes then the counter, little-endian. */
export function counterNonce(counter: number): Uint8Array {
  return writeCounterNonce(new Uint8Array(12), counter);
}

/** XChaCha20-Poly1305 seal: ciphertext ‖ tag. */
export function xaeadSeal(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  ad: Uint8Array,
): Uint8Array {
  return xchacha20poly1305(key, nonce, ad).encrypt(plaintext);
}

/** XChaCha20-Poly1305 open; null if the tag does not verify. */
export function xaeadOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  sealed: Uint8Array,
  ad: Uint8Array,
): Uint8Array | null {
  try {
    return xchacha20poly1305(key, nonce, ad).decrypt(sealed);
  } catch {
    return null;
  }
}
