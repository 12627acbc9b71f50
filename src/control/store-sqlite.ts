/**
 * The embedded control-plane store: one SQLite file, opened through better-sqlite3 (synchronous), shared by the
 * running server and the CLI, which may have it open from different processes at the same time.
 *
 * - Durability: WAL with synchronous=FULL, so a commit is on disk before the method that made it returns, and
 *   survives kill -9 and power loss.
 * - Concurrency: every write transaction starts with BEGIN IMMEDIATE, taking the single write lock up front (a
 *   deferred transaction that reads and then writes can fail with SQLITE_BUSY without waiting); a busy lock is
 *   waited on for up to BUSY_TIMEOUT_MS.
 * - Schema: `PRAGMA user_version` is the schema version; MIGRATIONS[v] takes a file from version v to v + 1.
 *   Opening applies the pending ones in one transaction and refuses a file written by a newer build.
 * - Change feed: every mutation of settings, members, groups, routes, policies and sites appends to `changes` in the
 *   same transaction. Revisions come from AUTOINCREMENT, whose counter rolls back with the transaction, so they
 *   have no gaps: a follower that asks for the changes after `rev` and gets a first revision other than
 *   rev + 1 has fallen behind the pruned window and must reload everything.
 * - Privacy: the file holds member private keys and the gateway's key, so it and its -wal/-shm files are 0600.
 * - Damage: a file SQLite cannot read as a database (SQLITE_NOTADB, SQLITE_CORRUPT) is a StoreDamaged at open;
 *   `quickCheck` finds damage that opening does not touch. `backup` copies the live file consistently.
 */
