/**
 * The shared control-plane store on PostgreSQL (`pg`), for several gateways on one database. Same tables,
 * rules and messages as the SQLite store (store-sqlite.ts), behind the asynchronous interface (store-async.ts).
 *
 * - Connections: a pool. A call outside a transaction takes a connection for that call; a transaction keeps
 *   one connection from BEGIN to COMMIT, found by the calls inside it through AsyncLocalStorage. Every write
 *   inside a transaction runs in a savepoint, so a failing one (a StoreConflict) rolls back alone, as in
 *   SQLite, instead of aborting the whole transaction.
 * - Schema: `schema_migrations` holds one row per applied version; MIGRATIONS[v] takes the database from
 *   version v to v + 1. Opening applies the pending ones in one transaction under an advisory lock, so two
 *   gateways starting at once do not both migrate, and refuses a database written by a newer build.
 * - Change feed: `changes` is written in the same transaction as each change. Revisions come from the one
 *   row of `feed_head`, advanced with one UPDATE per transaction as it commits (by the number of changes it
 *   made, which get the revisions in between, in the order they were made); the row lock (taken with the
 *   transaction's first change) is held until COMMIT, so writers of the
 *   feed take turns, a revision is only handed out after the one before has committed (or rolled back, which
 *   rolls the counter back too). Revisions are therefore gap-free and in commit order, which `changesSince`
 *   relies on: a follower that has seen revision n never later finds a new revision below n. (A sequence would
 *   leave gaps on rollback and could commit 7 before 6.) Each method that appends to the feed takes this lock
 *   first, before touching any other row, so two writers never hold locks in opposite orders.
 *   A transaction that appended sends `NOTIFY weft_changes, '<revision>'` before COMMIT (delivered at commit);
 *   `listen` keeps a connection that wakes followers with it.
 * - Races between gateways: a unique violation (SQLSTATE 23505) is a StoreConflict naming the constraint,
 *   whose names are the SQLite store's "table.column"; `takeLink` is one UPDATE whose WHERE clause is the
 *   whole check, and a concurrent UPDATE of the same row re-checks it after the first commits (READ
 *   COMMITTED), so a link is taken once.
 * - Text columns use the "C" collation, so names sort and compare byte-wise as in SQLite, whatever locale the
 *   database was created with. Secrets are stored as the SQLite store stores them (the `secrets` table).
 * - Connection loss: a call that cannot reach the server rejects with StoreUnavailable; the pool opens new
 *   connections for later calls.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
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
  PolicyAction,
  PolicyDirection,
  PolicyInput,
  Proto,
  Settings,
  SharedRoute,
  SiteRecord,
  TrafficSample,
} from './model.js';
import { gatewayChangeKey } from './model.js';
import type { SiteStatus } from '../ipsec/site-spec.js';
import { StoreConflict, type MemberQuery } from './store.js';
import type { AsyncStore } from './store-async.js';
import { acquireLease, LEASE_LOCK_SPACE, type Lease, type LeaseOptions } from './pg-lease.js';

/** The change feed keeps at least this many of its newest rows, trimmed every CHANGE_FEED_PRUNE_EVERY. */
const CHANGE_FEED_KEEP = 10_000;
const CHANGE_FEED_PRUNE_EVERY = 1000;
const DEFAULT_CHANGES_LIMIT = 1000;
/** The channel of change notifications; the payload is the revision as decimal text. */
export const CHANGES_CHANNEL = 'weft_changes';
/** The key of the advisory lock held while migrating ("weft" in ASCII). */
const MIGRATION_LOCK = 0x77656674;
const CONNECT_TIMEOUT_MS = 5000;
const POOL_SIZE = 10;
/** Reconnection of a listener: first retry after this, doubling up to LISTEN_RETRY_MAX_MS. */
const LISTEN_RETRY_MIN_MS = 100;
const LISTEN_RETRY_MAX_MS = 2000;

/**
 * Version 1: the SQLite store's three versions in one (this store started with all of them). Names of unique
 * constraints are "table.column", which is what StoreConflict messages carry.
 */
const SCHEMA_V1 = `
CREATE TABLE settings (
  id integer PRIMARY KEY CHECK (id = 1),
  value json NOT NULL
);

CREATE TABLE secrets (
  name text COLLATE "C" CONSTRAINT "secrets.name" PRIMARY KEY,
  value text NOT NULL
);

CREATE TABLE members (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text COLLATE "C" NOT NULL CONSTRAINT "members.name" UNIQUE,
  ip text COLLATE "C" NOT NULL CONSTRAINT "members.ip" UNIQUE,
  ip6 text COLLATE "C" CONSTRAINT "members.ip6" UNIQUE,
  public_key text COLLATE "C" NOT NULL CONSTRAINT "members.public_key" UNIQUE,
  private_key text,
  disabled boolean NOT NULL,
  expires_at text COLLATE "C",
  full_tunnel boolean NOT NULL,
  created_at text NOT NULL,
  updated_at text NOT NULL
);

CREATE TABLE "groups" (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text COLLATE "C" NOT NULL CONSTRAINT "groups.name" UNIQUE,
  description text NOT NULL
);

CREATE TABLE member_groups (
  member_id bigint NOT NULL REFERENCES members (id) ON DELETE CASCADE,
  group_id bigint NOT NULL REFERENCES "groups" (id) ON DELETE CASCADE,
  position integer NOT NULL,
  PRIMARY KEY (member_id, group_id)
);
CREATE INDEX member_groups_by_group ON member_groups (group_id, member_id);

CREATE TABLE routes (
  cidr text COLLATE "C" CONSTRAINT "routes.cidr" PRIMARY KEY,
  description text NOT NULL
);

CREATE TABLE policies (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  action text NOT NULL CHECK (action IN ('allow', 'deny')),
  grp text NOT NULL,
  destination text NOT NULL,
  proto text NOT NULL CHECK (proto IN ('any', 'tcp', 'udp', 'icmp')),
  port_from integer,
  port_to integer,
  CHECK ((port_from IS NULL) = (port_to IS NULL))
);

CREATE TABLE audit (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at text NOT NULL,
  actor text NOT NULL,
  action text NOT NULL,
  target text COLLATE "C" NOT NULL,
  detail json NOT NULL
);
CREATE INDEX audit_by_target ON audit (target, id);

CREATE TABLE tokens (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL,
  hash text COLLATE "C" NOT NULL CONSTRAINT "tokens.hash" UNIQUE,
  created_at text NOT NULL,
  last_used_at text
);

CREATE TABLE admins (
  username text COLLATE "C" CONSTRAINT "admins.username" PRIMARY KEY,
  password_hash text NOT NULL,
  totp_secret text
);

CREATE TABLE member_status (
  name text COLLATE "C" CONSTRAINT "member_status.name" PRIMARY KEY,
  online boolean NOT NULL,
  endpoint text,
  last_handshake text,
  rx_bytes bigint NOT NULL,
  tx_bytes bigint NOT NULL,
  policy_drops bigint NOT NULL,
  updated_at text NOT NULL
);

CREATE TABLE traffic (
  name text COLLATE "C" NOT NULL,
  at text COLLATE "C" NOT NULL,
  rx bigint NOT NULL,
  tx bigint NOT NULL,
  CONSTRAINT "traffic.name, traffic.at" PRIMARY KEY (name, at)
);
CREATE INDEX traffic_by_at ON traffic (at);

CREATE TABLE feed_head (
  id integer PRIMARY KEY CHECK (id = 1),
  rev bigint NOT NULL
);
INSERT INTO feed_head (id, rev) VALUES (1, 0);

CREATE TABLE changes (
  rev bigint PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('settings', 'member', 'group', 'route', 'policy')),
  key text NOT NULL
);

CREATE TABLE download_links (
  hash text COLLATE "C" CONSTRAINT "download_links.hash" PRIMARY KEY,
  member_id bigint NOT NULL REFERENCES members (id) ON DELETE CASCADE,
  created_at text COLLATE "C" NOT NULL,
  expires_at text COLLATE "C" NOT NULL,
  used_at text
);
CREATE INDEX download_links_by_member ON download_links (member_id);
CREATE INDEX download_links_by_expiry ON download_links (expires_at);

CREATE TABLE config_deliveries (
  member_id bigint PRIMARY KEY REFERENCES members (id) ON DELETE CASCADE,
  fingerprint text NOT NULL,
  delivered_at text NOT NULL
);
`;

/**
 * Version 2: OpenVPN, as the SQLite store's version 4. Per member its current credentials (going with the
 * member row); the revocation list, which outlives the member (a removed member's certificate must stay
 * refused); config fingerprints per protocol (the existing rows are WireGuard's); and which config a one-time
 * link hands out (existing links: WireGuard's).
 */
const SCHEMA_V2 = `
CREATE TABLE openvpn_credentials (
  member_id bigint PRIMARY KEY REFERENCES members (id) ON DELETE CASCADE,
  serial text COLLATE "C" NOT NULL CONSTRAINT "openvpn_credentials.serial" UNIQUE,
  client_key_id text COLLATE "C" NOT NULL CONSTRAINT "openvpn_credentials.client_key_id" UNIQUE,
  certificate text NOT NULL,
  private_key text NOT NULL,
  tls_crypt_v2_key text NOT NULL,
  not_after text NOT NULL,
  issued_at text NOT NULL
);

CREATE TABLE openvpn_revocations (
  serial text COLLATE "C" CONSTRAINT "openvpn_revocations.serial" PRIMARY KEY,
  client_key_id text COLLATE "C" NOT NULL CONSTRAINT "openvpn_revocations.client_key_id" UNIQUE,
  name text NOT NULL,
  revoked_at text COLLATE "C" NOT NULL,
  reason text NOT NULL CHECK (reason IN ('rotated', 'removed'))
);
CREATE INDEX openvpn_revocations_by_time ON openvpn_revocations (revoked_at, serial);

ALTER TABLE config_deliveries ADD COLUMN protocol text NOT NULL DEFAULT 'wireguard'
  CHECK (protocol IN ('wireguard', 'openvpn'));
ALTER TABLE config_deliveries ALTER COLUMN protocol DROP DEFAULT;
ALTER TABLE config_deliveries DROP CONSTRAINT config_deliveries_pkey;
ALTER TABLE config_deliveries ADD PRIMARY KEY (member_id, protocol);

ALTER TABLE download_links ADD COLUMN protocol text NOT NULL DEFAULT 'wireguard'
  CHECK (protocol IN ('wireguard', 'openvpn'));
`;

