/**
 * The REST API (src/api/) through fastify's inject(), no listener: authentication on every endpoint, the
 * one error shape and its codes, the member lifecycle, groups/routes/policies, tokens, the audit actor and
 * the OpenAPI document. The suite runs against every Store implementation (in-memory and SQLite).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import type { z } from 'zod';
import { buildApi, type LiveStatus } from '../../src/api/server.js';
import { Multicast } from '../../src/api/routes-multicast.js';
import * as schemas from '../../src/api/schemas.js';
import { parseWgQuick } from '../../src/config/wg-quick.js';
import { ControlPlane } from '../../src/control/control-plane.js';
import { openSqliteStore } from '../../src/control/store-sqlite.js';
import type { Store } from '../../src/control/store.js';
import { PrivateKey } from '../../src/crypto/keys.js';
import { StoreUnavailable } from '../../src/control/store-postgres.js';
import { MemoryStore } from '../support/memory-store.js';

const STORES: readonly { name: string; open: () => Store }[] = [
  { name: 'memory store', open: () => new MemoryStore() },
  { name: 'sqlite store', open: () => openSqliteStore(':memory:') },
];

interface Fixture {
  readonly app: FastifyInstance;
  readonly cp: ControlPlane;
  readonly store: Store;
  /** The secret of the token `init`. */
  readonly token: string;
}

async function fixture(store: Store, live?: LiveStatus): Promise<Fixture> {
  const { apiToken } = ControlPlane.init(store, {
    endpoint: 'vpn.example.com:51820',
    subnet: '10.66.0.0/24',
  });
  const cp = new ControlPlane(store);
  const app = buildApi({ controlPlane: cp, live });
  await app.ready();
  return { app, cp, store, token: apiToken };
}

type Json = Record<string, unknown>;

interface Call {
  readonly token?: string | null;
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
}

/** A request with the fixture's token unless told otherwise (`token: null` sends none). */
function request(f: Fixture, method: InjectOptions['method'], url: string, call: Call = {}) {
  const token = call.token === undefined ? f.token : call.token;
  const headers: Record<string, string> = { ...call.headers };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  return f.app.inject({
    method,
    url,
    headers,
    ...(call.body === undefined
      ? {}
      : typeof call.body === 'string'
        ? { payload: call.body }
        : { payload: call.body as Json }),
  });
}

function json<T = Json>(res: LightMyRequestResponse): T {
  return res.json<T>();
}

/** Asserts the error shape, status and code (and field, when given). */
function assertError(
  res: LightMyRequestResponse,
  status: number,
  code: string,
  field?: string,
): { code: string; message: string; field?: string } {
  assert.equal(res.statusCode, status, res.body);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  const body = json<{ error: { code: string; message: string; field?: string } }>(res);
  assert.deepEqual(Object.keys(body), ['error']);
  assert.equal(body.error.code, code, res.body);
  assert.equal(typeof body.error.message, 'string');
  if (field !== undefined) assert.equal(body.error.field, field, res.body);
  return body.error;
}

/** The value fits the documented schema exactly: nothing missing, nothing undocumented. */
function assertConforms(schema: z.ZodType, value: unknown): void {
  const parsed = schema.safeParse(value);
  assert.ok(parsed.success, parsed.success ? '' : JSON.stringify(parsed.error.issues));
  assert.deepEqual(parsed.data, value, 'the response has fields its schema does not document');
}

/** Fills an OpenAPI path's parameters with plausible values. */
function concretePath(path: string): string {
  return path
    .replace('{name}', 'alice')
    .replace('{cidr}', '10.20.0.0%2F24')
    .replace('{id}', '1')
    .replace('{token}', 'x');
}

/** Operations served without credentials ("method path", as in the OpenAPI document). */
const PUBLIC_OPERATIONS = new Set([
  'get /api/v1/health',
  'get /api/v1/openapi.json',
  'post /api/v1/session',
  'get /dl/{token}',
]);

/** Operations that answer without credentials as such (others check their input first). */
const ANSWERS_ANYONE = new Set(['get /api/v1/health', 'get /api/v1/openapi.json']);

/** The console session's own endpoints: a session only, never an API token. */
function sessionOnly(method: string, path: string): boolean {
  return path.startsWith('/api/v1/session') && !PUBLIC_OPERATIONS.has(`${method} ${path}`);
}

const METHODS = ['get', 'post', 'patch', 'delete', 'put'] as const;

