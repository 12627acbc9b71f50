/**
 * LinuxUdpBind (recvmmsg/sendmmsg through koffi) against the real kernel, on loopback in the test's own
 * namespace (127.0.0.1 and ::1), plus two checks in lab namespaces run by a helper process (udp-linux-peer.ts):
 * destinations without a route (ENETUNREACH), and a full socket buffer (EAGAIN, behind a slow qdisc). Also:
 * interop with the node:dgram UdpBind, the openBestBind factory, and a throughput measurement of both
 * (reported, not asserted: other work on the machine moves it a lot).
 */
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setImmediate as yieldToLoop, setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Endpoint } from '../../src/net/endpoint.js';
import type { Bind, Datagram } from '../../src/io/bind.js';
import { UdpBind } from '../../src/io/udp.js';
import { LinuxUdpBind, linuxUdpUnavailable, openBestBind } from '../../src/io/udp-linux.js';
import { mainPoller } from '../../src/io/poller.js';
import { Lab, requireRoot, run, waitFor } from './harness.js';

const PEER = fileURLToPath(new URL('./udp-linux-peer.js', import.meta.url));

const unavailable = await linuxUdpUnavailable();
const skip: string | false =
  unavailable !== undefined
    ? `LinuxUdpBind unavailable: ${unavailable}`
    : process.platform !== 'linux'
      ? 'Linux only'
      : false;

/** Every datagram a Bind receives, in order. */
class Sink {
  readonly datagrams: Datagram[] = [];
  batches = 0;
  largestBatch = 0;

  constructor(
    readonly bind: Bind,
    onBatch?: (datagrams: readonly Datagram[]) => void,
  ) {
    bind.start((datagrams) => {
      this.batches++;
      this.largestBatch = Math.max(this.largestBatch, datagrams.length);
      // The bind may reuse the memory once the callback returns: keep copies.
      for (const d of datagrams) this.datagrams.push({ data: Uint8Array.from(d.data), endpoint: d.endpoint });
      onBatch?.(datagrams);
    });
  }

  async waitFor(count: number, timeoutMs = 5_000): Promise<void> {
    await waitFor(
      `${count} datagrams (have ${this.datagrams.length})`,
      () => this.datagrams.length >= count,
      { timeoutMs, intervalMs: 5 },
    );
  }

