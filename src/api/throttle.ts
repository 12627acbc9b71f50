/**
 * Throttling of failed attempts, by key: a key (a client address for the API; a username or an address for the
 * web console's login) with more than `maxFailures` failures within the last `windowMs` is refused until enough
 * of them have aged out of the window. Only failures count: successes neither count nor forgive, so a guesser
 * sharing an address with a legitimate client is not let off by that client's successes (a caller that wants
 * forgiveness, such as a login after the right password, calls `forget`).
 *
 * Sans-IO: the caller passes the time (milliseconds, e.g. Date.now()) to every call; nothing here reads a clock
 * or sets a timer, so a test can step through a minute at once.
 *
 * A sliding log, exact rather than a fixed window (which lets twice the limit through across a window edge):
 * each key keeps the times of its newest maxFailures + 1 failures, the most that can decide anything. The
 * table holds at most `maxKeys` keys; a new key past that evicts the key whose last failure is oldest (Map
 * order: a key is moved to the end on each failure), which is also the one most likely to have aged out.
 * Memory is thus bounded by maxKeys × (maxFailures + 1) numbers, whatever a client sends.
 */

export interface ThrottleLimits {
  /** Failures a key may make within the window; one more and it is refused. */
  readonly maxFailures: number;
  readonly windowMs: number;
  /** Keys tracked at most. */
  readonly maxKeys: number;
}

/** The API's limits for failed authentication: more than 20 within a minute, per client address. */
export const AUTH_FAILURE_LIMITS: ThrottleLimits = { maxFailures: 20, windowMs: 60_000, maxKeys: 10_000 };

/**
 * The console's login (docs/console.md): five failed logins per client address within five minutes, and every
 * attempt after the fifth is refused until the oldest is five minutes old. A key is refused once it has more
 * than maxFailures failures, so that is 4 here.
 */
export const LOGIN_FAILURE_LIMITS: ThrottleLimits = { maxFailures: 4, windowMs: 5 * 60_000, maxKeys: 10_000 };

export class FailureThrottle {
  readonly limits: ThrottleLimits;
  /** Key -> times of its newest failures, oldest first; least recently failed key first. */
  readonly #failures = new Map<string, number[]>();

  constructor(limits: ThrottleLimits = AUTH_FAILURE_LIMITS) {
    for (const [name, value] of Object.entries(limits)) {
      if (!Number.isSafeInteger(value) || value < 1)
        throw new RangeError(`FailureThrottle: ${name} must be a positive integer (got ${String(value)})`);
    }
    this.limits = { ...limits };
  }

  /** How many keys are tracked (at most limits.maxKeys). */
  get size(): number {
    return this.#failures.size;
  }

  /**
   * Milliseconds until `key` may try again: 0 when it may now. Never more than the window, even if the
   * clock went back since the failures were recorded.
   */
  retryAfter(key: string, now: number): number {
    const times = this.#failures.get(key);
    if (times === undefined) return 0;
    this.#expire(times, now);
    if (times.length === 0) {
      this.#failures.delete(key);
      return 0;
    }
    if (times.length <= this.limits.maxFailures) return 0;
    // Refused until the oldest failure kept leaves the window; then maxFailures remain, which is allowed.
    const oldest = times[0]!;
    return Math.min(this.limits.windowMs, Math.max(1, oldest + this.limits.windowMs - now));
  }

  /** Records a failure of `key` at `now`. */
  fail(key: string, now: number): void {
    let times = this.#failures.get(key);
    if (times === undefined) {
      times = [];
      if (this.#failures.size >= this.limits.maxKeys) {
        const oldestKey = this.#failures.keys().next();
        if (oldestKey.done !== true) this.#failures.delete(oldestKey.value);
      }
    } else {
      // Moved to the end: the Map stays ordered by last failure.
      this.#failures.delete(key);
      this.#expire(times, now);
    }
    times.push(now);
    if (times.length > this.limits.maxFailures + 1) times.shift();
    this.#failures.set(key, times);
  }

  /** Forgets every failure of `key`. */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  /** Drops the failures that are outside the window ending at `now` (a failure at now - windowMs is). */
  #expire(times: number[], now: number): void {
    const horizon = now - this.limits.windowMs;
    let drop = 0;
    while (drop < times.length && times[drop]! <= horizon) drop++;
    if (drop > 0) times.splice(0, drop);
  }
}
