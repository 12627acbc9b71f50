/**
 * OpenVPN's data channel (src/openvpn/data-channel*.ts): key slicing, P_DATA_V2 seal/open for each cipher
 * between a client and a server channel, P_DATA_V1 on receive, every malformed input to its typed drop, the
 * replay window (OpenVPN's --replay-window 64 15), packet-id exhaustion, key slots through a renegotiation,
 * and payload classes (IP, ping, OCC).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes, type CipherGCMTypes } from 'node:crypto';
import { inspect } from 'node:util';

import {
  DATA_DROP_REASONS,
  DATA_V2_HEADER,
  DataChannel,
  PACKET_ID_WRAP_TRIGGER,
  isDrop,
  type OpenResult,
} from '../../src/openvpn/data-channel.js';
import {
  DATA_CIPHERS,
  parseDataCipher,
  sliceDataKeys,
  type DataCipherName,
} from '../../src/openvpn/data-channel-keys.js';
import {
  buildOccExit,
  buildPing,
  OCC_EXIT,
  OCC_MAGIC,
  PING_STRING,
} from '../../src/openvpn/data-channel-payload.js';
import { DataReplayWindow } from '../../src/openvpn/data-channel-replay.js';

const PEER_ID = 0x0a0b0c;
const AEAD: Record<DataCipherName, string> = {
  'AES-256-GCM': 'aes-256-gcm',
  'AES-128-GCM': 'aes-128-gcm',
  'CHACHA20-POLY1305': 'chacha20-poly1305',
};
const KEY_BYTES: Record<DataCipherName, number> = {
  'AES-256-GCM': 32,
  'AES-128-GCM': 16,
  'CHACHA20-POLY1305': 32,
};

/** A minimal IPv4 header and some payload. */
function ipPacket(size = 100): Uint8Array {
  const p = new Uint8Array(randomBytes(size));
  p[0] = 0x45;
  return p;
}

function pair(
  cipher: DataCipherName = 'AES-256-GCM',
  block: Uint8Array = new Uint8Array(randomBytes(256)),
  options: { transport?: 'udp' | 'tcp' } = {},
): { client: DataChannel; server: DataChannel; block: Uint8Array } {
  const client = new DataChannel({ role: 'client', peerId: PEER_ID, ...options });
  const server = new DataChannel({ role: 'server', peerId: PEER_ID, ...options });
  client.installKey(0, block, cipher);
  server.installKey(0, block, cipher);
  return { client, server, block };
}

function sealed(channel: DataChannel, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(payload.length + DATA_V2_HEADER);
  const n = channel.seal(payload, out);
  assert.equal(typeof n, 'number', `seal refused: ${String(n)}`);
  return out.subarray(0, n as number);
}

function open(
  channel: DataChannel,
  packet: Uint8Array,
  now = 0,
): { result: OpenResult; payload: Uint8Array } {
  const out = new Uint8Array(2048);
  const result = channel.open(packet, out, now);
  return { result, payload: out.subarray(0, isDrop(result) ? 0 : channel.opened.length) };
}

/** Independent reference: what OpenVPN's openvpn_encrypt_aead makes of `payload`, with node:crypto. */
function referenceV2(
  block: Uint8Array,
  cipher: DataCipherName,
  sender: 'client' | 'server',
  keyId: number,
  peerId: number,
  packetId: number,
  payload: Uint8Array,
): Uint8Array {
  const half = sender === 'client' ? 0 : 128; // client sends with keys[0], server with keys[1]
  const key = block.subarray(half, half + KEY_BYTES[cipher]);
  const implicit = block.subarray(half + 64, half + 72);
  const head = Buffer.alloc(8);
  head[0] = (9 << 3) | keyId;
  head.writeUIntBE(peerId, 1, 3);
  head.writeUInt32BE(packetId, 4);
  const nonce = Buffer.concat([head.subarray(4, 8), implicit]);
  const c = createCipheriv(AEAD[cipher] as CipherGCMTypes, key, nonce, { authTagLength: 16 });
  c.setAAD(head, { plaintextLength: payload.length });
  const ct = Buffer.concat([c.update(payload), c.final()]);
  return new Uint8Array(Buffer.concat([head, c.getAuthTag(), ct]));
}

function referenceV1(
  block: Uint8Array,
  cipher: DataCipherName,
  keyId: number,
  packetId: number,
  payload: Uint8Array,
): Uint8Array {
  const key = block.subarray(0, KEY_BYTES[cipher]);
  const pid = Buffer.alloc(4);
  pid.writeUInt32BE(packetId);
  const nonce = Buffer.concat([pid, block.subarray(64, 72)]);
  const c = createCipheriv(AEAD[cipher] as CipherGCMTypes, key, nonce, { authTagLength: 16 });
  c.setAAD(pid, { plaintextLength: payload.length });
  const ct = Buffer.concat([c.update(payload), c.final()]);
  return new Uint8Array(Buffer.concat([Buffer.of((6 << 3) | keyId), pid, c.getAuthTag(), ct]));
}

