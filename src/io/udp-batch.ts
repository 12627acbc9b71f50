/**
 * One recvmmsg(2) call into preallocated slots (one struct mmsghdr, iovec, sockaddr_in6, control buffer for the
 * local address (pktinfo.ts) and payload buffer per datagram, whose pointers are written once), packed into one
 * right-sized ArrayBuffer laid out as
 * `batchLayout` describes. Used by the reader worker and by the main-thread poller alike; libc is passed in
 * so that this module loads no FFI by itself.
 */
import { constants as osConstants, endianness } from 'node:os';
import type * as Libc from './libc.js';
import { CONTROL_SLOT, PktinfoCodec } from './pktinfo.js';

type LibcModule = typeof Libc;

/** Room for one source address: sockaddr_in6 (28 bytes) rounded up to a multiple of 8. */
export const SOCKADDR_SLOT = 32;

/**
 * Byte offsets of the parts of a receive batch holding `count` datagrams, all native byte order:
 *
 *   [u32 length × count][u32 scope id × count][16-byte source × count][16-byte local × count][u16 port × count]
 *   [payloads]
 *
 * Every address is an IPv6 address, IPv4 as v4-mapped (::ffff:a.b.c.d); a local address of all zeros means the
 * kernel did not say (no control message). Payloads are back to back.
 */
export function batchLayout(count: number): {
  lengths: number;
  scopes: number;
  addresses: number;
  locals: number;
  ports: number;
  payloads: number;
} {
  return {
    lengths: 0,
    scopes: 4 * count,
    addresses: 8 * count,
    locals: 24 * count,
    ports: 40 * count,
    payloads: 42 * count,
  };
}

export type UdpReadResult =
  { type: 'batch'; buffer: ArrayBuffer; count: number; truncated: number } | UdpReceiveEnd;

/** What receive() found: `count` slots filled (truncated ones included), or why none. */
export type UdpReceiveResult = { type: 'slots'; count: number } | UdpReceiveEnd;

type UdpReceiveEnd =
  /** Nothing queued (EAGAIN). */
  | { type: 'empty' }
  /** The socket was shut down for reading. */
  | { type: 'closed' }
  | { type: 'error'; errno: number };

const { EAGAIN, EINTR } = osConstants.errno;
const { ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ENETDOWN } = osConstants.errno;
/** Linux's EHOSTDOWN (asm-generic errno.h), which node:os does not list. */
const EHOSTDOWN = 112;
/** Errors a UDP socket can return from recvmsg for an ICMP error about an earlier send (with IP_RECVERR). */
export const SEND_ERRORS: ReadonlySet<number> = new Set([
  ECONNREFUSED,
  EHOSTUNREACH,
  ENETUNREACH,
  EHOSTDOWN,
  ENETDOWN,
]);

const LITTLE_ENDIAN = endianness() === 'LE';
/** Bytes 00 00 ff ff (the third word of a v4-mapped address) as a native-endian u32. */
const MAPPED_WORD = LITTLE_ENDIAN ? 0xffff0000 : 0x0000ffff;

export class UdpBatchReader {
  private readonly libc: LibcModule;
  private readonly stride: number;
  private readonly hdrBytes: Uint8Array;
  private readonly hdrWords: Uint32Array;
  private readonly nameBytes: Uint8Array;
  private readonly nameWords: Uint32Array;
  private readonly dataBytes: Uint8Array;
  private readonly controlWords: Uint32Array;
  private readonly pktinfo: PktinfoCodec;
  /** Index of the u32 holding msg_controllen's value, relative to the record's first u32. */
  private readonly controllenWord: number;
  private readonly v6: boolean;
  /** The iovec array: the kernel reads it through pointers, so it must live as long as the reader. */
  private readonly iovs: ArrayBuffer;

