/**
 * The control plane's storage interface. The embedded implementation is SQLite (store-sqlite.ts).
 *
 * Rules every implementation keeps:
 * 1. A method that changes anything commits before it returns (or, inside `transaction`, when the outermost
 *    transaction returns); what was acknowledged survives a crash.
 * 2. Every change to settings, members, groups, routes, policies or sites appends to the change feed in the same
 *    transaction, so a running gateway (this process or another) can follow it with `changesSince`.
 * 3. Names are unique per kind; inserting a duplicate or deleting a missing row throws StoreConflict /
 *    returns false — validation with clear messages happens before, in the control plane.
 */
import type {
  AdminAccount,
  ApiToken,
  AuditEntry,
  Change,
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
} from './model.js';
import type { SiteStatus } from '../ipsec/site-spec.js';

export class StoreConflict extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreConflict';
  }
}

export interface MemberQuery {
  /** Names greater than this (pagination is by name). */
  readonly after?: string;
  readonly limit: number;
  /** Case-insensitive substring of the name, ip, or a group name. */
  readonly search?: string;
}

export interface Store {
  readonly path: string;
  /** The schema version the store is at (after migrations). */
  readonly schemaVersion: number;
  /** Runs `fn` in one transaction (nested calls join the outer one). Throws propagate and roll back. */
  transaction<T>(fn: () => T): T;
  close(): void;

  /** The latest change-feed revision (0 for a new store). */
  revision(): number;
  changesSince(rev: number, limit?: number): Change[];

  getSettings(): Settings | undefined;
  putSettings(settings: Settings): void;
  /** Small named secrets: the gateway's private key, the session-signing key. */
  getSecret(name: string): string | undefined;
  putSecret(name: string, value: string): void;

  getMember(name: string): MemberRecord | undefined;
  getMemberByIp(ip: string): MemberRecord | undefined;
  getMemberByPublicKey(publicKey: string): MemberRecord | undefined;
  listMembers(query: MemberQuery): MemberRecord[];
  countMembers(search?: string): number;
  /** Members by state at `now` (ISO 8601), without loading them. */
  memberCounts(now: string): MemberCounts;
  /** Every member, ordered by name (used to build the gateway's state on start). */
  allMembers(): MemberRecord[];
  insertMember(member: MemberRecord): void;
  /** Replaces the member row with this name (its groups too). Returns false if there is none. */
  updateMember(member: MemberRecord): boolean;
  deleteMember(name: string): boolean;

  listGroups(): Group[];
  getGroup(name: string): Group | undefined;
  insertGroup(group: Group): void;
  updateGroup(group: Group): boolean;
  deleteGroup(name: string): boolean;
  /** Names of the members in a group. */
  groupMembers(name: string): string[];

  listRoutes(): SharedRoute[];
  insertRoute(route: SharedRoute): void;
  deleteRoute(cidr: string): boolean;

  /** IPsec sites, ordered by name. */
  listSites(): SiteRecord[];
  getSite(name: string): SiteRecord | undefined;
  /** Throws StoreConflict(`a site named "${name}" already exists`) on a duplicate name. */
  insertSite(site: SiteRecord): void;
  /** Replaces the site with site.name; false when there is none. */
  updateSite(site: SiteRecord): boolean;
  /** Deletes the site and its status row. */
  deleteSite(name: string): boolean;
  /** The live status the running gateway last reported (not in the change feed; replaced wholesale). */
  putSiteStatuses(statuses: readonly SiteStatus[]): void;
  allSiteStatuses(): SiteStatus[];

  listPolicies(): Policy[];
  insertPolicy(policy: PolicyInput): Policy;
  deletePolicy(id: number): boolean;

  appendAudit(entry: Omit<AuditEntry, 'id'>): AuditEntry;
  /** Newest first; `before` is an id (pagination). */
  listAudit(query: { before?: number; limit: number; target?: string }): AuditEntry[];

