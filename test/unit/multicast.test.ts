import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  buildQuery,
  buildReport,
  buildV1V2,
  MEMBERSHIP_DROPS,
  parseMembership,
  type MembershipReport,
} from '../../src/multicast/messages.js';
import { Querier, type QuerierAction } from '../../src/multicast/querier.js';
import { Replicator, type MulticastPort } from '../../src/gateway/multicast.js';
import { readIpHeader } from '../../src/net/ip-packet.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const v4 = (...b: number[]): Uint8Array => Uint8Array.from(b);
const v6 = (s: string): Uint8Array => hex(s);

/** RFC 1071, written out independently of the code under test. */
function sum(parts: Uint8Array[]): number {
  let s = 0;
  for (const p of parts) for (let i = 0; i < p.length; i += 2) s += (p[i]! << 8) + (p[i + 1] ?? 0);
  while (s > 0xffff) s = (s >>> 16) + (s & 0xffff);
  return s;
}

// An IGMPv3 report (RFC 3376 §4.2): IPv4 header with Router Alert (RFC 2113), TTL 1, TOS 0xc0, to 224.0.0.22;
// one CHANGE_TO_EXCLUDE({}) record (a join) for 239.1.2.3, from 10.66.0.10. Checksums computed by hand from
// the layout: header f9ad, IGMP e8f9.
const IGMPV3_JOIN = hex(`46c0 0028 0000 4000 0102 f9ad 0a42 000a e000 0016 9404 0000
  2200 e8f9 0000 0001 0400 0000 ef01 0203`);
// An IGMPv3 general query (RFC 3376 §4.1) from 10.66.0.1: Max Resp Code 100 (10 s), QRV 2, QQIC 125.
const IGMPV3_QUERY = hex(`46c0 0024 0000 4000 0102 f9cf 0a42 0001 e000 0001 9404 0000
  1164 ec1e 0000 0000 027d 0000`);
// An MLDv2 general query (RFC 3810 §5.1) from fe80::1 to ff02::1 behind a hop-by-hop header with Router Alert
// (RFC 2711) and PadN; Maximum Response Code 10000 ms, QRV 2, QQIC 125.
const MLDV2_QUERY = hex(`6000 0000 0024 0001 fe80 0000 0000 0000 0000 0000 0000 0001
  ff02 0000 0000 0000 0000 0000 0000 0001 3a00 0502 0000 0100
  8200 5696 2710 0000 0000 0000 0000 0000 0000 0000 0000 0000 027d 0000`);
// An MLDv2 report (RFC 3810 §5.2) from fe80::1 to ff02::16: CHANGE_TO_EXCLUDE({}) for ff15::123.
const MLDV2_JOIN = hex(`6000 0000 0024 0001 fe80 0000 0000 0000 0000 0000 0000 0001
  ff02 0000 0000 0000 0000 0000 0000 0016 3a00 0502 0000 0100
  8f00 6ed4 0000 0001 0400 0000 ff15 0000 0000 0000 0000 0000 0000 0123`);

