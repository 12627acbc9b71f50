/**
 * Failover of a member-facing address shared by two or more gateways on one PostgreSQL store
 * (`weft server run --shared-address ADDR/BITS --shared-interface IF`, docs/scale-out.md).
 *
 * Every gateway of the pair shares the members' WireGuard key pair (the store's), so whichever holds the address
 * can serve any member. Which one holds it is decided by PostgreSQL alone: a lease named after the address
 * (pg-lease.ts, a session-level advisory lock), never by anything the gateways agree among themselves.
 *
 *   1. Start: the address is removed from the interface if it is there (left by a holder that crashed:
 *      PostgreSQL has freed its lease, so another gateway may hold the address now); the gateway is standby.
 *   2. Standby: it tries to take the lease every `retryMs` (400 ms); a store it cannot reach is logged once
 *      per outage and tried again at the same pace.
 *   3. Taken: it adds the address to the interface (IPv6: without duplicate address detection, which would
 *      hold it back a second and fail while the old holder's kernel still has it), announces it (gratuitous
 *      ARP, or unsolicited Neighbour Advertisements for IPv6; again after `reannounceMs`), then at once starts a WireGuard handshake with every member whose last endpoint the
 *      store knows (`reachOut`; after the announcement, so that the members' answers come here): a member's WireGuard roams to the source of an authenticated handshake, and
 *      would otherwise wait for its own retry (REKEY_TIMEOUT + KEEPALIVE_TIMEOUT = 15 s, paper §6.4). An
 *      address that cannot be added gives the lease back (another gateway may manage), and the next try
 *      waits `failedBackoffMs`.
 *   4. Lost (the lease's connection failed or went silent, pg-lease.ts): on a running gateway the thread that
 *      keeps the lease has removed the address already (address-keeper.ts: it does not wait for this thread,
 *      which may be waiting for the store); here the gateway forgets its members' endpoints (so nothing it
 *      sends from its own address makes a member roam back to it), removes the address again (a no-op then)
 *      and is standby again (step 2). While standby it starts no handshake
 *      (`isHolder`).
 *   5. Stop: the address is removed, then the lease released, so the next holder never finds it still here.
 * Steps that touch the interface run one at a time, in order (a loss during a takeover removes the address
 * after it was added). The state machine takes its lease, its actions and its clock from outside: the unit
 * tests drive it with fakes.
 */
import { UserError } from '../control/errors.js';
import { interfaceName } from '../control/validate.js';
import { formatAddress, parseAddress, type Address } from '../net/ip.js';
import { SHARED_ADDRESS_LEASE_PREFIX } from '../control/gateways.js';

/** How often a standby gateway tries to take the lease. */
export const RETRY_MS = 400;
/** The second announcement after a takeover (a neighbour that missed the first). */
export const REANNOUNCE_MS = 1000;
/** After an address could not be added: the next try waits this long. */
export const FAILED_BACKOFF_MS = 5000;
/** Lease names: this prefix, then the address. */
export const LEASE_PREFIX = SHARED_ADDRESS_LEASE_PREFIX;

/** The address the pair shares and the interface that carries it. */
export interface SharedAddress {
  readonly address: Address;
  readonly bits: number;
  /** ADDR/BITS as `ip addr` takes it. */
  readonly cidr: string;
  readonly interfaceName: string;
  /** The lease named after the address. */
  readonly leaseName: string;
}

/**
 * Checks `--shared-address` and `--shared-interface` (both or neither): an IPv4 or IPv6 host address with its
 * prefix length, and an interface name. Errors name the option.
 */
export function sharedAddressOption(
  address: string | undefined,
  iface: string | undefined,
): SharedAddress | undefined {
  if (address === undefined && iface === undefined) return undefined;
  if (address === undefined || iface === undefined)
    throw new UserError(
      `weft: --shared-address and --shared-interface go together (got only ${address === undefined ? '--shared-interface' : '--shared-address'})`,
    );
  const m = /^([^/\s]+)\/(\d{1,3})$/.exec(address.trim());
  const parsed = m ? parseAddress(m[1]!) : undefined;
  const bits = m ? Number(m[2]) : NaN;
  if (!parsed?.ok || !(bits >= 1 && bits <= (parsed.value.family === 4 ? 32 : 128)))
    throw new UserError(
      `weft: --shared-address must be an IPv4 or IPv6 address with its prefix length, e.g. 192.0.2.10/24 ` +
        `or 2001:db8::10/64 (got ${JSON.stringify(address)})`,
    );
  const a = parsed.value;
  if (a.family === 6) {
    const b = a.bytes;
    // Unspecified, loopback, multicast (ff00::/8), link-local (fe80::/10: every link has its own), IPv4-mapped.
    const zeroTo = (n: number): boolean => b.subarray(0, n).every((x) => x === 0);
    if (
      (zeroTo(15) && b[15]! <= 1) ||
      b[0] === 0xff ||
      (b[0] === 0xfe && (b[1]! & 0xc0) === 0x80) ||
      (zeroTo(10) && b[10] === 0xff && b[11] === 0xff)
    )
      throw new UserError(`weft: --shared-address ${address} is not a unicast address a LAN can reach`);
  } else if (bits < 31) {
    const host =
      (((a.bytes[0]! << 24) | (a.bytes[1]! << 16) | (a.bytes[2]! << 8) | a.bytes[3]!) >>> 0) %
      2 ** (32 - bits);
    if (host === 0 || host === 2 ** (32 - bits) - 1)
      throw new UserError(
        `weft: --shared-address ${address} is the network or broadcast address of its prefix; give a host address`,
      );
  }
  if (a.family === 4 && (a.bytes[0] === 127 || a.bytes[0]! >= 224 || a.bytes[0] === 0))
    throw new UserError(`weft: --shared-address ${address} is not a unicast address a LAN can reach`);
  let name: string;
  try {
    name = interfaceName('--shared-interface', iface);
  } catch (e) {
    throw new UserError(`weft: ${(e as Error).message}`);
  }
  const text = formatAddress(a);
  return { address: a, bits, cidr: `${text}/${bits}`, interfaceName: name, leaseName: LEASE_PREFIX + text };
}

