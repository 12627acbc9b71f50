/**
 * ESP against published packets, byte for byte: draft-mcgrew-gcm-test-01 (AES-GCM in ESP, complete ESP
 * packets with keys, SPI, sequence number and IV) and RFC 7634 Appendix A (ChaCha20-Poly1305 in ESP). Each
 * vector is opened (payload, padding and next header as published) and sealed again with the published IV,
 * which must give the published packet. HMAC truncations against RFC 2202 and RFC 4231.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { ESP_ENCR, ESP_INTEG, type ChildSaSpec, type EspEncryptionId } from '../../src/ipsec/child-sa.js';
import { EspInboundSa, EspOutboundSa } from '../../src/ipsec/esp.js';
import { HMAC_SUITES, truncatedHmac } from '../../src/ipsec/esp-transforms.js';

function h(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
}
function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

const ANY4 = {
  family: 4 as const,
  protocol: 0,
  startPort: 0,
  endPort: 65535,
  startAddress: '0.0.0.0',
  endAddress: '255.255.255.255',
};

/** An SA whose both directions use `key` (salt included), so one spec seals and opens the same packets. */
function spec(encryption: EspEncryptionId, bits: number, key: Uint8Array, spi: number): ChildSaSpec {
  return {
    mode: 'tunnel',
    inboundSpi: spi,
    outboundSpi: spi,
    encryption,
    encryptionKeyBits: bits,
    integrity: null,
    esn: false,
    inbound: { encryptionKey: key, integrityKey: null },
    outbound: { encryptionKey: key, integrityKey: null },
    localSelectors: [ANY4],
    remoteSelectors: [ANY4],
  };
}

interface EspVector {
  readonly source: string;
  readonly encryption: EspEncryptionId;
  readonly bits: number;
  /** Key || salt, as KEYMAT gives it. */
  readonly key: Uint8Array;
  readonly spi: number;
  readonly seq: number;
  readonly iv: Uint8Array;
  /** The payload ESP carries (tunnel mode: the inner IPv4 packet), without padding and trailer. */
  readonly payload: Uint8Array;
  readonly nextHeader: number;
  /** The whole ESP packet from the SPI to the ICV. */
  readonly esp: Uint8Array;
}

const VECTORS: EspVector[] = [
  {
    source: 'draft-mcgrew-gcm-test-01 test case 2 (AES-128-GCM)',
    encryption: ESP_ENCR.AES_GCM_16,
    bits: 128,
    key: h('feffe9928665731c6d6a8f9467308308 cafebabe'),
    spi: 0x0000a5f8,
    seq: 10,
    iv: h('facedbaddecaf888'),
    payload: h(`4500003e698f000080114dccc0a80102c0a801010a9800350 02a2343b2d001000001000000000000037369
      7009637962657263697479026 46b0000010001`),
    nextHeader: 4,
    esp: h(`0000a5f8 0000000a facedbaddecaf888
      deb22cd9b07c72c16e3a65beeb8df304a5a5897d33ae530f1ba76d5d114d2a5c3de81827c10e9a4f51330d0eec416642
      cfbb85a5b47e48a4ec3b9ba95d918bd426f8391b9927d0fcc984561bbbce9fc0`),
  },
  {
    source: 'draft-mcgrew-gcm-test-01 test case 3 (AES-256-GCM)',
    encryption: ESP_ENCR.AES_GCM_16,
    bits: 256,
    key: h('abbccddef00112233445566778899aababbccddef00112233445566778899aab 11223344'),
    spi: 0x4a2cbfe3,
    seq: 2,
    iv: h('0102030405060708'),
    payload: h(`45000030 69a64000 80062690 c0a80102 9389155e 0a9e008b 2dc57ee0 00000000 70024000 20bf0000
      020405b4 01010402`),
    nextHeader: 4,
    esp: h(`4a2cbfe3 00000002 0102030405060708
      ff425c9b724599df7a3bcd510194e00d6a78107f1b0b1cbf06efae9d65a5d763748a637985771d347f0545659f14e99d
      ef842d8b42f564f52dfdd6eef4f92eadbac23990`),
  },
  {
    source: 'draft-mcgrew-gcm-test-01 test case 4 (AES-128-GCM, zero key)',
    encryption: ESP_ENCR.AES_GCM_16,
    bits: 128,
    key: h('00000000000000000000000000000000 00000000'),
    spi: 0,
    seq: 1,
    iv: h('0000000000000000'),
    payload: h(`4500003c 99c50000 8001cb7a 40679318 01010101 0800075c 02004400 61626364 65666768 696a6b6c
      6d6e6f70 71727374 75767761 62636465 66676869`),
    nextHeader: 4,
    esp: h(`00000000 00000001 0000000000000000
      4688daf2f973a392732909c331d56d60f694abaa414b5e7ff5fdcdfff5e9a2844564764927 19ffb64de7d9dca1e1d894
      bc3bd57873ed4d181d19d4d5c8c18af6fe1d7372228a69f40deb373ddc01676b`),
  },
  {
    source: 'RFC 7634 Appendix A (ChaCha20-Poly1305)',
    encryption: ESP_ENCR.CHACHA20_POLY1305,
    bits: 256,
    key: h('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f a0a1a2a3'),
    spi: 0x01020304,
    seq: 5,
    iv: h('1011121314151617'),
    payload: h(`45000054a6f200004001e778c6336405c000020508005b7a3a080000553bec100007362708090a0b0c0d0e0f1011
      12131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637`),
    nextHeader: 4,
    esp: h(`01020304 00000005 1011121314151617
      24039428b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c614ee8099d52844eb61aa95dfab4c02f7
      2aa71e7c4c4f64c9befe2facc638e8f3cbec163fac469b502773f6fb94e664da9165b82829f641e076aaa8266b7fb0f7
      b11b369907e1ad43`),
  },
];

