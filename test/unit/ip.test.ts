/**
 * Addresses, prefixes and endpoints as text and bytes (src/net/ip.ts, src/net/endpoint.ts) and the inner IP
 * header reader (src/net/ip-packet.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { endpointBytes, formatEndpoint, parseEndpoint, sameEndpoint } from '../../src/net/endpoint.js';
import { readIpHeader } from '../../src/net/ip-packet.js';
import {
  addressLength,
  formatAddress,
  formatPrefix,
  hostAddress,
  hostNumber,
  maskBytes,
  parseAddress,
  parsePrefix,
  prefixContains,
  sameAddress,
  type Address,
  type ParseResult,
} from '../../src/net/ip.js';
import { ipv4, ipv6 } from '../support/packets.js';
import { seededRandom } from '../support/random.js';

function ok<T>(r: ParseResult<T>): T {
  if (!r.ok) assert.fail(`expected ok, got error ${r.error}`);
  return r.value;
}

function bytesOf(text: string): number[] {
  return [...ok(parseAddress(text)).bytes];
}

function v6(...words: number[]): Address {
  assert.equal(words.length, 8);
  const bytes = new Uint8Array(16);
  words.forEach((w, i) => {
    bytes[i * 2] = w >> 8;
    bytes[i * 2 + 1] = w & 0xff;
  });
  return { family: 6, bytes };
}

/** The WHATWG URL parser's IPv6 serialiser: RFC 5952 compression, computed by code outside this project. */
function urlCanonical(address: Address): string {
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((address.bytes[i]! << 8) | address.bytes[i + 1]!).toString(16));
  return new URL(`http://[${words.join(':')}]/`).hostname.slice(1, -1);
}

describe('parseAddress: IPv4', () => {
  const cases: [string, number[]][] = [
    ['192.0.2.1', [192, 0, 2, 1]],
    ['0.0.0.0', [0, 0, 0, 0]],
    ['255.255.255.255', [255, 255, 255, 255]],
    ['10.0.0.1', [10, 0, 0, 1]],
    ['1.2.3.4', [1, 2, 3, 4]],
  ];
  for (const [text, bytes] of cases) {
    it(`${text} → bytes and back`, () => {
      const a = ok(parseAddress(text));
      assert.equal(a.family, 4);
      assert.ok(a.bytes instanceof Uint8Array);
      assert.deepEqual([...a.bytes], bytes);
      assert.equal(formatAddress(a), text);
    });
  }

  it('ignores surrounding whitespace', () => {
    assert.deepEqual(bytesOf(' 10.0.0.1\t'), [10, 0, 0, 1]);
  });
});

