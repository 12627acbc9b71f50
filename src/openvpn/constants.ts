/**
 * Constants of the OpenVPN protocol, kept apart from the choices of this implementation. Times are in
 * milliseconds. The protocol has no formal specification; where the write-up (OpenVPN/openvpn-rfc,
 * draft "The OpenVPN Protocol") is silent, OpenVPN 2.6's own source settles the value, and the file is named.
 */

// ---- From the protocol ----

/** ssl_pkt.h: the first byte of every packet is `opcode << 3 | key_id`. */
export const OPCODE_SHIFT = 3;
export const KEY_ID_MASK = 0x07;
/** Key ids are 3 bits: 0 for the first session, renegotiations cycle through 1..7 (ssl_pkt.h). */
export const MAX_KEY_ID = 7;

/** ssl_pkt.h, the opcodes. V1 hard resets (1, 2) belong to key-method 1, removed in OpenVPN 2.5. */
export const P_CONTROL_HARD_RESET_CLIENT_V1 = 1;
export const P_CONTROL_HARD_RESET_SERVER_V1 = 2;
export const P_CONTROL_SOFT_RESET_V1 = 3;
export const P_CONTROL_V1 = 4;
export const P_ACK_V1 = 5;
export const P_DATA_V1 = 6;
export const P_CONTROL_HARD_RESET_CLIENT_V2 = 7;
export const P_CONTROL_HARD_RESET_SERVER_V2 = 8;
export const P_DATA_V2 = 9;
/** A client reset with a wrapped tls-crypt-v2 client key (WKc) appended (OpenVPN 2.5). */
export const P_CONTROL_HARD_RESET_CLIENT_V3 = 10;
/** A control packet with the WKc appended, resent by a client the server asked to (OpenVPN 2.6). */
export const P_CONTROL_WKC_V1 = 11;

/** session_id.h: SID_SIZE. */
export const SESSION_ID_LENGTH = 8;
/** packet_id.h: packet_id_type is 32 bits; net_time_t (the long form's timestamp) too. */
export const PACKET_ID_LENGTH = 4;
export const NET_TIME_LENGTH = 4;
/** reliable.h RELIABLE_ACK_SIZE: at most this many packet ids in one ACK array. */
export const MAX_ACKS_PER_PACKET = 8;
/** ssl.c / mudp.c: the peer id of P_DATA_V2 is 24 bits; 0xFFFFFF means "not assigned". */
export const PEER_ID_LENGTH = 3;
export const PEER_ID_UNDEFINED = 0xffffff;

/** TCP carries every packet behind a 16-bit big-endian length (socket.h, stream_buf). */
export const TCP_LENGTH_PREFIX = 2;
export const TCP_MAX_FRAME = 0xffff;

/** tls_crypt.h: the tag is a full HMAC-SHA256; its first 16 bytes are the AES-256-CTR IV. */
export const TLS_CRYPT_TAG_LENGTH = 32;
export const TLS_CRYPT_IV_LENGTH = 16;
/** tls_crypt.h TLS_CRYPT_OFF_*: opcode, session id, packet id and time, then the tag, then ciphertext. */
export const TLS_CRYPT_OFF_PID = 1 + SESSION_ID_LENGTH;
export const TLS_CRYPT_OFF_TAG = TLS_CRYPT_OFF_PID + PACKET_ID_LENGTH + NET_TIME_LENGTH;
export const TLS_CRYPT_OFF_CT = TLS_CRYPT_OFF_TAG + TLS_CRYPT_TAG_LENGTH;

/**
 * crypto.h struct key / struct key2: a static key file holds two keys of 64 cipher bytes and 64 HMAC bytes.
 * AES-256 takes the first 32 cipher bytes and HMAC-SHA256 the first 32 HMAC bytes (init_key_ctx).
 */
export const KEY_HALF_LENGTH = 64;
export const KEY_LENGTH = 2 * KEY_HALF_LENGTH;
export const KEY2_LENGTH = 2 * KEY_LENGTH;
export const AES_256_KEY_LENGTH = 32;
export const HMAC_SHA256_KEY_LENGTH = 32;
/** crypto.c: the PEM-like armour of `openvpn --genkey secret|tls-crypt|tls-auth` files. */
export const STATIC_KEY_BEGIN = '-----BEGIN OpenVPN Static key V1-----';
export const STATIC_KEY_END = '-----END OpenVPN Static key V1-----';

