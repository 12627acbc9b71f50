/**
 * LinuxUdpBind: the Bind over a raw Linux UDP socket, through libc calls made with koffi (libc.ts), batched with
 * recvmmsg(2)/sendmmsg(2). A drop-in replacement for UdpBind (udp.ts, node:dgram), which stays the fallback:
 * `openBestBind()` picks this one when koffi loads and the ABI is one libc.ts knows, and UdpBind otherwise or
 * when WEFT_UDP=dgram. Why: with node:dgram every datagram costs one 'message' event on receive, and one send
 * call (address lookup, a libuv request, a callback) on send; at ~100k datagrams/s that is most of the CPU.
 *
 * Opening (LinuxUdpBind.open):
 *   1. socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC) with IPV6_V6ONLY off: one dual-stack socket
 *      serves IPv4 peers as v4-mapped addresses (::ffff:a.b.c.d) and IPv6 peers on the same port, as
 *      wireguard-go's does. Where the host has no IPv6 (EAFNOSUPPORT, or EADDRNOTAVAIL binding [::]), an
 *      AF_INET socket instead. An explicit IPv4 bind address also gets an AF_INET socket.
 *   2. Socket buffers of 4 MiB: SO_RCVBUFFORCE/SO_SNDBUFFORCE (past net.core.rmem_max/wmem_max; needs
 *      CAP_NET_ADMIN), else SO_RCVBUF/SO_SNDBUF (capped by the sysctls), else the defaults.
 *   3. IPV6_RECVPKTINFO (dual stack: IPv4 datagrams too, v4-mapped) or IP_PKTINFO: each datagram's local
 *      address comes with it (pktinfo.ts).
 *   4. bind(2), then getsockname(2) for the port actually bound (port 0 = any).
 * Inbound, peers -> Weft (start):
 *   5. By default the main thread's poller (poller.ts) watches the socket; when it is readable, one recvmmsg(2)
 *      takes up to 64 datagrams into preallocated slots, and onDatagrams gets Uint8Array views of the slots (no
 *      copy, no allocation but the views), valid until it returns. The batch's size goes to the poller
 *      (noteBatch): several datagrams at once are a stream, which it lets gather before it looks again.
 *   6. With WEFT_READERS=worker, a worker thread (udp-reader.worker.ts) polls the socket instead and transfers
 *      each call's datagrams as one ArrayBuffer: lengths, sources, local addresses, payloads (batchLayout),
 *      which the main thread cuts into views. Either way, sources come from a cache keyed by address bytes,
 *      port and local address, so a busy peer costs no string formatting nor allocation: each one's Endpoint
 *      object is shared by all its datagrams (frozen), IPv4 in plain form, with `local` the address it wrote
 *      to. The device keeps that Endpoint as the peer's, so the local address sticks to the peer until it
 *      reaches us on another one (as wireguard-go and the kernel module keep theirs).
 * Outbound, Weft -> peers (send):
 *   7. Synchronously on the main thread: each datagram's destination (parsed through a cache) goes into a
 *      preallocated sockaddr_in6 (v4-mapped for IPv4), its endpoint's local address into the record's
 *      preallocated IPV6_PKTINFO / IP_PKTINFO control message (msg_controllen 0 when it has none: the kernel
 *      picks), its bytes are copied into a preallocated send arena, and the whole batch leaves in one
 *      sendmmsg(2) call (a few, for more than 1024 datagrams or 4 MiB). Consecutive datagrams to one endpoint
 *      (the usual batch) reuse the parsed addresses.
 *      Copying rather than pointing the iovecs at the callers' buffers: a memcpy costs 45-70 ns for 64-1400
 *      bytes, less than asking koffi for each buffer's address (130-150 ns with the BigInt it returns), and it
 *      needs no reasoning about buffers moved by the garbage collector or detached while in use.
 *   8. Partial sends go on with the rest; a datagram the kernel refuses (no route, bad address, too long) is
 *      counted in sendErrors and skipped; EAGAIN (socket buffer full) drops the rest of the batch, counted in
 *      sendDropped. Nothing is thrown for a datagram. A datagram with a local address refused with EINVAL,
 *      EADDRNOTAVAIL or ENETUNREACH is sent once more without it; if that goes, the address has gone from the
 *      host: it is forgotten (for every peer that had it; counted in sourcesForgotten) until a datagram arrives
 *      on it again.
 * Closing (close):
 *   9. Raise the stop flag (SharedArrayBuffer), shutdown(2) the socket, which wakes the worker out of poll at
 *      once (else it would see the flag within one poll timeout, 100 ms), wait for it to exit, then close the
 *      fd; the port is free again at once.
 */
import { constants as osConstants, endianness } from 'node:os';
import type { Endpoint } from '../net/endpoint.js';
import { formatAddress, parseAddress } from '../net/ip.js';
import type { Bind, Datagram } from './bind.js';
import { PktinfoCodec } from './pktinfo.js';
import { ReaderThread } from './reader-thread.js';
import { SEND_ERRORS, SOCKADDR_SLOT, UdpBatchReader, batchLayout } from './udp-batch.js';
import type * as Libc from './libc.js';
import { UdpBind } from './udp.js';
import type { UdpReaderConfig, UdpReaderMessage } from './udp-reader.worker.js';

type LibcModule = typeof Libc;

