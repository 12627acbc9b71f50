/**
 * The read side of LinuxTun (tun-linux.ts), run in a worker thread so that blocking in poll(2) and the read(2)
 * loop never stall the main event loop. The file descriptor is shared: threads of one process share the fd
 * table, so the main thread passes the number and keeps ownership (it closes the fd only after this worker
 * has exited).
 *
 *   1. poll([fd], POLLIN, pollTimeoutMs); then look at the stop flag (a SharedArrayBuffer the main thread sets
 *      in close()), so a stop request is seen within one poll timeout.
 *   2. read(2) packet after packet (one packet per read on a TUN fd) into one preallocated buffer, until
 *      EAGAIN (the fd is O_NONBLOCK) or a batch limit (maxPackets, or maxBytes of packet data). Every read is
 *      offered at least MAX_PACKET bytes of room, so the kernel never truncates a packet.
 *   3. Copy the batch into one right-sized ArrayBuffer laid out as [u32 length × count][packets back to back]
 *      (one memcpy of the bytes actually read) and transfer it to the main thread: one message per batch.
 *   4. A batch ended by a limit goes straight back to 2 (more is probably queued); one ended by EAGAIN to 1.
 * Errors other than EAGAIN/EINTR are reported as messages; a transient one (ENOMEM, ENOBUFS) pauses the loop
 * for one poll timeout, any other ends it.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import * as libc from './libc.js';
import { ReadyWaiter, type ReaderErrorMessage } from './reader-wait.js';
import { TunBatchReader } from './tun-batch.js';

/** workerData for this worker. */
export interface TunReaderConfig {
  fd: number;
  /** Int32 at index 0: 0 = run, 1 = stop. */
  stop: SharedArrayBuffer;
  pollTimeoutMs: number;
  maxPackets: number;
  maxBytes: number;
  /** Frames carry a virtio-net header and may be TSO super-packets: segment them (offload.ts). */
  offload: boolean;
}

/** Messages to the main thread. */
export type TunReaderMessage =
  | {
      type: 'batch';
      /** [u32 length × count][packet bytes], native byte order; transferred. */
      buffer: ArrayBuffer;
      count: number;
    }
  | ReaderErrorMessage
  /** Frames that could not be segmented (counted as read errors). */
  | { type: 'dropped'; count: number };

function run(
  config: TunReaderConfig,
  post: (message: TunReaderMessage, transfer?: ArrayBuffer[]) => void,
): void {
  const waiter = new ReadyWaiter(config.fd, config.stop, config.pollTimeoutMs, post);
  const reader = new TunBatchReader(config.fd, config.maxPackets, config.maxBytes, config.offload);

  let drainNext = false;
  while (!waiter.stopped()) {
    if (!drainNext) {
      const state = waiter.wait();
      if (state === 'stop') return;
      if (state === 'idle') continue;
    }
    if (!waiter.awaitCredit()) return;
    // A hang-up or error condition (POLLERR: the device was detached) makes read() fail with the precise
    // errno, reported below.
    const batch = reader.read();
    if (batch.dropped > 0) post({ type: 'dropped', count: batch.dropped });
    if (batch.buffer) {
      waiter.posted();
      post({ type: 'batch', buffer: batch.buffer, count: batch.count }, [batch.buffer]);
    }
    drainNext = batch.end === 'limit';
    if (batch.end === 'limit') continue;
    if (batch.end === 'empty') {
      if (batch.count === 0 && waiter.deadAfterEmptyRead()) return;
      continue;
    }
    if (!waiter.fail('read', batch.end.errno)) return;
  }
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  libc.assertGenericLinuxAbi();
  run(workerData as TunReaderConfig, (message, transfer) => port.postMessage(message, transfer));
}
