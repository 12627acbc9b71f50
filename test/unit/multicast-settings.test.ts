/**
 * Multicast settings: the querier's timers (validation naming the field, the querier using them on a simulated
 * clock, live changes) and static memberships (control plane, state file, and MulticastMembers keeping them
 * applied to IPsec site ports as they come and go); a site's multicast ranges (validation, spec, remote config).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ControlPlane } from '../../src/control/control-plane.js';
import { WeftError } from '../../src/control/errors.js';
import { applyState, exportState } from '../../src/control/desired-state.js';
import {
  MULTICAST_QUERIER_DEFAULTS,
  multicastQuerierSettings,
  multicastStatic,
  querierConfigFrom,
} from '../../src/control/multicast-settings.js';
import { Replicator, type MulticastPort } from '../../src/gateway/multicast.js';
import { IpsecSite, type SiteGroupTap } from '../../src/gateway/ipsec-site.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { EspPort } from '../../src/gateway/esp-port.js';
import { MemoryNetwork, MemoryTun } from '../../src/io/memory.js';
import { echo, readEcho } from '../../src/net/icmp.js';
import { formatAddress, parsePrefix } from '../../src/net/ip.js';
import { mirrorSpecs, selector } from '../support/esp-specs.js';
import type { WireGuardInterface } from '../../src/gateway/wireguard-interface.js';
import { Querier } from '../../src/multicast/querier.js';
import { buildReport, buildV1V2, parseMembership } from '../../src/multicast/messages.js';
import { CHANGE_TO_EXCLUDE, CHANGE_TO_INCLUDE, MODE_IS_EXCLUDE } from '../../src/multicast/constants.js';
import { compileSelectors, selectorsAdmit } from '../../src/ipsec/esp-selectors.js';
import { selectorFromPrefix } from '../../src/ipsec/traffic-selectors.js';
import { siteGroupSelectors, siteQueryFamilies } from '../../src/multicast/site-selectors.js';
import { readIpHeader, type IpHeader } from '../../src/net/ip-packet.js';
import { MulticastMembers } from '../../src/server/multicast-members.js';
import { MemoryStore, openMemoryStore } from '../support/memory-store.js';
import { buildApi } from '../../src/api/server.js';

function plane(): ControlPlane {
  const store = openMemoryStore();
  ControlPlane.init(store, { endpoint: '203.0.113.1', subnet: '10.66.0.0/24' });
  const cp = new ControlPlane(store, () => new Date('2026-01-01T00:00:00.000Z'));
  cp.addGroup('test', { name: 'eng' });
  return cp;
}

/** The field a validation error names (WeftError.field), or the error. */
function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof WeftError) return `${e.field ?? ''}: ${e.message}`;
    throw e;
  }
  assert.fail('no error');
}

test('querier timers: defaults, partial changes over the current values, errors name the field', () => {
  const D = MULTICAST_QUERIER_DEFAULTS;
  assert.deepEqual(D, {
    robustness: 2,
    queryIntervalS: 125,
    queryResponseIntervalS: 10,
    lastMemberQueryIntervalS: 1,
  });
  assert.deepEqual(multicastQuerierSettings('q', { robustness: 3, lastMemberQueryIntervalS: 0.5 }, D), {
    ...D,
    robustness: 3,
    lastMemberQueryIntervalS: 0.5,
  });
  assert.equal(multicastQuerierSettings('q', null, D), D);
  const cases: [unknown, RegExp][] = [
    [{ robustness: 0 }, /^q\.robustness: .*1 to 7/],
    [{ robustness: 8 }, /^q\.robustness: /],
    [{ robustness: 2.5 }, /^q\.robustness: /],
    [{ queryIntervalS: 0 }, /^q\.queryIntervalS: /],
    [{ queryIntervalS: 40_000 }, /^q\.queryIntervalS: .*31744/],
    [{ queryResponseIntervalS: 0.05 }, /^q\.queryResponseIntervalS: .*tenths/],
    [{ queryResponseIntervalS: 0 }, /^q\.queryResponseIntervalS: /],
    [{ lastMemberQueryIntervalS: 'fast' }, /^q\.lastMemberQueryIntervalS: /],
    [
      { queryIntervalS: 10, queryResponseIntervalS: 10 },
      /^q\.queryResponseIntervalS: .*less than queryIntervalS/,
    ],
    [{ robust: 2 }, /^q\.robust: .*not a querier setting/],
    [[1], /^q: .*must be an object/],
  ];
  for (const [value, pattern] of cases)
    assert.match(
      fieldOf(() => multicastQuerierSettings('q', value, D)),
      pattern,
      JSON.stringify(value),
    );
  assert.deepEqual(querierConfigFrom({ ...D, queryResponseIntervalS: 2.5 }), {
    robustness: 2,
    queryIntervalMs: 125_000,
    queryResponseIntervalMs: 2_500,
    lastMemberQueryIntervalMs: 1_000,
  });
});

