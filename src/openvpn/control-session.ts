/**
 * The server side of one client's OpenVPN control channel (openvpn-rfc §"Control channel"; OpenVPN's
 * ssl.c tls_process / tls_multi_process), sans-IO: datagrams and `now` in, actions out. A session is created
 * once the stateless handshake (stateless-handshake.ts) has seen the client prove its address; it owns:
 *
 *   - the wrapping (control-wrap.ts: none, tls-auth, tls-crypt, tls-crypt-v2), one per session;
 *   - one key state per key id (0 first, then 1..7, 1 again …), each with its reliability layer
 *     (reliable.ts) and its own TLS session (TlsEngine, tls-engine.ts).
 *
 * Inbound, in order:
 *   1. unwrap (typed drop on failure); the packet must carry the client's session id and any ACK must name ours;
 *   2. ACKs go to the key state of the packet's key id; a P_CONTROL_SOFT_RESET_V1 with the next key id
 *      starts a new key state (the client renegotiates);
 *   3. control messages go through the key state's reliability layer; those now in order feed its TLS engine.
 * Then (and on `poll`):
 *   4. TLS plaintext: the client's key-method 2 message first (key-method.ts, peer-info.ts): the cipher is
 *      chosen, our key-method 2 message answers it and the data keys are derived (key-derivation.ts); later,
 *      NUL-terminated control messages (push.ts): PUSH_REQUEST is answered with PUSH_REPLY, EXIT ends;
 *   5. TLS ciphertext is cut into control messages and queued in the reliability layer;
 *   6. the reliability layer's transmissions are wrapped into datagrams (`send` actions);
 *   7. timers: handshake window, server-started renegotiation (reneg-sec), the end of the old key's
 *      transition window; the earliest is reported as a `deadline` action.
 */
import { randomBytes } from 'node:crypto';
import {
  P_ACK_V1,
  P_CONTROL_HARD_RESET_SERVER_V2,
  P_CONTROL_SOFT_RESET_V1,
  P_CONTROL_V1,
  P_CONTROL_WKC_V1,
  MAX_KEY_ID,
} from './constants.js';
import type { ControlWrapper } from './control-wrap.js';
import { ekmKeyBlock, openvpnPrfKeyBlock, RANDOM_LENGTH, type KeyDerivation } from './key-derivation.js';
import { buildServerKeyMethod, parseClientKeyMethod, type KeyMethodClient } from './key-method.js';
import { sameSessionId, type AckPacket, type ControlPacket, type SessionId } from './packet.js';
import {
  chooseCipher,
  DEFAULT_DATA_CIPHERS,
  hasProto,
  IV_PROTO_CC_EXIT_NOTIFY,
  IV_PROTO_TLS_KEY_EXPORT,
  parsePeerInfo,
  type DataCipher,
  type PeerInfo,
} from './peer-info.js';
import {
  authFailedMessage,
  buildPushReplies,
  encodeMessage,
  MessageSplitter,
  parseClientMessage,
  restartMessage,
  type PushReplyOptions,
} from './push.js';
import { Reliable } from './reliable.js';
import type { TlsEngine, TlsEngineFactory } from './tls-engine.js';

/** options.c defaults: --reneg-sec 3600, --tran-window 3600, --hand-window 60. */
export const RENEG_SEC_DEFAULT = 3_600_000;
export const TRANSITION_WINDOW_DEFAULT = 3_600_000;
export const HAND_WINDOW_DEFAULT = 60_000;
/**
 * Of this implementation: TLS ciphertext per control packet. OpenVPN's --tls-mtu defaults to 1250 bytes for
 * the whole packet; 1100 leaves room for the largest wrapping (tls-crypt: 48 bytes, plus 8 ACKs).
 */
