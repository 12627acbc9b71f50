/**
 * X25519 (RFC 7748 §5) over node:crypto. Raw 32-byte keys are wrapped in the fixed PKCS#8 / SPKI DER
 * prefixes node expects; scalar clamping happens inside OpenSSL, as RFC 7748 requires.
 */
import { createPrivateKey, createPublicKey, diffieHellman, type KeyObject } from 'node:crypto';

const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

export const X25519_KEY_LENGTH = 32;

function privateKeyObject(priv: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, priv]), format: 'der', type: 'pkcs8' });
}

function publicKeyObject(pub: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' });
}

/** Clamps a scalar in place as RFC 7748 §5 decodeScalar25519 does (and `wg genkey` stores it). */
export function clamp(priv: Uint8Array): Uint8Array {
  priv[0]! &= 248;
  priv[31] = (priv[31]! & 127) | 64;
  return priv;
}

/** X25519(priv, 9): the public key of a private scalar. */
export function publicFromPrivate(priv: Uint8Array): Uint8Array {
  return new X25519Private(priv).publicKey;
}

/**
 * DH(priv, pub). Returns null when the result is all zeros (a low-order point), which WireGuard treats as a
 * failed handshake rather than deriving keys from a known value.
 */
export function dh(priv: Uint8Array, pub: Uint8Array): Uint8Array | null {
  return derive(privateKeyObject(priv), pub);
}

function derive(privateKey: KeyObject, pub: Uint8Array): Uint8Array | null {
  let out: Buffer;
  try {
    out = diffieHellman({ privateKey, publicKey: publicKeyObject(pub) });
  } catch {
    return null; // OpenSSL refuses an all-zero shared secret
  }
  let acc = 0;
  for (const b of out) acc |= b;
  return acc === 0 ? null : new Uint8Array(out);
}

/** A private key wrapped once, so the static key is not re-encoded for every handshake. */
export class X25519Private {
  private readonly object: KeyObject;
  readonly publicKey: Uint8Array;
  constructor(priv: Uint8Array) {
    this.object = privateKeyObject(priv);
    const der = createPublicKey(this.object).export({ format: 'der', type: 'spki' });
    this.publicKey = new Uint8Array(der.subarray(der.length - X25519_KEY_LENGTH));
  }
  dh(pub: Uint8Array): Uint8Array | null {
    return derive(this.object, pub);
  }
}
