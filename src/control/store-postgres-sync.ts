/**
 * The synchronous `Store` (store.ts) over PostgreSQL, so that the control plane, the API, the CLI and
 * `weft server run` — all written against the synchronous interface the SQLite store offers — run unchanged
 * on a shared database.
 *
 * Design: a worker thread (store-postgres-worker.ts) owns a `PostgresStore` (store-postgres.ts, asynchronous,
 * a connection pool). A method call here posts {method, args} to the worker and blocks this thread with
 * `Atomics.wait` on a SharedArrayBuffer counter until the worker has posted the answer, which is then taken
 * with `receiveMessageOnPort` (structured clone: store records are plain data; errors are rebuilt as the
 * store's own classes — StoreConflict, StoreUnavailable, StoreSchemaTooNew — so callers see what they see
 * with SQLite).
 *
 * Why this and not an AsyncStore-based control plane: ControlPlane, sites, desired state, the PKI, the API,
 * the CLI and the gateway's sync (several thousand lines) call the store synchronously, often several times
 * inside one `transaction(fn)` whose `fn` is synchronous. Blocking on a worker keeps every one of those
 * callers and their tests as they are; the cost is that the calling thread waits for each round trip
 * (well under a millisecond on a LAN, a few on loopback under load), which the SQLite store also does for its
 * disk. The cost is bounded:
 *   - every wait is bounded (10 s by default): then StoreUnavailable, and the answer, if it comes, is dropped;
 *   - while the worker knows the server is unreachable (a call failed with StoreUnavailable, a call went
 *     unanswered for the whole wait — a stalled path that neither answers nor fails — or the LISTEN
 *     connection was lost), the DOWN flag in the shared buffer is set and calls fail at once with
 *     StoreUnavailable without asking the worker, so the gateway's packet path never stalls behind a dead
 *     server; the worker probes the server (100 ms, doubling up to 2 s) and clears the flag when it answers.
 *
 * Transactions: `transaction(fn)` sends `begin`; the worker opens a transaction on one pooled connection
 * (`store.transaction`) and serves the following calls inside it until `end`, which commits or rolls back.
 * Nested calls are savepoints (an inner failure rolls back alone), as with SQLite. A call made while a
 * transaction is open belongs to it (there is one calling thread, as with SQLite's one connection).
 */
import { fileURLToPath } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { StoreConflict, type Store } from './store.js';
import { STORE_METHODS } from './store-async.js';
import {
  StoreSchemaTooNew,
  StoreUnavailable,
  redactUrl,
  type GatewayRecord,
  type GatewayRegistration,
  type MeshPeerReport,
  type MemberLocation,
  type LeaseHolder,
  type PostgresStoreOptions,
} from './store-postgres.js';
import {
  ANSWERS,
  DOWN,
  STATE_SLOTS,
  type Answer,
  type FollowEvent,
  type Request,
  type SerializedError,
  type WorkerSetup,
} from './store-postgres-protocol.js';

export type { FollowEvent } from './store-postgres-protocol.js';

/** How long a call waits for the worker's answer (opening: connecting and migrating) by default. */
export const CALL_TIMEOUT_MS = 10_000;
const OPEN_TIMEOUT_MS = 30_000;
/** The store worker's young generation (both semi-spaces and the new large-object space), in MB. */
const WORKER_YOUNG_GENERATION_MB = 6;
/** Closing waits this long for the worker to close its connections, then ends the worker anyway. */
const CLOSE_TIMEOUT_MS = 3_000;
/** How long a call that went unanswered waits for the worker to raise the down flag (it does so on arrival). */
const UNANSWERED_FLAG_WAIT_MS = 200;

export interface SyncPostgresOptions extends PostgresStoreOptions {
  /** How long a call waits for an answer before it fails with StoreUnavailable (default 10 s). */
  readonly callTimeoutMs?: number;
}

