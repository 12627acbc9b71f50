/**
 * What the IKE core asks its shell to do. The core never touches a socket or a clock: every call takes `now`
 * (milliseconds) and returns a list of these; `nextDeadline()` says when to call `tick` again.
 */
import type { ChildSaSpec } from './child-sa.js';
import type { IkeDropReason } from './drops.js';
import type { UdpEndpoint } from './nat.js';

/** Why an exchange failed, stable for logs and tests; `message` says it in words (both proposal lists, IDs). */
export type IkeFailure =
  | 'no-proposal-chosen'
  | 'invalid-ke'
  | 'authentication-failed'
  | 'child-no-proposal-chosen'
  | 'ts-unacceptable'
  | 'peer-unreachable'
  | 'peer-error'
  | 'bad-response';

export type IkeAction =
  /**
   * Send `data` exactly as given from our UDP port `localPort` to `remote`. On port 4500 `data` already starts
   * with the non-ESP marker (`nonEspMarker`), or is the one-byte NAT keepalive.
   */
  | {
      readonly type: 'send';
      readonly data: Buffer;
      readonly remote: UdpEndpoint;
      readonly localPort: number;
      readonly nonEspMarker: boolean;
    }
  | { readonly type: 'drop'; readonly reason: IkeDropReason; readonly remote: UdpEndpoint }
  | {
      readonly type: 'ike-sa-up';
      readonly spiI: string;
      readonly spiR: string;
      readonly proposal: string;
      readonly peerId: string;
      /** Whether UDP encapsulation is in use, and whether we are the side behind a NAT (we send keepalives). */
      readonly encapsulated: boolean;
      readonly behindNat: boolean;
      /**
       * Set when this IKE SA replaces another by a rekey (RFC 7296 §2.18): the CHILD SAs of the old one now
       * belong to this one (they are not reported down and up again); `ike-sa-down` with reason 'rekeyed'
       * follows for the old one once its delete completes.
       */
      readonly rekeyOf?: { readonly spiI: string; readonly spiR: string };
    }
  | { readonly type: 'ike-sa-down'; readonly spiI: string; readonly spiR: string; readonly reason: string }
  | {
      readonly type: 'child-sa-up';
      readonly spec: ChildSaSpec;
      readonly proposal: string;
      /** UDP encapsulation of ESP (RFC 3948): the ports, or null for raw ESP (protocol 50). */
      readonly encapsulation: { readonly localPort: number; readonly remote: UdpEndpoint } | null;
      /**
       * Set when this CHILD SA replaces another by a rekey (RFC 7296 §1.3.3): send on the new SA from now
       * on, keep taking packets on the old one until its `child-sa-down` (reason 'rekeyed'). After a rekey
       * collision (§2.8.1) two new SAs may name the same old one for a moment; the redundant one is reported
       * down with reason 'rekeyed' as well.
       */
      readonly rekeyOf?: { readonly inboundSpi: number; readonly outboundSpi: number };
      /**
       * Set when we answered the rekey: the peer installs the new SA only once our response reaches it, so keep
       * sending on the old SA until a packet arrives on the new one or the old one goes (strongSwan does the
       * same as a responder).
       */
      readonly outboundLater?: true;
    }
  | {
      readonly type: 'child-sa-down';
      readonly inboundSpi: number;
      readonly outboundSpi: number;
      readonly reason: string;
    }
  | { readonly type: 'failed'; readonly failure: IkeFailure; readonly message: string };
