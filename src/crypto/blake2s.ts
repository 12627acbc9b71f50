/**
 * The BLAKE2s constructions WireGuard uses (WireGuard paper §5.4, "Symbols and Functions"):
 * HASH (BLAKE2s-256), MAC (keyed BLAKE2s-128), HMAC over BLAKE2s-256, and the HKDF-style KDF_n.
 */
import { createHash, createHmac } from 'node:crypto';
import { blake2s } from '@noble/hashes/blake2.js';

/** HASH(input): unkeyed BLAKE2s with a 32-byte digest over the concatenation of the parts. */
export function hash(...parts: readonly Uint8Array[]): Uint8Array {
  const h = createHash('blake2s256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/** MAC(key, input): keyed BLAKE2s with a 16-byte digest (used for mac1, mac2 and the cookie). */
export function mac(key: Uint8Array, input: Uint8Array): Uint8Array {
  return blake2s(input, { key, dkLen: 16 });
}

/** HMAC(key, input) with BLAKE2s-256 as the hash (RFC 2104; block size 64). */
export function hmac(key: Uint8Array, ...parts: readonly Uint8Array[]): Uint8Array {
  const h = createHmac('blake2s256', key);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

const ONE = Uint8Array.of(1);
const TWO = Uint8Array.of(2);
const THREE = Uint8Array.of(3);

/**
 * KDF_n(key, input) from the paper: τ0 = HMAC(key, input), τ1 = HMAC(τ0, 0x1),
 * τi = HMAC(τ0, τ(i-1) ‖ i). Returns τ1..τn.
 */
export function kdf1(key: Uint8Array, input: Uint8Array): Uint8Array {
  const prk = hmac(key, input);
  return hmac(prk, ONE);
}

export function kdf2(key: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array] {
  const prk = hmac(key, input);
  const t1 = hmac(prk, ONE);
  const t2 = hmac(prk, t1, TWO);
  return [t1, t2];
}

export function kdf3(key: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
  const prk = hmac(key, input);
  const t1 = hmac(prk, ONE);
  const t2 = hmac(prk, t1, TWO);
  const t3 = hmac(prk, t2, THREE);
  return [t1, t2, t3];
}
