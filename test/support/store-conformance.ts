/**
 * The Store conformance suite: what every implementation of the Store interface (src/control/store.ts) must
 * do, registered as node:test cases against whatever `open` returns. test/unit/store-conformance.test.ts runs
 * it against the SQLite store and the in-memory store, so a test written against one holds for the other.
 *
 * Each case gets a fresh, empty store from `open` and calls its `close` when it ends (pass or fail); `close`
 * may check more (the SQLite runner reopens the file and runs SQLite's integrity check). What is particular to
 * one implementation (file modes, migrations, pruning of the change feed, crashes, timings) stays in that
 * implementation's own test file.
 *
 * The cases, in order:
 *   1. a new store is empty;
 *   2. settings and secrets; members, groups, routes, policies, audit, tokens, admins, download links,
 *      statuses, traffic;
 *   3. unique violations -> StoreConflict naming the column, with nothing left behind;
 *   4. cascades: a deleted member leaves its groups, a deleted group leaves its members;
 *   5. the change feed: revisions 1, 2, 3... without gaps, failures and rollbacks append nothing;
 *   6. transactions: nested calls join the outer one, an inner failure rolls back alone, every kind of
 *      write rolls back, an async function is refused;
 *   7. pagination and search of members;
 *   8. values are copied in and out; close;
 *   9. IPsec sites: insert, get, list, update, delete, the change feed, conflicts, rollbacks; site statuses
 *      replaced wholesale and gone with their site.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type {
  MemberRecord,
  MemberStatus,
  OpenVpnCredential,
  Settings,
  SiteRecord,
} from '../../src/control/model.js';
import type { SiteStatus } from '../../src/ipsec/site-spec.js';
import { StoreConflict, type Store } from '../../src/control/store.js';

export interface OpenedStore {
  readonly store: Store;
  /** Closes the store and frees what it used; may assert (it runs after each case). */
  readonly close: () => void;
}

export const T0 = '2024-05-01T12:00:00.000Z';
const T1 = '2024-05-01T12:01:00.000Z';
const T2 = '2024-05-01T12:02:00.000Z';

export const SETTINGS: Settings = {
  endpoint: 'vpn.example.com:51820',
  listenPort: 51820,
  interfaceName: 'weft0',
  subnet: '10.77.0.0/16',
  subnet6: 'fd00:77::/64',
  dns: ['10.77.0.1', '1.1.1.1'],
  natEgress: 'eth0',
  defaultPolicy: 'deny',
  persistentKeepalive: 25,
  mtu: 1420,
  apiListen: '127.0.0.1:8080',
};

/** Member `i`: name m00042, address 10.77.0.42, fd00:77::2a, keys derived from `i`. */
export function member(i: number, overrides: Partial<MemberRecord> = {}): MemberRecord {
  const name = overrides.name ?? `m${String(i).padStart(5, '0')}`;
  return {
    name,
    ip: `10.77.${(i >> 8) & 255}.${i & 255}`,
    ip6: `fd00:77::${i.toString(16)}`,
    publicKey: Buffer.from(`pub-${i}`.padEnd(32, '.')).toString('base64'),
    hasPrivateKey: true,
    privateKey: Buffer.from(`priv-${i}`.padEnd(32, '.')).toString('base64'),
    groups: [],
    disabled: false,
    expiresAt: null,
    fullTunnel: false,
    createdAt: T0,
    updatedAt: T0,
    ...overrides,
  };
}

/** A site named `name` with every field set (lists of several entries, nulls and non-defaults included). */
export function site(name: string, overrides: Partial<SiteRecord> = {}): SiteRecord {
  return {
    name,
    enabled: true,
    remoteAddress: '198.51.100.20',
    localId: 'fqdn:gw.example.net',
    remoteId: null,
    auth: 'psk',
    psk: 'a-pre-shared-key-of-32-characters',
    forceShortPsk: false,
    certificate: null,
    privateKey: null,
    caCertificates: null,
    localSubnets: ['10.77.0.0/16', 'fd00:77::/64'],
    remoteSubnets: ['10.20.0.0/24', '10.21.0.0/24'],
    mode: 'tunnel',
    ikeProposals: ['aes256gcm16-prfsha256-x25519', 'aes256-sha256-modp2048'],
    espProposals: ['aes256gcm16'],
    allowLegacyGroups: false,
    ikeLifetimeSec: 14_400,
    childLifetimeSec: 3_600,
    dpdIntervalSec: 30,
    dpdAction: 'restart',
    startAction: 'initiate',
    groups: ['eng', 'ops'],
    multicast: ['239.0.0.0/8', 'ff15::/16'],
    childPerSubnetPair: true,
    ikeHardLifetimeSec: 16_000,
    childHardLifetimeSec: null,
    fragmentSize: 1_200,
    childRekeyBytes: 5 * 2 ** 30,
    childLifeBytes: 6 * 2 ** 30,
    createdAt: T0,
    updatedAt: T0,
    ...overrides,
  };
}

export function siteStatus(name: string, overrides: Partial<SiteStatus> = {}): SiteStatus {
  return {
    name,
    state: 'up',
    ike: {
      spiI: '0123456789abcdef',
      spiR: 'fedcba9876543210',
      initiator: true,
      proposal: 'aes256gcm16-prfsha256-x25519',
      peerId: 'ipv4:198.51.100.20',
      remote: '198.51.100.20:500',
      encapsulated: false,
      establishedAt: T0,
      rekeyedAt: null,
    },
    children: [
      {
        inboundSpi: 'c0000001',
        outboundSpi: 'c0000002',
        mode: 'tunnel',
        proposal: 'aes256gcm16-esn',
        carrier: 'raw',
        localSubnets: ['10.77.0.0/16'],
        remoteSubnets: ['10.20.0.0/24'],
        establishedAt: T0,
        rekeyedAt: T1,
        packetsIn: 10,
        bytesIn: 1000,
        packetsOut: 20,
        bytesOut: 2000,
        drops: { replay: 1 },
      },
    ],
    lastError: null,
    at: T1,
    ...overrides,
  };
}

function status(name: string, overrides: Partial<MemberStatus> = {}): MemberStatus {
  return {
    name,
    online: true,
    protocol: 'openvpn-tcp',
    since: T0,
    endpoint: '198.51.100.7:41641',
    lastHandshake: T0,
    rxBytes: 1000,
    txBytes: 2000,
    policyDrops: 3,
    updatedAt: T0,
    ...overrides,
  };
}

/** For assert.throws: a StoreConflict whose message names `column` ("members.ip"). */
function conflictNaming(column: string): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof StoreConflict, `expected StoreConflict, got ${String(err)}`);
    assert.ok(err.message.includes(column), `"${err.message}" does not name ${column}`);
    return true;
  };
}

