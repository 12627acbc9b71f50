/**
 * Chooses the store implementation from where the store is: a `postgres://` or `postgresql://` URL opens the
 * PostgreSQL store (store-postgres.ts), anything else is the path of a SQLite file (store-sqlite.ts), presented
 * through the async adapter (store-async.ts). A library function: `weft server` and the CLI open the SQLite
 * store directly and do not call it yet.
 */
import { asyncStore, type AsyncStore } from './store-async.js';
import { openPostgresStore } from './store-postgres.js';
import { openSqliteStore } from './store-sqlite.js';

/** The environment variable naming the store when no location is given. */
export const STORE_ENV = 'WEFT_STORE';

export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

/**
 * Opens the store at `location` (a PostgreSQL URL or a SQLite path); without one, at $WEFT_STORE; without
 * either, at `fallbackPath` (a SQLite file).
 */
export async function openStore(
  location: string | undefined,
  fallbackPath: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<AsyncStore> {
  const where =
    location ?? (env[STORE_ENV] !== undefined && env[STORE_ENV] !== '' ? env[STORE_ENV] : fallbackPath);
  if (isPostgresUrl(where)) return openPostgresStore(where);
  return asyncStore(openSqliteStore(where));
}