/** The PostgreSQL-only methods (gateways), besides those of Store. */
export interface PostgresExtras {
  readonly kind: 'postgres';
  /** Whether the worker currently knows the server to be unreachable. */
  isDown(): boolean;
  /**
   * Follows the change feed: `onEvent` hears `wake` for each commit on the database (from any gateway),
   * `lost` when the server goes away and `recovered` when it is back. Called on this thread's event loop.
   */
  follow(onEvent: (event: FollowEvent) => void): void;
  registerGateway(gateway: GatewayRegistration): GatewayRecord;
  heartbeatGateway(name: string): boolean;
  listGateways(): GatewayRecord[];
  removeGateway(name: string): boolean;
  /** Inside a transaction: whether the gateway is registered, locking its row until the end (store-postgres.ts). */
  lockGateway(name: string, mode: 'share' | 'update'): boolean;
  reportGatewayMesh(name: string, peers: readonly MeshPeerReport[]): boolean;
  memberLocations(except: string): MemberLocation[];
  /** The leases held now and by whom (failover of a shared address). */
  leaseHolders(): LeaseHolder[];
}

export type SyncPostgresStore = Store & PostgresExtras;

export function isSyncPostgresStore(store: Store): store is SyncPostgresStore {
  return (store as Partial<PostgresExtras>).kind === 'postgres';
}

/**
 * Opens the PostgreSQL store at `url` (migrating it to this build's schema), blocking until it is open.
 * Throws StoreUnavailable when the server cannot be reached, StoreSchemaTooNew for a newer schema.
 */
export function openPostgresStoreSync(url: string, options: SyncPostgresOptions = {}): SyncPostgresStore {
  return new SyncPostgresStoreImpl(url, options) as unknown as SyncPostgresStore;
}

const EXTRA_METHODS = [
  'registerGateway',
  'heartbeatGateway',
  'listGateways',
  'removeGateway',
  'lockGateway',
  'reportGatewayMesh',
  'memberLocations',
  'leaseHolders',
] as const;

class SyncPostgresStoreImpl {
  readonly kind = 'postgres';
  readonly path: string;
  readonly schemaVersion: number;
  readonly #worker: Worker;
  readonly #state: Int32Array;
  readonly #replies: MessagePort;
  readonly #events: MessagePort;
  readonly #timeoutMs: number;
  #nextId = 0;
  #closed = false;
  #following = false;

