/**
 * One batch of reads from a TUN device (one packet per read(2)): into one preallocated buffer, until EAGAIN
 * (the fd is O_NONBLOCK) or a limit (maxPackets, or maxBytes of packet data); TSO frames are cut into
 * MTU-sized packets on the way (offload.ts). The main-thread poller reads the packets where they landed
 * (fill, packet: no copy, no allocation); the reader worker copies each batch into one right-sized
 * ArrayBuffer laid out as [u32 length × count][packets back to back], to transfer it (read).
 */
import { constants as osConstants } from 'node:os';
import * as libc from './libc.js';
import { VNET_HDR_LENGTH, segmentInto } from './offload.js';

/** The largest packet a TUN device can hand us: an IPv4/IPv6 total length is 16 bits. */
export const MAX_PACKET = 65_535;

export interface TunBatch {
  /** Transferable; null when nothing was read. */
  readonly buffer: ArrayBuffer | null;
  readonly count: number;
  /** Frames that could not be segmented (dropped). */
  readonly dropped: number;
  /** Why reading stopped: a limit (more is probably queued), EAGAIN, or another errno. */
  readonly end: 'limit' | 'empty' | { errno: number };
}

/** What fill() left in the reader's buffer. */
export interface TunFill {
  readonly count: number;
  /** Bytes of packet data. */
  readonly used: number;
  readonly dropped: number;
  readonly end: TunBatch['end'];
}

const { EAGAIN, EINTR } = osConstants.errno;

export class TunBatchReader {
  private readonly data: Uint8Array;
  private readonly lengths: Uint32Array;
  private readonly offsets: Uint32Array;
  private readonly frame: Uint8Array | undefined;
  private readonly segmentLengths: number[] = [];

  constructor(
    private readonly fd: number,
    private readonly maxPackets: number,
    private readonly maxBytes: number,
    /** Frames carry a virtio-net header and may be TSO super-packets. */
    offload: boolean,
  ) {
    // Room for one more maximal frame past the limits, segmented (each segment repeats the headers).
    this.data = new Uint8Array(maxBytes + 2 * MAX_PACKET);
    this.lengths = new Uint32Array(maxPackets + MAX_PACKET / 512);
    this.offsets = new Uint32Array(this.lengths.length);
    this.frame = offload ? new Uint8Array(VNET_HDR_LENGTH + MAX_PACKET) : undefined;
  }

  /**
   * Reads until EAGAIN or a limit (the constructor's, or `maxFrames` reads that returned a frame), leaving the
   * packets in the reader's own buffer: packet(i) views them until the next call.
   */
  fill(maxFrames = Infinity): TunFill {
    const { fd, data, lengths, offsets, frame, segmentLengths } = this;
    let count = 0;
    let used = 0;
    let dropped = 0;
    let frames = 0;
    let end: TunBatch['end'] = 'limit';
    while (count < this.maxPackets && used < this.maxBytes && frames < maxFrames) {
      // Every read is offered at least MAX_PACKET bytes of room, so the kernel never truncates a packet.
      const n = frame
        ? libc.read(fd, frame, frame.length)
        : libc.read(fd, data.subarray(used), data.length - used);
      if (n < 0) {
        const e = libc.errno();
        if (e === EINTR) continue;
        end = e === EAGAIN ? 'empty' : { errno: e };
        break;
      }
      frames++;
      if (!frame) {
        offsets[count] = used;
        lengths[count++] = n;
        used += n;
        continue;
      }
      segmentLengths.length = 0;
      const written = segmentInto(frame.subarray(0, n), data, used, segmentLengths);
      if (written < 0) {
        dropped++;
        continue;
      }
      for (const l of segmentLengths) {
        offsets[count] = used;
        lengths[count++] = l;
        used += l;
      }
    }
    return { count, used, dropped, end };
  }

  /** Packet `i` of the last fill(): a view into the reader's buffer, valid until the next fill(). */
  packet(i: number): Uint8Array {
    const at = this.offsets[i]!;
    return this.data.subarray(at, at + this.lengths[i]!);
  }

  /** fill(), then the packets copied into one right-sized ArrayBuffer of their own (transferable). */
  read(): TunBatch {
    const { count, used, dropped, end } = this.fill();
    if (count === 0) return { buffer: null, count, dropped, end };
    const headerBytes = count * 4;
    const buffer = new ArrayBuffer(headerBytes + used);
    new Uint32Array(buffer, 0, count).set(this.lengths.subarray(0, count));
    new Uint8Array(buffer, headerBytes).set(this.data.subarray(0, used));
    return { buffer, count, dropped, end };
  }
}
