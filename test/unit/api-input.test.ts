/**
 * The REST API's answers to bad input (through inject(), no listener): state files over the cap, YAML alias
 * bombs and syntax errors with their line and column, unexpected failures logged under a request id,
 * zod's findings in the control plane's words, ids and dates in the path and query, the unencoded route
 * prefix, and errors that name no CLI command.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { buildApi } from '../../src/api/server.js';
import { ControlPlane } from '../../src/control/control-plane.js';
import { parseStateYaml, STATE_FILE_LIMIT } from '../../src/control/desired-state.js';
import { WeftError } from '../../src/control/errors.js';
import type { Store } from '../../src/control/store.js';
import { MemoryStore } from '../support/memory-store.js';

interface Fixture {
  readonly app: FastifyInstance;
  readonly cp: ControlPlane;
  readonly store: Store;
  readonly token: string;
  readonly logged: string[];
}

async function fixture(store: Store = new MemoryStore()): Promise<Fixture> {
  const { apiToken } = ControlPlane.init(store, {
    endpoint: 'vpn.example.com:51820',
    subnet: '10.66.0.0/24',
  });
  const cp = new ControlPlane(store);
  const logged: string[] = [];
  const app = buildApi({ controlPlane: cp, webRoot: null, log: (line) => logged.push(line) });
  await app.ready();
  return { app, cp, store, token: apiToken, logged };
}

function call(
  f: Fixture,
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
  url: string,
  body?: unknown,
  contentType?: string,
): Promise<LightMyRequestResponse> {
  return f.app.inject({
    method,
    url,
    headers: {
      authorization: `Bearer ${f.token}`,
      ...(contentType ? { 'content-type': contentType } : {}),
    },
    ...(body === undefined ? {} : { payload: body as string }),
  });
}

function error(
  res: LightMyRequestResponse,
  status: number,
  code: string,
): { message: string; field?: string } {
  assert.equal(res.statusCode, status, res.body);
  const body = res.json<{ error: { code: string; message: string; field?: string } }>();
  assert.equal(body.error.code, code, res.body);
  return body.error;
}

const BOMB = `a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
`;

describe('state files: size cap, aliases, and parse errors as Weft errors', () => {
  it('refuses a YAML alias bomb with WEFT_ERR_VALIDATION at its line and column', () => {
    const e = assert.throws(
      () => parseStateYaml(BOMB),
      (err: unknown) =>
        err instanceof WeftError &&
        err.code === 'WEFT_ERR_VALIDATION' &&
        /^YAML, line 2, column 8: aliases expand/.test(err.message),
    );
    void e;
  });

  it('names the line and column of a syntax error, without the parser’s own text layout', () => {
    for (const [text, where] of [
      ['members:\n  - name: a\n   bad: [1, 2\n', /^YAML, line \d+, column \d+: /],
      ['a: 1\na: 2\n', /^YAML, line 2, column 1: /],
      ['members: *nope\n', /^YAML, line 1, column 10: alias \*nope has no anchor/],
      ['['.repeat(5000) + ']'.repeat(5000), /^YAML, line 1, column \d+: /],
    ] as const) {
      assert.throws(
        () => parseStateYaml(text),
        (err: unknown) =>
          err instanceof WeftError &&
          err.code === 'WEFT_ERR_VALIDATION' &&
          where.test(err.message) &&
          !err.message.includes('\n'),
      );
    }
  });

  it('refuses a state file over the cap before parsing it', () => {
    assert.equal(STATE_FILE_LIMIT, 4 * 1024 * 1024);
    const big = `# ${'x'.repeat(STATE_FILE_LIMIT)}\n`;
    const start = Date.now();
    assert.throws(
      () => parseStateYaml(big),
      (err: unknown) => err instanceof WeftError && err.code === 'WEFT_ERR_PAYLOAD_TOO_LARGE',
    );
    assert.ok(Date.now() - start < 1000);
  });

  describe('POST /apply', () => {
    let f: Fixture;
    before(async () => {
      f = await fixture();
    });
    after(async () => {
      await f.app.close();
    });

    it('answers an alias bomb with 400, not 500', async () => {
      const e = error(
        await call(f, 'POST', '/api/v1/apply', BOMB, 'application/yaml'),
        400,
        'WEFT_ERR_VALIDATION',
      );
      assert.match(e.message, /line 2, column 8/);
      assert.deepEqual(f.logged, []);
    });

    it('takes a body up to the state file cap (above the other endpoints’ 1 MiB), refuses one over it', async () => {
      const padded = `# ${'x'.repeat(2 * 1024 * 1024)}\ngroups: [big]\n`;
      const ok = await call(f, 'POST', '/api/v1/apply?dryRun=true', padded, 'application/yaml');
      assert.equal(ok.statusCode, 200, ok.body);
      const over = `# ${'x'.repeat(STATE_FILE_LIMIT)}\n`;
      const e = error(
        await call(f, 'POST', '/api/v1/apply', over, 'application/yaml'),
        413,
        'WEFT_ERR_PAYLOAD_TOO_LARGE',
      );
      assert.match(e.message, /4 MiB/);
      const other = { name: 'g', description: 'x'.repeat(2 * 1024 * 1024) };
      const e2 = error(
        await call(f, 'POST', '/api/v1/groups', JSON.stringify(other), 'application/json'),
        413,
        'WEFT_ERR_PAYLOAD_TOO_LARGE',
      );
      assert.match(e2.message, /1 MiB/);
    });
  });
});

describe('unexpected failures', () => {
  it('are logged with the request id and answered with a generic 500 naming that id', async () => {
    class BrokenStore extends MemoryStore {
      override listRoutes(): never {
        throw new Error('disk on fire at /var/lib/weft/weft.db');
      }
    }
    const f = await fixture(new BrokenStore());
    const res = await call(f, 'GET', '/api/v1/routes');
    const e = error(res, 500, 'WEFT_ERR_INTERNAL');
    assert.doesNotMatch(res.body, /disk|fire|weft\.db/);
    const id = /request (\S+?)[;)]/.exec(e.message)?.[1];
    assert.ok(id, e.message);
    assert.equal(f.logged.length, 1);
    assert.match(f.logged[0]!, new RegExp(`request ${id} GET /api/v1/routes failed: Error: disk on fire`));
    await f.app.close();
  });
});

describe('error wording', () => {
  let f: Fixture;
  before(async () => {
    f = await fixture();
  });
  after(async () => {
    await f.app.close();
  });

  it('says which field is missing or of the wrong type, never zod’s own text', async () => {
    const cases: [string, string, unknown, string, RegExp][] = [
      ['POST', '/api/v1/members', {}, 'name', /^name: is required$/],
      ['POST', '/api/v1/members', { name: 5 }, 'name', /^name: must be a string, not a whole number$/],
      [
        'POST',
        '/api/v1/members',
        { name: 'a', groups: 'eng' },
        'groups',
        /^groups: must be a list, not a string$/,
      ],
      ['POST', '/api/v1/members', { name: 'a', groups: [1] }, 'groups[0]', /^groups\[0\]: must be a string/],
      [
        'POST',
        '/api/v1/policies',
        { action: 'maybe', group: '*', destination: 'any' },
        'action',
        /^action: must be one of allow, deny$/,
      ],
      ['POST', '/api/v1/policies', { action: 'allow', destination: 'any' }, 'group', /^group: is required$/],
      [
        'POST',
        '/api/v1/policies',
        { action: 'allow', group: '*', destination: 'any', proto: 'tcp', ports: { to: 4 } },
        'ports.from',
        /^ports\.from: is required$/,
      ],
      ['PATCH', '/api/v1/settings', { mtu: 1400.5 }, 'mtu', /^mtu: must be a whole number, not a number$/],
      [
        'POST',
        '/api/v1/routes',
        { cidr: '10.20.0.0/24', extra: 1 },
        'extra',
        /^extra: is not a field of this request$/,
      ],
    ];
    for (const [method, url, body, field, message] of cases) {
      const e = error(
        await call(f, method as 'POST', url, JSON.stringify(body), 'application/json'),
        400,
        'WEFT_ERR_VALIDATION',
      );
      assert.equal(e.field, field, `${url} ${JSON.stringify(body)}`);
      assert.match(e.message, message);
      assert.doesNotMatch(e.message, /Invalid input|expected|received/);
    }
    const e = error(
      await call(f, 'POST', '/api/v1/tokens', 'null', 'application/json'),
      400,
      'WEFT_ERR_VALIDATION',
    );
    assert.equal(e.message, 'request body: must be an object, not null');
  });

  it('words state-file shape errors the same way', () => {
    for (const [text, message] of [
      ['members:\n  - ip: 10.66.0.5\n', 'members[0].name: is required'],
      ['policies:\n  - allow: eng\n', 'policies[0].to: is required'],
      ['groups: eng\n', 'groups: must be a list, not a string'],
      ['members:\n  - name: a\n    colour: red\n', 'members[0].colour: is not a known field'],
    ] as const) {
      assert.throws(
        () => parseStateYaml(text),
        (err: unknown) => err instanceof WeftError && err.message === message,
        text,
      );
    }
  });

  it('an unknown group is a 404 that names the field and suggests no CLI command', async () => {
    for (const [method, url, body] of [
      ['POST', '/api/v1/members', { name: 'a', groups: ['nope'] }],
      ['POST', '/api/v1/policies', { action: 'allow', group: 'nope', destination: 'any' }],
    ] as const) {
      const e = error(
        await call(f, method, url, JSON.stringify(body), 'application/json'),
        404,
        'WEFT_ERR_GROUP_NOT_FOUND',
      );
      assert.doesNotMatch(e.message, /weft |`/);
      assert.match(e.message, /group nope does not exist/);
    }
  });

  it('ids in the path and query are canonical decimal: DELETE /tokens/0x1 revokes nothing', async () => {
    for (const url of [
      '/api/v1/tokens/0x1',
      '/api/v1/tokens/1.0',
      '/api/v1/tokens/01',
      '/api/v1/tokens/1e0',
      '/api/v1/policies/0x1',
    ]) {
      const e = error(await call(f, 'DELETE', url), 400, 'WEFT_ERR_VALIDATION');
      assert.equal(e.field, 'id', url);
    }
    for (const url of ['/api/v1/audit?before=0x10', '/api/v1/audit?limit=1e1', '/api/v1/members?limit=0x10'])
      error(await call(f, 'GET', url), 400, 'WEFT_ERR_VALIDATION');
    assert.deepEqual(
      f.cp.listTokens().map((t) => t.id),
      [1],
    );
  });

  it('dates in the query are checked against the calendar', async () => {
    const e = error(
      await call(f, 'GET', '/api/v1/traffic?since=2027-02-30T00:00:00Z'),
      400,
      'WEFT_ERR_VALIDATION',
    );
    assert.equal(e.field, 'since');
    assert.equal((await call(f, 'GET', '/api/v1/traffic?since=2027-02-28T00:00:00Z')).statusCode, 200);
  });

  it('DELETE /routes/10.20.0.0/24 (the slash not encoded) removes the route, as the encoded form does', async () => {
    for (const cidr of ['10.20.0.0/24', 'fd20::/64']) {
      assert.equal(
        (await call(f, 'POST', '/api/v1/routes', JSON.stringify({ cidr }), 'application/json')).statusCode,
        201,
      );
      const res = await call(f, 'DELETE', `/api/v1/routes/${cidr}`);
      assert.equal(res.statusCode, 204, res.body);
    }
    const e = error(await call(f, 'DELETE', '/api/v1/routes/10.20.0.0/24'), 404, 'WEFT_ERR_ROUTE_NOT_FOUND');
    assert.equal(e.field, 'cidr');
    error(await call(f, 'DELETE', '/api/v1/routes/10.20.0.0/x'), 400, 'WEFT_ERR_VALIDATION');
  });
});

describe('list endpoints page as GET /members does', () => {
  it('GET /groups, /routes, /policies and /tokens answer { items, next, total } pages', async () => {
    const f = await fixture();
    for (let i = 0; i < 25; i++) {
      const name = `g${String(i).padStart(2, '0')}`;
      f.cp.addGroup('t', { name, description: i % 2 ? 'odd' : 'even' });
      f.cp.addRoute('t', { cidr: `10.${100 + i}.0.0/16` });
      f.cp.addPolicy('t', { action: 'allow', group: name, destination: 'any' });
      f.cp.createToken('t', `ci${i}`);
    }
    f.cp.addMember('t', { name: 'alice', groups: ['g03'] });
    for (const [path, total, key] of [
      ['/api/v1/groups', 25, 'name'],
      ['/api/v1/routes', 25, 'cidr'],
      ['/api/v1/policies', 25, 'id'],
      ['/api/v1/tokens', 26, 'id'],
    ] as const) {
      const seen: unknown[] = [];
      let after: string | null = '';
      for (let pages = 0; after !== null; pages++) {
        assert.ok(pages < 10, path);
        const res = await call(
          f,
          'GET',
          `${path}?limit=10${after ? `&after=${encodeURIComponent(after)}` : ''}`,
        );
        assert.equal(res.statusCode, 200, res.body);
        const page = res.json<{ items: Record<string, unknown>[]; next: string | null; total: number }>();
        assert.equal(page.total, total, path);
        assert.ok(page.items.length <= 10);
        seen.push(...page.items.map((x) => x[key]));
        after = page.next;
      }
      assert.equal(seen.length, total, path);
      assert.equal(new Set(seen).size, total, path);
    }
    const odd = (await call(f, 'GET', '/api/v1/groups?search=ODD&limit=5')).json<{
      items: { name: string; members: number }[];
      total: number;
    }>();
    assert.equal(odd.total, 12);
    assert.deepEqual(
      odd.items.map((g) => [g.name, g.members]),
      [
        ['g01', 0],
        ['g03', 1],
        ['g05', 0],
        ['g07', 0],
        ['g09', 0],
      ],
    );
    error(await call(f, 'GET', '/api/v1/groups?limit=1001'), 400, 'WEFT_ERR_VALIDATION');
    error(await call(f, 'GET', '/api/v1/policies?after=0x1'), 400, 'WEFT_ERR_VALIDATION');
    await f.app.close();
  });
});
