/**
 * wg-quick configuration files: the `[Interface]` / `[Peer]` format of wg-quick(8), wg(8) and the WireGuard
 * apps, read for `weft up FILE.conf`.
 *
 * Pure: the caller reads the file and passes its text and name (the name appears only in messages). Host
 * names in `Endpoint` are returned as written, for the caller to resolve; nothing here touches the network
 * or the file system, and nothing throws on bad input.
 *
 * What follows wg-quick and wg, and where Weft is stricter:
 * - `#` starts a comment anywhere on a line (as wg-quick, so a `#` inside a PostUp command ends it too);
 *   whitespace around keys and values is trimmed; section and key names are case-insensitive; a value is
 *   everything after the first `=` (base64 keys end in `=`).
 * - Address, DNS, AllowedIPs and the four hooks may repeat and accumulate. Address and DNS entries are
 *   separated by commas and/or spaces (as wg-quick splits them), AllowedIPs entries by commas (as wg). An
 *   empty value adds nothing (for AllowedIPs, as in wg); an empty entry between commas is an error (as wg;
 *   wg-quick skips them in Address and DNS).
 * - Repeating a single-valued key is an error (wg and wg-quick silently keep the last one).
 * - AllowedIPs with host bits set (`10.0.0.1/24`) is masked (`10.0.0.0/24`) with a warning, as wg does.
 * - ListenPort is 1-65535, numeric (wg also takes 0, meaning random, and service names); omit it for a
 *   random port. MTU is 1280-9000, default 1420 (wg-quick derives its default from the route's MTU; 1420
 *   is what it gets on a 1500-byte path; 1280 is the IPv6 minimum). FwMark is `off`, decimal or `0x` hex
 *   up to 32 bits, 0 meaning off (as wg). Table is `off`, `auto`, a number 1-4294967295, or one of the
 *   names iproute2 reserves (`main` 254, `local` 255, `default` 253). PersistentKeepalive is `off` or
 *   0-65535 (as wg). Endpoint ports are numeric; IPv6 endpoints need brackets.
 * - SaveConfig = true is an error: Weft never writes the configuration file back.
 * - Across the file: exactly one [Interface]; peers' public keys are distinct and differ from the
 *   interface's own; no AllowedIPs prefix belongs to two peers (wg silently gives it to the last one); no
 *   interface address appears twice.
 *
 * Every problem is reported, not just the first, with file, line and key. Messages never quote key
 * material, nor the name of an unknown key unless it is short enough that it cannot be a key.
 */
import { PresharedKey, PrivateKey, PublicKey } from '../crypto/keys.js';
import { parseEndpoint } from '../net/endpoint.js';
import {
  addressLength,
  formatAddress,
  formatPrefix,
  maskBytes,
  parseAddress,
  sameAddress,
  type Address,
  type Prefix,
} from '../net/ip.js';

export const DEFAULT_MTU = 1420;
export const MIN_MTU = 1280;
export const MAX_MTU = 9000;

/** A problem in a configuration file. `line` is 1-based; 0 means the file as a whole. */
export interface ConfigIssue {
  readonly file: string;
  readonly line: number;
  /** The key's canonical spelling (`PrivateKey`), or a section header (`[Peer]`); absent for a bad line. */
  readonly key?: string;
  readonly message: string;
}

/** An address the interface holds: a host address and the subnet it sits in (`10.0.0.2/24`). */
export interface InterfaceAddress {
  /** The host address as written (host bits kept). */
  readonly address: Address;
  /** The network: `address` masked to `bits`. */
  readonly prefix: Prefix;
  readonly bits: number;
  /** Canonical text, `10.0.0.2/24`, `fd00::2/64`. */
  readonly text: string;
}

export interface PeerEndpoint {
  /** An IP address in canonical form (IPv6 without brackets), or a host name as written, unresolved. */
  readonly host: string;
  readonly port: number;
}

export type RoutingTable = 'auto' | 'off' | number;

export interface WgQuickInterface {
  readonly privateKey: PrivateKey;
  readonly listenPort?: number;
  readonly addresses: InterfaceAddress[];
  readonly mtu: number;
  /** DNS server addresses, canonical text (wg-quick's `nameserver` entries). For information. */
  readonly dns: string[];
  /** DNS search domains (DNS entries that are not addresses, wg-quick's `search` entries). For information. */
  readonly dnsSearch: string[];
  readonly table: RoutingTable;
  /** Absent when off (`off` or 0). */
  readonly fwmark?: number;
  /** Hook commands, verbatim; wg-quick replaces `%i` with the interface name when it runs them. */
  readonly preUp: string[];
  readonly postUp: string[];
  readonly preDown: string[];
  readonly postDown: string[];
  /** Always false in a parsed file: `SaveConfig = true` is rejected. */
  readonly saveConfig: boolean;
}

