/**
 * One Weft ESP endpoint for interop tests, run in a namespace (`ip netns exec NS node esp-gateway-host.js
 * CONFIG`): a LinuxTun, the Gateway and its Router, an EspPort on UDP 4500 (and the raw ESP socket when asked),
 * and one IpsecSite holding the CHILD SA the test made (mirrorSpecs, so the two processes agree), routed to the
 * site's subnets. The test configures the TUN's addresses and routes with `ip` once "ready" is reported.
 *
 * JSON lines. stdin: {"op":"status"} | {"op":"inject","hex":H,"carrier":"udp"|"raw","to":{address,port}}
 * (sends H as one datagram: how a test re-injects a captured packet) | {"op":"exit"}.
 * stdout: {"ev":"ready",...} | {"ev":"status",...} | {"ev":"injected"} | {"ev":"error",...}.
 */
import { createInterface } from 'node:readline';
import { EspPort } from '../../src/gateway/esp-port.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { IpsecSite } from '../../src/gateway/ipsec-site.js';
import { RawEspBind } from '../../src/io/esp-raw.js';
import { LinuxTun } from '../../src/io/tun-linux.js';
import { openBestBind } from '../../src/io/udp-linux.js';
import type { TrafficSelector } from '../../src/ipsec/child-sa.js';
import { parsePrefix } from '../../src/net/ip.js';
import { mirrorSpecs, type MirrorOptions } from '../support/esp-specs.js';

export interface EspHostConfig {
  tun: string;
  mtu: number;
  side: 'a' | 'b';
  netA: TrafficSelector[];
  netB: TrafficSelector[];
  options: MirrorOptions;
  carrier: 'udp' | 'raw';
  peer: { address: string; port: number };
  localAddress: string;
  routes: string[];
}

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as EspHostConfig;
  const tun = await LinuxTun.open(config.tun, { mtu: config.mtu });
  const gateway = new Gateway(tun);
  const udp = await openBestBind(4500);
  const raw = config.carrier === 'raw' ? RawEspBind.open() : undefined;
  const port = new EspPort({ udp, ...(raw ? { raw } : {}) });
  const site = new IpsecSite({ name: 'site', port, deliver: gateway.deliver });
  const specs = mirrorSpecs(config.netA, config.netB, config.options);
  site.installChildSa(config.side === 'a' ? specs.a : specs.b, {
    peer: config.peer,
    carrier: config.carrier,
    localAddress: config.localAddress,
  });
  gateway.setRoutes(
    site,
    config.routes.map((r) => {
      const p = parsePrefix(r);
      if (!p.ok) throw new Error(p.error);
      return p.value;
    }),
  );
  gateway.start();
  port.start();
  emit({ ev: 'ready', tun: tun.name });

  const status = (): Record<string, unknown> => ({
    port: port.counters,
    set: port.inbound.drops,
    site: site.counters,
    sas: site.childSas(),
    router: gateway.router.counters,
    gateway: gateway.counters,
    raw: raw?.counters,
  });
  const commands = createInterface({ input: process.stdin });
  let closing = false;
  const close = async (): Promise<void> => {
    if (closing) return;
    closing = true;
    commands.close();
    await port.close();
    await gateway.close();
    process.exit(0);
  };
  commands.on('line', (line) => {
    const cmd = JSON.parse(line) as {
      op: string;
      hex?: string;
      carrier?: 'udp' | 'raw';
      to?: { address: string; port: number };
    };
    switch (cmd.op) {
      case 'status':
        emit({ ev: 'status', ...status() });
        break;
      case 'inject':
        port.send(cmd.carrier ?? 'udp', [
          { data: new Uint8Array(Buffer.from(cmd.hex ?? '', 'hex')), endpoint: cmd.to ?? config.peer },
        ]);
        emit({ ev: 'injected' });
        break;
      case 'exit':
        void close();
        break;
      default:
        emit({ ev: 'error', message: `unknown op ${cmd.op}` });
    }
  });
  commands.on('close', () => void close());
  process.on('SIGTERM', () => void close());
}

main().catch((error: unknown) => {
  emit({ ev: 'error', message: (error as Error).message });
  process.exit(1);
});
