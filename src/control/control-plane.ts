/**
 * The people VPN's control plane: every change an operator makes, from the CLI, the REST API, the web
 * console or `weft apply`, goes through this one class.
 *
 * Each operation:
 *   1. validates its input (errors name the field and carry a stable code, errors.ts);
 *   2. changes the store in one transaction, together with an audit entry (who, what, when);
 *   3. the store appends to its change feed in that same transaction; the running gateway follows the feed
 *      (gateway-sync.ts), so a change reaches the data plane whichever process made it.
 */
import { createHash } from 'node:crypto';
import { PrivateKey } from '../crypto/keys.js';
import {
  formatAddress,
  formatPrefix,
  parseAddress,
  parsePrefix,
  prefixContains,
  type Prefix,
} from '../net/ip.js';
import { allocate, gatewayAddress, isMemberAddress, pairedIp6 } from './addressing.js';
import { invalid, WeftError } from './errors.js';
import { ownerGateway } from './gateways.js';
import {
  MULTICAST_QUERIER_DEFAULTS,
  multicastQuerierSettings,
  multicastStatic,
  staticGroup,
  staticPort,
  type MulticastQuerierSettings,
  type MulticastStaticMembership,
} from './multicast-settings.js';
import type {
  ApiToken,
  AuditEntry,
  Group,
  Member,
  MemberRecord,
  MemberStatus,
  OpenVpnSettings,
  Page,
  Policy,
  PolicyInput,
  Settings,
  SharedRoute,
  TrafficSample,
} from './model.js';
import {
  hashPassword,
  hashPasswordBlocking,
  randomSecret,
  newPassword,
  newTokenSecret,
  tokenHash,
  verifyPassword,
} from './secrets.js';
import { OPENVPN_DEFAULTS, type ConfigProtocol, type OpenVpnCredential } from './model.js';
import {
  ensureMemberCredential,
  ensureOpenVpnPki,
  openVpnCrl,
  openVpnServerCredentials,
  type EnsureResult,
} from './pki.js';
import { clientPack, type ClientPack, type PackOs, type PackProtocol } from '../openvpn/client-pack.js';
import {
  openVpnProfileFingerprintText,
  renderOpenVpnProfile,
  type ProfileInput,
} from '../openvpn/profile.js';
import { StoreConflict, type Store } from './store.js';
import type { SyncPostgresStore } from './store-postgres-sync.js';
import type { SiteRecord } from './model.js';
import type { SiteSpec } from '../ipsec/site-spec.js';
import { renderRemoteConfig, type RemoteConfigFormat } from './site-remote-config.js';
import {
  checkSite,
  newPsk,
  SITE_SECRETS,
  SITE_FIELDS,
  siteSpec,
  siteView,
  type SiteInput,
  type SiteView,
} from './sites.js';
import { totpKey, verifyTotp } from './totp.js';
import * as v from './validate.js';

export const GATEWAY_KEY = 'gateway.private-key';
/** IPv4 multicast (RFC 5771): routed into the tunnel by member configs when multicast is on. */
export const MULTICAST_RANGE_4 = '224.0.0.0/4';
/** IPv6 multicast (RFC 4291 §2.7): routed into the tunnel by member configs when multicast and IPv6 are on. */
export const MULTICAST_RANGE_6 = 'ff00::/8';
/**
 * The gateway's IPv6 link-local address in every member tunnel: the source of its MLD queries (RFC 3810
 * §5.1.14 wants a link-local source). Each tunnel is a link of its own, so one address serves them all.
 */
export const GATEWAY_LINK_LOCAL = 'fe80::1';
/**
 * The link-local prefix of every member tunnel (RFC 4291 §2.5.6): the gateway's fe80::1 and each member's
 * fe80::IID share it, so a member config that allows it accepts the gateway's MLD queries and the copies of
 * packets other members sent from their link-local addresses (mDNS over IPv6 sends from fe80::).
 */
export const TUNNEL_LINK_LOCAL = 'fe80::/64';
export const ADMIN_USER = 'admin';

export interface InitInput {
  endpoint: string;
  subnet: string;
  subnet6?: string | null;
  dns?: readonly string[];
  natEgress?: string | null;
  interfaceName?: string;
  apiListen?: string;
  defaultPolicy?: string;
  persistentKeepalive?: number;
  mtu?: number;
  /** The OpenVPN section; keys left out take OPENVPN_DEFAULTS (or, in updateSettings, the current values). */
  openvpn?: Partial<Record<keyof OpenVpnSettings, unknown>> | null;
  /** Multicast across the overlay (off by default). */
  multicast?: boolean;
  /** The LAN interface the gateway proxies IGMP for (docs/multicast.md); null: none. */
  multicastLan?: string | null;
  /** The querier's timers (any subset; null: the defaults). */
  multicastQuerier?: unknown;
  /** Static memberships, [{port, group}] (null: none). */
  multicastStatic?: unknown;
}

export interface InitResult {
  readonly adminPassword: string;
  readonly apiToken: string;
  readonly gatewayPublicKey: string;
}

export interface MemberInput {
  name: string;
  ip?: string | null;
  groups?: readonly string[];
  expiresAt?: string | null;
  publicKey?: string | null;
  fullTunnel?: boolean;
  disabled?: boolean;
}

export interface MemberPatch {
  groups?: readonly string[];
  expiresAt?: string | null;
  fullTunnel?: boolean;
  disabled?: boolean;
}

/** The config a member was last handed, against the one it would get now. */
export interface ConfigDownloadState {
  /** When it was handed out (CLI `member config`, API download or QR code, one-time link). */
  readonly at: string;
  /** The config changed since: a policy, route, setting or the member's key or groups moved its content. */
  readonly stale: boolean;
}

export interface MemberView extends Member {
  /** Enabled and not expired: the gateway accepts it. */
  readonly active: boolean;
  readonly status: MemberStatus | null;
  /** null until the member's config is handed out for the first time. */
  readonly configDownload: ConfigDownloadState | null;
  /** The same for its OpenVPN profile (stale after a rotation, or a change of ports, ciphers or server). */
  readonly openvpnConfigDownload: ConfigDownloadState | null;
}

/** What every member's config is made from besides the member: read once for a page of members. */
interface ConfigInputs {
  readonly settings: Settings;
  readonly gateway: { readonly ip: string; readonly ip6: string | null };
  readonly gatewayPublicKey: string;
  readonly routes: readonly SharedRoute[];
  readonly policies: readonly Policy[];
}

/** The query of a list endpoint, as GET /members takes it. */
export interface PageQuery {
  readonly after?: string;
  readonly limit?: number | string;
  readonly search?: string;
}

export type SettingsPatch = Partial<
  Omit<Settings, 'subnet' | 'subnet6' | 'openvpn' | 'multicastLan' | 'multicastQuerier' | 'multicastStatic'>
> & {
  readonly openvpn?: Partial<Record<keyof OpenVpnSettings, unknown>>;
  /** null: no LAN interface. */
  readonly multicastLan?: string | null;
  /** Only the keys given change; null: the defaults. */
  readonly multicastQuerier?: unknown;
  /** Replaces the list; null: none. */
  readonly multicastStatic?: unknown;
};

/** One-time download links: how long one lives, in minutes (default a day, at most a week). */
export const LINK_TTL_MINUTES = { min: 1, max: 10_080, default: 1440 } as const;

/** What checking a console login found. */
export type AdminLogin =
  | { readonly ok: true; readonly username: string }
  /** Wrong username or password (which of the two is not told), or a wrong or replayed TOTP code. */
  | { readonly ok: false; readonly reason: 'credentials' | 'totp' }
  /** The right password, but TOTP is on and no code came with it: not a guess, the first step of a login. */
  | { readonly ok: false; readonly reason: 'totp-missing' };

/** The admin password's minimum length. */
export const ADMIN_PASSWORD_MIN = 12;

const DEFAULTS = {
  interfaceName: 'weft0',
  apiListen: '127.0.0.1:8780',
  defaultPolicy: 'deny',
  persistentKeepalive: 25,
  mtu: 1420,
} as const;

export function settingsFrom(input: InitInput): Settings {
  const ep = v.endpoint('endpoint', input.endpoint);
  const subnet = v.subnet('subnet', input.subnet, 4);
  const subnet6 =
    input.subnet6 === undefined || input.subnet6 === null ? null : v.subnet('subnet6', input.subnet6, 6);
  return {
    endpoint: ep.text,
    listenPort: ep.port,
    interfaceName: v.interfaceName('interfaceName', input.interfaceName ?? DEFAULTS.interfaceName),
    subnet: formatPrefix(subnet),
    subnet6: subnet6 ? formatPrefix(subnet6) : null,
    dns: v.dnsServers('dns', input.dns),
    natEgress: natEgress(input),
    defaultPolicy: v.policyAction('defaultPolicy', input.defaultPolicy ?? DEFAULTS.defaultPolicy),
    persistentKeepalive: v.integer(
      'persistentKeepalive',
      input.persistentKeepalive ?? DEFAULTS.persistentKeepalive,
      0,
      65535,
    ),
    mtu: v.integer('mtu', input.mtu ?? DEFAULTS.mtu, 1280, 9000),
    apiListen: v.listenAddress('apiListen', input.apiListen ?? DEFAULTS.apiListen),
    openvpn: v.openVpnSettings('openvpn', input.openvpn, OPENVPN_DEFAULTS),
    // Only when on: stores and configs from before multicast existed stay as they were.
    ...(multicastSetting(input.multicast) ? { multicast: true } : {}),
    ...multicastLan(input),
    ...multicastTimersAndStatic(input),
  };
}

