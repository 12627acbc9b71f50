/**
 * The main thread's side of a reader worker (TUN or UDP): it starts the worker, hands each message to the
 * owner and returns a batch's credit once the owner has processed it (reader-state.ts), reports failures,
 * and stops the worker: the stop flag first, then terminate() if it has not left within a grace period.
 */
import { Worker } from 'node:worker_threads';
import { READER_STATE_BYTES, batchDone, stopReader } from './reader-state.js';

/**
 * If the worker has not exited this long after the stop flag, terminate() it: by then it is not inside poll(2)
 * (bounded by its poll timeout), and a worker cannot be terminated in the middle of a native call anyway.
 */
const WORKER_EXIT_GRACE_MS = 2_000;

export class ReaderThread<M extends { readonly type: string }> {
  /** Shared with the worker as `workerData.stop`. */
  readonly state = new Int32Array(new SharedArrayBuffer(READER_STATE_BYTES));
  private worker: Worker | undefined;
  private exited: Promise<void> = Promise.resolve();
  private running = false;

  /**
   * Starts the worker at `url` with `data` plus `stop` (the shared state). While running, `onMessage` gets
   * every message; failures (an error thrown in the worker, an exit with a non-zero code) go to `onFailure`.
   */
  start(
    url: URL,
    name: string,
    data: Record<string, unknown>,
    onMessage: (message: M) => void,
    onFailure: (error: Error) => void,
  ): void {
    this.running = true;
    const worker = new Worker(url, { workerData: { ...data, stop: this.state.buffer }, name });
    this.worker = worker;
    worker.on('message', (message: M) => {
      if (!this.running) return; // stopping: nobody wants the data any more
      try {
        onMessage(message);
      } finally {
        if (message.type === 'batch') batchDone(this.state);
      }
    });
    worker.on('error', onFailure);
    this.exited = new Promise((resolve) => {
      worker.once('exit', (code) => {
        if (this.running && code !== 0)
          onFailure(new Error(`${name}: reader worker exited with code ${code}`));
        resolve();
      });
    });
  }

  /** Stops the worker and waits until it has exited; `wake` may interrupt a wait in the kernel at once. */
  async stop(wake?: () => void): Promise<void> {
    this.running = false;
    stopReader(this.state);
    const worker = this.worker;
    if (worker === undefined) return;
    wake?.();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), WORKER_EXIT_GRACE_MS);
    });
    const tooLate = await Promise.race([this.exited.then(() => false), late]);
    clearTimeout(timer);
    if (tooLate) {
      await worker.terminate();
      await this.exited;
    }
  }
}
