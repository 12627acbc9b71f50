/**
 * ESP constants. The first group comes from the specifications and must not change; the second is this
 * implementation's choice.
 */

// --- From the specifications ---

/** SPI (4) and sequence number (4) (RFC 4303 §2). */
export const ESP_HEADER_BYTES = 8;
/** Pad Length and Next Header, the last two bytes of the encrypted payload (RFC 4303 §2.4-2.6). */
export const ESP_TRAILER_BYTES = 2;
/** RFC 4303 §2.4: at most 255 bytes of padding. */
export const ESP_MAX_PAD = 255;
/** IP protocol number of ESP (RFC 4303 §2), for raw sockets. */
export const IPPROTO_ESP = 50;
/** Next Header values (IANA protocol numbers) that ESP carries in tunnel mode (RFC 4303 §2.6). */
export const NEXT_HEADER_IPV4 = 4;
export const NEXT_HEADER_IPV6 = 41;
/** "No next header": a dummy (TFC) packet the receiver must discard (RFC 4303 §2.6). */
export const NEXT_HEADER_NONE = 59;
/** The explicit IV of AES-GCM and ChaCha20-Poly1305 in ESP (RFC 4106 §3.1, RFC 7634 §2). */
export const AEAD_EXPLICIT_IV_BYTES = 8;
/** The implicit part of the AEAD nonce, taken from the end of KEYMAT (RFC 4106 §4, RFC 7634 §2). */
export const AEAD_SALT_BYTES = 4;
/** AES-CBC's IV: one random, unpredictable block (RFC 3602 §3). */
export const CBC_IV_BYTES = 16;
export const AES_BLOCK_BYTES = 16;
/** RFC 4303 §2.4: the ciphertext ends on a 4-byte boundary even for stream-like ciphers. */
export const ESP_ALIGNMENT = 4;
/** UDP encapsulation port (RFC 3948 §1). */
export const NAT_T_PORT = 4500;
/** RFC 3948 §2.2: a datagram on port 4500 starting with four zero bytes carries IKE. */
export const NON_ESP_MARKER_BYTES = 4;
/** RFC 3948 §2.3: the NAT-keepalive datagram is one byte 0xFF. */
export const NAT_KEEPALIVE_BYTE = 0xff;
/** A 32-bit sequence number must not cycle (RFC 4303 §3.3.3): the last usable value. */
export const SEQ32_LAST = 0xffffffff;

// --- Implementation choices ---

/**
 * Anti-replay window in 32-bit words (RFC 6479 ring, as src/wireguard/replay.ts). One word is always in flux,
 * so the guaranteed window is (words − 1) × 32 = 4064 packets, well above RFC 4303 §3.4.3's default of 32 and
 * the 1024 a multi-gigabit path with reordering needs.
 */
export const REPLAY_WINDOW_WORDS = 128;
export const REPLAY_WINDOW_SIZE = (REPLAY_WINDOW_WORDS - 1) * 32;

/**
 * Extended sequence numbers are held as JS numbers, exact up to 2^53: an SA that sent 2^53 packets (centuries
 * at line rate) is exhausted like a 32-bit one (RFC 4303 §3.3.3 says the same for 2^64).
 */
export const SEQ64_LAST = Number.MAX_SAFE_INTEGER;

/**
 * How far before the last usable sequence number the outbound SA starts asking for a rekey (the soft limit
 * the IKE side turns into CREATE_CHILD_SA). 2^24 packets is seconds to minutes at line rate.
 */
export const SEQ_REKEY_MARGIN = 1 << 24;

/**
 * ESN re-synchronisation (RFC 4303 Appendix A3): after this many consecutive packets that failed the ICV
 * with the inferred high half, each further one is also tried with the next high half. A forger gains
 * nothing from it (the ICV still has to verify); it only costs a second verification per packet.
 */
export const ESN_RESYNC_AFTER_FAILURES = 32;