export const MAX_CONTROL_PAYLOAD = 1100;
/** Of this implementation: the largest key-method 2 message waited for across TLS records. */
export const MAX_KEY_METHOD_MESSAGE = 16_384;
/** Of this implementation: how long a closing session waits for its last message to be acknowledged. */
export const CLOSING_LINGER = 5_000;
/** The options string of our key-method 2 message (OCC; OpenVPN 2.6 only logs differences). */
export const SERVER_OPTIONS_STRING =
  'V4,dev-type tun,link-mtu 1549,tun-mtu 1500,proto UDPv4,keysize 256,key-method 2,tls-server';

/** The push options the session fills in itself. */
export type PushDescription = Omit<PushReplyOptions, 'peerId' | 'cipher' | 'tlsEkm' | 'ccExit'>;

export interface ControlSessionOptions {
  readonly serverSessionId: SessionId;
  readonly clientSessionId: SessionId;
  readonly wrapper: ControlWrapper;
  readonly tls: TlsEngineFactory;
  /** The 24-bit peer id for P_DATA_V2. */
  readonly peerId: number;
  readonly ciphers?: readonly DataCipher[];
  /** Offer TLS-EKM key derivation to clients that announce it (default true). */
  readonly offerEkm?: boolean;
  /** Start a renegotiation this long after a key became active (reneg-sec); undefined: never. */
  readonly renegotiateAfterMs?: number;
  readonly transitionWindowMs?: number;
  readonly handshakeWindowMs?: number;
  readonly maxControlPayload?: number;
  readonly random?: (n: number) => Uint8Array;
  /** What to push; may also be given later with setPush(). */
  readonly push?: PushDescription;
  /**
   * Key state 0 begins after a stateless handshake: packet 0 each way (the resets) was exchanged before the
   * session existed. Default true. False: the session begins at the client's reset (its first input, packet 0;
   * a tls-crypt-v2 client without early negotiation, stateless-handshake.ts), and our
   * P_CONTROL_HARD_RESET_SERVER_V2 is our packet 0, sent and retransmitted like any control message.
   */
  readonly afterStatelessReset?: boolean;
  readonly now: number;
}

export type SessionEndReason =
  | 'client-exit'
  | 'handshake-timeout'
  | 'tls-failed'
  | 'key-method-invalid'
  | 'peer-info-invalid'
  | 'no-common-cipher'
  | 'certificate-changed'
  | 'control-backlog-full'
  | 'refused'
  | 'closed';

export type ControlAction =
  | { readonly kind: 'send'; readonly bytes: Uint8Array }
  /** Call poll() at `at` (replaces any earlier deadline). */
  | { readonly kind: 'deadline'; readonly at: number }
  /** The client's certificate passed TLS verification (key id 0). */
  | {
      readonly kind: 'authenticated';
      readonly certificate: Uint8Array | undefined;
      readonly protocol: string;
    }
  /** The client's key-method 2 message (key id 0): who it is and what it can do. */
  | { readonly kind: 'peer-info'; readonly info: PeerInfo; readonly username: string | undefined }
  /** The 256-byte key2 block for `keyId` (the data channel slices it). */
  | {
      readonly kind: 'data-keys';
      readonly keyId: number;
      readonly keyBlock: Uint8Array;
      readonly cipher: DataCipher;
      readonly peerId: number;
      readonly derivation: KeyDerivation;
    }
  /** The transition window of an old key id ended: the data channel forgets it. */
  | { readonly kind: 'key-retired'; readonly keyId: number }
  | { readonly kind: 'push-sent'; readonly messages: number }
  | { readonly kind: 'drop'; readonly reason: string }
  | { readonly kind: 'ended'; readonly reason: SessionEndReason; readonly detail?: string };

type Phase = 'tls' | 'active';

