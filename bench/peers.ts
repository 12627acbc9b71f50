/**
 * "A gateway with 1,000 configured peers stays under 150 MB RSS; adding the 1,000 peers over the UAPI takes
 * under 2 s": a Weft interface comes up with no peers, one `wg addconf` adds 1,000 peers (fresh keys, distinct
 * /32 allowed IPs) over its UAPI socket, timed; then its resident set size is read.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { PrivateKey } from '../src/crypto/keys.js';
import { startWeft } from './configurations.js';
import { memoryOf } from './procstat.js';
import type { PeersResult } from './results.js';
import type { Rig } from './rig.js';

export const PEER_COUNT = 1000;
/** 150 MB, decimal (the stricter reading). */
export const PEERS_RSS_LIMIT = 150e6;
export const PEERS_ADD_LIMIT_S = 2;

function peersConfig(count: number): string {
  const sections: string[] = [];
  for (let i = 1; i <= count; i++) {
    const publicKey = PrivateKey.generate().publicKey().toBase64();
    sections.push(`[Peer]\nPublicKey = ${publicKey}\nAllowedIPs = 10.200.${i >> 8}.${i & 0xff}/32\n`);
  }
  return sections.join('\n');
}

export async function peersSection(rig: Rig, log: (line: string) => void): Promise<PeersResult> {
  const limits = { rssBytes: PEERS_RSS_LIMIT, addSeconds: PEERS_ADD_LIMIT_S };
  const ifname = rig.lab.ifname('pk');
  const conf = [
    '[Interface]',
    `PrivateKey = ${PrivateKey.generate().toBase64()}`,
    'ListenPort = 51900',
    'Address = 10.199.0.1/24',
    '',
  ].join('\n');
  const weft = await startWeft(rig, rig.server, ifname, conf);
  try {
    const peersFile = path.join(rig.dir('peers'), 'peers.conf');
    fs.writeFileSync(peersFile, peersConfig(PEER_COUNT), { mode: 0o600 });
    await delay(500);
    const rssBefore = memoryOf(weft.pid)?.rss ?? 0;

    const started = process.hrtime.bigint();
    await rig.server.exec('wg', ['addconf', ifname, peersFile], { timeoutMs: 60_000 });
    const addSeconds = Number(process.hrtime.bigint() - started) / 1e9;

    const { stdout } = await rig.server.exec('wg', ['show', ifname, 'peers'], { timeoutMs: 30_000 });
    const listedPeers = stdout.split('\n').filter(Boolean).length;
    await delay(1000);
    const mem = memoryOf(weft.pid);
    if (!mem) throw new Error(`Weft ${ifname} exited after the peers were added: ${weft.describe()}`);
    log(
      `  ${listedPeers} peers added in ${addSeconds.toFixed(3)} s; RSS ${(mem.rss / 1e6).toFixed(1)} MB ` +
        `(peak ${(mem.peakRss / 1e6).toFixed(1)} MB, before ${(rssBefore / 1e6).toFixed(1)} MB)`,
    );
    return {
      ok: listedPeers === PEER_COUNT,
      ...(listedPeers === PEER_COUNT
        ? {}
        : { error: `wg show lists ${listedPeers} peers, not ${PEER_COUNT}` }),
      peers: PEER_COUNT,
      addSeconds,
      listedPeers,
      rssBefore,
      rssAfter: mem.rss,
      peakRss: mem.peakRss,
      limits,
    };
  } finally {
    await weft.stop().catch(() => undefined);
  }
}
