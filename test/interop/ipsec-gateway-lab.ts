/**
 * The lab of the IPsec gateway interop tests: Weft's gateway (ipsec-gateway-host.ts: a LinuxTun, the Gateway
 * and startIpsec with SiteSpecs) in one namespace, strongSwan in another, a host behind each:
 *
 *   hw 10.12.0.2 / fd00:12::2 ── wf [Weft TUN] 192.168.N.1 / fdNN::1 ══ 192.168.N.2 / fdNN::2 sw [charon] ── hs 10.11.0.2 / fd00:11::2
 *
 * Site specs, status requests, the gateway's log, strongSwan's matching connection, and a traffic check
 * (pings both ways and a sha256-checked 4 MiB each way).
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

import type { SiteSpec, SiteStatus } from '../../src/ipsec/site-spec.js';
import { linkedPair, ping, verifiedTransfer } from './gateway-lab.js';
import { JsonLinesProcess, Lab, waitFor, type Netns } from './harness.js';
import type { IpsecGatewayHostConfig } from './ipsec-gateway-host.js';
import type { Charon, SwanConnection } from './strongswan.js';
const HOST = fileURLToPath(new URL('./ipsec-gateway-host.js', import.meta.url));

export const PSK = 'interop-psk-0123456789-abcdef';

export interface GatewayEvent {
  ev: string;
  id?: number;
  line?: string;
  lines?: string[];
  tun?: string;
  sites?: SiteStatus[];
  ipsec?: Record<string, number>;
  port?: Record<string, number>;
}

export const NETS = {
  weft: { v4: '10.12.0.0/24', v6: 'fd00:12::/64', host4: '10.12.0.2', host6: 'fd00:12::2' },
  sw: { v4: '10.11.0.0/24', v6: 'fd00:11::/64', host4: '10.11.0.2', host6: 'fd00:11::2' },
};

export function siteSpec(over: Partial<SiteSpec> & Pick<SiteSpec, 'remoteAddress'>): SiteSpec {
  return {
    name: 'sw',
    enabled: true,
    localId: { type: 'fqdn', value: 'weft.example' },
    remoteId: { type: 'fqdn', value: 'sw.example' },
    psk: PSK,
    forceShortPsk: false,
    localSubnets: [NETS.weft.v4],
    remoteSubnets: [NETS.sw.v4],
    mode: 'tunnel',
    ikeProposals: ['aes256gcm16-prfsha256-x25519'],
    espProposals: ['aes256gcm16'],
    allowLegacyGroups: false,
    ikeLifetimeSec: 14_400,
    childLifetimeSec: 3_600,
    dpdIntervalSec: 30,
    dpdAction: 'restart',
    startAction: 'initiate',
    groups: [],
    ...over,
  };
}

let nextId = 1;
export async function hostStatus(host: JsonLinesProcess<GatewayEvent>): Promise<GatewayEvent> {
  const id = nextId++;
  host.command({ op: 'status', id });
  return host.waitFor('status', (e) => e.ev === 'status' && e.id === id, 5_000);
}

export async function waitSiteState(
  host: JsonLinesProcess<GatewayEvent>,
  name: string,
  state: SiteStatus['state'],
  timeoutMs: number,
  charon?: Charon,
): Promise<SiteStatus> {
  let last: SiteStatus | undefined;
  try {
    return await waitFor(
      `site ${name} ${state}`,
      async () => {
        last = (await hostStatus(host)).sites?.find((s) => s.name === name);
        return last?.state === state ? last : null;
      },
      { timeoutMs, intervalMs: 200 },
    );
  } catch (error) {
    const logs = await weftLog(host);
    throw new Error(
      `${(error as Error).message}\nlast status: ${JSON.stringify(last)}\n--- Weft log ---\n${logs}` +
        (charon ? `\n--- charon log (tail) ---\n${await charon.logTail()}` : ''),
      { cause: error },
    );
  }
}

export interface Topology {
  lab: Lab;
  wf: Netns;
  sw: Netns;
  hw: Netns;
  hs: Netns;
  wf4: string;
  sw4: string;
  wf6: string;
  sw6: string;
}

export async function topology(lab: Lab, n: number): Promise<Topology> {
  const { a: wf, b: sw, a4: wf4, b4: sw4, a6: wf6, b6: sw6 } = await linkedPair(lab, 'wf', 'sw', n);
  const hw = await lab.netns('hw');
  const hs = await lab.netns('hs');
  await lab.veth(hw, wf, {
    aAddr: '10.12.0.2/24',
    bAddr: '10.12.0.1/24',
    aAddr6: 'fd00:12::2/64',
    bAddr6: 'fd00:12::1/64',
  });
  await lab.veth(hs, sw, {
    aAddr: '10.11.0.2/24',
    bAddr: '10.11.0.1/24',
    aAddr6: 'fd00:11::2/64',
    bAddr6: 'fd00:11::1/64',
  });
  await hw.exec('ip', ['route', 'add', 'default', 'via', '10.12.0.1']);
  await hw.exec('ip', ['-6', 'route', 'add', 'default', 'via', 'fd00:12::1']);
  await hs.exec('ip', ['route', 'add', 'default', 'via', '10.11.0.1']);
  await hs.exec('ip', ['-6', 'route', 'add', 'default', 'via', 'fd00:11::1']);
  for (const gw of [wf, sw]) {
    await gw.sysctl('net.ipv4.ip_forward', 1);
    await gw.sysctl('net.ipv6.conf.all.forwarding', 1);
    await gw.sysctl('net.ipv4.conf.all.rp_filter', 0);
    await gw.sysctl('net.ipv4.conf.default.rp_filter', 0);
  }
  return { lab, wf, sw, hw, hs, wf4, sw4, wf6, sw6 };
}

/** Starts the Weft gateway in `ns` with `sites`, brings its TUN up and routes `routes` into it. */
export async function startWeft(
  lab: Lab,
  ns: Netns,
  sites: SiteSpec[],
  routes: string[],
): Promise<JsonLinesProcess<GatewayEvent>> {
  const tun = lab.ifname('ips');
  const config: IpsecGatewayHostConfig = { tun, mtu: 1400, sites };
  const host = new JsonLinesProcess<GatewayEvent>(ns.spawn(process.execPath, [HOST, JSON.stringify(config)]));
  await host.waitFor('ready', (e) => e.ev === 'ready', 15_000);
  await ns.exec('ip', ['link', 'set', tun, 'up']);
  for (const r of routes)
    await ns.exec('ip', [...(r.includes(':') ? ['-6'] : []), 'route', 'add', r, 'dev', tun]);
  return host;
}

