/**
 * Shared helpers for gateway interop tests: Weft run by its own CLI (`weft up FILE.conf`) inside lab
 * namespaces from generated wg-quick files, next to the real peers of harness.ts, plus traffic tools (ping,
 * iperf3, a sha256-verified TCP transfer, a UDP datagram sender) and packet decoding for captures.
 *
 *   const lab = await Lab.create('gw');
 *   after(async () => { await stopWeftInterfaces(lab); await lab.cleanup(); });
 *   const { a, b, a4, b4 } = await linkedPair(lab, 'a', 'b', 1);   // 192.168.1.1/24 ↔ 192.168.1.2/24, fd01::1/2
 *   const weft = await startWeft(a, lab.ifname('w0'), { privateKey, listenPort: 51820, addresses, peers });
 *   await weft.dump();                                                  // `wg show NAME dump` against Weft's UAPI
 *   await weft.stop();                                                  // SIGTERM (foreground) or `weft down`
 *
 * Every Weft interface started here is registered with the lab (its UAPI socket is removed by lab.cleanup())
 * and with this module: stopWeftInterfaces(lab) stops whatever is still up and removes pid and log files; a
 * process 'exit' handler removes those files too when a test run dies.
 */
import { createCipheriv, createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PrivateKey } from '../../src/crypto/keys.js';
import {
  LAB_ENV,
  WG_RUN_DIR,
  parsePcap,
  waitFor,
  wgShowDump,
  type ExecOptions,
  type ExecResult,
  type Lab,
  type ManagedProcess,
  type Netns,
  type WgDump,
} from './harness.js';

/** The `weft` CLI entry point, next to this file in dist/ (dist/test/interop → dist/src/cli/main.js). */
export const WEFT_MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
/** Where `weft up` writes NAME.pid. */
export const WEFT_RUN_DIR = '/run/weft';
/** Where the `weft up` daemon logs (NAME.log). */
export const WEFT_LOG_DIR = '/var/log/weft';

const DEFAULT_UP_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 5_000;

// ---------------------------------------------------------------------------------------------------------------
// Keys and configuration files

export interface KeyPair {
  /** Base64. */
  privateKey: string;
  publicKey: string;
}

export function generateKeyPair(): KeyPair {
  const key = PrivateKey.generate();
  return { privateKey: key.toBase64(), publicKey: key.publicKey().toBase64() };
}

export interface WgQuickPeerSpec {
  publicKey: string;
  /** "host:port"; IPv6 as "[addr]:port". */
  endpoint?: string;
  allowedIps: readonly string[];
  persistentKeepalive?: number;
  presharedKey?: string;
}

export interface WgQuickSpec {
  privateKey: string;
  listenPort?: number;
  /** Interface addresses with prefix length. */
  addresses?: readonly string[];
  mtu?: number;
  /** `Table =` value ("off", "auto", a number). */
  table?: string;
  /** Extra raw lines for the [Interface] section (hooks, deliberate mistakes, ...). */
  interfaceLines?: readonly string[];
  peers?: readonly WgQuickPeerSpec[];
}