test('the querier runs on the timers from the settings (simulated clock), and takes new ones live', () => {
  const timers = multicastQuerierSettings(
    'multicastQuerier',
    { robustness: 3, queryIntervalS: 20, queryResponseIntervalS: 2, lastMemberQueryIntervalS: 0.5 },
    MULTICAST_QUERIER_DEFAULTS,
  );
  const q = new Querier<{ id: string }>(querierConfigFrom(timers));
  const p = { id: 'a' };
  const generals = (now: number): number =>
    q.tick(now).filter((a) => a.type === 'query' && a.group === null).length;
  assert.equal(q.addPort(p, [4], 0).filter((a) => a.type === 'query').length, 1, 'first startup query now');
  // Startup: robustness (3) queries, a quarter of the query interval (5 s) apart; then every 20 s.
  assert.equal(generals(4_999), 0);
  assert.equal(generals(5_000), 1);
  assert.equal(generals(10_000), 1);
  assert.equal(generals(29_999), 0);
  assert.equal(generals(30_000), 1);
  // A join lasts the group membership interval: 3 × 20 s + 2 s = 62 s.
  const group = Uint8Array.of(239, 1, 1, 1);
  q.receive(
    {
      kind: 'report',
      skipped: 0,
      family: 4,
      version: 2,
      source: Uint8Array.of(10, 66, 0, 10),
      changes: [{ change: 'join', group }],
    },
    p,
    30_000,
  );
  assert.equal(q.tick(91_999).filter((a) => a.type === 'left').length, 0);
  // An IGMPv2 leave: 3 group-specific queries 0.5 s apart, then the membership ends (3 × 0.5 s).
  q.receive(
    {
      kind: 'report',
      skipped: 0,
      family: 4,
      version: 2,
      source: Uint8Array.of(10, 66, 0, 10),
      changes: [{ change: 'leave', group }],
    },
    p,
    40_000,
  );
  const specific = (now: number): number =>
    q.tick(now).filter((a) => a.type === 'query' && a.group !== null).length;
  assert.equal(specific(40_499), 0);
  assert.equal(specific(40_500), 1);
  assert.equal(specific(41_000), 1);
  const left = q.tick(41_500).filter((a) => a.type === 'left');
  assert.equal(left.length, 1, 'left after the last member query time');

  // Live change: a shorter interval brings the next general query forward; the new GMI applies to new joins.
  q.configure(querierConfigFrom({ ...timers, queryIntervalS: 4, queryResponseIntervalS: 1 }), 42_000);
  assert.equal(generals(45_999), 0);
  assert.equal(generals(46_000), 1);
  q.receive(
    {
      kind: 'report',
      skipped: 0,
      family: 4,
      version: 3,
      source: Uint8Array.of(10, 66, 0, 10),
      changes: [{ change: 'join', group }],
    },
    p,
    50_000,
  );
  assert.equal(q.tick(62_999).filter((a) => a.type === 'left').length, 0);
  assert.equal(q.tick(63_000).filter((a) => a.type === 'left').length, 1, 'GMI now 3 × 4 s + 1 s');
});

test('control plane: querier timers through updateSettings; null goes back to the defaults', () => {
  const cp = plane();
  assert.equal(cp.settings().multicastQuerier, undefined);
  cp.updateSettings('test', { multicastQuerier: { queryIntervalS: 60 } });
  assert.deepEqual(cp.settings().multicastQuerier, { ...MULTICAST_QUERIER_DEFAULTS, queryIntervalS: 60 });
  cp.updateSettings('test', { multicastQuerier: { robustness: 4 } });
  assert.deepEqual(cp.settings().multicastQuerier, {
    ...MULTICAST_QUERIER_DEFAULTS,
    queryIntervalS: 60,
    robustness: 4,
  });
  assert.throws(
    () => cp.updateSettings('test', { multicastQuerier: { queryIntervalS: 5 } }),
    (e: unknown) => e instanceof WeftError && e.field === 'multicastQuerier.queryResponseIntervalS',
  );
  cp.updateSettings('test', { multicastQuerier: null });
  assert.equal(cp.settings().multicastQuerier, undefined);
});

