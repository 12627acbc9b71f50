/**
 * The stateless handshake (src/openvpn/stateless-handshake.ts): HMAC session ids accepted within their time
 * slots and refused outside them or from another address; a reset answered without any state; 10^5 spoofed
 * resets create no session and keep no memory.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  EARLY_NEG_START,
  P_ACK_V1,
  P_CONTROL_HARD_RESET_CLIENT_V2,
  P_CONTROL_HARD_RESET_CLIENT_V3,
  P_CONTROL_HARD_RESET_SERVER_V2,
  P_CONTROL_V1,
  P_CONTROL_WKC_V1,
} from '../../src/openvpn/constants.js';
import { parseEarlyNegotiation } from '../../src/openvpn/early-negotiation.js';
import { sessionId, type ControlPacket, type SessionId } from '../../src/openvpn/packet.js';
import { SessionCookies, StatelessHandshake } from '../../src/openvpn/stateless-handshake.js';
import {
  StaticKey,
  TlsCryptChannel,
  TlsCryptKeys,
  tlsCryptUnwrap,
  tlsCryptWrap,
} from '../../src/openvpn/tls-crypt.js';
import { generateClientKey, TlsCryptV2ServerKey, wrapWithWkc } from '../../src/openvpn/tls-crypt-v2.js';

const secret = (): Uint8Array => new Uint8Array(randomBytes(32));
const sid = (): SessionId => sessionId(randomBytes(8))!;
const FROM = { address: '198.51.100.7', port: 51000 };
const T0 = 1_760_000_000_000;

function reset(client: SessionId, opcode: number = P_CONTROL_HARD_RESET_CLIENT_V2): ControlPacket {
  return {
    kind: 'control',
    opcode: opcode as ControlPacket['opcode'],
    keyId: 0,
    sessionId: client,
    acks: { ids: [], remoteSessionId: undefined },
    packetId: 0,
    payload: new Uint8Array(0),
  };
}

describe('stateless handshake', () => {
  it('cookies: accepted for slots now-2 … now+1 (30 s slots for the 60 s window), refused beyond', () => {
    const cookies = new SessionCookies(secret());
    const client = sid();
    const cookie = cookies.make(client, FROM, T0);
    assert.equal(cookies.slot(T0 + 30_000) - cookies.slot(T0), 1);
    for (const dt of [-30_000, 0, 29_000, 30_000, 60_000])
      assert.ok(cookies.check(cookie, client, FROM, T0 + dt), `dt ${dt}`);
    const base = cookies.slot(T0) * 30_000;
    assert.ok(cookies.check(cookie, client, FROM, base + 89_999), 'end of slot +2');
    assert.ok(!cookies.check(cookie, client, FROM, base + 90_000), 'slot +3 refused');
    assert.ok(
      !cookies.check(cookie, client, FROM, base - 30_001),
      'slot -2 (cookie from the future) refused',
    );
    assert.ok(!cookies.check(cookie, client, { ...FROM, port: 51001 }, T0), 'other port');
    assert.ok(!cookies.check(cookie, client, { ...FROM, address: '198.51.100.8' }, T0), 'other address');
    assert.ok(!cookies.check(cookie, sid(), FROM, T0), 'other client session id');
    assert.ok(!new SessionCookies(secret()).check(cookie, client, FROM, T0), 'other secret');
  });

  it('tls-crypt: a reset is answered statelessly; the ACK from the same address establishes; others are refused', () => {
    const key = StaticKey.generate();
    const hs = new StatelessHandshake({ kind: 'tls-crypt', key }, secret());
    const client = sid();
    const clientKeys = TlsCryptKeys.fromStaticKey(key, 'client');
    const channel = new TlsCryptChannel(clientKeys);
    const out = hs.handle(channel.wrap(reset(client), T0), FROM, T0);
    assert.equal(out.kind, 'reply');
    assert.ok(out.kind === 'reply');
    const answer = tlsCryptUnwrap(clientKeys, out.bytes);
    assert.ok(answer.ok && answer.packet.kind === 'control');
    assert.equal(answer.packet.opcode, P_CONTROL_HARD_RESET_SERVER_V2);
    assert.deepEqual(answer.packet.acks.ids, [0]);
    assert.deepEqual(answer.packet.acks.remoteSessionId, client);
    assert.equal(answer.wrap.packetId, 1);
    const cookie = answer.packet.sessionId;

    const ack = (acked: SessionId, ids = [0]): Uint8Array =>
      channel.wrap(
        {
          kind: 'control',
          opcode: P_CONTROL_V1,
          keyId: 0,
          sessionId: client,
          acks: { ids, remoteSessionId: acked },
          packetId: 1,
          payload: Uint8Array.of(0x16),
        },
        T0 + 1000,
      );
    assert.deepEqual(hs.handle(ack(cookie), { ...FROM, port: 1 }, T0 + 1000), {
      kind: 'drop',
      reason: 'bad-cookie',
    });
    assert.deepEqual(hs.handle(ack(sid()), FROM, T0 + 1000), { kind: 'drop', reason: 'bad-cookie' });
    assert.deepEqual(hs.handle(ack(cookie), FROM, T0 + 200_000), { kind: 'drop', reason: 'bad-cookie' });
    assert.deepEqual(hs.handle(ack(cookie, [1]), FROM, T0 + 1000), {
      kind: 'drop',
      reason: 'no-ack-of-reset',
    });
    const ok = hs.handle(ack(cookie), FROM, T0 + 1000);
    assert.equal(ok.kind, 'establish');
    assert.ok(ok.kind === 'establish');
    assert.deepEqual(ok.clientSessionId, client);
    assert.deepEqual(ok.serverSessionId, cookie);
    // A plain ACK completes too.
    const ackOnly = channel.wrap(
      {
        kind: 'ack',
        opcode: P_ACK_V1,
        keyId: 0,
        sessionId: client,
        acks: { ids: [0], remoteSessionId: cookie },
      },
      T0,
    );
    assert.equal(hs.handle(ackOnly, FROM, T0).kind, 'establish');
    // Anything else from an address without a session is dropped.
    assert.deepEqual(hs.handle(Uint8Array.of(9 << 3, 0, 0, 1, 5), FROM, T0), {
      kind: 'drop',
      reason: 'no-session',
    });
    assert.equal(hs.handle(new Uint8Array(100), FROM, T0).kind, 'drop');
  });

  it('tls-crypt-v2: V3 reset with early negotiation → reply asking for the WKc; the WKC packet establishes with the client key', () => {
    const server = TlsCryptV2ServerKey.generate();
    const made = generateClientKey(server, { type: 'user', data: Uint8Array.from(Buffer.from('m1')) });
    const keys = TlsCryptKeys.fromStaticKey(made.clientKey, 'client');
    const hs = new StatelessHandshake({ kind: 'tls-crypt-v2', serverKey: server }, secret());
    const client = sid();
    const v3 = (packetId: number): Uint8Array =>
      wrapWithWkc(keys, made.wkc, reset(client, P_CONTROL_HARD_RESET_CLIENT_V3), {
        packetId,
        time: T0 / 1000,
      });
    assert.deepEqual(hs.handle(tlsCryptWrap(keys, reset(client), { packetId: 1, time: 1 }), FROM, T0), {
      kind: 'drop',
      reason: 'needs-v3-reset',
    });
    const out = hs.handle(v3(EARLY_NEG_START + 1), FROM, T0);
    assert.ok(out.kind === 'reply');
    const answer = tlsCryptUnwrap(keys, out.bytes);
    assert.ok(answer.ok && answer.packet.kind === 'control');
    const tlv = parseEarlyNegotiation(answer.packet.payload);
    assert.ok(tlv.ok && tlv.value.resendWkc);
    const wkcPacket = wrapWithWkc(
      keys,
      made.wkc,
      {
        kind: 'control',
        opcode: P_CONTROL_WKC_V1,
        keyId: 0,
        sessionId: client,
        acks: { ids: [0], remoteSessionId: answer.packet.sessionId },
        packetId: 1,
        payload: Uint8Array.of(0x16),
      },
      { packetId: EARLY_NEG_START + 2, time: T0 / 1000 },
    );
    const est = hs.handle(wkcPacket, FROM, T0 + 500);
    assert.ok(est.kind === 'establish');
    assert.deepEqual(est.metadata, Uint8Array.from([0, ...Buffer.from('m1')]));
    // The session's wrapper opens that packet (with its own replay window) and not a replay of it.
    assert.equal(est.wrapper.unwrap(est.bytes).ok, true);
    assert.equal(est.wrapper.unwrap(est.bytes).ok, false);
    // A P_CONTROL_V1 without the WKc cannot be completed without state.
    const plain = tlsCryptWrap(
      keys,
      {
        kind: 'control',
        opcode: P_CONTROL_V1,
        keyId: 0,
        sessionId: client,
        acks: { ids: [0], remoteSessionId: answer.packet.sessionId },
        packetId: 1,
        payload: new Uint8Array(1),
      },
      { packetId: 5, time: 1 },
    );
    assert.deepEqual(hs.handle(plain, FROM, T0), { kind: 'drop', reason: 'needs-wkc' });
  });

  it('tls-crypt-v2 without early negotiation (OpenVPN 2.5): an authenticated V3 reset establishes at once; nothing else does', () => {
    const server = TlsCryptV2ServerKey.generate();
    const made = generateClientKey(server, { type: 'user', data: Uint8Array.from(Buffer.from('m2')) });
    const keys = TlsCryptKeys.fromStaticKey(made.clientKey, 'client');
    const client = sid();
    // A 2.5 client's wrap packet ids start at 1: no EARLY_NEG_START in the top byte.
    const v3 = (wkc: Uint8Array = made.wkc, k: TlsCryptKeys = keys): Uint8Array =>
      wrapWithWkc(k, wkc, reset(client, P_CONTROL_HARD_RESET_CLIENT_V3), { packetId: 1, time: T0 / 1000 });

    const hs = new StatelessHandshake({ kind: 'tls-crypt-v2', serverKey: server }, secret());
    const est = hs.handle(v3(), FROM, T0);
    assert.ok(est.kind === 'establish', JSON.stringify(est));
    assert.equal(est.afterStatelessReset, false);
    assert.deepEqual(est.clientSessionId, client);
    assert.deepEqual(est.metadata, Uint8Array.from([0, ...Buffer.from('m2')]));
    // The session's wrapper takes the reset as its first input (once: its replay window holds it).
    assert.equal(est.wrapper.unwrap(est.bytes).ok, true);
    assert.equal(est.wrapper.unwrap(est.bytes).ok, false);
    assert.deepEqual(hs.counters, { replies: 0, established: 1, establishedAtReset: 1, dropped: 0 });

    // A WKc with one bit flipped, a WKc of another server key, a packet not sealed with the WKc's Kc, a
    // packet cut short: dropped, nothing established.
    const flipped = Uint8Array.from(made.wkc);
    flipped[10]! ^= 1;
    const other = generateClientKey(TlsCryptV2ServerKey.generate(), {
      type: 'user',
      data: new Uint8Array(1),
    });
    const tampered = v3();
    tampered[30]! ^= 0x80;
    for (const bad of [
      v3(flipped),
      v3(other.wkc, TlsCryptKeys.fromStaticKey(other.clientKey, 'client')),
      v3(made.wkc, TlsCryptKeys.fromStaticKey(StaticKey.generate(), 'client')),
      tampered,
      v3().subarray(0, 40),
    ]) {
      const out = hs.handle(bad, FROM, T0);
      assert.equal(out.kind, 'drop');
    }
    assert.equal(hs.counters.established, 1);

    // force-cookie: such clients are refused.
    const strict = new StatelessHandshake({ kind: 'tls-crypt-v2', serverKey: server }, secret(), {
      legacyTlsCryptV2: false,
    });
    assert.deepEqual(strict.handle(v3(), FROM, T0), { kind: 'drop', reason: 'no-early-negotiation' });
  });

  it('10^5 spoofed resets: every one answered, zero sessions, no memory kept', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const key = StaticKey.generate();
    const hs = new StatelessHandshake({ kind: 'tls-crypt', key }, secret());
    const channel = new TlsCryptChannel(TlsCryptKeys.fromStaticKey(key, 'client'));
    const packets = Array.from({ length: 64 }, () => channel.wrap(reset(sid()), T0));
    gc();
    const before = process.memoryUsage().heapUsed;
    let replies = 0;
    let established = 0;
    for (let i = 0; i < 100_000; i++) {
      const from = {
        address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
        port: 1024 + (i % 60000),
      };
      const out = hs.handle(packets[i % 64]!, from, T0 + i);
      if (out.kind === 'reply') replies++;
      else if (out.kind === 'establish') established++;
    }
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    assert.equal(replies, 100_000);
    assert.equal(established, 0);
    assert.deepEqual(hs.counters, { replies: 100_000, established: 0, establishedAtReset: 0, dropped: 0 });
    assert.ok(grown < 4 * 1024 * 1024, `heap grew by ${grown} bytes`);
  });
});