/** Querier timers and static memberships; each only when it differs from nothing (older stores unchanged). */
function multicastTimersAndStatic(input: InitInput): {
  multicastQuerier?: MulticastQuerierSettings;
  multicastStatic?: readonly MulticastStaticMembership[];
} {
  const timers = multicastQuerierSettings(
    'multicastQuerier',
    input.multicastQuerier,
    MULTICAST_QUERIER_DEFAULTS,
  );
  const statics = multicastStatic('multicastStatic', input.multicastStatic);
  return {
    ...(JSON.stringify(timers) !== JSON.stringify(MULTICAST_QUERIER_DEFAULTS)
      ? { multicastQuerier: timers }
      : {}),
    ...(statics.length > 0 ? { multicastStatic: statics } : {}),
  };
}

/** The LAN interface of the IGMP proxy: a kernel interface name, not the gateway's own tunnel. */
function multicastLan(input: InitInput): { multicastLan?: string } {
  if (input.multicastLan === undefined || input.multicastLan === null) return {};
  const lan = v.interfaceName('multicastLan', input.multicastLan);
  if (lan === (input.interfaceName ?? DEFAULTS.interfaceName))
    throw invalid(
      'multicastLan',
      "is the gateway's own WireGuard interface; name a LAN interface (e.g. eth1)",
    );
  return { multicastLan: lan };
}

function multicastSetting(value: unknown): boolean {
  if (value === undefined || value === null || value === false) return false;
  if (value === true) return true;
  throw invalid('multicast', 'must be true or false');
}

/** The NAT egress interface: a kernel interface name, and not the gateway's own tunnel. */
function natEgress(input: InitInput): string | null {
  if (input.natEgress === undefined || input.natEgress === null) return null;
  const egress = v.interfaceName('natEgress', input.natEgress);
  if (egress === (input.interfaceName ?? DEFAULTS.interfaceName))
    throw invalid('natEgress', "is the gateway's own WireGuard interface; name the uplink (e.g. eth0)");
  return egress;
}

/**
 * The networks the gateway's host is attached to through its uplink, as seen now: the subnets of the
 * interface holding the default route and of the one holding the endpoint's address (when it is one).
 */
export type UplinkNetworks = (endpointHost: string) => readonly v.HostNetwork[];

export interface ControlPlaneOptions {
  /** Read at each check, so a route added after the uplink changed is judged by the new one (default: none). */
  readonly uplinks?: UplinkNetworks;
}

function parsed(text: string): Prefix {
  const r = parsePrefix(text);
  if (!r.ok) throw new WeftError('WEFT_ERR_INTERNAL', `stored prefix ${text} is invalid`);
  return r.value;
}

/** How many free addresses a member added without one is tried at, when other writers take them first. */
const ALLOCATION_ATTEMPTS = 8;

const CONFLICTS: Record<string, [WeftError['code'], string]> = {
  'members.name': ['WEFT_ERR_MEMBER_EXISTS', 'name'],
  'members.ip': ['WEFT_ERR_IP_CONFLICT', 'ip'],
  'members.ip6': ['WEFT_ERR_IP_CONFLICT', 'ip'],
  'members.public_key': ['WEFT_ERR_KEY_CONFLICT', 'publicKey'],
  'groups.name': ['WEFT_ERR_GROUP_EXISTS', 'name'],
  'routes.cidr': ['WEFT_ERR_ROUTE_EXISTS', 'cidr'],
  'member_groups.group': ['WEFT_ERR_GROUP_NOT_FOUND', 'groups'],
};

export class ControlPlane {
  /** Where the next address search starts: just past the last one this instance allocated. */
  private allocationHint: bigint | undefined;
  private gatewayKeyCache: { text: string; key: PrivateKey } | undefined;
  /**
   * Per admin account, the last TOTP step a code was accepted for: a code is good once (RFC 6238 section 5.2),
   * so one seen over a shoulder or in a proxy log cannot be used again within its window. In memory: the CLI
   * never takes codes, and after a restart the window has long passed for any code seen before it.
   */
  private readonly totpLastStep = new Map<string, bigint>();
  /** A hash of no password, checked against when the username is unknown (computed once, when first needed). */
  private static unknownUserHash: Promise<string> | undefined;

  constructor(
    readonly store: Store,
    private readonly clock: () => Date = () => new Date(),
    private readonly options: ControlPlaneOptions = {},
  ) {}

  /** Checks init input without touching anything (throws a WeftError naming the field). */
  static validateInit(input: InitInput): Settings {
    return settingsFrom(input);
  }

  /** Creates the settings, the gateway key pair, the admin account and a first API token. */
  static init(store: Store, input: InitInput, now: Date = new Date()): InitResult {
    const settings = settingsFrom(input);
    if (store.getSettings())
      throw new WeftError('WEFT_ERR_ALREADY_INITIALIZED', 'the store is already initialised');
    const key = PrivateKey.generate();
    const adminPassword = newPassword();
    const apiToken = newTokenSecret();
    store.transaction(() => {
      store.putSettings(settings);
      store.putSecret(GATEWAY_KEY, key.toBase64());
      // `init` runs in `weft server init`, a process without a tunnel: blocking for one scrypt run is fine there.
      store.putAdmin({
        username: ADMIN_USER,
        passwordHash: hashPasswordBlocking(adminPassword),
        totpSecret: null,
      });
      store.insertToken('init', tokenHash(apiToken), now.toISOString());
      store.appendAudit({
        at: now.toISOString(),
        actor: 'init',
        action: 'server.init',
        target: settings.interfaceName,
        detail: { ...settings },
      });
    });
    return { adminPassword, apiToken, gatewayPublicKey: key.publicKey().toBase64() };
  }

  private now(): string {
    return this.clock().toISOString();
  }

  private audit(actor: string, action: string, target: string, detail: Record<string, unknown> = {}): void {
    this.store.appendAudit({ at: this.now(), actor, action, target, detail });
  }

  /**
   * Runs a change with its audit entry in one transaction. The checks before each insert make conflicts
   * rare; one that still reaches the store (another process won a race) gets the code the check would have.
   */
  private change<T>(fn: () => T): T {
    try {
      return this.store.transaction(fn);
    } catch (e) {
      if (e instanceof StoreConflict && e.message.startsWith('a site named '))
        throw new WeftError('WEFT_ERR_SITE_EXISTS', e.message, 'name');
      if (e instanceof StoreConflict) {
        const column = e.message.split(':')[0] ?? '';
        const [code, field] = CONFLICTS[column] ?? ['WEFT_ERR_VALIDATION', undefined];
        throw new WeftError(code, e.message, field);
      }
      throw e;
    }
  }

  // ---- settings and the gateway's key ----

  /** The settings; ones written before OpenVPN existed get its defaults. */
  settings(): Settings & { readonly openvpn: OpenVpnSettings } {
    const s = this.store.getSettings();
    if (!s) throw new WeftError('WEFT_ERR_NOT_INITIALIZED', 'the store is not initialised');
    return { ...s, openvpn: s.openvpn ?? OPENVPN_DEFAULTS };
  }

  gatewayPrivateKey(): PrivateKey {
    const text = this.store.getSecret(GATEWAY_KEY);
    if (this.gatewayKeyCache?.text === text && this.gatewayKeyCache) return this.gatewayKeyCache.key;
    const r = text === undefined ? undefined : PrivateKey.parse(text);
    if (!r?.ok) throw new WeftError('WEFT_ERR_NOT_INITIALIZED', 'the gateway key is missing from the store');
    this.gatewayKeyCache = { text: text!, key: r.key };
    return r.key;
  }

  gatewayPublicKey(): string {
    return this.gatewayPrivateKey().publicKey().toBase64();
  }

  /** The gateway's own tunnel addresses ("10.66.0.1", "fd66::1"). */
  gatewayAddresses(): { ip: string; ip6: string | null } {
    const s = this.settings();
    return {
      ip: formatAddress(gatewayAddress(parsed(s.subnet))),
      ip6: s.subnet6 ? formatAddress(gatewayAddress(parsed(s.subnet6))) : null,
    };
  }

