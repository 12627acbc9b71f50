/**
 * A helper process for udp-linux.test.ts, printing one JSON line with its results.
 *
 *   node udp-linux-peer.js unreachable
 *     Run in a namespace where only lo is up: opens a LinuxUdpBind and sends one batch to destinations without a
 *     route (192.0.2.1, 2001:db8::1) between datagrams to itself, and reports what arrived and the counters.
 *   node udp-linux-peer.js eagain HOST
 *     Run where datagrams to HOST pile up in a slow qdisc: sends batches of 64 × 1000 bytes to HOST:9 until the
 *     socket buffer is full and a batch is cut short (EAGAIN), and reports the counters.
 *   node udp-linux-peer.js blast linux|dgram HOST PORT MS BATCH SIZE
 *     Sends SIZE-byte datagrams to HOST:PORT in batches of BATCH, as fast as it can for MS milliseconds
 *     (yielding to the event loop after each batch, so node:dgram's queued sends and callbacks run), and
 *     reports how many it handed to the Bind and how long that took.
 */
import { setImmediate as yieldToLoop, setTimeout as delay } from 'node:timers/promises';
import type { Bind, Datagram } from '../../src/io/bind.js';
import { UdpBind } from '../../src/io/udp.js';
import { LinuxUdpBind } from '../../src/io/udp-linux.js';

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

async function unreachable(): Promise<void> {
  const bind = await LinuxUdpBind.open(0);
  const received: string[] = [];
  bind.start((datagrams) => {
    for (const d of datagrams) received.push(`${Buffer.from(d.data).toString()} from ${d.endpoint.address}`);
  });
  const data = (text: string): Uint8Array => new TextEncoder().encode(text);
  bind.send([
    { data: data('first'), endpoint: { address: '127.0.0.1', port: bind.port } },
    { data: data('x'), endpoint: { address: '192.0.2.1', port: 9 } },
    { data: data('x'), endpoint: { address: '2001:db8::1', port: 9 } },
    { data: data('last'), endpoint: { address: '::1', port: bind.port } },
  ]);
  const errorAfterSend = bind.lastSendError;
  for (let i = 0; i < 100 && received.length < 2; i++) await delay(20);
  await bind.close();
  emit({
    ev: 'unreachable',
    received: received.sort(),
    counters: bind.counters,
    lastSendError: errorAfterSend,
  });
}

async function eagain(host = '10.0.0.2'): Promise<void> {
  const bind = await LinuxUdpBind.open(0);
  const batch: Datagram[] = Array.from({ length: 64 }, () => ({
    data: new Uint8Array(1000),
    endpoint: { address: host, port: 9 },
  }));
  let total = 0;
  let batches = 0;
  while (bind.counters.sendDropped === 0 && total < 50_000) {
    bind.send(batch);
    total += batch.length;
    batches++;
  }
  await bind.close();
  emit({ ev: 'eagain', total, batches, counters: bind.counters });
}

async function blast(args: string[]): Promise<void> {
  const [impl, host = '127.0.0.1', portText = '0', msText = '2000', batchText = '64', sizeText = '64'] = args;
  const bind: Bind & { sendErrors: number } =
    impl === 'linux' ? await LinuxUdpBind.open(0) : await UdpBind.open(0);
  const endpoint = { address: host, port: Number(portText) };
  const batchSize = Number(batchText);
  const size = Number(sizeText);
  const batch: Datagram[] = [];
  for (let i = 0; i < batchSize; i++) {
    const data = new Uint8Array(size);
    data.fill(i & 0xff);
    batch.push({ data, endpoint });
  }
  const durationMs = Number(msText);
  const start = performance.now();
  const cpuBefore = process.cpuUsage();
  let sent = 0;
  while (performance.now() - start < durationMs) {
    bind.send(batch);
    sent += batch.length;
    await yieldToLoop();
  }
  const elapsedMs = performance.now() - start;
  const cpu = process.cpuUsage(cpuBefore);
  await delay(100); // let node:dgram's last sends and callbacks run
  const counters = bind instanceof LinuxUdpBind ? bind.counters : { sendErrors: bind.sendErrors };
  await bind.close();
  emit({
    ev: 'blast',
    impl,
    sent,
    elapsedMs,
    userMs: cpu.user / 1000,
    systemMs: cpu.system / 1000,
    counters,
  });
}

async function main(): Promise<void> {
  const [mode, ...rest] = process.argv.slice(2);
  if (mode === 'unreachable') await unreachable();
  else if (mode === 'eagain') await eagain(rest[0]);
  else if (mode === 'blast') await blast(rest);
  else
    throw new Error(
      `usage: udp-linux-peer.js unreachable | eagain HOST | blast linux|dgram HOST PORT MS BATCH SIZE`,
    );
}

main().catch((error: unknown) => {
  const e = error as NodeJS.ErrnoException;
  emit({ ev: 'error', message: e.message, code: e.code });
  process.exitCode = 1;
});