/** Deterministic shuffle, so insertion order differs from name order. */
function shuffled<T>(items: readonly T[], seed = 1): T[] {
  const out = [...items];
  let x = seed;
  for (let i = out.length - 1; i > 0; i--) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

function feed(store: Store, since = 0): [string, string][] {
  return store.changesSince(since).map((c) => [c.kind, c.key]);
}

/** Registers the suite under `describe(name)`. */
export function storeConformance(name: string, open: () => OpenedStore): void {
  /** A fresh store, closed when the test ends. */
  function fresh(t: TestContext): Store {
    const { store, close } = open();
    t.after(close);
    return store;
  }

  describe(`Store conformance: ${name}`, () => {
    it('a new store is empty, at revision 0', (t) => {
      const store = fresh(t);
      assert.equal(typeof store.path, 'string');
      assert.ok(Number.isInteger(store.schemaVersion) && store.schemaVersion >= 1);
      assert.equal(store.revision(), 0);
      assert.deepEqual(store.changesSince(0), []);
      assert.equal(store.getSettings(), undefined);
      assert.equal(store.getSecret('gateway.key'), undefined);
      assert.deepEqual(store.allMembers(), []);
      assert.deepEqual(store.listMembers({ limit: 10 }), []);
      assert.equal(store.countMembers(), 0);
      assert.equal(store.getMemberByIp('10.77.0.1'), undefined);
      assert.deepEqual(store.listGroups(), []);
      assert.deepEqual(store.listRoutes(), []);
      assert.deepEqual(store.listPolicies(), []);
      assert.deepEqual(store.listAudit({ limit: 10 }), []);
      assert.deepEqual(store.listTokens(), []);
      assert.equal(store.getAdmin('admin'), undefined);
      assert.deepEqual(store.allStatuses(), []);
      assert.deepEqual(store.traffic('', T0), []);
    });

    it('settings and secrets; secrets are not part of the change feed', (t) => {
      const store = fresh(t);
      store.putSettings(SETTINGS);
      assert.deepEqual(store.getSettings(), SETTINGS);
      const changed: Settings = { ...SETTINGS, mtu: 1380, natEgress: null, subnet6: null, dns: [] };
      store.putSettings(changed);
      assert.deepEqual(store.getSettings(), changed);

      store.putSecret('gateway.key', 'a');
      store.putSecret('session.key', 'b');
      store.putSecret('gateway.key', 'c');
      assert.equal(store.getSecret('gateway.key'), 'c');
      assert.equal(store.getSecret('session.key'), 'b');
      assert.deepEqual(feed(store), [
        ['settings', ''],
        ['settings', ''],
      ]);
    });

    it('members: insert, the three lookups, update, delete, addresses freed', (t) => {
      const store = fresh(t);
      store.insertGroup({ name: 'eng', description: '' });
      store.insertGroup({ name: 'ops', description: '' });
      store.insertGroup({ name: 'admins', description: '' });

      const alice = member(1, { name: 'alice', groups: ['ops', 'eng'] });
      const bob = member(2, {
        name: 'bob',
        ip6: null,
        privateKey: null,
        hasPrivateKey: false,
        fullTunnel: true,
      });
      store.insertMember(alice);
      store.insertMember(bob);

      assert.deepEqual(store.getMember('alice'), alice, 'groups come back in the order given');
      assert.deepEqual(store.getMember('bob'), bob);
      assert.equal(store.getMember('carol'), undefined);
      assert.equal(store.getMemberByIp(alice.ip)?.name, 'alice');
      assert.equal(store.getMemberByIp(alice.ip6 ?? '')?.name, 'alice', 'IPv6 addresses are found too');
      assert.equal(store.getMemberByIp('10.99.0.1'), undefined);
      assert.deepEqual(store.getMemberByPublicKey(bob.publicKey), bob);
      assert.equal(store.getMemberByPublicKey('nope'), undefined);
      assert.equal(store.countMembers(), 2);
      assert.deepEqual(store.allMembers(), [alice, bob]);
      assert.deepEqual(
        [alice.ip, alice.ip6!, bob.ip].map((ip) => store.getMemberByIp(ip)?.name),
        ['alice', 'alice', 'bob'],
      );

      const alice2: MemberRecord = {
        ...alice,
        ip: '10.77.9.9',
        ip6: null,
        publicKey: member(9).publicKey,
        groups: ['admins', 'eng'],
        disabled: true,
        expiresAt: T2,
        fullTunnel: true,
        privateKey: null,
        hasPrivateKey: false,
        updatedAt: T1,
      };
      assert.equal(store.updateMember(alice2), true);
      assert.deepEqual(store.getMember('alice'), alice2);
      assert.equal(store.getMemberByIp(alice.ip), undefined, 'the old address is free again');
      assert.equal(store.getMemberByIp(alice.ip6 ?? ''), undefined);
      assert.equal(store.getMemberByPublicKey(alice.publicKey), undefined, 'so is the old key');
      assert.equal(store.getMemberByPublicKey(alice2.publicKey)?.name, 'alice');
      assert.deepEqual(store.groupMembers('ops'), []);
      assert.deepEqual(store.groupMembers('eng'), ['alice']);
      assert.deepEqual(store.groupMembers('admins'), ['alice']);
      // An update may keep the member's own address and key: they are not a conflict with itself.
      assert.equal(store.updateMember({ ...alice2, disabled: false }), true);
      assert.equal(store.getMember('alice')?.disabled, false);
      assert.equal(store.updateMember(member(3, { name: 'carol' })), false);
      assert.equal(store.getMember('carol'), undefined);

      assert.equal(store.deleteMember('alice'), true);
      assert.equal(store.deleteMember('alice'), false);
      assert.equal(store.getMember('alice'), undefined);
      assert.equal(store.getMemberByIp(alice.ip), undefined);
      assert.equal(store.getMemberByIp(alice.ip6!), undefined);
      assert.equal(store.getMemberByIp(bob.ip)?.name, 'bob');
      assert.equal(store.countMembers(), 1);
      // The freed address and key can be given to someone else.
      store.insertMember(member(4, { name: 'dave', ip: alice2.ip, publicKey: alice2.publicKey }));
      assert.equal(store.getMemberByIp(alice2.ip)?.name, 'dave');
    });

    it("a member's groups keep the order given, without repeats", (t) => {
      const store = fresh(t);
      for (const g of ['a', 'b', 'c']) store.insertGroup({ name: g, description: '' });
      store.insertMember(member(1, { groups: ['c', 'a', 'c', 'b', 'a'] }));
      assert.deepEqual(store.getMember('m00001')?.groups, ['c', 'a', 'b']);
      store.updateMember(member(1, { groups: ['b', 'b'] }));
      assert.deepEqual(store.getMember('m00001')?.groups, ['b']);
      assert.deepEqual(store.groupMembers('b'), ['m00001']);
      assert.deepEqual(store.groupMembers('c'), []);
    });

    it('unique violations throw StoreConflict naming the column, and leave nothing behind', (t) => {
      const store = fresh(t);
      store.insertGroup({ name: 'eng', description: '' });
      store.insertMember(member(1, { groups: ['eng'] }));
      const rev = store.revision();
      const fresh2 = member(2);

      assert.throws(() => store.insertMember({ ...fresh2, name: 'm00001' }), conflictNaming('members.name'));
      assert.throws(() => store.insertMember({ ...fresh2, ip: member(1).ip }), conflictNaming('members.ip'));
      assert.throws(
        () => store.insertMember({ ...fresh2, ip6: member(1).ip6 }),
        conflictNaming('members.ip6'),
      );
      assert.throws(
        () => store.insertMember({ ...fresh2, publicKey: member(1).publicKey }),
        conflictNaming('members.public_key'),
      );
      assert.throws(
        () => store.insertMember({ ...fresh2, groups: ['eng', 'ghosts'] }),
        (err: unknown) => {
          assert.ok(err instanceof StoreConflict, String(err));
          assert.match(err.message, /ghosts/);
          return true;
        },
      );
      assert.equal(store.getMember('m00002'), undefined, 'a failed insert leaves no member behind');
      assert.deepEqual(store.groupMembers('eng'), ['m00001']);
      assert.throws(
        () => store.insertGroup({ name: 'eng', description: 'again' }),
        conflictNaming('groups.name'),
      );
      assert.equal(store.getGroup('eng')?.description, '');
      store.insertRoute({ cidr: '10.20.0.0/16', description: 'vpc' });
      assert.throws(
        () => store.insertRoute({ cidr: '10.20.0.0/16', description: '' }),
        conflictNaming('routes.cidr'),
      );
      assert.deepEqual(store.listRoutes(), [{ cidr: '10.20.0.0/16', description: 'vpc' }]);
      const token = store.insertToken('ci', 'hash-1', T0);
      assert.throws(() => store.insertToken('other', 'hash-1', T0), conflictNaming('tokens.hash'));
      assert.deepEqual(store.listTokens(), [token]);

      // Two members may both have no IPv6 address.
      store.insertMember({ ...fresh2, ip6: null });
      store.insertMember({ ...member(3), ip6: null });

      store.insertMember(member(4));
      assert.throws(
        () => store.updateMember({ ...member(4), ip: member(1).ip }),
        conflictNaming('members.ip'),
      );
      assert.throws(
        () => store.updateMember({ ...member(4), ip6: member(1).ip6 }),
        conflictNaming('members.ip6'),
      );
      assert.throws(
        () => store.updateMember({ ...member(4), publicKey: member(1).publicKey }),
        conflictNaming('members.public_key'),
      );
      assert.deepEqual(store.getMember('m00004'), member(4), 'a failed update changes nothing');
      assert.throws(() => store.updateMember({ ...member(4), groups: ['ghosts'] }), StoreConflict);
      assert.deepEqual(store.getMember('m00004'), member(4), 'not even the groups');

      assert.equal(store.getMember('m00002')?.ip6, null);
      assert.deepEqual(
        feed(store, rev),
        [
          ['route', '10.20.0.0/16'],
          ['member', 'm00002'],
          ['member', 'm00003'],
          ['member', 'm00004'],
        ],
        'failed mutations append no change',
      );
      assert.deepEqual(
        store.changesSince(rev).map((c) => c.rev),
        [rev + 1, rev + 2, rev + 3, rev + 4],
        'and leave no gap in the revisions',
      );
    });

    it('deleting a member removes its group memberships; deleting a group removes it from its members', (t) => {
      const store = fresh(t);
      store.insertGroup({ name: 'eng', description: '' });
      store.insertGroup({ name: 'ops', description: '' });
      store.insertMember(member(3, { groups: ['ops', 'eng'] }));
      store.insertMember(member(1, { groups: ['eng', 'ops'] }));
      store.insertMember(member(2, { groups: ['eng'] }));
      store.insertMember(member(4, { groups: [] }));
      assert.deepEqual(store.groupMembers('eng'), ['m00001', 'm00002', 'm00003'], 'by name');

      assert.equal(store.deleteMember('m00001'), true);
      assert.deepEqual(store.groupMembers('eng'), ['m00002', 'm00003']);
      assert.deepEqual(store.groupMembers('ops'), ['m00003']);
      // A new member with the deleted one's name does not inherit its groups.
      store.insertMember(member(1));
      assert.deepEqual(store.getMember('m00001')?.groups, []);
      assert.deepEqual(store.groupMembers('eng'), ['m00002', 'm00003']);

      const rev = store.revision();
      assert.equal(store.deleteGroup('eng'), true);
      assert.equal(store.deleteGroup('eng'), false);
      assert.equal(store.getGroup('eng'), undefined);
      assert.deepEqual(store.getMember('m00002')?.groups, []);
      assert.deepEqual(store.getMember('m00003')?.groups, ['ops']);
      assert.deepEqual(store.getMember('m00004')?.groups, []);
      assert.deepEqual(
        feed(store, rev),
        [
          ['group', 'eng'],
          ['member', 'm00002'],
          ['member', 'm00003'],
        ],
        'each member that left the group gets a change, after the group, in name order',
      );

      // A group with the deleted one's name starts empty.
      store.insertGroup({ name: 'eng', description: '' });
      assert.deepEqual(store.groupMembers('eng'), []);
    });

    it('groups, routes and policies', (t) => {
      const store = fresh(t);
      store.insertGroup({ name: 'ops', description: 'Operations' });
      store.insertGroup({ name: 'eng', description: 'Engineering' });
      assert.deepEqual(store.listGroups(), [
        { name: 'eng', description: 'Engineering' },
        { name: 'ops', description: 'Operations' },
      ]);
      assert.deepEqual(store.getGroup('ops'), { name: 'ops', description: 'Operations' });
      assert.equal(store.getGroup('sales'), undefined);
      assert.equal(store.updateGroup({ name: 'ops', description: 'SRE' }), true);
      assert.equal(store.updateGroup({ name: 'sales', description: '' }), false);
      assert.equal(store.getGroup('sales'), undefined, 'an update does not create');
      assert.equal(store.getGroup('ops')?.description, 'SRE');
      assert.deepEqual(store.groupMembers('nope'), []);

      store.insertRoute({ cidr: '192.168.10.0/24', description: 'office' });
      store.insertRoute({ cidr: '10.20.0.0/16', description: 'vpc', gateway: 'gw-b' });
      // The gateway serving a route (schema 10) comes back as written; a route without one has no key.
      assert.deepEqual(store.listRoutes(), [
        { cidr: '10.20.0.0/16', description: 'vpc', gateway: 'gw-b' },
        { cidr: '192.168.10.0/24', description: 'office' },
      ]);
      assert.equal(store.deleteRoute('10.20.0.0/16'), true);
      assert.equal(store.deleteRoute('10.20.0.0/16'), false);
      assert.deepEqual(store.listRoutes(), [{ cidr: '192.168.10.0/24', description: 'office' }]);

      const p1 = store.insertPolicy({
        action: 'allow',
        group: 'eng',
        destination: '10.20.0.0/16',
        proto: 'tcp',
        ports: { from: 22, to: 22 },
        direction: 'send',
      });
      const p2 = store.insertPolicy({
        action: 'deny',
        group: '*',
        destination: 'any',
        proto: 'any',
        ports: null,
        direction: 'send',
      });
      const p3 = store.insertPolicy({
        action: 'allow',
        group: 'ops',
        destination: 'group:eng',
        proto: 'udp',
        ports: { from: 5000, to: 5100 },
        direction: 'send',
      });
      assert.deepEqual(p1, {
        id: p1.id,
        action: 'allow',
        group: 'eng',
        destination: '10.20.0.0/16',
        proto: 'tcp',
        ports: { from: 22, to: 22 },
        direction: 'send',
      });
      assert.ok(p1.id < p2.id && p2.id < p3.id);
      assert.deepEqual(store.listPolicies(), [p1, p2, p3], 'policies keep their insertion order');
      assert.equal(store.deletePolicy(p2.id), true);
      assert.equal(store.deletePolicy(p2.id), false);
      assert.deepEqual(store.listPolicies(), [p1, p3]);
      assert.equal(store.deletePolicy(p3.id), true);
      const p4 = store.insertPolicy({
        action: 'deny',
        group: '*',
        destination: 'any',
        proto: 'icmp',
        ports: null,
        direction: 'send',
      });
      assert.ok(p4.id > p3.id, 'a deleted policy id is not reused, not even the newest one');
      assert.deepEqual(store.listPolicies(), [p1, p4]);
    });

    it('change feed: revisions grow by one, kinds and keys in order, misses append nothing', (t) => {
      const store = fresh(t);
      store.putSettings(SETTINGS);
      store.insertGroup({ name: 'eng', description: '' });
      store.insertMember(member(1, { groups: ['eng'] }));
      store.updateMember(member(1, { disabled: true }));
      store.insertRoute({ cidr: '10.20.0.0/16', description: '' });
      const policy = store.insertPolicy({
        action: 'deny',
        group: '*',
        destination: 'any',
        proto: 'any',
        ports: null,
        direction: 'send',
      });
      store.updateGroup({ name: 'eng', description: 'Engineering' });
      store.deletePolicy(policy.id);
      store.deleteRoute('10.20.0.0/16');
      store.deleteMember('m00001');
      store.deleteGroup('eng');
      // Misses change nothing, so they append nothing.
      store.deleteMember('m00001');
      store.updateMember(member(1));
      store.updateGroup({ name: 'eng', description: '' });
      store.deleteGroup('eng');
      store.deleteRoute('10.20.0.0/16');
      store.deletePolicy(policy.id);
      // Neither do the tables outside the feed.
      store.appendAudit({ at: T0, actor: 'cli:root', action: 'member.add', target: 'm00001', detail: {} });
      store.putSecret('gateway.key', 'k');
      store.insertToken('ci', 'hash', T0);
      store.putAdmin({ username: 'admin', passwordHash: 'x', totpSecret: null });
      store.putStatuses([status('m00001')]);
      store.putStatuses([]);
      store.addTraffic([{ name: 'm00001', at: T0, rxBytes: 1, txBytes: 1 }]);

      const expected = [
        ['settings', ''],
        ['group', 'eng'],
        ['member', 'm00001'],
        ['member', 'm00001'],
        ['route', '10.20.0.0/16'],
        ['policy', String(policy.id)],
        ['group', 'eng'],
        ['policy', String(policy.id)],
        ['route', '10.20.0.0/16'],
        ['member', 'm00001'],
        ['group', 'eng'],
      ];
      const all = store.changesSince(0);
      assert.deepEqual(
        all.map((c) => [c.kind, c.key]),
        expected,
      );
      assert.deepEqual(
        all.map((c) => c.rev),
        expected.map((_, i) => i + 1),
      );
      assert.equal(store.revision(), expected.length);
      assert.deepEqual(
        store.changesSince(4, 3).map((c) => c.rev),
        [5, 6, 7],
      );
      assert.deepEqual(store.changesSince(expected.length), []);
      assert.deepEqual(store.changesSince(expected.length + 100), []);
      assert.deepEqual(store.changesSince(-5).length, expected.length);
      assert.deepEqual(store.changesSince(0, 0), []);
      assert.deepEqual(store.changesSince(0, -1), [], 'a negative limit is not "no limit"');
      assert.deepEqual(
        store.changesSince(0, 2.9).map((c) => c.rev),
        [1, 2],
      );
    });

    it('change feed: a rolled-back transaction appends nothing and leaves no gap', (t) => {
      const store = fresh(t);
      store.putSettings(SETTINGS);
      store.insertGroup({ name: 'eng', description: '' });
      const before = store.revision();
      assert.throws(
        () =>
          store.transaction(() => {
            store.insertGroup({ name: 'sales', description: '' });
            store.insertMember(member(2, { groups: ['sales'] }));
            store.putSettings({ ...SETTINGS, mtu: 1280 });
            store.insertRoute({ cidr: '10.30.0.0/16', description: '' });
            store.insertPolicy({
              action: 'allow',
              group: '*',
              destination: 'any',
              proto: 'any',
              ports: null,
              direction: 'send',
            });
            store.deleteGroup('eng');
            throw new Error('abort');
          }),
        /abort/,
      );
      assert.equal(store.revision(), before);
      assert.deepEqual(store.changesSince(before), []);
      assert.equal(store.getGroup('sales'), undefined);
      assert.deepEqual(store.getGroup('eng'), { name: 'eng', description: '' });
      assert.equal(store.getMember('m00002'), undefined);
      assert.equal(store.getSettings()?.mtu, SETTINGS.mtu);
      assert.deepEqual(store.listRoutes(), []);
      assert.deepEqual(store.listPolicies(), []);

      // The next revision follows on directly.
      store.insertGroup({ name: 'sales', description: '' });
      assert.deepEqual(store.changesSince(before), [{ rev: before + 1, kind: 'group', key: 'sales' }]);

      // A mutation that fails on its own (a conflict) is its own rolled-back transaction.
      assert.throws(() => store.insertMember(member(3, { groups: ['sales', 'ghosts'] })), StoreConflict);
      store.insertMember(member(3, { groups: ['sales'] }));
      assert.deepEqual(store.changesSince(before + 1), [{ rev: before + 2, kind: 'member', key: 'm00003' }]);
    });

    it('transaction: returns its value, nested calls join the outer one, inner failures roll back alone', (t) => {
      const store = fresh(t);
      const value = store.transaction(() => {
        store.insertGroup({ name: 'a', description: '' });
        assert.throws(
          () =>
            store.transaction(() => {
              store.insertGroup({ name: 'b', description: '' });
              throw new Error('inner');
            }),
          /inner/,
        );
        // A conflicting insert inside a transaction fails on its own, too.
        assert.throws(() => store.insertGroup({ name: 'a', description: '' }), StoreConflict);
        // So does a member whose second group is missing: its row and first membership go with it.
        assert.throws(() => store.insertMember(member(1, { groups: ['a', 'ghosts'] })), StoreConflict);
        store.transaction(() => store.insertGroup({ name: 'c', description: '' }));
        return 42;
      });
      assert.equal(value, 42);
      assert.deepEqual(
        store.listGroups().map((g) => g.name),
        ['a', 'c'],
      );
      assert.equal(store.getMember('m00001'), undefined);
      assert.deepEqual(store.groupMembers('a'), []);
      assert.deepEqual(store.changesSince(0), [
        { rev: 1, kind: 'group', key: 'a' },
        { rev: 2, kind: 'group', key: 'c' },
      ]);

      assert.throws(
        () =>
          store.transaction(() => {
            store.transaction(() => store.insertGroup({ name: 'd', description: '' }));
            assert.deepEqual(store.getGroup('d'), { name: 'd', description: '' }, 'visible inside');
            throw new Error('outer');
          }),
        /outer/,
      );
      assert.equal(store.getGroup('d'), undefined, 'an inner transaction commits only with the outer one');
      assert.equal(store.revision(), 2);

      // Three levels deep, the middle one failing: the innermost goes with it, the outermost stays.
      store.transaction(() => {
        store.insertGroup({ name: 'x', description: '' });
        assert.throws(() =>
          store.transaction(() => {
            store.transaction(() => store.insertGroup({ name: 'y', description: '' }));
            throw new Error('middle');
          }),
        );
        store.transaction(() => store.insertGroup({ name: 'z', description: '' }));
      });
      assert.deepEqual(
        store.listGroups().map((g) => g.name),
        ['a', 'c', 'x', 'z'],
      );
      assert.deepEqual(
        store.changesSince(2).map((c) => [c.rev, c.key]),
        [
          [3, 'x'],
          [4, 'z'],
        ],
      );
    });

    it('transaction: an async function is refused and its writes rolled back', (t) => {
      const store = fresh(t);
      assert.throws(
        () =>
          store.transaction(async () => {
            store.insertGroup({ name: 'e', description: '' });
          }),
        TypeError,
      );
      assert.equal(store.getGroup('e'), undefined);
      assert.equal(store.revision(), 0);
    });

    it('transaction: a rollback undoes every kind of write, not only the change-feed tables', (t) => {
      const store = fresh(t);
      store.putSecret('gateway.key', 'old');
      store.putAdmin({ username: 'admin', passwordHash: 'old', totpSecret: null });
      const token = store.insertToken('ci', 'hash-ci', T0);
      store.putStatuses([status('alice')]);
      store.addTraffic([{ name: 'alice', at: T0, rxBytes: 1, txBytes: 2 }]);
      const audit = store.appendAudit({ at: T0, actor: 'admin', action: 'x', target: 'y', detail: {} });

      assert.throws(
        () =>
          store.transaction(() => {
            store.putSecret('gateway.key', 'new');
            store.putSecret('session.key', 'new');
            store.putAdmin({ username: 'admin', passwordHash: 'new', totpSecret: 'T' });
            store.putAdmin({ username: 'root', passwordHash: 'new', totpSecret: null });
            store.insertToken('ops', 'hash-ops', T1);
            store.touchToken(token.id, T2);
            store.deleteToken(token.id);
            store.putStatuses([status('alice', { online: false }), status('bob')]);
            store.addTraffic([
              { name: 'alice', at: T0, rxBytes: 100, txBytes: 100 },
              { name: 'bob', at: T1, rxBytes: 100, txBytes: 100 },
            ]);
            store.appendAudit({ at: T1, actor: 'admin', action: 'x', target: 'z', detail: {} });
            throw new Error('abort');
          }),
        /abort/,
      );
      assert.equal(store.getSecret('gateway.key'), 'old');
      assert.equal(store.getSecret('session.key'), undefined);
      assert.deepEqual(store.getAdmin('admin'), { username: 'admin', passwordHash: 'old', totpSecret: null });
      assert.equal(store.getAdmin('root'), undefined);
      assert.deepEqual(store.listTokens(), [token]);
      assert.equal(store.findToken('hash-ops'), undefined);
      assert.deepEqual(store.allStatuses(), [status('alice')]);
      assert.deepEqual(store.traffic('', T0), [{ name: '', at: T0, rxBytes: 1, txBytes: 2 }]);
      assert.deepEqual(store.listAudit({ limit: 10 }), [audit]);
    });

    it('listMembers: pages over 2,500 members visit each exactly once, in name order', (t) => {
      const store = fresh(t);
      const members = Array.from({ length: 2500 }, (_, i) => member(i));
      store.transaction(() => {
        for (const m of shuffled(members)) store.insertMember(m);
      });
      const names = members.map((m) => m.name).sort();
      assert.equal(store.countMembers(), 2500);
      assert.deepEqual(
        store.allMembers().map((m) => m.name),
        names,
      );

      for (const limit of [100, 7, 2500, 5000]) {
        const seen: string[] = [];
        let after: string | undefined;
        for (let pages = 0; pages < 1000; pages++) {
          const page = store.listMembers({ after, limit });
          assert.ok(page.length <= limit);
          if (page.length === 0) break;
          seen.push(...page.map((m) => m.name));
          after = page.at(-1)?.name;
        }
        assert.deepEqual(seen, names, `limit ${limit}`);
      }
      assert.deepEqual(store.listMembers({ limit: 0 }), []);
      assert.deepEqual(store.listMembers({ limit: -1 }), [], 'a negative limit is not "no limit"');
      assert.equal(store.listMembers({ limit: 2.9 }).length, 2);
      assert.deepEqual(store.listMembers({ after: names.at(-1), limit: 10 }), []);
      assert.deepEqual(store.listMembers({ after: 'm01000', limit: 1 }), [member(1001)]);
      assert.deepEqual(
        store.listMembers({ after: 'm01000x', limit: 1 }),
        [member(1001)],
        '`after` need not exist',
      );
      assert.deepEqual(store.listMembers({ after: '', limit: 1 }), [member(0)]);
    });

    it('listMembers/countMembers search: name, ip, ip6 and group names, case-insensitively', (t) => {
      const store = fresh(t);
      store.insertGroup({ name: 'Engineering', description: '' });
      store.insertGroup({ name: 'ops', description: '' });
      store.insertGroup({ name: '100%_club', description: '' });
      const members = Array.from({ length: 300 }, (_, i) =>
        member(i, { groups: i % 3 === 0 ? ['Engineering'] : i % 3 === 1 ? ['ops'] : [] }),
      );
      store.transaction(() => {
        for (const m of members) store.insertMember(m);
        store.insertMember(member(1000, { name: 'Alice-Admin', groups: ['100%_club'] }));
      });

      const names = (search: string, limit = 1000, after?: string): string[] =>
        store.listMembers({ search, limit, after }).map((m) => m.name);

      assert.deepEqual(names('alice'), ['Alice-Admin']);
      assert.deepEqual(names('ADMIN'), ['Alice-Admin']);
      const eng = members.filter((_, i) => i % 3 === 0).map((m) => m.name);
      assert.deepEqual(names('engineer'), eng, 'by group name, any case');
      assert.equal(store.countMembers('ENGINEER'), eng.length);
      assert.deepEqual(
        names('OPS'),
        members.filter((_, i) => i % 3 === 1).map((m) => m.name),
      );
      assert.deepEqual(names('10.77.0.42'), ['m00042'], 'by IPv4 address');
      assert.deepEqual(names('10.77.0.25'), [
        'm00025',
        'm00250',
        'm00251',
        'm00252',
        'm00253',
        'm00254',
        'm00255',
      ]);
      assert.deepEqual(names('FD00:77::12B'), ['m00299'], 'by IPv6 address, any case');
      assert.deepEqual(names('%'), ['Alice-Admin'], 'LIKE wildcards are matched literally');
      assert.deepEqual(names('0%_c'), ['Alice-Admin']);
      assert.deepEqual(names('_'), ['Alice-Admin']);
      assert.deepEqual(names('\\'), [], 'so is the escape character');
      assert.equal(store.countMembers('%'), 1);
      assert.deepEqual(names('no such member'), []);
      assert.equal(store.countMembers('no such member'), 0);
      assert.equal(store.countMembers(''), 301);
      assert.equal(store.countMembers(), 301);
      assert.equal(names('').length, 301, 'an empty search is no search');

      // Pages of a search.
      const seen: string[] = [];
      let after: string | undefined;
      for (let pages = 0; pages < 100; pages++) {
        const page = names('engineering', 9, after);
        assert.ok(page.length <= 9);
        if (page.length === 0) break;
        seen.push(...page);
        after = page.at(-1);
      }
      assert.deepEqual(seen, eng);

      // A member's groups are searched as they are now, not as they were.
      store.updateMember({ ...member(1000, { name: 'Alice-Admin' }), groups: ['ops'] });
      assert.deepEqual(names('club'), []);
      assert.ok(names('ops').includes('Alice-Admin'));
    });

    it('audit log: newest first, before, limit and target; detail round-trips as JSON', (t) => {
      const store = fresh(t);
      const detail = {
        ip: '10.77.0.2',
        groups: ['eng'],
        nested: { n: 1, f: 0.1, big: 2 ** 53 - 1, ok: true, none: null, text: 'é ✓ 😀 "q" \\ \n' },
      };
      const a1 = store.appendAudit({
        at: T0,
        actor: 'cli:root',
        action: 'member.add',
        target: 'alice',
        detail,
      });
      const a2 = store.appendAudit({
        at: T1,
        actor: 'token:ci',
        action: 'member.add',
        target: 'bob',
        detail: {},
      });
      const a3 = store.appendAudit({
        at: T2,
        actor: 'admin',
        action: 'member.disable',
        target: 'alice',
        detail: { gone: undefined, when: new Date(T0) },
      });
      assert.deepEqual(a1, {
        id: a1.id,
        at: T0,
        actor: 'cli:root',
        action: 'member.add',
        target: 'alice',
        detail,
      });
      assert.deepEqual(a3.detail, { when: T0 }, 'the returned entry is what was stored (as JSON)');
      assert.ok(a1.id < a2.id && a2.id < a3.id);

      assert.deepEqual(store.listAudit({ limit: 10 }), [a3, a2, a1]);
      assert.deepEqual(store.listAudit({ limit: 2 }), [a3, a2]);
      assert.deepEqual(store.listAudit({ limit: 0 }), []);
      assert.deepEqual(store.listAudit({ limit: -1 }), [], 'a negative limit is not "no limit"');
      assert.deepEqual(store.listAudit({ limit: 10, before: a3.id }), [a2, a1]);
      assert.deepEqual(store.listAudit({ limit: 1, before: a3.id }), [a2]);
      assert.deepEqual(store.listAudit({ limit: 10, before: a1.id }), []);
      assert.deepEqual(store.listAudit({ limit: 10, before: a3.id + 1000 }), [a3, a2, a1]);
      assert.deepEqual(store.listAudit({ limit: 10, target: 'alice' }), [a3, a1]);
      assert.deepEqual(store.listAudit({ limit: 1, target: 'alice' }), [a3]);
      assert.deepEqual(store.listAudit({ limit: 10, target: 'alice', before: a3.id }), [a1]);
      assert.deepEqual(store.listAudit({ limit: 10, target: 'carol' }), []);
      assert.deepEqual(store.listAudit({ limit: 10, target: 'ALICE' }), [], 'targets match exactly');

      // Pages by `before` visit every entry once.
      store.transaction(() => {
        for (let i = 0; i < 50; i++)
          store.appendAudit({ at: T2, actor: 'admin', action: 'n', target: `t${i % 2}`, detail: { i } });
      });
      const seen: number[] = [];
      let before: number | undefined;
      for (let pages = 0; pages < 100; pages++) {
        const page = store.listAudit({ limit: 7, before, target: 't1' });
        if (page.length === 0) break;
        seen.push(...page.map((e) => e.detail.i as number));
        before = page.at(-1)?.id;
      }
      assert.deepEqual(
        seen,
        Array.from({ length: 25 }, (_, k) => 49 - 2 * k),
      );
    });

    it('API tokens: insert, find by hash, touch, list, delete', (t) => {
      const store = fresh(t);
      const ci = store.insertToken('ci', 'hash-ci', T0);
      const ops = store.insertToken('ops', 'hash-ops', T1);
      const ci2 = store.insertToken('ci', 'hash-ci-2', T1);
      assert.deepEqual(ci, { id: ci.id, name: 'ci', createdAt: T0, lastUsedAt: null });
      assert.ok(ci.id < ops.id && ops.id < ci2.id, 'ids grow; names need not be unique');
      assert.deepEqual(store.findToken('hash-ci'), ci);
      assert.deepEqual(store.findToken('hash-ci-2'), ci2);
      assert.equal(store.findToken('hash-nope'), undefined);
      store.touchToken(ci.id, T2);
      store.touchToken(9999, T2);
      assert.deepEqual(store.findToken('hash-ci'), { ...ci, lastUsedAt: T2 });
      assert.deepEqual(store.listTokens(), [{ ...ci, lastUsedAt: T2 }, ops, ci2]);
      assert.equal(store.deleteToken(ci.id), true);
      assert.equal(store.deleteToken(ci.id), false);
      assert.equal(store.findToken('hash-ci'), undefined);
      assert.deepEqual(store.listTokens(), [ops, ci2]);

      assert.equal(store.deleteToken(ci2.id), true);
      const again = store.insertToken('ci', 'hash-ci', T2);
      assert.ok(again.id > ci2.id, 'a deleted token id is not reused, not even the newest one');
      assert.deepEqual(store.findToken('hash-ci'), again, 'the hash of a deleted token is free again');
    });

    it('admin accounts', (t) => {
      const store = fresh(t);
      const account = {
        username: 'admin',
        passwordHash: 'scrypt$16384$8$1$c2FsdA==$aGFzaA==',
        totpSecret: null,
      };
      store.putAdmin(account);
      assert.deepEqual(store.getAdmin('admin'), account);
      const withTotp = { ...account, totpSecret: 'JBSWY3DPEHPK3PXP' };
      store.putAdmin(withTotp);
      assert.deepEqual(store.getAdmin('admin'), withTotp);
      store.putAdmin(account);
      assert.deepEqual(store.getAdmin('admin'), account, 'the TOTP secret can be removed again');
      assert.equal(store.getAdmin('root'), undefined);
      assert.equal(store.getAdmin('ADMIN'), undefined);
    });

    it('download links: taken once, before they expire, while their member exists', (t) => {
      const store = fresh(t);
      store.insertMember(member(1));
      store.insertMember(member(2));
      const rev = store.revision();
      store.insertLink('hash-1', 'm00001', T0, T2);
      store.insertLink('hash-2', 'm00002', T0, T2);
      store.insertLink('hash-3', 'm00001', T0, T1);
      store.insertLink('hash-4', 'm00001', T0, T2);
      assert.equal(store.revision(), rev, 'links are not part of the change feed');

      assert.equal(store.takeLink('hash-nope', T0), undefined);
      assert.equal(store.takeLink('hash-1', T0), 'm00001');
      assert.equal(store.takeLink('hash-1', T0), undefined, 'a used link is not taken again');
      assert.equal(store.takeLink('hash-1', T1), undefined);
      assert.equal(store.takeLink('hash-3', T1), undefined, 'a link is expired from its expiry on');
      assert.equal(store.takeLink('hash-3', T0), 'm00001', 'the refused take did not use it up');

      // A failed transaction gives the link back.
      assert.throws(() =>
        store.transaction(() => {
          assert.equal(store.takeLink('hash-4', T0), 'm00001');
          throw new Error('rolled back');
        }),
      );
      assert.equal(store.takeLink('hash-4', T0), 'm00001', 'the rolled-back take left the link unused');

      // Removing the member ends its links, also for a later member of the same name.
      store.insertLink('hash-5', 'm00002', T0, T2);
      assert.equal(store.deleteMember('m00002'), true);
      store.insertMember(member(2));
      assert.equal(store.takeLink('hash-2', T0), undefined);
      assert.equal(store.takeLink('hash-5', T0), undefined);

      assert.throws(
        () => store.insertLink('hash-6', 'nobody', T0, T2),
        conflictNaming('download_links.member'),
      );
      assert.throws(
        () => store.insertLink('hash-1', 'm00001', T0, T2),
        conflictNaming('download_links.hash'),
      );
      assert.equal(store.takeLink('hash-6', T0), undefined, 'nothing is left of a refused insert');
      store.insertLink('hash-6', 'm00002', T0, T2);
      assert.equal(store.takeLink('hash-6', T1), 'm00002');
    });

    it('config deliveries: one per member, replaced, kept over updates, gone with the member', (t) => {
      const store = fresh(t);
      store.insertMember(member(1));
      store.insertMember(member(2));
      const rev = store.revision();
      assert.equal(store.getConfigDelivery('m00001'), undefined);
      assert.deepEqual(store.allConfigDeliveries(), []);
      const first = { name: 'm00002', fingerprint: 'sha256:aa', deliveredAt: T0 };
      store.putConfigDelivery(first);
      store.putConfigDelivery({ name: 'm00001', fingerprint: 'sha256:bb', deliveredAt: T0 });
      const again = { name: 'm00001', fingerprint: 'sha256:cc', deliveredAt: T1 };
      store.putConfigDelivery(again);
      assert.deepEqual(store.getConfigDelivery('m00001'), again, 'the newer one replaces the older');
      assert.deepEqual(store.allConfigDeliveries(), [again, first], 'by name');
      assert.equal(store.revision(), rev, 'not part of the change feed');

      // An update of the member row (a key rotation) keeps the record: the fingerprint tells it is stale.
      assert.equal(store.updateMember(member(1, { publicKey: member(9).publicKey, updatedAt: T1 })), true);
      assert.deepEqual(store.getConfigDelivery('m00001'), again);

      assert.throws(
        () => store.putConfigDelivery({ name: 'nobody', fingerprint: 'x', deliveredAt: T0 }),
        conflictNaming('config_deliveries.member'),
      );
      assert.throws(() =>
        store.transaction(() => {
          store.putConfigDelivery({ name: 'm00002', fingerprint: 'sha256:dd', deliveredAt: T1 });
          throw new Error('rolled back');
        }),
      );
      assert.deepEqual(store.getConfigDelivery('m00002'), first, 'a rolled-back put leaves the old one');

      // Removing the member removes its record, also for a later member of the same name.
      assert.equal(store.deleteMember('m00002'), true);
      store.insertMember(member(2));
      assert.equal(store.getConfigDelivery('m00002'), undefined);
      assert.deepEqual(store.allConfigDeliveries(), [again]);
    });

    it('config deliveries and links per protocol: an OpenVPN record beside the WireGuard one', (t) => {
      const store = fresh(t);
      store.insertMember(member(1));
      const wg = { name: 'm00001', fingerprint: 'sha256:wg', deliveredAt: T0 };
      const ovpn = { name: 'm00001', fingerprint: 'sha256:ovpn', deliveredAt: T1 };
      store.putConfigDelivery(wg);
      store.putConfigDelivery(ovpn, 'openvpn');
      assert.deepEqual(store.getConfigDelivery('m00001'), wg);
      assert.deepEqual(store.getConfigDelivery('m00001', 'wireguard'), wg);
      assert.deepEqual(store.getConfigDelivery('m00001', 'openvpn'), ovpn);
      assert.deepEqual(store.allConfigDeliveries(), [wg]);
      assert.deepEqual(store.allConfigDeliveries('openvpn'), [ovpn]);
      store.insertLink('hash-w', 'm00001', T0, T2);
      store.insertLink('hash-o', 'm00001', T0, T2, 'openvpn');
      assert.equal(store.linkProtocol('hash-w'), 'wireguard');
      assert.equal(store.linkProtocol('hash-o'), 'openvpn');
      assert.equal(store.linkProtocol('hash-x'), undefined);
      assert.equal(store.deleteMember('m00001'), true);
      assert.deepEqual(store.allConfigDeliveries('openvpn'), []);
      assert.equal(store.linkProtocol('hash-o'), undefined, 'links go with the member');
    });

    it('OpenVPN credentials: one current per member, revoked to a list that outlives the member', (t) => {
      const store = fresh(t);
      store.insertMember(member(1));
      store.insertMember(member(2));
      const rev = store.revision();
      const credential = (name: string, n: number): OpenVpnCredential => ({
        name,
        serial: `0${n}ab`,
        clientKeyId: `c${n}`.repeat(8),
        certificate: `CERT ${n}`,
        privateKey: `KEY ${n}`,
        tlsCryptV2Key: `TC2 ${n}`,
        notAfter: T2,
        issuedAt: T0,
      });
      assert.equal(store.getOpenVpnCredential('m00001'), undefined);
      assert.equal(store.putOpenVpnCredential(credential('m00001', 1)), true);
      assert.equal(store.putOpenVpnCredential(credential('m00001', 2)), false, 'the first one stays');
      assert.deepEqual(store.getOpenVpnCredential('m00001'), credential('m00001', 1));
      assert.deepEqual(store.findOpenVpnCredential({ serial: '01ab' }), credential('m00001', 1));
      assert.deepEqual(store.findOpenVpnCredential({ clientKeyId: 'c1'.repeat(8) }), credential('m00001', 1));
      assert.equal(store.findOpenVpnCredential({ serial: '02ab' }), undefined);
      assert.throws(
        () => store.putOpenVpnCredential(credential('nobody', 3)),
        conflictNaming('openvpn_credentials.member'),
      );
      assert.equal(store.revision(), rev, 'not part of the change feed');

      assert.throws(() =>
        store.transaction(() => {
          store.revokeOpenVpnCredential('m00001', T1, 'rotated');
          throw new Error('rolled back');
        }),
      );
      assert.deepEqual(
        store.getOpenVpnCredential('m00001'),
        credential('m00001', 1),
        'a rolled-back revocation',
      );
      assert.deepEqual(store.allOpenVpnRevocations(), []);

      const revoked = store.revokeOpenVpnCredential('m00001', T1, 'rotated');
      assert.deepEqual(revoked, {
        serial: '01ab',
        clientKeyId: 'c1'.repeat(8),
        name: 'm00001',
        revokedAt: T1,
        reason: 'rotated',
      });
      assert.equal(store.getOpenVpnCredential('m00001'), undefined);
      assert.equal(store.findOpenVpnCredential({ serial: '01ab' }), undefined);
      assert.deepEqual(store.findOpenVpnRevocation({ serial: '01ab' }), revoked);
      assert.deepEqual(store.findOpenVpnRevocation({ clientKeyId: 'c1'.repeat(8) }), revoked);
      assert.equal(store.revokeOpenVpnCredential('m00001', T1, 'rotated'), undefined);
      assert.equal(store.putOpenVpnCredential(credential('m00001', 3)), true, 'new ones after a revocation');

      store.putOpenVpnCredential(credential('m00002', 2));
      assert.equal(store.deleteMember('m00002'), true);
      assert.equal(store.findOpenVpnRevocation({ serial: '02ab' })?.reason, 'removed');
      store.insertMember(member(2));
      assert.equal(store.getOpenVpnCredential('m00002'), undefined, 'a new member of the name has none');
      assert.deepEqual(
        store.allOpenVpnRevocations().map((r) => r.serial),
        ['01ab', '02ab'],
      );
    });

    it('member statuses: putStatuses upserts many rows at once, allStatuses by name', (t) => {
      const store = fresh(t);
      const alice = status('alice');
      const bob = status('bob', { online: false, endpoint: null, lastHandshake: null, rxBytes: 0 });
      store.putStatuses([bob, alice]);
      assert.deepEqual(store.getStatus('alice'), alice);
      assert.deepEqual(store.allStatuses(), [alice, bob]);
      const alice2 = { ...alice, online: false, rxBytes: 5_000_000_000, txBytes: 2 ** 53 - 1, updatedAt: T1 };
      store.putStatuses([alice2]);
      assert.deepEqual(store.allStatuses(), [alice2, bob], 'rows not reported keep their values');
      store.putStatuses([]);
      assert.deepEqual(store.allStatuses(), [alice2, bob]);
      assert.equal(store.getStatus('carol'), undefined);
    });

    it('memberCounts: all, disabled, expired at the moment given, online as reported', (t) => {
      const store = fresh(t);
      assert.deepEqual(store.memberCounts(T1), { total: 0, disabled: 0, expired: 0, online: 0 });
      store.transaction(() => {
        store.insertMember(member(1));
        store.insertMember(member(2, { disabled: true }));
        store.insertMember(member(3, { expiresAt: T0 }));
        store.insertMember(member(4, { expiresAt: T1 }));
        store.insertMember(member(5, { expiresAt: T2 }));
        store.insertMember(member(6, { disabled: true, expiresAt: T0 }));
      });
      store.putStatuses([
        status('m00001'),
        status('m00002'),
        status('m00005', { online: false }),
        status('gone'), // a status row outlives its member until the gateway reports again
      ]);
      assert.deepEqual(store.memberCounts(T0), { total: 6, disabled: 2, expired: 1, online: 2 });
      assert.deepEqual(
        store.memberCounts(T1),
        { total: 6, disabled: 2, expired: 2, online: 2 },
        'expiring at the moment given counts as expired, as ControlPlane.isActive has it',
      );
      assert.deepEqual(store.memberCounts('2030-01-01T00:00:00.000Z'), {
        total: 6,
        disabled: 2,
        expired: 3,
        online: 2,
      });
      store.deleteMember('m00001');
      assert.deepEqual(store.memberCounts(T0), { total: 5, disabled: 2, expired: 1, online: 1 });
    });

    it('traffic: buckets add up, since filters, "" sums every member', (t) => {
      const store = fresh(t);
      store.addTraffic([
        { name: 'alice', at: T1, rxBytes: 200, txBytes: 20 },
        { name: 'alice', at: T0, rxBytes: 100, txBytes: 10 },
        { name: 'bob', at: T1, rxBytes: 1000, txBytes: 1 },
      ]);
      store.addTraffic([
        { name: 'alice', at: T1, rxBytes: 5, txBytes: 5 },
        { name: 'alice', at: T1, rxBytes: 0, txBytes: 0 },
        { name: 'bob', at: T2, rxBytes: 7, txBytes: 0 },
      ]);
      store.addTraffic([]);
      assert.deepEqual(store.traffic('alice', T0), [
        { name: 'alice', at: T0, rxBytes: 100, txBytes: 10 },
        { name: 'alice', at: T1, rxBytes: 205, txBytes: 25 },
      ]);
      assert.deepEqual(store.traffic('alice', T1), [{ name: 'alice', at: T1, rxBytes: 205, txBytes: 25 }]);
      assert.deepEqual(
        store.traffic('alice', '2024-05-01T12:00:30.000Z'),
        [{ name: 'alice', at: T1, rxBytes: 205, txBytes: 25 }],
        '`since` need not be a bucket',
      );
      assert.deepEqual(store.traffic('alice', T2), []);
      assert.deepEqual(store.traffic('carol', T0), []);
      assert.deepEqual(store.traffic('', T0), [
        { name: '', at: T0, rxBytes: 100, txBytes: 10 },
        { name: '', at: T1, rxBytes: 1205, txBytes: 26 },
        { name: '', at: T2, rxBytes: 7, txBytes: 0 },
      ]);
      assert.deepEqual(store.traffic('', T2), [{ name: '', at: T2, rxBytes: 7, txBytes: 0 }]);
      // Byte counts beyond 32 bits add up exactly.
      store.addTraffic([{ name: 'bob', at: T2, rxBytes: 6_000_000_000, txBytes: 2 ** 40 }]);
      assert.deepEqual(store.traffic('bob', T2), [
        { name: 'bob', at: T2, rxBytes: 6_000_000_007, txBytes: 2 ** 40 },
      ]);
    });

    it('values are copied in and out: a caller cannot change what the store holds', (t) => {
      const store = fresh(t);
      store.insertGroup({ name: 'eng', description: '' });
      store.insertGroup({ name: 'ops', description: '' });
      const groups = ['eng'];
      const settings = { ...SETTINGS, dns: ['10.77.0.1'] };
      store.putSettings(settings);
      store.insertMember(member(1, { groups }));
      const ports = { from: 22, to: 22 };
      const policy = store.insertPolicy({
        action: 'allow',
        group: '*',
        destination: 'any',
        proto: 'tcp',
        ports,
        direction: 'send',
      });
      groups.push('ops');
      settings.dns.push('1.1.1.1');
      ports.to = 80;

      (store.getMember('m00001')?.groups as string[]).push('ops');
      (store.allMembers()[0]?.groups as string[]).push('ops');
      (store.getSettings()?.dns as string[]).push('9.9.9.9');
      (policy.ports as { to: number }).to = 443;
      (store.listPolicies()[0]?.ports as { to: number }).to = 443;

      assert.deepEqual(store.getMember('m00001')?.groups, ['eng']);
      assert.deepEqual(store.groupMembers('ops'), []);
      assert.deepEqual(store.getSettings()?.dns, ['10.77.0.1']);
      assert.deepEqual(store.listPolicies()[0]?.ports, { from: 22, to: 22 });
    });

    it('close: can be called twice; a closed store refuses to be used', (t) => {
      const store = fresh(t);
      store.insertGroup({ name: 'eng', description: '' });
      store.close();
      store.close();
      assert.throws(() => store.getGroup('eng'));
      assert.throws(() => store.insertGroup({ name: 'ops', description: '' }));
      assert.throws(() => store.revision());
    });
    it('sites: insert, get, list by name, update, delete, each in the change feed', (t) => {
      const store = fresh(t);
      assert.deepEqual(store.listSites(), []);
      assert.equal(store.getSite('hq'), undefined);
      const rev0 = store.revision();
      const b = site('branch', { remoteAddress: null, startAction: 'wait', localId: null, groups: [] });
      const h = site('hq', {
        mode: 'transport',
        dpdAction: 'hold',
        allowLegacyGroups: true,
        forceShortPsk: true,
        gateway: 'gw-b',
      });
      store.insertSite(h);
      store.insertSite(b);
      assert.deepEqual(store.getSite('hq'), h);
      assert.deepEqual(store.getSite('branch'), b);
      assert.deepEqual(store.listSites(), [b, h], 'ordered by name');
      assert.deepEqual(feed(store, rev0), [
        ['site', 'hq'],
        ['site', 'branch'],
      ]);

      const changed = { ...h, enabled: false, remoteSubnets: ['10.30.0.0/16'], updatedAt: T2 };
      // A certificate site: the PEM fields and the auth kind come back as written; the key is empty.
      const cert = {
        ...changed,
        auth: 'cert' as const,
        psk: '',
        certificate: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
        privateKey: '-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n',
        caCertificates: '-----BEGIN CERTIFICATE-----\nCCCC\n-----END CERTIFICATE-----\n',
      };
      assert.equal(store.updateSite(cert), true);
      assert.deepEqual(store.getSite('hq'), cert);
      assert.equal(store.updateSite(changed), true);
      assert.deepEqual(store.getSite('hq'), changed);
      assert.equal(store.updateSite(site('nowhere')), false);
      assert.equal(store.deleteSite('branch'), true);
      assert.equal(store.deleteSite('branch'), false);
      assert.deepEqual(store.listSites(), [changed]);
      assert.deepEqual(feed(store, rev0), [
        ['site', 'hq'],
        ['site', 'branch'],
        ['site', 'hq'],
        ['site', 'hq'],
        ['site', 'branch'],
      ]);
    });

    it('sites: a duplicate name is a StoreConflict, and a rolled-back insert leaves nothing', (t) => {
      const store = fresh(t);
      store.insertSite(site('hq'));
      const rev = store.revision();
      assert.throws(
        () => store.insertSite(site('hq', { psk: 'another-key-of-enough-length' })),
        (err: unknown) => err instanceof StoreConflict && err.message === 'a site named "hq" already exists',
      );
      assert.equal(store.getSite('hq')?.psk, site('hq').psk);
      assert.throws(() =>
        store.transaction(() => {
          store.insertSite(site('branch'));
          store.deleteSite('hq');
          throw new Error('rolled back');
        }),
      );
      assert.deepEqual(
        store.listSites().map((s) => s.name),
        ['hq'],
      );
      assert.equal(store.revision(), rev);
    });

    it('site statuses: replaced wholesale, not in the change feed, gone with their site', (t) => {
      const store = fresh(t);
      store.insertSite(site('hq'));
      store.insertSite(site('branch'));
      const rev = store.revision();
      assert.deepEqual(store.allSiteStatuses(), []);
      const hq = siteStatus('hq');
      const branch = siteStatus('branch', {
        state: 'down',
        ike: null,
        children: [],
        lastError: { at: T1, message: 'no proposal chosen' },
      });
      store.putSiteStatuses([hq, branch]);
      assert.deepEqual(store.allSiteStatuses(), [branch, hq]);
      store.putSiteStatuses([siteStatus('hq', { state: 'connecting', at: T2 })]);
      assert.deepEqual(store.allSiteStatuses(), [siteStatus('hq', { state: 'connecting', at: T2 })]);
      assert.equal(store.revision(), rev, 'statuses are not changes of the network');
      store.putSiteStatuses([hq, branch]);
      store.deleteSite('hq');
      assert.deepEqual(store.allSiteStatuses(), [branch]);
      store.putSiteStatuses([]);
      assert.deepEqual(store.allSiteStatuses(), []);
    });

    it('sites: IKE details (per pair, hard lifetimes, fragment size, byte lifetimes past 2^32) and their defaults', (t) => {
      const store = fresh(t);
      const defaults = {
        childPerSubnetPair: false,
        ikeHardLifetimeSec: null,
        childHardLifetimeSec: null,
        fragmentSize: 1_280,
        childRekeyBytes: 0,
        childLifeBytes: 0,
      };
      store.insertSite(site('hq'));
      store.insertSite(site('branch', defaults));
      assert.deepEqual(store.getSite('hq'), site('hq'));
      assert.deepEqual(store.getSite('branch'), site('branch', defaults));
      const changed = site('hq', { ...defaults, childHardLifetimeSec: 4_000, childLifeBytes: 2 ** 53 - 1 });
      assert.equal(store.updateSite(changed), true);
      assert.deepEqual(store.getSite('hq'), changed);
    });

    it('sites: values are copied in and out', (t) => {
      const store = fresh(t);
      const s = site('hq');
      store.insertSite(s);
      s.remoteSubnets.push('10.99.0.0/16');
      (store.getSite('hq')?.groups as string[]).push('x');
      (store.listSites()[0]?.localSubnets as string[]).push('x');
      assert.deepEqual(store.getSite('hq'), site('hq'));
    });
  });
}