describe('IGMP and MLD messages', () => {
  it('the RFC layouts carry correct checksums (checked independently)', () => {
    for (const p of [IGMPV3_JOIN, IGMPV3_QUERY]) {
      assert.equal(sum([p.subarray(0, 24)]), 0xffff, 'IPv4 header checksum');
      assert.equal(sum([p.subarray(24)]), 0xffff, 'IGMP checksum');
    }
    for (const p of [MLDV2_QUERY, MLDV2_JOIN]) {
      const m = p.subarray(48);
      const pseudo = Uint8Array.from([...p.subarray(8, 40), 0, 0, 0, m.length, 0, 0, 0, 58]);
      assert.equal(sum([pseudo, m]), 0xffff, 'ICMPv6 checksum with the pseudo-header');
    }
  });

  it('builds those packets byte for byte', () => {
    const gw = v4(10, 66, 0, 1);
    const ll = v6('fe800000000000000000000000000001');
    const q = { group: null, maxResponseMs: 10_000, robustness: 2, queryIntervalMs: 125_000 };
    assert.equal(toHex(buildQuery(4, gw, q)), toHex(IGMPV3_QUERY));
    assert.equal(toHex(buildQuery(6, ll, q)), toHex(MLDV2_QUERY));
    assert.equal(
      toHex(buildReport(4, v4(10, 66, 0, 10), [{ type: 4, group: v4(239, 1, 2, 3) }])),
      toHex(IGMPV3_JOIN),
    );
    assert.equal(
      toHex(buildReport(6, ll, [{ type: 4, group: v6('ff150000000000000000000000000123') }])),
      toHex(MLDV2_JOIN),
    );
  });

  it('parses reports into joins and leaves, and queries', () => {
    const join = parseMembership(IGMPV3_JOIN);
    assert.ok(join.ok && join.message.kind === 'report');
    assert.equal(join.message.version, 3);
    assert.deepEqual([...join.message.changes[0]!.group], [239, 1, 2, 3]);
    assert.equal(join.message.changes[0]!.change, 'join');
    const q = parseMembership(MLDV2_QUERY);
    assert.ok(q.ok && q.message.kind === 'query');
    assert.deepEqual([q.message.version, q.message.group, q.message.maxResponseMs], [2, null, 10_000]);
    const mld = parseMembership(MLDV2_JOIN);
    assert.ok(mld.ok && mld.message.kind === 'report' && mld.message.changes[0]!.change === 'join');

    const g = v4(239, 1, 2, 3);
    const src = v4(10, 66, 0, 10);
    const change = (p: Uint8Array): string => {
      const r = parseMembership(p);
      assert.ok(r.ok && r.message.kind === 'report', JSON.stringify(r));
      return r.message.changes.map((c) => c.change).join(',');
    };
    assert.equal(change(buildV1V2(4, src, g, false)), 'join');
    assert.equal(change(buildV1V2(4, src, g, true)), 'leave');
    // TO_IN({}) and IS_IN({}) are leaves; TO_IN with sources and ALLOW with sources keep the group; BLOCK is ignored.
    assert.equal(change(buildReport(4, src, [{ type: 3, group: g }])), 'leave');
    assert.equal(change(buildReport(4, src, [{ type: 1, group: g }])), 'leave');
    assert.equal(change(buildReport(4, src, [{ type: 3, group: g, sources: [v4(10, 0, 0, 9)] }])), 'join');
    assert.equal(change(buildReport(4, src, [{ type: 5, group: g, sources: [v4(10, 0, 0, 9)] }])), 'join');
    assert.equal(change(buildReport(4, src, [{ type: 6, group: g, sources: [v4(10, 0, 0, 9)] }])), 'ignore');
  });

  it('drops hostile input with a typed reason', () => {
    const bad = (p: Uint8Array): string => {
      const r = parseMembership(p);
      assert.ok(!r.ok, 'dropped');
      return r.reason;
    };
    const flipped = IGMPV3_JOIN.slice();
    flipped[39]! ^= 1;
    assert.equal(bad(flipped), 'bad-checksum');
    assert.equal(bad(IGMPV3_JOIN.subarray(0, 10)), 'truncated');
    const ttl = buildV1V2(4, v4(10, 0, 0, 2), v4(239, 1, 2, 3), false);
    ttl[8] = 2;
    ttl[10] = 0;
    ttl[11] = 0;
    const c = 0xffff - sum([ttl.subarray(0, 24)]);
    ttl[10] = c >> 8;
    ttl[11] = c & 0xff;
    assert.equal(bad(ttl), 'bad-ttl');
    assert.equal(bad(buildV1V2(4, v4(10, 0, 0, 2), v4(10, 1, 2, 3), false)), 'bad-group');
    assert.equal(
      bad(
        buildV1V2(6, v6('20010db8000000000000000000000001'), v6('ff150000000000000000000000000123'), false),
      ),
      'bad-source',
    );
    const noAlert = MLDV2_JOIN.slice();
    noAlert[42] = 1; // PadN instead of Router Alert
    assert.equal(bad(noAlert), 'no-router-alert');
  });

  it('fuzz: 10^6 hostile inputs, no exception, one typed drop (or a valid message) each', () => {
    const seeds = [
      IGMPV3_JOIN,
      IGMPV3_QUERY,
      MLDV2_QUERY,
      MLDV2_JOIN,
      buildV1V2(4, v4(10, 0, 0, 2), v4(239, 0, 0, 1), true),
    ];
    let state = 0x12345678;
    const rand = (): number => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return state >>> 0;
    };
    const reasons = new Set<string>(MEMBERSHIP_DROPS);
    const seen = new Map<string, number>();
    let valid = 0;
    for (let i = 0; i < 1_000_000; i++) {
      const seed = seeds[i % seeds.length]!;
      let p: Uint8Array;
      if (i % 10 === 0) {
        p = new Uint8Array(rand() % 80);
        for (let j = 0; j < p.length; j++) p[j] = rand() & 0xff;
        if (p.length > 0) p[0] = (p[0]! & 0x0f) | (i % 20 === 0 ? 0x40 : 0x60);
      } else {
        p = seed.slice(0, i % 7 === 0 ? rand() % (seed.length + 1) : seed.length);
        for (let k = 1 + (rand() % 3); k > 0 && p.length > 0; k--) p[rand() % p.length] = rand() & 0xff;
      }
      const r = parseMembership(p);
      if (r.ok) valid++;
      else {
        assert.ok(reasons.has(r.reason), r.reason);
        seen.set(r.reason, (seen.get(r.reason) ?? 0) + 1);
      }
    }
    assert.ok(seen.size >= 8, `several reasons exercised: ${JSON.stringify([...seen])}`);
    assert.ok(valid < 1_000_000);
  });
});

