/**
 * One Weft IPsec gateway for interop tests, run in a namespace (`ip netns exec NS node ipsec-gateway-host.js
 * CONFIG`): a LinuxTun, the Gateway and its Router, and startIpsec with the sites of CONFIG (SiteSpec JSON) on
 * UDP 500/4500 and the raw ESP socket. The test configures the TUN's addresses and routes with `ip` once
 * "ready" is reported.
 *
 * JSON lines. stdin: {"op":"status","id":N} | {"op":"update","sites":[SiteSpec...],"id":N} |
 * {"op":"logs","id":N} | {"op":"rekey","site":NAME,"what":"ike"|"child","id":N} | {"op":"exit"}
 * (the id comes back in the answer, so a test can wait for the answer to its own request).
 * stdout: {"ev":"ready","tun":NAME} | {"ev":"log","line":TEXT} (every line the IPsec shell logs) |
 * {"ev":"status","sites":[SiteStatus...],"ipsec":{...},"port":{...},"router":{...}} | {"ev":"updated"} |
 * {"ev":"rekeyed","ok":BOOL} |
 * {"ev":"logs","lines":[...]} |
 * {"ev":"bye"} | {"ev":"error","message":TEXT}.
 */
import { createInterface } from 'node:readline';

import { Gateway } from '../../src/gateway/gateway.js';
import { LinuxTun } from '../../src/io/tun-linux.js';
import type { SiteSpec } from '../../src/ipsec/site-spec.js';
import { startIpsec } from '../../src/server/ipsec.js';

export interface IpsecGatewayHostConfig {
  tun: string;
  mtu: number;
  sites: SiteSpec[];
  noRawEsp?: boolean;
}

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as IpsecGatewayHostConfig;
  const tun = await LinuxTun.open(config.tun, { mtu: config.mtu });
  const gateway = new Gateway(tun);
  gateway.start();
  const logs: string[] = [];
  const log = (line: string): void => {
    if (logs.length >= 1000) logs.shift();
    logs.push(line);
    emit({ ev: 'log', line });
  };
  const ipsec = await startIpsec(gateway, config.sites, log, {
    ...(config.noRawEsp === true ? { noRawEsp: true } : {}),
  });
  emit({ ev: 'ready', tun: tun.name });

  const commands = createInterface({ input: process.stdin });
  let closing = false;
  const close = async (): Promise<void> => {
    if (closing) return;
    closing = true;
    commands.close();
    await ipsec.close();
    await gateway.close();
    emit({ ev: 'bye' });
    process.exit(0);
  };
  commands.on('line', (line) => {
    let cmd: { op?: string; sites?: SiteSpec[]; id?: number; site?: string; what?: string };
    try {
      cmd = JSON.parse(line) as typeof cmd;
    } catch {
      emit({ ev: 'error', message: 'not JSON' });
      return;
    }
    switch (cmd.op) {
      case 'status':
        emit({
          ev: 'status',
          id: cmd.id,
          sites: ipsec.status(),
          ipsec: ipsec.counters,
          port: ipsec.port.counters,
          router: gateway.router.counters,
          gateway: gateway.counters,
        });
        break;
      case 'logs':
        emit({ ev: 'logs', id: cmd.id, lines: logs });
        break;
      case 'update':
        ipsec.update(cmd.sites ?? []);
        emit({ ev: 'updated', id: cmd.id });
        break;
      case 'rekey':
        emit({
          ev: 'rekeyed',
          id: cmd.id,
          ok: ipsec.rekey(cmd.site ?? '', cmd.what === 'ike' ? 'ike' : 'child'),
        });
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
