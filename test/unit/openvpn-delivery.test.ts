/**
 * How a member gets its OpenVPN profile: the client packs (src/openvpn/client-pack.ts: content, quoting,
 * `bash -n` / `sh -n` for the shell scripts, the PowerShell text checked by structure), the CLI
 * (`member config --openvpn`, `member pack`, `member rotate --only`, `server crl`, `server openvpn`; output
 * and file modes) and the REST API through fastify.inject() (config download, one-time link, pack, CRL,
 * the OpenAPI document).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildApi } from '../../src/api/server.js';
import { ControlPlane } from '../../src/control/control-plane.js';
import { tokenHash } from '../../src/control/secrets.js';
import { openSqliteStore } from '../../src/control/store-sqlite.js';
import { clientPack, PACK_OSES, PACK_PROTOCOLS, psQuote, shQuote } from '../../src/openvpn/client-pack.js';
import { MemoryStore } from '../support/memory-store.js';

const WEFT = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

const OVPN = `client
dev tun
remote vpn.example.com 1194 udp
<key>
-----BEGIN PRIVATE KEY-----
AAAA
-----END PRIVATE KEY-----
</key>
`;
const WG = `[Interface]
PrivateKey = x
Address = 10.66.0.2/32
DNS = 1.1.1.1

[Peer]
PublicKey = y
Endpoint = vpn.example.com:51820
AllowedIPs = 10.66.0.1/32
`;

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'weft-ovpn-'));
}

/** Checks a POSIX sh script's syntax with bash -n and dash/sh -n. */
function assertShellSyntax(script: string, dir: string, name: string): void {
  const file = join(dir, name);
  writeFileSync(file, script);
  for (const shell of ['bash', 'sh']) {
    const r = spawnSync(shell, ['-n', file], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${shell} -n ${name}: ${r.stderr}`);
  }
}

/**
 * PowerShell is not installed here: check what can be checked without it. Braces, parentheses and brackets
 * balance outside strings and comments; every here-string is closed; the embedded config is intact.
 */
function assertPowerShellStructure(script: string): void {
  const hereStart = script.indexOf("@'\n");
  const hereEnd = script.indexOf("\n'@", hereStart);
  assert.ok(hereStart > 0 && hereEnd > hereStart, 'the config is in a verbatim here-string');
  const code = script.slice(0, hereStart) + script.slice(hereEnd + 3);
  const stack: string[] = [];
  const pairs: Record<string, string> = { ')': '(', '}': '{', ']': '[' };
  for (const line of code.split('\n')) {
    let quote: string | null = null;
    for (let i = 0; i < line.length; i++) {
      const c = line[i]!;
      if (quote) {
        if (c === '`' && quote === '"') i++;
        else if (c === quote) {
          if (quote === "'" && line[i + 1] === "'") i++;
          else quote = null;
        }
        continue;
      }
      if (c === '#') break;
      if (c === "'" || c === '"') quote = c;
      else if ('({['.includes(c)) stack.push(c);
      else if (')}]'.includes(c)) assert.equal(stack.pop(), pairs[c], `unbalanced ${c} in: ${line}`);
    }
    assert.equal(quote, null, `unterminated string in: ${line}`);
  }
  assert.deepEqual(stack, [], 'unclosed brackets');
}

