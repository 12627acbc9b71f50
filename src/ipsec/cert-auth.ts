/**
 * Certificate authentication for IKEv2: our certificate, key and trusted CAs checked once; the CERT and CERTREQ
 * payloads (RFC 7296 §3.6, §3.7); AUTH by digital signature (RFC 7427, method 14) and, from peers that send
 * them, the older methods 1 (RSA, RFC 7296 §3.8) and 9/10/11 (ECDSA, RFC 4754); the peer's chain validated to
 * a configured CA and its ID matched to its certificate (RFC 4945 §3.1).
 *
 * Verifying a peer:
 *   1. the first CERT payload (X.509 Certificate - Signature) is the end-entity certificate (§3.6), later ones
 *      may be intermediates;
 *   2. the chain: each link valid at `now` (wall-clock milliseconds, as the shell passes it), signed by its
 *      issuer, every intermediate a CA by basicConstraints, ending at one of the configured trusted CAs; no
 *      link issued by a trusted CA listed as revoked in that CA's CRL (RFC 5280 §5, §6.3), when one is
 *      configured;
 *   3. the ID: ID_DER_ASN1_DN must be the subject, FQDN / RFC822 / IP address a subjectAltName of that type;
 *   4. the AUTH signature over the same octets the PSK path MACs (RFC 7296 §2.15), with the leaf's key.
 * Each refusal is a sentence saying which of these failed; nothing here throws on peer input.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import {
  constants as cryptoConstants,
  createHash,
  createPrivateKey,
  createPublicKey,
  sign as cryptoSign,
  verify as cryptoVerify,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';

import { formatAddress, parseAddress } from '../net/ip.js';
import { sameDistinguishedName } from './auth.js';
import { AUTH_METHOD, CERT_ENCODING, HASH_ALGORITHM, ID_TYPE, NOTIFY } from './constants.js';
import type { Payload } from './messages.js';

/** What a site configures to authenticate with a certificate (all PEM). */
export interface CertificateConfig {
  /** Our end-entity certificate. */
  readonly certificate: string;
  /** Intermediate CA certificates sent after ours, nearest first. */
  readonly chain?: readonly string[];
  /** The private key of `certificate` (PKCS #8, SEC 1 or PKCS #1 PEM). Secret. */
  readonly privateKey: string;
  /** CA certificates the peer's certificate must chain to. */
  readonly trusted: readonly string[];
  /**
   * Certificate revocation lists (PEM text, or DER bytes) issued by trusted CAs: a certificate such a CA issued
   * and its CRL lists is refused. Each must be signed by the trusted CA it names as issuer.
   */
  readonly crls?: readonly (string | Uint8Array)[];
}

interface TrustedCa {
  readonly cert: X509Certificate;
  /** The serial numbers (lowercase hex, no leading zeros) its CRLs list as revoked, with when. */
  readonly revoked: ReadonlyMap<string, string>;
}

export interface CheckedCertificate {
  readonly certificate: X509Certificate;
  readonly chain: readonly X509Certificate[];
  readonly key: KeyObject;
  readonly trusted: readonly TrustedCa[];
  /** The CERTREQ body after its encoding octet: SHA-1 of each trusted CA's SubjectPublicKeyInfo (§3.7). */
  readonly certReq: Buffer;
}

export type CertConfigError = { readonly field: string; readonly message: string };

const CHAIN_MAX = 8;

/** Reads a PEM certificate; null when it is not one. */
function readCertificate(pem: string): X509Certificate | null {
  if (typeof pem !== 'string' || !pem.includes('-----BEGIN CERTIFICATE-----')) return null;
  try {
    return new X509Certificate(pem);
  } catch {
    return null;
  }
}

interface Crl {
  readonly issuer: string;
  readonly issuerDer: Buffer;
  readonly tbs: Buffer;
  readonly signature: Buffer;
  readonly algorithm: { readonly name: string; readonly hash: string };
  readonly entries: readonly { readonly serial: string; readonly date: string }[];
}

/** A serial number as compared here: lowercase hex without leading zeros. */
function serialKey(hex: string): string {
  return hex.toLowerCase().replace(/^0+(?=.)/, '');
}

/** One DER TLV at `at`: where its content starts and ends (definite lengths only, as DER requires). */
function tlv(b: Buffer, at: number): { start: number; end: number } | null {
  if (at + 2 > b.length) return null;
  let len = b[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > b.length) return null;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[start + i]!;
    start += n;
  }
  return start + len <= b.length ? { start, end: start + len } : null;
}

