/**
 * The wrapping of a control session's packets, one interface over the four ways OpenVPN protects its
 * control channel: none (plain packets, packet.ts), tls-auth (HMAC), tls-crypt (static key) and
 * tls-crypt-v2 (a client key recovered from the client's WKc). The wrap's packet id and replay window
 * belong to the session (OpenVPN keeps them in tls_session.tls_wrap), shared by every key id.
 */
import {
  carriesWkc,
  parsePacket,
  parseHeaderByte,
  serializePacket,
  type AckPacket,
  type ControlPacket,
} from './packet.js';
import { TlsAuthChannel, TlsAuthKeys, type KeyDirection, type TlsAuthDigest } from './tls-auth.js';
import { StaticKey, TlsCryptChannel, TlsCryptKeys } from './tls-crypt.js';
import { splitWkc, type TlsCryptV2ServerKey } from './tls-crypt-v2.js';

/** How the server protects its control channel (one per listener). */
export type WrapConfig =
  | { readonly kind: 'none' }
  | {
      readonly kind: 'tls-auth';
      readonly key: StaticKey;
      readonly direction: KeyDirection;
      readonly digest: TlsAuthDigest;
    }
  | { readonly kind: 'tls-crypt'; readonly key: StaticKey }
  | { readonly kind: 'tls-crypt-v2'; readonly serverKey: TlsCryptV2ServerKey };

export type UnwrapOutcome =
  | {
      readonly ok: true;
      readonly packet: ControlPacket | AckPacket;
      readonly wrapPacketId: number | undefined;
    }
  | { readonly ok: false; readonly drop: string };

/** One session's wrapping: it wraps what the session sends and unwraps (with replay checks) what it gets. */
export interface ControlWrapper {
  readonly kind: WrapConfig['kind'];
  wrap(packet: ControlPacket | AckPacket, nowMs: number): Uint8Array;
  unwrap(bytes: Uint8Array): UnwrapOutcome;
}

class PlainWrapper implements ControlWrapper {
  readonly kind = 'none';
  wrap(packet: ControlPacket | AckPacket): Uint8Array {
    return serializePacket(packet);
  }
  unwrap(bytes: Uint8Array): UnwrapOutcome {
    const parsed = parsePacket(bytes);
    if (!parsed.ok) return parsed;
    if (parsed.packet.kind !== 'control' && parsed.packet.kind !== 'ack')
      return { ok: false, drop: 'not-control' };
    return { ok: true, packet: parsed.packet, wrapPacketId: undefined };
  }
}

class TlsAuthWrapper implements ControlWrapper {
  readonly kind = 'tls-auth';
  constructor(private readonly channel: TlsAuthChannel) {}
  wrap(packet: ControlPacket | AckPacket, nowMs: number): Uint8Array {
    return this.channel.wrap(packet, nowMs);
  }
  unwrap(bytes: Uint8Array): UnwrapOutcome {
    const r = this.channel.unwrap(bytes);
    return r.ok ? { ok: true, packet: r.packet, wrapPacketId: r.wrap.packetId } : r;
  }
}

class TlsCryptWrapper implements ControlWrapper {
  constructor(
    readonly kind: 'tls-crypt' | 'tls-crypt-v2',
    private readonly channel: TlsCryptChannel,
  ) {}
  wrap(packet: ControlPacket | AckPacket, nowMs: number): Uint8Array {
    return this.channel.wrap(packet, nowMs);
  }
  unwrap(bytes: Uint8Array): UnwrapOutcome {
    let inner = bytes;
    // A tls-crypt-v2 client appends its WKc to a retransmitted V3 reset or to P_CONTROL_WKC_V1; the client
    // key the session already holds authenticates the packet, so the WKc itself is not needed here.
    if (this.kind === 'tls-crypt-v2' && bytes.length > 0 && carriesWkc(parseHeaderByte(bytes[0]!).opcode)) {
      const split = splitWkc(bytes);
      if (!split.ok) return split;
      inner = split.packet;
    }
    const r = this.channel.unwrap(inner);
    return r.ok ? { ok: true, packet: r.packet, wrapPacketId: r.wrap.packetId } : r;
  }
}

/** The server side's wrapper for one session. `clientKey` is Kc for tls-crypt-v2 (from the WKc). */
export function serverWrapper(
  config: WrapConfig,
  { clientKey, firstPacketId = 1 }: { clientKey?: StaticKey; firstPacketId?: number } = {},
): ControlWrapper {
  switch (config.kind) {
    case 'none':
      return new PlainWrapper();
    case 'tls-auth': {
      const direction = config.direction === undefined ? undefined : config.direction;
      return new TlsAuthWrapper(
        new TlsAuthChannel(TlsAuthKeys.fromStaticKey(config.key, direction, config.digest), {
          firstPacketId,
        }),
      );
    }
    case 'tls-crypt':
      return new TlsCryptWrapper(
        'tls-crypt',
        new TlsCryptChannel(TlsCryptKeys.fromStaticKey(config.key, 'server'), { firstPacketId }),
      );
    case 'tls-crypt-v2': {
      if (!clientKey) throw new RangeError('tls-crypt-v2 needs the client key');
      return new TlsCryptWrapper(
        'tls-crypt-v2',
        new TlsCryptChannel(TlsCryptKeys.fromStaticKey(clientKey, 'server'), { firstPacketId }),
      );
    }
  }
}

/** Client-side wrappers, for tests and tools: the mirror image of serverWrapper. */
export function clientWrapper(
  config:
    | { readonly kind: 'none' }
    | {
        readonly kind: 'tls-auth';
        readonly key: StaticKey;
        readonly direction: KeyDirection;
        readonly digest: TlsAuthDigest;
      }
    | { readonly kind: 'tls-crypt'; readonly key: StaticKey },
  firstPacketId = 1,
): ControlWrapper {
  switch (config.kind) {
    case 'none':
      return new PlainWrapper();
    case 'tls-auth':
      return new TlsAuthWrapper(
        new TlsAuthChannel(TlsAuthKeys.fromStaticKey(config.key, config.direction, config.digest), {
          firstPacketId,
        }),
      );
    case 'tls-crypt':
      return new TlsCryptWrapper(
        'tls-crypt',
        new TlsCryptChannel(TlsCryptKeys.fromStaticKey(config.key, 'client'), { firstPacketId }),
      );
  }
}
