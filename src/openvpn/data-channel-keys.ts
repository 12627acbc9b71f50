/**
 * The data channel's keys, cut from the 256-byte key block the control channel derives for one key id
 * (OpenVPN's `struct key2`, from the TLS exporter with label "EXPORTER-OpenVPN-datakeys" or the TLS-1.0 PRF):
 *
 *   block = keys[0] ‖ keys[1],   keys[i] = cipher[64] ‖ hmac[64]                          (crypto.h)
 *
 * - Direction (ssl.c init_key_contexts, crypto.c key_direction_state_init): the client encrypts with keys[0]
 *   and decrypts with keys[1] (KEY_DIRECTION_NORMAL); the server the other way round (KEY_DIRECTION_INVERSE).
 * - Cipher key: the first 16 (AES-128-GCM) or 32 (AES-256-GCM, CHACHA20-POLY1305) bytes of `cipher`
 *   (init_key_ctx hands the cipher its own key length).
 * - Implicit IV: an AEAD cipher uses no HMAC, so the first 12 − 4 = 8 bytes of the *same* key's `hmac` half
 *   become the fixed tail of every nonce (ssl.c key_ctx_update_implicit_iv); the nonce is
 *   packet id (4, big-endian) ‖ implicit IV (8) (crypto.c openvpn_encrypt_aead).
 */
import { AEAD_KEY_BYTES, AEAD_NONCE_BYTES, type AeadName } from '../crypto/aead-evp.js';

/** crypto.h: struct key is 64 bytes of cipher key and 64 of HMAC key; struct key2 holds two. */
export const DATA_KEY_HALF = 64;
export const DATA_KEY_LENGTH = 2 * DATA_KEY_HALF;
export const DATA_KEY_BLOCK_LENGTH = 2 * DATA_KEY_LENGTH;
/** packet_id.h: packet_id_type, the explicit (sent) part of the nonce. */
export const DATA_PACKET_ID_LENGTH = 4;
/** The implicit part of the nonce: iv length (12) minus the packet id. */
export const IMPLICIT_IV_LENGTH = AEAD_NONCE_BYTES - DATA_PACKET_ID_LENGTH;

/** The data ciphers Weft offers, spelled as OpenVPN's --data-ciphers and IV_CIPHERS spell them. */
export const DATA_CIPHERS = ['AES-256-GCM', 'AES-128-GCM', 'CHACHA20-POLY1305'] as const;
export type DataCipherName = (typeof DATA_CIPHERS)[number];

const AEAD_OF: Readonly<Record<DataCipherName, AeadName>> = {
  'AES-256-GCM': 'aes-256-gcm',
  'AES-128-GCM': 'aes-128-gcm',
  'CHACHA20-POLY1305': 'chacha20-poly1305',
};

/**
 * The cipher a name from the control channel means, or undefined for one the data channel does not run
 * (CBC ciphers, "none", BF-CBC): OpenVPN matches cipher names without regard to case.
 */
export function parseDataCipher(name: string): DataCipherName | undefined {
  const upper = name.trim().toUpperCase();
  return DATA_CIPHERS.find((c) => c === upper);
}

export function aeadOf(cipher: DataCipherName): AeadName {
  return AEAD_OF[cipher];
}

export type DataRole = 'server' | 'client';

/** One direction's material: the cipher key and the nonce's implicit tail. */
export interface DirectionKeys {
  readonly key: Uint8Array;
  readonly implicitIv: Uint8Array;
}

export interface SlicedDataKeys {
  readonly cipher: DataCipherName;
  readonly send: DirectionKeys;
  readonly receive: DirectionKeys;
}

function direction(block: Uint8Array, index: 0 | 1, cipher: DataCipherName): DirectionKeys {
  const base = index * DATA_KEY_LENGTH;
  const keyBytes = AEAD_KEY_BYTES[AEAD_OF[cipher]];
  return {
    key: block.slice(base, base + keyBytes),
    implicitIv: block.slice(base + DATA_KEY_HALF, base + DATA_KEY_HALF + IMPLICIT_IV_LENGTH),
  };
}

/**
 * The send and receive keys of `role` (copies; the caller may wipe `block` afterwards). Throws RangeError on a
 * block of the wrong length: the control channel always hands over exactly 256 bytes.
 */
export function sliceDataKeys(block: Uint8Array, cipher: DataCipherName, role: DataRole): SlicedDataKeys {
  if (block.length !== DATA_KEY_BLOCK_LENGTH)
    throw new RangeError(`a data key block is ${DATA_KEY_BLOCK_LENGTH} bytes, got ${block.length}`);
  if (AEAD_OF[cipher] === undefined) throw new RangeError(`unsupported data cipher ${String(cipher)}`);
  const out: 0 | 1 = role === 'client' ? 0 : 1;
  const inn: 0 | 1 = role === 'client' ? 1 : 0;
  return { cipher, send: direction(block, out, cipher), receive: direction(block, inn, cipher) };
}
