/**
 * ESP behaviour: every transform round trip (with and without ESN), the anti-replay window at its edges
 * (RFC 4303 §3.4.3, Appendix A, including ESN inference and re-synchronisation), sequence-number exhaustion,
 * one typed drop for each way a packet can be wrong, tunnel-mode selectors, and a fuzz of 10^6 random and
 * mutated packets that must never throw.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

import {
  ESP_ENCR,
  ESP_INTEG,
  type ChildSaSpec,
  type EspEncryptionId,
  type EspIntegrityId,
  type IpsecMode,
  type TrafficSelector,
} from '../../src/ipsec/child-sa.js';
import { EspInboundSa, EspInboundSet, EspOutboundSa, ESP_DROP_REASONS } from '../../src/ipsec/esp.js';
import { EspReplayWindow } from '../../src/ipsec/esp-replay.js';
import { REPLAY_WINDOW_SIZE, SEQ_REKEY_MARGIN } from '../../src/ipsec/esp-constants.js';
import { createEspTransform } from '../../src/ipsec/esp-transforms.js';
import { echo } from '../../src/net/icmp.js';

const TWO32 = 0x1_0000_0000;

function selector(start: string, end: string, family: 4 | 6 = 4): TrafficSelector {
  return { family, protocol: 0, startPort: 0, endPort: 65535, startAddress: start, endAddress: end };
}

interface Suite {
  name: string;
  encryption: EspEncryptionId;
  bits: number;
  integrity: EspIntegrityId | null;
}

const SUITES: Suite[] = [
  { name: 'aes128gcm16', encryption: ESP_ENCR.AES_GCM_16, bits: 128, integrity: null },
  { name: 'aes256gcm16', encryption: ESP_ENCR.AES_GCM_16, bits: 256, integrity: null },
  { name: 'chacha20poly1305', encryption: ESP_ENCR.CHACHA20_POLY1305, bits: 256, integrity: null },
  { name: 'aes128-sha1', encryption: ESP_ENCR.AES_CBC, bits: 128, integrity: ESP_INTEG.HMAC_SHA1_96 },
  { name: 'aes256-sha256', encryption: ESP_ENCR.AES_CBC, bits: 256, integrity: ESP_INTEG.HMAC_SHA2_256_128 },
  { name: 'aes128-sha384', encryption: ESP_ENCR.AES_CBC, bits: 128, integrity: ESP_INTEG.HMAC_SHA2_384_192 },
  { name: 'aes256-sha512', encryption: ESP_ENCR.AES_CBC, bits: 256, integrity: ESP_INTEG.HMAC_SHA2_512_256 },
];

const INTEG_KEY: Record<number, number> = { 2: 20, 12: 32, 13: 48, 14: 64 };

/** Mirror-image specs for two ends A and B (what the IKE core hands each side). */
function pair(
  suite: Suite,
  options: { esn?: boolean; mode?: IpsecMode } = {},
): { a: ChildSaSpec; b: ChildSaSpec } {
  const aead = suite.encryption !== ESP_ENCR.AES_CBC;
  const keys = () => ({
    encryptionKey: new Uint8Array(randomBytes(suite.bits / 8 + (aead ? 4 : 0))),
    integrityKey: suite.integrity === null ? null : new Uint8Array(randomBytes(INTEG_KEY[suite.integrity]!)),
  });
  const ab = keys();
  const ba = keys();
  const netA = [selector('10.1.0.0', '10.1.0.255'), selector('fd00:1::', 'fd00:1::ffff', 6)];
  const netB = [selector('10.2.0.0', '10.2.0.255'), selector('fd00:2::', 'fd00:2::ffff', 6)];
  const common = {
    mode: options.mode ?? ('tunnel' as IpsecMode),
    encryption: suite.encryption,
    encryptionKeyBits: suite.bits,
    integrity: suite.integrity,
    esn: options.esn ?? false,
  };
  return {
    a: {
      ...common,
      inboundSpi: 0xa1,
      outboundSpi: 0xb1,
      inbound: ba,
      outbound: ab,
      localSelectors: netA,
      remoteSelectors: netB,
    },
    b: {
      ...common,
      inboundSpi: 0xb1,
      outboundSpi: 0xa1,
      inbound: ab,
      outbound: ba,
      localSelectors: netB,
      remoteSelectors: netA,
    },
  };
}

