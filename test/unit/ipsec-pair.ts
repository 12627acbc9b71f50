/**
 * Two IKE cores in one process on a simulated wire with a fake clock: every `send` of one becomes a datagram
 * to the other, and a filter can lose, duplicate or hold messages. The model is strongSwan's
 * exchange_test_helper: both ends of the exchange, no sockets, no sleeping.
 */
import { createHash } from 'node:crypto';

import type { IkeAction } from '../../src/ipsec/actions.js';
import type { IkePeerConfig } from '../../src/ipsec/config.js';
import { IkeCore } from '../../src/ipsec/core.js';
import { selectorFromPrefix } from '../../src/ipsec/traffic-selectors.js';
import type { ChildSaSpec, TrafficSelector } from '../../src/ipsec/child-sa.js';

export const A_ADDR = '192.0.2.1';
export const B_ADDR = '192.0.2.2';

export function ts(prefix: string): TrafficSelector {
  const s = selectorFromPrefix(prefix);
  if (!s) throw new Error(`bad prefix ${prefix}`);
  return s;
}

/** A deterministic random source (SHA-256 in counter mode over a seed). */
export function seededRandom(seed: string): (n: number) => Buffer {
  let counter = 0;
  return (n: number) => {
    const parts: Buffer[] = [];
    let have = 0;
    while (have < n) {
      const b = createHash('sha256').update(`${seed}/${counter++}`).digest();
      parts.push(b);
      have += b.length;
    }
    return Buffer.concat(parts).subarray(0, n);
  };
}

export const PSK = 'correct horse battery staple 42';

export function siteA(over: Partial<IkePeerConfig> = {}): IkePeerConfig {
  return {
    localId: { type: 'fqdn', value: 'a.example' },
    remoteId: { type: 'fqdn', value: 'b.example' },
    psk: PSK,
    ikeProposals: ['aes256gcm16-prfsha256-x25519'],
    espProposals: ['aes256gcm16'],
    localSelectors: [ts('10.1.0.0/16')],
    remoteSelectors: [ts('10.2.0.0/16')],
    mode: 'tunnel',
    ...over,
  };
}

export function siteB(over: Partial<IkePeerConfig> = {}): IkePeerConfig {
  return {
    localId: { type: 'fqdn', value: 'b.example' },
    remoteId: { type: 'fqdn', value: 'a.example' },
    psk: PSK,
    ikeProposals: ['aes256gcm16-prfsha256-x25519'],
    espProposals: ['aes256gcm16'],
    localSelectors: [ts('10.2.0.0/16')],
    remoteSelectors: [ts('10.1.0.0/16')],
    mode: 'tunnel',
    ...over,
  };
}

export function makeCore(config: IkePeerConfig, seed: string): IkeCore {
  const c = IkeCore.create(config, { random: seededRandom(seed) });
  if (!c.ok) throw new Error(`config: ${c.error.field}: ${c.error.message}`);
  return c.value;
}

export interface Delivery {
  readonly from: 'a' | 'b';
  readonly data: Buffer;
  readonly localPort: number;
  readonly remotePort: number;
}

/** What the wire does with one datagram: deliver it, lose it, or deliver it twice. */
export type Fate = 'deliver' | 'lose' | 'duplicate';

export class Pair {
  now = 1_000_000;
  readonly log: { a: IkeAction[]; b: IkeAction[] } = { a: [], b: [] };
  readonly wire: Delivery[] = [];
  filter: (d: Delivery, index: number) => Fate = () => 'deliver';
  /** When set, A sits behind a NAT: B sees A's datagrams from this address, ports 500/4500 mapped to these. */
  natA: { address: string; ports: Record<number, number> } | null = null;
  private sent = 0;

  constructor(
    readonly a: IkeCore,
    readonly b: IkeCore,
  ) {}

  static create(
    a: Partial<IkePeerConfig> = {},
    b: Partial<IkePeerConfig> = {},
    seeds: readonly [string, string] = ['seed-a', 'seed-b'],
  ): Pair {
    return new Pair(makeCore(siteA(a), seeds[0]), makeCore(siteB(b), seeds[1]));
  }

  core(side: 'a' | 'b'): IkeCore {
    return side === 'a' ? this.a : this.b;
  }

