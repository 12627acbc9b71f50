/**
 * The asynchronous face of the control-plane store: the same methods and rules as `Store` (store.ts), each
 * returning a Promise, so a store that talks to a server (PostgreSQL, store-postgres.ts) and the embedded
 * SQLite store (through `asyncStore`) are used the same way.
 *
 * - The type is derived from `Store`, so the two cannot drift: a method added to `Store` is a method of
 *   `AsyncStore`, the PostgreSQL store fails to compile until it has it, and the adapter below until it is in
 *   STORE_METHODS.
 * - `transaction(fn)` takes an async function. Nested calls join the outer transaction (as a savepoint: an
 *   inner failure rolls back alone); the transaction is found through AsyncLocalStorage, so every call made
 *   while `fn` runs — awaited, in whatever function — belongs to it. Inside one transaction, await each call
 *   before the next: the calls of one transaction share one connection and run one at a time.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Store } from './store.js';

/** The names of Store's methods (not its properties). */
type MethodNames<T> = {
  [K in keyof T]: T[K] extends (...args: never[]) => unknown ? K : never;
}[keyof T];

/** Every method of T, returning a Promise of what it returned. */
type Promised<T> = {
  readonly [K in keyof T]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<R> : T[K];
};

export type AsyncStore = Omit<Promised<Store>, 'transaction'> & {
  /** Runs `fn` in one transaction (nested calls join the outer one). Throws propagate and roll back. */
  transaction<T>(fn: () => Promise<T>): Promise<T>;
};

/**
 * What a synchronous store offers so that a transaction can stay open across awaits: `beginStep` opens a
 * transaction (or, inside one, a savepoint) and `endStep` commits or rolls back the innermost one.
 */
export interface SteppedTransactions {
  beginStep(): void;
  endStep(commit: boolean): void;
}

function hasSteps(store: object): store is SteppedTransactions {
  return (
    typeof (store as Partial<SteppedTransactions>).beginStep === 'function' &&
    typeof (store as Partial<SteppedTransactions>).endStep === 'function'
  );
}

/** Store's methods that an adapter forwards as they are (transaction is its own). */
export const STORE_METHODS = [
  'close',
  'revision',
  'changesSince',
  'getSettings',
  'putSettings',
  'getSecret',
  'putSecret',
  'getMember',
  'getMemberByIp',
  'getMemberByPublicKey',
  'listMembers',
  'countMembers',
  'memberCounts',
  'allMembers',
  'insertMember',
  'updateMember',
  'deleteMember',
  'listGroups',
  'getGroup',
  'insertGroup',
  'updateGroup',
  'deleteGroup',
  'groupMembers',
  'listRoutes',
  'insertRoute',
  'deleteRoute',
  'listSites',
  'getSite',
  'insertSite',
  'updateSite',
  'deleteSite',
  'putSiteStatuses',
  'allSiteStatuses',
  'listPolicies',
  'insertPolicy',
  'deletePolicy',
  'appendAudit',
  'listAudit',
  'insertToken',
  'findToken',
  'touchToken',
  'listTokens',
  'deleteToken',
  'getAdmin',
  'putAdmin',
  'insertLink',
  'linkProtocol',
  'takeLink',
  'putConfigDelivery',
  'getConfigDelivery',
  'allConfigDeliveries',
  'getOpenVpnCredential',
  'findOpenVpnCredential',
  'putOpenVpnCredential',
  'revokeOpenVpnCredential',
  'findOpenVpnRevocation',
  'allOpenVpnRevocations',
  'putStatuses',
  'getStatus',
  'allStatuses',
  'addTraffic',
  'traffic',
] as const satisfies readonly Exclude<MethodNames<Store>, 'transaction'>[];

// A method added to Store and missing above fails to compile here.
type Unlisted = Exclude<MethodNames<Store>, 'transaction' | (typeof STORE_METHODS)[number]>;
const everyMethodListed: [Unlisted] extends [never] ? true : Unlisted = true;
void everyMethodListed;

/**
 * Presents a synchronous store as an AsyncStore. A call outside a transaction runs at once (it is atomic:
 * the synchronous store finishes it before returning). While a transaction is open — it spans awaits, so
 * other code runs meanwhile — calls from outside it wait until it ends: the synchronous store has one
 * connection, and they must neither join the transaction nor see its uncommitted writes.
 *
 * `transaction` needs a store with SteppedTransactions (the SQLite store has them); with any other store it
 * rejects with a TypeError rather than run without atomicity.
 */
export function asyncStore(store: Store): AsyncStore {
  return new SyncStoreAdapter(store) as unknown as AsyncStore;
}

interface OpenTransaction {
  /** Resolves when the transaction has ended. */
  readonly ended: Promise<void>;
}

class SyncStoreAdapter {
  readonly #store: Store;
  readonly #current = new AsyncLocalStorage<OpenTransaction>();
  #open: OpenTransaction | undefined;

  constructor(store: Store) {
    this.#store = store;
    for (const name of STORE_METHODS) {
      const method = store[name] as (...args: unknown[]) => unknown;
      Object.defineProperty(this, name, {
        value: async (...args: unknown[]) => {
          // Checked and called without an await in between, so no transaction can open in the gap.
          for (let wait = this.#busy(); wait !== undefined; wait = this.#busy()) await wait;
          return method.apply(store, args);
        },
      });
    }
  }

  get path(): string {
    return this.#store.path;
  }

  get schemaVersion(): number {
    return this.#store.schemaVersion;
  }

  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    const store = this.#store;
    if (!hasSteps(store))
      throw new TypeError('this store cannot keep a transaction open across awaits (no beginStep/endStep)');
    const mine = this.#current.getStore();
    if (mine !== undefined && mine === this.#open) return this.#step(store, fn);
    for (let wait = this.#busy(); wait !== undefined; wait = this.#busy()) await wait;
    let end = (): void => {};
    const open: OpenTransaction = { ended: new Promise<void>((resolve) => (end = resolve)) };
    this.#open = open;
    try {
      return await this.#current.run(open, () => this.#step(store, fn));
    } finally {
      this.#open = undefined;
      end();
    }
  }

  async #step<T>(store: SteppedTransactions, fn: () => Promise<T>): Promise<T> {
    store.beginStep();
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      store.endStep(false);
      throw err;
    }
    store.endStep(true);
    return result;
  }

  /** What to wait for before using the store: the open transaction, unless the caller is inside it. */
  #busy(): Promise<void> | undefined {
    const open = this.#open;
    return open === undefined || this.#current.getStore() === open ? undefined : open.ended;
  }
}
