/**
 * Answers leave from the address the peer wrote to (LinuxUdpBind with IP_PKTINFO / IPV6_PKTINFO, pktinfo.ts):
 *
 *   1. On loopback in the test's own namespace (no root; 127.0.0.0/8 is all local, so 127.0.0.2 stands for a
 *      second address whose replies the kernel would send from 127.0.0.1): the local address reported with
 *      each datagram (dual-stack socket: v4-mapped IPV6_PKTINFO; IPv4-only socket: IP_PKTINFO; IPv6 ::1),
 *      replies from it, in both reader modes, and the forget-and-retry rule with a source that is not an
 *      address of the host (the kernel's EINVAL).
 *   2. A Weft gateway (`weft up`) whose namespace has two addresses on the link toward a wireguard-go client,
 *      the client dialing the one the kernel would not pick as source, behind a stateful nftables firewall
 *      that admits from the gateway only what belongs to connections the client opened: handshake and ping
 *      succeed, and a capture on the gateway shows every datagram to the client leaving from the dialed
 *      address. IPv4 and IPv6.
 */
import assert from 'node:assert/strict';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import type { Datagram } from '../../src/dataplane/bind.js';
import { LinuxUdpBind, linuxUdpUnavailable } from '../../src/dataplane/udp-linux.js';
import type { Endpoint } from '../../src/net/endpoint.js';
import { waitFor } from './harness.js';

const unavailable = await linuxUdpUnavailable();
const loopbackSkip: string | false =
  process.platform !== 'linux'
    ? 'Linux only'
    : unavailable !== undefined
      ? `LinuxUdpBind unavailable: ${unavailable}`
      : false;

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A node:dgram socket standing for a peer: it records every datagram with its source. */
class Peer {
  readonly received: { text: string; from: RemoteInfo }[] = [];

  private constructor(readonly socket: Socket) {
    socket.on('message', (msg, from) => this.received.push({ text: msg.toString(), from }));
  }

