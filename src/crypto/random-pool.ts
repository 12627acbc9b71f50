/**
 * Small random numbers drawn from a pool that is refilled from a random source a few hundred bytes at a time.
 *
 * The data path needs randomness per packet in one place: the jitter added to the rekey timer that every data
 * packet may arm (paper §6.2). Asking node:crypto for two bytes costs a native job object, an OpenSSL DRBG call
 * and a getpid(2) each time, which on an idle tunnel is a noticeable share of a packet's whole cost. Drawing
 * from a pool costs an index increment. Every byte is used once; the source stays the caller's (a CSPRNG by
 * default, a deterministic one in tests).
 */
export class RandomPool {
  private pool: Uint8Array = new Uint8Array(0);
  private next = 0;

  constructor(
    private readonly source: (n: number) => Uint8Array,
    private readonly size = 256,
  ) {
    if (!Number.isInteger(size) || size < 4) throw new RangeError(`RandomPool: bad size ${size}`);
  }

  /** A uniformly random integer in [0, 2^16). */
  uint16(): number {
    const p = this.take(2);
    return (this.pool[p]! << 8) | this.pool[p + 1]!;
  }

  /** The offset of `n` unused bytes, refilling first if fewer are left. */
  private take(n: number): number {
    if (this.next + n > this.pool.length) {
      const fresh = this.source(this.size);
      if (fresh.length < n) throw new RangeError(`RandomPool: the source returned ${fresh.length} bytes`);
      this.pool = fresh;
      this.next = 0;
    }
    const at = this.next;
    this.next += n;
    return at;
  }
}
