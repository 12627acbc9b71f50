/**
 * What the failover's main thread (address-keeper.ts) and the thread that holds the lease and the shared
 * address (address-keeper-worker.ts) say to each other.
 */

export interface KeeperSetup {
  /** The store's URL (the lease takes a connection of its own). */
  readonly url: string;
  readonly connectTimeoutMs: number;
  readonly leaseName: string;
  /** Who holds it, as `weft gateway list` shows it. */
  readonly holder: string;
  /** ADDR/BITS as `ip addr` takes it, and the interface. */
  readonly cidr: string;
  readonly dev: string;
  readonly family: 4 | 6;
  /** The address's bytes (4 or 16). */
  readonly address: readonly number[];
  /** The interface's hardware address (undefined: none, nothing to announce). */
  readonly mac: readonly number[] | undefined;
}

export type KeeperRequest =
  | { readonly id: number; readonly op: 'try' }
  | { readonly id: number; readonly op: 'add' }
  | { readonly id: number; readonly op: 'remove' }
  | { readonly id: number; readonly op: 'announce' }
  | { readonly id: number; readonly op: 'release' };

export type KeeperAnswer =
  | { readonly kind: 'answer'; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly kind: 'answer'; readonly id: number; readonly ok: false; readonly message: string }
  | {
      readonly kind: 'lost';
      readonly reason: string;
      /** When the worker heard of the loss, and when it had removed the address (ms since the epoch). */
      readonly at: number;
      readonly removedAt: number;
      /** Set when the address could not be removed. */
      readonly removeError: string | undefined;
    };
