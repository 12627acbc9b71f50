/**
 * What is particular to the SQLite store (src/control/store-sqlite.ts), against real files in a fresh temporary
 * directory: file mode and journal mode, migrations and the schema-version guard, reopening, the member_groups
 * rows under the cascades, pruning of the change feed, two connections to one file, a 10,000-member store, and
 * kill -9 during a burst of writes.
 *
 * What every Store implementation must do (CRUD, conflicts, cascades, the change feed, transactions,
 * pagination, search, audit, tokens, statuses, traffic) is the conformance suite
 * (test/support/store-conformance.ts), which store-conformance.test.ts runs against this store too.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { MemberRecord } from '../../src/control/model.js';
import { StoreConflict } from '../../src/control/store.js';
import {
  MIGRATIONS,
  SCHEMA_VERSION,
  SqliteStore,
  StoreSchemaTooNew,
  openSqliteStore,
} from '../../src/control/store-sqlite.js';
import { member, SETTINGS, site, T0 } from '../support/store-conformance.js';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'weft-store-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A store in a fresh directory, closed when the test ends. */
function freshStore(t: TestContext): SqliteStore {
  const store = openSqliteStore(join(tempDir(t), 'weft.db'));
  t.after(() => store.close());
  return store;
}

test('the database file and its -wal/-shm files are 0600, in WAL mode, at SCHEMA_VERSION', (t) => {
  const path = join(tempDir(t), 'weft.db');
  const store = openSqliteStore(path);
  t.after(() => store.close());
  store.putSecret('gateway.key', 'secret');
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    assert.equal((statSync(file).mode & 0o777).toString(8), '600', file);
  }
  assert.ok(SCHEMA_VERSION >= 1);
  assert.equal(store.schemaVersion, SCHEMA_VERSION);
  const raw = new Database(path);
  try {
    assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(raw.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  } finally {
    raw.close();
  }
});

test('an existing file readable by others is narrowed to 0600', (t) => {
  const path = join(tempDir(t), 'weft.db');
  writeFileSync(path, '');
  chmodSync(path, 0o644);
  const store = openSqliteStore(path);
  t.after(() => store.close());
  assert.equal((statSync(path).mode & 0o777).toString(8), '600');
});

test('an empty file is migrated to SCHEMA_VERSION with every table', (t) => {
  const path = join(tempDir(t), 'weft.db');
  writeFileSync(path, '');
  const store = openSqliteStore(path);
  store.close();
  const raw = new Database(path);
  try {
    assert.equal(raw.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    const tables = raw
      .prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
      )
      .pluck()
      .all();
    assert.deepEqual(tables, [
      'admins',
      'audit',
      'changes',
      'config_deliveries',
      'download_links',
      'groups',
      'member_groups',
      'member_status',
      'members',
      'openvpn_credentials',
      'openvpn_revocations',
      'policies',
      'routes',
      'secrets',
      'settings',
      'site_status',
      'sites',
      'tokens',
      'traffic',
    ]);
  } finally {
    raw.close();
  }
});

test('reopening keeps the data and the revision', (t) => {
  const path = join(tempDir(t), 'weft.db');
  const first = openSqliteStore(path);
  first.putSettings(SETTINGS);
  first.insertGroup({ name: 'eng', description: 'Engineering' });
  first.insertMember(member(1, { groups: ['eng'] }));
  const rev = first.revision();
  first.close();

  const again = openSqliteStore(path);
  t.after(() => again.close());
  assert.equal(again.schemaVersion, SCHEMA_VERSION);
  assert.deepEqual(again.getSettings(), SETTINGS);
  assert.deepEqual(again.getMember('m00001'), member(1, { groups: ['eng'] }));
  assert.equal(again.revision(), rev);
  assert.equal(again.integrityCheck(), 'ok');
});

