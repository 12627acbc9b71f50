/**
 * The cross-platform userspace API (UAPI, wireguard.com/xplatform) that `wg(8)` speaks over
 * /var/run/wireguard/NAME.sock: a sans-IO parser, formatter and request stream. The socket itself is
 * src/gateway/uapi-server.ts.
 *
 * Protocol. A connection carries any number of requests, each answered in order:
 *   `get=1\n\n`                  → `key=value\n` lines describing the device, then `errno=0\n\n`;
 *   `set=1\n` key=value lines `\n` → `errno=0\n\n`, or `errno=-N\n\n` with N an errno (EINVAL, ...).
 * Keys are lowercase hex in both directions (never base64). In a set, the lines before the first
 * `public_key=` configure the device; each `public_key=` starts a peer section that the following lines apply
 * to. Any other first line closes the connection without an answer.
 *
 * Fidelity to wireguard-go (device/uapi.go), which `wg` is tested against:
 *  - the same keys, value syntax and error numbers, sent negated (`errno=-22`) as wireguard-go does: `wg set`
 *    turns the number into its error message by negating it, so `errno=22` would print "Unknown error -22";
 *  - get: `private_key`, `listen_port` and `fwmark` only when set/non-zero; per peer `public_key`,
 *    `preshared_key` (zeros when none), `protocol_version=1`, `endpoint` when known, the handshake time in
 *    seconds + nanoseconds, `tx_bytes`, `rx_bytes`, `persistent_keepalive_interval`, one `allowed_ip` each;
 *  - hex keys of either case; private keys are clamped and all-zero clears the key; an all-zero preshared
 *    key means none; a peer with the device's own public key (the zero key while none is set) is ignored;
 *  - `update_only=true` on a peer that did not exist drops the section; `remove=true` removes the peer and
 *    ignores the rest of its section; `replace_allowed_ips=true` and `allowed_ip=` apply in order;
 *  - a trailing `\r` is dropped from set lines (Go's line scanner does), so `\r\n` also works;
 *  - turning persistent keepalive on sends a keepalive at once (when the caller passes `emit`).
 *
 * Deliberate deviations, none of which `wg` can trigger:
 *  - a set is atomic with respect to errors: the whole request is parsed and validated before anything is
 *    applied (wireguard-go applies the lines before a bad one); the fallible steps, the listen-port and
 *    fwmark hooks, run before the device is touched, and a failed fwmark change puts the old port back;
 *  - after an invalid set line the rest of the request is read up to its blank line, then answered, and the
 *    connection stays usable (wireguard-go reads the leftover lines as operations and closes);
 *  - several requests in one write are all answered (wireguard-go's line scanner may swallow the next one);
 *  - a request cut short by the end of the stream is discarded, not applied;
 *  - endpoint port 0 is refused (EINVAL): wireguard-go stores it, but nothing can ever be sent to it;
 *  - repeated `listen_port=` / `fwmark=` lines in one request collapse to the last value (one rebind).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { KEY_LENGTH, PresharedKey, PrivateKey, PublicKey } from '../crypto/keys.js';
import { clamp } from '../crypto/x25519.js';
import { formatEndpoint, type Endpoint } from '../net/endpoint.js';
import { formatAddress, maskBytes, parseAddress, type Prefix } from '../net/ip.js';
import type { Action, Device, PeerConfig } from './device.js';

// ------------------------------------------------------------------------------------------ errors

/** Error numbers as UAPI answers carry them: negated Linux errno values, as wireguard-go sends them. */
export const UapiErrno = {
  EIO: -5,
  EINVAL: -22,
  /** wireguard-go's "unknown" error (an unexpected exception while applying). */
  ENOANO: -55,
  EPROTO: -71,
  EOPNOTSUPP: -95,
  EADDRINUSE: -98,
} as const;

export interface UapiError {
  /** The value sent as `errno=`: a negated errno (see UapiErrno). */
  readonly errno: number;
  /** The offending key (or the whole line when it has no `=`). */
  readonly key: string;
  readonly message: string;
}

function uapiError(errno: number, key: string, message: string): UapiError {
  return { errno, key, message };
}

/** The answer that ends every request: `errno=N\n\n`. */
export function errnoResponse(errno: number): string {
  return `errno=${errno}\n\n`;
}

