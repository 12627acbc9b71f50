/**
 * The data plane's read loop on the main thread: one poll(2) over every registered fd (the TUN device and
 * the UDP socket), then each ready fd reads a batch. A packet thus reaches the protocol core on the thread
 * that woke up for it, with no hop between threads: a round trip through two gateways costs two thread
 * wake-ups instead of eight.
 *
 * The loop runs between turns of node's event loop (setImmediate), so timers, the UAPI socket and signals
 * are served after every batch; when nothing is ready, the loop waits in poll for at most IDLE_WAIT_MS,
 * which bounds how late they can be served. Handlers return true when they stopped at a batch limit (more is
 * queued): the next poll then does not wait.
 *
 * Short waits after traffic: for WARM_WINDOW_MS after the last packet, the loop waits at most WARM_WAIT_MS
 * before giving the event loop its turn, so the thread wakes once a millisecond. A CPU that sleeps for
 * milliseconds drops into deep idle states and loses its caches; the next packet, likely the answer to the
 * last one, then pays for waking it and for refilling them. Measured here, idle ping through two gateways:
 * p50 0.52 to 0.62 ms without, 0.39 to 0.47 ms with (the Go runtime behind wireguard-go keeps its threads
 * awake in much the same way). It costs CPU only while traffic is sparse, about 40 µs a wake-up: nothing on
 * a busy tunnel (the loop never waits) or an idle one (the window has passed). WEFT_POLL_WARM=0 turns it off.
 *
 * A wake-up keeps the thread warm, not the packet path: code and data the last packet used, and the kernel's
 * paths it took, are cold again when the next packet comes milliseconds later. Idle hooks (onIdle) run at each
 * short wait that ended with nothing ready, so a shell can run the path meanwhile (the OpenVPN shell sends
 * itself a packet over loopback: openvpn-warmup.ts); a hook that sent something returns true, and the next
 * poll does not wait.
 *
 * Gathering a stream (receive moderation): a reader that found COALESCE_FROM datagrams or more in one batch
 * reports it (noteBatch); unless another descriptor has work by then (packets from the TUN device to send),
 * the next turn sleeps COALESCE_WAIT_US before it looks, without being woken by the next datagram, so that
 * what arrives meanwhile is read, opened and written to the TUN device as one batch. A client sending a bulk
 * flow one datagram at a time (OpenVPN's, wireguard-go's) otherwise wakes the loop every few datagrams, and
 * on a VM each wake-up, poll, recvmmsg and TUN write costs more than the packets it serves; batched, the TUN
 * writes merge into larger TCP segments (offload.ts), so the kernel also acknowledges less and there are
 * fewer acknowledgements to seal. Measured on a 2-core VM with the OpenVPN client's upload into `weft server
 * run`: 5.7 datagrams per wake-up before (6.6k wake-ups a second); the gateway's CPU per GB fell from 12.4 to
 * about 5 s and the throughput rose from 493 to 674–698 Mbit/s (docs/openvpn.md, "Speed"). A datagram that
 * arrives during the sleep waits at most that long, and only while datagrams come in groups: a lone one (an
 * idle ping, a sparse flow) starts no sleep, and a full batch means more is queued already (no sleep).
 * WEFT_POLL_COALESCE_US sets the sleep (0 turns it off).
 *
 * Handing the CPU over after a lone answer: a turn that woke from a wait for a packet or two usually ends in
 * one send of a datagram or two (the answer), which wakes whoever reads the other end. When that reader is
 * on the same CPU (a client on this host, or one the scheduler put here because it woke this thread), it
 * waits until this loop sleeps again: after the send the loop still reads the TUN device until it finds it
 * empty, polls again and gives node's event loop its turn, about 50 µs here. So the first send of such a
 * turn (handOff, called by the UDP bind) yields the CPU once (sched_yield(2)): a reader that is ready runs
 * first, and with nobody waiting the call returns at once. Measured with the openvpn client on the same VM
 * pinging `weft server run` every 10 ms (bench/idle-ping.ts), the idle round trip went from 1.01–1.16×
 * openvpn's server to 0.79–0.91×; a scheduler trace had shown the client's openvpn runnable on the gateway's
 * CPU from the answer's arrival until the gateway's thread slept. Busy turns (a full batch, a stream: a read
 * of COALESCE_FROM datagrams or more), larger sends and sends from timers never yield.
 * WEFT_POLL_HANDOFF=0 turns it off.
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

/** How long after the last packet waits are cut short, and how short (see above). */
export const WARM_WINDOW_MS = 50;
export const WARM_WAIT_MS = 1;

/** The sleep before looking again after a batch of COALESCE_FROM datagrams or more (see above). */
export const COALESCE_WAIT_US = 300;
export const COALESCE_FROM = 3;
/** The longest sleep WEFT_POLL_COALESCE_US may ask for: beyond it, the sleep would be latency, not batching. */
export const COALESCE_WAIT_MAX_US = 2_000;

