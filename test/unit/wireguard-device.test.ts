/**
 * Two (and three) WireGuard cores talking over a simulated network with a simulated clock: handshake, data,
 * key confirmation, rekeying, restarts, expiry, cookies, roaming and the timers of paper §6.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PresharedKey } from '../../src/crypto/keys.js';
import {
  KEEPALIVE_TIMEOUT,
  REJECT_AFTER_TIME,
  REKEY_AFTER_TIME,
  REKEY_ATTEMPT_TIME,
  REKEY_TIMEOUT,
  ZERO_KEYS_AFTER,
} from '../../src/wireguard/constants.js';
import type { Action } from '../../src/wireguard/device.js';
import { ipv4, ipv6, payloadOf } from '../support/packets.js';
import { Network, messageType, prefix, type Node } from '../support/sim.js';

const A_IP = '10.0.0.1';
const B_IP = '10.0.0.2';

function pair(options: Parameters<Network['add']>[3] = {}): { net: Network; a: Node; b: Node } {
  const net = new Network();
  const a = net.add('a', '192.0.2.1', 51820, options);
  const b = net.add('b', '192.0.2.2', 51820, options);
  net.link(a, b, ['10.0.0.1/32', 'fd00::1/128'], ['10.0.0.2/32', 'fd00::2/128']);
  return { net, a, b };
}

function types(actions: Action[]): number[] {
  return actions.filter((x) => x.type === 'send').map((x) => (x.type === 'send' ? x.data[0]! : 0));
}

function drops(actions: Action[]): string[] {
  return actions.flatMap((x) => (x.type === 'drop' ? [x.reason] : []));
}

describe('WireGuard device: handshake and data', () => {
  it('completes a handshake and carries IPv4 and IPv6 both ways', () => {
    const { net, a, b } = pair();
    net.send(a, ipv4(A_IP, B_IP, 'hello b'));
    assert.deepEqual(b.delivered.map(payloadOf), ['hello b']);
    net.send(b, ipv4(B_IP, A_IP, 'hello a'));
    net.send(a, ipv6('fd00::1', 'fd00::2', 'v6 to b'));
    net.send(b, ipv6('fd00::2', 'fd00::1', 'v6 to a'));
    assert.deepEqual(a.delivered.map(payloadOf), ['hello a', 'v6 to a']);
    assert.deepEqual(b.delivered.map(payloadOf), ['hello b', 'v6 to b']);
    const handshakes = net.wire.filter((d) => messageType(d) === 1).length;
    assert.equal(handshakes, 1);
    const sa = a.device.peerStatus(b.key.publicKey(), net.now)!;
    const sb = b.device.peerStatus(a.key.publicKey(), net.now)!;
    assert.equal(sa.lastHandshake, net.now);
    assert.equal(sb.lastHandshake, net.now);
    assert.ok(sa.txBytes > 0 && sa.rxBytes > 0);
    // Both directions count the same bytes: A's tx is B's rx.
    assert.equal(sa.txBytes, sb.rxBytes);
    assert.equal(sb.txBytes, sa.rxBytes);
  });

  it('pads transport plaintext to 16 bytes and keepalives to nothing', () => {
    const { net, a } = pair();
    net.send(a, ipv4(A_IP, B_IP, 'x')); // 29-byte packet → 32 bytes of plaintext
    const transports = net.wire.filter((d) => messageType(d) === 4);
    // The initiator's confirmation: staged data (29 → 32 + 16 tag + 16 header = 64).
    assert.deepEqual(
      transports.map((d) => d.data.length),
      [64],
    );
  });

  it('works with a preshared key, and fails without the same one', () => {
    const { net, a, b } = pair();
    const psk = PresharedKey.generate();
    a.device.setPeer({ publicKey: b.key.publicKey(), presharedKey: psk });
    b.device.setPeer({ publicKey: a.key.publicKey(), presharedKey: psk });
    net.send(a, ipv4(A_IP, B_IP, 'with psk'));
    assert.deepEqual(b.delivered.map(payloadOf), ['with psk']);

    const other = pair();
    other.a.device.setPeer({ publicKey: other.b.key.publicKey(), presharedKey: PresharedKey.generate() });
    const actions = other.net.send(other.a, ipv4(A_IP, B_IP, 'mismatch'));
    assert.deepEqual(other.b.delivered, []);
    assert.ok(drops(actions).includes('handshake-decrypt-failed'));
  });

  it('holds responder data until the initiator confirms the keys', () => {
    const { net, a, b } = pair();
    net.filter = (d) => !(d.from === b.endpoint && messageType(d) === 2); // hold B's response
    net.send(a, ipv4(A_IP, B_IP, 'first'));
    const response = net.wire.find((d) => messageType(d) === 2)!;
    // B has a session in waiting but must not send data with it: it stages the packet.
    const fromB = b.device.send(ipv4(B_IP, A_IP, 'early'), net.now);
    assert.ok(!types(fromB).includes(4), 'no transport from the responder before confirmation');
    net.filter = () => true;
    // The response arrives; A confirms with its staged packet; B then flushes its staged packet.
    net.run(b, [{ type: 'send', endpoint: a.endpoint, data: response.data, peer: a.key.publicKey() }]);
    assert.deepEqual(b.delivered.map(payloadOf), ['first']);
    // Deliver B's staged packet: its initiation (sent while waiting) must not break the exchange either.
    net.run(b, fromB);
    net.advance(1000);
    assert.deepEqual(a.delivered.map(payloadOf), ['early']);
  });

  it('rejects a replayed transport packet and accepts reordering within the window', () => {
    const { net, a, b } = pair();
    net.send(a, ipv4(A_IP, B_IP, 'one'));
    const captured: Uint8Array[] = [];
    for (let i = 0; i < 5; i++) {
      for (const x of a.device.send(ipv4(A_IP, B_IP, `p${i}`), net.now))
        if (x.type === 'send') captured.push(x.data);
    }
    const got = (data: Uint8Array): Action[] => b.device.receive(data, a.endpoint, net.now);
    for (const i of [4, 2, 0, 3, 1]) assert.equal(got(captured[i]!)[0]?.type, 'deliver');
    for (const data of captured) assert.deepEqual(drops(got(data)), ['replayed-counter']);
    assert.equal(b.device.drops['replayed-counter'], 5);
  });

  it('drops packets whose inner source is not an allowed IP of the sending peer', () => {
    const { net, a, b } = pair();
    net.send(a, ipv4(A_IP, B_IP, 'legit'));
    // A routes 10.9.9.9 to B as well, but B does not accept it as A's source.
    a.device.setPeer({ publicKey: b.key.publicKey(), allowedIps: [prefix('0.0.0.0/0')] });
    const actions = net.send(a, ipv4('10.9.9.9', B_IP, 'spoofed'));
    assert.deepEqual(drops(actions), ['disallowed-source']);
    assert.deepEqual(b.delivered.map(payloadOf), ['legit']);
  });

  it('with linkLocalGroups on, takes link-local sources to IPv6 groups (MLD) from a peer, nothing else', () => {
    const { net, a, b } = pair();
    net.send(a, ipv4(A_IP, B_IP, 'legit'));
    a.device.setPeer({ publicKey: b.key.publicKey(), allowedIps: [prefix('::/0')] });
    const report = (): Action[] => net.send(a, ipv6('fe80::2', 'ff02::16', 'report'));
    assert.deepEqual(drops(report()), ['disallowed-source'], 'off by default');
    b.device.linkLocalGroups = true;
    report();
    assert.deepEqual(b.delivered.map(payloadOf), ['legit', 'report']);
    // Still refused: a link-local source to a unicast address, a non-link-local stranger to a group.
    assert.deepEqual(drops(net.send(a, ipv6('fe80::2', 'fd00::1', 'unicast'))), ['disallowed-source']);
    assert.deepEqual(drops(net.send(a, ipv6('fd00::9', 'ff15::1', 'stranger'))), ['disallowed-source']);
  });

  it('routes by longest prefix and drops packets no peer owns', () => {
    const net = new Network();
    const a = net.add('a', '192.0.2.1', 1);
    const b = net.add('b', '192.0.2.2', 2);
    const c = net.add('c', '192.0.2.3', 3);
    net.link(a, b, ['10.0.0.1/32'], ['10.0.0.0/16']);
    net.link(a, c, ['10.0.0.1/32'], ['10.0.5.0/24']);
    net.send(a, ipv4(A_IP, '10.0.5.9', 'to c'));
    net.send(a, ipv4(A_IP, '10.0.6.9', 'to b'));
    assert.deepEqual(c.delivered.map(payloadOf), ['to c']);
    assert.deepEqual(b.delivered.map(payloadOf), ['to b']);
    assert.deepEqual(drops(net.send(a, ipv4(A_IP, '10.1.0.1'))), ['no-route']);
    assert.deepEqual(drops(a.device.send(new Uint8Array([0x45, 0, 0]), net.now)), ['bad-inner-packet']);
  });
});

describe('WireGuard device: keys over time', () => {
  it('rekeys after REKEY_AFTER_TIME under steady traffic without losing a packet', () => {
    const { net, a, b } = pair();
    let sent = 0;
    const firstHandshake = net.now;
    // 300 simulated seconds, a packet each way every 250 ms.
    for (let t = 0; t < 300_000; t += 250) {
      net.send(a, ipv4(A_IP, B_IP, `a${sent}`));
      net.send(b, ipv4(B_IP, A_IP, `b${sent}`));
      sent++;
      net.advance(250, 250);
    }
    assert.equal(b.delivered.length, sent);
    assert.equal(a.delivered.length, sent);
    assert.deepEqual(
      b.delivered.map(payloadOf),
      Array.from({ length: sent }, (_, i) => `a${i}`),
    );
    const initiations = net.wire.filter((d) => messageType(d) === 1).length;
    assert.ok(initiations >= 3, `expected ≥3 handshakes in 300 s, saw ${initiations}`);
    const last = a.device.peerStatus(b.key.publicKey(), net.now)!.lastHandshake;
    assert.ok(
      last - firstHandshake >= 2 * REKEY_AFTER_TIME,
      'a handshake happened after the second rekey time',
    );
  });

  it('recovers when the peer restarts (the restarted side sends first)', () => {
    const { net, a, b } = pair();
    net.send(a, ipv4(A_IP, B_IP, 'before'));
    net.advance(30_000);
    // B restarts: same key and configuration, no sessions.
    const b2 = net.add('b', b.endpoint.address, b.endpoint.port, {}, b.key);
    net.link(a, b2, ['10.0.0.1/32', 'fd00::1/128'], ['10.0.0.2/32', 'fd00::2/128']);
    net.send(b2, ipv4(B_IP, A_IP, 'after restart'));
    assert.deepEqual(a.delivered.map(payloadOf), ['after restart']);
    net.send(a, ipv4(A_IP, B_IP, 'welcome back'));
    assert.deepEqual(b2.delivered.map(payloadOf), ['welcome back']);
  });

  it('recovers when the peer restarts (the surviving side sends first)', () => {
    const { net, a, b } = pair();
    net.send(a, ipv4(A_IP, B_IP, 'before'));
    net.advance(30_000);
    const b2 = net.add('b', b.endpoint.address, b.endpoint.port, {}, b.key);
    net.link(a, b2, ['10.0.0.1/32', 'fd00::1/128'], ['10.0.0.2/32', 'fd00::2/128']);
    // A's packets hit a B that has no session: dropped, unanswered. A notices silence and rehandshakes.
    const lost = net.send(a, ipv4(A_IP, B_IP, 'lost'));
    assert.ok(types(lost).includes(4));
    assert.equal(b2.device.drops['unknown-receiver'], 1);
    net.advance(KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + 1000);
    assert.equal(
      b2.device.peerStatus(a.key.publicKey(), net.now)!.hasSession,
      true,
      'new session after silence',
    );
    net.send(a, ipv4(A_IP, B_IP, 'recovered'));
    assert.deepEqual(b2.delivered.map(payloadOf), ['recovered']);
  });

  it('stops using keys after REJECT_AFTER_TIME and erases them after 3 × REJECT_AFTER_TIME', () => {
    const { net, a, b } = pair();
    net.send(a, ipv4(A_IP, B_IP, 'hi'));
    net.send(b, ipv4(B_IP, A_IP, 'hi back'));
    net.send(a, ipv4(A_IP, B_IP, 'last word'));
    const oldPacket = net.wire.filter((d) => d.from === a.endpoint && messageType(d) === 4).at(-1)!;
    net.advance(KEEPALIVE_TIMEOUT * 2); // B's keepalive answers; then the line is quiet
    net.advance(REJECT_AFTER_TIME + 1000, 1000);
    assert.equal(a.device.peerStatus(b.key.publicKey(), net.now)!.hasSession, false);
    assert.equal(net.wire.filter((d) => messageType(d) === 1).length, 1, 'no rekey without traffic');
    // A packet sealed under the expired keypair is refused.
    assert.deepEqual(drops(b.device.receive(oldPacket.data, a.endpoint, net.now)), ['key-expired']);
    // New data needs a new handshake first, never the old keys.
    const actions = a.device.send(ipv4(A_IP, B_IP, 'fresh'), net.now);
    assert.deepEqual(types(actions), [1]);
    // No traffic at all: keys are erased once 3 × REJECT_AFTER_TIME pass without a new session.
    const idle = pair();
    idle.net.send(idle.a, ipv4(A_IP, B_IP, 'x'));
    const keypair = (
      idle.a.device as unknown as { peers: Map<string, { keypairs: { current?: { sendKey: Uint8Array } } }> }
    ).peers.get(idle.b.key.publicKey().toBase64())!.keypairs.current!;
    idle.net.advance(ZERO_KEYS_AFTER + 1000, 5000);
    assert.ok(
      keypair.sendKey.every((x) => x === 0),
      'key material zeroed',
    );
  });

  it('rekeys after REKEY_AFTER_MESSAGES and never sends past REJECT_AFTER_MESSAGES', () => {
    const { net, a, b } = pair({ limits: { rekeyAfterMessages: 20, rejectAfterMessages: 40 } });
    net.send(a, ipv4(A_IP, B_IP, 'm0'));
    net.filter = (d) => messageType(d) !== 1; // from now on, every initiation is lost
    for (let i = 1; i < 60; i++) {
      net.advance(200);
      net.send(a, ipv4(A_IP, B_IP, `m${i}`));
    }
    // A rekeyed once the keypair had sent 20 messages (those initiations were lost), and after 40 messages
    // the keypair stopped sending: the rest is staged, never sealed with an exhausted counter.
    assert.ok(net.wire.filter((d) => messageType(d) === 1).length >= 3);
    assert.equal(b.delivered.length, 40);
    net.filter = () => true;
    net.advance(REKEY_TIMEOUT + 500);
    assert.deepEqual(
      b.delivered.map(payloadOf),
      Array.from({ length: 60 }, (_, i) => `m${i}`),
      'staged packets flow in order after the retransmitted handshake',
    );
  });

  it('retransmits an unanswered initiation every REKEY_TIMEOUT and gives up after REKEY_ATTEMPT_TIME', () => {
    const { net, a } = pair();
    net.filter = () => false; // B is unreachable
    const first = a.device.send(ipv4(A_IP, B_IP, 'nobody home'), net.now);
    net.run(a, first);
    net.advance(REKEY_ATTEMPT_TIME + 2 * REKEY_TIMEOUT, 100);
    const initiations = net.wire.filter((d) => messageType(d) === 1);
    assert.equal(initiations.length, REKEY_ATTEMPT_TIME / REKEY_TIMEOUT + 1);
    assert.equal(a.device.drops['handshake-timeout'], 1);
    net.advance(60_000);
    assert.equal(net.wire.filter((d) => messageType(d) === 1).length, initiations.length, 'no more tries');
  });

  it('sends a keepalive when data was received and nothing sent for KEEPALIVE_TIMEOUT', () => {
    const { net, a, b } = pair();
    net.send(a, ipv4(A_IP, B_IP, 'data'));
    const before = net.wire.length;
    net.advance(KEEPALIVE_TIMEOUT + 200);
    const after = net.wire.slice(before);
    assert.deepEqual(
      after.map((d) => [d.from === b.endpoint ? 'b' : 'a', messageType(d), d.data.length]),
      [['b', 4, 32]],
    );
  });

  it('sends persistent keepalives at the configured interval', () => {
    const net = new Network();
    const a = net.add('a', '192.0.2.1', 1);
    const b = net.add('b', '192.0.2.2', 2);
    net.link(a, b, ['10.0.0.1/32'], ['10.0.0.2/32'], { keepalive: 25 });
    net.send(a, ipv4(A_IP, B_IP, 'x'));
    const before = net.wire.length;
    net.advance(100_000, 500);
    const keepalives = net.wire.slice(before).filter((d) => messageType(d) === 4 && d.data.length === 32);
    assert.equal(keepalives.length, 4, 'one every 25 s for 100 s');
  });

  it('ends every session when the private key changes', () => {
    const { net, a, b } = pair();
    net.send(a, ipv4(A_IP, B_IP, 'x'));
    assert.equal(a.device.peerStatus(b.key.publicKey(), net.now)!.hasSession, true);
    a.device.setPrivateKey(b.key); // our own key now equals the peer's: that peer goes away
    assert.equal(a.device.hasPeer(b.key.publicKey()), false);
  });
});

describe('WireGuard device: initiations, cookies and roaming', () => {
  it('rejects a replayed initiation (old timestamp) without answering', () => {
    const { net, a, b } = pair();
    net.send(a, ipv4(A_IP, B_IP, 'x'));
    const initiation = net.wire.find((d) => messageType(d) === 1)!;
    net.advance(1000);
    const actions = b.device.receive(initiation.data, a.endpoint, net.now);
    assert.deepEqual(types(actions), []);
    assert.deepEqual(drops(actions), ['replayed-timestamp']);
  });

  it('drops initiations arriving faster than the flood limit', () => {
    const { net, a, b } = pair();
    const first = a.device.initiateHandshake(b.key.publicKey(), net.now);
    net.now += REKEY_TIMEOUT;
    const second = a.device.initiateHandshake(b.key.publicKey(), net.now);
    const [i1, i2] = [first, second].map((x) => x.find((y) => y.type === 'send')!);
    assert.ok(i1?.type === 'send' && i2?.type === 'send');
    assert.deepEqual(types(b.device.receive(i1.data, a.endpoint, net.now)), [2]);
    assert.deepEqual(drops(b.device.receive(i2.data, a.endpoint, net.now + 1)), ['initiation-flood']);
  });

  it('under load, answers with a cookie and accepts the retry that carries mac2', () => {
    const { net, a, b } = pair();
    b.device.setForcedUnderLoad(true);
    net.send(a, ipv4(A_IP, B_IP, 'under load'));
    assert.deepEqual(
      net.wire.map((d) => messageType(d)),
      [1, 3],
      'initiation answered by a cookie reply only',
    );
    assert.deepEqual(b.delivered, []);
    net.advance(REKEY_TIMEOUT + 500);
    assert.deepEqual(b.delivered.map(payloadOf), ['under load']);
    assert.equal(b.device.drops['bad-mac2'], 1);
  });

  it('answers nothing to a handshake with a bad mac1', () => {
    const { net, a, b } = pair();
    const init = a.device.initiateHandshake(b.key.publicKey(), net.now).find((x) => x.type === 'send');
    assert.ok(init?.type === 'send');
    const forged = Uint8Array.from(init.data);
    forged[120]! ^= 1;
    for (const underLoad of [false, true]) {
      b.device.setForcedUnderLoad(underLoad);
      const actions = b.device.receive(forged, a.endpoint, net.now);
      assert.deepEqual(types(actions), []);
      assert.deepEqual(drops(actions), ['bad-mac1']);
    }
  });

  it('follows a roaming peer to its new endpoint after one authenticated packet', () => {
    const { net, a, b } = pair();
    net.send(a, ipv4(A_IP, B_IP, 'from home'));
    a.endpoint = { address: '198.51.100.7', port: 40000 };
    net.send(a, ipv4(A_IP, B_IP, 'from cafe'));
    assert.deepEqual(b.device.peerStatus(a.key.publicKey(), net.now)!.endpoint, a.endpoint);
    const reply = b.device.send(ipv4(B_IP, A_IP, 'to cafe'), net.now).find((x) => x.type === 'send');
    assert.ok(reply?.type === 'send');
    assert.deepEqual(reply.endpoint, a.endpoint);
    // An unauthenticated packet from elsewhere does not move the endpoint.
    b.device.receive(new Uint8Array(64).fill(4, 0, 1), { address: '203.0.113.9', port: 9 }, net.now);
    assert.deepEqual(b.device.peerStatus(a.key.publicKey(), net.now)!.endpoint, a.endpoint);
  });

  it('removes a peer without disturbing the others', () => {
    const net = new Network();
    const a = net.add('a', '192.0.2.1', 1);
    const b = net.add('b', '192.0.2.2', 2);
    const c = net.add('c', '192.0.2.3', 3);
    net.link(a, b, ['10.0.0.1/32'], ['10.0.0.2/32']);
    net.link(a, c, ['10.0.0.1/32'], ['10.0.0.3/32']);
    net.send(a, ipv4(A_IP, B_IP, 'b1'));
    net.send(a, ipv4(A_IP, '10.0.0.3', 'c1'));
    const handshakes = net.wire.filter((d) => messageType(d) === 1).length;
    assert.equal(a.device.removePeer(b.key.publicKey()), true);
    assert.deepEqual(drops(net.send(a, ipv4(A_IP, B_IP, 'b2'))), ['no-route']);
    net.send(a, ipv4(A_IP, '10.0.0.3', 'c2'));
    assert.deepEqual(c.delivered.map(payloadOf), ['c1', 'c2']);
    assert.equal(net.wire.filter((d) => messageType(d) === 1).length, handshakes, 'C kept its session');
  });
});
