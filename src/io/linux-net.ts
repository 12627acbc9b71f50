/**
 * Interface addresses, links and routes on Linux, through iproute2's `ip` (as wg-quick does). Every call
 * has a time limit, and failures carry the command and its error text.
 */
import { execFile } from 'node:child_process';
import { formatPrefix, type Prefix } from '../net/ip.js';

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly stderr: string,
  ) {
    super(`${command}: ${stderr.trim() || 'failed'}`);
  }
}

export function run(
  cmd: string,
  args: readonly string[],
  timeoutMs = 10_000,
  input?: string,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        if (error) reject(new CommandError([cmd, ...args].join(' '), stderr || error.message));
        else resolve(stdout);
      },
    );
    // A command that exits without reading its input must not turn into an EPIPE error here.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input);
  });
}

export const ip = (args: readonly string[]): Promise<string> => run('ip', args);

export async function linkExists(name: string): Promise<boolean> {
  try {
    await ip(['link', 'show', 'dev', name]);
    return true;
  } catch {
    return false;
  }
}

export interface AddressOwner {
  readonly ifname: string;
  readonly address: string;
}

/** Every address configured on this host (in this network namespace). */
export async function hostAddresses(): Promise<AddressOwner[]> {
  const json = JSON.parse(await ip(['-j', 'addr', 'show'])) as {
    ifname: string;
    addr_info?: { local: string }[];
  }[];
  return json.flatMap((link) =>
    (link.addr_info ?? []).map((a) => ({ ifname: link.ifname, address: a.local })),
  );
}

export async function setLinkUp(name: string, mtu: number): Promise<void> {
  await ip(['link', 'set', 'dev', name, 'mtu', String(mtu), 'up']);
}

/** Adds `ADDR/BITS` to the interface (IPv6 without duplicate address detection, usable at once). */
export async function addAddress(name: string, cidr: string): Promise<void> {
  await ip(['addr', 'add', cidr, 'dev', name, ...(cidr.includes(':') ? ['nodad'] : [])]);
}

function familyFlag(p: Prefix): string {
  return p.family === 4 ? '-4' : '-6';
}

/**
 * Routes `prefix` into the interface unless a route through it already covers the prefix (the connected
 * route of its own subnet, say), as wg-quick does. Returns whether a route was added.
 */
export async function addRoute(name: string, prefix: Prefix, table?: number): Promise<boolean> {
  const text = formatPrefix(prefix);
  const tableArgs = table === undefined ? [] : ['table', String(table)];
  const existing = await ip([familyFlag(prefix), 'route', 'show', 'dev', name, 'match', text, ...tableArgs]);
  if (existing.trim() !== '') return false;
  await ip([familyFlag(prefix), 'route', 'add', text, 'dev', name, ...tableArgs]);
  return true;
}

/** Removes a route `addRoute` added; a route that is already gone is not an error. */
export async function removeRoute(name: string, prefix: Prefix): Promise<void> {
  await ip([familyFlag(prefix), 'route', 'del', formatPrefix(prefix), 'dev', name]).catch(() => undefined);
}

export interface PathTo {
  readonly gateway?: string;
  readonly dev: string;
}

/** How the host reaches `address` right now (`ip route get`). */
export async function routeTo(address: string): Promise<PathTo | undefined> {
  try {
    const json = JSON.parse(await ip(['-j', 'route', 'get', address])) as { gateway?: string; dev: string }[];
    const r = json[0];
    return r && (r.gateway ? { gateway: r.gateway, dev: r.dev } : { dev: r.dev });
  } catch {
    return undefined;
  }
}

/** Pins a host route to `address` along `path` (keeps a peer's endpoint off a default route into the tunnel). */
export async function pinHostRoute(address: string, path: PathTo): Promise<() => Promise<void>> {
  const host = address.includes(':') ? `${address}/128` : `${address}/32`;
  const via = path.gateway ? ['via', path.gateway] : [];
  await ip(['route', 'replace', host, ...via, 'dev', path.dev]);
  return async () => {
    await ip(['route', 'del', host, ...via, 'dev', path.dev]).catch(() => undefined);
  };
}

/** Runs an operator's hook command (PreUp, PostUp, ...) with `%i` replaced by the interface name. */
export async function runHook(command: string, name: string): Promise<void> {
  await run('/bin/sh', ['-c', command.replaceAll('%i', name)], 60_000);
}
