import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compilePolicy } from '../../src/control/policy.js';
import type { Policy } from '../../src/control/model.js';
import { MemberFirewall, type FirewallMember } from '../../src/gateway/member-firewall.js';
import { readIpHeader } from '../../src/net/ip-packet.js';
import { parseAddress, parsePrefix, type Prefix } from '../../src/net/ip.js';

function bytesOf(text: string): Uint8Array {
  const a = parseAddress(text);
  if (!a.ok) throw new Error(a.error);
  return a.value.bytes;
}

function prefix(text: string): Prefix {
  const p = parsePrefix(text);
  if (!p.ok) throw new Error(p.error);
  return p.value;
}

/** An IPv4 packet with a transport header: TCP/UDP ports, or an ICMP echo with `sport` as identifier. */
function v4(
  src: string,
  dst: string,
  proto: 'tcp' | 'udp' | 'icmp',
  sport: number,
  dport: number,
  type = 8,
): Uint8Array {
  const p = new Uint8Array(20 + 20);
  p[0] = 0x45;
  p[3] = p.length;
  p[8] = 64;
  p[9] = proto === 'tcp' ? 6 : proto === 'udp' ? 17 : 1;
  p.set(bytesOf(src), 12);
  p.set(bytesOf(dst), 16);
  if (proto === 'icmp') {
    p[20] = type;
    p[24] = sport >> 8;
    p[25] = sport & 0xff;
  } else {
    p[20] = sport >> 8;
    p[21] = sport & 0xff;
    p[22] = dport >> 8;
    p[23] = dport & 0xff;
  }
  return p;
}

function v6(src: string, dst: string, proto: 'tcp' | 'udp', sport: number, dport: number): Uint8Array {
  const p = new Uint8Array(40 + 20);
  p[0] = 0x60;
  p[5] = 20;
  p[6] = proto === 'tcp' ? 6 : 17;
  p[7] = 64;
  p.set(bytesOf(src), 8);
  p.set(bytesOf(dst), 24);
  p[40] = sport >> 8;
  p[41] = sport & 0xff;
  p[42] = dport >> 8;
  p[43] = dport & 0xff;
  return p;
}

let nextId = 1;
function policy(
  action: 'allow' | 'deny',
  group: string,
  destination: string,
  proto: Policy['proto'] = 'any',
  ports: [number, number] | null = null,
  direction: Policy['direction'] = 'send',
): Policy {
  return {
    id: nextId++,
    action,
    group,
    destination,
    proto,
    ports: ports ? { from: ports[0], to: ports[1] } : null,
    direction,
  };
}

const GROUPS: Record<string, string[]> = {
  eng: ['10.66.0.10', '10.66.0.11', 'fd66::a'],
  sales: ['10.66.0.20'],
};

function setup(
  defaultPolicy: 'allow' | 'deny',
  policies: Policy[],
): {
  fw: MemberFirewall;
  member: (name: string, groups: string[]) => FirewallMember;
} {
  const compiled = compilePolicy(defaultPolicy, policies, (g) => GROUPS[g] ?? []);
  const fw = new MemberFirewall({
    defaultAllow: defaultPolicy === 'allow',
    gateway: [prefix('10.66.0.1/32'), prefix('fd66::1/128')],
    members: [prefix('10.66.0.0/24'), prefix('fd66::/64')],
  });
  return {
    fw,
    member: (name, groups) => ({
      name,
      rules: compiled.rulesFor(groups),
      receiveRules: compiled.receiveRulesFor(groups),
      drops: 0,
    }),
  };
}

function admit(fw: MemberFirewall, m: FirewallMember, packet: Uint8Array, now = 1000): boolean {
  const h = readIpHeader(packet);
  assert.ok(h);
  return fw.admit(m, packet, h, now);
}

