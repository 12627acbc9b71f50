/**
 * IKEv2 certificate authentication (RFC 7427, RFC 4754, RFC 4945) with two cores in one process: the RFC 7427
 * Appendix A AlgorithmIdentifiers; sign/verify in every form we send or take; ECDSA P-256 and RSA-2048
 * certificates from a test CA, an intermediate sent in a second CERT payload, DN and IP IDs; every refusal
 * (untrusted issuer, expired, ID not in the certificate, bad signature, a PSK where a certificate is required,
 * an intermediate that is no CA) ends in AUTHENTICATION_FAILED with a message naming the reason; the
 * configuration checks name their field; hostile CERT, CERTREQ and AUTH bodies never throw.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  constants as cryptoConstants,
  createPrivateKey,
  generateKeyPairSync,
  sign as cryptoSign,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';

import { encodeIdentity, describeIdentity, sameIdentity } from '../../src/ipsec/auth.js';
import {
  checkCertificateConfig,
  SIGNATURE_SCHEMES,
  signAuth,
  verifyPeer,
  type CheckedCertificate,
} from '../../src/ipsec/cert-auth.js';
import type { IkePeerConfig } from '../../src/ipsec/config.js';
import { checkConfig } from '../../src/ipsec/config.js';
import { AUTH_METHOD, EXCHANGE, HASH_ALGORITHM, ID_TYPE, NOTIFY } from '../../src/ipsec/constants.js';
import { IKE_DROP_REASONS } from '../../src/ipsec/drops.js';
import type { IkeKeys } from '../../src/ipsec/keys.js';
import { parseMessage, parsePayloadChain, type Payload } from '../../src/ipsec/messages.js';
import { openFragment, openMessage, sealMessage } from '../../src/ipsec/sk.js';
import { TestPki, type TestCert } from '../support/ike-pki.js';
import { A_ADDR, B_ADDR, makeCore, Pair, siteA, siteB } from './ipsec-pair.js';

const DAY = 86_400_000;

let pki: TestPki;
const c: Record<string, TestCert> = {};

before(() => {
  pki = TestPki.create();
  c.root = pki.root('root');
  c.rsaRoot = pki.root('rsa-root', 'rsa');
  c.stranger = pki.root('stranger');
  c.inter = pki.intermediate('inter', c.root);
  c.notCa = pki.intermediate('not-a-ca', c.root, 'ecdsa', false);
  c.a = pki.leaf('a', c.root, { sans: ['DNS:a.example'] });
  c.b = pki.leaf('b', c.root, { sans: ['DNS:b.example', 'IP:192.0.2.2'] });
  c.rsaA = pki.leaf('rsa-a', c.rsaRoot, { sans: ['DNS:a.example'], kind: 'rsa' });
  c.rsaB = pki.leaf('rsa-b', c.rsaRoot, { sans: ['DNS:b.example'], kind: 'rsa' });
  c.bViaInter = pki.leaf('b-inter', c.inter, { sans: ['DNS:b.example'] });
  c.bViaNotCa = pki.leaf('b-not-ca', c.notCa, { sans: ['DNS:b.example'] });
  c.bStranger = pki.leaf('b-stranger', c.stranger, { sans: ['DNS:a.example', 'DNS:b.example'] });
  c.bDn = pki.leaf('b-dn', c.root, { subject: '/CN=b.example/O=Weft Test' });
  c.bShort = pki.leaf('b-short', c.root, { sans: ['DNS:b.example'], days: 1 });
  c.bOther = pki.leaf('b-other', c.root, { sans: ['DNS:other.example'] });
});

/** CRLs made in the test (RFC 5280 §5): by `signer`'s key, naming `issuer`, listing `revoked`. */
const crls: Record<string, string> = {};
async function makeCrl(issuer: TestCert, revoked: TestCert[], signer: TestCert = issuer): Promise<string> {
  const der = createPrivateKey(signer.key).export({ type: 'pkcs8', format: 'der' });
  const signingKey = await globalThis.crypto.subtle.importKey(
    'pkcs8',
    der,
    { name: 'ECDSA', namedCurve: 'P-256' },
    false,
    ['sign'],
  );
  const crl = await x509.X509CrlGenerator.create({
    issuer: new x509.X509Certificate(issuer.cert).subject,
    thisUpdate: new Date(Date.now() - DAY),
    nextUpdate: new Date(Date.now() + 7 * DAY),
    entries: revoked.map((r) => ({
      serialNumber: new X509Certificate(r.cert).serialNumber.toLowerCase(),
      revocationDate: new Date(Date.now() - 3_600_000),
    })),
    signingKey,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  return crl.toString('pem');
}

before(async () => {
  c.aRevoked = pki.leaf('a-revoked', c.root!, { sans: ['DNS:a.example'] });
  crls.root = await makeCrl(c.root!, [c.aRevoked]);
  crls.rootInter = await makeCrl(c.root!, [c.inter!]);
  crls.stranger = await makeCrl(c.stranger!, [c.aRevoked]);
  crls.forged = await makeCrl(c.root!, [c.a!], c.stranger!);
});

after(() => pki?.cleanup());

function withCrls(config: Partial<IkePeerConfig>, list: (string | Uint8Array)[]): Partial<IkePeerConfig> {
  return { ...config, certificate: { ...config.certificate!, crls: list } };
}

function withCert(leaf: TestCert, trusted: TestCert[], chain: TestCert[] = []): Partial<IkePeerConfig> {
  return {
    psk: undefined,
    certificate: {
      certificate: leaf.cert,
      privateKey: leaf.key,
      trusted: trusted.map((t) => t.cert),
      chain: chain.map((t) => t.cert),
    },
  };
}

/** A pair on the wall clock (certificate validity is checked against `now`). */
function pair(a: Partial<IkePeerConfig>, b: Partial<IkePeerConfig>): Pair {
  const p = Pair.create(a, b);
  p.now = Date.now();
  return p;
}

function up(p: Pair): void {
  for (const side of ['a', 'b'] as const) {
    assert.equal(p.of(side, 'ike-sa-up').length, 1, `${side}: ${JSON.stringify(p.of(side, 'failed'))}`);
    assert.equal(p.of(side, 'child-sa-up').length, 1, `${side}: ${JSON.stringify(p.of(side, 'failed'))}`);
    assert.equal(p.of(side, 'failed').length, 0);
  }
  const sa = p.of('a', 'child-sa-up')[0]!.spec;
  const sb = p.of('b', 'child-sa-up')[0]!.spec;
  assert.equal(sa.inboundSpi, sb.outboundSpi);
  assert.deepEqual(sa.inbound, sb.outbound);
}

/** The plaintext inner payloads of every IKE_AUTH message `side` sent (opened with the SA's keys). */
function authPayloads(p: Pair, side: 'a' | 'b'): Payload[][] {
  const sa = p.core(side).list()[0] ?? null;
  assert.ok(sa, 'an SA to read keys from');
  const keys = Reflect.get(sa, 'keys') as IkeKeys;
  const mine = sa.role === 'initiator' ? keys.initiator : keys.responder;
  const out: Payload[][] = [];
  // RSA messages outgrow the fragment size: put their SKF fragments (RFC 7383) back together.
  const pieces = new Map<number, { first: number; parts: Buffer[] }>();
  for (const s of p.of(side, 'send')) {
    const raw = s.nonEspMarker ? s.data.subarray(4) : s.data;
    const m = parseMessage(raw);
    if (!m.ok || m.value.header.exchange !== EXCHANGE.IKE_AUTH) continue;
    const last = m.value.payloads[m.value.payloads.length - 1];
    if (last?.kind === 'skf') {
      const piece = openFragment(m.value, mine);
      if (!piece.ok) continue;
      const id = m.value.header.messageId;
      const entry = pieces.get(id) ?? { first: 0, parts: [] };
      pieces.set(id, entry);
      if (last.number === 1) entry.first = last.firstInner;
      entry.parts[last.number - 1] = piece.value;
      if (entry.parts.filter((x) => x !== undefined).length === last.total) {
        const content = Buffer.concat(entry.parts);
        const inner = parsePayloadChain(entry.first, content, 0, content.length);
        if (inner.ok) out.push(inner.value);
        pieces.delete(id);
      }
      continue;
    }
    const inner = openMessage(m.value, mine);
    if (inner.ok) out.push(inner.value);
  }
  return out;
}

describe('RFC 7427 signature AlgorithmIdentifiers', () => {
  // RFC 7427 Appendix A.1 (RSA PKCS #1 v1.5) and A.3 (ECDSA), as printed there.
  const published: [string, string][] = [
    ['sha1WithRSAEncryption', '300d06092a864886f70d0101050500'],
    ['sha256WithRSAEncryption', '300d06092a864886f70d01010b0500'],
    ['sha384WithRSAEncryption', '300d06092a864886f70d01010c0500'],
    ['sha512WithRSAEncryption', '300d06092a864886f70d01010d0500'],
    ['ecdsa-with-SHA256', '300a06082a8648ce3d040302'],
    ['ecdsa-with-SHA384', '300a06082a8648ce3d040303'],
    ['ecdsa-with-SHA512', '300a06082a8648ce3d040304'],
  ];
  for (const [name, hex] of published) {
    it(`${name} is ${hex}`, () => {
      const s = SIGNATURE_SCHEMES.find((x) => x.name === name);
      assert.ok(s, name);
      assert.equal(s.algorithmId.toString('hex'), hex);
    });
  }

  it('the same bytes stand in the signatureAlgorithm of certificates OpenSSL signed', () => {
    // TBSCertificate's signature field: after the version, serial and SEQUENCE headers; simplest to search.
    const ec = new X509Certificate(c.a!.cert).raw.toString('hex');
    const rsa = new X509Certificate(c.rsaA!.cert).raw.toString('hex');
    assert.ok(ec.includes('300a06082a8648ce3d040302'));
    assert.ok(rsa.includes('300d06092a864886f70d01010b0500'));
  });

  it('RSASSA-PSS with SHA-256: RFC 4055 parameters, MGF1 with SHA-256, salt 32', () => {
    const s = SIGNATURE_SCHEMES.filter((x) => x.name === 'RSASSA-PSS-SHA256').map((x) =>
      x.algorithmId.toString('hex'),
    );
    assert.ok(
      s.includes(
        '304106092a864886f70d01010a3034a00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120',
      ),
      s.join('\n'),
    );
  });
});

describe('AUTH signatures: each form we send verifies, and what peers send is taken', () => {
  function checked(leaf: TestCert, trusted: TestCert): CheckedCertificate {
    const r = checkCertificateConfig(
      { certificate: leaf.cert, privateKey: leaf.key, trusted: [trusted.cert] },
      Date.now(),
    );
    assert.ok(r.ok, JSON.stringify(!r.ok && r.error));
    return r.value;
  }
  const octets = Buffer.from('RealMessage | Nonce | prf(SK_p, IDbody)');

  function verify(
    mine: CheckedCertificate,
    leaf: TestCert,
    method: number,
    data: Buffer,
    signed = octets,
  ): ReturnType<typeof verifyPeer> {
    const id = encodeIdentity({
      type: 'fqdn',
      value: leaf.name.startsWith('rsa') ? 'a.example' : 'a.example',
    });
    return verifyPeer(mine, {
      peer: 'fqdn:a.example',
      payloads: [{ kind: 'cert', encoding: 4, data: new X509Certificate(leaf.cert).raw }],
      idType: id.idType,
      idData: id.data,
      method,
      authData: data,
      octets: signed,
      now: Date.now(),
    });
  }

  const cases: [string, 'a' | 'rsaA', number[] | null, number, string | null][] = [
    ['ECDSA P-256, peer announced SHA2-256', 'a', [HASH_ALGORITHM.SHA2_256], 14, 'ecdsa-with-SHA256'],
    ['ECDSA P-256, peer announced only SHA2-384', 'a', [HASH_ALGORITHM.SHA2_384], 14, 'ecdsa-with-SHA384'],
    ['ECDSA P-256, peer announced SHA2-512 and SHA-1', 'a', [1, 4], 14, 'ecdsa-with-SHA512'],
    ['ECDSA P-256, no SIGNATURE_HASH_ALGORITHMS: RFC 4754 method 9', 'a', null, 9, null],
    ['RSA-2048, peer announced SHA2-256..512', 'rsaA', [2, 3, 4], 14, 'sha256WithRSAEncryption'],
    ['RSA-2048, no SIGNATURE_HASH_ALGORITHMS: method 1', 'rsaA', null, 1, null],
  ];
  for (const [name, who, hashes, method, scheme] of cases) {
    it(name, () => {
      const root = who === 'a' ? c.root! : c.rsaRoot!;
      const me = checked(c[who]!, root);
      const peer = checked(c.b!, root.name === 'root' ? c.root! : c.rsaRoot!);
      const auth = signAuth(me, hashes, octets);
      assert.equal(auth.method, method);
      if (scheme !== null) {
        const len = auth.data[0]!;
        const id = auth.data.subarray(1, 1 + len);
        assert.equal(SIGNATURE_SCHEMES.find((s) => s.algorithmId.equals(id))?.name, scheme);
      }
      const ok = verify(peer, c[who]!, auth.method, auth.data);
      assert.ok(ok.ok, JSON.stringify(ok));
      const wrong = verify(peer, c[who]!, auth.method, auth.data, Buffer.from('other octets'));
      assert.ok(!wrong.ok);
      assert.match(wrong.why, /bad signature: AUTH does not verify with the (ECDSA prime256v1|RSA) key/);
    });
  }

  it('RSASSA-PSS (method 14) from a peer verifies', () => {
    const peer = checked(c.rsaB!, c.rsaRoot!);
    const key = createPrivateKey(c.rsaA!.key);
    const scheme = SIGNATURE_SCHEMES.find((s) => s.name === 'RSASSA-PSS-SHA256')!;
    const sig = cryptoSign('sha256', octets, {
      key,
      padding: cryptoConstants.RSA_PKCS1_PSS_PADDING,
      saltLength: 32,
    });
    const data = Buffer.concat([Buffer.of(scheme.algorithmId.length), scheme.algorithmId, sig]);
    const r = verify(peer, c.rsaA!, AUTH_METHOD.DIGITAL_SIGNATURE, data);
    assert.ok(r.ok, JSON.stringify(r));
  });

  it('a scheme that does not fit the key and an unknown AlgorithmIdentifier are refused by name', () => {
    const peer = checked(c.b!, c.root!);
    const rsa = SIGNATURE_SCHEMES.find((s) => s.name === 'sha256WithRSAEncryption')!;
    const r1 = verify(peer, c.a!, 14, Buffer.concat([Buffer.of(rsa.algorithmId.length), rsa.algorithmId]));
    assert.ok(!r1.ok);
    assert.match(
      r1.why,
      /AUTH uses sha256WithRSAEncryption but certificate CN=a has an ECDSA prime256v1 key/,
    );
    const r2 = verify(peer, c.a!, 14, Buffer.from('0330010200', 'hex'));
    assert.ok(!r2.ok);
    assert.match(r2.why, /signature algorithm 300102 is not supported/);
    const r3 = verify(peer, c.a!, 10, Buffer.alloc(96));
    assert.ok(!r3.ok);
    assert.match(r3.why, /AUTH method 10 \(RFC 4754\) does not fit/);
  });
});

describe('IKEv2 two cores with certificates', () => {
  it('ECDSA P-256 from one CA: both sides up, method 14 with CERT and CERTREQ on the wire', () => {
    const p = pair(withCert(c.a!, [c.root!]), withCert(c.b!, [c.root!]));
    p.initiate();
    p.run();
    up(p);
    const [req] = authPayloads(p, 'a');
    const [resp] = authPayloads(p, 'b');
    assert.ok(req && resp);
    for (const inner of [req, resp]) {
      const auth = inner.find((x) => x.kind === 'auth');
      assert.equal(auth?.kind === 'auth' && auth.method, AUTH_METHOD.DIGITAL_SIGNATURE);
      const cert = inner.find((x) => x.kind === 'cert');
      assert.equal(cert?.kind === 'cert' && cert.encoding, 4);
    }
    // §3.7: CERTREQ carries the SHA-1 of the trusted CA's SubjectPublicKeyInfo.
    const certreq = req.find((x) => x.kind === 'certreq');
    assert.ok(certreq && certreq.kind === 'certreq');
    assert.equal(certreq.data.length, 20);
    // RFC 7427 §4: both IKE_SA_INIT messages announce the hash algorithms.
    for (const side of ['a', 'b'] as const) {
      const init = parseMessage(p.of(side, 'send')[0]!.data);
      assert.ok(init.ok);
      const n = init.value.payloads.find(
        (x) => x.kind === 'notify' && x.notify === NOTIFY.SIGNATURE_HASH_ALGORITHMS,
      );
      assert.ok(n && n.kind === 'notify');
      assert.equal(n.data.toString('hex'), '000200030004');
    }
    assert.ok(p.of('b', 'send')[0] && parseMessage(p.of('b', 'send')[0]!.data).ok);
    const bInit = parseMessage(p.of('b', 'send')[0]!.data);
    assert.ok(bInit.ok && bInit.value.payloads.some((x) => x.kind === 'certreq'));
  });

  it('ECDSA P-256, the responder initiating (roles swapped)', () => {
    const p = pair(withCert(c.a!, [c.root!]), withCert(c.b!, [c.root!]));
    p.initiate('b');
    p.run();
    up(p);
  });

  for (const side of ['a', 'b'] as const) {
    it(`RSA-2048 from an RSA CA, ${side === 'a' ? 'A' : 'B'} initiating: both sides up`, () => {
      const p = pair(withCert(c.rsaA!, [c.rsaRoot!]), withCert(c.rsaB!, [c.rsaRoot!]));
      p.initiate(side);
      p.run();
      up(p);
      const auth = authPayloads(p, 'a')[0]!.find((x) => x.kind === 'auth');
      assert.ok(auth && auth.kind === 'auth' && auth.method === 14);
      assert.equal(
        auth.data.subarray(1, 1 + auth.data[0]!).toString('hex'),
        '300d06092a864886f70d01010b0500',
      );
    });
  }

  it('mixed: ECDSA on one side, RSA on the other, each trusting the other CA', () => {
    const p = pair(withCert(c.a!, [c.rsaRoot!]), withCert(c.rsaB!, [c.root!]));
    p.initiate();
    p.run();
    up(p);
  });

  it('an intermediate CA sent in a second CERT payload chains to the root', () => {
    const p = pair(withCert(c.a!, [c.root!]), withCert(c.bViaInter!, [c.root!], [c.inter!]));
    p.initiate();
    p.run();
    up(p);
    const certs = authPayloads(p, 'b')[0]!.filter((x) => x.kind === 'cert');
    assert.equal(certs.length, 2);
  });

  it('ID_DER_ASN1_DN: the subject DN as ID, configured as text on the other side', () => {
    const dn = { type: 'der-asn1-dn' as const, value: 'CN=b.example,O=Weft Test' };
    const p = pair(
      { ...withCert(c.a!, [c.root!]), remoteId: dn },
      { ...withCert(c.bDn!, [c.root!]), localId: dn },
    );
    p.initiate();
    p.run();
    up(p);
    assert.equal(p.of('a', 'ike-sa-up')[0]!.peerId, 'dn:CN=b.example, O=Weft Test');
  });

  it('an IPv4 address ID matched to the iPAddress subjectAltName', () => {
    const ip = { type: 'ipv4' as const, value: B_ADDR };
    const p = pair(
      { ...withCert(c.a!, [c.root!]), remoteId: ip },
      { ...withCert(c.b!, [c.root!]), localId: ip },
    );
    p.initiate();
    p.run();
    up(p);
  });

  /** A refusal by the responder B of A's authentication: A is told AUTHENTICATION_FAILED. */
  function refusedByResponder(
    a: Partial<IkePeerConfig>,
    b: Partial<IkePeerConfig>,
    why: RegExp,
    later = 0,
  ): void {
    const p = pair(a, b);
    p.now += later;
    p.initiate();
    p.run();
    const fb = p.of('b', 'failed');
    assert.equal(fb.length, 1, JSON.stringify(p.log.b));
    assert.equal(fb[0]!.failure, 'authentication-failed');
    assert.match(fb[0]!.message, why);
    const fa = p.of('a', 'failed');
    assert.equal(fa[0]?.failure, 'authentication-failed');
    assert.match(
      fa[0]!.message,
      /refused our authentication \(AUTHENTICATION_FAILED\): it does not accept our certificate/,
    );
    assert.equal(p.of('a', 'ike-sa-up').length + p.of('b', 'ike-sa-up').length, 0);
  }

  it('refused: a certificate from a CA this site does not trust (untrusted issuer)', () => {
    refusedByResponder(
      withCert(c.bStranger!, [c.root!]),
      withCert(c.b!, [c.root!]),
      /peer fqdn:a\.example: untrusted issuer: CN=b-stranger was issued by CN=stranger, O=Weft Test, which is not a trusted CA of this site \(and no intermediate certificate was sent\)/,
    );
  });

  it('refused: a certificate its CA revoked (CRL, PEM): AUTHENTICATION_FAILED, serial and issuer named', () => {
    const serial = new X509Certificate(c.aRevoked!.cert).serialNumber.toLowerCase().replace(/^0+/, '');
    refusedByResponder(
      withCert(c.aRevoked!, [c.root!]),
      withCrls(withCert(c.b!, [c.root!]), [crls.root!]),
      new RegExp(
        `peer fqdn:a\\.example: certificate CN=a-revoked is revoked \\(serial ${serial}, issuer CN=root, O=Weft Test, revoked \\d{4}-`,
      ),
    );
  });

  it('a CRL (DER) that lists another certificate: the peer is taken', () => {
    const der = new Uint8Array(new x509.X509Crl(crls.root!).rawData);
    const p = pair(withCert(c.a!, [c.root!]), withCrls(withCert(c.b!, [c.root!]), [der]));
    p.initiate();
    p.run();
    up(p);
  });

  it('refused: an intermediate CA its root revoked (the initiator checks the responder)', () => {
    const p = pair(
      withCrls(withCert(c.a!, [c.root!]), [crls.rootInter!]),
      withCert(c.bViaInter!, [c.root!], [c.inter!]),
    );
    p.initiate();
    p.run();
    const fa = p.of('a', 'failed');
    assert.equal(fa[0]?.failure, 'authentication-failed');
    assert.match(
      fa[0]!.message,
      /intermediate CA certificate CN=inter, O=Weft Test is revoked \(serial [0-9a-f]+, issuer CN=root/,
    );
    assert.equal(p.liveIke('a').length + p.liveIke('b').length, 0);
  });

  it('refused: an expired certificate', () => {
    // Checked when the cores are made (now), then the exchange runs two days later: the 1-day leaf has expired.
    const p = pair(
      { ...withCert(c.bShort!, [c.root!]), localId: { type: 'fqdn', value: 'b.example' } },
      {
        ...withCert(c.b!, [c.root!]),
        remoteId: { type: 'fqdn', value: 'b.example' },
      },
    );
    p.now += 2 * DAY;
    p.initiate();
    p.run();
    const fb = p.of('b', 'failed');
    assert.equal(fb[0]?.failure, 'authentication-failed');
    assert.match(fb[0]!.message, /peer fqdn:b\.example: certificate CN=b-short expired \(notAfter /);
    assert.match(p.of('a', 'failed')[0]!.message, /AUTHENTICATION_FAILED/);
  });

  it('refused: the ID is not in the certificate', () => {
    refusedByResponder(
      withCert(c.bOther!, [c.root!]),
      withCert(c.b!, [c.root!]),
      /peer fqdn:a\.example: ID fqdn:a\.example is not in its certificate \(subject CN=b-other, subjectAltName dns:other\.example\)/,
    );
  });

  it('refused: an intermediate that is not a CA', () => {
    refusedByResponder(
      { ...withCert(c.bViaNotCa!, [c.root!], []), localId: { type: 'fqdn', value: 'b.example' } },
      { ...withCert(c.b!, [c.root!]), remoteId: { type: 'fqdn', value: 'b.example' } },
      /untrusted issuer: CN=b-not-ca was issued by CN=not-a-ca, O=Weft Test/,
    );
    // Our own configuration refuses such an intermediate.
    const bad = checkCertificateConfig(
      {
        certificate: c.bViaNotCa!.cert,
        privateKey: c.bViaNotCa!.key,
        trusted: [c.root!.cert],
        chain: [c.notCa!.cert],
      },
      Date.now(),
    );
    assert.ok(!bad.ok);
    assert.equal(bad.error.field, 'certificate.chain[0]');
    // Sent as an intermediate anyway (another implementation would), it is refused for what it is.
    const mine = checkCertificateConfig(
      { certificate: c.b!.cert, privateKey: c.b!.key, trusted: [c.root!.cert] },
      Date.now(),
    );
    assert.ok(mine.ok);
    const id = encodeIdentity({ type: 'fqdn', value: 'b.example' });
    const v = verifyPeer(mine.value, {
      peer: 'fqdn:b.example',
      payloads: [c.bViaNotCa!, c.notCa!].map((x) => ({
        kind: 'cert' as const,
        encoding: 4,
        data: new X509Certificate(x.cert).raw,
      })),
      idType: id.idType,
      idData: id.data,
      method: 9,
      authData: Buffer.alloc(64),
      octets: Buffer.alloc(1),
      now: Date.now(),
    });
    assert.ok(!v.ok);
    assert.match(v.why, /intermediate CN=not-a-ca, O=Weft Test is not a CA \(basicConstraints/);
  });

  it('refused: a bad signature (the key does not belong to the certificate sent)', () => {
    const p = pair(withCert(c.a!, [c.root!]), withCert(c.b!, [c.root!]));
    const other: KeyObject = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    (p.a.config.certificate as { key: KeyObject }).key = other;
    p.initiate();
    p.run();
    const fb = p.of('b', 'failed');
    assert.equal(fb[0]?.failure, 'authentication-failed');
    assert.match(
      fb[0]!.message,
      /peer fqdn:a\.example: bad signature: AUTH does not verify with the ECDSA prime256v1 key of certificate CN=a \(ecdsa-with-SHA256\)/,
    );
    assert.match(p.of('a', 'failed')[0]!.message, /AUTHENTICATION_FAILED/);
  });

  it('refused: a pre-shared key where this site requires a certificate', () => {
    const p = pair({}, withCert(c.b!, [c.root!]));
    p.initiate();
    p.run();
    assert.match(
      p.of('b', 'failed')[0]!.message,
      /peer fqdn:a\.example: used a pre-shared key \(AUTH method 2\); this site requires a certificate/,
    );
    assert.match(p.of('a', 'failed')[0]!.message, /AUTHENTICATION_FAILED/);
  });

  it("the initiator refuses the responder's certificate: INFORMATIONAL AUTHENTICATION_FAILED, both SAs end", () => {
    const p = pair(withCert(c.a!, [c.root!]), withCert(c.bStranger!, [c.stranger!, c.root!]));
    p.initiate();
    p.run();
    const fa = p.of('a', 'failed');
    assert.equal(fa[0]?.failure, 'authentication-failed');
    assert.match(
      fa[0]!.message,
      /peer fqdn:b\.example: untrusted issuer: CN=b-stranger was issued by CN=stranger/,
    );
    assert.equal(p.of('a', 'ike-sa-up').length, 0);
    // B had the SA up (it authenticated A) and takes it down when told.
    assert.equal(p.of('b', 'ike-sa-up').length, 1);
    assert.equal(p.of('b', 'ike-sa-down').length, 1);
    assert.equal(p.b.list().length, 0);
    // §2.21.2: B learns why from the AUTHENTICATION_FAILED notify, not only that the SA was deleted.
    const fb = p.of('b', 'failed');
    assert.equal(fb[0]?.failure, 'authentication-failed');
    assert.match(
      fb[0]!.message,
      /peer fqdn:a\.example refused our authentication after IKE_AUTH \(INFORMATIONAL AUTHENTICATION_FAILED\): it does not accept our certificate/,
    );
  });
});

describe('certificate configuration checks name the field', () => {
  const now = Date.now();
  const base = (o: Partial<IkePeerConfig>) => checkConfig(siteA({ psk: undefined, ...o }), now);
  const cert = (o: Record<string, unknown>) => ({
    certificate: { certificate: c.a!.cert, privateKey: c.a!.key, trusted: [c.root!.cert], ...o },
  });

  it('a valid certificate configuration is taken; psk may then be absent', () => {
    const r = base(cert({}));
    assert.ok(r.ok);
    assert.ok(r.value.certificate);
  });
  const bad: [string, () => ReturnType<typeof checkConfig>, string, RegExp][] = [
    ['bad PEM', () => base(cert({ certificate: 'nope' })), 'certificate.certificate', /not a PEM X\.509/],
    [
      'bad key PEM',
      () => base(cert({ privateKey: 'nope' })),
      'certificate.privateKey',
      /not a PEM private key/,
    ],
    [
      'key of another certificate',
      () => base(cert({ privateKey: c.b!.key })),
      'certificate.privateKey',
      /does not match certificate CN=a/,
    ],
    [
      'expired certificate',
      () => checkConfig(siteA({ psk: undefined, ...cert({}) }), now + 365 * DAY),
      'certificate.certificate',
      /is expired \(notAfter/,
    ],
    ['no trusted CA', () => base(cert({ trusted: [] })), 'certificate.trusted', /no trusted CA/],
    ['bad trusted PEM', () => base(cert({ trusted: ['x'] })), 'certificate.trusted[0]', /not a PEM/],
    ['psk and certificate', () => checkConfig(siteA(cert({})), now), 'certificate', /either/],
    ['neither', () => base({}), 'psk', /no pre-shared key and no certificate/],
    [
      'a CRL that is none',
      () => base(cert({ crls: ['nope'] })),
      'certificate.crls[0]',
      /not a PEM or DER X\.509 CRL/,
    ],
    [
      'a CRL from a CA the site does not trust',
      () => base(cert({ crls: [crls.root!, crls.stranger!] })),
      'certificate.crls[1]',
      /the CRL of CN=stranger, O=Weft Test is not from a trusted CA/,
    ],
    [
      "a CRL naming a trusted CA but not signed by that CA's key",
      () => base(cert({ crls: [crls.forged!] })),
      'certificate.crls[0]',
      /signature does not verify with the key of CA CN=root/,
    ],
    [
      'a DN that does not parse',
      () => base({ ...cert({}), localId: { type: 'der-asn1-dn', value: 'gw.example' } }),
      'localId',
      /not a distinguished name/,
    ],
  ];
  for (const [name, run, field, message] of bad) {
    it(`refused: ${name}`, () => {
      const r = run();
      assert.ok(!r.ok);
      assert.equal(r.error.field, field);
      assert.match(r.error.message, message);
    });
  }

  it('DN identities: encoded in the order written, compared across string encodings', () => {
    const id = encodeIdentity({ type: 'der-asn1-dn', value: 'CN=gw.example.net,O=Example' });
    assert.equal(id.idType, ID_TYPE.DER_ASN1_DN);
    assert.equal(describeIdentity(id.idType, id.data), 'dn:CN=gw.example.net, O=Example');
    // The subject of an OpenSSL certificate (UTF8String) against the same name typed in (PrintableString).
    const subject = Buffer.from(new x509.X509Certificate(c.bDn!.cert).subjectName.toArrayBuffer());
    assert.notDeepEqual(
      subject,
      encodeIdentity({ type: 'der-asn1-dn', value: 'CN=b.example,O=Weft Test' }).data,
    );
    assert.ok(sameIdentity({ type: 'der-asn1-dn', value: 'CN=b.example,O=Weft Test' }, 9, subject));
    assert.ok(!sameIdentity({ type: 'der-asn1-dn', value: 'CN=c.example,O=Weft Test' }, 9, subject));
  });
});

describe('hostile CERT, CERTREQ and AUTH bodies', () => {
  function xorshift(seed: number): () => number {
    let x = seed >>> 0 || 1;
    return () => {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      return x;
    };
  }

  function mutate(b: Buffer, rnd: () => number): Buffer {
    const below = (n: number) => (n <= 0 ? 0 : rnd() % n);
    let d = Buffer.from(b);
    switch (below(6)) {
      case 0:
        return d.subarray(0, below(d.length + 1));
      case 1:
        return Buffer.concat([d, Buffer.alloc(1 + below(16), rnd() & 0xff)]);
      case 2:
        for (let n = 1 + below(4); n > 0 && d.length > 0; n--) d[below(d.length)]! ^= 1 << below(8);
        return d;
      case 3:
        d = Buffer.alloc(below(300));
        for (let i = 0; i < d.length; i++) d[i] = rnd() & 0xff;
        return d;
      case 4:
        if (d.length > 0) d[0] = rnd() & 0xff;
        return d;
      default:
        if (d.length > 8) d.writeUInt16BE(rnd() & 0xffff, below(d.length - 2));
        return d;
    }
  }

  it('verifyPeer: 10,000 mutated CERT and AUTH bodies, never an exception, only the genuine ones accepted', () => {
    const seed = Number(process.env.WEFT_FUZZ_SEED ?? Date.now() % 0xffffffff);
    const rnd = xorshift(seed);
    const me = checkCertificateConfig(
      { certificate: c.b!.cert, privateKey: c.b!.key, trusted: [c.root!.cert, c.rsaRoot!.cert] },
      Date.now(),
    );
    assert.ok(me.ok);
    const octets = Buffer.from('signed octets');
    const signer = checkCertificateConfig(
      { certificate: c.a!.cert, privateKey: c.a!.key, trusted: [c.root!.cert] },
      Date.now(),
    );
    assert.ok(signer.ok);
    const good = signAuth(signer.value, [2], octets);
    const certs = [c.a!, c.rsaA!, c.bViaInter!, c.inter!].map((x) => new X509Certificate(x.cert).raw);
    const id = encodeIdentity({ type: 'fqdn', value: 'a.example' });
    for (let i = 0; i < 10_000; i++) {
      const n = 1 + (rnd() % 3);
      const payloads: Payload[] = [];
      for (let k = 0; k < n; k++) {
        const base = certs[rnd() % certs.length]!;
        payloads.push({
          kind: 'cert',
          encoding: rnd() % 8 === 0 ? rnd() & 0xff : 4,
          data: mutate(base, rnd),
        });
      }
      const methods = [1, 2, 9, 10, 11, 14, rnd() & 0xff];
      const input = {
        peer: 'fuzz',
        payloads,
        idType: rnd() % 4 === 0 ? rnd() & 0xff : id.idType,
        idData: rnd() % 4 === 0 ? mutate(id.data, rnd) : id.data,
        method: methods[rnd() % methods.length]!,
        authData: mutate(good.data, rnd),
        octets,
        now: Date.now(),
      };
      let verdict;
      try {
        verdict = verifyPeer(me.value, input);
      } catch (error) {
        assert.fail(`seed ${seed} iteration ${i}: threw ${(error as Error).stack}`);
      }
      if (verdict.ok) {
        // Only the genuine leaf, ID and signature (a mutation that changed nothing) may pass.
        const leaf = payloads[0]!;
        assert.ok(
          leaf.kind === 'cert' &&
            leaf.encoding === 4 &&
            leaf.data.equals(certs[0]!) &&
            input.method === 14 &&
            input.authData.equals(good.data) &&
            input.idType === id.idType &&
            input.idData.equals(id.data),
          `seed ${seed} iteration ${i}: accepted a mutated input`,
        );
        continue;
      }
      assert.equal(typeof verdict.why, 'string');
    }
  });

  it('a responder fed 500 IKE_AUTH requests with mutated CERT, CERTREQ and AUTH bodies: one outcome each, never up on a bad one', () => {
    const seed = Number(process.env.WEFT_FUZZ_SEED ?? Date.now() % 0xffffffff);
    const iterations = Number(process.env.WEFT_FUZZ_ITERATIONS_CERT ?? 500);
    const rnd = xorshift(seed);
    const reasons = new Set<string>(IKE_DROP_REASONS);
    const aConf = siteA(withCert(c.a!, [c.root!], [c.inter!]));
    const bConf = siteB(withCert(c.b!, [c.root!]));
    let up = 0;
    let refused = 0;
    for (let i = 0; i < iterations; i++) {
      const p = new Pair(makeCore(aConf, `fa-${seed}-${i}`), makeCore(bConf, `fb-${seed}-${i}`));
      p.now = Date.now();
      let captured: Buffer | null = null;
      p.filter = (d) => {
        const m = parseMessage(d.data);
        if (d.from === 'a' && m.ok && m.value.header.exchange === EXCHANGE.IKE_AUTH) {
          captured = d.data;
          return 'lose';
        }
        return 'deliver';
      };
      p.initiate();
      p.run();
      assert.ok(captured, 'the IKE_AUTH request');
      const raw: Buffer = captured;
      const msg = parseMessage(raw);
      assert.ok(msg.ok);
      const sa = p.a.list()[0]!;
      const keys = (Reflect.get(sa, 'keys') as IkeKeys).initiator;
      const inner = openMessage(msg.value, keys);
      assert.ok(inner.ok);
      let touchedAuthOrLeaf = false;
      let sawCert = false;
      const mutated = inner.value.map((x): Payload => {
        if ((x.kind === 'cert' || x.kind === 'certreq' || x.kind === 'auth') && rnd() % 2 === 0) {
          if (x.kind === 'auth' || (x.kind === 'cert' && !sawCert)) touchedAuthOrLeaf = true;
          if (x.kind === 'cert') sawCert = true;
          if (x.kind === 'auth') {
            const method = rnd() % 4 === 0 ? rnd() & 0xff : x.method;
            if (method !== x.method) touchedAuthOrLeaf = true;
            return { kind: 'auth', method, data: mutate(x.data, rnd) };
          }
          return { ...x, encoding: rnd() % 8 === 0 ? rnd() & 0xff : x.encoding, data: mutate(x.data, rnd) };
        }
        if (x.kind === 'cert') sawCert = true;
        return x;
      });
      const resealed = sealMessage(
        {
          spiI: msg.value.header.spiI,
          spiR: msg.value.header.spiR,
          exchange: EXCHANGE.IKE_AUTH,
          initiator: true,
          response: false,
          messageId: 1,
        },
        mutated,
        keys,
        Buffer.alloc(keys.encr.ivLength, i & 0xff),
      );
      const before = p.b.stats.received;
      const processedBefore = p.b.stats.processed;
      let actions;
      try {
        actions = p.b.receive(
          { data: resealed, remote: { address: A_ADDR, port: 500 }, local: { address: B_ADDR, port: 500 } },
          p.now,
        );
      } catch (error) {
        assert.fail(`seed ${seed} iteration ${i}: receive threw ${(error as Error).stack}`);
      }
      assert.equal(p.b.stats.received, before + 1);
      const drops = actions.filter((x) => x.type === 'drop');
      assert.equal(drops.length + (p.b.stats.processed - processedBefore), 1, `seed ${seed} iteration ${i}`);
      for (const d of drops) assert.ok(d.type === 'drop' && reasons.has(d.reason));
      if (actions.some((x) => x.type === 'ike-sa-up')) {
        up++;
        // Only when the leaf CERT and AUTH were left as they were could the peer still be accepted.
        assert.ok(
          !touchedAuthOrLeaf || mutatedHarmlessly(inner.value, mutated),
          `seed ${seed} iteration ${i}`,
        );
      } else if (actions.some((x) => x.type === 'failed')) refused++;
    }
    process.stdout.write(`# seed ${seed}: ${iterations} IKE_AUTH requests, ${up} up, ${refused} refused\n`);
    assert.ok(refused > 0);
  });
});

/** The leaf CERT (first CERT payload) and AUTH are byte-identical to the genuine ones. */
function mutatedHarmlessly(orig: readonly Payload[], mutated: readonly Payload[]): boolean {
  const leaf = (x: readonly Payload[]) => x.find((p) => p.kind === 'cert');
  const auth = (x: readonly Payload[]) => x.find((p) => p.kind === 'auth');
  const same = (a: Payload | undefined, b: Payload | undefined) =>
    a !== undefined && b !== undefined && JSON.stringify(a) === JSON.stringify(b);
  return same(leaf(orig), leaf(mutated)) && same(auth(orig), auth(mutated));
}
