/**
 * Failed-authentication throttling: the FailureThrottle class (src/api/throttle.ts) with an injected clock,
 * the client key (throttleKey in src/api/auth.ts), and the API through inject() from chosen client addresses.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it, type TestContext } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { throttleKey } from '../../src/api/auth.js';
import { buildApi } from '../../src/api/server.js';
import { AUTH_FAILURE_LIMITS, FailureThrottle } from '../../src/api/throttle.js';
import { ControlPlane } from '../../src/control/control-plane.js';
import { openMemoryStore } from '../support/memory-store.js';

const MINUTE = 60_000;
const A = '192.0.2.10';
const B = '198.51.100.20';
const BAD_TOKEN = `weft_${'x'.repeat(43)}`;

describe('FailureThrottle', () => {
  it('uses the API limits by default: more than 20 failures within 60 s, 10,000 keys', () => {
    assert.deepEqual(AUTH_FAILURE_LIMITS, { maxFailures: 20, windowMs: MINUTE, maxKeys: 10_000 });
    assert.deepEqual(new FailureThrottle().limits, AUTH_FAILURE_LIMITS);
  });

  it('refuses a key after more than maxFailures failures in the window, until the oldest ages out', () => {
    const throttle = new FailureThrottle();
    const t0 = 1_000_000;
    // 20 failures, one a second: still allowed.
    for (let i = 0; i < 20; i++) {
      assert.equal(throttle.retryAfter('a', t0 + i * 1000), 0, `before failure ${i + 1}`);
      throttle.fail('a', t0 + i * 1000);
    }
    assert.equal(throttle.retryAfter('a', t0 + 19_500), 0, '20 failures are allowed');
    throttle.fail('a', t0 + 20_000);
    // The 21st: refused until the first (at t0) is a minute old.
    assert.equal(throttle.retryAfter('a', t0 + 20_000), 40_000);
    assert.equal(throttle.retryAfter('a', t0 + 59_999), 1);
    assert.equal(throttle.retryAfter('a', t0 + MINUTE), 0, 'a failure exactly a window old no longer counts');
    // 20 remain in the window; one more and it is refused until the second (t0 + 1 s) ages out.
    throttle.fail('a', t0 + MINUTE);
    assert.equal(throttle.retryAfter('a', t0 + MINUTE), 1000);
    assert.equal(throttle.retryAfter('a', t0 + MINUTE + 1000), 0);
    // After a quiet window, the key is forgotten altogether.
    assert.equal(throttle.retryAfter('a', t0 + 3 * MINUTE), 0);
    assert.equal(throttle.size, 0);
  });

  it('is a sliding window: a client that keeps trying gets at most maxFailures + 1 failures into any window', () => {
    const limits = { maxFailures: 20, windowMs: MINUTE, maxKeys: 10 };
    /** The attempt (0-based) at which a client failing every `spacing` ms is first refused; -1 for never. */
    const firstRefusal = (spacing: number): number => {
      const throttle = new FailureThrottle(limits);
      for (let i = 0; i < 1000; i++) {
        if (throttle.retryAfter('k', i * spacing) > 0) return i;
        throttle.fail('k', i * spacing);
      }
      return -1;
    };
    // 21 failures fit in a minute when they are less than 60 s / 21 = 2857.14 ms apart.
    assert.equal(firstRefusal(2858), -1);
    assert.equal(firstRefusal(2857), 21);
    assert.equal(firstRefusal(0), 21);
    // A burst across a minute boundary: the newest count, not a fixed window's tally.
    const edge = new FailureThrottle(limits);
    for (let i = 0; i < 20; i++) edge.fail('k', 59_000 + i);
    for (let i = 0; i < 20; i++) edge.fail('k', 61_000 + i);
    assert.ok(edge.retryAfter('k', 61_020) > 0, '40 failures within 2 s across a minute boundary');
  });

  it('keeps one key per client: another key is unaffected, forget clears one key', () => {
    const throttle = new FailureThrottle();
    for (let i = 0; i < 21; i++) throttle.fail('a', 0);
    throttle.fail('b', 0);
    assert.equal(throttle.retryAfter('a', 0), MINUTE);
    assert.equal(throttle.retryAfter('b', 0), 0);
    assert.equal(throttle.retryAfter('c', 0), 0);
    throttle.forget('a');
    assert.equal(throttle.retryAfter('a', 0), 0);
    assert.equal(throttle.size, 1);
  });

  it('bounds what one key holds: a thousand failures cost no more than maxFailures + 1', () => {
    const throttle = new FailureThrottle();
    for (let i = 0; i < 1000; i++) throttle.fail('a', i);
    // Only the newest 21 (at 979..999 ms) are kept: refused until the one at 979 ms ages out.
    assert.equal(throttle.retryAfter('a', 999), 979 + MINUTE - 999);
  });

  it('bounds the table: past maxKeys, the key whose last failure is oldest is evicted', () => {
    const throttle = new FailureThrottle({ maxFailures: 1, windowMs: MINUTE, maxKeys: 3 });
    throttle.fail('a', 1);
    throttle.fail('a', 2);
    throttle.fail('b', 3);
    throttle.fail('c', 4);
    throttle.fail('a', 5); // a is now the most recent
    throttle.fail('d', 6); // evicts b
    assert.equal(throttle.size, 3);
    assert.ok(throttle.retryAfter('a', 6) > 0, 'a is still tracked, and refused');
    throttle.fail('b', 7); // b is new again: evicts c
    throttle.fail('b', 8);
    assert.ok(throttle.retryAfter('b', 8) > 0);
    assert.equal(throttle.size, 3);

    const big = new FailureThrottle();
    for (let i = 0; i < 25_000; i++) big.fail(`10.0.${i >> 8}.${i & 255}`, i);
    assert.equal(big.size, AUTH_FAILURE_LIMITS.maxKeys);
  });

  it('never asks for more than a window, even when the clock went back', () => {
    const throttle = new FailureThrottle();
    for (let i = 0; i < 21; i++) throttle.fail('a', 10 * MINUTE);
    assert.equal(throttle.retryAfter('a', 0), MINUTE);
  });

  it('refuses limits that are not positive integers', () => {
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => new FailureThrottle({ ...AUTH_FAILURE_LIMITS, maxFailures: bad }), RangeError);
      assert.throws(() => new FailureThrottle({ ...AUTH_FAILURE_LIMITS, windowMs: bad }), RangeError);
      assert.throws(() => new FailureThrottle({ ...AUTH_FAILURE_LIMITS, maxKeys: bad }), RangeError);
    }
  });
});

