/**
 * The web console's side of the API through inject(), with an injected clock: login and its throttle, the
 * session cookie, expiry, CSRF, TOTP, password change, one-time download links, the next address, the
 * network's traffic, the console's files with their security headers, and the OpenAPI document. Each test
 * builds its own server, so throttles and sessions never leak from one test into another.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import type { z } from 'zod';
import * as schemas from '../../src/api/schemas.js';
import { buildApi } from '../../src/api/server.js';
import { SESSION_LIMITS, SessionTable } from '../../src/api/sessions.js';
import { CONSOLE_CSP, defaultWebRoot, resolveStaticFile } from '../../src/api/static.js';
import { ControlPlane } from '../../src/control/control-plane.js';
import type { Store } from '../../src/control/store.js';
import { hotp, totp, totpKey, totpStep } from '../../src/control/totp.js';
import { MemoryStore } from '../support/memory-store.js';

type Json = Record<string, unknown>;

const START = Date.parse('2030-01-01T00:00:00.000Z');
const MINUTE = 60_000;

interface Fixture {
  readonly app: FastifyInstance;
  readonly cp: ControlPlane;
  readonly store: Store;
  readonly password: string;
  readonly token: string;
  readonly sessions: SessionTable;
  /** Moves the clock of the control plane, the sessions and the throttles. */
  advance(ms: number): void;
  now(): number;
}

async function fixture(
  t: TestContext,
  options: { webRoot?: string | null; subnet6?: string; sessions?: SessionTable } = {},
): Promise<Fixture> {
  let clock = START;
  const now = (): number => clock;
  const store = new MemoryStore();
  const init = ControlPlane.init(
    store,
    {
      endpoint: 'vpn.example.com:51820',
      subnet: '10.66.0.0/24',
      ...(options.subnet6 ? { subnet6: options.subnet6 } : {}),
    },
    new Date(clock),
  );
  const cp = new ControlPlane(store, () => new Date(clock));
  const sessions = options.sessions ?? new SessionTable(SESSION_LIMITS, now);
  const app = buildApi({
    controlPlane: cp,
    sessions,
    now,
    webRoot: options.webRoot === undefined ? null : options.webRoot,
  });
  await app.ready();
  t.after(async () => {
    await app.close();
    store.close();
  });
  return {
    app,
    cp,
    store,
    sessions,
    password: init.adminPassword,
    token: init.apiToken,
    advance: (ms) => void (clock += ms),
    now,
  };
}

interface Call {
  readonly body?: unknown;
  readonly cookie?: string;
  readonly csrf?: string;
  readonly token?: string;
  readonly ip?: string;
  readonly headers?: Record<string, string>;
}

function call(f: Fixture, method: InjectOptions['method'], url: string, c: Call = {}) {
  const headers: Record<string, string> = { ...c.headers };
  if (c.cookie !== undefined) headers.cookie = c.cookie;
  if (c.csrf !== undefined) headers['x-csrf-token'] = c.csrf;
  if (c.token !== undefined) headers.authorization = `Bearer ${c.token}`;
  return f.app.inject({
    method,
    url,
    headers,
    remoteAddress: c.ip ?? '127.0.0.1',
    ...(c.body === undefined ? {} : { payload: c.body as Json }),
  });
}

function setCookies(res: LightMyRequestResponse): string[] {
  const raw = res.headers['set-cookie'];
  return raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
}

function assertError(res: LightMyRequestResponse, status: number, code: string, field?: string): Json {
  assert.equal(res.statusCode, status, res.body);
  const body = res.json<{ error: { code: string; message: string; field?: string } }>();
  assert.equal(body.error.code, code, res.body);
  if (field !== undefined) assert.equal(body.error.field, field, res.body);
  return body.error;
}

function assertConforms(schema: z.ZodType, value: unknown): void {
  const parsed = schema.safeParse(value);
  assert.ok(parsed.success, parsed.success ? '' : JSON.stringify(parsed.error.issues));
  assert.deepEqual(parsed.data, value, 'the response has fields its schema does not document');
}

interface Login {
  readonly res: LightMyRequestResponse;
  /** "weft_session=<id>", for the Cookie header. */
  readonly cookie: string;
  readonly csrf: string;
}

async function login(
  f: Fixture,
  body: { username?: string; password?: string; totp?: string } = {},
  ip?: string,
): Promise<Login> {
  const res = await call(f, 'POST', '/api/v1/session', {
    body: { username: 'admin', password: f.password, ...body },
    ...(ip ? { ip } : {}),
  });
  const set = setCookies(res).find((c) => c.startsWith('weft_session='));
  const cookie = set?.split(';')[0] ?? '';
  const csrf = res.statusCode === 200 ? res.json<{ csrfToken: string }>().csrfToken : '';
  return { res, cookie, csrf };
}

/** A session, asserting that logging in worked. */
async function session(f: Fixture, ip?: string): Promise<Login> {
  const l = await login(f, {}, ip);
  assert.equal(l.res.statusCode, 200, l.res.body);
  return l;
}

