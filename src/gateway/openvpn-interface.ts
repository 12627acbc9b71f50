/**
 * The I/O shell of Weft's OpenVPN server: one UDP socket and one TCP listener (either optional), many client
 * sessions, each a Tunnel in the gateway's router for its member's addresses, behind the same member firewall
 * as WireGuard peers.
 *
 * A datagram (or a TCP frame) from a client goes:
 *   1. to its session, found by peer address (UDP) or connection (TCP); a P_DATA_V2 from an unknown address
 *      whose peer id names a session and which opens with that session's keys moves the session there (a
 *      client behind a NAT whose mapping changed);
 *   2. data: the data channel opens it (data-channel.ts); an IP packet whose source is the member's own
 *      address and which the member firewall admits goes to the TUN side; pings keep the session alive; an
 *      OCC EXIT ends it;
 *   3. control: the session's control channel (control-session.ts) takes it;
 *   4. no session: the stateless handshake (stateless-handshake.ts) answers a reset without keeping anything,
 *      and creates the session only once the client proved its address. With tls-crypt-v2, the client key's
 *      metadata names the member before any TLS: a member that is not installed (removed, disabled, expired,
 *      revoked) is dropped there, silently. A tls-crypt-v2 client without early negotiation (OpenVPN 2.5)
 *      gets its session at its reset once the WKc in it authenticated (as OpenVPN 2.6's server does); at most
 *      maxHalfOpenAtReset such sessions wait for TLS at once, so replayed resets cannot take every slot.
 * After TLS, the client's certificate must name the same member (Weft's CA signs it; the CRL is in the TLS
 * context); then the member's push (address, routes, DNS) is set and, once the first data keys exist, the
 * session claims the member's addresses in the router. A member connected over WireGuard too is reached over
 * whichever session it opened last (the router's newest claim).
 *
 * As a MemberTransport, it learns which members may connect (install/uninstall from GatewaySync): an
 * uninstalled member's sessions stop carrying data at once (the data keys are dropped in the same call) and
 * their control channels tell the clients to go (RESTART), so a disabled member is cut within the poll that
 * saw the change.
 *
 * With multicast on (`groups`), a session's packets to a group go to the replicator instead of the TUN side
 * (from the member's own address, or for MLD from an IPv6 link-local one), and each routed session is a
 * port the replicator sends copies and queries to.
 *
 * Nothing unauthenticated is answered except what the stateless handshake itself answers (a reset), as
 * OpenVPN's own server does; every other dropped input is counted by reason.
 */
import type { Bind, Datagram } from '../io/bind.js';
import { monotonicEpochMs, type Clock } from '../io/clock.js';
import { TcpListener, type TcpConnection, type TcpListenerOptions } from '../io/tcp-linux.js';
import { formatEndpoint, type Endpoint } from '../net/endpoint.js';
import { readIpHeader, type IpHeader } from '../net/ip-packet.js';
import { parseAddress, type Address, type Prefix } from '../net/ip.js';
import { P_DATA_V1, P_DATA_V2 } from '../openvpn/constants.js';
import { ControlSession, type ControlAction, type PushDescription } from '../openvpn/control-session.js';
import { DataChannel, DATA_V2_HEADER, isDrop } from '../openvpn/data-channel.js';
import { buildPing, OCC_EXIT } from '../openvpn/data-channel-payload.js';
import type { DataCipher } from '../openvpn/peer-info.js';
import type { StatelessHandshake } from '../openvpn/stateless-handshake.js';
import { frame, TcpDeframer } from '../openvpn/tcp-framing.js';
import type { TlsEngineFactory } from '../openvpn/tls-engine.js';
import type { Router, Tunnel } from './router.js';
import {
  hostPrefixes,
  type AdmitMember,
  type InstalledMember,
  type MemberTransport,
  type TransportStatus,
  type UninstallReason,
} from './member-transport.js';

/** Who a client is, from its client key's metadata or its certificate: a member's name, or why not. */
export type Identity =
  { readonly ok: true; readonly name: string } | { readonly ok: false; readonly reason: string };