// ------------------------------------------------------------------------------------------ operations

export type DeviceOp =
  /** null clears the key (all-zero hex). */
  | { readonly kind: 'private-key'; readonly key: PrivateKey | null }
  | { readonly kind: 'listen-port'; readonly port: number }
  | { readonly kind: 'fwmark'; readonly mark: number }
  | { readonly kind: 'replace-peers' };

export type PeerOp =
  | { readonly kind: 'remove' }
  | { readonly kind: 'update-only' }
  /** null removes the preshared key (all-zero hex). */
  | { readonly kind: 'preshared-key'; readonly key: PresharedKey | null }
  | { readonly kind: 'endpoint'; readonly endpoint: Endpoint }
  | { readonly kind: 'persistent-keepalive'; readonly seconds: number }
  | { readonly kind: 'replace-allowed-ips' }
  | { readonly kind: 'allowed-ip'; readonly prefix: Prefix }
  | { readonly kind: 'protocol-version' };

export interface PeerSection {
  readonly publicKey: PublicKey;
  readonly ops: readonly PeerOp[];
}

/** A parsed and validated set request: device lines, then peer sections, each in request order. */
export interface SetRequest {
  readonly device: readonly DeviceOp[];
  readonly peers: readonly PeerSection[];
}

export type ParseSetResult = { ok: true; request: SetRequest } | { ok: false; error: UapiError };

// ------------------------------------------------------------------------------------------ value syntax

const HEX_KEY = /^[0-9a-fA-F]{64}$/;
const DIGITS = /^[0-9]+$/;

/** 32 bytes from 64 hex digits of either case (Go's hex.DecodeString + exact length), else null. */
function parseHexKey(value: string): Uint8Array | null {
  return HEX_KEY.test(value) ? new Uint8Array(Buffer.from(value, 'hex')) : null;
}

function isZero(bytes: Uint8Array): boolean {
  let acc = 0;
  for (const b of bytes) acc |= b;
  return acc === 0;
}

/** Go's strconv.ParseUint(value, 10, bits): decimal digits only (no sign, no spaces), at most `max`. */
function parseUint(value: string, max: number): number | null {
  if (!DIGITS.test(value)) return null;
  const significant = value.replace(/^0+(?=.)/, '');
  if (significant.length > String(max).length) return null;
  const n = Number(significant);
  return n <= max ? n : null;
}

/**
 * A numeric endpoint as Go's netip.ParseAddrPort reads it: `A.B.C.D:PORT` or `[IPv6(%zone)]:PORT` (brackets
 * only for IPv6, never around IPv4). Host names are not resolved: `wg` resolves them before it sends.
 */
export function parseUapiEndpoint(value: string): Endpoint | null {
  let host: string;
  let port: string;
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close < 0 || value[close + 1] !== ':') return null;
    host = value.slice(1, close);
    port = value.slice(close + 2);
    if (!isIPv6(host)) return null;
  } else {
    const colon = value.lastIndexOf(':');
    if (colon < 0) return null;
    host = value.slice(0, colon);
    port = value.slice(colon + 1);
    if (!isIPv4(host)) return null;
  }
  const portNumber = parseUint(port, 0xffff);
  if (portNumber === null || portNumber === 0) return null;
  const percent = host.indexOf('%');
  const address = parseAddress(percent < 0 ? host : host.slice(0, percent));
  if (!address.ok) return null;
  const zone = percent < 0 ? '' : host.slice(percent);
  return { address: formatAddress(address.value) + zone, port: portNumber };
}

/**
 * An allowed IP as Go's netip.ParsePrefix reads it: `ADDR/BITS` with the `/BITS` required, no zone, no
 * spaces. Host bits are cleared, as wireguard-go's allowed-IPs table does on insertion.
 */
export function parseUapiPrefix(value: string): Prefix | null {
  const slash = value.indexOf('/');
  if (slash < 0) return null;
  const host = value.slice(0, slash);
  if (!isIPv4(host) && !(isIPv6(host) && !host.includes('%'))) return null;
  const address = parseAddress(host);
  if (!address.ok) return null;
  const max = address.value.family === 4 ? 32 : 128;
  const bits = parseUint(value.slice(slash + 1), max);
  if (bits === null) return null;
  return { family: address.value.family, bytes: maskBytes(address.value.bytes, bits), bits };
}