describe('parseAddress: IPv6', () => {
  it('2001:db8::1', () => {
    const a = ok(parseAddress('2001:db8::1'));
    assert.equal(a.family, 6);
    assert.deepEqual([...a.bytes], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert.equal(formatAddress(a), '2001:db8::1');
  });

  it(':: and ::1', () => {
    assert.deepEqual(bytesOf('::'), new Array(16).fill(0));
    assert.equal(formatAddress(ok(parseAddress('::'))), '::');
    assert.deepEqual(bytesOf('::1'), [...new Array(15).fill(0), 1]);
    assert.equal(formatAddress(ok(parseAddress('::1'))), '::1');
  });

  it('drops a zone index: fe80::1%eth0', () => {
    const a = ok(parseAddress('fe80::1%eth0'));
    assert.equal(a.family, 6);
    assert.deepEqual([...a.bytes], [0xfe, 0x80, ...new Array(13).fill(0), 1]);
    assert.equal(formatAddress(a), 'fe80::1');
  });

  it('::ffff:1.2.3.4 (embedded IPv4) → bytes, and its formatted form parses back to the same bytes', () => {
    const a = ok(parseAddress('::ffff:1.2.3.4'));
    assert.equal(a.family, 6);
    assert.deepEqual([...a.bytes], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4]);
    assert.deepEqual(bytesOf(formatAddress(a)), [...a.bytes]);
    assert.deepEqual(bytesOf('::ffff:1.2.3.4%eth0'), [...a.bytes]);
  });

  it('other embedded IPv4 forms: ::1.2.3.4, 64:ff9b::192.0.2.33, 1:2:3:4:5:6:255.254.253.252', () => {
    assert.deepEqual(bytesOf('::1.2.3.4'), [...new Array(12).fill(0), 1, 2, 3, 4]);
    assert.deepEqual(bytesOf('64:ff9b::192.0.2.33'), [
      0,
      0x64,
      0xff,
      0x9b,
      ...new Array(8).fill(0),
      192,
      0,
      2,
      33,
    ]);
    assert.deepEqual(
      bytesOf('1:2:3:4:5:6:255.254.253.252'),
      [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 255, 254, 253, 252],
    );
  });

  it('full, upper-case and leading-zero forms canonicalise (RFC 5952 §4.1, §4.3)', () => {
    assert.equal(formatAddress(ok(parseAddress('2001:0DB8:0000:0000:0000:0000:0000:0001'))), '2001:db8::1');
    assert.equal(formatAddress(ok(parseAddress('FE80::ABCD:00EF'))), 'fe80::abcd:ef');
    assert.deepEqual(bytesOf('1:2:3:4:5:6:7:8'), [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
    assert.deepEqual(bytesOf('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), new Array(16).fill(0xff));
    assert.deepEqual(bytesOf('1::'), [0, 1, ...new Array(14).fill(0)]);
    assert.deepEqual(bytesOf('1:2:3:4:5:6:7::'), [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0]);
    assert.deepEqual(bytesOf('::2:3:4:5:6:7:8'), [0, 0, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
  });
});

describe('formatAddress: RFC 5952 canonical text', () => {
  const cases: [number[], string][] = [
    [[0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], '2001:db8::1'],
    [[0, 0, 0, 0, 0, 0, 0, 0], '::'],
    [[0, 0, 0, 0, 0, 0, 0, 1], '::1'],
    [[1, 0, 0, 0, 0, 0, 0, 0], '1::'],
    [[0xfe80, 0, 0, 0, 0, 0, 0, 0], 'fe80::'],
    // §4.2.2: a single zero group is not compressed.
    [[0x2001, 0xdb8, 0, 1, 1, 1, 1, 1], '2001:db8:0:1:1:1:1:1'],
    [[0, 1, 2, 3, 4, 5, 6, 7], '0:1:2:3:4:5:6:7'],
    [[1, 2, 3, 4, 5, 6, 7, 0], '1:2:3:4:5:6:7:0'],
    [[1, 0, 2, 0, 3, 0, 4, 0], '1:0:2:0:3:0:4:0'],
    // §4.2.3: the longest run is compressed; of equal runs, the first.
    [[0x2001, 0, 0, 1, 0, 0, 0, 1], '2001:0:0:1::1'],
    [[0x2001, 0xdb8, 0, 0, 1, 0, 0, 1], '2001:db8::1:0:0:1'],
    [[1, 0, 0, 2, 0, 0, 3, 4], '1::2:0:0:3:4'],
    [[0, 0, 1, 0, 0, 0, 0, 0], '0:0:1::'],
    [[0, 0, 0, 1, 0, 0, 0, 0], '0:0:0:1::'],
    [[0, 0, 0, 1, 0, 0, 0, 2], '::1:0:0:0:2'],
    [[1, 0, 0, 0, 0, 0, 0, 2], '1::2'],
    [[0, 0, 0, 0, 0, 0, 0xffff, 0xffff], '::ffff:ffff'],
    // §4.1 leading zeros dropped, §4.3 lower case.
    [[0xabcd, 0x0ef0, 0x00ff, 0x000f, 0xffff, 0x1000, 0x0100, 0x0010], 'abcd:ef0:ff:f:ffff:1000:100:10'],
  ];
  for (const [words, text] of cases) {
    it(`${words.map((w) => w.toString(16)).join(':')} → ${text}`, () => {
      const a = v6(...words);
      assert.equal(formatAddress(a), text);
      assert.equal(urlCanonical(a), text, 'the test’s own expectation agrees with the URL parser');
      assert.deepEqual(bytesOf(text), [...a.bytes]);
    });
  }

  it('agrees with the WHATWG URL serialiser on 5,000 random addresses with many zero groups', () => {
    const random = seededRandom(52);
    for (let i = 0; i < 5000; i++) {
      const r = random(17);
      const bytes = r.subarray(0, 16);
      // Zero each group with probability about 1/2 so that runs of every length appear.
      for (let g = 0; g < 8; g++) {
        if ((r[16]! >> g) & 1) {
          bytes[g * 2] = 0;
          bytes[g * 2 + 1] = 0;
        }
      }
      const a: Address = { family: 6, bytes: Uint8Array.from(bytes) };
      const text = formatAddress(a);
      assert.equal(text, urlCanonical(a), `bytes ${Buffer.from(bytes).toString('hex')}`);
      assert.deepEqual(bytesOf(text), [...a.bytes]);
    }
  });

  it('IPv4 is dotted decimal without leading zeros', () => {
    assert.equal(formatAddress({ family: 4, bytes: Uint8Array.of(0, 10, 100, 255) }), '0.10.100.255');
  });
});

describe('parseAddress: garbage is rejected without throwing', () => {
  const bad = [
    '1.2.3',
    '256.1.1.1',
    '1.2.3.4.5',
    '1.2.3.-1',
    '01.2.3.4',
    '1.2.3.4 5',
    '::g',
    '1::2::3',
    ':::',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7:8::',
    '12345::',
    'fe80::1%',
    '::ffff:256.1.1.1',
    '[::1]',
    '10.0.0.1/8',
    '',
    ' ',
    'localhost',
    'example.com',
    '0x7f.1',
  ];
  for (const text of bad) {
    it(JSON.stringify(text), () => {
      let r: ParseResult<Address> | undefined;
      assert.doesNotThrow(() => {
        r = parseAddress(text);
      });
      assert.equal(r?.ok, false);
      if (r && !r.ok) assert.equal(typeof r.error, 'string');
    });
  }
});

describe('parsePrefix and formatPrefix', () => {
  const good: [string, string, number[], number][] = [
    ['10.1.2.3/8', '10.0.0.0/8', [10, 0, 0, 0], 8],
    ['10.0.0.1', '10.0.0.1/32', [10, 0, 0, 1], 32],
    ['0.0.0.0/0', '0.0.0.0/0', [0, 0, 0, 0], 0],
    ['255.255.255.255/0', '0.0.0.0/0', [0, 0, 0, 0], 0],
    ['255.255.255.255/1', '128.0.0.0/1', [128, 0, 0, 0], 1],
    ['192.168.3.77/23', '192.168.2.0/23', [192, 168, 2, 0], 23],
    ['10.255.255.255/9', '10.128.0.0/9', [10, 128, 0, 0], 9],
    ['10.0.0.7/31', '10.0.0.6/31', [10, 0, 0, 6], 31],
    ['10.0.0.7/32', '10.0.0.7/32', [10, 0, 0, 7], 32],
    [' 10.0.0.1/24 ', '10.0.0.0/24', [10, 0, 0, 0], 24],
  ];
  for (const [text, canonical, bytes, bits] of good) {
    it(`${JSON.stringify(text)} → ${canonical}`, () => {
      const pr = ok(parsePrefix(text));
      assert.equal(pr.family, 4);
      assert.equal(pr.bits, bits);
      assert.deepEqual([...pr.bytes], bytes);
      assert.equal(formatPrefix(pr), canonical);
    });
  }

  const good6: [string, string, number][] = [
    ['fd00::1', 'fd00::1/128', 128],
    ['::/0', '::/0', 0],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/0', '::/0', 0],
    ['fd00::ffff/127', 'fd00::fffe/127', 127],
    ['2001:db8:abcd:1234::1/52', '2001:db8:abcd:1000::/52', 52],
    ['2001:db8::1/64', '2001:db8::/64', 64],
    ['fe80::1%eth0/64', 'fe80::/64', 64],
    ['ffff::/9', 'ff80::/9', 9],
  ];
  for (const [text, canonical, bits] of good6) {
    it(`${text} → ${canonical}`, () => {
      const pr = ok(parsePrefix(text));
      assert.equal(pr.family, 6);
      assert.equal(pr.bits, bits);
      assert.equal(pr.bytes.length, 16);
      assert.equal(formatPrefix(pr), canonical);
    });
  }

  const bad = [
    '10.0.0.0/33',
    'fd00::/129',
    'fd00::/1000',
    '10.0.0.1/-1',
    '10.0.0.1/ 8',
    '10.0.0.1/',
    '/8',
    '10.0.0.1/8/8',
    '10.0.0.1/8.0',
    '10.0.0.1/+8',
    '10.0.0.1/0x8',
    '10.0.0.1/1e1',
    '10.0.0.1/a',
    '1.2.3/8',
    'garbage/8',
    '',
    ' ',
  ];
  for (const text of bad) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      let r: ParseResult<unknown> | undefined;
      assert.doesNotThrow(() => {
        r = parsePrefix(text);
      });
      assert.equal(r?.ok, false);
    });
  }

  it('every prefix length of 255.255.255.255 masks to the expected network', () => {
    for (let bits = 0; bits <= 32; bits++) {
      const pr = ok(parsePrefix(`255.255.255.255/${bits}`));
      const value = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
      const want = [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff];
      assert.deepEqual([...pr.bytes], want, `/${bits}`);
    }
  });
});

describe('maskBytes, addressLength and sameAddress', () => {
  it('maskBytes keeps exactly the first `bits` bits and copies', () => {
    const input = new Uint8Array(16).fill(0xff);
    for (let bits = 0; bits <= 128; bits++) {
      const out = maskBytes(input, bits);
      assert.notEqual(out, input);
      let ones = 0;
      for (const b of out) for (let i = 7; i >= 0; i--) ones += (b >> i) & 1;
      assert.equal(ones, bits);
      // The ones are leading: every set bit comes before every clear bit.
      const firstClear = bits >> 3;
      for (let i = 0; i < firstClear; i++) assert.equal(out[i], 0xff);
    }
    assert.deepEqual([...maskBytes(Uint8Array.of(0xab, 0xcd), 12)], [0xab, 0xc0]);
    assert.deepEqual([...input], new Array(16).fill(0xff), 'input untouched');
  });

  it('addressLength', () => {
    assert.equal(addressLength(4), 4);
    assert.equal(addressLength(6), 16);
  });

  it('sameAddress compares family and every byte', () => {
    const a = ok(parseAddress('10.0.0.1'));
    assert.equal(sameAddress(a, ok(parseAddress('10.0.0.1'))), true);
    assert.equal(sameAddress(a, ok(parseAddress('10.0.0.2'))), false);
    assert.equal(sameAddress(ok(parseAddress('::1')), ok(parseAddress('0::0:1'))), true);
    assert.equal(sameAddress(ok(parseAddress('::1')), ok(parseAddress('::2'))), false);
    assert.equal(sameAddress(ok(parseAddress('::a00:1')), a), false);
  });
});

describe('prefix arithmetic: prefixContains, hostNumber, hostAddress', () => {
  it('contains exactly the addresses under the prefix, of its own family', () => {
    const p = ok(parsePrefix('10.66.0.0/24'));
    assert.equal(prefixContains(p, ok(parseAddress('10.66.0.0'))), true);
    assert.equal(prefixContains(p, ok(parseAddress('10.66.0.255'))), true);
    assert.equal(prefixContains(p, ok(parseAddress('10.66.1.0'))), false);
    assert.equal(prefixContains(p, ok(parseAddress('::ffff:10.66.0.1'))), false);
    assert.equal(prefixContains(ok(parsePrefix('0.0.0.0/0')), ok(parseAddress('203.0.113.9'))), true);
    assert.equal(prefixContains(ok(parsePrefix('fd66::/64')), ok(parseAddress('fd66::ffff:1'))), true);
    assert.equal(prefixContains(ok(parsePrefix('fd66::/64')), ok(parseAddress('fd67::1'))), false);
  });

  it('host numbers and addresses round-trip, beyond 2^53 in IPv6', () => {
    const p4 = ok(parsePrefix('10.66.0.0/16'));
    assert.equal(formatAddress(hostAddress(p4, 258n)), '10.66.1.2');
    assert.equal(hostNumber(p4, ok(parseAddress('10.66.1.2'))), 258n);
    const p6 = ok(parsePrefix('fd66::/64'));
    const big = (1n << 60n) + 5n;
    const a = hostAddress(p6, big);
    assert.equal(formatAddress(a), 'fd66::1000:0:0:5');
    assert.equal(hostNumber(p6, a), big);
  });
});

describe('endpoints', () => {
  it('parses 1.2.3.4:51820', () => {
    assert.deepEqual(ok(parseEndpoint('1.2.3.4:51820')), { address: '1.2.3.4', port: 51820 });
  });

  it('parses [fd00::1]:51820 and canonicalises the address', () => {
    assert.deepEqual(ok(parseEndpoint('[fd00::1]:51820')), { address: 'fd00::1', port: 51820 });
    assert.deepEqual(ok(parseEndpoint('[FD00:0:0::0001]:1')), { address: 'fd00::1', port: 1 });
    assert.deepEqual(ok(parseEndpoint('[fe80::1%eth0]:65535')), { address: 'fe80::1', port: 65535 });
  });

  it('accepts ports 1 and 65535', () => {
    assert.equal(ok(parseEndpoint('10.0.0.1:1')).port, 1);
    assert.equal(ok(parseEndpoint('10.0.0.1:65535')).port, 65535);
  });

  const bad = [
    '1.2.3.4:0',
    '1.2.3.4:65536',
    '1.2.3.4:99999',
    '1.2.3.4:123456',
    '1.2.3.4:-1',
    '1.2.3.4:',
    '1.2.3.4',
    '[fd00::1]:0',
    '[fd00::1]:65536',
    '[fd00::1]',
    '[fd00::1]:',
    'fd00::1:51820',
    'fd00::1',
    'example.com:51820',
    'localhost:51820',
    '1.2.3:51820',
    '[::g]:51820',
    '[]:51820',
    ':51820',
    '',
  ];
  for (const text of bad) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      let r: ParseResult<unknown> | undefined;
      assert.doesNotThrow(() => {
        r = parseEndpoint(text);
      });
      assert.equal(r?.ok, false);
    });
  }

  it('formats IPv4 bare and IPv6 in brackets, and round-trips', () => {
    assert.equal(formatEndpoint({ address: '1.2.3.4', port: 51820 }), '1.2.3.4:51820');
    assert.equal(formatEndpoint({ address: 'fd00::1', port: 51820 }), '[fd00::1]:51820');
    assert.equal(formatEndpoint({ address: '2001:db8:0:1:1:1:1:1', port: 1 }), '[2001:db8:0:1:1:1:1:1]:1');
    for (const text of [
      '1.2.3.4:51820',
      '[fd00::1]:51820',
      '[::]:1',
      '0.0.0.0:65535',
      '[2001:db8::1:0:0:1]:443',
    ]) {
      assert.equal(formatEndpoint(ok(parseEndpoint(text))), text);
    }
  });

  it('endpointBytes is the address bytes followed by the big-endian port', () => {
    assert.deepEqual([...endpointBytes({ address: '1.2.3.4', port: 51820 })], [1, 2, 3, 4, 0xca, 0x6c]);
    assert.deepEqual([...endpointBytes({ address: '10.0.0.1', port: 1 })], [10, 0, 0, 1, 0, 1]);
    assert.deepEqual([...endpointBytes({ address: '10.0.0.1', port: 256 })], [10, 0, 0, 1, 1, 0]);
    assert.deepEqual([...endpointBytes({ address: '10.0.0.1', port: 65535 })], [10, 0, 0, 1, 0xff, 0xff]);
    assert.deepEqual(
      [...endpointBytes({ address: 'fd00::1', port: 51820 })],
      [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xca, 0x6c],
    );
  });

  it('sameEndpoint compares address and port', () => {
    const e = ok(parseEndpoint('1.2.3.4:51820'));
    assert.equal(sameEndpoint(e, ok(parseEndpoint('1.2.3.4:51820'))), true);
    assert.equal(sameEndpoint(e, ok(parseEndpoint('1.2.3.4:51821'))), false);
    assert.equal(sameEndpoint(e, ok(parseEndpoint('1.2.3.5:51820'))), false);
    assert.equal(sameEndpoint(e, undefined), false);
    assert.equal(sameEndpoint(undefined, undefined), false);
  });
});