/** The text of a wg-quick configuration file. */
export function wgQuickConfig(spec: WgQuickSpec): string {
  const lines = ['[Interface]', `PrivateKey = ${spec.privateKey}`];
  if (spec.listenPort !== undefined) lines.push(`ListenPort = ${spec.listenPort}`);
  if (spec.addresses && spec.addresses.length > 0) lines.push(`Address = ${spec.addresses.join(', ')}`);
  if (spec.mtu !== undefined) lines.push(`MTU = ${spec.mtu}`);
  if (spec.table !== undefined) lines.push(`Table = ${spec.table}`);
  lines.push(...(spec.interfaceLines ?? []));
  for (const peer of spec.peers ?? []) {
    lines.push('', '[Peer]', `PublicKey = ${peer.publicKey}`);
    if (peer.presharedKey !== undefined) lines.push(`PresharedKey = ${peer.presharedKey}`);
    if (peer.endpoint !== undefined) lines.push(`Endpoint = ${peer.endpoint}`);
    if (peer.allowedIps.length > 0) lines.push(`AllowedIPs = ${peer.allowedIps.join(', ')}`);
    if (peer.persistentKeepalive !== undefined)
      lines.push(`PersistentKeepalive = ${peer.persistentKeepalive}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Writes `text` to `<lab dir>/<fresh subdirectory>/<fileName>` with mode 0600 and returns the path. `weft up`
 * names the interface after the file (minus `.conf`), so `fileName` is usually `${lab.ifname(...)}.conf`.
 */
export async function writeConfigFile(lab: Lab, fileName: string, text: string): Promise<string> {
  if (fileName.includes('/') || fileName === '' || fileName === '.' || fileName === '..') {
    throw new Error(`bad configuration file name ${JSON.stringify(fileName)}`);
  }
  const dir = lab.file('conf');
  await fsp.mkdir(dir, { mode: 0o700 });
  const file = path.join(dir, fileName);
  await fsp.writeFile(file, text, { mode: 0o600, flag: 'wx' });
  return file;
}

// ---------------------------------------------------------------------------------------------------------------
// Weft interfaces

/** What `weft up NAME` leaves on the machine while the interface is up. */
export function weftArtifacts(ifname: string): { socket: string; pidFile: string; logFile: string } {
  return {
    socket: path.join(WG_RUN_DIR, `${ifname}.sock`),
    pidFile: path.join(WEFT_RUN_DIR, `${ifname}.pid`),
    logFile: path.join(WEFT_LOG_DIR, `${ifname}.log`),
  };
}

const weftInterfaces = new Map<Lab, Set<string>>();
let exitHandlerInstalled = false;

/**
 * Records a Weft interface name (from `lab.ifname()`) so that its socket (via the lab), pid file and log file
 * are removed at cleanup, even when the test dies. startWeft() calls this; call it yourself before running
 * `weft up` by hand.
 */
export function registerWeftInterface(lab: Lab, ifname: string): void {
  lab.registerWgInterface(ifname); // checks the prefix; the lab removes the UAPI socket
  let names = weftInterfaces.get(lab);
  if (!names) weftInterfaces.set(lab, (names = new Set()));
  names.add(ifname);
  if (!exitHandlerInstalled) {
    exitHandlerInstalled = true;
    // Ours run before the harness's handlers (installed by Lab.create), which remove the lab directory that
    // tells a live lab from a cleaned-up one. On a signal, the harness reaps and re-raises the signal only when
    // its handler is the last one left, so ours steps aside.
    process.prependListener('exit', removeWeftFilesSync);
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      const onSignal = (): void => {
        process.removeListener(signal, onSignal);
        removeWeftFilesSync();
      };
      process.prependListener(signal, onSignal);
    }
  }
}

/** Pid and log files of the Weft interfaces of labs not yet cleaned up (their directory still exists). */
function removeWeftFilesSync(): void {
  for (const [lab, names] of weftInterfaces) {
    if (!fs.existsSync(lab.dir)) continue; // cleaned up: stopWeftInterfaces() has done this already
    for (const name of names) {
      const { pidFile, logFile } = weftArtifacts(name);
      try {
        fs.rmSync(pidFile, { force: true });
        fs.rmSync(logFile, { force: true });
      } catch {
        // best effort while exiting
      }
    }
  }
}

/** Every Weft interface name registered for `lab`. */
export function weftInterfaceNames(lab: Lab): string[] {
  return [...(weftInterfaces.get(lab) ?? [])];
}

/** Runs the weft CLI (`node dist/src/cli/main.js ARGS`) in `ns`. */
export function weftCli(ns: Netns, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  return ns.exec(process.execPath, [WEFT_MAIN, ...args], options);
}

export interface WeftInterface {
  readonly ns: Netns;
  readonly ifname: string;
  readonly configFile: string;
  readonly publicKey: string;
  /** The UDP port Weft listens on (as `wg show` reports it). */
  readonly listenPort: number;
  /** The Weft process (from the pid file). */
  readonly pid: number;
  /** The `weft up --foreground` process, or undefined for a daemon started with `weft up`. */
  readonly process: ManagedProcess | undefined;
  /** `wg show NAME dump` against Weft's UAPI socket, parsed. */
  dump(): Promise<WgDump>;
  /** `wg ARGS` in the interface's namespace (e.g. `['set', ifname, 'peer', key, 'remove']`). */
  wg(args: readonly string[]): Promise<ExecResult>;
  /**
   * Brings the interface down: SIGTERM to the foreground process, or `weft down NAME` for a daemon; waits
   * (bounded) until the process has exited. Idempotent.
   */
  stop(): Promise<void>;
}

export interface StartWeftOptions {
  /** Start the daemon (`weft up FILE`) instead of `weft up --foreground FILE` as a lab process. */
  daemon?: boolean;
  /** Bound on coming up; default 15 s. */
  timeoutMs?: number;
}

/**
 * Writes the configuration to `<lab dir>/.../<ifname>.conf`, runs `weft up` on it inside `ns` and waits
 * (bounded) until the interface answers `wg show`. `ifname` must come from `lab.ifname()`.
 */
export async function startWeft(
  ns: Netns,
  ifname: string,
  config: WgQuickSpec | string,
  { daemon = false, timeoutMs = DEFAULT_UP_TIMEOUT_MS }: StartWeftOptions = {},
): Promise<WeftInterface> {
  const lab = ns.lab;
  registerWeftInterface(lab, ifname);
  const text = typeof config === 'string' ? config : wgQuickConfig(config);
  const configFile = await writeConfigFile(lab, `${ifname}.conf`, text);
  const { pidFile } = weftArtifacts(ifname);

  let proc: ManagedProcess | undefined;
  if (daemon) {
    await weftCli(ns, ['up', configFile], { timeoutMs: timeoutMs + 5_000 });
  } else {
    proc = ns.spawn(process.execPath, [WEFT_MAIN, 'up', '--foreground', configFile]);
  }
  // Ready once the pid file (written last by `weft up`) names a process and `wg show` answers.
  const running = proc;
  let ready: { dump: WgDump; pid: number } | { exited: true };
  try {
    ready = await waitFor(
      `weft ${ifname} to come up in ${ns.name}`,
      async () => {
        if (running && !running.running) return { exited: true as const };
        const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
        if (!Number.isInteger(pid) || pid <= 0) return null;
        const dump = await wgShowDump(ns, ifname);
        return dump.interface.publicKey !== null ? { dump, pid } : null;
      },
      { timeoutMs, intervalMs: 50 },
    );
  } catch (error) {
    const detail = running ? `\n${running.describe()}` : '';
    await running?.stop().catch(() => undefined);
    throw new Error(`${(error as Error).message}${detail}`, { cause: error });
  }
  if ('exited' in ready) throw new Error(`weft up ${ifname} exited before it was up: ${running?.describe()}`);
  const up = ready;

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      if (running) {
        const status = await running.stop(STOP_GRACE_MS);
        if (status.signal === 'SIGKILL')
          throw new Error(`weft ${ifname} ignored SIGTERM: ${running.describe()}`);
      } else if (pidAlive(up.pid)) {
        await weftCli(ns, ['down', ifname], { timeoutMs: 20_000 });
      }
    })();
    return stopped;
  };
  return {
    ns,
    ifname,
    configFile,
    publicKey: up.dump.interface.publicKey!,
    listenPort: up.dump.interface.listenPort,
    pid: up.pid,
    process: proc,
    dump: () => wgShowDump(ns, ifname),
    wg: (args) => ns.exec('wg', args),
    stop,
  };
}

/**
 * Stops every Weft interface of `lab` that is still up (SIGTERM to the pid in its pid file, if that process
 * carries the lab's marker; SIGKILL after a grace period), then removes pid, log and socket files. Call before
 * lab.cleanup(); safe to call more than once.
 */
export async function stopWeftInterfaces(lab: Lab): Promise<void> {
  const names = weftInterfaceNames(lab);
  const pids: number[] = [];
  for (const name of names) {
    const { pidFile } = weftArtifacts(name);
    let pid: number;
    try {
      pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    } catch {
      continue;
    }
    if (!Number.isInteger(pid) || pid <= 0 || !carriesMarker(pid, lab.prefix)) continue;
    try {
      process.kill(pid, 'SIGTERM');
      pids.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  // Also any other process of the lab running the weft CLI (e.g. a foreground `weft up` without a pid file yet).
  for (const p of labProcesses(lab)) {
    if (p.cmdline.includes(WEFT_MAIN) && !pids.includes(p.pid)) {
      try {
        process.kill(p.pid, 'SIGTERM');
        pids.push(p.pid);
      } catch {
        // gone meanwhile
      }
    }
  }
  const deadline = Date.now() + STOP_GRACE_MS;
  while (pids.some(pidAlive) && Date.now() < deadline) await sleep(50);
  for (const pid of pids.filter(pidAlive)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  for (const name of names) {
    const { socket, pidFile, logFile } = weftArtifacts(name);
    await fsp.rm(pidFile, { force: true });
    await fsp.rm(logFile, { force: true });
    await fsp.rm(socket, { force: true });
  }
}

/** True when `pid` exists and is not a zombie. */
export function pidAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function carriesMarker(pid: number, prefix: string): boolean {
  try {
    const environ = Buffer.concat([Buffer.from([0]), fs.readFileSync(`/proc/${pid}/environ`)]);
    return environ.includes(Buffer.from(`\0${LAB_ENV}=${prefix}\0`));
  } catch {
    return false;
  }
}

/** Live processes (not zombies) that carry the lab's WEFT_LAB marker, with their command lines. */
export function labProcesses(lab: Lab): { pid: number; cmdline: string }[] {
  const found: { pid: number; cmdline: string }[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid || !carriesMarker(pid, lab.prefix) || !pidAlive(pid)) continue;
    try {
      found.push({
        pid,
        cmdline: fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim(),
      });
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

// ---------------------------------------------------------------------------------------------------------------
// Topology

export interface LinkedPair {
  a: Netns;
  b: Netns;
  /** The veth ends, in a and in b. */
  aIf: string;
  bIf: string;
  /** Outer addresses, without prefix length: 192.168.N.1 / .2 and fdNN::1 / ::2 (NN = N in two hex digits). */
  a4: string;
  b4: string;
  a6: string;
  b6: string;
}

/**
 * Two new namespaces `${prefix}-${aName}` and `${prefix}-${bName}` joined by a veth with 192.168.N.1/24 and
 * fdNN::1/64 on a's end, .2 / ::2 on b's (1 <= N <= 254; N distinct per lab keeps addresses unambiguous).
 */
export async function linkedPair(lab: Lab, aName: string, bName: string, n: number): Promise<LinkedPair> {
  const { v4, v6 } = outerSubnet(n);
  const a = await lab.netns(aName);
  const b = await lab.netns(bName);
  const { aIf, bIf } = await lab.veth(a, b, {
    aAddr: `${v4}.1/24`,
    bAddr: `${v4}.2/24`,
    aAddr6: `${v6}1/64`,
    bAddr6: `${v6}2/64`,
  });
  return { a, b, aIf, bIf, a4: `${v4}.1`, b4: `${v4}.2`, a6: `${v6}1`, b6: `${v6}2` };
}

/** "192.168.N" and "fdNN::" for outer networks. */
export function outerSubnet(n: number): { v4: string; v6: string } {
  if (!Number.isInteger(n) || n < 1 || n > 254) throw new Error(`subnet number out of range: ${n}`);
  return { v4: `192.168.${n}`, v6: `fd${n.toString(16).padStart(2, '0')}::` };
}

/** Tunnel-side addresses for host `host` of tunnel `n`: 10.N.0.HOST and fd00:N::HOST (N in hex). */
export function tunnelAddress(n: number, host: number): { v4: string; v6: string } {
  return { v4: `10.${n}.0.${host}`, v6: `fd00:${n.toString(16)}::${host.toString(16)}` };
}

// ---------------------------------------------------------------------------------------------------------------
// Traffic

export interface PingResult {
  transmitted: number;
  received: number;
  code: number | null;
  output: string;
}

/** `ping -c COUNT -i INTERVAL -W WAIT DST` in `ns` (IPv6 when `dst` has a colon); never throws on loss. */
export async function ping(
  ns: Netns,
  dst: string,
  { count = 3, intervalS = 0.2, waitS = 2 }: { count?: number; intervalS?: number; waitS?: number } = {},
): Promise<PingResult> {
  const family = dst.includes(':') ? ['-6'] : ['-4'];
  const result = await ns.exec(
    'ping',
    [...family, '-n', '-c', String(count), '-i', String(intervalS), '-W', String(waitS), dst],
    { allowFail: true, timeoutMs: Math.ceil((count * intervalS + waitS) * 1000) + 10_000 },
  );
  const stats = /(\d+) packets transmitted, (\d+) received/.exec(result.stdout);
  return {
    transmitted: stats ? Number(stats[1]) : 0,
    received: stats ? Number(stats[2]) : 0,
    code: result.code,
    output: `${result.stdout}${result.stderr}`,
  };
}

/** Waits (bounded) until something in `ns` listens on TCP `port`. */
export async function waitForTcpListener(ns: Netns, port: number, timeoutMs = 5_000): Promise<void> {
  await waitFor(
    `a TCP listener on port ${port} in ${ns.name}`,
    async () => (await ns.exec('ss', ['-Hltn', `sport = :${port}`])).stdout.trim() !== '',
    { timeoutMs, intervalMs: 50 },
  );
}

let nextPort = 5201;
/** A TCP port for the next server of this test process (namespaces are private, so no machine-wide clash). */
export function freshPort(): number {
  return nextPort++;
}

export interface IperfResult {
  sentBytes: number;
  receivedBytes: number;
  retransmits: number;
  bitsPerSecond: number;
}

/**
 * One iperf3 TCP test: a one-shot server (`iperf3 -s -1`, a lab process) in `serverNs`, the client
 * (`iperf3 -c ADDRESS -t SECONDS -J`) in `clientNs`; with `reverse` (-R) the server sends and the client
 * receives. Throws when iperf3 reports an error or the server does not
 * finish cleanly.
 */
export async function iperf3(
  clientNs: Netns,
  serverNs: Netns,
  address: string,
  {
    seconds = 2,
    port = freshPort(),
    reverse = false,
  }: { seconds?: number; port?: number; reverse?: boolean } = {},
): Promise<IperfResult> {
  const server = serverNs.spawn('iperf3', ['-s', '-1', '-p', String(port)]);
  try {
    await waitForTcpListener(serverNs, port);
    const client = await clientNs.exec(
      'iperf3',
      [
        '-c',
        address,
        '-p',
        String(port),
        '-t',
        String(seconds),
        '-J',
        '--connect-timeout',
        '5000',
        ...(reverse ? ['-R'] : []),
      ],
      { allowFail: true, timeoutMs: seconds * 1000 + 20_000 },
    );
    let report: {
      error?: string;
      end?: {
        sum_sent?: { bytes?: number; retransmits?: number; bits_per_second?: number };
        sum_received?: { bytes?: number };
      };
    };
    try {
      report = JSON.parse(client.stdout) as typeof report;
    } catch {
      throw new Error(
        `iperf3 client printed no JSON (exit ${client.code}): ${client.stdout}${client.stderr}`,
      );
    }
    if (report.error !== undefined || client.code !== 0) {
      throw new Error(`iperf3 client failed (exit ${client.code}): ${report.error ?? client.stderr}`);
    }
    const status = await within(server.exited, 10_000);
    if (!status) throw new Error(`iperf3 server did not finish: ${server.describe()}`);
    if (status.code !== 0) throw new Error(`iperf3 server failed: ${server.describe()}`);
    return {
      sentBytes: report.end?.sum_sent?.bytes ?? 0,
      receivedBytes: report.end?.sum_received?.bytes ?? 0,
      retransmits: report.end?.sum_sent?.retransmits ?? 0,
      bitsPerSecond: report.end?.sum_sent?.bits_per_second ?? 0,
    };
  } finally {
    await server.stop().catch(() => undefined);
  }
}

/**
 * `bytes` bytes of reproducible pseudo-random data: the AES-128-CTR keystream (zero IV) under the first 16
 * bytes of sha256(seed). The transfer client below generates the same bytes from the same seed.
 */
export function pseudoRandomBytes(seed: string, bytes: number): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(bytes));
}

const TRANSFER_SERVER = `
const net = require('node:net'), crypto = require('node:crypto');
const o = JSON.parse(process.argv[1]);
const hash = crypto.createHash('sha256');
let bytes = 0;
const server = net.createServer({ allowHalfOpen: true }, (s) => {
  server.close();
  s.on('data', (d) => { hash.update(d); bytes += d.length; });
  s.on('end', () => {
    const r = JSON.stringify({ bytes, sha256: hash.digest('hex') });
    console.log(r);
    s.end(r);
  });
  s.on('error', (e) => { console.error('server socket: ' + e.message); process.exit(2); });
});
server.on('error', (e) => { console.error('server: ' + e.message); process.exit(2); });
server.listen(o.port, o.host, () => console.log('listening'));
setTimeout(() => { console.error('server: timed out'); process.exit(3); }, o.timeoutMs).unref();
`;

const TRANSFER_CLIENT = `
const net = require('node:net'), crypto = require('node:crypto');
const o = JSON.parse(process.argv[1]);
const key = crypto.createHash('sha256').update(o.seed).digest().subarray(0, 16);
const data = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(o.bytes));
const sha256 = crypto.createHash('sha256').update(data).digest('hex');
let reply = '';
const s = net.connect({ host: o.host, port: o.port }, () => s.end(data));
s.setEncoding('utf8');
s.on('data', (d) => { reply += d; });
s.on('close', (hadError) => {
  if (hadError) process.exit(2);
  console.log(JSON.stringify({ bytes: data.length, sha256, reply }));
});
s.on('error', (e) => { console.error('client: ' + e.message); process.exit(2); });
setTimeout(() => { console.error('client: timed out'); process.exit(3); }, o.timeoutMs).unref();
`;

export interface TransferResult {
  /** sha256 of the data, computed here. */
  expectedSha256: string;
  sent: { bytes: number; sha256: string };
  received: { bytes: number; sha256: string };
  ms: number;
}

/**
 * Sends `bytes` of pseudoRandomBytes(seed) over one TCP connection from a node client in `fromNs` to a node
 * server in `toNs` listening on `address`; both report the byte count and sha256 of what they sent / read.
 */
export async function verifiedTransfer(
  fromNs: Netns,
  toNs: Netns,
  address: string,
  {
    bytes = 4 << 20,
    seed = `weft-${Date.now()}-${Math.random()}`,
    port = freshPort(),
    timeoutMs = 30_000,
  }: { bytes?: number; seed?: string; port?: number; timeoutMs?: number } = {},
): Promise<TransferResult> {
  const expectedSha256 = createHash('sha256').update(pseudoRandomBytes(seed, bytes)).digest('hex');
  const server = toNs.spawn(process.execPath, [
    '-e',
    TRANSFER_SERVER,
    JSON.stringify({ host: address, port, timeoutMs }),
  ]);
  try {
    await server.waitForOutput(/^listening$/m, 10_000);
    const started = Date.now();
    const client = await fromNs.exec(
      process.execPath,
      ['-e', TRANSFER_CLIENT, JSON.stringify({ host: address, port, bytes, seed, timeoutMs })],
      { timeoutMs: timeoutMs + 5_000, allowFail: true },
    );
    const ms = Date.now() - started;
    if (client.code !== 0) {
      throw new Error(`transfer client failed (exit ${client.code}): ${client.stderr}\n${server.describe()}`);
    }
    const status = await within(server.exited, 10_000);
    if (!status || status.code !== 0) throw new Error(`transfer server failed: ${server.describe()}`);
    const sentLine = client.stdout.trim().split('\n').pop() ?? '';
    const sent = JSON.parse(sentLine) as { bytes: number; sha256: string; reply: string };
    const receivedLine = server.stdout.split('\n').find((l) => l.startsWith('{')) ?? '';
    const received = JSON.parse(receivedLine) as { bytes: number; sha256: string };
    if (sent.reply !== receivedLine.trim()) {
      throw new Error(`the server's reply (${sent.reply}) differs from its report (${receivedLine})`);
    }
    return {
      expectedSha256,
      sent: { bytes: sent.bytes, sha256: sent.sha256 },
      received: { bytes: received.bytes, sha256: received.sha256 },
      ms,
    };
  } finally {
    await server.stop().catch(() => undefined);
  }
}