/**
 * Version 3: IPsec sites, as the SQLite store's version 5. A site is one row; its lists (subnets, proposals,
 * policy groups) are jsonb arrays, read and written whole (nothing joins on them: a deleted group's name is
 * removed from every site by the control plane, in the transaction that deletes the group). The live status the
 * gateway reports is one jsonb document per site, replaced wholesale. The change feed gains the kind 'site'.
 */
const SCHEMA_V3 = `
CREATE TABLE sites (
  name text COLLATE "C" CONSTRAINT "sites.name" PRIMARY KEY,
  enabled boolean NOT NULL,
  remote_address text,
  local_id text,
  remote_id text,
  psk text NOT NULL,
  force_short_psk boolean NOT NULL,
  local_subnets jsonb NOT NULL CHECK (jsonb_typeof(local_subnets) = 'array'),
  remote_subnets jsonb NOT NULL CHECK (jsonb_typeof(remote_subnets) = 'array'),
  mode text NOT NULL CHECK (mode IN ('tunnel', 'transport')),
  ike_proposals jsonb NOT NULL CHECK (jsonb_typeof(ike_proposals) = 'array'),
  esp_proposals jsonb NOT NULL CHECK (jsonb_typeof(esp_proposals) = 'array'),
  allow_legacy_groups boolean NOT NULL,
  ike_lifetime_sec integer NOT NULL,
  child_lifetime_sec integer NOT NULL,
  dpd_interval_sec integer NOT NULL,
  dpd_action text NOT NULL CHECK (dpd_action IN ('restart', 'clear', 'hold')),
  start_action text NOT NULL CHECK (start_action IN ('initiate', 'wait', 'on-traffic')),
  policy_groups jsonb NOT NULL CHECK (jsonb_typeof(policy_groups) = 'array'),
  created_at text NOT NULL,
  updated_at text NOT NULL
);

CREATE TABLE site_status (
  name text COLLATE "C" CONSTRAINT "site_status.name" PRIMARY KEY,
  status jsonb NOT NULL,
  at text NOT NULL
);

-- The name PostgreSQL gave version 1's column constraint.
ALTER TABLE changes DROP CONSTRAINT changes_kind_check;
ALTER TABLE changes ADD CONSTRAINT changes_kind_check
  CHECK (kind IN ('settings', 'member', 'group', 'route', 'policy', 'site'));
`;

/**
 * Version 4: failover primitives. `gateways`: every gateway sharing this database, registered by itself, with
 * the time it last said it was alive (the database's clock, so gateways' clocks need not agree). `leases`: a
 * number per lease name, the second key of the lease's advisory lock (pg-lease.ts); the holder is not stored,
 * it is whichever live session holds the lock.
 */
const SCHEMA_V4 = `
CREATE TABLE gateways (
  name text COLLATE "C" CONSTRAINT "gateways.name" PRIMARY KEY,
  endpoint text NOT NULL,
  public_key text COLLATE "C" NOT NULL CONSTRAINT "gateways.public_key" UNIQUE,
  region text NOT NULL,
  registered_at timestamptz NOT NULL DEFAULT now(),
  last_seen timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE leases (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text COLLATE "C" NOT NULL CONSTRAINT "leases.name" UNIQUE
);
`;

/** Version 5: a member's status says which protocol carries it while online, and since when. */
const SCHEMA_V5 = `
ALTER TABLE member_status ADD COLUMN protocol text
  CONSTRAINT "member_status.protocol" CHECK (protocol IS NULL OR protocol IN ('wireguard', 'openvpn-udp', 'openvpn-tcp'));
ALTER TABLE member_status ADD COLUMN since text;
`;

/**
 * Version 6: sites authenticate with a pre-shared key or certificates, as the SQLite store's version 7: our
 * certificate and chain, its private key (a secret, kept as the pre-shared key is) and the trusted CAs, PEM.
 */
const SCHEMA_V6 = `
ALTER TABLE sites ADD COLUMN auth text NOT NULL DEFAULT 'psk' CONSTRAINT "sites.auth" CHECK (auth IN ('psk', 'cert'));
ALTER TABLE sites ADD COLUMN certificate text;
ALTER TABLE sites ADD COLUMN private_key text;
ALTER TABLE sites ADD COLUMN ca_certificates text;
`;

/**
 * Version 7: the peering mesh between gateways (src/server/mesh.ts). A gateway's mesh UDP port (NULL on rows
 * from before: the network's listen port + 1) and its mesh peers as it last reported them (jsonb); a member's
 * status names the gateway holding its session, which the other gateways route its addresses to.
 */
const SCHEMA_V7 = `
ALTER TABLE gateways ADD COLUMN mesh_port integer
  CONSTRAINT "gateways.mesh_port" CHECK (mesh_port IS NULL OR mesh_port BETWEEN 1 AND 65535);
ALTER TABLE gateways ADD COLUMN mesh jsonb;
ALTER TABLE member_status ADD COLUMN gateway text COLLATE "C";
`;

/** Version 8: a site's multicast group ranges (empty: the site is no multicast port). */
const SCHEMA_V8 = `
ALTER TABLE sites ADD COLUMN multicast jsonb NOT NULL DEFAULT '[]'
  CONSTRAINT "sites.multicast" CHECK (jsonb_typeof(multicast) = 'array');
`;

/** Version 9: IPsec site details, as the SQLite store's version 9 (byte counts need bigint). */
const SCHEMA_V9 = `
ALTER TABLE sites ADD COLUMN child_per_subnet_pair boolean NOT NULL DEFAULT false;
ALTER TABLE sites ADD COLUMN ike_hard_lifetime_sec integer;
ALTER TABLE sites ADD COLUMN child_hard_lifetime_sec integer;
ALTER TABLE sites ADD COLUMN fragment_size integer NOT NULL DEFAULT 1280;
ALTER TABLE sites ADD COLUMN child_rekey_bytes bigint NOT NULL DEFAULT 0;
ALTER TABLE sites ADD COLUMN child_life_bytes bigint NOT NULL DEFAULT 0;
`;

/**
 * Version 10: the gateway that serves a shared route or a site (NULL: every gateway serves it from its own
 * host), as the SQLite store's version 10. A name, not a reference: `weft gateway remove` refuses while a
 * route or site names the gateway, in the control plane.
 */
const SCHEMA_V10 = `
ALTER TABLE routes ADD COLUMN gateway text COLLATE "C";
ALTER TABLE sites ADD COLUMN gateway text COLLATE "C";
`;

/**
 * Version 11: multicast receive rules, as the SQLite store's version 11: a policy's direction (`send` for
 * every existing rule), and on a network that already has members or sites the rule `allow * any receive`,
 * audited under the actor "upgrade", so receivers keep what they got before.
 */
const SCHEMA_V11 = `
ALTER TABLE policies ADD COLUMN direction text NOT NULL DEFAULT 'send'
  CONSTRAINT "policies.direction" CHECK (direction IN ('send', 'receive'));
INSERT INTO policies (action, grp, destination, proto, port_from, port_to, direction)
  SELECT 'allow', '*', 'any', 'any', NULL, NULL, 'receive'
  WHERE EXISTS (SELECT 1 FROM members) OR EXISTS (SELECT 1 FROM sites);
INSERT INTO audit (at, actor, action, target, detail)
  SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), 'upgrade', 'policy.add',
         '#' || id, json_build_object('rule', 'allow * any receive')
  FROM policies WHERE direction = 'receive';
`;

/** Append only: a released build's migration never changes, the next one is added after it. */
export const PG_MIGRATIONS: readonly string[] = [
  SCHEMA_V1,
  SCHEMA_V2,
  SCHEMA_V3,
  SCHEMA_V4,
  SCHEMA_V5,
  SCHEMA_V6,
  SCHEMA_V7,
  SCHEMA_V8,
  SCHEMA_V9,
  SCHEMA_V10,
  SCHEMA_V11,
];

/** The schema version this build writes. */
export const PG_SCHEMA_VERSION = PG_MIGRATIONS.length;

export class StoreSchemaTooNew extends Error {
  constructor(
    readonly path: string,
    readonly found: number,
  ) {
    super(
      `${path}: the store is at schema version ${found}, but this build of Weft knows versions up to ` +
        `${PG_SCHEMA_VERSION}; upgrade Weft, or restore a backup taken with this version`,
    );
    this.name = 'StoreSchemaTooNew';
  }
}

/** The PostgreSQL server could not be reached (or went away during the call). */
export class StoreUnavailable extends Error {
  constructor(path: string, cause: unknown) {
    super(
      `${path}: the PostgreSQL store is unavailable (${cause instanceof Error ? cause.message : String(cause)})`,
      {
        cause,
      },
    );
    this.name = 'StoreUnavailable';
  }
}

export type ListenEvent =
  | { readonly state: 'lost'; readonly error: Error }
  | { readonly state: 'recovered'; readonly revision: number };

export interface FeedListener {
  /** Stops listening and closes the listener's connection. */
  close(): Promise<void>;
}

/** A change is one SQL statement's worth of parameters; `Querier` runs one on the right connection. */
type Querier = <R extends pg.QueryResultRow = pg.QueryResultRow>(
  text: string,
  values?: readonly unknown[],
) => Promise<pg.QueryResult<R>>;

interface Tx {
  readonly client: pg.PoolClient;
  /** Savepoints open inside the transaction. */
  depth: number;
  /**
   * The savepoint depth at which the feed's lock was taken (0: the transaction itself), or undefined when this
   * transaction does not hold it: rolling back to a savepoint releases the locks taken after it.
   */
  feedLockedAt: number | undefined;
  /**
   * Changes made in this transaction, given their revisions only as it commits (#commitFeed): feed_head is
   * updated once per transaction, not once per change. (Each UPDATE of the one row inside a transaction
   * leaves a row version no other transaction can see but this one must step over: 10,000 of them made
   * each member insert of a bulk apply slower than the one before.) A savepoint rolled back drops its own.
   */
  readonly pending: [ChangeKind, string][];
}

