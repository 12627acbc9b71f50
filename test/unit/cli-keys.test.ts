/**
 * `weft genkey | pubkey | genpsk` against the formats of wireguard-tools, and against `wg` itself.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, openSync, closeSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const WEFT = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const KEY_TEXT = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=\n$/;

function weft(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [WEFT, ...args], { input, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function hasWg(): boolean {
  return spawnSync('wg', ['--version']).status === 0;
}

describe('weft genkey / pubkey / genpsk', () => {
  it('prints clamped private keys in wg format', () => {
    for (let i = 0; i < 5; i++) {
      const { status, stdout } = weft(['genkey']);
      assert.equal(status, 0);
      assert.match(stdout, KEY_TEXT);
      const raw = Buffer.from(stdout.trim(), 'base64');
      assert.equal(raw[0]! & 7, 0);
      assert.equal(raw[31]! & 0xc0, 0x40);
    }
  });

  it('prints preshared keys in wg format, different every time', () => {
    const a = weft(['genpsk']).stdout;
    const b = weft(['genpsk']).stdout;
    assert.match(a, KEY_TEXT);
    assert.notEqual(a, b);
  });

  it('derives the RFC 7748 public key of a private key on stdin', () => {
    // RFC 7748 §6.1, Alice.
    const alicePriv = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex');
    const alicePub = Buffer.from('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a', 'hex');
    const r = weft(['pubkey'], `${alicePriv.toString('base64')}\n`);
    assert.equal(r.status, 0);
    assert.equal(r.stdout, `${alicePub.toString('base64')}\n`);
  });

  it('rejects a malformed private key with wg’s message and exit status 1', () => {
    for (const bad of ['', 'hello', 'AAAA', `${'A'.repeat(43)}=x`]) {
      const r = weft(['pubkey'], bad);
      assert.equal(r.status, 1);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /not the correct length or format/);
    }
  });

  it('writes keys to files with mode 0600, by --output or by redirection', () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-keys-'));
    try {
      const named = join(dir, 'named.key');
      assert.equal(weft(['genkey', '--output', named]).status, 0);
      assert.equal(statSync(named).mode & 0o777, 0o600);
      assert.match(readFileSync(named, 'utf8'), KEY_TEXT);
      const redirected = join(dir, 'redirected.key');
      const fd = openSync(redirected, 'w', 0o644);
      try {
        const r = spawnSync(process.execPath, [WEFT, 'genpsk'], { stdio: ['ignore', fd, 'pipe'] });
        assert.equal(r.status, 0);
      } finally {
        closeSync(fd);
      }
      assert.equal(statSync(redirected).mode & 0o777, 0o600);
      assert.match(readFileSync(redirected, 'utf8'), KEY_TEXT);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it(
    'agrees with wg pubkey in both directions',
    { skip: !hasWg() && !process.env.CI && 'wireguard-tools not installed' },
    () => {
      for (let i = 0; i < 5; i++) {
        const ours = weft(['genkey']).stdout;
        assert.equal(
          weft(['pubkey'], ours).stdout,
          execFileSync('wg', ['pubkey'], { input: ours, encoding: 'utf8' }),
        );
        const theirs = execFileSync('wg', ['genkey'], { encoding: 'utf8' });
        assert.equal(
          weft(['pubkey'], theirs).stdout,
          execFileSync('wg', ['pubkey'], { input: theirs, encoding: 'utf8' }),
        );
      }
    },
  );
});
