/**
 * /api/v1/sites through fastify.inject(): every operation in the OpenAPI document, the pre-shared key
 * write-only (only a generated one comes back, once), errors through the central mapping with their field,
 * the status from the store's site statuses, and the remote-end configs as text.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type { z } from 'zod';
import { buildApi } from '../../src/api/server.js';
import * as schemas from '../../src/api/schemas.js';
import { ControlPlane } from '../../src/control/control-plane.js';
import type { Store } from '../../src/control/store.js';
import { TestPki } from '../support/ike-pki.js';
import { MemoryStore } from '../support/memory-store.js';

const PSK = 'a-pre-shared-key-of-enough-length';

function conforms(schema: z.ZodType, value: unknown): void {
  const parsed = schema.safeParse(value);
  assert.ok(parsed.success, parsed.success ? '' : JSON.stringify(parsed.error.issues));
  assert.deepEqual(parsed.data, value, 'the response has fields its schema does not document');
}

function error(res: LightMyRequestResponse, status: number, code: string, field?: string): void {
  assert.equal(res.statusCode, status, res.body);
  const body = res.json<{ error: { code: string; field?: string } }>();
  assert.equal(body.error.code, code, res.body);
  if (field !== undefined) assert.equal(body.error.field, field, res.body);
}

describe('REST API: sites', () => {
  let app: FastifyInstance;
  let store: Store;
  let token = '';
  const call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown) =>
    app.inject({
      method,
      url: `/api/v1${url}`,
      headers: { authorization: `Bearer ${token}` },
      ...(body === undefined ? {} : { payload: body as Record<string, unknown> }),
    });

  before(async () => {
    store = new MemoryStore();
    token = ControlPlane.init(store, { endpoint: '203.0.113.1:51820', subnet: '10.66.0.0/24' }).apiToken;
    app = buildApi({ controlPlane: new ControlPlane(store) });
    await app.ready();
  });
  after(async () => {
    await app.close();
    store.close();
  });

  it('the OpenAPI document lists every site operation', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/api/v1/openapi.json' })).json<{
      paths: Record<string, Record<string, { operationId: string; tags: string[] }>>;
    }>();
    const ops = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.entries(methods)
        .filter(([, op]) => op.tags?.includes('sites'))
        .map(([method, op]) => `${method} ${path} ${op.operationId}`),
    );
    assert.deepEqual(ops.sort(), [
      'delete /api/v1/sites/{name} removeSite',
      'get /api/v1/sites listSites',
      'get /api/v1/sites/{name} getSite',
      'get /api/v1/sites/{name}/remote-config siteRemoteConfig',
      'patch /api/v1/sites/{name} updateSite',
      'post /api/v1/sites addSite',
      'post /api/v1/sites/{name}/down downSite',
      'post /api/v1/sites/{name}/up upSite',
    ]);
    assert.equal(JSON.stringify(doc).includes('"SiteView"'), true);
  });

  it('create, get, patch, up/down, remote config, delete; the key never comes back unless generated', async () => {
    const created = await call('POST', '/sites', {
      name: 'hq',
      remoteAddress: '198.51.100.20',
      psk: PSK,
      localSubnets: ['10.66.0.0/24'],
      remoteSubnets: ['10.20.0.0/16'],
    });
    assert.equal(created.statusCode, 201, created.body);
    assert.ok(!created.body.includes(PSK));
    conforms(schemas.CreatedSite, created.json());

    const generated = await call('POST', '/sites', {
      name: 'branch',
      remoteAddress: '%any',
      localSubnets: ['10.66.0.0/24'],
      remoteSubnets: ['10.30.0.0/24'],
    });
    assert.equal(generated.statusCode, 201, generated.body);
    const key = generated.json<{ psk: string }>().psk;
    assert.match(key, /^[A-Za-z0-9]{32}$/);
    assert.equal(generated.headers['cache-control'], 'no-store');
    const got = await call('GET', '/sites/branch');
    assert.ok(!got.body.includes(key), 'GET never shows the key');
    conforms(schemas.SiteView, got.json());

    const patched = await call('PATCH', '/sites/hq', { dpdIntervalSec: 60, psk: `${PSK}-2` });
    assert.equal(patched.statusCode, 200, patched.body);
    assert.equal(patched.json<{ dpdIntervalSec: number }>().dpdIntervalSec, 60);
    assert.ok(!patched.body.includes(PSK));

    assert.equal((await call('POST', '/sites/hq/down')).json<{ enabled: boolean }>().enabled, false);
    assert.equal((await call('POST', '/sites/hq/up')).json<{ enabled: boolean }>().enabled, true);

    const config = await call('GET', '/sites/hq/remote-config?format=swanctl');
    assert.equal(config.statusCode, 200);
    assert.match(String(config.headers['content-type']), /^text\/plain/);
    assert.match(config.body, /secret = "a-pre-shared-key-of-enough-length-2"/);
    error(await call('GET', '/sites/hq/remote-config?format=cisco'), 400, 'WEFT_ERR_VALIDATION');

    store.putSiteStatuses([
      {
        name: 'hq',
        state: 'connecting',
        ike: null,
        children: [],
        lastError: { at: '2026-01-01T00:00:00.000Z', message: 'peer unreachable' },
        at: '2026-01-01T00:00:00.000Z',
      },
    ]);
    const list = (await call('GET', '/sites')).json<{
      items: { name: string; status: { state: string } | null }[];
    }>();
    conforms(schemas.SiteList, list);
    assert.deepEqual(
      list.items.map((s) => [s.name, s.status?.state ?? null]),
      [
        ['branch', null],
        ['hq', 'connecting'],
      ],
    );

    assert.equal((await call('DELETE', '/sites/branch')).statusCode, 204);
    error(await call('GET', '/sites/branch'), 404, 'WEFT_ERR_SITE_NOT_FOUND', 'name');
  });

  it('a certificate site: the private key write-only, the certificates shown, a bad key refused by field', async () => {
    const pki = TestPki.create('weft-api-cert-');
    try {
      const root = pki.root('api-root');
      const leaf = pki.leaf('api-gw', root, { sans: ['DNS:gw.example.net'] });
      const other = pki.leaf('api-other', root);
      const body = {
        name: 'certsite',
        remoteAddress: '198.51.100.31',
        localId: 'fqdn:gw.example.net',
        certificate: leaf.cert,
        privateKey: leaf.key,
        caCertificates: root.cert,
        localSubnets: ['10.66.0.0/24'],
        remoteSubnets: ['10.31.0.0/24'],
      };
      const created = await call('POST', '/sites', body);
      assert.equal(created.statusCode, 201, created.body);
      assert.ok(!created.body.includes('PRIVATE KEY'), 'the private key never comes back');
      conforms(schemas.CreatedSite, created.json());
      const got = await call('GET', '/sites/certsite');
      assert.ok(!got.body.includes('PRIVATE KEY'));
      const view = got.json<{ auth: string; certificate: string; caCertificates: string }>();
      assert.equal(view.auth, 'cert');
      assert.equal(view.certificate, leaf.cert.trim() + '\n');
      assert.equal(view.caCertificates, root.cert.trim() + '\n');
      conforms(schemas.SiteView, got.json());
      error(
        await call('PATCH', '/sites/certsite', { privateKey: other.key }),
        400,
        'WEFT_ERR_VALIDATION',
        'privateKey',
      );
      assert.equal((await call('DELETE', '/sites/certsite')).statusCode, 204);
    } finally {
      pki.cleanup();
    }
  });

  it('errors: through the central mapping, naming the field', async () => {
    const base = { name: 'x', remoteAddress: '198.51.100.9', psk: PSK, localSubnets: ['10.66.0.0/24'] };
    error(
      await call('POST', '/sites', { ...base, remoteSubnets: ['10.20.1.0/24'] }),
      409,
      'WEFT_ERR_SUBNET_CONFLICT',
      'remoteSubnets[0]',
    );
    error(
      await call('POST', '/sites', { ...base, name: 'hq', remoteSubnets: ['10.40.0.0/24'] }),
      409,
      'WEFT_ERR_SITE_EXISTS',
      'name',
    );
    error(
      await call('POST', '/sites', { ...base, psk: 'short', remoteSubnets: ['10.40.0.0/24'] }),
      400,
      'WEFT_ERR_VALIDATION',
      'psk',
    );
    error(
      await call('POST', '/sites', { ...base, remoteSubnets: ['10.40.0.0/24'], groups: ['none'] }),
      404,
      'WEFT_ERR_GROUP_NOT_FOUND',
      'groups',
    );
    error(
      await call('PATCH', '/sites/hq', { childLifetimeSec: 5 }),
      400,
      'WEFT_ERR_VALIDATION',
      'childLifetimeSec',
    );
    error(await call('PATCH', '/sites/hq', { bogus: 1 }), 400, 'WEFT_ERR_VALIDATION');
    error(await call('PATCH', '/sites/nowhere', { dpdIntervalSec: 10 }), 404, 'WEFT_ERR_SITE_NOT_FOUND');
  });
});