describe('client packs', () => {
  let dir = '';
  before(() => {
    dir = tempDir();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('quotes for sh and PowerShell', () => {
    assert.equal(shQuote("it's"), `'it'\\''s'`);
    assert.equal(psQuote("it's"), "'it''s'");
    const r = spawnSync('sh', ['-c', `printf %s ${shQuote('a\'b $HOME `x` "q"')}`], { encoding: 'utf8' });
    assert.equal(r.stdout, 'a\'b $HOME `x` "q"');
  });

  for (const os of PACK_OSES)
    for (const protocol of PACK_PROTOCOLS)
      it(`${os} / ${protocol}: embeds the config verbatim, and parses`, () => {
        const config = protocol === 'openvpn' ? OVPN : WG;
        const pack = clientPack({ os, protocol, memberName: 'al.ice-1', config });
        assert.equal(pack.fileName, `weft-al.ice-1-${protocol}-${os}.${os === 'windows' ? 'ps1' : 'sh'}`);
        assert.ok(pack.script.includes(config), 'the config, byte for byte');
        if (os === 'windows') {
          assertPowerShellStructure(pack.script);
          assert.match(pack.script, /^\$memberName = 'al\.ice-1'$/m);
          assert.match(pack.script, /^\$ErrorActionPreference = 'Stop'$/m);
          assert.match(pack.script, /IsInRole\(\[Security\.Principal\.WindowsBuiltInRole\]::Administrator\)/);
          assert.match(
            pack.script,
            /'\*S-1-5-18:F' '\*S-1-5-32-544:F'/,
            'the config readable by SYSTEM and admins',
          );
        } else {
          assertShellSyntax(pack.script, dir, pack.fileName);
          assert.match(pack.script, /^#!\/bin\/sh\n/);
          assert.match(pack.script, /^set -eu$/m);
          assert.match(pack.script, /^member='al\.ice-1'$/m);
          assert.match(pack.script, /^umask 077$/m);
        }
        if (os === 'windows' && protocol === 'openvpn') {
          assert.match(pack.script, /ADDLOCAL=OpenVPN\.Service,OpenVPN,Drivers,\$drivers/);
          assert.match(pack.script, /\$drivers = 'Drivers\.Wintun'/);
          assert.match(pack.script, /\$drivers = 'Drivers\.OvpnDco'/);
          assert.match(pack.script, /'\/passive'/);
          assert.match(pack.script, /'config-auto\\weft\.ovpn'/);
          assert.match(pack.script, /Restart-Service -Name 'OpenVPNService'/);
          assert.match(pack.script, /Set-Service -Name 'OpenVPNService' -StartupType Automatic/);
        }
        if (os === 'windows' && protocol === 'wireguard')
          assert.match(pack.script, /& \$wireguard \/installtunnelservice \$configPath/);
        if (os === 'linux' && protocol === 'openvpn') {
          assert.match(pack.script, /apt-get install -y openvpn/);
          assert.match(pack.script, /dnf install -y openvpn/);
          assert.match(pack.script, /cat > \/etc\/openvpn\/client\/weft\.conf <<'WEFT_CONFIG_END'/);
          assert.match(pack.script, /systemctl enable openvpn-client@weft\.service/);
        }
        if (os === 'linux' && protocol === 'wireguard') {
          assert.match(pack.script, /systemctl enable wg-quick@weft\.service/);
          assert.match(pack.script, /openresolv/, 'the DNS line needs resolvconf');
        }
        if (os === 'macos' && protocol === 'openvpn')
          assert.match(pack.script, /brew install --cask tunnelblick/);
        if (os === 'macos' && protocol === 'wireguard')
          assert.match(pack.script, /brew install wireguard-tools wireguard-go/);
      });

  it('refuses a config that would end the here-document or here-string early', () => {
    assert.throws(
      () =>
        clientPack({ os: 'linux', protocol: 'openvpn', memberName: 'a', config: 'x\nWEFT_CONFIG_END\ny\n' }),
      RangeError,
    );
    assert.throws(
      () => clientPack({ os: 'windows', protocol: 'openvpn', memberName: 'a', config: "x\n'@ whoami\n" }),
      RangeError,
    );
  });

  it('Windows, multicast on: the tunnel found by its address gets the lower metric and the group routes', () => {
    for (const protocol of PACK_PROTOCOLS) {
      const config = protocol === 'openvpn' ? OVPN : WG;
      const plain = clientPack({ os: 'windows', protocol, memberName: 'a', config });
      assert.doesNotMatch(
        plain.script,
        /Set-WeftMulticastRoute|InterfaceMetric|New-NetRoute/,
        'multicast off: no step',
      );

      const v4 = clientPack({
        os: 'windows',
        protocol,
        memberName: 'a',
        config,
        multicast: { address4: '10.66.0.2', address6: null },
      });
      assertPowerShellStructure(v4.script);
      const calls = v4.script.split('\n').filter((l) => l.startsWith('Set-WeftMulticastRoute '));
      assert.deepEqual(calls, ["Set-WeftMulticastRoute 'IPv4' '10.66.0.2' '224.0.0.0/4'"]);
      // After the tunnel is installed and started, never before.
      const started =
        protocol === 'openvpn'
          ? "Restart-Service -Name 'OpenVPNService'"
          : '/installtunnelservice $configPath';
      assert.ok(
        v4.script.indexOf(calls[0]!) > v4.script.indexOf(started),
        `${protocol}: routes after the start`,
      );
      assert.match(v4.script, /Get-NetIPAddress -IPAddress \$address/, 'the adapter is found by the address');
      assert.match(
        v4.script,
        /Set-NetIPInterface -InterfaceIndex \$index -AddressFamily \$family -InterfaceMetric 5$/m,
      );
      assert.match(v4.script, /\$route \| Set-NetRoute -RouteMetric 1/);
      assert.match(
        v4.script,
        /New-NetRoute -DestinationPrefix \$prefix -InterfaceIndex \$index -RouteMetric 1/,
      );
      assert.match(v4.script, /AddSeconds\(60\)/, 'the wait for the tunnel is bounded');
      assert.match(v4.script, /Write-Warning/, 'a tunnel that does not come up is a warning, not a hang');

      const both = clientPack({
        os: 'windows',
        protocol,
        memberName: 'a',
        config,
        multicast: { address4: '10.66.0.2', address6: 'fd66::2' },
      });
      assertPowerShellStructure(both.script);
      assert.deepEqual(
        both.script.split('\n').filter((l) => l.startsWith('Set-WeftMulticastRoute ')),
        [
          "Set-WeftMulticastRoute 'IPv4' '10.66.0.2' '224.0.0.0/4'",
          "Set-WeftMulticastRoute 'IPv6' 'fd66::2' 'ff00::/8'",
        ],
      );
      for (const os of ['linux', 'macos'] as const) {
        const other = clientPack({
          os,
          protocol,
          memberName: 'a',
          config,
          multicast: { address4: '10.66.0.2', address6: null },
        });
        assert.doesNotMatch(other.script, /Set-WeftMulticastRoute/, `${os}: no Windows step`);
      }
    }
  });

  it('the control plane hands the member addresses to a pack when multicast is on', () => {
    const store = new MemoryStore();
    ControlPlane.init(store, { endpoint: 'vpn.example.com', subnet: '10.66.0.0/24', subnet6: 'fd66::/64' });
    const cp = new ControlPlane(store);
    const m = cp.addMember('cli', { name: 'alice' });
    return (async () => {
      const off = await cp.deliverClientPack('alice', 'windows', 'wireguard');
      assert.doesNotMatch(off.script, /Set-WeftMulticastRoute/);
      cp.updateSettings('cli', { multicast: true });
      const on = await cp.deliverClientPack('alice', 'windows', 'wireguard');
      const calls = on.script.split('\n').filter((l) => l.startsWith('Set-WeftMulticastRoute '));
      assert.deepEqual(calls, [
        `Set-WeftMulticastRoute 'IPv4' '${m.ip}' '224.0.0.0/4'`,
        `Set-WeftMulticastRoute 'IPv6' '${m.ip6}' 'ff00::/8'`,
      ]);
    })();
  });

  it('runs as far as it can without root: the Linux script stops at its root check', () => {
    const pack = clientPack({ os: 'linux', protocol: 'openvpn', memberName: 'a', config: OVPN });
    // The script comes on standard input: the nobody user may not read the test's private directory.
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-s'], {
      input: pack.script,
      encoding: 'utf8',
    });
    if (r.error) return; // no setpriv: nothing more to check here
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /run this script as root/);
  });
});

