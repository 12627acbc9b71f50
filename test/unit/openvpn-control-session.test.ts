/**
 * The server's control session (src/openvpn/control-session.ts) against a small client core written for
 * the tests (openvpn-control-client.ts), both with real node:tls engines, in one process over a simulated
 * network with a fake clock: handshake, push reply, data keys that agree on both sides (EKM and the OpenVPN
 * PRF), every wrapping, renegotiation from either side, 10% loss with reordering and duplication, refusals.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  ControlSession,
  type ControlAction,
  type PushDescription,
} from '../../src/openvpn/control-session.js';
import type { WrapConfig } from '../../src/openvpn/control-wrap.js';
import { P_CONTROL_HARD_RESET_CLIENT_V3, P_CONTROL_WKC_V1 } from '../../src/openvpn/constants.js';
import { StatelessHandshake } from '../../src/openvpn/stateless-handshake.js';
import { NodeTlsClientEngine, NodeTlsServerFactory } from '../../src/openvpn/tls-engine-node.js';
import { StaticKey } from '../../src/openvpn/tls-crypt.js';
import { generateClientKey, TlsCryptV2ServerKey } from '../../src/openvpn/tls-crypt-v2.js';
import type { DataCipher } from '../../src/openvpn/peer-info.js';
import { TestClient, type ClientWrap } from './openvpn-control-client.js';
import { makePki, type Pki } from './openvpn-control-pki.js';

const PEER_INFO_26 =
  'IV_VER=2.6.3\nIV_PLAT=linux\nIV_TCPNL=1\nIV_MTU=1600\nIV_NCP=2\nIV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\nIV_PROTO=990\n';
const PEER_INFO_25 =
  'IV_VER=2.5.9\nIV_PLAT=linux\nIV_NCP=2\nIV_CIPHERS=AES-256-GCM:AES-128-GCM\nIV_PROTO=6\n';

const PUSH: PushDescription = {
  topology: 'subnet',
  ifconfig: { address: '10.8.0.2', netmask: '255.255.255.0' },
  ifconfigIpv6: { address: 'fd00:8::2', prefixLength: 64, gateway: 'fd00:8::1' },
  routeGateway: '10.8.0.1',
  dns: ['10.8.0.1'],
  ping: 10,
  pingRestart: 60,
};

/** A deterministic PRNG (mulberry32) for the network's loss, delay and duplication. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface NetOptions {
  loss?: number;
  duplicate?: number;
  /** Up to this many ms of random extra delay (reorders packets). */
  jitter?: number;
  seed?: number;
  /** Lose the first datagram each way (the client's reset and the server's answer to it). */
  loseFirstEachWay?: boolean;
}

interface InFlight {
  to: 'server' | 'client';
  bytes: Uint8Array;
  at: number;
}

class Net {
  private queue: InFlight[] = [];
  private readonly rnd: () => number;
  sent = 0;
  lost = 0;
  /** The opcode of every datagram sent to the server (lost or not). */
  readonly toServer: number[] = [];
  private toClient = 0;
  constructor(private readonly o: NetOptions = {}) {
    this.rnd = prng(o.seed ?? 1);
  }
  send(to: 'server' | 'client', bytes: Uint8Array, now: number): void {
    this.sent++;
    if (to === 'server') this.toServer.push(bytes[0]! >>> 3);
    else this.toClient++;
    const first = to === 'server' ? this.toServer.length === 1 : this.toClient === 1;
    if ((this.o.loseFirstEachWay === true && first) || this.rnd() < (this.o.loss ?? 0)) {
      this.lost++;
      return;
    }
    const copies = this.rnd() < (this.o.duplicate ?? 0) ? 2 : 1;
    for (let i = 0; i < copies; i++)
      this.queue.push({ to, bytes, at: now + 5 + Math.floor(this.rnd() * (this.o.jitter ?? 0)) });
  }
  due(now: number): InFlight[] {
    const ready = this.queue.filter((p) => p.at <= now).sort((a, b) => a.at - b.at);
    this.queue = this.queue.filter((p) => p.at > now);
    return ready;
  }
}

