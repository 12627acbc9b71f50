/**
 * The WireGuard device as a sans-IO state machine: datagrams, packets and the time go in, actions come out.
 * It never touches a socket, a TUN device, a timer or the clock.
 *
 * Inbound datagram (`receive`):
 *   1. parse: type word and exact length → typed message or drop reason;
 *   2. handshake messages (initiation, response): the source address's handshake budget, before any BLAKE2s
 *      work (§5.3); then, when the shell defers them (`handshakeQueue`), into a bounded queue that drops its
 *      oldest, served by `serveHandshake` after transport data; else at once. Either way: mac1, then (under
 *      load) mac2, or a cookie reply within the cookie-reply budget, and the per-source rate limit, then Noise;
 *   3. transport: receiver index → keypair, age and counter limits, replay window (a look), AEAD open in place,
 *      replay window (recorded);
 *   4. key confirmation and rotation, rekey-on-receive, endpoint roaming, timers;
 *   5. inner packet: IP header sanity, source address must be one of the peer's allowed IPs → deliver.
 * Outbound packet (`send`):
 *   1. destination address → peer (longest-prefix match over allowed IPs);
 *   2. stage the packet on the peer; without a usable keypair, start a handshake and keep it staged;
 *   3. seal staged packets with consecutive counters → send to the peer's endpoint;
 *   4. timers, and rekey-on-send once the keypair is old or has sent too much.
 * Time (`tick`): fire the per-peer timers that have passed (see timers.ts).
 */
import { randomBytes } from 'node:crypto';
import type { ChaChaPoly } from '../crypto/aead.js';
import { bestChaChaPoly } from '../crypto/chacha-select.js';
import { PrivateKey, type PresharedKey, type PublicKey } from '../crypto/keys.js';
import { RandomPool } from '../crypto/random-pool.js';
import { X25519Private } from '../crypto/x25519.js';
import { endpointBytes, sameEndpoint, type Endpoint } from '../net/endpoint.js';
import { readIpHeader, type IpHeader } from '../net/ip-packet.js';
import { formatPrefix, type Prefix } from '../net/ip.js';
import { PrefixTrie } from '../net/prefix-trie.js';
import {
  COOKIE_REPLIES_PER_SECOND,
  COOKIE_REPLY_BURST,
  DEFAULT_MTU,
  HANDSHAKE_QUEUE_LENGTH,
  INITIATION_LENGTH,
  KEEPALIVE_TIMEOUT,
  MAX_HANDSHAKE_ATTEMPTS,
  MAX_STAGED_PACKETS,
  MESSAGE_INITIATION,
  MESSAGE_RESPONSE,
  MIN_INITIATION_INTERVAL,
  REJECT_AFTER_MESSAGES,
  REJECT_AFTER_TIME,
  REKEY_AFTER_MESSAGES,
  REKEY_AFTER_TIME,
  REKEY_ON_RECEIVE_AGE,
  REKEY_TIMEOUT,
  REKEY_TIMEOUT_JITTER_MAX,
  RESPONSE_LENGTH,
  SOURCE_HANDSHAKE_BURST,
  SOURCE_HANDSHAKES_PER_SECOND,
  UNDER_LOAD_AFTER,
  UNDER_LOAD_HANDSHAKES_PER_SECOND,
  UNDER_LOAD_QUEUE_FRACTION,
  ZERO_KEYS_AFTER,
} from './constants.js';
import { CookieChecker } from './cookie.js';
import { newDropCounters, type DropCounters, type DropReason } from './drops.js';
import { consumeInitiation, consumeResponse, createInitiation, createResponse } from './handshake.js';
import { HandshakeQueue } from './handshake-queue.js';
import { Keypair, openTransport, sealTransport } from './keypair.js';
import {
  INITIATION_MAC1,
  INITIATION_MAC2,
  RESPONSE_MAC1,
  RESPONSE_MAC2,
  parseMessage,
  u32,
  type CookieReply,
  type Initiation,
  type Response,
  type Transport,
} from './messages.js';
import { NO_HANDSHAKE, Peer } from './peer.js';
import { RateLimiter, TokenBucket } from './ratelimiter.js';
import { tai64n, tai64nAfter } from './tai64n.js';

export type Action =
  | {
      readonly type: 'send';
      readonly endpoint: Endpoint;
      readonly data: Uint8Array;
      readonly peer: PublicKey;
    }
  | {
      readonly type: 'deliver';
      readonly packet: Uint8Array;
      /** The packet's header as the source check read it (views into `packet`). */
      readonly header: IpHeader;
      readonly peer: PublicKey;
    }
  | { readonly type: 'drop'; readonly reason: DropReason; readonly peer?: PublicKey };

export interface Limits {
  rekeyAfterMessages: number;
  rejectAfterMessages: number;
  /** Handshake messages per second above which mac2 (cookies) is demanded. */
  underLoadHandshakesPerSecond: number;
  /** Handshake messages per second (and burst) from one source address, checked before mac1. */
  sourceHandshakesPerSecond: number;
  sourceHandshakeBurst: number;
  /** Cookie replies per second (and burst), all sources together. */
  cookieRepliesPerSecond: number;
  cookieReplyBurst: number;
}

