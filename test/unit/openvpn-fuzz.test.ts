/**
 * Hostile input for every OpenVPN parser in src/openvpn/: 100,000 random and mutated inputs each (truncated,
 * extended, bit-flipped, opcode-swapped, spliced from a corpus of genuine packets and key files, or plain
 * random), from a seeded PRNG. For every call: no exception, and the result is either a packet or one of the
 * typed drop reasons. Reproduce a run with WEFT_FUZZ_SEED=<seed>; WEFT_FUZZ_ITERATIONS changes the count.
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';

import {
  P_ACK_V1,
  P_CONTROL_HARD_RESET_CLIENT_V2,
  P_CONTROL_HARD_RESET_CLIENT_V3,
  P_CONTROL_V1,
  P_CONTROL_WKC_V1,
  P_DATA_V1,
  P_DATA_V2,
} from '../../src/openvpn/constants.js';
import {
  PACKET_DROP_REASONS,
  headerByte,
  parseControlBody,
  parsePacket,
  serializePacket,
  sessionId,
  type ControlPacket,
  type Packet,
} from '../../src/openvpn/packet.js';
import { TcpDeframer, frame } from '../../src/openvpn/tcp-framing.js';
import {
  formatStaticKeyFile,
  parseStaticKeyFile,
  StaticKey,
  TlsCryptChannel,
  TlsCryptKeys,
  tlsCryptWrap,
} from '../../src/openvpn/tls-crypt.js';
import {
  generateClientKey,
  parseClientKey,
  parseServerKey,
  TlsCryptV2ServerKey,
  unwrapWithWkc,
  wrapWithWkc,
} from '../../src/openvpn/tls-crypt-v2.js';
import { ReplayWindow } from '../../src/openvpn/replay.js';
import { seededRandom } from '../support/random.js';

const SEED = process.env.WEFT_FUZZ_SEED ? Number(process.env.WEFT_FUZZ_SEED) : Date.now() % 0x7fffffff;
const ITERATIONS = process.env.WEFT_FUZZ_ITERATIONS ? Number(process.env.WEFT_FUZZ_ITERATIONS) : 100_000;

const TLS_CRYPT_DROPS = new Set<string>([
  ...PACKET_DROP_REASONS,
  'too-short',
  'unknown-opcode',
  'obsolete-opcode',
  'not-control',
  'authentication-failed',
  'zero-id',
  'time-backtrack',
  'too-old',
  'replayed',
]);
const V2_DROPS = new Set<string>([
  ...TLS_CRYPT_DROPS,
  'wkc-truncated',
  'wkc-bad-length',
  'wkc-authentication-failed',
  'no-wkc-opcode',
]);
const KEY_FILE_ERRORS = new Set<string>([
  'missing-begin',
  'missing-end',
  'bad-hex',
  'bad-base64',
  'wrong-length',
]);

/** Random and mutated inputs over a corpus. */
class Mutator {
  readonly random: (n: number) => Uint8Array;
  constructor(
    seed: number,
    private readonly corpus: readonly Uint8Array[],
  ) {
    this.random = seededRandom(seed);
  }
  int(n: number): number {
    const b = this.random(4);
    return ((b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0) % n;
  }
  next(): Uint8Array {
    const base = this.corpus[this.int(this.corpus.length)]!;
    switch (this.int(8)) {
      case 0:
        return this.random(this.int(1500));
      case 1:
        return base.slice(0, this.int(base.length + 1));
      case 2:
        return Uint8Array.of(...base, ...this.random(1 + this.int(64)));
      case 3: {
        const out = Uint8Array.from(base);
        for (let flips = 1 + this.int(4); flips > 0 && out.length > 0; flips--)
          out[this.int(out.length)]! ^= 1 << this.int(8);
        return out;
      }
      case 4: {
        const out = Uint8Array.from(base);
        if (out.length > 0) out[0] = headerByte(this.int(32), this.int(8));
        return out;
      }
      case 5: {
        // Splice two corpus entries.
        const other = this.corpus[this.int(this.corpus.length)]!;
        return Uint8Array.of(
          ...base.subarray(0, this.int(base.length + 1)),
          ...other.subarray(this.int(other.length + 1)),
        );
      }
      case 6: {
        // Overwrite a length-like field (an ack count or the WKc length at the end) with a random value.
        const out = Uint8Array.from(base);
        if (out.length > 10) out[9] = this.int(256);
        if (out.length > 2) out[out.length - 1 - this.int(2)] = this.int(256);
        return out;
      }
      default:
        return Uint8Array.from(base);
    }
  }
}

function note(t: TestContext): void {
  t.diagnostic(`WEFT_FUZZ_SEED=${SEED} WEFT_FUZZ_ITERATIONS=${ITERATIONS}`);
}

const sid = sessionId(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]))!;
const peer = sessionId(Uint8Array.from([8, 7, 6, 5, 4, 3, 2, 1]))!;
const samples: Packet[] = [
  {
    kind: 'control',
    opcode: P_CONTROL_HARD_RESET_CLIENT_V2,
    keyId: 0,
    sessionId: sid,
    acks: { ids: [], remoteSessionId: undefined },
    packetId: 0,
    payload: new Uint8Array(0),
  },
  {
    kind: 'control',
    opcode: P_CONTROL_V1,
    keyId: 2,
    sessionId: sid,
    acks: { ids: [0, 1, 2], remoteSessionId: peer },
    packetId: 3,
    payload: new Uint8Array(100).fill(0x16),
  },
  { kind: 'ack', opcode: P_ACK_V1, keyId: 0, sessionId: sid, acks: { ids: [5], remoteSessionId: peer } },
  { kind: 'data-v1', opcode: P_DATA_V1, keyId: 0, payload: new Uint8Array(40) },
  { kind: 'data-v2', opcode: P_DATA_V2, keyId: 1, peerId: 7, payload: new Uint8Array(60) },
];
const controls = samples.filter(
  (p): p is ControlPacket | Extract<Packet, { kind: 'ack' }> => p.kind === 'control' || p.kind === 'ack',
);

