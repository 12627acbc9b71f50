/**
 * Message framing (src/wireguard/messages.ts) and TAI64N timestamps (src/wireguard/tai64n.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TIMESTAMP_WHITENING_NS } from '../../src/wireguard/constants.js';
import {
  encodeCookieReply,
  INITIATION_MAC1,
  INITIATION_MAC2,
  newInitiation,
  newResponse,
  parseMessage,
  RESPONSE_MAC1,
  RESPONSE_MAC2,
  writeTransportHeader,
  type ParsedMessage,
} from '../../src/wireguard/messages.js';
import { TAI64N_LENGTH, tai64n, tai64nAfter } from '../../src/wireguard/tai64n.js';

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

/** A datagram of `length` bytes: the type word, then the byte pattern 0x10, 0x11, ... (mod 256). */
function datagram(type: number, length: number): Uint8Array {
  const b = new Uint8Array(length);
  for (let i = 4; i < length; i++) b[i] = (i + 0x0c) & 0xff;
  if (length > 0) b[0] = type;
  return b;
}

/** The pattern `datagram` writes, for [from, to). */
function pattern(from: number, to: number): string {
  const out = new Uint8Array(to - from);
  for (let i = from; i < to; i++) out[i - from] = (i + 0x0c) & 0xff;
  return hex(out);
}

function assertView(view: Uint8Array, of: Uint8Array, offset: number, length: number): void {
  assert.equal(view.buffer, of.buffer, 'a view, not a copy');
  assert.equal(view.byteOffset, of.byteOffset + offset);
  assert.equal(view.length, length);
}

function expectType<T extends ParsedMessage['type']>(
  m: ParsedMessage,
  type: T,
): Extract<ParsedMessage, { type: T }> {
  assert.equal(m.type, type);
  return m as Extract<ParsedMessage, { type: T }>;
}

describe('parseMessage: handshake initiation (type 1, 148 bytes)', () => {
  it('yields the sender and views of every field', () => {
    const b = datagram(1, 148);
    b.set([0x78, 0x56, 0x34, 0x12], 4);
    const m = expectType(parseMessage(b), 'initiation');
    assert.equal(m.bytes, b);
    assert.equal(m.sender, 0x12345678);
    assertView(m.ephemeral, b, 8, 32);
    assertView(m.encryptedStatic, b, 40, 48);
    assertView(m.encryptedTimestamp, b, 88, 28);
    assertView(m.mac1, b, 116, 16);
    assertView(m.mac2, b, 132, 16);
    assert.equal(hex(m.ephemeral), pattern(8, 40));
    assert.equal(hex(m.mac2), pattern(132, 148));
    assert.equal(INITIATION_MAC1, 116);
    assert.equal(INITIATION_MAC2, 132);
  });

  it('reads the sender as an unsigned little-endian u32', () => {
    const b = datagram(1, 148);
    b.set([0x98, 0xba, 0xdc, 0xfe], 4);
    assert.equal(expectType(parseMessage(b), 'initiation').sender, 0xfedcba98);
  });

  it('works on a view with a nonzero byte offset', () => {
    const big = new Uint8Array(200);
    const b = big.subarray(7, 7 + 148);
    b[0] = 1;
    b.set([1, 0, 0, 0], 4);
    const m = expectType(parseMessage(b), 'initiation');
    assert.equal(m.sender, 1);
    assertView(m.ephemeral, b, 8, 32);
    assert.equal(m.ephemeral.byteOffset, 15);
  });
});

describe('parseMessage: handshake response (type 2, 92 bytes)', () => {
  it('yields sender, receiver and views of every field', () => {
    const b = datagram(2, 92);
    b.set([1, 2, 3, 4], 4);
    b.set([0xff, 0xff, 0xff, 0xff], 8);
    const m = expectType(parseMessage(b), 'response');
    assert.equal(m.bytes, b);
    assert.equal(m.sender, 0x04030201);
    assert.equal(m.receiver, 0xffffffff);
    assertView(m.ephemeral, b, 12, 32);
    assertView(m.encryptedNothing, b, 44, 16);
    assertView(m.mac1, b, 60, 16);
    assertView(m.mac2, b, 76, 16);
    assert.equal(hex(m.encryptedNothing), pattern(44, 60));
    assert.equal(RESPONSE_MAC1, 60);
    assert.equal(RESPONSE_MAC2, 76);
  });
});

