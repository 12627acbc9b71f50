/**
 * TSO segmentation and GRO-style coalescing for the virtio-net TUN path: round trips are byte-exact, every
 * produced checksum verifies, and nothing that must not be merged is merged.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  GSO_NONE,
  GSO_TCPV4,
  GSO_TCPV6,
  VNET_F_DATA_VALID,
  VNET_F_NEEDS_CSUM,
  VNET_HDR_LENGTH,
  coalesce,
  fold,
  readVnetHeader,
  segmentInto,
  sum16,
} from '../../src/io/offload.js';
import { parseAddress } from '../../src/net/ip.js';
import { seededRandom } from '../support/random.js';

function addr(t: string): Uint8Array {
  const a = parseAddress(t);
  if (!a.ok) throw new Error(a.error);
  return a.value.bytes;
}

interface TcpOptions {
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
  seq: number;
  ack?: number;
  flags?: number;
  id?: number;
  payload: Uint8Array;
  options?: Uint8Array;
  df?: boolean;
}

function pseudo(p: Uint8Array, v6: boolean, l4len: number): number {
  return v6 ? sum16(p, 8, 40) + l4len + 6 : sum16(p, 12, 20) + l4len + 6;
}

/** A TCP packet with correct checksums. */
function tcp(o: TcpOptions): Uint8Array {
  const src = addr(o.src ?? '10.0.0.1');
  const dst = addr(o.dst ?? '10.0.0.2');
  const v6 = src.length === 16;
  const ipLen = v6 ? 40 : 20;
  const opts = o.options ?? new Uint8Array([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]); // NOP NOP timestamps
  const tcpLen = 20 + opts.length;
  const p = new Uint8Array(ipLen + tcpLen + o.payload.length);
  if (v6) {
    p[0] = 0x60;
    p[4] = (tcpLen + o.payload.length) >> 8;
    p[5] = (tcpLen + o.payload.length) & 0xff;
    p[6] = 6;
    p[7] = 64;
    p.set(src, 8);
    p.set(dst, 24);
  } else {
    p[0] = 0x45;
    p[2] = p.length >> 8;
    p[3] = p.length & 0xff;
    p[4] = ((o.id ?? 0) >> 8) & 0xff;
    p[5] = (o.id ?? 0) & 0xff;
    if (o.df ?? true) p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p.set(src, 12);
    p.set(dst, 16);
    const c = ~fold(sum16(p, 0, 20)) & 0xffff;
    p[10] = c >> 8;
    p[11] = c & 0xff;
  }
  const t = ipLen;
  const dv = new DataView(p.buffer);
  dv.setUint16(t, o.sport ?? 40000);
  dv.setUint16(t + 2, o.dport ?? 5201);
  dv.setUint32(t + 4, o.seq >>> 0);
  dv.setUint32(t + 8, o.ack ?? 12345);
  p[t + 12] = (tcpLen / 4) << 4;
  p[t + 13] = o.flags ?? 0x10;
  dv.setUint16(t + 14, 500);
  p.set(opts, t + 20);
  p.set(o.payload, t + tcpLen);
  const c = ~fold(pseudo(p, v6, p.length - t) + sum16(p, t, p.length)) & 0xffff;
  dv.setUint16(t + 16, c);
  return p;
}

function assertChecksumsValid(p: Uint8Array): void {
  const v6 = p[0]! >> 4 === 6;
  const t = v6 ? 40 : (p[0]! & 15) * 4;
  if (!v6) assert.equal(fold(sum16(p, 0, t)), 0xffff, 'IPv4 header checksum');
  assert.equal(fold(pseudo(p, v6, p.length - t) + sum16(p, t, p.length)), 0xffff, 'TCP checksum');
}

function flow(n: number, mss: number, opts: Partial<TcpOptions> = {}, seq0 = 1000): Uint8Array[] {
  const random = seededRandom(n * 7 + mss);
  return Array.from({ length: n }, (_, i) =>
    tcp({
      ...opts,
      seq: seq0 + i * mss,
      id: 100 + i,
      flags: i === n - 1 ? 0x18 : 0x10,
      payload: random(mss),
    }),
  );
}

function resegment(frames: Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const f of frames) {
    const dst = new Uint8Array(f.length * 2 + 4096);
    const lengths: number[] = [];
    const n = segmentInto(f, dst, 0, lengths);
    assert.ok(n > 0, 'frame segments');
    let at = 0;
    for (const l of lengths) {
      out.push(dst.slice(at, at + l));
      at += l;
    }
  }
  return out;
}