  constructor(
    libc: LibcModule,
    private readonly fd: number,
    family: number,
    /** Datagrams per recvmmsg call, hence per batch (at most UIO_MAXIOV, 1024). */
    readonly maxDatagrams: number,
    maxDatagramSize: number,
  ) {
    this.libc = libc;
    this.v6 = family === libc.AF_INET6;
    // Payload slots are a multiple of 64 bytes apart plus 64, so that their starts do not all fall on the
    // same cache sets (a power-of-two stride would).
    const stride = Math.ceil(maxDatagramSize / 64) * 64 + 64;
    this.stride = stride;
    const { MMSGHDR, IOVEC } = libc;
    const hdrs = new ArrayBuffer(maxDatagrams * MMSGHDR.size);
    const iovs = new ArrayBuffer(maxDatagrams * IOVEC.size);
    this.iovs = iovs;
    const names = new ArrayBuffer(maxDatagrams * SOCKADDR_SLOT);
    const controls = new ArrayBuffer(maxDatagrams * CONTROL_SLOT);
    const data = new ArrayBuffer(maxDatagrams * stride);
    this.hdrBytes = new Uint8Array(hdrs);
    this.hdrWords = new Uint32Array(hdrs);
    const hdrView = new DataView(hdrs);
    const iovView = new DataView(iovs);
    const iovsAt = libc.address(new Uint8Array(iovs));
    const namesAt = libc.address(new Uint8Array(names));
    const controlsAt = libc.address(new Uint8Array(controls));
    const dataAt = libc.address(new Uint8Array(data));
    /** Writes a pointer or size_t field (native endianness, POINTER_SIZE bytes). */
    const setWord = (view: DataView, offset: number, value: bigint): void => {
      if (libc.POINTER_SIZE === 8) view.setBigUint64(offset, value, LITTLE_ENDIAN);
      else view.setUint32(offset, Number(value), LITTLE_ENDIAN);
    };
    for (let i = 0; i < maxDatagrams; i++) {
      const h = i * MMSGHDR.size;
      setWord(hdrView, h + MMSGHDR.name, namesAt + BigInt(i * SOCKADDR_SLOT));
      setWord(hdrView, h + MMSGHDR.iov, iovsAt + BigInt(i * IOVEC.size));
      setWord(hdrView, h + MMSGHDR.iovlen, 1n);
      setWord(hdrView, h + MMSGHDR.control, controlsAt + BigInt(i * CONTROL_SLOT));
      setWord(iovView, i * IOVEC.size + IOVEC.base, dataAt + BigInt(i * stride));
      setWord(iovView, i * IOVEC.size + IOVEC.len, BigInt(maxDatagramSize));
    }
    this.pktinfo = new PktinfoCodec(libc.CMSGHDR, libc.POINTER_SIZE);
    this.controllenWord = (MMSGHDR.controllen >> 2) + (libc.POINTER_SIZE === 8 && !LITTLE_ENDIAN ? 1 : 0);
    this.controlWords = new Uint32Array(controls);
    this.resetNames(maxDatagrams);
    this.nameBytes = new Uint8Array(names);
    this.nameWords = new Uint32Array(names);
    this.dataBytes = new Uint8Array(data);
  }

  /** Slots filled by the last receive(); their names are reset before the next call. */
  private filled = 0;

  /**
   * One recvmmsg(2) call (non-blocking), leaving the datagrams in the reader's own slots: read them with the
   * slot accessors (payload, length, truncated, source words, port) before the next call, which reuses them.
   */
  receive(): UdpReceiveResult {
    const libc = this.libc;
    this.resetNames(this.filled);
    this.filled = 0;
    for (;;) {
      const n = libc.recvmmsg(this.fd, this.hdrBytes, this.maxDatagrams, libc.MSG_DONTWAIT);
      if (n > 0) {
        this.filled = n;
        return { type: 'slots', count: n };
      }
      if (n === 0) return { type: 'closed' };
      const e = libc.errno();
      if (e === EINTR) continue;
      return e === EAGAIN ? { type: 'empty' } : { type: 'error', errno: e };
    }
  }

  /** One recvmmsg(2) call (non-blocking), copied into a batch of its own (transferable to another thread). */
  read(): UdpReadResult {
    const r = this.receive();
    return r.type === 'slots' ? this.pack(r.count) : r;
  }

  /** Whether the kernel cut slot `i`'s datagram short (it was larger than a slot). */
  truncated(i: number): boolean {
    const { MMSGHDR, MSG_TRUNC } = this.libc;
    return (this.hdrWords[(i * MMSGHDR.size + MMSGHDR.flags) >> 2]! & MSG_TRUNC) !== 0;
  }

