/**
 * The UAPI socket: /var/run/wireguard/NAME.sock, a stream-mode unix socket that `wg(8)` finds by name and
 * speaks the cross-platform userspace protocol over (src/wireguard/uapi.ts has the protocol; this file only
 * moves bytes).
 *
 *   const server = await UapiServer.listen('wg0', new UapiHandler(device, hooks));
 *   ...
 *   await server.close();   // also removes the socket file
 *
 * As wireguard-go's ipc.UAPIOpen: the directory is created 0755 if missing; an existing socket that
 * accepts a connection belongs to a live interface and is left alone (listen fails); one that refuses is
 * stale and is replaced. The socket is created under umask 077 and then chmod 0600, so only root (the
 * owner) can connect. Each connection gets its own UapiSession; requests are answered in order, the socket
 * is paused while one is being applied, a request over the handler's size limit closes the connection, and
 * the number of concurrent connections is capped.
 */
import { once } from 'node:events';
import * as fsp from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import * as path from 'node:path';
import { isMainThread } from 'node:worker_threads';
import type { UapiHandler } from '../wireguard/uapi.js';

/** Where `wg` looks for userspace interfaces. */
export const UAPI_DIR = '/var/run/wireguard';

/** sockaddr_un.sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;
/** IFNAMSIZ - 1: `wg` refuses longer interface names. */
const MAX_NAME_LENGTH = 15;
const PROBE_TIMEOUT_MS = 1_000;

export interface UapiServerOptions {
  /** Socket directory; default /var/run/wireguard (the only place `wg` looks). */
  dir?: string;
  /** Concurrent connections; further ones are closed at once. Default 32. */
  maxConnections?: number;
  /** A connection idle this long is closed; 0 = never. Default 120 s. */
  idleTimeoutMs?: number;
  /** Connection-level problems (client resets, oversize requests, handler failures), for logging. */
  onError?: (error: Error) => void;
}

interface FileIdentity {
  dev: number;
  ino: number;
}

export class UapiServer {
  private readonly sockets = new Set<Socket>();
  private closing: Promise<void> | undefined;

  private constructor(
    /** Interface name. */
    readonly name: string,
    /** Full path of the socket file. */
    readonly path: string,
    private readonly server: Server,
  ) {}

  /** The socket file as created (device and inode), so that close() never removes a successor's socket. */
  private identity: FileIdentity | undefined;

  /** Creates the socket for interface `name` and serves `handler` on it. */
  static async listen(
    name: string,
    handler: UapiHandler,
    options: UapiServerOptions = {},
  ): Promise<UapiServer> {
    checkName(name);
    const dir = options.dir ?? UAPI_DIR;
    const socketPath = path.join(dir, `${name}.sock`);
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
      throw new Error(
        `UAPI socket path ${socketPath} is ${Buffer.byteLength(socketPath)} bytes; a unix socket path ` +
          `holds at most ${MAX_SOCKET_PATH_BYTES}`,
      );
    }
    await ensureDirectory(dir);

    const onError = options.onError ?? ((): void => undefined);
    const idleTimeoutMs = options.idleTimeoutMs ?? 120_000;
    const server = createServer({ allowHalfOpen: false }, (socket) =>
      instance.serve(socket, handler, idleTimeoutMs, onError),
    );
    const instance = new UapiServer(name, socketPath, server);
    server.maxConnections = options.maxConnections ?? 32;

    try {
      await listenOn(server, socketPath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE')
        throw describeListenError(error, socketPath);
      await removeIfStale(socketPath, name);
      try {
        await listenOn(server, socketPath);
      } catch (retryError) {
        throw describeListenError(retryError, socketPath);
      }
    }

    server.on('error', (e) => onError(new Error(`UAPI ${name}: ${e.message}`, { cause: e })));
    try {
      await fsp.chmod(socketPath, 0o600);
      const st = await fsp.lstat(socketPath);
      instance.identity = { dev: st.dev, ino: st.ino };
    } catch (error) {
      await instance.close();
      throw new Error(`cannot restrict UAPI socket ${socketPath} to mode 0600: ${explain(error)}`, {
        cause: error,
      });
    }
    return instance;
  }

  /** Connections currently open. */
  get connections(): number {
    return this.sockets.size;
  }

