/**
 * What the route modules (routes-*.ts) are given: where to declare their endpoints, the control plane they
 * call, the console's sessions and the throttles, and, when the gateway runs in this process, its live
 * figures.
 */
import type { GatewayMetrics } from './metrics.js';
import type { MulticastSnapshot } from '../gateway/multicast.js';
import type { ControlPlane } from '../control/control-plane.js';
import type { RouteRegistry } from './route.js';
import type { SessionTable } from './sessions.js';
import type { FailureThrottle } from './throttle.js';

/** The store as the running gateway sees it. */
export interface LiveStore {
  readonly kind: 'sqlite' | 'postgres';
  /** The SQLite file, or the PostgreSQL URL without its password. */
  readonly location: string;
  /** 'standalone' (SQLite: one gateway) or 'shared' (one of the gateways on a PostgreSQL store). */
  readonly role: 'standalone' | 'shared';
  /** False while the gateway knows the store to be unreachable (it forwards with the state it has). */
  readonly reachable: boolean;
  /** The change-feed revision the gateway has applied. */
  readonly revision: number;
  /** Seconds since the gateway last reached the head of the change feed. */
  readonly lagSeconds: number;
}

/** The peering mesh between gateways, as this gateway sees it (src/server/mesh.ts). */
export interface LiveMesh {
  readonly name: string;
  readonly port: number;
  readonly publicKey: string;
  readonly peers: readonly {
    readonly name: string;
    readonly publicKey: string;
    readonly endpoint: string | null;
    readonly lastHandshake: string | null;
    readonly rxBytes: number;
    readonly txBytes: number;
    readonly routes: number;
    readonly delivered: number;
  }[];
}

/** The gateway's role for a member-facing address it shares with other gateways (failover). */
export interface LiveFailover {
  /** ADDR/BITS. */
  readonly address: string;
  readonly interfaceName: string;
  /** 'holder': the address is on this gateway; 'standby': another gateway holds it (or none can yet). */
  readonly role: 'holder' | 'standby' | 'stopped';
  /** When the gateway took that role (ISO 8601). */
  readonly since: string;
  /** Takeovers since the gateway started. */
  readonly takeovers: number;
}

/** Live figures of the gateway running in this process, for GET /status. */
export interface LiveStatus {
  /** Undefined while the gateway is not running. */
  gateway():
    | {
        interfaceName: string;
        listenPort: number;
        publicKey: string;
        membersOnline: number;
        rxBytes: number;
        txBytes: number;
        startedAt: string;
        store?: LiveStore;
        mesh?: LiveMesh;
        failover?: LiveFailover;
      }
    | undefined;
  /** Per-member figures and drop counters for /metrics; undefined while the gateway is not running. */
  metrics?(): GatewayMetrics | undefined;
  /** The multicast replicator's state (GET /multicast); absent when multicast is off. */
  multicast?(): MulticastSnapshot;
}

/** The console's sessions and the throttles of failed credentials (server.ts makes them). */
export interface AuthContext {
  readonly sessions: SessionTable;
  /** Failed logins (and wrong passwords or TOTP codes given to a session) by client, loopback included. */
  readonly loginThrottle: FailureThrottle | null;
  /** The API's throttle of refused credentials (loopback exempt); failed download links count toward it. */
  readonly throttle: FailureThrottle | null;
  /** Milliseconds, for the throttles. */
  readonly now: () => number;
}

export interface ApiContext {
  readonly routes: RouteRegistry;
  readonly controlPlane: ControlPlane;
  readonly live?: LiveStatus;
  readonly auth: AuthContext;
}