  texts(): string[] {
    return this.datagrams.map((d) => new TextDecoder().decode(d.data));
  }
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const to = (address: string, port: number): Endpoint => ({ address, port });

/** A deterministic payload: the sequence number (little-endian, as much of it as fits), then xorshift bytes. */
function payload(seq: number, size: number): Uint8Array {
  const p = new Uint8Array(size);
  let x = (Math.imul(seq + 1, 2654435761) >>> 0) | 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    p[i] = x & 0xff;
  }
  for (let i = 0; i < Math.min(4, size); i++) p[i] = (seq >>> (8 * i)) & 0xff;
  return p;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

/**
 * Sends `count` datagrams of random sizes 1..1472 from `from` to `dest`, 64 per batch, keeping at most
 * `window` in flight (sent but not yet received) so that the receiver's socket buffer never overflows; then
 * checks that every datagram that arrived is intact, once, from `from`'s port.
 */
async function integrity(
  t: TestContext,
  from: Bind,
  sink: Sink,
  dest: Endpoint,
  expectedSource: string,
  count = 10_000,
): Promise<void> {
  const sizes = Array.from({ length: count }, () => randomInt(1, 1473));
  const expected = sizes.map((size, seq) => payload(seq, size));
  const base = sink.datagrams.length;
  const window = 2048;
  const started = performance.now();
  for (let seq = 0; seq < count;) {
    const batch: Datagram[] = [];
    for (; seq < count && batch.length < 64; seq++) batch.push({ data: expected[seq]!, endpoint: dest });
    from.send(batch);
    let stalled = 0;
    while (seq - (sink.datagrams.length - base) > window && stalled < 1000) {
      await delay(1);
      stalled++;
    }
    await yieldToLoop();
  }
  await waitFor(`${count} datagrams`, () => sink.datagrams.length - base >= count, {
    timeoutMs: 3_000,
    intervalMs: 10,
  }).catch(() => undefined); // UDP may drop: judged below
  const elapsed = performance.now() - started;
  const received = sink.datagrams.slice(base);

  // Identify each datagram: by its sequence number, or (1..3 bytes) among the short ones still unseen.
  const seen = new Uint8Array(count);
  const shortOnes = new Map<string, number[]>();
  sizes.forEach((size, seq) => {
    if (size >= 4) return;
    const key = Buffer.from(expected[seq]!).toString('hex');
    shortOnes.set(key, [...(shortOnes.get(key) ?? []), seq]);
  });
  let sourceObject: Endpoint | undefined;
  for (const d of received) {
    // Every sink here is a LinuxUdpBind, which reports the address each datagram was sent to.
    assert.deepEqual({ ...d.endpoint }, { address: expectedSource, port: from.port, local: dest.address });
    sourceObject ??= d.endpoint;
    assert.equal(d.endpoint, sourceObject, 'one cached Endpoint object per source');
    let seq: number;
    if (d.data.length >= 4) {
      seq = new DataView(d.data.buffer, d.data.byteOffset, 4).getUint32(0, true);
      assert.ok(seq < count, `sequence number ${seq} out of range`);
    } else {
      const candidates = shortOnes.get(Buffer.from(d.data).toString('hex')) ?? [];
      const unseen = candidates.find((s) => seen[s] === 0);
      assert.ok(unseen !== undefined, `unexpected ${d.data.length}-byte datagram`);
      seq = unseen;
    }
    assert.equal(seen[seq], 0, `datagram ${seq} received twice`);
    seen[seq] = 1;
    assert.equal(d.data.length, sizes[seq], `datagram ${seq}: length`);
    assert.ok(sameBytes(d.data, expected[seq]!), `datagram ${seq}: payload differs`);
  }
  const bytes = sizes.reduce((a, b) => a + b, 0);
  t.diagnostic(
    `${received.length}/${count} datagrams (${(bytes / 1e6).toFixed(1)} MB) to ${dest.address} in ` +
      `${elapsed.toFixed(0)} ms; ${sink.batches} batches so far, largest ${sink.largestBatch}`,
  );
  assert.ok(received.length >= count * 0.99, `only ${received.length} of ${count} datagrams arrived`);
}

for (const mode of ['inline', 'worker'] as const) {
  describe(`LinuxUdpBind on loopback (${mode} reader)`, { skip }, () => {
    before(() => {
      process.env.WEFT_READERS = mode;
    });
    after(() => {
      delete process.env.WEFT_READERS;
    });
    const opened: Bind[] = [];
    const open = async <B extends Bind>(bind: Promise<B>): Promise<B> => {
      const b = await bind;
      opened.push(b);
      return b;
    };

    after(async () => {
      await Promise.all(opened.map((b) => b.close()));
    });

    it('exchanges batches both ways over IPv4 and IPv6, reporting sources in plain form', async () => {
      const a = await open(LinuxUdpBind.open(0));
      const b = await open(LinuxUdpBind.open(0));
      assert.ok(a.dualStack && b.dualStack);
      assert.ok(a.port > 0 && b.port > 0 && a.port !== b.port);
      const atA = new Sink(a);
      // B echoes every batch back to the sources, as one batch: the received Endpoints serve as destinations.
      const atB = new Sink(b, (datagrams) =>
        b.send(
          datagrams.map((d) => ({
            data: text(`re ${new TextDecoder().decode(d.data)}`),
            endpoint: d.endpoint,
          })),
        ),
      );
      const batch: Datagram[] = [];
      for (let i = 0; i < 64; i++) {
        batch.push({ data: text(`v4 ${i}`), endpoint: to('127.0.0.1', b.port) });
        batch.push({ data: text(`v6 ${i}`), endpoint: to('::1', b.port) });
      }
      a.send(batch);
      await atB.waitFor(128);
      await atA.waitFor(128);

      const sources = new Map<string, Endpoint>();
      for (const d of atB.datagrams) {
        const family = new TextDecoder().decode(d.data).slice(0, 2);
        const address = family === 'v4' ? '127.0.0.1' : '::1';
        assert.deepEqual({ ...d.endpoint }, { address, port: a.port, local: address });
        const first = sources.get(family) ?? d.endpoint;
        sources.set(family, first);
        assert.equal(d.endpoint, first, 'the same Endpoint object for every datagram of one source');
      }
      for (const d of atA.datagrams) {
        const family = new TextDecoder().decode(d.data).slice(3, 5);
        const address = family === 'v4' ? '127.0.0.1' : '::1';
        assert.deepEqual({ ...d.endpoint }, { address, port: b.port, local: address });
      }
      assert.deepEqual(atB.texts().sort(), batch.map((d) => new TextDecoder().decode(d.data)).sort());
      assert.deepEqual(
        atA.texts().sort(),
        atB
          .texts()
          .map((s) => `re ${s}`)
          .sort(),
      );
      assert.ok(atB.batches < 128, `datagrams arrive in batches (${atB.batches} batches for 128)`);
      const ca = a.counters;
      assert.equal(ca.datagramsOut, 128);
      assert.equal(
        ca.bytesOut,
        batch.reduce((n, d) => n + d.data.length, 0),
      );
      assert.equal(ca.datagramsIn, 128);
      assert.equal(ca.sendErrors + ca.sendDropped, 0);
      assert.equal(b.counters.bytesIn, ca.bytesOut);
      assert.equal(b.counters.batchesIn, atB.batches);
    });

    it(
      'reports each batch to the poller, which lets a stream gather before it looks again',
      { skip: mode !== 'inline' && 'the poller reads inline only' },
      async () => {
        const a = await open(LinuxUdpBind.open(0));
        const b = await open(LinuxUdpBind.open(0));
        const atB = new Sink(b);
        const before = mainPoller.coalesced;
        // Ten datagrams in one sendmmsg: queued together, read in one batch of ten, then a sleep.
        a.send(
          Array.from({ length: 10 }, (_, i) => ({ data: text(`s ${i}`), endpoint: to('127.0.0.1', b.port) })),
        );
        await atB.waitFor(10);
        await waitFor('a sleep to gather', () => mainPoller.coalesced > before, {
          timeoutMs: 2_000,
          intervalMs: 1,
        });
        const lone = mainPoller.coalesced;
        for (let i = 0; i < 5; i++) {
          a.send([{ data: text(`lone ${i}`), endpoint: to('127.0.0.1', b.port) }]);
          await atB.waitFor(11 + i);
          await delay(5);
        }
        assert.equal(mainPoller.coalesced, lone, 'datagrams one at a time: no sleep');
      },
    );

    it(
      'hands the CPU over after an answer sent while serving a lone datagram, not after other sends',
      { skip: mode !== 'inline' && 'the poller reads inline only' },
      async () => {
        const a = await open(LinuxUdpBind.open(0));
        const b = await open(LinuxUdpBind.open(0));
        const atA = new Sink(a);
        // B answers each datagram from its reader's callback, as a gateway answers a ping.
        const atB = new Sink(b, (datagrams) =>
          b.send(datagrams.map((d) => ({ data: text('answer'), endpoint: d.endpoint }))),
        );
        await delay(5);
        const before = mainPoller.handedOff;
        for (let i = 0; i < 5; i++) {
          a.send([{ data: text(`ping ${i}`), endpoint: to('127.0.0.1', b.port) }]);
          await atA.waitFor(i + 1);
          await delay(5);
        }
        assert.equal(atB.datagrams.length, 5);
        assert.equal(
          mainPoller.handedOff - before,
          5,
          "one hand-over per answer; A's own sends (from a timer) none",
        );
      },
    );

    it('carries 10,000 datagrams of 1..1472 bytes intact over 127.0.0.1', async (t) => {
      const a = await open(LinuxUdpBind.open(0));
      const b = await open(LinuxUdpBind.open(0));
      await integrity(t, a, new Sink(b), to('127.0.0.1', b.port), '127.0.0.1');
    });

    it('carries 10,000 datagrams of 1..1472 bytes intact over ::1', async (t) => {
      const a = await open(LinuxUdpBind.open(0));
      const b = await open(LinuxUdpBind.open(0));
      await integrity(t, a, new Sink(b), to('::1', b.port), '::1');
    });

    it('interoperates with the node:dgram UdpBind in both directions', async (t) => {
      const linux = await open(LinuxUdpBind.open(0));
      const dgram = await open(UdpBind.open(0));
      const atLinux = new Sink(linux);
      const atDgram = new Sink(dgram);
      dgram.send([
        { data: text('from dgram v4'), endpoint: to('127.0.0.1', linux.port) },
        { data: text('from dgram v6'), endpoint: to('::1', linux.port) },
      ]);
      linux.send([
        { data: text('from linux v4'), endpoint: to('127.0.0.1', dgram.port) },
        { data: text('from linux v6'), endpoint: to('::1', dgram.port) },
      ]);
      await atLinux.waitFor(2);
      await atDgram.waitFor(2);
      const seen = (sink: Sink): string[] =>
        sink.datagrams
          .map((d) => `${new TextDecoder().decode(d.data)} @ ${d.endpoint.address}:${d.endpoint.port}`)
          .sort();
      assert.deepEqual(seen(atLinux), [
        `from dgram v4 @ 127.0.0.1:${dgram.port}`,
        `from dgram v6 @ ::1:${dgram.port}`,
      ]);
      assert.deepEqual(seen(atDgram), [
        `from linux v4 @ 127.0.0.1:${linux.port}`,
        `from linux v6 @ ::1:${linux.port}`,
      ]);
      // And a bulk run from node:dgram into LinuxUdpBind.
      await integrity(t, dgram, atLinux, to('127.0.0.1', linux.port), '127.0.0.1', 2_000);
    });

    it('binds an explicit IPv4 address with an IPv4-only socket', async () => {
      const v4 = await open(LinuxUdpBind.open(0, '127.0.0.1'));
      const peer = await open(LinuxUdpBind.open(0));
      assert.equal(v4.dualStack, false);
      const atV4 = new Sink(v4);
      const atPeer = new Sink(peer);
      v4.send([
        { data: text('to v4'), endpoint: to('127.0.0.1', peer.port) },
        { data: text('no v6 here'), endpoint: to('::1', peer.port) },
        { data: text('mapped'), endpoint: to('::ffff:127.0.0.1', peer.port) },
      ]);
      peer.send([{ data: text('back'), endpoint: to('127.0.0.1', v4.port) }]);
      await atPeer.waitFor(2);
      await atV4.waitFor(1);
      assert.deepEqual(atPeer.texts().sort(), ['mapped', 'to v4']);
      assert.deepEqual(
        { ...atPeer.datagrams[0]!.endpoint },
        { address: '127.0.0.1', port: v4.port, local: '127.0.0.1' },
      );
      assert.deepEqual(
        { ...atV4.datagrams[0]!.endpoint },
        { address: '127.0.0.1', port: peer.port, local: '127.0.0.1' },
      );
      assert.equal(v4.counters.sendErrors, 1);
      assert.equal(v4.lastSendError, 'EAFNOSUPPORT');

      const v6 = await open(LinuxUdpBind.open(0, '::1'));
      const atV6 = new Sink(v6);
      peer.send([{ data: text('to ::1'), endpoint: to('::1', v6.port) }]);
      await atV6.waitFor(1);
      assert.deepEqual({ ...atV6.datagrams[0]!.endpoint }, { address: '::1', port: peer.port, local: '::1' });
    });

    it('reports a port in use (EADDRINUSE) with a descriptive message', async (t) => {
      const holder = await open(LinuxUdpBind.open(0));
      const inUse = new RegExp(
        `cannot bind UDP port ${holder.port}: bind: EADDRINUSE .*UDP port ${holder.port} is in use`,
      );
      await assert.rejects(LinuxUdpBind.open(holder.port), (e: NodeJS.ErrnoException) => {
        assert.match(e.message, new RegExp(`^${inUse.source}`));
        assert.equal(e.code, 'EADDRINUSE');
        t.diagnostic(e.message);
        return true;
      });
      await assert.rejects(openBestBind(holder.port), inUse);
      // Held by node:dgram instead, and the other way round.
      const dgram = await open(UdpBind.open(0));
      await assert.rejects(LinuxUdpBind.open(dgram.port), /is in use/);
      await assert.rejects(UdpBind.open(holder.port), /EADDRINUSE/);
      // The IPv4 wildcard is part of the dual-stack socket's port.
      await assert.rejects(LinuxUdpBind.open(holder.port, '127.0.0.1'), /is in use/);
    });

    it('counts refused datagrams without throwing and still sends the rest', async () => {
      const a = await open(LinuxUdpBind.open(0));
      const b = await open(LinuxUdpBind.open(0));
      const atB = new Sink(b);
      const batch: Datagram[] = [
        { data: text('one'), endpoint: to('127.0.0.1', b.port) },
        { data: text('x'), endpoint: to('not-an-address', b.port) }, // unparsable
        { data: text('x'), endpoint: to('255.255.255.255', b.port) }, // EACCES: broadcast without SO_BROADCAST
        { data: text('x'), endpoint: to('127.0.0.1', 0) }, // EINVAL: port 0
        { data: text('x'), endpoint: to('127.0.0.1', 70_000) }, // no such port
        { data: new Uint8Array(65_536), endpoint: to('127.0.0.1', b.port) }, // longer than any UDP datagram
        { data: new Uint8Array(65_508), endpoint: to('127.0.0.1', b.port) }, // EMSGSIZE over IPv4
        { data: text('x'), endpoint: to('fe80::1%no-such-if0', b.port) }, // unknown zone
        { data: text('two'), endpoint: to('::1', b.port) },
      ];
      assert.doesNotThrow(() => a.send(batch));
      await atB.waitFor(2);
      await delay(50);
      assert.deepEqual(atB.texts().sort(), ['one', 'two']);
      const c = a.counters;
      assert.equal(c.datagramsOut, 2);
      assert.equal(c.sendErrors, 7);
      assert.equal(c.sendDropped, 0);
      assert.equal(a.sendErrors, 7);
    });

    it('counts datagrams to unreachable destinations (ENETUNREACH in a namespace without routes)', async (t) => {
      if (!requireRoot(t, ['ip'])) return;
      const lab = await Lab.create('udp', { tools: ['ip'] });
      try {
        const ns = await lab.netns('a');
        const { stdout } = await ns.exec(process.execPath, [PEER, 'unreachable'], { timeoutMs: 15_000 });
        const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
          ev: string;
          received?: string[];
          counters?: Record<string, number>;
          lastSendError?: string;
          message?: string;
        };
        assert.equal(result.ev, 'unreachable', stdout);
        assert.deepEqual(result.received, ['first from 127.0.0.1', 'last from ::1']);
        assert.equal(result.counters!.sendErrors, 2);
        assert.equal(result.counters!.datagramsOut, 2);
        assert.equal(result.lastSendError, 'ENETUNREACH');
      } finally {
        await lab.cleanup();
      }
    });

    it('drops the rest of a batch when the socket buffer is full (EAGAIN), counted in sendDropped', async (t) => {
      if (!requireRoot(t, ['ip', 'tc'])) return;
      const lab = await Lab.create('udp', { tools: ['ip', 'tc'] });
      try {
        const a = await lab.netns('a');
        const b = await lab.netns('b');
        const { aIf } = await lab.veth(a, b, { aAddr: '10.203.0.1/24', bAddr: '10.203.0.2/24' });
        // Datagrams to b wait in a slow token bucket that never drops (64 MB queue); each one keeps its
        // socket-buffer charge meanwhile, so the 4 MiB send buffer fills up. A permanent neighbour entry keeps the
        // ARP queue (which drops, releasing the charge) out of the way.
        await a.exec('tc', [
          'qdisc',
          'add',
          'dev',
          aIf,
          'root',
          'tbf',
          'rate',
          '8kbit',
          'burst',
          '1600',
          'limit',
          '64mb',
        ]);
        await a.exec('ip', [
          'neigh',
          'replace',
          '10.203.0.2',
          'lladdr',
          '02:00:00:00:00:02',
          'dev',
          aIf,
          'nud',
          'permanent',
        ]);
        const { stdout } = await a.exec(process.execPath, [PEER, 'eagain', '10.203.0.2'], {
          timeoutMs: 30_000,
        });
        const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
          ev: string;
          total: number;
          batches: number;
          counters: Record<string, number>;
        };
        assert.equal(result.ev, 'eagain', stdout);
        const c = result.counters;
        t.diagnostic(
          `${c.datagramsOut} datagrams queued, then ${c.sendDropped} dropped (batch ${result.batches})`,
        );
        assert.ok(c.sendDropped! > 0 && c.sendDropped! <= 64, JSON.stringify(result));
        assert.equal(c.datagramsOut! + c.sendDropped!, result.total);
        assert.equal(c.sendErrors, 0);
      } finally {
        await lab.cleanup();
      }
    });

    it('sends a batch larger than one sendmmsg call (2,000 × 1,000 bytes), growing its buffers', async () => {
      const a = await open(LinuxUdpBind.open(0));
      const b = await open(LinuxUdpBind.open(0));
      const atB = new Sink(b);
      const count = 2_000;
      const batch: Datagram[] = Array.from({ length: count }, (_, seq) => ({
        data: payload(seq, 1_000),
        endpoint: to('::1', b.port),
      }));
      a.send(batch);
      assert.equal(a.counters.datagramsOut, count);
      await atB.waitFor(count);
      const seqs = atB.datagrams.map((d) =>
        new DataView(d.data.buffer, d.data.byteOffset).getUint32(0, true),
      );
      assert.deepEqual(
        seqs,
        Array.from({ length: count }, (_, i) => i),
      );
      atB.datagrams.forEach((d, seq) => assert.ok(sameBytes(d.data, batch[seq]!.data), `datagram ${seq}`));
    });

    it('closes promptly, frees the port at once, and ignores sends after close()', async () => {
      for (const started of [true, false]) {
        const a = await LinuxUdpBind.open(0);
        const port = a.port;
        if (started) {
          const sink = new Sink(a);
          const peer = await open(LinuxUdpBind.open(0));
          peer.send([{ data: text('hello'), endpoint: to('::1', port) }]);
          await sink.waitFor(1);
        }
        const t0 = performance.now();
        await a.close();
        const ms = performance.now() - t0;
        assert.ok(ms < 500, `close() took ${ms.toFixed(0)} ms`);
        await a.close(); // idempotent
        assert.doesNotThrow(() => a.send([{ data: text('late'), endpoint: to('127.0.0.1', port) }]));
        assert.equal(a.counters.sendDropped, 1);
        assert.throws(() => a.start(() => undefined), /after close/);
        // The port is free: LinuxUdpBind and node:dgram can take it again.
        const again = await LinuxUdpBind.open(port);
        assert.equal(again.port, port);
        await again.close();
        const viaDgram = await UdpBind.open(port);
        await viaDgram.close();
      }
    });

    it('openBestBind picks LinuxUdpBind, and UdpBind with WEFT_UDP=dgram', async () => {
      const saved = process.env.WEFT_UDP;
      try {
        delete process.env.WEFT_UDP;
        const best = await open(openBestBind(0));
        assert.ok(best instanceof LinuxUdpBind);
        process.env.WEFT_UDP = 'dgram';
        const fallback = await open(openBestBind(0, '127.0.0.1'));
        assert.ok(fallback instanceof UdpBind);
        const sink = new Sink(fallback);
        best.send([{ data: text('hi'), endpoint: to('127.0.0.1', fallback.port) }]);
        await sink.waitFor(1);
      } finally {
        if (saved === undefined) delete process.env.WEFT_UDP;
        else process.env.WEFT_UDP = saved;
      }
    });
  });
}

