/**
 * The IKEv2 core for one configured peer, sans-IO: datagrams and `now` in, actions out (actions.ts).
 *
 * Receiving a datagram:
 *   1. framing: on port 4500 strip the non-ESP marker (RFC 3948 §2.2); a lone 0xFF is a NAT keepalive;
 *   2. parse the header and payload chain (messages.ts) — an IKEv1 header is dropped as
 *      "ikev1-not-supported" and never answered;
 *   3. an IKE_SA_INIT request with a zero responder SPI starts a half-open responder SA (bounded in number);
 *      its retransmission is answered from that SA's cache; under load (COOKIE_THRESHOLD half-open SAs) a
 *      new one must carry a valid cookie or gets only N(COOKIE) back (cookie.ts, RFC 7296 §2.6);
 *   4. anything else goes to the SA whose SPI (ours: SPIr when the I flag is set, SPIi otherwise) it names.
 * Every datagram ends either processed or as exactly one counted drop.
 */
import { randomBytes } from 'node:crypto';

import type { IkeAction } from './actions.js';
import type { TrafficSelector } from './child-sa.js';
import { checkConfig, type CheckedConfig, type ConfigError, type IkePeerConfig } from './config.js';
import {
  COOKIE_THRESHOLD,
  EXCHANGE,
  HALF_OPEN_MAX,
  NATT_KEEPALIVE,
  NATT_PORT,
  NON_ESP_MARKER_LENGTH,
  NOTIFY,
} from './constants.js';
import { CookieJar } from './cookie.js';
import { newIkeDropCounters, type IkeDropCounters, type IkeDropReason } from './drops.js';
import { IkeSa, type FragmentStats, type Handled, type SaContext } from './ike-sa.js';
import { buildMessage, parseMessage, type IkeMessage } from './messages.js';
import type { UdpEndpoint } from './nat.js';

export interface IkeDatagram {
  readonly data: Buffer;
  /** Who sent it. */
  readonly remote: UdpEndpoint;
  /** Our address and port it arrived on (the port says whether the non-ESP marker is expected). */
  readonly local: UdpEndpoint;
}

export interface IkeCoreOptions {
  /** Randomness for SPIs, nonces and IVs (tests inject a seeded source). */
  readonly random?: (n: number) => Buffer;
  /** Half-open IKE SAs from which on a cookie is demanded (RFC 7296 §2.6); COOKIE_THRESHOLD by default. */
  readonly cookieThreshold?: number;
}

export interface IkeStats {
  received: number;
  processed: number;
  /** IKE_SA_INIT requests answered with N(COOKIE) instead of state (§2.6). */
  cookiesSent: number;
  /** IKE fragments sent and received, messages reassembled, partial messages discarded (RFC 7383). */
  readonly fragments: FragmentStats;
  readonly drops: IkeDropCounters;
}

export class IkeCore {
  readonly stats: IkeStats = {
    received: 0,
    processed: 0,
    cookiesSent: 0,
    fragments: { sent: 0, received: 0, reassembled: 0, discarded: 0, shrunk: 0 },
    drops: newIkeDropCounters(),
  };
  private cookies: CookieJar | null = null;
  private readonly cookieThreshold: number;
  private readonly sas = new Map<string, IkeSa>();
  private readonly halfOpen = new Map<string, IkeSa>();
  private readonly ctx: SaContext & { out: IkeAction[] };

  private constructor(
    readonly config: CheckedConfig,
    options: IkeCoreOptions,
  ) {
    this.ctx = {
      config,
      random: options.random ?? ((n) => randomBytes(n)),
      out: [],
      born: [],
      fragments: this.stats.fragments,
    };
    this.cookieThreshold = options.cookieThreshold ?? COOKIE_THRESHOLD;
  }

  /** Checks the configuration (PSK length, proposals, selectors) and returns a core or the field at fault. */
  static create(
    config: IkePeerConfig,
    options: IkeCoreOptions = {},
  ): { ok: true; value: IkeCore } | { ok: false; error: ConfigError } {
    const c = checkConfig(config);
    if (!c.ok) return c;
    return { ok: true, value: new IkeCore(c.value, options) };
  }