/** What the state machine needs of a lease (pg-lease.ts's Lease). */
export interface HeldLease {
  onLost(callback: (reason: Error) => void): void;
  release(): Promise<void>;
}

/** Tries to take the lease: the lease, or null when another live session holds it; rejects when unreachable. */
export type TakeLease = () => Promise<HeldLease | null>;

/** What holding the address means on this machine. */
export interface FailoverActions {
  /** Adds the address to the interface (present already: not an error). */
  addAddress(): Promise<void>;
  /** Removes it (absent: not an error). */
  removeAddress(): Promise<void>;
  /** Announces it on the link (gratuitous ARP; unsolicited Neighbour Advertisements for IPv6). */
  announce(): Promise<void>;
  /** Starts handshakes with the members whose last endpoints the store knows; how many. */
  reachOut(): number;
  /**
   * Forgets where the members are, so the gateway sends them nothing from another address (a reply routed
   * into the tunnel, a rekey) that would make their WireGuard roam back to it.
   */
  standDown(): void;
}

export interface FailoverClock {
  now(): number;
  /** Runs `fn` after `ms`; the returned function cancels it. */
  after(ms: number, fn: () => void): () => void;
}

export const realClock: FailoverClock = {
  now: () => Date.now(),
  after: (ms, fn) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
};

export type FailoverRole = 'standby' | 'holder' | 'stopped';

export interface FailoverStatus {
  readonly address: string;
  readonly interfaceName: string;
  readonly role: FailoverRole;
  /** When the gateway took this role (ISO 8601). */
  readonly since: string;
  /** Takeovers since the gateway started. */
  readonly takeovers: number;
}

export interface FailoverOptions {
  readonly retryMs?: number;
  readonly reannounceMs?: number;
  readonly failedBackoffMs?: number;
  readonly log?: (line: string) => void;
  readonly clock?: FailoverClock;
  /** Runs once at the end of `stop()` (the address removed, the lease released). */
  readonly onStopped?: () => Promise<void>;
}

export class Failover {
  readonly counters = { attempts: 0, takeovers: 0, losses: 0, unreachable: 0 };
  #role: FailoverRole = 'standby';
  #since: number;
  #lease: HeldLease | undefined;
  #cancel: (() => void) | undefined;
  #stopped = false;
  #trying = false;
  /** Interface steps, one at a time and in order. */
  #steps: Promise<void> = Promise.resolve();
  #unreachableSince: number | undefined;
  readonly #retryMs: number;
  readonly #reannounceMs: number;
  readonly #failedBackoffMs: number;
  readonly #log: (line: string) => void;
  readonly #clock: FailoverClock;
  readonly #onStopped: (() => Promise<void>) | undefined;

  constructor(
    readonly shared: SharedAddress,
    private readonly take: TakeLease,
    private readonly actions: FailoverActions,
    options: FailoverOptions = {},
  ) {
    this.#retryMs = options.retryMs ?? RETRY_MS;
    this.#reannounceMs = options.reannounceMs ?? REANNOUNCE_MS;
    this.#failedBackoffMs = options.failedBackoffMs ?? FAILED_BACKOFF_MS;
    this.#log = options.log ?? (() => {});
    this.#clock = options.clock ?? realClock;
    this.#onStopped = options.onStopped;
    this.#since = this.#clock.now();
  }

  get role(): FailoverRole {
    return this.#role;
  }

  /** Whether this gateway holds the address now (only the holder reaches out to members). */
  get isHolder(): boolean {
    return this.#role === 'holder';
  }

