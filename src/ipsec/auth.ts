/**
 * Identities (RFC 7296 §3.5) and pre-shared-key authentication (RFC 7296 §2.15):
 *   AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets> )
 *   InitiatorSignedOctets = RealMessage1 | NonceRData | prf(SK_pi, RestOfInitIDPayload)
 *   ResponderSignedOctets = RealMessage2 | NonceIData | prf(SK_pr, RestOfRespIDPayload)
 * where RestOf...IDPayload is the ID payload body (ID type, three reserved octets, data).
 */
import { timingSafeEqual } from 'node:crypto';

import { parseAddress, formatAddress } from '../net/ip.js';
import { ID_TYPE, PSK_KEY_PAD } from './constants.js';
import { prf, type PrfId } from './prf.js';

export type IkeIdentity =
  | { readonly type: 'ipv4' | 'ipv6' | 'fqdn' | 'email'; readonly value: string }
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
  }
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
    default:
      return `type${idType}:${data.toString('hex').slice(0, 64)}`;
  }
}

export function idBody(idType: number, data: Buffer): Buffer {
  return Buffer.concat([Uint8Array.of(idType, 0, 0, 0), data]);
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