export interface DeviceOptions {
  privateKey?: PrivateKey;
  /** Randomness for ephemeral keys, indices, cookie secrets and jitter. */
  random?: (n: number) => Uint8Array;
  aead?: ChaChaPoly;
  mtu?: number;
  /** Maps `now` to wall-clock epoch milliseconds for TAI64N and `wg show`; by default `now` is one. */
  wallClock?: (now: number) => number;
  limits?: Partial<Limits>;
  /**
   * Defer handshake messages: `receive` queues them (at most this many, HANDSHAKE_QUEUE_LENGTH if true; the
   * oldest is dropped beyond) and `serveHandshake` processes them, which the shell does after the transport
   * data of each batch, within a time budget. Off (0, the default): `receive` processes them at once.
   */
  handshakeQueue?: number | boolean;
}

export interface PeerConfig {
  publicKey: PublicKey;
  /** undefined leaves it unchanged; null removes it. */
  presharedKey?: PresharedKey | null;
  endpoint?: Endpoint | null;
  /** Seconds; 0 turns it off. */
  persistentKeepalive?: number;
  allowedIps?: readonly Prefix[];
  /** Replace the peer's allowed IPs instead of adding to them. */
  replaceAllowedIps?: boolean;
}

export interface PeerStatus {
  readonly publicKey: PublicKey;
  readonly presharedKey: PresharedKey | undefined;
  readonly endpoint: Endpoint | undefined;
  readonly allowedIps: readonly string[];
  readonly persistentKeepalive: number;
  /** Wall-clock epoch milliseconds of the latest handshake; 0 if none. */
  readonly lastHandshake: number;
  readonly rxBytes: number;
  readonly txBytes: number;
  /** Whether a keypair usable for sending exists right now. */
  readonly hasSession: boolean;
}

interface Identity {
  readonly key: PrivateKey;
  readonly x25519: X25519Private;
  readonly publicKey: PublicKey;
  readonly cookies: CookieChecker;
}

interface IndexEntry {
  readonly peer: Peer;
  keypair: Keypair | undefined;
}

export class Device {
  readonly drops: DropCounters = newDropCounters();
  readonly mtu: number;
  private identity: Identity | undefined;
  private readonly random: (n: number) => Uint8Array;
  /** Jitter is drawn per data packet: from a pool, not one call to `random` each (random-pool.ts). */
  private readonly jitterPool: RandomPool;
  private readonly aead: ChaChaPoly;
  private readonly wallClock: (now: number) => number;
  private readonly limits: Limits;
  private readonly peers = new Map<string, Peer>();
  private readonly indices = new Map<number, IndexEntry>();
  private readonly allowedIps = new PrefixTrie<Peer>();
  /** sendTo's lookup by key object; emptied when a peer is removed (a key added again is a new Peer). */
  private peerByKeyObject = new WeakMap<PublicKey, Peer>();
  private readonly rateLimiter = new RateLimiter();
  /** The handshake budget per source address, checked before mac1 (before any BLAKE2s work). */
  private readonly sourceBudget: RateLimiter;
  private readonly cookieReplies: TokenBucket;
  private readonly handshakeQueue: HandshakeQueue | undefined;
  private loadWindowStart = -Infinity;
  private loadWindowCount = 0;
  private underLoadUntil = -Infinity;
  private forcedUnderLoad = false;
  /**
   * Multicast: accept a packet from an IPv6 link-local source (fe80::/10) to a group (ff00::/8) from any peer,
   * whatever its allowed IPs. MLD reports come from the host's link-local address (RFC 3810 §5.2.13), which
   * is an address of the link between that peer and this device only (RFC 4291 §2.5.6); the replicator
   * that takes such packets knows the sender by its key, not by that address. Off by default.
   */
  linkLocalGroups = false;

  constructor(options: DeviceOptions = {}) {
    this.random = options.random ?? randomBytes;
    this.jitterPool = new RandomPool(this.random);
    this.aead = options.aead ?? bestChaChaPoly();
    this.mtu = options.mtu ?? DEFAULT_MTU;
    this.wallClock = options.wallClock ?? ((now) => now);
    this.limits = {
      rekeyAfterMessages: REKEY_AFTER_MESSAGES,
      rejectAfterMessages: REJECT_AFTER_MESSAGES,
      underLoadHandshakesPerSecond: UNDER_LOAD_HANDSHAKES_PER_SECOND,
      sourceHandshakesPerSecond: SOURCE_HANDSHAKES_PER_SECOND,
      sourceHandshakeBurst: SOURCE_HANDSHAKE_BURST,
      cookieRepliesPerSecond: COOKIE_REPLIES_PER_SECOND,
      cookieReplyBurst: COOKIE_REPLY_BURST,
      ...options.limits,
    };
    this.sourceBudget = new RateLimiter(
      this.limits.sourceHandshakesPerSecond,
      this.limits.sourceHandshakeBurst,
    );
    this.cookieReplies = new TokenBucket(this.limits.cookieRepliesPerSecond, this.limits.cookieReplyBurst);
    const queue = options.handshakeQueue === true ? HANDSHAKE_QUEUE_LENGTH : options.handshakeQueue || 0;
    this.handshakeQueue = queue > 0 ? new HandshakeQueue(queue) : undefined;
    if (options.privateKey) this.setPrivateKey(options.privateKey);
  }

