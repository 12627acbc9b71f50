/**
 * scripts/run.sh and scripts/test.sh, the README's two commands, before they reach setup: root, a user with
 * sudo, a user without it; and what run.sh asks of the `weft` command on a first and a later run. They run
 * from a copy of the scripts with setup.sh, `id`, `sudo` and `node` replaced by stand-ins that only log,
 * on a PATH holding nothing else they need.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const SCRIPTS = fileURLToPath(new URL('../../../scripts/', import.meta.url));

function which(cmd: string): string {
  const r = spawnSync('bash', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  const path = r.stdout.trim();
  assert.ok(r.status === 0 && path.startsWith('/'), `${cmd} is not installed`);
  return path;
}

function executable(file: string, text: string): void {
  writeFileSync(file, text);
  chmodSync(file, 0o755);
}

interface Sandbox {
  readonly root: string;
  readonly repo: string;
  readonly log: string;
  /** A PATH without sudo; `withSudo` adds a stand-in that runs the command as uid 0 with a clean environment. */
  path(withSudo: boolean): string;
}

function sandbox(): Sandbox {
  const root = mkdtempSync(join(tmpdir(), 'weft-scripts-'));
  const repo = join(root, 'repo');
  mkdirSync(join(repo, 'scripts'), { recursive: true });
  for (const f of ['run.sh', 'test.sh', 'root.sh']) {
    if (existsSync(join(SCRIPTS, f))) copyFileSync(join(SCRIPTS, f), join(repo, 'scripts', f));
  }
  const log = join(root, 'log');
  executable(
    join(repo, 'scripts', 'setup.sh'),
    '#!/bin/bash\necho "setup uid=$(id -u)" >> "$FAKE_LOG"\nexit "${FAKE_SETUP_STATUS:-0}"\n',
  );
  const bin = join(root, 'bin');
  mkdirSync(bin);
  for (const cmd of ['bash', 'env', 'dirname', 'basename', 'awk']) symlinkSync(which(cmd), join(bin, cmd));
  executable(join(bin, 'id'), '#!/bin/bash\necho "${FAKE_UID:-1000}"\n');
  executable(join(bin, 'node'), '#!/bin/bash\necho "node $*" >> "$FAKE_LOG"\n');
  executable(
    join(bin, 'ip'),
    '#!/bin/bash\n[ "$*" = "-o route show default" ] && echo "default via 10.0.0.1 dev eth7 proto dhcp metric 100"\n',
  );
  const sudoBin = join(root, 'sudo-bin');
  mkdirSync(sudoBin);
  executable(
    join(sudoBin, 'sudo'),
    '#!/bin/bash\necho "sudo $*" >> "$FAKE_LOG"\n[ "$1" = -- ] && shift\n' +
      'exec /usr/bin/env -i PATH="$PATH" FAKE_LOG="$FAKE_LOG" FAKE_SETUP_STATUS="$FAKE_SETUP_STATUS" FAKE_UID=0 "$@"\n',
  );
  return { root, repo, log, path: (withSudo) => (withSudo ? `${bin}:${sudoBin}` : bin) };
}

interface Run {
  readonly status: number | null;
  readonly stderr: string;
  readonly log: string[];
}

function runScript(
  sb: Sandbox,
  script: string,
  opts: { uid: number; sudo: boolean; env?: NodeJS.ProcessEnv },
): Run {
  rmSync(sb.log, { force: true });
  const r = spawnSync('/bin/bash', [join(sb.repo, 'scripts', script)], {
    cwd: sb.root,
    encoding: 'utf8',
    timeout: 20_000,
    env: { PATH: sb.path(opts.sudo), FAKE_LOG: sb.log, FAKE_UID: String(opts.uid), ...opts.env },
  });
  const log = existsSync(sb.log) ? readFileSync(sb.log, 'utf8').trim().split('\n') : [];
  return { status: r.status, stderr: r.stderr, log };
}

describe('the README commands work for root and for a user with sudo', () => {
  let sb: Sandbox;
  before(() => {
    sb = sandbox();
  });
  after(() => rmSync(sb.root, { recursive: true, force: true }));

  for (const script of ['run.sh', 'test.sh']) {
    it(`${script} as a user without sudo: says to run it as root, sets nothing up`, () => {
      const r = runScript(sb, script, { uid: 1000, sudo: false, env: { FAKE_SETUP_STATUS: '3' } });
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`scripts/${script}: needs root .*sudo is not installed`));
      assert.match(r.stderr, /run it as root/);
      assert.deepEqual(r.log, []);
    });

    it(`${script} as a user with sudo: runs itself again through sudo, keeping WEFT_*`, () => {
      const data = join(sb.root, 'data-sudo');
      const r = runScript(sb, script, {
        uid: 1000,
        sudo: true,
        env: { FAKE_SETUP_STATUS: '3', WEFT_DATA: data, OTHER: 'x' },
      });
      assert.equal(r.status, 3, r.stderr);
      assert.equal(r.log[0], `sudo -- env WEFT_DATA=${data} bash ${join(sb.repo, 'scripts', script)}`);
      assert.equal(r.log[1], 'setup uid=0');
    });

    it(`${script} as root: goes straight to setup`, () => {
      const r = runScript(sb, script, { uid: 0, sudo: false, env: { FAKE_SETUP_STATUS: '3' } });
      assert.equal(r.status, 3, r.stderr);
      assert.deepEqual(r.log, ['setup uid=0']);
    });
  }
});

describe('run.sh and WEFT_ENDPOINT', () => {
  let sb: Sandbox;
  before(() => {
    sb = sandbox();
  });
  after(() => rmSync(sb.root, { recursive: true, force: true }));

  it('first run: the store is created with WEFT_ENDPOINT, port 51820 and NAT egress on the default route', () => {
    const data = join(sb.root, 'first');
    const r = runScript(sb, 'run.sh', {
      uid: 0,
      sudo: false,
      env: { WEFT_DATA: data, WEFT_ENDPOINT: 'fd00::1' },
    });
    assert.equal(r.status, 0, r.stderr);
    const main = join(sb.repo, 'dist/src/cli/main.js');
    assert.deepEqual(r.log, [
      'setup uid=0',
      `node ${main} server init --data ${data} --endpoint [fd00::1]:51820 --subnet 10.66.0.0/24 --nat-egress eth7`,
      `node ${main} server run --data ${data}`,
    ]);
  });

  it('later run: WEFT_ENDPOINT replaces the stored endpoint; without it the store is left alone', () => {
    const data = join(sb.root, 'later');
    mkdirSync(data);
    writeFileSync(join(data, 'weft.db'), '');
    const main = join(sb.repo, 'dist/src/cli/main.js');
    let r = runScript(sb, 'run.sh', {
      uid: 0,
      sudo: false,
      env: { WEFT_DATA: data, WEFT_ENDPOINT: 'vpn2.example.com' },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.log, [
      'setup uid=0',
      `node ${main} server endpoint --data ${data} vpn2.example.com:51820`,
      `node ${main} server run --data ${data}`,
    ]);
    r = runScript(sb, 'run.sh', {
      uid: 0,
      sudo: false,
      env: { WEFT_DATA: data, WEFT_ENDPOINT: 'vpn3:4500' },
    });
    assert.equal(r.log[1], `node ${main} server endpoint --data ${data} vpn3:4500`);
    r = runScript(sb, 'run.sh', { uid: 0, sudo: false, env: { WEFT_DATA: data } });
    assert.deepEqual(r.log, ['setup uid=0', `node ${main} server run --data ${data}`]);
  });
});
