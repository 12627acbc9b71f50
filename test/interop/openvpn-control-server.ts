/**
 * A helper for openvpn-control.test.ts, run inside a lab namespace: a minimal OpenVPN server made of Weft's
 * control-channel core (stateless handshake + ControlSession with node:tls) over one UDP socket, with the real
 * clock. It prints JSON lines for the test: {"ev":"ready"}, every session action worth seeing (authenticated,
 * peer-info, data-keys with the key block in hex, key-retired, push-sent, ended) and the first data-channel
 * packets per key id ({"ev":"data","keyId":…,"hex":…}) so the test can open them with the key block.
 *
 *   node openvpn-control-server.js CONFIG.json
 * It exits when its standard input closes.
 */
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { P_DATA_V1, P_DATA_V2 } from '../../src/openvpn/constants.js';
import {
  ControlSession,
  type ControlAction,
  type PushDescription,
} from '../../src/openvpn/control-session.js';
import type { WrapConfig } from '../../src/openvpn/control-wrap.js';
import { parseHeaderByte } from '../../src/openvpn/packet.js';
import { StatelessHandshake } from '../../src/openvpn/stateless-handshake.js';
import { NodeTlsServerFactory } from '../../src/openvpn/tls-engine-node.js';
import { parseStaticKeyFile } from '../../src/openvpn/tls-crypt.js';
import { parseServerKey } from '../../src/openvpn/tls-crypt-v2.js';

export interface ServerConfig {
  address: string;
  port: number;
  wrap:
    | { kind: 'tls-crypt-v2'; serverKeyFile: string }
    | { kind: 'tls-crypt'; keyFile: string }
    | { kind: 'tls-auth'; keyFile: string; direction: 0 | 1; digest: 'sha1' | 'sha256' };
  cert: string;
  key: string;
  ca: string;
  offerEkm: boolean;
  renegotiateAfterMs?: number;
  push: PushDescription;
}

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

const config = JSON.parse(fs.readFileSync(process.argv[2] ?? '', 'utf8')) as ServerConfig;

function wrapConfig(): WrapConfig {
  const w = config.wrap;
  if (w.kind === 'tls-crypt-v2') {
    const r = parseServerKey(fs.readFileSync(w.serverKeyFile, 'utf8'));
    if (!r.ok) throw new Error(`server key: ${r.error}`);
    return { kind: 'tls-crypt-v2', serverKey: r.key };
  }
  const r = parseStaticKeyFile(fs.readFileSync(w.keyFile, 'utf8'));
  if (!r.ok) throw new Error(`static key: ${r.error}`);
  return w.kind === 'tls-crypt'
    ? { kind: 'tls-crypt', key: r.key }
    : { kind: 'tls-auth', key: r.key, direction: w.direction, digest: w.digest };
}

const wrap = wrapConfig();
const handshake = new StatelessHandshake(wrap, new Uint8Array(randomBytes(32)));
const tls = new NodeTlsServerFactory({
  cert: fs.readFileSync(config.cert, 'utf8'),
  key: fs.readFileSync(config.key, 'utf8'),
  ca: fs.readFileSync(config.ca, 'utf8'),
});
const socket = createSocket('udp4');

interface Peer {
  session: ControlSession;
  address: string;
  port: number;
  timer: NodeJS.Timeout | undefined;
  pollQueued: boolean;
}
const peers = new Map<string, Peer>();
const dataSeen = new Map<number, number>();
let nextPeerId = 0;

function apply(peer: Peer, actions: ControlAction[]): void {
  for (const a of actions) {
    switch (a.kind) {
      case 'send':
        socket.send(a.bytes, peer.port, peer.address);
        break;
      case 'deadline': {
        if (peer.timer) clearTimeout(peer.timer);
        peer.timer = setTimeout(
          () => apply(peer, peer.session.poll(Date.now())),
          Math.max(0, a.at - Date.now()),
        );
        break;
      }
      case 'authenticated':
        emit({ ev: 'authenticated', protocol: a.protocol, certificateBytes: a.certificate?.length ?? 0 });
        break;
      case 'peer-info':
        emit({ ev: 'peer-info', version: a.info.version, proto: a.info.proto, ciphers: a.info.ciphers });
        break;
      case 'data-keys':
        emit({
          ev: 'data-keys',
          keyId: a.keyId,
          cipher: a.cipher,
          derivation: a.derivation,
          peerId: a.peerId,
          keyBlock: Buffer.from(a.keyBlock).toString('hex'),
        });
        break;
      case 'key-retired':
        emit({ ev: 'key-retired', keyId: a.keyId });
        break;
      case 'push-sent':
        emit({ ev: 'push-sent', messages: a.messages });
        break;
      case 'ended':
        emit({ ev: 'ended', reason: a.reason, detail: a.detail });
        if (peer.timer) clearTimeout(peer.timer);
        break;
      case 'drop':
        emit({ ev: 'drop', reason: a.reason });
        break;
    }
  }
}

socket.on('message', (msg, rinfo) => {
  const bytes = new Uint8Array(msg);
  const now = Date.now();
  const key = `${rinfo.address}:${rinfo.port}`;
  if (bytes.length === 0) return;
  const { opcode, keyId } = parseHeaderByte(bytes[0]!);
  if (opcode === P_DATA_V2 || opcode === P_DATA_V1) {
    const seen = dataSeen.get(keyId) ?? 0;
    if (seen < 8) {
      dataSeen.set(keyId, seen + 1);
      emit({ ev: 'data', keyId, hex: Buffer.from(bytes.subarray(0, 400)).toString('hex') });
    }
    return;
  }
  const existing = peers.get(key);
  if (existing && !existing.session.isEnded) {
    apply(existing, existing.session.receive(bytes, now));
    return;
  }
  const out = handshake.handle(bytes, { address: rinfo.address, port: rinfo.port }, now);
  if (out.kind === 'reply') {
    emit({ ev: 'reset-answered' });
    socket.send(out.bytes, rinfo.port, rinfo.address);
  } else if (out.kind === 'establish') {
    const session = new ControlSession({
      serverSessionId: out.serverSessionId,
      clientSessionId: out.clientSessionId,
      wrapper: out.wrapper,
      tls: tls.create,
      peerId: nextPeerId++,
      offerEkm: config.offerEkm,
      push: config.push,
      now,
      ...(config.renegotiateAfterMs === undefined ? {} : { renegotiateAfterMs: config.renegotiateAfterMs }),
    });
    const peer: Peer = {
      session,
      address: rinfo.address,
      port: rinfo.port,
      timer: undefined,
      pollQueued: false,
    };
    session.onActivity(() => {
      if (peer.pollQueued) return;
      peer.pollQueued = true;
      setImmediate(() => {
        peer.pollQueued = false;
        apply(peer, session.poll(Date.now()));
      });
    });
    peers.set(key, peer);
    emit({ ev: 'established', peer: key });
    apply(peer, session.receive(out.bytes, now));
  } else {
    emit({ ev: 'handshake-drop', reason: out.reason });
  }
});
socket.on('error', (error) => {
  emit({ ev: 'error', message: error.message });
  process.exitCode = 1;
});
socket.bind(config.port, config.address, () => emit({ ev: 'ready' }));

process.stdin.on('data', () => undefined);
process.stdin.on('end', () => {
  for (const p of peers.values()) if (p.timer) clearTimeout(p.timer);
  socket.close();
  process.exit(0);
});
