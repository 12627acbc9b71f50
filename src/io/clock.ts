/** The shell's clock: epoch milliseconds that never go backwards (wall time at start + monotonic time). */
import { performance } from 'node:perf_hooks';

export type Clock = () => number;

export const monotonicEpochMs: Clock = () => performance.timeOrigin + performance.now();