  static async open(type: 'udp4' | 'udp6', address: string): Promise<Peer> {
    const socket = createSocket(type);
    socket.bind(0, address);
    await once(socket, 'listening');
    return new Peer(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(data: string, port: number, address: string): void {
    this.socket.send(data, port, address);
  }

  async waitFor(count: number): Promise<void> {
    await waitFor(
      `${count} datagrams at the peer (have ${this.received.length})`,
      () => this.received.length >= count,
      {
        timeoutMs: 3_000,
        intervalMs: 5,
      },
    );
  }

  close(): void {
    this.socket.close();
  }
}

/** Starts `bind` and collects what it receives (endpoints as they come: the bind shares them). */
function collect(bind: LinuxUdpBind): Datagram[] {
  const got: Datagram[] = [];
  bind.start((datagrams) => {
    for (const d of datagrams) got.push({ data: Uint8Array.from(d.data), endpoint: d.endpoint });
  });
  return got;
}

async function received(got: Datagram[], count: number): Promise<void> {
  await waitFor(`${count} datagrams at the bind (have ${got.length})`, () => got.length >= count, {
    timeoutMs: 3_000,
    intervalMs: 5,
  });
}

describe('LinuxUdpBind answers from the address the peer wrote to (loopback)', { skip: loopbackSkip }, () => {
  const closing: (() => unknown)[] = [];
  after(async () => {
    for (const close of closing.reverse()) await close();
  });

  async function open(address?: string): Promise<LinuxUdpBind> {
    const bind = await LinuxUdpBind.open(0, address);
    closing.push(() => bind.close());
    return bind;
  }

  async function peer(type: 'udp4' | 'udp6', address: string): Promise<Peer> {
    const p = await Peer.open(type, address);
    closing.push(() => p.close());
    return p;
  }

  for (const readers of ['inline', 'worker'] as const) {
    it(`dual-stack socket, IPv4 (v4-mapped IPV6_PKTINFO), ${readers} reader: reports and answers from 127.0.0.2`, async () => {
      const saved = process.env.WEFT_READERS;
      process.env.WEFT_READERS = readers;
      let bind: LinuxUdpBind;
      let got: Datagram[];
      try {
        bind = await open();
        assert.equal(bind.dualStack, true);
        got = collect(bind);
      } finally {
        if (saved === undefined) delete process.env.WEFT_READERS;
        else process.env.WEFT_READERS = saved;
      }
      const p = await peer('udp4', '127.0.0.5');
      p.send('to .2', bind.port, '127.0.0.2');
      p.send('to .1', bind.port, '127.0.0.1');
      await received(got, 2);
      const byText = new Map(got.map((d) => [new TextDecoder().decode(d.data), d.endpoint]));
      assert.deepEqual(
        { ...byText.get('to .2') },
        { address: '127.0.0.5', port: p.port, local: '127.0.0.2' },
      );
      assert.deepEqual(
        { ...byText.get('to .1') },
        { address: '127.0.0.5', port: p.port, local: '127.0.0.1' },
      );

      // The reply to each endpoint leaves from the address the datagram was sent to; without one, from the
      // kernel's choice (127.0.0.1 for 127.0.0.5).
      bind.send([
        { data: text('reply via .2'), endpoint: byText.get('to .2')! },
        { data: text('reply via .1'), endpoint: byText.get('to .1')! },
        { data: text('no local'), endpoint: { address: '127.0.0.5', port: p.port } },
      ]);
      await p.waitFor(3);
      const sources = Object.fromEntries(p.received.map((r) => [r.text, `${r.from.address}:${r.from.port}`]));
      assert.deepEqual(sources, {
        'reply via .2': `127.0.0.2:${bind.port}`,
        'reply via .1': `127.0.0.1:${bind.port}`,
        'no local': `127.0.0.1:${bind.port}`,
      });
      assert.equal(bind.counters.sendErrors, 0);
      assert.equal(bind.counters.sourcesForgotten, 0);
    });
  }

  it('dual-stack socket, IPv6 (IPV6_PKTINFO): reports ::1 and answers from it', async () => {
    const bind = await open();
    const got = collect(bind);
    const p = await peer('udp6', '::1');
    p.send('v6', bind.port, '::1');
    await received(got, 1);
    assert.deepEqual({ ...got[0]!.endpoint }, { address: '::1', port: p.port, local: '::1' });
    bind.send([{ data: text('back'), endpoint: got[0]!.endpoint }]);
    await p.waitFor(1);
    assert.equal(p.received[0]!.from.address, '::1');
    assert.equal(bind.counters.sendErrors, 0);
  });

  it('IPv4-only socket (IP_PKTINFO): reports and answers from 127.0.0.2', async () => {
    const bind = await open('0.0.0.0');
    assert.equal(bind.dualStack, false);
    const got = collect(bind);
    const p = await peer('udp4', '127.0.0.5');
    p.send('to .2', bind.port, '127.0.0.2');
    await received(got, 1);
    assert.deepEqual({ ...got[0]!.endpoint }, { address: '127.0.0.5', port: p.port, local: '127.0.0.2' });
    bind.send([{ data: text('back'), endpoint: got[0]!.endpoint }]);
    await p.waitFor(1);
    assert.equal(p.received[0]!.from.address, '127.0.0.2');
  });

  for (const family of ['dual-stack', 'IPv4-only'] as const) {
    it(`${family} socket: a local address that has gone is forgotten and the datagram sent without it`, async () => {
      const bind = await open(family === 'dual-stack' ? undefined : '0.0.0.0');
      const got = collect(bind);
      const p = await peer('udp4', '127.0.0.5');
      // 192.0.2.77 (TEST-NET-1) is no address of this host: the kernel refuses it as a source (EINVAL).
      const stale: Endpoint = { address: '127.0.0.5', port: p.port, local: '192.0.2.77' };
      const good: Endpoint = { address: '127.0.0.5', port: p.port, local: '127.0.0.2' };
      bind.send([
        { data: text('stale 1'), endpoint: stale },
        { data: text('good'), endpoint: good },
        { data: text('stale 2'), endpoint: stale },
      ]);
      await p.waitFor(3);
      // Forgotten once: the batch's other datagram to it already went without it, and so do later ones.
      assert.equal(bind.counters.sourcesForgotten, 1);
      bind.send([{ data: text('stale 3'), endpoint: stale }]);
      await p.waitFor(4);
      assert.equal(bind.counters.sourcesForgotten, 1);
      assert.equal(bind.counters.sendErrors, 0);
      const sources = Object.fromEntries(p.received.map((r) => [r.text, r.from.address]));
      assert.deepEqual(sources, {
        'stale 1': '127.0.0.1',
        good: '127.0.0.2',
        'stale 2': '127.0.0.1',
        'stale 3': '127.0.0.1',
      });
      assert.equal(got.length, 0);
    });
  }

  it('dual-stack socket, IPv6: a local address that has gone (EINVAL) is forgotten likewise', async () => {
    const bind = await open();
    const p = await peer('udp6', '::1');
    // 2001:db8::77 (documentation prefix) is no address of this host.
    const stale: Endpoint = { address: '::1', port: p.port, local: '2001:db8::77' };
    bind.send([
      { data: text('stale 1'), endpoint: stale },
      { data: text('stale 2'), endpoint: stale },
    ]);
    await p.waitFor(2);
    assert.equal(bind.counters.sourcesForgotten, 1);
    assert.equal(bind.counters.sendErrors, 0);
    assert.deepEqual(
      p.received.map((r) => r.from.address),
      ['::1', '::1'],
    );
  });
});
