/**
 * Weft's certificate authority for OpenVPN: the CA, the gateway's server certificate, member credentials, the
 * revocation list, and the lookups the OpenVPN server makes to turn a certificate or a tls-crypt-v2 client key
 * into a member.
 *
 * What lives where:
 *   - secrets (store.getSecret): the CA key and certificate, the server key and certificate, the tls-crypt-v2
 *     server key (all PEM). The store file is 0600 (store-sqlite.ts); nothing here prints them.
 *   - openvpn_credentials: per member its current ECDSA P-256 key, certificate and tls-crypt-v2 client key.
 *   - openvpn_revocations: what `member rotate` and `member remove` revoked; the CRL is made from it on demand.
 *
 * Every key is ECDSA P-256 (RFC 5480), every signature ECDSA with SHA-256 (RFC 5758 section 3.2).
 *
 * Issuing signs with WebCrypto (asynchronous), so it happens before or after a store transaction, never
 * inside one: `ensureOpenVpnPki` and `ensureMemberCredential` are async. The lookups the server makes per
 * connection read the store and check a signature with node:crypto, synchronously, as the Store is.
 *
 * Member credentials are issued lazily: when a member's OpenVPN profile is first asked for (CLI, API, one-time
 * link, client pack), not when the member is added. A member that only ever uses WireGuard has no certificate
 * that could leak; `member rotate` revokes the current credentials and issues new ones at once.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import {
  decodeMetadata,
  generateClientKey,
  parseServerKey,
  TlsCryptV2ServerKey,
  type Metadata,
} from '../openvpn/tls-crypt-v2.js';
import { invalid, WeftError } from './errors.js';
import {
  OPENVPN_DEFAULTS,
  type MemberRecord,
  type OpenVpnCredential,
  type OpenVpnRevocation,
  type OpenVpnSettings,
} from './model.js';
import type { Store } from './store.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** Names of the PKI's entries in the store's secrets table. */
export const PKI_SECRETS = {
  caKey: 'openvpn.ca.key',
  caCertificate: 'openvpn.ca.certificate',
  serverKey: 'openvpn.server.key',
  serverCertificate: 'openvpn.server.certificate',
  tlsCryptV2ServerKey: 'openvpn.tls-crypt-v2.server-key',
} as const;

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** The CA outlives many server and member certificates; replacing it means handing out every profile again. */
const CA_DAYS = 3650;
/** The gateway's certificate; the longest lifetime browsers' baseline allowed, as for member certificates. */
const SERVER_CERT_DAYS = 825;
/** A server certificate with less than this left is renewed by the next `ensureOpenVpnPki`. */
const SERVER_RENEW_BEFORE_DAYS = 30;
/** notBefore is set this far in the past, so a client whose clock is a little behind still accepts it. */
const BACKDATE_MS = 3_600_000;
/** How long a CRL made by `openVpnCrl` is valid (its nextUpdate): an OpenSSL verifier refuses every
 * certificate once the CRL it was given has passed its nextUpdate, so a server reading the CRL from a file
 * must fetch a new one before then. */
const CRL_DAYS = 30;
/**
 * tls-crypt-v2 metadata of a Weft client key: type 0x00 (user data, tls_crypt.h TLS_CRYPT_METADATA_TYPE_USER)
 * then "WFT1" and the 16-byte client key id. The id is random: the metadata travels in the clear to nobody
 * (it is inside WKc, encrypted with the server key), but a random id still tells nothing about the member.
 */
const METADATA_MAGIC = Buffer.from('WFT1', 'ascii');
const CLIENT_KEY_ID_LENGTH = 16;

// ---------------------------------------------------------------------------------------------------------
// Helpers

function pemOf(kind: 'PRIVATE KEY' | 'X509 CRL', der: ArrayBuffer): string {
  return x509.PemConverter.encode(der, kind) + '\n';
}

async function generateKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function exportPrivateKey(key: CryptoKey): Promise<string> {
  return pemOf('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', key));
}

async function importPrivateKey(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem);
  return (await webcrypto.subtle.importKey('pkcs8', der, KEY_ALGORITHM, false, ['sign'])) as CryptoKey;
}

