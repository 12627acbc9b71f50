/**
 * The people VPN's per-packet check of what a member sends (policy semantics: src/control/policy.ts).
 *
 * For each packet a member's tunnel decrypts:
 *   1. the gateway's own tunnel addresses pass;
 *   2. the member's compiled rules decide (deny first, then allow, then the default);
 *   3. a denied packet that answers a flow let through earlier (toward this member) passes;
 *   4. a passed packet to another member records its flow, so that member's replies pass (step 3);
 *   5. drops are counted per member.
 * Flows are kept in a bounded table; the oldest are evicted first, and idle ones expire.
 */
import type { IpHeader } from '../net/ip-packet.js';
import { PrefixTrie } from '../net/prefix-trie.js';
import type { Prefix } from '../net/ip.js';
import { ICMP4, ICMP6, PROTO_NUMBER, type CompiledRule } from '../control/policy.js';

export interface FirewallMember {
  readonly name: string;
  rules: readonly CompiledRule[];
  /** Its multicast receive rules (policy.ts: direction "receive"); none: it receives no group. */
  receiveRules: readonly CompiledRule[];
  drops: number;
}

/** Protocol and ports of a packet (ports are the ICMP echo identifier for echo messages, else 0). */
interface Transport {
  proto: number;
  sport: number;
  dport: number;
  /** False for non-first fragments and unknown IPv6 extension headers: ports are unknown. */
  known: boolean;
}

const ICMP_ECHO = new Set([0, 8]);
const ICMP6_ECHO = new Set([128, 129]);

function transport(packet: Uint8Array, header: IpHeader): Transport {
  let proto: number;
  let offset: number;
  if (header.family === 4) {
    proto = packet[9]!;
    offset = (packet[0]! & 0x0f) * 4;
    const fragOffset = ((packet[6]! & 0x1f) << 8) | packet[7]!;
    if (fragOffset !== 0) return { proto, sport: 0, dport: 0, known: false };
  } else {
    proto = packet[6]!;
    offset = 40;
  }
  if (proto === 6 || proto === 17) {
    if (header.length < offset + 4) return { proto, sport: 0, dport: 0, known: false };
    return {
      proto,
      sport: (packet[offset]! << 8) | packet[offset + 1]!,
      dport: (packet[offset + 2]! << 8) | packet[offset + 3]!,
      known: true,
    };
  }
  if (proto === ICMP4 || proto === ICMP6) {
    if (header.length < offset + 8) return { proto, sport: 0, dport: 0, known: false };
    const echo = (proto === ICMP4 ? ICMP_ECHO : ICMP6_ECHO).has(packet[offset]!);
    const id = echo ? (packet[offset + 4]! << 8) | packet[offset + 5]! : 0;
    return { proto, sport: id, dport: id, known: true };
  }
  return { proto, sport: 0, dport: 0, known: proto !== 0 && proto !== 43 && proto !== 44 && proto !== 60 };
}

function matches(
  rule: CompiledRule,
  header: IpHeader,
  t: Transport,
  destination = header.destination,
): boolean {
  if (rule.destinations && rule.destinations.lookup(header.family, destination) === undefined) return false;
  switch (rule.proto) {
    case 'any':
      return true;
    case 'icmp':
      return t.proto === (header.family === 4 ? ICMP4 : ICMP6);
    default:
      if (t.proto !== PROTO_NUMBER[rule.proto]) return false;
      if (rule.portFrom === 0 && rule.portTo === 65535) return true;
      return t.known && t.dport >= rule.portFrom && t.dport <= rule.portTo;
  }
}

function hex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += (b < 16 ? '0' : '') + b.toString(16);
  return s;
}

export interface FirewallOptions {
  defaultAllow: boolean;
  /** The gateway's own tunnel addresses as host prefixes. */
  gateway: readonly Prefix[];
  /** Member subnets: flows toward them are remembered for replies. */
  members: readonly Prefix[];
  maxFlows?: number;
  flowIdleMs?: number;
}

export class MemberFirewall {
  readonly counters = { passed: 0, dropped: 0, replies: 0 };
  private gateway = new PrefixTrie<true>();
  private memberNets = new PrefixTrie<true>();
  private defaultAllow = false;
  /** Reply key → expiry (ms). Map order is insertion order, which makes eviction of the oldest cheap. */
  private readonly flows = new Map<string, number>();
  private readonly maxFlows: number;
  private readonly flowIdleMs: number;
  /** permits() is asked once per receiver of the same packet: its transport is read once. */
  private lastPacket: Uint8Array | undefined;
  private lastTransport: Transport = { proto: 0, sport: 0, dport: 0, known: false };

  constructor(options: FirewallOptions) {
    this.maxFlows = options.maxFlows ?? 65536;
    this.flowIdleMs = options.flowIdleMs ?? 180_000;
    this.configure(options);
  }

