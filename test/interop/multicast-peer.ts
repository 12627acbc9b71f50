/**
 * The multicast probe the interop test runs in each member namespace: a small Python program (python3 is a
 * setup package) that joins and leaves groups with real sockets (IP_ADD_MEMBERSHIP / IP_DROP_MEMBERSHIP, or
 * IPV6_JOIN_GROUP / IPV6_LEAVE_GROUP for a group with a colon, on the tunnel interface, so the kernel sends real
 * IGMP or MLD), sends datagrams, and reports, as JSON lines (`ttl` is the hop limit for IPv6):
 *   {"ev":"rx", group, port, ttl, data, t}   a datagram a joined socket received (TTL from IP_RECVTTL);
 *   {"ev":"wire", dst, ttl, dport, data, t}  an IPv4/UDP packet that arrived on the interface (AF_PACKET), joined
 *                                            or not: what the gateway delivered to this member;
 *   {"ev":"sent-wire", ...}                  the same for a packet this member sent (the TTL it left with);
 *   {"ev":"joined"|"left"|"sent", t}          acknowledgements of commands.
 * Commands (one JSON object per line on stdin): join / leave {group}; send {group, port, ttl, count,
 * intervalMs, tag} (datagram i carries "tag:i"). It exits after `lifetime` seconds at most, or on stdin EOF.
 */
import type { Netns } from './harness.js';
import { JsonLinesProcess } from './harness.js';

export const PEER_SCRIPT = String.raw`
import json, select, socket, struct, sys, time
IP_RECVTTL, IP_TTL = 12, 2  # linux/in.h
IPV6_RECVHOPLIMIT, IPV6_HOPLIMIT = 51, 52  # linux/in6.h
ifname, ifaddr, port, lifetime = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
ports = [port] + [int(p) for p in sys.argv[5:]]
def out(ev, **kw):
    kw['ev'] = ev; kw['t'] = time.time() * 1000
    sys.stdout.write(json.dumps(kw) + '\n'); sys.stdout.flush()
rx = []
for p in ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('', p))
    s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    rx.append((s, p))
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s6.bind(('::', p))
    s6.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
    rx.append((s6, p))
main = rx[0][0]
main6 = rx[1][0]
ifindex = socket.if_nametoindex(ifname)
wire = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))
wire.bind((ifname, 0))
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# struct ip_mreqn (group, address, ifindex): the interface by index, the source by address, so an address that
# is not on the interface (a LAN address sent into an IPsec TUN device) still picks the interface.
tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, struct.pack('4s4si', bytes(4), socket.inet_aton(ifaddr), ifindex))
tx6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
tx6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
deadline = time.time() + lifetime
out('ready')
while time.time() < deadline:
    r, _, _ = select.select([sys.stdin, wire] + [s for s, _ in rx], [], [], 0.2)
    for f in r:
        if f is sys.stdin:
            line = sys.stdin.readline()
            if not line:
                sys.exit(0)
            c = json.loads(line)
            v6 = ':' in c.get('group', '')
            if c['cmd'] in ('join', 'leave') and v6:
                mreq = socket.inet_pton(socket.AF_INET6, c['group']) + struct.pack('@I', ifindex)
                opt = socket.IPV6_JOIN_GROUP if c['cmd'] == 'join' else socket.IPV6_LEAVE_GROUP
                main6.setsockopt(socket.IPPROTO_IPV6, opt, mreq)
                out('joined' if c['cmd'] == 'join' else 'left', group=c['group'], id=c['id'])
            elif c['cmd'] in ('join', 'leave'):
                mreq = struct.pack('4s4si', socket.inet_aton(c['group']), socket.inet_aton(ifaddr), ifindex)
                opt = socket.IP_ADD_MEMBERSHIP if c['cmd'] == 'join' else socket.IP_DROP_MEMBERSHIP
                main.setsockopt(socket.IPPROTO_IP, opt, mreq)
                out('joined' if c['cmd'] == 'join' else 'left', group=c['group'], id=c['id'])
            elif c['cmd'] == 'send' and v6:
                tx6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, c['ttl'])
                # A scoped address (fe80::1%wg0): its zone goes into sin6_scope_id, which a 2-tuple leaves at 0.
                dest = socket.getaddrinfo(c['group'], c['port'], socket.AF_INET6, socket.SOCK_DGRAM)[0][4]
                for i in range(c['count']):
                    tx6.sendto(('%s:%d' % (c['tag'], i)).encode(), dest)
                    time.sleep(c['intervalMs'] / 1000.0)
                out('sent', tag=c['tag'], id=c['id'])
            elif c['cmd'] == 'send':
                tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, c['ttl'])
                # Linux sometimes sends to a routed group through a unicast route (wg-quick's 224.0.0.0/4) with
                # the unicast TTL: set both, so that the TTL sent is the one asked for.
                tx.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, c['ttl'])
                for i in range(c['count']):
                    tx.sendto(('%s:%d' % (c['tag'], i)).encode(), (c['group'], c['port']))
                    time.sleep(c['intervalMs'] / 1000.0)
                out('sent', tag=c['tag'], id=c['id'])
        elif f is wire:
            pkt, addr = f.recvfrom(65535)
            if len(pkt) >= 48 and pkt[0] >> 4 == 6 and pkt[6] == 17:
                dport = struct.unpack('!H', pkt[42:44])[0]
                if dport in ports:
                    out('wire' if addr[2] != 4 else 'sent-wire', dst=socket.inet_ntop(socket.AF_INET6, pkt[24:40]),
                        ttl=pkt[7], dport=dport, data=pkt[48:].decode('latin-1'))
                continue
            if len(pkt) < 28 or pkt[0] >> 4 != 4 or pkt[9] != 17:
                continue
            ihl = (pkt[0] & 15) * 4
            dport = struct.unpack('!H', pkt[ihl + 2:ihl + 4])[0]
            if dport not in ports:
                continue
            out('wire' if addr[2] != 4 else 'sent-wire', dst=socket.inet_ntoa(pkt[16:20]), ttl=pkt[8], dport=dport,
                data=pkt[ihl + 8:].decode('latin-1'))
        else:
            data, anc, _, src = f.recvmsg(2048, 64)
            ttl = -1
            for level, kind, value in anc:
                if (level, kind) in ((socket.IPPROTO_IP, IP_TTL), (socket.IPPROTO_IPV6, IPV6_HOPLIMIT)):
                    ttl = struct.unpack('i', value[:4])[0] if len(value) >= 4 else value[0]
            out('rx', port=[p for s, p in rx if s is f][0], ttl=ttl, src=src[0], data=data.decode('latin-1'))
`;

