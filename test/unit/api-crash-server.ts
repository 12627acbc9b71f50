/**
 * The server half of api-crash.test.ts: serves the REST API over the SQLite store at argv[2] (initialised by
 * the test beforehand) on 127.0.0.1, a port the system picks, and prints `{"port": N}` as one line on stdout
 * once it listens. The test sends it a burst of POST /api/v1/members and kills it with SIGKILL mid-burst;
 * every member whose 201 the test received must then be in the store.
 *
 * Usage: node api-crash-server.js <store path> <API token>
 * The token is checked before listening, so a store the test set up wrong fails here, with a message, rather
 * than as a run of 401s.
 */
import { writeSync } from 'node:fs';
import { buildApi } from '../../src/api/server.js';
import { ControlPlane } from '../../src/control/control-plane.js';
import { openSqliteStore } from '../../src/control/store-sqlite.js';

/** Bounds, so a server the test failed to kill still ends. */
const MAX_MS = 60_000;

const [path, token] = process.argv.slice(2);
if (path === undefined || token === undefined) {
  process.stderr.write('usage: api-crash-server <store path> <API token>\n');
  process.exit(2);
}

const store = openSqliteStore(path);
const controlPlane = new ControlPlane(store);
if (controlPlane.authenticateToken(token) === undefined) {
  process.stderr.write(`api-crash-server: the token is not valid for the store at ${path}\n`);
  process.exit(2);
}
const app = buildApi({ controlPlane });
const stop = (code: number): void => {
  void app.close().finally(() => {
    store.close();
    process.exit(code);
  });
};
// The test holds stdin open; when it goes away (even if killed itself), so does this server.
process.stdin.resume();
process.stdin.on('end', () => stop(0));
setTimeout(() => {
  process.stderr.write(`api-crash-server: not killed within ${MAX_MS} ms, exiting\n`);
  stop(3);
}, MAX_MS).unref();

await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
if (address === null || typeof address === 'string') throw new Error(`unexpected address ${String(address)}`);
// Synchronous: the line is out before any request can arrive.
writeSync(1, `${JSON.stringify({ port: address.port })}\n`);
