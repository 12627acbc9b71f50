/**
 * What the route modules (routes-*.ts) are given: where to declare their endpoints, the control plane they
 * call, and, when the gateway runs in this process, its live figures.
 */
import type { ControlPlane } from '../control/control-plane.js';
import type { RouteRegistry } from './route.js';

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
}

export interface ApiContext {
  readonly routes: RouteRegistry;
  readonly controlPlane: ControlPlane;
  readonly live?: LiveStatus;
}
