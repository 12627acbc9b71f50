/**
 * `weft demo`: two WireGuard cores, each on its own UDP socket on 127.0.0.1, complete a handshake and
 * exchange pings through the tunnel. No root, no TUN: the second core answers echo requests itself.
 */
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { PrivateKey } from '../crypto/keys.js';
import { echo, readEcho } from '../net/icmp.js';
import { formatAddress, parsePrefix, type Prefix } from '../net/ip.js';
import { formatEndpoint } from '../net/endpoint.js';
import { Device, type Action } from '../wireguard/device.js';

function prefix(text: string): Prefix {
  const p = parsePrefix(text);
  if (!p.ok) throw new Error(p.error);
  return p.value;
}

interface Side {
  name: string;
  device: Device;
  socket: Socket;
  address: string;
}

export async function demo(count: number, log: (line: string) => void): Promise<boolean> {
  const sides: Side[] = ['alpha', 'beta'].map((name, i) => ({
    name,
    device: new Device({ privateKey: PrivateKey.generate() }),
    socket: createSocket('udp4'),
    address: `10.77.0.${i + 1}`,
  }));
  const [a, b] = sides as [Side, Side];
  for (const s of sides) {
    s.socket.bind(0, '127.0.0.1');
    await once(s.socket, 'listening');
  }
  for (const [me, other] of [
    [a, b],
    [b, a],
  ] as const) {
    me.device.setPeer({
      publicKey: other.device.publicKey!,
      endpoint: { address: '127.0.0.1', port: other.socket.address().port },
      allowedIps: [prefix(`${other.address}/32`)],
    });
  }
  let replies = 0;
  const handle = (side: Side, actions: Action[]): void => {
    for (const act of actions) {
      if (act.type === 'send') side.socket.send(act.data, act.endpoint.port, act.endpoint.address);
      if (act.type === 'drop') log(`${side.name}: dropped (${act.reason})`);
      if (act.type !== 'deliver') continue;
      const e = readEcho(act.packet);
      if (!e) continue;
      const src = formatAddress({ family: e.family, bytes: e.source });
      log(`${side.name}: echo ${e.kind} seq=${e.seq} from ${src} (${act.packet.length} bytes, decrypted)`);
      if (e.kind === 'request')
        handle(
          side,
          side.device.send(echo('reply', e.destination, e.source, e.id, e.seq, e.data), Date.now()),
        );
      else replies++;
    }
  };
  for (const s of sides) {
    s.socket.on('message', (msg, rinfo) =>
      handle(s, s.device.receive(msg, { address: rinfo.address, port: rinfo.port }, Date.now())),
    );
  }
  const timer = setInterval(() => sides.forEach((s) => handle(s, s.device.tick(Date.now()))), 100);
  try {
    for (let seq = 1; seq <= count; seq++) {
      handle(
        a,
        a.device.send(
          echo('request', a.address, b.address, 7, seq, new TextEncoder().encode('weft demo')),
          Date.now(),
        ),
      );
      const deadline = Date.now() + 2000;
      while (replies < seq && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    }
    for (const s of sides) {
      for (const p of s.device.peerStatuses(Date.now())) {
        log(
          `${s.name}: peer ${p.publicKey.toBase64()} endpoint ${p.endpoint ? formatEndpoint(p.endpoint) : '(none)'} ` +
            `handshake ${p.lastHandshake ? new Date(p.lastHandshake).toISOString() : 'never'} rx ${p.rxBytes} B tx ${p.txBytes} B`,
        );
      }
    }
    log(`${replies}/${count} echo replies came back through the tunnel`);
    return replies === count;
  } finally {
    clearInterval(timer);
    sides.forEach((s) => s.socket.close());
  }
}
