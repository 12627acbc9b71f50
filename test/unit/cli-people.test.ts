/**
 * The people VPN's commands as a person runs them: `weft server init`, `member ...`, `token ...` in a child
 * process on a data directory of their own (no server running, no network).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const WEFT = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function weft(args: string[], env: NodeJS.ProcessEnv = {}): Run {
  const r = spawnSync(process.execPath, [WEFT, ...args], {
    encoding: 'utf8',
    env: { ...process.env, WEFT_DATA: '', ...env },
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs the command with standard output redirected to `file` (which exists with mode `mode`). */
function weftInto(file: string, mode: number, args: string[]): Run {
  writeFileSync(file, '', { mode });
  const fd = openSync(file, 'w');
  try {
    const r = spawnSync(process.execPath, [WEFT, ...args], {
      stdio: ['ignore', fd, 'pipe'],
      encoding: 'utf8',
      timeout: 60_000,
    });
    return { status: r.status, stdout: '', stderr: r.stderr };
  } finally {
    closeSync(fd);
  }
}

function modeOf(file: string): number {
  return statSync(file).mode & 0o777;
}

function initData(dir: string, extra: string[] = []): string {
  const data = join(dir, 'data');
  const r = weft([
    'server',
    'init',
    '--data',
    data,
    '--endpoint',
    'vpn.example.com',
    '--subnet',
    '10.66.0.0/24',
    ...extra,
  ]);
  assert.equal(r.status, 0, r.stderr);
  return data;
}

describe('commands that print secrets write them for their owner only', () => {
  let dir = '';
  let data = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'weft-cli-'));
    data = initData(dir);
    assert.equal(weft(['member', 'add', 'alice', '--data', data]).status, 0);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('member config > FILE: the redirect target becomes 0600', () => {
    const file = join(dir, 'redirected.conf');
    const r = weftInto(file, 0o644, ['member', 'config', 'alice', '--data', data]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(readFileSync(file, 'utf8'), /PrivateKey = /);
    assert.equal(modeOf(file), 0o600);
  });

  it('member config -o FILE: created 0600, an existing file narrowed to 0600', () => {
    const created = join(dir, 'created.conf');
    let r = weft(['member', 'config', 'alice', '--data', data, '-o', created]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(readFileSync(created, 'utf8'), /PrivateKey = /);
    assert.equal(modeOf(created), 0o600);
    const existing = join(dir, 'existing.conf');
    writeFileSync(existing, 'old\n', { mode: 0o644 });
    r = weft(['member', 'config', 'alice', '--data', data, '--output', existing]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(readFileSync(existing, 'utf8'), /^# Weft member alice\n\[Interface\]/);
    assert.equal(modeOf(existing), 0o600);
  });

  it('member config --qr-png FILE and --qr > FILE: 0600 too', () => {
    const png = join(dir, 'alice.png');
    writeFileSync(png, '', { mode: 0o644 });
    const r = weft(['member', 'config', 'alice', '--data', data, '--qr-png', png]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(png).subarray(1, 4).toString('latin1'), 'PNG');
    assert.equal(modeOf(png), 0o600);
    const terminal = join(dir, 'alice.qr');
    assert.equal(weftInto(terminal, 0o644, ['member', 'config', 'alice', '--data', data, '--qr']).status, 0);
    assert.equal(modeOf(terminal), 0o600);
  });

  it('token create > FILE and -o FILE, server init > FILE: 0600', () => {
    const redirected = join(dir, 'token.txt');
    assert.equal(weftInto(redirected, 0o644, ['token', 'create', 'ci', '--data', data]).status, 0);
    assert.match(readFileSync(redirected, 'utf8'), /weft_/);
    assert.equal(modeOf(redirected), 0o600);
    const named = join(dir, 'token2.txt');
    const r = weft(['token', 'create', 'ci2', '--data', data, '-o', named]);
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /weft_/);
    assert.match(readFileSync(named, 'utf8'), /^weft_[A-Za-z0-9_-]+\n$/);
    assert.equal(modeOf(named), 0o600);
    const initOut = join(dir, 'init.txt');
    const init = weftInto(initOut, 0o644, [
      'server',
      'init',
      '--data',
      join(dir, 'data2'),
      '--endpoint',
      'vpn.example.com',
      '--subnet',
      '10.67.0.0/24',
    ]);
    assert.equal(init.status, 0, init.stderr);
    assert.match(readFileSync(initOut, 'utf8'), /admin password: /);
    assert.equal(modeOf(initOut), 0o600);
  });
});

describe('weft server endpoint', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'weft-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('prints the endpoint, changes it (saying from what to what), and refuses a bad one', () => {
    const data = initData(dir);
    assert.equal(weft(['member', 'add', 'alice', '--data', data]).status, 0);
    let r = weft(['server', 'endpoint', '--data', data]);
    assert.equal(r.stdout, 'vpn.example.com:51820\n');
    r = weft(['server', 'endpoint', '--data', data, 'vpn2.example.com']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^endpoint changed: vpn\.example\.com:51820 -> vpn2\.example\.com:51820\n/);
    assert.match(r.stdout, /still dial vpn\.example\.com:51820.*weft member config NAME/s);
    assert.match(
      weft(['member', 'config', 'alice', '--data', data]).stdout,
      /Endpoint = vpn2\.example\.com:51820/,
    );
    r = weft(['server', 'endpoint', '--data', data, 'vpn2.example.com:51820']);
    assert.equal(r.stdout, 'endpoint: vpn2.example.com:51820 (unchanged)\n');
    r = weft(['server', 'endpoint', '--data', data, 'not a host']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /endpoint: .*\[WEFT_ERR_VALIDATION\]/);
    assert.equal(weft(['server', 'endpoint', '--data', data]).stdout, 'vpn2.example.com:51820\n');
    assert.match(weft(['audit', '--data', data, '--limit', '1']).stdout, /settings\.update/);
  });
});

