/**
 * IKE fragmentation (RFC 7383) between two cores on the simulated wire: the notify in IKE_SA_INIT, IKE_AUTH
 * cut into SKF fragments that fit the configured size, reassembly through reordering, duplicates, loss,
 * tampering and retransmission, and hostile fragments sealed with the real keys (each one typed drop, never
 * an exception). The messages are made big with many traffic selectors and a small fragment size.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { EXCHANGE, NOTIFY, PAYLOAD } from '../../src/ipsec/constants.js';
import { IKE_DROP_REASONS } from '../../src/ipsec/drops.js';
import type { IkeCore } from '../../src/ipsec/core.js';
import type { IkeSa } from '../../src/ipsec/ike-sa.js';
import type { IkeKeys } from '../../src/ipsec/keys.js';
import { encodeChain, parseMessage, type Payload } from '../../src/ipsec/messages.js';
import { sealFragment, type SkKeys } from '../../src/ipsec/sk.js';
import { A_ADDR, B_ADDR, Pair, ts, type Delivery } from './ipsec-pair.js';
import type { IkePeerConfig } from '../../src/ipsec/config.js';

const SIZE = 300;
/** What one IKE datagram may hold at SIZE over IPv4 (IP 20, UDP 8). */
const ROOM = SIZE - 28;

function big(n: number) {
  return Array.from({ length: n }, (_, i) => ts(`10.1.${i}.0/24`));
}

function fragPair(a: Partial<IkePeerConfig> = {}, b: Partial<IkePeerConfig> = {}): Pair {
  return Pair.create(
    { fragmentSize: SIZE, localSelectors: big(40), ...a },
    { fragmentSize: SIZE, remoteSelectors: [ts('10.1.0.0/16')], ...b },
  );
}

function up(p: Pair): void {
  for (const side of ['a', 'b'] as const) {
    const failed = JSON.stringify(p.of(side, 'failed'));
    assert.equal(p.of(side, 'ike-sa-up').length, 1, `${side}: ${failed}`);
    assert.equal(p.of(side, 'child-sa-up').length, 1, `${side}: ${failed}`);
  }
}

/** The IKE_AUTH datagrams a side sent, and how many of them were SKF fragments. */
function authSends(p: Pair, side: 'a' | 'b'): { all: Buffer[]; fragments: number } {
  const all: Buffer[] = [];
  let fragments = 0;
  for (const s of p.of(side, 'send')) {
    const raw = s.nonEspMarker ? s.data.subarray(4) : s.data;
    const m = parseMessage(raw);
    if (!m.ok || m.value.header.exchange !== EXCHANGE.IKE_AUTH) continue;
    all.push(raw);
    if (m.value.payloads[m.value.payloads.length - 1]?.kind === 'skf') fragments++;
  }
  return { all, fragments };
}

function isAuth(d: Delivery): boolean {
  return Pair.exchangeOf(d)?.exchange === EXCHANGE.IKE_AUTH;
}

function hasFragNotify(d: Buffer): boolean {
  const m = parseMessage(d);
  return (
    m.ok &&
    m.value.payloads.some((x) => x.kind === 'notify' && x.notify === NOTIFY.IKEV2_FRAGMENTATION_SUPPORTED)
  );
}

