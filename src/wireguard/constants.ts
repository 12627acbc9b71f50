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
/**
 * Per-source-address budget for handshake messages, checked before mac1 (before any BLAKE2s work), always, not
 * only under load: a source over it costs one table lookup. An honest peer sends one initiation per
 * REKEY_TIMEOUT at most; even a thousand members behind one NAT address rekeying every two minutes send under
 * 10/s. A source that is spoofed can have its address held down while the spoofing lasts: the price of doing
 * no cryptographic work before the check. Sessions already up are not affected (transport skips the check).
 */
export const SOURCE_HANDSHAKES_PER_SECOND = 50;
export const SOURCE_HANDSHAKE_BURST = 100;
/** Cookie replies sent per second, all sources together (each costs a BLAKE2s and an XChaCha20-Poly1305). */
export const COOKIE_REPLIES_PER_SECOND = 1000;
export const COOKIE_REPLY_BURST = 100;
/**
 * Handshake messages waiting for the handshake stage when the shell defers them (DeviceOptions.handshakeQueue);
 * beyond this the oldest is dropped. wireguard-go's handshake queue holds 4096 (QueueHandshakeSize); a
 * smaller one here, since one thread serves it: 1024 × 148 bytes, preallocated.
 */
export const HANDSHAKE_QUEUE_LENGTH = 1024;
/** Under load once the handshake queue is this full (wireguard-go: an eighth of its queue). */
export const UNDER_LOAD_QUEUE_FRACTION = 1 / 8;
/** TAI64N timestamps are rounded down to this many nanoseconds so they leak little about the clock. */
export const TIMESTAMP_WHITENING_NS = 0x1000000;
export const DEFAULT_MTU = 1420;
