#!/usr/bin/env node
/**
 * Cold per-operation latency of the keyed AEAD backends (src/crypto/aead-evp.ts), as an idle tunnel sees it:
 * one operation every `--interval` ms (default 10, like the bench's idle pings), so each finds the caches cold.
 * Every tick runs one (cipher, backend, seal|open) combination in round robin, so all see the same machine.
 * Then the same operations back to back (hot). Prints the median, p10 and p90 of each, in µs.
 *
 *   node dist/bench/aead-cold.js [--samples N] [--interval MS] [--size BYTES] [--only CIPHER/BACKEND,...]
 *
 * The backend `none` does nothing: its row is the cost of the measurement itself. For instruction counts, run
 * one combination under valgrind --tool=callgrind with N samples and with 0, and divide the difference by 2N.
 */
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createEvpAeadKey,
  createLibsodiumAeadKey,
  createNodeAeadKey,
  type AeadKey,
  type AeadName,
} from '../src/crypto/aead-evp.js';

const { values } = parseArgs({
  options: {
    samples: { type: 'string', default: '200' },
    interval: { type: 'string', default: '10' },
    size: { type: 'string', default: '84' },
    hot: { type: 'string', default: '20000' },
    only: { type: 'string' },
  },
});
const SAMPLES = Number(values.samples);
const INTERVAL = Number(values.interval);
const SIZE = Number(values.size);
const HOT = Number(values.hot);
const bounded = (n: number, max: number): boolean => Number.isInteger(n) && n >= 0 && n <= max;
if (
  !bounded(SAMPLES, 100_000) ||
  !bounded(INTERVAL, 1_000) ||
  !bounded(HOT, 10_000_000) ||
  !(SIZE > 0 && SIZE <= 9000)
) {
  console.error(
    'usage: aead-cold.js [--samples N] [--interval MS] [--size BYTES] [--hot N] [--only C/B,...]',
  );
  process.exit(2);
}

/** No cipher at all: what the timing (and, under valgrind, the loop) costs by itself. */
function noopKey(name: AeadName, _key: Uint8Array, direction: 'seal' | 'open'): AeadKey {
  return {
    name,
    direction,
    backend: 'none',
    sealInto: () => undefined,
    openInto: () => true,
    dispose: () => undefined,
  };
}

const BACKENDS = {
  libsodium: createLibsodiumAeadKey,
  openssl: createEvpAeadKey,
  node: createNodeAeadKey,
  none: noopKey,
} as const;
const CIPHERS: readonly AeadName[] = ['aes-256-gcm', 'aes-128-gcm', 'chacha20-poly1305'];
const KEY_BYTES: Record<AeadName, number> = { 'aes-128-gcm': 16, 'aes-256-gcm': 32, 'chacha20-poly1305': 32 };

interface Combo {
  readonly label: string;
  readonly seal: AeadKey;
  readonly open: AeadKey;
  readonly cold: { seal: number[]; open: number[] };
  hot: { seal: number; open: number };
}

const only = values.only?.split(',').map((s) => s.trim());
const combos: Combo[] = [];
for (const cipher of CIPHERS) {
  for (const [backend, make] of Object.entries(BACKENDS)) {
    const label = `${cipher}/${backend}`;
    if (only ? !only.includes(label) : backend === 'none' && cipher !== CIPHERS[0]) continue;
    const key = new Uint8Array(KEY_BYTES[cipher]).map((_, i) => i * 7 + 1);
    const seal = make(cipher, key, 'seal');
    const open = make(cipher, key, 'open');
    if (!seal || !open) continue;
    combos.push({ label, seal, open, cold: { seal: [], open: [] }, hot: { seal: 0, open: 0 } });
  }
}

// An OpenVPN P_DATA_V2 ping's shapes: 8 bytes of AD, a 12-byte nonce, the tag apart.
const ad = new Uint8Array(8).fill(0x48);
const nonce = new Uint8Array(12).fill(3);
const plain = new Uint8Array(SIZE).map((_, i) => i & 0xff);
const wire = new Uint8Array(SIZE);
const tag = new Uint8Array(16);
const out = new Uint8Array(SIZE);

function sealOnce(c: Combo): number {
  const t0 = process.hrtime.bigint();
  c.seal.sealInto(nonce, plain, wire, tag, ad);
  return Number(process.hrtime.bigint() - t0);
}
function openOnce(c: Combo): number {
  const t0 = process.hrtime.bigint();
  const ok = c.open.openInto(nonce, wire, tag, out, ad);
  const ns = Number(process.hrtime.bigint() - t0);
  if (!ok) throw new Error(`${c.label}: open failed`);
  return ns;
}

function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}

async function main(): Promise<void> {
  // Each combination once, so that the first sample is not the first call ever.
  for (const c of combos) {
    sealOnce(c);
    openOnce(c);
  }
  for (let i = 0; i < SAMPLES; i++) {
    for (const c of combos) {
      await sleep(INTERVAL);
      c.cold.seal.push(sealOnce(c));
      await sleep(INTERVAL);
      c.cold.open.push(openOnce(c));
    }
  }
  for (const c of combos) {
    if (HOT === 0) break;
    let t0 = process.hrtime.bigint();
    for (let i = 0; i < HOT; i++) c.seal.sealInto(nonce, plain, wire, tag, ad);
    c.hot.seal = Number(process.hrtime.bigint() - t0) / HOT;
    t0 = process.hrtime.bigint();
    for (let i = 0; i < HOT; i++) c.open.openInto(nonce, wire, tag, out, ad);
    c.hot.open = Number(process.hrtime.bigint() - t0) / HOT;
  }
  if (SAMPLES === 0 && HOT === 0) return;
  const us = (ns: number): string => (ns / 1000).toFixed(2).padStart(7);
  console.log(
    `${SIZE}-byte payload, one operation every ${INTERVAL} ms, ${SAMPLES} samples each; hot: ${HOT} back to back`,
  );
  console.log(
    'cipher/backend                 cold seal µs p50 (p10–p90)     cold open µs p50 (p10–p90)     hot seal/open µs',
  );
  for (const c of combos) {
    const s = c.cold.seal;
    const o = c.cold.open;
    console.log(
      `${c.label.padEnd(30)} ${us(quantile(s, 0.5))} (${us(quantile(s, 0.1))}–${us(quantile(s, 0.9))})   ` +
        `${us(quantile(o, 0.5))} (${us(quantile(o, 0.1))}–${us(quantile(o, 0.9))})   ${us(c.hot.seal)} ${us(c.hot.open)}`,
    );
  }
  for (const c of combos) {
    c.seal.dispose();
    c.open.dispose();
  }
}

await main();