describe('ESP published vectors', () => {
  for (const v of VECTORS) {
    it(`opens ${v.source}`, () => {
      const sa = new EspInboundSa(spec(v.encryption, v.bits, v.key, v.spi));
      const out = new Uint8Array(v.esp.length);
      assert.equal(sa.open(v.esp, out), 'ok');
      assert.equal(hex(out.subarray(0, sa.opened.length)), hex(v.payload));
      assert.equal(sa.opened.nextHeader, v.nextHeader);
      assert.equal(sa.opened.seq, v.seq);
      sa.dispose();
    });

    it(`seals ${v.source} byte for byte`, () => {
      const sa = new EspOutboundSa(spec(v.encryption, v.bits, v.key, v.spi), {
        firstSequence: v.seq,
        ivSource: (_seq, iv) => iv.set(v.iv),
      });
      const out = new Uint8Array(2048);
      const n = sa.seal(v.payload, v.nextHeader, out);
      assert.equal(n, v.esp.length);
      assert.equal(hex(out.subarray(0, n)), hex(v.esp));
      sa.dispose();
    });
  }

  it('drops the dummy packet of draft-mcgrew-gcm-test-01 test case 12 (next header 59), and seals it again', () => {
    const key = h('7d773d00c144c525ac619d18c84a3f47 d9664267');
    const esp = h(`335467ae ffffffff 43457e9182443bc6 437f86517ea595d2ca004c33388c46770c590ad6`);
    const inbound = new EspInboundSa(spec(ESP_ENCR.AES_GCM_16, 128, key, 0x335467ae));
    assert.equal(inbound.open(esp, new Uint8Array(esp.length)), 'dummy');
    assert.equal(inbound.counters.drops.dummy, 1);
    assert.equal(inbound.counters.packets, 0);
    const outbound = new EspOutboundSa(spec(ESP_ENCR.AES_GCM_16, 128, key, 0x335467ae), {
      firstSequence: 0xffffffff,
      ivSource: (_seq, iv) => iv.set(h('43457e9182443bc6')),
    });
    const out = new Uint8Array(64);
    const n = outbound.seal(new Uint8Array(0), 59, out);
    assert.equal(hex(out.subarray(0, n)), hex(esp));
    // That was the last 32-bit sequence number: the SA refuses to cycle (RFC 4303 §3.3.3).
    assert.equal(outbound.exhausted, true);
    assert.equal(outbound.seal(new Uint8Array(0), 59, out), -1);
    assert.equal(outbound.counters.exhausted, 1);
  });

  it('uses the sequence number as the AEAD IV by default, never repeating it', () => {
    const key = h('feffe9928665731c6d6a8f9467308308 cafebabe');
    const sa = new EspOutboundSa(spec(ESP_ENCR.AES_GCM_16, 128, key, 7));
    const out = new Uint8Array(256);
    const seen = new Set<string>();
    for (let i = 1; i <= 100; i++) {
      sa.seal(VECTORS[0]!.payload, 4, out);
      assert.equal(hex(out.subarray(8, 16)), i.toString(16).padStart(16, '0'));
      seen.add(hex(out.subarray(8, 16)));
    }
    assert.equal(seen.size, 100);
  });
});

describe('HMAC truncations (RFC 2202, RFC 4231)', () => {
  const key = new Uint8Array(20).fill(0x0b);
  const data = new TextEncoder().encode('Hi There');
  const cases: [number, string][] = [
    // RFC 2202 §3 test case 1, truncated to 96 bits (RFC 2404 §2).
    [ESP_INTEG.HMAC_SHA1_96, 'b617318655057264e28bc0b6'],
    // RFC 4231 §4.2 test case 1, truncated to half the output (RFC 4868 §2.3).
    [ESP_INTEG.HMAC_SHA2_256_128, 'b0344c61d8db38535ca8afceaf0bf12b'],
    [ESP_INTEG.HMAC_SHA2_384_192, 'afd03944d84895626b0825f4ab46907f15f9dadbe4101ec6'],
    [ESP_INTEG.HMAC_SHA2_512_256, '87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde'],
  ];
  for (const [id, expected] of cases) {
    it(`integrity transform ${id}`, () => {
      const suite = HMAC_SUITES[id]!;
      assert.equal(hex(truncatedHmac(suite, key, data)), expected);
      assert.equal(suite.icvBytes * 2, expected.length);
    });
  }
  it('RFC 4231 test case 2 (key shorter than the block), HMAC-SHA2-256-128', () => {
    const suite = HMAC_SUITES[ESP_INTEG.HMAC_SHA2_256_128]!;
    const mac = truncatedHmac(
      suite,
      new TextEncoder().encode('Jefe'),
      new TextEncoder().encode('what do ya want for nothing?'),
    );
    assert.equal(hex(mac), '5bdcc146bf60754e6a042426089575c7');
  });
});
