/**
 * Hostile input for the parsers of the OpenVPN control session: 10^6 random and mutated inputs each
 * (bit flips, truncations, extensions, random bytes, from a seeded PRNG, spliced from genuine messages) to
 * key-method 2 (client and server), peer info, tls-auth unwrap, the stateless handshake, the control-message
 * splitter and a live ControlSession. No call may throw; each result is a value or a typed drop.
 * WEFT_FUZZ_SEED reproduces a run; WEFT_FUZZ_ITERATIONS changes the count.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { P_ACK_V1, P_CONTROL_HARD_RESET_CLIENT_V2, P_CONTROL_V1 } from '../../src/openvpn/constants.js';
import { ControlSession } from '../../src/openvpn/control-session.js';
import { serverWrapper } from '../../src/openvpn/control-wrap.js';
import {
  buildClientKeyMethod,
  buildServerKeyMethod,
  parseClientKeyMethod,
  parseServerKeyMethod,
} from '../../src/openvpn/key-method.js';
import { serializePacket, sessionId, type ControlPacket } from '../../src/openvpn/packet.js';
import { parsePeerInfo } from '../../src/openvpn/peer-info.js';
import { MessageSplitter, parseClientMessage } from '../../src/openvpn/push.js';
import { StatelessHandshake } from '../../src/openvpn/stateless-handshake.js';
import { TlsAuthKeys, tlsAuthUnwrap, tlsAuthWrap } from '../../src/openvpn/tls-auth.js';
import type { TlsEngine } from '../../src/openvpn/tls-engine.js';
import { StaticKey } from '../../src/openvpn/tls-crypt.js';

const ITERATIONS = Number(process.env.WEFT_FUZZ_ITERATIONS ?? 1_000_000);
const SEED = Number(process.env.WEFT_FUZZ_SEED ?? 0x5eed0c7);

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Yields `ITERATIONS` hostile inputs derived from `corpus` (a reused scratch buffer: consume at once). */
function* inputs(corpus: Uint8Array[], seed: number): Generator<Uint8Array> {
  const rnd = prng(seed);
  const scratch = new Uint8Array(4096);
  for (let i = 0; i < ITERATIONS; i++) {
    const base = corpus[rnd() % corpus.length]!;
    const mode = rnd() % 6;
    let length: number;
    if (mode === 0) {
      // random bytes
      length = rnd() % 300;
      for (let j = 0; j < length; j++) scratch[j] = rnd() & 0xff;
    } else {
      scratch.set(base);
      length = base.length;
      if (mode === 1 || mode === 5) {
        const flips = 1 + (rnd() % 4);
        for (let f = 0; f < flips && length > 0; f++) scratch[rnd() % length]! ^= 1 << (rnd() % 8);
      }
      if (mode === 2) length = rnd() % (base.length + 1);
      if (mode === 3) {
        const extra = 1 + (rnd() % 64);
        for (let j = 0; j < extra; j++) scratch[length + j] = rnd() & 0xff;
        length += extra;
      }
      if (mode === 4 && length > 2) {
        // a big-endian length field somewhere set to an extreme value
        const at = rnd() % (length - 1);
        scratch[at] = 0xff;
        scratch[at + 1] = rnd() & 0xff;
      }
    }
    yield scratch.subarray(0, length);
  }
}

const range = (from: number, n: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);

