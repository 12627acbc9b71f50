/**
 * Warms the OpenVPN server's live packet path before the first client connects, as warmup.ts does for
 * WireGuard (whose comment says why: V8 optimises a function only after it has run many times, and an idle
 * tunnel would otherwise stay in the interpreter). Measured through `weft server run` with one ping every
 * 10 ms, the gateway spent about 160 µs of JavaScript per round trip cold and about 60 µs once warm.
 *
 * A throwaway in-process client drives the real path end to end with the live objects: over loopback UDP
 * into the live socket, the OpenVPN shell and its data channel, the live router and TUN device. The kernel
 * answers each echo request to the gateway's own address with a reply routed back into the TUN device, then
 * sealed by the live session and sent back over the live socket:
 *
 *   1. pick an address in the member subnet that is neither the gateway's nor any member's;
 *   2. open a loopback UDP socket and a warm-up session in the shell for it (random data keys, the picked
 *      address as its route, no member: its packets skip the member firewall);
 *   3. a few thousand echo requests (small and large) in small batches, sealed by a client-side data channel,
 *      each batch waiting for its replies; each batch also carries one IPv6 packet from a link-local source,
 *      as a client's kernel sends on its new tunnel (router solicitations, MLD reports), which the shell
 *      drops (not from the member's own address);
 *   4. end the session (its packets are taken off the shell's counters) and close the socket. Nothing leaves
 *      the host; everything is bounded in count and time, and skipped when there is no free address or no UDP
 *      listener.
 *
 * `weft server run` warms at start and once more right after the first client connected. A client's first
 * connection changes, once per process, what the optimised code relied on: the TLS handshake runs node's
 * stream code, whose objects share hidden classes with ours; the session's member and connect time are set
 * for the first time; the client's first packets take branches the warm-up's did not (IPv6, say). V8 throws
 * the optimised packet path away at each such change, and an idle tunnel then runs it unoptimised for tens
 * of seconds (a ping every 10 ms needed more than 8 s to get even part of it optimised again): the gateway's
 * part of the idle round trip measured about 0.04 ms longer. After the first client these changes have
 * happened, so the second warm-up's code stays.
 */
import { randomBytes } from 'node:crypto';
import type { Bind, Datagram } from '../io/bind.js';
import { mainPoller, WARM_WINDOW_MS, type Poller } from '../io/poller.js';
import { openBestBind } from '../io/udp-linux.js';
import type { Endpoint } from '../net/endpoint.js';
import { echo } from '../net/icmp.js';
import { hostAddress, sameAddress, type Address, type Prefix } from '../net/ip.js';
import { DataChannel, DATA_V2_HEADER } from '../openvpn/data-channel.js';
import { DATA_KEY_BLOCK_LENGTH } from '../openvpn/data-channel-keys.js';
import type { DataCipher } from '../openvpn/peer-info.js';
import type { OpenVpnInterface } from './openvpn-interface.js';

export interface OpenVpnWarmTarget {
  readonly openvpn: OpenVpnInterface;
  /** The gateway's own IPv4 address (on the TUN device) and the member subnet it is in. */
  readonly gateway: Address;
  readonly subnet: Prefix;
  /** Addresses members hold (the picked one must be none of them). */
  readonly taken: readonly Address[];
  readonly cipher: DataCipher;
}

type OpenVpnWarmSession = ReturnType<OpenVpnInterface['openWarmSession']>;

export type OpenVpnWarmResult =
  | { readonly warmed: true; readonly packets: number; readonly ms: number }
  | { readonly warmed: false; readonly reason: string };

