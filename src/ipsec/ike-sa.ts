/**
 * One IKE SA, initiator or responder (RFC 7296): IKE_SA_INIT, IKE_AUTH with a pre-shared key and the first
 * CHILD SA, INFORMATIONAL (delete, liveness), retransmission and the message-ID window (size 1).
 *
 * As initiator:  init-sent --IKE_SA_INIT resp--> auth-sent --IKE_AUTH resp--> established
 * As responder:  (IKE_SA_INIT req answered) auth-wait --IKE_AUTH req--> established
 * Any state ----failure, delete, give-up----> closed
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
  matchProposal,
  type Chosen,
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
  HALF_OPEN_TIMEOUT_MS,
  IKE_PORT,
  NATT_KEEPALIVE,
  NATT_PORT,
  NON_ESP_MARKER_LENGTH,
  NONCE_LENGTH,
  NONCE_MAX,
  NONCE_MIN,
  NOTIFY,
  NOTIFY_ERROR_MAX,
  PROTOCOL,
  TRANSFORM_TYPE,
} from './constants.js';
import { generateDh, isDhGroupId, publicLength, type DhGroupId, type DhKeyPair } from './dh.js';
import type { IkeDropReason } from './drops.js';
import { deriveChildKeys, deriveIkeKeys, type IkeKeys } from './keys.js';
import {
  buildMessage,
  parseMessage,
  type IkeHeader,
  type IkeMessage,
  type Payload,
  type Proposal,
  type Transform,
} from './messages.js';
import { natHash, type UdpEndpoint } from './nat.js';
import { isPrfId, type PrfId } from './prf.js';
import { openMessage, sealMessage, type SkKeys } from './sk.js';
import { formatSelector, narrow, within } from './traffic-selectors.js';

export type Role = 'initiator' | 'responder';
export type IkeSaState = 'init-sent' | 'auth-sent' | 'auth-wait' | 'established' | 'closed';

/** What an SA needs from the core that owns it. */
export interface SaContext {
  readonly config: CheckedConfig;
  random(n: number): Buffer;
  /** Where the SA appends its actions during one call. */
  readonly out: IkeAction[];
}

/** Outcome of handing one message to an SA: processed, or dropped for a reason (counted by the core). */
export type Handled = 'processed' | IkeDropReason;

type Purpose = 'init' | 'auth' | 'dpd' | 'delete-ike' | 'delete-child';

interface Outstanding {
  readonly id: number;
  readonly purpose: Purpose;
  readonly message: Buffer;
  tries: number;
  deadline: number;
}