interface Port extends MulticastPort {
  readonly got: { packet: string; at: number }[];
}

function port(id: string): Port {
  const got: { packet: string; at: number }[] = [];
  return {
    id,
    families: [4],
    got,
    send: (packet, header, now) =>
      void got.push({ packet: toHex(packet.subarray(0, header.length)), at: now }),
    flush: () => undefined,
  };
}

const G = v4(239, 1, 2, 3);
const report = (version: 2 | 3, change: 'join' | 'leave', source = v4(10, 66, 0, 10)): MembershipReport => ({
  kind: 'report',
  family: 4,
  version,
  source,
  changes: [{ group: G, change }],
  skipped: 0,
});

describe('querier (simulated clock, RFC 3376 defaults)', () => {
  const queries = (out: QuerierAction<Port>[]): (string | null)[] =>
    out.filter((a) => a.type === 'query').map((a) => (a.type === 'query' && a.group ? 'group' : null));

  it('startup queries, then one per query interval', () => {
    const q = new Querier<Port>();
    const p = port('p');
    assert.deepEqual(queries(q.addPort(p, [4], 0)), [null]);
    assert.deepEqual(queries(q.tick(31_249)), []);
    assert.deepEqual(queries(q.tick(31_250)), [null], 'startup query interval = 125 s / 4');
    assert.deepEqual(queries(q.tick(156_249)), []);
    assert.deepEqual(queries(q.tick(156_250)), [null]);
  });

  it('join, IGMPv3 leave at once, expiry without reports after the group membership interval', () => {
    const q = new Querier<Port>();
    const p = port('p');
    q.addPort(p, [4], 0);
    const joined = q.receive(report(3, 'join'), p, 1_000);
    assert.deepEqual(
      joined.map((a) => a.type),
      ['joined'],
    );
    assert.equal(q.group(0xef010203)?.receivers[0], p);
    const left = q.receive(report(3, 'leave'), p, 2_000);
    assert.deepEqual(
      left.map((a) => a.type === 'left' && a.why),
      ['leave'],
    );
    assert.equal(q.group(0xef010203), undefined);

    q.receive(report(3, 'join'), p, 10_000);
    // 2 × 125 s + 10 s = 260 s
    assert.deepEqual(
      q.tick(269_999).filter((a) => a.type === 'left'),
      [],
    );
    const expired = q.tick(270_000).filter((a) => a.type === 'left');
    assert.deepEqual(
      expired.map((a) => a.type === 'left' && a.why),
      ['expired'],
    );
  });

  it('another host behind the same port keeps the group after one host leaves (v3)', () => {
    const q = new Querier<Port>();
    const p = port('p');
    q.addPort(p, [4], 0);
    q.receive(report(3, 'join', v4(10, 0, 0, 1)), p, 0);
    q.receive(report(3, 'join', v4(10, 0, 0, 2)), p, 0);
    assert.deepEqual(q.receive(report(3, 'leave', v4(10, 0, 0, 1)), p, 1), []);
    assert.equal(q.group(0xef010203)?.receivers.length, 1);
  });

  it('IGMPv2 leave: last member queries 1 s apart, gone after 2 s; a report in answer keeps it', () => {
    const q = new Querier<Port>();
    const p = port('p');
    q.addPort(p, [4], 0);
    q.receive(report(2, 'join'), p, 0);
    assert.deepEqual(queries(q.receive(report(2, 'leave'), p, 5_000)), ['group']);
    assert.deepEqual(queries(q.tick(5_999)), []);
    const second = q.tick(6_000);
    assert.deepEqual(queries(second), ['group']);
    assert.ok(
      second.some((a) => a.type === 'query' && a.suppress),
      'repeats carry the S flag',
    );
    assert.deepEqual(
      q.tick(6_999).filter((a) => a.type === 'left'),
      [],
    );
    assert.deepEqual(
      q.tick(7_000).map((a) => a.type === 'left' && a.why),
      ['expired'],
    );

    q.receive(report(2, 'join'), p, 10_000);
    q.receive(report(2, 'leave'), p, 11_000);
    q.receive(report(2, 'join'), p, 11_500);
    assert.deepEqual(
      q.tick(20_000).filter((a) => a.type === 'left'),
      [],
      'the answer kept it',
    );
  });

  it('static memberships never expire', () => {
    const q = new Querier<Port>();
    const p = port('p');
    q.addPort(p, [4], 0);
    q.setStatic(p, 4, G, true);
    assert.deepEqual(
      q.tick(10_000_000).filter((a) => a.type === 'left'),
      [],
    );
    assert.equal(q.group(0xef010203)?.receivers.length, 1);
  });
});

