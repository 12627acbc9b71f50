#!/usr/bin/env node
/**
 * The members of the bench's multicast section (bench/multicast.ts): real WireGuard peers of the gateway, each a
 * Weft WireGuard core (`Device`: Noise handshake, transport keys, replay window) on a UDP socket of its own, all
 * in one process so that twenty receivers do not take twenty processes on a small machine.
 *
 *   node dist/bench/mcast-members.js CONFIG.json        (inside the members' namespace)
 *
 * Member 0 is the sender; the others receive. Commands (one JSON object a line on stdin), events (JSON lines on
 * stdout):
 *   {"cmd":"handshake","maxAgeMs":N}   every member whose session is older than N ms (or absent) handshakes;
 *                                      each then sends a keepalive (the gateway may send on a session only
 *                                      once it has received on it) → {"ev":"handshaken","ms":...}
 *   {"cmd":"join","group":G}           each receiver sends an IGMPv3 report (CHANGE_TO_EXCLUDE {}, RFC 3376 §4.2)
 *                                      for G inside its tunnel; queries from the gateway are answered the same
 *                                      way → {"ev":"joined"}
 *   {"cmd":"verify","dst":D,"count":N} the sender sends N datagrams to D (a group or one member's address),
 *                                      1 ms apart; each receiver decrypts what arrives and counts the intact
 *                                      ones → {"ev":"verified","perReceiver":[...]}
 *   {"cmd":"prepare","dst":D,"count":N} N datagrams to D sealed in advance (consecutive counters), so sending
 *                                      them costs only sendmmsg(2) → {"ev":"prepared","ms":...}
 *   {"cmd":"blast","rate":R,"seconds":S} the prepared datagrams, paced at R a second for S seconds
 *                                      → {"ev":"blasted","sent":...,"refused":...,"seconds":...}
 *   {"cmd":"exit"}
 * Every datagram is one 200-byte IPv4 packet (20-byte header, 8-byte UDP header, 172 bytes of payload: the
 * tag "weft-mc-bench:" and the sequence number). What arrives during a blast is counted by nftables in this
 * namespace (bench/multicast.ts), not here: this process must not compete with the gateway for the CPU.
 */
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { PrivateKey, PublicKey } from '../src/crypto/keys.js';
import type { Datagram } from '../src/io/bind.js';
import { LinuxUdpBind } from '../src/io/udp-linux.js';
import { IGMP_QUERY, PROTO_IGMP } from '../src/multicast/constants.js';
import { buildReport, internetChecksum } from '../src/multicast/messages.js';
import type { Endpoint } from '../src/net/endpoint.js';
import { parseAddress, parsePrefix, type Prefix } from '../src/net/ip.js';
import { Device, type Action } from '../src/wireguard/device.js';

export const PACKET_BYTES = 200;
export const DATA_PORT = 5000;
const TAG = 'weft-mc-bench:';
/** Datagrams per sendmmsg(2) call during a blast. */
const BATCH = 256;
/** RFC 3376 §4.2.12: CHANGE_TO_EXCLUDE_MODE with no sources = join. */
const CHANGE_TO_EXCLUDE = 4;

export interface McastMembersConfig {
  gateway: { address: string; port: number; publicKey: string };
  listenAddress: string;
  members: { name: string; privateKey: string; ip: string; port: number; allowedIps: string[] }[];
}

interface Member {
  readonly name: string;
  readonly ip: Uint8Array;
  readonly device: Device;
  /** Turns the core's actions into datagrams (and answers the gateway's IGMP queries). */
  handle: (actions: readonly Action[]) => void;
  /** Intact datagrams delivered since the last verify. */
  received: number;
}

