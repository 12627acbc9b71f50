/**
 * The main-thread poll loop's waiting policy (src/io/poller.ts), with poll(2) and the clock replaced:
 * how long each poll may wait after a batch, within and after the warm window, and that a busy handler
 * makes the next poll look without waiting.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  COALESCE_FROM,
  COALESCE_WAIT_MAX_US,
  COALESCE_WAIT_US,
  coalesceWaitFromEnv,
  IDLE_WAIT_MS,
  POLLFD_REVENTS_OFFSET,
  Poller,
  WARM_WAIT_MS,
} from '../../src/io/poller.js';

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

describe('Poller: handing the CPU over after a lone answer', () => {
  /**
   * A poller whose handler reads a batch of `batch` datagrams (noteBatch), then "sends" `sends` times
   * `size` datagrams (handOff), and returns `busy`.
   */
  function handOffRig(yieldCpu: (() => void) | null): {
    poller: Poller;
    yields: () => number;
    readyNext: () => void;
    set: (o: { sends?: number; size?: number; batch?: number; busy?: boolean }) => void;
  } {
    let ready = 0;
    let yields = 0;
    let sends = 1;
    let size = 1;
    let batch = 1;
    let busy = false;
    const poll = (fds: Uint8Array, _n: number, _timeoutMs: number): number => {
      if (ready === 0) return 0;
      ready--;
      fds[POLLFD_REVENTS_OFFSET] = 1;
      return 1;
    };
    const poller = new Poller({
      poll,
      now: () => 1_000,
      warmWindowMs: 50,
      yieldCpu: yieldCpu === null ? null : () => void (yields++, yieldCpu()),
    });
    poller.add(7, () => {
      poller.noteBatch(7, batch);
      for (let i = 0; i < sends; i++) poller.handOff(size);
      return busy;
    });
    return {
      poller,
      yields: () => yields,
      readyNext: () => void ready++,
      set: (o) => {
        sends = o.sends ?? sends;
        size = o.size ?? size;
        batch = o.batch ?? batch;
        busy = o.busy ?? busy;
      },
    };
  }

  it('yields once, at the first send of a turn that woke from a wait', async () => {
    const r = handOffRig(() => undefined);
    try {
      await turns(3); // the first look at a new descriptor does not wait: not a wake-up
      assert.equal(r.yields(), 0);
      r.set({ sends: 3 });
      r.readyNext();
      await turns(2);
      assert.equal(r.yields(), 1, 'three sends in one woken turn: one yield');
      assert.equal(r.poller.handedOff, 1);
      r.readyNext();
      await turns(2);
      assert.equal(r.yields(), 2, 'the next wake-up: one more');
      r.poller.handOff(1);
      assert.equal(r.yields(), 2, 'a send outside a turn (a timer, say) does not yield');
    } finally {
      r.poller.remove(7);
    }
  });

  it(`does not yield after a read of ${COALESCE_FROM} datagrams or more, or for a send of as many`, async () => {
    const r = handOffRig(() => undefined);
    try {
      await turns(3);
      r.set({ batch: 2, size: 2 });
      r.readyNext();
      await turns(2);
      assert.equal(r.yields(), 1, 'two datagrams in, two out: still a lone answer');
      r.set({ batch: COALESCE_FROM, size: 1 });
      r.readyNext();
      await turns(3);
      assert.equal(r.yields(), 1, 'a stream: no yield');
      r.set({ batch: 1, size: COALESCE_FROM });
      r.readyNext();
      await turns(3);
      assert.equal(r.yields(), 1, 'a larger send: no yield');
      r.set({ sends: 2, size: 1 });
      r.readyNext();
      await turns(3);
      assert.equal(r.yields(), 2, 'a lone packet again');
    } finally {
      r.poller.remove(7);
    }
  });

  it('does not yield in busy turns or for what an idle hook queued', async () => {
    const r = handOffRig(() => undefined);
    try {
      await turns(3);
      r.set({ busy: true });
      r.readyNext();
      r.readyNext();
      r.readyNext();
      await turns(3);
      assert.equal(r.yields(), 1, 'the woken turn yields; the turns after a full batch do not');
      r.set({ busy: false });
      await turns(2);
      let queued = false;
      const off = r.poller.onIdle(() => {
        if (queued) return false;
        queued = true;
        r.readyNext(); // the hook's own packet, ready at once
        return true;
      });
      try {
        await turns(4);
        assert.ok(queued, 'the hook ran');
        assert.equal(r.yields(), 1, "serving the hook's packet does not yield");
      } finally {
        off();
      }
    } finally {
      r.poller.remove(7);
    }
  });

  it('never yields when turned off (WEFT_POLL_HANDOFF=0)', async () => {
    const r = handOffRig(null);
    try {
      await turns(3);
      r.readyNext();
      await turns(2);
      assert.equal(r.poller.handedOff, 0);
    } finally {
      r.poller.remove(7);
    }
  });
});

