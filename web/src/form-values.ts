/**
 * The site form's values (text as typed, check boxes as booleans) to the body of POST /sites and
 * PATCH /sites/{name}, and a site as GET /sites shows it back to form values. Pure (no DOM), so the unit tests
 * run it under node (test/unit/web-form-values.test.ts).
 *
 * An empty field means "the default":
 *   - adding a site, the key is left out and the server picks its default (docs/ipsec.md "A site: the
 *     fields"), which for startAction and ikeLifetimeSec depends on other fields;
 *   - editing one, PATCH keeps a key it is not given, so the default is sent explicitly: null where the API
 *     takes null (remote address, IDs, hard lifetimes), otherwise the value SITE_FORM_DEFAULTS names.
 * A number that is not a whole decimal number is refused here with a message naming the API's field, as the
 * API would name it; what a value means (a range, a proposal's algorithms) is the server's to judge.
 */

/** The server's defaults (src/ipsec/site-spec.ts SITE_DEFAULTS, DEFAULT_*_PROPOSALS; src/ipsec/constants.ts
 * FRAGMENT_SIZE). The unit test checks that they are the same. */
export const SITE_FORM_DEFAULTS = {
  mode: 'tunnel',
  ikeProposals: ['aes256gcm16-prfsha256-x25519', 'aes256gcm16-prfsha384-ecp384', 'aes256-sha256-modp2048'],
  espProposals: ['aes256gcm16', 'aes256-sha256'],
  ikeLifetimeSec: 14_400,
  childLifetimeSec: 3_600,
  dpdIntervalSec: 30,
  dpdAction: 'restart',
  fragmentSize: 1280,
  childRekeyBytes: 0,
  childLifeBytes: 0,
} as const;

export interface SiteFormValues {
  name: string;
  /** Empty: %any (the site only answers). */
  remoteAddress: string;
  auth: string;
  /** Write-only: empty leaves it out (generated on add, kept on edit). */
  psk: string;
  certificate: string;
  /** Write-only: empty leaves it out (kept on edit). */
  privateKey: string;
  caCertificates: string;
  /** Prefixes separated by commas or spaces. */
  localSubnets: string;
  remoteSubnets: string;
  localId: string;
  remoteId: string;
  /** The registered gateway that serves the site; empty: every gateway. */
  gateway: string;
  // ---- the Advanced section ----
  mode: string;
  ikeProposals: string;
  espProposals: string;
  allowLegacyGroups: boolean;
  forceShortPsk: boolean;
  ikeLifetimeSec: string;
  childLifetimeSec: string;
  ikeHardLifetimeSec: string;
  childHardLifetimeSec: string;
  childRekeyBytes: string;
  childLifeBytes: string;
  childPerSubnetPair: boolean;
  fragmentSize: string;
  dpdIntervalSec: string;
  dpdAction: string;
  startAction: string;
  groups: string;
  multicast: string;
}

/** The fields of a site as GET /sites shows them that the form edits. */
export interface SiteFields {
  readonly name: string;
  readonly remoteAddress: string | null;
  readonly localId: string | null;
  readonly remoteId: string | null;
  readonly auth: string;
  readonly certificate: string | null;
  readonly caCertificates: string | null;
  readonly forceShortPsk: boolean;
  readonly localSubnets: readonly string[];
  readonly remoteSubnets: readonly string[];
  readonly mode: string;
  readonly ikeProposals: readonly string[];
  readonly espProposals: readonly string[];
  readonly allowLegacyGroups: boolean;
  readonly ikeLifetimeSec: number;
  readonly childLifetimeSec: number;
  readonly ikeHardLifetimeSec: number | null;
  readonly childHardLifetimeSec: number | null;
  readonly childRekeyBytes: number;
  readonly childLifeBytes: number;
  readonly childPerSubnetPair: boolean;
  readonly fragmentSize: number;
  readonly dpdIntervalSec: number;
  readonly dpdAction: string;
  readonly startAction: string;
  readonly groups: readonly string[];
  readonly multicast: readonly string[];
  /** Absent (or null): every gateway serves it. */
  readonly gateway?: string | null;
}

export const EMPTY_SITE_FORM: Readonly<SiteFormValues> = {
  name: '',
  remoteAddress: '',
  auth: 'psk',
  psk: '',
  certificate: '',
  privateKey: '',
  caCertificates: '',
  localSubnets: '',
  remoteSubnets: '',
  localId: '',
  remoteId: '',
  gateway: '',
  mode: '',
  ikeProposals: '',
  espProposals: '',
  allowLegacyGroups: false,
  forceShortPsk: false,
  ikeLifetimeSec: '',
  childLifetimeSec: '',
  ikeHardLifetimeSec: '',
  childHardLifetimeSec: '',
  childRekeyBytes: '',
  childLifeBytes: '',
  childPerSubnetPair: false,
  fragmentSize: '',
  dpdIntervalSec: '',
  dpdAction: '',
  startAction: '',
  groups: '',
  multicast: '',
};

