/**
 * A handshake flood must not starve transport data (paper §5.3, "Denial of Service Mitigation"):
 *   - a source over its handshake budget is dropped before any BLAKE2s work (mac1 is not even checked);
 *   - cookie replies are rate-limited, all sources together;
 *   - deferred handshake messages wait in a bounded queue that drops its oldest;
 *   - the shell processes a batch's transport data before the handshake messages queued with it.
 * The count of mac1 checks is read from the drop counters: every forged-mac1 message that reaches the check
 * is counted as bad-mac1, every one stopped before it as source-over-budget.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PrivateKey } from '../../src/crypto/keys.js';
import type { Bind, Datagram } from '../../src/io/bind.js';
import { WireGuardInterface } from '../../src/gateway/wireguard-interface.js';
import type { Endpoint } from '../../src/net/endpoint.js';
import {
  MESSAGE_COOKIE_REPLY,
  MESSAGE_INITIATION,
  MESSAGE_RESPONSE,
  MESSAGE_TRANSPORT,
} from '../../src/wireguard/constants.js';
import { Device, type Action, type DeviceOptions } from '../../src/wireguard/device.js';
import { ipv4, payloadOf } from '../support/packets.js';
import { prefix, START } from '../support/sim.js';

/** Small budgets, so that the tests stay short (the defaults are in constants.ts). */
const SOURCE_HANDSHAKE_BURST = 8;
const COOKIE_REPLY_BURST = 6;
const LIMITS: DeviceOptions['limits'] = {
  sourceHandshakeBurst: SOURCE_HANDSHAKE_BURST,
  sourceHandshakesPerSecond: 4,
  cookieReplyBurst: COOKIE_REPLY_BURST,
  cookieRepliesPerSecond: 3,
};

function newDevice(options: DeviceOptions = {}): Device {
  return new Device({ privateKey: PrivateKey.generate(), limits: LIMITS, ...options });
}

const A_IP = '10.10.0.1';
const B_IP = '10.10.0.2';
const A_END: Endpoint = { address: '192.0.2.1', port: 51820 };
const B_END: Endpoint = { address: '192.0.2.2', port: 51820 };

/** Counters read by name, so that this file also runs against a device without the newer reasons. */
function count(device: Device, reason: string): number {
  return (device.drops as Record<string, number>)[reason] ?? 0;
}

function sends(actions: readonly Action[]): Extract<Action, { type: 'send' }>[] {
  return actions.filter((a): a is Extract<Action, { type: 'send' }> => a.type === 'send');
}

/** A valid initiation (mac1 good for `to`) from a stranger whose key `to` does not know. */
function strangerInitiation(to: Device): Uint8Array {
  const stranger = new Device({ privateKey: PrivateKey.generate() });
  stranger.setPeer({ publicKey: to.publicKey!, endpoint: A_END, allowedIps: [prefix('10.99.0.0/24')] });
  const init = sends(stranger.initiateHandshake(to.publicKey!, START))[0];
  assert.ok(init && init.data[0] === MESSAGE_INITIATION);
  return init.data;
}

/** Runs queued handshakes of `device`, if it queues them (a device that does not has none pending). */
function serveAll(device: Device, now: number, out: Action[]): Action[] {
  while ((device.pendingHandshakes ?? 0) > 0) device.serveHandshake(now, out);
  return out;
}

