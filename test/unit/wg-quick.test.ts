/**
 * wg-quick configuration files (src/config/wg-quick.ts): what wg-quick(8) and wg(8) accept, Weft's stricter
 * checks, every error with its file, line and key, and the canonical writer.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DEFAULT_MTU,
  formatConfig,
  formatIssue,
  parseWgQuick,
  type ConfigIssue,
  type WgQuickConfig,
} from '../../src/config/wg-quick.js';
import { PresharedKey, PrivateKey, PublicKey } from '../../src/crypto/keys.js';
import { formatAddress, formatPrefix } from '../../src/net/ip.js';
import { seededRandom } from '../support/random.js';

const random = seededRandom(0x5eed);
const SERVER = PrivateKey.generate(random);
const CLIENT = PrivateKey.generate(random);
const OTHER = PrivateKey.generate(random);
const PSK = PresharedKey.generate(random);
const priv = (k: PrivateKey): string => k.toBase64();
const pub = (k: PrivateKey): string => k.publicKey().toBase64();

function parsed(text: string, file = 'wg0.conf'): { config: WgQuickConfig; warnings: ConfigIssue[] } {
  const r = parseWgQuick(text, file);
  if (!r.ok) assert.fail(`expected a valid config, got:\n${r.errors.map(formatIssue).join('\n')}`);
  return { config: r.config, warnings: r.warnings };
}

function config(text: string): WgQuickConfig {
  return parsed(text).config;
}

function errors(text: string, file = 'bad.conf'): ConfigIssue[] {
  const r = parseWgQuick(text, file);
  if (r.ok) assert.fail('expected errors, the config parsed');
  return r.errors;
}

/** `file:line:key` of each error. */
function places(issues: ConfigIssue[]): string[] {
  return issues.map((e) => `${e.file}:${e.line}:${e.key ?? ''}`);
}

/** The one error in `text`, which must be at `line` with `key`; returns its message. */
function oneError(text: string, line: number, key: string | undefined): string {
  const es = errors(text);
  assert.deepEqual(places(es), [`bad.conf:${line}:${key ?? ''}`], es.map(formatIssue).join('\n'));
  return es[0]!.message;
}

/** A config as plain data (keys as base64, addresses as text), without peers' line numbers. */
function plain(c: WgQuickConfig): unknown {
  const i = c.interface;
  return {
    interface: {
      ...i,
      privateKey: i.privateKey.toBase64(),
      addresses: i.addresses.map((a) => ({
        address: formatAddress(a.address),
        prefix: formatPrefix(a.prefix),
        bits: a.bits,
        text: a.text,
      })),
    },
    peers: c.peers.map((p) => ({
      ...p,
      line: undefined,
      publicKey: p.publicKey.toBase64(),
      presharedKey: p.presharedKey?.toBase64(),
      allowedIps: p.allowedIps.map(formatPrefix),
    })),
  };
}

const MINIMAL = `[Interface]\nPrivateKey = ${priv(SERVER)}\n`;
const MIN_PEER = `[Peer]\nPublicKey = ${pub(CLIENT)}\nAllowedIPs = 10.0.0.2/32\n`;

/** A gateway with everything: two address families, hooks, two peers. */
const FULL = `# wg0: the office gateway
[Interface]
PrivateKey = ${priv(SERVER)}
ListenPort = 51820
Address = 10.8.0.1/24, fd42:42:42::1/64
MTU = 1380
DNS = 10.8.0.1, fd42:42:42::1, office.example
Table = 1234
FwMark = 0xca6c
PreUp = sysctl -w net.ipv4.ip_forward=1
PostUp = iptables -A FORWARD -i %i -j ACCEPT; iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
PostUp = ip6tables -A FORWARD -i %i -j ACCEPT
PreDown = logger "wg0 going down"
PostDown = iptables -D FORWARD -i %i -j ACCEPT; iptables -t nat -D POSTROUTING -o eth0 -j MASQUERADE
SaveConfig = false

# laptop
[Peer]
PublicKey = ${pub(CLIENT)}
PresharedKey = ${PSK.toBase64()}
AllowedIPs = 10.8.0.2/32, fd42:42:42::2/128

# branch office router, behind NAT
[Peer]
PublicKey = ${pub(OTHER)}
AllowedIPs = 10.8.0.3/32, 192.168.50.0/24
Endpoint = branch.example.net:51820
PersistentKeepalive = 25
`;

