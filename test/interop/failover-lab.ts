/**
 * The lab the failover tests share: a PostgreSQL of their own (postgres-harness.ts), a LAN namespace holding a
 * bridge, namespaces hung off it by veth pairs, and two gateways A and B, each run as a real `weft server run`
 * with `--shared-address` on its LAN interface. The tests keep their steps and bars; this module keeps the
 * plumbing: namespaces, data directories, interface names, the CLI and API in each gateway's namespace, and the
 * cleanup.
 */
import { join as joinPath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { JsonLinesProcess, Lab, type ManagedProcess, type Netns } from './harness.js';
import { weftCli, WEFT_MAIN } from './gateway-lab.js';
import type { WgQuickClient } from './people-lab.js';
import { startPostgres, type PostgresServer } from './postgres-harness.js';

export type GatewayKey = 'a' | 'b';

export interface ApiEvent {
  ev: string;
  id?: number;
  status?: number;
  body?: unknown;
}

const API_CLIENT = fileURLToPath(new URL('./api-client.js', import.meta.url));

export function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`prerequisite missing: ${what} (an earlier step failed)`);
  return value;
}

/** Reply times (ms since the epoch) from `ping -D` output. */
export function replyTimes(stdout: string): number[] {
  const out: number[] = [];
  for (const m of stdout.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from \S+: icmp_seq=\d+/gm))
    out.push(Math.round(Number(m[1]) * 1000));
  return out;
}

export interface FailoverLabOptions {
  /** The lab's kind (Lab.create). */
  kind: string;
  tools: readonly string[];
  /** The shared address with its prefix length, e.g. `192.168.74.100/24` or `fd74::100/64`. */
  shared: string;
}

export class FailoverLab {
  lab!: Lab;
  pg: PostgresServer | undefined;
  /** The store's URL over the PostgreSQL server's Unix socket. */
  storeUrl = '';
  /** The API token `server init` printed (set by the test). */
  token = '';
  readonly shared: string;
  readonly ns: Partial<Record<string, Netns>> = {};
  readonly dirs: Record<GatewayKey, string> = { a: '', b: '' };
  readonly ifnames: Record<GatewayKey, string> = { a: '', b: '' };
  readonly lanIf: Record<GatewayKey, string> = { a: '', b: '' };
  readonly servers: Partial<Record<GatewayKey, ManagedProcess>> = {};
  readonly members: Partial<Record<string, WgQuickClient>> = {};
  bridge = '';
  private lanNs: Netns | undefined;
  private requests = 0;

  constructor(private readonly options: FailoverLabOptions) {
    this.shared = options.shared;
  }

  /** Creates the lab and a PostgreSQL server with a database `weft`. */
  async setup(): Promise<void> {
    this.lab = await Lab.create(this.options.kind, { tools: this.options.tools });
    const pg = await startPostgres();
    this.pg = pg;
    await pg.createDatabase('weft');
    this.storeUrl = `postgres://weft@localhost:${pg.port}/weft?host=${encodeURIComponent(joinPath(pg.dir, 'socket'))}`;
  }

  /** The LAN namespace `name` with a bridge (hardware address `mac` when given) holding `addresses` (with length). */
  async createLan(
    name: string,
    addresses: readonly string[],
    { mac, nodad = false }: { mac?: string; nodad?: boolean } = {},
  ): Promise<Netns> {
    const lan = await this.lab.netns(name);
    this.lanNs = lan;
    this.bridge = this.lab.ifname('br');
    await lan.exec('ip', ['link', 'add', this.bridge, ...(mac ? ['address', mac] : []), 'type', 'bridge']);
    await lan.exec('ip', ['link', 'set', this.bridge, 'up']);
    for (const addr of addresses)
      await lan.exec('ip', ['addr', 'add', addr, 'dev', this.bridge, ...(nodad ? ['nodad'] : [])]);
    return lan;
  }

  /** A veth pair from `n` (`u<key>`, address `addr` with length) to a port `p<key>` of the bridge; `u<key>`. */
  async attach(n: Netns, key: string, addr: string): Promise<string> {
    const lan = need(this.lanNs, 'the LAN namespace');
    const { aIf, bIf } = await this.lab.veth(n, lan, {
      aName: `u${key}`,
      bName: `p${key}`,
      ...(addr.includes(':') ? { aAddr6: addr } : { aAddr: addr }),
    });
    await lan.exec('ip', ['link', 'set', bIf, 'master', this.bridge]);
    return aIf;
  }