test('a version 1 file is migrated to the current version and keeps its data', (t) => {
  const path = join(tempDir(t), 'weft.db');
  // A file as the first release left it: the version 1 schema and rows written with plain SQL.
  const v1 = new Database(path);
  try {
    MIGRATIONS[0]!(v1);
    v1.pragma('user_version = 1');
    v1.prepare('INSERT INTO settings (id, value) VALUES (1, ?)').run(JSON.stringify(SETTINGS));
    v1.prepare('INSERT INTO "groups" (name, description) VALUES (?, ?)').run('eng', 'Engineering');
    const m = member(1);
    const id = v1
      .prepare(
        `INSERT INTO members (name, ip, ip6, public_key, private_key, disabled, expires_at, full_tunnel,
                              created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, NULL, 0, ?, ?)`,
      )
      .run(m.name, m.ip, m.ip6, m.publicKey, m.privateKey, m.createdAt, m.updatedAt).lastInsertRowid;
    v1.prepare('INSERT INTO member_groups (member_id, group_id, position) VALUES (?, 1, 0)').run(id);
    v1.prepare('INSERT INTO admins (username, password_hash, totp_secret) VALUES (?, ?, NULL)').run(
      'admin',
      'scrypt$16384$8$1$c2FsdA==$aGFzaA==',
    );
    v1.prepare('INSERT INTO changes (kind, key) VALUES (?, ?)').run('member', m.name);
  } finally {
    v1.close();
  }

  const store = openSqliteStore(path);
  t.after(() => store.close());
  assert.equal(SCHEMA_VERSION, 11);
  assert.equal(store.schemaVersion, 11);
  assert.deepEqual(store.getSettings(), SETTINGS);
  assert.deepEqual(store.getMember('m00001'), member(1, { groups: ['eng'] }));
  assert.deepEqual(store.getAdmin('admin')?.passwordHash, 'scrypt$16384$8$1$c2FsdA==$aGFzaA==');
  assert.equal(store.revision(), 1);
  // The new table works, and its cascade reaches members written before it existed.
  store.insertLink('hash-1', 'm00001', T0, '2099-01-01T00:00:00.000Z');
  store.insertLink('hash-2', 'm00001', T0, '2099-01-01T00:00:00.000Z');
  assert.equal(store.takeLink('hash-1', T0), 'm00001');
  assert.equal(store.deleteMember('m00001'), true);
  assert.equal(store.takeLink('hash-2', T0), undefined);
  assert.equal(store.integrityCheck(), 'ok');
  const raw = new Database(path);
  try {
    assert.equal(raw.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    assert.equal(raw.prepare('SELECT count(*) FROM download_links').pluck<number>().get(), 0);
  } finally {
    raw.close();
  }
});

test('a version 2 file is migrated to version 3: config fingerprints, which go with their member', (t) => {
  const path = join(tempDir(t), 'weft.db');
  const v2 = new Database(path);
  try {
    MIGRATIONS[0]!(v2);
    MIGRATIONS[1]!(v2);
    v2.pragma('user_version = 2');
    const m = member(1);
    v2.prepare(
      `INSERT INTO members (name, ip, ip6, public_key, private_key, disabled, expires_at, full_tunnel,
                            created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, NULL, 0, ?, ?)`,
    ).run(m.name, m.ip, m.ip6, m.publicKey, m.privateKey, m.createdAt, m.updatedAt);
  } finally {
    v2.close();
  }
  const store = openSqliteStore(path);
  t.after(() => store.close());
  assert.equal(store.schemaVersion, SCHEMA_VERSION);
  assert.deepEqual(store.getMember('m00001'), member(1));
  assert.equal(store.getConfigDelivery('m00001'), undefined);
  store.putConfigDelivery({ name: 'm00001', fingerprint: 'f1', deliveredAt: T0 });
  assert.deepEqual(store.getConfigDelivery('m00001'), { name: 'm00001', fingerprint: 'f1', deliveredAt: T0 });
  assert.equal(store.deleteMember('m00001'), true);
  assert.deepEqual(store.allConfigDeliveries(), []);
  assert.equal(store.integrityCheck(), 'ok');
});

test('a version 3 file is migrated to version 4: OpenVPN credentials, revocations, deliveries per protocol', (t) => {
  const path = join(tempDir(t), 'weft.db');
  const v3 = new Database(path);
  try {
    for (const migration of MIGRATIONS.slice(0, 3)) migration(v3);
    v3.pragma('user_version = 3');
    for (const i of [1, 2]) {
      const m = member(i);
      const id = v3
        .prepare(
          `INSERT INTO members (name, ip, ip6, public_key, private_key, disabled, expires_at, full_tunnel,
                                created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, NULL, 0, ?, ?)`,
        )
        .run(m.name, m.ip, m.ip6, m.publicKey, m.privateKey, m.createdAt, m.updatedAt).lastInsertRowid;
      v3.prepare('INSERT INTO config_deliveries (member_id, fingerprint, delivered_at) VALUES (?, ?, ?)').run(
        id,
        `f${i}`,
        T0,
      );
    }
  } finally {
    v3.close();
  }
  const store = openSqliteStore(path);
  t.after(() => store.close());
  assert.equal(store.schemaVersion, SCHEMA_VERSION);
  // The deliveries recorded before were of WireGuard configs, and stay so.
  assert.deepEqual(store.getConfigDelivery('m00001'), { name: 'm00001', fingerprint: 'f1', deliveredAt: T0 });
  assert.equal(store.getConfigDelivery('m00001', 'openvpn'), undefined);
  store.putConfigDelivery({ name: 'm00001', fingerprint: 'o1', deliveredAt: T0 }, 'openvpn');
  assert.deepEqual(store.allConfigDeliveries('openvpn'), [
    { name: 'm00001', fingerprint: 'o1', deliveredAt: T0 },
  ]);
  assert.equal(store.getConfigDelivery('m00001')?.fingerprint, 'f1', 'the WireGuard record is kept apart');

  const credential = (name: string, n: number) => ({
    name,
    serial: `0${n}aa`,
    clientKeyId: `${n}b`.repeat(4),
    certificate: 'CERT',
    privateKey: 'KEY',
    tlsCryptV2Key: 'TC2',
    notAfter: '2099-01-01T00:00:00.000Z',
    issuedAt: T0,
  });
  assert.equal(store.putOpenVpnCredential(credential('m00001', 1)), true);
  assert.equal(store.putOpenVpnCredential(credential('m00001', 3)), false, 'one current credential each');
  assert.equal(store.putOpenVpnCredential(credential('m00002', 2)), true);
  assert.throws(() => store.putOpenVpnCredential(credential('nobody', 4)), StoreConflict);
  assert.equal(store.findOpenVpnCredential({ serial: '01aa' })?.name, 'm00001');
  assert.equal(store.findOpenVpnCredential({ clientKeyId: '2b2b2b2b' })?.name, 'm00002');

  const rotated = store.revokeOpenVpnCredential('m00001', T0, 'rotated');
  assert.deepEqual(rotated, {
    serial: '01aa',
    clientKeyId: '1b1b1b1b',
    name: 'm00001',
    revokedAt: T0,
    reason: 'rotated',
  });
  assert.equal(store.getOpenVpnCredential('m00001'), undefined);
  assert.equal(store.revokeOpenVpnCredential('m00001', T0, 'rotated'), undefined, 'nothing left to revoke');
  // Removing a member revokes its credentials; the revocation outlives it.
  assert.equal(store.deleteMember('m00002'), true);
  assert.equal(store.findOpenVpnRevocation({ clientKeyId: '2b2b2b2b' })?.reason, 'removed');
  assert.deepEqual(
    store.allOpenVpnRevocations().map((r) => [r.serial, r.name, r.reason]),
    [
      ['01aa', 'm00001', 'rotated'],
      ['02aa', 'm00002', 'removed'],
    ].sort((a, b) => (a[0]! < b[0]! ? -1 : 1)),
  );
  assert.equal(store.integrityCheck(), 'ok');
});

test('a store written by a newer schema refuses to open, and is left as it was', (t) => {
  const path = join(tempDir(t), 'weft.db');
  openSqliteStore(path).close();
  const raw = new Database(path);
  raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  raw.close();

  assert.throws(
    () => openSqliteStore(path),
    (err: unknown) => {
      assert.ok(err instanceof StoreSchemaTooNew);
      assert.equal(err.found, SCHEMA_VERSION + 1);
      assert.match(err.message, new RegExp(`schema version ${SCHEMA_VERSION + 1}\\b`));
      assert.match(err.message, new RegExp(`up to ${SCHEMA_VERSION}\\b`));
      assert.match(err.message, /upgrade Weft/);
      assert.ok(err.message.includes(path));
      return true;
    },
  );
  const check = new Database(path);
  try {
    assert.equal(check.pragma('user_version', { simple: true }), SCHEMA_VERSION + 1);
  } finally {
    check.close();
  }
});

test('the cascades leave no member_groups rows behind', (t) => {
  // What the interface promises about cascades is in the conformance suite; this is the table underneath.
  const store = freshStore(t);
  store.insertGroup({ name: 'eng', description: '' });
  store.insertGroup({ name: 'ops', description: '' });
  store.insertMember(member(1, { groups: ['eng', 'ops'] }));
  store.insertMember(member(2, { groups: ['eng'] }));
  store.insertMember(member(3, { groups: ['ops'] }));
  const rows = (): number => {
    const raw = new Database(store.path);
    try {
      return raw.prepare('SELECT count(*) FROM member_groups').pluck<number>().get() ?? -1;
    } finally {
      raw.close();
    }
  };
  assert.equal(rows(), 4);
  assert.equal(store.deleteMember('m00001'), true);
  assert.equal(rows(), 2);
  assert.equal(store.deleteGroup('eng'), true);
  assert.equal(rows(), 1);
  store.updateMember(member(3, { groups: [] }));
  assert.equal(rows(), 0);
  assert.equal(store.integrityCheck(), 'ok');
});

test('change feed stays bounded: older revisions are pruned, newest 10,000 kept', (t) => {
  const store = freshStore(t);
  store.transaction(() => {
    for (let i = 0; i < 11_000; i++) store.putSettings({ ...SETTINGS, mtu: 1000 + (i % 400) });
  });
  assert.equal(store.revision(), 11_000);
  const first = store.changesSince(0, 1)[0];
  assert.ok(first !== undefined);
  assert.ok(first.rev > 1, 'the oldest changes were pruned');
  assert.ok(first.rev <= 11_000 - 10_000 + 1, `at least the newest 10,000 are kept (first is ${first.rev})`);
  const tail = store.changesSince(11_000 - 10_000, 20_000);
  assert.equal(tail.length, 10_000);
  assert.equal(tail.at(-1)?.rev, 11_000);
});

test('two connections to one file see each other’s commits', (t) => {
  const a = freshStore(t);
  const b = openSqliteStore(a.path);
  t.after(() => b.close());
  a.insertGroup({ name: 'eng', description: '' });
  assert.deepEqual(b.getGroup('eng'), { name: 'eng', description: '' });
  b.insertMember(member(1, { groups: ['eng'] }));
  assert.equal(a.revision(), 2);
  assert.deepEqual(
    a.changesSince(1).map((c) => c.key),
    ['m00001'],
  );
  assert.throws(() => a.insertMember(member(1)), StoreConflict);
});

test('10,000 members: one transaction, allMembers, then one more insert', (t) => {
  const store = freshStore(t);
  store.insertGroup({ name: 'eng', description: '' });
  store.insertGroup({ name: 'ops', description: '' });
  const count = 10_000;
  const members = Array.from({ length: count }, (_, i) =>
    member(i, { groups: i % 2 === 0 ? ['eng'] : ['ops', 'eng'] }),
  );

  let start = performance.now();
  store.transaction(() => {
    for (const m of members) store.insertMember(m);
  });
  t.diagnostic(`insert ${count} members in one transaction: ${(performance.now() - start).toFixed(1)} ms`);

  const timings: number[] = [];
  let all: MemberRecord[] = [];
  for (let run = 0; run < 5; run++) {
    start = performance.now();
    all = store.allMembers();
    timings.push(performance.now() - start);
  }
  t.diagnostic(`allMembers() with ${count}: ${timings.map((ms) => ms.toFixed(1)).join(', ')} ms`);
  assert.equal(all.length, count);
  assert.deepEqual(all[0], members[0]);
  assert.deepEqual(all[count - 1], members[count - 1]);
  assert.deepEqual(
    all.map((m) => m.name),
    members.map((m) => m.name),
  );

  const inserts: number[] = [];
  for (let i = 0; i < 5; i++) {
    start = performance.now();
    store.insertMember(member(count + i, { groups: ['ops'] }));
    inserts.push(performance.now() - start);
  }
  t.diagnostic(`insertMember with ${count} present: ${inserts.map((ms) => ms.toFixed(2)).join(', ')} ms`);
  assert.equal(store.countMembers(), count + 5);
  assert.deepEqual(store.getMember(member(count).name), member(count, { groups: ['ops'] }));
  const newest = member(count + 4);
  assert.equal(store.getMemberByIp(newest.ip)?.name, newest.name);
  assert.equal(store.getMemberByIp(newest.ip6!)?.name, newest.name);
  assert.equal(store.groupMembers('eng').length, count);

  start = performance.now();
  const page = store.listMembers({ search: 'ops', after: 'm05000', limit: 50 });
  t.diagnostic(`listMembers search page: ${(performance.now() - start).toFixed(2)} ms`);
  assert.equal(page.length, 50);
  assert.equal(page[0]?.name, 'm05001');
});

/** How many names the writer must have acknowledged before it is killed. */
const CRASH_ACKS = 300;
const CRASH_TIMEOUT_MS = 20_000;
const CRASH_WRITER = fileURLToPath(new URL('./store-crash-writer.js', import.meta.url));

/** Runs the writer until it has acknowledged CRASH_ACKS names, SIGKILLs it, and returns what it acknowledged. */
async function writeUntilKilled(path: string, prefix: string): Promise<string[]> {
  const child = spawn(process.execPath, [CRASH_WRITER, path, prefix], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let lines = 0;
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    stdout += chunk;
    for (const c of chunk) if (c === '\n') lines++;
    if (lines >= CRASH_ACKS) child.kill('SIGKILL');
  });
  child.stderr.on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), CRASH_TIMEOUT_MS);
  try {
    const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
    assert.equal(signal, 'SIGKILL', `writer exited on its own (code ${code}): ${stderr}`);
  } finally {
    clearTimeout(timer);
  }
  // Only whole lines were acknowledged; a partial last line was being written when the kill landed.
  const acked = stdout
    .slice(0, stdout.lastIndexOf('\n') + 1)
    .split('\n')
    .slice(0, -1);
  assert.ok(
    acked.length >= CRASH_ACKS,
    `writer acknowledged ${acked.length} names in ${CRASH_TIMEOUT_MS} ms: ${stderr}`,
  );
  return acked;
}