  /** Changes settings other than the subnets (members' addresses depend on those). */
  updateSettings(actor: string, patchArg: SettingsPatch): Settings {
    // A key present with the value undefined means "not given", as when absent.
    const patch = Object.fromEntries(
      Object.entries(patchArg).filter(([, value]) => value !== undefined),
    ) as SettingsPatch;
    const current = this.settings();
    const merged: InitInput = {
      ...current,
      ...patch,
      // A partial openvpn section changes only the keys it gives.
      openvpn: v.openVpnSettings('openvpn', patch.openvpn, current.openvpn),
      // A partial querier section changes only the keys it gives; null goes back to the defaults.
      multicastQuerier:
        patch.multicastQuerier === null
          ? null
          : multicastQuerierSettings(
              'multicastQuerier',
              patch.multicastQuerier,
              current.multicastQuerier ?? MULTICAST_QUERIER_DEFAULTS,
            ),
      endpoint: patch.endpoint ?? current.endpoint,
      subnet: current.subnet,
      subnet6: current.subnet6,
    };
    const next = settingsFrom(merged);
    // The endpoint's port is what members dial; listenPort follows it unless given on its own.
    const settings =
      patch.listenPort !== undefined && patch.endpoint === undefined
        ? { ...next, listenPort: v.integer('listenPort', patch.listenPort, 1, 65535) }
        : next;
    // Over both key sets: an optional setting turned off (multicast) leaves the new settings without its key.
    const changed = [...new Set([...Object.keys(settings), ...Object.keys(current)])].filter(
      (k) => JSON.stringify(settings[k as keyof Settings]) !== JSON.stringify(current[k as keyof Settings]),
    );
    if (changed.length === 0) return current;
    this.change(() => {
      this.store.putSettings(settings);
      this.audit(actor, 'settings.update', 'settings', {
        changed: Object.fromEntries(changed.map((k) => [k, settings[k as keyof Settings]])),
      });
    });
    return settings;
  }

  /** Static multicast memberships (settings.multicastStatic), ordered by port then group. */
  listMulticastStatic(): readonly MulticastStaticMembership[] {
    return this.settings().multicastStatic ?? [];
  }

  /**
   * Joins `port` (member:NAME, site:NAME or lan) to `group` without reports; a running gateway applies it
   * live. Adding one that exists changes nothing. Returns the entry, canonical.
   */
  addMulticastStatic(actor: string, port: unknown, group: unknown): MulticastStaticMembership {
    const entry = { port: staticPort('port', port), group: staticGroup('group', group) };
    this.store.transaction(() => {
      const list = this.listMulticastStatic();
      if (list.some((e) => e.port === entry.port && e.group === entry.group)) return;
      this.updateSettings(actor, { multicastStatic: [...list, entry] });
    });
    return entry;
  }

  /** Removes a static membership; false when there was none. */
  removeMulticastStatic(actor: string, port: unknown, group: unknown): boolean {
    const p = staticPort('port', port);
    const g = staticGroup('group', group);
    return this.store.transaction(() => {
      const list = this.listMulticastStatic();
      const rest = list.filter((e) => !(e.port === p && e.group === g));
      if (rest.length === list.length) return false;
      this.updateSettings(actor, { multicastStatic: rest });
      return true;
    });
  }

  /** The subnets fix every member's address, so they change only while the network has no members. */
  changeSubnets(actor: string, subnetArg: string, subnet6Arg: string | null): Settings {
    const current = this.settings();
    const next = settingsFrom({ ...current, subnet: subnetArg, subnet6: subnet6Arg });
    if (next.subnet === current.subnet && next.subnet6 === current.subnet6) return current;
    return this.change(() => {
      if (this.store.countMembers() > 0)
        throw invalid('subnet', 'cannot change while the network has members (their addresses are fixed)');
      this.store.putSettings(next);
      this.audit(actor, 'settings.update', 'settings', { subnet: next.subnet, subnet6: next.subnet6 });
      return next;
    });
  }

  // ---- members ----

  private memberRecord(name: string): MemberRecord {
    const m = this.store.getMember(name);
    if (!m) throw new WeftError('WEFT_ERR_MEMBER_NOT_FOUND', `member ${name} does not exist`, 'name');
    return m;
  }

  isActive(m: Member, at: Date = this.clock()): boolean {
    return !m.disabled && (m.expiresAt === null || Date.parse(m.expiresAt) > at.getTime());
  }

  view(m: MemberRecord, inputs?: ConfigInputs): MemberView {
    const { privateKey: _secret, ...member } = m;
    return {
      ...member,
      active: this.isActive(m),
      status: this.store.getStatus(m.name) ?? null,
      configDownload: this.configDownload(m, inputs),
      openvpnConfigDownload: this.openVpnConfigDownload(m.name),
    };
  }

  private configDownload(m: MemberRecord, inputs: ConfigInputs | undefined): ConfigDownloadState | null {
    const delivery = this.store.getConfigDelivery(m.name);
    if (!delivery) return null;
    const current = this.configFingerprint(m, inputs ?? this.configInputs());
    return { at: delivery.deliveredAt, stale: delivery.fingerprint !== current };
  }

  getMember(name: string): MemberView {
    return this.view(this.memberRecord(v.name('name', name)));
  }

  listMembers(query: { after?: string; limit?: number | string; search?: string } = {}): Page<MemberView> {
    const limit = v.integer('limit', query.limit ?? 100, 1, 1000);
    const search = query.search ? v.text('search', query.search, 100) : undefined;
    if (query.after !== undefined) v.text('after', query.after, 100);
    const rows = this.store.listMembers({ after: query.after, limit: limit + 1, search });
    const inputs = this.configInputs();
    const items = rows.slice(0, limit).map((m) => this.view(m, inputs));
    return {
      items,
      next: rows.length > limit ? (items[items.length - 1]?.name ?? null) : null,
      total: this.store.countMembers(search),
    };
  }

  private checkGroups(field: string, groups: readonly unknown[] | undefined): string[] {
    const out = [
      ...new Set(v.list(field, groups, v.LIMITS.memberGroups).map((g, i) => v.name(`${field}[${i}]`, g))),
    ];
    out.forEach((g) => {
      if (!this.store.getGroup(g))
        throw new WeftError('WEFT_ERR_GROUP_NOT_FOUND', `${field}: group ${g} does not exist`, field);
    });
    return out.sort();
  }

  /** The address a new member gets: the one asked for (checked) or the lowest free one. */
  private assignIp(requested: string | null | undefined): { ip: string; ip6: string | null } {
    const s = this.settings();
    const subnet = parsed(s.subnet);
    let ip: string;
    if (requested !== undefined && requested !== null) {
      const a = v.address('ip', requested);
      if (!prefixContains(subnet, a))
        throw new WeftError(
          'WEFT_ERR_IP_OUTSIDE_SUBNET',
          `ip: ${requested} is outside the subnet ${s.subnet}`,
          'ip',
        );
      if (!isMemberAddress(subnet, a))
        throw new WeftError(
          'WEFT_ERR_IP_OUTSIDE_SUBNET',
          `ip: ${requested} is reserved (the network, the gateway's ${formatAddress(gatewayAddress(subnet))} or the broadcast address)`,
          'ip',
        );
      ip = formatAddress(a);
      const holder = this.store.getMemberByIp(ip);
      if (holder)
        throw new WeftError(
          'WEFT_ERR_IP_CONFLICT',
          `ip: ${ip} already belongs to member ${holder.name}`,
          'ip',
        );
    } else {
      const free = this.nextFree(s);
      ip = free.address;
      this.allocationHint = free.host + 1n;
    }
    return { ip, ip6: this.pairedIp6(s, ip) };
  }

  /** The address the next member added without `ip` gets: where the search from the hint lands. */
  private nextFree(s: Settings): { address: string; host: bigint } {
    const free = allocate(
      parsed(s.subnet),
      (a) => this.store.getMemberByIp(a) !== undefined,
      this.allocationHint,
    );
    if (!free)
      throw new WeftError('WEFT_ERR_SUBNET_FULL', `the subnet ${s.subnet} has no free address`, 'ip');
    return free;
  }

  private pairedIp6(s: Settings, ip: string): string | null {
    const parsedIp = parseAddress(ip);
    return s.subnet6 && parsedIp.ok ? pairedIp6(parsed(s.subnet), parsed(s.subnet6), parsedIp.value) : null;
  }

  /**
   * The addresses the next `addMember` of this instance would give a member without `ip`, allocating nothing.
   * Exact for this instance only: another process (the CLI) searches from its own hint.
   */
  suggestIp(): { ip: string; ip6: string | null } {
    const s = this.settings();
    const ip = this.nextFree(s).address;
    return { ip, ip6: this.pairedIp6(s, ip) };
  }

  addMember(actor: string, input: MemberInput): MemberView {
    const name = v.memberName('name', input.name);
    // Two writers on one store (two gateways' APIs, the CLI beside a gateway) can pick the same free address
    // at once; the store's unique index refuses the later insert, which then takes the next free address. A
    // requested address is never changed: its conflict is the caller's error.
    const requested = input.ip !== undefined && input.ip !== null;
    for (let attempt = 1; ; attempt++) {
      try {
        return this.insertMember(actor, name, input);
      } catch (e) {
        const raced = e instanceof WeftError && e.code === 'WEFT_ERR_IP_CONFLICT';
        if (requested || !raced || attempt >= ALLOCATION_ATTEMPTS) throw e;
      }
    }
  }