/** Reads a CRL (RFC 5280 §5.1: CertificateList = tbsCertList, signatureAlgorithm, signatureValue). */
function readCrl(input: string | Uint8Array): Crl | null {
  try {
    const crl = new x509.X509Crl(typeof input === 'string' ? input : Buffer.from(input));
    const raw = Buffer.from(crl.rawData);
    const outer = tlv(raw, 0);
    if (!outer || raw[0] !== 0x30) return null;
    const tbs = tlv(raw, outer.start);
    if (!tbs) return null;
    const alg = tlv(raw, tbs.end);
    if (!alg) return null;
    const sig = tlv(raw, alg.end);
    if (!sig || raw[alg.end] !== 0x03 || raw[sig.start] !== 0) return null;
    const a = crl.signatureAlgorithm as { name: string; hash?: { name: string } };
    return {
      issuer: crl.issuer,
      issuerDer: Buffer.from(crl.issuerName.toArrayBuffer()),
      tbs: raw.subarray(outer.start, tbs.end),
      signature: raw.subarray(sig.start + 1, sig.end),
      algorithm: { name: a.name, hash: a.hash?.name ?? '' },
      entries: crl.entries.map((e) => ({
        serial: serialKey(e.serialNumber),
        date: e.revocationDate.toISOString(),
      })),
    };
  } catch {
    return null;
  }
}

/** The CRL's signature with the CA's key: ECDSA, RSA PKCS #1 v1.5 or RSASSA-PSS over SHA-2 (or SHA-1). */
function crlSignatureValid(crl: Crl, ca: X509Certificate): boolean {
  const hash = { 'SHA-1': 'sha1', 'SHA-256': 'sha256', 'SHA-384': 'sha384', 'SHA-512': 'sha512' }[
    crl.algorithm.hash
  ];
  if (hash === undefined) return false;
  try {
    if (crl.algorithm.name === 'RSA-PSS')
      return cryptoVerify(
        hash,
        crl.tbs,
        {
          key: ca.publicKey,
          padding: cryptoConstants.RSA_PKCS1_PSS_PADDING,
          saltLength: cryptoConstants.RSA_PSS_SALTLEN_AUTO,
        },
        crl.signature,
      );
    return cryptoVerify(hash, crl.tbs, ca.publicKey, crl.signature);
  } catch {
    return false;
  }
}

function readDer(der: Buffer): X509Certificate | null {
  try {
    const x = new X509Certificate(der);
    // OpenSSL reads the first DER object and ignores what follows; a CERT payload is one certificate exactly.
    return x.raw.length === der.length ? x : null;
  } catch {
    return null;
  }
}

function spki(key: KeyObject): Buffer {
  return (key.type === 'private' ? createPublicKey(key) : key).export({ type: 'spki', format: 'der' });
}

function validAt(cert: X509Certificate, now: number): 'ok' | 'expired' | 'not-yet-valid' {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (!(now >= from)) return 'not-yet-valid';
  if (!(now <= to)) return 'expired';
  return 'ok';
}

/** "CN=gw.example.net, O=Example" from node's one-attribute-per-line form. */
export function subjectText(cert: X509Certificate): string {
  return cert.subject.split('\n').join(', ');
}

function issuerText(cert: X509Certificate): string {
  return cert.issuer.split('\n').join(', ');
}

