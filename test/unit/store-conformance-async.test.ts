/**
 * The async Store conformance suite (test/support/store-conformance-async.ts) against the SQLite store through
 * the async adapter (src/control/store-async.ts), on a real file in a fresh temporary directory; after each case
 * the file is reopened and must pass SQLite's integrity check. The PostgreSQL run of the same suite is
 * test/interop/store-postgres.test.ts (it starts a server, which needs root).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { asyncStore } from '../../src/control/store-async.js';
import { openSqliteStore } from '../../src/control/store-sqlite.js';
import { openMemoryStore } from '../support/memory-store.js';
import { asyncStoreConformance } from '../support/store-conformance-async.js';

asyncStoreConformance('SqliteStore through asyncStore', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-conformance-async-'));
  const path = join(dir, 'weft.db');
  let sqlite;
  try {
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
});

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
