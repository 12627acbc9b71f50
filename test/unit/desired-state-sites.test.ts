/**
 * `sites:` in the state file: apply adds, updates and removes sites like members, idempotently; export
 * leaves the pre-shared keys out unless asked, and applying an export keeps the keys as they are.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ControlPlane } from '../../src/control/control-plane.js';
import { applyState, exportState, formatStateYaml, parseStateYaml } from '../../src/control/desired-state.js';
import { WeftError } from '../../src/control/errors.js';
import { openMemoryStore } from '../support/memory-store.js';

function plane(): ControlPlane {
  const store = openMemoryStore();
  ControlPlane.init(store, { endpoint: 'gw.example.net:51000', subnet: '10.66.0.0/24' });
  return new ControlPlane(store);
}

const STATE = `
groups: [eng]
sites:
  - name: hq
    remoteAddress: 198.51.100.20
    remoteId: fw.example.org
    psk: a-pre-shared-key-of-enough-length
    localSubnets: [10.66.0.0/24]
    remoteSubnets: [10.20.0.0/16]
    ikeProposals: [aes256gcm16-prfsha256-ecp384]
    dpdIntervalSec: 10
    groups: [eng]
  - name: roaming
    remoteAddress: "%any"
    localSubnets: [10.66.0.0/24]
    remoteSubnets: [10.30.0.0/24]
`;

test('apply: sites added once, the second apply changes nothing; a missing key is generated', () => {
  const cp = plane();
  const first = applyState(cp, 'test', parseStateYaml(STATE));
  assert.deepEqual(
    first.filter((c) => c.kind === 'site'),
    [
      { op: 'add', kind: 'site', target: 'hq' },
      { op: 'add', kind: 'site', target: 'roaming', detail: { psk: 'generated' } },
    ],
  );
  assert.equal(cp.sitePsk('hq'), 'a-pre-shared-key-of-enough-length');
  assert.equal(cp.sitePsk('roaming').length, 32);
  assert.equal(cp.getSite('hq').remoteId, 'fqdn:fw.example.org');
  assert.deepEqual(applyState(cp, 'test', parseStateYaml(STATE)), []);
});

test('export -> apply on a fresh network round-trips; psk only with includeSecrets; keys kept when absent', () => {
  const cp = plane();
  applyState(cp, 'test', parseStateYaml(STATE));
  cp.setSiteEnabled('test', 'roaming', false);
  const plain = formatStateYaml(exportState(cp));
  assert.ok(!plain.includes('psk'), 'no keys unless asked');
  assert.deepEqual(applyState(cp, 'test', parseStateYaml(plain)), [], 'applying the export changes nothing');
  assert.equal(cp.sitePsk('hq'), 'a-pre-shared-key-of-enough-length', 'an absent psk keeps the key');

  const full = formatStateYaml(exportState(cp, { includeSecrets: true }));
  assert.match(full, /psk: a-pre-shared-key-of-enough-length/);
  const other = plane();
  applyState(other, 'test', parseStateYaml(full));
  assert.deepEqual(
    exportState(other, { includeSecrets: true }).sites,
    exportState(cp, { includeSecrets: true }).sites,
  );
  assert.equal(other.getSite('roaming').enabled, false);
});

test('apply: a changed field updates the site, an absent site is removed, errors name sites[i].field', () => {
  const cp = plane();
  applyState(cp, 'test', parseStateYaml(STATE));
  const changed = STATE.replace('dpdIntervalSec: 10', 'dpdIntervalSec: 20').replace(
    / {2}- name: roaming[\s\S]*$/,
    '',
  );
  const changes = applyState(cp, 'test', parseStateYaml(changed));
  assert.deepEqual(
    changes.map((c) => `${c.op} ${c.kind} ${c.target}`),
    ['remove site roaming', 'update site hq'],
  );
  assert.equal(cp.getSite('hq').dpdIntervalSec, 20);
  const bad = STATE.replace('remoteSubnets: [10.30.0.0/24]', 'remoteSubnets: [10.20.1.0/24]');
  assert.throws(
    () => applyState(cp, 'test', parseStateYaml(bad)),
    (e: unknown) => e instanceof WeftError && e.field === 'sites[1].remoteSubnets[0]',
  );
  assert.throws(
    () =>
      applyState(
        cp,
        'test',
        parseStateYaml(`sites:\n  - name: x\n    localSubnets: []\n    remoteSubnets: []\n    bogus: 1\n`),
      ),
    (e: unknown) => e instanceof WeftError && e.code === 'WEFT_ERR_VALIDATION',
  );
  assert.deepEqual(
    cp.listSites().map((s) => s.name),
    ['hq'],
    'a failed apply changes nothing',
  );
});

test('IKE details in the state file: exported when not the defaults, applied back, refused by field', () => {
  const cp = plane();
  const detailed = STATE.replace(
    '    dpdIntervalSec: 10\n',
    '    dpdIntervalSec: 10\n    childPerSubnetPair: true\n    childHardLifetimeSec: 4000\n' +
      '    fragmentSize: 1200\n    childRekeyBytes: 4294967296\n    childLifeBytes: 5368709120\n',
  );
  applyState(cp, 'test', parseStateYaml(detailed));
  const [hq, roaming] = exportState(cp).sites!;
  assert.deepEqual(
    [hq!.childPerSubnetPair, hq!.ikeHardLifetimeSec, hq!.childHardLifetimeSec, hq!.fragmentSize],
    [true, undefined, 4000, 1200],
  );
  assert.deepEqual([hq!.childRekeyBytes, hq!.childLifeBytes], [2 ** 32, 5 * 2 ** 30]);
  assert.equal(roaming!.fragmentSize, undefined, 'defaults are left out');
  assert.deepEqual(applyState(cp, 'test', parseStateYaml(formatStateYaml(exportState(cp)))), []);
  assert.throws(
    () => applyState(cp, 'test', parseStateYaml(detailed.replace('fragmentSize: 1200', 'fragmentSize: 100'))),
    (e: unknown) => e instanceof WeftError && e.field === 'sites[0].fragmentSize',
  );
});
