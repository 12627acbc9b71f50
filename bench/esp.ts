/**
 * ESP bench, standalone (as root): `npm run build && node dist/bench/esp.js [--seconds N] [--runs N]`.
 * `--swan-only` runs only the strongSwan pair.
 * Weft ↔ Weft ESP (aes256gcm16, tunnel mode, UDP 4500 and raw ESP) in the namespaces of the interop test
 * (test/interop/esp-lab.ts): single-stream TCP through iperf3 from the host behind one gateway to the host
 * behind the other, with the CPU seconds the two ESP processes spent per GB carried and their peak RSS.
 *
 * strongSwan ↔ strongSwan in the same topology for the ratio (../shared notes): charon-systemd with
 * kernel-libipsec (this kernel has no ESP), IKEv2 aes256gcm16-prfsha256-x25519 with a PSK, ESP aes256gcm16;
 * each charon in a mount namespace of its own (tmpfs on /run, its own strongswan.conf and swanctl/).
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Lab, waitFor, type ManagedProcess, type Netns } from '../test/interop/harness.js';
import { iperf3, linkedPair } from '../test/interop/gateway-lab.js';
import { espTopology } from '../test/interop/esp-lab.js';
import { cpuSecondsBetween, cpuSnapshot, memoryOf } from './procstat.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

interface Charon {
  process: ManagedProcess;
  log: string;
}

async function startCharon(
  lab: Lab,
  ns: Netns,
  side: 'a' | 'b',
  local: string,
  remote: string,
  localTs: string,
  remoteTs: string,
): Promise<Charon> {
  const dir = lab.file(`charon-${side}`);
  await fsp.mkdir(path.join(dir, 'swanctl', 'conf.d'), { recursive: true });
  const log = path.join(dir, 'charon.log');
  await fsp.writeFile(
    path.join(dir, 'strongswan.conf'),
    [
      'charon {',
      '  load_modular = yes',
      '  plugins {',
      '    include /etc/strongswan.d/charon/*.conf',
      '    kernel-libipsec {',
      '      load = yes',
      '    }',
      '  }',
      '}',
      'charon-systemd {',
      '  load_modular = yes',
      '  plugins {',
      '    include /etc/strongswan.d/charon/*.conf',
      '    kernel-libipsec {',
      '      load = yes',
      '    }',
      '  }',
      '  filelog {',
      '    f {',
      `      path = ${log}`,
      '      default = 1',
      '    }',
      '  }',
      '}',
      'include /etc/strongswan.d/swanctl.conf',
      '',
    ].join('\n'),
  );
  const ids = side === 'a' ? ['a.weft.test', 'b.weft.test'] : ['b.weft.test', 'a.weft.test'];
  await fsp.writeFile(
    path.join(dir, 'swanctl', 'swanctl.conf'),
    [
      'connections {',
      '  net {',
      '    version = 2',
      `    local_addrs = ${local}`,
      `    remote_addrs = ${remote}`,
      '    proposals = aes256gcm16-prfsha256-x25519',
      '    local {',
      '      auth = psk',
      `      id = ${ids[0]}`,
      '    }',
      '    remote {',
      '      auth = psk',
      `      id = ${ids[1]}`,
      '    }',
      '    children {',
      '      net {',
      `        local_ts = ${localTs}`,
      `        remote_ts = ${remoteTs}`,
      '        esp_proposals = aes256gcm16',
      side === 'a' ? '        start_action = start' : '',
      '      }',
      '    }',
      '  }',
      '}',
      'secrets {',
      '  ike-1 {',
      '    id-1 = a.weft.test',
      '    id-2 = b.weft.test',
      '    secret = "weft-bench-preshared-key-0123456789"',
      '  }',
      '}',
      '',
    ].join('\n'),
  );
  const script = [
    'set -e',
    // The lab's directory is under /run: bind its files before /run is covered.
    `mount --bind ${dir}/strongswan.conf /etc/strongswan.conf`,
    `mount --bind ${dir}/swanctl /etc/swanctl`,
    'mount -t tmpfs none /run',
    'exec /usr/sbin/charon-systemd',
  ].join('; ');
  const proc = ns.spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script]);
  return { process: proc, log };
}

async function swanctl(ns: Netns, charon: Charon, args: string[]): Promise<string> {
  const r = await ns.exec('nsenter', ['-t', String(charon.process.pid), '-m', 'swanctl', ...args], {
    allowFail: true,
  });
  return `${r.stdout}${r.stderr}`;
}

/** The same four namespaces as esp-lab.ts, with two charons instead of Weft. */
async function strongswanTopology(lab: Lab, n: number) {
  const { a: gwA, b: gwB, a4, b4 } = await linkedPair(lab, 'gwa', 'gwb', n);
  const ha = await lab.netns('ha');
  const hb = await lab.netns('hb');
  await lab.veth(ha, gwA, { aAddr: '10.1.0.2/24', bAddr: '10.1.0.1/24' });
  await lab.veth(hb, gwB, { aAddr: '10.2.0.2/24', bAddr: '10.2.0.1/24' });
  await ha.exec('ip', ['route', 'add', 'default', 'via', '10.1.0.1']);
  await hb.exec('ip', ['route', 'add', 'default', 'via', '10.2.0.1']);
  for (const gw of [gwA, gwB]) await gw.sysctl('net.ipv4.ip_forward', 1);
  const b = await startCharon(lab, gwB, 'b', b4, a4, '10.2.0.0/24', '10.1.0.0/24');
  const a = await startCharon(lab, gwA, 'a', a4, b4, '10.1.0.0/24', '10.2.0.0/24');
  for (const [ns, c] of [
    [gwB, b],
    [gwA, a],
  ] as const) {
    let last = '';
    await waitFor(
      "charon's vici socket",
      async () => (last = await swanctl(ns, c, ['--stats'])).includes('uptime'),
      { timeoutMs: 15_000, intervalMs: 200 },
    ).catch((error: Error) => {
      throw new Error(`${error.message}: ${last} ${c.process.describe()}`);
    });
    await swanctl(ns, c, ['--load-all']);
  }
  await swanctl(gwA, a, ['--initiate', '--child', 'net']);
  await waitFor(
    'the CHILD SA',
    async () => (await ha.exec('ping', ['-c', '1', '-W', '1', '10.2.0.2'], { allowFail: true })).code === 0,
    { timeoutMs: 20_000, intervalMs: 500 },
  );
  return { ha, hb, pids: [a.process.pid, b.process.pid], logs: [a.log, b.log] };
}