export interface WgQuickPeer {
  readonly publicKey: PublicKey;
  readonly presharedKey?: PresharedKey;
  /** Masked prefixes, in file order, without duplicates. */
  readonly allowedIps: Prefix[];
  readonly endpoint?: PeerEndpoint;
  /** Seconds; 0 is off. */
  readonly persistentKeepalive: number;
  /** The line of this peer's `[Peer]` header (0 for a peer not read from a file). */
  readonly line: number;
}

export interface WgQuickConfig {
  readonly interface: WgQuickInterface;
  readonly peers: WgQuickPeer[];
}

export type ParseOutcome =
  | { ok: true; config: WgQuickConfig; warnings: ConfigIssue[] }
  | { ok: false; errors: ConfigIssue[]; warnings: ConfigIssue[] };

/** `FILE:LINE: KEY: message`; the key is left out when there is none, and the line when it is 0. */
export function formatIssue(issue: ConfigIssue): string {
  const where = issue.line > 0 ? `${issue.file}:${issue.line}` : issue.file;
  return issue.key === undefined ? `${where}: ${issue.message}` : `${where}: ${issue.key}: ${issue.message}`;
}

// ---------------------------------------------------------------------------------------------------------
// Keys

const INTERFACE_KEYS = [
  'PrivateKey',
  'ListenPort',
  'Address',
  'MTU',
  'DNS',
  'Table',
  'FwMark',
  'PreUp',
  'PostUp',
  'PreDown',
  'PostDown',
  'SaveConfig',
] as const;
const PEER_KEYS = ['PublicKey', 'PresharedKey', 'AllowedIPs', 'Endpoint', 'PersistentKeepalive'] as const;
type InterfaceKey = (typeof INTERFACE_KEYS)[number];
type PeerKey = (typeof PEER_KEYS)[number];

/** Keys that may repeat; their values accumulate. */
const LIST_KEYS: ReadonlySet<string> = new Set([
  'Address',
  'DNS',
  'PreUp',
  'PostUp',
  'PreDown',
  'PostDown',
  'AllowedIPs',
]);

function canonical<K extends string>(names: readonly K[]): ReadonlyMap<string, K> {
  return new Map(names.map((n) => [n.toLowerCase(), n]));
}
const INTERFACE_KEY_NAMES = canonical(INTERFACE_KEYS);
const PEER_KEY_NAMES = canonical(PEER_KEYS);

const KEY_FORMAT = 'not a valid key (44 characters of base64 for 32 bytes)';

// ---------------------------------------------------------------------------------------------------------
// Parsing

interface Issues {
  readonly errors: ConfigIssue[];
  readonly warnings: ConfigIssue[];
}

/** Where a value came from, for messages. */
interface Site {
  readonly line: number;
  readonly key: string;
}

interface InterfaceDraft {
  readonly line: number;
  /** Single-valued keys seen, with their lines. */
  readonly seen: Map<string, number>;
  privateKey?: PrivateKey;
  privateKeyLine: number;
  listenPort?: number;
  addresses: { value: InterfaceAddress; line: number }[];
  mtu: number;
  dns: string[];
  dnsSearch: string[];
  table: RoutingTable;
  fwmark?: number;
  preUp: string[];
  postUp: string[];
  preDown: string[];
  postDown: string[];
}

interface PeerDraft {
  readonly line: number;
  readonly seen: Map<string, number>;
  publicKey?: PublicKey;
  publicKeyLine: number;
  presharedKey?: PresharedKey;
  allowedIps: { value: Prefix; line: number }[];
  endpoint?: PeerEndpoint;
  persistentKeepalive: number;
}

type Section =
  | { kind: 'none' }
  | { kind: 'interface'; draft: InterfaceDraft }
  | { kind: 'peer'; draft: PeerDraft }
  /** An unknown section, already reported: its lines are skipped. */
  | { kind: 'skip' };