  /** Starts an IKE SA as initiator towards `remote` (normally port 500) from our `local` address and port. */
  initiate(remote: UdpEndpoint, local: UdpEndpoint, now: number): IkeAction[] {
    const sa = IkeSa.initiate(this.ctx, remote, local, now);
    this.sas.set(sa.localSpi.toString('hex'), sa);
    return this.flush();
  }

  receive(d: IkeDatagram, now: number): IkeAction[] {
    this.stats.received++;
    const handled = this.dispatch(d, now);
    if (handled === 'processed') this.stats.processed++;
    else {
      this.stats.drops[handled]++;
      this.ctx.out.push({ type: 'drop', reason: handled, remote: d.remote });
    }
    this.reap();
    return this.flush();
  }

  private dispatch(d: IkeDatagram, now: number): Handled {
    let data = d.data;
    if (d.local.port === NATT_PORT) {
      if (data.length === 1 && data[0] === NATT_KEEPALIVE) return 'natt-keepalive';
      if (data.length < NON_ESP_MARKER_LENGTH) return 'too-short';
      if (data.readUInt32BE(0) !== 0) return 'esp-on-ike-port';
      data = data.subarray(NON_ESP_MARKER_LENGTH);
    }
    const parsed = parseMessage(data);
    if (!parsed.ok) return parsed.reason;
    const msg = parsed.value;
    const h = msg.header;
    if (h.exchange < EXCHANGE.IKE_SA_INIT || h.exchange > EXCHANGE.INFORMATIONAL) return 'unknown-exchange';
    const zeroR = h.spiR.every((b) => b === 0);
    if (h.exchange === EXCHANGE.IKE_SA_INIT && !h.response && h.initiator && zeroR) {
      if (h.messageId !== 0) return 'unexpected-message-id';
      const key = `${d.remote.address}|${d.remote.port}|${h.spiI.toString('hex')}`;
      const existing = this.halfOpen.get(key);
      if (existing) return existing.handle(msg, d.remote, d.local, now);
      if (this.halfOpen.size >= HALF_OPEN_MAX) return 'half-open-limit';
      if (this.halfOpen.size >= this.cookieThreshold && !this.cookieOk(msg, d, now)) return 'processed';
      const r = IkeSa.respondInit(this.ctx, msg, d.remote, d.local, now);
      if (r.sa) {
        this.halfOpen.set(key, r.sa);
        this.sas.set(r.sa.localSpi.toString('hex'), r.sa);
      }
      return r.handled;
    }
    const local = h.initiator ? h.spiR : h.spiI;
    const sa = this.sas.get(local.toString('hex'));
    if (sa === undefined) return 'unknown-spi';
    return sa.handle(msg, d.remote, d.local, now);
  }

  tick(now: number): IkeAction[] {
    for (const sa of [...this.sas.values()]) {
      const t = sa.nextDeadline();
      if (t !== null && now >= t) sa.tick(now);
    }
    this.reap();
    return this.flush();
  }

  /** When `tick` must next be called, or null when nothing is pending. */
  nextDeadline(): number | null {
    let best: number | null = null;
    for (const sa of this.sas.values()) {
      const t = sa.nextDeadline();
      if (t !== null && (best === null || t < best)) best = t;
    }
    return best;
  }

  /** Sends a liveness check on every established IKE SA. */
  dpd(now: number): IkeAction[] {
    for (const sa of this.sas.values()) sa.dpd(now);
    return this.flush();
  }

  /** Deletes every IKE SA (INFORMATIONAL with a Delete payload; the SA ends when the peer answers). */
  deleteAll(now: number): IkeAction[] {
    for (const sa of [...this.sas.values()]) sa.deleteIke(now);
    this.reap();
    return this.flush();
  }

  /**
   * Removes the CHILD SA that receives with `inboundSpi` at once and tells the peer (a Delete after any exchange
   * under way): its hard byte lifetime ran out on the data plane (RFC 4301 §4.4.2.1). No actions when no
   * CHILD SA has that SPI.
   */
  expireChild(inboundSpi: number, reason: string, now: number): IkeAction[] {
    for (const sa of this.sas.values()) if (sa.expireChild(inboundSpi, reason, now)) break;
    return this.flush();
  }

