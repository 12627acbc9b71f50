/**
 * The cryptographic transforms of ESP, each sealing and opening one packet laid out in the caller's buffer:
 *
 *   [SPI 4][sequence number 4][IV][ciphertext: payload, padding, pad length, next header][ICV]
 *
 * - AES-GCM-16 (RFC 4106) and ChaCha20-Poly1305 (RFC 7634): 8-byte explicit IV, nonce = salt || IV,
 *   AAD = SPI || sequence number (SPI || high half || low half with ESN, RFC 4106 §5), 16-byte ICV. The keyed
 *   contexts of src/crypto/aead-evp.ts: the key schedule once per SA, output into the caller's buffer.
 * - AES-CBC (RFC 3602) with HMAC-SHA1-96 (RFC 2404) or HMAC-SHA2-256/384/512 truncated to half (RFC 4868):
 *   16-byte random IV, encrypt-then-MAC over SPI..ciphertext (plus the ESN high half, RFC 4303 §2.2.1, which
 *   is authenticated but not sent). Through node:crypto, which builds a cipher and an HMAC object per packet
 *   and returns fresh Buffers that are copied into place: a few allocations and ~1 µs of overhead per packet
 *   on top of the cipher itself. These suites are here for peers that insist on them; the GCM path is the
 *   fast one.
 *
 * The ICV is checked before anything is decrypted into the caller's buffer for CBC; for the AEADs the check
 * and the decryption are one operation, and `out` holds garbage when it fails.
 */
import { createCipheriv, createDecipheriv, createHmac, randomFillSync, timingSafeEqual } from 'node:crypto';
import { createAeadKey, type AeadKey, type AeadName } from '../crypto/aead-evp.js';
import { ESP_ENCR, ESP_INTEG, type ChildSaSpec, type EspDirectionKeys } from './child-sa.js';
import {
  AEAD_EXPLICIT_IV_BYTES,
  AEAD_SALT_BYTES,
  AES_BLOCK_BYTES,
  CBC_IV_BYTES,
  ESP_ALIGNMENT,
  ESP_HEADER_BYTES,
} from './esp-constants.js';

/** Writes the IV for the packet with sequence number `seq` into `iv`. */
export type IvSource = (seq: number, iv: Uint8Array) => void;

export interface EspTransform {
  readonly name: string;
  readonly ivBytes: number;
  readonly icvBytes: number;
  /** The ciphertext (payload + padding + trailer) is a multiple of this. */
  readonly alignment: number;
  /**
   * `packet` holds the header and, after the IV's place, `cipherLength` bytes of plaintext; writes the IV,
   * encrypts in place and appends the ICV. `seqHigh` is the ESN high half (0 without ESN).
   */
  seal(packet: Uint8Array, cipherLength: number, seq: number, seqHigh: number, esn: boolean): void;
  /**
   * Verifies the ICV of the whole ESP `packet` and decrypts its ciphertext into `out` (from 0). False if the
   * ICV does not verify.
   */
  open(packet: Uint8Array, out: Uint8Array, seqHigh: number, esn: boolean): boolean;
  dispose(): void;
}

const TWO32 = 0x1_0000_0000;

function writeU32(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >>> 24;
  buf[at + 1] = (value >>> 16) & 0xff;
  buf[at + 2] = (value >>> 8) & 0xff;
  buf[at + 3] = value & 0xff;
}

/** The default AEAD IV: the 64-bit sequence number, unique for the SA's life because it never repeats. */
export const sequenceIv: IvSource = (seq, iv) => {
  writeU32(iv, 0, Math.floor(seq / TWO32));
  writeU32(iv, 4, seq % TWO32);
};

class AeadTransform implements EspTransform {
  readonly ivBytes = AEAD_EXPLICIT_IV_BYTES;
  readonly icvBytes = 16;
  readonly alignment = ESP_ALIGNMENT;
  private readonly nonce = new Uint8Array(12);
  private readonly aad12 = new Uint8Array(12);
  private readonly key: AeadKey;

  constructor(
    readonly name: AeadName,
    keyMaterial: Uint8Array,
    direction: 'seal' | 'open',
    private readonly ivSource: IvSource,
  ) {
    const keyBytes = keyMaterial.length - AEAD_SALT_BYTES;
    this.key = createAeadKey(name, keyMaterial.subarray(0, keyBytes), direction);
    this.nonce.set(keyMaterial.subarray(keyBytes), 0);
  }

