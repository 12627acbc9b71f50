/**
 * The gateway's main thread runs with a bounded young generation (V8's new space).
 *
 * Why: V8 lets each of the two semi-spaces grow to 16 MB once more than their size has survived scavenges
 * since the last growth, and keeps them: installing 10,000 members (a full reconcile, or catching up with a
 * bulk apply through the change feed) is such a burst, and left 32 MB of new space resident in each gateway
 * for good, a sixth of its RSS. Bounded at SEMI_SPACE_MB, the new space stays at 8 MB.
 *
 * Why it is safe: a scavenge costs in proportion to what survives it, not to the space's size. The data
 * plane's allocations (views, actions, per-batch arrays) die young whatever the size, so smaller semi-spaces
 * mean more scavenges of the same tiny survivor set; long-lived state (members, sessions) is promoted to the
 * old generation after two scavenges either way. docs/scale-out.md has the throughput and CPU measured
 * with and without the bound.
 *
 * How: V8 reads the bound only from its command line, before the heap exists. `weft server run` started
 * without it replaces itself (execv(3): same PID, same arguments and environment, so service managers and
 * scripts see one process) with the same command and the flag. An operator's own
 * `--max-semi-space-size` (on node's command line or in NODE_OPTIONS) is left alone.
 */
import * as libc from '../io/libc.js';

/** Each semi-space's bound, in MB (V8's default grows to 16 on 64-bit). */
export const SEMI_SPACE_MB = 4;
const FLAG = '--max-semi-space-size';

/**
 * The argument vector to run this process again with the bound, or null when the bound (or an operator's own
 * choice) is already in effect.
 */
export function boundedYoungGenerationArgv(
  execPath: string,
  execArgv: readonly string[],
  argv: readonly string[],
  nodeOptions: string | undefined,
): string[] | null {
  const given = (a: string): boolean => a === FLAG || a.startsWith(`${FLAG}=`);
  if (execArgv.some(given)) return null;
  if ((nodeOptions ?? '').split(/\s+/).some(given)) return null;
  return [execPath, ...execArgv, `${FLAG}=${SEMI_SPACE_MB}`, ...argv.slice(1)];
}

/**
 * Runs this process again with the bound unless it is in effect; returns only if it is, or if execv failed
 * (then the gateway runs with V8's default and says so on stderr). Call it before any thread or descriptor of
 * ours exists.
 */
export function ensureBoundedYoungGeneration(): void {
  if (process.platform !== 'linux') return;
  const next = boundedYoungGenerationArgv(
    process.execPath,
    process.execArgv,
    process.argv,
    process.env['NODE_OPTIONS'],
  );
  if (next === null) return;
  // node marks its standard descriptors close-on-exec; the new image needs them open.
  for (const fd of [0, 1, 2]) {
    const flags = libc.getDescriptorFlags(fd);
    if (flags >= 0 && (flags & libc.FD_CLOEXEC) !== 0) libc.setDescriptorFlags(fd, flags & ~libc.FD_CLOEXEC);
  }
  libc.execv(process.execPath, next);
  process.stderr.write(
    `weft: could not restart with ${FLAG}=${SEMI_SPACE_MB} (${libc.systemError('execv', libc.errno(), process.execPath).message}); running without it\n`,
  );
}
