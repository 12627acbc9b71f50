/**
 * The protocol core against a real peer's bytes: wireguard-go (Debian package) in a network namespace, and
 * the Weft core on a UDP socket on the same namespace's loopback (test/interop/core-host.ts plays its
 * tunnel side). Handshakes initiated by each side; ICMP and ICMPv6 echo both ways.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PrivateKey } from '../../src/crypto/keys.js';
import type { CoreHostConfig } from './core-host.js';
import {
  interopSkip,
  JsonLinesProcess,
  Lab,
  startWireguardGo,
  type Netns,
  type WireguardGo,
} from './harness.js';

const CORE_HOST = fileURLToPath(new URL('./core-host.js', import.meta.url));

interface HostEvent {
  ev: string;
  type?: number;
  reason?: string;
  echo?: { kind: string; family: number; src: string; dst: string; id: number; seq: number } | null;
  peers?: {
    publicKey: string;
    endpoint?: { address: string; port: number };
    lastHandshake: number;
    rxBytes: number;
    txBytes: number;
  }[];
  drops?: Record<string, number>;
}

/** The core host process, with its JSON-lines events parsed. */
class CoreHost extends JsonLinesProcess<HostEvent> {
  async status(): Promise<HostEvent> {
    return this.request({ op: 'status' }, 'status');
  }
}

describe('Weft protocol core ↔ wireguard-go over loopback UDP', { skip: interopSkip() }, () => {
  const weftKey = PrivateKey.generate();
  const wgKey = PrivateKey.generate();
  let lab: Lab;
  let ns: Netns;
  let wgo: WireguardGo;
  let host: CoreHost;
  const wgPeer = {
    publicKey: weftKey.publicKey().toBase64(),
    endpoint: '127.0.0.1:51821',
    allowedIps: ['10.201.0.1/32', 'fd00:201::1/128'],
  };

  before(async () => {
    lab = await Lab.create('core');
    ns = await lab.netns('a');
    wgo = await startWireguardGo(ns, lab.ifname('wg'), {
      privateKey: wgKey.toBase64(),
      listenPort: 51820,
      addresses: ['10.201.0.2/24', 'fd00:201::2/64'],
      peers: [wgPeer],
    });
    const config: CoreHostConfig = {
      privateKey: weftKey.toBase64(),
      listenAddress: '127.0.0.1',
      listenPort: 51821,
      tunnelAddresses: ['10.201.0.1', 'fd00:201::1'],
      peers: [
        {
          publicKey: wgKey.publicKey().toBase64(),
          endpoint: { address: '127.0.0.1', port: 51820 },
          allowedIps: ['10.201.0.2/32', 'fd00:201::2/128'],
        },
      ],
    };
    host = new CoreHost(ns.spawn(process.execPath, [CORE_HOST, JSON.stringify(config)]));
    await host.waitFor('ready', (e) => e.ev === 'ready');
  });

  after(async () => {
    await lab?.cleanup();
  });

  it('Weft initiates; echo requests go out and replies come back, IPv4 and IPv6', async () => {
    host.command({ op: 'ping', src: '10.201.0.1', dst: '10.201.0.2', id: 11, seq: 1 });
    await host.waitFor(
      'IPv4 echo reply',
      (e) => e.ev === 'deliver' && e.echo?.kind === 'reply' && e.echo.seq === 1,
    );
    host.command({ op: 'ping', src: 'fd00:201::1', dst: 'fd00:201::2', id: 11, seq: 2 });
    const v6 = await host.waitFor(
      'IPv6 echo reply',
      (e) => e.ev === 'deliver' && e.echo?.kind === 'reply' && e.echo.seq === 2,
    );
    assert.equal(v6.echo?.src, 'fd00:201::2');
    // The core sent the initiation: wireguard-go's response (type 2) arrived, not an initiation (type 1).
    const handshakes = host
      .events()
      .filter((e) => e.ev === 'rx')
      .map((e) => e.type);
    assert.equal(handshakes[0], 2);

    const dump = await wgo.dump();
    const peer = dump.peers[0]!;
    assert.equal(peer.publicKey, weftKey.publicKey().toBase64());
    assert.equal(peer.endpoint, '127.0.0.1:51821');
    assert.ok(peer.latestHandshake > 0 && peer.rxBytes > 0 && peer.txBytes > 0, JSON.stringify(peer));
    const status = await host.status();
    const ours = status.peers![0]!;
    assert.ok(ours.lastHandshake > 0 && ours.rxBytes > 0 && ours.txBytes > 0, JSON.stringify(ours));
    // Both ends count the same bytes on the wire.
    assert.equal(ours.txBytes, peer.rxBytes);
    assert.equal(ours.rxBytes, peer.txBytes);
  });

  it('wireguard-go initiates; its pings are answered through Weft, IPv4 and IPv6', async () => {
    // Fresh sessions on both sides.
    await ns.exec('wg', ['set', wgo.ifname, 'peer', wgPeer.publicKey, 'remove']);
    await ns.exec('wg', [
      'set',
      wgo.ifname,
      'peer',
      wgPeer.publicKey,
      'endpoint',
      wgPeer.endpoint,
      'allowed-ips',
      wgPeer.allowedIps.join(','),
    ]);
    const rxBefore = host.events().filter((e) => e.ev === 'rx').length;
    host.command({ op: 'reset' });
    await host.waitFor('reset', (e) => e.ev === 'reset');

    const ping4 = await ns.exec('ping', ['-c', '3', '-i', '0.2', '-W', '3', '10.201.0.1'], {
      timeoutMs: 15_000,
    });
    assert.match(ping4.stdout, /3 received/);
    const ping6 = await ns.exec('ping', ['-6', '-c', '3', '-i', '0.2', '-W', '3', 'fd00:201::1'], {
      timeoutMs: 15_000,
    });
    assert.match(ping6.stdout, /3 received/);

    const handshakes = host
      .events()
      .filter((e) => e.ev === 'rx')
      .slice(rxBefore)
      .map((e) => e.type);
    assert.equal(
      handshakes[0],
      1,
      'the first handshake message after the reset was wireguard-go’s initiation',
    );
    const requests = host.events().filter((e) => e.ev === 'deliver' && e.echo?.kind === 'request');
    assert.ok(requests.some((e) => e.echo?.src === '10.201.0.2'));
    assert.ok(requests.some((e) => e.echo?.src === 'fd00:201::2'));
    const dump = await wgo.dump();
    assert.ok(dump.peers[0]!.latestHandshake > 0);
  });

  it('reports no drops for the real peer’s traffic', async () => {
    const status = await host.status();
    assert.deepEqual(status.drops, {});
  });
});
