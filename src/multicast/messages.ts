/**
 * IGMPv1/v2/v3 (RFC 1112, RFC 2236, RFC 3376) and MLDv1/v2 (RFC 2710, RFC 3810) messages, inside their IP
 * packet: parsed at the edge into a tagged union, or a typed drop reason; never an exception.
 *
 * Parsing a whole IP packet:
 *   1. IPv4: header length, total length, no fragment, protocol 2 (IGMP), TTL 1 (RFC 3376 §4);
 *      IPv6: payload length, a hop-by-hop header carrying Router Alert (RFC 3810 §5), ICMPv6, hop limit 1,
 *      a link-local source (RFC 3810 §5.1.14, §5.2.13);
 *   2. the checksum (IGMP: over the message, RFC 1071; ICMPv6: with the pseudo-header, RFC 4443 §2.3);
 *   3. the message by type and exact or minimum length, and its group records, each bounds-checked.
 *
 * Source filtering is reduced to joins and leaves: a record that leaves the host interested in some source
 * of the group (EXCLUDE mode, or INCLUDE with sources) is a join; INCLUDE{} and TO_IN{} are a leave; BLOCK is
 * ignored. Replication does not filter by source.
 */
import { fold, icmpv6Checksum, internetChecksum, sum16 } from '../net/checksum.js';
import {
  ALLOW_NEW_SOURCES,
  BLOCK_OLD_SOURCES,
  CHANGE_TO_EXCLUDE,
  CHANGE_TO_INCLUDE,
  IGMP_QUERY,
  IGMP_V1_REPORT,
  IGMP_V2_LEAVE,
  IGMP_V2_LENGTH,
  IGMP_V2_REPORT,
  IGMP_V3_QUERY_MIN,
  IGMP_V3_RECORD_MIN,
  IGMP_V3_REPORT,
  IGMP_V3_REPORT_MIN,
  IPV4_ROUTER_ALERT,
  IPV6_OPTION_ROUTER_ALERT,
  MAX_RECORDS_PER_REPORT,
  MLD_QUERY,
  MLD_V1_DONE,
  MLD_V1_LENGTH,
  MLD_V1_REPORT,
  MLD_V2_QUERY_MIN,
  MLD_V2_RECORD_MIN,
  MLD_V2_REPORT,
  MLD_V2_REPORT_MIN,
  MODE_IS_EXCLUDE,
  MODE_IS_INCLUDE,
  NEXT_HOP_BY_HOP,
  NEXT_ICMPV6,
  PROTO_IGMP,
} from './constants.js';

export type Family = 4 | 6;

/** Why a membership packet was dropped (one per bad input). */
export type MembershipDrop =
  | 'truncated'
  | 'bad-ip-header'
  | 'fragment'
  | 'not-membership'
  | 'bad-ttl'
  | 'no-router-alert'
  | 'bad-source'
  | 'bad-checksum'
  | 'bad-type'
  | 'bad-length'
  | 'bad-group'
  | 'bad-record';

export const MEMBERSHIP_DROPS: readonly MembershipDrop[] = [
  'truncated',
  'bad-ip-header',
  'fragment',
  'not-membership',
  'bad-ttl',
  'no-router-alert',
  'bad-source',
  'bad-checksum',
  'bad-type',
  'bad-length',
  'bad-group',
  'bad-record',
];

/** One group's change of interest, as a report states it. */
export interface GroupChange {
  /** The group address (a copy: 4 or 16 bytes). */
  readonly group: Uint8Array;
  readonly change: 'join' | 'leave' | 'ignore';
}

export interface MembershipReport {
  readonly kind: 'report';
  readonly family: Family;
  /** IGMP 1/2/3 or MLD 1/2. */
  readonly version: 1 | 2 | 3;
  /** The reporting host (a copy). */
  readonly source: Uint8Array;
  readonly changes: readonly GroupChange[];
  /** Records beyond MAX_RECORDS_PER_REPORT that were not read. */
  readonly skipped: number;
}

export interface MembershipQuery {
  readonly kind: 'query';
  readonly family: Family;
  readonly version: 1 | 2 | 3;
  /** null for a general query. */
  readonly group: Uint8Array | null;
  readonly maxResponseMs: number;
}

