import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ControlPlane } from '../../src/control/control-plane.js';
import { openSqliteStore } from '../../src/control/store-sqlite.js';
import { PrivateKey, PublicKey } from '../../src/crypto/keys.js';
import { changedGateway, gatewayChangeKey, type Change } from '../../src/control/model.js';
import { GatewaySync, type MeshChanges } from '../../src/server/gateway-sync.js';
import { WireGuardMembers } from '../../src/server/wireguard-members.js';
import type {
  InstalledMember,
  MemberTransport,
  TransportStatus,
  UninstallReason,
} from '../../src/gateway/member-transport.js';
import { readIpHeader } from '../../src/net/ip-packet.js';
import { parseAddress } from '../../src/net/ip.js';
import { Device } from '../../src/wireguard/device.js';

function tcp(src: string, dst: string, dport: number): Uint8Array {
  const p = new Uint8Array(40);
  p[0] = 0x45;
  p[3] = 40;
  p[8] = 64;
  p[9] = 6;
  const s = parseAddress(src);
  const d = parseAddress(dst);
  assert.ok(s.ok && d.ok);
  p.set(s.value.bytes, 12);
  p.set(d.value.bytes, 16);
  p[20] = 0x9c;
  p[22] = dport >> 8;
  p[23] = dport & 0xff;
  return p;
}

/** What the data plane does with a decrypted packet: the header as the device read it, then the check. */
function admit(sync: GatewaySync, packet: Uint8Array, peer: PublicKey): boolean {
  const header = readIpHeader(packet);
  assert.ok(header);
  return sync.admit(packet, header, peer);
}

interface Fixture {
  cp: ControlPlane;
  /** A second control plane on the same file: what the CLI in another process is. */
  cli: ControlPlane;
  device: Device;
  sync: GatewaySync;
  /** The key object the device holds for a member (what the data plane hands to `admit`). */
  keyOf: (name: string) => PublicKey | undefined;
  close: () => void;
}