describe('handshake flood: per-source budget before mac1', () => {
  it('drops a source over its budget before checking mac1, and counts it', () => {
    const device = newDevice();
    const forged = strangerInitiation(device);
    forged[120]! ^= 1; // mac1 no longer matches: every check that runs is one bad-mac1 drop
    const flooder: Endpoint = { address: '203.0.113.7', port: 4000 };
    const total = SOURCE_HANDSHAKE_BURST * 5;
    for (let i = 0; i < total; i++) device.receive(Uint8Array.from(forged), flooder, START);
    assert.equal(count(device, 'bad-mac1'), SOURCE_HANDSHAKE_BURST, 'mac1 checked only within the budget');
    assert.equal(count(device, 'source-over-budget'), total - SOURCE_HANDSHAKE_BURST);

    // Another address has a budget of its own; the flooder's refills with time.
    device.receive(Uint8Array.from(forged), { address: '203.0.113.8', port: 4000 }, START);
    assert.equal(count(device, 'bad-mac1'), SOURCE_HANDSHAKE_BURST + 1);
    device.receive(Uint8Array.from(forged), flooder, START + 1000);
    assert.equal(count(device, 'bad-mac1'), SOURCE_HANDSHAKE_BURST + 2);
  });

  it('keys the budget by address, not port: a flood from many ports of one host is one source', () => {
    const device = newDevice();
    const init = strangerInitiation(device);
    const total = SOURCE_HANDSHAKE_BURST * 3;
    for (let i = 0; i < total; i++)
      device.receive(Uint8Array.from(init), { address: '203.0.113.9', port: 1024 + i }, START);
    assert.equal(count(device, 'unknown-peer'), SOURCE_HANDSHAKE_BURST, 'Noise work only within the budget');
    assert.equal(count(device, 'source-over-budget'), total - SOURCE_HANDSHAKE_BURST);
  });

  it('counts IPv6 sources per /64: a flood from one network is one source', () => {
    const device = newDevice();
    const init = strangerInitiation(device);
    const total = SOURCE_HANDSHAKE_BURST * 3;
    for (let i = 0; i < total; i++)
      device.receive(
        Uint8Array.from(init),
        { address: `2001:db8:1:2::${(i + 1).toString(16)}`, port: 1 },
        START,
      );
    assert.equal(count(device, 'unknown-peer'), SOURCE_HANDSHAKE_BURST);
    assert.equal(count(device, 'source-over-budget'), total - SOURCE_HANDSHAKE_BURST);
    device.receive(Uint8Array.from(init), { address: '2001:db8:1:3::1', port: 1 }, START);
    assert.equal(count(device, 'unknown-peer'), SOURCE_HANDSHAKE_BURST + 1, 'another /64 has its own budget');
  });

  it('leaves transport data alone: a member flooding handshakes still has its session', () => {
    const a = newDevice();
    const b = newDevice();
    link(a, b);
    handshake(a, b, START);
    const init = strangerInitiation(a);
    for (let i = 0; i < SOURCE_HANDSHAKE_BURST * 2; i++) a.receive(Uint8Array.from(init), B_END, START + 1);
    assert.ok(count(a, 'source-over-budget') > 0);
    const data = sends(b.send(ipv4(B_IP, A_IP, 'still here'), START + 2))[0];
    assert.ok(data);
    const delivered = a.receive(data.data, B_END, START + 2).find((x) => x.type === 'deliver');
    assert.ok(delivered?.type === 'deliver');
    assert.equal(payloadOf(delivered.packet), 'still here');
  });
});

describe('handshake flood: cookie replies', () => {
  it('under load, sends at most the cookie-reply budget, however many sources ask', () => {
    const device = newDevice();
    device.setForcedUnderLoad(true);
    const init = strangerInitiation(device);
    const total = COOKIE_REPLY_BURST * 10;
    let replies = 0;
    for (let i = 0; i < total; i++) {
      const from = { address: `198.18.${i >> 8}.${i & 0xff}`, port: 51820 };
      for (const s of sends(device.receive(Uint8Array.from(init), from, START))) {
        assert.equal(s.data[0], MESSAGE_COOKIE_REPLY);
        replies++;
      }
    }
    assert.equal(replies, COOKIE_REPLY_BURST);
    assert.equal(count(device, 'bad-mac2'), COOKIE_REPLY_BURST);
    assert.equal(count(device, 'cookie-reply-limited'), total - COOKIE_REPLY_BURST);

    // The budget refills with time.
    const later = device.receive(Uint8Array.from(init), { address: '198.19.0.1', port: 1 }, START + 1000);
    assert.equal(sends(later).length, 1);
  });
});

describe('handshake flood: the handshake queue', () => {
  it('a deferring device queues at most its capacity, dropping the oldest, and serves the newest', () => {
    const device = newDevice({ handshakeQueue: 4 });
    device.setForcedUnderLoad(true); // each served message earns a cookie reply to its source
    const init = strangerInitiation(device);
    const sources = Array.from({ length: 10 }, (_, i) => ({ address: `198.18.1.${i + 1}`, port: 51820 }));
    const immediate: Action[] = [];
    for (const from of sources) device.receive(Uint8Array.from(init), from, START, immediate);
    assert.deepEqual(sends(immediate), [], 'nothing is processed inside receive');
    assert.equal(device.pendingHandshakes, 4);
    assert.equal(count(device, 'handshake-queue-full'), 6);
    const served = sends(serveAll(device, START, []));
    assert.deepEqual(
      served.map((s) => s.endpoint.address),
      sources.slice(6).map((s) => s.address),
    );
    assert.equal(device.pendingHandshakes, 0);
    assert.equal(device.serveHandshake(START, []), false);
  });

  it('completes handshakes through the queue', () => {
    const a = newDevice({ handshakeQueue: true });
    const b = newDevice({ handshakeQueue: true });
    link(a, b);
    handshake(a, b, START);
    const data = sends(b.send(ipv4(B_IP, A_IP, 'via queue'), START + 1))[0];
    assert.ok(data);
    const got = a.receive(data.data, B_END, START + 1).find((x) => x.type === 'deliver');
    assert.ok(got?.type === 'deliver');
    assert.equal(payloadOf(got.packet), 'via queue');
  });
});

