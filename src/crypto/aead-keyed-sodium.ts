/**
 * Keyed AEAD contexts (the interface of aead-evp.ts) through libsodium, called with koffi: one FFI call per
 * packet, where OpenSSL's EVP interface needs five (nonce, AD, data, final, tag) on a reused context.
 *
 * Why: an idle tunnel carries a packet every few milliseconds, and each one finds the CPU's caches and branch
 * predictors cold. There every FFI crossing and every layer of EVP's provider dispatch costs microseconds, so
 * the number of calls, not the cipher, decides the per-packet latency. (Hot, both are on a par.)
 *
 * - AES-256-GCM: `crypto_aead_aes256gcm_beforenm` expands the key (round keys and GHASH powers) once into a
 *   state in native memory; each packet is one `…_encrypt_detached_afternm` / `…_decrypt_detached_afternm`.
 *   libsodium implements AES-GCM only with AES-NI and PCLMULQDQ (`crypto_aead_aes256gcm_is_available`);
 *   without them this backend offers no AES and the caller falls back to EVP.
 * - ChaCha20-Poly1305 (RFC 8439, 96-bit nonce): `crypto_aead_chacha20poly1305_ietf_encrypt_detached` /
 *   `…_decrypt_detached`, which take the key per call (ChaCha20 has no key schedule to keep).
 * - AES-128-GCM: libsodium has none; EVP serves it.
 *
 * Decryption verifies the tag before it returns success and clears the output on failure. The state holds
 * expanded key material: it is zeroed (sodium_memzero) before it is freed.
 */
import koffi from 'koffi';
import type { AeadDirection, AeadKey, AeadName } from './aead-evp.js';

/** The library's soname on Debian and most distributions. */
const LIBSODIUM = 'libsodium.so.23';
const TAG_BYTES = 16;
const NONCE_BYTES = 12;
/** crypto_aead_aes256gcm_state is declared CRYPTO_ALIGN(16); the AES-NI code uses aligned loads on it. */
const STATE_ALIGN = 16;

export type Encrypt<K> = (
  c: Uint8Array,
  mac: Uint8Array,
  maclen: null,
  m: Uint8Array,
  mlen: number,
  ad: Uint8Array | null,
  adlen: number,
  nsec: null,
  npub: Uint8Array,
  k: K,
) => number;

export type Decrypt<K> = (
  m: Uint8Array,
  nsec: null,
  c: Uint8Array,
  clen: number,
  mac: Uint8Array,
  ad: Uint8Array | null,
  adlen: number,
  npub: Uint8Array,
  k: K,
) => number;

interface Sodium {
  /** Null when libsodium has no AES-GCM on this CPU. */
  readonly aes: {
    readonly stateBytes: number;
    readonly alloc: (align: number, size: number) => unknown;
    readonly free: (p: unknown) => void;
    readonly memzero: (p: unknown, n: number) => void;
    readonly beforenm: (state: unknown, k: Uint8Array) => number;
    readonly encrypt: Encrypt<unknown>;
    readonly decrypt: Decrypt<unknown>;
  } | null;
  readonly chachaEncrypt: Encrypt<Uint8Array>;
  readonly chachaDecrypt: Decrypt<Uint8Array>;
}

let cache: Sodium | null | undefined;

function sodium(): Sodium | null {
  if (cache !== undefined) return cache;
  cache = null;
  try {
    const lib = koffi.load(LIBSODIUM);
    const init = lib.func('int sodium_init(void)') as () => number;
    if (init() < 0) return null;
    const chachaEncrypt = lib.func(
      'int crypto_aead_chacha20poly1305_ietf_encrypt_detached(uint8_t *c, uint8_t *mac, void *maclen, ' +
        'const uint8_t *m, uint64_t mlen, const uint8_t *ad, uint64_t adlen, const void *nsec, ' +
        'const uint8_t *npub, const uint8_t *k)',
    ) as Encrypt<Uint8Array>;
    const chachaDecrypt = lib.func(
      'int crypto_aead_chacha20poly1305_ietf_decrypt_detached(uint8_t *m, void *nsec, const uint8_t *c, ' +
        'uint64_t clen, const uint8_t *mac, const uint8_t *ad, uint64_t adlen, const uint8_t *npub, ' +
        'const uint8_t *k)',
    ) as Decrypt<Uint8Array>;
    let aes: Sodium['aes'] = null;
    const available = lib.func('int crypto_aead_aes256gcm_is_available(void)') as () => number;
    if (available() === 1) {
      const libc = koffi.load(null);
      aes = {
        stateBytes: (lib.func('size_t crypto_aead_aes256gcm_statebytes(void)') as () => number)(),
        alloc: libc.func('void *aligned_alloc(size_t alignment, size_t size)') as (
          a: number,
          s: number,
        ) => unknown,
        free: libc.func('void free(void *p)') as (p: unknown) => void,
        memzero: lib.func('void sodium_memzero(void *p, size_t n)') as (p: unknown, n: number) => void,
        beforenm: lib.func('int crypto_aead_aes256gcm_beforenm(void *state, const uint8_t *k)') as (
          state: unknown,
          k: Uint8Array,
        ) => number,
        encrypt: lib.func(
          'int crypto_aead_aes256gcm_encrypt_detached_afternm(uint8_t *c, uint8_t *mac, void *maclen, ' +
            'const uint8_t *m, uint64_t mlen, const uint8_t *ad, uint64_t adlen, const void *nsec, ' +
            'const uint8_t *npub, const void *state)',
        ) as Encrypt<unknown>,
        decrypt: lib.func(
          'int crypto_aead_aes256gcm_decrypt_detached_afternm(uint8_t *m, void *nsec, const uint8_t *c, ' +
            'uint64_t clen, const uint8_t *mac, const uint8_t *ad, uint64_t adlen, const uint8_t *npub, ' +
            'const void *state)',
        ) as Decrypt<unknown>,
      };
    }
    cache = { aes, chachaEncrypt, chachaDecrypt };
  } catch {
    cache = null;
  }
  return cache;
}

