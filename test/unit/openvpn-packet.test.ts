/**
 * The OpenVPN wire format (src/openvpn/packet.ts) and TCP framing (src/openvpn/tcp-framing.ts): round trips
 * of every packet kind, and every malformed length of each layout mapped to its typed drop reason.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  MAX_ACKS_PER_PACKET,
  P_ACK_V1,
  P_CONTROL_HARD_RESET_CLIENT_V2,
  P_CONTROL_HARD_RESET_CLIENT_V3,
  P_CONTROL_HARD_RESET_SERVER_V2,
  P_CONTROL_SOFT_RESET_V1,
  P_CONTROL_V1,
  P_CONTROL_WKC_V1,
  P_DATA_V1,
  P_DATA_V2,
  PEER_ID_UNDEFINED,
  TCP_DEFAULT_MAX_PACKET,
} from '../../src/openvpn/constants.js';
import {
  headerByte,
  parseControlBody,
  parseHeaderByte,
  parsePacket,
  serializeControlBody,
  serializePacket,
  sessionId,
  type AckPacket,
  type ControlPacket,
  type Packet,
  type PacketDropReason,
} from '../../src/openvpn/packet.js';
import { frame, TcpDeframer } from '../../src/openvpn/tcp-framing.js';
import { seededRandom } from '../support/random.js';

const SID_A = sessionId(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]))!;
const SID_B = sessionId(Uint8Array.from([0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8]))!;

function control(
  opcode: ControlPacket['opcode'],
  acks: number[],
  payload: number[],
  keyId = 0,
): ControlPacket {
  return {
    kind: 'control',
    opcode,
    keyId,
    sessionId: SID_A,
    acks: { ids: acks, remoteSessionId: acks.length > 0 ? SID_B : undefined },
    packetId: 0x01020304,
    payload: Uint8Array.from(payload),
  };
}

function parsedOk(bytes: Uint8Array): Packet {
  const result = parsePacket(bytes);
  assert.ok(result.ok, `expected a packet, got ${JSON.stringify(result)}`);
  return result.packet;
}

function dropOf(bytes: Uint8Array): PacketDropReason {
  const result = parsePacket(bytes);
  assert.ok(!result.ok, `expected a drop for ${Buffer.from(bytes).toString('hex')}`);
  return result.drop;
}

describe('OpenVPN header byte', () => {
  it('is opcode << 3 | key id, for every opcode and key id', () => {
    for (let opcode = 0; opcode < 32; opcode++) {
      for (let keyId = 0; keyId < 8; keyId++) {
        const byte = headerByte(opcode, keyId);
        assert.equal(byte, (opcode << 3) | keyId);
        assert.deepEqual(parseHeaderByte(byte), { opcode, keyId });
      }
    }
  });

  it('P_CONTROL_HARD_RESET_CLIENT_V2 with key id 0 is 0x38; P_DATA_V2 key id 1 is 0x49', () => {
    assert.equal(headerByte(P_CONTROL_HARD_RESET_CLIENT_V2, 0), 0x38);
    assert.equal(headerByte(P_DATA_V2, 1), 0x49);
  });
});

describe('OpenVPN packets: round trips', () => {
  const cases: [string, Packet][] = [
    ['client hard reset V2, no acks, empty payload', control(P_CONTROL_HARD_RESET_CLIENT_V2, [], [])],
    ['server hard reset V2 acking the client', control(P_CONTROL_HARD_RESET_SERVER_V2, [0], [])],
    ['soft reset with key id 3', control(P_CONTROL_SOFT_RESET_V1, [], [], 3)],
    [
      'P_CONTROL_V1 with a TLS record and 8 acks',
      control(P_CONTROL_V1, [1, 2, 3, 4, 5, 6, 7, 0xffffffff], [0x16, 3, 1]),
    ],
    [
      'P_ACK_V1 with one ack',
      {
        kind: 'ack',
        opcode: P_ACK_V1,
        keyId: 7,
        sessionId: SID_A,
        acks: { ids: [9], remoteSessionId: SID_B },
      },
    ],
    ['P_DATA_V1', { kind: 'data-v1', opcode: P_DATA_V1, keyId: 2, payload: Uint8Array.from([1, 2, 3]) }],
    [
      'P_DATA_V2 with a peer id',
      { kind: 'data-v2', opcode: P_DATA_V2, keyId: 0, peerId: 0x123456, payload: Uint8Array.from([9]) },
    ],
    [
      'P_DATA_V2 without an assigned peer id',
      {
        kind: 'data-v2',
        opcode: P_DATA_V2,
        keyId: 1,
        peerId: PEER_ID_UNDEFINED,
        payload: Uint8Array.from([9, 9]),
      },
    ],
  ];
  for (const [name, packet] of cases) {
    it(name, () => {
      const bytes = serializePacket(packet);
      assert.deepEqual(parsedOk(bytes), packet);
      assert.deepEqual(serializePacket(parsedOk(bytes)), bytes);
    });
  }

  it('lays out a control packet as opcode ‖ session id ‖ acks ‖ remote session id ‖ packet id ‖ payload', () => {
    const bytes = serializePacket(control(P_CONTROL_V1, [5], [0xaa]));
    assert.equal(
      Buffer.from(bytes).toString('hex'),
      '20' + '0102030405060708' + '01' + '00000005' + 'f1f2f3f4f5f6f7f8' + '01020304' + 'aa',
    );
  });

  it('a control body parses on its own (as tls-crypt hands it over after decryption)', () => {
    const body = serializeControlBody({ ids: [1, 2], remoteSessionId: SID_B }, 7, Uint8Array.from([1]));
    assert.deepEqual(parseControlBody(P_CONTROL_V1, body), {
      ok: true,
      body: { acks: { ids: [1, 2], remoteSessionId: SID_B }, packetId: 7, payload: Uint8Array.from([1]) },
    });
  });

  it('refuses to serialise what it would not parse (a caller mistake throws)', () => {
    assert.throws(() => serializePacket(control(P_CONTROL_V1, [1, 2, 3, 4, 5, 6, 7, 8, 9], [])), RangeError);
    const noAcks: AckPacket = {
      kind: 'ack',
      opcode: P_ACK_V1,
      keyId: 0,
      sessionId: SID_A,
      acks: { ids: [], remoteSessionId: undefined },
    };
    assert.throws(() => serializePacket(noAcks), RangeError);
    assert.throws(() => serializePacket({ ...control(P_CONTROL_V1, [], []), keyId: 8 }), RangeError);
    assert.throws(
      () =>
        serializePacket({ ...control(P_CONTROL_V1, [], []), acks: { ids: [1], remoteSessionId: undefined } }),
      RangeError,
    );
  });

  it('sessionId() takes exactly 8 bytes', () => {
    assert.equal(sessionId(new Uint8Array(7)), undefined);
    assert.equal(sessionId(new Uint8Array(9)), undefined);
    assert.ok(sessionId(new Uint8Array(8)));
  });
});

describe('OpenVPN packets: every malformed length is a typed drop', () => {
  it('empty input', () => assert.equal(dropOf(new Uint8Array(0)), 'empty'));

  it('unknown and obsolete opcodes', () => {
    for (const opcode of [0, 12, 13, 20, 31]) {
      assert.equal(dropOf(Uint8Array.of(headerByte(opcode, 0), ...new Uint8Array(40))), 'unknown-opcode');
    }
    for (const opcode of [1, 2]) {
      assert.equal(dropOf(Uint8Array.of(headerByte(opcode, 0), ...new Uint8Array(40))), 'obsolete-opcode');
    }
  });

  it('V3 resets and WKC packets need tls-crypt-v2', () => {
    for (const opcode of [P_CONTROL_HARD_RESET_CLIENT_V3, P_CONTROL_WKC_V1]) {
      assert.equal(
        dropOf(Uint8Array.of(headerByte(opcode, 0), ...new Uint8Array(400))),
        'needs-tls-crypt-v2',
      );
    }
  });

  it('every truncation of a control packet with two acks names the field it cut', () => {
    const full = serializePacket(control(P_CONTROL_V1, [1, 2], []));
    // 1 opcode, 8 session id, 1 count, 8 ack ids, 8 remote session id, 4 packet id = 30 bytes.
    assert.equal(full.length, 30);
    const expected = (length: number): PacketDropReason => {
      if (length === 0) return 'empty';
      if (length < 9) return 'truncated-session-id';
      if (length < 10) return 'truncated-ack-count';
      if (length < 18) return 'truncated-ack-ids';
      if (length < 26) return 'truncated-remote-session-id';
      return 'truncated-packet-id';
    };
    for (let length = 0; length < full.length; length++) {
      assert.equal(dropOf(full.subarray(0, length)), expected(length), `length ${length}`);
    }
    assert.ok(parsePacket(full).ok);
  });

  it('every truncation of a control packet without acks', () => {
    const full = serializePacket(control(P_CONTROL_HARD_RESET_CLIENT_V2, [], []));
    assert.equal(full.length, 14);
    for (let length = 1; length < full.length; length++) {
      const reason =
        length < 9 ? 'truncated-session-id' : length < 10 ? 'truncated-ack-count' : 'truncated-packet-id';
      assert.equal(dropOf(full.subarray(0, length)), reason, `length ${length}`);
    }
  });

  it('more than 8 acks', () => {
    const bytes = Uint8Array.of(
      headerByte(P_CONTROL_V1, 0),
      ...SID_A,
      MAX_ACKS_PER_PACKET + 1,
      ...new Uint8Array(60),
    );
    assert.equal(dropOf(bytes), 'too-many-acks');
    const max = Uint8Array.of(headerByte(P_ACK_V1, 0), ...SID_A, 255, ...new Uint8Array(2000));
    assert.equal(dropOf(max), 'too-many-acks');
  });

  it('P_ACK_V1: exactly its ack array — no ids, trailing bytes and truncations are drops', () => {
    const ack = serializePacket({
      kind: 'ack',
      opcode: P_ACK_V1,
      keyId: 0,
      sessionId: SID_A,
      acks: { ids: [3], remoteSessionId: SID_B },
    });
    assert.equal(ack.length, 1 + 8 + 1 + 4 + 8);
    assert.equal(dropOf(Uint8Array.of(...ack, 0)), 'trailing-bytes');
    assert.equal(dropOf(Uint8Array.of(...ack, 0, 0, 0, 0)), 'trailing-bytes');
    assert.equal(dropOf(Uint8Array.of(headerByte(P_ACK_V1, 0), ...SID_A, 0)), 'ack-without-ids');
    assert.equal(dropOf(ack.subarray(0, 21)), 'truncated-remote-session-id');
    assert.equal(dropOf(ack.subarray(0, 12)), 'truncated-ack-ids');
  });

  it('data packets: P_DATA_V1 needs a payload, P_DATA_V2 a peer id and a payload', () => {
    assert.equal(dropOf(Uint8Array.of(headerByte(P_DATA_V1, 0))), 'empty-data');
    assert.equal(dropOf(Uint8Array.of(headerByte(P_DATA_V2, 0))), 'truncated-peer-id');
    assert.equal(dropOf(Uint8Array.of(headerByte(P_DATA_V2, 0), 0, 0)), 'truncated-peer-id');
    assert.equal(dropOf(Uint8Array.of(headerByte(P_DATA_V2, 0), 0, 0, 1)), 'empty-data');
    assert.ok(parsePacket(Uint8Array.of(headerByte(P_DATA_V2, 0), 0, 0, 1, 0)).ok);
  });

  it('a parsed packet owns its bytes (later changes to the input do not reach it)', () => {
    const bytes = serializePacket(control(P_CONTROL_V1, [1], [1, 2, 3]));
    const packet = parsedOk(bytes);
    bytes.fill(0);
    assert.ok(packet.kind === 'control');
    assert.deepEqual([...packet.payload], [1, 2, 3]);
    assert.deepEqual([...packet.sessionId], [...SID_A]);
    assert.deepEqual([...packet.acks.remoteSessionId!], [...SID_B]);
  });
});

describe('OpenVPN TCP framing', () => {
  const packets = [
    Uint8Array.of(1),
    new Uint8Array(1500).fill(7),
    Uint8Array.of(2, 3),
    new Uint8Array(TCP_DEFAULT_MAX_PACKET).fill(9),
  ];

  it('prefixes a 16-bit big-endian length', () => {
    assert.deepEqual([...frame(Uint8Array.of(0xaa, 0xbb))], [0, 2, 0xaa, 0xbb]);
    assert.deepEqual([...frame(new Uint8Array(0x1234)).subarray(0, 2)], [0x12, 0x34]);
    assert.throws(() => frame(new Uint8Array(0x10000)), RangeError);
  });

  it('yields the same packets whatever the chunking (all of it at once, byte by byte, random)', () => {
    const stream = Buffer.concat(packets.map(frame));
    const random = seededRandom(0x0f3a);
    const chunkings: number[][] = [[stream.length], Array.from({ length: stream.length }, () => 1)];
    for (let run = 0; run < 50; run++) {
      const sizes: number[] = [];
      for (let left = stream.length; left > 0;) {
        const size = Math.min(left, 1 + ((random(2)[0]! | (random(1)[0]! << 8)) % 3000));
        sizes.push(size);
        left -= size;
      }
      chunkings.push(sizes);
    }
    for (const sizes of chunkings) {
      const deframer = new TcpDeframer();
      const out: Uint8Array[] = [];
      let at = 0;
      for (const size of sizes) {
        const result = deframer.push(stream.subarray(at, at + size));
        assert.equal(result.error, undefined);
        out.push(...result.packets);
        at += size;
        assert.ok(deframer.pending <= TCP_DEFAULT_MAX_PACKET + 2, 'holds at most one frame');
      }
      assert.deepEqual(out, packets);
      assert.equal(deframer.pending, 0);
    }
  });

  it('an oversize length is a typed error that poisons the stream, with the packets before it kept', () => {
    const deframer = new TcpDeframer(100);
    const result = deframer.push(Uint8Array.of(...frame(Uint8Array.of(5)), 0, 101, ...new Uint8Array(101)));
    assert.deepEqual(result.packets, [Uint8Array.of(5)]);
    assert.deepEqual(result.error, { kind: 'oversize', length: 101, max: 100 });
    const later = deframer.push(frame(Uint8Array.of(1)));
    assert.deepEqual(later.packets, []);
    assert.deepEqual(later.error, { kind: 'oversize', length: 101, max: 100 });
    assert.deepEqual(new TcpDeframer().push(Uint8Array.of(0xff, 0xff)).error, {
      kind: 'oversize',
      length: 0xffff,
      max: TCP_DEFAULT_MAX_PACKET,
    });
  });

  it('a zero length is a typed error', () => {
    assert.deepEqual(new TcpDeframer().push(Uint8Array.of(0, 0, 0, 1, 7)).error, { kind: 'empty-frame' });
  });

  it('a frame of exactly the maximum passes; the deframer with the smallest maximum still reads its prefix', () => {
    const deframer = new TcpDeframer(1);
    assert.deepEqual(deframer.push(Uint8Array.of(0, 1, 42, 0, 1, 43)).packets, [
      Uint8Array.of(42),
      Uint8Array.of(43),
    ]);
    assert.throws(() => new TcpDeframer(0), RangeError);
    assert.throws(() => new TcpDeframer(0x10000), RangeError);
  });
});