test('kill -9 during a burst of writes loses nothing acknowledged (3 runs)', async (t) => {
  const path = join(tempDir(t), 'weft.db');
  openSqliteStore(path).close();
  const everything: string[] = [];
  for (let run = 0; run < 3; run++) {
    const acked = await writeUntilKilled(path, `r${run}-`);
    everything.push(...acked);
    const store = openSqliteStore(path);
    try {
      assert.equal(store.integrityCheck(), 'ok');
      const missing = everything.filter((name) => store.getMember(name) === undefined);
      assert.deepEqual(missing, [], `run ${run}: acknowledged but lost`);
      const stored = store.countMembers();
      assert.ok(stored >= everything.length, `${stored} stored, ${everything.length} acknowledged`);
      assert.equal(store.revision(), stored, 'every stored member has its change, and no more');
      t.diagnostic(`run ${run}: ${acked.length} acknowledged, ${stored} members stored in total`);
    } finally {
      store.close();
    }
  }
});

test('a version 4 file is migrated to version 5: sites, site statuses, and the change feed keeps its revisions', (t) => {
  const path = join(tempDir(t), 'weft.db');
  const v4 = new Database(path);
  try {
    for (const migration of MIGRATIONS.slice(0, 4)) migration(v4);
    v4.pragma('user_version = 4');
    v4.prepare('INSERT INTO settings (id, value) VALUES (1, ?)').run(JSON.stringify(SETTINGS));
    const append = v4.prepare('INSERT INTO changes (kind, key) VALUES (?, ?)');
    for (let i = 0; i < 5; i++) append.run('member', `m${i}`);
    // The oldest revisions pruned, as the feed does: revisions 4 and 5 remain, the counter stays at 5.
    v4.prepare('DELETE FROM changes WHERE rev <= 3').run();
    assert.throws(() => append.run('site', 'hq'), /CHECK constraint failed/, 'version 4 knows no site kind');
  } finally {
    v4.close();
  }
  const store = openSqliteStore(path);
  t.after(() => store.close());
  assert.equal(store.schemaVersion, SCHEMA_VERSION);
  assert.equal(store.revision(), 5);
  assert.deepEqual(
    store.changesSince(0).map((c) => [c.rev, c.kind, c.key]),
    [
      [4, 'member', 'm3'],
      [5, 'member', 'm4'],
    ],
  );
  store.insertSite(site('hq'));
  assert.deepEqual(store.changesSince(5), [{ rev: 6, kind: 'site', key: 'hq' }]);
  assert.deepEqual(store.getSite('hq'), site('hq'));
  assert.equal(store.integrityCheck(), 'ok');
});