function must<T>(r: { ok: true; value: T } | { ok: false; error: string }): T {
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

/** A 200-byte IPv4/UDP datagram from `src` to `dst` (TTL 16: a routed group loses one hop at the gateway). */
export function datagram(src: Uint8Array, dst: Uint8Array, seq: number): Uint8Array {
  const p = new Uint8Array(PACKET_BYTES);
  const view = new DataView(p.buffer);
  p[0] = 0x45;
  view.setUint16(2, PACKET_BYTES);
  view.setUint16(4, seq & 0xffff);
  p[8] = 16;
  p[9] = 17;
  p.set(src, 12);
  p.set(dst, 16);
  view.setUint16(10, internetChecksum(p.subarray(0, 20)));
  view.setUint16(20, 40000);
  view.setUint16(22, DATA_PORT);
  view.setUint16(24, PACKET_BYTES - 20);
  // UDP checksum 0: none (RFC 768), allowed over IPv4.
  p.set(new TextEncoder().encode(`${TAG}${seq}`), 28);
  return p;
}

function isOurs(packet: Uint8Array): boolean {
  if (packet.length !== PACKET_BYTES || packet[9] !== 17) return false;
  if (((packet[22] ?? 0) << 8) + (packet[23] ?? 0) !== DATA_PORT) return false;
  return new TextDecoder().decode(packet.subarray(28, 28 + TAG.length)) === TAG;
}

async function main(): Promise<void> {
  const config = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as McastMembersConfig;
  const gatewayKey = must(
    ((r) => (r.ok ? { ok: true as const, value: r.key } : r))(PublicKey.parse(config.gateway.publicKey)),
  );
  const gatewayEndpoint: Endpoint = { address: config.gateway.address, port: config.gateway.port };
  const members: Member[] = [];
  const sockets: Socket[] = [];
  let senderBind: LinuxUdpBind | undefined;
  let group: Uint8Array | undefined;

  for (const [index, spec] of config.members.entries()) {
    const key = PrivateKey.parse(spec.privateKey);
    if (!key.ok) throw new Error(`${spec.name}: ${key.error}`);
    const device = new Device({ privateKey: key.key });
    device.setPeer({
      publicKey: gatewayKey,
      endpoint: gatewayEndpoint,
      allowedIps: spec.allowedIps.map((a): Prefix => must(parsePrefix(a))),
      replaceAllowedIps: true,
    });
    const ip = must(parseAddress(spec.ip)).bytes;
    let send: (datagrams: readonly Datagram[]) => void = () => undefined;
    const handle = (actions: readonly Action[]): void => {
      const out: Datagram[] = [];
      for (const a of actions) {
        if (a.type === 'send') out.push({ data: a.data.slice(), endpoint: a.endpoint });
        else if (a.type === 'deliver') {
          if (isOurs(a.packet)) member.received++;
          else if (a.packet[9] === PROTO_IGMP && a.packet[(a.packet[0]! & 0x0f) * 4] === IGMP_QUERY && group)
            handle(device.send(buildReport(4, ip, [{ type: CHANGE_TO_EXCLUDE, group }]), Date.now()));
        }
      }
      if (out.length > 0) send(out);
    };
    const member: Member = { name: spec.name, ip, device, handle, received: 0 };
    if (index === 0) {
      // The sender: sendmmsg(2) for the blasts.
      const bind = await LinuxUdpBind.open(spec.port, config.listenAddress);
      senderBind = bind;
      send = (d) => bind.send(d);
      bind.start((datagrams) => {
        for (const d of datagrams) handle(device.receive(d.data, d.endpoint, Date.now()));
      });
    } else {
      const socket = createSocket('udp4');
      sockets.push(socket);
      send = (d) => {
        for (const x of d) socket.send(x.data, x.endpoint.port, x.endpoint.address);
      };
      socket.on('message', (msg, rinfo) =>
        handle(
          device.receive(
            new Uint8Array(msg.buffer, msg.byteOffset, msg.length),
            { address: rinfo.address, port: rinfo.port },
            Date.now(),
          ),
        ),
      );
      await new Promise<void>((resolve) => socket.bind(spec.port, config.listenAddress, resolve));
    }
    members.push(member);
  }
  const timer = setInterval(() => {
    for (const m of members) m.handle(m.device.tick(Date.now()));
  }, 100);
  const sender = members[0];
  if (!sender || !senderBind) throw new Error('no members');
  const receivers = members.slice(1);
  let prepared: Datagram[] = [];

  const lastHandshake = (m: Member): number =>
    m.device.peerStatus(gatewayKey, Date.now())?.lastHandshake ?? 0;

  const commands = createInterface({ input: process.stdin });
  const queue: string[] = [];
  let busy = false;
  const next = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      for (let line = queue.shift(); line !== undefined; line = queue.shift()) await command(line);
    } finally {
      busy = false;
    }
  };
  const command = async (line: string): Promise<void> => {
    const c = JSON.parse(line) as {
      cmd: string;
      maxAgeMs?: number;
      group?: string;
      dst?: string;
      count?: number;
      rate?: number;
      seconds?: number;
    };
    switch (c.cmd) {
      case 'handshake': {
        const started = Date.now();
        const stale = members.filter((m) => started - lastHandshake(m) > (c.maxAgeMs ?? 0));
        for (const m of stale) m.handle(m.device.initiateHandshake(gatewayKey, started));
        const deadline = started + 10_000;
        while (stale.some((m) => lastHandshake(m) < started) && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 20));
        const missing = stale.filter((m) => lastHandshake(m) < started).map((m) => m.name);
        for (const m of stale) m.handle(m.device.sendKeepalive(gatewayKey, Date.now()));
        emit({ ev: 'handshaken', ms: Date.now() - started, renewed: stale.length, missing });
        break;
      }
      case 'join': {
        group = must(parseAddress(c.group ?? '')).bytes;
        for (const m of receivers)
          m.handle(m.device.send(buildReport(4, m.ip, [{ type: CHANGE_TO_EXCLUDE, group }]), Date.now()));
        emit({ ev: 'joined' });
        break;
      }
      case 'verify': {
        const dst = must(parseAddress(c.dst ?? '')).bytes;
        for (const m of receivers) m.received = 0;
        for (let i = 0; i < (c.count ?? 0); i++) {
          sender.handle(sender.device.send(datagram(sender.ip, dst, i), Date.now()));
          await new Promise((r) => setTimeout(r, 1));
        }
        await new Promise((r) => setTimeout(r, 500));
        emit({ ev: 'verified', perReceiver: receivers.map((m) => m.received) });
        break;
      }
      case 'prepare': {
        const started = Date.now();
        const dst = must(parseAddress(c.dst ?? '')).bytes;
        prepared = [];
        const count = c.count ?? 0;
        for (let i = 0; i < count; i++) {
          for (const a of sender.device.send(datagram(sender.ip, dst, i), Date.now()))
            if (a.type === 'send') prepared.push({ data: a.data.slice(), endpoint: a.endpoint });
        }
        emit({ ev: 'prepared', ms: Date.now() - started, count: prepared.length });
        break;
      }
      case 'blast': {
        const bind = senderBind!;
        const rate = c.rate ?? 0;
        const before = { ...bind.counters };
        const started = performance.now();
        const end = started + (c.seconds ?? 0) * 1000;
        const total = prepared.length;
        let next = 0;
        // Paced by the clock: what is due goes out in batches, then the thread sleeps about a millisecond
        // (a busy wait would take the CPU the gateway needs).
        while (performance.now() < end && next < total) {
          const due = Math.min(total, Math.floor(((performance.now() - started) * rate) / 1000));
          while (next < due) {
            const upTo = Math.min(due, next + BATCH);
            bind.send(prepared.slice(next, upTo));
            next = upTo;
          }
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
        const seconds = (performance.now() - started) / 1000;
        const after = bind.counters;
        const ranOut = next >= total && seconds < (c.seconds ?? 0) - 0.05;
        prepared = [];
        emit({
          ev: 'blasted',
          sent: after.datagramsOut - before.datagramsOut,
          refused: after.sendDropped - before.sendDropped + (after.sendErrors - before.sendErrors),
          seconds,
          ranOut,
        });
        break;
      }
      case 'exit':
        commands.close();
        break;
      default:
        emit({ ev: 'error', error: `unknown command ${c.cmd}` });
    }
  };
  commands.on('line', (line) => {
    queue.push(line);
    void next().catch((e: unknown) => emit({ ev: 'error', error: String(e) }));
  });
  commands.on('close', () => {
    clearInterval(timer);
    for (const s of sockets) s.close();
    void senderBind?.close();
  });
  emit({ ev: 'ready' });
}

await main();
