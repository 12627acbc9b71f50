/**
 * An in-memory Store (src/control/store.ts) for unit tests: Maps instead of SQLite, with the same observable
 * behaviour as store-sqlite.ts, so a test written against one holds for the other.
 *
 * - Transactions: every write inside a transaction records how to undo itself in a journal; a call (nested or
 *   not) that throws undoes the writes made since it began, like the savepoints better-sqlite3 uses for nested
 *   transactions, and the journal is dropped when the outermost call returns. Each mutating method is a
 *   transaction of its own, so it is atomic too. An undo step costs O(1), so a transaction of n inserts costs
 *   O(n) rather than a copy of the whole state per insert. Like better-sqlite3, a function that returns a
 *   promise is refused (TypeError) and its writes undone.
 * - Change feed: settings, member, group, route, policy and site mutations append `{rev, kind, key}`; revisions
 *   roll back with the transaction, so they have no gaps.
 * - Uniqueness as in the SQLite schema: member name, ip, ip6 and public key; group name; route prefix; token
 *   hash. A violation, or a member in a group that does not exist, throws StoreConflict.
 * - Values are copied in and out: a caller can never change what the store holds except through its methods.
 */
import type {
  AdminAccount,
  ApiToken,
  AuditEntry,
  Change,
  ChangeKind,
  ConfigDelivery,
  ConfigProtocol,
  Group,
  MemberCounts,
  MemberRecord,
  MemberStatus,
  OpenVpnCredential,
  OpenVpnRevocation,
  Policy,
  PolicyInput,
  Settings,
  SharedRoute,
  SiteRecord,
  TrafficSample,
} from '../../src/control/model.js';
import type { SiteStatus } from '../../src/ipsec/site-spec.js';
import { StoreConflict, type MemberQuery, type Store } from '../../src/control/store.js';

const DEFAULT_CHANGES_LIMIT = 1000;

/**
 * What the store holds. The containers are never replaced and the values in them never changed in place (a
 * write puts a new value), so an undo step can hold on to the old value as it is.
 */
interface State {
  settings: Settings | undefined;
  readonly secrets: Map<string, string>;
  readonly members: Map<string, MemberRecord>;
  readonly groups: Map<string, Group>;
  readonly routes: Map<string, SharedRoute>;
  readonly sites: Map<string, SiteRecord>;
  readonly siteStatuses: Map<string, SiteStatus>;
  readonly policies: Map<number, Policy>;
  /** Oldest first. */
  readonly audit: AuditEntry[];
  readonly tokens: Map<number, { readonly token: ApiToken; readonly hash: string }>;
  readonly admins: Map<string, AdminAccount>;
  /** One-time download links by the hash of their token. */
  readonly links: Map<string, DownloadLink>;
  /** The fingerprint of the config each member was last handed, by `${protocol}\n${name}`. */
  readonly deliveries: Map<string, ConfigDelivery>;
  /** Current OpenVPN credentials by member name. */
  readonly credentials: Map<string, OpenVpnCredential>;
  /** Revocations by serial, in the order they were made. */
  readonly revocations: Map<string, OpenVpnRevocation>;
  readonly statuses: Map<string, MemberStatus>;
  /** Keyed by `${name}\n${at}`. */
  readonly traffic: Map<string, TrafficSample>;
  readonly changes: Change[];
  /** Last ids handed out (AUTOINCREMENT: never reused, rolled back with the transaction). */
  readonly seq: Record<Sequence, number>;
}

type Sequence = 'policy' | 'audit' | 'token' | 'rev';

interface DownloadLink {
  readonly member: string;
  readonly protocol: ConfigProtocol;
  readonly createdAt: string;
  readonly expiresAt: string;
  readonly usedAt: string | null;
}

function emptyState(): State {
  return {
    settings: undefined,
    secrets: new Map(),
    members: new Map(),
    groups: new Map(),
    routes: new Map(),
    sites: new Map(),
    siteStatuses: new Map(),
    policies: new Map(),
    audit: [],
    tokens: new Map(),
    admins: new Map(),
    links: new Map(),
    deliveries: new Map(),
    credentials: new Map(),
    revocations: new Map(),
    statuses: new Map(),
    traffic: new Map(),
    changes: [],
    seq: { policy: 0, audit: 0, token: 0, rev: 0 },
  };
}

