/**
 * The IPsec shell of the gateway: the configured sites (SiteSpec), one IKEv2 core per enabled site, the IKE
 * sockets (UDP 500, and UDP 4500 shared with ESP through the EspPort), and the CHILD SAs the cores negotiate
 * installed into each site's IpsecSite, whose remote subnets are routes in the gateway's router. It opens no
 * socket itself: the binds are handed in (src/server/ipsec.ts opens the real ones; tests pass MemoryBinds).
 *
 * An IKE datagram in (UDP 500, or UDP 4500 through EspPort.onIke):
 *   1. the fixed header (RFC 7296 §3.1) is read here; shorter than a header → counted drop; major version 1 →
 *      one log line "IKEv1 is not supported", counted, never answered;
 *   2. our SPI in it (SPIr when the I flag is set, SPIi otherwise) names a site whose core holds that SA →
 *      that core;
 *   3. else a new IKE_SA_INIT request (SPIr zero) goes to the enabled site whose remote address is the
 *      sender's, else to an enabled `%any` site;
 *   4. else: counted drop, no answer (nothing unauthenticated is answered beyond RFC 7296's needs).
 * The core's actions come back here: `send` leaves by the bind of its port; `child-sa-up` installs the SA in
 * the site (UDP 4500 when encapsulated, raw ESP otherwise); `child-sa-down` removes it (the routes stay while
 * the site is configured, so traffic can start it again); `failed` and `ike-sa-down` are logged with the
 * site's name and kept as its last error.
 *
 * Timers: one interval on the shell's clock ticks every core whose deadline has passed (retransmissions,
 * liveness checks, NAT keepalives), starts the initiations that are due (start action `initiate`, retries
 * after a loss with a bounded backoff, DPD action `restart`), and asks a core once to rekey each CHILD SA whose
 * outbound sequence numbers near their end (RFC 4303 §3.3.3), so it is replaced before it must stop sending.
 */
import type { Bind, Datagram } from '../io/bind.js';
import { monotonicEpochMs, type Clock } from '../io/clock.js';
import type { IkeAction } from '../ipsec/actions.js';
import type { IkeIdentity } from '../ipsec/auth.js';
import type { TrafficSelector } from '../ipsec/child-sa.js';
import type { IkePeerConfig } from '../ipsec/config.js';
import { EXCHANGE, IKE_HEADER_LENGTH, IKE_PORT, NATT_PORT } from '../ipsec/constants.js';
import { IkeCore } from '../ipsec/core.js';
import { withNonEspMarker } from '../ipsec/esp-udp.js';
import type { UdpEndpoint } from '../ipsec/nat.js';
import {
  DEFAULT_ESP_PROPOSALS,
  DEFAULT_IKE_PROPOSALS,
  type ChildSaView,
  type IkeSaView,
  type SiteSpec,
  type SiteStatus,
} from '../ipsec/site-spec.js';
import { selectorFromPrefix } from '../ipsec/traffic-selectors.js';
import { siteGroupSelectors } from '../multicast/site-selectors.js';
import { formatEndpoint, type Endpoint } from '../net/endpoint.js';
import { formatAddress, parseAddress, parsePrefix, type Prefix } from '../net/ip.js';
import type { IpHeader } from '../net/ip-packet.js';
import { EspPort, type EspCarrier } from './esp-port.js';
import { IpsecSite, type SiteGroupTap } from './ipsec-site.js';
import type { Tunnel } from './router.js';

/** What the shell needs of the gateway (Gateway has it). */
export interface IpsecGateway {
  readonly deliver: (packets: Uint8Array[]) => void;
  setRoutes(tunnel: Tunnel, prefixes: readonly Prefix[]): void;
}

export interface IpsecInterfaceOptions {
  gateway: IpsecGateway;
  /** UDP 500. */
  ike: Bind;
  /** UDP 4500: IKE after NAT detection and ESP in UDP (RFC 3948), shared with the EspPort. */
  natt: Bind;
  /** Raw ESP (protocol 50, IPv4). Without it every CHILD SA is UDP-encapsulated (forced NAT-T). */
  raw?: Bind;
  log: (line: string) => void;
  /** The policy hook: may an opened packet from this site go on to the TUN side? Absent: all are admitted. */
  admit?: (packet: Uint8Array, header: IpHeader, site: string) => boolean;
  /** Multicast: where packets from sites to groups go (settable later as `groups`); absent: the TUN side. */
  groups?: SiteGroupTap;
  /** Our outer address towards a peer (the route's source), for NAT detection and address IDs. */
  localAddressFor?: (remote: string) => string | undefined | Promise<string | undefined>;
  clock?: Clock;
  /** Timer resolution in ms; 0 starts no timer (a test calls tick()). Default 100. */
  tickMs?: number;
  random?: (n: number) => Buffer;
}

