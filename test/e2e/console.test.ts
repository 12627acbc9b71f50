/**
 * The web console end to end, as an operator uses it: Debian's Chromium (playwright-core, headless, in the root
 * namespace) drives the console that `weft server run` serves on a veth into the gateway namespace, and a REAL
 * WireGuard client (wg-quick + wireguard-go) in a member namespace runs the config the console hands out. Each
 * step of the scenario is one `it`, in order; a step whose prerequisite failed fails with a message naming it,
 * and a failing step leaves a screenshot in test-results/failures/ and the page's state in the diagnostics.
 *
 *   1. `server init` prints the admin password; `server run --api-listen` serves the console; logging in as
 *      admin lands on the dashboard.
 *   2. Adding "dana" through the form: she appears in the list with the address the form suggested
 *      (= GET /members/next-ip).
 *   3. Her page: the QR code image loads (naturalWidth > 0) and her config is shown.
 *   4. The download link saves a wg-quick config (parsed by src/config/wg-quick.ts) with her address, the
 *      gateway's public key and endpoint.
 *   5. That file brings up a real wg-quick client in the member namespace, which pings the gateway's tunnel
 *      address.
 *   5b. The member list's Connected column says WireGuard, with "since" the API's time as a tooltip; her page
 *      says "WireGuard since …".
 *   6. A one-time link made in the console gives the config once; the second fetch gets 404.
 *   7. Disabling her in the console: her state says disabled, and her client's pings stop within 2 s.
 *   8. The audit page shows the disable (admin:admin, member.disable, dana).
 *   8b. A site added through the form with Advanced fields (proposals, lifetimes incl. hard and byte ones,
 *      DPD, start action, fragment size, multicast ranges) reads back so through the API; a number that is
 *      not one, and one the API refuses (400 with the field), are shown next to that field; editing shows the
 *      stored values and an emptied field is the default again.
 *   8c. Static multicast memberships and the querier's timers edited on the Multicast page read back through
 *      GET /settings; a group the API refuses is shown on its row; removing a row and emptying the timers
 *      are stored.
 *   8d. The Routes page offers "every gateway" as the only "Served by" choice (SQLite: nothing registered);
 *      a route saved with it is listed so and reads back without a gateway; a gateway the API does not know
 *      (one removed since the page loaded) is refused with a 400 naming `gateway`, shown beside the field.
 *   9. Logging out: the members page then sends the browser to the login page.
 *  10. Refusals: a wrong password shows an error and logs nothing in; a change with the session cookie but no
 *      (or a wrong) X-CSRF-Token is refused with 403 WEFT_ERR_CSRF, and accepted (201) with the right one.
 *  11. Screenshots of every page at 1280×800 and 390×844 (test-results/screenshots/<page>-<desktop|phone>.png);
 *      on the phone no page scrolls sideways, and no page shows an error banner.
 *  12. No uncaught script error and no Content-Security-Policy violation in any page.
 *
 * Topology: console-lab.ts (gateway 192.168.71.1 ↔ member 192.168.71.10; root ↔ gateway on a random /30 in
 * 10.251.0.0/16, where the API listens).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { formatIssue, parseWgQuick, type WgQuickConfig } from '../../src/config/wg-quick.js';
import { formatPrefix } from '../../src/net/ip.js';
import { ping, weftCli, WEFT_MAIN, within } from '../interop/gateway-lab.js';
import { interopSkip, Lab, waitFor, type ManagedProcess } from '../interop/harness.js';
import {
  anyContains,
  pingFinished,
  pingTimeline,
  replaceConfigLine,
  wgQuickUp,
  type WgQuickClient,
} from '../interop/people-lab.js';
import {
  closeBrowser,
  cleanupConsoleLab,
  consoleTopology,
  describePage,
  E2E_TOOLS,
  errorCode,
  horizontalOverflow,
  http,
  imageFacts,
  launchChromium,
  PageWatch,
  REPO_ROOT,
  screenshotFile,
  shownText,
  UNDERLAY,
  urlCandidates,
  VIEWPORTS,
  type ConsoleTopology,
  type HttpReply,
  type ViewportName,
} from './console-lab.js';

const SUBNET = '10.67.0.0/24';
const GATEWAY_IP = '10.67.0.1';
const WG_PORT = 51820;
const ENDPOINT = `${UNDERLAY.gateway}:${WG_PORT}`;
const API_PORT = 8780;
const MEMBER = 'dana';
/** The member added from node in step 10 (with a session cookie and the CSRF token). */
const CSRF_MEMBER = 'erin';
/** The IPsec site added through the form in step 8b. */
const SITE = 'paris';
/** Shared routes added on the Routes page (clear of the members', the site's and the uplinks' prefixes). */
const ROUTE = '10.91.0.0/24';
const ROUTE_REFUSED = '10.92.0.0/24';
/** Bound on waiting for something the console shows after an action. */
const UI_MS = 8_000;
/** The client's pings must stop this soon after the disable click. */
const CUTOFF_MS = 2_000;
const FAILURE_DIR = path.join(REPO_ROOT, 'test-results', 'failures');

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`prerequisite missing: ${what} (an earlier step failed)`);
  return value;
}

/** The host address of every `Address` of a parsed config. */
function addressesOf(config: WgQuickConfig): string[] {
  return config.interface.addresses.map((a) => a.text.split('/')[0]!);
}

/** Parses wg-quick text with Weft's own parser; fails the test with every issue it reports. */
function parseConfig(text: string, file: string): WgQuickConfig {
  const outcome = parseWgQuick(text, file);
  if (!outcome.ok) {
    assert.fail(
      `${file} is not a valid wg-quick config:\n${outcome.errors.map(formatIssue).join('\n')}\n${text}`,
    );
  }
  return outcome.config;
}

