/**
 * The data directory: the embedded store (weft.db, with its WAL files), or, for a gateway on a shared
 * PostgreSQL database, the file `store-url` naming it; and, while a server with multicast on runs, its
 * multicast status (multicast.json, multicast-status.ts). The directory is 0700, the database and `store-url`
 * 0600: the one holds the gateway's private key and the members' generated keys, the other may hold the
 * database's password.
 *
 * Which store a command opens (`storeLocation`), first match wins:
 *   1. $WEFT_STORE, a postgres:// or postgresql:// URL;
 *   2. the URL in DIR/store-url (written by `weft server init --store URL` or `weft gateway join --store URL`);
 *   3. the SQLite file DIR/weft.db (the default).
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../control/errors.js';
import { isPostgresUrl, STORE_ENV } from '../control/store-open.js';
import { redactUrl, StoreUnavailable } from '../control/store-postgres.js';
import { openPostgresStoreSync } from '../control/store-postgres-sync.js';
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

/** The file in the data directory that names a shared PostgreSQL store (one line: its URL). */
export const STORE_URL_FILE = 'store-url';

export function storePath(dir: string): string {
  return join(dir, STORE_FILE);
}

/** The file holding the name this machine's gateway joined with (`weft gateway join`). */
export const GATEWAY_NAME_FILE = 'gateway-name';

/** The name this data directory's gateway joined with, if it did. */
export function joinedName(dir: string): string | undefined {
  const file = join(dir, GATEWAY_NAME_FILE);
  return existsSync(file) ? readFileSync(file, 'utf8').trim() || undefined : undefined;
}

/** Where a data directory's store is: a PostgreSQL URL, or the SQLite file. */
export type StoreLocation =
  | { readonly kind: 'postgres'; readonly url: string; readonly from: 'env' | 'file' | 'option' }
  | { readonly kind: 'sqlite'; readonly path: string };

/** Checks a `--store` / WEFT_STORE value: a PostgreSQL URL (SQLite needs no option: it is the default). */
export function postgresUrlOption(field: string, value: string): string {
  const url = value.trim();
  if (!isPostgresUrl(url))
    throw new UserError(
      `weft: ${field} must be a postgres:// or postgresql:// URL (got ${JSON.stringify(redactUrl(url))}); ` +
        'without it the store is the SQLite file in the data directory',
    );
  try {
    new URL(url);
  } catch {
    throw new UserError(`weft: ${field}: ${redactUrl(url)} is not a valid URL`);
  }
  return url;
}

/** The store a command on `dir` opens (see the header for the order). */
export function storeLocation(dir: string, env: NodeJS.ProcessEnv = process.env): StoreLocation {
  const fromEnv = env[STORE_ENV];
  if (fromEnv !== undefined && fromEnv !== '')
    return { kind: 'postgres', url: postgresUrlOption(STORE_ENV, fromEnv), from: 'env' };
  const file = join(dir, STORE_URL_FILE);
  if (existsSync(file)) {
    const text = readFileSync(file, 'utf8').trim();
    return { kind: 'postgres', url: postgresUrlOption(file, text), from: 'file' };
  }
  return { kind: 'sqlite', path: storePath(dir) };
}

/** Records a shared store for the data directory: DIR/store-url, 0600 (the URL may hold a password). */
export function recordStoreUrl(dir: string, url: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = join(dir, STORE_URL_FILE);
  writeFileSync(file, `${url}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
}

/** Opens a shared store, turning "cannot reach it" into a message for a person. */
function openShared(url: string): Store {
  try {
    return openPostgresStoreSync(url);
  } catch (err) {
    if (err instanceof StoreUnavailable) throw new UserError(`weft: ${err.message}`);
    if (err instanceof StoreSchemaTooNew) throw new UserError(`weft: ${err.message}`, EXIT_STORE_DAMAGED);
    throw err;
  }
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
export function openStore(dir: string): Store {
  const where = storeLocation(dir);
  if (where.kind === 'postgres') return openShared(where.url);
  return openSqliteDir(dir);
}

/** openStore for the SQLite store alone (`weft backup`). */
export function openSqliteDir(dir: string): SqliteStore {
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

/**
 * A new, empty store for `server init`; an existing one is replaced only with `force`. With `url` (from
 * `--store` or WEFT_STORE) the store is that PostgreSQL database, recorded in DIR/store-url; a database that
 * already holds a Weft store is refused (another gateway joins it with `weft gateway join`), and never emptied.
 */
export function createStore(dir: string, force: boolean, url?: string): Store {
  if (url !== undefined) {
    const store = openShared(url);
    if (store.getSettings() !== undefined) {
      store.close();
      throw new UserError(
        `weft: ${redactUrl(url)} already holds a Weft store (--force does not empty a shared database); ` +
          `to run another gateway on it: weft gateway join --store URL --data ${dir}`,
      );
    }
    const sqlite = existsSync(dir) && readdirSync(dir).some((f) => f.startsWith(STORE_FILE));
    if (sqlite && !force) {
      store.close();
      throw new UserError(`weft: ${dir} already holds a Weft store; use --force to replace it`);
    }
    recordStoreUrl(dir, url);
    return store;
  }
  if (existsSync(join(dir, STORE_URL_FILE)) && !force)
    throw new UserError(
      `weft: ${dir} already names a shared store (${STORE_URL_FILE}); use --force to replace it with a SQLite one`,
    );
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const existing = readdirSync(dir).filter((f) => f.startsWith(STORE_FILE));
  if (existing.length > 0) {
    if (!force) throw new UserError(`weft: ${dir} already holds a Weft store; use --force to replace it`);
    for (const f of existing) rmSync(join(dir, f), { force: true });
  }
  rmSync(join(dir, STORE_URL_FILE), { force: true });
  return openSqliteStore(storePath(dir));
}
