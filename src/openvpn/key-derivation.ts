/**
 * Data-channel key material (OpenVPN's ssl.c: generate_key_expansion_tls_export and
 * generate_key_expansion_openvpn_prf). Either way the result is OpenVPN's `struct key2`: 256 bytes, two
 * `struct key` of 64 cipher bytes ‖ 64 HMAC bytes. Slicing it into send/receive keys and implicit IVs is the
 * data channel's business; this file only makes the block.
 *
 *   EKM  (client's IV_PROTO has IV_PROTO_TLS_KEY_EXPORT and the server pushes `key-derivation tls-ekm`):
 *        block = TLS-Exporter("EXPORTER-OpenVPN-datakeys", no context, 256)   (RFC 5705 / RFC 8446 §7.5)
 *   PRF  (OpenVPN 2.4/2.5 clients, or a server that does not offer EKM):
 *        master = PRF(pre_master, "OpenVPN master secret", client.random1 ‖ server.random1, 48)
 *        block  = PRF(master, "OpenVPN key expansion",
 *                     client.random2 ‖ server.random2 ‖ client session id ‖ server session id, 256)
 *        with PRF the TLS 1.0 PRF (RFC 2246 §5): P_MD5(S1, label ‖ seed) ⊕ P_SHA1(S2, label ‖ seed), S1 and
 *        S2 the first and second halves of the secret (sharing the middle byte when its length is odd).
 */
import { createHmac } from 'node:crypto';
import { KEY2_LENGTH, SESSION_ID_LENGTH } from './constants.js';

/** ssl.h EXPORT_KEY_DATA_LABEL. */
export const EKM_LABEL = 'EXPORTER-OpenVPN-datakeys';
/** ssl.h KEY_EXPANSION_ID. */
export const KEY_EXPANSION_ID = 'OpenVPN';
export const PRE_MASTER_LENGTH = 48;
export const RANDOM_LENGTH = 32;
export const MASTER_SECRET_LENGTH = 48;

export type KeyDerivation = 'tls-ekm' | 'openvpn-prf';

/** P_hash of RFC 2246 §5: HMAC_hash(secret, A(i) ‖ seed) with A(0) = seed, A(i) = HMAC(secret, A(i-1)). */
function pHash(hash: 'md5' | 'sha1', secret: Uint8Array, seed: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let a: Uint8Array = seed;
  let at = 0;
  while (at < length) {
    a = createHmac(hash, secret).update(a).digest();
    const block = createHmac(hash, secret).update(a).update(seed).digest();
    const take = Math.min(block.length, length - at);
    out.set(block.subarray(0, take), at);
    at += take;
  }
  return out;
}

/** The TLS 1.0/1.1 PRF (RFC 2246 §5), as OpenSSL's EVP_PKEY_TLS1_PRF with EVP_md5_sha1() computes it. */
export function tls1Prf(secret: Uint8Array, label: string, seed: Uint8Array, length: number): Uint8Array {
  const half = Math.ceil(secret.length / 2);
  const s1 = secret.subarray(0, half);
  const s2 = secret.subarray(secret.length - half);
  const labelSeed = new Uint8Array(Buffer.concat([Buffer.from(label, 'latin1'), seed]));
  const md5 = pHash('md5', s1, labelSeed, length);
  const sha1 = pHash('sha1', s2, labelSeed, length);
  for (let i = 0; i < length; i++) md5[i]! ^= sha1[i]!;
  return md5;
}

/** What the OpenVPN PRF path needs: both key-method 2 messages and both session ids. */
export interface PrfInputs {
  readonly preMaster: Uint8Array;
  readonly clientRandom1: Uint8Array;
  readonly clientRandom2: Uint8Array;
  readonly serverRandom1: Uint8Array;
  readonly serverRandom2: Uint8Array;
  readonly clientSessionId: Uint8Array;
  readonly serverSessionId: Uint8Array;
}

/** ssl.c generate_key_expansion_openvpn_prf: the 256-byte key2 block. Throws on wrong input lengths. */
export function openvpnPrfKeyBlock(inputs: PrfInputs): Uint8Array {
  const check = (name: string, value: Uint8Array, length: number): void => {
    if (value.length !== length) throw new RangeError(`${name} must be ${length} bytes`);
  };
  check('preMaster', inputs.preMaster, PRE_MASTER_LENGTH);
  check('clientRandom1', inputs.clientRandom1, RANDOM_LENGTH);
  check('clientRandom2', inputs.clientRandom2, RANDOM_LENGTH);
  check('serverRandom1', inputs.serverRandom1, RANDOM_LENGTH);
  check('serverRandom2', inputs.serverRandom2, RANDOM_LENGTH);
  check('clientSessionId', inputs.clientSessionId, SESSION_ID_LENGTH);
  check('serverSessionId', inputs.serverSessionId, SESSION_ID_LENGTH);
  const master = tls1Prf(
    inputs.preMaster,
    `${KEY_EXPANSION_ID} master secret`,
    concat(inputs.clientRandom1, inputs.serverRandom1),
    MASTER_SECRET_LENGTH,
  );
  const block = tls1Prf(
    master,
    `${KEY_EXPANSION_ID} key expansion`,
    concat(inputs.clientRandom2, inputs.serverRandom2, inputs.clientSessionId, inputs.serverSessionId),
    KEY2_LENGTH,
  );
  master.fill(0);
  return block;
}

/** The EKM path: `exporter` is the TLS session's RFC 5705 exporter (TlsEngine.exportKeyingMaterial). */
export function ekmKeyBlock(exporter: (length: number, label: string) => Uint8Array): Uint8Array {
  const block = exporter(KEY2_LENGTH, EKM_LABEL);
  if (block.length !== KEY2_LENGTH) throw new RangeError('exporter returned a short block');
  return block;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}
