/**
 * Sliding-window replay protection for transport counters (RFC 6479). The window is a ring of 32-bit words;
 * moving forward clears whole words instead of shifting bits, so each check costs O(1). One word is always
 * in flux, so the guaranteed window is (words − 1) × 32 packets (8160 here; wireguard-go keeps 8128).
 *
 * Counters are JS numbers; callers bound them below 2^53 (constants.REJECT_AFTER_MESSAGES).
 */
import { REPLAY_WINDOW_SIZE, REPLAY_WINDOW_WORDS } from './constants.js';

export class ReplayWindow {
  private readonly ring = new Uint32Array(REPLAY_WINDOW_WORDS);
  private highest = 0;

  /**
   * Accepts a counter that has not been seen and is not older than the window, recording it.
   * Call only after the packet authenticated, so forged counters cannot move the window.
   */
  accept(counter: number, limit: number): boolean {
    if (counter >= limit || counter < 0 || !Number.isInteger(counter)) return false;
    const word = Math.floor(counter / 32);
    if (counter > this.highest) {
      const current = Math.floor(this.highest / 32);
      const steps = Math.min(word - current, REPLAY_WINDOW_WORDS);
      for (let i = 1; i <= steps; i++) this.ring[(current + i) % REPLAY_WINDOW_WORDS] = 0;
      this.highest = counter;
    } else if (this.highest - counter > REPLAY_WINDOW_SIZE) {
      return false;
    }
    const index = word % REPLAY_WINDOW_WORDS;
    const bit = (1 << (counter % 32)) >>> 0;
    const cell = this.ring[index]!;
    if ((cell & bit) !== 0) return false;
    this.ring[index] = cell | bit;
    return true;
  }

  /**
   * Whether accept() would refuse `counter` now (out of range, older than the window, or seen), without
   * recording anything: a replay is dropped before the work (and, in place, the damage) of decrypting it.
   */
  refuses(counter: number, limit: number): boolean {
    if (counter >= limit || counter < 0 || !Number.isInteger(counter)) return true;
    if (counter > this.highest) return false;
    if (this.highest - counter > REPLAY_WINDOW_SIZE) return true;
    const bit = (1 << (counter % 32)) >>> 0;
    return (this.ring[Math.floor(counter / 32) % REPLAY_WINDOW_WORDS]! & bit) !== 0;
  }

  reset(): void {
    this.ring.fill(0);
    this.highest = 0;
  }
}
