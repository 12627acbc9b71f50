/**
 * One IKE SA, initiator or responder (RFC 7296): IKE_SA_INIT, IKE_AUTH with a pre-shared key and the first
 * CHILD SA, CREATE_CHILD_SA (rekeying CHILD SAs and the IKE SA itself, additional CHILD SAs the peer asks
 * for), INFORMATIONAL (delete, liveness), retransmission and the message-ID window (size 1).
 *
 * As initiator:  init-sent --IKE_SA_INIT resp--> auth-sent --IKE_AUTH resp--> established
 * As responder:  (IKE_SA_INIT req answered) auth-wait --IKE_AUTH req--> established
 * Rekeyed:       established --CREATE_CHILD_SA rekeying this IKE SA done--> rekeyed --delete--> closed
 *                (the new IKE SA is born established, with the CHILD SAs moved to it, §2.18)
 * Any state ----failure, delete, give-up----> closed
 *
 * Our own requests (liveness, deletes, rekeys) wait in a queue while one is in flight (window size 1, §2.3);
 * a rekey refused with TEMPORARY_FAILURE (§2.25) is queued again after a random delay.
 *
 * Requests we send are kept until answered and retransmitted with exponential backoff; the last request we
 * answered is kept with its response, and an identical retransmission of it is answered from that cache
 * (§2.1). Protected messages are checked before anything in them is believed.
 */
import type { ChildSaSpec, EspEncryptionId, EspIntegrityId, TrafficSelector } from './child-sa.js';
import type { IkeAction, IkeFailure } from './actions.js';
import {
  chosenTransforms,
  encrSuite,
  formatProposal,
  formatProposals,
  integSuite,
  legacyGroupHint,
  matchProposal,
  type Chosen,
  type MatchKind,
} from './algorithms.js';
import {
  describeIdentity,
  encodeIdentity,
  idBody,
  pskAuth,
  sameBytes,
  sameIdentity,
  signedOctets,
} from './auth.js';
import {
  certPayloads,
  certReqPayload,
  hashAlgorithmsNotify,
  peerHashAlgorithms,
  signAuth,
  verifyPeer,
} from './cert-auth.js';
import type { CheckedConfig } from './config.js';
import {
  AUTH_METHOD,
  ESN,
  EXCHANGE,
  FRAGMENT_SHRINK_AFTER,
  FRAGMENT_SIZE_FALLBACK_V4,
  FRAGMENT_SIZE_FALLBACK_V6,
  FRAGMENTS_MAX,
  HALF_OPEN_TIMEOUT_MS,
  IKE_PORT,
  IPV4_HEADER_LENGTH,
  IPV6_HEADER_LENGTH,
  NATT_KEEPALIVE,
  NATT_PORT,
  NON_ESP_MARKER_LENGTH,
  NONCE_LENGTH,
  NONCE_MAX,
  NONCE_MIN,
  NOTIFY,
  NOTIFY_ERROR_MAX,
  PROTOCOL,
  REASSEMBLY_MAX_BYTES,
  REASSEMBLY_TIMEOUT_MS,
  PAIR_RETRY_FIRST_MS,
  PAIR_RETRY_MAX_MS,
  REKEY_JITTER,
  RETRY_JITTER_MS,
  RETRY_MIN_MS,
  TRANSFORM_TYPE,
  UDP_HEADER_LENGTH,
} from './constants.js';
import { generateDh, isDhGroupId, publicLength, type DhGroupId, type DhKeyPair } from './dh.js';
import type { IkeDropReason } from './drops.js';
import { deriveChildKeys, deriveIkeKeys, deriveRekeyedIkeKeys, type IkeKeys } from './keys.js';
import {
  buildMessage,
  parseMessage,
  parsePayloadChain,
  type IkeHeader,
  type IkeMessage,
  type Parsed,
  type Payload,
  type Proposal,
  type Transform,
} from './messages.js';
import { natHash, type UdpEndpoint } from './nat.js';
import { isPrfId, type PrfId } from './prf.js';
import { openFragment, openMessage, sealFragments, sealMessage, type SkKeys } from './sk.js';
import { formatSelector, narrow, within } from './traffic-selectors.js';

export type Role = 'initiator' | 'responder';
export type IkeSaState = 'init-sent' | 'auth-sent' | 'auth-wait' | 'established' | 'rekeyed' | 'closed';

/** What an SA needs from the core that owns it. */
export interface SaContext {
  readonly config: CheckedConfig;
  random(n: number): Buffer;
  /** Where the SA appends its actions during one call. */
  readonly out: IkeAction[];
  /** IKE SAs created by a rekey during one call; the core files them under their SPIs. */
  readonly born: IkeSa[];
  /** IKE fragmentation counters (RFC 7383), summed over the core's SAs. */
  readonly fragments: FragmentStats;
}

export interface FragmentStats {
  /** Fragments sent (each retransmission counted again). */
  sent: number;
  /** Fragments authenticated and kept for reassembly. */
  received: number;
  /** Messages put back together from fragments. */
  reassembled: number;
  /** Partial messages discarded: timed out, or replaced by a new fragmentation of the message (§2.6). */
  discarded: number;
  /** Requests cut again into smaller fragments after unanswered retransmissions (§2.5.2). */
  shrunk: number;
}

/** A fragmented message being put back together (RFC 7383 §2.6); one at a time per SA. */
interface Reassembly {
  readonly id: number;
  readonly response: boolean;
  readonly total: number;
  readonly pieces: (Buffer | undefined)[];
  readonly started: number;
  count: number;
  bytes: number;
  firstInner: number;
}

/** Outcome of handing one message to an SA: processed, or dropped for a reason (counted by the core). */
export type Handled = 'processed' | IkeDropReason;

/** A request of ours waiting for the window (§2.3). CHILD SAs are named by our inbound SPI. */
type Job =
  | { readonly kind: 'dpd' }
  | { readonly kind: 'delete-ike' }
  | {
      readonly kind: 'delete-child';
      readonly inboundSpi: number;
      readonly reason: string;
      /** Already removed here (its hard lifetime): the DELETE only tells the peer. */
      readonly gone?: true;
    }
  | { readonly kind: 'rekey-child'; readonly inboundSpi: number; readonly group?: DhGroupId }
  | { readonly kind: 'rekey-ike'; readonly group?: DhGroupId }
  | {
      readonly kind: 'new-child';
      readonly local: readonly TrafficSelector[];
      readonly remote: readonly TrafficSelector[];
      readonly group?: DhGroupId;
    };

type Purpose = 'init' | 'auth' | Job['kind'];

/**
 * Our half of a CHILD SA rekey (or, with `old` null, of a new CHILD SA) in flight, and the peer's rekey of the
 * same SA if the two crossed (§2.8.1).
 */
interface ChildRekey {
  readonly old: ChildState | null;
  readonly spi: Buffer;
  readonly ni: Buffer;
  readonly dh: DhKeyPair | null;
  readonly group: DhGroupId | null;
  collision: { readonly child: ChildState; readonly ni: Buffer; readonly nr: Buffer } | null;
}

/** Our half of an IKE SA rekey in flight, and the new IKE SA of the peer's crossing rekey (§2.8.2). */
interface IkeRekey {
  readonly spi: Buffer;
  readonly ni: Buffer;
  readonly dh: DhKeyPair;
  readonly group: DhGroupId;
  collision: { readonly sa: IkeSa; readonly ni: Buffer; readonly nr: Buffer } | null;
}

interface Outstanding {
  readonly id: number;
  readonly purpose: Purpose;
  /** The request as sent: one datagram, or its fragments (RFC 7383), resent as they are. */
  message: readonly Buffer[];
  /** Seals the request again (at the SA's current fragment size), for a fallback to smaller fragments. */
  reseal?: () => readonly Buffer[];
  tries: number;
  deadline: number;
  job?: Job;
  childRekey?: ChildRekey;
  ikeRekey?: IkeRekey;
}

/**
 * One CHILD SA: 'installed' is in use; 'rekeyed' has a successor and waits for its delete (ours or the
 * peer's); 'deleting' has our delete in flight or queued.
 */
export interface ChildState {
  readonly spec: ChildSaSpec;
  readonly proposal: string;
  phase: 'installed' | 'rekeyed' | 'deleting';
  rekeyAt: number | null;
  /** When the SA is deleted whatever became of its rekey (its hard lifetime, RFC 7296 §2.8); null never. */
  hardAt: number | null;
}

const MAX_INVALID_KE_RETRIES = 2;

export class IkeSa {
  state: IkeSaState;
  readonly role: Role;
  spiI: Buffer;
  spiR: Buffer;
  remote: UdpEndpoint;
  local: UdpEndpoint;
  /** UDP 4500 with the non-ESP marker (NAT detected or forced). */
  encapsulated = false;
  /** We are behind a NAT: keep the mapping open with keepalives. */
  behindNat = false;
  /** A NAT (or a peer forcing encapsulation) was detected in IKE_SA_INIT. */
  natDetected = false;
  /** The CHILD SAs of this IKE SA (more than one while a rekey overlaps the old and the new). */
  children: ChildState[] = [];
  /** Whether `ike-sa-up` was reported (the new SA of a lost rekey collision never is). */
  announced = false;
  /** The IKE SA that replaced this one by a rekey. */
  successor: IkeSa | null = null;

  private ni: Buffer = Buffer.alloc(0);
  private nr: Buffer = Buffer.alloc(0);
  private dhGroup: DhGroupId | null = null;
  private dh: DhKeyPair | null = null;
  private cookie: Buffer | null = null;
  private invalidKeRetries = 0;
  private ike: Chosen | null = null;
  private prfId: PrfId | null = null;
  private keys: IkeKeys | null = null;
  private initRequest: Buffer = Buffer.alloc(0);
  private initResponse: Buffer = Buffer.alloc(0);
  private childSpi: Buffer = Buffer.alloc(0);
  private peerId = '';

  private nextRequestId = 0;
  private outstanding: Outstanding | null = null;
  private queued: Job[] = [];
  /** Jobs refused with TEMPORARY_FAILURE, queued again at `at` (§2.25). */
  private delayed: { at: number; job: Job }[] = [];
  private ikeRekeyAt: number | null = null;
  /** The IKE SA's hard lifetime: closed then even if its rekey failed. */
  private ikeHardAt: number | null = null;
  /**
   * A per-pair site lost a CHILD SA: when to look for subnet pairs without one and ask for them again, and the
   * wait before the look after that (PAIR_RETRY_*).
   */
  private pairRetry: { at: number; waitMs: number } | null = null;
  /** The `now` of the call being handled. */
  private clock: number;
  private nextPeerRequestId = 0;
  private lastAnswer: {
    id: number;
    request: Buffer;
    response: readonly Buffer[];
    /** How often the request came again (our response lost), and how to seal the response again smaller. */
    repeats?: number;
    reseal?: () => readonly Buffer[];
  } | null = null;
  /** Both ends announced IKEV2_FRAGMENTATION_SUPPORTED in IKE_SA_INIT (RFC 7383 §2.3). */
  fragmentation = false;
  /** The datagram size fragments are cut to: the configured one, or the fallback once shrunk (§2.5.2). */
  fragmentSize: number;
  private reassembly: Reassembly | null = null;
  private lastHeard: number;
  private lastSent: number;
  private readonly created: number;

  private constructor(
    private readonly ctx: SaContext,
    role: Role,
    remote: UdpEndpoint,
    local: UdpEndpoint,
    now: number,
  ) {
    this.role = role;
    this.state = role === 'initiator' ? 'init-sent' : 'auth-wait';
    this.spiI = Buffer.alloc(8);
    this.spiR = Buffer.alloc(8);
    this.remote = remote;
    this.local = local;
    this.lastHeard = now;
    this.lastSent = now;
    this.created = now;
    this.clock = now;
    this.fragmentSize = ctx.config.fragmentSize;
  }

  /** The CHILD SA in use (the newest installed one), for status and tests. */
  get child(): ChildState | null {
    const installed = this.children.filter((c) => c.phase === 'installed');
    return installed[installed.length - 1] ?? this.children[0] ?? null;
  }

