/**
 * The OpenVPN path keeper (openvpn-warmup.ts): while a client was active lately, each idle wake-up sends one
 * echo request through the live path from a warm-up session of its own; the answer comes back sealed; none of
 * it is counted; a member given the keeper's address takes it over (the keeper moves to another); follow()
 * changes the cipher; the interface's close ends it. Also the interface's liveness clock.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import type { InstalledMember } from '../../src/gateway/member-transport.js';
import { OpenVpnPathKeeper, type OpenVpnKeeperTarget } from '../../src/gateway/openvpn-warmup.js';
import { MemoryNetwork } from '../../src/io/memory.js';
import { Poller } from '../../src/io/poller.js';
import { echo } from '../../src/net/icmp.js';
import { readIpHeader } from '../../src/net/ip-packet.js';
import { formatAddress, parseAddress, parsePrefix, type Address } from '../../src/net/ip.js';
import { DATA_KEY_BLOCK_LENGTH } from '../../src/openvpn/data-channel-keys.js';
import { warmShell } from '../support/openvpn-shell.js';

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function address(text: string): Address {
  const a = parseAddress(text);
  assert.ok(a.ok);
  return a.value;
}

function member(name: string, ip: string): InstalledMember {
  return {
    name,
    rules: [],
    receiveRules: [],
    drops: 0,
    expiresAt: null,
    record: { name, ip, ip6: null } as unknown as InstalledMember['record'],
  };
}

function rig(timing?: { tickMs: number; idleTimeoutMs?: number }) {
  const net = new MemoryNetwork();
  const { ovpn, router, delivered } = warmShell(net.bind('127.0.0.1', 1194), timing);
  const state = { live: true, taken: [] as Address[] };
  const subnet = parsePrefix('10.66.0.0/24');
  assert.ok(subnet.ok);
  const target: OpenVpnKeeperTarget = {
    openvpn: ovpn,
    gateway: address('10.66.0.1'),
    subnet: subnet.value,
    // As `weft server run` gives it: members' addresses and those other warm-up sessions hold.
    taken: () => [...state.taken, ...ovpn.warmAddresses()],
    cipher: 'AES-256-GCM',
    poller: new Poller({ poll: () => 0 }),
    bind: net.bind('127.0.0.1', 40000),
    live: () => state.live,
  };
  /** Answers every echo request the TUN side got, as the kernel would, through the router. */
  const answer = (): string[] => {
    const from: string[] = [];
    for (const p of delivered.splice(0)) {
      const h = readIpHeader(p);
      assert.ok(h);
      from.push(formatAddress({ family: 4, bytes: h.source }));
      const reply = echo('reply', h.destination, h.source, 0x7767, 1, new Uint8Array(56));
      router.route(reply, 0);
    }
    router.flush();
    return from;
  };
  return { ovpn, router, delivered, state, target, answer };
}

/** Runs `body` with a started keeper on a fresh rig; the interface is closed afterwards. */
async function withKeeper(
  body: (r: ReturnType<typeof rig>, keeper: OpenVpnPathKeeper) => Promise<void>,
  timing?: { tickMs: number; idleTimeoutMs?: number },
): Promise<void> {
  const r = rig(timing);
  const keeper = await OpenVpnPathKeeper.start(r.target);
  assert.ok(typeof keeper !== 'string', String(keeper));
  try {
    await body(r, keeper);
  } finally {
    await r.ovpn.close();
  }
}