  private aad(packet: Uint8Array, seqHigh: number, esn: boolean): Uint8Array {
    if (!esn) return packet.subarray(0, ESP_HEADER_BYTES);
    const aad = this.aad12;
    aad.set(packet.subarray(0, 4), 0);
    writeU32(aad, 4, seqHigh);
    aad.set(packet.subarray(4, 8), 8);
    return aad;
  }

  seal(packet: Uint8Array, cipherLength: number, seq: number, seqHigh: number, esn: boolean): void {
    const ivAt = ESP_HEADER_BYTES;
    const dataAt = ivAt + AEAD_EXPLICIT_IV_BYTES;
    const iv = packet.subarray(ivAt, dataAt);
    this.ivSource(seq, iv);
    this.nonce.set(iv, AEAD_SALT_BYTES);
    const data = packet.subarray(dataAt, dataAt + cipherLength);
    const tag = packet.subarray(dataAt + cipherLength, dataAt + cipherLength + 16);
    this.key.sealInto(this.nonce, data, data, tag, this.aad(packet, seqHigh, esn));
  }

  open(packet: Uint8Array, out: Uint8Array, seqHigh: number, esn: boolean): boolean {
    const dataAt = ESP_HEADER_BYTES + AEAD_EXPLICIT_IV_BYTES;
    const end = packet.length - 16;
    this.nonce.set(packet.subarray(ESP_HEADER_BYTES, dataAt), AEAD_SALT_BYTES);
    return this.key.openInto(
      this.nonce,
      packet.subarray(dataAt, end),
      packet.subarray(end),
      out,
      this.aad(packet, seqHigh, esn),
    );
  }

  dispose(): void {
    this.key.dispose();
  }
}

interface HmacSuite {
  readonly hash: 'sha1' | 'sha256' | 'sha384' | 'sha512';
  readonly keyBytes: number;
  readonly icvBytes: number;
}

/** RFC 2404 §2 (SHA-1, 160-bit key, 96-bit ICV); RFC 4868 §2.1.1-2.1.3 (key = output size, ICV = half). */
export const HMAC_SUITES: Readonly<Record<number, HmacSuite>> = {
  [ESP_INTEG.HMAC_SHA1_96]: { hash: 'sha1', keyBytes: 20, icvBytes: 12 },
  [ESP_INTEG.HMAC_SHA2_256_128]: { hash: 'sha256', keyBytes: 32, icvBytes: 16 },
  [ESP_INTEG.HMAC_SHA2_384_192]: { hash: 'sha384', keyBytes: 48, icvBytes: 24 },
  [ESP_INTEG.HMAC_SHA2_512_256]: { hash: 'sha512', keyBytes: 64, icvBytes: 32 },
};

/** The truncated HMAC of `parts` (RFC 2104, truncated per RFC 2404 / RFC 4868). */
export function truncatedHmac(suite: HmacSuite, key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac(suite.hash, key);
  for (const p of parts) h.update(p);
  return h.digest().subarray(0, suite.icvBytes);
}

/** Random CBC IVs drawn from a buffer refilled 256 IVs at a time (one getrandom per 256 packets). */
export function randomIvSource(): IvSource {
  const pool = new Uint8Array(CBC_IV_BYTES * 256);
  let next = pool.length;
  return (_seq, iv) => {
    if (next + iv.length > pool.length) {
      randomFillSync(pool);
      next = 0;
    }
    iv.set(pool.subarray(next, next + iv.length));
    next += iv.length;
  };
}

class CbcHmacTransform implements EspTransform {
  readonly ivBytes = CBC_IV_BYTES;
  readonly alignment = AES_BLOCK_BYTES;
  readonly icvBytes: number;
  readonly name: string;
  private readonly cipher: 'aes-128-cbc' | 'aes-192-cbc' | 'aes-256-cbc';
  private readonly encKey: Buffer;
  private readonly authKey: Buffer;
  private readonly high = new Uint8Array(4);

