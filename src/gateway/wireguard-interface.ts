/**
 * The I/O shell around one WireGuard device: it feeds the sans-IO core and carries out its actions.
 *
 * 1. Datagrams from the Bind → Device.receive → `send` actions back to the Bind, `deliver` actions to the
 *    gateway (towards the TUN device).
 *    An optional `admit` check sees each decrypted packet and its peer first.
 * 2. Handshake messages the device queued (DeviceOptions.handshakeQueue) are served after the batch's
 *    transport data has gone out, in a task of their own on the event loop (setImmediate), for at most
 *    HANDSHAKE_BUDGET_MS per turn; what is left waits for the next turn, after the next poll's transport data.
 *    So a flood of handshakes costs transport data at most that much latency per turn and a bounded share of
 *    the thread, and the queue (bounded, oldest dropped) absorbs the rest. Not a worker thread: the handshake
 *    needs the device's peers and indices, which live on this thread; a worker would need them shared or
 *    copied, and on two cores it would compete with the data plane for the same CPU anyway.
 * 3. Packets routed to this interface by the gateway → Device.send → datagrams to the Bind, one batch per
 *    batch read from the TUN device (the router calls flush at its end).
 * 4. A periodic tick drives the protocol timers (paper §6) on the shell's clock.
 * 5. A listen-port change (UAPI) rebinds without touching sessions.
 */
import type { IpHeader } from '../net/ip-packet.js';
import type { PublicKey } from '../crypto/keys.js';
import type { Action } from '../wireguard/device.js';
import type { Device } from '../wireguard/device.js';
import type { Bind, Datagram } from '../io/bind.js';
import { monotonicEpochMs, type Clock } from '../io/clock.js';
import type { Tunnel } from './router.js';

/**
 * Time for queued handshake messages per event-loop turn. A handshake costs ~0.1-0.2 ms here (two X25519
 * operations and the BLAKE2s hashing), so a few per turn: hundreds to thousands per second, far above what
 * honest peers need, while transport data waits at most this long for them.
 */
export const HANDSHAKE_BUDGET_MS = 0.5;

/**
 * Where decrypted packets to multicast groups go instead of the TUN side (the replicator, with the peer as
 * their source port). The tap checks policy itself; flush() ends a batch.
 */
export interface GroupTap {
  fromPeer(packet: Uint8Array, header: IpHeader, peer: PublicKey, now: number): void;
  flush(): void;
}

/** A check of one decrypted packet, with the header the device read, before it goes to the TUN side. */
export type Admit = (packet: Uint8Array, header: IpHeader, peer: PublicKey) => boolean;

export interface WireGuardInterfaceOptions {
  name: string;
  device: Device;
  bind: Bind;
  /** Opens a Bind on another port (for listen-port changes). */
  openBind: (port: number) => Promise<Bind>;
  /** Receives decrypted packets for the TUN side. */
  deliver: (packets: Uint8Array[]) => void;
  /** Decides whether a decrypted packet from `peer` may go on to the TUN side (e.g. a member firewall). */
  admit?: Admit;
  /** Takes decrypted packets to multicast groups (before `admit`); see also `groups` on the interface. */
  groups?: GroupTap;
  clock?: Clock;
  /** Timer resolution; the protocol's shortest timer is REKEY_TIMEOUT (5 s) with 333 ms of jitter. */
  tickMs?: number;
  /** Milliseconds on a monotonic clock for the handshake budget (performance.now by default). */
  budgetClock?: () => number;
  /** HANDSHAKE_BUDGET_MS by default. */
  handshakeBudgetMs?: number;
}

function isGroup(header: IpHeader): boolean {
  const d = header.destination;
  return header.family === 4 ? (d[0]! & 0xf0) === 0xe0 : d[0] === 0xff;
}

export class WireGuardInterface implements Tunnel {
  readonly name: string;
  readonly device: Device;
  readonly counters = { datagramsIn: 0, datagramsOut: 0, packetsIn: 0, packetsOut: 0, packetsRefused: 0 };
  private bind: Bind;
  private readonly openBind: (port: number) => Promise<Bind>;
  private readonly deliver: (packets: Uint8Array[]) => void;
  private readonly admit: Admit | undefined;
  /** Multicast replication, when on: settable after construction (the replicator needs the interface). */
  groups: GroupTap | undefined;
  private readonly clock: Clock;
  private readonly tickMs: number;
  private timer: NodeJS.Timeout | undefined;
  private readonly actions: Action[] = [];
  private readonly budgetClock: () => number;
  private readonly handshakeBudgetMs: number;
  private handshakeTask: NodeJS.Immediate | undefined;

