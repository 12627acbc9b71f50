/**
 * NAT detection (RFC 7296 §2.23): each side sends SHA-1(SPIi | SPIr | IP | Port) of its own address
 * (NAT_DETECTION_SOURCE_IP) and of the address it sends to (NAT_DETECTION_DESTINATION_IP). A hash that does
 * not match what the receiver sees means a NAT sits between; from then on both sides use UDP 4500 with the
 * non-ESP marker (RFC 3948), and the side behind the NAT keeps the mapping open with keepalives.
 */
import { createHash } from 'node:crypto';

import { parseAddress } from '../net/ip.js';

export interface UdpEndpoint {
  readonly address: string;
  readonly port: number;
}

export function natHash(spiI: Buffer, spiR: Buffer, ep: UdpEndpoint): Buffer {
  const a = parseAddress(ep.address);
  const port = Buffer.alloc(2);
  port.writeUInt16BE(ep.port & 0xffff);
  return createHash('sha1')
    .update(spiI)
    .update(spiR)
    .update(a.ok ? a.value.bytes : new Uint8Array(0))
    .update(port)
    .digest();
}
