/**
 * LinuxTun against the real kernel. A TUN device lives in the network namespace of the process that opens it,
 * so the device is opened by a helper process inside a lab namespace (tun-echo-host.ts), which answers echo
 * requests for the hosts "behind" it; the test configures the interface and pings from outside with iputils.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { echo } from '../../src/net/icmp.js';
import type { TunCounters } from '../../src/io/tun-linux.js';
import { interopSkip, JsonLinesProcess, Lab, run, waitFor, type Netns } from './harness.js';

const HOST = fileURLToPath(new URL('./tun-echo-host.js', import.meta.url));
const TOOLS = ['ip', 'ping'];

interface HostEvent {
  ev: string;
  name?: string;
  ok?: boolean;
  message?: string;
  code?: string;
  syscall?: string;
  accepted?: number;
  ms?: number;
  counters?: TunCounters;
  seen?: {
    echoRequests: number;
    repliesAccepted: number;
    otherPackets: number;
    bytes: number;
    batches: number;
    maxBatch: number;
  };
  readErrors?: string[];
}

/** The helper process, with its JSON-lines events parsed. */
class EchoHost extends JsonLinesProcess<HostEvent> {
  static start(ns: Netns, name: string, mtu?: number): EchoHost {
    const args = [HOST, name, ...(mtu === undefined ? [] : [String(mtu)])];
    return new EchoHost(ns.spawn(process.execPath, args));
  }
}

async function linkExists(ns: Netns, name: string): Promise<boolean> {
  return (await ns.exec('ip', ['link', 'show', 'dev', name], { allowFail: true })).code === 0;
}

/** "N packets transmitted, M received" and the time of an iputils ping run. */
function pingSummary(stdout: string): { transmitted: number; received: number; ms: number } {
  const m = /(\d+) packets transmitted, (\d+) received.*time (\d+)ms/.exec(stdout);
  assert.ok(m, `unexpected ping output:\n${stdout}`);
  return { transmitted: Number(m[1]), received: Number(m[2]), ms: Number(m[3]) };
}

