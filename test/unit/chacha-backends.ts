/**
 * Every ChaCha20-Poly1305 backend the conformance tests hold to the published vectors. A new backend (a
 * WebAssembly or native one, say) is covered by adding it here.
 */
import { nodeChaChaPoly, type ChaChaPoly } from '../../src/crypto/aead.js';
import { createOpenSslChaChaPoly } from '../../src/crypto/aead-openssl.js';
import { createSodiumChaChaPoly } from '../../src/crypto/aead-sodium.js';

export const backends: ChaChaPoly[] = [nodeChaChaPoly, createOpenSslChaChaPoly(), createSodiumChaChaPoly()];
