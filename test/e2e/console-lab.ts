/**
 * Helpers for the web console's end-to-end tests (console.test.ts): a gateway namespace whose API address sits
 * on a veth to the ROOT namespace (so Debian's Chromium, driven by playwright-core in the root namespace, reaches
 * the console while the tunnel traffic stays inside namespaces), a member namespace for a real wg-quick client,
 * the browser itself, and small page and HTTP helpers.
 *
 *   const topo = await consoleTopology(lab);        // gw, member; topo.api.gwAddr is on a root↔gw veth
 *   const browser = await launchChromium(lab);      // marked with the lab's WEFT_LAB, so cleanup finds strays
 *   const page = await (await browser.newContext({ acceptDownloads: true })).newPage();
 *   await page.goto(`http://${topo.api.gwAddr}:8780/#/login`);
 *
 * Underlay (inside namespaces only): gateway 192.168.71.1/24 ↔ member 192.168.71.10/24. Console link: a random
 * free /30 in 10.251.0.0/16, root end .1, gateway end .2. cleanupConsoleLab() removes the root end before the
 * lab's namespaces: deleting the gateway namespace deletes the pair too, but the kernel does that after
 * `ip netns del` has returned, so a check right after cleanup could still see it.
 */
import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { LAB_ENV, run, waitFor, type Lab, type Netns } from '../interop/harness.js';
import { within } from '../interop/gateway-lab.js';
import { prefixContains } from '../interop/people-lab.js';

/** Tools the console tests need on PATH (interopSkip / Lab.create check them). */
export const E2E_TOOLS: readonly string[] = ['ip', 'wireguard-go', 'wg', 'wg-quick', 'ping', 'chromium'];

/** Debian's Chromium (package `chromium`); never downloaded by a test. */
export const CHROMIUM_PATH = '/usr/bin/chromium';
export const CHROMIUM_ARGS: readonly string[] = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** The repository root (this file runs as dist/test/e2e/console-lab.js). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** Where screenshots go (git-ignored: test-results/). */
export const SCREENSHOT_DIR = path.join(REPO_ROOT, 'test-results', 'screenshots');

export const UNDERLAY = { gateway: '192.168.71.1', member: '192.168.71.10', prefixLength: 24 } as const;

export const VIEWPORTS = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 390, height: 844 },
} as const;
export type ViewportName = keyof typeof VIEWPORTS;

// ---------------------------------------------------------------------------------------------------------------
// Topology

export interface RootLink {
  /** The veth end in the root namespace, and its address (no prefix length). */
  rootIf: string;
  rootAddr: string;
  /** The end in the namespace, and its address (no prefix length). */
  nsIf: string;
  nsAddr: string;
  /** Deletes the root end (and so the pair) if it still exists; idempotent, never throws. */
  remove(): Promise<void>;
}

const rootLinks = new Set<string>();
let rootLinkExitHandler = false;

/**
 * A veth between the root namespace and `ns` on a /30 in 10.251.0.0/16 that no root address or route overlaps.
 * Both ends are created in one `ip link add` (the peer directly in `ns`), so no half-made pair can remain.
 */