const DATAGRAM_SENDER = `
const dgram = require('node:dgram'), fs = require('node:fs');
const o = JSON.parse(process.argv[1]);
const buf = fs.readFileSync(o.file);
const list = [];
for (let off = 0; off < buf.length; ) { const n = buf.readUInt16BE(off); list.push(buf.subarray(off + 2, off + 2 + n)); off += 2 + n; }
const sock = dgram.createSocket(o.host.includes(':') ? 'udp6' : 'udp4');
let sent = 0, failed = 0, i = 0;
sock.on('error', (e) => { console.error('socket: ' + e.message); process.exit(2); });
sock.bind(0, () => {
  const next = () => {
    if (i >= list.length) { console.log(JSON.stringify({ sent, failed, port: sock.address().port })); sock.close(); return; }
    const batchEnd = Math.min(list.length, i + o.batch);
    let pending = batchEnd - i;
    for (; i < batchEnd; i++) sock.send(list[i], o.port, o.host, (e) => { if (e) failed++; else sent++; if (--pending === 0) setTimeout(next, o.pauseMs); });
  };
  next();
});
setTimeout(() => { console.error('sender: timed out'); process.exit(3); }, o.timeoutMs).unref();
`;

/**
 * Sends `datagrams` (each at most 65,507 bytes) from one fresh UDP socket in `ns` to host:port, in batches of
 * `batch` with `pauseMs` between batches (so that receive buffers are not simply overrun). Resolves with how
 * many the kernel accepted and the source port used.
 */