function newInterface(line: number): InterfaceDraft {
  return {
    line,
    seen: new Map(),
    privateKeyLine: 0,
    addresses: [],
    mtu: DEFAULT_MTU,
    dns: [],
    dnsSearch: [],
    table: 'auto',
    preUp: [],
    postUp: [],
    preDown: [],
    postDown: [],
  };
}

function newPeer(line: number): PeerDraft {
  return { line, seen: new Map(), publicKeyLine: 0, allowedIps: [], persistentKeepalive: 0 };
}

/**
 * Parses the text of a wg-quick configuration file. `file` names it in messages. Returns the configuration
 * and any warnings, or every error found (sorted by line) and the warnings.
 */
export function parseWgQuick(text: string, file: string): ParseOutcome {
  const issues: Issues = { errors: [], warnings: [] };
  const error = (line: number, key: string | undefined, message: string): void => {
    issues.errors.push(key === undefined ? { file, line, message } : { file, line, key, message });
  };
  const warn = (line: number, key: string, message: string): void => {
    issues.warnings.push({ file, line, key, message });
  };

  let iface: InterfaceDraft | undefined;
  const peers: PeerDraft[] = [];
  let section: Section = { kind: 'none' };

  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/);
  lines.forEach((raw, index) => {
    const line = index + 1;
    const hash = raw.indexOf('#');
    const stripped = (hash < 0 ? raw : raw.slice(0, hash)).trim();
    if (stripped === '') return;

    if (stripped.startsWith('[')) {
      const m = /^\[\s*([^\]]*?)\s*\]$/.exec(stripped);
      const name = m?.[1]?.toLowerCase();
      if (name === 'interface') {
        if (iface === undefined) {
          iface = newInterface(line);
          section = { kind: 'interface', draft: iface };
        } else {
          error(line, '[Interface]', `a second [Interface] section (the first is on line ${iface.line})`);
          // Its keys are still checked, against a draft that is then dropped.
          section = { kind: 'interface', draft: newInterface(line) };
        }
      } else if (name === 'peer') {
        const peer = newPeer(line);
        peers.push(peer);
        section = { kind: 'peer', draft: peer };
      } else {
        const shown = m !== null && isShowableName(m[1]!) ? ` [${m[1]!}]` : '';
        error(line, undefined, `unknown section${shown}: expected [Interface] or [Peer]`);
        section = { kind: 'skip' };
      }
      return;
    }

    const eq = stripped.indexOf('=');
    if (eq < 0) {
      error(line, undefined, 'expected KEY = VALUE or a [Section] header');
      return;
    }
    const written = stripped.slice(0, eq).trim();
    const value = stripped.slice(eq + 1).trim();
    if (written === '') {
      error(line, undefined, 'a line starting with "=" has no key');
      return;
    }
    const lower = written.toLowerCase();
    const shownKey = isShowableName(written) ? written : undefined;

    switch (section.kind) {
      case 'skip':
        return;
      case 'none': {
        const known = INTERFACE_KEY_NAMES.get(lower) ?? PEER_KEY_NAMES.get(lower) ?? shownKey;
        error(line, known, 'outside any section: put it under [Interface] or [Peer]');
        return;
      }
      case 'interface': {
        const key = INTERFACE_KEY_NAMES.get(lower);
        if (key === undefined) {
          const elsewhere = PEER_KEY_NAMES.get(lower);
          if (elsewhere !== undefined) error(line, elsewhere, 'belongs in a [Peer] section, not [Interface]');
          else error(line, shownKey, unknownKeyMessage('[Interface]', shownKey, INTERFACE_KEYS));
          return;
        }
        if (!firstOccurrence(section.draft.seen, key, line, error)) return;
        interfaceKey(section.draft, key, value, { line, key }, error);
        return;
      }
      case 'peer': {
        const key = PEER_KEY_NAMES.get(lower);
        if (key === undefined) {
          const elsewhere = INTERFACE_KEY_NAMES.get(lower);
          if (elsewhere !== undefined)
            error(line, elsewhere, 'belongs in the [Interface] section, not [Peer]');
          else error(line, shownKey, unknownKeyMessage('[Peer]', shownKey, PEER_KEYS));
          return;
        }
        if (!firstOccurrence(section.draft.seen, key, line, error)) return;
        peerKey(section.draft, key, value, { line, key }, error, warn);
        return;
      }
    }
  });

  crossChecks(iface, peers, error, warn);

  // A stable sort: problems found at the end (missing keys, clashes) take their place by line.
  const byLine = (list: ConfigIssue[]): ConfigIssue[] => [...list].sort((a, b) => a.line - b.line);
  const warnings = byLine(issues.warnings);
  if (iface === undefined || iface.privateKey === undefined || issues.errors.length > 0)
    return { ok: false, errors: byLine(issues.errors), warnings };
  const config: WgQuickConfig = {
    interface: {
      privateKey: iface.privateKey,
      ...(iface.listenPort === undefined ? {} : { listenPort: iface.listenPort }),
      addresses: iface.addresses.map((a) => a.value),
      mtu: iface.mtu,
      dns: iface.dns,
      dnsSearch: iface.dnsSearch,
      table: iface.table,
      ...(iface.fwmark === undefined ? {} : { fwmark: iface.fwmark }),
      preUp: iface.preUp,
      postUp: iface.postUp,
      preDown: iface.preDown,
      postDown: iface.postDown,
      saveConfig: false,
    },
    peers: peers.map((p) => ({
      publicKey: p.publicKey!,
      ...(p.presharedKey === undefined ? {} : { presharedKey: p.presharedKey }),
      allowedIps: p.allowedIps.map((a) => a.value),
      ...(p.endpoint === undefined ? {} : { endpoint: p.endpoint }),
      persistentKeepalive: p.persistentKeepalive,
      line: p.line,
    })),
  };
  return { ok: true, config, warnings };
}

