/**
 * Interop test harness: real peers (wireguard-go today; strongSwan, OpenVPN, iperf3 later) in Linux network
 * namespaces that a test creates and removes itself. Needs root. See shared/INTEROP-NOTES.md.
 *
 *   const lab = await Lab.create('wg');         // one per test file; unique prefix such as "wk3x9q"
 *   after(() => lab.cleanup());                  // idempotent; also run from a process 'exit' handler
 *   const a = await lab.netns('a');              // namespace "wk3x9q-a", lo up
 *   const b = await lab.netns('b');
 *   const { aIf } = await lab.veth(a, b, { aAddr: '10.77.0.1/24', bAddr: '10.77.0.2/24' });
 *   await a.exec('ping', ['-c', '1', '-W', '1', '10.77.0.2']);
 *
 * Every interface name a test sees is the real, machine-wide one: build it with `lab.ifname('wg0')`, which adds
 * the lab prefix (wireguard-go's UAPI sockets in /var/run/wireguard are shared by all namespaces).
 *
 * Everything the lab starts carries the environment variable WEFT_LAB=<prefix>; cleanup uses that marker to
 * find strays (e.g. daemons that forked away from us), and Lab.create() reaps the leftovers of labs whose
 * owning process died (state directory /run/weft-interop/<prefix>/).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

/** Where each lab keeps its state: owner identity, key files, pcap files. */
export const LAB_ROOT = '/run/weft-interop';
/** wireguard-go's UAPI socket directory (not per namespace). */
export const WG_RUN_DIR = '/var/run/wireguard';
/** Environment variable set on every process a lab starts. */
export const LAB_ENV = 'WEFT_LAB';
/** Tools the default availability check looks for. */
export const DEFAULT_TOOLS: readonly string[] = ['ip', 'wireguard-go', 'wg', 'tcpdump', 'ping'];

const IFNAMSIZ_MAX = 15;
const DEFAULT_EXEC_TIMEOUT_MS = 10_000;
const DEFAULT_STOP_GRACE_MS = 3_000;
const KILL_WAIT_MS = 2_000;
const RING_CHARS = 16 * 1024;
const CLOSE_WAIT_MS = 200;

// ---------------------------------------------------------------------------------------------------------------
// Availability gate

export type Availability = { ok: true } | { ok: false; reason: string };

/** Whether interop tests can run here: root, /dev/net/tun, and the given tools on PATH. */
export function interopAvailable(tools: readonly string[] = DEFAULT_TOOLS): Availability {
  if (process.platform !== 'linux')
    return { ok: false, reason: `interop tests need Linux (${process.platform})` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'interop tests need root (network namespaces)' };
  if (!fs.existsSync('/dev/net/tun')) return { ok: false, reason: 'interop tests need /dev/net/tun' };
  const missing = tools.filter((tool) => findOnPath(tool) === undefined);
  if (missing.length > 0) {
    return { ok: false, reason: `interop tests need these tools on PATH: ${missing.join(', ')}` };
  }
  return { ok: true };
}

/**
 * For `describe(name, { skip: interopSkip() }, ...)`: a skip reason when interop is unavailable, but always
 * `false` under CI, so that the suite runs and fails loudly (Lab.create throws) instead of skipping silently.
 */
export function interopSkip(tools: readonly string[] = DEFAULT_TOOLS): string | false {
  const availability = interopAvailable(tools);
  if (availability.ok || underCi()) return false;
  return `${availability.reason}; skipped (not under CI)`;
}

/**
 * Inside a test: returns true when interop can run. Otherwise throws under CI (the test fails), or marks the
 * test skipped with the reason and returns false: `if (!requireRoot(t)) return;`.
 */
export function requireRoot(t: TestContext, tools: readonly string[] = DEFAULT_TOOLS): boolean {
  const availability = interopAvailable(tools);
  if (availability.ok) return true;
  if (underCi()) throw new Error(`interop prerequisites missing under CI: ${availability.reason}`);
  t.skip(availability.reason);
  return false;
}

function underCi(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci !== 'false';
}

