/**
 * ESP (RFC 4303) for one CHILD SA, sans-IO: packets are sealed into and opened from the caller's buffers; the
 * shell (src/gateway/esp-tunnel.ts) owns sockets, the TUN side and the clock.
 *
 * Outbound (EspOutboundSa.seal):
 * 1. Take the next sequence number; refuse ('exhausted') rather than let it cycle (RFC 4303 §3.3.3), and
 *    raise `rekeyNeeded` SEQ_REKEY_MARGIN before that.
 * 2. Write SPI and the low 32 bits of the sequence number; copy the payload after the IV's place.
 * 3. Pad with 1, 2, 3, ... to the transform's alignment (RFC 4303 §2.4), then pad length and next header.
 * 4. The transform writes the IV, encrypts in place and appends the ICV.
 *
 * Inbound (EspInboundSa.open), each failure a typed drop reason and a counter:
 * 1. Length: header, IV, at least one aligned block of ciphertext, ICV ('short', 'bad-length').
 * 2. Sequence number: infer the ESN high half, refuse replays before any cryptography ('replay').
 * 3. ICV and decryption into `out` ('bad-icv'); with ESN, after a run of failures also try the next high half
 *    (RFC 4303 Appendix A3 re-synchronisation).
 * 4. Only now move the replay window.
 * 5. Trailer: pad length within the payload, padding bytes 1, 2, 3, ... ('bad-padding').
 * 6. Next header: 59 is a dummy packet, dropped ('dummy'); tunnel mode takes 4 (IPv4) or 41 (IPv6) with a
 *    complete inner packet ('bad-next-header', 'malformed-inner'), trims TFC padding after it, and checks the
 *    inner addresses against the selectors ('selector-mismatch'). Transport mode hands the payload and its
 *    protocol to the shell, which rebuilds the IP header and knows the peer's address.
 */
import type { ChildSaSpec, IpsecMode } from './child-sa.js';
import { readIpHeader } from '../net/ip-packet.js';
import {
  ESN_RESYNC_AFTER_FAILURES,
  ESP_HEADER_BYTES,
  ESP_MAX_PAD,
  ESP_TRAILER_BYTES,
  NEXT_HEADER_IPV4,
  NEXT_HEADER_IPV6,
  NEXT_HEADER_NONE,
  SEQ32_LAST,
  SEQ64_LAST,
  SEQ_REKEY_MARGIN,
} from './esp-constants.js';
import { EspReplayWindow } from './esp-replay.js';
import { compileSelectors, selectorsAdmit, type CompiledSelector } from './esp-selectors.js';
import { createEspTransform, type EspTransform, type IvSource } from './esp-transforms.js';

export const ESP_DROP_REASONS = [
  'short',
  'unknown-spi',
  'bad-length',
  'bad-icv',
  'replay',
  'bad-padding',
  'bad-next-header',
  'malformed-inner',
  'selector-mismatch',
  'dummy',
] as const;
export type EspDropReason = (typeof ESP_DROP_REASONS)[number];
export type EspOpenStatus = 'ok' | EspDropReason;

export function emptyDropCounters(): Record<EspDropReason, number> {
  return Object.fromEntries(ESP_DROP_REASONS.map((r) => [r, 0])) as Record<EspDropReason, number>;
}

const TWO32 = 0x1_0000_0000;

export function readSpi(packet: Uint8Array): number {
  return ((packet[0]! << 24) | (packet[1]! << 16) | (packet[2]! << 8) | packet[3]!) >>> 0;
}

function writeU32(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >>> 24;
  buf[at + 1] = (value >>> 16) & 0xff;
  buf[at + 2] = (value >>> 8) & 0xff;
  buf[at + 3] = value & 0xff;
}

export interface EspSaOptions {
  /** Overrides the IV (tests with published vectors; the defaults never repeat an IV). */
  ivSource?: IvSource;
  /** The first sequence number to send (1 by default; tests start near the end). */
  firstSequence?: number;
}

export class EspOutboundSa {
  readonly spi: number;
  readonly mode: IpsecMode;
  readonly esn: boolean;
  readonly counters = { packets: 0, bytes: 0, exhausted: 0 };
  private readonly transform: EspTransform;
  private next: number;
  private readonly last: number;