  private insertMember(actor: string, name: string, input: MemberInput): MemberView {
    return this.change(() => {
      if (this.store.getMember(name))
        throw new WeftError('WEFT_ERR_MEMBER_EXISTS', `member ${name} already exists`, 'name');
      const groups = this.checkGroups('groups', input.groups);
      const expiresAt = v.expiry('expiresAt', input.expiresAt);
      const fullTunnel = input.fullTunnel === undefined ? false : v.bool('fullTunnel', input.fullTunnel);
      const disabled = input.disabled === undefined ? false : v.bool('disabled', input.disabled);
      const keys = this.keysFor('publicKey', input.publicKey);
      const { ip, ip6 } = this.assignIp(input.ip);
      const now = this.now();
      const record: MemberRecord = {
        name,
        ip,
        ip6,
        publicKey: keys.publicKey,
        privateKey: keys.privateKey,
        hasPrivateKey: keys.privateKey !== null,
        groups,
        disabled,
        expiresAt,
        fullTunnel,
        createdAt: now,
        updatedAt: now,
      };
      this.store.insertMember(record);
      this.audit(actor, 'member.add', name, {
        ip,
        ip6,
        groups,
        expiresAt,
        fullTunnel,
        disabled,
        ownKey: keys.privateKey === null,
      });
      return this.view(record);
    });
  }

  private keysFor(
    field: string,
    publicKey: string | null | undefined,
  ): { publicKey: string; privateKey: string | null } {
    if (publicKey !== undefined && publicKey !== null) {
      const pub = v.publicKey(field, publicKey);
      if (pub === this.gatewayPublicKey()) throw invalid(field, "is the gateway's own key");
      const holder = this.store.getMemberByPublicKey(pub);
      if (holder)
        throw new WeftError(
          'WEFT_ERR_KEY_CONFLICT',
          `${field}: the key already belongs to member ${holder.name}`,
          field,
        );
      return { publicKey: pub, privateKey: null };
    }
    const key = PrivateKey.generate();
    return { publicKey: key.publicKey().toBase64(), privateKey: key.toBase64() };
  }

  updateMember(actor: string, nameArg: string, patch: MemberPatch): MemberView {
    const name = v.name('name', nameArg);
    return this.change(() => {
      const m = this.memberRecord(name);
      const next: MemberRecord = {
        ...m,
        groups: patch.groups === undefined ? m.groups : this.checkGroups('groups', patch.groups),
        expiresAt: patch.expiresAt === undefined ? m.expiresAt : v.expiry('expiresAt', patch.expiresAt),
        fullTunnel: patch.fullTunnel === undefined ? m.fullTunnel : v.bool('fullTunnel', patch.fullTunnel),
        disabled: patch.disabled === undefined ? m.disabled : v.bool('disabled', patch.disabled),
      };
      const changed = (['groups', 'expiresAt', 'fullTunnel', 'disabled'] as const).filter(
        (k) => JSON.stringify(next[k]) !== JSON.stringify(m[k]),
      );
      if (changed.length === 0) return this.view(m);
      const updated = { ...next, updatedAt: this.now() };
      this.store.updateMember(updated);
      const action =
        changed.length === 1 && changed[0] === 'disabled'
          ? updated.disabled
            ? 'member.disable'
            : 'member.enable'
          : 'member.update';
      this.audit(actor, action, name, Object.fromEntries(changed.map((k) => [k, updated[k]])));
      return this.view(updated);
    });
  }

  setDisabled(actor: string, name: string, disabled: boolean): MemberView {
    return this.updateMember(actor, name, { disabled });
  }

  /** Removes the member; its OpenVPN certificate and tls-crypt-v2 client key go on the revocation list. */
  removeMember(actor: string, nameArg: string): void {
    const name = v.name('name', nameArg);
    this.change(() => {
      const m = this.memberRecord(name);
      const revoked = this.store.revokeOpenVpnCredential(name, this.now(), 'removed');
      this.store.deleteMember(name);
      this.audit(actor, 'member.remove', name, {
        ip: m.ip,
        publicKey: m.publicKey,
        ...(revoked ? { revokedSerial: revoked.serial } : {}),
      });
    });
  }

  /**
   * New keys, for both protocols unless `protocols` narrows it. WireGuard: generated here, or the member's own
   * public key; the old key stops working at once. OpenVPN: the current certificate and tls-crypt-v2 client
   * key are revoked at once; new ones are issued when next asked for (`openVpnCredential`; the CLI does so
   * right after). The member row is updated either way, so a running gateway ends the member's sessions.
   */
  rotateMember(
    actor: string,
    nameArg: string,
    publicKey?: string | null,
    protocols: readonly ConfigProtocol[] = ['wireguard', 'openvpn'],
  ): MemberView {
    const name = v.name('name', nameArg);
    if (protocols.length === 0) throw invalid('protocols', 'must name wireguard, openvpn or both');
    const wireguard = protocols.includes('wireguard');
    if (!wireguard && publicKey !== undefined && publicKey !== null)
      throw invalid('publicKey', 'is a WireGuard key: it cannot go with an OpenVPN-only rotation');
    return this.change(() => {
      const m = this.memberRecord(name);
      const keys = wireguard
        ? this.keysFor('publicKey', publicKey)
        : { publicKey: m.publicKey, privateKey: m.privateKey };
      const updated: MemberRecord = {
        ...m,
        publicKey: keys.publicKey,
        privateKey: keys.privateKey,
        hasPrivateKey: keys.privateKey !== null,
        updatedAt: this.now(),
      };
      this.store.updateMember(updated);
      const revoked = protocols.includes('openvpn')
        ? this.store.revokeOpenVpnCredential(name, this.now(), 'rotated')
        : undefined;
      this.audit(actor, 'member.rotate', name, {
        ...(wireguard
          ? { previousPublicKey: m.publicKey, publicKey: keys.publicKey, ownKey: keys.privateKey === null }
          : {}),
        ...(revoked ? { revokedSerial: revoked.serial } : {}),
      });
      return this.view(updated);
    });
  }

  /**
   * Prefixes a member's device should send into the tunnel: the gateway's own addresses, plus what its
   * allow (send) policies reach (the member subnet for a group destination, everything for "any"), or everything
   * for a full-tunnel member. Deny policies are not subtracted: the gateway enforces them per packet.
   */
  memberAllowedIps(m: Member, inputs: ConfigInputs = this.configInputs()): string[] {
    const { settings: s, gateway: gw } = inputs;
    const out = [`${gw.ip}/32`, ...(gw.ip6 ? [`${gw.ip6}/128`] : [])];
    const everything = ['0.0.0.0/0', ...(s.subnet6 ? ['::/0'] : [])];
    if (m.fullTunnel) return everything;
    const applies = (p: Policy): boolean => p.group === '*' || m.groups.includes(p.group);
    const reach: string[] =
      s.defaultPolicy === 'allow'
        ? [s.subnet, ...(s.subnet6 ? [s.subnet6] : []), ...inputs.routes.map((r) => r.cidr)]
        : [];
    for (const p of inputs.policies) {
      // Receive rules say which groups' copies it may get: copies come in through the multicast ranges below.
      if (p.action !== 'allow' || p.direction === 'receive' || !applies(p)) continue;
      if (p.destination === 'any') return everything;
      if (p.destination.startsWith('group:')) reach.push(s.subnet, ...(s.subnet6 ? [s.subnet6] : []));
      else reach.push(p.destination);
    }
    // Multicast: the client routes groups into the tunnel, and accepts copies whose source is another member
    // (WireGuard drops an inner source outside the peer's AllowedIPs).
    // With IPv6: groups ff00::/8, the IPv6 subnet, and the tunnel's link-local prefix (the source of the
    // gateway's MLD queries, and of other members' link-local traffic such as mDNS to ff02::fb).
    if (s.multicast === true) {
      reach.push(s.subnet, MULTICAST_RANGE_4);
      if (s.subnet6) reach.push(s.subnet6, MULTICAST_RANGE_6, TUNNEL_LINK_LOCAL);
    }
    return [...new Set([...out, ...reach])];
  }

  private configInputs(): ConfigInputs {
    return {
      settings: this.settings(),
      gateway: this.gatewayAddresses(),
      gatewayPublicKey: this.gatewayPublicKey(),
      routes: this.store.listRoutes(),
      policies: this.store.listPolicies(),
    };
  }