// ------------------------------------------------------------------------------------------ parsing

/**
 * Parses a set request line by line (without the `set=1` line and without line terminators), so that a
 * stream never holds more than the operations parsed so far. The first error wins; later lines are ignored.
 */
export class SetRequestParser {
  private readonly deviceOps: DeviceOp[] = [];
  private readonly sections: { publicKey: PublicKey; ops: PeerOp[] }[] = [];
  private error: UapiError | undefined;
  private done = false;

  /** Feeds one line; an empty line ends the request (later lines are ignored). */
  push(line: string): void {
    if (this.error || this.done) return;
    if (line === '') {
      this.done = true;
      return;
    }
    const eq = line.indexOf('=');
    if (eq < 0) {
      this.error = uapiError(UapiErrno.EPROTO, line, `failed to parse line ${JSON.stringify(line)}`);
      return;
    }
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === 'public_key') {
      const bytes = parseHexKey(value);
      if (!bytes) {
        this.error = uapiError(UapiErrno.EINVAL, key, `invalid public_key ${JSON.stringify(value)}`);
        return;
      }
      this.sections.push({ publicKey: PublicKey.fromBytes(bytes), ops: [] });
      return;
    }
    const section = this.sections[this.sections.length - 1];
    if (section) {
      const op = peerOp(key, value);
      if ('message' in op) this.error = op;
      else section.ops.push(op);
    } else {
      const op = deviceOp(key, value);
      if ('message' in op) this.error = op;
      else this.deviceOps.push(op);
    }
  }

  result(): ParseSetResult {
    if (this.error) return { ok: false, error: this.error };
    return { ok: true, request: { device: this.deviceOps, peers: this.sections } };
  }
}

function deviceOp(key: string, value: string): DeviceOp | UapiError {
  const invalid = (what: string): UapiError =>
    uapiError(UapiErrno.EINVAL, key, `invalid ${what} ${JSON.stringify(value)}`);
  switch (key) {
    case 'private_key': {
      const bytes = parseHexKey(value);
      if (!bytes) return invalid('private_key');
      return { kind: 'private-key', key: isZero(bytes) ? null : PrivateKey.fromBytes(clamp(bytes)) };
    }
    case 'listen_port': {
      const port = parseUint(value, 0xffff);
      return port === null ? invalid('listen_port') : { kind: 'listen-port', port };
    }
    case 'fwmark': {
      const mark = parseUint(value, 0xffffffff);
      return mark === null ? invalid('fwmark') : { kind: 'fwmark', mark };
    }
    case 'replace_peers':
      return value === 'true' ? { kind: 'replace-peers' } : invalid('replace_peers value');
    default:
      return uapiError(UapiErrno.EINVAL, key, `invalid UAPI device key ${JSON.stringify(key)}`);
  }
}

function peerOp(key: string, value: string): PeerOp | UapiError {
  const invalid = (what: string): UapiError =>
    uapiError(UapiErrno.EINVAL, key, `invalid ${what} ${JSON.stringify(value)}`);
  switch (key) {
    case 'update_only':
      return value === 'true' ? { kind: 'update-only' } : invalid('update_only value');
    case 'remove':
      return value === 'true' ? { kind: 'remove' } : invalid('remove value');
    case 'preshared_key': {
      const bytes = parseHexKey(value);
      if (!bytes) return invalid('preshared_key');
      return { kind: 'preshared-key', key: isZero(bytes) ? null : PresharedKey.fromBytes(bytes) };
    }
    case 'endpoint': {
      const endpoint = parseUapiEndpoint(value);
      return endpoint ? { kind: 'endpoint', endpoint } : invalid('endpoint');
    }
    case 'persistent_keepalive_interval': {
      const seconds = parseUint(value, 0xffff);
      return seconds === null
        ? invalid('persistent_keepalive_interval')
        : { kind: 'persistent-keepalive', seconds };
    }
    case 'replace_allowed_ips':
      return value === 'true' ? { kind: 'replace-allowed-ips' } : invalid('replace_allowed_ips value');
    case 'allowed_ip': {
      const prefix = parseUapiPrefix(value);
      return prefix ? { kind: 'allowed-ip', prefix } : invalid('allowed_ip');
    }
    case 'protocol_version':
      return value === '1' ? { kind: 'protocol-version' } : invalid('protocol_version');
    default:
      return uapiError(UapiErrno.EINVAL, key, `invalid UAPI peer key ${JSON.stringify(key)}`);
  }
}

