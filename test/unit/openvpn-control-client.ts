/**
 * A small OpenVPN client control channel for tests: the other half of src/openvpn/control-session.ts. It
 * sends the hard reset, runs TLS as client (NodeTlsClientEngine), writes the client's key-method 2 message,
 * asks for the push reply, derives the data keys the way an OpenVPN client does (EKM when the push reply
 * says `key-derivation tls-ekm`, the OpenVPN PRF otherwise) and takes part in renegotiation.
 */
import { randomBytes } from 'node:crypto';
import {
  EARLY_NEG_START,
  P_ACK_V1,
  P_CONTROL_HARD_RESET_CLIENT_V2,
  P_CONTROL_HARD_RESET_CLIENT_V3,
  P_CONTROL_HARD_RESET_SERVER_V2,
  P_CONTROL_SOFT_RESET_V1,
  P_CONTROL_V1,
  P_CONTROL_WKC_V1,
} from '../../src/openvpn/constants.js';
import { clientWrapper, type ControlWrapper } from '../../src/openvpn/control-wrap.js';
import { nextKeyId } from '../../src/openvpn/control-session.js';
import { parseEarlyNegotiation } from '../../src/openvpn/early-negotiation.js';
import {
  ekmKeyBlock,
  openvpnPrfKeyBlock,
  PRE_MASTER_LENGTH,
  RANDOM_LENGTH,
} from '../../src/openvpn/key-derivation.js';
import { buildClientKeyMethod, parseServerKeyMethod } from '../../src/openvpn/key-method.js';
import { MessageSplitter, encodeMessage } from '../../src/openvpn/push.js';
import {
  sameSessionId,
  sessionId,
  type AckPacket,
  type ControlOpcode,
  type ControlPacket,
  type SessionId,
} from '../../src/openvpn/packet.js';
import { Reliable } from '../../src/openvpn/reliable.js';
import { StaticKey, TlsCryptChannel, TlsCryptKeys, type WrapId } from '../../src/openvpn/tls-crypt.js';
import { wrapWithWkc } from '../../src/openvpn/tls-crypt-v2.js';
import type { KeyDirection, TlsAuthDigest } from '../../src/openvpn/tls-auth.js';
import type { TlsEngine } from '../../src/openvpn/tls-engine.js';

export type ClientWrap =
  | { readonly kind: 'none' }
  | {
      readonly kind: 'tls-auth';
      readonly key: StaticKey;
      readonly direction: KeyDirection;
      readonly digest: TlsAuthDigest;
    }
  | { readonly kind: 'tls-crypt'; readonly key: StaticKey }
  | { readonly kind: 'tls-crypt-v2'; readonly clientKey: StaticKey; readonly wkc: Uint8Array };

/**
 * tls-crypt-v2 as a 2.6 client does it: wrap ids from EARLY_NEG_START + 1 (ssl.c tls_session_init), WKc on V3
 * and WKC packets. As a 2.5 client does it (`earlyNegotiation` false): wrap ids from 1, as for any tls-crypt
 * session (packet_id_init), and the WKc on the V3 reset only (2.5's ssl.c write_control_auth appends
 * tls_crypt_v2_wkc for P_CONTROL_HARD_RESET_CLIENT_V3 alone; P_CONTROL_WKC_V1 does not exist before 2.6).
 */
class V2ClientWrapper implements ControlWrapper {
  readonly kind = 'tls-crypt-v2';
  private readonly channel: TlsCryptChannel;
  private nextId: number;
  constructor(
    private readonly keys: TlsCryptKeys,
    private readonly wkc: Uint8Array,
    earlyNegotiation: boolean,
  ) {
    this.channel = new TlsCryptChannel(keys);
    this.nextId = earlyNegotiation ? EARLY_NEG_START + 1 : 1;
  }
  wrap(packet: ControlPacket | AckPacket, nowMs: number): Uint8Array {
    const id: WrapId = { packetId: this.nextId++, time: Math.floor(nowMs / 1000) };
    if (packet.opcode === P_CONTROL_HARD_RESET_CLIENT_V3 || packet.opcode === P_CONTROL_WKC_V1)
      return wrapWithWkc(this.keys, this.wkc, packet, id);
    return new TlsCryptChannel(this.keys, { firstPacketId: id.packetId }).wrap(packet, nowMs);
  }
  unwrap(bytes: Uint8Array): ReturnType<ControlWrapper['unwrap']> {
    const r = this.channel.unwrap(bytes);
    return r.ok ? { ok: true, packet: r.packet, wrapPacketId: r.wrap.packetId } : r;
  }
}

export interface ClientKeys {
  readonly keyId: number;
  readonly keyBlock: Uint8Array;
  readonly derivation: 'tls-ekm' | 'openvpn-prf';
}