describe('OpenVPN data channel: keys', () => {
  it('parses cipher names as OpenVPN spells them, and nothing else', () => {
    assert.equal(parseDataCipher('aes-256-gcm'), 'AES-256-GCM');
    assert.equal(parseDataCipher('CHACHA20-POLY1305'), 'CHACHA20-POLY1305');
    assert.equal(parseDataCipher('AES-256-CBC'), undefined);
    assert.equal(parseDataCipher('none'), undefined);
  });

  it('slices keys[0] for the client to send and keys[1] for the server, implicit IV from the hmac half', () => {
    const block = new Uint8Array(256).map((_, i) => i);
    for (const cipher of DATA_CIPHERS) {
      const c = sliceDataKeys(block, cipher, 'client');
      const s = sliceDataKeys(block, cipher, 'server');
      assert.deepEqual(c.send, s.receive);
      assert.deepEqual(c.receive, s.send);
      assert.deepEqual(c.send.key, block.slice(0, KEY_BYTES[cipher]));
      assert.deepEqual(c.send.implicitIv, block.slice(64, 72));
      assert.deepEqual(s.send.key, block.slice(128, 128 + KEY_BYTES[cipher]));
      assert.deepEqual(s.send.implicitIv, block.slice(192, 200));
    }
    assert.throws(() => sliceDataKeys(new Uint8Array(255), 'AES-256-GCM', 'client'), RangeError);
  });
});

describe('OpenVPN data channel: seal and open', () => {
  for (const cipher of DATA_CIPHERS) {
    it(`${cipher}: client and server round trip, byte for byte the reference layout`, () => {
      const { client, server, block } = pair(cipher);
      for (let i = 1; i <= 3; i++) {
        const up = ipPacket(40 + i * 300);
        const wire = sealed(client, up);
        assert.deepEqual(wire, referenceV2(block, cipher, 'client', 0, PEER_ID, i, up));
        const got = open(server, wire);
        assert.equal(got.result, 'ip');
        assert.deepEqual(got.payload, up);
        assert.equal(server.opened.packetId, i);
        assert.equal(server.opened.keyId, 0);

        const down = ipPacket(1400);
        const back = sealed(server, down);
        assert.deepEqual(back, referenceV2(block, cipher, 'server', 0, PEER_ID, i, down));
        assert.deepEqual(open(client, back).payload, down);
      }
      // A packet a channel sealed itself does not open with its own receive key (directions differ).
      assert.equal(open(client, sealed(client, ipPacket())).result, 'authentication-failed');
    });

    it(`${cipher}: opens P_DATA_V1 (AD is the packet id alone)`, () => {
      const { server, block } = pair(cipher);
      const payload = ipPacket(200);
      const got = open(server, referenceV1(block, cipher, 0, 1, payload));
      assert.equal(got.result, 'ip');
      assert.deepEqual(got.payload, payload);
    });
  }

  it('drops every malformed length, opcode, peer id, key id, and a packet id of 0', () => {
    const { client, server, block } = pair();
    const good = sealed(client, ipPacket(64));
    assert.equal(open(server, new Uint8Array(0)).result, 'empty');
    for (let n = 1; n <= DATA_V2_HEADER; n++)
      assert.equal(open(server, good.subarray(0, n)).result, 'too-short');
    for (let n = 1; n <= 21; n++)
      assert.equal(open(server, Uint8Array.of((6 << 3) | 0, ...new Uint8Array(n - 1))).result, 'too-short');
    const control = Uint8Array.from(good);
    control[0] = (4 << 3) | 0;
    assert.equal(open(server, control).result, 'not-data');
    const peer = Uint8Array.from(good);
    peer[3] = peer[3]! ^ 1;
    assert.equal(open(server, peer).result, 'peer-id-mismatch');
    const key = Uint8Array.from(good);
    key[0] = (9 << 3) | 3;
    assert.equal(open(server, key).result, 'unknown-key-id');
    assert.equal(
      open(server, referenceV2(block, 'AES-256-GCM', 'client', 0, PEER_ID, 0, ipPacket())).result,
      'zero-packet-id',
    );
    assert.equal(open(server, good).result, 'ip');
    // Output buffer too small: a typed drop, and the packet id is not consumed.
    const next = sealed(client, ipPacket(64));
    assert.equal(server.open(next, new Uint8Array(10), 0), 'buffer-too-small');
    assert.equal(open(server, next).result, 'ip');
    for (const reason of [
      'empty',
      'too-short',
      'not-data',
      'peer-id-mismatch',
      'unknown-key-id',
      'zero-packet-id',
      'buffer-too-small',
    ] as const)
      assert.ok(server.drops[reason] > 0, reason);
  });

  it('every flipped bit is a typed drop, and the untouched packet still opens afterwards', () => {
    const { client, server } = pair('CHACHA20-POLY1305');
    const good = sealed(client, ipPacket(80));
    for (let byte = 0; byte < good.length; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = Uint8Array.from(good);
        bad[byte] = bad[byte]! ^ (1 << bit);
        const { result } = open(server, bad);
        assert.ok(isDrop(result), `byte ${byte} bit ${bit}: ${result}`);
        assert.ok((DATA_DROP_REASONS as readonly string[]).includes(result));
        // Packet id 1 with its low bit flipped is 0, refused before the cipher.
        const expected = byte === 7 && bit === 0 ? 'zero-packet-id' : 'authentication-failed';
        if (byte >= 4) assert.equal(result, expected, `byte ${byte} bit ${bit}`);
      }
    }
    // Forgeries (even with a higher packet id) did not move the replay window.
    assert.equal(open(server, good).result, 'ip');
  });

  it('refuses to seal without a key, an empty payload, or into a small buffer', () => {
    const lone = new DataChannel({ role: 'server', peerId: 1 });
    assert.equal(lone.seal(ipPacket(), new Uint8Array(2000)), 'no-key');
    const { client } = pair();
    assert.equal(client.seal(new Uint8Array(0), new Uint8Array(100)), 'empty-payload');
    assert.equal(client.seal(ipPacket(100), new Uint8Array(100 + DATA_V2_HEADER - 1)), 'buffer-too-small');
  });

  it('keys never show in inspect or JSON', () => {
    const block = new Uint8Array(256).fill(0xab);
    const { server } = pair('AES-128-GCM', block);
    assert.doesNotMatch(inspect(server), /ab|171/);
    assert.doesNotMatch(JSON.stringify(server), /ab|171/);
  });
});