  /** Records actions and puts sends on the wire (through the filter). */
  take(side: 'a' | 'b', actions: IkeAction[]): void {
    this.log[side].push(...actions);
    for (const act of actions) {
      if (act.type !== 'send') continue;
      const d: Delivery = {
        from: side,
        data: act.data,
        localPort: act.localPort,
        remotePort: act.remote.port,
      };
      const fate = this.filter(d, this.sent++);
      if (fate === 'lose') continue;
      this.wire.push(d);
      if (fate === 'duplicate') this.wire.push(d);
    }
  }

  initiate(side: 'a' | 'b' = 'a'): void {
    const [me, peer] = side === 'a' ? [A_ADDR, B_ADDR] : [B_ADDR, A_ADDR];
    this.take(
      side,
      this.core(side).initiate({ address: peer, port: 500 }, { address: me, port: 500 }, this.now),
    );
  }

  /** Delivers datagrams until the wire is empty (bounded). */
  run(limit = 100): void {
    for (let i = 0; i < limit && this.wire.length > 0; i++) this.deliver(0);
  }

  /** Delivers the datagram at `index` on the wire (to reorder messages), leaving the others queued. */
  deliver(index: number): void {
    const [d] = this.wire.splice(index, 1);
    if (d === undefined) return;
    const to = d.from === 'a' ? 'b' : 'a';
    let [src, dst] = d.from === 'a' ? [A_ADDR, B_ADDR] : [B_ADDR, A_ADDR];
    let srcPort = d.localPort;
    let dstPort = d.remotePort;
    const nat = this.natA;
    if (nat && d.from === 'a') {
      src = nat.address;
      srcPort = nat.ports[d.localPort] ?? d.localPort;
    } else if (nat) {
      // B answers the mapped address and port; the NAT translates back.
      dst = A_ADDR;
      dstPort = Number(
        Object.keys(nat.ports).find((k) => nat.ports[Number(k)] === d.remotePort) ?? d.remotePort,
      );
    }
    this.take(
      to,
      this.core(to).receive(
        {
          data: d.data,
          remote: { address: src, port: srcPort },
          local: { address: dst, port: dstPort },
        },
        this.now,
      ),
    );
  }

  /** Advances the clock by `ms`, firing every deadline on the way, and runs the wire after each. */
  advance(ms: number): void {
    const end = this.now + ms;
    for (let i = 0; i < 10_000; i++) {
      const next = [this.a.nextDeadline(), this.b.nextDeadline()].filter(
        (t): t is number => t !== null && t <= end,
      );
      if (next.length === 0) break;
      this.now = Math.max(this.now, Math.min(...next));
      this.take('a', this.a.tick(this.now));
      this.take('b', this.b.tick(this.now));
      this.run();
    }
    this.now = end;
  }

  /** The CHILD SAs a side has up now (reported up and not yet down), oldest first. */
  liveChildren(side: 'a' | 'b'): ChildSaSpec[] {
    const live = new Map<number, ChildSaSpec>();
    for (const x of this.log[side]) {
      if (x.type === 'child-sa-up') live.set(x.spec.inboundSpi, x.spec);
      else if (x.type === 'child-sa-down') live.delete(x.inboundSpi);
    }
    return [...live.values()];
  }

  /** The IKE SAs a side has up now, as "spiI/spiR". */
  liveIke(side: 'a' | 'b'): string[] {
    const live = new Set<string>();
    for (const x of this.log[side]) {
      if (x.type === 'ike-sa-up') live.add(`${x.spiI}/${x.spiR}`);
      else if (x.type === 'ike-sa-down') live.delete(`${x.spiI}/${x.spiR}`);
    }
    return [...live];
  }

  /** The exchange type of a datagram on the wire (after the non-ESP marker on port 4500), or -1. */
  static exchangeOf(d: Delivery): { exchange: number; response: boolean } | null {
    const skip = d.localPort === 4500 ? 4 : 0;
    if (d.data.length < skip + 28) return null;
    return { exchange: d.data[skip + 18]!, response: (d.data[skip + 19]! & 0x20) !== 0 };
  }

  of<T extends IkeAction['type']>(side: 'a' | 'b', type: T): Extract<IkeAction, { type: T }>[] {
    return this.log[side].filter((x): x is Extract<IkeAction, { type: T }> => x.type === type);
  }
}
