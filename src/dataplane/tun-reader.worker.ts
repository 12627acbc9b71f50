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
import { constants as osConstants } from 'node:os';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import * as libc from './libc.js';
import { VNET_HDR_LENGTH, segmentInto } from './offload.js';
import { ReadyWaiter, type ReaderErrorMessage } from './reader-wait.js';

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

/** The largest packet a TUN device can hand us: an IPv4/IPv6 total length is 16 bits. */
export const MAX_PACKET = 65_535;

const { EAGAIN, EINTR } = osConstants.errno;

function run(
  config: TunReaderConfig,
  post: (message: TunReaderMessage, transfer?: ArrayBuffer[]) => void,
): void {
  const { fd, maxPackets, maxBytes } = config;
  const waiter = new ReadyWaiter(fd, config.stop, config.pollTimeoutMs, post);

  // Room for one more maximal frame past the limits, segmented (each segment repeats the headers).
  const data = new Uint8Array(maxBytes + 2 * MAX_PACKET);
  const lengths = new Uint32Array(maxPackets + MAX_PACKET / 512);
  const frame = config.offload ? new Uint8Array(VNET_HDR_LENGTH + MAX_PACKET) : undefined;
  const segmentLengths: number[] = [];
  let dropped = 0;

  let drainNext = false;
  while (!waiter.stopped()) {
    if (!drainNext) {
      const state = waiter.wait();
      if (state === 'stop') return;
      if (state === 'idle') continue;
    }

    if (!waiter.awaitCredit()) return;
    // Read until EAGAIN or a limit. A hang-up or error condition (POLLERR: the device was detached) makes
    // read() fail with the precise errno, reported below.
    let count = 0;
    let used = 0;
    let failure = 0;
    while (count < maxPackets && used < maxBytes) {
      const n = frame
        ? libc.read(fd, frame, frame.length)
        : libc.read(fd, data.subarray(used), data.length - used);
      if (n < 0) {
        const e = libc.errno();
        if (e === EINTR) continue;
        failure = e;
        break;
      }
      if (!frame) {
        lengths[count++] = n;
        used += n;
        continue;
      }
      segmentLengths.length = 0;
      const written = segmentInto(frame.subarray(0, n), data, used, segmentLengths);
      if (written < 0) {
        dropped++;
        continue;
      }
      for (const l of segmentLengths) lengths[count++] = l;
      used += written;
    }
    if (dropped > 0) {
      post({ type: 'dropped', count: dropped });
      dropped = 0;
    }
    if (count > 0) {
      const headerBytes = count * 4;
      const buffer = new ArrayBuffer(headerBytes + used);
      new Uint32Array(buffer, 0, count).set(lengths.subarray(0, count));
      new Uint8Array(buffer, headerBytes).set(data.subarray(0, used));
      waiter.posted();
      post({ type: 'batch', buffer, count }, [buffer]);
    }
    drainNext = failure === 0; // ended by a limit
    if (failure === 0) continue;
    if (failure === EAGAIN) {
      if (count === 0 && waiter.deadAfterEmptyRead()) return;
      continue;
    }
    if (!waiter.fail('read', failure)) return;
  }
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  libc.assertGenericLinuxAbi();
  run(workerData as TunReaderConfig, (message, transfer) => port.postMessage(message, transfer));
}
