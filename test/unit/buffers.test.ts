/**
 * The per-packet allocation helpers: Slab (src/net/slab.ts) and RandomPool (src/crypto/random-pool.ts).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { RandomPool } from '../../src/crypto/random-pool.js';
import { Slab } from '../../src/net/slab.js';

describe('Slab', () => {
  it('hands out zeroed, disjoint, 8-byte-aligned views of one buffer until it is full', () => {
    const slab = new Slab(1024);
    const a = slab.take(13);
    const b = slab.take(40);
    assert.equal(a.length, 13);
    assert.equal(b.length, 40);
    assert.equal(a.buffer, b.buffer, 'one slab');
    assert.equal(a.byteOffset, 0);
    assert.equal(b.byteOffset, 16, 'the next start is rounded up to 8');
    assert.ok(a.every((x) => x === 0) && b.every((x) => x === 0));
    a.fill(0xaa);
    assert.ok(
      b.every((x) => x === 0),
      'writing one view leaves the next alone',
    );
  });

  it('starts a new slab when the current one is full, leaving earlier views intact', () => {
    const slab = new Slab(256);
    const views: Uint8Array[] = [];
    for (let i = 0; i < 20; i++) {
      const v = slab.take(16);
      v.fill(i + 1);
      views.push(v);
    }
    const buffers = new Set(views.map((v) => v.buffer));
    assert.equal(buffers.size, 2, '16 views of 16 bytes fill a 256-byte slab, the rest go to a second');
    views.forEach((v, i) =>
      assert.ok(
        v.every((x) => x === i + 1),
        `view ${i} kept its bytes`,
      ),
    );
    const fresh = slab.take(200);
    assert.ok(
      fresh.every((x) => x === 0),
      'a view that does not fit the rest starts a fresh, zeroed slab',
    );
  });

  it('gives a large buffer its own allocation', () => {
    const slab = new Slab(1024);
    const small = slab.take(8);
    const large = slab.take(65);
    assert.notEqual(large.buffer, small.buffer);
    assert.equal(large.byteOffset, 0);
    assert.equal(large.byteLength, large.buffer.byteLength);
    assert.equal(slab.take(8).buffer, small.buffer, 'the slab goes on where it was');
  });
});

describe('RandomPool', () => {
  it('draws the source bytes in order, each once, refilling when they run out', () => {
    let calls = 0;
    let next = 0;
    const source = (n: number): Uint8Array => {
      calls++;
      return Uint8Array.from({ length: n }, () => next++ & 0xff);
    };
    const pool = new RandomPool(source, 5);
    assert.equal(calls, 0, 'nothing is drawn before it is needed');
    assert.equal(pool.uint16(), 0x0001);
    assert.equal(pool.uint16(), 0x0203, 'big-endian, the next two bytes');
    assert.equal(calls, 1);
    assert.equal(pool.uint16(), 0x0506, 'one byte was left: the pool refills and skips it');
    assert.equal(calls, 2);
    assert.equal(pool.uint16(), 0x0708);
  });

  it('is uniform enough over 2^16 to jitter a timer', () => {
    const pool = new RandomPool(randomBytes);
    const buckets = new Array<number>(16).fill(0);
    const n = 32_000;
    for (let i = 0; i < n; i++) buckets[pool.uint16() >>> 12]!++;
    for (const count of buckets) assert.ok(Math.abs(count - n / 16) < n / 16 / 4, `bucket ${count}`);
  });

  it('refuses a size too small for one draw, and a source that returns too little', () => {
    assert.throws(() => new RandomPool(randomBytes, 2), /bad size/);
    const pool = new RandomPool(() => new Uint8Array(1), 8);
    assert.throws(() => pool.uint16(), /returned 1 bytes/);
  });
});
