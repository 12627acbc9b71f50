/**
 * The PostgreSQL store against a real PostgreSQL 15 (Debian's `postgresql`), started by this file in a
 * temporary directory (test/interop/postgres-harness.ts; needs root for runuser):
 *   1. the whole async conformance suite, each case on a database of its own;
 *   2. migrations: from an empty database, two stores opening it at once, from version 1 (the OpenVPN
 *      tables), refusal of a newer schema;
 *   3. two stores on one database: a change through one reaches the other's changesSince and wakes its
 *      `listen` within 1 s (p50/p99 over 50 changes printed);
 *   4. races: one name inserted at once through two stores gives exactly one StoreConflict; a download link
 *      taken at once through two stores is taken once, and so are OpenVPN credentials issued or revoked at
 *      once; 10 concurrent writers leave revisions gap-free, and a follower polling meanwhile never sees a
 *      revision appear below one it has already seen;
 *   5. the server stopped and started again, and restarted with pg_ctl, while a store and a listener are open;
 *   6. a transaction that throws leaves nothing behind, and no connection stuck in it;
 *   7. IPsec sites and their statuses (on PostgresStore directly until the Store interface has them);
 *   8. failover primitives: gateways register and heartbeat; two stores race for a lease and one wins; the
 *      holder (a child process) killed with -9, or stopped, frees it for the other (times printed); a restart
 *      of PostgreSQL tells the holder it lost it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { OpenVpnCredential, SiteRecord } from '../../src/control/model.js';
import type { ChildSaView, SiteStatus } from '../../src/ipsec/site-spec.js';
import type { Lease } from '../../src/control/pg-lease.js';
import { StoreConflict } from '../../src/control/store.js';
import { openStore } from '../../src/control/store-open.js';
import {
  openPostgresStore,
  PG_MIGRATIONS,
  PG_SCHEMA_VERSION,
  StoreSchemaTooNew,
  StoreUnavailable,
  type ListenEvent,
  type PostgresStore,
} from '../../src/control/store-postgres.js';
import { member, SETTINGS, T0 } from '../support/store-conformance.js';
import { asyncStoreConformance, type OpenedAsyncStore } from '../support/store-conformance-async.js';
import { canRunPostgres, startPostgres, type PostgresServer } from './postgres-harness.js';

const T1 = '2024-05-01T12:01:00.000Z';
const T2 = '2024-05-01T12:02:00.000Z';

/** A site named `name` with every field set (lists of several entries, nulls and non-defaults included). */
function site(name: string, overrides: Partial<SiteRecord> = {}): SiteRecord {
  return {
    name,
    enabled: true,
    remoteAddress: '198.51.100.20',
    localId: 'fqdn:gw.example.net',
    remoteId: null,
    auth: 'psk',
    psk: 'a-pre-shared-key-of-32-characters',
    forceShortPsk: false,
    certificate: null,
    privateKey: null,
    caCertificates: null,
    localSubnets: ['10.77.0.0/16', 'fd00:77::/64'],
    remoteSubnets: ['10.20.0.0/24', '10.21.0.0/24'],
    mode: 'tunnel',
    ikeProposals: ['aes256gcm16-prfsha256-x25519', 'aes256-sha256-modp2048'],
    espProposals: ['aes256gcm16'],
    allowLegacyGroups: false,
    ikeLifetimeSec: 14_400,
    childLifetimeSec: 3_600,
    dpdIntervalSec: 30,
    dpdAction: 'restart',
    startAction: 'initiate',
    groups: ['eng', 'ops'],
    multicast: ['239.0.0.0/8'],
    childPerSubnetPair: true,
    ikeHardLifetimeSec: 16_000,
    childHardLifetimeSec: null,
    fragmentSize: 1_200,
    childRekeyBytes: 5 * 2 ** 30,
    childLifeBytes: 6 * 2 ** 30,
    createdAt: T0,
    updatedAt: T0,
    ...overrides,
  };
}

function siteStatus(name: string, overrides: Partial<SiteStatus> = {}): SiteStatus {
  return {
    name,
    state: 'up',
    ike: {
      spiI: '0123456789abcdef',
      spiR: 'fedcba9876543210',
      initiator: true,
      proposal: 'aes256gcm16-prfsha256-x25519',
      peerId: 'ipv4:198.51.100.20',
      remote: '198.51.100.20:500',
      encapsulated: false,
      establishedAt: T0,
      rekeyedAt: null,
    },
    children: [
      {
        inboundSpi: 'c0000001',
        outboundSpi: 'c0000002',
        mode: 'tunnel',
        proposal: 'aes256gcm16-esn',
        carrier: 'raw',
        localSubnets: ['10.77.0.0/16'],
        remoteSubnets: ['10.20.0.0/24'],
        establishedAt: T0,
        rekeyedAt: T1,
        packetsIn: 10,
        bytesIn: 1000,
        packetsOut: 20,
        bytesOut: 2000,
        drops: { replay: 1 },
      },
    ],
    lastError: null,
    at: T1,
    ...overrides,
  };
}

const can = canRunPostgres();
let server: PostgresServer | undefined;
let databases = 0;

/** A fresh, empty database on the test server; dropped when `drop` is called. */
async function freshDatabase(prefix: string): Promise<{ url: string; drop: () => Promise<void> }> {
  if (server === undefined) throw new Error('the PostgreSQL server is not running');
  const s = server;
  const name = `${prefix}_${process.pid}_${++databases}`;
  const url = await s.createDatabase(name);
  return { url, drop: () => s.dropDatabase(name) };
}

/** Resolves when `check` holds, polling every 10 ms; rejects after `ms`. */
async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

