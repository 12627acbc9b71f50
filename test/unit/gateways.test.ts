/**
 * The gateways overview (src/control/gateways.ts) behind `weft gateway list` and GET /api/v1/gateways: [] on
 * a store that is not shared; on a shared one, each registered gateway with its state and the members online
 * on it, counted from the member statuses that name their gateway, the others counted apart. The shared
 * store is the in-memory store with the PostgreSQL store's gateway registry added (the registry itself is
 * covered against a real PostgreSQL by the interop tests).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildApi } from '../../src/api/server.js';
import { ControlPlane } from '../../src/control/control-plane.js';
import { applyState, exportState } from '../../src/control/desired-state.js';
import type { WeftError } from '../../src/control/errors.js';
import { gatewayOverview, removeGateway, SILENT_AFTER_MS } from '../../src/control/gateways.js';
import type { MemberStatus } from '../../src/control/model.js';
import type { GatewayRecord, LeaseHolder } from '../../src/control/store-postgres.js';
import { openSqliteStore } from '../../src/control/store-sqlite.js';
import { MemoryStore } from '../support/memory-store.js';

class SharedMemoryStore extends MemoryStore {
  readonly kind = 'postgres';
  gateways: GatewayRecord[] = [];
  listGateways(): GatewayRecord[] {
    return this.gateways;
  }
  /** One thread, one store: nothing to wait for; whether it is registered. */
  lockGateway(name: string): boolean {
    return this.gateways.some((g) => g.name === name);
  }
  leases: LeaseHolder[] = [];
  leaseHolders(): LeaseHolder[] {
    return this.leases;
  }
}

function gateway(name: string, silentMs: number): GatewayRecord {
  return {
    name,
    endpoint: `${name}.example.com:51820`,
    publicKey: 'x'.repeat(43) + '=',
    region: name === 'gw-a' ? 'eu-west' : '',
    registeredAt: '2026-01-01T00:00:00.000Z',
    lastSeen: '2026-01-01T00:00:10.000Z',
    silentMs,
    meshPort: 51821,
    mesh: null,
  };
}

function status(name: string, online: boolean, gw?: string): MemberStatus {
  return {
    name,
    online,
    protocol: online ? 'wireguard' : null,
    since: null,
    endpoint: null,
    lastHandshake: null,
    rxBytes: 0,
    txBytes: 0,
    policyDrops: 0,
    updatedAt: '2026-01-01T00:00:10.000Z',
    ...(gw === undefined ? {} : { gateway: gw }),
  };
}

describe('gateways overview', () => {
  it('is empty on SQLite, and GET /gateways answers []', async () => {
    const store = openSqliteStore(':memory:');
    const { apiToken } = ControlPlane.init(store, { endpoint: 'vpn.example.com', subnet: '10.66.0.0/24' });
    assert.deepEqual(gatewayOverview(store), { gateways: [], membersOnline: 0, membersOnlineUnassigned: 0 });
    const app = buildApi({ controlPlane: new ControlPlane(store) });
    try {
      const res = await app.inject({
        method: 'GET',
        url: '/api/v1/gateways',
        headers: { authorization: `Bearer ${apiToken}` },
      });
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(res.json(), []);
      const anonymous = await app.inject({ method: 'GET', url: '/api/v1/gateways' });
      assert.equal(anonymous.statusCode, 401);
      const doc = (
        await app.inject({
          method: 'GET',
          url: '/api/v1/openapi.json',
          headers: { authorization: `Bearer ${apiToken}` },
        })
      ).json() as { paths: Record<string, { get?: { operationId?: string } }> };
      assert.equal(doc.paths['/api/v1/gateways']?.get?.operationId, 'listGateways');
    } finally {
      await app.close();
      store.close();
    }
  });

  it('on a shared store: state from the heartbeat; online members unknown per gateway when statuses do not say', () => {
    const store = new SharedMemoryStore();
    store.gateways = [gateway('gw-a', 2_000), gateway('gw-b', SILENT_AFTER_MS + 1)];
    let o = gatewayOverview(store);
    assert.deepEqual(
      o.gateways.map((g) => [g.name, g.state, g.region, g.membersOnline]),
      [
        ['gw-a', 'up', 'eu-west', 0],
        ['gw-b', 'silent', '', 0],
      ],
      'nobody online: 0 everywhere is known',
    );
    store.putStatuses([status('alice', true), status('bob', true), status('carol', false)]);
    o = gatewayOverview(store);
    assert.deepEqual(
      o.gateways.map((g) => g.membersOnline),
      [null, null],
    );
    assert.equal(o.membersOnline, 2);
    assert.equal(o.membersOnlineUnassigned, 2);
  });

  it('on a shared store: members online counted per gateway from statuses that name it', async () => {
    const store = new SharedMemoryStore();
    const { apiToken } = ControlPlane.init(store, { endpoint: 'vpn.example.com', subnet: '10.66.0.0/24' });
    store.gateways = [gateway('gw-a', 100), gateway('gw-b', 100), gateway('gw-c', 100)];
    store.putStatuses([
      status('alice', true, 'gw-a'),
      status('bob', true, 'gw-b'),
      status('carol', true, 'gw-b'),
      status('dave', false, 'gw-c'),
      status('erin', true),
    ]);
    // Leases other than a shared address's are not shown as held addresses.
    store.leases = [
      { name: 'shared-address/10.0.0.100', holder: 'gw-b' },
      { name: 'migrations', holder: 'gw-a' },
    ];
    const o = gatewayOverview(store);
    assert.deepEqual(
      o.gateways.map((g) => [g.name, g.holds]),
      [
        ['gw-a', []],
        ['gw-b', ['10.0.0.100']],
        ['gw-c', []],
      ],
    );
    assert.deepEqual(
      o.gateways.map((g) => [g.name, g.membersOnline]),
      [
        ['gw-a', 1],
        ['gw-b', 2],
        ['gw-c', 0],
      ],
    );
    assert.equal(o.membersOnline, 4);
    assert.equal(o.membersOnlineUnassigned, 1);
    const app = buildApi({ controlPlane: new ControlPlane(store) });
    try {
      const res = await app.inject({
        method: 'GET',
        url: '/api/v1/gateways',
        headers: { authorization: `Bearer ${apiToken}` },
      });
      assert.equal(res.statusCode, 200, res.body);
      const body = res.json() as {
        name: string;
        state: string;
        membersOnline: number | null;
        lastSeen: string;
        holds: string[];
      }[];
      assert.deepEqual(
        body.map((g) => [g.name, g.state, g.membersOnline, g.lastSeen, g.holds]),
        [
          ['gw-a', 'up', 1, '2026-01-01T00:00:10.000Z', []],
          ['gw-b', 'up', 2, '2026-01-01T00:00:10.000Z', ['10.0.0.100']],
          ['gw-c', 'up', 0, '2026-01-01T00:00:10.000Z', []],
        ],
      );
    } finally {
      await app.close();
    }
  });
});

