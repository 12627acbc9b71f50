/**
 * A throwaway PKI for the OpenVPN control-channel tests, made with the `openssl` CLI: an ECDSA P-256 CA, a
 * server certificate (serverAuth) and client certificates (clientAuth) it signs.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface Pki {
  readonly dir: string;
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** Paths of the same, for openvpn. */
  readonly files: {
    ca: string;
    serverCert: string;
    serverKey: string;
    clientCert: string;
    clientKey: string;
  };
  /** Another client certificate from a CA the server does not trust. */
  readonly strangerCert: string;
  readonly strangerKey: string;
  cleanup(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function ca(dir: string, name: string): void {
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.crt`,
      '-subj',
      `/CN=${name}`,
      '-days',
      '2',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
}

function leaf(
  dir: string,
  caName: string,
  name: string,
  usage: 'serverAuth' | 'clientAuth',
  serial: number,
): void {
  openssl(
    [
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=${name}`,
    ],
    dir,
  );
  fs.writeFileSync(
    path.join(dir, `${name}.ext`),
    `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${usage}\n`,
  );
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${caName}.crt`,
      '-CAkey',
      `${caName}.key`,
      '-set_serial',
      String(serial),
      '-days',
      '2',
      '-out',
      `${name}.crt`,
      '-extfile',
      `${name}.ext`,
    ],
    dir,
  );
}

export function makePki(baseDir?: string): Pki {
  const dir = fs.mkdtempSync(path.join(baseDir ?? os.tmpdir(), 'weft-ovpn-pki-'));
  ca(dir, 'weft-test-ca');
  leaf(dir, 'weft-test-ca', 'server', 'serverAuth', 2);
  leaf(dir, 'weft-test-ca', 'client', 'clientAuth', 3);
  ca(dir, 'stranger-ca');
  leaf(dir, 'stranger-ca', 'stranger', 'clientAuth', 4);
  const read = (f: string): string => fs.readFileSync(path.join(dir, f), 'utf8');
  const p = (f: string): string => path.join(dir, f);
  return {
    dir,
    caCert: read('weft-test-ca.crt'),
    serverCert: read('server.crt'),
    serverKey: read('server.key'),
    clientCert: read('client.crt'),
    clientKey: read('client.key'),
    files: {
      ca: p('weft-test-ca.crt'),
      serverCert: p('server.crt'),
      serverKey: p('server.key'),
      clientCert: p('client.crt'),
      clientKey: p('client.key'),
    },
    strangerCert: read('stranger.crt'),
    strangerKey: read('stranger.key'),
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