/** Checks the certificate settings of a site: each PEM parses, the key fits, nothing has expired at `now`. */
export function checkCertificateConfig(
  c: CertificateConfig,
  now: number,
): { ok: true; value: CheckedCertificate } | { ok: false; error: CertConfigError } {
  const err = (field: string, message: string) => ({ ok: false as const, error: { field, message } });
  const certificate = readCertificate(c.certificate);
  if (certificate === null)
    return err('certificate.certificate', 'not a PEM X.509 certificate (BEGIN CERTIFICATE)');
  const v = validAt(certificate, now);
  if (v !== 'ok')
    return err(
      'certificate.certificate',
      `certificate ${subjectText(certificate)} is ${v === 'expired' ? `expired (notAfter ${certificate.validTo})` : `not valid before ${certificate.validFrom}`}`,
    );
  let key: KeyObject;
  try {
    key = createPrivateKey(c.privateKey);
  } catch {
    return err('certificate.privateKey', 'not a PEM private key');
  }
  const kind = key.asymmetricKeyType;
  if (kind !== 'ec' && kind !== 'rsa')
    return err('certificate.privateKey', `key type ${kind ?? '?'} is not supported (ECDSA or RSA)`);
  if (kind === 'ec' && curveHash(key) === null)
    return err('certificate.privateKey', 'only ECDSA keys on P-256, P-384 and P-521 are supported');
  if (!spki(certificate.publicKey).equals(spki(key)))
    return err('certificate.privateKey', `the key does not match certificate ${subjectText(certificate)}`);
  const chain: X509Certificate[] = [];
  for (const [i, pem] of (c.chain ?? []).entries()) {
    const x = readCertificate(pem);
    if (x === null) return err(`certificate.chain[${i}]`, 'not a PEM X.509 certificate');
    if (!x.ca) return err(`certificate.chain[${i}]`, `${subjectText(x)} is not a CA (basicConstraints)`);
    chain.push(x);
  }
  if (c.trusted.length === 0)
    return err('certificate.trusted', 'no trusted CA: the peer certificate could not chain to anything');
  const trusted: { cert: X509Certificate; revoked: Map<string, string> }[] = [];
  for (const [i, pem] of c.trusted.entries()) {
    const x = readCertificate(pem);
    if (x === null) return err(`certificate.trusted[${i}]`, 'not a PEM X.509 certificate');
    if (validAt(x, now) === 'expired')
      return err(`certificate.trusted[${i}]`, `CA ${subjectText(x)} expired (notAfter ${x.validTo})`);
    trusted.push({ cert: x, revoked: new Map() });
  }
  for (const [i, input] of (c.crls ?? []).entries()) {
    const field = `certificate.crls[${i}]`;
    const crl = readCrl(input);
    if (crl === null) return err(field, 'not a PEM or DER X.509 CRL (BEGIN X509 CRL)');
    const issuer = trusted.find((t) =>
      sameDistinguishedName(
        Buffer.from(new x509.X509Certificate(t.cert.raw).subjectName.toArrayBuffer()),
        crl.issuerDer,
      ),
    );
    if (!issuer)
      return err(
        field,
        `the CRL of ${crl.issuer.split('\n').join(', ')} is not from a trusted CA of this site`,
      );
    if (!crlSignatureValid(crl, issuer.cert))
      return err(field, `the CRL's signature does not verify with the key of CA ${subjectText(issuer.cert)}`);
    for (const e of crl.entries) issuer.revoked.set(e.serial, e.date);
  }
  const certReq = Buffer.concat(
    trusted.map((t) => createHash('sha1').update(spki(t.cert.publicKey)).digest()),
  );
  return { ok: true, value: { certificate, chain, key, trusted, certReq } };
}

// ---------------------------------------------------------------------------------------------------------------
// RFC 7427 AlgorithmIdentifiers (DER), as in its Appendix A

type Hash = 'sha1' | 'sha256' | 'sha384' | 'sha512';

interface SignatureScheme {
  readonly name: string;
  readonly key: 'ec' | 'rsa';
  readonly hash: Hash;
  readonly pss: boolean;
  readonly algorithmId: Buffer;
}

const HASH_OID: Record<Hash, string> = {
  sha1: '06052b0e03021a',
  sha256: '0609608648016503040201',
  sha384: '0609608648016503040202',
  sha512: '0609608648016503040203',
};
const HASH_LENGTH: Record<Hash, number> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };

function der(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  if (body.length > 127) throw new Error('short-form DER only');
  return Buffer.concat([Buffer.of(tag, body.length), body]);
}

/**
 * RFC 4055 RSASSA-PSS-params with MGF1 over the same hash and a salt as long as the hash; peers differ in
 * whether the hash AlgorithmIdentifiers carry NULL parameters and whether the default trailerField is written.
 */
function pssAlgorithmId(hash: Hash, nullParams: boolean, trailer: boolean): Buffer {
  const nul = nullParams ? Buffer.from('0500', 'hex') : Buffer.alloc(0);
  const hashId = der(0x30, Buffer.from(HASH_OID[hash], 'hex'), nul);
  const mgf1 = der(0x30, Buffer.from('06092a864886f70d010108', 'hex'), hashId);
  const params = der(
    0x30,
    der(0xa0, hashId),
    der(0xa1, mgf1),
    der(0xa2, der(0x02, Buffer.of(HASH_LENGTH[hash]))),
    trailer ? der(0xa3, der(0x02, Buffer.of(1))) : Buffer.alloc(0),
  );
  return der(0x30, Buffer.from('06092a864886f70d01010a', 'hex'), params);
}

