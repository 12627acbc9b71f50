/**
 * The UAPI protocol (src/wireguard/uapi.ts) without sockets: exact get output, every set key, request streams
 * split anywhere or packed together, and errors that leave the device untouched.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PresharedKey, PrivateKey, type PublicKey } from '../../src/crypto/keys.js';
import { Device, type Action } from '../../src/wireguard/device.js';
import {
  UapiErrno,
  UapiHandler,
  applySet,
  errnoResponse,
  formatGet,
  handshakeTime,
  parseSetRequest,
  parseUapiEndpoint,
  parseUapiPrefix,
  type UapiHooks,
} from '../../src/wireguard/uapi.js';
import { ipv4 } from '../support/packets.js';
import { seededRandom } from '../support/random.js';
import { Network, START, prefix } from '../support/sim.js';

const hex = (key: { bytes: Uint8Array }): string => Buffer.from(key.bytes).toString('hex');
const ZERO = '0'.repeat(64);
const OK = errnoResponse(0);
const EINVAL = errnoResponse(UapiErrno.EINVAL);

let seed = 1000;
function privateKey(): PrivateKey {
  return PrivateKey.generate(seededRandom(seed++));
}
function publicKey(): PublicKey {
  return privateKey().publicKey();
}

interface Fixture {
  device: Device;
  handler: UapiHandler;
  hooks: UapiHooks;
  state: { port: number; fwmark: number; portCalls: number[]; fwmarkCalls: number[]; afterSet: number };
}

function fixture(
  options: { device?: Device; hooks?: Partial<UapiHooks>; maxRequestBytes?: number } = {},
): Fixture {
  const device = options.device ?? new Device({ privateKey: privateKey(), random: seededRandom(seed++) });
  const state = {
    port: 51820,
    fwmark: 0,
    portCalls: [] as number[],
    fwmarkCalls: [] as number[],
    afterSet: 0,
  };
  const hooks: UapiHooks = {
    getListenPort: () => state.port,
    setListenPort: (port) => {
      state.portCalls.push(port);
      state.port = port;
    },
    getFwmark: () => state.fwmark,
    setFwmark: (mark) => {
      state.fwmarkCalls.push(mark);
      state.fwmark = mark;
    },
    afterSet: () => {
      state.afterSet++;
    },
    ...options.hooks,
  };
  const handlerOptions =
    options.maxRequestBytes === undefined ? {} : { maxRequestBytes: options.maxRequestBytes };
  return { device, hooks, state, handler: new UapiHandler(device, hooks, handlerOptions) };
}

/** Sends one complete stream on a fresh connection and returns the answers. */
async function exchange(handler: UapiHandler, input: string): Promise<string> {
  return (await handler.handle(input)).output;
}

function set(...lines: string[]): string {
  return `set=1\n${lines.map((l) => `${l}\n`).join('')}\n`;
}

/** A snapshot of everything a set can change, for "nothing was applied" checks. */
function snapshot(f: Fixture): unknown {
  return {
    privateKey: f.device.privateKey ? hex(f.device.privateKey) : null,
    port: f.state.port,
    fwmark: f.state.fwmark,
    peers: f.device.peerStatuses(0).map((p) => ({
      key: p.publicKey.toBase64(),
      psk: p.presharedKey ? hex(p.presharedKey) : null,
      endpoint: p.endpoint,
      allowed: p.allowedIps,
      keepalive: p.persistentKeepalive,
    })),
  };
}