interface ServerKeys {
  keyId: number;
  keyBlock: Uint8Array;
  derivation: string;
  cipher: DataCipher;
}

const ADDRESS = { address: '192.0.2.10', port: 40001 };

class Lab {
  now = 1_760_000_000_000;
  session: ControlSession | undefined;
  readonly handshake: StatelessHandshake;
  readonly serverKeys: ServerKeys[] = [];
  readonly retired: number[] = [];
  readonly actions: ControlAction[] = [];
  ended: ControlAction | undefined;

  constructor(
    readonly net: Net,
    readonly client: TestClient,
    private readonly wrap: WrapConfig,
    private readonly serverFactory: NodeTlsServerFactory,
    private readonly sessionOptions: {
      offerEkm?: boolean;
      ciphers?: DataCipher[];
      renegotiateAfterMs?: number;
      transitionWindowMs?: number;
    } = {},
  ) {
    this.handshake = new StatelessHandshake(wrap, new Uint8Array(randomBytes(32)));
  }

  private onActions(actions: ControlAction[]): void {
    for (const a of actions) {
      this.actions.push(a);
      if (a.kind === 'send') this.net.send('client', a.bytes, this.now);
      else if (a.kind === 'data-keys')
        this.serverKeys.push({
          keyId: a.keyId,
          keyBlock: a.keyBlock,
          derivation: a.derivation,
          cipher: a.cipher,
        });
      else if (a.kind === 'key-retired') {
        this.retired.push(a.keyId);
        this.client.forget(a.keyId);
      } else if (a.kind === 'ended') this.ended = a;
    }
  }

  private toServer(bytes: Uint8Array): void {
    if (this.session && !this.session.isEnded) {
      this.onActions(this.session.receive(bytes, this.now));
      return;
    }
    const out = this.handshake.handle(bytes, ADDRESS, this.now);
    if (out.kind === 'reply') this.net.send('client', out.bytes, this.now);
    else if (out.kind === 'establish' && !this.session) {
      this.session = new ControlSession({
        serverSessionId: out.serverSessionId,
        clientSessionId: out.clientSessionId,
        wrapper: out.wrapper,
        afterStatelessReset: out.afterStatelessReset,
        tls: this.serverFactory.create,
        peerId: 7,
        push: PUSH,
        now: this.now,
        ...this.sessionOptions,
      });
      this.onActions(this.session.receive(out.bytes, this.now));
    }
  }

  /** Runs until `done` or the step bound; each step is `stepMs` of fake time and one event-loop turn. */
  async run(done: () => boolean, { steps = 4000, stepMs = 25 } = {}): Promise<void> {
    for (let i = 0; i < steps; i++) {
      if (done()) return;
      for (const b of this.client.poll(this.now)) this.net.send('server', b, this.now);
      if (this.session && !this.session.isEnded) this.onActions(this.session.poll(this.now));
      for (const p of this.net.due(this.now)) {
        if (p.to === 'server') this.toServer(p.bytes);
        else this.client.receive(p.bytes);
      }
      await new Promise((resolve) => setImmediate(resolve));
      this.now += stepMs;
    }
    assert.fail(`not done within ${steps} steps: client drops ${this.client.drops.slice(-5).join(',')}`);
  }
}