/** Backoff between initiations after a failure or a loss: 1 s doubling to 30 s (bounded, never given up). */
export const RETRY_FIRST_MS = 1_000;
export const RETRY_MAX_MS = 30_000;
/** How long a removed or changed site's old core may take to finish its INFORMATIONAL delete. */
const RETIRE_MS = 10_000;
/** One "IKEv1 is not supported" line per sender address in this long. */
const IKEV1_LOG_MS = 60_000;
/**
 * Retransmissions of a site with liveness checks: timeout t, backoff 1.5, 3 tries give up after
 * t·(1 + 1.5 + 2.25 + 3.375) ≈ 8.1·t; t is chosen so that this is about one DPD interval (bounded to 0.5–4 s),
 * so a dead peer is noticed within the interval after the unanswered check leaves.
 */
const DPD_RETRANSMIT_BASE = 1.5;
const DPD_RETRANSMIT_TRIES = 3;
const DPD_BUDGET_FACTOR = 8.125;

interface ChildRecord {
  proposal: string;
  establishedAt: number;
  rekeyedAt: number | null;
  localSubnets: string[];
  remoteSubnets: string[];
}

interface IkeRecord {
  proposal: string;
  peerId: string;
  establishedAt: number;
  rekeyedAt: number | null;
}

type LossAction = 'retry' | 'on-traffic' | 'none';

interface SiteRun {
  spec: SiteSpec;
  site: IpsecSite;
  core: IkeCore | null;
  /** Our outer address for this site (resolved on initiation or taken from the first datagram). */
  localAddress: string | null;
  /** The configuration is refused: no core, no answers. */
  configError: string | null;
  routes: Prefix[];
  /** Our SPIs (hex) of the SAs the core holds, as filed in the interface's SPI index. */
  spis: Set<string>;
  ike: Map<string, IkeRecord>;
  children: Map<number, ChildRecord>;
  lastError: { at: number; message: string } | null;
  /** When to initiate next (a retry, a restart), or null. */
  retryAt: number | null;
  backoffMs: number;
  /** A loss with DPD action 'hold' (or start action on-traffic): the next packet routed here initiates. */
  initiateOnTraffic: boolean;
  /** An initiation is under way (the local address is being resolved). */
  resolving: boolean;
  /** Not before this time may traffic start another initiation. */
  trafficHoldUntil: number;
  /** Outbound SPIs of CHILD SAs whose core was asked to rekey them for their sequence numbers (asked once). */
  seqRekeyAsked: Set<number>;
}

function sameSpec(a: SiteSpec, b: SiteSpec): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function addressId(address: string): IkeIdentity {
  return { type: address.includes(':') ? 'ipv6' : 'ipv4', value: address };
}

function hostPrefix(address: string): string {
  return `${address}/${address.includes(':') ? 128 : 32}`;
}

/** A selector as a subnet when it is one ("10.1.0.0/24"), else its range. */
function selectorText(s: TrafficSelector): string {
  const start = parseAddress(s.startAddress);
  const end = parseAddress(s.endAddress);
  if (start.ok && end.ok && start.value.bytes.length === end.value.bytes.length) {
    const a = start.value.bytes;
    const b = end.value.bytes;
    const bitsTotal = a.length * 8;
    let bits = 0;
    while (bits < bitsTotal) {
      const m = 0x80 >> (bits & 7);
      if ((a[bits >> 3]! & m) !== (b[bits >> 3]! & m)) break;
      bits++;
    }
    let ok = true;
    for (let i = bits; i < bitsTotal && ok; i++) {
      const m = 0x80 >> (i & 7);
      if ((a[i >> 3]! & m) !== 0 || (b[i >> 3]! & m) === 0) ok = false;
    }
    if (ok) return `${formatAddress(start.value)}/${bits}`;
  }
  return `${s.startAddress}-${s.endAddress}`;
}

/**
 * A side's subnets with the site's multicast group ranges and IGMP's destinations (site-selectors.ts; only
 * beside subnets: never instead of them).
 */
