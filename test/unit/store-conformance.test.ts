/**
 * The Store conformance suite (test/support/store-conformance.ts) against every Store implementation:
 *   - the SQLite store, on a real file in a fresh temporary directory; after each case the file is reopened
 *     and must pass SQLite's integrity check, then the directory is removed;
 *   - the in-memory store of the unit tests (test/support/memory-store.ts), so that tests written against
 *     it hold for the real one.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqliteStore, type SqliteStore } from '../../src/control/store-sqlite.js';
import { openMemoryStore } from '../support/memory-store.js';
import { storeConformance } from '../support/store-conformance.js';

storeConformance('SqliteStore', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-conformance-'));
  const path = join(dir, 'weft.db');
  let store: SqliteStore;
  try {
    store = openSqliteStore(path);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    store,
    close: () => {
      try {
        store.close();
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

storeConformance('MemoryStore', () => {
  const store = openMemoryStore();
  return { store, close: () => store.close() };
});
