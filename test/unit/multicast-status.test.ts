/**
 * The multicast status `weft server run` keeps in the data directory for `weft multicast list`
 * (src/server/multicast-status.ts): written whole and private, read back, refused when absent or stale.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { MulticastSnapshot } from '../../src/gateway/multicast.js';
import {
  formatMulticastStatus,
  multicastStatusPath,
  readMulticastStatus,
  removeMulticastStatus,
  writeMulticastStatus,
} from '../../src/server/multicast-status.js';

const SNAPSHOT: MulticastSnapshot = {
  counters: { packets: 30, copies: 40, reports: 3 },
  drops: { 'policy-send': 10 },
  groups: [
    {
      group: '239.1.1.1',
      receivers: [
        { port: 'wg:bob', expiresInS: 250 },
        { port: 'ovpn:erin', expiresInS: null },
      ],
      packets: 20,
      copies: 40,
      senders: [{ port: 'wg:alice', packets: 20 }],
    },
  ],
  ports: [{ port: 'wg:dave', sent: 10, received: 0, drops: { 'policy-send': 10 } }],
};

test('written 0600, read back while fresh; absent, stale or damaged says why', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-mcs-'));
  try {
    const none = readMulticastStatus(dir, new Date());
    assert.equal(none.ok, false);
    assert.match(!none.ok ? none.why : '', /no running server/);
    const at = new Date('2030-01-01T00:00:00Z');
    await writeMulticastStatus(dir, SNAPSHOT, at);
    assert.equal(statSync(multicastStatusPath(dir)).mode & 0o777, 0o600);
    const fresh = readMulticastStatus(dir, new Date(at.getTime() + 3_000));
    assert.deepEqual(fresh, { ok: true, status: { at: at.toISOString(), ...SNAPSHOT } });
    const stale = readMulticastStatus(dir, new Date(at.getTime() + 60_000));
    assert.match(!stale.ok ? stale.why : '', /not running/);
    writeFileSync(multicastStatusPath(dir), '{');
    assert.match(((r) => (!r.ok ? r.why : ''))(readMulticastStatus(dir, at)), /not valid JSON/);
    await removeMulticastStatus(dir);
    assert.equal(readMulticastStatus(dir, at).ok, false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the listing names groups, receivers (static or seconds left), senders, ports and drops', () => {
  const text = formatMulticastStatus(SNAPSHOT);
  assert.match(text, /^group 239\.1\.1\.1: 20 packet\(s\), 40 copies$/m);
  assert.match(text, /receivers: wg:bob \(250 s\), ovpn:erin \(static\)/);
  assert.match(text, /senders: +wg:alice \(20\)/);
  assert.match(text, /^wg:dave +10 +0 +policy-send 10$/m);
  assert.match(text, /^drops: policy-send 10$/m);
  assert.match(formatMulticastStatus({ ...SNAPSHOT, groups: [] }), /groups: none joined/);
});