// Implementation choices.
const WORKER_URL = new URL('./udp-reader.worker.js', import.meta.url);
/** How long the reader blocks in poll(2) between looks at the stop flag (close() also wakes it at once). */
const POLL_TIMEOUT_MS = 100;
/** Datagrams per recvmmsg(2) call, hence the largest batch onDatagrams sees. */
const RECEIVE_BATCH = 64;
/** The largest UDP payload (IPv6 without jumbograms: 65535 - 8; IPv4: 65535 - 28); room for each. */
const MAX_DATAGRAM = 65_535;
const SOCKET_BUFFER_BYTES = 4 << 20;
/** mmsghdr records prepared for sendmmsg(2): grown with the batches, up to UIO_MAXIOV (the kernel's cap). */
const SEND_VLEN_MIN = 64;
const SEND_VLEN_MAX = 1024;
/** The send arena (payload copies for one sendmmsg call): grown with the batches' bytes up to the maximum. */
const SEND_ARENA_MIN = 256 * 1024;
const SEND_ARENA_MAX = 4 << 20;
/** Entries per address cache; a full cache forgets its oldest entry. */
const ADDRESS_CACHE_SIZE = 1024;
/** Local addresses the IPv4 source cache keeps a table for (the host's addresses a peer can write to). */
const LOCAL_CACHE_SIZE = 64;

const { EAGAIN, EINTR, EAFNOSUPPORT, EADDRNOTAVAIL, EADDRINUSE, EACCES, EINVAL, EMSGSIZE, ENETUNREACH } =
  osConstants.errno;
/**
 * How Linux refuses a source address that is not (or no longer) one of the host's: IPv6 and IPV6_PKTINFO
 * EINVAL (ip6_datagram_send_ctl), IPv4 ENETUNREACH from the route lookup (as seen on 6.18), or
 * EADDRNOTAVAIL. ENETUNREACH is also "no route to the destination": send() tells them apart by sending once
 * more without the source.
 */
const REFUSED_SOURCE: ReadonlySet<number> = new Set([EINVAL, EADDRNOTAVAIL, ENETUNREACH]);

const LITTLE_ENDIAN = endianness() === 'LE';
/** Bytes 00 00 ff ff (the third word of a v4-mapped address) as a native-endian u32. */
const MAPPED_WORD = LITTLE_ENDIAN ? 0xffff0000 : 0x0000ffff;
const TWO_32 = 2 ** 32;

export interface UdpCounters {
  datagramsIn: number;
  bytesIn: number;
  /** Messages from the reader worker; datagramsIn / batchesIn is the mean batch size. */
  batchesIn: number;
  /** Datagrams dropped on receive because they were longer than the room for one (never with the default). */
  truncatedIn: number;
  /** Failures reported by the reader (a fatal one stops receiving). */
  receiveErrors: number;
  datagramsOut: number;
  bytesOut: number;
  /** Datagrams not sent because the socket buffer was full (EAGAIN): the rest of that batch. */
  sendDropped: number;
  /** Datagrams refused: an unparsable or unreachable destination, a wrong family, too long, ... */
  sendErrors: number;
  /** Local addresses forgotten because the kernel refused them as a source (gone from the host). */
  sourcesForgotten: number;
}

export interface LinuxUdpBindOptions {
  /** Called with receive-side failures (the reader stops on a fatal one); also counted in receiveErrors. */
  onError?: (error: Error) => void;
}

// ---------------------------------------------------------------------------------------------------------------
// Loading

let libcLoading: Promise<LibcModule> | undefined;
/** poller.ts, loaded with libc (it calls poll(2) through it). */
let pollerModule: typeof import('./poller.js') | undefined;

/**
 * libc.ts, loaded on first use rather than imported, so that a host where koffi cannot load (no prebuilt
 * binary for the platform) still gets UdpBind from openBestBind. Rejects with the reason it cannot be used.
 */
function loadLibc(): Promise<LibcModule> {
  libcLoading ??= (async () => {
    const libc = await import('./libc.js');
    libc.assertGenericLinuxAbi();
    pollerModule = await import('./poller.js');
    const expected = libc.POINTER_SIZE === 8 ? { mmsghdr: 64, iovec: 16 } : { mmsghdr: 32, iovec: 8 };
    if (libc.MMSGHDR.size !== expected.mmsghdr || libc.IOVEC.size !== expected.iovec) {
      throw new Error(
        `unexpected struct layout: mmsghdr ${libc.MMSGHDR.size} bytes, iovec ${libc.IOVEC.size} bytes`,
      );
    }
    return libc;
  })();
  return libcLoading;
}