/** The form's text fields that hold numbers, with what the number counts (for the message). */
export const SITE_NUMBER_FIELDS = {
  ikeLifetimeSec: 'seconds',
  childLifetimeSec: 'seconds',
  ikeHardLifetimeSec: 'seconds',
  childHardLifetimeSec: 'seconds',
  childRekeyBytes: 'bytes',
  childLifeBytes: 'bytes',
  fragmentSize: 'bytes',
  dpdIntervalSec: 'seconds',
} as const;

type NumberField = keyof typeof SITE_NUMBER_FIELDS;

export interface FieldIssue {
  /** The API's name of the field ("ikeLifetimeSec", "multicastStatic[2].group"). */
  readonly field: string;
  readonly message: string;
}

export type BodyResult =
  | { readonly ok: true; readonly body: Record<string, unknown> }
  | { readonly ok: false; readonly issues: readonly FieldIssue[] };

/** "a, b c" → ["a", "b", "c"]. */
export function splitList(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((x) => x.trim())
    .filter((x) => x !== '');
}

/**
 * A whole decimal number as typed: undefined for an empty field, a FieldIssue for anything else that is not
 * 0-9 digits (no sign, point, exponent or hex) or too large to be exact.
 */
export function wholeNumber(field: string, text: string, unit: string): number | undefined | FieldIssue {
  const t = text.trim();
  if (t === '') return undefined;
  const n = Number(t);
  if (!/^[0-9]+$/.test(t) || !Number.isSafeInteger(n))
    return { field, message: `${field}: must be a whole number of ${unit}, or empty for the default` };
  return n;
}

/** A site's form values (for editing it). */
export function siteFormValues(site: SiteFields): SiteFormValues {
  const text = (n: number | null): string => (n === null ? '' : String(n));
  return {
    name: site.name,
    remoteAddress: site.remoteAddress ?? '',
    auth: site.auth,
    psk: '',
    certificate: site.certificate ?? '',
    privateKey: '',
    caCertificates: site.caCertificates ?? '',
    localSubnets: site.localSubnets.join(', '),
    remoteSubnets: site.remoteSubnets.join(', '),
    localId: site.localId ?? '',
    remoteId: site.remoteId ?? '',
    gateway: site.gateway ?? '',
    mode: site.mode,
    ikeProposals: site.ikeProposals.join(', '),
    espProposals: site.espProposals.join(', '),
    allowLegacyGroups: site.allowLegacyGroups,
    forceShortPsk: site.forceShortPsk,
    ikeLifetimeSec: text(site.ikeLifetimeSec),
    childLifetimeSec: text(site.childLifetimeSec),
    ikeHardLifetimeSec: text(site.ikeHardLifetimeSec),
    childHardLifetimeSec: text(site.childHardLifetimeSec),
    childRekeyBytes: text(site.childRekeyBytes),
    childLifeBytes: text(site.childLifeBytes),
    childPerSubnetPair: site.childPerSubnetPair,
    fragmentSize: text(site.fragmentSize),
    dpdIntervalSec: text(site.dpdIntervalSec),
    dpdAction: site.dpdAction,
    startAction: site.startAction,
    groups: site.groups.join(', '),
    multicast: site.multicast.join(', '),
  };
}

/**
 * The body of POST /sites (`op` 'add', with the name) or PATCH /sites/{name} ('edit', without it), or every
 * field whose text is not a number where one belongs.
 */
