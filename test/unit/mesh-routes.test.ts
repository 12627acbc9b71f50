import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatPrefix } from '../../src/net/ip.js';
import {
  ownedPrefixes,
  planMesh,
  type MeshGatewayInput,
  type MeshPlanInput,
} from '../../src/server/mesh-routes.js';

const KEY = { a: 'A'.repeat(43) + '=', b: 'B'.repeat(43) + '=', c: 'C'.repeat(43) + '=' };

function gw(name: 'a' | 'b' | 'c', extra: Partial<MeshGatewayInput> = {}): MeshGatewayInput {
  const n = { a: 1, b: 2, c: 3 }[name];
  return {
    name: `gw-${name}`,
    endpoint: `192.0.2.${n}:51820`,
    publicKey: KEY[name],
    meshPort: null,
    silentMs: 1000,
    ...extra,
  };
}

function plan(over: Partial<MeshPlanInput> = {}): ReturnType<typeof planMesh> {
  return planMesh({
    self: 'gw-a',
    selfPublicKey: KEY.a,
    listenPort: 51820,
    gateways: [gw('a'), gw('b'), gw('c', { meshPort: 4000, endpoint: '[2001:db8::3]:51820' })],
    locations: [
      { name: 'alice', gateway: 'gw-b', ip: '10.66.0.2', ip6: 'fd66::2' },
      { name: 'bob', gateway: 'gw-c', ip: '10.66.0.3', ip6: null },
      { name: 'carol', gateway: 'gw-a', ip: '10.66.0.4', ip6: null },
    ],
    isLocal: () => false,
    silentAfterMs: 30_000,
    ...over,
  });
}

const routesOf = (p: ReturnType<typeof planMesh>, name: string): string[] =>
  (p.peers.find((x) => x.name === name)?.prefixes ?? []).map(formatPrefix);

test('every other gateway is a peer at its mesh endpoint (host of its endpoint, mesh port or listen port + 1)', () => {
  const p = plan();
  assert.deepEqual(
    p.peers.map((x) => [x.name, x.publicKey, x.host, x.port]),
    [
      ['gw-b', KEY.b, '192.0.2.2', 51821],
      ['gw-c', KEY.c, '2001:db8::3', 4000],
    ],
  );
});

test("a member held by another gateway is routed to that gateway's peer, as /32 and /128", () => {
  const p = plan();
  assert.deepEqual(routesOf(p, 'gw-b'), ['10.66.0.2/32', 'fd66::2/128']);
  assert.deepEqual(routesOf(p, 'gw-c'), ['10.66.0.3/32']);
  assert.deepEqual(p.routes.map(formatPrefix), ['10.66.0.2/32', 'fd66::2/128', '10.66.0.3/32']);
  assert.deepEqual(p.peers.find((x) => x.name === 'gw-b')?.members, ['alice']);
});

test('a member on this gateway (by its row, or connected here since) stays local', () => {
  const p = plan({ isLocal: (m) => m === 'alice' });
  assert.deepEqual(routesOf(p, 'gw-b'), []);
  assert.ok(!p.routes.some((r) => formatPrefix(r) === '10.66.0.4/32'), 'carol, on gw-a itself');
});

test('a silent gateway keeps its peer but gets no routes; an unknown gateway gets none either', () => {
  const p = plan({
    gateways: [gw('a'), gw('b', { silentMs: 31_000 }), gw('c')],
    locations: [
      { name: 'alice', gateway: 'gw-b', ip: '10.66.0.2', ip6: null },
      { name: 'dan', gateway: 'gw-gone', ip: '10.66.0.9', ip6: null },
    ],
  });
  assert.deepEqual(
    p.peers.map((x) => x.name),
    ['gw-b', 'gw-c'],
  );
  assert.deepEqual(routesOf(p, 'gw-b'), []);
  assert.deepEqual(p.routes, []);
});

test("a registration with this gateway's own key is not a peer; a bad endpoint leaves the peer without one", () => {
  const p = plan({
    gateways: [gw('a'), gw('b', { name: 'gw-copy', publicKey: KEY.a }), gw('c', { endpoint: '10.0.0.300' })],
  });
  assert.deepEqual(
    p.peers.map((x) => [x.name, x.host]),
    [['gw-c', null]],
  );
});

test('invalid stored addresses are skipped, not thrown', () => {
  const p = plan({ locations: [{ name: 'x', gateway: 'gw-b', ip: 'not-an-ip', ip6: null }] });
  assert.deepEqual(p.routes, []);
});

test('a shared route or site subnet served by another gateway is routed to its peer and in its AllowedIPs', () => {
  const owned = ownedPrefixes(
    [
      { cidr: '10.99.0.0/24', gateway: 'gw-b' },
      { cidr: '10.98.0.0/24', gateway: 'gw-a' },
      { cidr: '10.97.0.0/24' },
      { cidr: '10.96.0.0/24', gateway: 'gw-gone' },
    ],
    [
      { enabled: true, mode: 'tunnel', remoteSubnets: ['10.50.0.0/16', '10.51.0.0/16'], gateway: 'gw-c' },
      { enabled: false, mode: 'tunnel', remoteSubnets: ['10.52.0.0/16'], gateway: 'gw-c' },
      { enabled: true, mode: 'transport', remoteSubnets: ['192.0.2.9/32'], gateway: 'gw-c' },
      { enabled: true, mode: 'tunnel', remoteSubnets: ['10.53.0.0/16'] },
    ],
  );
  const p = plan({ owned });
  assert.deepEqual(routesOf(p, 'gw-b'), ['10.66.0.2/32', 'fd66::2/128', '10.99.0.0/24']);
  assert.deepEqual(routesOf(p, 'gw-c'), ['10.66.0.3/32', '10.50.0.0/16', '10.51.0.0/16']);
  // Its own (gw-a), every gateway's, an unregistered gateway's, a disabled or transport site's: not routed.
  assert.deepEqual(p.owned.map(formatPrefix), ['10.99.0.0/24', '10.50.0.0/16', '10.51.0.0/16']);
  assert.deepEqual(p.peers.find((x) => x.name === 'gw-b')?.owned.map(formatPrefix), ['10.99.0.0/24']);
  // The serving gateway itself routes nothing of its own into the mesh.
  const atB = plan({ self: 'gw-b', selfPublicKey: KEY.b, owned });
  assert.equal(
    atB.owned.some((x) => formatPrefix(x) === '10.99.0.0/24'),
    false,
  );
  // A silent serving gateway gets no routes.
  const silent = plan({ owned, gateways: [gw('a'), gw('b', { silentMs: 40_000 }), gw('c')] });
  assert.deepEqual(routesOf(silent, 'gw-b'), []);
  assert.equal(
    silent.owned.some((x) => formatPrefix(x) === '10.99.0.0/24'),
    false,
  );
});