describe('parseMessage: cookie reply (type 3, 64 bytes)', () => {
  it('yields the receiver and views of nonce and cookie', () => {
    const b = datagram(3, 64);
    b.set([0x00, 0x00, 0x00, 0x80], 4);
    const m = expectType(parseMessage(b), 'cookie-reply');
    assert.equal(m.receiver, 0x80000000);
    assertView(m.nonce, b, 8, 24);
    assertView(m.encryptedCookie, b, 32, 32);
    assert.equal(hex(m.nonce), pattern(8, 32));
    assert.equal(hex(m.encryptedCookie), pattern(32, 64));
  });
});

describe('parseMessage: transport data (type 4, at least 32 bytes)', () => {
  it('yields receiver, counter and a view of the sealed payload at exactly 32 bytes', () => {
    const b = datagram(4, 32);
    b.set([0xef, 0xbe, 0xad, 0xde], 4);
    b.set([5, 0, 0, 0, 0, 0, 0, 0], 8);
    const m = expectType(parseMessage(b), 'transport');
    assert.equal(m.receiver, 0xdeadbeef);
    assert.equal(m.counter, 5);
    assertView(m.sealed, b, 16, 16);
  });

  it('sealed covers everything after the 16-byte header, for any length from 32', () => {
    for (const length of [33, 47, 48, 1420 + 32, 65535]) {
      const m = expectType(parseMessage(datagram(4, length)), 'transport');
      assert.equal(m.sealed.length, length - 16);
      assert.equal(m.sealed.byteOffset, 16);
    }
  });

  it('decodes the counter as a little-endian u64, exactly below 2^53', () => {
    const cases: [number[], number][] = [
      [[0, 0, 0, 0, 0, 0, 0, 0], 0],
      [[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], 0xffffffff],
      [[0, 0, 0, 0, 1, 0, 0, 0], 2 ** 32],
      [[5, 0, 0, 0, 1, 0, 0, 0], 2 ** 32 + 5],
      [[0x05, 0x04, 0x03, 0x02, 0x01, 0, 0, 0], 0x0102030405],
      [[0, 0, 0, 0x80, 0, 0, 0, 0], 2 ** 31],
      [[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0], Number.MAX_SAFE_INTEGER],
      [[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x02, 0], 0x02334455667788],
    ];
    for (const [bytes, counter] of cases) {
      const b = datagram(4, 32);
      b.set(bytes, 8);
      assert.equal(expectType(parseMessage(b), 'transport').counter, counter, hex(Uint8Array.from(bytes)));
    }
  });

  it('counters of 2^53 and beyond decode to values the replay limit rejects', () => {
    const b = datagram(4, 32);
    b.set([0, 0, 0, 0, 0, 0, 0x20, 0], 8);
    assert.equal(expectType(parseMessage(b), 'transport').counter, 2 ** 53);
    b.fill(0xff, 8, 16);
    const huge = expectType(parseMessage(b), 'transport').counter;
    assert.equal(huge, 2 ** 64);
    assert.ok(huge > Number.MAX_SAFE_INTEGER);
  });

  it('writeTransportHeader round-trips through parseMessage, including counters above 2^32', () => {
    const counters = [
      0,
      1,
      255,
      256,
      2 ** 31,
      2 ** 32 - 1,
      2 ** 32,
      2 ** 32 + 1,
      2 ** 40 + 12345,
      2 ** 52 + 3,
      Number.MAX_SAFE_INTEGER,
    ];
    for (const counter of counters) {
      const b = new Uint8Array(48).fill(0xaa);
      writeTransportHeader(b, 0x01020304, counter);
      assert.equal(hex(b.subarray(0, 8)), '0400000004030201');
      assert.equal(hex(b.subarray(16)), 'aa'.repeat(32), 'the payload is not touched');
      const m = expectType(parseMessage(b), 'transport');
      assert.equal(m.counter, counter);
      assert.equal(m.receiver, 0x01020304);
    }
  });

  it('writeTransportHeader lays the counter out little-endian across both words', () => {
    const b = new Uint8Array(32).fill(0xff);
    writeTransportHeader(b, 0xfffffffe, 0x0102030405);
    assert.equal(hex(b.subarray(0, 16)), '04000000' + 'feffffff' + '0504030201000000');
    writeTransportHeader(b, 0, Number.MAX_SAFE_INTEGER);
    assert.equal(hex(b.subarray(0, 16)), '04000000' + '00000000' + 'ffffffffffff1f00');
  });
});

