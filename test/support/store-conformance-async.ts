/**
 * The Store conformance suite for the asynchronous interface (src/control/store-async.ts): every case of the
 * synchronous suite (test/support/store-conformance.ts), with each call awaited, and transactions taking
 * async functions, so one set of cases holds for the SQLite store (through the async adapter) and the
 * PostgreSQL store. The synchronous suite stays as it is for the code that uses the synchronous interface.
 *
 * Differences, all from the interface and not from what a store must do:
 *   - "an async function is refused" (a synchronous transaction's rule) becomes "an async function's awaited
 *     calls all belong to the transaction", and a case checks that a transaction's writes stay invisible to
 *     calls made outside it while it is open, and are gone when it rolls back;
 *   - `close` is awaited, and a closed store's calls reject.
 * A change to a case of one suite belongs in the other too.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { MemberRecord, MemberStatus, OpenVpnCredential, Settings } from '../../src/control/model.js';
import { StoreConflict } from '../../src/control/store.js';
import type { AsyncStore } from '../../src/control/store-async.js';

import { member, SETTINGS, site, siteStatus, T0 } from './store-conformance.js';

export interface OpenedAsyncStore {
  readonly store: AsyncStore;
  /** Closes the store and frees what it used; may assert (it runs after each case). */
  readonly close: () => Promise<void>;
}

const T1 = '2024-05-01T12:01:00.000Z';
const T2 = '2024-05-01T12:02:00.000Z';

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

async function feed(store: AsyncStore, since = 0): Promise<[string, string][]> {
  return (await store.changesSince(since)).map((c) => [c.kind, c.key]);
}

/** Registers the suite under `describe(name)`. */
/**
 * An implementation's database at schema version 10 (built with its own migrations), opened with this build:
 * with `member`, it holds the member `m00001` (as `member(1)` without groups); it always holds the policy
 * "allow eng 10.20.0.0/16:tcp/22" (written at version 10, so it has no direction).
 */
export type OpenAtVersion10 = (seed: { readonly member: boolean }) => Promise<OpenedAsyncStore>;