function findOnPath(tool: string): string | undefined {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = path.join(dir, tool);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Running commands

export interface ExecOptions {
  /** Kill (SIGKILL) the command after this long; default 10 s. */
  timeoutMs?: number;
  /** Resolve with the result instead of throwing on a non-zero exit (timeouts still throw). */
  allowFail?: boolean;
  /** Extra environment variables. */
  env?: Record<string, string>;
}

export interface ExecResult {
  /** Exit code; null when killed by a signal. */
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command in the current (root) namespace with a timeout; throws a descriptive Error on failure. */
export function run(
  cmd: string,
  args: readonly string[] = [],
  options: ExecOptions = {},
): Promise<ExecResult> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
  const commandLine = [cmd, ...args].join(' ');
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      {
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024,
        env: { ...process.env, LC_ALL: 'C', ...options.env },
      },
      (error, stdout, stderr) => {
        if (!error) {
          resolve({ code: 0, stdout, stderr });
          return;
        }
        const { code, killed, signal } = error as NodeJS.ErrnoException & {
          code?: number | string;
          killed?: boolean;
          signal?: NodeJS.Signals | null;
        };
        const exitCode = typeof code === 'number' ? code : null;
        if (typeof code === 'number' && options.allowFail) {
          resolve({ code: exitCode, stdout, stderr });
          return;
        }
        let why: string;
        if (killed && signal === 'SIGKILL') why = `timed out after ${timeoutMs} ms`;
        else if (typeof code === 'number') why = `exited with code ${code}`;
        else if (signal) why = `killed by ${signal}`;
        else why = `could not run: ${error.message}`;
        reject(new Error(`\`${commandLine}\` ${why}${describeOutput(stdout, stderr)}`, { cause: error }));
      },
    );
  });
}

function describeOutput(stdout: string, stderr: string): string {
  const tail = (s: string): string => (s.length > 4000 ? `...${s.slice(-4000)}` : s).trimEnd();
  let text = '';
  if (stderr.trim()) text += `\n--- stderr ---\n${tail(stderr)}`;
  if (stdout.trim()) text += `\n--- stdout ---\n${tail(stdout)}`;
  return text;
}

