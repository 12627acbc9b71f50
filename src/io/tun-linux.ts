/**
 * LinuxTun: the kernel's /dev/net/tun as a TunDevice, through libc calls made with koffi (libc.ts).
 *
 * Opening (LinuxTun.open):
 *   1. open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK). O_CLOEXEC so that a child process (`ip`, a
 *      script) never inherits the fd and keeps the interface alive after close().
 *   2. ioctl(TUNSETIFF) with IFF_TUN | IFF_NO_PI: a layer-3 device carrying bare IP packets (no 4-byte packet
 *      information header; the kernel takes the protocol from the version nibble). The kernel writes the real
 *      name back into the ifreq (it fills in templates such as "tun%d").
 *   3. Optionally the MTU, with ioctl(SIOCSIFMTU) on a throwaway AF_INET datagram socket.
 *   The link is left down and without addresses: the caller configures it (`ip link set NAME up`, `ip addr`).
 * Inbound, kernel -> Weft (start):
 *   4. By default the main thread's poller (poller.ts) watches the fd; when it is readable, the first frame is
 *      read and handed over alone (a lone packet leaves at once), then the rest in a batch (up to 64 packets
 *      or 256 KiB). onPackets gets Uint8Array views into the reader's buffer (no copy), valid until it returns.
 *   5. With WEFT_READERS=worker, a worker thread (tun-reader.worker.ts) polls and reads instead, and transfers
 *      each batch as one ArrayBuffer of its own, [u32 length × count][packets], cut into views on arrival.
 * Outbound, Weft -> kernel (write):
 *   6. One write(2) per frame, synchronously on the main thread. With offload, runs of one TCP flow are merged
 *      into GSO frames first (offload.ts). A TUN write does not block; a failure drops that frame only
 *      (counted), it never throws.
 * Closing (close):
 *   7. Raise the stop flag (SharedArrayBuffer), wait for the worker to leave poll (<= 100 ms) and exit, then
 *      close the fd: a non-persistent interface disappears, with its addresses and routes.
 */
import { constants as osConstants } from 'node:os';
import * as libc from './libc.js';
import { mainPoller, readerMode, transientReadError } from './poller.js';
import { ReaderThread } from './reader-thread.js';
import { TunBatchReader, type TunFill } from './tun-batch.js';
import { coalesce } from './offload.js';
import type { TunDevice } from './tun.js';
import type { TunReaderConfig, TunReaderMessage } from './tun-reader.worker.js';

// Linux UAPI, include/uapi/linux/if_tun.h, include/uapi/linux/if.h, include/uapi/linux/sockios.h.
/** _IOW('T', 202, int) in the asm-generic ioctl encoding. */
const TUNSETIFF = 0x400454ca;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
/** _IOW('T', 208, unsigned int): which offloads the device may hand us. */
const TUNSETOFFLOAD = 0x400454d0;
const TUN_F_CSUM = 0x01;
const TUN_F_TSO4 = 0x02;
const TUN_F_TSO6 = 0x04;
const SIOCSIFMTU = 0x8922;
/** IFNAMSIZ, including the terminating NUL. */
const IFNAMSIZ = 16;
/** sizeof(struct ifreq) on 64-bit Linux (16-byte name + 24-byte union); a superset of the 32-bit size. */
const IFREQ_SIZE = 40;
/** Offset of the ifr_ifru union (ifr_flags: short, ifr_mtu: int). */
const IFREQ_UNION = IFNAMSIZ;

// Implementation choices.
const TUN_PATH = '/dev/net/tun';
const WORKER_URL = new URL('./tun-reader.worker.js', import.meta.url);
/** How long the reader blocks in poll(2): the upper bound on close() waiting for it. */
const POLL_TIMEOUT_MS = 100;
const BATCH_MAX_PACKETS = 64;
const BATCH_MAX_BYTES = 256 * 1024;

const { EAGAIN } = osConstants.errno;

