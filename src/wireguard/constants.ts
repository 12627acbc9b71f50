/**
 * Constants of the WireGuard protocol, kept apart from the choices of this implementation.
 * Times are in milliseconds.
 */

// ---- From the specification (WireGuard paper §5.4 and §6.1, "Protocol & Cryptography") ----

export const CONSTRUCTION = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s';
export const IDENTIFIER = 'WireGuard v1 zx2c4 Jason@zx2c4.com';
export const LABEL_MAC1 = 'mac1----';
export const LABEL_COOKIE = 'cookie--';

/** §6.1: after this many messages on one keypair, the initiator starts a new handshake (2^60). */
export const REKEY_AFTER_MESSAGES = 2 ** 60;
/**
 * §6.1: no message may use a counter at or beyond 2^64 − 2^13 − 1. Counters here are JS numbers, exact up
 * to 2^53, so the effective limit is the smaller of the two (a peer cannot send 2^53 packets in practice).
 */
export const REJECT_AFTER_MESSAGES = Number.MAX_SAFE_INTEGER;
export const REKEY_AFTER_TIME = 120_000;
export const REJECT_AFTER_TIME = 180_000;
export const REKEY_ATTEMPT_TIME = 90_000;
export const REKEY_TIMEOUT = 5_000;
export const KEEPALIVE_TIMEOUT = 10_000;
/** §5.4.7: the cookie secret changes every two minutes; a received cookie is usable as long. */
export const COOKIE_REFRESH_TIME = 120_000;

/** §6.2: every handshake initiation is retried after REKEY_TIMEOUT plus up to this much random jitter. */
export const REKEY_TIMEOUT_JITTER_MAX = 333;

export const MESSAGE_INITIATION = 1;
export const MESSAGE_RESPONSE = 2;
export const MESSAGE_COOKIE_REPLY = 3;
export const MESSAGE_TRANSPORT = 4;

export const INITIATION_LENGTH = 148;
export const RESPONSE_LENGTH = 92;
export const COOKIE_REPLY_LENGTH = 64;
/** Transport header (16) plus the AEAD tag of an empty (keepalive) payload (16). */
export const TRANSPORT_MIN_LENGTH = 32;
export const TRANSPORT_HEADER_LENGTH = 16;
/** §5.4.6: the plaintext of a transport message is padded with zeros to a multiple of 16 bytes. */
export const PADDING_MULTIPLE = 16;

// ---- Of this implementation (wireguard-go's choices where a peer could notice) ----

/** Handshake retransmissions before giving up: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT. */
export const MAX_HANDSHAKE_ATTEMPTS = REKEY_ATTEMPT_TIME / REKEY_TIMEOUT;
/** Keys are zeroed after this long without a new handshake (paper §6.3: 3 × REJECT_AFTER_TIME). */
export const ZERO_KEYS_AFTER = REJECT_AFTER_TIME * 3;
/** The initiator rekeys on receive once its keypair is this old, so it never lapses mid-conversation. */
export const REKEY_ON_RECEIVE_AGE = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT;
/** Sliding replay window, in packets (RFC 6479 layout: 256 words of 32 bits, one word kept in flux). */
export const REPLAY_WINDOW_WORDS = 256;
export const REPLAY_WINDOW_SIZE = (REPLAY_WINDOW_WORDS - 1) * 32;
/** At most this many initiations from one peer per second are processed (wireguard-go: 50/s). */
export const MIN_INITIATION_INTERVAL = 1000 / 50;
/** Packets held per peer while a handshake is in flight; the oldest are dropped beyond this. */
export const MAX_STAGED_PACKETS = 128;
/** Handshake messages in one second beyond which the responder is under load and asks for cookies. */
export const UNDER_LOAD_HANDSHAKES_PER_SECOND = 256;
/** Once under load, the device stays so for this long (wireguard-go: one second). */
export const UNDER_LOAD_AFTER = 1000;
/** Per-source-address rate limit for handshakes while under load (wireguard-go: 20/s, burst 5). */
export const RATE_LIMIT_PER_SECOND = 20;
export const RATE_LIMIT_BURST = 5;
/** TAI64N timestamps are rounded down to this many nanoseconds so they leak little about the clock. */
export const TIMESTAMP_WHITENING_NS = 0x1000000;
export const DEFAULT_MTU = 1420;
