/**
 * IKEv2 constants. The first part is the specification (RFC 7296 §3 and the IANA "IKEv2 Parameters"
 * registry); the second part is this implementation's choices (limits, timers), kept apart on purpose.
 */

// ---------------------------------------------------------------------------------------------------------------
// From the specification

/** RFC 7296 §3.1: the fixed IKE header. */
export const IKE_HEADER_LENGTH = 28;
/** RFC 7296 §3.2: the generic payload header. */
export const PAYLOAD_HEADER_LENGTH = 4;
export const IKE_MAJOR_VERSION = 2;
/** UDP ports (RFC 7296 §2.23, RFC 3948 §2.2). */
export const IKE_PORT = 500;
export const NATT_PORT = 4500;
/** Header sizes below IKE (RFC 791, RFC 8200, RFC 768), for the fragment size of RFC 7383 §2.5.1. */
export const IPV4_HEADER_LENGTH = 20;
export const IPV6_HEADER_LENGTH = 40;
export const UDP_HEADER_LENGTH = 8;
/** RFC 3948 §2.2: four zero bytes before an IKE message on port 4500. */
export const NON_ESP_MARKER_LENGTH = 4;
/** RFC 3948 §2.3: a NAT-keepalive is the single byte 0xFF. */
export const NATT_KEEPALIVE = 0xff;

/** RFC 7296 §3.1 exchange types. */
export const EXCHANGE = {
  IKE_SA_INIT: 34,
  IKE_AUTH: 35,
  CREATE_CHILD_SA: 36,
  INFORMATIONAL: 37,
} as const;

/** RFC 7296 §3.1 flags. */
export const FLAG_INITIATOR = 0x08;
export const FLAG_VERSION = 0x10;
export const FLAG_RESPONSE = 0x20;

/** RFC 7296 §3.2 payload types. */
export const PAYLOAD = {
  NONE: 0,
  SA: 33,
  KE: 34,
  IDi: 35,
  IDr: 36,
  CERT: 37,
  CERTREQ: 38,
  AUTH: 39,
  NONCE: 40,
  NOTIFY: 41,
  DELETE: 42,
  VENDOR: 43,
  TSi: 44,
  TSr: 45,
  SK: 46,
  CP: 47,
  EAP: 48,
  SKF: 53,
} as const;

/** RFC 7296 §3.3.1 protocol IDs. */
export const PROTOCOL = { IKE: 1, AH: 2, ESP: 3 } as const;

/** RFC 7296 §3.3.2 transform types. */
export const TRANSFORM_TYPE = { ENCR: 1, PRF: 2, INTEG: 3, DH: 4, ESN: 5 } as const;

/** Transform type 1 IDs (RFC 7296 §3.3.2, RFC 5282, RFC 7634). */
export const ENCR = { AES_CBC: 12, AES_GCM_16: 20, CHACHA20_POLY1305: 28 } as const;
/** Transform type 2 IDs (RFC 7296 §3.3.2, RFC 4868). */
export const PRF = { HMAC_SHA1: 2, HMAC_SHA2_256: 5, HMAC_SHA2_384: 6, HMAC_SHA2_512: 7 } as const;
/** Transform type 3 IDs. */
export const INTEG = {
  HMAC_SHA1_96: 2,
  HMAC_SHA2_256_128: 12,
  HMAC_SHA2_384_192: 13,
  HMAC_SHA2_512_256: 14,
} as const;
/** Transform type 4 IDs (RFC 7296 §3.3.2, RFC 5903, RFC 8031). */
export const DH_GROUP = {
  MODP_1024: 2,
  MODP_1536: 5,
  MODP_2048: 14,
  ECP_256: 19,
  ECP_384: 20,
  ECP_521: 21,
  CURVE25519: 31,
} as const;
/** Transform type 5 IDs. */
export const ESN = { NONE: 0, EXTENDED: 1 } as const;
/** RFC 7296 §3.3.5: the one attribute we know, Key Length, always in TV format. */
export const ATTR_KEY_LENGTH = 14;
export const ATTR_FORMAT_TV = 0x8000;

