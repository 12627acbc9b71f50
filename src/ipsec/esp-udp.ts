/**
 * UDP encapsulation of ESP and IKE on port 4500 (RFC 3948), sans-IO: what a datagram on that port is, and
 * how IKE messages are framed on it.
 *
 * RFC 3948 §2.2-2.3 and §3: the first four bytes of an ESP packet are its SPI, which is never zero; IKE
 * messages on port 4500 are preceded by the four-byte non-ESP marker (zero, where an SPI would be); a NAT
 * keepalive is a single byte 0xFF that the receiver ignores. ESP needs no framing: the UDP payload is the
 * ESP packet from the SPI on.
 */
import { ESP_HEADER_BYTES, NAT_KEEPALIVE_BYTE, NON_ESP_MARKER_BYTES } from './esp-constants.js';

export type NatTKind = 'esp' | 'ike' | 'keepalive' | 'invalid';

export function classifyNatT(datagram: Uint8Array): NatTKind {
  if (datagram.length === 1 && datagram[0] === NAT_KEEPALIVE_BYTE) return 'keepalive';
  if (datagram.length < NON_ESP_MARKER_BYTES) return 'invalid';
  if ((datagram[0]! | datagram[1]! | datagram[2]! | datagram[3]!) === 0) {
    // An IKE header is 28 bytes (RFC 7296 §3.1); the IKE core judges the rest.
    return datagram.length > NON_ESP_MARKER_BYTES ? 'ike' : 'invalid';
  }
  return datagram.length >= ESP_HEADER_BYTES ? 'esp' : 'invalid';
}

/** The IKE message in a datagram classified 'ike' (the non-ESP marker removed). */
export function ikeMessage(datagram: Uint8Array): Uint8Array {
  return datagram.subarray(NON_ESP_MARKER_BYTES);
}

/** An IKE message framed for port 4500: the non-ESP marker, then the message. */
export function withNonEspMarker(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(NON_ESP_MARKER_BYTES + message.length);
  out.set(message, NON_ESP_MARKER_BYTES);
  return out;
}

/** The NAT keepalive datagram (RFC 3948 §2.3). */
export const NAT_KEEPALIVE: Uint8Array = Uint8Array.of(NAT_KEEPALIVE_BYTE);
