/**
 * IPsec sites as the operator configures them: checking a site's input into a SiteRecord, IKE identities in
 * their text form, and the SiteSpec the gateway runs. Every check throws a WeftError naming the field; the
 * proposal and pre-shared-key checks are the IKE core's own (src/ipsec/algorithms.ts, src/ipsec/config.ts),
 * so what the control plane accepts is exactly what the gateway can run.
 *
 * Checking a site, in order: name; remote address (`%any` or an address); identities; how it authenticates
 * (the pre-shared key, or our certificate, its key and the CAs trusted for the peer);
 * mode and subnets (canonical, no overlaps within a side, remote ones clear of the members' subnets, the
 * shared routes and every other site's remote subnets); proposals; lifetimes; liveness checks; start action;
 * groups.
 */
import { randomBytes } from 'node:crypto';
import {
  addressLength,
  formatAddress,
  formatPrefix,
  parseAddress,
  parsePrefix,
  prefixContains,
  type Prefix,
} from '../net/ip.js';
import { parseProposal } from '../ipsec/algorithms.js';
import type { IkeIdentity } from '../ipsec/auth.js';
import type { CertificateConfig } from '../ipsec/cert-auth.js';
import { checkConfig } from '../ipsec/config.js';
import { FRAGMENT_SIZE, TRANSFORM_TYPE } from '../ipsec/constants.js';
import { isDhGroupId, LEGACY_GROUPS } from '../ipsec/dh.js';
import {
  DEFAULT_ESP_PROPOSALS,
  DEFAULT_IKE_PROPOSALS,
  SITE_DEFAULTS,
  type SiteSpec,
  type SiteStatus,
} from '../ipsec/site-spec.js';
import { selectorFromPrefix } from '../ipsec/traffic-selectors.js';
import { invalid, WeftError } from './errors.js';
import type { SiteRecord } from './model.js';
import * as v from './validate.js';

/** Bounds of a site's numbers (seconds) and lists. */
export const SITE_LIMITS = {
  /** A CHILD SA rekeyed more often than once a minute is churn; one kept over a day holds too much traffic. */
  childLifetimeSec: { min: 60, max: 86_400 },
  /** The IKE SA lives at least as long as its CHILD SAs (checked separately), at most a week. */
  ikeLifetimeSec: { min: 60, max: 604_800 },
  /** 0 turns liveness checks off; otherwise between 5 s and an hour. */
  dpdIntervalSec: { min: 5, max: 3_600 },
  subnets: 64,
  proposals: 16,
  groups: 64,
  pskMaxLength: 256,
  /** RFC 7296 §2.15 (and src/ipsec/constants.ts PSK_MIN_LENGTH): shorter keys need forceShortPsk. */
  pskMinLength: 20,
  generatedPskLength: 32,
  /** A PEM field (certificate and chain, key, CA bundle): far more than any real chain. */
  pemMaxLength: 65_536,
  /**
   * A hard lifetime leaves a minute beyond the rekey time for the rekey exchange and its retransmissions, and
   * is at most twice the longest lifetime.
   */
  hardLifetimeMarginSec: 60,
  /** RFC 7383 §2.5.1: 576 (the IPv4 minimum) up to a jumbo frame. */
  fragmentSize: { min: 576, max: 9_000 },
  /** Byte lifetimes of a CHILD SA: 0 (none), else at least 1 MiB, at most 2^53 - 1. */
  childBytes: { min: 1_048_576, max: Number.MAX_SAFE_INTEGER },
} as const;

export const SITE_AUTHS = ['psk', 'cert'] as const;

export const SITE_MODES = ['tunnel', 'transport'] as const;
export const SITE_DPD_ACTIONS = ['restart', 'clear', 'hold'] as const;
export const SITE_START_ACTIONS = ['initiate', 'wait', 'on-traffic'] as const;

