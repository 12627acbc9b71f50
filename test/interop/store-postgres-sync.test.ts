/**
 * The synchronous PostgreSQL store (src/control/store-postgres-sync.ts: a worker thread owns the pool, the
 * caller blocks on Atomics.wait) against a real PostgreSQL 15 started in a temporary directory
 * (postgres-harness.ts; needs root):
 *   1. the synchronous Store conformance suite (test/support/store-conformance.ts, the SQLite store's suite),
 *      each case on a database of its own;
 *   2. two stores on one database: a transaction's writes are invisible to the other until COMMIT, and a
 *      rolled-back one leaves nothing; `follow` wakes the other within 1 s;
 *   3. the server stopped: the first call fails with StoreUnavailable, later calls fail at once (no wait) while
 *      it is away, `follow` hears `lost`; started again: calls work within a few seconds, `recovered` is
 *      heard, and the feed goes on where it was.
 *   4. a stalled path (the server neither answers nor fails: the store reaches it through a relay process, which
 *      is then stopped with SIGSTOP): the first call fails with StoreUnavailable after the call timeout, the
 *      calls after it at once; the relay continued (SIGCONT): calls work again within a few seconds.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join as joinPath } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { StoreConflict } from '../../src/control/store.js';
import { StoreUnavailable } from '../../src/control/store-postgres.js';
import {
  openPostgresStoreSync,
  type FollowEvent,
  type SyncPostgresStore,
} from '../../src/control/store-postgres-sync.js';
import { storeConformance } from '../support/store-conformance.js';
import { canRunPostgres, freePort, startPostgres, type PostgresServer } from './postgres-harness.js';

const can = canRunPostgres();
let server: PostgresServer | undefined;
/** Databases made ahead (the suite opens its stores synchronously). */
const spare: { name: string; url: string }[] = [];
const SPARE_DATABASES = 42;
const RELAY = fileURLToPath(new URL('./unix-relay.js', import.meta.url));

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