/** A positive 128-bit serial number (RFC 5280 section 4.1.2.2: at most 20 octets, positive), lowercase hex. */
function newSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString('hex');
}

/** Serial numbers as this module compares them: lowercase hex, no leading zero octets. */
export function normalizeSerial(hex: string): string {
  return hex.toLowerCase().replace(/^(?:00)+(?=[0-9a-f]{2})/, '');
}

/** A DN attribute value: RFC 4514 escaping of the few characters a member name could hold. */
function cn(value: string): string {
  return `CN=${value.replace(/([,+"\\<>;=])/g, '\\$1')}`;
}

function pemCertificate(cert: x509.X509Certificate): string {
  return cert.toString('pem') + '\n';
}

/** What openVpnServerCredentials gives the server, all from the store. */
export interface OpenVpnServerCredentials {
  /** The CA certificate (PEM): what member certificates chain to (`--ca`). */
  readonly ca: string;
  /** The gateway's certificate (PEM), serverAuth, CN = `serverName` (`--cert`). */
  readonly certificate: string;
  /** Its ECDSA P-256 key (PEM, PKCS #8) (`--key`). Secret. */
  readonly privateKey: string;
  /** The tls-crypt-v2 server key, parsed; `.toPem()` gives openvpn's file (`--tls-crypt-v2`). Secret. */
  readonly tlsCryptV2ServerKey: TlsCryptV2ServerKey;
  /** The server certificate's CN: what profiles pin with `verify-x509-name NAME name`. */
  readonly serverName: string;
}

interface CaMaterial {
  readonly certificate: x509.X509Certificate;
  readonly signingKey: CryptoKey;
}

async function loadCa(store: Store): Promise<CaMaterial> {
  const certPem = store.getSecret(PKI_SECRETS.caCertificate);
  const keyPem = store.getSecret(PKI_SECRETS.caKey);
  if (certPem === undefined || keyPem === undefined)
    throw new WeftError('WEFT_ERR_NOT_INITIALIZED', "Weft's certificate authority has not been created yet");
  return { certificate: new x509.X509Certificate(certPem), signingKey: await importPrivateKey(keyPem) };
}

async function leafExtensions(
  ca: CaMaterial,
  publicKey: CryptoKey,
  usage: 'serverAuth' | 'clientAuth',
): Promise<x509.Extension[]> {
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(
      [usage === 'serverAuth' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth],
      false,
    ),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(ca.certificate),
  ];
}

async function issueLeaf(
  ca: CaMaterial,
  subject: string,
  usage: 'serverAuth' | 'clientAuth',
  notBefore: Date,
  notAfter: Date,
): Promise<{ serial: string; certificate: string; privateKey: string }> {
  const keys = await generateKeyPair();
  const serial = newSerial();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: cn(subject),
    issuer: ca.certificate.subject,
    notBefore,
    notAfter,
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: ca.signingKey,
    extensions: await leafExtensions(ca, keys.publicKey, usage),
  });
  return { serial, certificate: pemCertificate(cert), privateKey: await exportPrivateKey(keys.privateKey) };
}

// ---------------------------------------------------------------------------------------------------------
// The CA and the server's credentials

export interface EnsureResult {
  /** The CA was made now (a new store, or one from before OpenVPN). */
  readonly createdCa: boolean;
  /** The server certificate was issued now: first time, close to expiry, or the server name changed. */
  readonly issuedServerCertificate: boolean;
}

/**
 * Makes whatever of the PKI is missing: the CA, the tls-crypt-v2 server key, the gateway's server certificate
 * (also renewed when it has less than 30 days left or `serverName` is not its CN). Idempotent; two processes
 * racing both sign, and the first write of each secret wins (the loser's is discarded in its transaction).
 * `serverName` is the host members dial (the endpoint's host).
 */
