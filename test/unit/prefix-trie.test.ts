/**
 * The longest-prefix-match table (src/net/prefix-trie.ts): hand-built cases for nesting, divergence at every
 * kind of bit, replacement, masking, removal and compaction, then a seeded differential run against a
 * brute-force linear scan.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatPrefix, parseAddress, parsePrefix, type Family, type Prefix } from '../../src/net/ip.js';
import { PrefixTrie } from '../../src/net/prefix-trie.js';
import { seededRandom } from '../support/random.js';

function p(text: string): Prefix {
  const r = parsePrefix(text);
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

function a(text: string): Uint8Array {
  const r = parseAddress(text);
  if (!r.ok) throw new Error(r.error);
  return r.value.bytes;
}

function familyOf(text: string): Family {
  return text.includes(':') ? 6 : 4;
}

function look<T>(t: PrefixTrie<T>, address: string): T | undefined {
  return t.lookup(familyOf(address), a(address));
}

function listed<T>(t: PrefixTrie<T>): [string, T][] {
  return [...t.entries()].map(([prefix, value]) => [formatPrefix(prefix), value]);
}

function build(prefixes: string[]): PrefixTrie<string> {
  const t = new PrefixTrie<string>();
  for (const x of prefixes) assert.equal(t.insert(p(x), x), undefined, `first insert of ${x}`);
  return t;
}

/** Every permutation of a small list (for insertion-order independence). */
function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs.slice()];
  const out: T[][] = [];
  xs.forEach((x, i) => {
    for (const rest of permutations([...xs.slice(0, i), ...xs.slice(i + 1)])) out.push([x, ...rest]);
  });
  return out;
}

/**
 * White-box: the shape of the trie, read through its private `roots` field. A path-compressed trie must not
 * keep valueless nodes with fewer than two children, so it never holds more than 2n − 1 nodes for n entries.
 */
interface TrieNode {
  bits: number;
  value: unknown;
  zero: TrieNode | undefined;
  one: TrieNode | undefined;
}

function shape(t: PrefixTrie<unknown>): { nodes: number; entries: number; slack: number } {
  const roots = (t as unknown as { roots: Record<Family, TrieNode | undefined> }).roots;
  assert.ok(roots && typeof roots === 'object', 'PrefixTrie keeps its per-family roots in `roots`');
  let nodes = 0;
  let entries = 0;
  let slack = 0;
  const stack = [roots[4], roots[6]].filter((n): n is TrieNode => n !== undefined);
  while (stack.length > 0) {
    const n = stack.pop()!;
    nodes++;
    const kids = [n.zero, n.one].filter((c): c is TrieNode => c !== undefined);
    if (n.value !== undefined) entries++;
    else if (kids.length < 2) slack++;
    for (const k of kids) {
      assert.ok(k.bits > n.bits, 'children are longer prefixes than their parent');
      stack.push(k);
    }
  }
  return { nodes, entries, slack };
}

describe('PrefixTrie: empty table', () => {
  it('has size 0, no entries and matches nothing in either family', () => {
    const t = new PrefixTrie<number>();
    assert.equal(t.size, 0);
    assert.deepEqual([...t.entries()], []);
    assert.equal(look(t, '0.0.0.0'), undefined);
    assert.equal(look(t, '255.255.255.255'), undefined);
    assert.equal(look(t, '::'), undefined);
    assert.equal(look(t, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), undefined);
    assert.equal(t.remove(p('0.0.0.0/0')), false);
    assert.equal(t.remove(p('::/0')), false);
    assert.equal(t.size, 0);
  });
});