/**
 * Parses the lines of a set request (after `set=1`, without terminators; a trailing `\r` is dropped; an
 * empty line ends the request). Returns typed operations, or the first error naming its key.
 */
export function parseSetRequest(lines: Iterable<string>): ParseSetResult {
  const parser = new SetRequestParser();
  for (const line of lines) parser.push(line.endsWith('\r') ? line.slice(0, -1) : line);
  return parser.result();
}

// ------------------------------------------------------------------------------------------ hooks

/** What the UAPI needs beyond the Device: the UDP socket's settings, the clock, and an outlet for actions. */
export interface UapiHooks {
  /** The UDP port actually bound (0 when none; then `listen_port` is omitted from get). */
  getListenPort(): number;
  /** Rebinds to `port` (0 = any). A failure is answered with EADDRINUSE and nothing else is applied. */
  setListenPort(port: number): void | Promise<void>;
  getFwmark?(): number;
  /** Without it, `fwmark=0` is accepted and ignored and any other mark is refused with EOPNOTSUPP. */
  setFwmark?(mark: number): void | Promise<void>;
  /** The Device's clock (`now` of its methods); default Date.now. */
  now?(): number;
  /**
   * Carries out actions a set starts: a keepalive when a peer's persistent keepalive is turned on, as
   * wireguard-go sends when the device is up. Without it no packet is sent from a set.
   */
  emit?(actions: Action[]): void;
  /**
   * Called once after a set has changed the device (not after a refused one), e.g. to resync routes with
   * the allowed IPs. An exception here is answered with ENOANO (the changes stay applied).
   */
  afterSet?(): void | Promise<void>;
}

// ------------------------------------------------------------------------------------------ get

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function integer(n: number): string {
  return Number.isFinite(n) && n > 0 ? BigInt(Math.trunc(n)).toString() : '0';
}

/** Epoch milliseconds (possibly fractional; 0 = never) → UAPI seconds and nanoseconds. */
export function handshakeTime(epochMs: number): { sec: number; nsec: number } {
  if (!Number.isFinite(epochMs) || epochMs <= 0) return { sec: 0, nsec: 0 };
  const sec = Math.floor(epochMs / 1000);
  const nsec = Math.min(999_999_999, Math.max(0, Math.round((epochMs - sec * 1000) * 1e6)));
  return { sec, nsec };
}

const ZERO_KEY_HEX = '0'.repeat(KEY_LENGTH * 2);

/** The whole answer to `get=1`, `errno=0\n\n` included. */
export function formatGet(device: Device, now: number, hooks: UapiHooks): string {
  const out: string[] = [];
  const privateKey = device.privateKey;
  if (privateKey && !privateKey.isZero()) out.push(`private_key=${hex(privateKey.bytes)}`);
  const port = hooks.getListenPort();
  if (port) out.push(`listen_port=${port}`);
  const fwmark = hooks.getFwmark?.() ?? 0;
  if (fwmark) out.push(`fwmark=${fwmark}`);
  for (const peer of device.peerStatuses(now)) {
    out.push(`public_key=${hex(peer.publicKey.bytes)}`);
    out.push(`preshared_key=${peer.presharedKey ? hex(peer.presharedKey.bytes) : ZERO_KEY_HEX}`);
    out.push('protocol_version=1');
    if (peer.endpoint) out.push(`endpoint=${formatEndpoint(peer.endpoint)}`);
    const { sec, nsec } = handshakeTime(peer.lastHandshake);
    out.push(`last_handshake_time_sec=${sec}`);
    out.push(`last_handshake_time_nsec=${nsec}`);
    out.push(`tx_bytes=${integer(peer.txBytes)}`);
    out.push(`rx_bytes=${integer(peer.rxBytes)}`);
    out.push(`persistent_keepalive_interval=${integer(peer.persistentKeepalive)}`);
    for (const prefix of peer.allowedIps) out.push(`allowed_ip=${prefix}`);
  }
  out.push('errno=0', '', '');
  return out.join('\n');
}

// ------------------------------------------------------------------------------------------ set

