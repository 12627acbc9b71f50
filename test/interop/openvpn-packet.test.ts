/**
 * The OpenVPN packet layer (src/openvpn/) against the real openvpn 2.6 client from Debian. The client runs in
 * one lab namespace; a relay (openvpn-udp-relay.ts) owns the "server" UDP socket in another and hands every
 * datagram to this process, where our code unwraps it and builds the answer. For tls-crypt, tls-crypt-v2 with
 * a client key openvpn made from our server key, and tls-crypt-v2 with a client key we made:
 *
 *   1. the client's hard reset (V2, or V3 with its WKc) unwraps with our code, fields as expected;
 *   2. a server reset wrapped with the wrong key is refused by the client (its log says so), and by us;
 *   3. our wrapped P_CONTROL_HARD_RESET_SERVER_V2, ACKing the client's packet id 0, is accepted: the client's
 *      next packet is a P_CONTROL_V1 that ACKs our packet id 0 and carries a TLS record (0x16, handshake);
 *   4. (tls-crypt-v2) with EARLY_NEG_FLAGS asking for it in our reset, that next packet is a P_CONTROL_WKC_V1
 *      that unwraps with the server key alone, as a stateless server needs.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  EARLY_NEG_MASK,
  EARLY_NEG_START,
  P_CONTROL_HARD_RESET_CLIENT_V2,
  P_CONTROL_HARD_RESET_CLIENT_V3,
  P_CONTROL_HARD_RESET_SERVER_V2,
  P_CONTROL_V1,
  P_CONTROL_WKC_V1,
} from '../../src/openvpn/constants.js';
import { announcesEarlyNegotiation, encodeEarlyNegotiation } from '../../src/openvpn/early-negotiation.js';
import {
  parseHeaderByte,
  sameSessionId,
  sessionId,
  type AckPacket,
  type ControlPacket,
  type SessionId,
} from '../../src/openvpn/packet.js';
import {
  parseStaticKeyFile,
  StaticKey,
  TlsCryptChannel,
  TlsCryptKeys,
  tlsCryptUnwrap,
} from '../../src/openvpn/tls-crypt.js';
import {
  decodeMetadata,
  generateClientKey,
  parseClientKey,
  parseServerKey,
  TlsCryptV2ServerKey,
  unwrapWithWkc,
} from '../../src/openvpn/tls-crypt-v2.js';
import { interopSkip, JsonLinesProcess, Lab, run, type ManagedProcess, type Netns } from './harness.js';

const RELAY = fileURLToPath(new URL('./openvpn-udp-relay.js', import.meta.url));
const TOOLS = ['ip', 'openvpn', 'openssl'];
const SERVER_ADDR = '10.91.0.1';
const CLIENT_ADDR = '10.91.0.2';
const PORT = 1194;

type RelayEvent =
  | { ev: 'ready' }
  | { ev: 'sent' }
  | { ev: 'error'; message: string }
  | { ev: 'rx'; address: string; port: number; hex: string };

interface Datagram {
  bytes: Uint8Array;
  address: string;
  port: number;
}

type ClientUnwrap = { ok: true; packet: ControlPacket | AckPacket } | { ok: false; drop: string };

const bytesOf = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, 'hex'));

describe('OpenVPN packet layer against openvpn 2.6', { skip: interopSkip(TOOLS) }, () => {
  let lab: Lab;
  let server: Netns;
  let client: Netns;
  let certFile: string;
  let certKeyFile: string;

  before(async () => {
    lab = await Lab.create('ovpn', { tools: TOOLS });
    server = await lab.netns('s');
    client = await lab.netns('c');
    await lab.veth(server, client, { aAddr: `${SERVER_ADDR}/24`, bAddr: `${CLIENT_ADDR}/24` });
    // A throwaway self-signed certificate: the client needs one to start, the test never gets to verify it.
    certFile = lab.file('client.crt');
    certKeyFile = lab.file('client.key');
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      certKeyFile,
      '-out',
      certFile,
      '-subj',
      '/CN=weft-test-client',
      '-days',
      '1',
    ]);
  });

  after(async () => {
    await lab?.cleanup();
  });

  /** Starts the relay and an openvpn client with `wrapArgs`; both stop at cleanup (or when the case ends). */
  async function start(wrapArgs: string[]): Promise<{
    relay: JsonLinesProcess<RelayEvent>;
    openvpn: ManagedProcess;
    datagrams: () => Datagram[];
    stop: () => Promise<void>;
  }> {
    const relay = new JsonLinesProcess<RelayEvent>(
      server.spawn(process.execPath, [RELAY, SERVER_ADDR, String(PORT)]),
    );
    await relay.next('ready');
    const openvpn = client.spawn('openvpn', [
      '--client',
      '--dev',
      'null',
      '--proto',
      'udp',
      '--remote',
      SERVER_ADDR,
      String(PORT),
      '--nobind',
      '--ca',
      certFile,
      '--cert',
      certFile,
      '--key',
      certKeyFile,
      '--verb',
      '4',
      ...wrapArgs,
    ]);
    const datagrams = (): Datagram[] =>
      relay
        .events()
        .filter((e): e is Extract<RelayEvent, { ev: 'rx' }> => e.ev === 'rx')
        .map((e) => ({ bytes: bytesOf(e.hex), address: e.address, port: e.port }));
    const stop = async (): Promise<void> => {
      await openvpn.stop();
      await relay.process.stop();
    };
    return { relay, openvpn, datagrams, stop };
  }

  /** Waits (bounded) for the first datagram from index `from` on whose opcode passes `accept`. */
  async function nextDatagram(
    datagrams: () => Datagram[],
    from: number,
    accept: (opcode: number) => boolean,
    what: string,
    openvpn: ManagedProcess,
  ): Promise<Datagram> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const hit = datagrams()
        .slice(from)
        .find((d) => d.bytes.length > 0 && accept(parseHeaderByte(d.bytes[0]!).opcode));
      if (hit) return hit;
      if (Date.now() > deadline || !openvpn.running)
        throw new Error(`no ${what} within 15 s: ${openvpn.describe()}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  function serverReset(
    clientSid: SessionId,
    ourSid: SessionId,
    payload: Uint8Array = new Uint8Array(0),
  ): ControlPacket {
    return {
      kind: 'control',
      opcode: P_CONTROL_HARD_RESET_SERVER_V2,
      keyId: 0,
      sessionId: ourSid,
      acks: { ids: [0], remoteSessionId: clientSid },
      packetId: 0,
      payload,
    };
  }

  /**
   * Steps 2 and 3 for one case: `serverKeys` are the server-side tls-crypt keys (for V3, those from the WKc),
   * `unwrapClient` unwraps the client's later packets with our code.
   */
  async function answerAndExpectClientHello(
    session: Awaited<ReturnType<typeof start>>,
    reset: Datagram,
    clientSid: SessionId,
    serverKeys: TlsCryptKeys,
    clientKeys: TlsCryptKeys,
    unwrapClient: (bytes: Uint8Array) => ClientUnwrap,
    {
      resetPayload = new Uint8Array(0),
      expectOpcode = P_CONTROL_V1,
    }: { resetPayload?: Uint8Array; expectOpcode?: number } = {},
  ): Promise<void> {
    const { relay, openvpn, datagrams } = session;
    const ourSid = sessionId(randomBytes(8))!;
    const now = Date.now();

    // A reset wrapped with a key the client does not have: we would drop it, and so does the client.
    const stranger = TlsCryptKeys.fromStaticKey(StaticKey.generate(), 'server');
    const forged = new TlsCryptChannel(stranger).wrap(serverReset(clientSid, ourSid), now);
    assert.deepEqual(tlsCryptUnwrap(clientKeys, forged), { ok: false, drop: 'authentication-failed' });
    await relay.request(
      { cmd: 'send', address: reset.address, port: reset.port, hex: Buffer.from(forged).toString('hex') },
      'sent',
    );
    await openvpn.waitForOutput(/tls-crypt unwrap error: packet authentication failed/, 10_000);

    // Our real answer.
    const channel = new TlsCryptChannel(serverKeys);
    const answer = channel.wrap(serverReset(clientSid, ourSid, resetPayload), now);
    assert.ok(tlsCryptUnwrap(clientKeys, answer).ok, 'the client direction of the same key opens our answer');
    const sentAt = datagrams().length;
    await relay.request(
      { cmd: 'send', address: reset.address, port: reset.port, hex: Buffer.from(answer).toString('hex') },
      'sent',
    );

    // The client may still retransmit its reset; the first other packet must be its TLS ClientHello.
    const next = await nextDatagram(
      datagrams,
      sentAt,
      (op) => op !== P_CONTROL_HARD_RESET_CLIENT_V2 && op !== P_CONTROL_HARD_RESET_CLIENT_V3,
      'packet after our reset',
      openvpn,
    );
    const unwrapped = unwrapClient(next.bytes);
    assert.ok(unwrapped.ok, `client packet did not unwrap: ${JSON.stringify(unwrapped)}`);
    const packet = unwrapped.packet;
    assert.equal(packet.kind, 'control');
    assert.ok(packet.kind === 'control');
    assert.equal(packet.opcode, expectOpcode);
    assert.equal(packet.keyId, 0);
    assert.ok(sameSessionId(packet.sessionId, clientSid), 'the client keeps its session id');
    assert.deepEqual(packet.acks.ids, [0], 'it acknowledges our reset (packet id 0)');
    assert.ok(
      packet.acks.remoteSessionId && sameSessionId(packet.acks.remoteSessionId, ourSid),
      'ACK names our session',
    );
    assert.equal(packet.packetId, 1, 'its second control message');
    assert.equal(packet.payload[0], 0x16, 'a TLS handshake record');
    assert.equal(packet.payload[5], 0x01, 'ClientHello');
  }

  it('tls-crypt: unwraps the client reset, answers it, and gets the ClientHello', async () => {
    const keyFile = lab.file('tc.key');
    await run('openvpn', ['--genkey', 'tls-crypt', keyFile]);
    const parsed = parseStaticKeyFile(await fsp.readFile(keyFile, 'utf8'));
    assert.ok(parsed.ok);
    const session = await start(['--tls-crypt', keyFile]);
    try {
      const reset = await nextDatagram(session.datagrams, 0, () => true, 'client reset', session.openvpn);
      const receive = new TlsCryptChannel(TlsCryptKeys.fromStaticKey(parsed.key, 'server'));
      const result = receive.unwrap(reset.bytes);
      assert.ok(result.ok, `reset did not unwrap: ${JSON.stringify(result)}`);
      const packet = result.packet;
      assert.ok(packet.kind === 'control');
      assert.equal(packet.opcode, P_CONTROL_HARD_RESET_CLIENT_V2);
      assert.equal(packet.keyId, 0);
      assert.equal(packet.packetId, 0);
      assert.deepEqual(packet.acks.ids, []);
      assert.equal(packet.acks.remoteSessionId, undefined);
      assert.equal(result.wrap.packetId, 1, 'tls-crypt packet ids start at 1');
      assert.ok(Math.abs(result.wrap.time - Date.now() / 1000) < 60, 'wrap time is the current time');
      // The same datagram again is a replay; with the client's key direction it does not authenticate.
      assert.deepEqual(receive.unwrap(reset.bytes), { ok: false, drop: 'replayed' });
      assert.deepEqual(tlsCryptUnwrap(TlsCryptKeys.fromStaticKey(parsed.key, 'client'), reset.bytes), {
        ok: false,
        drop: 'authentication-failed',
      });
      await answerAndExpectClientHello(
        session,
        reset,
        packet.sessionId,
        receive.keys,
        TlsCryptKeys.fromStaticKey(parsed.key, 'client'),
        (b) => receive.unwrap(b),
      );
    } finally {
      await session.stop();
    }
  });

  /** The V3 cases: the client key file is given; `expect` checks the metadata we recover. */
  async function v3Case(
    serverKey: TlsCryptV2ServerKey,
    clientKeyFile: string,
    expectMetadata: (m: Uint8Array) => void,
    { resendWkc = false } = {},
  ): Promise<void> {
    const session = await start(['--tls-crypt-v2', clientKeyFile]);
    try {
      const reset = await nextDatagram(session.datagrams, 0, () => true, 'client reset', session.openvpn);
      assert.equal(parseHeaderByte(reset.bytes[0]!).opcode, P_CONTROL_HARD_RESET_CLIENT_V3);
      const result = unwrapWithWkc(serverKey, reset.bytes);
      assert.ok(result.ok, `V3 reset did not unwrap: ${JSON.stringify(result)}`);
      const packet = result.packet;
      assert.ok(packet.kind === 'control');
      assert.equal(packet.opcode, P_CONTROL_HARD_RESET_CLIENT_V3);
      assert.equal(packet.packetId, 0);
      assert.deepEqual(packet.acks.ids, []);
      // A 2.6 client announces early negotiation through its first tls-crypt packet id.
      assert.equal((result.wrap.packetId & EARLY_NEG_MASK) >>> 0, EARLY_NEG_START);
      assert.ok(announcesEarlyNegotiation(result.wrap.packetId));
      expectMetadata(result.metadata);
      const fileKey = parseClientKey(await fsp.readFile(clientKeyFile, 'utf8'));
      assert.ok(
        fileKey.ok && fileKey.clientKey.equals(result.clientKey),
        'Kc from WKc is the key in the file',
      );

      // Another server key cannot unwrap the WKc.
      assert.deepEqual(unwrapWithWkc(TlsCryptV2ServerKey.generate(), reset.bytes), {
        ok: false,
        drop: 'wkc-authentication-failed',
      });

      const receive = new TlsCryptChannel(result.keys);
      receive.replay.commit(result.wrap.packetId, result.wrap.time);
      // Asked to, the client appends its WKc again to its next packet, which then unwraps with the server
      // key alone (no state kept from the reset), to the same Kc.
      const statelessUnwrap = (b: Uint8Array): ClientUnwrap => {
        const again = unwrapWithWkc(serverKey, b);
        if (again.ok) assert.ok(again.clientKey.equals(result.clientKey), 'the resent WKc holds the same Kc');
        return again;
      };
      await answerAndExpectClientHello(
        session,
        reset,
        packet.sessionId,
        result.keys,
        TlsCryptKeys.fromStaticKey(result.clientKey, 'client'),
        resendWkc ? statelessUnwrap : (b) => receive.unwrap(b),
        resendWkc
          ? { resetPayload: encodeEarlyNegotiation({ resendWkc: true }), expectOpcode: P_CONTROL_WKC_V1 }
          : {},
      );
    } finally {
      await session.stop();
    }
  }

  it('tls-crypt-v2: openvpn makes a client key from our server key; we unwrap its V3 reset and answer', async () => {
    const serverKey = TlsCryptV2ServerKey.generate();
    const serverFile = lab.file('v2-server.key');
    await fsp.writeFile(serverFile, serverKey.toPem(), { mode: 0o600 });
    const clientFile = lab.file('v2-client-openvpn.key');
    const metadata = 'member:7f3a';
    await run('openvpn', [
      '--tls-crypt-v2',
      serverFile,
      '--genkey',
      'tls-crypt-v2-client',
      clientFile,
      Buffer.from(metadata).toString('base64'),
    ]);
    await v3Case(serverKey, clientFile, (m) => {
      const decoded = decodeMetadata(m);
      assert.equal(decoded.type, 'user');
      assert.ok(decoded.type === 'user');
      assert.equal(Buffer.from(decoded.data).toString(), metadata);
    });
  });

  it('tls-crypt-v2: a client key we generate works in openvpn', async () => {
    const serverKey = TlsCryptV2ServerKey.generate();
    const seconds = BigInt(Math.floor(Date.now() / 1000));
    const made = generateClientKey(serverKey, { type: 'timestamp', seconds });
    const clientFile = lab.file('v2-client-weft.key');
    await fsp.writeFile(clientFile, made.pem, { mode: 0o600 });
    await v3Case(serverKey, clientFile, (m) => {
      assert.deepEqual(decodeMetadata(m), { type: 'timestamp', seconds });
    });
  });

  it('tls-crypt-v2 stateless: asked in our reset (EARLY_NEG_FLAGS), the client resends its WKc in P_CONTROL_WKC_V1', async () => {
    const serverKey = TlsCryptV2ServerKey.generate();
    const made = generateClientKey(serverKey, {
      type: 'user',
      data: Uint8Array.from(Buffer.from('member:wkc')),
    });
    const clientFile = lab.file('v2-client-wkc.key');
    await fsp.writeFile(clientFile, made.pem, { mode: 0o600 });
    await v3Case(
      serverKey,
      clientFile,
      (m) =>
        assert.deepEqual(decodeMetadata(m), {
          type: 'user',
          data: Uint8Array.from(Buffer.from('member:wkc')),
        }),
      { resendWkc: true },
    );
  });

  it('reads a server key made by openvpn --genkey tls-crypt-v2-server', async () => {
    const file = lab.file('v2-server-openvpn.key');
    await run('openvpn', ['--genkey', 'tls-crypt-v2-server', file]);
    const text = await fsp.readFile(file, 'utf8');
    const parsed = parseServerKey(text);
    assert.ok(parsed.ok);
    assert.equal(parsed.key.toPem().trim(), text.trim(), 'our PEM form is byte for byte openvpn’s');
  });
});