type ErrorSink = (line: number, key: string | undefined, message: string) => void;
type WarningSink = (line: number, key: string, message: string) => void;

/** A name short and plain enough to quote: it cannot be (most of) a 44-character key. */
function isShowableName(name: string): boolean {
  return /^[A-Za-z][A-Za-z0-9_-]{0,23}$/.test(name);
}

function unknownKeyMessage(section: string, shown: string | undefined, known: readonly string[]): string {
  const what = shown === undefined ? 'unknown key (name not shown)' : 'unknown key';
  return `${what} in ${section}; known keys: ${known.join(', ')}`;
}

/** Records a key's first line; reports a repeated single-valued key and returns false. */
function firstOccurrence(seen: Map<string, number>, key: string, line: number, error: ErrorSink): boolean {
  const first = seen.get(key);
  if (first === undefined) {
    seen.set(key, line);
    return true;
  }
  if (LIST_KEYS.has(key)) return true;
  error(line, key, `set twice in one section (first on line ${first}); it takes one value`);
  return false;
}

function interfaceKey(
  d: InterfaceDraft,
  key: InterfaceKey,
  value: string,
  site: Site,
  error: ErrorSink,
): void {
  const fail = (message: string): void => error(site.line, key, message);
  const hookList = { PreUp: d.preUp, PostUp: d.postUp, PreDown: d.preDown, PostDown: d.postDown };
  switch (key) {
    case 'PrivateKey': {
      const k = PrivateKey.parse(value);
      if (!k.ok) return fail(KEY_FORMAT);
      d.privateKey = k.key;
      d.privateKeyLine = site.line;
      return;
    }
    case 'ListenPort': {
      const n = parseDecimal(value, 65535);
      if (n === undefined || n < 1) return fail(`must be a port number 1-65535, got ${quote(value)}`);
      d.listenPort = n;
      return;
    }
    case 'Address':
      for (const item of listItems(value, /\s*,\s*|\s+/, site, error)) {
        const a = parseInterfaceAddress(item);
        if (typeof a === 'string') {
          fail(a);
          continue;
        }
        const twin = d.addresses.find((x) => sameAddress(x.value.address, a.address));
        if (twin !== undefined)
          fail(`${a.text}: the address ${formatAddress(a.address)} is already given on line ${twin.line}`);
        else d.addresses.push({ value: a, line: site.line });
      }
      return;
    case 'MTU': {
      const n = parseDecimal(value, 0xffffffff);
      if (n === undefined || n < MIN_MTU || n > MAX_MTU)
        return fail(`must be a number ${MIN_MTU}-${MAX_MTU}, got ${quote(value)}`);
      d.mtu = n;
      return;
    }
    case 'DNS':
      for (const item of listItems(value, /\s*,\s*|\s+/, site, error)) {
        // wg-quick's rule: digits and dots, or anything with a colon, is a server; the rest are domains.
        if (/^[0-9.]+$/.test(item) || item.includes(':')) {
          const a = item.includes('%') ? undefined : parseAddress(item);
          if (a === undefined || !a.ok) fail(`${quote(item)} is not a valid IP address`);
          else d.dns.push(formatAddress(a.value));
        } else if (isDomainName(item)) d.dnsSearch.push(item);
        else fail(`${quote(item)} is neither an IP address nor a search domain`);
      }
      return;
    case 'Table': {
      const t = value.toLowerCase();
      if (t === 'off' || t === 'auto') d.table = t;
      else if (RESERVED_TABLES.has(t)) d.table = RESERVED_TABLES.get(t)!;
      else {
        const n = parseDecimal(value, 0xffffffff);
        if (n === undefined || n < 1)
          return fail(`must be off, auto, or a routing table number 1-4294967295, got ${quote(value)}`);
        d.table = n;
      }
      return;
    }
    case 'FwMark': {
      if (value.toLowerCase() === 'off') return;
      const n = /^0x[0-9a-f]{1,8}$/i.test(value)
        ? parseInt(value.slice(2), 16)
        : parseDecimal(value, 0xffffffff);
      if (n === undefined)
        return fail(`must be off, or a 32-bit number (decimal or 0x hex), got ${quote(value)}`);
      if (n !== 0) d.fwmark = n;
      return;
    }
    case 'PreUp':
    case 'PostUp':
    case 'PreDown':
    case 'PostDown':
      // An empty command is a no-op for wg-quick too.
      if (value !== '') hookList[key].push(value);
      return;
    case 'SaveConfig': {
      const b = value.toLowerCase();
      if (b === 'true') return fail('true is not supported: Weft never writes the configuration file back');
      if (b !== 'false') return fail(`must be true or false, got ${quote(value)}`);
      return;
    }
  }
}