describe('the gateway serving a route or a site', () => {
  class RegistryStore extends SharedMemoryStore {
    removeGateway(name: string): boolean {
      const before = this.gateways.length;
      this.gateways = this.gateways.filter((g) => g.name !== name);
      return this.gateways.length < before;
    }
  }
  const refusal = (fn: () => unknown): { code: string; field?: string; message: string } => {
    try {
      fn();
    } catch (e) {
      const w = e as WeftError;
      return { code: w.code, message: w.message, ...(w.field === undefined ? {} : { field: w.field }) };
    }
    assert.fail('not refused');
  };

  it('must be registered; removing it is refused while a route or site names it; the state file keeps it', () => {
    const store = new RegistryStore();
    store.gateways = [gateway('gw-a', 1_000), gateway('gw-b', 1_000)];
    ControlPlane.init(store, { endpoint: 'vpn.example.com', subnet: '10.66.0.0/24' });
    const cp = new ControlPlane(store);
    const bad = refusal(() => cp.addRoute('t', { cidr: '10.99.0.0/24', gateway: 'gw-x' }));
    assert.deepEqual([bad.code, bad.field], ['WEFT_ERR_VALIDATION', 'gateway']);
    assert.deepEqual(cp.addRoute('t', { cidr: '10.99.0.0/24', gateway: 'gw-b' }), {
      cidr: '10.99.0.0/24',
      description: '',
      gateway: 'gw-b',
    });
    cp.addSite('t', {
      name: 'hq',
      remoteAddress: '198.51.100.20',
      localSubnets: ['10.66.0.0/24'],
      remoteSubnets: ['10.50.0.0/16'],
      gateway: 'gw-b',
    });
    assert.equal(cp.getSite('hq').gateway, 'gw-b');
    const busy = refusal(() => removeGateway(store, 't', 'gw-b'));
    assert.equal(busy.code, 'WEFT_ERR_GATEWAY_IN_USE');
    assert.match(busy.message, /gateway gw-b serves route 10\.99\.0\.0\/24, site hq/);
    assert.equal(refusal(() => removeGateway(store, 't', 'gw-x')).code, 'WEFT_ERR_GATEWAY_NOT_FOUND');

    // The state file carries it both ways; applying the export changes nothing.
    const state = exportState(cp);
    assert.deepEqual(state.routes, [{ cidr: '10.99.0.0/24', gateway: 'gw-b' }]);
    assert.equal(state.sites?.[0]?.gateway, 'gw-b');
    assert.deepEqual(applyState(cp, 't', state), []);

    // A site given to every gateway ("" in a patch), the route removed: gw-b can go; gw-a stays.
    cp.updateSite('t', 'hq', { gateway: '' });
    assert.equal(cp.getSite('hq').gateway, undefined);
    assert.equal(refusal(() => removeGateway(store, 't', 'gw-b')).message.includes('site hq'), false);
    cp.removeRoute('t', '10.99.0.0/24');
    removeGateway(store, 't', 'gw-b');
    assert.deepEqual(
      store.gateways.map((g) => g.name),
      ['gw-a'],
    );
    // Only the removal that happened is audited, by its actor.
    const removals = store.listAudit({ limit: 100 }).filter((e) => e.action === 'gateway.remove');
    assert.deepEqual(
      removals.map((e) => [e.actor, e.target]),
      [['t', 'gw-b']],
    );
  });
});
