/**
 * Hostile input for the OpenVPN data channel's `open`: 10⁶ datagrams, half plain random (with the first byte
 * often a data opcode and a live key id, so that they reach the replay check and the cipher), half mutations
 * of genuine sealed packets (bit flips, truncation, extension, splices, packet-id and key-id rewrites). For
 * every call: no exception, and the result is a payload class or one of the typed drop reasons. Seeded;
 * reproduce with WEFT_FUZZ_SEED=<seed>, change the count with WEFT_FUZZ_ITERATIONS.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { DATA_DROP_REASONS, DATA_V2_HEADER, DataChannel } from '../../src/openvpn/data-channel.js';
import { DATA_CIPHERS } from '../../src/openvpn/data-channel-keys.js';

const ITERATIONS = Number(process.env.WEFT_FUZZ_ITERATIONS ?? 1_000_000);
const SEED = Number(process.env.WEFT_FUZZ_SEED ?? Date.now() % 0x7fffffff);

/** xorshift32: reproducible from the seed. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

describe('OpenVPN data channel fuzz', () => {
  it(`${ITERATIONS} random and mutated datagrams into open() (seed ${SEED}): no throw, typed results`, () => {
    const next = prng(SEED);
    const block = new Uint8Array(256).map(() => next() & 0xff);
    const valid = new Set<string>([...DATA_DROP_REASONS, 'ip', 'ping', 'occ']);
    const server = new DataChannel({ role: 'server', peerId: 7 });
    const client = new DataChannel({ role: 'client', peerId: 7 });
    server.installKey(0, block, DATA_CIPHERS[SEED % 3]!);
    client.installKey(0, block, DATA_CIPHERS[SEED % 3]!);
    // Half the corpus from a client still on key 0, half on key 1 (installed last, so it seals).
    const client0 = new DataChannel({ role: 'client', peerId: 7 });
    client0.installKey(0, block, DATA_CIPHERS[SEED % 3]!);
    const block1 = block.map((b) => b ^ 0x5a);
    server.installKey(1, block1, 'CHACHA20-POLY1305');
    client.installKey(1, block1, 'CHACHA20-POLY1305');

    // A corpus of genuine packets of both keys, various sizes.
    const corpus: Uint8Array[] = [];
    for (let i = 0; i < 64; i++) {
      const payload = new Uint8Array(1 + (next() % 1500)).map(() => next() & 0xff);
      payload[0] = 0x45;
      const out = new Uint8Array(payload.length + DATA_V2_HEADER);
      const n = (i < 32 ? client0 : client).seal(payload, out);
      assert.equal(typeof n, 'number');
      corpus.push(out.subarray(0, n as number));
    }
    const scratch = new Uint8Array(4096);
    const out = new Uint8Array(2048);
    const seen = new Map<string, number>();
    const started = Date.now();
    for (let i = 0; i < ITERATIONS; i++) {
      let packet: Uint8Array;
      const r = next();
      if (i & 1) {
        // Mostly short (the header checks), sometimes up to 1600 bytes; four random bytes per draw.
        const length = r & 0x3 ? r % 80 : r % 1600;
        packet = scratch.subarray(0, length);
        for (let j = 0; j < length; j += 4) {
          const w = next();
          packet[j] = w;
          packet[j + 1] = w >>> 8;
          packet[j + 2] = w >>> 16;
          packet[j + 3] = w >>> 24;
        }
        if (length > 0 && r & 0x10000) packet[0] = (((r >>> 17) & 1 ? 9 : 6) << 3) | ((r >>> 18) & 1);
        if (length > 3 && r & 0x80000) {
          packet[1] = 0;
          packet[2] = 0;
          packet[3] = 7;
        }
      } else {
        const base = corpus[r % corpus.length]!;
        let length = base.length;
        scratch.set(base);
        switch ((r >>> 8) % 6) {
          case 0: // bit flips
            for (let k = 0; k <= (r >>> 12) % 4; k++) {
              const at = next() % length;
              scratch[at] = scratch[at]! ^ (1 << (next() % 8));
            }
            break;
          case 1: // truncation
            length = next() % (length + 1);
            break;
          case 2: // extension
            for (let k = 0; k < 1 + (next() % 32); k++) scratch[length++] = next() & 0xff;
            break;
          case 3: // packet id rewrite (0, huge, small)
            scratch[4] = next() & 0xff;
            scratch[7] = next() & 3;
            break;
          case 4: // key id and opcode rewrite
            scratch[0] = ((next() % 32) << 3) | (next() % 8);
            break;
          default: {
            // splice two genuine packets
            const other = corpus[next() % corpus.length]!;
            const cut = next() % Math.min(length, other.length);
            scratch.set(other.subarray(cut, Math.min(other.length, scratch.length - cut)), cut);
            length = Math.max(length, Math.min(other.length, scratch.length));
          }
        }
        packet = scratch.subarray(0, length);
      }
      const result = server.open(packet, out, i);
      if (!valid.has(result)) assert.fail(`untyped result ${String(result)} at iteration ${i}`);
      seen.set(result, (seen.get(result) ?? 0) + 1);
    }
    const seconds = (Date.now() - started) / 1000;
    // The mutations reach deep: the cipher rejects forgeries, and the replay window sees old ids.
    assert.ok((seen.get('authentication-failed') ?? 0) > 0, JSON.stringify([...seen]));
    assert.ok((seen.get('replayed') ?? 0) + (seen.get('too-old') ?? 0) > 0, JSON.stringify([...seen]));
    assert.ok(seconds < 20, `took ${seconds} s`);
  });
});