/** RFC 7296 §3.5 identification types. */
export const ID_TYPE = {
  IPV4_ADDR: 1,
  FQDN: 2,
  RFC822_ADDR: 3,
  IPV6_ADDR: 5,
  DER_ASN1_DN: 9,
  KEY_ID: 11,
} as const;
/** RFC 7296 §3.8 authentication methods, RFC 4754 §7 (ECDSA) and RFC 7427 §7 (Digital Signature). */
export const AUTH_METHOD = {
  RSA_DIGITAL_SIGNATURE: 1,
  SHARED_KEY_MIC: 2,
  ECDSA_SHA256_P256: 9,
  ECDSA_SHA384_P384: 10,
  ECDSA_SHA512_P521: 11,
  DIGITAL_SIGNATURE: 14,
} as const;
/** RFC 7296 §3.6 certificate encodings: the one we send and take. */
export const CERT_ENCODING = { X509_SIGNATURE: 4 } as const;
/** RFC 7427 §7 hash algorithm identifiers (the IANA "IKEv2 Hash Algorithms" registry). */
export const HASH_ALGORITHM = { SHA1: 1, SHA2_256: 2, SHA2_384: 3, SHA2_512: 4 } as const;
/** RFC 7296 §3.13.1 traffic selector types. */
export const TS_TYPE = { IPV4_ADDR_RANGE: 7, IPV6_ADDR_RANGE: 8 } as const;

/** RFC 7296 §3.10.1 notify message types: errors below 16384, status from 16384. */
export const NOTIFY = {
  UNSUPPORTED_CRITICAL_PAYLOAD: 1,
  INVALID_IKE_SPI: 4,
  INVALID_MAJOR_VERSION: 5,
  INVALID_SYNTAX: 7,
  INVALID_MESSAGE_ID: 9,
  INVALID_SPI: 11,
  NO_PROPOSAL_CHOSEN: 14,
  INVALID_KE_PAYLOAD: 17,
  AUTHENTICATION_FAILED: 24,
  SINGLE_PAIR_REQUIRED: 34,
  NO_ADDITIONAL_SAS: 35,
  INTERNAL_ADDRESS_FAILURE: 36,
  FAILED_CP_REQUIRED: 37,
  TS_UNACCEPTABLE: 38,
  INVALID_SELECTORS: 39,
  TEMPORARY_FAILURE: 43,
  CHILD_SA_NOT_FOUND: 44,
  INITIAL_CONTACT: 16384,
  SET_WINDOW_SIZE: 16385,
  ADDITIONAL_TS_POSSIBLE: 16386,
  IPCOMP_SUPPORTED: 16387,
  NAT_DETECTION_SOURCE_IP: 16388,
  NAT_DETECTION_DESTINATION_IP: 16389,
  COOKIE: 16390,
  USE_TRANSPORT_MODE: 16391,
  REKEY_SA: 16393,
  ESP_TFC_PADDING_NOT_SUPPORTED: 16394,
  NON_FIRST_FRAGMENTS_ALSO: 16395,
  MOBIKE_SUPPORTED: 16396,
  IKEV2_FRAGMENTATION_SUPPORTED: 16430,
  SIGNATURE_HASH_ALGORITHMS: 16431,
} as const;
/** Notify types below this are errors (RFC 7296 §3.10.1). */
export const NOTIFY_ERROR_MAX = 16383;

/** RFC 7296 §2.15: the pad mixed into the pre-shared key before it keys AUTH. */
export const PSK_KEY_PAD = 'Key Pad for IKEv2';

// ---------------------------------------------------------------------------------------------------------------
// Implementation choices

/** Nonce length we send (RFC 7296 §2.10: at least half the PRF's key size, at least 128 bits). */
export const NONCE_LENGTH = 32;
/** Nonce lengths we accept (RFC 7296 §3.9: 16 to 256 octets). */
export const NONCE_MIN = 16;
export const NONCE_MAX = 256;
/** Largest IKE message we take or make. */
export const MAX_MESSAGE_LENGTH = 65535;
/**
 * RFC 7383 §2.5.1: the largest IP datagram carrying one IKE fragment. 1280 is the IPv6 minimum MTU and
 * strongSwan's default (`charon.fragment_size`), used for both families: it passes the tunnels and PPPoE
 * links that break 1500-byte datagrams. A site can set it lower (down to FRAGMENT_SIZE_MIN).
 */