/** What a gateway says about itself when it joins. */
export interface GatewayRegistration {
  readonly name: string;
  /** host:port where members and other gateways reach it. */
  readonly endpoint: string;
  /** Its own WireGuard public key (base64). */
  readonly publicKey: string;
  /** A region or site label, free text ("eu-west", "office"). */
  readonly region: string;
  /** The UDP port of its mesh interface (the peering with the other gateways); null: listen port + 1. */
  readonly meshPort?: number | null;
}

/** One mesh peer as a gateway reports it (reportGatewayMesh). */
export interface MeshPeerReport {
  /** The peer gateway's name. */
  readonly name: string;
  readonly endpoint: string | null;
  /** ISO 8601 of the last completed handshake with it; null: none yet. */
  readonly lastHandshake: string | null;
  /** Member addresses routed to it. */
  readonly routes: number;
}

/** Where a member's session is, as the status row of the gateway holding it says (memberLocations). */
export interface MemberLocation {
  readonly name: string;
  readonly gateway: string;
  readonly ip: string;
  readonly ip6: string | null;
}

/** A lease held now, and by whom (pg-lease.ts's `holder`; '' when its session did not say). */
export interface LeaseHolder {
  readonly name: string;
  readonly holder: string;
}

export interface GatewayRecord extends GatewayRegistration {
  readonly meshPort: number | null;
  /** Its mesh peers as it last reported them, and when (the database's clock); null before its first report. */
  readonly mesh: { readonly at: string; readonly peers: readonly MeshPeerReport[] } | null;
  readonly registeredAt: string;
  /** ISO 8601, the database's clock. */
  readonly lastSeen: string;
  /** Milliseconds since lastSeen by the database's clock when it was read (no clock of ours involved). */
  readonly silentMs: number;
}

const GATEWAY_COLUMNS = `name, endpoint, public_key, region, mesh_port, mesh, registered_at, last_seen,
  (extract(epoch FROM clock_timestamp() - last_seen) * 1000)::float8 AS silent_ms`;

interface GatewayRow {
  readonly name: string;
  readonly endpoint: string;
  readonly public_key: string;
  readonly region: string;
  readonly mesh_port: number | null;
  readonly mesh: { at: string; peers: MeshPeerReport[] } | null;
  readonly registered_at: Date;
  readonly last_seen: Date;
  readonly silent_ms: number;
}

function gatewayFromRow(r: GatewayRow): GatewayRecord {
  return {
    name: r.name,
    endpoint: r.endpoint,
    publicKey: r.public_key,
    region: r.region,
    meshPort: r.mesh_port,
    mesh: r.mesh,
    registeredAt: r.registered_at.toISOString(),
    lastSeen: r.last_seen.toISOString(),
    silentMs: Math.max(0, Math.round(r.silent_ms)),
  };
}

/** The columns of `sites` in siteParams' order (name first). */
const SITE_COLUMNS = [
  'name',
  'enabled',
  'remote_address',
  'local_id',
  'remote_id',
  'psk',
  'force_short_psk',
  'local_subnets',
  'remote_subnets',
  'mode',
  'ike_proposals',
  'esp_proposals',
  'allow_legacy_groups',
  'ike_lifetime_sec',
  'child_lifetime_sec',
  'dpd_interval_sec',
  'dpd_action',
  'start_action',
  'policy_groups',
  'created_at',
  'updated_at',
  'auth',
  'certificate',
  'private_key',
  'ca_certificates',
  'multicast',
  'child_per_subnet_pair',
  'ike_hard_lifetime_sec',
  'child_hard_lifetime_sec',
  'fragment_size',
  'child_rekey_bytes',
  'child_life_bytes',
  'gateway',
] as const;

const SITE_SELECT = `SELECT ${SITE_COLUMNS.join(', ')} FROM sites`;

interface SiteRow {
  readonly name: string;
  readonly enabled: boolean;
  readonly remote_address: string | null;
  readonly local_id: string | null;
  readonly remote_id: string | null;
  readonly psk: string;
  readonly force_short_psk: boolean;
  readonly local_subnets: string[];
  readonly remote_subnets: string[];
  readonly mode: SiteRecord['mode'];
  readonly ike_proposals: string[];
  readonly esp_proposals: string[];
  readonly allow_legacy_groups: boolean;
  readonly ike_lifetime_sec: number;
  readonly child_lifetime_sec: number;
  readonly dpd_interval_sec: number;
  readonly dpd_action: SiteRecord['dpdAction'];
  readonly start_action: SiteRecord['startAction'];
  readonly policy_groups: string[];
  readonly created_at: string;
  readonly updated_at: string;
  readonly auth: SiteRecord['auth'];
  readonly certificate: string | null;
  readonly private_key: string | null;
  readonly ca_certificates: string | null;
  readonly multicast: string[];
  readonly child_per_subnet_pair: boolean;
  readonly ike_hard_lifetime_sec: number | null;
  readonly child_hard_lifetime_sec: number | null;
  readonly fragment_size: number;
  /** bigint: pg hands it over as text. */
  readonly child_rekey_bytes: string;
  readonly child_life_bytes: string;
  readonly gateway: string | null;
}

const CREDENTIAL_SELECT = `
SELECT m.name, c.serial, c.client_key_id AS "clientKeyId", c.certificate, c.private_key AS "privateKey",
       c.tls_crypt_v2_key AS "tlsCryptV2Key", c.not_after AS "notAfter", c.issued_at AS "issuedAt"
  FROM openvpn_credentials c JOIN members m ON m.id = c.member_id`;

const REVOCATION_SELECT = `
SELECT serial, client_key_id AS "clientKeyId", name, revoked_at AS "revokedAt", reason FROM openvpn_revocations`;

const MEMBER_SELECT = `
SELECT m.name, m.ip, m.ip6, m.public_key, m.private_key, m.disabled, m.expires_at, m.full_tunnel,
       m.created_at, m.updated_at,
       ARRAY(SELECT g.name FROM member_groups mg JOIN "groups" g ON g.id = mg.group_id
              WHERE mg.member_id = m.id ORDER BY mg.position) AS groups
  FROM members m`;

/** The search predicate of listMembers/countMembers; $1 is a LIKE pattern with `\` as its escape. */
const MEMBER_MATCHES = `
(m.name ILIKE $1 ESCAPE '\\' OR m.ip ILIKE $1 ESCAPE '\\' OR m.ip6 ILIKE $1 ESCAPE '\\'
 OR EXISTS (SELECT 1 FROM member_groups mg JOIN "groups" g ON g.id = mg.group_id
             WHERE mg.member_id = m.id AND g.name ILIKE $1 ESCAPE '\\'))`;

interface MemberRow {
  readonly name: string;
  readonly ip: string;
  readonly ip6: string | null;
  readonly public_key: string;
  readonly private_key: string | null;
  readonly disabled: boolean;
  readonly expires_at: string | null;
  readonly full_tunnel: boolean;
  readonly created_at: string;
  readonly updated_at: string;
  readonly groups: string[];
}

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
  readonly detail: AuditEntry['detail'];
}

interface TokenRow {
  readonly id: number;
  readonly name: string;
  readonly created_at: string;
  readonly last_used_at: string | null;
}

interface StatusRow {
  readonly name: string;
  readonly online: boolean;
  readonly endpoint: string | null;
  readonly last_handshake: string | null;
  readonly rx_bytes: number;
  readonly tx_bytes: number;
  readonly policy_drops: number;
  readonly updated_at: string;
  readonly protocol: MemberStatus['protocol'];
  readonly since: string | null;
  readonly gateway: string | null;
}

interface TrafficRow {
  readonly name: string;
  readonly at: string;
  readonly rx: number;
  readonly tx: number;
}

/** bigint columns as numbers: ids, revisions, counts and byte counters stay below 2^53 here. */
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === pg.types.builtins.INT8
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format as 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

export interface PostgresStoreOptions {
  /** Connections in the pool (default 10). */
  readonly poolSize?: number;
  /** How long a call waits to connect before it fails with StoreUnavailable (default 5 s). */
  readonly connectTimeoutMs?: number;
}

/** Opens the store at `url` (postgres://...), bringing its schema to this build's version. */
export async function openPostgresStore(
  url: string,
  options: PostgresStoreOptions = {},
): Promise<PostgresStore> {
  const config: pg.PoolConfig = {
    connectionString: url,
    max: options.poolSize ?? POOL_SIZE,
    connectionTimeoutMillis: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
    keepAlive: true,
    types: TYPES,
  };
  const path = redactUrl(url);
  const pool = new pg.Pool(config);
  // An idle connection that the server closes (a restart) is dropped by the pool; without a listener the
  // 'error' event would end the process.
  pool.on('error', () => {});
  try {
    const version = await migrate(pool, path);
    return new PostgresStore(path, version, pool, config);
  } catch (err) {
    await pool.end().catch(() => {});
    throw isConnectionError(err) ? new StoreUnavailable(path, err) : err;
  }
}

export class PostgresStore implements AsyncStore {
  readonly #pool: pg.Pool;
  readonly #config: pg.ClientConfig;
  readonly #tx = new AsyncLocalStorage<Tx>();
  readonly #listeners = new Set<FeedListener>();
  #closed = false;

  constructor(
    readonly path: string,
    readonly schemaVersion: number,
    pool: pg.Pool,
    config: pg.ClientConfig,
  ) {
    this.#pool = pool;
    this.#config = config;
  }

  transaction<T>(fn: () => Promise<T>): Promise<T> {
    return this.#atomically(() => fn());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#listeners].map((l) => l.close()));
    await this.#pool.end();
  }

