/**
 * IKEv2 message codec (RFC 7296 §3): the fixed header, the generic payload chain and each payload body we
 * speak, parsed into a discriminated union with exact length checks. Parsing never throws: a malformed
 * message is a typed drop reason. The SK payload (§3.14) is parsed here only as an opaque body; sk.ts opens
 * it and hands the inner chain back to `parsePayloadChain`.
 */
import { formatAddress, parseAddress } from '../net/ip.js';
import type { TrafficSelector } from './child-sa.js';
import {
  ATTR_FORMAT_TV,
  ATTR_KEY_LENGTH,
  FLAG_INITIATOR,
  FLAG_RESPONSE,
  IKE_HEADER_LENGTH,
  IKE_MAJOR_VERSION,
  PAYLOAD,
  PAYLOAD_HEADER_LENGTH,
  SKF_FIELDS_LENGTH,
  TS_TYPE,
} from './constants.js';
import type { IkeDropReason } from './drops.js';

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: IkeDropReason };

export interface IkeHeader {
  readonly spiI: Buffer;
  readonly spiR: Buffer;
  readonly nextPayload: number;
  readonly exchange: number;
  /** The I flag: sent by the original initiator of the IKE SA. */
  readonly initiator: boolean;
  readonly response: boolean;
  readonly messageId: number;
}

export interface Transform {
  readonly type: number;
  readonly id: number;
  /** The Key Length attribute in bits, or null when absent. */
  readonly keyLength: number | null;
}

export interface Proposal {
  readonly num: number;
  readonly protocol: number;
  readonly spi: Buffer;
  readonly transforms: readonly Transform[];
}

export type Payload =
  | { readonly kind: 'sa'; readonly proposals: readonly Proposal[] }
  | { readonly kind: 'ke'; readonly group: number; readonly data: Buffer }
  | { readonly kind: 'nonce'; readonly data: Buffer }
  | {
      readonly kind: 'notify';
      readonly protocol: number;
      readonly spi: Buffer;
      readonly notify: number;
      readonly data: Buffer;
    }
  /** IDi or IDr; `body` is the payload body (type, reserved, data) that AUTH signs (§2.15). */
  | { readonly kind: 'id'; readonly initiator: boolean; readonly idType: number; readonly data: Buffer }
  | { readonly kind: 'auth'; readonly method: number; readonly data: Buffer }
  | { readonly kind: 'cert' | 'certreq'; readonly encoding: number; readonly data: Buffer }
  | { readonly kind: 'ts'; readonly initiator: boolean; readonly selectors: readonly TrafficSelector[] }
  | { readonly kind: 'delete'; readonly protocol: number; readonly spis: readonly Buffer[] }
  | { readonly kind: 'vendor'; readonly data: Buffer }
  /** The encrypted payload: `firstInner` is the type of the first payload inside; `body` is IV..ICV. */
  | { readonly kind: 'sk'; readonly firstInner: number; readonly body: Buffer }
  /**
   * The Encrypted Fragment payload (RFC 7383 §2.5): one piece of an SK payload's content. `firstInner` is
   * meaningful in fragment 1 only; `body` is IV..ICV, after the Fragment Number and Total Fragments fields.
   */
  | {
      readonly kind: 'skf';
      readonly firstInner: number;
      readonly number: number;
      readonly total: number;
      readonly body: Buffer;
    }
  | { readonly kind: 'unknown'; readonly type: number; readonly data: Buffer };