export async function ensureOpenVpnPki(
  store: Store,
  serverName: string,
  now: Date = new Date(),
): Promise<EnsureResult> {
  let createdCa = false;
  if (store.getSecret(PKI_SECRETS.caCertificate) === undefined) {
    const keys = await generateKeyPair();
    const name = `Weft CA ${randomBytes(4).toString('hex')}`;
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: newSerial(),
      name: cn(name),
      notBefore: new Date(now.getTime() - BACKDATE_MS),
      notAfter: new Date(now.getTime() + CA_DAYS * DAY_MS),
      signingAlgorithm: SIGNING_ALGORITHM,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const keyPem = await exportPrivateKey(keys.privateKey);
    createdCa = store.transaction(() => {
      if (store.getSecret(PKI_SECRETS.caCertificate) !== undefined) return false;
      store.putSecret(PKI_SECRETS.caKey, keyPem);
      store.putSecret(PKI_SECRETS.caCertificate, pemCertificate(cert));
      return true;
    });
  }
  store.transaction(() => {
    if (store.getSecret(PKI_SECRETS.tlsCryptV2ServerKey) === undefined)
      store.putSecret(PKI_SECRETS.tlsCryptV2ServerKey, TlsCryptV2ServerKey.generate().toPem());
  });

  const current = store.getSecret(PKI_SECRETS.serverCertificate);
  const currentCert = current === undefined ? undefined : new X509Certificate(current);
  const ca = store.getSecret(PKI_SECRETS.caCertificate)!;
  const renew =
    currentCert === undefined ||
    Date.parse(currentCert.validTo) - now.getTime() < SERVER_RENEW_BEFORE_DAYS * DAY_MS ||
    commonName(currentCert) !== serverName ||
    // A server certificate from a CA that was replaced (a restored backup of secrets) is useless.
    !currentCert.checkIssued(new X509Certificate(ca));
  if (!renew) return { createdCa, issuedServerCertificate: false };
  const issued = await issueLeaf(
    await loadCa(store),
    serverName,
    'serverAuth',
    new Date(now.getTime() - BACKDATE_MS),
    new Date(now.getTime() + SERVER_CERT_DAYS * DAY_MS),
  );
  store.transaction(() => {
    // Another process may have renewed it meanwhile; either certificate is good, keep the one written last.
    store.putSecret(PKI_SECRETS.serverKey, issued.privateKey);
    store.putSecret(PKI_SECRETS.serverCertificate, issued.certificate);
  });
  return { createdCa, issuedServerCertificate: true };
}

function commonName(cert: X509Certificate): string | undefined {
  for (const line of cert.subject.split('\n')) if (line.startsWith('CN=')) return line.slice(3);
  return undefined;
}

/**
 * What the OpenVPN server needs from the store to listen: CA, server certificate and key, tls-crypt-v2 server
 * key. Synchronous, like the Store; throws WEFT_ERR_NOT_INITIALIZED until `ensureOpenVpnPki` has run (the
 * server runs it at start, `weft server init` when creating the store).
 */
export function openVpnServerCredentials(store: Store): OpenVpnServerCredentials {
  const ca = store.getSecret(PKI_SECRETS.caCertificate);
  const certificate = store.getSecret(PKI_SECRETS.serverCertificate);
  const privateKey = store.getSecret(PKI_SECRETS.serverKey);
  const tlsCrypt = store.getSecret(PKI_SECRETS.tlsCryptV2ServerKey);
  if (ca === undefined || certificate === undefined || privateKey === undefined || tlsCrypt === undefined)
    throw new WeftError('WEFT_ERR_NOT_INITIALIZED', 'the OpenVPN credentials have not been created yet');
  const parsed = parseServerKey(tlsCrypt);
  if (!parsed.ok)
    throw new WeftError(
      'WEFT_ERR_INTERNAL',
      `the stored tls-crypt-v2 server key is damaged (${parsed.error})`,
    );
  return {
    ca,
    certificate,
    privateKey,
    tlsCryptV2ServerKey: parsed.key,
    serverName: commonName(new X509Certificate(certificate)) ?? '',
  };
}

// ---------------------------------------------------------------------------------------------------------
// Member credentials