function ping4(src = '10.1.0.5', dst = '10.2.0.7', size = 56): Uint8Array {
  return echo('request', src, dst, 1, 1, new Uint8Array(size).fill(0x61));
}
function ping6(): Uint8Array {
  return echo('request', 'fd00:1::5', 'fd00:2::7', 1, 1, new Uint8Array(40).fill(0x62));
}

describe('ESP round trips', () => {
  for (const suite of SUITES) {
    for (const esn of [false, true]) {
      it(`${suite.name}${esn ? ' with ESN' : ''}: IPv4 and IPv6 inner packets of every length class`, () => {
        const { a, b } = pair(suite, { esn });
        const tx = new EspOutboundSa(a);
        const rx = new EspInboundSa(b);
        const buf = new Uint8Array(2048);
        const out = new Uint8Array(2048);
        for (const inner of [
          ping4(),
          ping6(),
          ping4('10.1.0.5', '10.2.0.7', 0),
          ping4('10.1.0.9', '10.2.0.1', 1400),
        ]) {
          const n = tx.seal(inner, inner[0]! >> 4 === 4 ? 4 : 41, buf);
          assert.equal(n, tx.sealedLength(inner.length));
          assert.equal(rx.open(buf.subarray(0, n), out), 'ok');
          assert.deepEqual(out.subarray(0, rx.opened.length), inner);
        }
        assert.equal(rx.counters.packets, 4);
        assert.equal(tx.counters.packets, 4);
      });
    }
  }

  it('pads CBC to the block size and AEAD to 4 bytes, with padding 1, 2, 3, ...', () => {
    const cbc = new EspOutboundSa(pair(SUITES[3]!).a);
    const gcm = new EspOutboundSa(pair(SUITES[0]!).a);
    assert.equal(cbc.sealedLength(20), 8 + 16 + 32 + 12);
    assert.equal(gcm.sealedLength(20), 8 + 8 + 24 + 16);
    assert.equal(gcm.sealedLength(21), 8 + 8 + 24 + 16);
    assert.equal(gcm.sealedLength(23), 8 + 8 + 28 + 16);
  });

  it('transport mode carries the transport payload and its protocol', () => {
    const { a, b } = pair(SUITES[1]!, { mode: 'transport' });
    const tx = new EspOutboundSa(a);
    const rx = new EspInboundSa(b);
    const udp = new Uint8Array([0x12, 0x34, 0x00, 0x35, 0x00, 0x0c, 0, 0, 1, 2, 3, 4]);
    const buf = new Uint8Array(256);
    const n = tx.seal(udp, 17, buf);
    assert.equal(rx.open(buf.subarray(0, n), new Uint8Array(256)), 'ok');
    assert.equal(rx.opened.nextHeader, 17);
    assert.equal(rx.opened.length, udp.length);
  });

  it('trims TFC padding after the inner packet in tunnel mode (RFC 4303 §2.4)', () => {
    const { a, b } = pair(SUITES[0]!);
    const tx = new EspOutboundSa(a);
    const rx = new EspInboundSa(b);
    const inner = ping4();
    const padded = new Uint8Array(inner.length + 33);
    padded.set(inner);
    const buf = new Uint8Array(512);
    const n = tx.seal(padded, 4, buf);
    assert.equal(rx.open(buf.subarray(0, n), new Uint8Array(512)), 'ok');
    assert.equal(rx.opened.length, inner.length);
  });
});