export function asyncStoreConformance(
  name: string,
  open: () => Promise<OpenedAsyncStore>,
  atVersion10?: OpenAtVersion10,
): void {
  /** A fresh store, closed when the test ends. */
  async function fresh(t: TestContext): Promise<AsyncStore> {
    const { store, close } = await open();
    t.after(close);
    return store;
  }

  describe(`AsyncStore conformance: ${name}`, () => {
    it('a new store is empty, at revision 0', async (t) => {
      const store = await fresh(t);
      assert.equal(typeof store.path, 'string');
      assert.ok(Number.isInteger(store.schemaVersion) && store.schemaVersion >= 1);
      assert.equal(await store.revision(), 0);
      assert.deepEqual(await store.changesSince(0), []);
      assert.equal(await store.getSettings(), undefined);
      assert.equal(await store.getSecret('gateway.key'), undefined);
      assert.deepEqual(await store.allMembers(), []);
      assert.deepEqual(await store.listMembers({ limit: 10 }), []);
      assert.equal(await store.countMembers(), 0);
      assert.equal(await store.getMemberByIp('10.77.0.1'), undefined);
      assert.deepEqual(await store.listGroups(), []);
      assert.deepEqual(await store.listRoutes(), []);
      assert.deepEqual(await store.listPolicies(), []);
      assert.deepEqual(await store.listAudit({ limit: 10 }), []);
      assert.deepEqual(await store.listTokens(), []);
      assert.equal(await store.getAdmin('admin'), undefined);
      assert.deepEqual(await store.allStatuses(), []);
      assert.deepEqual(await store.traffic('', T0), []);
    });

    it('settings and secrets; secrets are not part of the change feed', async (t) => {
      const store = await fresh(t);
      await store.putSettings(SETTINGS);
      assert.deepEqual(await store.getSettings(), SETTINGS);
      const changed: Settings = { ...SETTINGS, mtu: 1380, natEgress: null, subnet6: null, dns: [] };
      await store.putSettings(changed);
      assert.deepEqual(await store.getSettings(), changed);

      await store.putSecret('gateway.key', 'a');
      await store.putSecret('session.key', 'b');
      await store.putSecret('gateway.key', 'c');
      assert.equal(await store.getSecret('gateway.key'), 'c');
      assert.equal(await store.getSecret('session.key'), 'b');
      assert.deepEqual(await feed(store), [
        ['settings', ''],
        ['settings', ''],
      ]);
    });

    it('members: insert, the three lookups, update, delete, addresses freed', async (t) => {
      const store = await fresh(t);
      await store.insertGroup({ name: 'eng', description: '' });
      await store.insertGroup({ name: 'ops', description: '' });
      await store.insertGroup({ name: 'admins', description: '' });

      const alice = member(1, { name: 'alice', groups: ['ops', 'eng'] });
      const bob = member(2, {
        name: 'bob',
        ip6: null,
        privateKey: null,
        hasPrivateKey: false,
        fullTunnel: true,
      });
      await store.insertMember(alice);
      await store.insertMember(bob);

      assert.deepEqual(await store.getMember('alice'), alice, 'groups come back in the order given');
      assert.deepEqual(await store.getMember('bob'), bob);
      assert.equal(await store.getMember('carol'), undefined);
      assert.equal((await store.getMemberByIp(alice.ip))?.name, 'alice');
      assert.equal(
        (await store.getMemberByIp(alice.ip6 ?? ''))?.name,
        'alice',
        'IPv6 addresses are found too',
      );
      assert.equal(await store.getMemberByIp('10.99.0.1'), undefined);
      assert.deepEqual(await store.getMemberByPublicKey(bob.publicKey), bob);
      assert.equal(await store.getMemberByPublicKey('nope'), undefined);
      assert.equal(await store.countMembers(), 2);
      assert.deepEqual(await store.allMembers(), [alice, bob]);
      assert.deepEqual(
        await Promise.all(
          [alice.ip, alice.ip6!, bob.ip].map(async (ip) => (await store.getMemberByIp(ip))?.name),
        ),
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
      assert.equal(await store.updateMember(alice2), true);
      assert.deepEqual(await store.getMember('alice'), alice2);
      assert.equal(await store.getMemberByIp(alice.ip), undefined, 'the old address is free again');
      assert.equal(await store.getMemberByIp(alice.ip6 ?? ''), undefined);
      assert.equal(await store.getMemberByPublicKey(alice.publicKey), undefined, 'so is the old key');
      assert.equal((await store.getMemberByPublicKey(alice2.publicKey))?.name, 'alice');
      assert.deepEqual(await store.groupMembers('ops'), []);
      assert.deepEqual(await store.groupMembers('eng'), ['alice']);
      assert.deepEqual(await store.groupMembers('admins'), ['alice']);
      // An update may keep the member's own address and key: they are not a conflict with itself.
      assert.equal(await store.updateMember({ ...alice2, disabled: false }), true);
      assert.equal((await store.getMember('alice'))?.disabled, false);
      assert.equal(await store.updateMember(member(3, { name: 'carol' })), false);
      assert.equal(await store.getMember('carol'), undefined);

      assert.equal(await store.deleteMember('alice'), true);
      assert.equal(await store.deleteMember('alice'), false);
      assert.equal(await store.getMember('alice'), undefined);
      assert.equal(await store.getMemberByIp(alice.ip), undefined);
      assert.equal(await store.getMemberByIp(alice.ip6!), undefined);
      assert.equal((await store.getMemberByIp(bob.ip))?.name, 'bob');
      assert.equal(await store.countMembers(), 1);
      // The freed address and key can be given to someone else.
      await store.insertMember(member(4, { name: 'dave', ip: alice2.ip, publicKey: alice2.publicKey }));
      assert.equal((await store.getMemberByIp(alice2.ip))?.name, 'dave');
    });

    it("a member's groups keep the order given, without repeats", async (t) => {
      const store = await fresh(t);
      for (const g of ['a', 'b', 'c']) await store.insertGroup({ name: g, description: '' });
      await store.insertMember(member(1, { groups: ['c', 'a', 'c', 'b', 'a'] }));
      assert.deepEqual((await store.getMember('m00001'))?.groups, ['c', 'a', 'b']);
      await store.updateMember(member(1, { groups: ['b', 'b'] }));
      assert.deepEqual((await store.getMember('m00001'))?.groups, ['b']);
      assert.deepEqual(await store.groupMembers('b'), ['m00001']);
      assert.deepEqual(await store.groupMembers('c'), []);
    });

    it('unique violations throw StoreConflict naming the column, and leave nothing behind', async (t) => {
      const store = await fresh(t);
      await store.insertGroup({ name: 'eng', description: '' });
      await store.insertMember(member(1, { groups: ['eng'] }));
      const rev = await store.revision();
      const fresh2 = member(2);

      await assert.rejects(
        async () => await store.insertMember({ ...fresh2, name: 'm00001' }),
        conflictNaming('members.name'),
      );
      await assert.rejects(
        async () => await store.insertMember({ ...fresh2, ip: member(1).ip }),
        conflictNaming('members.ip'),
      );
      await assert.rejects(
        async () => await store.insertMember({ ...fresh2, ip6: member(1).ip6 }),
        conflictNaming('members.ip6'),
      );
      await assert.rejects(
        async () => await store.insertMember({ ...fresh2, publicKey: member(1).publicKey }),
        conflictNaming('members.public_key'),
      );
      await assert.rejects(
        async () => await store.insertMember({ ...fresh2, groups: ['eng', 'ghosts'] }),
        (err: unknown) => {
          assert.ok(err instanceof StoreConflict, String(err));
          assert.match(err.message, /ghosts/);
          return true;
        },
      );
      assert.equal(await store.getMember('m00002'), undefined, 'a failed insert leaves no member behind');
      assert.deepEqual(await store.groupMembers('eng'), ['m00001']);
      await assert.rejects(
        async () => await store.insertGroup({ name: 'eng', description: 'again' }),
        conflictNaming('groups.name'),
      );
      assert.equal((await store.getGroup('eng'))?.description, '');
      await store.insertRoute({ cidr: '10.20.0.0/16', description: 'vpc' });
      await assert.rejects(
        async () => await store.insertRoute({ cidr: '10.20.0.0/16', description: '' }),
        conflictNaming('routes.cidr'),
      );
      assert.deepEqual(await store.listRoutes(), [{ cidr: '10.20.0.0/16', description: 'vpc' }]);
      const token = await store.insertToken('ci', 'hash-1', T0);
      await assert.rejects(
        async () => await store.insertToken('other', 'hash-1', T0),
        conflictNaming('tokens.hash'),
      );
      assert.deepEqual(await store.listTokens(), [token]);

      // Two members may both have no IPv6 address.
      await store.insertMember({ ...fresh2, ip6: null });
      await store.insertMember({ ...member(3), ip6: null });

      await store.insertMember(member(4));
      await assert.rejects(
        async () => await store.updateMember({ ...member(4), ip: member(1).ip }),
        conflictNaming('members.ip'),
      );
      await assert.rejects(
        async () => await store.updateMember({ ...member(4), ip6: member(1).ip6 }),
        conflictNaming('members.ip6'),
      );
      await assert.rejects(
        async () => await store.updateMember({ ...member(4), publicKey: member(1).publicKey }),
        conflictNaming('members.public_key'),
      );
      assert.deepEqual(await store.getMember('m00004'), member(4), 'a failed update changes nothing');
      await assert.rejects(
        async () => await store.updateMember({ ...member(4), groups: ['ghosts'] }),
        StoreConflict,
      );
      assert.deepEqual(await store.getMember('m00004'), member(4), 'not even the groups');

      assert.equal((await store.getMember('m00002'))?.ip6, null);
      assert.deepEqual(
        await feed(store, rev),
        [
          ['route', '10.20.0.0/16'],
          ['member', 'm00002'],
          ['member', 'm00003'],
          ['member', 'm00004'],
        ],
        'failed mutations append no change',
      );
      assert.deepEqual(
        (await store.changesSince(rev)).map((c) => c.rev),
        [rev + 1, rev + 2, rev + 3, rev + 4],
        'and leave no gap in the revisions',
      );
    });

    it('deleting a member removes its group memberships; deleting a group removes it from its members', async (t) => {
      const store = await fresh(t);
      await store.insertGroup({ name: 'eng', description: '' });
      await store.insertGroup({ name: 'ops', description: '' });
      await store.insertMember(member(3, { groups: ['ops', 'eng'] }));
      await store.insertMember(member(1, { groups: ['eng', 'ops'] }));
      await store.insertMember(member(2, { groups: ['eng'] }));
      await store.insertMember(member(4, { groups: [] }));
      assert.deepEqual(await store.groupMembers('eng'), ['m00001', 'm00002', 'm00003'], 'by name');

      assert.equal(await store.deleteMember('m00001'), true);
      assert.deepEqual(await store.groupMembers('eng'), ['m00002', 'm00003']);
      assert.deepEqual(await store.groupMembers('ops'), ['m00003']);
      // A new member with the deleted one's name does not inherit its groups.
      await store.insertMember(member(1));
      assert.deepEqual((await store.getMember('m00001'))?.groups, []);
      assert.deepEqual(await store.groupMembers('eng'), ['m00002', 'm00003']);

      const rev = await store.revision();
      assert.equal(await store.deleteGroup('eng'), true);
      assert.equal(await store.deleteGroup('eng'), false);
      assert.equal(await store.getGroup('eng'), undefined);
      assert.deepEqual((await store.getMember('m00002'))?.groups, []);
      assert.deepEqual((await store.getMember('m00003'))?.groups, ['ops']);
      assert.deepEqual((await store.getMember('m00004'))?.groups, []);
      assert.deepEqual(
        await feed(store, rev),
        [
          ['group', 'eng'],
          ['member', 'm00002'],
          ['member', 'm00003'],
        ],
        'each member that left the group gets a change, after the group, in name order',
      );

      // A group with the deleted one's name starts empty.
      await store.insertGroup({ name: 'eng', description: '' });
      assert.deepEqual(await store.groupMembers('eng'), []);
    });

    it('groups, routes and policies', async (t) => {
      const store = await fresh(t);
      await store.insertGroup({ name: 'ops', description: 'Operations' });
      await store.insertGroup({ name: 'eng', description: 'Engineering' });
      assert.deepEqual(await store.listGroups(), [
        { name: 'eng', description: 'Engineering' },
        { name: 'ops', description: 'Operations' },
      ]);
      assert.deepEqual(await store.getGroup('ops'), { name: 'ops', description: 'Operations' });
      assert.equal(await store.getGroup('sales'), undefined);
      assert.equal(await store.updateGroup({ name: 'ops', description: 'SRE' }), true);
      assert.equal(await store.updateGroup({ name: 'sales', description: '' }), false);
      assert.equal(await store.getGroup('sales'), undefined, 'an update does not create');
      assert.equal((await store.getGroup('ops'))?.description, 'SRE');
      assert.deepEqual(await store.groupMembers('nope'), []);

      await store.insertRoute({ cidr: '192.168.10.0/24', description: 'office' });
      await store.insertRoute({ cidr: '10.20.0.0/16', description: 'vpc', gateway: 'gw-b' });
      // The gateway serving a route (schema 10) comes back as written; a route without one has no key.
      assert.deepEqual(await store.listRoutes(), [
        { cidr: '10.20.0.0/16', description: 'vpc', gateway: 'gw-b' },
        { cidr: '192.168.10.0/24', description: 'office' },
      ]);
      assert.equal(await store.deleteRoute('10.20.0.0/16'), true);
      assert.equal(await store.deleteRoute('10.20.0.0/16'), false);
      assert.deepEqual(await store.listRoutes(), [{ cidr: '192.168.10.0/24', description: 'office' }]);

      const p1 = await store.insertPolicy({
        action: 'allow',
        group: 'eng',
        destination: '10.20.0.0/16',
        proto: 'tcp',
        ports: { from: 22, to: 22 },
        direction: 'send',
      });
      const p2 = await store.insertPolicy({
        action: 'deny',
        group: '*',
        destination: 'any',
        proto: 'any',
        ports: null,
        direction: 'send',
      });
      const p3 = await store.insertPolicy({
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
      assert.deepEqual(await store.listPolicies(), [p1, p2, p3], 'policies keep their insertion order');
      assert.equal(await store.deletePolicy(p2.id), true);
      assert.equal(await store.deletePolicy(p2.id), false);
      assert.deepEqual(await store.listPolicies(), [p1, p3]);
      assert.equal(await store.deletePolicy(p3.id), true);
      const p4 = await store.insertPolicy({
        action: 'deny',
        group: '*',
        destination: 'any',
        proto: 'icmp',
        ports: null,
        direction: 'send',
      });
      assert.ok(p4.id > p3.id, 'a deleted policy id is not reused, not even the newest one');
      assert.deepEqual(await store.listPolicies(), [p1, p4]);
    });

    it('change feed: revisions grow by one, kinds and keys in order, misses append nothing', async (t) => {
      const store = await fresh(t);
      await store.putSettings(SETTINGS);
      await store.insertGroup({ name: 'eng', description: '' });
      await store.insertMember(member(1, { groups: ['eng'] }));
      await store.updateMember(member(1, { disabled: true }));
      await store.insertRoute({ cidr: '10.20.0.0/16', description: '' });
      const policy = await store.insertPolicy({
        action: 'deny',
        group: '*',
        destination: 'any',
        proto: 'any',
        ports: null,
        direction: 'send',
      });
      await store.updateGroup({ name: 'eng', description: 'Engineering' });
      await store.deletePolicy(policy.id);
      await store.deleteRoute('10.20.0.0/16');
      await store.deleteMember('m00001');
      await store.deleteGroup('eng');
      // Misses change nothing, so they append nothing.
      await store.deleteMember('m00001');
      await store.updateMember(member(1));
      await store.updateGroup({ name: 'eng', description: '' });
      await store.deleteGroup('eng');
      await store.deleteRoute('10.20.0.0/16');
      await store.deletePolicy(policy.id);
      // Neither do the tables outside the feed.
      await store.appendAudit({
        at: T0,
        actor: 'cli:root',
        action: 'member.add',
        target: 'm00001',
        detail: {},
      });
      await store.putSecret('gateway.key', 'k');
      await store.insertToken('ci', 'hash', T0);
      await store.putAdmin({ username: 'admin', passwordHash: 'x', totpSecret: null });
      await store.putStatuses([status('m00001')]);
      await store.putStatuses([]);
      await store.addTraffic([{ name: 'm00001', at: T0, rxBytes: 1, txBytes: 1 }]);

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
      const all = await store.changesSince(0);
      assert.deepEqual(
        all.map((c) => [c.kind, c.key]),
        expected,
      );
      assert.deepEqual(
        all.map((c) => c.rev),
        expected.map((_, i) => i + 1),
      );
      assert.equal(await store.revision(), expected.length);
      assert.deepEqual(
        (await store.changesSince(4, 3)).map((c) => c.rev),
        [5, 6, 7],
      );
      assert.deepEqual(await store.changesSince(expected.length), []);
      assert.deepEqual(await store.changesSince(expected.length + 100), []);
      assert.deepEqual((await store.changesSince(-5)).length, expected.length);
      assert.deepEqual(await store.changesSince(0, 0), []);
      assert.deepEqual(await store.changesSince(0, -1), [], 'a negative limit is not "no limit"');
      assert.deepEqual(
        (await store.changesSince(0, 2.9)).map((c) => c.rev),
        [1, 2],
      );
    });

    it('change feed: a rolled-back transaction appends nothing and leaves no gap', async (t) => {
      const store = await fresh(t);
      await store.putSettings(SETTINGS);
      await store.insertGroup({ name: 'eng', description: '' });
      const before = await store.revision();
      await assert.rejects(
        async () =>
          await store.transaction(async () => {
            await store.insertGroup({ name: 'sales', description: '' });
            await store.insertMember(member(2, { groups: ['sales'] }));
            await store.putSettings({ ...SETTINGS, mtu: 1280 });
            await store.insertRoute({ cidr: '10.30.0.0/16', description: '' });
            await store.insertPolicy({
              action: 'allow',
              group: '*',
              destination: 'any',
              proto: 'any',
              ports: null,
              direction: 'send',
            });
            await store.deleteGroup('eng');
            throw new Error('abort');
          }),
        /abort/,
      );
      assert.equal(await store.revision(), before);
      assert.deepEqual(await store.changesSince(before), []);
      assert.equal(await store.getGroup('sales'), undefined);
      assert.deepEqual(await store.getGroup('eng'), { name: 'eng', description: '' });
      assert.equal(await store.getMember('m00002'), undefined);
      assert.equal((await store.getSettings())?.mtu, SETTINGS.mtu);
      assert.deepEqual(await store.listRoutes(), []);
      assert.deepEqual(await store.listPolicies(), []);

      // The next revision follows on directly.
      await store.insertGroup({ name: 'sales', description: '' });
      assert.deepEqual(await store.changesSince(before), [{ rev: before + 1, kind: 'group', key: 'sales' }]);

      // A mutation that fails on its own (a conflict) is its own rolled-back transaction.
      await assert.rejects(
        async () => await store.insertMember(member(3, { groups: ['sales', 'ghosts'] })),
        StoreConflict,
      );
      await store.insertMember(member(3, { groups: ['sales'] }));
      assert.deepEqual(await store.changesSince(before + 1), [
        { rev: before + 2, kind: 'member', key: 'm00003' },
      ]);
    });

    it('change feed: a transaction of many changes gets consecutive revisions, seen inside it as they are made', async (t) => {
      const store = await fresh(t);
      await store.putSettings(SETTINGS);
      const before = await store.revision();
      const count = 1200;
      await store.transaction(async () => {
        await store.insertGroup({ name: 'eng', description: '' });
        assert.equal(await store.revision(), before + 1, 'its own change counts inside it');
        // A savepoint rolled back takes its changes with it, also from the revisions seen inside.
        await assert.rejects(
          async () =>
            await store.transaction(async () => {
              await store.insertMember(member(90_000, { groups: ['eng'] }));
              await store.insertRoute({ cidr: '10.30.0.0/16', description: '' });
              assert.equal(await store.revision(), before + 3);
              throw new Error('inner');
            }),
          /inner/,
        );
        assert.equal(await store.revision(), before + 1);
        for (let i = 1; i <= count; i++) await store.insertMember(member(i, { groups: ['eng'] }));
        assert.equal(await store.revision(), before + 1 + count);
        assert.deepEqual(await store.changesSince(before + count - 1), [
          { rev: before + count, kind: 'member', key: member(count - 1).name },
          { rev: before + count + 1, kind: 'member', key: member(count).name },
        ]);
        assert.deepEqual(
          (await store.changesSince(before, 2)).map((c) => [c.rev, c.key]),
          [
            [before + 1, 'eng'],
            [before + 2, member(1).name],
          ],
        );
      });
      const all = await store.changesSince(before, 10_000);
      assert.equal(all.length, count + 1);
      assert.deepEqual(
        all.map((c) => c.rev),
        Array.from({ length: count + 1 }, (_, i) => before + 1 + i),
        'consecutive, no gap where the savepoint was rolled back',
      );
      assert.deepEqual(all[0], { rev: before + 1, kind: 'group', key: 'eng' });
      assert.deepEqual(
        all.slice(1).map((c) => c.key),
        Array.from({ length: count }, (_, i) => member(i + 1).name),
        'in the order they were made',
      );
      assert.equal(await store.revision(), before + 1 + count);
      assert.equal(await store.getMember(member(90_000).name), undefined);
      await store.insertRoute({ cidr: '10.40.0.0/16', description: '' });
      assert.deepEqual(await store.changesSince(before + 1 + count), [
        { rev: before + 2 + count, kind: 'route', key: '10.40.0.0/16' },
      ]);
    });

    it('transaction: returns its value, nested calls join the outer one, inner failures roll back alone', async (t) => {
      const store = await fresh(t);
      const value = await store.transaction(async () => {
        await store.insertGroup({ name: 'a', description: '' });
        await assert.rejects(
          async () =>
            await store.transaction(async () => {
              await store.insertGroup({ name: 'b', description: '' });
              throw new Error('inner');
            }),
          /inner/,
        );
        // A conflicting insert inside a transaction fails on its own, too.
        await assert.rejects(
          async () => await store.insertGroup({ name: 'a', description: '' }),
          StoreConflict,
        );
        // So does a member whose second group is missing: its row and first membership go with it.
        await assert.rejects(
          async () => await store.insertMember(member(1, { groups: ['a', 'ghosts'] })),
          StoreConflict,
        );
        await store.transaction(async () => await store.insertGroup({ name: 'c', description: '' }));
        return 42;
      });
      assert.equal(value, 42);
      assert.deepEqual(
        (await store.listGroups()).map((g) => g.name),
        ['a', 'c'],
      );
      assert.equal(await store.getMember('m00001'), undefined);
      assert.deepEqual(await store.groupMembers('a'), []);
      assert.deepEqual(await store.changesSince(0), [
        { rev: 1, kind: 'group', key: 'a' },
        { rev: 2, kind: 'group', key: 'c' },
      ]);

      await assert.rejects(
        async () =>
          await store.transaction(async () => {
            await store.transaction(async () => await store.insertGroup({ name: 'd', description: '' }));
            assert.deepEqual(await store.getGroup('d'), { name: 'd', description: '' }, 'visible inside');
            throw new Error('outer');
          }),
        /outer/,
      );
      assert.equal(
        await store.getGroup('d'),
        undefined,
        'an inner transaction commits only with the outer one',
      );
      assert.equal(await store.revision(), 2);

      // Three levels deep, the middle one failing: the innermost goes with it, the outermost stays.
      await store.transaction(async () => {
        await store.insertGroup({ name: 'x', description: '' });
        await assert.rejects(
          async () =>
            await store.transaction(async () => {
              await store.transaction(async () => await store.insertGroup({ name: 'y', description: '' }));
              throw new Error('middle');
            }),
        );
        await store.transaction(async () => await store.insertGroup({ name: 'z', description: '' }));
      });
      assert.deepEqual(
        (await store.listGroups()).map((g) => g.name),
        ['a', 'c', 'x', 'z'],
      );
      assert.deepEqual(
        (await store.changesSince(2)).map((c) => [c.rev, c.key]),
        [
          [3, 'x'],
          [4, 'z'],
        ],
      );
    });

    it('transaction: every awaited call of its async function belongs to it, also across timers', async (t) => {
      const store = await fresh(t);
      const later = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5));
      await assert.rejects(
        async () =>
          await store.transaction(async () => {
            await store.insertGroup({ name: 'e', description: '' });
            await later();
            await store.insertMember(member(1, { groups: ['e'] }));
            await later();
            assert.deepEqual(await store.groupMembers('e'), ['m00001'], 'visible inside, after a timer');
            throw new Error('abort');
          }),
        /abort/,
      );
      assert.equal(await store.getGroup('e'), undefined);
      assert.equal(await store.getMember('m00001'), undefined);
      assert.equal(await store.revision(), 0);

      const value = await store.transaction(async () => {
        await store.insertGroup({ name: 'e', description: '' });
        await later();
        return store.insertPolicy({
          action: 'allow',
          group: 'e',
          destination: 'any',
          proto: 'any',
          ports: null,
          direction: 'send',
        });
      });
      assert.deepEqual(await store.listPolicies(), [value]);
      assert.equal(await store.revision(), 2);
    });

    it('transaction: its writes stay invisible outside while it is open, and are gone if it rolls back', async (t) => {
      const store = await fresh(t);
      await store.insertGroup({ name: 'before', description: '' });
      let entered!: () => void;
      const inside = new Promise<void>((resolve) => (entered = resolve));
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const tx = store.transaction(async () => {
        await store.insertGroup({ name: 'pending', description: '' });
        await store.putSecret('pending.key', 'x');
        entered();
        await gate;
        throw new Error('abort');
      });
      const outcome = assert.rejects(tx, /abort/);
      await inside;
      // Made outside the transaction (no AsyncLocalStorage context of it): an outside caller.
      const outside = Promise.all([
        store.getGroup('pending'),
        store.getSecret('pending.key'),
        store.revision(),
      ]);
      setTimeout(release, 20);
      const [group, secret, revision] = await outside;
      await outcome;
      assert.equal(group, undefined);
      assert.equal(secret, undefined);
      assert.equal(revision, 1);
      assert.deepEqual(
        (await store.listGroups()).map((g) => g.name),
        ['before'],
      );
      // And the store goes on: a later transaction commits.
      await store.transaction(async () => store.insertGroup({ name: 'after', description: '' }));
      assert.equal(await store.revision(), 2);
    });

    it('transaction: a rollback undoes every kind of write, not only the change-feed tables', async (t) => {
      const store = await fresh(t);
      await store.putSecret('gateway.key', 'old');
      await store.putAdmin({ username: 'admin', passwordHash: 'old', totpSecret: null });
      const token = await store.insertToken('ci', 'hash-ci', T0);
      await store.putStatuses([status('alice')]);
      await store.addTraffic([{ name: 'alice', at: T0, rxBytes: 1, txBytes: 2 }]);
      const audit = await store.appendAudit({ at: T0, actor: 'admin', action: 'x', target: 'y', detail: {} });

      await assert.rejects(
        async () =>
          await store.transaction(async () => {
            await store.putSecret('gateway.key', 'new');
            await store.putSecret('session.key', 'new');
            await store.putAdmin({ username: 'admin', passwordHash: 'new', totpSecret: 'T' });
            await store.putAdmin({ username: 'root', passwordHash: 'new', totpSecret: null });
            await store.insertToken('ops', 'hash-ops', T1);
            await store.touchToken(token.id, T2);
            await store.deleteToken(token.id);
            await store.putStatuses([status('alice', { online: false }), status('bob')]);
            await store.addTraffic([
              { name: 'alice', at: T0, rxBytes: 100, txBytes: 100 },
              { name: 'bob', at: T1, rxBytes: 100, txBytes: 100 },
            ]);
            await store.appendAudit({ at: T1, actor: 'admin', action: 'x', target: 'z', detail: {} });
            throw new Error('abort');
          }),
        /abort/,
      );
      assert.equal(await store.getSecret('gateway.key'), 'old');
      assert.equal(await store.getSecret('session.key'), undefined);
      assert.deepEqual(await store.getAdmin('admin'), {
        username: 'admin',
        passwordHash: 'old',
        totpSecret: null,
      });
      assert.equal(await store.getAdmin('root'), undefined);
      assert.deepEqual(await store.listTokens(), [token]);
      assert.equal(await store.findToken('hash-ops'), undefined);
      assert.deepEqual(await store.allStatuses(), [status('alice')]);
      assert.deepEqual(await store.traffic('', T0), [{ name: '', at: T0, rxBytes: 1, txBytes: 2 }]);
      assert.deepEqual(await store.listAudit({ limit: 10 }), [audit]);
    });

    it('listMembers: pages over 2,500 members visit each exactly once, in name order', async (t) => {
      const store = await fresh(t);
      const members = Array.from({ length: 2500 }, (_, i) => member(i));
      await store.transaction(async () => {
        for (const m of shuffled(members)) await store.insertMember(m);
      });
      const names = members.map((m) => m.name).sort();
      assert.equal(await store.countMembers(), 2500);
      assert.deepEqual(
        (await store.allMembers()).map((m) => m.name),
        names,
      );

      for (const limit of [100, 7, 2500, 5000]) {
        const seen: string[] = [];
        let after: string | undefined;
        for (let pages = 0; pages < 1000; pages++) {
          const page = await store.listMembers({ after, limit });
          assert.ok(page.length <= limit);
          if (page.length === 0) break;
          seen.push(...page.map((m) => m.name));
          after = page.at(-1)?.name;
        }
        assert.deepEqual(seen, names, `limit ${limit}`);
      }
      assert.deepEqual(await store.listMembers({ limit: 0 }), []);
      assert.deepEqual(await store.listMembers({ limit: -1 }), [], 'a negative limit is not "no limit"');
      assert.equal((await store.listMembers({ limit: 2.9 })).length, 2);
      assert.deepEqual(await store.listMembers({ after: names.at(-1), limit: 10 }), []);
      assert.deepEqual(await store.listMembers({ after: 'm01000', limit: 1 }), [member(1001)]);
      assert.deepEqual(
        await store.listMembers({ after: 'm01000x', limit: 1 }),
        [member(1001)],
        '`after` need not exist',
      );
      assert.deepEqual(await store.listMembers({ after: '', limit: 1 }), [member(0)]);
    });

    it('listMembers/countMembers search: name, ip, ip6 and group names, case-insensitively', async (t) => {
      const store = await fresh(t);
      await store.insertGroup({ name: 'Engineering', description: '' });
      await store.insertGroup({ name: 'ops', description: '' });
      await store.insertGroup({ name: '100%_club', description: '' });
      const members = Array.from({ length: 300 }, (_, i) =>
        member(i, { groups: i % 3 === 0 ? ['Engineering'] : i % 3 === 1 ? ['ops'] : [] }),
      );
      await store.transaction(async () => {
        for (const m of members) await store.insertMember(m);
        await store.insertMember(member(1000, { name: 'Alice-Admin', groups: ['100%_club'] }));
      });

      const names = async (search: string, limit = 1000, after?: string): Promise<string[]> =>
        (await store.listMembers({ search, limit, after })).map((m) => m.name);

      assert.deepEqual(await names('alice'), ['Alice-Admin']);
      assert.deepEqual(await names('ADMIN'), ['Alice-Admin']);
      const eng = members.filter((_, i) => i % 3 === 0).map((m) => m.name);
      assert.deepEqual(await names('engineer'), eng, 'by group name, any case');
      assert.equal(await store.countMembers('ENGINEER'), eng.length);
      assert.deepEqual(
        await names('OPS'),
        members.filter((_, i) => i % 3 === 1).map((m) => m.name),
      );
      assert.deepEqual(await names('10.77.0.42'), ['m00042'], 'by IPv4 address');
      assert.deepEqual(await names('10.77.0.25'), [
        'm00025',
        'm00250',
        'm00251',
        'm00252',
        'm00253',
        'm00254',
        'm00255',
      ]);
      assert.deepEqual(await names('FD00:77::12B'), ['m00299'], 'by IPv6 address, any case');
      assert.deepEqual(await names('%'), ['Alice-Admin'], 'LIKE wildcards are matched literally');
      assert.deepEqual(await names('0%_c'), ['Alice-Admin']);
      assert.deepEqual(await names('_'), ['Alice-Admin']);
      assert.deepEqual(await names('\\'), [], 'so is the escape character');
      assert.equal(await store.countMembers('%'), 1);
      assert.deepEqual(await names('no such member'), []);
      assert.equal(await store.countMembers('no such member'), 0);
      assert.equal(await store.countMembers(''), 301);
      assert.equal(await store.countMembers(), 301);
      assert.equal((await names('')).length, 301, 'an empty search is no search');

      // Pages of a search.
      const seen: string[] = [];
      let after: string | undefined;
      for (let pages = 0; pages < 100; pages++) {
        const page = await names('engineering', 9, after);
        assert.ok(page.length <= 9);
        if (page.length === 0) break;
        seen.push(...page);
        after = page.at(-1);
      }
      assert.deepEqual(seen, eng);

      // A member's groups are searched as they are now, not as they were.
      await store.updateMember({ ...member(1000, { name: 'Alice-Admin' }), groups: ['ops'] });
      assert.deepEqual(await names('club'), []);
      assert.ok((await names('ops')).includes('Alice-Admin'));
    });

    it('audit log: newest first, before, limit and target; detail round-trips as JSON', async (t) => {
      const store = await fresh(t);
      const detail = {
        ip: '10.77.0.2',
        groups: ['eng'],
        nested: { n: 1, f: 0.1, big: 2 ** 53 - 1, ok: true, none: null, text: 'é ✓ 😀 "q" \\ \n' },
      };
      const a1 = await store.appendAudit({
        at: T0,
        actor: 'cli:root',
        action: 'member.add',
        target: 'alice',
        detail,
      });
      const a2 = await store.appendAudit({
        at: T1,
        actor: 'token:ci',
        action: 'member.add',
        target: 'bob',
        detail: {},
      });
      const a3 = await store.appendAudit({
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

      assert.deepEqual(await store.listAudit({ limit: 10 }), [a3, a2, a1]);
      assert.deepEqual(await store.listAudit({ limit: 2 }), [a3, a2]);
      assert.deepEqual(await store.listAudit({ limit: 0 }), []);
      assert.deepEqual(await store.listAudit({ limit: -1 }), [], 'a negative limit is not "no limit"');
      assert.deepEqual(await store.listAudit({ limit: 10, before: a3.id }), [a2, a1]);
      assert.deepEqual(await store.listAudit({ limit: 1, before: a3.id }), [a2]);
      assert.deepEqual(await store.listAudit({ limit: 10, before: a1.id }), []);
      assert.deepEqual(await store.listAudit({ limit: 10, before: a3.id + 1000 }), [a3, a2, a1]);
      assert.deepEqual(await store.listAudit({ limit: 10, target: 'alice' }), [a3, a1]);
      assert.deepEqual(await store.listAudit({ limit: 1, target: 'alice' }), [a3]);
      assert.deepEqual(await store.listAudit({ limit: 10, target: 'alice', before: a3.id }), [a1]);
      assert.deepEqual(await store.listAudit({ limit: 10, target: 'carol' }), []);
      assert.deepEqual(await store.listAudit({ limit: 10, target: 'ALICE' }), [], 'targets match exactly');

      // Pages by `before` visit every entry once.
      await store.transaction(async () => {
        for (let i = 0; i < 50; i++)
          await store.appendAudit({
            at: T2,
            actor: 'admin',
            action: 'n',
            target: `t${i % 2}`,
            detail: { i },
          });
      });
      const seen: number[] = [];
      let before: number | undefined;
      for (let pages = 0; pages < 100; pages++) {
        const page = await store.listAudit({ limit: 7, before, target: 't1' });
        if (page.length === 0) break;
        seen.push(...page.map((e) => e.detail.i as number));
        before = page.at(-1)?.id;
      }
      assert.deepEqual(
        seen,
        Array.from({ length: 25 }, (_, k) => 49 - 2 * k),
      );
    });

    it('API tokens: insert, find by hash, touch, list, delete', async (t) => {
      const store = await fresh(t);
      const ci = await store.insertToken('ci', 'hash-ci', T0);
      const ops = await store.insertToken('ops', 'hash-ops', T1);
      const ci2 = await store.insertToken('ci', 'hash-ci-2', T1);
      assert.deepEqual(ci, { id: ci.id, name: 'ci', createdAt: T0, lastUsedAt: null });
      assert.ok(ci.id < ops.id && ops.id < ci2.id, 'ids grow; names need not be unique');
      assert.deepEqual(await store.findToken('hash-ci'), ci);
      assert.deepEqual(await store.findToken('hash-ci-2'), ci2);
      assert.equal(await store.findToken('hash-nope'), undefined);
      await store.touchToken(ci.id, T2);
      await store.touchToken(9999, T2);
      assert.deepEqual(await store.findToken('hash-ci'), { ...ci, lastUsedAt: T2 });
      assert.deepEqual(await store.listTokens(), [{ ...ci, lastUsedAt: T2 }, ops, ci2]);
      assert.equal(await store.deleteToken(ci.id), true);
      assert.equal(await store.deleteToken(ci.id), false);
      assert.equal(await store.findToken('hash-ci'), undefined);
      assert.deepEqual(await store.listTokens(), [ops, ci2]);

      assert.equal(await store.deleteToken(ci2.id), true);
      const again = await store.insertToken('ci', 'hash-ci', T2);
      assert.ok(again.id > ci2.id, 'a deleted token id is not reused, not even the newest one');
      assert.deepEqual(await store.findToken('hash-ci'), again, 'the hash of a deleted token is free again');
    });

    it('admin accounts', async (t) => {
      const store = await fresh(t);
      const account = {
        username: 'admin',
        passwordHash: 'scrypt$16384$8$1$c2FsdA==$aGFzaA==',
        totpSecret: null,
      };
      await store.putAdmin(account);
      assert.deepEqual(await store.getAdmin('admin'), account);
      const withTotp = { ...account, totpSecret: 'JBSWY3DPEHPK3PXP' };
      await store.putAdmin(withTotp);
      assert.deepEqual(await store.getAdmin('admin'), withTotp);
      await store.putAdmin(account);
      assert.deepEqual(await store.getAdmin('admin'), account, 'the TOTP secret can be removed again');
      assert.equal(await store.getAdmin('root'), undefined);
      assert.equal(await store.getAdmin('ADMIN'), undefined);
    });

    it('download links: taken once, before they expire, while their member exists', async (t) => {
      const store = await fresh(t);
      await store.insertMember(member(1));
      await store.insertMember(member(2));
      const rev = await store.revision();
      await store.insertLink('hash-1', 'm00001', T0, T2);
      await store.insertLink('hash-2', 'm00002', T0, T2);
      await store.insertLink('hash-3', 'm00001', T0, T1);
      await store.insertLink('hash-4', 'm00001', T0, T2);
      assert.equal(await store.revision(), rev, 'links are not part of the change feed');

      assert.equal(await store.takeLink('hash-nope', T0), undefined);
      assert.equal(await store.takeLink('hash-1', T0), 'm00001');
      assert.equal(await store.takeLink('hash-1', T0), undefined, 'a used link is not taken again');
      assert.equal(await store.takeLink('hash-1', T1), undefined);
      assert.equal(await store.takeLink('hash-3', T1), undefined, 'a link is expired from its expiry on');
      assert.equal(await store.takeLink('hash-3', T0), 'm00001', 'the refused take did not use it up');

      // A failed transaction gives the link back.
      await assert.rejects(
        async () =>
          await store.transaction(async () => {
            assert.equal(await store.takeLink('hash-4', T0), 'm00001');
            throw new Error('rolled back');
          }),
      );
      assert.equal(await store.takeLink('hash-4', T0), 'm00001', 'the rolled-back take left the link unused');

      // Removing the member ends its links, also for a later member of the same name.
      await store.insertLink('hash-5', 'm00002', T0, T2);
      assert.equal(await store.deleteMember('m00002'), true);
      await store.insertMember(member(2));
      assert.equal(await store.takeLink('hash-2', T0), undefined);
      assert.equal(await store.takeLink('hash-5', T0), undefined);

      await assert.rejects(
        async () => await store.insertLink('hash-6', 'nobody', T0, T2),
        conflictNaming('download_links.member'),
      );
      await assert.rejects(
        async () => await store.insertLink('hash-1', 'm00001', T0, T2),
        conflictNaming('download_links.hash'),
      );
      assert.equal(await store.takeLink('hash-6', T0), undefined, 'nothing is left of a refused insert');
      await store.insertLink('hash-6', 'm00002', T0, T2);
      assert.equal(await store.takeLink('hash-6', T1), 'm00002');
    });

    it('config deliveries: one per member, replaced, kept over updates, gone with the member', async (t) => {
      const store = await fresh(t);
      await store.insertMember(member(1));
      await store.insertMember(member(2));
      const rev = await store.revision();
      assert.equal(await store.getConfigDelivery('m00001'), undefined);
      assert.deepEqual(await store.allConfigDeliveries(), []);
      const first = { name: 'm00002', fingerprint: 'sha256:aa', deliveredAt: T0 };
      await store.putConfigDelivery(first);
      await store.putConfigDelivery({ name: 'm00001', fingerprint: 'sha256:bb', deliveredAt: T0 });
      const again = { name: 'm00001', fingerprint: 'sha256:cc', deliveredAt: T1 };
      await store.putConfigDelivery(again);
      assert.deepEqual(await store.getConfigDelivery('m00001'), again, 'the newer one replaces the older');
      assert.deepEqual(await store.allConfigDeliveries(), [again, first], 'by name');
      assert.equal(await store.revision(), rev, 'not part of the change feed');

      // An update of the member row (a key rotation) keeps the record: the fingerprint tells it is stale.
      assert.equal(
        await store.updateMember(member(1, { publicKey: member(9).publicKey, updatedAt: T1 })),
        true,
      );
      assert.deepEqual(await store.getConfigDelivery('m00001'), again);

      await assert.rejects(
        async () => await store.putConfigDelivery({ name: 'nobody', fingerprint: 'x', deliveredAt: T0 }),
        conflictNaming('config_deliveries.member'),
      );
      await assert.rejects(
        async () =>
          await store.transaction(async () => {
            await store.putConfigDelivery({ name: 'm00002', fingerprint: 'sha256:dd', deliveredAt: T1 });
            throw new Error('rolled back');
          }),
      );
      assert.deepEqual(
        await store.getConfigDelivery('m00002'),
        first,
        'a rolled-back put leaves the old one',
      );

      // Removing the member removes its record, also for a later member of the same name.
      assert.equal(await store.deleteMember('m00002'), true);
      await store.insertMember(member(2));
      assert.equal(await store.getConfigDelivery('m00002'), undefined);
      assert.deepEqual(await store.allConfigDeliveries(), [again]);
    });

    it('config deliveries and links per protocol: an OpenVPN record beside the WireGuard one', async (t) => {
      const store = await fresh(t);
      await store.insertMember(member(1));
      const wg = { name: 'm00001', fingerprint: 'sha256:wg', deliveredAt: T0 };
      const ovpn = { name: 'm00001', fingerprint: 'sha256:ovpn', deliveredAt: T1 };
      await store.putConfigDelivery(wg);
      await store.putConfigDelivery(ovpn, 'openvpn');
      assert.deepEqual(await store.getConfigDelivery('m00001'), wg);
      assert.deepEqual(await store.getConfigDelivery('m00001', 'wireguard'), wg);
      assert.deepEqual(await store.getConfigDelivery('m00001', 'openvpn'), ovpn);
      assert.deepEqual(await store.allConfigDeliveries(), [wg]);
      assert.deepEqual(await store.allConfigDeliveries('openvpn'), [ovpn]);
      await store.insertLink('hash-w', 'm00001', T0, T2);
      await store.insertLink('hash-o', 'm00001', T0, T2, 'openvpn');
      assert.equal(await store.linkProtocol('hash-w'), 'wireguard');
      assert.equal(await store.linkProtocol('hash-o'), 'openvpn');
      assert.equal(await store.linkProtocol('hash-x'), undefined);
      assert.equal(await store.deleteMember('m00001'), true);
      assert.deepEqual(await store.allConfigDeliveries('openvpn'), []);
      assert.equal(await store.linkProtocol('hash-o'), undefined, 'links go with the member');
    });

    it('OpenVPN credentials: one current per member, revoked to a list that outlives the member', async (t) => {
      const store = await fresh(t);
      await store.insertMember(member(1));
      await store.insertMember(member(2));
      const rev = await store.revision();
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
      assert.equal(await store.getOpenVpnCredential('m00001'), undefined);
      assert.equal(await store.putOpenVpnCredential(credential('m00001', 1)), true);
      assert.equal(await store.putOpenVpnCredential(credential('m00001', 2)), false, 'the first one stays');
      assert.deepEqual(await store.getOpenVpnCredential('m00001'), credential('m00001', 1));
      assert.deepEqual(await store.findOpenVpnCredential({ serial: '01ab' }), credential('m00001', 1));
      assert.deepEqual(
        await store.findOpenVpnCredential({ clientKeyId: 'c1'.repeat(8) }),
        credential('m00001', 1),
      );
      assert.equal(await store.findOpenVpnCredential({ serial: '02ab' }), undefined);
      await assert.rejects(
        () => store.putOpenVpnCredential(credential('nobody', 3)),
        conflictNaming('openvpn_credentials.member'),
      );
      assert.equal(await store.revision(), rev, 'not part of the change feed');

      await assert.rejects(() =>
        store.transaction(async () => {
          await store.revokeOpenVpnCredential('m00001', T1, 'rotated');
          throw new Error('rolled back');
        }),
      );
      assert.deepEqual(
        await store.getOpenVpnCredential('m00001'),
        credential('m00001', 1),
        'a rolled-back revocation',
      );
      assert.deepEqual(await store.allOpenVpnRevocations(), []);

      const revoked = await store.revokeOpenVpnCredential('m00001', T1, 'rotated');
      assert.deepEqual(revoked, {
        serial: '01ab',
        clientKeyId: 'c1'.repeat(8),
        name: 'm00001',
        revokedAt: T1,
        reason: 'rotated',
      });
      assert.equal(await store.getOpenVpnCredential('m00001'), undefined);
      assert.equal(await store.findOpenVpnCredential({ serial: '01ab' }), undefined);
      assert.deepEqual(await store.findOpenVpnRevocation({ serial: '01ab' }), revoked);
      assert.deepEqual(await store.findOpenVpnRevocation({ clientKeyId: 'c1'.repeat(8) }), revoked);
      assert.equal(await store.revokeOpenVpnCredential('m00001', T1, 'rotated'), undefined);
      assert.equal(
        await store.putOpenVpnCredential(credential('m00001', 3)),
        true,
        'new ones after a revocation',
      );

      await store.putOpenVpnCredential(credential('m00002', 2));
      assert.equal(await store.deleteMember('m00002'), true);
      assert.equal((await store.findOpenVpnRevocation({ serial: '02ab' }))?.reason, 'removed');
      await store.insertMember(member(2));
      assert.equal(
        await store.getOpenVpnCredential('m00002'),
        undefined,
        'a new member of the name has none',
      );
      assert.deepEqual(
        (await store.allOpenVpnRevocations()).map((r) => r.serial),
        ['01ab', '02ab'],
      );
    });

    it('member statuses: putStatuses upserts many rows at once, allStatuses by name', async (t) => {
      const store = await fresh(t);
      const alice = status('alice');
      const bob = status('bob', { online: false, endpoint: null, lastHandshake: null, rxBytes: 0 });
      await store.putStatuses([bob, alice]);
      assert.deepEqual(await store.getStatus('alice'), alice);
      assert.deepEqual(await store.allStatuses(), [alice, bob]);
      const alice2 = { ...alice, online: false, rxBytes: 5_000_000_000, txBytes: 2 ** 53 - 1, updatedAt: T1 };
      await store.putStatuses([alice2]);
      assert.deepEqual(await store.allStatuses(), [alice2, bob], 'rows not reported keep their values');
      await store.putStatuses([]);
      assert.deepEqual(await store.allStatuses(), [alice2, bob]);
      assert.equal(await store.getStatus('carol'), undefined);
    });

    it('memberCounts: all, disabled, expired at the moment given, online as reported', async (t) => {
      const store = await fresh(t);
      assert.deepEqual(await store.memberCounts(T1), { total: 0, disabled: 0, expired: 0, online: 0 });
      await store.transaction(async () => {
        await store.insertMember(member(1));
        await store.insertMember(member(2, { disabled: true }));
        await store.insertMember(member(3, { expiresAt: T0 }));
        await store.insertMember(member(4, { expiresAt: T1 }));
        await store.insertMember(member(5, { expiresAt: T2 }));
        await store.insertMember(member(6, { disabled: true, expiresAt: T0 }));
      });
      await store.putStatuses([
        status('m00001'),
        status('m00002'),
        status('m00005', { online: false }),
        status('gone'), // a status row outlives its member until the gateway reports again
      ]);
      assert.deepEqual(await store.memberCounts(T0), { total: 6, disabled: 2, expired: 1, online: 2 });
      assert.deepEqual(
        await store.memberCounts(T1),
        { total: 6, disabled: 2, expired: 2, online: 2 },
        'expiring at the moment given counts as expired, as ControlPlane.isActive has it',
      );
      assert.deepEqual(await store.memberCounts('2030-01-01T00:00:00.000Z'), {
        total: 6,
        disabled: 2,
        expired: 3,
        online: 2,
      });
      await store.deleteMember('m00001');
      assert.deepEqual(await store.memberCounts(T0), { total: 5, disabled: 2, expired: 1, online: 1 });
    });

    it('traffic: buckets add up, since filters, "" sums every member', async (t) => {
      const store = await fresh(t);
      await store.addTraffic([
        { name: 'alice', at: T1, rxBytes: 200, txBytes: 20 },
        { name: 'alice', at: T0, rxBytes: 100, txBytes: 10 },
        { name: 'bob', at: T1, rxBytes: 1000, txBytes: 1 },
      ]);
      await store.addTraffic([
        { name: 'alice', at: T1, rxBytes: 5, txBytes: 5 },
        { name: 'alice', at: T1, rxBytes: 0, txBytes: 0 },
        { name: 'bob', at: T2, rxBytes: 7, txBytes: 0 },
      ]);
      await store.addTraffic([]);
      assert.deepEqual(await store.traffic('alice', T0), [
        { name: 'alice', at: T0, rxBytes: 100, txBytes: 10 },
        { name: 'alice', at: T1, rxBytes: 205, txBytes: 25 },
      ]);
      assert.deepEqual(await store.traffic('alice', T1), [
        { name: 'alice', at: T1, rxBytes: 205, txBytes: 25 },
      ]);
      assert.deepEqual(
        await store.traffic('alice', '2024-05-01T12:00:30.000Z'),
        [{ name: 'alice', at: T1, rxBytes: 205, txBytes: 25 }],
        '`since` need not be a bucket',
      );
      assert.deepEqual(await store.traffic('alice', T2), []);
      assert.deepEqual(await store.traffic('carol', T0), []);
      assert.deepEqual(await store.traffic('', T0), [
        { name: '', at: T0, rxBytes: 100, txBytes: 10 },
        { name: '', at: T1, rxBytes: 1205, txBytes: 26 },
        { name: '', at: T2, rxBytes: 7, txBytes: 0 },
      ]);
      assert.deepEqual(await store.traffic('', T2), [{ name: '', at: T2, rxBytes: 7, txBytes: 0 }]);
      // Byte counts beyond 32 bits add up exactly.
      await store.addTraffic([{ name: 'bob', at: T2, rxBytes: 6_000_000_000, txBytes: 2 ** 40 }]);
      assert.deepEqual(await store.traffic('bob', T2), [
        { name: 'bob', at: T2, rxBytes: 6_000_000_007, txBytes: 2 ** 40 },
      ]);
    });

    it('values are copied in and out: a caller cannot change what the store holds', async (t) => {
      const store = await fresh(t);
      await store.insertGroup({ name: 'eng', description: '' });
      await store.insertGroup({ name: 'ops', description: '' });
      const groups = ['eng'];
      const settings = { ...SETTINGS, dns: ['10.77.0.1'] };
      await store.putSettings(settings);
      await store.insertMember(member(1, { groups }));
      const ports = { from: 22, to: 22 };
      const policy = await store.insertPolicy({
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

      ((await store.getMember('m00001'))?.groups as string[]).push('ops');
      ((await store.allMembers())[0]?.groups as string[]).push('ops');
      ((await store.getSettings())?.dns as string[]).push('9.9.9.9');
      (policy.ports as { to: number }).to = 443;
      ((await store.listPolicies())[0]?.ports as { to: number }).to = 443;

      assert.deepEqual((await store.getMember('m00001'))?.groups, ['eng']);
      assert.deepEqual(await store.groupMembers('ops'), []);
      assert.deepEqual((await store.getSettings())?.dns, ['10.77.0.1']);
      assert.deepEqual((await store.listPolicies())[0]?.ports, { from: 22, to: 22 });
    });

    it('close: can be called twice; a closed store refuses to be used', async (t) => {
      const store = await fresh(t);
      await store.insertGroup({ name: 'eng', description: '' });
      await store.close();
      await store.close();
      await assert.rejects(async () => await store.getGroup('eng'));
      await assert.rejects(async () => await store.insertGroup({ name: 'ops', description: '' }));
      await assert.rejects(async () => await store.revision());
    });

    it('sites: IKE details (per pair, hard lifetimes, fragment size, byte lifetimes past 2^32) and their defaults', async (t) => {
      const store = await fresh(t);
      const defaults = {
        childPerSubnetPair: false,
        ikeHardLifetimeSec: null,
        childHardLifetimeSec: null,
        fragmentSize: 1_280,
        childRekeyBytes: 0,
        childLifeBytes: 0,
      };
      await store.insertSite(site('hq'));
      await store.insertSite(site('branch', defaults));
      assert.deepEqual(await store.getSite('hq'), site('hq'));
      assert.deepEqual(await store.getSite('branch'), site('branch', defaults));
      const changed = site('hq', { ...defaults, childHardLifetimeSec: 4_000, childLifeBytes: 2 ** 53 - 1 });
      assert.equal(await store.updateSite(changed), true);
      assert.deepEqual(await store.getSite('hq'), changed);
    });

    it('sites: insert, get, list by name, update, delete, each in the change feed', async (t) => {
      const store = await fresh(t);
      assert.deepEqual(await store.listSites(), []);
      assert.equal(await store.getSite('hq'), undefined);
      const rev0 = await store.revision();
      const b = site('branch', { remoteAddress: null, startAction: 'wait', localId: null, groups: [] });
      const h = site('hq', {
        mode: 'transport',
        dpdAction: 'hold',
        allowLegacyGroups: true,
        forceShortPsk: true,
        gateway: 'gw-b',
      });
      await store.insertSite(h);
      await store.insertSite(b);
      assert.deepEqual(await store.getSite('hq'), h);
      assert.deepEqual(await store.getSite('branch'), b);
      assert.deepEqual(await store.listSites(), [b, h], 'ordered by name');
      assert.deepEqual(await feed(store, rev0), [
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
      assert.equal(await store.updateSite(cert), true);
      assert.deepEqual(await store.getSite('hq'), cert);
      assert.equal(await store.updateSite(changed), true);
      assert.deepEqual(await store.getSite('hq'), changed);
      assert.equal(await store.updateSite(site('nowhere')), false);
      assert.equal(await store.deleteSite('branch'), true);
      assert.equal(await store.deleteSite('branch'), false);
      assert.deepEqual(await store.listSites(), [changed]);
      assert.deepEqual(await feed(store, rev0), [
        ['site', 'hq'],
        ['site', 'branch'],
        ['site', 'hq'],
        ['site', 'hq'],
        ['site', 'branch'],
      ]);
    });

    it('sites: a duplicate name is a StoreConflict, and a rolled-back insert leaves nothing', async (t) => {
      const store = await fresh(t);
      await store.insertSite(site('hq'));
      const rev = await store.revision();
      await assert.rejects(
        async () => await store.insertSite(site('hq', { psk: 'another-key-of-enough-length' })),
        (err: unknown) => err instanceof StoreConflict && err.message === 'a site named "hq" already exists',
      );
      assert.equal((await store.getSite('hq'))?.psk, site('hq').psk);
      await assert.rejects(
        async () =>
          await store.transaction(async () => {
            await store.insertSite(site('branch'));
            await store.deleteSite('hq');
            throw new Error('rolled back');
          }),
      );
      assert.deepEqual(
        (await store.listSites()).map((s) => s.name),
        ['hq'],
      );
      assert.equal(await store.revision(), rev);
    });

    it('site statuses: replaced wholesale, not in the change feed, gone with their site', async (t) => {
      const store = await fresh(t);
      await store.insertSite(site('hq'));
      await store.insertSite(site('branch'));
      const rev = await store.revision();
      assert.deepEqual(await store.allSiteStatuses(), []);
      const hq = siteStatus('hq');
      const branch = siteStatus('branch', {
        state: 'down',
        ike: null,
        children: [],
        lastError: { at: T1, message: 'no proposal chosen' },
      });
      await store.putSiteStatuses([hq, branch]);
      assert.deepEqual(await store.allSiteStatuses(), [branch, hq]);
      await store.putSiteStatuses([siteStatus('hq', { state: 'connecting', at: T2 })]);
      assert.deepEqual(await store.allSiteStatuses(), [siteStatus('hq', { state: 'connecting', at: T2 })]);
      assert.equal(await store.revision(), rev, 'statuses are not changes of the network');
      await store.putSiteStatuses([hq, branch]);
      await store.deleteSite('hq');
      assert.deepEqual(await store.allSiteStatuses(), [branch]);
      await store.putSiteStatuses([]);
      assert.deepEqual(await store.allSiteStatuses(), []);
    });

    it('sites: values are copied in and out', async (t) => {
      const store = await fresh(t);
      const s = site('hq');
      await store.insertSite(s);
      s.remoteSubnets.push('10.99.0.0/16');
      ((await store.getSite('hq'))?.groups as string[]).push('x');
      ((await store.listSites())[0]?.localSubnets as string[]).push('x');
      assert.deepEqual(await store.getSite('hq'), site('hq'));
    });

    it(
      'migration 10 → 11: existing rules are send rules; a network with members gets "allow * any receive", audited',
      { skip: atVersion10 === undefined ? 'no version 10 database for this store' : false },
      async (t) => {
        const send = {
          action: 'allow',
          group: 'eng',
          destination: '10.20.0.0/16',
          proto: 'tcp',
          ports: { from: 22, to: 22 },
          direction: 'send',
        } as const;
        const opened = await atVersion10!({ member: true });
        t.after(opened.close);
        const store = opened.store;
        assert.equal(store.schemaVersion, 11);
        const policies = await store.listPolicies();
        assert.equal(policies.length, 2);
        assert.deepEqual(policies[0], { id: policies[0]!.id, ...send });
        const compat = policies[1]!;
        assert.deepEqual(compat, {
          id: compat.id,
          action: 'allow',
          group: '*',
          destination: 'any',
          proto: 'any',
          ports: null,
          direction: 'receive',
        });
        const audit = await store.listAudit({ limit: 10, target: `#${compat.id}` });
        assert.equal(audit.length, 1);
        assert.equal(audit[0]!.actor, 'upgrade');
        assert.equal(audit[0]!.action, 'policy.add');
        assert.deepEqual(audit[0]!.detail, { rule: 'allow * any receive' });
        assert.ok(!Number.isNaN(Date.parse(audit[0]!.at)), audit[0]!.at);
        // Receive rules are stored and read back like any other.
        const added = await store.insertPolicy({
          ...send,
          destination: '239.1.0.0/16',
          direction: 'receive',
        });
        assert.equal((await store.listPolicies()).at(-1)?.direction, 'receive');
        assert.equal(added.direction, 'receive');

        const empty = await atVersion10!({ member: false });
        t.after(empty.close);
        const none = await empty.store.listPolicies();
        assert.deepEqual(
          none.map((p) => p.direction),
          ['send'],
          'a network without members or sites gets no compatibility rule',
        );
      },
    );
  });
}
