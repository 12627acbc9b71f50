/**
 * TCP segmentation and receive coalescing for a TUN device opened with IFF_VNET_HDR (each packet is
 * preceded by a struct virtio_net_hdr, include/uapi/linux/virtio_net.h). The kernel then hands the gateway
 * TCP "super-packets" of up to 64 KiB (TSO) and accepts them back (GRO), so its TCP stack handles one large
 * segment where it would handle dozens of MTU-sized ones: the per-packet cost of the kernel on both ends
 * of the tunnel falls with it. The tunnel itself still carries MTU-sized packets, so peers see nothing.
 *
 * Outbound (read from the TUN device): `segmentInto` cuts a TSO packet into MSS-sized TCP segments (IP
 * lengths, IPv4 IDs and header checksums, TCP sequence numbers, flags and checksums rewritten), and
 * completes the checksum of a packet the kernel left partial.
 * Inbound (written to the TUN device): `coalesce` merges runs of consecutive in-order TCP segments of one
 * flow into one GSO packet with a partial checksum; every other packet is marked DATA_VALID — it was
 * authenticated by the tunnel, as the WireGuard kernel module marks decrypted packets.
 */
import { Slab } from '../net/slab.js';

export const VNET_HDR_LENGTH = 10;
export const VNET_F_NEEDS_CSUM = 1;
export const VNET_F_DATA_VALID = 2;
export const GSO_NONE = 0;
export const GSO_TCPV4 = 1;
export const GSO_TCPV6 = 4;
export const GSO_ECN = 0x80;

const TCP = 6;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_ACK = 0x10;
const TCP_CWR = 0x80;
/** Segments in one coalesced packet at most (Linux GRO's limit is 64 too). */
const MAX_COALESCE = 64;
const MAX_IP_PACKET = 65_535;
/** Frames written to the device live only until the write: they come from slabs (net/slab.ts). */
const frameSlab = new Slab();

function u16(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}

function put16(b: Uint8Array, at: number, v: number): void {
  b[at] = (v >>> 8) & 0xff;
  b[at + 1] = v & 0xff;
}

function u32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

function put32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = (v >>> 16) & 0xff;
  b[at + 2] = (v >>> 8) & 0xff;
  b[at + 3] = v & 0xff;
}

/** RFC 1071 ones'-complement sum of b[start, end), added to `acc` (unfolded). */
export function sum16(b: Uint8Array, start: number, end: number, acc = 0): number {
  let i = start;
  for (; i + 1 < end; i += 2) acc += (b[i]! << 8) | b[i + 1]!;
  if (i < end) acc += b[i]! << 8;
  return acc;
}

export function fold(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 0x10000);
  return acc;
}

/** Sum of the TCP/UDP pseudo-header (RFC 793 §3.1, RFC 8200 §8.1). */
function pseudoSum(p: Uint8Array, v6: boolean, l4Length: number): number {
  return v6 ? sum16(p, 8, 40, 0) + l4Length + TCP : sum16(p, 12, 20, 0) + l4Length + TCP;
}

function ipv4HeaderChecksum(p: Uint8Array, ihl: number): void {
  put16(p, 10, 0);
  put16(p, 10, ~fold(sum16(p, 0, ihl)) & 0xffff);
}

/** Full TCP checksum of a packet whose TCP header starts at `l4`. */
function tcpChecksum(p: Uint8Array, v6: boolean, l4: number, end: number): void {
  put16(p, l4 + 16, 0);
  put16(p, l4 + 16, ~fold(pseudoSum(p, v6, end - l4) + sum16(p, l4, end)) & 0xffff);
}

