/**
 * The TLS session behind one key state of the control channel, as the control session sees it: ciphertext
 * in and out, plaintext in and out, a handshake that completes with the peer's certificate, and the RFC 5705
 * exporter for the data keys. The control session (control-session.ts) never touches a socket or a TLS
 * library; tls-engine-node.ts implements this with node:tls, and tests may use any other implementation.
 *
 * Implementations may work asynchronously (node:tls does): after feeding input the caller polls again once
 * `onActivity` fires.
 */

export type TlsEngineState =
  | { readonly kind: 'handshaking' }
  | {
      readonly kind: 'established';
      /** DER of the peer's certificate (undefined when the peer sent none, e.g. a client engine's view of…). */
      readonly peerCertificate: Uint8Array | undefined;
      /** "TLSv1.3", "TLSv1.2". */
      readonly protocol: string;
    }
  | { readonly kind: 'failed'; readonly reason: string };

export interface TlsEngine {
  /** TLS records from the peer, in order (the reliability layer delivers them so). */
  receiveCiphertext(bytes: Uint8Array): void;
  /** Application data for the peer; held until the handshake completes. */
  sendPlaintext(bytes: Uint8Array): void;
  /** Ciphertext produced since the last call, for the peer. */
  takeCiphertext(): Uint8Array[];
  /** Application data received since the last call. */
  takePlaintext(): Uint8Array[];
  readonly state: TlsEngineState;
  /** RFC 5705 exporter without context; only once established. */
  exportKeyingMaterial(length: number, label: string): Uint8Array;
  /** Called when output or a state change may be waiting. */
  onActivity(listener: () => void): void;
  close(): void;
}

export type TlsEngineFactory = () => TlsEngine;