export interface LinuxTunOptions {
  /** MTU to set before anything uses the device (default: the kernel's, 1500). */
  mtu?: number;
  /**
   * Exchange TCP super-packets with the kernel (IFF_VNET_HDR with checksum and TSO offload; see offload.ts):
   * reads are segmented to MTU-sized packets in the reader worker, writes are coalesced per flow. The
   * interface to callers is unchanged: plain IP packets in and out. Default: on, unless WEFT_TUN_OFFLOAD=0.
   */
  offload?: boolean;
  /** Called with read-side failures (the reader stops on a fatal one); they are also counted in `readErrors`. */
  onError?: (error: Error) => void;
}

export interface TunCounters {
  packetsRead: number;
  bytesRead: number;
  /** Messages from the reader worker; packetsRead / batchesRead is the mean batch size. */
  batchesRead: number;
  readErrors: number;
  packetsWritten: number;
  bytesWritten: number;
  /** write(2) failures other than EAGAIN (e.g. EINVAL for a malformed packet, EIO while the link is down). */
  writeErrors: number;
  /** Packets not accepted because write(2) returned EAGAIN. */
  writesWouldBlock: number;
}

type State = 'open' | 'reading' | 'closing';

export class LinuxTun implements TunDevice {
  #state: State = 'open';
  readonly #reader = new ReaderThread<TunReaderMessage>();
  /** Read by the main-thread poller instead of a worker (poller.ts). */
  #inline = false;
  #closed: Promise<void> | undefined;
  readonly #onError: ((error: Error) => void) | undefined;
  readonly #counters: TunCounters = {
    packetsRead: 0,
    bytesRead: 0,
    batchesRead: 0,
    readErrors: 0,
    packetsWritten: 0,
    bytesWritten: 0,
    writeErrors: 0,
    writesWouldBlock: 0,
  };
  /** The last read-side failure, if any. */
  lastReadError: Error | undefined;

  private constructor(
    /** Interface name as the kernel reported it. */
    readonly name: string,
    /** The TUN file descriptor (owned by this object; closed by close()). */
    readonly fd: number,
    onError: ((error: Error) => void) | undefined,
    /** Whether packets cross the fd with a virtio-net header (TSO reads, coalesced writes). */
    readonly offload = false,
  ) {
    this.#onError = onError;
  }

  /**
   * Creates TUN interface `name` (or attaches to an existing persistent one) in the calling process's network
   * namespace. An empty name, or one with "%d", lets the kernel choose (e.g. "tun0"). Needs CAP_NET_ADMIN.
   *
   * The MTU is set here with SIOCSIFMTU rather than left to `ip link set mtu`: it is synchronous, needs no
   * iproute2 at run time nor a child process, fails with a precise errno, and the device never carries a packet
   * at the wrong MTU.
   */
  static async open(name: string, options: LinuxTunOptions = {}): Promise<LinuxTun> {
    libc.assertGenericLinuxAbi();
    const context = `cannot open TUN device ${JSON.stringify(name)}`;
    const encodedName = new TextEncoder().encode(name);
    if (encodedName.length >= IFNAMSIZ || encodedName.includes(0)) {
      throw new Error(`${context}: an interface name has at most ${IFNAMSIZ - 1} bytes and no NUL`);
    }
    const { mtu } = options;
    if (mtu !== undefined && (!Number.isInteger(mtu) || mtu <= 0 || mtu > 0x7fffffff)) {
      throw new Error(`${context}: bad MTU ${mtu}`);
    }

    const fd = libc.open(TUN_PATH, libc.O_RDWR | libc.O_CLOEXEC | libc.O_NONBLOCK);
    if (fd < 0) {
      const e = libc.errno();
      throw libc.systemError(`open(${TUN_PATH})`, e, context, openHint(e));
    }
    try {
      const ifr = new Uint8Array(IFREQ_SIZE);
      ifr.set(encodedName, 0);
      const offload = options.offload ?? process.env.WEFT_TUN_OFFLOAD !== '0';
      new Int16Array(ifr.buffer, IFREQ_UNION, 1)[0] = IFF_TUN | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0);
      if (libc.ioctl(fd, TUNSETIFF, ifr) < 0) {
        const e = libc.errno();
        throw libc.systemError('ioctl(TUNSETIFF)', e, context, setIffHint(e, name));
      }
      const end = ifr.indexOf(0);
      const actualName = new TextDecoder().decode(
        ifr.subarray(0, end < 0 || end > IFNAMSIZ ? IFNAMSIZ : end),
      );
      if (mtu !== undefined) setMtu(actualName, mtu);
      if (offload && libc.ioctlValue(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) {
        const e = libc.errno();
        throw libc.systemError('ioctl(TUNSETOFFLOAD)', e, context);
      }
      return new LinuxTun(actualName, fd, options.onError, offload);
    } catch (error) {
      libc.close(fd); // a non-persistent interface created above disappears with it
      throw error;
    }
  }

  /** A snapshot of the counters. */
  get counters(): TunCounters {
    return { ...this.#counters };
  }

  /**
   * Starts reading: on the main thread's poller (each batch's packets are views into the reader's buffer, valid
   * until the callback returns), or in a reader worker (WEFT_READERS=worker: each batch is an ArrayBuffer of its
   * own). Like a listening socket, a reading device keeps the process alive until close().
   */
  start(onPackets: (packets: Uint8Array[]) => void): void {
    if (this.#state !== 'open') {
      throw new Error(
        `TUN ${this.name}: start() ${this.#state === 'reading' ? 'called twice' : 'after close()'}`,
      );
    }
    this.#state = 'reading';
    if (readerMode() === 'inline') {
      const reader = new TunBatchReader(this.fd, BATCH_MAX_PACKETS, BATCH_MAX_BYTES, this.offload);
      this.#inline = true;
      // Hands the packets over as views into the reader's buffer; true when the batch stopped at a limit (more
      // is probably queued).
      const hand = (batch: TunFill): boolean => {
        this.#counters.readErrors += batch.dropped;
        if (batch.count > 0) onPackets(this.#borrow(reader, batch));
        if (batch.end === 'limit') return true;
        if (batch.end !== 'empty') {
          this.#readFailed(libc.systemError('read', batch.end.errno, `TUN ${this.name}: reader`));
          if (!transientReadError(batch.end.errno)) mainPoller.remove(this.fd);
        }
        return false;
      };
      // The first frame is handed over before the rest is read: a lone packet (an idle tunnel's) then leaves
      // without waiting for the read that finds the queue empty.
      mainPoller.add(this.fd, () => hand(reader.fill(1)) && hand(reader.fill()));
      return;
    }
    const workerData: Omit<TunReaderConfig, 'stop'> = {
      fd: this.fd,
      pollTimeoutMs: POLL_TIMEOUT_MS,
      maxPackets: BATCH_MAX_PACKETS,
      maxBytes: BATCH_MAX_BYTES,
      offload: this.offload,
    };
    this.#reader.start(
      WORKER_URL,
      `tun-reader ${this.name}`,
      { ...workerData },
      (message) => {
        if (message.type === 'batch') onPackets(this.#unpack(message.buffer, message.count));
        else if (message.type === 'dropped') this.#counters.readErrors += message.count;
        else this.#readFailed(libc.systemError(message.syscall, message.errno, `TUN ${this.name}: reader`));
      },
      (error) => this.#readFailed(error),
    );
  }

  /**
   * Writes each packet with one write(2); returns how many the kernel accepted. A packet that is refused
   * (EAGAIN, or an error such as EINVAL for a malformed packet, EIO while the link is down) is dropped and
   * counted; the others are still written. After close(), accepts nothing (the fd number may be reused).
   */
  write(packets: readonly Uint8Array[]): number {
    if (this.#closed !== undefined) return 0;
    const c = this.#counters;
    let accepted = 0;
    for (const packet of this.offload ? coalesce(packets) : packets) {
      const n = libc.write(this.fd, packet, packet.byteLength);
      if (n === packet.byteLength) {
        accepted++;
        c.packetsWritten++;
        c.bytesWritten += n;
      } else if (n < 0 && libc.errno() === EAGAIN) {
        c.writesWouldBlock++;
      } else {
        c.writeErrors++;
      }
    }
    return accepted;
  }

  /** Stops the reader (within about one poll timeout), then closes the fd. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#state = 'closing';
    if (this.#inline) mainPoller.remove(this.fd);
    else await this.#reader.stop();
    // Only now: the reader no longer uses the fd, so its number cannot be reused under it.
    libc.close(this.fd);
  }

  #borrow(reader: TunBatchReader, batch: TunFill): Uint8Array[] {
    const packets: Uint8Array[] = new Array<Uint8Array>(batch.count);
    for (let i = 0; i < batch.count; i++) packets[i] = reader.packet(i);
    this.#countBatch(batch.count, batch.used);
    return packets;
  }

  #countBatch(packets: number, bytes: number): void {
    const c = this.#counters;
    c.batchesRead++;
    c.packetsRead += packets;
    c.bytesRead += bytes;
  }

  #unpack(buffer: ArrayBuffer, count: number): Uint8Array[] {
    const lengths = new Uint32Array(buffer, 0, count);
    const packets: Uint8Array[] = new Array<Uint8Array>(count);
    let offset = count * 4;
    for (let i = 0; i < count; i++) {
      const length = lengths[i]!;
      packets[i] = new Uint8Array(buffer, offset, length);
      offset += length;
    }
    this.#countBatch(count, offset - count * 4);
    return packets;
  }

  #readFailed(error: Error): void {
    this.#counters.readErrors++;
    this.lastReadError = error;
    this.#onError?.(error);
  }
}

/** SIOCSIFMTU through an AF_INET datagram socket (AF_INET6 when IPv4 is compiled out). */
function setMtu(name: string, mtu: number): void {
  const context = `cannot set the MTU of ${name} to ${mtu}`;
  let sock = libc.socket(libc.AF_INET, libc.SOCK_DGRAM | libc.SOCK_CLOEXEC, 0);
  if (sock < 0 && libc.errno() === osConstants.errno.EAFNOSUPPORT) {
    sock = libc.socket(libc.AF_INET6, libc.SOCK_DGRAM | libc.SOCK_CLOEXEC, 0);
  }
  if (sock < 0) throw libc.systemError('socket', libc.errno(), context);
  try {
    const ifr = new Uint8Array(IFREQ_SIZE);
    ifr.set(new TextEncoder().encode(name), 0);
    new Int32Array(ifr.buffer, IFREQ_UNION, 1)[0] = mtu;
    if (libc.ioctl(sock, SIOCSIFMTU, ifr) < 0) {
      const e = libc.errno();
      const hint = e === osConstants.errno.EINVAL ? 'a TUN MTU is between 68 and 65535' : '';
      throw libc.systemError('ioctl(SIOCSIFMTU)', e, context, hint);
    }
  } finally {
    libc.close(sock);
  }
}

function openHint(e: number): string {
  const { ENOENT, ENODEV, ENXIO, EACCES, EPERM } = osConstants.errno;
  if (e === ENOENT || e === ENODEV || e === ENXIO) {
    return 'no TUN driver (modprobe tun; in a container, pass the device, e.g. --device /dev/net/tun)';
  }
  if (e === EACCES || e === EPERM) return 'opening /dev/net/tun needs permission on the device node (root)';
  return '';
}

function setIffHint(e: number, name: string): string {
  const { EBUSY, EINVAL, EPERM } = osConstants.errno;
  if (e === EBUSY) {
    return `${name} is already attached to an open TUN file (a TUN device without IFF_MULTI_QUEUE has one queue): another process, or another LinuxTun in this one, holds it`;
  }
  if (e === EINVAL) {
    return `either an interface named ${name} exists and is not a single-queue TUN device (e.g. a veth, a TAP or a multi-queue TUN), or the name is not a valid interface name`;
  }
  if (e === EPERM) {
    return 'creating a TUN device needs CAP_NET_ADMIN in the owning user namespace of the network namespace, and attaching to a persistent one needs its owner';
  }
  return '';
}
