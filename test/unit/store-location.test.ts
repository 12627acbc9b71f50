/**
 * Which store a data directory's commands open (src/server/data-dir.ts): SQLite by default, $WEFT_STORE first,
 * then DATA/store-url; bad values are refused with the field named and the password hidden; store-url is 0600.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { UserError } from '../../src/control/errors.js';
import { recordStoreUrl, storeLocation, storePath, STORE_URL_FILE } from '../../src/server/data-dir.js';

const root = mkdtempSync(join(tmpdir(), 'weft-location-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(root, `d${++n}`);

describe('store location', () => {
  it('defaults to the SQLite file in the data directory', () => {
    const dir = fresh();
    assert.deepEqual(storeLocation(dir, {}), { kind: 'sqlite', path: storePath(dir) });
    assert.deepEqual(storeLocation(dir, { WEFT_STORE: '' }), { kind: 'sqlite', path: storePath(dir) });
  });

  it('store-url (0600) names a PostgreSQL store; WEFT_STORE comes first', () => {
    const dir = fresh();
    recordStoreUrl(dir, 'postgres://weft:secret@db.example.net/weft');
    assert.equal(statSync(join(dir, STORE_URL_FILE)).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.deepEqual(storeLocation(dir, {}), {
      kind: 'postgres',
      url: 'postgres://weft:secret@db.example.net/weft',
      from: 'file',
    });
    assert.deepEqual(storeLocation(dir, { WEFT_STORE: 'postgresql://other/weft' }), {
      kind: 'postgres',
      url: 'postgresql://other/weft',
      from: 'env',
    });
  });

  it('refuses what is not a PostgreSQL URL, naming the field and hiding the password', () => {
    const dir = fresh();
    assert.throws(
      () => storeLocation(dir, { WEFT_STORE: '/var/lib/weft/weft.db' }),
      (e: unknown) => e instanceof UserError && /WEFT_STORE must be a postgres:\/\//.test(e.message),
    );
    assert.throws(
      () => storeLocation(dir, { WEFT_STORE: 'mysql://weft:hunter2@db/weft' }),
      (e: unknown) =>
        e instanceof UserError && /WEFT_STORE/.test(e.message) && !e.message.includes('hunter2'),
    );
    recordStoreUrl(dir, 'nonsense');
    writeFileSync(join(dir, STORE_URL_FILE), 'sqlite:///x\n');
    assert.throws(
      () => storeLocation(dir, {}),
      (e: unknown) => e instanceof UserError && e.message.includes(STORE_URL_FILE),
    );
  });
});
