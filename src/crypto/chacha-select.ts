/**
 * Chooses the ChaCha20-Poly1305 backend for the data plane, the first that loads of:
 *   1. libsodium through FFI (aead-sodium.ts): one call per packet, the least cold cost on an idle tunnel;
 *   2. OpenSSL through FFI where this node binary exports EVP (aead-openssl.ts): four calls per packet;
 *   3. node:crypto (a cipher object per packet, several times slower).
 * `WEFT_CRYPTO=sodium|openssl|node` starts the search at that backend instead (node: node:crypto only).
 */
import { nodeChaChaPoly, type ChaChaPoly } from './aead.js';
import { createOpenSslChaChaPoly } from './aead-openssl.js';
import { createSodiumChaChaPoly } from './aead-sodium.js';

const CANDIDATES: readonly { name: string; create: () => ChaChaPoly }[] = [
  { name: 'sodium', create: createSodiumChaChaPoly },
  { name: 'openssl', create: createOpenSslChaChaPoly },
  { name: 'node', create: () => nodeChaChaPoly },
];

let chosen: ChaChaPoly | undefined;

export function bestChaChaPoly(): ChaChaPoly {
  if (chosen) return chosen;
  const wanted = process.env.WEFT_CRYPTO;
  const start = Math.max(
    0,
    CANDIDATES.findIndex((c) => c.name === wanted),
  );
  for (const candidate of CANDIDATES.slice(start)) {
    try {
      chosen = candidate.create();
      return chosen;
    } catch {
      // FFI, the library or its symbols unavailable: try the next
    }
  }
  chosen = nodeChaChaPoly;
  return chosen;
}