/** What an operator gives for a site (CLI flags, API body, state file entry); absent keys take defaults. */
export interface SiteInput {
  name?: unknown;
  enabled?: unknown;
  /** An address, or `%any` / null: the site only answers. */
  remoteAddress?: unknown;
  localId?: unknown;
  remoteId?: unknown;
  /** 'psk' (the default) or 'cert'; a site given a certificate and no auth is a certificate site. */
  auth?: unknown;
  /** Generated (SITE_LIMITS.generatedPskLength characters) when absent on add of a PSK site. */
  psk?: unknown;
  forceShortPsk?: unknown;
  /** PEM: our certificate, then intermediates to send with it. */
  certificate?: unknown;
  /** PEM private key of `certificate` (write-only, like the pre-shared key). */
  privateKey?: unknown;
  /** PEM: one or more CA certificates the peer's certificate must chain to. */
  caCertificates?: unknown;
  localSubnets?: unknown;
  remoteSubnets?: unknown;
  mode?: unknown;
  ikeProposals?: unknown;
  espProposals?: unknown;
  allowLegacyGroups?: unknown;
  ikeLifetimeSec?: unknown;
  childLifetimeSec?: unknown;
  dpdIntervalSec?: unknown;
  dpdAction?: unknown;
  startAction?: unknown;
  groups?: unknown;
  /** Multicast group ranges the site is a port for ("239.0.0.0/8"); empty or absent: none. */
  multicast?: unknown;
  childPerSubnetPair?: unknown;
  ikeHardLifetimeSec?: unknown;
  childHardLifetimeSec?: unknown;
  fragmentSize?: unknown;
  childRekeyBytes?: unknown;
  childLifeBytes?: unknown;
  /** The registered gateway that serves the site on a shared store (absent, null or "": every gateway). */
  gateway?: unknown;
}

/** The keys of SiteInput that a patch may change (everything but the name). */
export const SITE_FIELDS = [
  'enabled',
  'remoteAddress',
  'localId',
  'remoteId',
  'auth',
  'psk',
  'forceShortPsk',
  'certificate',
  'privateKey',
  'caCertificates',
  'localSubnets',
  'remoteSubnets',
  'mode',
  'ikeProposals',
  'espProposals',
  'allowLegacyGroups',
  'ikeLifetimeSec',
  'childLifetimeSec',
  'dpdIntervalSec',
  'dpdAction',
  'startAction',
  'groups',
  'multicast',
  'childPerSubnetPair',
  'ikeHardLifetimeSec',
  'childHardLifetimeSec',
  'fragmentSize',
  'childRekeyBytes',
  'childLifeBytes',
  'gateway',
] as const satisfies readonly (keyof SiteInput)[];

/** The secret fields of a site: never in a view, an audit entry or a log. */
export const SITE_SECRETS = ['psk', 'privateKey'] as const satisfies readonly (keyof SiteRecord)[];

/**
 * A site as the API and CLI show it: everything but the pre-shared key and the private key, with the last
 * reported status.
 */
export interface SiteView extends Omit<SiteRecord, 'psk' | 'privateKey'> {
  readonly status: SiteStatus | null;
}