const copy = <T>(value: T): T => structuredClone(value);

/** Case-insensitive for ASCII letters only, as SQLite's LIKE. */
function foldAscii(text: string): string {
  return text.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function isThenable(value: unknown): boolean {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

function clampLimit(limit: number): number {
  return Number.isFinite(limit) ? Math.max(0, Math.floor(limit)) : 0;
}

export class MemoryStore implements Store {
  readonly path = ':memory:';
  readonly schemaVersion = 5;
  readonly #state: State = emptyState();
  #closed = false;
  /** How to undo each write made inside the open transaction, oldest first; empty outside one. */
  readonly #journal: (() => void)[] = [];
  /** How many transaction calls are open (nested calls count too). */
  #depth = 0;

  transaction<T>(fn: () => T): T {
    this.#open();
    const mark = this.#journal.length;
    this.#depth++;
    try {
      const result = fn();
      // better-sqlite3 refuses these too: the transaction would commit before the function's awaits ran.
      if (isThenable(result)) throw new TypeError('Transaction function cannot return a promise');
      return result;
    } catch (err) {
      while (this.#journal.length > mark) this.#journal.pop()?.();
      throw err;
    } finally {
      if (--this.#depth === 0) this.#journal.length = 0;
    }
  }

  close(): void {
    this.#closed = true;
  }

  revision(): number {
    return this.#open().changes.at(-1)?.rev ?? 0;
  }

  changesSince(rev: number, limit = DEFAULT_CHANGES_LIMIT): Change[] {
    return copy(
      this.#open()
        .changes.filter((c) => c.rev > rev)
        .slice(0, clampLimit(limit)),
    );
  }

  getSettings(): Settings | undefined {
    return copy(this.#open().settings);
  }

  putSettings(settings: Settings): void {
    this.transaction(() => {
      const old = this.#state.settings;
      this.#undoable(() => (this.#state.settings = old));
      this.#state.settings = copy(settings);
      this.#changed('settings', '');
    });
  }

  getSecret(name: string): string | undefined {
    return this.#open().secrets.get(name);
  }

  putSecret(name: string, value: string): void {
    this.transaction(() => this.#set(this.#state.secrets, name, value));
  }

  getMember(name: string): MemberRecord | undefined {
    return copy(this.#open().members.get(name));
  }

  getMemberByIp(ip: string): MemberRecord | undefined {
    return copy([...this.#open().members.values()].find((m) => m.ip === ip || m.ip6 === ip));
  }

  getMemberByPublicKey(publicKey: string): MemberRecord | undefined {
    return copy([...this.#open().members.values()].find((m) => m.publicKey === publicKey));
  }

  #matching(search: string | undefined): MemberRecord[] {
    const all = [...this.#open().members.values()].sort(byName);
    if (search === undefined || search === '') return all;
    const needle = foldAscii(search);
    const has = (text: string | null): boolean => text !== null && foldAscii(text).includes(needle);
    return all.filter((m) => has(m.name) || has(m.ip) || has(m.ip6) || m.groups.some(has));
  }

  listMembers(query: MemberQuery): MemberRecord[] {
    const after = query.after ?? '';
    return copy(
      this.#matching(query.search)
        .filter((m) => m.name > after)
        .slice(0, clampLimit(query.limit)),
    );
  }

  countMembers(search?: string): number {
    return this.#matching(search).length;
  }

  allMembers(): MemberRecord[] {
    return copy(this.#matching(undefined));
  }

  memberCounts(now: string): MemberCounts {
    const { members, statuses } = this.#open();
    const all = [...members.values()];
    const nowMs = Date.parse(now);
    return {
      total: all.length,
      disabled: all.filter((m) => m.disabled).length,
      expired: all.filter((m) => !m.disabled && m.expiresAt !== null && Date.parse(m.expiresAt) <= nowMs)
        .length,
      online: all.filter((m) => statuses.get(m.name)?.online === true).length,
    };
  }

  /** The checks SQLite's UNIQUE and FOREIGN KEY constraints make, for a row replacing `replacing` (if any). */
  #checkMember(member: MemberRecord, replacing: string | undefined): void {
    for (const other of this.#state.members.values()) {
      if (other.name === replacing) continue;
      if (other.name === member.name)
        throw new StoreConflict('members.name: another row already has this value');
      if (other.ip === member.ip) throw new StoreConflict('members.ip: another row already has this value');
      if (member.ip6 !== null && other.ip6 === member.ip6)
        throw new StoreConflict('members.ip6: another row already has this value');
      if (other.publicKey === member.publicKey)
        throw new StoreConflict('members.public_key: another row already has this value');
    }
    for (const g of member.groups) {
      if (!this.#state.groups.has(g))
        throw new StoreConflict(`member_groups.group: there is no group named ${JSON.stringify(g)}`);
    }
  }

  /** Groups keep the order given, without repeats (as member_groups.position). */
  #stored(member: MemberRecord): MemberRecord {
    return copy({ ...member, groups: [...new Set(member.groups)] });
  }

  insertMember(member: MemberRecord): void {
    this.transaction(() => {
      this.#checkMember(member, undefined);
      this.#set(this.#state.members, member.name, this.#stored(member));
      this.#changed('member', member.name);
    });
  }

  updateMember(member: MemberRecord): boolean {
    return this.transaction(() => {
      if (!this.#state.members.has(member.name)) return false;
      this.#checkMember(member, member.name);
      this.#set(this.#state.members, member.name, this.#stored(member));
      this.#changed('member', member.name);
      return true;
    });
  }

  /** The member's download links and config record go with it (as SQLite's ON DELETE CASCADE). */
  deleteMember(name: string): boolean {
    return this.transaction(() => {
      if (!this.#state.members.has(name)) return false;
      this.revokeOpenVpnCredential(name, new Date().toISOString(), 'removed');
      this.#delete(this.#state.members, name);
      for (const protocol of ['wireguard', 'openvpn'] as const)
        this.#delete(this.#state.deliveries, `${protocol}\n${name}`);
      for (const [hash, link] of [...this.#state.links]) {
        if (link.member === name) this.#delete(this.#state.links, hash);
      }
      this.#changed('member', name);
      return true;
    });
  }

  listGroups(): Group[] {
    return copy([...this.#open().groups.values()].sort(byName));
  }

  getGroup(name: string): Group | undefined {
    return copy(this.#open().groups.get(name));
  }

  insertGroup(group: Group): void {
    this.transaction(() => {
      if (this.#state.groups.has(group.name))
        throw new StoreConflict('groups.name: another row already has this value');
      this.#set(this.#state.groups, group.name, copy(group));
      this.#changed('group', group.name);
    });
  }

  updateGroup(group: Group): boolean {
    return this.transaction(() => {
      if (!this.#state.groups.has(group.name)) return false;
      this.#set(this.#state.groups, group.name, copy(group));
      this.#changed('group', group.name);
      return true;
    });
  }

  /** Members still in the group leave it, each with a member change (as store-sqlite.ts). */
  deleteGroup(name: string): boolean {
    return this.transaction(() => {
      if (!this.#delete(this.#state.groups, name)) return false;
      this.#changed('group', name);
      for (const m of [...this.#state.members.values()].sort(byName)) {
        if (!m.groups.includes(name)) continue;
        this.#set(this.#state.members, m.name, { ...m, groups: m.groups.filter((g) => g !== name) });
        this.#changed('member', m.name);
      }
      return true;
    });
  }

  groupMembers(name: string): string[] {
    return [...this.#open().members.values()]
      .filter((m) => m.groups.includes(name))
      .sort(byName)
      .map((m) => m.name);
  }

  listRoutes(): SharedRoute[] {
    return copy(
      [...this.#open().routes.values()].sort((a, b) => (a.cidr < b.cidr ? -1 : a.cidr > b.cidr ? 1 : 0)),
    );
  }

  insertRoute(route: SharedRoute): void {
    this.transaction(() => {
      if (this.#state.routes.has(route.cidr))
        throw new StoreConflict('routes.cidr: another row already has this value');
      this.#set(this.#state.routes, route.cidr, copy(route));
      this.#changed('route', route.cidr);
    });
  }

  deleteRoute(cidr: string): boolean {
    return this.transaction(() => {
      if (!this.#delete(this.#state.routes, cidr)) return false;
      this.#changed('route', cidr);
      return true;
    });
  }

  listSites(): SiteRecord[] {
    return copy([...this.#open().sites.values()].sort(byName));
  }

  getSite(name: string): SiteRecord | undefined {
    return copy(this.#open().sites.get(name));
  }

  insertSite(site: SiteRecord): void {
    this.transaction(() => {
      if (this.#state.sites.has(site.name))
        throw new StoreConflict(`a site named "${site.name}" already exists`);
      this.#set(this.#state.sites, site.name, copy(site));
      this.#changed('site', site.name);
    });
  }

  updateSite(site: SiteRecord): boolean {
    return this.transaction(() => {
      if (!this.#state.sites.has(site.name)) return false;
      this.#set(this.#state.sites, site.name, copy(site));
      this.#changed('site', site.name);
      return true;
    });
  }

  deleteSite(name: string): boolean {
    return this.transaction(() => {
      if (!this.#delete(this.#state.sites, name)) return false;
      this.#delete(this.#state.siteStatuses, name);
      this.#changed('site', name);
      return true;
    });
  }

  putSiteStatuses(statuses: readonly SiteStatus[]): void {
    this.transaction(() => {
      for (const name of [...this.#state.siteStatuses.keys()]) this.#delete(this.#state.siteStatuses, name);
      for (const s of statuses) this.#set(this.#state.siteStatuses, s.name, copy(s));
    });
  }

  allSiteStatuses(): SiteStatus[] {
    return copy([...this.#open().siteStatuses.values()].sort(byName));
  }

  listPolicies(): Policy[] {
    return copy([...this.#open().policies.values()].sort((a, b) => a.id - b.id));
  }

  insertPolicy(policy: PolicyInput): Policy {
    return this.transaction(() => {
      const id = this.#nextId('policy');
      const { action, group, destination, proto, ports, direction } = policy;
      const stored: Policy = {
        id,
        action,
        group,
        destination,
        proto,
        ports: ports === null ? null : { ...ports },
        direction,
      };
      this.#set(this.#state.policies, id, stored);
      this.#changed('policy', String(id));
      return copy(stored);
    });
  }

  deletePolicy(id: number): boolean {
    return this.transaction(() => {
      if (!this.#delete(this.#state.policies, id)) return false;
      this.#changed('policy', String(id));
      return true;
    });
  }

  appendAudit(entry: Omit<AuditEntry, 'id'>): AuditEntry {
    return this.transaction(() => {
      // Through JSON, as the SQLite store keeps `detail` (undefined values vanish, dates become strings).
      const stored: AuditEntry = {
        id: this.#nextId('audit'),
        at: entry.at,
        actor: entry.actor,
        action: entry.action,
        target: entry.target,
        detail: JSON.parse(JSON.stringify(entry.detail)) as AuditEntry['detail'],
      };
      this.#append(this.#state.audit, stored);
      return copy(stored);
    });
  }

  listAudit(query: { before?: number; limit: number; target?: string }): AuditEntry[] {
    const before = query.before ?? Number.MAX_SAFE_INTEGER;
    return copy(
      this.#open()
        .audit.filter((e) => e.id < before && (query.target === undefined || e.target === query.target))
        .reverse()
        .slice(0, clampLimit(query.limit)),
    );
  }

  insertToken(name: string, hash: string, createdAt: string): ApiToken {
    return this.transaction(() => {
      if ([...this.#state.tokens.values()].some((t) => t.hash === hash))
        throw new StoreConflict('tokens.hash: another row already has this value');
      const token: ApiToken = { id: this.#nextId('token'), name, createdAt, lastUsedAt: null };
      this.#set(this.#state.tokens, token.id, { token, hash });
      return copy(token);
    });
  }

  findToken(hash: string): ApiToken | undefined {
    return copy([...this.#open().tokens.values()].find((t) => t.hash === hash)?.token);
  }

  touchToken(id: number, at: string): void {
    this.transaction(() => {
      const row = this.#state.tokens.get(id);
      if (row) this.#set(this.#state.tokens, id, { ...row, token: { ...row.token, lastUsedAt: at } });
    });
  }

  listTokens(): ApiToken[] {
    return copy([...this.#open().tokens.values()].map((t) => t.token).sort((a, b) => a.id - b.id));
  }

  deleteToken(id: number): boolean {
    return this.transaction(() => this.#delete(this.#state.tokens, id));
  }

  getAdmin(username: string): AdminAccount | undefined {
    return copy(this.#open().admins.get(username));
  }

  putAdmin(account: AdminAccount): void {
    this.transaction(() => this.#set(this.#state.admins, account.username, copy(account)));
  }

  insertLink(
    hash: string,
    member: string,
    createdAt: string,
    expiresAt: string,
    protocol: ConfigProtocol = 'wireguard',
  ): void {
    this.transaction(() => {
      for (const [key, link] of [...this.#state.links]) {
        if (link.expiresAt <= createdAt) this.#delete(this.#state.links, key);
      }
      if (!this.#state.members.has(member))
        throw new StoreConflict(`download_links.member: there is no member named ${JSON.stringify(member)}`);
      if (this.#state.links.has(hash))
        throw new StoreConflict('download_links.hash: another row already has this value');
      this.#set(this.#state.links, hash, { member, protocol, createdAt, expiresAt, usedAt: null });
    });
  }

  linkProtocol(hash: string): ConfigProtocol | undefined {
    return this.#open().links.get(hash)?.protocol;
  }

  takeLink(hash: string, now: string): string | undefined {
    return this.transaction(() => {
      const link = this.#open().links.get(hash);
      if (link === undefined || link.usedAt !== null || link.expiresAt <= now) return undefined;
      this.#set(this.#state.links, hash, { ...link, usedAt: now });
      return link.member;
    });
  }

  putConfigDelivery(delivery: ConfigDelivery, protocol: ConfigProtocol = 'wireguard'): void {
    this.transaction(() => {
      if (!this.#state.members.has(delivery.name))
        throw new StoreConflict(
          `config_deliveries.member: there is no member named ${JSON.stringify(delivery.name)}`,
        );
      this.#set(this.#state.deliveries, `${protocol}\n${delivery.name}`, copy(delivery));
    });
  }

  getConfigDelivery(name: string, protocol: ConfigProtocol = 'wireguard'): ConfigDelivery | undefined {
    return copy(this.#open().deliveries.get(`${protocol}\n${name}`));
  }

  allConfigDeliveries(protocol: ConfigProtocol = 'wireguard'): ConfigDelivery[] {
    return copy(
      [...this.#open().deliveries.entries()]
        .filter(([key]) => key.startsWith(`${protocol}\n`))
        .map(([, d]) => d)
        .sort(byName),
    );
  }

  getOpenVpnCredential(name: string): OpenVpnCredential | undefined {
    return copy(this.#open().credentials.get(name));
  }

  findOpenVpnCredential(by: { serial: string } | { clientKeyId: string }): OpenVpnCredential | undefined {
    const found = [...this.#open().credentials.values()].find((c) =>
      'serial' in by ? c.serial === by.serial : c.clientKeyId === by.clientKeyId,
    );
    return copy(found);
  }

  putOpenVpnCredential(credential: OpenVpnCredential): boolean {
    return this.transaction(() => {
      if (!this.#open().members.has(credential.name))
        throw new StoreConflict(
          `openvpn_credentials.member: there is no member named ${JSON.stringify(credential.name)}`,
        );
      if (this.#state.credentials.has(credential.name)) return false;
      const taken = [...this.#state.credentials.values(), ...this.#state.revocations.values()].some(
        (c) => c.serial === credential.serial || c.clientKeyId === credential.clientKeyId,
      );
      if (taken) throw new StoreConflict('openvpn_credentials.serial: another row already has this value');
      this.#set(this.#state.credentials, credential.name, copy(credential));
      return true;
    });
  }

  revokeOpenVpnCredential(
    name: string,
    at: string,
    reason: OpenVpnRevocation['reason'],
  ): OpenVpnRevocation | undefined {
    return this.transaction(() => {
      const current = this.#open().credentials.get(name);
      if (current === undefined) return undefined;
      const revocation: OpenVpnRevocation = {
        serial: current.serial,
        clientKeyId: current.clientKeyId,
        name,
        revokedAt: at,
        reason,
      };
      this.#delete(this.#state.credentials, name);
      this.#set(this.#state.revocations, current.serial, revocation);
      return copy(revocation);
    });
  }

  findOpenVpnRevocation(by: { serial: string } | { clientKeyId: string }): OpenVpnRevocation | undefined {
    const found = [...this.#open().revocations.values()].find((r) =>
      'serial' in by ? r.serial === by.serial : r.clientKeyId === by.clientKeyId,
    );
    return copy(found);
  }

  allOpenVpnRevocations(): OpenVpnRevocation[] {
    return copy(
      [...this.#open().revocations.values()].sort((a, b) =>
        a.revokedAt < b.revokedAt ? -1 : a.revokedAt > b.revokedAt ? 1 : a.serial < b.serial ? -1 : 1,
      ),
    );
  }

  putStatuses(statuses: readonly MemberStatus[]): void {
    this.transaction(() => {
      for (const s of statuses) this.#set(this.#state.statuses, s.name, copy(s));
    });
  }

  getStatus(name: string): MemberStatus | undefined {
    return copy(this.#open().statuses.get(name));
  }

  allStatuses(): MemberStatus[] {
    return copy([...this.#open().statuses.values()].sort(byName));
  }

  addTraffic(samples: readonly TrafficSample[]): void {
    this.transaction(() => {
      for (const s of samples) {
        const key = `${s.name}\n${s.at}`;
        const old = this.#state.traffic.get(key);
        this.#set(this.#state.traffic, key, {
          name: s.name,
          at: s.at,
          rxBytes: (old?.rxBytes ?? 0) + s.rxBytes,
          txBytes: (old?.txBytes ?? 0) + s.txBytes,
        });
      }
    });
  }

  traffic(name: string, since: string): TrafficSample[] {
    const rows = [...this.#open().traffic.values()].filter(
      (s) => s.at >= since && (name === '' || s.name === name),
    );
    const buckets = new Map<string, TrafficSample>();
    for (const s of rows) {
      const key = name === '' ? s.at : `${s.name}\n${s.at}`;
      const old = buckets.get(key);
      buckets.set(key, {
        name,
        at: s.at,
        rxBytes: (old?.rxBytes ?? 0) + s.rxBytes,
        txBytes: (old?.txBytes ?? 0) + s.txBytes,
      });
    }
    return [...buckets.values()].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  }

  #open(): State {
    if (this.#closed) throw new Error('the store is closed');
    return this.#state;
  }

  #changed(kind: ChangeKind, key: string): void {
    this.#append(this.#state.changes, { rev: this.#nextId('rev'), kind, key });
  }

  // ---- writes, each with its undo step (recorded only inside a transaction: outside one, nothing undoes) ----

  #undoable(undo: () => void): void {
    if (this.#depth > 0) this.#journal.push(undo);
  }

  #set<K, V>(map: Map<K, V>, key: K, value: V): void {
    if (map.has(key)) {
      const old = map.get(key) as V;
      this.#undoable(() => map.set(key, old));
    } else {
      this.#undoable(() => map.delete(key));
    }
    map.set(key, value);
  }

  #delete<K, V>(map: Map<K, V>, key: K): boolean {
    if (!map.has(key)) return false;
    const old = map.get(key) as V;
    this.#undoable(() => map.set(key, old));
    return map.delete(key);
  }

  #append<T>(list: T[], item: T): void {
    list.push(item);
    this.#undoable(() => list.pop());
  }

  #nextId(sequence: Sequence): number {
    const old = this.#state.seq[sequence];
    this.#undoable(() => (this.#state.seq[sequence] = old));
    return (this.#state.seq[sequence] = old + 1);
  }
}

export function openMemoryStore(): MemoryStore {
  return new MemoryStore();
}