export async function rootLink(lab: Lab, ns: Netns, local = 'rt'): Promise<RootLink> {
  const rootIf = lab.ifname(`${local}r`);
  const nsIf = lab.ifname(`${local}n`);
  let block: number | undefined;
  for (let attempt = 0; attempt < 20 && block === undefined; attempt++) {
    const candidate = randomInt(16384) * 4; // offset of a /30 inside 10.251.0.0/16
    const network = `10.251.${candidate >> 8}.${candidate & 255}`;
    if (await rootOverlaps(`${network}/30`)) continue;
    block = candidate;
  }
  if (block === undefined) throw new Error('no free /30 in 10.251.0.0/16 for the console link');
  const host = (n: number): string => `10.251.${(block + n) >> 8}.${(block + n) & 255}`;
  const rootAddr = host(1);
  const nsAddr = host(2);

  installRootLinkExitHandler();
  rootLinks.add(rootIf);
  await run('ip', ['link', 'add', rootIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', ns.name]);
  const remove = async (): Promise<void> => {
    rootLinks.delete(rootIf);
    await run('ip', ['link', 'del', rootIf], { allowFail: true }).catch(() => undefined);
  };
  try {
    await run('ip', ['link', 'set', rootIf, 'up']);
    await ns.exec('ip', ['link', 'set', nsIf, 'up']);
    await run('ip', ['addr', 'add', `${rootAddr}/30`, 'dev', rootIf]);
    await ns.exec('ip', ['addr', 'add', `${nsAddr}/30`, 'dev', nsIf]);
    await waitFor(`${rootAddr} (root) to reach ${nsAddr} (${ns.name})`, async () => {
      const r = await run('ping', ['-c', '1', '-W', '1', nsAddr], { allowFail: true });
      return r.code === 0;
    });
  } catch (error) {
    await remove();
    throw error;
  }
  return { rootIf, rootAddr, nsIf, nsAddr, remove };
}

/** Whether a root-namespace address or a route more specific than the default overlaps `prefix`. */
async function rootOverlaps(prefix: string): Promise<boolean> {
  const [base] = prefix.split('/');
  const addrs = (await run('ip', ['-4', '-o', 'addr', 'show'])).stdout;
  for (const m of addrs.matchAll(/\binet (\d+\.\d+\.\d+\.\d+)\/(\d+)/g)) {
    if (prefixContains(prefix, m[1]!) || prefixContains(`${m[1]}/${m[2]}`, base!)) return true;
  }
  const routes = (await run('ip', ['-4', 'route', 'show', 'table', 'all'])).stdout;
  for (const line of routes.split('\n')) {
    const dest = line.trim().split(/\s+/)[0] ?? '';
    if (!/^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(dest)) continue; // default, broadcast, local, ...
    if (dest.endsWith('/0')) continue;
    const destBase = dest.split('/')[0]!;
    if (prefixContains(prefix, destBase) || prefixContains(dest, base!)) return true;
  }
  return false;
}

/** At exit (e.g. the test process is killed), removes root ends that are still there. */
function installRootLinkExitHandler(): void {
  if (rootLinkExitHandler) return;
  rootLinkExitHandler = true;
  process.on('exit', () => {
    for (const ifname of rootLinks) {
      if (!fs.existsSync(`/sys/class/net/${ifname}`)) continue;
      try {
        execFileSync('ip', ['link', 'del', ifname], { stdio: 'ignore', timeout: 5_000 });
      } catch {
        // best effort at exit
      }
    }
  });
}

export interface ConsoleTopology {
  gw: Netns;
  member: Netns;
  /** The console link: Chromium and node's fetch (root namespace) reach the API at `api.nsAddr`. */
  api: RootLink;
}

/** Removes the console link's root end, then everything else the lab made. */
export async function cleanupConsoleLab(lab: Lab, topo: ConsoleTopology | undefined): Promise<void> {
  try {
    await topo?.api.remove();
  } finally {
    await lab.cleanup();
  }
}

/** The gateway and member namespaces, their underlay, and the root↔gateway console link. */
export async function consoleTopology(lab: Lab): Promise<ConsoleTopology> {
  const gw = await lab.netns('gw');
  const member = await lab.netns('member');
  await lab.veth(gw, member, {
    aName: 'ug',
    bName: 'um',
    aAddr: `${UNDERLAY.gateway}/${UNDERLAY.prefixLength}`,
    bAddr: `${UNDERLAY.member}/${UNDERLAY.prefixLength}`,
  });
  const api = await rootLink(lab, gw);
  await waitFor(`${member.name} to reach ${UNDERLAY.gateway}`, async () => {
    const r = await member.exec('ping', ['-c', '1', '-W', '1', UNDERLAY.gateway], { allowFail: true });
    return r.code === 0;
  });
  return { gw, member, api };
}

// ---------------------------------------------------------------------------------------------------------------
// The browser

/**
 * Launches Debian's Chromium headless. Its processes carry the lab's WEFT_LAB marker, so `lab.cleanup()` kills
 * any that `browser.close()` did not end (playwright also kills the browser when this process exits).
 */
export function launchChromium(lab: Lab): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [...CHROMIUM_ARGS],
    env: { ...process.env, [LAB_ENV]: lab.prefix },
    timeout: 30_000,
  });
}

