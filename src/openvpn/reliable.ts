/**
 * The reliability layer of the control channel (openvpn-rfc §"Reliability layer"; OpenVPN's reliable.c):
 * TLS records travel in control packets that are numbered, acknowledged and retransmitted, and delivered to
 * TLS in order, exactly once. One instance serves one key state (one key id) in both directions. Sans-IO:
 * the caller passes `now` (milliseconds) and sends what `poll` returns.
 *
 * Outbound, in order:
 *   1. `enqueue` appends a message to the backlog (bounded: RELIABLE_MAX_BACKLOG).
 *   2. `poll` moves messages from the backlog into the send window (at most `sendWindow` unacknowledged),
 *      numbering them 0, 1, 2, … as they enter it.
 *   3. `poll` transmits every windowed message that is new, whose deadline has passed (then the timeout
 *      doubles, from TLS_TIMEOUT up to RELIABLE_MAX_TIMEOUT), or that N_ACK_RETRANSMIT later messages
 *      were acknowledged past (a fast retransmit), piggybacking up to MAX_ACKS_PER_PACKET pending ACKs.
 *   4. ACKs left over go out in P_ACK_V1 packets of their own.
 *   5. `acknowledge` removes acknowledged messages from the window, which lets step 2 go on.
 *
 * Inbound: `receive` takes a message's packet id and payload. An id already delivered or already held is a
 * duplicate: dropped, and acknowledged again (its ACK was lost). An id beyond the receive window is dropped
 * without an ACK (the peer retransmits it later, as OpenVPN's reliable_wont_break_sequentiality does).
 * Anything else is held and acknowledged; `takeDelivered` hands out the messages that are now in order.
 */
import {
  MAX_ACKS_PER_PACKET,
  N_ACK_RETRANSMIT,
  RELIABLE_MAX_BACKLOG,
  RELIABLE_MAX_TIMEOUT,
  RELIABLE_RECEIVE_WINDOW,
  RELIABLE_SEND_WINDOW,
  TLS_TIMEOUT,
} from './constants.js';
import type { ControlOpcode } from './packet.js';

export interface ReliableOptions {
  sendWindow?: number;
  receiveWindow?: number;
  initialTimeout?: number;
  maxTimeout?: number;
  maxBacklog?: number;
  /** The first packet id this side sends (0 for a new key state). */
  firstPacketId?: number;
  /**
   * The first packet id expected from the peer (0 for a new key state; 1 when a stateless server takes
   * over a key state whose reset, packet 0, it answered before keeping any state).
   */
  firstReceiveId?: number;
}

/** A message as the layer above sees it. */
export interface Message {
  readonly opcode: ControlOpcode;
  readonly payload: Uint8Array;
}

/** What `poll` asks the caller to send; the caller adds key id and session ids (packet.ts). */
export type Transmission =
  | {
      readonly kind: 'control';
      readonly opcode: ControlOpcode;
      readonly packetId: number;
      readonly payload: Uint8Array;
      /** Packet ids to acknowledge in this packet's ack array. */
      readonly acks: readonly number[];
      /** 1 for the first transmission, 2 for the first retransmission, … */
      readonly attempt: number;
    }
  | { readonly kind: 'ack'; readonly acks: readonly number[] };

export type ReceiveVerdict =
  /** New and within the window: held, and acknowledged in the next poll. */
  | 'accepted'
  /** Seen before: dropped, acknowledged again. */
  | 'duplicate'
  /** Too far ahead of what has been delivered: dropped, not acknowledged. */
  | 'beyond-window';

interface InFlight {
  readonly packetId: number;
  readonly message: Message;
  /** When to (re)transmit next; 0 for "not sent yet". */
  nextTry: number;
  timeout: number;
  attempts: number;
  /** How many acknowledgements of later packets arrived since it was last sent. */
  laterAcks: number;
}

export interface ReliableCounters {
  transmitted: number;
  retransmitted: number;
  fastRetransmits: number;
  received: number;
  duplicates: number;
  beyondWindow: number;
  acksSent: number;
}

export class Reliable {
  private readonly sendWindow: number;
  private readonly receiveWindow: number;
  private readonly initialTimeout: number;
  private readonly maxTimeout: number;
  private readonly maxBacklog: number;

  private readonly backlog: Message[] = [];
  private readonly inFlight: InFlight[] = [];
  private nextSendId: number;

  /** The next packet id to deliver upwards. */
  private nextDeliverId = 0;
  private readonly held = new Map<number, Message>();
  private readonly delivered: Message[] = [];
  /** Packet ids to acknowledge, oldest first, without repeats. */
  private pendingAcks: number[] = [];

  readonly counters: ReliableCounters = {
    transmitted: 0,
    retransmitted: 0,
    fastRetransmits: 0,
    received: 0,
    duplicates: 0,
    beyondWindow: 0,
    acksSent: 0,
  };

