/**
 * What the reader workers (TUN and UDP) share: the stop flag the main thread raises in close(), waiting in
 * poll(2) until the fd is readable, backing off after a transient error, reporting errors, and the
 * worker's side of backpressure (reader-state.ts).
 */
import { constants as osConstants } from 'node:os';
import * as libc from './libc.js';
import { IN_FLIGHT, MAX_BATCHES_IN_FLIGHT, STOP } from './reader-state.js';

export type ReaderErrorMessage = { type: 'error'; syscall: string; errno: number; fatal: boolean };

const { EINTR, ENOMEM, ENOBUFS, EIO } = osConstants.errno;
/** Errors after which reading may go on: the kernel was short of memory for a moment. */
const TRANSIENT: ReadonlySet<number> = new Set([ENOMEM, ENOBUFS]);

export class ReadyWaiter {
  private readonly stop: Int32Array;
  // struct pollfd in native byte order: int fd; short events; short revents.
  private readonly pollView: Uint8Array;
  private readonly pollShorts: Int16Array;

  constructor(
    fd: number,
    stop: SharedArrayBuffer,
    private readonly timeoutMs: number,
    private readonly post: (message: ReaderErrorMessage) => void,
  ) {
    this.stop = new Int32Array(stop);
    const pollfd = new ArrayBuffer(libc.POLLFD_SIZE);
    new Int32Array(pollfd, 0, 1)[0] = fd;
    this.pollShorts = new Int16Array(pollfd, 4, 2);
    this.pollShorts[0] = libc.POLLIN;
    this.pollView = new Uint8Array(pollfd);
  }

  stopped(): boolean {
    return Atomics.load(this.stop, STOP) !== 0;
  }

  /** Waits until the main thread has room for another batch; false if the loop must stop instead. */
  awaitCredit(): boolean {
    for (;;) {
      if (this.stopped()) return false;
      const inFlight = Atomics.load(this.stop, IN_FLIGHT);
      if (inFlight < MAX_BATCHES_IN_FLIGHT) return true;
      Atomics.wait(this.stop, IN_FLIGHT, inFlight, this.timeoutMs);
    }
  }

  /** Counts a batch posted to the main thread (which calls batchDone when it has processed it). */
  posted(): void {
    Atomics.add(this.stop, IN_FLIGHT, 1);
  }

  /**
   * Waits up to one timeout: 'ready' when the fd is readable (or has an error condition for the next read
   * to report), 'idle' when nothing came, 'stop' when the loop must end (stop flag, or a fatal poll error,
   * which is reported).
   */
  wait(): 'ready' | 'idle' | 'stop' {
    this.pollShorts[1] = 0;
    const ready = libc.poll(this.pollView, 1, this.timeoutMs);
    if (this.stopped()) return 'stop';
    if (ready > 0) return 'ready';
    if (ready === 0) return 'idle';
    const e = libc.errno();
    if (e === EINTR) return 'idle';
    return this.fail('poll', e) ? 'idle' : 'stop';
  }

  /**
   * After a read found nothing (EAGAIN): if poll had reported only an error condition, the fd is dead and
   * polling again would spin; reports it and returns true (the loop must end).
   */
  deadAfterEmptyRead(): boolean {
    const revents = this.pollShorts[1] ?? 0;
    if ((revents & libc.POLLIN) !== 0 || (revents & (libc.POLLERR | libc.POLLHUP | libc.POLLNVAL)) === 0)
      return false;
    this.post({ type: 'error', syscall: 'poll', errno: EIO, fatal: true });
    return true;
  }

  /** Reports a failed call; returns whether the loop may go on (after a pause, for a transient error). */
  fail(syscall: string, errno: number): boolean {
    const transient = TRANSIENT.has(errno);
    this.post({ type: 'error', syscall, errno, fatal: !transient });
    if (transient) Atomics.wait(this.stop, STOP, 0, this.timeoutMs); // close() wakes it with Atomics.notify
    return transient;
  }
}
