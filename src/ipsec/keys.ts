/**
 * Key derivation (RFC 7296 §2.14, §2.17):
 *   SKEYSEED = prf(Ni | Nr, g^ir)
 *   {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
 *   KEYMAT = prf+(SK_d, Ni | Nr) for the CHILD SA of IKE_AUTH, taken initiator-to-responder first, each
 *   direction's encryption key before its integrity key.
 * CREATE_CHILD_SA (§1.3, §2.17, §2.18):
 *   KEYMAT = prf+(SK_d, g^ir (new) | Ni | Nr) for a CHILD SA with PFS, the nonces being the exchange's own;
 *   SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) for a rekeyed IKE SA, with the old SA's PRF, then the
 *   same prf+ expansion as above with the new SPIs and the new SA's PRF.
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
  return expandIkeKeys(id, encr, integ, skeyseed(id, ni, nr, gir), ni, nr, spiI, spiR);
}

/** §2.18: the keys of an IKE SA created by rekeying one whose PRF is `oldPrf` and whose SK_d is `oldSkD`. */
export function deriveRekeyedIkeKeys(
  oldPrf: PrfId,
  oldSkD: Buffer,
  id: PrfId,
  encr: EncrSuite,
  integ: IntegSuite | null,
  ni: Buffer,
  nr: Buffer,
  gir: Buffer,
  spiI: Buffer,
  spiR: Buffer,
): IkeKeys {
  const seed = prf(oldPrf, oldSkD, gir, ni, nr);
  return expandIkeKeys(id, encr, integ, seed, ni, nr, spiI, spiR);
}

function expandIkeKeys(
  id: PrfId,
  encr: EncrSuite,
  integ: IntegSuite | null,
  seed: Buffer,
  ni: Buffer,
  nr: Buffer,
  spiI: Buffer,
  spiR: Buffer,
): IkeKeys {
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
  gir: Buffer | null = null,
): ChildKeys {
  const e = encr.keymatLength;
  const a = integ?.keyLength ?? 0;
  const seed = gir === null ? Buffer.concat([ni, nr]) : Buffer.concat([gir, ni, nr]);
  const km = prfPlus(id, skD, seed, 2 * (e + a));
  const part = (start: number) => ({
    encryptionKey: Buffer.from(km.subarray(start, start + e)),
    integrityKey: integ ? Buffer.from(km.subarray(start + e, start + e + a)) : null,
  });
  return { initiatorToResponder: part(0), responderToInitiator: part(e + a) };
}