describe(
  'web console: Chromium drives `weft server run`, a real WireGuard client runs its config',
  {
    skip: interopSkip(E2E_TOOLS),
  },
  () => {
    let lab: Lab;
    let topo: ConsoleTopology | undefined;
    let dataDir = '';
    let serverIf = '';
    let base = '';
    let server: ManagedProcess | undefined;
    let browser: Browser | undefined;
    let context: BrowserContext | undefined;
    let page: Page | undefined;
    const watches: PageWatch[] = [];
    let admin: { password: string; token: string; gatewayPublicKey: string } | undefined;
    let memberIp: string | undefined;
    let downloaded: { text: string; config: WgQuickConfig } | undefined;
    let client: WgQuickClient | undefined;
    const suiteStart = Date.now();

    before(async () => {
      assert.ok(fs.existsSync(WEFT_MAIN), `${WEFT_MAIN} is missing: build first (npm run build)`);
      lab = await Lab.create('console', { tools: E2E_TOOLS });
      await fsp.rm(FAILURE_DIR, { recursive: true, force: true }); // the last run's
      dataDir = lab.file('data');
      serverIf = lab.ifname('wg');
      lab.registerWgInterface(serverIf); // in case the gateway opens a UAPI socket
      topo = await consoleTopology(lab);
      base = `http://${topo.api.nsAddr}:${API_PORT}`;
      browser = await launchChromium(lab);
      context = await browser.newContext({ acceptDownloads: true, viewport: VIEWPORTS.desktop });
      page = await context.newPage();
      watches.push(new PageWatch(page));
    });

    after(async () => {
      if (!lab) return;
      try {
        await closeBrowser(browser);
        await client?.down().catch(() => undefined);
        if (server?.running) await server.stop(8_000).catch(() => undefined);
      } finally {
        await cleanupConsoleLab(lab, topo);
      }
    });

    const net = (): ConsoleTopology => need(topo, 'the topology');
    const thePage = (): Page => need(page, 'the browser page');
    const creds = (): NonNullable<typeof admin> => need(admin, "the admin's credentials from `server init`");
    const watch = (): PageWatch => watches[0]!;

    /** A REST call with the API token `server init` printed (the test's own view of the store). */
    const api = (method: string, apiPath: string, body?: unknown): Promise<HttpReply> =>
      http(`${base}/api/v1${apiPath}`, {
        method,
        headers: { authorization: `Bearer ${creds().token}` },
        ...(body === undefined ? {} : { body }),
      });

    /** The running gateway; throws with its output if it has exited. */
    const liveServer = (): ManagedProcess => {
      const proc = need(server, 'a running server');
      if (!proc.running) throw new Error(`the gateway is no longer running: ${proc.describe()}`);
      return proc;
    };

    /** Waits (bounded) for `data-testid=ID` to be visible; the error says what the page showed instead. */
    const visible = async (p: Page, id: string, timeoutMs = UI_MS): Promise<void> => {
      try {
        await p.getByTestId(id).first().waitFor({ state: 'visible', timeout: timeoutMs });
      } catch {
        assert.fail(`[data-testid=${id}] not visible within ${timeoutMs} ms; ${await describePage(p)}`);
      }
    };

    /** Waits (bounded) until the URL's hash is `hash` exactly (e.g. "#/members"). */
    const atHash = async (p: Page, hash: string, timeoutMs = UI_MS): Promise<void> => {
      try {
        await p.waitForURL((u) => u.hash === hash, { timeout: timeoutMs });
      } catch {
        assert.fail(`expected ${hash} within ${timeoutMs} ms; ${await describePage(p)}`);
      }
    };

    /** Fills the login form and submits it. */
    const submitLogin = async (p: Page, password: string): Promise<void> => {
      await visible(p, 'login-username');
      await p.getByTestId('login-username').fill('admin');
      await p.getByTestId('login-password').fill(password);
      await p.getByTestId('login-submit').click();
    };

    /**
     * One step: on failure, saves a screenshot and reports the page's state and the gateway's last output
     * before failing.
     */
    const step = (
      name: string,
      fn: (t: TestContext) => Promise<void>,
      { needsServer = true }: { needsServer?: boolean } = {},
    ): void => {
      it(name, async (t) => {
        try {
          if (needsServer) liveServer(); // fail at once rather than wait on a console that is gone
          await fn(t);
        } catch (error) {
          const consequential = /^(prerequisite missing|the gateway is no longer running)/.test(
            (error as Error).message,
          );
          if (page && !consequential) {
            try {
              await fsp.mkdir(FAILURE_DIR, { recursive: true });
              const file = path.join(FAILURE_DIR, `step-${name.split('.')[0]}.png`);
              await page.screenshot({ path: file, fullPage: true, timeout: 5_000 });
              t.diagnostic(`screenshot: ${path.relative(REPO_ROOT, file)}`);
            } catch {
              // no screenshot
            }
            t.diagnostic(await describePage(page));
          }
          if (server && !consequential) t.diagnostic(`gateway: ${server.describe().slice(-3_000)}`);
          throw error;
        }
      });
    };

    // -------------------------------------------------------------------------------------------------------------

    step(
      '1. the admin password from `server init` logs in; the console lands on the dashboard',
      async (t) => {
        const { gw, api: link } = net();
        const apiListen = `${link.nsAddr}:${API_PORT}`;
        const init = await weftCli(
          gw,
          [
            'server',
            'init',
            '--data',
            dataDir,
            '--endpoint',
            ENDPOINT,
            '--subnet',
            SUBNET,
            '--interface',
            serverIf,
            '--api-listen',
            apiListen,
          ],
          { timeoutMs: 20_000 },
        );
        const password = /^admin password: (\S+)/m.exec(init.stdout)?.[1];
        const token = /^api token: (\S+)/m.exec(init.stdout)?.[1];
        const gatewayPublicKey = /^gateway public key: (\S+)/m.exec(init.stdout)?.[1];
        assert.ok(password && token && gatewayPublicKey, `server init printed:\n${init.stdout}`);
        admin = { password, token, gatewayPublicKey };

        const started = Date.now();
        server = gw.spawn(process.execPath, [
          WEFT_MAIN,
          'server',
          'run',
          '--data',
          dataDir,
          '--api-listen',
          apiListen,
        ]);
        await server.waitForOutput(/ready/, 20_000);
        t.diagnostic(`server ready after ${Date.now() - started} ms; console at ${base}/`);

        const index = await http(`${base}/`);
        assert.equal(index.status, 200, `GET / → ${index.status}: ${index.text.slice(0, 300)}`);
        assert.match(index.headers.get('content-type') ?? '', /text\/html/);

        const p = thePage();
        await p.goto(`${base}/`, { timeout: UI_MS });
        await visible(p, 'login-username');
        t.diagnostic(`GET / (not logged in) shows the login form at ${new URL(p.url()).hash || '(no hash)'}`);
        await submitLogin(p, password);
        await atHash(p, '#/dashboard');
        await visible(p, 'logout');
        for (const nav of ['dashboard', 'members', 'groups', 'policies', 'routes', 'settings', 'audit']) {
          await visible(p, `nav-${nav}`, 2_000);
        }
        const session = await p.context().request.get(`${base}/api/v1/session`);
        assert.equal(session.status(), 200, 'the browser has a session');
        assert.equal(((await session.json()) as { username?: string }).username, 'admin');
      },
      { needsServer: false },
    );

    step('2. a member added through the form appears in the list with the suggested address', async (t) => {
      const p = thePage();
      await visible(p, 'nav-members');
      await p.getByTestId('nav-members').click();
      await atHash(p, '#/members');
      await visible(p, 'add-member-name');

      const nextIp = await api('GET', '/members/next-ip');
      assert.equal(nextIp.status, 200, nextIp.text);
      const expected = (nextIp.json as { ip: string }).ip;
      const ipField = p.getByTestId('add-member-ip');
      const suggested = await waitFor(
        'the form to suggest an address',
        async () => (await ipField.inputValue()) || (await ipField.getAttribute('placeholder')) || '',
        { timeoutMs: UI_MS },
      ).catch(async (e: Error) => assert.fail(`${e.message}; ${await describePage(p)}`));
      t.diagnostic(`the form suggests ${suggested} (GET /members/next-ip: ${expected})`);
      assert.equal(suggested, expected, 'the suggested address is the one the API would allocate');

      await p.getByTestId('add-member-name').fill(MEMBER);
      await p.getByTestId('add-member-submit').click();
      // The console may stay on the list or open the new member's page; either way the list must show her.
      await waitFor(
        `${MEMBER} to be added`,
        async () =>
          (await p.getByTestId(`member-row-${MEMBER}`).isVisible()) ||
          new URL(p.url()).hash === `#/members/${MEMBER}` ||
          (await p.getByTestId('error-banner').isVisible()),
        { timeoutMs: UI_MS },
      ).catch(async (e: Error) => assert.fail(`${e.message}; ${await describePage(p)}`));
      if (await p.getByTestId('error-banner').isVisible()) {
        assert.fail(`adding ${MEMBER} failed: ${await p.getByTestId('error-banner').textContent()}`);
      }
      if (new URL(p.url()).hash !== '#/members') {
        t.diagnostic(`after adding, the console went to ${new URL(p.url()).hash}`);
        await p.getByTestId('nav-members').click();
        await atHash(p, '#/members');
      }
      await visible(p, `member-row-${MEMBER}`);
      const row = (await p.getByTestId(`member-row-${MEMBER}`).textContent()) ?? '';
      assert.ok(row.includes(expected), `${MEMBER}'s row shows ${expected}: ${JSON.stringify(row)}`);

      const stored = await api('GET', `/members/${MEMBER}`);
      assert.equal(stored.status, 200, stored.text);
      assert.equal((stored.json as { ip: string }).ip, expected, stored.text);
      memberIp = expected;
    });

    step('3. her page: the QR code image loads and her config is shown when asked for', async () => {
      const p = thePage();
      const ip = need(memberIp, `${MEMBER}'s address`);
      const row = p.getByTestId(`member-row-${MEMBER}`);
      const link = row.locator('a').first();
      await ((await link.count()) > 0 ? link : row).click();
      await atHash(p, `#/members/${MEMBER}`);
      await visible(p, 'member-qr-show');
      const opened = await api('GET', `/members/${MEMBER}`);
      assert.equal(
        (opened.json as { configDownload: unknown }).configDownload,
        null,
        `opening her page hands no config out: ${opened.text}`,
      );
      await p.getByTestId('member-qr-show').click();
      await visible(p, 'member-qr');
      const qr = await waitFor(
        'the QR code image to load',
        async () => {
          const facts = await imageFacts(p.getByTestId('member-qr'));
          return facts.img?.complete && facts.img.naturalWidth > 0 ? facts : undefined;
        },
        { timeoutMs: UI_MS },
      ).catch(async (e: Error) =>
        assert.fail(
          `${e.message}: ${JSON.stringify(await imageFacts(p.getByTestId('member-qr')).catch(() => null))}`,
        ),
      );
      assert.ok(qr.box > 0, `the QR code is not laid out: ${JSON.stringify(qr)}`);

      await p.getByTestId('member-config-show').click();
      await visible(p, 'member-config');
      const shown = await waitFor('the config to be shown', async () => {
        const text = await shownText(p.getByTestId('member-config'));
        return /\[Interface\]/.test(text) ? text : undefined;
      }).catch(async (e: Error) => assert.fail(`${e.message}; ${await describePage(p)}`));
      const config = parseConfig(shown, 'member-config (shown)');
      assert.ok(addressesOf(config).includes(ip), `the shown config has Address ${ip}:\n${shown}`);
    });

    step("4. the download link saves a wg-quick config with her address and the gateway's key", async (t) => {
      const p = thePage();
      const ip = need(memberIp, `${MEMBER}'s address`);
      const { gatewayPublicKey } = creds();
      await visible(p, 'member-download');
      const [download] = await Promise.all([
        p.waitForEvent('download', { timeout: UI_MS }),
        p.getByTestId('member-download').click(),
      ]);
      const file = lab.file('download.conf');
      await download.saveAs(file);
      const text = await fsp.readFile(file, 'utf8');
      t.diagnostic(`downloaded ${JSON.stringify(download.suggestedFilename())} (${text.length} bytes)`);
      assert.match(download.suggestedFilename(), /\.conf$/, 'the download is named *.conf');
      const config = parseConfig(text, download.suggestedFilename());
      assert.deepEqual(
        addressesOf(config).filter((a) => !a.includes(':')),
        [ip],
        text,
      );
      assert.equal(config.peers.length, 1, text);
      const peer = config.peers[0]!;
      assert.equal(peer.publicKey.toBase64(), gatewayPublicKey, "the peer is the gateway's public key");
      assert.deepEqual(
        peer.endpoint,
        { host: UNDERLAY.gateway, port: WG_PORT },
        'the endpoint init was given',
      );
      const allowed = peer.allowedIps.map(formatPrefix);
      assert.ok(anyContains(allowed, GATEWAY_IP), `AllowedIPs ${allowed.join(', ')} lack ${GATEWAY_IP}`);
      downloaded = { text, config };
    });

    step(
      "4b. the OpenVPN button saves her inline .ovpn profile, naming the gateway's endpoint",
      async (t) => {
        const p = thePage();
        await visible(p, 'member-download-openvpn');
        const [download] = await Promise.all([
          p.waitForEvent('download', { timeout: UI_MS }),
          p.getByTestId('member-download-openvpn').click(),
        ]);
        const file = lab.file('download.ovpn');
        await download.saveAs(file);
        const text = await fsp.readFile(file, 'utf8');
        t.diagnostic(`downloaded ${JSON.stringify(download.suggestedFilename())} (${text.length} bytes)`);
        assert.equal(download.suggestedFilename(), `${MEMBER}.ovpn`);
        assert.match(text, new RegExp(`^remote ${UNDERLAY.gateway.replaceAll('.', '\\.')} 1194 udp$`, 'm'));
        for (const tag of ['ca', 'cert', 'key', 'tls-crypt-v2'])
          assert.match(text, new RegExp(`^<${tag}>\\n-----BEGIN [^\\n]+-----\\n`, 'm'), `<${tag}> inline`);
      },
    );

    step(
      "5. the downloaded config brings up a real wg-quick client that pings the gateway's tunnel address",
      async (t) => {
        const { member } = net();
        liveServer();
        const { text, config } = need(downloaded, 'the downloaded config');
        let runnable = text;
        if (config.interface.dns.length > 0) {
          // init had no --dns; a DNS line would make wg-quick need resolvconf.
          t.diagnostic('the config has a DNS line although init had no --dns; removed for wg-quick');
          runnable = replaceConfigLine(runnable, 'DNS', null);
        }
        client = await wgQuickUp(member, lab.ifname('m'), runnable);
        await waitFor(
          `${MEMBER}'s client to reach ${GATEWAY_IP}`,
          async () => (await ping(member, GATEWAY_IP, { count: 1, waitS: 1 })).received === 1,
          { timeoutMs: 10_000, intervalMs: 100 },
        ).catch(async (e: Error) =>
          assert.fail(`${e.message}\nclient: ${JSON.stringify(await client?.dump().catch(() => null))}`),
        );
        const p = await ping(member, GATEWAY_IP, { count: 3, waitS: 2 });
        assert.equal(p.received, 3, p.output);
        // The gateway's log names her when she connects (at its next status report, every 5 s).
        await liveServer()
          .waitForOutput(new RegExp(`member ${MEMBER} connected`), 8_000)
          .catch((e: Error) => assert.fail(`${e.message}: ${liveServer().stderr.slice(-2_000)}`));
        // ...and /metrics (with the API token) counts her online, with her traffic and a handshake.
        const metrics = await api('GET', '/metrics');
        assert.equal(metrics.status, 200, metrics.text);
        t.diagnostic(
          `metrics: ${metrics.text
            .split('\n')
            .filter((l) => l.includes(MEMBER))
            .join('; ')}`,
        );
        assert.match(metrics.text, new RegExp(`^weft_member_online\\{member="${MEMBER}"\\} 1$`, 'm'));
        assert.match(
          metrics.text,
          new RegExp(`^weft_member_handshakes_total\\{member="${MEMBER}"\\} [1-9]`, 'm'),
        );
        assert.match(
          metrics.text,
          new RegExp(`^weft_member_receive_bytes_total\\{member="${MEMBER}"\\} [1-9]`, 'm'),
        );
        assert.match(metrics.text, /^weft_drops_total\{source="wireguard",reason="[a-z0-9-]+"\} \d+$/m);
        assert.match(metrics.text, /^process_resident_memory_bytes [1-9]\d*$/m);
        const dump = await client.dump();
        assert.ok(
          (dump.peers[0]?.latestHandshake ?? 0) > 0,
          `a handshake with the gateway: ${JSON.stringify(dump)}`,
        );
      },
    );

    step(
      "5b. the member list's Connected column says WireGuard, since when (as the API has it); so does her page",
      async (t) => {
        const p = thePage();
        need(client, "the member's running client");
        // The store has her status from the gateway's next report (every 5 s): reload the list until it shows.
        const cell = p.getByTestId(`member-row-${MEMBER}`).locator('td[data-label="Connected"]');
        const shown = await waitFor(
          `the Connected column of ${MEMBER}'s row to say WireGuard`,
          async () => {
            await p.getByTestId('nav-members').click();
            await atHash(p, '#/members');
            await visible(p, `member-row-${MEMBER}`);
            const text = ((await cell.textContent()) ?? '').trim();
            return text === 'WireGuard' ? text : undefined;
          },
          { timeoutMs: 15_000, intervalMs: 500 },
        ).catch(async (e: Error) =>
          assert.fail(
            `${e.message}: it says ${JSON.stringify(await cell.textContent())}; ${await describePage(p)}`,
          ),
        );
        const title = (await cell.locator('span').first().getAttribute('title')) ?? '';
        const stored = await api('GET', `/members/${MEMBER}`);
        assert.equal(stored.status, 200, stored.text);
        const status = (
          stored.json as { status: { online: boolean; protocol: string; since: string | null } }
        ).status;
        t.diagnostic(`row: ${shown}, title ${JSON.stringify(title)}; API status ${JSON.stringify(status)}`);
        assert.equal(status.online, true);
        assert.equal(status.protocol, 'wireguard');
        const since = Date.parse(status.since ?? '');
        assert.ok(
          since >= suiteStart - 1_000 && since <= Date.now(),
          `since ${status.since} is during this test`,
        );
        // The tooltip is the API's time as the console formats it (web/src/format.ts formatDateTime).
        const expected = await p.evaluate(
          (iso) =>
            new Intl.DateTimeFormat(undefined, {
              year: 'numeric',
              month: 'short',
              day: 'numeric',
              hour: '2-digit',
              minute: '2-digit',
            }).format(Date.parse(iso)),
          status.since ?? '',
        );
        assert.equal(title, `since ${expected}`);
        // Her page: "WireGuard since <the same time> (<how long ago>)".
        await p.getByTestId(`member-row-${MEMBER}`).getByRole('link', { name: MEMBER }).click();
        await visible(p, 'member-connection');
        const detail = ((await p.getByTestId('member-connection').textContent()) ?? '').trim();
        t.diagnostic(`her page: ${JSON.stringify(detail)}`);
        assert.ok(detail.startsWith(`WireGuard since ${expected} (`), detail);
      },
    );

    step('6. a one-time link made in the console gives the config once, then 404', async (t) => {
      const p = thePage();
      const ip = need(memberIp, `${MEMBER}'s address`);
      const { config: fromDownload } = need(downloaded, 'the downloaded config');
      await visible(p, 'member-link-create');
      await p.getByTestId('member-link-create').click();
      await visible(p, 'member-link-url');
      const linkText = await waitFor(
        'the one-time link to be shown',
        async () =>
          (await urlCandidates(p.getByTestId('member-link-url'))).find((c) =>
            /\/dl\/[A-Za-z0-9_-]{16,}/.test(c),
          ),
        { timeoutMs: UI_MS },
      ).catch(async (e: Error) => assert.fail(`${e.message}; ${await describePage(p)}`));
      const url = new URL(/\S*\/dl\/[A-Za-z0-9_-]+/.exec(linkText)![0], `${base}/`);
      t.diagnostic(`the console shows the link as ${JSON.stringify(linkText)}`);
      assert.equal(url.origin, base, `the link points at the console's origin: ${url.href}`);

      const first = await http(url.href);
      assert.equal(first.status, 200, `first fetch: ${first.status} ${first.text}`);
      assert.match(first.headers.get('content-type') ?? '', /^text\/plain/);
      assert.match(
        first.headers.get('content-disposition') ?? '',
        new RegExp(`attachment;\\s*filename="${MEMBER}\\.conf"`),
      );
      const config = parseConfig(first.text, 'one-time link');
      assert.ok(addressesOf(config).includes(ip), first.text);
      assert.equal(
        config.interface.privateKey.toBase64(),
        fromDownload.interface.privateKey.toBase64(),
        "the link gives the same member's config as the download",
      );

      const second = await http(url.href);
      assert.equal(second.status, 404, `second fetch: ${second.status} ${second.text.slice(0, 200)}`);
      assert.equal(errorCode(second), 'WEFT_ERR_LINK_INVALID', second.text);
    });

    step(
      '7. disabling her in the console: the state says disabled and her pings stop within 2 s',
      async (t) => {
        const p = thePage();
        const { member } = net();
        liveServer();
        need(client, `${MEMBER}'s client`);
        await visible(p, 'member-disable');
        const pinger = pingTimeline(member, GATEWAY_IP, { intervalS: 0.1, deadlineS: 5 });
        const pingStart = Date.now();
        await pinger.waitForOutput(/bytes from/, 3_000);
        await new Promise((r) => setTimeout(r, 700));
        const clickAt = Date.now();
        await p.getByTestId('member-disable').click();
        await waitFor(
          'the state to say disabled',
          async () => {
            // The console may ask first (its own <dialog>, see web/src/confirm.ts).
            if (await p.getByTestId('confirm-ok').isVisible()) {
              t.diagnostic('disable asked for confirmation');
              await p.getByTestId('confirm-ok').click();
            }
            return /disabled/i.test((await p.getByTestId('member-state').textContent()) ?? '');
          },
          { timeoutMs: UI_MS },
        ).catch(async (e: Error) => assert.fail(`${e.message}; ${await describePage(p)}`));
        const shownAt = Date.now();
        const replies = await pingFinished(pinger, 15_000);
        const transmitted = Number(/(\d+) packets transmitted/.exec(pinger.stdout)?.[1] ?? 0);
        const lastSentMs = pingStart + (transmitted - 1) * 100;
        const before = replies.filter((r) => r.atMs < clickAt);
        const late = replies.filter((r) => r.atMs > clickAt + CUTOFF_MS);
        const last = replies.at(-1);
        t.diagnostic(
          `disable: state shown ${shownAt - clickAt} ms after the click; last reply ` +
            `${last ? ((last.atMs - clickAt) / 1000).toFixed(3) : '?'} s after the click; ` +
            `${replies.length} of ${transmitted} answered; dialogs: ${JSON.stringify(watch().dialogs)}`,
        );
        assert.ok(before.length >= 3, `the pings flowed before the click: ${pinger.describe()}`);
        assert.ok(
          lastSentMs >= clickAt + CUTOFF_MS + 500,
          `the ping stopped sending too early: ${pinger.describe()}`,
        );
        assert.deepEqual(late, [], `replies more than ${CUTOFF_MS} ms after the disable click`);
        await visible(p, 'member-enable', 2_000);
        await liveServer()
          .waitForOutput(new RegExp(`member ${MEMBER} disabled; its session ended`), 5_000)
          .catch((e: Error) => assert.fail(`${e.message}: ${liveServer().stderr.slice(-2_000)}`));
        const log = liveServer().stderr;
        assert.doesNotMatch(log, new RegExp(`member ${MEMBER}.*${GATEWAY_IP.replace(/\./g, '\\.')}`), log);
        const stored = await api('GET', `/members/${MEMBER}`);
        assert.equal((stored.json as { disabled?: boolean }).disabled, true, stored.text);
        t.diagnostic(`${MEMBER} in the store: ${stored.text}`);
      },
    );

    step(
      '7b. her page: expiry as ISO text (a US date refused), traffic labelled, a stale config said so',
      async (t) => {
        const p = thePage();
        await visible(p, 'member-expires');
        const expires = p.getByTestId('member-expires');
        assert.equal(await expires.getAttribute('type'), 'text', 'no locale-dependent date picker');
        assert.equal(await expires.getAttribute('placeholder'), 'YYYY-MM-DD');

        await expires.fill('06/30/2031');
        await p.getByTestId('member-save').click();
        await visible(p, 'field-error');
        const error = (await p.getByTestId('field-error').first().textContent()) ?? '';
        assert.match(error, /YYYY-MM-DD/, error);
        const unchanged = await api('GET', `/members/${MEMBER}`);
        assert.equal((unchanged.json as { expiresAt: unknown }).expiresAt, null, unchanged.text);

        await expires.fill('2031-06-30');
        await p.getByTestId('member-save').click();
        const saved = await waitFor(
          'the expiry to be stored',
          async () => {
            const r = await api('GET', `/members/${MEMBER}`);
            const at = (r.json as { expiresAt: string | null }).expiresAt;
            return at ? at : undefined;
          },
          { timeoutMs: UI_MS },
        ).catch(async (e: Error) => assert.fail(`${e.message}; ${await describePage(p)}`));
        assert.equal(saved, '2031-06-30T23:59:59.999Z');
        await waitFor('the field to show the saved date', async () =>
          (await p.getByTestId('member-expires').inputValue()) === '2031-06-30' ? true : undefined,
        );

        const session = (await p.getByTestId('member-session-traffic').textContent()) ?? '';
        t.diagnostic(`session traffic: ${JSON.stringify(session)}`);
        assert.match(session, /since the gateway last started or enabled/, session);
        assert.doesNotMatch(session, /\b[kMG]B\b/, 'IEC units (KiB), as the CLI');

        // A policy that reaches every member changes her AllowedIPs: the page says her config is stale.
        const policy = await api('POST', '/policies', {
          action: 'allow',
          group: '*',
          destination: '10.99.0.0/24',
        });
        assert.equal(policy.status, 201, policy.text);
        try {
          await p.reload({ timeout: UI_MS });
          await visible(p, 'member-config-stale');
          const notice = (await p.getByTestId('member-config-stale').textContent()) ?? '';
          assert.match(notice, /changed since it was downloaded/i, notice);
          assert.match(
            (await p.getByTestId('member-config-state').textContent()) ?? '',
            /Changed since it was downloaded/,
          );
          const file = await screenshotFile('member-stale-config', 'desktop');
          await p.screenshot({ path: file, fullPage: true, timeout: 10_000 });
          t.diagnostic(`screenshot: ${path.relative(REPO_ROOT, file)}`);
          // Looking at her page again hands nothing out: the notice stays until the config is shown.
          await p.reload({ timeout: UI_MS });
          await visible(p, 'member-config-stale');
          await p.getByTestId('member-qr-show').click();
          await waitFor(
            'the QR code to load',
            async () => (await imageFacts(p.getByTestId('member-qr'))).img?.naturalWidth,
            { timeoutMs: UI_MS },
          );
          await p.reload({ timeout: UI_MS });
          await visible(p, 'member-config-state');
          assert.equal(await p.getByTestId('member-config-stale').count(), 0, 'the QR code handed it out');
          assert.match((await p.getByTestId('member-config-state').textContent()) ?? '', /^Current/);
        } finally {
          const id = (policy.json as { id: number }).id;
          assert.equal((await api('DELETE', `/policies/${id}`)).status, 204);
        }
        const view = await api('PATCH', `/members/${MEMBER}`, { expiresAt: null });
        assert.equal(view.status, 200, view.text);
        await p.reload({ timeout: UI_MS });
        await visible(p, 'member-enable');
      },
    );

    step('8. the audit page shows the disable: admin:admin, member.disable, dana', async (t) => {
      const p = thePage();
      await p.getByTestId('nav-audit').click();
      await atHash(p, '#/audit');
      await visible(p, 'audit-row');
      const rows = await waitFor(
        'an audit row for the disable',
        async () => {
          // innerText keeps the cells apart (tabs, newlines), so "dana" cannot match inside another word.
          const texts = await p.getByTestId('audit-row').allInnerTexts();
          const wanted = ['admin:admin', 'member.disable', MEMBER];
          return texts.some((r) => wanted.every((w) => r.split(/\s+/).includes(w))) ? texts : undefined;
        },
        { timeoutMs: UI_MS },
      ).catch(async (e: Error) =>
        assert.fail(`${e.message}: ${JSON.stringify(await p.getByTestId('audit-row').allInnerTexts())}`),
      );
      t.diagnostic(`audit rows: ${rows.length}; first: ${JSON.stringify(rows[0]?.replace(/\s+/g, ' '))}`);
    });

    /** The error the form shows next to the control `data-testid=ID` (bounded wait). */
    const errorNextTo = async (p: Page, id: string): Promise<string> => {
      const note = p.locator('.field', { has: p.getByTestId(id) }).getByTestId('field-error');
      try {
        await note.first().waitFor({ state: 'visible', timeout: UI_MS });
      } catch {
        assert.fail(`no error next to [data-testid=${id}] within ${UI_MS} ms; ${await describePage(p)}`);
      }
      return (await note.first().textContent()) ?? '';
    };

    step(
      '8b. a site added with Advanced fields reads back through the API; a bad number is shown at its field',
      async (t) => {
        const p = thePage();
        await p.getByTestId('nav-sites').click();
        await atHash(p, '#/sites');
        await visible(p, 'site-name');
        assert.equal(
          await p.getByTestId('site-fragmentSize').isVisible(),
          false,
          'Advanced starts collapsed',
        );
        await p.getByTestId('site-advanced-toggle').click();
        await visible(p, 'site-fragmentSize');

        const fill: Record<string, string> = {
          name: SITE,
          // The member namespace: nothing is sent there (start action wait), and it is the test's own.
          remoteAddress: UNDERLAY.member,
          psk: 'a-pre-shared-key-of-enough-length',
          localSubnets: '10.67.0.0/24',
          remoteSubnets: '10.80.0.0/24',
          ikeProposals: 'aes128gcm16-prfsha256-ecp256, aes256gcm16-prfsha256-x25519',
          espProposals: 'aes128gcm16',
          ikeLifetimeSec: '28800',
          childLifetimeSec: '1800',
          ikeHardLifetimeSec: '30000',
          childRekeyBytes: '1073741824',
          childLifeBytes: '2147483648',
          dpdIntervalSec: '10',
          multicast: '239.10.0.0/16',
          fragmentSize: '14x',
        };
        for (const [k, v] of Object.entries(fill)) await p.getByTestId(`site-${k}`).fill(v);
        await p.getByTestId('site-dpdAction').selectOption('hold');
        await p.getByTestId('site-startAction').selectOption('wait');
        await p.getByTestId('site-mode').selectOption('tunnel');
        await p.getByTestId('site-allowLegacyGroups').check();

        // Not a number: refused in the console, next to the field, before anything is sent.
        await p.getByTestId('site-submit').click();
        const local = await errorNextTo(p, 'site-fragmentSize');
        t.diagnostic(`"14x": ${JSON.stringify(local)}`);
        assert.match(local, /^fragmentSize: /, local);
        assert.equal((await api('GET', `/sites/${SITE}`)).status, 404, 'nothing was sent');

        // Out of the API's range: its 400 names the field, and the console shows it there.
        await p.getByTestId('site-fragmentSize').fill('100');
        await p.getByTestId('site-submit').click();
        const remote = await errorNextTo(p, 'site-fragmentSize');
        t.diagnostic(`"100": ${JSON.stringify(remote)}`);
        assert.match(remote, /fragmentSize/, remote);
        assert.equal((await api('GET', `/sites/${SITE}`)).status, 404, 'the API refused it');

        await p.getByTestId('site-fragmentSize').fill('1400');
        await p.getByTestId('site-submit').click();
        await visible(p, `site-row-${SITE}`);
        const got = await api('GET', `/sites/${SITE}`);
        assert.equal(got.status, 200, got.text);
        const s = got.json as Record<string, unknown>;
        t.diagnostic(`stored: ${got.text.slice(0, 600)}`);
        assert.deepEqual(s['ikeProposals'], ['aes128gcm16-prfsha256-ecp256', 'aes256gcm16-prfsha256-x25519']);
        assert.deepEqual(s['espProposals'], ['aes128gcm16']);
        assert.equal(s['allowLegacyGroups'], true);
        assert.equal(s['ikeLifetimeSec'], 28_800);
        assert.equal(s['childLifetimeSec'], 1_800);
        assert.equal(s['ikeHardLifetimeSec'], 30_000);
        assert.equal(s['childHardLifetimeSec'], null, 'empty: 110% of the rekey time');
        assert.equal(s['childRekeyBytes'], 1_073_741_824);
        assert.equal(s['childLifeBytes'], 2_147_483_648);
        assert.equal(s['fragmentSize'], 1_400);
        assert.equal(s['dpdIntervalSec'], 10);
        assert.equal(s['dpdAction'], 'hold');
        assert.equal(s['startAction'], 'wait');
        assert.equal(s['mode'], 'tunnel');
        assert.equal(s['childPerSubnetPair'], false);
        assert.deepEqual(s['multicast'], ['239.10.0.0/16']);
        // "Served by" left at "every gateway": no gateway stored.
        assert.equal(s['gateway'] ?? null, null, 'every gateway');

        // Editing shows the stored values, Advanced open (they are not the defaults); an emptied field is
        // the default again.
        await p.getByTestId(`site-edit-${SITE}`).click();
        await visible(p, 'site-fragmentSize');
        assert.equal(await p.getByTestId('site-fragmentSize').inputValue(), '1400');
        assert.equal(await p.getByTestId('site-dpdAction').inputValue(), 'hold');
        await p.getByTestId('site-fragmentSize').fill('');
        await p.getByTestId('site-ikeHardLifetimeSec').fill('');
        await p.getByTestId('site-submit').click();
        const edited = await waitFor(
          'the edit to be stored',
          async () => {
            const r = await api('GET', `/sites/${SITE}`);
            const v = r.json as Record<string, unknown>;
            return v['fragmentSize'] === 1280 ? v : undefined;
          },
          { timeoutMs: UI_MS },
        ).catch(async (e: Error) => assert.fail(`${e.message}; ${await describePage(p)}`));
        assert.equal(edited['ikeHardLifetimeSec'], null);
        assert.equal(edited['childLifetimeSec'], 1_800, 'the other fields kept');
        assert.equal(edited['dpdAction'], 'hold');
      },
    );

    step(
      '8c. static memberships and querier timers edited on the Multicast page read back through the API',
      async (t) => {
        const p = thePage();
        await p.getByTestId('nav-multicast').click();
        await atHash(p, '#/multicast');
        await visible(p, 'multicast-static-add');
        await p.getByTestId('multicast-static-add').click();
        await p.getByTestId('multicast-static-port-0').fill(`member:${MEMBER}`);
        await p.getByTestId('multicast-static-group-0').fill('239.1.1.1');
        await p.getByTestId('multicast-static-add').click();
        await p.getByTestId('multicast-static-port-1').fill(`site:${SITE}`);
        await p.getByTestId('multicast-static-group-1').fill('239.10.1.1');
        await p.getByTestId('multicast-querier-robustness').fill('3');
        await p.getByTestId('multicast-querier-queryResponseIntervalS').fill('2.5');
        await p.getByTestId('multicast-save').click();
        const stored = async (what: string, ok: (s: Record<string, unknown>) => boolean) =>
          waitFor(
            what,
            async () => {
              const r = await api('GET', '/settings');
              const v = r.json as Record<string, unknown>;
              return ok(v) ? v : undefined;
            },
            { timeoutMs: UI_MS },
          ).catch(async (e: Error) => assert.fail(`${e.message}; ${await describePage(p)}`));
        const first = await stored('two static memberships', (s) => Array.isArray(s['multicastStatic']));
        t.diagnostic(
          `stored: ${JSON.stringify({ q: first['multicastQuerier'], s: first['multicastStatic'] })}`,
        );
        assert.deepEqual(first['multicastStatic'], [
          { port: `member:${MEMBER}`, group: '239.1.1.1' },
          { port: `site:${SITE}`, group: '239.10.1.1' },
        ]);
        assert.deepEqual(first['multicastQuerier'], {
          robustness: 3,
          queryIntervalS: 125,
          queryResponseIntervalS: 2.5,
          lastMemberQueryIntervalS: 1,
        });

        // A group that is not multicast: the API's 400 is shown on that row.
        await p.getByTestId('multicast-static-group-0').fill('10.0.0.1');
        await p.getByTestId('multicast-save').click();
        const error = await errorNextTo(p, 'multicast-static-group-0');
        t.diagnostic(`10.0.0.1: ${JSON.stringify(error)}`);
        assert.match(error, /multicastStatic\[0\]\.group/, error);

        // Edit one, remove the other, timers back to the defaults.
        await p.getByTestId('multicast-static-group-0').fill('239.2.2.2');
        await p.getByTestId('multicast-static-remove-1').click();
        for (const k of ['robustness', 'queryResponseIntervalS'])
          await p.getByTestId(`multicast-querier-${k}`).fill('');
        await p.getByTestId('multicast-save').click();
        const second = await stored(
          'the edited membership',
          (s) =>
            JSON.stringify(s['multicastStatic']) ===
            JSON.stringify([{ port: `member:${MEMBER}`, group: '239.2.2.2' }]),
        );
        assert.equal(second['multicastQuerier'], undefined, `RFC 3376's defaults: ${JSON.stringify(second)}`);
        assert.equal(await p.getByTestId('multicast-static-row').count(), 1);
      },
    );

    step(
      '8d. a route saved with "every gateway" reads back without a gateway; an unknown one is refused at the field',
      async (t) => {
        const p = thePage();
        const registered = await api('GET', '/gateways');
        assert.equal(registered.status, 200, registered.text);
        assert.deepEqual(registered.json, [], 'SQLite: no gateway is registered');
        await p.getByTestId('nav-routes').click();
        await atHash(p, '#/routes');
        await visible(p, 'add-route-gateway');
        const options = await p
          .getByTestId('add-route-gateway')
          .locator('option')
          .evaluateAll((os) => os.map((o) => [(o as unknown as { value: string }).value, o.textContent]));
        assert.deepEqual(options, [['', 'every gateway']], 'only "every gateway" when none is registered');

        await p.getByTestId('add-route-cidr').fill(ROUTE);
        await p.getByTestId('add-route-description').fill('lab');
        await p.getByTestId('add-route-gateway').selectOption('');
        await p.getByTestId('add-route-submit').click();
        await visible(p, `route-row-${ROUTE}`);
        const row = (await p.getByTestId(`route-row-${ROUTE}`).textContent()) ?? '';
        assert.match(row, /every gateway/, row);
        const routes = await api('GET', '/routes');
        assert.equal(routes.status, 200, routes.text);
        const stored = (routes.json as { items: { cidr: string; gateway?: string | null }[] }).items.find(
          (r) => r.cidr === ROUTE,
        );
        t.diagnostic(`stored: ${JSON.stringify(stored)}`);
        assert.ok(stored, routes.text);
        assert.equal(stored.gateway ?? null, null, 'every gateway');

        // A gateway offered when the page loaded and removed since (the select is filled once per visit):
        // the API's 400 names `gateway`, and the console shows it beside the field.
        await p.getByTestId('add-route-gateway').evaluate((el) => {
          type Option = { value: string; textContent: string | null };
          const select = el as unknown as {
            ownerDocument: { createElement(tag: 'option'): Option };
            append(o: Option): void;
          };
          const o = select.ownerDocument.createElement('option');
          o.value = 'gw-gone';
          o.textContent = 'gw-gone';
          select.append(o);
        });
        await p.getByTestId('add-route-cidr').fill(ROUTE_REFUSED);
        await p.getByTestId('add-route-gateway').selectOption('gw-gone');
        await p.getByTestId('add-route-submit').click();
        const error = await errorNextTo(p, 'add-route-gateway');
        t.diagnostic(`gw-gone: ${JSON.stringify(error)}`);
        assert.match(error, /gateway/, error);
        assert.match(error, /gw-gone/, error);
        const after = await api('GET', '/routes');
        assert.ok(!after.text.includes(ROUTE_REFUSED), `the API refused it: ${after.text}`);
      },
    );

    step('9. after logging out, the members page sends the browser to the login page', async () => {
      const p = thePage();
      await p.getByTestId('logout').click();
      await visible(p, 'login-username');
      const session = await p.context().request.get(`${base}/api/v1/session`);
      assert.equal(session.status(), 401, 'the session ended');
      await p.goto(`${base}/#/members`, { timeout: UI_MS });
      await atHash(p, '#/login');
      await visible(p, 'login-username');
      assert.equal(await p.getByTestId(`member-row-${MEMBER}`).count(), 0, 'no member list while logged out');
    });

    step('10. refusals: a wrong password; a change without (or with a wrong) CSRF token', async (t) => {
      const p = thePage();
      const { password } = creds();
      // In the browser: a wrong password shows an error and logs nothing in.
      await p.goto(`${base}/#/login`, { timeout: UI_MS });
      await submitLogin(p, `${password}-wrong`);
      await visible(p, 'error-banner');
      const banner = ((await p.getByTestId('error-banner').textContent()) ?? '').trim();
      t.diagnostic(`wrong password: ${JSON.stringify(banner)}`);
      assert.ok(banner.length > 0, 'the error banner says something');
      assert.equal(new URL(p.url()).hash, '#/login');
      assert.equal(await p.getByTestId('logout').count(), 0, 'not logged in');
      const session = await p.context().request.get(`${base}/api/v1/session`);
      assert.equal(session.status(), 401, 'no session after a wrong password');

      // From node: log in, then change something with the cookie but without the CSRF token.
      const login = await http(`${base}/api/v1/session`, {
        method: 'POST',
        body: { username: 'admin', password },
      });
      assert.equal(login.status, 200, login.text);
      const csrfToken = (login.json as { csrfToken?: unknown }).csrfToken;
      assert.ok(typeof csrfToken === 'string' && csrfToken.length > 0, login.text);
      const setCookie = login.cookies.find((c) => c.startsWith('weft_session='));
      assert.ok(setCookie, `a weft_session cookie: ${JSON.stringify(login.cookies)}`);
      assert.match(setCookie, /;\s*HttpOnly/i, setCookie);
      assert.match(setCookie, /;\s*SameSite=Strict/i, setCookie);
      assert.match(setCookie, /;\s*Path=\//i, setCookie);
      const cookie = setCookie.split(';')[0]!;

      const add = (headers: Record<string, string>): Promise<HttpReply> =>
        http(`${base}/api/v1/members`, {
          method: 'POST',
          headers: { cookie, ...headers },
          body: { name: CSRF_MEMBER },
        });
      const noToken = await add({});
      assert.equal(noToken.status, 403, `no X-CSRF-Token: ${noToken.status} ${noToken.text}`);
      assert.equal(errorCode(noToken), 'WEFT_ERR_CSRF', noToken.text);
      const wrongToken = await add({ 'x-csrf-token': `${csrfToken}x` });
      assert.equal(wrongToken.status, 403, `wrong X-CSRF-Token: ${wrongToken.status} ${wrongToken.text}`);
      assert.equal(errorCode(wrongToken), 'WEFT_ERR_CSRF', wrongToken.text);
      const absent = await api('GET', `/members/${CSRF_MEMBER}`);
      assert.equal(absent.status, 404, `the refused requests added nothing: ${absent.text}`);

      const withToken = await add({ 'x-csrf-token': csrfToken });
      assert.equal(withToken.status, 201, `with X-CSRF-Token: ${withToken.status} ${withToken.text}`);
      const audit = await api('GET', `/audit?target=${CSRF_MEMBER}`);
      t.diagnostic(`audit for ${CSRF_MEMBER}: ${audit.text.slice(0, 300)}`);
    });

    step(
      '11. screenshots of every page at desktop and phone widths; nothing scrolls sideways on the phone',
      async (t) => {
        const b = need(browser, 'the browser');
        const { password } = creds();
        need(memberIp, MEMBER);
        const problems: string[] = [];
        const pages: { name: string; hash: string; ready: (p: Page) => Promise<void> }[] = [
          { name: 'dashboard', hash: '#/dashboard', ready: async () => undefined },
          { name: 'members', hash: '#/members', ready: (p) => visible(p, `member-row-${MEMBER}`) },
          {
            name: 'member',
            hash: `#/members/${MEMBER}`,
            ready: async (p) => {
              await p.getByTestId('member-qr-show').click();
              await p.getByTestId('member-config-show').click();
              await visible(p, 'member-config');
              await waitFor(
                'the QR code',
                async () => (await imageFacts(p.getByTestId('member-qr'))).img?.naturalWidth,
                {
                  timeoutMs: UI_MS,
                },
              );
            },
          },
          { name: 'groups', hash: '#/groups', ready: async () => undefined },
          { name: 'policies', hash: '#/policies', ready: async () => undefined },
          { name: 'routes', hash: '#/routes', ready: async () => undefined },
          { name: 'settings', hash: '#/settings', ready: async () => undefined },
          {
            name: 'sites',
            hash: '#/sites',
            ready: async (p) => {
              await visible(p, `site-row-${SITE}`);
              await p.getByTestId('site-advanced-toggle').click();
              await visible(p, 'site-fragmentSize');
            },
          },
          { name: 'multicast', hash: '#/multicast', ready: (p) => visible(p, 'multicast-static-row') },
          // SQLite: one gateway, none registered; the page says so (GET /gateways answers []).
          { name: 'gateways', hash: '#/gateways', ready: (p) => visible(p, 'gateways-empty') },
          { name: 'audit', hash: '#/audit', ready: (p) => visible(p, 'audit-row') },
        ];
        for (const viewport of Object.keys(VIEWPORTS) as ViewportName[]) {
          const ctx = await b.newContext({ viewport: VIEWPORTS[viewport], acceptDownloads: true });
          try {
            const p = await ctx.newPage();
            const w = new PageWatch(p);
            watches.push(w);
            const shoot = async (name: string): Promise<void> => {
              if (!(await w.settled()))
                t.diagnostic(`${name}-${viewport}: requests still in flight after 5 s`);
              const loading = p.getByText('Loading…', { exact: true });
              await waitFor('nothing to be loading', async () => (await loading.count()) === 0, {
                timeoutMs: 5_000,
              }).catch(() => problems.push(`${name}-${viewport}: still "Loading…" after 5 s`));
              const file = await screenshotFile(name, viewport);
              await p.screenshot({ path: file, fullPage: true, timeout: 10_000 });
              if (await p.getByTestId('error-banner').isVisible()) {
                problems.push(
                  `${name}-${viewport}: error banner ${JSON.stringify(await p.getByTestId('error-banner').textContent())}`,
                );
              }
              if (viewport === 'phone') {
                const o = await horizontalOverflow(p);
                if (o.scrollWidth > o.innerWidth + 1) {
                  problems.push(
                    `${name}-phone: scrollWidth ${o.scrollWidth} > innerWidth ${o.innerWidth}; sticking out: ${o.offenders.join(', ')}`,
                  );
                }
              }
            };
            await p.goto(`${base}/#/login`, { timeout: UI_MS });
            await visible(p, 'login-username');
            await shoot('login');
            await submitLogin(p, password);
            await atHash(p, '#/dashboard');
            for (const { name, hash, ready } of pages) {
              await p.goto(`${base}/${hash}`, { timeout: UI_MS });
              await atHash(p, hash);
              await ready(p);
              await shoot(name);
            }
          } finally {
            await ctx.close().catch(() => undefined);
          }
        }
        t.diagnostic(
          `screenshots in ${path.relative(REPO_ROOT, await screenshotFile('x', 'y').then(path.dirname))}/`,
        );
        assert.deepEqual(problems, [], problems.join('\n'));
      },
    );

    step(
      '12. no uncaught script error and no CSP violation in any page',
      async (t) => {
        const errors = watches.flatMap((w) => w.pageErrors);
        const csp = watches.flatMap((w) => w.cspViolations);
        const otherConsole = watches.flatMap((w) => w.consoleErrors).filter((m) => !csp.includes(m));
        if (otherConsole.length > 0)
          t.diagnostic(`console errors (not failing): ${otherConsole.join(' | ')}`);
        assert.deepEqual(errors, [], 'uncaught errors in the console');
        assert.deepEqual(csp, [], 'Content-Security-Policy violations');
        t.diagnostic(`suite time ${((Date.now() - suiteStart) / 1000).toFixed(1)} s`);
      },
      { needsServer: false },
    );

    it('cleanup: the server stops on SIGTERM with exit 0', async () => {
      const proc = need(server, 'a running server');
      if (!proc.running) assert.fail(`the gateway exited early: ${proc.describe()}`);
      await client?.down();
      proc.kill('SIGTERM');
      const status = await within(proc.exited, 10_000);
      assert.ok(status, `weft server run did not exit within 10 s of SIGTERM: ${proc.describe()}`);
      assert.equal(status.code, 0, proc.describe());
    });
  },
);
