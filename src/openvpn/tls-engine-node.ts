/**
 * TlsEngine (tls-engine.ts) with node:tls. Each engine is one TLS connection over an in-memory Duplex: what
 * TLS writes to the duplex is ciphertext for the peer, what we push into it is ciphertext from the peer.
 *
 * The server side hands the duplex to a `tls.Server` with `server.emit('connection', duplex)`: a bare
 * `new tls.TLSSocket(duplex, { isServer: true, requestCert: true, rejectUnauthorized: true })` does not
 * verify the client's certificate, the server's connection path does.
 */
import { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import type { TlsEngine, TlsEngineState } from './tls-engine.js';

/** In-memory transport: `write` from TLS collects outgoing records, `feed` pushes incoming ones. */
class Wire extends Duplex {
  readonly outgoing: Uint8Array[] = [];
  constructor(private readonly notify: () => void) {
    super();
  }
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.outgoing.push(new Uint8Array(chunk));
    this.notify();
    callback();
  }
  feed(bytes: Uint8Array): void {
    this.push(Buffer.from(bytes));
  }
}

abstract class NodeTlsEngine implements TlsEngine {
  protected readonly wire: Wire;
  protected socket: tls.TLSSocket | undefined;
  private readonly plaintext: Uint8Array[] = [];
  private readonly pendingWrites: Uint8Array[] = [];
  private listeners: Array<() => void> = [];
  state: TlsEngineState = { kind: 'handshaking' };

  constructor() {
    this.wire = new Wire(() => this.notify());
  }

  protected notify(): void {
    for (const l of this.listeners) l();
  }

  protected attach(socket: tls.TLSSocket): void {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.plaintext.push(new Uint8Array(chunk));
      this.notify();
    });
    socket.on('error', (error: Error) => this.fail(error.message));
    socket.on('close', () => {
      if (this.state.kind !== 'failed') this.fail('closed');
    });
  }

  protected established(socket: tls.TLSSocket): void {
    if (this.state.kind !== 'handshaking') return;
    const cert = socket.getPeerCertificate(true);
    const raw = cert && 'raw' in cert && Buffer.isBuffer(cert.raw) ? new Uint8Array(cert.raw) : undefined;
    this.state = { kind: 'established', peerCertificate: raw, protocol: socket.getProtocol() ?? 'unknown' };
    for (const p of this.pendingWrites.splice(0)) socket.write(Buffer.from(p));
    this.notify();
  }

  protected fail(reason: string): void {
    if (this.state.kind === 'failed') return;
    this.state = { kind: 'failed', reason };
    this.notify();
  }

  receiveCiphertext(bytes: Uint8Array): void {
    this.wire.feed(bytes);
  }

  sendPlaintext(bytes: Uint8Array): void {
    if (this.state.kind === 'established' && this.socket) this.socket.write(Buffer.from(bytes));
    else this.pendingWrites.push(Uint8Array.from(bytes));
  }

  takeCiphertext(): Uint8Array[] {
    return this.wire.outgoing.splice(0);
  }

  takePlaintext(): Uint8Array[] {
    return this.plaintext.splice(0);
  }

  exportKeyingMaterial(length: number, label: string): Uint8Array {
    if (this.state.kind !== 'established' || !this.socket) throw new Error('TLS not established');
    // No context argument: OpenVPN calls SSL_export_keying_material with use_context = 0, which node does
    // when the third argument is absent (its typings require one, hence the cast).
    const exporter = this.socket.exportKeyingMaterial as (
      this: tls.TLSSocket,
      length: number,
      label: string,
    ) => Buffer;
    return new Uint8Array(exporter.call(this.socket, length, label));
  }

  onActivity(listener: () => void): void {
    this.listeners.push(listener);
  }

  close(): void {
    this.listeners = [];
    this.socket?.destroy();
    this.wire.destroy();
  }
}

export interface NodeTlsServerOptions {
  /** PEM: the server's certificate (chain) and key, and the CA that issues client certificates. */
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
  /** Default TLSv1.2 (OpenVPN 2.6's --tls-version-min default is 1.2 too). */
  readonly minVersion?: tls.SecureVersion;
}

/**
 * Makes server engines (one factory per listener). A tls.Server takes its credentials from its own options
 * (a `secureContext` option is not used for the connections it accepts), so each engine's server gets them.
 */
export class NodeTlsServerFactory {
  constructor(private readonly options: NodeTlsServerOptions) {
    // Fail early on unusable credentials rather than at the first client.
    tls.createSecureContext({ cert: options.cert, key: options.key, ca: options.ca });
  }
  create = (): TlsEngine => new NodeTlsServerEngine(this.options);
}

class NodeTlsServerEngine extends NodeTlsEngine {
  private readonly server: tls.Server;
  constructor(options: NodeTlsServerOptions) {
    super();
    this.server = tls.createServer({
      cert: options.cert,
      key: options.key,
      ca: options.ca,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: options.minVersion ?? 'TLSv1.2',
    });
    this.server.on('secureConnection', (socket: tls.TLSSocket) => {
      this.attach(socket);
      this.established(socket);
    });
    this.server.on('tlsClientError', (error: Error) => this.fail(error.message));
    this.server.emit('connection', this.wire);
  }
  override close(): void {
    super.close();
    this.server.close();
  }
}

export interface NodeTlsClientOptions {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
  /** The server certificate's name to check (OpenVPN checks none by default; tests pass the CN). */
  readonly servername?: string;
  readonly minVersion?: tls.SecureVersion;
}

/** A client engine (for tests and tools). */
export class NodeTlsClientEngine extends NodeTlsEngine {
  constructor(options: NodeTlsClientOptions) {
    super();
    const socket = tls.connect({
      socket: this.wire,
      cert: options.cert,
      key: options.key,
      ca: options.ca,
      minVersion: options.minVersion ?? 'TLSv1.2',
      rejectUnauthorized: true,
      checkServerIdentity: () => undefined,
      ...(options.servername === undefined ? {} : { servername: options.servername }),
    });
    this.attach(socket);
    socket.on('secureConnect', () => this.established(socket));
  }
}
