/**
 * The stateless handshake (OpenVPN 2.6, ssl_pkt.c calculate_session_id_hmac / check_session_id_hmac): the
 * server answers a client's hard reset without keeping anything, by making its own session id an HMAC of a
 * server secret, the client's address and port, the client's session id and a time slot. The client's next
 * packet ACKs our reset and so names that session id; only a client that receives at its address can know
 * it, and only then is a session created. A flood of spoofed resets costs an HMAC each and no memory.
 *
 *   slot    = floor(now / ceil(handshake window / 2))          (OpenVPN: now / ((handwindow + 1) / 2))
 *   cookie  = HMAC-SHA256(secret, slot ‖ address ‖ port ‖ client session id)[0..8]
 *   accept  when the cookie matches for a slot of now − 2 … now + 1, as OpenVPN does.
 *
 * For tls-crypt-v2 the server also asks the client (EARLY_NEG_FLAGS, early-negotiation.ts) to append its WKc
 * to that next packet, so the client key need not be kept either.
 *
 * A tls-crypt-v2 client that does not announce early negotiation (OpenVPN 2.5: its wrap packet ids start at 1,
 * not at EARLY_NEG_START) sends its WKc with the V3 reset only, never again, so the client key has to be kept
 * from the reset on. OpenVPN 2.6's server then creates the session at the reset (mudp.c do_pre_decrypt_check:
 * VERDICT_VALID_RESET_V3 without early negotiation returns true, unless `--tls-crypt-v2 … force-cookie`), and so
 * does this one (`legacyTlsCryptV2`, default on): but only for a reset whose WKc unwraps with the server key and
 * whose packet then authenticates with the client key inside it. Such a reset can only come from a holder of a
 * client key (or be a replay of one); anything else is still dropped with no state. The session's own reset is
 * then its reliable packet 0 (ControlSession, afterStatelessReset false).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import {
  P_ACK_V1,
  P_CONTROL_HARD_RESET_CLIENT_V2,
  P_CONTROL_HARD_RESET_CLIENT_V3,
  P_CONTROL_HARD_RESET_SERVER_V2,
  P_CONTROL_V1,
  P_CONTROL_WKC_V1,
  SESSION_ID_LENGTH,
} from './constants.js';
import { serverWrapper, type ControlWrapper, type WrapConfig } from './control-wrap.js';
import { announcesEarlyNegotiation, encodeEarlyNegotiation } from './early-negotiation.js';
import {
  parseHeaderByte,
  parsePacket,
  serializePacket,
  type AckPacket,
  type ControlPacket,
  type SessionId,
} from './packet.js';
import { TlsAuthKeys, tlsAuthUnwrap, tlsAuthWrap } from './tls-auth.js';
import { TlsCryptKeys, tlsCryptUnwrap, tlsCryptWrap, type StaticKey } from './tls-crypt.js';
import { unwrapWithWkc } from './tls-crypt-v2.js';

/** options.c: --hand-window 60. */
export const HANDSHAKE_WINDOW = 60_000;
/** check_session_id_hmac: the slots accepted, relative to now. */
export const COOKIE_SLOT_OFFSETS = [-2, -1, 0, 1] as const;
export const COOKIE_SECRET_LENGTH = 32;

export interface PeerAddress {
  readonly address: string;
  readonly port: number;
}

/** Makes and checks the HMAC session ids. */
export class SessionCookies {
  private readonly secret: Uint8Array;
  private readonly slotMs: number;

  constructor(secret: Uint8Array, handshakeWindowMs: number = HANDSHAKE_WINDOW) {
    if (secret.length !== COOKIE_SECRET_LENGTH)
      throw new RangeError(`the cookie secret is ${COOKIE_SECRET_LENGTH} bytes`);
    if (!Number.isInteger(handshakeWindowMs) || handshakeWindowMs < 2_000)
      throw new RangeError('bad handshake window');
    this.secret = Uint8Array.from(secret);
    // Whole seconds, as OpenVPN quantises: (handwindow + 1) / 2 seconds per slot.
    this.slotMs = Math.floor((Math.floor(handshakeWindowMs / 1000) + 1) / 2) * 1000;
  }

