/**
 * The data plane's read loop on the main thread: one poll(2) over every registered fd (the TUN device and
 * the UDP socket), then each ready fd reads a batch. A packet thus reaches the protocol core on the thread
 * that woke up for it, with no hop between threads: a round trip through two gateways costs two thread
 * wake-ups instead of eight.
 *
 * The loop runs between turns of node's event loop (setImmediate), so timers, the UAPI socket and signals
 * are served after every batch; when nothing is ready, poll blocks for at most IDLE_WAIT_MS, which bounds
 * how late they can be served. Handlers return true when they stopped at a batch limit (more is queued):
 * the next poll then does not wait.
 */
import * as libc from './libc.js';

/**
 * Where the data plane reads: on the main thread through the poller (default, fewest thread wake-ups), or
 * in a reader worker per device (WEFT_READERS=worker). With the node:dgram bind forced (WEFT_UDP=dgram),
 * whose socket the poller cannot watch, the workers are used: otherwise its datagrams would wait while the
 * poller blocks.
 */
export function readerMode(): 'inline' | 'worker' {
  return process.env.WEFT_READERS === 'worker' || process.env.WEFT_UDP === 'dgram' ? 'worker' : 'inline';
}

/** Errors after which reading may go on: the kernel was short of memory for a moment. */
export function transientReadError(errno: number): boolean {
  return errno === 12 /* ENOMEM */ || errno === 105; /* ENOBUFS */
}

/** Polls without waiting after a batch, before the event loop's turn (see Poller.turn). */
const FOLLOW_UP_POLLS = 3;

/** The longest the loop blocks the event loop when the data plane is idle. */
export const IDLE_WAIT_MS = 20;

export type ReadableHandler = () => boolean;

export class Poller {
  private readonly handlers = new Map<number, ReadableHandler>();
  private fds: number[] = [];
  private pollfds = new Uint8Array(0);
  private scheduled: NodeJS.Immediate | undefined;
  private busy = false;

  add(fd: number, onReadable: ReadableHandler): void {
    this.handlers.set(fd, onReadable);
    this.rebuild();
    this.busy = true; // look at once: data may be waiting already
    this.schedule();
  }

  remove(fd: number): void {
    this.handlers.delete(fd);
    this.rebuild();
    if (this.handlers.size === 0 && this.scheduled) {
      clearImmediate(this.scheduled);
      this.scheduled = undefined;
    }
  }

  private rebuild(): void {
    this.fds = [...this.handlers.keys()];
    this.pollfds = new Uint8Array(this.fds.length * libc.POLLFD_SIZE);
    const view = new DataView(this.pollfds.buffer);
    this.fds.forEach((fd, i) => {
      view.setInt32(i * libc.POLLFD_SIZE, fd, true);
      view.setInt16(i * libc.POLLFD_SIZE + 4, libc.POLLIN, true);
    });
  }

  private schedule(): void {
    if (!this.scheduled && this.handlers.size > 0) this.scheduled = setImmediate(this.turn);
  }

  private readonly turn = (): void => {
    this.scheduled = undefined;
    const n = this.fds.length;
    if (n === 0) return;
    const pollfds = this.pollfds;
    for (let i = 0; i < n; i++) {
      pollfds[i * libc.POLLFD_SIZE + 6] = 0;
      pollfds[i * libc.POLLFD_SIZE + 7] = 0;
    }
    let wait = this.busy ? 0 : IDLE_WAIT_MS;
    this.busy = false;
    // What one batch causes (a TUN write the kernel answers at once, say) is usually ready right away: look
    // again without waiting, a few times, before giving node's event loop its turn.
    for (let round = 0; round < FOLLOW_UP_POLLS; round++) {
      const ready = libc.poll(pollfds, n, wait);
      if (ready <= 0) break;
      const fds = this.fds;
      for (let i = 0; i < n; i++) {
        const revents = pollfds[i * libc.POLLFD_SIZE + 6]! | (pollfds[i * libc.POLLFD_SIZE + 7]! << 8);
        if (revents === 0) continue;
        pollfds[i * libc.POLLFD_SIZE + 6] = 0;
        pollfds[i * libc.POLLFD_SIZE + 7] = 0;
        const handler = this.handlers.get(fds[i]!);
        if (handler && handler()) this.busy = true;
      }
      if (this.busy) break;
      wait = 0;
    }
    this.schedule();
  };
}

/** The process's one poller: every device reads in the same poll(2), so none can starve another. */
export const mainPoller = new Poller();
