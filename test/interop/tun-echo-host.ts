/**
 * Opens a LinuxTun in the network namespace it runs in (`ip netns exec NS node tun-echo-host.js NAME [MTU]`)
 * and plays every host behind it: ICMP/ICMPv6 echo requests to 10.202.0.0/24 or fd00:202::/64, except to .1 /
 * ::1 (the interface's own addresses), are answered through the device, one write() per read batch.
 *
 * JSON lines. stdin: {"op":"status"} | {"op":"open","name":N} (try a second LinuxTun) | {"op":"write","hex":[..]}
 * | {"op":"close"}. stdout: {"ev":"ready",...} | {"ev":"status",...} | {"ev":"open",...} | {"ev":"write",...} |
 * {"ev":"closed",...} | {"ev":"error",...}. SIGTERM closes the device too.
 */
import { createInterface } from 'node:readline';
import { echo, readEcho } from '../../src/net/icmp.js';
import { LinuxTun } from '../../src/io/tun-linux.js';

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function errorFields(error: unknown): Record<string, unknown> {
  const e = error as NodeJS.ErrnoException;
  return { message: e.message, code: e.code, errno: e.errno, syscall: e.syscall };
}

/** Ours to answer: 10.202.0.x (x != 1) or fd00:202::/64 other than ::1. */
function answered(family: 4 | 6, dst: Uint8Array): boolean {
  if (family === 4) return dst[0] === 10 && dst[1] === 202 && dst[2] === 0 && dst[3] !== 1;
  const prefix = [0xfd, 0x00, 0x02, 0x02, 0, 0, 0, 0];
  if (!prefix.every((b, i) => dst[i] === b)) return false;
  return !dst.subarray(8).every((b, i) => b === (i === 7 ? 1 : 0));
}

async function main(): Promise<void> {
  const [name = '', mtuArg] = process.argv.slice(2);
  const readErrors: string[] = [];
  const tun = await LinuxTun.open(name, {
    onError: (error) => readErrors.push(error.message),
    ...(mtuArg === undefined ? {} : { mtu: Number(mtuArg) }),
  });
  const seen = { echoRequests: 0, repliesAccepted: 0, otherPackets: 0, bytes: 0, batches: 0, maxBatch: 0 };
  const others: LinuxTun[] = [];

  tun.start((packets) => {
    seen.batches++;
    seen.maxBatch = Math.max(seen.maxBatch, packets.length);
    const replies: Uint8Array[] = [];
    for (const p of packets) {
      seen.bytes += p.length;
      const e = readEcho(p);
      if (e?.kind === 'request' && answered(e.family, e.destination)) {
        seen.echoRequests++;
        replies.push(echo('reply', e.destination, e.source, e.id, e.seq, e.data));
      } else {
        seen.otherPackets++;
      }
    }
    if (replies.length > 0) seen.repliesAccepted += tun.write(replies);
  });
  emit({ ev: 'ready', name: tun.name, fd: tun.fd });

  const status = (): Record<string, unknown> => ({ counters: tun.counters, seen, readErrors });
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      const started = performance.now();
      await tun.close();
      for (const other of others) await other.close();
      emit({ ev: 'closed', ms: performance.now() - started, ...status() });
      commands.close();
      process.stdin.destroy();
    })());

  const commands = createInterface({ input: process.stdin });
  commands.on('line', (line) => {
    const cmd = JSON.parse(line) as { op: string; name?: string; hex?: string[] };
    switch (cmd.op) {
      case 'status':
        emit({ ev: 'status', ...status() });
        break;
      case 'open':
        LinuxTun.open(cmd.name ?? '').then(
          (t) => {
            others.push(t);
            emit({ ev: 'open', ok: true, name: t.name });
          },
          (error: unknown) => emit({ ev: 'open', ok: false, ...errorFields(error) }),
        );
        break;
      case 'write': {
        const packets = (cmd.hex ?? []).map((h) => Uint8Array.from(Buffer.from(h, 'hex')));
        emit({ ev: 'write', accepted: tun.write(packets), counters: tun.counters });
        break;
      }
      case 'close':
        void close();
        break;
      default:
        emit({ ev: 'error', message: `unknown op ${cmd.op}` });
    }
  });
  process.on('SIGTERM', () => void close());
}

main().catch((error: unknown) => {
  emit({ ev: 'error', ...errorFields(error) });
  process.exitCode = 1;
});
