import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { boundedYoungGenerationArgv, SEMI_SPACE_MB } from '../../src/server/young-generation.js';

const MODULE = new URL('../../src/server/young-generation.js', import.meta.url).href;

describe('young generation bound for server run', () => {
  it("adds the flag before the script and keeps node's own arguments and the command's", () => {
    assert.deepEqual(
      boundedYoungGenerationArgv(
        '/usr/bin/node',
        ['--enable-source-maps'],
        ['/usr/bin/node', '/opt/weft/main.js', 'server', 'run', '--data', '/var/lib/weft'],
        undefined,
      ),
      [
        '/usr/bin/node',
        '--enable-source-maps',
        `--max-semi-space-size=${SEMI_SPACE_MB}`,
        '/opt/weft/main.js',
        'server',
        'run',
        '--data',
        '/var/lib/weft',
      ],
    );
  });

  it("leaves an operator's own bound alone, on the command line or in NODE_OPTIONS", () => {
    const argv = ['/usr/bin/node', 'main.js', 'server', 'run'];
    assert.equal(boundedYoungGenerationArgv('/usr/bin/node', ['--max-semi-space-size=16'], argv, ''), null);
    assert.equal(boundedYoungGenerationArgv('/usr/bin/node', ['--max-semi-space-size', '2'], argv, ''), null);
    assert.equal(
      boundedYoungGenerationArgv('/usr/bin/node', [], argv, '--trace-warnings --max-semi-space-size=8'),
      null,
    );
    // A flag that only starts alike is not the bound.
    assert.notEqual(boundedYoungGenerationArgv('/usr/bin/node', ['--max-semi-space-sizes'], argv, ''), null);
  });

  it('runs the process again with the bound: same PID, standard output kept, new space bounded', () => {
    // Before the bound, the first image prints its PID; after it, the second prints its PID, its node
    // arguments and the new space's size once 60 MB of objects have survived scavenges (V8's default: 32 MB).
    const script = `
      import v8 from 'node:v8';
      import { ensureBoundedYoungGeneration } from ${JSON.stringify(MODULE)};
      if (!process.execArgv.some((a) => a.startsWith('--max-semi-space-size'))) console.log('first ' + process.pid);
      ensureBoundedYoungGeneration();
      const keep = [];
      for (let i = 0; i < 500000; i++) keep.push({ i, list: [i, i + 1] });
      const space = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
      console.log('second ' + process.pid + ' ' + JSON.stringify(process.execArgv) + ' ' + space.space_size + ' ' + keep.length);
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    const lines = out.trim().split('\n');
    assert.equal(lines.length, 2, out);
    const first = /^first (\d+)$/.exec(lines[0]!);
    const second = /^second (\d+) (\[.*\]) (\d+) 500000$/.exec(lines[1]!);
    assert.ok(first && second, out);
    assert.equal(second[1], first[1], 'the same process');
    assert.ok((JSON.parse(second[2]!) as string[]).includes(`--max-semi-space-size=${SEMI_SPACE_MB}`));
    assert.ok(Number(second[3]) <= 2 * SEMI_SPACE_MB * 2 ** 20, `new space ${second[3]} bytes`);
  });
});
