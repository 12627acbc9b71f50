/**
 * The main-thread poll loop's waiting policy (src/io/poller.ts), with poll(2) and the clock replaced:
 * how long each poll may wait after a batch, within and after the warm window, and that a busy handler
 * makes the next poll look without waiting.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IDLE_WAIT_MS, POLLFD_REVENTS_OFFSET, Poller, WARM_WAIT_MS } from '../../src/io/poller.js';

/** Lets the poller run a few turns (each is one setImmediate). */
async function turns(k: number): Promise<void> {
  for (let i = 0; i < k; i++) await new Promise((resolve) => setImmediate(resolve));
}

function rig(warmWindowMs: number): {
  poller: Poller;
  waits: number[];
  clock: { now: number };
  readyNext: () => void;
  served: () => number;
  busy: (b: boolean) => void;
} {
  const waits: number[] = [];
  const clock = { now: 1_000 };
  let ready = 0;
  let served = 0;
  let busy = false;
  const poll = (fds: Uint8Array, n: number, timeoutMs: number): number => {
    assert.equal(n, 1);
    waits.push(timeoutMs);
    if (ready === 0) return 0;
    ready--;
    fds[POLLFD_REVENTS_OFFSET] = 1; // POLLIN in revents
    return 1;
  };
  const poller = new Poller({ poll, now: () => clock.now, warmWindowMs });
  poller.add(7, () => {
    served++;
    return busy;
  });
  return {
    poller,
    waits,
    clock,
    readyNext: () => void ready++,
    served: () => served,
    busy: (b) => void (busy = b),
  };
}

describe('Poller: waiting policy', () => {
  it('waits WARM_WAIT_MS within the warm window after a batch, IDLE_WAIT_MS after it', async () => {
    const r = rig(50);
    try {
      r.readyNext();
      await turns(3);
      assert.equal(r.served(), 1);
      assert.equal(r.waits[0], 0, 'a new descriptor is looked at without waiting');
      assert.equal(r.waits.at(-1), WARM_WAIT_MS, 'right after a batch: short waits');
      r.clock.now += 49;
      await turns(2);
      assert.equal(r.waits.at(-1), WARM_WAIT_MS, 'still inside the window');
      r.clock.now += 2;
      await turns(2);
      assert.equal(r.waits.at(-1), IDLE_WAIT_MS, 'the window has passed');
      r.readyNext();
      await turns(3);
      assert.equal(r.served(), 2);
      assert.equal(r.waits.at(-1), WARM_WAIT_MS, 'the next batch opens the window again');
    } finally {
      r.poller.remove(7);
    }
  });

  it('never cuts waits short with the window off (WEFT_POLL_WARM=0)', async () => {
    const r = rig(0);
    try {
      r.readyNext();
      await turns(3);
      assert.equal(r.served(), 1);
      assert.deepEqual(
        r.waits.filter((w) => w !== 0),
        r.waits.filter((w) => w !== 0).map(() => IDLE_WAIT_MS),
      );
      assert.ok(r.waits.includes(IDLE_WAIT_MS));
    } finally {
      r.poller.remove(7);
    }
  });

  it('looks again at once, without waiting, after a handler stopped at its batch limit', async () => {
    const r = rig(50);
    try {
      r.busy(true);
      r.readyNext();
      await turns(3);
      const first = r.waits.indexOf(WARM_WAIT_MS);
      assert.ok(first > 0, `a wait came at last: ${r.waits.join(',')}`);
      assert.ok(
        r.waits.slice(0, first).every((w) => w === 0),
        `no wait while the handler had more: ${r.waits.join(',')}`,
      );
      assert.ok(r.waits.slice(1, first).length >= 1, 'the turn after a busy batch looked without waiting');
    } finally {
      r.poller.remove(7);
    }
  });
});

describe('Poller: write interest', () => {
  it('asks for POLLOUT only while a writer is registered, and calls the writer, not the reader, for it', async () => {
    const events: number[] = [];
    let revents = 0;
    let reads = 0;
    let writes = 0;
    const poll = (fds: Uint8Array, n: number): number => {
      assert.equal(n, 1);
      events.push(fds[4]! | (fds[5]! << 8));
      if (revents === 0) return 0;
      fds[POLLFD_REVENTS_OFFSET] = revents;
      revents = 0;
      return 1;
    };
    const poller = new Poller({ poll, now: () => 0, warmWindowMs: 0 });
    poller.add(9, () => {
      reads++;
      return false;
    });
    try {
      await turns(2);
      assert.equal(events.at(-1), 0x001, 'POLLIN only');
      poller.watchWritable(9, () => void writes++);
      await turns(2);
      assert.equal(events.at(-1), 0x005, 'POLLIN | POLLOUT');
      revents = 0x004;
      await turns(3);
      assert.equal(writes, 1);
      assert.equal(reads, 0, 'POLLOUT alone does not call the reader');
      revents = 0x005;
      await turns(3);
      assert.equal(writes, 2);
      assert.equal(reads, 1);
      poller.watchWritable(9, undefined);
      await turns(2);
      assert.equal(events.at(-1), 0x001);
      poller.watchWritable(10, () => void writes++);
      await turns(2);
      assert.equal(events.at(-1), 0x001, 'a descriptor that was never added is not watched');
    } finally {
      poller.remove(9);
    }
  });
});

describe('Poller: idle hooks', () => {
  it('run at each short wait that found nothing, inside the warm window only', async () => {
    const r = rig(50);
    let calls = 0;
    const off = r.poller.onIdle(() => {
      calls++;
      return false;
    });
    try {
      await turns(3);
      assert.equal(calls, 0, 'no traffic yet: long waits, no hook');
      r.readyNext();
      await turns(4);
      assert.equal(r.served(), 1);
      assert.ok(calls >= 1, 'a short wait after the batch ran the hook');
      const before = calls;
      r.readyNext();
      await turns(1);
      assert.equal(calls, before, 'a wait that found something ready does not run it');
      r.clock.now += 51;
      await turns(2);
      const after = calls;
      await turns(3);
      assert.equal(calls, after, 'the window has passed: no more calls');
      assert.equal(r.waits.at(-1), IDLE_WAIT_MS);
      off();
      r.readyNext();
      await turns(4);
      assert.equal(calls, after, 'removed');
    } finally {
      off();
      r.poller.remove(7);
    }
  });

  it('a hook that queued something makes the poller look at once and serve it', async () => {
    const r = rig(50);
    let hookAt = -1;
    let servedAtHook = -1;
    const off = r.poller.onIdle(() => {
      if (hookAt >= 0) return false;
      hookAt = r.waits.length;
      servedAtHook = r.served();
      r.readyNext(); // what the hook sent is ready at once (loopback)
      return true;
    });
    try {
      r.readyNext();
      await turns(6);
      assert.ok(hookAt > 0, 'the hook ran');
      assert.equal(r.served(), servedAtHook + 1, 'what it queued was served');
      assert.equal(r.waits[hookAt - 1], WARM_WAIT_MS, 'it ran after a short wait found nothing');
      assert.equal(r.waits[hookAt], 0, 'then the poller looked without waiting');
    } finally {
      off();
      r.poller.remove(7);
    }
  });
});