  insertToken(name: string, hash: string, createdAt: string): ApiToken;
  /** Looks a token up by the hash of its secret. */
  findToken(hash: string): ApiToken | undefined;
  touchToken(id: number, at: string): void;
  listTokens(): ApiToken[];
  deleteToken(id: number): boolean;

  getAdmin(username: string): AdminAccount | undefined;
  putAdmin(account: AdminAccount): void;

  /**
   * Records a one-time download link of a member's config by the hash of its token (times are ISO 8601).
   * Throws StoreConflict ("download_links.member") when there is no such member, and ("download_links.hash")
   * when the hash is taken. Links that expired by `createdAt` may be forgotten on the way.
   */
  insertLink(
    hash: string,
    member: string,
    createdAt: string,
    expiresAt: string,
    /** Which config the link hands out (default 'wireguard'). */
    protocol?: ConfigProtocol,
  ): void;
  /** The protocol of a link's config, whether or not it is still usable (undefined: no such link). */
  linkProtocol(hash: string): ConfigProtocol | undefined;
  /**
   * Uses a link up, atomically: returns the member's name and marks the link used if it is unused, expires
   * after `now` and its member still exists; otherwise returns undefined and changes nothing. A link belongs
   * to the member it was made for: once that member is removed, its links never work again, not even for a
   * new member of the same name.
   */
  takeLink(hash: string, now: string): string | undefined;

  /**
   * Records the fingerprint of the config just handed to a member (replacing the one before). Not a change
   * of the network, so nothing goes to the change feed. Throws StoreConflict ("config_deliveries.member")
   * when there is no such member. The record goes with the member: a new member of the same name has none.
   */
  putConfigDelivery(delivery: ConfigDelivery, protocol?: ConfigProtocol): void;
  /** A record per protocol: `protocol` (default 'wireguard') says which config was handed out. */
  getConfigDelivery(name: string, protocol?: ConfigProtocol): ConfigDelivery | undefined;
  /** Every member's record for `protocol` (default 'wireguard'), ordered by name. */
  allConfigDeliveries(protocol?: ConfigProtocol): ConfigDelivery[];

  /** The member's current OpenVPN credentials (none until first issued). */
  getOpenVpnCredential(name: string): OpenVpnCredential | undefined;
  /** The current credentials with this certificate serial or tls-crypt-v2 client key id. */
  findOpenVpnCredential(by: { serial: string } | { clientKeyId: string }): OpenVpnCredential | undefined;
  /**
   * Records a member's first credentials, or new ones after a revocation. Returns false, changing nothing,
   * when the member already has current ones (another process issued them first). Throws StoreConflict
   * ("openvpn_credentials.member") when there is no such member. Not a change of the network: no change feed.
   */
  putOpenVpnCredential(credential: OpenVpnCredential): boolean;
  /**
   * Revokes the member's current credentials: they move to the revocation list. Returns the revocation, or
   * undefined when the member has none. Removing a member does the same with the reason 'removed'.
   */
  revokeOpenVpnCredential(
    name: string,
    at: string,
    reason: OpenVpnRevocation['reason'],
  ): OpenVpnRevocation | undefined;
  /** The revocation of this serial or client key id, if it was revoked. */
  findOpenVpnRevocation(by: { serial: string } | { clientKeyId: string }): OpenVpnRevocation | undefined;
  /** Every revocation, oldest first (what a CRL lists). */
  allOpenVpnRevocations(): OpenVpnRevocation[];

  /** Replaces the status rows of the given members (the running gateway reports every few seconds). */
  putStatuses(statuses: readonly MemberStatus[]): void;
  getStatus(name: string): MemberStatus | undefined;
  allStatuses(): MemberStatus[];
  /** Adds to the per-minute traffic buckets (`at` is the bucket's start). */
  addTraffic(samples: readonly TrafficSample[]): void;
  /** A member's buckets from `since` on, oldest first; the name "" sums every member. */
  traffic(name: string, since: string): TrafficSample[];
}