  // ---------------------------------------------------------------- configuration

  get publicKey(): PublicKey | undefined {
    return this.identity?.publicKey;
  }

  get privateKey(): PrivateKey | undefined {
    return this.identity?.key;
  }

  /** Sets or clears the interface key. Every session ends; a peer with the new public key is removed. */
  setPrivateKey(key: PrivateKey | null): void {
    if (key && this.identity && key.equals(this.identity.key)) return;
    if (!key) {
      this.identity = undefined;
    } else {
      const x25519 = new X25519Private(key.bytes);
      const publicKey = key.publicKey();
      this.identity = { key, x25519, publicKey, cookies: new CookieChecker(publicKey.bytes) };
      const self = this.peers.get(publicKey.toBase64());
      if (self) this.removePeer(publicKey);
    }
    for (const peer of this.peers.values()) {
      this.forgetSessions(peer);
      peer.staticStatic = undefined;
    }
  }

  /** Adds a peer or updates an existing one (as `wg set ... peer KEY ...` does). */
  setPeer(config: PeerConfig): void {
    const id = config.publicKey.toBase64();
    if (this.identity && config.publicKey.equals(this.identity.publicKey)) return; // never our own key
    let peer = this.peers.get(id);
    if (!peer) {
      peer = new Peer(config.publicKey);
      this.peers.set(id, peer);
    }
    if (config.presharedKey !== undefined) peer.presharedKey = config.presharedKey ?? undefined;
    if (config.endpoint !== undefined) peer.endpoint = config.endpoint ?? undefined;
    if (config.persistentKeepalive !== undefined) peer.persistentKeepalive = config.persistentKeepalive;
    if (config.replaceAllowedIps) this.clearAllowedIps(peer);
    for (const prefix of config.allowedIps ?? []) this.addAllowedIp(peer, prefix);
  }

  removePeer(publicKey: PublicKey): boolean {
    const peer = this.peers.get(publicKey.toBase64());
    if (!peer) return false;
    this.forgetSessions(peer);
    peer.timers.stopAll();
    this.clearAllowedIps(peer);
    this.peers.delete(publicKey.toBase64());
    this.peerByKeyObject = new WeakMap();
    return true;
  }

  removeAllPeers(): void {
    for (const peer of [...this.peers.values()]) this.removePeer(peer.publicKey);
  }

  hasPeer(publicKey: PublicKey): boolean {
    return this.peers.has(publicKey.toBase64());
  }

  get peerCount(): number {
    return this.peers.size;
  }

  /** Every allowed-IP prefix of every peer: the destinations this device routes. */
  allowedPrefixes(): Prefix[] {
    return [...this.allowedIps.entries()].map(([p]) => p);
  }

  peerStatus(publicKey: PublicKey, now: number): PeerStatus | undefined {
    const peer = this.peers.get(publicKey.toBase64());
    return peer && this.statusOf(peer, now);
  }

  peerStatuses(now: number): PeerStatus[] {
    return [...this.peers.values()].map((p) => this.statusOf(p, now));
  }

  /**
   * Each peer's key (the object given to setPeer when the peer was added), endpoint, last handshake (wall
   * clock, 0 if none) and byte counters, without a status object per peer (peerStatuses formats every
   * allowed IP): what a gateway with thousands of peers reads every second.
   */
  forEachPeerActivity(
    fn: (
      publicKey: PublicKey,
      endpoint: Endpoint | undefined,
      lastHandshake: number,
      rxBytes: number,
      txBytes: number,
    ) => void,
  ): void {
    for (const p of this.peers.values())
      fn(p.publicKey, p.endpoint, p.lastHandshakeWall, p.rxBytes, p.txBytes);
  }

  /** Forces the under-load state (cookies demanded) on or off, for operators and tests. */
  setForcedUnderLoad(on: boolean): void {
    this.forcedUnderLoad = on;
  }

  private statusOf(peer: Peer, now: number): PeerStatus {
    return {
      publicKey: peer.publicKey,
      presharedKey: peer.presharedKey,
      endpoint: peer.endpoint,
      allowedIps: peer.allowedIps.map(formatPrefix),
      persistentKeepalive: peer.persistentKeepalive,
      lastHandshake: peer.lastHandshakeWall,
      rxBytes: peer.rxBytes,
      txBytes: peer.txBytes,
      hasSession: this.usableForSending(peer.keypairs.current, now),
    };
  }