interface ClientKeyState {
  readonly keyId: number;
  readonly reliable: Reliable;
  readonly engine: TlsEngine;
  /** The server's reset for this key state arrived: TLS may flow. */
  peerReset: boolean;
  kmSent: boolean;
  serverKm: { random1: Uint8Array; random2: Uint8Array } | undefined;
  readonly preMaster: Uint8Array;
  readonly random1: Uint8Array;
  readonly random2: Uint8Array;
  /** The opcode of our first TLS packet (P_CONTROL_WKC_V1 when the server asked for the WKc again). */
  firstTlsOpcode: ControlOpcode;
  tlsQueued: number;
  readonly splitter: MessageSplitter;
}

export interface TestClientOptions {
  readonly wrap: ClientWrap;
  /**
   * OpenVPN 2.6's early negotiation with tls-crypt-v2 (default true). False behaves as a 2.5 client: no
   * EARLY_NEG_START in the wrap ids, the TLVs of the server's reset ignored, the WKc never sent again.
   */
  readonly earlyNegotiation?: boolean;
  readonly tls: () => TlsEngine;
  readonly peerInfo: string;
  readonly username?: string;
  readonly password?: string;
}

export class TestClient {
  readonly sid: SessionId = sessionId(randomBytes(8))!;
  serverSid: SessionId | undefined;
  private readonly wrapper: ControlWrapper;
  private readonly states = new Map<number, ClientKeyState>();
  private current = 0;
  readonly messages: string[] = [];
  readonly keys: ClientKeys[] = [];
  readonly drops: string[] = [];
  pushReply: string[] | undefined;
  private pushParts: string[] = [];
  private pushRequested = false;

  constructor(private readonly options: TestClientOptions) {
    const w = options.wrap;
    this.wrapper =
      w.kind === 'tls-crypt-v2'
        ? new V2ClientWrapper(
            TlsCryptKeys.fromStaticKey(w.clientKey, 'client'),
            w.wkc,
            options.earlyNegotiation ?? true,
          )
        : clientWrapper(w);
    const opcode =
      w.kind === 'tls-crypt-v2' ? P_CONTROL_HARD_RESET_CLIENT_V3 : P_CONTROL_HARD_RESET_CLIENT_V2;
    const ks = this.newState(0);
    ks.reliable.enqueue(opcode, new Uint8Array(0));
  }

  private newState(keyId: number): ClientKeyState {
    const ks: ClientKeyState = {
      keyId,
      reliable: new Reliable(),
      engine: this.options.tls(),
      peerReset: false,
      kmSent: false,
      serverKm: undefined,
      preMaster: new Uint8Array(randomBytes(PRE_MASTER_LENGTH)),
      random1: new Uint8Array(randomBytes(RANDOM_LENGTH)),
      random2: new Uint8Array(randomBytes(RANDOM_LENGTH)),
      firstTlsOpcode: P_CONTROL_V1,
      tlsQueued: 0,
      splitter: new MessageSplitter(),
    };
    this.states.set(keyId, ks);
    return ks;
  }

  get keyIds(): number[] {
    return [...this.states.keys()];
  }

  /** Starts a renegotiation with the next key id (a client-side soft reset). */
  softReset(): number {
    const keyId = nextKeyId(this.current);
    const ks = this.newState(keyId);
    ks.reliable.enqueue(P_CONTROL_SOFT_RESET_V1, new Uint8Array(0));
    return keyId;
  }

  receive(bytes: Uint8Array): void {
    const r = this.wrapper.unwrap(bytes);
    if (!r.ok) {
      this.drops.push(r.drop);
      return;
    }
    const p = r.packet;
    if (!sameSessionId(p.sessionId, this.serverSid ?? p.sessionId)) {
      this.drops.push('wrong-session');
      return;
    }
    let ks = this.states.get(p.keyId);
    if (!ks) {
      if (
        p.kind === 'control' &&
        p.opcode === P_CONTROL_SOFT_RESET_V1 &&
        p.keyId === nextKeyId(this.current)
      ) {
        ks = this.newState(p.keyId);
        ks.reliable.enqueue(P_CONTROL_SOFT_RESET_V1, new Uint8Array(0));
      } else {
        this.drops.push('unknown-key-id');
        return;
      }
    }
    ks.reliable.acknowledge(p.acks.ids);
    if (p.kind === 'ack') return;
    ks.reliable.receive(p.packetId, p.opcode, p.payload);
    for (const m of ks.reliable.takeDelivered()) {
      if (m.opcode === P_CONTROL_HARD_RESET_SERVER_V2) {
        this.serverSid ??= p.sessionId;
        ks.peerReset = true;
        const tlv = parseEarlyNegotiation(m.payload);
        if (
          tlv.ok &&
          tlv.value.resendWkc &&
          this.options.wrap.kind === 'tls-crypt-v2' &&
          (this.options.earlyNegotiation ?? true)
        )
          ks.firstTlsOpcode = P_CONTROL_WKC_V1;
      } else if (m.opcode === P_CONTROL_SOFT_RESET_V1) {
        ks.peerReset = true;
      } else if (m.opcode === P_CONTROL_V1) {
        ks.engine.receiveCiphertext(m.payload);
      }
    }
  }

