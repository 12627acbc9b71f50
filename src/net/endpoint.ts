/**
 * A UDP endpoint: address and port. Text form is `1.2.3.4:51820` or `[fd00::1]:51820`, as `wg` prints it.
 */
import { formatAddress, parseAddress, type ParseResult } from './ip.js';

export interface Endpoint {
  readonly address: string;
  readonly port: number;
  /**
   * On a received datagram: our own address it was sent to, when the bind can tell (LinuxUdpBind; MemoryBind).
   * Datagrams to this endpoint leave from that address, so a peer behind a NAT or a stateful firewall sees
   * answers from the address it wrote to; kept with the peer's endpoint, it sticks until the peer reaches us on
   * another address. Undefined: the kernel picks the source (configured endpoints, node:dgram).
   */
  readonly local?: string | undefined;
}

/** Same peer address and port, and the same local address (a peer that switches ours has roamed too). */
export function sameEndpoint(a: Endpoint | undefined, b: Endpoint | undefined): boolean {
  return (
    a !== undefined && b !== undefined && a.port === b.port && a.address === b.address && a.local === b.local
  );
}

export function formatEndpoint(e: Endpoint): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

/** Parses a literal `ADDR:PORT` / `[ADDR]:PORT` (host names are resolved by the caller, not here). */
export function parseEndpoint(text: string): ParseResult<Endpoint> {
  const t = text.trim();
  const m = /^\[([^\]\s]+)\]:(\d{1,5})$/.exec(t) ?? /^([^\s:[\]]+):(\d{1,5})$/.exec(t);
  if (!m)
    return {
      ok: false,
      error: `endpoint must be ADDRESS:PORT or [ADDRESS]:PORT, got ${JSON.stringify(text)}`,
    };
  const port = Number(m[2]);
  if (port < 1 || port > 65535)
    return { ok: false, error: `endpoint port out of range in ${JSON.stringify(text)}` };
  const addr = parseAddress(m[1]!);
  if (!addr.ok) return addr;
  return { ok: true, value: { address: formatAddress(addr.value), port } };
}

/** Address bytes followed by the big-endian port: the A_m a cookie is bound to (paper §5.4.7). */
export function endpointBytes(e: Endpoint): Uint8Array {
  const a = parseAddress(e.address);
  const ip = a.ok ? a.value.bytes : new TextEncoder().encode(e.address);
  const out = new Uint8Array(ip.length + 2);
  out.set(ip, 0);
  out[ip.length] = e.port >> 8;
  out[ip.length + 1] = e.port & 0xff;
  return out;
}