for (const mode of ['inline', 'worker'] as const) {
  describe(`LinuxTun on /dev/net/tun (${mode} reader)`, { skip: interopSkip(TOOLS) }, () => {
    before(() => {
      process.env.WEFT_READERS = mode;
    });
    after(() => {
      delete process.env.WEFT_READERS;
    });
    let lab: Lab;
    let ns: Netns;
    let name: string;
    let host: EchoHost;
    /** Echo requests the pings below send to the helper's hosts. */
    let requestsSent = 0;

    before(async () => {
      lab = await Lab.create('tun', { tools: TOOLS });
      ns = await lab.netns('a');
      name = lab.ifname('t0');
      host = EchoHost.start(ns, name, 1380);
      const ready = await host.next('ready');
      assert.equal(ready.name, name);
      // Link up before the addresses (see Lab.veth on IPv6 addresses added to a down link).
      await ns.exec('ip', ['link', 'set', 'dev', name, 'up']);
      await ns.exec('ip', ['addr', 'add', '10.202.0.1/24', 'dev', name]);
      await ns.exec('ip', ['addr', 'add', 'fd00:202::1/64', 'dev', name, 'nodad']);
    });

    after(async () => {
      await lab?.cleanup();
    });

    it('creates a TUN interface in the opener’s namespace only, with the requested MTU', async () => {
      const { stdout } = await ns.exec('ip', ['-d', 'link', 'show', 'dev', name]);
      assert.match(stdout, / mtu 1380 /);
      assert.match(stdout, /tun type tun pi off/);
      assert.match(stdout, /persist off/);
      assert.notEqual((await run('ip', ['link', 'show', 'dev', name], { allowFail: true })).code, 0);
    });

    it('answers ping and ping -6 through the device', async () => {
      const v4 = await ns.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', '10.202.0.2'], {
        timeoutMs: 15_000,
      });
      assert.match(v4.stdout, / 3 received/);
      const v6 = await ns.exec('ping', ['-6', '-c', '3', '-i', '0.2', '-W', '2', 'fd00:202::2'], {
        timeoutMs: 15_000,
      });
      assert.match(v6.stdout, / 3 received/);
      requestsSent += 6;
    });

    it('refuses a second open of the same name (EBUSY), a non-TUN name (EINVAL) and an overlong name', async (t) => {
      const busy = await host.request({ op: 'open', name }, 'open');
      assert.equal(busy.ok, false);
      assert.equal(busy.code, 'EBUSY', JSON.stringify(busy));
      assert.equal(busy.syscall, 'ioctl(TUNSETIFF)');
      assert.match(
        busy.message!,
        new RegExp(`^cannot open TUN device "${name}": ioctl\\(TUNSETIFF\\): EBUSY \\(`),
      );
      assert.match(busy.message!, /already attached/);
      t.diagnostic(busy.message!);

      const notTun = await host.request({ op: 'open', name: 'lo' }, 'open');
      assert.equal(notTun.ok, false);
      assert.equal(notTun.code, 'EINVAL', JSON.stringify(notTun));
      assert.match(notTun.message!, /is not a single-queue TUN device/);

      const long = await host.request({ op: 'open', name: 'x'.repeat(16) }, 'open');
      assert.equal(long.ok, false);
      assert.match(long.message!, /at most 15 bytes/);
      // The first device is unharmed.
      assert.ok(await linkExists(ns, name));
    });

    it('drops a malformed packet (EINVAL) without throwing and still writes the rest', async () => {
      // An echo request from a host behind the device to the interface: the kernel accepts (and answers) it.
      const valid = Buffer.from(echo('request', '10.202.0.2', '10.202.0.1', 7, 1, new Uint8Array(8)));
      const result = await host.request({ op: 'write', hex: ['00', valid.toString('hex')] }, 'write');
      assert.equal(result.accepted, 1);
      assert.equal(result.counters!.writeErrors, 1);
    });

    it('flood ping: every request answered, intact, with and without many in flight', async (t) => {
      const flood = await ns.exec('ping', ['-f', '-c', '2000', '-W', '1', '10.202.0.2'], {
        timeoutMs: 60_000,
      });
      const plain = pingSummary(flood.stdout);
      assert.equal(plain.received, 2000, flood.stdout);
      assert.doesNotMatch(flood.stdout + flood.stderr, /wrong data|DUP|checksum/i);
      // Preload: 64 requests in flight, 1200-byte payloads, so the reader sees multi-packet batches.
      const preload = await ns.exec(
        'ping',
        ['-f', '-l', '64', '-s', '1200', '-c', '2000', '-W', '1', '10.202.0.2'],
        {
          timeoutMs: 60_000,
        },
      );
      const burst = pingSummary(preload.stdout);
      assert.equal(burst.received, 2000, preload.stdout);
      assert.doesNotMatch(preload.stdout + preload.stderr, /wrong data|DUP|checksum/i);
      requestsSent += 4000;
      const status = await host.request({ op: 'status' }, 'status');
      t.diagnostic(
        `flood: ${plain.ms} ms for 2000 round trips (${Math.round((2000 / Math.max(plain.ms, 1)) * 1000)}/s); ` +
          `preload 64 × 1228 B: ${burst.ms} ms (${Math.round((2000 / Math.max(burst.ms, 1)) * 1000)}/s); ` +
          `batches ${status.counters!.batchesRead}, largest ${status.seen!.maxBatch} packets`,
      );
    });

    it('counts what it read and wrote, in agreement with what the helper saw', async () => {
      const { counters, seen, readErrors } = await host.request({ op: 'status' }, 'status');
      assert.ok(counters && seen);
      assert.deepEqual(readErrors, []);
      assert.equal(seen.echoRequests, requestsSent);
      assert.equal(seen.repliesAccepted, requestsSent);
      assert.equal(counters.packetsRead, seen.echoRequests + seen.otherPackets);
      assert.equal(counters.bytesRead, seen.bytes);
      // The replies, plus the one valid packet of the malformed-packet test.
      assert.equal(counters.packetsWritten, requestsSent + 1);
      assert.equal(counters.writeErrors, 1);
      assert.equal(counters.writesWouldBlock, 0);
      assert.equal(counters.readErrors, 0);
      assert.ok(counters.batchesRead <= counters.packetsRead);
    });

    it('close() stops the reader quickly and the interface disappears within 1 s', async (t) => {
      const sent = Date.now();
      host.command({ op: 'close' });
      await waitFor(`${name} to disappear`, async () => !(await linkExists(ns, name)), {
        timeoutMs: 1_000,
        intervalMs: 20,
      });
      const gone = Date.now() - sent;
      const closed = await host.next('closed');
      assert.ok(closed.ms! < 500, `close() took ${closed.ms} ms`);
      const status = await host.process.exited;
      assert.deepEqual(status, { code: 0, signal: null }, host.process.describe());
      assert.ok(gone <= 1_000);
      t.diagnostic(`close() took ${closed.ms!.toFixed(1)} ms; ${name} gone ${gone} ms after the request`);
    });

    it('SIGTERM: the helper closes its device and exits; the interface disappears', async () => {
      const name1 = lab.ifname('t1');
      const second = EchoHost.start(ns, name1);
      await second.next('ready');
      assert.ok(await linkExists(ns, name1));
      const status = await second.process.stop();
      assert.deepEqual(status, { code: 0, signal: null }, second.process.describe());
      assert.ok((await second.next('closed')).ms! < 500);
      await waitFor(`${name1} to disappear`, async () => !(await linkExists(ns, name1)), {
        timeoutMs: 1_000,
      });
    });
  });
}
