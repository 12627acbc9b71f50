/**
 * The receive side of LinuxUdpBind (udp-linux.ts), run in a worker thread so that blocking in poll(2) and the
 * recvmmsg(2) loop never stall the main event loop. The socket is shared: threads of one process share the fd
 * table, so the main thread passes the number and keeps ownership (it closes the fd only after this worker has
 * exited).
 *
 *   1. poll([fd], POLLIN, pollTimeoutMs); then look at the stop flag (a SharedArrayBuffer the main thread sets
 *      in close()), so a stop request is seen within one poll timeout.
 *   2. recvmmsg(fd, maxDatagrams, MSG_DONTWAIT) into preallocated slots: one struct mmsghdr, iovec,
 *      sockaddr_in6 and maxDatagramSize-byte buffer per datagram, whose pointers are written once here.
 *   3. Copy what arrived into one right-sized ArrayBuffer (see the layout below) and transfer it to the main
 *      thread: one message per recvmmsg call.
 *   4. A full call (maxDatagrams datagrams) goes straight back to 2, as more is probably queued; a shorter one
 *      means the queue was empty (the socket is non-blocking), so back to 1.
 *   5. close() raises the stop flag and then shuts the socket down, which wakes poll at once.
 *      (recvmmsg returns 0 on a socket shut down for reading: the loop ends.)
 * Errors other than EAGAIN/EINTR are reported as messages. A transient one (ENOMEM, ENOBUFS) pauses the loop
 * for one poll timeout; one caused by an earlier send (an ICMP error queued on the socket: ECONNREFUSED,
 * EHOSTUNREACH, ...) is reported and the loop goes on; any other ends it.
 */
import { constants as osConstants, endianness } from 'node:os';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import * as libc from './libc.js';
import { ReadyWaiter, type ReaderErrorMessage } from './reader-wait.js';
import { batchLayout, SOCKADDR_SLOT } from './udp-linux.js';

/** workerData for this worker. */
export interface UdpReaderConfig {
  fd: number;
  /** The socket's address family: AF_INET6 (sources may be v4-mapped) or AF_INET. */
  family: number;
  /** Int32 at index 0: 0 = run, 1 = stop. */
  stop: SharedArrayBuffer;
  pollTimeoutMs: number;
  /** Datagrams per recvmmsg call, hence per batch (at most UIO_MAXIOV, 1024). */
  maxDatagrams: number;
  /** Room per datagram; a larger one is cut short by the kernel (MSG_TRUNC), then dropped and counted. */
  maxDatagramSize: number;
}

/** Messages to the main thread. A batch buffer is laid out as `batchLayout(count)` (udp-linux.ts) describes. */
export type UdpReaderMessage =
  | {
      type: 'batch';
      /** Transferred. */
      buffer: ArrayBuffer;
      count: number;
      /** Datagrams dropped from this batch because they were longer than maxDatagramSize. */
      truncated: number;
    }
  | ReaderErrorMessage;

const { EAGAIN, EINTR, ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ENETDOWN } = osConstants.errno;
/** Linux's EHOSTDOWN (asm-generic errno.h), which node:os does not list. */
const EHOSTDOWN = 112;
/** Errors a UDP socket can return from recvmsg for an ICMP error about an earlier send (with IP_RECVERR). */
const SEND_ERRORS: ReadonlySet<number> = new Set([
  ECONNREFUSED,
  EHOSTUNREACH,
  ENETUNREACH,
  EHOSTDOWN,
  ENETDOWN,
]);

const LITTLE_ENDIAN = endianness() === 'LE';
/** Bytes 00 00 ff ff (the third word of a v4-mapped address) as a native-endian u32. */
const MAPPED_WORD = LITTLE_ENDIAN ? 0xffff0000 : 0x0000ffff;

/** Writes a pointer or size_t field (native endianness, POINTER_SIZE bytes). */
function setWord(view: DataView, offset: number, value: bigint): void {
  if (libc.POINTER_SIZE === 8) view.setBigUint64(offset, value, LITTLE_ENDIAN);
  else view.setUint32(offset, Number(value), LITTLE_ENDIAN);
}

