/**
 * UdpBind: the Bind over node:dgram. One dual-stack socket ([::]:port, IPv4 as v4-mapped addresses), so a
 * single port serves IPv4 and IPv6 peers as wireguard-go's does; falls back to IPv4 only where the host has
 * no IPv6. Endpoints are reported and taken in plain form (1.2.3.4, not ::ffff:1.2.3.4).
 *
 * node:dgram gives neither a datagram's local address nor a way to choose the source of a send (no
 * IP_PKTINFO), so this bind leaves Endpoint.local unset and answers from the kernel's choice of source: on a
 * host with several addresses, a peer that wrote to one may be answered from another, which its NAT or
 * stateful firewall drops. LinuxUdpBind answers from the address the peer wrote to.
 */
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import type { Endpoint } from '../net/endpoint.js';
import type { Bind, Datagram } from './bind.js';

const MAPPED = '::ffff:';

function plain(address: string): string {
  return address.startsWith(MAPPED) && address.includes('.') ? address.slice(MAPPED.length) : address;
}

export class UdpBind implements Bind {
  /** Datagrams the kernel refused to send (no route, message too long, ...). */
  sendErrors = 0;

  private constructor(
    private readonly socket: Socket,
    private readonly dualStack: boolean,
  ) {}

  /** Binds `port` (0 = any) on all addresses. */
  static async open(port: number, address?: string): Promise<UdpBind> {
    const attempts: { type: 'udp6' | 'udp4'; address: string }[] = address
      ? [{ type: address.includes(':') ? 'udp6' : 'udp4', address }]
      : [
          { type: 'udp6', address: '::' },
          { type: 'udp4', address: '0.0.0.0' },
        ];
    let lastError: unknown;
    for (const a of attempts) {
      const socket = createSocket({ type: a.type, ipv6Only: false, reuseAddr: false });
      try {
        socket.bind(port, a.address);
        await Promise.race([
          once(socket, 'listening'),
          once(socket, 'error').then(([e]) => {
            throw e;
          }),
        ]);
        socket.setRecvBufferSize(4 << 20);
        socket.setSendBufferSize(4 << 20);
        return new UdpBind(socket, a.type === 'udp6' && !address);
      } catch (e) {
        lastError = e;
        socket.close();
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL') break;
      }
    }
    throw new Error(`cannot bind UDP port ${port}: ${(lastError as Error).message}`);
  }

  get port(): number {
    return this.socket.address().port;
  }

  start(onDatagrams: (datagrams: readonly Datagram[]) => void): void {
    this.socket.on('message', (msg, rinfo) => {
      const endpoint: Endpoint = { address: plain(rinfo.address), port: rinfo.port };
      onDatagrams([{ data: new Uint8Array(msg.buffer, msg.byteOffset, msg.length), endpoint }]);
    });
    this.socket.on('error', () => {
      this.sendErrors++;
    });
  }

  send(datagrams: readonly Datagram[]): void {
    for (const d of datagrams) {
      const v4 = !d.endpoint.address.includes(':');
      const address = this.dualStack && v4 ? MAPPED + d.endpoint.address : d.endpoint.address;
      this.socket.send(d.data, d.endpoint.port, address, (err) => {
        if (err) this.sendErrors++;
      });
    }
  }

  private closed: Promise<void> | undefined;

  close(): Promise<void> {
    this.closed ??= new Promise<void>((resolve) => this.socket.close(() => resolve()));
    return this.closed;
  }
}