describe('OpenVPN data channel: replay window (--replay-window 64 15)', () => {
  it('a packet opens once; the same packet again is a replay', () => {
    const { client, server } = pair();
    const p = sealed(client, ipPacket());
    assert.equal(open(server, p).result, 'ip');
    assert.equal(open(server, p).result, 'replayed');
    assert.equal(server.drops.replayed, 1);
  });

  it('reordering within 64 packets is accepted once each; further back is too old', () => {
    const { client, server } = pair();
    const packets = Array.from({ length: 70 }, () => sealed(client, ipPacket(30)));
    assert.equal(open(server, packets[69]!).result, 'ip'); // id 70
    assert.equal(open(server, packets[5]!).result, 'too-old'); // id 6: 64 behind
    assert.equal(open(server, packets[6]!).result, 'ip'); // id 7: 63 behind
    assert.equal(open(server, packets[6]!).result, 'replayed');
    for (let i = 68; i >= 7; i--) assert.equal(open(server, packets[i]!).result, 'ip');
  });

  it('a late packet is accepted only while the packets after it are younger than 15 s', () => {
    const { client, server } = pair();
    const [a, b, c] = [sealed(client, ipPacket()), sealed(client, ipPacket()), sealed(client, ipPacket())];
    assert.equal(open(server, c!, 1_000).result, 'ip'); // id 3 at t=1 s
    assert.equal(open(server, b!, 15_900).result, 'ip'); // id 2: id 3 is 14.9 s old
    assert.equal(open(server, a!, 16_100).result, 'expired'); // id 1: id 3 is 15.1 s old
  });

  it('over TCP, packet ids must follow each other', () => {
    const { client, server } = pair('AES-128-GCM', undefined, { transport: 'tcp' });
    const [a, b, c] = [sealed(client, ipPacket()), sealed(client, ipPacket()), sealed(client, ipPacket())];
    assert.equal(open(server, a!).result, 'ip');
    assert.equal(open(server, c!).result, 'out-of-sequence');
    assert.equal(open(server, b!).result, 'ip');
    assert.equal(open(server, c!).result, 'ip');
  });

  it('the window alone: id 0, window edges, reset on a jump of more than the window', () => {
    const w = new DataReplayWindow('udp', 4, 1000);
    assert.equal(w.check(0, 0), 'zero-packet-id');
    w.commit(10, 0);
    assert.equal(w.check(7, 0), 'fresh');
    assert.equal(w.check(6, 0), 'too-old');
    w.commit(100, 0);
    assert.equal(w.check(10, 0), 'too-old');
    assert.equal(w.check(99, 0), 'fresh');
  });
});

