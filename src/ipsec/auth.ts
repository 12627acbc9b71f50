/**
 * Identities (RFC 7296 §3.5; a distinguished name as ID_DER_ASN1_DN, written "CN=gw.example.net,O=Example"
 * with the RDNs in encoding order, as strongSwan and OpenSSL's -subj write them) and pre-shared-key
 * authentication (RFC 7296 §2.15):
 *   AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets> )
 *   InitiatorSignedOctets = RealMessage1 | NonceRData | prf(SK_pi, RestOfInitIDPayload)
 *   ResponderSignedOctets = RealMessage2 | NonceIData | prf(SK_pr, RestOfRespIDPayload)
 * where RestOf...IDPayload is the ID payload body (ID type, three reserved octets, data).
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { timingSafeEqual } from 'node:crypto';

import { parseAddress, formatAddress } from '../net/ip.js';
import { ID_TYPE, PSK_KEY_PAD } from './constants.js';
import { prf, type PrfId } from './prf.js';

export type IkeIdentity =
  | { readonly type: 'ipv4' | 'ipv6' | 'fqdn' | 'email' | 'der-asn1-dn'; readonly value: string }
  | { readonly type: 'keyid'; readonly value: string /* hex */ };

export function encodeIdentity(id: IkeIdentity): { idType: number; data: Buffer } {
  switch (id.type) {
    case 'ipv4':
    case 'ipv6': {
      const a = parseAddress(id.value);
      return {
        idType: id.type === 'ipv4' ? ID_TYPE.IPV4_ADDR : ID_TYPE.IPV6_ADDR,
        data: a.ok ? Buffer.from(a.value.bytes) : Buffer.alloc(0),
      };
    }
    case 'fqdn':
      return { idType: ID_TYPE.FQDN, data: Buffer.from(id.value, 'utf8') };
    case 'email':
      return { idType: ID_TYPE.RFC822_ADDR, data: Buffer.from(id.value, 'utf8') };
    case 'keyid':
      return { idType: ID_TYPE.KEY_ID, data: Buffer.from(id.value, 'hex') };
    case 'der-asn1-dn':
      return { idType: ID_TYPE.DER_ASN1_DN, data: distinguishedName(id.value) ?? Buffer.alloc(0) };
  }
}

/** The DER of a distinguished name written as text, or null when the text is not one. */
export function distinguishedName(text: string): Buffer | null {
  if (typeof text !== 'string' || !/^\s*[A-Za-z][\w.-]*\s*=/.test(text)) return null;
  try {
    const der = Buffer.from(new x509.Name(text).toArrayBuffer());
    return der.length > 2 ? der : null;
  } catch {
    return null;
  }
}

/** A DN in the DER of an ID payload as text ("CN=gw.example.net, O=Example"), or null when unparsable. */
function dnText(data: Buffer): string | null {
  try {
    return new x509.Name(data).toString();
  } catch {
    return null;
  }
}

/**
 * Two DNs the same though encoded differently (PrintableString against UTF8String, as two implementations may
 * write the same name): same attributes in the same order with the same values, case-insensitively.
 */
export function sameDistinguishedName(a: Buffer, b: Buffer): boolean {
  if (a.equals(b)) return true;
  const ta = dnText(a);
  const tb = dnText(b);
  return ta !== null && tb !== null && ta.toLowerCase() === tb.toLowerCase();
}

/** Whether a received ID (type and data) is the configured identity `want`. */
export function sameIdentity(want: IkeIdentity, idType: number, data: Buffer): boolean {
  const w = encodeIdentity(want);
  if (w.idType !== idType) return false;
  if (idType === ID_TYPE.DER_ASN1_DN) return w.data.length > 0 && sameDistinguishedName(w.data, data);
  return w.data.equals(data);
}

/** A printable form of a received ID, for log lines ("ipv4:192.0.2.1", "fqdn:gw.example"). */
export function describeIdentity(idType: number, data: Buffer): string {
  switch (idType) {
    case ID_TYPE.IPV4_ADDR:
      return data.length === 4 ? `ipv4:${formatAddress({ family: 4, bytes: data })}` : 'ipv4:?';
    case ID_TYPE.IPV6_ADDR:
      return data.length === 16 ? `ipv6:${formatAddress({ family: 6, bytes: data })}` : 'ipv6:?';
    case ID_TYPE.FQDN:
      return `fqdn:${data.toString('latin1').replace(/[^\x20-\x7e]/g, '?')}`;
    case ID_TYPE.RFC822_ADDR:
      return `email:${data.toString('latin1').replace(/[^\x20-\x7e]/g, '?')}`;
    case ID_TYPE.DER_ASN1_DN:
      return `dn:${dnText(data)?.replace(/[^\x20-\x7e]/g, '?') ?? '?'}`;
    default:
      return `type${idType}:${data.toString('hex').slice(0, 64)}`;
  }
}

export function idBody(idType: number, data: Buffer): Buffer {
  return Buffer.concat([Uint8Array.of(idType, 0, 0, 0), data]);
}

/**
 * The octets an AUTH payload covers (§2.15): RealMessage | Nonce of the other side | prf(SK_p, RestOfIDPayload).
 * A pre-shared key MACs them; a certificate signs them.
 */
export function signedOctets(
  id: PrfId,
  realMessage: Buffer,
  peerNonce: Buffer,
  skP: Buffer,
  idPayloadBody: Buffer,
): Buffer {
  return Buffer.concat([realMessage, peerNonce, prf(id, skP, idPayloadBody)]);
}

export function pskAuth(
  id: PrfId,
  psk: Buffer,
  realMessage: Buffer,
  peerNonce: Buffer,
  skP: Buffer,
  idPayloadBody: Buffer,
): Buffer {
  const key = prf(id, psk, Buffer.from(PSK_KEY_PAD, 'latin1'));
  return prf(id, key, realMessage, peerNonce, prf(id, skP, idPayloadBody));
}

export function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
