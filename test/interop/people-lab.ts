/**
 * Helpers for the people-VPN interop test (people-vpn.test.ts): the topology (a gateway namespace, member
 * namespaces on a bridge, a routed "cloud" subnet and an "internet" host behind the NAT egress), real WireGuard
 * clients brought up by `wg-quick` with wireguard-go, and the traffic probes the test measures with.
 *
 *   const topo = await peopleTopology(lab);             // gw, ma/mb/mc, cloud, inet; endpoint 192.168.70.1
 *   const a = await wgQuickUp(topo.members.a, lab.ifname('ma'), configText);
 *   await a.rehandshake();                                // drop the client's session: the next packet handshakes
 *   const srv = tcpServer(topo.cloud, '0.0.0.0', [7100]); await srv.ready();
 *   const r = await tcpProbe(topo.members.a, '10.20.0.10', 7100);   // { ok, reply: { remote } } or { error }
 *
 * Underlay: a bridge in the gateway namespace holds 192.168.70.1/24 (the endpoint's host); member X has
 * 192.168.70.1N/24 on a veth whose other end is a bridge port. Cloud: 10.20.0.1/24 (gateway) ↔ 10.20.0.10/24,
 * default route back through the gateway. Internet: 198.51.100.1/24 (gateway, the NAT egress) ↔ 198.51.100.10/24
 * with no route back to the member subnet, so only source-NATed traffic can be answered.
 */
import * as fsp from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import {
  DEFAULT_TOOLS,
  JsonLinesProcess,
  waitFor,
  wgShowDump,
  type ExecResult,
  type Lab,
  type ManagedProcess,
  type Netns,
  type WgDump,
} from './harness.js';
import { freshPort, waitForTcpListener, within, writeConfigFile } from './gateway-lab.js';

export const PEOPLE_TOOLS: readonly string[] = [...DEFAULT_TOOLS, 'wg-quick', 'iperf3', 'ss', 'nft'];

export const UNDERLAY = { gateway: '192.168.70.1', prefixLength: 24 } as const;
export const CLOUD = { subnet: '10.20.0.0/24', gateway: '10.20.0.1', host: '10.20.0.10' } as const;
export const INTERNET = {
  subnet: '198.51.100.0/24',
  gateway: '198.51.100.1',
  host: '198.51.100.10',
} as const;

export type MemberKey = 'a' | 'b' | 'c';
export const MEMBER_KEYS: readonly MemberKey[] = ['a', 'b', 'c'];

export interface PeopleTopology {
  gw: Netns;
  members: Record<MemberKey, Netns>;
  /** Each member's underlay address (no prefix length). */
  underlay: Record<MemberKey, string>;
  cloud: Netns;
  inet: Netns;
  /** The gateway's veth toward the cloud namespace, and the cloud's end. */
  gwCloudIf: string;
  cloudIf: string;
  /** The gateway's veth toward the internet namespace: the NAT egress interface. */
  egressIf: string;
  inetIf: string;
  /** The bridge in the gateway namespace holding the endpoint address. */
  bridge: string;
}

/** Creates the namespaces and links described at the top of this file. */
export async function peopleTopology(lab: Lab): Promise<PeopleTopology> {
  const gw = await lab.netns('gw');
  const bridge = lab.ifname('br');
  await gw.exec('ip', ['link', 'add', bridge, 'type', 'bridge']);
  await gw.exec('ip', ['link', 'set', bridge, 'up']);
  await gw.exec('ip', ['addr', 'add', `${UNDERLAY.gateway}/${UNDERLAY.prefixLength}`, 'dev', bridge]);

  const members = {} as Record<MemberKey, Netns>;
  const underlay = {} as Record<MemberKey, string>;
  for (const [i, key] of MEMBER_KEYS.entries()) {
    const ns = await lab.netns(`m${key}`);
    const address = `192.168.70.${11 + i}`;
    const { aIf } = await lab.veth(gw, ns, {
      aName: `p${key}`,
      bName: `u${key}`,
      bAddr: `${address}/${UNDERLAY.prefixLength}`,
    });
    await gw.exec('ip', ['link', 'set', aIf, 'master', bridge]);
    members[key] = ns;
    underlay[key] = address;
  }

  const cloud = await lab.netns('cloud');
  const { aIf: gwCloudIf, bIf: cloudIf } = await lab.veth(gw, cloud, {
    aName: 'gc',
    bName: 'cl',
    aAddr: `${CLOUD.gateway}/24`,
    bAddr: `${CLOUD.host}/24`,
  });
  await cloud.exec('ip', ['route', 'add', 'default', 'via', CLOUD.gateway]);

  const inet = await lab.netns('inet');
  const { aIf: egressIf, bIf: inetIf } = await lab.veth(gw, inet, {
    aName: 'gi',
    bName: 'in',
    aAddr: `${INTERNET.gateway}/24`,
    bAddr: `${INTERNET.host}/24`,
  });
  // Deliberately no route back to the member subnet: only source-NATed traffic can be answered.

  for (const key of MEMBER_KEYS) {
    await waitFor(`${members[key].name} to reach the endpoint host over the bridge`, async () => {
      const r = await members[key].exec('ping', ['-c', '1', '-W', '1', UNDERLAY.gateway], {
        allowFail: true,
      });
      return r.code === 0;
    });
  }
  return { gw, members, underlay, cloud, inet, gwCloudIf, cloudIf, egressIf, inetIf, bridge };
}