describe('the CLI', () => {
  let dir = '';
  let data = '';
  const weft = (...args: string[]) =>
    spawnSync(process.execPath, [WEFT, ...args, '--data', data], {
      encoding: 'utf8',
      env: { ...process.env, WEFT_DATA: '' },
      timeout: 60_000,
    });
  before(() => {
    dir = tempDir();
    data = join(dir, 'data');
    const init = weft('server', 'init', '--endpoint', 'vpn.example.com', '--subnet', '10.66.0.0/24');
    assert.equal(init.status, 0, init.stderr);
    assert.equal(weft('member', 'add', 'alice').status, 0);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('prints the profile, writes it 0600 with -o, and rotates only what --only names', () => {
    const printed = weft('member', 'config', 'alice', '--openvpn');
    assert.equal(printed.status, 0, printed.stderr);
    assert.match(printed.stdout, /^client\ndev tun\nremote vpn\.example\.com 1194 udp$/m);
    assert.match(printed.stdout, /<tls-crypt-v2>\n-----BEGIN OpenVPN tls-crypt-v2 client key-----/);
    const file = join(dir, 'alice.ovpn');
    const written = weft('member', 'config', 'alice', '--openvpn', '-o', file);
    assert.equal(written.status, 0, written.stderr);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(readFileSync(file, 'utf8'), printed.stdout, 'the same credentials until a rotation');
    const qr = weft('member', 'config', 'alice', '--openvpn', '--qr');
    assert.notEqual(qr.status, 0);

    const rotated = weft('member', 'rotate', 'alice', '--only', 'openvpn');
    assert.equal(rotated.status, 0, rotated.stderr);
    assert.match(rotated.stdout, /OpenVPN certificate and key revoked; new certificate serial [0-9a-f]+/);
    assert.doesNotMatch(rotated.stdout, /WireGuard/);
    const show = weft('member', 'show', 'alice');
    assert.match(show.stdout, /^openvpn: +changed since it was downloaded/m, 'the rotation made it stale');
    const after = weft('member', 'config', 'alice', '--openvpn');
    assert.notEqual(after.stdout, printed.stdout);
    assert.match(weft('member', 'show', 'alice').stdout, /^openvpn: +current/m, 'the new one was handed out');
    const link = weft('member', 'link', 'alice', '--openvpn');
    assert.equal(link.status, 0, link.stderr);
    const token = /\/dl\/(\S+)/.exec(link.stdout)?.[1];
    assert.ok(token, link.stdout);
    const store = openSqliteStore(join(data, 'weft.db'));
    try {
      assert.equal(store.linkProtocol(tokenHash(token)), 'openvpn');
    } finally {
      store.close();
    }
    const bad = weft('member', 'rotate', 'alice', '--only', 'ipsec');
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--only must be one of wireguard, openvpn/);

    const crlFile = join(dir, 'crl.pem');
    assert.equal(weft('server', 'crl', '-o', crlFile).status, 0);
    const crl = spawnSync('openssl', ['crl', '-in', crlFile, '-noout', '-text'], { encoding: 'utf8' });
    assert.equal(crl.status, 0, crl.stderr);
    assert.match(crl.stdout, /Serial Number: [0-9A-F]+/);
  });

  it('writes client packs 0600 and refuses an unknown OS', () => {
    const file = join(dir, 'pack.ps1');
    const r = weft('member', 'pack', 'alice', '--os', 'windows', '-o', file);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.match(readFileSync(file, 'utf8'), /<tls-crypt-v2>/);
    const linux = weft('member', 'pack', 'alice', '--os', 'linux', '--protocol', 'wireguard');
    assert.equal(linux.status, 0, linux.stderr);
    assert.match(linux.stdout, /wg-quick@weft/);
    const bad = weft('member', 'pack', 'alice', '--os', 'beos');
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--os must be one of windows, linux, macos/);
  });

  it('shows and changes the openvpn settings, naming a bad field', () => {
    const shown = weft('server', 'openvpn', '--json');
    assert.equal(shown.status, 0, shown.stderr);
    assert.equal(JSON.parse(shown.stdout).udpPort, 1194);
    const changed = weft(
      'server',
      'openvpn',
      '--tcp-port',
      'off',
      '--data-ciphers',
      'AES-128-GCM:AES-256-GCM',
    );
    assert.equal(changed.status, 0, changed.stderr);
    assert.match(changed.stdout, /tcp port: off\n/);
    assert.match(changed.stdout, /data ciphers: AES-128-GCM:AES-256-GCM\n/);
    const bad = weft('server', 'openvpn', '--udp-port', '99999');
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /openvpn\.udpPort/);
  });
});