const RSA_PKCS1: [Hash, string][] = [
  ['sha1', '05'],
  ['sha256', '0b'],
  ['sha384', '0c'],
  ['sha512', '0d'],
];
const ECDSA: [Hash, string][] = [
  ['sha256', '02'],
  ['sha384', '03'],
  ['sha512', '04'],
];

export const SIGNATURE_SCHEMES: readonly SignatureScheme[] = [
  ...ECDSA.map(([hash, b]) => ({
    name: `ecdsa-with-${hash.toUpperCase()}`,
    key: 'ec' as const,
    hash,
    pss: false,
    algorithmId: Buffer.from(`300a06082a8648ce3d0403${b}`, 'hex'),
  })),
  ...RSA_PKCS1.map(([hash, b]) => ({
    name: `${hash}WithRSAEncryption`,
    key: 'rsa' as const,
    hash,
    pss: false,
    algorithmId: Buffer.from(`300d06092a864886f70d0101${b}0500`, 'hex'),
  })),
  ...(['sha256', 'sha384', 'sha512'] as const).flatMap((hash) =>
    [true, false].flatMap((nullParams) =>
      [false, true].map((trailer) => ({
        name: `RSASSA-PSS-${hash.toUpperCase()}`,
        key: 'rsa' as const,
        hash,
        pss: true,
        algorithmId: pssAlgorithmId(hash, nullParams, trailer),
      })),
    ),
  ),
];

const HASH_BY_ID: Record<number, Hash> = {
  [HASH_ALGORITHM.SHA2_256]: 'sha256',
  [HASH_ALGORITHM.SHA2_384]: 'sha384',
  [HASH_ALGORITHM.SHA2_512]: 'sha512',
};

/** The SIGNATURE_HASH_ALGORITHMS notify we send in IKE_SA_INIT (RFC 7427 §4). */
export function hashAlgorithmsNotify(): Payload {
  const data = Buffer.alloc(6);
  data.writeUInt16BE(HASH_ALGORITHM.SHA2_256, 0);
  data.writeUInt16BE(HASH_ALGORITHM.SHA2_384, 2);
  data.writeUInt16BE(HASH_ALGORITHM.SHA2_512, 4);
  return {
    kind: 'notify',
    protocol: 0,
    spi: Buffer.alloc(0),
    notify: NOTIFY.SIGNATURE_HASH_ALGORITHMS,
    data,
  };
}

/** The hash algorithms a peer announced in its IKE_SA_INIT message, or null when it sent none. */
export function peerHashAlgorithms(payloads: readonly Payload[]): number[] | null {
  const n = payloads.find(
    (p): p is Extract<Payload, { kind: 'notify' }> =>
      p.kind === 'notify' && p.notify === NOTIFY.SIGNATURE_HASH_ALGORITHMS,
  );
  if (!n) return null;
  const out: number[] = [];
  for (let i = 0; i + 1 < n.data.length; i += 2) out.push(n.data.readUInt16BE(i));
  return out;
}

/** The CERTREQ payload naming our trusted CAs. */
export function certReqPayload(c: CheckedCertificate): Payload {
  return { kind: 'certreq', encoding: CERT_ENCODING.X509_SIGNATURE, data: c.certReq };
}

/** CERT payloads: our certificate first (§3.6), then the intermediates. */
export function certPayloads(c: CheckedCertificate): Payload[] {
  return [c.certificate, ...c.chain].map((x) => ({
    kind: 'cert' as const,
    encoding: CERT_ENCODING.X509_SIGNATURE,
    data: x.raw,
  }));
}

/** For RFC 4754: the hash and raw signature length that go with an ECDSA key's curve. */
function curveHash(key: KeyObject): { hash: Hash; method: number; length: number } | null {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (curve === 'prime256v1' || curve === 'P-256')
    return { hash: 'sha256', method: AUTH_METHOD.ECDSA_SHA256_P256, length: 64 };
  if (curve === 'secp384r1' || curve === 'P-384')
    return { hash: 'sha384', method: AUTH_METHOD.ECDSA_SHA384_P384, length: 96 };
  if (curve === 'secp521r1' || curve === 'P-521')
    return { hash: 'sha512', method: AUTH_METHOD.ECDSA_SHA512_P521, length: 132 };
  return null;
}

