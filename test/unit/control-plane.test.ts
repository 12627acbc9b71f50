import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseWgQuick } from '../../src/config/wg-quick.js';
import { ControlPlane } from '../../src/control/control-plane.js';
import { WeftError } from '../../src/control/errors.js';
import { openSqliteStore } from '../../src/control/store-sqlite.js';
import type { Store } from '../../src/control/store.js';
import type { MemberRecord } from '../../src/control/model.js';
import { MemoryStore } from '../support/memory-store.js';
import { PrivateKey } from '../../src/crypto/keys.js';

function withPlane(
  fn: (cp: ControlPlane, store: Store) => void,
  init: Partial<Parameters<typeof ControlPlane.init>[1]> = {},
  clock?: () => Date,
): void {
  const dir = mkdtempSync(join(tmpdir(), 'weft-cp-'));
  const store = openSqliteStore(join(dir, 'weft.db'));
  try {
    ControlPlane.init(store, { endpoint: 'vpn.example.com', subnet: '10.66.0.0/24', ...init });
    fn(new ControlPlane(store, clock), store);
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function code(fn: () => unknown): { code: string; field: string | undefined } {
  try {
    fn();
  } catch (e) {
    if (e instanceof WeftError) return { code: e.code, field: e.field };
    throw e;
  }
  assert.fail('expected a WeftError');
}

test('init: settings with defaults, a gateway key, an admin password and a token; bad input names the field', () => {
  withPlane((cp) => {
    const s = cp.settings();
    assert.equal(s.endpoint, 'vpn.example.com:51820');
    assert.equal(s.listenPort, 51820);
    assert.equal(s.defaultPolicy, 'deny');
    assert.equal(s.interfaceName, 'weft0');
    assert.deepEqual(cp.gatewayAddresses(), { ip: '10.66.0.1', ip6: null });
    assert.equal(cp.gatewayPublicKey().length, 44);
  });
  for (const [input, field] of [
    [{ endpoint: 'vpn.example.com:99999', subnet: '10.66.0.0/24' }, 'endpoint'],
    [{ endpoint: 'x', subnet: '10.66.0.1/24' }, 'subnet'],
    [{ endpoint: 'x', subnet: 'fd00::/64' }, 'subnet'],
    [{ endpoint: 'x', subnet: '10.66.0.0/31' }, 'subnet'],
    [{ endpoint: 'x', subnet: '10.66.0.0/24', subnet6: '10.0.0.0/8' }, 'subnet6'],
    [{ endpoint: 'x', subnet: '10.66.0.0/24', dns: ['1.1.1'] }, 'dns[0]'],
    [{ endpoint: 'x', subnet: '10.66.0.0/24', defaultPolicy: 'maybe' }, 'defaultPolicy'],
    [{ endpoint: 'bad host!', subnet: '10.66.0.0/24' }, 'endpoint'],
  ] as const) {
    assert.deepEqual(
      code(() => ControlPlane.validateInit(input)),
      { code: 'WEFT_ERR_VALIDATION', field },
    );
  }
});

test('members: fixed or allocated addresses, never shared; conflicts and out-of-subnet addresses are errors', () => {
  withPlane(
    (cp) => {
      cp.addGroup('t', { name: 'eng' });
      const a = cp.addMember('t', { name: 'alice', ip: '10.66.0.10', groups: ['eng'] });
      assert.equal(a.ip, '10.66.0.10');
      assert.equal(a.ip6, 'fd66::a');
      const b = cp.addMember('t', { name: 'bob' });
      assert.equal(b.ip, '10.66.0.2');
      assert.equal(cp.addMember('t', { name: 'carol' }).ip, '10.66.0.3');
      assert.deepEqual(
        code(() => cp.addMember('t', { name: 'dave', ip: '10.66.0.10' })),
        {
          code: 'WEFT_ERR_IP_CONFLICT',
          field: 'ip',
        },
      );
      for (const ip of ['10.67.0.5', '10.66.0.0', '10.66.0.1', '10.66.0.255'])
        assert.equal(code(() => cp.addMember('t', { name: 'dave', ip })).code, 'WEFT_ERR_IP_OUTSIDE_SUBNET');
      assert.equal(code(() => cp.addMember('t', { name: 'alice' })).code, 'WEFT_ERR_MEMBER_EXISTS');
      assert.deepEqual(
        code(() => cp.addMember('t', { name: 'x', groups: ['nope'] })),
        {
          code: 'WEFT_ERR_GROUP_NOT_FOUND',
          field: 'groups',
        },
      );
      assert.equal(code(() => cp.addMember('t', { name: 'bad name' })).field, 'name');
      // Allocation moves on past the last address given out, so a removed member's address is not handed to
      // the next newcomer at once; a live member's address never is.
      cp.removeMember('t', 'bob');
      assert.equal(cp.addMember('t', { name: 'erin' }).ip, '10.66.0.4');
      assert.equal(cp.addMember('t', { name: 'frank' }).ip, '10.66.0.5');
    },
    { subnet6: 'fd66::/64' },
  );
});

test('an address another writer took meanwhile: the member gets the next free one; a requested one stays an error', () => {
  // The store does not see bob's address taken when the plane looks (another gateway inserted it after that
  // look, as two processes on one PostgreSQL store can), so the insert is refused by the unique index.
  class RacingStore extends MemoryStore {
    hidden: string | undefined;
    override getMemberByIp(ip: string): MemberRecord | undefined {
      if (ip === this.hidden) {
        this.hidden = undefined;
        return undefined;
      }
      return super.getMemberByIp(ip);
    }
  }
  const store = new RacingStore();
  ControlPlane.init(store, { endpoint: 'vpn.example.com', subnet: '10.66.0.0/24' });
  const other = new ControlPlane(store);
  assert.equal(other.addMember('t', { name: 'alice' }).ip, '10.66.0.2');
  const cp = new ControlPlane(store);
  store.hidden = '10.66.0.2';
  assert.equal(cp.addMember('t', { name: 'bob' }).ip, '10.66.0.3');
  assert.deepEqual([store.getMember('alice')?.ip, store.getMember('bob')?.ip], ['10.66.0.2', '10.66.0.3']);
  store.hidden = '10.66.0.3';
  assert.deepEqual(
    code(() => cp.addMember('t', { name: 'carol', ip: '10.66.0.3' })),
    {
      code: 'WEFT_ERR_IP_CONFLICT',
      field: 'ip',
    },
  );
});

test('a small subnet fills up with a clear error', () => {
  withPlane(
    (cp) => {
      // A /29 has 8 addresses: network, gateway, broadcast and 5 for members.
      for (let i = 0; i < 5; i++) cp.addMember('t', { name: `m${i}` });
      assert.equal(code(() => cp.addMember('t', { name: 'one-more' })).code, 'WEFT_ERR_SUBNET_FULL');
      // Once the end is reached, the search wraps around to freed addresses.
      cp.removeMember('t', 'm1');
      assert.equal(cp.addMember('t', { name: 'one-more' }).ip, '10.9.0.3');
    },
    { subnet: '10.9.0.0/29' },
  );
});

test('own public key: the server keeps no private key, and the config carries a placeholder', () => {
  withPlane((cp) => {
    const own = PrivateKey.generate();
    const m = cp.addMember('t', { name: 'carol', publicKey: own.publicKey().toBase64() });
    assert.equal(m.hasPrivateKey, false);
    assert.equal(cp.store.getMember('carol')?.privateKey, null);
    const text = cp.memberConfig('carol');
    assert.match(text, /PrivateKey = REPLACE_WITH_YOUR_PRIVATE_KEY/);
    const filled = text.replace('REPLACE_WITH_YOUR_PRIVATE_KEY', own.toBase64());
    const parsed = parseWgQuick(filled, 'carol.conf');
    assert.ok(parsed.ok);
    assert.equal(
      code(() => cp.addMember('t', { name: 'dup', publicKey: m.publicKey })).code,
      'WEFT_ERR_KEY_CONFLICT',
    );
    assert.equal(
      code(() => cp.addMember('t', { name: 'gw', publicKey: cp.gatewayPublicKey() })).field,
      'publicKey',
    );
  });
});

test('member config: parses as wg-quick, and routes only what the policies allow', () => {
  withPlane(
    (cp) => {
      cp.addGroup('t', { name: 'eng' });
      cp.addGroup('t', { name: 'sales' });
      cp.addRoute('t', { cidr: '10.20.0.0/24' });
      cp.addPolicy('t', { action: 'allow', group: 'eng', destination: '10.20.0.0/24' });
      cp.addPolicy('t', {
        action: 'allow',
        group: 'sales',
        destination: 'group:eng',
        proto: 'tcp',
        ports: { from: 443, to: 443 },
      });
      cp.addPolicy('t', { action: 'deny', group: 'eng', destination: '10.20.0.99/32' });
      cp.addMember('t', { name: 'alice', groups: ['eng'] });
      cp.addMember('t', { name: 'bob', groups: ['sales'] });
      cp.addMember('t', { name: 'full', fullTunnel: true });
      const allowed = (name: string): string[] => {
        const parsed = parseWgQuick(cp.memberConfig(name), `${name}.conf`);
        assert.ok(parsed.ok, JSON.stringify(!parsed.ok && parsed.errors));
        assert.equal(parsed.config.interface.dns.join(), '9.9.9.9');
        return parsed.config.peers[0]!.allowedIps.map((p) => `${p.bytes.join('.')}/${p.bits}`);
      };
      assert.deepEqual(allowed('alice'), ['10.66.0.1/32', '10.20.0.0/24']);
      assert.deepEqual(allowed('bob'), ['10.66.0.1/32', '10.66.0.0/24']);
      assert.deepEqual(allowed('full'), ['0.0.0.0/0']);
      const text = cp.memberConfig('alice');
      assert.match(text, /Endpoint = vpn\.example\.com:51820/);
      assert.match(text, /Address = 10\.66\.0\.2\/32/);
      assert.match(text, new RegExp(`PublicKey = ${cp.gatewayPublicKey().replace(/[+/]/g, '\\$&')}`));
    },
    { dns: ['9.9.9.9'] },
  );
});

test('disable, enable, expiry, rotate and update are audited with who and what', () => {
  let now = new Date('2026-01-01T00:00:00Z');
  withPlane(
    (cp) => {
      cp.addGroup('ops', { name: 'eng' });
      const before = cp.addMember('ops', { name: 'alice', expiresAt: '2026-01-02' });
      assert.equal(before.expiresAt, '2026-01-02T23:59:59.999Z');
      assert.equal(before.active, true);
      now = new Date('2026-01-03T00:00:00Z');
      assert.equal(cp.getMember('alice').active, false);
      cp.updateMember('ops', 'alice', { expiresAt: 'never', groups: ['eng'] });
      assert.equal(cp.getMember('alice').active, true);
      cp.setDisabled('ops', 'alice', true);
      assert.equal(cp.getMember('alice').active, false);
      cp.setDisabled('ops', 'alice', true); // no change, no audit entry
      cp.setDisabled('ops', 'alice', false);
      const rotated = cp.rotateMember('ops', 'alice');
      assert.notEqual(rotated.publicKey, before.publicKey);
      const actions = cp.listAudit({ target: 'alice' }).map((e) => `${e.actor} ${e.action}`);
      assert.deepEqual(actions, [
        'ops member.rotate',
        'ops member.enable',
        'ops member.disable',
        'ops member.update',
        'ops member.add',
      ]);
      const entry = cp.listAudit({ target: 'alice', limit: 1 })[0]!;
      assert.equal(entry.at, '2026-01-03T00:00:00.000Z');
      assert.equal(entry.detail['previousPublicKey'], before.publicKey);
      assert.ok(
        !JSON.stringify(cp.listAudit({ limit: 1000 })).includes(cp.store.getMember('alice')!.privateKey!),
      );
    },
    {},
    () => now,
  );
});

test('groups in use cannot be removed; routes may not overlap the member subnet; duplicate policies refused', () => {
  withPlane((cp) => {
    cp.addGroup('t', { name: 'eng' });
    cp.addGroup('t', { name: 'ops' });
    cp.addMember('t', { name: 'alice', groups: ['eng'] });
    assert.equal(code(() => cp.removeGroup('t', 'eng')).code, 'WEFT_ERR_GROUP_IN_USE');
    const p = cp.addPolicy('t', { action: 'allow', group: 'ops', destination: 'group:eng' });
    cp.updateMember('t', 'alice', { groups: [] });
    assert.equal(code(() => cp.removeGroup('t', 'eng')).code, 'WEFT_ERR_GROUP_IN_USE');
    assert.equal(
      code(() => cp.addPolicy('t', { action: 'allow', group: 'ops', destination: 'group:eng' })).code,
      'WEFT_ERR_POLICY_EXISTS',
    );
    cp.removePolicy('t', p.id);
    cp.removeGroup('t', 'eng');
    assert.equal(code(() => cp.addRoute('t', { cidr: '10.66.0.0/16' })).field, 'cidr');
    assert.equal(code(() => cp.addRoute('t', { cidr: '10.20.0.5/24' })).field, 'cidr');
    // The gateway serving a route must be registered (a SQLite store has none); "" means every gateway.
    assert.equal(code(() => cp.addRoute('t', { cidr: '10.20.0.0/24', gateway: 'gw-b' })).field, 'gateway');
    assert.equal(code(() => cp.addRoute('t', { cidr: '10.20.0.0/24', gateway: 7 })).field, 'gateway');
    cp.addRoute('t', { cidr: '10.20.0.0/24' });
    assert.equal(code(() => cp.addRoute('t', { cidr: '10.20.0.0/24' })).code, 'WEFT_ERR_ROUTE_EXISTS');
    assert.equal(code(() => cp.removeRoute('t', '10.21.0.0/24')).code, 'WEFT_ERR_ROUTE_NOT_FOUND');
    assert.equal(code(() => cp.removePolicy('t', 999)).code, 'WEFT_ERR_POLICY_NOT_FOUND');
    assert.equal(
      code(() => cp.addPolicy('t', { action: 'allow', group: 'ghost', destination: 'any' })).code,
      'WEFT_ERR_GROUP_NOT_FOUND',
    );
    assert.equal(
      code(() =>
        cp.addPolicy('t', {
          action: 'allow',
          group: 'ops',
          destination: 'any',
          proto: 'icmp',
          ports: { from: 1, to: 2 },
        }),
      ).field,
      'policy.ports',
    );
  });
});

test('listing is paginated over 2,500 members, with search', () => {
  withPlane(
    (cp) => {
      cp.addGroup('t', { name: 'eng' });
      cp.store.transaction(() => {
        for (let i = 0; i < 2500; i++)
          cp.addMember('t', { name: `m${String(i).padStart(5, '0')}`, groups: i % 10 === 0 ? ['eng'] : [] });
      });
      const seen: string[] = [];
      let after: string | undefined;
      for (let pages = 0; pages < 100; pages++) {
        const page = cp.listMembers({ after, limit: 300 });
        assert.equal(page.total, 2500);
        seen.push(...page.items.map((m) => m.name));
        if (!page.next) break;
        after = page.next;
      }
      assert.equal(seen.length, 2500);
      assert.equal(new Set(seen).size, 2500);
      assert.equal(cp.listMembers({ search: 'eng', limit: 1000 }).total, 250);
    },
    { subnet: '10.64.0.0/16' },
  );
});

test('tokens: shown once, stored hashed, revocable; the admin password verifies', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-cp-'));
  const store = openSqliteStore(join(dir, 'weft.db'));
  try {
    const r = ControlPlane.init(store, { endpoint: 'vpn.example.com', subnet: '10.66.0.0/24' });
    const cp = new ControlPlane(store);
    assert.equal(cp.authenticateToken(r.apiToken)?.name, 'init');
    assert.equal(cp.authenticateToken(`${r.apiToken}x`), undefined);
    assert.equal(cp.authenticateToken('nonsense'), undefined);
    const t = cp.createToken('t', 'ci');
    assert.equal(cp.authenticateToken(t.secret)?.id, t.token.id);
    assert.ok(!JSON.stringify(store.listTokens()).includes(t.secret));
    cp.revokeToken('t', t.token.id);
    assert.equal(cp.authenticateToken(t.secret), undefined);
    assert.equal(await cp.verifyAdminPassword('admin', r.adminPassword), true);
    assert.equal(await cp.verifyAdminPassword('admin', 'wrong'), false);
    assert.equal(await cp.verifyAdminPassword('root', r.adminPassword), false);
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('config downloads: a policy, route, group or key change marks the handed-out config stale', () => {
  withPlane((cp, store) => {
    cp.addGroup('t', { name: 'eng' });
    cp.addMember('t', { name: 'alice', groups: ['eng'] });
    cp.addMember('t', { name: 'bob' });
    const own = PrivateKey.generate().publicKey().toBase64();
    cp.addMember('t', { name: 'carol', publicKey: own });
    assert.equal(cp.getMember('alice').configDownload, null, 'nothing handed out yet');
    assert.deepEqual(cp.staleConfigs(), []);

    const config = cp.deliverConfig('alice');
    cp.deliverConfig('bob');
    cp.deliverConfig('carol');
    assert.equal(config, cp.memberConfig('alice'));
    assert.equal(cp.getMember('alice').configDownload?.stale, false);
    assert.deepEqual(cp.staleConfigs(), []);

    // The stored record holds a hash of the config, not the config and never the private key.
    const record = store.getConfigDelivery('alice');
    assert.ok(record);
    assert.match(record.fingerprint, /^sha256:[A-Za-z0-9+/]{43}=$/);
    const privateKey = /PrivateKey = (\S+)/.exec(config)?.[1];
    assert.ok(privateKey && !JSON.stringify(record).includes(privateKey));

    // A policy for eng changes alice's AllowedIPs only.
    cp.addPolicy('t', { action: 'allow', group: 'eng', destination: '10.20.0.0/24' });
    assert.equal(cp.getMember('alice').configDownload?.stale, true);
    assert.equal(cp.getMember('bob').configDownload?.stale, false);
    assert.deepEqual(cp.staleConfigs(), ['alice']);
    const page = cp.listMembers();
    assert.deepEqual(
      page.items.map((m) => [m.name, m.configDownload?.stale]),
      [
        ['alice', true],
        ['bob', false],
        ['carol', false],
      ],
    );

    // Handing the new config out makes it current again; removing the policy makes that one stale.
    cp.deliverConfig('alice');
    assert.deepEqual(cp.staleConfigs(), []);
    const policy = cp.listPolicies()[0]!;
    cp.removePolicy('t', policy.id);
    assert.deepEqual(cp.staleConfigs(), ['alice']);
    cp.deliverConfig('alice');

    // A policy for every member, a group change and a key rotation each count.
    cp.addPolicy('t', { action: 'allow', group: '*', destination: '10.30.0.0/24' });
    assert.deepEqual(cp.staleConfigs(), ['alice', 'bob', 'carol']);
    for (const name of ['alice', 'bob', 'carol']) cp.deliverConfig(name);
    cp.updateMember('t', 'bob', { fullTunnel: true });
    cp.rotateMember('t', 'carol', PrivateKey.generate().publicKey().toBase64());
    assert.deepEqual(cp.staleConfigs(), ['bob', 'carol']);

    // With the default policy allow, a new shared route reaches every member that is not full tunnel.
    cp.updateSettings('t', { defaultPolicy: 'allow' });
    for (const name of ['alice', 'bob', 'carol']) cp.deliverConfig(name);
    cp.addRoute('t', { cidr: '10.40.0.0/24' });
    assert.deepEqual(cp.staleConfigs(), ['alice', 'carol']);

    // Enabling or disabling does not change the config.
    cp.deliverConfig('alice');
    cp.setDisabled('t', 'alice', true);
    assert.equal(cp.getMember('alice').configDownload?.stale, false);

    // A one-time link records its download too.
    cp.addPolicy('t', { action: 'allow', group: 'eng', destination: '10.50.0.0/24' });
    assert.equal(cp.getMember('alice').configDownload?.stale, true);
    const link = cp.createDownloadLink('t', 'alice');
    cp.redeemDownloadLink(link.token);
    assert.equal(cp.getMember('alice').configDownload?.stale, false);
    assert.equal(code(() => cp.deliverConfig('nobody')).code, 'WEFT_ERR_MEMBER_NOT_FOUND');
  });
});

test('multicast setting: off by default; on, configs route 224.0.0.0/4 and the member subnet; checked input', () => {
  withPlane((cp) => {
    cp.addMember('t', { name: 'alice' });
    const allowed = (): string => /AllowedIPs = (.*)/.exec(cp.memberConfig('alice'))?.[1] ?? '';
    assert.equal(cp.settings().multicast, undefined);
    assert.doesNotMatch(allowed(), /224\.0\.0\.0\/4/);
    assert.equal(cp.updateSettings('t', { multicast: true }).multicast, true);
    assert.equal(allowed(), '10.66.0.1/32, 10.66.0.0/24, 224.0.0.0/4');
    assert.equal(cp.updateSettings('t', { multicast: false }).multicast, undefined);
    assert.doesNotMatch(allowed(), /224\.0\.0\.0\/4/);
    const bad = code(() => cp.updateSettings('t', { multicast: 'yes' as unknown as boolean }));
    assert.deepEqual(bad, { code: 'WEFT_ERR_VALIDATION', field: 'multicast' });
  });
});

test('multicast with IPv6: configs route ff00::/8, the IPv6 subnet and fe80::1, and give a link-local address', () => {
  withPlane(
    (cp) => {
      cp.addMember('t', { name: 'alice' });
      const config = (): string => cp.memberConfig('alice');
      assert.doesNotMatch(config(), /ff00::\/8|fe80::/);
      cp.updateSettings('t', { multicast: true });
      assert.equal(
        /AllowedIPs = (.*)/.exec(config())?.[1],
        '10.66.0.1/32, fd66::1/128, 10.66.0.0/24, 224.0.0.0/4, fd66::/64, ff00::/8, fe80::1/128',
      );
      assert.equal(/Address = (.*)/.exec(config())?.[1], '10.66.0.2/32, fd66::2/128, fe80::2/64');
    },
    { subnet6: 'fd66::/64', defaultPolicy: 'deny' },
  );
});