export async function sendDatagrams(
  ns: Netns,
  host: string,
  port: number,
  datagrams: readonly Uint8Array[],
  {
    batch = 50,
    pauseMs = 2,
    timeoutMs = 20_000,
  }: { batch?: number; pauseMs?: number; timeoutMs?: number } = {},
): Promise<{ sent: number; failed: number; port: number }> {
  const parts: Buffer[] = [];
  for (const d of datagrams) {
    if (d.length > 65_507) throw new Error(`datagram too long: ${d.length}`);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(d.length);
    parts.push(len, Buffer.from(d));
  }
  const file = ns.lab.file('datagrams.bin');
  await fsp.writeFile(file, Buffer.concat(parts), { mode: 0o600 });
  const result = await ns.exec(
    process.execPath,
    ['-e', DATAGRAM_SENDER, JSON.stringify({ file, host, port, batch, pauseMs, timeoutMs })],
    { timeoutMs: timeoutMs + 5_000 },
  );
  return JSON.parse(result.stdout.trim().split('\n').pop() ?? '') as {
    sent: number;
    failed: number;
    port: number;
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding captured packets

export interface DecodedPacket {
  family: 4 | 6;
  src: string;
  dst: string;
  /** IP protocol / final IPv6 next header (17 UDP, 6 TCP, 1 ICMP, 58 ICMPv6). */
  protocol: number;
  srcPort?: number;
  dstPort?: number;
  /** ICMP / ICMPv6 type. */
  icmpType?: number;
  /** The UDP payload (UDP only). */
  payload?: Buffer;
}

const LINKTYPE_ETHERNET = 1;
const LINKTYPE_RAW = 101;
const LINKTYPE_LINUX_SLL = 113;

/** Decodes the IP packet in a captured frame; undefined for non-IP frames (ARP, ...) and runts. */
export function decodeFrame(frame: Buffer, linkType: number): DecodedPacket | undefined {
  let offset: number;
  if (linkType === LINKTYPE_ETHERNET) {
    offset = 14;
    let etherType = frame.length >= 14 ? frame.readUInt16BE(12) : 0;
    while ((etherType === 0x8100 || etherType === 0x88a8) && frame.length >= offset + 4) {
      etherType = frame.readUInt16BE(offset + 2);
      offset += 4;
    }
    if (etherType !== 0x0800 && etherType !== 0x86dd) return undefined;
  } else if (linkType === LINKTYPE_LINUX_SLL) {
    offset = 16;
    if (frame.length < 16) return undefined;
    const proto = frame.readUInt16BE(14);
    if (proto !== 0x0800 && proto !== 0x86dd) return undefined;
  } else if (linkType === LINKTYPE_RAW) {
    offset = 0;
  } else {
    throw new Error(`decodeFrame: unsupported link type ${linkType}`);
  }
  return decodeIp(frame.subarray(offset));
}

/** Decodes a bare IPv4 or IPv6 packet. */
export function decodeIp(ip: Buffer): DecodedPacket | undefined {
  if (ip.length < 1) return undefined;
  const version = ip[0]! >> 4;
  let protocol: number;
  let l4: Buffer;
  let src: string;
  let dst: string;
  if (version === 4) {
    if (ip.length < 20) return undefined;
    const ihl = (ip[0]! & 0x0f) * 4;
    protocol = ip[9]!;
    src = [...ip.subarray(12, 16)].join('.');
    dst = [...ip.subarray(16, 20)].join('.');
    l4 = ip.subarray(ihl);
  } else if (version === 6) {
    if (ip.length < 40) return undefined;
    protocol = ip[6]!;
    src = formatIpv6(ip.subarray(8, 24));
    dst = formatIpv6(ip.subarray(24, 40));
    let offset = 40;
    // Hop-by-hop, routing, destination options: skip to the upper-layer header.
    while ((protocol === 0 || protocol === 43 || protocol === 60) && ip.length >= offset + 2) {
      const next = ip[offset]!;
      offset += (ip[offset + 1]! + 1) * 8;
      protocol = next;
    }
    l4 = ip.subarray(offset);
  } else {
    return undefined;
  }
  const packet: DecodedPacket = { family: version === 4 ? 4 : 6, src, dst, protocol };
  if (protocol === 17 && l4.length >= 8) {
    packet.srcPort = l4.readUInt16BE(0);
    packet.dstPort = l4.readUInt16BE(2);
    packet.payload = l4.subarray(8);
  } else if ((protocol === 1 || protocol === 58) && l4.length >= 1) {
    packet.icmpType = l4[0]!;
  }
  return packet;
}

/** RFC 5952 text of a 16-byte IPv6 address (lower case, longest run of two or more zero groups as "::"). */
export function formatIpv6(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Every packet of a pcap file, decoded (frames that are not IP are left out), with its capture time in ms. */
export async function readCapture(file: string): Promise<(DecodedPacket & { timeMs: number })[]> {
  const pcap = parsePcap(await fsp.readFile(file));
  const out: (DecodedPacket & { timeMs: number })[] = [];
  for (const r of pcap.records) {
    const p = decodeFrame(r.data, pcap.linkType);
    if (p) out.push({ ...p, timeMs: r.tsSec * 1000 + r.tsFrac / (pcap.nanosecond ? 1e6 : 1e3) });
  }
  return out;
}

/** The WireGuard message type of a UDP payload (1 initiation, 2 response, 3 cookie, 4 data), if it has one. */
export function wireguardType(p: DecodedPacket): number | undefined {
  if (!p.payload || p.payload.length < 4) return undefined;
  const type = p.payload.readUInt32LE(0);
  return type >= 1 && type <= 4 ? type : undefined;
}

// ---------------------------------------------------------------------------------------------------------------

/** `promise`'s value, or undefined if it has not settled within `ms` (the timer does not outlive the race). */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
