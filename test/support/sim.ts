/**
 * Two (or more) devices on a simulated network with a simulated clock: `send` actions are routed to the
 * device owning the destination endpoint, `deliver` actions are collected per device. Loss, capture and
 * address changes are under the test's control.
 */
import { PrivateKey } from '../../src/crypto/keys.js';
import type { Endpoint } from '../../src/net/endpoint.js';
import { parsePrefix, type Prefix } from '../../src/net/ip.js';
import { Device, type Action, type DeviceOptions } from '../../src/wireguard/device.js';
import { seededRandom } from './random.js';

export function prefix(text: string): Prefix {
  const p = parsePrefix(text);
  if (!p.ok) throw new Error(p.error);
  return p.value;
}

export interface Node {
  name: string;
  device: Device;
  key: PrivateKey;
  endpoint: Endpoint;
  delivered: Uint8Array[];
}

export interface Datagram {
  from: Endpoint;
  to: Endpoint;
  data: Uint8Array;
}

export const START = 1_700_000_000_000;

export class Network {
  now = START;
  readonly nodes = new Map<string, Node>();
  /** Every datagram that crossed the network, in order. */
  readonly wire: Datagram[] = [];
  /** Return false to drop a datagram in flight. */
  filter: (d: Datagram) => boolean = () => true;
  private seed = 1;

  add(name: string, address: string, port: number, options: DeviceOptions = {}, key?: PrivateKey): Node {
    const random = seededRandom(this.seed++);
    const k = key ?? PrivateKey.generate(random);
    const node: Node = {
      name,
      key: k,
      device: new Device({ privateKey: k, random, ...options }),
      endpoint: { address, port },
      delivered: [],
    };
    this.nodes.set(name, node);
    return node;
  }

  /** Configures a and b as each other's peers; b's allowed IPs are `bIps` at a, and vice versa. */
  link(a: Node, b: Node, aIps: string[], bIps: string[], extra: { keepalive?: number } = {}): void {
    a.device.setPeer({
      publicKey: b.key.publicKey(),
      endpoint: b.endpoint,
      allowedIps: bIps.map(prefix),
      persistentKeepalive: extra.keepalive ?? 0,
    });
    b.device.setPeer({
      publicKey: a.key.publicKey(),
      endpoint: a.endpoint,
      allowedIps: aIps.map(prefix),
      persistentKeepalive: extra.keepalive ?? 0,
    });
  }

  private owner(e: Endpoint): Node | undefined {
    for (const n of this.nodes.values())
      if (n.endpoint.address === e.address && n.endpoint.port === e.port) return n;
    return undefined;
  }

  /** Runs actions from `source` to quiescence, delivering datagrams (bounded to avoid endless ping-pong). */
  run(source: Node, actions: Action[]): Action[] {
    const all: Action[] = [];
    const queue: [Node, Action][] = actions.map((a) => [source, a]);
    for (let steps = 0; queue.length > 0; steps++) {
      if (steps > 100_000) throw new Error('network did not settle');
      const [node, action] = queue.shift()!;
      all.push(action);
      if (action.type === 'deliver') node.delivered.push(action.packet);
      if (action.type !== 'send') continue;
      const d: Datagram = { from: node.endpoint, to: action.endpoint, data: action.data };
      this.wire.push(d);
      if (!this.filter(d)) continue;
      const target = this.owner(action.endpoint);
      if (!target) continue;
      for (const next of target.device.receive(action.data, node.endpoint, this.now))
        queue.push([target, next]);
    }
    return all;
  }

  send(node: Node, packet: Uint8Array): Action[] {
    return this.run(node, node.device.send(packet, this.now));
  }

  /** Advances the clock to `until` in steps of at most `step` ms, firing timers on every node. */
  advance(ms: number, step = 100): Action[] {
    const all: Action[] = [];
    const until = this.now + ms;
    while (this.now < until) {
      this.now = Math.min(until, this.now + step);
      for (const n of this.nodes.values()) all.push(...this.run(n, n.device.tick(this.now)));
    }
    return all;
  }
}

export function messageType(d: { data: Uint8Array }): number {
  return d.data[0]!;
}
