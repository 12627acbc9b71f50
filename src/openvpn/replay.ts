/**
 * Replay protection for the long-form packet id (32-bit id ‖ 32-bit time) that tls-crypt (and tls-auth)
 * put on every control packet, as OpenVPN's packet_id.c does it in "backtrack" mode, the mode of the control
 * channel over both UDP and TCP:
 *
 *   - id 0 is never valid (senders start at 1);
 *   - a time older than the newest seen is refused, a newer time starts a fresh window;
 *   - within one time, ids up to `window − 1` behind the highest may arrive late, each at most once.
 *
 * `check` only looks; `commit` records a packet once it has been authenticated, so forgeries cannot move
 * the window.
 */
import { REPLAY_WINDOW } from './constants.js';

export type ReplayVerdict = 'fresh' | 'zero-id' | 'time-backtrack' | 'too-old' | 'replayed';

export class ReplayWindow {
  private time: number | undefined;
  private highest = 0;
  /** seen[id % window]: whether `id` (within the window below `highest`) arrived. */
  private readonly seen: Uint8Array;

  constructor(readonly window: number = REPLAY_WINDOW) {
    if (!Number.isInteger(window) || window < 1 || window > 1 << 16)
      throw new RangeError('bad replay window');
    this.seen = new Uint8Array(window);
  }

  check(id: number, time: number): ReplayVerdict {
    if (id === 0) return 'zero-id';
    if (this.time === undefined || time > this.time) return 'fresh';
    if (time < this.time) return 'time-backtrack';
    if (id > this.highest) return 'fresh';
    if (this.highest - id >= this.window) return 'too-old';
    return this.seen[id % this.window] ? 'replayed' : 'fresh';
  }

  /** Records a packet that passed `check` and authentication. */
  commit(id: number, time: number): void {
    if (this.time === undefined || time > this.time) {
      this.time = time;
      this.highest = id;
      this.seen.fill(0);
    } else if (id > this.highest) {
      const advance = id - this.highest;
      if (advance >= this.window) this.seen.fill(0);
      else for (let i = this.highest + 1; i <= id; i++) this.seen[i % this.window] = 0;
      this.highest = id;
    }
    this.seen[id % this.window] = 1;
  }
}