  constructor(spec: ChildSaSpec, options: EspSaOptions = {}) {
    this.spi = spec.outboundSpi >>> 0;
    this.mode = spec.mode;
    this.esn = spec.esn;
    this.transform = createEspTransform(spec, 'seal', options.ivSource);
    this.next = options.firstSequence ?? 1;
    this.last = spec.esn ? SEQ64_LAST : SEQ32_LAST;
  }

  get transformName(): string {
    return this.transform.name;
  }

  /** The sequence number the next packet will carry. */
  get nextSequence(): number {
    return this.next;
  }

  /** True once the SA is close to its last sequence number: the IKE side should rekey it now. */
  get rekeyNeeded(): boolean {
    return this.next > this.last - SEQ_REKEY_MARGIN;
  }

  /**
   * Tests only: moves the next sequence number forward to `next` (never back, never past the end), so a test
   * can reach the rekey margin without sending 2^32 packets. Nothing outside tests calls it.
   */
  skipSequenceForTest(next: number): void {
    if (Number.isSafeInteger(next) && next > this.next) this.next = Math.min(next, this.last + 1);
  }

  /** True when no packet can be sent on this SA any more. */
  get exhausted(): boolean {
    return this.next > this.last;
  }

  /** The length of the ESP packet that seal() makes of a payload of `payloadLength` bytes. */
  sealedLength(payloadLength: number): number {
    const t = this.transform;
    const cipher = Math.ceil((payloadLength + ESP_TRAILER_BYTES) / t.alignment) * t.alignment;
    return ESP_HEADER_BYTES + t.ivBytes + cipher + t.icvBytes;
  }

  /**
   * Seals `payload` (an inner IP packet in tunnel mode, the transport header and data in transport mode)
   * into `out` from offset 0. Returns the ESP packet's length, or -1 when the sequence numbers are exhausted
   * or `out` is too small (counted in `exhausted` for the former).
   */
  seal(payload: Uint8Array, nextHeader: number, out: Uint8Array): number {
    if (this.next > this.last) {
      this.counters.exhausted++;
      return -1;
    }
    const t = this.transform;
    const total = this.sealedLength(payload.length);
    if (out.length < total) return -1;
    const seq = this.next++;
    const high = this.esn ? Math.floor(seq / TWO32) : 0;
    writeU32(out, 0, this.spi);
    writeU32(out, 4, seq % TWO32);
    const dataAt = ESP_HEADER_BYTES + t.ivBytes;
    const cipherLength = total - dataAt - t.icvBytes;
    out.set(payload, dataAt);
    const pad = cipherLength - payload.length - ESP_TRAILER_BYTES;
    let at = dataAt + payload.length;
    for (let i = 1; i <= pad; i++) out[at++] = i;
    out[at++] = pad;
    out[at] = nextHeader;
    t.seal(out, cipherLength, seq, high, this.esn);
    this.counters.packets++;
    this.counters.bytes += payload.length;
    return total;
  }

  dispose(): void {
    this.transform.dispose();
  }
}

/** What the last successful open() produced (reused, so opening allocates no result object). */
export interface EspOpened {
  /** Length of the payload at the start of `out` (the inner packet in tunnel mode, TFC padding trimmed). */
  length: number;
  nextHeader: number;
  /** The full (inferred, with ESN) sequence number. */
  seq: number;
}

export class EspInboundSa {
  readonly spi: number;
  readonly mode: IpsecMode;
  readonly esn: boolean;
  readonly counters = { packets: 0, bytes: 0, resynchronised: 0, drops: emptyDropCounters() };
  readonly opened: EspOpened = { length: 0, nextHeader: 0, seq: 0 };
  readonly replay = new EspReplayWindow();
  private readonly transform: EspTransform;
  private readonly remote: CompiledSelector[];
  private readonly local: CompiledSelector[];
  private readonly minLength: number;
  private icvFailures = 0;

  constructor(spec: ChildSaSpec) {
    this.spi = spec.inboundSpi >>> 0;
    this.mode = spec.mode;
    this.esn = spec.esn;
    this.transform = createEspTransform(spec, 'open');
    this.remote = compileSelectors(spec.remoteSelectors);
    this.local = compileSelectors(spec.localSelectors);
    const t = this.transform;
    this.minLength = ESP_HEADER_BYTES + t.ivBytes + Math.max(t.alignment, 4) + t.icvBytes;
  }

  get transformName(): string {
    return this.transform.name;
  }

  private drop(reason: EspDropReason): EspDropReason {
    this.counters.drops[reason]++;
    return reason;
  }