export interface IkeMessage {
  readonly header: IkeHeader;
  readonly payloads: readonly Payload[];
  /** The whole datagram (without a non-ESP marker), for AUTH (§2.15) and the SK checksum. */
  readonly raw: Buffer;
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing

/** Parses the header and the plaintext payload chain. The length field must equal the datagram length. */
export function parseMessage(buf: Buffer): Parsed<IkeMessage> {
  if (buf.length < IKE_HEADER_LENGTH) return fail('too-short');
  const version = buf[17]!;
  const major = version >> 4;
  // RFC 7296 §1.5 / §2.5: an IKEv1 (major 1) message gets no answer from an IKEv2-only implementation.
  if (major === 1) return fail('ikev1-not-supported');
  if (major !== IKE_MAJOR_VERSION) return fail('bad-version');
  if (buf.readUInt32BE(24) !== buf.length) return fail('bad-length');
  const flags = buf[19]!;
  const header: IkeHeader = {
    spiI: buf.subarray(0, 8),
    spiR: buf.subarray(8, 16),
    nextPayload: buf[16]!,
    exchange: buf[18]!,
    initiator: (flags & FLAG_INITIATOR) !== 0,
    response: (flags & FLAG_RESPONSE) !== 0,
    messageId: buf.readUInt32BE(20),
  };
  const chain = parsePayloadChain(header.nextPayload, buf, IKE_HEADER_LENGTH, buf.length);
  if (!chain.ok) return chain;
  return { ok: true, value: { header, payloads: chain.value, raw: buf } };
}

/** Parses a chain of payloads starting with type `first` that fills buf[start, end) exactly. */
export function parsePayloadChain(first: number, buf: Buffer, start: number, end: number): Parsed<Payload[]> {
  const out: Payload[] = [];
  let type = first;
  let pos = start;
  while (type !== PAYLOAD.NONE) {
    if (end - pos < PAYLOAD_HEADER_LENGTH) return fail('bad-payload-length');
    const next = buf[pos]!;
    const critical = (buf[pos + 1]! & 0x80) !== 0;
    const length = buf.readUInt16BE(pos + 2);
    if (length < PAYLOAD_HEADER_LENGTH || pos + length > end) return fail('bad-payload-length');
    const body = buf.subarray(pos + PAYLOAD_HEADER_LENGTH, pos + length);
    if (type === PAYLOAD.SK) {
      // §3.14: the Encrypted payload, if present, is the last payload; its Next Payload names the first inner.
      if (pos + length !== end) return fail('sk-not-last');
      out.push({ kind: 'sk', firstInner: next, body });
      return { ok: true, value: out };
    }
    if (type === PAYLOAD.SKF) {
      // RFC 7383 §2.5: like SK, the Encrypted Fragment payload is the last one.
      if (pos + length !== end) return fail('sk-not-last');
      if (body.length < SKF_FIELDS_LENGTH) return fail('bad-payload-length');
      out.push({
        kind: 'skf',
        firstInner: next,
        number: body.readUInt16BE(0),
        total: body.readUInt16BE(2),
        body: body.subarray(SKF_FIELDS_LENGTH),
      });
      return { ok: true, value: out };
    }
    const payload = parseBody(type, body);
    if (payload === null) return fail('bad-payload');
    if (payload.kind === 'unknown' && critical) return fail('unsupported-critical-payload');
    out.push(payload);
    type = next;
    pos += length;
  }
  if (pos !== end) return fail('bad-payload-length');
  return { ok: true, value: out };
}

function parseBody(type: number, b: Buffer): Payload | null {
  switch (type) {
    case PAYLOAD.SA:
      return parseSa(b);
    case PAYLOAD.KE:
      if (b.length < 4) return null;
      return { kind: 'ke', group: b.readUInt16BE(0), data: b.subarray(4) };
    case PAYLOAD.NONCE:
      return { kind: 'nonce', data: b };
    case PAYLOAD.NOTIFY: {
      if (b.length < 4) return null;
      const spiSize = b[1]!;
      if (b.length < 4 + spiSize) return null;
      return {
        kind: 'notify',
        protocol: b[0]!,
        spi: b.subarray(4, 4 + spiSize),
        notify: b.readUInt16BE(2),
        data: b.subarray(4 + spiSize),
      };
    }
    case PAYLOAD.IDi:
    case PAYLOAD.IDr:
      if (b.length < 4) return null;
      return { kind: 'id', initiator: type === PAYLOAD.IDi, idType: b[0]!, data: b.subarray(4) };
    case PAYLOAD.AUTH:
      if (b.length < 4) return null;
      return { kind: 'auth', method: b[0]!, data: b.subarray(4) };
    case PAYLOAD.CERT:
    case PAYLOAD.CERTREQ:
      if (b.length < 1) return null;
      return { kind: type === PAYLOAD.CERT ? 'cert' : 'certreq', encoding: b[0]!, data: b.subarray(1) };
    case PAYLOAD.TSi:
    case PAYLOAD.TSr:
      return parseTs(type === PAYLOAD.TSi, b);
    case PAYLOAD.DELETE: {
      if (b.length < 4) return null;
      const spiSize = b[1]!;
      const count = b.readUInt16BE(2);
      if (b.length !== 4 + spiSize * count) return null;
      const spis: Buffer[] = [];
      for (let i = 0; i < count; i++) spis.push(b.subarray(4 + i * spiSize, 4 + (i + 1) * spiSize));
      return { kind: 'delete', protocol: b[0]!, spis };
    }
    case PAYLOAD.VENDOR:
      return { kind: 'vendor', data: b };
    default:
      return { kind: 'unknown', type, data: b };
  }
}

function parseSa(b: Buffer): Payload | null {
  const proposals: Proposal[] = [];
  let pos = 0;
  for (;;) {
    if (b.length - pos < 8) return null;
    const last = b[pos]!;
    const length = b.readUInt16BE(pos + 2);
    if (length < 8 || pos + length > b.length) return null;
    if (last !== 0 && last !== 2) return null;
    const spiSize = b[pos + 6]!;
    const count = b[pos + 7]!;
    if (8 + spiSize > length) return null;
    const spi = b.subarray(pos + 8, pos + 8 + spiSize);
    const transforms = parseTransforms(b.subarray(pos + 8 + spiSize, pos + length), count);
    if (transforms === null) return null;
    proposals.push({ num: b[pos + 4]!, protocol: b[pos + 5]!, spi, transforms });
    pos += length;
    // §3.3.1: 0 marks the last proposal, 2 says more follow; both must agree with the bytes left.
    if (last === 0) return pos === b.length ? { kind: 'sa', proposals } : null;
  }
}

function parseTransforms(b: Buffer, count: number): Transform[] | null {
  const out: Transform[] = [];
  let pos = 0;
  for (let i = 0; i < count; i++) {
    if (b.length - pos < 8) return null;
    const last = b[pos]!;
    const length = b.readUInt16BE(pos + 2);
    if (length < 8 || pos + length > b.length) return null;
    if (last !== (i === count - 1 ? 0 : 3)) return null;
    let keyLength: number | null = null;
    let a = pos + 8;
    while (a < pos + length) {
      if (pos + length - a < 4) return null;
      const typeField = b.readUInt16BE(a);
      if ((typeField & ATTR_FORMAT_TV) !== 0) {
        if ((typeField & 0x7fff) === ATTR_KEY_LENGTH) keyLength = b.readUInt16BE(a + 2);
        a += 4;
      } else {
        const alen = b.readUInt16BE(a + 2);
        if (a + 4 + alen > pos + length) return null;
        // §3.3.5: Key Length is TV only; a TLV with an unknown type makes the transform unusable, not bad.
        if ((typeField & 0x7fff) === ATTR_KEY_LENGTH) return null;
        a += 4 + alen;
      }
    }
    out.push({ type: b[pos + 4]!, id: b.readUInt16BE(pos + 6), keyLength });
    pos += length;
  }
  return pos === b.length ? out : null;
}

function parseTs(initiator: boolean, b: Buffer): Payload | null {
  if (b.length < 4) return null;
  const count = b[0]!;
  const selectors: TrafficSelector[] = [];
  let pos = 4;
  for (let i = 0; i < count; i++) {
    if (b.length - pos < 8) return null;
    const type = b[pos]!;
    const length = b.readUInt16BE(pos + 2);
    if (length < 8 || pos + length > b.length) return null;
    const family = type === TS_TYPE.IPV4_ADDR_RANGE ? 4 : type === TS_TYPE.IPV6_ADDR_RANGE ? 6 : null;
    if (family !== null) {
      const alen = family === 4 ? 4 : 16;
      if (length !== 8 + 2 * alen) return null;
      selectors.push({
        family,
        protocol: b[pos + 1]!,
        startPort: b.readUInt16BE(pos + 4),
        endPort: b.readUInt16BE(pos + 6),
        startAddress: formatAddress({ family, bytes: b.subarray(pos + 8, pos + 8 + alen) }),
        endAddress: formatAddress({ family, bytes: b.subarray(pos + 8 + alen, pos + 8 + 2 * alen) }),
      });
    }
    // Selector types we do not know (e.g. RFC 4595 FC ranges) are skipped; narrowing never picks them.
    pos += length;
  }
  return pos === b.length ? { kind: 'ts', initiator, selectors } : null;
}

function fail<T>(reason: IkeDropReason): Parsed<T> {
  return { ok: false, reason };
}

// ---------------------------------------------------------------------------------------------------------------
// Building

export function payloadType(p: Payload): number {
  switch (p.kind) {
    case 'sa':
      return PAYLOAD.SA;
    case 'ke':
      return PAYLOAD.KE;
    case 'nonce':
      return PAYLOAD.NONCE;
    case 'notify':
      return PAYLOAD.NOTIFY;
    case 'id':
      return p.initiator ? PAYLOAD.IDi : PAYLOAD.IDr;
    case 'auth':
      return PAYLOAD.AUTH;
    case 'cert':
      return PAYLOAD.CERT;
    case 'certreq':
      return PAYLOAD.CERTREQ;
    case 'ts':
      return p.initiator ? PAYLOAD.TSi : PAYLOAD.TSr;
    case 'delete':
      return PAYLOAD.DELETE;
    case 'vendor':
      return PAYLOAD.VENDOR;
    case 'sk':
      return PAYLOAD.SK;
    case 'skf':
      return PAYLOAD.SKF;
    case 'unknown':
      return p.type;
  }
}

/** The body of one payload, without its generic header. */
export function encodeBody(p: Payload): Buffer {
  switch (p.kind) {
    case 'sa':
      return Buffer.concat(p.proposals.map((pr, i) => encodeProposal(pr, i === p.proposals.length - 1)));
    case 'ke':
      return Buffer.concat([u16(p.group), Buffer.alloc(2), p.data]);
    case 'nonce':
    case 'vendor':
      return Buffer.from(p.data);
    case 'notify':
      return Buffer.concat([Buffer.from([p.protocol, p.spi.length]), u16(p.notify), p.spi, p.data]);
    case 'id':
      return Buffer.concat([Buffer.from([p.idType, 0, 0, 0]), p.data]);
    case 'auth':
      return Buffer.concat([Buffer.from([p.method, 0, 0, 0]), p.data]);
    case 'cert':
    case 'certreq':
      return Buffer.concat([Buffer.from([p.encoding]), p.data]);
    case 'ts':
      return Buffer.concat([Buffer.from([p.selectors.length, 0, 0, 0]), ...p.selectors.map(encodeSelector)]);
    case 'delete': {
      const spiSize = p.spis[0]?.length ?? 0;
      return Buffer.concat([Buffer.from([p.protocol, spiSize]), u16(p.spis.length), ...p.spis]);
    }
    case 'sk':
      return Buffer.from(p.body);
    case 'skf':
      return Buffer.concat([u16(p.number), u16(p.total), p.body]);
    case 'unknown':
      return Buffer.from(p.data);
  }
}

function encodeProposal(p: Proposal, last: boolean): Buffer {
  const transforms = p.transforms.map((t, i) => {
    const attrs =
      t.keyLength === null
        ? Buffer.alloc(0)
        : Buffer.concat([u16(ATTR_FORMAT_TV | ATTR_KEY_LENGTH), u16(t.keyLength)]);
    const head = Buffer.alloc(8);
    head[0] = i === p.transforms.length - 1 ? 0 : 3;
    head.writeUInt16BE(8 + attrs.length, 2);
    head[4] = t.type;
    head.writeUInt16BE(t.id, 6);
    return Buffer.concat([head, attrs]);
  });
  const body = Buffer.concat([p.spi, ...transforms]);
  const head = Buffer.alloc(8);
  head[0] = last ? 0 : 2;
  head.writeUInt16BE(8 + body.length, 2);
  head[4] = p.num;
  head[5] = p.protocol;
  head[6] = p.spi.length;
  head[7] = p.transforms.length;
  return Buffer.concat([head, body]);
}

function encodeSelector(s: TrafficSelector): Buffer {
  const start = parseAddress(s.startAddress);
  const end = parseAddress(s.endAddress);
  const alen = s.family === 4 ? 4 : 16;
  const head = Buffer.alloc(8);
  head[0] = s.family === 4 ? TS_TYPE.IPV4_ADDR_RANGE : TS_TYPE.IPV6_ADDR_RANGE;
  head[1] = s.protocol;
  head.writeUInt16BE(8 + 2 * alen, 2);
  head.writeUInt16BE(s.startPort, 4);
  head.writeUInt16BE(s.endPort, 6);
  const sb = start.ok && start.value.family === s.family ? start.value.bytes : new Uint8Array(alen);
  const eb = end.ok && end.value.family === s.family ? end.value.bytes : new Uint8Array(alen);
  return Buffer.concat([head, sb, eb]);
}

/** A payload chain: the type of the first payload and the bytes of all of them, generic headers included. */
export function encodeChain(payloads: readonly Payload[]): { first: number; bytes: Buffer } {
  const parts: Buffer[] = [];
  for (let i = 0; i < payloads.length; i++) {
    const p = payloads[i]!;
    const body = encodeBody(p);
    const next =
      p.kind === 'sk' || p.kind === 'skf'
        ? p.firstInner
        : i + 1 < payloads.length
          ? payloadType(payloads[i + 1]!)
          : 0;
    const head = Buffer.alloc(PAYLOAD_HEADER_LENGTH);
    head[0] = next;
    head.writeUInt16BE(PAYLOAD_HEADER_LENGTH + body.length, 2);
    parts.push(head, body);
  }
  return { first: payloads.length > 0 ? payloadType(payloads[0]!) : 0, bytes: Buffer.concat(parts) };
}

/** The 28-byte header for a message of `length` bytes whose first payload is `next`. */
export function encodeHeader(h: Omit<IkeHeader, 'nextPayload'>, next: number, length: number): Buffer {
  const b = Buffer.alloc(IKE_HEADER_LENGTH);
  h.spiI.copy(b, 0);
  h.spiR.copy(b, 8);
  b[16] = next;
  b[17] = IKE_MAJOR_VERSION << 4;
  b[18] = h.exchange;
  b[19] = (h.initiator ? FLAG_INITIATOR : 0) | (h.response ? FLAG_RESPONSE : 0);
  b.writeUInt32BE(h.messageId >>> 0, 20);
  b.writeUInt32BE(length, 24);
  return b;
}

/** A whole plaintext message. */
export function buildMessage(h: Omit<IkeHeader, 'nextPayload'>, payloads: readonly Payload[]): Buffer {
  const chain = encodeChain(payloads);
  return Buffer.concat([encodeHeader(h, chain.first, IKE_HEADER_LENGTH + chain.bytes.length), chain.bytes]);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
}