  private addAllowedIp(peer: Peer, prefix: Prefix): void {
    // The peer's copy and the table's key are one array: the trie keeps a prefix's bytes as they are.
    const own: Prefix = { family: prefix.family, bytes: Uint8Array.from(prefix.bytes), bits: prefix.bits };
    const previous = this.allowedIps.insert(own, peer);
    if (previous === peer) return;
    if (previous) previous.allowedIps = previous.allowedIps.filter((p) => !samePrefix(p, prefix));
    peer.allowedIps.push(own);
  }

  private clearAllowedIps(peer: Peer): void {
    for (const p of peer.allowedIps) this.allowedIps.remove(p, peer);
    peer.allowedIps = [];
  }

  // ---------------------------------------------------------------- inbound

  /**
   * Handles one UDP datagram from `from`. A transport message is decrypted in place: `datagram` is
   * overwritten, and a delivered packet is a view into it, so the caller hands over a buffer it may lose.
   */
  receive(datagram: Uint8Array, from: Endpoint, now: number, out: Action[] = []): Action[] {
    // Handshake messages first, by type word and exact length alone: their admission must cost no parsing.
    const length = datagram.length;
    if (
      (length === INITIATION_LENGTH || length === RESPONSE_LENGTH) &&
      u32(datagram, 0) === (length === INITIATION_LENGTH ? MESSAGE_INITIATION : MESSAGE_RESPONSE)
    ) {
      return this.receiveHandshake(datagram, from, now, out);
    }
    const msg = parseMessage(datagram);
    switch (msg.type) {
      case 'invalid':
        return this.drop(out, msg.reason);
      case 'initiation':
      case 'response':
        return this.receiveHandshake(datagram, from, now, out); // not reached: caught above
      case 'cookie-reply':
        return this.receiveCookieReply(msg, now, out);
      case 'transport':
        return this.receiveTransport(msg, datagram.length, from, now, out);
    }
  }

  /** Handshake messages waiting in the queue (0 when handshakes are not deferred). */
  get pendingHandshakes(): number {
    return this.handshakeQueue?.length ?? 0;
  }

  /**
   * Processes the oldest queued handshake message, if any (see DeviceOptions.handshakeQueue); returns whether
   * there was one. The shell calls it after each batch's transport data, as long as its time budget lasts.
   */
  serveHandshake(now: number, out: Action[] = []): boolean {
    const queued = this.handshakeQueue?.shift();
    if (!queued) return false;
    this.processHandshake(queued.bytes, queued.from, now, out);
    return true;
  }

  /**
   * Admission of an initiation or a response before any cryptography: an interface key, and the source
   * address's handshake budget (§5.3: a flood from one address is dropped at the cost of a table lookup, before
   * mac1 is even checked). Then into the queue, or processed at once.
   */
  private receiveHandshake(datagram: Uint8Array, from: Endpoint, now: number, out: Action[]): Action[] {
    if (!this.identity) return this.drop(out, 'no-private-key');
    if (!this.sourceBudget.allow(from.address, now)) return this.drop(out, 'source-over-budget');
    const queue = this.handshakeQueue;
    if (queue === undefined) return this.processHandshake(datagram, from, now, out);
    if (queue.push(datagram, from, now)) this.drop(out, 'handshake-queue-full');
    return out;
  }

  private processHandshake(bytes: Uint8Array, from: Endpoint, now: number, out: Action[]): Action[] {
    const msg = parseMessage(bytes);
    switch (msg.type) {
      case 'initiation':
        return this.receiveInitiation(msg, from, now, out);
      case 'response':
        return this.receiveResponse(msg, from, now, out);
      default:
        return this.drop(out, msg.type === 'invalid' ? msg.reason : 'unknown-type'); // not reached
    }
  }

  private drop(out: Action[], reason: DropReason, peer?: Peer): Action[] {
    this.drops[reason]++;
    out.push(peer ? { type: 'drop', reason, peer: peer.publicKey } : { type: 'drop', reason });
    return out;
  }

  private underLoad(now: number): boolean {
    if (now - this.loadWindowStart >= 1000) {
      this.loadWindowStart = now;
      this.loadWindowCount = 0;
    }
    if (++this.loadWindowCount > this.limits.underLoadHandshakesPerSecond)
      this.underLoadUntil = now + UNDER_LOAD_AFTER;
    const queue = this.handshakeQueue;
    if (queue && queue.length >= queue.capacity * UNDER_LOAD_QUEUE_FRACTION)
      this.underLoadUntil = now + UNDER_LOAD_AFTER;
    return this.forcedUnderLoad || now < this.underLoadUntil;
  }