export interface OpenVpnInterfaceOptions {
  /** The UDP socket (opened by the caller), or none. */
  readonly udp?: Bind;
  /** Where to listen for TCP, or none. */
  readonly tcp?: Omit<TcpListenerOptions, 'poller'> & Pick<TcpListenerOptions, 'poller'>;
  readonly handshake: StatelessHandshake;
  readonly tls: TlsEngineFactory;
  readonly ciphers?: readonly DataCipher[];
  /** reneg-sec in ms; undefined: the server never starts one (clients may). */
  readonly renegotiateAfterMs?: number;
  readonly router: Router;
  /** Where opened IP packets go (the gateway's TUN side): views valid until it returns (copy to keep). */
  readonly deliver: (packets: Uint8Array[]) => void;
  readonly admit: AdmitMember;
  /** tls-crypt-v2: the member a client key was issued to (checked before any TLS). */
  readonly identifyKey?: (metadata: Uint8Array) => Identity;
  /** The member a verified client certificate (DER) belongs to. */
  readonly identifyCertificate: (der: Uint8Array) => Identity;
  /** What to push to a member's client (its addresses, routes, DNS, keepalive). */
  readonly pushFor: (member: InstalledMember) => PushDescription;
  readonly log?: (line: string) => void;
  /**
   * A member's connected session ended (client exit, disable, idle, replaced …), not at close(): its status
   * changed now rather than at the next periodic report.
   */
  readonly onSessionEnded?: (member: string) => void;
  /** A session started carrying its member's data, with this cipher (the warm-up's own sessions excepted). */
  readonly onSessionConnected?: (member: string, cipher: DataCipher) => void;
  readonly clock?: Clock;
  /** At most this many sessions at once (default 4096); further clients are dropped before TLS. */
  readonly maxSessions?: number;
  /** Of them, at most this many created at a reset (OpenVPN 2.5 clients) still before TLS (default 256). */
  readonly maxHalfOpenAtReset?: number;
  /** The client is sent a ping after this long without sending it anything (default 10 s). */
  readonly pingIntervalMs?: number;
  /** A session the client has not sent anything on for this long ends (default 120 s). */
  readonly idleTimeoutMs?: number;
  readonly tickMs?: number;
}

type Link =
  | { readonly kind: 'udp'; endpoint: Endpoint; key: string }
  | { readonly kind: 'tcp'; readonly conn: TcpConnection };

/** Room for one sealed packet: the largest IP packet the TUN side hands over, the P_DATA_V2 header, a frame prefix. */
const PACKET_ROOM = 65535 + DATA_V2_HEADER + 2;
/** Datagrams per UDP send batch (buffers are reused batch after batch). */
const SEND_BATCH = 64;
/**
 * Opened packets of one input batch are decrypted straight into this arena and handed to the TUN side as views
 * of it (valid until `deliver` returns, as a datagram's bytes are until onDatagrams returns): no copy and no
 * allocation per packet. A packet that does not fit sends the batch first.
 */
const INBOUND_ARENA = 256 * 1024;

/** What the shell asks of a session's control channel (a ControlSession; a warm-up session's answers nothing). */
export type SessionControl = Pick<ControlSession, 'receive' | 'poll' | 'refuse' | 'setPush' | 'close'>;

const NO_CONTROL: SessionControl = {
  receive: () => [],
  poll: () => [],
  refuse: () => [],
  setPush: () => undefined,
  close: () => [],
};

function endpointKey(e: Endpoint): string {
  return `${e.address}|${e.port}`;
}

