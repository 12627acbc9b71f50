#!/usr/bin/env node
/**
 * The `weft` command.
 */
// First: `server run` may restart itself here, before the other modules load (server-run-restart.ts).
import './server-run-restart.js';
import { Command, CommanderError } from 'commander';
import { UserError, WeftError, type ErrorCode } from '../control/errors.js';
import { isDamageError } from '../control/store-sqlite.js';
import { damagedStoreError } from '../server/data-dir.js';
import { demo } from './demo.js';
import { registerPeopleCommands } from './people.js';
import { registerSiteCommands } from './sites.js';
import { registerMulticastCommands } from './multicast.js';
import { registerGatewayCommands } from './gateways.js';
import { down, upBackground, upForeground } from './up.js';
import { genkey, genpsk, pubkey, readStdin, writeSecret } from './keys.js';

export function buildProgram(): Command {
  const program = new Command('weft')
    .description('Weft: a self-hosted WireGuard gateway')
    .version('0.1.0')
    .exitOverride()
    .showHelpAfterError();

  program
    .command('genkey')
    .description('print a new private key (base64), as `wg genkey` does')
    .option('-o, --output <file>', 'write the key to FILE with mode 0600')
    .action((opts: { output?: string }) => writeSecret(genkey(), opts.output));

  program
    .command('pubkey')
    .description('read a private key on standard input and print its public key, as `wg pubkey` does')
    .action(async () => {
      process.stdout.write(pubkey(await readStdin()));
    });

  program
    .command('genpsk')
    .description('print a new preshared key (base64), as `wg genpsk` does')
    .option('-o, --output <file>', 'write the key to FILE with mode 0600')
    .action((opts: { output?: string }) => writeSecret(genpsk(), opts.output));

  program
    .command('up')
    .description(
      'bring up a WireGuard interface from a wg-quick style FILE (named after the file, as wg-quick does)',
    )
    .argument('<file>', 'configuration, e.g. /etc/weft/wg0.conf')
    .option('--foreground', 'stay attached (for systemd); stop with SIGTERM or SIGINT')
    .action(async (file: string, opts: { foreground?: boolean }) => {
      if (opts.foreground) await upForeground(file);
      else console.log(await upBackground(file));
    });

  program
    .command('down')
    .description('stop an interface brought up by `weft up` and remove it with its addresses and routes')
    .argument('<name>', 'interface name, or the configuration file it came from')
    .action(async (name: string) => console.log(await down(name)));

  program
    .command('demo')
    .description('two cores on 127.0.0.1 complete a handshake and exchange pings through the tunnel')
    .option('-c, --count <n>', 'pings to send', '3')
    .action(async (opts: { count: string }) => {
      const ok = await demo(Math.max(1, Math.min(100, Number(opts.count) || 3)), (l) => console.log(l));
      if (!ok) throw new UserError('weft: the demo did not get every reply back');
    });

  registerPeopleCommands(program);
  registerSiteCommands(program);
  registerMulticastCommands(program);
  registerGatewayCommands(program);
  return program;
}

/** What to type next, for errors the CLI can suggest a command for (the API's messages name no commands). */
const HINTS: Partial<Record<ErrorCode, string>> = {
  WEFT_ERR_GROUP_NOT_FOUND: 'the groups are in `weft group list`; add one with `weft group add NAME`',
  WEFT_ERR_NOT_INITIALIZED: 'create the store with `weft server init`',
};

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv, { from: 'user' });
    return 0;
  } catch (caught) {
    // Damage that opening the store did not reveal, met by a later read.
    const e = isDamageError(caught) ? damagedStoreError(undefined, caught.message) : caught;
    if (e instanceof CommanderError) return e.exitCode;
    if (e instanceof WeftError) {
      const hint = HINTS[e.code];
      process.stderr.write(`weft: ${e.message} [${e.code}]\n${hint ? `hint: ${hint}\n` : ''}`);
      return 1;
    }
    if (e instanceof UserError) {
      process.stderr.write(`${e.message}\n`);
      return e.exitCode;
    }
    // The shared PostgreSQL store did not answer: nothing was changed (its message hides any password).
    if (e instanceof Error && e.name === 'StoreUnavailable') {
      process.stderr.write(`weft: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

process.exitCode = await main(process.argv.slice(2));