// ---------------------------------------------------------------------------------------------------------------
// wg-quick clients

export interface WgQuickClient {
  readonly ns: Netns;
  readonly ifname: string;
  readonly configFile: string;
  /** `wg show IFNAME dump`, parsed. */
  dump(): Promise<WgDump>;
  /** The IPv4 addresses (with prefix length) on the interface. */
  addresses(): Promise<string[]>;
  /**
   * Removes the peer and adds it again from the configuration: the client forgets its session, so that the
   * next packet it sends starts a fresh handshake (e.g. after the gateway restarted and lost its sessions).
   */
  rehandshake(): Promise<void>;
  /** `wg-quick down FILE` (wireguard-go exits when its TUN device goes); idempotent. */
  down(): Promise<void>;
}

const WG_QUICK_ENV = { WG_QUICK_USERSPACE_IMPLEMENTATION: 'wireguard-go' };

/**
 * Writes `configText` to `<lab dir>/.../<ifname>.conf` and runs
 * `WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go wg-quick up FILE` in `ns`. wireguard-go forks into the
 * background (it carries the lab's marker, so lab.cleanup() finds it); its UAPI socket is registered with the
 * lab. `ifname` must come from `lab.ifname()`.
 */
export async function wgQuickUp(ns: Netns, ifname: string, configText: string): Promise<WgQuickClient> {
  const lab = ns.lab;
  lab.registerWgInterface(ifname);
  const configFile = await writeConfigFile(lab, `${ifname}.conf`, configText);
  const wgQuick = (verb: 'up' | 'down' | 'strip', allowFail = false): Promise<ExecResult> =>
    ns.exec('wg-quick', [verb, configFile], { env: WG_QUICK_ENV, timeoutMs: 20_000, allowFail });
  await wgQuick('up');
  let isDown = false;
  return {
    ns,
    ifname,
    configFile,
    dump: () => wgShowDump(ns, ifname),
    async addresses() {
      const { stdout } = await ns.exec('ip', ['-4', '-o', 'addr', 'show', 'dev', ifname]);
      return [...stdout.matchAll(/\binet (\S+)/g)].map((m) => m[1]!);
    },
    async rehandshake() {
      const stripped = (await wgQuick('strip')).stdout;
      const file = lab.file(`${ifname}-stripped.conf`);
      await fsp.writeFile(file, stripped, { mode: 0o600 });
      for (const peer of (await wgShowDump(ns, ifname)).peers) {
        await ns.exec('wg', ['set', ifname, 'peer', peer.publicKey, 'remove']);
      }
      await ns.exec('wg', ['addconf', ifname, file]);
    },
    async down() {
      if (isDown) return;
      isDown = true;
      await wgQuick('down', true);
    },
  };
}

/** A wg-quick configuration, parsed just enough: [Interface] keys and one key map per [Peer]. */
export interface ParsedWgQuick {
  iface: Map<string, string[]>;
  peers: Map<string, string[]>[];
}

