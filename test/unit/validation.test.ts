/**
 * Validation of operator input at the control plane (validate.ts), which the CLI, the REST API and
 * `weft apply` share: every setting as its consumer uses it, dates against the calendar, routes that are
 * special-purpose ranges or the gateway's uplink, list lengths, control characters and canonical ids.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ControlPlane, type InitInput, type SettingsPatch } from '../../src/control/control-plane.js';
import { applyState, parseStateYaml } from '../../src/control/desired-state.js';
import { WeftError } from '../../src/control/errors.js';
import type { HostNetwork } from '../../src/control/validate.js';
import * as v from '../../src/control/validate.js';
import { defaultRouteInterfaces } from '../../src/server/host-networks.js';
import { MemoryStore } from '../support/memory-store.js';

function plane(uplinks: readonly HostNetwork[] = [], init: Partial<InitInput> = {}): ControlPlane {
  const store = new MemoryStore();
  ControlPlane.init(store, { endpoint: 'vpn.example.com:51820', subnet: '10.66.0.0/24', ...init });
  return new ControlPlane(store, undefined, { uplinks: () => uplinks });
}

/** The WeftError `fn` throws (it must throw one). */
function refusal(fn: () => unknown): WeftError {
  try {
    fn();
  } catch (e) {
    if (e instanceof WeftError) return e;
    throw e;
  }
  assert.fail('expected a WeftError');
}

function assertRefused(fn: () => unknown, field: string, message?: RegExp): void {
  const e = refusal(fn);
  assert.equal(e.code, 'WEFT_ERR_VALIDATION', e.message);
  assert.equal(e.field, field, e.message);
  assert.ok(e.message.startsWith(`${field}: `), e.message);
  if (message) assert.match(e.message, message);
}

describe('settings: checked as their consumer uses them, in one place', () => {
  const bad: [Partial<InitInput>, string][] = [
    [{ apiListen: 'x' }, 'apiListen'],
    [{ apiListen: '127.0.0.1' }, 'apiListen'],
    [{ apiListen: 'api.example.com:8780' }, 'apiListen'],
    [{ apiListen: '127.0.0.1:0' }, 'apiListen'],
    [{ apiListen: '127.0.0.1:65536' }, 'apiListen'],
    [{ apiListen: '::1:8780' }, 'apiListen'],
    [{ apiListen: '224.0.0.1:8780' }, 'apiListen'],
    [{ apiListen: '[fe80::1%eth0]:8780' }, 'apiListen'],
    [{ interfaceName: '.' }, 'interfaceName'],
    [{ interfaceName: '..' }, 'interfaceName'],
    [{ interfaceName: 'a/b' }, 'interfaceName'],
    [{ interfaceName: 'has space' }, 'interfaceName'],
    [{ interfaceName: 'sixteen-chars-xx' }, 'interfaceName'],
    [{ natEgress: '..' }, 'natEgress'],
    [{ natEgress: 'eth0"; drop' }, 'natEgress'],
    [{ natEgress: 'weft0' }, 'natEgress'],
    [{ mtu: 1279 }, 'mtu'],
    [{ mtu: 9001 }, 'mtu'],
    [{ persistentKeepalive: -1 }, 'persistentKeepalive'],
    [{ endpoint: '0.0.0.0:51820' }, 'endpoint'],
    [{ endpoint: '224.1.2.3:51820' }, 'endpoint'],
    [{ endpoint: '10.0.0.300:51820' }, 'endpoint'],
    [{ endpoint: 'vpn.example.com:0' }, 'endpoint'],
    [{ subnet: '127.0.0.0/24' }, 'subnet'],
    [{ subnet: '169.254.0.0/16' }, 'subnet'],
    [{ subnet: '10.66.0.0/24', subnet6: 'fe80::/64' }, 'subnet6'],
    [{ subnet: '10.66.0.0/24', subnet6: 'ff05::/64' }, 'subnet6'],
    [{ dns: ['0.0.0.0'] }, 'dns[0]'],
    [{ dns: ['1.1.1.1', '224.0.0.251'] }, 'dns[1]'],
    [{ dns: ['1.1.1.1', '1.1.1.1'] }, 'dns[1]'],
    [{ dns: ['fe80::1%eth0'] }, 'dns[0]'],
    [{ dns: Array.from({ length: 10_000 }, (_, i) => `10.1.${i >> 8}.${i & 255}`) }, 'dns'],
  ];

  it('server init refuses each bad setting, naming the field', () => {
    for (const [input, field] of bad) {
      assertRefused(
        () => ControlPlane.validateInit({ endpoint: 'vpn.example.com', subnet: '10.66.0.0/24', ...input }),
        field,
      );
    }
  });

  it('PATCH /settings and apply (updateSettings) refuse them too, and store nothing', () => {
    const cp = plane();
    const before = cp.settings();
    for (const [input, field] of bad) {
      if ('subnet' in input || 'subnet6' in input) continue;
      assertRefused(() => cp.updateSettings('test', input as SettingsPatch), field);
    }
    assertRefused(() => cp.updateSettings('test', { listenPort: 0 }), 'listenPort');
    assert.deepEqual(cp.settings(), before);
    assertRefused(
      () => applyState(cp, 'test', parseStateYaml('settings:\n  apiListen: x\n')),
      'settings.apiListen',
    );
    assert.deepEqual(cp.settings(), before);
  });

  it('takes good ones, in canonical form', () => {
    const cp = plane();
    const s = cp.updateSettings('test', {
      apiListen: '[::]:8443',
      interfaceName: 'wg-people.0',
      natEgress: 'eth0',
      mtu: 1280,
      dns: ['1.1.1.1', '2606:4700:4700::1111', '127.0.0.53'],
      endpoint: '[2001:db8::1]:51000',
    });
    assert.equal(s.apiListen, '[::]:8443');
    assert.equal(s.natEgress, 'eth0');
    assert.equal(s.listenPort, 51000);
    assert.equal(cp.updateSettings('test', { apiListen: '0.0.0.0:8780' }).apiListen, '0.0.0.0:8780');
    assert.equal(cp.updateSettings('test', { apiListen: 'localhost:8780' }).apiListen, 'localhost:8780');
  });
});

