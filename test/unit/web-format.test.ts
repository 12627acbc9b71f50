/**
 * The console's pure formatting and axis functions (web/src/format.ts, web/src/axis.ts), which use no DOM
 * and so run here under node.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { niceStep, yAxis } from '../../web/src/axis.js';
import { formatBytes, formatRate, parseExpiryInput } from '../../web/src/format.js';

test('bytes in IEC units, as the CLI prints them', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(412), '412 B');
  assert.equal(formatBytes(999), '999 B');
  assert.equal(formatBytes(1000), '0.98 KiB');
  assert.equal(formatBytes(1024), '1 KiB');
  assert.equal(formatBytes(1423), '1.39 KiB');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(51_200), '50 KiB');
  assert.equal(formatBytes(12.3 * 1024 * 1024), '12.3 MiB');
  assert.equal(formatBytes(3 * 1024 ** 3), '3 GiB');
  assert.equal(formatBytes(-1), '—');
  assert.equal(formatBytes(Number.NaN), '—');
  assert.equal(formatRate(2048), '2 KiB/s');
  for (const n of [1, 10, 999, 1000, 5000, 1e6, 1e9, 1e12])
    assert.doesNotMatch(formatBytes(n), /\bkB|MB|GB|TB\b/, `${n}: no SI units`);
});

test('niceStep: 1, 2, 2.5, 5 × 10^n at or above the value', () => {
  assert.equal(niceStep(0.3), 0.5);
  assert.equal(niceStep(1), 1);
  assert.equal(niceStep(1.2), 2);
  assert.equal(niceStep(2.2), 2.5);
  assert.equal(niceStep(3), 5);
  assert.equal(niceStep(7), 10);
  assert.equal(niceStep(0), 1);
  assert.equal(niceStep(Number.NaN), 1);
});

test('y axis: small rates get no repeated labels (not "2, 2, 1, 1, 0 B/s")', () => {
  // 2 B/s at most: a step of 0.5 would label 0, 0.5, 1, 1.5, 2 as "0, 1, 1, 2, 2 B/s" (whole bytes).
  const small = yAxis(2, formatRate, 4);
  assert.equal(new Set(small.labels).size, small.labels.length, small.labels.join(', '));
  assert.deepEqual(small.labels, ['0 B/s', '1 B/s', '2 B/s']);
  assert.deepEqual(yAxis(2, formatRate, 4, 1).labels, ['0 B/s', '1 B/s', '2 B/s']);
  for (const max of [0, 0.2, 0.7, 1, 1.4, 2, 3, 3.3, 7, 9.9, 15, 120, 999, 1000, 1500, 5e6, 3.3e9]) {
    const axis = yAxis(max, formatRate, 4, 1);
    assert.equal(new Set(axis.labels).size, axis.labels.length, `${max}: ${axis.labels.join(', ')}`);
    assert.ok(axis.top >= max, `${max}: the axis reaches the highest value`);
    assert.equal(axis.ticks[0], 0);
    assert.ok(axis.ticks.length >= 2 && axis.ticks.length <= 6, `${max}: ${axis.ticks.length} ticks`);
  }
  assert.deepEqual(yAxis(100, (v) => String(v)).ticks, [0, 25, 50, 75, 100]);
  assert.deepEqual(yAxis(0, formatRate, 4, 1).labels, ['0 B/s', '1 B/s']);
});

test('expiry input: ISO dates only, real calendar days, empty for never', () => {
  assert.equal(parseExpiryInput('2027-06-30'), '2027-06-30');
  assert.equal(parseExpiryInput(' 2028-02-29 '), '2028-02-29');
  assert.equal(parseExpiryInput(''), '');
  assert.equal(parseExpiryInput('   '), '');
  for (const bad of [
    '2027-02-29',
    '2027-13-01',
    '2027-00-10',
    '2027-06-31',
    '06/30/2027',
    '30.06.2027',
    '2027-6-3',
  ])
    assert.equal(parseExpiryInput(bad), undefined, bad);
});
