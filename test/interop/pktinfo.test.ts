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
import * as fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Datagram } from '../../src/io/bind.js';
import { LinuxUdpBind, linuxUdpUnavailable } from '../../src/io/udp-linux.js';
import type { Endpoint } from '../../src/net/endpoint.js';
import {
  capture,
  DEFAULT_TOOLS,
  interopSkip,
  Lab,
  startWireguardGo,
  waitFor,
  type Netns,
  type WireguardGo,
} from './harness.js';
import {
  generateKeyPair,
  readCapture,
  startWeft,
  stopWeftInterfaces,
  WEFT_MAIN,
  wireguardType,
  type WeftInterface,
} from './gateway-lab.js';

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

// ---------------------------------------------------------------------------------------------------------------
// A gateway with two addresses, a client behind a stateful firewall

const TOOLS = [...DEFAULT_TOOLS, 'nft'];
const WEFT_PORT = 51820;

/**
 * Gateway namespace: veth 10.251.0.1/24 + fd51::1/64 (primary) and 10.251.1.1/24 + fd52::1/64 (secondary, on the
 * same link). Client namespace: 10.251.0.2/24 + fd51::2/64, with host routes to the secondary addresses over
 * the link. The gateway's own choice of source toward the client is the primary address (the client's subnet
 * is on-link there), so a reply to a datagram sent to the secondary address comes from the primary one unless
 * the gateway answers from the address dialed.
 *
 * Two wireguard-go clients in the client namespace dial the secondary addresses (IPv4 and IPv6). nftables in the
 * client namespace admits from the link only what belongs to connections the client opened (`ct state
 * established,related`) and neighbour discovery; everything else from the gateway is dropped.
 */
describe(
  'A Weft gateway answers from the address the client dialed (two addresses, stateful firewall)',
  {
    skip: interopSkip(TOOLS),
  },
  () => {
    let lab: Lab;
    let gw: Netns;
    let client: Netns;
    let gwIf: string;
    let weft: WeftInterface;
    const clients: WireguardGo[] = [];

    before(async () => {
      assert.ok(fs.existsSync(WEFT_MAIN), `${WEFT_MAIN} is missing: build first`);
      lab = await Lab.create('pktinfo', { tools: TOOLS });
      gw = await lab.netns('gw');
      client = await lab.netns('cl');
      const link = await lab.veth(gw, client, {
        aAddr: '10.251.0.1/24',
        bAddr: '10.251.0.2/24',
        aAddr6: 'fd51::1/64',
        bAddr6: 'fd51::2/64',
      });
      gwIf = link.aIf;
      const clIf = link.bIf;
      await gw.exec('ip', ['addr', 'add', '10.251.1.1/24', 'dev', gwIf]);
      await gw.exec('ip', ['-6', 'addr', 'add', 'fd52::1/64', 'dev', gwIf, 'nodad']);
      await client.exec('ip', ['route', 'add', '10.251.1.1/32', 'dev', clIf]);
      await client.exec('ip', ['-6', 'route', 'add', 'fd52::1/128', 'dev', clIf]);
      // The kernel's own choice of source toward the client is the primary address.
      const route4 = await gw.exec('ip', ['route', 'get', '10.251.0.2']);
      assert.match(route4.stdout, /src 10\.251\.0\.1\b/);
      const route6 = await gw.exec('ip', ['-6', 'route', 'get', 'fd51::2']);
      assert.match(route6.stdout, /src fd51::1\b/);

      const rules = [
        'table inet pktinfo {',
        '  chain input {',
        '    type filter hook input priority 0; policy accept;',
        `    iifname "${clIf}" ct state established,related accept`,
        `    iifname "${clIf}" icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept`,
        `    iifname "${clIf}" counter drop`,
        '  }',
        '}',
      ].join('\n');
      const file = lab.file('client.nft');
      fs.writeFileSync(file, `${rules}\n`);
      await client.exec('nft', ['-f', file]);

      const weftKeys = generateKeyPair();
      const c4 = generateKeyPair();
      const c6 = generateKeyPair();
      weft = await startWeft(gw, lab.ifname('w0'), {
        privateKey: weftKeys.privateKey,
        listenPort: WEFT_PORT,
        addresses: ['10.99.0.1/24'],
        peers: [
          { publicKey: c4.publicKey, allowedIps: ['10.99.0.4/32'] },
          { publicKey: c6.publicKey, allowedIps: ['10.99.0.6/32'] },
        ],
      });
      for (const [keys, endpoint, address, name] of [
        [c4, `10.251.1.1:${WEFT_PORT}`, '10.99.0.4', 'c4'],
        [c6, `[fd52::1]:${WEFT_PORT}`, '10.99.0.6', 'c6'],
      ] as const) {
        clients.push(
          await startWireguardGo(client, lab.ifname(name), {
            privateKey: keys.privateKey,
            addresses: [`${address}/32`],
            peers: [{ publicKey: weftKeys.publicKey, endpoint, allowedIps: ['10.99.0.1/32'] }],
          }),
        );
      }
    });

    after(async () => {
      if (!lab) return;
      try {
        for (const c of clients) await c.stop().catch(() => undefined);
        await stopWeftInterfaces(lab);
      } finally {
        await lab.cleanup();
      }
    });

    for (const [family, dialed, primary, index] of [
      ['IPv4', '10.251.1.1', '10.251.0.1', 0],
      ['IPv6', 'fd52::1', 'fd51::1', 1],
    ] as const) {
      it(`${family}: handshake and ping to ${dialed} succeed, every datagram back leaves from it`, async () => {
        const cap = await capture(gw, gwIf, `udp port ${WEFT_PORT}`);
        // Each client interface has no route of its own: bound to it, ping takes 10.99.0.1 as on-link there.
        const ifname = clients[index]!.ifname;
        const result = await client.exec(
          'ping',
          ['-4', '-n', '-c', '5', '-i', '0.2', '-W', '2', '-I', ifname, '10.99.0.1'],
          {
            allowFail: true,
            timeoutMs: 20_000,
          },
        );
        const stats = /(\d+) packets transmitted, (\d+) received/.exec(result.stdout);
        await cap.stop({ settleMs: 200 });
        // What the gateway sent toward this client (the other client's traffic is of the other family).
        const fromGateway = (await readCapture(cap.file)).filter(
          (p) => p.srcPort === WEFT_PORT && p.family === (family === 'IPv4' ? 4 : 6),
        );
        const sources = [...new Set(fromGateway.map((p) => p.src))];
        const types = fromGateway.map((p) => wireguardType(p));
        assert.deepEqual(
          sources,
          [dialed],
          `the gateway answered from ${sources.join(', ')}, not only ${dialed}`,
        );
        assert.ok(
          stats !== null && Number(stats[2]) >= 4,
          `ping through the tunnel: ${result.stdout}${result.stderr}`,
        );
        assert.ok(types.includes(2), `a handshake response from the gateway (types ${types.join(',')})`);
        assert.ok(types.filter((t) => t === 4).length >= 4, `transport datagrams from the gateway`);
        assert.ok(!(sources as string[]).includes(primary));
        const dump = await weft.dump();
        assert.ok(
          dump.peers.some((p) => p.endpoint?.startsWith(family === 'IPv4' ? '10.251.0.2:' : '[fd51::2]:')),
        );
      });
    }
  },
);