/** wireguard-go's MaxPeers: a set that would leave more peers than this is refused (EINVAL). */
export const MAX_PEERS = 1 << 16;

function isOwnKey(own: PublicKey | undefined, key: PublicKey): boolean {
  return own ? key.equals(own) : key.isZero();
}

/** The device's public key once the request's device lines are applied (undefined: none). */
function ownKeyAfter(device: Device, request: SetRequest): PublicKey | undefined {
  let own = device.publicKey;
  for (const op of request.device) if (op.kind === 'private-key') own = op.key?.publicKey();
  return own;
}

/** Counts the peers the request would leave, without touching the device, to refuse it up front. */
function peersAfter(device: Device, request: SetRequest): number {
  const replace = request.device.some((op) => op.kind === 'replace-peers');
  const own = ownKeyAfter(device, request);
  const touched = new Map<string, boolean>(); // public key → present after the sections so far
  let count = replace ? 0 : device.peerCount;
  for (const section of request.peers) {
    const key = section.publicKey;
    if (isOwnKey(own, key)) continue;
    const id = key.toBase64();
    const created = !(touched.get(id) ?? (!replace && device.hasPeer(key)));
    if (created && section.ops[0]?.kind === 'update-only') continue;
    let present = true;
    if (created) count++;
    if (section.ops.some((op) => op.kind === 'remove' || (created && op.kind === 'update-only'))) {
      count--;
      present = false;
    }
    touched.set(id, present);
  }
  return count;
}

/**
 * Applies a parsed set request. Callers serialize calls (UapiHandler does). Hook failures come first and
 * leave the device untouched; the device changes themselves cannot fail. Returns null on success.
 */
export async function applySet(
  device: Device,
  request: SetRequest,
  hooks: UapiHooks,
): Promise<UapiError | null> {
  let port: number | undefined;
  let mark: number | undefined;
  for (const op of request.device) {
    if (op.kind === 'listen-port') port = op.port;
    else if (op.kind === 'fwmark') mark = op.mark;
  }
  if (mark !== undefined && !hooks.setFwmark) {
    if (mark !== 0) return uapiError(UapiErrno.EOPNOTSUPP, 'fwmark', 'fwmark is not supported here');
    mark = undefined;
  }
  if (peersAfter(device, request) > MAX_PEERS)
    return uapiError(UapiErrno.EINVAL, 'public_key', `too many peers (at most ${MAX_PEERS})`);

  const previousPort = hooks.getListenPort();
  if (port !== undefined) {
    try {
      await hooks.setListenPort(port);
    } catch (e) {
      return uapiError(
        UapiErrno.EADDRINUSE,
        'listen_port',
        `failed to set listen_port ${port}: ${describe(e)}`,
      );
    }
  }
  if (mark !== undefined && hooks.setFwmark) {
    try {
      await hooks.setFwmark(mark);
    } catch (e) {
      if (port !== undefined) await Promise.resolve(hooks.setListenPort(previousPort)).catch(() => undefined);
      return uapiError(UapiErrno.EADDRINUSE, 'fwmark', `failed to set fwmark ${mark}: ${describe(e)}`);
    }
  }

  try {
    for (const op of request.device) {
      if (op.kind === 'private-key') device.setPrivateKey(op.key);
      else if (op.kind === 'replace-peers') device.removeAllPeers();
    }
    const keepalives: PublicKey[] = [];
    for (const section of request.peers) {
      if (applyPeerSection(device, section)) keepalives.push(section.publicKey);
    }
    if (keepalives.length > 0 && hooks.emit) {
      const now = (hooks.now ?? Date.now)();
      const actions: Action[] = [];
      for (const key of keepalives) if (device.hasPeer(key)) device.sendKeepalive(key, now, actions);
      if (actions.length > 0) hooks.emit(actions);
    }
  } catch (e) {
    await runAfterSet(hooks);
    return uapiError(UapiErrno.ENOANO, 'set', `failed to apply: ${describe(e)}`);
  }
  return runAfterSet(hooks);
}

async function runAfterSet(hooks: UapiHooks): Promise<UapiError | null> {
  try {
    await hooks.afterSet?.();
    return null;
  } catch (e) {
    return uapiError(UapiErrno.ENOANO, 'set', `afterSet hook failed: ${describe(e)}`);
  }
}