interface KeyState {
  readonly keyId: number;
  readonly reliable: Reliable;
  readonly engine: TlsEngine;
  readonly createdAt: number;
  readonly serverRandom1: Uint8Array;
  readonly serverRandom2: Uint8Array;
  phase: Phase;
  authenticated: boolean;
  clientKeyMethod: KeyMethodClient | undefined;
  activeSince: number;
  /** Set when a newer key took over: the time this one is retired. */
  retireAt: number | undefined;
  readonly splitter: MessageSplitter;
  /** Plaintext of a key-method 2 message that arrived in more than one TLS record. */
  kmPending: Uint8Array;
}

export interface ControlSessionCounters {
  received: number;
  dropped: number;
  sent: number;
  renegotiations: number;
}

/** The next key id after `k`: 1..7, wrapping to 1 (0 is only the first). */
export function nextKeyId(k: number): number {
  return k >= MAX_KEY_ID ? 1 : k + 1;
}

export class ControlSession {
  private readonly opts: ControlSessionOptions;
  private readonly keys = new Map<number, KeyState>();
  /** The key id whose data keys are the newest (undefined before the first). */
  private primary: number | undefined;
  private cipher: DataCipher | undefined;
  private derivation: KeyDerivation | undefined;
  private peerInfo: PeerInfo | undefined;
  private certificate: Uint8Array | undefined;
  private push: PushDescription | undefined;
  private pushRequested = false;
  private ended: { reason: SessionEndReason; detail?: string } | undefined;
  /** A last message (AUTH_FAILED, RESTART) is on its way; the session ends once it is acknowledged. */
  private closing: { reason: SessionEndReason; detail?: string; until: number; queued: boolean } | undefined;
  private pendingActions: ControlAction[] = [];
  private readonly random: (n: number) => Uint8Array;
  private activity: (() => void) | undefined;
  readonly counters: ControlSessionCounters = { received: 0, dropped: 0, sent: 0, renegotiations: 0 };

  constructor(options: ControlSessionOptions) {
    this.opts = options;
    this.random = options.random ?? ((n) => new Uint8Array(randomBytes(n)));
    this.push = options.push;
    const stateless = options.afterStatelessReset ?? true;
    const first = this.newKeyState(0, options.now, stateless ? 1 : 0);
    if (!stateless) first.reliable.enqueue(P_CONTROL_HARD_RESET_SERVER_V2, new Uint8Array(0));
    this.keys.set(0, first);
  }

  get clientSessionId(): SessionId {
    return this.opts.clientSessionId;
  }
  get serverSessionId(): SessionId {
    return this.opts.serverSessionId;
  }
  get isEnded(): boolean {
    return this.ended !== undefined;
  }
  /** Key ids with live key states. */
  get keyIds(): number[] {
    return [...this.keys.keys()];
  }

  /** The shell's hook: called when a TLS engine has output waiting (then call poll). */
  onActivity(listener: () => void): void {
    this.activity = listener;
  }

  private newKeyState(keyId: number, now: number, firstId: number): KeyState {
    const engine = this.opts.tls();
    engine.onActivity(() => this.activity?.());
    return {
      keyId,
      reliable: new Reliable({ firstPacketId: firstId, firstReceiveId: firstId }),
      engine,
      createdAt: now,
      serverRandom1: this.random(RANDOM_LENGTH),
      serverRandom2: this.random(RANDOM_LENGTH),
      phase: 'tls',
      authenticated: false,
      clientKeyMethod: undefined,
      activeSince: 0,
      retireAt: undefined,
      splitter: new MessageSplitter(),
      kmPending: new Uint8Array(0),
    };
  }

  /** What to push; a PUSH_REQUEST that waited for it is answered at the next poll. */
  setPush(push: PushDescription): void {
    this.push = push;
  }

  /** Refuses the client (AUTH_FAILED with `reason`); the session ends once that is delivered. */
  refuse(reason: string, now: number): ControlAction[] {
    if (this.ended || this.closing) return [];
    this.sendMessage(authFailedMessage(reason));
    return [...this.startClosing('refused', now, reason), ...this.pump(now)];
  }

