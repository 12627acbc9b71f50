/**
 * The bench rig: two network namespaces joined by a veth pair, built on the interop harness's Lab (which
 * guarantees cleanup: on normal exit, on failure, on SIGINT/SIGTERM, and of leftovers of a dead run).
 *
 *   namespace "<prefix>-srv"  veth 10.99.0.1/24  <———>  10.99.0.2/24 veth  namespace "<prefix>-cli"
 *        tunnel 10.100.0.1 (server side)                      tunnel 10.100.0.2 (client side)
 *
 * Traffic generators (iperf3 client, ping) run in the client namespace and target the server side, so every
 * byte crosses the veth once, encrypted by the client end and decrypted by the server end.
 */
import * as fs from 'node:fs';
import { interopAvailable, Lab, type Netns } from '../test/interop/harness.js';

export const UNDERLAY = { server: '10.99.0.1', client: '10.99.0.2', bits: 24 } as const;
export const OVERLAY = { server: '10.100.0.1', client: '10.100.0.2', bits: 24 } as const;

/** Every tool the bench needs (Debian packages in scripts/setup.sh). */
export const BENCH_TOOLS: readonly string[] = [
  'ip',
  'ping',
  'iperf3',
  'wireguard-go',
  'wg',
  'openvpn',
  'openssl',
  'getconf',
];

/** Weft's pid files (src/cli/up.ts): a SIGKILLed Weft leaves its file behind, so the rig removes them. */
export const WEFT_RUN_DIR = '/run/weft';

export class Rig {
  private constructor(
    readonly lab: Lab,
    /** Server side: iperf3 servers, ping targets, the "gateway". */
    readonly server: Netns,
    /** Client side: iperf3 clients, ping. */
    readonly client: Netns,
    readonly serverVeth: string,
    readonly clientVeth: string,
  ) {}

  static async create(): Promise<Rig> {
    const availability = interopAvailable(BENCH_TOOLS);
    if (!availability.ok) throw new Error(`the bench cannot run here: ${availability.reason}`);
    const lab = await Lab.create('bench', { tools: BENCH_TOOLS });
    try {
      const server = await lab.netns('srv');
      const client = await lab.netns('cli');
      const { aIf, bIf } = await lab.veth(server, client, {
        aName: 'vs',
        bName: 'vc',
        aAddr: `${UNDERLAY.server}/${UNDERLAY.bits}`,
        bAddr: `${UNDERLAY.client}/${UNDERLAY.bits}`,
      });
      await client.exec('ping', ['-c', '1', '-W', '2', UNDERLAY.server]);
      return new Rig(lab, server, client, aIf, bIf);
    } catch (error) {
      await lab.cleanup().catch(() => undefined);
      throw error;
    }
  }

  /** A fresh private directory inside the lab directory (removed by cleanup). */
  dir(name: string): string {
    const dir = this.lab.file(name);
    fs.mkdirSync(dir, { mode: 0o700 });
    return dir;
  }

  /** Removes Weft pid files of this rig's interfaces (left behind when a Weft process was killed). */
  removeWeftPidFiles(): void {
    try {
      for (const f of fs.readdirSync(WEFT_RUN_DIR)) {
        if (f.startsWith(this.lab.prefix) && f.endsWith('.pid'))
          fs.rmSync(`${WEFT_RUN_DIR}/${f}`, { force: true });
      }
    } catch {
      // no directory
    }
  }

  async cleanup(): Promise<void> {
    try {
      await this.lab.cleanup();
    } finally {
      this.removeWeftPidFiles();
    }
  }
}
