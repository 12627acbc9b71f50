/**
 * The async Store conformance suite (test/support/store-conformance-async.ts) against the SQLite store through
 * the async adapter (src/control/store-async.ts), on a real file in a fresh temporary directory; after each case
 * the file is reopened and must pass SQLite's integrity check. Its migration case opens a file written at
 * schema version 10 with the migrations of that version. The PostgreSQL run of the same suite is
 * test/interop/store-postgres.test.ts (it starts a server, which needs root).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { asyncStore } from '../../src/control/store-async.js';
import { isPostgresUrl, openStore } from '../../src/control/store-open.js';
import Database from 'better-sqlite3';
import { MIGRATIONS, openSqliteStore } from '../../src/control/store-sqlite.js';
import { openMemoryStore } from '../support/memory-store.js';
import { asyncStoreConformance, type OpenedAsyncStore } from '../support/store-conformance-async.js';
import { member } from '../support/store-conformance.js';

/** A file at schema version 10 (see OpenAtVersion10), written with plain SQL as that version left it. */
function writeVersion10(path: string, seed: { readonly member: boolean }): void {
  const db = new Database(path);
  try {
    for (const migration of MIGRATIONS.slice(0, 10)) migration(db);
    db.pragma('user_version = 10');
    if (seed.member) {
      const m = member(1);
      db.prepare(
        `INSERT INTO members (name, ip, ip6, public_key, private_key, disabled, expires_at, full_tunnel,
                              created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, NULL, 0, ?, ?)`,
      ).run(m.name, m.ip, m.ip6, m.publicKey, m.privateKey, m.createdAt, m.updatedAt);
    }
    db.prepare(
      `INSERT INTO policies (action, grp, destination, proto, port_from, port_to)
       VALUES ('allow', 'eng', '10.20.0.0/16', 'tcp', 22, 22)`,
    ).run();
  } finally {
    db.close();
  }
}

async function openSqlite(seed?: { readonly member: boolean }): Promise<OpenedAsyncStore> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-conformance-async-'));
  const path = join(dir, 'weft.db');
  let sqlite;
  try {
    if (seed) writeVersion10(path, seed);
    sqlite = openSqliteStore(path);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const store = asyncStore(sqlite);
  return {
    store,
    close: async () => {
      try {
        await store.close();
        const again = openSqliteStore(path);
        try {
          assert.equal(again.integrityCheck(), 'ok');
        } finally {
          again.close();
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

asyncStoreConformance('SqliteStore through asyncStore', () => openSqlite(), openSqlite);

describe('asyncStore adapter', () => {
  it('refuses a transaction on a store that cannot keep one open across awaits, and runs nothing', async () => {
    const memory = openMemoryStore();
    const store = asyncStore(memory);
    let ran = false;
    await assert.rejects(
      store.transaction(async () => {
        ran = true;
      }),
      TypeError,
    );
    assert.equal(ran, false);
    await store.insertGroup({ name: 'eng', description: '' });
    assert.deepEqual(await store.getGroup('eng'), { name: 'eng', description: '' }, 'other calls work');
    await store.close();
  });

  it('queues outside callers behind an open transaction, in order, and lets the transaction finish', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-adapter-'));
    try {
      const store = asyncStore(openSqliteStore(join(dir, 'weft.db')));
      const order: string[] = [];
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const tx = store.transaction(async () => {
        await store.insertGroup({ name: 'a', description: '' });
        await gate;
        await store.insertGroup({ name: 'b', description: '' });
        order.push('tx');
      });
      const second = store.transaction(async () => {
        order.push('second');
        return (await store.listGroups()).map((g) => g.name);
      });
      const read = store.listGroups().then((groups) => {
        order.push('read');
        return groups.map((g) => g.name);
      });
      release();
      await tx;
      assert.deepEqual(await second, ['a', 'b']);
      assert.deepEqual(await read, ['a', 'b']);
      assert.deepEqual(order.slice(0, 1), ['tx'], 'nothing ran inside the open transaction but itself');
      await store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('openStore', () => {
  it('opens a SQLite file for a path, from the argument, then WEFT_STORE, then the fallback', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-open-'));
    try {
      const given = await openStore(join(dir, 'given.db'), join(dir, 'fallback.db'), {
        WEFT_STORE: join(dir, 'env.db'),
      });
      await given.insertGroup({ name: 'given', description: '' });
      await given.close();
      const fromEnv = await openStore(undefined, join(dir, 'fallback.db'), {
        WEFT_STORE: join(dir, 'env.db'),
      });
      await fromEnv.insertGroup({ name: 'env', description: '' });
      await fromEnv.close();
      const fallback = await openStore(undefined, join(dir, 'fallback.db'), { WEFT_STORE: '' });
      assert.equal(await fallback.revision(), 0);
      await fallback.close();
      for (const [file, group] of [
        ['given.db', 'given'],
        ['env.db', 'env'],
      ] as const) {
        const sqlite = openSqliteStore(join(dir, file));
        assert.deepEqual(sqlite.listGroups(), [{ name: group, description: '' }], file);
        sqlite.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('takes postgres:// and postgresql:// URLs for PostgreSQL, and nothing else', () => {
    assert.equal(isPostgresUrl('postgres://weft@db.example/weft'), true);
    assert.equal(isPostgresUrl('postgresql://weft@db.example/weft'), true);
    assert.equal(isPostgresUrl('POSTGRES://weft@db.example/weft'), true);
    assert.equal(isPostgresUrl('/var/lib/weft/weft.db'), false);
    assert.equal(isPostgresUrl('./postgres://x'), false);
    assert.equal(isPostgresUrl('postgres.db'), false);
  });
});
