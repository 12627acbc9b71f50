/**
 * The namespaces of the Weft ↔ Weft ESP interop test and bench: two ESP endpoints (esp-gateway-host.ts) with
 * mirror-image CHILD SAs, and a host in a subnet behind each:
 *
 *   ha 10.1.0.2 / fd00:1::2 ── gwA [TUN] 192.168.N.1 ══ ESP ══ 192.168.N.2 [TUN] gwB ── hb 10.2.0.2 / fd00:2::2
 *
 * In transport mode the ESP is between the gateways themselves, and only ICMP and TCP to the peer go through
 * the TUN device (policy routing), so the ESP packets still leave by the veth.
 */
import { JsonLinesProcess, type Lab, type Netns } from './harness.js';
import { linkedPair } from './gateway-lab.js';
import { mirrorKeys, selector, type MirrorOptions } from '../support/esp-specs.js';
import type { EspHostConfig } from './esp-gateway-host.js';
import { fileURLToPath } from 'node:url';

const HOST = fileURLToPath(new URL('./esp-gateway-host.js', import.meta.url));

export interface HostEvent {
  ev: string;
  sas?: {
    inbound: { packets: number; drops: Record<string, number> };
    outbound: { packets: number } | null;
  }[];
  set?: { short: number; unknownSpi: number };
  port?: Record<string, number>;
  raw?: Record<string, number>;
}

export interface Topology {
  lab: Lab;
  gwA: Netns;
  gwB: Netns;
  ha: Netns;
  hb: Netns;
  a4: string;
  b4: string;
  bIf: string;
  hostA: JsonLinesProcess<HostEvent>;
  hostB: JsonLinesProcess<HostEvent>;
}

export async function espTopology(
  lab: Lab,
  carrier: 'udp' | 'raw',
  mode: 'tunnel' | 'transport',
  n: number,
  extra: MirrorOptions = {},
): Promise<Topology> {
  const { a: gwA, b: gwB, a4, b4, bIf } = await linkedPair(lab, 'gwa', 'gwb', n);
  const ha = await lab.netns('ha');
  const hb = await lab.netns('hb');
  await lab.veth(ha, gwA, {
    aAddr: '10.1.0.2/24',
    bAddr: '10.1.0.1/24',
    aAddr6: 'fd00:1::2/64',
    bAddr6: 'fd00:1::1/64',
  });
  await lab.veth(hb, gwB, {
    aAddr: '10.2.0.2/24',
    bAddr: '10.2.0.1/24',
    aAddr6: 'fd00:2::2/64',
    bAddr6: 'fd00:2::1/64',
  });
  for (const [h, gw] of [
    [ha, '1'],
    [hb, '2'],
  ] as const) {
    await h.exec('ip', ['route', 'add', 'default', 'via', `10.${gw}.0.1`]);
    await h.exec('ip', ['-6', 'route', 'add', 'default', 'via', `fd00:${gw}::1`]);
  }
  for (const gw of [gwA, gwB]) {
    await gw.sysctl('net.ipv4.ip_forward', 1);
    await gw.sysctl('net.ipv6.conf.all.forwarding', 1);
    await gw.sysctl('net.ipv4.conf.all.rp_filter', 0);
    await gw.sysctl('net.ipv4.conf.default.rp_filter', 0);
  }
  const tunnel = mode === 'tunnel';
  const netA = tunnel
    ? [selector('10.1.0.0', '10.1.0.255'), selector('fd00:1::', 'fd00:1::ffff')]
    : [selector(a4, a4)];
  const netB = tunnel
    ? [selector('10.2.0.0', '10.2.0.255'), selector('fd00:2::', 'fd00:2::ffff')]
    : [selector(b4, b4)];
  const options = { mode, keys: mirrorKeys(extra), spiA: 0xa0000001, spiB: 0xb0000001, ...extra };
  const tunName = lab.ifname('esp');
  const start = async (ns: Netns, side: 'a' | 'b'): Promise<JsonLinesProcess<HostEvent>> => {
    const config: EspHostConfig = {
      tun: tunName,
      mtu: 1400,
      side,
      netA,
      netB,
      options,
      carrier,
      peer: { address: side === 'a' ? b4 : a4, port: carrier === 'udp' ? 4500 : 0 },
      localAddress: side === 'a' ? a4 : b4,
      routes: tunnel
        ? side === 'a'
          ? ['10.2.0.0/24', 'fd00:2::/64']
          : ['10.1.0.0/24', 'fd00:1::/64']
        : [`${side === 'a' ? b4 : a4}/32`],
    };
    const host = new JsonLinesProcess<HostEvent>(ns.spawn(process.execPath, [HOST, JSON.stringify(config)]));
    await host.next('ready', 0, 15_000);
    await ns.exec('ip', ['link', 'set', tunName, 'up']);
    const peer = side === 'a' ? b4 : a4;
    if (tunnel) {
      const remote = side === 'a' ? '2' : '1';
      await ns.exec('ip', ['route', 'add', `10.${remote}.0.0/24`, 'dev', tunName]);
      await ns.exec('ip', ['-6', 'route', 'add', `fd00:${remote}::/64`, 'dev', tunName]);
    } else {
      // Transport mode between the gateways themselves: only ICMP and TCP to the peer go through the TUN
      // device (policy routing), so the ESP packets (UDP 4500 or protocol 50) still leave by the veth.
      await ns.exec('ip', ['route', 'add', `${peer}/32`, 'dev', tunName, 'table', '100']);
      for (const proto of ['icmp', 'tcp'])
        await ns.exec('ip', ['rule', 'add', 'to', peer, 'ipproto', proto, 'table', '100']);
    }
    return host;
  };
  const hostA = await start(gwA, 'a');
  const hostB = await start(gwB, 'b');
  return { lab, gwA, gwB, ha, hb, a4, b4, bIf, hostA, hostB };
}
