/**
 * The people VPN's commands: `weft server`, `member`, `group`, `route`, `policy`, `apply`, `export`,
 * `audit`, `token`.
 *
 * Every command but `server run` works on the data directory's store through the control plane, the same
 * code the REST API calls. A running server follows the store and applies each change within a second;
 * with no server running, changes wait in the store and take effect when it starts.
 */
import { existsSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import {
  ControlPlane,
  LINK_TTL_MINUTES,
  type ConfigDownloadState,
  type MemberView,
} from '../control/control-plane.js';
import type { Store } from '../control/store.js';
import { destinationSpec, policyText } from '../control/validate.js';
import { internetWarning } from '../control/internet-access.js';
import { openSqliteStore } from '../control/store-sqlite.js';
import {
  createStore,
  DEFAULT_DATA_DIR,
  openSqliteDir,
  openStore,
  postgresUrlOption,
  storeLocation,
  storePath,
} from '../server/data-dir.js';
import { STORE_ENV } from '../control/store-open.js';
import { redactUrl } from '../control/store-postgres.js';
import { hostUplinks } from '../server/host-networks.js';
import { UserError } from '../control/errors.js';
import { tightenStdout, writeSecret } from './keys.js';
import { PACK_OSES, PACK_PROTOCOLS } from '../openvpn/client-pack.js';

export interface DataOption {
  data?: string;
}

function dataDir(opts: DataOption): string {
  return opts.data ?? process.env['WEFT_DATA'] ?? DEFAULT_DATA_DIR;
}

export function actor(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return `cli:uid${process.getuid?.() ?? '?'}`;
  }
}

/** Runs `fn` with the control plane of the data directory, closing the store afterwards. */
export function withControlPlane<T>(opts: DataOption, fn: (cp: ControlPlane) => T): T {
  const store: Store = openStore(dataDir(opts));
  try {
    return fn(new ControlPlane(store, undefined, { uplinks: hostUplinks }));
  } finally {
    store.close();
  }
}

/** withControlPlane for work that awaits (signing certificates): the store stays open until it is done. */
async function withControlPlaneAsync<T>(opts: DataOption, fn: (cp: ControlPlane) => Promise<T>): Promise<T> {
  const store: Store = openStore(dataDir(opts));
  try {
    return await fn(new ControlPlane(store, undefined, { uplinks: hostUplinks }));
  } finally {
    store.close();
  }
}

