/**
 * What the IKEv2 core hands to the ESP data plane when a CHILD SA is established or rekeyed: the SPIs, the
 * negotiated transforms (IANA "IKEv2 Parameters" transform IDs), the keys already split per direction from
 * KEYMAT (RFC 7296 §2.17), and the traffic selectors both sides agreed on. The one shape both sides of the
 * IPsec implementation speak.
 */

/** IKEv2 Transform Type 1 (encryption) IDs used for ESP (RFC 7296 §3.3.2, RFC 4106, RFC 7634). */
export const ESP_ENCR = {
  AES_CBC: 12,
  AES_GCM_16: 20,
  CHACHA20_POLY1305: 28,
} as const;
export type EspEncryptionId = (typeof ESP_ENCR)[keyof typeof ESP_ENCR];

/** IKEv2 Transform Type 3 (integrity) IDs (RFC 7296 §3.3.2, RFC 4868). */
export const ESP_INTEG = {
  HMAC_SHA1_96: 2,
  HMAC_SHA2_256_128: 12,
  HMAC_SHA2_384_192: 13,
  HMAC_SHA2_512_256: 14,
} as const;
export type EspIntegrityId = (typeof ESP_INTEG)[keyof typeof ESP_INTEG];

export type IpsecMode = 'tunnel' | 'transport';

/** One traffic selector (RFC 7296 §3.13.1), addresses as text ("10.1.0.0", "2001:db8::"). */
export interface TrafficSelector {
  readonly family: 4 | 6;
  /** IP protocol number; 0 means any. */
  readonly protocol: number;
  readonly startPort: number;
  readonly endPort: number;
  readonly startAddress: string;
  readonly endAddress: string;
}

/** Keys for one direction of a CHILD SA. */
export interface EspDirectionKeys {
  /**
   * The encryption key exactly as taken from KEYMAT: for AES-GCM and ChaCha20-Poly1305 it ends with the
   * 4-byte salt (RFC 4106 §8.1, RFC 7634 §2), so its length is the key length plus 4.
   */
  readonly encryptionKey: Uint8Array;
  /** The integrity key, or null for the combined-mode (AEAD) ciphers. */
  readonly integrityKey: Uint8Array | null;
}

export interface ChildSaSpec {
  readonly mode: IpsecMode;
  /** The SPI the peer puts on packets to us (we chose it). */
  readonly inboundSpi: number;
  /** The SPI we put on packets to the peer (the peer chose it). */
  readonly outboundSpi: number;
  readonly encryption: EspEncryptionId;
  /** Key length in bits without the salt (128 or 256; 256 for ChaCha20-Poly1305). */
  readonly encryptionKeyBits: number;
  readonly integrity: EspIntegrityId | null;
  /** Extended (64-bit) sequence numbers (RFC 4303 §2.2.1). */
  readonly esn: boolean;
  readonly inbound: EspDirectionKeys;
  readonly outbound: EspDirectionKeys;
  /** Our side's selectors (what we send from) and the peer's (what we send to). */
  readonly localSelectors: readonly TrafficSelector[];
  readonly remoteSelectors: readonly TrafficSelector[];
}