/** What a site's subnets must stay clear of, read from the store in the checking transaction. */
export interface SiteContext {
  /** The members' subnets (IPv4 and, when set, IPv6). */
  readonly memberSubnets: readonly string[];
  /** Shared routes (prefixes behind the gateway). */
  readonly routes: readonly string[];
  /** Every other site. */
  readonly otherSites: readonly SiteRecord[];
  readonly groupExists: (name: string) => boolean;
  /** The gateway's uplink networks (a remote subnet there would take the gateway's own traffic). */
  readonly uplinks: readonly v.HostNetwork[];
  /** Checks `gateway` (the site's owner): the registered gateway's name, or undefined for every gateway. */
  readonly owner?: (field: string, value: unknown) => string | undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Identities

const FQDN = /^[A-Za-z0-9*]([A-Za-z0-9._*-]{0,252})$/;
const EMAIL = /^[^\s@]{1,64}@[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/;
const HEX = /^(?:[0-9a-fA-F]{2}){1,64}$/;

/**
 * An IKE identity from its text form (RFC 7296 §3.5): an IP address (also written "ipv4:…"/"ipv6:…"), "fqdn:…"
 * or a bare host name, "email:…" or anything with an "@", "keyid:…" (hex). Returns undefined when the text
 * is none of these.
 */
export function parseSiteId(text: string): IkeIdentity | undefined {
  const colon = text.indexOf(':');
  const prefix = colon > 0 ? text.slice(0, colon).toLowerCase() : '';
  const rest = text.slice(colon + 1);
  if (prefix === 'fqdn') return FQDN.test(rest) ? { type: 'fqdn', value: rest } : undefined;
  if (prefix === 'email') return EMAIL.test(rest) ? { type: 'email', value: rest } : undefined;
  if (prefix === 'keyid') return HEX.test(rest) ? { type: 'keyid', value: rest.toLowerCase() } : undefined;
  if (prefix === 'ipv4' || prefix === 'ipv6') {
    const a = parseAddress(rest);
    if (!a.ok || `ipv${a.value.family}` !== prefix) return undefined;
    return { type: prefix, value: formatAddress(a.value) };
  }
  const a = text.includes('%') ? undefined : parseAddress(text);
  if (a?.ok) return { type: a.value.family === 4 ? 'ipv4' : 'ipv6', value: formatAddress(a.value) };
  if (text.includes('@')) return EMAIL.test(text) ? { type: 'email', value: text } : undefined;
  return FQDN.test(text) ? { type: 'fqdn', value: text } : undefined;
}

/** The canonical text of an identity: a bare address, or "fqdn:", "email:", "keyid:" and the value. */
export function formatSiteId(id: IkeIdentity): string {
  return id.type === 'ipv4' || id.type === 'ipv6' ? id.value : `${id.type}:${id.value}`;
}

function identity(field: string, value: unknown): string | null {
  if (value === undefined || value === null || value === '') return null;
  const id = typeof value === 'string' ? parseSiteId(value) : undefined;
  if (!id)
    throw invalid(
      field,
      'must be an IKE identity: an IP address, a host name (fqdn:gw.example.net), an e-mail address ' +
        '(email:ops@example.net) or a key id (keyid: and hex digits)',
    );
  return formatSiteId(id);
}

// ---------------------------------------------------------------------------------------------------------------
// Checks

function oneOf<T extends string>(field: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value))
    throw invalid(field, `must be one of ${allowed.join(', ')}`);
  return value as T;
}

function remoteAddress(field: string, value: unknown): string | null {
  if (value === undefined || value === null || value === '%any') return null;
  const a = v.address(field, value);
  const special = v.SPECIAL_RANGES.find((r) => r.kind === 'none' && prefixContains(r.prefix, a));
  if (special)
    throw invalid(field, `is in ${special.text} (${special.what}), not an address a peer can have`);
  return formatAddress(a);
}

function psk(field: string, value: unknown, force: boolean): string {
  if (typeof value !== 'string' || value.length === 0) throw invalid(field, 'must be a non-empty string');
  if (value.length > SITE_LIMITS.pskMaxLength)
    throw invalid(field, `must be at most ${SITE_LIMITS.pskMaxLength} characters`);
  if (/[^\x21-\x7e]/.test(value))
    throw invalid(field, 'must be printable ASCII without spaces (peers differ in how they read the rest)');
  if (value.length < SITE_LIMITS.pskMinLength && !force)
    throw invalid(
      field,
      `has ${value.length} characters; at least ${SITE_LIMITS.pskMinLength} are required (forceShortPsk accepts a shorter one)`,
    );
  return value;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** The PEM certificates in `text`, in order (whatever lies between them is ignored). */
export function splitPem(text: string): string[] {
  return [...text.matchAll(PEM_CERT)].map((m) => `${m[0]}\n`);
}

function pem(field: string, value: unknown, what: 'certificate' | 'key'): string {
  if (typeof value !== 'string' || value.trim() === '') throw invalid(field, `must be PEM text (a ${what})`);
  if (value.length > SITE_LIMITS.pemMaxLength)
    throw invalid(field, `must be at most ${SITE_LIMITS.pemMaxLength} characters`);
  if (what === 'certificate' && splitPem(value).length === 0)
    throw invalid(field, 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)');
  if (what === 'key' && !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(value))
    throw invalid(field, 'holds no PEM private key (-----BEGIN PRIVATE KEY-----)');
  return value.trim() + '\n';
}

/** A new pre-shared key: letters and digits without look-alikes, every character equally likely. */
export function newPsk(): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const limit = 256 - (256 % alphabet.length);
  let out = '';
  while (out.length < SITE_LIMITS.generatedPskLength) {
    for (const b of randomBytes(64)) {
      if (b >= limit) continue;
      out += alphabet[b % alphabet.length];
      if (out.length === SITE_LIMITS.generatedPskLength) break;
    }
  }
  return out;
}