describe('TCP coalescing and segmentation for the virtio-net TUN path', () => {
  it('merges an in-order IPv4 run into one GSO frame and splits it back byte for byte', () => {
    const packets = flow(10, 1000);
    const frames = coalesce(packets);
    assert.equal(frames.length, 1);
    const h = readVnetHeader(frames[0]!);
    assert.deepEqual(h, {
      flags: VNET_F_NEEDS_CSUM,
      gsoType: GSO_TCPV4,
      hdrLength: 52,
      gsoSize: 1000,
      csumStart: 20,
      csumOffset: 16,
    });
    assert.equal(frames[0]!.length, VNET_HDR_LENGTH + 52 + 10_000);
    const back = resegment(frames);
    assert.deepEqual(back, packets);
    back.forEach(assertChecksumsValid);
  });

  it('does the same for IPv6', () => {
    const packets = flow(7, 1200, { src: 'fd00::1', dst: 'fd00::2' });
    const frames = coalesce(packets);
    assert.equal(frames.length, 1);
    assert.equal(readVnetHeader(frames[0]!).gsoType, GSO_TCPV6);
    assert.deepEqual(resegment(frames), packets);
  });

  it('keeps order and never merges across flows, gaps, flags or differing options', () => {
    const a = flow(3, 500, { sport: 1 });
    const b = flow(3, 500, { sport: 2 });
    const gap = [
      tcp({ seq: 1000, payload: new Uint8Array(500) }),
      tcp({ seq: 1600, payload: new Uint8Array(500) }),
    ];
    const syn = tcp({ seq: 1, flags: 0x02, payload: new Uint8Array(0) });
    const differentTs = [
      tcp({ seq: 1, payload: new Uint8Array(100) }),
      tcp({
        seq: 101,
        payload: new Uint8Array(100),
        options: new Uint8Array([1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 2]),
      }),
    ];
    const noDf = [
      tcp({ seq: 1, payload: new Uint8Array(100), df: false }),
      tcp({ seq: 101, payload: new Uint8Array(100), df: false }),
    ];
    const icmp = Uint8Array.from([
      0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 8, 0, 0, 0, 0, 0, 0, 0,
    ]);
    const input = [...a.slice(0, 2), ...b, a[2]!, ...gap, syn, ...differentTs, ...noDf, icmp];
    const frames = coalesce(input);
    // a0+a1 merge; b0..b2 merge; everything else stays single.
    assert.equal(frames.length, 1 + 1 + 1 + 2 + 1 + 2 + 2 + 1);
    for (const f of frames) {
      const h = readVnetHeader(f);
      if (h.gsoType === GSO_NONE) assert.equal(h.flags, VNET_F_DATA_VALID);
    }
    assert.deepEqual(resegment(frames), input);
  });

  it('ends a run at a short segment and at a pushed segment', () => {
    const p = [
      tcp({ seq: 0, payload: new Uint8Array(1000) }),
      tcp({ seq: 1000, payload: new Uint8Array(400) }),
      tcp({ seq: 1400, payload: new Uint8Array(1000) }),
      tcp({ seq: 2400, flags: 0x18, payload: new Uint8Array(1000) }),
      tcp({ seq: 3400, payload: new Uint8Array(1000) }),
    ];
    const frames = coalesce(p);
    assert.deepEqual(
      frames.map((f) => f.length - VNET_HDR_LENGTH - 52),
      [1400, 2000, 1000],
    );
  });

  it('segments a kernel TSO frame into valid MSS-sized segments with PSH/FIN only on the last', () => {
    const payload = seededRandom(9)(5000);
    const big = tcp({ seq: 0xfffff000, id: 65534, flags: 0x19, payload }); // ACK|PSH|FIN, seq wraps
    const frame = new Uint8Array(VNET_HDR_LENGTH + big.length);
    frame.set(big, VNET_HDR_LENGTH);
    frame[0] = VNET_F_NEEDS_CSUM;
    frame[1] = GSO_TCPV4;
    frame[4] = 1448 & 0xff;
    frame[5] = 1448 >> 8;
    const segs = resegment([frame]);
    assert.deepEqual(
      segs.map((s) => s.length - 52),
      [1448, 1448, 1448, 656],
    );
    segs.forEach(assertChecksumsValid);
    const dv = (s: Uint8Array): DataView => new DataView(s.buffer, s.byteOffset);
    assert.deepEqual(
      segs.map((s) => dv(s).getUint32(24)),
      [0xfffff000, 0xfffff5a8, 0xfffffb50, 0x000000f8],
    );
    assert.deepEqual(
      segs.map((s) => dv(s).getUint16(4)),
      [65534, 65535, 0, 1],
    );
    assert.deepEqual(
      segs.map((s) => s[33]),
      [0x10, 0x10, 0x10, 0x19],
    );
    assert.deepEqual(Buffer.concat(segs.map((s) => s.subarray(52))), Buffer.from(payload));
  });

  it('completes a checksum the kernel left partial', () => {
    const p = tcp({ seq: 5, payload: seededRandom(3)(333) });
    const partial = Uint8Array.from(p);
    const dv = new DataView(partial.buffer);
    dv.setUint16(36, fold(pseudo(partial, false, partial.length - 20))); // pseudo-header sum only
    const frame = new Uint8Array(VNET_HDR_LENGTH + p.length);
    frame.set(partial, VNET_HDR_LENGTH);
    frame[0] = VNET_F_NEEDS_CSUM;
    frame[6] = 20;
    frame[8] = 16;
    assert.deepEqual(resegment([frame]), [p]);
  });

  it('refuses frames it cannot process instead of throwing', () => {
    const lengths: number[] = [];
    const dst = new Uint8Array(70_000);
    assert.equal(segmentInto(new Uint8Array(5), dst, 0, lengths), -1);
    const bogus = new Uint8Array(VNET_HDR_LENGTH + 60);
    bogus[1] = GSO_TCPV4; // gso_size 0, not even an IPv4 packet
    assert.equal(segmentInto(bogus, dst, 0, lengths), -1);
    bogus[1] = 3; // UDP GSO was never enabled
    assert.equal(segmentInto(bogus, dst, 0, lengths), -1);
    assert.deepEqual(lengths, []);
  });
});
