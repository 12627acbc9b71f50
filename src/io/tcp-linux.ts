/**
 * TCP for the protocols that offer a stream transport (OpenVPN over TCP, for networks that let only TCP 443
 * out), served by the same poll(2) loop as the UDP socket and the TUN device: a listening socket and its
 * connections are non-blocking descriptors in the Poller, so a segment that arrives is read on the turn it is
 * ready, never behind node's event loop.
 *
 * Bounds, since anyone can connect: at most `maxConnections` at once (further ones are accepted and closed at
 * once, so the kernel's backlog does not fill with them), at most `maxQueuedBytes` waiting to be written per
 * connection (a peer that stops reading is closed rather than buffered without end), and a fixed read size
 * per turn and connection. A connection with bytes queued asks the poller for POLLOUT and stops asking once
 * they are out.
 *
 * What the bytes mean is the caller's business: `onData` gets a view of the shared read buffer, valid only
 * during the call.
 */
import { constants as osConstants } from 'node:os';
import { formatAddress, parseAddress } from '../net/ip.js';
import type { Endpoint } from '../net/endpoint.js';
import * as libc from './libc.js';
import { mainPoller, type Poller } from './poller.js';

const { EAGAIN, EINTR } = osConstants.errno;

export interface TcpListenerOptions {
  /** "::" (every address, IPv4 too) by default, or one local address. */
  readonly address?: string;
  /** 0 picks a free port (see `port`). */
  readonly port: number;
  readonly maxConnections?: number;
  readonly maxQueuedBytes?: number;
  readonly poller?: Poller;
}

export type TcpCloseReason = 'peer-closed' | 'reset' | 'queue-full' | 'closed-locally' | 'error';

export interface TcpEvents {
  /** A new connection; return false to refuse it (it is closed at once). */
  onAccept(conn: TcpConnection): boolean;
  /** Bytes from the peer: a view valid only during the call. */
  onData(conn: TcpConnection, bytes: Uint8Array): void;
  /** The connection ended (after this, `conn` is dead; onData is not called again). */
  onClose(conn: TcpConnection, reason: TcpCloseReason): void;
}

/** Bytes read per connection per turn (a TCP-framed OpenVPN packet is at most 64 KiB + 2). */
const READ_CHUNK = 65536;
/** Reads per connection per turn before others get theirs. */
const READS_PER_TURN = 8;
const SOCKADDR_ROOM = 28;

const DEFAULT_MAX_CONNECTIONS = 1024;
const DEFAULT_MAX_QUEUED_BYTES = 4 * 1024 * 1024;

function sockaddrIn6(address: string, port: number): Uint8Array {
  const parsed = parseAddress(address);
  if (!parsed.ok) throw new Error(`TCP listener: ${parsed.error}`);
  const out = new Uint8Array(libc.SOCKADDR_IN6_SIZE);
  const view = new DataView(out.buffer);
  view.setUint16(0, libc.AF_INET6, true);
  view.setUint16(2, port, false);
  if (parsed.value.family === 4) out.set([0xff, 0xff, ...parsed.value.bytes], 18);
  else out.set(parsed.value.bytes, 8);
  return out;
}

function endpointFrom(sockaddr: Uint8Array): Endpoint {
  const view = new DataView(sockaddr.buffer, sockaddr.byteOffset, sockaddr.byteLength);
  const port = view.getUint16(2, false);
  const bytes = sockaddr.subarray(8, 24);
  const mapped = bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  const address = mapped
    ? `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`
    : formatAddress({ family: 6, bytes: Uint8Array.from(bytes) });
  return { address, port };
}

function fail(syscall: string, context: string): never {
  throw libc.systemError(syscall, libc.errno(), context);
}

export class TcpConnection {
  /** Bytes waiting for the kernel to take them, oldest first; `sentOfFirst` of the first are out already. */
  private queue: Uint8Array[] = [];
  private queued = 0;
  private sentOfFirst = 0;
  private open = true;
  readonly counters = { rxBytes: 0, txBytes: 0 };
  /** For the caller: whatever it keeps per connection (a session). */
  context: unknown = undefined;

  constructor(
    readonly fd: number,
    readonly remote: Endpoint,
    private readonly listener: TcpListener,
  ) {}

  get isOpen(): boolean {
    return this.open;
  }

  get queuedBytes(): number {
    return this.queued;
  }

  /**
   * Sends `bytes` (copied if they cannot all go at once). Returns false, and closes the connection with
   * 'queue-full', when the peer has left more than the limit unread.
   */
  write(bytes: Uint8Array): boolean {
    if (!this.open) return false;
    let offset = 0;
    if (this.queued === 0) {
      offset = this.writeSome(bytes, 0);
      if (offset < 0) return false;
      if (offset === bytes.length) return true;
    }
    if (this.queued + bytes.length - offset > this.listener.maxQueuedBytes) {
      this.listener.closeConnection(this, 'queue-full');
      return false;
    }
    this.queue.push(bytes.slice(offset));
    this.queued += bytes.length - offset;
    this.listener.poller.watchWritable(this.fd, this.flush);
    return true;
  }

  /** Writes from `bytes` at `offset` until done or EAGAIN; the new offset, or -1 if the connection died. */
  private writeSome(bytes: Uint8Array, offset: number): number {
    while (offset < bytes.length) {
      const view = bytes.subarray(offset);
      const n = libc.write(this.fd, view, view.length);
      if (n > 0) {
        offset += n;
        this.counters.txBytes += n;
        continue;
      }
      const e = libc.errno();
      if (n < 0 && e === EINTR) continue;
      if (n < 0 && e === EAGAIN) break;
      this.listener.closeConnection(this, 'reset');
      return -1;
    }
    return offset;
  }