/** Polls `check` (bounded) until it returns a truthy value, which is returned. */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  { timeoutMs = 5_000, intervalMs = 50 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const detail = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`, { cause: lastError });
    }
    await delay(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Long-running processes

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Keeps the last `max` characters of a stream. */
class RingText {
  private text = '';
  private dropped = 0;
  constructor(private readonly max: number) {}
  push(chunk: string): void {
    this.text += chunk;
    if (this.text.length > this.max) {
      this.dropped += this.text.length - this.max;
      this.text = this.text.slice(-this.max);
    }
  }
  toString(): string {
    return this.dropped > 0 ? `[...${this.dropped} chars dropped...]${this.text}` : this.text;
  }
}

/** A long-running child tracked by its lab: stopped by `stop()` or, at the latest, by `lab.cleanup()`. */
export class ManagedProcess {
  readonly pid: number;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ExitStatus>;
  private readonly out = new RingText(RING_CHARS);
  private readonly err = new RingText(RING_CHARS);
  private status: ExitStatus | undefined;
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly child: ChildProcess,
    /** Human-readable description for messages, e.g. "wireguard-go wk3x9qwga in wk3x9q-a". */
    readonly description: string,
  ) {
    if (child.pid === undefined) throw new Error(`could not start ${description}`);
    this.pid = child.pid;
    child.stdin?.on('error', () => undefined); // a child that never reads its input must not crash us
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => this.onOutput(this.out, chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => this.onOutput(this.err, chunk));
    this.exited = new Promise((resolve) => {
      // Prefer 'close' (all output read, so messages are complete), but do not wait long for it: a forked
      // grandchild may hold the pipes open forever.
      let finalize: (() => void) | undefined;
      child.on('exit', (code, signal) => {
        finalize = (): void => {
          if (this.status) return;
          this.status = { code, signal };
          this.notify();
          resolve(this.status);
        };
        setTimeout(finalize, CLOSE_WAIT_MS);
      });
      child.on('close', () => finalize?.());
      child.on('error', (error) => this.err.push(`\n[spawn error: ${error.message}]\n`));
    });
  }

  get running(): boolean {
    return this.status === undefined;
  }

  /** Exit status, once exited. */
  get exitStatus(): ExitStatus | undefined {
    return this.status;
  }

  /** The last 16 KiB of its stdout / stderr. */
  get stdout(): string {
    return this.out.toString();
  }
  get stderr(): string {
    return this.err.toString();
  }

  /** A description with exit status and output tail, for error messages. */
  describe(): string {
    const state = this.status
      ? `exited (code ${this.status.code}, signal ${this.status.signal})`
      : `running (pid ${this.pid})`;
    return `${this.description}: ${state}${describeOutput(this.stdout, this.stderr)}`;
  }

  /** Writes to its standard input (ignored once it has exited). */
  write(text: string): void {
    if (this.running) this.child.stdin?.write(text);
  }

  /** Sends a signal if it is still running (never signals a reaped, possibly reused pid). */
  kill(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** Waits (bounded) until stdout or stderr matches; rejects if the process exits first or on timeout. */
  waitForOutput(pattern: RegExp, timeoutMs = 5_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${pattern} from ${this.describe()}`));
      }, timeoutMs);
      const check = (): void => {
        if (pattern.test(this.stdout) || pattern.test(this.stderr)) {
          finish();
          resolve();
        } else if (!this.running) {
          finish();
          reject(new Error(`process exited before printing ${pattern}: ${this.describe()}`));
        }
      };
      const finish = (): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit status. Safe to call more than once. */
  async stop(graceMs = DEFAULT_STOP_GRACE_MS): Promise<ExitStatus> {
    if (!this.running) return this.exited;
    this.kill('SIGTERM');
    if (await exitsWithin(this.exited, graceMs)) return this.exited;
    this.kill('SIGKILL');
    if (await exitsWithin(this.exited, KILL_WAIT_MS)) return this.exited;
    throw new Error(`still alive ${KILL_WAIT_MS} ms after SIGKILL: ${this.describe()}`);
  }

  private onOutput(ring: RingText, chunk: string): void {
    ring.push(chunk);
    this.notify();
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

async function exitsWithin(exited: Promise<unknown>, ms: number): Promise<boolean> {
  const controller = new AbortController();
  try {
    return await Promise.race([exited.then(() => true), delay(ms, false, { signal: controller.signal })]);
  } finally {
    controller.abort();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Namespaces

export interface SpawnOptions {
  /** Extra environment variables. */
  env?: Record<string, string>;
}

/** A network namespace created by a lab. */
export class Netns {
  constructor(
    readonly lab: Lab,
    /** Full namespace name, e.g. "wk3x9q-a". */
    readonly name: string,
  ) {}

  /** Runs `ip netns exec NAME cmd args...`; throws a descriptive Error on non-zero exit unless allowFail. */
  async exec(cmd: string, args: readonly string[] = [], options: ExecOptions = {}): Promise<ExecResult> {
    return run('ip', ['netns', 'exec', this.name, cmd, ...args], {
      ...options,
      env: { [LAB_ENV]: this.lab.prefix, ...options.env },
    }).catch((error: Error) => {
      throw new Error(`in netns ${this.name}: ${error.message}`, { cause: error });
    });
  }

  /** Starts a long-running `cmd args...` in the namespace, tracked by the lab. */
  spawn(cmd: string, args: readonly string[] = [], options: SpawnOptions = {}): ManagedProcess {
    return this.lab.spawnIn(this, cmd, args, options);
  }

  /**
   * Sets a sysctl inside the namespace (`net.ipv4.ip_forward`, or the path form `net/ipv4/conf/eth0.5/rp_filter`
   * for names containing dots). Writes /proc/sys from a process in the namespace, so procps is not needed.
   */
  async sysctl(key: string, value: string | number): Promise<void> {
    const file = path.posix.join('/proc/sys', key.includes('/') ? key : key.replaceAll('.', '/'));
    if (!file.startsWith('/proc/sys/')) throw new Error(`bad sysctl key ${JSON.stringify(key)}`);
    await this.exec('sh', ['-c', 'printf "%s\\n" "$1" > "$2"', 'sh', String(value), file]);
  }
}

export interface VethOptions {
  /** Local names (the lab prefix is added); default "<n>a" / "<n>b". */
  aName?: string;
  bName?: string;
  /** IPv4 addresses with prefix length, e.g. "10.77.0.1/24". */
  aAddr?: string;
  bAddr?: string;
  /** IPv6 addresses with prefix length; added with `nodad` so they are usable at once. */
  aAddr6?: string;
  bAddr6?: string;
  mtu?: number;
}

interface ProcIdentity {
  pid: number;
  startTime: string;
}

const liveLabs = new Set<Lab>();
let exitHandlerInstalled = false;

/** One per test file: owns namespaces, processes, interfaces and temp files, and removes them all. */
export class Lab {
  /** Every process this lab started (running or not). */
  readonly processes: ManagedProcess[] = [];
  private readonly namespaces: string[] = [];
  private readonly wgIfaces = new Set<string>();
  private vethCount = 0;
  private fileCount = 0;
  private cleanupPromise: Promise<void> | undefined;

  private constructor(
    /** Unique prefix of every name: kind letter + 5 base36 chars, e.g. "wk3x9q". */
    readonly prefix: string,
    /** Private (0700) state/temp directory, removed by cleanup. */
    readonly dir: string,
  ) {}

  /**
   * Creates a lab with a fresh unique prefix (first letter of `kind` + 5 random base36 chars). Throws when not
   * root or when one of `tools` (default: just `ip`) is missing.
   */
  static async create(kind: string, { tools = ['ip'] }: { tools?: readonly string[] } = {}): Promise<Lab> {
    const availability = interopAvailable(tools);
    if (!availability.ok) throw new Error(`interop prerequisites missing: ${availability.reason}`);
    const letter = kind.toLowerCase().charAt(0);
    if (!/^[a-z]$/.test(letter))
      throw new Error(`Lab kind must start with a letter: ${JSON.stringify(kind)}`);
    installExitHandler();
    reapStaleLabs();
    fs.mkdirSync(LAB_ROOT, { recursive: true, mode: 0o700 });
    const existingNamespaces = new Set(listNamespacesSync());
    for (let attempt = 0; attempt < 20; attempt++) {
      const prefix =
        letter +
        randomInt(36 ** 5)
          .toString(36)
          .padStart(5, '0');
      const dir = path.join(LAB_ROOT, prefix);
      if ([...existingNamespaces].some((ns) => ns.startsWith(`${prefix}-`))) continue;
      if (wgSocketsWithPrefix(prefix).length > 0) continue;
      try {
        fs.mkdirSync(dir, { mode: 0o700 }); // atomic claim of the prefix across processes
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw error;
      }
      const lab = new Lab(prefix, dir);
      liveLabs.add(lab);
      const self = procIdentity(process.pid);
      fs.writeFileSync(path.join(dir, 'owner'), `${self?.pid ?? process.pid} ${self?.startTime ?? ''}\n`);
      return lab;
    }
    throw new Error('could not find an unused lab prefix');
  }

  /** The real interface name for a lab-local one: prefix + local (at most 15 chars in total). */
  ifname(local: string): string {
    const name = this.prefix + local;
    if (!/^[A-Za-z0-9_.-]+$/.test(local) || name.length > IFNAMSIZ_MAX) {
      throw new Error(`bad interface name ${JSON.stringify(name)} (prefix + [A-Za-z0-9_.-], max 15 chars)`);
    }
    return name;
  }

  /** A fresh path inside the lab's private directory (not created). */
  file(name: string): string {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error(`bad file name ${JSON.stringify(name)}`);
    return path.join(this.dir, `${++this.fileCount}-${name}`);
  }

  /** Writes a secret (e.g. a private key) to a new mode-0600 file in the lab directory; returns its path. */
  async writeSecret(name: string, content: string): Promise<string> {
    const file = this.file(name);
    await fsp.writeFile(file, content.endsWith('\n') ? content : `${content}\n`, { mode: 0o600, flag: 'wx' });
    return file;
  }

  /** Creates namespace `${prefix}-${name}` with `lo` up. */
  async netns(name: string): Promise<Netns> {
    this.assertOpen();
    if (!/^[a-z0-9]+$/.test(name)) throw new Error(`bad namespace name ${JSON.stringify(name)} ([a-z0-9]+)`);
    const full = `${this.prefix}-${name}`;
    if (this.namespaces.includes(full)) throw new Error(`namespace ${full} already exists in this lab`);
    this.namespaces.push(full); // track before creating, so a half-done creation is cleaned up too
    await run('ip', ['netns', 'add', full]);
    await run('ip', ['-n', full, 'link', 'set', 'lo', 'up']);
    return new Netns(this, full);
  }

  /** Creates a veth pair between two namespaces, with optional addresses, both ends up. */
  async veth(a: Netns, b: Netns, options: VethOptions = {}): Promise<{ aIf: string; bIf: string }> {
    this.assertOpen();
    const n = this.vethCount++;
    const aIf = this.ifname(options.aName ?? `${n}a`);
    const bIf = this.ifname(options.bName ?? `${n}b`);
    await run('ip', [
      'link',
      'add',
      aIf,
      'netns',
      a.name,
      'type',
      'veth',
      'peer',
      'name',
      bIf,
      'netns',
      b.name,
    ]);
    const ends: [Netns, string, string | undefined, string | undefined][] = [
      [a, aIf, options.aAddr, options.aAddr6],
      [b, bIf, options.bAddr, options.bAddr6],
    ];
    const mtu = options.mtu === undefined ? [] : ['mtu', String(options.mtu)];
    for (const [ns, ifname] of ends) await run('ip', ['-n', ns.name, 'link', 'set', ifname, ...mtu, 'up']);
    // Addresses go on after both ends are up: an IPv6 address added while its link was down does not answer
    // neighbour solicitations for up to ~1 s after the link comes up, even with nodad.
    for (const [ns, ifname, addr4, addr6] of ends) {
      if (addr4) await run('ip', ['-n', ns.name, 'addr', 'add', addr4, 'dev', ifname]);
      if (addr6) await run('ip', ['-n', ns.name, 'addr', 'add', addr6, 'dev', ifname, 'nodad']);
    }
    for (const [ns, ifname] of ends) {
      await waitFor(`${ifname} in ${ns.name} to be up`, async () => {
        const { stdout } = await run('ip', ['-n', ns.name, '-o', 'link', 'show', 'dev', ifname]);
        return / state UP /.test(stdout);
      });
    }
    return { aIf, bIf };
  }

  /** Records a wireguard-go interface so cleanup removes its UAPI socket. */
  registerWgInterface(ifname: string): void {
    if (!ifname.startsWith(this.prefix))
      throw new Error(`${ifname} is not a lab interface name (lab.ifname())`);
    this.wgIfaces.add(ifname);
  }

  /** @internal Used by Netns.spawn. */
  spawnIn(ns: Netns, cmd: string, args: readonly string[], options: SpawnOptions): ManagedProcess {
    this.assertOpen();
    const child = spawn('ip', ['netns', 'exec', ns.name, cmd, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C', [LAB_ENV]: this.prefix, ...options.env },
    });
    const managed = new ManagedProcess(child, `\`${[cmd, ...args].join(' ')}\` in ${ns.name}`);
    this.processes.push(managed);
    return managed;
  }

  /**
   * Stops every process (SIGTERM, then SIGKILL), kills whatever else runs in the lab's namespaces or carries its
   * marker, deletes the namespaces, removes the UAPI sockets and the lab directory. Idempotent; throws an
   * AggregateError listing what could not be removed.
   */
  cleanup(): Promise<void> {
    this.cleanupPromise ??= this.doCleanup();
    return this.cleanupPromise;
  }

  private async doCleanup(): Promise<void> {
    const errors: unknown[] = [];
    const settled = await Promise.allSettled(this.processes.map((p) => p.stop()));
    for (const result of settled) if (result.status === 'rejected') errors.push(result.reason);

    // Strays: processes in our namespaces, and anything carrying our marker (e.g. forked daemons).
    const strays = new Set(markedPids(this.prefix));
    for (const ns of this.namespaces) {
      const pids = await run('ip', ['netns', 'pids', ns], { allowFail: true }).catch(() => undefined);
      for (const pid of parsePids(pids?.stdout ?? '')) strays.add(pid);
    }
    for (const pid of strays) killQuietly(pid, 'SIGKILL');
    try {
      await waitFor('stray processes to exit', () => [...strays].every(pidGone), {
        timeoutMs: KILL_WAIT_MS,
      });
    } catch (error) {
      errors.push(error);
    }

    for (const ns of this.namespaces) {
      try {
        const result = await run('ip', ['netns', 'del', ns], { allowFail: true });
        if (result.code !== 0 && listNamespacesSync().includes(ns)) {
          errors.push(new Error(`ip netns del ${ns} failed: ${result.stderr.trim()}`));
        }
      } catch (error) {
        errors.push(error);
      }
    }
    for (const ifname of this.wgIfaces) {
      await fsp
        .rm(path.join(WG_RUN_DIR, `${ifname}.sock`), { force: true })
        .catch((e: unknown) => errors.push(e));
    }
    await fsp.rm(this.dir, { recursive: true, force: true }).catch((e: unknown) => errors.push(e));
    liveLabs.delete(this);
    if (errors.length > 0) throw new AggregateError(errors, `lab ${this.prefix}: cleanup incomplete`);
  }

  /** @internal Last-resort synchronous cleanup from the process 'exit' handler. */
  cleanupSync(): void {
    for (const p of this.processes) p.kill('SIGKILL');
    reapSync(this.prefix, this.namespaces, this.wgIfaces);
    liveLabs.delete(this);
  }

  private assertOpen(): void {
    if (this.cleanupPromise) throw new Error(`lab ${this.prefix} has been cleaned up`);
  }
}

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  const reapAll = (): void => {
    for (const lab of [...liveLabs]) {
      try {
        lab.cleanupSync();
      } catch {
        // best effort at exit
      }
    }
  };
  process.on('exit', reapAll);
  // Under `node --test`, the runner turns SIGINT/SIGTERM into process.exit() (so 'exit' fires). When run
  // directly, reap here and then re-raise the signal with its default action.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      reapAll();
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Synchronous reaping (exit handler, leftovers of dead labs)

function listNamespacesSync(): string[] {
  try {
    const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 5_000 });
    return out
      .split('\n')
      .map((line) => line.split(' ')[0] ?? '')
      .filter(Boolean);
  } catch {
    return [];
  }
}

function parsePids(text: string): number[] {
  return text
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number);
}