describe('anti-replay window', () => {
  it('accepts in order, out of order within the window, refuses duplicates and what fell out', () => {
    const w = new EspReplayWindow();
    assert.equal(w.accept(0), false, 'sequence number 0 is never sent');
    assert.equal(w.accept(1), true);
    assert.equal(w.accept(1), false);
    assert.equal(w.accept(5000), true);
    assert.equal(w.accept(5000 - REPLAY_WINDOW_SIZE + 1), true, 'the oldest number still in the window');
    assert.equal(w.accept(5000 - REPLAY_WINDOW_SIZE), false, 'just below the window');
    assert.equal(w.accept(4999), true);
    assert.equal(w.accept(4999), false);
    assert.equal(w.accept(5000 + 10 * REPLAY_WINDOW_SIZE), true, 'a jump far ahead clears the ring');
    assert.equal(w.refuses(5000 + 9 * REPLAY_WINDOW_SIZE), true);
    assert.equal(w.refuses(5000 + 10 * REPLAY_WINDOW_SIZE - 1), false);
    assert.ok(REPLAY_WINDOW_SIZE >= 1024);
  });

  it('every number in a shuffled window is accepted exactly once', () => {
    const w = new EspReplayWindow();
    const seqs = Array.from({ length: 3000 }, (_, i) => i + 1);
    for (let i = seqs.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [seqs[i], seqs[j]] = [seqs[j]!, seqs[i]!];
    }
    for (const s of seqs) assert.equal(w.accept(s), true, `first ${s}`);
    for (const s of seqs) assert.equal(w.accept(s), false, `again ${s}`);
  });

  it('infers the ESN high half (RFC 4303 Appendix A2.2, both cases)', () => {
    const w = new EspReplayWindow();
    const W = w.windowSize;
    // Case A: window within one subspace.
    w.accept(5 * TWO32 + 100_000);
    assert.equal(w.infer(100_001, true), 5 * TWO32 + 100_001);
    assert.equal(w.infer(100_000 - W + 1, true), 5 * TWO32 + 100_000 - W + 1);
    assert.equal(w.infer(100_000 - W, true), 6 * TWO32 + 100_000 - W, 'below the window: the next subspace');
    // Case B: the window spans two subspaces.
    const v = new EspReplayWindow();
    v.accept(5 * TWO32 + 10);
    assert.equal(v.infer(TWO32 - 5, true), 4 * TWO32 + TWO32 - 5, 'the end of the previous subspace');
    assert.equal(v.infer(20, true), 5 * TWO32 + 20);
    assert.equal(v.infer(5, true), 5 * TWO32 + 5);
  });

  it('ESN: packets cross the 2^32 boundary, and a replay from before it is refused', () => {
    const { a, b } = pair(SUITES[0]!, { esn: true });
    const tx = new EspOutboundSa(a, { firstSequence: TWO32 - 3 });
    const rx = new EspInboundSa(b);
    // Bring the receiver's window near the boundary the way it would get there: by receiving.
    rx.replay.accept(TWO32 - 4);
    const buf = new Uint8Array(512);
    const out = new Uint8Array(512);
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 8; i++) {
      const n = tx.seal(ping4(), 4, buf);
      sent.push(buf.slice(0, n));
    }
    for (const p of sent) assert.equal(rx.open(p, out), 'ok');
    assert.equal(rx.opened.seq, TWO32 + 4);
    assert.equal(rx.open(sent[1]!, out), 'replay');
    assert.equal(rx.open(sent[6]!, out), 'replay');
  });

  it('ESN re-synchronises after a gap of more than the window across a subspace (Appendix A3)', () => {
    const { a, b } = pair(SUITES[0]!, { esn: true });
    const tx = new EspOutboundSa(a, { firstSequence: 1 });
    const rx = new EspInboundSa(b);
    const buf = new Uint8Array(512);
    const out = new Uint8Array(512);
    let n = tx.seal(ping4(), 4, buf);
    assert.equal(rx.open(buf.subarray(0, n), out), 'ok');
    // The sender moves on by 2^32 + 5000 packets the receiver never sees (a long outage): the low halves it now
    // sends are ahead of the window, so the receiver guesses the wrong high half until it re-synchronises.
    const far = new EspOutboundSa(a, { firstSequence: TWO32 + 5000 });
    let ok = 0;
    let bad = 0;
    for (let i = 0; i < 40; i++) {
      n = far.seal(ping4(), 4, buf);
      const status = rx.open(buf.subarray(0, n), out);
      if (status === 'ok') ok++;
      else if (status === 'bad-icv') bad++;
    }
    assert.ok(bad > 0 && bad <= 33, `failures before re-synchronising: ${bad}`);
    assert.ok(ok > 0);
    assert.equal(rx.counters.resynchronised, 1);
    assert.equal(rx.replay.highest, TWO32 + 5000 + 39);
  });
});

