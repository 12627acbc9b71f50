/**
 * The RFC 6479 replay window (src/wireguard/replay.ts): ordering, duplicates, the exact window edge, jumps
 * that wrap the ring, limits and bad input, then a seeded differential run against a Set-based model.
 *
 * Semantics, as documented in the source: a counter is accepted iff it is an integer in [0, limit), it has
 * not been accepted since the last reset, and it is not more than REPLAY_WINDOW_SIZE behind the highest
 * counter seen so far (which starts at 0). Anything greater than the highest is always accepted.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  REJECT_AFTER_MESSAGES,
  REPLAY_WINDOW_SIZE,
  REPLAY_WINDOW_WORDS,
} from '../../src/wireguard/constants.js';
import { ReplayWindow } from '../../src/wireguard/replay.js';
import { seededRandom } from '../support/random.js';

const LIMIT = REJECT_AFTER_MESSAGES;
/** Counters that are this far apart share one bit of the ring. */
const RING_BITS = REPLAY_WINDOW_WORDS * 32;

function accept(w: ReplayWindow, counter: number, limit = LIMIT): boolean {
  return w.accept(counter, limit);
}

describe('ReplayWindow: constants', () => {
  it('the window is 255 words of 32 bits out of a ring of 256 words', () => {
    assert.equal(REPLAY_WINDOW_WORDS, 256);
    assert.equal(REPLAY_WINDOW_SIZE, 8160);
    assert.equal(RING_BITS, 8192);
  });
});

describe('ReplayWindow: basic acceptance', () => {
  it('accepts counters in order from 0, each exactly once', () => {
    const w = new ReplayWindow();
    for (let c = 0; c < 3 * RING_BITS + 100; c++) {
      assert.equal(accept(w, c), true, `first ${c}`);
      assert.equal(accept(w, c), false, `repeat ${c}`);
    }
    // Everything already delivered is now refused, whether still in the window or too old.
    for (let c = 0; c < 3 * RING_BITS + 100; c++) assert.equal(accept(w, c), false, `later ${c}`);
  });

  it('rejects a duplicate of 0 and of a later counter', () => {
    const w = new ReplayWindow();
    assert.equal(accept(w, 0), true);
    assert.equal(accept(w, 0), false);
    assert.equal(accept(w, 5), true);
    assert.equal(accept(w, 5), false);
    assert.equal(accept(w, 0), false);
    assert.equal(accept(w, 4), true);
    assert.equal(accept(w, 4), false);
  });

  it('accepts a first counter other than 0, and 0 after it', () => {
    const w = new ReplayWindow();
    assert.equal(accept(w, 7), true);
    assert.equal(accept(w, 0), true);
    assert.equal(accept(w, 0), false);
    assert.equal(accept(w, 7), false);
  });

  it('accepts out-of-order counters within the window exactly once', () => {
    const w = new ReplayWindow();
    assert.equal(accept(w, 100), true);
    for (let c = 99; c >= 50; c--) assert.equal(accept(w, c), true, `reordered ${c}`);
    for (let c = 50; c <= 100; c++) assert.equal(accept(w, c), false, `duplicate ${c}`);
    for (let c = 0; c < 50; c++) assert.equal(accept(w, c), true, `late ${c}`);
    for (let c = 0; c <= 100; c++) assert.equal(accept(w, c), false);
  });

  it('handles every bit of a 32-bit word, including bit 31, in any order', () => {
    const w = new ReplayWindow();
    const order = [31, 0, 63, 32, 30, 1, 62, 33];
    for (const c of order) assert.equal(accept(w, c), true, `first ${c}`);
    for (const c of order) assert.equal(accept(w, c), false, `repeat ${c}`);
    for (let c = 0; c < 64; c++) if (!order.includes(c)) assert.equal(accept(w, c), true, `rest ${c}`);
    for (let c = 0; c < 64; c++) assert.equal(accept(w, c), false, `all ${c}`);
  });
});

