/**
 * The control session with a fake TLS engine (no node:tls): the key-method 2 exchange and the data keys it
 * derives, including a client message that arrives in two TLS records, and a key-method message that is
 * malformed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ControlSession, type ControlAction } from '../../src/openvpn/control-session.js';
import { serverWrapper } from '../../src/openvpn/control-wrap.js';
import { openvpnPrfKeyBlock } from '../../src/openvpn/key-derivation.js';
import {
  buildClientKeyMethod,
  parseServerKeyMethod,
  type KeyMethodClient,
} from '../../src/openvpn/key-method.js';
import { sessionId } from '../../src/openvpn/packet.js';
import type { TlsEngine, TlsEngineState } from '../../src/openvpn/tls-engine.js';

class FakeEngine implements TlsEngine {
  state: TlsEngineState = { kind: 'handshaking' };
  readonly sent: Uint8Array[] = [];
  readonly incoming: Uint8Array[] = [];
  receiveCiphertext(): void {}
  sendPlaintext(bytes: Uint8Array): void {
    this.sent.push(bytes);
  }
  takeCiphertext(): Uint8Array[] {
    return [];
  }
  takePlaintext(): Uint8Array[] {
    return this.incoming.splice(0);
  }
  exportKeyingMaterial(): Uint8Array {
    return new Uint8Array(256);
  }
  onActivity(): void {}
  close(): void {}
}

const range = (from: number, n: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);
const KM: KeyMethodClient = {
  preMaster: range(1, 48),
  random1: range(50, 32),
  random2: range(90, 32),
  options: 'V4,dev-type tun,tls-client',
  username: undefined,
  password: undefined,
  peerInfo: 'IV_VER=2.5.9\nIV_CIPHERS=AES-128-GCM\nIV_PROTO=6\n',
};

function setup(): { session: ControlSession; engine: FakeEngine; client: Uint8Array; server: Uint8Array } {
  const engine = new FakeEngine();
  const client = range(200, 8);
  const server = range(210, 8);
  let counter = 0;
  const session = new ControlSession({
    serverSessionId: sessionId(server)!,
    clientSessionId: sessionId(client)!,
    wrapper: serverWrapper({ kind: 'none' }),
    tls: () => engine,
    peerId: 5,
    now: 0,
    random: (n) => range(counter++ * 40, n),
  });
  engine.state = { kind: 'established', peerCertificate: range(0, 100), protocol: 'TLSv1.3' };
  return { session, engine, client, server };
}

function expectKeys(
  actions: ControlAction[],
  engine: FakeEngine,
  client: Uint8Array,
  server: Uint8Array,
): void {
  const keys = actions.find((a) => a.kind === 'data-keys');
  assert.ok(keys && keys.kind === 'data-keys', JSON.stringify(actions.map((a) => a.kind)));
  assert.equal(keys.cipher, 'AES-128-GCM');
  assert.equal(keys.derivation, 'openvpn-prf');
  assert.equal(keys.peerId, 5);
  const reply = parseServerKeyMethod(engine.sent[0]!);
  assert.ok(reply.ok);
  const expected = openvpnPrfKeyBlock({
    preMaster: range(1, 48),
    clientRandom1: KM.random1,
    clientRandom2: KM.random2,
    serverRandom1: reply.message.random1,
    serverRandom2: reply.message.random2,
    clientSessionId: client,
    serverSessionId: server,
  });
  assert.deepEqual(keys.keyBlock, expected);
}

describe('control session with a fake TLS engine', () => {
  it('key-method 2 in one record: our reply, PRF data keys for key id 0', () => {
    const { session, engine, client, server } = setup();
    engine.incoming.push(buildClientKeyMethod(KM));
    const actions = session.poll(10);
    assert.ok(actions.some((a) => a.kind === 'authenticated'));
    expectKeys(actions, engine, client, server);
  });

  it('key-method 2 cut across two TLS records is put together, not refused', () => {
    const { session, engine, client, server } = setup();
    const bytes = buildClientKeyMethod(KM);
    engine.incoming.push(bytes.slice(0, 60));
    const first = session.poll(10);
    assert.ok(!first.some((a) => a.kind === 'ended'), JSON.stringify(first));
    engine.incoming.push(bytes.slice(60));
    expectKeys(session.poll(20), engine, client, server);
  });

  it('a malformed key-method message ends the session with the drop reason', () => {
    const { session, engine } = setup();
    const bytes = buildClientKeyMethod(KM);
    bytes[4] = 1;
    engine.incoming.push(bytes);
    const ended = session.poll(10).find((a) => a.kind === 'ended');
    assert.deepEqual(ended, { kind: 'ended', reason: 'key-method-invalid', detail: 'unknown-key-method' });
  });
});