export const FRAGMENT_SIZE = 1280;
export const FRAGMENT_SIZE_MIN = 256;
/**
 * RFC 7383 §2.5.2: when a fragmented request goes unanswered, the path may drop datagrams that large; after
 * FRAGMENT_SHRINK_AFTER retransmissions it is sent again cut to the smallest datagram the family must carry
 * (576 for IPv4, RFC 791; 1280 for IPv6, RFC 8200), and the SA keeps that size.
 */
export const FRAGMENT_SHRINK_AFTER = 2;
export const FRAGMENT_SIZE_FALLBACK_V4 = 576;
export const FRAGMENT_SIZE_FALLBACK_V6 = 1280;
/** RFC 7383 §2.5: the Encrypted Fragment payload adds Fragment Number and Total Fragments (2 + 2 bytes). */
export const SKF_FIELDS_LENGTH = 4;
/**
 * RFC 7383 §2.6 leaves the reassembly limits to the implementation: at most this many fragments and this
 * many decrypted bytes per message, kept at most this long after its first fragment.
 */
export const FRAGMENTS_MAX = 64;
export const REASSEMBLY_MAX_BYTES = 65535;
export const REASSEMBLY_TIMEOUT_MS = 30_000;
/** Pre-shared keys shorter than this are refused unless the site forces them. */
export const PSK_MIN_LENGTH = 20;
/** Retransmission: first timeout, backoff base and tries, as strongSwan's defaults (4 s, 1.8, 5 tries). */
export const RETRANSMIT_TIMEOUT_MS = 4_000;
export const RETRANSMIT_BASE = 1.8;
export const RETRANSMIT_TRIES = 5;
/** Liveness check after this long without hearing from the peer. */
export const DPD_INTERVAL_MS = 30_000;
/** NAT keepalive interval when we are behind a NAT (RFC 3948 §4: 20 s is the usual choice). */
export const NATT_KEEPALIVE_MS = 20_000;
/** Half-open IKE SAs (IKE_SA_INIT answered, IKE_AUTH not yet seen) kept at once, and for how long. */
export const HALF_OPEN_MAX = 1024;
export const HALF_OPEN_TIMEOUT_MS = 30_000;
/** §2.6: from this many half-open IKE SAs on, new IKE_SA_INIT requests must carry a cookie. */
export const COOKIE_THRESHOLD = 64;
/** How long one cookie secret is used before the next (the one before is still accepted). */
export const COOKIE_SECRET_MS = 60_000;
/** Lifetimes before a rekey (strongSwan's defaults: rekey_time 4 h for IKE, 1 h for CHILD SAs). */
export const IKE_REKEY_MS = 4 * 3600_000;
export const CHILD_REKEY_MS = 3600_000;
/**
 * The hard lifetime of an SA when none is configured, as a factor of its rekey time: strongSwan's default
 * (life_time = 110% of rekey_time). Past it the SA is deleted even when its rekey failed (RFC 7296 §2.8).
 * With short rekey times the margin is at least the retransmission budget, so that a rekey still being
 * retransmitted is not overtaken by it.
 */
export const HARD_LIFETIME_FACTOR = 1.1;
/**
 * Each lifetime is shortened by a random part up to this fraction, so the two ends rarely start the same rekey
 * at once (§2.8.1 calls such collisions rare; jitter keeps them so).
 */
export const REKEY_JITTER = 0.1;
/** §2.25: after TEMPORARY_FAILURE an exchange is retried after a random delay within this range. */
export const RETRY_MIN_MS = 1_000;
export const RETRY_JITTER_MS = 2_000;
/**
 * A CHILD SA of a per-pair site lost while its IKE SA lives (its hard lifetime, or deleted by the peer) is asked
 * for again with CREATE_CHILD_SA (§1.3.1): first this long after the loss, then after each failed try the wait
 * doubles up to the maximum (bounded, never given up while the IKE SA lives).
 */
export const PAIR_RETRY_FIRST_MS = 1_000;
export const PAIR_RETRY_MAX_MS = 60_000;