interface BlastResult {
  ev: string;
  impl: string;
  sent: number;
  elapsedMs: number;
  userMs: number;
  systemMs: number;
  counters: Record<string, number>;
  message?: string;
}

describe('UDP bind throughput on loopback (measured, not asserted)', { skip }, () => {
  const cores = availableParallelism();

  for (const impl of ['linux', 'dgram'] as const) {
    it(`${impl}: 64-byte datagrams in batches of 64, sender in another process`, async (t) => {
      const receiver: Bind = impl === 'linux' ? await LinuxUdpBind.open(0) : await UdpBind.open(0);
      let received = 0;
      let batches = 0;
      receiver.start((datagrams) => {
        received += datagrams.length;
        batches++;
      });
      try {
        await delay(300); // let the reader worker start
        const durationMs = 2_000;
        const cpuBefore = process.cpuUsage();
        const { stdout } = await run(
          process.execPath,
          [PEER, 'blast', impl, '127.0.0.1', String(receiver.port), String(durationMs), '64', '64'],
          { timeoutMs: 30_000 },
        );
        const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as BlastResult;
        assert.equal(result.ev, 'blast', stdout);
        await delay(300); // stragglers
        const cpu = process.cpuUsage(cpuBefore);
        const seconds = result.elapsedMs / 1000;
        const refused = (result.counters.sendDropped ?? 0) + (result.counters.sendErrors ?? 0);
        const accepted = result.sent - refused;
        const perDatagram = (ms: number, n: number): string =>
          `${((ms * 1000) / Math.max(n, 1)).toFixed(2)} µs`;
        const line =
          `${impl}: sent ${Math.round(result.sent / seconds)}/s (${result.sent} in ${result.elapsedMs.toFixed(0)} ms, ` +
          `${refused} refused; CPU user ${result.userMs.toFixed(0)} ms + sys ${result.systemMs.toFixed(0)} ms = ` +
          `${perDatagram(result.userMs + result.systemMs, result.sent)}/datagram); ` +
          `received ${Math.round(received / seconds)}/s (${((100 * received) / Math.max(accepted, 1)).toFixed(1)}%, ` +
          `${batches} batches, mean ${(received / Math.max(batches, 1)).toFixed(1)}; CPU user ` +
          `${(cpu.user / 1000).toFixed(0)} ms + sys ${(cpu.system / 1000).toFixed(0)} ms = ` +
          `${perDatagram((cpu.user + cpu.system) / 1000, received)}/datagram); ${cores} cores`;
        t.diagnostic(line);
        assert.ok(received > 0);
      } finally {
        await receiver.close();
      }
    });
  }
});
