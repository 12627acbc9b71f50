/**
 * The transforms Weft speaks, their key and ICV sizes, and proposals written the way strongSwan and most
 * firewall vendors write them ("aes256gcm16-prfsha256-x25519", "aes128-sha256-modp2048", "aes128-sha256-esn").
 * A proposal here is a list of transforms of several types; an IKE proposal needs ENCR, PRF, DH and (for
 * non-AEAD ciphers) INTEG; an ESP proposal needs ENCR, ESN and (non-AEAD) INTEG (RFC 7296 §3.3.3).
 */
import { DH_GROUP, ENCR, ESN, INTEG, PRF, TRANSFORM_TYPE } from './constants.js';
import { LEGACY_GROUPS } from './dh.js';
import type { Transform } from './messages.js';

export interface EncrSuite {
  readonly id: number;
  readonly keyBits: number;
  /** Key bytes taken from the key stream: the cipher key plus, for the AEADs, the 4-byte salt. */
  readonly keymatLength: number;
  readonly aead: boolean;
  /** IV bytes carried in each SK payload (RFC 3602 §3: 16; RFC 5282 §3.1 / RFC 7634 §2: 8). */
  readonly ivLength: number;
  /** ICV length for the AEADs (16); 0 for CBC, whose ICV comes from the integrity transform. */
  readonly tagLength: number;
}

export interface IntegSuite {
  readonly id: number;
  readonly hash: string;
  readonly keyLength: number;
  readonly icvLength: number;
}

export function encrSuite(id: number, keyBits: number | null): EncrSuite | null {
  switch (id) {
    case ENCR.AES_CBC:
      if (keyBits !== 128 && keyBits !== 192 && keyBits !== 256) return null;
      return { id, keyBits, keymatLength: keyBits / 8, aead: false, ivLength: 16, tagLength: 0 };
    case ENCR.AES_GCM_16:
      if (keyBits !== 128 && keyBits !== 192 && keyBits !== 256) return null;
      return { id, keyBits, keymatLength: keyBits / 8 + 4, aead: true, ivLength: 8, tagLength: 16 };
    case ENCR.CHACHA20_POLY1305:
      // RFC 7634 §2: fixed 256-bit key; a Key Length attribute must not be sent.
      if (keyBits !== null && keyBits !== 256) return null;
      return { id, keyBits: 256, keymatLength: 36, aead: true, ivLength: 8, tagLength: 16 };
    default:
      return null;
  }
}

const INTEGS: Record<number, IntegSuite> = {
  [INTEG.HMAC_SHA1_96]: { id: INTEG.HMAC_SHA1_96, hash: 'sha1', keyLength: 20, icvLength: 12 },
  [INTEG.HMAC_SHA2_256_128]: { id: INTEG.HMAC_SHA2_256_128, hash: 'sha256', keyLength: 32, icvLength: 16 },
  [INTEG.HMAC_SHA2_384_192]: { id: INTEG.HMAC_SHA2_384_192, hash: 'sha384', keyLength: 48, icvLength: 24 },
  [INTEG.HMAC_SHA2_512_256]: { id: INTEG.HMAC_SHA2_512_256, hash: 'sha512', keyLength: 64, icvLength: 32 },
};

export function integSuite(id: number): IntegSuite | null {
  return INTEGS[id] ?? null;
}

// ---------------------------------------------------------------------------------------------------------------
// Names

const ENCR_NAMES: Record<string, [number, number | null]> = {
  aes128: [ENCR.AES_CBC, 128],
  aes192: [ENCR.AES_CBC, 192],
  aes256: [ENCR.AES_CBC, 256],
  aes128gcm16: [ENCR.AES_GCM_16, 128],
  aes192gcm16: [ENCR.AES_GCM_16, 192],
  aes256gcm16: [ENCR.AES_GCM_16, 256],
  chacha20poly1305: [ENCR.CHACHA20_POLY1305, null],
};
const INTEG_NAMES: Record<string, number> = {
  sha1: INTEG.HMAC_SHA1_96,
  sha256: INTEG.HMAC_SHA2_256_128,
  sha384: INTEG.HMAC_SHA2_384_192,
  sha512: INTEG.HMAC_SHA2_512_256,
};
const PRF_NAMES: Record<string, number> = {
  prfsha1: PRF.HMAC_SHA1,
  prfsha256: PRF.HMAC_SHA2_256,
  prfsha384: PRF.HMAC_SHA2_384,
  prfsha512: PRF.HMAC_SHA2_512,
};
/** The PRF that goes with an integrity algorithm when a proposal names no PRF (strongSwan does the same). */
const PRF_FOR_INTEG: Record<number, number> = {
  [INTEG.HMAC_SHA1_96]: PRF.HMAC_SHA1,
  [INTEG.HMAC_SHA2_256_128]: PRF.HMAC_SHA2_256,
  [INTEG.HMAC_SHA2_384_192]: PRF.HMAC_SHA2_384,
  [INTEG.HMAC_SHA2_512_256]: PRF.HMAC_SHA2_512,
};
const DH_NAMES: Record<string, number> = {
  modp1024: DH_GROUP.MODP_1024,
  modp1536: DH_GROUP.MODP_1536,
  modp2048: DH_GROUP.MODP_2048,
  ecp256: DH_GROUP.ECP_256,
  ecp384: DH_GROUP.ECP_384,
  ecp521: DH_GROUP.ECP_521,
  x25519: DH_GROUP.CURVE25519,
  curve25519: DH_GROUP.CURVE25519,
};

