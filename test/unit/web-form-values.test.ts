/**
 * The console's site form values <-> API body mapping (web/src/form-values.ts): its defaults are the server's,
 * empty fields mean the default (left out when adding, sent explicitly when editing), bad numbers are refused
 * naming the field, and values round-trip through the real API (fastify.inject on a memory store).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/server.js';
import { ControlPlane } from '../../src/control/control-plane.js';
import type { Store } from '../../src/control/store.js';
import { FRAGMENT_SIZE } from '../../src/ipsec/constants.js';
import { DEFAULT_ESP_PROPOSALS, DEFAULT_IKE_PROPOSALS, SITE_DEFAULTS } from '../../src/ipsec/site-spec.js';
import {
  advancedCustomised,
  EMPTY_SITE_FORM,
  routeBody,
  SITE_FORM_DEFAULTS,
  siteBody,
  siteFormValues,
  wholeNumber,
  type SiteFields,
  type SiteFormValues,
} from '../../web/src/form-values.js';
import { MemoryStore } from '../support/memory-store.js';

const PSK = 'a-pre-shared-key-of-enough-length';

const BASIC: SiteFormValues = {
  ...EMPTY_SITE_FORM,
  name: 'paris',
  remoteAddress: '198.51.100.20',
  psk: PSK,
  localSubnets: '10.66.0.0/24',
  remoteSubnets: '10.20.0.0/16, 10.21.0.0/16',
};

/** Every Advanced field away from its default. */
const ADVANCED: SiteFormValues = {
  ...BASIC,
  localId: 'fqdn:gw.example.net',
  remoteId: 'fqdn:paris.example.net',
  mode: 'tunnel',
  ikeProposals: 'aes128gcm16-prfsha256-ecp256, aes256-sha256-modp1536',
  espProposals: 'aes128gcm16',
  allowLegacyGroups: true,
  forceShortPsk: true,
  ikeLifetimeSec: '28800',
  childLifetimeSec: '1800',
  ikeHardLifetimeSec: '30000',
  childHardLifetimeSec: '2000',
  childRekeyBytes: '1073741824',
  childLifeBytes: '2147483648',
  childPerSubnetPair: true,
  fragmentSize: '1400',
  dpdIntervalSec: '10',
  dpdAction: 'hold',
  startAction: 'on-traffic',
  groups: 'branches',
};

function body(v: SiteFormValues, op: 'add' | 'edit'): Record<string, unknown> {
  const r = siteBody(v, op);
  assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.issues));
  return r.body;
}

