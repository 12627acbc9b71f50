/**
 * The pieces of the OpenVPN control session that need no TLS: the TLS 1.0 PRF against its published test
 * vector, the OpenVPN PRF key expansion against values computed with OpenSSL's TLS1-PRF from the definition
 * in OpenVPN's ssl.c, key-method 2 round trips and every truncation, peer info and the cipher choice, tls-auth
 * round trips and drops, PUSH_REPLY building and splitting.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { P_ACK_V1, P_CONTROL_V1 } from '../../src/openvpn/constants.js';
import { openvpnPrfKeyBlock, tls1Prf } from '../../src/openvpn/key-derivation.js';
import {
  buildClientKeyMethod,
  buildServerKeyMethod,
  parseClientKeyMethod,
  parseServerKeyMethod,
  type KeyMethodClient,
} from '../../src/openvpn/key-method.js';
import { sessionId, type ControlPacket } from '../../src/openvpn/packet.js';
import {
  chooseCipher,
  IV_PROTO_TLS_KEY_EXPORT,
  hasProto,
  parsePeerInfo,
} from '../../src/openvpn/peer-info.js';
import {
  authFailedMessage,
  buildPushReplies,
  MessageSplitter,
  parseClientMessage,
  type PushReplyOptions,
} from '../../src/openvpn/push.js';
import { TlsAuthChannel, TlsAuthKeys, tlsAuthUnwrap, tlsAuthWrap } from '../../src/openvpn/tls-auth.js';
import { StaticKey } from '../../src/openvpn/tls-crypt.js';

const fill = (n: number, b: number): Uint8Array => new Uint8Array(n).fill(b);
const range = (from: number, n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => from + i);

describe('key derivation', () => {
  it('TLS 1.0 PRF: the published test vector (secret 48×0xab, "PRF Testvector", seed 64×0xcd)', () => {
    const out = tls1Prf(fill(48, 0xab), 'PRF Testvector', fill(64, 0xcd), 104);
    assert.equal(
      Buffer.from(out).toString('hex'),
      'd3d4d1e349b5d515044666d51de32bab258cb521b6b053463e354832fd976754' +
        '443bcf9a296519bc289abcbc1187e4ebd31e602353776c408aafb74cbc85eff6' +
        '9255f9788faa184cbb957a9819d84a5d7eb006eb459d3ae8de9810454b8b2d8f' +
        '1afbc655a8c9a013',
    );
  });

  it('TLS 1.0 PRF with an odd-length secret shares the middle byte (RFC 2246 §5)', () => {
    const secret = range(1, 5);
    const seed = Buffer.from('Lseed');
    const pHash = (h: string, s: Uint8Array): Buffer => {
      const a1 = createHmac(h, s).update(seed).digest();
      return createHmac(h, s).update(a1).update(seed).digest();
    };
    const md5 = pHash('md5', secret.subarray(0, 3));
    const sha1 = pHash('sha1', secret.subarray(2));
    const expected = Buffer.alloc(16);
    for (let i = 0; i < 16; i++) expected[i] = md5[i]! ^ sha1[i]!;
    assert.deepEqual(Buffer.from(tls1Prf(secret, 'L', Buffer.from('seed'), 16)), expected);
  });

  it('OpenVPN PRF key expansion (ssl.c generate_key_expansion_openvpn_prf), computed with OpenSSL TLS1-PRF', () => {
    // master = PRF(pre_master, "OpenVPN master secret", c.random1 ‖ s.random1, 48)
    // block  = PRF(master, "OpenVPN key expansion", c.random2 ‖ s.random2 ‖ client sid ‖ server sid, 256)
    // Expected from `openssl kdf -keylen N -kdfopt digest:MD5-SHA1 -kdfopt hexsecret:… -kdfopt hexseed:…
    // TLS1-PRF`, with the label prepended to the seed, for these inputs.
    const block = openvpnPrfKeyBlock({
      preMaster: range(1, 48),
      clientRandom1: fill(32, 0x11),
      serverRandom1: fill(32, 0x22),
      clientRandom2: fill(32, 0x33),
      serverRandom2: fill(32, 0x44),
      clientSessionId: range(1, 8),
      serverSessionId: range(0xa1, 8),
    });
    assert.equal(
      Buffer.from(block).toString('hex'),
      '55c277180e124f703de746e67b0a6f30d1ce7255d6d67c154d790e6e6f58e26eabede6bead3b499d6b65f91214ddecf1' +
        '09f4afda39057cc4e22ad0ecc9678985cb9151df82fc8fb8d212b49a957b8ee7b6805b728911a021fe12f3c13a001749' +
        '68a8de0dbbe1c0c18fc2bcccb24e0d02819cf26b74525662d67dd2a76d3327e7679fb38ba062fc68874c5ce89f60e34f' +
        '79751a6b24f88cf618efb9c9140b5439c22eb4ad0401c4fe416ce47967550fa02c197be772111b26654e009f4afdc285' +
        '60c49f2fb9db88681f9bd880157988e2a681d3964d4378b21618cd237a7cda740561e1baeea13b4c280d634ae08ed3c6' +
        '8e7d9def28e0c07dd05bb3f261db4d76',
    );
    assert.equal(
      Buffer.from(
        tls1Prf(range(1, 48), 'OpenVPN master secret', Buffer.concat([fill(32, 0x11), fill(32, 0x22)]), 48),
      )
        .toString('hex')
        .toUpperCase(),
      '26E2900BB656E1C9D303F44A4D2DD6C766409187E999CE162F47CF9E0A9A3DABB72ED98245F9775D5E83D7580A6D9706',
    );
  });
});

const CLIENT_KM: KeyMethodClient = {
  preMaster: range(0, 48),
  random1: fill(32, 1),
  random2: fill(32, 2),
  options: 'V4,dev-type tun,link-mtu 1549,tun-mtu 1500,proto UDPv4,keysize 256,key-method 2,tls-client',
  username: 'alice',
  password: 'secret',
  peerInfo: 'IV_VER=2.6.3\nIV_PROTO=990\nIV_CIPHERS=AES-256-GCM:CHACHA20-POLY1305\n',
};

describe('key-method 2', () => {
  it('client message: round trip, with and without credentials and peer info', () => {
    for (const km of [
      CLIENT_KM,
      { ...CLIENT_KM, username: undefined, password: undefined },
      { ...CLIENT_KM, peerInfo: undefined },
    ]) {
      const parsed = parseClientKeyMethod(buildClientKeyMethod(km));
      assert.ok(parsed.ok);
      assert.deepEqual(parsed.message, km);
    }
  });

  it('server message: round trip; our server writes empty credentials and no peer info', () => {
    const bytes = buildServerKeyMethod({
      random1: fill(32, 7),
      random2: fill(32, 8),
      options: 'V4,tls-server',
      peerInfo: undefined,
    });
    assert.deepEqual(Array.from(bytes.subarray(0, 5)), [0, 0, 0, 0, 2]);
    const parsed = parseServerKeyMethod(bytes);
    assert.ok(parsed.ok);
    assert.deepEqual(parsed.message, {
      random1: fill(32, 7),
      random2: fill(32, 8),
      options: 'V4,tls-server',
      peerInfo: undefined,
    });
    // The layout, by hand: 5 + 64 + (2 + 14) + 2 + 2 + 2.
    assert.equal(bytes.length, 5 + 64 + 2 + 'V4,tls-server'.length + 1 + 6);
  });

  it('every truncation of a client message is a typed drop, never a throw', () => {
    const bytes = buildClientKeyMethod(CLIENT_KM);
    const seen = new Set<string>();
    for (let n = 0; n < bytes.length; n++) {
      const r = parseClientKeyMethod(bytes.subarray(0, n));
      // Cut right after the password the message is complete (peer info is optional).
      if (r.ok) {
        assert.equal(r.message.peerInfo, undefined);
        continue;
      }
      seen.add(r.drop);
    }
    for (const reason of [
      'truncated-header',
      'truncated-key-source',
      'truncated-string-length',
      'truncated-string',
    ])
      assert.ok(seen.has(reason), `saw ${reason}: ${[...seen].join(',')}`);
  });

  it('bad fields: prefix, key method, unterminated string, oversized options, trailing bytes', () => {
    const good = buildClientKeyMethod(CLIENT_KM);
    const mutate = (f: (b: Uint8Array) => void): Uint8Array => {
      const b = Uint8Array.from(good);
      f(b);
      return b;
    };
    const drop = (b: Uint8Array): string => {
      const r = parseClientKeyMethod(b);
      return r.ok ? 'ok' : r.drop;
    };
    assert.equal(drop(mutate((b) => (b[2] = 1))), 'nonzero-prefix');
    assert.equal(drop(mutate((b) => (b[4] = 1))), 'unknown-key-method');
    const optionsEnd = 5 + 112 + 2 + CLIENT_KM.options.length;
    assert.equal(drop(mutate((b) => (b[optionsEnd] = 0x41))), 'string-not-terminated');
    assert.equal(drop(mutate((b) => ((b[117] = 0x02), (b[118] = 0x01)))), 'options-too-long');
    assert.equal(drop(new Uint8Array([...good, 0])), 'trailing-bytes');
    const noOptions = new Uint8Array([...good.subarray(0, 117), 0, 0]);
    assert.equal(drop(noOptions), 'missing-options');
    // OpenVPN's upper key-method bits are flags: still method 2.
    assert.equal(drop(mutate((b) => (b[4] = 0x12))), 'ok');
  });
});

describe('peer info and cipher choice', () => {
  it('parses the 2.6 client variables into a typed record', () => {
    const r = parsePeerInfo(
      'IV_VER=2.6.3\nIV_PLAT=linux\nIV_TCPNL=1\nIV_MTU=1600\nIV_NCP=2\nIV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\nIV_PROTO=990\nIV_GUI_VER=x\nno equals sign\n',
    );
    assert.ok(r.ok);
    assert.equal(r.info.version, '2.6.3');
    assert.equal(r.info.platform, 'linux');
    assert.equal(r.info.mtu, 1600);
    assert.equal(r.info.tcpnl, true);
    assert.deepEqual(r.info.ciphers, ['AES-256-GCM', 'AES-128-GCM', 'CHACHA20-POLY1305']);
    assert.ok(hasProto(r.info, IV_PROTO_TLS_KEY_EXPORT));
    assert.deepEqual(r.info.other, [['IV_GUI_VER', 'x']]);
  });

  it('refuses bad numbers and oversized input', () => {
    assert.deepEqual(parsePeerInfo('IV_PROTO=abc\n'), { ok: false, drop: 'peer-info-bad-number' });
    assert.deepEqual(parsePeerInfo('x'.repeat(9000)), { ok: false, drop: 'peer-info-too-long' });
    assert.deepEqual(parsePeerInfo('A=1\n'.repeat(300)), { ok: false, drop: 'peer-info-too-many-entries' });
  });

  it('first of the server list the client offers; IV_NCP=2 means the GCM pair; none is a refusal with a reason', () => {
    const info = (text: string): ReturnType<typeof parsePeerInfo> & { ok: true } => {
      const r = parsePeerInfo(text);
      assert.ok(r.ok);
      return r;
    };
    assert.deepEqual(chooseCipher(info('IV_CIPHERS=CHACHA20-POLY1305:AES-128-GCM\n').info), {
      ok: true,
      cipher: 'AES-128-GCM',
    });
    assert.deepEqual(chooseCipher(info('IV_CIPHERS=chacha20-poly1305\n').info), {
      ok: true,
      cipher: 'CHACHA20-POLY1305',
    });
    assert.deepEqual(chooseCipher(info('IV_NCP=2\n').info), { ok: true, cipher: 'AES-256-GCM' });
    assert.deepEqual(chooseCipher(info('IV_CIPHERS=AES-256-GCM\n').info, ['CHACHA20-POLY1305']).ok, false);
    const refused = chooseCipher(info('IV_CIPHERS=BF-CBC\n').info);
    assert.ok(!refused.ok);
    assert.match(
      refused.reason,
      /client offers BF-CBC, server allows AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305/,
    );
  });
});

describe('tls-auth', () => {
  const key = StaticKey.generate();
  const packet: ControlPacket = {
    kind: 'control',
    opcode: P_CONTROL_V1,
    keyId: 2,
    sessionId: sessionId(range(1, 8))!,
    acks: { ids: [4, 5], remoteSessionId: sessionId(range(9, 8))! },
    packetId: 6,
    payload: Uint8Array.of(0x16, 3, 1),
  };

  it('round trips for SHA1 and SHA256 with key directions 0/1 and none', () => {
    for (const digest of ['sha1', 'sha256'] as const) {
      for (const [send, recv] of [
        [0, 1],
        [1, 0],
        [undefined, undefined],
      ] as const) {
        const wrapped = tlsAuthWrap(TlsAuthKeys.fromStaticKey(key, send, digest), packet, {
          packetId: 1,
          time: 1000,
        });
        assert.equal(wrapped.length, 1 + 8 + (digest === 'sha1' ? 20 : 32) + 8 + 1 + 8 + 8 + 4 + 3);
        const r = tlsAuthUnwrap(TlsAuthKeys.fromStaticKey(key, recv, digest), wrapped);
        assert.ok(r.ok, `${digest} ${send}/${recv}`);
        assert.deepEqual(r.packet, packet);
        assert.deepEqual(r.wrap, { packetId: 1, time: 1000 });
        if (send !== undefined) {
          // The same direction on both sides does not authenticate.
          assert.deepEqual(tlsAuthUnwrap(TlsAuthKeys.fromStaticKey(key, send, digest), wrapped), {
            ok: false,
            drop: 'authentication-failed',
          });
        }
      }
    }
  });

  it('the HMAC covers packet id ‖ time ‖ opcode ‖ session id ‖ body (OpenVPN swap_hmac order)', () => {
    const keys = TlsAuthKeys.fromStaticKey(key, 0, 'sha256');
    const wrapped = tlsAuthWrap(keys, packet, { packetId: 9, time: 77 });
    const hmacKey = key.exportBytes().subarray(64, 96);
    const expected = createHmac('sha256', hmacKey)
      .update(wrapped.subarray(41, 49))
      .update(wrapped.subarray(0, 9))
      .update(wrapped.subarray(49))
      .digest();
    assert.deepEqual(Buffer.from(wrapped.subarray(9, 41)), expected);
  });

  it('drops: tampering, truncation, replay, data and V3 opcodes', () => {
    const send = new TlsAuthChannel(TlsAuthKeys.fromStaticKey(key, 0));
    const recv = new TlsAuthChannel(TlsAuthKeys.fromStaticKey(key, 1));
    const wrapped = send.wrap(packet, 5_000_000);
    assert.ok(recv.unwrap(wrapped).ok);
    assert.deepEqual(recv.unwrap(wrapped), { ok: false, drop: 'replayed' });
    const tampered = Uint8Array.from(send.wrap(packet, 5_000_000));
    tampered[tampered.length - 1]! ^= 1;
    assert.deepEqual(recv.unwrap(tampered), { ok: false, drop: 'authentication-failed' });
    for (let n = 0; n < 38; n++) assert.equal(recv.unwrap(wrapped.subarray(0, n)).ok, false);
    assert.deepEqual(recv.unwrap(Uint8Array.of(9 << 3, 0, 0, 1, 2)), { ok: false, drop: 'not-control' });
    assert.deepEqual(recv.unwrap(new Uint8Array([10 << 3, ...new Uint8Array(60)])), {
      ok: false,
      drop: 'needs-tls-crypt-v2',
    });
    const ack = tlsAuthWrap(
      TlsAuthKeys.fromStaticKey(key, 0),
      { kind: 'ack', opcode: P_ACK_V1, keyId: 0, sessionId: packet.sessionId, acks: packet.acks },
      { packetId: 3, time: 5 },
    );
    const r = tlsAuthUnwrap(TlsAuthKeys.fromStaticKey(key, 1), ack);
    assert.ok(r.ok && r.packet.kind === 'ack');
  });
});

describe('PUSH_REPLY and control messages', () => {
  const base: PushReplyOptions = {
    topology: 'subnet',
    ifconfig: { address: '10.8.0.2', netmask: '255.255.255.0' },
    ifconfigIpv6: { address: 'fd00::2', prefixLength: 64, gateway: 'fd00::1' },
    routeGateway: '10.8.0.1',
    routes: [{ network: '192.168.10.0', netmask: '255.255.255.0' }],
    routesIpv6: ['fd10::/48'],
    redirectGateway: { ipv6: true },
    dns: ['10.8.0.1', 'fd00::1'],
    ping: 10,
    pingRestart: 60,
    peerId: 3,
    cipher: 'AES-256-GCM',
    tlsEkm: true,
    ccExit: true,
  };

  it('one message when it fits', () => {
    assert.deepEqual(buildPushReplies(base), [
      'PUSH_REPLY,topology subnet,ifconfig 10.8.0.2 255.255.255.0,ifconfig-ipv6 fd00::2/64 fd00::1,' +
        'route-gateway 10.8.0.1,route 192.168.10.0 255.255.255.0,route-ipv6 fd10::/48,redirect-gateway def1 ipv6,' +
        'dhcp-option DNS 10.8.0.1,dhcp-option DNS6 fd00::1,ping 10,ping-restart 60,peer-id 3,cipher AES-256-GCM,' +
        'key-derivation tls-ekm,protocol-flags cc-exit tls-ekm',
    ]);
    assert.ok(
      !buildPushReplies({
        ...base,
        redirectGateway: { ipv6: false },
        tlsEkm: false,
        ccExit: false,
      })[0]!.includes('tls-ekm'),
    );
  });

  it('split with push-continuation when it exceeds the message size, nothing lost, each part within the size', () => {
    const routes = Array.from({ length: 120 }, (_, i) => ({
      network: `10.${100 + (i >> 8)}.${i & 255}.0`,
      netmask: '255.255.255.0',
    }));
    const messages = buildPushReplies({ ...base, routes });
    assert.ok(messages.length >= 4);
    for (const [i, m] of messages.entries()) {
      assert.ok(m.length <= 1024, `message ${i} is ${m.length} bytes`);
      assert.ok(m.startsWith('PUSH_REPLY,'));
      assert.ok(m.endsWith(i === messages.length - 1 ? ',push-continuation 1' : ',push-continuation 2'));
    }
    const options = messages
      .flatMap((m) => m.slice('PUSH_REPLY,'.length).split(','))
      .filter((o) => !o.startsWith('push-continuation'));
    for (const r of routes) assert.ok(options.includes(`route ${r.network} ${r.netmask}`));
    assert.equal(options.filter((o) => o.startsWith('route ')).length, 120);
  });

  it('refuses bad addresses (a caller mistake) with a RangeError', () => {
    assert.throws(
      () => buildPushReplies({ ...base, ifconfig: { address: '10.8.0.300', netmask: '255.255.255.0' } }),
      RangeError,
    );
    assert.throws(() => buildPushReplies({ ...base, dns: ['not-an-ip,route 0.0.0.0'] }), RangeError);
    assert.throws(() => buildPushReplies({ ...base, cipher: 'AES,route x' }), RangeError);
  });

  it('AUTH_FAILED, client messages and the NUL splitter', () => {
    assert.equal(authFailedMessage(), 'AUTH_FAILED');
    assert.equal(authFailedMessage('no common\0cipher'), 'AUTH_FAILED,no common cipher');
    assert.deepEqual(parseClientMessage('PUSH_REQUEST'), { kind: 'push-request' });
    assert.deepEqual(parseClientMessage('EXIT'), { kind: 'exit' });
    const s = new MessageSplitter();
    assert.deepEqual(s.push(Buffer.from('PUSH_REQ')), []);
    assert.deepEqual(s.push(Buffer.from('UEST\0EXIT\0IV_')), ['PUSH_REQUEST', 'EXIT']);
    assert.deepEqual(s.push(new Uint8Array(3000).fill(0x41)), []);
    assert.equal(s.oversized, 1);
  });
});