/** When a member's certificate ends: its expiry when it has one, else `certificateDays` from now. */
function memberNotAfter(member: MemberRecord, settings: OpenVpnSettings, now: Date): Date {
  const byDefault = now.getTime() + settings.certificateDays * DAY_MS;
  if (member.expiresAt === null) return new Date(byDefault);
  const expiry = Date.parse(member.expiresAt);
  if (expiry <= now.getTime())
    throw invalid(
      'expiresAt',
      `member ${member.name} has expired; extend its expiry before issuing credentials`,
    );
  return new Date(Math.min(expiry, byDefault));
}

/**
 * The member's current credentials, issuing them first when it has none or they have expired. The PKI must
 * exist (ensureOpenVpnPki). Two processes racing: both sign, the first write wins and both return it.
 */
export async function ensureMemberCredential(
  store: Store,
  name: string,
  settings: OpenVpnSettings = OPENVPN_DEFAULTS,
  now: Date = new Date(),
): Promise<OpenVpnCredential> {
  const existing = store.getOpenVpnCredential(name);
  if (existing !== undefined && Date.parse(existing.notAfter) > now.getTime()) return existing;
  const member = store.getMember(name);
  if (member === undefined)
    throw new WeftError('WEFT_ERR_MEMBER_NOT_FOUND', `member ${name} does not exist`, 'name');
  const ca = await loadCa(store);
  const server = openVpnServerCredentials(store);
  const leaf = await issueLeaf(
    ca,
    member.name,
    'clientAuth',
    new Date(now.getTime() - BACKDATE_MS),
    memberNotAfter(member, settings, now),
  );
  const clientKeyId = randomBytes(CLIENT_KEY_ID_LENGTH);
  const clientKey = generateClientKey(server.tlsCryptV2ServerKey, {
    type: 'user',
    data: new Uint8Array(Buffer.concat([METADATA_MAGIC, clientKeyId])),
  });
  const credential: OpenVpnCredential = {
    name: member.name,
    serial: leaf.serial,
    clientKeyId: clientKeyId.toString('hex'),
    certificate: leaf.certificate,
    privateKey: leaf.privateKey,
    tlsCryptV2Key: clientKey.pem,
    notAfter: new Date(new X509Certificate(leaf.certificate).validTo).toISOString(),
    issuedAt: now.toISOString(),
  };
  return store.transaction(() => {
    const stale = store.getOpenVpnCredential(name);
    if (stale !== undefined && Date.parse(stale.notAfter) <= now.getTime())
      store.revokeOpenVpnCredential(name, now.toISOString(), 'rotated');
    if (store.putOpenVpnCredential(credential)) return credential;
    return store.getOpenVpnCredential(name)!;
  });
}

/** The CRL of every revoked member certificate (PEM), signed by the CA, valid for 30 days from `now`. */
export async function openVpnCrl(store: Store, now: Date = new Date()): Promise<string> {
  const ca = await loadCa(store);
  const crl = await x509.X509CrlGenerator.create({
    issuer: ca.certificate.subject,
    thisUpdate: now,
    nextUpdate: new Date(now.getTime() + CRL_DAYS * DAY_MS),
    signingAlgorithm: SIGNING_ALGORITHM,
    signingKey: ca.signingKey,
    extensions: [await x509.AuthorityKeyIdentifierExtension.create(ca.certificate)],
    entries: store.allOpenVpnRevocations().map((r) => ({
      serialNumber: r.serial,
      revocationDate: new Date(r.revokedAt),
      reason:
        r.reason === 'rotated' ? x509.X509CrlReason.superseded : x509.X509CrlReason.cessationOfOperation,
    })),
  });
  // OpenSSL reads a CRL under the PEM label "X509 CRL" (RFC 7468 section 9), not the library's "CRL".
  return x509.PemConverter.encode(crl.rawData, 'X509 CRL') + '\n';
}

// ---------------------------------------------------------------------------------------------------------
// Lookups for the server

/** Why a certificate or client key admits nobody. */
export type MemberRefusal =
  /** Not from Weft's CA, not a Weft client key, or unknown to the store. */
  | 'unknown'
  /** Revoked by `member rotate` or `member remove`. */
  | 'revoked'
  | 'disabled'
  /** The member's expiry (or the certificate's notAfter) has passed. */
  | 'expired';