describe('UAPI get', () => {
  it('formats the device and its peers exactly as wireguard-go does', () => {
    const net = new Network();
    const a = net.add('a', '192.0.2.1', 51820);
    const b = net.add('b', '192.0.2.2', 51821);
    net.link(a, b, ['10.0.0.1/32'], ['10.0.0.0/24', 'fd00::/64'], { keepalive: 25 });
    const psk = PresharedKey.generate(seededRandom(7));
    a.device.setPeer({ publicKey: b.key.publicKey(), presharedKey: psk });
    b.device.setPeer({ publicKey: a.key.publicKey(), presharedKey: psk });
    net.send(a, ipv4('10.0.0.1', '10.0.0.2', 'hello'));
    const lonely = publicKey();
    a.device.setPeer({ publicKey: lonely, allowedIps: [prefix('192.168.7.0/24')] });

    const status = a.device.peerStatus(b.key.publicKey(), net.now)!;
    assert.equal(status.lastHandshake, START);
    assert.ok(status.rxBytes > 0 && status.txBytes > 0);
    const text = formatGet(a.device, net.now, { getListenPort: () => 51820, setListenPort: () => undefined });
    assert.equal(
      text,
      [
        `private_key=${hex(a.key)}`,
        'listen_port=51820',
        `public_key=${hex(b.key.publicKey())}`,
        `preshared_key=${hex(psk)}`,
        'protocol_version=1',
        'endpoint=192.0.2.2:51821',
        `last_handshake_time_sec=${START / 1000}`,
        'last_handshake_time_nsec=0',
        `tx_bytes=${status.txBytes}`,
        `rx_bytes=${status.rxBytes}`,
        'persistent_keepalive_interval=25',
        'allowed_ip=10.0.0.0/24',
        'allowed_ip=fd00::/64',
        `public_key=${hex(lonely)}`,
        `preshared_key=${ZERO}`,
        'protocol_version=1',
        'last_handshake_time_sec=0',
        'last_handshake_time_nsec=0',
        'tx_bytes=0',
        'rx_bytes=0',
        'persistent_keepalive_interval=0',
        'allowed_ip=192.168.7.0/24',
        'errno=0',
        '',
        '',
      ].join('\n'),
    );
  });

  it('omits an unset private key, port 0 and fwmark 0, and shows a non-zero fwmark', async () => {
    const bare = fixture({ device: new Device(), hooks: { getListenPort: () => 0 } });
    assert.equal(await exchange(bare.handler, 'get=1\n\n'), 'errno=0\n\n');
    const f = fixture();
    f.state.fwmark = 0x1234;
    const text = await exchange(f.handler, 'get=1\n\n');
    assert.match(text, /^private_key=[0-9a-f]{64}\nlisten_port=51820\nfwmark=4660\nerrno=0\n\n$/);
  });

  it('splits the handshake time into seconds and nanoseconds', () => {
    assert.deepEqual(handshakeTime(0), { sec: 0, nsec: 0 });
    assert.deepEqual(handshakeTime(1_700_000_000_123), { sec: 1_700_000_000, nsec: 123_000_000 });
    assert.deepEqual(handshakeTime(1500.5), { sec: 1, nsec: 500_500_000 });
    assert.deepEqual(handshakeTime(999.9999999999), { sec: 0, nsec: 999_999_999 });
    assert.deepEqual(handshakeTime(-5), { sec: 0, nsec: 0 });
  });

  it('answers get=1 followed by anything but a newline with EINVAL, and keeps going', async () => {
    const f = fixture();
    const out = await exchange(f.handler, 'get=1\nxget=1\n\n');
    assert.ok(out.startsWith(EINVAL));
    assert.match(out.slice(EINVAL.length), /^private_key=.*errno=0\n\n$/s);
  });
});