function peerKey(
  d: PeerDraft,
  key: PeerKey,
  value: string,
  site: Site,
  error: ErrorSink,
  warn: WarningSink,
): void {
  const fail = (message: string): void => error(site.line, key, message);
  switch (key) {
    case 'PublicKey': {
      const k = PublicKey.parse(value);
      if (!k.ok) return fail(KEY_FORMAT);
      d.publicKey = k.key;
      d.publicKeyLine = site.line;
      return;
    }
    case 'PresharedKey': {
      const k = PresharedKey.parse(value);
      if (!k.ok) return fail(KEY_FORMAT);
      d.presharedKey = k.key;
      return;
    }
    case 'AllowedIPs':
      for (const item of listItems(value, /\s*,\s*/, site, error)) {
        const p = parseAllowedIp(item);
        if (typeof p === 'string') {
          fail(p);
          continue;
        }
        if (p.hostBits)
          warn(site.line, key, `${item} has host bits set; using ${formatPrefix(p.prefix)} (as wg does)`);
        const twin = d.allowedIps.find((x) => samePrefix(x.value, p.prefix));
        if (twin !== undefined)
          warn(site.line, key, `${formatPrefix(p.prefix)} is already listed on line ${twin.line}; ignored`);
        else d.allowedIps.push({ value: p.prefix, line: site.line });
      }
      return;
    case 'Endpoint': {
      const e = parsePeerEndpoint(value);
      if (typeof e === 'string') return fail(e);
      d.endpoint = e;
      return;
    }
    case 'PersistentKeepalive': {
      if (value.toLowerCase() === 'off') return;
      const n = parseDecimal(value, 65535);
      if (n === undefined) return fail(`must be off or a number of seconds 0-65535, got ${quote(value)}`);
      d.persistentKeepalive = n;
      return;
    }
  }
}