if (!can.ok) {
  it('PostgreSQL store', { skip: can.reason }, () => {});
} else {
  before(async () => {
    server = await startPostgres();
  });
  after(async () => {
    await server?.stop();
  });

  /** A database at schema version 10 (see OpenAtVersion10), written with plain SQL as that version left it. */
  async function writeVersion10(url: string, seed: { readonly member: boolean }): Promise<void> {
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query(
        `CREATE TABLE schema_migrations (version integer PRIMARY KEY,
                                         applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      for (let v = 0; v < 10; v++) {
        await admin.query(PG_MIGRATIONS[v] ?? '');
        await admin.query('INSERT INTO schema_migrations (version) VALUES ($1)', [v + 1]);
      }
      if (seed.member) {
        const m = member(1);
        await admin.query(
          `INSERT INTO members (name, ip, ip6, public_key, private_key, disabled, expires_at, full_tunnel,
                                created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, false, NULL, false, $6, $6)`,
          [m.name, m.ip, m.ip6, m.publicKey, m.privateKey, T0],
        );
      }
      await admin.query(
        `INSERT INTO policies (action, grp, destination, proto, port_from, port_to)
         VALUES ('allow', 'eng', '10.20.0.0/16', 'tcp', 22, 22)`,
      );
    } finally {
      await admin.end();
    }
  }

  asyncStoreConformance('PostgresStore', () => openConformance(), openConformance);

  async function openConformance(seed?: { readonly member: boolean }): Promise<OpenedAsyncStore> {
    const db = await freshDatabase('conformance');
    let store: PostgresStore;
    try {
      if (seed) await writeVersion10(db.url, seed);
      store = await openPostgresStore(db.url);
    } catch (err) {
      await db.drop();
      throw err;
    }
    return {
      store,
      close: async () => {
        try {
          await store.close();
        } finally {
          await db.drop();
        }
      },
    };
  }

  describe('PostgresStore: schema and migrations', () => {
    it('migrates an empty database, once, also when two stores open it at the same moment', async () => {
      const db = await freshDatabase('migrate');
      const admin = new pg.Client({ connectionString: db.url });
      await admin.connect();
      try {
        const [a, b, c] = await Promise.all([
          openPostgresStore(db.url),
          openPostgresStore(db.url),
          openPostgresStore(db.url),
        ]);
        assert.deepEqual(
          [a.schemaVersion, b.schemaVersion, c.schemaVersion],
          [PG_SCHEMA_VERSION, PG_SCHEMA_VERSION, PG_SCHEMA_VERSION],
        );
        const { rows } = await admin.query<{ version: number }>(
          'SELECT version FROM schema_migrations ORDER BY version',
        );
        assert.deepEqual(
          rows.map((r) => r.version),
          Array.from({ length: PG_SCHEMA_VERSION }, (_, i) => i + 1),
          'each version applied once',
        );
        await a.insertGroup({ name: 'eng', description: '' });
        assert.deepEqual(await b.getGroup('eng'), { name: 'eng', description: '' });
        await Promise.all([a.close(), b.close(), c.close()]);
        // Opening an up-to-date database applies nothing.
        const again = await openPostgresStore(db.url);
        assert.equal(await again.revision(), 1);
        await again.close();
        const { rows: after } = await admin.query('SELECT version FROM schema_migrations');
        assert.equal(after.length, PG_SCHEMA_VERSION);
      } finally {
        await admin.end();
        await db.drop();
      }
    });

    it('migrates a version 1 database: its config records and links become WireGuard ones', async () => {
      const db = await freshDatabase('from_v1');
      const admin = new pg.Client({ connectionString: db.url });
      await admin.connect();
      try {
        // A database as the first release of this store left it.
        await admin.query(
          `CREATE TABLE schema_migrations (version integer PRIMARY KEY,
                                           applied_at timestamptz NOT NULL DEFAULT now())`,
        );
        await admin.query(PG_MIGRATIONS[0] ?? '');
        await admin.query('INSERT INTO schema_migrations (version) VALUES (1)');
        const m = member(1);
        await admin.query(
          `INSERT INTO members (name, ip, ip6, public_key, private_key, disabled, expires_at, full_tunnel,
                                created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, false, NULL, false, $6, $6)`,
          [m.name, m.ip, m.ip6, m.publicKey, m.privateKey, T0],
        );
        await admin.query(
          `INSERT INTO config_deliveries (member_id, fingerprint, delivered_at)
           SELECT id, 'sha256:old', $1 FROM members`,
          [T0],
        );
        await admin.query(
          `INSERT INTO download_links (hash, member_id, created_at, expires_at)
           SELECT 'hash-old', id, $1, '2099-01-01T00:00:00.000Z' FROM members`,
          [T0],
        );

        const store = await openPostgresStore(db.url);
        try {
          assert.equal(store.schemaVersion, PG_SCHEMA_VERSION);
          const old = { name: m.name, fingerprint: 'sha256:old', deliveredAt: T0 };
          assert.deepEqual(await store.allConfigDeliveries('wireguard'), [old]);
          assert.deepEqual(await store.allConfigDeliveries('openvpn'), []);
          assert.equal(await store.linkProtocol('hash-old'), 'wireguard');
          // The new primary key: one record per member and protocol.
          await store.putConfigDelivery({ ...old, fingerprint: 'sha256:ovpn' }, 'openvpn');
          assert.deepEqual(await store.getConfigDelivery(m.name), old);
          assert.equal(
            await store.putOpenVpnCredential({
              name: m.name,
              serial: '01',
              clientKeyId: 'aa',
              certificate: 'C',
              privateKey: 'K',
              tlsCryptV2Key: 'T',
              notAfter: T0,
              issuedAt: T0,
            }),
            true,
          );
        } finally {
          await store.close();
        }
      } finally {
        await admin.end();
        await db.drop();
      }
    });

    it('refuses a database at a newer schema version, and changes nothing in it', async () => {
      const db = await freshDatabase('newer');
      try {
        const store = await openPostgresStore(db.url);
        await store.insertGroup({ name: 'eng', description: '' });
        await store.close();
        const admin = new pg.Client({ connectionString: db.url });
        await admin.connect();
        await admin.query('INSERT INTO schema_migrations (version) VALUES ($1)', [PG_SCHEMA_VERSION + 1]);
        await assert.rejects(openPostgresStore(db.url), (err: unknown) => {
          assert.ok(err instanceof StoreSchemaTooNew, String(err));
          assert.equal(err.found, PG_SCHEMA_VERSION + 1);
          assert.match(err.message, /newer|upgrade Weft/);
          return true;
        });
        const { rows } = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations');
        assert.equal(rows[0]?.n, PG_SCHEMA_VERSION + 1);
        const { rows: groups } = await admin.query<{ name: string }>('SELECT name FROM "groups"');
        assert.deepEqual(
          groups.map((g) => g.name),
          ['eng'],
        );
        await admin.end();
      } finally {
        await db.drop();
      }
    });

    it('openStore chooses PostgreSQL for postgres:// and postgresql:// URLs and WEFT_STORE', async () => {
      const db = await freshDatabase('open');
      try {
        const viaUrl = await openStore(db.url, '/nonexistent/weft.db', {});
        await viaUrl.insertGroup({ name: 'eng', description: '' });
        await viaUrl.close();
        const viaEnv = await openStore(undefined, '/nonexistent/weft.db', { WEFT_STORE: db.url });
        assert.deepEqual(await viaEnv.getGroup('eng'), { name: 'eng', description: '' });
        await viaEnv.close();
        const postgresql = await openStore(
          db.url.replace(/^postgres:/, 'postgresql:'),
          '/nonexistent/weft.db',
          {},
        );
        assert.equal(await postgresql.revision(), 1);
        await postgresql.close();
      } finally {
        await db.drop();
      }
    });
  });

  describe('PostgresStore: several stores on one database', () => {
    it('a change through one store reaches the other: changesSince, and listen within 1 s (50 changes)', async () => {
      const db = await freshDatabase('follow');
      const a = await openPostgresStore(db.url);
      const b = await openPostgresStore(db.url);
      try {
        let seen = 0;
        const woken: number[] = [];
        const listener = await b.listen((rev) => {
          woken.push(rev);
          seen = Math.max(seen, rev);
        });
        const latencies: number[] = [];
        for (let i = 1; i <= 50; i++) {
          const start = performance.now();
          await a.insertGroup({ name: `g${i}`, description: '' });
          await until(() => seen >= i, 1000, `the notification of revision ${i}`);
          latencies.push(performance.now() - start);
          const changes = await b.changesSince(i - 1);
          assert.deepEqual(changes, [{ rev: i, kind: 'group', key: `g${i}` }]);
        }
        latencies.sort((x, y) => x - y);
        const p50 = percentile(latencies, 50);
        const p99 = percentile(latencies, 99);
        console.log(
          `change through store A -> listen callback of store B, 50 changes: p50 ${p50.toFixed(1)} ms, ` +
            `p99 ${p99.toFixed(1)} ms, max ${(latencies.at(-1) ?? NaN).toFixed(1)} ms`,
        );
        assert.ok(p99 < 1000, `p99 ${p99} ms`);
        assert.deepEqual(
          woken,
          Array.from({ length: 50 }, (_, i) => i + 1),
          'one wake-up per commit, in order',
        );

        // A transaction of several changes wakes followers once, with its last revision.
        woken.length = 0;
        await a.transaction(async () => {
          await a.insertGroup({ name: 'x', description: '' });
          await a.insertMember(member(1, { groups: ['x'] }));
        });
        await until(() => seen >= 52, 1000, 'the notification of revision 52');
        assert.deepEqual(woken, [52]);
        // Changes outside the feed wake nobody.
        await a.putStatuses([
          {
            name: 'm00001',
            online: true,
            protocol: 'wireguard',
            since: null,
            endpoint: null,
            lastHandshake: null,
            rxBytes: 0,
            txBytes: 0,
            policyDrops: 0,
            updatedAt: T0,
          },
        ]);
        await a.appendAudit({ at: T0, actor: 'admin', action: 'x', target: 'y', detail: {} });
        await new Promise((resolve) => setTimeout(resolve, 100));
        assert.deepEqual(woken, [52]);
        await listener.close();
      } finally {
        await a.close();
        await b.close();
        await db.drop();
      }
    });

    it('the same name inserted at once through two stores: exactly one StoreConflict', async () => {
      const db = await freshDatabase('race');
      const a = await openPostgresStore(db.url);
      const b = await openPostgresStore(db.url);
      try {
        for (let i = 0; i < 20; i++) {
          const name = `race${i}`;
          const results = await Promise.allSettled([
            a.insertMember(member(2 * i, { name })),
            b.insertMember(member(2 * i + 1, { name })),
          ]);
          const failed = results.filter((r) => r.status === 'rejected');
          assert.equal(failed.length, 1, `round ${i}: ${JSON.stringify(results)}`);
          const reason = (failed[0] as PromiseRejectedResult).reason as unknown;
          assert.ok(reason instanceof StoreConflict, String(reason));
          assert.match(reason.message, /members\.name/);
        }
        assert.equal(await a.countMembers(), 20);
        assert.deepEqual(
          (await a.changesSince(0)).map((c) => c.rev),
          Array.from({ length: 20 }, (_, i) => i + 1),
          'the losers appended nothing',
        );
      } finally {
        await a.close();
        await b.close();
        await db.drop();
      }
    });

    it('a download link taken at once through two stores is taken once', async () => {
      const db = await freshDatabase('links');
      const a = await openPostgresStore(db.url);
      const b = await openPostgresStore(db.url);
      try {
        await a.insertMember(member(1));
        for (let i = 0; i < 20; i++)
          await a.insertLink(`hash-${i}`, 'm00001', T0, '2099-01-01T00:00:00.000Z');
        for (let i = 0; i < 20; i++) {
          const taken = await Promise.all([a.takeLink(`hash-${i}`, T0), b.takeLink(`hash-${i}`, T0)]);
          assert.deepEqual(
            taken.filter((t) => t !== undefined),
            ['m00001'],
            `link ${i}: ${JSON.stringify(taken)}`,
          );
        }
      } finally {
        await a.close();
        await b.close();
        await db.drop();
      }
    });

    it('OpenVPN credentials issued or revoked at once through two stores: one record, one revocation', async () => {
      const db = await freshDatabase('ovpn');
      const a = await openPostgresStore(db.url);
      const b = await openPostgresStore(db.url);
      const credential = (name: string, n: number): OpenVpnCredential => ({
        name,
        serial: `${n.toString(16)}0`,
        clientKeyId: `k${n}`,
        certificate: `CERT ${n}`,
        privateKey: `KEY ${n}`,
        tlsCryptV2Key: `TC2 ${n}`,
        notAfter: '2099-01-01T00:00:00.000Z',
        issuedAt: T0,
      });
      try {
        for (let i = 0; i < 10; i++) {
          const name = member(i).name;
          await a.insertMember(member(i));
          const put = await Promise.all([
            a.putOpenVpnCredential(credential(name, 2 * i)),
            b.putOpenVpnCredential(credential(name, 2 * i + 1)),
          ]);
          assert.deepEqual(
            put.filter((p) => p),
            [true],
            `member ${i}: ${JSON.stringify(put)}`,
          );
          const current = await a.getOpenVpnCredential(name);
          assert.equal(current?.serial, credential(name, put[0] ? 2 * i : 2 * i + 1).serial);
          const revoked = await Promise.all([
            a.revokeOpenVpnCredential(name, T0, 'rotated'),
            b.revokeOpenVpnCredential(name, T0, 'rotated'),
          ]);
          assert.deepEqual(
            revoked.filter((r) => r !== undefined).map((r) => r.serial),
            [current?.serial],
            `member ${i}: ${JSON.stringify(revoked)}`,
          );
        }
        assert.equal((await a.allOpenVpnRevocations()).length, 10);
      } finally {
        await a.close();
        await b.close();
        await db.drop();
      }
    });

    it('10 concurrent writers: revisions gap-free and in commit order', async () => {
      const db = await freshDatabase('writers');
      const writers = await Promise.all(Array.from({ length: 10 }, () => openPostgresStore(db.url)));
      const follower = await openPostgresStore(db.url);
      try {
        const ROUNDS = 25;
        let expected = 0;
        let done = false;
        // A follower polling while they write: each batch must start right after what it has seen.
        const followed: number[] = [];
        const follow = (async () => {
          let last = 0;
          for (let polls = 0; polls < 100_000; polls++) {
            // Read before the poll: an empty answer to a poll that started before the last commit proves nothing.
            const finished = done;
            const batch = await follower.changesSince(last, 50);
            for (const c of batch) {
              assert.equal(c.rev, last + 1, `after ${last} the follower saw ${c.rev}`);
              last = c.rev;
              followed.push(c.rev);
            }
            if (batch.length === 0) {
              if (finished) return;
              await new Promise((resolve) => setTimeout(resolve, 2));
            }
          }
        })();
        await Promise.all(
          writers.map(async (store, w) => {
            for (let r = 0; r < ROUNDS; r++) {
              const key = `w${w}r${r}`;
              switch (r % 4) {
                case 0:
                  await store.insertGroup({ name: key, description: '' });
                  expected += 1;
                  break;
                case 1:
                  // Two changes in one transaction.
                  await store.transaction(async () => {
                    await store.insertRoute({ cidr: `10.${w}.${r}.0/24`, description: key });
                    await store.updateGroup({ name: `w${w}r${r - 1}`, description: 'changed' });
                  });
                  expected += 2;
                  break;
                case 2:
                  // Rolled back: no revision, no gap.
                  await assert.rejects(
                    store.transaction(async () => {
                      await store.insertGroup({ name: key, description: '' });
                      throw new Error('abort');
                    }),
                    /abort/,
                  );
                  break;
                default:
                  // A conflict: no revision, no gap.
                  await assert.rejects(
                    store.insertGroup({ name: `w${w}r0`, description: '' }),
                    StoreConflict,
                  );
                  await store.putSettings({ ...SETTINGS, endpoint: `gw${w}.example.com:51820` });
                  expected += 1;
              }
            }
          }),
        );
        done = true;
        await follow;
        const all = await follower.changesSince(0, 100_000);
        assert.equal(all.length, expected);
        assert.deepEqual(
          all.map((c) => c.rev),
          Array.from({ length: expected }, (_, i) => i + 1),
        );
        assert.equal(await follower.revision(), expected);
        assert.deepEqual(
          followed,
          all.map((c) => c.rev),
          'the follower saw every revision, in order',
        );
      } finally {
        await Promise.all([...writers, follower].map((s) => s.close()));
        await db.drop();
      }
    });

    it('a transaction that throws leaves nothing behind and no connection inside a transaction', async () => {
      const db = await freshDatabase('rollback');
      const a = await openPostgresStore(db.url);
      const b = await openPostgresStore(db.url);
      try {
        await a.insertGroup({ name: 'eng', description: '' });
        await assert.rejects(
          a.transaction(async () => {
            await a.insertGroup({ name: 'ops', description: '' });
            await a.insertMember(member(1, { groups: ['eng', 'ops'] }));
            await a.putSecret('gateway.key', 'k');
            await a.insertToken('ci', 'hash', T0);
            await a.appendAudit({ at: T0, actor: 'admin', action: 'x', target: 'y', detail: {} });
            await a.insertMember(member(1));
          }),
          StoreConflict,
        );
        for (const store of [a, b]) {
          assert.equal(await store.revision(), 1);
          assert.equal(await store.getGroup('ops'), undefined);
          assert.equal(await store.getMember('m00001'), undefined);
          assert.equal(await store.getSecret('gateway.key'), undefined);
          assert.deepEqual(await store.listTokens(), []);
          assert.deepEqual(await store.listAudit({ limit: 10 }), []);
        }
        const admin = new pg.Client({ connectionString: db.url });
        await admin.connect();
        const { rows } = await admin.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND state LIKE 'idle in transaction%'`,
        );
        await admin.end();
        assert.equal(rows[0]?.n, 0);
      } finally {
        await a.close();
        await b.close();
        await db.drop();
      }
    });
  });

  /**
   * IPsec sites, on PostgresStore itself (the `Store` interface gains the site methods separately; once it has
   * them, these cases belong in the async conformance suite, beside the synchronous suite's).
   */
  describe('PostgresStore: IPsec sites', () => {
    /** One store on a fresh database for the duration of `fn`. */
    async function withStore(prefix: string, fn: (store: PostgresStore, url: string) => Promise<void>) {
      const db = await freshDatabase(prefix);
      const store = await openPostgresStore(db.url);
      try {
        await fn(store, db.url);
      } finally {
        await store.close();
        await db.drop();
      }
    }

    function feedOf(store: PostgresStore, since: number): Promise<[string, string][]> {
      return store.changesSince(since).then((changes) => changes.map((c) => [c.kind, c.key]));
    }

    it('insert, get, list by name, update, delete, each in the change feed', async () => {
      await withStore('sites', async (store) => {
        assert.deepEqual(await store.listSites(), []);
        assert.equal(await store.getSite('hq'), undefined);
        const rev0 = await store.revision();
        const b = site('branch', { remoteAddress: null, startAction: 'wait', localId: null, groups: [] });
        const h = site('hq', {
          mode: 'transport',
          dpdAction: 'hold',
          allowLegacyGroups: true,
          forceShortPsk: true,
        });
        await store.insertSite(h);
        await store.insertSite(b);
        assert.deepEqual(await store.getSite('hq'), h);
        assert.deepEqual(await store.getSite('branch'), b);
        assert.deepEqual(await store.listSites(), [b, h], 'ordered by name');
        assert.deepEqual(await feedOf(store, rev0), [
          ['site', 'hq'],
          ['site', 'branch'],
        ]);

        const changed = { ...h, enabled: false, remoteSubnets: ['10.30.0.0/16'], updatedAt: T2 };
        assert.equal(await store.updateSite(changed), true);
        assert.deepEqual(await store.getSite('hq'), changed);
        assert.equal(await store.updateSite(site('nowhere')), false);
        assert.equal(await store.deleteSite('branch'), true);
        assert.equal(await store.deleteSite('branch'), false);
        assert.deepEqual(await store.listSites(), [changed]);
        assert.deepEqual(await feedOf(store, rev0), [
          ['site', 'hq'],
          ['site', 'branch'],
          ['site', 'hq'],
          ['site', 'branch'],
        ]);
        // Names sort byte-wise, as in SQLite, whatever the database's locale.
        for (const name of ['b-2', 'B1', 'a_1']) await store.insertSite(site(name));
        assert.deepEqual(
          (await store.listSites()).map((s) => s.name),
          ['B1', 'a_1', 'b-2', 'hq'],
        );
      });
    });

    it('a duplicate name is a StoreConflict (also from two stores at once); a rolled-back insert leaves nothing', async () => {
      await withStore('sites_dup', async (store, url) => {
        await store.insertSite(site('hq'));
        const rev = await store.revision();
        const isDuplicate = (name: string) => (err: unknown) =>
          err instanceof StoreConflict && err.message === `a site named "${name}" already exists`;
        await assert.rejects(
          () => store.insertSite(site('hq', { psk: 'another-key-of-enough-length' })),
          isDuplicate('hq'),
        );
        assert.equal((await store.getSite('hq'))?.psk, site('hq').psk);
        await assert.rejects(() =>
          store.transaction(async () => {
            await store.insertSite(site('branch'));
            await store.deleteSite('hq');
            throw new Error('rolled back');
          }),
        );
        assert.deepEqual(
          (await store.listSites()).map((s) => s.name),
          ['hq'],
        );
        assert.equal(await store.revision(), rev);

        const other = await openPostgresStore(url);
        try {
          for (let i = 0; i < 10; i++) {
            const name = `race${i}`;
            const results = await Promise.allSettled([
              store.insertSite(site(name)),
              other.insertSite(site(name, { psk: 'the-other-gateways-key-of-length' })),
            ]);
            const rejected = results.filter((r) => r.status === 'rejected');
            assert.equal(rejected.length, 1, `${name}: ${JSON.stringify(results)}`);
            assert.ok(isDuplicate(name)((rejected[0] as PromiseRejectedResult).reason));
          }
          assert.equal(await other.revision(), rev + 10, 'one change per site');
        } finally {
          await other.close();
        }
      });
    });

    it('statuses: replaced wholesale, not in the change feed, gone with their site', async () => {
      await withStore('site_status', async (store) => {
        await store.insertSite(site('hq'));
        await store.insertSite(site('branch'));
        const rev = await store.revision();
        assert.deepEqual(await store.allSiteStatuses(), []);
        const hq = siteStatus('hq');
        const branch = siteStatus('branch', {
          state: 'down',
          ike: null,
          children: [],
          lastError: { at: T1, message: 'no proposal chosen' },
        });
        await store.putSiteStatuses([hq, branch]);
        assert.deepEqual(await store.allSiteStatuses(), [branch, hq]);
        await store.putSiteStatuses([siteStatus('hq', { state: 'connecting', at: T2 })]);
        assert.deepEqual(await store.allSiteStatuses(), [siteStatus('hq', { state: 'connecting', at: T2 })]);
        assert.equal(await store.revision(), rev, 'statuses are not changes of the network');
        await store.putSiteStatuses([hq, branch]);
        await store.deleteSite('hq');
        assert.deepEqual(await store.allSiteStatuses(), [branch]);
        await assert.rejects(() =>
          store.transaction(async () => {
            await store.putSiteStatuses([]);
            throw new Error('rolled back');
          }),
        );
        assert.deepEqual(await store.allSiteStatuses(), [branch], 'a rolled-back report changes nothing');
        await store.putSiteStatuses([]);
        assert.deepEqual(await store.allSiteStatuses(), []);
      });
    });

    it('lists round-trip as JSON in their order (empty, several, any text), and values are copied in and out', async () => {
      await withStore('site_lists', async (store) => {
        const odd = site('odd', {
          localSubnets: [],
          remoteSubnets: ['2001:db8::/32', '10.0.0.0/8', '10.0.0.0/8'],
          ikeProposals: ['z', 'a', 'quote " and \\ backslash', 'ünïcödé'],
          espProposals: [],
          groups: ['zeta', 'alpha'],
          localId: 'email:ops@example.net',
          remoteId: 'keyid:0a1b',
        });
        await store.insertSite(odd);
        assert.deepEqual(await store.getSite('odd'), odd);
        const s = site('hq');
        await store.insertSite(s);
        s.remoteSubnets.push('10.99.0.0/16');
        ((await store.getSite('hq'))?.groups as string[]).push('x');
        ((await store.listSites())[0]?.localSubnets as string[]).push('x');
        assert.deepEqual(await store.getSite('hq'), site('hq'));
        const status = siteStatus('hq');
        await store.putSiteStatuses([status]);
        (status.children as ChildSaView[]).pop();
        assert.deepEqual(await store.allSiteStatuses(), [siteStatus('hq')]);
      });
    });
  });

  /** Failover primitives: gateways and the lease on a shared address (not used by the gateway yet). */
  describe('PostgresStore: gateways and leases', () => {
    it('mesh: a mesh port per gateway, its reported peers, and where members are held', async () => {
      const db = await freshDatabase('mesh');
      const a = await openPostgresStore(db.url);
      try {
        const west = {
          name: 'gw-west',
          endpoint: '192.0.2.1:51820',
          publicKey: 'A'.repeat(43) + '=',
          region: '',
        };
        const east = {
          name: 'gw-east',
          endpoint: '192.0.2.2:51820',
          publicKey: 'B'.repeat(43) + '=',
          region: '',
        };
        assert.equal((await a.registerGateway({ ...west, meshPort: 4000 })).meshPort, 4000);
        assert.equal((await a.registerGateway(east)).meshPort, null, 'no mesh port: listen port + 1');
        await assert.rejects(() => a.registerGateway({ ...east, meshPort: 70000 }), /mesh_port/);
        assert.equal((await a.listGateways())[1]?.mesh, null);
        const peers = [{ name: 'gw-east', endpoint: '192.0.2.2:51821', lastHandshake: T0, routes: 2 }];
        assert.equal(await a.reportGatewayMesh('gw-west', peers), true);
        assert.equal(await a.reportGatewayMesh('gw-nowhere', peers), false);
        const reported = (await a.listGateways()).find((g) => g.name === 'gw-west')?.mesh;
        assert.deepEqual(reported?.peers, peers);
        assert.ok(reported && !Number.isNaN(Date.parse(reported.at)), JSON.stringify(reported));

        await a.insertMember(member(1));
        await a.insertMember(member(2));
        await a.insertMember(member(3, { disabled: true }));
        const row = (name: string, online: boolean, gateway?: string) => ({
          name,
          online,
          protocol: online ? ('wireguard' as const) : null,
          since: null,
          endpoint: null,
          lastHandshake: null,
          rxBytes: 0,
          txBytes: 0,
          policyDrops: 0,
          updatedAt: T0,
          ...(gateway === undefined ? {} : { gateway }),
        });
        await a.putStatuses([
          row('m00001', true, 'gw-east'),
          row('m00002', true, 'gw-west'),
          row('m00003', true, 'gw-east'),
        ]);
        const m1 = member(1);
        assert.deepEqual(await a.memberLocations('gw-west'), [
          { name: 'm00001', gateway: 'gw-east', ip: m1.ip, ip6: m1.ip6 },
        ]);
        assert.equal((await a.getStatus('m00001'))?.gateway, 'gw-east');
        // A gateway the member left reports it offline: the row of the gateway holding it stands.
        await a.putStatuses([row('m00001', false, 'gw-west')]);
        assert.equal((await a.getStatus('m00001'))?.online, true);
        // The holder itself reports it offline; then any report may take the row.
        await a.putStatuses([row('m00001', false, 'gw-east')]);
        assert.equal((await a.getStatus('m00001'))?.online, false);
        assert.deepEqual(await a.memberLocations('gw-west'), []);
        await a.putStatuses([row('m00001', true, 'gw-west')]);
        assert.deepEqual(
          (await a.memberLocations('gw-east')).map((l) => [l.name, l.gateway]),
          [
            ['m00001', 'gw-west'],
            ['m00002', 'gw-west'],
          ],
        );
      } finally {
        await a.close();
        await db.drop();
      }
    });

    it('gateways register, register again with a new endpoint, heartbeat, and list by name', async () => {
      const db = await freshDatabase('gateways');
      const a = await openPostgresStore(db.url);
      const b = await openPostgresStore(db.url);
      try {
        const west = {
          name: 'gw-west',
          endpoint: '192.0.2.1:51820',
          publicKey: 'A'.repeat(43) + '=',
          region: 'eu-west',
        };
        const east = {
          name: 'gw-east',
          endpoint: '192.0.2.2:51820',
          publicKey: 'B'.repeat(43) + '=',
          region: 'us-east',
        };
        const first = await a.registerGateway(west);
        assert.deepEqual(
          { name: first.name, endpoint: first.endpoint, publicKey: first.publicKey, region: first.region },
          west,
        );
        await b.registerGateway(east);
        assert.deepEqual(
          (await a.listGateways()).map((g) => g.name),
          ['gw-east', 'gw-west'],
        );
        await assert.rejects(
          () => b.registerGateway({ ...east, name: 'gw-copy' }),
          (err: unknown) => err instanceof StoreConflict && /gateways\.public_key/.test(err.message),
        );
        await new Promise((resolve) => setTimeout(resolve, 300));
        const silent = (await b.listGateways()).find((g) => g.name === 'gw-west');
        assert.ok(silent !== undefined && silent.silentMs >= 250, JSON.stringify(silent));
        assert.equal(await a.heartbeatGateway('gw-west'), true);
        assert.equal(await a.heartbeatGateway('gw-nowhere'), false);
        const seen = (await b.listGateways()).find((g) => g.name === 'gw-west');
        assert.ok(
          seen !== undefined && seen.silentMs < 250 && seen.lastSeen > silent.lastSeen,
          JSON.stringify(seen),
        );
        const moved = await a.registerGateway({ ...west, endpoint: '198.51.100.1:51820' });
        assert.equal(moved.endpoint, '198.51.100.1:51820');
        assert.equal(
          moved.registeredAt,
          first.registeredAt,
          'registering again keeps the first registration',
        );
        // Registrations (not heartbeats) are in the change feed, keyed gateway/NAME under kind settings.
        const feed = (await a.changesSince(0)).map((c) => `${c.kind}:${c.key}`);
        assert.deepEqual(feed, [
          'settings:gateway/gw-west',
          'settings:gateway/gw-east',
          'settings:gateway/gw-west',
        ]);
        assert.equal(await b.removeGateway('gw-east'), true);
        assert.equal(await b.removeGateway('gw-east'), false);
        assert.deepEqual(
          (await a.changesSince(3)).map((c) => `${c.kind}:${c.key}`),
          ['settings:gateway/gw-east'],
        );
        assert.deepEqual(
          (await a.listGateways()).map((g) => g.name),
          ['gw-west'],
        );
      } finally {
        await a.close();
        await b.close();
        await db.drop();
      }
    });

    it('two stores race for one lease: exactly one wins; released, the other can take it', async () => {
      const db = await freshDatabase('lease_race');
      const a = await openPostgresStore(db.url);
      const b = await openPostgresStore(db.url);
      const held: Lease[] = [];
      try {
        for (let i = 0; i < 10; i++) {
          const name = `shared-address-${i}`;
          const got = await Promise.all([a.acquireLease(name), b.acquireLease(name)]);
          const winners = got.filter((l): l is Lease => l !== null);
          held.push(...winners);
          assert.equal(winners.length, 1, `${name}: ${got.map((l) => l !== null).join(', ')}`);
          assert.equal(await a.acquireLease(name), null, 'held: a third attempt fails too');
        }
        const [first] = held;
        assert.ok(first !== undefined && first.held);
        await first.release();
        assert.equal(first.held, false);
        const again = await b.acquireLease('shared-address-0');
        assert.ok(again !== null, 'a released lease is free at once');
        held.push(again);
        let lostAfterRelease = false;
        first.onLost(() => (lostAfterRelease = true));
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.equal(lostAfterRelease, false, 'a release is not a loss');
      } finally {
        await Promise.all(held.map((l) => l.release()));
        await a.close();
        await b.close();
        await db.drop();
      }
    });

    it('the holder killed with -9: another store takes the lease within 5 s (time printed)', async () => {
      const db = await freshDatabase('lease_kill');
      const store = await openPostgresStore(db.url);
      const holderScript = fileURLToPath(new URL('../support/lease-holder.js', import.meta.url));
      const holder = spawn(process.execPath, [holderScript, db.url, 'shared-address'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let lease: Lease | null = null;
      try {
        let out = '';
        holder.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
        await until(
          () => out.includes('held') || out.includes('busy'),
          10_000,
          'the holder to take the lease',
        );
        assert.equal(out.trim(), 'held');
        assert.equal(await store.acquireLease('shared-address'), null, 'held by the child');

        const killedAt = performance.now();
        holder.kill('SIGKILL');
        const deadline = killedAt + 5000;
        while (lease === null && performance.now() < deadline) {
          lease = await store.acquireLease('shared-address');
          if (lease === null) await new Promise((resolve) => setTimeout(resolve, 20));
        }
        const tookMs = performance.now() - killedAt;
        console.log(
          `lease holder killed with -9 -> lease taken by the other store after ${tookMs.toFixed(1)} ms`,
        );
        assert.ok(lease !== null, `the lease was still held ${tookMs.toFixed(0)} ms after the kill`);
        assert.equal(lease.held, true);
      } finally {
        if (holder.exitCode === null && holder.signalCode === null) holder.kill('SIGKILL');
        await lease?.release();
        await store.close();
        await db.drop();
      }
    });

    it('the holder stopped (SIGSTOP, a hung process): the lease is free within 5 s, and the holder hears it lost it', async () => {
      const db = await freshDatabase('lease_stop');
      const store = await openPostgresStore(db.url);
      const holderScript = fileURLToPath(new URL('../support/lease-holder.js', import.meta.url));
      const holder = spawn(process.execPath, [holderScript, db.url, 'shared-address'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let lease: Lease | null = null;
      try {
        let out = '';
        holder.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
        await until(
          () => out.includes('held') || out.includes('busy'),
          10_000,
          'the holder to take the lease',
        );
        assert.equal(out.trim(), 'held');

        const stoppedAt = performance.now();
        holder.kill('SIGSTOP');
        const deadline = stoppedAt + 5000;
        while (lease === null && performance.now() < deadline) {
          lease = await store.acquireLease('shared-address');
          if (lease === null) await new Promise((resolve) => setTimeout(resolve, 20));
        }
        const tookMs = performance.now() - stoppedAt;
        console.log(
          `lease holder stopped (SIGSTOP) -> lease taken by the other store after ${tookMs.toFixed(1)} ms`,
        );
        assert.ok(lease !== null, `the lease was still held ${tookMs.toFixed(0)} ms after the stop`);
        holder.kill('SIGCONT');
        await until(() => out.includes('lost'), 5000, 'the resumed holder to hear that it lost the lease');
      } finally {
        if (holder.exitCode === null && holder.signalCode === null) {
          holder.kill('SIGCONT');
          holder.kill('SIGKILL');
        }
        await lease?.release();
        await store.close();
        await db.drop();
      }
    });

    it('PostgreSQL restarted: the holder is told it lost the lease, and can take it again after', async () => {
      const s = server;
      assert.ok(s !== undefined);
      const db = await freshDatabase('lease_restart');
      const store = await openPostgresStore(db.url);
      let lease = await store.acquireLease('shared-address');
      try {
        assert.ok(lease !== null);
        const restartedAt = performance.now();
        let lostAt = 0;
        let reason: Error | undefined;
        lease.onLost((err) => {
          lostAt = performance.now();
          reason = err;
        });
        await s.restart();
        await until(() => reason !== undefined, 5000, 'the holder to hear that the lease is lost');
        console.log(
          `PostgreSQL restart -> holder told after ${(lostAt - restartedAt).toFixed(1)} ms (from the start of pg_ctl restart): ${reason?.message}`,
        );
        assert.equal(lease.held, false);
        assert.ok((await Promise.race([lease.lost, Promise.resolve(undefined)])) instanceof Error);
        lease = await store.acquireLease('shared-address');
        assert.ok(lease !== null, 'after the restart the lease can be taken again');
      } finally {
        await lease?.release();
        await store.close();
        await db.drop();
      }
    });
  });

  describe('PostgresStore: the server goes away and comes back', () => {
    it('calls reject with StoreUnavailable while it is down, succeed after; listen reconnects and says so', async () => {
      const s = server;
      assert.ok(s !== undefined);
      const db = await freshDatabase('outage');
      const store = await openPostgresStore(db.url, { connectTimeoutMs: 2000 });
      const events: ListenEvent[] = [];
      const revisions: number[] = [];
      const listener = await store.listen(
        (rev) => revisions.push(rev),
        (event) => events.push(event),
      );
      try {
        await store.insertGroup({ name: 'before', description: '' });
        await until(() => revisions.includes(1), 1000, 'the first notification');

        // 1. Stopped, then started again.
        await s.halt();
        await until(() => events.some((e) => e.state === 'lost'), 5000, 'the listener to report the loss');
        for (const call of [
          () => store.revision(),
          () => store.insertGroup({ name: 'during', description: '' }),
          () => store.transaction(async () => store.getGroup('before')),
        ]) {
          const started = Date.now();
          await assert.rejects(call(), (err: unknown) => {
            assert.ok(err instanceof StoreUnavailable, String(err));
            assert.match(err.message, /the PostgreSQL store is unavailable/);
            assert.ok(!err.message.includes('password'), err.message);
            return true;
          });
          assert.ok(Date.now() - started < 5000, 'a call during the outage fails, it does not hang');
        }
        await s.resume();
        await until(() => events.some((e) => e.state === 'recovered'), 15_000, 'the listener to recover');
        assert.deepEqual(await store.getGroup('before'), { name: 'before', description: '' });
        assert.equal(await store.getGroup('during'), undefined, 'the refused write did not happen');
        await store.insertGroup({ name: 'after', description: '' });
        await until(() => revisions.includes(2), 1000, 'a notification after the reconnect');
        assert.deepEqual(
          events.map((e) => e.state),
          ['lost', 'recovered'],
          'one loss and one recovery, however many attempts it took',
        );
        const recovered = events[1];
        assert.ok(recovered?.state === 'recovered' && recovered.revision === 1, JSON.stringify(events));
        assert.ok(revisions.includes(1), 'after the reconnect onRevision heard the current revision');

        // 2. pg_ctl restart.
        events.length = 0;
        await s.restart();
        await until(() => events.some((e) => e.state === 'recovered'), 15_000, 'the listener to recover');
        assert.deepEqual(
          events.map((e) => e.state),
          ['lost', 'recovered'],
        );
        // The pool dropped its dead connections: the first call after the restart works.
        await store.insertGroup({ name: 'restarted', description: '' });
        assert.equal(await store.revision(), 3);
        await until(() => revisions.includes(3), 1000, 'a notification after the restart');
      } finally {
        await listener.close();
        await store.close();
        await db.drop();
      }
    });
  });
}