export function siteBody(v: SiteFormValues, op: 'add' | 'edit'): BodyResult {
  const issues: FieldIssue[] = [];
  const numbers: Partial<Record<NumberField, number>> = {};
  for (const [field, unit] of Object.entries(SITE_NUMBER_FIELDS) as [NumberField, string][]) {
    const n = wholeNumber(field, v[field], unit);
    if (typeof n === 'object') issues.push(n);
    else if (n !== undefined) numbers[field] = n;
  }
  if (issues.length > 0) return { ok: false, issues };

  const edit = op === 'edit';
  const body: Record<string, unknown> = {};
  const text = (s: string): string | null => (s.trim() === '' ? null : s.trim());
  /** The value typed, or (editing) the default; adding, an empty field leaves the key out. */
  const put = <T>(key: string, value: T | undefined, fallback: T): void => {
    if (value !== undefined) body[key] = value;
    else if (edit) body[key] = fallback;
  };

  if (!edit) body['name'] = v.name.trim();
  const remoteAddress = text(v.remoteAddress);
  body['remoteAddress'] = remoteAddress;
  body['localSubnets'] = splitList(v.localSubnets);
  body['remoteSubnets'] = splitList(v.remoteSubnets);
  body['localId'] = text(v.localId);
  body['remoteId'] = text(v.remoteId);
  const auth = v.auth === 'cert' ? 'cert' : 'psk';
  body['auth'] = auth;
  if (auth === 'psk' && v.psk !== '') body['psk'] = v.psk;
  if (auth === 'cert') {
    body['certificate'] = v.certificate;
    body['caCertificates'] = v.caCertificates;
    if (v.privateKey !== '') body['privateKey'] = v.privateKey;
  }
  body['forceShortPsk'] = v.forceShortPsk;
  // Every gateway: left out when adding, null when editing (PATCH keeps a gateway it is not given).
  const gateway = text(v.gateway);
  if (gateway !== null) body['gateway'] = gateway;
  else if (edit) body['gateway'] = null;

  put('mode', text(v.mode) ?? undefined, SITE_FORM_DEFAULTS.mode);
  const list = (s: string): string[] | undefined => (splitList(s).length > 0 ? splitList(s) : undefined);
  put('ikeProposals', list(v.ikeProposals), [...SITE_FORM_DEFAULTS.ikeProposals]);
  put('espProposals', list(v.espProposals), [...SITE_FORM_DEFAULTS.espProposals]);
  body['allowLegacyGroups'] = v.allowLegacyGroups;
  const child = numbers.childLifetimeSec ?? SITE_FORM_DEFAULTS.childLifetimeSec;
  put('childLifetimeSec', numbers.childLifetimeSec, SITE_FORM_DEFAULTS.childLifetimeSec);
  // The server's own default: at least the CHILD SAs' lifetime (src/control/sites.ts).
  put('ikeLifetimeSec', numbers.ikeLifetimeSec, Math.max(SITE_FORM_DEFAULTS.ikeLifetimeSec, child));
  // null: 110% of the rekey time, on add as on edit.
  body['ikeHardLifetimeSec'] = numbers.ikeHardLifetimeSec ?? null;
  body['childHardLifetimeSec'] = numbers.childHardLifetimeSec ?? null;
  put('childRekeyBytes', numbers.childRekeyBytes, SITE_FORM_DEFAULTS.childRekeyBytes);
  put('childLifeBytes', numbers.childLifeBytes, SITE_FORM_DEFAULTS.childLifeBytes);
  body['childPerSubnetPair'] = v.childPerSubnetPair;
  put('fragmentSize', numbers.fragmentSize, SITE_FORM_DEFAULTS.fragmentSize);
  put('dpdIntervalSec', numbers.dpdIntervalSec, SITE_FORM_DEFAULTS.dpdIntervalSec);
  put('dpdAction', text(v.dpdAction) ?? undefined, SITE_FORM_DEFAULTS.dpdAction);
  // The server's default: only answer when the peer's address is unknown, else initiate.
  put('startAction', text(v.startAction) ?? undefined, remoteAddress === null ? 'wait' : 'initiate');
  body['groups'] = splitList(v.groups);
  body['multicast'] = splitList(v.multicast);
  return { ok: true, body };
}

/** Whether any field of the Advanced section differs from a new site's (to open the section on edit). */
export function advancedCustomised(v: SiteFormValues): boolean {
  const d = SITE_FORM_DEFAULTS;
  const same = (text: string, value: string | number): boolean =>
    text.trim() === '' || text.trim() === String(value);
  return !(
    same(v.mode, d.mode) &&
    same(v.ikeProposals.split(/[\s,]+/).join(','), d.ikeProposals.join(',')) &&
    same(v.espProposals.split(/[\s,]+/).join(','), d.espProposals.join(',')) &&
    !v.allowLegacyGroups &&
    !v.forceShortPsk &&
    same(v.ikeLifetimeSec, d.ikeLifetimeSec) &&
    same(v.childLifetimeSec, d.childLifetimeSec) &&
    v.ikeHardLifetimeSec.trim() === '' &&
    v.childHardLifetimeSec.trim() === '' &&
    same(v.childRekeyBytes, d.childRekeyBytes) &&
    same(v.childLifeBytes, d.childLifeBytes) &&
    !v.childPerSubnetPair &&
    same(v.fragmentSize, d.fragmentSize) &&
    same(v.dpdIntervalSec, d.dpdIntervalSec) &&
    same(v.dpdAction, d.dpdAction) &&
    same(v.startAction, v.remoteAddress.trim() === '' ? 'wait' : 'initiate') &&
    splitList(v.groups).length === 0 &&
    splitList(v.multicast).length === 0
  );
}

/** The route form's values (text as typed; gateway empty: every gateway). */
export interface RouteFormValues {
  cidr: string;
  description: string;
  gateway: string;
}

/**
 * The body of POST /routes. "Every gateway" leaves `gateway` out: the route schema takes a gateway's name or
 * nothing, not null.
 */
export function routeBody(v: RouteFormValues): Record<string, unknown> {
  const gateway = v.gateway.trim();
  return {
    cidr: v.cidr.trim(),
    description: v.description.trim(),
    ...(gateway === '' ? {} : { gateway }),
  };
}