/**
 * Signs `octets` for our AUTH payload. With the peer's SIGNATURE_HASH_ALGORITHMS we use RFC 7427 (method 14),
 * picking the hash that fits the key; without it (§4: method 14 is only for peers that announced it) ECDSA
 * falls back to RFC 4754 and RSA to method 1 (PKCS #1 v1.5 with SHA-1).
 */
export function signAuth(
  c: CheckedCertificate,
  peerHashes: readonly number[] | null,
  octets: Buffer,
): { method: number; data: Buffer } {
  const ec = c.key.asymmetricKeyType === 'ec';
  const curve = ec ? curveHash(c.key) : null;
  const offered = (peerHashes ?? []).map((h) => HASH_BY_ID[h]).filter((h): h is Hash => h !== undefined);
  if (offered.length > 0) {
    const preferred: Hash = curve?.hash ?? 'sha256';
    const hash = offered.includes(preferred) ? preferred : offered[0]!;
    const scheme = SIGNATURE_SCHEMES.find((s) => s.key === (ec ? 'ec' : 'rsa') && s.hash === hash && !s.pss)!;
    const sig = cryptoSign(hash, octets, { key: c.key, dsaEncoding: 'der' });
    return {
      method: AUTH_METHOD.DIGITAL_SIGNATURE,
      data: Buffer.concat([Buffer.of(scheme.algorithmId.length), scheme.algorithmId, sig]),
    };
  }
  if (curve !== null)
    return {
      method: curve.method,
      data: cryptoSign(curve.hash, octets, { key: c.key, dsaEncoding: 'ieee-p1363' }),
    };
  return { method: AUTH_METHOD.RSA_DIGITAL_SIGNATURE, data: cryptoSign('sha1', octets, c.key) };
}

// ---------------------------------------------------------------------------------------------------------------
// The peer

export interface PeerAuthInput {
  /** How the peer is named in messages ("fqdn:gw.example"). */
  readonly peer: string;
  readonly payloads: readonly Payload[];
  readonly idType: number;
  readonly idData: Buffer;
  readonly method: number;
  readonly authData: Buffer;
  /** The octets the peer signed (RFC 7296 §2.15). */
  readonly octets: Buffer;
  readonly now: number;
}

export type PeerVerdict =
  { readonly ok: true; readonly subject: string } | { readonly ok: false; readonly why: string };

/** Steps 1–4 of the file comment: a verdict, never an exception. */
export function verifyPeer(c: CheckedCertificate, p: PeerAuthInput): PeerVerdict {
  try {
    return verifyPeerUnsafe(c, p);
  } catch (error) {
    return { ok: false, why: `peer ${p.peer}: certificate check failed (${(error as Error).message})` };
  }
}

function verifyPeerUnsafe(c: CheckedCertificate, p: PeerAuthInput): PeerVerdict {
  const refuse = (why: string): PeerVerdict => ({ ok: false, why: `peer ${p.peer}: ${why}` });
  if (p.method === AUTH_METHOD.SHARED_KEY_MIC)
    return refuse('used a pre-shared key (AUTH method 2); this site requires a certificate');
  const certs = p.payloads.filter(
    (x): x is Extract<Payload, { kind: 'cert' | 'certreq' }> =>
      x.kind === 'cert' && x.encoding === CERT_ENCODING.X509_SIGNATURE,
  );
  if (certs.length === 0) return refuse('sent no certificate (no CERT payload with an X.509 certificate)');
  if (certs.length > CHAIN_MAX)
    return refuse(`sent ${certs.length} certificates; at most ${CHAIN_MAX} are taken`);
  const leaf = readDer(certs[0]!.data);
  if (leaf === null) return refuse('its certificate is not a DER X.509 certificate');
  const extras: X509Certificate[] = [];
  for (const x of certs.slice(1)) {
    const e = readDer(x.data);
    if (e !== null) extras.push(e);
  }
  const chain = validateChain(c, leaf, extras, p.now);
  if (chain !== null) return refuse(chain);
  const id = matchId(leaf, p.idType, p.idData);
  if (id !== null) return refuse(id);
  const sig = checkSignature(leaf, p.method, p.authData, p.octets);
  if (sig !== null) return refuse(sig);
  return { ok: true, subject: subjectText(leaf) };
}

