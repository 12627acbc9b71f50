/**
 * Replay protection for the data channel's short-form packet id (32 bits, no time field), as OpenVPN's
 * packet_id.c does it with the default `--replay-window 64 15`:
 *
 *   - UDP ("backtrack" mode): id 0 is never valid; an id above the highest seen is fresh; an id up to
 *     `size − 1` below it is fresh if it was not seen and it is not *expired*. OpenVPN's packet_id_reap marks
 *     every slot from the first one whose packet arrived more than `backtrackMs` ago, and all older slots, as
 *     expired: a late packet is accepted only while the packets after it are recent. OpenVPN reaps every
 *     5 s (SEQ_REAP_INTERVAL); here the same rule is applied exactly at each check, so this window is never
 *     more lenient than OpenVPN's.
 *   - TCP (no backtrack): the stream cannot reorder, so each id must be exactly the previous one plus one.
 *
 * This is a separate class from replay.ts (the control channel's long form, with a time field and no
 * expiry). `check` only looks; `commit` records an authenticated packet, so forgeries cannot move the window.
 * No allocation after construction.
 */

/** options.c: --replay-window 64 15. */
export const DATA_REPLAY_WINDOW = 64;
export const DATA_REPLAY_BACKTRACK_MS = 15_000;
/** packet_id.h MAX_SEQ_BACKTRACK. */
export const MAX_DATA_REPLAY_WINDOW = 65_536;

export type DataReplayVerdict =
  'fresh' | 'zero-packet-id' | 'replayed' | 'too-old' | 'expired' | 'out-of-sequence';

export type DataReplayMode = 'udp' | 'tcp';

export class DataReplayWindow {
  private highest = 0;
  /** For id within the window: seen[id % size] is 1 once it arrived, and arrived[id % size] when (ms). */
  private readonly seen: Uint8Array;
  private readonly arrived: Float64Array;

  constructor(
    readonly mode: DataReplayMode = 'udp',
    readonly size: number = DATA_REPLAY_WINDOW,
    readonly backtrackMs: number = DATA_REPLAY_BACKTRACK_MS,
  ) {
    if (!Number.isInteger(size) || size < 1 || size > MAX_DATA_REPLAY_WINDOW)
      throw new RangeError('bad replay window size');
    if (!(backtrackMs >= 0)) throw new RangeError('bad replay window time');
    this.seen = new Uint8Array(size);
    this.arrived = new Float64Array(size);
  }

  /** The highest packet id committed so far (0 before the first). */
  get highestId(): number {
    return this.highest;
  }

  check(id: number, now: number): DataReplayVerdict {
    if (id === 0) return 'zero-packet-id';
    if (this.mode === 'tcp') {
      return this.highest === 0 || id === this.highest + 1 ? 'fresh' : 'out-of-sequence';
    }
    if (id > this.highest) return 'fresh';
    const diff = this.highest - id;
    if (diff >= this.size) return 'too-old';
    if (this.seen[id % this.size]) return 'replayed';
    // Expired when any packet between this one and the highest (inclusive) arrived too long ago.
    const oldest = now - this.backtrackMs;
    for (let i = id + 1; i <= this.highest; i++) {
      const slot = i % this.size;
      if (this.seen[slot] && this.arrived[slot]! < oldest) return 'expired';
    }
    return 'fresh';
  }

  /** Records a packet that passed `check` and authentication. */
  commit(id: number, now: number): void {
    if (id > this.highest) {
      const advance = id - this.highest;
      if (advance >= this.size) this.seen.fill(0);
      else for (let i = this.highest + 1; i <= id; i++) this.seen[i % this.size] = 0;
      this.highest = id;
    }
    const slot = id % this.size;
    this.seen[slot] = 1;
    this.arrived[slot] = now;
  }
}