describe('console site form values', () => {
  it('mirrors the server defaults', () => {
    assert.equal(SITE_FORM_DEFAULTS.mode, SITE_DEFAULTS.mode);
    assert.deepEqual(SITE_FORM_DEFAULTS.ikeProposals, DEFAULT_IKE_PROPOSALS);
    assert.deepEqual(SITE_FORM_DEFAULTS.espProposals, DEFAULT_ESP_PROPOSALS);
    assert.equal(SITE_FORM_DEFAULTS.ikeLifetimeSec, SITE_DEFAULTS.ikeLifetimeSec);
    assert.equal(SITE_FORM_DEFAULTS.childLifetimeSec, SITE_DEFAULTS.childLifetimeSec);
    assert.equal(SITE_FORM_DEFAULTS.dpdIntervalSec, SITE_DEFAULTS.dpdIntervalSec);
    assert.equal(SITE_FORM_DEFAULTS.dpdAction, SITE_DEFAULTS.dpdAction);
    assert.equal(SITE_FORM_DEFAULTS.fragmentSize, FRAGMENT_SIZE);
  });

  it('adding: empty Advanced fields are left out for the server to default; hard lifetimes are null', () => {
    const b = body({ ...BASIC, remoteAddress: '' }, 'add');
    assert.deepEqual(b, {
      name: 'paris',
      remoteAddress: null,
      localSubnets: ['10.66.0.0/24'],
      remoteSubnets: ['10.20.0.0/16', '10.21.0.0/16'],
      localId: null,
      remoteId: null,
      auth: 'psk',
      psk: PSK,
      forceShortPsk: false,
      allowLegacyGroups: false,
      ikeHardLifetimeSec: null,
      childHardLifetimeSec: null,
      childPerSubnetPair: false,
      groups: [],
      multicast: [],
    });
  });

  it('editing: an empty field sends the default explicitly (PATCH keeps what it is not given)', () => {
    const b = body({ ...BASIC, name: 'ignored', psk: '' }, 'edit');
    assert.equal(b['name'], undefined, 'a site is not renamed');
    assert.equal(b['psk'], undefined, 'an empty key keeps the stored one');
    assert.equal(b['mode'], 'tunnel');
    assert.deepEqual(b['ikeProposals'], DEFAULT_IKE_PROPOSALS);
    assert.deepEqual(b['espProposals'], DEFAULT_ESP_PROPOSALS);
    assert.equal(b['ikeLifetimeSec'], 14_400);
    assert.equal(b['childLifetimeSec'], 3_600);
    assert.equal(b['ikeHardLifetimeSec'], null);
    assert.equal(b['childHardLifetimeSec'], null);
    assert.equal(b['childRekeyBytes'], 0);
    assert.equal(b['childLifeBytes'], 0);
    assert.equal(b['fragmentSize'], 1280);
    assert.equal(b['dpdIntervalSec'], 30);
    assert.equal(b['dpdAction'], 'restart');
    assert.equal(b['startAction'], 'initiate', 'a site with a peer address initiates');
    assert.equal(body({ ...BASIC, remoteAddress: ' ' }, 'edit')['startAction'], 'wait', '%any only answers');
    // The server's default IKE lifetime is at least the CHILD SAs'.
    assert.equal(body({ ...BASIC, childLifetimeSec: '20000' }, 'edit')['ikeLifetimeSec'], 20_000);
  });

  it('the gateway serving a site: named when chosen; "every gateway" left out adding, null editing', () => {
    assert.equal(body(BASIC, 'add')['gateway'], undefined);
    assert.ok(!('gateway' in body(BASIC, 'add')));
    assert.equal(body(BASIC, 'edit')['gateway'], null, 'PATCH would keep the stored gateway otherwise');
    assert.equal(body({ ...BASIC, gateway: ' gw-paris ' }, 'add')['gateway'], 'gw-paris');
    assert.equal(body({ ...BASIC, gateway: 'gw-paris' }, 'edit')['gateway'], 'gw-paris');
  });

  it('the route form: trimmed text; "every gateway" leaves gateway out (the route schema takes no null)', () => {
    assert.deepEqual(routeBody({ cidr: ' 10.20.0.0/24 ', description: ' lab ', gateway: '' }), {
      cidr: '10.20.0.0/24',
      description: 'lab',
    });
    assert.deepEqual(routeBody({ cidr: '10.20.0.0/24', description: '', gateway: 'gw-a' }), {
      cidr: '10.20.0.0/24',
      description: '',
      gateway: 'gw-a',
    });
  });

  it('a number that is not a whole decimal number is refused, naming the field', () => {
    for (const bad of ['12x', '-5', '1.5', '1e3', '0x10', '9007199254740993', 'ten']) {
      const r = siteBody({ ...BASIC, childLifetimeSec: bad, fragmentSize: '1400' }, 'add');
      assert.ok(!r.ok, bad);
      assert.deepEqual(
        r.issues.map((i) => i.field),
        ['childLifetimeSec'],
        bad,
      );
      assert.match(r.issues[0]!.message, /^childLifetimeSec: must be a whole number of seconds/);
    }
    const r = siteBody({ ...BASIC, ikeHardLifetimeSec: 'soon', childLifeBytes: '1 GiB' }, 'edit');
    assert.ok(!r.ok);
    assert.deepEqual(
      r.issues.map((i) => i.field),
      ['ikeHardLifetimeSec', 'childLifeBytes'],
    );
    assert.match(r.issues[1]!.message, /bytes/);
    assert.equal(wholeNumber('fragmentSize', ' 1400 ', 'bytes'), 1400, 'spaces around are fine');
    assert.equal(wholeNumber('fragmentSize', '  ', 'bytes'), undefined, 'empty: the default');
  });

  it('certificate sites: the PEM fields go, the private key only when typed', () => {
    const cert = { ...BASIC, auth: 'cert', certificate: 'CERT', caCertificates: 'CA' };
    const b = body(cert, 'edit');
    assert.equal(b['auth'], 'cert');
    assert.equal(b['certificate'], 'CERT');
    assert.equal(b['caCertificates'], 'CA');
    assert.equal(b['psk'], undefined, 'no key for a certificate site');
    assert.equal(b['privateKey'], undefined, 'an empty key field keeps the stored key');
    assert.equal(body({ ...cert, privateKey: 'KEY' }, 'edit')['privateKey'], 'KEY');
  });

  it('the Advanced section opens on edit only for a site that differs from the defaults there', () => {
    assert.equal(advancedCustomised(BASIC), false);
    assert.equal(advancedCustomised({ ...BASIC, startAction: 'initiate', fragmentSize: '1280' }), false);
    assert.equal(advancedCustomised({ ...BASIC, fragmentSize: '1400' }), true);
    assert.equal(advancedCustomised({ ...BASIC, startAction: 'on-traffic' }), true);
    assert.equal(advancedCustomised(ADVANCED), true);
  });
});