for (const { name: storeName, open } of [
  { name: 'memory store', open: () => new MemoryStore() },
  { name: 'sqlite store', open: () => openSqliteStore(':memory:') },
]) {
  describe(`the REST API (${storeName})`, () => {
    const store = open();
    const { apiToken } = ControlPlane.init(store, { endpoint: 'vpn.example.com', subnet: '10.66.0.0/24' });
    const cp = new ControlPlane(store);
    const app = buildApi({ controlPlane: cp });
    const auth = { authorization: `Bearer ${apiToken}` };
    before(async () => {
      await app.ready();
      cp.addMember('cli', { name: 'alice' });
    });
    after(async () => {
      await app.close();
      store.close();
    });

    it('downloads the profile with format=openvpn, and records which protocol was handed out', async () => {
      const res = await app.inject({ url: '/api/v1/members/alice/config?format=openvpn', headers: auth });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.headers['content-type'], 'application/x-openvpn-profile');
      assert.equal(res.headers['content-disposition'], 'attachment; filename="alice.ovpn"');
      assert.equal(res.headers['cache-control'], 'no-store');
      assert.match(res.body, /^remote-cert-tls server$/m);
      assert.ok(store.getConfigDelivery('alice', 'openvpn'));
      assert.equal(store.getConfigDelivery('alice'), undefined, 'no WireGuard config was handed out');
      const view = await app.inject({ url: '/api/v1/members/alice', headers: auth });
      const m = view.json<{
        configDownload: unknown;
        openvpnConfigDownload: { at: string; stale: boolean } | null;
      }>();
      assert.equal(m.configDownload, null);
      assert.equal(m.openvpnConfigDownload?.stale, false);
      cp.rotateMember('cli', 'alice', undefined, ['openvpn']);
      await cp.openVpnCredential('alice');
      const after = await app.inject({ url: '/api/v1/members/alice', headers: auth });
      assert.equal(
        after.json<{ openvpnConfigDownload: { stale: boolean } }>().openvpnConfigDownload.stale,
        true,
        'a rotation makes the handed-out profile stale',
      );
      const bad = await app.inject({ url: '/api/v1/members/alice/config?format=ipsec', headers: auth });
      assert.equal(bad.statusCode, 400);
      assert.equal(bad.json<{ error: { field: string } }>().error.field, 'format');
      const missing = await app.inject({ url: '/api/v1/members/bob/config?format=openvpn', headers: auth });
      assert.equal(missing.statusCode, 404);
    });

    it('hands the profile out once through a one-time link made for OpenVPN', async () => {
      const made = await app.inject({
        method: 'POST',
        url: '/api/v1/members/alice/links',
        headers: auth,
        payload: { protocol: 'openvpn' },
      });
      assert.equal(made.statusCode, 201, made.body);
      const { url } = made.json<{ url: string }>();
      const got = await app.inject({ url });
      assert.equal(got.statusCode, 200, got.body);
      assert.equal(got.headers['content-disposition'], 'attachment; filename="alice.ovpn"');
      assert.match(got.body, /<cert>/);
      assert.equal((await app.inject({ url })).statusCode, 404, 'once');
      const wg = await app.inject({ method: 'POST', url: '/api/v1/members/alice/links', headers: auth });
      const wgGot = await app.inject({ url: wg.json<{ url: string }>().url });
      assert.equal(wgGot.headers['content-disposition'], 'attachment; filename="alice.conf"');
      assert.match(wgGot.body, /\[Interface\]/);
    });

    it('serves client packs and the CRL; the OpenAPI document describes them', async () => {
      const pack = await app.inject({ url: '/api/v1/members/alice/pack?os=linux', headers: auth });
      assert.equal(pack.statusCode, 200, pack.body);
      assert.equal(pack.headers['content-disposition'], 'attachment; filename="weft-alice-openvpn-linux.sh"');
      assert.equal(pack.headers['cache-control'], 'no-store');
      assert.match(pack.body, /openvpn-client@weft/);
      const noOs = await app.inject({ url: '/api/v1/members/alice/pack', headers: auth });
      assert.equal(noOs.statusCode, 400);
      assert.equal(noOs.json<{ error: { field: string } }>().error.field, 'os');
      const unauth = await app.inject({ url: '/api/v1/members/alice/pack?os=linux' });
      assert.equal(unauth.statusCode, 401);

      const crl = await app.inject({ url: '/api/v1/openvpn/crl', headers: auth });
      assert.equal(crl.statusCode, 200);
      assert.match(crl.body, /^-----BEGIN X509 CRL-----\n/);

      const doc = (await app.inject({ url: '/api/v1/openapi.json' })).json<{
        paths: Record<string, Record<string, { parameters?: { name: string }[] }>>;
      }>();
      assert.deepEqual(doc.paths['/api/v1/members/{name}/pack']?.get?.parameters?.map((p) => p.name).sort(), [
        'name',
        'os',
        'protocol',
      ]);
      assert.ok(
        doc.paths['/api/v1/members/{name}/config']?.get?.parameters?.some((p) => p.name === 'format'),
      );
      assert.ok(doc.paths['/api/v1/openvpn/crl']?.get);
    });

    it('rotates one protocol with {only}, both without', async () => {
      cp.addMember('cli', { name: 'rot' });
      await cp.openVpnCredential('rot');
      const before = cp.getMember('rot').publicKey;
      const serial = store.getOpenVpnCredential('rot')!.serial;
      const only = await app.inject({
        method: 'POST',
        url: '/api/v1/members/rot/rotate',
        headers: auth,
        payload: { only: 'openvpn' },
      });
      assert.equal(only.statusCode, 200, only.body);
      assert.equal(only.json<{ publicKey: string }>().publicKey, before);
      assert.equal(store.getOpenVpnCredential('rot'), undefined);
      assert.equal(store.findOpenVpnRevocation({ serial })?.reason, 'rotated');
      await cp.openVpnCredential('rot');
      const both = await app.inject({ method: 'POST', url: '/api/v1/members/rot/rotate', headers: auth });
      assert.notEqual(both.json<{ publicKey: string }>().publicKey, before);
      assert.equal(store.getOpenVpnCredential('rot'), undefined);
    });

    it('changes the openvpn settings with PATCH /settings, naming a bad field', async () => {
      const ok = await app.inject({
        method: 'PATCH',
        url: '/api/v1/settings',
        headers: auth,
        payload: { openvpn: { udpPort: 1195 } },
      });
      assert.equal(ok.statusCode, 200, ok.body);
      assert.equal(ok.json<{ openvpn: { udpPort: number; tcpPort: number } }>().openvpn.udpPort, 1195);
      assert.equal(ok.json<{ openvpn: { udpPort: number; tcpPort: number } }>().openvpn.tcpPort, 443);
      const bad = await app.inject({
        method: 'PATCH',
        url: '/api/v1/settings',
        headers: auth,
        payload: { openvpn: { dataCiphers: ['BF-CBC'] } },
      });
      assert.equal(bad.statusCode, 400);
      assert.equal(bad.json<{ error: { field: string } }>().error.field, 'openvpn.dataCiphers[0]');
    });
  });
}
