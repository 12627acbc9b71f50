/**
 * Source NAT for members' traffic leaving through one interface (the operator's "everyone egresses from the
 * gateway's address"), with the kernel's nftables through the `nft` command, and IP forwarding.
 *
 * The rules live in a table of Weft's own, named after the interface. Installing replaces the whole table
 * in one nft transaction (create-if-absent, delete, define), so a restart or a second install never
 * duplicates a rule and a crash between steps leaves either the old table or the new one.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { run } from '../io/linux-net.js';

export interface NatPlan {
  /** The gateway's WireGuard interface; it names the table. */
  readonly interfaceName: string;
  readonly egress: string;
  readonly subnet: string;
  readonly subnet6: string | null;
}

export function natTableName(interfaceName: string): string {
  return `weft_${interfaceName.replace(/[^A-Za-z0-9_]/g, '_')}`;
}

/** The nft script that (re)creates the table. Interface names are quoted: nft accepts any 1–15 byte name so. */
export function natScript(plan: NatPlan): string {
  const table = `inet ${natTableName(plan.interfaceName)}`;
  const rules = [`    ip saddr ${plan.subnet} oifname "${plan.egress}" masquerade`];
  if (plan.subnet6) rules.push(`    ip6 saddr ${plan.subnet6} oifname "${plan.egress}" masquerade`);
  return [
    `table ${table}`,
    `delete table ${table}`,
    `table ${table} {`,
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    ...rules,
    '  }',
    '}',
    '',
  ].join('\n');
}

function nft(script: string): Promise<string> {
  return run('nft', ['-f', '-'], 10_000, script);
}

export async function installNat(plan: NatPlan): Promise<void> {
  await nft(natScript(plan));
}

export async function removeNat(interfaceName: string): Promise<void> {
  const table = natTableName(interfaceName);
  // Creating it first makes the delete succeed whether or not the table is there.
  await nft(`table inet ${table}\ndelete table inet ${table}\n`);
}

/** Turns forwarding on for the families in use; returns a function that puts the old values back. */
export function enableForwarding(ipv6: boolean): () => void {
  const paths = [
    '/proc/sys/net/ipv4/ip_forward',
    ...(ipv6 ? ['/proc/sys/net/ipv6/conf/all/forwarding'] : []),
  ];
  const previous = paths.map((p) => [p, readFileSync(p, 'utf8').trim()] as const);
  for (const p of paths) writeFileSync(p, '1\n');
  return () => {
    for (const [p, value] of previous) {
      try {
        writeFileSync(p, `${value}\n`);
      } catch {
        // the namespace may be gone already
      }
    }
  };
}