  /** Gateway `key` in namespace `nsName`, on the LAN at `addr` (with length), its WireGuard interface `wgName`. */
  async addGateway(key: GatewayKey, nsName: string, addr: string, wgName: string): Promise<Netns> {
    const g = await this.lab.netns(nsName);
    this.ns[key] = g;
    this.lanIf[key] = await this.attach(g, key, addr);
    this.dirs[key] = this.lab.file(`data-${key}`);
    this.ifnames[key] = this.lab.ifname(wgName);
    this.lab.registerWgInterface(this.ifnames[key]);
    return g;
  }

  netns(key: string): Netns {
    return need(this.ns[key], `namespace ${key}`);
  }

  server(key: GatewayKey): ManagedProcess {
    const s = need(this.servers[key], `gateway ${key.toUpperCase()}`);
    if (!s.running) throw new Error(`gateway ${key.toUpperCase()} is no longer running: ${s.describe()}`);
    return s;
  }

  weft(key: GatewayKey, args: readonly string[]): ReturnType<typeof weftCli> {
    return weftCli(this.netns(key), [...args, '--data', this.dirs[key]], { timeoutMs: 30_000 });
  }

  /** `server init --store` in A's data directory: `endpoint` (the shared address's), the members' `subnet`, `extra`. */
  init(
    storeUrl: string,
    endpoint: string,
    subnet: string,
    extra: readonly string[] = [],
  ): ReturnType<typeof weftCli> {
    return this.weft('a', [
      'server',
      'init',
      '--store',
      storeUrl,
      '--endpoint',
      endpoint,
      '--subnet',
      subnet,
      ...extra,
    ]);
  }

  /** `gateway join --store` of A and B (named gw-a and gw-b), each with its own endpoint. */
  async join(storeUrl: string, endpoints: Record<GatewayKey, string>): Promise<void> {
    await Promise.all(
      (['a', 'b'] as const).map((key) =>
        this.weft(key, [
          'gateway',
          'join',
          '--store',
          storeUrl,
          '--name',
          `gw-${key}`,
          '--endpoint',
          endpoints[key],
        ]),
      ),
    );
  }

  /** Starts gateway `key` (`weft server run` with the shared address on its LAN interface). */
  start(key: GatewayKey): ManagedProcess {
    const proc = this.netns(key).spawn(process.execPath, [
      WEFT_MAIN,
      'server',
      'run',
      '--data',
      this.dirs[key],
      '--interface',
      this.ifnames[key],
      '--shared-address',
      this.shared,
      '--shared-interface',
      this.lanIf[key],
    ]);
    this.servers[key] = proc;
    return proc;
  }

  async hasShared(key: GatewayKey): Promise<boolean> {
    const family = this.shared.includes(':') ? '-6' : '-4';
    const { stdout } = await this.netns(key).exec('ip', [
      family,
      '-o',
      'addr',
      'show',
      'dev',
      this.lanIf[key],
    ]);
    return stdout.includes(` ${this.shared} `);
  }

  /** GET requests through the gateway's own API (a short-lived client in its namespace), each within `timeoutMs`. */
  async get(key: GatewayKey, paths: readonly string[], timeoutMs = 15_000): Promise<ApiEvent[]> {
    const client = new JsonLinesProcess<ApiEvent>(
      this.netns(key).spawn(process.execPath, [API_CLIENT], {
        env: { WEFT_API: 'http://127.0.0.1:8780/api/v1', WEFT_TOKEN: this.token },
      }),
    );
    try {
      await client.next('ready');
      const out: ApiEvent[] = [];
      for (const path of paths) {
        const id = ++this.requests;
        client.command({ id, method: 'GET', path });
        out.push(
          await client.waitFor(
            `reply ${id} (GET ${path})`,
            (e) => e.ev === 'reply' && e.id === id,
            timeoutMs,
          ),
        );
      }
      return out;
    } finally {
      client.process.kill('SIGTERM');
    }
  }

  /**
   * Kills `first` (SIGKILL), stops the gateways (within `stopMs` each), takes the members down, then removes
   * the lab and stops PostgreSQL, whatever failed before.
   */
  async cleanup(stopMs: number, first: readonly (ManagedProcess | undefined)[] = []): Promise<void> {
    try {
      for (const p of first) if (p?.running) p.kill('SIGKILL');
      for (const s of Object.values(this.servers))
        if (s?.running) await s.stop(stopMs).catch(() => undefined);
      for (const m of Object.values(this.members)) await m?.down().catch(() => undefined);
    } finally {
      try {
        await this.lab?.cleanup();
      } finally {
        await this.pg?.stop();
      }
    }
  }
}