for (const { name: storeName, open } of STORES) {
  describe(`REST API (${storeName})`, () => {
    let f: Fixture;
    before(async () => {
      f = await fixture(open());
    });
    after(async () => {
      await f.app.close();
      f.store.close();
    });

    describe('OpenAPI document', () => {
      it('is served without a token and looks like OpenAPI 3.1', async () => {
        const res = await request(f, 'GET', '/api/v1/openapi.json', { token: null });
        assert.equal(res.statusCode, 200);
        const doc = json<{
          openapi: string;
          info: { title: string; version: string };
          paths: Record<string, Record<string, Json>>;
          components: { schemas: Record<string, Json>; securitySchemes: Record<string, Json> };
        }>(res);
        assert.equal(doc.openapi, '3.1.0');
        assert.equal(typeof doc.info.title, 'string');
        assert.deepEqual(doc.components.securitySchemes.bearer, {
          ...doc.components.securitySchemes.bearer,
          type: 'http',
          scheme: 'bearer',
        });
        assert.ok(Object.keys(doc.paths).length >= 20);
        for (const [path, item] of Object.entries(doc.paths)) {
          assert.ok(path.startsWith('/api/v1/') || path.startsWith('/dl/'), path);
          const ops = METHODS.filter((m) => item[m]);
          assert.ok(ops.length > 0, `${path} has no operations`);
          for (const m of ops) {
            const op = item[m] as {
              operationId: string;
              parameters: { name: string; in: string; required: boolean; schema: Json }[];
              responses: Record<string, Json>;
              security: unknown[];
            };
            assert.equal(typeof op.operationId, 'string');
            const statuses = Object.keys(op.responses).map(Number);
            assert.ok(
              statuses.some((s) => s >= 200 && s < 300),
              `${m} ${path} has no success response`,
            );
            assert.ok(statuses.includes(400) && statuses.includes(500), `${m} ${path}`);
            const isPublic = PUBLIC_OPERATIONS.has(`${m} ${path}`);
            assert.deepEqual(
              op.security,
              isPublic ? [] : sessionOnly(m, path) ? [{ session: [] }] : [{ bearer: [] }, { session: [] }],
              `${m} ${path}`,
            );
            // Login is public, and answers 401 to a wrong password.
            assert.equal(statuses.includes(401), !isPublic || path === '/api/v1/session', `${m} ${path}`);
            // Every {param} of the path is a documented, required path parameter.
            for (const p of path.match(/\{[^}]+\}/g) ?? []) {
              const param = op.parameters.find((q) => q.name === p.slice(1, -1));
              assert.ok(param && param.in === 'path' && param.required, `${m} ${path} ${p}`);
            }
          }
        }
        // Every $ref resolves.
        const text = JSON.stringify(doc);
        for (const [, id] of text.matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g))
          assert.ok(doc.components.schemas[id!], `unresolved $ref ${id}`);
      });

      it('documents the request bodies, query parameters and media types', async () => {
        const doc = json<{ paths: Record<string, Record<string, Json>> }>(
          await request(f, 'GET', '/api/v1/openapi.json'),
        );
        const addMember = doc.paths['/api/v1/members']!.post as {
          requestBody: { required: boolean; content: Record<string, { schema: Json }> };
          responses: Record<string, Json>;
        };
        assert.equal(addMember.requestBody.required, true);
        assert.deepEqual(addMember.requestBody.content['application/json']!.schema, {
          $ref: '#/components/schemas/MemberInput',
        });
        assert.ok(addMember.responses['201'] && addMember.responses['409']);
        const list = doc.paths['/api/v1/members']!.get as { parameters: { name: string; schema: Json }[] };
        assert.deepEqual(
          list.parameters.map((p) => p.name),
          ['after', 'limit', 'search'],
        );
        assert.equal(list.parameters.find((p) => p.name === 'limit')!.schema.type, 'integer');
        const apply = doc.paths['/api/v1/apply']!.post as {
          requestBody: { content: Record<string, unknown> };
        };
        assert.ok(apply.requestBody.content['application/yaml']);
        const config = doc.paths['/api/v1/members/{name}/config']!.get as {
          responses: { 200: { content: Record<string, unknown> } };
        };
        assert.deepEqual(Object.keys(config.responses[200].content), [
          'text/plain',
          'application/x-openvpn-profile',
        ]);
      });
    });

    describe('authentication', () => {
      it('is required on every endpoint but health and the OpenAPI document', async () => {
        const doc = json<{ paths: Record<string, Record<string, Json>> }>(
          await request(f, 'GET', '/api/v1/openapi.json', { token: null }),
        );
        let checked = 0;
        for (const [path, item] of Object.entries(doc.paths)) {
          for (const m of METHODS.filter((x) => item[x])) {
            const url = concretePath(path);
            const method = m.toUpperCase() as InjectOptions['method'];
            const isPublic = PUBLIC_OPERATIONS.has(`${m} ${path}`);
            const body = m === 'get' || m === 'delete' ? undefined : {};
            for (const token of [null, 'weft_wrong', 'not-even-a-token', '']) {
              const res = await request(f, method, url, { token, body });
              if (ANSWERS_ANYONE.has(`${m} ${path}`)) assert.equal(res.statusCode, 200, `${m} ${path}`);
              else if (isPublic) assert.notEqual(res.statusCode, 401, `${m} ${path}`);
              else {
                assertError(res, 401, 'WEFT_ERR_UNAUTHORIZED');
                assert.match(String(res.headers['www-authenticate']), /^Bearer/);
              }
            }
            const basic = await request(f, method, url, {
              token: null,
              body,
              headers: { authorization: `Basic ${Buffer.from(`x:${f.token}`).toString('base64')}` },
            });
            if (!isPublic) assertError(basic, 401, 'WEFT_ERR_UNAUTHORIZED');
            checked++;
          }
        }
        assert.ok(checked >= 25, `only ${checked} operations`);
      });

      it('lets the right token through, whatever the case of "Bearer"', async () => {
        const res = await request(f, 'GET', '/api/v1/settings', {
          token: null,
          headers: { authorization: `bearer ${f.token}` },
        });
        assert.equal(res.statusCode, 200);
      });

      it('answers health with {ok: true}', async () => {
        const res = await request(f, 'GET', '/api/v1/health', { token: null });
        assert.deepEqual(json(res), { ok: true });
      });

      it('stops accepting a token once it is revoked', async () => {
        const created = await request(f, 'POST', '/api/v1/tokens', { body: { name: 'short-lived' } });
        assert.equal(created.statusCode, 201);
        assertConforms(schemas.CreatedToken, json(created));
        const { token, secret } = json<{ token: { id: number }; secret: string }>(created);
        assert.equal((await request(f, 'GET', '/api/v1/groups', { token: secret })).statusCode, 200);
        const listed = json<{ items: Json[] }>(await request(f, 'GET', '/api/v1/tokens')).items;
        assert.ok(listed.some((t) => t.name === 'short-lived'));
        assert.ok(listed.every((t) => !('secret' in t) && !('hash' in t)));
        for (const t of listed) assertConforms(schemas.ApiToken, t);
        const revoked = await request(f, 'DELETE', `/api/v1/tokens/${token.id}`, { token: secret });
        assert.equal(revoked.statusCode, 204);
        assertError(
          await request(f, 'GET', '/api/v1/groups', { token: secret }),
          401,
          'WEFT_ERR_UNAUTHORIZED',
        );
        assertError(
          await request(f, 'DELETE', `/api/v1/tokens/${token.id}`),
          404,
          'WEFT_ERR_TOKEN_NOT_FOUND',
        );
      });
    });

    describe('members', () => {
      it('go through their whole life: add, list, show, disable, enable, rotate, config, remove', async () => {
        const added = await request(f, 'POST', '/api/v1/members', {
          body: { name: 'alice', groups: [], fullTunnel: false },
        });
        assert.equal(added.statusCode, 201, added.body);
        const alice = json<{ name: string; ip: string; publicKey: string; active: boolean }>(added);
        assertConforms(schemas.MemberView, alice);
        assert.equal(alice.ip, '10.66.0.2');
        assert.equal(alice.active, true);

        for (const name of ['bob', 'carol', 'dave', 'erin'])
          assert.equal((await request(f, 'POST', '/api/v1/members', { body: { name } })).statusCode, 201);

        // Pages of two, by name.
        const seen: string[] = [];
        let after: string | null = '';
        while (after !== null) {
          const url: string = `/api/v1/members?limit=2${after ? `&after=${encodeURIComponent(after)}` : ''}`;
          const page: { items: { name: string }[]; next: string | null; total: number } = json(
            await request(f, 'GET', url),
          );
          assertConforms(schemas.MemberPage, page);
          assert.equal(page.total, 5);
          assert.ok(page.items.length <= 2);
          seen.push(...page.items.map((m) => m.name));
          after = page.next;
        }
        assert.deepEqual(seen, ['alice', 'bob', 'carol', 'dave', 'erin']);
        const found = json<{ items: { name: string }[]; total: number }>(
          await request(f, 'GET', '/api/v1/members?search=CAR'),
        );
        assert.deepEqual(
          found.items.map((m) => m.name),
          ['carol'],
        );
        assert.equal(found.total, 1);

        const shown = await request(f, 'GET', '/api/v1/members/alice');
        assert.equal(shown.statusCode, 200);
        assert.deepEqual(json(shown), alice);

        const disabled = json<{ disabled: boolean; active: boolean }>(
          await request(f, 'POST', '/api/v1/members/alice/disable'),
        );
        assert.equal(disabled.disabled, true);
        assert.equal(disabled.active, false);
        // A bodiless POST with a JSON content type is taken as having no body.
        const enabled = await request(f, 'POST', '/api/v1/members/alice/enable', {
          headers: { 'content-type': 'application/json' },
        });
        assert.equal(enabled.statusCode, 200, enabled.body);
        assert.equal(json<{ active: boolean }>(enabled).active, true);

        const rotated = json<{ publicKey: string; hasPrivateKey: boolean }>(
          await request(f, 'POST', '/api/v1/members/alice/rotate'),
        );
        assert.notEqual(rotated.publicKey, alice.publicKey);
        assert.equal(rotated.hasPrivateKey, true);

        const configRes = await request(f, 'GET', '/api/v1/members/alice/config');
        assert.equal(configRes.statusCode, 200);
        assert.match(String(configRes.headers['content-type']), /^text\/plain/);
        assert.equal(configRes.headers['content-disposition'], 'attachment; filename="alice.conf"');
        const parsed = parseWgQuick(configRes.body, 'alice.conf');
        assert.ok(parsed.ok, parsed.ok ? '' : JSON.stringify(parsed.errors));
        const status = json<{ gateway: { publicKey: string } }>(await request(f, 'GET', '/api/v1/status'));
        assert.equal(parsed.config.interface.privateKey.publicKey().toBase64(), rotated.publicKey);
        assert.deepEqual(
          parsed.config.interface.addresses.map((a) => a.text),
          ['10.66.0.2/32'],
        );
        assert.equal(parsed.config.peers.length, 1);
        assert.equal(parsed.config.peers[0]!.publicKey.toBase64(), status.gateway.publicKey);
        assert.deepEqual(parsed.config.peers[0]!.endpoint, { host: 'vpn.example.com', port: 51820 });

        const qr = await request(f, 'GET', '/api/v1/members/alice/config.svg');
        assert.equal(qr.statusCode, 200);
        assert.match(String(qr.headers['content-type']), /^image\/svg\+xml/);
        assert.match(qr.body, /^<svg[\s\S]*<\/svg>\s*$/);

        // The member brings its own key: the server keeps no private key.
        const own = PrivateKey.generate().publicKey().toBase64();
        const ownRotated = json<{ publicKey: string; hasPrivateKey: boolean }>(
          await request(f, 'POST', '/api/v1/members/alice/rotate', { body: { publicKey: own } }),
        );
        assert.deepEqual([ownRotated.publicKey, ownRotated.hasPrivateKey], [own, false]);
        const placeholder = await request(f, 'GET', '/api/v1/members/alice/config');
        assert.equal(placeholder.statusCode, 200);
        assert.match(placeholder.body, /PrivateKey = REPLACE_WITH_YOUR_PRIVATE_KEY/);
        assertError(
          await request(f, 'GET', '/api/v1/members/alice/config.svg'),
          409,
          'WEFT_ERR_NO_PRIVATE_KEY',
          'name',
        );
        assertError(
          await request(f, 'POST', '/api/v1/members/bob/rotate', { body: { publicKey: own } }),
          409,
          'WEFT_ERR_KEY_CONFLICT',
          'publicKey',
        );

        const patched = json<{ fullTunnel: boolean; expiresAt: string }>(
          await request(f, 'PATCH', '/api/v1/members/alice', {
            body: { fullTunnel: true, expiresAt: '2999-01-31' },
          }),
        );
        assert.equal(patched.fullTunnel, true);
        assert.equal(patched.expiresAt, '2999-01-31T23:59:59.999Z');

        assert.equal((await request(f, 'DELETE', '/api/v1/members/alice')).statusCode, 204);
        assertError(await request(f, 'GET', '/api/v1/members/alice'), 404, 'WEFT_ERR_MEMBER_NOT_FOUND');
        assertError(await request(f, 'DELETE', '/api/v1/members/alice'), 404, 'WEFT_ERR_MEMBER_NOT_FOUND');
        assertError(
          await request(f, 'GET', '/api/v1/members/alice/config'),
          404,
          'WEFT_ERR_MEMBER_NOT_FOUND',
        );
      });

      it('say when a config changed since it was downloaded (download, QR code)', async () => {
        const view = async (name: string) =>
          json<{ configDownload: { at: string; stale: boolean } | null }>(
            await request(f, 'GET', `/api/v1/members/${name}`),
          );
        await request(f, 'POST', '/api/v1/groups', { body: { name: 'ops' } });
        for (const name of ['olga', 'otto'])
          assert.equal(
            (await request(f, 'POST', '/api/v1/members', { body: { name, groups: ['ops'] } })).statusCode,
            201,
          );
        const before = await view('olga');
        assertConforms(schemas.MemberView, before);
        assert.equal(before.configDownload, null);
        assert.equal((await request(f, 'GET', '/api/v1/members/olga/config')).statusCode, 200);
        assert.equal((await request(f, 'GET', '/api/v1/members/otto/config.svg')).statusCode, 200);
        assert.equal((await view('olga')).configDownload?.stale, false);
        assert.equal((await view('otto')).configDownload?.stale, false);

        const policy = await request(f, 'POST', '/api/v1/policies', {
          body: { action: 'allow', group: 'ops', destination: '10.77.0.0/24' },
        });
        assert.equal(policy.statusCode, 201, policy.body);
        const stale = await view('olga');
        assertConforms(schemas.MemberView, stale);
        assert.equal(stale.configDownload?.stale, true);
        const page = json<{ items: { name: string; configDownload: { stale: boolean } | null }[] }>(
          await request(f, 'GET', '/api/v1/members?search=o'),
        );
        assert.deepEqual(
          page.items.filter((m) => m.name.startsWith('o')).map((m) => [m.name, m.configDownload?.stale]),
          [
            ['olga', true],
            ['otto', true],
          ],
        );

        assert.equal((await request(f, 'GET', '/api/v1/members/olga/config')).statusCode, 200);
        assert.equal((await view('olga')).configDownload?.stale, false, 'the new one was handed out');
        assert.equal((await view('otto')).configDownload?.stale, true);
        const id = json<{ id: number }>(policy).id;
        assert.equal((await request(f, 'DELETE', `/api/v1/policies/${id}`)).statusCode, 204);
        for (const name of ['olga', 'otto'])
          assert.equal((await request(f, 'DELETE', `/api/v1/members/${name}`)).statusCode, 204);
        assert.equal((await request(f, 'DELETE', '/api/v1/groups/ops')).statusCode, 204);
      });

      it('refuse a taken name, a foreign address, a taken address and an unknown group', async () => {
        assertError(
          await request(f, 'POST', '/api/v1/members', { body: { name: 'bob' } }),
          409,
          'WEFT_ERR_MEMBER_EXISTS',
          'name',
        );
        assertError(
          await request(f, 'POST', '/api/v1/members', { body: { name: 'frank', ip: '10.99.0.5' } }),
          400,
          'WEFT_ERR_IP_OUTSIDE_SUBNET',
          'ip',
        );
        const bob = json<{ ip: string }>(await request(f, 'GET', '/api/v1/members/bob'));
        assertError(
          await request(f, 'POST', '/api/v1/members', { body: { name: 'frank', ip: bob.ip } }),
          409,
          'WEFT_ERR_IP_CONFLICT',
          'ip',
        );
        assertError(
          await request(f, 'POST', '/api/v1/members', { body: { name: 'frank', groups: ['nope'] } }),
          404,
          'WEFT_ERR_GROUP_NOT_FOUND',
          'groups',
        );
        assertError(
          await request(f, 'POST', '/api/v1/members', { body: { name: 'frank', ip: 'not-an-ip' } }),
          400,
          'WEFT_ERR_VALIDATION',
          'ip',
        );
        assertError(
          await request(f, 'POST', '/api/v1/members', { body: { name: 'bad name!' } }),
          400,
          'WEFT_ERR_VALIDATION',
          'name',
        );
        // Types are checked before the control plane sees the input, and name the field too.
        assertError(
          await request(f, 'POST', '/api/v1/members', { body: { name: 'frank', groups: ['eng', 7] } }),
          400,
          'WEFT_ERR_VALIDATION',
          'groups[1]',
        );
        assertError(
          await request(f, 'POST', '/api/v1/members', { body: { name: 'frank', fulltunnel: true } }),
          400,
          'WEFT_ERR_VALIDATION',
          'fulltunnel',
        );
        assertError(await request(f, 'POST', '/api/v1/members'), 400, 'WEFT_ERR_VALIDATION');
        assertError(
          await request(f, 'GET', '/api/v1/members?limit=lots'),
          400,
          'WEFT_ERR_VALIDATION',
          'limit',
        );
        assertError(await request(f, 'GET', '/api/v1/members?limit=0'), 400, 'WEFT_ERR_VALIDATION', 'limit');
        assert.equal((await request(f, 'GET', '/api/v1/members/frank')).statusCode, 404);
      });

      it('report traffic since a time, 24 hours by default', async () => {
        const minute = (ago: number): string =>
          new Date(Math.floor(Date.now() / 60_000) * 60_000 - ago * 60_000).toISOString();
        f.store.addTraffic([
          { name: 'bob', at: minute(60 * 48), rxBytes: 1, txBytes: 2 },
          { name: 'bob', at: minute(10), rxBytes: 100, txBytes: 200 },
          { name: 'bob', at: minute(5), rxBytes: 300, txBytes: 400 },
        ]);
        const day = json<Json[]>(await request(f, 'GET', '/api/v1/members/bob/traffic'));
        assert.deepEqual(
          day.map((s) => [s.rxBytes, s.txBytes]),
          [
            [100, 200],
            [300, 400],
          ],
        );
        for (const sample of day) assertConforms(schemas.TrafficSample, sample);
        const since = encodeURIComponent(minute(60 * 72));
        assert.equal(
          json<Json[]>(await request(f, 'GET', `/api/v1/members/bob/traffic?since=${since}`)).length,
          3,
        );
        assertError(
          await request(f, 'GET', '/api/v1/members/bob/traffic?since=yesterday'),
          400,
          'WEFT_ERR_VALIDATION',
          'since',
        );
        assertError(await request(f, 'GET', '/api/v1/members/zed/traffic'), 404, 'WEFT_ERR_MEMBER_NOT_FOUND');
      });
    });

    describe('groups, routes and policies', () => {
      it('groups: add, list, describe, refuse duplicates and removal while in use, remove', async () => {
        const added = await request(f, 'POST', '/api/v1/groups', {
          body: { name: 'eng', description: 'Engineers' },
        });
        assert.equal(added.statusCode, 201);
        assert.deepEqual(json(added), { name: 'eng', description: 'Engineers' });
        assertError(
          await request(f, 'POST', '/api/v1/groups', { body: { name: 'eng' } }),
          409,
          'WEFT_ERR_GROUP_EXISTS',
          'name',
        );
        const patched = await request(f, 'PATCH', '/api/v1/groups/eng', {
          body: { description: 'Engineering' },
        });
        assert.deepEqual(json(patched), { name: 'eng', description: 'Engineering' });
        assertError(
          await request(f, 'PATCH', '/api/v1/groups/ops', { body: { description: 'x' } }),
          404,
          'WEFT_ERR_GROUP_NOT_FOUND',
        );
        assert.equal(
          (await request(f, 'PATCH', '/api/v1/members/bob', { body: { groups: ['eng'] } })).statusCode,
          200,
        );
        const listed = json<{ items: Json[] }>(await request(f, 'GET', '/api/v1/groups')).items;
        assert.deepEqual(listed, [{ name: 'eng', description: 'Engineering', members: 1 }]);
        for (const g of listed) assertConforms(schemas.GroupWithCount, g);
        assertError(await request(f, 'DELETE', '/api/v1/groups/eng'), 409, 'WEFT_ERR_GROUP_IN_USE', 'name');
        await request(f, 'PATCH', '/api/v1/members/bob', { body: { groups: [] } });
        assert.equal((await request(f, 'DELETE', '/api/v1/groups/eng')).statusCode, 204);
        assertError(await request(f, 'DELETE', '/api/v1/groups/eng'), 404, 'WEFT_ERR_GROUP_NOT_FOUND');
      });

      it('routes: add, list, refuse a bad prefix and duplicates, remove by URL-encoded prefix', async () => {
        const added = await request(f, 'POST', '/api/v1/routes', {
          body: { cidr: '10.20.0.0/24', description: 'VPC' },
        });
        assert.equal(added.statusCode, 201);
        assertConforms(schemas.SharedRoute, json(added));
        assertError(
          await request(f, 'POST', '/api/v1/routes', { body: { cidr: '10.20.0.0/24' } }),
          409,
          'WEFT_ERR_ROUTE_EXISTS',
          'cidr',
        );
        for (const cidr of ['10.20.0.1/24', 'nonsense', '10.66.0.0/16'])
          assertError(
            await request(f, 'POST', '/api/v1/routes', { body: { cidr } }),
            400,
            'WEFT_ERR_VALIDATION',
            'cidr',
          );
        assertError(
          await request(f, 'POST', '/api/v1/routes', { body: { cidr: 24 } }),
          400,
          'WEFT_ERR_VALIDATION',
          'cidr',
        );
        assert.deepEqual(json<{ items: Json[] }>(await request(f, 'GET', '/api/v1/routes')).items, [
          { cidr: '10.20.0.0/24', description: 'VPC' },
        ]);
        assert.equal((await request(f, 'DELETE', '/api/v1/routes/10.20.0.0%2F24')).statusCode, 204);
        assertError(
          await request(f, 'DELETE', '/api/v1/routes/10.20.0.0%2F24'),
          404,
          'WEFT_ERR_ROUTE_NOT_FOUND',
        );
        assertError(await request(f, 'DELETE', '/api/v1/routes/banana'), 400, 'WEFT_ERR_VALIDATION', 'cidr');
        assert.deepEqual(json<{ items: Json[] }>(await request(f, 'GET', '/api/v1/routes')).items, []);
      });

      it('policies: add, list, refuse unknown groups, duplicates and bad input, remove', async () => {
        await request(f, 'POST', '/api/v1/groups', { body: { name: 'ops' } });
        const added = await request(f, 'POST', '/api/v1/policies', {
          body: {
            action: 'allow',
            group: 'ops',
            destination: '10.30.0.0/16',
            proto: 'tcp',
            ports: { from: 22 },
          },
        });
        assert.equal(added.statusCode, 201, added.body);
        const policy = json<{ id: number }>(added);
        assertConforms(schemas.Policy, policy);
        assert.deepEqual(policy, {
          id: policy.id,
          action: 'allow',
          group: 'ops',
          destination: '10.30.0.0/16',
          proto: 'tcp',
          ports: { from: 22, to: 22 },
          direction: 'send',
        });
        // A multicast receive rule: a group range (or any), never a unicast prefix or group:NAME.
        const receive = await request(f, 'POST', '/api/v1/policies', {
          body: { action: 'allow', group: 'ops', destination: '239.1.0.0/16', direction: 'receive' },
        });
        assert.equal(receive.statusCode, 201, receive.body);
        const receiveRule = json<{ id: number }>(receive);
        assertConforms(schemas.Policy, receiveRule);
        assert.deepEqual(receiveRule, {
          id: receiveRule.id,
          action: 'allow',
          group: 'ops',
          destination: '239.1.0.0/16',
          proto: 'any',
          ports: null,
          direction: 'receive',
        });
        for (const destination of ['10.30.0.0/16', 'group:ops', '2001:db8::/32'])
          assertError(
            await request(f, 'POST', '/api/v1/policies', {
              body: { action: 'allow', group: 'ops', destination, direction: 'receive' },
            }),
            400,
            'WEFT_ERR_VALIDATION',
            'destination',
          );
        assertError(
          await request(f, 'POST', '/api/v1/policies', {
            body: { action: 'allow', group: 'ops', destination: 'any', direction: 'sideways' },
          }),
          400,
          'WEFT_ERR_VALIDATION',
          'direction',
        );
        assert.equal((await request(f, 'DELETE', `/api/v1/policies/${receiveRule.id}`)).statusCode, 204);
        assertError(
          await request(f, 'POST', '/api/v1/policies', {
            body: {
              action: 'allow',
              group: 'ops',
              destination: '10.30.0.0/16',
              proto: 'tcp',
              ports: { from: 22 },
            },
          }),
          409,
          'WEFT_ERR_POLICY_EXISTS',
        );
        assertError(
          await request(f, 'POST', '/api/v1/policies', {
            body: { action: 'allow', group: 'nobody', destination: 'any' },
          }),
          404,
          'WEFT_ERR_GROUP_NOT_FOUND',
          'group',
        );
        assertError(
          await request(f, 'POST', '/api/v1/policies', {
            body: { action: 'allow', group: '*', destination: '10.1.2.3/8' },
          }),
          400,
          'WEFT_ERR_VALIDATION',
          'destination',
        );
        assertError(
          await request(f, 'POST', '/api/v1/policies', {
            body: { action: 'allow', group: '*', destination: 'any', ports: { from: 80 } },
          }),
          400,
          'WEFT_ERR_VALIDATION',
          'ports',
        );
        assertError(
          await request(f, 'POST', '/api/v1/policies', {
            body: { action: 'maybe', group: '*', destination: 'any' },
          }),
          400,
          'WEFT_ERR_VALIDATION',
          'action',
        );
        assert.deepEqual(json<{ items: Json[] }>(await request(f, 'GET', '/api/v1/policies')).items, [
          policy,
        ]);
        assertError(await request(f, 'DELETE', '/api/v1/policies/x'), 400, 'WEFT_ERR_VALIDATION', 'id');
        assert.equal((await request(f, 'DELETE', `/api/v1/policies/${policy.id}`)).statusCode, 204);
        assertError(
          await request(f, 'DELETE', `/api/v1/policies/${policy.id}`),
          404,
          'WEFT_ERR_POLICY_NOT_FOUND',
          'id',
        );
      });
    });

    describe('settings and status', () => {
      it('reads and changes settings, refusing the subnet and bad values by field', async () => {
        const settings = json(await request(f, 'GET', '/api/v1/settings'));
        assertConforms(schemas.Settings, settings);
        assert.equal(settings.subnet, '10.66.0.0/24');
        const changed = json(await request(f, 'PATCH', '/api/v1/settings', { body: { mtu: 1380 } }));
        assert.deepEqual(changed, { ...settings, mtu: 1380 });
        assertError(
          await request(f, 'PATCH', '/api/v1/settings', { body: { subnet: '10.1.0.0/24' } }),
          400,
          'WEFT_ERR_VALIDATION',
          'subnet',
        );
        assertError(
          await request(f, 'PATCH', '/api/v1/settings', { body: { mtu: 'big' } }),
          400,
          'WEFT_ERR_VALIDATION',
          'mtu',
        );
        assertError(
          await request(f, 'PATCH', '/api/v1/settings', { body: { mtu: 100 } }),
          400,
          'WEFT_ERR_VALIDATION',
          'mtu',
        );
        assertError(
          await request(f, 'PATCH', '/api/v1/settings', { body: { dns: ['1.1.1.1', 'dns.example'] } }),
          400,
          'WEFT_ERR_VALIDATION',
          'dns[1]',
        );
        await request(f, 'PATCH', '/api/v1/settings', { body: { mtu: 1420 } });
      });

      it('reports status without a running gateway', async () => {
        const status = json<{ live: unknown; gateway: Json; members: Json; settings: Json }>(
          await request(f, 'GET', '/api/v1/status'),
        );
        assertConforms(schemas.Status, status);
        assert.equal(status.live, null);
        assert.deepEqual(status.gateway, { publicKey: f.cp.gatewayPublicKey(), ip: '10.66.0.1', ip6: null });
        assert.equal(status.settings.endpoint, 'vpn.example.com:51820');
        const total = f.store.countMembers();
        assert.equal(status.members.total, total);
        assert.equal(status.members.online, 0);
      });
    });

    describe('errors', () => {
      it('maps malformed JSON, oversized bodies, unknown routes and unknown media types', async () => {
        assertError(
          await request(f, 'POST', '/api/v1/groups', {
            body: '{"name": "x",',
            headers: { 'content-type': 'application/json' },
          }),
          400,
          'WEFT_ERR_VALIDATION',
        );
        assertError(
          await request(f, 'POST', '/api/v1/groups', {
            body: JSON.stringify({ name: 'big', description: 'x'.repeat(1024 * 1024) }),
            headers: { 'content-type': 'application/json' },
          }),
          413,
          'WEFT_ERR_PAYLOAD_TOO_LARGE',
        );
        assertError(await request(f, 'GET', '/api/v1/nothing-here'), 404, 'WEFT_ERR_NOT_FOUND');
        assertError(
          await request(f, 'GET', '/api/v1/nothing-here', { token: null }),
          404,
          'WEFT_ERR_NOT_FOUND',
        );
        assertError(await request(f, 'PUT', '/api/v1/groups'), 404, 'WEFT_ERR_NOT_FOUND');
        assertError(await request(f, 'GET', '/nothing'), 404, 'WEFT_ERR_NOT_FOUND');
        // A path that does not even decode fails before routing, in the same shape.
        assertError(await request(f, 'GET', '/api/v1/members/%zz'), 400, 'WEFT_ERR_VALIDATION');
        assertError(
          await request(f, 'POST', '/api/v1/groups', {
            body: '<group/>',
            headers: { 'content-type': 'application/xml' },
          }),
          400,
          'WEFT_ERR_VALIDATION',
          'content-type',
        );
        assertError(
          await request(f, 'POST', '/api/v1/groups', {
            body: '{"__proto__": {"admin": true}, "name": "x"}',
            headers: { 'content-type': 'application/json' },
          }),
          400,
          'WEFT_ERR_VALIDATION',
        );
      });

      it('apply and export exist, and map bad input to the error shape', async () => {
        assertError(
          await request(f, 'POST', '/api/v1/apply', { body: { members: 5 } }),
          400,
          'WEFT_ERR_VALIDATION',
          'members',
        );
        assertError(
          await request(f, 'POST', '/api/v1/apply', { body: { memebrs: [] } }),
          400,
          'WEFT_ERR_VALIDATION',
          'memebrs',
        );
        assertError(
          await request(f, 'POST', '/api/v1/apply?dryRun=perhaps', { body: {} }),
          400,
          'WEFT_ERR_VALIDATION',
          'dryRun',
        );
        // Whatever export answers, it is not "no such endpoint" and never an unauthenticated success.
        assert.notEqual((await request(f, 'GET', '/api/v1/export')).statusCode, 404);
        assert.equal((await request(f, 'GET', '/api/v1/export', { token: null })).statusCode, 401);
        // YAML is a media type /apply takes (whatever the parser then makes of it).
        const yaml = await request(f, 'POST', '/api/v1/apply?dryRun=true', {
          body: 'groups: [\n',
          headers: { 'content-type': 'application/yaml' },
        });
        assert.notEqual(json<{ error?: { field?: string } }>(yaml).error?.field, 'content-type');
      });
    });

    describe('audit', () => {
      it('records token:<name> as the actor of every change made through the API', async () => {
        const entries = json<{ actor: string; action: string; target: string }[]>(
          await request(f, 'GET', '/api/v1/audit?limit=1000'),
        );
        for (const e of entries) assertConforms(schemas.AuditEntry, e);
        const actions = new Set(entries.map((e) => e.action));
        for (const action of [
          'member.add',
          'member.disable',
          'member.enable',
          'member.rotate',
          'member.update',
          'member.remove',
          'group.add',
          'group.update',
          'group.remove',
          'route.add',
          'route.remove',
          'policy.add',
          'policy.remove',
          'settings.update',
          'token.create',
        ])
          assert.ok(actions.has(action), `no ${action} entry`);
        for (const e of entries) {
          if (e.action === 'server.init') assert.equal(e.actor, 'init');
          else if (e.action === 'token.revoke') assert.equal(e.actor, 'token:short-lived');
          else assert.equal(e.actor, 'token:init', `${e.action} ${e.target}`);
        }

        const { secret } = json<{ secret: string }>(
          await request(f, 'POST', '/api/v1/tokens', { body: { name: 'ci' } }),
        );
        await request(f, 'POST', '/api/v1/groups', { token: secret, body: { name: 'from-ci' } });
        const latest = json<{ actor: string; action: string }[]>(
          await request(f, 'GET', '/api/v1/audit?target=from-ci'),
        );
        assert.deepEqual(
          latest.map((e) => [e.action, e.actor]),
          [['group.add', 'token:ci']],
        );
        const page = json<{ id: number }[]>(await request(f, 'GET', '/api/v1/audit?limit=2'));
        assert.equal(page.length, 2);
        const next = json<{ id: number }[]>(
          await request(f, 'GET', `/api/v1/audit?limit=2&before=${page[1]!.id}`),
        );
        assert.ok(next.every((e) => e.id < page[1]!.id));
      });
    });
  });
}