describe('console site form values through the real API', () => {
  let app: FastifyInstance;
  let store: Store;
  let token = '';
  const call = async (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown) => {
    const res = await app.inject({
      method,
      url: `/api/v1${url}`,
      headers: { authorization: `Bearer ${token}` },
      ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
    });
    return { status: res.statusCode, json: res.json<Record<string, unknown>>(), text: res.body };
  };

  before(async () => {
    store = new MemoryStore();
    token = ControlPlane.init(store, { endpoint: '203.0.113.1:51820', subnet: '10.66.0.0/24' }).apiToken;
    app = buildApi({ controlPlane: new ControlPlane(store) });
    await app.ready();
    assert.equal((await call('POST', '/groups', { name: 'branches' })).status, 201);
  });
  after(async () => {
    await app.close();
    store.close();
  });

  it('a site added with every Advanced field reads back as the same form values', async () => {
    const added = await call('POST', '/sites', body(ADVANCED, 'add'));
    assert.equal(added.status, 201, added.text);
    const got = await call('GET', '/sites/paris');
    assert.equal(got.status, 200, got.text);
    const back = siteFormValues(got.json as unknown as SiteFields);
    assert.deepEqual(
      back,
      {
        ...ADVANCED,
        psk: '',
        ikeProposals: 'aes128gcm16-prfsha256-ecp256, aes256-sha256-modp1536',
        remoteSubnets: '10.20.0.0/16, 10.21.0.0/16',
      },
      'every field as typed',
    );
    // Saved again unchanged, nothing changes.
    const same = await call('PATCH', '/sites/paris', body(back, 'edit'));
    assert.equal(same.status, 200, same.text);
    assert.deepEqual(siteFormValues(same.json as unknown as SiteFields), back);
  });

  it('editing with the Advanced fields emptied puts the site back to the defaults', async () => {
    const cleared: SiteFormValues = {
      ...siteFormValues((await call('GET', '/sites/paris')).json as unknown as SiteFields),
      mode: '',
      ikeProposals: '',
      espProposals: '',
      allowLegacyGroups: false,
      forceShortPsk: false,
      ikeLifetimeSec: '',
      childLifetimeSec: '',
      ikeHardLifetimeSec: '',
      childHardLifetimeSec: '',
      childRekeyBytes: '',
      childLifeBytes: '',
      childPerSubnetPair: false,
      fragmentSize: '',
      dpdIntervalSec: '',
      dpdAction: '',
      startAction: '',
      groups: '',
      multicast: '',
    };
    const r = await call('PATCH', '/sites/paris', body(cleared, 'edit'));
    assert.equal(r.status, 200, r.text);
    const s = r.json as unknown as SiteFields;
    assert.equal(advancedCustomised(siteFormValues(s)), false, JSON.stringify(s));
    assert.equal(s.ikeLifetimeSec, 14_400);
    assert.equal(s.ikeHardLifetimeSec, null);
    assert.equal(s.startAction, 'initiate');
    // And a site added with them empty has the same values.
    const fresh = await call(
      'POST',
      '/sites',
      body({ ...BASIC, name: 'lyon', remoteSubnets: '10.30.0.0/16' }, 'add'),
    );
    assert.equal(fresh.status, 201, fresh.text);
    const f = fresh.json as unknown as SiteFields;
    for (const k of ['mode', 'ikeProposals', 'espProposals', 'ikeLifetimeSec', 'childLifetimeSec'] as const)
      assert.deepEqual(f[k], s[k], k);
    for (const k of ['fragmentSize', 'dpdIntervalSec', 'dpdAction', 'startAction', 'childLifeBytes'] as const)
      assert.deepEqual(f[k], s[k], k);
  });

  it("the API's 400 names the field the form has (data-field)", async () => {
    const r = await call('PATCH', '/sites/paris', body({ ...BASIC, psk: '', fragmentSize: '100' }, 'edit'));
    assert.equal(r.status, 400, r.text);
    assert.equal((r.json['error'] as { field: string }).field, 'fragmentSize');
    assert.ok(Object.keys(EMPTY_SITE_FORM).includes('fragmentSize'));
  });

  it("a site's gateway: 'every gateway' reads back as such after editing; an unknown one is a 400 naming it", async () => {
    const values = siteFormValues((await call('GET', '/sites/paris')).json as unknown as SiteFields);
    assert.equal(values.gateway, '', 'every gateway');
    const saved = await call('PATCH', '/sites/paris', body(values, 'edit'));
    assert.equal(saved.status, 200, saved.text);
    assert.equal(siteFormValues(saved.json as unknown as SiteFields).gateway, '');
    const served = { ...(saved.json as unknown as SiteFields), gateway: 'gw-a' };
    assert.equal(siteFormValues(served).gateway, 'gw-a', 'a named gateway is selected on edit');
    for (const op of ['add', 'edit'] as const) {
      const v = { ...BASIC, name: 'nantes', remoteSubnets: '10.40.0.0/16', gateway: 'gw-nowhere' };
      const r =
        op === 'add'
          ? await call('POST', '/sites', body(v, op))
          : await call('PATCH', '/sites/paris', body({ ...v, psk: '' }, op));
      assert.equal(r.status, 400, r.text);
      assert.equal((r.json['error'] as { field: string }).field, 'gateway', op);
    }
    assert.ok(Object.keys(EMPTY_SITE_FORM).includes('gateway'));
  });

  it('a route: "every gateway" is accepted and reads back without one; an unknown gateway is a 400 naming it', async () => {
    const added = await call(
      'POST',
      '/routes',
      routeBody({ cidr: '10.50.0.0/24', description: 'lab', gateway: '' }),
    );
    assert.equal(added.status, 201, added.text);
    assert.equal(added.json['gateway'], undefined);
    const bad = await call(
      'POST',
      '/routes',
      routeBody({ cidr: '10.51.0.0/24', description: '', gateway: 'gw-x' }),
    );
    assert.equal(bad.status, 400, bad.text);
    assert.equal((bad.json['error'] as { field: string }).field, 'gateway');
    const list = await call('GET', '/routes');
    const items = list.json['items'] as { cidr: string; gateway?: string }[];
    assert.deepEqual(
      items.map((r) => [r.cidr, r.gateway ?? null]),
      [['10.50.0.0/24', null]],
    );
  });

  it('removing a gateway that is not registered is a 404', async () => {
    const r = await call('DELETE', '/gateways/gw-nowhere');
    assert.equal(r.status, 404, r.text);
    assert.equal((r.json['error'] as { code: string }).code, 'WEFT_ERR_GATEWAY_NOT_FOUND');
  });
});