test('static memberships: add (canonical, idempotent), list, remove; errors name the field; the feed', () => {
  const cp = plane();
  const rev = cp.store.revision();
  assert.deepEqual(cp.addMulticastStatic('test', 'site:hq', '239.1.1.1'), {
    port: 'site:hq',
    group: '239.1.1.1',
  });
  assert.deepEqual(cp.addMulticastStatic('test', 'Member:alice', 'FF15::0001'), {
    port: 'member:alice',
    group: 'ff15::1',
  });
  cp.addMulticastStatic('test', 'LAN', '224.2.2.3');
  cp.addMulticastStatic('test', 'site:hq', '239.1.1.1');
  assert.deepEqual(cp.listMulticastStatic(), [
    { port: 'lan', group: '224.2.2.3' },
    { port: 'member:alice', group: 'ff15::1' },
    { port: 'site:hq', group: '239.1.1.1' },
  ]);
  assert.ok(
    cp.store.changesSince(rev).every((c) => c.kind === 'settings'),
    'each change is in the feed (as settings)',
  );
  assert.equal(cp.store.changesSince(rev).length, 3, 'adding one that exists changes nothing');
  assert.equal(cp.removeMulticastStatic('test', 'site:hq', '239.1.1.1'), true);
  assert.equal(cp.removeMulticastStatic('test', 'site:hq', '239.1.1.1'), false);
  assert.equal(cp.listMulticastStatic().length, 2);
  assert.match(
    fieldOf(() => cp.addMulticastStatic('test', 'peer:x', '239.1.1.1')),
    /^port: .*member:NAME/,
  );
  assert.match(
    fieldOf(() => cp.addMulticastStatic('test', 'site:hq', '10.0.0.1')),
    /^group: .*not a multicast/,
  );
  assert.match(
    fieldOf(() => cp.addMulticastStatic('test', 'site:hq', 'nope')),
    /^group: /,
  );
  assert.match(
    fieldOf(() =>
      multicastStatic('multicastStatic', [
        { port: 'lan', group: '239.1.1.1' },
        { port: 'LAN', group: '239.1.1.1' },
      ]),
    ),
    /^multicastStatic\[1\]: .*twice/,
  );
  assert.match(
    fieldOf(() => multicastStatic('multicastStatic', [{ port: 'lan', group: '239.1.1.1', ttl: 1 }])),
    /^multicastStatic\[0\]\.ttl: /,
  );
});

test('state file: the multicast section applies and exports (querier timers, static memberships)', () => {
  const cp = plane();
  const changes = applyState(cp, 'test', {
    multicast: {
      querier: { robustness: 3 },
      static: [
        { port: 'site:hq', group: '239.1.1.1' },
        { port: 'member:alice', group: '239.1.1.2' },
      ],
    },
  });
  assert.equal(changes.length, 1);
  assert.match(changes[0]!.target, /multicastQuerier/);
  assert.match(changes[0]!.target, /multicastStatic/);
  const exported = exportState(cp);
  assert.deepEqual(exported.multicast, {
    querier: { ...MULTICAST_QUERIER_DEFAULTS, robustness: 3 },
    static: [
      { port: 'member:alice', group: '239.1.1.2' },
      { port: 'site:hq', group: '239.1.1.1' },
    ],
  });
  assert.deepEqual(applyState(cp, 'test', exported), [], 'applying the export again changes nothing');
  assert.throws(
    () => applyState(cp, 'test', { multicast: { static: [{ port: 'x', group: '239.1.1.1' }] } }),
    /multicastStatic\[0\]\.port/,
  );
});

