import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ControlPlane } from '../../src/control/control-plane.js';
import { applyState, exportState, formatStateYaml, parseStateYaml } from '../../src/control/desired-state.js';
import { WeftError } from '../../src/control/errors.js';
import { openSqliteStore } from '../../src/control/store-sqlite.js';
import { PrivateKey } from '../../src/crypto/keys.js';

function plane(dir: string, name: string, subnet = '10.1.0.0/24'): ControlPlane {
  const store = openSqliteStore(join(dir, `${name}.db`));
  ControlPlane.init(store, { endpoint: 'gw.example.net:51000', subnet });
  return new ControlPlane(store);
}

const OWN_KEY = PrivateKey.generate().publicKey().toBase64();

const TEAM = `
settings:
  endpoint: vpn.example.com:51820
  subnet: 10.66.0.0/24
  subnet6: fd66::/64
  dns: [1.1.1.1]
  defaultPolicy: deny
groups:
  - eng
  - name: sales
    description: Sales team
routes:
  - cidr: 10.20.0.0/24
    description: cloud VPC
policies:
  - allow: eng
    to: 10.20.0.0/24
  - allow: sales
    to: group:eng:tcp/443
  - deny: "*"
    to: 10.20.0.99
members:
  - name: alice
    ip: 10.66.0.10
    groups: [eng]
  - name: bob
    groups: [sales]
    expires: 2030-01-01
  - name: carol
    publicKey: ${OWN_KEY}
    groups: [eng, sales]
    fullTunnel: true
`;

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'weft-state-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof WeftError) return e.field;
    throw e;
  }
  assert.fail('expected a WeftError');
}

test('apply builds the network; applying the same file again changes nothing', () => {
  withDir((dir) => {
    const cp = plane(dir, 'a');
    const first = applyState(cp, 'cli:test', parseStateYaml(TEAM));
    const kinds = first.map((c) => `${c.op} ${c.kind}`);
    assert.ok(kinds.includes('update settings'));
    assert.equal(kinds.filter((k) => k === 'add member').length, 3);
    assert.equal(kinds.filter((k) => k === 'add policy').length, 3);
    assert.equal(cp.getMember('alice').ip, '10.66.0.10');
    assert.equal(cp.getMember('alice').ip6, 'fd66::a');
    assert.equal(cp.getMember('carol').publicKey, OWN_KEY);
    assert.equal(cp.getMember('carol').hasPrivateKey, false);
    assert.equal(cp.settings().subnet, '10.66.0.0/24');
    const rev = cp.store.revision();
    assert.deepEqual(applyState(cp, 'cli:test', parseStateYaml(TEAM)), []);
    assert.equal(cp.store.revision(), rev);
    assert.equal(cp.listAudit({ limit: 1000 }).filter((e) => e.action === 'apply').length, 1);
    cp.store.close();
  });
});

test('export, then apply on a fresh store, reproduces the network (without private keys)', () => {
  withDir((dir) => {
    const a = plane(dir, 'a');
    applyState(a, 't', parseStateYaml(TEAM));
    const exported = formatStateYaml(exportState(a));
    for (const m of a.store.allMembers()) if (m.privateKey) assert.ok(!exported.includes(m.privateKey));
    assert.ok(!exported.includes('PrivateKey'));
    const b = plane(dir, 'b', '10.99.0.0/24');
    applyState(b, 't', parseStateYaml(exported));
    assert.equal(formatStateYaml(exportState(b)), exported);
    assert.deepEqual(applyState(b, 't', parseStateYaml(exported)), []);
    assert.deepEqual(applyState(a, 't', parseStateYaml(exported)), []);
    a.store.close();
    b.store.close();
  });
});

test('what the file leaves out is removed; changes apply in place', () => {
  withDir((dir) => {
    const cp = plane(dir, 'a');
    applyState(cp, 't', parseStateYaml(TEAM));
    const aliceKey = cp.getMember('alice').publicKey;
    const smaller = TEAM.replace('  - name: bob\n    groups: [sales]\n    expires: 2030-01-01\n', '')
      .replace('  - deny: "*"\n    to: 10.20.0.99\n', '')
      .replace(
        '    ip: 10.66.0.10\n    groups: [eng]',
        '    ip: 10.66.0.10\n    groups: [eng]\n    disabled: true',
      );
    const changes = applyState(cp, 't', parseStateYaml(smaller)).map((c) => `${c.op} ${c.kind} ${c.target}`);
    assert.deepEqual(
      changes.sort(),
      ['remove member bob', 'remove policy deny * 10.20.0.99/32', 'update member alice'].sort(),
    );
    assert.equal(cp.getMember('alice').disabled, true);
    assert.equal(cp.getMember('alice').publicKey, aliceKey);
    cp.store.close();
  });
});