function withGroups(subnets: readonly string[], spec: SiteSpec): readonly string[] {
  const groups = siteGroupSelectors(spec.multicast ?? []);
  return subnets.length === 0 || groups.length === 0 ? subnets : [...subnets, ...groups];
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export class IpsecInterface {
  readonly counters = {
    /** IKE datagrams received on 500 and 4500. */
    received: 0,
    /** Dropped before any core: too short for a header. */
    malformed: 0,
    /** IKEv1 headers (never answered). */
    ikev1: 0,
    /** A new IKE_SA_INIT from an address no enabled site accepts. */
    noSite: 0,
    /** Not a new IKE_SA_INIT, and no site holds the SPI. */
    unknownSpi: 0,
  };
  readonly port: EspPort;
  /** Multicast replication, when on: packets from sites to groups go here instead of the TUN side. */
  groups: SiteGroupTap | undefined;
  private readonly runs = new Map<string, SiteRun>();
  /** Our IKE SPI (hex) → the site whose core holds that SA. */
  private readonly bySpi = new Map<string, SiteRun>();
  /** Cores of removed or changed sites finishing their deletes. */
  private readonly retiring: { core: IkeCore; until: number; spis: Set<string> }[] = [];
  private readonly retiringBySpi = new Map<string, IkeCore>();
  private readonly ikev1Logged = new Map<string, number>();
  private readonly clock: Clock;
  private readonly log: (line: string) => void;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: IpsecInterfaceOptions) {
    this.clock = options.clock ?? monotonicEpochMs;
    this.log = options.log;
    this.port = new EspPort({
      udp: options.natt,
      ...(options.raw ? { raw: options.raw } : {}),
      onIke: (message, from) => this.receiveIke(withNonEspMarker(message), from, NATT_PORT),
    });
    options.ike.start((datagrams) => {
      for (const d of datagrams) this.receiveIke(Uint8Array.from(d.data), d.endpoint, IKE_PORT);
    });
    this.port.start();
    const tickMs = options.tickMs ?? 100;
    if (tickMs > 0) {
      this.timer = setInterval(() => this.tick(), tickMs);
      this.timer.unref();
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Configuration

  /** Makes `specs` the complete set of sites: added ones start, removed and disabled ones delete their SAs. */
  /** The site's tunnel (kept across configuration changes while the site exists), e.g. to send it copies. */
  siteTunnel(name: string): IpsecSite | undefined {
    return this.runs.get(name)?.site;
  }

  update(specs: readonly SiteSpec[]): void {
    if (this.closed) return;
    const now = this.clock();
    const wanted = new Map(specs.map((s) => [s.name, s]));
    for (const [name, run] of this.runs) {
      if (!wanted.has(name)) {
        this.stopRun(run, now);
        this.options.gateway.setRoutes(run.site, []);
        this.runs.delete(name);
        this.log(`IPsec site ${name}: removed`);
      }
    }
    for (const spec of specs) {
      const run = this.runs.get(spec.name);
      if (!run) {
        const fresh = this.newRun(spec);
        this.runs.set(spec.name, fresh);
        this.startRun(fresh, now);
      } else if (!sameSpec(run.spec, spec)) {
        this.stopRun(run, now);
        run.spec = spec;
        run.lastError = null;
        this.log(`IPsec site ${spec.name}: configuration changed, restarting`);
        this.startRun(run, now);
      }
    }
  }

  private newRun(spec: SiteSpec): SiteRun {
    const admit = this.options.admit;
    const run: SiteRun = {
      spec,
      site: new IpsecSite({
        name: spec.name,
        port: this.port,
        deliver: this.options.gateway.deliver,
        ...(admit ? { admit: (p: Uint8Array, h: IpHeader) => admit(p, h, run.spec.name) } : {}),
        groups: () => this.groups,
        onNoSa: () => this.onTraffic(run),
        ...(this.options.random ? { random: this.options.random } : {}),
      }),
      core: null,
      localAddress: null,
      configError: null,
      routes: [],
      spis: new Set(),
      ike: new Map(),
      children: new Map(),
      lastError: null,
      retryAt: null,
      backoffMs: RETRY_FIRST_MS,
      initiateOnTraffic: false,
      resolving: false,
      trafficHoldUntil: 0,
      seqRekeyAsked: new Set(),
    };
    return run;
  }

  private startRun(run: SiteRun, now: number): void {
    const spec = run.spec;
    run.backoffMs = RETRY_FIRST_MS;
    run.retryAt = null;
    run.initiateOnTraffic = false;
    run.trafficHoldUntil = 0;
    run.configError = null;
    const routes = this.routesOf(spec);
    if (!routes.ok) {
      this.configFailed(run, routes.error, now);
      this.options.gateway.setRoutes(run.site, []);
      return;
    }
    // One CHILD SA per pair: each packet goes on its own pair's SA or nowhere, even while others are missing.
    run.site.selectBySelectors = spec.childPerSubnetPair === true;
    run.routes = spec.enabled ? routes.value : [];
    this.options.gateway.setRoutes(run.site, run.routes);
    if (!spec.enabled) {
      this.log(`IPsec site ${spec.name}: disabled`);
      return;
    }
    if (spec.remoteAddress !== null) {
      // Check the configuration now (with a placeholder address) so a bad site says so at once.
      const probe = IkeCore.create(
        this.peerConfig(spec, spec.remoteAddress.includes(':') ? '::' : '0.0.0.0'),
      );
      if (!probe.ok) {
        this.configFailed(run, `${probe.error.field}: ${probe.error.message}`, now);
        return;
      }
      if (spec.startAction === 'initiate') run.retryAt = now;
      else if (spec.startAction === 'on-traffic') run.initiateOnTraffic = true;
    }
    this.log(
      `IPsec site ${spec.name}: ${spec.remoteAddress ?? '%any'}, ${spec.mode} mode, start ${spec.startAction}`,
    );
    if (run.retryAt !== null) this.initiate(run, now);
  }

  /** Deletes the site's SAs (politely: its core finishes the INFORMATIONAL delete on its own) and its CHILD SAs. */
  private stopRun(run: SiteRun, now: number): void {
    const core = run.core;
    run.core = null;
    run.localAddress = null;
    run.retryAt = null;
    run.initiateOnTraffic = false;
    if (core) {
      const actions = core.deleteAll(now);
      const spis = new Set<string>();
      for (const sa of core.list()) spis.add(sa.localSpi.toString('hex'));
      for (const spi of run.spis) this.bySpi.delete(spi);
      run.spis.clear();
      if (spis.size > 0) {
        const entry = { core, until: now + RETIRE_MS, spis };
        this.retiring.push(entry);
        for (const s of spis) this.retiringBySpi.set(s, core);
      }
      this.sendAll(actions);
    }
    for (const spi of run.children.keys()) run.site.removeChildSa(spi);
    run.children.clear();
    run.ike.clear();
    run.seqRekeyAsked.clear();
  }

  private routesOf(spec: SiteSpec): { ok: true; value: Prefix[] } | { ok: false; error: string } {
    const texts =
      spec.remoteSubnets.length > 0 || spec.remoteAddress === null
        ? spec.remoteSubnets
        : spec.mode === 'transport'
          ? [hostPrefix(spec.remoteAddress)]
          : [];
    const out: Prefix[] = [];
    for (const t of texts) {
      const p = parsePrefix(t);
      if (!p.ok) return { ok: false, error: `remoteSubnets: "${t}" is not a prefix` };
      out.push(p.value);
    }
    return { ok: true, value: out };
  }

  private configFailed(run: SiteRun, message: string, now: number): void {
    run.configError = message;
    this.setError(run, `configuration refused: ${message}`, now);
  }

  /** The core's configuration for a site, given our outer address. */
  private peerConfig(spec: SiteSpec, localAddress: string): IkePeerConfig {
    const selectors = (texts: readonly string[], fallback: string | null): TrafficSelector[] => {
      const list = texts.length > 0 ? texts : fallback !== null ? [hostPrefix(fallback)] : [];
      const out: TrafficSelector[] = [];
      for (const t of list) {
        const s = selectorFromPrefix(t);
        if (s) out.push(s);
      }
      return out;
    };
    const transport = spec.mode === 'transport';
    const v6 = (spec.remoteAddress ?? localAddress).includes(':');
    const dpdMs = Math.max(0, spec.dpdIntervalSec) * 1000;
    const retransmit =
      dpdMs > 0
        ? {
            retransmitTimeoutMs: Math.min(4_000, Math.max(500, Math.round(dpdMs / DPD_BUDGET_FACTOR))),
            retransmitBase: DPD_RETRANSMIT_BASE,
            retransmitTries: DPD_RETRANSMIT_TRIES,
          }
        : {};
    const config = {
      localId: spec.localId ?? addressId(localAddress),
      remoteId: spec.remoteId ?? (spec.remoteAddress !== null ? addressId(spec.remoteAddress) : null),
      ...(spec.certificate ? { certificate: spec.certificate } : { psk: spec.psk }),
      forceShortPsk: spec.forceShortPsk,
      ikeProposals: spec.ikeProposals.length > 0 ? spec.ikeProposals : DEFAULT_IKE_PROPOSALS,
      espProposals: spec.espProposals.length > 0 ? spec.espProposals : DEFAULT_ESP_PROPOSALS,
      // A multicast site's group ranges are selectors on both sides: its subnets → groups, ours → groups.
      localSelectors: selectors(withGroups(spec.localSubnets, spec), transport ? localAddress : null),
      remoteSelectors: selectors(withGroups(spec.remoteSubnets, spec), transport ? spec.remoteAddress : null),
      mode: spec.mode,
      childPerSubnetPair: spec.childPerSubnetPair === true,
      allowLegacyGroups: spec.allowLegacyGroups,
      // Raw ESP is IPv4 only (io/esp-raw.ts): without it, or over IPv6, ask for UDP encapsulation at once.
      forceEncapsulation: this.options.raw === undefined || v6,
      dpdIntervalMs: dpdMs,
      ...retransmit,
      // Rekey times for the core's CREATE_CHILD_SA rekeying (ignored by a core without it).
      ikeRekeyMs: spec.ikeLifetimeSec * 1000,
      childRekeyMs: spec.childLifetimeSec * 1000,
      ...(typeof spec.ikeHardLifetimeSec === 'number'
        ? { ikeHardLifetimeMs: spec.ikeHardLifetimeSec * 1000 }
        : {}),
      ...(typeof spec.childHardLifetimeSec === 'number'
        ? { childHardLifetimeMs: spec.childHardLifetimeSec * 1000 }
        : {}),
      ...(spec.fragmentSize !== undefined ? { fragmentSize: spec.fragmentSize } : {}),
    };
    return config;
  }

  /** The site's core, made on first use with our outer address. */
  private coreFor(run: SiteRun, localAddress: string, now: number): IkeCore | null {
    if (run.core) return run.core;
    if (run.configError !== null || !run.spec.enabled) return null;
    const created = IkeCore.create(
      this.peerConfig(run.spec, localAddress),
      this.options.random ? { random: this.options.random } : {},
    );
    if (!created.ok) {
      this.configFailed(run, `${created.error.field}: ${created.error.message}`, now);
      return null;
    }
    run.core = created.value;
    run.localAddress = localAddress;
    return run.core;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Initiation

  /** Whether the site's core holds an IKE SA that is up or being set up. */
  private busy(run: SiteRun): boolean {
    return run.resolving || (run.core?.list().some((sa) => sa.state !== 'closed') ?? false);
  }

  private initiate(run: SiteRun, now: number): void {
    const remote = run.spec.remoteAddress;
    run.retryAt = null;
    if (remote === null || !run.spec.enabled || run.configError !== null || this.closed) return;
    if (this.busy(run)) return;
    const go = (local: string | undefined): void => {
      run.resolving = false;
      if (this.closed || this.runs.get(run.spec.name) !== run || run.spec.remoteAddress !== remote) return;
      const address = local ?? run.localAddress ?? (remote.includes(':') ? '::' : '0.0.0.0');
      const core = this.coreFor(run, address, now);
      if (!core) return;
      this.log(`IPsec site ${run.spec.name}: initiating to ${remote}`);
      this.apply(
        run,
        core.initiate({ address: remote, port: IKE_PORT }, { address, port: IKE_PORT }, this.clock()),
      );
    };
    const resolver = this.options.localAddressFor;
    if (!resolver || run.localAddress !== null) {
      go(undefined);
      return;
    }
    run.resolving = true;
    const r = resolver(remote);
    if (r instanceof Promise) {
      r.then(go, () => go(undefined));
    } else go(r);
  }

  /** IpsecSite had a packet and no SA to seal it with. */
  private onTraffic(run: SiteRun): void {
    if (!run.initiateOnTraffic || run.spec.remoteAddress === null) return;
    const now = this.clock();
    if (now < run.trafficHoldUntil || this.busy(run)) return;
    run.trafficHoldUntil = now + run.backoffMs;
    this.initiate(run, now);
  }

  /** What to do when the site lost its SAs, or an initiation failed. */
  private afterLoss(run: SiteRun, dead: boolean, now: number): void {
    if (run.spec.remoteAddress === null || !run.spec.enabled || run.core === null) return;
    let action: LossAction = 'none';
    if (dead) {
      action =
        run.spec.dpdAction === 'restart' ? 'retry' : run.spec.dpdAction === 'hold' ? 'on-traffic' : 'none';
    } else if (run.spec.startAction === 'initiate') action = 'retry';
    else if (run.spec.startAction === 'on-traffic') action = 'on-traffic';
    if (action === 'retry') {
      if (run.retryAt === null) run.retryAt = now + run.backoffMs;
      run.backoffMs = Math.min(run.backoffMs * 2, RETRY_MAX_MS);
    } else if (action === 'on-traffic') {
      run.initiateOnTraffic = true;
      run.trafficHoldUntil = now + run.backoffMs;
      run.backoffMs = Math.min(run.backoffMs * 2, RETRY_MAX_MS);
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // IKE in

  private receiveIke(data: Uint8Array, from: Endpoint, localPort: number): void {
    this.counters.received++;
    // On 4500 the datagram still carries the non-ESP marker here (the core strips it).
    const off = localPort === NATT_PORT ? 4 : 0;
    if (data.length < off + IKE_HEADER_LENGTH) {
      this.counters.malformed++;
      return;
    }
    const h = Buffer.from(data.buffer, data.byteOffset + off, IKE_HEADER_LENGTH);
    const major = h[17]! >> 4;
    if (major === 1) {
      this.counters.ikev1++;
      const now = this.clock();
      const last = this.ikev1Logged.get(from.address);
      if (last === undefined || now - last >= IKEV1_LOG_MS) {
        if (this.ikev1Logged.size >= 1024) this.ikev1Logged.clear();
        this.ikev1Logged.set(from.address, now);
        this.log(`IPsec: IKEv1 is not supported; ignoring ${formatEndpoint(from)} (only IKEv2 is answered)`);
      }
      return;
    }
    const flags = h[19]!;
    const initiatorFlag = (flags & 0x08) !== 0;
    const responseFlag = (flags & 0x20) !== 0;
    const spiI = h.subarray(0, 8);
    const spiR = h.subarray(8, 16);
    const ours = (initiatorFlag ? spiR : spiI).toString('hex');
    const now = this.clock();
    const local: UdpEndpoint = { address: from.local ?? '', port: localPort };
    const datagram = (address: string) => ({
      data: Buffer.from(data.buffer, data.byteOffset, data.length),
      remote: { address: from.address, port: from.port },
      local: { address: local.address || address, port: localPort },
    });
    const run = this.bySpi.get(ours);
    if (run?.core) {
      this.apply(run, run.core.receive(datagram(run.localAddress ?? ''), now));
      return;
    }
    const retiring = this.retiringBySpi.get(ours);
    if (retiring) {
      this.sendAll(retiring.receive(datagram(''), now));
      return;
    }
    const isNewInit =
      h[18] === EXCHANGE.IKE_SA_INIT && initiatorFlag && !responseFlag && spiR.every((b) => b === 0);
    if (!isNewInit) {
      this.counters.unknownSpi++;
      return;
    }
    const target = this.siteForAddress(from.address);
    if (!target) {
      this.counters.noSite++;
      return;
    }
    const fallback = from.address.includes(':') ? '::' : '0.0.0.0';
    const core = this.coreFor(target, local.address || target.localAddress || fallback, now);
    if (!core) {
      this.counters.noSite++;
      return;
    }
    this.apply(target, core.receive(datagram(target.localAddress ?? fallback), now));
  }

  /** The enabled site for a new IKE_SA_INIT from `address`: its remote address first, else a `%any` site. */
  private siteForAddress(address: string): SiteRun | undefined {
    const parsed = parseAddress(address);
    const canonical = parsed.ok ? formatAddress(parsed.value) : address;
    let any: SiteRun | undefined;
    for (const run of this.runs.values()) {
      if (!run.spec.enabled || run.configError !== null) continue;
      const r = run.spec.remoteAddress;
      if (r === null) {
        any ??= run;
        continue;
      }
      const p = parseAddress(r);
      if ((p.ok ? formatAddress(p.value) : r) === canonical) return run;
    }
    return any;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Core actions out

  private sendAll(actions: readonly IkeAction[]): void {
    for (const a of actions) if (a.type === 'send') this.send(a);
  }

  private send(a: Extract<IkeAction, { type: 'send' }>): void {
    const bind = a.localPort === NATT_PORT ? this.options.natt : this.options.ike;
    const d: Datagram = { data: a.data, endpoint: { address: a.remote.address, port: a.remote.port } };
    bind.send([d]);
  }

  private apply(run: SiteRun, actions: readonly IkeAction[]): void {
    const now = this.clock();
    const name = run.spec.name;
    for (const a of actions) {
      switch (a.type) {
        case 'send':
          this.send(a);
          break;
        case 'drop':
          break;
        case 'ike-sa-up': {
          const rekey = (a as { rekeyOf?: unknown }).rekeyOf !== undefined;
          const previous = [...run.ike.values()].pop();
          run.ike.set(`${a.spiI}_${a.spiR}`, {
            proposal: a.proposal,
            peerId: a.peerId,
            establishedAt: rekey && previous ? previous.establishedAt : now,
            rekeyedAt: rekey ? now : null,
          });
          run.backoffMs = RETRY_FIRST_MS;
          run.retryAt = null;
          run.initiateOnTraffic = run.spec.startAction === 'on-traffic';
          if (!rekey)
            this.log(
              `IPsec site ${name}: IKE SA up with ${a.peerId} (${a.proposal}${a.encapsulated ? ', UDP-encapsulated' : ''}${a.behindNat ? ', we are behind a NAT' : ''})`,
            );
          break;
        }
        case 'ike-sa-down': {
          run.ike.delete(`${a.spiI}_${a.spiR}`);
          if (a.reason === 'rekeyed') break;
          this.log(`IPsec site ${name}: IKE SA down: ${a.reason}`);
          if (a.reason !== 'deleted') this.setError(run, a.reason, now);
          const dead = a.reason !== 'deleted by peer' && a.reason !== 'deleted';
          if (a.reason !== 'deleted') this.afterLoss(run, dead, now);
          break;
        }
        case 'child-sa-up':
          this.installChild(run, a, now);
          break;
        case 'child-sa-down':
          run.site.removeChildSa(a.inboundSpi);
          run.children.delete(a.inboundSpi >>> 0);
          if (a.reason !== 'rekeyed')
            this.log(
              `IPsec site ${name}: CHILD SA ${hex8(a.inboundSpi)}/${hex8(a.outboundSpi)} down: ${a.reason}`,
            );
          break;
        case 'failed':
          this.log(`IPsec site ${name}: ${a.failure}: ${a.message}`);
          this.setError(run, a.message, now);
          // A failure while setting up (ours or the peer's initiation) leaves no IKE SA behind.
          if (!run.core?.list().some((sa) => sa.state === 'established'))
            this.afterLoss(run, a.failure === 'peer-unreachable' && run.spec.dpdAction === 'restart', now);
          break;
      }
    }
    this.indexSpis(run);
  }

  private installChild(run: SiteRun, a: Extract<IkeAction, { type: 'child-sa-up' }>, now: number): void {
    const spec = a.spec;
    const owner = run.core?.list().find((sa) => sa.children.some((c) => c.spec === spec));
    const ikeRemote = owner?.remote ?? { address: run.spec.remoteAddress ?? '', port: IKE_PORT };
    const carrier: EspCarrier = a.encapsulation ? 'udp' : 'raw';
    const peer: Endpoint = a.encapsulation
      ? { address: a.encapsulation.remote.address, port: a.encapsulation.remote.port }
      : { address: ikeRemote.address, port: 0 };
    const localAddress = owner?.local.address || run.localAddress || undefined;
    try {
      run.site.installChildSa(spec, {
        peer,
        carrier,
        ...(localAddress ? { localAddress } : {}),
        ...(a.outboundLater ? { outboundLater: true } : {}),
        ...(run.spec.childRekeyBytes ? { rekeyBytes: run.spec.childRekeyBytes } : {}),
        ...(run.spec.childLifeBytes ? { lifeBytes: run.spec.childLifeBytes } : {}),
      });
    } catch (error) {
      const message = `CHILD SA ${hex8(spec.inboundSpi)} not installed: ${(error as Error).message}`;
      this.log(`IPsec site ${run.spec.name}: ${message}`);
      this.setError(run, message, now);
      return;
    }
    const rekeyOf = (a as { rekeyOf?: { inboundSpi: number } }).rekeyOf;
    const old = rekeyOf ? run.children.get(rekeyOf.inboundSpi >>> 0) : undefined;
    run.children.set(spec.inboundSpi >>> 0, {
      proposal: a.proposal,
      establishedAt: old?.establishedAt ?? now,
      rekeyedAt: rekeyOf ? now : null,
      localSubnets: spec.localSelectors.map(selectorText),
      remoteSubnets: spec.remoteSelectors.map(selectorText),
    });
    if (!rekeyOf)
      this.log(
        `IPsec site ${run.spec.name}: CHILD SA up, in ${hex8(spec.inboundSpi)} out ${hex8(spec.outboundSpi)} (${a.proposal}, ${spec.mode} mode, ${carrier === 'udp' ? `UDP to ${formatEndpoint(peer)}` : `raw ESP to ${peer.address}`})`,
      );
  }

  private setError(run: SiteRun, message: string, now: number): void {
    run.lastError = { at: now, message };
  }

  /** Files the site's SAs by our SPI (after each call into its core). */
  private indexSpis(run: SiteRun): void {
    const now = new Set<string>();
    for (const sa of run.core?.list() ?? []) now.add(sa.localSpi.toString('hex'));
    for (const s of run.spis) if (!now.has(s) && this.bySpi.get(s) === run) this.bySpi.delete(s);
    for (const s of now) this.bySpi.set(s, run);
    run.spis = now;
  }

  /**
   * Rekeys a site's IKE SA, or every CHILD SA it has, now, as their lifetimes would (RFC 7296 §1.3.2,
   * §1.3.3). False when the site has no core (down, disabled, misconfigured).
   */
  rekey(name: string, what: 'ike' | 'child'): boolean {
    const run = this.runs.get(name);
    const core = run?.core;
    if (this.closed || !run || !core) return false;
    const now = this.clock();
    if (what === 'ike') {
      this.apply(run, core.rekeyIke(now));
      return true;
    }
    for (const c of run.site.childSas()) this.apply(run, core.rekeyChild(c.outboundSpi, now));
    return true;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Timers

  /** Ticks the cores whose deadlines have passed and starts due initiations; the interval calls it. */
  tick(): void {
    if (this.closed) return;
    const now = this.clock();
    for (const run of this.runs.values()) {
      const core = run.core;
      if (core) {
        const due = core.nextDeadline();
        if (due !== null && due <= now) this.apply(run, core.tick(now));
        this.rekeyExhausting(run, core, now);
      }
      if (run.retryAt !== null && run.retryAt <= now) this.initiate(run, now);
    }
    for (let i = this.retiring.length - 1; i >= 0; i--) {
      const r = this.retiring[i]!;
      const due = r.core.nextDeadline();
      if (due !== null && due <= now) this.sendAll(r.core.tick(now));
      if (now >= r.until || r.core.list().length === 0) {
        for (const s of r.spis) if (this.retiringBySpi.get(s) === r.core) this.retiringBySpi.delete(s);
        this.retiring.splice(i, 1);
      }
    }
  }

  /**
   * RFC 4303 §3.3.3: a sender must not let an SA's sequence number cycle, it sets up a new SA first. Each CHILD
   * SA of the site whose outbound sequence numbers near their end (SEQ_REKEY_MARGIN before the last) is
   * rekeyed through its core (CREATE_CHILD_SA, RFC 7296 §1.3.3), asked once per SA: the old SA stays listed
   * until the rekey deletes it, and is forgotten then. A rekey that fails leaves the SA to its lifetimes (and
   * to `exhausted` if it does run out).
   */
  private rekeyExhausting(run: SiteRun, core: IkeCore, now: number): void {
    // Hard byte lifetimes first: such an SA is deleted, not rekeyed.
    for (const c of run.site.expiredDue()) {
      const reason = `byte lifetime reached (${c.bytesIn} bytes in, ${c.bytesOut} out; limit ${run.spec.childLifeBytes ?? 0})`;
      this.log(
        `IPsec site ${run.spec.name}: CHILD SA ${hex8(c.inboundSpi)}/${hex8(c.outboundSpi)} ${reason}`,
      );
      const actions = core.expireChild(c.inboundSpi, reason, now);
      // Not (or no longer) the core's: the data plane lets it go itself.
      if (actions.length === 0) run.site.removeChildSa(c.inboundSpi);
      this.apply(run, actions);
    }
    const due = run.site.rekeyDue();
    if (due.length === 0 && run.seqRekeyAsked.size === 0) return;
    const still = new Set<number>();
    for (const c of due) {
      still.add(c.outboundSpi);
      if (run.seqRekeyAsked.has(c.outboundSpi)) continue;
      run.seqRekeyAsked.add(c.outboundSpi);
      this.log(
        c.why === 'bytes'
          ? `IPsec site ${run.spec.name}: CHILD SA ${hex8(c.inboundSpi)}/${hex8(c.outboundSpi)} reached its rekey byte count (${c.rekeyBytes}; ${run.spec.childRekeyBytes ?? 0} configured, less up to 10% jitter), rekeying`
          : `IPsec site ${run.spec.name}: CHILD SA ${hex8(c.inboundSpi)}/${hex8(c.outboundSpi)} nears its last sequence number (next ${c.nextSequence}), rekeying`,
      );
      this.apply(run, core.rekeyChild(c.outboundSpi, now));
    }
    for (const spi of run.seqRekeyAsked) if (!still.has(spi)) run.seqRekeyAsked.delete(spi);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Status

  status(): SiteStatus[] {
    const now = this.clock();
    const out: SiteStatus[] = [];
    for (const run of this.runs.values()) out.push(this.siteStatus(run, now));
    return out;
  }

  private siteStatus(run: SiteRun, now: number): SiteStatus {
    const children: ChildSaView[] = run.site.childSas().map((c) => {
      const rec = run.children.get(c.inboundSpi >>> 0);
      return {
        inboundSpi: hex8(c.inboundSpi),
        outboundSpi: hex8(c.outboundSpi),
        mode: c.mode === 'transport' ? 'transport' : 'tunnel',
        proposal: rec?.proposal ?? c.transform,
        carrier: c.carrier,
        localSubnets: rec?.localSubnets ?? [],
        remoteSubnets: rec?.remoteSubnets ?? [],
        establishedAt: iso(rec?.establishedAt ?? now),
        rekeyedAt: rec?.rekeyedAt != null ? iso(rec.rekeyedAt) : null,
        packetsIn: c.inbound.packets,
        bytesIn: c.inbound.bytes,
        packetsOut: c.outbound?.packets ?? 0,
        bytesOut: c.outbound?.bytes ?? 0,
        drops: { ...c.inbound.drops } as Record<string, number>,
      };
    });
    let ike: IkeSaView | null = null;
    const established = (run.core?.list() ?? []).filter((sa) => sa.state === 'established');
    for (const sa of established) {
      const rec = run.ike.get(`${sa.spiI.toString('hex')}_${sa.spiR.toString('hex')}`);
      if (!rec) continue;
      ike = {
        spiI: sa.spiI.toString('hex'),
        spiR: sa.spiR.toString('hex'),
        initiator: sa.role === 'initiator',
        proposal: rec.proposal,
        peerId: rec.peerId,
        remote: formatEndpoint(sa.remote),
        encapsulated: sa.encapsulated,
        establishedAt: iso(rec.establishedAt),
        rekeyedAt: rec.rekeyedAt !== null ? iso(rec.rekeyedAt) : null,
      };
    }
    const state: SiteStatus['state'] = !run.spec.enabled
      ? 'disabled'
      : children.length > 0
        ? 'up'
        : this.busy(run)
          ? 'connecting'
          : 'down';
    return {
      name: run.spec.name,
      state,
      ike,
      children,
      lastError: run.lastError ? { at: iso(run.lastError.at), message: run.lastError.message } : null,
      at: iso(now),
    };
  }

  /** The IpsecSite of a site (for tests and counters). */
  site(name: string): IpsecSite | undefined {
    return this.runs.get(name)?.site;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Closing

  /** Deletes every IKE SA (INFORMATIONAL delete), waits up to `graceMs` for the answers, closes the sockets. */
  async close(graceMs = 2_000): Promise<void> {
    if (this.closed) return;
    const now = this.clock();
    for (const run of this.runs.values()) {
      this.stopRun(run, now);
      this.options.gateway.setRoutes(run.site, []);
    }
    this.runs.clear();
    const deadline = Date.now() + graceMs;
    while (this.retiring.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      this.tick();
    }
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.options.ike.close();
    await this.port.close();
  }
}

function hex8(spi: number): string {
  return (spi >>> 0).toString(16).padStart(8, '0');
}
