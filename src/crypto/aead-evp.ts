/**
 * Keyed AEAD contexts for the data planes that negotiate their cipher (OpenVPN's data channel, ESP):
 * AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305 with a 96-bit nonce and a 16-byte tag.
 *
 * One context holds one key for one direction, set once: the AES key schedule (and its GHASH tables) is
 * computed when the key is installed, not per packet. A packet is then four calls on that context: set the
 * nonce (EVP_CipherInit_ex with no cipher and no key keeps both), feed the associated data, the data, and
 * finish (on decryption, after handing over the expected tag). Output goes straight into the caller's buffer,
 * and the tag is separate from the ciphertext because the protocols place it differently (OpenVPN before the
 * ciphertext, ESP after it).
 *
 * Backends, the first that serves the cipher of (`WEFT_CRYPTO=sodium|openssl|node` starts the search there):
 *   1. libsodium (aead-keyed-sodium.ts): one FFI call per packet, for AES-256-GCM (with AES-NI) and
 *      ChaCha20-Poly1305. On an idle tunnel, where every packet finds the caches cold, the number of FFI
 *      calls is what the per-packet latency pays for. Where EVP is there too, a key holds both and sends
 *      each packet by size (AEAD_SPLIT_BYTES): small ones to libsodium, large ones to EVP, whose stitched
 *      AES-GCM is quicker per byte than libsodium 1.0.18's once the five calls are paid for.
 *   2. The OpenSSL the node binary exports, through koffi (as in aead-openssl.ts): five calls per packet on a
 *      context keyed once; the only native path for AES-128-GCM.
 *   3. node:crypto, which builds a cipher object per packet: slower, same results, held to the same vectors.
 */
import { createCipheriv, createDecipheriv, type CipherGCMTypes } from 'node:crypto';
import koffi from 'koffi';
import { createSodiumAeadKey } from './aead-keyed-sodium.js';

export type AeadName = 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305';
export type AeadDirection = 'seal' | 'open';

export const AEAD_NONCE_BYTES = 12;
export const AEAD_TAG_BYTES = 16;

export const AEAD_KEY_BYTES: Readonly<Record<AeadName, number>> = {
  'aes-128-gcm': 16,
  'aes-256-gcm': 32,
  'chacha20-poly1305': 32,
};

export interface AeadKey {
  readonly name: AeadName;
  readonly direction: AeadDirection;
  /**
   * Which implementation serves this key: 'libsodium-ffi', 'openssl-ffi', 'node', or
   * 'libsodium-ffi+openssl-ffi' (split by size).
   */
  readonly backend: string;
  /**
   * Encrypts `data` into `out` (at least data.length bytes; may be `data` itself) and writes the 16-byte tag
   * into `tag`. Only on a 'seal' key.
   */
  sealInto(nonce: Uint8Array, data: Uint8Array, out: Uint8Array, tag: Uint8Array, ad: Uint8Array): void;
  /**
   * Decrypts `ciphertext` into `out` (at least ciphertext.length bytes; may be `ciphertext` itself) if `tag`
   * verifies. Returns false otherwise, and then `out` holds garbage. Only on an 'open' key.
   */
  openInto(
    nonce: Uint8Array,
    ciphertext: Uint8Array,
    tag: Uint8Array,
    out: Uint8Array,
    ad: Uint8Array,
  ): boolean;
  /** Releases the native context; the key must not be used afterwards. */
  dispose(): void;
}

/** include/openssl/evp.h */
const EVP_CTRL_AEAD_GET_TAG = 0x10;
const EVP_CTRL_AEAD_SET_TAG = 0x11;

type CipherInit = (
  ctx: unknown,
  cipher: unknown,
  impl: null,
  key: Uint8Array | null,
  iv: Uint8Array | null,
  enc: number,
) => number;

interface Evp {
  readonly ctxNew: () => unknown;
  readonly ctxFree: (ctx: unknown) => void;
  readonly ciphers: Readonly<Record<AeadName, unknown>>;
  readonly init: CipherInit;
  readonly update: (
    ctx: unknown,
    out: Uint8Array | null,
    outl: Int32Array,
    input: Uint8Array,
    inl: number,
  ) => number;
  readonly final: (ctx: unknown, out: Uint8Array, outl: Int32Array) => number;
  readonly ctrl: (ctx: unknown, type: number, arg: number, ptr: Uint8Array) => number;
}