describe('PrefixTrie: IPv4 longest-prefix match', () => {
  const nested = ['0.0.0.0/0', '10.0.0.0/8', '10.1.0.0/16', '10.1.2.0/24', '10.1.2.3/32'];
  const expectations: [string, string][] = [
    ['10.1.2.3', '10.1.2.3/32'],
    ['10.1.2.4', '10.1.2.0/24'],
    ['10.1.2.2', '10.1.2.0/24'],
    ['10.1.2.255', '10.1.2.0/24'],
    ['10.1.2.0', '10.1.2.0/24'],
    ['10.1.3.3', '10.1.0.0/16'],
    ['10.1.255.255', '10.1.0.0/16'],
    ['10.1.0.0', '10.1.0.0/16'],
    ['10.2.2.3', '10.0.0.0/8'],
    ['10.0.0.0', '10.0.0.0/8'],
    ['10.255.255.255', '10.0.0.0/8'],
    ['11.1.2.3', '0.0.0.0/0'],
    ['9.255.255.255', '0.0.0.0/0'],
    ['0.0.0.0', '0.0.0.0/0'],
    ['255.255.255.255', '0.0.0.0/0'],
  ];

  it('the most specific of nested /0, /8, /16, /24, /32 wins, whatever the insertion order', () => {
    const orders = permutations(nested);
    assert.equal(orders.length, 120);
    for (const order of orders) {
      const t = build(order);
      assert.equal(t.size, 5);
      for (const [addr, want] of expectations) {
        assert.equal(look(t, addr), want, `${addr} with insertion order ${order.join(' ')}`);
      }
      assert.deepEqual(
        listed(t).map(([k]) => k),
        nested,
      );
    }
  });

  it('without a default route, addresses outside every prefix match nothing', () => {
    const t = build(nested.slice(1));
    assert.equal(look(t, '11.0.0.0'), undefined);
    assert.equal(look(t, '9.255.255.255'), undefined);
    assert.equal(look(t, '0.0.0.0'), undefined);
    assert.equal(look(t, '10.1.2.3'), '10.1.2.3/32');
    assert.equal(look(t, '10.9.9.9'), '10.0.0.0/8');
  });

  it('a /0 default route alone matches every address', () => {
    const t = build(['0.0.0.0/0']);
    for (const addr of ['0.0.0.0', '1.2.3.4', '127.0.0.1', '128.0.0.0', '255.255.255.255']) {
      assert.equal(look(t, addr), '0.0.0.0/0');
    }
  });

  it('a /32 host route matches only its own address', () => {
    const t = build(['192.0.2.1/32']);
    assert.equal(look(t, '192.0.2.1'), '192.0.2.1/32');
    assert.equal(look(t, '192.0.2.0'), undefined);
    assert.equal(look(t, '192.0.2.3'), undefined);
    assert.equal(look(t, '64.0.2.1'), undefined);
  });

  it('siblings that diverge at bit 0 (0.0.0.0/1 and 128.0.0.0/1)', () => {
    for (const order of permutations(['0.0.0.0/1', '128.0.0.0/1'])) {
      const t = build(order);
      assert.equal(look(t, '0.0.0.0'), '0.0.0.0/1');
      assert.equal(look(t, '127.255.255.255'), '0.0.0.0/1');
      assert.equal(look(t, '128.0.0.0'), '128.0.0.0/1');
      assert.equal(look(t, '255.255.255.255'), '128.0.0.0/1');
      assert.deepEqual(listed(t), [
        ['0.0.0.0/1', '0.0.0.0/1'],
        ['128.0.0.0/1', '128.0.0.0/1'],
      ]);
    }
  });

  it('host routes that diverge only in the last bit, under a /31 and a /30', () => {
    for (const order of permutations(['10.0.0.2/32', '10.0.0.3/32', '10.0.0.2/31', '10.0.0.0/30'])) {
      const t = build(order);
      assert.equal(look(t, '10.0.0.2'), '10.0.0.2/32');
      assert.equal(look(t, '10.0.0.3'), '10.0.0.3/32');
      assert.equal(look(t, '10.0.0.1'), '10.0.0.0/30');
      assert.equal(look(t, '10.0.0.0'), '10.0.0.0/30');
      assert.equal(look(t, '10.0.0.4'), undefined);
    }
    for (const order of permutations(['10.0.0.0/32', '10.0.0.1/32'])) {
      const t = build(order);
      assert.equal(look(t, '10.0.0.0'), '10.0.0.0/32');
      assert.equal(look(t, '10.0.0.1'), '10.0.0.1/32');
      assert.equal(look(t, '10.0.0.2'), undefined);
      assert.equal(look(t, '138.0.0.0'), undefined);
    }
  });

  it('siblings that diverge in the middle of a byte leave no value at their branch point', () => {
    // 10.0.0.0/24 and 10.0.1.0/24 differ at bit 23: the split node 10.0.0.0/23 carries no value.
    const t = build(['10.0.0.0/24', '10.0.1.0/24']);
    assert.equal(t.size, 2);
    assert.equal(look(t, '10.0.0.77'), '10.0.0.0/24');
    assert.equal(look(t, '10.0.1.77'), '10.0.1.0/24');
    assert.equal(look(t, '10.0.2.0'), undefined);
    assert.equal(t.remove(p('10.0.0.0/23')), false, 'the branch point is not an entry');
    assert.equal(t.size, 2);
    // Giving the branch point a value makes it an entry.
    assert.equal(t.insert(p('10.0.0.0/23'), '10.0.0.0/23'), undefined);
    assert.equal(t.size, 3);
    assert.equal(look(t, '10.0.0.1'), '10.0.0.0/24');
    assert.equal(look(t, '10.0.1.1'), '10.0.1.0/24');
    assert.equal(look(t, '10.0.2.0'), undefined);
    assert.deepEqual(
      listed(t).map(([k]) => k),
      ['10.0.0.0/23', '10.0.0.0/24', '10.0.1.0/24'],
    );
  });

  it('prefixes that are not byte aligned: /9, /23, /1, /7, /31', () => {
    const t = build([
      '10.0.0.0/8',
      '10.128.0.0/9',
      '192.168.2.0/23',
      '2.0.0.0/7',
      '128.0.0.0/1',
      '172.16.0.4/31',
    ]);
    assert.equal(look(t, '10.127.255.255'), '10.0.0.0/8');
    assert.equal(look(t, '10.128.0.0'), '10.128.0.0/9');
    assert.equal(look(t, '10.255.255.255'), '10.128.0.0/9');
    assert.equal(look(t, '192.168.2.0'), '192.168.2.0/23');
    assert.equal(look(t, '192.168.3.255'), '192.168.2.0/23');
    assert.equal(look(t, '192.168.1.255'), '128.0.0.0/1');
    assert.equal(look(t, '192.168.4.0'), '128.0.0.0/1');
    assert.equal(look(t, '2.0.0.0'), '2.0.0.0/7');
    assert.equal(look(t, '3.255.255.255'), '2.0.0.0/7');
    assert.equal(look(t, '1.255.255.255'), undefined);
    assert.equal(look(t, '4.0.0.0'), undefined);
    assert.equal(look(t, '127.255.255.255'), undefined);
    assert.equal(look(t, '172.16.0.4'), '172.16.0.4/31');
    assert.equal(look(t, '172.16.0.5'), '172.16.0.4/31');
    assert.equal(look(t, '172.16.0.6'), '128.0.0.0/1');
    assert.equal(look(t, '172.16.0.3'), '128.0.0.0/1');
  });
});