  slot(nowMs: number): number {
    return Math.floor(nowMs / this.slotMs);
  }

  make(clientSid: Uint8Array, from: PeerAddress, nowMs: number, offset = 0): SessionId {
    const slot = Buffer.alloc(4);
    slot.writeUInt32BE((this.slot(nowMs) + offset) >>> 0);
    const port = Buffer.alloc(2);
    port.writeUInt16BE(from.port & 0xffff);
    const mac = createHmac('sha256', this.secret)
      .update(slot)
      .update(Buffer.from(from.address, 'latin1'))
      .update(port)
      .update(clientSid)
      .digest();
    return new Uint8Array(mac.subarray(0, SESSION_ID_LENGTH)) as SessionId;
  }

  check(serverSid: Uint8Array, clientSid: Uint8Array, from: PeerAddress, nowMs: number): boolean {
    if (serverSid.length !== SESSION_ID_LENGTH) return false;
    let ok = false;
    for (const offset of COOKIE_SLOT_OFFSETS) {
      if (timingSafeEqual(this.make(clientSid, from, nowMs, offset), serverSid)) ok = true;
    }
    return ok;
  }
}

export type HandshakeDropReason =
  | 'empty'
  /** Not a reset, and not a packet that completes one: a packet for a session that does not exist. */
  | 'no-session'
  | 'not-a-reset'
  | 'bad-reset'
  /** tls-crypt-v2 needs a V3 reset (with WKc) and, statelessly, early negotiation. */
  | 'needs-v3-reset'
  | 'no-early-negotiation'
  | 'needs-wkc'
  | 'no-ack-of-reset'
  | 'bad-cookie'
  | 'unwrap-failed';

export type HandshakeOutcome =
  /** Send `bytes` back to the sender; nothing was kept. */
  | { readonly kind: 'reply'; readonly bytes: Uint8Array }
  /**
   * The sender proved its address: create a session with these ids and this wrapper, then give it
   * `bytes` (the packet that proved it) as its first input.
   */
  | {
      readonly kind: 'establish';
      readonly clientSessionId: SessionId;
      readonly serverSessionId: SessionId;
      readonly wrapper: ControlWrapper;
      /**
       * True: our reset went out statelessly and `bytes` completes it. False (a tls-crypt-v2 client without
       * early negotiation): `bytes` is the client's reset, and the session sends its own reset.
       */
      readonly afterStatelessReset: boolean;
      /** tls-crypt-v2: the metadata of the client key (the member it was issued to). */
      readonly metadata: Uint8Array | undefined;
      readonly bytes: Uint8Array;
    }
  | { readonly kind: 'drop'; readonly reason: HandshakeDropReason; readonly detail?: string };

export interface HandshakeCounters {
  replies: number;
  established: number;
  /** Of `established`: tls-crypt-v2 clients without early negotiation, given state at their reset. */
  establishedAtReset: number;
  dropped: number;
}

export interface StatelessHandshakeOptions {
  /** --hand-window in ms (default 60 s). */
  readonly handshakeWindowMs?: number;
  /**
   * Serve tls-crypt-v2 clients without early negotiation (OpenVPN 2.5) by creating their session at an
   * authenticated reset (default true, as OpenVPN 2.6; false is its `force-cookie`: such clients are dropped).
   */
  readonly legacyTlsCryptV2?: boolean;
}

export class StatelessHandshake {
  private readonly cookies: SessionCookies;
  /** The static wrapping keys, derived once (tls-auth, tls-crypt). */
  private readonly authKeys: TlsAuthKeys | undefined;
  private readonly cryptKeys: TlsCryptKeys | undefined;
  private readonly legacyTlsCryptV2: boolean;
  readonly counters: HandshakeCounters = { replies: 0, established: 0, establishedAtReset: 0, dropped: 0 };