/** The highest host address of the subnet that is neither the gateway's nor a member's (at most 64 tried). */
export function pickWarmAddress(
  subnet: Prefix,
  gateway: Address,
  taken: readonly Address[],
): Address | undefined {
  if (subnet.family !== 4) return undefined;
  const hostBits = 32 - subnet.bits;
  if (hostBits < 2) return undefined;
  const last = (1n << BigInt(hostBits)) - 2n;
  for (let host = last; host >= 1n && host > last - 64n; host--) {
    const candidate = hostAddress(subnet, host);
    if (sameAddress(candidate, gateway) || taken.some((t) => sameAddress(t, candidate))) continue;
    return candidate;
  }
  return undefined;
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export async function warmOpenVpnPath(
  target: OpenVpnWarmTarget,
  rounds = 800,
  budgetMs = 3000,
): Promise<OpenVpnWarmResult> {
  const started = performance.now();
  const port = target.openvpn.udpPort;
  if (port === undefined) return { warmed: false, reason: 'no UDP listener' };
  const fake = pickWarmAddress(target.subnet, target.gateway, target.taken);
  if (!fake) return { warmed: false, reason: 'no free address in the subnet' };

  const block = new Uint8Array(randomBytes(DATA_KEY_BLOCK_LENGTH));
  let bind: Bind | undefined;
  let client: DataChannel | undefined;
  let session: ReturnType<OpenVpnInterface['openWarmSession']> = undefined;
  let replies = 0;
  try {
    bind = await openBestBind(0, '127.0.0.1');
    session = target.openvpn.openWarmSession(
      { address: '127.0.0.1', port: bind.port },
      { ...fake, bits: 32 },
      block,
      target.cipher,
    );
    if (!session) return { warmed: false, reason: 'no session' };
    const c = new DataChannel({ role: 'client', peerId: session.peerId });
    client = c;
    c.installKey(0, block, target.cipher);
    const opened = new Uint8Array(65535);
    bind.start((datagrams) => {
      const now = performance.now();
      for (const d of datagrams) if (c.open(d.data, opened, now) === 'ip') replies++;
    });
    const to = { address: '127.0.0.1', port };
    const packets = [
      echo('request', fake.bytes, target.gateway.bytes, 0x7766, 1, new Uint8Array(56)),
      echo('request', fake.bytes, target.gateway.bytes, 0x7766, 2, new Uint8Array(1252)),
    ];
    // fe80::1 to ff02::2 (all routers): answered by nobody, dropped by the shell.
    const linkLocal = new Uint8Array(16);
    linkLocal[0] = 0xfe;
    linkLocal[1] = 0x80;
    linkLocal[15] = 1;
    const allRouters = new Uint8Array(16);
    allRouters[0] = 0xff;
    allRouters[1] = 0x02;
    allRouters[15] = 2;
    const unanswered = echo('request', linkLocal, allRouters, 0x7766, 3, new Uint8Array(8));
    const buffers = [0, 1, 2, 3].map(() => new Uint8Array(DATA_V2_HEADER + 1280));
    const extra = new Uint8Array(DATA_V2_HEADER + unanswered.length);
    let sent = 0;
    for (let r = 0; r < rounds; r++) {
      if (performance.now() - started > budgetMs) break;
      const out: Datagram[] = [];
      for (let i = 0; i < buffers.length; i++) {
        const n = c.seal(packets[i & 1]!, buffers[i]!);
        if (typeof n === 'number') out.push({ data: buffers[i]!.subarray(0, n), endpoint: to });
      }
      sent += out.length;
      const n = c.seal(unanswered, extra);
      if (typeof n === 'number') out.push({ data: extra.subarray(0, n), endpoint: to });
      bind.send(out);
      for (let i = 0; i < 200 && replies < sent; i++) {
        if (r === 0) await new Promise((resolve) => setTimeout(resolve, 1));
        else await tick();
      }
      if (replies === 0 && r > 0) break; // loopback down or the kernel does not answer: stop early
    }
    if (replies === 0) return { warmed: false, reason: 'no echo replies (is loopback up?)' };
    return { warmed: true, packets: replies, ms: performance.now() - started };
  } catch (e) {
    return { warmed: false, reason: (e as Error).message };
  } finally {
    block.fill(0);
    if (session) target.openvpn.closeWarmSession(session);
    client?.retireKey(0);
    await bind?.close();
  }
}

/** The keeper pulses while a client's packet was opened or sealed this recently (the poller's warm window). */
export const KEEP_WINDOW_MS = WARM_WINDOW_MS;
/** Pulses per warm-up session before the keeper opens a fresh one (new keys, packet ids from 1). */
export const KEEP_SESSION_PULSES = 1 << 20;

export interface OpenVpnKeeperTarget {
  readonly openvpn: OpenVpnInterface;
  /** The gateway's own IPv4 address (on the TUN device) and the member subnet it is in. */
  readonly gateway: Address;
  readonly subnet: Prefix;
  /** The addresses members hold now: asked whenever the keeper picks its address. */
  readonly taken: () => readonly Address[];
  /** The data cipher to pulse with at first (follow() changes it). */
  readonly cipher: DataCipher;
  /** Where the keeper runs (the process's poller by default). */
  readonly poller?: Poller;
  /** The keeper's socket (a new loopback UDP socket by default). */
  readonly bind?: Bind;
  /** Whether a client was active lately (the interface's liveWithin(KEEP_WINDOW_MS) by default). */
  readonly live?: () => boolean;
}

/**
 * Keeps the OpenVPN packet path warm while traffic is sparse. The poller wakes once a millisecond after
 * traffic (poller.ts), which keeps the thread awake; but the code, data and kernel paths the last packet took
 * go cold within milliseconds, and the next packet pays for them. Measured with one ping every 10 ms through
 * `weft server run` (timestamps at each step, from the poll that woke for the datagram to the answer handed
 * to the socket), the gateway's work per round trip took about 250 µs with the path cold and about 80 µs
 * with it in use every millisecond; with the keeper, about 120 µs (docs/openvpn.md).
 *
 * So while a client's data packet was opened or sealed within the last KEEP_WINDOW_MS, each of the poller's
 * idle wake-ups sends one echo request to the gateway's address, sealed for a warm-up session of its own, from
 * a loopback socket to the live UDP port: it takes the live path end to end (the socket, the data channel,
 * the TUN device, the kernel's answer, the router, the seal, the socket) and its answer comes back here. It
 * costs about 7% of a core (the gateway's CPU per ping every 10 ms: 1.6 ms instead of 0.8–0.9), only in the
 * 50 ms after a client's packet and only while the gateway is otherwise idle: a busy gateway never waits, so
 * never pulses. The pulses are not counted as anyone's traffic, but they are visible on the TUN device (an
 * echo request from the keeper's address, the highest free one in the member subnet, to the gateway's).
 * WEFT_POLL_WARM=0 turns the keeper off with the short waits.
 */
export class OpenVpnPathKeeper {
  private session: OpenVpnWarmSession = undefined;
  private client: DataChannel | undefined;
  private address: Address | undefined;
  private pulses = 0;
  /** this.pulses when the current session opened. */
  private sessionStart = 0;
  private replies = 0;
  /** The echo request of the current session's address. */
  private request: Uint8Array = new Uint8Array(0);
  private readonly sealed = new Uint8Array(DATA_V2_HEADER + 128);
  private readonly opened = new Uint8Array(65535);
  private readonly to: Endpoint;
  private removeHook: (() => void) | undefined;
  private closed = false;
  private cipher: DataCipher;
  private readonly live: () => boolean;

  private constructor(
    private readonly target: OpenVpnKeeperTarget,
    private readonly bind: Bind,
    port: number,
  ) {
    this.to = { address: '127.0.0.1', port };
    this.cipher = target.cipher;
    this.live = target.live ?? (() => target.openvpn.liveWithin(KEEP_WINDOW_MS));
    bind.start((datagrams) => this.onReplies(datagrams));
  }

  /** Starts the keeper, or says why it cannot run (no UDP listener, an IPv6 subnet, WEFT_POLL_WARM=0). */
  static async start(target: OpenVpnKeeperTarget): Promise<OpenVpnPathKeeper | string> {
    if (process.env.WEFT_POLL_WARM === '0') return 'WEFT_POLL_WARM=0';
    const port = target.openvpn.udpPort;
    if (port === undefined) return 'no UDP listener';
    if (target.subnet.family !== 4) return 'the member subnet is not IPv4';
    const bind = target.bind ?? (await openBestBind(0, '127.0.0.1'));
    const keeper = new OpenVpnPathKeeper(target, bind, port);
    keeper.removeHook = (target.poller ?? mainPoller).onIdle(() => keeper.pulse());
    target.openvpn.onClose(() => keeper.close());
    return keeper;
  }

  /** Echo requests sent and answers received so far. */
  get counts(): { pulses: number; replies: number } {
    return { pulses: this.pulses, replies: this.replies };
  }

  /** The address the keeper's session holds now, if any. */
  get holds(): Address | undefined {
    return this.session && !this.session.ended ? this.address : undefined;
  }

  /** Pulses with `cipher` from now on (the one the latest client chose). */
  follow(cipher: DataCipher): void {
    if (cipher === this.cipher) return;
    this.cipher = cipher;
    this.drop();
  }

  /** The poller's idle hook: one echo request if a client was active lately; true if it sent one. */
  pulse(): boolean {
    if (this.closed || !this.live()) return false;
    if (!this.ready()) return false;
    const n = this.client!.seal(this.request, this.sealed);
    if (typeof n !== 'number') {
      this.drop();
      return false;
    }
    this.pulses++;
    this.bind.send([{ data: this.sealed.subarray(0, n), endpoint: this.to }]);
    return true;
  }

  private onReplies(datagrams: readonly Datagram[]): void {
    const client = this.client;
    if (client === undefined) return;
    const now = performance.now();
    for (const d of datagrams) if (client.open(d.data, this.opened, now) === 'ip') this.replies++;
    if (this.session) this.target.openvpn.uncountWarm(this.session);
  }

  /** A live session with a free address, opened if need be; false if none can be had. */
  private ready(): boolean {
    const s = this.session;
    if (s !== undefined && !s.ended && this.sessionPulses() < KEEP_SESSION_PULSES) return true;
    this.drop();
    const fake = pickWarmAddress(this.target.subnet, this.target.gateway, this.target.taken());
    if (!fake) return false;
    const block = new Uint8Array(randomBytes(DATA_KEY_BLOCK_LENGTH));
    const session = this.target.openvpn.openWarmSession(
      { address: '127.0.0.1', port: this.bind.port },
      { ...fake, bits: 32 },
      block,
      this.cipher,
    );
    if (!session) {
      block.fill(0);
      return false;
    }
    const client = new DataChannel({ role: 'client', peerId: session.peerId });
    client.installKey(0, block, this.cipher);
    block.fill(0);
    // A ping's size: 56 bytes of payload.
    this.request = echo('request', fake.bytes, this.target.gateway.bytes, 0x7767, 1, new Uint8Array(56));
    this.session = session;
    this.client = client;
    this.address = fake;
    this.sessionStart = this.pulses;
    return true;
  }

  private sessionPulses(): number {
    return this.pulses - this.sessionStart;
  }

  /** Ends the current warm-up session, if any. */
  private drop(): void {
    if (this.session) this.target.openvpn.closeWarmSession(this.session);
    this.client?.retireKey(0);
    this.session = undefined;
    this.client = undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.removeHook?.();
    this.drop();
    await this.bind.close();
  }
}
