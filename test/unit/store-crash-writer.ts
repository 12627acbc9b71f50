/**
 * The writer half of store-sqlite.test.ts's crash test: opens the store at argv[2] and inserts members one by
 * one, each in its own committed insertMember, printing each name the moment insertMember has returned. The
 * test kills this process with SIGKILL mid-burst; every name printed must then be in the store.
 *
 * Usage: node store-crash-writer.js <store path> <name prefix>
 */
import { writeSync } from 'node:fs';
import { openSqliteStore } from '../../src/control/store-sqlite.js';

/** Bounds, so a writer the test failed to kill still ends. */
const MAX_INSERTS = 50_000;
const MAX_MS = 30_000;

const [path, prefix] = process.argv.slice(2);
if (path === undefined || prefix === undefined) {
  process.stderr.write('usage: store-crash-writer <store path> <name prefix>\n');
  process.exit(2);
}

const store = openSqliteStore(path);
// Each run gets its own second octet, so runs against the same file never collide on an address.
const octet = Number(/\d+/.exec(prefix)?.[0] ?? 0) & 255;
const deadline = Date.now() + MAX_MS;
for (let i = 0; i < MAX_INSERTS && Date.now() < deadline; i++) {
  const name = `${prefix}${String(i).padStart(5, '0')}`;
  const at = new Date().toISOString();
  store.insertMember({
    name,
    ip: `10.${octet}.${(i >> 8) & 255}.${i & 255}`,
    ip6: null,
    publicKey: Buffer.from(name.padEnd(32, '.')).toString('base64'),
    hasPrivateKey: false,
    privateKey: null,
    groups: [],
    disabled: false,
    expiresAt: null,
    fullTunnel: false,
    createdAt: at,
    updatedAt: at,
  });
  // Synchronous, unbuffered: once the parent has read this line, the insert had already committed.
  writeSync(1, `${name}\n`);
}
store.close();
