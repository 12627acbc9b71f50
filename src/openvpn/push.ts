/**
 * Control-channel messages after key-method 2 (OpenVPN's push.c, ssl_pkt.c extract_command_buffer): NUL-
 * terminated ASCII strings inside the TLS session. The client asks with PUSH_REQUEST; the server answers
 * with PUSH_REPLY and a comma-separated list of options, split over several messages when it is long
 * (push.c send_push_reply: every message but the last ends with `push-continuation 2`, the last with
 * `push-continuation 1`). AUTH_FAILED refuses a client; RESTART and HALT (server to client) and EXIT
 * (client to server, cc-exit) end a session.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** common.h PUSH_BUNDLE_SIZE: the largest PUSH_REPLY message OpenVPN builds. */
export const PUSH_BUNDLE_SIZE = 1024;

export interface Route4 {
  readonly network: string;
  readonly netmask: string;
  readonly gateway?: string;
}

/** What the server pushes to one client. */
export interface PushReplyOptions {
  /** Only `subnet` is supported: one address and netmask per client. */
  readonly topology: 'subnet';
  readonly ifconfig: { readonly address: string; readonly netmask: string };
  readonly ifconfigIpv6?: {
    readonly address: string;
    readonly prefixLength: number;
    readonly gateway: string;
  };
  readonly routeGateway?: string;
  readonly routes?: readonly Route4[];
  /** IPv6 prefixes, e.g. "fd00:1::/64". */
  readonly routesIpv6?: readonly string[];
  /** Full tunnel: `redirect-gateway def1` (with `ipv6` when the IPv6 default goes through the tunnel too). */
  readonly redirectGateway?: { readonly ipv6: boolean };
  /** DNS servers (dhcp-option DNS / DNS6). */
  readonly dns?: readonly string[];
  /**
   * The tunnel's MTU (`tun-mtu`, pushable since OpenVPN 2.6): the gateway's TUN MTU, so the client never sends
   * a packet the gateway's side cannot carry whole, and path MTU discovery on the client sees the real limit.
   */
  readonly tunMtu?: number;
  /** Seconds. */
  readonly ping?: number;
  readonly pingRestart?: number;
  readonly peerId: number;
  readonly cipher: string;
  /** Data keys from the TLS exporter (pushed as `key-derivation tls-ekm` and in protocol-flags). */
  readonly tlsEkm: boolean;
  /** The client announced IV_PROTO_CC_EXIT_NOTIFY: tell it that the server reads EXIT on the control channel. */
  readonly ccExit: boolean;
}

const TOKEN = /^[A-Za-z0-9:._/-]+$/;

function need(condition: boolean, what: string): void {
  if (!condition) throw new RangeError(`push: bad ${what}`);
}

/** The options, in the order OpenVPN's server sends them. Throws on a caller's mistake (bad address). */
export function pushOptions(o: PushReplyOptions): string[] {
  need(isIPv4(o.ifconfig.address) && isIPv4(o.ifconfig.netmask), 'ifconfig');
  const out: string[] = [`topology ${o.topology}`, `ifconfig ${o.ifconfig.address} ${o.ifconfig.netmask}`];
  if (o.ifconfigIpv6) {
    const v6 = o.ifconfigIpv6;
    need(isIPv6(v6.address) && isIPv6(v6.gateway), 'ifconfig-ipv6');
    need(
      Number.isInteger(v6.prefixLength) && v6.prefixLength >= 64 && v6.prefixLength <= 124,
      'ifconfig-ipv6 length',
    );
    out.push(`ifconfig-ipv6 ${v6.address}/${v6.prefixLength} ${v6.gateway}`);
  }
  if (o.routeGateway !== undefined) {
    need(isIPv4(o.routeGateway), 'route-gateway');
    out.push(`route-gateway ${o.routeGateway}`);
  }
  for (const r of o.routes ?? []) {
    need(isIPv4(r.network) && isIPv4(r.netmask) && (r.gateway === undefined || isIPv4(r.gateway)), 'route');
    out.push(
      r.gateway === undefined
        ? `route ${r.network} ${r.netmask}`
        : `route ${r.network} ${r.netmask} ${r.gateway}`,
    );
  }
  for (const p of o.routesIpv6 ?? []) {
    const [addr = '', len = ''] = p.split('/');
    need(isIPv6(addr) && /^[0-9]{1,3}$/.test(len) && Number(len) <= 128, 'route-ipv6');
    out.push(`route-ipv6 ${addr}/${len}`);
  }
  if (o.redirectGateway)
    out.push(o.redirectGateway.ipv6 ? 'redirect-gateway def1 ipv6' : 'redirect-gateway def1');
  for (const server of o.dns ?? []) {
    need(isIPv4(server) || isIPv6(server), 'dhcp-option DNS');
    out.push(isIPv4(server) ? `dhcp-option DNS ${server}` : `dhcp-option DNS6 ${server}`);
  }
  if (o.tunMtu !== undefined) {
    need(Number.isInteger(o.tunMtu) && o.tunMtu >= 576 && o.tunMtu <= 9000, 'tun-mtu');
    out.push(`tun-mtu ${o.tunMtu}`);
  }
  const seconds = (v: number | undefined, what: string): void => {
    if (v !== undefined) need(Number.isInteger(v) && v > 0 && v < 1e6, what);
  };
  seconds(o.ping, 'ping');
  seconds(o.pingRestart, 'ping-restart');
  if (o.ping !== undefined) out.push(`ping ${o.ping}`);
  if (o.pingRestart !== undefined) out.push(`ping-restart ${o.pingRestart}`);
  need(Number.isInteger(o.peerId) && o.peerId >= 0 && o.peerId < 0xffffff, 'peer-id');
  out.push(`peer-id ${o.peerId}`);
  need(TOKEN.test(o.cipher), 'cipher');
  out.push(`cipher ${o.cipher}`);
  if (o.tlsEkm) out.push('key-derivation tls-ekm');
  const flags = [...(o.ccExit ? ['cc-exit'] : []), ...(o.tlsEkm ? ['tls-ekm'] : [])];
  if (flags.length > 0) out.push(`protocol-flags ${flags.join(' ')}`);
  return out;
}

