/**
 * A peer as the device keeps it: configuration (key, preshared key, endpoint, allowed IPs, keepalive),
 * handshake progress, its three keypair slots, timers, staged packets and the counters `wg show` reports.
 */
import type { PresharedKey, PublicKey } from '../crypto/keys.js';
import type { Endpoint } from '../net/endpoint.js';
import type { Prefix } from '../net/ip.js';
import { CookieGenerator } from './cookie.js';
import type { InitiatorState } from './handshake.js';
import type { Keypair } from './keypair.js';
import { PeerTimers } from './timers.js';

export type HandshakeProgress =
  | { readonly state: 'none' }
  | { readonly state: 'initiation-sent'; readonly localIndex: number; readonly initiator: InitiatorState };

/**
 * Keypair slots (paper §6.1 and wireguard-go's keypairs): `current` sends; `previous` still receives
 * packets in flight from before the last rotation; `next` is a responder's keypair that waits for the
 * initiator's first transport packet (key confirmation) before it may send.
 */
export interface KeypairSlots {
  current: Keypair | undefined;
  previous: Keypair | undefined;
  next: Keypair | undefined;
}

/** The state of every peer with no handshake in flight: one shared value, not an object per peer. */
export const NO_HANDSHAKE: HandshakeProgress = Object.freeze({ state: 'none' });

export class Peer {
  presharedKey: PresharedKey | undefined;
  endpoint: Endpoint | undefined;
  allowedIps: Prefix[] = [];
  /**
   * DH(our static, their static), computed at the first handshake after either key changes (undefined until
   * then, so adding thousands of peers costs no X25519); null if it is a low-order point.
   */
  staticStatic: Uint8Array | null | undefined = undefined;
  readonly cookies: CookieGenerator;
  handshake: HandshakeProgress = NO_HANDSHAKE;
  readonly keypairs: KeypairSlots = { current: undefined, previous: undefined, next: undefined };
  readonly timers = new PeerTimers();
  staged: Uint8Array[] = [];
  /** Latest TAI64N timestamp accepted from this peer's initiations (replay rule, §5.1). */
  lastTimestamp: Uint8Array | undefined;
  lastInitiationConsumedAt = -Infinity;
  lastInitiationSentAt = -Infinity;
  /** Set once the initiator has rekeyed on receive near the end of a keypair's life. */
  sentLastMinuteHandshake = false;
  /** Wall-clock milliseconds of the last completed handshake; 0 if none. */
  lastHandshakeWall = 0;
  rxBytes = 0;
  txBytes = 0;

  constructor(readonly publicKey: PublicKey) {
    this.cookies = new CookieGenerator(publicKey.bytes);
  }

  /** Persistent keepalive interval in seconds (0 = off), as configured and reported. */
  get persistentKeepalive(): number {
    return this.timers.persistentKeepaliveInterval / 1000;
  }

  set persistentKeepalive(seconds: number) {
    this.timers.persistentKeepaliveInterval = seconds * 1000;
  }
}