describe('wg-quick config: valid files', () => {
  it('reads a full gateway config, every field', () => {
    const { config: c, warnings } = parsed(FULL);
    assert.deepEqual(warnings, []);
    const i = c.interface;
    assert.ok(i.privateKey.equals(SERVER));
    assert.equal(i.listenPort, 51820);
    assert.deepEqual(
      i.addresses.map((a) => [a.text, formatAddress(a.address), formatPrefix(a.prefix), a.bits]),
      [
        ['10.8.0.1/24', '10.8.0.1', '10.8.0.0/24', 24],
        ['fd42:42:42::1/64', 'fd42:42:42::1', 'fd42:42:42::/64', 64],
      ],
    );
    assert.equal(i.addresses[0]!.address.family, 4);
    assert.equal(i.addresses[1]!.prefix.family, 6);
    assert.equal(i.mtu, 1380);
    assert.deepEqual(i.dns, ['10.8.0.1', 'fd42:42:42::1']);
    assert.deepEqual(i.dnsSearch, ['office.example']);
    assert.equal(i.table, 1234);
    assert.equal(i.fwmark, 0xca6c);
    assert.deepEqual(i.preUp, ['sysctl -w net.ipv4.ip_forward=1']);
    assert.deepEqual(i.postUp, [
      'iptables -A FORWARD -i %i -j ACCEPT; iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE',
      'ip6tables -A FORWARD -i %i -j ACCEPT',
    ]);
    assert.deepEqual(i.preDown, ['logger "wg0 going down"']);
    assert.equal(i.postDown.length, 1);
    assert.equal(i.saveConfig, false);

    assert.equal(c.peers.length, 2);
    const [laptop, branch] = c.peers;
    assert.ok(laptop!.publicKey.equals(CLIENT.publicKey()));
    assert.ok(laptop!.presharedKey!.equals(PSK));
    assert.deepEqual(laptop!.allowedIps.map(formatPrefix), ['10.8.0.2/32', 'fd42:42:42::2/128']);
    assert.equal(laptop!.endpoint, undefined);
    assert.equal(laptop!.persistentKeepalive, 0);
    assert.equal(laptop!.line, 18);
    assert.ok(branch!.publicKey.equals(OTHER.publicKey()));
    assert.equal(branch!.presharedKey, undefined);
    assert.deepEqual(branch!.allowedIps.map(formatPrefix), ['10.8.0.3/32', '192.168.50.0/24']);
    assert.deepEqual(branch!.endpoint, { host: 'branch.example.net', port: 51820 });
    assert.equal(branch!.persistentKeepalive, 25);
    assert.equal(branch!.line, 24);
  });

  it('reads a minimal config with the defaults', () => {
    const c = config(MINIMAL);
    const i = c.interface;
    assert.ok(i.privateKey.equals(SERVER));
    assert.equal(i.listenPort, undefined);
    assert.equal('listenPort' in i, false);
    assert.deepEqual(i.addresses, []);
    assert.equal(i.mtu, DEFAULT_MTU);
    assert.equal(DEFAULT_MTU, 1420);
    assert.deepEqual([i.dns, i.dnsSearch], [[], []]);
    assert.equal(i.table, 'auto');
    assert.equal(i.fwmark, undefined);
    assert.deepEqual([i.preUp, i.postUp, i.preDown, i.postDown], [[], [], [], []]);
    assert.equal(i.saveConfig, false);
    assert.deepEqual(c.peers, []);
  });

  it('reads a client config as the WireGuard apps and wg-quick guides write it', () => {
    const text = [
      '[Interface]',
      `PrivateKey = ${priv(CLIENT)}`,
      'Address = 10.8.0.2/32, fd42:42:42::2/128',
      'DNS = 1.1.1.1, 2606:4700:4700::1111',
      '',
      '[Peer]',
      `PublicKey = ${pub(SERVER)}`,
      `PresharedKey = ${PSK.toBase64()}`,
      'AllowedIPs = 0.0.0.0/0, ::/0',
      'Endpoint = vpn.example.com:51820',
      'PersistentKeepalive = 25',
      '',
    ].join('\n');
    const c = config(text);
    assert.deepEqual(
      c.interface.addresses.map((a) => a.text),
      ['10.8.0.2/32', 'fd42:42:42::2/128'],
    );
    assert.deepEqual(c.interface.dns, ['1.1.1.1', '2606:4700:4700::1111']);
    assert.equal(c.peers.length, 1);
    const p = c.peers[0]!;
    assert.deepEqual(p.allowedIps.map(formatPrefix), ['0.0.0.0/0', '::/0']);
    assert.deepEqual(
      p.allowedIps.map((a) => [a.family, a.bits]),
      [
        [4, 0],
        [6, 0],
      ],
    );
    assert.deepEqual(p.endpoint, { host: 'vpn.example.com', port: 51820 });
    assert.equal(p.persistentKeepalive, 25);
  });

  it('reads the format of `wg showconf` (wg(8) CONFIGURATION FILE FORMAT)', () => {
    const text = [
      '[Interface]',
      'ListenPort = 51820',
      'FwMark = 0x1234',
      `PrivateKey = ${priv(SERVER)}`,
      '',
      '[Peer]',
      `PublicKey = ${pub(CLIENT)}`,
      'AllowedIPs = 10.192.122.3/32, 10.192.124.1/24',
      'Endpoint = 192.95.5.67:1234',
      '',
      '[Peer]',
      `PublicKey = ${pub(OTHER)}`,
      'AllowedIPs = 10.192.122.4/32, 192.168.0.0/16',
      'Endpoint = [2607:5300:60:6b0::c05f:543]:2468',
      '',
    ].join('\n');
    const { config: c, warnings } = parsed(text);
    assert.equal(c.interface.fwmark, 0x1234);
    assert.deepEqual(c.peers[0]!.endpoint, { host: '192.95.5.67', port: 1234 });
    assert.deepEqual(c.peers[1]!.endpoint, { host: '2607:5300:60:6b0::c05f:543', port: 2468 });
    // The man page's own example has host bits in 10.192.124.1/24: wg masks it, with a warning.
    assert.deepEqual(c.peers[0]!.allowedIps.map(formatPrefix), ['10.192.122.3/32', '10.192.124.0/24']);
    assert.deepEqual(places(warnings), ['wg0.conf:8:AllowedIPs']);
    assert.match(warnings[0]!.message, /10\.192\.124\.1\/24 has host bits set; using 10\.192\.124\.0\/24/);
  });

  it('takes comments, odd spacing, odd case, CRLF, tabs and a byte-order mark', () => {
    const text = [
      '\uFEFF# generated by hand',
      '   ',
      '  [INTERFACE]   # the only one',
      `privatekey=${priv(SERVER)}#no space before the comment`,
      '\tLISTENPORT\t=\t 51820 \t',
      'address=10.0.0.1/24 ,fd00::1/64,   192.168.7.1',
      '  # a comment line with = signs = in it',
      'mtu =1400',
      'table= OFF',
      'fwmark = Off',
      'saveconfig = FALSE',
      '[ peer ]',
      `PUBLICKEY =   ${pub(CLIENT)}   `,
      'allowedips=10.0.0.2/32,fd00::2/128',
      'ENDPOINT = Vpn.Example.COM:443   # a comment',
      'persistentkeepalive = OFF',
      '',
    ].join('\r\n');
    const c = config(text);
    assert.ok(c.interface.privateKey.equals(SERVER));
    assert.equal(c.interface.listenPort, 51820);
    assert.deepEqual(
      c.interface.addresses.map((a) => a.text),
      ['10.0.0.1/24', 'fd00::1/64', '192.168.7.1/32'],
    );
    assert.equal(c.interface.mtu, 1400);
    assert.equal(c.interface.table, 'off');
    assert.equal(c.interface.fwmark, undefined);
    assert.equal(c.peers.length, 1);
    assert.equal(c.peers[0]!.line, 12);
    assert.deepEqual(c.peers[0]!.endpoint, { host: 'Vpn.Example.COM', port: 443 });
    assert.equal(c.peers[0]!.persistentKeepalive, 0);
  });

  it('strips a comment from a hook command, as wg-quick does', () => {
    const c = config(`${MINIMAL}PostUp = echo up # and a comment\nPostDown = echo 'a#b'\n`);
    assert.deepEqual(c.interface.postUp, ['echo up']);
    assert.deepEqual(c.interface.postDown, ["echo 'a"]);
  });

  it('accumulates list keys in order: Address, DNS, AllowedIPs and the hooks', () => {
    const text = [
      '[Interface]',
      `PrivateKey = ${priv(SERVER)}`,
      'Address = 10.0.0.1/24',
      'DNS = 10.0.0.53',
      'PostUp = first',
      'Address = fd00::1/64 10.1.0.1/16',
      'DNS = corp.example, 10.0.0.54 lan',
      'PostUp = second',
      'PreUp = a',
      'PreUp = b',
      'PreDown = c',
      'PreDown = d',
      'PostDown = e',
      'PostDown =',
      'PostDown = f',
      '[Peer]',
      `PublicKey = ${pub(CLIENT)}`,
      'AllowedIPs = 10.0.0.2/32',
      'AllowedIPs = 10.9.0.0/16, fd00::2/128',
      'AllowedIPs =',
      'AllowedIPs = 172.16.0.0/12',
    ].join('\n');
    const c = config(text);
    const i = c.interface;
    assert.deepEqual(
      i.addresses.map((a) => a.text),
      ['10.0.0.1/24', 'fd00::1/64', '10.1.0.1/16'],
    );
    assert.deepEqual(i.dns, ['10.0.0.53', '10.0.0.54']);
    assert.deepEqual(i.dnsSearch, ['corp.example', 'lan']);
    assert.deepEqual(i.postUp, ['first', 'second']);
    assert.deepEqual(i.preUp, ['a', 'b']);
    assert.deepEqual(i.preDown, ['c', 'd']);
    assert.deepEqual(i.postDown, ['e', 'f'], 'an empty command is a no-op, as in wg-quick');
    assert.deepEqual(c.peers[0]!.allowedIps.map(formatPrefix), [
      '10.0.0.2/32',
      '10.9.0.0/16',
      'fd00::2/128',
      '172.16.0.0/12',
    ]);
  });

  it('reads the value forms of Table, FwMark, PersistentKeepalive, ListenPort and MTU', () => {
    const iface = (extra: string): WgQuickConfig['interface'] => config(`${MINIMAL}${extra}\n`).interface;
    assert.equal(iface('Table = auto').table, 'auto');
    assert.equal(iface('Table = off').table, 'off');
    assert.equal(iface('Table = 51820').table, 51820);
    assert.equal(iface('Table = main').table, 254);
    assert.equal(iface('Table = 4294967295').table, 4294967295);
    assert.equal(iface('FwMark = 0').fwmark, undefined);
    assert.equal(iface('FwMark = 51820').fwmark, 51820);
    assert.equal(iface('FwMark = 0xffffffff').fwmark, 0xffffffff);
    assert.equal(iface('FwMark = 0XCA6C').fwmark, 0xca6c);
    assert.equal(iface('ListenPort = 1').listenPort, 1);
    assert.equal(iface('ListenPort = 65535').listenPort, 65535);
    assert.equal(iface('MTU = 1280').mtu, 1280);
    assert.equal(iface('MTU = 9000').mtu, 9000);
    const keepalive = (v: string): number =>
      config(`${MINIMAL}${MIN_PEER}PersistentKeepalive = ${v}\n`).peers[0]!.persistentKeepalive;
    assert.equal(keepalive('off'), 0);
    assert.equal(keepalive('0'), 0);
    assert.equal(keepalive('65535'), 65535);
  });

  it('reads endpoints: names, IPv4, bracketed IPv6 (canonicalised), zones', () => {
    const endpoint = (v: string): unknown =>
      config(`${MINIMAL}${MIN_PEER}Endpoint = ${v}\n`).peers[0]!.endpoint;
    assert.deepEqual(endpoint('vpn.example.com:51820'), { host: 'vpn.example.com', port: 51820 });
    assert.deepEqual(endpoint('vpn.example.com.:1'), { host: 'vpn.example.com.', port: 1 });
    assert.deepEqual(endpoint('localhost:65535'), { host: 'localhost', port: 65535 });
    assert.deepEqual(endpoint('203.0.113.7:51820'), { host: '203.0.113.7', port: 51820 });
    assert.deepEqual(endpoint('[2001:DB8:0:0::1]:51820'), { host: '2001:db8::1', port: 51820 });
    assert.deepEqual(endpoint('[fe80::1%eth0]:51820'), { host: 'fe80::1%eth0', port: 51820 });
  });

  it('parses 1,000 peers', () => {
    const rnd = seededRandom(1000);
    // Any 32 bytes make a well-formed public key; deriving 1,000 real ones would only time X25519.
    const keys = Array.from({ length: 1000 }, () => PublicKey.fromBytes(rnd(32)).toBase64());
    const peers = keys.map(
      (k, n) =>
        `[Peer]\nPublicKey = ${k}\nAllowedIPs = 10.${n >> 8}.${n & 0xff}.0/24, fd00::${n.toString(16)}/128\n` +
        `Endpoint = 198.51.${n >> 8}.${n & 0xff}:${51820 + n}\n`,
    );
    const c = config(`${MINIMAL}Address = 10.255.0.1/8\n\n${peers.join('\n')}`);
    assert.equal(c.peers.length, 1000);
    assert.equal(c.peers[999]!.publicKey.toBase64(), keys[999]);
    assert.deepEqual(c.peers[999]!.allowedIps.map(formatPrefix), ['10.3.231.0/24', 'fd00::3e7/128']);
    assert.deepEqual(c.peers[999]!.endpoint, { host: '198.51.3.231', port: 52819 });
  });
});

