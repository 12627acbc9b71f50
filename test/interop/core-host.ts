/**
 * Hosts a Weft WireGuard core on a real UDP socket with no TUN device, so a test can put it face to face
 * with a real peer inside a network namespace (`ip netns exec NS node core-host.js CONFIG`).
 *
 * The tunnel side is played by this process: inbound ICMP/ICMPv6 echo requests addressed to one of
 * `tunnelAddresses` are answered, and every delivered packet is reported. Control is line-oriented JSON:
 * stdin takes {"op":"ping",...} | {"op":"status"} | {"op":"reset"} | {"op":"exit"};
 * stdout reports {"ev":"ready"} | {"ev":"deliver",...} | {"ev":"drop",...} | {"ev":"status",...}.
 */
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { PrivateKey, PublicKey } from '../../src/crypto/keys.js';
import { formatAddress, parseAddress, parsePrefix, type Prefix } from '../../src/net/ip.js';
import { Device, type Action, type PeerConfig } from '../../src/wireguard/device.js';
import { echo, readEcho } from '../../src/net/icmp.js';

export interface CoreHostConfig {
  privateKey: string;
  listenAddress: string;
  listenPort: number;
  tunnelAddresses: string[];
  peers: {
    publicKey: string;
    endpoint?: { address: string; port: number };
    allowedIps: string[];
    presharedKey?: string;
  }[];
}

function must<T>(r: { ok: true; value: T } | { ok: false; error: string }): T {
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

function peerConfigs(config: CoreHostConfig): PeerConfig[] {
  return config.peers.map((p) => {
    const key = PublicKey.parse(p.publicKey);
    if (!key.ok) throw new Error(key.error);
    return {
      publicKey: key.key,
      endpoint: p.endpoint ?? null,
      allowedIps: p.allowedIps.map((a): Prefix => must(parsePrefix(a))),
      replaceAllowedIps: true,
    };
  });
}

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function main(): void {
  const config = JSON.parse(process.argv[2] ?? '{}') as CoreHostConfig;
  const priv = PrivateKey.parse(config.privateKey);
  if (!priv.ok) throw new Error(priv.error);
  const device = new Device({ privateKey: priv.key });
  for (const p of peerConfigs(config)) device.setPeer(p);
  const ours = config.tunnelAddresses.map((a) => formatAddress(must(parseAddress(a))));
  const socket = createSocket(config.listenAddress.includes(':') ? 'udp6' : 'udp4');

  const handle = (actions: Action[]): void => {
    for (const a of actions) {
      if (a.type === 'send') {
        socket.send(a.data, a.endpoint.port, a.endpoint.address);
      } else if (a.type === 'drop') {
        emit({ ev: 'drop', reason: a.reason });
      } else {
        const e = readEcho(a.packet);
        emit({
          ev: 'deliver',
          length: a.packet.length,
          echo: e && {
            kind: e.kind,
            family: e.family,
            src: formatAddress({ family: e.family, bytes: e.source }),
            dst: formatAddress({ family: e.family, bytes: e.destination }),
            id: e.id,
            seq: e.seq,
          },
        });
        if (
          e?.kind === 'request' &&
          ours.includes(formatAddress({ family: e.family, bytes: e.destination }))
        ) {
          handle(device.send(echo('reply', e.destination, e.source, e.id, e.seq, e.data), Date.now()));
        }
      }
    }
  };

  socket.on('message', (msg, rinfo) => {
    if (msg.length > 0 && msg[0]! <= 3)
      emit({ ev: 'rx', type: msg[0], from: `${rinfo.address}:${rinfo.port}` });
    handle(
      device.receive(
        new Uint8Array(msg.buffer, msg.byteOffset, msg.length),
        { address: rinfo.address, port: rinfo.port },
        Date.now(),
      ),
    );
  });
  const timer = setInterval(() => handle(device.tick(Date.now())), 50);

  const commands = createInterface({ input: process.stdin });
  commands.on('line', (line) => {
    const cmd = JSON.parse(line) as { op: string; src?: string; dst?: string; id?: number; seq?: number };
    switch (cmd.op) {
      case 'ping':
        handle(
          device.send(
            echo(
              'request',
              cmd.src!,
              cmd.dst!,
              cmd.id ?? 1,
              cmd.seq ?? 1,
              new TextEncoder().encode('weft interop'),
            ),
            Date.now(),
          ),
        );
        break;
      case 'status':
        emit({
          ev: 'status',
          drops: Object.fromEntries(Object.entries(device.drops).filter(([, n]) => n > 0)),
          peers: device.peerStatuses(Date.now()).map((s) => ({
            publicKey: s.publicKey.toBase64(),
            endpoint: s.endpoint,
            lastHandshake: s.lastHandshake,
            rxBytes: s.rxBytes,
            txBytes: s.txBytes,
          })),
        });
        break;
      case 'reset':
        device.removeAllPeers();
        for (const p of peerConfigs(config)) device.setPeer(p);
        emit({ ev: 'reset' });
        break;
      case 'exit':
        clearInterval(timer);
        socket.close();
        commands.close();
        break;
    }
  });
  commands.on('close', () => {
    clearInterval(timer);
    try {
      socket.close();
    } catch {
      // already closed
    }
  });
  socket.bind(config.listenPort, config.listenAddress, () =>
    emit({ ev: 'ready', port: socket.address().port }),
  );
}

main();
