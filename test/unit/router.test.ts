/**
 * The gateway's router (src/gateway/router.ts): longest-prefix match onto tunnels, one flush per batch, and
 * several tunnels claiming the same prefix (a member connected over two protocols at once): the newest claim
 * carries the traffic and, when it is released, the one before takes over.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Router, type Tunnel } from '../../src/gateway/router.js';
import { parsePrefix, type Prefix } from '../../src/net/ip.js';

class Recording implements Tunnel {
  readonly sent: string[] = [];
  flushes = 0;
  constructor(readonly name: string) {}
  send(packet: Uint8Array): void {
    this.sent.push(`${packet[16]}.${packet[17]}.${packet[18]}.${packet[19]}`);
  }
  flush(): void {
    this.flushes++;
  }
}

function v4(dst: string): Uint8Array {
  const p = new Uint8Array(28);
  p[0] = 0x45;
  p[3] = 28;
  p[8] = 64;
  p[9] = 17;
  p.set([10, 66, 0, 1], 12);
  p.set(dst.split('.').map(Number), 16);
  return p;
}

function prefix(text: string): Prefix {
  const r = parsePrefix(text);
  assert.ok(r.ok);
  return r.value;
}

describe('Router', () => {
  it('routes by longest prefix and flushes each tunnel sent to once per batch', () => {
    const r = new Router();
    const wide = new Recording('wide');
    const narrow = new Recording('narrow');
    r.setRoutes(wide, [prefix('10.66.0.0/16')]);
    r.setRoutes(narrow, [prefix('10.66.7.0/24')]);
    assert.equal(r.route(v4('10.66.1.1'), 0), true);
    assert.equal(r.route(v4('10.66.7.9'), 0), true);
    assert.equal(r.route(v4('10.66.7.10'), 0), true);
    assert.equal(r.route(v4('192.0.2.1'), 0), false);
    assert.equal(r.route(new Uint8Array(3), 0), false);
    r.flush();
    assert.deepEqual(wide.sent, ['10.66.1.1']);
    assert.deepEqual(narrow.sent, ['10.66.7.9', '10.66.7.10']);
    assert.equal(wide.flushes, 1);
    assert.equal(narrow.flushes, 1);
    assert.deepEqual(r.counters, { routed: 3, noRoute: 1, malformed: 1, multicast: 0 });
  });

  it('the newest claim on a prefix carries its traffic; releasing it falls back to the one before', () => {
    const r = new Router();
    const wireguard = new Recording('wireguard');
    const openvpn = new Recording('openvpn');
    const alice = prefix('10.66.0.2/32');
    const bob = prefix('10.66.0.3/32');
    r.setRoutes(wireguard, [alice, bob]);
    r.setRoutes(openvpn, [alice]);
    assert.deepEqual(r.claimants(alice), [wireguard, openvpn]);
    r.route(v4('10.66.0.2'), 0);
    r.route(v4('10.66.0.3'), 0);
    assert.deepEqual(openvpn.sent, ['10.66.0.2']);
    assert.deepEqual(wireguard.sent, ['10.66.0.3']);

    // The WireGuard side re-syncing its routes (a peer changed elsewhere) does not take the prefix back.
    r.setRoutes(wireguard, [alice, bob, prefix('10.66.0.4/32')]);
    r.route(v4('10.66.0.2'), 0);
    assert.deepEqual(openvpn.sent, ['10.66.0.2', '10.66.0.2']);

    // The OpenVPN session ends: WireGuard carries alice again, at once.
    r.removeTunnel(openvpn);
    r.route(v4('10.66.0.2'), 0);
    assert.deepEqual(wireguard.sent, ['10.66.0.3', '10.66.0.2']);
    assert.deepEqual(r.claimants(alice), [wireguard]);

    // An older claim released while a newer one holds the prefix changes nothing for the traffic.
    r.setRoutes(openvpn, [alice]);
    r.setRoutes(wireguard, [bob]);
    r.route(v4('10.66.0.2'), 0);
    assert.deepEqual(openvpn.sent, ['10.66.0.2', '10.66.0.2', '10.66.0.2']);
    r.removeTunnel(openvpn);
    assert.equal(r.route(v4('10.66.0.2'), 0), false, 'no claim left: no route');
    assert.deepEqual(r.claimants(alice), []);
  });
});
