import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hashPassword, hashPasswordBlocking, verifyPassword } from '../../src/control/secrets.js';

test('passwords: a hash verifies its password only; the blocking and pooled forms agree', async () => {
  const stored = await hashPassword('correct horse battery');
  assert.match(stored, /^scrypt\$32768\$8\$1\$/);
  assert.equal(await verifyPassword('correct horse battery', stored), true);
  assert.equal(await verifyPassword('correct horse batterx', stored), false);
  assert.equal(
    await verifyPassword('correct horse battery', hashPasswordBlocking('correct horse battery')),
    true,
  );
  assert.equal(await verifyPassword('x', 'scrypt$1$2$3'), false);
});

test('password checks leave the event loop free: a timer keeps firing while 20 run at once', async () => {
  const stored = await hashPassword('the right password');
  let ticks = 0;
  let ticksWhenDone = -1;
  const timer = setInterval(() => ticks++, 1);
  try {
    const checks = Array.from({ length: 20 }, () => verifyPassword('a wrong password', stored));
    // Whatever the form, `checks` is complete here only if each ran to its end before returning.
    const results = await Promise.all(checks);
    ticksWhenDone = ticks;
    assert.deepEqual(results, Array(20).fill(false));
  } finally {
    clearInterval(timer);
  }
  // 20 scrypt runs (N = 2^15) take well over 100 ms of CPU; a loop they do not block turns many times meanwhile.
  assert.ok(ticksWhenDone >= 5, `the timer fired ${ticksWhenDone} times during 20 password checks`);
});
