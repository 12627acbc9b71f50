/**
 * The Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s handshake as WireGuard instantiates it (paper §5.4.2–§5.4.5).
 * Pure functions over the chaining key C and transcript hash H; no state beyond what is passed in and
 * returned, so both roles can be exercised directly in tests.
 *
 * Initiator → responder:  e, es, s, ss, {timestamp}
 * Responder → initiator:  e, ee, se, psk, {}
 * Then (T_send_i = T_recv_r, T_recv_i = T_send_r) = KDF2(C, ε).
 */
import { AEAD_TAG_LENGTH, counterNonce, nodeChaChaPoly } from '../crypto/aead.js';
import { hash, kdf1, kdf2, kdf3 } from '../crypto/blake2s.js';
import { clamp, publicFromPrivate, type X25519Private, dh } from '../crypto/x25519.js';
import { CONSTRUCTION, IDENTIFIER } from './constants.js';
import type { DropReason } from './drops.js';
import { newInitiation, newResponse, type Initiation, type Response } from './messages.js';
import { TAI64N_LENGTH } from './tai64n.js';

const encoder = new TextEncoder();
/** C_i = HASH(CONSTRUCTION); H_i = HASH(C_i ‖ IDENTIFIER) (paper §5.4.2). */
export const INITIAL_CHAIN_KEY = hash(encoder.encode(CONSTRUCTION));
export const INITIAL_HASH = hash(INITIAL_CHAIN_KEY, encoder.encode(IDENTIFIER));

const ZERO_NONCE = counterNonce(0);
const EMPTY = new Uint8Array(0);

function seal(key: Uint8Array, plaintext: Uint8Array, h: Uint8Array): Uint8Array {
  return nodeChaChaPoly.seal(key, ZERO_NONCE, plaintext, h);
}

function open(key: Uint8Array, sealed: Uint8Array, h: Uint8Array): Uint8Array | null {
  return nodeChaChaPoly.open(key, ZERO_NONCE, sealed, h);
}

export interface TransportKeys {
  readonly sendKey: Uint8Array;
  readonly receiveKey: Uint8Array;
}

/** What the initiator keeps between sending an initiation and receiving the response. */
export interface InitiatorState {
  readonly chainKey: Uint8Array;
  readonly hash: Uint8Array;
  readonly ephemeralPrivate: Uint8Array;
}

/** What the responder learned from a valid initiation. */
export interface ConsumedInitiation {
  readonly remoteStatic: Uint8Array;
  readonly remoteEphemeral: Uint8Array;
  readonly remoteIndex: number;
  readonly timestamp: Uint8Array;
  readonly chainKey: Uint8Array;
  readonly hash: Uint8Array;
}

type Failure = { readonly ok: false; readonly reason: DropReason };

/**
 * Builds an initiation (mac1 and mac2 left zero for the cookie layer to fill).
 * `staticStatic` is DH(S_priv_i, S_pub_r), computed once per peer.
 */
export function createInitiation(
  localStatic: Uint8Array,
  remoteStatic: Uint8Array,
  staticStatic: Uint8Array,
  localIndex: number,
  timestamp: Uint8Array,
  random: (n: number) => Uint8Array,
): { ok: true; message: Uint8Array; state: InitiatorState } | Failure {
  const msg = newInitiation(localIndex);
  let h = hash(INITIAL_HASH, remoteStatic);
  const ephemeralPrivate = clamp(Uint8Array.from(random(32)));
  const ephemeralPublic = publicFromPrivate(ephemeralPrivate);
  let c = kdf1(INITIAL_CHAIN_KEY, ephemeralPublic);
  msg.set(ephemeralPublic, 8);
  h = hash(h, ephemeralPublic);
  const es = dh(ephemeralPrivate, remoteStatic);
  if (!es) return { ok: false, reason: 'low-order-point' };
  let k: Uint8Array;
  [c, k] = kdf2(c, es);
  const encryptedStatic = seal(k, localStatic, h);
  msg.set(encryptedStatic, 40);
  h = hash(h, encryptedStatic);
  [c, k] = kdf2(c, staticStatic);
  const encryptedTimestamp = seal(k, timestamp, h);
  msg.set(encryptedTimestamp, 88);
  h = hash(h, encryptedTimestamp);
  return { ok: true, message: msg, state: { chainKey: c, hash: h, ephemeralPrivate } };
}