import { chmodSync, closeSync, openSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import type {
  AdminAccount,
  ApiToken,
  AuditEntry,
  Change,
  ChangeKind,
  ConfigDelivery,
  ConfigProtocol,
  ConnectionProtocol,
  Group,
  MemberCounts,
  MemberRecord,
  MemberStatus,
  OpenVpnCredential,
  OpenVpnRevocation,
  Policy,
  PolicyAction,
  PolicyDirection,
  PolicyInput,
  Proto,
  Settings,
  SharedRoute,
  SiteRecord,
  TrafficSample,
} from './model.js';
import type { SiteStatus } from '../ipsec/site-spec.js';
import { CONNECTION_PROTOCOLS } from './model.js';
import { StoreConflict, type MemberQuery, type Store } from './store.js';

/** How long a connection waits for another process's write lock before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000;
/** The change feed keeps at least this many of its newest rows... */
const CHANGE_FEED_KEEP = 10_000;
/** ...and is trimmed back to that every this many revisions, so the trimming costs nothing per write. */
const CHANGE_FEED_PRUNE_EVERY = 1000;
const DEFAULT_CHANGES_LIMIT = 1000;
const FILE_MODE = 0o600;

type Migration = (db: Database) => void;

/**
 * Version 1. Members and groups have integer ids so member_groups is two small integers per row; names stay
 * unique and are what the interface speaks. member_groups keeps the order a member's groups were given in.
 */
const SCHEMA_V1 = `
CREATE TABLE settings (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  value TEXT NOT NULL CHECK (json_valid(value))
) STRICT;

CREATE TABLE secrets (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE members (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  ip TEXT NOT NULL UNIQUE,
  ip6 TEXT UNIQUE,
  public_key TEXT NOT NULL UNIQUE,
  private_key TEXT,
  disabled INTEGER NOT NULL CHECK (disabled IN (0, 1)),
  expires_at TEXT,
  full_tunnel INTEGER NOT NULL CHECK (full_tunnel IN (0, 1)),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
) STRICT;

CREATE TABLE "groups" (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  description TEXT NOT NULL
) STRICT;

CREATE TABLE member_groups (
  member_id INTEGER NOT NULL REFERENCES members (id) ON DELETE CASCADE,
  group_id INTEGER NOT NULL REFERENCES "groups" (id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  PRIMARY KEY (member_id, group_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX member_groups_by_group ON member_groups (group_id, member_id);

CREATE TABLE routes (
  cidr TEXT PRIMARY KEY,
  description TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE policies (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  action TEXT NOT NULL CHECK (action IN ('allow', 'deny')),
  grp TEXT NOT NULL,
  destination TEXT NOT NULL,
  proto TEXT NOT NULL CHECK (proto IN ('any', 'tcp', 'udp', 'icmp')),
  port_from INTEGER,
  port_to INTEGER,
  CHECK ((port_from IS NULL) = (port_to IS NULL))
) STRICT;

CREATE TABLE audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  detail TEXT NOT NULL CHECK (json_valid(detail))
) STRICT;
CREATE INDEX audit_by_target ON audit (target, id);

CREATE TABLE tokens (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL,
  last_used_at TEXT
) STRICT;

CREATE TABLE admins (
  username TEXT PRIMARY KEY,
  password_hash TEXT NOT NULL,
  totp_secret TEXT
) STRICT, WITHOUT ROWID;

CREATE TABLE member_status (
  name TEXT PRIMARY KEY,
  online INTEGER NOT NULL CHECK (online IN (0, 1)),
  endpoint TEXT,
  last_handshake TEXT,
  rx_bytes INTEGER NOT NULL,
  tx_bytes INTEGER NOT NULL,
  policy_drops INTEGER NOT NULL,
  updated_at TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE traffic (
  name TEXT NOT NULL,
  at TEXT NOT NULL,
  rx INTEGER NOT NULL,
  tx INTEGER NOT NULL,
  PRIMARY KEY (name, at)
) STRICT, WITHOUT ROWID;
CREATE INDEX traffic_by_at ON traffic (at);

CREATE TABLE changes (
  rev INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL CHECK (kind IN ('settings', 'member', 'group', 'route', 'policy')),
  key TEXT NOT NULL
) STRICT;
`;

/**
 * Version 2: one-time download links of member configs, kept by the SHA-256 of their token (the token itself
 * is shown once, in the link). A link points at the member row, so removing the member deletes its links
 * (ON DELETE CASCADE): a later member of the same name never inherits them.
 */
const SCHEMA_V2 = `
CREATE TABLE download_links (
  hash TEXT PRIMARY KEY,
  member_id INTEGER NOT NULL REFERENCES members (id) ON DELETE CASCADE,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  used_at TEXT
) STRICT, WITHOUT ROWID;
CREATE INDEX download_links_by_member ON download_links (member_id);
CREATE INDEX download_links_by_expiry ON download_links (expires_at);
`;

/**
 * Version 3: per member, the fingerprint of the config it was last handed (a hash of the config's non-secret
 * content, never the config: that holds the private key), so the control plane can tell when a policy or
 * route change made it stale. It goes with the member row (ON DELETE CASCADE).
 */
const SCHEMA_V3 = `
CREATE TABLE config_deliveries (
  member_id INTEGER PRIMARY KEY REFERENCES members (id) ON DELETE CASCADE,
  fingerprint TEXT NOT NULL,
  delivered_at TEXT NOT NULL
) STRICT;
`;

/**
 * Version 4: OpenVPN. Per member its current credentials (certificate, key, tls-crypt-v2 client key), going
 * with the member row; the revocation list, which outlives the member (a removed member's certificate must
 * stay refused); and config fingerprints per protocol, so a WireGuard and an OpenVPN config handed to the
 * same member are tracked apart (the existing rows are WireGuard's); and which config a one-time link hands out
(existing links: WireGuard's). The CA itself and the gateway's server
 * certificate are secrets (the `secrets` table), made by pki.ts when first needed: creating them takes
 * asynchronous WebCrypto calls, which a migration (one synchronous transaction) cannot make.
 */
const SCHEMA_V4 = `
CREATE TABLE openvpn_credentials (
  member_id INTEGER PRIMARY KEY REFERENCES members (id) ON DELETE CASCADE,
  serial TEXT NOT NULL UNIQUE,
  client_key_id TEXT NOT NULL UNIQUE,
  certificate TEXT NOT NULL,
  private_key TEXT NOT NULL,
  tls_crypt_v2_key TEXT NOT NULL,
  not_after TEXT NOT NULL,
  issued_at TEXT NOT NULL
) STRICT;

CREATE TABLE openvpn_revocations (
  serial TEXT PRIMARY KEY,
  client_key_id TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  revoked_at TEXT NOT NULL,
  reason TEXT NOT NULL CHECK (reason IN ('rotated', 'removed'))
) STRICT, WITHOUT ROWID;

CREATE TABLE config_deliveries_v4 (
  member_id INTEGER NOT NULL REFERENCES members (id) ON DELETE CASCADE,
  protocol TEXT NOT NULL CHECK (protocol IN ('wireguard', 'openvpn')),
  fingerprint TEXT NOT NULL,
  delivered_at TEXT NOT NULL,
  PRIMARY KEY (member_id, protocol)
) STRICT, WITHOUT ROWID;
INSERT INTO config_deliveries_v4 (member_id, protocol, fingerprint, delivered_at)
  SELECT member_id, 'wireguard', fingerprint, delivered_at FROM config_deliveries;
DROP TABLE config_deliveries;
ALTER TABLE config_deliveries_v4 RENAME TO config_deliveries;

ALTER TABLE download_links ADD COLUMN protocol TEXT NOT NULL DEFAULT 'wireguard'
  CHECK (protocol IN ('wireguard', 'openvpn'));
`;

/** Version 6: a member's status says which protocol carries it while online, and since when. */
const SCHEMA_V6 = `
ALTER TABLE member_status ADD COLUMN protocol TEXT
  CHECK (protocol IS NULL OR protocol IN ('wireguard', 'openvpn-udp', 'openvpn-tcp'));
ALTER TABLE member_status ADD COLUMN since TEXT;
`;

/**
 * Version 7: a site authenticates with a pre-shared key (the existing rows) or with certificates: our
 * certificate and its chain, its private key (a secret, kept as the pre-shared key is), and the CAs trusted
 * for the peer, all PEM text. A certificate site's `psk` is empty.
 */
const SCHEMA_V7 = `
ALTER TABLE sites ADD COLUMN auth TEXT NOT NULL DEFAULT 'psk' CHECK (auth IN ('psk', 'cert'));
ALTER TABLE sites ADD COLUMN certificate TEXT;
ALTER TABLE sites ADD COLUMN private_key TEXT;
ALTER TABLE sites ADD COLUMN ca_certificates TEXT;
`;

/**
 * Version 8: a site's multicast group ranges (a JSON array of prefixes; empty: the site is no multicast port).
 */
const SCHEMA_V8 = `
ALTER TABLE sites ADD COLUMN multicast TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(multicast));
`;

/**
 * Version 9: IPsec site details: one CHILD SA per subnet pair, hard lifetimes (NULL: the default, 110% of the
 * rekey time), the IKE fragment size, and byte lifetimes of CHILD SAs (0: none).
 */
const SCHEMA_V9 = `
ALTER TABLE sites ADD COLUMN child_per_subnet_pair INTEGER NOT NULL DEFAULT 0 CHECK (child_per_subnet_pair IN (0, 1));
ALTER TABLE sites ADD COLUMN ike_hard_lifetime_sec INTEGER;
ALTER TABLE sites ADD COLUMN child_hard_lifetime_sec INTEGER;
ALTER TABLE sites ADD COLUMN fragment_size INTEGER NOT NULL DEFAULT 1280;
ALTER TABLE sites ADD COLUMN child_rekey_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sites ADD COLUMN child_life_bytes INTEGER NOT NULL DEFAULT 0;
`;

/**
 * Version 10: the gateway that serves a shared route or a site on a shared store (NULL: every gateway serves
 * it from its own host). The others route its prefixes to that gateway over the mesh (src/server/mesh.ts).
 */
const SCHEMA_V10 = `
ALTER TABLE routes ADD COLUMN gateway TEXT;
ALTER TABLE sites ADD COLUMN gateway TEXT;
`;

/**
 * Version 11: multicast receive rules. A policy's direction: `send` (every existing rule: what a group may send)
 * or `receive` (which multicast groups a group's members and sites may receive copies of; deny by default). A
 * network that already has members or sites gets the rule `allow * any receive`, recorded in the audit log
 * under the actor "upgrade", so every receiver keeps getting what the senders' rules allowed before; a new
 * network starts without it.
 */
const SCHEMA_V11 = `
ALTER TABLE policies ADD COLUMN direction TEXT NOT NULL DEFAULT 'send' CHECK (direction IN ('send', 'receive'));
INSERT INTO policies (action, grp, destination, proto, port_from, port_to, direction)
  SELECT 'allow', '*', 'any', 'any', NULL, NULL, 'receive'
  WHERE EXISTS (SELECT 1 FROM members) OR EXISTS (SELECT 1 FROM sites);
INSERT INTO audit (at, actor, action, target, detail)
  SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'upgrade', 'policy.add', '#' || id,
         json_object('rule', 'allow * any receive')
  FROM policies WHERE direction = 'receive';
`;

/**
 * Version 5: IPsec sites. A site is one row; its lists (subnets, proposals, groups) are JSON arrays, since they
 * are read and written whole and nothing joins on them (a group's name is removed from every site by the
 * control plane, in the transaction that deletes the group). The live status the gateway reports is one JSON
 * document per site, replaced wholesale. The change feed gains the kind 'site': its CHECK constraint can only
 * change by rebuilding the table, which keeps every revision and the AUTOINCREMENT counter.
 */
const SCHEMA_V5 = `
CREATE TABLE sites (
  name TEXT PRIMARY KEY,
  enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
  remote_address TEXT,
  local_id TEXT,
  remote_id TEXT,
  psk TEXT NOT NULL,
  force_short_psk INTEGER NOT NULL CHECK (force_short_psk IN (0, 1)),
  local_subnets TEXT NOT NULL CHECK (json_valid(local_subnets)),
  remote_subnets TEXT NOT NULL CHECK (json_valid(remote_subnets)),
  mode TEXT NOT NULL CHECK (mode IN ('tunnel', 'transport')),
  ike_proposals TEXT NOT NULL CHECK (json_valid(ike_proposals)),
  esp_proposals TEXT NOT NULL CHECK (json_valid(esp_proposals)),
  allow_legacy_groups INTEGER NOT NULL CHECK (allow_legacy_groups IN (0, 1)),
  ike_lifetime_sec INTEGER NOT NULL,
  child_lifetime_sec INTEGER NOT NULL,
  dpd_interval_sec INTEGER NOT NULL,
  dpd_action TEXT NOT NULL CHECK (dpd_action IN ('restart', 'clear', 'hold')),
  start_action TEXT NOT NULL CHECK (start_action IN ('initiate', 'wait', 'on-traffic')),
  policy_groups TEXT NOT NULL CHECK (json_valid(policy_groups)),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE site_status (
  name TEXT PRIMARY KEY,
  status TEXT NOT NULL CHECK (json_valid(status)),
  at TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE changes_v5 (
  rev INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL CHECK (kind IN ('settings', 'member', 'group', 'route', 'policy', 'site')),
  key TEXT NOT NULL
) STRICT;
INSERT INTO changes_v5 (rev, kind, key) SELECT rev, kind, key FROM changes;
`;

function migrateToV5(db: Database): void {
  // The counter may be ahead of the newest row (the feed is pruned from the oldest end only, so normally it
  // is not, but a counter must never go back): carry it over explicitly.
  const seq = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").pluck<number>().get() ?? 0;
  db.exec(SCHEMA_V5);
  db.exec('DROP TABLE changes; ALTER TABLE changes_v5 RENAME TO changes;');
  const now = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").pluck<number>().get();
  if (now === undefined) {
    if (seq > 0) db.prepare("INSERT INTO sqlite_sequence (name, seq) VALUES ('changes', ?)").run(seq);
  } else if (now < seq) db.prepare("UPDATE sqlite_sequence SET seq = ? WHERE name = 'changes'").run(seq);
}

/**
 * Append only: a released build's migration never changes, the next one is added after it. Exported for the
 * migration tests, which build files at older versions with it.
 */
export const MIGRATIONS: readonly Migration[] = [
  (db) => db.exec(SCHEMA_V1),
  (db) => db.exec(SCHEMA_V2),
  (db) => db.exec(SCHEMA_V3),
  (db) => db.exec(SCHEMA_V4),
  migrateToV5,
  (db) => db.exec(SCHEMA_V6),
  (db) => db.exec(SCHEMA_V7),
  (db) => db.exec(SCHEMA_V8),
  (db) => db.exec(SCHEMA_V9),
  (db) => db.exec(SCHEMA_V10),
  (db) => db.exec(SCHEMA_V11),
];

/** The schema version this build writes; a file at a higher version was written by a newer build. */
export const SCHEMA_VERSION = MIGRATIONS.length;

export class StoreSchemaTooNew extends Error {
  constructor(
    readonly path: string,
    readonly found: number,
  ) {
    super(
      `${path}: the store is at schema version ${found}, but this build of Weft knows versions up to ` +
        `${SCHEMA_VERSION}; upgrade Weft, or restore a backup taken with this version`,
    );
    this.name = 'StoreSchemaTooNew';
  }
}

/**
 * A member row as an array (better-sqlite3's raw mode): with 10,000 members, building an object per row
 * that is then copied into a MemberRecord is a third of allMembers' time. The order is MEMBER_SELECT's.
 */
type MemberTuple = readonly [
  name: string,
  ip: string,
  ip6: string | null,
  publicKey: string,
  privateKey: string | null,
  disabled: number,
  expiresAt: string | null,
  fullTunnel: number,
  createdAt: string,
  updatedAt: string,
  /** JSON array of group names, in the member's order. */
  groups: string,
];

interface PolicyRow {
  readonly id: number;
  readonly action: PolicyAction;
  readonly grp: string;
  readonly destination: string;
  readonly proto: Proto;
  readonly port_from: number | null;
  readonly port_to: number | null;
  readonly direction: PolicyDirection;
}

interface AuditRow {
  readonly id: number;
  readonly at: string;
  readonly actor: string;
  readonly action: string;
  readonly target: string;
  readonly detail: string;
}

interface TokenRow {
  readonly id: number;
  readonly name: string;
  readonly created_at: string;
  readonly last_used_at: string | null;
}

interface AdminRow {
  readonly username: string;
  readonly password_hash: string;
  readonly totp_secret: string | null;
}

interface StatusRow {
  readonly name: string;
  readonly online: number;
  readonly endpoint: string | null;
  readonly last_handshake: string | null;
  readonly rx_bytes: number;
  readonly tx_bytes: number;
  readonly policy_drops: number;
  readonly updated_at: string;
  readonly protocol: string | null;
  readonly since: string | null;
}

interface SiteRow {
  readonly name: string;
  readonly enabled: number;
  readonly remote_address: string | null;
  readonly local_id: string | null;
  readonly remote_id: string | null;
  readonly auth: SiteRecord['auth'];
  readonly psk: string;
  readonly force_short_psk: number;
  readonly certificate: string | null;
  readonly private_key: string | null;
  readonly ca_certificates: string | null;
  readonly local_subnets: string;
  readonly remote_subnets: string;
  readonly mode: SiteRecord['mode'];
  readonly ike_proposals: string;
  readonly esp_proposals: string;
  readonly allow_legacy_groups: number;
  readonly ike_lifetime_sec: number;
  readonly child_lifetime_sec: number;
  readonly dpd_interval_sec: number;
  readonly dpd_action: SiteRecord['dpdAction'];
  readonly start_action: SiteRecord['startAction'];
  readonly policy_groups: string;
  readonly multicast: string;
  readonly created_at: string;
  readonly updated_at: string;
  readonly child_per_subnet_pair: number;
  readonly ike_hard_lifetime_sec: number | null;
  readonly child_hard_lifetime_sec: number | null;
  readonly fragment_size: number;
  readonly child_rekey_bytes: number;
  readonly child_life_bytes: number;
  readonly gateway: string | null;
}

const SITE_COLUMNS = `enabled = :enabled, remote_address = :remote_address, local_id = :local_id,
  remote_id = :remote_id, psk = :psk, force_short_psk = :force_short_psk, local_subnets = :local_subnets,
  remote_subnets = :remote_subnets, mode = :mode, ike_proposals = :ike_proposals, esp_proposals = :esp_proposals,
  allow_legacy_groups = :allow_legacy_groups, ike_lifetime_sec = :ike_lifetime_sec,
  child_lifetime_sec = :child_lifetime_sec, dpd_interval_sec = :dpd_interval_sec, dpd_action = :dpd_action,
  start_action = :start_action, policy_groups = :policy_groups, created_at = :created_at, updated_at = :updated_at,
  auth = :auth, certificate = :certificate, private_key = :private_key, ca_certificates = :ca_certificates,
  multicast = :multicast,
  child_per_subnet_pair = :child_per_subnet_pair, ike_hard_lifetime_sec = :ike_hard_lifetime_sec,
  child_hard_lifetime_sec = :child_hard_lifetime_sec, fragment_size = :fragment_size,
  child_rekey_bytes = :child_rekey_bytes, child_life_bytes = :child_life_bytes, gateway = :gateway`;

interface TrafficRow {
  readonly name: string;
  readonly at: string;
  readonly rx: number;
  readonly tx: number;
}

/** A member with its groups in one row, so a page of members costs one query rather than one per member. */
const MEMBER_SELECT = `
SELECT m.name, m.ip, m.ip6, m.public_key, m.private_key, m.disabled, m.expires_at, m.full_tunnel,
       m.created_at, m.updated_at,
       (SELECT json_group_array(g.name ORDER BY mg.position)
          FROM member_groups mg JOIN "groups" g ON g.id = mg.group_id
         WHERE mg.member_id = m.id) AS groups
  FROM members m`;

/** The search predicate of listMembers/countMembers; `:pattern` is a LIKE pattern with `\` as its escape. */
const MEMBER_MATCHES = `
(m.name LIKE :pattern ESCAPE '\\' OR m.ip LIKE :pattern ESCAPE '\\' OR m.ip6 LIKE :pattern ESCAPE '\\'
 OR EXISTS (SELECT 1 FROM member_groups mg JOIN "groups" g ON g.id = mg.group_id
             WHERE mg.member_id = m.id AND g.name LIKE :pattern ESCAPE '\\'))`;

const MEMBER_COLUMNS = `ip = :ip, ip6 = :ip6, public_key = :public_key, private_key = :private_key,
  disabled = :disabled, expires_at = :expires_at, full_tunnel = :full_tunnel, created_at = :created_at,
  updated_at = :updated_at`;

const CREDENTIAL_SELECT = `
SELECT m.name, c.serial, c.client_key_id AS clientKeyId, c.certificate, c.private_key AS privateKey,
       c.tls_crypt_v2_key AS tlsCryptV2Key, c.not_after AS notAfter, c.issued_at AS issuedAt
  FROM openvpn_credentials c JOIN members m ON m.id = c.member_id`;

const REVOCATION_SELECT = `
SELECT serial, client_key_id AS clientKeyId, name, revoked_at AS revokedAt, reason FROM openvpn_revocations`;

function prepareStatements(db: Database) {
  return {
    integrityCheck: db.prepare('PRAGMA integrity_check').pluck<string>(),

    revision: db.prepare('SELECT coalesce(max(rev), 0) FROM changes').pluck<number>(),
    changesSince: db.prepare<Change>('SELECT rev, kind, key FROM changes WHERE rev > ? ORDER BY rev LIMIT ?'),
    appendChange: db.prepare('INSERT INTO changes (kind, key) VALUES (?, ?)'),
    pruneChanges: db.prepare('DELETE FROM changes WHERE rev <= ?'),

    getSettings: db.prepare('SELECT value FROM settings WHERE id = 1').pluck<string>(),
    putSettings: db.prepare(
      'INSERT INTO settings (id, value) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET value = excluded.value',
    ),
    getSecret: db.prepare('SELECT value FROM secrets WHERE name = ?').pluck<string>(),
    putSecret: db.prepare(
      'INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
    ),

    getMember: db.prepare(`${MEMBER_SELECT} WHERE m.name = ?`).raw<MemberTuple>(),
    getMemberByIp: db.prepare(`${MEMBER_SELECT} WHERE m.ip = :ip OR m.ip6 = :ip`).raw<MemberTuple>(),
    getMemberByPublicKey: db.prepare(`${MEMBER_SELECT} WHERE m.public_key = ?`).raw<MemberTuple>(),
    allMembers: db.prepare(`${MEMBER_SELECT} ORDER BY m.name`).raw<MemberTuple>(),
    listMembers: db
      .prepare(`${MEMBER_SELECT} WHERE m.name > :after ORDER BY m.name LIMIT :limit`)
      .raw<MemberTuple>(),
    searchMembers: db
      .prepare(`${MEMBER_SELECT} WHERE m.name > :after AND ${MEMBER_MATCHES} ORDER BY m.name LIMIT :limit`)
      .raw<MemberTuple>(),
    countMembers: db.prepare('SELECT count(*) FROM members').pluck<number>(),
    // expires_at holds toISOString() text, whose order is the time order.
    memberCounts: db.prepare<MemberCounts>(
      `SELECT count(*) AS total,
              coalesce(sum(disabled), 0) AS disabled,
              coalesce(sum(disabled = 0 AND expires_at IS NOT NULL AND expires_at <= :now), 0) AS expired,
              (SELECT count(*) FROM member_status s JOIN members o ON o.name = s.name WHERE s.online = 1)
                AS online
         FROM members`,
    ),
    countMatchingMembers: db
      .prepare(`SELECT count(*) FROM members m WHERE ${MEMBER_MATCHES}`)
      .pluck<number>(),
    insertMember: db.prepare(
      `INSERT INTO members (name, ip, ip6, public_key, private_key, disabled, expires_at, full_tunnel,
                            created_at, updated_at)
       VALUES (:name, :ip, :ip6, :public_key, :private_key, :disabled, :expires_at, :full_tunnel,
               :created_at, :updated_at)`,
    ),
    updateMember: db.prepare<{ id: number }>(
      `UPDATE members SET ${MEMBER_COLUMNS} WHERE name = :name RETURNING id`,
    ),
    deleteMember: db.prepare('DELETE FROM members WHERE name = ?'),
    addMemberGroup: db.prepare(
      'INSERT INTO member_groups (member_id, group_id, position) SELECT ?, id, ? FROM "groups" WHERE name = ?',
    ),
    clearMemberGroups: db.prepare('DELETE FROM member_groups WHERE member_id = ?'),

    listGroups: db.prepare<Group>('SELECT name, description FROM "groups" ORDER BY name'),
    getGroup: db.prepare<Group>('SELECT name, description FROM "groups" WHERE name = ?'),
    insertGroup: db.prepare('INSERT INTO "groups" (name, description) VALUES (?, ?)'),
    updateGroup: db.prepare('UPDATE "groups" SET description = ? WHERE name = ?'),
    deleteGroup: db.prepare('DELETE FROM "groups" WHERE name = ?'),
    groupMembers: db
      .prepare(
        `SELECT m.name FROM "groups" g
           JOIN member_groups mg ON mg.group_id = g.id
           JOIN members m ON m.id = mg.member_id
          WHERE g.name = ? ORDER BY m.name`,
      )
      .pluck<string>(),

    listRoutes: db.prepare<{ cidr: string; description: string; gateway: string | null }>(
      'SELECT cidr, description, gateway FROM routes ORDER BY cidr',
    ),
    insertRoute: db.prepare('INSERT INTO routes (cidr, description, gateway) VALUES (?, ?, ?)'),
    deleteRoute: db.prepare('DELETE FROM routes WHERE cidr = ?'),

    listSites: db.prepare<SiteRow>('SELECT * FROM sites ORDER BY name'),
    getSite: db.prepare<SiteRow>('SELECT * FROM sites WHERE name = ?'),
    insertSite: db.prepare(
      `INSERT INTO sites (name, enabled, remote_address, local_id, remote_id, psk, force_short_psk, local_subnets,
                          remote_subnets, mode, ike_proposals, esp_proposals, allow_legacy_groups,
                          ike_lifetime_sec, child_lifetime_sec, dpd_interval_sec, dpd_action, start_action,
                          policy_groups, created_at, updated_at, auth, certificate, private_key, ca_certificates,
                          multicast, child_per_subnet_pair, ike_hard_lifetime_sec, child_hard_lifetime_sec,
                          fragment_size, child_rekey_bytes, child_life_bytes, gateway)
       VALUES (:name, :enabled, :remote_address, :local_id, :remote_id, :psk, :force_short_psk, :local_subnets,
               :remote_subnets, :mode, :ike_proposals, :esp_proposals, :allow_legacy_groups, :ike_lifetime_sec,
               :child_lifetime_sec, :dpd_interval_sec, :dpd_action, :start_action, :policy_groups, :created_at,
               :updated_at, :auth, :certificate, :private_key, :ca_certificates, :multicast, :child_per_subnet_pair,
               :ike_hard_lifetime_sec, :child_hard_lifetime_sec, :fragment_size, :child_rekey_bytes,
               :child_life_bytes, :gateway)`,
    ),
    updateSite: db.prepare(`UPDATE sites SET ${SITE_COLUMNS} WHERE name = :name`),
    deleteSite: db.prepare('DELETE FROM sites WHERE name = ?'),
    deleteSiteStatus: db.prepare('DELETE FROM site_status WHERE name = ?'),
    clearSiteStatuses: db.prepare('DELETE FROM site_status'),
    putSiteStatus: db.prepare('INSERT INTO site_status (name, status, at) VALUES (?, ?, ?)'),
    allSiteStatuses: db.prepare('SELECT status FROM site_status ORDER BY name').pluck<string>(),

    listPolicies: db.prepare<PolicyRow>(
      'SELECT id, action, grp, destination, proto, port_from, port_to, direction FROM policies ORDER BY id',
    ),
    insertPolicy: db.prepare(
      `INSERT INTO policies (action, grp, destination, proto, port_from, port_to, direction)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
    deletePolicy: db.prepare('DELETE FROM policies WHERE id = ?'),

    appendAudit: db.prepare(
      'INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, json(?))',
    ),
    // Two statements rather than "(? IS NULL OR target = ?)", which would keep SQLite off audit_by_target.
    listAudit: db.prepare<AuditRow>(
      'SELECT id, at, actor, action, target, detail FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?',
    ),
    listAuditOfTarget: db.prepare<AuditRow>(
      `SELECT id, at, actor, action, target, detail FROM audit
        WHERE target = ? AND id < ? ORDER BY id DESC LIMIT ?`,
    ),

    insertToken: db.prepare('INSERT INTO tokens (name, hash, created_at) VALUES (?, ?, ?)'),
    findToken: db.prepare<TokenRow>('SELECT id, name, created_at, last_used_at FROM tokens WHERE hash = ?'),
    touchToken: db.prepare('UPDATE tokens SET last_used_at = ? WHERE id = ?'),
    listTokens: db.prepare<TokenRow>('SELECT id, name, created_at, last_used_at FROM tokens ORDER BY id'),
    deleteToken: db.prepare('DELETE FROM tokens WHERE id = ?'),

    getAdmin: db.prepare<AdminRow>(
      'SELECT username, password_hash, totp_secret FROM admins WHERE username = ?',
    ),
    putAdmin: db.prepare(
      `INSERT INTO admins (username, password_hash, totp_secret) VALUES (?, ?, ?)
       ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash,
                                            totp_secret = excluded.totp_secret`,
    ),

    insertLink: db.prepare(
      `INSERT INTO download_links (hash, member_id, created_at, expires_at, protocol)
       SELECT ?, id, ?, ?, ? FROM members WHERE name = ?`,
    ),
    linkProtocol: db.prepare('SELECT protocol FROM download_links WHERE hash = ?').pluck<ConfigProtocol>(),
    pruneLinks: db.prepare('DELETE FROM download_links WHERE expires_at <= ?'),
    // Unused and unexpired, or nothing: the WHERE clause is the whole check, so the update is the decision.
    takeLink: db
      .prepare(
        `UPDATE download_links SET used_at = :now
          WHERE hash = :hash AND used_at IS NULL AND expires_at > :now
         RETURNING member_id`,
      )
      .pluck<number>(),
    memberNameById: db.prepare('SELECT name FROM members WHERE id = ?').pluck<string>(),

    putConfigDelivery: db.prepare(
      `INSERT INTO config_deliveries (member_id, protocol, fingerprint, delivered_at)
       SELECT id, :protocol, :fingerprint, :at FROM members WHERE name = :name
       ON CONFLICT (member_id, protocol) DO UPDATE SET fingerprint = excluded.fingerprint,
                                                       delivered_at = excluded.delivered_at`,
    ),
    getConfigDelivery: db.prepare<ConfigDelivery>(
      `SELECT m.name, d.fingerprint, d.delivered_at AS deliveredAt
         FROM config_deliveries d JOIN members m ON m.id = d.member_id WHERE m.name = ? AND d.protocol = ?`,
    ),
    allConfigDeliveries: db.prepare<ConfigDelivery>(
      `SELECT m.name, d.fingerprint, d.delivered_at AS deliveredAt
         FROM config_deliveries d JOIN members m ON m.id = d.member_id WHERE d.protocol = ? ORDER BY m.name`,
    ),

    getOpenVpnCredential: db.prepare<OpenVpnCredential>(`${CREDENTIAL_SELECT} WHERE m.name = ?`),
    credentialBySerial: db.prepare<OpenVpnCredential>(`${CREDENTIAL_SELECT} WHERE c.serial = ?`),
    credentialByKeyId: db.prepare<OpenVpnCredential>(`${CREDENTIAL_SELECT} WHERE c.client_key_id = ?`),
    memberIdByName: db.prepare('SELECT id FROM members WHERE name = ?').pluck<number>(),
    putOpenVpnCredential: db.prepare(
      `INSERT INTO openvpn_credentials (member_id, serial, client_key_id, certificate, private_key,
                                        tls_crypt_v2_key, not_after, issued_at)
       VALUES (:memberId, :serial, :clientKeyId, :certificate, :privateKey, :tlsCryptV2Key, :notAfter, :issuedAt)
       ON CONFLICT (member_id) DO NOTHING`,
    ),
    revokeCredentials: db.prepare(
      `INSERT INTO openvpn_revocations (serial, client_key_id, name, revoked_at, reason)
       SELECT c.serial, c.client_key_id, m.name, :at, :reason
         FROM openvpn_credentials c JOIN members m ON m.id = c.member_id WHERE m.name = :name`,
    ),
    deleteCredentials: db.prepare(
      'DELETE FROM openvpn_credentials WHERE member_id = (SELECT id FROM members WHERE name = ?)',
    ),
    revocationBySerial: db.prepare<OpenVpnRevocation>(`${REVOCATION_SELECT} WHERE serial = ?`),
    revocationByKeyId: db.prepare<OpenVpnRevocation>(`${REVOCATION_SELECT} WHERE client_key_id = ?`),
    allRevocations: db.prepare<OpenVpnRevocation>(`${REVOCATION_SELECT} ORDER BY revoked_at, serial`),

    putStatus: db.prepare(
      `INSERT INTO member_status (name, online, endpoint, last_handshake, rx_bytes, tx_bytes, policy_drops,
                                  updated_at, protocol, since)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET online = excluded.online, endpoint = excluded.endpoint,
         last_handshake = excluded.last_handshake, rx_bytes = excluded.rx_bytes, tx_bytes = excluded.tx_bytes,
         policy_drops = excluded.policy_drops, updated_at = excluded.updated_at, protocol = excluded.protocol,
         since = excluded.since`,
    ),
    getStatus: db.prepare<StatusRow>('SELECT * FROM member_status WHERE name = ?'),
    allStatuses: db.prepare<StatusRow>('SELECT * FROM member_status ORDER BY name'),

    addTraffic: db.prepare(
      `INSERT INTO traffic (name, at, rx, tx) VALUES (?, ?, ?, ?)
       ON CONFLICT (name, at) DO UPDATE SET rx = rx + excluded.rx, tx = tx + excluded.tx`,
    ),
    traffic: db.prepare<TrafficRow>(
      'SELECT name, at, rx, tx FROM traffic WHERE name = ? AND at >= ? ORDER BY at',
    ),
    trafficTotal: db.prepare<TrafficRow>(
      `SELECT '' AS name, at, sum(rx) AS rx, sum(tx) AS tx FROM traffic
        WHERE at >= ? GROUP BY at ORDER BY at`,
    ),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

export class SqliteStore implements Store {
  readonly schemaVersion: number;
  readonly #db: Database;
  readonly #sql: Statements;
  /** Runs its argument in a transaction, or in a savepoint when one is already open. */
  readonly #atomically: Database.TransactionFunction<(fn: () => unknown) => unknown>;

  constructor(readonly path: string) {
    const onDisk = path !== '' && path !== ':memory:';
    if (onDisk) makePrivate(path, true);
    const db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
    try {
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (onDisk && mode !== 'wal')
        throw new Error(`${path}: SQLite could not switch to WAL (got ${String(mode)})`);
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      this.schemaVersion = migrate(db, path);
      // SQLite gives a new -wal/-shm the database file's mode; this catches ones left wider by something else.
      if (onDisk) makePrivate(path, false);
      this.#sql = prepareStatements(db);
      this.#atomically = db.transaction((fn: () => unknown) => fn());
    } catch (err) {
      db.close();
      if (isDamageError(err)) throw new StoreDamaged(path, err.message);
      throw err;
    }
    this.#db = db;
  }

  transaction<T>(fn: () => T): T {
    return this.#write(fn);
  }

  /** Open steps of beginStep (the transaction, then savepoints inside it). */
  #steps = 0;

  /**
   * Opens a transaction (BEGIN IMMEDIATE), or a savepoint inside the one open, that stays open until endStep:
   * for the async adapter (store-async.ts), whose transactions span awaits. The methods join it as they join
   * `transaction`.
   */
  beginStep(): void {
    this.#db.exec(this.#steps === 0 ? 'BEGIN IMMEDIATE' : `SAVEPOINT weft_step_${this.#steps}`);
    this.#steps++;
  }

  /** Commits (or rolls back) what the matching beginStep opened. */
  endStep(commit: boolean): void {
    if (this.#steps === 0) throw new Error(`${this.path}: endStep without beginStep`);
    const depth = --this.#steps;
    // SQLite may have rolled the whole transaction back already (e.g. on a full disk).
    if (!this.#db.inTransaction) {
      this.#steps = 0;
      if (commit) throw new Error(`${this.path}: the transaction was rolled back by SQLite`);
      return;
    }
    if (depth === 0) this.#db.exec(commit ? 'COMMIT' : 'ROLLBACK');
    else if (commit) this.#db.exec(`RELEASE weft_step_${depth}`);
    else this.#db.exec(`ROLLBACK TO weft_step_${depth}; RELEASE weft_step_${depth}`);
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }

  /** SQLite's own consistency check: "ok", or what it found wrong (one problem per line). */
  integrityCheck(): string {
    return this.#sql.integrityCheck.all().join('\n');
  }

  /**
   * SQLite's quick check (every page readable, every record well formed; no index-against-table comparison):
   * "ok", or what it found wrong. Fast enough to run at every open; a file too damaged to check says why.
   */
  quickCheck(): string {
    try {
      return this.#db.prepare('PRAGMA quick_check').pluck<string>().all().join('\n');
    } catch (err) {
      if (isDamageError(err)) return err.message;
      throw err;
    }
  }

  /**
   * Copies the store to `destination` (SQLite's online backup: a consistent snapshot, even while other
   * connections write). The file is created with mode 0600 and must not exist.
   */
  async backup(destination: string): Promise<void> {
    closeSync(openSync(destination, 'wx', FILE_MODE));
    // Every page in one step, under one read transaction: a step at a time, a write by another connection
    // between two steps would start the copy over, and a busy server could keep it from ever finishing.
    await this.#db.backup(destination, { progress: () => 0x7fffffff });
    makePrivate(destination, false);
  }

  revision(): number {
    return this.#sql.revision.get() ?? 0;
  }

  changesSince(rev: number, limit = DEFAULT_CHANGES_LIMIT): Change[] {
    return this.#sql.changesSince.all(rev, clampLimit(limit));
  }

  getSettings(): Settings | undefined {
    const json = this.#sql.getSettings.get();
    return json === undefined ? undefined : (JSON.parse(json) as Settings);
  }

  putSettings(settings: Settings): void {
    this.#write(() => {
      this.#sql.putSettings.run(JSON.stringify(settings));
      this.#changed('settings', '');
    });
  }

  getSecret(name: string): string | undefined {
    return this.#sql.getSecret.get(name);
  }

  putSecret(name: string, value: string): void {
    this.#sql.putSecret.run(name, value);
  }

  getMember(name: string): MemberRecord | undefined {
    return toMember(this.#sql.getMember.get(name));
  }

  /** Looks the address up among both the IPv4 and the IPv6 addresses. */
  getMemberByIp(ip: string): MemberRecord | undefined {
    return toMember(this.#sql.getMemberByIp.get({ ip }));
  }

  getMemberByPublicKey(publicKey: string): MemberRecord | undefined {
    return toMember(this.#sql.getMemberByPublicKey.get(publicKey));
  }

  /** `search` folds case for ASCII letters only (SQLite's LIKE), which covers names, addresses and groups. */
  listMembers(query: MemberQuery): MemberRecord[] {
    const after = query.after ?? '';
    const limit = clampLimit(query.limit);
    const rows =
      query.search === undefined || query.search === ''
        ? this.#sql.listMembers.all({ after, limit })
        : this.#sql.searchMembers.all({ after, limit, pattern: containsPattern(query.search) });
    return rows.map(memberFromRow);
  }

  countMembers(search?: string): number {
    return search === undefined || search === ''
      ? (this.#sql.countMembers.get() ?? 0)
      : (this.#sql.countMatchingMembers.get({ pattern: containsPattern(search) }) ?? 0);
  }

  allMembers(): MemberRecord[] {
    return this.#sql.allMembers.all().map(memberFromRow);
  }

  memberCounts(now: string): MemberCounts {
    const row = this.#sql.memberCounts.get({ now });
    return {
      total: row?.total ?? 0,
      disabled: row?.disabled ?? 0,
      expired: row?.expired ?? 0,
      online: row?.online ?? 0,
    };
  }

  insertMember(member: MemberRecord): void {
    this.#write(() => {
      const id = Number(this.#sql.insertMember.run(memberParams(member)).lastInsertRowid);
      this.#setGroups(id, member.groups);
      this.#changed('member', member.name);
    });
  }

  updateMember(member: MemberRecord): boolean {
    return this.#write(() => {
      const row = this.#sql.updateMember.get(memberParams(member));
      if (row === undefined) return false;
      this.#sql.clearMemberGroups.run(row.id);
      this.#setGroups(row.id, member.groups);
      this.#changed('member', member.name);
      return true;
    });
  }

  /** A removed member's OpenVPN credentials go to the revocation list first (the cascade would drop them). */
  deleteMember(name: string): boolean {
    return this.#write(() => {
      this.#sql.revokeCredentials.run({ name, at: new Date().toISOString(), reason: 'removed' });
      if (this.#sql.deleteMember.run(name).changes === 0) return false;
      this.#changed('member', name);
      return true;
    });
  }

  listGroups(): Group[] {
    return this.#sql.listGroups.all();
  }

  getGroup(name: string): Group | undefined {
    return this.#sql.getGroup.get(name);
  }

  insertGroup(group: Group): void {
    this.#write(() => {
      this.#sql.insertGroup.run(group.name, group.description);
      this.#changed('group', group.name);
    });
  }

  updateGroup(group: Group): boolean {
    return this.#write(() => {
      if (this.#sql.updateGroup.run(group.description, group.name).changes === 0) return false;
      this.#changed('group', group.name);
      return true;
    });
  }

  /**
   * Members still in the group leave it (the control plane normally refuses that case first); each of them
   * gets a member change too, since a follower that only reloaded the group would miss that their groups moved.
   */
  deleteGroup(name: string): boolean {
    return this.#write(() => {
      const members = this.#sql.groupMembers.all(name);
      if (this.#sql.deleteGroup.run(name).changes === 0) return false;
      this.#changed('group', name);
      for (const member of members) this.#changed('member', member);
      return true;
    });
  }

  groupMembers(name: string): string[] {
    return this.#sql.groupMembers.all(name);
  }

  listRoutes(): SharedRoute[] {
    return this.#sql.listRoutes.all().map(routeFromRow);
  }

  insertRoute(route: SharedRoute): void {
    this.#write(() => {
      this.#sql.insertRoute.run(route.cidr, route.description, route.gateway ?? null);
      this.#changed('route', route.cidr);
    });
  }

  deleteRoute(cidr: string): boolean {
    return this.#write(() => {
      if (this.#sql.deleteRoute.run(cidr).changes === 0) return false;
      this.#changed('route', cidr);
      return true;
    });
  }

  listSites(): SiteRecord[] {
    return this.#sql.listSites.all().map(siteFromRow);
  }

  getSite(name: string): SiteRecord | undefined {
    const row = this.#sql.getSite.get(name);
    return row === undefined ? undefined : siteFromRow(row);
  }

  insertSite(site: SiteRecord): void {
    this.#write(() => {
      if (this.#sql.getSite.get(site.name) !== undefined)
        throw new StoreConflict(`a site named "${site.name}" already exists`);
      this.#sql.insertSite.run(siteParams(site));
      this.#changed('site', site.name);
    });
  }

  updateSite(site: SiteRecord): boolean {
    return this.#write(() => {
      if (this.#sql.updateSite.run(siteParams(site)).changes === 0) return false;
      this.#changed('site', site.name);
      return true;
    });
  }

  deleteSite(name: string): boolean {
    return this.#write(() => {
      if (this.#sql.deleteSite.run(name).changes === 0) return false;
      this.#sql.deleteSiteStatus.run(name);
      this.#changed('site', name);
      return true;
    });
  }

  putSiteStatuses(statuses: readonly SiteStatus[]): void {
    this.#write(() => {
      this.#sql.clearSiteStatuses.run();
      for (const s of statuses) this.#sql.putSiteStatus.run(s.name, JSON.stringify(s), s.at);
    });
  }

  allSiteStatuses(): SiteStatus[] {
    return this.#sql.allSiteStatuses.all().map((json) => JSON.parse(json) as SiteStatus);
  }

  listPolicies(): Policy[] {
    return this.#sql.listPolicies.all().map(policyFromRow);
  }

  insertPolicy(policy: PolicyInput): Policy {
    return this.#write(() => {
      const { action, group, destination, proto, ports, direction } = policy;
      const result = this.#sql.insertPolicy.run(
        action,
        group,
        destination,
        proto,
        ports?.from ?? null,
        ports?.to ?? null,
        direction,
      );
      const id = Number(result.lastInsertRowid);
      this.#changed('policy', String(id));
      return {
        id,
        action,
        group,
        destination,
        proto,
        ports: ports === null ? null : { ...ports },
        direction,
      };
    });
  }

  deletePolicy(id: number): boolean {
    return this.#write(() => {
      if (this.#sql.deletePolicy.run(id).changes === 0) return false;
      this.#changed('policy', String(id));
      return true;
    });
  }

  appendAudit(entry: Omit<AuditEntry, 'id'>): AuditEntry {
    const detail = JSON.stringify(entry.detail);
    const result = this.#sql.appendAudit.run(entry.at, entry.actor, entry.action, entry.target, detail);
    return {
      ...entry,
      id: Number(result.lastInsertRowid),
      detail: JSON.parse(detail) as AuditEntry['detail'],
    };
  }

  listAudit(query: { before?: number; limit: number; target?: string }): AuditEntry[] {
    const before = query.before ?? Number.MAX_SAFE_INTEGER;
    const limit = clampLimit(query.limit);
    const rows =
      query.target === undefined
        ? this.#sql.listAudit.all(before, limit)
        : this.#sql.listAuditOfTarget.all(query.target, before, limit);
    return rows.map((r) => ({
      id: r.id,
      at: r.at,
      actor: r.actor,
      action: r.action,
      target: r.target,
      detail: JSON.parse(r.detail) as AuditEntry['detail'],
    }));
  }

  insertToken(name: string, hash: string, createdAt: string): ApiToken {
    const id = this.#mapped(() => Number(this.#sql.insertToken.run(name, hash, createdAt).lastInsertRowid));
    return { id, name, createdAt, lastUsedAt: null };
  }

  findToken(hash: string): ApiToken | undefined {
    const row = this.#sql.findToken.get(hash);
    return row === undefined ? undefined : tokenFromRow(row);
  }

  touchToken(id: number, at: string): void {
    this.#sql.touchToken.run(at, id);
  }

  listTokens(): ApiToken[] {
    return this.#sql.listTokens.all().map(tokenFromRow);
  }

  deleteToken(id: number): boolean {
    return this.#sql.deleteToken.run(id).changes > 0;
  }

  getAdmin(username: string): AdminAccount | undefined {
    const row = this.#sql.getAdmin.get(username);
    return row === undefined
      ? undefined
      : { username: row.username, passwordHash: row.password_hash, totpSecret: row.totp_secret };
  }

  putAdmin(account: AdminAccount): void {
    this.#sql.putAdmin.run(account.username, account.passwordHash, account.totpSecret);
  }

  insertLink(
    hash: string,
    member: string,
    createdAt: string,
    expiresAt: string,
    protocol: ConfigProtocol = 'wireguard',
  ): void {
    this.#write(() => {
      this.#sql.pruneLinks.run(createdAt);
      if (this.#sql.insertLink.run(hash, createdAt, expiresAt, protocol, member).changes === 0)
        throw new StoreConflict(`download_links.member: there is no member named ${JSON.stringify(member)}`);
    });
  }

  linkProtocol(hash: string): ConfigProtocol | undefined {
    return this.#sql.linkProtocol.get(hash);
  }

  takeLink(hash: string, now: string): string | undefined {
    return this.#write(() => {
      const memberId = this.#sql.takeLink.get({ hash, now });
      // The foreign key cascade removes a removed member's links, so the member is there; the lookup says so.
      return memberId === undefined ? undefined : this.#sql.memberNameById.get(memberId);
    });
  }

  putConfigDelivery(delivery: ConfigDelivery, protocol: ConfigProtocol = 'wireguard'): void {
    this.#write(() => {
      const { name, fingerprint, deliveredAt: at } = delivery;
      if (this.#sql.putConfigDelivery.run({ name, protocol, fingerprint, at }).changes === 0)
        throw new StoreConflict(`config_deliveries.member: there is no member named ${JSON.stringify(name)}`);
    });
  }

  getConfigDelivery(name: string, protocol: ConfigProtocol = 'wireguard'): ConfigDelivery | undefined {
    return this.#sql.getConfigDelivery.get(name, protocol);
  }

  allConfigDeliveries(protocol: ConfigProtocol = 'wireguard'): ConfigDelivery[] {
    return this.#sql.allConfigDeliveries.all(protocol);
  }

  getOpenVpnCredential(name: string): OpenVpnCredential | undefined {
    return this.#sql.getOpenVpnCredential.get(name);
  }

  findOpenVpnCredential(by: { serial: string } | { clientKeyId: string }): OpenVpnCredential | undefined {
    return 'serial' in by
      ? this.#sql.credentialBySerial.get(by.serial)
      : this.#sql.credentialByKeyId.get(by.clientKeyId);
  }

  putOpenVpnCredential(credential: OpenVpnCredential): boolean {
    return this.#write(() => {
      const memberId = this.#sql.memberIdByName.get(credential.name);
      if (memberId === undefined)
        throw new StoreConflict(
          `openvpn_credentials.member: there is no member named ${JSON.stringify(credential.name)}`,
        );
      const { serial, clientKeyId, certificate, privateKey, tlsCryptV2Key, notAfter, issuedAt } = credential;
      const params = {
        memberId,
        serial,
        clientKeyId,
        certificate,
        privateKey,
        tlsCryptV2Key,
        notAfter,
        issuedAt,
      };
      return this.#sql.putOpenVpnCredential.run(params).changes === 1;
    });
  }

  revokeOpenVpnCredential(
    name: string,
    at: string,
    reason: OpenVpnRevocation['reason'],
  ): OpenVpnRevocation | undefined {
    return this.#write(() => {
      const current = this.#sql.getOpenVpnCredential.get(name);
      if (current === undefined) return undefined;
      this.#sql.revokeCredentials.run({ name, at, reason });
      this.#sql.deleteCredentials.run(name);
      return this.#sql.revocationBySerial.get(current.serial);
    });
  }

  findOpenVpnRevocation(by: { serial: string } | { clientKeyId: string }): OpenVpnRevocation | undefined {
    return 'serial' in by
      ? this.#sql.revocationBySerial.get(by.serial)
      : this.#sql.revocationByKeyId.get(by.clientKeyId);
  }

  allOpenVpnRevocations(): OpenVpnRevocation[] {
    return this.#sql.allRevocations.all();
  }

  putStatuses(statuses: readonly MemberStatus[]): void {
    this.#write(() => {
      for (const s of statuses) {
        this.#sql.putStatus.run(
          s.name,
          s.online ? 1 : 0,
          s.endpoint,
          s.lastHandshake,
          s.rxBytes,
          s.txBytes,
          s.policyDrops,
          s.updatedAt,
          s.protocol,
          s.since,
        );
      }
    });
  }

  getStatus(name: string): MemberStatus | undefined {
    const row = this.#sql.getStatus.get(name);
    return row === undefined ? undefined : statusFromRow(row);
  }

  allStatuses(): MemberStatus[] {
    return this.#sql.allStatuses.all().map(statusFromRow);
  }

  addTraffic(samples: readonly TrafficSample[]): void {
    this.#write(() => {
      for (const s of samples) this.#sql.addTraffic.run(s.name, s.at, s.rxBytes, s.txBytes);
    });
  }

  traffic(name: string, since: string): TrafficSample[] {
    const rows = name === '' ? this.#sql.trafficTotal.all(since) : this.#sql.traffic.all(name, since);
    return rows.map((r) => ({ name: r.name, at: r.at, rxBytes: r.rx, txBytes: r.tx }));
  }

  /** Runs `fn` atomically (joining an open transaction), with unique violations reported as StoreConflict. */
  #write<T>(fn: () => T): T {
    return this.#mapped(() => this.#atomically.immediate(fn) as T);
  }

  #mapped<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw asConflict(err);
    }
  }

  #setGroups(memberId: number, groups: readonly string[]): void {
    let position = 0;
    for (const group of new Set(groups)) {
      if (this.#sql.addMemberGroup.run(memberId, position++, group).changes === 0) {
        throw new StoreConflict(`member_groups.group: there is no group named ${JSON.stringify(group)}`);
      }
    }
  }

  #changed(kind: ChangeKind, key: string): void {
    const rev = Number(this.#sql.appendChange.run(kind, key).lastInsertRowid);
    if (rev % CHANGE_FEED_PRUNE_EVERY === 0) this.#sql.pruneChanges.run(rev - CHANGE_FEED_KEEP);
  }
}