function fixture(subnet = '10.66.0.0/24', clock?: () => Date): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'weft-sync-'));
  const path = join(dir, 'weft.db');
  const store = openSqliteStore(path);
  ControlPlane.init(store, { endpoint: 'vpn.example.com', subnet });
  const cp = new ControlPlane(store, clock);
  const other = openSqliteStore(path);
  const cli = new ControlPlane(other, clock);
  const device = new Device({ privateKey: cp.gatewayPrivateKey() });
  const sync = new GatewaySync(cp, device);
  return {
    cp,
    cli,
    device,
    sync,
    keyOf: (name) => {
      const m = store.getMember(name);
      return device.peerStatuses(0).find((s) => s.publicKey.toBase64() === m?.publicKey)?.publicKey;
    },
    close: () => {
      store.close();
      other.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A member's device completes a handshake with the gateway at `at`, confirmed by its keepalive. */
function handshake(f: Fixture, client: Device, at: number): void {
  const gatewayKey = f.cp.gatewayPrivateKey().publicKey();
  const from = { address: '192.0.2.7', port: 40000 };
  const sends = (actions: ReturnType<Device['receive']>): Uint8Array[] =>
    actions.flatMap((a) => (a.type === 'send' ? [a.data] : []));
  for (const init of sends(client.initiateHandshake(gatewayKey, at)))
    for (const response of sends(f.device.receive(init, from, at)))
      for (const keepalive of sends(client.receive(response, { address: '192.0.2.1', port: 51820 }, at)))
        f.device.receive(keepalive, from, at);
}

test('changes made through another connection reach the device on the next poll', () => {
  const f = fixture();
  try {
    f.cli.addGroup('cli:root', { name: 'eng' });
    const alice = f.cli.addMember('cli:root', { name: 'alice', groups: ['eng'] });
    f.cli.addMember('cli:root', { name: 'bob' });
    f.sync.poll();
    assert.equal(f.device.peerStatuses(0).length, 2);
    assert.deepEqual(
      f.device.peerStatus(PublicKey.parse(alice.publicKey).ok ? f.keyOf('alice')! : f.keyOf('x')!, 0)
        ?.allowedIps,
      ['10.66.0.2/32'],
    );

    f.cli.setDisabled('cli:root', 'bob', true);
    f.sync.poll();
    assert.equal(f.device.peerStatuses(0).length, 1);
    f.cli.setDisabled('cli:root', 'bob', false);
    f.sync.poll();
    assert.equal(f.device.peerStatuses(0).length, 2);

    const rotated = f.cli.rotateMember('cli:root', 'alice');
    f.sync.poll();
    const keys = f.device.peerStatuses(0).map((s) => s.publicKey.toBase64());
    assert.ok(keys.includes(rotated.publicKey));
    assert.ok(!keys.includes(alice.publicKey));

    f.cli.removeMember('cli:root', 'bob');
    f.sync.poll();
    assert.equal(f.device.peerStatuses(0).length, 1);
    assert.equal(f.sync.counters.fullReconciles, 1);
  } finally {
    f.close();
  }
});

test('the firewall follows policy changes; unknown peers get nowhere', () => {
  const f = fixture();
  try {
    f.cp.addGroup('t', { name: 'eng' });
    f.cp.addMember('t', { name: 'alice', ip: '10.66.0.10', groups: ['eng'] });
    f.sync.poll();
    const key = f.keyOf('alice')!;
    const toCloud = tcp('10.66.0.10', '10.20.0.10', 22);
    assert.equal(admit(f.sync, toCloud, key), false);
    assert.equal(admit(f.sync, tcp('10.66.0.10', '10.66.0.1', 22), key), true);
    const p = f.cli.addPolicy('t', { action: 'allow', group: 'eng', destination: '10.20.0.0/24' });
    f.sync.poll();
    assert.equal(admit(f.sync, toCloud, key), true);
    f.cli.addPolicy('t', {
      action: 'deny',
      group: 'eng',
      destination: '10.20.0.0/24',
      proto: 'tcp',
      ports: { from: 22, to: 22 },
    });
    f.sync.poll();
    assert.equal(admit(f.sync, toCloud, key), false);
    assert.equal(admit(f.sync, tcp('10.66.0.10', '10.20.0.10', 443), key), true);
    f.cli.removePolicy('t', p.id);
    f.cli.updateSettings('t', { defaultPolicy: 'allow' });
    f.sync.poll();
    assert.equal(admit(f.sync, tcp('10.66.0.10', '10.20.0.10', 443), key), true);
    assert.equal(admit(f.sync, toCloud, key), false);
    // A key the control plane never installed (e.g. added with `wg set`) is refused.
    const stranger = PublicKey.fromBytes(new Uint8Array(32).fill(7));
    assert.equal(admit(f.sync, toCloud, stranger), false);
  } finally {
    f.close();
  }
});

test('group destinations follow membership changes', () => {
  const f = fixture();
  try {
    f.cp.addGroup('t', { name: 'eng' });
    f.cp.addGroup('t', { name: 'sales' });
    f.cp.addPolicy('t', { action: 'allow', group: 'sales', destination: 'group:eng' });
    f.cp.addMember('t', { name: 'bob', ip: '10.66.0.20', groups: ['sales'] });
    f.cp.addMember('t', { name: 'alice', ip: '10.66.0.10' });
    f.sync.poll();
    const bob = f.keyOf('bob')!;
    assert.equal(admit(f.sync, tcp('10.66.0.20', '10.66.0.10', 443), bob), false);
    f.cli.updateMember('t', 'alice', { groups: ['eng'] });
    f.sync.poll();
    assert.equal(admit(f.sync, tcp('10.66.0.20', '10.66.0.10', 443), bob), true);
    // A newcomer to the group is reachable at once; one who leaves is not.
    f.cli.addMember('t', { name: 'carol', ip: '10.66.0.11', groups: ['eng'] });
    f.cli.updateMember('t', 'alice', { groups: [] });
    f.sync.poll();
    assert.equal(admit(f.sync, tcp('10.66.0.20', '10.66.0.11', 443), bob), true);
    assert.equal(admit(f.sync, tcp('10.66.0.20', '10.66.0.10', 443), bob), false);
    f.cli.removeMember('t', 'carol');
    f.sync.poll();
    assert.equal(admit(f.sync, tcp('10.66.0.20', '10.66.0.11', 443), bob), false);
    assert.equal(f.sync.counters.fullReconciles, 1);
  } finally {
    f.close();
  }
});

test('expiry cuts a member off when its time comes, without a store change', () => {
  let now = new Date('2026-03-01T12:00:00Z');
  const f = fixture('10.66.0.0/24', () => now);
  try {
    f.cp.addMember('t', { name: 'temp', expiresAt: '2026-03-01T12:00:10Z' });
    f.cp.addMember('t', { name: 'staff' });
    f.sync.poll(now.getTime());
    assert.equal(f.device.peerStatuses(0).length, 2);
    now = new Date('2026-03-01T12:00:11Z');
    f.sync.poll(now.getTime());
    assert.equal(f.device.peerStatuses(0).length, 1);
    assert.equal(f.sync.counters.expiries, 1);
    // Extending the expiry brings it back.
    f.cli.updateMember('t', 'temp', { expiresAt: '2026-04-01' });
    f.sync.poll(now.getTime());
    assert.equal(f.device.peerStatuses(0).length, 2);
  } finally {
    f.close();
  }
});

test('status reports: what changed is written, drops are counted per member', () => {
  const f = fixture();
  try {
    f.cp.addMember('t', { name: 'alice' });
    f.sync.poll();
    admit(f.sync, tcp('10.66.0.2', '10.20.0.10', 22), f.keyOf('alice')!);
    f.sync.report(Date.parse('2026-03-01T12:00:00Z'));
    const s = f.cli.getMember('alice').status;
    assert.equal(s?.online, false);
    assert.equal(s?.policyDrops, 1);
    assert.equal(s?.rxBytes, 0);
  } finally {
    f.close();
  }
});

test('10,000 members: the gateway installs them all, and one more is picked up by a poll', (t) => {
  const f = fixture('10.64.0.0/16');
  try {
    f.cli.store.transaction(() => {
      for (let i = 0; i < 10_000; i++) f.cli.addMember('t', { name: `m${i}` });
    });
    let t0 = performance.now();
    f.sync.poll();
    t.diagnostic(`first poll with 10,000 members: ${(performance.now() - t0).toFixed(0)} ms`);
    assert.equal(f.sync.memberCount, 10_000);
    t0 = performance.now();
    f.cli.addMember('t', { name: 'one-more' });
    const added = performance.now() - t0;
    t0 = performance.now();
    f.sync.poll();
    t.diagnostic(
      `add: ${added.toFixed(1)} ms; poll that installs it: ${(performance.now() - t0).toFixed(1)} ms`,
    );
    assert.equal(f.sync.memberCount, 10_001);
    assert.equal(f.device.peerStatuses(0).length, 10_001);
  } finally {
    f.close();
  }
});

test('a member enabled again is sent a handshake at the endpoint it was last seen at', () => {
  const f = fixture();
  try {
    f.cp.addMember('t', { name: 'alice' });
    f.sync.poll();
    // alice's device completes a handshake with the gateway from 192.0.2.7:40000.
    const secret = f.cp.store.getMember('alice')!.privateKey!;
    const parsedKey = PrivateKey.parse(secret);
    assert.ok(parsedKey.ok);
    const client = new Device({ privateKey: parsedKey.key });
    client.setPeer({
      publicKey: f.cp.gatewayPrivateKey().publicKey(),
      endpoint: { address: '192.0.2.1', port: 51820 },
      allowedIps: [],
    });
    const now = Date.parse('2026-03-01T12:00:00Z');
    const init = client.initiateHandshake(f.cp.gatewayPrivateKey().publicKey(), now);
    const first = init.find((a) => a.type === 'send');
    assert.ok(first?.type === 'send');
    const replies = f.device.receive(first.data, { address: '192.0.2.7', port: 40000 }, now);
    assert.ok(replies.some((a) => a.type === 'send'));

    const handshakes: string[] = [];
    const sync = new GatewaySync(f.cp, f.device, { handshake: (k) => handshakes.push(k.toBase64()) });
    sync.poll();
    f.cli.setDisabled('t', 'alice', true);
    sync.poll();
    f.cli.setDisabled('t', 'alice', false);
    sync.poll();
    assert.deepEqual(handshakes, [f.cp.store.getMember('alice')!.publicKey]);
    const out = f.device.initiateHandshake(f.keyOf('alice')!, now + 1000);
    const sent = out.find((a) => a.type === 'send');
    assert.ok(sent?.type === 'send');
    assert.deepEqual(sent.endpoint, { address: '192.0.2.7', port: 40000 });
    // Rotated keys are not reached out to: the old endpoint belongs to the old key.
    f.cli.setDisabled('t', 'alice', true);
    sync.poll();
    f.cli.rotateMember('t', 'alice');
    f.cli.setDisabled('t', 'alice', false);
    sync.poll();
    assert.equal(handshakes.length, 1);
  } finally {
    f.close();
  }
});

test('the log: one line per member event, drops summed per minute, never a flow address', () => {
  const f = fixture();
  try {
    f.cp.addMember('t', { name: 'alice' });
    f.cp.addMember('t', { name: 'bob' });
    const lines: string[] = [];
    const sync = new GatewaySync(f.cp, f.device, { log: (line) => lines.push(line) });
    sync.poll();
    const take = (): string[] => lines.splice(0);
    assert.deepEqual(take(), []);

    // alice's device completes a handshake with the gateway.
    const parsedKey = PrivateKey.parse(f.cp.store.getMember('alice')!.privateKey!);
    assert.ok(parsedKey.ok);
    const client = new Device({ privateKey: parsedKey.key });
    const gatewayKey = f.cp.gatewayPrivateKey().publicKey();
    client.setPeer({
      publicKey: gatewayKey,
      endpoint: { address: '192.0.2.1', port: 51820 },
      allowedIps: [],
    });
    const t0 = Date.parse('2026-03-01T12:00:00Z');
    handshake(f, client, t0);

    assert.deepEqual([...sync.onlineNow(t0 + 500)], ['alice'], 'online here before any report says so');
    assert.equal(sync.hasArrivals(t0 + 500), true, 'a member online here that no report has shown');
    sync.report(t0 + 1000);
    assert.deepEqual(take(), ['member alice connected']);
    assert.equal(sync.hasArrivals(t0 + 1500), false, 'reported: nothing due before the cadence');
    sync.report(t0 + 6000);
    assert.deepEqual(take(), [], 'still online: nothing new');

    // Policy drops (default deny): counted, then one line with the count once a minute has passed.
    for (let i = 0; i < 3; i++) admit(sync, tcp('10.66.0.2', '10.20.0.10', 22), f.keyOf('alice')!);
    sync.report(t0 + 11_000);
    assert.deepEqual(take(), []);
    for (let i = 0; i < 2; i++) admit(sync, tcp('10.66.0.2', '10.20.0.10', 22), f.keyOf('alice')!);
    sync.report(t0 + 61_000);
    assert.deepEqual(take(), ['member alice: 5 packet(s) dropped by policy in the last 60 s']);
    admit(sync, tcp('10.66.0.2', '10.20.0.11', 443), f.keyOf('alice')!);
    sync.report(t0 + 91_000);
    assert.deepEqual(take(), [], 'at most one line a minute');
    sync.report(t0 + 121_000);
    assert.deepEqual(take(), ['member alice: 1 packet(s) dropped by policy in the last 60 s']);

    // No handshake for a session's lifetime (180 s): disconnected.
    sync.report(t0 + 181_000);
    assert.deepEqual(take(), ['member alice disconnected (no handshake for 180 s)']);

    f.cli.setDisabled('t', 'bob', true);
    sync.poll();
    f.cli.setDisabled('t', 'bob', false);
    sync.poll();
    f.cli.updateMember('t', 'bob', { expiresAt: '2020-01-01' });
    sync.poll();
    f.cli.updateMember('t', 'bob', { expiresAt: null });
    sync.poll();
    f.cli.removeMember('t', 'bob');
    sync.poll();
    assert.deepEqual(take(), [
      'member bob disabled',
      'member bob enabled',
      'member bob expired',
      'member bob removed',
    ]);

    // An online member cut off: the line says its session ended.
    handshake(f, client, t0 + 200_000);
    sync.report(t0 + 201_000);
    f.cli.setDisabled('t', 'alice', true);
    sync.poll();
    sync.report(t0 + 202_000);
    assert.deepEqual(take(), [
      'member alice connected',
      'member alice disabled; its session ended (disconnected)',
    ]);

    const metrics = sync.memberMetrics();
    assert.deepEqual(metrics, [], 'no member is installed now');
  } finally {
    f.close();
  }
});

test('metrics per member: bytes, handshakes and drops as of the last report', () => {
  const f = fixture();
  try {
    f.cp.addMember('t', { name: 'alice' });
    const sync = new GatewaySync(f.cp, f.device);
    sync.poll();
    const parsedKey = PrivateKey.parse(f.cp.store.getMember('alice')!.privateKey!);
    assert.ok(parsedKey.ok);
    const client = new Device({ privateKey: parsedKey.key });
    const gatewayKey = f.cp.gatewayPrivateKey().publicKey();
    client.setPeer({
      publicKey: gatewayKey,
      endpoint: { address: '192.0.2.1', port: 51820 },
      allowedIps: [],
    });
    const t0 = Date.parse('2026-03-01T12:00:00Z');
    for (const at of [t0, t0 + 130_000]) {
      handshake(f, client, at);
      sync.report(at + 1000);
    }
    admit(sync, tcp('10.66.0.2', '10.20.0.10', 22), f.keyOf('alice')!);
    sync.report(t0 + 140_000);
    const [alice] = sync.memberMetrics();
    assert.equal(alice?.name, 'alice');
    assert.equal(alice?.online, true);
    assert.equal(alice?.handshakes, 2);
    assert.equal(alice?.policyDrops, 1);
    assert.ok((alice?.rxBytes ?? 0) > 0, 'the keepalives count as received bytes');
  } finally {
    f.close();
  }
});

/** A second protocol's sessions, as a transport sees them: what GatewaySync tells it, and what it reports. */
class RecordingTransport implements MemberTransport {
  readonly protocol = 'second';
  readonly handles = new Map<string, InstalledMember>();
  readonly events: string[] = [];
  readonly figures = new Map<string, { rx: number; tx: number; at: number }>();
  install(member: InstalledMember, previous: InstalledMember | undefined): void {
    this.events.push(`${previous ? 'update' : 'install'} ${member.name}`);
    this.handles.set(member.name, member);
  }
  uninstall(member: InstalledMember, reason: UninstallReason): TransportStatus | undefined {
    this.events.push(`uninstall ${member.name} ${reason}`);
    this.handles.delete(member.name);
    const f = this.figures.get(member.name);
    this.figures.delete(member.name);
    return f
      ? {
          online: false,
          protocol: 'openvpn-tcp',
          since: 0,
          endpoint: null,
          lastHandshake: f.at,
          rxBytes: f.rx,
          txBytes: f.tx,
        }
      : undefined;
  }
  statuses(now: number): Map<string, TransportStatus> {
    const out = new Map<string, TransportStatus>();
    for (const [name, f] of this.figures)
      if (this.handles.has(name))
        out.set(name, {
          online: now - f.at < 180_000,
          protocol: 'openvpn-tcp',
          since: f.at - 500,
          endpoint: '198.51.100.9:1194',
          lastHandshake: f.at,
          rxBytes: f.rx,
          txBytes: f.tx,
        });
    return out;
  }
}

test('a second transport: members installed and cut off there too, checked by the same firewall, counted as one', () => {
  const f = fixture();
  try {
    const t0 = Date.parse('2026-03-01T12:00:00Z');
    f.cp.addGroup('t', { name: 'eng' });
    f.cp.addRoute('t', { cidr: '10.20.0.0/24' });
    f.cp.addPolicy('t', {
      action: 'allow',
      group: 'eng',
      destination: '10.20.0.0/24',
      proto: 'tcp',
      ports: { from: 443, to: 443 },
    });
    f.cp.addMember('t', { name: 'alice', ip: '10.66.0.10', groups: ['eng'] });
    f.cp.addMember('t', { name: 'bob', ip: '10.66.0.20' });
    f.sync.poll();
    const second = new RecordingTransport();
    f.sync.attach(second);
    assert.deepEqual(second.events.sort(), ['install alice', 'install bob']);

    // The same rules, whichever transport carried the packet.
    const alice = second.handles.get('alice')!;
    const header = (p: Uint8Array) => readIpHeader(p)!;
    const ok = tcp('10.66.0.10', '10.20.0.10', 443);
    const denied = tcp('10.66.0.10', '10.20.0.10', 22);
    assert.equal(f.sync.admitMember(alice, ok, header(ok)), true);
    assert.equal(f.sync.admitMember(alice, denied, header(denied)), false);
    const bobOk = tcp('10.66.0.20', '10.20.0.10', 443);
    assert.equal(f.sync.admitMember(second.handles.get('bob')!, bobOk, header(bobOk)), false);

    // Traffic on both transports is the member's: one status row, one traffic series.
    second.figures.set('alice', { rx: 1000, tx: 2000, at: t0 });
    f.sync.report(t0 + 1000);
    assert.equal(f.cli.getMember('alice').status?.rxBytes, 1000);
    assert.equal(f.cli.getMember('alice').status?.online, true);
    assert.equal(f.cli.getMember('alice').status?.endpoint, '198.51.100.9:1194');
    // Which protocol carries her, and since when (the session's own start).
    assert.equal(f.cli.getMember('alice').status?.protocol, 'openvpn-tcp');
    assert.equal(f.cli.getMember('alice').status?.since, new Date(t0 - 500).toISOString());
    second.figures.set('alice', { rx: 1500, tx: 2000, at: t0 });
    f.sync.report(t0 + 2000);
    assert.equal(f.cli.getMember('alice').status?.rxBytes, 1500);

    // A policy change reaches the handles the transport holds.
    f.cli.addPolicy('t', {
      action: 'allow',
      group: '*',
      destination: '10.20.0.0/24',
      proto: 'tcp',
      ports: { from: 443, to: 443 },
    });
    f.sync.poll();
    assert.equal(f.sync.admitMember(second.handles.get('bob')!, bobOk, header(bobOk)), true);

    // Disable: the member's sessions end on every transport in the same poll, and an old handle is refused.
    second.figures.set('alice', { rx: 1700, tx: 2100, at: t0 });
    f.cli.setDisabled('t', 'alice', true);
    f.sync.poll();
    assert.ok(second.events.includes('uninstall alice disabled'));
    assert.equal(second.handles.has('alice'), false);
    assert.equal(f.device.peerStatuses(0).length, 1);
    assert.equal(f.sync.admitMember(alice, ok, header(ok)), false);
    f.sync.report(t0 + 3000);
    const status = f.cli.getMember('alice').status;
    assert.equal(status?.online, false);
    assert.equal(status?.protocol, null, 'offline: no protocol');
    assert.equal(status?.rxBytes, 1700, 'the bytes moved before the cut are kept');
    const series = f.cp.store.traffic('alice', '2026-03-01T00:00:00Z');
    assert.equal(
      series.reduce((sum, s) => sum + s.rxBytes, 0),
      1700,
    );

    // Enabled again: installed everywhere again; removed: cut everywhere.
    f.cli.setDisabled('t', 'alice', false);
    f.sync.poll();
    assert.equal(second.events.at(-1), 'install alice');
    f.cli.removeMember('t', 'alice');
    f.sync.poll();
    assert.equal(second.events.at(-1), 'uninstall alice removed');
  } finally {
    f.close();
  }
});

test('WireGuard statuses: one object per member, refreshed in place at each call, its endpoint when it moves', () => {
  const f = fixture();
  try {
    f.cp.addMember('t', { name: 'alice' });
    f.cp.addMember('t', { name: 'bob' });
    const members = new WireGuardMembers(f.device, () => true);
    for (const name of ['alice', 'bob']) {
      const record = f.cp.store.getMember(name)!;
      members.install({ name, record, expiresAt: null, rules: [], receiveRules: [], drops: 0 }, undefined);
    }
    const t0 = Date.parse('2026-03-01T12:00:00Z');
    const first = members.statuses(t0);
    assert.deepEqual([...first.keys()].sort(), ['alice', 'bob']);
    const alice = first.get('alice')!;
    assert.deepEqual(
      { online: alice.online, endpoint: alice.endpoint, lastHandshake: alice.lastHandshake },
      { online: false, endpoint: null, lastHandshake: 0 },
    );

    const parsedKey = PrivateKey.parse(f.cp.store.getMember('alice')!.privateKey!);
    assert.ok(parsedKey.ok);
    const client = new Device({ privateKey: parsedKey.key });
    client.setPeer({
      publicKey: f.cp.gatewayPrivateKey().publicKey(),
      endpoint: { address: '192.0.2.1', port: 51820 },
      allowedIps: [],
    });
    handshake(f, client, t0);
    const second = members.statuses(t0 + 1000);
    assert.equal(second.get('alice'), alice, 'the same object, refreshed');
    assert.equal(alice.online, true);
    assert.equal(alice.endpoint, '192.0.2.7:40000');
    assert.equal(alice.lastHandshake, t0);
    assert.ok(alice.rxBytes > 0);
    assert.equal(second.get('bob')?.online, false);

    // The member roams: the next call shows where it is now.
    f.device.setPeer({ publicKey: f.keyOf('alice')!, endpoint: { address: '2001:db8::7', port: 40001 } });
    assert.equal(members.statuses(t0 + 2000).get('alice')?.endpoint, '[2001:db8::7]:40001');
    // Past REJECT_AFTER_TIME without a handshake: offline.
    assert.equal(members.statuses(t0 + 181_000).get('alice')?.online, false);
    // Removed: no longer reported.
    members.uninstall(
      {
        name: 'bob',
        record: f.cp.store.getMember('bob')!,
        expiresAt: null,
        rules: [],
        receiveRules: [],
        drops: 0,
      },
      'removed',
      undefined,
    );
    assert.deepEqual([...members.statuses(t0 + 3000).keys()], ['alice']);
  } finally {
    f.close();
  }
});

test('a transport that stops reporting a member and reports it again later counts it from zero again', () => {
  const f = fixture();
  try {
    const t0 = Date.parse('2026-03-01T12:00:00Z');
    f.cp.addMember('t', { name: 'alice' });
    f.sync.poll();
    const second = new RecordingTransport();
    f.sync.attach(second);
    second.figures.set('alice', { rx: 1000, tx: 10, at: t0 });
    f.sync.report(t0 + 1000);
    assert.equal(f.cli.getMember('alice').status?.rxBytes, 1000);
    second.figures.set('alice', { rx: 1200, tx: 10, at: t0 });
    f.sync.report(t0 + 2000);
    assert.equal(f.cli.getMember('alice').status?.rxBytes, 1200, 'the difference, not the figure again');
    second.figures.delete('alice');
    f.sync.report(t0 + 3000);
    assert.equal(f.cli.getMember('alice').status?.rxBytes, 1200);
    second.figures.set('alice', { rx: 1500, tx: 20, at: t0 + 3500 });
    f.sync.report(t0 + 4000);
    const status = f.cli.getMember('alice').status;
    assert.equal(status?.rxBytes, 2700, 'a new session on that transport: all of its bytes are new');
    assert.equal(status?.txBytes, 30);
  } finally {
    f.close();
  }
});

test('the mesh hears from the feed of registrations, shared routes and sites; the settings row is not one', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-sync-'));
  const store = openSqliteStore(join(dir, 'weft.db'));
  try {
    ControlPlane.init(store, { endpoint: 'vpn.example.com', subnet: '10.66.0.0/24' });
    // Registrations are feed entries of the shared store only: appended here after the SQLite store's own.
    const extra: Change[] = [];
    const head = (): number => Math.max(store.revision(), extra.at(-1)?.rev ?? 0);
    const feed = new Proxy(store, {
      get(target, prop) {
        if (prop === 'revision') return head;
        if (prop === 'changesSince')
          return (rev: number, limit?: number) => [
            ...target.changesSince(rev, limit),
            ...extra.filter((c) => c.rev > rev),
          ];
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const cp = new ControlPlane(feed);
    const heard: MeshChanges[] = [];
    const settingsSeen: string[] = [];
    const sync = new GatewaySync(cp, new Device({ privateKey: cp.gatewayPrivateKey() }), {
      meshChanged: (what) => heard.push(what),
      settingsChanged: () => settingsSeen.push('settings'),
    });
    sync.poll();
    assert.deepEqual(heard, [{ gateways: true, routes: true, all: true }], 'the first poll reads everything');
    heard.length = 0;
    store.insertRoute({ cidr: '10.99.0.0/24', description: '' });
    sync.poll();
    assert.deepEqual(heard, [{ gateways: false, routes: true, all: false }]);
    heard.length = 0;
    extra.push({ rev: head() + 1, kind: 'settings', key: gatewayChangeKey('gw-b') });
    sync.poll();
    assert.deepEqual(heard, [{ gateways: true, routes: false, all: false }]);
    assert.deepEqual(settingsSeen, [], 'a registration is not a change of the settings row');
    heard.length = 0;
    sync.poll();
    assert.deepEqual(heard, [], 'nothing new in the feed: nothing to read');
    assert.equal(changedGateway({ kind: 'settings', key: 'gateway/gw-b' }), 'gw-b');
    assert.equal(changedGateway({ kind: 'settings', key: '' }), undefined);
    assert.equal(changedGateway({ kind: 'member', key: 'gateway/x' }), undefined);
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
