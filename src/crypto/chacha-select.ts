/**
 * Chooses the ChaCha20-Poly1305 backend for the data plane: OpenSSL through FFI where this node binary
 * exports it (about three times faster per packet), else node:crypto. `WEFT_CRYPTO=node` forces the latter.
 */
import { nodeChaChaPoly, type ChaChaPoly } from './aead.js';
import { createOpenSslChaChaPoly } from './aead-openssl.js';

let chosen: ChaChaPoly | undefined;

export function bestChaChaPoly(): ChaChaPoly {
  if (chosen) return chosen;
  chosen = nodeChaChaPoly;
  if (process.env.WEFT_CRYPTO !== 'node') {
    try {
      chosen = createOpenSslChaChaPoly();
    } catch {
      // FFI or the EVP symbols unavailable: keep node:crypto
    }
  }
  return chosen;
}