  /** The SPI this side chose: the key the core files the SA under. */
  get localSpi(): Buffer {
    return this.role === 'initiator' ? this.spiI : this.spiR;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Initiator: IKE_SA_INIT

  static initiate(ctx: SaContext, remote: UdpEndpoint, local: UdpEndpoint, now: number): IkeSa {
    const sa = new IkeSa(ctx, 'initiator', remote, local, now);
    sa.spiI = nonZero(ctx, 8);
    const first = ctx.config.ikeProposals[0]!.find((t) => t.type === TRANSFORM_TYPE.DH)!;
    sa.dhGroup = first.id as DhGroupId;
    sa.sendInit(now, true);
    return sa;
  }

  private sendInit(now: number, fresh: boolean): void {
    if (fresh || this.dh === null) {
      this.dh = generateDh(this.dhGroup!);
      this.ni = this.ctx.random(NONCE_LENGTH);
    }
    const payloads: Payload[] = [];
    if (this.cookie) payloads.push(notify(NOTIFY.COOKIE, this.cookie));
    payloads.push(
      {
        kind: 'sa',
        proposals: this.ctx.config.ikeProposals.map((transforms, i) => ({
          num: i + 1,
          protocol: PROTOCOL.IKE,
          spi: Buffer.alloc(0),
          transforms,
        })),
      },
      { kind: 'ke', group: this.dhGroup!, data: this.dh.publicValue },
      { kind: 'nonce', data: this.ni },
      ...this.natNotifies(),
      ...certInitPayloads(this.ctx.config, false),
    );
    if (this.ctx.config.fragmentation)
      payloads.push(notify(NOTIFY.IKEV2_FRAGMENTATION_SUPPORTED, Buffer.alloc(0)));
    this.initRequest = buildMessage(this.header(EXCHANGE.IKE_SA_INIT, false, 0), payloads);
    this.nextRequestId = 1;
    this.outstanding = null;
    this.request(now, 0, 'init', [this.initRequest]);
  }

  private natNotifies(): Payload[] {
    // §2.23; a forced encapsulation sends a source hash that cannot match, as strongSwan's encap=yes does.
    const source = this.ctx.config.forceEncapsulation
      ? this.ctx.random(20)
      : natHash(this.spiI, this.spiR, this.local);
    return [
      notify(NOTIFY.NAT_DETECTION_SOURCE_IP, source),
      notify(NOTIFY.NAT_DETECTION_DESTINATION_IP, natHash(this.spiI, this.spiR, this.remote)),
    ];
  }

  /** §2.23: compare the peer's hashes with what we see; either mismatch moves us to UDP 4500. */
  private detectNat(h: IkeHeader, payloads: readonly Payload[]): void {
    const src = notifies(payloads, NOTIFY.NAT_DETECTION_SOURCE_IP);
    const dst = notifies(payloads, NOTIFY.NAT_DETECTION_DESTINATION_IP);
    if (src.length === 0 || dst.length === 0) return;
    // The hashes cover the SPIs as they stand in that message's header (SPIr is zero in the request).
    const peer = natHash(h.spiI, h.spiR, this.remote);
    const me = natHash(h.spiI, h.spiR, this.local);
    const peerBehind = !src.some((n) => sameBytes(n.data, peer));
    this.behindNat = !dst.some((n) => sameBytes(n.data, me));
    if (peerBehind || this.behindNat || this.ctx.config.forceEncapsulation) this.natDetected = true;
  }

  private onInitResponse(msg: IkeMessage, now: number): Handled {
    const p = msg.payloads;
    const errors = p.filter((x): x is Extract<Payload, { kind: 'notify' }> => x.kind === 'notify');
    const cookie = errors.find((n) => n.notify === NOTIFY.COOKIE);
    if (cookie && cookie.data.length >= 1 && cookie.data.length <= 64 && this.cookie === null) {
      // §2.6: the responder is under load; repeat the request with its cookie first.
      this.cookie = Buffer.from(cookie.data);
      this.sendInit(now, false);
      return 'processed';
    }
    const invalidKe = errors.find((n) => n.notify === NOTIFY.INVALID_KE_PAYLOAD);
    if (invalidKe) {
      const group = invalidKe.data.length === 2 ? invalidKe.data.readUInt16BE(0) : -1;
      const offered = this.ctx.config.ikeProposals.some((t) =>
        t.some((x) => x.type === TRANSFORM_TYPE.DH && x.id === group),
      );
      if (
        offered &&
        isDhGroupId(group) &&
        group !== this.dhGroup &&
        this.invalidKeRetries < MAX_INVALID_KE_RETRIES
      ) {
        // §1.2: retry IKE_SA_INIT with the group the responder asked for.
        this.invalidKeRetries++;
        this.dhGroup = group;
        this.sendInit(now, true);
        return 'processed';
      }
      this.fail('invalid-ke', `peer asked for DH group ${group}, which our IKE proposals do not offer`);
      return 'processed';
    }
    const error = errors.find((n) => n.notify <= NOTIFY_ERROR_MAX);
    if (error) {
      if (error.notify === NOTIFY.NO_PROPOSAL_CHOSEN) {
        this.fail(
          'no-proposal-chosen',
          `peer ${this.remote.address} answered NO_PROPOSAL_CHOSEN: none of our IKE proposals ` +
            `[${formatProposals(this.ctx.config.ikeProposals)}] is acceptable to it`,
        );
      } else {
        this.fail('peer-error', `peer answered IKE_SA_INIT with error notify ${error.notify}`);
      }
      return 'processed';
    }
    const sa = p.find((x) => x.kind === 'sa');
    const ke = p.find((x) => x.kind === 'ke');
    const nonce = p.find((x) => x.kind === 'nonce');
    if (!sa || !ke || !nonce || msg.header.spiR.every((b) => b === 0)) return 'missing-payload';
    if (nonce.data.length < NONCE_MIN || nonce.data.length > NONCE_MAX) return 'bad-nonce';
    const chosen = this.acceptChosen(sa.proposals, this.ctx.config.ikeProposals, 'ike', 0);
    if (chosen === null) {
      this.fail(
        'bad-response',
        `peer chose IKE proposal [${formatProposals(sa.proposals.map((x) => x.transforms))}], ` +
          `which is not one we offered [${formatProposals(this.ctx.config.ikeProposals)}]`,
      );
      return 'processed';
    }
    if (ke.group !== this.dhGroup || chosen.chosen.dh?.id !== this.dhGroup) return 'bad-ke';
    const secret = this.dh!.computeSecret(ke.data);
    if (secret === null) return 'bad-ke';
    this.spiR = Buffer.from(msg.header.spiR);
    this.nr = Buffer.from(nonce.data);
    this.initResponse = msg.raw;
    this.fragmentation = this.ctx.config.fragmentation && hasNotify(p, NOTIFY.IKEV2_FRAGMENTATION_SUPPORTED);
    this.setIkeKeys(chosen.chosen, secret);
    this.detectNat(msg.header, p);
    this.outstanding = null;
    this.lastHeard = now;
    this.sendAuth(now);
    return 'processed';
  }

  private setIkeKeys(chosen: Chosen, secret: Buffer): void {
    this.ike = chosen;
    const prfId = chosen.prf!.id;
    this.prfId = isPrfId(prfId) ? prfId : null;
    const encr = encrSuite(chosen.encr.id, chosen.encr.keyLength)!;
    const integ = chosen.integ ? integSuite(chosen.integ.id) : null;
    this.keys = deriveIkeKeys(this.prfId!, encr, integ, this.ni, this.nr, secret, this.spiI, this.spiR);
  }

  /**
   * The peer's answer must carry exactly one proposal, built only from transforms of one of ours (§3.3.6).
   * Returns it with the SPI it carries.
   */
  private acceptChosen(
    proposals: readonly Proposal[],
    ours: readonly (readonly Transform[])[],
    kind: MatchKind,
    expectSpi: number,
  ): { chosen: Chosen; spi: Buffer } | null {
    if (proposals.length !== 1) return null;
    const only = proposals[0]!;
    if (only.spi.length !== expectSpi) return null;
    const types = new Set<number>();
    for (const t of only.transforms) {
      if (types.has(t.type)) return null;
      types.add(t.type);
    }
    for (const mine of ours) {
      const c = matchProposal(only.transforms, mine, kind);
      if (
        c &&
        chosenTransforms(c).length ===
          only.transforms.filter((t) => kind !== 'esp' || t.type !== TRANSFORM_TYPE.DH).length
      )
        return { chosen: c, spi: only.spi };
    }
    return null;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Responder: IKE_SA_INIT

  /**
   * Answers an IKE_SA_INIT request (§1.2). Returns the new half-open SA when keys were agreed, or null when
   * the answer was an error notify (no state is kept for those) or the request was dropped.
   */
  static respondInit(
    ctx: SaContext,
    msg: IkeMessage,
    remote: UdpEndpoint,
    local: UdpEndpoint,
    now: number,
  ): { sa: IkeSa | null; handled: Handled } {
    const p = msg.payloads;
    const sa = p.find((x) => x.kind === 'sa');
    const ke = p.find((x) => x.kind === 'ke');
    const nonce = p.find((x) => x.kind === 'nonce');
    if (!sa || !ke || !nonce) return { sa: null, handled: 'missing-payload' };
    if (nonce.data.length < NONCE_MIN || nonce.data.length > NONCE_MAX)
      return { sa: null, handled: 'bad-nonce' };
    const offered = sa.proposals.filter((x) => x.protocol === PROTOCOL.IKE && x.spi.length === 0);
    let pick: { proposal: Proposal; chosen: Chosen } | null = null;
    let other: Chosen | null = null;
    for (const prop of offered) {
      for (const mine of ctx.config.ikeProposals) {
        const c = matchProposal(prop.transforms, mine, 'ike', ke.group);
        if (c) {
          pick = { proposal: prop, chosen: c };
          break;
        }
        other ??= matchProposal(prop.transforms, mine, 'ike');
      }
      if (pick) break;
    }
    const answer = (payloads: Payload[]) => {
      const data = buildMessage(
        {
          spiI: msg.header.spiI,
          spiR: Buffer.alloc(8),
          exchange: EXCHANGE.IKE_SA_INIT,
          initiator: false,
          response: true,
          messageId: 0,
        },
        payloads,
      );
      ctx.out.push(sendAction(data, remote, local.port));
    };
    if (pick === null) {
      if (other !== null && other.dh !== null) {
        // §1.2: the proposal is fine but the KE payload used another group: name the one we want.
        const g = Buffer.alloc(2);
        g.writeUInt16BE(other.dh.id);
        answer([notify(NOTIFY.INVALID_KE_PAYLOAD, g)]);
        return { sa: null, handled: 'processed' };
      }
      answer([notify(NOTIFY.NO_PROPOSAL_CHOSEN, Buffer.alloc(0))]);
      ctx.out.push({
        type: 'failed',
        failure: 'no-proposal-chosen',
        message:
          `no common IKE proposal with ${remote.address}: peer offered ` +
          `[${formatProposals(offered.map((x) => x.transforms))}]; we accept [${formatProposals(ctx.config.ikeProposals)}]` +
          legacyGroupHint(
            offered.map((x) => x.transforms),
            ctx.config.ikeProposals,
          ),
      });
      return { sa: null, handled: 'processed' };
    }
    const group = ke.group as DhGroupId;
    if (ke.data.length !== publicLength(group)) return { sa: null, handled: 'bad-ke' };
    const dh = generateDh(group);
    const secret = dh.computeSecret(ke.data);
    if (secret === null) return { sa: null, handled: 'bad-ke' };
    const s = new IkeSa(ctx, 'responder', remote, local, now);
    s.spiI = Buffer.from(msg.header.spiI);
    s.spiR = nonZero(ctx, 8);
    s.ni = Buffer.from(nonce.data);
    s.nr = ctx.random(NONCE_LENGTH);
    s.dh = dh;
    s.dhGroup = group;
    s.initRequest = msg.raw;
    // RFC 7383 §2.3: we announce fragmentation only to an initiator that announced it.
    s.fragmentation = ctx.config.fragmentation && hasNotify(p, NOTIFY.IKEV2_FRAGMENTATION_SUPPORTED);
    s.detectNat(msg.header, p);
    s.setIkeKeys(pick.chosen, secret);
    const response = buildMessage(s.header(EXCHANGE.IKE_SA_INIT, true, 0), [
      {
        kind: 'sa',
        proposals: [
          {
            num: pick.proposal.num,
            protocol: PROTOCOL.IKE,
            spi: Buffer.alloc(0),
            transforms: chosenTransforms(pick.chosen),
          },
        ],
      },
      { kind: 'ke', group, data: dh.publicValue },
      { kind: 'nonce', data: s.nr },
      ...s.natNotifies(),
      ...certInitPayloads(ctx.config, true),
      ...(s.fragmentation ? [notify(NOTIFY.IKEV2_FRAGMENTATION_SUPPORTED, Buffer.alloc(0))] : []),
    ]);
    s.initResponse = response;
    s.nextPeerRequestId = 1;
    s.lastAnswer = { id: 0, request: msg.raw, response: [response] };
    s.ctx.out.push(sendAction(response, remote, local.port));
    return { sa: s, handled: 'processed' };
  }

  // -------------------------------------------------------------------------------------------------------------
  // IKE_AUTH

  private sendAuth(now: number): void {
    if (this.natDetected) {
      this.encapsulated = true;
      // §2.23: once a NAT is detected the initiator moves to port 4500 for IKE_AUTH and everything after.
      this.remote = { address: this.remote.address, port: NATT_PORT };
      this.local = { address: this.local.address, port: NATT_PORT };
    }
    const cfg = this.ctx.config;
    this.childSpi = nonZero(this.ctx, 4);
    const idi = encodeIdentity(cfg.localId);
    const auth = this.ownAuth(this.initRequest, this.nr, this.keys!.skPi, idi);
    // §3.6/§3.7 order: IDi, CERT, INITIAL_CONTACT, CERTREQ, IDr, AUTH.
    const inner: Payload[] = [{ kind: 'id', initiator: true, idType: idi.idType, data: idi.data }];
    if (cfg.certificate) inner.push(...certPayloads(cfg.certificate));
    inner.push(notify(NOTIFY.INITIAL_CONTACT, Buffer.alloc(0)));
    if (cfg.certificate) inner.push(certReqPayload(cfg.certificate));
    if (cfg.remoteId) {
      const idr = encodeIdentity(cfg.remoteId);
      inner.push({ kind: 'id', initiator: false, idType: idr.idType, data: idr.data });
    }
    inner.push(auth);
    if (cfg.mode === 'transport') inner.push(notify(NOTIFY.USE_TRANSPORT_MODE, Buffer.alloc(0)));
    inner.push(
      {
        kind: 'sa',
        proposals: espOffer(cfg.espProposals, this.childSpi, false),
      },
      { kind: 'ts', initiator: true, selectors: this.firstPair().local },
      { kind: 'ts', initiator: false, selectors: this.firstPair().remote },
    );
    this.state = 'auth-sent';
    this.sendRequest(now, EXCHANGE.IKE_AUTH, 'auth', inner);
  }

  private onAuthRequest(msg: IkeMessage, inner: readonly Payload[], now: number): void {
    const cfg = this.ctx.config;
    const idi = inner.find((x): x is Extract<Payload, { kind: 'id' }> => x.kind === 'id' && x.initiator);
    const auth = inner.find((x) => x.kind === 'auth');
    if (!idi || !auth) {
      this.answer(msg, [notify(NOTIFY.INVALID_SYNTAX, Buffer.alloc(0))]);
      this.fail('bad-response', 'IKE_AUTH request without IDi or AUTH');
      return;
    }
    this.peerId = describeIdentity(idi.idType, idi.data);
    const refuse = (why: string) => {
      this.answer(msg, [notify(NOTIFY.AUTHENTICATION_FAILED, Buffer.alloc(0))]);
      this.fail('authentication-failed', why);
    };
    if (cfg.remoteId) {
      if (!sameIdentity(cfg.remoteId, idi.idType, idi.data)) {
        refuse(
          `peer ${this.remote.address} presented ID ${this.peerId}, but ${describeRemote(cfg)} is configured`,
        );
        return;
      }
    }
    if (cfg.certificate) {
      const octets = signedOctets(
        this.prfId!,
        this.initRequest,
        this.nr,
        this.keys!.skPi,
        idBody(idi.idType, idi.data),
      );
      const verdict = verifyPeer(cfg.certificate, {
        peer: this.peerId,
        payloads: inner,
        idType: idi.idType,
        idData: idi.data,
        method: auth.method,
        authData: auth.data,
        octets,
        now,
      });
      if (!verdict.ok) {
        refuse(verdict.why);
        return;
      }
    } else {
      if (auth.method !== AUTH_METHOD.SHARED_KEY_MIC) {
        refuse(
          `peer ${this.peerId} used authentication method ${auth.method}; this site expects a pre-shared key (2)`,
        );
        return;
      }
      const expect = pskAuth(
        this.prfId!,
        cfg.psk,
        this.initRequest,
        this.nr,
        this.keys!.skPi,
        idBody(idi.idType, idi.data),
      );
      if (!sameBytes(expect, auth.data)) {
        refuse(`AUTH from peer ${this.peerId} does not verify with our pre-shared key (the keys differ)`);
        return;
      }
    }
    const idr = encodeIdentity(cfg.localId);
    const reply: Payload[] = [{ kind: 'id', initiator: false, idType: idr.idType, data: idr.data }];
    if (cfg.certificate) reply.push(...certPayloads(cfg.certificate));
    reply.push(this.ownAuth(this.initResponse, this.ni, this.keys!.skPr, idr));
    this.state = 'established';
    this.lastHeard = now;
    this.announceUp(now);
    const child = this.negotiateChild(inner);
    reply.push(...child.payloads);
    this.answer(msg, reply);
    if (child.spec) this.childUp(child.spec, child.proposal);
  }

  /**
   * Our AUTH payload (§2.15): the PSK MAC, or with a certificate a signature over the same octets, in the form
   * the peer's SIGNATURE_HASH_ALGORITHMS (in its IKE_SA_INIT message) allows.
   */
  private ownAuth(
    realMessage: Buffer,
    peerNonce: Buffer,
    skP: Buffer,
    id: { idType: number; data: Buffer },
  ): Payload {
    const cfg = this.ctx.config;
    const body = idBody(id.idType, id.data);
    if (cfg.certificate === null)
      return {
        kind: 'auth',
        method: AUTH_METHOD.SHARED_KEY_MIC,
        data: pskAuth(this.prfId!, cfg.psk, realMessage, peerNonce, skP, body),
      };
    const peerInit = parseMessage(this.role === 'initiator' ? this.initResponse : this.initRequest);
    const hashes = peerInit.ok ? peerHashAlgorithms(peerInit.value.payloads) : null;
    const signed = signAuth(
      cfg.certificate,
      hashes,
      signedOctets(this.prfId!, realMessage, peerNonce, skP, body),
    );
    return { kind: 'auth', method: signed.method, data: signed.data };
  }

  /** The responder's half of the first CHILD SA: proposal, traffic selectors (narrowed), mode. */
  private negotiateChild(inner: readonly Payload[]): {
    payloads: Payload[];
    spec?: ChildSaSpec;
    proposal: string;
  } {
    const cfg = this.ctx.config;
    const sa = inner.find((x) => x.kind === 'sa');
    const tsi = inner.find((x): x is Extract<Payload, { kind: 'ts' }> => x.kind === 'ts' && x.initiator);
    const tsr = inner.find((x): x is Extract<Payload, { kind: 'ts' }> => x.kind === 'ts' && !x.initiator);
    if (!sa || !tsi || !tsr) return { payloads: [], proposal: '' };
    const offered = sa.proposals.filter((x) => x.protocol === PROTOCOL.ESP && x.spi.length === 4);
    let pick: { proposal: Proposal; chosen: Chosen } | null = null;
    for (const prop of offered) {
      for (const mine of cfg.espProposals) {
        const c = matchProposal(prop.transforms, mine, 'esp');
        if (c) {
          pick = { proposal: prop, chosen: c };
          break;
        }
      }
      if (pick) break;
    }
    if (pick === null) {
      this.emitFail(
        'child-no-proposal-chosen',
        `no common ESP proposal with ${this.peerId}: peer offered [${formatProposals(offered.map((x) => x.transforms))}]; ` +
          `we accept [${formatProposals(cfg.espProposals)}]`,
      );
      return { payloads: [notify(NOTIFY.NO_PROPOSAL_CHOSEN, Buffer.alloc(0))], proposal: '' };
    }
    // §2.9: answer with the part of the proposed selectors our policy allows.
    const remoteTs = narrow(tsi.selectors, cfg.remoteSelectors);
    const localTs = narrow(tsr.selectors, cfg.localSelectors);
    if (remoteTs.length === 0 || localTs.length === 0) {
      this.emitFail(
        'ts-unacceptable',
        `traffic selectors from ${this.peerId} not acceptable: peer proposed TSi [${tsi.selectors.map(formatSelector).join(', ')}] ` +
          `TSr [${tsr.selectors.map(formatSelector).join(', ')}]; we allow remote [${cfg.remoteSelectors.map(formatSelector).join(', ')}] ` +
          `local [${cfg.localSelectors.map(formatSelector).join(', ')}]`,
      );
      return { payloads: [notify(NOTIFY.TS_UNACCEPTABLE, Buffer.alloc(0))], proposal: '' };
    }
    const transport = cfg.mode === 'transport' && hasNotify(inner, NOTIFY.USE_TRANSPORT_MODE);
    const spi = nonZero(this.ctx, 4);
    const payloads: Payload[] = [];
    if (transport) payloads.push(notify(NOTIFY.USE_TRANSPORT_MODE, Buffer.alloc(0)));
    payloads.push(
      {
        kind: 'sa',
        proposals: [
          { num: pick.proposal.num, protocol: PROTOCOL.ESP, spi, transforms: chosenTransforms(pick.chosen) },
        ],
      },
      { kind: 'ts', initiator: true, selectors: remoteTs },
      { kind: 'ts', initiator: false, selectors: localTs },
    );
    const spec = this.childSpec(pick.chosen, spi, pick.proposal.spi, transport, localTs, remoteTs);
    return { payloads, spec, proposal: formatProposal(chosenTransforms(pick.chosen)) };
  }

  private childSpec(
    chosen: Chosen,
    inboundSpi: Buffer,
    outboundSpi: Buffer,
    transport: boolean,
    localSelectors: readonly TrafficSelector[],
    remoteSelectors: readonly TrafficSelector[],
    ni: Buffer = this.ni,
    nr: Buffer = this.nr,
    gir: Buffer | null = null,
    exchangeInitiator: boolean = this.role === 'initiator',
  ): ChildSaSpec {
    const encr = encrSuite(chosen.encr.id, chosen.encr.keyLength)!;
    const integ = chosen.integ ? integSuite(chosen.integ.id) : null;
    // §2.17: the first CHILD SA takes the IKE SA's nonces; a CREATE_CHILD_SA one its exchange's (and g^ir).
    const k = deriveChildKeys(this.prfId!, this.keys!.skD, ni, nr, encr, integ, gir);
    // §2.17: "initiator" is the initiator of the exchange that made the SA (IKE_AUTH or CREATE_CHILD_SA),
    // which for a CREATE_CHILD_SA need not be the IKE SA's original initiator.
    const [inbound, outbound] = exchangeInitiator
      ? [k.responderToInitiator, k.initiatorToResponder]
      : [k.initiatorToResponder, k.responderToInitiator];
    return {
      mode: transport ? 'transport' : 'tunnel',
      inboundSpi: inboundSpi.readUInt32BE(0),
      outboundSpi: outboundSpi.readUInt32BE(0),
      encryption: encr.id as EspEncryptionId,
      encryptionKeyBits: encr.keyBits,
      integrity: integ ? (integ.id as EspIntegrityId) : null,
      esn: chosen.esn?.id === ESN.EXTENDED,
      inbound,
      outbound,
      localSelectors: [...localSelectors],
      remoteSelectors: [...remoteSelectors],
    };
  }

  private onAuthResponse(inner: readonly Payload[], now: number): void {
    const cfg = this.ctx.config;
    this.outstanding = null;
    if (hasNotify(inner, NOTIFY.AUTHENTICATION_FAILED)) {
      this.fail(
        'authentication-failed',
        `peer ${this.remote.address} refused our authentication (AUTHENTICATION_FAILED): ` +
          (cfg.certificate
            ? 'it does not accept our certificate or ID (see its log)'
            : 'the pre-shared keys or IDs differ'),
      );
      return;
    }
    const idr = inner.find((x): x is Extract<Payload, { kind: 'id' }> => x.kind === 'id' && !x.initiator);
    const auth = inner.find((x) => x.kind === 'auth');
    if (!idr || !auth) {
      const err = inner.find(
        (x): x is Extract<Payload, { kind: 'notify' }> => x.kind === 'notify' && x.notify <= NOTIFY_ERROR_MAX,
      );
      this.fail(
        'peer-error',
        `peer answered IKE_AUTH without IDr/AUTH${err ? ` (error notify ${err.notify})` : ''}`,
      );
      return;
    }
    this.peerId = describeIdentity(idr.idType, idr.data);
    if (cfg.remoteId) {
      if (!sameIdentity(cfg.remoteId, idr.idType, idr.data)) {
        this.fail(
          'authentication-failed',
          `responder presented ID ${this.peerId}, but ${describeRemote(cfg)} is configured`,
        );
        return;
      }
    }
    if (cfg.certificate) {
      const octets = signedOctets(
        this.prfId!,
        this.initResponse,
        this.ni,
        this.keys!.skPr,
        idBody(idr.idType, idr.data),
      );
      const verdict = verifyPeer(cfg.certificate, {
        peer: this.peerId,
        payloads: inner,
        idType: idr.idType,
        idData: idr.data,
        method: auth.method,
        authData: auth.data,
        octets,
        now,
      });
      if (!verdict.ok) {
        // §2.21.2: the IKE SA is up on the responder's side; tell it why, and delete it.
        this.sendRequest(now, EXCHANGE.INFORMATIONAL, 'delete-ike', [
          notify(NOTIFY.AUTHENTICATION_FAILED, Buffer.alloc(0)),
          { kind: 'delete', protocol: PROTOCOL.IKE, spis: [] },
        ]);
        this.fail('authentication-failed', verdict.why);
        return;
      }
    } else {
      const expect = pskAuth(
        this.prfId!,
        cfg.psk,
        this.initResponse,
        this.ni,
        this.keys!.skPr,
        idBody(idr.idType, idr.data),
      );
      if (auth.method !== AUTH_METHOD.SHARED_KEY_MIC || !sameBytes(expect, auth.data)) {
        this.fail(
          'authentication-failed',
          `AUTH from responder ${this.peerId} does not verify with our pre-shared key`,
        );
        return;
      }
    }
    this.state = 'established';
    this.lastHeard = now;
    this.announceUp(now);
    this.acceptChild(inner);
    // One CHILD SA per subnet pair: the first came with IKE_AUTH, each other pair gets its own exchange.
    for (const pair of cfg.childSelectorPairs.slice(1))
      this.queued.push({ kind: 'new-child', local: pair.local, remote: pair.remote });
    this.pump(now);
  }

  /** The selectors the initiator proposes in IKE_AUTH: all of them, or the first pair when one per pair. */
  private firstPair(): {
    readonly local: readonly TrafficSelector[];
    readonly remote: readonly TrafficSelector[];
  } {
    return this.ctx.config.childSelectorPairs[0]!;
  }

  /** The initiator checks the responder's CHILD SA answer against what it proposed. */
  private acceptChild(inner: readonly Payload[]): void {
    const cfg = this.ctx.config;
    const err = inner.find(
      (x): x is Extract<Payload, { kind: 'notify' }> => x.kind === 'notify' && x.notify <= NOTIFY_ERROR_MAX,
    );
    if (err) {
      if (err.notify === NOTIFY.NO_PROPOSAL_CHOSEN) {
        this.emitFail(
          'child-no-proposal-chosen',
          `peer ${this.peerId} answered NO_PROPOSAL_CHOSEN for the CHILD SA: none of our ESP proposals ` +
            `[${formatProposals(cfg.espProposals)}] is acceptable to it`,
        );
      } else if (err.notify === NOTIFY.TS_UNACCEPTABLE) {
        this.emitFail(
          'ts-unacceptable',
          `peer ${this.peerId} answered TS_UNACCEPTABLE for TSi [${this.firstPair().local.map(formatSelector).join(', ')}] ` +
            `TSr [${this.firstPair().remote.map(formatSelector).join(', ')}]`,
        );
      } else {
        this.emitFail(
          'peer-error',
          `peer ${this.peerId} refused the CHILD SA with error notify ${err.notify}`,
        );
      }
      return;
    }
    const sa = inner.find((x) => x.kind === 'sa');
    const tsi = inner.find((x): x is Extract<Payload, { kind: 'ts' }> => x.kind === 'ts' && x.initiator);
    const tsr = inner.find((x): x is Extract<Payload, { kind: 'ts' }> => x.kind === 'ts' && !x.initiator);
    if (!sa || !tsi || !tsr) {
      this.emitFail('bad-response', `peer ${this.peerId} established the IKE SA without a CHILD SA`);
      return;
    }
    const c = this.acceptChosen(sa.proposals, cfg.espProposals, 'esp', 4);
    if (c === null) {
      this.emitFail('bad-response', `peer ${this.peerId} chose an ESP proposal we did not offer`);
      return;
    }
    if (
      !within(tsi.selectors, cfg.localSelectors) ||
      !within(tsr.selectors, cfg.remoteSelectors) ||
      tsi.selectors.length === 0 ||
      tsr.selectors.length === 0
    ) {
      this.emitFail(
        'ts-unacceptable',
        `peer ${this.peerId} answered with traffic selectors outside those we proposed`,
      );
      return;
    }
    const transport = cfg.mode === 'transport' && hasNotify(inner, NOTIFY.USE_TRANSPORT_MODE);
    const spec = this.childSpec(c.chosen, this.childSpi, c.spi, transport, tsi.selectors, tsr.selectors);
    this.childUp(spec, formatProposal(chosenTransforms(c.chosen)));
  }

  private announceUp(now: number, rekeyOf?: IkeSa): void {
    this.announced = true;
    const cfg = this.ctx.config;
    this.ikeRekeyAt = cfg.ikeRekeyMs > 0 ? now + this.jittered(cfg.ikeRekeyMs) : null;
    this.ikeHardAt = cfg.ikeHardLifetimeMs > 0 ? now + cfg.ikeHardLifetimeMs : null;
    this.ctx.out.push({
      type: 'ike-sa-up',
      spiI: this.spiI.toString('hex'),
      spiR: this.spiR.toString('hex'),
      proposal: formatProposal(chosenTransforms(this.ike!)),
      peerId: this.peerId,
      encapsulated: this.encapsulated,
      behindNat: this.behindNat,
      ...(rekeyOf
        ? { rekeyOf: { spiI: rekeyOf.spiI.toString('hex'), spiR: rekeyOf.spiR.toString('hex') } }
        : {}),
    });
  }

  private childUp(
    spec: ChildSaSpec,
    proposal: string,
    rekeyOf?: ChildState,
    role: 'initiator' | 'responder' = 'initiator',
  ): ChildState {
    const cfg = this.ctx.config;
    const child: ChildState = {
      spec,
      proposal,
      phase: 'installed',
      rekeyAt: cfg.childRekeyMs > 0 ? this.clock + this.jittered(cfg.childRekeyMs) : null,
      hardAt: cfg.childHardLifetimeMs > 0 ? this.clock + cfg.childHardLifetimeMs : null,
    };
    this.children.push(child);
    this.ctx.out.push({
      type: 'child-sa-up',
      spec,
      proposal,
      encapsulation: this.encapsulated ? { localPort: this.local.port, remote: this.remote } : null,
      ...(rekeyOf
        ? { rekeyOf: { inboundSpi: rekeyOf.spec.inboundSpi, outboundSpi: rekeyOf.spec.outboundSpi } }
        : {}),
      ...(rekeyOf && role === 'responder' ? { outboundLater: true as const } : {}),
    });
    return child;
  }

  /** A lifetime shortened by a random part of up to REKEY_JITTER of it. */
  private jittered(ms: number): number {
    const r = this.ctx.random(4).readUInt32BE(0) / 0x1_0000_0000;
    return Math.max(1, ms - Math.floor(ms * REKEY_JITTER * r));
  }

  // -------------------------------------------------------------------------------------------------------------
  // CREATE_CHILD_SA, responder (§1.3): a CHILD SA rekey (REKEY_SA), an IKE SA rekey (an IKE proposal), or an
  // additional CHILD SA (neither).

  private onCreateChildRequest(msg: IkeMessage, inner: readonly Payload[], now: number): void {
    const sa = inner.find((x) => x.kind === 'sa');
    if (!sa) {
      this.answer(msg, [notify(NOTIFY.INVALID_SYNTAX, Buffer.alloc(0))]);
      return;
    }
    // §2.25: an old IKE SA replaced by a rekey takes no new exchanges; the peer retries on the new one.
    if (this.state !== 'established') {
      this.answer(msg, [notify(NOTIFY.TEMPORARY_FAILURE, Buffer.alloc(0))]);
      return;
    }
    if (sa.proposals.some((x) => x.protocol === PROTOCOL.IKE)) {
      this.respondRekeyIke(msg, inner, sa.proposals, now);
      return;
    }
    // §2.25.2: no CHILD SA work while we rekey the IKE SA.
    if (this.outstanding?.purpose === 'rekey-ike') {
      this.answer(msg, [notify(NOTIFY.TEMPORARY_FAILURE, Buffer.alloc(0))]);
      return;
    }
    const rekey = notifies(inner, NOTIFY.REKEY_SA)[0];
    let old: ChildState | null = null;
    if (rekey) {
      if (rekey.protocol !== PROTOCOL.ESP || rekey.spi.length !== 4) {
        this.answer(msg, [notify(NOTIFY.INVALID_SYNTAX, Buffer.alloc(0))]);
        return;
      }
      // §1.3.3: the SPI is the one the peer expects on inbound packets, our outbound SPI.
      const spi = rekey.spi.readUInt32BE(0);
      old = this.children.find((c) => c.spec.outboundSpi === spi) ?? null;
      if (old === null) {
        this.answer(msg, [
          {
            kind: 'notify',
            protocol: PROTOCOL.ESP,
            spi: rekey.spi,
            notify: NOTIFY.CHILD_SA_NOT_FOUND,
            data: Buffer.alloc(0),
          },
        ]);
        return;
      }
      // §2.25.1: an SA we are deleting (or that was already replaced) is not rekeyed now.
      if (old.phase !== 'installed') {
        this.answer(msg, [notify(NOTIFY.TEMPORARY_FAILURE, Buffer.alloc(0))]);
        return;
      }
    }
    this.respondChild(msg, inner, sa.proposals, old);
  }

  private respondChild(
    msg: IkeMessage,
    inner: readonly Payload[],
    proposals: readonly Proposal[],
    old: ChildState | null,
  ): void {
    const cfg = this.ctx.config;
    const nonce = inner.find((x) => x.kind === 'nonce');
    const ke = inner.find((x) => x.kind === 'ke');
    const tsi = inner.find((x): x is Extract<Payload, { kind: 'ts' }> => x.kind === 'ts' && x.initiator);
    const tsr = inner.find((x): x is Extract<Payload, { kind: 'ts' }> => x.kind === 'ts' && !x.initiator);
    if (!nonce || nonce.data.length < NONCE_MIN || nonce.data.length > NONCE_MAX || !tsi || !tsr) {
      this.answer(msg, [notify(NOTIFY.INVALID_SYNTAX, Buffer.alloc(0))]);
      return;
    }
    const offered = proposals.filter((x) => x.protocol === PROTOCOL.ESP && x.spi.length === 4);
    const pick = pickProposal(offered, cfg.espProposals, 'esp-ke', ke?.group ?? -1);
    if (pick.chosen === null) {
      if (pick.wantGroup !== null) {
        this.answer(msg, [notify(NOTIFY.INVALID_KE_PAYLOAD, u16(pick.wantGroup))]);
        return;
      }
      this.emitFail(
        'child-no-proposal-chosen',
        `no common ESP proposal with ${this.peerId} for ${old ? 'a CHILD SA rekey' : 'an additional CHILD SA'}: ` +
          `peer offered [${formatProposals(offered.map((x) => x.transforms))}]; we accept [${formatProposals(cfg.espProposals)}]` +
          legacyGroupHint(
            offered.map((x) => x.transforms),
            cfg.espProposals,
          ),
      );
      this.answer(msg, [notify(NOTIFY.NO_PROPOSAL_CHOSEN, Buffer.alloc(0))]);
      return;
    }
    const { proposal, chosen } = pick.chosen;
    let gir: Buffer | null = null;
    let dh: DhKeyPair | null = null;
    if (chosen.dh) {
      const group = chosen.dh.id;
      if (!ke || !isDhGroupId(group) || ke.data.length !== publicLength(group)) {
        this.answer(msg, [notify(NOTIFY.INVALID_SYNTAX, Buffer.alloc(0))]);
        return;
      }
      dh = generateDh(group);
      gir = dh.computeSecret(ke.data);
      if (gir === null) {
        this.answer(msg, [notify(NOTIFY.INVALID_SYNTAX, Buffer.alloc(0))]);
        return;
      }
    }
    // §2.9: the part of the proposed selectors our policy allows, as for the first CHILD SA.
    const remoteTs = narrow(tsi.selectors, cfg.remoteSelectors);
    const localTs = narrow(tsr.selectors, cfg.localSelectors);
    if (remoteTs.length === 0 || localTs.length === 0) {
      this.emitFail(
        'ts-unacceptable',
        `traffic selectors from ${this.peerId} not acceptable: peer proposed TSi [${tsi.selectors.map(formatSelector).join(', ')}] ` +
          `TSr [${tsr.selectors.map(formatSelector).join(', ')}]; we allow remote [${cfg.remoteSelectors.map(formatSelector).join(', ')}] ` +
          `local [${cfg.localSelectors.map(formatSelector).join(', ')}]`,
      );
      this.answer(msg, [notify(NOTIFY.TS_UNACCEPTABLE, Buffer.alloc(0))]);
      return;
    }
    const wantTransport = old ? old.spec.mode === 'transport' : cfg.mode === 'transport';
    const transport = wantTransport && hasNotify(inner, NOTIFY.USE_TRANSPORT_MODE);
    const spi = nonZero(this.ctx, 4);
    const nr = this.ctx.random(NONCE_LENGTH);
    const reply: Payload[] = [];
    if (transport) reply.push(notify(NOTIFY.USE_TRANSPORT_MODE, Buffer.alloc(0)));
    reply.push(
      {
        kind: 'sa',
        proposals: [{ num: proposal.num, protocol: PROTOCOL.ESP, spi, transforms: chosenTransforms(chosen) }],
      },
      { kind: 'nonce', data: nr },
    );
    if (dh) reply.push({ kind: 'ke', group: dh.group, data: dh.publicValue });
    reply.push(
      { kind: 'ts', initiator: true, selectors: remoteTs },
      { kind: 'ts', initiator: false, selectors: localTs },
    );
    const ni = Buffer.from(nonce.data);
    const spec = this.childSpec(chosen, spi, proposal.spi, transport, localTs, remoteTs, ni, nr, gir, false);
    this.answer(msg, reply);
    const child = this.childUp(spec, formatProposal(chosenTransforms(chosen)), old ?? undefined, 'responder');
    if (old) {
      // The initiator of the rekey deletes the old SA (§2.8); until then it keeps taking packets.
      old.phase = 'rekeyed';
      const mine = this.outstanding?.childRekey;
      if (mine && mine.old === old) mine.collision = { child, ni, nr };
    }
  }

  private respondRekeyIke(
    msg: IkeMessage,
    inner: readonly Payload[],
    proposals: readonly Proposal[],
    now: number,
  ): void {
    const cfg = this.ctx.config;
    const busy = this.outstanding?.purpose;
    // §2.25.2: not while we create, rekey or delete a CHILD SA, nor while we delete this IKE SA.
    if (busy === 'rekey-child' || busy === 'new-child' || busy === 'delete-child' || busy === 'delete-ike') {
      this.answer(msg, [notify(NOTIFY.TEMPORARY_FAILURE, Buffer.alloc(0))]);
      return;
    }
    const nonce = inner.find((x) => x.kind === 'nonce');
    const ke = inner.find((x) => x.kind === 'ke');
    if (!nonce || nonce.data.length < NONCE_MIN || nonce.data.length > NONCE_MAX || !ke) {
      this.answer(msg, [notify(NOTIFY.INVALID_SYNTAX, Buffer.alloc(0))]);
      return;
    }
    const offered = proposals.filter((x) => x.protocol === PROTOCOL.IKE && x.spi.length === 8);
    const pick = pickProposal(offered, cfg.ikeProposals, 'ike', ke.group);
    if (pick.chosen === null) {
      if (pick.wantGroup !== null) {
        this.answer(msg, [notify(NOTIFY.INVALID_KE_PAYLOAD, u16(pick.wantGroup))]);
        return;
      }
      this.emitFail(
        'no-proposal-chosen',
        `no common IKE proposal with ${this.peerId} for the IKE SA rekey: peer offered ` +
          `[${formatProposals(offered.map((x) => x.transforms))}]; we accept [${formatProposals(cfg.ikeProposals)}]` +
          legacyGroupHint(
            offered.map((x) => x.transforms),
            cfg.ikeProposals,
          ),
      );
      this.answer(msg, [notify(NOTIFY.NO_PROPOSAL_CHOSEN, Buffer.alloc(0))]);
      return;
    }
    const { proposal, chosen } = pick.chosen;
    const group = ke.group;
    if (!isDhGroupId(group) || ke.data.length !== publicLength(group)) {
      this.answer(msg, [notify(NOTIFY.INVALID_SYNTAX, Buffer.alloc(0))]);
      return;
    }
    const dh = generateDh(group);
    const gir = dh.computeSecret(ke.data);
    if (gir === null) {
      this.answer(msg, [notify(NOTIFY.INVALID_SYNTAX, Buffer.alloc(0))]);
      return;
    }
    const spiR = nonZero(this.ctx, 8);
    const nr = this.ctx.random(NONCE_LENGTH);
    const ni = Buffer.from(nonce.data);
    this.answer(msg, [
      {
        kind: 'sa',
        proposals: [
          { num: proposal.num, protocol: PROTOCOL.IKE, spi: spiR, transforms: chosenTransforms(chosen) },
        ],
      },
      { kind: 'nonce', data: nr },
      { kind: 'ke', group, data: dh.publicValue },
    ]);
    // §2.18: the initiator of the rekey is the initiator of the new IKE SA.
    const fresh = this.rekeyedSa('responder', Buffer.from(proposal.spi), spiR, ni, nr, chosen, gir, now);
    const mine = this.outstanding?.ikeRekey;
    if (mine) {
      // §2.8.2: both ends rekeyed at once; which new SA survives is settled when our own answer arrives.
      mine.collision = { sa: fresh, ni, nr };
      return;
    }
    // The peer deletes this old SA; until then it still answers requests.
    this.handOver(fresh, now);
  }

  /** The new IKE SA of a rekey (§2.18), filed with the core; it reports nothing until it is handed over. */
  private rekeyedSa(
    role: Role,
    spiI: Buffer,
    spiR: Buffer,
    ni: Buffer,
    nr: Buffer,
    chosen: Chosen,
    gir: Buffer,
    now: number,
  ): IkeSa {
    const s = new IkeSa(this.ctx, role, this.remote, this.local, now);
    s.state = 'established';
    s.spiI = spiI;
    s.spiR = spiR;
    s.ni = ni;
    s.nr = nr;
    s.encapsulated = this.encapsulated;
    s.behindNat = this.behindNat;
    s.natDetected = this.natDetected;
    s.fragmentation = this.fragmentation;
    s.peerId = this.peerId;
    s.ike = chosen;
    s.dhGroup = chosen.dh!.id as DhGroupId;
    const prfId = chosen.prf!.id;
    s.prfId = isPrfId(prfId) ? prfId : null;
    const encr = encrSuite(chosen.encr.id, chosen.encr.keyLength)!;
    const integ = chosen.integ ? integSuite(chosen.integ.id) : null;
    s.keys = deriveRekeyedIkeKeys(
      this.prfId!,
      this.keys!.skD,
      s.prfId!,
      encr,
      integ,
      ni,
      nr,
      gir,
      spiI,
      spiR,
    );
    // §2.18: the new IKE SA starts its message IDs at zero both ways.
    s.nextRequestId = 0;
    s.nextPeerRequestId = 0;
    this.ctx.born.push(s);
    return s;
  }

  /**
   * §2.18: the CHILD SAs and our pending CHILD SA work move to the new IKE SA, which reports itself up; this
   * one is only deleted from now on (by us or the peer, whoever initiated the surviving rekey).
   */
  private handOver(to: IkeSa, now: number): void {
    to.children.push(...this.children);
    this.children = [];
    const childJob = (j: Job) =>
      j.kind === 'rekey-child' || j.kind === 'delete-child' || j.kind === 'new-child';
    to.queued.push(...this.queued.filter(childJob));
    to.delayed.push(...this.delayed.filter((d) => childJob(d.job)));
    this.queued = this.queued.filter((j) => j.kind === 'delete-ike');
    this.delayed = [];
    this.state = 'rekeyed';
    this.successor = to;
    this.ikeRekeyAt = null;
    to.pairRetry ??= this.pairRetry;
    this.pairRetry = null;
    to.clock = now;
    to.announceUp(now, this);
    to.pump(now);
  }

  // -------------------------------------------------------------------------------------------------------------
  // CREATE_CHILD_SA, initiator

  /** Rekeys the CHILD SA whose outbound SPI is `outboundSpi` (its lifetime, or the data plane's sequence). */
  rekeyChild(outboundSpi: number, now: number): boolean {
    this.clock = now;
    if (this.state !== 'established') return false;
    const child = this.children.find((c) => c.spec.outboundSpi === outboundSpi && c.phase === 'installed');
    if (!child) return false;
    this.enqueue(now, { kind: 'rekey-child', inboundSpi: child.spec.inboundSpi });
    return true;
  }

  rekeyIke(now: number): void {
    this.clock = now;
    if (this.state === 'established' && this.announced) this.enqueue(now, { kind: 'rekey-ike' });
  }

  /** Asks the peer for an additional CHILD SA with these selectors (§1.3.1). */
  createChild(local: readonly TrafficSelector[], remote: readonly TrafficSelector[], now: number): void {
    this.clock = now;
    if (this.state === 'established' && this.announced)
      this.enqueue(now, { kind: 'new-child', local, remote });
  }

  private startRekeyChild(job: Extract<Job, { kind: 'rekey-child' | 'new-child' }>, now: number): boolean {
    let old: ChildState | null = null;
    if (job.kind === 'rekey-child') {
      old =
        this.children.find((c) => c.spec.inboundSpi === job.inboundSpi && c.phase === 'installed') ?? null;
      if (!old) return false;
    }
    const cfg = this.ctx.config;
    const group = job.group ?? firstDh(cfg.espProposals);
    const dh = group === null ? null : generateDh(group);
    const spi = nonZero(this.ctx, 4);
    const ni = this.ctx.random(NONCE_LENGTH);
    const inner: Payload[] = [];
    if (old) {
      const rekeySpi = Buffer.alloc(4);
      rekeySpi.writeUInt32BE(old.spec.inboundSpi);
      inner.push({
        kind: 'notify',
        protocol: PROTOCOL.ESP,
        spi: rekeySpi,
        notify: NOTIFY.REKEY_SA,
        data: Buffer.alloc(0),
      });
    }
    const mode = old ? old.spec.mode : cfg.mode;
    if (mode === 'transport') inner.push(notify(NOTIFY.USE_TRANSPORT_MODE, Buffer.alloc(0)));
    inner.push({ kind: 'sa', proposals: espOffer(cfg.espProposals, spi, true) }, { kind: 'nonce', data: ni });
    if (dh) inner.push({ kind: 'ke', group: dh.group, data: dh.publicValue });
    // §2.9.2: a rekey proposes the selectors the SA has.
    inner.push(
      {
        kind: 'ts',
        initiator: true,
        selectors: old ? old.spec.localSelectors : job.kind === 'new-child' ? job.local : [],
      },
      {
        kind: 'ts',
        initiator: false,
        selectors: old ? old.spec.remoteSelectors : job.kind === 'new-child' ? job.remote : [],
      },
    );
    this.sendRequest(now, EXCHANGE.CREATE_CHILD_SA, job.kind, inner, {
      job,
      childRekey: { old, spi, ni, dh, group, collision: null },
    });
    return true;
  }

  private startRekeyIke(job: Extract<Job, { kind: 'rekey-ike' }>, now: number): boolean {
    if (!this.announced) return false;
    const cfg = this.ctx.config;
    const group = job.group ?? this.dhGroup!;
    const dh = generateDh(group);
    const spi = nonZero(this.ctx, 8);
    const ni = this.ctx.random(NONCE_LENGTH);
    this.sendRequest(
      now,
      EXCHANGE.CREATE_CHILD_SA,
      'rekey-ike',
      [
        {
          kind: 'sa',
          proposals: cfg.ikeProposals.map((transforms, i) => ({
            num: i + 1,
            protocol: PROTOCOL.IKE,
            spi,
            transforms,
          })),
        },
        { kind: 'nonce', data: ni },
        { kind: 'ke', group, data: dh.publicValue },
      ],
      { job, ikeRekey: { spi, ni, dh, group, collision: null } },
    );
    return true;
  }

  /** An error notify in a CREATE_CHILD_SA answer: retry later, retry with another group, or report it. */
  private rekeyRefused(
    out: Outstanding,
    err: Extract<Payload, { kind: 'notify' }>,
    what: string,
    offered: readonly (readonly Transform[])[],
    now: number,
  ): void {
    const job = out.job!;
    if (err.notify === NOTIFY.TEMPORARY_FAILURE) {
      // §2.25: try again after a random delay.
      const r = this.ctx.random(2).readUInt16BE(0) / 0x10000;
      this.delayed.push({ at: now + RETRY_MIN_MS + Math.floor(RETRY_JITTER_MS * r), job });
      return;
    }
    if (
      err.notify === NOTIFY.INVALID_KE_PAYLOAD &&
      err.data.length === 2 &&
      (job.kind === 'rekey-child' || job.kind === 'rekey-ike' || job.kind === 'new-child')
    ) {
      const group = err.data.readUInt16BE(0);
      const ours = offered.some((t) => t.some((x) => x.type === TRANSFORM_TYPE.DH && x.id === group));
      if (ours && isDhGroupId(group) && job.group === undefined) {
        // §1.3: repeat the request with the group the peer asked for (once).
        this.queued.unshift({ ...job, group });
        return;
      }
    }
    if (err.notify === NOTIFY.NO_PROPOSAL_CHOSEN) {
      this.emitFail(
        job.kind === 'rekey-ike' ? 'no-proposal-chosen' : 'child-no-proposal-chosen',
        `peer ${this.peerId} answered NO_PROPOSAL_CHOSEN to ${what}: none of our proposals [${formatProposals(offered)}] is acceptable to it`,
      );
    } else if (err.notify === NOTIFY.TS_UNACCEPTABLE) {
      this.emitFail('ts-unacceptable', `peer ${this.peerId} answered TS_UNACCEPTABLE to ${what}`);
    } else if (err.notify !== NOTIFY.CHILD_SA_NOT_FOUND) {
      this.emitFail('peer-error', `peer ${this.peerId} refused ${what} with error notify ${err.notify}`);
    }
  }

  private onRekeyChildResponse(out: Outstanding, inner: readonly Payload[], now: number): void {
    const cfg = this.ctx.config;
    const x = out.childRekey!;
    const err = inner.find(
      (p): p is Extract<Payload, { kind: 'notify' }> => p.kind === 'notify' && p.notify <= NOTIFY_ERROR_MAX,
    );
    if (err) {
      // After a crossed rekey the peer's new SA stands alone; nothing to retry.
      const what = x.old ? 'a CHILD SA rekey' : 'an additional CHILD SA';
      if (x.collision === null) this.rekeyRefused(out, err, what, cfg.espProposals, now);
      return;
    }
    const sa = inner.find((p) => p.kind === 'sa');
    const nonce = inner.find((p) => p.kind === 'nonce');
    const ke = inner.find((p) => p.kind === 'ke');
    const tsi = inner.find((p): p is Extract<Payload, { kind: 'ts' }> => p.kind === 'ts' && p.initiator);
    const tsr = inner.find((p): p is Extract<Payload, { kind: 'ts' }> => p.kind === 'ts' && !p.initiator);
    const bad = (why: string) =>
      this.emitFail('bad-response', `peer ${this.peerId} answered a CHILD SA rekey ${why}`);
    if (!sa || !nonce || !tsi || !tsr || nonce.data.length < NONCE_MIN || nonce.data.length > NONCE_MAX) {
      bad('without SA, nonce or traffic selectors');
      return;
    }
    const c = this.acceptChosen(sa.proposals, cfg.espProposals, 'esp-ke', 4);
    if (c === null || (c.chosen.dh?.id ?? null) !== x.group) {
      bad('with a proposal we did not offer');
      return;
    }
    let gir: Buffer | null = null;
    if (x.dh) {
      if (!ke || ke.group !== x.group) {
        bad('without the KE payload of our group');
        return;
      }
      gir = x.dh.computeSecret(ke.data);
      if (gir === null) {
        bad('with an invalid KE payload');
        return;
      }
    }
    if (
      tsi.selectors.length === 0 ||
      tsr.selectors.length === 0 ||
      !within(tsi.selectors, cfg.localSelectors) ||
      !within(tsr.selectors, cfg.remoteSelectors)
    ) {
      bad('with traffic selectors outside those we proposed');
      return;
    }
    const mode = x.old ? x.old.spec.mode : cfg.mode;
    const transport = mode === 'transport' && hasNotify(inner, NOTIFY.USE_TRANSPORT_MODE);
    const nr = Buffer.from(nonce.data);
    const spec = this.childSpec(
      c.chosen,
      x.spi,
      c.spi,
      transport,
      tsi.selectors,
      tsr.selectors,
      x.ni,
      nr,
      gir,
      true,
    );
    const child = this.childUp(spec, formatProposal(chosenTransforms(c.chosen)), x.old ?? undefined);
    // A new CHILD SA, or the old one deleted by the peer meanwhile: the new SA simply stands.
    if (x.old === null || !this.children.includes(x.old)) return;
    if (x.collision && lowestNonce([x.ni, nr], [x.collision.ni, x.collision.nr])) {
      // §2.8.1: our exchange had the lowest nonce, so its SA is redundant and we delete it; the peer's
      // rekey won and the peer deletes the old SA.
      child.phase = 'rekeyed';
      this.queued.unshift({ kind: 'delete-child', inboundSpi: child.spec.inboundSpi, reason: 'rekeyed' });
      return;
    }
    // We won (or no collision): the peer deletes its redundant SA, we delete the old one.
    if (x.collision) x.collision.child.phase = 'rekeyed';
    x.old.phase = 'rekeyed';
    this.queued.unshift({ kind: 'delete-child', inboundSpi: x.old.spec.inboundSpi, reason: 'rekeyed' });
  }

  private onRekeyIkeResponse(out: Outstanding, inner: readonly Payload[], now: number): void {
    const cfg = this.ctx.config;
    const x = out.ikeRekey!;
    const err = inner.find(
      (p): p is Extract<Payload, { kind: 'notify' }> => p.kind === 'notify' && p.notify <= NOTIFY_ERROR_MAX,
    );
    const fallBack = () => {
      // Ours failed; a crossing rekey of the peer's is then the one that stands.
      if (x.collision) this.handOver(x.collision.sa, now);
    };
    if (err) {
      if (x.collision === null) this.rekeyRefused(out, err, 'the IKE SA rekey', cfg.ikeProposals, now);
      fallBack();
      return;
    }
    const sa = inner.find((p) => p.kind === 'sa');
    const nonce = inner.find((p) => p.kind === 'nonce');
    const ke = inner.find((p) => p.kind === 'ke');
    const c = sa ? this.acceptChosen(sa.proposals, cfg.ikeProposals, 'ike', 8) : null;
    const gir =
      c && ke && ke.group === x.group && c.chosen.dh?.id === x.group ? x.dh.computeSecret(ke.data) : null;
    if (
      !c ||
      !nonce ||
      nonce.data.length < NONCE_MIN ||
      nonce.data.length > NONCE_MAX ||
      gir === null ||
      c.spi.every((b) => b === 0)
    ) {
      this.emitFail(
        'bad-response',
        `peer ${this.peerId} answered the IKE SA rekey with a malformed or foreign proposal`,
      );
      fallBack();
      return;
    }
    const nr = Buffer.from(nonce.data);
    const fresh = this.rekeyedSa('initiator', x.spi, Buffer.from(c.spi), x.ni, nr, c.chosen, gir, now);
    if (x.collision && lowestNonce([x.ni, nr], [x.collision.ni, x.collision.nr])) {
      // §2.8.2: ours is redundant: the peer's new SA inherits everything, we delete ours, the peer deletes
      // the old one.
      this.handOver(x.collision.sa, now);
      fresh.enqueue(now, { kind: 'delete-ike' });
      return;
    }
    // Ours survives (the peer deletes its redundant one); we delete the old SA.
    this.handOver(fresh, now);
    this.enqueue(now, { kind: 'delete-ike' });
  }

  // -------------------------------------------------------------------------------------------------------------
  // INFORMATIONAL

  private onInformationalRequest(msg: IkeMessage, inner: readonly Payload[], _now: number): void {
    if (hasNotify(inner, NOTIFY.AUTHENTICATION_FAILED)) {
      // §2.21.2: the initiator did not accept our AUTH after we answered IKE_AUTH; the IKE SA is gone for it.
      this.answer(msg, []);
      this.fail(
        'authentication-failed',
        `peer ${this.peerId} refused our authentication after IKE_AUTH (INFORMATIONAL AUTHENTICATION_FAILED): ` +
          (this.ctx.config.certificate
            ? 'it does not accept our certificate or ID (see its log)'
            : 'the pre-shared keys or IDs differ'),
      );
      return;
    }
    const reply: Payload[] = [];
    let closeIke = false;
    // After an IKE rekey the peer may still name CHILD SAs that moved to the new IKE SA (§2.25.2).
    const owner: IkeSa = this.state === 'rekeyed' && this.successor ? this.successor : this;
    for (const d of inner) {
      if (d.kind !== 'delete') continue;
      if (d.protocol === PROTOCOL.IKE) closeIke = true;
      else if (d.protocol === PROTOCOL.ESP) {
        for (const s of d.spis) {
          if (s.length !== 4) continue;
          // §1.4.1: the peer names the SPIs of its inbound SAs (our outbound); we answer with our inbound ones,
          // except for SAs we are deleting ourselves (crossed deletes).
          const child = owner.children.find((c) => c.spec.outboundSpi === s.readUInt32BE(0));
          if (!child) continue;
          if (child.phase !== 'deleting') {
            const mine = Buffer.alloc(4);
            mine.writeUInt32BE(child.spec.inboundSpi);
            reply.push({ kind: 'delete', protocol: PROTOCOL.ESP, spis: [mine] });
          }
          const lost = child.phase === 'installed';
          owner.childDown(child, child.phase === 'rekeyed' ? 'rekeyed' : 'deleted by peer');
          if (lost) owner.lostChild(this.clock);
        }
      }
    }
    this.answer(msg, reply);
    if (closeIke) {
      const pending = this.outstanding?.ikeRekey?.collision;
      // The peer settled a crossed IKE rekey before our answer arrived: its new SA is the survivor.
      if (pending && this.state === 'established') this.handOver(pending.sa, this.clock);
      this.close(this.state === 'rekeyed' ? 'rekeyed' : 'deleted by peer');
    }
  }

  /** An empty INFORMATIONAL request: the liveness check of §2.4. */
  dpd(now: number): void {
    this.clock = now;
    if (this.state === 'established') this.enqueue(now, { kind: 'dpd' });
  }

  deleteIke(now: number): void {
    this.clock = now;
    if (this.state === 'established') this.enqueue(now, { kind: 'delete-ike' });
    else if (this.state !== 'rekeyed') this.close('deleted');
  }

  /** A CHILD SA past a hard limit the data plane counts (bytes): gone here at once, the peer told (§1.4.1). */
  expireChild(inboundSpi: number, reason: string, now: number): boolean {
    this.clock = now;
    const child = this.children.find((c) => c.spec.inboundSpi === inboundSpi);
    if (!child) return false;
    const lost = child.phase === 'installed';
    this.childDown(child, reason);
    if (this.state === 'established')
      this.enqueue(now, { kind: 'delete-child', inboundSpi, reason: 'expired', gone: true });
    if (lost) this.lostChild(now);
    return true;
  }

  /** Deletes one CHILD SA (INFORMATIONAL delete, §1.4.1), as an operator's terminate does; false if none. */
  deleteChildSa(inboundSpi: number, now: number): boolean {
    this.clock = now;
    const child = this.children.find((c) => c.spec.inboundSpi === inboundSpi && c.phase === 'installed');
    if (!child || this.state !== 'established') return false;
    this.enqueue(now, { kind: 'delete-child', inboundSpi, reason: 'deleted' });
    return true;
  }

  /**
   * A per-pair site's CHILD SA went while the IKE SA lives (its hard lifetime, the data plane's byte limit, or
   * the peer's delete): its subnet pair is asked for again with CREATE_CHILD_SA (§1.3.1) after
   * PAIR_RETRY_FIRST_MS, and again with a doubling wait while it stays without one; the IKE SA is kept.
   */
  private lostChild(now: number): void {
    if (!this.ctx.config.childPerSubnetPair || this.state !== 'established') return;
    this.pairRetry ??= { at: now + PAIR_RETRY_FIRST_MS, waitMs: PAIR_RETRY_FIRST_MS };
  }

  /** The configured subnet pairs no CHILD SA carries and no request of ours asks for. */
  private missingPairs(): { local: readonly TrafficSelector[]; remote: readonly TrafficSelector[] }[] {
    const asked = [
      ...this.queued,
      ...this.delayed.map((d) => d.job),
      ...(this.outstanding?.job ? [this.outstanding.job] : []),
    ];
    return this.ctx.config.childSelectorPairs.filter((pair) => {
      // A CHILD SA carries a pair when it holds it, or lies inside it (the peer may have narrowed it, §2.9).
      const carried = this.children.some(
        (c) =>
          c.phase !== 'deleting' &&
          ((within(pair.local, c.spec.localSelectors) && within(pair.remote, c.spec.remoteSelectors)) ||
            (within(c.spec.localSelectors, pair.local) && within(c.spec.remoteSelectors, pair.remote))),
      );
      const pending = asked.some(
        (j) =>
          j.kind === 'new-child' &&
          JSON.stringify([j.local, j.remote]) === JSON.stringify([pair.local, pair.remote]),
      );
      return !carried && !pending;
    });
  }

  /** Asks again for the pairs that lost their CHILD SA, and sets the next look (doubling, bounded). */
  private askMissingPairs(now: number): void {
    const retry = this.pairRetry;
    if (retry === null) return;
    const missing = this.missingPairs();
    if (missing.length === 0) {
      this.pairRetry = null;
      return;
    }
    const wait = Math.min(retry.waitMs * 2, PAIR_RETRY_MAX_MS);
    this.pairRetry = { at: now + wait, waitMs: wait };
    for (const pair of missing)
      this.enqueue(now, { kind: 'new-child', local: pair.local, remote: pair.remote });
  }

  deleteChild(now: number): void {
    this.clock = now;
    if (this.state !== 'established') return;
    for (const c of this.children)
      if (c.phase === 'installed')
        this.enqueue(now, { kind: 'delete-child', inboundSpi: c.spec.inboundSpi, reason: 'deleted' });
  }

  private enqueue(now: number, job: Job): void {
    const same = (j: Job) => JSON.stringify(j) === JSON.stringify(job);
    if (!this.queued.some(same) && !(this.outstanding?.job && same(this.outstanding.job)))
      this.queued.push(job);
    this.pump(now);
  }

  /** Window size 1 (§2.3): one request of ours in flight at a time. */
  private pump(now: number): void {
    while (this.outstanding === null && this.queued.length > 0) {
      if (this.state === 'rekeyed') this.queued = this.queued.filter((j) => j.kind === 'delete-ike');
      else if (this.state !== 'established') return;
      const job = this.queued.shift();
      if (job === undefined) return;
      switch (job.kind) {
        case 'dpd':
          this.sendRequest(now, EXCHANGE.INFORMATIONAL, 'dpd', [], { job });
          break;
        case 'delete-ike':
          this.sendRequest(
            now,
            EXCHANGE.INFORMATIONAL,
            'delete-ike',
            [{ kind: 'delete', protocol: PROTOCOL.IKE, spis: [] }],
            { job },
          );
          break;
        case 'delete-child': {
          const child = this.children.find((c) => c.spec.inboundSpi === job.inboundSpi);
          if (!child && job.gone !== true) break;
          if (child) child.phase = 'deleting';
          const spi = Buffer.alloc(4);
          spi.writeUInt32BE(job.inboundSpi);
          this.sendRequest(
            now,
            EXCHANGE.INFORMATIONAL,
            'delete-child',
            [{ kind: 'delete', protocol: PROTOCOL.ESP, spis: [spi] }],
            { job },
          );
          break;
        }
        case 'rekey-child':
        case 'new-child':
          this.startRekeyChild(job, now);
          break;
        case 'rekey-ike':
          this.startRekeyIke(job, now);
          break;
      }
    }
  }

  private onInformationalResponse(out: Outstanding): void {
    const job = out.job;
    if (job?.kind === 'delete-ike') {
      this.close(this.state === 'rekeyed' ? 'rekeyed' : 'deleted');
      return;
    }
    if (job?.kind === 'delete-child') {
      // The SA ends only now: packets already sent on it were still taken (§1.4.1).
      const child = this.children.find((c) => c.spec.inboundSpi === job.inboundSpi);
      if (child) this.childDown(child, job.reason);
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Dispatch of one message addressed to this SA

  handle(msg: IkeMessage, from: UdpEndpoint, local: UdpEndpoint, now: number): Handled {
    if (this.state === 'closed') return 'sa-closed';
    this.clock = now;
    const h = msg.header;
    // The I flag says who sent it: the original initiator, or the original responder (§3.1).
    if (h.initiator !== (this.role === 'responder')) return 'wrong-role';
    if (!h.spiI.equals(this.spiI)) return 'unknown-spi';
    // A retransmitted IKE_SA_INIT request still carries a zero SPIr.
    const initRetransmit = h.exchange === EXCHANGE.IKE_SA_INIT && !h.response && h.messageId === 0;
    if (this.state !== 'init-sent' && !initRetransmit && !h.spiR.equals(this.spiR)) return 'unknown-spi';
    const last = msg.payloads[msg.payloads.length - 1];
    if (last?.kind === 'skf') return this.handleFragment(msg, last, from, local, now);
    if (h.response) return this.handleResponse(msg, from, now);
    return this.handleRequest(msg, from, local, now);
  }

  /**
   * One Encrypted Fragment payload (RFC 7383 §2.6): the message ID must be one we expect, the fragment is
   * authenticated and decrypted on its own before it is kept, and the message is handled as usual once its
   * last fragment is in. A retransmitted request we already answered is answered again on its fragment 1
   * only (one answer per retransmission, not one per fragment).
   */
  private handleFragment(
    msg: IkeMessage,
    f: Extract<Payload, { kind: 'skf' }>,
    from: UdpEndpoint,
    local: UdpEndpoint,
    now: number,
  ): Handled {
    const h = msg.header;
    if (!this.fragmentation || this.keys === null || h.exchange === EXCHANGE.IKE_SA_INIT)
      return 'fragmentation-not-negotiated';
    if (f.number === 0 || f.total === 0 || f.number > f.total) return 'bad-fragment-number';
    if (f.total > FRAGMENTS_MAX) return 'too-many-fragments';
    let retransmitted = false;
    if (h.response) {
      const out = this.outstanding;
      if (out === null || h.messageId !== out.id || out.purpose === 'init') return 'unexpected-response';
    } else if (this.lastAnswer && h.messageId === this.lastAnswer.id) {
      retransmitted = true;
    } else {
      const refused = this.refuseRequest(h);
      if (refused !== null) return refused;
    }
    const piece = openFragment(msg, this.incomingKeys());
    if (!piece.ok) return piece.reason;
    if (retransmitted) {
      if (f.number !== 1) return 'retransmitted-request';
      this.answerAgain(now);
      return 'processed';
    }
    let r = this.reassembly;
    if (
      r !== null &&
      (r.id !== h.messageId || r.response !== h.response || now - r.started > REASSEMBLY_TIMEOUT_MS)
    ) {
      this.ctx.fragments.discarded++;
      r = null;
    }
    if (r !== null && f.total !== r.total) {
      // §2.6: more fragments than before means the sender fragmented the message anew (smaller): start over;
      // fewer means this one belongs to an older fragmentation.
      if (f.total < r.total) return 'stale-fragment';
      this.ctx.fragments.discarded++;
      r = null;
    }
    if (r === null) {
      r = {
        id: h.messageId,
        response: h.response,
        total: f.total,
        pieces: new Array<Buffer | undefined>(f.total).fill(undefined),
        started: now,
        count: 0,
        bytes: 0,
        firstInner: 0,
      };
    }
    this.reassembly = r;
    if (r.pieces[f.number - 1] !== undefined) return 'duplicate-fragment';
    if (r.bytes + piece.value.length > REASSEMBLY_MAX_BYTES) {
      this.reassembly = null;
      this.ctx.fragments.discarded++;
      return 'reassembly-too-large';
    }
    r.pieces[f.number - 1] = Buffer.from(piece.value);
    r.count++;
    r.bytes += piece.value.length;
    if (f.number === 1) r.firstInner = f.firstInner;
    this.ctx.fragments.received++;
    if (r.count < r.total) return 'processed';
    this.reassembly = null;
    this.ctx.fragments.reassembled++;
    const content = Buffer.concat(r.pieces as Buffer[]);
    const inner = parsePayloadChain(r.firstInner, content, 0, content.length);
    if (!inner.ok) return inner.reason;
    if (h.response) return this.handleResponse(msg, from, now, inner.value);
    return this.handleRequest(msg, from, local, now, inner.value);
  }

  /** Why a request with this header cannot be taken now (wrong message ID or exchange), or null. */
  private refuseRequest(h: IkeHeader): Handled | null {
    if (h.messageId !== this.nextPeerRequestId) return 'unexpected-message-id';
    if (h.exchange === EXCHANGE.IKE_SA_INIT) return 'unexpected-request';
    if (this.state === 'init-sent' || this.state === 'auth-sent') return 'unexpected-request';
    if (this.state === 'auth-wait' && h.exchange !== EXCHANGE.IKE_AUTH) return 'unexpected-request';
    if ((this.state === 'established' || this.state === 'rekeyed') && h.exchange === EXCHANGE.IKE_AUTH)
      return 'unexpected-request';
    return null;
  }

  /** `opened`: the inner payloads when the message came in fragments and is already authenticated. */
  private handleResponse(
    msg: IkeMessage,
    from: UdpEndpoint,
    now: number,
    opened?: readonly Payload[],
  ): Handled {
    const out = this.outstanding;
    if (out === null || msg.header.messageId !== out.id) return 'unexpected-response';
    if (out.purpose === 'init') {
      if (msg.header.exchange !== EXCHANGE.IKE_SA_INIT) return 'unexpected-response';
      return this.onInitResponse(msg, now);
    }
    const inner: Parsed<readonly Payload[]> =
      opened !== undefined ? { ok: true, value: opened } : openMessage(msg, this.incomingKeys());
    if (!inner.ok) return inner.reason;
    const expected =
      out.purpose === 'auth'
        ? EXCHANGE.IKE_AUTH
        : out.purpose === 'rekey-child' || out.purpose === 'rekey-ike' || out.purpose === 'new-child'
          ? EXCHANGE.CREATE_CHILD_SA
          : EXCHANGE.INFORMATIONAL;
    if (msg.header.exchange !== expected) return 'unexpected-response';
    this.lastHeard = now;
    this.remote = from;
    if (out.purpose === 'auth') {
      this.onAuthResponse(inner.value, now);
      return 'processed';
    }
    this.outstanding = null;
    if (out.purpose === 'rekey-child' || out.purpose === 'new-child')
      this.onRekeyChildResponse(out, inner.value, now);
    else if (out.purpose === 'rekey-ike') this.onRekeyIkeResponse(out, inner.value, now);
    else this.onInformationalResponse(out);
    this.pump(now);
    return 'processed';
  }

  private handleRequest(
    msg: IkeMessage,
    from: UdpEndpoint,
    local: UdpEndpoint,
    now: number,
    opened?: readonly Payload[],
  ): Handled {
    const id = msg.header.messageId;
    if (this.lastAnswer && id === this.lastAnswer.id) {
      // §2.1: a retransmitted request is answered with the same response, not processed again.
      if (!msg.raw.equals(this.lastAnswer.request)) return 'retransmitted-request';
      this.answerAgain(now);
      return 'processed';
    }
    const refused = this.refuseRequest(msg.header);
    if (refused !== null) return refused;
    const inner: Parsed<readonly Payload[]> =
      opened !== undefined ? { ok: true, value: opened } : openMessage(msg, this.incomingKeys());
    if (!inner.ok) return inner.reason;
    // Authentic: the peer may have moved (NAT mapping, port 4500).
    this.remote = from;
    this.local = local;
    if (local.port === NATT_PORT) this.encapsulated = true;
    this.lastHeard = now;
    this.nextPeerRequestId = id + 1;
    switch (msg.header.exchange) {
      case EXCHANGE.IKE_AUTH:
        this.onAuthRequest(msg, inner.value, now);
        break;
      case EXCHANGE.INFORMATIONAL:
        this.onInformationalRequest(msg, inner.value, now);
        break;
      case EXCHANGE.CREATE_CHILD_SA:
        this.onCreateChildRequest(msg, inner.value, now);
        break;
      default:
        this.answer(msg, [notify(NOTIFY.INVALID_SYNTAX, Buffer.alloc(0))]);
    }
    return 'processed';
  }

  // -------------------------------------------------------------------------------------------------------------
  // Sending, retransmission and timers

  private outgoingKeys(): SkKeys {
    return this.role === 'initiator' ? this.keys!.initiator : this.keys!.responder;
  }

  private incomingKeys(): SkKeys {
    return this.role === 'initiator' ? this.keys!.responder : this.keys!.initiator;
  }

  private header(exchange: number, response: boolean, messageId: number): Omit<IkeHeader, 'nextPayload'> {
    return {
      spiI: this.spiI,
      spiR: this.spiR,
      exchange,
      initiator: this.role === 'initiator',
      response,
      messageId,
    };
  }

  /** One datagram, or fragments when both ends agreed to them and the message would not fit (RFC 7383 §2.5). */
  private seal(
    exchange: number,
    response: boolean,
    messageId: number,
    inner: readonly Payload[],
  ): readonly Buffer[] {
    const keys = this.outgoingKeys();
    const h = this.header(exchange, response, messageId);
    if (!this.fragmentation) return [sealMessage(h, inner, keys, this.ctx.random(keys.encr.ivLength))];
    // §2.5.1: the fragment size counts the whole IP datagram; what is left is for the IKE message.
    const ipHeader = this.remote.address.includes(':') ? IPV6_HEADER_LENGTH : IPV4_HEADER_LENGTH;
    const room =
      this.fragmentSize - ipHeader - UDP_HEADER_LENGTH - (this.encapsulated ? NON_ESP_MARKER_LENGTH : 0);
    return sealFragments(h, inner, keys, (n) => this.ctx.random(n), room);
  }

  private sendRequest(
    now: number,
    exchange: number,
    purpose: Purpose,
    inner: readonly Payload[],
    context: Pick<Outstanding, 'job' | 'childRekey' | 'ikeRekey'> = {},
  ): void {
    const id = this.nextRequestId++;
    this.request(now, id, purpose, this.seal(exchange, false, id, inner));
    Object.assign(this.outstanding!, context, { reseal: () => this.seal(exchange, false, id, inner) });
  }

  /**
   * §2.5.2: a request still unanswered after FRAGMENT_SHRINK_AFTER retransmissions, with a datagram larger than
   * the family's minimum, is cut again to that size (re-encrypted under the same message ID; the receiver
   * starts its reassembly over on the larger fragment count, §2.6).
   */
  private shrinkFragments(out: { message: readonly Buffer[]; reseal?: () => readonly Buffer[] }): void {
    if (!this.fragmentation || !out.reseal) return;
    const v6 = this.remote.address.includes(':');
    const fallback = v6 ? FRAGMENT_SIZE_FALLBACK_V6 : FRAGMENT_SIZE_FALLBACK_V4;
    if (this.fragmentSize <= fallback) return;
    const overhead =
      (v6 ? IPV6_HEADER_LENGTH : IPV4_HEADER_LENGTH) +
      UDP_HEADER_LENGTH +
      (this.encapsulated ? NON_ESP_MARKER_LENGTH : 0);
    if (!out.message.some((m) => m.length + overhead > fallback)) return;
    this.fragmentSize = fallback;
    out.message = out.reseal();
    this.ctx.fragments.shrunk++;
  }

  /**
   * The cached response to a retransmitted request (§2.1). From the FRAGMENT_SHRINK_AFTER-th retransmission
   * on, our response evidently does not arrive: a fragmented one larger than the family's minimum is cut
   * again to that size (§2.5.2), as our own requests are.
   */
  private answerAgain(now: number): void {
    const last = this.lastAnswer!;
    last.repeats = (last.repeats ?? 0) + 1;
    if (last.repeats >= FRAGMENT_SHRINK_AFTER && last.reseal) {
      const out = { message: last.response, reseal: last.reseal };
      this.shrinkFragments(out);
      last.response = out.message;
    }
    this.sendRaw(last.response, now);
  }

  private request(now: number, id: number, purpose: Purpose, message: readonly Buffer[]): void {
    this.outstanding = {
      id,
      purpose,
      message,
      tries: 0,
      deadline: now + this.ctx.config.retransmitTimeoutMs,
    };
    this.sendRaw(message, now);
  }

  private answer(req: IkeMessage, inner: readonly Payload[]): void {
    const response = this.seal(req.header.exchange, true, req.header.messageId, inner);
    this.lastAnswer = {
      id: req.header.messageId,
      request: req.raw,
      response,
      repeats: 0,
      reseal: () => this.seal(req.header.exchange, true, req.header.messageId, inner),
    };
    this.sendRaw(response, this.lastSent);
  }

  private sendRaw(messages: readonly Buffer[], now: number): void {
    this.lastSent = Math.max(this.lastSent, now);
    if (messages.length > 1) this.ctx.fragments.sent += messages.length;
    for (const message of messages) {
      const data = this.encapsulated
        ? Buffer.concat([Buffer.alloc(NON_ESP_MARKER_LENGTH), message])
        : message;
      this.ctx.out.push({
        type: 'send',
        data,
        remote: this.remote,
        localPort: this.encapsulated ? NATT_PORT : this.local.port,
        nonEspMarker: this.encapsulated,
      });
    }
  }

  nextDeadline(): number | null {
    if (this.state === 'closed') return null;
    const cfg = this.ctx.config;
    const times: number[] = [];
    if (this.outstanding) times.push(this.outstanding.deadline);
    if (this.state === 'auth-wait') times.push(this.created + HALF_OPEN_TIMEOUT_MS);
    if (this.ikeHardAt !== null) times.push(this.ikeHardAt);
    for (const c of this.children) if (c.hardAt !== null) times.push(c.hardAt);
    if (this.state === 'established') {
      if (this.outstanding === null && cfg.dpdIntervalMs > 0) times.push(this.lastHeard + cfg.dpdIntervalMs);
      if (this.behindNat && cfg.keepaliveIntervalMs > 0) times.push(this.lastSent + cfg.keepaliveIntervalMs);
      if (this.ikeRekeyAt !== null) times.push(this.ikeRekeyAt);
      for (const c of this.children) if (c.phase === 'installed' && c.rekeyAt !== null) times.push(c.rekeyAt);
      for (const d of this.delayed) times.push(d.at);
      if (this.pairRetry !== null) times.push(this.pairRetry.at);
    }
    return times.length === 0 ? null : Math.min(...times);
  }

  tick(now: number): void {
    if (this.state === 'closed') return;
    this.clock = now;
    const cfg = this.ctx.config;
    if (this.state === 'auth-wait' && now >= this.created + HALF_OPEN_TIMEOUT_MS) {
      this.close('IKE_AUTH not received');
      return;
    }
    // Hard lifetimes (RFC 7296 §2.8): an SA past its own is deleted here at once, whatever became of its rekey.
    if (this.ikeHardAt !== null && now >= this.ikeHardAt) {
      this.close('hard lifetime reached (the IKE SA was not rekeyed in time)');
      return;
    }
    for (const c of [...this.children]) {
      if (c.hardAt === null || now < c.hardAt) continue;
      const lost = c.phase === 'installed';
      this.childDown(c, 'hard lifetime reached (the CHILD SA was not rekeyed in time)');
      if (lost) this.lostChild(now);
      // §1.4.1: tell the peer, after whatever exchange is under way.
      if (this.state === 'established')
        this.enqueue(now, {
          kind: 'delete-child',
          inboundSpi: c.spec.inboundSpi,
          reason: 'expired',
          gone: true,
        });
    }
    if (this.reassembly !== null && now - this.reassembly.started > REASSEMBLY_TIMEOUT_MS) {
      this.reassembly = null;
      this.ctx.fragments.discarded++;
    }
    const out = this.outstanding;
    if (out && now >= out.deadline) {
      if (out.tries >= cfg.retransmitTries) {
        const what = out.purpose === 'dpd' ? 'liveness check' : out.purpose;
        if (this.state !== 'established' && this.state !== 'rekeyed') {
          this.fail(
            'peer-unreachable',
            `no answer from ${this.remote.address} to ${what} after ${out.tries} retransmissions`,
          );
        } else
          this.close(`peer ${this.remote.address} did not answer the ${what} (${out.tries} retransmissions)`);
        return;
      }
      out.tries++;
      // Exponential backoff: timeout * base^tries after each send.
      out.deadline = now + Math.round(cfg.retransmitTimeoutMs * Math.pow(cfg.retransmitBase, out.tries));
      if (out.tries > FRAGMENT_SHRINK_AFTER) this.shrinkFragments(out);
      this.sendRaw(out.message, now);
    }
    if (this.state === 'established') {
      if (this.outstanding === null && cfg.dpdIntervalMs > 0 && now >= this.lastHeard + cfg.dpdIntervalMs)
        this.dpd(now);
      if (this.behindNat && cfg.keepaliveIntervalMs > 0 && now >= this.lastSent + cfg.keepaliveIntervalMs) {
        // RFC 3948 §2.3: the keepalive is one 0xFF byte on port 4500, no marker.
        this.lastSent = now;
        this.ctx.out.push({
          type: 'send',
          data: Buffer.of(NATT_KEEPALIVE),
          remote: this.remote,
          localPort: NATT_PORT,
          nonEspMarker: false,
        });
      }
      // Lifetimes: whichever side reaches its (jittered) rekey time first initiates.
      if (this.ikeRekeyAt !== null && now >= this.ikeRekeyAt) {
        this.ikeRekeyAt = null;
        this.enqueue(now, { kind: 'rekey-ike' });
      }
      for (const c of this.children) {
        if (c.phase === 'installed' && c.rekeyAt !== null && now >= c.rekeyAt) {
          c.rekeyAt = null;
          this.enqueue(now, { kind: 'rekey-child', inboundSpi: c.spec.inboundSpi });
        }
      }
      const due = this.delayed.filter((d) => now >= d.at);
      this.delayed = this.delayed.filter((d) => now < d.at);
      for (const d of due) this.enqueue(now, d.job);
      if (this.pairRetry !== null && now >= this.pairRetry.at) this.askMissingPairs(now);
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Ending

  private emitFail(failure: IkeFailure, message: string): void {
    this.ctx.out.push({ type: 'failed', failure, message });
  }

  /** A failure that ends the IKE SA. */
  private fail(failure: IkeFailure, message: string): void {
    this.emitFail(failure, message);
    this.close(message);
  }

  private childDown(child: ChildState, reason: string): void {
    const i = this.children.indexOf(child);
    if (i < 0) return;
    this.children.splice(i, 1);
    const { inboundSpi, outboundSpi } = child.spec;
    this.ctx.out.push({ type: 'child-sa-down', inboundSpi, outboundSpi, reason });
  }

  close(reason: string): void {
    if (this.state === 'closed') return;
    for (const c of [...this.children]) this.childDown(c, reason);
    this.state = 'closed';
    this.outstanding = null;
    this.queued = [];
    this.delayed = [];
    if (this.announced)
      this.ctx.out.push({
        type: 'ike-sa-down',
        spiI: this.spiI.toString('hex'),
        spiR: this.spiR.toString('hex'),
        reason,
      });
  }
}

// ---------------------------------------------------------------------------------------------------------------

function notify(type: number, data: Buffer): Payload {
  return { kind: 'notify', protocol: 0, spi: Buffer.alloc(0), notify: type, data };
}

function notifies(p: readonly Payload[], type: number): Extract<Payload, { kind: 'notify' }>[] {
  return p.filter((x): x is Extract<Payload, { kind: 'notify' }> => x.kind === 'notify' && x.notify === type);
}

function hasNotify(p: readonly Payload[], type: number): boolean {
  return notifies(p, type).length > 0;
}

function nonZero(ctx: SaContext, n: number): Buffer {
  for (;;) {
    const b = ctx.random(n);
    if (b.some((x) => x !== 0)) return Buffer.from(b);
  }
}

/** RFC 7427 §4 SIGNATURE_HASH_ALGORITHMS and, from the responder, CERTREQ (§3.7) when we use certificates. */
function certInitPayloads(cfg: CheckedConfig, response: boolean): Payload[] {
  if (cfg.certificate === null) return [];
  return response ? [certReqPayload(cfg.certificate), hashAlgorithmsNotify()] : [hashAlgorithmsNotify()];
}

function describeRemote(cfg: CheckedConfig): string {
  const id = cfg.remoteId!;
  return `${id.type}:${id.value}`;
}

function sendAction(data: Buffer, remote: UdpEndpoint, localPort: number): IkeAction {
  const marker = localPort === NATT_PORT;
  return {
    type: 'send',
    data: marker ? Buffer.concat([Buffer.alloc(NON_ESP_MARKER_LENGTH), data]) : data,
    remote,
    localPort: marker ? NATT_PORT : localPort === 0 ? IKE_PORT : localPort,
    nonEspMarker: marker,
  };
}

/** The ESP proposals we offer with our SPI; DH transforms only where a DH exchange happens (§1.2, §1.3.1). */
function espOffer(list: readonly (readonly Transform[])[], spi: Buffer, withDh: boolean): Proposal[] {
  return list.map((transforms, i) => ({
    num: i + 1,
    protocol: PROTOCOL.ESP,
    spi,
    transforms: withDh ? transforms : transforms.filter((t) => t.type !== TRANSFORM_TYPE.DH),
  }));
}

/** The DH group of our first ESP proposal: the KE payload we send with a CHILD SA rekey (PFS), if any. */
function firstDh(list: readonly (readonly Transform[])[]): DhGroupId | null {
  const t = list[0]?.find((x) => x.type === TRANSFORM_TYPE.DH);
  return t && isDhGroupId(t.id) ? t.id : null;
}

/**
 * The first offered proposal that one of ours accepts with the DH group of the peer's KE payload (`keGroup`,
 * -1 without one); failing that, the group we would accept instead (for INVALID_KE_PAYLOAD, §1.2/§1.3).
 */
function pickProposal(
  offered: readonly Proposal[],
  ours: readonly (readonly Transform[])[],
  kind: MatchKind,
  keGroup: number,
): { chosen: { proposal: Proposal; chosen: Chosen } | null; wantGroup: number | null } {
  let want: number | null = null;
  for (const proposal of offered) {
    for (const mine of ours) {
      const c = matchProposal(proposal.transforms, mine, kind, keGroup);
      if (c) return { chosen: { proposal, chosen: c }, wantGroup: null };
      const other = matchProposal(proposal.transforms, mine, kind);
      if (want === null && other?.dh) want = other.dh.id;
    }
  }
  return { chosen: null, wantGroup: want };
}

/**
 * §2.8.1, §2.8.2: of two exchanges that created redundant SAs, the one holding the lowest of the four nonces
 * loses. True when that is `ours`.
 */
function lowestNonce(ours: readonly Buffer[], theirs: readonly Buffer[]): boolean {
  const min = (l: readonly Buffer[]) => l.reduce((a, b) => (Buffer.compare(a, b) <= 0 ? a : b));
  return Buffer.compare(min(ours), min(theirs)) < 0;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
