/**
 * OpenVPN over TCP: every packet travels behind a 16-bit big-endian length (OpenVPN's socket.c, stream_buf).
 * The deframer takes the byte stream in chunks of any size and yields whole packets. It holds at most one
 * partial frame (bounded by `maxPacket`), and a length it cannot accept poisons the stream: there is no way
 * to find the next frame boundary again, so the connection must be closed.
 */
import { TCP_DEFAULT_MAX_PACKET, TCP_LENGTH_PREFIX, TCP_MAX_FRAME } from './constants.js';

/** Prefixes a packet with its length. Throws on a caller's mistake (a packet longer than 65535 bytes). */
export function frame(packet: Uint8Array): Uint8Array {
  if (packet.length > TCP_MAX_FRAME)
    throw new RangeError(`packet of ${packet.length} bytes cannot be framed`);
  const out = new Uint8Array(TCP_LENGTH_PREFIX + packet.length);
  out[0] = packet.length >>> 8;
  out[1] = packet.length & 0xff;
  out.set(packet, TCP_LENGTH_PREFIX);
  return out;
}

export type DeframeError =
  /** A frame of length 0: OpenVPN never sends one. */
  | { readonly kind: 'empty-frame' }
  /** A frame longer than the deframer accepts. */
  | { readonly kind: 'oversize'; readonly length: number; readonly max: number };

export interface DeframeResult {
  /** Whole packets completed by this chunk, in order (copies; the caller may keep them). */
  readonly packets: Uint8Array[];
  /** Set once the stream is unusable; every later push returns it again and no packets. */
  readonly error: DeframeError | undefined;
}

export class TcpDeframer {
  private readonly buffer: Uint8Array;
  private filled = 0;
  /** Length of the frame being assembled, once its prefix is complete. */
  private expected: number | undefined;
  private failure: DeframeError | undefined;

  constructor(readonly maxPacket: number = TCP_DEFAULT_MAX_PACKET) {
    if (!Number.isInteger(maxPacket) || maxPacket < 1 || maxPacket > TCP_MAX_FRAME)
      throw new RangeError(`maxPacket must be 1..${TCP_MAX_FRAME}`);
    this.buffer = new Uint8Array(Math.max(maxPacket, TCP_LENGTH_PREFIX));
  }

  /** Bytes held for an incomplete frame (prefix bytes included). */
  get pending(): number {
    return this.expected === undefined ? this.filled : TCP_LENGTH_PREFIX + this.filled;
  }

  get error(): DeframeError | undefined {
    return this.failure;
  }

  push(chunk: Uint8Array): DeframeResult {
    const packets: Uint8Array[] = [];
    let at = 0;
    while (this.failure === undefined && at < chunk.length) {
      if (this.expected === undefined) {
        // Collect the two prefix bytes (in `buffer`, which always has room for them).
        this.buffer[this.filled++] = chunk[at++]!;
        if (this.filled < TCP_LENGTH_PREFIX) continue;
        const length = (this.buffer[0]! << 8) | this.buffer[1]!;
        this.filled = 0;
        if (length === 0) this.failure = { kind: 'empty-frame' };
        else if (length > this.maxPacket) this.failure = { kind: 'oversize', length, max: this.maxPacket };
        else this.expected = length;
        continue;
      }
      const take = Math.min(this.expected - this.filled, chunk.length - at);
      this.buffer.set(chunk.subarray(at, at + take), this.filled);
      this.filled += take;
      at += take;
      if (this.filled === this.expected) {
        packets.push(this.buffer.slice(0, this.expected));
        this.expected = undefined;
        this.filled = 0;
      }
    }
    return { packets, error: this.failure };
  }
}