/**
 * Applies one peer section in order, batching consecutive changes into Device.setPeer calls. Returns true
 * when persistent keepalive was turned on (it was 0 and the last value set is not).
 */
function applyPeerSection(device: Device, section: PeerSection): boolean {
  const publicKey = section.publicKey;
  if (isOwnKey(device.publicKey, publicKey)) return false;
  const created = !device.hasPeer(publicKey);
  if (created && section.ops[0]?.kind === 'update-only') return false;
  let oldKeepalive = 0;
  if (!created && section.ops.some((op) => op.kind === 'persistent-keepalive'))
    oldKeepalive = device.peerStatus(publicKey, 0)?.persistentKeepalive ?? 0;
  let keepalive = oldKeepalive;
  let pending: PeerConfig = { publicKey };
  let allowed: Prefix[] = [];
  let pendingChanges = created; // creating the peer is itself a change, as wireguard-go does at `public_key=`
  const flush = (): void => {
    if (pendingChanges) device.setPeer(allowed.length > 0 ? { ...pending, allowedIps: allowed } : pending);
    pending = { publicKey };
    allowed = [];
    pendingChanges = false;
  };
  for (const op of section.ops) {
    switch (op.kind) {
      case 'update-only':
        if (!created) break;
        flush();
        device.removePeer(publicKey);
        return false;
      case 'remove':
        flush();
        device.removePeer(publicKey);
        return false;
      case 'preshared-key':
        pending.presharedKey = op.key;
        pendingChanges = true;
        break;
      case 'endpoint':
        pending.endpoint = op.endpoint;
        pendingChanges = true;
        break;
      case 'persistent-keepalive':
        pending.persistentKeepalive = op.seconds;
        keepalive = op.seconds;
        pendingChanges = true;
        break;
      case 'replace-allowed-ips':
        // Prefixes added before this line are inserted first (taking them from other peers), then dropped.
        if (allowed.length > 0) flush();
        pending.replaceAllowedIps = true;
        pendingChanges = true;
        break;
      case 'allowed-ip':
        allowed.push(op.prefix);
        pendingChanges = true;
        break;
      case 'protocol-version':
        break;
    }
  }
  flush();
  return oldKeepalive === 0 && keepalive !== 0;
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ------------------------------------------------------------------------------------------ streams

export interface UapiHandlerOptions {
  /** Bytes one set request may span, `set=1` line included; beyond it the connection is closed. 16 MiB. */
  maxRequestBytes?: number;
  /** Bytes one line may span; beyond it the connection is closed. 64 KiB (Go's bufio.Scanner limit). */
  maxLineBytes?: number;
}

/** What a chunk of input produced: complete answers, in order, and whether to close the connection. */
export interface UapiOutput {
  readonly responses: string[];
  readonly close: boolean;
  /** Why the connection is to be closed (for logs). */
  readonly reason?: string;
}

/**
 * The UAPI for one Device: opens a UapiSession per connection and serializes the requests of every session,
 * so that a get never sees half of a set and sets never interleave (wireguard-go's ipcMutex).
 */
export class UapiHandler {
  readonly maxRequestBytes: number;
  readonly maxLineBytes: number;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly device: Device,
    readonly hooks: UapiHooks,
    options: UapiHandlerOptions = {},
  ) {
    this.maxRequestBytes = options.maxRequestBytes ?? 16 * 1024 * 1024;
    this.maxLineBytes = options.maxLineBytes ?? 64 * 1024;
  }

  /** A parser for one connection's byte stream. */
  open(): UapiSession {
    return new UapiSession(this);
  }

  /** Feeds a whole stream to a fresh session, then ends it; returns the concatenated answers. */
  async handle(input: string | Uint8Array): Promise<{ output: string; closed: boolean; reason?: string }> {
    const session = this.open();
    const result = await session.push(input);
    session.end();
    const output = result.responses.join('');
    return result.reason === undefined
      ? { output, closed: result.close }
      : { output, closed: result.close, reason: result.reason };
  }

  /** The answer to `get=1` now. */
  get(): Promise<string> {
    return this.exclusive(() => formatGet(this.device, (this.hooks.now ?? Date.now)(), this.hooks));
  }

  /** Applies a parse result (parsing errors are answered without touching anything); returns the answer. */
  set(parsed: ParseSetResult): Promise<string> {
    return this.exclusive(async () => {
      const error = parsed.ok ? await applySet(this.device, parsed.request, this.hooks) : parsed.error;
      return errnoResponse(error ? error.errno : 0);
    });
  }

  private exclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

const GET_OP = 'get=1\n';
const SET_OP = 'set=1\n';

type SessionState = 'op' | 'get' | 'set' | 'closed';

/**
 * One connection's request stream. Bytes may arrive in any split; each push returns the answers completed by
 * the bytes so far. Pushes may overlap: they are processed in order.
 */
export class UapiSession {
  private text = '';
  private pos = 0;
  private state: SessionState = 'op';
  private parser: SetRequestParser | undefined;
  private requestBytes = 0;
  private closeReason: string | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly handler: UapiHandler) {}

  get closed(): boolean {
    return this.state === 'closed';
  }

  push(chunk: string | Uint8Array): Promise<UapiOutput> {
    const run = this.chain.then(() => this.process(chunk));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** The peer closed its side: a request cut short is discarded, never applied. */
  end(): void {
    this.close('end of stream');
  }

  private close(reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closeReason = reason;
    this.text = '';
    this.pos = 0;
    this.parser = undefined;
  }

  private output(responses: string[]): UapiOutput {
    if (this.state !== 'closed') return { responses, close: false };
    return { responses, close: true, reason: this.closeReason ?? 'closed' };
  }

  private async process(chunk: string | Uint8Array): Promise<UapiOutput> {
    const responses: string[] = [];
    if (this.state === 'closed') return this.output(responses);
    // latin1: one character per byte, so lengths are byte counts and no input can fail to decode.
    const incoming = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('latin1');
    this.text = this.pos > 0 ? this.text.slice(this.pos) + incoming : this.text + incoming;
    this.pos = 0;
    for (;;) {
      const state = this.state as SessionState;
      if (state === 'closed') break;
      if (state === 'op') {
        if (!this.readOp()) break;
      } else if (state === 'get') {
        if (this.pos >= this.text.length) break;
        const next = this.text[this.pos++];
        this.state = 'op';
        // wireguard-go reads exactly one byte after `get=1\n`; anything but `\n` is EINVAL (and consumed).
        responses.push(next === '\n' ? await this.handler.get() : errnoResponse(UapiErrno.EINVAL));
      } else {
        const line = this.readLine();
        if (line === undefined) break;
        if (line === '') {
          const parsed = this.parser!.result();
          this.parser = undefined;
          this.state = 'op';
          responses.push(await this.handler.set(parsed));
        } else {
          this.parser!.push(line);
        }
      }
    }
    return this.output(responses);
  }

  /** Reads the operation line; false when more bytes are needed or the connection is being closed. */
  private readOp(): boolean {
    const available = this.text.length - this.pos;
    if (available === 0) return false;
    const head = this.text.slice(this.pos, this.pos + GET_OP.length);
    if (head.length < GET_OP.length) {
      if (!GET_OP.startsWith(head) && !SET_OP.startsWith(head)) this.close('invalid operation');
      return false;
    }
    this.pos += GET_OP.length;
    if (head === GET_OP) {
      this.state = 'get';
    } else if (head === SET_OP) {
      this.state = 'set';
      this.parser = new SetRequestParser();
      this.requestBytes = SET_OP.length;
    } else {
      this.close('invalid operation');
      return false;
    }
    return true;
  }

  /** Reads one set line without its `\n` (and a trailing `\r`), enforcing the size limits. */
  private readLine(): string | undefined {
    const nl = this.text.indexOf('\n', this.pos);
    const length = (nl < 0 ? this.text.length : nl + 1) - this.pos;
    if (this.requestBytes + length > this.handler.maxRequestBytes) {
      this.close(`request larger than ${this.handler.maxRequestBytes} bytes`);
      return undefined;
    }
    if (length > this.handler.maxLineBytes + 1) {
      this.close(`line longer than ${this.handler.maxLineBytes} bytes`);
      return undefined;
    }
    if (nl < 0) return undefined;
    let line = this.text.slice(this.pos, nl);
    this.pos = nl + 1;
    this.requestBytes += length;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    return line;
  }
}
