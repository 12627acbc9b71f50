/**
 * A damaged store and its backups, as a person meets them on the command line: a weft.db that is garbage,
 * cut in half, or has pages overwritten stops `server run` and every other command with what is wrong and
 * how to restore (exit status 3, no stack trace); `weft backup FILE` copies the store consistently while
 * another process writes, and that copy restores.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  closeSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { ControlPlane } from '../../src/control/control-plane.js';
import { openSqliteStore } from '../../src/control/store-sqlite.js';

const WEFT = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const WRITER = fileURLToPath(new URL('./store-crash-writer.js', import.meta.url));
const PAGE = 4096;

function weft(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [WEFT, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Bytes that are the same on every run (a damaged file the test can reproduce), not random. */
function garbage(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A data directory with an initialised store of `members` members, its WAL folded into weft.db. */
function dataDir(root: string, name: string, members: number): string {
  const dir = join(root, name);
  mkdirSync(dir, { mode: 0o700 });
  const store = openSqliteStore(join(dir, 'weft.db'));
  try {
    ControlPlane.init(store, { endpoint: 'vpn.example.com', subnet: '10.66.0.0/20' });
    const cp = new ControlPlane(store);
    for (let i = 0; i < members; i++) cp.addMember('test', { name: `m${String(i).padStart(3, '0')}` });
  } finally {
    store.close(); // the last connection's close checkpoints the WAL into weft.db and removes it
  }
  return dir;
}

function assertDamagedReport(
  r: { status: number | null; stdout: string; stderr: string },
  dir: string,
): void {
  assert.equal(r.status, 3, `exit status 3, got ${r.status}: ${r.stderr}`);
  assert.equal(r.stdout, '');
  const file = join(dir, 'weft.db');
  assert.ok(r.stderr.startsWith(`weft: ${file} is damaged: `), r.stderr);
  assert.match(r.stderr, /\[WEFT_ERR_STORE_DAMAGED\]/);
  assert.match(r.stderr, /weft backup FILE/);
  assert.ok(r.stderr.includes(`cp FILE ${file} && rm -f ${file}-wal ${file}-shm`), r.stderr);
  assert.doesNotMatch(r.stderr, /SqliteError|\n\s+at /, 'no stack trace');
}

describe('a damaged store stops every command with what to do', () => {
  let root = '';
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'weft-damage-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const damages: [string, (file: string) => void][] = [
    ['16 KB of garbage', (file) => writeFileSync(file, garbage(16 * 1024, 7))],
    ['cut in half', (file) => truncateSync(file, Math.floor(statSync(file).size / 2))],
    [
      // `member list` never reads the audit log: before, it listed the members as if all were well.
      "the audit log's pages overwritten (it still opens)",
      (file) => {
        const db = new Database(file);
        const pages = db.prepare("SELECT pageno FROM dbstat WHERE name = 'audit'").pluck<number>().all();
        db.close();
        assert.ok(pages.length > 0);
        const fd = openSync(file, 'r+');
        try {
          for (const p of pages) writeSync(fd, garbage(PAGE, p), 0, PAGE, (p - 1) * PAGE);
        } finally {
          closeSync(fd);
        }
      },
    ],
  ];
  for (const [i, [what, damage]] of damages.entries()) {
    it(`${what}: member list, server run and backup exit 3 with the way back`, () => {
      const dir = dataDir(root, `d${i}`, 150);
      damage(join(dir, 'weft.db'));
      assertDamagedReport(weft(['member', 'list', '--data', dir]), dir);
      // server run checks the store before it touches any interface, so this needs no root.
      assertDamagedReport(weft(['server', 'run', '--data', dir]), dir);
      assertDamagedReport(weft(['backup', '--data', dir, join(root, `d${i}.backup`)]), dir);
    });
  }
});

describe('weft backup', () => {
  let root = '';
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'weft-backup-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('while another process writes: the copy is 0600, passes the check and holds every committed row', async () => {
    const dir = dataDir(root, 'live', 0);
    const writer = spawn(process.execPath, [WRITER, join(dir, 'weft.db'), 'w'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acked: string[] = [];
    let partial = '';
    writer.stdout.setEncoding('utf8');
    writer.stdout.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      acked.push(...lines);
    });
    const closed = once(writer, 'close');
    const backup = join(root, 'live.backup');
    try {
      const deadline = Date.now() + 20_000;
      while (acked.length < 300 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.ok(acked.length >= 300, 'the writer got going');
      const committedBefore = acked.length;
      const cli = spawn(process.execPath, [WEFT, 'backup', '--data', dir, backup], { stdio: 'pipe' });
      let out = '';
      cli.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
      cli.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
      const [status] = (await once(cli, 'close')) as [number | null];
      const committedAfter = acked.length;
      assert.equal(status, 0, out);
      assert.match(out, /^backed up .* \(\d+ members; SQLite's check: ok\)\n$/);

      assert.equal(statSync(backup).mode & 0o777, 0o600);
      const copy = openSqliteStore(backup);
      try {
        assert.equal(copy.integrityCheck(), 'ok');
        const names = copy.allMembers().map((m) => m.name);
        // A snapshot: the writer's first n names, for an n no smaller than what it had committed before.
        assert.ok(
          names.length >= committedBefore,
          `${names.length} rows, ${committedBefore} committed before`,
        );
        assert.deepEqual(names, acked.slice(0, names.length).sort());
        assert.ok(names.length <= committedAfter + 1);
      } finally {
        copy.close();
      }
    } finally {
      writer.kill('SIGKILL');
      await closed;
    }
  });

  it('refuses to overwrite without --force; the copy restores as docs/people-vpn.md says', () => {
    const dir = dataDir(root, 'restore', 20);
    const backup = join(root, 'restore.backup');
    writeFileSync(backup, 'keep me');
    let r = weft(['backup', '--data', dir, backup]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /exists; use --force to replace it/);
    assert.equal(readFileSync(backup, 'utf8'), 'keep me');
    r = weft(['backup', '--data', dir, backup, '--force']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\(20 members; /);
    assert.equal(weft(['backup', '--data', dir, join(dir, 'weft.db'), '--force']).status, 1);

    // The store is lost; the documented restore brings it back.
    writeFileSync(join(dir, 'weft.db'), garbage(16 * 1024, 3));
    assert.equal(weft(['member', 'list', '--data', dir]).status, 3);
    copyFileSync(backup, join(dir, 'weft.db'));
    rmSync(join(dir, 'weft.db-wal'), { force: true });
    rmSync(join(dir, 'weft.db-shm'), { force: true });
    r = weft(['member', 'list', '--data', dir, '--json']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { total: number }).total, 20);
  });
});
