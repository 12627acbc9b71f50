/**
 * The settings printed for the far end of a site: golden swanctl.conf text for a typical site, checked also
 * by a parser of swanctl.conf's syntax (sections in braces, key = value); AWS and pfSense names for our
 * proposals, and a note for each transform the vendor has no equivalent of.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SiteRecord } from '../../src/control/model.js';
import { renderRemoteConfig } from '../../src/control/site-remote-config.js';

const SITE: SiteRecord = {
  name: 'hq',
  enabled: true,
  remoteAddress: '198.51.100.20',
  localId: 'fqdn:gw.example.net',
  remoteId: 'email:ops@example.org',
  auth: 'psk',
  psk: 'a-pre-shared-key-of-enough-length',
  forceShortPsk: false,
  certificate: null,
  privateKey: null,
  caCertificates: null,
  localSubnets: ['10.66.0.0/24'],
  remoteSubnets: ['10.20.0.0/16'],
  mode: 'tunnel',
  ikeProposals: ['aes256gcm16-prfsha256-x25519', 'aes256-sha256-modp2048'],
  espProposals: ['aes256gcm16-modp2048', 'chacha20poly1305'],
  allowLegacyGroups: false,
  ikeLifetimeSec: 14_400,
  childLifetimeSec: 3_600,
  dpdIntervalSec: 30,
  dpdAction: 'restart',
  startAction: 'initiate',
  groups: [],
  multicast: [],
  childPerSubnetPair: false,
  ikeHardLifetimeSec: null,
  childHardLifetimeSec: null,
  fragmentSize: 1_280,
  childRekeyBytes: 0,
  childLifeBytes: 0,
  createdAt: '2026-01-01T00:00:00.000Z',
  updatedAt: '2026-01-01T00:00:00.000Z',
};

type Section = { [key: string]: string | Section };

/** swanctl.conf's syntax (strongSwan settings format): `name {` ... `}`, `key = value`, `#` comments. */
function parseSwanctl(text: string): Section {
  const root: Section = {};
  const stack: Section[] = [root];
  for (const [n, raw] of text.split('\n').entries()) {
    const line = raw.replace(/^\s+|\s+$/g, '');
    if (line === '' || line.startsWith('#')) continue;
    const top = stack[stack.length - 1]!;
    let m: RegExpExecArray | null;
    if ((m = /^([A-Za-z0-9_.-]+)\s*\{$/.exec(line))) {
      const s: Section = {};
      assert.equal(top[m[1]!], undefined, `line ${n + 1}: section ${m[1]} twice`);
      top[m[1]!] = s;
      stack.push(s);
    } else if (line === '}') {
      assert.ok(stack.length > 1, `line ${n + 1}: unbalanced }`);
      stack.pop();
    } else if ((m = /^([A-Za-z0-9_-]+)\s*=\s*(.+)$/.exec(line))) {
      top[m[1]!] = m[2]!;
    } else assert.fail(`line ${n + 1} is not swanctl.conf syntax: ${raw}`);
  }
  assert.equal(stack.length, 1, 'unclosed section');
  return root;
}

test('swanctl: the golden text of a typical site, and it parses as swanctl.conf', () => {
  const text = renderRemoteConfig(SITE, 'swanctl', { host: '203.0.113.1' });
  assert.equal(
    text,
    `# strongSwan swanctl.conf for the far end of Weft site "hq".
# Load with: swanctl --load-all (or put it in /etc/swanctl/conf.d/weft-hq.conf).
connections {
  weft-hq {
    version = 2
    local_addrs = 198.51.100.20
    remote_addrs = 203.0.113.1
    proposals = aes256gcm16-prfsha256-x25519, aes256-sha256-modp2048
    rekey_time = 14400s
    dpd_delay = 30s
    local {
      auth = psk
      id = email:ops@example.org
    }
    remote {
      auth = psk
      id = fqdn:gw.example.net
    }
    children {
      hq {
        local_ts = 10.20.0.0/16
        remote_ts = 10.66.0.0/24
        esp_proposals = aes256gcm16-modp2048, chacha20poly1305
        rekey_time = 3600s
        mode = tunnel
        dpd_action = restart
        start_action = none
      }
    }
  }
}
secrets {
  ike-hq {
    id-1 = email:ops@example.org
    id-2 = fqdn:gw.example.net
    secret = "a-pre-shared-key-of-enough-length"
  }
}
`,
  );
  const parsed = parseSwanctl(text);
  const conn = (parsed['connections'] as Section)['weft-hq'] as Section;
  assert.equal(((conn['children'] as Section)['hq'] as Section)['remote_ts'], '10.66.0.0/24');
  // A site that waits: the far end starts; keyid identities in strongSwan's "#hex" form.
  const waiting = renderRemoteConfig(
    { ...SITE, startAction: 'wait', remoteAddress: null, localId: 'keyid:0a1b' },
    'swanctl',
    { host: 'vpn.example.com' },
  );
  const w = parseSwanctl(waiting);
  const wc = (w['connections'] as Section)['weft-hq'] as Section;
  assert.equal(wc['local_addrs'], '%any');
  assert.equal((wc['remote'] as Section)['id'], 'keyid:#0a1b');
  assert.equal(((wc['children'] as Section)['hq'] as Section)['start_action'], 'start');
});

test('swanctl: one child per subnet pair, hard lifetimes, byte lifetimes and the fragment size', () => {
  const site: SiteRecord = {
    ...SITE,
    localSubnets: ['10.66.0.0/24', '10.67.0.0/24', 'fd00:66::/64'],
    remoteSubnets: ['10.20.0.0/16', 'fd00:20::/64'],
    childPerSubnetPair: true,
    ikeHardLifetimeSec: 16_000,
    childHardLifetimeSec: 4_000,
    fragmentSize: 1_200,
    childRekeyBytes: 4 * 2 ** 30,
    childLifeBytes: 5 * 2 ** 30,
  };
  const text = renderRemoteConfig(site, 'swanctl', { host: '203.0.113.1' });
  assert.match(text, /charon \{ fragment_size = 1200 \}/);
  const conn = (parseSwanctl(text)['connections'] as Section)['weft-hq'] as Section;
  assert.equal(conn['over_time'], '1600s');
  const children = conn['children'] as Section;
  assert.deepEqual(
    Object.entries(children).map(([name, c]) => [
      name,
      (c as Section)['local_ts'],
      (c as Section)['remote_ts'],
    ]),
    [
      ['hq-1', '10.20.0.0/16', '10.66.0.0/24'],
      ['hq-2', '10.20.0.0/16', '10.67.0.0/24'],
      ['hq-3', 'fd00:20::/64', 'fd00:66::/64'],
    ],
  );
  const first = children['hq-1'] as Section;
  assert.deepEqual(
    [first['rekey_time'], first['life_time'], first['rekey_bytes'], first['life_bytes']],
    ['3600s', '4000s', String(4 * 2 ** 30), String(5 * 2 ** 30)],
  );
  const pf = renderRemoteConfig(site, 'pfsense', { host: '203.0.113.1' });
  assert.match(pf, /Split connections: Enable/);
  assert.match(pf, /Life Time: 16000/);
  assert.match(pf, /Rekey Time: 3600\n {4}Life Time: 4000/);
});

test('aws: vendor names for our proposals, and what has no equivalent is said', () => {
  const text = renderRemoteConfig(SITE, 'aws', { host: '203.0.113.1' });
  const line = (label: string) => new RegExp(`^  ${label}: (.*)$`, 'm').exec(text)?.[1];
  assert.equal(line('Phase 1 encryption algorithms'), 'AES256-GCM-16, AES256');
  assert.equal(line('Phase 1 integrity algorithms'), 'SHA2-256', 'the PRF of the AEAD proposal, and sha256');
  assert.equal(line('Phase 1 DH group numbers'), '14 (modp2048)');
  assert.match(text, /x25519|31 \(in "aes256gcm16-prfsha256-x25519"\) has no DH group equivalent on AWS/);
  assert.equal(line('Phase 2 encryption algorithms'), 'AES256-GCM-16');
  assert.match(text, /chacha20poly1305 \(in "chacha20poly1305"\) has no encryption equivalent on AWS/);
  assert.equal(line('Phase 2 DH group numbers'), '14 (modp2048)');
  assert.equal(line('Pre-shared key'), SITE.psk);
  assert.match(text, /AWS accepts 8-64 letters, digits/, 'a key with "-" does not meet AWS rules');
  assert.equal(line('IKE version'), 'ikev2');
  assert.equal(line('DPD timeout action'), 'Restart');
  assert.equal(line('Static IP prefixes'), '10.66.0.0/24');
  assert.equal(line('IP address'), '203.0.113.1');
  const long = renderRemoteConfig({ ...SITE, ikeLifetimeSec: 86_400 }, 'aws', { host: '203.0.113.1' });
  assert.match(long, /Phase 1 lifetime \(seconds\): 28800\n {2}! ours is 86400 s/);
});

test('pfsense: GUI names; AES-GCM by its ICV with the key length apart; one Phase 2 entry per subnet pair', () => {
  const text = renderRemoteConfig({ ...SITE, localSubnets: ['10.66.0.0/24', '10.67.0.0/24'] }, 'pfsense', {
    host: '203.0.113.1',
  });
  assert.match(
    text,
    /Algorithm: AES128-GCM \(16-octet ICV\), Key length 256 bits; Hash: SHA256; DH Group: 31 \(Elliptic Curve 25519, 256 bit\)/,
  );
  assert.match(text, /Algorithm: AES, Key length 256 bits; Hash: SHA256; DH Group: 14 \(2048 bit\)/);
  assert.match(text, /My identifier: User distinguished name: ops@example.org/);
  assert.match(text, /Peer identifier: Distinguished name: gw.example.net/);
  assert.equal((text.match(/Phase 2 entry:/g) ?? []).length, 2);
  assert.match(text, /PFS key group: 14 \(2048 bit\)/);
  assert.match(
    text,
    /Encryption Algorithms: AES128-GCM \(16-octet ICV\), Key length 256 bits \| CHACHA20-POLY1305/,
  );
});