function validateChain(
  c: CheckedCertificate,
  leaf: X509Certificate,
  extras: readonly X509Certificate[],
  now: number,
): string | null {
  let current = leaf;
  const seen = new Set<string>();
  for (let depth = 0; depth < CHAIN_MAX; depth++) {
    const v = validAt(current, now);
    const what = depth === 0 ? 'certificate' : 'intermediate CA certificate';
    if (v === 'expired') return `${what} ${subjectText(current)} expired (notAfter ${current.validTo})`;
    if (v === 'not-yet-valid')
      return `${what} ${subjectText(current)} is not valid yet (notBefore ${current.validFrom})`;
    seen.add(current.fingerprint256);
    let badSignature: X509Certificate | null = null;
    for (const t of c.trusted) {
      if (!current.checkIssued(t.cert)) continue;
      if (!current.verify(t.cert.publicKey)) {
        badSignature = t.cert;
        continue;
      }
      const tv = validAt(t.cert, now);
      if (tv !== 'ok')
        return `trusted CA ${subjectText(t.cert)} is ${tv === 'expired' ? 'expired' : 'not valid yet'}`;
      const revokedAt = t.revoked.get(serialKey(current.serialNumber));
      if (revokedAt !== undefined)
        return `${depth === 0 ? 'certificate' : 'intermediate CA certificate'} ${subjectText(current)} is revoked (serial ${serialKey(current.serialNumber)}, issuer ${subjectText(t.cert)}, revoked ${revokedAt})`;
      return null;
    }
    const next = extras.find(
      (x) => !seen.has(x.fingerprint256) && current.checkIssued(x) && current.verify(x.publicKey),
    );
    if (next === undefined) {
      if (badSignature !== null)
        return `bad certificate signature: ${subjectText(current)} names ${subjectText(badSignature)} as issuer but its signature does not verify with that CA's key`;
      const named = extras.find((x) => current.checkIssued(x));
      if (named !== undefined)
        return `bad certificate signature: ${subjectText(current)} is not signed by the intermediate ${subjectText(named)} it names`;
      return `untrusted issuer: ${subjectText(current)} was issued by ${issuerText(current)}, which is not a trusted CA of this site${depth === 0 && extras.length === 0 ? ' (and no intermediate certificate was sent)' : ''}`;
    }
    if (!next.ca)
      return `intermediate ${subjectText(next)} is not a CA (basicConstraints CA:FALSE or absent)`;
    current = next;
  }
  return `certificate chain longer than ${CHAIN_MAX}`;
}

/** RFC 4945 §3.1: which names in the certificate an ID may be, and whether the ID is one of them. */
function matchId(leaf: X509Certificate, idType: number, data: Buffer): string | null {
  const parsed = new x509.X509Certificate(leaf.raw);
  const san = parsed.getExtension(x509.SubjectAlternativeNameExtension);
  const names = san?.names.items ?? [];
  const listed = (): string => {
    const all = names.map((n) => `${n.type}:${n.value}`);
    return `subject ${subjectText(leaf)}${all.length > 0 ? `, subjectAltName ${all.join(', ')}` : ', no subjectAltName'}`;
  };
  switch (idType) {
    case ID_TYPE.DER_ASN1_DN: {
      const subject = Buffer.from(parsed.subjectName.toArrayBuffer());
      if (subject.equals(data) || sameDistinguishedName(subject, data)) return null;
      return `ID ${describeDn(data)} is not in its certificate (${listed()})`;
    }
    case ID_TYPE.FQDN: {
      const v = data.toString('latin1').toLowerCase();
      if (names.some((n) => n.type === 'dns' && n.value.toLowerCase() === v)) return null;
      return `ID fqdn:${printable(data)} is not in its certificate (${listed()})`;
    }
    case ID_TYPE.RFC822_ADDR: {
      const v = data.toString('latin1').toLowerCase();
      if (names.some((n) => n.type === 'email' && n.value.toLowerCase() === v)) return null;
      return `ID email:${printable(data)} is not in its certificate (${listed()})`;
    }
    case ID_TYPE.IPV4_ADDR:
    case ID_TYPE.IPV6_ADDR: {
      const family = idType === ID_TYPE.IPV4_ADDR ? 4 : 6;
      const text = data.length === (family === 4 ? 4 : 16) ? formatAddress({ family, bytes: data }) : '?';
      const hit = names.some((n) => {
        if (n.type !== 'ip') return false;
        const a = parseAddress(n.value);
        return a.ok && Buffer.from(a.value.bytes).equals(data);
      });
      if (hit) return null;
      return `ID ipv${family}:${text} is not in its certificate (${listed()})`;
    }
    default:
      return `ID type ${idType} cannot be matched to a certificate (RFC 4945: DN, FQDN, email or IP address)`;
  }
}