describe('readIpHeader', () => {
  it('reads an IPv4 packet: family, length and views of the addresses', () => {
    const p = ipv4('10.0.0.1', '192.0.2.77', 'hello');
    assert.equal(p.length, 33);
    const h = readIpHeader(p);
    assert.ok(h);
    assert.equal(h.family, 4);
    assert.equal(h.length, 33);
    assert.deepEqual([...h.source], [10, 0, 0, 1]);
    assert.deepEqual([...h.destination], [192, 0, 2, 77]);
    // Views into the packet, not copies.
    assert.equal(h.source.buffer, p.buffer);
    assert.equal(h.source.byteOffset, p.byteOffset + 12);
    assert.equal(h.destination.byteOffset, p.byteOffset + 16);
  });

  it('reads IPv4 with options (IHL 6 and IHL 15)', () => {
    const six = new Uint8Array(30);
    six[0] = 0x46;
    six[3] = 30;
    six.set([1, 2, 3, 4], 12);
    six.set([5, 6, 7, 8], 16);
    const h = readIpHeader(six);
    assert.ok(h);
    assert.equal(h.length, 30);
    assert.deepEqual([...h.source], [1, 2, 3, 4]);
    assert.deepEqual([...h.destination], [5, 6, 7, 8]);

    const fifteen = new Uint8Array(60);
    fifteen[0] = 0x4f;
    fifteen[3] = 60;
    assert.equal(readIpHeader(fifteen)?.length, 60);
    fifteen[3] = 59; // total length shorter than the header it declares
    assert.equal(readIpHeader(fifteen), null);
  });

  it('IPv4 total length shorter than the buffer: the length is the header’s (padding follows)', () => {
    const inner = ipv4('10.0.0.1', '10.0.0.2', 'abc');
    const padded = new Uint8Array(inner.length + 13);
    padded.set(inner);
    const h = readIpHeader(padded);
    assert.ok(h);
    assert.equal(h.length, inner.length);
    assert.equal(h.length, 31);
  });

  it('IPv4 total length longer than the buffer → null', () => {
    const p = ipv4('10.0.0.1', '10.0.0.2', 'abc');
    assert.equal(readIpHeader(p.subarray(0, p.length - 1)), null);
    const q = Uint8Array.from(p);
    q[2] = 0x01; // total length 256 + 31
    assert.equal(readIpHeader(q), null);
  });

  it('IPv4 with IHL < 5 → null', () => {
    for (const ihl of [0, 1, 4]) {
      const p = ipv4('10.0.0.1', '10.0.0.2');
      p[0] = 0x40 | ihl;
      assert.equal(readIpHeader(p), null, `IHL ${ihl}`);
    }
  });

  it('IPv4 shorter than 20 bytes, or claiming a total length below 20 → null', () => {
    const p = ipv4('10.0.0.1', '10.0.0.2', '');
    assert.equal(p.length, 28);
    assert.equal(readIpHeader(p.subarray(0, 19)), null);
    const q = new Uint8Array(20);
    q[0] = 0x45;
    q[3] = 20;
    assert.equal(readIpHeader(q)?.length, 20);
    q[3] = 19;
    assert.equal(readIpHeader(q), null);
    q[3] = 0;
    assert.equal(readIpHeader(q), null);
  });

  it('reads an IPv6 packet: length is 40 + payload length', () => {
    const p = ipv6('fd00::1', 'fd00::2', 'hello');
    assert.equal(p.length, 40 + 8 + 5);
    const h = readIpHeader(p);
    assert.ok(h);
    assert.equal(h.family, 6);
    assert.equal(h.length, 53);
    assert.deepEqual([...h.source], [0xfd, ...new Array(14).fill(0), 1]);
    assert.deepEqual([...h.destination], [0xfd, ...new Array(14).fill(0), 2]);
    assert.equal(h.source.buffer, p.buffer);
    assert.equal(h.source.byteOffset, p.byteOffset + 8);
    assert.equal(h.destination.byteOffset, p.byteOffset + 24);
  });

  it('IPv6 with padding, payload length 0, truncation and short buffers', () => {
    const p = ipv6('fd00::1', 'fd00::2', 'hello');
    const padded = new Uint8Array(p.length + 3);
    padded.set(p);
    assert.equal(readIpHeader(padded)?.length, 53);
    assert.equal(readIpHeader(p.subarray(0, 52)), null);
    const big = Uint8Array.from(p);
    big[4] = 0x10; // payload length 4096 + 13
    assert.equal(readIpHeader(big), null);
    const bare = new Uint8Array(40);
    bare[0] = 0x60;
    assert.equal(readIpHeader(bare)?.length, 40);
    assert.equal(readIpHeader(bare.subarray(0, 39)), null);
  });

  it('versions other than 4 and 6 → null; empty → null', () => {
    assert.equal(readIpHeader(new Uint8Array(0)), null);
    const p4 = ipv4('10.0.0.1', '10.0.0.2');
    const p6 = ipv6('fd00::1', 'fd00::2');
    for (const version of [0, 1, 2, 3, 5, 7, 8, 15]) {
      const a = Uint8Array.from(p4);
      a[0] = (version << 4) | 5;
      assert.equal(readIpHeader(a), null, `version ${version} (v4 layout)`);
      const b = Uint8Array.from(p6);
      b[0] = version << 4;
      assert.equal(readIpHeader(b), null, `version ${version} (v6 layout)`);
    }
  });
});