  /** Inside a transaction, its own changes count: they get the revisions after the head as it commits. */
  async revision(): Promise<number> {
    const { rows } = await this.#read<{ rev: number }>('SELECT rev FROM feed_head');
    return (rows[0]?.rev ?? 0) + (this.#tx.getStore()?.pending.length ?? 0);
  }

  async changesSince(rev: number, limit = DEFAULT_CHANGES_LIMIT): Promise<Change[]> {
    const since = Math.floor(Number.isFinite(rev) ? rev : 0);
    const max = clampLimit(limit);
    const { rows } = await this.#read<Change>(
      'SELECT rev, kind, key FROM changes WHERE rev > $1 ORDER BY rev LIMIT $2',
      [since, max],
    );
    const out = rows.map((r) => ({ rev: r.rev, kind: r.kind, key: r.key }));
    const pending = this.#tx.getStore()?.pending ?? [];
    if (pending.length > 0 && out.length < max) {
      const { rows: head } = await this.#read<{ rev: number }>('SELECT rev FROM feed_head');
      const base = head[0]?.rev ?? 0;
      for (let i = 0; i < pending.length && out.length < max; i++) {
        const [kind, key] = pending[i]!;
        if (base + i + 1 > since) out.push({ rev: base + i + 1, kind, key });
      }
    }
    return out;
  }

  async getSettings(): Promise<Settings | undefined> {
    const { rows } = await this.#read<{ value: Settings }>('SELECT value FROM settings WHERE id = 1');
    return rows[0]?.value;
  }