describe('OpenVPN parsers under hostile input', () => {
  it(`parsePacket and parseControlBody: ${ITERATIONS} inputs`, (t) => {
    note(t);
    const reasons = new Set<string>(PACKET_DROP_REASONS);
    const m = new Mutator(SEED, samples.map(serializePacket));
    let ok = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      const input = m.next();
      const result = parsePacket(input);
      if (result.ok) ok++;
      else assert.ok(reasons.has(result.drop), result.drop);
      const body = parseControlBody(m.int(12), input, m.int(12));
      if (!body.ok) assert.ok(reasons.has(body.drop), body.drop);
    }
    t.diagnostic(`${ok} parsed, ${ITERATIONS - ok} dropped`);
  });

  it(`tls-crypt unwrap (with a replay window): ${ITERATIONS} inputs, no forgery accepted`, (t) => {
    note(t);
    const key = StaticKey.generate(seededRandom(SEED + 1));
    const client = TlsCryptKeys.fromStaticKey(key, 'client');
    const server = new TlsCryptChannel(TlsCryptKeys.fromStaticKey(key, 'server'));
    const genuine = controls.map((p, i) => tlsCryptWrap(client, p, { packetId: i + 1, time: 100 }));
    const m = new Mutator(SEED + 2, genuine);
    const genuineHex = new Set(genuine.map((g) => Buffer.from(g).toString('hex')));
    let accepted = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      const input = m.next();
      const result = server.unwrap(input);
      if (result.ok) {
        accepted++;
        assert.ok(genuineHex.has(Buffer.from(input).toString('hex')), 'only genuine packets authenticate');
      } else assert.ok(TLS_CRYPT_DROPS.has(result.drop), result.drop);
    }
    assert.ok(accepted <= genuine.length, 'each genuine packet is accepted at most once (replay window)');
  });

  it(`tls-crypt-v2 unwrap of V3 / WKC packets: ${ITERATIONS} inputs`, (t) => {
    note(t);
    const random = seededRandom(SEED + 3);
    const serverKey = TlsCryptV2ServerKey.generate(random);
    const made = generateClientKey(serverKey, { type: 'user', data: Uint8Array.of(1, 2, 3) }, random);
    const clientKeys = TlsCryptKeys.fromStaticKey(made.clientKey, 'client');
    const genuine = ([P_CONTROL_HARD_RESET_CLIENT_V3, P_CONTROL_WKC_V1] as const).map((opcode, i) =>
      wrapWithWkc(
        clientKeys,
        made.wkc,
        { ...(samples[1] as ControlPacket), opcode },
        { packetId: 0x0f000001 + i, time: 5 },
      ),
    );
    const m = new Mutator(SEED + 4, genuine);
    const genuineHex = new Set(genuine.map((g) => Buffer.from(g).toString('hex')));
    for (let i = 0; i < ITERATIONS; i++) {
      const input = m.next();
      const result = unwrapWithWkc(serverKey, input, new ReplayWindow());
      if (result.ok)
        assert.ok(genuineHex.has(Buffer.from(input).toString('hex')), 'only genuine packets authenticate');
      else assert.ok(V2_DROPS.has(result.drop), result.drop);
    }
  });

  it(`TCP deframer: ${ITERATIONS} chunks over mutated streams`, (t) => {
    note(t);
    const stream = Uint8Array.from(Buffer.concat(samples.map((p) => frame(serializePacket(p)))));
    const m = new Mutator(SEED + 5, [stream]);
    let deframer = new TcpDeframer(512);
    for (let i = 0; i < ITERATIONS; i++) {
      const result = deframer.push(m.next().subarray(0, 1 + m.int(200)));
      for (const p of result.packets) assert.ok(p.length >= 1 && p.length <= 512);
      assert.ok(deframer.pending <= 514);
      if (result.error) {
        assert.ok(result.error.kind === 'oversize' || result.error.kind === 'empty-frame');
        deframer = new TcpDeframer(512);
      }
    }
  });

  it(`key files (static, tls-crypt-v2 server and client): ${ITERATIONS} inputs`, (t) => {
    note(t);
    const random = seededRandom(SEED + 6);
    const serverKey = TlsCryptV2ServerKey.generate(random);
    const texts = [
      formatStaticKeyFile(StaticKey.generate(random)),
      serverKey.toPem(),
      generateClientKey(serverKey, { type: 'timestamp', seconds: 1n }, random).pem,
    ].map((s) => new Uint8Array(Buffer.from(s)));
    const m = new Mutator(SEED + 7, texts);
    for (let i = 0; i < ITERATIONS; i++) {
      const text = Buffer.from(m.next()).toString('latin1');
      for (const result of [parseStaticKeyFile(text), parseServerKey(text), parseClientKey(text)]) {
        if (!result.ok) assert.ok(KEY_FILE_ERRORS.has(result.error), result.error);
      }
    }
  });
});