describe('parseMessage: lengths', () => {
  const exact: Record<number, number> = { 1: 148, 2: 92, 3: 64 };
  const names: Record<number, string> = { 1: 'initiation', 2: 'response', 3: 'cookie-reply', 4: 'transport' };

  for (const type of [1, 2, 3]) {
    it(`type ${type}: only length ${exact[type]} parses; every other length 0..200 is invalid`, () => {
      for (let length = 0; length <= 200; length++) {
        const m = parseMessage(datagram(type, length));
        if (length === exact[type]) {
          assert.equal(m.type, names[type]);
        } else {
          assert.deepEqual(
            m,
            { type: 'invalid', reason: length < 4 ? 'too-short' : 'bad-length' },
            `type ${type}, length ${length}`,
          );
        }
      }
    });
  }

  it('type 4: lengths 0..31 are invalid, 32..200 parse', () => {
    for (let length = 0; length < 32; length++) {
      assert.deepEqual(
        parseMessage(datagram(4, length)),
        { type: 'invalid', reason: length < 4 ? 'too-short' : 'bad-length' },
        `length ${length}`,
      );
    }
    for (let length = 32; length <= 200; length++) {
      const m = expectType(parseMessage(datagram(4, length)), 'transport');
      assert.equal(m.sealed.length, length - 16);
    }
  });
});

describe('parseMessage: type word', () => {
  it('nonzero reserved bytes make any type unknown', () => {
    for (const [type, length] of [
      [1, 148],
      [2, 92],
      [3, 64],
      [4, 32],
      [4, 100],
    ] as const) {
      for (const at of [1, 2, 3]) {
        for (const value of [1, 0x80, 0xff]) {
          const b = datagram(type, length);
          b[at] = value;
          assert.deepEqual(
            parseMessage(b),
            { type: 'invalid', reason: 'unknown-type' },
            `type ${type}, byte ${at} = ${value}`,
          );
        }
      }
    }
  });

  it('types 0, 5 and 255 are unknown at every length from 4', () => {
    for (const type of [0, 5, 255]) {
      for (const length of [4, 5, 16, 31, 32, 33, 64, 92, 148, 200]) {
        assert.deepEqual(
          parseMessage(datagram(type, length)),
          { type: 'invalid', reason: 'unknown-type' },
          `type ${type}, length ${length}`,
        );
      }
      assert.deepEqual(parseMessage(datagram(type, 3)), { type: 'invalid', reason: 'too-short' });
    }
  });

  it('the type byte shifted into a reserved byte is not a type', () => {
    const b = new Uint8Array(148);
    b[3] = 1;
    assert.deepEqual(parseMessage(b), { type: 'invalid', reason: 'unknown-type' });
  });
});

describe('building messages', () => {
  it('newInitiation: 148 bytes, type 1, sender little-endian, everything else zero', () => {
    const b = newInitiation(0xdeadbeef);
    assert.equal(b.length, 148);
    assert.equal(hex(b.subarray(0, 8)), '01000000efbeadde');
    assert.equal(hex(b.subarray(8)), '00'.repeat(140));
    assert.equal(expectType(parseMessage(b), 'initiation').sender, 0xdeadbeef);
    assert.equal(hex(newInitiation(1).subarray(4, 8)), '01000000');
  });

  it('newResponse: 92 bytes, type 2, sender then receiver little-endian, everything else zero', () => {
    const b = newResponse(0x01020304, 0xa0b0c0d0);
    assert.equal(b.length, 92);
    assert.equal(hex(b.subarray(0, 12)), '02000000' + '04030201' + 'd0c0b0a0');
    assert.equal(hex(b.subarray(12)), '00'.repeat(80));
    const m = expectType(parseMessage(b), 'response');
    assert.equal(m.sender, 0x01020304);
    assert.equal(m.receiver, 0xa0b0c0d0);
  });

  it('encodeCookieReply: 64 bytes, type 3, receiver little-endian, nonce at 8, cookie at 32', () => {
    const nonce = Uint8Array.from({ length: 24 }, (_, i) => 0x40 + i);
    const cookie = Uint8Array.from({ length: 32 }, (_, i) => 0x80 + i);
    const b = encodeCookieReply(0x11223344, nonce, cookie);
    assert.equal(b.length, 64);
    assert.equal(hex(b.subarray(0, 8)), '03000000' + '44332211');
    assert.equal(hex(b.subarray(8, 32)), hex(nonce));
    assert.equal(hex(b.subarray(32, 64)), hex(cookie));
    const m = expectType(parseMessage(b), 'cookie-reply');
    assert.equal(m.receiver, 0x11223344);
    assert.equal(hex(m.nonce), hex(nonce));
    assert.equal(hex(m.encryptedCookie), hex(cookie));
  });
});