  length(i: number): number {
    const { MMSGHDR } = this.libc;
    return this.hdrWords[(i * MMSGHDR.size + MMSGHDR.len) >> 2]!;
  }

  /** Slot `i`'s datagram: a view into the slot, valid until the next receive(). */
  payload(i: number): Uint8Array {
    const at = i * this.stride;
    return this.dataBytes.subarray(at, at + this.length(i));
  }

  port(i: number): number {
    // sockaddr_in6 { u16 family; be16 port; be32 flowinfo; u8 addr[16]; u32 scope_id; } or
    // sockaddr_in { u16 family; be16 port; u8 addr[4]; ... }.
    const s = i * SOCKADDR_SLOT;
    return (this.nameBytes[s + 2]! << 8) | this.nameBytes[s + 3]!;
  }

  /**
   * Slot `i`'s source address as an IPv6 address (IPv4 v4-mapped) in native-endian u32s, written to
   * `into[at .. at+3]`; returns the scope id.
   */
  source(i: number, into: Uint32Array, at: number): number {
    const w = (i * SOCKADDR_SLOT) >> 2;
    const names = this.nameWords;
    if (this.v6) {
      into[at] = names[w + 2]!;
      into[at + 1] = names[w + 3]!;
      into[at + 2] = names[w + 4]!;
      into[at + 3] = names[w + 5]!;
      return names[w + 6]!;
    }
    into[at] = 0;
    into[at + 1] = 0;
    into[at + 2] = MAPPED_WORD;
    into[at + 3] = names[w + 1]!;
    return 0;
  }

  /**
   * Slot `i`'s local address (the destination the peer wrote to, from the IP_PKTINFO / IPV6_PKTINFO control
   * message) as an IPv6 address (IPv4 v4-mapped) in native-endian u32s, written to `into[at .. at+3]`; zeros and
   * false when the kernel gave none.
   */
  local(i: number, into: Uint32Array, at: number): boolean {
    const controllen = this.hdrWords[((i * this.libc.MMSGHDR.size) >> 2) + this.controllenWord]!;
    return this.pktinfo.readLocal(this.controlWords, i * CONTROL_SLOT, controllen, into, at);
  }

  /** Gives the first `n` slots back their full name and control room (the kernel writes the used lengths). */
  private resetNames(n: number): void {
    const { MMSGHDR, SOCKADDR_IN6_SIZE } = this.libc;
    const words = this.hdrWords;
    const controllen = this.controllenWord;
    for (let i = 0; i < n; i++) {
      const h = (i * MMSGHDR.size) >> 2;
      words[h + (MMSGHDR.namelen >> 2)] = SOCKADDR_IN6_SIZE;
      words[h + controllen] = CONTROL_SLOT;
    }
  }

  /** Packs the first `n` slots into a batch, leaving out datagrams the kernel truncated. */
  private pack(n: number): UdpReadResult {
    let kept = 0;
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      if (this.truncated(i)) continue;
      kept++;
      bytes += this.length(i);
    }
    const truncated = n - kept;
    const layout = batchLayout(kept);
    const buffer = new ArrayBuffer(kept === 0 ? 0 : layout.payloads + bytes);
    if (kept === 0) return { type: 'batch', buffer, count: 0, truncated };
    const lengths = new Uint32Array(buffer, layout.lengths, kept);
    const scopes = new Uint32Array(buffer, layout.scopes, kept);
    const addresses = new Uint32Array(buffer, layout.addresses, kept * 4);
    const locals = new Uint32Array(buffer, layout.locals, kept * 4);
    const ports = new Uint16Array(buffer, layout.ports, kept);
    const payloads = new Uint8Array(buffer, layout.payloads);
    let j = 0;
    let offset = 0;
    for (let i = 0; i < n; i++) {
      if (this.truncated(i)) continue;
      const payload = this.payload(i);
      lengths[j] = payload.length;
      ports[j] = this.port(i);
      scopes[j] = this.source(i, addresses, j * 4);
      this.local(i, locals, j * 4);
      payloads.set(payload, offset);
      offset += payload.length;
      j++;
    }
    return { type: 'batch', buffer, count: kept, truncated };
  }
}