describe('PrefixTrie: IPv6 longest-prefix match', () => {
  const nested = [
    '::/0',
    '2001::/16',
    '2001:db8::/32',
    '2001:db8:1::/48',
    '2001:db8:1:2::/64',
    '2001:db8:1:2::1/128',
  ];
  const expectations: [string, string | undefined][] = [
    ['2001:db8:1:2::1', '2001:db8:1:2::1/128'],
    ['2001:db8:1:2::2', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::', '2001:db8:1:2::/64'],
    ['2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:db8:1:2::/64'],
    ['2001:db8:1:3::1', '2001:db8:1::/48'],
    ['2001:db8:2::1', '2001:db8::/32'],
    ['2001:db9::1', '2001::/16'],
    ['2001:ffff::', '2001::/16'],
    ['2002::1', '::/0'],
    ['::', '::/0'],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '::/0'],
  ];

  it('the most specific of nested /0, /16, /32, /48, /64, /128 wins, whatever the insertion order', () => {
    for (const order of permutations(nested)) {
      const t = build(order);
      assert.equal(t.size, 6);
      for (const [addr, want] of expectations) {
        assert.equal(look(t, addr), want, `${addr} with insertion order ${order.join(' ')}`);
      }
      assert.deepEqual(
        listed(t).map(([k]) => k),
        nested,
      );
    }
  });

  it('siblings that diverge at bit 0 and at bit 127', () => {
    const t = build(['::/1', '8000::/1', 'fd00::/128', 'fd00::1/128']);
    assert.equal(look(t, '::'), '::/1');
    assert.equal(look(t, '7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), '::/1');
    assert.equal(look(t, '8000::'), '8000::/1');
    assert.equal(look(t, 'fd00::'), 'fd00::/128');
    assert.equal(look(t, 'fd00::1'), 'fd00::1/128');
    assert.equal(look(t, 'fd00::2'), '8000::/1');
    assert.equal(look(t, 'fd00::8000:0:0:0'), '8000::/1');
  });

  it('prefixes that are not byte aligned: /127, /121, /65, /33, /7', () => {
    const t = build(['fd00::/127', 'fd00::80/121', 'fd00:0:0:0:8000::/65', 'fd00:0:8000::/33', 'fc00::/7']);
    assert.equal(look(t, 'fd00::'), 'fd00::/127');
    assert.equal(look(t, 'fd00::1'), 'fd00::/127');
    assert.equal(look(t, 'fd00::2'), 'fc00::/7');
    assert.equal(look(t, 'fd00::80'), 'fd00::80/121');
    assert.equal(look(t, 'fd00::ff'), 'fd00::80/121');
    assert.equal(look(t, 'fd00::7f'), 'fc00::/7');
    assert.equal(look(t, 'fd00::100'), 'fc00::/7');
    assert.equal(look(t, 'fd00::8000:0:0:1'), 'fd00:0:0:0:8000::/65');
    assert.equal(look(t, 'fd00::7fff:ffff:ffff:ffff'), 'fc00::/7');
    assert.equal(look(t, 'fd00:0:8000::1'), 'fd00:0:8000::/33');
    assert.equal(look(t, 'fd00:0:ffff::'), 'fd00:0:8000::/33');
    assert.equal(look(t, 'fd00:0:7fff::'), 'fc00::/7');
    assert.equal(look(t, 'fdff::'), 'fc00::/7');
    assert.equal(look(t, 'fe00::'), undefined);
    assert.equal(look(t, 'fbff::'), undefined);
  });
});

describe('PrefixTrie: insert', () => {
  it('returns the previous value and does not change size when replacing', () => {
    const t = new PrefixTrie<string>();
    assert.equal(t.insert(p('10.0.0.0/8'), 'a'), undefined);
    assert.equal(t.size, 1);
    assert.equal(t.insert(p('10.0.0.0/8'), 'b'), 'a');
    assert.equal(t.size, 1);
    assert.equal(t.insert(p('10.0.0.0/8'), 'c'), 'b');
    assert.equal(t.size, 1);
    assert.equal(look(t, '10.1.1.1'), 'c');
    assert.equal(t.insert(p('10.0.0.0/16'), 'd'), undefined);
    assert.equal(t.size, 2);
    assert.equal(t.insert(p('fd00::/8'), 'e'), undefined);
    assert.equal(t.size, 3);
    assert.equal(t.insert(p('fd00::/8'), 'f'), 'e');
    assert.equal(t.size, 3);
    assert.deepEqual(listed(t), [
      ['10.0.0.0/8', 'c'],
      ['10.0.0.0/16', 'd'],
      ['fd00::/8', 'f'],
    ]);
  });

  it('masks host bits: 10.1.2.3/8 is stored as 10.0.0.0/8', () => {
    const t = new PrefixTrie<string>();
    const raw: Prefix = { family: 4, bytes: Uint8Array.of(10, 1, 2, 3), bits: 8 };
    assert.equal(t.insert(raw, 'x'), undefined);
    assert.deepEqual(listed(t), [['10.0.0.0/8', 'x']]);
    const [entry] = [...t.entries()];
    assert.deepEqual([...entry![0].bytes], [10, 0, 0, 0]);
    assert.deepEqual([...raw.bytes], [10, 1, 2, 3], 'the caller’s bytes are not modified');
    assert.equal(look(t, '10.200.0.1'), 'x');
    assert.equal(look(t, '11.0.0.0'), undefined);
    // The same prefix written with different host bits is the same key.
    assert.equal(t.insert({ family: 4, bytes: Uint8Array.of(10, 255, 255, 255), bits: 8 }, 'y'), 'x');
    assert.equal(t.size, 1);
    assert.equal(t.remove({ family: 4, bytes: Uint8Array.of(10, 9, 9, 9), bits: 8 }), true);
    assert.equal(t.size, 0);
  });

  it('masks host bits of IPv6 prefixes not on a byte boundary', () => {
    const t = new PrefixTrie<string>();
    const bytes = new Uint8Array(16).fill(0xff);
    t.insert({ family: 6, bytes, bits: 13 }, 'x');
    assert.deepEqual(listed(t), [['fff8::/13', 'x']]);
    assert.equal(look(t, 'fff8::'), 'x');
    assert.equal(look(t, 'fff0::'), undefined);
  });
});

describe('PrefixTrie: remove', () => {
  it('removes with and without an expected value; a wrong expected value removes nothing', () => {
    const t = build(['10.0.0.0/8', '10.1.0.0/16', 'fd00::/8']);
    assert.equal(t.remove(p('10.0.0.0/8'), 'nope'), false);
    assert.equal(t.size, 3);
    assert.equal(look(t, '10.2.0.0'), '10.0.0.0/8');
    assert.equal(t.remove(p('10.0.0.0/8'), '10.0.0.0/8'), true);
    assert.equal(t.size, 2);
    assert.equal(look(t, '10.2.0.0'), undefined);
    assert.equal(look(t, '10.1.0.0'), '10.1.0.0/16');
    assert.equal(t.remove(p('10.0.0.0/8')), false, 'already gone');
    assert.equal(t.remove(p('10.1.0.0/16')), true);
    assert.equal(t.size, 1);
    assert.equal(look(t, '10.1.0.0'), undefined);
    assert.equal(look(t, 'fd00::1'), 'fd00::/8');
    assert.deepEqual(listed(t), [['fd00::/8', 'fd00::/8']]);
  });

  it('compares the expected value by identity', () => {
    const t = new PrefixTrie<{ name: string }>();
    const peer = { name: 'a' };
    t.insert(p('10.0.0.0/8'), peer);
    assert.equal(t.remove(p('10.0.0.0/8'), { name: 'a' }), false);
    assert.equal(t.size, 1);
    assert.equal(t.remove(p('10.0.0.0/8'), peer), true);
    assert.equal(t.size, 0);
  });

  it('does not remove a prefix that is only covered by, or covers, an entry', () => {
    const t = build(['10.1.0.0/16']);
    assert.equal(t.remove(p('10.0.0.0/8')), false);
    assert.equal(t.remove(p('10.1.2.0/24')), false);
    assert.equal(t.remove(p('10.1.0.0/17')), false);
    assert.equal(t.remove(p('10.1.0.0/15')), false);
    assert.equal(t.remove(p('10.1.0.0/32')), false);
    assert.equal(t.remove(p('::/0')), false);
    assert.equal(t.remove(p('a01::/16')), false, 'same leading bytes, other family');
    assert.equal(t.size, 1);
    assert.equal(look(t, '10.1.255.255'), '10.1.0.0/16');
  });

  it('compacts: after each removal, in every order, all remaining prefixes still match', () => {
    const all = ['0.0.0.0/0', '10.0.0.0/8', '10.0.0.0/24', '10.0.1.0/24', '10.0.0.0/23', '10.0.1.128/25'];
    const probes = [
      '10.0.0.1',
      '10.0.1.1',
      '10.0.1.129',
      '10.0.2.0',
      '10.200.0.0',
      '11.0.0.0',
      '10.0.0.0',
      '10.0.1.255',
    ];
    const brute = (live: string[], addr: string): string | undefined => {
      let best: Prefix | undefined;
      for (const x of live) {
        const q = p(x);
        const masked = p(`${addr}/${q.bits}`);
        if (formatPrefix(masked) === formatPrefix(q) && (!best || q.bits > best.bits)) best = q;
      }
      return best ? formatPrefix(best) : undefined;
    };
    for (const removal of permutations(all)) {
      const t = build(all);
      const live = new Set(all);
      for (const x of removal) {
        assert.equal(t.remove(p(x), x), true, `remove ${x} in order ${removal.join(' ')}`);
        live.delete(x);
        assert.equal(t.size, live.size);
        for (const probe of probes) {
          assert.equal(
            look(t, probe),
            brute([...live], probe),
            `${probe} after removing ${x} (${removal.join(' ')})`,
          );
        }
        assert.deepEqual(
          listed(t)
            .map(([k]) => k)
            .sort(),
          [...live].sort(),
        );
      }
      assert.equal(t.size, 0);
      assert.deepEqual([...t.entries()], []);
      // The emptied table is fully usable again.
      assert.equal(t.insert(p('10.0.1.0/24'), 'again'), undefined);
      assert.equal(look(t, '10.0.1.9'), 'again');
      assert.equal(look(t, '10.0.0.9'), undefined);
    }
  });

  it('leaves no valueless node with fewer than two children behind', () => {
    const t = build(['10.0.0.0/24', '10.0.1.0/24']);
    assert.deepEqual(shape(t), { nodes: 3, entries: 2, slack: 0 }, 'two leaves under a valueless /23');
    assert.equal(t.remove(p('10.0.0.0/24')), true);
    assert.deepEqual(shape(t), { nodes: 1, entries: 1, slack: 0 }, 'the branch point goes with the sibling');
    const u = build(['10.0.0.0/8', '10.1.0.0/16', '10.2.0.0/16', '10.1.1.0/24']);
    assert.equal(u.remove(p('10.0.0.0/8')), true);
    assert.equal(u.remove(p('10.1.0.0/16')), true);
    assert.deepEqual(shape(u), { nodes: 3, entries: 2, slack: 0 });
    assert.equal(u.remove(p('10.2.0.0/16')), true);
    assert.deepEqual(shape(u), { nodes: 1, entries: 1, slack: 0 });
    assert.equal(u.remove(p('10.1.1.0/24')), true);
    assert.deepEqual(shape(u), { nodes: 0, entries: 0, slack: 0 });
  });

  it('removing a parent keeps both children reachable through the now valueless branch', () => {
    const t = build(['10.0.0.0/23', '10.0.0.0/24', '10.0.1.0/24']);
    assert.equal(t.remove(p('10.0.0.0/23')), true);
    assert.equal(look(t, '10.0.0.5'), '10.0.0.0/24');
    assert.equal(look(t, '10.0.1.5'), '10.0.1.0/24');
    assert.equal(t.remove(p('10.0.0.0/24')), true);
    assert.equal(look(t, '10.0.0.5'), undefined);
    assert.equal(look(t, '10.0.1.5'), '10.0.1.0/24');
    // A new sibling under the compacted tree still branches correctly.
    t.insert(p('10.0.0.128/25'), '10.0.0.128/25');
    assert.equal(look(t, '10.0.0.200'), '10.0.0.128/25');
    assert.equal(look(t, '10.0.0.100'), undefined);
    assert.equal(look(t, '10.0.1.100'), '10.0.1.0/24');
  });
});

describe('PrefixTrie: keys', () => {
  it("keeps a prefix's bytes without copying them, and masks a prefix given with host bits set", () => {
    const t = new PrefixTrie<string>();
    const host = p('10.0.0.7/32');
    t.insert(host, 'host');
    assert.equal([...t.entries()][0]![0].bytes, host.bytes, 'the same array, not a copy');
    t.insert({ family: 4, bytes: a('10.1.2.3'), bits: 16 }, 'net');
    assert.deepEqual(listed(t), [
      ['10.0.0.7/32', 'host'],
      ['10.1.0.0/16', 'net'],
    ]);
    assert.equal(look(t, '10.1.200.1'), 'net');
  });

  it('a value set where two prefixes branched lists its own masked prefix, not the key it borrowed', () => {
    for (const order of permutations(['10.0.0.1/32', '10.0.0.0/32', '10.0.0.3/32'])) {
      const t = build(order);
      // 10.0.0.0/30 and 10.0.0.0/31 are branch points made from the hosts' keys.
      t.insert(p('10.0.0.0/31'), '10.0.0.0/31');
      t.insert(p('10.0.0.0/30'), '10.0.0.0/30');
      assert.deepEqual(
        listed(t).map(([prefix]) => prefix),
        ['10.0.0.0/30', '10.0.0.0/31', '10.0.0.0/32', '10.0.0.1/32', '10.0.0.3/32'],
        order.join(' '),
      );
      assert.equal(look(t, '10.0.0.2'), '10.0.0.0/30');
      assert.equal(t.remove(p('10.0.0.1/32')), true);
      assert.equal(look(t, '10.0.0.1'), '10.0.0.0/31');
    }
  });
});

describe('PrefixTrie: entries() and clear()', () => {
  it('yields exactly the live prefixes, IPv4 first, in address order', () => {
    const t = build([
      'fd00::1/128',
      '10.0.1.0/24',
      '::/0',
      '192.168.0.0/16',
      '10.0.0.0/8',
      'fd00::/8',
      '0.0.0.0/0',
      '10.0.0.0/24',
    ]);
    t.remove(p('10.0.0.0/24'));
    assert.deepEqual(listed(t), [
      ['0.0.0.0/0', '0.0.0.0/0'],
      ['10.0.0.0/8', '10.0.0.0/8'],
      ['10.0.1.0/24', '10.0.1.0/24'],
      ['192.168.0.0/16', '192.168.0.0/16'],
      ['::/0', '::/0'],
      ['fd00::/8', 'fd00::/8'],
      ['fd00::1/128', 'fd00::1/128'],
    ]);
    for (const [prefix] of t.entries()) assert.equal(prefix.bytes.length, prefix.family === 4 ? 4 : 16);
    assert.equal(t.size, 7);
  });

  it('clear() empties both families', () => {
    const t = build(['10.0.0.0/8', 'fd00::/8']);
    t.clear();
    assert.equal(t.size, 0);
    assert.deepEqual([...t.entries()], []);
    assert.equal(look(t, '10.0.0.1'), undefined);
    assert.equal(look(t, 'fd00::1'), undefined);
    assert.equal(t.insert(p('10.0.0.0/8'), 'x'), undefined);
    assert.equal(t.size, 1);
  });
});

describe('PrefixTrie: address families are independent', () => {
  it('an IPv4 default route does not match IPv6 and vice versa', () => {
    const t = build(['0.0.0.0/0']);
    assert.equal(look(t, '::'), undefined);
    assert.equal(look(t, '::ffff:10.0.0.1'), undefined);
    t.insert(p('::/0'), '::/0');
    assert.equal(look(t, '1.2.3.4'), '0.0.0.0/0');
    assert.equal(look(t, '::1'), '::/0');
    assert.equal(t.remove(p('0.0.0.0/0')), true);
    assert.equal(look(t, '1.2.3.4'), undefined);
    assert.equal(look(t, '::1'), '::/0');
    assert.equal(t.size, 1);
  });

  it('prefixes with identical leading bytes in the two families are distinct keys', () => {
    const t = new PrefixTrie<string>();
    assert.equal(t.insert(p('10.0.0.0/8'), 'v4'), undefined);
    assert.equal(t.insert(p('a00::/8'), 'v6'), undefined);
    assert.equal(t.size, 2);
    assert.equal(t.lookup(4, Uint8Array.of(10, 1, 2, 3)), 'v4');
    const v6 = new Uint8Array(16);
    v6.set([10, 1, 2, 3]);
    assert.equal(t.lookup(6, v6), 'v6');
    assert.equal(t.remove(p('a00::/8'), 'v4'), false);
    assert.equal(t.remove(p('10.0.0.0/8'), 'v6'), false);
    assert.equal(t.remove(p('a00::/8'), 'v6'), true);
    assert.equal(t.lookup(4, Uint8Array.of(10, 1, 2, 3)), 'v4');
    assert.equal(t.lookup(6, v6), undefined);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Differential test against a brute-force table
// ---------------------------------------------------------------------------------------------------------

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

function keyOf(prefix: Prefix): string {
  return `${prefix.family}/${hex(prefix.bytes)}/${prefix.bits}`;
}

/** Whether the first `bits` bits of `address` equal those of `prefix`. */
function contains(prefix: Uint8Array, bits: number, address: Uint8Array): boolean {
  const whole = bits >> 3;
  for (let i = 0; i < whole; i++) if (prefix[i] !== address[i]) return false;
  const rest = bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (prefix[whole]! & mask) === (address[whole]! & mask);
}

/** The prefix with every bit after `bits` cleared (computed here, independently of src/net/ip.ts). */
function hostBitsCleared(prefix: Prefix): Prefix {
  const bytes = Uint8Array.from(prefix.bytes);
  for (let bit = prefix.bits; bit < bytes.length * 8; bit++)
    bytes[bit >> 3] = bytes[bit >> 3]! & ~(0x80 >> (bit & 7));
  return { family: prefix.family, bytes, bits: prefix.bits };
}

/** Lexicographic byte order, then shorter prefix first. */
function compareEntries(x: Prefix, y: Prefix): number {
  if (x.family !== y.family) return x.family - y.family;
  for (let i = 0; i < x.bytes.length; i++) if (x.bytes[i] !== y.bytes[i]) return x.bytes[i]! - y.bytes[i]!;
  return x.bits - y.bits;
}

function runDifferential(
  seed: number,
  operations: number,
  lookupsPerCheckpoint: number,
  checkpointEvery: number,
): void {
  const random = seededRandom(seed);
  const u32 = (): number => {
    const b = random(4);
    return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
  };
  const below = (n: number): number => u32() % n;
  const pool: Record<Family, Uint8Array[]> = { 4: [], 6: [] };
  for (let i = 0; i < 6; i++) pool[4].push(random(4));
  for (let i = 0; i < 6; i++) pool[6].push(random(16));
  // Share leading bytes between pool entries too, so some prefixes diverge late.
  pool[4].push(Uint8Array.from([pool[4][0]![0]!, pool[4][0]![1]!, 0x5a, 0x5a]));
  pool[6].push(Uint8Array.from([...pool[6][0]!.subarray(0, 9), ...new Uint8Array(7).fill(0xa5)]));
  const favouriteLengths: Record<Family, number[]> = {
    4: [0, 1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32],
    6: [0, 1, 7, 8, 16, 31, 32, 33, 48, 63, 64, 65, 96, 127, 128],
  };

  /** A base address with a few random bits flipped, mostly far from the start. */
  const nearAddress = (family: Family): Uint8Array => {
    const list = pool[family];
    const out = Uint8Array.from(list[below(list.length)]!);
    const width = out.length * 8;
    const flips = below(3);
    for (let i = 0; i < flips; i++) {
      const bit = below(width);
      out[bit >> 3] = out[bit >> 3]! ^ (0x80 >> (bit & 7));
    }
    return out;
  };
  const randomFamily = (): Family => (below(2) === 0 ? 4 : 6);
  const randomPrefix = (): Prefix => {
    const family = randomFamily();
    const width = family === 4 ? 32 : 128;
    const bits =
      below(3) === 0 ? below(width + 1) : favouriteLengths[family][below(favouriteLengths[family].length)]!;
    // Unmasked bytes on purpose: the trie must mask host bits itself.
    return { family, bytes: nearAddress(family), bits };
  };

  const trie = new PrefixTrie<number>();
  const live = new Map<string, { prefix: Prefix; value: number }>();
  let nextValue = 1;
  let inserts = 0;
  let removes = 0;
  let matched = 0;
  let unmatched = 0;

  const reference = (family: Family, address: Uint8Array): number | undefined => {
    let best: { bits: number; value: number } | undefined;
    for (const { prefix, value } of live.values()) {
      if (prefix.family !== family) continue;
      if (best && prefix.bits <= best.bits) continue;
      if (contains(prefix.bytes, prefix.bits, address)) best = { bits: prefix.bits, value };
    }
    return best?.value;
  };

  const checkpoint = (at: number): void => {
    for (let i = 0; i < lookupsPerCheckpoint; i++) {
      const family = randomFamily();
      const address = below(5) === 0 ? random(family === 4 ? 4 : 16) : nearAddress(family);
      const want = reference(family, address);
      if (want === undefined) unmatched++;
      else matched++;
      assert.equal(
        trie.lookup(family, address),
        want,
        `seed ${seed}, after op ${at}: lookup(${family}, ${hex(address)})`,
      );
    }
    const entries = [...trie.entries()];
    assert.equal(entries.length, live.size, `seed ${seed}, after op ${at}: entries count`);
    assert.equal(trie.size, live.size);
    for (let i = 1; i < entries.length; i++) {
      assert.ok(compareEntries(entries[i - 1]![0], entries[i]![0]) < 0, `seed ${seed}: entries out of order`);
    }
    for (const [prefix, value] of entries) {
      assert.equal(live.get(keyOf(prefix))?.value, value, `seed ${seed}: entry ${formatPrefix(prefix)}`);
    }
    const { entries: valued, slack } = shape(trie);
    assert.equal(valued, live.size, `seed ${seed}, after op ${at}: nodes with values`);
    assert.equal(slack, 0, `seed ${seed}, after op ${at}: valueless nodes with fewer than two children`);
  };

  for (let op = 1; op <= operations; op++) {
    // Insert-heavy for the first 60% of the run, remove-heavy afterwards so compaction is exercised.
    const insertPercent = op <= operations * 0.6 ? 75 : 30;
    if (below(100) < insertPercent || live.size === 0) {
      const prefix = randomPrefix();
      const masked = hostBitsCleared(prefix);
      const key = keyOf(masked);
      const value = nextValue++;
      const previous = live.get(key)?.value;
      assert.equal(
        trie.insert(prefix, value),
        previous,
        `seed ${seed}, op ${op}: insert ${formatPrefix(masked)}`,
      );
      live.set(key, { prefix: masked, value });
      inserts++;
    } else {
      const roll = below(10);
      if (roll < 7) {
        // A live prefix, with the right, a wrong or no expected value.
        const keys = [...live.keys()];
        const entry = live.get(keys[below(keys.length)]!)!;
        const mode = below(3);
        if (mode === 0) {
          assert.equal(trie.remove(entry.prefix, entry.value + 1_000_000), false, `seed ${seed}, op ${op}`);
        } else {
          const expected = mode === 1 ? entry.value : undefined;
          assert.equal(trie.remove(entry.prefix, expected), true, `seed ${seed}, op ${op}`);
          live.delete(keyOf(entry.prefix));
          removes++;
        }
      } else {
        // A random prefix, usually absent.
        const prefix = randomPrefix();
        const masked = hostBitsCleared(prefix);
        const present = live.has(keyOf(masked));
        assert.equal(trie.remove(prefix), present, `seed ${seed}, op ${op}: remove ${formatPrefix(masked)}`);
        if (present) {
          live.delete(keyOf(masked));
          removes++;
        }
      }
    }
    assert.equal(trie.size, live.size, `seed ${seed}, op ${op}: size`);
    if (op % checkpointEvery === 0) checkpoint(op);
  }
  checkpoint(operations);

  // The run must have exercised what it claims to.
  assert.ok(inserts > operations / 3, `inserts ${inserts}`);
  assert.ok(removes > operations / 5, `removes ${removes}`);
  assert.ok(matched > lookupsPerCheckpoint, `matched ${matched}`);
  assert.ok(unmatched > 0, `unmatched ${unmatched}`);

  // Drain the rest in random order, checking as we go.
  const keys = [...live.keys()];
  for (let i = keys.length - 1; i > 0; i--) {
    const j = below(i + 1);
    [keys[i], keys[j]] = [keys[j]!, keys[i]!];
  }
  keys.forEach((key, i) => {
    const entry = live.get(key)!;
    assert.equal(trie.remove(entry.prefix, entry.value), true);
    live.delete(key);
    if (i % 50 === 0) checkpoint(operations + i);
  });
  assert.equal(trie.size, 0);
  assert.deepEqual([...trie.entries()], []);
  assert.deepEqual(shape(trie), { nodes: 0, entries: 0, slack: 0 });
}

describe('PrefixTrie: differential test against a linear scan', () => {
  it('agrees for 2,000 random inserts/removes and 20,000 lookups (seed 1)', () => {
    runDifferential(1, 2000, 1000, 100);
  });

  it('agrees for 2,000 random inserts/removes and 20,000 lookups (seed 0xdecafbad)', () => {
    runDifferential(0xdecafbad, 2000, 1000, 100);
  });

  it('agrees with frequent checkpoints on a small table (seed 7)', () => {
    runDifferential(7, 400, 100, 5);
  });
});