describe('ReplayWindow: the window edge', () => {
  // Highest counters at and around word boundaries, and a few unaligned ones.
  const highs = [
    REPLAY_WINDOW_SIZE,
    REPLAY_WINDOW_SIZE + 1,
    RING_BITS - 1,
    RING_BITS,
    RING_BITS + 31,
    RING_BITS + 32,
    20_000,
    20_031,
    20_032,
    123_457,
    2 ** 40 + 17,
    2 ** 52,
  ];

  for (const high of highs) {
    it(`with highest ${high}: ${REPLAY_WINDOW_SIZE} behind is accepted, ${REPLAY_WINDOW_SIZE + 1} behind is not`, () => {
      const w = new ReplayWindow();
      assert.equal(accept(w, high), true);
      assert.equal(accept(w, high - REPLAY_WINDOW_SIZE - 1), false, 'one past the edge');
      assert.equal(accept(w, high - REPLAY_WINDOW_SIZE - 32), false);
      assert.equal(accept(w, high - RING_BITS), false, 'the counter sharing the ring bit of the highest');
      assert.equal(accept(w, high - REPLAY_WINDOW_SIZE), true, 'exactly at the edge');
      assert.equal(accept(w, high - REPLAY_WINDOW_SIZE), false, 'edge duplicate');
      assert.equal(accept(w, high - REPLAY_WINDOW_SIZE + 1), true, 'just inside');
      assert.equal(accept(w, high - 1), true);
      assert.equal(accept(w, high), false);
    });
  }

  it('the edge moves with the highest counter', () => {
    const w = new ReplayWindow();
    assert.equal(accept(w, 10_000), true);
    assert.equal(accept(w, 10_000 - REPLAY_WINDOW_SIZE), true);
    assert.equal(accept(w, 10_001), true);
    // 10_000 - SIZE is now SIZE + 1 behind: refused (it was also seen); its neighbour is exactly at the edge.
    assert.equal(accept(w, 10_000 - REPLAY_WINDOW_SIZE), false);
    assert.equal(accept(w, 10_001 - REPLAY_WINDOW_SIZE - 2), false, 'fresh but too old');
    assert.equal(accept(w, 10_001 - REPLAY_WINDOW_SIZE), true);
  });

  it('at a fresh start, counter 0 is inside the window until the highest passes REPLAY_WINDOW_SIZE', () => {
    const w = new ReplayWindow();
    assert.equal(accept(w, REPLAY_WINDOW_SIZE), true);
    assert.equal(accept(w, 0), true);
    const v = new ReplayWindow();
    assert.equal(accept(v, REPLAY_WINDOW_SIZE + 1), true);
    assert.equal(accept(v, 0), false);
    assert.equal(accept(v, 1), true);
  });
});

describe('ReplayWindow: jumps forward', () => {
  it('a jump of exactly one ring reuses the same ring bit for a new counter', () => {
    const w = new ReplayWindow();
    assert.equal(accept(w, 5), true);
    assert.equal(accept(w, 5 + RING_BITS), true, 'same ring bit as 5, not seen before');
    assert.equal(accept(w, 5 + RING_BITS), false);
    assert.equal(accept(w, 5), false, 'too old now');
    assert.equal(accept(w, 4 + RING_BITS), true);
    assert.equal(accept(w, 6 + RING_BITS), true);
  });

  for (const k of [1, 2, 3, 10, 1000, 2 ** 30]) {
    it(`after jumping forward by ${k} rings, nothing stale counts as seen`, () => {
      const w = new ReplayWindow();
      for (let c = 0; c < 100; c++) assert.equal(accept(w, c), true);
      for (let c = 200; c < 400; c += 3) assert.equal(accept(w, c), true);
      const base = k * RING_BITS;
      assert.equal(accept(w, base + 500), true);
      // Old counters are too old now.
      for (let c = 0; c < 100; c++) assert.equal(accept(w, c), false, `old ${c}`);
      for (let c = 200; c < 400; c += 3) assert.equal(accept(w, c), false, `old ${c}`);
      // Counters on the same ring bits as the old ones are new and inside the window.
      for (let c = 0; c < 100; c++) assert.equal(accept(w, base + c), true, `aliased ${base + c}`);
      for (let c = 200; c < 400; c += 3) assert.equal(accept(w, base + c), true, `aliased ${base + c}`);
      for (let c = 0; c < 500; c++) {
        const seen = c < 100 || (c >= 200 && c < 400 && (c - 200) % 3 === 0);
        assert.equal(accept(w, base + c), !seen, `second pass ${base + c}`);
      }
      assert.equal(accept(w, base + 500), false);
    });
  }

  it('a jump of slightly less than a ring clears exactly the words it passes', () => {
    const w = new ReplayWindow();
    for (let c = 0; c < 100; c++) assert.equal(accept(w, c), true); // words 0..3
    // Highest moves from word 3 to word 257 (ring slot 1): slots 4..255, 0 and 1 are cleared; slots 2 and 3
    // keep the bits of 64..99, and 82..99 are still inside the window.
    const high = RING_BITS + 50;
    const edge = high - REPLAY_WINDOW_SIZE;
    assert.equal(edge, 82);
    assert.equal(accept(w, high), true);
    for (let c = 0; c < edge; c++) assert.equal(accept(w, c), false, `too old ${c}`);
    for (let c = edge; c < 100; c++) assert.equal(accept(w, c), false, `still seen ${c}`);
    for (let c = 100; c < RING_BITS; c++) assert.equal(accept(w, c), true, `window ${c}`);
    for (let c = RING_BITS; c < high; c++) assert.equal(accept(w, c), true, `cleared slot ${c}`);
    // Moving into words 258 and 259 (slots 2 and 3) clears the old bits of 64..99 first.
    for (let c = RING_BITS + 64; c < RING_BITS + 100; c++) assert.equal(accept(w, c), true, `slot 2/3 ${c}`);
    for (let c = RING_BITS + 51; c < RING_BITS + 64; c++) assert.equal(accept(w, c), true, `tail ${c}`);
    for (let c = 0; c < RING_BITS + 100; c++) assert.equal(accept(w, c), false, `all seen or too old ${c}`);
    assert.equal(accept(w, RING_BITS + 100), true);
  });

  it('a move within the same word clears nothing', () => {
    const w = new ReplayWindow();
    assert.equal(accept(w, 32), true);
    assert.equal(accept(w, 40), true);
    assert.equal(accept(w, 63), true);
    assert.equal(accept(w, 32), false);
    assert.equal(accept(w, 40), false);
    assert.equal(accept(w, 33), true);
  });
});

