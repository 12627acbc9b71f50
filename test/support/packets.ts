/** Minimal inner IP packets for driving the data plane in tests (checksums are not needed by the core). */
import { parseAddress } from '../../src/net/ip.js';

function addr(text: string): Uint8Array {
  const a = parseAddress(text);
  if (!a.ok) throw new Error(a.error);
  return a.value.bytes;
}

/** An IPv4 UDP packet from `src` to `dst` carrying `payload`. */
export function ipv4(src: string, dst: string, payload: Uint8Array | string = 'ping'): Uint8Array {
  const body = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  const total = 20 + 8 + body.length;
  const p = new Uint8Array(total);
  p[0] = 0x45;
  p[2] = total >> 8;
  p[3] = total & 0xff;
  p[8] = 64;
  p[9] = 17;
  p.set(addr(src), 12);
  p.set(addr(dst), 16);
  p[24] = (8 + body.length) >> 8;
  p[25] = (8 + body.length) & 0xff;
  p.set(body, 28);
  return p;
}

/** An IPv6 UDP packet from `src` to `dst` carrying `payload`. */
export function ipv6(src: string, dst: string, payload: Uint8Array | string = 'ping'): Uint8Array {
  const body = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  const p = new Uint8Array(40 + 8 + body.length);
  p[0] = 0x60;
  const len = 8 + body.length;
  p[4] = len >> 8;
  p[5] = len & 0xff;
  p[6] = 17;
  p[7] = 64;
  p.set(addr(src), 8);
  p.set(addr(dst), 24);
  p[44] = len >> 8;
  p[45] = len & 0xff;
  p.set(body, 48);
  return p;
}

export function payloadOf(packet: Uint8Array): string {
  const offset = packet[0]! >> 4 === 4 ? 28 : 48;
  return new TextDecoder().decode(packet.subarray(offset));
}