/**
 * Opens an initiation addressed to `local`. `staticStaticFor` returns DH(S_priv_r, S_pub_i) for a known
 * peer's public key, or undefined for a stranger (the handshake then stops before touching the timestamp).
 */
export function consumeInitiation(
  msg: Initiation,
  local: X25519Private,
  staticStaticFor: (remoteStatic: Uint8Array) => Uint8Array | undefined,
): ({ ok: true } & ConsumedInitiation) | Failure {
  let h = hash(INITIAL_HASH, local.publicKey);
  let c = kdf1(INITIAL_CHAIN_KEY, msg.ephemeral);
  h = hash(h, msg.ephemeral);
  const es = local.dh(msg.ephemeral);
  if (!es) return { ok: false, reason: 'low-order-point' };
  let k: Uint8Array;
  [c, k] = kdf2(c, es);
  const remoteStatic = open(k, msg.encryptedStatic, h);
  if (!remoteStatic) return { ok: false, reason: 'handshake-decrypt-failed' };
  h = hash(h, msg.encryptedStatic);
  const ss = staticStaticFor(remoteStatic);
  if (!ss) return { ok: false, reason: 'unknown-peer' };
  [c, k] = kdf2(c, ss);
  const timestamp = open(k, msg.encryptedTimestamp, h);
  if (!timestamp || timestamp.length !== TAI64N_LENGTH)
    return { ok: false, reason: 'handshake-decrypt-failed' };
  h = hash(h, msg.encryptedTimestamp);
  return {
    ok: true,
    remoteStatic,
    remoteEphemeral: Uint8Array.from(msg.ephemeral),
    remoteIndex: msg.sender,
    timestamp,
    chainKey: c,
    hash: h,
  };
}

/** Builds the response to a consumed initiation and derives the responder's transport keys. */
export function createResponse(
  init: ConsumedInitiation,
  presharedKey: Uint8Array,
  localIndex: number,
  random: (n: number) => Uint8Array,
): { ok: true; message: Uint8Array; keys: TransportKeys } | Failure {
  const msg = newResponse(localIndex, init.remoteIndex);
  let h = init.hash;
  const ephemeralPrivate = clamp(Uint8Array.from(random(32)));
  const ephemeralPublic = publicFromPrivate(ephemeralPrivate);
  let c = kdf1(init.chainKey, ephemeralPublic);
  msg.set(ephemeralPublic, 12);
  h = hash(h, ephemeralPublic);
  const ee = dh(ephemeralPrivate, init.remoteEphemeral);
  const se = dh(ephemeralPrivate, init.remoteStatic);
  if (!ee || !se) return { ok: false, reason: 'low-order-point' };
  c = kdf1(c, ee);
  c = kdf1(c, se);
  const [c2, tau, k] = kdf3(c, presharedKey);
  h = hash(h, tau);
  const encryptedNothing = seal(k, EMPTY, h);
  msg.set(encryptedNothing, 44);
  const [initiatorSend, responderSend] = kdf2(c2, EMPTY);
  return { ok: true, message: msg, keys: { sendKey: responderSend, receiveKey: initiatorSend } };
}

/** Opens a response to our initiation and derives the initiator's transport keys. */
export function consumeResponse(
  msg: Response,
  state: InitiatorState,
  local: X25519Private,
  presharedKey: Uint8Array,
): { ok: true; keys: TransportKeys } | Failure {
  let h = state.hash;
  let c = kdf1(state.chainKey, msg.ephemeral);
  h = hash(h, msg.ephemeral);
  const ee = dh(state.ephemeralPrivate, msg.ephemeral);
  const se = local.dh(msg.ephemeral);
  if (!ee || !se) return { ok: false, reason: 'low-order-point' };
  c = kdf1(c, ee);
  c = kdf1(c, se);
  const [c2, tau, k] = kdf3(c, presharedKey);
  h = hash(h, tau);
  const nothing = open(k, msg.encryptedNothing, h);
  if (!nothing || nothing.length !== 0 || msg.encryptedNothing.length !== AEAD_TAG_LENGTH) {
    return { ok: false, reason: 'handshake-decrypt-failed' };
  }
  const [initiatorSend, responderSend] = kdf2(c2, EMPTY);
  return { ok: true, keys: { sendKey: initiatorSend, receiveKey: responderSend } };
}
