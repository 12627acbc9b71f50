/**
 * Cookies under load (RFC 7296 §2.6): from a threshold of half-open IKE SAs on, the responder answers a new
 * IKE_SA_INIT request with only N(COOKIE) and keeps no state; the initiator repeats its request with the
 * cookie first and the SA comes up. Secrets rotate; a cookie of the previous secret is still good.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { EXCHANGE, NOTIFY } from '../../src/ipsec/constants.js';
import { CookieJar } from '../../src/ipsec/cookie.js';
import { IkeCore } from '../../src/ipsec/core.js';
import { buildMessage, parseMessage } from '../../src/ipsec/messages.js';
import { B_ADDR, makeCore, Pair, seededRandom, siteA, siteB } from './ipsec-pair.js';

function responder(threshold: number): IkeCore {
  const c = IkeCore.create(siteB(), { random: seededRandom('seed-b'), cookieThreshold: threshold });
  assert.ok(c.ok);
  return c.value;
}

function cookieOf(data: Buffer): Buffer | null {
  const m = parseMessage(data);
  if (!m.ok || m.value.header.exchange !== EXCHANGE.IKE_SA_INIT || !m.value.header.response) return null;
  const first = m.value.payloads[0];
  return m.value.payloads.length === 1 && first?.kind === 'notify' && first.notify === NOTIFY.COOKIE
    ? first.data
    : null;
}

describe('IKEv2 cookies under load (§2.6)', () => {
  it('at the threshold a new initiator gets N(COOKIE), no state, and comes up by retrying with it', () => {
    const p = new Pair(makeCore(siteA(), 'seed-a'), responder(2));
    // Two initiators that never finish fill B's half-open table.
    for (const [i, addr] of ['198.51.100.7', '198.51.100.8'].entries()) {
      const other = makeCore(siteA(), `other-${i}`);
      const init = other.initiate({ address: B_ADDR, port: 500 }, { address: addr, port: 500 }, p.now);
      const send = init.find((x) => x.type === 'send')!;
      assert.equal(send.type, 'send');
      const r = p.b.receive(
        { data: send.data, remote: { address: addr, port: 500 }, local: { address: B_ADDR, port: 500 } },
        p.now,
      );
      const answer = r.find((x) => x.type === 'send') as { data: Buffer } | undefined;
      assert.ok(answer);
      assert.equal(cookieOf(answer.data), null, 'below the threshold: a normal answer');
    }
    assert.equal(p.b.list().length, 2);
    p.initiate();
    p.run();
    assert.equal(p.b.stats.cookiesSent, 1);
    const bSends = p.of('b', 'send');
    assert.ok(cookieOf(bSends[0]!.data), 'the first answer is N(COOKIE) alone');
    assert.equal(p.of('a', 'ike-sa-up').length, 1, JSON.stringify(p.of('a', 'failed')));
    assert.equal(p.of('b', 'child-sa-up').length, 1);
  });

  it('below the threshold no cookie is asked; a forged or missing cookie under load gets a fresh one and no state', () => {
    const quiet = new Pair(makeCore(siteA(), 'seed-a'), responder(64));
    quiet.initiate();
    quiet.run();
    assert.equal(quiet.b.stats.cookiesSent, 0);
    assert.equal(quiet.of('a', 'ike-sa-up').length, 1);

    const b = responder(0);
    const a = makeCore(siteA(), 'seed-a');
    const init = a.initiate({ address: B_ADDR, port: 500 }, { address: '192.0.2.1', port: 500 }, 0);
    const req = (init[0] as { data: Buffer }).data;
    const from = { remote: { address: '192.0.2.1', port: 500 }, local: { address: B_ADDR, port: 500 } };
    const first = b.receive({ data: req, ...from }, 0);
    const cookie = cookieOf((first[0] as { data: Buffer }).data);
    assert.ok(cookie);
    assert.equal(b.list().length, 0, 'no state for a request without cookie');
    // The same request with a forged cookie in front.
    const parsed = parseMessage(req);
    assert.ok(parsed.ok);
    const forged = Buffer.from(cookie);
    forged[5]! ^= 1;
    const withForged = buildMessage(parsed.value.header, [
      { kind: 'notify', protocol: 0, spi: Buffer.alloc(0), notify: NOTIFY.COOKIE, data: forged },
      ...parsed.value.payloads,
    ]);
    const again = b.receive({ data: withForged, ...from }, 0);
    assert.ok(cookieOf((again[0] as { data: Buffer }).data));
    assert.equal(b.list().length, 0);
    // From another address the genuine cookie is not good either.
    const withGood = buildMessage(parsed.value.header, [
      { kind: 'notify', protocol: 0, spi: Buffer.alloc(0), notify: NOTIFY.COOKIE, data: cookie },
      ...parsed.value.payloads,
    ]);
    b.receive({ data: withGood, remote: { address: '192.0.2.99', port: 500 }, local: from.local }, 0);
    assert.equal(b.list().length, 0);
    b.receive({ data: withGood, ...from }, 0);
    assert.equal(b.list().length, 1, 'the genuine cookie from the right address opens the SA');
    assert.equal(b.stats.cookiesSent, 3);
  });

  it('the secret rotates: a cookie of the previous secret is good, one two secrets old is not', () => {
    const jar = new CookieJar(seededRandom('jar'), 0);
    const ni = Buffer.alloc(32, 7);
    const spi = Buffer.alloc(8, 1);
    const c = jar.make(ni, '192.0.2.1', spi, 0);
    assert.ok(jar.check(c, ni, '192.0.2.1', spi, 1));
    assert.ok(!jar.check(c, ni, '192.0.2.2', spi, 1));
    assert.ok(!jar.check(c, Buffer.alloc(32, 8), '192.0.2.1', spi, 1));
    assert.ok(jar.check(c, ni, '192.0.2.1', spi, 61_000), 'previous secret still accepted');
    assert.ok(!jar.check(c, ni, '192.0.2.1', spi, 122_000), 'two rotations later refused');
    assert.ok(!jar.check(Buffer.alloc(5), ni, '192.0.2.1', spi, 122_000));
  });
});
