#!/usr/bin/env node
/**
 * The flooder of the bench's flood section (bench/flood.ts): handshake initiations with a valid mac1 for one
 * responder, sent as fast as one thread can, from one UDP socket.
 *
 *   node dist/bench/flooder.js --to ADDRESS:PORT --key RESPONDER_PUBLIC_KEY --seconds S
 *
 * mac1 needs only the responder's public key (paper §5.4.4), so anyone can make initiations that pass it. These
 * are real Noise initiations from a throwaway static key the responder does not know: a responder that checks
 * them all does the whole first half of the handshake (two X25519 operations) before it finds the key unknown.
 * A set of distinct initiations (fresh ephemeral keys and sender indices) is built once and sent round robin
 * with sendmmsg(2) (LinuxUdpBind), 1024 per call. At the end one JSON line goes to stdout: datagrams sent, those
 * the socket refused for a full buffer, seconds.
 */
import { randomBytes } from 'node:crypto';
import { PrivateKey, PublicKey } from '../src/crypto/keys.js';
import { X25519Private } from '../src/crypto/x25519.js';
import type { Datagram } from '../src/io/bind.js';
import { LinuxUdpBind } from '../src/io/udp-linux.js';
import { parseEndpoint } from '../src/net/endpoint.js';
import { CookieGenerator } from '../src/wireguard/cookie.js';
import { createInitiation } from '../src/wireguard/handshake.js';
import { INITIATION_MAC1, INITIATION_MAC2 } from '../src/wireguard/messages.js';
import { tai64n } from '../src/wireguard/tai64n.js';

/** Distinct initiations sent round robin. */
const DISTINCT = 256;
/** Datagrams per send() (one sendmmsg call each: UIO_MAXIOV). */
const BATCH = 1024;
/** Time spent sending before the event loop gets a turn (signals, the end of the run). */
const SLICE_MS = 50;

function argument(name: string): string {
  const i = process.argv.indexOf(name);
  const value = i < 0 ? undefined : process.argv[i + 1];
  if (value === undefined) throw new Error(`flooder: ${name} is required`);
  return value;
}

/** Valid initiations (mac1 set, no mac2) from a fresh static key to `responder`. */
function buildInitiations(responder: PublicKey, count: number): Uint8Array[] {
  const own = PrivateKey.generate();
  const staticStatic = new X25519Private(own.bytes).dh(responder.bytes);
  if (!staticStatic) throw new Error('flooder: the responder key is a low-order point');
  const macs = new CookieGenerator(responder.bytes);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const index = randomBytes(4).readUInt32LE(0);
    const made = createInitiation(
      own.publicKey().bytes,
      responder.bytes,
      staticStatic,
      index,
      tai64n(Date.now()),
      randomBytes,
    );
    if (!made.ok) throw new Error(`flooder: ${made.reason}`);
    macs.addMacs(made.message, INITIATION_MAC1, INITIATION_MAC2, 0);
    out.push(made.message);
  }
  return out;
}

async function main(): Promise<void> {
  const to = parseEndpoint(argument('--to'));
  if (!to.ok) throw new Error(`flooder: --to: ${to.error}`);
  const key = PublicKey.parse(argument('--key'));
  if (!key.ok) throw new Error(`flooder: --key: ${key.error}`);
  const seconds = Number(argument('--seconds'));
  if (!(seconds > 0 && seconds <= 600)) throw new Error('flooder: --seconds must be in (0, 600]');

  const messages = buildInitiations(key.key, DISTINCT);
  const batch: Datagram[] = Array.from({ length: BATCH }, (_, i) => ({
    data: messages[i % DISTINCT]!,
    endpoint: to.value,
  }));
  const bind = await LinuxUdpBind.open(0);
  const started = performance.now();
  const end = started + seconds * 1000;
  let stop = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => (stop = true));
  while (!stop && performance.now() < end) {
    const slice = Math.min(end, performance.now() + SLICE_MS);
    while (performance.now() < slice) bind.send(batch);
    await new Promise((resolve) => setImmediate(resolve));
  }
  const elapsed = (performance.now() - started) / 1000;
  const c = bind.counters;
  await bind.close();
  process.stdout.write(
    `${JSON.stringify({ sent: c.datagramsOut, refused: c.sendDropped + c.sendErrors, seconds: elapsed })}\n`,
  );
}

await main();