  /**
   * Opens one ESP packet (from the SPI on) into `out` (at least packet.length bytes, not overlapping
   * `packet`). On 'ok' the payload is out[0 .. opened.length).
   */
  open(packet: Uint8Array, out: Uint8Array): EspOpenStatus {
    const t = this.transform;
    if (packet.length < this.minLength || out.length < packet.length) return this.drop('short');
    const cipherLength = packet.length - ESP_HEADER_BYTES - t.ivBytes - t.icvBytes;
    if (cipherLength % t.alignment !== 0) return this.drop('bad-length');
    const low = ((packet[4]! << 24) | (packet[5]! << 16) | (packet[6]! << 8) | packet[7]!) >>> 0;
    let seq = this.replay.infer(low, this.esn);
    if (this.replay.refuses(seq)) return this.drop('replay');
    if (!t.open(packet, out, this.esn ? Math.floor(seq / TWO32) : 0, this.esn)) {
      const next = seq + TWO32;
      const resync =
        this.esn &&
        ++this.icvFailures > ESN_RESYNC_AFTER_FAILURES &&
        !this.replay.refuses(next) &&
        t.open(packet, out, Math.floor(next / TWO32), true);
      if (!resync) return this.drop('bad-icv');
      seq = next;
      this.counters.resynchronised++;
    }
    this.icvFailures = 0;
    this.replay.accept(seq);

    const padLength = out[cipherLength - 2]!;
    const nextHeader = out[cipherLength - 1]!;
    const payloadLength = cipherLength - ESP_TRAILER_BYTES - padLength;
    if (payloadLength < 0 || padLength > ESP_MAX_PAD) return this.drop('bad-padding');
    for (let i = 0; i < padLength; i++) if (out[payloadLength + i] !== i + 1) return this.drop('bad-padding');
    if (nextHeader === NEXT_HEADER_NONE) return this.drop('dummy');

    let length = payloadLength;
    if (this.mode === 'tunnel') {
      if (nextHeader !== NEXT_HEADER_IPV4 && nextHeader !== NEXT_HEADER_IPV6)
        return this.drop('bad-next-header');
      const header = readIpHeader(out.subarray(0, payloadLength));
      if (!header || header.family !== (nextHeader === NEXT_HEADER_IPV4 ? 4 : 6))
        return this.drop('malformed-inner');
      length = header.length;
      if (!selectorsAdmit(out, this.remote, this.local)) return this.drop('selector-mismatch');
    } else if (nextHeader === 255) {
      // Reserved (IANA protocol numbers); nothing legitimate carries it.
      return this.drop('bad-next-header');
    }
    const opened = this.opened;
    opened.length = length;
    opened.nextHeader = nextHeader;
    opened.seq = seq;
    this.counters.packets++;
    this.counters.bytes += length;
    return 'ok';
  }

  dispose(): void {
    this.transform.dispose();
  }
}

/**
 * The inbound SAs of one endpoint by SPI: the first step of receiving (RFC 4303 §3.4.2), and where an
 * unknown SPI becomes a counted drop.
 */
export class EspInboundSet {
  readonly drops = { short: 0, unknownSpi: 0 };
  private readonly bySpi = new Map<number, EspInboundSa>();

  get size(): number {
    return this.bySpi.size;
  }

  add(sa: EspInboundSa): void {
    const old = this.bySpi.get(sa.spi);
    if (old && old !== sa) old.dispose();
    this.bySpi.set(sa.spi, sa);
  }

  remove(spi: number): EspInboundSa | undefined {
    const sa = this.bySpi.get(spi >>> 0);
    if (sa) {
      this.bySpi.delete(sa.spi);
      sa.dispose();
    }
    return sa;
  }

  get(spi: number): EspInboundSa | undefined {
    return this.bySpi.get(spi >>> 0);
  }

  /** The SA the last open() found (undefined after a runt or an unknown SPI). */
  last: EspInboundSa | undefined;

  /** Finds the SA for `packet` and opens it; an unknown SPI or a runt is dropped (and counted) here. */
  open(packet: Uint8Array, out: Uint8Array): EspOpenStatus {
    this.last = undefined;
    if (packet.length < ESP_HEADER_BYTES) {
      this.drops.short++;
      return 'short';
    }
    const sa = this.bySpi.get(readSpi(packet));
    if (!sa) {
      this.drops.unknownSpi++;
      return 'unknown-spi';
    }
    this.last = sa;
    return sa.open(packet, out);
  }
}