export type MembershipMessage = MembershipReport | MembershipQuery;

export type ParseResult = { ok: true; message: MembershipMessage } | { ok: false; reason: MembershipDrop };

export { icmpv6Checksum, internetChecksum } from '../net/checksum.js';

/**
 * Writes the UDP checksum (RFC 768, over the IPv4 pseudo-header) of the unfragmented IPv4/UDP datagram in
 * `packet[0, length)` whose header is `ihl` bytes long. A checksum field of 0 (none sent) stays 0.
 */
export function fillUdp4Checksum(packet: Uint8Array, ihl: number, length: number): void {
  const udp = packet.subarray(ihl, length);
  if (udp.length < 8 || (udp[6] === 0 && udp[7] === 0)) return;
  udp[6] = 0;
  udp[7] = 0;
  let sum = sum16(packet.subarray(12, 20));
  sum += 17 + udp.length;
  const c = fold(sum16(udp, sum)) || 0xffff;
  udp[6] = c >> 8;
  udp[7] = c & 0xff;
}

/**
 * Writes the UDP checksum (RFC 8200 §8.1, over the IPv6 pseudo-header) of the IPv6/UDP datagram in
 * `packet[0, length)`, the UDP header right after the 40-byte IPv6 header. IPv6 has no "no checksum" (a
 * computed 0 is sent as 0xffff, RFC 768 / RFC 8200 §8.1).
 */
export function fillUdp6Checksum(packet: Uint8Array, length: number): void {
  const udp = packet.subarray(40, length);
  if (udp.length < 8) return;
  udp[6] = 0;
  udp[7] = 0;
  let sum = sum16(packet.subarray(8, 40));
  sum += (udp.length >>> 16) & 0xffff;
  sum += (udp.length & 0xffff) + 17;
  const c = fold(sum16(udp, sum)) || 0xffff;
  udp[6] = c >> 8;
  udp[7] = c & 0xff;
}

export function isMulticast(family: Family, address: Uint8Array): boolean {
  return family === 4 ? (address[0]! & 0xf0) === 0xe0 : address[0] === 0xff;
}

/** 224.0.0.0/24 and ff02::/16: never routed, TTL/hop limit kept (RFC 5771 §4, RFC 4291 §2.7). */
export function isLinkLocalGroup(family: Family, group: Uint8Array): boolean {
  return family === 4
    ? group[0] === 224 && group[1] === 0 && group[2] === 0
    : group[0] === 0xff && (group[1]! & 0x0f) === 0x02;
}

/** All-hosts groups: every host is a member; no report for them is expected (RFC 3376 §5, RFC 3810 §6). */
function isAllNodes(family: Family, group: Uint8Array): boolean {
  if (family === 4) return group[0] === 224 && group[1] === 0 && group[2] === 0 && group[3] === 1;
  if (group[0] !== 0xff || group[1] !== 0x02 || group[15] !== 1) return false;
  for (let i = 2; i < 15; i++) if (group[i] !== 0) return false;
  return true;
}

function isIpv6LinkLocal(a: Uint8Array): boolean {
  return a[0] === 0xfe && (a[1]! & 0xc0) === 0x80;
}

/** The 8-bit floating-point code of IGMPv3 (Max Resp Code, QQIC: RFC 3376 §4.1.1, §4.1.7). */
export function decodeCode8(code: number): number {
  if (code < 128) return code;
  return ((code & 0x0f) | 0x10) << (((code >> 4) & 0x07) + 3);
}

/** The smallest code whose value is at least `value` (values beyond the largest code get the largest). */
export function encodeCode8(value: number): number {
  if (value < 128) return Math.max(0, Math.floor(value));
  for (let exp = 0; exp < 8; exp++) {
    const mant = Math.ceil(value / (1 << (exp + 3))) - 0x10;
    if (mant <= 0x0f) return 0x80 | (exp << 4) | Math.max(0, mant);
  }
  return 0xff;
}

/** The 16-bit floating-point Maximum Response Code of MLDv2 (RFC 3810 §5.1.3), in milliseconds. */
export function decodeCode16(code: number): number {
  if (code < 32768) return code;
  return ((code & 0x0fff) | 0x1000) << (((code >> 12) & 0x07) + 3);
}