describe('REST API (failures and live figures)', () => {
  it('answers an unexpected failure with 500 WEFT_ERR_INTERNAL, without its message', async () => {
    class BrokenStore extends MemoryStore {
      override listRoutes(): never {
        throw new Error('disk on fire at /var/lib/weft/weft.db');
      }
    }
    const f = await fixture(new BrokenStore());
    const res = await request(f, 'GET', '/api/v1/routes');
    const error = assertError(res, 500, 'WEFT_ERR_INTERNAL');
    assert.doesNotMatch(res.body, /disk|fire|weft\.db|at /);
    assert.match(error.message, /^internal error \(request /);
    await f.app.close();
  });

  it('answers 503 WEFT_ERR_STORE_UNAVAILABLE with Retry-After while the shared store is unreachable', async () => {
    class UnreachableStore extends MemoryStore {
      override listRoutes(): never {
        throw new StoreUnavailable('postgres://weft:***@db.internal/weft', new Error('connect ECONNREFUSED'));
      }
    }
    const f = await fixture(new UnreachableStore());
    const res = await request(f, 'GET', '/api/v1/routes');
    const error = assertError(res, 503, 'WEFT_ERR_STORE_UNAVAILABLE');
    assert.equal(res.headers['retry-after'], '2');
    assert.match(error.message, /unreachable; nothing was changed/);
    assert.doesNotMatch(res.body, /db\.internal|ECONNREFUSED/);
    await f.app.close();
  });

  it('reports the running gateway and member counts in status', async () => {
    const live: LiveStatus = {
      gateway: () => ({
        interfaceName: 'weft0',
        listenPort: 51820,
        publicKey: 'k',
        membersOnline: 1,
        rxBytes: 10,
        txBytes: 20,
        startedAt: '2030-01-01T00:00:00.000Z',
      }),
    };
    const f = await fixture(new MemoryStore(), live);
    for (const body of [{ name: 'a' }, { name: 'b', disabled: true }, { name: 'c', expiresAt: '2000-01-01' }])
      assert.equal((await request(f, 'POST', '/api/v1/members', { body })).statusCode, 201);
    f.store.putStatuses([
      {
        name: 'a',
        online: true,
        protocol: 'wireguard',
        since: new Date().toISOString(),
        endpoint: '192.0.2.1:4000',
        lastHandshake: new Date().toISOString(),
        rxBytes: 1,
        txBytes: 2,
        policyDrops: 0,
        updatedAt: new Date().toISOString(),
      },
    ]);
    const status = json<{ live: Json; members: Json }>(await request(f, 'GET', '/api/v1/status'));
    assertConforms(schemas.Status, status);
    assert.deepEqual(status.live, live.gateway());
    assert.deepEqual(status.members, { total: 3, active: 1, disabled: 1, expired: 1, online: 1 });
    const a = json<{ status: Json }>(await request(f, 'GET', '/api/v1/members/a'));
    assertConforms(schemas.MemberView, a);
    assert.equal(a.status.online, true);
    await f.app.close();
  });

  it('GET /multicast: the setting, and the running replicator (null when none runs here)', async () => {
    const snapshot = {
      counters: { packets: 3, copies: 2, reports: 1 },
      drops: { 'policy-send': 1 },
      groups: [
        {
          group: 'ff15::1:1',
          receivers: [{ port: 'ovpn:erin', expiresInS: 250 }],
          packets: 2,
          copies: 2,
          senders: [{ port: 'wg:alice', packets: 2 }],
        },
      ],
      ports: [{ port: 'wg:alice', sent: 2, received: 0, drops: {} }],
    };
    const idle = await fixture(new MemoryStore());
    const none = json(await request(idle, 'GET', '/api/v1/multicast'));
    assertConforms(Multicast, none);
    assert.deepEqual(none, { on: false, live: null });
    await idle.app.close();
    const f = await fixture(new MemoryStore(), { gateway: () => undefined, multicast: () => snapshot });
    f.cp.updateSettings('t', { multicast: true });
    const res = json(await request(f, 'GET', '/api/v1/multicast'));
    assertConforms(Multicast, res);
    assert.deepEqual(res, { on: true, live: snapshot });
    await f.app.close();
  });

  it('serves Prometheus metrics to API tokens: members, traffic, handshakes, drops by reason, memory', async () => {
    let running = true;
    const live: LiveStatus = {
      gateway: () => undefined,
      metrics: () =>
        running
          ? {
              members: [
                { name: 'a', online: true, rxBytes: 1500, txBytes: 900, handshakes: 3, policyDrops: 2 },
                { name: 'b', online: false, rxBytes: 0, txBytes: 0, handshakes: 0, policyDrops: 0 },
              ],
              drops: {
                wireguard: { 'bad-mac1': 4, 'a-reason-added-later': 1 },
                router: { 'no-route': 5 },
                firewall: { policy: 2 },
              },
            }
          : undefined,
    };
    const f = await fixture(new MemoryStore(), live);
    for (const body of [{ name: 'a' }, { name: 'b', disabled: true }])
      assert.equal((await request(f, 'POST', '/api/v1/members', { body })).statusCode, 201);
    assertError(await request(f, 'GET', '/api/v1/metrics', { token: null }), 401, 'WEFT_ERR_UNAUTHORIZED');
    assertError(
      await request(f, 'GET', '/api/v1/metrics', { token: 'weft_notavalidtoken' }),
      401,
      'WEFT_ERR_UNAUTHORIZED',
    );
    const res = await request(f, 'GET', '/api/v1/metrics');
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    const body = res.body;
    assert.ok(body.endsWith('\n'));
    // Every sample line is NAME{labels} VALUE, and every family has HELP and TYPE before its samples.
    const families = new Set<string>();
    for (const line of body.trimEnd().split('\n')) {
      const type = /^# TYPE (\w+) (counter|gauge)$/.exec(line);
      if (type) families.add(type[1]!);
      if (line.startsWith('#')) continue;
      const sample = /^(\w+)(\{[^}]*\})? (\d+|NaN)$/.exec(line);
      assert.ok(sample, line);
      assert.ok(families.has(sample[1]!), `${sample[1]} has a TYPE line before it`);
    }
    for (const line of [
      'weft_members 2',
      'weft_members_active 1',
      'weft_gateway_up 1',
      'weft_members_online 1',
      'weft_member_online{member="a"} 1',
      'weft_member_receive_bytes_total{member="a"} 1500',
      'weft_member_transmit_bytes_total{member="a"} 900',
      'weft_member_handshakes_total{member="a"} 3',
      'weft_member_policy_drops_total{member="a"} 2',
      'weft_handshakes_total 3',
      'weft_drops_total{source="wireguard",reason="bad-mac1"} 4',
      'weft_drops_total{source="wireguard",reason="a-reason-added-later"} 1',
      'weft_drops_total{source="router",reason="no-route"} 5',
      'weft_drops_total{source="firewall",reason="policy"} 2',
    ])
      assert.ok(body.split('\n').includes(line), `missing: ${line}`);
    const rss = /^process_resident_memory_bytes (\d+)$/m.exec(body);
    assert.ok(rss && Number(rss[1]) > 1_000_000);

    running = false;
    const idle = (await request(f, 'GET', '/api/v1/metrics')).body;
    assert.match(idle, /^weft_gateway_up 0$/m);
    assert.match(idle, /^weft_members 2$/m);
    assert.doesNotMatch(idle, /weft_member_online/);
    await f.app.close();
  });
});
