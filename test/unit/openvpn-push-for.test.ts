/**
 * What a member's OpenVPN client is pushed (src/server/openvpn-push.ts): the same reach as its WireGuard
 * config, in OpenVPN's words.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ControlPlane } from '../../src/control/control-plane.js';
import { openSqliteStore } from '../../src/control/store-sqlite.js';
import { openVpnPushFor } from '../../src/server/openvpn-push.js';
import { buildPushReplies } from '../../src/openvpn/push.js';

function fixture(): { cp: ControlPlane; close: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'weft-push-'));
  const store = openSqliteStore(join(dir, 'weft.db'));
  ControlPlane.init(store, { endpoint: 'vpn.example.com', subnet: '10.66.0.0/24', subnet6: 'fd66::/64' });
  return {
    cp: new ControlPlane(store),
    close: () => {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('split tunnel: its fixed addresses, the member subnet on-link, a route per shared subnet it may reach', () => {
  const f = fixture();
  try {
    f.cp.updateSettings('t', { dns: ['10.66.0.1'] });
    f.cp.addGroup('t', { name: 'eng' });
    f.cp.addRoute('t', { cidr: '10.20.0.0/16' });
    f.cp.addRoute('t', { cidr: 'fd20::/48' });
    f.cp.addPolicy('t', { action: 'allow', group: 'eng', destination: '10.20.0.0/16' });
    f.cp.addPolicy('t', { action: 'allow', group: 'eng', destination: 'fd20::/48' });
    f.cp.addPolicy('t', { action: 'allow', group: 'eng', destination: 'group:eng' });
    f.cp.addMember('t', { name: 'alice', ip: '10.66.0.10', groups: ['eng'] });
    const alice = f.cp.store.getMember('alice')!;
    const push = openVpnPushFor(f.cp, alice);
    assert.deepEqual(push.ifconfig, { address: '10.66.0.10', netmask: '255.255.255.0' });
    assert.equal(push.ifconfigIpv6?.address, alice.ip6);
    assert.equal(push.ifconfigIpv6?.prefixLength, 64);
    assert.equal(push.ifconfigIpv6?.gateway, 'fd66::1');
    assert.equal(push.routeGateway, '10.66.0.1');
    assert.deepEqual(push.routes, [{ network: '10.20.0.0', netmask: '255.255.0.0' }]);
    assert.deepEqual(push.routesIpv6, ['fd20::/48']);
    assert.equal(push.redirectGateway, undefined);
    assert.deepEqual(push.dns, ['10.66.0.1']);
    // It is something the push builder accepts as it stands.
    const replies = buildPushReplies({
      ...push,
      peerId: 1,
      cipher: 'AES-256-GCM',
      tlsEkm: true,
      ccExit: true,
    });
    assert.match(replies.join('\n'), /route 10\.20\.0\.0 255\.255\.0\.0/);
    assert.match(replies.join('\n'), /ifconfig 10\.66\.0\.10 255\.255\.255\.0/);
    // The client's tun MTU is the gateway's, whatever the client's own default (1500).
    assert.equal(push.tunMtu, f.cp.settings().mtu);
    assert.match(replies.join('\n'), new RegExp(`tun-mtu ${f.cp.settings().mtu}(,|$)`));
  } finally {
    f.close();
  }
});

test('full tunnel: redirect-gateway for IPv4 and IPv6, no routes', () => {
  const f = fixture();
  try {
    f.cp.addMember('t', { name: 'bob', fullTunnel: true });
    const push = openVpnPushFor(f.cp, f.cp.store.getMember('bob')!);
    assert.deepEqual(push.redirectGateway, { ipv6: true });
    assert.equal(push.routes, undefined);
    assert.equal(push.routesIpv6, undefined);
    assert.equal(push.ping, 10);
    assert.equal(push.pingRestart, 60);
  } finally {
    f.close();
  }
});

test('a member with no policy reaches the gateway only: no routes, no redirect', () => {
  const f = fixture();
  try {
    f.cp.addMember('t', { name: 'carol' });
    const push = openVpnPushFor(f.cp, f.cp.store.getMember('carol')!);
    assert.equal(push.routes, undefined);
    assert.equal(push.redirectGateway, undefined);
  } finally {
    f.close();
  }
});

test('multicast on: the groups (224.0.0.0/4, ff00::/8) are routed into the tunnel; link-local is not pushed', () => {
  const f = fixture();
  try {
    f.cp.addMember('t', { name: 'alice' });
    const before = openVpnPushFor(f.cp, f.cp.store.getMember('alice')!);
    assert.equal(before.routes, undefined);
    f.cp.updateSettings('t', { multicast: true });
    const push = openVpnPushFor(f.cp, f.cp.store.getMember('alice')!);
    assert.deepEqual(push.routes, [{ network: '224.0.0.0', netmask: '240.0.0.0' }]);
    assert.deepEqual(push.routesIpv6, ['ff00::/8']);
  } finally {
    f.close();
  }
});