describe('OpenVPN control fuzz (no throw on 10^6 hostile inputs per parser)', () => {
  it('key-method 2, client and server', () => {
    const corpus = [
      buildClientKeyMethod({
        preMaster: range(0, 48),
        random1: range(1, 32),
        random2: range(2, 32),
        options: 'V4,dev-type tun,tls-client',
        username: 'u',
        password: 'p',
        peerInfo: 'IV_VER=2.6.3\nIV_PROTO=990\n',
      }),
      buildClientKeyMethod({
        preMaster: range(0, 48),
        random1: range(1, 32),
        random2: range(2, 32),
        options: 'V4',
        username: undefined,
        password: undefined,
        peerInfo: undefined,
      }),
      buildServerKeyMethod({
        random1: range(1, 32),
        random2: range(2, 32),
        options: 'V4,tls-server',
        peerInfo: undefined,
      }),
    ];
    let ok = 0;
    for (const input of inputs(corpus, SEED)) {
      if (parseClientKeyMethod(input).ok) ok++;
      if (parseServerKeyMethod(input).ok) ok++;
    }
    assert.ok(ok > 0);
  });

  it('peer info and control messages', () => {
    const corpus = [
      Buffer.from(
        'IV_VER=2.6.3\nIV_PLAT=linux\nIV_NCP=2\nIV_CIPHERS=AES-256-GCM:AES-128-GCM\nIV_PROTO=990\nIV_MTU=1600\n',
      ),
      Buffer.from('PUSH_REQUEST\0EXIT\0'),
    ].map((b) => new Uint8Array(b));
    const splitter = new MessageSplitter();
    let parsed = 0;
    for (const input of inputs(corpus, SEED + 1)) {
      const text = Buffer.from(input).toString('latin1');
      if (parsePeerInfo(text).ok) parsed++;
      for (const m of splitter.push(input)) parseClientMessage(m);
    }
    assert.ok(parsed > 0);
  });

  it('tls-auth unwrap and the stateless handshake', () => {
    const key = StaticKey.generate();
    const client = TlsAuthKeys.fromStaticKey(key, 1, 'sha256');
    const server = TlsAuthKeys.fromStaticKey(key, 0, 'sha256');
    const sid = sessionId(range(7, 8))!;
    const reset: ControlPacket = {
      kind: 'control',
      opcode: P_CONTROL_HARD_RESET_CLIENT_V2,
      keyId: 0,
      sessionId: sid,
      acks: { ids: [], remoteSessionId: undefined },
      packetId: 0,
      payload: new Uint8Array(0),
    };
    const hello: ControlPacket = {
      ...reset,
      opcode: P_CONTROL_V1,
      acks: { ids: [0], remoteSessionId: sid },
      packetId: 1,
      payload: range(0x16, 40),
    };
    const corpus = [
      tlsAuthWrap(client, reset, { packetId: 1, time: 100 }),
      tlsAuthWrap(client, hello, { packetId: 2, time: 100 }),
      serializePacket(reset),
      serializePacket(hello),
      serializePacket({
        kind: 'ack',
        opcode: P_ACK_V1,
        keyId: 0,
        sessionId: sid,
        acks: { ids: [0], remoteSessionId: sid },
      }),
    ];
    const plain = new StatelessHandshake({ kind: 'none' }, range(0, 32));
    const from = { address: '192.0.2.1', port: 1 };
    let opened = 0;
    for (const input of inputs(corpus, SEED + 2)) {
      if (tlsAuthUnwrap(server, input).ok) opened++;
      const out = plain.handle(input, from, 1_760_000_000_000);
      assert.ok(out.kind === 'reply' || out.kind === 'drop' || out.kind === 'establish');
    }
    assert.ok(opened > 0);
  });

  it('a live control session (no wrapping) takes hostile datagrams without throwing', () => {
    const sid = sessionId(range(1, 8))!;
    const ours = sessionId(range(9, 8))!;
    const engine: TlsEngine = {
      receiveCiphertext: () => undefined,
      sendPlaintext: () => undefined,
      takeCiphertext: () => [],
      takePlaintext: () => [],
      state: { kind: 'handshaking' },
      exportKeyingMaterial: () => new Uint8Array(256),
      onActivity: () => undefined,
      close: () => undefined,
    };
    const session = new ControlSession({
      serverSessionId: ours,
      clientSessionId: sid,
      wrapper: serverWrapper({ kind: 'none' }),
      tls: () => engine,
      peerId: 1,
      now: 0,
      handshakeWindowMs: 1e12,
    });
    const corpus = [
      serializePacket({
        kind: 'control',
        opcode: P_CONTROL_V1,
        keyId: 0,
        sessionId: sid,
        acks: { ids: [0], remoteSessionId: ours },
        packetId: 1,
        payload: range(0, 50),
      }),
      serializePacket({
        kind: 'ack',
        opcode: P_ACK_V1,
        keyId: 0,
        sessionId: sid,
        acks: { ids: [0, 1], remoteSessionId: ours },
      }),
    ];
    let t = 0;
    for (const input of inputs(corpus, SEED + 3)) session.receive(input, t++);
    assert.equal(session.isEnded, false);
  });
});