function subnets(field: string, value: unknown, mode: SiteRecord['mode']): Prefix[] {
  const items = v.list(field, value, SITE_LIMITS.subnets);
  if (items.length === 0) throw invalid(field, 'needs at least one prefix');
  const out: Prefix[] = [];
  items.forEach((item, i) => {
    const f = `${field}[${i}]`;
    const p = v.prefix(f, item);
    if (p.bits === 0)
      throw invalid(f, 'covers every address; name the networks behind each side instead of a default route');
    if (mode === 'transport' && p.bits !== addressLength(p.family) * 8)
      throw invalid(f, 'must be a single host (/32 or /128) in transport mode, which protects host to host');
    const clash = out.findIndex((q) => v.overlaps(p, q));
    if (clash >= 0) throw invalid(f, `overlaps ${field}[${clash}] ${formatPrefix(out[clash]!)}`);
    out.push(p);
  });
  return out;
}

function proposals(
  field: 'ikeProposals' | 'espProposals',
  value: unknown,
  defaults: readonly string[],
  allowLegacy: boolean,
): string[] {
  if (value === undefined || value === null) return [...defaults];
  const items = v.list(field, value, SITE_LIMITS.proposals);
  if (items.length === 0) throw invalid(field, 'needs at least one proposal');
  const kind = field === 'ikeProposals' ? 'ike' : 'esp';
  return items.map((item, i) => {
    const f = `${field}[${i}]`;
    if (typeof item !== 'string' || item.trim() !== item || item === '')
      throw invalid(f, 'must be a proposal such as aes256gcm16-prfsha256-x25519');
    const p = parseProposal(item, kind);
    if (!p.ok) throw invalid(f, p.error);
    const dh = p.value.filter((t) => t.type === TRANSFORM_TYPE.DH);
    if (dh.some((t) => !isDhGroupId(t.id))) throw invalid(f, `names a DH group Weft does not speak`);
    if (dh.some((t) => LEGACY_GROUPS.has(t.id)) && !allowLegacy)
      throw invalid(f, `uses a legacy DH group (modp1024 or modp1536); allowLegacyGroups permits it`);
    return item.toLowerCase();
  });
}

function ownerOf(value: unknown, ctx: SiteContext): { gateway?: string } {
  if (value === undefined || value === null || value === '') return {};
  const gateway = ctx.owner ? ctx.owner('gateway', value) : undefined;
  if (gateway === undefined) throw invalid('gateway', 'must be the name of a registered gateway');
  return { gateway };
}

/**
 * Checks a whole site: `input` holds every field (the current record merged with a patch, or an add's input
 * with defaults still to fill in). Returns the record's fields; the caller adds the times.
 */