  /** The config's lines, with `keyLines` where the [Interface] section's private key goes. */
  private renderConfig(m: MemberRecord, inputs: ConfigInputs, keyLines: string): string {
    const s = inputs.settings;
    const addresses = [`${m.ip}/32`, ...(m.ip6 ? [`${m.ip6}/128`] : [])];
    // Multicast with IPv6: a link-local address to send MLD from (RFC 3810 §5.2.13), for clients whose
    // tunnel interface gets none by itself.
    if (s.multicast === true && m.ip6) addresses.push(`${linkLocalOf(m.ip6)}/64`);
    const lines = [
      `# Weft member ${m.name}`,
      '[Interface]',
      keyLines,
      `Address = ${addresses.join(', ')}`,
      ...(s.dns.length > 0 ? [`DNS = ${s.dns.join(', ')}`] : []),
      `MTU = ${s.mtu}`,
      '',
      '[Peer]',
      `PublicKey = ${inputs.gatewayPublicKey}`,
      `Endpoint = ${s.endpoint}`,
      `AllowedIPs = ${this.memberAllowedIps(m, inputs).join(', ')}`,
      ...(s.persistentKeepalive > 0 ? [`PersistentKeepalive = ${s.persistentKeepalive}`] : []),
      '',
    ];
    return lines.join('\n');
  }

  /**
   * A fingerprint of the config the member would get now: SHA-256 of the config with its private key left
   * out. The member's public key stands in for it, so a rotation changes the fingerprint as well; nothing
   * secret goes into the hash, and only the hash is stored.
   */
  configFingerprint(m: MemberRecord, inputs: ConfigInputs = this.configInputs()): string {
    const keyLine = `# key: ${m.hasPrivateKey ? 'kept by the server' : "the member's own"}, public ${m.publicKey}`;
    const text = this.renderConfig(m, inputs, keyLine);
    return `sha256:${createHash('sha256').update(text).digest('base64')}`;
  }

  /** A wg-quick config for the member's device. Without a stored private key, a placeholder stands in. */
  memberConfig(nameArg: string): string {
    const m = this.memberRecord(v.name('name', nameArg));
    return this.renderConfig(
      m,
      this.configInputs(),
      m.privateKey
        ? `PrivateKey = ${m.privateKey}`
        : '# This member brought its own key: put its private key on the next line.\nPrivateKey = REPLACE_WITH_YOUR_PRIVATE_KEY',
    );
  }

  /**
   * The member's config as handed out (CLI, API download, QR code, one-time link): records its fingerprint,
   * so the member's view can say when a later change made it stale.
   */
  deliverConfig(nameArg: string): string {
    const name = v.name('name', nameArg);
    return this.change(() => {
      const m = this.memberRecord(name);
      const config = this.memberConfig(name);
      this.store.putConfigDelivery({ name, fingerprint: this.configFingerprint(m), deliveredAt: this.now() });
      return config;
    });
  }

  /**
   * Members whose last handed-out config no longer matches the one they would get now, by name; an OpenVPN
   * profile that went stale (rotated or expired credentials, new ports, ciphers or server name) adds
   * "NAME (openvpn)".
   */
  staleConfigs(): string[] {
    const inputs = this.configInputs();
    const wireguard = this.store.allConfigDeliveries().flatMap((d) => {
      const m = this.store.getMember(d.name);
      return m && this.configFingerprint(m, inputs) !== d.fingerprint ? [d.name] : [];
    });
    const deliveries = this.store.allConfigDeliveries('openvpn');
    // Read once for every member: what all profiles share (a delivery means the PKI exists).
    const common = deliveries.length > 0 ? this.openVpnCommon() : undefined;
    const openvpn = deliveries.flatMap((d) =>
      this.openVpnFingerprint(d.name, common) !== d.fingerprint ? [`${d.name} (openvpn)`] : [],
    );
    return [...wireguard, ...openvpn].sort();
  }

  // ---- OpenVPN: the CA, member credentials, profiles ----

  /**
   * Makes the CA, the tls-crypt-v2 server key and the gateway's server certificate when missing, and renews
   * the server certificate when it nears its end or the endpoint's host changed (pki.ts ensureOpenVpnPki).
   */
  async ensureOpenVpn(): Promise<EnsureResult> {
    return ensureOpenVpnPki(this.store, v.endpoint('endpoint', this.settings().endpoint).host, this.clock());
  }

  /** The member's OpenVPN credentials, issued now when it has none (lazily: see pki.ts). */
  async openVpnCredential(nameArg: string): Promise<OpenVpnCredential> {
    const name = v.name('name', nameArg);
    this.memberRecord(name);
    await this.ensureOpenVpn();
    return ensureMemberCredential(this.store, name, this.settings().openvpn, this.clock());
  }

  /** What every member's profile shares: remotes, ciphers, the CA and the server's name. */
  private openVpnCommon(): Omit<ProfileInput, 'memberName' | 'certificate' | 'privateKey' | 'tlsCryptV2Key'> {
    const s = this.settings();
    const server = openVpnServerCredentials(this.store);
    return {
      hosts: [v.endpoint('endpoint', s.endpoint).host, ...this.gatewayHosts()],
      udpPort: s.openvpn.udpPort,
      tcpPort: s.openvpn.tcpPort,
      serverName: server.serverName,
      dataCiphers: s.openvpn.dataCiphers,
      ca: server.ca,
    };
  }

  /**
   * The hosts of the gateways registered on a shared store (`weft gateway join --endpoint`), by name: an OpenVPN member dials each in turn when the one it uses goes silent. None on SQLite.
   */
  private gatewayHosts(): string[] {
    // The test of isSyncPostgresStore, written out: importing it would load the PostgreSQL client everywhere.
    if ((this.store as Partial<SyncPostgresStore>).kind !== 'postgres') return [];
    const hosts: string[] = [];
    for (const g of (this.store as SyncPostgresStore).listGateways()) {
      try {
        hosts.push(v.endpoint('gateways.endpoint', g.endpoint).host);
      } catch {
        // A row another version wrote that this one cannot read: the other remotes still serve.
      }
    }
    return hosts;
  }

  private openVpnProfileInput(
    name: string,
    credential: Pick<OpenVpnCredential, 'certificate'>,
    common = this.openVpnCommon(),
  ): Omit<ProfileInput, 'privateKey' | 'tlsCryptV2Key'> {
    return { ...common, memberName: name, certificate: credential.certificate };
  }

  /** The fingerprint of the profile the member would get now (undefined: it has no credentials now). */
  private openVpnFingerprint(
    name: string,
    common?: ReturnType<ControlPlane['openVpnCommon']>,
  ): string | undefined {
    const credential = this.store.getOpenVpnCredential(name);
    if (credential === undefined || Date.parse(credential.notAfter) <= this.clock().getTime())
      return undefined;
    const text = openVpnProfileFingerprintText({
      ...this.openVpnProfileInput(name, credential, common),
      serial: credential.serial,
      clientKeyId: credential.clientKeyId,
    });
    return `sha256:${createHash('sha256').update(text).digest('base64')}`;
  }

  /** The member's inline `.ovpn` profile, issuing its credentials first when it has none. */
  async openVpnProfile(nameArg: string): Promise<string> {
    const name = v.name('name', nameArg);
    const s = this.settings();
    if (s.openvpn.udpPort === null && s.openvpn.tcpPort === null)
      throw new WeftError(
        'WEFT_ERR_OPENVPN_OFF',
        'OpenVPN has neither a UDP nor a TCP port (settings openvpn.udpPort, openvpn.tcpPort)',
        'openvpn',
      );
    const credential = await this.openVpnCredential(name);
    return renderOpenVpnProfile({
      ...this.openVpnProfileInput(name, credential),
      privateKey: credential.privateKey,
      tlsCryptV2Key: credential.tlsCryptV2Key,
    });
  }

  /** The profile as handed out: records its fingerprint (protocol "openvpn") for the stale-config check. */
  async deliverOpenVpnConfig(nameArg: string): Promise<string> {
    const name = v.name('name', nameArg);
    const profile = await this.openVpnProfile(name);
    this.change(() => {
      this.memberRecord(name);
      const fingerprint = this.openVpnFingerprint(name);
      if (fingerprint !== undefined)
        this.store.putConfigDelivery({ name, fingerprint, deliveredAt: this.now() }, 'openvpn');
    });
    return profile;
  }

  /** When the member's OpenVPN profile was last handed out, and whether it went stale since. */
  openVpnConfigDownload(name: string): ConfigDownloadState | null {
    const delivery = this.store.getConfigDelivery(name, 'openvpn');
    if (!delivery) return null;
    return { at: delivery.deliveredAt, stale: delivery.fingerprint !== this.openVpnFingerprint(name) };
  }

  /**
   * A client pack: a script installing the client with the member's config embedded (client-pack.ts). The
   * config counts as handed out, for the stale-config check of its protocol.
   */
  async deliverClientPack(nameArg: string, os: PackOs, protocol: PackProtocol): Promise<ClientPack> {
    const name = v.name('name', nameArg);
    const config = protocol === 'openvpn' ? await this.deliverOpenVpnConfig(name) : this.deliverConfig(name);
    const m = this.memberRecord(name);
    const s = this.settings();
    // Multicast on: a Windows pack routes the groups through the tunnel (found by the member's address).
    const multicast =
      s.multicast === true ? { address4: m.ip, address6: s.subnet6 && m.ip6 ? m.ip6 : null } : undefined;
    return clientPack({ os, protocol, memberName: name, config, ...(multicast ? { multicast } : {}) });
  }