describe('wg-quick config: warnings', () => {
  it('masks AllowedIPs with host bits set, warns about duplicates within a peer and peers with no AllowedIPs', () => {
    const text = [
      MINIMAL.trimEnd(), // lines 1-2
      '[Peer]', // 3
      `PublicKey = ${pub(CLIENT)}`,
      'AllowedIPs = 10.0.0.1/24, fd00::1/64', // 5
      'AllowedIPs = 10.0.0.0/24', // 6: the same prefix again
      '[Peer]', // 7
      `PublicKey = ${pub(OTHER)}`,
    ].join('\n');
    const { config: c, warnings } = parsed(text);
    assert.deepEqual(c.peers[0]!.allowedIps.map(formatPrefix), ['10.0.0.0/24', 'fd00::/64']);
    assert.deepEqual(c.peers[1]!.allowedIps, []);
    assert.deepEqual(places(warnings), [
      'wg0.conf:5:AllowedIPs',
      'wg0.conf:5:AllowedIPs',
      'wg0.conf:6:AllowedIPs',
      'wg0.conf:7:AllowedIPs',
    ]);
    assert.match(warnings[2]!.message, /10\.0\.0\.0\/24 is already listed on line 5/);
    assert.match(warnings[3]!.message, /no AllowedIPs/);
  });

  it('does not warn about a peer whose AllowedIPs are explicitly empty', () => {
    const { warnings } = parsed(`${MINIMAL}[Peer]\nPublicKey = ${pub(CLIENT)}\nAllowedIPs =\n`);
    assert.deepEqual(warnings, []);
  });
});