describe('handshake flood: the shell serves transport data first', () => {
  it('delivers the transport packets of a batch before it answers the handshakes queued with them', async () => {
    const a = newDevice({ handshakeQueue: true });
    const b = newDevice();
    const c = new Device({ privateKey: PrivateKey.generate() });
    link(a, b);
    const C_END = { address: '192.0.2.3', port: 51820 };
    a.setPeer({ publicKey: c.publicKey!, endpoint: C_END, allowedIps: [prefix('10.10.0.3/32')] });
    c.setPeer({ publicKey: a.publicKey!, endpoint: A_END, allowedIps: [prefix(`${A_IP}/32`)] });
    handshake(a, b, START);
    const now = START + 10;
    const transport = sends(b.send(ipv4(B_IP, A_IP, 'member data'), now))[0];
    const initiation = sends(c.initiateHandshake(a.publicKey!, now))[0];
    assert.ok(transport && transport.data[0] === MESSAGE_TRANSPORT);
    assert.ok(initiation && initiation.data[0] === MESSAGE_INITIATION);

    const events: string[] = [];
    const bind = new CaptureBind((d) => events.push(`send ${d.data[0]}`));
    const wg = new WireGuardInterface({
      name: 'wgq',
      device: a,
      bind,
      openBind: () => Promise.reject(new Error('no rebinding here')),
      deliver: (packets) => packets.forEach((p) => events.push(`deliver ${payloadOf(p)}`)),
      clock: () => now,
      tickMs: 60_000,
    });
    wg.start();
    try {
      // The handshake arrives first in the batch, the member's data second.
      bind.inject([
        { data: initiation.data, endpoint: C_END },
        { data: transport.data, endpoint: B_END },
      ]);
      for (let i = 0; i < 10 && events.length < 2; i++) await new Promise((r) => setImmediate(r));
      assert.deepEqual(events, ['deliver member data', `send ${MESSAGE_RESPONSE}`]);
    } finally {
      await wg.close();
    }
  });

  it('serves queued handshakes within its time budget per turn, the rest on later turns', async () => {
    const a = newDevice({ handshakeQueue: 64 });
    a.setForcedUnderLoad(true);
    const init = strangerInitiation(a);
    let clock = 0;
    const bind = new CaptureBind(() => undefined);
    const wg = new WireGuardInterface({
      name: 'wgb',
      device: a,
      bind,
      openBind: () => Promise.reject(new Error('no rebinding here')),
      deliver: () => undefined,
      clock: () => START,
      tickMs: 60_000,
      // Each reading of the budget clock advances it by 0.2 ms: three messages fit in 0.5 ms.
      budgetClock: () => (clock += 0.2),
      handshakeBudgetMs: 0.5,
    });
    wg.start();
    try {
      const batch = Array.from({ length: 9 }, (_, i) => ({
        data: Uint8Array.from(init),
        endpoint: { address: `198.18.2.${i + 1}`, port: 51820 },
      }));
      bind.inject(batch);
      assert.equal(a.pendingHandshakes, 9);
      await new Promise((r) => setImmediate(r));
      assert.equal(a.pendingHandshakes, 6, 'one turn served what its budget allowed');
      for (let i = 0; i < 5 && a.pendingHandshakes > 0; i++) await new Promise((r) => setImmediate(r));
      assert.equal(a.pendingHandshakes, 0, 'later turns served the rest');
    } finally {
      await wg.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------

class CaptureBind implements Bind {
  readonly port = 51820;
  private onDatagrams: ((d: readonly Datagram[]) => void) | undefined;
  constructor(private readonly onSend: (d: Datagram) => void) {}
  start(onDatagrams: (datagrams: readonly Datagram[]) => void): void {
    this.onDatagrams = onDatagrams;
  }
  inject(datagrams: readonly Datagram[]): void {
    this.onDatagrams?.(datagrams);
  }
  send(datagrams: readonly Datagram[]): void {
    datagrams.forEach(this.onSend);
  }
  async close(): Promise<void> {}
}

function link(a: Device, b: Device): void {
  a.setPeer({ publicKey: b.publicKey!, endpoint: B_END, allowedIps: [prefix(`${B_IP}/32`)] });
  b.setPeer({ publicKey: a.publicKey!, endpoint: A_END, allowedIps: [prefix(`${A_IP}/32`)] });
}

/** B initiates, A responds, B confirms with a keepalive: both have a current session. */
function handshake(a: Device, b: Device, now: number): void {
  const init = sends(b.initiateHandshake(a.publicKey!, now))[0];
  assert.ok(init);
  const response = sends(serveAll(a, now, a.receive(init.data, B_END, now)))[0];
  assert.ok(response && response.data[0] === MESSAGE_RESPONSE, 'A answered the initiation');
  const confirm = sends(serveAll(b, now, b.receive(response.data, A_END, now)))[0];
  assert.ok(confirm && confirm.data[0] === MESSAGE_TRANSPORT, 'B confirmed the keys');
  a.receive(confirm.data, B_END, now);
}