describe('UAPI set', () => {
  it('applies every key', async () => {
    const f = fixture();
    const old = publicKey();
    f.device.setPeer({ publicKey: old, allowedIps: [prefix('10.99.0.0/16')] });
    const key = privateKey();
    const p1 = publicKey();
    const p2 = publicKey();
    const psk = PresharedKey.generate(seededRandom(3));
    const out = await exchange(
      f.handler,
      set(
        `private_key=${hex(key)}`,
        'listen_port=12345',
        'fwmark=51',
        'replace_peers=true',
        `public_key=${hex(p1)}`,
        'protocol_version=1',
        `preshared_key=${hex(psk)}`,
        'endpoint=[fd00::1]:51820',
        'persistent_keepalive_interval=25',
        'replace_allowed_ips=true',
        'allowed_ip=10.0.0.0/24',
        'allowed_ip=fd00:1::/64',
        `public_key=${hex(p2)}`,
        'endpoint=198.51.100.7:4500',
        'allowed_ip=10.0.1.1/32',
      ),
    );
    assert.equal(out, OK);
    assert.ok(f.device.privateKey?.equals(key));
    assert.deepEqual(f.state.portCalls, [12345]);
    assert.deepEqual(f.state.fwmarkCalls, [51]);
    assert.equal(f.state.afterSet, 1);
    assert.equal(f.device.hasPeer(old), false);
    const s1 = f.device.peerStatus(p1, 0)!;
    assert.ok(s1.presharedKey?.equals(psk));
    assert.deepEqual(s1.endpoint, { address: 'fd00::1', port: 51820 });
    assert.equal(s1.persistentKeepalive, 25);
    assert.deepEqual(s1.allowedIps, ['10.0.0.0/24', 'fd00:1::/64']);
    const s2 = f.device.peerStatus(p2, 0)!;
    assert.deepEqual(s2.endpoint, { address: '198.51.100.7', port: 4500 });
    assert.deepEqual(s2.allowedIps, ['10.0.1.1/32']);
    assert.equal(s2.presharedKey, undefined);
    assert.equal(f.device.peerCount, 2);
    const get = await exchange(f.handler, 'get=1\n\n');
    assert.match(get, /^private_key=[0-9a-f]{64}\nlisten_port=12345\nfwmark=51\npublic_key=/);
    assert.ok(get.includes('endpoint=[fd00::1]:51820\n'));
  });

  it('clamps a private key and clears it with all zeros', async () => {
    const f = fixture();
    const raw = new Uint8Array(32).fill(0xff);
    assert.equal(await exchange(f.handler, set(`private_key=${Buffer.from(raw).toString('hex')}`)), OK);
    const bytes = f.device.privateKey!.bytes;
    assert.equal(bytes[0], 0xf8);
    assert.equal(bytes[31], 0x7f);
    assert.equal(await exchange(f.handler, set(`private_key=${ZERO}`)), OK);
    assert.equal(f.device.privateKey, undefined);
    assert.equal(await exchange(f.handler, 'get=1\n\n'), 'listen_port=51820\nerrno=0\n\n');
  });

  it('accepts upper-case hex and CRLF line ends, as Go does', async () => {
    const f = fixture();
    const p = publicKey();
    const out = await exchange(
      f.handler,
      `set=1\r\npublic_key=${hex(p).toUpperCase()}\r\nallowed_ip=10.5.0.0/16\r\n\r\n`,
    );
    // `set=1\r\n` is not an operation: the connection is closed without an answer, as wireguard-go does.
    assert.equal(out, '');
    const out2 = await exchange(
      f.handler,
      `set=1\npublic_key=${hex(p).toUpperCase()}\r\nallowed_ip=10.5.0.0/16\r\n\r\n`,
    );
    assert.equal(out2, OK);
    assert.deepEqual(f.device.peerStatus(p, 0)!.allowedIps, ['10.5.0.0/16']);
  });

  it('replace_peers removes every peer before the new ones', async () => {
    const f = fixture();
    const [a, b, c] = [publicKey(), publicKey(), publicKey()];
    f.device.setPeer({ publicKey: a });
    f.device.setPeer({ publicKey: b });
    assert.equal(await exchange(f.handler, set('replace_peers=true', `public_key=${hex(c)}`)), OK);
    assert.deepEqual(
      f.device.peerStatuses(0).map((p) => p.publicKey.toBase64()),
      [c.toBase64()],
    );
    assert.equal(await exchange(f.handler, set('replace_peers=true')), OK);
    assert.equal(f.device.peerCount, 0);
  });

  it('remove=true removes the peer and ignores the rest of its section', async () => {
    const f = fixture();
    const [a, b] = [publicKey(), publicKey()];
    f.device.setPeer({ publicKey: a, allowedIps: [prefix('10.0.0.0/8')] });
    const out = await exchange(
      f.handler,
      set(
        `public_key=${hex(a)}`,
        'remove=true',
        'allowed_ip=10.9.0.0/16',
        `public_key=${hex(b)}`,
        'remove=true',
      ),
    );
    assert.equal(out, OK);
    assert.equal(f.device.hasPeer(a), false);
    assert.equal(f.device.hasPeer(b), false);
    // The rest of the section is still validated.
    f.device.setPeer({ publicKey: a });
    assert.equal(
      await exchange(f.handler, set(`public_key=${hex(a)}`, 'remove=true', 'endpoint=nope')),
      EINVAL,
    );
    assert.equal(f.device.hasPeer(a), true);
  });

  it('update_only=true does nothing for a missing peer and updates an existing one', async () => {
    const f = fixture();
    const [missing, present] = [publicKey(), publicKey()];
    f.device.setPeer({ publicKey: present });
    const out = await exchange(
      f.handler,
      set(
        `public_key=${hex(missing)}`,
        'update_only=true',
        'endpoint=192.0.2.9:1',
        'allowed_ip=10.0.0.0/24',
        `public_key=${hex(present)}`,
        'update_only=true',
        'endpoint=192.0.2.8:2',
      ),
    );
    assert.equal(out, OK);
    assert.equal(f.device.hasPeer(missing), false);
    assert.deepEqual(f.device.peerStatus(present, 0)!.endpoint, { address: '192.0.2.8', port: 2 });
    // Later in a section it still drops a peer the section created (wireguard-go removes it again).
    assert.equal(
      await exchange(
        f.handler,
        set(`public_key=${hex(missing)}`, 'endpoint=192.0.2.9:1', 'update_only=true'),
      ),
      OK,
    );
    assert.equal(f.device.hasPeer(missing), false);
    assert.equal(await exchange(f.handler, set(`public_key=${hex(present)}`, 'update_only=yes')), EINVAL);
  });

  it('replace_allowed_ips=true replaces, allowed_ip alone adds, in request order', async () => {
    const f = fixture();
    const p = publicKey();
    f.device.setPeer({ publicKey: p, allowedIps: [prefix('10.0.0.0/24')] });
    assert.equal(await exchange(f.handler, set(`public_key=${hex(p)}`, 'allowed_ip=10.1.0.0/16')), OK);
    assert.deepEqual(f.device.peerStatus(p, 0)!.allowedIps, ['10.0.0.0/24', '10.1.0.0/16']);
    assert.equal(
      await exchange(
        f.handler,
        set(`public_key=${hex(p)}`, 'replace_allowed_ips=true', 'allowed_ip=10.2.0.0/16'),
      ),
      OK,
    );
    assert.deepEqual(f.device.peerStatus(p, 0)!.allowedIps, ['10.2.0.0/16']);
    assert.equal(
      await exchange(
        f.handler,
        set(
          `public_key=${hex(p)}`,
          'allowed_ip=10.3.0.0/16',
          'replace_allowed_ips=true',
          'allowed_ip=10.4.0.1/16',
        ),
      ),
      OK,
    );
    assert.deepEqual(f.device.peerStatus(p, 0)!.allowedIps, ['10.4.0.0/16']); // host bits cleared
    assert.equal(await exchange(f.handler, set(`public_key=${hex(p)}`, 'replace_allowed_ips=true')), OK);
    assert.deepEqual(f.device.peerStatus(p, 0)!.allowedIps, []);
  });

  it('an allowed IP moves from the peer that had it', async () => {
    const f = fixture();
    const [a, b] = [publicKey(), publicKey()];
    f.device.setPeer({ publicKey: a, allowedIps: [prefix('10.0.0.0/24'), prefix('10.0.1.0/24')] });
    assert.equal(await exchange(f.handler, set(`public_key=${hex(b)}`, 'allowed_ip=10.0.0.0/24')), OK);
    assert.deepEqual(f.device.peerStatus(a, 0)!.allowedIps, ['10.0.1.0/24']);
    assert.deepEqual(f.device.peerStatus(b, 0)!.allowedIps, ['10.0.0.0/24']);
  });

  it('an all-zero preshared key removes it', async () => {
    const f = fixture();
    const p = publicKey();
    f.device.setPeer({ publicKey: p, presharedKey: PresharedKey.generate(seededRandom(9)) });
    assert.equal(await exchange(f.handler, set(`public_key=${hex(p)}`, `preshared_key=${ZERO}`)), OK);
    assert.equal(f.device.peerStatus(p, 0)!.presharedKey, undefined);
    assert.ok((await exchange(f.handler, 'get=1\n\n')).includes(`preshared_key=${ZERO}\n`));
  });

  it('ignores a peer with the device’s own public key (the zero key while no private key is set)', async () => {
    const f = fixture();
    const own = f.device.publicKey!;
    assert.equal(await exchange(f.handler, set(`public_key=${hex(own)}`, 'allowed_ip=10.0.0.0/8')), OK);
    assert.equal(f.device.peerCount, 0);
    const bare = fixture({ device: new Device() });
    assert.equal(await exchange(bare.handler, set(`public_key=${ZERO}`, 'allowed_ip=10.0.0.0/8')), OK);
    assert.equal(bare.device.peerCount, 0);
  });

  it('endpoints: IPv4, bracketed IPv6 with an optional zone; nothing else', async () => {
    assert.deepEqual(parseUapiEndpoint('192.0.2.1:51820'), { address: '192.0.2.1', port: 51820 });
    assert.deepEqual(parseUapiEndpoint('[FD00:0::1]:1'), { address: 'fd00::1', port: 1 });
    assert.deepEqual(parseUapiEndpoint('[fe80::1%eth0]:51820'), { address: 'fe80::1%eth0', port: 51820 });
    assert.deepEqual(parseUapiEndpoint('1.2.3.4:007'), { address: '1.2.3.4', port: 7 });
    for (const bad of [
      'fd00::1:51820',
      '[1.2.3.4]:5',
      '1.2.3.4',
      '1.2.3.4:',
      '1.2.3.4:0',
      '1.2.3.4:65536',
      '1.2.3.4:+5',
      'localhost:5',
      ' 1.2.3.4:5',
      '01.2.3.4:5',
      '[fd00::1]5',
      '[fd00::1]',
      '',
    ]) {
      assert.equal(parseUapiEndpoint(bad), null, bad);
    }
    const f = fixture();
    const p = publicKey();
    assert.equal(await exchange(f.handler, set(`public_key=${hex(p)}`, 'endpoint=[fd00::2]:443')), OK);
    assert.ok((await exchange(f.handler, 'get=1\n\n')).includes('\nendpoint=[fd00::2]:443\n'));
  });

  it('allowed IPs need /BITS, no zone, no spaces; host bits are cleared', () => {
    assert.deepEqual(parseUapiPrefix('10.1.2.3/8'), prefix('10.0.0.0/8'));
    assert.deepEqual(parseUapiPrefix('::/0'), prefix('::/0'));
    assert.deepEqual(parseUapiPrefix('10.0.0.0/08'), prefix('10.0.0.0/8'));
    for (const bad of [
      '10.0.0.1',
      '10.0.0.0/33',
      'fd00::/129',
      'fe80::1%eth0/64',
      ' 10.0.0.0/8',
      '10.0.0.0/',
      '10.0.0.0/-1',
      'x/8',
    ])
      assert.equal(parseUapiPrefix(bad), null, bad);
  });

  it('turning persistent keepalive on sends a keepalive at once (with emit), as wireguard-go does', async () => {
    const emitted: Action[][] = [];
    const f = fixture({ hooks: { emit: (actions) => emitted.push(actions), now: () => 5_000 } });
    const p = publicKey();
    f.device.setPeer({ publicKey: p, endpoint: { address: '192.0.2.1', port: 51820 } });
    assert.equal(
      await exchange(f.handler, set(`public_key=${hex(p)}`, 'persistent_keepalive_interval=25')),
      OK,
    );
    assert.equal(emitted.length, 1);
    assert.ok(emitted[0]!.some((a) => a.type === 'send' && a.endpoint.port === 51820)); // a handshake first
    assert.equal(
      await exchange(f.handler, set(`public_key=${hex(p)}`, 'persistent_keepalive_interval=30')),
      OK,
    );
    assert.equal(emitted.length, 1, 'already on: nothing sent');
    assert.equal(f.device.peerStatus(p, 0)!.persistentKeepalive, 30);
  });
});

