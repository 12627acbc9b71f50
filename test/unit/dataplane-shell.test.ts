/**
 * The I/O shell with its in-memory doubles: two gateways (TUN + router + WireGuard interface) exchange
 * packets over a MemoryNetwork with no root, sockets or TUN devices.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PrivateKey } from '../../src/crypto/keys.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { MemoryNetwork, MemoryTun, type MemoryBind } from '../../src/io/memory.js';
import { WireGuardInterface } from '../../src/gateway/wireguard-interface.js';
import { echo, readEcho } from '../../src/net/icmp.js';
import { Device } from '../../src/wireguard/device.js';
import { ipv4 } from '../support/packets.js';
import { prefix } from '../support/sim.js';

async function until(what: string, cond: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Side {
  key: PrivateKey;
  tun: MemoryTun;
  bind: MemoryBind;
  gateway: Gateway;
  wg: WireGuardInterface;
}

function side(net: MemoryNetwork, name: string, address: string | string[], port: number): Side {
  const key = PrivateKey.generate();
  const tun = new MemoryTun(name);
  const bind = net.bind(address, port);
  const gateway = new Gateway(tun);
  const wg = new WireGuardInterface({
    name,
    device: new Device({ privateKey: key }),
    bind,
    openBind: async (p) => net.bind(address, p),
    deliver: gateway.deliver,
    tickMs: 20,
  });
  return { key, tun, bind, gateway, wg };
}

function connect(a: Side, b: Side, aIp: string, bIp: string): void {
  a.wg.device.setPeer({
    publicKey: b.key.publicKey(),
    endpoint: b.bind.local,
    allowedIps: [prefix(`${bIp}/32`)],
  });
  b.wg.device.setPeer({
    publicKey: a.key.publicKey(),
    endpoint: a.bind.local,
    allowedIps: [prefix(`${aIp}/32`)],
  });
  for (const s of [a, b]) {
    s.gateway.setRoutes(s.wg, s.wg.device.allowedPrefixes());
    s.gateway.start();
    s.wg.start();
  }
}

describe('I/O shell with in-memory TUN and network', () => {
  it('carries packets between two gateways both ways', async () => {
    const net = new MemoryNetwork();
    const a = side(net, 'a', '192.0.2.1', 51820);
    const b = side(net, 'b', '192.0.2.2', 51820);
    connect(a, b, '10.0.0.1', '10.0.0.2');
    try {
      a.tun.inject(echo('request', '10.0.0.1', '10.0.0.2', 1, 1, new Uint8Array(100)));
      await until('request at b', () => b.tun.written.length === 1);
      const req = readEcho(b.tun.written[0]!);
      assert.equal(req?.kind, 'request');
      b.tun.inject(echo('reply', '10.0.0.2', '10.0.0.1', 1, 1, new Uint8Array(100)));
      await until('reply at a', () => a.tun.written.length === 1);
      assert.equal(readEcho(a.tun.written[0]!)?.kind, 'reply');
      assert.equal(a.gateway.counters.tunPacketsOut, 1);
    } finally {
      await Promise.all([a, b].map(async (s) => (await s.wg.close(), await s.gateway.close())));
    }
  });

  it('drops and counts packets for destinations no tunnel owns, sending nothing', async () => {
    const net = new MemoryNetwork();
    const a = side(net, 'a', '192.0.2.1', 51820);
    const b = side(net, 'b', '192.0.2.2', 51820);
    const sent: unknown[] = [];
    net.filter = (_from, d) => (sent.push(d), true);
    connect(a, b, '10.0.0.1', '10.0.0.2');
    try {
      a.tun.inject(ipv4('10.0.0.1', '10.9.9.9'), new Uint8Array([0x45, 0, 1]));
      assert.deepEqual(a.gateway.router.counters, { routed: 0, noRoute: 1, malformed: 1, multicast: 0 });
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(sent.length, 0);
    } finally {
      await Promise.all([a, b].map(async (s) => (await s.wg.close(), await s.gateway.close())));
    }
  });

  it('answers nothing to unauthenticated datagrams', async () => {
    const net = new MemoryNetwork();
    const a = side(net, 'a', '192.0.2.1', 51820);
    const b = side(net, 'b', '192.0.2.2', 51820);
    connect(a, b, '10.0.0.1', '10.0.0.2');
    const stranger = net.bind('203.0.113.5', 4444);
    const answers: unknown[] = [];
    stranger.start((d) => answers.push(...d));
    try {
      for (let i = 0; i < 200; i++) {
        const junk = new Uint8Array(i % 2 ? 148 : 32 + i).map(() => (Math.random() * 256) | 0);
        junk[0] = (i % 4) + 1;
        junk[1] = junk[2] = junk[3] = 0;
        stranger.send([{ data: junk, endpoint: a.bind.local }]);
      }
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(answers.length, 0);
      const drops = Object.values(a.wg.device.drops).reduce((x, y) => x + y, 0);
      assert.equal(drops, 200);
    } finally {
      await Promise.all([a, b].map(async (s) => (await s.wg.close(), await s.gateway.close())));
    }
  });

  it('keeps sessions across a listen-port change; the peer follows the new port', async () => {
    const net = new MemoryNetwork();
    const a = side(net, 'a', '192.0.2.1', 51820);
    const b = side(net, 'b', '192.0.2.2', 51820);
    connect(a, b, '10.0.0.1', '10.0.0.2');
    try {
      a.tun.inject(ipv4('10.0.0.1', '10.0.0.2', 'before'));
      await until('first packet', () => b.tun.written.length === 1);
      await a.wg.setListenPort(40000);
      assert.equal(a.wg.listenPort, 40000);
      a.tun.inject(ipv4('10.0.0.1', '10.0.0.2', 'after'));
      await until('second packet', () => b.tun.written.length === 2);
      const status = b.wg.device.peerStatus(a.key.publicKey(), Date.now())!;
      assert.deepEqual(status.endpoint, { address: '192.0.2.1', port: 40000, local: '192.0.2.2' });
      b.tun.inject(ipv4('10.0.0.2', '10.0.0.1', 'reply'));
      await until('reply at new port', () => a.tun.written.length === 1);
    } finally {
      await Promise.all([a, b].map(async (s) => (await s.wg.close(), await s.gateway.close())));
    }
  });

  it('answers from the address the peer wrote to, sticky per peer, and forgets an address that has gone', async () => {
    const net = new MemoryNetwork();
    // The gateway has two addresses; its "kernel" would answer from the first. The client dials the second.
    const gw = side(net, 'gw', ['192.0.2.1', '198.51.100.1'], 51820);
    const client = side(net, 'client', '203.0.113.7', 51820);
    connect(gw, client, '10.0.0.1', '10.0.0.2');
    gw.wg.device.setPeer({ publicKey: client.key.publicKey(), endpoint: null });
    client.wg.device.setPeer({
      publicKey: gw.key.publicKey(),
      endpoint: { address: '198.51.100.1', port: 51820 },
    });
    // What leaves the gateway, by source address.
    const sources: string[] = [];
    net.filter = (from, d) => {
      if (d.endpoint.address === '203.0.113.7') sources.push(from.address);
      return true;
    };
    const status = (): string | undefined =>
      gw.wg.device.peerStatus(client.key.publicKey(), Date.now())?.endpoint?.local;
    try {
      // The handshake and a ping, initiated by the client: every answer leaves from 198.51.100.1.
      client.tun.inject(echo('request', '10.0.0.2', '10.0.0.1', 1, 1, new Uint8Array(8)));
      await until('request at the gateway', () => gw.tun.written.length === 1);
      gw.tun.inject(echo('reply', '10.0.0.1', '10.0.0.2', 1, 1, new Uint8Array(8)));
      await until('reply at the client', () => client.tun.written.length === 1);
      assert.equal(status(), '198.51.100.1');
      // Sticky: later traffic the gateway starts leaves from it as well.
      gw.tun.inject(ipv4('10.0.0.1', '10.0.0.2', 'unprompted'));
      await until('second packet at the client', () => client.tun.written.length === 2);
      assert.ok(sources.length >= 3);
      assert.deepEqual(new Set(sources), new Set(['198.51.100.1']));

      // The client now dials the other address from the same address and port: the gateway follows.
      client.wg.device.setPeer({
        publicKey: gw.key.publicKey(),
        endpoint: { address: '192.0.2.1', port: 51820 },
      });
      sources.length = 0;
      client.tun.inject(ipv4('10.0.0.2', '10.0.0.1', 'via the first address'));
      await until('packet at the gateway', () => gw.tun.written.length === 2);
      assert.equal(status(), '192.0.2.1');
      gw.tun.inject(ipv4('10.0.0.1', '10.0.0.2', 'answer'));
      await until('answer at the client', () => client.tun.written.length === 3);
      assert.deepEqual(sources, ['192.0.2.1']);

      // 192.0.2.1 goes away: the datagram is sent from the address left instead.
      gw.bind.addresses.splice(0, 1);
      sources.length = 0;
      gw.tun.inject(ipv4('10.0.0.1', '10.0.0.2', 'after the address went'));
      await until('packet at the client', () => client.tun.written.length === 4);
      assert.deepEqual(sources, ['198.51.100.1']);
      assert.equal(gw.bind.sourcesForgotten, 1);
    } finally {
      await Promise.all([gw, client].map(async (s) => (await s.wg.close(), await s.gateway.close())));
    }
  });
});
