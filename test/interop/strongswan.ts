/**
 * strongSwan 5.9 (charon-systemd + swanctl, kernel-libipsec) for interop tests: charon runs in a namespace of
 * the lab, in a mount namespace of its own (a tmpfs on /run, its own strongswan.conf and swanctl/ bound over
 * /etc; see shared/INTEROP-NOTES.md), logging to a file the test can read. `swanctlConf` writes the
 * connection the tests need (PSK, one or more children) in swanctl.conf's syntax: one `key = value` a line.
 */
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';

import { waitFor, type JsonLinesProcess, type Lab, type ManagedProcess, type Netns } from './harness.js';

export const STRONGSWAN_TOOLS: readonly string[] = ['ip', 'charon-systemd', 'swanctl', 'unshare', 'nsenter'];

/** What ike-host.ts reports when an SA comes up (the fields expectSameSas reads). */
export interface UpEvent {
  readonly ev: string;
  readonly spiI?: string;
  readonly spiR?: string;
  readonly spec?: { readonly inboundSpi: string; readonly outboundSpi: string };
}

export class Charon {
  constructor(
    readonly ns: Netns,
    readonly process: ManagedProcess,
    readonly log: string,
    readonly dir: string,
  ) {}

  async swanctl(args: string[]): Promise<string> {
    const r = await this.ns.exec('nsenter', ['-t', String(this.process.pid), '-m', 'swanctl', ...args], {
      allowFail: true,
      timeoutMs: 15_000,
    });
    return r.stdout + r.stderr;
  }

  async logText(): Promise<string> {
    return fsp.readFile(this.log, 'utf8').catch(() => '');
  }

  async logTail(lines = 60): Promise<string> {
    return (await this.logText()).split('\n').slice(-lines).join('\n');
  }