/** Closes the browser, bounded (a hung close is left to lab.cleanup's SIGKILL of marked processes). */
export async function closeBrowser(browser: Browser | undefined): Promise<void> {
  if (!browser) return;
  await within(
    browser.close().catch(() => undefined),
    10_000,
  );
}

/**
 * Watches a page: its in-flight requests (for `settled`), uncaught errors, console errors, CSP violations
 * (reported on the console) and dialogs, which it accepts (a `confirm()` before a change is fine).
 */
export class PageWatch {
  readonly pageErrors: string[] = [];
  readonly consoleErrors: string[] = [];
  readonly dialogs: string[] = [];
  private readonly inflight = new Set<unknown>();
  private lastActivity = Date.now();

  constructor(readonly page: Page) {
    page.on('request', (r) => {
      this.inflight.add(r);
      this.lastActivity = Date.now();
    });
    const done = (r: unknown): void => {
      this.inflight.delete(r);
      this.lastActivity = Date.now();
    };
    page.on('requestfinished', done);
    page.on('requestfailed', done);
    page.on('pageerror', (e) => this.pageErrors.push(`${page.url()}: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') this.consoleErrors.push(`${page.url()}: ${m.text()}`);
    });
    page.on('dialog', (d) => {
      this.dialogs.push(`${d.type()}: ${d.message()}`);
      void d.accept().catch(() => undefined);
    });
  }

  /** Console messages that report a Content-Security-Policy violation. */
  get cspViolations(): string[] {
    return this.consoleErrors.filter((m) =>
      /Content Security Policy|Refused to (load|execute|apply|connect)/i.test(m),
    );
  }

  /**
   * Best effort, bounded: waits until no request has been in flight for `quietMs` and every image is complete.
   * Returns false (does not throw) when that did not happen within `timeoutMs`.
   */
  async settled({
    quietMs = 250,
    timeoutMs = 5_000,
  }: { quietMs?: number; timeoutMs?: number } = {}): Promise<boolean> {
    const start = Date.now();
    const deadline = start + timeoutMs;
    while (Date.now() < deadline) {
      // Quiet since this call at least: a page that has not sent its requests yet is not settled.
      if (this.inflight.size === 0 && Date.now() - Math.max(this.lastActivity, start) >= quietMs) {
        const images = await this.page
          .evaluate<boolean>('Array.from(document.images).every((i) => i.complete)')
          .catch(() => false);
        if (images) return true;
      }
      await sleep(50);
    }
    return false;
  }
}

/** What an element shows: an input's or textarea's value, otherwise its text. */
export function shownText(locator: Locator): Promise<string> {
  return locator.evaluate((el) => {
    const e = el as unknown as { value?: unknown; textContent: string | null };
    return typeof e.value === 'string' && e.value !== '' ? e.value : (e.textContent ?? '');
  });
}

/** Every URL-ish thing an element carries: value, href, src, text, and those of its descendants. */
export function urlCandidates(locator: Locator): Promise<string[]> {
  return locator.evaluate((el) => {
    type Node = {
      value?: unknown;
      getAttribute(name: string): string | null;
      textContent: string | null;
      querySelectorAll(sel: string): ArrayLike<Node>;
    };
    const root = el as unknown as Node;
    const out: string[] = [];
    for (const n of [root, ...Array.from(root.querySelectorAll('a, input, textarea, code'))]) {
      if (typeof n.value === 'string') out.push(n.value);
      for (const attr of ['href', 'data-url', 'value']) {
        const v = n.getAttribute(attr);
        if (v) out.push(v);
      }
      if (n.textContent) out.push(n.textContent.trim());
    }
    return out;
  });
}

/** Facts about an element that should be an image: its tag, and an <img>'s (its own or a child's) natural size. */
export function imageFacts(locator: Locator): Promise<{
  tag: string;
  img: { src: string; complete: boolean; naturalWidth: number } | null;
  box: number;
}> {
  return locator.evaluate((el) => {
    type Img = { src: string; complete: boolean; naturalWidth: number; tagName: string };
    type El = Img & {
      querySelector(sel: string): Img | null;
      getBoundingClientRect(): { width: number; height: number };
    };
    const e = el as unknown as El;
    const img = e.tagName === 'IMG' ? e : e.querySelector('img');
    const rect = e.getBoundingClientRect();
    return {
      tag: e.tagName,
      img: img
        ? { src: img.src.slice(0, 120), complete: img.complete, naturalWidth: img.naturalWidth }
        : null,
      box: rect.width * rect.height,
    };
  });
}

export interface Overflow {
  scrollWidth: number;
  innerWidth: number;
  /** Up to 8 elements sticking out to the right: "tag#id.class[data-testid] right=NNN". */
  offenders: string[];
}

/** The document's width against the viewport's, with the widest offenders when it overflows. */
export function horizontalOverflow(page: Page): Promise<Overflow> {
  return page.evaluate<Overflow>(`(() => {
    const iw = window.innerWidth;
    const sw = document.documentElement.scrollWidth;
    const offenders = [];
    if (sw > iw + 1) {
      for (const el of document.querySelectorAll('body *')) {
        const r = el.getBoundingClientRect();
        if (r.right > iw + 1 && r.width > 0) {
          const id = el.id ? '#' + el.id : '';
          const cls = typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(/\\s+/).join('.') : '';
          const tid = el.getAttribute('data-testid') ? '[data-testid=' + el.getAttribute('data-testid') + ']' : '';
          offenders.push({ d: el.tagName.toLowerCase() + id + cls + tid + ' right=' + Math.round(r.right), r: r.right });
        }
      }
      offenders.sort((a, b) => b.r - a.r);
    }
    return { scrollWidth: sw, innerWidth: iw, offenders: offenders.slice(0, 8).map((o) => o.d) };
  })()`);
}

/** test-results/screenshots/<name>-<viewport>.png (directory created). */
export async function screenshotFile(name: string, viewport: ViewportName | string): Promise<string> {
  await fsp.mkdir(SCREENSHOT_DIR, { recursive: true });
  return path.join(SCREENSHOT_DIR, `${name}-${viewport}.png`);
}

/** Which data-testids the page currently shows (for error messages), with the URL and a text excerpt. */
export async function describePage(page: Page): Promise<string> {
  try {
    const facts = await page.evaluate<{ ids: string[]; text: string }>(`({
      ids: Array.from(document.querySelectorAll('[data-testid]')).map((e) => e.getAttribute('data-testid')).slice(0, 40),
      text: (document.body ? document.body.innerText : '').replace(/\\s+/g, ' ').slice(0, 400),
    })`);
    return `page ${page.url()}; testids [${facts.ids.join(', ')}]; text: ${JSON.stringify(facts.text)}`;
  } catch (error) {
    return `page ${page.url()} (could not inspect: ${(error as Error).message})`;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP from the test process (root namespace)

export interface HttpReply {
  status: number;
  headers: Headers;
  text: string;
  /** The body as JSON, or undefined when it is not JSON. */
  json: unknown;
  /** Every Set-Cookie header. */
  cookies: string[];
}

/** One request with a 10 s bound; never throws on an HTTP error status. */
export async function http(
  url: string,
  {
    method = 'GET',
    headers = {},
    body,
  }: { method?: string; headers?: Record<string, string>; body?: unknown } = {},
): Promise<HttpReply> {
  const init: RequestInit = {
    method,
    headers: { ...headers },
    redirect: 'manual',
    signal: AbortSignal.timeout(10_000),
  };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json, cookies: res.headers.getSetCookie() };
}

/** The `error.code` of a Weft error body, if any. */
export function errorCode(reply: HttpReply): string | undefined {
  const body = reply.json as { error?: { code?: unknown } } | undefined;
  return typeof body?.error?.code === 'string' ? body.error.code : undefined;
}

// ---------------------------------------------------------------------------------------------------------------

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
