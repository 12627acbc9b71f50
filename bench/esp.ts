/**
 * ESP bench, standalone (as root): `npm run build && node dist/bench/esp.js [--seconds N] [--runs N]`.
 * Weft ↔ Weft ESP (aes256gcm16, tunnel mode, UDP 4500 and raw ESP) in the namespaces of the interop test
 * (test/interop/esp-lab.ts): single-stream TCP through iperf3 from the host behind one gateway to the host
 * behind the other, with the CPU seconds the two ESP processes spent per GB carried and their peak RSS.
 *
 * strongSwan ↔ strongSwan (kernel-libipsec) for the ratio the issue asks for is not in this bench yet.
 */
import { Lab } from '../test/interop/harness.js';
import { iperf3 } from '../test/interop/gateway-lab.js';
import { espTopology } from '../test/interop/esp-lab.js';
import { cpuSecondsBetween, cpuSnapshot, memoryOf } from './procstat.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function main(): Promise<void> {
  const seconds = arg('--seconds', 10);
  const runs = arg('--runs', 3);
  const rows: string[] = [];
  for (const [i, carrier] of (['udp', 'raw'] as const).entries()) {
    const lab = await Lab.create('bench-esp', { tools: ['ip', 'iperf3'] });
    try {
      const t = await espTopology(lab, carrier, 'tunnel', 80 + i);
      const pids = [t.hostA.process.pid, t.hostB.process.pid];
      const rates: number[] = [];
      const cpuPerGb: number[] = [];
      for (let r = 0; r < runs; r++) {
        const before = cpuSnapshot(pids);
        const result = await iperf3(t.ha, t.hb, '10.2.0.2', { seconds });
        const cpu = cpuSecondsBetween(before, cpuSnapshot(pids));
        rates.push(result.bitsPerSecond / 1e6);
        cpuPerGb.push(cpu / (result.receivedBytes / 1e9));
      }
      const peak = Math.max(...pids.map((p) => memoryOf(p)?.peakRss ?? 0)) / (1 << 20);
      const median = (v: number[]): number => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)]!;
      rows.push(
        `| Weft ↔ Weft ESP aes256gcm16, ${carrier === 'udp' ? 'UDP 4500' : 'raw ESP '} | ${median(rates).toFixed(0).padStart(6)} Mbit/s | ` +
          `${median(cpuPerGb).toFixed(2)} CPU s/GB | ${peak.toFixed(0)} MiB peak RSS (per process) | runs: ${rates.map((x) => x.toFixed(0)).join(', ')} |`,
      );
    } finally {
      await lab.cleanup();
    }
  }
  process.stdout.write(
    `single-stream TCP, iperf3 ${seconds} s x ${runs} (median)\n| configuration | throughput | CPU (both ends) | memory | runs |\n|---|---|---|---|---|\n${rows.join('\n')}\n`,
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
