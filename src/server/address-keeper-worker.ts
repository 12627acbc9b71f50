/**
 * The thread that holds a failover pair's lease and owns the shared address on the interface
 * (address-keeper.ts starts it; docs/scale-out.md, "A failover pair").
 *
 * Why a thread of its own: the gateway's main thread waits for each store call, up to 10 s while PostgreSQL is
 * unreachable but its calls have not failed yet (store-postgres-sync.ts). A lease checked on that thread would
 * go unchecked for as long, and a holder cut off from PostgreSQL would keep the address after PostgreSQL had
 * freed the lease and the standby had taken it. Here the lease's session (its own connection), its deadline and
 * the address are on this thread's event loop, which nothing on the main thread can block.
 *
 *   1. `try`: takes the lease (pg-lease.ts) when it is free; the answer is `held` or `busy`.
 *   2. `add` / `announce`: only while the lease is held (checked when the step's turn comes); `remove` always.
 *   3. The lease lost (its connection failed, or its deadline passed: 2 s after the send of the last answered
 *      check, 1 s before PostgreSQL frees the lock): the address is removed here at once, the removal logged
 *      with its time (written straight to stderr, which does not go through the main thread), and only then
 *      the main thread told (`lost`), whenever it next runs.
 *   4. `release`: unlocks and closes the lease's connection (the main thread removes the address first).
 * Every step that touches the interface runs one at a time, in order, so a removal for a loss always comes
 * after an addition that was under way.
 */
import { writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { acquireLease, type Lease } from '../control/pg-lease.js';
import { announceAddress } from '../io/arp.js';
import { CommandError, ip } from '../io/linux-net.js';
import { advertiseAddress } from '../io/ndp.js';
import type { KeeperAnswer, KeeperRequest, KeeperSetup } from './address-keeper-protocol.js';

/** Announcements sent at a takeover (and again a second later): a lost frame must not cost a member. */
const ANNOUNCEMENTS = 2;
/**
 * IPv6: one advertisement at a takeover and one a second later, within the MAX_NEIGHBOR_ADVERTISEMENT (3)
 * unsolicited advertisements RFC 4861 §7.2.6 and §10 allow.
 */
const ADVERTISEMENTS = 1;

const setup = workerData as KeeperSetup;
const port = parentPort;
let lease: Lease | undefined;
let steps: Promise<unknown> = Promise.resolve();

function log(line: string): void {
  try {
    writeSync(2, `${new Date().toISOString()} ${line}\n`);
  } catch {
    // stderr closed: nothing to tell
  }
}

function step<T>(fn: () => Promise<T>): Promise<T> {
  const next = steps.then(fn, fn);
  steps = next.catch(() => undefined);
  return next;
}

async function addAddress(): Promise<void> {
  // IPv6: nodad, usable at once; duplicate address detection would fail on the old holder's leftover copy.
  await ip(['addr', 'replace', setup.cidr, 'dev', setup.dev, ...(setup.family === 6 ? ['nodad'] : [])]);
}

async function removeAddress(): Promise<void> {
  try {
    await ip(['addr', 'del', setup.cidr, 'dev', setup.dev]);
  } catch (e) {
    // Not there: nothing to remove.
    if (!(
      e instanceof CommandError &&
      /Address not found|address not found|Cannot assign requested address|EADDRNOTAVAIL/.test(e.stderr)
    ))
      throw e;
  }
}

async function announce(): Promise<boolean> {
  const mac = setup.mac === undefined ? undefined : Uint8Array.from(setup.mac);
  if (setup.family === 6)
    return advertiseAddress(setup.dev, Uint8Array.from(setup.address), ADVERTISEMENTS, mac);
  return announceAddress(setup.dev, Uint8Array.from(setup.address), ANNOUNCEMENTS, mac);
}

function held(): boolean {
  return lease !== undefined && lease.held;
}

/** Step 3. */
function lost(l: Lease, reason: Error): void {
  if (lease !== l) return;
  lease = undefined;
  const at = Date.now();
  void step(async () => {
    let removeError: string | undefined;
    try {
      await removeAddress();
      log(
        `failover: removed ${setup.cidr} from ${setup.dev} ${Date.now() - at} ms after losing its lease ` +
          `(${reason.message})`,
      );
    } catch (e) {
      removeError = (e as Error).message;
      log(`failover: cannot remove ${setup.cidr} from ${setup.dev}: ${removeError}`);
    }
    post({ kind: 'lost', reason: reason.message, at, removedAt: Date.now(), removeError });
  });
}

function post(message: KeeperAnswer): void {
  port?.postMessage(message);
}

async function serve(r: KeeperRequest): Promise<unknown> {
  switch (r.op) {
    case 'try': {
      if (lease !== undefined) return 'held';
      const l = await acquireLease(
        { connectionString: setup.url, connectionTimeoutMillis: setup.connectTimeoutMs },
        setup.leaseName,
        { holder: setup.holder },
      );
      if (l === null) return 'busy';
      lease = l;
      l.onLost((reason) => lost(l, reason));
      return 'held';
    }
    case 'add':
      return step(async () => {
        if (!held()) throw new Error('the lease is no longer held');
        await addAddress();
        return true;
      });
    case 'remove':
      return step(async () => {
        await removeAddress();
        return true;
      });
    case 'announce':
      return step(async () => (held() ? announce() : false));
    case 'release': {
      const l = lease;
      lease = undefined;
      if (l) await l.release();
      return true;
    }
  }
}

port?.on('message', (r: KeeperRequest) => {
  serve(r).then(
    (value) => post({ kind: 'answer', id: r.id, ok: true, value }),
    (err: unknown) =>
      post({
        kind: 'answer',
        id: r.id,
        ok: false,
        message: err instanceof Error ? err.message : String(err),
      }),
  );
});
