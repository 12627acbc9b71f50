/**
 * Diffie-Hellman groups for IKEv2 key exchange (RFC 7296 §3.4): MODP groups (RFC 3526, RFC 2409), the NIST
 * curves as RFC 5903 encodes them (x | y, no point-format octet; the shared secret is x alone) and
 * Curve25519 (RFC 8031: 32-byte public values, an all-zero result is refused).
 */
import {
  createDiffieHellman,
  createECDH,
  getDiffieHellman,
  randomBytes,
  type DiffieHellman,
} from 'node:crypto';

import { X25519Private } from '../crypto/x25519.js';
import { DH_GROUP } from './constants.js';

export type DhGroupId = (typeof DH_GROUP)[keyof typeof DH_GROUP];

/** Groups 2 and 5 are offered and accepted only where a site allows legacy groups. */
export const LEGACY_GROUPS: ReadonlySet<number> = new Set([DH_GROUP.MODP_1024, DH_GROUP.MODP_1536]);

const MODP: Partial<Record<number, { name: string; bytes: number }>> = {
  [DH_GROUP.MODP_1024]: { name: 'modp2', bytes: 128 },
  [DH_GROUP.MODP_1536]: { name: 'modp5', bytes: 192 },
  [DH_GROUP.MODP_2048]: { name: 'modp14', bytes: 256 },
};
const ECP: Partial<Record<number, { curve: string; coord: number }>> = {
  [DH_GROUP.ECP_256]: { curve: 'prime256v1', coord: 32 },
  [DH_GROUP.ECP_384]: { curve: 'secp384r1', coord: 48 },
  [DH_GROUP.ECP_521]: { curve: 'secp521r1', coord: 66 },
};

export function isDhGroupId(id: number): id is DhGroupId {
  return id in MODP || id in ECP || id === DH_GROUP.CURVE25519;
}

/** The exact length of a KE payload's key exchange data for the group. */
export function publicLength(group: DhGroupId): number {
  const m = MODP[group];
  if (m) return m.bytes;
  const e = ECP[group];
  if (e) return 2 * e.coord;
  return 32;
}

export interface DhKeyPair {
  readonly group: DhGroupId;
  readonly publicValue: Buffer;
  /** The shared secret g^ir as RFC 7296 §2.14 feeds it to SKEYSEED, or null for an invalid peer value. */
  computeSecret(peer: Uint8Array): Buffer | null;
}

/**
 * A fresh key pair. `privateKey` lets a test fix the private value (RFC 5903 / RFC 7748 vectors); otherwise
 * node:crypto draws it.
 */
export function generateDh(group: DhGroupId, privateKey?: Uint8Array): DhKeyPair {
  const m = MODP[group];
  if (m) {
    // Named groups skip the prime check; a fixed private key (tests only) needs a settable object.
    const named = getDiffieHellman(m.name);
    const dh: DiffieHellman | typeof named = privateKey
      ? createDiffieHellman(named.getPrime(), named.getGenerator())
      : named;
    dh.generateKeys();
    if (privateKey) (dh as DiffieHellman).setPrivateKey(Buffer.from(privateKey));
    const pub = leftPad(privateKey ? modpPublic(dh, privateKey) : dh.getPublicKey(), m.bytes);
    return {
      group,
      publicValue: pub,
      computeSecret(peer) {
        if (peer.length !== m.bytes) return null;
        // RFC 7296 §2.14 / RFC 6989: refuse 0, 1 and p-1 and anything not below p.
        const p = BigInt('0x' + dh.getPrime('hex'));
        const y = BigInt('0x' + Buffer.from(peer).toString('hex'));
        if (y <= 1n || y >= p - 1n) return null;
        try {
          return leftPad(dh.computeSecret(Buffer.from(peer)), m.bytes);
        } catch {
          return null;
        }
      },
    };
  }
  const e = ECP[group];
  if (e) {
    const ecdh = createECDH(e.curve);
    if (privateKey) ecdh.setPrivateKey(Buffer.from(privateKey));
    else ecdh.generateKeys();
    const pub = ecdh.getPublicKey(undefined, 'uncompressed').subarray(1);
    return {
      group,
      publicValue: Buffer.from(pub),
      computeSecret(peer) {
        if (peer.length !== 2 * e.coord) return null;
        try {
          // computeSecret validates that the point is on the curve (RFC 5903 §7 asks for it).
          return leftPad(ecdh.computeSecret(Buffer.concat([Uint8Array.of(4), peer])), e.coord);
        } catch {
          return null;
        }
      },
    };
  }
  const x = new X25519Private(privateKey ?? randomBytes(32));
  return {
    group,
    publicValue: Buffer.from(x.publicKey),
    computeSecret(peer) {
      if (peer.length !== 32) return null;
      try {
        const s = x.dh(peer);
        return s === null ? null : Buffer.from(s);
      } catch {
        return null;
      }
    },
  };
}

function modpPublic(
  dh: { getPrime(e: 'hex'): string; getGenerator(e: 'hex'): string },
  priv: Uint8Array,
): Buffer {
  const p = BigInt('0x' + dh.getPrime('hex'));
  const g = BigInt('0x' + dh.getGenerator('hex'));
  const x = BigInt('0x' + Buffer.from(priv).toString('hex'));
  let r = 1n;
  let b = g % p;
  let k = x;
  while (k > 0n) {
    if (k & 1n) r = (r * b) % p;
    b = (b * b) % p;
    k >>= 1n;
  }
  let hex = r.toString(16);
  if (hex.length % 2) hex = '0' + hex;
  return Buffer.from(hex, 'hex');
}

function leftPad(b: Buffer, length: number): Buffer {
  if (b.length >= length) return b;
  return Buffer.concat([Buffer.alloc(length - b.length), b]);
}