let evpCache: Evp | null | undefined;

function evp(): Evp | null {
  if (evpCache !== undefined) return evpCache;
  evpCache = null;
  try {
    const lib = koffi.load(null);
    const cipher = (name: string): unknown => (lib.func(`void *${name}(void)`) as () => unknown)();
    const ciphers = {
      'aes-128-gcm': cipher('EVP_aes_128_gcm'),
      'aes-256-gcm': cipher('EVP_aes_256_gcm'),
      'chacha20-poly1305': cipher('EVP_chacha20_poly1305'),
    };
    if (!ciphers['aes-128-gcm'] || !ciphers['aes-256-gcm'] || !ciphers['chacha20-poly1305']) return null;
    evpCache = {
      ctxNew: lib.func('void *EVP_CIPHER_CTX_new(void)') as () => unknown,
      ctxFree: lib.func('void EVP_CIPHER_CTX_free(void *ctx)') as (ctx: unknown) => void,
      ciphers,
      init: lib.func(
        'int EVP_CipherInit_ex(void *ctx, void *cipher, void *impl, const uint8_t *key, const uint8_t *iv, int enc)',
      ) as CipherInit,
      update: lib.func(
        'int EVP_CipherUpdate(void *ctx, uint8_t *out, int *outl, const uint8_t *in, int inl)',
      ) as Evp['update'],
      final: lib.func('int EVP_CipherFinal_ex(void *ctx, uint8_t *out, int *outl)') as Evp['final'],
      ctrl: lib.func('int EVP_CIPHER_CTX_ctrl(void *ctx, int type, int arg, uint8_t *ptr)') as Evp['ctrl'],
    };
  } catch {
    evpCache = null;
  }
  return evpCache;
}

function checkKey(name: AeadName, key: Uint8Array): void {
  const want = AEAD_KEY_BYTES[name];
  if (want === undefined) throw new RangeError(`unknown AEAD ${String(name)}`);
  if (key.length !== want) throw new RangeError(`${name} takes a ${want}-byte key, got ${key.length}`);
}

const FINAL_SCRATCH = new Uint8Array(32);

function evpKey(api: Evp, name: AeadName, key: Uint8Array, direction: AeadDirection): AeadKey {
  const ctx = api.ctxNew();
  if (!ctx) throw new Error('EVP_CIPHER_CTX_new failed');
  const enc = direction === 'seal' ? 1 : 0;
  if (api.init(ctx, api.ciphers[name], null, key, null, enc) !== 1) {
    api.ctxFree(ctx);
    throw new Error(`EVP_CipherInit_ex(${name}) failed`);
  }
  const outl = new Int32Array(1);
  let live = true;
  return {
    name,
    direction,
    backend: 'openssl-ffi',
    sealInto(nonce, data, out, tag, ad) {
      if (!live || enc !== 1) throw new Error(`${name}: sealInto on a ${live ? direction : 'disposed'} key`);
      if (api.init(ctx, null, null, null, nonce, 1) !== 1) throw new Error('EVP_CipherInit_ex failed');
      if (ad.length > 0) api.update(ctx, null, outl, ad, ad.length);
      if (data.length > 0) api.update(ctx, out, outl, data, data.length);
      api.final(ctx, FINAL_SCRATCH, outl);
      api.ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, AEAD_TAG_BYTES, tag);
    },
    openInto(nonce, ciphertext, tag, out, ad) {
      if (!live || enc !== 0) throw new Error(`${name}: openInto on a ${live ? direction : 'disposed'} key`);
      if (tag.length !== AEAD_TAG_BYTES || out.length < ciphertext.length) return false;
      if (api.init(ctx, null, null, null, nonce, 0) !== 1) return false;
      if (ad.length > 0) api.update(ctx, null, outl, ad, ad.length);
      if (ciphertext.length > 0) api.update(ctx, out, outl, ciphertext, ciphertext.length);
      api.ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, AEAD_TAG_BYTES, tag);
      return api.final(ctx, FINAL_SCRATCH, outl) === 1;
    },
    dispose() {
      if (!live) return;
      live = false;
      api.ctxFree(ctx);
    },
  };
}

