/**
 * ChaCha20-Poly1305 through the OpenSSL that the node binary itself exports (EVP_*), called with koffi and
 * one reused EVP_CIPHER_CTX per direction. `createCipheriv` builds a cipher object per packet, which costs
 * more than the encryption of a 1420-byte packet; here a packet is four FFI calls on reused state, with the
 * result written straight into the caller's buffer.
 *
 * Per call: EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) sets key and nonce on the existing context;
 * EVP_CipherUpdate with a NULL output feeds associated data; EVP_CipherUpdate encrypts or decrypts;
 * EVP_CipherFinal_ex completes (on decryption it verifies the tag set with EVP_CTRL_AEAD_SET_TAG).
 * Contexts belong to one thread: each worker that loads this module gets its own.
 */
import koffi from 'koffi';
import { AEAD_TAG_LENGTH, chachaPolyFrom, type ChaChaPoly, type SealInto } from './aead.js';

/** include/openssl/evp.h */
const EVP_CTRL_AEAD_GET_TAG = 0x10;
const EVP_CTRL_AEAD_SET_TAG = 0x11;

interface Evp {
  ctxNew: () => unknown;
  cipher: unknown;
  init: (
    ctx: unknown,
    cipher: unknown,
    impl: null,
    key: Uint8Array | null,
    iv: Uint8Array | null,
    enc: number,
  ) => number;
  update: (ctx: unknown, out: Uint8Array | null, outl: Int32Array, input: Uint8Array, inl: number) => number;
  final: (ctx: unknown, out: Uint8Array, outl: Int32Array) => number;
  ctrl: (ctx: unknown, type: number, arg: number, ptr: Uint8Array) => number;
}

function bind(): Evp {
  const lib = koffi.load(null);
  const ctxNew = lib.func('void *EVP_CIPHER_CTX_new(void)') as () => unknown;
  const chacha = lib.func('void *EVP_chacha20_poly1305(void)') as () => unknown;
  return {
    ctxNew,
    cipher: chacha(),
    init: lib.func(
      'int EVP_CipherInit_ex(void *ctx, void *cipher, void *impl, const uint8_t *key, const uint8_t *iv, int enc)',
    ) as Evp['init'],
    update: lib.func(
      'int EVP_CipherUpdate(void *ctx, uint8_t *out, int *outl, const uint8_t *in, int inl)',
    ) as Evp['update'],
    final: lib.func('int EVP_CipherFinal_ex(void *ctx, uint8_t *out, int *outl)') as Evp['final'],
    ctrl: lib.func('int EVP_CIPHER_CTX_ctrl(void *ctx, int type, int arg, uint8_t *ptr)') as Evp['ctrl'],
  };
}

const SCRATCH = new Uint8Array(16);

/** Creates the backend; throws if this node binary does not export the EVP functions. */
export function createOpenSslChaChaPoly(): ChaChaPoly {
  const evp = bind();
  const sealCtx = evp.ctxNew();
  const openCtx = evp.ctxNew();
  if (!sealCtx || !openCtx) throw new Error('EVP_CIPHER_CTX_new failed');
  const outl = new Int32Array(1);
  if (
    evp.init(sealCtx, evp.cipher, null, null, null, 1) !== 1 ||
    evp.init(openCtx, evp.cipher, null, null, null, 0) !== 1
  ) {
    throw new Error('EVP_CipherInit_ex(chacha20-poly1305) failed');
  }

  const sealInto: SealInto = (key, nonce, data, out, tag, ad) => {
    if (evp.init(sealCtx, null, null, key, nonce, 1) !== 1) throw new Error('EVP_CipherInit_ex failed');
    if (ad.length > 0) evp.update(sealCtx, null, outl, ad, ad.length);
    if (data.length > 0) evp.update(sealCtx, out, outl, data, data.length);
    evp.final(sealCtx, SCRATCH, outl);
    evp.ctrl(sealCtx, EVP_CTRL_AEAD_GET_TAG, AEAD_TAG_LENGTH, tag);
  };

  const openInto: ChaChaPoly['openInto'] = (key, nonce, sealed, out, ad) => {
    if (sealed.length < AEAD_TAG_LENGTH || out.length < sealed.length - AEAD_TAG_LENGTH) return false;
    const bodyLength = sealed.length - AEAD_TAG_LENGTH;
    if (evp.init(openCtx, null, null, key, nonce, 0) !== 1) return false;
    if (ad.length > 0) evp.update(openCtx, null, outl, ad, ad.length);
    if (bodyLength > 0) evp.update(openCtx, out, outl, sealed.subarray(0, bodyLength), bodyLength);
    // SET_TAG reads the tag; koffi passes the subarray's own bytes.
    evp.ctrl(openCtx, EVP_CTRL_AEAD_SET_TAG, AEAD_TAG_LENGTH, sealed.subarray(bodyLength));
    return evp.final(openCtx, SCRATCH, outl) === 1;
  };

  return chachaPolyFrom('openssl-ffi', sealInto, openInto);
}