  /** The CRL of every revoked member certificate (PEM), for an OpenVPN server's `--crl-verify`. */
  async openVpnCrl(): Promise<string> {
    await this.ensureOpenVpn();
    return openVpnCrl(this.store, this.clock());
  }

  /**
   * A one-time link to the member's config: the token (shown once: only its hash is stored) and when the
   * link expires. The audit entry records the expiry, never the token.
   */
  createDownloadLink(
    actor: string,
    nameArg: string,
    ttlMinutes: number = LINK_TTL_MINUTES.default,
    protocol: ConfigProtocol = 'wireguard',
  ): { token: string; expiresAt: string } {
    const name = v.name('name', nameArg);
    const ttl = v.integer('ttlMinutes', ttlMinutes, LINK_TTL_MINUTES.min, LINK_TTL_MINUTES.max);
    if (protocol !== 'wireguard' && protocol !== 'openvpn')
      throw invalid('protocol', 'must be wireguard or openvpn');
    const token = randomSecret();
    return this.change(() => {
      this.memberRecord(name);
      const now = this.clock();
      const expiresAt = new Date(now.getTime() + ttl * 60_000).toISOString();
      this.store.insertLink(tokenHash(token), name, now.toISOString(), expiresAt, protocol);
      this.audit(actor, 'member.link', name, { expiresAt, ...(protocol === 'openvpn' ? { protocol } : {}) });
      return { token, expiresAt };
    });
  }

  /**
   * Uses a download link up, whichever protocol it was made for: the member's wg-quick config or `.ovpn`
   * profile (issuing OpenVPN credentials first when the member has none), once. Errors as redeemDownloadLink.
   */
  async redeemLink(
    token: string,
    from?: string,
  ): Promise<{ name: string; config: string; protocol: ConfigProtocol }> {
    const protocol =
      typeof token === 'string' && token.length > 0 && token.length <= 100
        ? this.store.linkProtocol(tokenHash(token))
        : undefined;
    if (protocol !== 'openvpn') return { ...this.redeemDownloadLink(token, from), protocol: 'wireguard' };
    // The link is used up first, so two requests racing with it cannot both get the profile.
    const name = this.change(() => {
      const taken = this.store.takeLink(tokenHash(token), this.now());
      if (taken === undefined)
        throw new WeftError(
          'WEFT_ERR_LINK_INVALID',
          'this download link is not valid: it was used already, has expired, or never existed',
        );
      this.audit('link', 'member.link.used', taken, { protocol, ...(from === undefined ? {} : { from }) });
      return taken;
    });
    return { name, config: await this.deliverOpenVpnConfig(name), protocol };
  }

  /**
   * Uses a download link up: the member's config and name, once. Unknown, used and expired tokens, and those
   * of a removed member, all get the same WEFT_ERR_LINK_INVALID. `from` (the client's address) goes into the
   * audit entry.
   */
  redeemDownloadLink(token: string, from?: string): { name: string; config: string } {
    const invalidLink = new WeftError(
      'WEFT_ERR_LINK_INVALID',
      'this download link is not valid: it was used already, has expired, or never existed',
    );
    if (typeof token !== 'string' || token.length === 0 || token.length > 100) throw invalidLink;
    return this.change(() => {
      // An OpenVPN link is for redeemLink, which hands out the profile it was made for.
      if (this.store.linkProtocol(tokenHash(token)) === 'openvpn') throw invalidLink;
      const name = this.store.takeLink(tokenHash(token), this.now());
      if (name === undefined) throw invalidLink;
      const config = this.deliverConfig(name);
      this.audit('link', 'member.link.used', name, from === undefined ? {} : { from });
      return { name, config };
    });
  }

  // ---- pages of the other lists ----

  /**
   * One page of `all` (sorted by `key`), as listMembers pages: `after` is the key of the previous page's
   * last item, `limit` 1-1000 (default 100), `search` a case-insensitive part of `text(item)`.
   */
  private page<T, K extends string | number>(
    all: readonly T[],
    key: (item: T) => K,
    text: (item: T) => string,
    query: PageQuery,
    parseAfter: (after: string) => K,
  ): { items: T[]; next: string | null; total: number } {
    const limit = v.integer('limit', query.limit ?? 100, 1, 1000);
    const search = query.search ? v.text('search', query.search, 100).toLowerCase() : undefined;
    const after = query.after === undefined || query.after === '' ? undefined : parseAfter(query.after);
    const sorted = [...all].sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
    const matching =
      search === undefined ? sorted : sorted.filter((x) => text(x).toLowerCase().includes(search));
    const rest = after === undefined ? matching : matching.filter((x) => key(x) > after);
    const items = rest.slice(0, limit);
    const last = items[items.length - 1];
    return {
      items,
      next: rest.length > limit && last !== undefined ? String(key(last)) : null,
      total: matching.length,
    };
  }

  /** Groups by name, a page at a time, with how many members each has (counted for the page only). */
  pageGroups(query: PageQuery = {}): Page<Group & { members: number }> {
    const p = this.page(
      this.store.listGroups(),
      (g) => g.name,
      (g) => `${g.name} ${g.description}`,
      query,
      (a) => v.text('after', a, 100),
    );
    return { ...p, items: p.items.map((g) => ({ ...g, members: this.store.groupMembers(g.name).length })) };
  }

  /** Shared routes by prefix text, a page at a time. */
  pageRoutes(query: PageQuery = {}): Page<SharedRoute> {
    return this.page(
      this.store.listRoutes(),
      (r) => r.cidr,
      (r) => `${r.cidr} ${r.description}`,
      query,
      (a) => v.text('after', a, 100),
    );
  }

  /** Policies by id, a page at a time; `search` matches their text form ("allow eng 10.20.0.0/24"). */
  pagePolicies(query: PageQuery = {}): Page<Policy> {
    return this.page(
      this.store.listPolicies(),
      (p) => p.id,
      (p) => v.policyText(p),
      query,
      (a) => v.id('after', a),
    );
  }

  /** API tokens by id, a page at a time; `search` matches their names. */
  pageTokens(query: PageQuery = {}): Page<ApiToken> {
    return this.page(
      this.store.listTokens(),
      (t) => t.id,
      (t) => t.name,
      query,
      (a) => v.id('after', a),
    );
  }

  // ---- groups ----

  listGroups(): (Group & { members: number })[] {
    return this.store.listGroups().map((g) => ({ ...g, members: this.store.groupMembers(g.name).length }));
  }

  addGroup(actor: string, input: { name: string; description?: string }): Group {
    const group = { name: v.name('name', input.name), description: v.text('description', input.description) };
    return this.change(() => {
      if (this.store.getGroup(group.name))
        throw new WeftError('WEFT_ERR_GROUP_EXISTS', `group ${group.name} already exists`, 'name');
      this.store.insertGroup(group);
      this.audit(actor, 'group.add', group.name, { description: group.description });
      return group;
    });
  }

  updateGroup(actor: string, nameArg: string, description: string): Group {
    const group = { name: v.name('name', nameArg), description: v.text('description', description) };
    return this.change(() => {
      const g = this.store.getGroup(group.name);
      if (!g) throw new WeftError('WEFT_ERR_GROUP_NOT_FOUND', `group ${group.name} does not exist`, 'name');
      if (g.description === group.description) return g;
      this.store.updateGroup(group);
      this.audit(actor, 'group.update', group.name, { description: group.description });
      return group;
    });
  }

  /** Refused while members or policies still use the group, so nobody's access changes by accident. */
  removeGroup(actor: string, nameArg: string): void {
    const name = v.name('name', nameArg);
    this.change(() => {
      if (!this.store.getGroup(name))
        throw new WeftError('WEFT_ERR_GROUP_NOT_FOUND', `group ${name} does not exist`, 'name');
      const members = this.store.groupMembers(name);
      if (members.length > 0)
        throw new WeftError(
          'WEFT_ERR_GROUP_IN_USE',
          `group ${name} still has ${members.length} member(s), e.g. ${members.slice(0, 3).join(', ')}`,
          'name',
        );
      const policies = this.store
        .listPolicies()
        .filter((p) => p.group === name || p.destination === `group:${name}`);
      if (policies.length > 0)
        throw new WeftError(
          'WEFT_ERR_GROUP_IN_USE',
          `group ${name} is used by policies ${policies.map((p) => `#${p.id}`).join(', ')}`,
          'name',
        );
      // Sites name groups without a foreign key: the group leaves every site in this same transaction.
      const sites = this.store.listSites().filter((site) => site.groups.includes(name));
      for (const site of sites)
        this.store.updateSite({
          ...site,
          groups: site.groups.filter((g) => g !== name),
          updatedAt: this.now(),
        });
      this.store.deleteGroup(name);
      this.audit(
        actor,
        'group.remove',
        name,
        sites.length > 0 ? { sites: sites.map((site) => site.name) } : {},
      );
    });
  }

  // ---- shared routes ----

  listRoutes(): SharedRoute[] {
    return this.store.listRoutes();
  }