test('default deny: only what an allow rule reaches passes; the gateway address always does', () => {
  const { fw, member } = setup('deny', [policy('allow', 'eng', '10.20.0.0/24')]);
  const alice = member('alice', ['eng']);
  const bob = member('bob', ['sales']);
  assert.equal(admit(fw, alice, v4('10.66.0.10', '10.20.0.10', 'tcp', 40000, 22)), true);
  assert.equal(admit(fw, alice, v4('10.66.0.10', '10.21.0.10', 'tcp', 40000, 22)), false);
  assert.equal(admit(fw, bob, v4('10.66.0.20', '10.20.0.10', 'icmp', 7, 7)), false);
  assert.equal(admit(fw, bob, v4('10.66.0.20', '10.66.0.1', 'icmp', 7, 7)), true);
  assert.equal(alice.drops, 1);
  assert.equal(bob.drops, 1);
  assert.deepEqual(fw.counters, { passed: 2, dropped: 2, replies: 0 });
});

test('deny rules win over allow rules, and default allow lets the rest through', () => {
  const { fw, member } = setup('allow', [
    policy('allow', 'eng', 'any'),
    policy('deny', 'eng', '10.20.0.0/24', 'tcp', [22, 22]),
    policy('deny', '*', '192.0.2.0/24'),
  ]);
  const alice = member('alice', ['eng']);
  const other = member('zed', []);
  assert.equal(admit(fw, alice, v4('10.66.0.10', '10.20.0.10', 'tcp', 40000, 22)), false);
  assert.equal(admit(fw, alice, v4('10.66.0.10', '10.20.0.10', 'tcp', 40000, 443)), true);
  assert.equal(admit(fw, alice, v4('10.66.0.10', '10.20.0.10', 'udp', 40000, 22)), true);
  assert.equal(admit(fw, other, v4('10.66.0.30', '192.0.2.5', 'udp', 1, 53)), false);
  assert.equal(admit(fw, other, v4('10.66.0.30', '198.51.100.5', 'udp', 1, 53)), true);
});

test('protocol and port ranges', () => {
  const { fw, member } = setup('deny', [
    policy('allow', 'eng', '10.20.0.0/16', 'tcp', [8000, 8099]),
    policy('allow', 'eng', '10.30.0.0/16', 'icmp'),
    policy('allow', 'eng', 'fd20::/64', 'udp', [53, 53]),
  ]);
  const a = member('alice', ['eng']);
  assert.equal(admit(fw, a, v4('10.66.0.10', '10.20.1.1', 'tcp', 1, 8000)), true);
  assert.equal(admit(fw, a, v4('10.66.0.10', '10.20.1.1', 'tcp', 1, 8099)), true);
  assert.equal(admit(fw, a, v4('10.66.0.10', '10.20.1.1', 'tcp', 1, 8100)), false);
  assert.equal(admit(fw, a, v4('10.66.0.10', '10.20.1.1', 'udp', 1, 8000)), false);
  assert.equal(admit(fw, a, v4('10.66.0.10', '10.30.1.1', 'icmp', 1, 1)), true);
  assert.equal(admit(fw, a, v4('10.66.0.10', '10.30.1.1', 'tcp', 1, 80)), false);
  assert.equal(admit(fw, a, v6('fd66::a', 'fd20::35', 'udp', 5353, 53)), true);
  assert.equal(admit(fw, a, v6('fd66::a', 'fd20::35', 'udp', 5353, 54)), false);
});

test('member to member: a group destination, and replies to an allowed flow pass back', () => {
  const { fw, member } = setup('deny', [policy('allow', 'sales', 'group:eng', 'tcp', [443, 443])]);
  const alice = member('alice', ['eng']);
  const bob = member('bob', ['sales']);
  // Alice may not start anything toward Bob.
  assert.equal(admit(fw, alice, v4('10.66.0.10', '10.66.0.20', 'tcp', 443, 50000)), false);
  // Bob opens a connection to Alice's port 443; her replies then pass.
  assert.equal(admit(fw, bob, v4('10.66.0.20', '10.66.0.10', 'tcp', 50000, 443)), true);
  assert.equal(admit(fw, alice, v4('10.66.0.10', '10.66.0.20', 'tcp', 443, 50000)), true);
  assert.equal(fw.counters.replies, 1);
  // Not to another port of Bob's, and not from another member.
  assert.equal(admit(fw, alice, v4('10.66.0.10', '10.66.0.20', 'tcp', 443, 50001)), false);
  assert.equal(admit(fw, member('carol', ['eng']), v4('10.66.0.11', '10.66.0.20', 'tcp', 443, 50000)), false);
  // Bob to a non-eng member is refused.
  assert.equal(admit(fw, bob, v4('10.66.0.20', '10.66.0.30', 'tcp', 50000, 443)), false);
});