export type ProposalKind = 'ike' | 'esp';
/**
 * What a proposal is matched for: IKE, ESP in IKE_AUTH (DH ignored, §1.2), or ESP in CREATE_CHILD_SA
 * ('esp-ke'), where a DH group is negotiated like any other transform and means PFS (§1.3.1).
 */
export type MatchKind = ProposalKind | 'esp-ke';

/**
 * Parses "aes256gcm16-prfsha256-x25519" (IKE) or "aes128-sha256-esn" (ESP). Returns an error string naming
 * the word it does not know or the transform type that is missing.
 */
export function parseProposal(
  text: string,
  kind: ProposalKind,
): { ok: true; value: Transform[] } | { ok: false; error: string } {
  const out: Transform[] = [];
  for (const word of text.trim().toLowerCase().split('-')) {
    const e = ENCR_NAMES[word];
    if (e) {
      out.push({ type: TRANSFORM_TYPE.ENCR, id: e[0], keyLength: e[1] });
      continue;
    }
    const i = INTEG_NAMES[word];
    if (i !== undefined) {
      out.push({ type: TRANSFORM_TYPE.INTEG, id: i, keyLength: null });
      continue;
    }
    const p = PRF_NAMES[word];
    if (p !== undefined && kind === 'ike') {
      out.push({ type: TRANSFORM_TYPE.PRF, id: p, keyLength: null });
      continue;
    }
    const d = DH_NAMES[word];
    if (d !== undefined) {
      out.push({ type: TRANSFORM_TYPE.DH, id: d, keyLength: null });
      continue;
    }
    if ((word === 'esn' || word === 'noesn') && kind === 'esp') {
      out.push({ type: TRANSFORM_TYPE.ESN, id: word === 'esn' ? ESN.EXTENDED : ESN.NONE, keyLength: null });
      continue;
    }
    return { ok: false, error: `unknown algorithm "${word}" in ${kind} proposal "${text}"` };
  }
  const has = (t: number) => out.some((x) => x.type === t);
  if (!has(TRANSFORM_TYPE.ENCR))
    return { ok: false, error: `${kind} proposal "${text}" has no encryption algorithm` };
  const aead = out.some((x) => x.type === TRANSFORM_TYPE.ENCR && encrSuite(x.id, x.keyLength)?.aead === true);
  if (!aead && !has(TRANSFORM_TYPE.INTEG))
    return { ok: false, error: `${kind} proposal "${text}" needs an integrity algorithm` };
  if (aead && has(TRANSFORM_TYPE.INTEG))
    return {
      ok: false,
      error: `${kind} proposal "${text}" combines an AEAD cipher with an integrity algorithm`,
    };
  if (kind === 'ike') {
    if (!has(TRANSFORM_TYPE.PRF)) {
      const integ = out.filter((x) => x.type === TRANSFORM_TYPE.INTEG);
      if (integ.length === 0)
        return { ok: false, error: `ike proposal "${text}" needs a PRF (e.g. prfsha256)` };
      for (const t of integ)
        out.push({ type: TRANSFORM_TYPE.PRF, id: PRF_FOR_INTEG[t.id]!, keyLength: null });
    }
    if (!has(TRANSFORM_TYPE.DH)) return { ok: false, error: `ike proposal "${text}" needs a DH group` };
  } else if (!has(TRANSFORM_TYPE.ESN)) {
    out.push({ type: TRANSFORM_TYPE.ESN, id: ESN.NONE, keyLength: null });
  }
  return { ok: true, value: out };
}

function nameOf(t: Transform): string {
  const find = (table: Record<string, number>) => Object.keys(table).find((k) => table[k] === t.id);
  switch (t.type) {
    case TRANSFORM_TYPE.ENCR:
      return (
        Object.keys(ENCR_NAMES).find((k) => {
          const e = ENCR_NAMES[k]!;
          return e[0] === t.id && (e[1] === t.keyLength || (e[1] === null && t.keyLength === null));
        }) ?? `encr${t.id}${t.keyLength === null ? '' : `/${t.keyLength}`}`
      );
    case TRANSFORM_TYPE.INTEG:
      return find(INTEG_NAMES) ?? `integ${t.id}`;
    case TRANSFORM_TYPE.PRF:
      return find(PRF_NAMES) ?? `prf${t.id}`;
    case TRANSFORM_TYPE.DH:
      return find(DH_NAMES) ?? `dh${t.id}`;
    case TRANSFORM_TYPE.ESN:
      return t.id === ESN.EXTENDED ? 'esn' : t.id === ESN.NONE ? 'noesn' : `esn${t.id}`;
    default:
      return `t${t.type}.${t.id}`;
  }
}

