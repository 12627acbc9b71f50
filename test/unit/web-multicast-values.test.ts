/**
 * The Multicast page's form values <-> PATCH /settings mapping (web/src/multicast-values.ts): its querier
 * defaults are the server's, empty means the default, only what changed is sent, bad timers and half-filled
 * membership rows are refused naming the field, an API error on a membership lands on its form row, and the
 * values round-trip through the real API (fastify.inject on a memory store).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/server.js';
import { ControlPlane } from '../../src/control/control-plane.js';
import { MULTICAST_QUERIER_DEFAULTS } from '../../src/control/multicast-settings.js';
import type { Store } from '../../src/control/store.js';
import {
  formField,
  multicastFormValues,
  multicastPatch,
  QUERIER_DEFAULTS,
  type MulticastFormValues,
  type MulticastSettings,
} from '../../web/src/multicast-values.js';
import { MemoryStore } from '../support/memory-store.js';

describe('console multicast form values', () => {
  const empty: MulticastSettings = {};
  const form = (over: Partial<MulticastFormValues>): MulticastFormValues => ({
    ...multicastFormValues(empty),
    ...over,
  });

  it('mirrors the server defaults', () => {
    assert.deepEqual(QUERIER_DEFAULTS, MULTICAST_QUERIER_DEFAULTS);
  });

  it('an unchanged form sends nothing; every timer empty means the defaults (null)', () => {
    const r = multicastPatch(multicastFormValues(empty), empty);
    assert.ok(r.ok);
    assert.deepEqual(r.patch, {});
    const withTimers: MulticastSettings = {
      multicastQuerier: {
        robustness: 3,
        queryIntervalS: 60,
        queryResponseIntervalS: 5,
        lastMemberQueryIntervalS: 1,
      },
    };
    const cleared = multicastPatch(form({}), withTimers);
    assert.ok(cleared.ok);
    assert.deepEqual(cleared.patch, { multicastQuerier: null });
  });

  it('some timers typed: the others are sent at their defaults; tenths are accepted where the API takes them', () => {
    const r = multicastPatch(
      form({
        querier: {
          robustness: '3',
          queryIntervalS: '',
          queryResponseIntervalS: '2.5',
          lastMemberQueryIntervalS: '',
        },
      }),
      empty,
    );
    assert.ok(r.ok);
    assert.deepEqual(r.patch.multicastQuerier, {
      robustness: 3,
      queryIntervalS: 125,
      queryResponseIntervalS: 2.5,
      lastMemberQueryIntervalS: 1,
    });
  });

  it('bad timers and half-filled rows are refused, naming the field', () => {
    const r = multicastPatch(
      form({
        querier: {
          robustness: '2.5',
          queryIntervalS: 'x',
          queryResponseIntervalS: '1.25',
          lastMemberQueryIntervalS: '-1',
        },
        statics: [
          { port: '', group: '' },
          { port: 'lan', group: '' },
          { port: '', group: '239.1.1.1' },
        ],
      }),
      empty,
    );
    assert.ok(!r.ok);
    assert.deepEqual(
      r.issues.map((i) => i.field),
      [
        'multicastQuerier.robustness',
        'multicastQuerier.queryIntervalS',
        'multicastQuerier.queryResponseIntervalS',
        'multicastQuerier.lastMemberQueryIntervalS',
        'multicastStatic[1].group',
        'multicastStatic[2].port',
      ],
    );
    for (const i of r.issues) assert.ok(i.message.startsWith(`${i.field}: `), i.message);
  });

  it('blank rows are dropped; an API error on the n-th sent row is shown on its form row', () => {
    const r = multicastPatch(
      form({
        statics: [
          { port: '', group: '' },
          { port: 'member:dana', group: '239.1.1.1' },
          { port: ' ', group: ' ' },
          { port: 'lan', group: 'ff15::1' },
        ],
      }),
      empty,
    );
    assert.ok(r.ok);
    assert.deepEqual(r.patch.multicastStatic, [
      { port: 'member:dana', group: '239.1.1.1' },
      { port: 'lan', group: 'ff15::1' },
    ]);
    assert.deepEqual(r.rows, [1, 3]);
    assert.equal(formField('multicastStatic[1].group', r.rows), 'multicastStatic[3].group');
    assert.equal(formField('multicastStatic[0]', r.rows), 'multicastStatic[1]');
    assert.equal(formField('multicastStatic', r.rows), 'multicastStatic');
    assert.equal(formField('multicastLan', r.rows), 'multicastLan');
    // Removing every row: null (none).
    const none = multicastPatch(form({ statics: [] }), {
      multicastStatic: [{ port: 'lan', group: '239.1.1.1' }],
    });
    assert.ok(none.ok);
    assert.deepEqual(none.patch, { multicastStatic: null });
  });
});

describe('console multicast form values through the real API', () => {
  let app: FastifyInstance;
  let store: Store;
  let token = '';
  const call = async (method: 'GET' | 'PATCH', url: string, payload?: unknown) => {
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
  });
  after(async () => {
    await app.close();
    store.close();
  });

  it('multicast settings round-trip through PATCH /settings', async () => {
    const current = (await call('GET', '/settings')).json as MulticastSettings;
    const values: MulticastFormValues = {
      on: true,
      lan: 'eth1',
      querier: {
        robustness: '3',
        queryIntervalS: '60',
        queryResponseIntervalS: '2.5',
        lastMemberQueryIntervalS: '',
      },
      statics: [
        { port: 'lan', group: '239.1.1.1' },
        { port: 'site:paris', group: 'ff15::1' },
      ],
    };
    const r = multicastPatch(values, current);
    assert.ok(r.ok);
    const saved = await call('PATCH', '/settings', r.patch);
    assert.equal(saved.status, 200, saved.text);
    const back = multicastFormValues(saved.json as MulticastSettings);
    assert.deepEqual(back, { ...values, querier: { ...values.querier, lastMemberQueryIntervalS: '1' } });
    // Unchanged: nothing to send.
    const again = multicastPatch(back, saved.json as MulticastSettings);
    assert.ok(again.ok);
    assert.deepEqual(again.patch, {});
    // A group that is not multicast: the API names the entry, the form shows it on the row.
    const bad = multicastPatch(
      { ...back, statics: [{ port: '', group: '' }, ...back.statics, { port: 'lan', group: '10.0.0.1' }] },
      saved.json as MulticastSettings,
    );
    assert.ok(bad.ok);
    const refused = await call('PATCH', '/settings', bad.patch);
    assert.equal(refused.status, 400, refused.text);
    const field = (refused.json['error'] as { field: string }).field;
    assert.match(field, /^multicastStatic\[2\]/, refused.text);
    assert.match(formField(field, bad.rows), /^multicastStatic\[3\]/);
  });
});