  constructor(
    keyBits: number,
    private readonly suite: HmacSuite,
    keys: EspDirectionKeys,
    private readonly ivSource: IvSource,
  ) {
    if (keyBits !== 128 && keyBits !== 192 && keyBits !== 256) throw new RangeError(`AES-CBC-${keyBits}`);
    if (keys.encryptionKey.length !== keyBits / 8) throw new RangeError('AES-CBC key length');
    if (keys.integrityKey?.length !== suite.keyBytes) throw new RangeError(`HMAC-${suite.hash} key length`);
    this.cipher = `aes-${keyBits}-cbc` as const;
    this.encKey = Buffer.from(keys.encryptionKey);
    this.authKey = Buffer.from(keys.integrityKey);
    this.icvBytes = suite.icvBytes;
    this.name = `${this.cipher}+hmac-${suite.hash}`;
  }

  private icv(packet: Uint8Array, authEnd: number, seqHigh: number, esn: boolean): Buffer {
    const covered = packet.subarray(0, authEnd);
    if (!esn) return truncatedHmac(this.suite, this.authKey, covered);
    writeU32(this.high, 0, seqHigh);
    return truncatedHmac(this.suite, this.authKey, covered, this.high);
  }

  seal(packet: Uint8Array, cipherLength: number, seq: number, seqHigh: number, esn: boolean): void {
    const dataAt = ESP_HEADER_BYTES + CBC_IV_BYTES;
    const iv = packet.subarray(ESP_HEADER_BYTES, dataAt);
    this.ivSource(seq, iv);
    const c = createCipheriv(this.cipher, this.encKey, iv).setAutoPadding(false);
    const data = packet.subarray(dataAt, dataAt + cipherLength);
    const body = c.update(data);
    c.final();
    data.set(body);
    packet.set(this.icv(packet, dataAt + cipherLength, seqHigh, esn), dataAt + cipherLength);
  }

  open(packet: Uint8Array, out: Uint8Array, seqHigh: number, esn: boolean): boolean {
    const dataAt = ESP_HEADER_BYTES + CBC_IV_BYTES;
    const end = packet.length - this.icvBytes;
    if ((end - dataAt) % AES_BLOCK_BYTES !== 0 || end <= dataAt) return false;
    const expected = this.icv(packet, end, seqHigh, esn);
    if (!timingSafeEqual(expected, packet.subarray(end))) return false;
    const d = createDecipheriv(this.cipher, this.encKey, packet.subarray(ESP_HEADER_BYTES, dataAt));
    d.setAutoPadding(false);
    out.set(d.update(packet.subarray(dataAt, end)));
    d.final();
    return true;
  }

  dispose(): void {
    this.encKey.fill(0);
    this.authKey.fill(0);
  }
}

/**
 * The transform for one direction of a CHILD SA. Throws RangeError for a spec this data plane cannot carry
 * (the IKE side only proposes what is here, so that is a programming error).
 */
export function createEspTransform(
  spec: ChildSaSpec,
  direction: 'seal' | 'open',
  ivSource?: IvSource,
): EspTransform {
  const keys = direction === 'seal' ? spec.outbound : spec.inbound;
  const bits = spec.encryptionKeyBits;
  switch (spec.encryption) {
    case ESP_ENCR.AES_GCM_16: {
      if (bits !== 128 && bits !== 256) throw new RangeError(`AES-GCM-${bits} is not supported`);
      if (keys.encryptionKey.length !== bits / 8 + AEAD_SALT_BYTES)
        throw new RangeError('AES-GCM key length');
      return new AeadTransform(
        bits === 128 ? 'aes-128-gcm' : 'aes-256-gcm',
        keys.encryptionKey,
        direction,
        ivSource ?? sequenceIv,
      );
    }
    case ESP_ENCR.CHACHA20_POLY1305:
      if (keys.encryptionKey.length !== 32 + AEAD_SALT_BYTES) throw new RangeError('ChaCha20 key length');
      return new AeadTransform('chacha20-poly1305', keys.encryptionKey, direction, ivSource ?? sequenceIv);
    case ESP_ENCR.AES_CBC: {
      const suite = spec.integrity === null ? undefined : HMAC_SUITES[spec.integrity];
      if (!suite) throw new RangeError('AES-CBC needs an integrity transform');
      return new CbcHmacTransform(bits, suite, keys, ivSource ?? randomIvSource());
    }
    default:
      throw new RangeError(`ESP encryption transform ${String(spec.encryption)} is not supported`);
  }
}