test('a site with multicast ranges: validated, in its spec, in the remote end’s swanctl selectors', () => {
  const cp = plane();
  const base = {
    remoteAddress: '198.51.100.20',
    psk: 'correct-horse-battery-staple',
    localSubnets: ['10.66.0.0/24'],
    remoteSubnets: ['10.20.0.0/24'],
  };
  const { site } = cp.addSite('test', {
    ...base,
    name: 'hq',
    multicast: ['239.0.0.0/8', '239.0.0.0/8', 'ff15::/16'],
  });
  assert.deepEqual(site.multicast, ['239.0.0.0/8', 'ff15::/16']);
  assert.deepEqual(cp.siteSpecs()[0]?.multicast, ['239.0.0.0/8', 'ff15::/16']);
  const swanctl = cp.siteRemoteConfig('hq', 'swanctl');
  // With IGMP's destinations (queries to 224.0.0.1, v2 leaves to 224.0.0.2, v3 reports to 224.0.0.22), and
  // MLD's (queries to ff02::1, v1 done to ff02::2, v2 reports to ff02::16, all from fe80::/64).
  const igmp = '224.0.0.1/32, 224.0.0.2/32, 224.0.0.22/32, ff02::1/128, ff02::2/128, ff02::16/128, fe80::/64';
  assert.ok(swanctl.includes(`local_ts = 10.20.0.0/24, 239.0.0.0/8, ff15::/16, ${igmp}\n`), swanctl);
  assert.ok(swanctl.includes(`remote_ts = 10.66.0.0/24, 239.0.0.0/8, ff15::/16, ${igmp}\n`), swanctl);
  const refused = (multicast: unknown, extra: Record<string, unknown> = {}): string =>
    fieldOf(() =>
      cp.addSite('test', { ...base, name: 'x', remoteSubnets: ['10.21.0.0/24'], multicast, ...extra }),
    );
  assert.match(refused(['10.0.0.0/8']), /^multicast\[0\]: .*not inside 224\.0\.0\.0\/4/);
  assert.match(refused(['192.0.0.0/2']), /^multicast\[0\]: /);
  assert.match(refused(['fe80::/10']), /^multicast\[0\]: /);
  assert.match(refused(['nope']), /^multicast\[0\]: /);
  assert.match(
    refused(['239.0.0.0/8'], {
      mode: 'transport',
      localSubnets: ['10.66.0.1/32'],
      remoteSubnets: ['198.51.100.20/32'],
    }),
    /^multicast: .*tunnel/,
  );
  assert.deepEqual(cp.updateSite('test', 'hq', { multicast: [] }).multicast, []);
});

// ---------------------------------------------------------------- MulticastMembers: sites and statics

