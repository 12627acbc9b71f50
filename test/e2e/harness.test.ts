/**
 * The console tests' plumbing on its own, without Weft: Chromium in the root namespace loads a page (with an
 * image) that node:http serves in a gateway namespace over the root↔gateway veth; a real wg-quick client
 * (wireguard-go) in the member namespace pings a wireguard-go peer in the gateway namespace; cleanup removes
 * the namespaces, the root end of the veth and the browser. When console.test.ts fails, this says whether the
 * machine or the product is to blame.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { ping, generateKeyPair, wgQuickConfig } from '../interop/gateway-lab.js';
import { interopSkip, Lab, LAB_ENV, startWireguardGo } from '../interop/harness.js';
import { wgQuickUp } from '../interop/people-lab.js';
import {
  closeBrowser,
  cleanupConsoleLab,
  consoleTopology,
  E2E_TOOLS,
  http,
  imageFacts,
  launchChromium,
  PageWatch,
  UNDERLAY,
  type ConsoleTopology,
} from './console-lab.js';

const PORT = 8781;

/** Command lines of the processes whose environment carries WEFT_LAB=<prefix>. */
function markedProcesses(prefix: string): string[] {
  const marker = `\0${LAB_ENV}=${prefix}\0`;
  const found: string[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (!`\0${fs.readFileSync(`/proc/${entry}/environ`, 'latin1')}`.includes(marker)) continue;
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (/\) [ZX] /.test(stat)) continue;
      found.push(`${entry}: ${fs.readFileSync(`/proc/${entry}/cmdline`, 'latin1').replaceAll('\0', ' ')}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** A page with a served 2×1 PNG. */
const HELLO_SERVER = `
const http = require('node:http');
const [host, port] = process.argv.slice(1);
const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAIAAAABCAYAAAD0In+KAAAAEUlEQVR42mP8z8Dwn4GBgYEAAAwAAf9P0xUAAAAASUVORK5CYII=', 'base64');
http.createServer((req, res) => {
  if (req.url === '/dot.png') { res.setHeader('content-type', 'image/png'); res.end(png); return; }
  res.setHeader('content-type', 'text/html');
  res.end('<!doctype html><title>hello</title><h1 data-testid="hello">hello from the gateway</h1><img data-testid="dot" src="/dot.png">');
}).listen(Number(port), host, () => console.log('listening'));
`;

describe(
  'console e2e harness: namespaces, root veth, Chromium, wg-quick',
  { skip: interopSkip(E2E_TOOLS) },
  () => {
    let lab: Lab;
    let topo: ConsoleTopology | undefined;
    let browser: Browser | undefined;

    before(async () => {
      lab = await Lab.create('e2e', { tools: E2E_TOOLS });
    });

    after(async () => {
      await closeBrowser(browser);
      if (lab) await cleanupConsoleLab(lab, topo);
    });

    it('Chromium in the root namespace loads a page served in the gateway namespace over the veth', async () => {
      topo = await consoleTopology(lab);
      const { gw, api } = topo;
      const server = gw.spawn(process.execPath, ['-e', HELLO_SERVER, api.nsAddr, String(PORT)]);
      await server.waitForOutput(/listening/, 10_000);
      const base = `http://${api.nsAddr}:${PORT}`;
      const reply = await http(`${base}/`);
      assert.equal(reply.status, 200);

      browser = await launchChromium(lab);
      const context = await browser.newContext({ acceptDownloads: true });
      const page = await context.newPage();
      const watch = new PageWatch(page);
      await page.goto(`${base}/`, { timeout: 10_000 });
      assert.equal(await page.getByTestId('hello').textContent(), 'hello from the gateway');
      assert.ok(await watch.settled());
      const img = await imageFacts(page.getByTestId('dot'));
      assert.equal(img.img?.naturalWidth, 2, JSON.stringify(img));
      assert.deepEqual(watch.pageErrors, []);
      await context.close();
    });

    it('a wg-quick client (wireguard-go) in the member namespace pings a peer in the gateway namespace', async () => {
      assert.ok(topo, 'the topology (an earlier step failed)');
      const { gw, member } = topo;
      const gwKeys = generateKeyPair();
      const memberKeys = generateKeyPair();
      await startWireguardGo(gw, lab.ifname('wg'), {
        privateKey: gwKeys.privateKey,
        listenPort: 51820,
        addresses: ['10.67.0.1/24'],
        peers: [{ publicKey: memberKeys.publicKey, allowedIps: ['10.67.0.2/32'] }],
      });
      const config = wgQuickConfig({
        privateKey: memberKeys.privateKey,
        addresses: ['10.67.0.2/32'],
        peers: [
          {
            publicKey: gwKeys.publicKey,
            endpoint: `${UNDERLAY.gateway}:51820`,
            allowedIps: ['10.67.0.1/32'],
          },
        ],
      });
      const client = await wgQuickUp(member, lab.ifname('m'), config);
      const p = await ping(member, '10.67.0.1', { count: 3, waitS: 3 });
      assert.equal(p.received, 3, p.output);
      await client.down();
    });

    it('cleanup removes the namespaces, the root end of the veth and the browser', async () => {
      assert.ok(topo, 'the topology (an earlier step failed)');
      const rootIf = topo.api.rootIf;
      assert.ok(fs.existsSync(`/sys/class/net/${rootIf}`), `${rootIf} exists before cleanup`);
      await closeBrowser(browser);
      browser = undefined;
      await cleanupConsoleLab(lab, topo);
      assert.ok(!fs.existsSync(`/sys/class/net/${rootIf}`), `${rootIf} is gone after cleanup`);
      const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
      assert.ok(!namespaces.includes(`${lab.prefix}-`), `namespaces of ${lab.prefix} remain:\n${namespaces}`);
      assert.deepEqual(markedProcesses(lab.prefix), [], 'processes of the lab (e.g. chromium) remain');
    });
  },
);
