/**
 * Early negotiation (OpenVPN 2.6, ssl.c parse_early_negotiation_tlvs; ssl_pkt.c tls_reset_standalone): the
 * payload of a hard reset may carry TLVs, type(2) ‖ length(2) ‖ value, all big-endian. A client announces
 * that it reads them by starting its tls-crypt packet ids at EARLY_NEG_START; the one TLV defined so far,
 * EARLY_NEG_FLAGS, lets the server ask a tls-crypt-v2 client to append its WKc again to its next control
 * packet (P_CONTROL_WKC_V1), so that the server need keep no state for the client's first packet.
 */
import {
  EARLY_NEG_FLAG_RESEND_WKC,
  EARLY_NEG_MASK,
  EARLY_NEG_START,
  TLV_TYPE_EARLY_NEG_FLAGS,
} from './constants.js';

export interface EarlyNegotiation {
  readonly resendWkc: boolean;
}

/** Whether a client's first tls-crypt packet id says it supports early negotiation. */
export function announcesEarlyNegotiation(wrapPacketId: number): boolean {
  return (wrapPacketId & EARLY_NEG_MASK) >>> 0 === EARLY_NEG_START;
}

/** Reads the TLVs of a reset payload; unknown types are skipped, as OpenVPN does. */
export function parseEarlyNegotiation(
  payload: Uint8Array,
): { ok: true; value: EarlyNegotiation } | { ok: false; drop: 'malformed-tlv' } {
  let resendWkc = false;
  let at = 0;
  while (at < payload.length) {
    if (at + 4 > payload.length) return { ok: false, drop: 'malformed-tlv' };
    const type = (payload[at]! << 8) | payload[at + 1]!;
    const length = (payload[at + 2]! << 8) | payload[at + 3]!;
    at += 4;
    if (at + length > payload.length) return { ok: false, drop: 'malformed-tlv' };
    if (type === TLV_TYPE_EARLY_NEG_FLAGS) {
      if (length !== 2) return { ok: false, drop: 'malformed-tlv' };
      const flags = (payload[at]! << 8) | payload[at + 1]!;
      resendWkc = (flags & EARLY_NEG_FLAG_RESEND_WKC) !== 0;
    }
    at += length;
  }
  return { ok: true, value: { resendWkc } };
}

/** The payload of a server reset that asks for the WKc again (empty when nothing is asked). */
export function encodeEarlyNegotiation(value: EarlyNegotiation): Uint8Array {
  if (!value.resendWkc) return new Uint8Array(0);
  return Uint8Array.of(
    TLV_TYPE_EARLY_NEG_FLAGS >>> 8,
    TLV_TYPE_EARLY_NEG_FLAGS & 0xff,
    0,
    2,
    EARLY_NEG_FLAG_RESEND_WKC >>> 8,
    EARLY_NEG_FLAG_RESEND_WKC & 0xff,
  );
}
