/**
 * ESP anti-replay (RFC 4303 §3.4.3 and Appendix A), for 32-bit and extended (64-bit) sequence numbers.
 *
 * The window is an RFC 6479 ring of 32-bit words, as in src/wireguard/replay.ts: moving forward clears whole
 * words, so a check costs O(1) whatever the jump. Sequence numbers are JS numbers (exact below 2^53, see
 * SEQ64_LAST). The window's top starts at 0, which ESP never sends (the first packet carries 1).
 *
 * With ESN only the low 32 bits travel; the receiver infers the high half from the window (Appendix A2.2):
 * a low half at or above the bottom of the window belongs to the window's subspace, one below it to the next.
 * check() never moves the window: the caller authenticates first, then accept()s.
 */
import { REPLAY_WINDOW_SIZE, REPLAY_WINDOW_WORDS } from './esp-constants.js';

const TWO32 = 0x1_0000_0000;

export class EspReplayWindow {
  private readonly ring = new Uint32Array(REPLAY_WINDOW_WORDS);
  /** The highest sequence number accepted so far (the window's top, T in Appendix A). */
  private top = 0;

  constructor(readonly windowSize: number = REPLAY_WINDOW_SIZE) {
    if (windowSize > REPLAY_WINDOW_SIZE || windowSize < 32) throw new RangeError(`bad window ${windowSize}`);
  }

  get highest(): number {
    return this.top;
  }

  /**
   * The full sequence number a received low half stands for (RFC 4303 Appendix A2.2), given the window.
   * Without ESN the low half is the number.
   */
  infer(low: number, esn: boolean): number {
    if (!esn) return low;
    const w = this.windowSize;
    const th = Math.floor(this.top / TWO32);
    const tl = this.top % TWO32;
    if (tl >= w - 1) {
      // Case A: the window lies within one subspace.
      return low >= tl - w + 1 ? th * TWO32 + low : (th + 1) * TWO32 + low;
    }
    // Case B: the window spans two subspaces.
    if (low >= tl - w + 1 + TWO32) return th === 0 ? -1 : (th - 1) * TWO32 + low;
    return th * TWO32 + low;
  }

  /** Whether `seq` would be refused now (zero, older than the window, or already seen); records nothing. */
  refuses(seq: number): boolean {
    if (seq <= 0 || !Number.isSafeInteger(seq)) return true;
    if (seq > this.top) return false;
    if (this.top - seq >= this.windowSize) return true;
    const bit = (1 << (seq % 32)) >>> 0;
    return (this.ring[Math.floor(seq / 32) % REPLAY_WINDOW_WORDS]! & bit) !== 0;
  }

  /** Records an authenticated `seq`; false if it is refused (see refuses()). */
  accept(seq: number): boolean {
    if (this.refuses(seq)) return false;
    const word = Math.floor(seq / 32);
    if (seq > this.top) {
      const current = Math.floor(this.top / 32);
      const steps = Math.min(word - current, REPLAY_WINDOW_WORDS);
      for (let i = 1; i <= steps; i++) this.ring[(current + i) % REPLAY_WINDOW_WORDS] = 0;
      this.top = seq;
    }
    const index = word % REPLAY_WINDOW_WORDS;
    this.ring[index] = this.ring[index]! | ((1 << (seq % 32)) >>> 0);
    return true;
  }
}