  /** Tells the client to reconnect (RESTART); the session ends once that is delivered. */
  close(now: number): ControlAction[] {
    if (this.ended || this.closing) return [];
    this.sendMessage(restartMessage());
    return [...this.startClosing('closed', now), ...this.pump(now)];
  }

  /** The data keys stop at once; the control channel lingers (CLOSING_LINGER) to deliver a last message. */
  private startClosing(reason: SessionEndReason, now: number, detail?: string): ControlAction[] {
    const base = { reason, until: now + CLOSING_LINGER, queued: false };
    this.closing = detail === undefined ? base : { ...base, detail };
    const out: ControlAction[] = [];
    for (const ks of this.keys.values())
      if (ks.phase === 'active') out.push({ kind: 'key-retired', keyId: ks.keyId });
    return out;
  }

  /** One datagram from the client's address. */
  receive(bytes: Uint8Array, now: number): ControlAction[] {
    if (this.ended) return [];
    const dropped = this.accept(bytes, now);
    if (dropped !== undefined) {
      this.counters.dropped++;
      return [{ kind: 'drop', reason: dropped }, ...this.pump(now)];
    }
    this.counters.received++;
    return this.pump(now);
  }

  /** Timers and TLS engine output. */
  poll(now: number): ControlAction[] {
    if (this.ended) return [];
    return this.pump(now);
  }

  // ---- inbound ----

  private accept(bytes: Uint8Array, now: number): string | undefined {
    const opened = this.opts.wrapper.unwrap(bytes);
    if (!opened.ok) return `unwrap:${opened.drop}`;
    const packet: ControlPacket | AckPacket = opened.packet;
    if (!sameSessionId(packet.sessionId, this.opts.clientSessionId)) {
      // A client that restarted sends a new hard reset: the shell hands it to the stateless handshake.
      return packet.kind === 'control' && (packet.opcode === 7 || packet.opcode === 10)
        ? 'hard-reset-new-session'
        : 'wrong-session-id';
    }
    if (packet.acks.ids.length > 0) {
      const remote = packet.acks.remoteSessionId;
      if (remote === undefined || !sameSessionId(remote, this.opts.serverSessionId))
        return 'wrong-ack-session-id';
    }
    let ks = this.keys.get(packet.keyId);
    if (ks === undefined) {
      if (
        packet.kind === 'control' &&
        packet.opcode === P_CONTROL_SOFT_RESET_V1 &&
        this.primary !== undefined &&
        packet.keyId === nextKeyId(this.primary)
      ) {
        ks = this.startKeyState(packet.keyId, now);
      } else {
        return 'unknown-key-id';
      }
    }
    ks.reliable.acknowledge(packet.acks.ids);
    if (packet.kind === 'ack') return undefined;
    const verdict = ks.reliable.receive(packet.packetId, packet.opcode, packet.payload);
    if (verdict === 'beyond-window') return 'beyond-window';
    for (const message of ks.reliable.takeDelivered()) {
      if (message.opcode === P_CONTROL_V1 || message.opcode === P_CONTROL_WKC_V1) {
        if (message.payload.length > 0) ks.engine.receiveCiphertext(message.payload);
      }
      // Resets carry no TLS (a V2 reset's payload is early-negotiation TLVs at most).
    }
    return undefined;
  }

  /** A new key state for a renegotiation; our P_CONTROL_SOFT_RESET_V1 is its packet 0. */
  private startKeyState(keyId: number, now: number): KeyState {
    const ks = this.newKeyState(keyId, now, 0);
    this.keys.set(keyId, ks);
    ks.reliable.enqueue(P_CONTROL_SOFT_RESET_V1, new Uint8Array(0));
    this.counters.renegotiations++;
    return ks;
  }

  // ---- the pump ----