describe('IKE fragmentation (RFC 7383), two cores', () => {
  it('both announce it; IKE_AUTH both ways goes as SKF fragments that fit the size and is put back together', () => {
    const p = fragPair();
    p.initiate();
    p.run();
    up(p);
    assert.ok(hasFragNotify(p.of('a', 'send')[0]!.data));
    assert.ok(hasFragNotify(p.of('b', 'send')[0]!.data));
    for (const side of ['a', 'b'] as const) {
      const s = authSends(p, side);
      assert.ok(s.fragments >= 3, `${side} sent ${s.fragments} fragments`);
      assert.equal(s.fragments, s.all.length);
      for (const d of s.all) assert.ok(d.length <= ROOM, `${d.length} > ${ROOM}`);
      assert.equal(p.core(side).stats.fragments.reassembled, 1);
      assert.equal(p.core(side).stats.fragments.sent, s.fragments);
    }
    assert.equal(p.b.stats.fragments.received, authSends(p, 'a').fragments);
    // A liveness check afterwards is small and goes whole.
    p.take('a', p.a.dpd(p.now));
    p.run();
    assert.equal(p.a.stats.fragments.sent, authSends(p, 'a').fragments);
  });

  it('with AES-CBC and HMAC (padding per fragment) as well as AES-GCM', () => {
    const cbc = { ikeProposals: ['aes128-sha256-prfsha256-modp2048'], espProposals: ['aes128-sha256'] };
    const p = fragPair(cbc, cbc);
    p.initiate();
    p.run();
    up(p);
    assert.ok(authSends(p, 'a').fragments >= 3);
    for (const d of authSends(p, 'a').all) assert.ok(d.length <= ROOM);
  });

  it('when the responder does not take part, no notify comes back and messages go whole', () => {
    const p = fragPair({}, { fragmentation: false });
    p.initiate();
    p.run();
    up(p);
    assert.ok(hasFragNotify(p.of('a', 'send')[0]!.data));
    assert.ok(!hasFragNotify(p.of('b', 'send')[0]!.data));
    const s = authSends(p, 'a');
    assert.equal(s.fragments, 0);
    assert.equal(s.all.length, 1);
    assert.ok(s.all[0]!.length > ROOM);
  });

  it('fragments in reverse order and a duplicate: reassembled once, the duplicate a counted drop', () => {
    const p = fragPair();
    p.initiate();
    p.deliver(0);
    p.deliver(0);
    const n = p.wire.length;
    assert.ok(n >= 3);
    p.wire.reverse();
    p.wire.splice(2, 0, p.wire[1]!);
    p.run();
    up(p);
    assert.equal(p.b.stats.drops['duplicate-fragment'], 1);
    assert.equal(p.b.stats.fragments.received, n);
  });

  it('a lost fragment: the retransmission completes the message', () => {
    const p = fragPair();
    p.filter = (d, i) => (i === 3 ? 'lose' : 'deliver');
    p.initiate();
    p.run();
    assert.equal(p.of('a', 'ike-sa-up').length, 0);
    const n = authSends(p, 'a').all.length;
    p.advance(5_000);
    up(p);
    assert.equal(authSends(p, 'a').all.length, 2 * n);
    // Fragment 1 is held already; fragment 2 completes the message; the rest belong to an answered request.
    assert.equal(p.b.stats.drops['duplicate-fragment'], 1);
    assert.equal(p.b.stats.drops['retransmitted-request'], n - 2);
  });

  it('a lost response: the retransmitted request is answered again on its fragment 1 only', () => {
    const p = fragPair();
    let lose = true;
    p.filter = (d) => (lose && d.from === 'b' && isAuth(d) ? 'lose' : 'deliver');
    p.initiate();
    p.run();
    const k = authSends(p, 'b').all.length;
    const n = authSends(p, 'a').all.length;
    lose = false;
    p.advance(5_000);
    up(p);
    assert.equal(authSends(p, 'b').all.length, 2 * k);
    assert.equal(p.b.stats.drops['retransmitted-request'], n - 1);
    assert.equal(p.b.stats.fragments.reassembled, 1);
  });

  it('a path that drops large datagrams: after two unanswered retransmissions request and response are cut to 576 (§2.5.2)', () => {
    // 1280-byte fragments; the path between them carries nothing over 576 bytes (IP and UDP headers included).
    const p = fragPair(
      { fragmentSize: 1_280, localSelectors: big(120) },
      { fragmentSize: 1_280, remoteSelectors: [ts('10.1.0.0/16')] },
    );
    const MTU = 576;
    let dropped = 0;
    p.filter = (d) => {
      if (d.data.length + 28 <= MTU) return 'deliver';
      dropped++;
      return 'lose';
    };
    p.initiate();
    p.run();
    const first = authSends(p, 'a');
    assert.ok(first.fragments >= 2, 'IKE_AUTH goes as fragments');
    assert.ok(first.all.every((m) => m.length + 28 <= 1_280));
    assert.ok(first.all.some((m) => m.length + 28 > MTU));
    // The first send and two retransmissions at 1280 are lost (4 s of backoff); the third is cut to 576.
    p.advance(3_000);
    assert.equal(p.of('a', 'ike-sa-up').length, 0);
    assert.equal(p.a.stats.fragments.shrunk, 0);
    p.advance(100_000);
    up(p);
    // Both sides cut once: A its request, B (whose 1280-byte response is lost the same way) its response,
    // on the second retransmission of the request it had answered.
    assert.equal(p.a.stats.fragments.shrunk, 1);
    assert.equal(p.b.stats.fragments.shrunk, 1);
    const sends = authSends(p, 'a').all;
    const small = sends.slice(3 * first.all.length);
    assert.ok(small.length > first.all.length, `${small.length} smaller fragments`);
    assert.ok(small.every((m) => m.length + 28 <= MTU));
    assert.ok(dropped > 0);
    assert.equal(p.b.stats.fragments.reassembled, 1);
    assert.equal(p.a.stats.fragments.reassembled, 1);
  });

  it('a tampered fragment is dropped before it is kept; the retransmission completes the message', () => {
    const p = fragPair();
    p.initiate();
    p.deliver(0);
    p.deliver(0);
    const d = p.wire[1]!;
    const bad = Buffer.from(d.data);
    bad[bad.length - 20]! ^= 1;
    p.wire[1] = { ...d, data: bad };
    p.run();
    assert.equal(p.b.stats.drops['integrity-check-failed'], 1);
    assert.equal(p.of('b', 'ike-sa-up').length, 0);
    p.advance(5_000);
    up(p);
  });
});

