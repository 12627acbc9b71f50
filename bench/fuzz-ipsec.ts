/**
 * `npm run fuzz -- [--count N] [--seed S]`: hostile input for the IPsec cores, N IKE datagrams and N ESP
 * packets (default 1,000,000 each), built from a seeded PRNG over genuine traffic of a real exchange between
 * two IKE cores in this process (IKE_SA_INIT, IKE_AUTH, a CHILD SA rekey, a liveness check; ESP sealed with
 * the negotiated CHILD SA):
 *
 * 1. IKE: each datagram (random bytes, truncated, extended, bits flipped, header fields rewritten, port and
 *    marker switched, replayed, message ID moved) goes to the responder's core, whose established SA it meets.
 *    Asserted per input: no exception; exactly one outcome (processed, or one drop of a known reason, the
 *    counters grown by exactly one); no answer except what RFC 7296 requires (an IKE_SA_INIT request, §1.2,
 *    or the byte-identical retransmission of a request already answered, §2.1); no SA created.
 * 2. ESP: each packet (the same mutations over sealed packets, plus random SPIs and sequence numbers) is
 *    received as the data plane does, by SPI (EspInboundSet) and then on the inbound SA. Asserted per input: no exception; exactly one counted outcome; never 'ok' (every genuine
 *    packet was received already, so even an unmodified one is a replay).
 *
 * Prints the counts by outcome and the rate; exits 1 on the first violation (with the seed and input).
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

import type { IkeAction } from '../src/ipsec/actions.js';
import type { ChildSaSpec, TrafficSelector } from '../src/ipsec/child-sa.js';
import { EXCHANGE } from '../src/ipsec/constants.js';
import { IkeCore } from '../src/ipsec/core.js';
import { IKE_DROP_REASONS } from '../src/ipsec/drops.js';
import { EspInboundSa, EspInboundSet, EspOutboundSa } from '../src/ipsec/esp.js';
import { parseMessage } from '../src/ipsec/messages.js';
import { selectorFromPrefix } from '../src/ipsec/traffic-selectors.js';
import { echo } from '../src/net/icmp.js';

const A = '192.0.2.1';
const B = '192.0.2.2';
const PSK = 'fuzz-pre-shared-key-0123456789';

function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function ts(prefix: string): TrafficSelector {
  const s = selectorFromPrefix(prefix);
  if (!s) throw new Error(prefix);
  return s;
}

function core(local: string, remote: string, localNet: string, remoteNet: string): IkeCore {
  const c = IkeCore.create({
    localId: { type: 'ipv4', value: local },
    remoteId: { type: 'ipv4', value: remote },
    psk: PSK,
    ikeProposals: ['aes256gcm16-prfsha256-x25519'],
    espProposals: ['aes256gcm16'],
    localSelectors: [ts(localNet)],
    remoteSelectors: [ts(remoteNet)],
    mode: 'tunnel',
    dpdIntervalMs: 0,
    ikeRekeyMs: 0,
    childRekeyMs: 0,
    forceEncapsulation: local === B,
  });
  if (!c.ok) throw new Error(`${c.error.field}: ${c.error.message}`);
  return c.value;
}

function fail(message: string): never {
  process.stderr.write(`fuzz: ${message}\n`);
  process.exit(1);
}

function main(): void {
  const { values } = parseArgs({
    options: { count: { type: 'string', default: '1000000' }, seed: { type: 'string' } },
  });
  const count = Number(values.count);
  if (!Number.isSafeInteger(count) || count < 1) fail('--count must be a positive whole number');
  const seed = values.seed !== undefined ? Number(values.seed) : randomBytes(4).readUInt32BE();
  const rnd = xorshift(seed);
  const below = (n: number): number => rnd() % n;

  // A genuine exchange on a simulated wire: A initiates, B answers (and asks for UDP 4500 at once).
  const a = core(A, B, '10.1.0.0/16', '10.2.0.0/16');
  const b = core(B, A, '10.2.0.0/16', '10.1.0.0/16');
  const log: { a: IkeAction[]; b: IkeAction[] } = { a: [], b: [] };
  const wire: { to: 'a' | 'b'; data: Buffer; port: number }[] = [];
  const now = 1_000_000;
  const take = (side: 'a' | 'b', actions: IkeAction[]): void => {
    log[side].push(...actions);
    for (const x of actions)
      if (x.type === 'send') wire.push({ to: side === 'a' ? 'b' : 'a', data: x.data, port: x.localPort });
  };
  const run = (): void => {
    for (let i = 0; i < 100 && wire.length > 0; i++) {
      const d = wire.shift()!;
      const [to, from, me] = d.to === 'a' ? [a, B, A] : [b, A, B];
      const local = { address: me, port: d.port };
      take(d.to, to.receive({ data: d.data, remote: { address: from, port: d.port }, local }, now));
    }
  };
  take('a', a.initiate({ address: B, port: 500 }, { address: A, port: 500 }, now));
  run();
  const firstChild = log.a.find((x) => x.type === 'child-sa-up');
  if (firstChild?.type !== 'child-sa-up') fail('the exchange did not set up a CHILD SA');
  take('a', a.rekeyChild(firstChild.spec.outboundSpi, now));
  run();
  take('a', a.dpd(now));
  run();
  const ups = (side: 'a' | 'b'): ChildSaSpec[] =>
    log[side].flatMap((x) => (x.type === 'child-sa-up' ? [x.spec] : []));
  if (ups('b').length !== 2) fail('the CHILD SA rekey did not complete');

  const corpus: { data: Buffer; port: number }[] = [];
  for (const side of ['a', 'b'] as const)
    for (const x of log[side]) if (x.type === 'send') corpus.push({ data: x.data, port: x.localPort });
  const requests = new Set(log.a.flatMap((x) => (x.type === 'send' ? [x.data.toString('hex')] : [])));

  // 1. IKE
  const reasons = new Set<string>(IKE_DROP_REASONS);
  const ikeOutcomes = new Map<string, number>();
  let answered = 0;
  let started = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    const base = corpus[below(corpus.length)]!;
    let data: Buffer;
    let port = base.port;
    const kind = below(10);
    const skip = port === 4500 ? 4 : 0;
    if (kind === 0) {
      data = Buffer.alloc(below(200));
      for (let j = 0; j < data.length; j++) data[j] = rnd() & 0xff;
      port = below(2) ? 500 : 4500;
    } else {
      data = Buffer.from(base.data);
      if (kind === 1) data = data.subarray(0, below(data.length));
      else if (kind === 2) data = Buffer.concat([data, Buffer.alloc(1 + below(8), rnd() & 0xff)]);
      else if (kind === 3 || kind === 4)
        for (let n = 1 + below(3); n > 0; n--) data[below(data.length)]! ^= 1 << below(8);
      else if (kind === 5) data[skip + below(28)] = rnd() & 0xff;
      else if (kind === 6 && data.length >= skip + 32) data.writeUInt16BE(below(0x10000), skip + 30);
      else if (kind === 7) port = port === 4500 ? 500 : 4500;
      else if (kind === 8 && data.length >= skip + 20) {
        data[skip + 18] = 34 + below(4);
        data[skip + 19] = below(2) ? 0x08 : 0x28;
      } else if (below(2) && data.length >= skip + 28) data.writeUInt32BE(below(4), skip + 20);
    }
    const receivedBefore = b.stats.received;
    const processedBefore = b.stats.processed;
    let actions: IkeAction[];
    try {
      actions = b.receive({ data, remote: { address: A, port }, local: { address: B, port } }, now);
    } catch (error) {
      fail(`seed ${seed} IKE input ${i} (${data.toString('hex')}) threw: ${(error as Error).stack}`);
    }
    const drops = actions.filter((x) => x.type === 'drop');
    const processed = b.stats.processed - processedBefore;
    if (b.stats.received !== receivedBefore + 1 || drops.length + processed !== 1)
      fail(`seed ${seed} IKE input ${i}: ${drops.length} drops and ${processed} processed`);
    for (const d of drops) {
      if (d.type !== 'drop' || !reasons.has(d.reason)) fail(`seed ${seed} IKE input ${i}: unknown drop`);
      ikeOutcomes.set(d.reason, (ikeOutcomes.get(d.reason) ?? 0) + 1);
    }
    if (processed === 1) ikeOutcomes.set('processed', (ikeOutcomes.get('processed') ?? 0) + 1);
    if (actions.some((x) => x.type === 'send')) {
      answered++;
      const bare = port === 4500 && data.length >= 4 ? data.subarray(4) : data;
      const m = parseMessage(bare);
      const init = m.ok && m.value.header.exchange === EXCHANGE.IKE_SA_INIT && !m.value.header.response;
      if (!init && !requests.has(data.toString('hex')))
        fail(`seed ${seed} IKE input ${i}: answered ${data.toString('hex')}`);
    }
    if (actions.some((x) => x.type === 'child-sa-up' || x.type === 'ike-sa-up'))
      fail(`seed ${seed} IKE input ${i}: an SA came up`);
  }
  const ikeSeconds = Number(process.hrtime.bigint() - started) / 1e9;

  // 2. ESP: packets sealed on A's newest CHILD SA, opened on B's mirror of it.
  const specA = ups('a').at(-1)!;
  const specB = ups('b').find((s) => s.inboundSpi === specA.outboundSpi)!;
  const tx = new EspOutboundSa(specA);
  const rx = new EspInboundSa(specB);
  const sealed: Uint8Array[] = [];
  const out = new Uint8Array(2048);
  for (let i = 0; i < 64; i++) {
    const packet = echo('request', '10.1.0.5', '10.2.0.7', 1, i, new Uint8Array(i * 8));
    const buf = new Uint8Array(tx.sealedLength(packet.length));
    const n = tx.seal(packet, 4, buf);
    sealed.push(buf.slice(0, n));
    if (rx.open(buf.subarray(0, n), out) !== 'ok') fail('a genuine ESP packet did not open');
  }
  // Received as the data plane does: by SPI first (RFC 4303 §3.4.2), then on the SA.
  const inbound = new EspInboundSet();
  inbound.add(rx);
  const counted = (): number =>
    rx.counters.packets +
    Object.values(rx.counters.drops).reduce((sum, n) => sum + n, 0) +
    inbound.drops.short +
    inbound.drops.unknownSpi;
  const dropsBefore = counted() - rx.counters.packets;
  const espOutcomes = new Map<string, number>();
  started = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    const base = sealed[below(sealed.length)]!;
    let data: Uint8Array;
    const kind = below(8);
    if (kind === 0) {
      data = new Uint8Array(below(120));
      for (let j = 0; j < data.length; j++) data[j] = rnd() & 0xff;
    } else {
      data = Uint8Array.from(base);
      if (kind === 1) data = data.subarray(0, below(data.length));
      else if (kind === 2 || kind === 3)
        for (let n = 1 + below(3); n > 0; n--) data[below(data.length)]! ^= 1 << below(8);
      else if (kind === 4)
        new DataView(data.buffer).setUint32(4, rnd()); // sequence number
      else if (kind === 5) new DataView(data.buffer).setUint32(0, below(2) ? rnd() : specB.inboundSpi);
      else if (kind === 6) data = Uint8Array.from([...data, ...new Uint8Array(1 + below(16))]);
      // kind 7: a replay as it is
    }
    let status: string;
    const before = counted();
    try {
      status = inbound.open(data, out.length >= data.length ? out : new Uint8Array(data.length));
    } catch (error) {
      fail(
        `seed ${seed} ESP input ${i} (${Buffer.from(data).toString('hex')}) threw: ${(error as Error).stack}`,
      );
    }
    const after = counted();
    if (status === 'ok') fail(`seed ${seed} ESP input ${i}: a hostile packet opened`);
    if (after !== before + 1) fail(`seed ${seed} ESP input ${i}: ${after - before} counted outcomes`);
    espOutcomes.set(status, (espOutcomes.get(status) ?? 0) + 1);
  }
  const espSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const espDrops = counted() - rx.counters.packets - dropsBefore;
  tx.dispose();
  inbound.remove(rx.spi);

  const table = (m: Map<string, number>): string =>
    [...m.entries()]
      .sort((x, y) => y[1] - x[1])
      .map(([k, n]) => `    ${k.padEnd(28)} ${n}`)
      .join('\n');
  process.stdout.write(
    [
      `fuzz (seed ${seed}): ${count} IKE datagrams in ${ikeSeconds.toFixed(1)} s (${Math.round(count / ikeSeconds)}/s), ` +
        `${answered} answered (IKE_SA_INIT requests and retransmissions only)`,
      table(ikeOutcomes),
      `  ${count} ESP packets in ${espSeconds.toFixed(1)} s (${Math.round(count / espSeconds)}/s), ${espDrops} counted drops, 0 opened`,
      table(espOutcomes),
      'no exception; exactly one counted outcome per input',
      '',
    ].join('\n'),
  );
}

main();