  /** Deletes one CHILD SA, named by our inbound SPI, with an INFORMATIONAL delete (§1.4.1). */
  deleteChild(inboundSpi: number, now: number): IkeAction[] {
    for (const sa of this.sas.values()) if (sa.deleteChildSa(inboundSpi, now)) break;
    return this.flush();
  }

  /** Deletes the CHILD SA of every established IKE SA. */
  deleteChildren(now: number): IkeAction[] {
    for (const sa of this.sas.values()) sa.deleteChild(now);
    return this.flush();
  }

  /**
   * Rekeys the CHILD SA that sends with `outboundSpi` (RFC 7296 §1.3.3): the shell's timer calls this once per
   * SA when the ESP data plane says its sequence numbers near their end (`EspOutboundSa.rekeyNeeded`, RFC 4303
   * §3.3.3), and an operator's rekey command for each CHILD SA. Lifetimes rekey on their own through `tick`.
   * Returns no actions when no installed CHILD SA has that SPI (the request is queued behind any exchange
   * under way otherwise).
   */
  rekeyChild(outboundSpi: number, now: number): IkeAction[] {
    for (const sa of this.sas.values()) if (sa.rekeyChild(outboundSpi, now)) break;
    return this.flush();
  }

  /**
   * Asks the peer for an additional CHILD SA (RFC 7296 §1.3.1) on every established IKE SA, with these
   * selectors (default: the configured ones); the peer may narrow them.
   */
  createChild(
    now: number,
    local: readonly TrafficSelector[] = this.config.localSelectors,
    remote: readonly TrafficSelector[] = this.config.remoteSelectors,
  ): IkeAction[] {
    for (const sa of this.sas.values()) sa.createChild(local, remote, now);
    return this.flush();
  }

  /** Rekeys every established IKE SA now (RFC 7296 §1.3.2), as its lifetime would. */
  rekeyIke(now: number): IkeAction[] {
    for (const sa of [...this.sas.values()]) sa.rekeyIke(now);
    return this.flush();
  }

  /** The SAs this core holds (for status and tests). */
  list(): readonly IkeSa[] {
    return [...this.sas.values()];
  }

  /**
   * §2.6: under load a new IKE_SA_INIT request must start with a valid N(COOKIE); one without gets only a
   * fresh cookie back, and nothing is kept. True when the request may go on.
   */
  private cookieOk(msg: IkeMessage, d: IkeDatagram, now: number): boolean {
    const h = msg.header;
    const nonce = msg.payloads.find((x) => x.kind === 'nonce');
    if (!nonce) return true; // the SA code drops it as missing-payload
    this.cookies ??= new CookieJar(this.ctx.random, now);
    const first = msg.payloads[0];
    if (
      first?.kind === 'notify' &&
      first.notify === NOTIFY.COOKIE &&
      this.cookies.check(first.data, nonce.data, d.remote.address, h.spiI, now)
    )
      return true;
    const cookie = this.cookies.make(nonce.data, d.remote.address, h.spiI, now);
    const data = buildMessage(
      {
        spiI: h.spiI,
        spiR: Buffer.alloc(8),
        exchange: EXCHANGE.IKE_SA_INIT,
        initiator: false,
        response: true,
        messageId: 0,
      },
      [{ kind: 'notify', protocol: 0, spi: Buffer.alloc(0), notify: NOTIFY.COOKIE, data: cookie }],
    );
    const marker = d.local.port === NATT_PORT;
    this.ctx.out.push({
      type: 'send',
      data: marker ? Buffer.concat([Buffer.alloc(NON_ESP_MARKER_LENGTH), data]) : data,
      remote: d.remote,
      localPort: d.local.port,
      nonEspMarker: marker,
    });
    this.stats.cookiesSent++;
    return false;
  }

  private reap(): void {
    for (const [k, sa] of this.sas) if (sa.state === 'closed') this.sas.delete(k);
    for (const [k, sa] of this.halfOpen) if (sa.state !== 'auth-wait') this.halfOpen.delete(k);
  }

  private flush(): IkeAction[] {
    // IKE SAs born of a rekey during this call (§2.18) are filed under their own SPI.
    for (const sa of this.ctx.born.splice(0)) this.sas.set(sa.localSpi.toString('hex'), sa);
    this.reap();
    const out = this.ctx.out.splice(0);
    return out;
  }
}

export type { IkeDropReason };
