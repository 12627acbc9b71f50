/**
 * The gateway's routing table: destination prefixes → tunnels of any kind (a WireGuard interface today;
 * IPsec SAs, OpenVPN clients). Packets read from the TUN device are routed here; packets to multicast groups
 * go to the replicator when one is attached (`groups`); whatever no tunnel owns is dropped and counted, never
 * answered.
 */
import { readIpHeader, type IpHeader } from '../net/ip-packet.js';
import { formatPrefix, type Prefix } from '../net/ip.js';
import { PrefixTrie } from '../net/prefix-trie.js';

export interface Tunnel {
  readonly name: string;
  /**
   * Takes an IP packet addressed to a destination this tunnel owns, with its header as the router read it.
   * What it sends may wait for flush().
   */
  send(packet: Uint8Array, now: number, header: IpHeader): void;
  /** Sends what send() queued: the router calls it once per batch of packets, so a batch leaves together. */
  flush(): void;
}

/** Where the router hands packets to multicast groups (the replicator, with the host as their source). */
export interface GroupTraffic {
  route(packet: Uint8Array, header: IpHeader, now: number): void;
  /** The end of a batch: what route() queued leaves. */
  flush(): void;
}

/** 224.0.0.0/4 or ff00::/8 (RFC 5771, RFC 4291 §2.7). */
function isGroup(header: IpHeader): boolean {
  const d = header.destination;
  return header.family === 4 ? (d[0]! & 0xf0) === 0xe0 : d[0] === 0xff;
}

export class Router {
  readonly counters = { routed: 0, noRoute: 0, malformed: 0, multicast: 0 };
  /** Packets to 224.0.0.0/4 and ff00::/8 go here when set, instead of the prefix table. */
  groups: GroupTraffic | undefined;
  private groupsPending = false;
  private readonly table = new PrefixTrie<Tunnel>();
  private readonly owned = new Map<Tunnel, Map<string, Prefix>>();
  /**
   * Tunnels claiming the same prefix, oldest first; the newest claim is the one in the table. A member
   * connected over two protocols at once is reached over the session it opened last; when that session ends,
   * the route falls back to the one before, without a gap.
   */
  private readonly claims = new Map<string, Tunnel[]>();
  /** Tunnels sent to since the last flush(). */
  private readonly pending: Tunnel[] = [];

  /** Makes `prefixes` the tunnel's complete set of routes (adding and removing the difference). */
  setRoutes(tunnel: Tunnel, prefixes: readonly Prefix[]): void {
    const current = this.owned.get(tunnel) ?? new Map<string, Prefix>();
    const wanted = new Map(prefixes.map((p) => [formatPrefix(p), p]));
    for (const [key, p] of current) if (!wanted.has(key)) this.release(key, p, tunnel);
    for (const [key, p] of wanted) if (!current.has(key)) this.claim(key, p, tunnel);
    this.owned.set(tunnel, wanted);
  }

  removeTunnel(tunnel: Tunnel): void {
    this.setRoutes(tunnel, []);
    this.owned.delete(tunnel);
  }

  /** The tunnels claiming exactly this prefix, oldest first (the last one carries its traffic). */
  claimants(prefix: Prefix): readonly Tunnel[] {
    return this.claims.get(formatPrefix(prefix)) ?? [];
  }

  private claim(key: string, p: Prefix, tunnel: Tunnel): void {
    const list = this.claims.get(key);
    if (list) list.push(tunnel);
    else this.claims.set(key, [tunnel]);
    this.table.insert(p, tunnel);
  }

  private release(key: string, p: Prefix, tunnel: Tunnel): void {
    const list = this.claims.get(key);
    if (!list) return;
    const at = list.lastIndexOf(tunnel);
    if (at < 0) return;
    list.splice(at, 1);
    const next = list[list.length - 1];
    if (next === undefined) {
      this.claims.delete(key);
      this.table.remove(p, tunnel);
    } else if (at === list.length) {
      this.table.insert(p, next);
    }
  }

  lookup(packet: Uint8Array): Tunnel | undefined {
    const header = readIpHeader(packet);
    return header ? this.table.lookup(header.family, header.destination) : undefined;
  }

  /** Routes one packet; returns false (and counts why) when it is dropped. */
  route(packet: Uint8Array, now: number): boolean {
    const header = readIpHeader(packet);
    if (!header) {
      this.counters.malformed++;
      return false;
    }
    const groups = this.groups;
    if (groups !== undefined && isGroup(header)) {
      this.counters.multicast++;
      groups.route(packet, header, now);
      this.groupsPending = true;
      return true;
    }
    const tunnel = this.table.lookup(header.family, header.destination);
    if (!tunnel) {
      this.counters.noRoute++;
      return false;
    }
    this.counters.routed++;
    tunnel.send(packet, now, header);
    const pending = this.pending;
    if (pending[pending.length - 1] !== tunnel && !pending.includes(tunnel)) pending.push(tunnel);
    return true;
  }

  /** Flushes every tunnel routed to since the last call (the end of a batch from the TUN device). */
  flush(): void {
    const pending = this.pending;
    if (this.groupsPending) {
      this.groupsPending = false;
      this.groups?.flush();
    }
    try {
      for (const tunnel of pending) tunnel.flush();
    } finally {
      pending.length = 0;
    }
  }
}