describe('UAPI set errors', () => {
  async function refused(f: Fixture, request: string, errno: number = UapiErrno.EINVAL): Promise<void> {
    const before = snapshot(f);
    const afterSets = f.state.afterSet;
    assert.equal(await exchange(f.handler, request), errnoResponse(errno), JSON.stringify(request));
    assert.deepEqual(snapshot(f), before, `nothing applied by ${JSON.stringify(request)}`);
    assert.equal(f.state.afterSet, afterSets);
  }

  it('refuses the whole request, leaving the device untouched', async () => {
    const f = fixture();
    const existing = publicKey();
    f.device.setPeer({ publicKey: existing, allowedIps: [prefix('10.0.0.0/24')] });
    const p = publicKey();
    await refused(
      f,
      set(
        `private_key=${hex(privateKey())}`,
        'listen_port=7',
        'replace_peers=true',
        `public_key=${hex(p)}`,
        'allowed_ip=10.0.0.0/24',
        'endpoint=bogus',
      ),
    );
    assert.deepEqual(f.state.portCalls, []);
  });

  it('names the offending key', () => {
    const p = hex(publicKey());
    const cases: [string[], number, string][] = [
      [['foo=bar'], UapiErrno.EINVAL, 'foo'],
      [['no equals sign'], UapiErrno.EPROTO, 'no equals sign'],
      [['=x'], UapiErrno.EINVAL, ''],
      [[`public_key=${p}`, 'listen_port=5'], UapiErrno.EINVAL, 'listen_port'],
      [['protocol_version=1'], UapiErrno.EINVAL, 'protocol_version'],
      [[`public_key=${p}`, 'protocol_version=2'], UapiErrno.EINVAL, 'protocol_version'],
      [['listen_port=65536'], UapiErrno.EINVAL, 'listen_port'],
      [['listen_port='], UapiErrno.EINVAL, 'listen_port'],
      [['listen_port=+5'], UapiErrno.EINVAL, 'listen_port'],
      [['fwmark=4294967296'], UapiErrno.EINVAL, 'fwmark'],
      [['replace_peers=false'], UapiErrno.EINVAL, 'replace_peers'],
      [
        [`public_key=${p}`, 'persistent_keepalive_interval=65536'],
        UapiErrno.EINVAL,
        'persistent_keepalive_interval',
      ],
      [[`public_key=${p}`, 'remove=True'], UapiErrno.EINVAL, 'remove'],
      [[`public_key=${p}`, 'replace_allowed_ips=1'], UapiErrno.EINVAL, 'replace_allowed_ips'],
      [[`public_key=${p}`, 'allowed_ip=10.0.0.1'], UapiErrno.EINVAL, 'allowed_ip'],
    ];
    for (const [lines, errno, key] of cases) {
      const result = parseSetRequest(lines);
      assert.equal(result.ok, false, lines.join(' | '));
      if (result.ok) continue;
      assert.equal(result.error.errno, errno, lines.join(' | '));
      assert.equal(result.error.key, key, lines.join(' | '));
      assert.ok(result.error.message.length > 0);
    }
  });

  it('bad hex and bad key lengths', async () => {
    const f = fixture();
    const good = hex(publicKey());
    for (const value of [
      'zz' + good.slice(2),
      good.slice(1),
      good.slice(2),
      `${good}00`,
      `${good}0`,
      '',
      ` ${good.slice(1)}`,
    ]) {
      for (const key of ['private_key', 'public_key']) await refused(f, set(`${key}=${value}`));
      await refused(f, set(`public_key=${good}`, `preshared_key=${value}`));
    }
    const bad = parseSetRequest([`public_key=${good.slice(2)}`]);
    assert.ok(!bad.ok && bad.error.key === 'public_key');
  });

  it('unknown keys are refused in both sections', async () => {
    const f = fixture();
    await refused(f, set('listen_port=1', 'bogus=1'));
    await refused(f, set(`public_key=${hex(publicKey())}`, 'endpoint=192.0.2.1:1', 'bogus=1'));
    await refused(f, set('a line without equals'), UapiErrno.EPROTO);
  });

  it('a failing listen-port hook is EADDRINUSE and nothing else changes', async () => {
    const f = fixture({
      hooks: {
        setListenPort: () => Promise.reject(new Error('port in use')),
      },
    });
    await refused(
      f,
      set(`private_key=${hex(privateKey())}`, 'listen_port=53', `public_key=${hex(publicKey())}`),
      UapiErrno.EADDRINUSE,
    );
  });

  it('a failing fwmark hook puts the old listen port back', async () => {
    const f = fixture();
    f.hooks.setFwmark = () => {
      throw new Error('no CAP_NET_ADMIN');
    };
    await refused(f, set('listen_port=4000', 'fwmark=3'), UapiErrno.EADDRINUSE);
    assert.deepEqual(f.state.portCalls, [4000, 51820]);
  });

  it('without an fwmark hook, fwmark=0 is accepted and others are EOPNOTSUPP', async () => {
    const f = fixture();
    delete f.hooks.setFwmark;
    assert.equal(await exchange(f.handler, set('fwmark=0')), OK);
    await refused(f, set('fwmark=1'), UapiErrno.EOPNOTSUPP);
  });

  it('applySet reports an exception from afterSet as ENOANO (the change stays)', async () => {
    const device = new Device({ privateKey: privateKey() });
    const p = publicKey();
    const parsed = parseSetRequest([`public_key=${hex(p)}`]);
    assert.ok(parsed.ok);
    const error = await applySet(device, parsed.request, {
      getListenPort: () => 0,
      setListenPort: () => undefined,
      afterSet: () => {
        throw new Error('route sync failed');
      },
    });
    assert.equal(error?.errno, UapiErrno.ENOANO);
    assert.ok(device.hasPeer(p));
  });
});