test('ICMP echo replies follow an allowed echo request', () => {
  const { fw, member } = setup('deny', [policy('allow', 'eng', 'group:eng', 'icmp')]);
  const alice = member('alice', ['eng']);
  const bob = member('bob', ['sales']);
  assert.equal(admit(fw, bob, v4('10.66.0.20', '10.66.0.10', 'icmp', 99, 99)), false);
  assert.equal(admit(fw, alice, v4('10.66.0.10', '10.66.0.20', 'icmp', 99, 99)), false);
  // Alice can reach other eng members; Bob's reply to an echo Alice never sent him does not pass.
  assert.equal(admit(fw, alice, v4('10.66.0.10', '10.66.0.11', 'icmp', 5, 5)), true);
  assert.equal(admit(fw, member('carol', ['eng']), v4('10.66.0.11', '10.66.0.10', 'icmp', 5, 5, 0)), true);
});

test('flows expire when idle and the table stays bounded', () => {
  const compiled = compilePolicy('deny', [policy('allow', 'sales', 'group:eng')], (g) => GROUPS[g] ?? []);
  const fw = new MemberFirewall({
    defaultAllow: false,
    gateway: [prefix('10.66.0.1/32')],
    members: [prefix('10.66.0.0/24')],
    maxFlows: 100,
    flowIdleMs: 10_000,
  });
  const bob: FirewallMember = {
    name: 'bob',
    rules: compiled.rulesFor(['sales']),
    receiveRules: [],
    drops: 0,
  };
  const alice: FirewallMember = {
    name: 'alice',
    rules: compiled.rulesFor(['eng']),
    receiveRules: [],
    drops: 0,
  };
  for (let port = 1; port <= 500; port++)
    admit(fw, bob, v4('10.66.0.20', '10.66.0.10', 'udp', port, 53), 1000);
  assert.equal(fw.flowCount, 100);
  // The newest flows are kept, the oldest evicted.
  assert.equal(admit(fw, alice, v4('10.66.0.10', '10.66.0.20', 'udp', 53, 500), 2000), true);
  assert.equal(admit(fw, alice, v4('10.66.0.10', '10.66.0.20', 'udp', 53, 1), 2000), false);
  // After the idle time the reply no longer passes.
  assert.equal(admit(fw, alice, v4('10.66.0.10', '10.66.0.20', 'udp', 53, 499), 20_000), false);
  fw.expire(20_000);
  assert.equal(fw.flowCount, 0);
});

test('malformed transport headers and fragments do not match port rules', () => {
  const { fw, member } = setup('deny', [policy('allow', 'eng', '10.20.0.0/24', 'tcp', [80, 80])]);
  const a = member('alice', ['eng']);
  const short = v4('10.66.0.10', '10.20.0.1', 'tcp', 1, 80).subarray(0, 22);
  short[3] = 22;
  assert.equal(admit(fw, a, short), false);
  const frag = v4('10.66.0.10', '10.20.0.1', 'tcp', 1, 80);
  frag[7] = 10; // fragment offset ≠ 0: the bytes at the transport offset are not a header
  assert.equal(admit(fw, a, frag), false);
});

test('a flow admitted at another gateway (the mesh) lets the member here reply, only toward member nets', () => {
  // carol may send nothing to other members; dave, on another gateway, pings her.
  const { fw, member } = setup('allow', [policy('deny', 'locked', '10.66.0.0/24')]);
  const carol = member('carol', ['locked']);
  const reply = v4('10.66.0.30', '10.66.0.40', 'icmp', 9, 9, 0);
  assert.equal(admit(fw, carol, reply), false, 'no flow yet: her reply is denied');
  const request = v4('10.66.0.40', '10.66.0.30', 'icmp', 9, 9, 8);
  const h = readIpHeader(request);
  assert.ok(h);
  fw.remember(request, h, 1000);
  assert.equal(admit(fw, carol, reply), true, 'the reply to the mesh flow passes');
  assert.equal(admit(fw, carol, v4('10.66.0.30', '10.66.0.41', 'icmp', 9, 9, 0)), false);
  // A packet to an address outside the member nets records nothing.
  const outside = v4('10.66.0.40', '10.99.0.1', 'udp', 5000, 53);
  const ho = readIpHeader(outside);
  assert.ok(ho);
  fw.remember(outside, ho, 1000);
  assert.equal(fw.flowCount, 1);
});

