import assert from 'node:assert/strict';
import { test } from 'node:test';
import { internetGaps, internetWarning } from '../../src/control/internet-access.js';
import type { Policy, Settings } from '../../src/control/model.js';

const base = { natEgress: 'eth0', defaultPolicy: 'deny' } as unknown as Settings;
const rule = (
  id: number,
  action: 'allow' | 'deny',
  group: string,
  destination: string,
  proto = 'any',
): Policy => ({ id, action, group, destination, proto, ports: null, direction: 'send' }) as Policy;

test('internet gaps: NAT egress, then allow rules for the member, deny rules and the default policy', () => {
  assert.equal(internetGaps({ ...base, natEgress: null }, [rule(1, 'allow', '*', 'any')], []).length, 1);
  assert.deepEqual(internetGaps(base, [rule(1, 'allow', '*', 'any')], []), []);
  assert.deepEqual(internetGaps(base, [rule(1, 'allow', 'eng', '0.0.0.0/0')], ['eng']), []);
  assert.match(
    internetGaps(base, [rule(1, 'allow', 'eng', '0.0.0.0/0')], ['ops'])[0]!,
    /weft policy allow ops/,
  );
  assert.equal(internetGaps(base, [rule(1, 'allow', '*', '0.0.0.0/0', 'tcp')], []).length, 1, 'tcp only');
  assert.equal(
    internetGaps(base, [{ ...rule(1, 'allow', '*', 'any'), direction: 'receive' }], []).length,
    1,
    'a receive rule grants no internet access',
  );
  assert.deepEqual(internetGaps({ ...base, defaultPolicy: 'allow' }, [], []), []);
  assert.match(
    internetGaps({ ...base, defaultPolicy: 'allow' }, [rule(1, 'deny', '*', 'any')], [])[0]!,
    /deny rule/,
  );
  assert.equal(internetWarning('a', false, [], { ...base, natEgress: null }, []), '');
  assert.match(
    internetWarning('a', true, [], { ...base, natEgress: null }, []),
    /^a is full-tunnel but .*; and /,
  );
});