describe('IKE fragmentation: hostile fragments sealed with the real keys', () => {
  /** An established pair and a way to send B fragments of an INFORMATIONAL request as A would. */
  function established(a: Partial<IkePeerConfig> = {}, b: Partial<IkePeerConfig> = {}) {
    const p = fragPair(a, b);
    p.initiate();
    p.run();
    up(p);
    const sa = p.a.list()[0]!;
    const keys = (Reflect.get(sa, 'keys') as IkeKeys).initiator;
    let iv = 0;
    const send = (
      f: { number: number; total: number; piece?: Buffer; first?: number; id?: number; keys?: SkKeys },
      core: IkeCore = p.b,
    ) => {
      const h = {
        spiI: sa.spiI,
        spiR: sa.spiR,
        exchange: EXCHANGE.INFORMATIONAL,
        initiator: true,
        response: false,
        messageId: f.id ?? (Reflect.get(sa, 'nextRequestId') as number),
      };
      const ivb = Buffer.alloc(keys.encr.ivLength);
      ivb.writeUInt32BE(++iv, ivb.length - 4);
      const data = sealFragment(
        h,
        f.first ?? 0,
        f.number,
        f.total,
        f.piece ?? Buffer.alloc(10),
        f.keys ?? keys,
        ivb,
      );
      return core.receive(
        { data, remote: { address: A_ADDR, port: 500 }, local: { address: B_ADDR, port: 500 } },
        p.now,
      );
    };
    return { p, sa, keys, send };
  }

  function dropped(actions: ReturnType<IkeCore['receive']>): string {
    const d = actions.filter((x) => x.type === 'drop');
    assert.ok(d.length <= 1);
    return d[0]?.type === 'drop' ? d[0].reason : 'processed';
  }

  it('each malformed or unwanted fragment is one typed drop, and a good message still goes through', () => {
    const { p, keys, send } = established();
    assert.equal(dropped(send({ number: 0, total: 2 })), 'bad-fragment-number');
    assert.equal(dropped(send({ number: 3, total: 2 })), 'bad-fragment-number');
    assert.equal(dropped(send({ number: 1, total: 0 })), 'bad-fragment-number');
    assert.equal(dropped(send({ number: 1, total: 1000 })), 'too-many-fragments');
    assert.equal(dropped(send({ number: 1, total: 2, id: 77 })), 'unexpected-message-id');
    const wrong = { ...keys, encrKey: Buffer.alloc(keys.encrKey.length, 7) };
    assert.equal(dropped(send({ number: 1, total: 2, keys: wrong })), 'integrity-check-failed');
    // 2 of 3 kept; a fragment of an older, coarser cut (total 2) is stale; a finer cut (total 4) starts anew.
    assert.equal(dropped(send({ number: 2, total: 3 })), 'processed');
    assert.equal(dropped(send({ number: 2, total: 3 })), 'duplicate-fragment');
    assert.equal(dropped(send({ number: 1, total: 2 })), 'stale-fragment');
    const discarded = p.b.stats.fragments.discarded;
    // The empty INFORMATIONAL (a liveness check) in 4 pieces: chain is empty, so all pieces are empty bytes.
    const chain = encodeChain([] as Payload[]);
    assert.equal(chain.bytes.length, 0);
    const before = p.b.stats.processed;
    for (const n of [4, 2, 3])
      assert.equal(dropped(send({ number: n, total: 4, piece: Buffer.alloc(0) })), 'processed');
    assert.equal(p.b.stats.fragments.discarded, discarded + 1);
    const answer = send({ number: 1, total: 4, piece: Buffer.alloc(0), first: PAYLOAD.NONE });
    assert.equal(dropped(answer), 'processed');
    assert.equal(answer.filter((x) => x.type === 'send').length, 1, 'the liveness check is answered');
    assert.equal(p.b.stats.processed, before + 4);
  });

  it('limits: total size, and a partial message times out', () => {
    const { p, send } = established();
    const piece = Buffer.alloc(1200);
    let reason = 'processed';
    for (let i = 1; i <= 60 && reason === 'processed'; i++)
      reason = dropped(send({ number: i, total: 60, piece }));
    assert.equal(reason, 'reassembly-too-large');
    assert.equal(dropped(send({ number: 1, total: 2 })), 'processed');
    const discarded = p.b.stats.fragments.discarded;
    p.now += 31_000;
    assert.equal(dropped(send({ number: 2, total: 2 })), 'processed');
    assert.equal(p.b.stats.fragments.discarded, discarded + 1, 'the old partial message timed out');
  });

  it('fragments to an SA that did not agree to fragmentation are dropped as such', () => {
    const { send } = established({ fragmentation: false });
    assert.equal(dropped(send({ number: 1, total: 2 })), 'fragmentation-not-negotiated');
  });

  it('fuzz: random and mutated SKF datagrams never throw and end as exactly one outcome', () => {
    const { p, sa, send } = established();
    const seed = Number(process.env.WEFT_FUZZ_SEED ?? 7);
    let x = seed >>> 0 || 1;
    const rnd = () => {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      return x;
    };
    const iterations = Number(process.env.WEFT_FUZZ_ITERATIONS ?? 20_000);
    const reasons = new Set<string>(IKE_DROP_REASONS);
    const header = Buffer.alloc(28);
    sa.spiI.copy(header, 0);
    sa.spiR.copy(header, 8);
    header[16] = PAYLOAD.SKF;
    header[17] = 0x20;
    header[18] = EXCHANGE.INFORMATIONAL;
    header[19] = 0x08;
    for (let i = 0; i < iterations; i++) {
      const s = p.b.stats;
      const count = s.processed + Object.values(s.drops).reduce((a, b) => a + b, 0);
      let actions;
      if (i % 2 === 0) {
        // Sealed with the real keys: random numbers, totals, first payload type and content.
        const piece = Buffer.alloc(rnd() % 300);
        for (let j = 0; j < piece.length; j++) piece[j] = rnd() & 0xff;
        const total = (rnd() % 6) + (rnd() % 8 === 0 ? 100 : 0);
        actions = send({ number: rnd() % 8, total, piece, first: rnd() & 0xff });
      } else {
        // Unauthenticated: a real header, an SKF payload of random fields and bytes.
        const body = Buffer.alloc(rnd() % 120);
        for (let j = 0; j < body.length; j++) body[j] = rnd() & 0xff;
        const skfLength = 4 + body.length;
        const hdr = Buffer.from(header);
        hdr.writeUInt32BE(rnd() % 3, 20);
        const gen = Buffer.from([rnd() & 0xff, 0, 0, 0]);
        gen.writeUInt16BE(rnd() % 5 === 0 ? rnd() & 0xffff : skfLength, 2);
        const data = Buffer.concat([hdr, gen, body]);
        data.writeUInt32BE(data.length, 24);
        actions = p.b.receive(
          { data, remote: { address: A_ADDR, port: 500 }, local: { address: B_ADDR, port: 500 } },
          p.now,
        );
      }
      const drops = actions.filter((a) => a.type === 'drop');
      assert.ok(drops.length <= 1);
      for (const d of drops) assert.ok(d.type === 'drop' && reasons.has(d.reason));
      const after = s.processed + Object.values(s.drops).reduce((a, b) => a + b, 0);
      assert.equal(after, count + 1);
      if (i % 1000 === 0) p.now += 1;
    }
    assert.ok(p.b.list().some((x: IkeSa) => x.state === 'established'));
  });
});