export function checkSite(
  input: SiteInput,
  ctx: SiteContext,
): Omit<SiteRecord, 'createdAt' | 'updatedAt' | 'psk'> & { psk: string | null } {
  const name = v.name('name', input.name);
  const enabled = input.enabled === undefined ? true : v.bool('enabled', input.enabled);
  const remote = remoteAddress('remoteAddress', input.remoteAddress);
  const localId = identity('localId', input.localId);
  const remoteId = identity('remoteId', input.remoteId);
  const forceShortPsk =
    input.forceShortPsk === undefined
      ? SITE_DEFAULTS.forceShortPsk
      : v.bool('forceShortPsk', input.forceShortPsk);
  const auth =
    input.auth === undefined || input.auth === null
      ? input.certificate !== undefined && input.certificate !== null
        ? 'cert'
        : 'psk'
      : oneOf('auth', input.auth, SITE_AUTHS);
  let key: string | null = null;
  let certificate: string | null = null;
  let privateKey: string | null = null;
  let caCertificates: string | null = null;
  if (auth === 'psk') {
    // A site that was a certificate site has an empty key: it needs a new one.
    if (input.psk === '' && input.auth !== undefined)
      throw invalid('psk', 'is required to switch a site to pre-shared key authentication');
    key = input.psk === undefined || input.psk === null ? null : psk('psk', input.psk, forceShortPsk);
  } else {
    key = '';
    for (const [field, value] of [
      ['certificate', input.certificate],
      ['privateKey', input.privateKey],
      ['caCertificates', input.caCertificates],
    ] as const)
      if (value === undefined || value === null || value === '')
        throw invalid(field, `is required for a certificate site (auth: cert)`);
    certificate = pem('certificate', input.certificate, 'certificate');
    privateKey = pem('privateKey', input.privateKey, 'key');
    caCertificates = pem('caCertificates', input.caCertificates, 'certificate');
  }
  const mode = input.mode === undefined ? SITE_DEFAULTS.mode : oneOf('mode', input.mode, SITE_MODES);
  const local = subnets('localSubnets', input.localSubnets, mode);
  const remoteNets = subnets('remoteSubnets', input.remoteSubnets, mode);
  checkRemoteSubnets(remoteNets, local, ctx, name);
  const allowLegacyGroups =
    input.allowLegacyGroups === undefined
      ? SITE_DEFAULTS.allowLegacyGroups
      : v.bool('allowLegacyGroups', input.allowLegacyGroups);
  const ikeProposals = proposals(
    'ikeProposals',
    input.ikeProposals,
    DEFAULT_IKE_PROPOSALS,
    allowLegacyGroups,
  );
  const espProposals = proposals(
    'espProposals',
    input.espProposals,
    DEFAULT_ESP_PROPOSALS,
    allowLegacyGroups,
  );
  const L = SITE_LIMITS;
  const childLifetimeSec = v.integer(
    'childLifetimeSec',
    input.childLifetimeSec ?? SITE_DEFAULTS.childLifetimeSec,
    L.childLifetimeSec.min,
    L.childLifetimeSec.max,
  );
  const ikeLifetimeSec = v.integer(
    'ikeLifetimeSec',
    input.ikeLifetimeSec ?? Math.max(SITE_DEFAULTS.ikeLifetimeSec, childLifetimeSec),
    L.ikeLifetimeSec.min,
    L.ikeLifetimeSec.max,
  );
  if (ikeLifetimeSec < childLifetimeSec)
    throw invalid(
      'ikeLifetimeSec',
      `is shorter than childLifetimeSec (${childLifetimeSec}); the IKE SA must outlive its CHILD SAs`,
    );
  const dpdIntervalSec = v.integer(
    'dpdIntervalSec',
    input.dpdIntervalSec ?? SITE_DEFAULTS.dpdIntervalSec,
    0,
    L.dpdIntervalSec.max,
  );
  if (dpdIntervalSec !== 0 && dpdIntervalSec < L.dpdIntervalSec.min)
    throw invalid(
      'dpdIntervalSec',
      `must be 0 (off) or from ${L.dpdIntervalSec.min} to ${L.dpdIntervalSec.max}`,
    );
  const dpdAction =
    input.dpdAction === undefined
      ? SITE_DEFAULTS.dpdAction
      : oneOf('dpdAction', input.dpdAction, SITE_DPD_ACTIONS);
  const startAction =
    input.startAction === undefined
      ? remote === null
        ? 'wait'
        : 'initiate'
      : oneOf('startAction', input.startAction, SITE_START_ACTIONS);
  if (startAction !== 'wait' && remote === null)
    throw invalid(
      'startAction',
      `"${startAction}" needs a remote address: with %any the site can only wait for the peer`,
    );
  const details = ikeDetails(input, ikeLifetimeSec, childLifetimeSec);
  const groups = [
    ...new Set(v.list('groups', input.groups, SITE_LIMITS.groups).map((g, i) => v.name(`groups[${i}]`, g))),
  ].sort();
  for (const g of groups)
    if (!ctx.groupExists(g))
      throw new WeftError('WEFT_ERR_GROUP_NOT_FOUND', `groups: group ${g} does not exist`, 'groups');

  const multicast = multicastRanges('multicast', input.multicast, mode);
  if (multicast.length > 0 && details.childPerSubnetPair)
    throw invalid(
      'multicast',
      'a site with one CHILD SA per subnet pair carries no multicast ranges (they are selectors beside its subnets)',
    );

  const record = {
    name,
    enabled,
    remoteAddress: remote,
    localId,
    remoteId,
    auth,
    psk: key,
    forceShortPsk,
    certificate,
    privateKey,
    caCertificates,
    localSubnets: local.map(formatPrefix),
    remoteSubnets: remoteNets.map(formatPrefix),
    mode,
    ikeProposals,
    espProposals,
    allowLegacyGroups,
    ikeLifetimeSec,
    childLifetimeSec,
    dpdIntervalSec,
    dpdAction,
    startAction,
    groups,
    multicast,
    ...details,
    ...ownerOf(input.gateway, ctx),
  };
  if (key !== null) gate(record, key);
  return record;
}

