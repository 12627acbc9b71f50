/**
 * A keypair: one direction's sending key and the other's receiving key from one handshake, with the send
 * counter and the replay window of the receive side (paper §5.4.6), and transport sealing/opening.
 */
import { AEAD_TAG_LENGTH, counterNonce, type ChaChaPoly } from '../crypto/aead.js';
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

/** Seals one transport message with the next counter. The caller has checked the counter limit. */
export function sealTransport(aead: ChaChaPoly, kp: Keypair, packet: Uint8Array, mtu: number): Uint8Array {
  const counter = kp.sendCounter++;
  const padded = paddedLength(packet.length, mtu);
  let plaintext = packet;
  if (padded !== packet.length) {
    plaintext = new Uint8Array(padded);
    plaintext.set(packet);
  }
  const sealed = aead.seal(kp.sendKey, counterNonce(counter), plaintext, EMPTY);
  const out = new Uint8Array(TRANSPORT_HEADER_LENGTH + sealed.length);
  writeTransportHeader(out, kp.remoteIndex, counter);
  out.set(sealed, TRANSPORT_HEADER_LENGTH);
  return out;
}

/** Opens a transport payload; null if it does not authenticate. Replay is checked by the caller after. */
export function openTransport(
  aead: ChaChaPoly,
  kp: Keypair,
  counter: number,
  sealed: Uint8Array,
): Uint8Array | null {
  if (sealed.length < AEAD_TAG_LENGTH) return null;
  return aead.open(kp.receiveKey, counterNonce(counter), sealed, EMPTY);
}