/** WEFT_POLL_COALESCE_US, checked: microseconds from 0 (off) to COALESCE_WAIT_MAX_US; unset means the default. */
export function coalesceWaitFromEnv(value: string | undefined): number {
  if (value === undefined || value === '') return COALESCE_WAIT_US;
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n > COALESCE_WAIT_MAX_US) {
    throw new RangeError(
      `WEFT_POLL_COALESCE_US must be a whole number of microseconds from 0 (off) to ${COALESCE_WAIT_MAX_US}, got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

export interface PollerOptions {
  /** poll(2) over `n` struct pollfd records (libc.poll by default). */
  poll?: (fds: Uint8Array, n: number, timeoutMs: number) => number;
  /** Milliseconds on a monotonic clock (performance.now by default). */
  now?: () => number;
  /** WARM_WINDOW_MS, or 0 when WEFT_POLL_WARM=0, by default. */
  warmWindowMs?: number;
  /** The sleep after a batch of a stream, in µs (0: off); WEFT_POLL_COALESCE_US or COALESCE_WAIT_US by default. */
  coalesceUs?: number;
  /** Sleeps that many µs without polling (libc.usleep by default). */
  sleep?: (us: number) => void;
  /** Gives the CPU to a ready thread (libc.schedYield by default; null, WEFT_POLL_HANDOFF=0 by default: never). */
  yieldCpu?: (() => void) | null;
}

export type ReadableHandler = () => boolean;
/** Runs at a short wait that ended with nothing ready; true if it queued work for the poller (see above). */
export type IdleHook = () => boolean;
/** Called when a descriptor the caller asked to watch for writing can take more (POLLOUT). */
export type WritableHandler = () => void;

/** Offset of `short revents` in a struct pollfd { int fd; short events; short revents; }. */
export const POLLFD_REVENTS_OFFSET = 6;

export class Poller {
  private readonly handlers = new Map<number, ReadableHandler>();
  /** Descriptors also watched for POLLOUT (a stream socket with bytes waiting to be written). */
  private readonly writers = new Map<number, WritableHandler>();
  private readonly idleHooks: IdleHook[] = [];
  private fds: number[] = [];
  private pollfds = new Uint8Array(0);
  private scheduled: NodeJS.Immediate | undefined;
  private busy = false;
  /** now() of the last batch served. */
  private lastActive = -Infinity;
  private readonly poll: (fds: Uint8Array, n: number, timeoutMs: number) => number;
  private readonly now: () => number;
  private readonly warmWindowMs: number;
  private readonly coalesceUs: number;
  private readonly sleep: (us: number) => void;
  private readonly yieldCpu: (() => void) | null;
  /** True while serving a turn that woke from a wait (see "Handing the CPU over"), until its first send. */
  private sparse = false;
  /** Descriptors that reported a batch of COALESCE_FROM or more (noteBatch) since the last turn. */
  private readonly streams: number[] = [];
  /** Sleeps taken to gather a stream (see above). */
  coalesced = 0;
  /** Times the CPU was handed over after a lone answer (see above). */
  handedOff = 0;

  constructor(options: PollerOptions = {}) {
    this.poll = options.poll ?? libc.poll;
    this.now = options.now ?? (() => performance.now());
    this.warmWindowMs = options.warmWindowMs ?? (process.env.WEFT_POLL_WARM === '0' ? 0 : WARM_WINDOW_MS);
    this.coalesceUs = options.coalesceUs ?? coalesceWaitFromEnv(process.env.WEFT_POLL_COALESCE_US);
    this.sleep = options.sleep ?? libc.usleep;
    this.yieldCpu =
      options.yieldCpu !== undefined
        ? options.yieldCpu
        : process.env.WEFT_POLL_HANDOFF === '0'
          ? null
          : libc.schedYield;
  }

  /**
   * A bind sent `count` datagrams: if this is the first send of a turn that woke from a wait for a packet or
   * two, and itself a datagram or two, give the CPU to whoever the send woke (see "Handing the CPU over").
   * Does nothing outside such a turn.
   */
  handOff(count: number): void {
    if (!this.sparse) return;
    this.sparse = false;
    if (count >= COALESCE_FROM || this.yieldCpu === null) return;
    this.handedOff++;
    this.yieldCpu();
  }

  add(fd: number, onReadable: ReadableHandler): void {
    this.handlers.set(fd, onReadable);
    this.rebuild();
    this.busy = true; // look at once: data may be waiting already
    this.schedule();
  }

  /**
   * Also calls `onWritable` when `fd` (already added) can be written again; undefined stops watching. A
   * stream socket asks while it has queued bytes and stops once they are out, since an idle socket is
   * always writable.
   */
  watchWritable(fd: number, onWritable: WritableHandler | undefined): void {
    if (!this.handlers.has(fd)) return;
    if (onWritable === undefined) {
      if (!this.writers.delete(fd)) return;
    } else {
      const had = this.writers.has(fd);
      this.writers.set(fd, onWritable);
      if (had) return;
    }
    this.rebuild();
    this.busy = true;
    this.schedule();
  }

  /**
   * The reader of `fd` read `count` datagrams in one batch (before it hands them on): from COALESCE_FROM on,
   * the next turn gathers, and this one hands nothing over (see above).
   */
  noteBatch(fd: number, count: number): void {
    if (count < COALESCE_FROM) return;
    this.sparse = false; // not a lone packet: no hand-over in this turn
    if (!this.streams.includes(fd)) this.streams.push(fd);
  }

  /** True if a descriptor other than `streams` has something in the last poll's results. */
  private otherReady(streams: readonly number[]): boolean {
    const fds = this.fds;
    for (let i = 0; i < fds.length; i++) {
      const at = i * libc.POLLFD_SIZE + POLLFD_REVENTS_OFFSET;
      if ((this.pollfds[at]! | this.pollfds[at + 1]!) !== 0 && !streams.includes(fds[i]!)) return true;
    }
    return false;
  }

  /** Adds an idle hook (see above); the returned function removes it. */
  onIdle(hook: IdleHook): () => void {
    this.idleHooks.push(hook);
    return () => {
      const at = this.idleHooks.indexOf(hook);
      if (at >= 0) this.idleHooks.splice(at, 1);
    };
  }

  remove(fd: number): void {
    this.handlers.delete(fd);
    this.writers.delete(fd);
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
      view.setInt16(i * libc.POLLFD_SIZE + 4, libc.POLLIN | (this.writers.has(fd) ? libc.POLLOUT : 0), true);
    });
  }

  private schedule(): void {
    if (!this.scheduled && this.handlers.size > 0) this.scheduled = setImmediate(this.turn);
  }

  private readonly turn = (): void => {
    this.scheduled = undefined;
    const n = this.fds.length;
    if (n === 0) return;
    let ready = false;
    const streams = this.streams;
    if (this.busy) ready = this.poll(this.pollfds, n, 0) > 0;
    else if (streams.length > 0 && this.coalesceUs > 0) {
      // A stream: unless another descriptor has work now (packets to send from the TUN device, say), let the
      // stream gather, then look without waiting; nothing there means it paused: wait as usual.
      ready = this.poll(this.pollfds, n, 0) > 0;
      if (!ready || !this.otherReady(streams)) {
        this.coalesced++;
        this.sleep(this.coalesceUs);
        ready = this.poll(this.pollfds, n, 0) > 0;
      }
    }
    streams.length = 0; // before serve(), whose readers report afresh
    let woke = false;
    if (!this.busy && !ready) {
      const warm = this.now() - this.lastActive < this.warmWindowMs;
      woke = this.poll(this.pollfds, n, warm ? WARM_WAIT_MS : IDLE_WAIT_MS) > 0;
      ready = woke;
      // What an idle hook queued is the gateway's own traffic: nobody waits for its answer.
      if (!ready && warm && this.idleHooks.length > 0 && this.runIdleHooks())
        ready = this.poll(this.pollfds, n, 0) > 0;
    }
    this.busy = false;
    if (ready) {
      this.sparse = woke;
      try {
        this.serve();
      } finally {
        this.sparse = false;
      }
    }
    this.schedule();
  };

  /** True if a hook queued work. */
  private runIdleHooks(): boolean {
    let queued = false;
    for (const hook of this.idleHooks) if (hook()) queued = true;
    return queued;
  }

  /**
   * Serves the descriptors the last poll found ready, then, since what one batch causes (a TUN write the
   * kernel answers at once, say) is usually ready right away, looks again without waiting, a few times,
   * before giving node's event loop its turn.
   */
  private serve(): void {
    for (let round = 0; round < FOLLOW_UP_POLLS; round++) {
      // A handler may add or remove a descriptor (a new array each time): take the current ones per round.
      const pollfds = this.pollfds;
      const fds = this.fds;
      const n = fds.length;
      if (round > 0 && (n === 0 || this.poll(pollfds, n, 0) <= 0)) break;
      for (let i = 0; i < n; i++) {
        const at = i * libc.POLLFD_SIZE + POLLFD_REVENTS_OFFSET;
        const revents = pollfds[at]! | (pollfds[at + 1]! << 8);
        if (revents === 0) continue;
        pollfds[at] = 0;
        pollfds[at + 1] = 0;
        const fd = fds[i]!;
        if (revents & libc.POLLOUT) {
          this.writers.get(fd)?.();
          if ((revents & ~libc.POLLOUT) === 0) continue;
        }
        const handler = this.handlers.get(fd);
        if (handler && handler()) this.busy = true;
      }
      this.lastActive = this.now();
      if (this.busy) break;
    }
  }
}

/** The process's one poller: every device reads in the same poll(2), so none can starve another. */
export const mainPoller = new Poller();