/** One CHILD SA per subnet pair, hard lifetimes, the IKE fragment size, byte lifetimes (null/undefined: default). */
function ikeDetails(
  input: SiteInput,
  ikeLifetimeSec: number,
  childLifetimeSec: number,
): Pick<
  SiteRecord,
  | 'childPerSubnetPair'
  | 'ikeHardLifetimeSec'
  | 'childHardLifetimeSec'
  | 'fragmentSize'
  | 'childRekeyBytes'
  | 'childLifeBytes'
> {
  const L = SITE_LIMITS;
  const given = (x: unknown): boolean => x !== undefined && x !== null;
  const hard = (field: 'ikeHardLifetimeSec' | 'childHardLifetimeSec', rekey: number): number | null => {
    const value = input[field];
    if (!given(value)) return null;
    const min = rekey + L.hardLifetimeMarginSec;
    const max = 2 * L.ikeLifetimeSec.max;
    const n = v.integer(field, value, 0, max);
    if (n < min)
      throw invalid(
        field,
        `must be at least ${min} s: ${L.hardLifetimeMarginSec} s beyond the rekey time (${rekey} s), so a rekey can finish first`,
      );
    return n;
  };
  const bytes = (field: 'childRekeyBytes' | 'childLifeBytes'): number => {
    const value = input[field];
    if (!given(value)) return 0;
    const n = v.integer(field, value, 0, L.childBytes.max);
    if (n !== 0 && n < L.childBytes.min)
      throw invalid(field, `must be 0 (no byte limit) or from ${L.childBytes.min} to ${L.childBytes.max}`);
    return n;
  };
  const childRekeyBytes = bytes('childRekeyBytes');
  const childLifeBytes = bytes('childLifeBytes');
  if (childLifeBytes !== 0 && childRekeyBytes !== 0 && childLifeBytes <= childRekeyBytes)
    throw invalid(
      'childLifeBytes',
      `must be more than childRekeyBytes (${childRekeyBytes}): the SA is deleted after it was to be rekeyed`,
    );
  return {
    childPerSubnetPair: given(input.childPerSubnetPair)
      ? v.bool('childPerSubnetPair', input.childPerSubnetPair)
      : false,
    ikeHardLifetimeSec: hard('ikeHardLifetimeSec', ikeLifetimeSec),
    childHardLifetimeSec: hard('childHardLifetimeSec', childLifetimeSec),
    fragmentSize: given(input.fragmentSize)
      ? v.integer('fragmentSize', input.fragmentSize, L.fragmentSize.min, L.fragmentSize.max)
      : FRAGMENT_SIZE,
    childRekeyBytes,
    childLifeBytes,
  };
}