describe('sequence number exhaustion', () => {
  it('asks for a rekey before the 32-bit space ends and refuses to cycle', () => {
    const { a } = pair(SUITES[0]!);
    const near = new EspOutboundSa(a, { firstSequence: TWO32 - 1 - SEQ_REKEY_MARGIN - 1 });
    assert.equal(near.rekeyNeeded, false);
    const tx = new EspOutboundSa(a, { firstSequence: TWO32 - 2 });
    assert.equal(tx.rekeyNeeded, true);
    const buf = new Uint8Array(512);
    assert.ok(tx.seal(ping4(), 4, buf) > 0);
    assert.ok(tx.seal(ping4(), 4, buf) > 0);
    assert.equal(tx.exhausted, true);
    assert.equal(tx.seal(ping4(), 4, buf), -1);
    assert.equal(tx.counters.exhausted, 1);
  });
  it('with ESN the low half wraps and the SA goes on', () => {
    const { a } = pair(SUITES[0]!, { esn: true });
    const tx = new EspOutboundSa(a, { firstSequence: TWO32 - 1 });
    const buf = new Uint8Array(512);
    tx.seal(ping4(), 4, buf);
    tx.seal(ping4(), 4, buf);
    assert.deepEqual([...buf.subarray(4, 8)], [0, 0, 0, 0]);
    assert.equal(tx.rekeyNeeded, false);
  });
});

describe('typed drops', () => {
  for (const suite of [SUITES[1]!, SUITES[2]!, SUITES[4]!]) {
    it(`${suite.name}: every truncation and every single-bit flip is dropped with a reason`, () => {
      const { a, b } = pair(suite);
      const tx = new EspOutboundSa(a);
      const buf = new Uint8Array(512);
      const n = tx.seal(ping4(), 4, buf);
      const packet = buf.slice(0, n);
      const out = new Uint8Array(512);
      const set = new EspInboundSet();
      const rx = new EspInboundSa(b);
      set.add(rx);
      for (let len = 0; len < n; len++) {
        const status = set.open(packet.subarray(0, len), out);
        assert.ok(
          ['short', 'bad-length', 'bad-icv', 'unknown-spi'].includes(status),
          `length ${len}: ${status}`,
        );
      }
      for (let bit = 0; bit < n * 8; bit++) {
        const p = packet.slice();
        p[bit >> 3]! ^= 1 << (bit & 7);
        const status = set.open(p, out);
        if (bit < 32) assert.equal(status, 'unknown-spi', `bit ${bit}`);
        else if (bit < 64) assert.ok(status === 'bad-icv' || status === 'replay', `bit ${bit}: ${status}`);
        else assert.equal(status, 'bad-icv', `bit ${bit}`);
      }
      assert.equal(set.open(packet, out), 'ok');
      const replays = rx.counters.drops.replay;
      assert.equal(set.open(packet, out), 'replay');
      assert.equal(rx.counters.drops.replay, replays + 1);
      assert.equal(set.drops.unknownSpi, 32);
    });
  }

  /** Seals `plaintext` (payload, padding and trailer written by the test) as A's transform would. */
  function sealRaw(spec: ChildSaSpec, plaintext: Uint8Array): Uint8Array {
    assert.equal(plaintext.length % 4, 0);
    const t = createEspTransform(spec, 'seal');
    const out = new Uint8Array(8 + t.ivBytes + plaintext.length + t.icvBytes);
    new DataView(out.buffer).setUint32(0, spec.outboundSpi);
    new DataView(out.buffer).setUint32(4, 1);
    out.set(plaintext, 8 + t.ivBytes);
    t.seal(out, plaintext.length, 1, 0, false);
    return out;
  }

  it('bad padding, bad next header, malformed inner, selector mismatch, dummy', () => {
    const { a, b } = pair(SUITES[0]!);
    const out = new Uint8Array(1024);
    const cases: [string, Uint8Array][] = [];
    // Pad length 2 with padding bytes 7, 7 instead of 1, 2.
    const inner = ping4('10.1.0.5', '10.2.0.7', 4);
    const badPad = new Uint8Array(inner.length + 4);
    badPad.set(inner);
    badPad.set([7, 7, 2, 4], inner.length);
    cases.push(['bad-padding', badPad]);
    // Pad length larger than the payload.
    cases.push(['bad-padding', new Uint8Array([0, 0, 200, 4])]);
    // Next header 17 in tunnel mode.
    const udp = new Uint8Array(inner.length + 4);
    udp.set(inner);
    udp.set([1, 2, 2, 17], inner.length);
    cases.push(['bad-next-header', udp]);
    // Next header 4 with an IPv6 packet inside.
    const v6 = ping6();
    const mixed = new Uint8Array(v6.length + 4);
    mixed.set(v6);
    mixed.set([1, 2, 2, 4], v6.length);
    cases.push(['malformed-inner', mixed]);
    // Inner source outside the peer's selectors.
    const spoof = ping4('192.0.2.1', '10.2.0.7', 4);
    const spoofed = new Uint8Array(spoof.length + 4);
    spoofed.set(spoof);
    spoofed.set([1, 2, 2, 4], spoof.length);
    cases.push(['selector-mismatch', spoofed]);
    // Next header 59.
    cases.push(['dummy', new Uint8Array([1, 2, 2, 59])]);
    for (const [reason, plaintext] of cases) {
      // The spec is mirrored: what A seals, B opens.
      const raw = sealRaw(a, plaintext);
      const rx = new EspInboundSa(b);
      assert.equal(rx.open(raw, out), reason);
      assert.equal(rx.counters.drops[reason as (typeof ESP_DROP_REASONS)[number]], 1);
    }
  });
});

