/**
 * What an opened data packet carries. OpenVPN's forward.c (process_incoming_link_part2) looks at the
 * plaintext before writing it to the tun device:
 *
 *   - exactly the 16-byte ping string (ping.c ping_string): a keepalive, never written to the tun;
 *   - a payload starting with the 16-byte OCC magic (occ.c occ_magic) and an opcode byte: an OCC message.
 *     OCC_EXIT is what `--explicit-exit-notify` sends when the peer did not agree on IV_PROTO_CC_EXIT_NOTIFY
 *     (2.6 peers that did send "EXIT" on the control channel instead; sig.c): the client is leaving. The
 *     option-compatibility requests and `--mtu-test` probes are OCC messages too; the session may ignore them;
 *   - anything else is an IP packet for the tun.
 *
 * Compression: Weft pushes no `compress`/`comp-lzo`, so a conforming client sends bare IP packets. A client
 * configured to insist on compression would put a framing byte first (comp.h: 0xFA "no compression",
 * 0x50 the v2 indicator, 0xFB the swapped stub); such payloads are dropped as `compressed` rather than
 * guessed at. A client whose options demand compression is to be refused by the control channel, before any
 * data key exists, with the reason "compression is not supported" (that check is not in this file). The LZO
 * and LZ4 bytes (0x66, 0x69) cannot be told apart from an IPv6 header here and fall to the IP header checks
 * of the tunnel.
 */

function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

/** ping.c */
export const PING_STRING: Readonly<Uint8Array> = fromHex('2a187bf3641eb4cb07ed2d0a981fc748');
/** occ.c, occ.h OCC_STRING_SIZE */
export const OCC_MAGIC: Readonly<Uint8Array> = fromHex('287f346bd4ef7a812d56b8d3afc5459c');
export const OCC_STRING_SIZE = 16;
/** occ.h: the OCC opcodes. */
export const OCC_REQUEST = 0;
export const OCC_REPLY = 1;
export const OCC_MTU_LOAD_REQUEST = 2;
export const OCC_MTU_LOAD = 3;
export const OCC_MTU_REQUEST = 4;
export const OCC_MTU_REPLY = 5;
export const OCC_EXIT = 6;

/** comp.h: the framing bytes a compressing peer puts first. */
export const NO_COMPRESS_BYTE = 0xfa;
export const NO_COMPRESS_BYTE_SWAP = 0xfb;
export const COMP_ALGV2_INDICATOR_BYTE = 0x50;

export type PayloadClass = 'ip' | 'ping' | 'occ';
export type PayloadDrop = 'empty-payload' | 'malformed-occ' | 'compressed' | 'not-ip';

function startsWith(bytes: Uint8Array, length: number, head: Readonly<Uint8Array>): boolean {
  if (length < head.length) return false;
  for (let i = 0; i < head.length; i++) if (bytes[i] !== head[i]) return false;
  return true;
}

/** Classifies `bytes[0..length)`, an authenticated plaintext. */
export function classifyPayload(bytes: Uint8Array, length: number): PayloadClass | PayloadDrop {
  if (length <= 0) return 'empty-payload';
  if (length === PING_STRING.length && startsWith(bytes, length, PING_STRING)) return 'ping';
  if (startsWith(bytes, length, OCC_MAGIC)) return length > OCC_STRING_SIZE ? 'occ' : 'malformed-occ';
  const first = bytes[0]!;
  const version = first >>> 4;
  if (version === 4 || version === 6) return 'ip';
  if (first === NO_COMPRESS_BYTE || first === NO_COMPRESS_BYTE_SWAP || first === COMP_ALGV2_INDICATOR_BYTE)
    return 'compressed';
  return 'not-ip';
}

/** A fresh copy of the ping payload (seal it like any payload). */
export function buildPing(): Uint8Array {
  return Uint8Array.from(PING_STRING);
}

/** The OCC_EXIT payload a leaving peer sends (occ.c: magic ‖ opcode). */
export function buildOccExit(): Uint8Array {
  const out = new Uint8Array(OCC_STRING_SIZE + 1);
  out.set(OCC_MAGIC);
  out[OCC_STRING_SIZE] = OCC_EXIT;
  return out;
}
