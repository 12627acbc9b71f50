/**
 * Weft's CA (src/control/pki.ts) through the control plane: the chain checked with node:crypto and with
 * `openssl verify`, the certificates' fields, expiry, revocation (the CRL read by `openssl crl` and used by
 * `openssl verify -crl_check`), rotation of either protocol, removal, the server's lookups, settings
 * validation naming the field, the profile's content, the state file round trip, and a store migrated from
 * schema version 3. Runs against both Store implementations where no file is needed.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, test } from 'node:test';
import Database from 'better-sqlite3';
import { ControlPlane } from '../../src/control/control-plane.js';
import { applyState, exportState, parseStateYaml } from '../../src/control/desired-state.js';
import { WeftError } from '../../src/control/errors.js';
import {
  clientKeyIdOf,
  memberForCertificate,
  memberForClientKeyMetadata,
  openVpnServerCredentials,
  PKI_SECRETS,
} from '../../src/control/pki.js';
import { MIGRATIONS, SCHEMA_VERSION, openSqliteStore } from '../../src/control/store-sqlite.js';
import { PrivateKey } from '../../src/crypto/keys.js';
import type { Store } from '../../src/control/store.js';
import { parseClientKey, unwrapClientKey } from '../../src/openvpn/tls-crypt-v2.js';
import { MemoryStore } from '../support/memory-store.js';

const STORES: readonly { name: string; open: () => Store }[] = [
  { name: 'memory store', open: () => new MemoryStore() },
  { name: 'sqlite store', open: () => openSqliteStore(':memory:') },
];

const DAY = 86_400_000;

function tempDir(): { dir: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'weft-pki-'));
  return { dir, done: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The PEM blocks between <tag> and </tag> of a profile. */
function inline(profile: string, tag: string): string {
  const m = new RegExp(`<${tag}>\\n([\\s\\S]*?)\\n</${tag}>`).exec(profile);
  assert.ok(m, `no <${tag}> in the profile`);
  return `${m[1]}\n`;
}

function openssl(args: string[]): { code: number; out: string } {
  try {
    return { code: 0, out: execFileSync('openssl', args, { encoding: 'utf8', stdio: 'pipe' }) };
  } catch (e) {
    const err = e as { status: number; stdout: string; stderr: string };
    return { code: err.status, out: `${err.stdout}${err.stderr}` };
  }
}

async function weftError(p: Promise<unknown> | (() => unknown)): Promise<WeftError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (e instanceof WeftError) return e;
    throw e;
  }
  assert.fail('expected a WeftError');
}

function plane(store: Store, clock?: () => Date): ControlPlane {
  ControlPlane.init(store, { endpoint: 'vpn.example.com:51820', subnet: '10.66.0.0/24' });
  return new ControlPlane(store, clock);
}

