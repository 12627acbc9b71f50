/**
 * What one IKE peer (a site) is configured with, checked once into the form the core works with. Checking
 * returns a typed error naming the field; nothing here throws.
 */
import type { IpsecMode, TrafficSelector } from './child-sa.js';
import { formatProposals, parseProposal } from './algorithms.js';
import { distinguishedName, type IkeIdentity } from './auth.js';
import { checkCertificateConfig, type CertificateConfig, type CheckedCertificate } from './cert-auth.js';
import {
  CHILD_REKEY_MS,
  DPD_INTERVAL_MS,
  HARD_LIFETIME_FACTOR,
  FRAGMENT_SIZE,
  FRAGMENT_SIZE_MIN,
  IKE_REKEY_MS,
  MAX_MESSAGE_LENGTH,
  NATT_KEEPALIVE_MS,
  PSK_MIN_LENGTH,
  RETRANSMIT_BASE,
  RETRANSMIT_TIMEOUT_MS,
  RETRANSMIT_TRIES,
  TRANSFORM_TYPE,
} from './constants.js';
import { isDhGroupId, LEGACY_GROUPS } from './dh.js';
import type { Transform } from './messages.js';

export interface IkePeerConfig {
  readonly localId: IkeIdentity;
  /**
   * The ID the peer must present; null accepts any ID that authenticates with the PSK or, with a certificate,
   * any ID its certificate holds.
   */
  readonly remoteId: IkeIdentity | null;
  /** The pre-shared key; exactly one of `psk` and `certificate` is set. */
  readonly psk?: string | Buffer;
  /**
   * Authenticate with a certificate (RFC 7427 signatures) instead of a PSK; the peer must then authenticate
   * with a certificate that chains to one of `trusted` and holds its ID (RFC 4945).
   */
  readonly certificate?: CertificateConfig;
  /** Accept a PSK under 20 characters (RFC 7296 §2.15 warns against short keys). */
  readonly forceShortPsk?: boolean;
  /** IKE proposals in preference order ("aes256gcm16-prfsha256-x25519"). */
  readonly ikeProposals: readonly string[];
  /** ESP proposals in preference order ("aes256gcm16", "aes128-sha256-esn"). */
  readonly espProposals: readonly string[];
  readonly localSelectors: readonly TrafficSelector[];
  readonly remoteSelectors: readonly TrafficSelector[];
  readonly mode: IpsecMode;
  /**
   * As initiator, negotiate one CHILD SA per (local selector, remote selector) pair of one address family
   * instead of one CHILD SA carrying them all: the first pair in IKE_AUTH, each other pair with its own
   * CREATE_CHILD_SA (RFC 7296 §1.3.1), for peers configured with one child per subnet pair.
   */
  readonly childPerSubnetPair?: boolean;
  /** Offer and accept DH groups 2 and 5. */
  readonly allowLegacyGroups?: boolean;
  /** Pretend a NAT is in the way (a fake NAT_DETECTION_SOURCE_IP) so the peer moves to UDP 4500 at once. */
  readonly forceEncapsulation?: boolean;
  readonly dpdIntervalMs?: number;
  readonly keepaliveIntervalMs?: number;
  readonly retransmitTimeoutMs?: number;
  readonly retransmitBase?: number;
  readonly retransmitTries?: number;
  /** Rekey the IKE SA after this long (minus up to 10% jitter); 0 never. Default 4 h. */
  readonly ikeRekeyMs?: number;
  /** Offer and accept IKE fragmentation (RFC 7383); default true. */
  readonly fragmentation?: boolean;
  /**
   * The largest IP datagram (IP and UDP headers included) one IKE message or fragment may fill once
   * fragmentation is agreed; default FRAGMENT_SIZE (1280).
   */
  readonly fragmentSize?: number;
  /** Rekey each CHILD SA after this long (minus up to 10% jitter); 0 never. Default 1 h. */
  readonly childRekeyMs?: number;
  /**
   * Delete the IKE SA this long after it was set up, even when its rekey failed (RFC 7296 §2.8); longer than
   * ikeRekeyMs. 0 never. Default 110% of ikeRekeyMs (strongSwan's life_time default), and at least the
   * retransmission budget (about 3 min with the default timeouts) beyond it.
   */
  readonly ikeHardLifetimeMs?: number;
  /** The same for each CHILD SA, against childRekeyMs. */
  readonly childHardLifetimeMs?: number;
}