  private readonly flush = (): void => {
    while (this.open && this.queue.length > 0) {
      const first = this.queue[0]!;
      const at = this.writeSome(first, this.sentOfFirst);
      if (at < 0) return;
      this.queued -= at - this.sentOfFirst;
      if (at < first.length) {
        this.sentOfFirst = at;
        return;
      }
      this.queue.shift();
      this.sentOfFirst = 0;
    }
    if (this.open) this.listener.poller.watchWritable(this.fd, undefined);
  };

  /** Closes the connection now (what is queued is dropped). */
  close(): void {
    this.listener.closeConnection(this, 'closed-locally');
  }

  /** @internal */
  markClosed(): void {
    this.open = false;
    this.queue = [];
    this.queued = 0;
  }
}

export class TcpListener {
  readonly counters = { accepted: 0, refused: 0, overLimit: 0, closed: 0 };
  readonly port: number;
  readonly poller: Poller;
  readonly maxQueuedBytes: number;
  private readonly maxConnections: number;
  private readonly connections = new Map<number, TcpConnection>();
  private readonly readBuffer = new Uint8Array(READ_CHUNK);
  private readonly acceptAddr = new Uint8Array(SOCKADDR_ROOM);
  private readonly acceptLen = new Uint32Array(1);
  private fd: number;

  private constructor(
    fd: number,
    port: number,
    options: TcpListenerOptions,
    private readonly events: TcpEvents,
  ) {
    this.fd = fd;
    this.port = port;
    this.poller = options.poller ?? mainPoller;
    this.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.poller.add(fd, this.acceptReady);
  }

  /** Listens on `options.port` (both IPv4 and IPv6 unless an address is given). Throws a SystemError. */
  static listen(options: TcpListenerOptions, events: TcpEvents): TcpListener {
    libc.assertGenericLinuxAbi();
    const fd = libc.socket(libc.AF_INET6, libc.SOCK_STREAM | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC, 0);
    if (fd < 0) fail('socket', 'TCP listener');
    try {
      const one = new Int32Array([1]);
      const zero = new Int32Array([0]);
      libc.setsockopt(fd, libc.SOL_SOCKET, libc.SO_REUSEADDR, one, 4);
      libc.setsockopt(fd, libc.IPPROTO_IPV6, libc.IPV6_V6ONLY, zero, 4);
      const addr = sockaddrIn6(options.address ?? '::', options.port);
      if (libc.bind(fd, addr, addr.length) < 0) fail('bind', `TCP listener on port ${options.port}`);
      if (libc.listen(fd, 128) < 0) fail('listen', `TCP listener on port ${options.port}`);
      const name = new Uint8Array(SOCKADDR_ROOM);
      const len = new Uint32Array([SOCKADDR_ROOM]);
      if (libc.getsockname(fd, name, len) < 0) fail('getsockname', 'TCP listener');
      const port = new DataView(name.buffer).getUint16(2, false);
      return new TcpListener(fd, port, options, events);
    } catch (e) {
      libc.close(fd);
      throw e;
    }
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  private readonly acceptReady = (): boolean => {
    for (let i = 0; i < 64; i++) {
      this.acceptLen[0] = SOCKADDR_ROOM;
      const fd = libc.accept4(
        this.fd,
        this.acceptAddr,
        this.acceptLen,
        libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC,
      );
      if (fd < 0) {
        const e = libc.errno();
        if (e === EINTR) continue;
        return false; // EAGAIN, or a connection that died before it was accepted
      }
      if (this.connections.size >= this.maxConnections) {
        this.counters.overLimit++;
        libc.close(fd);
        continue;
      }
      libc.setsockopt(fd, libc.IPPROTO_TCP, libc.TCP_NODELAY, new Int32Array([1]), 4);
      const conn = new TcpConnection(fd, endpointFrom(this.acceptAddr), this);
      this.connections.set(fd, conn);
      this.counters.accepted++;
      if (!this.events.onAccept(conn)) {
        this.counters.refused++;
        this.closeConnection(conn, 'closed-locally');
        continue;
      }
      this.poller.add(fd, () => this.readReady(conn));
    }
    return true;
  };

  private readReady(conn: TcpConnection): boolean {
    for (let i = 0; i < READS_PER_TURN && conn.isOpen; i++) {
      const n = libc.read(conn.fd, this.readBuffer, READ_CHUNK);
      if (n > 0) {
        conn.counters.rxBytes += n;
        this.events.onData(conn, this.readBuffer.subarray(0, n));
        continue;
      }
      if (n === 0) {
        this.closeConnection(conn, 'peer-closed');
        return false;
      }
      const e = libc.errno();
      if (e === EINTR) continue;
      if (e === EAGAIN) return false;
      this.closeConnection(conn, 'reset');
      return false;
    }
    return conn.isOpen; // stopped at the limit: more may be waiting
  }

  /** @internal Ends a connection once: the poller forgets it, the descriptor is closed, onClose is told. */
  closeConnection(conn: TcpConnection, reason: TcpCloseReason): void {
    if (!conn.isOpen) return;
    conn.markClosed();
    this.connections.delete(conn.fd);
    this.poller.remove(conn.fd);
    libc.close(conn.fd);
    this.counters.closed++;
    this.events.onClose(conn, reason);
  }

  /** Stops listening and closes every connection. */
  close(): void {
    if (this.fd < 0) return;
    for (const conn of [...this.connections.values()]) this.closeConnection(conn, 'closed-locally');
    this.poller.remove(this.fd);
    libc.close(this.fd);
    this.fd = -1;
  }
}