  /** Takes new settings; the flows already let through are kept. */
  configure(options: Pick<FirewallOptions, 'defaultAllow' | 'gateway' | 'members'>): void {
    this.defaultAllow = options.defaultAllow;
    this.gateway = new PrefixTrie<true>();
    this.memberNets = new PrefixTrie<true>();
    for (const p of options.gateway) this.gateway.insert(p, true);
    for (const p of options.members) this.memberNets.insert(p, true);
  }

  get flowCount(): number {
    return this.flows.size;
  }

  /** Whether a packet the member sent may go on; counts the drop against the member if not. */
  admit(member: FirewallMember, packet: Uint8Array, header: IpHeader, now: number): boolean {
    if (this.gateway.lookup(header.family, header.destination) !== undefined) {
      this.counters.passed++;
      return true;
    }
    const t = transport(packet, header);
    let allow = this.defaultAllow;
    let decided = false;
    for (const rule of member.rules) {
      if (!rule.allow && matches(rule, header, t)) {
        allow = false;
        decided = true;
        break;
      }
    }
    if (!decided) for (const rule of member.rules) if (rule.allow && matches(rule, header, t)) allow = true;
    if (!allow && this.isReply(header, t, now)) {
      this.counters.replies++;
      allow = true;
    } else if (allow && this.memberNets.lookup(header.family, header.destination) !== undefined) {
      this.rememberFlow(header, t, now);
    }
    if (allow) this.counters.passed++;
    else {
      this.counters.dropped++;
      member.drops++;
    }
    return allow;
  }

  /**
   * Whether the member's rules let this packet through as if it were addressed to `destination` (same family
   * as the packet): multicast's check of each receiver, who is the destination's owner. No flow is recorded
   * and nothing is counted (the replicator counts what it refuses).
   */
  permits(member: FirewallMember, packet: Uint8Array, header: IpHeader, destination: Uint8Array): boolean {
    if (this.lastPacket !== packet) {
      this.lastPacket = packet;
      this.lastTransport = transport(packet, header);
    }
    const t = this.lastTransport;
    for (const rule of member.rules) if (!rule.allow && matches(rule, header, t, destination)) return false;
    if (this.defaultAllow) return true;
    for (const rule of member.rules) if (rule.allow && matches(rule, header, t, destination)) return true;
    return false;
  }

  /**
   * Whether the member's receive rules let it have a copy of this packet to a multicast group: a matching deny
   * rule refuses, a matching allow rule admits, and no match refuses (deny by default, whatever the default
   * policy). The group address is the rules' destination; protocol and ports match as for send rules.
   * Nothing is counted here (the replicator counts 'policy-receive'); nothing is allocated per call.
   */
  receives(member: FirewallMember, packet: Uint8Array, header: IpHeader): boolean {
    const rules = member.receiveRules;
    if (rules.length === 0) return false;
    if (this.lastPacket !== packet) {
      this.lastPacket = packet;
      this.lastTransport = transport(packet, header);
    }
    const t = this.lastTransport;
    for (const rule of rules) if (!rule.allow && matches(rule, header, t)) return false;
    for (const rule of rules) if (rule.allow && matches(rule, header, t)) return true;
    return false;
  }

  /**
   * Records the flow of a packet admitted elsewhere (another gateway's firewall, where it entered the overlay)
   * toward a member here, so that member's replies pass (step 3) as they would had it entered here.
   */
  remember(packet: Uint8Array, header: IpHeader, now: number): void {
    if (this.memberNets.lookup(header.family, header.destination) === undefined) return;
    this.rememberFlow(header, transport(packet, header), now);
  }

  private rememberFlow(header: IpHeader, t: Transport, now: number): void {
    // The key the reply will have: its source is our destination.
    const key = `${t.proto}|${hex(header.destination)}|${t.dport}|${hex(header.source)}|${t.sport}`;
    this.flows.delete(key);
    this.flows.set(key, now + this.flowIdleMs);
    while (this.flows.size > this.maxFlows) {
      const oldest = this.flows.keys().next();
      if (oldest.done) break;
      this.flows.delete(oldest.value);
    }
  }

  private isReply(header: IpHeader, t: Transport, now: number): boolean {
    if (!t.known) return false;
    const key = `${t.proto}|${hex(header.source)}|${t.sport}|${hex(header.destination)}|${t.dport}`;
    const expiry = this.flows.get(key);
    if (expiry === undefined) return false;
    if (expiry < now) {
      this.flows.delete(key);
      return false;
    }
    return true;
  }

  /** Drops expired flows; bounded by `budget` entries per call so it never stalls the data plane. */
  expire(now: number, budget = 4096): void {
    let n = 0;
    for (const [key, expiry] of this.flows) {
      if (n++ >= budget) break;
      if (expiry < now) this.flows.delete(key);
    }
  }
}