  private pump(now: number): ControlAction[] {
    const out: ControlAction[] = this.pendingActions;
    this.pendingActions = [];
    if (this.ended) return out;
    if (this.closing) {
      const closing = this.closing;
      for (const ks of this.keys.values()) {
        const before = ks.reliable.unacknowledged;
        this.queueCiphertext(ks, out);
        if (ks.reliable.unacknowledged > before) closing.queued = true;
        this.transmit(ks, now, out);
      }
      const delivered =
        closing.queued && [...this.keys.values()].every((k) => k.reliable.unacknowledged === 0);
      if (delivered || now >= closing.until) {
        this.closing = undefined;
        out.push(...this.end(closing.reason, closing.detail));
      } else {
        out.push({ kind: 'deadline', at: Math.min(closing.until, this.deadline() ?? closing.until) });
      }
      return out;
    }
    for (const ks of [...this.keys.values()]) {
      this.runKeyState(ks, now, out);
      if (this.ended || this.closing) break;
    }
    if (this.closing) return [...out, ...this.pump(now)];
    if (!this.ended) this.timers(now, out);
    for (const ks of this.keys.values()) this.transmit(ks, now, out);
    const deadline = this.deadline();
    if (deadline !== undefined && !this.ended) out.push({ kind: 'deadline', at: deadline });
    return out;
  }

  private runKeyState(ks: KeyState, now: number, out: ControlAction[]): void {
    const state = ks.engine.state;
    if (state.kind === 'failed') {
      if (ks.keyId === this.primary || this.primary === undefined) {
        out.push(...this.end('tls-failed', state.reason));
      } else {
        this.discard(ks, out, `renegotiation-tls-failed:${state.reason}`);
      }
      return;
    }
    if (state.kind === 'established' && !ks.authenticated) {
      ks.authenticated = true;
      if (this.certificate === undefined) {
        this.certificate = state.peerCertificate;
        out.push({ kind: 'authenticated', certificate: state.peerCertificate, protocol: state.protocol });
      } else if (!sameBytes(this.certificate, state.peerCertificate)) {
        out.push(...this.end('certificate-changed'));
        return;
      }
    }
    for (const chunk of ks.engine.takePlaintext()) {
      if (ks.clientKeyMethod === undefined) {
        this.onKeyMethod(ks, chunk, now, out);
      } else {
        for (const text of ks.splitter.push(chunk)) this.onMessage(text, out);
      }
      if (this.ended || this.closing) return;
    }
    if (this.pushRequested && this.push !== undefined && this.primary !== undefined) {
      this.pushRequested = false;
      this.sendPush(out);
    }
    this.queueCiphertext(ks, out);
  }

