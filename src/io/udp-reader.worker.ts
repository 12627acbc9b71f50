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
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import * as libc from './libc.js';
import { ReadyWaiter, type ReaderErrorMessage } from './reader-wait.js';
import { SEND_ERRORS, UdpBatchReader } from './udp-batch.js';

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

function run(
  config: UdpReaderConfig,
  post: (message: UdpReaderMessage, transfer?: ArrayBuffer[]) => void,
): void {
  const waiter = new ReadyWaiter(config.fd, config.stop, config.pollTimeoutMs, post);
  const reader = new UdpBatchReader(
    libc,
    config.fd,
    config.family,
    config.maxDatagrams,
    config.maxDatagramSize,
  );

  let drainNext = false;
  while (!waiter.stopped()) {
    if (!drainNext) {
      const state = waiter.wait();
      if (state === 'stop') return;
      if (state === 'idle') continue;
    }
    if (!waiter.awaitCredit()) return;
    const r = reader.read();
    drainNext = false;
    switch (r.type) {
      case 'batch':
        if (r.count === 0 && r.truncated === 0) break;
        waiter.posted();
        post({ type: 'batch', buffer: r.buffer, count: r.count, truncated: r.truncated }, [r.buffer]);
        drainNext = r.count + r.truncated === reader.maxDatagrams;
        break;
      case 'closed':
        return; // shut down (by close(), which also raised the stop flag)
      case 'empty':
        if (waiter.deadAfterEmptyRead()) return;
        break;
      case 'error':
        if (SEND_ERRORS.has(r.errno)) {
          post({ type: 'error', syscall: 'recvmmsg', errno: r.errno, fatal: false });
          drainNext = true;
        } else if (!waiter.fail('recvmmsg', r.errno)) {
          return;
        }
    }
  }
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  libc.assertGenericLinuxAbi();
  run(workerData as UdpReaderConfig, (message, transfer) => port.postMessage(message, transfer));
}