describe('a full-tunnel member without internet is told so', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'weft-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('member add and member config warn on standard error until NAT egress and a policy are there', () => {
    const data = initData(dir);
    let r = weft(['member', 'add', 'bob', '--full-tunnel', '--data', data]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /warning: bob is full-tunnel but will have no internet: NAT egress is off/);
    assert.match(r.stderr, /default policy is deny \(weft policy allow '\*' 0\.0\.0\.0\/0\)/);
    r = weft(['member', 'config', 'bob', '--data', data]);
    assert.match(r.stderr, /bob is full-tunnel but will have no internet/);
    assert.match(r.stdout, /^# Weft member bob\n/);
    assert.equal(weft(['member', 'add', 'carol', '--data', data]).stderr, '');

    const state = join(dir, 'state.yaml');
    writeFileSync(state, 'settings:\n  natEgress: eth0\n');
    assert.equal(weft(['apply', '-f', state, '--data', data]).status, 0);
    r = weft(['member', 'config', 'bob', '--data', data]);
    assert.doesNotMatch(r.stderr, /NAT egress/);
    assert.match(r.stderr, /no policy lets its traffic out/);
    assert.equal(weft(['policy', 'allow', '*', '0.0.0.0/0', '--data', data]).status, 0);
    assert.equal(weft(['member', 'config', 'bob', '--data', data]).stderr, '');
  });
});

describe('weft member link', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'weft-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('prints a one-time link, and says when the API listens on loopback only', () => {
    const local = initData(dir);
    assert.equal(weft(['member', 'add', 'alice', '--data', local]).status, 0);
    let r = weft(['member', 'link', 'alice', '--data', local]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^http:\/\/127\.0\.0\.1:8780\/dl\/[A-Za-z0-9_-]{43}\n$/);
    assert.match(
      r.stderr,
      /warning: the API listens on 127\.0\.0\.1:8780 .*works only here.*--api-listen 0\.0\.0\.0:8780/,
    );
    const open = join(dir, 'open');
    const init = weft([
      'server',
      'init',
      '--data',
      open,
      '--endpoint',
      'vpn.example.com',
      '--subnet',
      '10.67.0.0/24',
      '--api-listen',
      '0.0.0.0:8780',
    ]);
    assert.equal(init.status, 0, init.stderr);
    assert.equal(weft(['member', 'add', 'bob', '--data', open]).status, 0);
    r = weft(['member', 'link', 'bob', '--data', open, '--ttl', '10']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^http:\/\/vpn\.example\.com:8780\/dl\/[A-Za-z0-9_-]{43}\n$/);
    assert.doesNotMatch(r.stderr, /warning/);
  });
});