function run(
  config: UdpReaderConfig,
  post: (message: UdpReaderMessage, transfer?: ArrayBuffer[]) => void,
): void {
  const { fd, family, maxDatagrams, maxDatagramSize } = config;
  const waiter = new ReadyWaiter(fd, config.stop, config.pollTimeoutMs, post);

  // The slots. Payload slots are a multiple of 64 bytes apart plus 64, so that their starts do not all fall on
  // the same cache sets (a power-of-two stride would).
  const stride = Math.ceil(maxDatagramSize / 64) * 64 + 64;
  const { MMSGHDR, IOVEC } = libc;
  const hdrs = new ArrayBuffer(maxDatagrams * MMSGHDR.size);
  const iovs = new ArrayBuffer(maxDatagrams * IOVEC.size);
  const names = new ArrayBuffer(maxDatagrams * SOCKADDR_SLOT);
  const data = new ArrayBuffer(maxDatagrams * stride);
  const hdrBytes = new Uint8Array(hdrs);
  const hdrWords = new Uint32Array(hdrs);
  const hdrView = new DataView(hdrs);
  const iovView = new DataView(iovs);
  const iovsAt = libc.address(new Uint8Array(iovs));
  const namesAt = libc.address(new Uint8Array(names));
  const dataAt = libc.address(new Uint8Array(data));
  for (let i = 0; i < maxDatagrams; i++) {
    const h = i * MMSGHDR.size;
    setWord(hdrView, h + MMSGHDR.name, namesAt + BigInt(i * SOCKADDR_SLOT));
    setWord(hdrView, h + MMSGHDR.iov, iovsAt + BigInt(i * IOVEC.size));
    setWord(hdrView, h + MMSGHDR.iovlen, 1n);
    setWord(iovView, i * IOVEC.size + IOVEC.base, dataAt + BigInt(i * stride));
    setWord(iovView, i * IOVEC.size + IOVEC.len, BigInt(maxDatagramSize));
  }
  const namelenIndex = (i: number): number => (i * MMSGHDR.size + MMSGHDR.namelen) >> 2;
  const resetNames = (n: number): void => {
    for (let i = 0; i < n; i++) hdrWords[namelenIndex(i)] = libc.SOCKADDR_IN6_SIZE;
  };
  resetNames(maxDatagrams);
  const nameBytes = new Uint8Array(names);
  const nameWords = new Uint32Array(names);
  const dataBytes = new Uint8Array(data);
  const v6 = family === libc.AF_INET6;

  /** Packs the first `n` slots into a batch and posts it. */
  const postBatch = (n: number): void => {
    let kept = 0;
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const h = i * MMSGHDR.size;
      if ((hdrWords[(h + MMSGHDR.flags) >> 2]! & libc.MSG_TRUNC) !== 0) continue;
      kept++;
      bytes += hdrWords[(h + MMSGHDR.len) >> 2]!;
    }
    const truncated = n - kept;
    if (kept === 0) {
      if (truncated > 0) {
        waiter.posted();
        post({ type: 'batch', buffer: new ArrayBuffer(0), count: 0, truncated });
      }
      return;
    }
    const layout = batchLayout(kept);
    const buffer = new ArrayBuffer(layout.payloads + bytes);
    const lengths = new Uint32Array(buffer, layout.lengths, kept);
    const scopes = new Uint32Array(buffer, layout.scopes, kept);
    const addresses = new Uint32Array(buffer, layout.addresses, kept * 4);
    const ports = new Uint16Array(buffer, layout.ports, kept);
    const payloads = new Uint8Array(buffer, layout.payloads);
    let j = 0;
    let offset = 0;
    for (let i = 0; i < n; i++) {
      const h = i * MMSGHDR.size;
      if ((hdrWords[(h + MMSGHDR.flags) >> 2]! & libc.MSG_TRUNC) !== 0) continue;
      const length = hdrWords[(h + MMSGHDR.len) >> 2]!;
      lengths[j] = length;
      // sockaddr_in6 { u16 family; be16 port; be32 flowinfo; u8 addr[16]; u32 scope_id; } or
      // sockaddr_in { u16 family; be16 port; u8 addr[4]; ... }.
      const s = i * SOCKADDR_SLOT;
      ports[j] = (nameBytes[s + 2]! << 8) | nameBytes[s + 3]!;
      const w = s >> 2;
      if (v6) {
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
    waiter.posted();
    post({ type: 'batch', buffer, count: kept, truncated }, [buffer]);
  };

  let drainNext = false;
  while (!waiter.stopped()) {
    if (!drainNext) {
      const state = waiter.wait();
      if (state === 'stop') return;
      if (state === 'idle') continue;
    }

    if (!waiter.awaitCredit()) return;
    const n = libc.recvmmsg(fd, hdrBytes, maxDatagrams, libc.MSG_DONTWAIT);
    if (n > 0) {
      postBatch(n);
      resetNames(n);
      drainNext = n === maxDatagrams;
      continue;
    }
    drainNext = false;
    if (n === 0) return; // shut down (by close(), which also raised the stop flag)
    const e = libc.errno();
    if (e === EINTR) {
      drainNext = true;
      continue;
    }
    if (e === EAGAIN) {
      if (waiter.deadAfterEmptyRead()) return;
      continue;
    }
    if (SEND_ERRORS.has(e)) {
      post({ type: 'error', syscall: 'recvmmsg', errno: e, fatal: false });
      drainNext = true;
      continue;
    }
    if (!waiter.fail('recvmmsg', e)) return;
  }
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  libc.assertGenericLinuxAbi();
  run(workerData as UdpReaderConfig, (message, transfer) => port.postMessage(message, transfer));
}
