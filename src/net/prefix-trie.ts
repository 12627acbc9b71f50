/**
 * A longest-prefix-match table from IP prefixes to values of any kind (WireGuard peers today; IPsec and
 * OpenVPN tunnels share the same routing table later). One path-compressed binary trie per address family,
 * in the manner of wireguard-go's allowedips: each node holds a prefix, an optional value and two children
 * chosen by the first bit after the node's prefix.
 */
import { addressLength, maskBytes, type Family, type Prefix } from './ip.js';

interface Node<T> {
  key: Uint8Array;
  bits: number;
  value: T | undefined;
  children: [Node<T> | undefined, Node<T> | undefined];
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

function node<T>(key: Uint8Array, bits: number, value: T | undefined): Node<T> {
  return { key, bits, value, children: [undefined, undefined] };
}

export class PrefixTrie<T> {
  private roots: { 4: Node<T> | undefined; 6: Node<T> | undefined } = { 4: undefined, 6: undefined };
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Sets the value of a prefix; returns the value it replaces, if any. */
  insert(prefix: Prefix, value: T): T | undefined {
    const key = maskBytes(prefix.bytes, prefix.bits);
    const bits = prefix.bits;
    const root = this.roots[prefix.family];
    if (!root) {
      this.roots[prefix.family] = node(key, bits, value);
      this.count++;
      return undefined;
    }
    let cur: Node<T> = root;
    let parent: Node<T> | undefined;
    let dir: 0 | 1 = 0;
    const replace = (n: Node<T>): void => {
      if (parent) parent.children[dir] = n;
      else this.roots[prefix.family] = n;
    };
    for (;;) {
      const common = commonBits(cur.key, key, Math.min(cur.bits, bits));
      if (common === cur.bits && cur.bits === bits) {
        const old = cur.value;
        if (old === undefined) this.count++;
        cur.value = value;
        return old;
      }
      if (common === cur.bits) {
        const d = bitAt(key, cur.bits);
        const child = cur.children[d];
        if (child) {
          parent = cur;
          dir = d;
          cur = child;
          continue;
        }
        cur.children[d] = node(key, bits, value);
      } else if (common === bits) {
        const n = node(key, bits, value);
        n.children[bitAt(cur.key, bits)] = cur;
        replace(n);
      } else {
        const split = node<T>(maskBytes(key, common), common, undefined);
        split.children[bitAt(cur.key, common)] = cur;
        split.children[bitAt(key, common)] = node(key, bits, value);
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
      cur = cur.children[bitAt(key, cur.bits)];
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
      const kids = n.children.filter((c): c is Node<T> => c !== undefined);
      if (kids.length === 2) break;
      const up = path[i - 1];
      const replacement = kids[0];
      if (up) up.children[up.children[0] === n ? 0 : 1] = replacement;
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
      cur = cur.children[bitAt(address, cur.bits)];
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
        if (n.children[1]) stack.push(n.children[1]);
        if (n.children[0]) stack.push(n.children[0]);
      }
    }
  }

  clear(): void {
    this.roots = { 4: undefined, 6: undefined };
    this.count = 0;
  }
}
