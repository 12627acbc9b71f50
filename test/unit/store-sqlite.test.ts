/**
 * The SQLite store (src/control/store-sqlite.ts) against real files in a fresh temporary directory: file mode
 * and journal mode, migrations and the schema-version guard, every method of the Store interface, unique
 * conflicts, cascades, the change feed (including rollback and pruning), pagination and search, traffic
 * buckets, a 10,000-member store, and kill -9 during a burst of writes.
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
import type { MemberRecord, Settings } from '../../src/control/model.js';
import { StoreConflict } from '../../src/control/store.js';
import {
  SCHEMA_VERSION,
  SqliteStore,
  StoreSchemaTooNew,
  openSqliteStore,
} from '../../src/control/store-sqlite.js';

const T0 = '2024-05-01T12:00:00.000Z';
const T1 = '2024-05-01T12:01:00.000Z';
const T2 = '2024-05-01T12:02:00.000Z';

const SETTINGS: Settings = {
  endpoint: 'vpn.example.com:51820',
  listenPort: 51820,
  interfaceName: 'weft0',
  subnet: '10.77.0.0/16',
  subnet6: 'fd00:77::/64',
  dns: ['10.77.0.1', '1.1.1.1'],
  natEgress: 'eth0',
  defaultPolicy: 'deny',
  persistentKeepalive: 25,
  mtu: 1420,
  apiListen: '127.0.0.1:8080',
};

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

function member(i: number, overrides: Partial<MemberRecord> = {}): MemberRecord {
  const name = overrides.name ?? `m${String(i).padStart(5, '0')}`;
  return {
    name,
    ip: `10.77.${(i >> 8) & 255}.${i & 255}`,
    ip6: `fd00:77::${i.toString(16)}`,
    publicKey: Buffer.from(`pub-${i}`.padEnd(32, '.')).toString('base64'),
    hasPrivateKey: true,
    privateKey: Buffer.from(`priv-${i}`.padEnd(32, '.')).toString('base64'),
    groups: [],
    disabled: false,
    expiresAt: null,
    fullTunnel: false,
    createdAt: T0,
    updatedAt: T0,
    ...overrides,
  };
}

function conflictNaming(column: string): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof StoreConflict, `expected StoreConflict, got ${String(err)}`);
    assert.match(err.message, new RegExp(column.replace('.', '\\.')));
    return true;
  };
}

/** Deterministic shuffle, so insertion order differs from name order. */
function shuffled<T>(items: readonly T[], seed = 1): T[] {
  const out = [...items];
  let x = seed;
  for (let i = out.length - 1; i > 0; i--) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
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
      'groups',
      'member_groups',
      'member_status',
      'members',
      'policies',
      'routes',
      'secrets',
      'settings',
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

test('settings and secrets', (t) => {
  const store = freshStore(t);
  assert.equal(store.getSettings(), undefined);
  store.putSettings(SETTINGS);
  assert.deepEqual(store.getSettings(), SETTINGS);
  const changed: Settings = { ...SETTINGS, mtu: 1380, natEgress: null, subnet6: null };
  store.putSettings(changed);
  assert.deepEqual(store.getSettings(), changed);

  assert.equal(store.getSecret('gateway.key'), undefined);
  store.putSecret('gateway.key', 'a');
  store.putSecret('session.key', 'b');
  store.putSecret('gateway.key', 'c');
  assert.equal(store.getSecret('gateway.key'), 'c');
  assert.equal(store.getSecret('session.key'), 'b');
  assert.deepEqual(
    store.changesSince(0).map((c) => [c.kind, c.key]),
    [
      ['settings', ''],
      ['settings', ''],
    ],
    'secrets are not part of the change feed',
  );
});

test('members: insert, the three lookups, update, delete, usedIps', (t) => {
  const store = freshStore(t);
  store.insertGroup({ name: 'eng', description: '' });
  store.insertGroup({ name: 'ops', description: '' });
  store.insertGroup({ name: 'admins', description: '' });

  const alice = member(1, { name: 'alice', groups: ['ops', 'eng'] });
  const bob = member(2, { name: 'bob', ip6: null, privateKey: null, hasPrivateKey: false, fullTunnel: true });
  store.insertMember(alice);
  store.insertMember(bob);

  assert.deepEqual(store.getMember('alice'), alice, 'groups come back in the order given');
  assert.deepEqual(store.getMember('bob'), bob);
  assert.equal(store.getMember('carol'), undefined);
  assert.equal(store.getMemberByIp(alice.ip)?.name, 'alice');
  assert.equal(store.getMemberByIp(alice.ip6 ?? '')?.name, 'alice', 'IPv6 addresses are found too');
  assert.equal(store.getMemberByIp('10.99.0.1'), undefined);
  assert.equal(store.getMemberByPublicKey(bob.publicKey)?.name, 'bob');
  assert.equal(store.getMemberByPublicKey('nope'), undefined);
  assert.equal(store.getMember('bob')?.hasPrivateKey, false);
  assert.equal(store.countMembers(), 2);
  assert.deepEqual(
    store.allMembers().map((m) => m.name),
    ['alice', 'bob'],
  );
  assert.deepEqual(store.usedIps(), new Set([alice.ip, alice.ip6, bob.ip]));

  const alice2: MemberRecord = {
    ...alice,
    ip: '10.77.9.9',
    ip6: null,
    groups: ['admins', 'eng'],
    disabled: true,
    expiresAt: T2,
    fullTunnel: true,
    privateKey: null,
    hasPrivateKey: false,
    updatedAt: T1,
  };
  assert.equal(store.updateMember(alice2), true);
  assert.deepEqual(store.getMember('alice'), alice2);
  assert.equal(store.getMemberByIp(alice.ip), undefined, 'the old address is free again');
  assert.deepEqual(store.groupMembers('ops'), []);
  assert.deepEqual(store.groupMembers('eng'), ['alice']);
  assert.equal(store.updateMember(member(3, { name: 'carol' })), false);
  assert.equal(store.getMember('carol'), undefined);

  assert.equal(store.deleteMember('alice'), true);
  assert.equal(store.deleteMember('alice'), false);
  assert.equal(store.getMember('alice'), undefined);
  assert.deepEqual(store.usedIps(), new Set([bob.ip]));
  assert.equal(store.countMembers(), 1);
});

test('unique violations throw StoreConflict naming the column, and leave nothing behind', (t) => {
  const store = freshStore(t);
  store.insertGroup({ name: 'eng', description: '' });
  store.insertMember(member(1, { groups: ['eng'] }));
  const rev = store.revision();
  const fresh = member(2);

  assert.throws(() => store.insertMember({ ...fresh, name: 'm00001' }), conflictNaming('members.name'));
  assert.throws(() => store.insertMember({ ...fresh, ip: member(1).ip }), conflictNaming('members.ip'));
  assert.throws(() => store.insertMember({ ...fresh, ip6: member(1).ip6 }), conflictNaming('members.ip6'));
  assert.throws(
    () => store.insertMember({ ...fresh, publicKey: member(1).publicKey }),
    conflictNaming('members.public_key'),
  );
  assert.throws(
    () => store.insertMember({ ...fresh, groups: ['eng', 'ghosts'] }),
    (err: unknown) => {
      assert.ok(err instanceof StoreConflict);
      assert.match(err.message, /ghosts/);
      return true;
    },
  );
  assert.throws(
    () => store.insertGroup({ name: 'eng', description: 'again' }),
    conflictNaming('groups.name'),
  );
  store.insertRoute({ cidr: '10.20.0.0/16', description: 'vpc' });
  assert.throws(
    () => store.insertRoute({ cidr: '10.20.0.0/16', description: '' }),
    conflictNaming('routes.cidr'),
  );
  store.insertToken('ci', 'hash-1', T0);
  assert.throws(() => store.insertToken('other', 'hash-1', T0), conflictNaming('tokens.hash'));

  // Two members may both have no IPv6 address.
  store.insertMember({ ...fresh, ip6: null });
  store.insertMember({ ...member(3), ip6: null });

  store.insertMember(member(4));
  assert.throws(() => store.updateMember({ ...member(4), ip: member(1).ip }), conflictNaming('members.ip'));
  assert.deepEqual(store.getMember('m00004'), member(4), 'a failed update changes nothing');
  assert.throws(() => store.updateMember({ ...member(4), groups: ['ghosts'] }), StoreConflict);
  assert.deepEqual(store.getMember('m00004'), member(4), 'not even the groups');

  assert.equal(store.getMember('m00002')?.ip6, null);
  assert.deepEqual(
    store.changesSince(rev).map((c) => [c.kind, c.key]),
    [
      ['route', '10.20.0.0/16'],
      ['member', 'm00002'],
      ['member', 'm00003'],
      ['member', 'm00004'],
    ],
    'failed mutations append no change',
  );
  assert.equal(store.integrityCheck(), 'ok');
});

test('deleting a member removes its group memberships; deleting a group removes it from its members', (t) => {
  const store = freshStore(t);
  store.insertGroup({ name: 'eng', description: '' });
  store.insertGroup({ name: 'ops', description: '' });
  store.insertMember(member(1, { groups: ['eng', 'ops'] }));
  store.insertMember(member(2, { groups: ['eng'] }));
  store.insertMember(member(3, { groups: [] }));
  assert.deepEqual(store.groupMembers('eng'), ['m00001', 'm00002']);

  assert.equal(store.deleteMember('m00001'), true);
  assert.deepEqual(store.groupMembers('eng'), ['m00002']);
  assert.deepEqual(store.groupMembers('ops'), []);
  const path = store.path;
  const raw = new Database(path);
  try {
    assert.equal(raw.prepare('SELECT count(*) FROM member_groups').pluck().get(), 1);
  } finally {
    raw.close();
  }

  const rev = store.revision();
  assert.equal(store.deleteGroup('eng'), true);
  assert.equal(store.deleteGroup('eng'), false);
  assert.deepEqual(store.getMember('m00002')?.groups, []);
  assert.deepEqual(
    store.changesSince(rev).map((c) => [c.kind, c.key]),
    [
      ['group', 'eng'],
      ['member', 'm00002'],
    ],
  );
});

test('groups, routes and policies', (t) => {
  const store = freshStore(t);
  assert.deepEqual(store.listGroups(), []);
  store.insertGroup({ name: 'ops', description: 'Operations' });
  store.insertGroup({ name: 'eng', description: 'Engineering' });
  assert.deepEqual(store.listGroups(), [
    { name: 'eng', description: 'Engineering' },
    { name: 'ops', description: 'Operations' },
  ]);
  assert.deepEqual(store.getGroup('ops'), { name: 'ops', description: 'Operations' });
  assert.equal(store.getGroup('sales'), undefined);
  assert.equal(store.updateGroup({ name: 'ops', description: 'SRE' }), true);
  assert.equal(store.updateGroup({ name: 'sales', description: '' }), false);
  assert.equal(store.getGroup('ops')?.description, 'SRE');
  assert.deepEqual(store.groupMembers('nope'), []);

  store.insertRoute({ cidr: '192.168.10.0/24', description: 'office' });
  store.insertRoute({ cidr: '10.20.0.0/16', description: 'vpc' });
  assert.deepEqual(store.listRoutes(), [
    { cidr: '10.20.0.0/16', description: 'vpc' },
    { cidr: '192.168.10.0/24', description: 'office' },
  ]);
  assert.equal(store.deleteRoute('10.20.0.0/16'), true);
  assert.equal(store.deleteRoute('10.20.0.0/16'), false);
  assert.deepEqual(store.listRoutes(), [{ cidr: '192.168.10.0/24', description: 'office' }]);

  const p1 = store.insertPolicy({
    action: 'allow',
    group: 'eng',
    destination: '10.20.0.0/16',
    proto: 'tcp',
    ports: { from: 22, to: 22 },
  });
  const p2 = store.insertPolicy({
    action: 'deny',
    group: '*',
    destination: 'any',
    proto: 'any',
    ports: null,
  });
  const p3 = store.insertPolicy({
    action: 'allow',
    group: 'ops',
    destination: 'group:eng',
    proto: 'udp',
    ports: { from: 5000, to: 5100 },
  });
  assert.ok(p1.id < p2.id && p2.id < p3.id);
  assert.deepEqual(store.listPolicies(), [p1, p2, p3], 'policies keep their insertion order');
  assert.deepEqual(p3.ports, { from: 5000, to: 5100 });
  assert.equal(store.deletePolicy(p2.id), true);
  assert.equal(store.deletePolicy(p2.id), false);
  assert.deepEqual(store.listPolicies(), [p1, p3]);
  const p4 = store.insertPolicy({
    action: 'deny',
    group: '*',
    destination: 'any',
    proto: 'icmp',
    ports: null,
  });
  assert.ok(p4.id > p3.id, 'a deleted policy id is not reused');
});

test('change feed: revisions grow, kinds and keys in order, rollback appends nothing', (t) => {
  const store = freshStore(t);
  assert.equal(store.revision(), 0);
  assert.deepEqual(store.changesSince(0), []);

  store.putSettings(SETTINGS);
  store.insertGroup({ name: 'eng', description: '' });
  store.insertMember(member(1, { groups: ['eng'] }));
  store.updateMember(member(1, { disabled: true }));
  store.insertRoute({ cidr: '10.20.0.0/16', description: '' });
  const policy = store.insertPolicy({
    action: 'deny',
    group: '*',
    destination: 'any',
    proto: 'any',
    ports: null,
  });
  store.updateGroup({ name: 'eng', description: 'Engineering' });
  store.deletePolicy(policy.id);
  store.deleteRoute('10.20.0.0/16');
  store.deleteMember('m00001');
  store.deleteGroup('eng');
  // Misses change nothing, so they append nothing.
  store.deleteMember('m00001');
  store.updateGroup({ name: 'eng', description: '' });
  store.deletePolicy(policy.id);
  // Neither do the tables outside the feed.
  store.appendAudit({ at: T0, actor: 'cli:root', action: 'member.add', target: 'm00001', detail: {} });
  store.putStatuses([]);

  const expected = [
    ['settings', ''],
    ['group', 'eng'],
    ['member', 'm00001'],
    ['member', 'm00001'],
    ['route', '10.20.0.0/16'],
    ['policy', String(policy.id)],
    ['group', 'eng'],
    ['policy', String(policy.id)],
    ['route', '10.20.0.0/16'],
    ['member', 'm00001'],
    ['group', 'eng'],
  ];
  const all = store.changesSince(0);
  assert.deepEqual(
    all.map((c) => [c.kind, c.key]),
    expected,
  );
  assert.deepEqual(
    all.map((c) => c.rev),
    expected.map((_, i) => i + 1),
  );
  assert.equal(store.revision(), expected.length);
  assert.deepEqual(
    store.changesSince(4, 3).map((c) => c.rev),
    [5, 6, 7],
  );
  assert.deepEqual(store.changesSince(expected.length), []);

  const before = store.revision();
  assert.throws(
    () =>
      store.transaction(() => {
        store.insertGroup({ name: 'sales', description: '' });
        store.insertMember(member(2, { groups: ['sales'] }));
        store.putSettings({ ...SETTINGS, mtu: 1280 });
        throw new Error('abort');
      }),
    /abort/,
  );
  assert.equal(store.revision(), before);
  assert.deepEqual(store.changesSince(before), []);
  assert.equal(store.getGroup('sales'), undefined);
  assert.equal(store.getMember('m00002'), undefined);
  assert.equal(store.getSettings()?.mtu, SETTINGS.mtu);

  // The next revision follows on directly: a rolled-back transaction leaves no gap.
  store.insertGroup({ name: 'sales', description: '' });
  assert.deepEqual(store.changesSince(before), [{ rev: before + 1, kind: 'group', key: 'sales' }]);
});

test('transaction: returns its value, nested calls join the outer one, inner failures roll back alone', (t) => {
  const store = freshStore(t);
  const value = store.transaction(() => {
    store.insertGroup({ name: 'a', description: '' });
    assert.throws(() =>
      store.transaction(() => {
        store.insertGroup({ name: 'b', description: '' });
        throw new Error('inner');
      }),
    );
    // A conflicting insert inside a transaction fails on its own, too.
    assert.throws(() => store.insertGroup({ name: 'a', description: '' }), StoreConflict);
    store.transaction(() => store.insertGroup({ name: 'c', description: '' }));
    return 42;
  });
  assert.equal(value, 42);
  assert.deepEqual(
    store.listGroups().map((g) => g.name),
    ['a', 'c'],
  );
  assert.deepEqual(
    store.changesSince(0).map((c) => c.key),
    ['a', 'c'],
  );

  assert.throws(() =>
    store.transaction(() => {
      store.transaction(() => store.insertGroup({ name: 'd', description: '' }));
      throw new Error('outer');
    }),
  );
  assert.equal(store.getGroup('d'), undefined, 'an inner transaction commits only with the outer one');
  assert.throws(
    () =>
      store.transaction(async () => {
        store.insertGroup({ name: 'e', description: '' });
      }),
    TypeError,
  );
  assert.equal(store.getGroup('e'), undefined, 'an async function is refused and its writes rolled back');
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

test('listMembers: pages over 2,500 members visit each exactly once, in name order', (t) => {
  const store = freshStore(t);
  const members = Array.from({ length: 2500 }, (_, i) => member(i));
  store.transaction(() => {
    for (const m of shuffled(members)) store.insertMember(m);
  });
  const names = members.map((m) => m.name).sort();
  assert.equal(store.countMembers(), 2500);

  for (const limit of [100, 7, 2500, 5000]) {
    const seen: string[] = [];
    let after: string | undefined;
    for (let pages = 0; pages < 1000; pages++) {
      const page = store.listMembers({ after, limit });
      assert.ok(page.length <= limit);
      if (page.length === 0) break;
      seen.push(...page.map((m) => m.name));
      after = page.at(-1)?.name;
    }
    assert.deepEqual(seen, names, `limit ${limit}`);
  }
  assert.deepEqual(store.listMembers({ limit: 0 }), []);
  assert.deepEqual(store.listMembers({ limit: -1 }), [], 'a negative limit is not "no limit"');
  assert.deepEqual(store.listMembers({ after: names.at(-1), limit: 10 }), []);
  assert.deepEqual(store.listMembers({ after: 'm01000', limit: 1 })[0], member(1001));
});

test('listMembers/countMembers search: name, ip, ip6 and group names, case-insensitively', (t) => {
  const store = freshStore(t);
  store.insertGroup({ name: 'Engineering', description: '' });
  store.insertGroup({ name: 'ops', description: '' });
  store.insertGroup({ name: '100%_club', description: '' });
  const members = Array.from({ length: 300 }, (_, i) =>
    member(i, { groups: i % 3 === 0 ? ['Engineering'] : i % 3 === 1 ? ['ops'] : [] }),
  );
  store.transaction(() => {
    for (const m of members) store.insertMember(m);
    store.insertMember(member(1000, { name: 'Alice-Admin', groups: ['100%_club'] }));
  });

  const names = (search: string, limit = 1000, after?: string): string[] =>
    store.listMembers({ search, limit, after }).map((m) => m.name);

  assert.deepEqual(names('alice'), ['Alice-Admin']);
  assert.deepEqual(names('ADMIN'), ['Alice-Admin']);
  const eng = members.filter((_, i) => i % 3 === 0).map((m) => m.name);
  assert.deepEqual(names('engineer'), eng, 'by group name, any case');
  assert.equal(store.countMembers('ENGINEER'), eng.length);
  assert.deepEqual(
    names('OPS'),
    members.filter((_, i) => i % 3 === 1).map((m) => m.name),
  );
  assert.deepEqual(names('10.77.0.42'), ['m00042'], 'by IPv4 address');
  assert.deepEqual(names('10.77.0.25'), [
    'm00025',
    'm00250',
    'm00251',
    'm00252',
    'm00253',
    'm00254',
    'm00255',
  ]);
  assert.deepEqual(names('FD00:77::12B'), ['m00299'], 'by IPv6 address, any case');
  assert.deepEqual(names('%'), ['Alice-Admin'], 'LIKE wildcards are matched literally');
  assert.deepEqual(names('0%_c'), ['Alice-Admin']);
  assert.deepEqual(names('_'), ['Alice-Admin']);
  assert.equal(store.countMembers('%'), 1);
  assert.deepEqual(names('no such member'), []);
  assert.equal(store.countMembers('no such member'), 0);
  assert.equal(store.countMembers(''), 301);
  assert.equal(names('').length, 301, 'an empty search is no search');

  // Pages of a search.
  const seen: string[] = [];
  let after: string | undefined;
  for (let pages = 0; pages < 100; pages++) {
    const page = names('engineering', 9, after);
    if (page.length === 0) break;
    seen.push(...page);
    after = page.at(-1);
  }
  assert.deepEqual(seen, eng);
});

test('audit log: newest first, before, limit and target; detail round-trips as JSON', (t) => {
  const store = freshStore(t);
  const detail = { ip: '10.77.0.2', groups: ['eng'], nested: { n: 1, ok: true, none: null } };
  const a1 = store.appendAudit({ at: T0, actor: 'cli:root', action: 'member.add', target: 'alice', detail });
  const a2 = store.appendAudit({
    at: T1,
    actor: 'token:ci',
    action: 'member.add',
    target: 'bob',
    detail: {},
  });
  const a3 = store.appendAudit({
    at: T2,
    actor: 'admin',
    action: 'member.disable',
    target: 'alice',
    detail: {},
  });
  assert.deepEqual(a1, {
    id: a1.id,
    at: T0,
    actor: 'cli:root',
    action: 'member.add',
    target: 'alice',
    detail,
  });
  assert.ok(a1.id < a2.id && a2.id < a3.id);

  assert.deepEqual(store.listAudit({ limit: 10 }), [a3, a2, a1]);
  assert.deepEqual(store.listAudit({ limit: 2 }), [a3, a2]);
  assert.deepEqual(store.listAudit({ limit: 10, before: a3.id }), [a2, a1]);
  assert.deepEqual(store.listAudit({ limit: 10, before: a1.id }), []);
  assert.deepEqual(store.listAudit({ limit: 10, target: 'alice' }), [a3, a1]);
  assert.deepEqual(store.listAudit({ limit: 10, target: 'alice', before: a3.id }), [a1]);
  assert.deepEqual(store.listAudit({ limit: 10, target: 'carol' }), []);
});

test('API tokens: insert, find by hash, touch, list, delete', (t) => {
  const store = freshStore(t);
  const ci = store.insertToken('ci', 'hash-ci', T0);
  const ops = store.insertToken('ops', 'hash-ops', T1);
  assert.deepEqual(ci, { id: ci.id, name: 'ci', createdAt: T0, lastUsedAt: null });
  assert.notEqual(ci.id, ops.id);
  assert.deepEqual(store.findToken('hash-ci'), ci);
  assert.equal(store.findToken('hash-nope'), undefined);
  store.touchToken(ci.id, T2);
  assert.deepEqual(store.findToken('hash-ci'), { ...ci, lastUsedAt: T2 });
  assert.deepEqual(store.listTokens(), [{ ...ci, lastUsedAt: T2 }, ops]);
  assert.equal(store.deleteToken(ci.id), true);
  assert.equal(store.deleteToken(ci.id), false);
  assert.equal(store.findToken('hash-ci'), undefined);
  assert.deepEqual(store.listTokens(), [ops]);
});

test('admin accounts', (t) => {
  const store = freshStore(t);
  assert.equal(store.getAdmin('admin'), undefined);
  const account = { username: 'admin', passwordHash: 'scrypt$16384$8$1$c2FsdA==$aGFzaA==', totpSecret: null };
  store.putAdmin(account);
  assert.deepEqual(store.getAdmin('admin'), account);
  const withTotp = { ...account, totpSecret: 'JBSWY3DPEHPK3PXP' };
  store.putAdmin(withTotp);
  assert.deepEqual(store.getAdmin('admin'), withTotp);
  assert.equal(store.getAdmin('root'), undefined);
});

test('member statuses: putStatuses upserts many rows at once', (t) => {
  const store = freshStore(t);
  const alice = {
    name: 'alice',
    online: true,
    endpoint: '198.51.100.7:41641',
    lastHandshake: T0,
    rxBytes: 1000,
    txBytes: 2000,
    policyDrops: 3,
    updatedAt: T0,
  };
  const bob = { ...alice, name: 'bob', online: false, endpoint: null, lastHandshake: null, rxBytes: 0 };
  store.putStatuses([bob, alice]);
  assert.deepEqual(store.getStatus('alice'), alice);
  assert.deepEqual(store.allStatuses(), [alice, bob]);
  const alice2 = { ...alice, online: false, rxBytes: 5_000_000_000, updatedAt: T1 };
  store.putStatuses([alice2]);
  assert.deepEqual(store.allStatuses(), [alice2, bob]);
  assert.equal(store.getStatus('carol'), undefined);
});

test('traffic: buckets add up, since filters, "" sums every member', (t) => {
  const store = freshStore(t);
  store.addTraffic([
    { name: 'alice', at: T0, rxBytes: 100, txBytes: 10 },
    { name: 'alice', at: T1, rxBytes: 200, txBytes: 20 },
    { name: 'bob', at: T1, rxBytes: 1000, txBytes: 1 },
  ]);
  store.addTraffic([
    { name: 'alice', at: T1, rxBytes: 5, txBytes: 5 },
    { name: 'bob', at: T2, rxBytes: 7, txBytes: 0 },
  ]);
  assert.deepEqual(store.traffic('alice', T0), [
    { name: 'alice', at: T0, rxBytes: 100, txBytes: 10 },
    { name: 'alice', at: T1, rxBytes: 205, txBytes: 25 },
  ]);
  assert.deepEqual(store.traffic('alice', T1), [{ name: 'alice', at: T1, rxBytes: 205, txBytes: 25 }]);
  assert.deepEqual(store.traffic('alice', T2), []);
  assert.deepEqual(store.traffic('carol', T0), []);
  assert.deepEqual(store.traffic('', T0), [
    { name: '', at: T0, rxBytes: 100, txBytes: 10 },
    { name: '', at: T1, rxBytes: 1205, txBytes: 26 },
    { name: '', at: T2, rxBytes: 7, txBytes: 0 },
  ]);
  assert.deepEqual(store.traffic('', T2), [{ name: '', at: T2, rxBytes: 7, txBytes: 0 }]);
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
  assert.equal(store.usedIps().size, 2 * (count + 5));
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