  addRoute(actor: string, input: { cidr: string; description?: string; gateway?: unknown }): SharedRoute {
    const s = this.settings();
    // The stored endpoint is "host:port" or "[v6]:port".
    const endpointHost = s.endpoint.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
    const uplinks = this.options.uplinks?.(endpointHost) ?? [];
    const p = v.routePrefix('cidr', input.cidr, uplinks);
    let route: SharedRoute = {
      cidr: formatPrefix(p),
      description: v.text('description', input.description),
    };
    for (const own of [s.subnet, s.subnet6]) {
      if (own && (prefixContains(parsed(own), p) || prefixContains(p, parsed(own))))
        throw invalid('cidr', `overlaps the members' subnet ${own}`);
    }
    return this.change(() => {
      // The gateway serving it (a shared store's mesh routes it there from the others): checked in the change.
      const owner = ownerGateway(this.store, 'gateway', input.gateway);
      if (owner !== undefined) route = { ...route, gateway: owner };
      if (this.store.listRoutes().some((r) => r.cidr === route.cidr))
        throw new WeftError('WEFT_ERR_ROUTE_EXISTS', `route ${route.cidr} already exists`, 'cidr');
      // A site's remote subnets are routes into its tunnel: a shared route there would take their traffic.
      for (const site of this.store.listSites())
        for (const remote of site.remoteSubnets)
          if (v.overlaps(p, parsed(remote)))
            throw new WeftError(
              'WEFT_ERR_SUBNET_CONFLICT',
              `cidr: ${route.cidr} overlaps ${remote}, a remote subnet of site ${site.name}`,
              'cidr',
            );
      this.store.insertRoute(route);
      this.audit(actor, 'route.add', route.cidr, {
        description: route.description,
        ...(route.gateway === undefined ? {} : { gateway: route.gateway }),
      });
      return route;
    });
  }

  removeRoute(actor: string, cidrArg: string): void {
    const cidr = formatPrefix(v.prefix('cidr', cidrArg));
    this.change(() => {
      if (!this.store.deleteRoute(cidr))
        throw new WeftError('WEFT_ERR_ROUTE_NOT_FOUND', `route ${cidr} does not exist`, 'cidr');
      this.audit(actor, 'route.remove', cidr);
    });
  }

  // ---- IPsec sites ----

  private siteRecord(name: string): SiteRecord {
    const site = this.store.getSite(name);
    if (!site) throw new WeftError('WEFT_ERR_SITE_NOT_FOUND', `site ${name} does not exist`, 'name');
    return site;
  }

  private siteContext(name: string): Parameters<typeof checkSite>[1] {
    const s = this.settings();
    const endpointHost = s.endpoint.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
    return {
      memberSubnets: [s.subnet, ...(s.subnet6 ? [s.subnet6] : [])],
      routes: this.store.listRoutes().map((r) => r.cidr),
      otherSites: this.store.listSites().filter((site) => site.name !== name),
      groupExists: (g) => this.store.getGroup(g) !== undefined,
      uplinks: this.options.uplinks?.(endpointHost) ?? [],
      owner: (field, value) => ownerGateway(this.store, field, value),
    };
  }

  private siteStatus(name: string): SiteView['status'] {
    return this.store.allSiteStatuses().find((st) => st.name === name) ?? null;
  }

  /** Every site, by name, with its last reported status (never the pre-shared key). */
  listSites(): SiteView[] {
    const statuses = new Map(this.store.allSiteStatuses().map((st) => [st.name, st]));
    return this.store.listSites().map((site) => siteView(site, statuses.get(site.name)));
  }

  getSite(nameArg: string): SiteView {
    const name = v.name('name', nameArg);
    return siteView(this.siteRecord(name), this.siteStatus(name) ?? undefined);
  }

  /** The site's pre-shared key (for `site show --show-psk` and the remote configs; never in a view). */
  sitePsk(nameArg: string): string {
    return this.siteRecord(v.name('name', nameArg)).psk;
  }

  /**
   * Adds a site. A PSK site without a key gets one generated and returned, once (`generatedPsk`); the audit
   * entry never holds the key nor a certificate site's private key.
   */
  addSite(actor: string, input: SiteInput): { site: SiteView; generatedPsk: string | null } {
    const name = v.name('name', input.name);
    return this.change(() => {
      if (this.store.getSite(name))
        throw new WeftError('WEFT_ERR_SITE_EXISTS', `site ${name} already exists`, 'name');
      const checked = checkSite({ ...input, name }, this.siteContext(name));
      const generatedPsk = checked.psk === null && checked.auth === 'psk' ? newPsk() : null;
      const now = this.now();
      const record: SiteRecord = {
        ...checked,
        psk: checked.psk ?? generatedPsk ?? '',
        createdAt: now,
        updatedAt: now,
      };
      this.store.insertSite(record);
      this.audit(actor, 'site.add', name, siteAuditDetail(record));
      return { site: siteView(record, undefined), generatedPsk };
    });
  }

  /** Changes the fields `patch` gives (a key present with undefined counts as absent); the rest stay. */
  updateSite(actor: string, nameArg: string, patch: Omit<SiteInput, 'name'>): SiteView {
    const name = v.name('name', nameArg);
    const given = Object.fromEntries(
      Object.entries(patch).filter(([k, value]) => value !== undefined && k !== 'name'),
    ) as Omit<SiteInput, 'name'>;
    for (const k of Object.keys(given))
      if (!(SITE_FIELDS as readonly string[]).includes(k)) throw invalid(k, 'is not a field of a site');
    return this.change(() => {
      const current = this.siteRecord(name);
      const { createdAt: _c, updatedAt: _u, ...fields } = current;
      // A start action that needs a remote address falls back to waiting when the address becomes %any.
      const merged: SiteInput = { ...fields, ...given };
      if (
        given.remoteAddress !== undefined &&
        given.startAction === undefined &&
        merged.remoteAddress === '%any'
      )
        merged.startAction = 'wait';
      // Giving a certificate makes a PSK site a certificate site, as on add.
      if (given.certificate !== undefined && given.certificate !== null && given.auth === undefined)
        merged.auth = 'cert';
      const checked = checkSite(merged, this.siteContext(name));
      const next: SiteRecord = {
        ...checked,
        psk: checked.psk ?? current.psk,
        createdAt: current.createdAt,
        updatedAt: current.updatedAt,
      };
      const changed = SITE_FIELDS.filter((k) => JSON.stringify(next[k]) !== JSON.stringify(current[k]));
      if (changed.length === 0) return siteView(current, this.siteStatus(name) ?? undefined);
      const updated = { ...next, updatedAt: this.now() };
      this.store.updateSite(updated);
      const action =
        changed.length === 1 && changed[0] === 'enabled'
          ? updated.enabled
            ? 'site.enable'
            : 'site.disable'
          : 'site.update';
      this.audit(
        actor,
        action,
        name,
        Object.fromEntries(
          changed.map((k) => [k, (SITE_SECRETS as readonly string[]).includes(k) ? '(changed)' : updated[k]]),
        ),
      );
      return siteView(updated, this.siteStatus(name) ?? undefined);
    });
  }

  /** `weft site up` / `down`: the gateway starts or tears down the site's SAs. */
  setSiteEnabled(actor: string, name: string, enabled: boolean): SiteView {
    return this.updateSite(actor, name, { enabled });
  }

  removeSite(actor: string, nameArg: string): void {
    const name = v.name('name', nameArg);
    this.change(() => {
      const site = this.siteRecord(name);
      this.store.deleteSite(name);
      this.audit(actor, 'site.remove', name, {
        remoteAddress: site.remoteAddress,
        remoteSubnets: site.remoteSubnets,
      });
    });
  }

  /** What the gateway runs: every site, enabled or not (a disabled one is torn down, not forgotten). */
  siteSpecs(): SiteSpec[] {
    return this.store.listSites().map(siteSpec);
  }

  /** The settings for the firewall at the other end of the site (remote-config formats: swanctl, aws, pfsense). */
  siteRemoteConfig(nameArg: string, format: string): string {
    const name = v.name('name', nameArg);
    if (format !== 'swanctl' && format !== 'aws' && format !== 'pfsense')
      throw invalid('format', 'must be swanctl, aws or pfsense');
    const site = this.siteRecord(name);
    const host = v.endpoint('endpoint', this.settings().endpoint).host;
    return renderRemoteConfig(site, format as RemoteConfigFormat, { host });
  }

  // ---- policies ----

  listPolicies(): Policy[] {
    return this.store.listPolicies();
  }