export function encodeCode16(value: number): number {
  if (value < 32768) return Math.max(0, Math.floor(value));
  for (let exp = 0; exp < 8; exp++) {
    const mant = Math.ceil(value / (1 << (exp + 3))) - 0x1000;
    if (mant <= 0x0fff) return 0x8000 | (exp << 12) | Math.max(0, mant);
  }
  return 0xffff;
}

const fail = (reason: MembershipDrop): ParseResult => ({ ok: false, reason });

/** Parses an IP packet as an IGMP or MLD message. */
export function parseMembership(packet: Uint8Array): ParseResult {
  if (packet.length < 1) return fail('truncated');
  const version = packet[0]! >> 4;
  if (version === 4) return parseIpv4(packet);
  if (version === 6) return parseIpv6(packet);
  return fail('bad-ip-header');
}

/** Whether an IP packet is IGMP or MLD by its headers alone (the replicator's fast test: no parsing). */
export function looksLikeMembership(packet: Uint8Array): boolean {
  const version = packet[0]! >> 4;
  if (version === 4) return packet[9] === PROTO_IGMP;
  if (version !== 6 || packet.length < 48) return false;
  // MLD always travels behind a hop-by-hop header (RFC 3810 §5); what follows it says whether it is ICMPv6.
  return packet[6] === NEXT_HOP_BY_HOP && packet[40] === NEXT_ICMPV6;
}

function parseIpv4(p: Uint8Array): ParseResult {
  if (p.length < 20) return fail('truncated');
  const ihl = (p[0]! & 0x0f) * 4;
  const total = (p[2]! << 8) | p[3]!;
  if (ihl < 20 || total < ihl || total > p.length) return fail('bad-ip-header');
  if (internetChecksum(p.subarray(0, ihl)) !== 0) return fail('bad-checksum');
  if ((p[6]! & 0x3f) !== 0 || p[7] !== 0) return fail('fragment');
  if (p[9] !== PROTO_IGMP) return fail('not-membership');
  if (p[8] !== 1) return fail('bad-ttl');
  const m = p.subarray(ihl, total);
  if (m.length < IGMP_V2_LENGTH) return fail('bad-length');
  if (internetChecksum(m) !== 0) return fail('bad-checksum');
  const source = p.slice(12, 16);
  const type = m[0]!;
  switch (type) {
    case IGMP_QUERY: {
      const group = m.subarray(4, 8);
      const general = group[0] === 0 && group[1] === 0 && group[2] === 0 && group[3] === 0;
      if (!general && !isMulticast(4, group)) return fail('bad-group');
      let qv: 1 | 2 | 3;
      let maxResponseMs: number;
      if (m.length === IGMP_V2_LENGTH) {
        qv = m[1] === 0 ? 1 : 2;
        maxResponseMs = (qv === 1 ? 100 : m[1]!) * 100;
      } else if (m.length >= IGMP_V3_QUERY_MIN) {
        const nsrc = (m[10]! << 8) | m[11]!;
        if (m.length < IGMP_V3_QUERY_MIN + 4 * nsrc) return fail('bad-length');
        qv = 3;
        maxResponseMs = decodeCode8(m[1]!) * 100;
      } else return fail('bad-length');
      return {
        ok: true,
        message: {
          kind: 'query',
          family: 4,
          version: qv,
          group: general ? null : group.slice(),
          maxResponseMs,
        },
      };
    }
    case IGMP_V1_REPORT:
    case IGMP_V2_REPORT:
    case IGMP_V2_LEAVE: {
      if (m.length !== IGMP_V2_LENGTH) return fail('bad-length');
      const group = m.slice(4, 8);
      if (!isMulticast(4, group) || isAllNodes(4, group)) return fail('bad-group');
      return {
        ok: true,
        message: {
          kind: 'report',
          family: 4,
          version: type === IGMP_V1_REPORT ? 1 : 2,
          source,
          changes: [{ group, change: type === IGMP_V2_LEAVE ? 'leave' : 'join' }],
          skipped: 0,
        },
      };
    }
    case IGMP_V3_REPORT: {
      if (m.length < IGMP_V3_REPORT_MIN) return fail('bad-length');
      const count = (m[6]! << 8) | m[7]!;
      return records(4, 3, source, m, IGMP_V3_REPORT_MIN, count, IGMP_V3_RECORD_MIN, 4);
    }
    default:
      return fail('bad-type');
  }
}

