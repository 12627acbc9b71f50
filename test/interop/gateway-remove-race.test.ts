/**
 * `weft gateway remove` and a route or site given that gateway at the same moment, through two gateways (two
 * stores on one real PostgreSQL, postgres-harness.ts): each runs in its own transaction what the control plane
 * runs (src/control/gateways.ts) — the removal locks the gateway's row for update, checks the routes and sites
 * that name it, deletes it; the assignment locks the row for sharing, then inserts the route. The two are held
 * open across each other, in both orders:
 *   1. the removal first: the assignment's lock waits for the removal's COMMIT, then finds no gateway (so the
 *      route is refused), and no route names the removed gateway;
 *   2. the assignment first: the removal's lock waits for the assignment's COMMIT, then finds the route (so the
 *      removal is refused), and the gateway stays registered.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { openPostgresStore, type PostgresStore } from '../../src/control/store-postgres.js';
import { canRunPostgres, startPostgres, type PostgresServer } from './postgres-harness.js';

const can = canRunPostgres();
/** How long the first transaction stays open while the second one waits for its lock. */
const HOLD_MS = 400;

describe(
  'gateway removal and an assignment to that gateway take turns',
  { skip: can.ok ? false : can.reason },
  () => {
    let server: PostgresServer | undefined;
    const stores: PostgresStore[] = [];

    before(async () => {
      server = await startPostgres();
    });
    after(async () => {
      for (const s of stores) await s.close().catch(() => undefined);
      await server?.stop();
    });

    /** Two stores (two gateways) on a fresh database with gateway gw-b registered. */
    async function pair(db: string): Promise<[PostgresStore, PostgresStore]> {
      const url = await (server as PostgresServer).createDatabase(db);
      const a = await openPostgresStore(url);
      const b = await openPostgresStore(url);
      stores.push(a, b);
      await a.registerGateway({
        name: 'gw-b',
        endpoint: 'gw-b.example.net:51820',
        publicKey: 'B'.repeat(43) + '=',
        region: '',
      });
      return [a, b];
    }

    /** What removeGateway does in its transaction; 'removed', or what refused it. */
    function remove(store: PostgresStore, hold: () => Promise<void>): Promise<string> {
      return store.transaction(async () => {
        if (!(await store.lockGateway('gw-b', 'update'))) return 'not found';
        await hold();
        const owned = (await store.listRoutes()).filter((r) => r.gateway === 'gw-b');
        if (owned.length > 0) return `in use by ${owned.map((r) => r.cidr).join(', ')}`;
        await store.removeGateway('gw-b');
        return 'removed';
      });
    }

    /** What a route add naming gw-b does in its transaction (ownerGateway, then the insert). */
    function assign(store: PostgresStore, hold: () => Promise<void>): Promise<string> {
      return store.transaction(async () => {
        if (!(await store.lockGateway('gw-b', 'share'))) return 'no such gateway';
        await store.insertRoute({ cidr: '10.99.0.0/24', description: '', gateway: 'gw-b' });
        await hold();
        return 'assigned';
      });
    }

    it('1. the removal first: the assignment waits, then finds no gateway', async (t) => {
      const [a, b] = await pair('race_remove_first');
      let locked!: () => void;
      const removerLocked = new Promise<void>((r) => (locked = r));
      const removal = remove(a, async () => {
        locked();
        await delay(HOLD_MS);
      });
      await removerLocked;
      const startedAt = Date.now();
      const assignment = await assign(b, async () => {});
      const answeredAt = Date.now();
      assert.equal(await removal, 'removed');
      assert.equal(assignment, 'no such gateway');
      // It waited for the removal's COMMIT (which came after the hold), not for nothing.
      assert.ok(
        answeredAt - startedAt >= HOLD_MS - 100,
        `the assignment answered after ${answeredAt - startedAt} ms`,
      );
      t.diagnostic(`the assignment waited ${answeredAt - startedAt} ms for the removal`);
      assert.deepEqual(await a.listRoutes(), []);
      assert.deepEqual(
        (await a.listGateways()).map((g) => g.name),
        [],
      );
    });

    it('2. the assignment first: the removal waits, then finds the route and is refused', async (t) => {
      const [a, b] = await pair('race_assign_first');
      let locked!: () => void;
      const assignerLocked = new Promise<void>((r) => (locked = r));
      const assignment = assign(b, async () => {
        locked();
        await delay(HOLD_MS);
      });
      await assignerLocked;
      const startedAt = Date.now();
      const removal = await remove(a, async () => {});
      const answeredAt = Date.now();
      assert.equal(await assignment, 'assigned');
      assert.equal(removal, 'in use by 10.99.0.0/24');
      assert.ok(
        answeredAt - startedAt >= HOLD_MS - 100,
        `the removal answered after ${answeredAt - startedAt} ms`,
      );
      t.diagnostic(`the removal waited ${answeredAt - startedAt} ms for the assignment`);
      assert.deepEqual(
        (await a.listGateways()).map((g) => g.name),
        ['gw-b'],
      );
      assert.deepEqual(
        (await a.listRoutes()).map((r) => r.gateway),
        ['gw-b'],
      );
    });
  },
);
