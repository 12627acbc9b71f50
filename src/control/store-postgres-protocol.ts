/**
 * What the synchronous PostgreSQL store (store-postgres-sync.ts) and its worker (store-postgres-worker.ts)
 * say to each other. Requests go to the worker on its parentPort; answers come back on the reply port, each
 * followed by an increment of state[ANSWERS] (what the main thread waits on with Atomics.wait).
 */
import type { MessagePort } from 'node:worker_threads';
import type { PostgresStoreOptions } from './store-postgres.js';

/** Int32 slots of the shared state buffer. */
export const ANSWERS = 0;
/** 1 while the worker knows the server is unreachable (calls then fail at once, without asking it). */
export const DOWN = 1;
export const STATE_SLOTS = 2;

export type Request =
  | { readonly id: number; readonly kind: 'call'; readonly method: string; readonly args: readonly unknown[] }
  | { readonly id: number; readonly kind: 'begin' }
  | { readonly id: number; readonly kind: 'end'; readonly commit: boolean }
  | { readonly id: number; readonly kind: 'follow' }
  | { readonly id: number; readonly kind: 'close' }
  /**
   * The main thread gave up waiting for an answer (a stalled path to the server: no answer, no error). Handled
   * on arrival, not queued behind the stalled request: the worker marks the store down, so later calls fail at
   * once until its prober hears from the server again.
   */
  | { readonly id: number; readonly kind: 'unanswered' };

/** An error as it crosses the thread boundary; the main thread rebuilds the store's error classes from it. */
export interface SerializedError {
  readonly name: string;
  readonly message: string;
  /** StoreUnavailable: its cause's message. */
  readonly cause?: string;
  /** StoreSchemaTooNew: the version found. */
  readonly found?: number;
}

export type Answer =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly error: SerializedError };

/** Posted on the events port while following the change feed. */
export type FollowEvent =
  | { readonly kind: 'wake'; readonly revision: number }
  | { readonly kind: 'lost'; readonly message: string }
  | { readonly kind: 'recovered'; readonly revision: number };

export interface WorkerSetup {
  readonly url: string;
  readonly options: PostgresStoreOptions;
  readonly state: SharedArrayBuffer;
  readonly replies: MessagePort;
  readonly events: MessagePort;
}
