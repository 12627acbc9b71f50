/**
 * Throwaway X.509 material for the IKEv2 certificate tests, made with the `openssl` CLI (the same files feed
 * the core and strongSwan): root and intermediate CAs and end-entity certificates with ECDSA P-256 or
 * RSA-2048 keys, subjectAltNames and chosen lifetimes.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** 'rsa' is RSA-2048; the bigger keys make big certificates (IKE fragmentation tests). */
export type KeyKind = 'ecdsa' | 'rsa' | 'rsa3072' | 'rsa4096';

export interface TestCert {
  readonly name: string;
  /** PEM certificate and PKCS #8 key, and their paths. */
  readonly cert: string;
  readonly key: string;
  readonly certPath: string;
  readonly keyPath: string;
}

export interface LeafOptions {
  /** "DNS:gw.example", "IP:10.0.0.1", "email:ops@example". */
  readonly sans?: readonly string[];
  /** openssl -subj form; default "/CN=<name>". */
  readonly subject?: string;
  readonly days?: number;
  readonly kind?: KeyKind;
}

export class TestPki {
  private serial = 1;
  private constructor(readonly dir: string) {}

  static create(prefix = 'weft-ike-pki-'): TestPki {
    return new TestPki(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
  }

  private openssl(args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: ['ignore', 'ignore', 'pipe'] });
  }

  private newKey(name: string, kind: KeyKind): string {
    const file = `${name}.key`;
    this.openssl(
      kind === 'ecdsa'
        ? ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file]
        : [
            'genpkey',
            '-algorithm',
            'RSA',
            '-pkeyopt',
            `rsa_keygen_bits:${kind === 'rsa4096' ? 4096 : kind === 'rsa3072' ? 3072 : 2048}`,
            '-out',
            file,
          ],
    );
    return file;
  }

  private result(name: string): TestCert {
    const certPath = path.join(this.dir, `${name}.crt`);
    const keyPath = path.join(this.dir, `${name}.key`);
    return {
      name,
      cert: fs.readFileSync(certPath, 'utf8'),
      key: fs.readFileSync(keyPath, 'utf8'),
      certPath,
      keyPath,
    };
  }

  /** A self-signed root CA. */
  root(name: string, kind: KeyKind = 'ecdsa', days = 30): TestCert {
    const key = this.newKey(name, kind);
    this.openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      key,
      '-subj',
      `/CN=${name}/O=Weft Test`,
      '-days',
      String(days),
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-out',
      `${name}.crt`,
    ]);
    return this.result(name);
  }

  /** An intermediate CA signed by `issuer`; `ca: false` makes one without CA:TRUE (which must be refused). */
  intermediate(name: string, issuer: TestCert, kind: KeyKind = 'ecdsa', ca = true): TestCert {
    return this.sign(name, issuer, {
      kind,
      subject: `/CN=${name}/O=Weft Test`,
      days: 20,
      ext: ca
        ? ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign']
        : ['basicConstraints=critical,CA:FALSE'],
    });
  }

  /** An end-entity certificate signed by `issuer`. */
  leaf(name: string, issuer: TestCert, o: LeafOptions = {}): TestCert {
    const ext = ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature'];
    if (o.sans && o.sans.length > 0) ext.push(`subjectAltName=${o.sans.join(',')}`);
    return this.sign(name, issuer, {
      kind: o.kind ?? 'ecdsa',
      subject: o.subject ?? `/CN=${name}`,
      days: o.days ?? 10,
      ext,
    });
  }

  private sign(
    name: string,
    issuer: TestCert,
    o: { kind: KeyKind; subject: string; days: number; ext: string[] },
  ): TestCert {
    const key = this.newKey(name, o.kind);
    this.openssl(['req', '-new', '-key', key, '-subj', o.subject, '-out', `${name}.csr`]);
    fs.writeFileSync(
      path.join(this.dir, `${name}.ext`),
      [...o.ext, 'subjectKeyIdentifier=hash', 'authorityKeyIdentifier=keyid,issuer', ''].join('\n'),
    );
    this.openssl([
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      issuer.certPath,
      '-CAkey',
      issuer.keyPath,
      '-set_serial',
      String(this.serial++),
      '-days',
      String(o.days),
      '-sha256',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.crt`,
    ]);
    return this.result(name);
  }

  cleanup(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