/** The core's certificate configuration of a certificate site, or null for a PSK site. */
export function siteCertificate(r: {
  readonly certificate: string | null;
  readonly privateKey: string | null;
  readonly caCertificates: string | null;
}): CertificateConfig | null {
  if (r.certificate === null || r.privateKey === null || r.caCertificates === null) return null;
  const [leaf, ...chain] = splitPem(r.certificate);
  if (leaf === undefined) return null;
  return { certificate: leaf, chain, privateKey: r.privateKey, trusted: splitPem(r.caCertificates) };
}

/** The IKE core's own check of the whole peer config, as the gateway will run it (a last gate). */
function gate(r: Omit<SiteRecord, 'createdAt' | 'updatedAt' | 'psk'>, key: string): void {
  const selectors = (list: readonly string[]) =>
    list.map((t) => selectorFromPrefix(t)).filter((s): s is NonNullable<typeof s> => s !== null);
  const checked = checkConfig({
    localId: (r.localId === null ? undefined : parseSiteId(r.localId)) ?? { type: 'ipv4', value: '0.0.0.0' },
    remoteId: r.remoteId === null ? null : (parseSiteId(r.remoteId) ?? null),
    ...(r.auth === 'cert' ? { certificate: siteCertificate(r)! } : { psk: key }),
    forceShortPsk: r.forceShortPsk,
    ikeProposals: r.ikeProposals,
    espProposals: r.espProposals,
    localSelectors: selectors(r.localSubnets),
    remoteSelectors: selectors(r.remoteSubnets),
    mode: r.mode,
    childPerSubnetPair: r.childPerSubnetPair,
    allowLegacyGroups: r.allowLegacyGroups,
  });
  if (!checked.ok) {
    const field =
      checked.error.field === 'localSelectors'
        ? 'localSubnets'
        : checked.error.field === 'remoteSelectors'
          ? 'remoteSubnets'
          : checked.error.field;
    // The core names certificate problems "certificate.privateKey", "certificate.trusted[0]", ...
    const named: Record<string, string> = {
      'certificate.certificate': 'certificate',
      'certificate.privateKey': 'privateKey',
      'certificate.trusted': 'caCertificates',
    };
    const cert = /^certificate\.(chain|trusted)\[(\d+)\]$/.exec(field);
    const mapped =
      named[field] ??
      (cert
        ? cert[1] === 'trusted'
          ? `caCertificates[${cert[2]}]`
          : `certificate[${Number(cert[2]) + 1}]`
        : field);
    throw invalid(mapped, checked.error.message);
  }
}

/**
 * Remote subnets become routes into the tunnel: they must not take the members' own subnets, a shared route,
 * another site's remote subnet, the gateway's uplink or (in tunnel mode) this site's own local subnets.
 */