const CONTINUATION_MORE = ',push-continuation 2';
const CONTINUATION_LAST = ',push-continuation 1';

/**
 * The PUSH_REPLY messages (without their NUL), each at most `maxSize` bytes. One message needs no
 * continuation; several carry `push-continuation 2` and the last `push-continuation 1`.
 */
export function buildPushReplies(o: PushReplyOptions, maxSize = PUSH_BUNDLE_SIZE): string[] {
  const options = pushOptions(o);
  const single = `PUSH_REPLY,${options.join(',')}`;
  if (single.length <= maxSize) return [single];
  const room = maxSize - CONTINUATION_MORE.length;
  const messages: string[] = [];
  let current = 'PUSH_REPLY';
  for (const option of options) {
    if ('PUSH_REPLY'.length + 1 + option.length > room)
      throw new RangeError('push: option longer than a message');
    if (current.length + 1 + option.length > room) {
      messages.push(current + CONTINUATION_MORE);
      current = 'PUSH_REPLY';
    }
    current += `,${option}`;
  }
  messages.push(current + CONTINUATION_LAST);
  return messages;
}

/** AUTH_FAILED, with a reason the client shows when given (push.c receive_auth_failed). */
export function authFailedMessage(reason?: string): string {
  if (reason === undefined) return 'AUTH_FAILED';
  return `AUTH_FAILED,${reason.replace(/[\0\n\r]/g, ' ').slice(0, 200)}`;
}

/** What the server may tell a client to end its session (push.c: RESTART reconnects, HALT stops). */
export function restartMessage(): string {
  return 'RESTART';
}
export function haltMessage(): string {
  return 'HALT';
}

/** Control messages from a client, after key-method 2. */
export type ClientMessage =
  | { readonly kind: 'push-request' }
  /** cc-exit: the client is going away (explicit-exit-notify over the control channel). */
  | { readonly kind: 'exit' }
  | { readonly kind: 'other'; readonly text: string };

/** Largest control message kept (TLS_CHANNEL_BUF_SIZE); longer ones are dropped. */
export const MAX_CONTROL_MESSAGE = 2048;

export function parseClientMessage(text: string): ClientMessage {
  if (text === 'PUSH_REQUEST') return { kind: 'push-request' };
  if (text === 'EXIT') return { kind: 'exit' };
  return { kind: 'other', text: text.slice(0, 256) };
}

/**
 * Splits a plaintext stream into NUL-terminated messages; bytes after the last NUL wait for more. A message
 * longer than MAX_CONTROL_MESSAGE is dropped (counted in `oversized`).
 */
export class MessageSplitter {
  private pending: Buffer = Buffer.alloc(0);
  oversized = 0;

  push(bytes: Uint8Array): string[] {
    this.pending = Buffer.concat([this.pending, bytes]);
    const out: string[] = [];
    for (;;) {
      const nul = this.pending.indexOf(0);
      if (nul < 0) break;
      const message = this.pending.subarray(0, nul);
      this.pending = this.pending.subarray(nul + 1);
      if (message.length > MAX_CONTROL_MESSAGE) this.oversized++;
      else if (message.length > 0) out.push(message.toString('latin1'));
    }
    if (this.pending.length > MAX_CONTROL_MESSAGE) {
      this.oversized++;
      this.pending = Buffer.alloc(0);
    }
    return out;
  }
}

/** A message as bytes on the control channel (NUL-terminated). */
export function encodeMessage(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(`${text}\0`, 'latin1'));
}
