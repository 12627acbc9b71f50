/**
 * The API and the console over HTTPS, as `weft server run --tls-cert --tls-key` serves them: a self-signed
 * certificate made by `openssl` for the test, a real listener on 127.0.0.1, a login whose cookie is Secure;
 * and the checks of the run options (--tls-cert/--tls-key together and readable, --api-listen HOST:PORT).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { buildApi } from '../../src/api/server.js';
import { UserError } from '../../src/control/errors.js';
import { ControlPlane } from '../../src/control/control-plane.js';
import { apiListenOption, readTlsFiles } from '../../src/server/run.js';
import { MemoryStore } from '../support/memory-store.js';

interface Pem {
  readonly dir: string;
  readonly cert: string;
  readonly key: string;
}

/** A fresh self-signed certificate for 127.0.0.1 (P-256, one day), in a temporary directory. */
function selfSigned(t: TestContext): Pem {
  const dir = mkdtempSync(join(tmpdir(), 'weft-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'pipe' },
  );
  return { dir, cert, key };
}

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/** An HTTPS request that trusts only `ca`. */
function fetchTls(
  port: number,
  ca: Buffer,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: unknown,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        ca,
        headers: { ...headers, ...(payload ? { 'content-type': 'application/json' } : {}) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

describe('HTTPS', () => {
  it('serves the API and the console over TLS; the session cookie is Secure', async (t) => {
    const pem = selfSigned(t);
    const tls = readTlsFiles(pem.cert, pem.key);
    assert.ok(tls);
    const store = new MemoryStore();
    const { adminPassword } = ControlPlane.init(store, {
      endpoint: 'vpn.example.com',
      subnet: '10.66.0.0/24',
    });
    const app = buildApi({ controlPlane: new ControlPlane(store), https: tls });
    t.after(async () => {
      await app.close();
      store.close();
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const ca = readFileSync(pem.cert);

    const health = await fetchTls(port, ca, 'GET', '/api/v1/health');
    assert.equal(health.status, 200, health.body);
    assert.deepEqual(JSON.parse(health.body), { ok: true });

    const login = await fetchTls(
      port,
      ca,
      'POST',
      '/api/v1/session',
      {},
      {
        username: 'admin',
        password: adminPassword,
      },
    );
    assert.equal(login.status, 200, login.body);
    const setCookie = login.headers['set-cookie'];
    const cookie = (Array.isArray(setCookie) ? setCookie : [setCookie ?? '']).find((c) =>
      c.startsWith('weft_session='),
    );
    assert.ok(cookie, 'a session cookie');
    const attributes = cookie.split('; ');
    assert.ok(attributes.includes('Secure'), cookie);
    assert.ok(attributes.includes('HttpOnly') && attributes.includes('SameSite=Strict'), cookie);

    const me = await fetchTls(port, ca, 'GET', '/api/v1/session', { cookie: attributes[0]! });
    assert.equal(me.status, 200, me.body);
    const { csrfToken } = JSON.parse(me.body) as { csrfToken: string };
    const out = await fetchTls(port, ca, 'DELETE', '/api/v1/session', {
      cookie: attributes[0]!,
      'x-csrf-token': csrfToken,
    });
    assert.equal(out.status, 204, out.body);
    assert.match(String(out.headers['set-cookie']), /Max-Age=0.*Secure/);

    // It is the certificate given: a client that does not trust it gets no connection.
    await assert.rejects(
      () =>
        new Promise((resolve, reject) => {
          const req = request({ host: '127.0.0.1', port, path: '/', rejectUnauthorized: true }, resolve);
          req.on('error', reject);
          req.end();
        }),
      'an untrusted certificate is refused by a verifying client',
    );
  });
});

describe('server run options', () => {
  it('--tls-cert and --tls-key: both or neither, readable, a key that matches', (t) => {
    const pem = selfSigned(t);
    assert.equal(readTlsFiles(undefined, undefined), undefined);
    assert.throws(
      () => readTlsFiles(pem.cert, undefined),
      (e: unknown) => e instanceof UserError && /--tls-cert and --tls-key go together/.test(e.message),
    );
    assert.throws(
      () => readTlsFiles(undefined, pem.key),
      (e: unknown) => e instanceof UserError && /only --tls-key/.test(e.message),
    );
    const missing = join(pem.dir, 'nope.pem');
    assert.throws(
      () => readTlsFiles(missing, pem.key),
      (e: unknown) =>
        e instanceof UserError &&
        e.message.startsWith('weft: --tls-cert: cannot read') &&
        e.message.includes(missing),
    );
    assert.throws(
      () => readTlsFiles(pem.cert, missing),
      (e: unknown) => e instanceof UserError && e.message.startsWith('weft: --tls-key: cannot read'),
    );
    const garbage = join(pem.dir, 'garbage.pem');
    writeFileSync(garbage, 'not a certificate');
    assert.throws(
      () => readTlsFiles(garbage, pem.key),
      (e: unknown) =>
        e instanceof UserError && /not a usable PEM certificate and matching key/.test(e.message),
    );
    const other = selfSigned(t);
    assert.throws(
      () => readTlsFiles(pem.cert, other.key),
      (e: unknown) => e instanceof UserError && /matching key/.test(e.message),
    );
    const files = readTlsFiles(pem.cert, pem.key);
    assert.deepEqual(files?.cert, readFileSync(pem.cert));
  });

  it('--api-listen: HOST:PORT, checked', () => {
    assert.equal(apiListenOption('127.0.0.1:8443'), '127.0.0.1:8443');
    assert.equal(apiListenOption('[::1]:8443'), '[::1]:8443');
    assert.equal(apiListenOption('localhost:80'), 'localhost:80');
    for (const bad of ['127.0.0.1', '127.0.0.1:0', '127.0.0.1:99999', 'bad host:80', ':80'])
      assert.throws(
        () => apiListenOption(bad),
        (e: unknown) => e instanceof UserError && e.message.includes('--api-listen'),
        bad,
      );
  });
});
