/**
 * The state a reader worker (TUN or UDP) shares with the main thread, kept free of FFI imports so the main
 * side can use it without loading koffi.
 *
 * Backpressure: a worker may have at most MAX_BATCHES_IN_FLIGHT batches posted and not yet processed by the
 * main thread. Without the limit, a main thread slower than the link would let the message queue between
 * the threads grow without bound (latency and memory with it); with it, the kernel's own queue absorbs
 * bursts and drops beyond its size, which TCP reads as the congestion signal it is.
 *
 * Shared state, one SharedArrayBuffer of READER_STATE_BYTES: Int32 [0] stop flag, [1] batches in flight.
 */
export const READER_STATE_BYTES = 8;
export const STOP = 0;
export const IN_FLIGHT = 1;
export const MAX_BATCHES_IN_FLIGHT = 4;

/** Main thread: a posted batch has been processed. */
export function batchDone(state: Int32Array): void {
  Atomics.sub(state, IN_FLIGHT, 1);
  Atomics.notify(state, IN_FLIGHT);
}

/** Main thread: asks the worker to stop, waking it wherever it waits. */
export function stopReader(state: Int32Array): void {
  Atomics.store(state, STOP, 1);
  Atomics.notify(state, STOP);
  Atomics.notify(state, IN_FLIGHT);
}
