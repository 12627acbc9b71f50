/**
 * The IKEv2 pseudo-random functions (RFC 7296 §2.13, RFC 4868) and prf+, the expansion that turns one PRF
 * output into as many key bytes as the SA needs.
 */
import { createHmac } from 'node:crypto';

import { PRF } from './constants.js';

export type PrfId = (typeof PRF)[keyof typeof PRF];

const HASH: Record<PrfId, { name: string; length: number }> = {
  [PRF.HMAC_SHA1]: { name: 'sha1', length: 20 },
  [PRF.HMAC_SHA2_256]: { name: 'sha256', length: 32 },
  [PRF.HMAC_SHA2_384]: { name: 'sha384', length: 48 },
  [PRF.HMAC_SHA2_512]: { name: 'sha512', length: 64 },
};

export function isPrfId(id: number): id is PrfId {
  return Object.prototype.hasOwnProperty.call(HASH, id);
}

/** Output length in bytes; for the HMAC PRFs also the preferred key length (RFC 4868 §2.1.2). */
export function prfLength(id: PrfId): number {
  return HASH[id].length;
}

export function prf(id: PrfId, key: Uint8Array, ...data: Uint8Array[]): Buffer {
  const h = createHmac(HASH[id].name, key);
  for (const d of data) h.update(d);
  return h.digest();
}

/**
 * RFC 7296 §2.13: prf+ (K,S) = T1 | T2 | T3 | ..., where T1 = prf (K, S | 0x01) and Tn = prf (K, Tn-1 | S | n).
 * The counter is one octet, so at most 255 blocks can be produced.
 */
export function prfPlus(id: PrfId, key: Uint8Array, seed: Uint8Array, length: number): Buffer {
  const blocks: Buffer[] = [];
  let have = 0;
  let t: Buffer = Buffer.alloc(0);
  for (let n = 1; have < length; n++) {
    if (n > 255) throw new RangeError('prf+ cannot produce more than 255 blocks');
    t = prf(id, key, t, seed, Uint8Array.of(n));
    blocks.push(t);
    have += t.length;
  }
  return Buffer.concat(blocks).subarray(0, length);
}
