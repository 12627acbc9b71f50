/**
 * The failover's lease and shared address, kept by a thread of their own (address-keeper-worker.ts gives the
 * reasons): this side presents them to the state machine (failover.ts) as its `TakeLease` and the address
 * steps of its `FailoverActions`. Each call posts a request to the thread and resolves with its answer; a lease
 * lost there (the address already removed there) is heard here as the lease's `onLost`.
 */
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { FailoverActions, HeldLease, TakeLease } from './failover.js';
import type { KeeperAnswer, KeeperRequest, KeeperSetup } from './address-keeper-protocol.js';

/** The keeper thread's young generation, in MB: it keeps a lease and a few timers. */
const YOUNG_GENERATION_MB = 4;

type AddressSteps = Pick<FailoverActions, 'addAddress' | 'removeAddress' | 'announce'>;

export class AddressKeeper {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #nextId = 0;
  #lease: KeptLease | undefined;
  #exited: Error | undefined;

  constructor(setup: KeeperSetup) {
    const file = fileURLToPath(new URL('./address-keeper-worker.js', import.meta.url));
    this.#worker = new Worker(file, {
      workerData: setup,
      name: 'failover lease',
      resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
    });
    this.#worker.unref();
    this.#worker.on('message', (m: KeeperAnswer) => this.#heard(m));
    const gone = (err: Error): void => {
      this.#exited ??= err;
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
      const lease = this.#lease;
      this.#lease = undefined;
      lease?.lose(err);
    };
    this.#worker.on('error', (err) => gone(err));
    this.#worker.on('exit', (code) => gone(new Error(`the failover thread exited (${code})`)));
  }

  /** Tries to take the lease (the thread's answer: held or busy); rejects when the store is unreachable. */
  readonly take: TakeLease = async () => {
    const value = await this.#ask('try');
    if (value !== 'held') return null;
    const lease = new KeptLease(() => this.#release());
    this.#lease = lease;
    return lease;
  };

  readonly steps: AddressSteps = {
    addAddress: async () => {
      await this.#ask('add');
    },
    removeAddress: async () => {
      await this.#ask('remove');
    },
    announce: async () => {
      await this.#ask('announce');
    },
  };

  /** Ends the thread (after the state machine has stopped: the address removed, the lease released). */
  async close(): Promise<void> {
    await this.#worker.terminate();
  }

  async #release(): Promise<void> {
    this.#lease = undefined;
    await this.#ask('release');
  }

  #ask(op: KeeperRequest['op']): Promise<unknown> {
    if (this.#exited) return Promise.reject(this.#exited);
    const id = ++this.#nextId;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, op } satisfies KeeperRequest);
    });
  }

  #heard(m: KeeperAnswer): void {
    if (m.kind === 'lost') {
      const lease = this.#lease;
      this.#lease = undefined;
      lease?.lose(
        new Error(
          `${m.reason}; the address was removed ${m.removedAt - m.at} ms later` +
            (m.removeError === undefined ? '' : ` (failed: ${m.removeError})`),
        ),
      );
      return;
    }
    const p = this.#pending.get(m.id);
    if (p === undefined) return;
    this.#pending.delete(m.id);
    if (m.ok) p.resolve(m.value);
    else p.reject(new Error(m.message));
  }
}

/** The lease as the state machine sees it: lost when the thread says so, released through the thread. */
class KeptLease implements HeldLease {
  #callbacks: ((reason: Error) => void)[] = [];
  #lost: Error | undefined;
  #done = false;

  constructor(private readonly doRelease: () => Promise<void>) {}

  onLost(callback: (reason: Error) => void): void {
    if (this.#lost) callback(this.#lost);
    else this.#callbacks.push(callback);
  }

  lose(reason: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.#lost = reason;
    for (const cb of this.#callbacks.splice(0)) cb(reason);
  }

  async release(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.doRelease();
  }
}
