/**
 * The data directory: the embedded store (weft.db, with its WAL files) and nothing else. The directory is
 * 0700 and the database 0600: it holds the gateway's private key and the members' generated keys.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../control/errors.js';
import { openSqliteStore } from '../control/store-sqlite.js';
import type { Store } from '../control/store.js';

export const DEFAULT_DATA_DIR = '/var/lib/weft';
export const STORE_FILE = 'weft.db';

export function storePath(dir: string): string {
  return join(dir, STORE_FILE);
}

/** Opens the store of an initialised data directory. */
export function openStore(dir: string): Store {
  if (!existsSync(storePath(dir)))
    throw new UserError(
      `weft: ${dir} holds no Weft store; create one with \`weft server init --data ${dir} ...\``,
    );
  return openSqliteStore(storePath(dir));
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