/** "aes256gcm16-prfsha256-x25519", in the order ENCR, INTEG, PRF, DH, ESN; several of a kind joined with '/'. */
export function formatProposal(transforms: readonly Transform[]): string {
  const parts: string[] = [];
  for (const type of [
    TRANSFORM_TYPE.ENCR,
    TRANSFORM_TYPE.INTEG,
    TRANSFORM_TYPE.PRF,
    TRANSFORM_TYPE.DH,
    TRANSFORM_TYPE.ESN,
  ]) {
    const names = transforms.filter((t) => t.type === type).map(nameOf);
    if (names.length > 0) parts.push(names.join('/'));
  }
  return parts.join('-');
}

export function formatProposals(list: readonly (readonly Transform[])[]): string {
  return list.length === 0 ? '(none)' : list.map(formatProposal).join(', ');
}

// ---------------------------------------------------------------------------------------------------------------
// Selection

/** One transform of each type: what both sides agreed on. */
export interface Chosen {
  readonly encr: Transform;
  readonly integ: Transform | null;
  readonly prf: Transform | null;
  readonly dh: Transform | null;
  readonly esn: Transform | null;
}

function same(a: Transform, b: Transform): boolean {
  return a.type === b.type && a.id === b.id && a.keyLength === b.keyLength;
}

/**
 * Matches one offered proposal against one of ours (RFC 7296 §2.7, §3.3.6): for every transform type that
 * either side lists, the first offered transform we also list; a type only one side lists fails, except DH
 * in an ESP proposal of IKE_AUTH (§1.2: the first CHILD SA takes no DH, so it is ignored). `dhFilter`
 * restricts the DH choice (the group the peer's KE payload already used).
 */
export function matchProposal(
  offered: readonly Transform[],
  ours: readonly Transform[],
  kind: MatchKind,
  dhFilter?: number,
): Chosen | null {
  const pick = (type: number): Transform | null | undefined => {
    const theirs = offered.filter((t) => t.type === type);
    const mine = ours.filter((t) => t.type === type);
    if (kind === 'esp' && type === TRANSFORM_TYPE.DH) return null;
    if (theirs.length === 0 && mine.length === 0) return null;
    for (const t of theirs) {
      if (type === TRANSFORM_TYPE.DH && dhFilter !== undefined && t.id !== dhFilter) continue;
      if (mine.some((m) => same(m, t))) return t;
    }
    return undefined;
  };
  const encr = pick(TRANSFORM_TYPE.ENCR);
  const integ = pick(TRANSFORM_TYPE.INTEG);
  const prf = pick(TRANSFORM_TYPE.PRF);
  const dh = pick(TRANSFORM_TYPE.DH);
  const esn = pick(TRANSFORM_TYPE.ESN);
  if (!encr || integ === undefined || prf === undefined || dh === undefined || esn === undefined) return null;
  if (offered.some((t) => t.type > TRANSFORM_TYPE.ESN)) return null;
  const suite = encrSuite(encr.id, encr.keyLength);
  if (!suite) return null;
  if (suite.aead !== (integ === null)) return null;
  if (kind === 'ike' && (prf === null || dh === null)) return null;
  if (kind !== 'ike' && esn === null) return null;
  return { encr, integ, prf, dh, esn };
}

export function chosenTransforms(c: Chosen): Transform[] {
  return [c.encr, c.integ, c.prf, c.dh, c.esn].filter((t): t is Transform => t !== null);
}

/**
 * When a peer's proposals name DH groups 2 or 5 and ours do not, the words a NO_PROPOSAL_CHOSEN log line ends
 * with so the operator knows what to change (" (modp1024 is a legacy DH group: ...)"); '' otherwise.
 */
export function legacyGroupHint(
  offered: readonly (readonly Transform[])[],
  ours: readonly (readonly Transform[])[],
): string {
  const legacy = (list: readonly (readonly Transform[])[]) =>
    new Set(
      list
        .flat()
        .filter((t) => t.type === TRANSFORM_TYPE.DH && LEGACY_GROUPS.has(t.id))
        .map(nameOf),
    );
  const theirs = legacy(offered);
  if (theirs.size === 0 || legacy(ours).size > 0) return '';
  const names = [...theirs].join(' and ');
  const many = theirs.size > 1;
  return ` (${names} ${many ? 'are legacy DH groups' : 'is a legacy DH group'}: the site accepts ${many ? 'them' : 'it'} only with allowLegacyGroups)`;
}
