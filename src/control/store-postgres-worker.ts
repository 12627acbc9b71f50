/**
 * The worker thread behind the synchronous PostgreSQL store (store-postgres-sync.ts): it owns one
 * `PostgresStore` and answers the main thread's requests one at a time, in the order they were sent.
 *
 * Serving (one request at a time):
 *   1. `call`: run the store's method, post the answer (value or error) on the reply port, then bump the
 *      answer counter in the shared buffer and wake the main thread (Atomics.notify);
 *   2. `begin`: open a transaction (or, inside one, a savepoint) with `store.transaction`, answer, and serve
 *      the following requests inside it until the matching `end`, which commits or rolls back; the answer to
 *      `end` says whether COMMIT worked;
 *   3. `close`: close the store, answer, and stop.
 * The down flag: an answer that is StoreUnavailable sets it (the main thread then fails calls at once without
 * asking), and so does `unanswered`, which the main thread sends when it gave up waiting (a stalled path: a
 * server or network that neither answers nor fails); a prober asks the server again (100 ms, doubling up to
 * 2 s) and clears it when it answers.
 * `follow`: a LISTEN connection (store.listen) whose wake-ups and lost/recovered events are posted on the
 * events port, which the main thread reads from its event loop (not blocking).
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { StoreConflict } from './store.js';
import {
  openPostgresStore,
  StoreSchemaTooNew,
  StoreUnavailable,
  type PostgresStore,
} from './store-postgres.js';
import {
  ANSWERS,
  DOWN,
  type Answer,
  type FollowEvent,
  type Request,
  type SerializedError,
  type WorkerSetup,
} from './store-postgres-protocol.js';

const PROBE_MIN_MS = 100;
const PROBE_MAX_MS = 2000;

const setup = workerData as WorkerSetup;
const state = new Int32Array(setup.state);
const replies: MessagePort = setup.replies;
const events: MessagePort = setup.events;

function answer(a: Answer): void {
  replies.postMessage(a);
  Atomics.add(state, ANSWERS, 1);
  Atomics.notify(state, ANSWERS);
}

function serialize(err: unknown): SerializedError {
  if (err instanceof StoreUnavailable) {
    const cause = err.cause instanceof Error ? err.cause.message : String(err.cause);
    return { name: 'StoreUnavailable', message: err.message, cause };
  }
  if (err instanceof StoreSchemaTooNew) return { name: err.name, message: err.message, found: err.found };
  if (err instanceof StoreConflict) return { name: err.name, message: err.message };
  if (err instanceof Error) return { name: err.name, message: err.message };
  return { name: 'Error', message: String(err) };
}

// ---- the down flag and its prober ----

let wakeProber: (() => void) | undefined;

function markDown(): void {
  if (Atomics.exchange(state, DOWN, 1) === 0) wakeProber?.();
}

function markUp(): void {
  Atomics.store(state, DOWN, 0);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Started at the top level, so its calls never run inside a transaction's context. */
async function prober(store: PostgresStore): Promise<void> {
  for (;;) {
    if (Atomics.load(state, DOWN) === 0) await new Promise<void>((resolve) => (wakeProber = resolve));
    wakeProber = undefined;
    if (closing) return;
    for (
      let delay = PROBE_MIN_MS;
      Atomics.load(state, DOWN) === 1;
      delay = Math.min(delay * 2, PROBE_MAX_MS)
    ) {
      await sleep(delay);
      if (closing) return;
      try {
        await store.revision();
        markUp();
      } catch {
        // Still away; the next attempt waits longer.
      }
    }
  }
}

// ---- the request queue ----

const queue: Request[] = [];
let waiting: ((r: Request) => void) | undefined;
let closing = false;

function next(): Promise<Request> {
  const r = queue.shift();
  if (r !== undefined) return Promise.resolve(r);
  return new Promise((resolve) => (waiting = resolve));
}

parentPort?.on('message', (r: Request) => {
  if (r.kind === 'unanswered') {
    markDown();
    return;
  }
  const w = waiting;
  if (w !== undefined) {
    waiting = undefined;
    w(r);
  } else queue.push(r);
});