  /**
   * Admission for handshake messages past the source budget (§5.3): mac1 always; under load, mac2 (else a
   * cookie reply, within the cookie-reply budget) and a per-source rate limit. Returns the identity when the
   * message may proceed.
   */
  private admitHandshake(
    bytes: Uint8Array,
    mac1Offset: number,
    mac2Offset: number,
    sender: number,
    from: Endpoint,
    now: number,
    out: Action[],
  ): Identity | undefined {
    const identity = this.identity;
    if (!identity) {
      this.drop(out, 'no-private-key');
      return undefined;
    }
    if (!identity.cookies.checkMac1(bytes, mac1Offset)) {
      this.drop(out, 'bad-mac1');
      return undefined;
    }
    if (!this.underLoad(now)) return identity;
    const cookie = identity.cookies.cookie(endpointBytes(from), now, this.random);
    if (!identity.cookies.checkMac2(bytes, mac2Offset, cookie)) {
      if (!this.cookieReplies.take(now)) {
        this.drop(out, 'cookie-reply-limited');
        return undefined;
      }
      const mac1 = bytes.subarray(mac1Offset, mac1Offset + 16);
      const reply = identity.cookies.createReply(sender, mac1, cookie, this.random);
      out.push({ type: 'send', endpoint: from, data: reply, peer: identity.publicKey });
      this.drop(out, 'bad-mac2');
      return undefined;
    }
    if (!this.rateLimiter.allow(from.address, now)) {
      this.drop(out, 'rate-limited');
      return undefined;
    }
    return identity;
  }

  private receiveInitiation(msg: Initiation, from: Endpoint, now: number, out: Action[]): Action[] {
    const identity = this.admitHandshake(
      msg.bytes,
      INITIATION_MAC1,
      INITIATION_MAC2,
      msg.sender,
      from,
      now,
      out,
    );
    if (!identity) return out;
    let peer: Peer | undefined;
    const consumed = consumeInitiation(msg, identity.x25519, (remoteStatic) => {
      peer = this.peers.get(Buffer.from(remoteStatic).toString('base64'));
      return (peer && this.staticStaticOf(peer)) ?? undefined;
    });
    if (!consumed.ok || !peer) return this.drop(out, consumed.ok ? 'unknown-peer' : consumed.reason);
    // §5.1: only a timestamp newer than every one accepted before, and not faster than the flood limit.
    if (peer.lastTimestamp && !tai64nAfter(consumed.timestamp, peer.lastTimestamp)) {
      return this.drop(out, 'replayed-timestamp', peer);
    }
    if (now - peer.lastInitiationConsumedAt < MIN_INITIATION_INTERVAL)
      return this.drop(out, 'initiation-flood', peer);
    peer.lastTimestamp = consumed.timestamp;
    peer.lastInitiationConsumedAt = now;
    peer.rxBytes += msg.bytes.length;
    peer.timers.anyAuthenticatedPacketTraversal(now);
    peer.timers.anyAuthenticatedPacketReceived();
    peer.endpoint = from;

    this.abandonHandshake(peer);
    const localIndex = this.allocateIndex(peer);
    const response = createResponse(consumed, this.pskOf(peer), localIndex, this.random);
    if (!response.ok) {
      this.indices.delete(localIndex);
      return this.drop(out, response.reason, peer);
    }
    peer.cookies.addMacs(response.message, RESPONSE_MAC1, RESPONSE_MAC2, now);
    const keypair = new Keypair(
      response.keys.sendKey,
      response.keys.receiveKey,
      false,
      now,
      localIndex,
      consumed.remoteIndex,
    );
    this.indices.get(localIndex)!.keypair = keypair;
    // Responder (wireguard-go's BeginSymmetricSession): the new keypair waits in `next` for confirmation.
    this.release(peer.keypairs.next);
    this.release(peer.keypairs.previous);
    peer.keypairs.previous = undefined;
    peer.keypairs.next = keypair;
    peer.timers.sessionDerived(now);
    this.emit(out, peer, response.message, now);
    return out;
  }

  private receiveResponse(msg: Response, from: Endpoint, now: number, out: Action[]): Action[] {
    const identity = this.admitHandshake(msg.bytes, RESPONSE_MAC1, RESPONSE_MAC2, msg.sender, from, now, out);
    if (!identity) return out;
    const entry = this.indices.get(msg.receiver);
    const peer = entry?.peer;
    if (!entry || !peer || entry.keypair) return this.drop(out, 'unknown-receiver');
    const hs = peer.handshake;
    if (hs.state !== 'initiation-sent' || hs.localIndex !== msg.receiver)
      return this.drop(out, 'unexpected-response', peer);
    const result = consumeResponse(msg, hs.initiator, identity.x25519, this.pskOf(peer));
    if (!result.ok) return this.drop(out, result.reason, peer);

    const keypair = new Keypair(
      result.keys.sendKey,
      result.keys.receiveKey,
      true,
      now,
      hs.localIndex,
      msg.sender,
    );
    entry.keypair = keypair;
    peer.handshake = NO_HANDSHAKE;
    // Initiator: the new keypair is confirmed by the response itself and becomes current at once.
    const slots = peer.keypairs;
    if (slots.next) {
      this.release(slots.current);
      this.release(slots.previous);
      slots.previous = slots.next;
      slots.next = undefined;
    } else {
      this.release(slots.previous);
      slots.previous = slots.current;
    }
    slots.current = keypair;
    peer.sentLastMinuteHandshake = false;
    peer.rxBytes += msg.bytes.length;
    peer.endpoint = from;
    peer.timers.anyAuthenticatedPacketTraversal(now);
    peer.timers.anyAuthenticatedPacketReceived();
    peer.timers.sessionDerived(now);
    this.handshakeComplete(peer, now);
    // Confirm the keys to the responder at once: staged data if any, otherwise a keepalive.
    if (peer.staged.length === 0) peer.staged.push(new Uint8Array(0));
    this.sendStaged(peer, now, out);
    return out;
  }