export interface CheckedConfig {
  readonly localId: IkeIdentity;
  readonly remoteId: IkeIdentity | null;
  /** Empty when the site authenticates with `certificate`. */
  readonly psk: Buffer;
  readonly certificate: CheckedCertificate | null;
  readonly ikeProposals: readonly (readonly Transform[])[];
  readonly espProposals: readonly (readonly Transform[])[];
  readonly localSelectors: readonly TrafficSelector[];
  readonly remoteSelectors: readonly TrafficSelector[];
  readonly mode: IpsecMode;
  /** The selector pairs the initiator asks a CHILD SA for each, in order; one entry (all selectors) unless per pair. */
  readonly childSelectorPairs: readonly {
    readonly local: readonly TrafficSelector[];
    readonly remote: readonly TrafficSelector[];
  }[];
  /** One CHILD SA per subnet pair: a pair that loses its SA is asked for again while the IKE SA lives. */
  readonly childPerSubnetPair: boolean;
  readonly forceEncapsulation: boolean;
  readonly dpdIntervalMs: number;
  readonly keepaliveIntervalMs: number;
  readonly retransmitTimeoutMs: number;
  readonly retransmitBase: number;
  readonly retransmitTries: number;
  readonly ikeRekeyMs: number;
  readonly childRekeyMs: number;
  readonly ikeHardLifetimeMs: number;
  readonly childHardLifetimeMs: number;
  readonly fragmentation: boolean;
  readonly fragmentSize: number;
}

export type ConfigError = { readonly field: string; readonly message: string };