  constructor(
    private readonly wrap: WrapConfig,
    secret: Uint8Array,
    options: StatelessHandshakeOptions | number = {},
  ) {
    const o = typeof options === 'number' ? { handshakeWindowMs: options } : options;
    this.cookies = new SessionCookies(secret, o.handshakeWindowMs ?? HANDSHAKE_WINDOW);
    this.legacyTlsCryptV2 = o.legacyTlsCryptV2 ?? true;
    this.authKeys =
      wrap.kind === 'tls-auth' ? TlsAuthKeys.fromStaticKey(wrap.key, wrap.direction, wrap.digest) : undefined;
    this.cryptKeys = wrap.kind === 'tls-crypt' ? TlsCryptKeys.fromStaticKey(wrap.key, 'server') : undefined;
  }

  /** A datagram from an address that has no session. */
  handle(bytes: Uint8Array, from: PeerAddress, nowMs: number): HandshakeOutcome {
    const out = this.decide(bytes, from, nowMs);
    if (out.kind === 'reply') this.counters.replies++;
    else if (out.kind === 'establish') {
      this.counters.established++;
      if (!out.afterStatelessReset) this.counters.establishedAtReset++;
    } else this.counters.dropped++;
    return out;
  }

  private decide(bytes: Uint8Array, from: PeerAddress, nowMs: number): HandshakeOutcome {
    if (bytes.length === 0) return { kind: 'drop', reason: 'empty' };
    const { opcode, keyId } = parseHeaderByte(bytes[0]!);
    const isReset = opcode === P_CONTROL_HARD_RESET_CLIENT_V2 || opcode === P_CONTROL_HARD_RESET_CLIENT_V3;
    const completes = opcode === P_CONTROL_V1 || opcode === P_ACK_V1 || opcode === P_CONTROL_WKC_V1;
    if ((!isReset && !completes) || keyId !== 0) return { kind: 'drop', reason: 'no-session' };

    const opened = this.open(bytes, opcode);
    if (!opened.ok) return opened.drop;
    const packet = opened.packet;

    if (isReset) {
      if (packet.kind !== 'control' || packet.packetId !== 0) return { kind: 'drop', reason: 'bad-reset' };
      const cookie = this.cookies.make(packet.sessionId, from, nowMs);
      if (this.wrap.kind === 'tls-crypt-v2' && !announcesEarlyNegotiation(opened.wrapPacketId ?? 0)) {
        // OpenVPN 2.5: the WKc authenticated this reset (open() unwrapped it and the packet with Kc), and it
        // will not come again, so the session starts here. Its id is the cookie all the same (unguessable,
        // and no randomness needed here); our reset will be its packet 0, with wrap packet id 1.
        if (!this.legacyTlsCryptV2) return { kind: 'drop', reason: 'no-early-negotiation' };
        return {
          kind: 'establish',
          clientSessionId: packet.sessionId,
          serverSessionId: cookie,
          wrapper: serverWrapper(this.wrap, { clientKey: opened.clientKey, firstPacketId: 1 }),
          afterStatelessReset: false,
          metadata: opened.metadata,
          bytes,
        };
      }
      const reply: ControlPacket = {
        kind: 'control',
        opcode: P_CONTROL_HARD_RESET_SERVER_V2,
        keyId: 0,
        sessionId: cookie,
        acks: { ids: [0], remoteSessionId: packet.sessionId },
        packetId: 0,
        payload:
          this.wrap.kind === 'tls-crypt-v2' ? encodeEarlyNegotiation({ resendWkc: true }) : new Uint8Array(0),
      };
      return { kind: 'reply', bytes: this.seal(reply, opened.clientKey, nowMs) };
    }

    if (!packet.acks.ids.includes(0) || packet.acks.remoteSessionId === undefined)
      return { kind: 'drop', reason: 'no-ack-of-reset' };
    if (!this.cookies.check(packet.acks.remoteSessionId, packet.sessionId, from, nowMs))
      return { kind: 'drop', reason: 'bad-cookie' };
    // Our reset went out with wrap packet id 1: the session continues at 2.
    const wrapper = serverWrapper(this.wrap, { clientKey: opened.clientKey, firstPacketId: 2 });
    return {
      kind: 'establish',
      clientSessionId: packet.sessionId,
      serverSessionId: packet.acks.remoteSessionId,
      wrapper,
      afterStatelessReset: true,
      metadata: opened.metadata,
      bytes,
    };
  }