  private receiveCookieReply(msg: CookieReply, now: number, out: Action[]): Action[] {
    const entry = this.indices.get(msg.receiver);
    if (!entry) return this.drop(out, 'unknown-receiver');
    const failure = entry.peer.cookies.consumeReply(msg, now);
    if (failure) return this.drop(out, failure, entry.peer);
    return out;
  }

  private receiveTransport(
    msg: Transport,
    length: number,
    from: Endpoint,
    now: number,
    out: Action[],
  ): Action[] {
    const entry = this.indices.get(msg.receiver);
    const keypair = entry?.keypair;
    if (!entry || !keypair) return this.drop(out, 'unknown-receiver');
    const peer = entry.peer;
    if (now - keypair.created >= REJECT_AFTER_TIME) return this.drop(out, 'key-expired', peer);
    if (msg.counter >= this.limits.rejectAfterMessages) return this.drop(out, 'counter-limit', peer);
    const limit = this.limits.rejectAfterMessages;
    if (keypair.replay.refuses(msg.counter, limit)) return this.drop(out, 'replayed-counter', peer);
    const plaintext = openTransport(this.aead, keypair, msg.counter, msg.sealed);
    if (!plaintext) return this.drop(out, 'decrypt-failed', peer);
    if (!keypair.replay.accept(msg.counter, limit)) {
      return this.drop(out, 'replayed-counter', peer);
    }

    const slots = peer.keypairs;
    if (keypair === slots.next) {
      // Key confirmation (§5.4.6): the responder may now send with this keypair.
      this.release(slots.previous);
      slots.previous = slots.current;
      slots.current = keypair;
      slots.next = undefined;
      this.handshakeComplete(peer, now);
      this.sendStaged(peer, now, out);
    }
    const current = slots.current;
    if (
      current?.isInitiator &&
      !peer.sentLastMinuteHandshake &&
      keypair === current &&
      now - current.created >= REKEY_ON_RECEIVE_AGE
    ) {
      peer.sentLastMinuteHandshake = true;
      this.sendInitiation(peer, now, false, out);
    }
    if (!sameEndpoint(peer.endpoint, from)) peer.endpoint = from; // roaming (§2.1)
    peer.rxBytes += length;
    peer.timers.anyAuthenticatedPacketTraversal(now);
    peer.timers.anyAuthenticatedPacketReceived();
    if (plaintext.length === 0) return out; // keepalive

    peer.timers.dataReceived(now);
    const header = readIpHeader(plaintext);
    if (!header) return this.drop(out, 'bad-inner-packet', peer);
    if (
      this.allowedIps.lookup(header.family, header.source) !== peer &&
      !(this.linkLocalGroups && isLinkLocalToGroup(header))
    )
      return this.drop(out, 'disallowed-source', peer);
    out.push({ type: 'deliver', packet: plaintext.subarray(0, header.length), header, peer: peer.publicKey });
    return out;
  }

  // ---------------------------------------------------------------- outbound

  /** Handles one IP packet from the tunnel interface. */
  send(
    packet: Uint8Array,
    now: number,
    out: Action[] = [],
    /** The packet's header, when the caller (the router) has read it already. */
    header: IpHeader | null = readIpHeader(packet),
  ): Action[] {
    if (!header) return this.drop(out, 'bad-inner-packet');
    const peer = this.allowedIps.lookup(header.family, header.destination);
    if (!peer) return this.drop(out, 'no-route');
    return this.sendToPeer(peer, packet, now, out, header);
  }

  /**
   * Sends one IP packet to the peer with this key, whatever its destination (multicast replication: a group
   * address belongs to no peer's allowed IPs). The packet is sealed into a buffer of its own, or staged as a
   * copy, so the caller may hand the same bytes to other peers.
   */
  sendTo(publicKey: PublicKey, packet: Uint8Array, now: number, out: Action[], header: IpHeader): Action[] {
    let peer = this.peerByKeyObject.get(publicKey);
    if (peer === undefined) {
      peer = this.peers.get(publicKey.toBase64());
      if (!peer) return this.drop(out, 'no-route');
      this.peerByKeyObject.set(publicKey, peer);
    }
    return this.sendToPeer(peer, packet, now, out, header);
  }

