/**
 * `weft multicast list`: what the running gateway's replicator knows (groups, receivers, senders, packets,
 * drops and why), from the status `weft server run` keeps in the data directory (server/multicast-status.ts).
 * `weft multicast static add|remove|list`: static memberships; `weft multicast querier`: the querier's timers
 * (both settings, applied live by a running gateway).
 */
import type { Command } from 'commander';
import { UserError } from '../control/errors.js';
import { DEFAULT_DATA_DIR } from '../server/data-dir.js';
import { formatMulticastStatus, readMulticastStatus } from '../server/multicast-status.js';
import { MULTICAST_QUERIER_DEFAULTS } from '../control/multicast-settings.js';
import { actor, withControlPlane, type DataOption } from './people.js';

/** A number option as given ("2", "0.5"); anything else is left for validation to name. */
function num(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  const n = Number(text);
  return text.trim() !== '' && Number.isFinite(n) ? n : text;
}

export function registerMulticastCommands(program: Command): void {
  const multicast = program
    .command('multicast')
    .description('multicast across the overlay, as the running gateway sees it (docs/multicast.md)');
  multicast
    .command('list')
    .description('groups with their receivers and senders, packets, copies, and drops by reason')
    .option('-d, --data <dir>', `data directory (default: $WEFT_DATA or ${DEFAULT_DATA_DIR})`)
    .option('--json', 'print JSON (the same object as GET /api/v1/multicast returns in `live`)')
    .action((opts: { data?: string; json?: boolean }) => {
      const dir = opts.data ?? process.env['WEFT_DATA'] ?? DEFAULT_DATA_DIR;
      const read = readMulticastStatus(dir, new Date());
      if (!read.ok)
        throw new UserError(
          `weft: ${read.why} (multicast is turned on with \`weft server multicast on\` and a restart)`,
        );
      console.log(opts.json ? JSON.stringify(read.status, null, 2) : formatMulticastStatus(read.status));
    });

  const dataOption = '-d, --data <dir>';
  const dataHelp = `data directory (default: $WEFT_DATA or ${DEFAULT_DATA_DIR})`;
  const statics = multicast
    .command('static')
    .description(
      'ports joined to groups without IGMP/MLD reports (hosts behind a site, a LAN that never reports)',
    );
  statics
    .command('add')
    .description('join a port to a group; a running gateway applies it at once')
    .argument('<port>', 'member:NAME, site:NAME or lan')
    .argument('<group>', 'group address, e.g. 239.1.1.1 or ff15::1')
    .option(dataOption, dataHelp)
    .action((port: string, group: string, opts: DataOption) =>
      withControlPlane(opts, (cp) => {
        const e = cp.addMulticastStatic(actor(), port, group);
        console.log(`static membership: ${e.port} in ${e.group}`);
      }),
    );
  statics
    .command('remove')
    .description('remove a static membership')
    .argument('<port>', 'member:NAME, site:NAME or lan')
    .argument('<group>', 'group address')
    .option(dataOption, dataHelp)
    .action((port: string, group: string, opts: DataOption) =>
      withControlPlane(opts, (cp) => {
        if (!cp.removeMulticastStatic(actor(), port, group))
          throw new UserError(`weft: no static membership of ${port} in ${group}`);
        console.log(`removed: ${port} in ${group}`);
      }),
    );
  statics
    .command('list')
    .description('the static memberships')
    .option(dataOption, dataHelp)
    .option('--json', 'print JSON (as GET /api/v1/multicast/static)')
    .action((opts: DataOption & { json?: boolean }) =>
      withControlPlane(opts, (cp) => {
        const items = cp.listMulticastStatic();
        if (opts.json) return void console.log(JSON.stringify({ items }, null, 2));
        if (items.length === 0) return void console.log('no static memberships');
        console.log('PORT'.padEnd(28) + 'GROUP');
        for (const e of items) console.log(e.port.padEnd(28) + e.group);
      }),
    );
  multicast
    .command('querier')
    .description(
      "print the querier's timers (RFC 3376 §8), or change them; a running gateway applies them at once",
    )
    .option('--robustness <n>', 'robustness variable, 1-7 (default 2)')
    .option('--query-interval <s>', 'seconds between general queries (default 125)')
    .option('--query-response-interval <s>', 'max response time of general queries, s in tenths (default 10)')
    .option('--last-member-query-interval <s>', 'spacing of group-specific queries after a leave (default 1)')
    .option('--defaults', "back to RFC 3376's defaults")
    .option(dataOption, dataHelp)
    .option('--json', 'print JSON')
    .action(
      (
        opts: DataOption & {
          robustness?: string;
          queryInterval?: string;
          queryResponseInterval?: string;
          lastMemberQueryInterval?: string;
          defaults?: boolean;
          json?: boolean;
        },
      ) =>
        withControlPlane(opts, (cp) => {
          const given = Object.fromEntries(
            Object.entries({
              robustness: num(opts.robustness),
              queryIntervalS: num(opts.queryInterval),
              queryResponseIntervalS: num(opts.queryResponseInterval),
              lastMemberQueryIntervalS: num(opts.lastMemberQueryInterval),
            }).filter(([, value]) => value !== undefined),
          );
          if (opts.defaults) cp.updateSettings(actor(), { multicastQuerier: null });
          if (Object.keys(given).length > 0) cp.updateSettings(actor(), { multicastQuerier: given });
          const t = cp.settings().multicastQuerier ?? MULTICAST_QUERIER_DEFAULTS;
          if (opts.json) return void console.log(JSON.stringify(t, null, 2));
          const gmi = t.robustness * t.queryIntervalS + t.queryResponseIntervalS;
          console.log(
            [
              `robustness:                  ${t.robustness}`,
              `query interval:              ${t.queryIntervalS} s`,
              `query response interval:     ${t.queryResponseIntervalS} s`,
              `last member query interval:  ${t.lastMemberQueryIntervalS} s`,
              `group membership interval:   ${gmi} s (derived: robustness × query interval + response interval)`,
            ].join('\n'),
          );
        }),
    );
}
