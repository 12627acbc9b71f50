/**
 * One recvmmsg(2) call into preallocated slots (one struct mmsghdr, iovec, sockaddr_in6 and payload buffer
 * per datagram, whose pointers are written once), packed into one right-sized ArrayBuffer laid out as
 * `batchLayout` describes. Used by the reader worker and by the main-thread poller alike; libc is passed in
 * so that this module loads no FFI by itself.
 */
import { constants as osConstants, endianness } from 'node:os';
import type * as Libc from './libc.js';

type LibcModule = typeof Libc;

/** Room for one source address: sockaddr_in6 (28 bytes) rounded up to a multiple of 8. */
export const SOCKADDR_SLOT = 32;

/**
 * Byte offsets of the parts of a receive batch holding `count` datagrams, all native byte order:
 *
 *   [u32 length × count][u32 scope id × count][16-byte address × count][u16 port × count][payloads]
 *
 * Every source address is an IPv6 address, IPv4 as v4-mapped (::ffff:a.b.c.d); payloads are back to back.
 */
export function batchLayout(count: number): {
  lengths: number;
  scopes: number;
  addresses: number;
  ports: number;
  payloads: number;
} {
  return { lengths: 0, scopes: 4 * count, addresses: 8 * count, ports: 24 * count, payloads: 26 * count };
}

export type UdpReadResult =
  | { type: 'batch'; buffer: ArrayBuffer; count: number; truncated: number }
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
    const data = new ArrayBuffer(maxDatagrams * stride);
    this.hdrBytes = new Uint8Array(hdrs);
    this.hdrWords = new Uint32Array(hdrs);
    const hdrView = new DataView(hdrs);
    const iovView = new DataView(iovs);
    const iovsAt = libc.address(new Uint8Array(iovs));
    const namesAt = libc.address(new Uint8Array(names));
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
      setWord(iovView, i * IOVEC.size + IOVEC.base, dataAt + BigInt(i * stride));
      setWord(iovView, i * IOVEC.size + IOVEC.len, BigInt(maxDatagramSize));
    }
    this.resetNames(maxDatagrams);
    this.nameBytes = new Uint8Array(names);
    this.nameWords = new Uint32Array(names);
    this.dataBytes = new Uint8Array(data);
  }

  /** One recvmmsg(2) call (non-blocking). */
  read(): UdpReadResult {
    const libc = this.libc;
    for (;;) {
      const n = libc.recvmmsg(this.fd, this.hdrBytes, this.maxDatagrams, libc.MSG_DONTWAIT);
      if (n > 0) {
        const batch = this.pack(n);
        this.resetNames(n);
        return batch;
      }
      if (n === 0) return { type: 'closed' };
      const e = libc.errno();
      if (e === EINTR) continue;
      return e === EAGAIN ? { type: 'empty' } : { type: 'error', errno: e };
    }
  }

  private resetNames(n: number): void {
    const { MMSGHDR } = this.libc;
    for (let i = 0; i < n; i++)
      this.hdrWords[(i * MMSGHDR.size + MMSGHDR.namelen) >> 2] = this.libc.SOCKADDR_IN6_SIZE;
  }

  /** Packs the first `n` slots into a batch, leaving out datagrams the kernel truncated. */
  private pack(n: number): UdpReadResult {
    const { MMSGHDR, MSG_TRUNC } = this.libc;
    const { hdrWords, nameBytes, nameWords, dataBytes, stride } = this;
    let kept = 0;
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const h = i * MMSGHDR.size;
      if ((hdrWords[(h + MMSGHDR.flags) >> 2]! & MSG_TRUNC) !== 0) continue;
      kept++;
      bytes += hdrWords[(h + MMSGHDR.len) >> 2]!;
    }
    const truncated = n - kept;
    const layout = batchLayout(kept);
    const buffer = new ArrayBuffer(kept === 0 ? 0 : layout.payloads + bytes);
    if (kept === 0) return { type: 'batch', buffer, count: 0, truncated };
    const lengths = new Uint32Array(buffer, layout.lengths, kept);
    const scopes = new Uint32Array(buffer, layout.scopes, kept);
    const addresses = new Uint32Array(buffer, layout.addresses, kept * 4);
    const ports = new Uint16Array(buffer, layout.ports, kept);
    const payloads = new Uint8Array(buffer, layout.payloads);
    let j = 0;
    let offset = 0;
    for (let i = 0; i < n; i++) {
      const h = i * MMSGHDR.size;
      if ((hdrWords[(h + MMSGHDR.flags) >> 2]! & MSG_TRUNC) !== 0) continue;
      const length = hdrWords[(h + MMSGHDR.len) >> 2]!;
      lengths[j] = length;
      // sockaddr_in6 { u16 family; be16 port; be32 flowinfo; u8 addr[16]; u32 scope_id; } or
      // sockaddr_in { u16 family; be16 port; u8 addr[4]; ... }.
      const s = i * SOCKADDR_SLOT;
      ports[j] = (nameBytes[s + 2]! << 8) | nameBytes[s + 3]!;
      const w = s >> 2;
      if (this.v6) {
        addresses[j * 4] = nameWords[w + 2]!;
        addresses[j * 4 + 1] = nameWords[w + 3]!;
        addresses[j * 4 + 2] = nameWords[w + 4]!;
        addresses[j * 4 + 3] = nameWords[w + 5]!;
        scopes[j] = nameWords[w + 6]!;
      } else {
        addresses[j * 4] = 0;
        addresses[j * 4 + 1] = 0;
        addresses[j * 4 + 2] = MAPPED_WORD;
        addresses[j * 4 + 3] = nameWords[w + 1]!;
        scopes[j] = 0;
      }
      payloads.set(dataBytes.subarray(i * stride, i * stride + length), offset);
      offset += length;
      j++;
    }
    return { type: 'batch', buffer, count: kept, truncated };
  }
}
