/**
 * Hosts a Weft IKEv2 core on real UDP sockets (ports 500 and 4500 of one address), so a test can put it face
 * to face with strongSwan in another network namespace (`ip netns exec NS node ike-host.js CONFIG`).
 *
 * Control is line-oriented JSON: stdin takes {"op":"initiate"} | {"op":"delete"} | {"op":"status"} |
 * {"op":"rekey-child"} (every CHILD SA up, or {"outboundSpi":"hex"}) | {"op":"rekey-ike"} | {"op":"exit"}; stdout reports {"ev":"ready"} and one event per core action that matters to a test
 * (send, drop, ike-sa-up, ike-sa-down, child-sa-up, child-sa-down, failed) and {"ev":"status",...}.
 * The core's own clock is `Date.now()` here; its deadlines drive one timer.
 */
import { createSocket, type Socket } from 'node:dgram';
import { createInterface } from 'node:readline';

import type { IkeAction } from '../../src/ipsec/actions.js';
import type { IkePeerConfig } from '../../src/ipsec/config.js';
import { IkeCore } from '../../src/ipsec/core.js';

export interface IkeHostConfig {
  readonly address: string;
  readonly peer: string;
  readonly site: IkePeerConfig;
}

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function hex(b: Uint8Array | null): string | null {
  return b === null ? null : Buffer.from(b).toString('hex');
}

const config = JSON.parse(process.argv[2] ?? '{}') as IkeHostConfig;
const created = IkeCore.create(config.site);
if (!created.ok) {
  emit({ ev: 'error', message: `${created.error.field}: ${created.error.message}` });
  process.exit(1);
}
const core = created.value;
/** Outbound SPIs of the CHILD SAs up now (for the rekey-child op). */
const liveOutbound = new Map<number, number>();
const sockets = new Map<number, Socket>();
let timer: NodeJS.Timeout | undefined;

function apply(actions: IkeAction[]): void {
  for (const a of actions) {
    switch (a.type) {
      case 'send':
        sockets.get(a.localPort)?.send(a.data, a.remote.port, a.remote.address);
        emit({
          ev: 'send',
          localPort: a.localPort,
          remote: a.remote,
          length: a.data.length,
          marker: a.nonEspMarker,
        });
        break;
      case 'child-sa-up':
        liveOutbound.set(a.spec.inboundSpi, a.spec.outboundSpi);
        emit({
          ev: 'child-sa-up',
          proposal: a.proposal,
          encapsulation: a.encapsulation,
          rekeyOf: a.rekeyOf
            ? {
                inboundSpi: a.rekeyOf.inboundSpi.toString(16).padStart(8, '0'),
                outboundSpi: a.rekeyOf.outboundSpi.toString(16).padStart(8, '0'),
              }
            : undefined,
          spec: {
            ...a.spec,
            inboundSpi: a.spec.inboundSpi.toString(16).padStart(8, '0'),
            outboundSpi: a.spec.outboundSpi.toString(16).padStart(8, '0'),
            inbound: {
              encryptionKey: hex(a.spec.inbound.encryptionKey),
              integrityKey: hex(a.spec.inbound.integrityKey),
            },
            outbound: {
              encryptionKey: hex(a.spec.outbound.encryptionKey),
              integrityKey: hex(a.spec.outbound.integrityKey),
            },
          },
        });
        break;
      case 'child-sa-down':
        liveOutbound.delete(a.inboundSpi);
        emit({
          ...a,
          ev: a.type,
          inboundSpi: a.inboundSpi.toString(16).padStart(8, '0'),
          outboundSpi: a.outboundSpi.toString(16).padStart(8, '0'),
        });
        break;
      default:
        emit({ ...a, ev: a.type });
    }
  }
  schedule();
}

function schedule(): void {
  if (timer) clearTimeout(timer);
  const next = core.nextDeadline();
  if (next === null) return;
  timer = setTimeout(() => apply(core.tick(Date.now())), Math.max(0, next - Date.now()));
}

async function bind(port: number): Promise<void> {
  const s = createSocket({ type: config.address.includes(':') ? 'udp6' : 'udp4' });
  s.on('message', (data, rinfo) => {
    apply(
      core.receive(
        {
          data,
          remote: { address: rinfo.address, port: rinfo.port },
          local: { address: config.address, port },
        },
        Date.now(),
      ),
    );
  });
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(port, config.address, () => resolve());
  });
  sockets.set(port, s);
}

await bind(500);
await bind(4500);
emit({ ev: 'ready' });

createInterface({ input: process.stdin }).on('line', (line) => {
  let cmd: { op?: string; outboundSpi?: string };
  try {
    cmd = JSON.parse(line) as { op?: string; outboundSpi?: string };
  } catch {
    return;
  }
  const now = Date.now();
  switch (cmd.op) {
    case 'initiate':
      apply(core.initiate({ address: config.peer, port: 500 }, { address: config.address, port: 500 }, now));
      break;
    case 'delete':
      apply(core.deleteAll(now));
      break;
    case 'rekey-child': {
      const spis = cmd.outboundSpi ? [parseInt(cmd.outboundSpi, 16)] : [...liveOutbound.values()];
      for (const spi of spis) apply(core.rekeyChild(spi, now));
      break;
    }
    case 'rekey-ike':
      apply(core.rekeyIke(now));
      break;
    case 'status':
      emit({
        ev: 'status',
        received: core.stats.received,
        processed: core.stats.processed,
        drops: core.stats.drops,
        fragments: core.stats.fragments,
      });
      break;
    case 'exit':
      for (const s of sockets.values()) s.close();
      if (timer) clearTimeout(timer);
      emit({ ev: 'bye' });
      process.exit(0);
  }
});