function receives(fw: MemberFirewall, m: FirewallMember, packet: Uint8Array): boolean {
  const h = readIpHeader(packet);
  assert.ok(h);
  return fw.receives(m, packet, h);
}

test('receive rules: only a matching allow rule of the receiver’s groups admits a copy; deny wins; no default', () => {
  const rules = [
    policy('allow', 'eng', '239.1.0.0/16', 'any', null, 'receive'),
    policy('deny', 'eng', '239.1.9.0/24', 'any', null, 'receive'),
    policy('allow', 'sales', '224.0.0.251/32', 'udp', [5353, 5353], 'receive'),
    policy('allow', 'eng', 'ff15::/16', 'any', null, 'receive'),
    // A send rule to a group range lets nobody receive it.
    policy('allow', 'sales', '239.2.0.0/16'),
  ];
  // The default policy does not decide receiving, even when it is allow.
  for (const defaultPolicy of ['deny', 'allow'] as const) {
    const { fw, member } = setup(defaultPolicy, rules);
    const alice = member('alice', ['eng']);
    const bob = member('bob', ['sales']);
    const nobody = member('carol', []);
    assert.equal(receives(fw, alice, v4('10.66.0.20', '239.1.1.1', 'udp', 5000, 5000)), true);
    assert.equal(receives(fw, alice, v4('10.66.0.20', '239.1.9.1', 'udp', 5000, 5000)), false, 'deny wins');
    assert.equal(receives(fw, alice, v4('10.66.0.20', '239.3.0.1', 'udp', 5000, 5000)), false);
    assert.equal(receives(fw, alice, v6('fd66::14', 'ff15::1:1', 'udp', 5000, 5000)), true);
    assert.equal(receives(fw, bob, v4('10.66.0.10', '224.0.0.251', 'udp', 5353, 5353)), true);
    assert.equal(receives(fw, bob, v4('10.66.0.10', '224.0.0.251', 'udp', 5353, 5354)), false, 'port');
    assert.equal(receives(fw, bob, v4('10.66.0.10', '224.0.0.251', 'tcp', 5353, 5353)), false, 'proto');
    assert.equal(receives(fw, bob, v4('10.66.0.10', '239.2.0.1', 'udp', 5000, 5000)), false, 'send rule');
    assert.equal(receives(fw, nobody, v4('10.66.0.10', '239.1.1.1', 'udp', 5000, 5000)), false);
    // Receive rules are not send rules: sending to the group range follows the send rules alone.
    assert.equal(
      admit(fw, alice, v4('10.66.0.10', '239.1.1.1', 'udp', 5000, 5000)),
      defaultPolicy === 'allow',
    );
    assert.equal(admit(fw, bob, v4('10.66.0.20', '239.2.0.1', 'udp', 5000, 5000)), true);
    assert.equal(fw.counters.dropped, defaultPolicy === 'allow' ? 0 : 1, 'receiving counts nothing here');
  }
});

test('compile: receive rules apart from send rules, per group set, "*" for everyone', () => {
  const compiled = compilePolicy(
    'deny',
    [
      policy('allow', '*', 'any', 'any', null, 'receive'),
      policy('allow', 'eng', '10.20.0.0/24'),
      policy('deny', 'eng', '239.9.0.0/16', 'any', null, 'receive'),
    ],
    (g) => GROUPS[g] ?? [],
  );
  assert.equal(compiled.rulesFor(['eng']).length, 1);
  assert.equal(compiled.receiveRulesFor(['eng']).length, 2);
  assert.equal(compiled.receiveRulesFor(['sales']).length, 1);
  assert.equal(compiled.receiveRulesFor([]).length, 1);
  assert.equal(compiled.rulesFor([]).length, 0);
  assert.equal(compiled.receiveRulesFor(['eng']), compiled.receiveRulesFor(['eng']), 'shared, not rebuilt');
  assert.deepEqual([...compiled.destinationGroups], []);
});