describe('console login', () => {
  it('answers the user, the CSRF token and the TOTP state, and sets a strict session cookie', async (t) => {
    const f = await fixture(t);
    const { res, cookie } = await login(f);
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json<{ username: string; csrfToken: string; totpEnabled: boolean }>();
    assertConforms(schemas.SessionInfo, body);
    assert.equal(body.username, 'admin');
    assert.equal(body.totpEnabled, false);
    assert.match(body.csrfToken, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(res.headers['cache-control'], 'no-store');
    const [set] = setCookies(res);
    assert.ok(set);
    const [pair, ...attributes] = set.split('; ');
    assert.match(pair!, /^weft_session=[A-Za-z0-9_-]{43}$/, '256 random bits');
    assert.equal(cookie, pair);
    assert.ok(attributes.includes('HttpOnly'));
    assert.ok(attributes.includes('SameSite=Strict'));
    assert.ok(attributes.includes('Path=/'));
    assert.ok(attributes.includes(`Max-Age=${12 * 60 * 60}`));
    assert.ok(!attributes.includes('Secure'), 'not over plain HTTP');

    const again = await login(f);
    assert.notEqual(again.cookie, cookie, 'every login is a new session');
    assert.notEqual(again.csrf, body.csrfToken);
  });

  it('gives one answer for a wrong password and an unknown user', async (t) => {
    const f = await fixture(t);
    const wrong = assertError(
      (await login(f, { password: 'wrong password!' })).res,
      401,
      'WEFT_ERR_UNAUTHORIZED',
    );
    const unknown = assertError((await login(f, { username: 'root' })).res, 401, 'WEFT_ERR_UNAUTHORIZED');
    const both = assertError(
      (await login(f, { username: 'root', password: 'x' })).res,
      401,
      'WEFT_ERR_UNAUTHORIZED',
    );
    assert.deepEqual(wrong, unknown);
    assert.deepEqual(wrong, both);
    assert.equal(setCookies((await login(f, { password: 'nope' })).res).length, 0, 'no cookie on failure');
    assertError(
      await call(f, 'POST', '/api/v1/session', { body: { username: 'admin' } }),
      400,
      'WEFT_ERR_VALIDATION',
      'password',
    );
  });

  it('refuses an address after 5 failures in 5 minutes, even with the right password; loopback too', async (t) => {
    const f = await fixture(t);
    for (const ip of ['192.0.2.7', '127.0.0.1']) {
      for (let i = 0; i < 5; i++)
        assertError((await login(f, { password: `guess ${i}` }, ip)).res, 401, 'WEFT_ERR_UNAUTHORIZED');
      const sixth = (await login(f, {}, ip)).res;
      assertError(sixth, 429, 'WEFT_ERR_RATE_LIMITED');
      const retry = Number(sixth.headers['retry-after']);
      assert.ok(retry > 0 && retry <= 300, `Retry-After ${retry}`);
    }
    // Another address is not affected; an IPv6 client is counted by its /64.
    await session(f, '198.51.100.1');
    for (let i = 0; i < 5; i++)
      assertError(
        (await login(f, { password: 'guess' }, `2001:db8:1:2::${i + 1}`)).res,
        401,
        'WEFT_ERR_UNAUTHORIZED',
      );
    assertError((await login(f, {}, '2001:db8:1:2:ffff::9')).res, 429, 'WEFT_ERR_RATE_LIMITED');
    await session(f, '2001:db8:1:3::1');

    // Five minutes after the failures, the address may try again; a success forgets its failures.
    f.advance(5 * MINUTE);
    await session(f, '192.0.2.7');
    for (let i = 0; i < 4; i++) await login(f, { password: 'guess' }, '192.0.2.7');
    await session(f, '192.0.2.7');
  });

  it('does not count a right password without its TOTP code as a failure', async (t) => {
    const f = await fixture(t);
    const { cookie, csrf } = await session(f);
    const secret = await enrol(f, cookie, csrf);
    for (let i = 0; i < 8; i++) assertError((await login(f, {})).res, 401, 'WEFT_ERR_TOTP_REQUIRED', 'totp');
    f.advance(30_000);
    const ok = await login(f, { totp: totp(totpKey(secret), f.now()) });
    assert.equal(ok.res.statusCode, 200, ok.res.body);
  });
});

describe('console login audit', () => {
  it('records logins, refused logins (with the reason) and logouts, with the client address', async (t) => {
    const f = await fixture(t);
    await login(f, { password: 'wrong password!' }, '192.0.2.7');
    await login(f, { username: 'root' }, '192.0.2.7');
    const { cookie, csrf } = await session(f, '198.51.100.9');
    const out = await call(f, 'DELETE', '/api/v1/session', { cookie, csrf, ip: '198.51.100.9' });
    assert.equal(out.statusCode, 204, out.body);
    const entries = f.cp
      .listAudit({ limit: 100 })
      .filter((e) => e.action.startsWith('session.'))
      .reverse()
      .map(({ actor, action, target, detail }) => ({ actor, action, target, detail }));
    assert.deepEqual(entries, [
      {
        actor: 'client:192.0.2.7',
        action: 'session.login.refused',
        target: 'admin',
        detail: { from: '192.0.2.7', reason: 'credentials' },
      },
      {
        actor: 'client:192.0.2.7',
        action: 'session.login.refused',
        target: 'root',
        detail: { from: '192.0.2.7', reason: 'credentials' },
      },
      { actor: 'admin:admin', action: 'session.login', target: 'admin', detail: { from: '198.51.100.9' } },
      { actor: 'admin:admin', action: 'session.logout', target: 'admin', detail: { from: '198.51.100.9' } },
    ]);
    assert.ok(!JSON.stringify(f.cp.listAudit({ limit: 100 })).includes(f.password), 'no password is written');
  });

  it('writes nothing for attempts the throttle refuses', async (t) => {
    const f = await fixture(t);
    for (let i = 0; i < 8; i++) await login(f, { password: `wrong password ${i}` }, '203.0.113.5');
    const refused = f.cp.listAudit({ limit: 100 }).filter((e) => e.action === 'session.login.refused');
    assert.equal(refused.length, 5, 'five failures reach the check; the rest get 429 first');
  });
});

describe('console sessions', () => {
  it('GET /session answers the session; 401 without one; 403 for an API token', async (t) => {
    const f = await fixture(t);
    const { cookie, csrf } = await session(f);
    const res = await call(f, 'GET', '/api/v1/session', { cookie });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(res.json(), { username: 'admin', csrfToken: csrf, totpEnabled: false });
    assert.equal(res.headers['cache-control'], 'no-store');
    assertError(await call(f, 'GET', '/api/v1/session'), 401, 'WEFT_ERR_UNAUTHORIZED');
    assertError(await call(f, 'GET', '/api/v1/session', { token: f.token }), 403, 'WEFT_ERR_FORBIDDEN');
    // A session works for the rest of the API.
    assert.equal((await call(f, 'GET', '/api/v1/members', { cookie })).statusCode, 200);
    assert.equal((await call(f, 'GET', '/api/v1/status', { cookie })).statusCode, 200);
  });

  it('logout ends the session and clears the cookie; the ended cookie is 401 and cleared', async (t) => {
    const f = await fixture(t);
    const { cookie, csrf } = await session(f);
    const other = await session(f);
    assertError(await call(f, 'DELETE', '/api/v1/session', { cookie }), 403, 'WEFT_ERR_CSRF');
    const out = await call(f, 'DELETE', '/api/v1/session', { cookie, csrf });
    assert.equal(out.statusCode, 204, out.body);
    const [cleared] = setCookies(out);
    assert.match(cleared ?? '', /^weft_session=; .*Max-Age=0/);
    const after = await call(f, 'GET', '/api/v1/session', { cookie });
    assertError(after, 401, 'WEFT_ERR_UNAUTHORIZED');
    assert.match(setCookies(after)[0] ?? '', /^weft_session=; .*Max-Age=0/);
    assert.equal((await call(f, 'GET', '/api/v1/session', { cookie: other.cookie })).statusCode, 200);
  });

  it('an ended session cookie is not counted as a guess by the API throttle', async (t) => {
    const f = await fixture(t);
    const { cookie, csrf } = await session(f, '192.0.2.9');
    await call(f, 'DELETE', '/api/v1/session', { cookie, csrf, ip: '192.0.2.9' });
    for (let i = 0; i < 30; i++)
      assertError(
        await call(f, 'GET', '/api/v1/members', { cookie, ip: '192.0.2.9' }),
        401,
        'WEFT_ERR_UNAUTHORIZED',
      );
    const res = await call(f, 'GET', '/api/v1/members', { token: f.token, ip: '192.0.2.9' });
    assert.equal(res.statusCode, 200, res.body);
  });

  it('expires after 30 minutes without use', async (t) => {
    const f = await fixture(t);
    const { cookie } = await session(f);
    for (let i = 0; i < 4; i++) {
      f.advance(29 * MINUTE);
      assert.equal((await call(f, 'GET', '/api/v1/session', { cookie })).statusCode, 200, `use ${i}`);
    }
    f.advance(30 * MINUTE);
    assertError(await call(f, 'GET', '/api/v1/session', { cookie }), 401, 'WEFT_ERR_UNAUTHORIZED');
    // Ended for good: a clock that steps back does not revive it.
    f.advance(-30 * MINUTE + 1);
    assertError(await call(f, 'GET', '/api/v1/session', { cookie }), 401, 'WEFT_ERR_UNAUTHORIZED');
  });

  it('expires 12 hours after login, however much it is used', async (t) => {
    const f = await fixture(t);
    const { cookie } = await session(f);
    let elapsed = 0;
    while (elapsed + 20 * MINUTE < 12 * 60 * MINUTE) {
      f.advance(20 * MINUTE);
      elapsed += 20 * MINUTE;
      assert.equal((await call(f, 'GET', '/api/v1/members', { cookie })).statusCode, 200, `${elapsed} ms`);
    }
    f.advance(12 * 60 * MINUTE - elapsed);
    assertError(await call(f, 'GET', '/api/v1/members', { cookie }), 401, 'WEFT_ERR_UNAUTHORIZED');
  });

  it('CSRF: changes need the session’s X-CSRF-Token; reads do not; API tokens never do', async (t) => {
    const f = await fixture(t);
    const { cookie, csrf } = await session(f);
    const wrong = `${csrf.slice(0, -1)}${csrf.endsWith('A') ? 'B' : 'A'}`;
    const changes: [InjectOptions['method'], string, unknown][] = [
      ['POST', '/api/v1/groups', { name: 'eng' }],
      ['PATCH', '/api/v1/groups/eng', { description: 'Engineering' }],
      ['DELETE', '/api/v1/groups/eng', undefined],
    ];
    for (const [method, url, body] of changes) {
      for (const bad of [undefined, '', wrong, csrf.slice(1), `${csrf}x`])
        assertError(
          await call(f, method, url, { cookie, body, ...(bad === undefined ? {} : { csrf: bad }) }),
          403,
          'WEFT_ERR_CSRF',
        );
      // Another session's token is no good either.
      const other = await session(f);
      assertError(await call(f, method, url, { cookie, body, csrf: other.csrf }), 403, 'WEFT_ERR_CSRF');
      const ok = await call(f, method, url, { cookie, body, csrf });
      assert.ok(ok.statusCode < 300, `${method} ${url}: ${ok.statusCode} ${ok.body}`);
    }
    assert.equal((await call(f, 'GET', '/api/v1/groups', { cookie })).statusCode, 200);
    assert.equal((await call(f, 'HEAD', '/api/v1/groups', { cookie })).statusCode, 200);

    // A token needs no CSRF token, with or without a cookie beside it.
    const byToken = await call(f, 'POST', '/api/v1/groups', { token: f.token, body: { name: 'ops' } });
    assert.equal(byToken.statusCode, 201, byToken.body);
    const both = await call(f, 'POST', '/api/v1/groups', { token: f.token, cookie, body: { name: 'qa' } });
    assert.equal(both.statusCode, 201, both.body);

    // What the session did is audited as admin:admin, what the token did as token:init.
    const audit = f.cp.listAudit({ limit: 100 }).filter((e) => e.action.startsWith('group.'));
    assert.deepEqual(audit.map((e) => [e.action, e.target, e.actor]).reverse(), [
      ['group.add', 'eng', 'admin:admin'],
      ['group.update', 'eng', 'admin:admin'],
      ['group.remove', 'eng', 'admin:admin'],
      ['group.add', 'ops', 'token:init'],
      ['group.add', 'qa', 'token:init'],
    ]);
  });

  it('the session table keeps ids only as hashes, and at most maxSessions sessions', () => {
    let clock = START;
    const table = new SessionTable({ ...SESSION_LIMITS, maxSessions: 3 }, () => clock);
    const made = [1, 2, 3].map(() => table.create('admin'));
    for (const { id, session } of made) {
      assert.match(id, /^[A-Za-z0-9_-]{43}$/);
      assert.match(session.key, /^[0-9a-f]{64}$/);
      assert.ok(!JSON.stringify(session).includes(id), 'the id is not in the table');
    }
    clock += MINUTE;
    assert.ok(table.use(made[0]!.id), 'the first is now the most recently used');
    const fourth = table.create('admin');
    assert.equal(table.size, 3);
    assert.equal(table.find(made[1]!.id), undefined, 'the least recently used was ended');
    assert.ok(table.find(made[0]!.id) && table.find(made[2]!.id) && table.find(fourth.id));
    assert.equal(table.find('not-an-id'), undefined);
    assert.equal(table.find('A'.repeat(43)), undefined, 'a well-formed id of no session');
    table.endAllOf('admin', fourth.session);
    assert.equal(table.size, 1);
    clock += SESSION_LIMITS.idleMs;
    assert.equal(table.find(fourth.id), undefined);
    assert.equal(table.size, 0, 'an expired session is dropped when looked up');
    assert.throws(() => new SessionTable({ ...SESSION_LIMITS, maxSessions: 0 }), RangeError);
  });
});

/** Starts and confirms TOTP enrolment in a session; returns the secret. Leaves the clock at the code's step. */
async function enrol(f: Fixture, cookie: string, csrf: string): Promise<string> {
  const started = await call(f, 'POST', '/api/v1/session/totp', { cookie, csrf });
  assert.equal(started.statusCode, 200, started.body);
  const { secret } = started.json<{ secret: string }>();
  const confirmed = await call(f, 'POST', '/api/v1/session/totp/confirm', {
    cookie,
    csrf,
    body: { code: totp(totpKey(secret), f.now()) },
  });
  assert.equal(confirmed.statusCode, 200, confirmed.body);
  return secret;
}

describe('console TOTP', () => {
  it('enrols, then login needs a code, a code works once, and disabling needs a code', async (t) => {
    const f = await fixture(t);
    const { cookie, csrf } = await session(f);

    assertError(
      await call(f, 'POST', '/api/v1/session/totp/confirm', { cookie, csrf, body: { code: '123456' } }),
      409,
      'WEFT_ERR_TOTP_NOT_STARTED',
    );
    assertError(
      await call(f, 'DELETE', '/api/v1/session/totp', { cookie, csrf, body: { code: '123456' } }),
      409,
      'WEFT_ERR_TOTP_NOT_ENABLED',
    );

    const started = await call(f, 'POST', '/api/v1/session/totp', { cookie, csrf });
    assert.equal(started.statusCode, 200, started.body);
    const enrolment = started.json<{ secret: string; otpauthUrl: string; qrSvg: string }>();
    assertConforms(schemas.TotpEnrolment, enrolment);
    assert.match(enrolment.secret, /^[A-Z2-7]{32}$/);
    assert.equal(enrolment.otpauthUrl, `otpauth://totp/Weft:admin?secret=${enrolment.secret}&issuer=Weft`);
    assert.match(enrolment.qrSvg, /^<svg[\s\S]*<\/svg>\s*$/);
    assert.equal(started.headers['cache-control'], 'no-store');
    const key = totpKey(enrolment.secret);

    // Not on until confirmed; a wrong code does not turn it on.
    assert.equal(f.cp.adminTotpEnabled('admin'), false);
    const wrongCode = hotp(key, totpStep(f.now()) + 5n);
    assertError(
      await call(f, 'POST', '/api/v1/session/totp/confirm', { cookie, csrf, body: { code: wrongCode } }),
      400,
      'WEFT_ERR_VALIDATION',
      'code',
    );
    const code = totp(key, f.now());
    const confirmed = await call(f, 'POST', '/api/v1/session/totp/confirm', { cookie, csrf, body: { code } });
    assert.equal(confirmed.statusCode, 200, confirmed.body);
    assert.deepEqual(confirmed.json(), { totpEnabled: true });
    assert.equal(
      (await call(f, 'GET', '/api/v1/session', { cookie })).json<{ totpEnabled: boolean }>().totpEnabled,
      true,
    );
    assertError(
      await call(f, 'POST', '/api/v1/session/totp', { cookie, csrf }),
      409,
      'WEFT_ERR_TOTP_ALREADY_ENABLED',
    );

    // Login: the password alone, or with a wrong code, is not enough; the confirm code is used up.
    assertError((await login(f)).res, 401, 'WEFT_ERR_TOTP_REQUIRED', 'totp');
    assertError((await login(f, { password: 'wrong', totp: code })).res, 401, 'WEFT_ERR_UNAUTHORIZED');
    assertError(
      (await login(f, { totp: '000000' === code ? '111111' : '000000' })).res,
      401,
      'WEFT_ERR_TOTP_REQUIRED',
    );
    assertError((await login(f, { totp: code })).res, 401, 'WEFT_ERR_TOTP_REQUIRED', 'totp');
    f.advance(30_000);
    const next = totp(key, f.now());
    const ok = await login(f, { totp: next });
    assert.equal(ok.res.statusCode, 200, ok.res.body);
    assert.equal(ok.res.json<{ totpEnabled: boolean }>().totpEnabled, true);
    assertError((await login(f, { totp: next })).res, 401, 'WEFT_ERR_TOTP_REQUIRED', 'totp');

    // An API token cannot touch TOTP.
    assertError(await call(f, 'POST', '/api/v1/session/totp', { token: f.token }), 403, 'WEFT_ERR_FORBIDDEN');
    assertError(
      await call(f, 'DELETE', '/api/v1/session/totp', { token: f.token, body: { code: next } }),
      403,
      'WEFT_ERR_FORBIDDEN',
    );

    // Disabling: not with a used or wrong code; then with the next one.
    assertError(
      await call(f, 'DELETE', '/api/v1/session/totp', { cookie, csrf, body: { code: next } }),
      400,
      'WEFT_ERR_VALIDATION',
      'code',
    );
    f.advance(30_000);
    const off = await call(f, 'DELETE', '/api/v1/session/totp', {
      cookie,
      csrf,
      body: { code: totp(key, f.now()) },
    });
    assert.equal(off.statusCode, 200, off.body);
    assert.deepEqual(off.json(), { totpEnabled: false });
    assert.equal((await login(f)).res.statusCode, 200);

    // Audited, as admin:admin, without the secret.
    const entries = f.cp.listAudit({ limit: 100 }).filter((e) => e.action.startsWith('admin.totp'));
    assert.deepEqual(
      entries.map((e) => [e.action, e.actor, e.target]),
      [
        ['admin.totp.disable', 'admin:admin', 'admin'],
        ['admin.totp.enable', 'admin:admin', 'admin'],
      ],
    );
    assert.ok(!JSON.stringify(f.cp.listAudit({ limit: 1000 })).includes(enrolment.secret));
  });

  it('counts wrong codes given to a session toward the login throttle', async (t) => {
    const f = await fixture(t);
    const { cookie, csrf } = await session(f, '192.0.2.50');
    await call(f, 'POST', '/api/v1/session/totp', { cookie, csrf, ip: '192.0.2.50' });
    for (let i = 0; i < 5; i++)
      assertError(
        await call(f, 'POST', '/api/v1/session/totp/confirm', {
          cookie,
          csrf,
          ip: '192.0.2.50',
          body: { code: 'abcdef' },
        }),
        400,
        'WEFT_ERR_VALIDATION',
        'code',
      );
    assertError(
      await call(f, 'POST', '/api/v1/session/totp/confirm', {
        cookie,
        csrf,
        ip: '192.0.2.50',
        body: { code: '1' },
      }),
      429,
      'WEFT_ERR_RATE_LIMITED',
    );
    assertError((await login(f, {}, '192.0.2.50')).res, 429, 'WEFT_ERR_RATE_LIMITED');
  });
});

describe('console password change', () => {
  it('checks the current password, needs 12 characters, ends the other sessions', async (t) => {
    const f = await fixture(t);
    const { cookie, csrf } = await session(f);
    const other = await session(f);
    const next = 'a new passphrase, long enough';
    assertError(
      await call(f, 'PUT', '/api/v1/session/password', { cookie, csrf, body: { current: 'nope', next } }),
      400,
      'WEFT_ERR_VALIDATION',
      'current',
    );
    assertError(
      await call(f, 'PUT', '/api/v1/session/password', {
        cookie,
        csrf,
        body: { current: f.password, next: 'short' },
      }),
      400,
      'WEFT_ERR_VALIDATION',
      'next',
    );
    assertError(
      await call(f, 'PUT', '/api/v1/session/password', { cookie, body: { current: f.password, next } }),
      403,
      'WEFT_ERR_CSRF',
    );
    assertError(
      await call(f, 'PUT', '/api/v1/session/password', {
        token: f.token,
        body: { current: f.password, next },
      }),
      403,
      'WEFT_ERR_FORBIDDEN',
    );
    const changed = await call(f, 'PUT', '/api/v1/session/password', {
      cookie,
      csrf,
      body: { current: f.password, next },
    });
    assert.equal(changed.statusCode, 204, changed.body);
    assertError((await login(f)).res, 401, 'WEFT_ERR_UNAUTHORIZED');
    assert.equal((await login(f, { password: next })).res.statusCode, 200);
    assert.equal((await call(f, 'GET', '/api/v1/session', { cookie })).statusCode, 200, 'this session stays');
    assertError(
      await call(f, 'GET', '/api/v1/session', { cookie: other.cookie }),
      401,
      'WEFT_ERR_UNAUTHORIZED',
    );
    const audit = f.cp.listAudit({ limit: 10 }).find((e) => e.action === 'admin.password');
    assert.equal(audit?.actor, 'admin:admin');
    assert.ok(!JSON.stringify(audit).includes(next));
  });
});

describe('one-time download links', () => {
  async function withMember(f: Fixture, name = 'alice'): Promise<void> {
    const res = await call(f, 'POST', '/api/v1/members', { token: f.token, body: { name } });
    assert.equal(res.statusCode, 201, res.body);
  }

  async function link(f: Fixture, name: string, body?: Json): Promise<{ url: string; expiresAt: string }> {
    const res = await call(f, 'POST', `/api/v1/members/${name}/links`, { token: f.token, body });
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(res.headers['cache-control'], 'no-store');
    const created = res.json<{ url: string; expiresAt: string }>();
    assertConforms(schemas.CreatedLink, created);
    return created;
  }

  it('gives the config once, then 404', async (t) => {
    const f = await fixture(t);
    await withMember(f);
    const { url, expiresAt } = await link(f, 'alice');
    assert.match(url, /^\/dl\/[A-Za-z0-9_-]{43}$/);
    assert.equal(expiresAt, new Date(START + 1440 * MINUTE).toISOString(), 'a day by default');
    const config = (await call(f, 'GET', '/api/v1/members/alice/config', { token: f.token })).body;

    // HEAD does not use it up.
    assert.equal((await call(f, 'HEAD', url)).statusCode, 404);
    const first = await call(f, 'GET', url);
    assert.equal(first.statusCode, 200, first.body);
    assert.match(String(first.headers['content-type']), /^text\/plain/);
    assert.equal(first.headers['content-disposition'], 'attachment; filename="alice.conf"');
    assert.equal(first.headers['cache-control'], 'no-store');
    assert.equal(first.headers['referrer-policy'], 'no-referrer');
    assert.equal(first.body, config);
    const second = await call(f, 'GET', url);
    assertError(second, 404, 'WEFT_ERR_LINK_INVALID');
    assert.equal(second.headers['cache-control'], 'no-store');
    assertError(await call(f, 'GET', '/dl/nonsense'), 404, 'WEFT_ERR_LINK_INVALID');
    assertError(await call(f, 'GET', `/dl/${'x'.repeat(99)}`), 404, 'WEFT_ERR_LINK_INVALID');

    // Audited, without the token.
    const audit = f.cp.listAudit({ limit: 10, target: 'alice' });
    assert.deepEqual(
      audit.slice(0, 2).map((e) => [e.action, e.actor]),
      [
        ['member.link.used', 'link'],
        ['member.link', 'token:init'],
      ],
    );
    assert.ok(!JSON.stringify(audit).includes(url.slice(4)));
  });

  it('expires after ttlMinutes; the TTL must be 1-10080 minutes', async (t) => {
    const f = await fixture(t);
    await withMember(f);
    const { url, expiresAt } = await link(f, 'alice', { ttlMinutes: 1 });
    assert.equal(expiresAt, new Date(START + MINUTE).toISOString());
    f.advance(MINUTE);
    assertError(await call(f, 'GET', url), 404, 'WEFT_ERR_LINK_INVALID');
    const week = await link(f, 'alice', { ttlMinutes: 10080 });
    f.advance(10080 * MINUTE - 1);
    assert.equal((await call(f, 'GET', week.url)).statusCode, 200);
    for (const ttlMinutes of [0, 10081, -5])
      assertError(
        await call(f, 'POST', '/api/v1/members/alice/links', { token: f.token, body: { ttlMinutes } }),
        400,
        'WEFT_ERR_VALIDATION',
        'ttlMinutes',
      );
    assertError(
      await call(f, 'POST', '/api/v1/members/alice/links', { token: f.token, body: { ttlMinutes: 1.5 } }),
      400,
      'WEFT_ERR_VALIDATION',
      'ttlMinutes',
    );
    assertError(
      await call(f, 'POST', '/api/v1/members/nobody/links', { token: f.token }),
      404,
      'WEFT_ERR_MEMBER_NOT_FOUND',
    );
  });

  it('stops working when its member is removed, even if the name comes back', async (t) => {
    const f = await fixture(t);
    await withMember(f);
    const { url } = await link(f, 'alice');
    assert.equal((await call(f, 'DELETE', '/api/v1/members/alice', { token: f.token })).statusCode, 204);
    assertError(await call(f, 'GET', url), 404, 'WEFT_ERR_LINK_INVALID');
    await withMember(f);
    assertError(await call(f, 'GET', url), 404, 'WEFT_ERR_LINK_INVALID');
  });

  it('can be made from a console session (with the CSRF token)', async (t) => {
    const f = await fixture(t);
    await withMember(f);
    const { cookie, csrf } = await session(f);
    assertError(await call(f, 'POST', '/api/v1/members/alice/links', { cookie }), 403, 'WEFT_ERR_CSRF');
    const res = await call(f, 'POST', '/api/v1/members/alice/links', {
      cookie,
      csrf,
      body: { ttlMinutes: 5 },
    });
    assert.equal(res.statusCode, 201, res.body);
    assert.equal((await call(f, 'GET', res.json<{ url: string }>().url)).statusCode, 200);
    assert.equal(f.cp.listAudit({ limit: 1, target: 'alice' })[0]?.actor, 'link');
    assert.equal(f.cp.listAudit({ limit: 2, target: 'alice' })[1]?.actor, 'admin:admin');
  });

  it('counts failed links toward the address’s throttle', async (t) => {
    const f = await fixture(t);
    await withMember(f);
    const { url } = await link(f, 'alice');
    for (let i = 0; i < 21; i++)
      assertError(await call(f, 'GET', `/dl/guess${i}`, { ip: '203.0.113.5' }), 404, 'WEFT_ERR_LINK_INVALID');
    const refused = await call(f, 'GET', url, { ip: '203.0.113.5' });
    assertError(refused, 429, 'WEFT_ERR_RATE_LIMITED');
    assert.ok(Number(refused.headers['retry-after']) > 0);
    // The refusal did not use the link up, and another address gets it.
    assert.equal((await call(f, 'GET', url, { ip: '203.0.113.6' })).statusCode, 200);
  });
});

describe('console helpers', () => {
  it('next-ip is what the next POST /members gets, and allocates nothing', async (t) => {
    const f = await fixture(t, { subnet6: 'fd66::/64' });
    const next = async (): Promise<Json> => {
      const res = await call(f, 'GET', '/api/v1/members/next-ip', { token: f.token });
      assert.equal(res.statusCode, 200, res.body);
      assertConforms(schemas.NextIp, res.json());
      return res.json<Json>();
    };
    const add = async (body: Json): Promise<Json> => {
      const res = await call(f, 'POST', '/api/v1/members', { token: f.token, body });
      assert.equal(res.statusCode, 201, res.body);
      const m = res.json<Json>();
      return { ip: m.ip, ip6: m.ip6 };
    };
    assert.deepEqual(await next(), { ip: '10.66.0.2', ip6: 'fd66::2' });
    assert.deepEqual(await next(), { ip: '10.66.0.2', ip6: 'fd66::2' }, 'asking twice reserves nothing');
    for (const name of ['alice', 'bob', 'carol', 'dave']) {
      const suggested = await next();
      assert.deepEqual(await add({ name }), suggested, name);
    }
    // A fixed address in the way is skipped; a freed address is not handed out at once.
    await add({ name: 'erin', ip: '10.66.0.6' });
    assert.equal((await call(f, 'DELETE', '/api/v1/members/bob', { token: f.token })).statusCode, 204);
    const suggested = await next();
    assert.deepEqual(suggested, { ip: '10.66.0.7', ip6: 'fd66::7' });
    assert.deepEqual(await add({ name: 'frank' }), suggested);

    // "next-ip" is not a member name (it would be hidden by this path).
    assertError(
      await call(f, 'POST', '/api/v1/members', { token: f.token, body: { name: 'next-ip' } }),
      400,
      'WEFT_ERR_VALIDATION',
      'name',
    );
    const { cookie } = await session(f);
    assert.equal((await call(f, 'GET', '/api/v1/members/next-ip', { cookie })).statusCode, 200);
  });

  it('traffic sums every member per minute from `since`', async (t) => {
    const f = await fixture(t);
    const at = (minute: number): string => new Date(START + minute * MINUTE).toISOString();
    f.store.addTraffic([
      { name: 'alice', at: at(0), rxBytes: 100, txBytes: 10 },
      { name: 'bob', at: at(0), rxBytes: 1, txBytes: 2 },
      { name: 'alice', at: at(1), rxBytes: 5, txBytes: 0 },
      { name: 'bob', at: at(2), rxBytes: 7, txBytes: 70 },
    ]);
    const res = await call(f, 'GET', `/api/v1/traffic?since=${encodeURIComponent(at(0))}`, {
      token: f.token,
    });
    assert.equal(res.statusCode, 200, res.body);
    const samples = res.json<Json[]>();
    for (const s of samples) assertConforms(schemas.TrafficSample, s);
    assert.deepEqual(samples, [
      { name: '', at: at(0), rxBytes: 101, txBytes: 12 },
      { name: '', at: at(1), rxBytes: 5, txBytes: 0 },
      { name: '', at: at(2), rxBytes: 7, txBytes: 70 },
    ]);
    const later = await call(f, 'GET', `/api/v1/traffic?since=${encodeURIComponent(at(1))}`, {
      token: f.token,
    });
    assert.equal(later.json<Json[]>().length, 2);
    assertError(
      await call(f, 'GET', '/api/v1/traffic?since=yesterday', { token: f.token }),
      400,
      'WEFT_ERR_VALIDATION',
      'since',
    );
    assertError(await call(f, 'GET', '/api/v1/traffic'), 401, 'WEFT_ERR_UNAUTHORIZED');
  });
});

/** The raw answer to `GET <path>` sent as is over a socket (no client-side normalisation of the path). */
async function rawGet(port: number, path: string): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  socket.setEncoding('latin1');
  let out = '';
  socket.on('data', (chunk: string) => (out += chunk));
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`, 'latin1');
  await once(socket, 'close');
  return out;
}

describe('the console’s files', () => {
  function webRoot(t: TestContext): string {
    const dir = mkdtempSync(join(tmpdir(), 'weft-web-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const root = join(dir, 'web');
    mkdirSync(join(root, 'views'), { recursive: true });
    writeFileSync(join(root, 'index.html'), '<!doctype html><title>Weft</title>');
    writeFileSync(join(root, 'main.js'), 'export {};\n');
    writeFileSync(join(root, 'styles.css'), 'body{}\n');
    writeFileSync(join(root, 'icon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
    writeFileSync(join(root, 'views', 'members.js'), 'export const x = 1;\n');
    writeFileSync(join(root, '.secret'), 'HIDDEN-CONTENT');
    writeFileSync(join(dir, 'outside.txt'), 'OUTSIDE-CONTENT');
    symlinkSync(join(dir, 'outside.txt'), join(root, 'link.txt'));
    return root;
  }

  it('serves index.html at / and files by name, with types, ETag and the security headers', async (t) => {
    const f = await fixture(t, { webRoot: webRoot(t) });
    const index = await call(f, 'GET', '/');
    assert.equal(index.statusCode, 200, index.body);
    assert.equal(index.body, '<!doctype html><title>Weft</title>');
    assert.equal(index.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(
      index.headers['content-security-policy'],
      "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; " +
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
    assert.equal(index.headers['content-security-policy'], CONSOLE_CSP);
    assert.equal(index.headers['x-content-type-options'], 'nosniff');
    assert.equal(index.headers['referrer-policy'], 'no-referrer');
    assert.equal(index.headers['x-frame-options'], 'DENY');
    assert.equal(index.headers['cache-control'], 'no-cache');
    const etag = String(index.headers.etag);
    assert.match(etag, /^"[A-Za-z0-9_-]+"$/);
    const cached = await call(f, 'GET', '/', { headers: { 'if-none-match': etag } });
    assert.equal(cached.statusCode, 304);
    assert.equal(cached.body, '');
    assert.equal((await call(f, 'GET', '/index.html')).body, index.body);
    assert.equal((await call(f, 'GET', '/', { headers: { 'if-none-match': '"other"' } })).statusCode, 200);

    for (const [path, type] of [
      ['/main.js', 'text/javascript; charset=utf-8'],
      ['/styles.css', 'text/css; charset=utf-8'],
      ['/icon.svg', 'image/svg+xml'],
      ['/views/members.js', 'text/javascript; charset=utf-8'],
      ['/main.js?v=2', 'text/javascript; charset=utf-8'],
    ] as const) {
      const res = await call(f, 'GET', path);
      assert.equal(res.statusCode, 200, path);
      assert.equal(res.headers['content-type'], type, path);
      assert.equal(res.headers['content-security-policy'], CONSOLE_CSP, path);
    }
    const head = await call(f, 'HEAD', '/main.js');
    assert.equal(head.statusCode, 200);
    assert.equal(head.body, '');

    // API answers carry the headers too, with a policy that lets nothing load.
    const api = await call(f, 'GET', '/api/v1/health');
    assert.equal(api.headers['x-content-type-options'], 'nosniff');
    assert.equal(api.headers['referrer-policy'], 'no-referrer');
    assert.equal(api.headers['content-security-policy'], "default-src 'none'; frame-ancestors 'none'");
    const refused = await call(f, 'GET', '/api/v1/members');
    assert.equal(refused.headers['x-content-type-options'], 'nosniff');
  });

  it('refuses traversal, hidden files, symbolic links and what is not there (404 in the API’s shape)', async (t) => {
    const root = webRoot(t);
    const f = await fixture(t, { webRoot: root });
    // inject() normalises dot segments like a browser; a raw client sends them as they are, so the paths go
    // to a listening server over a plain socket too.
    await f.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = f.app.server.address() as AddressInfo;
    for (const path of [
      '/../outside.txt',
      '/..%2foutside.txt',
      '/%2e%2e/outside.txt',
      '/%2E%2E%2Foutside.txt',
      '/views/../index.html',
      '/views/%2e%2e/index.html',
      '/views/..%5cindex.html',
      '/views\\..\\index.html',
      '/index.html%00',
      '/index.html%00.js',
      '/.secret',
      '/link.txt',
      '/views',
      '/views/',
      '//index.html',
      '/missing.js',
      '/index.html/',
      '/%69ndex.html',
    ]) {
      // Through inject, "/views/../index.html" arrives as "/index.html" (and is served); nothing gets out.
      const res = await call(f, 'GET', path);
      assert.ok(!res.body.includes('OUTSIDE-CONTENT') && !res.body.includes('HIDDEN-CONTENT'), path);
      if (!path.includes('..') && !/%2e/i.test(path)) {
        assert.equal(res.statusCode, 404, `${path}: ${res.statusCode} ${res.body.slice(0, 80)}`);
        assert.equal(res.json<{ error: { code: string } }>().error.code, 'WEFT_ERR_NOT_FOUND', path);
      }
      const raw = await rawGet(port, path);
      assert.match(raw, /^HTTP\/1\.1 (404|400) /, `${path} (raw): ${raw.slice(0, 200)}`);
      assert.ok(!raw.includes('OUTSIDE-CONTENT') && !raw.includes('HIDDEN-CONTENT'), `${path} (raw)`);
    }
    assert.match(await rawGet(port, '/index.html'), /^HTTP\/1\.1 200 /);
    // The check itself, on the paths as they arrive.
    for (const path of [
      '/../outside.txt',
      '/views/../index.html',
      '/views/..',
      '/.',
      '/a\\b',
      '/index.html\0',
    ])
      assert.equal(resolveStaticFile(root, path), undefined, path);
    assert.equal(resolveStaticFile(root, '/'), join(root, 'index.html'));
    assert.equal(resolveStaticFile(root, '/views/members.js'), join(root, 'views', 'members.js'));
    assert.equal(resolveStaticFile(join(root, 'missing'), '/'), undefined);
    // Unknown API paths are still the API's 404.
    assertError(await call(f, 'GET', '/api/v1/nothing-here'), 404, 'WEFT_ERR_NOT_FOUND');
    assertError(await call(f, 'POST', '/index.html'), 404, 'WEFT_ERR_NOT_FOUND');
  });

  it('serves nothing with webRoot null; by default dist/web beside the compiled server', async (t) => {
    const f = await fixture(t, { webRoot: null });
    assertError(await call(f, 'GET', '/'), 404, 'WEFT_ERR_NOT_FOUND');
    assert.match(defaultWebRoot(), /[/\\]dist[/\\]web[/\\]$/);
  });
});

describe('the OpenAPI document', () => {
  it('lists the console’s endpoints', async (t) => {
    const f = await fixture(t);
    const doc = (await call(f, 'GET', '/api/v1/openapi.json')).json<{
      paths: Record<string, Record<string, { security: unknown[]; operationId: string }>>;
      components: { securitySchemes: Record<string, Json> };
    }>();
    const expected: [string, string[]][] = [
      ['/api/v1/session', ['post', 'get', 'delete']],
      ['/api/v1/session/totp', ['post', 'delete']],
      ['/api/v1/session/totp/confirm', ['post']],
      ['/api/v1/session/password', ['put']],
      ['/api/v1/members/next-ip', ['get']],
      ['/api/v1/members/{name}/links', ['post']],
      ['/api/v1/traffic', ['get']],
      ['/dl/{token}', ['get']],
    ];
    for (const [path, methods] of expected) {
      for (const m of methods) assert.ok(doc.paths[path]?.[m], `${m} ${path}`);
    }
    assert.deepEqual(doc.paths['/api/v1/session']!.post!.security, []);
    assert.deepEqual(doc.paths['/dl/{token}']!.get!.security, []);
    assert.deepEqual(doc.paths['/api/v1/session/password']!.put!.security, [{ session: [] }]);
    assert.deepEqual(doc.paths['/api/v1/traffic']!.get!.security, [{ bearer: [] }, { session: [] }]);
    assert.deepEqual(doc.components.securitySchemes.session, {
      ...doc.components.securitySchemes.session,
      type: 'apiKey',
      in: 'cookie',
      name: 'weft_session',
    });
  });
});
