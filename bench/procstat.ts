/**
 * What the tunnel processes cost, read from /proc: CPU time (utime + stime of /proc/PID/stat, which already sums
 * every thread of the process, including worker threads that have exited) and memory (VmHWM / VmRSS of
 * /proc/PID/status). Child processes of a tunnel process count as part of it.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

let clockTicks: number | undefined;

/** Clock ticks per second (USER_HZ), for the /proc/PID/stat times. */
export function clkTck(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

interface StatFields {
  ppid: number;
  /** utime + stime, in clock ticks. */
  ticks: number;
}

function readStat(pid: number): StatFields | undefined {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)" start with the state (field 3); ppid is field 4, utime 14, stime 15.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(fields[1]);
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    if (![ppid, utime, stime].every(Number.isFinite)) return undefined;
    return { ppid, ticks: utime + stime };
  } catch {
    return undefined; // gone
  }
}

/** The process and all its descendants that are alive now. */
export function withDescendants(pids: readonly number[]): number[] {
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (!stat) continue;
    const list = children.get(stat.ppid) ?? [];
    list.push(Number(entry));
    children.set(stat.ppid, list);
  }
  const out = new Set<number>();
  const queue = [...pids];
  while (queue.length > 0) {
    const pid = queue.pop() as number;
    if (out.has(pid)) continue;
    out.add(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return [...out];
}

/** A CPU snapshot: clock ticks per pid (tunnel processes and their descendants). */
export type CpuSnapshot = Map<number, number>;

export function cpuSnapshot(pids: readonly number[]): CpuSnapshot {
  const snapshot: CpuSnapshot = new Map();
  for (const pid of withDescendants(pids)) {
    const stat = readStat(pid);
    if (stat) snapshot.set(pid, stat.ticks);
  }
  return snapshot;
}

/** CPU seconds spent between two snapshots (processes that appeared in between count from zero). */
export function cpuSecondsBetween(before: CpuSnapshot, after: CpuSnapshot): number {
  let ticks = 0;
  for (const [pid, t] of after) ticks += t - (before.get(pid) ?? 0);
  return Math.max(0, ticks) / clkTck();
}

export interface MemoryUse {
  /** Peak resident set size (VmHWM), bytes. */
  peakRss: number;
  /** Current resident set size (VmRSS), bytes. */
  rss: number;
}

/** VmHWM and VmRSS of one process; undefined if it is gone. */
export function memoryOf(pid: number): MemoryUse | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = (key: string): number => {
    const match = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
    return match ? Number(match[1]) * 1024 : 0;
  };
  return { peakRss: kb('VmHWM'), rss: kb('VmRSS') };
}

/** The command name of a process (comm), for labels. */
export function commOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}