async function main(): Promise<void> {
  const seconds = arg('--seconds', 10);
  const runs = arg('--runs', 3);
  const rows: string[] = [];
  for (const [i, carrier] of (process.argv.includes('--swan-only')
    ? []
    : (['udp', 'raw'] as const)
  ).entries()) {
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
  let weftUdp = 0;
  {
    const m = /UDP 4500 \|\s+(\d+) Mbit/.exec(rows[0] ?? '');
    weftUdp = m ? Number(m[1]) : 0;
  }
  const lab = await Lab.create('bench-swan', { tools: ['ip', 'iperf3', 'unshare', 'nsenter'] });
  try {
    const t = await strongswanTopology(lab, 82);
    const rates: number[] = [];
    const cpuPerGb: number[] = [];
    for (let r = 0; r < runs; r++) {
      const before = cpuSnapshot(t.pids);
      const result = await iperf3(t.ha, t.hb, '10.2.0.2', { seconds });
      const cpu = cpuSecondsBetween(before, cpuSnapshot(t.pids));
      rates.push(result.bitsPerSecond / 1e6);
      cpuPerGb.push(cpu / (result.receivedBytes / 1e9));
    }
    const median = (v: number[]): number => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)]!;
    const peak = Math.max(...t.pids.map((p) => memoryOf(p)?.peakRss ?? 0)) / (1 << 20);
    rows.push(
      `| strongSwan ↔ strongSwan aes256gcm16, kernel-libipsec | ${median(rates).toFixed(0).padStart(6)} Mbit/s | ` +
        `${median(cpuPerGb).toFixed(2)} CPU s/GB | ${peak.toFixed(0)} MiB peak RSS (per process) | runs: ${rates.map((x) => x.toFixed(0)).join(', ')} |`,
    );
    rows.push(`\nWeft (UDP 4500) / strongSwan: ${(weftUdp / median(rates)).toFixed(2)}x (the bar is 2x)`);
  } catch (error) {
    rows.push(`| strongSwan ↔ strongSwan | failed: ${(error as Error).message.replace(/\s+/g, ' ')} | | | |`);
  } finally {
    await lab.cleanup();
  }
  process.stdout.write(
    `single-stream TCP, iperf3 ${seconds} s x ${runs} (median)\n| configuration | throughput | CPU (both ends) | memory | runs |\n|---|---|---|---|---|\n${rows.join('\n')}\n`,
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
