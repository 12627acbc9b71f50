/**
 * Hostile-input property test for the IKEv2 responder: a core with an established IKE SA (and its CHILD SA)
 * is fed 1,000,000 random and mutated datagrams (truncated, extended, flipped bits, overwritten bytes,
 * rewritten header fields, other ports and markers) built from a seeded PRNG over a corpus of genuine
 * datagrams captured on the simulated wire. For every call:
 *
 *   - no exception escapes `IkeCore.receive`;
 *   - it ends processed or as exactly one drop, whose reason is one of IKE_DROP_REASONS, and the counters
 *     grow by exactly that;
 *   - nothing is answered except what RFC 7296 requires: an IKE_SA_INIT request (answered unauthenticated
 *     by design), or the byte-identical retransmission of a request already answered (§2.1).
 *
 * The corpus includes a CHILD SA rekey (CREATE_CHILD_SA and its delete). Afterwards the established SA is
 * untouched and still answers a liveness check. A second test seals hostile CREATE_CHILD_SA bodies with the
 * real keys, so the rekey, IKE rekey and new-CHILD-SA paths themselves meet them.
 * WEFT_FUZZ_SEED and WEFT_FUZZ_ITERATIONS reproduce or resize a run.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { parseProposal } from '../../src/ipsec/algorithms.js';
import { DH_GROUP, EXCHANGE, NOTIFY, PROTOCOL } from '../../src/ipsec/constants.js';
import { generateDh } from '../../src/ipsec/dh.js';
import { sealMessage, type SkKeys } from '../../src/ipsec/sk.js';
import type { Payload } from '../../src/ipsec/messages.js';
import { IKE_DROP_REASONS } from '../../src/ipsec/drops.js';
import { parseMessage } from '../../src/ipsec/messages.js';
import { A_ADDR, B_ADDR, Pair, ts } from './ipsec-pair.js';

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

describe('IKEv2 responder under hostile input', () => {
  it('1,000,000 random and mutated datagrams: no throw, one counted outcome each, no unauthenticated answers', () => {
    const seed = Number(process.env.WEFT_FUZZ_SEED ?? Date.now() % 0xffffffff);
    const iterations = Number(process.env.WEFT_FUZZ_ITERATIONS ?? 1_000_000);
    const rnd = xorshift(seed);
    const below = (n: number) => rnd() % n;

    // A real exchange, B the responder, on 4500 with the marker after IKE_SA_INIT.
    const p = Pair.create({ dpdIntervalMs: 0 }, { dpdIntervalMs: 0, forceEncapsulation: true });
    p.initiate();
    p.run();
    // A CHILD SA rekey (CREATE_CHILD_SA and the INFORMATIONAL delete) joins the corpus.
    p.take('a', p.a.rekeyChild(p.of('a', 'child-sa-up')[0]!.spec.outboundSpi, p.now));
    p.run();
    p.take('a', p.a.dpd(p.now));
    p.run();
    assert.equal(p.of('b', 'child-sa-up').length, 2);
    const corpus =
      p.wire.length === 0 ? p.of('a', 'send').map((s) => ({ data: s.data, port: s.localPort })) : [];
    // Plus what B itself sent (responses), which B must never take as requests.
    for (const s of p.of('b', 'send')) corpus.push({ data: s.data, port: s.localPort });
    const requests = new Set(p.of('a', 'send').map((s) => s.data.toString('hex')));
    const b = p.b;
    const before = b.list().map((sa) => [sa.state, sa.child?.spec.inboundSpi]);

    const reasons = new Set<string>(IKE_DROP_REASONS);
    let answered = 0;
    const started = Date.now();
    for (let i = 0; i < iterations; i++) {
      const base = corpus[below(corpus.length)]!;
      let data: Buffer;
      let port = base.port;
      const kind = below(10);
      if (kind === 0) {
        data = Buffer.alloc(below(200));
        for (let j = 0; j < data.length; j++) data[j] = rnd() & 0xff;
        port = below(2) ? 500 : 4500;
      } else {
        data = Buffer.from(base.data);
        const skip = port === 4500 ? 4 : 0;
        switch (kind) {
          case 1:
            data = data.subarray(0, below(data.length));
            break;
          case 2:
            data = Buffer.concat([data, Buffer.alloc(1 + below(8), rnd() & 0xff)]);
            break;
          case 3:
          case 4:
            for (let n = 1 + below(3); n > 0; n--) data[below(data.length)]! ^= 1 << below(8);
            break;
          case 5:
            data[skip + below(28)] = rnd() & 0xff;
            break;
          case 6:
            // A plausible payload length or a header field rewritten.
            data.writeUInt16BE(below(0x10000), skip + 28 + 2 < data.length - 1 ? skip + 30 : skip);
            break;
          case 7:
            port = port === 4500 ? 500 : 4500;
            break;
          case 8:
            data[skip + 18] = 34 + below(4);
            data[skip + 19] = below(2) ? 0x08 : 0x28;
            break;
          default:
            // Replays as they are, and the message ID moved.
            if (below(2) && data.length >= skip + 28) data.writeUInt32BE(below(4), skip + 20);
        }
      }
      const receivedBefore = b.stats.received;
      const processedBefore = b.stats.processed;
      let actions;
      try {
        actions = b.receive(
          { data, remote: { address: A_ADDR, port: port }, local: { address: B_ADDR, port } },
          p.now,
        );
      } catch (error) {
        assert.fail(`seed ${seed} iteration ${i}: receive threw ${(error as Error).stack}`);
      }
      assert.equal(b.stats.received, receivedBefore + 1);
      const drops = actions.filter((x) => x.type === 'drop');
      const processed = b.stats.processed - processedBefore;
      assert.equal(drops.length + processed, 1, `seed ${seed} iteration ${i}: one outcome`);
      for (const d of drops) assert.ok(d.type === 'drop' && reasons.has(d.reason));
      if (actions.some((x) => x.type === 'send')) {
        answered++;
        const bare = port === 4500 && data.length >= 4 ? data.subarray(4) : data;
        const parsed = parseMessage(bare);
        const initRequest =
          parsed.ok && parsed.value.header.exchange === EXCHANGE.IKE_SA_INIT && !parsed.value.header.response;
        assert.ok(
          initRequest || requests.has(data.toString('hex')),
          `seed ${seed} iteration ${i}: answered ${data.toString('hex')}`,
        );
      }
      assert.ok(!actions.some((x) => x.type === 'child-sa-up' || x.type === 'ike-sa-up'));
    }
    const elapsed = Date.now() - started;
    const total = b.stats.processed + Object.values(b.stats.drops).reduce((s, n) => s + n, 0);
    assert.equal(total, b.stats.received);
    process.stdout.write(
      `# seed ${seed}: ${iterations} inputs in ${elapsed} ms, ${answered} answered, ${b.stats.processed} processed\n`,
    );

    // The established SA is as it was and still answers.
    const established = b.list().filter((sa) => sa.state === 'established');
    assert.deepEqual(
      established.map((sa) => [sa.state, sa.child?.spec.inboundSpi]),
      before,
    );
    const answersBefore = p.of('b', 'send').length;
    p.take('a', p.a.dpd(p.now));
    p.run();
    assert.equal(p.of('b', 'send').length, answersBefore + 1, 'the liveness check was answered');
    assert.equal(p.of('a', 'ike-sa-down').length, 0);
    assert.equal(p.a.stats.drops['integrity-check-failed'], 0);
  });
});

describe('IKEv2 CREATE_CHILD_SA bodies under hostile (authenticated) input', () => {
  it('rekeys are in the corpus above; here 3,000 well-sealed CREATE_CHILD_SA requests with hostile bodies: no throw, one outcome each', () => {
    const seed = Number(process.env.WEFT_FUZZ_SEED ?? Date.now() % 0xffffffff);
    const rnd = xorshift(seed);
    const below = (n: number) => rnd() % n;
    const quiet = { dpdIntervalMs: 0, ikeRekeyMs: 0, childRekeyMs: 0, espProposals: ['aes256gcm16-x25519'] };
    const p = Pair.create(quiet, quiet);
    p.initiate();
    p.run();
    const childA = p.of('a', 'child-sa-up')[0]!.spec;
    // A's side of the IKE SA seals as the peer would; its keys are private to the core, read them for the test.
    const saA = p.a.list()[0]! as unknown as { keys: { initiator: SkKeys }; spiI: Buffer; spiR: Buffer };
    const saB = () =>
      p.b.list().find((sa) => sa.spiI.equals(saA.spiI)) as unknown as { nextPeerRequestId: number };
    const keys = saA.keys.initiator;
    const spi4 = (v: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(v >>> 0);
      return b;
    };
    const x25519 = generateDh(DH_GROUP.CURVE25519).publicValue;
    const pieces = (): Payload[] => {
      const out: Payload[] = [];
      const n = 1 + below(7);
      for (let i = 0; i < n; i++) {
        switch (below(8)) {
          case 0:
            out.push({
              kind: 'notify',
              protocol: below(4),
              spi: below(2) ? spi4(childA.inboundSpi) : Buffer.alloc(below(9)),
              notify: [NOTIFY.REKEY_SA, NOTIFY.USE_TRANSPORT_MODE, NOTIFY.TEMPORARY_FAILURE, below(0x10000)][
                below(4)
              ]!,
              data: Buffer.alloc(below(3)),
            });
            break;
          case 1: {
            const ike = below(2) === 0;
            const text = ike
              ? ['aes256gcm16-prfsha256-x25519', 'aes128-sha256-modp2048'][below(2)]!
              : ['aes256gcm16', 'aes256gcm16-x25519', 'aes128-sha1-ecp256'][below(3)]!;
            const t = parseProposal(text, ike ? 'ike' : 'esp');
            if (!t.ok) break;
            out.push({
              kind: 'sa',
              proposals: [
                {
                  num: 1 + below(3),
                  protocol: ike ? PROTOCOL.IKE : below(2) ? PROTOCOL.ESP : below(4),
                  spi: Buffer.alloc([0, 4, 8, 3][below(4)]!, 1 + below(255)),
                  transforms: below(4) === 0 ? t.value.slice(0, below(t.value.length + 1)) : t.value,
                },
              ],
            });
            break;
          }
          case 2:
            out.push({ kind: 'nonce', data: Buffer.alloc([32, 8, 300, 16][below(4)]!, below(256)) });
            break;
          case 3:
            out.push({
              kind: 'ke',
              group: [31, 14, 19, 2, 0, below(0x10000)][below(6)]!,
              data: below(2) ? x25519 : Buffer.alloc(below(70), below(256)),
            });
            break;
          case 4:
          case 5:
            out.push({
              kind: 'ts',
              initiator: below(2) === 0,
              selectors: [
                [ts('10.1.0.0/16')],
                [ts('10.2.0.0/24')],
                [ts('10.9.0.0/16')],
                [],
                [ts('fd00::/64')],
              ][below(5)]!,
            });
            break;
          case 6:
            // Not the IKE SA itself (protocol 1): that would end the run.
            out.push({
              kind: 'delete',
              protocol: [0, 2, 3, 4][below(4)]!,
              spis: below(2) ? [spi4(childA.inboundSpi)] : [],
            });
            break;
          default:
            out.push({ kind: 'vendor', data: Buffer.alloc(below(16)) });
        }
      }
      return out;
    };
    const iterations = Number(process.env.WEFT_FUZZ_CREATE_ITERATIONS ?? 3_000);
    for (let i = 0; i < iterations; i++) {
      const target = saB();
      const id = below(10) === 0 ? below(5) : target.nextPeerRequestId;
      const data = sealMessage(
        {
          spiI: saA.spiI,
          spiR: saA.spiR,
          exchange: below(10) === 0 ? EXCHANGE.INFORMATIONAL : EXCHANGE.CREATE_CHILD_SA,
          initiator: true,
          response: below(20) === 0,
          messageId: id,
        },
        pieces(),
        keys,
        Buffer.alloc(keys.encr.ivLength, i & 0xff),
      );
      const before = { received: p.b.stats.received, processed: p.b.stats.processed };
      let actions;
      try {
        actions = p.b.receive(
          { data, remote: { address: A_ADDR, port: 500 }, local: { address: B_ADDR, port: 500 } },
          p.now,
        );
      } catch (error) {
        assert.fail(`seed ${seed} iteration ${i}: receive threw ${(error as Error).stack}`);
      }
      const drops = actions.filter((x) => x.type === 'drop').length;
      assert.equal(p.b.stats.received, before.received + 1);
      assert.equal(
        drops + p.b.stats.processed - before.processed,
        1,
        `seed ${seed} iteration ${i}: one outcome`,
      );
      // Whatever happened, B's CHILD SAs stay a coherent set (no SPI twice).
      const live = p.liveChildren('b').map((c) => c.inboundSpi);
      assert.equal(new Set(live).size, live.length);
    }
    process.stdout.write(
      `# seed ${seed}: ${iterations} CREATE_CHILD_SA bodies, ${p.b.stats.processed} processed\n`,
    );
  });
});