test('a version 5 file is migrated to version 6: member statuses carry the protocol and since when', (t) => {
  const path = join(tempDir(t), 'weft.db');
  const v5 = new Database(path);
  try {
    for (const migration of MIGRATIONS.slice(0, 5)) migration(v5);
    v5.pragma('user_version = 5');
    v5.prepare(
      `INSERT INTO member_status (name, online, endpoint, last_handshake, rx_bytes, tx_bytes, policy_drops,
                                  updated_at)
       VALUES ('m00001', 1, '192.0.2.1:4000', ?, 10, 20, 0, ?)`,
    ).run(T0, T0);
  } finally {
    v5.close();
  }
  const store = openSqliteStore(path);
  t.after(() => store.close());
  assert.equal(store.schemaVersion, SCHEMA_VERSION);
  // A row from before has neither.
  assert.equal(store.getStatus('m00001')?.protocol, null);
  assert.equal(store.getStatus('m00001')?.since, null);
  assert.equal(store.getStatus('m00001')?.rxBytes, 10);
  store.putStatuses([{ ...store.getStatus('m00001')!, protocol: 'openvpn-udp', since: T0 }]);
  assert.equal(store.getStatus('m00001')?.protocol, 'openvpn-udp');
  assert.equal(store.getStatus('m00001')?.since, T0);
  assert.equal(store.integrityCheck(), 'ok');
});