class Rollback extends Error {}

type Method = (...args: unknown[]) => Promise<unknown>;

async function call(store: PostgresStore, r: Extract<Request, { kind: 'call' }>): Promise<void> {
  const method = (store as unknown as Record<string, unknown>)[r.method];
  if (typeof method !== 'function' || r.method.startsWith('#') || r.method === 'transaction') {
    answer({ id: r.id, ok: false, error: { name: 'TypeError', message: `no store method ${r.method}` } });
    return;
  }
  try {
    const value = await (method as Method).apply(store, [...r.args]);
    answer({ id: r.id, ok: true, value });
  } catch (err) {
    if (err instanceof StoreUnavailable) markDown();
    answer({ id: r.id, ok: false, error: serialize(err) });
  }
}

/** Runs `begin`'s transaction, serving requests inside it until its `end`. */
async function transaction(store: PostgresStore, begin: Request): Promise<void> {
  let began = false;
  let end: Extract<Request, { kind: 'end' }> | undefined;
  try {
    await store.transaction(async () => {
      began = true;
      answer({ id: begin.id, ok: true, value: undefined });
      end = await serve(store, true);
      if (end === undefined) throw new Rollback('closing');
      if (!end.commit) throw new Rollback('rolled back');
    });
    if (end !== undefined) answer({ id: end.id, ok: true, value: undefined });
  } catch (err) {
    if (err instanceof StoreUnavailable) markDown();
    if (!began) answer({ id: begin.id, ok: false, error: serialize(err) });
    else if (end !== undefined)
      answer(
        err instanceof Rollback
          ? { id: end.id, ok: true, value: undefined }
          : { id: end.id, ok: false, error: serialize(err) },
      );
  }
}

/** Serves requests; inside a transaction, returns its `end` (undefined: the store is closing). */
async function serve(
  store: PostgresStore,
  inTransaction: boolean,
): Promise<Extract<Request, { kind: 'end' }> | undefined> {
  for (;;) {
    const r = await next();
    switch (r.kind) {
      case 'call':
        await call(store, r);
        break;
      case 'begin':
        await transaction(store, r);
        break;
      case 'end':
        if (inTransaction) return r;
        // An end whose begin failed or timed out on the main thread: there is nothing to end.
        answer({ id: r.id, ok: false, error: { name: 'Error', message: 'no transaction is open' } });
        break;
      case 'follow':
        void follow(store);
        break;
      case 'close':
        closing = true;
        queue.unshift(r); // every enclosing level sees it, down to the top, which answers it
        if (inTransaction) return undefined;
        queue.shift();
        wakeProber?.();
        try {
          await store.close();
        } catch {
          // Closing a store whose server is away: nothing more to do.
        }
        answer({ id: r.id, ok: true, value: undefined });
        return undefined;
    }
  }
}

async function follow(store: PostgresStore): Promise<void> {
  const post = (e: FollowEvent): void => events.postMessage(e);
  for (let delay = PROBE_MIN_MS; !closing; delay = Math.min(delay * 2, PROBE_MAX_MS)) {
    try {
      await store.listen(
        (revision) => post({ kind: 'wake', revision }),
        (e) => {
          if (e.state === 'lost') {
            markDown();
            post({ kind: 'lost', message: e.error.message });
          } else {
            markUp();
            post({ kind: 'recovered', revision: e.revision });
          }
        },
      );
      return;
    } catch (err) {
      markDown();
      post({ kind: 'lost', message: err instanceof Error ? err.message : String(err) });
      await sleep(delay);
    }
  }
}

async function main(): Promise<void> {
  let store: PostgresStore;
  try {
    store = await openPostgresStore(setup.url, setup.options);
  } catch (err) {
    answer({ id: 0, ok: false, error: serialize(err) });
    return;
  }
  answer({ id: 0, ok: true, value: { path: store.path, schemaVersion: store.schemaVersion } });
  void prober(store);
  await serve(store, false);
  replies.close();
  events.close();
  parentPort?.close();
}

void main();