  /** `host.waitFor`, failing with the tail of charon's log attached. */
  async expect<E extends { ev: string }>(
    host: JsonLinesProcess<E>,
    what: string,
    match: (e: E) => boolean,
    timeoutMs: number,
  ): Promise<E> {
    try {
      return await host.waitFor(what, match, timeoutMs);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n--- charon log (tail) ---\n${await this.logTail()}`, {
        cause: error,
      });
    }
  }

  /**
   * Waits for the ike-host core to report its IKE SA and CHILD SA up, then for charon to list the CHILD SA as
   * INSTALLED, and checks that both sides name the same SPIs (charon's inbound SPI is our outbound one).
   */
  async expectSameSas<E extends UpEvent>(
    host: JsonLinesProcess<E>,
  ): Promise<{ ike: E; child: E; sas: string }> {
    const ike = await this.expect(
      host,
      'ike-sa-up',
      (e) => e.ev === 'ike-sa-up' || e.ev === 'failed',
      20_000,
    );
    assert.equal(ike.ev, 'ike-sa-up', `${JSON.stringify(ike)}\n${await this.logText()}`);
    const child = await this.expect(
      host,
      'child-sa-up',
      (e) => e.ev === 'child-sa-up' || e.ev === 'failed',
      10_000,
    );
    assert.equal(child.ev, 'child-sa-up', JSON.stringify(child));
    const sas = await waitFor(
      'swanctl to list the CHILD SA as INSTALLED',
      async () => {
        const out = await this.swanctl(['--list-sas']);
        return /INSTALLED/.test(out) ? out : null;
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    );
    assert.match(sas, /ESTABLISHED, IKEv2/);
    // IKE SPIs as charon prints them ("<spiI>_i <spiR>_r", the local one starred).
    const spis = /([0-9a-f]{16})_i\*? ([0-9a-f]{16})_r/.exec(sas);
    assert.ok(spis, sas);
    assert.equal(spis[1], ike.spiI);
    assert.equal(spis[2], ike.spiR);
    assert.equal(/\bin +([0-9a-f]{8})/.exec(sas)?.[1], child.spec?.outboundSpi, sas);
    assert.equal(/\bout +([0-9a-f]{8})/.exec(sas)?.[1], child.spec?.inboundSpi, sas);
    return { ike, child, sas };
  }

  /** Ends charon (SIGTERM, then SIGKILL after the grace time). */
  async stop(graceMs = 3_000): Promise<void> {
    await this.process.stop(graceMs).catch(() => undefined);
  }

  /** kill -9, as a crash. */
  async crash(): Promise<void> {
    this.process.kill('SIGKILL');
    await this.process.stop(1_000).catch(() => undefined);
  }
}

export interface CharonOptions {
  /** The complete swanctl.conf (see swanctlConf). */
  swanctl: string;
  /** Keeps the log and configuration directory of an earlier charon (a restart in the same test). */
  dir?: string;
  /** Further files under swanctl/ (certificates in x509/ and x509ca/, keys in private/ with mode 0600). */
  files?: readonly { readonly path: string; readonly data: string; readonly mode?: number }[];
  /** Further `key = value` lines in strongswan.conf's charon section ("fragment_size = 576"). */
  charon?: readonly string[];
}

/** Starts charon in `ns` and waits until it answers on vici; the caller loads the configuration. */
export async function startCharon(lab: Lab, ns: Netns, options: CharonOptions): Promise<Charon> {
  // Outside /run: charon's mount namespace puts a tmpfs over /run, which would hide its log from us.
  const dir = options.dir ?? (await fsp.mkdtemp(path.join(os.tmpdir(), `weft-sw-${lab.prefix}-`)));
  await fsp.mkdir(path.join(dir, 'swanctl', 'conf.d'), { recursive: true });
  const log = path.join(dir, 'charon.log');
  await fsp.writeFile(
    path.join(dir, 'strongswan.conf'),
    [
      'charon {',
      '  load_modular = yes',
      ...(options.charon ?? []).map((line) => `  ${line}`),
      '  plugins {',
      '    include /etc/strongswan.d/charon/*.conf',
      '    kernel-libipsec {',
      '      load = yes',
      '    }',
      '  }',
      '}',
      'charon-systemd {',
      '  filelog {',
      '    f {',
      `      path = ${log}`,
      '      default = 1',
      '      flush_line = yes',
      '      append = yes',
      '      ike = 2',
      '      cfg = 2',
      '      enc = 1',
      '    }',
      '  }',
      '}',
      'include /etc/strongswan.d/*.conf',
      '',
    ].join('\n'),
  );
  await fsp.writeFile(path.join(dir, 'swanctl', 'swanctl.conf'), options.swanctl, { mode: 0o600 });
  for (const f of options.files ?? []) {
    const file = path.join(dir, 'swanctl', f.path);
    await fsp.mkdir(path.dirname(file), { recursive: true });
    await fsp.writeFile(file, f.data, { mode: f.mode ?? 0o644 });
  }
  const script =
    `mount --bind ${dir}/strongswan.conf /etc/strongswan.conf && ` +
    `mount --bind ${dir}/swanctl /etc/swanctl && mount -t tmpfs tmpfs /run && exec /usr/sbin/charon-systemd`;
  const proc = ns.spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script]);
  const charon = new Charon(ns, proc, log, dir);
  try {
    await waitFor('charon to answer on vici', async () => /IKE_SAs/.test(await charon.swanctl(['--stats'])), {
      timeoutMs: 15_000,
      intervalMs: 200,
    });
  } catch (error) {
    await charon.stop();
    throw error;
  }
  return charon;
}

export interface SwanChild {
  name: string;
  localTs: string;
  remoteTs: string;
  esp: string;
  /** start: initiate once loaded; none: answer only; trap does not work with kernel-libipsec here. */
  startAction: 'start' | 'none';
  mode?: 'tunnel' | 'transport';
  dpdAction?: 'clear' | 'restart' | 'trap';
  /** rekey_time ("0", the default, turns rekeying off); a hard life_time of 30 s goes with it. */
  rekeyTime?: string;
}

export interface SwanConnection {
  name: string;
  version?: 1 | 2;
  localAddrs: string;
  remoteAddrs: string;
  proposals: string;
  localId: string;
  remoteId: string;
  /** Pre-shared key authentication with this key, or certificates: `{ cert }` names our certificate (x509/). */
  psk: string | { readonly cert: string };
  /** IKE fragmentation (RFC 7383): charon's `fragmentation` setting. */
  fragmentation?: 'yes' | 'no' | 'accept' | 'force';
  dpdDelay?: string;
  /** Seconds between retransmissions etc. are left at charon's defaults. */
  encap?: boolean;
  /** The IKE SA's rekey_time ("0", the default, turns rekeying off); over_time 30 s goes with it. */
  rekeyTime?: string;
  children: SwanChild[];
}

/**
 * One or more connections, with PSK or certificate authentication, as swanctl.conf text (no rekeying: the
 * tests that want it say so).
 */
export function swanctlConf(connections: readonly SwanConnection[]): string {
  const lines: string[] = ['connections {'];
  for (const c of connections) {
    const auth = typeof c.psk === 'string' ? 'psk' : 'pubkey';
    lines.push(
      `  ${c.name} {`,
      `    version = ${c.version ?? 2}`,
      `    local_addrs = ${c.localAddrs}`,
      `    remote_addrs = ${c.remoteAddrs}`,
      `    proposals = ${c.proposals}`,
      ...(c.dpdDelay ? [`    dpd_delay = ${c.dpdDelay}`] : []),
      ...(c.encap ? ['    encap = yes'] : []),
      ...(c.fragmentation ? [`    fragmentation = ${c.fragmentation}`] : []),
      `    rekey_time = ${c.rekeyTime ?? '0'}`,
      // strongSwan's hard lifetimes default to 110% of rekey_time: far too tight for seconds.
      ...(c.rekeyTime ? ['    over_time = 30s'] : []),
      '    local {',
      `      auth = ${auth}`,
      ...(typeof c.psk === 'string' ? [] : [`      certs = ${c.psk.cert}`]),
      `      id = ${c.localId}`,
      '    }',
      '    remote {',
      `      auth = ${auth}`,
      `      id = ${c.remoteId}`,
      '    }',
      '    children {',
    );
    for (const ch of c.children) {
      lines.push(
        `      ${ch.name} {`,
        `        local_ts = ${ch.localTs}`,
        `        remote_ts = ${ch.remoteTs}`,
        `        esp_proposals = ${ch.esp}`,
        `        mode = ${ch.mode ?? 'tunnel'}`,
        `        rekey_time = ${ch.rekeyTime ?? '0'}`,
        ...(ch.rekeyTime ? ['        life_time = 30s'] : []),
        `        start_action = ${ch.startAction}`,
        ...(ch.dpdAction ? [`        dpd_action = ${ch.dpdAction}`] : []),
        '      }',
      );
    }
    lines.push('    }', '  }');
  }
  lines.push('}', 'secrets {');
  for (const c of connections) {
    if (typeof c.psk !== 'string') continue;
    lines.push(
      `  ike-${c.name} {`,
      `    id-1 = ${c.localId}`,
      `    id-2 = ${c.remoteId}`,
      `    secret = "${c.psk}"`,
      '  }',
    );
  }
  lines.push('}', '');
  return lines.join('\n');
}

/** Where a strongSwan site sits in a test: its box linked to the gateway, and a host on the LAN behind it. */
export interface SiteNamespaces {
  /** The strongSwan box. */
  readonly sw: Netns;
  /** The host on the site's LAN (default route via the box). */
  readonly hs: Netns;
  /** The host's interface on the LAN. */
  readonly hsIf: string;
}

/**
 * Makes a strongSwan site's namespaces: `sw` linked to `gateway` (outer addresses `outer.gateway` and `outer.sw`,
 * /24, over the veth `names[0]`/`names[1]`) and `hs` on a /24 LAN behind it (`lan.host`, `lan.sw`), routing by
 * way of `sw`; `sw` forwards, and reverse-path filtering is off on `gateway` and `sw` (the tunnel's packets enter
 * by another interface than their replies leave).
 */
export async function siteNamespaces(
  lab: Lab,
  gateway: Netns,
  outer: { readonly gateway: string; readonly sw: string },
  lan: { readonly host: string; readonly sw: string },
  names: readonly [string, string] = ['gs', 'sg'],
): Promise<SiteNamespaces> {
  const sw = await lab.netns('sw');
  await lab.veth(gateway, sw, {
    aName: names[0],
    bName: names[1],
    aAddr: `${outer.gateway}/24`,
    bAddr: `${outer.sw}/24`,
  });
  const hs = await lab.netns('hs');
  const { aIf: hsIf } = await lab.veth(hs, sw, {
    aName: 'hl',
    bName: 'sl',
    aAddr: `${lan.host}/24`,
    bAddr: `${lan.sw}/24`,
  });
  await hs.exec('ip', ['route', 'add', 'default', 'via', lan.sw]);
  await sw.sysctl('net.ipv4.ip_forward', 1);
  for (const n of [gateway, sw]) {
    await n.sysctl('net.ipv4.conf.all.rp_filter', 0);
    await n.sysctl('net.ipv4.conf.default.rp_filter', 0);
  }
  return { sw, hs, hsIf };
}