  /** Unwraps without a replay window (there is no state to hold one). */
  private open(
    bytes: Uint8Array,
    opcode: number,
  ):
    | {
        ok: true;
        packet: ControlPacket | AckPacket;
        wrapPacketId: number | undefined;
        clientKey: StaticKey | undefined;
        metadata: Uint8Array | undefined;
      }
    | { ok: false; drop: HandshakeOutcome } {
    const fail = (reason: HandshakeDropReason, detail?: string): { ok: false; drop: HandshakeOutcome } => ({
      ok: false,
      drop: detail === undefined ? { kind: 'drop', reason } : { kind: 'drop', reason, detail },
    });
    switch (this.wrap.kind) {
      case 'none': {
        const r = parsePacket(bytes);
        if (!r.ok) return fail('unwrap-failed', r.drop);
        if (r.packet.kind !== 'control' && r.packet.kind !== 'ack') return fail('no-session');
        return {
          ok: true,
          packet: r.packet,
          wrapPacketId: undefined,
          clientKey: undefined,
          metadata: undefined,
        };
      }
      case 'tls-auth': {
        const r = tlsAuthUnwrap(this.authKeys!, bytes);
        if (!r.ok) return fail('unwrap-failed', r.drop);
        return {
          ok: true,
          packet: r.packet,
          wrapPacketId: r.wrap.packetId,
          clientKey: undefined,
          metadata: undefined,
        };
      }
      case 'tls-crypt': {
        const r = tlsCryptUnwrap(this.cryptKeys!, bytes);
        if (!r.ok) return fail('unwrap-failed', r.drop);
        return {
          ok: true,
          packet: r.packet,
          wrapPacketId: r.wrap.packetId,
          clientKey: undefined,
          metadata: undefined,
        };
      }
      case 'tls-crypt-v2': {
        if (opcode === P_CONTROL_HARD_RESET_CLIENT_V2) return fail('needs-v3-reset');
        if (opcode !== P_CONTROL_HARD_RESET_CLIENT_V3 && opcode !== P_CONTROL_WKC_V1)
          return fail('needs-wkc');
        const r = unwrapWithWkc(this.wrap.serverKey, bytes);
        if (!r.ok) return fail('unwrap-failed', r.drop);
        return {
          ok: true,
          packet: r.packet,
          wrapPacketId: r.wrap.packetId,
          clientKey: r.clientKey,
          metadata: r.metadata,
        };
      }
    }
  }

  private seal(packet: ControlPacket, clientKey: StaticKey | undefined, nowMs: number): Uint8Array {
    const id = { packetId: 1, time: Math.floor(nowMs / 1000) >>> 0 };
    switch (this.wrap.kind) {
      case 'none':
        return serializePacket(packet);
      case 'tls-auth':
        return tlsAuthWrap(
          TlsAuthKeys.fromStaticKey(this.wrap.key, this.wrap.direction, this.wrap.digest),
          packet,
          id,
        );
      case 'tls-crypt':
        return tlsCryptWrap(this.cryptKeys!, packet, id);
      case 'tls-crypt-v2':
        return tlsCryptWrap(TlsCryptKeys.fromStaticKey(clientKey!, 'server'), packet, id);
    }
  }
}
