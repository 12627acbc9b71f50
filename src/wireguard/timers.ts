/**
 * Per-peer timers (paper §6.2–§6.5), as deadlines on the caller's clock instead of OS timers. Events from
 * the send and receive paths arm or stop them; `Device.tick(now)` fires whichever have passed.
 *
 * - retransmitHandshake: no response REKEY_TIMEOUT (+jitter) after an initiation → send another, up to
 *   MAX_HANDSHAKE_ATTEMPTS, then give up and drop the staged packets.
 * - sendKeepalive: data received, nothing sent for KEEPALIVE_TIMEOUT → send an empty packet (§6.5).
 * - newHandshake: data sent, nothing received for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT → rehandshake.
 * - zeroKeyMaterial: no new session for 3 × REJECT_AFTER_TIME → erase all keys (§6.3).
 * - persistentKeepalive: the configured interval after any authenticated packet sent or received.
 */
import { KEEPALIVE_TIMEOUT, REKEY_TIMEOUT, ZERO_KEYS_AFTER } from './constants.js';

export type TimerName =
  'retransmitHandshake' | 'sendKeepalive' | 'newHandshake' | 'zeroKeyMaterial' | 'persistentKeepalive';

export const TIMER_NAMES: readonly TimerName[] = [
  'retransmitHandshake',
  'sendKeepalive',
  'newHandshake',
  'zeroKeyMaterial',
  'persistentKeepalive',
];

export class PeerTimers {
  readonly deadline: Record<TimerName, number | null> = {
    retransmitHandshake: null,
    sendKeepalive: null,
    newHandshake: null,
    zeroKeyMaterial: null,
    persistentKeepalive: null,
  };
  needAnotherKeepalive = false;
  handshakeAttempts = 0;
  /** Persistent keepalive interval in ms; 0 = off. */
  persistentKeepaliveInterval = 0;

  private pending(name: TimerName): boolean {
    return this.deadline[name] !== null;
  }

  /** After sending a data (non-keepalive) packet. */
  dataSent(now: number, jitter: () => number): void {
    if (!this.pending('newHandshake'))
      this.deadline.newHandshake = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter();
  }

  /** After receiving a data (non-keepalive) packet. */
  dataReceived(now: number): void {
    if (!this.pending('sendKeepalive')) this.deadline.sendKeepalive = now + KEEPALIVE_TIMEOUT;
    else this.needAnotherKeepalive = true;
  }

  /** After sending any authenticated packet: handshake or transport, data or keepalive. */
  anyAuthenticatedPacketSent(): void {
    this.deadline.sendKeepalive = null;
  }

  /** After receiving any authenticated packet. */
  anyAuthenticatedPacketReceived(): void {
    this.deadline.newHandshake = null;
  }

  /** After any authenticated packet in either direction. */
  anyAuthenticatedPacketTraversal(now: number): void {
    if (this.persistentKeepaliveInterval > 0)
      this.deadline.persistentKeepalive = now + this.persistentKeepaliveInterval;
  }

  handshakeInitiated(now: number, jitter: number): void {
    this.deadline.retransmitHandshake = now + REKEY_TIMEOUT + jitter;
  }

  handshakeComplete(): void {
    this.deadline.retransmitHandshake = null;
    this.handshakeAttempts = 0;
  }

  sessionDerived(now: number): void {
    this.deadline.zeroKeyMaterial = now + ZERO_KEYS_AFTER;
  }

  stopAll(): void {
    for (const n of TIMER_NAMES) this.deadline[n] = null;
    this.needAnotherKeepalive = false;
    this.handshakeAttempts = 0;
  }

  /** The earliest pending deadline, if any. */
  next(): number | null {
    let min: number | null = null;
    for (const n of TIMER_NAMES) {
      const d = this.deadline[n];
      if (d !== null && (min === null || d < min)) min = d;
    }
    return min;
  }
}
