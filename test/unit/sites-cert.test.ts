/**
 * Certificate sites in the control plane: our certificate (and chain), its private key and the CAs trusted for
 * the peer, checked by the IKE core's own certificate check; the key kept like the pre-shared key (never in a
 * view, an audit entry or an export without --include-secrets); the spec the gateway runs; switching between
 * PSK and certificates; the swanctl text for the far end; the state file round trip.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { ControlPlane } from '../../src/control/control-plane.js';
import { applyState, exportState, formatStateYaml, parseStateYaml } from '../../src/control/desired-state.js';
import { WeftError } from '../../src/control/errors.js';
import { renderRemoteConfig } from '../../src/control/site-remote-config.js';
import type { SiteInput } from '../../src/control/sites.js';
import { TestPki, type TestCert } from '../support/ike-pki.js';
import { openMemoryStore } from '../support/memory-store.js';

function plane(): { cp: ControlPlane; store: ReturnType<typeof openMemoryStore> } {
  const store = openMemoryStore();
  ControlPlane.init(store, { endpoint: '203.0.113.1', subnet: '10.66.0.0/24', subnet6: 'fd66::/64' });
  const cp = new ControlPlane(store, () => new Date());
  return { cp, store };
}

function refusal(fn: () => unknown): { field: string | undefined; message: string } {
  try {
    fn();
  } catch (e) {
    if (e instanceof WeftError) return { field: e.field, message: e.message };
    throw e;
  }
  assert.fail('expected a WeftError');
}

describe('certificate sites', () => {
  let pki: TestPki;
  const c: Record<string, TestCert> = {};
  let base: SiteInput;

  before(() => {
    pki = TestPki.create('weft-site-cert-');
    c.root = pki.root('site-root');
    c.inter = pki.intermediate('site-inter', c.root);
    c.weft = pki.leaf('weft-gw', c.inter, { sans: ['DNS:gw.example.net'] });
    c.other = pki.leaf('other', c.root, { sans: ['DNS:other.example'] });
    c.stranger = pki.root('stranger');
    base = {
      name: 'hq',
      remoteAddress: '198.51.100.20',
      localId: 'fqdn:gw.example.net',
      remoteId: 'fqdn:fw.example.org',
      certificate: c.weft!.cert + c.inter!.cert,
      privateKey: c.weft!.key,
      caCertificates: c.root!.cert,
      localSubnets: ['10.66.0.0/24'],
      remoteSubnets: ['10.20.0.0/16'],
    };
  });
  after(() => pki?.cleanup());

  it('add: auth cert from the certificate alone; no key generated; the key never in the view or audit', () => {
    const { cp, store } = plane();
    const { site, generatedPsk } = cp.addSite('cli:root', base);
    assert.equal(generatedPsk, null);
    assert.equal(site.auth, 'cert');
    assert.equal('privateKey' in site, false);
    assert.equal('psk' in site, false);
    assert.equal(site.certificate, c.weft!.cert + c.inter!.cert);
    const audit = JSON.stringify(store.listAudit({ limit: 1 }));
    assert.ok(!audit.includes('PRIVATE KEY'), 'the audit log never holds the key');
    assert.equal(store.getSite('hq')?.privateKey, c.weft!.key);
    assert.equal(store.getSite('hq')?.psk, '');

    const [spec] = cp.siteSpecs();
    assert.ok(spec?.certificate);
    assert.equal(spec.certificate.certificate.trim(), c.weft!.cert.trim());
    assert.deepEqual(
      spec.certificate.chain?.map((x) => x.trim()),
      [c.inter!.cert.trim()],
    );
    assert.deepEqual(
      spec.certificate.trusted.map((x) => x.trim()),
      [c.root!.cert.trim()],
    );
  });

  it('each refusal names its field', () => {
    const { cp } = plane();
    const cases: [Partial<SiteInput>, string, RegExp][] = [
      [{ privateKey: undefined }, 'privateKey', /required for a certificate site/],
      [{ caCertificates: undefined }, 'caCertificates', /required/],
      [{ certificate: 'not pem' }, 'certificate', /no PEM certificate/],
      [{ privateKey: 'not pem' }, 'privateKey', /no PEM private key/],
      [{ privateKey: c.other!.key }, 'privateKey', /does not match certificate/],
      [{ caCertificates: 'junk' }, 'caCertificates', /no PEM certificate/],
      [{ auth: 'rsa' }, 'auth', /psk, cert/],
      [{ auth: 'cert', certificate: undefined }, 'certificate', /required/],
    ];
    for (const [patch, field, message] of cases) {
      const r = refusal(() => cp.addSite('test', { ...base, ...patch }));
      assert.equal(r.field, field, JSON.stringify(patch));
      assert.match(r.message, message);
    }
  });

  it('set: a PSK site becomes a certificate site and back; the swap needs a new key', () => {
    const { cp, store } = plane();
    cp.addSite('test', {
      ...base,
      auth: undefined,
      certificate: undefined,
      privateKey: undefined,
      caCertificates: undefined,
      psk: 'a-pre-shared-key-long-enough',
    });
    assert.equal(store.getSite('hq')?.auth, 'psk');
    cp.updateSite('test', 'hq', {
      certificate: base.certificate,
      privateKey: base.privateKey,
      caCertificates: base.caCertificates,
    });
    const asCert = store.getSite('hq')!;
    assert.equal(asCert.auth, 'cert');
    assert.equal(asCert.psk, '');
    const audit = store.listAudit({ limit: 1 })[0]!;
    assert.equal((audit.detail as Record<string, unknown>).privateKey, '(changed)');
    // Another field changes; the key and certificate stay.
    cp.updateSite('test', 'hq', { dpdIntervalSec: 60 });
    assert.equal(store.getSite('hq')?.privateKey, c.weft!.key);
    assert.equal(refusal(() => cp.updateSite('test', 'hq', { auth: 'psk' })).field, 'psk');
    cp.updateSite('test', 'hq', { auth: 'psk', psk: 'another-key-long-enough-1' });
    const back = store.getSite('hq')!;
    assert.equal(back.auth, 'psk');
    assert.equal(back.certificate, null);
    assert.equal(back.privateKey, null);
  });

  it('--remote-config swanctl: pubkey both ways, the CA names, no secrets section', () => {
    const { cp, store } = plane();
    cp.addSite('test', base);
    const text = renderRemoteConfig(store.getSite('hq')!, 'swanctl', { host: '203.0.113.1' });
    assert.match(text, /local \{\n\s+auth = pubkey\n\s+certs = weft-hq\.crt\n\s+id = fqdn:fw\.example\.org/);
    assert.match(text, /remote \{\n\s+auth = pubkey\n\s+id = fqdn:gw\.example\.net/);
    assert.match(text, /x509ca\/ must hold "CN=site-inter, O=Weft Test"/);
    assert.match(text, /issued by a CA Weft trusts: "CN=site-root, O=Weft Test"/);
    assert.doesNotMatch(text, /secrets|PRIVATE/);
    const aws = renderRemoteConfig(store.getSite('hq')!, 'aws', { host: '203.0.113.1' });
    assert.match(aws, /^! This site authenticates with certificates/);
  });

  it('state file: the key only with --include-secrets; applying the export keeps it; a fresh network needs it', () => {
    const { cp } = plane();
    cp.addSite('test', base);
    const plain = exportState(cp);
    const site = plain.sites?.[0];
    assert.equal(site?.auth, 'cert');
    assert.equal(site?.privateKey, undefined);
    assert.ok(site?.certificate?.includes('BEGIN CERTIFICATE'));
    assert.ok(!formatStateYaml(plain).includes('PRIVATE KEY'));
    const full = exportState(cp, { includeSecrets: true });
    assert.equal(full.sites?.[0]?.privateKey, c.weft!.key);

    // Applying the plain export to the same network changes nothing and keeps the key.
    const again = applyState(cp, 'test', parseStateYaml(formatStateYaml(plain)));
    assert.deepEqual(
      again.filter((x) => x.kind === 'site'),
      [],
    );
    assert.equal(cp.store.getSite('hq')?.privateKey, c.weft!.key);

    // A fresh network takes the full export, and refuses the plain one by field.
    const other = plane().cp;
    applyState(other, 'test', parseStateYaml(formatStateYaml(full)));
    assert.equal(other.store.getSite('hq')?.privateKey, c.weft!.key);
    const fresh = plane().cp;
    assert.throws(
      () => applyState(fresh, 'test', parseStateYaml(formatStateYaml(plain))),
      (e: unknown) => e instanceof WeftError && /privateKey/.test(e.message),
    );
  });
});