  addPolicy(actor: string, input: Partial<PolicyInput>): Policy {
    const p = v.policy('policy', input);
    return this.change(() => {
      if (p.group !== '*' && !this.store.getGroup(p.group))
        throw new WeftError(
          'WEFT_ERR_GROUP_NOT_FOUND',
          `policy.group: group ${p.group} does not exist`,
          'policy.group',
        );
      if (p.destination.startsWith('group:') && !this.store.getGroup(p.destination.slice(6)))
        throw new WeftError(
          'WEFT_ERR_GROUP_NOT_FOUND',
          `policy.destination: group ${p.destination.slice(6)} does not exist`,
          'policy.destination',
        );
      const same = this.store.listPolicies().find((q) => v.policyText(q) === v.policyText(p));
      if (same)
        throw new WeftError('WEFT_ERR_POLICY_EXISTS', `the same policy exists as #${same.id}`, 'policy');
      const created = this.store.insertPolicy(p);
      this.audit(actor, 'policy.add', `#${created.id}`, { rule: v.policyText(p) });
      return created;
    });
  }

  removePolicy(actor: string, id: number | string): void {
    const n = v.id('id', id);
    this.change(() => {
      const p = this.store.listPolicies().find((q) => q.id === n);
      if (!p || !this.store.deletePolicy(n))
        throw new WeftError('WEFT_ERR_POLICY_NOT_FOUND', `policy #${n} does not exist`, 'id');
      this.audit(actor, 'policy.remove', `#${n}`, { rule: v.policyText(p) });
    });
  }

  // ---- audit, status, traffic ----

  listAudit(
    query: { before?: number | string; limit?: number | string; target?: string } = {},
  ): AuditEntry[] {
    return this.store.listAudit({
      before: query.before === undefined ? undefined : v.id('before', query.before),
      limit: v.integer('limit', query.limit ?? 100, 1, 1000),
      target: query.target === undefined ? undefined : v.text('target', query.target, 100),
    });
  }

  traffic(name: string, since: Date): TrafficSample[] {
    if (name !== '') this.memberRecord(v.name('name', name));
    return this.store.traffic(name, since.toISOString());
  }

  // ---- credentials ----

  createToken(actor: string, nameArg: string): { token: ApiToken; secret: string } {
    const name = v.name('name', nameArg);
    const secret = newTokenSecret();
    return this.change(() => {
      const token = this.store.insertToken(name, tokenHash(secret), this.now());
      this.audit(actor, 'token.create', name, { id: token.id });
      return { token, secret };
    });
  }

  listTokens(): ApiToken[] {
    return this.store.listTokens();
  }

  revokeToken(actor: string, id: number | string): void {
    const n = v.id('id', id);
    this.change(() => {
      const token = this.store.listTokens().find((t) => t.id === n);
      if (!token || !this.store.deleteToken(n))
        throw new WeftError('WEFT_ERR_TOKEN_NOT_FOUND', `token #${n} does not exist`, 'id');
      this.audit(actor, 'token.revoke', token.name, { id: n });
    });
  }

  /** The token a secret belongs to, or undefined. Records when it was last used (at most once a minute). */
  authenticateToken(secret: string): ApiToken | undefined {
    if (!secret.startsWith('weft_') || secret.length > 100) return undefined;
    const token = this.store.findToken(tokenHash(secret));
    if (!token) return undefined;
    const now = this.clock();
    if (!token.lastUsedAt || now.getTime() - Date.parse(token.lastUsedAt) > 60_000)
      this.store.touchToken(token.id, now.toISOString());
    return token;
  }

  /** Checks a password; the scrypt run happens on the thread pool, never on the tunnel's thread. */
  async verifyAdminPassword(username: string, password: string): Promise<boolean> {
    const account = typeof username === 'string' ? this.store.getAdmin(username) : undefined;
    // One scrypt run even for an unknown user, so the answer takes the same time either way.
    const stored =
      account?.passwordHash ?? (await (ControlPlane.unknownUserHash ??= hashPassword(newPassword())));
    return typeof password === 'string' && (await verifyPassword(password, stored)) && account !== undefined;
  }

  async setAdminPassword(
    actor: string,
    username: string,
    password: string,
    field = 'password',
  ): Promise<void> {
    if (typeof password !== 'string' || password.length < ADMIN_PASSWORD_MIN)
      throw invalid(field, `must be at least ${ADMIN_PASSWORD_MIN} characters`);
    const passwordHash = await hashPassword(password);
    // Read after the hash is ready: a TOTP change made meanwhile must not be undone.
    const account = this.store.getAdmin(username);
    this.change(() => {
      this.store.putAdmin({
        username,
        passwordHash,
        totpSecret: account?.totpSecret ?? null,
      });
      this.audit(actor, 'admin.password', username);
    });
  }

  /**
   * A console login: the password first (a wrong one says nothing about TOTP), then, when the account has
   * TOTP on, the code, which is good once (replayed codes are refused like wrong ones).
   */
  async verifyAdminLogin(username: string, password: string, code: string | undefined): Promise<AdminLogin> {
    if (!(await this.verifyAdminPassword(username, password))) return { ok: false, reason: 'credentials' };
    const account = this.store.getAdmin(username);
    if (!account) return { ok: false, reason: 'credentials' };
    if (account.totpSecret !== null) {
      if (code === undefined || code === '') return { ok: false, reason: 'totp-missing' };
      if (!this.takeTotp(username, account.totpSecret, code)) return { ok: false, reason: 'totp' };
    }
    return { ok: true, username };
  }

  /**
   * Records a console login, a refused one (`reason`: wrong credentials or TOTP code) or a logout in the
   * audit log, with the client's address. Refusals are bounded by the login throttle (a few per address
   * and window), so a guesser cannot fill the log.
   */
  auditSession(
    event: 'login' | 'login.refused' | 'logout',
    username: string,
    from: string,
    reason?: 'credentials' | 'totp',
  ): void {
    const actor = event === 'login.refused' ? `client:${from}` : `admin:${username}`;
    this.audit(actor, `session.${event}`, username, reason === undefined ? { from } : { from, reason });
  }

  adminTotpEnabled(username: string): boolean {
    return (this.store.getAdmin(username)?.totpSecret ?? null) !== null;
  }

  /** Whether `code` is a current code of `secret` not used before on this account; if so it is now used. */
  private takeTotp(username: string, secret: string, code: string): boolean {
    const step = verifyTotp(totpKey(secret), code, this.clock().getTime(), {
      afterStep: this.totpLastStep.get(username),
    });
    if (step === undefined) return false;
    this.totpLastStep.set(username, step);
    return true;
  }

  /** Changes the admin password after checking the current one (a wrong one: WEFT_ERR_VALIDATION, `current`). */
  async changeAdminPassword(actor: string, username: string, current: string, next: string): Promise<void> {
    if (!(await this.verifyAdminPassword(username, current)))
      throw invalid('current', 'is not the current password');
    await this.setAdminPassword(actor, username, next, 'next');
  }

  /**
   * Turns TOTP on with `secret` (base32, from enrolment), once `code` proves the authenticator app has it.
   * The code counts as used: it cannot log in afterwards.
   */
  enableAdminTotp(actor: string, username: string, secret: string, code: string): void {
    const account = this.store.getAdmin(username);
    if (!account) throw new WeftError('WEFT_ERR_UNAUTHORIZED', `there is no admin account ${username}`);
    if (account.totpSecret !== null)
      throw new WeftError(
        'WEFT_ERR_TOTP_ALREADY_ENABLED',
        'two-factor authentication is already on (turn it off first to enrol another app)',
      );
    this.totpLastStep.delete(username);
    if (!this.takeTotp(username, secret, code))
      throw invalid('code', 'is not the current code of the authenticator app');
    this.change(() => {
      this.store.putAdmin({ ...account, totpSecret: secret });
      // Never the secret: the audit log is readable by every API token.
      this.audit(actor, 'admin.totp.enable', username);
    });
  }

  /** Turns TOTP off; needs a current code of the enrolled app. */
  disableAdminTotp(actor: string, username: string, code: string): void {
    const account = this.store.getAdmin(username);
    if (!account) throw new WeftError('WEFT_ERR_UNAUTHORIZED', `there is no admin account ${username}`);
    if (account.totpSecret === null)
      throw new WeftError('WEFT_ERR_TOTP_NOT_ENABLED', 'two-factor authentication is not on');
    if (!this.takeTotp(username, account.totpSecret, code))
      throw invalid('code', 'is not the current code of the authenticator app');
    this.change(() => {
      this.store.putAdmin({ ...account, totpSecret: null });
      this.audit(actor, 'admin.totp.disable', username);
    });
  }
}

/** A site's fields for its audit entry: everything but the pre-shared key. */
function siteAuditDetail(r: SiteRecord): Record<string, unknown> {
  const { psk: _secret, privateKey: _key, name: _name, createdAt: _c, updatedAt: _u, ...rest } = r;
  return { ...rest };
}

/** fe80:: with the interface identifier (the low 64 bits) of `ip6`: a member's link-local address. */
export function linkLocalOf(ip6: string): string {
  const a = parseAddress(ip6);
  if (!a.ok || a.value.family !== 6) return GATEWAY_LINK_LOCAL;
  const bytes = new Uint8Array(16);
  bytes[0] = 0xfe;
  bytes[1] = 0x80;
  bytes.set(a.value.bytes.subarray(8), 8);
  return formatAddress({ family: 6, bytes });
}
