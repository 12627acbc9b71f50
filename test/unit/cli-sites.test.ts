/**
 * `weft site ...` as a person runs it, in a child process on a data directory of its own (no server).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const WEFT = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function weft(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [WEFT, ...args], {
    encoding: 'utf8',
    env: { ...process.env, WEFT_DATA: '' },
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('weft site', () => {
  let dir = '';
  let data = '';
  const ok = (args: string[]): string => {
    const r = weft([...args, '--data', data]);
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'weft-cli-sites-'));
    data = join(dir, 'data');
    const r = weft([
      'server',
      'init',
      '--data',
      data,
      '--endpoint',
      '203.0.113.1',
      '--subnet',
      '10.66.0.0/24',
    ]);
    assert.equal(r.status, 0, r.stderr);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('add generates a key and prints it once; show hides it unless --show-psk', () => {
    const out = ok([
      'site',
      'add',
      'hq',
      '--remote',
      '198.51.100.20',
      '--local-subnet',
      '10.66.0.0/24',
      '--remote-subnet',
      '10.20.0.0/16',
      '--remote-subnet',
      '10.21.0.0/16',
      '--remote-id',
      'fw.example.org',
    ]);
    const psk = /pre-shared key .*: ([A-Za-z0-9]{32})$/m.exec(out)?.[1];
    assert.ok(psk, out);
    const shown = ok(['site', 'show', 'hq']);
    assert.ok(!shown.includes(psk), 'the key is not shown by default');
    assert.match(shown, /remote subnets:\s+10\.20\.0\.0\/16, 10\.21\.0\.0\/16/);
    assert.match(shown, /status:\s+none reported/);
    assert.ok(ok(['site', 'show', 'hq', '--show-psk']).includes(psk));
    const json = JSON.parse(ok(['site', 'show', 'hq', '--json'])) as Record<string, unknown>;
    assert.equal(json['remoteId'], 'fqdn:fw.example.org');
    assert.equal('psk' in json, false);
  });

  it('--psk-file, set with durations, up/down, list, remove', () => {
    const file = join(dir, 'psk');
    writeFileSync(file, 'a-key-from-a-file-long-enough\n', { mode: 0o600 });
    ok([
      'site',
      'add',
      'branch',
      '--remote',
      '%any',
      '--local-subnet',
      '10.66.0.0/24',
      '--remote-subnet',
      '10.30.0.0/24',
      '--psk-file',
      file,
    ]);
    assert.ok(ok(['site', 'show', 'branch', '--show-psk']).includes('a-key-from-a-file-long-enough\n'));
    const set = JSON.parse(
      ok(['site', 'set', 'branch', '--child-lifetime', '30m', '--dpd', '0', '--json']),
    ) as {
      childLifetimeSec: number;
      dpdIntervalSec: number;
      startAction: string;
    };
    assert.deepEqual([set.childLifetimeSec, set.dpdIntervalSec, set.startAction], [1800, 0, 'wait']);
    assert.match(ok(['site', 'down', 'branch']), /site branch is disabled/);
    const list = ok(['site', 'list']);
    assert.match(list, /^branch\s+%any\s+10\.66\.0\.0\/24\s+10\.30\.0\.0\/24\s+disabled$/m);
    assert.match(list, /^hq\s+198\.51\.100\.20\s+.*no status$/m);
    assert.match(ok(['site', 'up', 'branch']), /enabled/);
    ok(['site', 'remove', 'branch']);
    assert.doesNotMatch(ok(['site', 'list']), /branch/);
  });

  it('refusals name the field and code and exit 1', () => {
    const r = weft([
      'site',
      'add',
      'x',
      '--data',
      data,
      '--remote',
      '198.51.100.9',
      '--local-subnet',
      '10.66.0.0/24',
      '--remote-subnet',
      '10.20.1.0/24',
    ]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /remoteSubnets\[0\].*site hq.*\[WEFT_ERR_SUBNET_CONFLICT\]/);
    const s = weft(['site', 'set', 'hq', '--data', data, '--psk', 'short']);
    assert.equal(s.status, 1);
    assert.match(s.stderr, /psk: has 5 characters.*\[WEFT_ERR_VALIDATION\]/);
    const f = weft(['site', 'show', 'hq', '--data', data, '--remote-config', 'cisco']);
    assert.match(f.stderr, /format: must be swanctl, aws or pfsense/);
  });

  it('--remote-config prints the other end: swanctl with the key, aws and pfsense', () => {
    const swan = ok(['site', 'show', 'hq', '--remote-config', 'swanctl']);
    assert.match(swan, /local_ts = 10\.20\.0\.0\/16, 10\.21\.0\.0\/16/);
    assert.match(swan, /remote_addrs = 203\.0\.113\.1/);
    assert.match(ok(['site', 'show', 'hq', '--remote-config', 'aws']), /IKE version: ikev2/);
    assert.match(ok(['site', 'show', 'hq', '--remote-config', 'pfsense']), /Key Exchange version: IKEv2/);
  });
});