/** A UDP datagram to `group` from 10.66.0.2 with this TTL and IP ID (IPv4 header checksum correct). */
function datagram(group: Uint8Array, ttl: number, id = 1, payload = 'x'): Uint8Array {
  const data = Buffer.from(payload);
  const p = new Uint8Array(28 + data.length);
  p.set([0x45, 0, 0, p.length, id >> 8, id & 0xff, 0x40, 0, ttl, 17], 0);
  p.set([10, 66, 0, 2], 12);
  p.set(group, 16);
  p.set([0x13, 0x88, 0x13, 0x88, 0, 8 + data.length, 0, 0], 20);
  p.set(data, 28);
  const c = 0xffff - sum([p.subarray(0, 20)]);
  p[10] = c >> 8;
  p[11] = c & 0xff;
  return p;
}

describe('replication', () => {
  const setup = (options: ConstructorParameters<typeof Replicator>[0] = {}) => {
    const r = new Replicator({ querySource4: v4(10, 66, 0, 1), ...options });
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(port) as [Port, Port, Port, Port];
    for (const p of [a, b, c, d]) r.addPort(p, 0);
    for (const p of [a, b, c, d]) p.got.length = 0; // startup queries
    for (const p of [a, b, c]) {
      const rep = buildReport(4, v4(10, 66, 0, 9), [{ type: 4, group: G }]);
      r.receive(rep, readIpHeader(rep)!, p, 0);
    }
    return { r, a, b, c, d };
  };
  const send = (r: Replicator, p: Uint8Array, from: MulticastPort, now = 1): boolean =>
    r.receive(p, readIpHeader(p)!, from, now);

  it('copies to every other joined port, never back to the source; a port that did not join gets nothing', () => {
    const { r, a, b, c, d } = setup();
    assert.ok(send(r, datagram(G, 4), a));
    assert.deepEqual([a.got.length, b.got.length, c.got.length, d.got.length], [0, 1, 1, 0]);
    assert.equal(r.counters.copies, 2);
  });

  it('routed groups: TTL decremented with a valid checksum; TTL 1 stays on the link; link-local keeps 255', () => {
    const { r, a, b } = setup();
    send(r, datagram(G, 4), a);
    const out = hex(b.got[0]!.packet);
    assert.equal(out[8], 3);
    assert.equal(sum([out.subarray(0, 20)]), 0xffff, 'header checksum updated');
    assert.equal(send(r, datagram(G, 1, 2), a), false);
    assert.equal(r.drops.ttl, 1);
    const mdns = v4(224, 0, 0, 251);
    const rep = buildReport(4, v4(10, 66, 0, 9), [{ type: 4, group: mdns }]);
    r.receive(rep, readIpHeader(rep)!, b, 0);
    send(r, datagram(mdns, 255, 3), a);
    assert.equal(hex(b.got.at(-1)!.packet)[8], 255);
  });

  it('policy: a refused sender reaches nobody, a refused receiver gets no copy; both counted', () => {
    let denySender = true;
    const { r, a, b, c } = setup({
      policy: {
        maySend: () => !denySender,
        mayReceive: (_s, receiver) => receiver !== c,
      },
    });
    assert.equal(send(r, datagram(G, 4), a), false);
    assert.equal(r.drops['policy-send'], 1);
    denySender = false;
    send(r, datagram(G, 4, 2), a);
    assert.deepEqual([b.got.length, c.got.length], [1, 0]);
    assert.equal(r.drops['policy-receive'], 1);
  });

  it('rate limit per source: a flood is cut to the bucket, other senders unaffected', () => {
    const { r, a, b } = setup({ sourceRate: 100, sourceBurst: 10 });
    for (let i = 0; i < 50; i++) send(r, datagram(G, 4, 100 + i), a, 1);
    assert.equal(r.drops['rate-source'], 40);
    assert.ok(send(r, datagram(G, 4, 999), b, 1), "b's own bucket is full");
    for (let i = 0; i < 5; i++) send(r, datagram(G, 4, 200 + i), a, 51); // 50 ms: 5 tokens
    assert.equal(r.drops['rate-source'], 40);
  });

  it('duplicate guard: the same packet twice within the window is replicated once', () => {
    const { r, a, b } = setup();
    send(r, datagram(G, 4, 7), a, 1);
    send(r, datagram(G, 4, 7), a, 2);
    assert.equal(b.got.length, 1);
    assert.equal(r.drops.duplicate, 1);
    send(r, datagram(G, 4, 8), a, 3);
    send(r, datagram(G, 4, 7), a, 1_000);
    assert.equal(b.got.length, 3, 'a new ID, or the same after the window, is copied');
  });

  it('snapshot: groups with receivers (expiry), senders, packets, copies; per-port figures and drops', () => {
    const { r, a, b, d } = setup({ policy: { maySend: (s) => s !== d, mayReceive: () => true } });
    send(r, datagram(G, 4, 1), a, 1_000);
    send(r, datagram(G, 4, 2), a, 1_000);
    send(r, datagram(G, 4, 3), d, 1_000);
    send(r, datagram(v4(239, 9, 9, 9), 4, 4), a, 1_000);
    const snap = r.snapshot(1_000);
    assert.deepEqual(snap.groups, [
      {
        group: '239.1.2.3',
        // The group membership interval (260 s) from the reports at 0.
        receivers: ['a', 'b', 'c'].map((port) => ({ port, expiresInS: 259 })),
        packets: 3,
        copies: 4,
        senders: [
          { port: 'a', packets: 2 },
          { port: 'd', packets: 1 },
        ],
      },
    ]);
    assert.deepEqual(snap.counters, { packets: 7, copies: 4, reports: 3 });
    assert.deepEqual(snap.drops, { 'no-receivers': 1, 'policy-send': 1 });
    const byPort = Object.fromEntries(snap.ports.map((p) => [p.port, p]));
    assert.deepEqual(byPort['a'], { port: 'a', sent: 3, received: 0, drops: { 'no-receivers': 1 } });
    assert.deepEqual(byPort['b'], { port: 'b', sent: 0, received: 2, drops: {} });
    assert.deepEqual(byPort['d'], { port: 'd', sent: 1, received: 0, drops: { 'policy-send': 1 } });
    // A group nobody receives any more leaves the snapshot, and its figures are forgotten.
    for (const p of [a, b, r.querier.allGroups().next().value!.receivers[2]!]) r.removePort(p);
    assert.deepEqual(r.snapshot(2_000).groups, []);
    assert.equal(
      r.snapshot(2_000).ports.some((p) => p.port === 'a'),
      false,
    );
  });

  it('IGMP from a port feeds the querier and is never forwarded; bad IGMP is a typed drop', () => {
    const { r, b, d } = setup();
    assert.equal(b.got.length, 0);
    const bad = IGMPV3_JOIN.slice();
    bad[30] = bad[30]! ^ 0xff;
    send(r, bad, d);
    assert.equal(r.membershipDrops['bad-checksum'], 1);
    assert.equal(r.querier.group(0xef010203)?.receivers.length, 3);
  });
});