function nodeKey(name: AeadName, keyIn: Uint8Array, direction: AeadDirection): AeadKey {
  const key = Uint8Array.from(keyIn);
  const options = { authTagLength: AEAD_TAG_BYTES };
  return {
    name,
    direction,
    backend: 'node',
    sealInto(nonce, data, out, tag, ad) {
      if (direction !== 'seal') throw new Error(`${name}: sealInto on an open key`);
      const cipher = createCipheriv(name as CipherGCMTypes, key, nonce, options);
      cipher.setAAD(ad, { plaintextLength: data.length });
      const body = cipher.update(data);
      cipher.final();
      out.set(body);
      tag.set(cipher.getAuthTag());
    },
    openInto(nonce, ciphertext, tag, out, ad) {
      if (direction !== 'open') throw new Error(`${name}: openInto on a seal key`);
      if (tag.length !== AEAD_TAG_BYTES || out.length < ciphertext.length) return false;
      try {
        const decipher = createDecipheriv(name as CipherGCMTypes, key, nonce, options);
        decipher.setAAD(ad, { plaintextLength: ciphertext.length });
        decipher.setAuthTag(tag);
        const body = decipher.update(ciphertext);
        decipher.final();
        out.set(body);
        return true;
      } catch {
        return false;
      }
    },
    dispose() {
      key.fill(0);
    },
  };
}

/**
 * A context holding `key` for one direction, from the first backend that serves `name` (see the top of this
 * file). Throws RangeError for a key of the wrong length (a programming error: keys come from the handshake
 * at their negotiated size).
 */
export function createAeadKey(name: AeadName, key: Uint8Array, direction: AeadDirection): AeadKey {
  checkKey(name, key);
  const wanted = process.env.WEFT_CRYPTO;
  const api = wanted === 'node' ? null : evp();
  if (wanted !== 'openssl' && wanted !== 'node') {
    const sodium = createSodiumAeadKey(name, key, direction);
    if (sodium) return api ? splitKey(sodium, evpKey(api, name, key, direction)) : sodium;
  }
  return api ? evpKey(api, name, key, direction) : nodeKey(name, key, direction);
}

/**
 * Packets with fewer bytes of data than this go to libsodium, the others to EVP. Measured with
 * bench/aead-cold.ts (back to back, AES-256-GCM): libsodium ahead at 256 bytes (1.3 µs against 2.4), level
 * around 768, EVP ahead at 1400 (3.3 µs against 5.3). Pings, ACKs and keepalives are far below it.
 */
export const AEAD_SPLIT_BYTES = 768;

/** One key, two implementations of the same cipher (identical output), chosen per packet by its length. */
function splitKey(small: AeadKey, large: AeadKey): AeadKey {
  return {
    name: small.name,
    direction: small.direction,
    backend: `${small.backend}+${large.backend}`,
    sealInto(nonce, data, out, tag, ad) {
      (data.length < AEAD_SPLIT_BYTES ? small : large).sealInto(nonce, data, out, tag, ad);
    },
    openInto(nonce, ciphertext, tag, out, ad) {
      return (ciphertext.length < AEAD_SPLIT_BYTES ? small : large).openInto(nonce, ciphertext, tag, out, ad);
    },
    dispose() {
      small.dispose();
      large.dispose();
    },
  };
}

/** Always through OpenSSL's EVP interface, or null where the node binary does not export it (tests, benches). */
export function createEvpAeadKey(name: AeadName, key: Uint8Array, direction: AeadDirection): AeadKey | null {
  checkKey(name, key);
  const api = evp();
  return api ? evpKey(api, name, key, direction) : null;
}

/** Always through libsodium, or null where it does not serve `name` (tests, benches). */
export function createLibsodiumAeadKey(
  name: AeadName,
  key: Uint8Array,
  direction: AeadDirection,
): AeadKey | null {
  checkKey(name, key);
  return createSodiumAeadKey(name, key, direction);
}

/** The same, always through node:crypto (for tests that hold both backends to the same vectors). */
export function createNodeAeadKey(name: AeadName, key: Uint8Array, direction: AeadDirection): AeadKey {
  checkKey(name, key);
  return nodeKey(name, key, direction);
}
