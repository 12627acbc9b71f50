/**
 * The gateways of a network as the CLI (`weft gateway list`) and the API (GET /gateways) show them: each
 * registered gateway (a shared PostgreSQL store only; none on SQLite) with its state and the members online on
 * it.
 *
 * Which gateway holds a member comes from the member's status row, when the row says so (a `gateway` field,
 * written by the gateway that reports it). Rows that do not say are counted in `membersOnlineUnassigned`, so
 * what is shown never claims more than the store knows.
 */
import { WeftError, invalid } from './errors.js';
import type { MemberStatus } from './model.js';
import type { Store } from './store.js';
import type { GatewayRecord } from './store-postgres.js';
import type { SyncPostgresStore } from './store-postgres-sync.js';

/** The lease of a failover pair's shared member-facing address is named this prefix, then the address. */
export const SHARED_ADDRESS_LEASE_PREFIX = 'shared-address/';

/** A gateway the database has not heard from for this long is shown as silent (heartbeats every few s). */
export const SILENT_AFTER_MS = 15_000;

export interface GatewayView {
  readonly name: string;
  readonly endpoint: string;
  readonly region: string;
  readonly publicKey: string;
  readonly registeredAt: string;
  /** ISO 8601, by the database's clock. */
  readonly lastSeen: string;
  /** Milliseconds since lastSeen, by the database's clock. */
  readonly silentMs: number;
  readonly state: 'up' | 'silent';
  /** Its mesh UDP port (null: registered before the mesh) and its mesh peers as it last reported them. */
  readonly meshPort: GatewayRecord['meshPort'];
  readonly mesh: GatewayRecord['mesh'];
  /** The shared member-facing addresses it holds now (failover: the holders of the leases, from PostgreSQL). */
  readonly holds: string[];
  /** Members whose status says they are online on this gateway; null when no status names its gateway. */
  readonly membersOnline: number | null;
}

export interface GatewayOverview {
  readonly gateways: GatewayView[];
  /** Members online by any gateway's report. */
  readonly membersOnline: number;
  /** Of those, members whose status does not name the gateway holding them. */
  readonly membersOnlineUnassigned: number;
}

/**
 * Whether the store is the shared PostgreSQL one (the test of isSyncPostgresStore, written out here: importing
 * that module would load the PostgreSQL client into every process that serves the API, SQLite ones included).
 */
function isShared(store: Store): store is SyncPostgresStore {
  return (store as Partial<SyncPostgresStore>).kind === 'postgres';
}

/** The gateway named in a status row, if the row carries one. */
function statusGateway(s: MemberStatus): string | undefined {
  return s.gateway === undefined || s.gateway === null || s.gateway === '' ? undefined : s.gateway;
}

/** Every registered gateway with its state and members online; empty on a store that is not shared. */
export function gatewayOverview(store: Store): GatewayOverview {
  if (!isShared(store)) return { gateways: [], membersOnline: 0, membersOnlineUnassigned: 0 };
  const records = store.listGateways();
  // Which gateway holds each shared address: PostgreSQL's lock table says (src/server/failover.ts).
  const held = new Map<string, string[]>();
  for (const l of store.leaseHolders()) {
    if (!l.name.startsWith(SHARED_ADDRESS_LEASE_PREFIX)) continue;
    const addresses = held.get(l.holder) ?? [];
    addresses.push(l.name.slice(SHARED_ADDRESS_LEASE_PREFIX.length));
    held.set(l.holder, addresses);
  }
  const online = store.allStatuses().filter((s) => s.online);
  const perGateway = new Map<string, number>();
  let unassigned = 0;
  for (const s of online) {
    const g = statusGateway(s);
    if (g === undefined) unassigned++;
    else perGateway.set(g, (perGateway.get(g) ?? 0) + 1);
  }
  // Per gateway only when the statuses name gateways (or nobody is online: then 0 everywhere is known).
  const known = unassigned < online.length || online.length === 0;
  return {
    gateways: records.map((g) => ({
      name: g.name,
      endpoint: g.endpoint,
      region: g.region,
      publicKey: g.publicKey,
      registeredAt: g.registeredAt,
      lastSeen: g.lastSeen,
      silentMs: g.silentMs,
      state: g.silentMs < SILENT_AFTER_MS ? 'up' : 'silent',
      meshPort: g.meshPort,
      mesh: g.mesh,
      holds: held.get(g.name) ?? [],
      membersOnline: known ? (perGateway.get(g.name) ?? 0) : null,
    })),
    membersOnline: online.length,
    membersOnlineUnassigned: unassigned,
  };
}

/** The registered gateways' names (none on a store that is not shared). */
export function gatewayNames(store: Store): Set<string> {
  return new Set(isShared(store) ? store.listGateways().map((g) => g.name) : []);
}

/**
 * The owner of a shared route or a site as given (`gateway`): undefined when absent or empty (every gateway
 * serves it); else the name of a registered gateway, or a validation error naming the field.
 */
export function ownerGateway(store: Store, field: string, value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw invalid(field, 'must be the name of a registered gateway');
  // On a shared store (called inside the change's transaction): the gateway's row stays locked until the change
  // commits, so a concurrent `gateway remove` waits for it and then finds what it serves (removeGateway).
  if (isShared(store) ? !store.lockGateway(value, 'share') : !gatewayNames(store).has(value))
    throw invalid(
      field,
      isShared(store)
        ? `no gateway named "${value}" is registered (weft gateway list)`
        : `no gateway named "${value}": only a shared PostgreSQL store has gateways`,
    );
  return value;
}

/**
 * Removes a gateway's registration (`weft gateway remove`, DELETE /gateways/{name}); the others drop it from
 * their meshes as the change feed brings the removal. Refused while shared routes or sites name it as the gateway serving them
 * (their prefixes would be routed to nobody), naming them. The removal and its audit entry (`gateway.remove`,
 * by `actor`) are one transaction, which first locks the gateway's row for its removal: a route or site being
 * given this gateway at the same moment (ownerGateway, which locks the row for sharing) either commits first,
 * and is then found here, or waits, and then finds no gateway.
 */
export function removeGateway(store: Store, actor: string, name: string, now: Date = new Date()): void {
  const notFound = (): WeftError =>
    new WeftError('WEFT_ERR_GATEWAY_NOT_FOUND', `no gateway named "${name}" is registered`, 'name');
  if (!isShared(store)) throw notFound();
  const shared = store;
  shared.transaction(() => {
    if (!shared.lockGateway(name, 'update')) throw notFound();
    const owned = [
      ...store
        .listRoutes()
        .filter((r) => r.gateway === name)
        .map((r) => `route ${r.cidr}`),
      ...store
        .listSites()
        .filter((s) => s.gateway === name)
        .map((s) => `site ${s.name}`),
    ];
    if (owned.length > 0)
      throw new WeftError(
        'WEFT_ERR_GATEWAY_IN_USE',
        `gateway ${name} serves ${owned.join(', ')}; give them another gateway (or none) first`,
        'name',
      );
    if (!store.removeGateway(name)) throw notFound();
    store.appendAudit({ at: now.toISOString(), actor, action: 'gateway.remove', target: name, detail: {} });
  });
}
