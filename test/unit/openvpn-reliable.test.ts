/**
 * The control channel's reliability layer (src/openvpn/reliable.ts) with a fake clock: retransmission
 * deadlines and their backoff, the send window, fast retransmit, the receive window, duplicates re-ACKed,
 * ACKs piggybacked or sent alone, and two instances talking over a channel that loses, duplicates and
 * reorders packets.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  MAX_ACKS_PER_PACKET,
  P_CONTROL_V1,
  RELIABLE_MAX_BACKLOG,
  RELIABLE_MAX_TIMEOUT,
  RELIABLE_RECEIVE_WINDOW,
  RELIABLE_SEND_WINDOW,
  TLS_TIMEOUT,
} from '../../src/openvpn/constants.js';
import { Reliable, type Transmission } from '../../src/openvpn/reliable.js';
import { seededRandom } from '../support/random.js';

const msg = (n: number): Uint8Array => Uint8Array.of(n & 0xff, (n >>> 8) & 0xff);
const controls = (out: Transmission[]): Extract<Transmission, { kind: 'control' }>[] =>
  out.filter((t): t is Extract<Transmission, { kind: 'control' }> => t.kind === 'control');

describe('OpenVPN reliability layer: sending', () => {
  it('retransmits after TLS_TIMEOUT, doubling each time up to the ceiling; deadlines come out', () => {
    const r = new Reliable();
    r.enqueue(P_CONTROL_V1, msg(1));
    assert.equal(r.nextDeadline(), undefined, 'nothing sent yet');
    let now = 0;
    const first = controls(r.poll(now));
    assert.deepEqual(
      first.map((t) => [t.packetId, t.attempt]),
      [[0, 1]],
    );
    const gaps: number[] = [];
    for (let attempt = 2; attempt <= 8; attempt++) {
      const deadline = r.nextDeadline()!;
      assert.deepEqual(r.poll(deadline - 1), [], 'nothing before the deadline');
      gaps.push(deadline - now);
      now = deadline;
      const again = controls(r.poll(now));
      assert.deepEqual(
        again.map((t) => [t.packetId, t.attempt]),
        [[0, attempt]],
      );
    }
    assert.deepEqual(gaps, [
      TLS_TIMEOUT,
      TLS_TIMEOUT * 2,
      TLS_TIMEOUT * 4,
      TLS_TIMEOUT * 8,
      RELIABLE_MAX_TIMEOUT,
      RELIABLE_MAX_TIMEOUT,
      RELIABLE_MAX_TIMEOUT,
    ]);
    r.acknowledge([0]);
    assert.equal(r.nextDeadline(), undefined);
    assert.deepEqual(r.poll(now + 100_000), []);
    assert.equal(r.counters.retransmitted, 7);
  });

  it('keeps at most the send window in flight; ACKs open it again, in order', () => {
    const r = new Reliable();
    for (let i = 0; i < 10; i++) assert.equal(r.enqueue(P_CONTROL_V1, msg(i)), 'queued');
    const sent = controls(r.poll(0));
    assert.deepEqual(
      sent.map((t) => t.packetId),
      [0, 1, 2, 3, 4, 5],
    );
    assert.equal(sent.length, RELIABLE_SEND_WINDOW);
    assert.deepEqual(r.poll(1), []);
    r.acknowledge([1, 0, 0, 77]); // duplicates and unknown ids are harmless
    assert.deepEqual(
      controls(r.poll(2)).map((t) => [t.packetId, t.payload[0]]),
      [
        [6, 6],
        [7, 7],
      ],
    );
    assert.equal(r.unacknowledged, 8);
  });

  it('fast-retransmits a packet once N_ACK_RETRANSMIT later packets were acknowledged', () => {
    const r = new Reliable();
    for (let i = 0; i < 5; i++) r.enqueue(P_CONTROL_V1, msg(i));
    r.poll(0);
    r.acknowledge([1]);
    r.acknowledge([2]);
    assert.deepEqual(r.poll(10), []);
    r.acknowledge([3]);
    const out = controls(r.poll(20));
    assert.deepEqual(
      out.map((t) => [t.packetId, t.attempt]),
      [[0, 2]],
    );
    assert.equal(r.counters.fastRetransmits, 1);
  });

  it('bounds the backlog', () => {
    const r = new Reliable();
    for (let i = 0; i < RELIABLE_MAX_BACKLOG; i++) assert.equal(r.enqueue(P_CONTROL_V1, msg(i)), 'queued');
    assert.equal(r.enqueue(P_CONTROL_V1, msg(0)), 'backlog-full');
    r.poll(0);
    assert.equal(r.enqueue(P_CONTROL_V1, msg(0)), 'queued', 'room again once the window took some');
  });

  it('starts at firstPacketId and refuses nonsense options', () => {
    const r = new Reliable({ firstPacketId: 5 });
    r.enqueue(P_CONTROL_V1, msg(0));
    assert.equal(controls(r.poll(0))[0]!.packetId, 5);
    assert.throws(() => new Reliable({ sendWindow: 0 }), RangeError);
    assert.throws(() => new Reliable({ initialTimeout: 0.5 }), RangeError);
  });
});

describe('OpenVPN reliability layer: receiving', () => {
  it('delivers in order, once; re-ACKs duplicates; drops beyond the window without an ACK', () => {
    const r = new Reliable();
    assert.equal(r.receive(2, P_CONTROL_V1, msg(2)), 'accepted');
    assert.equal(r.receive(1, P_CONTROL_V1, msg(1)), 'accepted');
    assert.deepEqual(r.takeDelivered(), []);
    assert.equal(r.receive(0, P_CONTROL_V1, msg(0)), 'accepted');
    assert.deepEqual(
      r.takeDelivered().map((m) => m.payload[0]),
      [0, 1, 2],
    );
    assert.deepEqual(r.takeDelivered(), []);
    assert.deepEqual(r.poll(0), [{ kind: 'ack', acks: [2, 1, 0] }]);
    assert.equal(r.receive(1, P_CONTROL_V1, msg(1)), 'duplicate');
    assert.equal(r.receive(3 + RELIABLE_RECEIVE_WINDOW, P_CONTROL_V1, msg(9)), 'beyond-window');
    assert.equal(r.receive(3 + RELIABLE_RECEIVE_WINDOW - 1, P_CONTROL_V1, msg(9)), 'accepted');
    assert.equal(
      r.receive(3 + RELIABLE_RECEIVE_WINDOW - 1, P_CONTROL_V1, msg(9)),
      'duplicate',
      'held is a duplicate',
    );
    assert.deepEqual(r.poll(1), [{ kind: 'ack', acks: [1, 3 + RELIABLE_RECEIVE_WINDOW - 1] }]);
    assert.deepEqual(r.takeDelivered(), []);
  });

  it('piggybacks ACKs on control packets, at most 8 each; the rest go in P_ACK_V1 packets', () => {
    const r = new Reliable({ receiveWindow: 32 });
    for (let i = 0; i < 20; i++) r.receive(i, P_CONTROL_V1, msg(i));
    r.enqueue(P_CONTROL_V1, msg(100));
    const out = r.poll(0);
    assert.equal(out.length, 3);
    assert.equal(out[0]!.kind, 'control');
    assert.deepEqual(out[0]!.acks, [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(out[1], { kind: 'ack', acks: [8, 9, 10, 11, 12, 13, 14, 15] });
    assert.deepEqual(out[2], { kind: 'ack', acks: [16, 17, 18, 19] });
    for (const t of out) assert.ok(t.acks.length <= MAX_ACKS_PER_PACKET);
    assert.deepEqual(r.acksPending, []);
  });
});

describe('OpenVPN reliability layer: two ends over a bad channel', () => {
  interface InTransit {
    at: number;
    to: 'a' | 'b';
    t: Transmission;
  }

  for (const seed of [1, 2, 3, 4, 5]) {
    it(`seed ${seed}: 30% loss, 10% duplication, reordering — every message delivered once, in order`, () => {
      const random = seededRandom(seed);
      const chance = (): number => random(1)[0]! / 256;
      const ends = { a: new Reliable(), b: new Reliable() };
      const wanted = { a: 120, b: 80 };
      // The backlog is bounded: top it up as the window drains.
      const queued = { a: 0, b: 0 };
      const topUp = (from: 'a' | 'b'): void => {
        while (
          queued[from] < wanted[from] &&
          ends[from].enqueue(P_CONTROL_V1, msg(queued[from])) === 'queued'
        )
          queued[from]++;
      };
      const received = { a: [] as number[], b: [] as number[] };
      const wire: InTransit[] = [];
      let now = 0;

      const send = (from: 'a' | 'b'): void => {
        topUp(from);
        for (const t of ends[from].poll(now)) {
          if (chance() < 0.3) continue; // lost
          const copies = chance() < 0.1 ? 2 : 1;
          for (let c = 0; c < copies; c++) {
            wire.push({ at: now + 1 + Math.floor(chance() * 300), to: from === 'a' ? 'b' : 'a', t });
          }
        }
      };

      for (let step = 0; step < 100_000; step++) {
        send('a');
        send('b');
        if (received.a.length === wanted.b && received.b.length === wanted.a) break;
        // Advance to the next event: a packet's arrival or a retransmission deadline.
        const deadlines = [ends.a.nextDeadline(), ends.b.nextDeadline()].filter(
          (d): d is number => d !== undefined,
        );
        const arrivals = wire.map((w) => w.at);
        const next = Math.min(...deadlines, ...arrivals);
        assert.ok(Number.isFinite(next), 'something is always pending until everything is delivered');
        now = Math.max(now, next);
        for (let i = wire.length - 1; i >= 0; i--) {
          const w = wire[i]!;
          if (w.at > now) continue;
          wire.splice(i, 1);
          const end = ends[w.to];
          end.acknowledge(w.t.acks);
          if (w.t.kind === 'control') end.receive(w.t.packetId, w.t.opcode, w.t.payload);
          for (const m of end.takeDelivered()) received[w.to].push(m.payload[0]! | (m.payload[1]! << 8));
        }
      }
      assert.deepEqual(
        received.b,
        Array.from({ length: wanted.a }, (_, i) => i),
      );
      assert.deepEqual(
        received.a,
        Array.from({ length: wanted.b }, (_, i) => i),
      );
      assert.ok(
        ends.a.counters.retransmitted > 0 && ends.b.counters.duplicates > 0,
        'the channel was really bad',
      );
      assert.ok(now < 3_600_000, `finished in simulated time (${now} ms)`);
    });
  }
});