  /** Everything to send now. */
  poll(now: number): Uint8Array[] {
    for (const ks of this.states.values()) this.run(ks);
    const out: Uint8Array[] = [];
    for (const ks of this.states.values()) {
      for (const t of ks.reliable.poll(now)) {
        const acks = { ids: t.acks, remoteSessionId: t.acks.length > 0 ? this.serverSid : undefined };
        const packet: ControlPacket | AckPacket =
          t.kind === 'control'
            ? {
                kind: 'control',
                opcode: t.opcode,
                keyId: ks.keyId,
                sessionId: this.sid,
                acks,
                packetId: t.packetId,
                payload: t.payload,
              }
            : { kind: 'ack', opcode: P_ACK_V1, keyId: ks.keyId, sessionId: this.sid, acks };
        out.push(this.wrapper.wrap(packet, now));
      }
    }
    return out;
  }

  private run(ks: ClientKeyState): void {
    if (!ks.peerReset) return;
    const state = ks.engine.state;
    if (state.kind === 'established' && !ks.kmSent) {
      ks.kmSent = true;
      ks.engine.sendPlaintext(
        buildClientKeyMethod({
          preMaster: ks.preMaster,
          random1: ks.random1,
          random2: ks.random2,
          options:
            'V4,dev-type tun,link-mtu 1549,tun-mtu 1500,proto UDPv4,keysize 256,key-method 2,tls-client',
          username: this.options.username,
          password: this.options.password,
          peerInfo: this.options.peerInfo,
        }),
      );
    }
    for (const chunk of ks.engine.takePlaintext()) {
      if (ks.serverKm === undefined) {
        const km = parseServerKeyMethod(chunk);
        if (!km.ok) {
          this.drops.push(`server-km:${km.drop}`);
          continue;
        }
        ks.serverKm = { random1: km.message.random1, random2: km.message.random2 };
        if (ks.keyId === 0 && !this.pushRequested) {
          this.pushRequested = true;
          ks.engine.sendPlaintext(encodeMessage('PUSH_REQUEST'));
        } else if (ks.keyId !== 0) {
          this.derive(ks);
        }
        continue;
      }
      for (const text of ks.splitter.push(chunk)) this.onMessage(ks, text);
    }
    for (const chunk of ks.engine.takeCiphertext()) {
      for (let at = 0; at < chunk.length; at += 1000) {
        ks.reliable.enqueue(
          ks.tlsQueued === 0 ? ks.firstTlsOpcode : P_CONTROL_V1,
          chunk.slice(at, at + 1000),
        );
        ks.tlsQueued++;
      }
    }
  }

  private onMessage(ks: ClientKeyState, text: string): void {
    this.messages.push(text);
    if (text.startsWith('PUSH_REPLY,')) {
      const options = text.slice('PUSH_REPLY,'.length).split(',');
      const more = options.includes('push-continuation 2');
      this.pushParts.push(...options.filter((o) => !o.startsWith('push-continuation')));
      if (!more && this.pushReply === undefined) {
        this.pushReply = this.pushParts;
        this.derive(ks);
      }
    }
  }

  get usesEkm(): boolean {
    return this.pushReply?.includes('key-derivation tls-ekm') ?? false;
  }

  private derive(ks: ClientKeyState): void {
    if (!ks.serverKm || !this.serverSid) return;
    const ekm = this.usesEkm;
    const keyBlock = ekm
      ? ekmKeyBlock((length, label) => ks.engine.exportKeyingMaterial(length, label))
      : openvpnPrfKeyBlock({
          preMaster: ks.preMaster,
          clientRandom1: ks.random1,
          clientRandom2: ks.random2,
          serverRandom1: ks.serverKm.random1,
          serverRandom2: ks.serverKm.random2,
          clientSessionId: this.sid,
          serverSessionId: this.serverSid,
        });
    this.keys.push({ keyId: ks.keyId, keyBlock, derivation: ekm ? 'tls-ekm' : 'openvpn-prf' });
    this.current = ks.keyId;
  }

  /** Sends EXIT (cc-exit) over the current key's TLS session. */
  exit(): void {
    this.states.get(this.current)?.engine.sendPlaintext(encodeMessage('EXIT'));
  }

  /** Forgets a key state (after the server retired it). */
  forget(keyId: number): void {
    this.states.get(keyId)?.engine.close();
    this.states.delete(keyId);
  }

  close(): void {
    for (const ks of this.states.values()) ks.engine.close();
  }
}
