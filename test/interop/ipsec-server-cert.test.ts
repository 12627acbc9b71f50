/**
 * `weft server run` serving a certificate site from the store against strongSwan 5.9:
 *
 *   gw [weft server run] 192.168.92.1 ══ 192.168.92.2 sw [charon] 10.12.0.1 (on lo)
 *
 * The certificates come from `openssl` (test/support/ike-pki.ts): one root; strongSwan's certificate from it,
 * ours through an intermediate that we send. The site is added with the CLI (`--cert` holding ours and the
 * intermediate, `--key`, `--ca` the root); strongSwan is configured with exactly what
 * `weft site show NAME --remote-config swanctl` prints, plus its certificate, key and the root. Weft
 * initiates and the site comes up (`site show --json`, IKE and CHILD SA on strongSwan, authenticated by
 * signature both ways); then the site waits (`site set --start wait`), strongSwan initiates from the newly
 * printed configuration, and the site comes up again.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';

import { TestPki, type TestCert } from '../support/ike-pki.js';
import { weftCli, WEFT_MAIN } from './gateway-lab.js';
import { interopSkip, Lab, waitFor, type ExecResult, type ManagedProcess, type Netns } from './harness.js';
import { Charon, startCharon, STRONGSWAN_TOOLS } from './strongswan.js';

const TOOLS = [...STRONGSWAN_TOOLS, 'openssl'];
const SUBNET = '10.67.0.0/24';
const LAN = '10.12.0.0/24';
const OUTER = { gw: '192.168.92.1', sw: '192.168.92.2' } as const;
const SITE = 'branch';

interface SiteJson {
  auth?: string;
  status?: {
    state: string;
    ike?: { spiI: string; initiator: boolean } | null;
    lastError?: { message: string } | null;
  } | null;
}

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`prerequisite missing: ${what} (an earlier step failed)`);
  return value;
}

describe(
  'IPsec: `weft server run` serves a certificate site from the CLI against strongSwan',
  { skip: interopSkip(TOOLS) },
  () => {
    let lab: Lab;
    let gw: Netns | undefined;
    let sw: Netns | undefined;
    let pki: TestPki | undefined;
    const certs: Record<string, TestCert> = {};
    let dataDir = '';
    let server: ManagedProcess | undefined;
    let charon: Charon | undefined;

    before(async () => {
      assert.ok(fs.existsSync(WEFT_MAIN), `${WEFT_MAIN} is missing: build first (npm run build)`);
      pki = TestPki.create('weft-site-cert-');
      certs.root = pki.root('site-root');
      certs.inter = pki.intermediate('site-inter', certs.root);
      certs.weft = pki.leaf('weft-gw', certs.inter, { sans: ['DNS:weft.example'] });
      certs.sw = pki.leaf('sw-gw', certs.root, { sans: ['DNS:sw.example'] });
      lab = await Lab.create('ipcrt', { tools: TOOLS });
      dataDir = lab.file('data');
      lab.registerWgInterface(lab.ifname('wg'));
      gw = await lab.netns('gw');
      sw = await lab.netns('sw');
      await lab.veth(gw, sw, { aName: 'gs', bName: 'sg', aAddr: `${OUTER.gw}/24`, bAddr: `${OUTER.sw}/24` });
      // charon wants an address inside its local subnet ("error installing route" otherwise).
      await sw.exec('ip', ['addr', 'add', '10.12.0.1/24', 'dev', 'lo']);
    });

    after(async () => {
      if (!lab) return;
      try {
        if (server?.running) await server.stop(8_000).catch(() => undefined);
        if (charon) {
          await charon.stop();
          await fsp.rm(charon.dir, { recursive: true, force: true });
        }
      } finally {
        await lab.cleanup();
        pki?.cleanup();
      }
    });

    const weft = (command: readonly string[], args: readonly string[] = []): Promise<ExecResult> =>
      weftCli(need(gw, 'the gateway namespace'), [...command, '--data', dataDir, ...args], {
        timeoutMs: 20_000,
      });

    const showSite = async (): Promise<SiteJson> =>
      JSON.parse((await weft(['site', 'show'], [SITE, '--json'])).stdout) as SiteJson;

    /** Polls `site show --json` until the state is `state` (bounded); returns the ms it took. */
    const siteState = async (
      state: string,
      timeoutMs: number,
      also: (s: SiteJson) => boolean = () => true,
    ): Promise<number> => {
      const started = Date.now();
      let last: SiteJson | undefined;
      try {
        await waitFor(
          `site ${SITE} ${state}`,
          async () => {
            last = await showSite();
            return last.status?.state === state && also(last);
          },
          { timeoutMs, intervalMs: 250 },
        );
      } catch (error) {
        throw new Error(
          `${(error as Error).message}\nlast: ${JSON.stringify(last)}\n${server?.describe() ?? ''}\n` +
            `--- charon log (tail) ---\n${(await charon?.logTail()) ?? ''}`,
          { cause: error },
        );
      }
      return Date.now() - started;
    };

    /** (Re)starts charon with what `site show --remote-config swanctl` prints now. */
    const charonFromRemoteConfig = async (): Promise<string> => {
      if (charon) {
        await charon.stop();
        await fsp.rm(charon.dir, { recursive: true, force: true });
        charon = undefined;
      }
      const swanctl = (await weft(['site', 'show'], [SITE, '--remote-config', 'swanctl'])).stdout;
      charon = await startCharon(lab, need(sw, 'sw'), {
        swanctl,
        files: [
          { path: `x509/weft-${SITE}.crt`, data: certs.sw!.cert },
          { path: `private/weft-${SITE}.key`, data: certs.sw!.key, mode: 0o600 },
          { path: 'x509ca/site-root.crt', data: certs.root!.cert },
        ],
      });
      const loaded = await charon.swanctl(['--load-all']);
      assert.match(loaded, new RegExp(`loaded connection 'weft-${SITE}'`), loaded);
      return swanctl;
    };

    it('1. the certificate site from the CLI; strongSwan from its --remote-config; the server starts', async (t) => {
      const g = need(gw, 'the gateway namespace');
      await weft(
        ['server', 'init'],
        ['--endpoint', `${OUTER.gw}:51820`, '--subnet', SUBNET, '--interface', lab.ifname('wg')],
      );
      const files = lab.file('pki');
      await fsp.mkdir(files, { recursive: true });
      const file = async (name: string, text: string) => {
        const p = `${files}/${name}`;
        await fsp.writeFile(p, text, { mode: 0o600 });
        return p;
      };
      const added = await weft(
        ['site', 'add'],
        [
          SITE,
          '--remote',
          OUTER.sw,
          '--cert',
          await file('weft.pem', certs.weft!.cert + certs.inter!.cert),
          '--key',
          await file('weft.key', certs.weft!.key),
          '--ca',
          await file('root.pem', certs.root!.cert),
          '--local-id',
          'fqdn:weft.example',
          '--remote-id',
          'fqdn:sw.example',
          '--local-subnet',
          SUBNET,
          '--remote-subnet',
          LAN,
          '--ike-proposal',
          'aes256gcm16-prfsha256-ecp256',
          '--esp-proposal',
          'aes256gcm16',
          '--start',
          'initiate',
        ],
      );
      assert.doesNotMatch(
        added.stdout,
        /pre-shared key \(give it/,
        'no key generated for a certificate site',
      );
      assert.equal((await showSite()).auth, 'cert');
      const shown = (await weft(['site', 'show'], [SITE])).stdout;
      assert.match(
        shown,
        /authentication:\s+certificate CN=weft-gw.* \+ CN=site-inter.*; trusts CN=site-root/,
      );
      assert.doesNotMatch(shown, /PRIVATE KEY/);

      const swanctl = await charonFromRemoteConfig();
      assert.match(swanctl, /auth = pubkey/);
      assert.doesNotMatch(swanctl, /secrets/);
      t.diagnostic(
        `strongSwan configured from --remote-config swanctl (${swanctl.split('\n').length} lines)`,
      );

      const started = Date.now();
      server = g.spawn(process.execPath, [WEFT_MAIN, 'server', 'run', '--data', dataDir]);
      await server.waitForOutput(/ready/, 20_000);
      t.diagnostic(`server ready after ${Date.now() - started} ms`);
    });

    it('2. Weft initiates: the site comes up, each side authenticated by the other with its certificate', async (t) => {
      const ms = await siteState('up', 30_000);
      t.diagnostic(`site up ${ms} ms after the server said ready (status reported every 5 s)`);
      const c = need(charon, 'charon');
      const sas = await c.swanctl(['--list-sas']);
      assert.match(sas, new RegExp(`weft-${SITE}: #\\d+, ESTABLISHED`), sas);
      assert.match(sas, /INSTALLED/, sas);
      const log = await c.logText();
      assert.match(log, /received end entity cert "CN=weft-gw"/);
      assert.match(log, /received issuer cert "CN=site-inter, O=Weft Test"/);
      assert.match(log, /authentication of 'weft\.example' with ECDSA_WITH_SHA256_DER successful/);
    });

    it('3. the site waits; strongSwan, from the newly printed configuration, initiates: up again', async (t) => {
      const before = (await showSite()).status?.ike?.spiI;
      assert.ok(before);
      await weft(['site', 'set'], [SITE, '--start', 'wait']);
      // The server restarts the site when it applies the change (deleting its SAs): charon initiates only after
      // that, or the restart would delete the SA charon just made, and charon does not initiate again.
      await need(server, 'the server').waitForOutput(/IPsec site branch: .*start wait/, 10_000);
      const swanctl = await charonFromRemoteConfig();
      assert.match(swanctl, /start_action = start/);
      const ms = await siteState(
        'up',
        30_000,
        (s) => s.status?.ike?.spiI !== before && s.status?.ike?.initiator === false,
      );
      t.diagnostic(`site up ${ms} ms after charon (initiating) loaded its configuration`);
      const log = await need(charon, 'charon').logText();
      assert.match(log, /initiating IKE_SA weft-branch/);
      assert.match(log, /authentication of 'weft\.example' with ECDSA_WITH_SHA256_DER successful/);
    });
  },
);