function parseIpv6(p: Uint8Array): ParseResult {
  if (p.length < 40) return fail('truncated');
  const total = 40 + ((p[4]! << 8) | p[5]!);
  if (total > p.length) return fail('bad-ip-header');
  if (p[6] !== NEXT_HOP_BY_HOP) return fail('not-membership');
  if (total < 48) return fail('truncated');
  const hbhLength = (p[41]! + 1) * 8;
  if (40 + hbhLength > total) return fail('bad-ip-header');
  if (p[40] !== NEXT_ICMPV6) return fail('not-membership');
  // Options: Pad1 (0) is one byte; every other option is type, length, value (RFC 8200 §4.2).
  let alert = false;
  for (let i = 42; i < 40 + hbhLength;) {
    const t = p[i]!;
    if (t === 0) {
      i++;
      continue;
    }
    if (i + 1 >= 40 + hbhLength) return fail('bad-ip-header');
    const len = p[i + 1]!;
    if (i + 2 + len > 40 + hbhLength) return fail('bad-ip-header');
    if (t === IPV6_OPTION_ROUTER_ALERT && len === 2 && p[i + 2] === 0 && p[i + 3] === 0) alert = true;
    i += 2 + len;
  }
  if (!alert) return fail('no-router-alert');
  if (p[7] !== 1) return fail('bad-ttl');
  const source = p.subarray(8, 24);
  const destination = p.subarray(24, 40);
  if (!isIpv6LinkLocal(source)) return fail('bad-source');
  const m = p.subarray(40 + hbhLength, total);
  if (m.length < 8) return fail('bad-length');
  if (icmpv6Checksum(source, destination, m) !== 0) return fail('bad-checksum');
  const type = m[0]!;
  switch (type) {
    case MLD_QUERY: {
      if (m.length < MLD_V1_LENGTH) return fail('bad-length');
      const group = m.subarray(8, 24);
      let general = true;
      for (const b of group) if (b !== 0) general = false;
      if (!general && !isMulticast(6, group)) return fail('bad-group');
      let qv: 1 | 2;
      let maxResponseMs: number;
      if (m.length === MLD_V1_LENGTH) {
        qv = 1;
        maxResponseMs = (m[4]! << 8) | m[5]!;
      } else if (m.length >= MLD_V2_QUERY_MIN) {
        const nsrc = (m[26]! << 8) | m[27]!;
        if (m.length < MLD_V2_QUERY_MIN + 16 * nsrc) return fail('bad-length');
        qv = 2;
        maxResponseMs = decodeCode16((m[4]! << 8) | m[5]!);
      } else return fail('bad-length');
      return {
        ok: true,
        message: {
          kind: 'query',
          family: 6,
          version: qv,
          group: general ? null : group.slice(),
          maxResponseMs,
        },
      };
    }
    case MLD_V1_REPORT:
    case MLD_V1_DONE: {
      if (m.length !== MLD_V1_LENGTH) return fail('bad-length');
      const group = m.slice(8, 24);
      if (!isMulticast(6, group) || isAllNodes(6, group)) return fail('bad-group');
      return {
        ok: true,
        message: {
          kind: 'report',
          family: 6,
          version: 1,
          source: source.slice(),
          changes: [{ group, change: type === MLD_V1_DONE ? 'leave' : 'join' }],
          skipped: 0,
        },
      };
    }
    case MLD_V2_REPORT: {
      if (m.length < MLD_V2_REPORT_MIN) return fail('bad-length');
      const count = (m[6]! << 8) | m[7]!;
      return records(6, 2, source.slice(), m, MLD_V2_REPORT_MIN, count, MLD_V2_RECORD_MIN, 16);
    }
    default:
      return fail('bad-type');
  }
}