/** A UDP datagram from `source` to `group` with TTL 8. */
function datagram(source: number[], group: number[]): { packet: Uint8Array; header: IpHeader } {
  const p = new Uint8Array(29);
  p.set([0x45, 0, 0, 29, 0, 1, 0x40, 0, 8, 17], 0);
  p.set(source, 12);
  p.set(group, 16);
  p.set([0x13, 0x88, 0x13, 0x88, 0, 9, 0, 0, 0x78], 20);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += (p[i]! << 8) | p[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const c = ~sum & 0xffff;
  p[10] = c >> 8;
  p[11] = c & 0xff;
  return { packet: p, header: readIpHeader(p)! };
}

function fakeSite(name: string): IpsecSite & { readonly sent: string[] } {
  const sent: string[] = [];
  return {
    name,
    sent,
    send: (packet: Uint8Array, _now: number, header: IpHeader) =>
      void sent.push(`${header.destination.join('.')} ttl ${packet[8]}`),
    flush: () => undefined,
  } as unknown as IpsecSite & { readonly sent: string[] };
}

test('sites as ports: static memberships follow the site; policy is the site’s; a site sends to joined ports', () => {
  const replicator = new Replicator({ querySource4: Uint8Array.of(10, 66, 0, 1) });
  const sites = new Map<string, IpsecSite & { readonly sent: string[] }>([['hq', fakeSite('hq')]]);
  const asked: string[] = [];
  const members = new MulticastMembers(
    replicator,
    {} as WireGuardInterface,
    () => true,
    () => true,
    () => 0,
    {
      admitSite: (name, _p, header) => {
        asked.push(`${name} → ${header.destination.join('.')}`);
        return header.destination[3] !== 66;
      },
      permitsSite: () => true,
    },
  );
  replicator.policy = members;
  const hostGot: string[] = [];
  const host: MulticastPort = {
    id: 'host',
    families: [],
    send: (_p, header) => void hostGot.push(header.destination.join('.')),
    flush: () => undefined,
  };
  replicator.addPort(host, 0);

  members.setStatic([
    { port: 'site:hq', group: '239.1.1.1' },
    { port: 'site:branch', group: '239.1.1.1' },
  ]);
  assert.equal(replicator.querier.group(0xef010101), undefined, 'no site port yet: nothing applied');
  members.setSites([{ name: 'hq', families: [] }], (name) => sites.get(name));
  const receivers = (): string[] => (replicator.querier.group(0xef010101)?.receivers ?? []).map((p) => p.id);
  assert.deepEqual(receivers(), ['site:hq']);
  assert.equal(replicator.snapshot(0).groups[0]?.receivers[0]?.expiresInS, null, 'listed as static');

  // The host's datagram to the group reaches the site, TTL decremented once.
  const d = datagram([10, 66, 0, 1], [239, 1, 1, 1]);
  replicator.receive(d.packet, d.header, host, 0);
  assert.deepEqual(sites.get('hq')!.sent, ['239.1.1.1 ttl 7']);

  // The site sends: its rules decide (admitSite with the group as destination).
  replicator.setStatic(host, 4, Uint8Array.of(239, 1, 1, 2), true);
  replicator.setStatic(host, 4, Uint8Array.of(239, 1, 1, 66), true);
  const s1 = datagram([10, 20, 0, 5], [239, 1, 1, 2]);
  members.fromSite(sites.get('hq')!, s1.packet, s1.header);
  const s2 = datagram([10, 20, 0, 5], [239, 1, 1, 66]);
  members.fromSite(sites.get('hq')!, s2.packet, s2.header);
  assert.deepEqual(hostGot, ['239.1.1.2']);
  assert.deepEqual(asked, ['hq → 239.1.1.2', 'hq → 239.1.1.66']);
  assert.equal(replicator.drops['policy-send'], 1);
  // A site that is no multicast port: counted, not replicated.
  members.fromSite(fakeSite('other'), s1.packet, s1.header);
  assert.equal(members.counters.unknownSite, 1);

  // The site goes (disabled, its ranges removed) and comes back: the static membership follows it.
  members.setSites([], (name) => sites.get(name));
  assert.deepEqual(receivers(), []);
  members.setSites(
    [
      { name: 'hq', families: [] },
      { name: 'branch', families: [] },
    ],
    (name) => sites.get(name),
  );
  assert.deepEqual(receivers().sort(), ['site:branch', 'site:hq']);
  members.setStatic([{ port: 'site:branch', group: '239.1.1.1' }]);
  assert.deepEqual(receivers(), ['site:branch']);
  members.setStatic([]);
  assert.deepEqual(receivers(), []);
});

test('site selectors: the group ranges and IGMP (IPv4) and MLD (IPv6) selectors no range holds', () => {
  assert.deepEqual(siteGroupSelectors([]), []);
  assert.deepEqual(siteGroupSelectors(['ff15::/16']), [
    'ff15::/16',
    'ff02::1/128',
    'ff02::2/128',
    'ff02::16/128',
    'fe80::/64',
  ]);
  assert.deepEqual(siteGroupSelectors(['ff00::/8']), ['ff00::/8', 'fe80::/64']);
  assert.deepEqual(siteGroupSelectors(['239.0.0.0/8', 'ff02::/16']), [
    '239.0.0.0/8',
    'ff02::/16',
    '224.0.0.1/32',
    '224.0.0.2/32',
    '224.0.0.22/32',
    'fe80::/64',
  ]);
  assert.deepEqual(siteQueryFamilies(['239.0.0.0/8', 'ff15::/16']), [4, 6]);
  assert.deepEqual(siteQueryFamilies(['ff15::/16']), [6]);
  assert.deepEqual(siteQueryFamilies(['239.0.0.0/8']), [4]);
  assert.deepEqual(siteGroupSelectors(['239.0.0.0/8']), [
    '239.0.0.0/8',
    '224.0.0.1/32',
    '224.0.0.2/32',
    '224.0.0.22/32',
  ]);
  assert.deepEqual(siteGroupSelectors(['224.0.0.0/4']), ['224.0.0.0/4']);
  assert.deepEqual(siteGroupSelectors(['224.0.0.0/31', '239.1.0.0/16']), [
    '224.0.0.0/31',
    '239.1.0.0/16',
    '224.0.0.2/32',
    '224.0.0.22/32',
  ]);
});

test('sites queried over IPv4: startup queries into the tunnel; a report joins; a v2 leave is queried', () => {
  let now = 0;
  const replicator = new Replicator({
    querySource4: Uint8Array.of(10, 66, 0, 1),
    querier: {
      robustness: 2,
      queryIntervalMs: 4_000,
      queryResponseIntervalMs: 1_000,
      lastMemberQueryIntervalMs: 500,
    },
  });
  const sent: Uint8Array[] = [];
  const site = {
    name: 'hq',
    send: (packet: Uint8Array) => void sent.push(Uint8Array.from(packet)),
    flush: () => undefined,
  } as unknown as IpsecSite;
  const members = new MulticastMembers(
    replicator,
    {} as WireGuardInterface,
    () => true,
    () => true,
    () => now,
  );
  replicator.policy = members;
  members.setSites([{ name: 'hq', families: [4] }], () => site);
  replicator.flush();
  const queries = (): string[] =>
    sent.splice(0).map((q) => {
      const parsed = parseMembership(q);
      assert.ok(parsed.ok && parsed.message.kind === 'query', JSON.stringify(parsed));
      const h = readIpHeader(q)!;
      return `${h.source.join('.')} → ${h.destination.join('.')} ttl ${q[8]}`;
    });
  assert.deepEqual(queries(), ['10.66.0.1 → 224.0.0.1 ttl 1'], 'a startup general query');

  // A host behind the site reports (IGMPv3, to 224.0.0.22): the site joins, and general queries keep coming.
  const host = Uint8Array.of(10, 20, 0, 5);
  const group = Uint8Array.of(239, 7, 7, 9);
  const join = buildReport(4, host, [{ type: CHANGE_TO_EXCLUDE, group }]);
  members.fromSite(site, join, readIpHeader(join)!);
  const receivers = (): string[] => (replicator.querier.group(0xef070709)?.receivers ?? []).map((p) => p.id);
  assert.deepEqual(receivers(), ['site:hq']);
  // The group membership interval is 2 × 4 s + 1 s; the host answers every general query and stays.
  for (now = 0; now <= 20_000; now += 250) {
    replicator.tick(now);
    const q = queries();
    if (q.length > 0) {
      assert.deepEqual(q, ['10.66.0.1 → 224.0.0.1 ttl 1']);
      const answer = buildReport(4, host, [{ type: MODE_IS_EXCLUDE, group }]);
      members.fromSite(site, answer, readIpHeader(answer)!);
    }
  }
  assert.deepEqual(receivers(), ['site:hq'], 'still joined well past the interval');

  // An IGMPv2 leave: two group-specific queries to the group, then the membership ends.
  const leave = buildV1V2(4, host, group, true);
  members.fromSite(site, leave, readIpHeader(leave)!);
  const after: string[] = [];
  for (const end = now + 3_000; now <= end; now += 100) {
    replicator.tick(now);
    after.push(...queries());
  }
  // (General queries go on beside them, every query interval.)
  assert.deepEqual(
    after.filter((q) => !q.includes('→ 224.0.0.1 ')),
    ['10.66.0.1 → 239.7.7.9 ttl 1', '10.66.0.1 → 239.7.7.9 ttl 1'],
  );
  assert.deepEqual(receivers(), []);
});

test('sites queried over IPv6 (MLD from fe80::1, within the selectors); a report joins, answers keep it, a leave ends it', () => {
  let now = 0;
  // No IPv6 member subnet (no replicator-wide MLD source): a site with IPv6 ranges is queried all the same.
  const replicator = new Replicator({
    querySource4: Uint8Array.of(10, 66, 0, 1),
    querier: { robustness: 2, queryIntervalMs: 4_000, queryResponseIntervalMs: 1_000 },
  });
  const sent: Uint8Array[] = [];
  const site = {
    name: 'hq',
    send: (packet: Uint8Array) => void sent.push(Uint8Array.from(packet)),
    flush: () => undefined,
  } as unknown as IpsecSite;
  const members = new MulticastMembers(
    replicator,
    {} as WireGuardInterface,
    () => true,
    () => true,
    () => now,
  );
  replicator.policy = members;
  const ranges = ['ff15::/16'];
  members.setSites([{ name: 'hq', families: siteQueryFamilies(ranges) }], () => site);
  replicator.flush();
  // The CHILD SA's selectors as Weft negotiates them (our subnets + groups; theirs + groups).
  const compiled = (subnets: string[]) =>
    compileSelectors(
      [...subnets, ...siteGroupSelectors(ranges)].map((t) => {
        const r = selectorFromPrefix(t);
        if (r === null) throw new Error(t);
        return r;
      }),
    );
  const ours = compiled(['fd66::/64']);
  const theirs = compiled(['fd20::/64']);
  const queries = (): string[] =>
    sent.splice(0).map((q) => {
      const parsed = parseMembership(q);
      assert.ok(parsed.ok && parsed.message.kind === 'query', JSON.stringify(parsed));
      assert.ok(selectorsAdmit(q, ours, theirs), 'a query fits the outbound selectors');
      const h = readIpHeader(q)!;
      const f = (b: Uint8Array) => formatAddress({ family: 6, bytes: b });
      return `${f(h.source)} → ${f(h.destination)} hop ${q[7]}`;
    });
  assert.deepEqual(queries(), ['fe80::1 → ff02::1 hop 1'], 'a startup general query over MLD');

  // The far end's tunnel interface reports from its link-local address (MLDv2, to ff02::16).
  const host = Uint8Array.from(Buffer.from('fe80000000000000021122fffe334455', 'hex'));
  const group = Uint8Array.from(Buffer.from('ff150000000000000000000000070709', 'hex'));
  const join = buildReport(6, host, [{ type: CHANGE_TO_EXCLUDE, group }]);
  assert.ok(selectorsAdmit(join, theirs, ours), 'the report fits the inbound selectors');
  members.fromSite(site, join, readIpHeader(join)!);
  const receivers = (): string[] =>
    (replicator.querier.group('ff150000000000000000000000070709')?.receivers ?? []).map((p) => p.id);
  assert.deepEqual(receivers(), ['site:hq']);
  for (now = 0; now <= 20_000; now += 250) {
    replicator.tick(now);
    if (queries().length > 0) {
      const answer = buildReport(6, host, [{ type: MODE_IS_EXCLUDE, group }]);
      members.fromSite(site, answer, readIpHeader(answer)!);
    }
  }
  assert.deepEqual(receivers(), ['site:hq'], 'still joined well past the interval (9 s)');
  // An MLDv2 leave (TO_IN({})) ends it at once.
  const leave = buildReport(6, host, [{ type: CHANGE_TO_INCLUDE, group }]);
  members.fromSite(site, leave, readIpHeader(leave)!);
  assert.deepEqual(receivers(), []);
  // Without answers a join lapses after the interval.
  members.fromSite(site, join, readIpHeader(join)!);
  const joinedAt = now;
  while (receivers().length > 0 && now < joinedAt + 20_000) replicator.tick((now += 250));
  assert.ok(now - joinedAt <= 9_250, `lapsed after the group membership interval: ${now - joinedAt} ms`);
});

test('REST API: /multicast/static add, list, remove; errors with their field; the settings show them', async () => {
  const store = new MemoryStore();
  const token = ControlPlane.init(store, { endpoint: '203.0.113.1:51820', subnet: '10.66.0.0/24' }).apiToken;
  const app = buildApi({ controlPlane: new ControlPlane(store) });
  try {
    await app.ready();
    const call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: Record<string, unknown>) =>
      app.inject({
        method,
        url: `/api/v1${url}`,
        headers: { authorization: `Bearer ${token}` },
        ...(body === undefined ? {} : { payload: body }),
      });
    const added = await call('POST', '/multicast/static', { port: 'site:hq', group: '239.1.1.1' });
    assert.equal(added.statusCode, 201, added.body);
    assert.deepEqual(added.json(), { port: 'site:hq', group: '239.1.1.1' });
    const bad = await call('POST', '/multicast/static', { port: 'site:hq', group: '10.1.1.1' });
    assert.equal(bad.statusCode, 400, bad.body);
    assert.equal(bad.json<{ error: { field: string } }>().error.field, 'group');
    const list = await call('GET', '/multicast/static');
    assert.deepEqual(list.json(), { items: [{ port: 'site:hq', group: '239.1.1.1' }] });
    const settings = await call('GET', '/settings');
    assert.deepEqual(settings.json<{ multicastStatic: unknown }>().multicastStatic, [
      { port: 'site:hq', group: '239.1.1.1' },
    ]);
    const timers = await call('PATCH', '/settings', { multicastQuerier: { robustness: 9 } });
    assert.equal(timers.statusCode, 400, timers.body);
    assert.equal(timers.json<{ error: { field: string } }>().error.field, 'multicastQuerier.robustness');
    const removed = await call('DELETE', '/multicast/static?port=site:hq&group=239.1.1.1');
    assert.equal(removed.statusCode, 204, removed.body);
    const again = await call('DELETE', '/multicast/static?port=site:hq&group=239.1.1.1');
    assert.equal(again.statusCode, 404, again.body);
    const doc = (await app.inject({ method: 'GET', url: '/api/v1/openapi.json' })).json<{
      paths: Record<string, Record<string, { operationId: string }>>;
    }>();
    assert.deepEqual(
      Object.entries(doc.paths['/api/v1/multicast/static'] ?? {})
        .map(([m, op]) => `${m} ${op.operationId}`)
        .sort(),
      ['delete removeMulticastStatic', 'get listMulticastStatic', 'post addMulticastStatic'],
    );
  } finally {
    await app.close();
    store.close();
  }
});