describe('throttleKey', () => {
  it('is the IPv4 address, the IPv6 /64, and null (not throttled) for loopback', () => {
    const cases: [string, string | null][] = [
      ['192.0.2.10', '192.0.2.10'],
      ['::ffff:192.0.2.10', '192.0.2.10'],
      ['127.0.0.1', null],
      ['127.8.9.10', null],
      ['::ffff:127.0.0.1', null],
      ['::1', null],
      ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
      ['2001:DB8:1:2::9', '2001:db8:1:2::/64'],
      ['2001:db8:1:3::9', '2001:db8:1:3::/64'],
      ['fe80::1%eth0', 'fe80::/64'],
      ['::', '::/64'],
      ['not an address', 'not an address'],
    ];
    for (const [ip, key] of cases) assert.equal(throttleKey(ip), key, ip);
  });
});

interface Fixture {
  readonly app: FastifyInstance;
  readonly token: string;
}

async function fixture(t: TestContext, authThrottle?: FailureThrottle | null): Promise<Fixture> {
  const store = openMemoryStore();
  const { apiToken } = ControlPlane.init(store, {
    endpoint: 'vpn.example.com:51820',
    subnet: '10.66.0.0/24',
  });
  const app = buildApi({
    controlPlane: new ControlPlane(store),
    ...(authThrottle === undefined ? {} : { authThrottle }),
  });
  await app.ready();
  t.after(async () => {
    await app.close();
    store.close();
  });
  return { app, token: apiToken };
}

