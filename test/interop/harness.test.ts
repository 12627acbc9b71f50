import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  capture,
  interopSkip,
  Lab,
  parsePcap,
  parseWgDump,
  startWireguardGo,
  WG_RUN_DIR,
  wgShowDump,
  type Netns,
  type WireguardGo,
} from './harness.js';

/** Runs `wg ARGS` in the root namespace with optional stdin; resolves with trimmed stdout. */
function wg(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('wg', args, { timeout: 5_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      if (error) reject(new Error(`wg ${args.join(' ')} failed: ${stderr || error.message}`));
      else resolve(stdout.trim());
    });
    // `wg genkey` never reads stdin: writing to it could fail with EPIPE.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input);
  });
}

async function keypair(): Promise<{ privateKey: string; publicKey: string }> {
  const privateKey = await wg(['genkey']);
  return { privateKey, publicKey: await wg(['pubkey'], `${privateKey}\n`) };
}

/** WireGuard message type (1..4) of an Ethernet/IPv4/UDP frame, or undefined. */
function wireguardMessageType(frame: Buffer): number | undefined {
  if (frame.length < 14 + 20 + 8 + 4 || frame.readUInt16BE(12) !== 0x0800) return undefined;
  const ipHeaderLength = ((frame[14] ?? 0) & 0x0f) * 4;
  if (frame[14 + 9] !== 17) return undefined; // not UDP
  return frame[14 + ipHeaderLength + 8];
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('interop harness: parsers', () => {
  it('parses `wg show IFNAME dump`', () => {
    const dump = parseWgDump(
      'cHJpdg==\tcHVi\t51820\toff\n' +
        'cGVlcjE=\t(none)\t10.0.0.2:51821\t10.200.0.2/32,fd00:200::2/128\t1700000000\t1234\t5678\t25\n' +
        'cGVlcjI=\tcHNr\t(none)\t(none)\t0\t0\t0\toff\n',
    );
    assert.deepEqual(dump.interface, {
      privateKey: 'cHJpdg==',
      publicKey: 'cHVi',
      listenPort: 51820,
      fwmark: null,
    });
    assert.deepEqual(dump.peers, [
      {
        publicKey: 'cGVlcjE=',
        presharedKey: null,
        endpoint: '10.0.0.2:51821',
        allowedIps: ['10.200.0.2/32', 'fd00:200::2/128'],
        latestHandshake: 1700000000,
        rxBytes: 1234,
        txBytes: 5678,
        persistentKeepalive: 25,
      },
      {
        publicKey: 'cGVlcjI=',
        presharedKey: 'cHNr',
        endpoint: null,
        allowedIps: [],
        latestHandshake: 0,
        rxBytes: 0,
        txBytes: 0,
        persistentKeepalive: null,
      },
    ]);
    assert.throws(() => parseWgDump('only\tthree\tfields\n'), /bad interface line/);
  });

  it('parses pcap files in both byte orders and flags a truncated tail', () => {
    for (const little of [true, false]) {
      const header = Buffer.alloc(24);
      const w32 = (buf: Buffer, value: number, offset: number): number =>
        little ? buf.writeUInt32LE(value, offset) : buf.writeUInt32BE(value, offset);
      w32(header, 0xa1b2c3d4, 0);
      w32(header, 262144, 16);
      w32(header, 1, 20);
      const record = (payload: Buffer): Buffer => {
        const h = Buffer.alloc(16);
        w32(h, 1700000000, 0);
        w32(h, 5, 4);
        w32(h, payload.length, 8);
        w32(h, payload.length, 12);
        return Buffer.concat([h, payload]);
      };
      const file = Buffer.concat([header, record(Buffer.from('abc')), record(Buffer.from('defgh'))]);
      const pcap = parsePcap(file);
      assert.equal(pcap.linkType, 1);
      assert.equal(pcap.snapLength, 262144);
      assert.deepEqual(
        pcap.records.map((r) => r.data.toString()),
        ['abc', 'defgh'],
      );
      assert.equal(pcap.truncated, false);
      assert.equal(parsePcap(header).records.length, 0);
      const cut = parsePcap(file.subarray(0, file.length - 2));
      assert.equal(cut.records.length, 1);
      assert.equal(cut.truncated, true);
    }
    assert.throws(() => parsePcap(Buffer.alloc(10)), /too short/);
  });
});

const TOOLS = ['ip', 'wireguard-go', 'wg', 'tcpdump', 'ping'];

describe('interop harness: namespaces, veth, wireguard-go, tcpdump', { skip: interopSkip(TOOLS) }, () => {
  let lab: Lab;
  let a: Netns;
  let b: Netns;
  let aVeth: string;
  let wgA: WireguardGo;
  let wgB: WireguardGo;

  before(async () => {
    lab = await Lab.create('wg', { tools: TOOLS });
  });
  after(async () => {
    await lab?.cleanup();
  });

  it('creates two namespaces joined by a veth and pings across (v4 and v6)', async () => {
    assert.match(lab.prefix, /^w[0-9a-z]{5}$/);
    a = await lab.netns('a');
    b = await lab.netns('b');
    assert.equal(a.name, `${lab.prefix}-a`);
    const { aIf, bIf } = await lab.veth(a, b, {
      aAddr: '10.77.0.1/24',
      bAddr: '10.77.0.2/24',
      aAddr6: 'fd00:77::1/64',
      bAddr6: 'fd00:77::2/64',
    });
    aVeth = aIf;
    assert.ok(aIf.length <= 15 && bIf.length <= 15);
    await a.exec('ping', ['-c', '1', '-W', '1', '10.77.0.2']);
    await a.exec('ping', ['-6', '-c', '1', '-W', '1', 'fd00:77::2']);
    // The veth end lives only in its namespace.
    const { code } = await b.exec('ip', ['link', 'show', aIf], { allowFail: true });
    assert.notEqual(code, 0);
  });

  it('reports failures and timeouts of exec descriptively', async () => {
    await assert.rejects(a.exec('sh', ['-c', 'echo oops >&2; exit 3']), (error: Error) => {
      assert.match(error.message, /exited with code 3/);
      assert.match(error.message, /oops/);
      assert.match(error.message, new RegExp(`netns ${a.name}`));
      return true;
    });
    assert.equal((await a.exec('false', [], { allowFail: true })).code, 1);
    await assert.rejects(a.exec('sleep', ['5'], { timeoutMs: 200 }), /timed out after 200 ms/);
    await a.sysctl('net.ipv4.ip_forward', 1);
    const { stdout } = await a.exec('cat', ['/proc/sys/net/ipv4/ip_forward']);
    assert.equal(stdout.trim(), '1');
    // Per namespace: b is untouched.
    assert.equal((await b.exec('cat', ['/proc/sys/net/ipv4/ip_forward'])).stdout.trim(), '0');
  });

  it('runs two wireguard-go peers and pings through the tunnel, seen by tcpdump', async () => {
    const [ka, kb] = await Promise.all([keypair(), keypair()]);
    const psk = await wg(['genpsk']);
    wgA = await startWireguardGo(a, lab.ifname('wga'), {
      privateKey: ka.privateKey,
      listenPort: 51820,
      addresses: ['10.200.0.1/24', 'fd00:200::1/64'],
      peers: [
        {
          publicKey: kb.publicKey,
          endpoint: '10.77.0.2:51821',
          allowedIps: ['10.200.0.2/32', 'fd00:200::2/128'],
          presharedKey: psk,
        },
      ],
    });
    wgB = await startWireguardGo(b, lab.ifname('wgb'), {
      privateKey: kb.privateKey,
      listenPort: 51821,
      addresses: ['10.200.0.2/24', 'fd00:200::2/64'],
      peers: [
        {
          publicKey: ka.publicKey,
          endpoint: '10.77.0.1:51820',
          allowedIps: ['10.200.0.1/32', 'fd00:200::1/128'],
          persistentKeepalive: 25,
          presharedKey: psk,
        },
      ],
    });
    assert.equal(wgA.publicKey, ka.publicKey);
    // WG_PROCESS_FOREGROUND=1: the tracked pid is wireguard-go itself, not a parent that forked it.
    assert.equal(fs.readFileSync(`/proc/${wgA.process.pid}/comm`, 'utf8').trim(), 'wireguard-go');
    assert.ok(fs.existsSync(path.join(WG_RUN_DIR, `${wgA.ifname}.sock`)));

    // B has a persistent keepalive, so it may already have done the handshake when its link came up.
    const udp = await capture(a, aVeth, 'udp and (port 51820 or port 51821)');
    const nothing = await capture(a, aVeth, 'udp port 9');
    await a.exec('ping', ['-c', '1', '-W', '2', '10.200.0.2']);
    await a.exec('ping', ['-6', '-c', '1', '-W', '2', 'fd00:200::2']);
    const seen = await udp.stop();
    assert.equal(await nothing.stop(), 0);
    // Two echo requests and two replies, each a WireGuard transport-data message (type 4).
    assert.ok(seen >= 4, `expected at least 4 WireGuard packets on ${aVeth}, got ${seen}`);
    const types = parsePcap(fs.readFileSync(udp.file)).records.map((r) => wireguardMessageType(r.data));
    assert.ok(types.filter((type) => type === 4).length >= 4, `WireGuard message types seen: ${types}`);

    const dump = await wgShowDump(a, wgA.ifname);
    assert.equal(dump.interface.listenPort, 51820);
    assert.equal(dump.interface.publicKey, ka.publicKey);
    assert.equal(dump.peers.length, 1);
    const peer = dump.peers[0];
    assert.ok(peer);
    assert.equal(peer.publicKey, kb.publicKey);
    assert.equal(peer.presharedKey, psk);
    assert.equal(peer.endpoint, '10.77.0.2:51821');
    assert.deepEqual(peer.allowedIps, ['10.200.0.2/32', 'fd00:200::2/128']);
    assert.ok(peer.latestHandshake > 0, 'latest handshake is set');
    assert.ok(Math.abs(peer.latestHandshake - Date.now() / 1000) < 60, 'latest handshake is recent');
    assert.ok(peer.rxBytes > 0 && peer.txBytes > 0, `rx ${peer.rxBytes}, tx ${peer.txBytes}`);
    assert.equal(peer.persistentKeepalive, null);
    const peerB = (await wgB.dump()).peers[0];
    assert.equal(peerB?.persistentKeepalive, 25);
  });

  it('cleanup removes namespaces, processes, UAPI sockets and temp files, and is idempotent', async () => {
    const pids = lab.processes.map((p) => p.pid);
    assert.ok(pids.length >= 4, `expected wireguard-go x2 and tcpdump x2, got ${pids.length}`);
    const sockets = [wgA, wgB].map((w) => path.join(WG_RUN_DIR, `${w.ifname}.sock`));
    const dir = lab.dir;
    assert.ok(fs.existsSync(dir));

    await lab.cleanup();
    await lab.cleanup();

    const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) => {
      execFile('ip', ['netns', 'list'], { timeout: 5_000 }, (error, out) =>
        error ? reject(error) : resolve({ stdout: out }),
      );
    });
    assert.doesNotMatch(stdout, new RegExp(`^${lab.prefix}-`, 'm'));
    for (const pid of pids) assert.equal(pidAlive(pid), false, `pid ${pid} is still alive`);
    for (const p of lab.processes) assert.equal(p.running, false);
    for (const socket of sockets) assert.equal(fs.existsSync(socket), false, `${socket} still exists`);
    assert.equal(fs.existsSync(dir), false);
    await assert.rejects(lab.netns('c'), /cleaned up/);
  });
});