function oneOf<T extends string>(option: string, value: string, allowed: readonly T[]): T {
  const found = allowed.find((a) => a === value);
  if (found === undefined) throw new UserError(`weft: ${option} must be one of ${allowed.join(', ')}`);
  return found;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function print(value: unknown, json: boolean | undefined, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function ago(iso: string | null): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** On standard error (standard output may be a config file): why a full-tunnel member has no internet. */
function warnInternet(cp: ControlPlane, m: MemberView): void {
  const w = internetWarning(m.name, m.fullTunnel, m.groups, cp.settings(), cp.listPolicies());
  if (w) process.stderr.write(`weft: warning: ${w}\n`);
}

/** Whether HOST:PORT is a loopback address (or localhost): reachable from this machine only. */
function loopbackOnly(listen: string): boolean {
  const host = listen.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

function memberState(m: MemberView): string {
  if (m.disabled) return 'disabled';
  if (!m.active) return 'expired';
  return 'enabled';
}

/**
 * The CONFIG column: whether the config the member was last handed is still the one it would get; the
 * WireGuard config's state first (never, current, stale), then `openvpn:STATE` once an OpenVPN profile was
 * handed out ("current,openvpn:stale").
 */
function configState(m: MemberView): string {
  const state = (d: MemberView['configDownload']): string => (!d ? 'never' : d.stale ? 'stale' : 'current');
  const wireguard = state(m.configDownload);
  return m.openvpnConfigDownload ? `${wireguard},openvpn:${state(m.openvpnConfigDownload)}` : wireguard;
}

function configDetail(m: MemberView): string {
  const d = m.configDownload;
  if (!d) return 'never handed out';
  return d.stale
    ? `changed since it was downloaded (${ago(d.at)}): hand out the new one (weft member config ${m.name})`
    : `current (downloaded ${ago(d.at)})`;
}

/**
 * After a change of policies or routes: the members whose downloaded config no longer matches (their
 * AllowedIPs moved), so the operator knows whom to send a new one.
 */
function staleNotice(cp: ControlPlane): string {
  const names = cp.staleConfigs();
  if (names.length === 0) return '';
  const shown =
    names.slice(0, 10).join(', ') + (names.length > 10 ? `, ... (${names.length - 10} more)` : '');
  return (
    `\n${names.length} member config(s) changed since they were downloaded: ${shown}\n` +
    'hand out the new ones (weft member config NAME)'
  );
}

function openVpnDetail(m: MemberView, d: ConfigDownloadState | null | undefined): string[] {
  if (d === undefined) return [];
  if (d === null) return ['openvpn:        never handed out'];
  return [
    d.stale
      ? `openvpn:        changed since it was downloaded (${ago(d.at)}): hand out the new one ` +
        `(weft member config ${m.name} --openvpn)`
      : `openvpn:        current (downloaded ${ago(d.at)})`,
  ];
}

function memberDetail(m: MemberView, openvpn?: ConfigDownloadState | null): string {
  const s = m.status;
  return [
    `member:         ${m.name}`,
    `ip:             ${m.ip}${m.ip6 ? `, ${m.ip6}` : ''}`,
    `public key:     ${m.publicKey}${m.hasPrivateKey ? '' : ' (the member holds its private key)'}`,
    `groups:         ${m.groups.join(', ') || '(none)'}`,
    `state:          ${memberState(m)}`,
    `expires:        ${m.expiresAt ?? 'never'}`,
    `full tunnel:    ${m.fullTunnel ? 'yes' : 'no'}`,
    `config:         ${configDetail(m)}`,
    ...openVpnDetail(m, openvpn),
    `online:         ${s?.online ? 'yes' : 'no'}`,
    `endpoint:       ${s?.endpoint ?? '-'}`,
    `last handshake: ${ago(s?.lastHandshake ?? null)}`,
    `transfer:       ${bytes(s?.rxBytes ?? 0)} received, ${bytes(s?.txBytes ?? 0)} sent`,
    `policy drops:   ${s?.policyDrops ?? 0}`,
  ].join('\n');
}

export function registerPeopleCommands(program: Command): void {
  const data = (c: Command): Command =>
    c.option('-d, --data <dir>', `data directory (default: $WEFT_DATA or ${DEFAULT_DATA_DIR})`);

  // ---- server ----
  const server = program.command('server').description('the people VPN gateway: create its store, run it');
  data(
    server
      .command('init')
      .description('create the store, the gateway key pair and the first admin credentials (printed once)')
      .requiredOption('--endpoint <host[:port]>', 'what members dial (port default 51820)')
      .requiredOption('--subnet <cidr>', "members' IPv4 subnet; the gateway takes its first address")
      .option('--subnet6 <cidr>', "members' IPv6 subnet")
      .option('--dns <ip>', 'DNS server for member configs (repeatable)', collect)
      .option('--nat-egress <iface>', "members egress from this interface's address (source NAT)")
      .option('--interface <name>', 'WireGuard interface name', 'weft0')
      .option('--api-listen <host:port>', 'REST API address', '127.0.0.1:8780')
      .option('--default-policy <allow|deny>', 'what traffic no policy matches gets', 'deny')
      .option(
        '--store <url>',
        `a shared PostgreSQL store (postgres://...; or $${STORE_ENV}); default: SQLite in DIR`,
      )
      .option('--force', 'replace an existing store in the data directory'),
  ).action(
    async (
      opts: DataOption & {
        endpoint: string;
        subnet: string;
        subnet6?: string;
        dns?: string[];
        natEgress?: string;
        interface: string;
        apiListen: string;
        defaultPolicy: string;
        store?: string;
        force?: boolean;
      },
    ) => {
      const dir = dataDir(opts);
      const env = process.env[STORE_ENV];
      const url =
        opts.store !== undefined
          ? postgresUrlOption('--store', opts.store)
          : env !== undefined && env !== ''
            ? postgresUrlOption(STORE_ENV, env)
            : undefined;
      // Validate before touching the directory, so a typo never replaces a store.
      const input = {
        endpoint: opts.endpoint,
        subnet: opts.subnet,
        subnet6: opts.subnet6 ?? null,
        dns: opts.dns ?? [],
        natEgress: opts.natEgress ?? null,
        interfaceName: opts.interface,
        apiListen: opts.apiListen,
        defaultPolicy: opts.defaultPolicy,
      };
      ControlPlane.validateInit(input);
      const store = createStore(dir, opts.force === true, url);
      try {
        const r = ControlPlane.init(store, input);
        // Weft's CA, the OpenVPN server certificate and tls-crypt-v2 key (secrets in the store, never printed).
        await new ControlPlane(store).ensureOpenVpn();
        tightenStdout(); // the admin password and the token, when the output goes to a file
        process.stdout.write(
          [
            url === undefined ? `initialised ${dir}` : `initialised ${redactUrl(url)} (recorded in ${dir})`,
            `gateway public key: ${r.gatewayPublicKey}`,
            `admin user: admin`,
            `admin password: ${r.adminPassword}`,
            `api token: ${r.apiToken}`,
            'The password and the token are shown only now; keep them somewhere safe.',
            '',
          ].join('\n'),
        );
      } finally {
        store.close();
      }
    },
  );
  data(
    server
      .command('run')
      .description('run the gateway, the REST API and the web console in the foreground (stop: SIGTERM)')
      .option('--api-listen <host:port>', 'serve the API and the console here (default: the stored setting)')
      .option('--tls-cert <file>', 'PEM certificate (chain): serve HTTPS (with --tls-key)')
      .option('--tls-key <file>', 'PEM private key of --tls-cert')
      .option('--interface <name>', 'WireGuard interface name (default: the stored setting)')
      .option(
        '--shared-address <addr/bits>',
        'a member-facing IPv4 or IPv6 address shared with other gateways; held by one at a time (PostgreSQL store)',
      )
      .option('--shared-interface <name>', 'the interface that carries --shared-address'),
  ).action(
    async (
      opts: DataOption & {
        apiListen?: string;
        tlsCert?: string;
        tlsKey?: string;
        interface?: string;
        sharedAddress?: string;
        sharedInterface?: string;
      },
    ) => {
      // Loaded here so the other commands start without the data plane and the HTTP server.
      const { apiListenOption, interfaceOption, readTlsFiles, serverRunForeground } =
        await import('../server/run.js');
      const { sharedAddressOption } = await import('../server/failover.js');
      const sharedAddress = sharedAddressOption(opts.sharedAddress, opts.sharedInterface);
      // Both checked before anything is set up, so a typo never leaves half a gateway behind.
      const tls = readTlsFiles(opts.tlsCert, opts.tlsKey);
      const apiListen = opts.apiListen === undefined ? undefined : apiListenOption(opts.apiListen);
      const interfaceName = opts.interface === undefined ? undefined : interfaceOption(opts.interface);
      await serverRunForeground(dataDir(opts), {
        ...(tls ? { tls } : {}),
        ...(interfaceName ? { interfaceName } : {}),
        ...(apiListen ? { apiListen } : {}),
        ...(sharedAddress ? { sharedAddress } : {}),
      });
    },
  );

  data(
    server
      .command('endpoint')
      .description('print what members dial, or change it (configs handed out before keep the old one)')
      .argument('[host[:port]]', 'the new endpoint (port default 51820)'),
  ).action((endpoint: string | undefined, opts: DataOption) =>
    withControlPlane(opts, (cp) => {
      const before = cp.settings().endpoint;
      if (endpoint === undefined) return void console.log(before);
      const after = cp.updateSettings(actor(), { endpoint }).endpoint;
      if (after === before) return void console.log(`endpoint: ${after} (unchanged)`);
      console.log(
        `endpoint changed: ${before} -> ${after}\n` +
          `Configs handed out before still dial ${before}: give each member its config again ` +
          '(weft member config NAME).',
      );
    }),
  );

  data(
    server
      .command('multicast')
      .description('print whether multicast is on, or turn it on or off (docs/multicast.md)')
      .argument('[on|off]', 'on: the gateway replicates group traffic; member configs route 224.0.0.0/4')
      .option('--lan <interface>', 'be an IGMP proxy on this LAN interface (e.g. eth1); "none" for no LAN'),
  ).action((state: string | undefined, opts: DataOption & { lan?: string }) =>
    withControlPlane(opts, (cp) => {
      const before = cp.settings();
      if (state === undefined && opts.lan === undefined) {
        const lan = before.multicastLan === undefined ? '' : ` (LAN ${before.multicastLan})`;
        return void console.log(before.multicast === true ? `on${lan}` : 'off');
      }
      if (state !== undefined && state !== 'on' && state !== 'off')
        throw new UserError(`weft: server multicast takes "on" or "off", not ${JSON.stringify(state)}`);
      const after = cp.updateSettings(actor(), {
        ...(state !== undefined ? { multicast: state === 'on' } : {}),
        ...(opts.lan !== undefined ? { multicastLan: opts.lan === 'none' ? null : opts.lan } : {}),
      });
      if (opts.lan !== undefined && after.multicastLan !== before.multicastLan)
        console.log(
          `multicast LAN: ${after.multicastLan ?? 'none'} (the gateway applies it at its next start)`,
        );
      if (state === undefined) return;
      const on = after.multicast === true;
      if (on === (before.multicast === true))
        return void console.log(`multicast: ${on ? 'on' : 'off'} (unchanged)`);
      console.log(
        `multicast ${on ? 'on' : 'off'}: the gateway applies it at its next start; give each member its ` +
          'config again (weft member config NAME): its AllowedIPs changed.',
      );
    }),
  );

  data(
    server
      .command('openvpn')
      .description("print OpenVPN's settings, or change them (profiles handed out before keep the old ports)")
      .option('--udp-port <port|off>', 'UDP listener port (default 1194), or "off"')
      .option('--tcp-port <port|off>', 'TCP listener port (default 443), or "off"')
      .option('--data-ciphers <list>', 'data ciphers in order, e.g. AES-256-GCM:CHACHA20-POLY1305')
      .option('--reneg-sec <seconds>', 'seconds between data key renegotiations (0: never)')
      .option('--certificate-days <days>', 'member certificate lifetime when the member has no expiry')
      .option('--json', 'print JSON'),
  ).action(
    (
      opts: DataOption & {
        udpPort?: string;
        tcpPort?: string;
        dataCiphers?: string;
        renegSec?: string;
        certificateDays?: string;
        json?: boolean;
      },
    ) =>
      withControlPlane(opts, (cp) => {
        const port = (p: string | undefined): string | null | undefined => (p === 'off' ? null : p);
        const patch = {
          ...(opts.udpPort !== undefined ? { udpPort: port(opts.udpPort) } : {}),
          ...(opts.tcpPort !== undefined ? { tcpPort: port(opts.tcpPort) } : {}),
          ...(opts.dataCiphers !== undefined ? { dataCiphers: opts.dataCiphers.split(/[:,]/) } : {}),
          ...(opts.renegSec !== undefined ? { renegSec: opts.renegSec } : {}),
          ...(opts.certificateDays !== undefined ? { certificateDays: opts.certificateDays } : {}),
        };
        const o =
          Object.keys(patch).length === 0
            ? cp.settings().openvpn
            : cp.updateSettings(actor(), { openvpn: patch }).openvpn;
        print(o, opts.json, () =>
          [
            `udp port: ${o?.udpPort ?? 'off'}`,
            `tcp port: ${o?.tcpPort ?? 'off'}`,
            `data ciphers: ${o?.dataCiphers.join(':')}`,
            `reneg-sec: ${o?.renegSec}`,
            `certificate days: ${o?.certificateDays}`,
          ].join('\n'),
        );
      }),
  );
  data(
    server
      .command('crl')
      .description("the revocation list of Weft's CA (PEM), for an OpenVPN server's --crl-verify")
      .option('-o, --output <file>', 'write it to FILE instead of standard output'),
  ).action(async (opts: DataOption & { output?: string }) => {
    const crl = await withControlPlaneAsync(opts, (cp) => cp.openVpnCrl());
    writeSecret(crl, opts.output);
    if (opts.output) console.error(`wrote ${opts.output}`);
  });

  // ---- members ----
  const member = program
    .command('member')
    .description("members: people's devices, each with keys and a fixed tunnel IP");
  data(
    member
      .command('add')
      .argument('<name>')
      .description('add a member (keys generated here unless --public-key is given)')
      .option('--ip <addr>', 'fixed tunnel address (default: the lowest free one)')
      .option('--group <group>', 'group (repeatable)', collect)
      .option('--expires <date>', 'cut the member off at this date (YYYY-MM-DD) or ISO time')
      .option('--public-key <key>', "the member's own public key; its private key never reaches the server")
      .option('--full-tunnel', "send all the member's traffic through the gateway")
      .option('--json', 'print JSON'),
  ).action(
    (
      name: string,
      opts: DataOption & {
        ip?: string;
        group?: string[];
        expires?: string;
        publicKey?: string;
        fullTunnel?: boolean;
        json?: boolean;
      },
    ) =>
      withControlPlane(opts, (cp) => {
        const m = cp.addMember(actor(), {
          name,
          ip: opts.ip,
          groups: opts.group,
          expiresAt: opts.expires,
          publicKey: opts.publicKey,
          fullTunnel: opts.fullTunnel,
        });
        print(
          m,
          opts.json,
          () => `added ${m.name}: ${m.ip}${m.ip6 ? `, ${m.ip6}` : ''}, public key ${m.publicKey}`,
        );
        warnInternet(cp, m);
      }),
  );
  data(
    member
      .command('list')
      .description('members with online state, endpoint, last handshake and transfer')
      .option('--search <text>', 'only members whose name, IP or group contains TEXT')
      .option('--after <name>', 'start after this name (pages)')
      .option('--limit <n>', 'page size', '1000')
      .option('--json', 'print JSON'),
  ).action((opts: DataOption & { search?: string; after?: string; limit: string; json?: boolean }) =>
    withControlPlane(opts, (cp) => {
      const page = cp.listMembers({ search: opts.search, after: opts.after, limit: opts.limit });
      print(page, opts.json, () => {
        const rows = page.items.map((m) => [
          m.name,
          m.ip,
          m.groups.join(',') || '-',
          memberState(m),
          m.status?.online ? 'online' : 'offline',
          m.status?.endpoint ?? '-',
          ago(m.status?.lastHandshake ?? null),
          bytes(m.status?.rxBytes ?? 0),
          bytes(m.status?.txBytes ?? 0),
          configState(m),
        ]);
        const footer = page.next ? `\n(${page.total} in all; next page: --after ${page.next})` : '';
        return (
          table(
            ['NAME', 'IP', 'GROUPS', 'STATE', 'ONLINE', 'ENDPOINT', 'HANDSHAKE', 'RX', 'TX', 'CONFIG'],
            rows,
          ) + footer
        );
      });
    }),
  );
  data(member.command('show').argument('<name>').option('--json', 'print JSON')).action(
    (name: string, opts: DataOption & { json?: boolean }) =>
      withControlPlane(opts, (cp) => {
        const m = cp.getMember(name);
        print(m, opts.json, () => memberDetail(m, cp.openVpnConfigDownload(m.name)));
      }),
  );
  for (const [verb, disabled] of [
    ['disable', true],
    ['enable', false],
  ] as const) {
    data(member.command(verb).argument('<name>').description(`${verb} a member (applies at once)`)).action(
      (name: string, opts: DataOption) =>
        withControlPlane(opts, (cp) => {
          const m = cp.setDisabled(actor(), name, disabled);
          console.log(`${m.name} is ${memberState(m)}`);
        }),
    );
  }
  data(
    member
      .command('set')
      .argument('<name>')
      .description("change a member's groups, expiry or tunnel mode")
      .option('--group <group>', 'the member is in exactly these groups (repeatable)', collect)
      .option('--no-groups', 'remove the member from every group')
      .option('--expires <date>', 'YYYY-MM-DD, ISO time, or "never"')
      .option('--full-tunnel', 'all traffic through the gateway')
      .option('--split-tunnel', 'only what its policies allow through the gateway'),
  ).action(
    (
      name: string,
      opts: DataOption & {
        group?: string[];
        groups?: boolean;
        expires?: string;
        fullTunnel?: boolean;
        splitTunnel?: boolean;
      },
    ) =>
      withControlPlane(opts, (cp) => {
        if (opts.fullTunnel && opts.splitTunnel)
          throw new UserError('weft: --full-tunnel or --split-tunnel, not both');
        const m = cp.updateMember(actor(), name, {
          groups: opts.groups === false ? [] : opts.group,
          expiresAt: opts.expires,
          fullTunnel: opts.fullTunnel ? true : opts.splitTunnel ? false : undefined,
        });
        console.log(memberDetail(m));
        warnInternet(cp, m);
      }),
  );
  data(
    member.command('remove').argument('<name>').description('remove a member; its address is freed'),
  ).action((name: string, opts: DataOption) =>
    withControlPlane(opts, (cp) => {
      cp.removeMember(actor(), name);
      console.log(`removed ${name}`);
    }),
  );
  data(
    member
      .command('rotate')
      .argument('<name>')
      .description(
        'new keys for a member: WireGuard key, and OpenVPN certificate and tls-crypt-v2 key (the old ones are ' +
          'revoked at once)',
      )
      .option('--public-key <key>', "the member's new WireGuard public key (its own key pair)")
      .option('--only <protocol>', "rotate only this protocol's credentials: wireguard or openvpn"),
  ).action((name: string, opts: DataOption & { publicKey?: string; only?: string }) =>
    withControlPlaneAsync(opts, async (cp) => {
      const protocols =
        opts.only === undefined ? undefined : [oneOf('--only', opts.only, ['wireguard', 'openvpn'])];
      const m = cp.rotateMember(actor(), name, opts.publicKey, protocols);
      if (protocols === undefined || protocols.includes('wireguard'))
        console.log(`${m.name}: new WireGuard public key ${m.publicKey} (weft member config ${m.name})`);
      if (protocols === undefined || protocols.includes('openvpn')) {
        const credential = await cp.openVpnCredential(m.name);
        console.log(
          `${m.name}: OpenVPN certificate and key revoked; new certificate serial ${credential.serial} ` +
            `(weft member config ${m.name} --openvpn)`,
        );
      }
    }),
  );
  data(
    member
      .command('config')
      .argument('<name>')
      .description("the member device's wg-quick config (it holds the member's private key: files are 0600)")
      .option('-o, --output <file>', 'write the config to FILE (mode 0600) instead of standard output')
      .option('--qr', 'print it as a QR code for the WireGuard mobile apps')
      .option('--qr-png <file>', 'write the QR code to a PNG file (mode 0600)')
      .option(
        '--openvpn',
        'the inline OpenVPN profile (.ovpn) instead (issues the certificate on first use)',
      ),
  ).action(
    async (
      name: string,
      opts: DataOption & { output?: string; qr?: boolean; qrPng?: string; openvpn?: boolean },
    ) => {
      if (opts.openvpn) {
        if (opts.qr || opts.qrPng)
          throw new UserError('weft: --qr and --qr-png are for WireGuard configs only');
        const profile = await withControlPlaneAsync(opts, (cp) => cp.deliverOpenVpnConfig(name));
        writeSecret(profile, opts.output);
        if (opts.output) console.error(`wrote ${opts.output}`);
        return;
      }
      const text = withControlPlane(opts, (cp) => {
        const config = cp.deliverConfig(name);
        warnInternet(cp, cp.getMember(name));
        return config;
      });
      if (opts.output) {
        writeSecret(text, opts.output);
        console.error(`wrote ${opts.output}`);
      }
      if (opts.qrPng) {
        const { renderQr } = await import('../control/qr.js');
        writeSecret(await renderQr(text, 'png'), opts.qrPng);
        console.error(`wrote ${opts.qrPng}`);
      }
      if (opts.qr)
        writeSecret(await (await import('../control/qr.js')).renderQr(text, 'terminal'), undefined);
      else if (!opts.qrPng && !opts.output) writeSecret(text, undefined);
    },
  );

  data(
    member
      .command('pack')
      .argument('<name>')
      .description(
        "a script that installs the VPN client unattended with the member's config, started at boot " +
          '(it holds the private key: files are 0600)',
      )
      .requiredOption('--os <os>', 'windows (PowerShell), linux or macos (sh)')
      .option('--protocol <protocol>', 'openvpn or wireguard', 'openvpn')
      .option('-o, --output <file>', 'write the script to FILE (default: standard output)'),
  ).action(async (name: string, opts: DataOption & { os: string; protocol: string; output?: string }) => {
    const os = oneOf('--os', opts.os, PACK_OSES);
    const protocol = oneOf('--protocol', opts.protocol, PACK_PROTOCOLS);
    const pack = await withControlPlaneAsync(opts, (cp) => cp.deliverClientPack(name, os, protocol));
    writeSecret(pack.script, opts.output);
    if (opts.output) console.error(`wrote ${opts.output}`);
  });

  data(
    member
      .command('link')
      .argument('<name>')
      .description("a one-time download link of the member's config (works once, until it expires)")
      .option('--ttl <minutes>', 'minutes until the link expires', String(LINK_TTL_MINUTES.default))
      .option('--openvpn', 'a link to the OpenVPN profile (.ovpn) instead of the WireGuard config'),
  ).action((name: string, opts: DataOption & { ttl: string; openvpn?: boolean }) =>
    withControlPlane(opts, (cp) => {
      const link = cp.createDownloadLink(
        actor(),
        name,
        Number(opts.ttl),
        opts.openvpn ? 'openvpn' : 'wireguard',
      );
      const { apiListen: listen, endpoint } = cp.settings();
      // An API on every address: the link names the host members dial, which people reach.
      const wildcard = /^(0\.0\.0\.0|\[::\]|::):\d+$/.exec(listen);
      const origin = wildcard ? `${endpoint.replace(/:\d+$/, '')}:${listen.replace(/^.*:/, '')}` : listen;
      writeSecret(`http://${origin}/dl/${link.token}\n`, undefined);
      process.stderr.write(
        `weft: the link works once, until ${link.expiresAt}; https:// when the server runs with --tls-cert\n`,
      );
      if (loopbackOnly(listen))
        process.stderr.write(
          `weft: warning: the API listens on ${listen} (apiListen), on this machine only, so this link ` +
            'works only here; to send it to someone, serve the API on an address they reach, e.g. ' +
            '`weft server run --api-listen 0.0.0.0:8780 --tls-cert FILE --tls-key FILE`, or set ' +
            'apiListen in the settings\n',
        );
    }),
  );

  // ---- groups ----
  const group = program.command('group').description('groups of members, which policies refer to');
  data(
    group.command('add').argument('<name>').option('--description <text>', 'what the group is for'),
  ).action((name: string, opts: DataOption & { description?: string }) =>
    withControlPlane(opts, (cp) => {
      cp.addGroup(actor(), { name, description: opts.description });
      console.log(`added group ${name}`);
    }),
  );
  data(
    group.command('remove').argument('<name>').description('refused while members or policies use it'),
  ).action((name: string, opts: DataOption) =>
    withControlPlane(opts, (cp) => {
      cp.removeGroup(actor(), name);
      console.log(`removed group ${name}`);
    }),
  );
  data(group.command('list').option('--json', 'print JSON')).action((opts: DataOption & { json?: boolean }) =>
    withControlPlane(opts, (cp) => {
      const groups = cp.listGroups();
      print(groups, opts.json, () =>
        table(
          ['GROUP', 'MEMBERS', 'DESCRIPTION'],
          groups.map((g) => [g.name, String(g.members), g.description]),
        ),
      );
    }),
  );

  // ---- routes ----
  const route = program.command('route').description('shared subnets behind the gateway (e.g. a cloud VPC)');
  data(
    route
      .command('add')
      .argument('<cidr>')
      .option('--description <text>', 'what lives there')
      .option('--gateway <name>', 'the registered gateway whose host serves it (the others route it there)'),
  ).action((cidr: string, opts: DataOption & { description?: string; gateway?: string }) =>
    withControlPlane(opts, (cp) => {
      const r = cp.addRoute(actor(), { cidr, description: opts.description, gateway: opts.gateway });
      console.log(
        `added route ${r.cidr}${r.gateway === undefined ? '' : ` (served by ${r.gateway})`}${staleNotice(cp)}`,
      );
    }),
  );
  data(route.command('remove').argument('<cidr>')).action((cidr: string, opts: DataOption) =>
    withControlPlane(opts, (cp) => {
      cp.removeRoute(actor(), cidr);
      console.log(`removed route ${cidr}${staleNotice(cp)}`);
    }),
  );
  data(route.command('list').option('--json', 'print JSON')).action((opts: DataOption & { json?: boolean }) =>
    withControlPlane(opts, (cp) => {
      const routes = cp.listRoutes();
      print(routes, opts.json, () =>
        table(
          ['ROUTE', 'GATEWAY', 'DESCRIPTION'],
          routes.map((r) => [r.cidr, r.gateway ?? '(every)', r.description]),
        ),
      );
    }),
  );

  // ---- policies ----
  const policy = program
    .command('policy')
    .description(
      'who reaches what: deny rules win over allow rules; the default policy decides the rest ' +
        '(multicast receive rules, --receive: deny by default)',
    );
  for (const action of ['allow', 'deny'] as const) {
    data(
      policy
        .command(action)
        .argument('<group>', 'a group, or "*" for every member')
        .argument('<dest>', 'CIDR, group:NAME or any, optionally :tcp|udp|icmp[/PORT[-PORT]]')
        .option(
          '--receive',
          `a multicast receive rule: <dest> is a group range (e.g. 239.1.0.0/16) or any, whose copies members of <group> ${action === 'allow' ? 'may' : 'may not'} receive`,
        ),
    ).action((groupName: string, dest: string, opts: DataOption & { receive?: boolean }) =>
      withControlPlane(opts, (cp) => {
        const spec = destinationSpec('destination', dest);
        const direction = opts.receive === true ? 'receive' : 'send';
        const p = cp.addPolicy(actor(), { action, group: groupName, ...spec, direction });
        console.log(`added policy #${p.id}: ${policyText(p)}${staleNotice(cp)}`);
      }),
    );
  }
  data(policy.command('remove').argument('<id>')).action((id: string, opts: DataOption) =>
    withControlPlane(opts, (cp) => {
      cp.removePolicy(actor(), id.replace(/^#/, ''));
      console.log(`removed policy #${id.replace(/^#/, '')}${staleNotice(cp)}`);
    }),
  );
  data(policy.command('list').option('--json', 'print JSON')).action(
    (opts: DataOption & { json?: boolean }) =>
      withControlPlane(opts, (cp) => {
        const policies = cp.listPolicies();
        print(policies, opts.json, () =>
          [
            `default: ${cp.settings().defaultPolicy}`,
            ...policies.map((p) => `#${p.id}  ${policyText(p)}`),
          ].join('\n'),
        );
      }),
  );

  // ---- declarative state ----
  data(
    program
      .command('apply')
      .description(
        'make the network match a YAML file (settings, groups, routes, policies, members, sites); idempotent',
      )
      .requiredOption('-f, --file <file>', 'the desired state ("-" for standard input)')
      .option('--dry-run', 'print what would change, change nothing'),
  ).action(async (opts: DataOption & { file: string; dryRun?: boolean }) => {
    // The state-file modules (YAML, schemas) load only for the commands that use them.
    const { applyState, parseStateYaml } = await import('../control/desired-state.js');
    const { readStateFile } = await import('./state-file.js');
    const state = parseStateYaml(readStateFile(opts.file));
    withControlPlane(opts, (cp) => {
      const changes = applyState(cp, actor(), state, { dryRun: opts.dryRun });
      if (changes.length === 0) console.log('no changes');
      for (const c of changes) console.log(`${opts.dryRun ? 'would ' : ''}${c.op} ${c.kind} ${c.target}`);
    });
  });
  data(
    program
      .command('export')
      .description('print the current state as YAML for `weft apply` (no private keys)')
      .option('--include-secrets', "also write each IPsec site's pre-shared key (psk)"),
  ).action(async (opts: DataOption & { includeSecrets?: boolean }) => {
    const { exportState, formatStateYaml } = await import('../control/desired-state.js');
    if (opts.includeSecrets) tightenStdout();
    withControlPlane(
      opts,
      (cp) =>
        void process.stdout.write(formatStateYaml(exportState(cp, { includeSecrets: opts.includeSecrets }))),
    );
  });

  // ---- backup ----
  data(
    program
      .command('backup')
      .argument('<file>', 'where the copy goes (created with mode 0600)')
      .description(
        'copy the store to FILE, consistent even while the server runs (restoring: docs/people-vpn.md)',
      )
      .option('--force', 'replace FILE if it exists'),
  ).action(async (file: string, opts: DataOption & { force?: boolean }) => {
    const dir = dataDir(opts);
    const where = storeLocation(dir);
    if (where.kind === 'postgres')
      throw new UserError(
        `weft: the store is the PostgreSQL database ${redactUrl(where.url)}; back it up with pg_dump`,
      );
    const source = storePath(dir);
    if ([source, `${source}-wal`, `${source}-shm`].map((f) => resolve(f)).includes(resolve(file)))
      throw new UserError(`weft: ${file} is the store itself; back it up to another file`);
    if (existsSync(file)) {
      if (!opts.force) throw new UserError(`weft: ${file} exists; use --force to replace it`);
      for (const f of [file, `${file}-wal`, `${file}-shm`, `${file}-journal`]) rmSync(f, { force: true });
    }
    const store = openSqliteDir(dir); // refuses a damaged store: a copy of it would be no backup
    try {
      await store.backup(file);
    } catch (e) {
      rmSync(file, { force: true }); // half a copy must not pass for a backup
      throw e;
    } finally {
      store.close();
    }
    const copy = openSqliteStore(file);
    try {
      const check = copy.quickCheck();
      if (check !== 'ok')
        throw new UserError(`weft: the copy in ${file} does not pass SQLite's check: ${check}`);
      const members = copy.memberCounts(new Date().toISOString()).total;
      console.log(`backed up ${source} to ${file} (${members} members; SQLite's check: ok)`);
    } finally {
      copy.close();
    }
  });

  // ---- audit and tokens ----
  data(
    program
      .command('audit')
      .description('the audit log, newest first')
      .option('--limit <n>', 'entries', '50')
      .option('--target <name>', 'only entries about this member, group, ...')
      .option('--json', 'print JSON'),
  ).action((opts: DataOption & { limit: string; target?: string; json?: boolean }) =>
    withControlPlane(opts, (cp) => {
      const entries = cp.listAudit({ limit: opts.limit, target: opts.target });
      print(entries, opts.json, () =>
        table(
          ['WHEN', 'WHO', 'WHAT', 'TARGET', 'DETAIL'],
          entries.map((e) => [e.at, e.actor, e.action, e.target, JSON.stringify(e.detail)]),
        ),
      );
    }),
  );
  const token = program.command('token').description('REST API tokens');
  data(
    token
      .command('create')
      .argument('<name>')
      .option('-o, --output <file>', 'write only the token to FILE (mode 0600) instead of printing it'),
  ).action((name: string, opts: DataOption & { output?: string }) =>
    withControlPlane(opts, (cp) => {
      const t = cp.createToken(actor(), name);
      if (opts.output) {
        writeSecret(`${t.secret}\n`, opts.output);
        console.log(`token #${t.token.id} (${name}) written to ${opts.output}; it is shown nowhere else.`);
      } else writeSecret(`token #${t.token.id} (${name}): ${t.secret}\nIt is shown only now.\n`, undefined);
    }),
  );
  data(token.command('list').option('--json', 'print JSON')).action((opts: DataOption & { json?: boolean }) =>
    withControlPlane(opts, (cp) => {
      const tokens = cp.listTokens();
      print(tokens, opts.json, () =>
        table(
          ['ID', 'NAME', 'CREATED', 'LAST USED'],
          tokens.map((t) => [String(t.id), t.name, t.createdAt, t.lastUsedAt ?? 'never']),
        ),
      );
    }),
  );
  data(token.command('revoke').argument('<id>')).action((id: string, opts: DataOption) =>
    withControlPlane(opts, (cp) => {
      cp.revokeToken(actor(), id);
      console.log(`revoked token #${id}`);
    }),
  );
}