test('ESP shell: a site hands opened packets to groups to the replicator tap, flushed with the batch', async () => {
  const net = new MemoryNetwork();
  const taps: { tap?: SiteGroupTap } = {};
  const side = (addr: string, groups?: () => SiteGroupTap | undefined) => {
    const tun = new MemoryTun(`tun-${addr}`);
    const gw = new Gateway(tun);
    const port = new EspPort({ udp: net.bind(addr, 4500), onIke: () => undefined });
    const site = new IpsecSite({ name: 'hq', port, deliver: gw.deliver, ...(groups ? { groups } : {}) });
    gw.start();
    port.start();
    return { tun, gw, site };
  };
  const a = side('192.0.2.1');
  const b = side('192.0.2.2', () => taps.tap);
  // The selectors as a multicast site's: the subnets and the group range on both sides.
  const specs = mirrorSpecs(
    [selector('10.1.0.0', '10.1.0.255'), selector('239.0.0.0', '239.255.255.255')],
    [selector('10.2.0.0', '10.2.0.255'), selector('239.0.0.0', '239.255.255.255')],
  );
  a.site.installChildSa(specs.a, { peer: { address: '192.0.2.2', port: 4500 }, carrier: 'udp' });
  b.site.installChildSa(specs.b, { peer: { address: '192.0.2.1', port: 4500 }, carrier: 'udp' });
  const p = (text: string) => {
    const r = parsePrefix(text);
    if (!r.ok) throw new Error(r.error);
    return r.value;
  };
  a.gw.setRoutes(a.site, [p('10.2.0.0/24'), p('239.0.0.0/8')]);
  const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  // No tap (multicast off): the packet goes to the TUN side as before.
  a.tun.inject(datagram([10, 1, 0, 5], [239, 1, 1, 1]).packet);
  await tick();
  assert.equal(b.tun.written.length, 1);

  const got: string[] = [];
  let flushes = 0;
  taps.tap = {
    fromSite: (site, packet, header) =>
      void got.push(
        `${site.name} ${header.source.join('.')} → ${header.destination.join('.')} ${packet.length}`,
      ),
    flush: () => void flushes++,
  };
  a.tun.inject(datagram([10, 1, 0, 5], [239, 1, 1, 2]).packet);
  a.tun.inject(echo('request', '10.1.0.5', '10.2.0.7', 1, 1, new Uint8Array(8)));
  await tick();
  assert.deepEqual(got, ['hq 10.1.0.5 → 239.1.1.2 29']);
  assert.ok(flushes >= 1, 'the tap is flushed at the end of the inbound batch');
  assert.equal(
    b.tun.written.length,
    2,
    'the unicast ping still reaches the TUN side; the group packet does not',
  );
  assert.equal(readEcho(b.tun.written[1]!)?.seq, 1);
  assert.equal(b.site.counters.groupsIn, 1);
});
