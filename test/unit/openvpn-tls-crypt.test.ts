/**
 * tls-crypt and tls-crypt-v2 (src/openvpn/tls-crypt.ts, tls-crypt-v2.ts, replay.ts): key files, key
 * directions, wrap/unwrap round trips, and every kind of tampering, replay and malformed length mapped to
 * its typed drop reason. Interop with the real openvpn is in test/interop/openvpn-packet.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createHmac } from 'node:crypto';
import { inspect } from 'node:util';

import {
  P_ACK_V1,
  P_CONTROL_HARD_RESET_CLIENT_V3,
  P_CONTROL_V1,
  P_DATA_V2,
  TLS_CRYPT_OFF_CT,
  TLS_CRYPT_OFF_TAG,
  TLS_CRYPT_V2_MAX_METADATA_LENGTH,
  TLS_CRYPT_V2_MIN_WKC_LENGTH,
} from '../../src/openvpn/constants.js';
import { headerByte, sessionId, type AckPacket, type ControlPacket } from '../../src/openvpn/packet.js';
import { ReplayWindow } from '../../src/openvpn/replay.js';
import {
  formatStaticKeyFile,
  parseStaticKeyFile,
  StaticKey,
  TlsCryptChannel,
  TlsCryptKeys,
  tlsCryptUnwrap,
  tlsCryptWrap,
} from '../../src/openvpn/tls-crypt.js';
import {
  decodeMetadata,
  encodeMetadata,
  generateClientKey,
  parseClientKey,
  parseServerKey,
  splitWkc,
  TlsCryptV2ServerKey,
  unwrapClientKey,
  unwrapWithWkc,
  wrapClientKey,
  wrapWithWkc,
} from '../../src/openvpn/tls-crypt-v2.js';
import { seededRandom } from '../support/random.js';

const random = seededRandom(0x7c);
const SID = sessionId(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]))!;
const SID_PEER = sessionId(Uint8Array.from([9, 9, 9, 9, 9, 9, 9, 9]))!;

function controlPacket(
  payload: Uint8Array = Uint8Array.of(0x16, 3, 1),
  opcode: ControlPacket['opcode'] = P_CONTROL_V1,
): ControlPacket {
  return {
    kind: 'control',
    opcode,
    keyId: 0,
    sessionId: SID,
    acks: { ids: [0, 1], remoteSessionId: SID_PEER },
    packetId: 2,
    payload,
  };
}

const ackPacket: AckPacket = {
  kind: 'ack',
  opcode: P_ACK_V1,
  keyId: 1,
  sessionId: SID,
  acks: { ids: [4], remoteSessionId: SID_PEER },
};

const key = StaticKey.generate(random);
const server = TlsCryptKeys.fromStaticKey(key, 'server');
const client = TlsCryptKeys.fromStaticKey(key, 'client');

describe('tls-crypt static key file', () => {
  it('round-trips through the openvpn --genkey format', () => {
    const text = formatStaticKeyFile(key);
    assert.match(
      text,
      /^#\n# 2048 bit OpenVPN static key\n#\n-----BEGIN OpenVPN Static key V1-----\n([0-9a-f]{32}\n){16}-----END OpenVPN Static key V1-----\n$/,
    );
    const parsed = parseStaticKeyFile(text);
    assert.ok(parsed.ok && parsed.key.equals(key));
  });

  it('every malformed file is a typed error', () => {
    const text = formatStaticKeyFile(key);
    assert.deepEqual(parseStaticKeyFile(''), { ok: false, error: 'missing-begin' });
    assert.deepEqual(parseStaticKeyFile(text.replace('-----END OpenVPN Static key V1-----', '')), {
      ok: false,
      error: 'missing-end',
    });
    assert.deepEqual(parseStaticKeyFile(text.replace(/\n[0-9a-f]{32}\n/, '\nzz' + '0'.repeat(30) + '\n')), {
      ok: false,
      error: 'bad-hex',
    });
    assert.deepEqual(parseStaticKeyFile(text.replace(/\n[0-9a-f]{32}\n/, '\n')), {
      ok: false,
      error: 'wrong-length',
    });
    assert.deepEqual(parseStaticKeyFile(text.replace(/\n([0-9a-f]{32})\n/, '\n$1ab\n')), {
      ok: false,
      error: 'wrong-length',
    });
  });

  it('keys never print', () => {
    assert.equal(inspect(key), 'StaticKey(redacted)');
    assert.equal(JSON.stringify({ key, server }), '{"key":"(redacted)","server":"(redacted)"}');
    assert.equal(`${key}`, '(redacted)');
  });
});

describe('tls-crypt wrap/unwrap', () => {
  it('the server direction opens the client direction and vice versa, never its own', () => {
    const fromClient = tlsCryptWrap(client, controlPacket(), { packetId: 1, time: 1000 });
    const opened = tlsCryptUnwrap(server, fromClient);
    assert.ok(opened.ok);
    assert.deepEqual(opened.packet, controlPacket());
    assert.deepEqual(opened.wrap, { packetId: 1, time: 1000 });
    assert.deepEqual(tlsCryptUnwrap(client, fromClient), { ok: false, drop: 'authentication-failed' });
    const fromServer = tlsCryptWrap(server, ackPacket, { packetId: 1, time: 1000 });
    const ack = tlsCryptUnwrap(client, fromServer);
    assert.ok(ack.ok);
    assert.deepEqual(ack.packet, ackPacket);
  });

  it('uses key 0 for server→client and key 1 for client→server (as OpenVPN’s key directions)', () => {
    const bytes = key.exportBytes();
    const wrapped = tlsCryptWrap(server, controlPacket(), { packetId: 5, time: 77 });
    // The tag is HMAC-SHA256 keyed with key 0's HMAC half (bytes 64..96) over header ‖ plaintext.
    const plaintext = Uint8Array.of(2, 0, 0, 0, 0, 0, 0, 0, 1, ...SID_PEER, 0, 0, 0, 2, 0x16, 3, 1);
    const tag = createHmac('sha256', bytes.subarray(64, 96))
      .update(wrapped.subarray(0, TLS_CRYPT_OFF_TAG))
      .update(plaintext)
      .digest();
    assert.deepEqual(Buffer.from(wrapped.subarray(TLS_CRYPT_OFF_TAG, TLS_CRYPT_OFF_CT)), tag);
    const fromClient = tlsCryptWrap(client, controlPacket(), { packetId: 5, time: 77 });
    const clientTag = createHmac('sha256', bytes.subarray(192, 224))
      .update(fromClient.subarray(0, TLS_CRYPT_OFF_TAG))
      .update(plaintext)
      .digest();
    assert.deepEqual(Buffer.from(fromClient.subarray(TLS_CRYPT_OFF_TAG, TLS_CRYPT_OFF_CT)), clientTag);
    // Header in the clear: opcode/key id, session id, packet id, time.
    assert.equal(
      Buffer.from(wrapped.subarray(0, TLS_CRYPT_OFF_TAG)).toString('hex'),
      '20' + '0102030405060708' + '00000005' + '0000004d',
    );
  });

  it('a flipped bit anywhere (header, tag, ciphertext) fails authentication', () => {
    const wrapped = tlsCryptWrap(client, controlPacket(), { packetId: 1, time: 1 });
    for (let i = 1; i < wrapped.length; i++) {
      const bad = Uint8Array.from(wrapped);
      bad[i]! ^= 0x01;
      assert.deepEqual(
        tlsCryptUnwrap(server, bad),
        { ok: false, drop: 'authentication-failed' },
        `byte ${i}`,
      );
    }
    const keyIdFlip = Uint8Array.from(wrapped);
    keyIdFlip[0]! ^= 0x01;
    assert.deepEqual(tlsCryptUnwrap(server, keyIdFlip), { ok: false, drop: 'authentication-failed' });
  });

  it('every length too short to hold header, tag and one byte is a drop; so are data and unknown opcodes', () => {
    const wrapped = tlsCryptWrap(client, ackPacket, { packetId: 1, time: 1 });
    assert.deepEqual(tlsCryptUnwrap(server, new Uint8Array(0)), { ok: false, drop: 'too-short' });
    for (let length = 1; length <= TLS_CRYPT_OFF_CT; length++) {
      assert.deepEqual(tlsCryptUnwrap(server, wrapped.subarray(0, length)), { ok: false, drop: 'too-short' });
    }
    for (let length = TLS_CRYPT_OFF_CT + 1; length < wrapped.length; length++) {
      assert.deepEqual(tlsCryptUnwrap(server, wrapped.subarray(0, length)), {
        ok: false,
        drop: 'authentication-failed',
      });
    }
    const data = Uint8Array.from(wrapped);
    data[0] = headerByte(P_DATA_V2, 0);
    assert.deepEqual(tlsCryptUnwrap(server, data), { ok: false, drop: 'not-control' });
    data[0] = headerByte(0, 0);
    assert.deepEqual(tlsCryptUnwrap(server, data), { ok: false, drop: 'unknown-opcode' });
    data[0] = headerByte(1, 0);
    assert.deepEqual(tlsCryptUnwrap(server, data), { ok: false, drop: 'obsolete-opcode' });
  });

  it('an authenticated but malformed body is a typed drop (a peer with the key that misbehaves)', () => {
    // Forge with the real key a P_CONTROL_V1 whose body is only an ack count of 9.
    const header = Uint8Array.of(headerByte(P_CONTROL_V1, 0), ...SID, 0, 0, 0, 1, 0, 0, 0, 1);
    const plain = Uint8Array.of(9);
    const bytes = key.exportBytes();
    const tag = createHmac('sha256', bytes.subarray(192, 224)).update(header).update(plain).digest();
    // AES-256-CTR of one byte with key 1's cipher half and the tag as IV:
    const c = createCipheriv('aes-256-ctr', bytes.subarray(128, 160), tag.subarray(0, 16));
    const ct = c.update(plain);
    const packet = Uint8Array.of(...header, ...tag, ...ct);
    assert.deepEqual(tlsCryptUnwrap(server, packet), { ok: false, drop: 'too-many-acks' });
  });

  it('replay: duplicates, zero ids, old times and ids beyond the window are dropped; forgeries do not move it', () => {
    const sender = new TlsCryptChannel(client);
    const receiver = new TlsCryptChannel(server);
    const packets = Array.from({ length: 70 }, () => sender.wrap(controlPacket(), 5_000));
    assert.ok(receiver.unwrap(packets[69]!).ok);
    assert.deepEqual(receiver.unwrap(packets[69]!), { ok: false, drop: 'replayed' });
    assert.ok(receiver.unwrap(packets[10]!).ok, '59 behind: inside the 64-packet window');
    assert.deepEqual(receiver.unwrap(packets[10]!), { ok: false, drop: 'replayed' });
    assert.deepEqual(receiver.unwrap(packets[2]!), { ok: false, drop: 'too-old' });
    const zero = tlsCryptWrap(client, controlPacket(), { packetId: 0, time: 5 });
    assert.deepEqual(receiver.unwrap(zero), { ok: false, drop: 'zero-id' });
    const older = tlsCryptWrap(client, controlPacket(), { packetId: 500, time: 4 });
    assert.deepEqual(receiver.unwrap(older), { ok: false, drop: 'time-backtrack' });
    const forged = Uint8Array.from(tlsCryptWrap(client, controlPacket(), { packetId: 1000, time: 9 }));
    forged[forged.length - 1]! ^= 1;
    assert.deepEqual(receiver.unwrap(forged), { ok: false, drop: 'authentication-failed' });
    assert.ok(receiver.unwrap(packets[11]!).ok, 'the forgery did not move the window');
    const later = tlsCryptWrap(client, controlPacket(), { packetId: 1, time: 6 });
    assert.ok(receiver.unwrap(later).ok, 'a newer time starts a fresh window');
    assert.deepEqual(receiver.unwrap(packets[12]!), { ok: false, drop: 'time-backtrack' });
  });

  it('ReplayWindow on its own: every id once, in any order, within the window', () => {
    const window = new ReplayWindow(8);
    for (const id of [3, 1, 2, 8, 5]) {
      assert.equal(window.check(id, 1), 'fresh');
      window.commit(id, 1);
      assert.equal(window.check(id, 1), 'replayed');
    }
    assert.equal(window.check(4, 1), 'fresh');
    window.commit(100, 1);
    assert.equal(window.check(92, 1), 'too-old');
    assert.equal(window.check(93, 1), 'fresh');
    assert.equal(window.check(4, 1), 'too-old');
  });
});

describe('tls-crypt-v2', () => {
  const serverKey = TlsCryptV2ServerKey.generate(random);

  it('server key: PEM round trip, typed errors, never printed', () => {
    const pem = serverKey.toPem();
    assert.match(
      pem,
      /^-----BEGIN OpenVPN tls-crypt-v2 server key-----\n([A-Za-z0-9+/]{64}\n){2}[A-Za-z0-9+/=]{44}\n-----END OpenVPN tls-crypt-v2 server key-----\n$/,
    );
    const parsed = parseServerKey(pem);
    assert.ok(parsed.ok && parsed.key.toPem() === pem);
    assert.deepEqual(parseServerKey('nothing'), { ok: false, error: 'missing-begin' });
    assert.deepEqual(parseServerKey(pem.split('-----END')[0]!), { ok: false, error: 'missing-end' });
    assert.deepEqual(parseServerKey(pem.replace(/\n[A-Za-z0-9+/]{64}\n/, '\n!!\n')), {
      ok: false,
      error: 'bad-base64',
    });
    assert.deepEqual(parseServerKey(pem.replace(/\n[A-Za-z0-9+/]{64}\n/, '\n')), {
      ok: false,
      error: 'wrong-length',
    });
    assert.equal(inspect(serverKey), 'TlsCryptV2ServerKey(redacted)');
  });

  it('metadata: user bytes and timestamps round-trip; odd shapes are typed', () => {
    const user = { type: 'user', data: Uint8Array.from(Buffer.from('member:42')) } as const;
    assert.deepEqual(decodeMetadata(encodeMetadata(user)), user);
    assert.deepEqual(
      [...encodeMetadata({ type: 'timestamp', seconds: 0x0102030405n })],
      [1, 0, 0, 0, 1, 2, 3, 4, 5],
    );
    assert.deepEqual(decodeMetadata(Uint8Array.of(1, 0, 0, 0, 1, 2, 3, 4, 5)), {
      type: 'timestamp',
      seconds: 0x0102030405n,
    });
    assert.deepEqual(decodeMetadata(Uint8Array.of(1, 2)), {
      type: 'unknown',
      typeByte: 1,
      data: Uint8Array.of(2),
    });
    assert.deepEqual(decodeMetadata(Uint8Array.of(7)), {
      type: 'unknown',
      typeByte: 7,
      data: new Uint8Array(0),
    });
    assert.deepEqual(decodeMetadata(new Uint8Array(0)), { type: 'none' });
  });

  it('client keys: generated, parsed back, WKc unwrapped to the same Kc and metadata', () => {
    const made = generateClientKey(serverKey, { type: 'user', data: Uint8Array.of(1, 2, 3) }, random);
    assert.match(made.pem, /^-----BEGIN OpenVPN tls-crypt-v2 client key-----\n/);
    const parsed = parseClientKey(made.pem);
    assert.ok(parsed.ok);
    assert.ok(parsed.clientKey.equals(made.clientKey));
    assert.deepEqual(parsed.wkc, made.wkc);
    assert.equal(made.wkc.length, TLS_CRYPT_V2_MIN_WKC_LENGTH + 4);
    const unwrapped = unwrapClientKey(serverKey, made.wkc);
    assert.ok(unwrapped.ok && unwrapped.clientKey.equals(made.clientKey));
    assert.deepEqual(decodeMetadata(unwrapped.metadata), { type: 'user', data: Uint8Array.of(1, 2, 3) });
  });

  it('WKc: other server keys, flipped bits and wrong lengths are typed drops', () => {
    const wkc = wrapClientKey(serverKey, key, Uint8Array.of(0, 1));
    assert.deepEqual(unwrapClientKey(TlsCryptV2ServerKey.generate(random), wkc), {
      ok: false,
      drop: 'wkc-authentication-failed',
    });
    for (let i = 0; i < wkc.length - 2; i += 7) {
      const bad = Uint8Array.from(wkc);
      bad[i]! ^= 0x80;
      assert.deepEqual(
        unwrapClientKey(serverKey, bad),
        { ok: false, drop: 'wkc-authentication-failed' },
        `byte ${i}`,
      );
    }
    assert.deepEqual(unwrapClientKey(serverKey, wkc.subarray(1)), { ok: false, drop: 'wkc-bad-length' });
    assert.deepEqual(unwrapClientKey(serverKey, wkc.subarray(0, 100)), { ok: false, drop: 'wkc-bad-length' });
    assert.throws(
      () => wrapClientKey(serverKey, key, new Uint8Array(TLS_CRYPT_V2_MAX_METADATA_LENGTH + 1)),
      RangeError,
    );
    const longest = wrapClientKey(serverKey, key, new Uint8Array(TLS_CRYPT_V2_MAX_METADATA_LENGTH));
    assert.equal(longest.length, 1024);
    assert.ok(unwrapClientKey(serverKey, longest).ok);
  });

  it('V3 reset: the client wraps with Kc and appends WKc; the server recovers Kc and the packet', () => {
    const made = generateClientKey(serverKey, { type: 'timestamp', seconds: 1n }, random);
    const clientKeys = TlsCryptKeys.fromStaticKey(made.clientKey, 'client');
    const reset = controlPacket(new Uint8Array(0), P_CONTROL_HARD_RESET_CLIENT_V3);
    const bytes = wrapWithWkc(clientKeys, made.wkc, reset, { packetId: 0x0f000001, time: 9 });
    const result = unwrapWithWkc(serverKey, bytes);
    assert.ok(result.ok);
    assert.deepEqual(result.packet, reset);
    assert.ok(result.clientKey.equals(made.clientKey));
    // The server answers with Kc in the server direction; the client opens it.
    const answer = tlsCryptWrap(result.keys, ackPacket, { packetId: 1, time: 9 });
    assert.ok(tlsCryptUnwrap(clientKeys, answer).ok);
    // Tampering with either part, or cutting it, is a typed drop.
    const badPacket = Uint8Array.from(bytes);
    badPacket[20]! ^= 1;
    assert.deepEqual(unwrapWithWkc(serverKey, badPacket), { ok: false, drop: 'authentication-failed' });
    const badWkc = Uint8Array.from(bytes);
    badWkc[bytes.length - 10]! ^= 1;
    assert.deepEqual(unwrapWithWkc(serverKey, badWkc), { ok: false, drop: 'wkc-authentication-failed' });
    assert.deepEqual(unwrapWithWkc(serverKey, bytes.subarray(0, bytes.length - 1)), {
      ok: false,
      drop: 'wkc-bad-length',
    });
    assert.deepEqual(unwrapWithWkc(serverKey, bytes.subarray(0, 2)), { ok: false, drop: 'wkc-truncated' });
    assert.deepEqual(unwrapWithWkc(serverKey, Uint8Array.of(bytes[0]!, ...made.wkc)), {
      ok: false,
      drop: 'too-short',
    });
    assert.deepEqual(
      unwrapWithWkc(serverKey, Uint8Array.of(headerByte(P_CONTROL_V1, 0), ...bytes.subarray(1))),
      {
        ok: false,
        drop: 'no-wkc-opcode',
      },
    );
    assert.deepEqual(splitWkc(Uint8Array.of(0x50, 0x01, 0x22)), { ok: false, drop: 'wkc-truncated' });
  });

  it('client key file: typed errors for wrong lengths', () => {
    const made = generateClientKey(serverKey, { type: 'none' }, random);
    const body = Buffer.concat([made.clientKey.exportBytes(), made.wkc]);
    const pem = (bytes: Uint8Array): string =>
      `-----BEGIN OpenVPN tls-crypt-v2 client key-----\n${Buffer.from(bytes).toString('base64')}\n-----END OpenVPN tls-crypt-v2 client key-----\n`;
    assert.ok(parseClientKey(pem(body)).ok);
    assert.deepEqual(parseClientKey(pem(body.subarray(0, 300))), { ok: false, error: 'wrong-length' });
    assert.deepEqual(parseClientKey(pem(Buffer.concat([body, Buffer.of(0)]))), {
      ok: false,
      error: 'wrong-length',
    });
  });
});