describe('dates: checked against the calendar', () => {
  it('refuses days and times that do not exist, for every date field', () => {
    const cp = plane();
    for (const bad of [
      '2027-02-30',
      '2027-02-29',
      '2027-04-31',
      '2027-13-01',
      '2027-00-10',
      '2027-01-31T24:00:00Z',
      '2027-01-31T10:60:00Z',
      '2027-01-31T10:00:00',
      '2027-01-31T10:00:00+25:00',
      '2027-1-31',
      '1969-12-31',
      'tomorrow',
    ]) {
      assertRefused(() => cp.addMember('test', { name: 'a', expiresAt: bad }), 'expiresAt');
      assertRefused(() => v.instant('since', bad), 'since');
    }
    cp.addMember('test', { name: 'a' });
    assertRefused(() => cp.updateMember('test', 'a', { expiresAt: '2027-02-30' }), 'expiresAt', /no day 30/);
    assertRefused(
      () => applyState(cp, 'test', parseStateYaml('members:\n  - name: b\n    expires: "2027-02-30"\n')),
      'members[0].expires',
    );
  });

  it('takes real dates: the end of a day, or an instant with its offset', () => {
    assert.equal(v.expiry('e', '2028-02-29'), '2028-02-29T23:59:59.999Z');
    assert.equal(v.expiry('e', '2027-01-31T18:00:00+02:00'), '2027-01-31T16:00:00.000Z');
    assert.equal(v.expiry('e', '2027-01-31T18:00:00.5Z'), '2027-01-31T18:00:00.500Z');
    assert.equal(v.expiry('e', 'never'), null);
  });
});