function get(f: Fixture, remoteAddress: string, token: string | null, url = '/api/v1/settings') {
  return f.app.inject({
    method: 'GET',
    url,
    remoteAddress,
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
  });
}

function assertRateLimited(res: LightMyRequestResponse, maxSeconds = 60): void {
  assert.equal(res.statusCode, 429, res.body);
  const body = res.json<{ error: { code: string; message: string } }>();
  assert.deepEqual(Object.keys(body), ['error']);
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message']);
  assert.equal(body.error.code, 'WEFT_ERR_RATE_LIMITED');
  assert.match(body.error.message, /too many failed authentication attempts/);
  const retryAfter = String(res.headers['retry-after']);
  assert.match(retryAfter, /^\d+$/);
  assert.ok(Number(retryAfter) >= 1 && Number(retryAfter) <= maxSeconds, retryAfter);
}

describe('REST API: failed-authentication throttling', () => {
  it('21 bad tokens from A: A is refused with 429 and Retry-After, B is not', async (t) => {
    const f = await fixture(t);
    for (let i = 0; i < 21; i++)
      assert.equal((await get(f, A, BAD_TOKEN)).statusCode, 401, `attempt ${i + 1}`);
    assertRateLimited(await get(f, A, BAD_TOKEN));
    assertRateLimited(await get(f, A, f.token)); // even with the right token
    assert.equal((await get(f, B, f.token)).statusCode, 200, 'another address is unaffected');
    assert.equal((await get(f, B, BAD_TOKEN)).statusCode, 401, 'and its failures are its own');
    assert.equal((await get(f, A, null, '/api/v1/health')).statusCode, 200, 'public routes stay open');
  });

  it('a request without credentials is answered 401 but is not a guess', async (t) => {
    const f = await fixture(t);
    for (let i = 0; i < 30; i++) assert.equal((await get(f, A, null)).statusCode, 401);
    assert.equal((await get(f, A, f.token)).statusCode, 200);
  });

  it('counts an IPv6 client by its /64', async (t) => {
    const f = await fixture(t);
    for (let i = 1; i <= 21; i++)
      assert.equal((await get(f, `2001:db8:0:1::${i.toString(16)}`, BAD_TOKEN)).statusCode, 401);
    assertRateLimited(await get(f, '2001:db8:0:1:ffff::1', f.token));
    assert.equal((await get(f, '2001:db8:0:2::1', f.token)).statusCode, 200);
  });

  it('does not throttle loopback clients, nor any client when the throttle is off', async (t) => {
    const f = await fixture(t);
    for (let i = 0; i < 25; i++) assert.equal((await get(f, '127.0.0.1', BAD_TOKEN)).statusCode, 401);
    assert.equal((await get(f, '127.0.0.1', f.token)).statusCode, 200);
    const off = await fixture(t, null);
    for (let i = 0; i < 25; i++) assert.equal((await get(off, A, BAD_TOKEN)).statusCode, 401);
    assert.equal((await get(off, A, off.token)).statusCode, 200);
  });

  it('lets the client in again once the window has passed (a shared throttle with a short window)', async (t) => {
    const throttle = new FailureThrottle({ maxFailures: 2, windowMs: 300, maxKeys: 100 });
    const f = await fixture(t, throttle);
    for (let i = 0; i < 3; i++) assert.equal((await get(f, A, BAD_TOKEN)).statusCode, 401);
    assertRateLimited(await get(f, A, f.token), 1);
    assert.ok(throttle.retryAfter(A, Date.now()) > 0, 'the API records into the throttle it was given');
    await sleep(350);
    assert.equal((await get(f, A, f.token)).statusCode, 200);
  });
});