test('a version 6 file is migrated to version 7: existing sites are PSK sites without certificates', (t) => {
  const path = join(tempDir(t), 'weft.db');
  const v6 = new Database(path);
  try {
    for (const migration of MIGRATIONS.slice(0, 6)) migration(v6);
    v6.pragma('user_version = 6');
    v6.prepare(
      `INSERT INTO sites (name, enabled, remote_address, local_id, remote_id, psk, force_short_psk, local_subnets,
                          remote_subnets, mode, ike_proposals, esp_proposals, allow_legacy_groups,
                          ike_lifetime_sec, child_lifetime_sec, dpd_interval_sec, dpd_action, start_action,
                          policy_groups, created_at, updated_at)
       VALUES ('hq', 1, '198.51.100.20', NULL, NULL, 'a-pre-shared-key-of-32-characters', 0, '["10.77.0.0/16"]',
               '["10.20.0.0/24"]', 'tunnel', '["aes256gcm16-prfsha256-x25519"]', '["aes256gcm16"]', 0,
               14400, 3600, 30, 'restart', 'initiate', '[]', ?, ?)`,
    ).run(T0, T0);
  } finally {
    v6.close();
  }
  const store = openSqliteStore(path);
  t.after(() => store.close());
  assert.equal(store.schemaVersion, SCHEMA_VERSION);
  const hq = store.getSite('hq');
  assert.equal(hq?.auth, 'psk');
  assert.equal(hq?.psk, 'a-pre-shared-key-of-32-characters');
  assert.equal(hq?.certificate, null);
  assert.equal(hq?.privateKey, null);
  assert.equal(hq?.caCertificates, null);
  assert.equal(store.integrityCheck(), 'ok');
});