for (const { name: storeName, open } of STORES) {
  describe(`OpenVPN PKI (${storeName})`, () => {
    it('issues a chain that node:crypto and openssl verify, with the fields OpenVPN checks', async () => {
      const store = open();
      const cp = plane(store);
      cp.addMember('cli', { name: 'alice' });
      const profile = await cp.openVpnProfile('alice');
      const server = openVpnServerCredentials(store);
      const ca = new X509Certificate(server.ca);
      const leaf = new X509Certificate(inline(profile, 'cert'));
      const serverCert = new X509Certificate(server.certificate);
      assert.equal(inline(profile, 'ca'), server.ca);

      assert.ok(ca.ca, 'the CA is a CA');
      assert.ok(leaf.checkIssued(ca) && leaf.verify(ca.publicKey));
      assert.ok(serverCert.checkIssued(ca) && serverCert.verify(ca.publicKey));
      assert.equal(leaf.subject, 'CN=alice');
      assert.equal(serverCert.subject, 'CN=vpn.example.com');
      assert.equal(server.serverName, 'vpn.example.com');
      assert.equal(leaf.publicKey.asymmetricKeyType, 'ec');
      assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
      assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.2'], 'clientAuth');
      assert.deepEqual(serverCert.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'serverAuth');
      assert.equal(store.getOpenVpnCredential('alice')?.serial, leaf.serialNumber.toLowerCase());
      const days = (Date.parse(leaf.validTo) - Date.now()) / DAY;
      assert.ok(days > 824 && days <= 825, `default lifetime 825 days, got ${days}`);

      const { dir, done } = tempDir();
      try {
        writeFileSync(join(dir, 'ca.pem'), server.ca);
        writeFileSync(join(dir, 'alice.pem'), inline(profile, 'cert'));
        writeFileSync(join(dir, 'server.pem'), server.certificate);
        for (const [file, purpose] of [
          ['alice.pem', 'sslclient'],
          ['server.pem', 'sslserver'],
        ] as const) {
          const r = openssl(['verify', '-purpose', purpose, '-CAfile', join(dir, 'ca.pem'), join(dir, file)]);
          assert.equal(r.code, 0, r.out);
          assert.match(r.out, /: OK/);
        }
        const text = openssl(['x509', '-in', join(dir, 'server.pem'), '-noout', '-text']).out;
        assert.match(text, /Key Usage: critical\s+Digital Signature\n/);
        assert.match(text, /Extended Key Usage:\s+TLS Web Server Authentication/);
      } finally {
        done();
      }

      // Secrets stay secrets: none of them appears in the settings, views or audit.
      const audit = JSON.stringify(cp.listAudit({ limit: 100 }));
      for (const secret of [PKI_SECRETS.caKey, PKI_SECRETS.serverKey]) {
        const pem = store.getSecret(secret)!;
        assert.match(pem, /^-----BEGIN PRIVATE KEY-----/);
        assert.ok(!audit.includes(pem.split('\n')[1]!));
      }
      store.close();
    });

    it('gives each member a tls-crypt-v2 client key whose metadata maps to it, until revoked', async () => {
      const store = open();
      let now = new Date();
      const cp = plane(store, () => now);
      cp.addMember('cli', { name: 'alice' });
      cp.addMember('cli', { name: 'bob' });
      const profile = await cp.openVpnProfile('alice');
      const server = openVpnServerCredentials(store);
      const key = parseClientKey(inline(profile, 'tls-crypt-v2'));
      assert.ok(key.ok);
      const unwrapped = unwrapClientKey(server.tlsCryptV2ServerKey, key.wkc);
      assert.ok(unwrapped.ok);
      assert.equal(clientKeyIdOf(unwrapped.metadata), store.getOpenVpnCredential('alice')!.clientKeyId);
      const byKey = memberForClientKeyMetadata(store, unwrapped.metadata, now);
      assert.ok(byKey.ok && byKey.member.name === 'alice');
      const cert = inline(profile, 'cert');
      const byCert = memberForCertificate(store, cert, now);
      assert.ok(byCert.ok && byCert.member.name === 'alice');

      // Typed refusals: disabled, expired, unknown, revoked (also once the member is gone).
      cp.setDisabled('cli', 'alice', true);
      assert.deepEqual(memberForCertificate(store, cert, now), {
        ok: false,
        refusal: 'disabled',
        name: 'alice',
      });
      assert.deepEqual(memberForClientKeyMetadata(store, unwrapped.metadata, now), {
        ok: false,
        refusal: 'disabled',
        name: 'alice',
      });
      cp.setDisabled('cli', 'alice', false);
      cp.updateMember('cli', 'alice', { expiresAt: new Date(now.getTime() + DAY).toISOString() });
      now = new Date(now.getTime() + 2 * DAY);
      assert.deepEqual(memberForCertificate(store, cert, now), {
        ok: false,
        refusal: 'expired',
        name: 'alice',
      });
      now = new Date(now.getTime() - 2 * DAY);
      cp.updateMember('cli', 'alice', { expiresAt: null });
      assert.deepEqual(memberForClientKeyMetadata(store, new Uint8Array([0, 1, 2]), now), {
        ok: false,
        refusal: 'unknown',
      });
      assert.deepEqual(memberForCertificate(store, 'not a certificate', now), {
        ok: false,
        refusal: 'unknown',
      });
      // A certificate from another CA with the same serial is not alice's.
      const other = new MemoryStore();
      const otherCp = plane(other);
      otherCp.addMember('cli', { name: 'alice' });
      const foreign = inline(await otherCp.openVpnProfile('alice'), 'cert');
      assert.deepEqual(memberForCertificate(store, foreign, now), { ok: false, refusal: 'unknown' });

      cp.removeMember('cli', 'alice');
      assert.deepEqual(memberForCertificate(store, cert, now), {
        ok: false,
        refusal: 'revoked',
        name: 'alice',
      });
      assert.deepEqual(memberForClientKeyMetadata(store, unwrapped.metadata, now), {
        ok: false,
        refusal: 'revoked',
        name: 'alice',
      });
      // A new member of the same name gets new credentials; the old ones stay refused.
      cp.addMember('cli', { name: 'alice' });
      await cp.openVpnProfile('alice');
      assert.deepEqual(memberForCertificate(store, cert, now), {
        ok: false,
        refusal: 'revoked',
        name: 'alice',
      });
      store.close();
    });

    it('rotation revokes and reissues; --only narrows it to one protocol; the CRL lists what was revoked', async () => {
      const store = open();
      const cp = plane(store);
      cp.addMember('cli', { name: 'alice' });
      const first = await cp.deliverOpenVpnConfig('alice');
      const wgKey = cp.getMember('alice').publicKey;
      assert.deepEqual(cp.staleConfigs(), []);
      assert.equal(cp.openVpnConfigDownload('alice')?.stale, false);

      cp.rotateMember('cli', 'alice', undefined, ['wireguard']);
      assert.notEqual(cp.getMember('alice').publicKey, wgKey);
      assert.equal(
        await cp.openVpnProfile('alice'),
        first,
        'a WireGuard-only rotation keeps the certificate',
      );

      const oldCert = inline(first, 'cert');
      const wgKey2 = cp.getMember('alice').publicKey;
      cp.rotateMember('cli', 'alice', undefined, ['openvpn']);
      assert.equal(
        cp.getMember('alice').publicKey,
        wgKey2,
        'an OpenVPN-only rotation keeps the WireGuard key',
      );
      assert.equal(store.getOpenVpnCredential('alice'), undefined, 'revoked at once');
      assert.deepEqual(cp.staleConfigs(), ['alice (openvpn)']);
      assert.equal(cp.openVpnConfigDownload('alice')?.stale, true);
      assert.equal(
        (await weftError(() => cp.rotateMember('cli', 'alice', 'x', ['openvpn']))).field,
        'publicKey',
      );
      const second = await cp.deliverOpenVpnConfig('alice');
      assert.notEqual(inline(second, 'cert'), oldCert);
      assert.notEqual(inline(second, 'tls-crypt-v2'), inline(first, 'tls-crypt-v2'));
      assert.deepEqual(cp.staleConfigs(), []);

      cp.rotateMember('cli', 'alice'); // both
      assert.notEqual(cp.getMember('alice').publicKey, wgKey2);
      assert.equal(store.allOpenVpnRevocations().length, 2);

      const { dir, done } = tempDir();
      try {
        const crl = await cp.openVpnCrl();
        writeFileSync(join(dir, 'crl.pem'), crl);
        writeFileSync(join(dir, 'ca-crl.pem'), openVpnServerCredentials(store).ca + crl);
        writeFileSync(join(dir, 'old.pem'), oldCert);
        writeFileSync(join(dir, 'current.pem'), inline(await cp.openVpnProfile('alice'), 'cert'));
        const text = openssl(['crl', '-in', join(dir, 'crl.pem'), '-noout', '-text']);
        assert.equal(text.code, 0, text.out);
        for (const r of store.allOpenVpnRevocations())
          assert.match(text.out, new RegExp(`Serial Number: ${r.serial.toUpperCase()}`));
        assert.match(text.out, /Superseded/);
        const revoked = openssl([
          'verify',
          '-crl_check',
          '-CAfile',
          join(dir, 'ca-crl.pem'),
          join(dir, 'old.pem'),
        ]);
        assert.notEqual(revoked.code, 0);
        assert.match(revoked.out, /certificate revoked/);
        const current = openssl([
          'verify',
          '-crl_check',
          '-CAfile',
          join(dir, 'ca-crl.pem'),
          join(dir, 'current.pem'),
        ]);
        assert.equal(current.code, 0, current.out);
      } finally {
        done();
      }
      store.close();
    });

    it("ends a member's certificate at its expiry, refuses to issue for an expired member, reissues on expiry", async () => {
      const store = open();
      let now = new Date('2030-01-01T00:00:00.000Z');
      const cp = plane(store, () => now);
      cp.addMember('cli', { name: 'temp', expiresAt: '2030-02-01T00:00:00.000Z' });
      const cert = new X509Certificate(inline(await cp.openVpnProfile('temp'), 'cert'));
      assert.equal(new Date(cert.validTo).toISOString(), '2030-02-01T00:00:00.000Z');

      cp.addMember('cli', { name: 'gone', expiresAt: '2030-01-02T00:00:00.000Z' });
      now = new Date('2030-01-03T00:00:00.000Z');
      const err = await weftError(cp.openVpnProfile('gone'));
      assert.equal(err.field, 'expiresAt');

      // certificateDays bounds a certificate; once it has passed, the next request issues a new one.
      cp.updateSettings('cli', { openvpn: { certificateDays: 1 } });
      cp.addMember('cli', { name: 'short' });
      const a = store.getOpenVpnCredential('short') ?? (await cp.openVpnCredential('short'));
      assert.equal(Date.parse(a.notAfter) - now.getTime(), DAY);
      now = new Date(now.getTime() + 2 * DAY);
      const b = await cp.openVpnCredential('short');
      assert.notEqual(b.serial, a.serial);
      assert.equal(store.findOpenVpnRevocation({ serial: a.serial })?.reason, 'rotated');
      store.close();
    });

    it('renews the server certificate near its end and when the endpoint host changes', async () => {
      const store = open();
      let now = new Date('2030-01-01T00:00:00.000Z');
      const cp = plane(store, () => now);
      assert.deepEqual(await cp.ensureOpenVpn(), { createdCa: true, issuedServerCertificate: true });
      assert.deepEqual(await cp.ensureOpenVpn(), { createdCa: false, issuedServerCertificate: false });
      const before = openVpnServerCredentials(store).certificate;
      now = new Date(now.getTime() + 800 * DAY);
      assert.deepEqual(await cp.ensureOpenVpn(), { createdCa: false, issuedServerCertificate: true });
      assert.notEqual(openVpnServerCredentials(store).certificate, before);
      cp.updateSettings('cli', { endpoint: 'gw.example.org' });
      assert.equal((await cp.ensureOpenVpn()).issuedServerCertificate, true);
      assert.equal(openVpnServerCredentials(store).serverName, 'gw.example.org');
      store.close();
    });

    it('renders the profile: remotes, pinning, ciphers, inline blocks; ports and ciphers from the settings', async () => {
      const store = open();
      const cp = plane(store);
      cp.addMember('cli', { name: 'alice' });
      const profile = await cp.openVpnProfile('alice');
      const lines = profile.split('\n');
      for (const line of [
        'client',
        'dev tun',
        'remote vpn.example.com 1194 udp',
        'remote vpn.example.com 443 tcp-client',
        'nobind',
        'remote-cert-tls server',
        'verify-x509-name vpn.example.com name',
        'data-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305',
      ])
        assert.ok(lines.includes(line), `missing line ${line}`);
      assert.ok(
        lines.indexOf('remote vpn.example.com 1194 udp') <
          lines.indexOf('remote vpn.example.com 443 tcp-client'),
      );
      for (const tag of ['ca', 'cert', 'key', 'tls-crypt-v2']) inline(profile, tag);
      assert.match(inline(profile, 'key'), /^-----BEGIN PRIVATE KEY-----\n/);
      assert.match(inline(profile, 'tls-crypt-v2'), /^-----BEGIN OpenVPN tls-crypt-v2 client key-----\n/);

      cp.updateSettings('cli', {
        openvpn: { udpPort: null, tcpPort: 8443, dataCiphers: ['chacha20-poly1305'] },
      });
      const tcpOnly = await cp.openVpnProfile('alice');
      assert.ok(!/ udp$/m.test(tcpOnly));
      assert.match(tcpOnly, /^remote vpn\.example\.com 8443 tcp-client$/m);
      assert.match(tcpOnly, /^data-ciphers CHACHA20-POLY1305$/m);
      assert.equal((await weftError(cp.openVpnProfile('nobody'))).code, 'WEFT_ERR_MEMBER_NOT_FOUND');
      cp.updateSettings('cli', { openvpn: { tcpPort: null } });
      assert.equal((await weftError(cp.openVpnProfile('alice'))).code, 'WEFT_ERR_OPENVPN_OFF');
      store.close();
    });

    it('validates the openvpn settings, naming the field; the state file round-trips them', async () => {
      const store = open();
      const cp = plane(store);
      assert.deepEqual(cp.settings().openvpn, {
        udpPort: 1194,
        tcpPort: 443,
        dataCiphers: ['AES-256-GCM', 'AES-128-GCM', 'CHACHA20-POLY1305'],
        renegSec: 3600,
        certificateDays: 825,
      });
      for (const [openvpn, field] of [
        [{ udpPort: 0 }, 'openvpn.udpPort'],
        [{ tcpPort: 70000 }, 'openvpn.tcpPort'],
        [{ tcpPort: 'x' }, 'openvpn.tcpPort'],
        [{ dataCiphers: [] }, 'openvpn.dataCiphers'],
        [{ dataCiphers: ['AES-256-GCM', 'BF-CBC'] }, 'openvpn.dataCiphers[1]'],
        [{ dataCiphers: ['AES-256-GCM', 'aes-256-gcm'] }, 'openvpn.dataCiphers'],
        [{ renegSec: -1 }, 'openvpn.renegSec'],
        [{ certificateDays: 0 }, 'openvpn.certificateDays'],
        [{ port: 1 }, 'openvpn.port'],
      ] as const) {
        try {
          cp.updateSettings('cli', { openvpn: openvpn as Record<string, unknown> });
          assert.fail(`accepted ${JSON.stringify(openvpn)}`);
        } catch (e) {
          assert.ok(e instanceof WeftError, String(e));
          assert.equal(e.code, 'WEFT_ERR_VALIDATION');
          assert.equal(e.field, field, e.message);
        }
      }

      // A state file's new public key rotates the WireGuard key only; the certificate stays.
      cp.addMember('cli', { name: 'sf' });
      const issued = await cp.openVpnCredential('sf');
      const key = PrivateKey.generate().publicKey().toBase64();
      applyState(cp, 'cli', { members: [{ name: 'sf', publicKey: key }] });
      assert.equal(cp.getMember('sf').publicKey, key);
      assert.equal(
        store.getOpenVpnCredential('sf')?.serial,
        issued.serial,
        'the OpenVPN certificate is kept',
      );
      cp.removeMember('cli', 'sf');

      cp.updateSettings('cli', { openvpn: { tcpPort: null, renegSec: 600 } });
      const exported = exportState(cp);
      assert.deepEqual(exported.settings?.openvpn, { ...cp.settings().openvpn });
      // Applying the export to a fresh network gives the same settings; applying it again changes nothing.
      const fresh = plane(open());
      applyState(fresh, 'cli', exported);
      assert.deepEqual(fresh.settings().openvpn, cp.settings().openvpn);
      assert.deepEqual(applyState(fresh, 'cli', exported), []);
      // A state file may give part of the section; a bad value names its place in the file.
      applyState(fresh, 'cli', parseStateYaml('settings:\n  openvpn:\n    udpPort: 1195\n'));
      assert.equal(fresh.settings().openvpn.udpPort, 1195);
      assert.equal(fresh.settings().openvpn.renegSec, 600);
      try {
        applyState(fresh, 'cli', parseStateYaml('settings:\n  openvpn:\n    dataCiphers: [BF-CBC]\n'));
        assert.fail('accepted BF-CBC');
      } catch (e) {
        assert.ok(e instanceof WeftError);
        assert.match(e.field ?? '', /openvpn\.dataCiphers\[0\]$/);
      }
      store.close();
    });
  });
}