/** Reads the group records of an IGMPv3 / MLDv2 report (RFC 3376 §4.2.4, RFC 3810 §5.2.4). */
function records(
  family: Family,
  version: 2 | 3,
  source: Uint8Array,
  m: Uint8Array,
  start: number,
  count: number,
  recordMin: number,
  addressLength: number,
): ParseResult {
  const changes: GroupChange[] = [];
  let at = start;
  const read = Math.min(count, MAX_RECORDS_PER_REPORT);
  for (let r = 0; r < count; r++) {
    if (at + recordMin > m.length) return fail('bad-record');
    const type = m[at]!;
    const auxWords = m[at + 1]!;
    const nsrc = (m[at + 2]! << 8) | m[at + 3]!;
    const end = at + recordMin + addressLength * nsrc + 4 * auxWords;
    if (end > m.length) return fail('bad-record');
    if (r < read) {
      if (type < MODE_IS_INCLUDE || type > BLOCK_OLD_SOURCES) return fail('bad-record');
      const group = m.slice(at + 4, at + 4 + addressLength);
      if (!isMulticast(family, group) || isAllNodes(family, group)) return fail('bad-group');
      let change: GroupChange['change'];
      if (type === MODE_IS_EXCLUDE || type === CHANGE_TO_EXCLUDE) change = 'join';
      else if (type === MODE_IS_INCLUDE || type === CHANGE_TO_INCLUDE) change = nsrc > 0 ? 'join' : 'leave';
      else if (type === ALLOW_NEW_SOURCES) change = nsrc > 0 ? 'join' : 'ignore';
      else change = 'ignore';
      changes.push({ group, change });
    }
    at = end;
  }
  if (family === 4 && at !== m.length) return fail('bad-length');
  return {
    ok: true,
    message: {
      kind: 'report',
      family,
      version: family === 4 ? 3 : version,
      source,
      changes,
      skipped: count - read,
    },
  };
}

// ------------------------------------------------------------------ building