/** True when the process is gone or a zombie (dead, waiting for its parent, possibly init, to reap it). */
function pidGone(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Pids of processes whose initial environment has WEFT_LAB=<prefix>. */
function markedPids(prefix: string): number[] {
  const marker = Buffer.from(`\0${LAB_ENV}=${prefix}\0`);
  const pids: number[] = [];
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return pids;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const environ = Buffer.concat([Buffer.from([0]), fs.readFileSync(`/proc/${entry}/environ`)]);
      if (environ.includes(marker)) pids.push(Number(entry));
    } catch {
      // exited meanwhile, or a kernel thread
    }
  }
  return pids;
}

function procIdentity(pid: number): ProcIdentity | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": state is field 3, starttime field 22.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const startTime = fields[19];
    return startTime === undefined ? undefined : { pid, startTime };
  } catch {
    return undefined;
  }
}

function reapSync(prefix: string, namespaces: Iterable<string>, wgIfaces: Iterable<string>): void {
  for (const pid of markedPids(prefix)) killQuietly(pid, 'SIGKILL');
  for (const ns of namespaces) {
    try {
      const out = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5_000 });
      for (const pid of parsePids(out)) killQuietly(pid, 'SIGKILL');
    } catch {
      // namespace gone
    }
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5_000 });
    } catch {
      // namespace gone
    }
  }
  for (const ifname of wgIfaces) fs.rmSync(path.join(WG_RUN_DIR, `${ifname}.sock`), { force: true });
  fs.rmSync(path.join(LAB_ROOT, prefix), { recursive: true, force: true });
}

