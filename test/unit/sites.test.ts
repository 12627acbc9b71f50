/**
 * IPsec sites in the control plane: validation (every refusal names its field and carries a code), add with a
 * generated or given key, set, up/down, remove, audit entries without the key, groups removed with their
 * group, and the SiteSpec the gateway runs (identities as IkeIdentity).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ControlPlane } from '../../src/control/control-plane.js';
import { WeftError } from '../../src/control/errors.js';
import { parseSiteId, type SiteInput } from '../../src/control/sites.js';
import { openMemoryStore } from '../support/memory-store.js';

const PSK = 'correct-horse-battery-staple';

function plane(): { cp: ControlPlane; store: ReturnType<typeof openMemoryStore> } {
  const store = openMemoryStore();
  ControlPlane.init(store, { endpoint: '203.0.113.1', subnet: '10.66.0.0/24', subnet6: 'fd66::/64' });
  const cp = new ControlPlane(store, () => new Date('2026-01-01T00:00:00.000Z'));
  cp.addGroup('test', { name: 'eng' });
  cp.addRoute('test', { cidr: '10.50.0.0/16' });
  return { cp, store };
}

const BASE: SiteInput = {
  name: 'hq',
  remoteAddress: '198.51.100.20',
  psk: PSK,
  localSubnets: ['10.66.0.0/24'],
  remoteSubnets: ['10.20.0.0/16'],
};

function refusal(fn: () => unknown): { code: string; field: string | undefined } {
  try {
    fn();
  } catch (e) {
    if (e instanceof WeftError) return { code: e.code, field: e.field };
    throw e;
  }
  assert.fail('expected a WeftError');
}

test('site input: each refusal names its field', () => {
  const { cp } = plane();
  cp.addSite('test', { ...BASE, name: 'other', remoteSubnets: ['10.30.0.0/16'] });
  const cases: [Partial<SiteInput>, string, string?][] = [
    [{ name: '-bad' }, 'name'],
    [{ remoteAddress: '300.1.1.1' }, 'remoteAddress'],
    [{ remoteAddress: '224.0.0.1' }, 'remoteAddress'],
    [{ remoteAddress: 'gw.example.net' }, 'remoteAddress'],
    [{ localId: 'fqdn:' }, 'localId'],
    [{ remoteId: 'keyid:xyz' }, 'remoteId'],
    [{ remoteId: 'what:ever:x' }, 'remoteId'],
    [{ psk: 'short-key' }, 'psk'],
    [{ psk: 'has a space in it, and long enough' }, 'psk'],
    [{ psk: 'x'.repeat(300) }, 'psk'],
    [{ localSubnets: [] }, 'localSubnets'],
    [{ localSubnets: ['10.66.0.1/24'] }, 'localSubnets[0]'],
    [{ localSubnets: ['10.66.0.0/24', '10.66.0.128/25'] }, 'localSubnets[1]'],
    [{ remoteSubnets: [] }, 'remoteSubnets'],
    [{ remoteSubnets: ['0.0.0.0/0'] }, 'remoteSubnets[0]'],
    [{ remoteSubnets: ['10.66.0.0/25'] }, 'remoteSubnets[0]'],
    [{ remoteSubnets: ['fd66::/80'] }, 'remoteSubnets[0]'],
    [{ remoteSubnets: ['127.0.0.0/8'] }, 'remoteSubnets[0]'],
    [{ remoteSubnets: ['10.20.0.0/16', '10.20.5.0/24'] }, 'remoteSubnets[1]'],
    [{ remoteSubnets: ['10.50.1.0/24'] }, 'remoteSubnets[0]', 'WEFT_ERR_SUBNET_CONFLICT'],
    [{ remoteSubnets: ['10.30.0.0/24'] }, 'remoteSubnets[0]', 'WEFT_ERR_SUBNET_CONFLICT'],
    [{ localSubnets: ['10.20.0.0/24'], remoteSubnets: ['10.20.0.0/16'] }, 'remoteSubnets[0]'],
    [{ mode: 'tunnel-ish' }, 'mode'],
    [{ mode: 'transport' }, 'localSubnets[0]'],
    [{ ikeProposals: [] }, 'ikeProposals'],
    [{ ikeProposals: ['aes256gcm16-prfsha256-x25519', 'aes256-md5-modp2048'] }, 'ikeProposals[1]'],
    [{ ikeProposals: ['aes256-sha256'] }, 'ikeProposals[0]'],
    [{ ikeProposals: ['aes256-sha256-modp1024'] }, 'ikeProposals[0]'],
    [{ espProposals: ['aes256gcm16-sha256'] }, 'espProposals[0]'],
    [{ espProposals: ['aes128-sha1-modp1536'] }, 'espProposals[0]'],
    [{ childLifetimeSec: 30 }, 'childLifetimeSec'],
    [{ childLifetimeSec: 90_000 }, 'childLifetimeSec'],
    [{ childLifetimeSec: 7200, ikeLifetimeSec: 3600 }, 'ikeLifetimeSec'],
    [{ dpdIntervalSec: 3 }, 'dpdIntervalSec'],
    [{ dpdIntervalSec: 4000 }, 'dpdIntervalSec'],
    [{ dpdAction: 'panic' }, 'dpdAction'],
    [{ startAction: 'later' }, 'startAction'],
    [{ remoteAddress: '%any', startAction: 'initiate' }, 'startAction'],
    [{ remoteAddress: null, startAction: 'on-traffic' }, 'startAction'],
    [{ groups: ['nobody'] }, 'groups', 'WEFT_ERR_GROUP_NOT_FOUND'],
    [{ groups: ['bad name'] }, 'groups[0]'],
    [{ forceShortPsk: 'yes' }, 'forceShortPsk'],
    [{ childPerSubnetPair: 'per-pair' }, 'childPerSubnetPair'],
    [
      { localSubnets: ['10.66.0.0/24'], remoteSubnets: ['fd20::/64'], childPerSubnetPair: true },
      'childPerSubnetPair',
    ],
    [{ ikeHardLifetimeSec: 14_400 }, 'ikeHardLifetimeSec'],
    [{ ikeHardLifetimeSec: 14_459 }, 'ikeHardLifetimeSec'],
    [{ ikeHardLifetimeSec: 'long' }, 'ikeHardLifetimeSec'],
    [{ childHardLifetimeSec: 3_000 }, 'childHardLifetimeSec'],
    [{ childHardLifetimeSec: 1.5e6 }, 'childHardLifetimeSec'],
    [{ fragmentSize: 500 }, 'fragmentSize'],
    [{ fragmentSize: 9_001 }, 'fragmentSize'],
    [{ childRekeyBytes: 1000 }, 'childRekeyBytes'],
    [{ childRekeyBytes: -1 }, 'childRekeyBytes'],
    [{ childLifeBytes: 2 ** 60 }, 'childLifeBytes'],
    [{ childRekeyBytes: 2 ** 31, childLifeBytes: 2 ** 30 }, 'childLifeBytes'],
    [{ enabled: 1 }, 'enabled'],
    // The gateway serving a site must be registered: a SQLite store has no gateways.
    [{ gateway: 'gw-b' }, 'gateway'],
    [{ gateway: 7 }, 'gateway'],
  ];
  for (const [patch, field, codeWanted] of cases) {
    assert.deepEqual(
      refusal(() => cp.addSite('test', { ...BASE, ...patch })),
      { code: codeWanted ?? 'WEFT_ERR_VALIDATION', field },
      JSON.stringify(patch),
    );
  }
  // Legacy groups and short keys are accepted when asked for.
  cp.addSite('test', {
    ...BASE,
    name: 'legacy',
    remoteSubnets: ['10.40.0.0/16'],
    ikeProposals: ['aes256-sha256-modp1024'],
    espProposals: ['aes128-sha1-modp1536'],
    allowLegacyGroups: true,
    psk: 'short',
    forceShortPsk: true,
  });
  assert.deepEqual(
    refusal(() => cp.addSite('test', { ...BASE, name: 'other', remoteSubnets: ['10.99.0.0/16'] })),
    { code: 'WEFT_ERR_SITE_EXISTS', field: 'name' },
  );
  assert.deepEqual(
    refusal(() => cp.getSite('nowhere')),
    { code: 'WEFT_ERR_SITE_NOT_FOUND', field: 'name' },
  );
  assert.deepEqual(
    refusal(() => cp.updateSite('test', 'hq', { dpdIntervalSec: 1 })),
    {
      code: 'WEFT_ERR_SITE_NOT_FOUND',
      field: 'name',
    },
  );
});

test('identities: addresses, fqdn (prefixed or bare), e-mail, key ids', () => {
  assert.deepEqual(parseSiteId('192.0.2.1'), { type: 'ipv4', value: '192.0.2.1' });
  assert.deepEqual(parseSiteId('2001:DB8::1'), { type: 'ipv6', value: '2001:db8::1' });
  assert.deepEqual(parseSiteId('ipv4:192.0.2.1'), { type: 'ipv4', value: '192.0.2.1' });
  assert.deepEqual(parseSiteId('fqdn:gw.example.net'), { type: 'fqdn', value: 'gw.example.net' });
  assert.deepEqual(parseSiteId('gw.example.net'), { type: 'fqdn', value: 'gw.example.net' });
  assert.deepEqual(parseSiteId('email:ops@example.net'), { type: 'email', value: 'ops@example.net' });
  assert.deepEqual(parseSiteId('ops@example.net'), { type: 'email', value: 'ops@example.net' });
  assert.deepEqual(parseSiteId('keyid:0A1B'), { type: 'keyid', value: '0a1b' });
  assert.equal(parseSiteId('keyid:0a1'), undefined);
  assert.equal(parseSiteId('ipv4:2001:db8::1'), undefined);
  assert.equal(parseSiteId(''), undefined);
});

test('add: defaults, a generated key shown once, an audit entry without the key, the spec the gateway runs', () => {
  const { cp, store } = plane();
  const { site, generatedPsk } = cp.addSite('cli:root', {
    name: 'hq',
    remoteAddress: '198.51.100.20',
    localId: 'gw.example.net',
    remoteId: '198.51.100.20',
    localSubnets: ['10.66.0.0/24', 'fd66::/64'],
    remoteSubnets: ['10.20.0.0/16', 'fd20::/64'],
    groups: ['eng'],
  });
  assert.ok(generatedPsk !== null && /^[A-Za-z0-9]{32}$/.test(generatedPsk));
  assert.equal(cp.sitePsk('hq'), generatedPsk);
  assert.equal('psk' in site, false, 'a view never holds the key');
  assert.deepEqual(
    { ...site, createdAt: undefined, updatedAt: undefined },
    {
      name: 'hq',
      enabled: true,
      remoteAddress: '198.51.100.20',
      localId: 'fqdn:gw.example.net',
      remoteId: '198.51.100.20',
      auth: 'psk',
      forceShortPsk: false,
      certificate: null,
      caCertificates: null,
      localSubnets: ['10.66.0.0/24', 'fd66::/64'],
      remoteSubnets: ['10.20.0.0/16', 'fd20::/64'],
      mode: 'tunnel',
      ikeProposals: [
        'aes256gcm16-prfsha256-x25519',
        'aes256gcm16-prfsha384-ecp384',
        'aes256-sha256-modp2048',
      ],
      espProposals: ['aes256gcm16', 'aes256-sha256'],
      allowLegacyGroups: false,
      ikeLifetimeSec: 14_400,
      childLifetimeSec: 3_600,
      dpdIntervalSec: 30,
      dpdAction: 'restart',
      startAction: 'initiate',
      groups: ['eng'],
      multicast: [],
      childPerSubnetPair: false,
      ikeHardLifetimeSec: null,
      childHardLifetimeSec: null,
      fragmentSize: 1280,
      childRekeyBytes: 0,
      childLifeBytes: 0,
      createdAt: undefined,
      updatedAt: undefined,
      status: null,
    },
  );
  const audit = store.listAudit({ limit: 1 })[0]!;
  assert.equal(audit.action, 'site.add');
  assert.equal(audit.target, 'hq');
  assert.ok(!JSON.stringify(audit).includes(generatedPsk), 'the audit log never holds the key');

  const [spec] = cp.siteSpecs();
  assert.deepEqual(spec?.localId, { type: 'fqdn', value: 'gw.example.net' });
  assert.deepEqual(spec?.remoteId, { type: 'ipv4', value: '198.51.100.20' });
  assert.equal(spec?.psk, generatedPsk);

  // %any waits by default; a given key is not echoed back.
  const r = cp.addSite('cli:root', {
    ...BASE,
    name: 'roaming',
    remoteAddress: '%any',
    remoteSubnets: ['10.21.0.0/16'],
  });
  assert.equal(r.generatedPsk, null);
  assert.equal(r.site.remoteAddress, null);
  assert.equal(r.site.startAction, 'wait');
  assert.deepEqual(
    cp.siteSpecs().map((s) => s.name),
    ['hq', 'roaming'],
  );
});

test('set, down/up, remove: only given fields change, each change audited, the key never in the entry', () => {
  const { cp, store } = plane();
  cp.addSite('cli:root', BASE);
  const rev = store.revision();
  const same = cp.updateSite('cli:root', 'hq', { dpdIntervalSec: 30 });
  assert.equal(store.revision(), rev, 'no change, no write');
  assert.equal(same.dpdIntervalSec, 30);

  const updated = cp.updateSite('cli:root', 'hq', {
    remoteSubnets: ['10.20.0.0/16', '10.21.0.0/16'],
    psk: `${PSK}-2`,
  });
  assert.deepEqual(updated.remoteSubnets, ['10.20.0.0/16', '10.21.0.0/16']);
  assert.equal(cp.sitePsk('hq'), `${PSK}-2`);
  const entry = store.listAudit({ limit: 1 })[0]!;
  assert.equal(entry.action, 'site.update');
  assert.deepEqual(entry.detail, { psk: '(changed)', remoteSubnets: ['10.20.0.0/16', '10.21.0.0/16'] });
  assert.deepEqual(store.changesSince(rev), [{ rev: rev + 1, kind: 'site', key: 'hq' }]);

  assert.equal(cp.setSiteEnabled('cli:root', 'hq', false).enabled, false);
  assert.equal(store.listAudit({ limit: 1 })[0]?.action, 'site.disable');
  assert.equal(cp.siteSpecs()[0]?.enabled, false, 'a disabled site is still given to the gateway');
  assert.equal(cp.setSiteEnabled('cli:root', 'hq', true).enabled, true);
  assert.equal(store.listAudit({ limit: 1 })[0]?.action, 'site.enable');

  // Becoming %any turns an initiating site into a waiting one.
  assert.equal(cp.updateSite('cli:root', 'hq', { remoteAddress: '%any' }).startAction, 'wait');
  assert.deepEqual(
    refusal(() => cp.updateSite('cli:root', 'hq', { startAction: 'initiate' })),
    {
      code: 'WEFT_ERR_VALIDATION',
      field: 'startAction',
    },
  );

  cp.removeSite('cli:root', 'hq');
  assert.deepEqual(cp.listSites(), []);
  assert.equal(store.listAudit({ limit: 1 })[0]?.action, 'site.remove');
  assert.deepEqual(
    refusal(() => cp.removeSite('cli:root', 'hq')),
    { code: 'WEFT_ERR_SITE_NOT_FOUND', field: 'name' },
  );
});

test('removing a group takes it off every site in the same transaction', () => {
  const { cp, store } = plane();
  cp.addGroup('test', { name: 'ops' });
  cp.addSite('test', { ...BASE, groups: ['eng', 'ops'] });
  cp.addSite('test', { ...BASE, name: 'branch', remoteSubnets: ['10.21.0.0/16'], groups: ['ops'] });
  const rev = store.revision();
  cp.removeGroup('test', 'ops');
  assert.deepEqual(cp.getSite('hq').groups, ['eng']);
  assert.deepEqual(cp.getSite('branch').groups, []);
  assert.deepEqual(
    store.changesSince(rev).map((c) => `${c.kind}:${c.key}`),
    ['site:branch', 'site:hq', 'group:ops'],
  );
  assert.deepEqual(store.listAudit({ limit: 1 })[0]?.detail, { sites: ['branch', 'hq'] });
});

test('list and show carry the status the gateway last reported', () => {
  const { cp, store } = plane();
  cp.addSite('test', BASE);
  assert.equal(cp.getSite('hq').status, null);
  const status = {
    name: 'hq',
    state: 'down' as const,
    ike: null,
    children: [],
    lastError: { at: '2026-01-01T00:00:00.000Z', message: 'no proposal chosen' },
    at: '2026-01-01T00:00:00.000Z',
  };
  store.putSiteStatuses([status]);
  assert.deepEqual(cp.getSite('hq').status, status);
  assert.deepEqual(cp.listSites()[0]?.status, status);
});

test("a shared route may not take a site's remote subnet either", () => {
  const { cp } = plane();
  cp.addSite('test', BASE);
  assert.deepEqual(
    refusal(() => cp.addRoute('test', { cidr: '10.20.5.0/24' })),
    { code: 'WEFT_ERR_SUBNET_CONFLICT', field: 'cidr' },
  );
  cp.addRoute('test', { cidr: '10.21.0.0/16' });
});

test('IKE details: per pair, hard lifetimes, fragment size and byte lifetimes reach the spec; null resets', () => {
  const { cp } = plane();
  const { site } = cp.addSite('test', {
    ...BASE,
    localSubnets: ['10.66.0.0/24', '10.67.0.0/24'],
    childPerSubnetPair: true,
    ikeHardLifetimeSec: 16_000,
    childHardLifetimeSec: '4000',
    fragmentSize: '1200',
    childRekeyBytes: 4 * 2 ** 30,
    childLifeBytes: 5 * 2 ** 30,
  });
  assert.deepEqual(
    [site.childPerSubnetPair, site.ikeHardLifetimeSec, site.childHardLifetimeSec, site.fragmentSize],
    [true, 16_000, 4_000, 1_200],
  );
  const [spec] = cp.siteSpecs();
  assert.equal(spec?.childPerSubnetPair, true);
  assert.equal(spec?.ikeHardLifetimeSec, 16_000);
  assert.equal(spec?.childLifeBytes, 5 * 2 ** 30);
  cp.updateSite('test', 'hq', { ikeHardLifetimeSec: null, childRekeyBytes: 0 });
  const after = cp.getSite('hq');
  assert.equal(after.ikeHardLifetimeSec, null);
  assert.equal(after.childRekeyBytes, 0);
  assert.equal(after.childHardLifetimeSec, 4_000, 'a patch leaves the other fields alone');
});