describe('OpenVPN data channel: packet-id exhaustion', () => {
  it('asks for renegotiation at the wrap trigger and refuses to wrap', () => {
    const { client, server } = pair();
    client.setSendPacketIdForTest(PACKET_ID_WRAP_TRIGGER - 2);
    sealed(client, ipPacket());
    assert.equal(client.renegotiationDue, false);
    assert.equal(open(server, sealed(client, ipPacket())).result, 'ip');
    assert.equal(client.renegotiationDue, true);
    client.setSendPacketIdForTest(0xfffffffe);
    const last = sealed(client, ipPacket());
    assert.equal(open(server, last).result, 'ip');
    assert.equal(server.opened.packetId, 0xffffffff);
    assert.equal(client.seal(ipPacket(), new Uint8Array(2000)), 'packet-id-exhausted');
    // A new key id starts again at 1.
    const next = new Uint8Array(randomBytes(256));
    client.installKey(1, next, 'AES-256-GCM');
    server.installKey(1, next, 'AES-256-GCM');
    assert.equal(client.renegotiationDue, false);
    assert.equal(open(server, sealed(client, ipPacket())).result, 'ip');
    assert.equal(server.opened.packetId, 1);
  });
});

describe('OpenVPN data channel: key slots', () => {
  it('through a renegotiation: new key seals, old key still opens, until retired', () => {
    const { client, server, block } = pair('AES-256-GCM');
    const inFlight = sealed(client, ipPacket()); // key 0, id 1
    const block1 = new Uint8Array(randomBytes(256));
    server.installKey(1, block1, 'CHACHA20-POLY1305');
    client.installKey(1, block1, 'CHACHA20-POLY1305');
    assert.deepEqual(server.keyIds, [0, 1]);
    assert.equal(server.sendKeyId, 1);
    assert.equal(server.cipher, 'CHACHA20-POLY1305');
    const fresh = sealed(client, ipPacket());
    assert.equal(fresh[0]! & 7, 1);
    assert.equal(open(server, fresh).result, 'ip');
    assert.equal(server.opened.keyId, 1);
    assert.equal(open(server, inFlight).result, 'ip', 'old key opens during the transition window');
    assert.equal(server.opened.keyId, 0);
    // Another late packet of key 0.
    assert.equal(
      open(server, referenceV2(block, 'AES-256-GCM', 'client', 0, PEER_ID, 2, ipPacket())).result,
      'ip',
    );
    assert.ok(server.retireKey(0));
    assert.equal(server.retireKey(0), false);
    assert.deepEqual(server.keyIds, [1]);
    const afterRetire = referenceV2(block, 'AES-256-GCM', 'client', 0, PEER_ID, 3, ipPacket());
    assert.equal(open(server, afterRetire).result, 'unknown-key-id');
    assert.equal(open(server, sealed(client, ipPacket())).result, 'ip');
  });

  it('a third key retires the oldest; a key id cannot be installed twice', () => {
    const { server } = pair();
    server.installKey(1, new Uint8Array(256), 'AES-128-GCM');
    server.installKey(2, new Uint8Array(256), 'AES-128-GCM');
    assert.deepEqual(server.keyIds, [1, 2]);
    assert.throws(() => server.installKey(2, new Uint8Array(256), 'AES-128-GCM'), RangeError);
    assert.throws(() => server.installKey(8, new Uint8Array(256), 'AES-128-GCM'), RangeError);
    server.dispose();
    assert.deepEqual(server.keyIds, []);
  });
});

describe('OpenVPN data channel: payload classes', () => {
  it('ping, OCC exit, and what is not an IP packet', () => {
    const { client, server } = pair('AES-128-GCM');
    assert.deepEqual(buildPing(), Uint8Array.from(PING_STRING));
    assert.equal(open(server, sealed(client, buildPing())).result, 'ping');
    assert.equal(open(server, sealed(client, buildOccExit())).result, 'occ');
    assert.equal(server.opened.occOpcode, OCC_EXIT);
    assert.equal(open(server, sealed(client, Uint8Array.from(OCC_MAGIC))).result, 'malformed-occ');
    assert.equal(open(server, sealed(client, Uint8Array.of(0xfa, 0x45, 0, 0))).result, 'compressed');
    assert.equal(open(server, sealed(client, Uint8Array.of(0x50, 0x45, 0, 0))).result, 'compressed');
    assert.equal(open(server, sealed(client, Uint8Array.of(0x00, 1, 2, 3))).result, 'not-ip');
    const v6 = ipPacket(60);
    v6[0] = 0x60;
    assert.equal(open(server, sealed(client, v6)).result, 'ip');
    // A ping with a byte more is not a ping.
    assert.equal(open(server, sealed(client, Uint8Array.of(...PING_STRING, 0))).result, 'not-ip');
  });
});