/** Checks that need the whole file: required keys and sections, and clashes between peers. */
function crossChecks(
  iface: InterfaceDraft | undefined,
  peers: PeerDraft[],
  error: ErrorSink,
  warn: WarningSink,
): void {
  if (iface === undefined) error(0, undefined, 'no [Interface] section');
  else if (iface.privateKey === undefined && !iface.seen.has('PrivateKey'))
    error(iface.line, 'PrivateKey', '[Interface] has no PrivateKey');
  const own = iface?.privateKey?.publicKey();

  const byKey = new Map<string, PeerDraft>();
  const routes = new Map<string, { peer: PeerDraft; line: number }>();
  for (const peer of peers) {
    if (peer.publicKey === undefined) {
      if (!peer.seen.has('PublicKey')) error(peer.line, 'PublicKey', '[Peer] has no PublicKey');
    } else {
      const b64 = peer.publicKey.toBase64();
      const twin = byKey.get(b64);
      if (own !== undefined && peer.publicKey.equals(own))
        error(
          peer.publicKeyLine,
          'PublicKey',
          `is this interface's own public key (from PrivateKey on line ${iface!.privateKeyLine})`,
        );
      else if (twin !== undefined)
        error(
          peer.publicKeyLine,
          'PublicKey',
          `the same key as the [Peer] on line ${twin.line} (PublicKey on line ${twin.publicKeyLine}); each peer appears once`,
        );
      else byKey.set(b64, peer);
    }
    if (peer.allowedIps.length === 0 && !peer.seen.has('AllowedIPs'))
      warn(
        peer.line,
        'AllowedIPs',
        'this peer has no AllowedIPs: no traffic can be sent to or accepted from it',
      );
    for (const { value, line } of peer.allowedIps) {
      const id = prefixId(value);
      const owner = routes.get(id);
      if (owner === undefined) routes.set(id, { peer, line });
      else
        error(
          line,
          'AllowedIPs',
          `${formatPrefix(value)} is already routed to the [Peer] on line ${owner.peer.line} (AllowedIPs on line ${owner.line})`,
        );
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Values

const RESERVED_TABLES: ReadonlyMap<string, number> = new Map([
  ['default', 253],
  ['main', 254],
  ['local', 255],
]);

/** A value for a message; one holding something key-like (a long base64 run) is not shown. */
function quote(s: string): string {
  return /[A-Za-z0-9+/]{40}/.test(s) ? '(value not shown: it looks like a key)' : JSON.stringify(s);
}

/** Decimal digits only, at most `max`. */
function parseDecimal(text: string, max: number): number | undefined {
  if (!/^\d{1,10}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= max ? n : undefined;
}

/** Splits a list value; an empty value is no entries, an empty entry is an error. */
function listItems(value: string, separator: RegExp, site: Site, error: ErrorSink): string[] {
  if (value === '') return [];
  const items = value.split(separator);
  if (items.some((i) => i === '')) {
    error(site.line, site.key, 'empty entry in the list (a stray comma?)');
    return items.filter((i) => i !== '');
  }
  return items;
}

/** `ADDR/BITS` or a bare address (a host prefix). Returns the parts, or an error message. */
function splitPrefix(text: string): { address: Address; bits: number } | string {
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const a = addrText.includes('%') ? undefined : parseAddress(addrText);
  if (a === undefined || !a.ok) return `${quote(text)} is not an IP address or ADDRESS/BITS`;
  const max = addressLength(a.value.family) * 8;
  if (slash < 0) return { address: a.value, bits: max };
  const bitsText = text.slice(slash + 1);
  const bits = parseDecimal(bitsText, max);
  if (bits === undefined || bitsText.length > 3)
    return `${quote(text)} has a bad prefix length (0-${max} for IPv${a.value.family})`;
  return { address: a.value, bits };
}

function parseInterfaceAddress(text: string): InterfaceAddress | string {
  const p = splitPrefix(text);
  if (typeof p === 'string') return p;
  const prefix: Prefix = {
    family: p.address.family,
    bytes: maskBytes(p.address.bytes, p.bits),
    bits: p.bits,
  };
  return {
    address: p.address,
    prefix,
    bits: p.bits,
    text: `${formatAddress(p.address)}/${p.bits}`,
  };
}

function parseAllowedIp(text: string): { prefix: Prefix; hostBits: boolean } | string {
  const p = splitPrefix(text);
  if (typeof p === 'string') return p;
  const bytes = maskBytes(p.address.bytes, p.bits);
  const hostBits = !sameAddress(p.address, { family: p.address.family, bytes });
  return { prefix: { family: p.address.family, bytes, bits: p.bits }, hostBits };
}

function samePrefix(a: Prefix, b: Prefix): boolean {
  return a.bits === b.bits && sameAddress(a, b);
}

function prefixId(p: Prefix): string {
  return `${Buffer.from(p.bytes).toString('hex')}/${p.bits}`;
}

/** Host name syntax (RFC 1123 labels; `_` tolerated; a trailing dot allowed); the last label not all digits. */
function isDomainName(text: string): boolean {
  const t = text.endsWith('.') ? text.slice(0, -1) : text;
  if (t.length === 0 || t.length > 253) return false;
  const labels = t.split('.');
  if (!labels.every((l) => /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(l))) return false;
  return !/^\d+$/.test(labels[labels.length - 1]!);
}

function parsePeerEndpoint(text: string): PeerEndpoint | string {
  const usage = 'must be HOST:PORT, IPV4:PORT or [IPV6]:PORT';
  if (text === '') return `is empty; ${usage}`;
  let host: string;
  let portText: string;
  const bracketed = text.startsWith('[');
  if (bracketed) {
    const m = /^\[([^\]]*)\]:(.*)$/.exec(text);
    if (m === null) return `${quote(text)}: ${usage}`;
    host = m[1]!;
    portText = m[2]!;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return `${quote(text)} has no port; ${usage}`;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) return `${quote(text)}: an IPv6 endpoint is written in brackets, [IPV6]:PORT`;
  }
  const port = parseDecimal(portText, 65535);
  if (port === undefined || port < 1) return `${quote(text)}: the port must be a number 1-65535`;
  const literal = parseEndpoint(text);
  if (literal.ok) {
    // Keep an IPv6 zone (`fe80::1%eth0`) that the canonical form drops.
    const zone = host.includes('%') ? host.slice(host.indexOf('%')) : '';
    return { host: literal.value.address + zone, port: literal.value.port };
  }
  if (bracketed) return `${quote(text)}: ${quote(host)} is not an IPv6 address`;
  if (!isDomainName(host)) return `${quote(text)}: ${quote(host)} is neither an IP address nor a host name`;
  return { host, port };
}

// ---------------------------------------------------------------------------------------------------------
// Writing

function formatTable(t: RoutingTable): string {
  return typeof t === 'number' ? String(t) : t;
}

function formatPeerEndpoint(e: PeerEndpoint): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

/**
 * Writes a configuration in canonical form: `[Interface]` then each `[Peer]`, keys in a fixed order and
 * canonical spelling, keys in base64, addresses canonical, lists on one line, defaults (MTU 1420,
 * Table auto, keepalive off, SaveConfig false) left out. `parseWgQuick` reads it back to the same
 * configuration (apart from peers' `line`). Contains the private and preshared keys: write it with care.
 *
 * Throws RangeError for a value the format cannot hold: a hook command with `#` or a line break.
 */
export function formatConfig(config: WgQuickConfig): string {
  const i = config.interface;
  const out: string[] = ['[Interface]', `PrivateKey = ${i.privateKey.toBase64()}`];
  if (i.listenPort !== undefined) out.push(`ListenPort = ${i.listenPort}`);
  if (i.addresses.length > 0) out.push(`Address = ${i.addresses.map((a) => a.text).join(', ')}`);
  const dns = [...i.dns, ...i.dnsSearch];
  if (dns.length > 0) out.push(`DNS = ${dns.join(', ')}`);
  if (i.mtu !== DEFAULT_MTU) out.push(`MTU = ${i.mtu}`);
  if (i.table !== 'auto') out.push(`Table = ${formatTable(i.table)}`);
  if (i.fwmark !== undefined && i.fwmark !== 0) out.push(`FwMark = 0x${i.fwmark.toString(16)}`);
  const hooks: [string, string[]][] = [
    ['PreUp', i.preUp],
    ['PostUp', i.postUp],
    ['PreDown', i.preDown],
    ['PostDown', i.postDown],
  ];
  for (const [key, commands] of hooks)
    for (const c of commands) {
      if (/[#\r\n]/.test(c)) throw new RangeError(`${key} command cannot contain "#" or a line break`);
      out.push(`${key} = ${c.trim()}`);
    }
  if (i.saveConfig) out.push('SaveConfig = true');
  for (const p of config.peers) {
    out.push('', '[Peer]', `PublicKey = ${p.publicKey.toBase64()}`);
    if (p.presharedKey !== undefined) out.push(`PresharedKey = ${p.presharedKey.toBase64()}`);
    if (p.allowedIps.length > 0) out.push(`AllowedIPs = ${p.allowedIps.map(formatPrefix).join(', ')}`);
    if (p.endpoint !== undefined) out.push(`Endpoint = ${formatPeerEndpoint(p.endpoint)}`);
    if (p.persistentKeepalive !== 0) out.push(`PersistentKeepalive = ${p.persistentKeepalive}`);
  }
  return `${out.join('\n')}\n`;
}