/** Why LinuxUdpBind cannot be used in this process (koffi, platform), or undefined if it can. */
export async function linuxUdpUnavailable(): Promise<string | undefined> {
  try {
    await loadLibc();
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/**
 * The best Bind for this host: a LinuxUdpBind when koffi and the ABI check work, else a node:dgram UdpBind.
 * The environment variable WEFT_UDP=dgram forces UdpBind; WEFT_UDP=linux forces LinuxUdpBind (and fails if it is
 * unavailable). A failure to bind (port in use, ...) is thrown, never papered over by the fallback.
 */
export async function openBestBind(port: number, address?: string): Promise<Bind> {
  const choice = process.env.WEFT_UDP;
  if (choice === 'dgram') return UdpBind.open(port, address);
  if (choice !== 'linux' && (await linuxUdpUnavailable()) !== undefined) return UdpBind.open(port, address);
  return LinuxUdpBind.open(port, address);
}

// ---------------------------------------------------------------------------------------------------------------
// Address caches

/** Adds to a bounded map, forgetting the oldest entry when full (hits do not reorder: a few peers dominate). */
function remember<K, V>(map: Map<K, V>, key: K, value: V, limit = ADDRESS_CACHE_SIZE): void {
  if (map.size >= limit) {
    const oldest = map.keys().next();
    if (oldest.done !== true) map.delete(oldest.value);
  }
  map.set(key, value);
}

/** The dotted form of an IPv4 address held as a native-endian u32 of its network-order bytes. */
function v4Text(word: number): string {
  return LITTLE_ENDIAN
    ? `${word & 0xff}.${(word >>> 8) & 0xff}.${(word >>> 16) & 0xff}.${word >>> 24}`
    : `${word >>> 24}.${(word >>> 16) & 0xff}.${(word >>> 8) & 0xff}.${word & 0xff}`;
}

/** The text of an address held as four native-endian u32s (IPv4 v4-mapped, in plain form), or undefined for ::. */
function wordsText(w0: number, w1: number, w2: number, w3: number): string | undefined {
  if (w0 === 0 && w1 === 0 && w2 === MAPPED_WORD) return v4Text(w3);
  if (w0 === 0 && w1 === 0 && w2 === 0 && w3 === 0) return undefined;
  return formatAddress({ family: 6, bytes: new Uint8Array(Uint32Array.of(w0, w1, w2, w3).buffer) });
}

/** Source endpoints of received datagrams, by address bytes, port, scope and local address. */
class SourceCache {
  /**
   * IPv4 sources: a table per local address (its u32 word; 0 when the kernel gave none), each by (address
   * word × 65536 + port): numbers, no string built per datagram.
   */
  readonly #v4 = new Map<number, Map<number, Endpoint>>();
  /** The table last used and its local word: a batch's datagrams usually share their local address. */
  #v4Local = -1;
  #v4Table = new Map<number, Endpoint>();
  /** IPv6 sources, by a 19-character string of the 16-bit halves of address, port, scope and local address. */
  readonly #v6 = new Map<string, Endpoint>();

  constructor(private readonly interfaceName: (index: number) => string | undefined) {}

  /**
   * The source whose address is words[w .. w+3] and whose datagram arrived on locals[l .. l+3] (native-endian
   * u32s of the bytes; a local of all zeros: unknown).
   */
  get(words: Uint32Array, w: number, port: number, scope: number, locals: Uint32Array, l: number): Endpoint {
    const w0 = words[w]!;
    const w1 = words[w + 1]!;
    const w2 = words[w + 2]!;
    const w3 = words[w + 3]!;
    const l0 = locals[l]!;
    const l1 = locals[l + 1]!;
    const l2 = locals[l + 2]!;
    const l3 = locals[l + 3]!;
    if (w0 === 0 && w1 === 0 && w2 === MAPPED_WORD && scope === 0) {
      // An IPv4 datagram's local address is IPv4 (v4-mapped) or unknown.
      const local = l0 === 0 && l1 === 0 && l2 === MAPPED_WORD ? l3 : 0;
      let table = this.#v4Table;
      if (local !== this.#v4Local) {
        let found = this.#v4.get(local);
        if (found === undefined) {
          found = new Map<number, Endpoint>();
          remember(this.#v4, local, found, LOCAL_CACHE_SIZE);
        }
        this.#v4Local = local;
        this.#v4Table = table = found;
      }
      const key = w3 * 65536 + port;
      let endpoint = table.get(key);
      if (endpoint === undefined) {
        endpoint = Object.freeze({
          address: v4Text(w3),
          port,
          local: local === 0 ? undefined : v4Text(local),
        });
        remember(table, key, endpoint);
      }
      return endpoint;
    }
    const key = String.fromCharCode(
      w0 & 0xffff,
      w0 >>> 16,
      w1 & 0xffff,
      w1 >>> 16,
      w2 & 0xffff,
      w2 >>> 16,
      w3 & 0xffff,
      w3 >>> 16,
      port,
      scope & 0xffff,
      scope >>> 16,
      l0 & 0xffff,
      l0 >>> 16,
      l1 & 0xffff,
      l1 >>> 16,
      l2 & 0xffff,
      l2 >>> 16,
      l3 & 0xffff,
      l3 >>> 16,
    );
    let endpoint = this.#v6.get(key);
    if (endpoint === undefined) {
      const bytes = new Uint8Array(Uint32Array.of(w0, w1, w2, w3).buffer);
      let address = formatAddress({ family: 6, bytes });
      if (scope !== 0) address += `%${this.interfaceName(scope) ?? scope}`;
      endpoint = Object.freeze({ address, port, local: wordsText(l0, l1, l2, l3) });
      remember(this.#v6, key, endpoint);
    }
    return endpoint;
  }
}

/** A parsed destination address: its 16 bytes as an IPv6 address (IPv4 v4-mapped), as native-endian u32s. */
interface Destination {
  readonly v4: boolean;
  readonly w0: number;
  readonly w1: number;
  readonly w2: number;
  readonly w3: number;
  readonly scope: number;
}

/** Destination addresses of datagrams to send, by their text; null for text that is not an IP address. */
class DestinationCache {
  readonly #map = new Map<string, Destination | null>();

  constructor(private readonly interfaceIndex: (name: string) => number) {}

  get(address: string): Destination | null {
    let d = this.#map.get(address);
    if (d === undefined) {
      d = this.#parse(address);
      remember(this.#map, address, d);
    }
    return d;
  }

  #parse(text: string): Destination | null {
    const percent = text.indexOf('%');
    const parsed = parseAddress(percent < 0 ? text : text.slice(0, percent));
    if (!parsed.ok) return null;
    const { family, bytes } = parsed.value;
    const full = new Uint8Array(16);
    if (family === 4) full.set([0xff, 0xff, ...bytes], 10);
    else full.set(bytes);
    const [w0 = 0, w1 = 0, w2 = 0, w3 = 0] = new Uint32Array(full.buffer);
    let scope = 0;
    if (percent >= 0) {
      const zone = text.slice(percent + 1);
      if (family !== 6 || zone === '') return null;
      scope = /^\d+$/.test(zone) ? Number(zone) : this.interfaceIndex(zone);
      if (scope === 0 || scope >= TWO_32) return null;
    }
    const v4 = w0 === 0 && w1 === 0 && w2 === MAPPED_WORD && scope === 0;
    return { v4, w0, w1, w2, w3, scope };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The Bind

type State = 'open' | 'receiving' | 'closing';

export class LinuxUdpBind implements Bind {
  readonly #libc: LibcModule;
  /** AF_INET6 (dual stack) or AF_INET. */
  readonly #v6: boolean;
  #state: State = 'open';
  readonly #reader = new ReaderThread<UdpReaderMessage>();
  /** Read by the main-thread poller instead of a worker (poller.ts). */
  #inline = false;
  #closed: Promise<void> | undefined;
  readonly #onError: ((error: Error) => void) | undefined;
  readonly #counters: UdpCounters = {
    datagramsIn: 0,
    bytesIn: 0,
    batchesIn: 0,
    truncatedIn: 0,
    receiveErrors: 0,
    datagramsOut: 0,
    bytesOut: 0,
    sendDropped: 0,
    sendErrors: 0,
    sourcesForgotten: 0,
  };
  readonly #sources: SourceCache;
  readonly #destinations: DestinationCache;
  readonly #pktinfo: PktinfoCodec;
  /** Local addresses the kernel refused as a source (gone from the host), until a datagram arrives on one. */
  readonly #goneLocals = new Set<string>();
  /** The last endpoint send() parsed, with its destination and usable source (null: none). */
  #lastEndpoint: Endpoint | undefined;
  #lastTo: Destination | null = null;
  #lastFrom: Destination | null = null;
  #lastSendErrno = 0;
  /** The last receive-side failure, if any. */
  lastReceiveError: Error | undefined;

  // Send-side memory: mmsghdr, iovec and sockaddr records for #vlen datagrams (pointers written once per
  // allocation), and the payload arena. Keeping these ArrayBuffers referenced keeps the addresses valid.
  #vlen = 0;
  #hdrs = new Uint8Array(0);
  #iovWords = new Uint32Array(0);
  #nameBytes = new Uint8Array(0);
  #nameWords = new Uint32Array(0);
  #hdrWords = new Uint32Array(0);
  /** Each record's control message (pktinfo.ts; header written once) and the local address it carries. */
  #controlWords = new Uint32Array(0);
  #recordLocals: (string | undefined)[] = [];
  #lengths = new Uint32Array(0);
  /** Bytes per record's control message, and the index of msg_controllen's value u32 in a record. */
  readonly #controlSpace: number;
  readonly #controllenWord: number;
  /** One source and one local address, as SourceCache reads them. */
  readonly #sourceWords = new Uint32Array(8);
  #arena = new Uint8Array(0);
  /** The arena's address, as two u32 halves (pointer arithmetic without BigInt). */
  #arenaLo = 0;
  #arenaHi = 0;
  /** Index of the low / high u32 of a pointer-sized field, relative to the field's first u32. */
  readonly #lo: number;
  readonly #hi: number;

  private constructor(
    libc: LibcModule,
    /** The socket (owned by this object; closed by close()). */
    readonly fd: number,
    family: number,
    /** The local UDP port actually bound. */
    readonly port: number,
    options: LinuxUdpBindOptions,
  ) {
    this.#libc = libc;
    this.#v6 = family === libc.AF_INET6;
    this.#onError = options.onError;
    this.#sources = new SourceCache(libc.ifIndexToName);
    this.#destinations = new DestinationCache(libc.ifNameToIndex);
    this.#lo = libc.POINTER_SIZE === 8 && !LITTLE_ENDIAN ? 1 : 0;
    this.#hi = 1 - this.#lo;
    this.#pktinfo = new PktinfoCodec(libc.CMSGHDR, libc.POINTER_SIZE);
    this.#controlSpace = this.#v6 ? this.#pktinfo.spaceV6 : this.#pktinfo.spaceV4;
    this.#controllenWord = (libc.MMSGHDR.controllen >> 2) + this.#lo;
    this.#growRecords(SEND_VLEN_MIN);
    this.#growArena(SEND_ARENA_MIN);
  }

  /**
   * Binds `port` (0 = any) on all addresses, IPv4 and IPv6 (or on `address` only). Throws a descriptive Error
   * (with `code`, e.g. EADDRINUSE: "UDP port N is in use"), or the reason koffi/libc cannot be used here.
   */
  static async open(
    port: number,
    address?: string,
    options: LinuxUdpBindOptions = {},
  ): Promise<LinuxUdpBind> {
    const context = `cannot bind UDP port ${port}${address === undefined ? '' : ` on ${address}`}`;
    if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new Error(`${context}: bad port number`);
    const libc = await loadLibc();

    const attempts: { family: number; address: string }[] = [];
    if (address === undefined) {
      attempts.push({ family: libc.AF_INET6, address: '::' }, { family: libc.AF_INET, address: '0.0.0.0' });
    } else {
      const parsed = parseAddress(address.split('%')[0] ?? '');
      if (!parsed.ok) throw new Error(`${context}: ${parsed.error}`);
      attempts.push({ family: parsed.value.family === 4 ? libc.AF_INET : libc.AF_INET6, address });
    }
    for (let i = 0; ; i++) {
      const attempt = attempts[i]!;
      const last = i === attempts.length - 1;
      try {
        const { fd, port: bound } = openSocket(libc, attempt.family, attempt.address, port, context);
        return new LinuxUdpBind(libc, fd, attempt.family, bound, options);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (last || (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL')) throw error;
      }
    }
  }

  /** A snapshot of the counters. */
  get counters(): UdpCounters {
    return { ...this.#counters };
  }

  /** Datagrams refused (as UdpBind.sendErrors). */
  get sendErrors(): number {
    return this.#counters.sendErrors;
  }

  /** The errno name of the last refused datagram ("ENETUNREACH"), if any. */
  get lastSendError(): string | undefined {
    return this.#lastSendErrno === 0 ? undefined : this.#libc.errnoName(this.#lastSendErrno);
  }

  /** Whether the socket is AF_INET6 (bound to [::]: dual stack, IPv4 as v4-mapped); false: AF_INET, IPv4 only. */
  get dualStack(): boolean {
    return this.#v6;
  }

  /**
   * Starts receiving: on the main thread's poller (each batch's datagrams are views into the reader's slots,
   * valid until the callback returns), or in a reader worker (each batch is an ArrayBuffer of its own). Like a
   * listening socket, a receiving bind keeps the process alive until close().
   */
  start(onDatagrams: (datagrams: readonly Datagram[]) => void): void {
    if (this.#state !== 'open') {
      throw new Error(
        `UDP port ${this.port}: start() ${this.#state === 'receiving' ? 'called twice' : 'after close()'}`,
      );
    }
    this.#state = 'receiving';
    const libc = this.#libc;
    const poller = pollerModule;
    if (poller && poller.readerMode() === 'inline') {
      const family = this.#v6 ? libc.AF_INET6 : libc.AF_INET;
      const reader = new UdpBatchReader(libc, this.fd, family, RECEIVE_BATCH, MAX_DATAGRAM);
      this.#inline = true;
      poller.mainPoller.add(this.fd, () => {
        const r = reader.receive();
        switch (r.type) {
          case 'slots': {
            poller.mainPoller.noteBatch(this.fd, r.count);
            const datagrams = this.#borrow(reader, r.count);
            if (datagrams.length > 0) onDatagrams(datagrams);
            return r.count === RECEIVE_BATCH;
          }
          case 'empty':
            return false;
          case 'closed':
            poller.mainPoller.remove(this.fd);
            return false;
          case 'error':
            this.#receiveFailed(libc.systemError('recvmmsg', r.errno, `UDP port ${this.port}: receiver`));
            if (SEND_ERRORS.has(r.errno)) return true; // an ICMP error about an earlier send: read on
            if (!poller.transientReadError(r.errno)) poller.mainPoller.remove(this.fd);
            return false;
        }
      });
      return;
    }
    const workerData: Omit<UdpReaderConfig, 'stop'> = {
      fd: this.fd,
      family: this.#v6 ? libc.AF_INET6 : libc.AF_INET,
      pollTimeoutMs: POLL_TIMEOUT_MS,
      maxDatagrams: RECEIVE_BATCH,
      maxDatagramSize: MAX_DATAGRAM,
    };
    this.#reader.start(
      WORKER_URL,
      `udp-reader ${this.port}`,
      { ...workerData },
      (message) => {
        if (message.type === 'batch') {
          this.#counters.truncatedIn += message.truncated;
          if (message.count > 0) onDatagrams(this.#unpack(message.buffer, message.count));
        } else {
          this.#receiveFailed(
            libc.systemError(message.syscall, message.errno, `UDP port ${this.port}: receiver`),
          );
        }
      },
      (error) => this.#receiveFailed(error),
    );
  }

  /**
   * Sends every datagram, in as few sendmmsg(2) calls as the batch allows; never throws for a datagram. One the
   * kernel refuses is counted in sendErrors and skipped; when the socket buffer is full (EAGAIN), the rest of the
   * batch is dropped and counted in sendDropped. After close(), everything is dropped.
   */
  send(datagrams: readonly Datagram[]): void {
    const total = datagrams.length;
    if (total === 0) return;
    const c = this.#counters;
    if (this.#closed !== undefined) {
      c.sendDropped += total;
      return;
    }
    this.#reserve(datagrams);
    const v6 = this.#v6;
    const lo = this.#lo;
    const hi = this.#hi;
    const wide = this.#libc.POINTER_SIZE === 8;
    const { IOVEC } = this.#libc;
    const iovStride = IOVEC.size >> 2;
    const iovBase = IOVEC.base >> 2;
    const iovLen = IOVEC.len >> 2;
    const recordWords = this.#libc.MMSGHDR.size >> 2;
    const controllenWord = this.#controllenWord;
    const controlSpace = this.#controlSpace;
    let i = 0;
    while (i < total) {
      // Fill the records for one sendmmsg call.
      const iovWords = this.#iovWords;
      const nameBytes = this.#nameBytes;
      const nameWords = this.#nameWords;
      const hdrWords = this.#hdrWords;
      const controlWords = this.#controlWords;
      const recordLocals = this.#recordLocals;
      const pktinfo = this.#pktinfo;
      const lengths = this.#lengths;
      const arena = this.#arena;
      const vlen = this.#vlen;
      const room = arena.length;
      let n = 0;
      let used = 0;
      while (i < total && n < vlen) {
        const d = datagrams[i]!;
        const data = d.data;
        const length = data.byteLength;
        if (used + length > room && length <= MAX_DATAGRAM) break; // n > 0: the arena holds any one datagram
        i++;
        const endpoint = d.endpoint;
        if (endpoint !== this.#lastEndpoint) this.#parseEndpoint(endpoint);
        const to = this.#lastTo;
        const from = this.#lastFrom;
        const port = endpoint.port;
        const refused =
          to === null || port !== (port & 0xffff)
            ? EINVAL
            : length > MAX_DATAGRAM
              ? EMSGSIZE
              : !v6 && !to.v4
                ? EAFNOSUPPORT
                : 0;
        if (refused !== 0 || to === null) {
          c.sendErrors++;
          this.#lastSendErrno = refused;
          continue;
        }
        // sockaddr_in6 { u16 family; be16 port; be32 flowinfo; u8 addr[16]; u32 scope_id; } or
        // sockaddr_in { u16 family; be16 port; u8 addr[4]; u8 zero[8]; } (family and zeros written once).
        const s = n * SOCKADDR_SLOT;
        nameBytes[s + 2] = port >>> 8;
        nameBytes[s + 3] = port & 0xff;
        const w = s >> 2;
        if (v6) {
          nameWords[w + 2] = to.w0;
          nameWords[w + 3] = to.w1;
          nameWords[w + 4] = to.w2;
          nameWords[w + 5] = to.w3;
          nameWords[w + 6] = to.scope;
        } else {
          nameWords[w + 1] = to.w3;
        }
        // The source address: an IPV6_PKTINFO / IP_PKTINFO message (header written once), or none.
        const h = n * recordWords + controllenWord;
        if (from === null) {
          hdrWords[h] = 0;
          recordLocals[n] = undefined;
        } else {
          pktinfo.setSource(controlWords, n * controlSpace, v6, from.w0, from.w1, from.w2, from.w3);
          hdrWords[h] = controlSpace;
          recordLocals[n] = endpoint.local;
        }
        // struct iovec { void *iov_base; size_t iov_len; } (the high word of iov_len stays 0).
        const v = n * iovStride;
        let pointerLo = this.#arenaLo + used;
        let pointerHi = this.#arenaHi;
        if (pointerLo >= TWO_32) {
          pointerLo -= TWO_32;
          pointerHi++;
        }
        if (wide) {
          iovWords[v + iovBase + lo] = pointerLo;
          iovWords[v + iovBase + hi] = pointerHi;
          iovWords[v + iovLen + lo] = length;
        } else {
          iovWords[v + iovBase] = pointerLo;
          iovWords[v + iovLen] = length;
        }
        arena.set(data, used);
        lengths[n++] = length;
        used += length;
      }
      if (n > 0 && !this.#flush(n)) {
        c.sendDropped += total - i;
        return;
      }
    }
    // The answer to what woke the poller is out: its reader may run first (poller.ts, "Handing the CPU over").
    pollerModule?.mainPoller.handOff(total);
  }

  /**
   * Parses `endpoint` for send(): its destination (null: not an address) and the source to send from (null:
   * none, the kernel picks): its local address, unless that is gone, unparsable, scoped or of the other family.
   */
  #parseEndpoint(endpoint: Endpoint): void {
    const to = this.#destinations.get(endpoint.address);
    const local = endpoint.local;
    let from: Destination | null = null;
    if (to !== null && local !== undefined && !this.#goneLocals.has(local)) {
      from = this.#destinations.get(local);
      if (from !== null && (from.v4 !== to.v4 || from.scope !== 0)) from = null;
    }
    this.#lastEndpoint = endpoint;
    this.#lastTo = to;
    this.#lastFrom = from;
  }

  /**
   * The kernel refused a datagram from `local` and took it without: `local` is no longer an address of the host.
   * Forgets it for every peer, and takes it off records i.. of the batch being sent, so they go out with the
   * kernel's choice of source.
   */
  #forgetLocal(local: string, i: number, n: number): void {
    this.#goneLocals.add(local);
    this.#counters.sourcesForgotten++;
    this.#lastEndpoint = undefined;
    const recordWords = this.#libc.MMSGHDR.size >> 2;
    const locals = this.#recordLocals;
    for (let k = i; k < n; k++) {
      if (locals[k] !== local) continue;
      locals[k] = undefined;
      this.#hdrWords[k * recordWords + this.#controllenWord] = 0;
    }
  }

  /** A datagram arrived on `local`: it is an address of the host again, if it had been forgotten. */
  #revive(local: string | undefined): void {
    if (local !== undefined && this.#goneLocals.delete(local)) this.#lastEndpoint = undefined;
  }

  /** Stops the reader (at once: see 9 above), then closes the socket. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#state = 'closing';
    if (this.#inline) {
      pollerModule?.mainPoller.remove(this.fd);
      this.#libc.close(this.fd);
      return;
    }
    // shutdown(2) wakes the reader out of poll(2) at once (ENOTCONN: the socket is not connected).
    await this.#reader.stop(() => this.#libc.shutdown(this.fd, this.#libc.SHUT_RDWR));
    // Only now: the reader no longer uses the fd, so its number cannot be reused under it.
    this.#libc.close(this.fd);
  }

  /**
   * sendmmsg(2) of the first `n` prepared records, going on after partial sends and skipping refused datagrams.
   * Returns false if EAGAIN stopped it (the rest of the `n` is counted in sendDropped).
   */
  #flush(n: number): boolean {
    const libc = this.#libc;
    const c = this.#counters;
    const lengths = this.#lengths;
    const recordSize = libc.MMSGHDR.size;
    /** The local address just taken off record i because the kernel refused the datagram with it. */
    let retried: string | undefined;
    let i = 0;
    while (i < n) {
      const records = i === 0 ? this.#hdrs : this.#hdrs.subarray(i * recordSize);
      const sent = libc.sendmmsg(this.fd, records, n - i, libc.MSG_DONTWAIT);
      if (sent > 0) {
        let bytes = 0;
        for (let k = i; k < i + sent; k++) bytes += lengths[k]!;
        c.datagramsOut += sent;
        c.bytesOut += bytes;
        i += sent;
        if (retried !== undefined) {
          // Without it, the datagram went: the address was at fault, not the destination.
          this.#forgetLocal(retried, i, n);
          retried = undefined;
        }
        continue;
      }
      const e = sent < 0 ? libc.errno() : EAGAIN;
      if (e === EINTR) continue;
      if (e === EAGAIN) {
        c.sendDropped += n - i;
        return false;
      }
      const local = this.#recordLocals[i];
      if (local !== undefined && retried === undefined && REFUSED_SOURCE.has(e)) {
        // Perhaps the local address has gone from the host: send once more, from the kernel's choice.
        this.#recordLocals[i] = undefined;
        this.#hdrWords[i * (recordSize >> 2) + this.#controllenWord] = 0;
        retried = local;
        continue;
      }
      retried = undefined; // refused without it too: the destination is at fault (no route, ...)
      // The first remaining datagram was refused (no route, EACCES for a broadcast, EMSGSIZE, ...).
      c.sendErrors++;
      this.#lastSendErrno = e;
      i++;
    }
    return true;
  }

  /** Grows the send records and arena for a batch (never shrinks them). */
  #reserve(datagrams: readonly Datagram[]): void {
    const n = Math.min(datagrams.length, SEND_VLEN_MAX);
    if (n > this.#vlen) {
      let vlen = this.#vlen;
      while (vlen < n) vlen *= 2;
      this.#growRecords(Math.min(vlen, SEND_VLEN_MAX));
    }
    if (this.#arena.length < SEND_ARENA_MAX) {
      let bytes = 0;
      for (const d of datagrams) bytes += d.data.byteLength;
      let size = this.#arena.length;
      while (size < bytes && size < SEND_ARENA_MAX) size *= 2;
      if (size > this.#arena.length) this.#growArena(Math.min(size, SEND_ARENA_MAX));
    }
  }

  #growRecords(vlen: number): void {
    const libc = this.#libc;
    const { MMSGHDR, IOVEC } = libc;
    const hdrs = new ArrayBuffer(vlen * MMSGHDR.size);
    const iovs = new ArrayBuffer(vlen * IOVEC.size);
    const names = new ArrayBuffer(vlen * SOCKADDR_SLOT);
    const controlSpace = this.#controlSpace;
    const controls = new ArrayBuffer(vlen * controlSpace);
    const controlWords = new Uint32Array(controls);
    const hdrView = new DataView(hdrs);
    const nameView = new DataView(names);
    const iovsAt = libc.address(new Uint8Array(iovs));
    const namesAt = libc.address(new Uint8Array(names));
    const controlsAt = libc.address(new Uint8Array(controls));
    const setWord = (view: DataView, offset: number, value: bigint): void => {
      if (libc.POINTER_SIZE === 8) view.setBigUint64(offset, value, LITTLE_ENDIAN);
      else view.setUint32(offset, Number(value), LITTLE_ENDIAN);
    };
    const family = this.#v6 ? libc.AF_INET6 : libc.AF_INET;
    const namelen = this.#v6 ? libc.SOCKADDR_IN6_SIZE : libc.SOCKADDR_IN_SIZE;
    for (let i = 0; i < vlen; i++) {
      const h = i * MMSGHDR.size;
      setWord(hdrView, h + MMSGHDR.name, namesAt + BigInt(i * SOCKADDR_SLOT));
      hdrView.setUint32(h + MMSGHDR.namelen, namelen, LITTLE_ENDIAN);
      setWord(hdrView, h + MMSGHDR.iov, iovsAt + BigInt(i * IOVEC.size));
      setWord(hdrView, h + MMSGHDR.iovlen, 1n);
      nameView.setUint16(i * SOCKADDR_SLOT, family, LITTLE_ENDIAN);
      // msg_controllen stays 0 until a datagram carries a local address.
      setWord(hdrView, h + MMSGHDR.control, controlsAt + BigInt(i * controlSpace));
      this.#pktinfo.writeHeader(controlWords, i * controlSpace, this.#v6);
    }
    this.#vlen = vlen;
    this.#hdrs = new Uint8Array(hdrs);
    this.#hdrWords = new Uint32Array(hdrs);
    this.#controlWords = controlWords;
    this.#recordLocals = new Array<string | undefined>(vlen).fill(undefined);
    this.#iovWords = new Uint32Array(iovs);
    this.#nameBytes = new Uint8Array(names);
    this.#nameWords = new Uint32Array(names);
    this.#lengths = new Uint32Array(vlen);
  }

  #growArena(size: number): void {
    const arena = new Uint8Array(new ArrayBuffer(size));
    const at = this.#libc.address(arena);
    this.#arena = arena;
    this.#arenaLo = Number(at & 0xffffffffn);
    this.#arenaHi = Number(at >> 32n);
  }

  /**
   * The datagrams of the reader's first `count` slots, as views into the slots (no copy; the receive callback
   * may use them until it returns); truncated ones are counted and left out.
   */
  #borrow(reader: UdpBatchReader, count: number): Datagram[] {
    const sources = this.#sources;
    const words = this.#sourceWords;
    const gone = this.#goneLocals;
    const datagrams: Datagram[] = [];
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      if (reader.truncated(i)) {
        this.#counters.truncatedIn++;
        continue;
      }
      const data = reader.payload(i);
      const scope = reader.source(i, words, 0);
      reader.local(i, words, 4);
      const endpoint = sources.get(words, 0, reader.port(i), scope, words, 4);
      if (gone.size > 0) this.#revive(endpoint.local);
      datagrams.push({ data, endpoint });
      bytes += data.length;
    }
    this.#countBatch(datagrams.length, bytes);
    return datagrams;
  }

  #countBatch(datagrams: number, bytes: number): void {
    const c = this.#counters;
    c.batchesIn++;
    c.datagramsIn += datagrams;
    c.bytesIn += bytes;
  }

  #unpack(buffer: ArrayBuffer, count: number): Datagram[] {
    const layout = batchLayout(count);
    const lengths = new Uint32Array(buffer, layout.lengths, count);
    const scopes = new Uint32Array(buffer, layout.scopes, count);
    const words = new Uint32Array(buffer, layout.addresses, count * 4);
    const locals = new Uint32Array(buffer, layout.locals, count * 4);
    const ports = new Uint16Array(buffer, layout.ports, count);
    const sources = this.#sources;
    const gone = this.#goneLocals;
    const datagrams = new Array<Datagram>(count);
    let offset = layout.payloads;
    for (let i = 0; i < count; i++) {
      const length = lengths[i]!;
      const endpoint = sources.get(words, i * 4, ports[i]!, scopes[i]!, locals, i * 4);
      if (gone.size > 0) this.#revive(endpoint.local);
      datagrams[i] = { data: new Uint8Array(buffer, offset, length), endpoint };
      offset += length;
    }
    this.#countBatch(count, offset - layout.payloads);
    return datagrams;
  }

  #receiveFailed(error: Error): void {
    this.#counters.receiveErrors++;
    this.lastReceiveError = error;
    this.#onError?.(error);
  }
}