if (!can.ok) {
  it('synchronous PostgreSQL store', { skip: can.reason }, () => {});
} else {
  before(async () => {
    server = await startPostgres();
    for (let i = 0; i < SPARE_DATABASES; i++) {
      const name = `sync_${process.pid}_${i}`;
      spare.push({ name, url: await server.createDatabase(name) });
    }
  });
  after(async () => {
    await server?.stop();
  });

  storeConformance('SyncPostgresStore', () => {
    const db = spare.shift();
    if (db === undefined) throw new Error('out of spare databases: raise SPARE_DATABASES');
    const store = openPostgresStoreSync(db.url);
    return { store, close: () => store.close() };
  });

  describe('SyncPostgresStore: two stores, transactions, follow', () => {
    it("a transaction's writes are seen by the other store at COMMIT; a rollback leaves nothing", async () => {
      const db = spare.shift();
      assert.ok(db);
      const a = openPostgresStoreSync(db.url);
      const b = openPostgresStoreSync(db.url);
      const wakes: number[] = [];
      try {
        b.follow((e) => {
          if (e.kind === 'wake') wakes.push(e.revision);
        });
        await new Promise((resolve) => setTimeout(resolve, 200)); // LISTEN in place
        a.transaction(() => {
          a.insertGroup({ name: 'eng', description: '' });
          assert.equal(b.getGroup('eng'), undefined, 'not visible before COMMIT');
          assert.throws(() => a.insertGroup({ name: 'eng', description: '' }), StoreConflict);
          a.transaction(() => a.insertGroup({ name: 'ops', description: '' }));
        });
        assert.deepEqual(
          b.listGroups().map((g) => g.name),
          ['eng', 'ops'],
        );
        assert.throws(
          () =>
            a.transaction(() => {
              a.insertGroup({ name: 'gone', description: '' });
              throw new Error('no');
            }),
          /no/,
        );
        assert.equal(b.getGroup('gone'), undefined);
        assert.equal(b.revision(), 2);
        const t0 = performance.now();
        a.insertRoute({ cidr: '10.9.0.0/24', description: '' });
        await until(() => wakes.includes(3), 1000, 'a wake-up for revision 3');
        console.log(`follow: woken ${(performance.now() - t0).toFixed(1)} ms after the commit`);
      } finally {
        a.close();
        b.close();
      }
    });

    it('server away: StoreUnavailable, then at once while away; back: calls work and the feed goes on', async () => {
      const s = server;
      const db = spare.shift();
      assert.ok(s && db);
      const store: SyncPostgresStore = openPostgresStoreSync(db.url, { connectTimeoutMs: 1000 });
      const events: FollowEvent[] = [];
      try {
        store.follow((e) => events.push(e));
        await new Promise((resolve) => setTimeout(resolve, 200));
        store.insertGroup({ name: 'before', description: '' });
        await s.halt();
        await until(() => events.some((e) => e.kind === 'lost'), 5000, 'follow to hear lost');
        assert.ok(store.isDown());
        const t0 = performance.now();
        for (let i = 0; i < 100; i++) assert.throws(() => store.revision(), StoreUnavailable);
        const perCall = (performance.now() - t0) / 100;
        console.log(`while away: a call fails in ${perCall.toFixed(3)} ms`);
        assert.ok(perCall < 5, `calls fail at once while the server is away (${perCall} ms each)`);

        await s.resume();
        await until(() => events.some((e) => e.kind === 'recovered'), 10_000, 'follow to hear recovered');
        await until(() => !store.isDown(), 5000, 'the store to be up again');
        assert.equal(store.revision(), 1);
        store.insertGroup({ name: 'after', description: '' });
        assert.deepEqual(
          store.changesSince(0).map((c) => [c.rev, c.key]),
          [
            [1, 'before'],
            [2, 'after'],
          ],
        );
      } finally {
        store.close();
      }
    });

    it('a stalled path: the first call gives up after the call timeout, the next ones at once; healed: calls work', async () => {
      const s = server;
      const db = spare.shift();
      assert.ok(s && db);
      const port = await freePort();
      const relay = spawn(
        process.execPath,
        [RELAY, '127.0.0.1', String(port), joinPath(s.dir, 'socket', `.s.PGSQL.${s.port}`)],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      relay.stdout.on('data', (d: Buffer) => (out += d.toString()));
      let store: SyncPostgresStore | undefined;
      try {
        await until(() => out.includes('ready'), 10_000, 'the relay to listen');
        const url = new URL(db.url);
        url.port = String(port);
        store = openPostgresStoreSync(url.toString(), { connectTimeoutMs: 1000, callTimeoutMs: 1500 });
        store.insertGroup({ name: 'before', description: '' });
        relay.kill('SIGSTOP');
        const t0 = performance.now();
        assert.throws(() => store!.revision(), StoreUnavailable);
        const first = performance.now() - t0;
        assert.ok(first >= 1400 && first < 5000, `the first call waited the call timeout (${first} ms)`);
        assert.ok(store.isDown(), 'the store is down after an unanswered call');
        const t1 = performance.now();
        for (let i = 0; i < 100; i++) assert.throws(() => store!.revision(), StoreUnavailable);
        const perCall = (performance.now() - t1) / 100;
        console.log(
          `stalled path: the first call failed after ${first.toFixed(0)} ms, the next ones in ${perCall.toFixed(3)} ms each`,
        );
        assert.ok(perCall < 5, `calls fail at once while the path is stalled (${perCall} ms each)`);

        relay.kill('SIGCONT');
        const healed = performance.now();
        await until(() => !store!.isDown(), 15_000, 'the store to be up again');
        console.log(`stalled path healed: up again after ${(performance.now() - healed).toFixed(0)} ms`);
        store.insertGroup({ name: 'after', description: '' });
        assert.deepEqual(
          store.changesSince(0).map((c) => c.key),
          ['before', 'after'],
        );
      } finally {
        relay.kill('SIGCONT');
        store?.close();
        relay.kill('SIGKILL');
      }
    });

    it('a store that cannot reach its server fails to open with StoreUnavailable', () => {
      const t0 = performance.now();
      assert.throws(
        () => openPostgresStoreSync('postgres://weft@127.0.0.1:1/none', { connectTimeoutMs: 1000 }),
        StoreUnavailable,
      );
      assert.ok(performance.now() - t0 < 5000);
    });
  });
}