  private sendToPeer(peer: Peer, packet: Uint8Array, now: number, out: Action[], header: IpHeader): Action[] {
    if (!this.identity) return this.drop(out, 'no-private-key', peer);
    const keypair = peer.keypairs.current;
    if (peer.staged.length === 0 && this.usableForSending(keypair, now) && peer.endpoint) {
      // Fast path: a live session and nothing queued ahead; seal without staging a copy.
      this.emit(
        out,
        peer,
        sealTransport(this.aead, keypair, packet.subarray(0, header.length), this.mtu),
        now,
      );
      this.afterDataSent(peer, keypair, now, out);
      return out;
    }
    this.stage(peer, packet.subarray(0, header.length), out);
    this.sendStaged(peer, now, out);
    return out;
  }

  /** Sends a keepalive (an empty transport message) to a peer now, as `wg` users expect of keepalives. */
  sendKeepalive(publicKey: PublicKey, now: number, out: Action[] = []): Action[] {
    const peer = this.peers.get(publicKey.toBase64());
    if (peer) this.keepalive(peer, now, out);
    return out;
  }

  /** Starts a handshake with a peer now (subject to the REKEY_TIMEOUT rate limit). */
  initiateHandshake(publicKey: PublicKey, now: number, out: Action[] = []): Action[] {
    const peer = this.peers.get(publicKey.toBase64());
    if (peer) this.sendInitiation(peer, now, false, out);
    return out;
  }

  private keepalive(peer: Peer, now: number, out: Action[]): void {
    if (peer.staged.length === 0) peer.staged.push(new Uint8Array(0));
    this.sendStaged(peer, now, out);
  }

  private stage(peer: Peer, packet: Uint8Array, out: Action[]): void {
    peer.staged.push(Uint8Array.from(packet));
    while (peer.staged.length > MAX_STAGED_PACKETS) {
      peer.staged.shift();
      this.drop(out, 'staged-overflow', peer);
    }
  }

  private usableForSending(keypair: Keypair | undefined, now: number): keypair is Keypair {
    return (
      keypair !== undefined &&
      now - keypair.created < REJECT_AFTER_TIME &&
      keypair.sendCounter < this.limits.rejectAfterMessages
    );
  }

  private sendStaged(peer: Peer, now: number, out: Action[]): void {
    if (peer.staged.length === 0) return;
    const keypair = peer.keypairs.current;
    if (!this.usableForSending(keypair, now) || !peer.endpoint) {
      this.sendInitiation(peer, now, false, out);
      return;
    }
    let sentData = false;
    const staged = peer.staged;
    peer.staged = [];
    for (const packet of staged) {
      if (keypair.sendCounter >= this.limits.rejectAfterMessages) {
        peer.staged.push(packet);
        continue;
      }
      if (packet.length > 0) sentData = true;
      this.emit(out, peer, sealTransport(this.aead, keypair, packet, this.mtu), now);
    }
    if (sentData) this.afterDataSent(peer, keypair, now, out);
    else this.rekeyIfDue(peer, keypair, now, out);
  }

  private afterDataSent(peer: Peer, keypair: Keypair, now: number, out: Action[]): void {
    peer.timers.dataSent(now, this.jitterFn);
    this.rekeyIfDue(peer, keypair, now, out);
  }

  /** Rekey on send (§6.1): only the initiator of the current session rekeys, avoiding thundering herds. */
  private rekeyIfDue(peer: Peer, keypair: Keypair, now: number, out: Action[]): void {
    if (
      keypair.isInitiator &&
      (keypair.sendCounter > this.limits.rekeyAfterMessages || now - keypair.created >= REKEY_AFTER_TIME)
    ) {
      this.sendInitiation(peer, now, false, out);
    }
  }

  private emit(out: Action[], peer: Peer, data: Uint8Array, now: number): void {
    if (!peer.endpoint) return;
    out.push({ type: 'send', endpoint: peer.endpoint, data, peer: peer.publicKey });
    peer.txBytes += data.length;
    peer.timers.anyAuthenticatedPacketTraversal(now);
    peer.timers.anyAuthenticatedPacketSent();
  }

  private sendInitiation(peer: Peer, now: number, isRetry: boolean, out: Action[]): void {
    if (!isRetry) peer.timers.handshakeAttempts = 0;
    const identity = this.identity;
    const staticStatic = this.staticStaticOf(peer);
    if (!identity || !staticStatic) return;
    if (!peer.endpoint) {
      for (let i = 0; i < peer.staged.length; i++) this.drop(out, 'no-endpoint', peer);
      peer.staged = [];
      return;
    }
    if (now - peer.lastInitiationSentAt < REKEY_TIMEOUT) return; // one initiation per REKEY_TIMEOUT (§6.1)
    peer.lastInitiationSentAt = now;
    this.abandonHandshake(peer);
    const localIndex = this.allocateIndex(peer);
    const created = createInitiation(
      identity.publicKey.bytes,
      peer.publicKey.bytes,
      staticStatic,
      localIndex,
      tai64n(this.wallClock(now)),
      this.random,
    );
    if (!created.ok) {
      this.indices.delete(localIndex);
      this.drop(out, created.reason, peer);
      return;
    }
    peer.handshake = { state: 'initiation-sent', localIndex, initiator: created.state };
    peer.cookies.addMacs(created.message, INITIATION_MAC1, INITIATION_MAC2, now);
    this.emit(out, peer, created.message, now);
    peer.timers.handshakeInitiated(now, this.jitter());
  }

