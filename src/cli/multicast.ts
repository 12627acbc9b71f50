/**
 * `weft multicast list`: what the running gateway's replicator knows (groups, receivers, senders, packets,
 * drops and why), from the status `weft server run` keeps in the data directory (server/multicast-status.ts).
 */
import type { Command } from 'commander';
import { UserError } from '../control/errors.js';
import { DEFAULT_DATA_DIR } from '../server/data-dir.js';
import { formatMulticastStatus, readMulticastStatus } from '../server/multicast-status.js';

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
}
