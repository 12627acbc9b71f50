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