export function openSqliteStore(path: string): SqliteStore {
  return new SqliteStore(path);
}

/** Brings the file to the schema this build writes; returns that version. */
function migrate(db: Database, path: string): number {
  const userVersion = db.prepare('PRAGMA user_version').pluck<number>();
  const known = (): number => {
    const version = userVersion.get() ?? 0;
    if (version > SCHEMA_VERSION) throw new StoreSchemaTooNew(path, version);
    return version;
  };
  // The common case, an up-to-date file, takes no write lock.
  if (known() === SCHEMA_VERSION) return SCHEMA_VERSION;
  // Read the version again under the write lock: another process may have migrated in between.
  const apply = db.transaction(() => {
    const from = known();
    for (const migration of MIGRATIONS.slice(from)) migration(db);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  });
  apply.immediate();
  return SCHEMA_VERSION;
}

/** SQLite error codes that mean the file itself is damaged (not a lock, not a full disk). */
export function isDamageError(err: unknown): err is Error & { code: string } {
  if (!(err instanceof Error) || !('code' in err) || typeof err.code !== 'string') return false;
  return err.code === 'SQLITE_NOTADB' || err.code.startsWith('SQLITE_CORRUPT');
}

/** The store file is damaged: SQLite cannot read it as a database, or its own check found problems. */
export class StoreDamaged extends Error {
  constructor(
    readonly path: string,
    readonly detail: string,
  ) {
    super(`${path}: the store is damaged (${detail})`);
    this.name = 'StoreDamaged';
  }
}

