/**
 * The data directory: the embedded store (weft.db, with its WAL files) and, while a server with multicast on
 * runs, its multicast status (multicast.json, multicast-status.ts). The directory is
 * 0700 and the database 0600: it holds the gateway's private key and the members' generated keys.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../control/errors.js';
import {
  isDamageError,
  openSqliteStore,
  StoreDamaged,
  StoreSchemaTooNew,
  type SqliteStore,
} from '../control/store-sqlite.js';
import type { Store } from '../control/store.js';

export const DEFAULT_DATA_DIR = '/var/lib/weft';
export const STORE_FILE = 'weft.db';

export function storePath(dir: string): string {
  return join(dir, STORE_FILE);
}

/** Exit status of every command that finds the store damaged (and of one that finds it too new). */
export const EXIT_STORE_DAMAGED = 3;

/**
 * What to tell a person whose store is damaged: what is wrong, and how to put a backup back. `dir` is
 * undefined when the damage surfaced somewhere that does not know the data directory.
 */
export function damagedStoreError(dir: string | undefined, detail: string): UserError {
  const file = dir === undefined ? 'DIR/weft.db' : storePath(dir);
  const what = dir === undefined ? 'the store' : file;
  return new UserError(
    [
      `weft: ${what} is damaged: ${detail.split('\n').slice(0, 5).join('; ')} [WEFT_ERR_STORE_DAMAGED]`,
      'Restore the latest backup (taken with `weft backup FILE`): stop `weft server run`, then',
      `  cp FILE ${file} && rm -f ${file}-wal ${file}-shm`,
      'and start the server again (docs/people-vpn.md, "Backup and restore").',
    ].join('\n'),
    EXIT_STORE_DAMAGED,
  );
}

/**
 * Opens the store of an initialised data directory, for `server run` and every other command: a file SQLite
 * cannot read, or one its quick check finds damaged, ends the command with what is wrong and what to do.
 */
export function openStore(dir: string): SqliteStore {
  if (!existsSync(storePath(dir)))
    throw new UserError(
      `weft: ${dir} holds no Weft store; create one with \`weft server init --data ${dir} ...\``,
    );
  let store: SqliteStore;
  try {
    store = openSqliteStore(storePath(dir));
  } catch (err) {
    if (err instanceof StoreDamaged) throw damagedStoreError(dir, err.detail);
    if (err instanceof StoreSchemaTooNew) throw new UserError(`weft: ${err.message}`, EXIT_STORE_DAMAGED);
    if (isDamageError(err)) throw damagedStoreError(dir, err.message);
    throw err;
  }
  const check = store.quickCheck();
  if (check !== 'ok') {
    store.close();
    throw damagedStoreError(dir, check);
  }
  return store;
}

/** A new, empty store for `server init`; an existing one is replaced only with `force`. */
export function createStore(dir: string, force: boolean): Store {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const existing = readdirSync(dir).filter((f) => f.startsWith(STORE_FILE));
  if (existing.length > 0) {
    if (!force) throw new UserError(`weft: ${dir} already holds a Weft store; use --force to replace it`);
    for (const f of existing) rmSync(join(dir, f), { force: true });
  }
  return openSqliteStore(storePath(dir));
}
