/**
 * A longest-prefix-match table from IP prefixes to values of any kind (WireGuard peers today; IPsec and
 * OpenVPN tunnels share the same routing table later). One path-compressed binary trie per address family,
 * in the manner of wireguard-go's allowedips: each node holds a prefix, an optional value and two children
 * chosen by the first bit after the node's prefix.
 */
import { addressLength, maskBytes, type Family, type Prefix } from './ip.js';

/**
 * One node: a prefix (the first `bits` bits of `key`), an optional value and two children chosen by the
 * bit after the prefix. A node carries no array of its own: with 10,000 members a gateway holds ~27,000
 * nodes across its tables, and each array or key copy would cost more than the node itself.
 */
class Node<T> {
  zero: Node<T> | undefined = undefined;
  one: Node<T> | undefined = undefined;
  constructor(
    /**
     * Only the first `bits` bits are the node's; the rest are whatever the key's owner holds there. A node
     * with a value keeps a key whose host bits are zero (entries() hands it out); a node made to split two
     * others borrows the key of one of them instead of a masked copy.
     */
    public key: Uint8Array,
    readonly bits: number,
    public value: T | undefined,
  ) {}

  child(bit: 0 | 1): Node<T> | undefined {
    return bit === 0 ? this.zero : this.one;
  }

  setChild(bit: 0 | 1, n: Node<T> | undefined): void {
    if (bit === 0) this.zero = n;
    else this.one = n;
  }
}

function bitAt(key: Uint8Array, bit: number): 0 | 1 {
  return ((key[bit >> 3]! >> (7 - (bit & 7))) & 1) as 0 | 1;
}

/** Number of leading bits a and b share, at most `limit`. */
function commonBits(a: Uint8Array, b: Uint8Array, limit: number): number {
  let n = 0;
  for (let i = 0; n < limit; i++) {
    const x = a[i]! ^ b[i]!;
    if (x === 0) {
      n += 8;
      continue;
    }
    n += Math.clz32(x) - 24;
    break;
  }
  return Math.min(n, limit);
}

/** Whether the bits of `bytes` after the first `bits` are all zero. */
function isMasked(bytes: Uint8Array, bits: number): boolean {
  for (let i = bits >> 3; i < bytes.length; i++) {
    const keep = Math.max(0, bits - i * 8);
    if ((bytes[i]! & (0xff >> keep)) !== 0) return false;
  }
  return true;
}

export class PrefixTrie<T> {
  private roots: { 4: Node<T> | undefined; 6: Node<T> | undefined } = { 4: undefined, 6: undefined };
  private count = 0;

  get size(): number {
    return this.count;
  }

  /**
   * Sets the value of a prefix; returns the value it replaces, if any. The prefix's bytes are kept, not
   * copied (prefixes are not changed once made).
   */
  insert(prefix: Prefix, value: T): T | undefined {
    // A prefix's host bits are zero already (ip.ts): its bytes are kept as they are, not copied.
    const key = isMasked(prefix.bytes, prefix.bits) ? prefix.bytes : maskBytes(prefix.bytes, prefix.bits);
    const bits = prefix.bits;
    const root = this.roots[prefix.family];
    if (!root) {
      this.roots[prefix.family] = new Node(key, bits, value);
      this.count++;
      return undefined;
    }
    let cur: Node<T> = root;
    let parent: Node<T> | undefined;
    let dir: 0 | 1 = 0;
    const replace = (n: Node<T>): void => {
      if (parent) parent.setChild(dir, n);
      else this.roots[prefix.family] = n;
    };
    for (;;) {
      const common = commonBits(cur.key, key, Math.min(cur.bits, bits));
      if (common === cur.bits && cur.bits === bits) {
        const old = cur.value;
        if (old === undefined) this.count++;
        // A node that only split others may borrow a key with host bits set: a value's node keeps its own.
        cur.key = key;
        cur.value = value;
        return old;
      }
      if (common === cur.bits) {
        const d = bitAt(key, cur.bits);
        const child = cur.child(d);
        if (child) {
          parent = cur;
          dir = d;
          cur = child;
          continue;
        }
        cur.setChild(d, new Node(key, bits, value));
      } else if (common === bits) {
        const n = new Node(key, bits, value);
        n.setChild(bitAt(cur.key, bits), cur);
        replace(n);
      } else {
        const split = new Node<T>(key, common, undefined);
        split.setChild(bitAt(cur.key, common), cur);
        split.setChild(bitAt(key, common), new Node(key, bits, value));
        replace(split);
      }
      this.count++;
      return undefined;
    }
  }

  /** Removes a prefix if it is present with `expected` (or any value when omitted); returns whether it did. */
  remove(prefix: Prefix, expected?: T): boolean {
    const key = maskBytes(prefix.bytes, prefix.bits);
    const path: Node<T>[] = [];
    let cur = this.roots[prefix.family];
    while (cur && cur.bits <= prefix.bits && commonBits(cur.key, key, cur.bits) === cur.bits) {
      path.push(cur);
      if (cur.bits === prefix.bits) break;
      cur = cur.child(bitAt(key, cur.bits));
    }
    const target = path[path.length - 1];
    if (!target || target.bits !== prefix.bits || target.value === undefined) return false;
    if (expected !== undefined && target.value !== expected) return false;
    target.value = undefined;
    this.count--;
    // Compact: drop valueless nodes with fewer than two children, walking back towards the root.
    for (let i = path.length - 1; i >= 0; i--) {
      const n = path[i]!;
      if (n.value !== undefined) break;
      if (n.zero && n.one) break;
      const up = path[i - 1];
      const replacement = n.zero ?? n.one;
      if (up) up.setChild(up.zero === n ? 0 : 1, replacement);
      else this.roots[prefix.family] = replacement;
      if (replacement) break;
    }
    return true;
  }

  /** The value of the longest prefix containing `address` (4 or 16 bytes), if any. */
  lookup(family: Family, address: Uint8Array): T | undefined {
    const max = addressLength(family) * 8;
    let cur = this.roots[family];
    let best: T | undefined;
    while (cur) {
      if (commonBits(cur.key, address, cur.bits) < cur.bits) break;
      if (cur.value !== undefined) best = cur.value;
      if (cur.bits >= max) break;
      cur = bitAt(address, cur.bits) === 0 ? cur.zero : cur.one;
    }
    return best;
  }

  /** Every prefix and its value, IPv4 first, in address order. */
  *entries(): Generator<[Prefix, T]> {
    for (const family of [4, 6] as const) {
      const stack: Node<T>[] = [];
      const root = this.roots[family];
      if (root) stack.push(root);
      while (stack.length > 0) {
        const n = stack.pop()!;
        if (n.value !== undefined) yield [{ family, bytes: n.key, bits: n.bits }, n.value];
        if (n.one) stack.push(n.one);
        if (n.zero) stack.push(n.zero);
      }
    }
  }

  clear(): void {
    this.roots = { 4: undefined, 6: undefined };
    this.count = 0;
  }
}