export interface VnetHeader {
  flags: number;
  gsoType: number;
  hdrLength: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

/** Reads the header (little-endian: the device was not switched to big-endian headers). */
export function readVnetHeader(b: Uint8Array): VnetHeader {
  return {
    flags: b[0]!,
    gsoType: b[1]!,
    hdrLength: b[2]! | (b[3]! << 8),
    gsoSize: b[4]! | (b[5]! << 8),
    csumStart: b[6]! | (b[7]! << 8),
    csumOffset: b[8]! | (b[9]! << 8),
  };
}

function writeVnetHeader(b: Uint8Array, h: VnetHeader): void {
  b[0] = h.flags;
  b[1] = h.gsoType;
  b[2] = h.hdrLength & 0xff;
  b[3] = h.hdrLength >>> 8;
  b[4] = h.gsoSize & 0xff;
  b[5] = h.gsoSize >>> 8;
  b[6] = h.csumStart & 0xff;
  b[7] = h.csumStart >>> 8;
  b[8] = h.csumOffset & 0xff;
  b[9] = h.csumOffset >>> 8;
}

/**
 * Turns one frame read from the device (virtio header + packet) into plain packets written back to back
 * into `dst` at `offset`; appends each packet's length to `lengths`. Returns the bytes written, or -1 when
 * the frame cannot be processed (it is dropped). `dst` must have room for the packet plus one IP+TCP
 * header per segment.
 */
export function segmentInto(frame: Uint8Array, dst: Uint8Array, offset: number, lengths: number[]): number {
  if (frame.length < VNET_HDR_LENGTH + 1) return -1;
  const h = readVnetHeader(frame);
  const p = frame.subarray(VNET_HDR_LENGTH);
  const gso = h.gsoType & ~GSO_ECN;
  if (gso === GSO_NONE) {
    dst.set(p, offset);
    if (h.flags & VNET_F_NEEDS_CSUM) {
      // The field holds the pseudo-header sum; the device's job is the sum from csum_start on.
      const start = h.csumStart;
      const field = start + h.csumOffset;
      if (field + 2 > p.length) return -1;
      const q = dst.subarray(offset, offset + p.length);
      put16(q, field, ~fold(sum16(q, start, q.length)) & 0xffff);
    }
    lengths.push(p.length);
    return p.length;
  }
  if (gso !== GSO_TCPV4 && gso !== GSO_TCPV6) return -1;
  const v6 = gso === GSO_TCPV6;
  if (p.length < 20 || p[0]! >> 4 !== (v6 ? 6 : 4)) return -1;
  const ipLength = v6 ? 40 : (p[0]! & 0x0f) * 4;
  if (v6 && p[6] !== TCP) return -1; // extension headers are not produced by TSO here
  if (p.length < ipLength + 20) return -1;
  const tcpLength = (p[ipLength + 12]! >> 4) * 4;
  const headers = ipLength + tcpLength;
  const mss = h.gsoSize;
  if (tcpLength < 20 || p.length < headers || mss === 0) return -1;
  const payload = p.length - headers;
  const seq0 = u32(p, ipLength + 4);
  const flags0 = p[ipLength + 13]!;
  const id0 = v6 ? 0 : u16(p, 4);
  let written = 0;
  for (let off = 0, i = 0; off < payload || (payload === 0 && i === 0); off += mss, i++) {
    const len = Math.min(mss, payload - off);
    const at = offset + written;
    const seg = dst.subarray(at, at + headers + len);
    seg.set(p.subarray(0, headers), 0);
    seg.set(p.subarray(headers + off, headers + off + len), headers);
    const last = off + len >= payload;
    if (v6) put16(seg, 4, tcpLength + len);
    else {
      put16(seg, 2, headers + len);
      put16(seg, 4, (id0 + i) & 0xffff);
      ipv4HeaderChecksum(seg, ipLength);
    }
    put32(seg, ipLength + 4, (seq0 + off) >>> 0);
    let flags = flags0;
    if (!last) flags &= ~(TCP_FIN | TCP_PSH);
    if (i > 0) flags &= ~TCP_CWR;
    seg[ipLength + 13] = flags;
    tcpChecksum(seg, v6, ipLength, seg.length);
    lengths.push(seg.length);
    written += seg.length;
    if (payload === 0) break;
  }
  return written;
}

interface Segment {
  readonly p: Uint8Array;
  readonly v6: boolean;
  readonly ipLength: number;
  readonly tcpLength: number;
  readonly payload: number;
  readonly seq: number;
  readonly flags: number;
}

/** A TCP segment that may be coalesced: plain IPv4 (no options, DF, no fragment) or IPv6 without extensions. */
function tcpSegment(p: Uint8Array): Segment | null {
  if (p.length < 40) return null;
  const version = p[0]! >> 4;
  let ipLength: number;
  let v6: boolean;
  if (version === 4) {
    if (p[0] !== 0x45 || p[9] !== TCP || (u16(p, 6) & 0xbfff) !== 0 || !(p[6]! & 0x40)) return null;
    if (u16(p, 2) !== p.length) return null;
    ipLength = 20;
    v6 = false;
  } else if (version === 6) {
    if (p.length < 60 || p[6] !== TCP || u16(p, 4) + 40 !== p.length) return null;
    ipLength = 40;
    v6 = true;
  } else {
    return null;
  }
  const tcpLength = (p[ipLength + 12]! >> 4) * 4;
  if (tcpLength < 20 || ipLength + tcpLength > p.length) return null;
  const flags = p[ipLength + 13]!;
  if (flags !== TCP_ACK && flags !== (TCP_ACK | TCP_PSH)) return null;
  const payload = p.length - ipLength - tcpLength;
  if (payload === 0) return null;
  return { p, v6, ipLength, tcpLength, payload, seq: u32(p, ipLength + 4), flags };
}

function bytesEqual(a: Uint8Array, b: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Same flow and same everything a merged header would claim for both. */
function mergeable(a: Segment, b: Segment): boolean {
  if (a.v6 !== b.v6 || a.tcpLength !== b.tcpLength) return false;
  const x = a.p;
  const y = b.p;
  if (a.v6) {
    if (!bytesEqual(x, y, 0, 4) || x[7] !== y[7] || !bytesEqual(x, y, 8, 40)) return false;
  } else if (x[1] !== y[1] || x[8] !== y[8] || !bytesEqual(x, y, 12, 20)) {
    return false;
  }
  const t = a.ipLength;
  // ports, ack, header length, window, urgent pointer, options: all but sequence number, flags, checksum
  return (
    bytesEqual(x, y, t, t + 4) &&
    bytesEqual(x, y, t + 8, t + 13) &&
    bytesEqual(x, y, t + 14, t + 16) &&
    bytesEqual(x, y, t + 18, t + a.tcpLength)
  );
}

function plainFrame(p: Uint8Array): Uint8Array {
  const f = frameSlab.take(VNET_HDR_LENGTH + p.length);
  f[0] = VNET_F_DATA_VALID;
  f.set(p, VNET_HDR_LENGTH);
  return f;
}

/** Frames (virtio header + packet) for `packets`, merging in-order runs of one TCP flow into GSO frames. */
export function coalesce(packets: readonly Uint8Array[]): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (let i = 0; i < packets.length;) {
    const first = tcpSegment(packets[i]!);
    if (!first || first.flags & TCP_PSH) {
      frames.push(plainFrame(packets[i]!));
      i++;
      continue;
    }
    const run: Segment[] = [first];
    const headers = first.ipLength + first.tcpLength;
    let total = first.payload;
    let nextSeq = (first.seq + first.payload) >>> 0;
    let j = i + 1;
    while (j < packets.length && run.length < MAX_COALESCE) {
      const s = tcpSegment(packets[j]!);
      if (!s || s.seq !== nextSeq || s.payload > first.payload || headers + total + s.payload > MAX_IP_PACKET)
        break;
      if (!mergeable(first, s)) break;
      run.push(s);
      total += s.payload;
      nextSeq = (nextSeq + s.payload) >>> 0;
      j++;
      if (s.payload < first.payload || s.flags & TCP_PSH) break; // a short or pushed segment ends a run
    }
    if (run.length === 1) {
      frames.push(plainFrame(first.p));
      i++;
      continue;
    }
    const f = frameSlab.take(VNET_HDR_LENGTH + headers + total);
    const q = f.subarray(VNET_HDR_LENGTH);
    q.set(first.p.subarray(0, headers), 0);
    let at = headers;
    for (const s of run) {
      q.set(s.p.subarray(headers), at);
      at += s.payload;
    }
    if (run[run.length - 1]!.flags & TCP_PSH) q[first.ipLength + 13] = TCP_ACK | TCP_PSH;
    if (first.v6) put16(q, 4, first.tcpLength + total);
    else {
      put16(q, 2, headers + total);
      ipv4HeaderChecksum(q, first.ipLength);
    }
    put16(q, first.ipLength + 16, fold(pseudoSum(q, first.v6, first.tcpLength + total)));
    writeVnetHeader(f, {
      flags: VNET_F_NEEDS_CSUM,
      gsoType: first.v6 ? GSO_TCPV6 : GSO_TCPV4,
      hdrLength: headers,
      gsoSize: first.payload,
      csumStart: first.ipLength,
      csumOffset: 16,
    });
    frames.push(f);
    i = j;
  }
  return frames;
}
