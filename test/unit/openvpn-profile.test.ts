/**
 * The member's `.ovpn` remotes: one gateway (the endpoint alone, UDP then TCP, openvpn's default poll timeout),
 * several gateways on one store (every host, UDP ones first, a short server-poll-timeout), IPv6 literals bare.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  renderOpenVpnProfile,
  SERVER_POLL_TIMEOUT_SECONDS,
  type ProfileInput,
} from '../../src/openvpn/profile.js';

const BASE: ProfileInput = {
  memberName: 'alice',
  hosts: ['vpn.example.net'],
  udpPort: 1194,
  tcpPort: 443,
  serverName: 'weft-server',
  dataCiphers: ['AES-256-GCM', 'CHACHA20-POLY1305'],
  ca: 'CA',
  certificate: 'CERT',
  privateKey: 'KEY',
  tlsCryptV2Key: 'TC',
};

function directives(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${name} `));
}

describe('OpenVPN profile remotes', () => {
  it('one gateway: its endpoint over UDP, then TCP, and no server-poll-timeout', () => {
    const text = renderOpenVpnProfile(BASE);
    assert.deepEqual(directives(text, 'remote'), [
      'remote vpn.example.net 1194 udp',
      'remote vpn.example.net 443 tcp-client',
    ]);
    assert.deepEqual(directives(text, 'server-poll-timeout'), []);
  });

  it('several gateways: every host over UDP first, then over TCP, with a short server-poll-timeout', () => {
    const text = renderOpenVpnProfile({
      ...BASE,
      hosts: ['192.0.2.100', '192.0.2.11', '[2001:db8::12]', '192.0.2.11'],
    });
    assert.deepEqual(directives(text, 'remote'), [
      'remote 192.0.2.100 1194 udp',
      'remote 192.0.2.11 1194 udp',
      'remote 2001:db8::12 1194 udp',
      'remote 192.0.2.100 443 tcp-client',
      'remote 192.0.2.11 443 tcp-client',
      'remote 2001:db8::12 443 tcp-client',
    ]);
    assert.deepEqual(directives(text, 'server-poll-timeout'), [
      `server-poll-timeout ${SERVER_POLL_TIMEOUT_SECONDS}`,
    ]);
    assert.ok(SERVER_POLL_TIMEOUT_SECONDS <= 10);
  });

  it('TCP off: UDP remotes only; no host or no port is refused', () => {
    const text = renderOpenVpnProfile({ ...BASE, hosts: ['a.example', 'b.example'], tcpPort: null });
    assert.deepEqual(directives(text, 'remote'), ['remote a.example 1194 udp', 'remote b.example 1194 udp']);
    assert.throws(() => renderOpenVpnProfile({ ...BASE, hosts: [] }), RangeError);
    assert.throws(() => renderOpenVpnProfile({ ...BASE, udpPort: null, tcpPort: null }), RangeError);
  });
});
