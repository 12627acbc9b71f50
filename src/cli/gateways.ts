/**
 * `weft gateway join` and `weft gateway list`: the gateways of a network on a shared PostgreSQL store.
 *
 * join (on a new machine): checks the store holds a network, makes this gateway's own key pair (DATA/gateway-key,
 * 0600; for the peering between gateways, not the members' key pair, which the gateways share), registers the
 * gateway (name, endpoint, public key, region, mesh UDP port) in the store, records the store in DATA/store-url and the name in
 * DATA/gateway-name. `server run` then heartbeats the registration every few seconds.
 * list: every registered gateway with when the database last heard from it, its mesh port, its mesh peers with
 * their last handshakes as it last reported them (src/server/mesh.ts), the members online on it (from the
 * member statuses; those whose status does not name a gateway are counted on a line of their own), and the
 * shared addresses it holds (`server run --shared-address`: the holder of each lease, from PostgreSQL's lock table).
 * remove NAME: deletes the gateway's registration (refused while shared routes or sites name it as the gateway
 * serving them); the other gateways drop it from their meshes within a second. Its own data directory is left
 * as it is (a `server run` there keeps serving its members, without the mesh, until it is stopped).
 */
import { existsSync, readFileSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { UserError } from '../control/errors.js';
import { endpoint } from '../control/validate.js';
import { meshPort } from '../control/gateway-registration.js';
import { redactUrl, StoreUnavailable } from '../control/store-postgres.js';
import { gatewayOverview, removeGateway, type GatewayView } from '../control/gateways.js';
import { openPostgresStoreSync, type SyncPostgresStore } from '../control/store-postgres-sync.js';
import { PrivateKey } from '../crypto/keys.js';
import {
  DEFAULT_DATA_DIR,
  GATEWAY_NAME_FILE,
  postgresUrlOption,
  recordStoreUrl,
  storeLocation,
} from '../server/data-dir.js';
import { STORE_ENV } from '../control/store-open.js';
import { actor, print, table } from './people.js';

const GATEWAY_KEY_FILE = 'gateway-key';

interface GatewayOptions {
  data?: string;
}

type JoinOptions = GatewayOptions & {
  name: string;
  endpoint: string;
  store?: string;
  region: string;
  meshPort?: string;
};

function dataDir(opts: GatewayOptions): string {
  return opts.data ?? process.env['WEFT_DATA'] ?? DEFAULT_DATA_DIR;
}

function gatewayName(value: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(value))
    throw new UserError(
      `weft: --name must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit (got ${JSON.stringify(value)})`,
    );
  return value;
}

function openShared(url: string): SyncPostgresStore {
  try {
    return openPostgresStoreSync(url);
  } catch (err) {
    if (err instanceof StoreUnavailable) throw new UserError(`weft: ${err.message}`);
    throw err;
  }
}