describe('wg-quick config: errors, each with file, line and key', () => {
  const K = priv(SERVER);

  it('file structure: no [Interface], a second one, unknown sections, keys outside sections, bad lines', () => {
    assert.match(oneError('', 0, undefined), /no \[Interface\] section/);
    assert.match(oneError('# only a comment\n\n', 0, undefined), /no \[Interface\] section/);
    assert.deepEqual(places(errors(MIN_PEER)), ['bad.conf:0:']);
    assert.match(
      oneError(`${MINIMAL}[Interface]\nPrivateKey = ${K}\n`, 3, '[Interface]'),
      /second \[Interface\].*line 1/,
    );
    assert.match(oneError(`${MINIMAL}[Peers]\nPublicKey = x\n`, 3, undefined), /unknown section \[Peers\]/);
    assert.match(oneError(`${MINIMAL}[Peer] extra\n`, 3, undefined), /unknown section/);
    assert.match(oneError(`ListenPort = 1\n${MINIMAL}`, 1, 'ListenPort'), /outside any section/);
    assert.match(oneError(`Colour = blue\n${MINIMAL}`, 1, 'Colour'), /outside any section/);
    assert.match(oneError(`${MINIMAL}ListenPort\n`, 3, undefined), /expected KEY = VALUE/);
    assert.match(oneError(`${MINIMAL} = 5\n`, 3, undefined), /no key/);
  });

  it('unknown keys, and keys in the wrong section', () => {
    assert.match(oneError(`${MINIMAL}Colour = blue\n`, 3, 'Colour'), /unknown key in \[Interface\]/);
    assert.match(oneError(`${MINIMAL}${MIN_PEER}Weight = 3\n`, 6, 'Weight'), /unknown key in \[Peer\]/);
    assert.match(oneError(`${MINIMAL}PublicKey = ${pub(CLIENT)}\n`, 3, 'PublicKey'), /belongs in a \[Peer\]/);
    assert.match(oneError(`${MINIMAL}${MIN_PEER}MTU = 1400\n`, 6, 'MTU'), /belongs in the \[Interface\]/);
  });

  it('a single-valued key set twice; the first line is named', () => {
    assert.match(oneError(`${MINIMAL}MTU = 1400\nmtu = 1400\n`, 4, 'MTU'), /set twice.*first on line 3/);
    assert.match(oneError(`${MINIMAL}PrivateKey = ${K}\n`, 3, 'PrivateKey'), /set twice.*first on line 2/);
    assert.match(
      oneError(`${MINIMAL}${MIN_PEER}Endpoint = a.example:1\nEndpoint = b.example:1\n`, 7, 'Endpoint'),
      /first on line 6/,
    );
  });

  it('PrivateKey: missing or malformed, never quoted', () => {
    assert.match(oneError('[Interface]\nListenPort = 51820\n', 1, 'PrivateKey'), /has no PrivateKey/);
    for (const bad of [K.slice(0, 43), `${K.slice(0, 42)}B=`, `${K}A`, '', 'not base64 at all!']) {
      const message = oneError(`[Interface]\nPrivateKey = ${bad}\n`, 2, 'PrivateKey');
      assert.equal(message, 'not a valid key (44 characters of base64 for 32 bytes)');
    }
  });

  it('interface values out of range or malformed', () => {
    const cases: [string, string, RegExp][] = [
      ['ListenPort = 0', 'ListenPort', /1-65535/],
      ['ListenPort = 65536', 'ListenPort', /1-65535/],
      ['ListenPort = wireguard', 'ListenPort', /1-65535, got "wireguard"/],
      ['ListenPort =', 'ListenPort', /1-65535/],
      ['MTU = 1279', 'MTU', /1280-9000/],
      ['MTU = 9001', 'MTU', /1280-9000/],
      ['MTU = 1420.5', 'MTU', /1280-9000/],
      ['Table = 0', 'Table', /off, auto, or a routing table number/],
      ['Table = 4294967296', 'Table', /routing table/],
      ['Table = custom', 'Table', /routing table/],
      ['FwMark = 0x100000000', 'FwMark', /32-bit/],
      ['FwMark = 4294967296', 'FwMark', /32-bit/],
      ['FwMark = -1', 'FwMark', /32-bit/],
      ['FwMark = 0xg', 'FwMark', /32-bit/],
      ['SaveConfig = true', 'SaveConfig', /not supported/],
      ['SaveConfig = yes', 'SaveConfig', /true or false/],
      ['Address = 10.0.0.256/24', 'Address', /"10\.0\.0\.256\/24" is not an IP address/],
      ['Address = 10.0.0.1/33', 'Address', /bad prefix length \(0-32 for IPv4\)/],
      ['Address = fd00::1/129', 'Address', /0-128 for IPv6/],
      ['Address = 10.0.0.1/', 'Address', /bad prefix length/],
      ['Address = 10.0.0.1/+8', 'Address', /bad prefix length/],
      ['Address = fe80::1%eth0/64', 'Address', /not an IP address/],
      ['Address = vpn.example', 'Address', /not an IP address/],
      ['Address = 10.0.0.1/24,,10.0.0.2/24', 'Address', /empty entry/],
      ['DNS = 1.1.1', 'DNS', /"1\.1\.1" is not a valid IP address/],
      ['DNS = fd00::zz', 'DNS', /not a valid IP address/],
      ['DNS = bad_domain!', 'DNS', /neither an IP address nor a search domain/],
    ];
    for (const [line, key, message] of cases)
      assert.match(oneError(`${MINIMAL}${line}\n`, 3, key), message, line);
  });

  it('two equal interface addresses, on one line or two, whatever their prefix lengths', () => {
    assert.match(
      oneError(`${MINIMAL}Address = 10.0.0.1/24, 10.0.0.1/24\n`, 3, 'Address'),
      /10\.0\.0\.1 is already given on line 3/,
    );
    assert.match(
      oneError(`${MINIMAL}Address = fd00::1/64\nAddress = FD00:0::1/128\n`, 4, 'Address'),
      /fd00::1 is already given on line 3/,
    );
    // Different hosts in one subnet are fine.
    assert.equal(config(`${MINIMAL}Address = 10.0.0.1/24, 10.0.0.2/24\n`).interface.addresses.length, 2);
  });

  it('PublicKey: missing, malformed, repeated across peers, or the interface’s own', () => {
    assert.match(oneError(`${MINIMAL}[Peer]\nAllowedIPs = 10.0.0.2/32\n`, 3, 'PublicKey'), /no PublicKey/);
    assert.equal(
      oneError(`${MINIMAL}[Peer]\nPublicKey = ${pub(CLIENT).slice(1)}\n`, 4, 'PublicKey'),
      'not a valid key (44 characters of base64 for 32 bytes)',
    );
    const twice = `${MINIMAL}${MIN_PEER}\n[Peer]\nPublicKey = ${pub(CLIENT)}\nAllowedIPs = 10.0.0.3/32\n`;
    assert.match(
      oneError(twice, 8, 'PublicKey'),
      /same key as the \[Peer\] on line 3 \(PublicKey on line 4\)/,
    );
    assert.match(
      oneError(`${MINIMAL}[Peer]\nPublicKey = ${pub(SERVER)}\n`, 4, 'PublicKey'),
      /this interface's own public key \(from PrivateKey on line 2\)/,
    );
  });

  it('PresharedKey malformed, never quoted', () => {
    const bad = PSK.toBase64().slice(0, 40);
    const message = oneError(`${MINIMAL}${MIN_PEER}PresharedKey = ${bad}\n`, 6, 'PresharedKey');
    assert.equal(message, 'not a valid key (44 characters of base64 for 32 bytes)');
  });

  it('AllowedIPs malformed, or claimed by two peers (both lines named)', () => {
    const cases: [string, RegExp][] = [
      ['AllowedIPs = 10.0.0.0/8,', /empty entry/],
      ['AllowedIPs = 10.0.0.0/8 192.168.0.0/16', /bad prefix length/],
      ['AllowedIPs = +10.0.0.0/8', /not an IP address/],
      ['AllowedIPs = 10.0.0.0/40', /0-32 for IPv4/],
      ['AllowedIPs = ::/129', /0-128 for IPv6/],
      ['AllowedIPs = 0.0.0.0/x', /bad prefix length/],
      ['AllowedIPs = example.com/32', /not an IP address/],
    ];
    for (const [line, message] of cases)
      assert.match(
        oneError(`${MINIMAL}[Peer]\nPublicKey = ${pub(CLIENT)}\n${line}\n`, 5, 'AllowedIPs'),
        message,
      );

    const text = [
      MINIMAL.trimEnd(), // 1-2
      '[Peer]', // 3
      `PublicKey = ${pub(CLIENT)}`,
      'AllowedIPs = 10.0.0.2/32, 192.168.0.0/16', // 5
      '[Peer]', // 6
      `PublicKey = ${pub(OTHER)}`,
      'AllowedIPs = 10.0.0.3/32',
      'AllowedIPs = 192.168.1.1/16', // 9: the same prefix, once masked
    ].join('\n');
    const message = oneError(text, 9, 'AllowedIPs');
    assert.equal(message, '192.168.0.0/16 is already routed to the [Peer] on line 3 (AllowedIPs on line 5)');
  });

  it('Endpoint: no port, bad port, unbracketed IPv6, bad host', () => {
    const cases: [string, RegExp][] = [
      ['vpn.example.com', /has no port/],
      ['vpn.example.com:', /port must be a number 1-65535/],
      ['vpn.example.com:0', /port must be a number 1-65535/],
      ['vpn.example.com:65536', /port must be a number 1-65535/],
      ['vpn.example.com:wireguard', /port must be a number/],
      ['fd00::1:51820', /written in brackets/],
      ['[fd00::1]', /must be HOST:PORT/],
      ['[fd00::1:51820', /must be HOST:PORT/],
      ['[vpn.example.com]:51820', /is not an IPv6 address/],
      ['1.2.3.256:51820', /neither an IP address nor a host name/],
      ['bad_host!:51820', /neither an IP address nor a host name/],
      ['-bad.example:51820', /neither an IP address nor a host name/],
      ['', /is empty/],
    ];
    for (const [value, message] of cases)
      assert.match(oneError(`${MINIMAL}${MIN_PEER}Endpoint = ${value}\n`, 6, 'Endpoint'), message, value);
  });

  it('PersistentKeepalive out of range or malformed', () => {
    for (const value of ['65536', '-1', '25s', 'on', ''])
      assert.match(
        oneError(`${MINIMAL}${MIN_PEER}PersistentKeepalive = ${value}\n`, 6, 'PersistentKeepalive'),
        /off or a number of seconds 0-65535/,
      );
  });

  it('collects every error in a file, sorted by line', () => {
    const text = [
      'Stray = 1', // 1
      '[Interface]', // 2
      'ListenPort = 0', // 3
      'Address = 10.0.0.1/24, 10.0.0.300/24', // 4
      'MTU = 100', // 5
      'Frobnicate = yes', // 6
      '[Peer]', // 7: no PublicKey
      'AllowedIPs = 10.0.0.2/32', // 8
      'Endpoint = host', // 9
      '[Peer]', // 10
      `PublicKey = ${pub(CLIENT)}`, // 11
      'AllowedIPs = 10.0.0.2/32', // 12: also on line 8
      'PersistentKeepalive = forever', // 13
      '[Nope]', // 14
      'Whatever = 1', // 15: skipped with its section
    ].join('\n');
    const es = errors(text);
    assert.deepEqual(places(es), [
      'bad.conf:1:Stray',
      'bad.conf:2:PrivateKey',
      'bad.conf:3:ListenPort',
      'bad.conf:4:Address',
      'bad.conf:5:MTU',
      'bad.conf:6:Frobnicate',
      'bad.conf:7:PublicKey',
      'bad.conf:9:Endpoint',
      'bad.conf:12:AllowedIPs',
      'bad.conf:13:PersistentKeepalive',
      'bad.conf:14:',
    ]);
    assert.equal(formatIssue(es[2]!), 'bad.conf:3: ListenPort: must be a port number 1-65535, got "0"');
    const r = parseWgQuick(text, 'bad.conf');
    assert.ok(!r.ok && r.warnings.length === 0);
  });

  it('never puts key material in a message, wherever the key is misplaced', () => {
    const secret = priv(SERVER);
    const psk = PSK.toBase64();
    const text = [
      '[Interface]',
      `PrivateKey = ${secret.slice(0, 43)}`,
      `PrivateKey = ${secret}`,
      `PrivteKey = ${secret}`,
      `ListenPort = ${secret}`,
      `Address = ${secret}`,
      `DNS = ${secret}`,
      secret,
      `${secret} = ${psk}`,
      `${psk} = 1`,
      `[${secret}]`,
      '[Peer]',
      `PublicKey = ${pub(CLIENT)}`,
      `PresharedKey = ${psk}x`,
      `Endpoint = ${psk}:51820`,
      `AllowedIPs = ${psk}`,
      `PersistentKeepalive = ${psk}`,
    ].join('\n');
    const es = errors(text);
    assert.ok(es.length >= 14, `${es.length} errors`);
    const all = es.map(formatIssue).join('\n') + JSON.stringify(es);
    for (const fragment of [secret.slice(0, 20), secret.slice(20, 40), psk.slice(0, 20), psk.slice(20, 40)])
      assert.ok(!all.includes(fragment), `a message quotes key material:\n${all}`);
    // A short unknown key is still named.
    assert.ok(es.some((e) => e.key === 'PrivteKey' && e.line === 4));
  });
});

