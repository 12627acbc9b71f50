/**
 * Compiles the operator's policies into the rules the gateway's member firewall evaluates per packet.
 *
 * Semantics (documented in the README):
 *   1. Only rules whose group is one of the member's groups, or "*", apply to that member's packets.
 *   2. If any applicable deny rule matches, the packet is dropped; otherwise, if any applicable allow rule
 *      matches, it passes; otherwise the network's default policy decides.
 *   3. Traffic to the gateway's own tunnel addresses always passes (it is the member's next hop).
 *   4. Replies to a flow the firewall let through pass as well (member-firewall.ts keeps the flows).
 * Receive rules (direction "receive") are apart: they decide which multicast groups a member (or a site) may
 * receive copies of, with the group address as the rule's destination; deny first, then allow, and otherwise
 * no copy, whatever the default policy (member-firewall.ts `receives`). They never apply to what is sent.
 */
import { parsePrefix, type Prefix } from '../net/ip.js';
import { PrefixTrie } from '../net/prefix-trie.js';
import type { Policy, PolicyAction, Proto } from './model.js';

export const PROTO_NUMBER: Record<Exclude<Proto, 'any' | 'icmp'>, number> = { tcp: 6, udp: 17 };
/** ICMP is protocol 1 in IPv4 and 58 (ICMPv6) in IPv6; "icmp" matches both. */
export const ICMP4 = 1;
export const ICMP6 = 58;

export interface CompiledRule {
  readonly id: number;
  readonly allow: boolean;
  /** Destinations; undefined for "any". */
  readonly destinations: PrefixTrie<true> | undefined;
  readonly proto: Proto;
  readonly portFrom: number;
  readonly portTo: number;
}

export interface MemberAddresses {
  readonly addresses: readonly string[];
  readonly groups: readonly string[];
}

export interface CompiledPolicy {
  readonly defaultAllow: boolean;
  /** Groups some rule has as its destination: their membership is part of the compiled policy. */
  readonly destinationGroups: ReadonlySet<string>;
  /** The send rules for a member with these groups, shared between members with the same groups. */
  rulesFor(groups: readonly string[]): readonly CompiledRule[];
  /** The receive rules (multicast) for a member or site with these groups, shared likewise. */
  receiveRulesFor(groups: readonly string[]): readonly CompiledRule[];
  /** Moves one member's addresses in the group destinations (it was added, removed, or changed groups). */
  memberChanged(before: MemberAddresses | undefined, after: MemberAddresses | undefined): void;
}

function prefixOf(text: string): Prefix | undefined {
  const r = parsePrefix(text);
  return r.ok ? r.value : undefined;
}

/**
 * @param groupAddresses the tunnel addresses ("10.66.0.10", "fd66::a") of a group's members
 */
export function compilePolicy(
  defaultPolicy: PolicyAction,
  policies: readonly Policy[],
  groupAddresses: (group: string) => readonly string[],
): CompiledPolicy {
  const compiled = policies.map(
    (p): { group: string; receive: boolean; destinationGroup: string | null; rule: CompiledRule } => {
      let destinations: PrefixTrie<true> | undefined;
      if (p.destination !== 'any') {
        destinations = new PrefixTrie<true>();
        const texts = p.destination.startsWith('group:')
          ? groupAddresses(p.destination.slice(6))
          : [p.destination];
        for (const t of texts) {
          const prefix = prefixOf(t);
          if (prefix) destinations.insert(prefix, true);
        }
      }
      return {
        group: p.group,
        receive: p.direction === 'receive',
        destinationGroup: p.destination.startsWith('group:') ? p.destination.slice(6) : null,
        rule: {
          id: p.id,
          allow: p.action === 'allow',
          destinations,
          proto: p.proto,
          portFrom: p.ports?.from ?? 0,
          portTo: p.ports?.to ?? 65535,
        },
      };
    },
  );
  const cache = new Map<string, readonly CompiledRule[]>();
  const receiveCache = new Map<string, readonly CompiledRule[]>();
  const send = compiled.filter((c) => !c.receive);
  const receive = compiled.filter((c) => c.receive);
  const byDestinationGroup = send.filter((c) => c.destinationGroup !== null);
  const select = (
    from: typeof compiled,
    memo: Map<string, readonly CompiledRule[]>,
    groups: readonly string[],
  ): readonly CompiledRule[] => {
    const key = groups.join('\n');
    let rules = memo.get(key);
    if (!rules) {
      rules = from.filter((c) => c.group === '*' || groups.includes(c.group)).map((c) => c.rule);
      memo.set(key, rules);
    }
    return rules;
  };
  return {
    defaultAllow: defaultPolicy === 'allow',
    destinationGroups: new Set(byDestinationGroup.map((c) => c.destinationGroup!)),
    memberChanged(before, after) {
      for (const c of byDestinationGroup) {
        const trie = c.rule.destinations!;
        const group = c.destinationGroup!;
        if (before?.groups.includes(group))
          for (const t of before.addresses) {
            const p = prefixOf(t);
            if (p) trie.remove(p, true);
          }
        if (after?.groups.includes(group))
          for (const t of after.addresses) {
            const p = prefixOf(t);
            if (p) trie.insert(p, true);
          }
      }
    },
    rulesFor(groups) {
      return select(send, cache, groups);
    },
    receiveRulesFor(groups) {
      return select(receive, receiveCache, groups);
    },
  };
}
