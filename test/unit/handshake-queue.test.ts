/** The bounded handshake queue (handshake-queue.ts): first in first out, the oldest dropped when full. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HandshakeQueue } from '../../src/wireguard/handshake-queue.js';

describe('HandshakeQueue', () => {
  const from = { address: '192.0.2.9', port: 9 };

  it('keeps the newest `capacity` messages, in order, and reports each drop', () => {
    const q = new HandshakeQueue(3);
    const dropped = [1, 2, 3, 4, 5].map((n) => q.push(Uint8Array.of(n, n), from, n));
    assert.deepEqual(dropped, [false, false, false, true, true]);
    assert.equal(q.length, 3);
    const out = [q.shift(), q.shift(), q.shift()];
    assert.deepEqual(
      out.map((e) => e && [...e.bytes]),
      [
        [3, 3],
        [4, 4],
        [5, 5],
      ],
    );
    assert.deepEqual(
      out.map((e) => e?.arrived),
      [3, 4, 5],
    );
    assert.equal(q.shift(), undefined);
    assert.equal(q.length, 0);
  });

  it('copies in and out: the caller may reuse its buffer, and keep what it took', () => {
    const q = new HandshakeQueue(2);
    const buffer = Uint8Array.of(7, 7, 7);
    q.push(buffer, from, 0);
    buffer.fill(0);
    const first = q.shift();
    assert.deepEqual([...(first?.bytes ?? [])], [7, 7, 7]);
    q.push(Uint8Array.of(1), from, 1);
    q.push(Uint8Array.of(2), from, 2);
    assert.deepEqual([...(first?.bytes ?? [])], [7, 7, 7]);
  });

  it('refuses a message longer than an initiation and a size that is not a positive integer', () => {
    assert.throws(() => new HandshakeQueue(0), RangeError);
    assert.throws(() => new HandshakeQueue(1).push(new Uint8Array(149), from, 0), RangeError);
  });
});