test('a version 7 file is migrated to version 11: existing sites have no multicast ranges, keep the IKE defaults and no gateway', (t) => {
  const path = join(tempDir(t), 'weft.db');
  const v7 = new Database(path);
  try {
    for (const migration of MIGRATIONS.slice(0, 7)) migration(v7);
    v7.pragma('user_version = 7');
    v7.prepare(
      `INSERT INTO sites (name, enabled, remote_address, local_id, remote_id, psk, force_short_psk, local_subnets,
                          remote_subnets, mode, ike_proposals, esp_proposals, allow_legacy_groups,
                          ike_lifetime_sec, child_lifetime_sec, dpd_interval_sec, dpd_action, start_action,
                          policy_groups, created_at, updated_at)
       VALUES ('hq', 1, '198.51.100.20', NULL, NULL, 'a-pre-shared-key-of-32-characters', 0, '["10.77.0.0/16"]',
               '["10.20.0.0/24"]', 'tunnel', '["aes256gcm16-prfsha256-x25519"]', '["aes256gcm16"]', 0,
               14400, 3600, 30, 'restart', 'initiate', '[]', ?, ?)`,
    ).run(T0, T0);
  } finally {
    v7.close();
  }
  const store = openSqliteStore(path);
  t.after(() => store.close());
  assert.equal(store.schemaVersion, 11);
  // Version 11: a network with a site (and no member) gets the compatibility receive rule too.
  assert.deepEqual(
    store.listPolicies().map((p) => [p.action, p.group, p.destination, p.direction]),
    [['allow', '*', 'any', 'receive']],
  );
  assert.deepEqual(store.getSite('hq')?.multicast, []);
  store.updateSite({ ...store.getSite('hq')!, multicast: ['239.0.0.0/8'] });
  assert.deepEqual(store.getSite('hq')?.multicast, ['239.0.0.0/8']);
  const hq = store.getSite('hq')!;
  assert.deepEqual(
    [hq.childPerSubnetPair, hq.ikeHardLifetimeSec, hq.childHardLifetimeSec, hq.fragmentSize],
    [false, null, null, 1280],
  );
  assert.deepEqual([hq.childRekeyBytes, hq.childLifeBytes], [0, 0]);
  // Version 10: a site written before has no gateway serving it (every gateway does), and can be given one.
  assert.equal('gateway' in hq, false);
  store.updateSite({ ...hq, gateway: 'gw-b' });
  assert.equal(store.getSite('hq')?.gateway, 'gw-b');
  store.insertRoute({ cidr: '10.40.0.0/16', description: '' });
  assert.deepEqual(store.listRoutes(), [{ cidr: '10.40.0.0/16', description: '' }]);
  assert.equal(store.integrityCheck(), 'ok');
});
