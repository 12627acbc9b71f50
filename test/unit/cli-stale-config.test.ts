/**
 * `weft policy`, `route` and `member list/show` say when a member's downloaded config is stale: the CLI
 * against a store in a temporary data directory.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const WEFT = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

test('CLI: a policy or route change names the members whose downloaded config is now stale', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const data = join(dir, 'data');
  const weft = (...args: string[]): string => {
    const r = spawnSync(process.execPath, [WEFT, ...args, '-d', data], { encoding: 'utf8' });
    assert.equal(r.status, 0, `weft ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  weft(
    'server',
    'init',
    '--endpoint',
    'vpn.example.com',
    '--subnet',
    '10.66.0.0/24',
    '--default-policy',
    'allow',
  );
  weft('group', 'add', 'eng');
  weft('member', 'add', 'alice', '--group', 'eng');
  weft('member', 'add', 'bob');
  weft('member', 'add', 'carol');
  assert.match(weft('member', 'config', 'alice'), /^AllowedIPs = 10\.66\.0\.1\/32, 10\.66\.0\.0\/24$/m);
  weft('member', 'config', 'bob');

  const list = (): string[][] =>
    weft('member', 'list')
      .trim()
      .split('\n')
      .map((line) => line.split(/\s+/));
  assert.deepEqual(list()[0]?.at(-1), 'CONFIG');
  assert.deepEqual(
    list()
      .slice(1)
      .map((row) => [row[0], row.at(-1)]),
    [
      ['alice', 'current'],
      ['bob', 'current'],
      ['carol', 'never'],
    ],
  );

  const added = weft('policy', 'allow', 'eng', '10.20.0.0/24');
  assert.match(added, /^added policy #1: allow eng 10\.20\.0\.0\/24$/m);
  assert.match(added, /^1 member config\(s\) changed since they were downloaded: alice$/m);
  assert.match(weft('member', 'show', 'alice'), /^config: +changed since it was downloaded/m);
  assert.match(weft('member', 'show', 'bob'), /^config: +current \(downloaded/m);
  assert.match(weft('member', 'show', 'carol'), /^config: +never handed out$/m);
  assert.deepEqual(
    list()
      .slice(1)
      .map((row) => row.at(-1)),
    ['stale', 'current', 'never'],
  );

  weft('member', 'config', 'alice');
  assert.doesNotMatch(
    weft('policy', 'deny', 'eng', '10.20.0.9/32'),
    /changed since/,
    'deny rules change no config',
  );
  assert.match(weft('policy', 'allow', '*', '10.30.0.0/24'), /: alice, bob$/m);
  weft('member', 'config', 'alice');
  weft('member', 'config', 'bob');
  // With the default policy allow, every member's config reaches the shared routes.
  assert.match(weft('route', 'add', '10.40.0.0/24'), /^2 member config\(s\) changed .*: alice, bob$/m);
  // alice takes the new config; bob's old one matches again once the route is gone.
  weft('member', 'config', 'alice');
  assert.match(weft('route', 'remove', '10.40.0.0/24'), /^1 member config\(s\) changed .*: alice$/m);

  // The CONFIG column covers both protocols: an OpenVPN profile handed out shows as openvpn:STATE.
  weft('member', 'config', 'bob');
  weft('member', 'config', 'carol', '--openvpn');
  weft('member', 'config', 'bob', '--openvpn');
  assert.deepEqual(
    list()
      .slice(1)
      .map((row) => row.at(-1)),
    ['stale', 'current,openvpn:current', 'never,openvpn:current'],
  );
  weft('server', 'openvpn', '--udp-port', '1195');
  assert.deepEqual(
    list()
      .slice(1)
      .map((row) => row.at(-1)),
    ['stale', 'current,openvpn:stale', 'never,openvpn:stale'],
  );
});