describe('TAI64N', () => {
  it('encodes the Unix epoch as 2^62 + 10 seconds and zero nanoseconds', () => {
    const t = tai64n(0);
    assert.equal(TAI64N_LENGTH, 12);
    assert.equal(t.length, 12);
    assert.equal(hex(t), '400000000000000a' + '00000000');
  });

  it('encodes 1_700_000_000_123.456 ms with nanoseconds whitened to a multiple of 2^24', () => {
    // 1_700_000_000 s = 0x6553f100; 123_456_000 ns rounds down to 7 × 2^24 = 117_440_512 = 0x07000000.
    assert.equal(TIMESTAMP_WHITENING_NS, 2 ** 24);
    assert.equal(hex(tai64n(1_700_000_000_123.456)), '400000006553f10a' + '07000000');
  });

  it('encodes other known values exactly', () => {
    assert.equal(hex(tai64n(1000)), '400000000000000b00000000');
    assert.equal(hex(tai64n(16)), '400000000000000a00000000', '16 ms is below 2^24 ns');
    assert.equal(hex(tai64n(17)), '400000000000000a01000000', '17 ms is in the second bucket');
    assert.equal(hex(tai64n(999.999)), '400000000000000a3b000000', '999_999_000 ns → 59 × 2^24');
    assert.equal(hex(tai64n(2 ** 32 * 1000)), '400000010000000a00000000', 'seconds past 32 bits');
    assert.equal(hex(tai64n(1_700_000_000_999)), '400000006553f10a3b000000');
  });

  it('the nanosecond field is always a multiple of 2^24 and below 10^9', () => {
    for (let ms = 1_700_000_000_000; ms < 1_700_000_001_000; ms += 7.3) {
      const t = tai64n(ms);
      const nanos = new DataView(t.buffer, t.byteOffset).getUint32(8, false);
      assert.equal(nanos % TIMESTAMP_WHITENING_NS, 0, `${ms}`);
      assert.ok(nanos < 1e9);
      assert.equal(new DataView(t.buffer, t.byteOffset).getBigUint64(0, false), 0x400000006553f10an);
    }
  });

  it('times within one whitening bucket encode equal, and neither is after the other', () => {
    // Bucket 7 spans 117_440_512 ns to 134_217_727 ns.
    const a = tai64n(1_700_000_000_118);
    const b = tai64n(1_700_000_000_134);
    assert.equal(hex(a), hex(b));
    assert.equal(tai64nAfter(a, b), false);
    assert.equal(tai64nAfter(b, a), false);
    const c = tai64n(1_700_000_000_135);
    assert.equal(hex(c), '400000006553f10a08000000');
    assert.equal(tai64nAfter(c, b), true);
    assert.equal(tai64nAfter(b, c), false);
  });

  it('orders timestamps monotonically across buckets and seconds', () => {
    const times = [
      0,
      17,
      34,
      999.999,
      1000,
      1017,
      59_000,
      1_700_000_000_000,
      1_700_000_000_135,
      2 ** 32 * 1000,
    ];
    const stamps = times.map((t) => tai64n(t));
    for (let i = 0; i < stamps.length; i++) {
      assert.equal(tai64nAfter(stamps[i]!, stamps[i]!), false, `${times[i]} is not after itself`);
      for (let j = 0; j < stamps.length; j++) {
        assert.equal(tai64nAfter(stamps[i]!, stamps[j]!), i > j, `${times[i]} after ${times[j]}`);
      }
    }
  });

  it('tai64nAfter compares big-endian: the first differing byte decides', () => {
    const zero = new Uint8Array(12);
    const lastByte = new Uint8Array(12);
    lastByte[11] = 1;
    const firstByte = new Uint8Array(12);
    firstByte[0] = 1;
    const mixed = new Uint8Array(12).fill(0xff);
    mixed[0] = 0;
    assert.equal(tai64nAfter(lastByte, zero), true);
    assert.equal(tai64nAfter(zero, lastByte), false);
    assert.equal(tai64nAfter(firstByte, mixed), true);
    assert.equal(tai64nAfter(mixed, firstByte), false);
    assert.equal(tai64nAfter(zero, zero), false);
    assert.equal(tai64nAfter(Uint8Array.from(mixed), mixed), false);
  });
});