  constructor(url: string, options: SyncPostgresOptions) {
    this.path = redactUrl(url);
    this.#timeoutMs = options.callTimeoutMs ?? CALL_TIMEOUT_MS;
    const shared = new SharedArrayBuffer(STATE_SLOTS * Int32Array.BYTES_PER_ELEMENT);
    this.#state = new Int32Array(shared);
    const replies = new MessageChannel();
    const events = new MessageChannel();
    this.#replies = replies.port1;
    this.#events = events.port1;
    const { callTimeoutMs: _ignored, ...storeOptions } = options;
    void _ignored;
    const setup: WorkerSetup = {
      url,
      options: storeOptions,
      state: shared,
      replies: replies.port2,
      events: events.port2,
    };
    const file = fileURLToPath(new URL('./store-postgres-worker.js', import.meta.url));
    this.#worker = new Worker(file, {
      workerData: setup,
      transferList: [replies.port2, events.port2],
      // The worker holds no state between calls, only the answer in flight: a young generation of a few MB
      // (V8's default grows to 48 MB, and stays there) is enough for its garbage.
      resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
    });
    // A store left open must not keep the process alive (the CLI exits when its command is done).
    this.#worker.unref();
    this.#worker.on('error', () => {});
    let opened: { path: string; schemaVersion: number };
    try {
      opened = this.#wait(0, Math.max(OPEN_TIMEOUT_MS, this.#timeoutMs)) as typeof opened;
    } catch (err) {
      this.#closed = true;
      void this.#worker.terminate();
      throw err;
    }
    this.schemaVersion = opened.schemaVersion;

    for (const name of [...STORE_METHODS, ...EXTRA_METHODS]) {
      if (name === 'close') continue;
      Object.defineProperty(this, name, {
        value: (...args: unknown[]) => this.#call({ kind: 'call', method: name, args }),
      });
    }
  }

  isDown(): boolean {
    return Atomics.load(this.#state, DOWN) === 1;
  }

  transaction<T>(fn: () => T): T {
    this.#call({ kind: 'begin' });
    let result: T;
    try {
      result = fn();
      // A Promise would run its awaited part after COMMIT, outside the transaction: refused, as SQLite does.
      if (result instanceof Promise) {
        result.catch(() => {});
        throw new TypeError('transaction: the function must be synchronous (it returned a Promise)');
      }
    } catch (err) {
      try {
        this.#call({ kind: 'end', commit: false }, true);
      } catch {
        // The rollback failed too (the server is away): the transaction ends with its connection.
      }
      throw err;
    }
    this.#call({ kind: 'end', commit: true }, true);
    return result;
  }

  follow(onEvent: (event: FollowEvent) => void): void {
    if (this.#following) throw new Error(`${this.path}: already following`);
    this.#following = true;
    this.#events.on('message', (e: FollowEvent) => onEvent(e));
    this.#events.unref();
    this.#post({ id: ++this.#nextId, kind: 'follow' });
  }

  close(): void {
    if (this.#closed) return;
    try {
      this.#call({ kind: 'close' }, true, CLOSE_TIMEOUT_MS);
    } catch {
      // Closing anyway.
    }
    this.#closed = true;
    this.#events.close();
    this.#replies.close();
    void this.#worker.terminate();
  }

  #post(r: Request): void {
    this.#worker.postMessage(r);
  }

  /** Sends a request and blocks until its answer; `always` skips the down check (end, close). */
  #call(r: DistributiveOmit<Request, 'id'>, always = false, timeoutMs = this.#timeoutMs): unknown {
    if (this.#closed) throw new Error(`${this.path}: the store is closed`);
    if (!always && this.isDown())
      throw new StoreUnavailable(
        this.path,
        new Error('the server is unreachable (retrying in the background)'),
      );
    const id = ++this.#nextId;
    this.#post({ ...r, id } as Request);
    try {
      return this.#wait(id, timeoutMs);
    } catch (err) {
      // A begin that timed out may still open a transaction in the worker: end it, whatever it became.
      if (r.kind === 'begin' && err instanceof StoreUnavailable && /no answer/.test(err.message))
        this.#post({ id: ++this.#nextId, kind: 'end', commit: false });
      throw err;
    }
  }

  /** Blocks until the answer with `id` arrives (older answers, of calls that timed out, are dropped). */
  #wait(id: number, timeoutMs: number): unknown {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const seen = Atomics.load(this.#state, ANSWERS);
      for (
        let m = receiveMessageOnPort(this.#replies);
        m !== undefined;
        m = receiveMessageOnPort(this.#replies)
      ) {
        const a = m.message as Answer;
        if (a.id !== id) continue;
        if (a.ok) return a.value;
        throw this.#rebuild(a.error);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        this.#markUnanswered();
        throw new StoreUnavailable(
          this.path,
          new Error(`no answer within ${Math.round(timeoutMs / 1000)} s`),
        );
      }
      // Woken by the worker's next answer; a short slice also covers an answer posted just before `seen`.
      Atomics.wait(this.#state, ANSWERS, seen, Math.min(left, 50));
    }
  }

  /**
   * After a call went unanswered: the worker marks the store down (its prober clears that once the server
   * answers again), so the calls that follow fail at once instead of each waiting the full timeout while the
   * path stays stalled: the gateway goes on forwarding with the state it has. Waits briefly for the flag, so
   * the very next call already sees it.
   */
  #markUnanswered(): void {
    this.#post({ id: ++this.#nextId, kind: 'unanswered' });
    const until = Date.now() + UNANSWERED_FLAG_WAIT_MS;
    while (Atomics.load(this.#state, DOWN) === 0 && Date.now() < until) Atomics.wait(this.#state, DOWN, 0, 5);
  }

  #rebuild(e: SerializedError): Error {
    switch (e.name) {
      case 'StoreConflict':
        return new StoreConflict(e.message);
      case 'StoreUnavailable': {
        const err = new StoreUnavailable(this.path, new Error(e.cause ?? e.message));
        err.message = e.message;
        return err;
      }
      case 'StoreSchemaTooNew':
        return new StoreSchemaTooNew(this.path, e.found ?? 0);
      case 'TypeError':
        return new TypeError(e.message);
      default: {
        const err = new Error(e.message);
        if (e.name !== 'Error') err.name = e.name;
        return err;
      }
    }
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