describe('fuzz', () => {
  it('10^6 random and mutated packets into open(): no throw, every one dropped and counted', () => {
    const { a, b } = pair(SUITES[1]!, { esn: true });
    const tx = new EspOutboundSa(a);
    const set = new EspInboundSet();
    const rx = new EspInboundSa(b);
    set.add(rx);
    const buf = new Uint8Array(2048);
    const out = new Uint8Array(2048);
    const valid: Uint8Array[] = [];
    for (let i = 0; i < 64; i++)
      valid.push(buf.slice(0, tx.seal(ping4('10.1.0.5', '10.2.0.7', i * 7), 4, buf)));
    const random = new Uint8Array(randomBytes(1 << 20));
    let r = 0;
    const next = (): number => {
      if (r >= random.length) r = 0;
      return random[r++]!;
    };
    const started = performance.now();
    let opened = 0;
    let dropped = 0;
    const total = 1_000_000;
    for (let i = 0; i < total; i++) {
      let p: Uint8Array;
      const kind = i % 4;
      if (kind === 0) {
        // Random bytes of random length; half of them carry the real SPI so they reach the SA.
        const len = next() | ((next() & 1) << 8);
        p = random.subarray(r, Math.min(random.length, r + len));
        r += len;
        if (i % 8 === 0 && p.length >= 4) {
          p = p.slice();
          p.set([0, 0, 0, 0xb1 & 0xff]);
          p[3] = 0xb1;
        }
      } else {
        // A valid packet, mutated: flipped bytes, truncated or extended.
        const base = valid[next() % valid.length]!;
        p = base.slice();
        if (kind === 1) p[next() % p.length]! ^= 1 << (next() & 7);
        else if (kind === 2) p = p.subarray(0, next() % p.length);
        else {
          const longer = new Uint8Array(p.length + (next() & 31) + 1);
          longer.set(p);
          p = longer;
        }
      }
      const status = set.open(p, out);
      if (status === 'ok') opened++;
      else dropped++;
    }
    const seconds = (performance.now() - started) / 1000;
    assert.equal(opened + dropped, total);
    const counted =
      set.drops.short + set.drops.unknownSpi + Object.values(rx.counters.drops).reduce((x, y) => x + y, 0);
    assert.equal(counted, dropped, 'one counted drop per dropped input');
    assert.ok(opened <= valid.length, `opened ${opened}`);
    assert.ok(seconds < 30, `took ${seconds.toFixed(1)} s`);
  });
});