  constructor(options: WireGuardInterfaceOptions) {
    this.name = options.name;
    this.device = options.device;
    this.bind = options.bind;
    this.openBind = options.openBind;
    this.deliver = options.deliver;
    this.admit = options.admit;
    this.groups = options.groups;
    this.clock = options.clock ?? monotonicEpochMs;
    this.tickMs = options.tickMs ?? 100;
    this.budgetClock = options.budgetClock ?? (() => performance.now());
    this.handshakeBudgetMs = options.handshakeBudgetMs ?? HANDSHAKE_BUDGET_MS;
  }

  get listenPort(): number {
    return this.bind.port;
  }

  start(): void {
    this.attach(this.bind);
    this.timer = setInterval(() => {
      this.device.tick(this.clock(), this.actions);
      this.flush();
    }, this.tickMs);
    this.timer.unref();
  }

  /** Tunnel: a packet from the TUN side whose destination this interface owns; it leaves at flush(). */
  send(packet: Uint8Array, now: number, header?: IpHeader): void {
    this.counters.packetsIn++;
    this.device.send(packet, now, this.actions, header);
  }

  /** Carries out actions produced outside the packet paths (e.g. a keepalive started by a UAPI set). */
  perform(actions: readonly Action[]): void {
    this.actions.push(...actions);
    this.flush();
  }

  async setListenPort(port: number): Promise<void> {
    if (port !== 0 && port === this.bind.port) return;
    const next = await this.openBind(port);
    const previous = this.bind;
    this.bind = next;
    this.attach(next);
    await previous.close();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.handshakeTask) clearImmediate(this.handshakeTask);
    this.handshakeTask = undefined;
    await this.bind.close();
  }

  private attach(bind: Bind): void {
    bind.start((datagrams) => {
      if (bind !== this.bind) return;
      const now = this.clock();
      this.counters.datagramsIn += datagrams.length;
      for (const d of datagrams) this.device.receive(d.data, d.endpoint, now, this.actions);
      this.flush();
      if (this.device.pendingHandshakes > 0) this.scheduleHandshakes();
    });
  }

  private scheduleHandshakes(): void {
    if (this.handshakeTask === undefined && this.timer !== undefined)
      this.handshakeTask = setImmediate(this.serveHandshakes);
  }

  /** Serves queued handshake messages for at most the budget (at least one), then yields (see 2 above). */
  readonly serveHandshakes = (): void => {
    this.handshakeTask = undefined;
    const deadline = this.budgetClock() + this.handshakeBudgetMs;
    const now = this.clock();
    while (this.device.serveHandshake(now, this.actions)) {
      if (this.budgetClock() >= deadline) break;
    }
    this.flush();
    if (this.device.pendingHandshakes > 0) this.scheduleHandshakes();
  };

  /** Multicast: sends one packet to exactly this peer (its copy leaves at the next flush()). */
  sendTo(peer: PublicKey, packet: Uint8Array, header: IpHeader, now: number): void {
    this.device.sendTo(peer, packet, now, this.actions, header);
  }

  /**
   * Carries out the queued actions: one batch to the network, one to the TUN side. Packets to multicast
   * groups go to the tap, whose copies to other peers join the actions while this loop runs (hence the index
   * loop: they are sent in the same batch).
   */
  flush(): void {
    const actions = this.actions;
    if (actions.length === 0) return;
    const outbound: Datagram[] = [];
    const inbound: Uint8Array[] = [];
    const groups = this.groups;
    let tapped = false;
    for (let i = 0; i < actions.length; i++) {
      const a = actions[i]!;
      if (a.type === 'send') outbound.push({ data: a.data, endpoint: a.endpoint });
      else if (a.type === 'deliver') {
        if (groups !== undefined && isGroup(a.header)) {
          groups.fromPeer(a.packet, a.header, a.peer, this.clock());
          tapped = true;
        } else if (this.admit === undefined || this.admit(a.packet, a.header, a.peer)) inbound.push(a.packet);
        else this.counters.packetsRefused++;
      }
    }
    actions.length = 0;
    if (outbound.length > 0) {
      this.counters.datagramsOut += outbound.length;
      this.bind.send(outbound);
    }
    if (inbound.length > 0) {
      this.counters.packetsOut += inbound.length;
      this.deliver(inbound);
    }
    if (tapped) groups?.flush();
  }
}