interface ChildState {
  readonly spec: ChildSaSpec;
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
  child: ChildState | null = null;

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
  private queued: Purpose[] = [];
  private nextPeerRequestId = 0;
  private lastAnswer: { id: number; request: Buffer; response: Buffer } | null = null;
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
    this.initRequest = buildMessage(this.header(EXCHANGE.IKE_SA_INIT, false, 0), payloads);
    this.nextRequestId = 1;
    this.outstanding = null;
    this.request(now, 0, 'init', this.initRequest);
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
    kind: 'ike' | 'esp',
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
          only.transforms.filter((t) => kind === 'ike' || t.type !== TRANSFORM_TYPE.DH).length
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
          `[${formatProposals(offered.map((x) => x.transforms))}]; we accept [${formatProposals(ctx.config.ikeProposals)}]`,
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
    ]);
    s.initResponse = response;
    s.nextPeerRequestId = 1;
    s.lastAnswer = { id: 0, request: msg.raw, response };
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
        proposals: cfg.espProposals.map((transforms, i) => ({
          num: i + 1,
          protocol: PROTOCOL.ESP,
          spi: this.childSpi,
          transforms,
        })),
      },
      { kind: 'ts', initiator: true, selectors: cfg.localSelectors },
      { kind: 'ts', initiator: false, selectors: cfg.remoteSelectors },
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
    this.announceUp();
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
  ): ChildSaSpec {
    const encr = encrSuite(chosen.encr.id, chosen.encr.keyLength)!;
    const integ = chosen.integ ? integSuite(chosen.integ.id) : null;
    const k = deriveChildKeys(this.prfId!, this.keys!.skD, this.ni, this.nr, encr, integ);
    const [inbound, outbound] =
      this.role === 'initiator'
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
    this.announceUp();
    this.acceptChild(inner);
    this.pump(now);
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
          `peer ${this.peerId} answered TS_UNACCEPTABLE for TSi [${cfg.localSelectors.map(formatSelector).join(', ')}] ` +
            `TSr [${cfg.remoteSelectors.map(formatSelector).join(', ')}]`,
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

  private announceUp(): void {
    this.ctx.out.push({
      type: 'ike-sa-up',
      spiI: this.spiI.toString('hex'),
      spiR: this.spiR.toString('hex'),
      proposal: formatProposal(chosenTransforms(this.ike!)),
      peerId: this.peerId,
      encapsulated: this.encapsulated,
      behindNat: this.behindNat,
    });
  }

  private childUp(spec: ChildSaSpec, proposal: string): void {
    this.child = { spec };
    this.ctx.out.push({
      type: 'child-sa-up',
      spec,
      proposal,
      encapsulation: this.encapsulated ? { localPort: this.local.port, remote: this.remote } : null,
    });
  }

  // -------------------------------------------------------------------------------------------------------------
  // INFORMATIONAL

  private onInformationalRequest(msg: IkeMessage, inner: readonly Payload[], now: number): void {
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
    for (const d of inner) {
      if (d.kind !== 'delete') continue;
      if (d.protocol === PROTOCOL.IKE) closeIke = true;
      else if (d.protocol === PROTOCOL.ESP && this.child) {
        const spec = this.child.spec;
        // §1.4.1: the peer names the SPIs of its inbound SAs (our outbound); we answer with our inbound ones.
        if (d.spis.some((s) => s.length === 4 && s.readUInt32BE(0) === spec.outboundSpi)) {
          const mine = Buffer.alloc(4);
          mine.writeUInt32BE(spec.inboundSpi);
          reply.push({ kind: 'delete', protocol: PROTOCOL.ESP, spis: [mine] });
          this.childDown('deleted by peer');
        }
      }
    }
    this.answer(msg, reply);
    if (closeIke) this.close('deleted by peer');
    void now;
  }

  /** An empty INFORMATIONAL request: the liveness check of §2.4. */
  dpd(now: number): void {
    if (this.state === 'established') this.enqueue(now, 'dpd');
  }

  deleteIke(now: number): void {
    if (this.state === 'established') this.enqueue(now, 'delete-ike');
    else this.close('deleted');
  }

  deleteChild(now: number): void {
    if (this.state === 'established' && this.child) this.enqueue(now, 'delete-child');
  }

  private enqueue(now: number, purpose: Purpose): void {
    if (!this.queued.includes(purpose)) this.queued.push(purpose);
    this.pump(now);
  }

  /** Window size 1 (§2.3): one request of ours in flight at a time. */
  private pump(now: number): void {
    while (this.outstanding === null && this.queued.length > 0 && this.state === 'established') {
      const purpose = this.queued.shift()!;
      if (purpose === 'dpd') this.sendRequest(now, EXCHANGE.INFORMATIONAL, 'dpd', []);
      else if (purpose === 'delete-ike') {
        this.sendRequest(now, EXCHANGE.INFORMATIONAL, 'delete-ike', [
          { kind: 'delete', protocol: PROTOCOL.IKE, spis: [] },
        ]);
      } else if (purpose === 'delete-child' && this.child) {
        const spi = Buffer.alloc(4);
        spi.writeUInt32BE(this.child.spec.inboundSpi);
        this.sendRequest(now, EXCHANGE.INFORMATIONAL, 'delete-child', [
          { kind: 'delete', protocol: PROTOCOL.ESP, spis: [spi] },
        ]);
        this.childDown('deleted');
      }
    }
  }

  private onInformationalResponse(purpose: Purpose, now: number): void {
    this.outstanding = null;
    if (purpose === 'delete-ike') {
      this.close('deleted');
      return;
    }
    this.pump(now);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Dispatch of one message addressed to this SA

  handle(msg: IkeMessage, from: UdpEndpoint, local: UdpEndpoint, now: number): Handled {
    if (this.state === 'closed') return 'sa-closed';
    const h = msg.header;
    // The I flag says who sent it: the original initiator, or the original responder (§3.1).
    if (h.initiator !== (this.role === 'responder')) return 'wrong-role';
    if (!h.spiI.equals(this.spiI)) return 'unknown-spi';
    // A retransmitted IKE_SA_INIT request still carries a zero SPIr.
    const initRetransmit = h.exchange === EXCHANGE.IKE_SA_INIT && !h.response && h.messageId === 0;
    if (this.state !== 'init-sent' && !initRetransmit && !h.spiR.equals(this.spiR)) return 'unknown-spi';
    if (h.response) return this.handleResponse(msg, from, now);
    return this.handleRequest(msg, from, local, now);
  }

  private handleResponse(msg: IkeMessage, from: UdpEndpoint, now: number): Handled {
    const out = this.outstanding;
    if (out === null || msg.header.messageId !== out.id) return 'unexpected-response';
    if (out.purpose === 'init') {
      if (msg.header.exchange !== EXCHANGE.IKE_SA_INIT) return 'unexpected-response';
      return this.onInitResponse(msg, now);
    }
    const inner = openMessage(msg, this.incomingKeys());
    if (!inner.ok) return inner.reason;
    const expected = out.purpose === 'auth' ? EXCHANGE.IKE_AUTH : EXCHANGE.INFORMATIONAL;
    if (msg.header.exchange !== expected) return 'unexpected-response';
    this.lastHeard = now;
    this.remote = from;
    if (out.purpose === 'auth') this.onAuthResponse(inner.value, now);
    else this.onInformationalResponse(out.purpose, now);
    return 'processed';
  }

  private handleRequest(msg: IkeMessage, from: UdpEndpoint, local: UdpEndpoint, now: number): Handled {
    const id = msg.header.messageId;
    if (this.lastAnswer && id === this.lastAnswer.id) {
      // §2.1: a retransmitted request is answered with the same response, not processed again.
      if (!msg.raw.equals(this.lastAnswer.request)) return 'retransmitted-request';
      this.sendRaw(this.lastAnswer.response, now);
      return 'processed';
    }
    if (id !== this.nextPeerRequestId) return 'unexpected-message-id';
    if (msg.header.exchange === EXCHANGE.IKE_SA_INIT) return 'unexpected-request';
    if (this.state === 'init-sent' || this.state === 'auth-sent') return 'unexpected-request';
    if (this.state === 'auth-wait' && msg.header.exchange !== EXCHANGE.IKE_AUTH) return 'unexpected-request';
    if (this.state === 'established' && msg.header.exchange === EXCHANGE.IKE_AUTH)
      return 'unexpected-request';
    const inner = openMessage(msg, this.incomingKeys());
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
        // Not supported yet: refuse politely so the peer keeps the SAs it has (§1.3).
        this.answer(msg, [notify(NOTIFY.NO_ADDITIONAL_SAS, Buffer.alloc(0))]);
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

  private seal(exchange: number, response: boolean, messageId: number, inner: readonly Payload[]): Buffer {
    const keys = this.outgoingKeys();
    return sealMessage(
      this.header(exchange, response, messageId),
      inner,
      keys,
      this.ctx.random(keys.encr.ivLength),
    );
  }

  private sendRequest(now: number, exchange: number, purpose: Purpose, inner: readonly Payload[]): void {
    const id = this.nextRequestId++;
    this.request(now, id, purpose, this.seal(exchange, false, id, inner));
  }

  private request(now: number, id: number, purpose: Purpose, message: Buffer): void {
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
    this.lastAnswer = { id: req.header.messageId, request: req.raw, response };
    this.sendRaw(response, this.lastSent);
  }

  private sendRaw(message: Buffer, now: number): void {
    this.lastSent = Math.max(this.lastSent, now);
    const data = this.encapsulated ? Buffer.concat([Buffer.alloc(NON_ESP_MARKER_LENGTH), message]) : message;
    this.ctx.out.push({
      type: 'send',
      data,
      remote: this.remote,
      localPort: this.encapsulated ? NATT_PORT : this.local.port,
      nonEspMarker: this.encapsulated,
    });
  }

  nextDeadline(): number | null {
    if (this.state === 'closed') return null;
    const cfg = this.ctx.config;
    const times: number[] = [];
    if (this.outstanding) times.push(this.outstanding.deadline);
    if (this.state === 'auth-wait') times.push(this.created + HALF_OPEN_TIMEOUT_MS);
    if (this.state === 'established') {
      if (this.outstanding === null && cfg.dpdIntervalMs > 0) times.push(this.lastHeard + cfg.dpdIntervalMs);
      if (this.behindNat && cfg.keepaliveIntervalMs > 0) times.push(this.lastSent + cfg.keepaliveIntervalMs);
    }
    return times.length === 0 ? null : Math.min(...times);
  }

  tick(now: number): void {
    if (this.state === 'closed') return;
    const cfg = this.ctx.config;
    if (this.state === 'auth-wait' && now >= this.created + HALF_OPEN_TIMEOUT_MS) {
      this.close('IKE_AUTH not received');
      return;
    }
    const out = this.outstanding;
    if (out && now >= out.deadline) {
      if (out.tries >= cfg.retransmitTries) {
        const what = out.purpose === 'dpd' ? 'liveness check' : out.purpose;
        if (this.state !== 'established') {
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

  private childDown(reason: string): void {
    if (!this.child) return;
    const { inboundSpi, outboundSpi } = this.child.spec;
    this.child = null;
    this.ctx.out.push({ type: 'child-sa-down', inboundSpi, outboundSpi, reason });
  }

  close(reason: string): void {
    if (this.state === 'closed') return;
    const wasUp = this.state === 'established';
    this.childDown(reason);
    this.state = 'closed';
    this.outstanding = null;
    this.queued = [];
    if (wasUp)
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