describe('UAPI streams', () => {
  it('reassembles requests split at every position', async () => {
    const p = publicKey();
    const request =
      set(`public_key=${hex(p)}`, 'endpoint=[fd00::1]:51820', 'allowed_ip=10.0.0.0/24') + 'get=1\n\n';
    for (let cut = 1; cut < request.length; cut++) {
      const f = fixture();
      const session = f.handler.open();
      const first = await session.push(request.slice(0, cut));
      const second = await session.push(Buffer.from(request.slice(cut), 'latin1'));
      const all = [...first.responses, ...second.responses];
      assert.equal(all.length, 2, `cut at ${cut}`);
      assert.equal(all[0], OK);
      assert.ok(all[1]!.includes('allowed_ip=10.0.0.0/24\nerrno=0\n\n'), `cut at ${cut}`);
      assert.equal(first.close || second.close, false);
    }
  });

  it('feeds byte by byte', async () => {
    const f = fixture();
    const session = f.handler.open();
    const text = `${set('listen_port=999')}get=1\n\n`;
    const responses: string[] = [];
    for (const ch of text) responses.push(...(await session.push(ch)).responses);
    assert.equal(responses.length, 2);
    assert.equal(responses[0], OK);
    assert.match(responses[1]!, /\nlisten_port=999\n/);
  });

  it('answers several requests in one chunk, in order', async () => {
    const f = fixture();
    const out = await f.handler.open().push(`get=1\n\n${set('listen_port=5')}${set('bogus=1')}get=1\n\n`);
    assert.equal(out.responses.length, 4);
    assert.match(out.responses[0]!, /listen_port=51820\n/);
    assert.equal(out.responses[1], OK);
    assert.equal(out.responses[2], EINVAL);
    assert.match(out.responses[3]!, /listen_port=5\n/);
    assert.equal(out.close, false);
  });

  it('overlapping pushes are processed in order', async () => {
    const f = fixture();
    const session = f.handler.open();
    const [a, b] = await Promise.all([session.push('set=1\nlisten_port=1'), session.push('23\n\nget=1\n\n')]);
    assert.deepEqual(a.responses, []);
    assert.equal(b.responses[0], OK);
    assert.match(b.responses[1]!, /listen_port=123\n/);
  });

  it('serializes connections: a get waits for a set that is still applying', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const f = fixture();
    f.hooks.setListenPort = async (port) => {
      await gate;
      f.state.port = port;
    };
    const p = publicKey();
    const setting = f.handler.open().push(set('listen_port=7000', `public_key=${hex(p)}`));
    const getting = f.handler.open().push('get=1\n\n');
    await new Promise((r) => setTimeout(r, 10));
    release();
    const [s, g] = await Promise.all([setting, getting]);
    assert.equal(s.responses[0], OK);
    assert.match(g.responses[0]!, /listen_port=7000\npublic_key=/);
  });

  it('closes on an unknown operation, without an answer', async () => {
    for (const garbage of ['GET=1\n\n', 'hello\n', 'x', 'get=2\n', 'set=1x\n', '\n', 'get=1get=1\n']) {
      const f = fixture();
      const out = await f.handler.open().push(garbage);
      assert.deepEqual(out.responses, [], garbage);
      assert.equal(out.close, true, garbage);
    }
    const f = fixture();
    const session = f.handler.open();
    const out = await session.push('get=1\n\nnonsense');
    assert.equal(out.responses.length, 1);
    assert.equal(out.close, true);
    assert.deepEqual(await session.push('get=1\n\n'), {
      responses: [],
      close: true,
      reason: 'invalid operation',
    });
  });

  it('closes on an oversize request or line, applying nothing', async () => {
    const f = fixture({ maxRequestBytes: 4096 });
    const p = publicKey();
    const lines = [`public_key=${hex(p)}`];
    for (let i = 0; i < 300; i++) lines.push(`allowed_ip=10.${i >> 8}.${i & 255}.0/24`);
    const out = await f.handler.open().push(set(...lines));
    assert.equal(out.close, true);
    assert.match(out.reason ?? '', /larger than 4096/);
    assert.equal(f.device.hasPeer(p), false);
    const long = await fixture()
      .handler.open()
      .push(`set=1\nendpoint=${'1'.repeat(70_000)}`);
    assert.equal(long.close, true);
    assert.match(long.reason ?? '', /line longer/);
  });

  it('discards a request cut short by the end of the stream', async () => {
    const f = fixture();
    const session = f.handler.open();
    assert.deepEqual((await session.push('set=1\nlisten_port=9\n')).responses, []);
    session.end();
    assert.equal(session.closed, true);
    assert.deepEqual(f.state.portCalls, []);
    const handled = await f.handler.handle('set=1\nlisten_port=9\n');
    assert.equal(handled.output, '');
    assert.deepEqual(f.state.portCalls, []);
  });
});
