/**
 * The failover state machine (failover.ts) on a running gateway: the lease from the shared PostgreSQL store,
 * the address on the interface through `ip` and its announcement by gratuitous ARP (io/arp.ts) or unsolicited
 * Neighbour Advertisements for an IPv6 address (io/ndp.ts) — all three kept by a thread of their own
 * (address-keeper.ts), so that a lease lost while this thread waits for the store still takes the address off
 * the interface at once — and the handshakes through the gateway's WireGuard device.
 */
import { hostname } from 'node:os';
import type { Store } from '../control/store.js';
import { PublicKey } from '../crypto/keys.js';
import { hardwareAddress } from '../io/arp.js';
import { linkExists } from '../io/linux-net.js';
import { parseEndpoint } from '../net/endpoint.js';
import { formatAddress } from '../net/ip.js';
import type { Device } from '../wireguard/device.js';
import type { Action } from '../wireguard/device.js';
import { REJECT_AFTER_TIME } from '../wireguard/constants.js';
import { UserError } from '../control/errors.js';
import { AddressKeeper } from './address-keeper.js';
import { Failover, type FailoverActions, type SharedAddress } from './failover.js';

/** Connecting the lease's session gives up after this long (the try is repeated). */
const CONNECT_TIMEOUT_MS = 5000;
/** A member is reached at a takeover when its last handshake is at most this old (its session may be live). */
const REACH_WINDOW_MS = REJECT_AFTER_TIME + 10_000;

export interface FailoverHost {
  readonly store: Store;
  /** The store's URL (the lease takes a connection of its own). */
  readonly storeUrl: string;
  /** Who holds the lease, as `weft gateway list` shows it (the joined name, else the host name). */
  readonly holder: string | undefined;
  readonly device: Device;
  readonly perform: (actions: Action[]) => void;
  readonly now: () => number;
  readonly log: (line: string) => void;
}

/** The handshakes of a takeover: members whose status the store has, with an endpoint and a recent handshake. */
export function reachOut(shared: SharedAddress, host: FailoverHost, wallNow = Date.now()): number {
  const keys = new Map<string, string>();
  for (const m of host.store.allMembers()) keys.set(m.name, m.publicKey);
  const local = formatAddress(shared.address);
  let reached = 0;
  for (const s of host.store.allStatuses()) {
    if (s.endpoint === null || s.lastHandshake === null) continue;
    if (s.protocol !== null && s.protocol !== 'wireguard') continue;
    if (wallNow - Date.parse(s.lastHandshake) > REACH_WINDOW_MS) continue;
    const text = keys.get(s.name);
    const key = text === undefined ? undefined : PublicKey.parse(text);
    const endpoint = parseEndpoint(s.endpoint);
    if (!key?.ok || !endpoint.ok || !host.device.hasPeer(key.key)) continue;
    // From the shared address: the member's WireGuard keeps dialling the address it was given.
    host.device.setPeer({ publicKey: key.key, endpoint: { ...endpoint.value, local } });
    host.perform(host.device.initiateHandshake(key.key, host.now()));
    reached++;
  }
  return reached;
}

/** Starts the shared address's failover on a running gateway (after its members are installed). */
export async function startFailover(shared: SharedAddress, host: FailoverHost): Promise<Failover> {
  if (!(await linkExists(shared.interfaceName)))
    throw new UserError(`weft: --shared-interface: there is no interface ${shared.interfaceName}`);
  const dev = shared.interfaceName;
  // Looked up once: a takeover announces without waiting for `ip`.
  const mac = await hardwareAddress(dev);
  const keeper = new AddressKeeper({
    url: host.storeUrl,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    leaseName: shared.leaseName,
    holder: host.holder ?? hostname(),
    cidr: shared.cidr,
    dev,
    family: shared.address.family,
    address: [...shared.address.bytes],
    mac: mac === undefined ? undefined : [...mac],
  });
  const actions: FailoverActions = {
    ...keeper.steps,
    reachOut: () => reachOut(shared, host),
    standDown: () => {
      for (const p of host.device.peerStatuses(host.now()))
        if (p.endpoint !== undefined) host.device.setPeer({ publicKey: p.publicKey, endpoint: null });
    },
  };
  const failover = new Failover(shared, keeper.take, actions, {
    log: host.log,
    onStopped: () => keeper.close(),
  });
  try {
    await failover.start();
  } catch (e) {
    await keeper.close();
    throw new UserError(
      `weft: --shared-address: cannot clear ${shared.cidr} from ${dev} at start: ${(e as Error).message}`,
    );
  }
  return failover;
}
