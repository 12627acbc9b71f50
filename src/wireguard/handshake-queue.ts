/**
 * Handshake messages waiting for the handshake stage: a bounded ring in preallocated memory, first in first
 * out, which drops its oldest message to make room for a new one. Oldest first, because under a flood the
 * newest messages are the likeliest to come from a peer still waiting for an answer (its retransmission
 * comes REKEY_TIMEOUT after the message it replaces, paper §6.4), and because a message that waited longest
 * is the one whose sender is likeliest to have given up on it.
 */
import { INITIATION_LENGTH } from './constants.js';
import type { Endpoint } from '../net/endpoint.js';

/** Room per message: the longer handshake message (an initiation; a response is 92 bytes). */
const SLOT = INITIATION_LENGTH;

export interface QueuedHandshake {
  /** A copy of the message, the caller's to keep. */
  readonly bytes: Uint8Array;
  readonly from: Endpoint;
  /** `now` when it arrived. */
  readonly arrived: number;
}

export class HandshakeQueue {
  private readonly slots: Uint8Array;
  private readonly lengths: Uint8Array;
  private readonly sources: (Endpoint | undefined)[];
  private readonly arrivals: Float64Array;
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`bad handshake queue size ${capacity}`);
    this.slots = new Uint8Array(capacity * SLOT);
    this.lengths = new Uint8Array(capacity);
    this.sources = new Array<Endpoint | undefined>(capacity).fill(undefined);
    this.arrivals = new Float64Array(capacity);
  }

  get length(): number {
    return this.count;
  }

  /**
   * Copies `message` (at most SLOT bytes) in. Returns true when the queue was full and its oldest message was
   * dropped to make room.
   */
  push(message: Uint8Array, from: Endpoint, now: number): boolean {
    if (message.length > SLOT) throw new RangeError(`handshake message of ${message.length} bytes`);
    let dropped = false;
    if (this.count === this.capacity) {
      this.head = (this.head + 1) % this.capacity;
      this.count--;
      dropped = true;
    }
    const i = (this.head + this.count) % this.capacity;
    this.slots.set(message, i * SLOT);
    this.lengths[i] = message.length;
    this.sources[i] = from;
    this.arrivals[i] = now;
    this.count++;
    return dropped;
  }

  /** Takes the oldest message out (a copy), or undefined when empty. */
  shift(): QueuedHandshake | undefined {
    if (this.count === 0) return undefined;
    const i = this.head;
    const at = i * SLOT;
    const bytes = this.slots.slice(at, at + this.lengths[i]!);
    const from = this.sources[i]!;
    this.sources[i] = undefined;
    this.head = (i + 1) % this.capacity;
    this.count--;
    return { bytes, from, arrived: this.arrivals[i]! };
  }

  clear(): void {
    this.sources.fill(undefined);
    this.head = 0;
    this.count = 0;
  }
}