/** This gateway's own key pair, made on first use (DATA/gateway-key, 0600). */
function ownKey(dir: string): PrivateKey {
  const file = join(dir, GATEWAY_KEY_FILE);
  if (existsSync(file)) {
    const parsed = PrivateKey.parse(readFileSync(file, 'utf8').trim());
    if (!parsed.ok) throw new UserError(`weft: ${file} does not hold a private key`);
    return parsed.key;
  }
  const key = PrivateKey.generate();
  writeFileSync(file, `${key.toBase64()}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return key;
}

/** "gw-b 4s ago, gw-c never": the mesh peers as the gateway last reported them. */
export function meshPeers(g: Pick<GatewayView, 'mesh'>, now: number): string {
  if (g.mesh === null) return '-';
  if (g.mesh.peers.length === 0) return 'none';
  return g.mesh.peers
    .map((p) => {
      const at = p.lastHandshake === null ? NaN : Date.parse(p.lastHandshake);
      return `${p.name} ${Number.isNaN(at) ? 'never' : `${Math.max(0, Math.round((now - at) / 1000))}s ago`}`;
    })
    .join(', ');
}

function state(g: GatewayView): string {
  return g.state === 'up' ? 'up' : `silent ${Math.round(g.silentMs / 1000)}s`;
}

export function registerGatewayCommands(program: Command): void {
  const gateway = program
    .command('gateway')
    .description('the gateways sharing one PostgreSQL store (docs/scale-out.md)');
  gateway
    .command('join')
    .description('register this machine as a gateway of the network in a shared store')
    .requiredOption('--name <name>', "this gateway's name (unique in the network)")
    .requiredOption('--endpoint <host[:port]>', 'where members and other gateways reach it')
    .option('--store <url>', `the shared store (postgres://...; default: $${STORE_ENV})`)
    .option('--region <label>', 'a region or site label', '')
    .option(
      '--mesh-port <port>',
      'UDP port of its mesh interface, where the other gateways peer with it (default: listen port + 1)',
    )
    .option('-d, --data <dir>', `data directory (default: $WEFT_DATA or ${DEFAULT_DATA_DIR})`)
    .action((opts: JoinOptions) => {
      const name = gatewayName(opts.name);
      let where: string;
      try {
        where = endpoint('--endpoint', opts.endpoint).text;
      } catch (e) {
        throw new UserError(`weft: ${(e as Error).message}`);
      }
      if (opts.region.length > 64) throw new UserError('weft: --region must be at most 64 characters');
      const env = process.env[STORE_ENV];
      const url =
        opts.store !== undefined
          ? postgresUrlOption('--store', opts.store)
          : env !== undefined && env !== ''
            ? postgresUrlOption(STORE_ENV, env)
            : undefined;
      if (url === undefined) throw new UserError(`weft: gateway join needs --store URL (or $${STORE_ENV})`);
      const dir = dataDir(opts);
      const store = openShared(url);
      try {
        const settings = store.getSettings();
        if (settings === undefined)
          throw new UserError(
            `weft: ${redactUrl(url)} holds no Weft network yet; create it on the first gateway with ` +
              '`weft server init --store URL ...`',
          );
        let mesh: number;
        try {
          mesh = meshPort('--mesh-port', opts.meshPort, settings.listenPort);
        } catch (e) {
          throw new UserError(`weft: ${(e as Error).message}`);
        }
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        chmodSync(dir, 0o700);
        const key = ownKey(dir);
        const record = store.registerGateway({
          name,
          endpoint: where,
          publicKey: key.publicKey().toBase64(),
          region: opts.region,
          meshPort: mesh,
        });
        recordStoreUrl(dir, url);
        writeFileSync(join(dir, GATEWAY_NAME_FILE), `${name}\n`, { mode: 0o600 });
        process.stdout.write(
          `gateway ${record.name} (${record.endpoint}${record.region ? `, ${record.region}` : ''}, mesh UDP ${mesh}) joined ` +
            `${redactUrl(url)}; start it with: weft server run --data ${dir}\n`,
        );
      } finally {
        store.close();
      }
    });
  gateway
    .command('list')
    .description(
      'the registered gateways, when the store last heard from each, and the members online on each',
    )
    .option('--json', 'print JSON')
    .option('-d, --data <dir>', `data directory (default: $WEFT_DATA or ${DEFAULT_DATA_DIR})`)
    .action((opts: GatewayOptions & { json?: boolean }) => {
      const where = storeLocation(dataDir(opts));
      if (where.kind !== 'postgres')
        throw new UserError('weft: gateways are listed on a shared PostgreSQL store; this one is SQLite');
      const store = openShared(where.url);
      try {
        const overview = gatewayOverview(store);
        const list = overview.gateways;
        const now = Date.now();
        print(list, opts.json, () => {
          const rows = table(
            [
              'NAME',
              'ENDPOINT',
              'MESH PORT',
              'REGION',
              'STATE',
              'LAST SEEN',
              'ONLINE',
              'HOLDS',
              'MESH PEERS (LAST HANDSHAKE)',
            ],
            list.map((g) => [
              g.name,
              g.endpoint,
              g.meshPort === null ? '-' : String(g.meshPort),
              g.region,
              state(g),
              g.lastSeen,
              g.membersOnline === null ? '?' : String(g.membersOnline),
              g.holds.length > 0 ? g.holds.join(',') : '-',
              meshPeers(g, now),
            ]),
          );
          const unassigned = overview.membersOnlineUnassigned;
          return unassigned === 0
            ? rows
            : `${rows}\n${unassigned} member(s) online on some gateway; their status does not say which` +
                (list.some((g) => g.membersOnline === null) ? ' (ONLINE ? : not known per gateway)' : '');
        });
      } finally {
        store.close();
      }
    });
  gateway
    .command('remove')
    .argument('<name>', 'the registered gateway')
    .description('removes a gateway from the network; the others drop it from their meshes')
    .option('-d, --data <dir>', `data directory (default: $WEFT_DATA or ${DEFAULT_DATA_DIR})`)
    .action((name: string, opts: GatewayOptions) => {
      const where = storeLocation(dataDir(opts));
      if (where.kind !== 'postgres')
        throw new UserError('weft: gateways are registered on a shared PostgreSQL store; this one is SQLite');
      const store = openShared(where.url);
      try {
        removeGateway(store, actor(), name);
        process.stdout.write(`removed gateway ${name}\n`);
      } finally {
        store.close();
      }
    });
}