  private onKeyMethod(ks: KeyState, chunk: Uint8Array, now: number, out: ControlAction[]): void {
    // OpenVPN writes the message with one SSL_write, so it is normally one TLS record; a message cut
    // across records waits for the rest (bounded).
    const bytes = ks.kmPending.length === 0 ? chunk : new Uint8Array(Buffer.concat([ks.kmPending, chunk]));
    const parsed = parseClientKeyMethod(bytes);
    if (!parsed.ok) {
      const truncated = parsed.drop.startsWith('truncated-');
      if (truncated && bytes.length < MAX_KEY_METHOD_MESSAGE) {
        ks.kmPending = bytes;
        return;
      }
      out.push(...this.end('key-method-invalid', parsed.drop));
      return;
    }
    ks.kmPending = new Uint8Array(0);
    const km = parsed.message;
    ks.clientKeyMethod = km;
    // Our key-method 2 message answers first; a refusal (AUTH_FAILED) follows it, as OpenVPN's server does.
    ks.engine.sendPlaintext(
      buildServerKeyMethod({
        random1: ks.serverRandom1,
        random2: ks.serverRandom2,
        options: SERVER_OPTIONS_STRING,
        peerInfo: undefined,
      }),
    );
    if (this.cipher === undefined) {
      const info = parsePeerInfo(km.peerInfo ?? '');
      if (!info.ok) {
        out.push(...this.end('peer-info-invalid', info.drop));
        return;
      }
      this.peerInfo = info.info;
      out.push({ kind: 'peer-info', info: info.info, username: km.username });
      const choice = chooseCipher(info.info, this.opts.ciphers ?? DEFAULT_DATA_CIPHERS);
      if (!choice.ok) {
        this.sendMessage(authFailedMessage('no common data cipher'), ks);
        out.push(...this.startClosing('no-common-cipher', now, choice.reason));
        return;
      }
      this.cipher = choice.cipher;
      this.derivation =
        (this.opts.offerEkm ?? true) && hasProto(info.info, IV_PROTO_TLS_KEY_EXPORT)
          ? 'tls-ekm'
          : 'openvpn-prf';
    }
    const keyBlock =
      this.derivation === 'tls-ekm'
        ? ekmKeyBlock((length, label) => ks.engine.exportKeyingMaterial(length, label))
        : openvpnPrfKeyBlock({
            preMaster: km.preMaster,
            clientRandom1: km.random1,
            clientRandom2: km.random2,
            serverRandom1: ks.serverRandom1,
            serverRandom2: ks.serverRandom2,
            clientSessionId: this.opts.clientSessionId,
            serverSessionId: this.opts.serverSessionId,
          });
    km.preMaster.fill(0);
    ks.phase = 'active';
    ks.activeSince = now;
    const previous = this.primary;
    this.primary = ks.keyId;
    out.push({
      kind: 'data-keys',
      keyId: ks.keyId,
      keyBlock,
      cipher: this.cipher!,
      peerId: this.opts.peerId,
      derivation: this.derivation!,
    });
    // The old key stays valid through the transition window; anything older goes now.
    for (const other of [...this.keys.values()]) {
      if (other.keyId === ks.keyId) continue;
      if (other.keyId === previous && other.phase === 'active') {
        if (other.retireAt === undefined)
          other.retireAt = now + (this.opts.transitionWindowMs ?? TRANSITION_WINDOW_DEFAULT);
      } else if (other.phase === 'active') {
        this.retire(other, out);
      }
    }
  }

  private onMessage(text: string, out: ControlAction[]): void {
    const message = parseClientMessage(text);
    switch (message.kind) {
      case 'push-request':
        if (this.push === undefined) this.pushRequested = true;
        else this.sendPush(out);
        break;
      case 'exit':
        out.push(...this.end('client-exit'));
        break;
      case 'other':
        out.push({ kind: 'drop', reason: 'unknown-control-message' });
        break;
    }
  }

  private sendPush(out: ControlAction[]): void {
    if (this.push === undefined || this.cipher === undefined) return;
    const messages = buildPushReplies({
      ...this.push,
      peerId: this.opts.peerId,
      cipher: this.cipher,
      tlsEkm: this.derivation === 'tls-ekm',
      ccExit: this.peerInfo !== undefined && hasProto(this.peerInfo, IV_PROTO_CC_EXIT_NOTIFY),
    });
    for (const m of messages) this.sendMessage(m);
    out.push({ kind: 'push-sent', messages: messages.length });
  }

  /** A control message over the newest key state's TLS session (OpenVPN's KS_PRIMARY). */
  private sendMessage(text: string, ks?: KeyState): void {
    const target = ks ?? (this.primary === undefined ? this.keys.get(0) : this.keys.get(this.primary));
    target?.engine.sendPlaintext(encodeMessage(text));
  }

  private queueCiphertext(ks: KeyState, out: ControlAction[]): void {
    const max = this.opts.maxControlPayload ?? MAX_CONTROL_PAYLOAD;
    for (const chunk of ks.engine.takeCiphertext()) {
      for (let at = 0; at < chunk.length; at += max) {
        if (ks.reliable.enqueue(P_CONTROL_V1, chunk.slice(at, at + max)) === 'backlog-full') {
          out.push(...this.end('control-backlog-full'));
          return;
        }
      }
    }
  }