/** socket(2), options, bind(2) and getsockname(2); closes the socket if any step fails. */
function openSocket(
  libc: LibcModule,
  family: number,
  address: string,
  port: number,
  context: string,
): { fd: number; port: number } {
  const fd = libc.socket(family, libc.SOCK_DGRAM | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC, 0);
  if (fd < 0) throw libc.systemError('socket', libc.errno(), context);
  try {
    const int = new Int32Array(1);
    if (family === libc.AF_INET6) {
      int[0] = 0; // dual stack: IPv4 peers as v4-mapped addresses
      if (libc.setsockopt(fd, libc.IPPROTO_IPV6, libc.IPV6_V6ONLY, int, 4) < 0) {
        throw libc.systemError('setsockopt(IPV6_V6ONLY)', libc.errno(), context);
      }
    }
    // Each datagram's local address, to answer from it (pktinfo.ts). Without it (never seen on Linux) the
    // kernel picks the source of every reply, as with node:dgram.
    int[0] = 1;
    if (family === libc.AF_INET6) libc.setsockopt(fd, libc.IPPROTO_IPV6, libc.IPV6_RECVPKTINFO, int, 4);
    else libc.setsockopt(fd, libc.IPPROTO_IP, libc.IP_PKTINFO, int, 4);
    // Best effort: the forced sizes need CAP_NET_ADMIN; the plain ones are capped by the sysctls.
    int[0] = SOCKET_BUFFER_BYTES;
    for (const [force, plain] of [
      [libc.SO_RCVBUFFORCE, libc.SO_RCVBUF],
      [libc.SO_SNDBUFFORCE, libc.SO_SNDBUF],
    ] as const) {
      if (libc.setsockopt(fd, libc.SOL_SOCKET, force, int, 4) < 0) {
        libc.setsockopt(fd, libc.SOL_SOCKET, plain, int, 4);
      }
    }

    const sockaddr = new Uint8Array(SOCKADDR_SLOT);
    const view = new DataView(sockaddr.buffer);
    const parsed = parseAddress(address.split('%')[0] ?? '');
    if (!parsed.ok) throw new Error(`${context}: ${parsed.error}`);
    let addrlen: number;
    view.setUint16(0, family, LITTLE_ENDIAN);
    view.setUint16(2, port, false);
    if (family === libc.AF_INET6) {
      const bytes = parsed.value.bytes;
      if (parsed.value.family === 4) sockaddr.set([0xff, 0xff, ...bytes], 18);
      else sockaddr.set(bytes, 8);
      const zone = address.includes('%') ? address.slice(address.indexOf('%') + 1) : '';
      if (zone !== '') {
        const scope = /^\d+$/.test(zone) ? Number(zone) : libc.ifNameToIndex(zone);
        if (scope === 0) throw new Error(`${context}: no interface ${JSON.stringify(zone)}`);
        view.setUint32(24, scope, LITTLE_ENDIAN);
      }
      addrlen = libc.SOCKADDR_IN6_SIZE;
    } else {
      sockaddr.set(parsed.value.bytes, 4);
      addrlen = libc.SOCKADDR_IN_SIZE;
    }
    if (libc.bind(fd, sockaddr, addrlen) < 0) {
      const e = libc.errno();
      throw libc.systemError('bind', e, context, bindHint(e, port, address));
    }

    const name = new Uint8Array(SOCKADDR_SLOT);
    const namelen = Uint32Array.of(name.length);
    if (libc.getsockname(fd, name, namelen) < 0) throw libc.systemError('getsockname', libc.errno(), context);
    return { fd, port: (name[2]! << 8) | name[3]! };
  } catch (error) {
    libc.close(fd);
    throw error;
  }
}

function bindHint(e: number, port: number, address: string): string {
  if (e === EADDRINUSE) return `UDP port ${port} is in use`;
  if (e === EACCES) return `UDP ports below 1024 need CAP_NET_BIND_SERVICE (root)`;
  if (e === EADDRNOTAVAIL) return `${address} is not an address of this host`;
  return '';
}