/** Interface names of the UAPI sockets in /var/run/wireguard that start with `prefix`. */
function wgSocketsWithPrefix(prefix: string): string[] {
  try {
    return fs
      .readdirSync(WG_RUN_DIR)
      .filter((f) => f.startsWith(prefix) && f.endsWith('.sock'))
      .map((f) => f.slice(0, -'.sock'.length));
  } catch {
    return []; // no socket directory yet
  }
}

/** Removes what labs whose owning process is gone left behind (namespaces, processes, sockets, files). */
function reapStaleLabs(): void {
  let prefixes: string[];
  try {
    prefixes = fs.readdirSync(LAB_ROOT);
  } catch {
    return;
  }
  for (const prefix of prefixes) {
    if (!/^[a-z][0-9a-z]{5}$/.test(prefix)) continue;
    const dir = path.join(LAB_ROOT, prefix);
    let stale: boolean;
    try {
      const [pid, startTime] = fs.readFileSync(path.join(dir, 'owner'), 'utf8').trim().split(' ');
      const owner = procIdentity(Number(pid));
      stale = owner === undefined || (startTime !== undefined && owner.startTime !== startTime);
    } catch {
      // No owner file yet: a lab being created right now, unless it is old.
      try {
        stale = Date.now() - fs.statSync(dir).mtimeMs > 60_000;
      } catch {
        stale = false;
      }
    }
    if (!stale) continue;
    const namespaces = listNamespacesSync().filter((ns) => ns.startsWith(`${prefix}-`));
    reapSync(prefix, namespaces, wgSocketsWithPrefix(prefix));
    process.stderr.write(`interop harness: removed leftovers of dead lab ${prefix}\n`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// wireguard-go

export interface WgPeerConfig {
  publicKey: string;
  /** "host:port"; IPv6 as "[addr]:port". */
  endpoint?: string;
  allowedIps: readonly string[];
  persistentKeepalive?: number;
  presharedKey?: string;
}

export interface WireguardGoConfig {
  /** Base64 private key. */
  privateKey: string;
  listenPort?: number;
  fwmark?: number;
  /** Interface addresses with prefix length, v4 and/or v6 (v6 added with nodad). */
  addresses?: readonly string[];
  mtu?: number;
  peers?: readonly WgPeerConfig[];
}

export interface WireguardGo {
  readonly ns: Netns;
  readonly ifname: string;
  readonly process: ManagedProcess;
  readonly publicKey: string;
  /** `wg show IFNAME dump`, parsed. */
  dump(): Promise<WgDump>;
  /** Stops wireguard-go (SIGTERM, then SIGKILL) and removes its UAPI socket. */
  stop(): Promise<void>;
}

/**
 * Starts `wireguard-go IFNAME` in the foreground inside `ns` (WG_PROCESS_FOREGROUND=1, so `process.pid` is
 * wireguard-go itself), waits (bounded) for its interface and UAPI socket, then configures it with `wg set`,
 * `ip addr` and `ip link set up`. `ifname` must come from `lab.ifname()`.
 */
export async function startWireguardGo(
  ns: Netns,
  ifname: string,
  config: WireguardGoConfig,
  { startTimeoutMs = 5_000 }: { startTimeoutMs?: number } = {},
): Promise<WireguardGo> {
  ns.lab.registerWgInterface(ifname);
  const socket = path.join(WG_RUN_DIR, `${ifname}.sock`);
  const proc = ns.spawn('wireguard-go', [ifname], {
    env: { WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: 'verbose' },
  });
  const stop = async (): Promise<void> => {
    await proc.stop();
    await fsp.rm(socket, { force: true });
  };
  try {
    await waitFor(
      `wireguard-go ${ifname} UAPI socket`,
      () => {
        if (!proc.running) throw new Error(`wireguard-go exited: ${proc.describe()}`);
        return fs.existsSync(socket);
      },
      { timeoutMs: startTimeoutMs, intervalMs: 20 },
    ).catch((error: Error) => {
      throw new Error(`${error.message}\n${proc.describe()}`, { cause: error });
    });
    await ns.exec('ip', ['link', 'show', 'dev', ifname]);

    const args = ['set', ifname, 'private-key', await ns.lab.writeSecret(`${ifname}.key`, config.privateKey)];
    if (config.listenPort !== undefined) args.push('listen-port', String(config.listenPort));
    if (config.fwmark !== undefined) args.push('fwmark', String(config.fwmark));
    for (const peer of config.peers ?? []) {
      args.push('peer', peer.publicKey);
      if (peer.presharedKey !== undefined) {
        args.push('preshared-key', await ns.lab.writeSecret(`${ifname}.psk`, peer.presharedKey));
      }
      if (peer.endpoint !== undefined) args.push('endpoint', peer.endpoint);
      if (peer.persistentKeepalive !== undefined) {
        args.push('persistent-keepalive', String(peer.persistentKeepalive));
      }
      args.push('allowed-ips', peer.allowedIps.join(','));
    }
    await ns.exec('wg', args);

    // Link up before adding addresses (see Lab.veth).
    const mtu = config.mtu === undefined ? [] : ['mtu', String(config.mtu)];
    await ns.exec('ip', ['link', 'set', 'dev', ifname, ...mtu, 'up']);
    for (const address of config.addresses ?? []) {
      const nodad = address.includes(':') ? ['nodad'] : [];
      await ns.exec('ip', ['addr', 'add', address, 'dev', ifname, ...nodad]);
    }

    const publicKey = (await wgShowDump(ns, ifname)).interface.publicKey;
    if (publicKey === null)
      throw new Error(`wireguard-go ${ifname} reports no public key after configuration`);
    return { ns, ifname, process: proc, publicKey, dump: () => wgShowDump(ns, ifname), stop };
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
}

export interface WgInterfaceDump {
  privateKey: string | null;
  publicKey: string | null;
  listenPort: number;
  /** null when "off". */
  fwmark: number | null;
}

export interface WgPeerDump {
  publicKey: string;
  presharedKey: string | null;
  /** "host:port", or null when unknown. */
  endpoint: string | null;
  allowedIps: string[];
  /** Unix seconds; 0 = never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
  /** Seconds; null when "off". */
  persistentKeepalive: number | null;
}

export interface WgDump {
  interface: WgInterfaceDump;
  peers: WgPeerDump[];
}

/** Runs `wg show IFNAME dump` in `ns` and parses it. */
export async function wgShowDump(ns: Netns, ifname: string): Promise<WgDump> {
  const { stdout } = await ns.exec('wg', ['show', ifname, 'dump']);
  return parseWgDump(stdout);
}

/** Parses the output of `wg show IFNAME dump` (one interface: 4 fields, then one 8-field line per peer). */
export function parseWgDump(text: string): WgDump {
  const lines = text.split('\n').filter((line) => line.length > 0);
  const none = (s: string): string | null => (s === '(none)' ? null : s);
  const off = (s: string): number | null => (s === 'off' ? null : int(s));
  const int = (s: string): number => {
    if (!/^\d+$/.test(s)) throw new Error(`wg dump: expected a number, got ${JSON.stringify(s)}`);
    return Number(s);
  };
  const [first, ...rest] = lines;
  const head = first?.split('\t') ?? [];
  if (head.length !== 4) throw new Error(`wg dump: bad interface line ${JSON.stringify(first)}`);
  const [privateKey, publicKey, listenPort, fwmark] = head as [string, string, string, string];
  const peers = rest.map((line): WgPeerDump => {
    const fields = line.split('\t');
    if (fields.length !== 8) throw new Error(`wg dump: bad peer line ${JSON.stringify(line)}`);
    const [pub, psk, endpoint, allowed, handshake, rx, tx, keepalive] = fields as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    return {
      publicKey: pub,
      presharedKey: none(psk),
      endpoint: none(endpoint),
      allowedIps: allowed === '(none)' ? [] : allowed.split(','),
      latestHandshake: int(handshake),
      rxBytes: int(rx),
      txBytes: int(tx),
      persistentKeepalive: off(keepalive),
    };
  });
  return {
    interface: {
      privateKey: none(privateKey),
      publicKey: none(publicKey),
      listenPort: int(listenPort),
      fwmark: fwmark === 'off' ? null : /^0x[0-9a-f]+$/i.test(fwmark) ? Number(fwmark) : int(fwmark), // wg prints hex
    },
    peers,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Packet capture

export interface Capture {
  /** The pcap file (inside the lab directory). */
  readonly file: string;
  readonly process: ManagedProcess;
  /** Packets written so far. */
  count(): Promise<number>;
  /**
   * Waits `settleMs` (default 100) so that packets already on the wire reach the file, stops tcpdump, and
   * returns the number of packets captured. (On SIGTERM tcpdump breaks out of its loop at once: packets still
   * queued in the kernel buffer at that moment are lost, hence the settle time.)
   */
  stop(options?: { settleMs?: number }): Promise<number>;
}

/**
 * Starts `tcpdump -i IFACE -U -w FILE FILTER` in `ns` and resolves once tcpdump is capturing (its "listening on"
 * line). Immediate mode, so that packets reach the file without waiting for a kernel buffer block to fill.
 */
export async function capture(
  ns: Netns,
  iface: string,
  bpfFilter = '',
  { startTimeoutMs = 5_000 }: { startTimeoutMs?: number } = {},
): Promise<Capture> {
  const file = ns.lab.file(`${iface}.pcap`);
  const args = ['-i', iface, '-n', '-U', '--immediate-mode', '-Z', 'root', '-w', file];
  if (bpfFilter) args.push(bpfFilter);
  const proc = ns.spawn('tcpdump', args);
  try {
    await proc.waitForOutput(/listening on /, startTimeoutMs);
  } catch (error) {
    await proc.stop().catch(() => undefined);
    throw error;
  }
  const count = async (): Promise<number> => parsePcap(await fsp.readFile(file)).records.length;
  return {
    file,
    process: proc,
    count,
    async stop({ settleMs = 100 }: { settleMs?: number } = {}): Promise<number> {
      if (!proc.running) throw new Error(`tcpdump stopped on its own: ${proc.describe()}`);
      await delay(settleMs);
      await proc.stop();
      return count();
    },
  };
}

export interface PcapRecord {
  /** Timestamp seconds and fraction (micro- or nanoseconds, see `nanosecond`). */
  tsSec: number;
  tsFrac: number;
  originalLength: number;
  data: Buffer;
}

export interface Pcap {
  linkType: number;
  snapLength: number;
  nanosecond: boolean;
  records: PcapRecord[];
  /** True when the file ends inside a record (that record is not in `records`). */
  truncated: boolean;
}

/** Parses a classic pcap file (24-byte global header, 16-byte record headers; either byte order). */
export function parsePcap(buf: Buffer): Pcap {
  if (buf.length < 24) throw new Error(`pcap: file too short for a global header (${buf.length} bytes)`);
  const magics: Record<number, { little: boolean; nanosecond: boolean }> = {
    0xa1b2c3d4: { little: false, nanosecond: false },
    0xd4c3b2a1: { little: true, nanosecond: false },
    0xa1b23c4d: { little: false, nanosecond: true },
    0x4d3cb2a1: { little: true, nanosecond: true },
  };
  const format = magics[buf.readUInt32BE(0)];
  if (!format) throw new Error(`pcap: unknown magic 0x${buf.readUInt32BE(0).toString(16)} (pcapng?)`);
  const u32 = (offset: number): number =>
    format.little ? buf.readUInt32LE(offset) : buf.readUInt32BE(offset);
  const records: PcapRecord[] = [];
  let offset = 24;
  let truncated = false;
  while (offset < buf.length) {
    if (offset + 16 > buf.length) {
      truncated = true;
      break;
    }
    const includedLength = u32(offset + 8);
    const start = offset + 16;
    if (start + includedLength > buf.length) {
      truncated = true;
      break;
    }
    records.push({
      tsSec: u32(offset),
      tsFrac: u32(offset + 4),
      originalLength: u32(offset + 12),
      data: buf.subarray(start, start + includedLength),
    });
    offset = start + includedLength;
  }
  return { linkType: u32(20), snapLength: u32(16), nanosecond: format.nanosecond, records, truncated };
}

// ---------------------------------------------------------------------------------------------------------------
// Helper processes that report JSON lines

/**
 * A lab process that prints one JSON event per line on stdout (`{"ev": ...}`) and takes JSON commands on
 * stdin: the test-side half of the small node helpers the interop tests run inside namespaces.
 */
export class JsonLinesProcess<E extends { ev: string }> {
  constructor(readonly process: ManagedProcess) {}

  /** Every event so far, in order (from the last 16 KiB of output). */
  events(): E[] {
    return this.process.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as E);
  }

  command(cmd: Record<string, unknown>): void {
    this.process.write(`${JSON.stringify(cmd)}\n`);
  }

  /** The first event matching, waiting (bounded) for it; fails early if the process exits or reports an error. */
  waitFor(what: string, match: (e: E) => boolean, timeoutMs = 10_000): Promise<E> {
    return this.waitUntil(what, (events) => events.find(match), timeoutMs);
  }

  /** The `after`-th (0-based) event named `ev`. */
  next(ev: string, after = 0, timeoutMs = 5_000): Promise<E> {
    return this.waitUntil(`${ev} event`, (events) => events.filter((e) => e.ev === ev)[after], timeoutMs);
  }

  private async waitUntil(what: string, pick: (events: E[]) => E | undefined, timeoutMs: number): Promise<E> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const events = this.events();
      const hit = pick(events);
      if (hit) return hit;
      if (events.some((e) => e.ev === 'error') || !this.process.running || Date.now() > deadline) {
        throw new Error(`no ${what} within ${timeoutMs} ms: ${this.process.describe()}`);
      }
      await delay(10);
    }
  }

  /** Sends `cmd` and waits for the next event named `ev`. */
  request(cmd: Record<string, unknown>, ev: string, timeoutMs = 5_000): Promise<E> {
    const before = this.events().filter((e) => e.ev === ev).length;
    this.command(cmd);
    return this.next(ev, before, timeoutMs);
  }
}