function addressBytes(text: string | null): Uint8Array | undefined {
  if (text === null) return undefined;
  const a = parseAddress(text);
  return a.ok ? a.value.bytes : undefined;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Multicast (gateway/multicast.ts): sessions as the replicator's ports. `up` when a session starts carrying
 * its member's data, `down` when it ends; `fromSession` takes its packets to groups (the packet is the
 * interface's buffer: used before the call returns); `flush` ends a batch.
 */
export interface SessionGroupTap {
  up(session: OpenVpnSession): void;
  down(session: OpenVpnSession): void;
  fromSession(session: OpenVpnSession, packet: Uint8Array, header: IpHeader, now: number): void;
  flush(): void;
}

function isGroup(header: IpHeader): boolean {
  const d = header.destination;
  return header.family === 4 ? (d[0]! & 0xf0) === 0xe0 : d[0] === 0xff;
}

/** An IPv6 link-local source (fe80::/10): MLD reports come from it (RFC 3810 §5.2.13). */
function fromLinkLocal(header: IpHeader): boolean {
  const s = header.source;
  return header.family === 6 && s[0] === 0xfe && (s[1]! & 0xc0) === 0x80;
}

export class OpenVpnSession implements Tunnel {
  readonly name: string;
  /** Set once the certificate named an installed member. */
  member: InstalledMember | undefined;
  /** The member the client key named (tls-crypt-v2), before TLS. */
  readonly keyMember: string | undefined;
  ip4: Uint8Array | undefined;
  ip6: Uint8Array | undefined;
  readonly data: DataChannel;
  deadline = Infinity;
  lastReceived: number;
  lastSent: number;
  connectedAt = 0;
  routed = false;
  ended = false;
  rxBytes = 0;
  txBytes = 0;
  /**
   * Data packets opened, IP packets of them delivered, data packets sealed: a warm-up session's are taken off
   * the interface's counters at its end.
   */
  rxPackets = 0;
  deliveredPackets = 0;
  txPackets = 0;
  /** Of the packets opened, those dropped as not from the member's own address. */
  spoofedPackets = 0;
  /** Set by the TLS engine's activity callback: poll at the next turn. */
  pollWanted = false;
  /** The throwaway session that warms the packet path at start (openvpn-warmup.ts): no member, no firewall. */
  readonly warm: boolean;

  constructor(
    private readonly owner: OpenVpnInterface,
    readonly control: SessionControl,
    readonly link: Link,
    readonly peerId: number,
    keyMember: string | undefined,
    now: number,
    warm = false,
  ) {
    this.warm = warm;
    this.keyMember = keyMember;
    this.name = `openvpn/${peerId}`;
    this.data = new DataChannel({ role: 'server', peerId, transport: link.kind });
    this.lastReceived = now;
    this.lastSent = now;
  }

  get endpoint(): Endpoint {
    return this.link.kind === 'udp' ? this.link.endpoint : this.link.conn.remote;
  }

  /** The router hands a packet for the member. */
  send(packet: Uint8Array, now: number, _header: IpHeader): void {
    this.owner.sealAndSend(this, packet, now);
  }

  flush(): void {
    this.owner.flush();
  }
}

export class OpenVpnInterface implements MemberTransport {
  readonly protocol = 'openvpn';
  readonly counters = {
    datagramsIn: 0,
    datagramsOut: 0,
    packetsIn: 0,
    packetsOut: 0,
    sessionsStarted: 0,
    sessionsEnded: 0,
    floated: 0,
  };
  /** Dropped inputs by reason (handshake, control, data, policy, spoofed source …). */
  readonly drops = new Map<string, number>();
  private readonly options: OpenVpnInterfaceOptions;
  private readonly clock: Clock;
  private readonly log: (line: string) => void;
  private readonly byEndpoint = new Map<string, OpenVpnSession>();
  private readonly byPeerId = new Map<number, OpenVpnSession>();
  private readonly byConn = new Map<TcpConnection, OpenVpnSession>();
  private readonly deframers = new Map<TcpConnection, TcpDeframer>();
  private readonly sessions = new Set<OpenVpnSession>();
  /** Sessions created at a client's reset (no address proof) whose certificate has not yet named a member. */
  private readonly halfOpenAtReset = new Set<OpenVpnSession>();
  /** Members that may connect, by name (from GatewaySync). */
  private readonly members = new Map<string, InstalledMember>();
  /** Bytes of sessions that ended while their member stayed installed (so its counters never go down). */
  private readonly ended = new Map<string, { rx: number; tx: number; last: number; endpoint: string }>();
  private nextPeerId = 1;
  private closing = false;
  private readonly tcp: TcpListener | undefined;
  private timer: NodeJS.Timeout | undefined;
  private pollTask: NodeJS.Immediate | undefined;
  // Buffers reused batch after batch: sealed datagrams out, opened packets in.
  private readonly sendBuffers: Uint8Array[] = [];
  private readonly pending: Datagram[] = [];
  private readonly openBuffer = new Uint8Array(PACKET_ROOM);
  private readonly inboundArena = new Uint8Array(INBOUND_ARENA);
  private inboundUsed = 0;
  private readonly inbound: Uint8Array[] = [];
  /**
   * The session of the last datagram's source: the bind shares one frozen Endpoint per peer between its
   * datagrams, so a run of datagrams from one client finds its session by identity, without building the
   * string key. Checked (the session's own endpoint object, not ended) before use.
   */
  private lastSession: OpenVpnSession | undefined;
  /** clock() of the last data packet opened or sealed for a client (not a warm-up session). */
  private lastLiveAt = -Infinity;
  /** Run at close (the path keeper's end: openvpn-warmup.ts). */
  private readonly closeHooks: (() => Promise<void>)[] = [];
  /** Multicast replication, when on (settable after construction). */
  groups: SessionGroupTap | undefined;
  private tapped = false;

  constructor(options: OpenVpnInterfaceOptions) {
    this.options = options;
    this.clock = options.clock ?? monotonicEpochMs;
    this.log = options.log ?? (() => {});
    for (let i = 0; i < SEND_BATCH; i++) this.sendBuffers.push(new Uint8Array(PACKET_ROOM));
    options.udp?.start((datagrams) => this.onDatagrams(datagrams));
    this.tcp = options.tcp
      ? TcpListener.listen(options.tcp, {
          onAccept: (conn) => {
            if (this.sessions.size >= (this.options.maxSessions ?? 4096)) return false;
            this.deframers.set(conn, new TcpDeframer());
            return true;
          },
          onData: (conn, bytes) => this.onTcpData(conn, bytes),
          onClose: (conn) => {
            this.deframers.delete(conn);
            const s = this.byConn.get(conn);
            if (s) this.endSession(s, 'connection closed');
          },
        })
      : undefined;
    this.timer = setInterval(() => this.tick(), options.tickMs ?? 100);
    this.timer.unref?.();
  }

  get udpPort(): number | undefined {
    return this.options.udp?.port;
  }

  get tcpPort(): number | undefined {
    return this.tcp?.port;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  private drop(reason: string): void {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + 1);
  }

  // ---- input ----

  private onDatagrams(datagrams: readonly Datagram[]): void {
    const now = this.clock();
    this.counters.datagramsIn += datagrams.length;
    for (const d of datagrams) {
      const last = this.lastSession;
      if (
        last !== undefined &&
        !last.ended &&
        last.link.kind === 'udp' &&
        last.link.endpoint === d.endpoint
      ) {
        this.onPacket(last, d.data, now);
        continue;
      }
      const key = endpointKey(d.endpoint);
      const session = this.byEndpoint.get(key);
      if (session) {
        this.lastSession = session;
        this.onPacket(session, d.data, now);
      } else this.onStranger(d.data, { kind: 'udp', endpoint: d.endpoint, key }, now);
    }
    this.deliverInbound();
    this.flush();
  }

  private onTcpData(conn: TcpConnection, bytes: Uint8Array): void {
    const deframer = this.deframers.get(conn);
    if (!deframer) return;
    const result = deframer.push(bytes);
    const now = this.clock();
    for (const packet of result.packets) {
      this.counters.datagramsIn++;
      const session = this.byConn.get(conn);
      if (session) this.onPacket(session, packet, now);
      else this.onStranger(packet, { kind: 'tcp', conn }, now);
      if (!conn.isOpen) break;
    }
    this.deliverInbound();
    this.flush();
    if (result.error) {
      this.drop(`tcp-${result.error.kind}`);
      conn.close();
    }
  }

  /** A packet from an address (or connection) without a session. */
  private onStranger(bytes: Uint8Array, link: Link, now: number): void {
    const opcode = bytes.length > 0 ? bytes[0]! >>> 3 : -1;
    if (opcode === P_DATA_V2 && link.kind === 'udp' && bytes.length >= 4) {
      // A client whose address changed keeps its peer id: float the session if its keys open the packet.
      const peerId = (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!;
      const s = this.byPeerId.get(peerId);
      if (s && s.link.kind === 'udp' && this.openData(s, bytes, now)) {
        this.byEndpoint.delete(s.link.key);
        s.link.endpoint = link.endpoint;
        s.link.key = link.key;
        this.byEndpoint.set(link.key, s);
        this.counters.floated++;
        return;
      }
      this.drop('data-without-session');
      return;
    }
    if (opcode === P_DATA_V1 || opcode === P_DATA_V2) {
      this.drop('data-without-session');
      return;
    }
    const endpoint = link.kind === 'udp' ? link.endpoint : link.conn.remote;
    const outcome = this.options.handshake.handle(bytes, endpoint, now);
    if (outcome.kind === 'drop') {
      this.drop(`handshake-${outcome.reason}`);
      return;
    }
    if (outcome.kind === 'reply') {
      this.transmit(link, outcome.bytes);
      return;
    }
    // The client proved its address (or, at a 2.5 client's reset, its client key authenticated the reset).
    // With tls-crypt-v2 its key names the member: check before any TLS.
    let keyMember: string | undefined;
    if (outcome.metadata !== undefined) {
      const who = this.options.identifyKey?.(outcome.metadata);
      if (!who?.ok || !this.members.has(who.name)) {
        this.drop(who?.ok ? 'member-not-installed' : 'client-key-refused');
        return;
      }
      keyMember = who.name;
    }
    if (this.sessions.size >= (this.options.maxSessions ?? 4096)) {
      this.drop('too-many-sessions');
      return;
    }
    if (
      !outcome.afterStatelessReset &&
      this.halfOpenAtReset.size >= (this.options.maxHalfOpenAtReset ?? 256)
    ) {
      this.drop('too-many-half-open');
      return;
    }
    const peerId = this.allocatePeerId();
    if (peerId === undefined) {
      this.drop('no-peer-id');
      return;
    }
    const control = new ControlSession({
      clientSessionId: outcome.clientSessionId,
      serverSessionId: outcome.serverSessionId,
      wrapper: outcome.wrapper,
      afterStatelessReset: outcome.afterStatelessReset,
      tls: this.options.tls,
      peerId,
      ...(this.options.ciphers ? { ciphers: this.options.ciphers } : {}),
      ...(this.options.renegotiateAfterMs !== undefined
        ? { renegotiateAfterMs: this.options.renegotiateAfterMs }
        : {}),
      now,
    });
    const session = new OpenVpnSession(this, control, link, peerId, keyMember, now);
    control.onActivity(() => {
      session.pollWanted = true;
      this.schedulePoll();
    });
    this.sessions.add(session);
    if (!outcome.afterStatelessReset) this.halfOpenAtReset.add(session);
    this.byPeerId.set(peerId, session);
    if (link.kind === 'udp') this.byEndpoint.set(link.key, session);
    else this.byConn.set(link.conn, session);
    this.counters.sessionsStarted++;
    this.perform(session, control.receive(outcome.bytes, now), now);
  }

  private allocatePeerId(): number | undefined {
    for (let i = 0; i < 0xfffffe; i++) {
      const id = this.nextPeerId;
      this.nextPeerId = id >= 0xfffffe ? 1 : id + 1;
      if (!this.byPeerId.has(id)) return id;
    }
    return undefined;
  }

  private onPacket(session: OpenVpnSession, bytes: Uint8Array, now: number): void {
    const opcode = bytes.length > 0 ? bytes[0]! >>> 3 : -1;
    if (opcode === P_DATA_V2 || opcode === P_DATA_V1) {
      this.openData(session, bytes, now);
      return;
    }
    const actions = session.control.receive(bytes, now);
    if (!actions.some((a) => a.kind === 'drop')) session.lastReceived = now;
    this.perform(session, actions, now);
  }

  /** Opens a data packet; true if it authenticated (whatever it then carried). */
  private openData(session: OpenVpnSession, bytes: Uint8Array, now: number): boolean {
    // The plaintext is shorter than the packet: room for the packet is room enough.
    if (INBOUND_ARENA - this.inboundUsed < bytes.length) this.deliverInbound();
    const out =
      bytes.length <= INBOUND_ARENA ? this.inboundArena.subarray(this.inboundUsed) : this.openBuffer;
    const result = session.data.open(bytes, out, now);
    if (isDrop(result)) {
      this.drop(`data-${result}`);
      return false;
    }
    session.lastReceived = now;
    session.rxBytes += bytes.length;
    session.rxPackets++;
    if (!session.warm) this.lastLiveAt = now;
    if (result === 'ping') return true;
    if (result === 'occ') {
      if (session.data.opened.occOpcode === OCC_EXIT) this.endSession(session, 'client exited');
      return true;
    }
    const member = session.member;
    if (!session.routed || (member === undefined && !session.warm)) {
      this.drop('data-before-member');
      return true;
    }
    const packet = out.subarray(0, session.data.opened.length);
    const header = readIpHeader(packet);
    if (!header) {
      this.drop('malformed-inner');
      return true;
    }
    // The member sends from its own addresses only (WireGuard's allowed IPs do the same for its peers).
    const own = header.family === 4 ? session.ip4 : session.ip6;
    const fromOwn = own !== undefined && sameBytes(own, header.source);
    const groups = this.groups;
    if (
      groups !== undefined &&
      member !== undefined &&
      isGroup(header) &&
      (fromOwn || fromLinkLocal(header))
    ) {
      groups.fromSession(session, packet, header, now);
      this.tapped = true;
      return true;
    }
    if (!fromOwn) {
      this.drop('spoofed-source');
      session.spoofedPackets++;
      return true;
    }
    // Counted against the member; the warm-up session has none (its packets go to the gateway's own address).
    if (member !== undefined ? !this.options.admit(member, packet, header) : !session.warm) return true;
    this.counters.packetsIn++;
    session.deliveredPackets++;
    if (out === this.openBuffer) this.inbound.push(packet.slice(0, header.length));
    else {
      this.inbound.push(packet.subarray(0, header.length));
      this.inboundUsed += (header.length + 7) & ~7;
    }
    if (this.inbound.length >= SEND_BATCH) this.deliverInbound();
    return true;
  }

  private deliverInbound(): void {
    if (this.tapped) {
      this.tapped = false;
      this.groups?.flush();
    }
    if (this.inbound.length === 0) return;
    const packets = this.inbound.splice(0, this.inbound.length);
    this.options.deliver(packets);
    // The views in `packets` are dead now: the arena is free again.
    this.inboundUsed = 0;
  }

  // ---- control actions ----

  private perform(session: OpenVpnSession, actions: readonly ControlAction[], now: number): void {
    for (const a of actions) {
      if (session.ended) return;
      switch (a.kind) {
        case 'send':
          this.transmit(session.link, a.bytes);
          session.lastSent = now;
          break;
        case 'deadline':
          session.deadline = a.at;
          break;
        case 'drop':
          this.drop(`control-${a.reason}`);
          break;
        case 'authenticated':
          this.authenticated(session, a.certificate, now);
          break;
        case 'peer-info':
          break;
        case 'data-keys':
          session.data.installKey(a.keyId, a.keyBlock, a.cipher);
          if (!session.routed) this.connected(session, a.cipher, now);
          else if (session.member)
            this.log(`member ${session.member.name}: new OpenVPN data keys (key id ${a.keyId})`);
          break;
        case 'key-retired':
          session.data.retireKey(a.keyId);
          break;
        case 'push-sent':
          break;
        case 'ended':
          this.endSession(session, a.detail ? `${a.reason}: ${a.detail}` : a.reason, false);
          return;
      }
    }
    this.flush();
  }

  private authenticated(session: OpenVpnSession, der: Uint8Array | undefined, now: number): void {
    this.halfOpenAtReset.delete(session);
    const who = der
      ? this.options.identifyCertificate(der)
      : ({ ok: false, reason: 'no certificate' } as const);
    const refuse = (why: string): void => {
      this.log(`openvpn: ${formatEndpoint(session.endpoint)} refused: ${why}`);
      this.perform(session, session.control.refuse(why, now), now);
    };
    if (!who.ok) return refuse(who.reason);
    if (session.keyMember !== undefined && session.keyMember !== who.name)
      return refuse(`certificate of ${who.name} with the client key of ${session.keyMember}`);
    const member = this.members.get(who.name);
    if (!member) return refuse(`member ${who.name} may not connect (disabled, expired or removed)`);
    this.attach(session, member);
    session.control.setPush(this.options.pushFor(member));
  }

  private attach(session: OpenVpnSession, member: InstalledMember): void {
    session.member = member;
    session.ip4 = addressBytes(member.record.ip);
    session.ip6 = addressBytes(member.record.ip6);
  }

  private connected(session: OpenVpnSession, cipher: DataCipher, now: number): void {
    const member = session.member;
    if (!member) return;
    // A member has one OpenVPN session: a newer one (a client that restarted) replaces the older.
    for (const other of this.sessions)
      if (other !== session && other.member?.name === member.name && other.routed)
        this.endSession(other, 'replaced by a newer session');
    session.routed = true;
    session.connectedAt = now;
    this.options.router.setRoutes(session, hostPrefixes(member.record));
    this.groups?.up(session);
    const via = session.link.kind === 'udp' ? 'UDP' : 'TCP';
    this.log(
      `member ${member.name} connected over OpenVPN (${via}, ${cipher}) from ${formatEndpoint(session.endpoint)}` +
        ` (cipher backend ${session.data.backend ?? 'none'})`,
    );
    this.options.onSessionConnected?.(member.name, cipher);
  }

  /** Ends a session: its data stops now; `tell` sends the client a RESTART first (best effort). */
  private endSession(session: OpenVpnSession, why: string, tell = true): void {
    if (session.ended) return;
    const now = this.clock();
    if (tell) {
      const actions = session.control.close(now);
      for (const a of actions) if (a.kind === 'send') this.transmit(session.link, a.bytes);
    }
    session.ended = true;
    this.sessions.delete(session);
    this.halfOpenAtReset.delete(session);
    this.byPeerId.delete(session.peerId);
    if (session.link.kind === 'udp') {
      if (this.byEndpoint.get(session.link.key) === session) this.byEndpoint.delete(session.link.key);
    } else {
      this.byConn.delete(session.link.conn);
      if (session.link.conn.isOpen) {
        // Let what was queued go: the close comes from the client or the next session's end.
        if (!tell) session.link.conn.close();
      }
    }
    if (session.routed) {
      this.options.router.removeTunnel(session);
      this.groups?.down(session);
    }
    session.data.dispose();
    this.counters.sessionsEnded++;
    const member = session.member;
    if (member) {
      if (this.members.has(member.name)) {
        const e = this.ended.get(member.name) ?? { rx: 0, tx: 0, last: 0, endpoint: '' };
        e.rx += session.rxBytes;
        e.tx += session.txBytes;
        e.last = Math.max(e.last, session.connectedAt);
        e.endpoint = formatEndpoint(session.endpoint);
        this.ended.set(member.name, e);
      }
      if (session.routed) {
        this.log(`member ${member.name} disconnected from OpenVPN (${why})`);
        if (!this.closing) this.options.onSessionEnded?.(member.name);
      }
    }
    this.flush();
  }

  // ---- output ----

  /** Seals one IP packet for the session's client and queues it. */
  sealAndSend(session: OpenVpnSession, packet: Uint8Array, now: number): void {
    if (session.ended || !session.routed) return;
    if (session.link.kind === 'tcp') {
      const out = this.sendBuffers[0]!;
      const n = session.data.seal(packet, out.subarray(2));
      if (typeof n !== 'number') return this.drop(`seal-${n}`);
      out[0] = n >>> 8;
      out[1] = n & 0xff;
      session.link.conn.write(out.subarray(0, n + 2));
    } else {
      if (this.pending.length >= SEND_BATCH) this.flush();
      const out = this.sendBuffers[this.pending.length]!;
      const n = session.data.seal(packet, out);
      if (typeof n !== 'number') return this.drop(`seal-${n}`);
      this.pending.push({ data: out.subarray(0, n), endpoint: session.link.endpoint });
    }
    session.txBytes += packet.length;
    session.txPackets++;
    session.lastSent = now;
    this.counters.packetsOut++;
    if (!session.warm) this.lastLiveAt = now;
  }

  private transmit(link: Link, bytes: Uint8Array): void {
    if (link.kind === 'tcp') {
      if (link.conn.isOpen) link.conn.write(frame(bytes));
      return;
    }
    // Control packets are few: they go at once, beside (not inside) the batch of data.
    this.flush();
    this.options.udp?.send([{ data: bytes, endpoint: link.endpoint }]);
    this.counters.datagramsOut++;
  }

  /** Sends the batch of sealed UDP datagrams. */
  flush(): void {
    if (this.pending.length === 0) return;
    this.options.udp?.send(this.pending);
    this.counters.datagramsOut += this.pending.length;
    this.pending.length = 0;
  }

  // ---- timers ----

  private schedulePoll(): void {
    if (this.pollTask) return;
    this.pollTask = setImmediate(() => {
      this.pollTask = undefined;
      const now = this.clock();
      for (const s of this.sessions) {
        if (!s.pollWanted) continue;
        s.pollWanted = false;
        this.perform(s, s.control.poll(now), now);
      }
      this.flush();
    });
  }

  private tick(): void {
    const now = this.clock();
    const ping = this.options.pingIntervalMs ?? 10_000;
    const idle = this.options.idleTimeoutMs ?? 120_000;
    for (const s of [...this.sessions]) {
      if (s.warm) continue; // no client behind it: no timeout, no keepalive
      if (now - s.lastReceived > idle) {
        this.endSession(s, `nothing from the client for ${Math.round(idle / 1000)} s`, false);
        continue;
      }
      if (now >= s.deadline) {
        s.deadline = Infinity;
        this.perform(s, s.control.poll(now), now);
        if (s.ended) continue;
      }
      if (s.routed && now - s.lastSent >= ping) {
        const payload = buildPing();
        this.sealAndSend(s, payload, now);
        s.txBytes -= payload.length; // keepalives are not the member's traffic
        this.counters.packetsOut--;
      }
    }
    this.flush();
  }

  // ---- warm-up (openvpn-warmup.ts) ----

  /**
   * Opens the throwaway session that warms the packet path: UDP from `endpoint` (a loopback socket of the
   * caller's), data keys from `keyBlock`, the route of `address` (a host prefix no member has). Its packets
   * skip the member firewall (they carry echo requests to the gateway's own address) and it never shows in
   * status. It may run beside live sessions (a second warm-up after the first client connected, the path
   * keeper): their traffic is counted as usual, and its own is taken off the counters (uncountWarm). It ends
   * when a member is given its address. Undefined without a UDP socket or a free peer id, or once the interface
   * is closing.
   */
  openWarmSession(
    endpoint: Endpoint,
    address: Prefix,
    keyBlock: Uint8Array,
    cipher: DataCipher,
  ): OpenVpnSession | undefined {
    if (!this.options.udp || this.closing) return undefined;
    const peerId = this.allocatePeerId();
    if (peerId === undefined) return undefined;
    const now = this.clock();
    const key = endpointKey(endpoint);
    const session = new OpenVpnSession(
      this,
      NO_CONTROL,
      { kind: 'udp', endpoint, key },
      peerId,
      undefined,
      now,
      true,
    );
    session.data.installKey(0, keyBlock, cipher);
    session.ip4 = address.family === 4 ? address.bytes : undefined;
    session.ip6 = address.family === 6 ? address.bytes : undefined;
    this.sessions.add(session);
    this.byPeerId.set(peerId, session);
    this.byEndpoint.set(key, session);
    // As a client's session at connected(): the fields hold what they will hold for live sessions.
    session.routed = true;
    session.connectedAt = now;
    this.options.router.setRoutes(session, [address]);
    return session;
  }

  /**
   * Ends the warm-up session and takes its packets off the counters, so they read as if it had never been
   * while live sessions' traffic meanwhile stays counted.
   */
  closeWarmSession(session: OpenVpnSession): void {
    if (!session.warm || session.ended) return;
    this.endSession(session, 'warm-up done', false);
    this.counters.sessionsEnded--;
    this.uncountWarm(session);
  }

  /** Takes a warm-up session's packets so far off the counters. */
  uncountWarm(session: OpenVpnSession): void {
    if (!session.warm) return;
    const c = this.counters;
    c.datagramsIn = Math.max(0, c.datagramsIn - session.rxPackets);
    c.packetsIn = Math.max(0, c.packetsIn - session.deliveredPackets);
    c.datagramsOut = Math.max(0, c.datagramsOut - session.txPackets);
    c.packetsOut = Math.max(0, c.packetsOut - session.txPackets);
    if (session.spoofedPackets > 0) {
      const left = (this.drops.get('spoofed-source') ?? 0) - session.spoofedPackets;
      if (left > 0) this.drops.set('spoofed-source', left);
      else this.drops.delete('spoofed-source');
    }
    session.rxPackets = 0;
    session.deliveredPackets = 0;
    session.txPackets = 0;
    session.spoofedPackets = 0;
  }

  /** The addresses warm-up sessions hold now (a second one must pick another). */
  warmAddresses(): Address[] {
    const held: Address[] = [];
    for (const s of this.sessions) if (s.warm && s.ip4 !== undefined) held.push({ family: 4, bytes: s.ip4 });
    return held;
  }

  /** True if a client's data packet was opened or sealed within the last `ms` milliseconds. */
  liveWithin(ms: number): boolean {
    return this.clock() - this.lastLiveAt < ms;
  }

  /** Runs `hook` when the interface closes, before its sockets do. */
  onClose(hook: () => Promise<void>): void {
    this.closeHooks.push(hook);
  }

  // ---- MemberTransport ----

  install(member: InstalledMember, previous: InstalledMember | undefined): void {
    this.members.set(member.name, member);
    const ip4 = addressBytes(member.record.ip);
    const moved =
      previous !== undefined &&
      (previous.record.ip !== member.record.ip || previous.record.ip6 !== member.record.ip6);
    for (const s of [...this.sessions]) {
      if (s.warm) {
        // A warm-up session holding the member's address gives it up (the path keeper picks another).
        if (ip4 !== undefined && s.ip4 !== undefined && sameBytes(s.ip4, ip4)) this.closeWarmSession(s);
        continue;
      }
      if (s.member?.name !== member.name) continue;
      if (moved) {
        // Its pushed address is no longer its own: the client reconnects and is pushed the new one.
        this.endSession(s, 'its address changed');
        continue;
      }
      s.member = member;
    }
  }

  uninstall(member: InstalledMember, reason: UninstallReason): TransportStatus | undefined {
    this.members.delete(member.name);
    let status: { rx: number; tx: number; last: number; endpoint: string | null } | undefined;
    const prior = this.ended.get(member.name);
    this.ended.delete(member.name);
    if (prior) status = { ...prior };
    for (const s of [...this.sessions]) {
      if (s.member?.name !== member.name && s.keyMember !== member.name) continue;
      status ??= { rx: 0, tx: 0, last: 0, endpoint: null };
      status.rx += s.rxBytes;
      status.tx += s.txBytes;
      status.last = Math.max(status.last, s.connectedAt);
      status.endpoint = formatEndpoint(s.endpoint);
      s.member = undefined; // its bytes are accounted here, not again at its end
      this.endSession(s, reason);
    }
    if (!status) return undefined;
    return {
      online: false,
      protocol: 'openvpn-udp',
      since: 0,
      endpoint: status.endpoint,
      lastHandshake: status.last,
      rxBytes: status.rx,
      txBytes: status.tx,
    };
  }

  statuses(now: number): Map<string, TransportStatus> {
    const out = new Map<string, TransportStatus>();
    const idle = this.options.idleTimeoutMs ?? 120_000;
    for (const [name, e] of this.ended)
      if (this.members.has(name))
        out.set(name, {
          online: false,
          protocol: 'openvpn-udp',
          since: 0,
          endpoint: e.endpoint,
          lastHandshake: e.last,
          rxBytes: e.rx,
          txBytes: e.tx,
        });
    for (const s of this.sessions) {
      const m = s.member;
      if (!m || !s.routed || !this.members.has(m.name)) continue;
      const base = out.get(m.name);
      out.set(m.name, {
        online: now - s.lastReceived < idle,
        protocol: s.link.kind === 'udp' ? 'openvpn-udp' : 'openvpn-tcp',
        since: s.connectedAt,
        endpoint: formatEndpoint(s.endpoint),
        lastHandshake: Math.max(s.connectedAt, base?.lastHandshake ?? 0),
        rxBytes: s.rxBytes + (base?.rxBytes ?? 0),
        txBytes: s.txBytes + (base?.txBytes ?? 0),
      });
    }
    return out;
  }

  /** One line per live session, for status output. */
  describe(): {
    member: string | null;
    endpoint: string;
    transport: 'udp' | 'tcp';
    since: number;
    cipher: string | null;
  }[] {
    return [...this.sessions]
      .filter((s) => !s.warm)
      .map((s) => ({
        member: s.member?.name ?? null,
        endpoint: formatEndpoint(s.endpoint),
        transport: s.link.kind,
        since: s.connectedAt,
        cipher: s.data.cipher ?? null,
      }));
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const hook of this.closeHooks.splice(0)) await hook().catch(() => undefined);
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.pollTask) clearImmediate(this.pollTask);
    for (const s of [...this.sessions]) this.endSession(s, 'the server stops');
    this.flush();
    this.tcp?.close();
    await this.options.udp?.close();
  }
}
