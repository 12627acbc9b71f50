/**
 * The running gateway's multicast state for `weft multicast list`: `weft server run` writes the replicator's
 * snapshot to `multicast.json` in the data directory every MULTICAST_STATUS_MS (and removes it when it
 * stops); the command reads it there. Memberships are learned by each gateway, so the file is that
 * gateway's, beside its store; the API of the running server answers from the replicator itself.
 *
 * The file is written whole under a temporary name and renamed (a reader never sees half of it), 0600 like
 * the store (it names members).
 */
import { readFileSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MulticastSnapshot } from '../gateway/multicast.js';

export const MULTICAST_STATUS_FILE = 'multicast.json';
/** How often the server writes it. */
export const MULTICAST_STATUS_MS = 2_000;
/** A file older than this is from a server that is gone (killed without removing it). */
const STALE_MS = 5 * MULTICAST_STATUS_MS;

export interface MulticastStatus extends MulticastSnapshot {
  /** When the server wrote it (ISO 8601). */
  readonly at: string;
}

export function multicastStatusPath(dir: string): string {
  return join(dir, MULTICAST_STATUS_FILE);
}

export async function writeMulticastStatus(
  dir: string,
  snapshot: MulticastSnapshot,
  at: Date,
): Promise<void> {
  const file = multicastStatusPath(dir);
  const temporary = `${file}.${process.pid}.tmp`;
  const status: MulticastStatus = { at: at.toISOString(), ...snapshot };
  await writeFile(temporary, `${JSON.stringify(status)}\n`, { mode: 0o600 });
  await rename(temporary, file);
}

export async function removeMulticastStatus(dir: string): Promise<void> {
  await rm(multicastStatusPath(dir), { force: true });
}

/** The status the server last wrote, or why there is none to show. */
export function readMulticastStatus(
  dir: string,
  now: Date,
): { ok: true; status: MulticastStatus } | { ok: false; why: string } {
  let text: string;
  try {
    text = readFileSync(multicastStatusPath(dir), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT')
      return { ok: false, why: 'no running server with multicast on writes to this data directory' };
    throw e;
  }
  let status: MulticastStatus;
  try {
    status = JSON.parse(text) as MulticastStatus;
  } catch {
    return { ok: false, why: `${multicastStatusPath(dir)} is not valid JSON` };
  }
  const age = now.getTime() - Date.parse(status.at);
  if (!(age < STALE_MS))
    return {
      ok: false,
      why: `the last status is from ${status.at}: the server that wrote it is not running`,
    };
  return { ok: true, status };
}

function entries(record: Readonly<Record<string, number>>): string {
  const parts = Object.entries(record)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${n}`);
  return parts.length > 0 ? parts.join(', ') : '-';
}

/** The text `weft multicast list` prints: groups with receivers and senders, then ports, then drops. */
export function formatMulticastStatus(s: MulticastSnapshot): string {
  const lines: string[] = [];
  lines.push(
    `packets ${s.counters.packets}, copies ${s.counters.copies}, membership reports ${s.counters.reports}`,
  );
  lines.push('');
  if (s.groups.length === 0) lines.push('groups: none joined');
  for (const g of s.groups) {
    lines.push(`group ${g.group}: ${g.packets} packet(s), ${g.copies} copies`);
    const receivers = g.receivers.map(
      (r) => `${r.port} (${r.expiresInS === null ? 'static' : `${r.expiresInS} s`})`,
    );
    lines.push(`  receivers: ${receivers.join(', ')}`);
    const senders = g.senders.map((x) => `${x.port} (${x.packets})`);
    lines.push(`  senders:   ${senders.length > 0 ? senders.join(', ') : '-'}`);
  }
  lines.push('');
  lines.push('PORT'.padEnd(24) + 'SENT'.padStart(10) + 'RECEIVED'.padStart(10) + '  DROPPED (WHY)');
  for (const p of s.ports)
    lines.push(
      p.port.padEnd(24) +
        String(p.sent).padStart(10) +
        String(p.received).padStart(10) +
        `  ${entries(p.drops)}`,
    );
  lines.push('');
  lines.push(`drops: ${entries(s.drops)}`);
  return lines.join('\n');
}