  constructor(options: ReliableOptions = {}) {
    this.sendWindow = options.sendWindow ?? RELIABLE_SEND_WINDOW;
    this.receiveWindow = options.receiveWindow ?? RELIABLE_RECEIVE_WINDOW;
    this.initialTimeout = options.initialTimeout ?? TLS_TIMEOUT;
    this.maxTimeout = options.maxTimeout ?? RELIABLE_MAX_TIMEOUT;
    this.maxBacklog = options.maxBacklog ?? RELIABLE_MAX_BACKLOG;
    this.nextSendId = options.firstPacketId ?? 0;
    this.nextDeliverId = options.firstReceiveId ?? 0;
    for (const [name, value] of [
      ['sendWindow', this.sendWindow],
      ['receiveWindow', this.receiveWindow],
      ['initialTimeout', this.initialTimeout],
      ['maxTimeout', this.maxTimeout],
      ['maxBacklog', this.maxBacklog],
    ] as const) {
      if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer`);
    }
  }

  // ---- outbound ----

  /** Queues a message; 'backlog-full' when RELIABLE_MAX_BACKLOG messages already wait for the window. */
  enqueue(opcode: ControlOpcode, payload: Uint8Array): 'queued' | 'backlog-full' {
    if (this.backlog.length >= this.maxBacklog) return 'backlog-full';
    this.backlog.push({ opcode, payload });
    return 'queued';
  }

  /** Messages sent but not yet acknowledged, plus those waiting for room in the window. */
  get unacknowledged(): number {
    return this.inFlight.length + this.backlog.length;
  }

  /** Takes the ack array of a received packet (any opcode, from the same key state). */
  acknowledge(ids: readonly number[]): void {
    for (const id of ids) {
      const index = this.inFlight.findIndex((e) => e.packetId === id);
      if (index < 0) continue; // already acknowledged, or never sent: harmless
      this.inFlight.splice(index, 1);
      for (const e of this.inFlight) if (e.packetId < id) e.laterAcks++;
    }
  }

  /** Everything to send at `now`, in the order to send it. */
  poll(now: number): Transmission[] {
    while (
      this.inFlight.length < this.sendWindow &&
      this.backlog.length > 0 &&
      this.nextSendId <= 0xffffffff
    ) {
      const message = this.backlog.shift()!;
      this.inFlight.push({
        packetId: this.nextSendId++,
        message,
        nextTry: 0,
        timeout: this.initialTimeout,
        attempts: 0,
        laterAcks: 0,
      });
    }
    const out: Transmission[] = [];
    for (const e of this.inFlight) {
      const fast = e.attempts > 0 && e.laterAcks >= N_ACK_RETRANSMIT;
      if (e.attempts > 0 && now < e.nextTry && !fast) continue;
      if (e.attempts > 0) {
        this.counters.retransmitted++;
        if (fast && now < e.nextTry) this.counters.fastRetransmits++;
      }
      e.attempts++;
      e.nextTry = now + e.timeout;
      e.timeout = Math.min(e.timeout * 2, this.maxTimeout);
      e.laterAcks = 0;
      this.counters.transmitted++;
      out.push({
        kind: 'control',
        opcode: e.message.opcode,
        packetId: e.packetId,
        payload: e.message.payload,
        acks: this.takeAcks(),
        attempt: e.attempts,
      });
    }
    while (this.pendingAcks.length > 0) out.push({ kind: 'ack', acks: this.takeAcks() });
    return out;
  }

  /**
   * The earliest time at which `poll` has a retransmission to make, or undefined when nothing waits on
   * time. (New messages and pending ACKs are sent by the poll the caller makes after each input.)
   */
  nextDeadline(): number | undefined {
    let earliest: number | undefined;
    for (const e of this.inFlight) {
      if (e.attempts === 0) continue;
      if (earliest === undefined || e.nextTry < earliest) earliest = e.nextTry;
    }
    return earliest;
  }

  private takeAcks(): number[] {
    const acks = this.pendingAcks.slice(0, MAX_ACKS_PER_PACKET);
    this.pendingAcks = this.pendingAcks.slice(acks.length);
    this.counters.acksSent += acks.length;
    return acks;
  }

  // ---- inbound ----

  receive(packetId: number, opcode: ControlOpcode, payload: Uint8Array): ReceiveVerdict {
    if (packetId < this.nextDeliverId || this.held.has(packetId)) {
      this.counters.duplicates++;
      this.queueAck(packetId);
      return 'duplicate';
    }
    if (packetId - this.nextDeliverId >= this.receiveWindow) {
      this.counters.beyondWindow++;
      return 'beyond-window';
    }
    this.counters.received++;
    this.held.set(packetId, { opcode, payload });
    this.queueAck(packetId);
    for (
      let next = this.held.get(this.nextDeliverId);
      next !== undefined;
      next = this.held.get(this.nextDeliverId)
    ) {
      this.held.delete(this.nextDeliverId);
      this.delivered.push(next);
      this.nextDeliverId++;
    }
    return 'accepted';
  }

  /** Messages now in order, oldest first; each is handed out once. */
  takeDelivered(): Message[] {
    return this.delivered.splice(0, this.delivered.length);
  }

  /** Packet ids waiting to be acknowledged. */
  get acksPending(): readonly number[] {
    return this.pendingAcks;
  }

  private queueAck(packetId: number): void {
    if (this.pendingAcks.includes(packetId)) return;
    // Bounded: between two polls at most this many ids wait; a flood of duplicates forgets the oldest.
    if (this.pendingAcks.length >= this.receiveWindow + MAX_ACKS_PER_PACKET) this.pendingAcks.shift();
    this.pendingAcks.push(packetId);
  }
}