  status(): FailoverStatus {
    return {
      address: this.shared.cidr,
      interfaceName: this.shared.interfaceName,
      role: this.#role,
      since: new Date(this.#since).toISOString(),
      takeovers: this.counters.takeovers,
    };
  }

  /** Step 1, then the first try (resolves once the leftover address is gone; the try goes on after). */
  async start(): Promise<void> {
    await this.#step(() => this.actions.removeAddress());
    this.#log(`failover: standby for ${this.shared.cidr} on ${this.shared.interfaceName}`);
    this.#try();
  }

  /** Step 5. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#cancel?.();
    this.#cancel = undefined;
    const lease = this.#lease;
    this.#lease = undefined;
    const wasHolder = this.#role === 'holder';
    this.#setRole('stopped');
    if (wasHolder) this.#standDown();
    await this.#step(() => this.actions.removeAddress());
    if (lease) await lease.release().catch(() => undefined);
    if (wasHolder) this.#log(`failover: released ${this.shared.cidr}`);
    await this.#waitIdle();
    await this.#onStopped?.().catch(() => undefined);
  }

  #setRole(role: FailoverRole): void {
    if (role === this.#role) return;
    this.#role = role;
    this.#since = this.#clock.now();
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#cancel?.();
    this.#cancel = this.#clock.after(ms, () => {
      this.#cancel = undefined;
      this.#try();
    });
  }

  /** Steps 2 and 3. */
  #try(): void {
    if (this.#stopped || this.#lease !== undefined || this.#trying) return;
    this.#trying = true;
    this.counters.attempts++;
    const startedAt = this.#clock.now();
    this.take().then(
      (lease) => {
        this.#trying = false;
        if (this.#unreachableSince !== undefined) {
          this.#log(`failover: the store answers again; trying the lease of ${this.shared.cidr}`);
          this.#unreachableSince = undefined;
        }
        if (lease === null) {
          this.#schedule(this.#retryMs);
          return;
        }
        if (this.#stopped) {
          void lease.release().catch(() => undefined);
          return;
        }
        this.#acquired(lease, startedAt);
      },
      (err: unknown) => {
        this.#trying = false;
        this.counters.unreachable++;
        if (this.#unreachableSince === undefined) {
          this.#unreachableSince = this.#clock.now();
          this.#log(
            `failover: cannot reach the store to take the lease of ${this.shared.cidr} ` +
              `(${(err as Error).message}); retrying`,
          );
        }
        this.#schedule(this.#retryMs);
      },
    );
  }

  #acquired(lease: HeldLease, startedAt: number): void {
    this.#lease = lease;
    this.counters.takeovers++;
    this.#setRole('holder');
    lease.onLost((reason) => this.#lost(lease, reason));
    void this.#step(async () => {
      if (this.#lease !== lease) return; // lost or stopped before its turn came
      try {
        await this.actions.addAddress();
      } catch (e) {
        this.#log(
          `failover: cannot add ${this.shared.cidr} to ${this.shared.interfaceName} ` +
            `(${(e as Error).message}); giving the lease back`,
        );
        this.#lease = undefined;
        this.#setRole('standby');
        this.#standDown();
        await this.actions.removeAddress().catch(() => undefined);
        await lease.release().catch(() => undefined);
        this.#schedule(this.#failedBackoffMs);
        return;
      }
      // The announcement first: a member answers a handshake at once, and its answer must come here, not go to
      // the old holder's hardware address (a lost answer costs the member REKEY_TIMEOUT, 5 s).
      await this.#announce();
      let reached = 0;
      try {
        reached = this.actions.reachOut();
      } catch (e) {
        this.#log(`failover: reaching out to members: ${(e as Error).message}`);
      }
      this.#log(
        `failover: holder of ${this.shared.cidr} on ${this.shared.interfaceName} ` +
          `(took it in ${this.#clock.now() - startedAt} ms; handshakes started with ${reached} member(s))`,
      );
      this.#clock.after(this.#reannounceMs, () => {
        if (this.#lease === lease) void this.#step(() => this.#announce());
      });
    });
  }

  async #announce(): Promise<void> {
    try {
      await this.actions.announce();
    } catch (e) {
      this.#log(`failover: announcing ${this.shared.cidr}: ${(e as Error).message}`);
    }
  }

  #standDown(): void {
    try {
      this.actions.standDown();
    } catch (e) {
      this.#log(`failover: standing down: ${(e as Error).message}`);
    }
  }

  /** Step 4. */
  #lost(lease: HeldLease, reason: Error): void {
    if (this.#lease !== lease) return;
    this.#lease = undefined;
    this.counters.losses++;
    this.#setRole('standby');
    this.#log(`failover: lost the lease of ${this.shared.cidr} (${reason.message}); removing the address`);
    this.#standDown();
    void this.#step(async () => {
      try {
        await this.actions.removeAddress();
      } catch (e) {
        this.#log(`failover: cannot remove ${this.shared.cidr}: ${(e as Error).message}`);
      }
    }).then(() => this.#schedule(this.#retryMs));
  }

  #step(fn: () => Promise<void>): Promise<void> {
    const next = this.#steps.then(fn, fn);
    this.#steps = next.catch(() => undefined);
    return next;
  }

  async #waitIdle(): Promise<void> {
    await this.#steps;
  }
}
