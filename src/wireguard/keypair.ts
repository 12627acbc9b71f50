/**
 * A keypair: one direction's sending key and the other's receiving key from one handshake, with the send
 * counter and the replay window of the receive side (paper §5.4.6), and transport sealing/opening.
 */
import { AEAD_TAG_LENGTH, writeCounterNonce, type ChaChaPoly } from '../crypto/aead.js';
import { Slab } from '../net/slab.js';
import { PADDING_MULTIPLE, TRANSPORT_HEADER_LENGTH } from './constants.js';
import { writeTransportHeader } from './messages.js';
import { ReplayWindow } from './replay.js';

const EMPTY = new Uint8Array(0);

export class Keypair {
  sendCounter = 0;
  readonly replay = new ReplayWindow();

  constructor(
    readonly sendKey: Uint8Array,
    readonly receiveKey: Uint8Array,
    readonly isInitiator: boolean,
    /** Monotonic time of derivation, for REKEY_AFTER_TIME / REJECT_AFTER_TIME. */
    readonly created: number,
    readonly localIndex: number,
    readonly remoteIndex: number,
  ) {}

  /** Overwrites the key material, for the zeroing timer and peer removal. */
  wipe(): void {
    this.sendKey.fill(0);
    this.receiveKey.fill(0);
  }
}

/**
 * Padding (§5.4.6): the plaintext grows to a multiple of 16 bytes, but not past the MTU, so a full-size
 * packet is not made larger than the link can carry.
 */
export function paddedLength(length: number, mtu: number): number {
  if (length === 0) return 0;
  const rounded = Math.ceil(length / PADDING_MULTIPLE) * PADDING_MULTIPLE;
  return length <= mtu ? Math.max(length, Math.min(rounded, mtu)) : rounded;
}

const nonce = new Uint8Array(12);
/** Where sealed datagrams are carved from (slab.ts): they are short-lived, and one allocation each is costly. */
const datagrams = new Slab();

/**
 * Seals one transport message with the next counter, into a fresh (zeroed) datagram buffer: header, then the packet
 * and its zero padding encrypted in place, then the tag. The caller has checked the counter limit.
 */
export function sealTransport(aead: ChaChaPoly, kp: Keypair, packet: Uint8Array, mtu: number): Uint8Array {
  const counter = kp.sendCounter++;
  const padded = paddedLength(packet.length, mtu);
  const out = datagrams.take(TRANSPORT_HEADER_LENGTH + padded + AEAD_TAG_LENGTH);
  writeTransportHeader(out, kp.remoteIndex, counter);
  out.set(packet, TRANSPORT_HEADER_LENGTH);
  const body = out.subarray(TRANSPORT_HEADER_LENGTH, TRANSPORT_HEADER_LENGTH + padded);
  aead.sealInPlace(
    kp.sendKey,
    writeCounterNonce(nonce, counter),
    body,
    out.subarray(TRANSPORT_HEADER_LENGTH + padded),
    EMPTY,
  );
  return out;
}

/**
 * Opens a transport payload in place: the plaintext overwrites the front of `sealed` and comes back as a view
 * of it (no allocation on the receive path); null if it does not authenticate, and then `sealed` holds
 * garbage. Replay is the caller's.
 */
export function openTransport(
  aead: ChaChaPoly,
  kp: Keypair,
  counter: number,
  sealed: Uint8Array,
): Uint8Array | null {
  if (sealed.length < AEAD_TAG_LENGTH) return null;
  const out = sealed.subarray(0, sealed.length - AEAD_TAG_LENGTH);
  return aead.openInto(kp.receiveKey, writeCounterNonce(nonce, counter), sealed, out, EMPTY) ? out : null;
}