test('a store at schema version 3 migrates, and the first command that needs the CA creates it', async () => {
  const { dir, done } = tempDir();
  try {
    const path = join(dir, 'weft.db');
    const store3 = openSqliteStore(path);
    ControlPlane.init(store3, { endpoint: 'vpn.example.com', subnet: '10.66.0.0/24' });
    new ControlPlane(store3).addMember('cli', { name: 'alice' });
    store3.close();
    // Take the file back to version 3 as an older build left it: no OpenVPN tables, no openvpn settings.
    const raw = new Database(path);
    const settings = JSON.parse(raw.prepare('SELECT value FROM settings').pluck<string>().get()!) as Record<
      string,
      unknown
    >;
    delete settings['openvpn'];
    raw.prepare('UPDATE settings SET value = ?').run(JSON.stringify(settings));
    raw.exec(`DROP TABLE openvpn_credentials; DROP TABLE openvpn_revocations;
      CREATE TABLE cd3 (member_id INTEGER PRIMARY KEY REFERENCES members (id) ON DELETE CASCADE,
        fingerprint TEXT NOT NULL, delivered_at TEXT NOT NULL) STRICT;
      DROP TABLE config_deliveries; ALTER TABLE cd3 RENAME TO config_deliveries;
      ALTER TABLE download_links DROP COLUMN protocol;
      DROP TABLE sites; DROP TABLE site_status; ALTER TABLE routes DROP COLUMN gateway;
      ALTER TABLE member_status DROP COLUMN protocol; ALTER TABLE member_status DROP COLUMN since;
      ALTER TABLE policies DROP COLUMN direction;`);
    raw.pragma('user_version = 3');
    raw.close();
    assert.equal(MIGRATIONS.length, SCHEMA_VERSION);

    const store = openSqliteStore(path);
    try {
      assert.equal(store.schemaVersion, SCHEMA_VERSION);
      assert.equal(store.getSecret(PKI_SECRETS.caCertificate), undefined);
      const cp = new ControlPlane(store);
      assert.equal(cp.settings().openvpn.udpPort, 1194, 'defaults for settings written before OpenVPN');
      const profile = await cp.openVpnProfile('alice');
      assert.match(profile, /^<cert>$/m);
      assert.ok(store.getSecret(PKI_SECRETS.caCertificate));
    } finally {
      store.close();
    }
  } finally {
    done();
  }
});