export type MemberLookup =
  | { readonly ok: true; readonly member: MemberRecord }
  | {
      readonly ok: false;
      readonly refusal: MemberRefusal;
      /** The member the credential was issued to, when known (for the log). */
      readonly name?: string;
    };

function admit(
  store: Store,
  credential: OpenVpnCredential | undefined,
  revocation: OpenVpnRevocation | undefined,
  now: Date,
): MemberLookup {
  if (credential === undefined)
    return revocation === undefined
      ? { ok: false, refusal: 'unknown' }
      : { ok: false, refusal: 'revoked', name: revocation.name };
  const member = store.getMember(credential.name);
  if (member === undefined) return { ok: false, refusal: 'unknown', name: credential.name };
  if (member.disabled) return { ok: false, refusal: 'disabled', name: member.name };
  if (
    (member.expiresAt !== null && Date.parse(member.expiresAt) <= now.getTime()) ||
    Date.parse(credential.notAfter) <= now.getTime()
  )
    return { ok: false, refusal: 'expired', name: member.name };
  return { ok: true, member };
}

/** The CA certificate, parsed once per PEM (the server checks every handshake against it). */
let caCache: { readonly pem: string; readonly cert: X509Certificate } | undefined;
function parsedCa(pem: string): X509Certificate {
  if (caCache?.pem !== pem) caCache = { pem, cert: new X509Certificate(pem) };
  return caCache.cert;
}

/**
 * The member a client certificate (as the TLS handshake presented it, already chain-checked or not) belongs
 * to. The certificate must be signed by Weft's CA and be the member's current one (same serial and same
 * bytes); a revoked one is 'revoked' even after its member was removed.
 */
export function memberForCertificate(
  store: Store,
  cert: X509Certificate | string | Uint8Array,
  now: Date = new Date(),
): MemberLookup {
  let parsed: X509Certificate;
  try {
    parsed = cert instanceof X509Certificate ? cert : new X509Certificate(cert);
  } catch {
    return { ok: false, refusal: 'unknown' };
  }
  const caPem = store.getSecret(PKI_SECRETS.caCertificate);
  if (caPem === undefined) return { ok: false, refusal: 'unknown' };
  const ca = parsedCa(caPem);
  if (!parsed.checkIssued(ca) || !parsed.verify(ca.publicKey)) return { ok: false, refusal: 'unknown' };
  const serial = normalizeSerial(parsed.serialNumber);
  const credential = store.findOpenVpnCredential({ serial });
  if (credential !== undefined && !new X509Certificate(credential.certificate).raw.equals(parsed.raw))
    return { ok: false, refusal: 'unknown' };
  return admit(store, credential, store.findOpenVpnRevocation({ serial }), now);
}

/** The client key id in a Weft client key's metadata, or undefined when it is not one. */
export function clientKeyIdOf(metadata: Metadata | Uint8Array): string | undefined {
  const m = metadata instanceof Uint8Array ? decodeMetadata(metadata) : metadata;
  if (m.type !== 'user' || m.data.length !== METADATA_MAGIC.length + CLIENT_KEY_ID_LENGTH) return undefined;
  if (!Buffer.from(m.data.subarray(0, METADATA_MAGIC.length)).equals(METADATA_MAGIC)) return undefined;
  return Buffer.from(m.data.subarray(METADATA_MAGIC.length)).toString('hex');
}

/**
 * The member a tls-crypt-v2 client key belongs to, from the metadata the server unwrapped from WKc
 * (UnwrappedClientKey.metadata, raw, or decoded): lets the server drop a disabled, removed or revoked
 * member's packets before any TLS.
 */
export function memberForClientKeyMetadata(
  store: Store,
  metadata: Metadata | Uint8Array,
  now: Date = new Date(),
): MemberLookup {
  const clientKeyId = clientKeyIdOf(metadata);
  if (clientKeyId === undefined) return { ok: false, refusal: 'unknown' };
  return admit(
    store,
    store.findOpenVpnCredential({ clientKeyId }),
    store.findOpenVpnRevocation({ clientKeyId }),
    now,
  );
}