  putSettings(settings: Settings): Promise<void> {
    return this.#change(async (q) => {
      await q(
        `INSERT INTO settings (id, value) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET value = excluded.value`,
        [JSON.stringify(settings)],
      );
      return { result: undefined, changes: [['settings', '']] };
    });
  }

  async getSecret(name: string): Promise<string | undefined> {
    const { rows } = await this.#read<{ value: string }>('SELECT value FROM secrets WHERE name = $1', [name]);
    return rows[0]?.value;
  }

  async putSecret(name: string, value: string): Promise<void> {
    await this.#write((q) =>
      q(
        `INSERT INTO secrets (name, value) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value`,
        [name, value],
      ),
    );
  }

  async getMember(name: string): Promise<MemberRecord | undefined> {
    return this.#oneMember(`${MEMBER_SELECT} WHERE m.name = $1`, [name]);
  }

  /** Looks the address up among both the IPv4 and the IPv6 addresses. */
  async getMemberByIp(ip: string): Promise<MemberRecord | undefined> {
    return this.#oneMember(`${MEMBER_SELECT} WHERE m.ip = $1 OR m.ip6 = $1`, [ip]);
  }

  async getMemberByPublicKey(publicKey: string): Promise<MemberRecord | undefined> {
    return this.#oneMember(`${MEMBER_SELECT} WHERE m.public_key = $1`, [publicKey]);
  }

  async listMembers(query: MemberQuery): Promise<MemberRecord[]> {
    const after = query.after ?? '';
    const limit = clampLimit(query.limit);
    const { rows } =
      query.search === undefined || query.search === ''
        ? await this.#read<MemberRow>(`${MEMBER_SELECT} WHERE m.name > $1 ORDER BY m.name LIMIT $2`, [
            after,
            limit,
          ])
        : await this.#read<MemberRow>(
            `${MEMBER_SELECT} WHERE m.name > $2 AND ${MEMBER_MATCHES} ORDER BY m.name LIMIT $3`,
            [containsPattern(query.search), after, limit],
          );
    return rows.map(memberFromRow);
  }

  async countMembers(search?: string): Promise<number> {
    const { rows } =
      search === undefined || search === ''
        ? await this.#read<{ n: number }>('SELECT count(*) AS n FROM members')
        : await this.#read<{ n: number }>(`SELECT count(*) AS n FROM members m WHERE ${MEMBER_MATCHES}`, [
            containsPattern(search),
          ]);
    return rows[0]?.n ?? 0;
  }

  async memberCounts(now: string): Promise<MemberCounts> {
    const { rows } = await this.#read<MemberCounts>(
      `SELECT count(*) AS total,
              count(*) FILTER (WHERE disabled) AS disabled,
              count(*) FILTER (WHERE NOT disabled AND expires_at IS NOT NULL AND expires_at <= $1) AS expired,
              (SELECT count(*) FROM member_status s JOIN members o ON o.name = s.name WHERE s.online) AS online
         FROM members`,
      [now],
    );
    const row = rows[0];
    return {
      total: row?.total ?? 0,
      disabled: row?.disabled ?? 0,
      expired: row?.expired ?? 0,
      online: row?.online ?? 0,
    };
  }

  async allMembers(): Promise<MemberRecord[]> {
    const { rows } = await this.#read<MemberRow>(`${MEMBER_SELECT} ORDER BY m.name`);
    return rows.map(memberFromRow);
  }

  insertMember(member: MemberRecord): Promise<void> {
    return this.#change(async (q) => {
      const { rows } = await q<{ id: number }>(
        `INSERT INTO members (name, ip, ip6, public_key, private_key, disabled, expires_at, full_tunnel,
                              created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
        memberParams(member),
      );
      await setGroups(q, rows[0]?.id ?? 0, member.groups);
      return { result: undefined, changes: [['member', member.name]] };
    });
  }

  updateMember(member: MemberRecord): Promise<boolean> {
    return this.#change(async (q) => {
      const { rows } = await q<{ id: number }>(
        `UPDATE members SET ip = $2, ip6 = $3, public_key = $4, private_key = $5, disabled = $6,
                            expires_at = $7, full_tunnel = $8, created_at = $9, updated_at = $10
          WHERE name = $1 RETURNING id`,
        memberParams(member),
      );
      const id = rows[0]?.id;
      if (id === undefined) return { result: false, changes: [] };
      await q('DELETE FROM member_groups WHERE member_id = $1', [id]);
      await setGroups(q, id, member.groups);
      return { result: true, changes: [['member', member.name]] };
    });
  }

  /** A removed member's OpenVPN credentials go to the revocation list first (the cascade would drop them). */
  deleteMember(name: string): Promise<boolean> {
    return this.#change(async (q) => {
      await revokeCredentials(q, name, new Date().toISOString(), 'removed');
      const { rowCount } = await q('DELETE FROM members WHERE name = $1', [name]);
      return rowCount === 0 ? { result: false, changes: [] } : { result: true, changes: [['member', name]] };
    });
  }

  async listGroups(): Promise<Group[]> {
    const { rows } = await this.#read<Group>('SELECT name, description FROM "groups" ORDER BY name');
    return rows.map((g) => ({ name: g.name, description: g.description }));
  }

  async getGroup(name: string): Promise<Group | undefined> {
    const { rows } = await this.#read<Group>('SELECT name, description FROM "groups" WHERE name = $1', [
      name,
    ]);
    const g = rows[0];
    return g === undefined ? undefined : { name: g.name, description: g.description };
  }

  insertGroup(group: Group): Promise<void> {
    return this.#change(async (q) => {
      await q('INSERT INTO "groups" (name, description) VALUES ($1, $2)', [group.name, group.description]);
      return { result: undefined, changes: [['group', group.name]] };
    });
  }

  updateGroup(group: Group): Promise<boolean> {
    return this.#change(async (q) => {
      const { rowCount } = await q('UPDATE "groups" SET description = $2 WHERE name = $1', [
        group.name,
        group.description,
      ]);
      return rowCount === 0
        ? { result: false, changes: [] }
        : { result: true, changes: [['group', group.name]] };
    });
  }

  /** As in SQLite: each member that was in the group gets a member change too, after the group's. */
  deleteGroup(name: string): Promise<boolean> {
    return this.#change(async (q) => {
      const members = await groupMembers(q, name);
      const { rowCount } = await q('DELETE FROM "groups" WHERE name = $1', [name]);
      if (rowCount === 0) return { result: false, changes: [] };
      const changes: [ChangeKind, string][] = [['group', name]];
      for (const member of members) changes.push(['member', member]);
      return { result: true, changes };
    });
  }

  groupMembers(name: string): Promise<string[]> {
    return groupMembers((text, values) => this.#read(text, values), name);
  }

  async listRoutes(): Promise<SharedRoute[]> {
    const { rows } = await this.#read<{ cidr: string; description: string; gateway: string | null }>(
      'SELECT cidr, description, gateway FROM routes ORDER BY cidr',
    );
    return rows.map((r) => ({
      cidr: r.cidr,
      description: r.description,
      ...(r.gateway === null ? {} : { gateway: r.gateway }),
    }));
  }

  insertRoute(route: SharedRoute): Promise<void> {
    return this.#change(async (q) => {
      await q('INSERT INTO routes (cidr, description, gateway) VALUES ($1, $2, $3)', [
        route.cidr,
        route.description,
        route.gateway ?? null,
      ]);
      return { result: undefined, changes: [['route', route.cidr]] };
    });
  }

  deleteRoute(cidr: string): Promise<boolean> {
    return this.#change(async (q) => {
      const { rowCount } = await q('DELETE FROM routes WHERE cidr = $1', [cidr]);
      return rowCount === 0 ? { result: false, changes: [] } : { result: true, changes: [['route', cidr]] };
    });
  }

  async listSites(): Promise<SiteRecord[]> {
    const { rows } = await this.#read<SiteRow>(`${SITE_SELECT} ORDER BY name`);
    return rows.map(siteFromRow);
  }

  async getSite(name: string): Promise<SiteRecord | undefined> {
    const { rows } = await this.#read<SiteRow>(`${SITE_SELECT} WHERE name = $1`, [name]);
    return rows[0] === undefined ? undefined : siteFromRow(rows[0]);
  }

  /**
   * ON CONFLICT DO NOTHING rather than a look-up first: two gateways inserting the same name at once, the second
   * INSERT waits for the first to commit and then inserts nothing, so it gets the same StoreConflict.
   */
  insertSite(site: SiteRecord): Promise<void> {
    return this.#change(async (q) => {
      const { rowCount } = await q(
        `INSERT INTO sites (${SITE_COLUMNS.join(', ')})
         VALUES (${SITE_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})
         ON CONFLICT (name) DO NOTHING`,
        siteParams(site),
      );
      if (rowCount === 0) throw new StoreConflict(`a site named "${site.name}" already exists`);
      return { result: undefined, changes: [['site', site.name]] };
    });
  }

  updateSite(site: SiteRecord): Promise<boolean> {
    return this.#change(async (q) => {
      const { rowCount } = await q(
        `UPDATE sites SET ${SITE_COLUMNS.slice(1)
          .map((c, i) => `${c} = $${i + 2}`)
          .join(', ')}
          WHERE name = $1`,
        siteParams(site),
      );
      return rowCount === 0
        ? { result: false, changes: [] }
        : { result: true, changes: [['site', site.name]] };
    });
  }

  /** The site's status row goes with it. */
  deleteSite(name: string): Promise<boolean> {
    return this.#change(async (q) => {
      const { rowCount } = await q('DELETE FROM sites WHERE name = $1', [name]);
      if (rowCount === 0) return { result: false, changes: [] };
      await q('DELETE FROM site_status WHERE name = $1', [name]);
      return { result: true, changes: [['site', name]] };
    });
  }

  /** Replaces every status row with these (not in the change feed): what the gateway reports is the whole set. */
  async putSiteStatuses(statuses: readonly SiteStatus[]): Promise<void> {
    await this.#write(async (q) => {
      await q('DELETE FROM site_status');
      if (statuses.length === 0) return;
      await q(
        `INSERT INTO site_status (name, status, at)
         SELECT * FROM unnest($1::text[], $2::jsonb[], $3::text[])`,
        [statuses.map((s) => s.name), statuses.map((s) => JSON.stringify(s)), statuses.map((s) => s.at)],
      );
    });
  }

  async allSiteStatuses(): Promise<SiteStatus[]> {
    const { rows } = await this.#read<{ status: SiteStatus }>('SELECT status FROM site_status ORDER BY name');
    return rows.map((r) => r.status);
  }

  async listPolicies(): Promise<Policy[]> {
    const { rows } = await this.#read<PolicyRow>(
      'SELECT id, action, grp, destination, proto, port_from, port_to, direction FROM policies ORDER BY id',
    );
    return rows.map(policyFromRow);
  }

  insertPolicy(policy: PolicyInput): Promise<Policy> {
    return this.#change(async (q) => {
      const { action, group, destination, proto, ports, direction } = policy;
      const { rows } = await q<{ id: number }>(
        `INSERT INTO policies (action, grp, destination, proto, port_from, port_to, direction)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
        [action, group, destination, proto, ports?.from ?? null, ports?.to ?? null, direction],
      );
      const id = rows[0]?.id ?? 0;
      const result: Policy = {
        id,
        action,
        group,
        destination,
        proto,
        ports: ports === null ? null : { ...ports },
        direction,
      };
      return { result, changes: [['policy', String(id)]] };
    });
  }

  deletePolicy(id: number): Promise<boolean> {
    return this.#change(async (q) => {
      const { rowCount } = await q('DELETE FROM policies WHERE id = $1', [id]);
      return rowCount === 0
        ? { result: false, changes: [] }
        : { result: true, changes: [['policy', String(id)]] };
    });
  }

  async appendAudit(entry: Omit<AuditEntry, 'id'>): Promise<AuditEntry> {
    const detail = JSON.stringify(entry.detail);
    const { rows } = await this.#write((q) =>
      q<{ id: number }>(
        'INSERT INTO audit (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5) RETURNING id',
        [entry.at, entry.actor, entry.action, entry.target, detail],
      ),
    );
    return { ...entry, id: rows[0]?.id ?? 0, detail: JSON.parse(detail) as AuditEntry['detail'] };
  }

  async listAudit(query: { before?: number; limit: number; target?: string }): Promise<AuditEntry[]> {
    const before = query.before ?? Number.MAX_SAFE_INTEGER;
    const limit = clampLimit(query.limit);
    const { rows } =
      query.target === undefined
        ? await this.#read<AuditRow>(
            'SELECT id, at, actor, action, target, detail FROM audit WHERE id < $1 ORDER BY id DESC LIMIT $2',
            [before, limit],
          )
        : await this.#read<AuditRow>(
            `SELECT id, at, actor, action, target, detail FROM audit
              WHERE target = $1 AND id < $2 ORDER BY id DESC LIMIT $3`,
            [query.target, before, limit],
          );
    return rows.map((r) => ({
      id: r.id,
      at: r.at,
      actor: r.actor,
      action: r.action,
      target: r.target,
      detail: r.detail,
    }));
  }

  async insertToken(name: string, hash: string, createdAt: string): Promise<ApiToken> {
    const { rows } = await this.#write((q) =>
      q<{ id: number }>('INSERT INTO tokens (name, hash, created_at) VALUES ($1, $2, $3) RETURNING id', [
        name,
        hash,
        createdAt,
      ]),
    );
    return { id: rows[0]?.id ?? 0, name, createdAt, lastUsedAt: null };
  }

  async findToken(hash: string): Promise<ApiToken | undefined> {
    const { rows } = await this.#read<TokenRow>(
      'SELECT id, name, created_at, last_used_at FROM tokens WHERE hash = $1',
      [hash],
    );
    const row = rows[0];
    return row === undefined ? undefined : tokenFromRow(row);
  }

  async touchToken(id: number, at: string): Promise<void> {
    await this.#write((q) => q('UPDATE tokens SET last_used_at = $1 WHERE id = $2', [at, id]));
  }

  async listTokens(): Promise<ApiToken[]> {
    const { rows } = await this.#read<TokenRow>(
      'SELECT id, name, created_at, last_used_at FROM tokens ORDER BY id',
    );
    return rows.map(tokenFromRow);
  }

  async deleteToken(id: number): Promise<boolean> {
    const { rowCount } = await this.#write((q) => q('DELETE FROM tokens WHERE id = $1', [id]));
    return (rowCount ?? 0) > 0;
  }

  async getAdmin(username: string): Promise<AdminAccount | undefined> {
    const { rows } = await this.#read<{
      username: string;
      password_hash: string;
      totp_secret: string | null;
    }>('SELECT username, password_hash, totp_secret FROM admins WHERE username = $1', [username]);
    const row = rows[0];
    return row === undefined
      ? undefined
      : { username: row.username, passwordHash: row.password_hash, totpSecret: row.totp_secret };
  }

  async putAdmin(account: AdminAccount): Promise<void> {
    await this.#write((q) =>
      q(
        `INSERT INTO admins (username, password_hash, totp_secret) VALUES ($1, $2, $3)
         ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash,
                                              totp_secret = excluded.totp_secret`,
        [account.username, account.passwordHash, account.totpSecret],
      ),
    );
  }

  async insertLink(
    hash: string,
    member: string,
    createdAt: string,
    expiresAt: string,
    protocol: ConfigProtocol = 'wireguard',
  ): Promise<void> {
    await this.#write(async (q) => {
      await q('DELETE FROM download_links WHERE expires_at <= $1', [createdAt]);
      const { rowCount } = await q(
        `INSERT INTO download_links (hash, member_id, created_at, expires_at, protocol)
         SELECT $1, id, $2, $3, $5 FROM members WHERE name = $4`,
        [hash, createdAt, expiresAt, member, protocol],
      );
      if (rowCount === 0)
        throw new StoreConflict(`download_links.member: there is no member named ${JSON.stringify(member)}`);
    });
  }

  async linkProtocol(hash: string): Promise<ConfigProtocol | undefined> {
    const { rows } = await this.#read<{ protocol: ConfigProtocol }>(
      'SELECT protocol FROM download_links WHERE hash = $1',
      [hash],
    );
    return rows[0]?.protocol;
  }

  /**
   * One UPDATE whose WHERE clause is the whole check. Two gateways taking the same link at once: the second
   * UPDATE waits for the first to commit, then re-checks its WHERE clause against the used row and matches
   * nothing (READ COMMITTED), so exactly one of them gets the member.
   */
  async takeLink(hash: string, now: string): Promise<string | undefined> {
    const { rows } = await this.#write((q) =>
      q<{ name: string }>(
        `UPDATE download_links d SET used_at = $2
          WHERE hash = $1 AND used_at IS NULL AND expires_at > $2
         RETURNING (SELECT name FROM members m WHERE m.id = d.member_id) AS name`,
        [hash, now],
      ),
    );
    return rows[0]?.name;
  }

  async putConfigDelivery(delivery: ConfigDelivery, protocol: ConfigProtocol = 'wireguard'): Promise<void> {
    const { name, fingerprint, deliveredAt } = delivery;
    const { rowCount } = await this.#write((q) =>
      q(
        `INSERT INTO config_deliveries (member_id, protocol, fingerprint, delivered_at)
         SELECT id, $2, $3, $4 FROM members WHERE name = $1
         ON CONFLICT (member_id, protocol) DO UPDATE SET fingerprint = excluded.fingerprint,
                                                         delivered_at = excluded.delivered_at`,
        [name, protocol, fingerprint, deliveredAt],
      ),
    );
    if (rowCount === 0)
      throw new StoreConflict(`config_deliveries.member: there is no member named ${JSON.stringify(name)}`);
  }

  async getConfigDelivery(
    name: string,
    protocol: ConfigProtocol = 'wireguard',
  ): Promise<ConfigDelivery | undefined> {
    const { rows } = await this.#read<ConfigDelivery>(
      `SELECT m.name, d.fingerprint, d.delivered_at AS "deliveredAt"
         FROM config_deliveries d JOIN members m ON m.id = d.member_id WHERE m.name = $1 AND d.protocol = $2`,
      [name, protocol],
    );
    const row = rows[0];
    return row === undefined
      ? undefined
      : { name: row.name, fingerprint: row.fingerprint, deliveredAt: row.deliveredAt };
  }

  async allConfigDeliveries(protocol: ConfigProtocol = 'wireguard'): Promise<ConfigDelivery[]> {
    const { rows } = await this.#read<ConfigDelivery>(
      `SELECT m.name, d.fingerprint, d.delivered_at AS "deliveredAt"
         FROM config_deliveries d JOIN members m ON m.id = d.member_id WHERE d.protocol = $1 ORDER BY m.name`,
      [protocol],
    );
    return rows.map((r) => ({ name: r.name, fingerprint: r.fingerprint, deliveredAt: r.deliveredAt }));
  }

  async getOpenVpnCredential(name: string): Promise<OpenVpnCredential | undefined> {
    const { rows } = await this.#read<OpenVpnCredential>(`${CREDENTIAL_SELECT} WHERE m.name = $1`, [name]);
    return rows[0] === undefined ? undefined : credentialFromRow(rows[0]);
  }

  async findOpenVpnCredential(
    by: { serial: string } | { clientKeyId: string },
  ): Promise<OpenVpnCredential | undefined> {
    const { rows } =
      'serial' in by
        ? await this.#read<OpenVpnCredential>(`${CREDENTIAL_SELECT} WHERE c.serial = $1`, [by.serial])
        : await this.#read<OpenVpnCredential>(`${CREDENTIAL_SELECT} WHERE c.client_key_id = $1`, [
            by.clientKeyId,
          ]);
    return rows[0] === undefined ? undefined : credentialFromRow(rows[0]);
  }

  /**
   * The member row is locked first (FOR KEY SHARE, what its foreign key takes) so it cannot go away before the
   * insert. Two gateways issuing at once: the second INSERT waits for the first to commit, then does nothing.
   */
  putOpenVpnCredential(credential: OpenVpnCredential): Promise<boolean> {
    return this.#write(async (q) => {
      const { rows } = await q<{ id: number }>('SELECT id FROM members WHERE name = $1 FOR KEY SHARE', [
        credential.name,
      ]);
      const memberId = rows[0]?.id;
      if (memberId === undefined)
        throw new StoreConflict(
          `openvpn_credentials.member: there is no member named ${JSON.stringify(credential.name)}`,
        );
      const { rowCount } = await q(
        `INSERT INTO openvpn_credentials (member_id, serial, client_key_id, certificate, private_key,
                                          tls_crypt_v2_key, not_after, issued_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (member_id) DO NOTHING`,
        [
          memberId,
          credential.serial,
          credential.clientKeyId,
          credential.certificate,
          credential.privateKey,
          credential.tlsCryptV2Key,
          credential.notAfter,
          credential.issuedAt,
        ],
      );
      return rowCount === 1;
    });
  }

  /**
   * One statement: the DELETE moves the row to the list. Two gateways revoking at once: the second DELETE
   * waits for the first to commit, then finds no row and returns undefined.
   */
  revokeOpenVpnCredential(
    name: string,
    at: string,
    reason: OpenVpnRevocation['reason'],
  ): Promise<OpenVpnRevocation | undefined> {
    return this.#write((q) => revokeCredentials(q, name, at, reason));
  }

  async findOpenVpnRevocation(
    by: { serial: string } | { clientKeyId: string },
  ): Promise<OpenVpnRevocation | undefined> {
    const { rows } =
      'serial' in by
        ? await this.#read<OpenVpnRevocation>(`${REVOCATION_SELECT} WHERE serial = $1`, [by.serial])
        : await this.#read<OpenVpnRevocation>(`${REVOCATION_SELECT} WHERE client_key_id = $1`, [
            by.clientKeyId,
          ]);
    return rows[0] === undefined ? undefined : revocationFromRow(rows[0]);
  }

  async allOpenVpnRevocations(): Promise<OpenVpnRevocation[]> {
    const { rows } = await this.#read<OpenVpnRevocation>(`${REVOCATION_SELECT} ORDER BY revoked_at, serial`);
    return rows.map(revocationFromRow);
  }

  /**
   * One statement for all of them. The last report of a name wins, and rows are written in name order, so
   * two gateways reporting at once lock the rows in the same order.
   */
  async putStatuses(statuses: readonly MemberStatus[]): Promise<void> {
    const byName = new Map<string, MemberStatus>();
    for (const s of statuses) byName.set(s.name, s);
    if (byName.size === 0) return;
    const rows = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    await this.#write((q) =>
      q(
        `INSERT INTO member_status (name, online, endpoint, last_handshake, rx_bytes, tx_bytes, policy_drops,
                                    updated_at, protocol, since, gateway)
         SELECT * FROM unnest($1::text[], $2::boolean[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
                              $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[])
         ON CONFLICT (name) DO UPDATE SET online = excluded.online, endpoint = excluded.endpoint,
           last_handshake = excluded.last_handshake, rx_bytes = excluded.rx_bytes, tx_bytes = excluded.tx_bytes,
           policy_drops = excluded.policy_drops, updated_at = excluded.updated_at, protocol = excluded.protocol,
           since = excluded.since, gateway = excluded.gateway
         -- A gateway the member left does not mark it offline while another gateway holds its session.
         WHERE excluded.online OR NOT member_status.online OR member_status.gateway IS NULL
            OR excluded.gateway IS NULL OR member_status.gateway = excluded.gateway`,
        [
          rows.map((s) => s.name),
          rows.map((s) => s.online),
          rows.map((s) => s.endpoint),
          rows.map((s) => s.lastHandshake),
          rows.map((s) => s.rxBytes),
          rows.map((s) => s.txBytes),
          rows.map((s) => s.policyDrops),
          rows.map((s) => s.updatedAt),
          rows.map((s) => s.protocol),
          rows.map((s) => s.since),
          rows.map((s) => s.gateway ?? null),
        ],
      ),
    );
  }

  async getStatus(name: string): Promise<MemberStatus | undefined> {
    const { rows } = await this.#read<StatusRow>('SELECT * FROM member_status WHERE name = $1', [name]);
    const row = rows[0];
    return row === undefined ? undefined : statusFromRow(row);
  }

  async allStatuses(): Promise<MemberStatus[]> {
    const { rows } = await this.#read<StatusRow>('SELECT * FROM member_status ORDER BY name');
    return rows.map(statusFromRow);
  }

  /** Samples of one bucket are summed first (one statement cannot update a row twice), then upserted in order. */
  async addTraffic(samples: readonly TrafficSample[]): Promise<void> {
    const buckets = new Map<string, { name: string; at: string; rx: number; tx: number }>();
    for (const s of samples) {
      const key = JSON.stringify([s.name, s.at]);
      const b = buckets.get(key);
      if (b === undefined) buckets.set(key, { name: s.name, at: s.at, rx: s.rxBytes, tx: s.txBytes });
      else {
        b.rx += s.rxBytes;
        b.tx += s.txBytes;
      }
    }
    if (buckets.size === 0) return;
    const rows = [...buckets.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, b]) => b);
    await this.#write((q) =>
      q(
        `INSERT INTO traffic (name, at, rx, tx)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
         ON CONFLICT (name, at) DO UPDATE SET rx = traffic.rx + excluded.rx, tx = traffic.tx + excluded.tx`,
        [rows.map((b) => b.name), rows.map((b) => b.at), rows.map((b) => b.rx), rows.map((b) => b.tx)],
      ),
    );
  }

  async traffic(name: string, since: string): Promise<TrafficSample[]> {
    const { rows } =
      name === ''
        ? await this.#read<TrafficRow>(
            `SELECT '' AS name, at, sum(rx)::bigint AS rx, sum(tx)::bigint AS tx FROM traffic
              WHERE at >= $1 GROUP BY at ORDER BY at`,
            [since],
          )
        : await this.#read<TrafficRow>(
            'SELECT name, at, rx, tx FROM traffic WHERE name = $1 AND at >= $2 ORDER BY at',
            [name, since],
          );
    return rows.map((r) => ({ name: r.name, at: r.at, rxBytes: r.rx, txBytes: r.tx }));
  }

  /**
   * Calls `onRevision` with the revision of each committed change (from any store on this database), on a
   * connection of its own. When that connection is lost, `onEvent` hears `lost`; the listener reconnects
   * (100 ms, doubling up to 2 s between attempts), listens again, reports `recovered` with the current
   * revision and calls `onRevision` with it, so a follower catches up on what it missed meanwhile through
   * `changesSince`. Resolves once the first LISTEN is in place.
   */
  async listen(
    onRevision: (rev: number) => void,
    onEvent?: (event: ListenEvent) => void,
  ): Promise<FeedListener> {
    this.#usable();
    const listener = new Listener(this.#config, this.path, onRevision, onEvent ?? (() => {}), (l) =>
      this.#listeners.delete(l),
    );
    await listener.start();
    this.#listeners.add(listener);
    return listener;
  }

  // ---- failover primitives (issue 14): not part of Store; the gateway does not use them yet ----

  /**
   * Registers a gateway, or updates its endpoint, key and region when it registers again (a restart, a new
   * address); either way it is seen now. Throws StoreConflict ("gateways.public_key") when another gateway
   * has the key. In the change feed (kind 'settings', key `gateway/NAME`: model.ts), so the running gateways
   * hear of it at once; heartbeats and mesh reports are not.
   */
  async registerGateway(gateway: GatewayRegistration): Promise<GatewayRecord> {
    const rows = await this.#change(async (q) => {
      const { rows } = await q<GatewayRow>(
        `INSERT INTO gateways (name, endpoint, public_key, region, mesh_port) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET endpoint = excluded.endpoint, public_key = excluded.public_key,
                                          region = excluded.region, mesh_port = excluded.mesh_port,
                                          last_seen = now()
         RETURNING ${GATEWAY_COLUMNS}`,
        [gateway.name, gateway.endpoint, gateway.publicKey, gateway.region, gateway.meshPort ?? null],
      );
      return { result: rows, changes: [['settings', gatewayChangeKey(gateway.name)]] };
    });
    const row = rows[0];
    if (row === undefined)
      throw new Error(`${this.path}: registering gateway ${gateway.name} returned no row`);
    return gatewayFromRow(row);
  }

  /** Marks the gateway alive now (the database's clock); false when it is not registered. */
  async heartbeatGateway(name: string): Promise<boolean> {
    const { rowCount } = await this.#write((q) =>
      q('UPDATE gateways SET last_seen = now() WHERE name = $1', [name]),
    );
    return (rowCount ?? 0) > 0;
  }

  /** Every registered gateway, ordered by name, with how long ago (by the database's clock) it was seen. */
  async listGateways(): Promise<GatewayRecord[]> {
    const { rows } = await this.#read<GatewayRow>(`SELECT ${GATEWAY_COLUMNS} FROM gateways ORDER BY name`);
    return rows.map(gatewayFromRow);
  }

  /**
   * Inside a transaction: whether gateway `name` is registered, with a lock on its row until the transaction
   * ends — `share` for an assignment (a shared route or a site naming it as the gateway serving it; several may
   * hold it at once), `update` for its removal. A removal and an assignment to the same gateway thus take turns:
   * whichever locks second waits for the other to commit, then reads what it left (READ COMMITTED: each statement
   * sees the rows committed before it began) — the assignment finds no gateway, or the removal finds the route or
   * site that names it. Outside a transaction the lock ends with the statement.
   */
  async lockGateway(name: string, mode: 'share' | 'update'): Promise<boolean> {
    const { rows } = await this.#read<{ name: string }>(
      `SELECT name FROM gateways WHERE name = $1 FOR ${mode === 'update' ? 'UPDATE' : 'SHARE'}`,
      [name],
    );
    return rows.length > 0;
  }

  /** Removes a registration; the removal is in the change feed (as its registration was). */
  async removeGateway(name: string): Promise<boolean> {
    return this.#change(async (q) => {
      const { rowCount } = await q('DELETE FROM gateways WHERE name = $1', [name]);
      return (rowCount ?? 0) === 0
        ? { result: false, changes: [] }
        : { result: true, changes: [['settings', gatewayChangeKey(name)]] };
    });
  }

  /** Records the gateway's mesh peers as it sees them now; false when it is not registered. */
  async reportGatewayMesh(name: string, peers: readonly MeshPeerReport[]): Promise<boolean> {
    const { rowCount } = await this.#write((q) =>
      q(
        `UPDATE gateways SET mesh = jsonb_build_object('at', to_jsonb(now()), 'peers', $2::jsonb)
          WHERE name = $1`,
        [name, JSON.stringify(peers)],
      ),
    );
    return (rowCount ?? 0) > 0;
  }

  /**
   * The members online on some gateway other than `except`, by their status rows, with their addresses (one
   * statement: the mesh reads it every second). Disabled members are left out.
   */
  async memberLocations(except: string): Promise<MemberLocation[]> {
    const { rows } = await this.#read<MemberLocation>(
      `SELECT s.name, s.gateway, m.ip, m.ip6 FROM member_status s JOIN members m ON m.name = s.name
        WHERE s.online AND s.gateway IS NOT NULL AND s.gateway <> $1 AND NOT m.disabled ORDER BY s.name`,
      [except],
    );
    return rows.map((r) => ({ name: r.name, gateway: r.gateway, ip: r.ip, ip6: r.ip6 }));
  }

  /**
   * Tries to take the lease `name` (pg-lease.ts) on a connection of its own: the Lease, or null when another
   * live session holds it. The lease is not closed with the store: release it.
   */
  acquireLease(name: string, options?: LeaseOptions): Promise<Lease | null> {
    this.#usable();
    return acquireLease(this.#config, name, options).catch((err: unknown) => {
      throw this.#mapped(err);
    });
  }

  /**
   * The leases held now, by name, with who holds each (the `holder` given to acquireLease, read back from the
   * holding session's application_name): PostgreSQL's own lock table, so a holder that died is never listed.
   */
  async leaseHolders(): Promise<LeaseHolder[]> {
    const { rows } = await this.#read<{ name: string; application_name: string | null }>(
      `SELECT l.name, a.application_name FROM pg_locks k
         JOIN leases l ON k.objid = l.id::oid
         LEFT JOIN pg_stat_activity a ON a.pid = k.pid
        WHERE k.locktype = 'advisory' AND k.granted AND k.objsubid = 2 AND k.classid = $1::oid
          AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        ORDER BY l.name`,
      [LEASE_LOCK_SPACE],
    );
    return rows.map((r) => ({
      name: r.name,
      holder: /^weft lease (.+)$/.exec(r.application_name ?? '')?.[1] ?? '',
    }));
  }

  // ---- the one place that decides connections, transactions and errors ----

  #usable(): void {
    if (this.#closed) throw new Error(`${this.path}: the store is closed`);
  }

  /** A query on the transaction's connection, or on any pooled one. */
  async #read<R extends pg.QueryResultRow>(
    text: string,
    values?: readonly unknown[],
  ): Promise<pg.QueryResult<R>> {
    this.#usable();
    const tx = this.#tx.getStore();
    try {
      if (tx !== undefined) return await tx.client.query<R>(text, values as unknown[]);
      try {
        return await this.#pool.query<R>(text, values as unknown[]);
      } catch (err) {
        // A pooled connection that the server closed since it was last used (a restart) fails at once; a read
        // may be asked again on a new one. A second failure means the server is away.
        if (!isConnectionError(err)) throw err;
        return await this.#pool.query<R>(text, values as unknown[]);
      }
    } catch (err) {
      throw this.#mapped(err);
    }
  }

  /** Writes outside the change feed: atomically (a savepoint inside a transaction), conflicts mapped. */
  #write<T>(fn: (q: Querier) => Promise<T>): Promise<T> {
    return this.#atomically((tx) => fn(querier(tx)));
  }

  /**
   * Writes that append to the change feed: the feed's lock first (see the header), then `fn`, then its
   * changes get the next revisions.
   */
  #change<T>(fn: (q: Querier) => Promise<{ result: T; changes: [ChangeKind, string][] }>): Promise<T> {
    return this.#atomically(async (tx) => {
      const q = querier(tx);
      if (tx.feedLockedAt === undefined) {
        await q('SELECT rev FROM feed_head WHERE id = 1 FOR UPDATE');
        tx.feedLockedAt = tx.depth;
      }
      const { result, changes } = await fn(q);
      tx.pending.push(...changes);
      return result;
    });
  }

  /**
   * Gives the transaction's changes their revisions (the head's next ones, in the order they were made):
   * one UPDATE of feed_head and one INSERT for all of them, then the feed pruned when it passed a multiple
   * of CHANGE_FEED_PRUNE_EVERY. Returns whether anything was appended.
   */
  async #commitFeed(tx: Tx): Promise<boolean> {
    const n = tx.pending.length;
    if (n === 0) return false;
    const kinds = tx.pending.map(([kind]) => kind);
    const keys = tx.pending.map(([, key]) => key);
    const { rows } = await tx.client.query<{ rev: number }>(
      `WITH head AS (UPDATE feed_head SET rev = rev + $1 WHERE id = 1 RETURNING rev),
            added AS (INSERT INTO changes (rev, kind, key)
                      SELECT head.rev - $1 + c.ord, c.kind, c.key
                        FROM head, unnest($2::text[], $3::text[]) WITH ORDINALITY AS c (kind, key, ord))
       SELECT rev FROM head`,
      [n, kinds, keys],
    );
    const rev = rows[0]?.rev ?? 0;
    if (Math.floor(rev / CHANGE_FEED_PRUNE_EVERY) !== Math.floor((rev - n) / CHANGE_FEED_PRUNE_EVERY))
      await tx.client.query('DELETE FROM changes WHERE rev <= $1', [rev - CHANGE_FEED_KEEP]);
    return true;
  }

  /** Runs `fn` in a transaction of its own, or in a savepoint of the one this call is inside. */
  async #atomically<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    this.#usable();
    const open = this.#tx.getStore();
    if (open !== undefined) {
      const depth = ++open.depth;
      const savepoint = `weft_${depth}`;
      const pendingBefore = open.pending.length;
      try {
        await open.client.query(`SAVEPOINT ${savepoint}`);
        try {
          const result = await fn(open);
          await open.client.query(`RELEASE SAVEPOINT ${savepoint}`);
          // What the savepoint held, the enclosing level holds now.
          if (open.feedLockedAt === depth) open.feedLockedAt = depth - 1;
          return result;
        } catch (err) {
          await open.client.query(`ROLLBACK TO SAVEPOINT ${savepoint}`).catch(() => {});
          open.pending.length = pendingBefore;
          if (open.feedLockedAt !== undefined && open.feedLockedAt >= depth) open.feedLockedAt = undefined;
          throw err;
        }
      } catch (err) {
        throw this.#mapped(err);
      } finally {
        open.depth--;
      }
    }

    const client = await this.#begin();
    const tx: Tx = { client, depth: 0, feedLockedAt: undefined, pending: [] };
    let broken: Error | undefined;
    try {
      const result = await this.#tx.run(tx, () => fn(tx));
      const changed = await this.#commitFeed(tx);
      // One round trip (the simple protocol takes several statements); the notification goes out at COMMIT.
      await client.query(
        changed ? `SELECT pg_notify('${CHANGES_CHANNEL}', rev::text) FROM feed_head; COMMIT` : 'COMMIT',
      );
      return result;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackErr) {
        broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
      }
      throw this.#mapped(err);
    } finally {
      client.release(broken);
    }
  }

  /**
   * A pooled connection with a transaction begun on it. Nothing has been done yet when BEGIN fails, so a
   * connection that the server closed since its last use (a restart) is dropped and a new one tried, once.
   */
  async #begin(): Promise<pg.PoolClient> {
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.#pool.connect();
      } catch (err) {
        throw this.#mapped(err);
      }
      try {
        await client.query('BEGIN');
        return client;
      } catch (err) {
        client.release(err instanceof Error ? err : true);
        if (attempt >= 2 || !isConnectionError(err)) throw this.#mapped(err);
      }
    }
  }

  #mapped(err: unknown): unknown {
    if (err instanceof StoreConflict || err instanceof StoreUnavailable) return err;
    if (isConnectionError(err)) return new StoreUnavailable(this.path, err);
    return asConflict(err);
  }

  async #oneMember(text: string, values: readonly unknown[]): Promise<MemberRecord | undefined> {
    const { rows } = await this.#read<MemberRow>(text, values);
    const row = rows[0];
    return row === undefined ? undefined : memberFromRow(row);
  }
}