describe('ReplayWindow: limits and bad input', () => {
  it('rejects counters at or beyond the limit without moving the window', () => {
    const w = new ReplayWindow();
    assert.equal(accept(w, 10, 10), false);
    assert.equal(accept(w, 11, 10), false);
    assert.equal(accept(w, 9, 10), true);
    assert.equal(accept(w, 0, 1), true);
    assert.equal(accept(w, 0, 0), false);
    assert.equal(accept(w, 100_000, 100_000), false);
    // Had 100_000 moved the window, 50 would be too old.
    assert.equal(accept(w, 50), true);
    assert.equal(accept(w, LIMIT, LIMIT), false);
    assert.equal(accept(w, 51), true);
    assert.equal(accept(w, LIMIT - 1, LIMIT), true);
    assert.equal(accept(w, LIMIT - 1, LIMIT), false);
    assert.equal(accept(w, LIMIT - 1 - REPLAY_WINDOW_SIZE, LIMIT), true);
    assert.equal(accept(w, LIMIT - 2 - REPLAY_WINDOW_SIZE, LIMIT), false);
  });

  it('rejects negative, fractional and non-finite counters without recording anything', () => {
    const w = new ReplayWindow();
    for (const bad of [-1, -32, -0.5, 0.5, 1.5, 31.999, NaN, Infinity, -Infinity, 2 ** 51 + 0.5]) {
      assert.equal(accept(w, bad), false, `counter ${bad}`);
      assert.equal(w.accept(bad, Infinity), false, `counter ${bad} with no limit`);
    }
    // Nothing above was recorded and the window did not move.
    for (const c of [0, 1, 31, 32]) assert.equal(accept(w, c), true, `after bad input: ${c}`);
  });

  it('reset() forgets every counter and the highest', () => {
    const w = new ReplayWindow();
    for (let c = 0; c < 100; c++) accept(w, c);
    assert.equal(accept(w, 100_000), true);
    w.reset();
    for (let c = 0; c < 100; c++) assert.equal(accept(w, c), true, `after reset ${c}`);
    assert.equal(accept(w, 100_000), true);
    assert.equal(accept(w, 100_000), false);
    w.reset();
    // After reset the highest is 0 again: REPLAY_WINDOW_SIZE is reachable from it, and so is 0 after it.
    assert.equal(accept(w, REPLAY_WINDOW_SIZE), true);
    assert.equal(accept(w, 0), true);
    assert.equal(accept(w, 0), false);
  });

  it('windows are independent of each other', () => {
    const a = new ReplayWindow();
    const b = new ReplayWindow();
    assert.equal(accept(a, 1), true);
    assert.equal(accept(b, 1), true);
    assert.equal(accept(a, 50_000), true);
    assert.equal(accept(b, 2), true);
    assert.equal(accept(a, 2), false);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Differential test against a Set-based model
// ---------------------------------------------------------------------------------------------------------

class ReferenceWindow {
  private seen = new Set<number>();
  highest = 0;

  accept(counter: number, limit: number): boolean {
    if (!Number.isInteger(counter) || counter < 0 || counter >= limit) return false;
    if (this.seen.has(counter)) return false;
    if (counter <= this.highest && this.highest - counter > REPLAY_WINDOW_SIZE) return false;
    this.seen.add(counter);
    if (counter > this.highest) this.highest = counter;
    return true;
  }

  reset(): void {
    this.seen.clear();
    this.highest = 0;
  }
}

function runDifferential(seed: number, operations: number): void {
  const random = seededRandom(seed);
  const u32 = (): number => {
    const b = random(4);
    return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
  };
  const below = (n: number): number => u32() % n;
  const w = new ReplayWindow();
  const ref = new ReferenceWindow();
  let next = 0;
  const recent: number[] = [];
  const tally = { accepted: 0, rejected: 0, edge: 0, aliased: 0, tooOld: 0 };

  for (let op = 0; op < operations; op++) {
    let counter: number;
    let limit = LIMIT;
    const roll = below(1000);
    if (roll < 500) {
      next += 1 + below(3);
      counter = next;
    } else if (roll < 800) {
      // Reordered by up to ~9000, past the window edge.
      counter = Math.max(0, next - below(9000));
    } else if (roll < 880) {
      counter = recent.length > 0 ? recent[below(recent.length)]! : 0;
    } else if (roll < 940) {
      // Right at the edge of the window.
      counter = Math.max(0, ref.highest - REPLAY_WINDOW_SIZE + below(5) - 2);
      tally.edge++;
    } else if (roll < 970) {
      // A counter sharing a ring bit with an older or newer one.
      const k = 1 + below(3);
      counter = Math.max(0, next + (below(2) === 0 ? k : -k) * RING_BITS + below(64) - 32);
      tally.aliased++;
    } else if (roll < 985) {
      // A big jump forward, sometimes by whole rings.
      next += below(2) === 0 ? (1 + below(4)) * RING_BITS : below(40_000);
      counter = next;
    } else if (roll < 993) {
      const bad = [-1, -5000, 0.5, next + 0.25, NaN, Infinity, -Infinity];
      counter = bad[below(bad.length)]!;
    } else if (roll < 999) {
      counter = next + below(100);
      limit = counter + 1 - below(3);
    } else {
      w.reset();
      ref.reset();
      next = below(100);
      recent.length = 0;
      continue;
    }
    if (Number.isInteger(counter) && counter >= 0 && ref.highest - counter > REPLAY_WINDOW_SIZE)
      tally.tooOld++;
    const want = ref.accept(counter, limit);
    // refuses() is a look without recording: it must predict accept() exactly.
    assert.equal(w.refuses(counter, limit), !want, `seed ${seed}, op ${op}: refuses(${counter}, ${limit})`);
    assert.equal(w.accept(counter, limit), want, `seed ${seed}, op ${op}: accept(${counter}, ${limit})`);
    if (want) {
      tally.accepted++;
      recent.push(counter);
      if (recent.length > 64) recent.shift();
    } else {
      tally.rejected++;
    }
  }
  // The run must have covered both outcomes and the interesting cases.
  assert.ok(tally.accepted > operations / 3, JSON.stringify(tally));
  assert.ok(tally.rejected > operations / 10, JSON.stringify(tally));
  assert.ok(tally.tooOld > operations / 50, JSON.stringify(tally));
  assert.ok(tally.edge > operations / 50, JSON.stringify(tally));
  assert.ok(tally.aliased > operations / 100, JSON.stringify(tally));
}

describe('ReplayWindow: differential test against a Set-based model (accept and refuses)', () => {
  it('agrees for 100,000 operations (seed 1)', () => {
    runDifferential(1, 100_000);
  });

  it('agrees for 100,000 operations (seed 0x5eed)', () => {
    runDifferential(0x5eed, 100_000);
  });
});