export type PeerEvent =
  | { ev: 'ready' | 'sent' | 'error'; t: number; tag?: string; id?: number }
  | { ev: 'joined' | 'left'; t: number; group: string; id: number }
  | { ev: 'rx'; t: number; port: number; ttl: number; src: string; data: string }
  | { ev: 'wire'; t: number; dst: string; ttl: number; dport: number; data: string }
  | { ev: 'sent-wire'; t: number; dst: string; ttl: number; dport: number; data: string };

export class MulticastPeer extends JsonLinesProcess<PeerEvent> {
  private nextId = 1;

  static async start(
    ns: Netns,
    ifname: string,
    ifaddr: string,
    ports: readonly number[],
    lifetimeS: number,
  ): Promise<MulticastPeer> {
    const proc = ns.spawn('python3', [
      '-u',
      '-c',
      PEER_SCRIPT,
      ifname,
      ifaddr,
      ...[ports[0]!, lifetimeS, ...ports.slice(1)].map(String),
    ]);
    const peer = new MulticastPeer(proc);
    await peer.next('ready', 0, 10_000);
    return peer;
  }

  /** Sends a command and waits for its acknowledgement (matched by id: old output may have scrolled away). */
  private do(cmd: Record<string, unknown>, timeoutMs = 5_000): Promise<PeerEvent> {
    const id = this.nextId++;
    this.command({ ...cmd, id });
    return this.waitFor(`${String(cmd['cmd'])} #${id}`, (e) => 'id' in e && e.id === id, timeoutMs);
  }

  join(group: string): Promise<PeerEvent> {
    return this.do({ cmd: 'join', group });
  }

  leave(group: string): Promise<PeerEvent> {
    return this.do({ cmd: 'leave', group });
  }

  /** Sends `count` datagrams "tag:i" to group:port and waits until they are out. */
  send(
    group: string,
    port: number,
    ttl: number,
    count: number,
    intervalMs: number,
    tag: string,
  ): Promise<PeerEvent> {
    return this.do({ cmd: 'send', group, port, ttl, count, intervalMs, tag }, 5_000 + count * intervalMs * 2);
  }

  /** Datagrams with this tag that reached the interface (`wire`) or a joined socket (`rx`). */
  tagged<K extends 'wire' | 'sent-wire' | 'rx'>(ev: K, tag: string): Extract<PeerEvent, { ev: K }>[] {
    return this.events().filter(
      (e): e is Extract<PeerEvent, { ev: K }> => e.ev === ev && 'data' in e && e.data.startsWith(`${tag}:`),
    );
  }
}