/** The dedicated LISTEN connection of one `listen` call, reconnecting until closed. */
class Listener implements FeedListener {
  #client: pg.Client | undefined;
  #closed = false;
  #retry: NodeJS.Timeout | undefined;
  #delay = LISTEN_RETRY_MIN_MS;

  constructor(
    readonly config: pg.ClientConfig,
    readonly path: string,
    readonly onRevision: (rev: number) => void,
    readonly onEvent: (event: ListenEvent) => void,
    readonly onClose: (listener: Listener) => void,
  ) {}

  async start(): Promise<void> {
    try {
      await this.#connect();
    } catch (err) {
      throw isConnectionError(err) ? new StoreUnavailable(this.path, err) : err;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retry);
    this.onClose(this);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => {});
  }

  /** Connects, listens, and returns the revision at that moment. */
  async #connect(): Promise<number> {
    const client = new pg.Client({ ...this.config, types: TYPES });
    let lost = false;
    // Until LISTEN is in place, a failure rejects #connect (whose caller retries); after, it is a loss.
    let established = false;
    const onLost = (err: Error): void => {
      if (lost || !established) return;
      lost = true;
      if (this.#client === client) this.#client = undefined;
      client.end().catch(() => {});
      if (this.#closed) return;
      this.onEvent({ state: 'lost', error: err });
      this.#scheduleReconnect();
    };
    client.on('error', onLost);
    client.on('end', () => onLost(new Error('the connection was closed')));
    client.on('notification', (n) => {
      if (n.channel !== CHANGES_CHANNEL) return;
      const rev = Number(n.payload);
      if (Number.isSafeInteger(rev)) this.onRevision(rev);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGES_CHANNEL}`);
      const { rows } = await client.query<{ rev: number }>('SELECT rev FROM feed_head');
      if (this.#closed) {
        lost = true;
        await client.end().catch(() => {});
        return 0;
      }
      established = true;
      this.#client = client;
      return rows[0]?.rev ?? 0;
    } catch (err) {
      lost = true;
      await client.end().catch(() => {});
      throw err;
    }
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#retry !== undefined) return;
    const delay = this.#delay;
    this.#delay = Math.min(this.#delay * 2, LISTEN_RETRY_MAX_MS);
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      if (this.#closed) return;
      this.#connect().then(
        (revision) => {
          if (this.#closed) return;
          this.#delay = LISTEN_RETRY_MIN_MS;
          this.onEvent({ state: 'recovered', revision });
          this.onRevision(revision);
        },
        () => this.#scheduleReconnect(),
      );
    }, delay);
  }
}

function querier(tx: Tx): Querier {
  return (text, values) => tx.client.query(text, values as unknown[]);
}

async function setGroups(q: Querier, memberId: number, groups: readonly string[]): Promise<void> {
  let position = 0;
  for (const group of new Set(groups)) {
    const { rowCount } = await q(
      'INSERT INTO member_groups (member_id, group_id, position) SELECT $1, id, $2 FROM "groups" WHERE name = $3',
      [memberId, position++, group],
    );
    if (rowCount === 0)
      throw new StoreConflict(`member_groups.group: there is no group named ${JSON.stringify(group)}`);
  }
}

async function groupMembers(q: Querier, name: string): Promise<string[]> {
  const { rows } = await q<{ name: string }>(
    `SELECT m.name FROM "groups" g
       JOIN member_groups mg ON mg.group_id = g.id
       JOIN members m ON m.id = mg.member_id
      WHERE g.name = $1 ORDER BY m.name`,
    [name],
  );
  return rows.map((r) => r.name);
}

/** Moves a member's current OpenVPN credentials to the revocation list; the revocation, or undefined. */
async function revokeCredentials(
  q: Querier,
  name: string,
  at: string,
  reason: OpenVpnRevocation['reason'],
): Promise<OpenVpnRevocation | undefined> {
  const { rows } = await q<OpenVpnRevocation>(
    `WITH gone AS (
       DELETE FROM openvpn_credentials c USING members m
        WHERE m.id = c.member_id AND m.name = $1
       RETURNING c.serial, c.client_key_id, m.name)
     INSERT INTO openvpn_revocations (serial, client_key_id, name, revoked_at, reason)
     SELECT serial, client_key_id, name, $2, $3 FROM gone
     RETURNING serial, client_key_id AS "clientKeyId", name, revoked_at AS "revokedAt", reason`,
    [name, at, reason],
  );
  return rows[0] === undefined ? undefined : revocationFromRow(rows[0]);
}

/** Brings the database to the schema this build writes, under an advisory lock; returns that version. */
async function migrate(pool: pg.Pool, path: string): Promise<number> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    // Held until COMMIT: a second gateway starting now waits here, then finds the work done.
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         version integer PRIMARY KEY,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    const { rows } = await client.query<{ version: number }>(
      'SELECT coalesce(max(version), 0) AS version FROM schema_migrations',
    );
    const from = rows[0]?.version ?? 0;
    if (from > PG_SCHEMA_VERSION) throw new StoreSchemaTooNew(path, from);
    for (let v = from; v < PG_SCHEMA_VERSION; v++) {
      await client.query(PG_MIGRATIONS[v] ?? '');
      await client.query('INSERT INTO schema_migrations (version) VALUES ($1)', [v + 1]);
    }
    await client.query('COMMIT');
    return PG_SCHEMA_VERSION;
  } catch (err) {
    try {
      await client.query('ROLLBACK');
    } catch (rollbackErr) {
      broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
    }
    throw err;
  } finally {
    client.release(broken);
  }
}

/** Errors that mean the server is unreachable or the connection went away, not that the query was wrong. */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    // SQLSTATE class 08 (connection exception), 57P01-57P03 (shutdown, crash, not yet accepting connections).
    if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03') return true;
    if (['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH'].includes(code))
      return true;
  }
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|not queryable/i.test(
    err.message,
  );
}

/** 23505 names the violated constraint, whose name is "table.column" (the SQLite store's wording). */
function asConflict(err: unknown): unknown {
  if (!(err instanceof Error) || (err as { code?: unknown }).code !== '23505') return err;
  const constraint = (err as { constraint?: unknown }).constraint;
  const columns = typeof constraint === 'string' ? constraint : 'a unique column';
  return new StoreConflict(`${columns}: another row already has this value`);
}

/** The URL without its password, for messages and `path`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

/** A caller's negative or fractional limit is neither "no limit" nor an error. */
function clampLimit(limit: number): number {
  return Number.isFinite(limit) ? Math.max(0, Math.floor(limit)) : 0;
}

function containsPattern(search: string): string {
  return `%${search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

function memberParams(m: MemberRecord): unknown[] {
  return [
    m.name,
    m.ip,
    m.ip6,
    m.publicKey,
    m.privateKey,
    m.disabled,
    m.expiresAt,
    m.fullTunnel,
    m.createdAt,
    m.updatedAt,
  ];
}

function memberFromRow(r: MemberRow): MemberRecord {
  return {
    name: r.name,
    ip: r.ip,
    ip6: r.ip6,
    publicKey: r.public_key,
    hasPrivateKey: r.private_key !== null,
    privateKey: r.private_key,
    groups: [...r.groups],
    disabled: r.disabled,
    expiresAt: r.expires_at,
    fullTunnel: r.full_tunnel,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** A site's values in SITE_COLUMNS' order; lists as JSON text (pg would send a JS array as a SQL array). */
function siteParams(s: SiteRecord): unknown[] {
  return [
    s.name,
    s.enabled,
    s.remoteAddress,
    s.localId,
    s.remoteId,
    s.psk,
    s.forceShortPsk,
    JSON.stringify(s.localSubnets),
    JSON.stringify(s.remoteSubnets),
    s.mode,
    JSON.stringify(s.ikeProposals),
    JSON.stringify(s.espProposals),
    s.allowLegacyGroups,
    s.ikeLifetimeSec,
    s.childLifetimeSec,
    s.dpdIntervalSec,
    s.dpdAction,
    s.startAction,
    JSON.stringify(s.groups),
    s.createdAt,
    s.updatedAt,
    s.auth,
    s.certificate,
    s.privateKey,
    s.caCertificates,
    JSON.stringify(s.multicast),
    s.childPerSubnetPair,
    s.ikeHardLifetimeSec,
    s.childHardLifetimeSec,
    s.fragmentSize,
    s.childRekeyBytes,
    s.childLifeBytes,
    s.gateway ?? null,
  ];
}

function siteFromRow(r: SiteRow): SiteRecord {
  return {
    name: r.name,
    enabled: r.enabled,
    remoteAddress: r.remote_address,
    localId: r.local_id,
    remoteId: r.remote_id,
    auth: r.auth,
    psk: r.psk,
    forceShortPsk: r.force_short_psk,
    certificate: r.certificate,
    privateKey: r.private_key,
    caCertificates: r.ca_certificates,
    localSubnets: r.local_subnets,
    remoteSubnets: r.remote_subnets,
    mode: r.mode,
    ikeProposals: r.ike_proposals,
    espProposals: r.esp_proposals,
    allowLegacyGroups: r.allow_legacy_groups,
    ikeLifetimeSec: r.ike_lifetime_sec,
    childLifetimeSec: r.child_lifetime_sec,
    dpdIntervalSec: r.dpd_interval_sec,
    dpdAction: r.dpd_action,
    startAction: r.start_action,
    groups: r.policy_groups,
    multicast: r.multicast,
    childPerSubnetPair: r.child_per_subnet_pair,
    ikeHardLifetimeSec: r.ike_hard_lifetime_sec,
    childHardLifetimeSec: r.child_hard_lifetime_sec,
    fragmentSize: r.fragment_size,
    childRekeyBytes: Number(r.child_rekey_bytes),
    childLifeBytes: Number(r.child_life_bytes),
    ...(r.gateway === null ? {} : { gateway: r.gateway }),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** A plain object with exactly the interface's fields. */
function credentialFromRow(r: OpenVpnCredential): OpenVpnCredential {
  return {
    name: r.name,
    serial: r.serial,
    clientKeyId: r.clientKeyId,
    certificate: r.certificate,
    privateKey: r.privateKey,
    tlsCryptV2Key: r.tlsCryptV2Key,
    notAfter: r.notAfter,
    issuedAt: r.issuedAt,
  };
}

function revocationFromRow(r: OpenVpnRevocation): OpenVpnRevocation {
  return {
    serial: r.serial,
    clientKeyId: r.clientKeyId,
    name: r.name,
    revokedAt: r.revokedAt,
    reason: r.reason,
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

function statusFromRow(r: StatusRow): MemberStatus {
  return {
    name: r.name,
    online: r.online,
    endpoint: r.endpoint,
    lastHandshake: r.last_handshake,
    rxBytes: r.rx_bytes,
    txBytes: r.tx_bytes,
    policyDrops: r.policy_drops,
    updatedAt: r.updated_at,
    protocol: r.protocol,
    since: r.since,
    ...(r.gateway !== null ? { gateway: r.gateway } : {}),
  };
}