  /** Stops listening, drops every connection and removes the socket file (if it is still ours). */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
    try {
      const st = await fsp.lstat(this.path);
      if (this.identity && st.dev === this.identity.dev && st.ino === this.identity.ino)
        await fsp.unlink(this.path);
    } catch {
      // already gone (libuv unlinks a listening pipe's path when it closes)
    }
  }

  private serve(
    socket: Socket,
    handler: UapiHandler,
    idleTimeoutMs: number,
    onError: (e: Error) => void,
  ): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const session = handler.open();
    this.sockets.add(socket);
    socket.on('close', () => {
      this.sockets.delete(socket);
      session.end();
    });
    socket.on('error', (e) =>
      onError(new Error(`UAPI ${this.name}: connection error: ${e.message}`, { cause: e })),
    );
    if (idleTimeoutMs > 0) socket.setTimeout(idleTimeoutMs, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      socket.pause();
      session.push(chunk).then(
        async (out) => {
          for (const response of out.responses) {
            if (socket.destroyed) return;
            if (!socket.write(response, 'latin1')) await drained(socket);
          }
          if (out.close) {
            if (out.reason !== 'end of stream')
              onError(new Error(`UAPI ${this.name}: closing connection: ${out.reason ?? 'closed'}`));
            socket.end(() => socket.destroy());
          } else if (!socket.destroyed) {
            socket.resume();
          }
        },
        (e: unknown) => {
          onError(new Error(`UAPI ${this.name}: request failed: ${message(e)}`, { cause: e }));
          socket.destroy();
        },
      );
    });
  }
}

function checkName(name: string): void {
  if (
    name.length === 0 ||
    name.length > MAX_NAME_LENGTH ||
    name === '.' ||
    name === '..' ||
    /[/\s:%]/.test(name) ||
    name.includes('\0')
  ) {
    throw new Error(
      `bad interface name ${JSON.stringify(name)}: 1 to ${MAX_NAME_LENGTH} characters, without '/', ':', '%' ` +
        'or white space',
    );
  }
}

async function ensureDirectory(dir: string): Promise<void> {
  try {
    await fsp.mkdir(dir, { recursive: true, mode: 0o755 });
  } catch (error) {
    throw new Error(`cannot create UAPI socket directory ${dir}: ${explain(error)}`, { cause: error });
  }
  const st = await fsp.stat(dir);
  if (!st.isDirectory()) throw new Error(`UAPI socket directory ${dir} exists but is not a directory`);
}

/** Listens on a unix socket path under umask 077 (the bind happens synchronously inside listen()). */
function listenOn(server: Server, socketPath: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (error: Error): void => {
      server.off('listening', onListening);
      reject(error);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    // process.umask(mask) throws in worker threads; there the chmod after listening has to do.
    const previous = isMainThread ? process.umask(0o077) : undefined;
    try {
      server.listen({ path: socketPath, backlog: 64 });
    } finally {
      if (previous !== undefined) process.umask(previous);
    }
  });
}

/** An existing socket file: refuse if something answers on it, remove it if it is stale. */
async function removeIfStale(socketPath: string, name: string): Promise<void> {
  let st;
  try {
    st = await fsp.lstat(socketPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // vanished meanwhile: just retry
    throw new Error(`cannot inspect existing ${socketPath}: ${explain(error)}`, { cause: error });
  }
  if (!st.isSocket()) throw new Error(`${socketPath} exists and is not a socket; not removing it`);
  const probe = await probeSocket(socketPath);
  if (probe === 'live') {
    throw new Error(
      `UAPI socket ${socketPath} is in use: interface ${name} is already served by a running process`,
    );
  }
  try {
    await fsp.unlink(socketPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new Error(`cannot remove stale UAPI socket ${socketPath}: ${explain(error)}`, { cause: error });
  }
}

/** Connects to a socket file: 'live' if accepted, 'stale' if refused (nobody listens). */
function probeSocket(socketPath: string): Promise<'live' | 'stale'> {
  return new Promise((resolve, reject) => {
    const client = connect({ path: socketPath });
    const timer = setTimeout(() => {
      client.destroy();
      resolve('live'); // a full backlog still means a listener: never steal its path
    }, PROBE_TIMEOUT_MS);
    client.once('connect', () => {
      clearTimeout(timer);
      client.destroy();
      resolve('live');
    });
    client.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      client.destroy();
      if (error.code === 'ECONNREFUSED' || error.code === 'ENOENT') resolve('stale');
      else
        reject(
          new Error(`cannot probe existing UAPI socket ${socketPath}: ${explain(error)}`, { cause: error }),
        );
    });
  });
}

function describeListenError(error: unknown, socketPath: string): Error {
  return new Error(`cannot listen on UAPI socket ${socketPath}: ${explain(error)}`, { cause: error });
}

function explain(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${code}); the UAPI socket directory normally needs root`;
    case 'EADDRINUSE':
      return 'address in use (another process created the socket meanwhile)';
    case 'ENOENT':
      return 'no such file or directory (ENOENT)';
    case 'ENOTDIR':
      return 'a path component is not a directory (ENOTDIR)';
    case 'EROFS':
      return 'read-only file system (EROFS)';
    case 'ENAMETOOLONG':
      return 'path too long (ENAMETOOLONG)';
    default:
      return message(error);
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function drained(socket: Socket): Promise<void> {
  const controller = new AbortController();
  try {
    await Promise.race([
      once(socket, 'drain', { signal: controller.signal }),
      once(socket, 'close', { signal: controller.signal }),
    ]);
  } catch {
    // aborted, or the socket errored: either way stop waiting
  } finally {
    controller.abort();
  }
}