/** Every line the Weft gateway logged (asked for: stdout keeps only its last 16 KiB of events). */
export async function weftLog(host: JsonLinesProcess<GatewayEvent>): Promise<string> {
  const id = nextId++;
  host.command({ op: 'logs', id });
  const e = await host.waitFor('logs', (x) => x.ev === 'logs' && x.id === id, 5_000).catch(() => undefined);
  return (e?.lines ?? []).join('\n');
}

export function swConnection(
  t: Topology,
  over: Partial<SwanConnection> & { inner: 4 | 6; outer: 4 | 6 },
): SwanConnection {
  const { inner, outer, ...rest } = over;
  const fam = inner === 4 ? 'v4' : 'v6';
  return {
    name: 'weft',
    localAddrs: outer === 4 ? t.sw4 : t.sw6,
    remoteAddrs: outer === 4 ? t.wf4 : t.wf6,
    proposals: 'aes256gcm16-prfsha256-x25519',
    localId: 'sw.example',
    remoteId: 'weft.example',
    psk: PSK,
    children: [
      {
        name: 'net',
        localTs: NETS.sw[fam],
        remoteTs: NETS.weft[fam],
        esp: 'aes256gcm16',
        startAction: 'none',
      },
    ],
    ...rest,
  };
}

export async function checkTraffic(t: Topology, inner: 4 | 6, label: string): Promise<void> {
  const hsAddr = inner === 4 ? NETS.sw.host4 : NETS.sw.host6;
  const hwAddr = inner === 4 ? NETS.weft.host4 : NETS.weft.host6;
  for (const [from, to] of [
    [t.hw, hsAddr],
    [t.hs, hwAddr],
  ] as const) {
    const r = await ping(from, to, { count: 3 });
    assert.equal(r.received, 3, `ping ${to}: ${r.output}`);
  }
  const transfer = await verifiedTransfer(t.hw, t.hs, hsAddr, { bytes: 4 << 20, timeoutMs: 60_000 });
  assert.equal(transfer.received.bytes, 4 << 20);
  assert.equal(transfer.received.sha256, transfer.expectedSha256);
  const back = await verifiedTransfer(t.hs, t.hw, hwAddr, { bytes: 4 << 20, timeoutMs: 60_000 });
  assert.equal(back.received.sha256, back.expectedSha256);
  process.stdout.write(
    `# ${label}: 4 MiB Weft side → strongSwan side in ${transfer.ms} ms, back in ${back.ms} ms\n`,
  );
}