/** Parses wg-quick text: `Key = value` lines (keys case-insensitive, lower-cased here; repeated keys add up). */
export function parseWgQuick(text: string): ParsedWgQuick {
  const parsed: ParsedWgQuick = { iface: new Map(), peers: [] };
  let section: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) continue;
    if (/^\[interface\]$/i.test(line)) {
      section = parsed.iface;
    } else if (/^\[peer\]$/i.test(line)) {
      section = new Map();
      parsed.peers.push(section);
    } else {
      const m = /^([A-Za-z]+)\s*=\s*(.*)$/.exec(line);
      if (!m || !section) throw new Error(`not a wg-quick line: ${JSON.stringify(raw)}`);
      const key = m[1]!.toLowerCase();
      const values = /^(address|allowedips|dns)$/.test(key)
        ? m[2]!.split(',').map((v) => v.trim())
        : [m[2]!.trim()];
      section.set(key, [...(section.get(key) ?? []), ...values.filter(Boolean)]);
    }
  }
  return parsed;
}

/** The config with every `Key = ...` line of the given key (case-insensitive) replaced by `replacement`. */
export function replaceConfigLine(text: string, key: string, replacement: string | null): string {
  const re = new RegExp(`^\\s*${key}\\s*=.*$`, 'i');
  return text
    .split('\n')
    .flatMap((line) => (re.test(line) ? (replacement === null ? [] : [replacement]) : [line]))
    .join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// IPv4 prefixes

function ipv4ToInt(ip: string): number {
  const parts = ip.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new Error(`not an IPv4 address: ${JSON.stringify(ip)}`);
  }
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

/** Whether the IPv4 prefix ("10.20.0.0/24"; a bare address counts as /32) contains `ip`. IPv6 never does. */
export function prefixContains(prefix: string, ip: string): boolean {
  if (prefix.includes(':')) return false;
  const [base, lenText] = prefix.split('/');
  const len = lenText === undefined ? 32 : Number(lenText);
  if (!Number.isInteger(len) || len < 0 || len > 32) throw new Error(`bad prefix ${JSON.stringify(prefix)}`);
  const size = 2 ** (32 - len);
  return Math.floor(ipv4ToInt(base!) / size) === Math.floor(ipv4ToInt(ip) / size);
}

/** Whether any of `prefixes` contains `ip`. */
export function anyContains(prefixes: readonly string[], ip: string): boolean {
  return prefixes.some((p) => prefixContains(p, ip));
}

// ---------------------------------------------------------------------------------------------------------------
// TCP probes

const TCP_SERVER = `
const net = require('node:net');
const o = JSON.parse(process.argv[1]);
const say = (e) => console.log(JSON.stringify(e));
let pending = o.ports.length;
for (const port of o.ports) {
  const server = net.createServer((s) => {
    const remote = s.remoteAddress;
    say({ ev: 'conn', port, remote });
    s.on('error', () => undefined);
    s.end(JSON.stringify({ port, remote }) + '\\n');
  });
  server.on('error', (e) => { say({ ev: 'error', message: e.message }); process.exit(2); });
  server.listen(port, o.host, () => { if (--pending === 0) say({ ev: 'listening' }); });
}
`;

export type TcpServerEvent =
  { ev: 'listening' } | { ev: 'conn'; port: number; remote: string } | { ev: 'error'; message: string };

export interface TcpServer {
  readonly events: JsonLinesProcess<TcpServerEvent>;
  /** Resolves once every port listens. */
  ready(): Promise<void>;
  /** The connections accepted so far. */
  connections(): { port: number; remote: string }[];
  stop(): Promise<void>;
}

/**
 * A node TCP server in `ns` on `host` and each of `ports` (a lab process): each connection gets one JSON line
 * `{"port":P,"remote":"SRC"}` (the source address it saw) and is closed; it also reports `conn` events.
 */
export function tcpServer(ns: Netns, host: string, ports: readonly number[]): TcpServer {
  const proc = ns.spawn(process.execPath, ['-e', TCP_SERVER, JSON.stringify({ host, ports })]);
  const events = new JsonLinesProcess<TcpServerEvent>(proc);
  return {
    events,
    async ready() {
      await events.waitFor('listening', (e) => e.ev === 'listening', 10_000);
      for (const port of ports) await waitForTcpListener(ns, port);
    },
    connections: () =>
      events
        .events()
        .filter((e): e is Extract<TcpServerEvent, { ev: 'conn' }> => e.ev === 'conn')
        .map(({ port, remote }) => ({ port, remote })),
    stop: async () => {
      await proc.stop();
    },
  };
}

const TCP_PROBE = `
const net = require('node:net');
const o = JSON.parse(process.argv[1]);
const started = Date.now();
let data = '', finished = false;
const done = (r) => {
  if (finished) return;
  finished = true;
  console.log(JSON.stringify({ ...r, ms: Date.now() - started }));
  process.exit(0);
};
const s = net.connect({ host: o.host, port: o.port });
s.setEncoding('utf8');
s.on('data', (d) => { data += d; });
s.on('end', () => done({ ok: true, reply: data }));
s.on('error', (e) => done({ ok: false, error: e.code || e.message }));
setTimeout(() => done({ ok: false, error: 'timeout' }), o.timeoutMs);
`;

export type TcpProbeResult =
  | { ok: true; reply: { port: number; remote: string }; ms: number }
  | { ok: false; error: string; ms: number };

/**
 * Connects from `ns` to host:port (a tcpServer) and reads its line: `{ ok: true, reply }`, or
 * `{ ok: false, error }` with 'timeout' when nothing answered within `timeoutMs` (a silent drop), or the error code.
 */
export async function tcpProbe(
  ns: Netns,
  host: string,
  port: number,
  { timeoutMs = 3_000 }: { timeoutMs?: number } = {},
): Promise<TcpProbeResult> {
  const r = await ns.exec(process.execPath, ['-e', TCP_PROBE, JSON.stringify({ host, port, timeoutMs })], {
    timeoutMs: timeoutMs + 10_000,
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  const parsed = JSON.parse(line) as
    { ok: true; reply: string; ms: number } | { ok: false; error: string; ms: number };
  if (!parsed.ok) return parsed;
  return { ok: true, reply: JSON.parse(parsed.reply) as { port: number; remote: string }, ms: parsed.ms };
}

// ---------------------------------------------------------------------------------------------------------------
// Ping timelines

export interface PingReply {
  seq: number;
  /** Wall-clock time the reply arrived (ping -D), in ms since the epoch: comparable with Date.now(). */
  atMs: number;
}

/**
 * Starts `ping -D -n -i INTERVAL -W 1 -w DEADLINE DST` in `ns` (a lab process that ends on its own after
 * `deadlineS` seconds); `replies(proc.stdout)` gives the timeline once it has exited.
 */
export function pingTimeline(
  ns: Netns,
  dst: string,
  { intervalS = 0.1, deadlineS }: { intervalS?: number; deadlineS: number },
): ManagedProcess {
  return ns.spawn('ping', [
    '-4',
    '-D',
    '-n',
    '-i',
    String(intervalS),
    '-W',
    '1',
    '-w',
    String(deadlineS),
    dst,
  ]);
}

/** The replies in ping -D output. */
export function pingReplies(output: string): PingReply[] {
  return [...output.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from [^:]+: icmp_seq=(\d+)/gm)].map((m) => ({
    seq: Number(m[2]),
    atMs: Number(m[1]) * 1000,
  }));
}

/** Waits (bounded) for a ping timeline to end by its deadline; kills it otherwise. */
export async function pingFinished(proc: ManagedProcess, timeoutMs: number): Promise<PingReply[]> {
  const status = await within(proc.exited, timeoutMs);
  if (!status) {
    await proc.stop();
    throw new Error(`ping did not end by its deadline: ${proc.describe()}`);
  }
  return pingReplies(proc.stdout);
}

// ---------------------------------------------------------------------------------------------------------------
// iperf3 with intervals

export interface IperfIntervals {
  code: number | null;
  error?: string;
  /** Per-interval bytes and seconds (the sender's view). */
  intervals: { bytes: number; seconds: number }[];
  sentBytes: number;
  receivedBytes: number;
  retransmits: number;
}

/**
 * A TCP iperf3 run from `clientNs` to a one-shot server in `serverNs` at `address`, at `rate` (e.g. "50M"),
 * reporting every `intervalS` seconds. Resolves when the client has finished (bounded).
 */
export async function iperf3Intervals(
  clientNs: Netns,
  serverNs: Netns,
  address: string,
  {
    seconds,
    intervalS = 0.5,
    rate,
    onStarted,
  }: { seconds: number; intervalS?: number; rate?: string; onStarted?: () => void },
): Promise<IperfIntervals> {
  const port = freshPort();
  const server = serverNs.spawn('iperf3', ['-s', '-1', '-p', String(port)]);
  try {
    await waitForTcpListener(serverNs, port);
    const args = ['-c', address, '-p', String(port), '-t', String(seconds), '-i', String(intervalS), '-J'];
    if (rate !== undefined) args.push('-b', rate);
    args.push('--connect-timeout', '5000');
    const pending = clientNs.exec('iperf3', args, { allowFail: true, timeoutMs: seconds * 1000 + 20_000 });
    onStarted?.();
    const client = await pending;
    let report: {
      error?: string;
      intervals?: { sum?: { bytes?: number; seconds?: number } }[];
      end?: {
        sum_sent?: { bytes?: number; retransmits?: number };
        sum_received?: { bytes?: number };
      };
    };
    try {
      report = JSON.parse(client.stdout) as typeof report;
    } catch {
      throw new Error(`iperf3 printed no JSON (exit ${client.code}): ${client.stdout}${client.stderr}`);
    }
    return {
      code: client.code,
      ...(report.error !== undefined ? { error: report.error } : {}),
      intervals: (report.intervals ?? []).map((i) => ({
        bytes: i.sum?.bytes ?? 0,
        seconds: i.sum?.seconds ?? 0,
      })),
      sentBytes: report.end?.sum_sent?.bytes ?? 0,
      receivedBytes: report.end?.sum_received?.bytes ?? 0,
      retransmits: report.end?.sum_sent?.retransmits ?? 0,
    };
  } finally {
    await server.stop().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// nftables

/** `nft list ruleset` in `ns`. */
export async function nftRuleset(ns: Netns): Promise<string> {
  return (await ns.exec('nft', ['list', 'ruleset'])).stdout;
}

/** The `table FAMILY NAME` headers of a ruleset whose name contains "weft". */
export function weftTables(ruleset: string): string[] {
  return [...ruleset.matchAll(/^table (\S+) (\S*weft\S*) \{/gim)].map((m) => `${m[1]} ${m[2]}`);
}

/** How many masquerade (or snat) rules the ruleset holds. */
export function natRuleCount(ruleset: string): number {
  return ruleset.split('\n').filter((l) => /\b(masquerade|snat)\b/.test(l) && !/^\s*(type|chain)\b/.test(l))
    .length;
}

// ---------------------------------------------------------------------------------------------------------------
// `weft export` digests

export interface ExportDigest {
  members: { name: string; ip: string; publicKey: string; groups: string[] }[];
  groups: string[];
  routes: string[];
  policies: string[];
}

type Yamlish = unknown;

function asRecord(v: Yamlish): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : undefined;
}

/** Items of a list, or of a map keyed by name (the key becomes `name`). */
function items(v: Yamlish): Record<string, unknown>[] {
  if (Array.isArray(v)) {
    return v.map((x) => (typeof x === 'string' ? { name: x } : (asRecord(x) ?? { value: x })));
  }
  const record = asRecord(v);
  if (!record) return [];
  return Object.entries(record).map(([name, x]) => ({ name, ...(asRecord(x) ?? { value: x }) }));
}

function pick(o: Record<string, unknown>, ...keys: string[]): unknown {
  for (const k of keys) if (o[k] !== undefined) return o[k];
  return undefined;
}

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  const record = asRecord(v);
  if (record) {
    return `{${Object.keys(record)
      .filter((k) => k !== 'id' && record[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson(record[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/**
 * The parts of a `weft export` document that must survive export → apply → export: members (name, ip, public
 * key, groups), group names, route prefixes and policies (every field but an id), each sorted. Tolerates lists
 * or name-keyed maps and camelCase or snake_case keys, since only the content is under test here.
 */
export function exportDigest(yamlText: string): ExportDigest {
  const doc = asRecord(parseYaml(yamlText) as Yamlish);
  if (!doc) throw new Error(`weft export is not a YAML mapping:\n${yamlText}`);
  const members = items(doc.members).map((m) => ({
    name: String(m.name),
    ip: String(pick(m, 'ip', 'address', 'ipv4')),
    publicKey: String(pick(m, 'publicKey', 'public_key', 'public-key', 'pubkey')),
    groups: ((pick(m, 'groups') as unknown[] | undefined) ?? []).map(String).sort(),
  }));
  const groups = items(doc.groups).map((g) => String(g.name));
  const routes = items(pick(doc, 'routes', 'sharedRoutes', 'shared_routes')).map((r) =>
    String(pick(r, 'cidr', 'prefix', 'name', 'value')),
  );
  const policies = (Array.isArray(doc.policies) ? (doc.policies as unknown[]) : items(doc.policies)).map(
    stableJson,
  );
  return {
    members: members.sort((x, y) => x.name.localeCompare(y.name)),
    groups: groups.sort(),
    routes: routes.sort(),
    policies: policies.sort(),
  };
}