  // ---------------------------------------------------------------- time

  /** Fires every timer that is due at `now`. */
  tick(now: number, out: Action[] = []): Action[] {
    for (const peer of this.peers.values()) {
      const t = peer.timers;
      const due = (name: keyof typeof t.deadline): boolean => {
        const d = t.deadline[name];
        if (d === null || now < d) return false;
        t.deadline[name] = null;
        return true;
      };
      if (due('retransmitHandshake')) {
        if (t.handshakeAttempts >= MAX_HANDSHAKE_ATTEMPTS) {
          // REKEY_ATTEMPT_TIME has passed: give up until new traffic asks again (§6.4).
          t.deadline.sendKeepalive = null;
          for (let i = 0; i < peer.staged.length; i++) this.drop(out, 'handshake-timeout', peer);
          peer.staged = [];
          this.abandonHandshake(peer);
          t.deadline.zeroKeyMaterial ??= now + ZERO_KEYS_AFTER;
        } else {
          t.handshakeAttempts++;
          this.sendInitiation(peer, now, true, out);
        }
      }
      if (due('sendKeepalive')) {
        this.keepalive(peer, now, out);
        if (t.needAnotherKeepalive) {
          t.needAnotherKeepalive = false;
          t.deadline.sendKeepalive = now + KEEPALIVE_TIMEOUT;
        }
      }
      if (due('newHandshake')) this.sendInitiation(peer, now, false, out);
      if (due('zeroKeyMaterial')) this.forgetSessions(peer);
      if (due('persistentKeepalive') && t.persistentKeepaliveInterval > 0) this.keepalive(peer, now, out);
    }
    return out;
  }

  /** The earliest time at which `tick` has work to do, or null if no timer is pending. */
  nextDeadline(): number | null {
    let min: number | null = null;
    for (const peer of this.peers.values()) {
      const d = peer.timers.next();
      if (d !== null && (min === null || d < min)) min = d;
    }
    return min;
  }

  // ---------------------------------------------------------------- internals

  private handshakeComplete(peer: Peer, now: number): void {
    peer.timers.handshakeComplete();
    peer.lastHandshakeWall = this.wallClock(now);
  }

  private staticStaticOf(peer: Peer): Uint8Array | null {
    if (peer.staticStatic === undefined) {
      peer.staticStatic = this.identity ? this.identity.x25519.dh(peer.publicKey.bytes) : null;
    }
    return peer.staticStatic;
  }

  private pskOf(peer: Peer): Uint8Array {
    return peer.presharedKey?.bytes ?? ZERO_PSK;
  }

  private readonly jitterFn = (): number => this.jitter();

  private jitter(): number {
    return this.jitterPool.uint16() % (REKEY_TIMEOUT_JITTER_MAX + 1);
  }

  private allocateIndex(peer: Peer): number {
    for (;;) {
      const r = this.random(4);
      const index = (r[0]! | (r[1]! << 8) | (r[2]! << 16) | (r[3]! << 24)) >>> 0;
      if (!this.indices.has(index)) {
        this.indices.set(index, { peer, keypair: undefined });
        return index;
      }
    }
  }

  private abandonHandshake(peer: Peer): void {
    if (peer.handshake.state === 'initiation-sent') {
      this.indices.delete(peer.handshake.localIndex);
      peer.handshake.initiator.ephemeralPrivate.fill(0);
    }
    peer.handshake = NO_HANDSHAKE;
  }

  private release(keypair: Keypair | undefined): void {
    if (!keypair) return;
    this.indices.delete(keypair.localIndex);
    keypair.wipe();
  }

  /** Ends every session and pending handshake with a peer and erases their keys (§6.3). */
  private forgetSessions(peer: Peer): void {
    this.abandonHandshake(peer);
    const slots = peer.keypairs;
    this.release(slots.current);
    this.release(slots.previous);
    this.release(slots.next);
    slots.current = slots.previous = slots.next = undefined;
    peer.timers.deadline.zeroKeyMaterial = null;
  }
}

const ZERO_PSK = new Uint8Array(32);

function samePrefix(a: Prefix, b: Prefix): boolean {
  if (a.family !== b.family || a.bits !== b.bits) return false;
  for (let i = 0; i < a.bytes.length; i++) if (a.bytes[i] !== b.bytes[i]) return false;
  return true;
}

/** An IPv6 packet from a link-local source (fe80::/10) to a multicast group (ff00::/8). */
function isLinkLocalToGroup(header: IpHeader): boolean {
  const s = header.source;
  return header.family === 6 && header.destination[0] === 0xff && s[0] === 0xfe && (s[1]! & 0xc0) === 0x80;
}