test('a failure anywhere changes nothing, and errors name the field', () => {
  withDir((dir) => {
    const cp = plane(dir, 'a');
    const rev = cp.store.revision();
    const bad = TEAM.replace('groups: [eng, sales]', 'groups: [eng, ghosts]');
    assert.equal(
      fieldOf(() => applyState(cp, 't', parseStateYaml(bad))),
      'members[2].groups',
    );
    assert.equal(cp.store.revision(), rev);
    assert.equal(cp.store.countMembers(), 0);
    assert.equal(
      fieldOf(() => parseStateYaml('members:\n  - name: a\n    colour: red\n')),
      'members[0].colour',
    );
    assert.equal(
      fieldOf(() => parseStateYaml('members:\n  - ip: 10.0.0.1\n')),
      'members[0].name',
    );
    assert.equal(
      fieldOf(() => parseStateYaml('members: [\n')),
      '(document)',
    );
    assert.equal(
      fieldOf(() =>
        applyState(
          cp,
          't',
          parseStateYaml('groups: [eng]\npolicies:\n  - allow: eng\n    to: 10.0.0.0/33\n'),
        ),
      ),
      'policies[0].to',
    );
    assert.equal(
      fieldOf(() => applyState(cp, 't', parseStateYaml('routes:\n  - 10.20.0.0/33\n'))),
      'routes[0].cidr',
    );
    assert.equal(
      fieldOf(() => applyState(cp, 't', parseStateYaml('members:\n  - name: a\n    ip: 10.2.0.5\n'))),
      'members[0].ip',
    );
    cp.store.close();
  });
});

test('dry run reports the changes and makes none', () => {
  withDir((dir) => {
    const cp = plane(dir, 'a');
    const rev = cp.store.revision();
    const changes = applyState(cp, 't', parseStateYaml(TEAM), { dryRun: true });
    assert.ok(changes.length > 5);
    assert.equal(cp.store.revision(), rev);
    assert.equal(cp.store.countMembers(), 0);
    assert.equal(cp.settings().subnet, '10.1.0.0/24');
    cp.store.close();
  });
});

test('the subnet cannot change once members hold addresses from it', () => {
  withDir((dir) => {
    const cp = plane(dir, 'a');
    cp.addMember('t', { name: 'x' });
    assert.equal(
      fieldOf(() => applyState(cp, 't', parseStateYaml('settings:\n  subnet: 10.2.0.0/24\n'))),
      'settings.subnet',
    );
    cp.store.close();
  });
});

test('multicast receive rules: `receive: true` in a state file, exported and applied back; bad ones name the field', () => {
  withDir((dir) => {
    const a = plane(dir, 'a');
    const file = `
groups: [eng]
policies:
  - allow: eng
    to: 239.1.0.0/16
  - allow: eng
    to: 239.1.0.0/16
    receive: true
  - deny: "*"
    to: 239.1.9.0/24:udp/5000-5010
    receive: true
  - allow: "*"
    to: any
    receive: true
`;
    const changes = applyState(a, 't', parseStateYaml(file));
    assert.deepEqual(
      changes.filter((c) => c.kind === 'policy').map((c) => c.target),
      [
        'allow eng 239.1.0.0/16',
        'allow eng 239.1.0.0/16 receive',
        'deny * 239.1.9.0/24:udp/5000-5010 receive',
        'allow * any receive',
      ],
      'the same range as a send and a receive rule are two rules',
    );
    assert.deepEqual(
      a.listPolicies().map((p) => p.direction),
      ['send', 'receive', 'receive', 'receive'],
    );
    const exported = formatStateYaml(exportState(a));
    assert.match(exported, /receive: true/);
    const b = plane(dir, 'b', '10.99.0.0/24');
    applyState(b, 't', parseStateYaml(exported));
    assert.equal(formatStateYaml(exportState(b)), exported);
    assert.deepEqual(applyState(a, 't', parseStateYaml(exported)), []);
    // A receive rule names a multicast range or any, the file's field being `to`.
    for (const to of ['10.20.0.0/24', 'group:eng', '2001:db8::/32'])
      assert.equal(
        fieldOf(() =>
          applyState(
            b,
            't',
            parseStateYaml(`groups: [eng]\npolicies:\n  - allow: eng\n    to: "${to}"\n    receive: true\n`),
          ),
        ),
        'policies[0].to',
        to,
      );
    a.store.close();
    b.store.close();
  });
});