/**
 * Creates the database file with mode 0600 when it is missing (so it is never readable by others, not even
 * for an instant) and narrows the mode of it and its -wal/-shm files when they are wider.
 */
function makePrivate(path: string, create: boolean): void {
  if (create) closeSync(openSync(path, 'a', FILE_MODE));
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    let mode: number;
    try {
      mode = statSync(file).mode & 0o777;
    } catch {
      continue;
    }
    // Only when needed: a process that does not own the file (and finds it private already) may not chmod it.
    if (mode !== FILE_MODE) chmodSync(file, FILE_MODE);
  }
}

function asConflict(err: unknown): unknown {
  if (!(err instanceof Error) || !('code' in err)) return err;
  if (err.code !== 'SQLITE_CONSTRAINT_UNIQUE' && err.code !== 'SQLITE_CONSTRAINT_PRIMARYKEY') return err;
  // SQLite says "UNIQUE constraint failed: members.ip"; the table.column part is what callers need.
  const columns = /constraint failed: (.+)$/.exec(err.message)?.[1] ?? 'a unique column';
  return new StoreConflict(`${columns}: another row already has this value`);
}

/** LIMIT -1 means "no limit" to SQLite; a caller's negative or fractional limit must not become that. */
function clampLimit(limit: number): number {
  return Number.isFinite(limit) ? Math.max(0, Math.floor(limit)) : 0;
}

