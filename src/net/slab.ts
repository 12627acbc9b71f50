/**
 * Short-lived packet buffers (a sealed datagram, a frame for the TUN device), carved out of large
 * ArrayBuffers instead of allocated one by one.
 *
 * Such a buffer lives only until the I/O shell has handed it to the kernel, yet `new Uint8Array(n)` of more
 * than 64 bytes costs V8 a separately allocated, separately tracked backing store: on the per-packet path
 * that is the largest cost after the cipher itself, and on an idle tunnel (cold caches) a noticeable part of
 * the round trip. A view into a slab costs a small object. Slabs are never reused: a new one is started
 * when the current one is full, and the old one is freed by the garbage collector once no view of it is
 * left, so a buffer kept by anyone stays valid.
 */
export class Slab {
  private buffer = new ArrayBuffer(0);
  private next = 0;

  constructor(
    /**
     * Bytes per slab. 64 KiB: below malloc's mmap threshold, and little held by one buffer someone keeps
     * (256 KiB slabs raised the bench's peak RSS by a fifth to a third, for no throughput).
     */
    private readonly size = 64 * 1024,
  ) {}

  /** A zero-filled buffer of `length` bytes: a view into the current slab, or its own for a large one. */
  take(length: number): Uint8Array {
    if (length > this.size >>> 4) return new Uint8Array(length);
    if (this.next + length > this.buffer.byteLength) {
      this.buffer = new ArrayBuffer(this.size);
      this.next = 0;
    }
    const view = new Uint8Array(this.buffer, this.next, length);
    this.next += (length + 7) & ~7; // 8-byte aligned starts
    return view;
  }
}