function checkRemoteSubnets(remote: Prefix[], local: Prefix[], ctx: SiteContext, name: string): void {
  const parse = (text: string): Prefix | undefined => {
    const r = parsePrefix(text);
    return r.ok ? r.value : undefined;
  };
  remote.forEach((p, i) => {
    const f = `remoteSubnets[${i}]`;
    const text = formatPrefix(p);
    const special = v.SPECIAL_RANGES.find((r) => v.overlaps(r.prefix, p));
    if (special) throw invalid(f, `overlaps ${special.text} (${special.what})`);
    for (const own of ctx.memberSubnets) {
      const q = parse(own);
      if (q && v.overlaps(p, q)) throw invalid(f, `${text} overlaps the members' subnet ${own}`);
    }
    for (const u of ctx.uplinks) {
      const q = parse(u.prefix);
      if (q && v.overlaps(p, q))
        throw invalid(f, `${text} overlaps ${u.prefix}, the gateway's uplink network (${u.interface})`);
    }
    const l = local.find((q) => v.overlaps(p, q));
    if (l && p.bits < addressLength(p.family) * 8)
      throw invalid(f, `${text} overlaps the site's local subnet ${formatPrefix(l)}`);
    for (const route of ctx.routes) {
      const q = parse(route);
      if (q && v.overlaps(p, q))
        throw new WeftError(
          'WEFT_ERR_SUBNET_CONFLICT',
          `${f}: ${text} overlaps the shared route ${route}`,
          f,
        );
    }
    for (const other of ctx.otherSites) {
      if (other.name === name) continue;
      for (const o of other.remoteSubnets) {
        const q = parse(o);
        if (q && v.overlaps(p, q))
          throw new WeftError(
            'WEFT_ERR_SUBNET_CONFLICT',
            `${f}: ${text} overlaps ${o}, a remote subnet of site ${other.name}`,
            f,
          );
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Views and specs

export function siteView(r: SiteRecord, status: SiteStatus | undefined): SiteView {
  const { psk: _secret, privateKey: _key, ...rest } = r;
  return { ...rest, status: status ?? null };
}

/** What the gateway runs for a stored site. */
export function siteSpec(r: SiteRecord): SiteSpec {
  const id = (text: string | null): IkeIdentity | null =>
    text === null ? null : (parseSiteId(text) ?? null);
  return {
    name: r.name,
    enabled: r.enabled,
    remoteAddress: r.remoteAddress,
    localId: id(r.localId),
    remoteId: id(r.remoteId),
    psk: r.psk,
    forceShortPsk: r.forceShortPsk,
    certificate: r.auth === 'cert' ? siteCertificate(r) : null,
    localSubnets: [...r.localSubnets],
    remoteSubnets: [...r.remoteSubnets],
    mode: r.mode,
    ikeProposals: [...r.ikeProposals],
    espProposals: [...r.espProposals],
    allowLegacyGroups: r.allowLegacyGroups,
    ikeLifetimeSec: r.ikeLifetimeSec,
    childLifetimeSec: r.childLifetimeSec,
    dpdIntervalSec: r.dpdIntervalSec,
    dpdAction: r.dpdAction,
    startAction: r.startAction,
    groups: [...r.groups],
    multicast: [...r.multicast],
    childPerSubnetPair: r.childPerSubnetPair,
    ikeHardLifetimeSec: r.ikeHardLifetimeSec,
    childHardLifetimeSec: r.childHardLifetimeSec,
    fragmentSize: r.fragmentSize,
    childRekeyBytes: r.childRekeyBytes,
    childLifeBytes: r.childLifeBytes,
  };
}

/**
 * A site's multicast group ranges: prefixes inside 224.0.0.0/4 or ff00::/8, canonical, without duplicates,
 * tunnel mode only (a transport-mode SA carries the two gateways' own traffic). They join the CHILD SA's
 * traffic selectors on both sides, so ESP carries site subnet → group and our side → group.
 */
function multicastRanges(field: string, value: unknown, mode: string): string[] {
  if (value === undefined || value === null) return [];
  const items = v.list(field, value, SITE_LIMITS.subnets);
  if (items.length > 0 && mode !== 'tunnel') throw invalid(field, 'needs tunnel mode');
  const out: string[] = [];
  items.forEach((item, i) => {
    const f = `${field}[${i}]`;
    const p = typeof item === 'string' ? parsePrefix(item.trim()) : undefined;
    if (!p?.ok) throw invalid(f, `${JSON.stringify(item)} is not a prefix such as 239.0.0.0/8`);
    const { family, bytes, bits } = p.value;
    const inside = family === 4 ? bits >= 4 && (bytes[0]! & 0xf0) === 0xe0 : bits >= 8 && bytes[0] === 0xff;
    if (!inside) throw invalid(f, `${formatPrefix(p.value)} is not inside 224.0.0.0/4 or ff00::/8`);
    const text = formatPrefix(p.value);
    if (!out.includes(text)) out.push(text);
  });
  return out;
}