describe('OpenVPN path keeper', () => {
  it('pulses only while a client was active lately; its round trips are not counted', async () => {
    const r = rig();
    const keeper = await OpenVpnPathKeeper.start(r.target);
    assert.ok(typeof keeper !== 'string', String(keeper));
    try {
      r.state.live = false;
      assert.equal(keeper.pulse(), false, 'no client lately: no pulse');
      await settle();
      assert.equal(r.delivered.length, 0);
      r.state.live = true;
      for (let i = 1; i <= 3; i++) {
        assert.equal(keeper.pulse(), true);
        await settle();
        assert.deepEqual(r.answer(), ['10.66.0.254'], 'the highest free address asks the gateway');
        await settle();
        assert.deepEqual(keeper.counts, { pulses: i, replies: i });
      }
      const c = r.ovpn.counters;
      assert.deepEqual(
        [c.datagramsIn, c.datagramsOut, c.packetsIn, c.packetsOut, c.sessionsStarted, c.sessionsEnded],
        [0, 0, 0, 0, 0, 0],
        "the keeper is nobody's traffic",
      );
      assert.deepEqual(r.ovpn.describe(), [], 'nor a session in status');
      assert.equal(r.ovpn.drops.size, 0);
    } finally {
      await r.ovpn.close();
    }
    assert.equal(keeper.pulse(), false, 'the interface closed it');
    assert.equal(keeper.holds, undefined);
  });

  it('gives its address up to a member and moves to the next free one', async () => {
    await withKeeper(async (r, keeper) => {
      keeper.pulse();
      await settle();
      r.answer();
      await settle();
      assert.equal(keeper.holds && formatAddress(keeper.holds), '10.66.0.254');
      r.state.taken = [address('10.66.0.254')];
      r.ovpn.install(member('dana', '10.66.0.254'), undefined);
      assert.equal(keeper.holds, undefined, "the member's install ended the keeper's session");
      const reply = echo(
        'reply',
        new Uint8Array([10, 66, 0, 1]),
        new Uint8Array([10, 66, 0, 254]),
        1,
        1,
        new Uint8Array(8),
      );
      assert.equal(r.router.route(reply, 0), false, 'and its route: the member claims it alone');
      assert.equal(keeper.pulse(), true);
      await settle();
      assert.deepEqual(r.answer(), ['10.66.0.253']);
      await settle();
      assert.deepEqual(keeper.counts, { pulses: 2, replies: 2 });
      assert.equal(r.ovpn.counters.sessionsEnded, 0);
    });
  });

  it('leaves the address a warm-up session holds to it', async () => {
    await withKeeper(async (r, keeper) => {
      const other = r.ovpn.openWarmSession(
        { address: '127.0.0.1', port: 40001 },
        { ...address('10.66.0.254'), bits: 32 },
        new Uint8Array(randomBytes(DATA_KEY_BLOCK_LENGTH)),
        'AES-256-GCM',
      );
      assert.ok(other);
      keeper.pulse();
      await settle();
      assert.deepEqual(r.answer(), ['10.66.0.253']);
      await settle();
      assert.deepEqual(
        keeper.counts,
        { pulses: 1, replies: 1 },
        'the answer reached the keeper, not the warm-up',
      );
      assert.deepEqual(r.ovpn.warmAddresses().map(formatAddress).sort(), ['10.66.0.253', '10.66.0.254']);
    });
  });

  it('follows the cipher the latest client chose', async () => {
    await withKeeper(async (r, keeper) => {
      for (const cipher of ['CHACHA20-POLY1305', 'AES-128-GCM'] as const) {
        keeper.follow(cipher);
        assert.equal(keeper.holds, undefined, 'a new cipher: a new session at the next pulse');
        assert.equal(keeper.pulse(), true);
        await settle();
        assert.equal(r.answer().length, 1);
        await settle();
      }
      assert.deepEqual(keeper.counts, { pulses: 2, replies: 2 });
    });
  });

  it('outlives the idle timeout and sends its session no keepalives: no client is behind it', async () => {
    await withKeeper(
      async (r, keeper) => {
        keeper.pulse();
        await settle();
        r.answer();
        await new Promise((resolve) => setTimeout(resolve, 40));
        assert.ok(keeper.holds, 'still open after several ticks past the idle timeout');
        assert.equal(r.ovpn.counters.datagramsOut, 0);
        assert.deepEqual(keeper.counts, { pulses: 1, replies: 1 });
      },
      { tickMs: 5, idleTimeoutMs: 1 },
    );
  });

  it('does not start without a UDP listener or with an IPv6 member subnet', async () => {
    const r = rig();
    const v6 = parsePrefix('fd66::/64');
    assert.ok(v6.ok);
    try {
      assert.equal(
        await OpenVpnPathKeeper.start({ ...r.target, subnet: v6.value }),
        'the member subnet is not IPv4',
      );
    } finally {
      await r.ovpn.close();
    }
  });
});