const ALL_HOSTS_4 = Uint8Array.of(224, 0, 0, 1);
const ALL_NODES_6 = Uint8Array.of(0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
const ALL_V3_ROUTERS_4 = Uint8Array.of(224, 0, 0, 22);
const ALL_MLDV2_ROUTERS_6 = Uint8Array.of(0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16);
const ALL_ROUTERS_4 = Uint8Array.of(224, 0, 0, 2);
const ALL_ROUTERS_6 = Uint8Array.of(0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2);

/** An IPv4 packet with the Router Alert option, TTL 1, TOS 0xc0 (RFC 3376 §4, RFC 2236 §2) around `igmp`. */
function ipv4Packet(source: Uint8Array, destination: Uint8Array, igmp: Uint8Array): Uint8Array {
  const p = new Uint8Array(24 + igmp.length);
  p[0] = 0x46;
  p[1] = 0xc0;
  p[2] = p.length >> 8;
  p[3] = p.length & 0xff;
  p[6] = 0x40; // don't fragment
  p[8] = 1;
  p[9] = PROTO_IGMP;
  p.set(source, 12);
  p.set(destination, 16);
  p.set(IPV4_ROUTER_ALERT, 20);
  const h = internetChecksum(p.subarray(0, 24));
  p[10] = h >> 8;
  p[11] = h & 0xff;
  p.set(igmp, 24);
  const c = internetChecksum(p.subarray(24));
  p[26] = c >> 8;
  p[27] = c & 0xff;
  return p;
}

/** An IPv6 packet, hop limit 1, with a hop-by-hop header carrying Router Alert (RFC 3810 §5) around `mld`. */
function ipv6Packet(source: Uint8Array, destination: Uint8Array, mld: Uint8Array): Uint8Array {
  const p = new Uint8Array(48 + mld.length);
  p[0] = 0x60;
  const payload = 8 + mld.length;
  p[4] = payload >> 8;
  p[5] = payload & 0xff;
  p[6] = NEXT_HOP_BY_HOP;
  p[7] = 1;
  p.set(source, 8);
  p.set(destination, 24);
  p[40] = NEXT_ICMPV6;
  p[41] = 0;
  p.set([IPV6_OPTION_ROUTER_ALERT, 2, 0, 0, 1, 0], 42); // Router Alert (MLD), PadN of 2
  p.set(mld, 48);
  const c = icmpv6Checksum(source, destination, p.subarray(48));
  p[50] = c >> 8;
  p[51] = c & 0xff;
  return p;
}

export interface QueryOptions {
  /** null: a general query. */
  readonly group: Uint8Array | null;
  readonly maxResponseMs: number;
  /** The querier's robustness variable (QRV) and query interval (QQIC), RFC 3376 §4.1.6-7. */
  readonly robustness: number;
  readonly queryIntervalMs: number;
  /** Suppress Router-Side Processing (RFC 3376 §4.1.5): set in the repeats of a group-specific query. */
  readonly suppress?: boolean;
}

/**
 * An IGMPv3 query (RFC 3376 §4.1) or MLDv2 query (RFC 3810 §5.1) in its IP packet, from `source` (for MLD a
 * link-local address), to all hosts (general) or to the group (group-specific, §4.1.12 / §5.1.15).
 */
export function buildQuery(family: Family, source: Uint8Array, q: QueryOptions): Uint8Array {
  const qrv = q.robustness <= 7 ? q.robustness : 0;
  const flags = (q.suppress ? 0x08 : 0) | qrv;
  const qqic = encodeCode8(Math.floor(q.queryIntervalMs / 1000));
  if (family === 4) {
    const m = new Uint8Array(IGMP_V3_QUERY_MIN);
    m[0] = IGMP_QUERY;
    m[1] = encodeCode8(Math.ceil(q.maxResponseMs / 100));
    if (q.group) m.set(q.group, 4);
    m[8] = flags;
    m[9] = qqic;
    return ipv4Packet(source, q.group ?? ALL_HOSTS_4, m);
  }
  const m = new Uint8Array(MLD_V2_QUERY_MIN);
  m[0] = MLD_QUERY;
  const code = encodeCode16(q.maxResponseMs);
  m[4] = code >> 8;
  m[5] = code & 0xff;
  if (q.group) m.set(q.group, 8);
  m[24] = flags;
  m[25] = qqic;
  return ipv6Packet(source, q.group ?? ALL_NODES_6, m);
}

export interface RecordSpec {
  readonly type: number;
  readonly group: Uint8Array;
  readonly sources?: readonly Uint8Array[];
}

/** An IGMPv3 report (RFC 3376 §4.2) or MLDv2 report (RFC 3810 §5.2) in its IP packet. */
export function buildReport(family: Family, source: Uint8Array, specs: readonly RecordSpec[]): Uint8Array {
  const alen = family === 4 ? 4 : 16;
  const recordMin = family === 4 ? IGMP_V3_RECORD_MIN : MLD_V2_RECORD_MIN;
  let length = 8;
  for (const r of specs) length += recordMin + alen * (r.sources?.length ?? 0);
  const m = new Uint8Array(length);
  m[0] = family === 4 ? IGMP_V3_REPORT : MLD_V2_REPORT;
  m[6] = specs.length >> 8;
  m[7] = specs.length & 0xff;
  let at = 8;
  for (const r of specs) {
    const sources = r.sources ?? [];
    m[at] = r.type;
    m[at + 2] = sources.length >> 8;
    m[at + 3] = sources.length & 0xff;
    m.set(r.group, at + 4);
    at += 4 + alen;
    for (const s of sources) {
      m.set(s, at);
      at += alen;
    }
  }
  return family === 4 ? ipv4Packet(source, ALL_V3_ROUTERS_4, m) : ipv6Packet(source, ALL_MLDV2_ROUTERS_6, m);
}

/** An IGMPv2 report or leave (RFC 2236 §2) or MLDv1 report or done (RFC 2710 §3), in its IP packet. */
export function buildV1V2(family: Family, source: Uint8Array, group: Uint8Array, leave: boolean): Uint8Array {
  if (family === 4) {
    const m = new Uint8Array(IGMP_V2_LENGTH);
    m[0] = leave ? IGMP_V2_LEAVE : IGMP_V2_REPORT;
    m.set(group, 4);
    return ipv4Packet(source, leave ? ALL_ROUTERS_4 : group, m);
  }
  const m = new Uint8Array(MLD_V1_LENGTH);
  m[0] = leave ? MLD_V1_DONE : MLD_V1_REPORT;
  m.set(group, 8);
  return ipv6Packet(source, leave ? ALL_ROUTERS_6 : group, m);
}
