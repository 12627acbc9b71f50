import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UserError } from '../../src/control/errors.js';
import type { MemberRecord, MemberStatus } from '../../src/control/model.js';
import type { Store } from '../../src/control/store.js';
import { PrivateKey } from '../../src/crypto/keys.js';
import { arpAnnouncement, parseMac } from '../../src/io/arp.js';
import { unsolicitedNeighbourAdvertisement } from '../../src/io/ndp.js';
import { icmpv6Checksum } from '../../src/net/checksum.js';
import { parsePrefix } from '../../src/net/ip.js';
import { Device, type Action } from '../../src/wireguard/device.js';
import {
  Failover,
  sharedAddressOption,
  type FailoverActions,
  type FailoverClock,
  type HeldLease,
  type SharedAddress,
} from '../../src/server/failover.js';
import { reachOut, type FailoverHost } from '../../src/server/failover-host.js';
import { acquireLease } from '../../src/control/pg-lease.js';

const SHARED = sharedAddressOption('192.0.2.100/24', 'eth0')!;

/** A clock whose timers run when the test advances it. */
class FakeClock implements FailoverClock {
  t = 1_000_000;
  private timers: { at: number; fn: () => void; live: boolean }[] = [];
  now = (): number => this.t;
  after = (ms: number, fn: () => void): (() => void) => {
    const timer = { at: this.t + ms, fn, live: true };
    this.timers.push(timer);
    return () => void (timer.live = false);
  };
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (let guard = 0; guard < 10_000; guard++) {
      await settle();
      const due = this.timers.filter((x) => x.live && x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      due.live = false;
      this.t = due.at;
      due.fn();
    }
    this.t = end;
    await settle();
  }
  pending(): number {
    return this.timers.filter((x) => x.live).length;
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}

class FakeLease implements HeldLease {
  released = false;
  /** The session ended (released or lost): PostgreSQL has freed the lock. */
  ended = false;
  private callbacks: ((e: Error) => void)[] = [];
  onLost(callback: (reason: Error) => void): void {
    this.callbacks.push(callback);
  }
  release(): Promise<void> {
    this.released = true;
    this.ended = true;
    return Promise.resolve();
  }
  lose(message: string): void {
    this.ended = true;
    for (const c of this.callbacks) c(new Error(message));
  }
}

/** The lease as PostgreSQL would hand it: one holder at a time; `available` false means another holds it. */
class FakeLeaseServer {
  available = false;
  reachable = true;
  tries = 0;
  current: FakeLease | undefined;
  take = (): Promise<HeldLease | null> => {
    this.tries++;
    if (!this.reachable) return Promise.reject(new Error('connect ECONNREFUSED'));
    if (!this.available || (this.current && !this.current.ended)) return Promise.resolve(null);
    this.current = new FakeLease();
    return Promise.resolve(this.current);
  };
}

class FakeHostActions implements FailoverActions {
  readonly calls: string[] = [];
  hasAddress = false;
  failAdd = false;
  reached = 2;
  addAddress(): Promise<void> {
    this.calls.push('add');
    if (this.failAdd) return Promise.reject(new Error('RTNETLINK answers: Operation not permitted'));
    this.hasAddress = true;
    return Promise.resolve();
  }
  removeAddress(): Promise<void> {
    this.calls.push('remove');
    this.hasAddress = false;
    return Promise.resolve();
  }
  announce(): Promise<void> {
    this.calls.push('announce');
    return Promise.resolve();
  }
  reachOut(): number {
    this.calls.push('reach');
    return this.reached;
  }
  standDown(): void {
    this.calls.push('standDown');
  }
}

function setup(): {
  clock: FakeClock;
  server: FakeLeaseServer;
  actions: FakeHostActions;
  failover: Failover;
  lines: string[];
} {
  const clock = new FakeClock();
  const server = new FakeLeaseServer();
  const actions = new FakeHostActions();
  const lines: string[] = [];
  const failover = new Failover(SHARED, server.take, actions, {
    clock,
    log: (l) => lines.push(l),
    retryMs: 400,
    reannounceMs: 1000,
    failedBackoffMs: 5000,
  });
  return { clock, server, actions, failover, lines };
}

describe('failover state machine (fake lease, no root)', () => {
  it('starts by removing a leftover address, then stands by while another gateway holds the lease', async () => {
    const { clock, server, actions, failover } = setup();
    actions.hasAddress = true; // left behind by a holder that crashed
    await failover.start();
    assert.deepEqual(actions.calls, ['remove']);
    assert.equal(actions.hasAddress, false);
    await clock.advance(2000);
    assert.equal(failover.role, 'standby');
    assert.equal(failover.isHolder, false);
    // Retried every 400 ms: the first try at start, then 5 more in 2 s.
    assert.equal(server.tries, 6);
    assert.deepEqual(actions.calls, ['remove'], 'no address added while standby');
    assert.equal(failover.status().role, 'standby');
    assert.equal(failover.status().address, '192.0.2.100/24');
    await failover.stop();
  });

  it('lease acquired: adds the address, announces it, reaches out to members, and announces again', async () => {
    const { clock, server, actions, failover, lines } = setup();
    await failover.start();
    await clock.advance(1000);
    const before = clock.t;
    server.available = true;
    await clock.advance(400);
    assert.equal(failover.role, 'holder');
    assert.ok(clock.t - before <= 400, 'taken within one retry interval');
    assert.deepEqual(actions.calls, ['remove', 'add', 'announce', 'reach']);
    assert.equal(actions.hasAddress, true);
    assert.match(lines.join('\n'), /holder of 192\.0\.2\.100\/24 on eth0 .*handshakes started with 2 member/);
    await clock.advance(1000);
    assert.deepEqual(actions.calls.slice(-1), ['announce'], 'announced again after 1 s');
    const triesWhileHolding = server.tries;
    await clock.advance(5000);
    assert.equal(server.tries, triesWhileHolding, 'no tries while holding');
    assert.equal(failover.status().takeovers, 1);
    await failover.stop();
  });

  it('lease lost: stands down, removes the address at once, and tries again', async () => {
    const { clock, server, actions, failover, lines } = setup();
    server.available = true;
    await failover.start();
    await clock.advance(10);
    assert.equal(failover.role, 'holder');
    actions.calls.length = 0;
    server.available = false;
    server.current!.lose('the server has not answered for 1600 ms');
    assert.equal(failover.role, 'standby', 'standby at once');
    assert.equal(failover.isHolder, false);
    await settle();
    assert.deepEqual(actions.calls, ['standDown', 'remove']);
    assert.equal(actions.hasAddress, false);
    assert.match(lines.join('\n'), /lost the lease of 192\.0\.2\.100\/24 \(the server has not answered/);
    const tries = server.tries;
    await clock.advance(1200);
    assert.equal(server.tries - tries, 3, 'tries again every 400 ms');
    // Free again: taken back.
    server.available = true;
    await clock.advance(400);
    assert.equal(failover.role, 'holder');
    assert.equal(actions.hasAddress, true);
    assert.equal(failover.status().takeovers, 2);
    await failover.stop();
  });

  it('a loss during the takeover leaves the address removed (steps run in order)', async () => {
    const { clock, server, actions, failover } = setup();
    server.available = true;
    await failover.start();
    // The lease is taken on the first try; lose it before the interface steps have run.
    await Promise.resolve();
    await Promise.resolve();
    server.current?.lose('connection closed');
    server.available = false;
    await clock.advance(100);
    assert.equal(failover.role, 'standby');
    assert.equal(actions.hasAddress, false);
    await failover.stop();
  });

  it('stop as holder: removes the address, then releases the lease', async () => {
    const { clock, server, actions, failover, lines } = setup();
    server.available = true;
    await failover.start();
    await clock.advance(10);
    const lease = server.current!;
    actions.calls.length = 0;
    await failover.stop();
    assert.deepEqual(actions.calls, ['standDown', 'remove']);
    assert.equal(lease.released, true);
    assert.equal(failover.role, 'stopped');
    assert.match(lines.at(-1) ?? '', /released 192\.0\.2\.100\/24/);
    await clock.advance(5000);
    assert.deepEqual(actions.calls, ['standDown', 'remove'], 'nothing after stop');
  });

  it('stop runs onStopped once, after the address is removed and the lease released', async () => {
    const clock = new FakeClock();
    const server = new FakeLeaseServer();
    const actions = new FakeHostActions();
    const seen: string[] = [];
    const failover = new Failover(SHARED, server.take, actions, {
      clock,
      onStopped: async () => {
        seen.push(
          `stopped: address ${actions.hasAddress ? 'still there' : 'gone'}, lease ${server.current?.released === true ? 'released' : 'held'}`,
        );
      },
    });
    server.available = true;
    await failover.start();
    await clock.advance(10);
    assert.equal(failover.role, 'holder');
    await failover.stop();
    await failover.stop();
    assert.deepEqual(seen, ['stopped: address gone, lease released']);
  });

  it('the store unreachable: logged once per outage, retried at the same pace', async () => {
    const { clock, server, failover, lines } = setup();
    server.reachable = false;
    await failover.start();
    await clock.advance(2000);
    assert.equal(failover.role, 'standby');
    assert.equal(lines.filter((l) => /cannot reach the store/.test(l)).length, 1);
    assert.ok(server.tries >= 5);
    server.reachable = true;
    server.available = true;
    await clock.advance(400);
    assert.equal(failover.role, 'holder');
    assert.equal(lines.filter((l) => /answers again/.test(l)).length, 1);
    await failover.stop();
  });

  it('an address that cannot be added: the lease is given back, next try after the backoff', async () => {
    const { clock, server, actions, failover, lines } = setup();
    server.available = true;
    actions.failAdd = true;
    await failover.start();
    await clock.advance(10);
    assert.equal(failover.role, 'standby');
    assert.equal(server.current?.released, true);
    assert.match(lines.join('\n'), /cannot add 192\.0\.2\.100\/24 to eth0 .*giving the lease back/);
    const tries = server.tries;
    await clock.advance(4900);
    assert.equal(server.tries, tries, 'no try before the backoff');
    actions.failAdd = false;
    await clock.advance(200);
    assert.equal(failover.role, 'holder');
    await failover.stop();
  });
});

describe('--shared-address / --shared-interface', () => {
  it('parses an IPv4 host address with its prefix length', () => {
    const s = sharedAddressOption('10.0.0.100/24', 'eth0');
    assert.equal(s?.cidr, '10.0.0.100/24');
    assert.equal(s?.leaseName, 'shared-address/10.0.0.100');
    assert.equal(s?.interfaceName, 'eth0');
    assert.equal(sharedAddressOption(undefined, undefined), undefined);
    assert.equal(sharedAddressOption('10.0.0.100/32', 'eth0')?.bits, 32);
  });
  it('parses an IPv6 host address with its prefix length', () => {
    const s = sharedAddressOption('2001:DB8::100/64', 'eth0');
    assert.equal(s?.cidr, '2001:db8::100/64');
    assert.equal(s?.leaseName, 'shared-address/2001:db8::100');
    assert.equal(s?.address.family, 6);
    assert.equal(sharedAddressOption('fd74::1/128', 'eth0')?.bits, 128);
  });
  it('refuses bad input, naming the option', () => {
    const bad: [string | undefined, string | undefined, RegExp][] = [
      ['10.0.0.100/24', undefined, /--shared-address and --shared-interface go together.*--shared-address/],
      [undefined, 'eth0', /go together \(got only --shared-interface\)/],
      ['10.0.0.100', 'eth0', /--shared-address must be an IPv4 or IPv6 address with its prefix length/],
      ['fd00::1', 'eth0', /--shared-address must be an IPv4 or IPv6 address/],
      ['fd00::1/129', 'eth0', /--shared-address must be/],
      ['fe80::1/64', 'eth0', /--shared-address fe80::1\/64 is not a unicast address/],
      ['ff02::1/64', 'eth0', /is not a unicast address/],
      ['::1/128', 'eth0', /is not a unicast address/],
      ['::ffff:10.0.0.1/96', 'eth0', /is not a unicast address/],
      ['10.0.0.100/33', 'eth0', /--shared-address must be/],
      ['10.0.0.0/24', 'eth0', /--shared-address 10\.0\.0\.0\/24 is the network or broadcast address/],
      ['10.0.0.255/24', 'eth0', /network or broadcast/],
      ['127.0.0.5/8', 'eth0', /--shared-address .* is not a unicast address/],
      ['10.0.0.100/24', 'this-name-is-too-long', /--shared-interface: must be 1–15 characters/],
    ];
    for (const [a, i, message] of bad)
      assert.throws(
        () => sharedAddressOption(a, i),
        (e: unknown) => e instanceof UserError && message.test(e.message),
        `${a} ${i}`,
      );
  });
});

describe('gratuitous ARP frame', () => {
  it('is an RFC 5227 announcement: request, sender = target address, target hardware address zero', () => {
    const mac = parseMac('02:00:5e:10:00:01')!;
    const frame = arpAnnouncement(mac, SHARED.address.bytes);
    assert.equal(
      Buffer.from(frame).toString('hex'),
      '0001' + '0800' + '06' + '04' + '0001' + '02005e100001' + 'c0000264' + '000000000000' + 'c0000264',
    );
    assert.equal(parseMac('02:00:5e:10:00'), undefined);
    assert.equal(parseMac('zz:00:5e:10:00:01'), undefined);
    assert.throws(() => arpAnnouncement(mac.subarray(0, 5), SHARED.address.bytes), RangeError);
  });
});

describe('unsolicited Neighbour Advertisement (RFC 4861 §7.2.6)', () => {
  it('is an NA to ff02::1 with hop limit 255, Override only, the target and its link-layer address', () => {
    const mac = parseMac('02:00:5e:10:00:01')!;
    const target = sharedAddressOption('2001:db8::100/64', 'eth0')!.address.bytes;
    const packet = unsolicitedNeighbourAdvertisement(mac, target);
    const addr = '20010db8000000000000000000000100';
    assert.equal(
      Buffer.from(packet).toString('hex'),
      // IPv6 header: version 6, payload 32 bytes, next header 58 (ICMPv6), hop limit 255, from the address to ff02::1
      '60000000' +
        '0020' +
        '3a' +
        'ff' +
        addr +
        'ff020000000000000000000000000001' +
        // ICMPv6 type 136, code 0, checksum, flags R=0 S=0 O=1, reserved, target address
        '88' +
        '00' +
        '991c' +
        '20000000' +
        addr +
        // option 2 (target link-layer address), length 1 (8 bytes), the MAC
        '02' +
        '01' +
        '02005e100001',
    );
    // Checked as a receiver does: the sum over the pseudo-header and the message, checksum included, is 0xffff.
    const msg = packet.subarray(40);
    assert.equal(icmpv6Checksum(packet.subarray(8, 24), packet.subarray(24, 40), msg), 0);
    assert.throws(() => unsolicitedNeighbourAdvertisement(mac, target.subarray(0, 4)), RangeError);
    assert.throws(() => unsolicitedNeighbourAdvertisement(mac.subarray(0, 5), target), RangeError);
  });
});

describe('reachOut at a takeover', () => {
  const gatewayKey = PrivateKey.generate();
  const member = (name: string): { record: MemberRecord; key: PrivateKey } => {
    const key = PrivateKey.generate();
    return { record: { name, publicKey: key.publicKey().toBase64() } as MemberRecord, key };
  };
  const status = (name: string, fields: Partial<MemberStatus>): MemberStatus => ({
    name,
    online: true,
    protocol: 'wireguard',
    since: null,
    endpoint: null,
    lastHandshake: null,
    rxBytes: 0,
    txBytes: 0,
    policyDrops: 0,
    updatedAt: new Date().toISOString(),
    ...fields,
  });

  it('starts a handshake, from the shared address, with each installed member the store last saw recently', () => {
    const now = Date.now();
    const alice = member('alice');
    const bob = member('bob');
    const carol = member('carol');
    const dave = member('dave');
    const erin = member('erin');
    const device = new Device({ privateKey: gatewayKey });
    const prefix = (t: string) => {
      const p = parsePrefix(t);
      assert.ok(p.ok);
      return p.value;
    };
    for (const [i, m] of [alice, bob, carol, erin].entries())
      device.setPeer({ publicKey: m.key.publicKey(), allowedIps: [prefix(`10.9.0.${i + 2}/32`)] });
    // dave is not installed (disabled): never reached.
    const recent = new Date(now - 5_000).toISOString();
    const statuses = [
      status('alice', { endpoint: '198.51.100.7:40001', lastHandshake: recent }),
      status('bob', { endpoint: null, lastHandshake: recent }),
      status('carol', {
        endpoint: '198.51.100.9:40003',
        lastHandshake: new Date(now - 600_000).toISOString(),
      }),
      status('dave', { endpoint: '198.51.100.10:40004', lastHandshake: recent }),
      status('erin', { endpoint: '198.51.100.11:1194', lastHandshake: recent, protocol: 'openvpn-udp' }),
    ];
    const store = {
      allMembers: () => [alice, bob, carol, dave, erin].map((m) => m.record),
      allStatuses: () => statuses,
    } as unknown as Store;
    const sent: Action[] = [];
    const host: FailoverHost = {
      store,
      storeUrl: '',
      holder: 'gw-a',
      device,
      perform: (actions) => sent.push(...actions),
      now: () => now,
      log: () => {},
    };
    const shared: SharedAddress = SHARED;
    assert.equal(reachOut(shared, host, now), 1);
    const sends = sent.filter((a) => a.type === 'send');
    assert.equal(sends.length, 1, JSON.stringify(sent.map((a) => a.type)));
    const send = sends[0]!;
    assert.ok(send.type === 'send');
    assert.deepEqual(
      { address: send.endpoint.address, port: send.endpoint.port, local: send.endpoint.local },
      { address: '198.51.100.7', port: 40001, local: '192.0.2.100' },
    );
    assert.equal(send.data[0], 1, 'a handshake initiation (message type 1)');
    assert.equal(send.data.length, 148);
  });
});

describe('/metrics with a shared address', () => {
  it('has the holder gauge and the takeover counter, labelled by the address', async () => {
    const { renderMetrics } = await import('../../src/api/metrics.js');
    const text = (role: 'holder' | 'standby'): string =>
      renderMetrics({
        members: { total: 0, disabled: 0, expired: 0 },
        gateway: {
          members: [],
          drops: {},
          failover: {
            address: '192.0.2.100/24',
            interfaceName: 'eth0',
            role,
            since: new Date(0).toISOString(),
            takeovers: 3,
          },
        },
        residentMemoryBytes: 1,
      });
    assert.match(text('holder'), /^weft_failover_holder\{address="192\.0\.2\.100\/24"\} 1$/m);
    assert.match(text('standby'), /^weft_failover_holder\{address="192\.0\.2\.100\/24"\} 0$/m);
    assert.match(text('standby'), /^weft_failover_takeovers_total\{address="192\.0\.2\.100\/24"\} 3$/m);
    assert.match(text('holder'), /^# TYPE weft_failover_holder gauge$/m);
  });
});

describe('lease timing options (pg-lease.ts)', () => {
  it('refuses a deadline that does not come before the server frees the lock, before connecting', async () => {
    // No server at this address: a refusal of the options comes first, as a RangeError naming them.
    const config = { connectionString: 'postgres://weft@127.0.0.1:1/none', connectionTimeoutMillis: 200 };
    for (const options of [
      { lostAfterMs: 3000, serverTimeoutMs: 3000 },
      { lostAfterMs: 4000 },
      { heartbeatMs: 2000, lostAfterMs: 2000 },
      { heartbeatMs: 0 },
    ])
      await assert.rejects(acquireLease(config, 'x', options), (e: Error) => {
        assert.ok(e instanceof RangeError, e.message);
        assert.match(e.message, /heartbeatMs .* < lostAfterMs .* < serverTimeoutMs/);
        return true;
      });
  });
});