describe('Poller: gathering a stream', () => {
  /** A poller whose handler reads `batches[i]` datagrams at its i-th call; the log interleaves polls and sleeps. */
  function gatherRig(coalesceUs: number, batches: number[], busyAt = -1) {
    const log: string[] = [];
    let ready = 0;
    let call = 0;
    const poll = (fds: Uint8Array, _n: number, timeoutMs: number): number => {
      log.push(`poll ${timeoutMs}`);
      if (ready === 0) return 0;
      ready--;
      fds[POLLFD_REVENTS_OFFSET] = 1;
      return 1;
    };
    const poller: Poller = new Poller({
      poll,
      now: () => 0,
      warmWindowMs: 50,
      coalesceUs,
      sleep: (us) => {
        log.push(`sleep ${us}`);
        ready++; // the stream went on meanwhile
      },
    });
    poller.add(7, () => {
      const n = batches[call] ?? 0;
      log.push(`read ${n}`);
      poller.noteBatch(7, n);
      return call++ === busyAt;
    });
    return { poller, log, readyNext: () => void ready++ };
  }

  it(`sleeps before looking again after a batch of ${COALESCE_FROM} or more, then looks without waiting`, async () => {
    const r = gatherRig(COALESCE_WAIT_US, [COALESCE_FROM, 1]);
    try {
      r.readyNext();
      await turns(4);
      const first = r.log.indexOf(`read ${COALESCE_FROM}`);
      assert.ok(first >= 0, r.log.join(', '));
      const after = r.log.slice(first + 1);
      const sleep = after.indexOf(`sleep ${COALESCE_WAIT_US}`);
      assert.ok(sleep >= 0, `a sleep followed the batch: ${r.log.join(', ')}`);
      assert.ok(
        after.slice(0, sleep).every((e) => e === 'poll 0'),
        `only the batch's own follow-up looks came before it: ${r.log.join(', ')}`,
      );
      assert.equal(after[sleep + 1], 'poll 0', 'after the sleep, a look without waiting');
      assert.equal(after[sleep + 2], 'read 1', 'and what arrived meanwhile is read');
      assert.equal(r.poller.coalesced, 1);
      assert.ok(!after.slice(sleep + 3).some((e) => e.startsWith('sleep')), 'a batch of one ends no sleep');
      assert.ok(after.includes(`poll ${WARM_WAIT_MS}`), 'then the usual short waits');
    } finally {
      r.poller.remove(7);
    }
  });

  it(`never sleeps after smaller batches, with the sleep off, or when a handler stopped at its limit`, async () => {
    for (const [coalesceUs, batches, busyAt, why] of [
      [COALESCE_WAIT_US, [COALESCE_FROM - 1, COALESCE_FROM - 1, 1], -1, 'small batches'],
      [0, [10, 10, 10], -1, 'WEFT_POLL_COALESCE_US=0'],
      [COALESCE_WAIT_US, [64], 0, 'a full batch: more is queued already'],
    ] as const) {
      const r = gatherRig(coalesceUs, [...batches], busyAt);
      try {
        for (let i = 0; i < batches.length; i++) {
          r.readyNext();
          await turns(3);
        }
        if (busyAt >= 0) {
          const read = r.log.indexOf('read 64');
          assert.equal(r.log[read + 1], 'poll 0', `${why}: looks again at once`);
          assert.ok(!r.log.slice(read + 1, read + 3).some((e) => e.startsWith('sleep')), why);
        } else {
          assert.ok(!r.log.some((e) => e.startsWith('sleep')), `${why}: ${r.log.join(', ')}`);
          assert.equal(r.poller.coalesced, 0, why);
        }
      } finally {
        r.poller.remove(7);
      }
    }
  });

  it('does not sleep while another descriptor has work (the TUN device with packets to send)', async () => {
    const log: string[] = [];
    let streamReady = false;
    let otherPolls = 0;
    const poll = (fds: Uint8Array, n: number, timeoutMs: number): number => {
      log.push(`poll ${timeoutMs}`);
      let k = 0;
      for (let i = 0; i < n; i++) {
        const fd = new DataView(fds.buffer).getInt32(i * 8, true);
        const ready = fd === 7 ? streamReady : otherPolls > 0;
        if (!ready) continue;
        fds[i * 8 + POLLFD_REVENTS_OFFSET] = 1;
        k++;
      }
      streamReady = false;
      if (otherPolls > 0) otherPolls--;
      return k;
    };
    const poller = new Poller({
      poll,
      now: () => 0,
      warmWindowMs: 50,
      coalesceUs: COALESCE_WAIT_US,
      sleep: (us) => void log.push(`sleep ${us}`),
    });
    let streamReads = 0;
    poller.add(7, () => {
      log.push('read stream');
      poller.noteBatch(7, streamReads++ === 0 ? 10 : 1);
      // From this batch on the other descriptor has work for a while (longer than one turn's looks).
      if (streamReads === 1) otherPolls = 8;
      return false;
    });
    poller.add(8, () => {
      log.push('read other');
      return false;
    });
    try {
      await turns(2);
      streamReady = true;
      await turns(6);
      assert.equal(otherPolls, 0, `the other descriptor's work was served: ${log.join(', ')}`);
      assert.equal(poller.coalesced, 0, `no sleep while it had work: ${log.join(', ')}`);
    } finally {
      poller.remove(7);
      poller.remove(8);
    }
  });

  it('takes WEFT_POLL_COALESCE_US as whole microseconds, and names the variable when it is wrong', () => {
    assert.equal(coalesceWaitFromEnv(undefined), COALESCE_WAIT_US);
    assert.equal(coalesceWaitFromEnv(''), COALESCE_WAIT_US);
    assert.equal(coalesceWaitFromEnv('0'), 0);
    assert.equal(coalesceWaitFromEnv('150'), 150);
    assert.equal(coalesceWaitFromEnv(String(COALESCE_WAIT_MAX_US)), COALESCE_WAIT_MAX_US);
    for (const bad of ['-1', '1.5', 'abc', '300us', String(COALESCE_WAIT_MAX_US + 1), '1e3']) {
      assert.throws(() => coalesceWaitFromEnv(bad), /WEFT_POLL_COALESCE_US must be a whole number/, bad);
    }
  });
});