describe('OpenVPN control session: server core against a test client core', () => {
  let pki: Pki;
  let factory: NodeTlsServerFactory;
  const clients: TestClient[] = [];
  const v2Server = TlsCryptV2ServerKey.generate();

  before(() => {
    pki = makePki();
    factory = new NodeTlsServerFactory({ cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert });
  });
  after(() => {
    for (const c of clients) c.close();
    pki?.cleanup();
  });

  function makeClient(
    wrap: ClientWrap,
    {
      peerInfo = PEER_INFO_26,
      stranger = false,
      earlyNegotiation = true,
    }: { peerInfo?: string; stranger?: boolean; earlyNegotiation?: boolean } = {},
  ): TestClient {
    const c = new TestClient({
      wrap,
      peerInfo,
      earlyNegotiation,
      tls: () =>
        new NodeTlsClientEngine({
          cert: stranger ? pki.strangerCert : pki.clientCert,
          key: stranger ? pki.strangerKey : pki.clientKey,
          ca: pki.caCert,
        }),
    });
    clients.push(c);
    return c;
  }

  function v2Pair(): { server: WrapConfig; client: ClientWrap } {
    const made = generateClientKey(v2Server, {
      type: 'user',
      data: Uint8Array.from(Buffer.from('member:1')),
    });
    return {
      server: { kind: 'tls-crypt-v2', serverKey: v2Server },
      client: { kind: 'tls-crypt-v2', clientKey: made.clientKey, wkc: made.wkc },
    };
  }

  function assertKeysAgree(lab: Lab, keyId: number): void {
    const s = lab.serverKeys.find((k) => k.keyId === keyId);
    const c = lab.client.keys.find((k) => k.keyId === keyId);
    assert.ok(s && c, `both sides have keys for key id ${keyId}`);
    assert.equal(s.keyBlock.length, 256);
    assert.ok(
      Buffer.from(s.keyBlock).equals(Buffer.from(c.keyBlock)),
      `key blocks for key id ${keyId} agree`,
    );
    assert.equal(s.derivation, c.derivation);
  }

  it('tls-crypt-v2 + EKM: handshake, push reply, matching data keys', async () => {
    const pair = v2Pair();
    const lab = new Lab(new Net(), makeClient(pair.client), pair.server, factory);
    await lab.run(() => lab.client.keys.length > 0);
    assertKeysAgree(lab, 0);
    assert.equal(lab.serverKeys[0]!.derivation, 'tls-ekm');
    assert.equal(lab.serverKeys[0]!.cipher, 'AES-256-GCM');
    const reply = lab.client.pushReply!;
    for (const o of [
      'topology subnet',
      'ifconfig 10.8.0.2 255.255.255.0',
      'ifconfig-ipv6 fd00:8::2/64 fd00:8::1',
      'route-gateway 10.8.0.1',
      'dhcp-option DNS 10.8.0.1',
      'peer-id 7',
      'cipher AES-256-GCM',
      'key-derivation tls-ekm',
      'protocol-flags cc-exit tls-ekm',
      'ping 10',
      'ping-restart 60',
    ])
      assert.ok(reply.includes(o), `push reply has "${o}": ${reply.join(',')}`);
    const auth = lab.actions.find((a) => a.kind === 'authenticated');
    assert.ok(auth && auth.kind === 'authenticated' && auth.certificate && auth.certificate.length > 100);
    const info = lab.actions.find((a) => a.kind === 'peer-info');
    assert.ok(info && info.kind === 'peer-info' && info.info.version === '2.6.3');
    assert.equal(lab.handshake.counters.established, 1);
  });

  it('the OpenVPN PRF path (a 2.5 client, or a server that does not offer EKM)', async () => {
    for (const [peerInfo, offerEkm] of [
      [PEER_INFO_25, true],
      [PEER_INFO_26, false],
    ] as const) {
      const key = StaticKey.generate();
      const lab = new Lab(
        new Net(),
        makeClient({ kind: 'tls-crypt', key }, { peerInfo }),
        { kind: 'tls-crypt', key },
        factory,
        {
          offerEkm,
        },
      );
      await lab.run(() => lab.client.keys.length > 0);
      assertKeysAgree(lab, 0);
      assert.equal(lab.serverKeys[0]!.derivation, 'openvpn-prf');
      assert.ok(!lab.client.pushReply!.includes('key-derivation tls-ekm'));
    }
  });

  it('tls-crypt-v2 from a 2.5 client (no early negotiation, WKc on the reset only): session at the reset, PRF keys agree, also through 10% loss, reordering and duplication', async () => {
    const plain = new Net();
    const resetsLost = new Net({ loseFirstEachWay: true });
    for (const net of [plain, resetsLost, new Net({ loss: 0.1, duplicate: 0.05, jitter: 120, seed: 7 })]) {
      const pair = v2Pair();
      const lab = new Lab(
        net,
        makeClient(pair.client, { peerInfo: PEER_INFO_25, earlyNegotiation: false }),
        pair.server,
        factory,
      );
      await lab.run(() => lab.client.keys.length > 0, { steps: 8000 });
      assertKeysAgree(lab, 0);
      assert.equal(lab.serverKeys[0]!.derivation, 'openvpn-prf');
      assert.equal(lab.handshake.counters.replies, 0, 'no stateless reply: the session answered the reset');
      assert.ok(lab.handshake.counters.establishedAtReset >= 1);
      assert.ok(lab.client.pushReply!.some((o) => o.startsWith('peer-id ')));
      // The WKc went with the V3 resets only (and their retransmissions): never a P_CONTROL_WKC_V1.
      assert.ok(!net.toServer.includes(P_CONTROL_WKC_V1));
      assert.equal(net.toServer[0], P_CONTROL_HARD_RESET_CLIENT_V3);
      if (net !== plain) assert.ok(net.lost > 0, 'the network did lose packets');
      if (net === resetsLost) {
        // The client's reset was retransmitted (with its WKc) and so was the server's answer.
        assert.ok(net.toServer.filter((o) => o === P_CONTROL_HARD_RESET_CLIENT_V3).length >= 2);
        assert.equal(lab.handshake.counters.establishedAtReset, 1);
      }
      // A renegotiation from the client works the same after the 2.5 start.
      const keyId = lab.client.softReset();
      await lab.run(() => lab.client.keys.some((k) => k.keyId === keyId), { steps: 8000 });
      assertKeysAgree(lab, keyId);
    }
  });

  it('tls-auth (SHA1 and SHA256, key direction) and no wrapping', async () => {
    const key = StaticKey.generate();
    for (const [server, client] of [
      [
        { kind: 'tls-auth', key, direction: 0, digest: 'sha1' },
        { kind: 'tls-auth', key, direction: 1, digest: 'sha1' },
      ],
      [
        { kind: 'tls-auth', key, direction: 0, digest: 'sha256' },
        { kind: 'tls-auth', key, direction: 1, digest: 'sha256' },
      ],
      [
        { kind: 'tls-auth', key, direction: undefined, digest: 'sha1' },
        { kind: 'tls-auth', key, direction: undefined, digest: 'sha1' },
      ],
      [{ kind: 'none' }, { kind: 'none' }],
    ] as const) {
      const lab = new Lab(new Net(), makeClient(client), server, factory);
      await lab.run(() => lab.client.keys.length > 0);
      assertKeysAgree(lab, 0);
    }
  });

  it('10% loss, reordering and duplication: handshake, then a client renegotiation, keys agree', async () => {
    const pair = v2Pair();
    const net = new Net({ loss: 0.1, duplicate: 0.05, jitter: 120, seed: 42 });
    const lab = new Lab(net, makeClient(pair.client), pair.server, factory, { transitionWindowMs: 30_000 });
    await lab.run(() => lab.client.keys.length > 0, { steps: 8000 });
    assertKeysAgree(lab, 0);
    const keyId = lab.client.softReset();
    assert.equal(keyId, 1);
    await lab.run(() => lab.client.keys.some((k) => k.keyId === 1), { steps: 8000 });
    assertKeysAgree(lab, 1);
    assert.ok(net.lost > 0, 'the network did lose packets');
    // The old key stays through the transition window, then is retired.
    assert.deepEqual(lab.retired, []);
    await lab.run(() => lab.retired.includes(0), { steps: 3000, stepMs: 50 });
    assert.deepEqual(lab.session!.keyIds, [1]);
  });

  it('server-started renegotiation (reneg-sec) walks key ids 1..7 and wraps to 1', async () => {
    const key = StaticKey.generate();
    const lab = new Lab(
      new Net(),
      makeClient({ kind: 'tls-crypt', key }),
      { kind: 'tls-crypt', key },
      factory,
      {
        renegotiateAfterMs: 10_000,
        transitionWindowMs: 2_000,
      },
    );
    await lab.run(() => lab.client.keys.length > 0);
    await lab.run(() => lab.serverKeys.length >= 9, { steps: 20000, stepMs: 50 });
    assert.deepEqual(
      lab.serverKeys.map((k) => k.keyId),
      [0, 1, 2, 3, 4, 5, 6, 7, 1],
    );
    for (const id of [1, 2, 3]) assert.ok(lab.client.keys.some((k) => k.keyId === id));
    assert.ok(lab.retired.includes(0) && lab.retired.includes(6));
    assert.equal(lab.ended, undefined);
  });

  it('no common cipher: AUTH_FAILED reaches the client and the session ends with a reason', async () => {
    const key = StaticKey.generate();
    const lab = new Lab(
      new Net(),
      makeClient({ kind: 'tls-crypt', key }, { peerInfo: 'IV_VER=2.6.0\nIV_CIPHERS=BF-CBC\nIV_PROTO=990\n' }),
      { kind: 'tls-crypt', key },
      factory,
    );
    await lab.run(() => lab.ended !== undefined && lab.client.messages.length > 0);
    assert.ok(lab.ended?.kind === 'ended' && lab.ended.reason === 'no-common-cipher');
    assert.match(lab.ended.detail ?? '', /client offers BF-CBC/);
    assert.ok(lab.client.messages[0]!.startsWith('AUTH_FAILED'));
    assert.equal(lab.serverKeys.length, 0);
  });

  it('a certificate from another CA fails TLS: no keys, the session ends', async () => {
    const key = StaticKey.generate();
    const lab = new Lab(
      new Net(),
      makeClient({ kind: 'tls-crypt', key }, { stranger: true }),
      { kind: 'tls-crypt', key },
      factory,
    );
    await lab.run(() => lab.ended !== undefined);
    assert.ok(lab.ended?.kind === 'ended' && lab.ended.reason === 'tls-failed');
    assert.equal(lab.serverKeys.length, 0);
    assert.ok(!lab.actions.some((a) => a.kind === 'authenticated'));
  });

  it('EXIT from the client ends the session (cc-exit)', async () => {
    const key = StaticKey.generate();
    const lab = new Lab(
      new Net(),
      makeClient({ kind: 'tls-crypt', key }),
      { kind: 'tls-crypt', key },
      factory,
    );
    await lab.run(() => lab.client.keys.length > 0);
    lab.client.exit();
    await lab.run(() => lab.ended !== undefined);
    assert.ok(lab.ended?.kind === 'ended' && lab.ended.reason === 'client-exit');
    assert.ok(lab.retired.includes(0));
  });

  it('a handshake that never finishes ends at the handshake window', async () => {
    const key = StaticKey.generate();
    const lab = new Lab(
      new Net(),
      makeClient({ kind: 'tls-crypt', key }),
      { kind: 'tls-crypt', key },
      factory,
    );
    // Let the session be created, then cut the client off.
    await lab.run(() => lab.session !== undefined);
    const session = lab.session!;
    const ended: ControlAction[] = [];
    for (let t = lab.now; t <= lab.now + 61_000 && ended.length === 0; t += 500) {
      ended.push(...session.poll(t).filter((a) => a.kind === 'ended'));
    }
    assert.deepEqual(ended, [{ kind: 'ended', reason: 'handshake-timeout' }]);
  });
});