/**
 * libsodium's one-call ChaCha20-Poly1305 IETF functions (detached forms), or null when libsodium is not
 * installed or does not initialise. Shared with the WireGuard backend (aead-sodium.ts).
 */
export function sodiumChaCha(): { encrypt: Encrypt<Uint8Array>; decrypt: Decrypt<Uint8Array> } | null {
  const api = sodium();
  return api ? { encrypt: api.chachaEncrypt, decrypt: api.chachaDecrypt } : null;
}

/** Whether libsodium serves `name` here (loaded, and for AES-256-GCM: AES-NI and PCLMULQDQ present). */
export function sodiumServes(name: AeadName): boolean {
  const api = sodium();
  if (!api) return false;
  if (name === 'chacha20-poly1305') return true;
  if (name === 'aes-256-gcm') return api.aes !== null;
  return false;
}

function misuse(name: AeadName, direction: AeadDirection, live: boolean, call: string): Error {
  return new Error(`${name}: ${call} on a ${live ? direction : 'disposed'} key`);
}

/**
 * The AeadKey over one libsodium encrypt/decrypt pair and its key argument (the raw key, or the expanded AES
 * state); `wipe` clears that key material once, on dispose.
 */
function keyed<K>(
  name: AeadName,
  direction: AeadDirection,
  encrypt: Encrypt<K>,
  decrypt: Decrypt<K>,
  k: K,
  wipe: () => void,
): AeadKey {
  const seal = direction === 'seal';
  let live = true;
  return {
    name,
    direction,
    backend: 'libsodium-ffi',
    sealInto(nonce, data, out, tag, ad) {
      if (!live || !seal) throw misuse(name, direction, live, 'sealInto');
      if (nonce.length !== NONCE_BYTES || tag.length < TAG_BYTES || out.length < data.length)
        throw new RangeError(`${name}: a 12-byte nonce, a 16-byte tag and room for the output are needed`);
      const adOrNull = ad.length > 0 ? ad : null;
      if (encrypt(out, tag, null, data, data.length, adOrNull, ad.length, null, nonce, k) !== 0)
        throw new Error(`${name}: encryption failed`);
    },
    openInto(nonce, ciphertext, tag, out, ad) {
      if (!live || seal) throw misuse(name, direction, live, 'openInto');
      if (tag.length !== TAG_BYTES || nonce.length !== NONCE_BYTES || out.length < ciphertext.length)
        return false;
      const adOrNull = ad.length > 0 ? ad : null;
      return decrypt(out, null, ciphertext, ciphertext.length, tag, adOrNull, ad.length, nonce, k) === 0;
    },
    dispose() {
      if (!live) return;
      live = false;
      wipe();
    },
  };
}

/**
 * A libsodium context holding `key` (already length-checked) for one direction, or null when libsodium does
 * not serve `name` here.
 */
export function createSodiumAeadKey(
  name: AeadName,
  key: Uint8Array,
  direction: AeadDirection,
): AeadKey | null {
  const api = sodium();
  if (!api || !sodiumServes(name)) return null;
  if (name === 'chacha20-poly1305') {
    const k = Uint8Array.from(key);
    return keyed(name, direction, api.chachaEncrypt, api.chachaDecrypt, k, () => k.fill(0));
  }
  const aes = api.aes!;
  const state = aes.alloc(STATE_ALIGN, aes.stateBytes);
  if (!state) throw new Error('aligned_alloc failed');
  if (aes.beforenm(state, key) !== 0) {
    aes.free(state);
    throw new Error('crypto_aead_aes256gcm_beforenm failed');
  }
  return keyed(name, direction, aes.encrypt, aes.decrypt, state, () => {
    aes.memzero(state, aes.stateBytes);
    aes.free(state);
  });
}