function containsPattern(search: string): string {
  return `%${search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

function memberParams(m: MemberRecord): Record<string, unknown> {
  return {
    name: m.name,
    ip: m.ip,
    ip6: m.ip6,
    public_key: m.publicKey,
    private_key: m.privateKey,
    disabled: m.disabled ? 1 : 0,
    expires_at: m.expiresAt,
    full_tunnel: m.fullTunnel ? 1 : 0,
    created_at: m.createdAt,
    updated_at: m.updatedAt,
  };
}

function toMember(row: MemberTuple | undefined): MemberRecord | undefined {
  return row === undefined ? undefined : memberFromRow(row);
}

function memberFromRow(row: MemberTuple): MemberRecord {
  const [
    name,
    ip,
    ip6,
    publicKey,
    privateKey,
    disabled,
    expiresAt,
    fullTunnel,
    createdAt,
    updatedAt,
    groups,
  ] = row;
  return {
    name,
    ip,
    ip6,
    publicKey,
    hasPrivateKey: privateKey !== null,
    privateKey,
    groups: JSON.parse(groups) as string[],
    disabled: disabled === 1,
    expiresAt,
    fullTunnel: fullTunnel === 1,
    createdAt,
    updatedAt,
  };
}

function policyFromRow(r: PolicyRow): Policy {
  return {
    id: r.id,
    action: r.action,
    group: r.grp,
    destination: r.destination,
    proto: r.proto,
    ports: r.port_from === null || r.port_to === null ? null : { from: r.port_from, to: r.port_to },
    direction: r.direction,
  };
}

function tokenFromRow(r: TokenRow): ApiToken {
  return { id: r.id, name: r.name, createdAt: r.created_at, lastUsedAt: r.last_used_at };
}

function connectionProtocol(text: string | null): ConnectionProtocol | null {
  return CONNECTION_PROTOCOLS.find((p) => p === text) ?? null;
}

function statusFromRow(r: StatusRow): MemberStatus {
  return {
    name: r.name,
    online: r.online === 1,
    protocol: connectionProtocol(r.protocol),
    since: r.since,
    endpoint: r.endpoint,
    lastHandshake: r.last_handshake,
    rxBytes: r.rx_bytes,
    txBytes: r.tx_bytes,
    policyDrops: r.policy_drops,
    updatedAt: r.updated_at,
  };
}

function siteParams(s: SiteRecord): Record<string, string | number | null> {
  return {
    name: s.name,
    enabled: s.enabled ? 1 : 0,
    remote_address: s.remoteAddress,
    local_id: s.localId,
    remote_id: s.remoteId,
    auth: s.auth,
    psk: s.psk,
    force_short_psk: s.forceShortPsk ? 1 : 0,
    certificate: s.certificate,
    private_key: s.privateKey,
    ca_certificates: s.caCertificates,
    local_subnets: JSON.stringify(s.localSubnets),
    remote_subnets: JSON.stringify(s.remoteSubnets),
    mode: s.mode,
    ike_proposals: JSON.stringify(s.ikeProposals),
    esp_proposals: JSON.stringify(s.espProposals),
    allow_legacy_groups: s.allowLegacyGroups ? 1 : 0,
    ike_lifetime_sec: s.ikeLifetimeSec,
    child_lifetime_sec: s.childLifetimeSec,
    dpd_interval_sec: s.dpdIntervalSec,
    dpd_action: s.dpdAction,
    start_action: s.startAction,
    policy_groups: JSON.stringify(s.groups),
    multicast: JSON.stringify(s.multicast),
    created_at: s.createdAt,
    updated_at: s.updatedAt,
    child_per_subnet_pair: s.childPerSubnetPair ? 1 : 0,
    ike_hard_lifetime_sec: s.ikeHardLifetimeSec,
    child_hard_lifetime_sec: s.childHardLifetimeSec,
    fragment_size: s.fragmentSize,
    child_rekey_bytes: s.childRekeyBytes,
    child_life_bytes: s.childLifeBytes,
    gateway: s.gateway ?? null,
  };
}

function routeFromRow(r: { cidr: string; description: string; gateway: string | null }): SharedRoute {
  return { cidr: r.cidr, description: r.description, ...(r.gateway === null ? {} : { gateway: r.gateway }) };
}

function siteFromRow(r: SiteRow): SiteRecord {
  const list = (json: string): string[] => JSON.parse(json) as string[];
  return {
    name: r.name,
    enabled: r.enabled === 1,
    remoteAddress: r.remote_address,
    localId: r.local_id,
    remoteId: r.remote_id,
    auth: r.auth,
    psk: r.psk,
    forceShortPsk: r.force_short_psk === 1,
    certificate: r.certificate,
    privateKey: r.private_key,
    caCertificates: r.ca_certificates,
    localSubnets: list(r.local_subnets),
    remoteSubnets: list(r.remote_subnets),
    mode: r.mode,
    ikeProposals: list(r.ike_proposals),
    espProposals: list(r.esp_proposals),
    allowLegacyGroups: r.allow_legacy_groups === 1,
    ikeLifetimeSec: r.ike_lifetime_sec,
    childLifetimeSec: r.child_lifetime_sec,
    dpdIntervalSec: r.dpd_interval_sec,
    dpdAction: r.dpd_action,
    startAction: r.start_action,
    groups: list(r.policy_groups),
    multicast: list(r.multicast),
    childPerSubnetPair: r.child_per_subnet_pair === 1,
    ikeHardLifetimeSec: r.ike_hard_lifetime_sec,
    childHardLifetimeSec: r.child_hard_lifetime_sec,
    fragmentSize: r.fragment_size,
    childRekeyBytes: r.child_rekey_bytes,
    childLifeBytes: r.child_life_bytes,
    ...(r.gateway === null ? {} : { gateway: r.gateway }),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}