function printable(b: Buffer): string {
  return b.toString('latin1').replace(/[^\x20-\x7e]/g, '?');
}

function describeDn(data: Buffer): string {
  try {
    return `dn:${new x509.Name(data).toString()}`;
  } catch {
    return `dn:${data.toString('hex').slice(0, 64)}`;
  }
}

function keyName(leaf: X509Certificate): string {
  const k = leaf.publicKey;
  return k.asymmetricKeyType === 'ec' ? `ECDSA ${k.asymmetricKeyDetails?.namedCurve ?? ''}`.trim() : 'RSA';
}

function checkSignature(leaf: X509Certificate, method: number, data: Buffer, octets: Buffer): string | null {
  const key = leaf.publicKey;
  const kind = key.asymmetricKeyType;
  const bad = `bad signature: AUTH does not verify with the ${keyName(leaf)} key of certificate ${subjectText(leaf)}`;
  switch (method) {
    case AUTH_METHOD.DIGITAL_SIGNATURE: {
      if (data.length < 1) return 'AUTH method 14 without an AlgorithmIdentifier';
      const len = data[0]!;
      if (data.length < 1 + len) return 'AUTH method 14 with a truncated AlgorithmIdentifier';
      const algorithmId = data.subarray(1, 1 + len);
      const sig = data.subarray(1 + len);
      const scheme = SIGNATURE_SCHEMES.find((s) => s.algorithmId.equals(algorithmId));
      if (scheme === undefined)
        return `AUTH signature algorithm ${algorithmId.toString('hex').slice(0, 96)} is not supported (RFC 7427 ECDSA, RSA PKCS #1 v1.5 or RSASSA-PSS)`;
      if (scheme.key !== kind)
        return `AUTH uses ${scheme.name} but certificate ${subjectText(leaf)} has an ${keyName(leaf)} key`;
      const ok = scheme.pss
        ? safeVerify(
            scheme.hash,
            octets,
            {
              key,
              padding: cryptoConstants.RSA_PKCS1_PSS_PADDING,
              saltLength: HASH_LENGTH[scheme.hash],
            },
            sig,
          )
        : safeVerify(scheme.hash, octets, { key, dsaEncoding: 'der' }, sig);
      return ok ? null : `${bad} (${scheme.name})`;
    }
    case AUTH_METHOD.RSA_DIGITAL_SIGNATURE:
      if (kind !== 'rsa')
        return `AUTH method 1 (RSA) but certificate ${subjectText(leaf)} has an ${keyName(leaf)} key`;
      return safeVerify('sha1', octets, { key }, data) ? null : `${bad} (method 1)`;
    case AUTH_METHOD.ECDSA_SHA256_P256:
    case AUTH_METHOD.ECDSA_SHA384_P384:
    case AUTH_METHOD.ECDSA_SHA512_P521: {
      const curve = kind === 'ec' ? curveHash(key) : null;
      if (curve === null || curve.method !== method)
        return `AUTH method ${method} (RFC 4754) does not fit the ${keyName(leaf)} key of certificate ${subjectText(leaf)}`;
      if (data.length !== curve.length) return `${bad} (method ${method}, ${data.length} octets)`;
      return safeVerify(curve.hash, octets, { key, dsaEncoding: 'ieee-p1363' }, data)
        ? null
        : `${bad} (method ${method})`;
    }
    default:
      return `AUTH method ${method} is not supported (digital signature 14, RSA 1, ECDSA 9/10/11)`;
  }
}

function safeVerify(hash: Hash, data: Buffer, key: Parameters<typeof cryptoVerify>[2], sig: Buffer): boolean {
  try {
    return cryptoVerify(hash, data, key, sig);
  } catch {
    return false;
  }
}
