/**
 * Key derivation (RFC 7296 §2.14, §2.17):
 *   SKEYSEED = prf(Ni | Nr, g^ir)
 *   {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
 *   KEYMAT = prf+(SK_d, Ni | Nr) for the CHILD SA of IKE_AUTH, taken initiator-to-responder first, each
 *   direction's encryption key before its integrity key.
 */
import type { EncrSuite, IntegSuite } from './algorithms.js';
import { prf, prfLength, prfPlus, type PrfId } from './prf.js';
import type { SkKeys } from './sk.js';

export interface IkeKeys {
  readonly skD: Buffer;
  readonly skPi: Buffer;
  readonly skPr: Buffer;
  /** Protection of messages the original initiator sends (SK_ei, SK_ai) and the responder sends. */
  readonly initiator: SkKeys;
  readonly responder: SkKeys;
}

export function skeyseed(id: PrfId, ni: Buffer, nr: Buffer, gir: Buffer): Buffer {
  return prf(id, Buffer.concat([ni, nr]), gir);
}

export function deriveIkeKeys(
  id: PrfId,
  encr: EncrSuite,
  integ: IntegSuite | null,
  ni: Buffer,
  nr: Buffer,
  gir: Buffer,
  spiI: Buffer,
  spiR: Buffer,
): IkeKeys {
  const seed = skeyseed(id, ni, nr, gir);
  const p = prfLength(id);
  const a = integ?.keyLength ?? 0;
  const e = encr.keymatLength;
  const km = prfPlus(id, seed, Buffer.concat([ni, nr, spiI, spiR]), 3 * p + 2 * a + 2 * e);
  let o = 0;
  const take = (n: number) => {
    const b = Buffer.from(km.subarray(o, o + n));
    o += n;
    return b;
  };
  const skD = take(p);
  const skAi = take(a);
  const skAr = take(a);
  const skEi = take(e);
  const skEr = take(e);
  const skPi = take(p);
  const skPr = take(p);
  return {
    skD,
    skPi,
    skPr,
    initiator: { encr, integ, encrKey: skEi, integKey: integ ? skAi : null },
    responder: { encr, integ, encrKey: skEr, integKey: integ ? skAr : null },
  };
}

export interface ChildKeys {
  readonly initiatorToResponder: { readonly encryptionKey: Buffer; readonly integrityKey: Buffer | null };
  readonly responderToInitiator: { readonly encryptionKey: Buffer; readonly integrityKey: Buffer | null };
}

export function deriveChildKeys(
  id: PrfId,
  skD: Buffer,
  ni: Buffer,
  nr: Buffer,
  encr: EncrSuite,
  integ: IntegSuite | null,
): ChildKeys {
  const e = encr.keymatLength;
  const a = integ?.keyLength ?? 0;
  const km = prfPlus(id, skD, Buffer.concat([ni, nr]), 2 * (e + a));
  const part = (start: number) => ({
    encryptionKey: Buffer.from(km.subarray(start, start + e)),
    integrityKey: integ ? Buffer.from(km.subarray(start + e, start + e + a)) : null,
  });
  return { initiatorToResponder: part(0), responderToInitiator: part(e + a) };
}