describe('routes: no special-purpose ranges, not the uplink', () => {
  const uplinks: HostNetwork[] = [
    { interface: 'eth0', prefix: '192.0.2.0/24' },
    { interface: 'eth0', prefix: '2001:db8:1::/64' },
  ];

  it('refuses loopback, multicast, link-local, broadcast, everything, and the uplink subnet', () => {
    const cp = plane(uplinks);
    for (const cidr of [
      '127.0.0.0/8',
      '127.1.0.0/16',
      '224.0.0.0/4',
      '239.1.0.0/16',
      '255.255.255.255/32',
      '0.0.0.0/0',
      '0.0.0.0/1',
      '169.254.0.0/16',
      '::/0',
      'fe80::/10',
      'ff02::/16',
      '::1/128',
      '192.0.2.0/24',
      '192.0.2.128/25',
      '192.0.0.0/16',
      '2001:db8:1::/64',
    ])
      assertRefused(() => cp.addRoute('test', { cidr }), 'cidr');
    assertRefused(() => cp.addRoute('test', { cidr: '192.0.2.0/24' }), 'cidr', /uplink.*eth0/);
    assertRefused(() => cp.addRoute('test', { cidr: '224.0.0.0/4' }), 'cidr', /multicast/);
    assertRefused(
      () => applyState(cp, 'test', parseStateYaml('routes: ["10.20.0.0/24", "127.0.0.0/8"]\n')),
      'routes[1].cidr',
    );
    assert.deepEqual(cp.listRoutes(), []);
    cp.addRoute('test', { cidr: '10.20.0.0/24' });
    cp.addRoute('test', { cidr: '198.51.100.0/24' });
    cp.addRoute('test', { cidr: 'fd20::/64' });
    assert.equal(cp.listRoutes().length, 3);
  });

  it('asks for the uplinks with the endpoint host, at each check', () => {
    const asked: string[] = [];
    let current: HostNetwork[] = [];
    const store = new MemoryStore();
    ControlPlane.init(store, { endpoint: '[2001:db8::7]:51820', subnet: '10.66.0.0/24' });
    const cp = new ControlPlane(store, undefined, {
      uplinks: (host) => {
        asked.push(host);
        return current;
      },
    });
    cp.addRoute('test', { cidr: '10.20.0.0/24' });
    current = [{ interface: 'ens3', prefix: '10.30.0.0/16' }];
    assertRefused(() => cp.addRoute('test', { cidr: '10.30.5.0/24' }), 'cidr', /ens3/);
    assert.deepEqual(asked, ['2001:db8::7', '2001:db8::7']);
  });

  it('finds the interfaces with a default route in the kernel tables', () => {
    const route4 = [
      'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
      'eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0',
      'eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
      'wlan0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
    ];
    const route6 = [
      'fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0',
      '00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     ens4',
    ];
    assert.deepEqual([...defaultRouteInterfaces(route4, route6)].sort(), ['ens4', 'eth0']);
  });
});

describe('lists, free text and ids', () => {
  it('caps list lengths: DNS servers and a member’s groups', () => {
    const cp = plane();
    assertRefused(
      () => cp.updateSettings('test', { dns: Array.from({ length: 9 }, (_, i) => `10.0.0.${i + 1}`) }),
      'dns',
      /at most 8/,
    );
    assertRefused(
      () => cp.addMember('test', { name: 'a', groups: Array.from({ length: 65 }, (_, i) => `g${i}`) }),
      'groups',
      /at most 64/,
    );
  });

  it('refuses NUL and other control characters in descriptions and other free text', () => {
    const cp = plane();
    for (const description of [
      'a\u0000b',
      'line\nbreak',
      'tab\there',
      'esc\u001b[31m',
      'del\u007f',
      'bidi\u202e',
      'half\ud800',
    ])
      assertRefused(() => cp.addGroup('test', { name: 'g', description }), 'description', /control/);
    cp.addGroup('test', { name: 'g', description: 'Ingeniería – Zürich 🚀' });
    assertRefused(() => cp.updateGroup('test', 'g', 'x\u0000'), 'description');
    assertRefused(() => cp.addRoute('test', { cidr: '10.20.0.0/24', description: '\u0000' }), 'description');
    assertRefused(() => cp.listMembers({ search: 'a\u0000' }), 'search');
    assertRefused(() => cp.listAudit({ target: 'a\u0000' }), 'target');
    assertRefused(() => cp.addMember('test', { name: 'a\u0000' }), 'name');
    assertRefused(() => cp.createToken('test', 'ci\u0000'), 'name');
  });

  it('takes ids in canonical decimal only', () => {
    const cp = plane();
    const t = cp.createToken('test', 'ci');
    assert.equal(t.token.id, 2);
    for (const bad of ['0x2', '2.0', '+2', '02', ' 2', '2e0', '0', '-2', ''])
      assertRefused(() => cp.revokeToken('test', bad), 'id', /decimal/);
    assert.equal(cp.listTokens().length, 2);
    cp.revokeToken('test', '2');
    assert.equal(cp.listTokens().length, 1);
    assertRefused(() => cp.removePolicy('test', '0x1'), 'id');
  });
});