describe('wg-quick config: issues as text', () => {
  it('formats FILE:LINE: KEY: message, dropping an absent key or line 0', () => {
    assert.equal(formatIssue({ file: 'wg0.conf', line: 7, key: 'MTU', message: 'm' }), 'wg0.conf:7: MTU: m');
    assert.equal(formatIssue({ file: 'wg0.conf', line: 7, message: 'm' }), 'wg0.conf:7: m');
    assert.equal(formatIssue({ file: 'wg0.conf', line: 0, message: 'm' }), 'wg0.conf: m');
  });

  it('names the file it was given', () => {
    const es = errors('[Interface]\n', '/etc/wireguard/office.conf');
    assert.deepEqual(es.map(formatIssue), [
      '/etc/wireguard/office.conf:1: PrivateKey: [Interface] has no PrivateKey',
    ]);
  });
});

describe('wg-quick config: formatConfig', () => {
  it('writes the canonical form', () => {
    const text = formatConfig(config(FULL));
    assert.equal(
      text,
      [
        '[Interface]',
        `PrivateKey = ${priv(SERVER)}`,
        'ListenPort = 51820',
        'Address = 10.8.0.1/24, fd42:42:42::1/64',
        'DNS = 10.8.0.1, fd42:42:42::1, office.example',
        'MTU = 1380',
        'Table = 1234',
        'FwMark = 0xca6c',
        'PreUp = sysctl -w net.ipv4.ip_forward=1',
        'PostUp = iptables -A FORWARD -i %i -j ACCEPT; iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE',
        'PostUp = ip6tables -A FORWARD -i %i -j ACCEPT',
        'PreDown = logger "wg0 going down"',
        'PostDown = iptables -D FORWARD -i %i -j ACCEPT; iptables -t nat -D POSTROUTING -o eth0 -j MASQUERADE',
        '',
        '[Peer]',
        `PublicKey = ${pub(CLIENT)}`,
        `PresharedKey = ${PSK.toBase64()}`,
        'AllowedIPs = 10.8.0.2/32, fd42:42:42::2/128',
        '',
        '[Peer]',
        `PublicKey = ${pub(OTHER)}`,
        'AllowedIPs = 10.8.0.3/32, 192.168.50.0/24',
        'Endpoint = branch.example.net:51820',
        'PersistentKeepalive = 25',
        '',
      ].join('\n'),
    );
    assert.equal(formatConfig(config(MINIMAL)), MINIMAL);
  });

  it('round-trips: parse(format(x)) equals x, and format is a fixed point', () => {
    const sources = [
      FULL,
      MINIMAL,
      `${MINIMAL}Table = off\nFwMark = 1\nAddress = ::ffff:10.0.0.1/96\n${MIN_PEER}Endpoint = [fe80::1%eth0]:1\n`,
      `${MINIMAL}Table = main\nDNS = lan\n[Peer]\nPublicKey = ${pub(CLIENT)}\nAllowedIPs = 10.0.0.9/8\n`,
    ];
    for (const source of sources) {
      const x = config(source);
      const text = formatConfig(x);
      const y = config(text);
      assert.deepEqual(plain(y), plain(x));
      assert.equal(formatConfig(y), text);
    }
  });

  it('round-trips generated configs', () => {
    const rnd = seededRandom(42);
    const byte = (): number => rnd(1)[0]!;
    for (let round = 0; round < 20; round++) {
      const peers: string[] = [];
      const peerCount = byte() % 6;
      for (let n = 0; n < peerCount; n++) {
        const lines = ['[Peer]', `PublicKey = ${PrivateKey.generate(rnd).publicKey().toBase64()}`];
        if (byte() & 1) lines.push(`PresharedKey = ${PresharedKey.generate(rnd).toBase64()}`);
        const v6 = Buffer.from(rnd(16))
          .toString('hex')
          .replace(/(.{4})(?!$)/g, '$1:');
        lines.push(
          `AllowedIPs = 10.${round}.${n}.${byte()}/${24 + (byte() % 9)}, ${v6}/${64 + (byte() % 65)}`,
        );
        if (byte() & 1) lines.push(`Endpoint = [${v6}]:${1 + byte()}`);
        if (byte() & 1) lines.push(`PersistentKeepalive = ${byte()}`);
        peers.push(lines.join('\n'));
      }
      const source = [
        `[Interface]\nPrivateKey = ${PrivateKey.generate(rnd).toBase64()}`,
        byte() & 1 ? `ListenPort = ${1 + byte() * 200}` : '',
        byte() & 1 ? `MTU = ${1280 + byte() * 20}` : '',
        byte() & 1 ? `FwMark = ${byte() * 1000}` : '',
        `Address = 10.${round}.255.${byte()}/${8 + (byte() % 25)}`,
        `${peers.join('\n')}\n`,
      ].join('\n');
      const x = parsed(source).config;
      const y = config(formatConfig(x));
      assert.deepEqual(plain(y), plain(x), source);
    }
  });

  it('keeps the round trip for keys built in code, not parsed', () => {
    const x: WgQuickConfig = {
      interface: {
        privateKey: PrivateKey.fromBytes(new Uint8Array(32).fill(7)),
        addresses: [],
        mtu: DEFAULT_MTU,
        dns: [],
        dnsSearch: [],
        table: 'auto',
        preUp: [],
        postUp: [],
        preDown: [],
        postDown: [],
        saveConfig: false,
      },
      peers: [
        {
          publicKey: PublicKey.fromBytes(new Uint8Array(32).fill(9)),
          allowedIps: [],
          persistentKeepalive: 0,
          line: 0,
        },
      ],
    };
    assert.deepEqual(plain(config(formatConfig(x))), plain(x));
  });

  it('refuses a hook command the format cannot hold', () => {
    const c = config(MINIMAL);
    const withHook = (cmd: string): WgQuickConfig => ({ ...c, interface: { ...c.interface, postUp: [cmd] } });
    assert.throws(() => formatConfig(withHook('echo #1')), RangeError);
    assert.throws(() => formatConfig(withHook('echo\nrm -rf /')), RangeError);
    assert.match(formatConfig(withHook('echo ok')), /^PostUp = echo ok$/m);
  });
});