/** `now` (wall-clock milliseconds) is when a configured certificate must be valid. */
export function checkConfig(
  c: IkePeerConfig,
  now: number = Date.now(),
): { ok: true; value: CheckedConfig } | { ok: false; error: ConfigError } {
  for (const field of ['localId', 'remoteId'] as const) {
    const id = c[field];
    if (id?.type === 'der-asn1-dn' && distinguishedName(id.value) === null)
      return {
        ok: false,
        error: {
          field,
          message: `"${id.value}" is not a distinguished name ("CN=gw.example.net,O=Example")`,
        },
      };
  }
  if (c.psk !== undefined && c.certificate !== undefined)
    return {
      ok: false,
      error: { field: 'certificate', message: 'set either a pre-shared key or a certificate, not both' },
    };
  let certificate: CheckedCertificate | null = null;
  if (c.certificate !== undefined) {
    const cert = checkCertificateConfig(c.certificate, now);
    if (!cert.ok) return cert;
    certificate = cert.value;
  }
  const psk =
    c.psk === undefined
      ? Buffer.alloc(0)
      : typeof c.psk === 'string'
        ? Buffer.from(c.psk, 'utf8')
        : Buffer.from(c.psk);
  if (certificate === null && psk.length === 0)
    return {
      ok: false,
      error: {
        field: 'psk',
        message: c.psk === undefined ? 'no pre-shared key and no certificate' : 'the pre-shared key is empty',
      },
    };
  if (certificate === null && psk.length < PSK_MIN_LENGTH && c.forceShortPsk !== true) {
    return {
      ok: false,
      error: {
        field: 'psk',
        message: `the pre-shared key has ${psk.length} characters; at least ${PSK_MIN_LENGTH} are required unless forced`,
      },
    };
  }
  const lists: { ike: Transform[][]; esp: Transform[][] } = { ike: [], esp: [] };
  for (const kind of ['ike', 'esp'] as const) {
    const texts = kind === 'ike' ? c.ikeProposals : c.espProposals;
    if (texts.length === 0)
      return { ok: false, error: { field: `${kind}Proposals`, message: 'no proposals' } };
    for (const t of texts) {
      const p = parseProposal(t, kind);
      if (!p.ok) return { ok: false, error: { field: `${kind}Proposals`, message: p.error } };
      const dh = p.value.filter((x) => x.type === TRANSFORM_TYPE.DH);
      if (kind === 'ike' && dh.some((x) => !isDhGroupId(x.id)))
        return { ok: false, error: { field: 'ikeProposals', message: `unsupported DH group in "${t}"` } };
      if (dh.some((x) => LEGACY_GROUPS.has(x.id)) && c.allowLegacyGroups !== true) {
        return {
          ok: false,
          error: {
            field: `${kind}Proposals`,
            message: `"${t}" uses a legacy DH group (2 or 5); allow legacy groups to use it`,
          },
        };
      }
      lists[kind].push(p.value);
    }
  }
  if (c.localSelectors.length === 0 || c.remoteSelectors.length === 0) {
    return {
      ok: false,
      error: {
        field: c.localSelectors.length === 0 ? 'localSelectors' : 'remoteSelectors',
        message: 'no traffic selectors',
      },
    };
  }
  const childSelectorPairs: { local: TrafficSelector[]; remote: TrafficSelector[] }[] = [];
  if (c.childPerSubnetPair === true) {
    for (const l of c.localSelectors)
      for (const r of c.remoteSelectors)
        if (l.family === r.family) childSelectorPairs.push({ local: [l], remote: [r] });
    if (childSelectorPairs.length === 0)
      return {
        ok: false,
        error: {
          field: 'childPerSubnetPair',
          message: 'no local and remote subnet of one address family to pair',
        },
      };
  } else childSelectorPairs.push({ local: [...c.localSelectors], remote: [...c.remoteSelectors] });
  for (const field of ['ikeRekeyMs', 'childRekeyMs'] as const) {
    const v = c[field];
    if (v !== undefined && !(Number.isFinite(v) && v >= 0))
      return { ok: false, error: { field, message: 'a lifetime is a number of milliseconds, 0 or more' } };
  }
  const hard: Record<'ike' | 'child', number> = { ike: 0, child: 0 };
  // How long an unanswered request is retransmitted: timeout * base^k for k = 0..tries.
  let budget = 0;
  for (let k = 0; k <= (c.retransmitTries ?? RETRANSMIT_TRIES); k++)
    budget +=
      (c.retransmitTimeoutMs ?? RETRANSMIT_TIMEOUT_MS) * Math.pow(c.retransmitBase ?? RETRANSMIT_BASE, k);
  budget = Math.round(budget);
  for (const kind of ['ike', 'child'] as const) {
    const field = `${kind}HardLifetimeMs` as const;
    const rekey = c[`${kind}RekeyMs`] ?? (kind === 'ike' ? IKE_REKEY_MS : CHILD_REKEY_MS);
    const v = c[field];
    if (v === undefined) {
      hard[kind] = rekey > 0 ? rekey + Math.max(Math.round(rekey * (HARD_LIFETIME_FACTOR - 1)), budget) : 0;
      continue;
    }
    if (!(Number.isFinite(v) && v >= 0))
      return { ok: false, error: { field, message: 'a lifetime is a number of milliseconds, 0 or more' } };
    if (v > 0 && rekey > 0 && v <= rekey)
      return {
        ok: false,
        error: {
          field,
          message: `the hard lifetime (${v} ms) must be longer than the rekey time (${rekey} ms)`,
        },
      };
    hard[kind] = v;
  }
  const fragmentSize = c.fragmentSize ?? FRAGMENT_SIZE;
  if (
    !Number.isInteger(fragmentSize) ||
    fragmentSize < FRAGMENT_SIZE_MIN ||
    fragmentSize > MAX_MESSAGE_LENGTH
  )
    return {
      ok: false,
      error: {
        field: 'fragmentSize',
        message: `a fragment size is a whole number of bytes from ${FRAGMENT_SIZE_MIN} to ${MAX_MESSAGE_LENGTH}`,
      },
    };
  return {
    ok: true,
    value: {
      localId: c.localId,
      remoteId: c.remoteId,
      psk,
      certificate,
      ikeProposals: lists.ike,
      espProposals: lists.esp,
      localSelectors: c.localSelectors,
      remoteSelectors: c.remoteSelectors,
      mode: c.mode,
      childSelectorPairs,
      childPerSubnetPair: c.childPerSubnetPair === true,
      forceEncapsulation: c.forceEncapsulation === true,
      dpdIntervalMs: c.dpdIntervalMs ?? DPD_INTERVAL_MS,
      keepaliveIntervalMs: c.keepaliveIntervalMs ?? NATT_KEEPALIVE_MS,
      retransmitTimeoutMs: c.retransmitTimeoutMs ?? RETRANSMIT_TIMEOUT_MS,
      retransmitBase: c.retransmitBase ?? RETRANSMIT_BASE,
      retransmitTries: c.retransmitTries ?? RETRANSMIT_TRIES,
      ikeRekeyMs: c.ikeRekeyMs ?? IKE_REKEY_MS,
      childRekeyMs: c.childRekeyMs ?? CHILD_REKEY_MS,
      ikeHardLifetimeMs: hard.ike,
      childHardLifetimeMs: hard.child,
      fragmentation: c.fragmentation !== false,
      fragmentSize,
    },
  };
}

export { formatProposals };