/** tls_crypt.c: PEM names of the tls-crypt-v2 keys. */
export const TLS_CRYPT_V2_SERVER_PEM_NAME = 'OpenVPN tls-crypt-v2 server key';
export const TLS_CRYPT_V2_CLIENT_PEM_NAME = 'OpenVPN tls-crypt-v2 client key';
/** tls_crypt.h: the server key is one struct key; the client key Kc is a struct key2 (2048 bits). */
export const TLS_CRYPT_V2_SERVER_KEY_LENGTH = KEY_LENGTH;
export const TLS_CRYPT_V2_CLIENT_KEY_LENGTH = KEY2_LENGTH;
/** tls_crypt.h: WKc = tag ‖ AES-256-CTR(Kc ‖ metadata) ‖ u16 length, at most 1024 bytes in all. */
export const TLS_CRYPT_V2_MAX_WKC_LENGTH = 1024;
export const TLS_CRYPT_V2_MIN_WKC_LENGTH = TLS_CRYPT_TAG_LENGTH + TLS_CRYPT_V2_CLIENT_KEY_LENGTH + 2;
export const TLS_CRYPT_V2_MAX_METADATA_LENGTH = TLS_CRYPT_V2_MAX_WKC_LENGTH - TLS_CRYPT_V2_MIN_WKC_LENGTH;
/** tls_crypt.c: the first metadata byte says what follows. */
export const TLS_CRYPT_METADATA_TYPE_USER = 0x00;
export const TLS_CRYPT_METADATA_TYPE_TIMESTAMP = 0x01;

/**
 * ssl_pkt.h: a tls-crypt-v2 client that supports early negotiation starts its tls-crypt packet ids at
 * 0x0f000000; a server may then put TLVs in the payload of its reset.
 */
export const EARLY_NEG_MASK = 0xff000000;
export const EARLY_NEG_START = 0x0f000000;
export const TLV_TYPE_EARLY_NEG_FLAGS = 0x0001;
/** Asks the client to append its WKc again to its next control packet (P_CONTROL_WKC_V1). */
export const EARLY_NEG_FLAG_RESEND_WKC = 0x0001;

// ---- OpenVPN 2.6's defaults that a peer notices, matched here ----

/** options.c: --tls-timeout 2: the first retransmission of an unacknowledged control packet. */
export const TLS_TIMEOUT = 2_000;
/** ssl_pkt.h TLS_RELIABLE_N_SEND_BUFFERS: control packets in flight before waiting for ACKs. */
export const RELIABLE_SEND_WINDOW = 6;
/** ssl_pkt.h TLS_RELIABLE_N_REC_BUFFERS: control packets held out of order. */
export const RELIABLE_RECEIVE_WINDOW = 12;
/** reliable.h N_ACK_RETRANSMIT: resend at once when this many later packets were acknowledged. */
export const N_ACK_RETRANSMIT = 3;
/** options.c: --replay-window 64 15 (packets, seconds) for packet-id replay protection over UDP. */
export const REPLAY_WINDOW = 64;

// ---- Of this implementation ----

/**
 * The largest OpenVPN packet the TCP deframer accepts. OpenVPN's own limit is its frame buffer (tun-mtu
 * 1500 plus overhead); 4096 leaves room for a larger tun-mtu and refuses anything that could only be junk.
 */
export const TCP_DEFAULT_MAX_PACKET = 4096;
/**
 * Retransmission backs off by doubling (reliable.c) from TLS_TIMEOUT; OpenVPN sets no ceiling because the
 * handshake window (60 s) ends the attempt. A ceiling keeps a long-lived key state's deadlines sane.
 */
export const RELIABLE_MAX_TIMEOUT = 32_000;
/** Control messages queued behind a full send window before the queue refuses more. */
export const RELIABLE_MAX_BACKLOG = 64;