  private transmit(ks: KeyState, now: number, out: ControlAction[]): void {
    for (const t of ks.reliable.poll(now)) {
      const acks = {
        ids: t.acks,
        remoteSessionId: t.acks.length > 0 ? this.opts.clientSessionId : undefined,
      };
      const packet: ControlPacket | AckPacket =
        t.kind === 'control'
          ? {
              kind: 'control',
              opcode: t.opcode,
              keyId: ks.keyId,
              sessionId: this.opts.serverSessionId,
              acks,
              packetId: t.packetId,
              payload: t.payload,
            }
          : { kind: 'ack', opcode: P_ACK_V1, keyId: ks.keyId, sessionId: this.opts.serverSessionId, acks };
      this.counters.sent++;
      out.push({ kind: 'send', bytes: this.opts.wrapper.wrap(packet, now) });
    }
  }

  private timers(now: number, out: ControlAction[]): void {
    const hand = this.opts.handshakeWindowMs ?? HAND_WINDOW_DEFAULT;
    for (const ks of [...this.keys.values()]) {
      if (ks.phase === 'tls' && now >= ks.createdAt + hand) {
        if (this.primary === undefined) {
          out.push(...this.end('handshake-timeout'));
          return;
        }
        this.discard(ks, out, 'renegotiation-timeout');
      } else if (ks.retireAt !== undefined && now >= ks.retireAt) {
        this.retire(ks, out);
      }
    }
    const reneg = this.opts.renegotiateAfterMs;
    if (reneg !== undefined && this.primary !== undefined) {
      const primary = this.keys.get(this.primary);
      const pending = [...this.keys.values()].some((k) => k.phase === 'tls');
      if (primary && !pending && now >= primary.activeSince + reneg)
        this.startKeyState(nextKeyId(this.primary), now);
    }
  }

  private deadline(): number | undefined {
    let earliest: number | undefined;
    const take = (t: number | undefined): void => {
      if (t !== undefined && (earliest === undefined || t < earliest)) earliest = t;
    };
    const hand = this.opts.handshakeWindowMs ?? HAND_WINDOW_DEFAULT;
    for (const ks of this.keys.values()) {
      take(ks.reliable.nextDeadline());
      if (ks.phase === 'tls') take(ks.createdAt + hand);
      take(ks.retireAt);
    }
    const reneg = this.opts.renegotiateAfterMs;
    if (reneg !== undefined && this.primary !== undefined) {
      const primary = this.keys.get(this.primary);
      if (primary && ![...this.keys.values()].some((k) => k.phase === 'tls'))
        take(primary.activeSince + reneg);
    }
    return earliest;
  }

  private retire(ks: KeyState, out: ControlAction[]): void {
    ks.engine.close();
    this.keys.delete(ks.keyId);
    out.push({ kind: 'key-retired', keyId: ks.keyId });
  }

  private discard(ks: KeyState, out: ControlAction[], reason: string): void {
    ks.engine.close();
    this.keys.delete(ks.keyId);
    out.push({ kind: 'drop', reason });
  }

  private end(reason: SessionEndReason, detail?: string): ControlAction[] {
    if (this.ended) return [];
    const retired = this.closing === undefined && !['refused', 'closed', 'no-common-cipher'].includes(reason);
    this.ended = detail === undefined ? { reason } : { reason, detail };
    const out: ControlAction[] = [];
    for (const ks of this.keys.values()) {
      if (retired && ks.phase === 'active') out.push({ kind: 'key-retired', keyId: ks.keyId });
      ks.engine.close();
    }
    out.push(detail === undefined ? { kind: 'ended', reason } : { kind: 'ended', reason, detail });
    return out;
  }
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.length === b.length && Buffer.from(a).equals(Buffer.from(b));
}
