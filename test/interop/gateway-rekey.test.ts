/**
 * Rekey with a real peer: `weft up` in one namespace, wireguard-go (Debian package, configured with `wg`) in
 * another, joined by a veth. Two independent tunnels run side by side so that both directions of the rekey are
 * covered in one ~2.5 minute run:
 *
 *   pair 1: Weft initiates the first handshake, so Weft is the one that rekeys after REKEY_AFTER_TIME;
 *   pair 2: wireguard-go initiates the first handshake, so wireguard-go rekeys and Weft answers.
 *
 * Through each tunnel, for ~132 s: a sequenced UDP datagram every 20 ms in each direction (node processes in
 * both namespaces; arrival times and one-way latencies on the shared monotonic clock) and a TCP connection
 * echoing 512 bytes every 20 ms. Proven afterwards:
 *   - every handshake message on the veth (tcpdump): the expected side initiated, and initiated again
 *     120–125 s after the first session was made; nothing else (no retries, no cookie replies);
 *   - shortly before the end, every transport message in both directions uses the new session's indices;
 *   - `wg show NAME dump` on both sides: the latest handshake moved ≥ 120 s past the first;
 *   - no datagram lost, duplicated or delayed: largest gap between consecutive arrivals and largest one-way
 *     latency < 1 s, over the whole run and around the rekey;
 *   - the TCP connections saw no error or reset and echoed every byte intact.
 */
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { PrivateKey } from '../../src/crypto/keys.js';
import { REKEY_AFTER_TIME, REKEY_TIMEOUT } from '../../src/wireguard/constants.js';
import {
  capture,
  interopSkip,
  Lab,
  parsePcap,
  startWireguardGo,
  waitFor,
  wgShowDump,
  type ManagedProcess,
  type Netns,
  type WgDump,
  type WgPeerDump,
} from './harness.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** How long each flow sends, from the common start signal (the first sessions are made just before). */
const FLOW_MS = 132_000;
const INTERVAL_MS = 20;
/** After sending, each flow process waits this long for the last arrivals and the TCP close. */
const DRAIN_MS = 3_000;
/** The requirement: no stall longer than one second. */
const MAX_STALL_MS = 1_000;
/** Window around the rekey initiation whose gaps are reported separately. */
const REKEY_WINDOW_BEFORE_MS = 1_000;
const REKEY_WINDOW_AFTER_MS = 3_000;

const UNDERLAY_A = '10.90.0.1';
const UNDERLAY_B = '10.90.0.2';
const UDP_FLOW_PORT = 40_000;
const TCP_FLOW_PORT = 40_001;

interface PairSpec {
  label: string;
  /** Lab-local interface names. */
  weftIf: string;
  wgoIf: string;
  weftPort: number;
  wgoPort: number;
  /** Tunnel addresses: Weft's is .1, wireguard-go's .2. */
  subnet: string;
  weftInitiates: boolean;
}

const PAIRS: readonly PairSpec[] = [
  {
    label: 'Weft initiates (Weft rekeys)',
    weftIf: 'w1',
    wgoIf: 'g1',
    weftPort: 51_001,
    wgoPort: 51_101,
    subnet: '10.91.1',
    weftInitiates: true,
  },
  {
    label: 'wireguard-go initiates (wireguard-go rekeys)',
    weftIf: 'w2',
    wgoIf: 'g2',
    weftPort: 51_002,
    wgoPort: 51_102,
    subnet: '10.91.2',
    weftInitiates: false,
  },
];

// ---------------------------------------------------------------------------------------------------------------
// The flow process (CommonJS, run with `node -e`): config as JSON in argv[1]. Binds, prints "ready", waits for
// "go" on stdin, sends for durationMs, drains, writes its results (FlowResult) to cfg.out, prints "done".

const FLOW_SCRIPT = String.raw`
'use strict';
const dgram = require('node:dgram');
const net = require('node:net');
const fs = require('node:fs');
const { performance } = require('node:perf_hooks');
const cfg = JSON.parse(process.argv[1]);
const PAYLOAD = 64;
const CHUNK = 512;
const epoch = () => performance.timeOrigin + performance.now();
const mono = () => process.hrtime.bigint();
const errors = [];
const result = { sent: 0, maxSendGapMs: 0, sendStart: 0, sendEnd: 0, seq: [], at: [], lat: [], errors, tcp: null };

const udp = dgram.createSocket('udp4');
udp.on('error', (e) => errors.push('udp: ' + e.message));
udp.on('message', (msg) => {
  const now = mono();
  const at = epoch();
  if (msg.length !== PAYLOAD) {
    errors.push('udp: unexpected length ' + msg.length);
    return;
  }
  result.seq.push(msg.readUInt32BE(0));
  result.at.push(Math.round(at * 1000) / 1000);
  result.lat.push(Math.round(Number(now - msg.readBigUInt64BE(8)) / 1000) / 1000);
});

const tcp = {
  role: cfg.tcp, connected: false, bytesSent: 0, bytesReceived: 0, mismatches: 0, maxEchoGapMs: 0,
  peerEnded: false, closed: false, closedWithError: false, errors: [],
};
let tcpSocket = null;
let lastEcho = null;
let sending = false;

function watch(sock) {
  sock.setNoDelay(true);
  sock.on('error', (e) => tcp.errors.push(e.code || e.message));
  sock.on('end', () => {
    tcp.peerEnded = true;
    if (cfg.tcp === 'server') sock.end();
  });
  sock.on('close', (hadError) => {
    tcp.closed = true;
    tcp.closedWithError = hadError;
  });
}

function ready() {
  process.stdout.write('ready\n');
}

udp.bind(cfg.udpPort, cfg.local, () => {
  if (cfg.tcp !== 'server') return ready();
  const server = net.createServer((sock) => {
    if (tcpSocket) {
      tcp.errors.push('unexpected second connection');
      sock.destroy();
      return;
    }
    tcpSocket = sock;
    tcp.connected = true;
    watch(sock);
    sock.on('data', (d) => {
      tcp.bytesReceived += d.length;
      tcp.bytesSent += d.length;
      sock.write(d);
    });
  });
  server.on('error', (e) => tcp.errors.push('server: ' + (e.code || e.message)));
  server.listen(cfg.tcpPort, cfg.local, ready);
});

let input = '';
let started = false;
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  input += chunk;
  if (!started && input.includes('go\n')) {
    started = true;
    go();
  }
});

function go() {
  const t0 = mono();
  const sinceStart = () => Number(mono() - t0) / 1e6;
  const total = Math.floor(cfg.durationMs / cfg.intervalMs);
  let seq = 0;
  let lastSend = null;
  result.sendStart = epoch();
  sending = true;
  if (cfg.tcp === 'client') startTcpClient();
  const tick = () => {
    // Everything due by now goes out (after a stall of our own, as a burst; maxSendGapMs shows it).
    while (seq < total && sinceStart() >= seq * cfg.intervalMs) {
      const now = mono();
      const b = Buffer.alloc(PAYLOAD);
      b.writeUInt32BE(seq, 0);
      b.writeBigUInt64BE(now, 8);
      udp.send(b, cfg.udpRemotePort, cfg.remote, (e) => {
        if (e) errors.push('udp send: ' + e.message);
      });
      if (lastSend !== null) result.maxSendGapMs = Math.max(result.maxSendGapMs, Number(now - lastSend) / 1e6);
      lastSend = now;
      if (tcpSocket && cfg.tcp === 'client' && tcp.connected) writeChunk();
      seq++;
      result.sent = seq;
    }
    if (seq < total) {
      setTimeout(tick, Math.max(0, seq * cfg.intervalMs - sinceStart()));
    } else {
      result.sendEnd = epoch();
      sending = false;
      finish();
    }
  };
  tick();
}

function startTcpClient() {
  const sock = net.connect({ host: cfg.remote, port: cfg.tcpPort, localAddress: cfg.local });
  tcpSocket = sock;
  watch(sock);
  sock.on('connect', () => {
    tcp.connected = true;
  });
  sock.on('data', (d) => {
    const now = mono();
    if (lastEcho !== null && sending) tcp.maxEchoGapMs = Math.max(tcp.maxEchoGapMs, Number(now - lastEcho) / 1e6);
    lastEcho = now;
    for (let i = 0; i < d.length; i++) if (d[i] !== (tcp.bytesReceived + i) % 251) tcp.mismatches++;
    tcp.bytesReceived += d.length;
  });
}

function writeChunk() {
  const b = Buffer.alloc(CHUNK);
  for (let i = 0; i < CHUNK; i++) b[i] = (tcp.bytesSent + i) % 251;
  tcp.bytesSent += CHUNK;
  tcpSocket.write(b);
}

function finish() {
  if (cfg.tcp === 'client' && tcpSocket) tcpSocket.end();
  setTimeout(() => {
    if (cfg.tcp) result.tcp = tcp;
    fs.writeFileSync(cfg.out, JSON.stringify(result));
    process.stdout.write('done\n');
    process.exit(0);
  }, cfg.drainMs);
}
`;

interface FlowConfig {
  local: string;
  udpPort: number;
  remote: string;
  udpRemotePort: number;
  tcp: 'client' | 'server';
  tcpPort: number;
  durationMs: number;
  intervalMs: number;
  drainMs: number;
  out: string;
}

interface TcpResult {
  role: 'client' | 'server';
  connected: boolean;
  bytesSent: number;
  bytesReceived: number;
  mismatches: number;
  maxEchoGapMs: number;
  peerEnded: boolean;
  closed: boolean;
  closedWithError: boolean;
  errors: string[];
}

interface FlowResult {
  sent: number;
  maxSendGapMs: number;
  /** Epoch ms. */
  sendStart: number;
  sendEnd: number;
  /** Per arrival: sequence number, epoch ms, one-way latency ms (monotonic clock shared by both sides). */
  seq: number[];
  at: number[];
  lat: number[];
  errors: string[];
  tcp: TcpResult | null;
}

interface Flow {
  config: FlowConfig;
  process: ManagedProcess;
}

function startFlow(ns: Netns, config: FlowConfig): Flow {
  return { config, process: ns.spawn(process.execPath, ['-e', FLOW_SCRIPT, JSON.stringify(config)]) };
}

async function flowResult(flow: Flow, timeoutMs: number): Promise<FlowResult> {
  await flow.process.waitForOutput(/^done$/m, timeoutMs);
  return JSON.parse(await fsp.readFile(flow.config.out, 'utf8')) as FlowResult;
}

// ---------------------------------------------------------------------------------------------------------------
// Analysis

interface DirectionStats {
  sent: number;
  received: number;
  lost: number;
  duplicates: number;
  reordered: number;
  maxGapMs: number;
  /** Epoch ms of the arrival that ended the largest gap. */
  maxGapEndedAt: number;
  maxLatencyMs: number;
  /** Largest gap / latency among arrivals in the window around the rekey initiation. */
  rekeyWindowMaxGapMs: number;
  rekeyWindowMaxLatencyMs: number;
  rekeyWindowArrivals: number;
  senderMaxSendGapMs: number;
}

function directionStats(sender: FlowResult, receiver: FlowResult, rekeyAt: number): DirectionStats {
  const seen = new Uint8Array(sender.sent);
  let duplicates = 0;
  let reordered = 0;
  let highest = -1;
  for (const s of receiver.seq) {
    if (s >= sender.sent) {
      duplicates++; // never sent: an extra arrival, reported with the duplicates
      continue;
    }
    if (seen[s]) duplicates++;
    seen[s] = 1;
    if (s < highest) reordered++;
    highest = Math.max(highest, s);
  }
  const unique = seen.reduce((n, v) => n + v, 0);
  let maxGapMs = 0;
  let maxGapEndedAt = 0;
  let rekeyWindowMaxGapMs = 0;
  let rekeyWindowMaxLatencyMs = 0;
  let rekeyWindowArrivals = 0;
  const inWindow = (t: number): boolean =>
    t >= rekeyAt - REKEY_WINDOW_BEFORE_MS && t <= rekeyAt + REKEY_WINDOW_AFTER_MS;
  for (let i = 0; i < receiver.at.length; i++) {
    const t = receiver.at[i]!;
    const gap = i > 0 ? t - receiver.at[i - 1]! : 0;
    if (gap > maxGapMs) {
      maxGapMs = gap;
      maxGapEndedAt = t;
    }
    if (inWindow(t)) {
      rekeyWindowArrivals++;
      rekeyWindowMaxGapMs = Math.max(rekeyWindowMaxGapMs, gap);
      rekeyWindowMaxLatencyMs = Math.max(rekeyWindowMaxLatencyMs, receiver.lat[i]!);
    }
  }
  return {
    sent: sender.sent,
    received: receiver.seq.length,
    lost: sender.sent - unique,
    duplicates,
    reordered,
    maxGapMs,
    maxGapEndedAt,
    maxLatencyMs: receiver.lat.reduce((m, v) => Math.max(m, v), 0),
    rekeyWindowMaxGapMs,
    rekeyWindowMaxLatencyMs,
    rekeyWindowArrivals,
    senderMaxSendGapMs: sender.maxSendGapMs,
  };
}

/** A WireGuard message seen on the veth (IPv4 over Ethernet). */
interface WgMessage {
  /** Epoch ms (capture time). */
  t: number;
  srcPort: number;
  dstPort: number;
  type: number;
  /** Sender index (initiation, response). */
  sender?: number;
  /** Receiver index (response, cookie reply, transport). */
  receiver?: number;
}

async function wgMessages(file: string): Promise<WgMessage[]> {
  const pcap = parsePcap(await fsp.readFile(file));
  assert.equal(pcap.linkType, 1, 'veth capture is Ethernet');
  const messages: WgMessage[] = [];
  for (const r of pcap.records) {
    const d = r.data;
    if (d.length < 14 + 20 + 8 + 4 || d.readUInt16BE(12) !== 0x0800) continue;
    const ihl = (d[14]! & 0x0f) * 4;
    if (d[14 + 9] !== 17) continue;
    const udp = 14 + ihl;
    const payload = d.subarray(udp + 8);
    const type = payload[0]!;
    const m: WgMessage = {
      t: r.tsSec * 1000 + r.tsFrac / (pcap.nanosecond ? 1e6 : 1e3),
      srcPort: d.readUInt16BE(udp),
      dstPort: d.readUInt16BE(udp + 2),
      type,
    };
    if (payload.length >= 12) {
      if (type === 1) m.sender = payload.readUInt32LE(4);
      if (type === 2) {
        m.sender = payload.readUInt32LE(4);
        m.receiver = payload.readUInt32LE(8);
      }
      if (type === 3 || type === 4) m.receiver = payload.readUInt32LE(4);
    }
    messages.push(m);
  }
  return messages;
}

function onlyPeer(dump: WgDump, what: string): WgPeerDump {
  assert.equal(dump.peers.length, 1, `${what}: one peer`);
  return dump.peers[0]!;
}

const iso = (ms: number): string => new Date(ms).toISOString();
const round = (ms: number): number => Math.round(ms * 10) / 10;

// ---------------------------------------------------------------------------------------------------------------
// Weft

async function startWeft(ns: Netns, ifname: string, conf: string): Promise<ManagedProcess> {
  ns.lab.registerWgInterface(ifname); // cleanup removes its UAPI socket
  // `weft up` names the interface after the file: a directory of its own keeps the lab's file prefixes out.
  const dir = ns.lab.file(`weft-${ifname}`);
  await fsp.mkdir(dir, { mode: 0o700 });
  const file = path.join(dir, `${ifname}.conf`);
  await fsp.writeFile(file, conf, { mode: 0o600 });
  const proc = ns.spawn(process.execPath, [MAIN, 'up', '--foreground', file]);
  await proc.waitForOutput(new RegExp(`${ifname} is up: listening`), 20_000);
  await waitFor(`wg show ${ifname}`, async () => (await wgShowDump(ns, ifname)).peers.length === 1, {
    timeoutMs: 5_000,
  });
  return proc;
}

// ---------------------------------------------------------------------------------------------------------------

describe('Weft gateway ↔ wireguard-go: rekey under a continuous flow', { skip: interopSkip() }, () => {
  let lab: Lab | undefined;

  after(async () => {
    await lab?.cleanup();
  });

  it(
    'both directions rekey after REKEY_AFTER_TIME with no loss and no stall ≥ 1 s',
    { timeout: 200_000 },
    async (t: TestContext) => {
      lab = await Lab.create('rekey');
      const a = await lab.netns('a'); // Weft
      const b = await lab.netns('b'); // wireguard-go
      const { bIf } = await lab.veth(a, b, { aAddr: `${UNDERLAY_A}/24`, bAddr: `${UNDERLAY_B}/24` });
      const handshakeCapture = await capture(b, bIf, 'udp and (udp[8] = 1 or udp[8] = 2 or udp[8] = 3)');

      // ---- bring up both tunnels
      const pairs = [];
      for (const spec of PAIRS) {
        const weftKey = PrivateKey.generate();
        const wgoKey = PrivateKey.generate();
        const weftIf = lab.ifname(spec.weftIf);
        const wgo = await startWireguardGo(b, lab.ifname(spec.wgoIf), {
          privateKey: wgoKey.toBase64(),
          listenPort: spec.wgoPort,
          addresses: [`${spec.subnet}.2/24`],
          peers: [
            {
              publicKey: weftKey.publicKey().toBase64(),
              endpoint: `${UNDERLAY_A}:${spec.weftPort}`,
              allowedIps: [`${spec.subnet}.1/32`],
            },
          ],
        });
        const weft = await startWeft(
          a,
          weftIf,
          [
            '[Interface]',
            `PrivateKey = ${weftKey.toBase64()}`,
            `ListenPort = ${spec.weftPort}`,
            `Address = ${spec.subnet}.1/24`,
            '',
            '[Peer]',
            `PublicKey = ${wgoKey.publicKey().toBase64()}`,
            `Endpoint = ${UNDERLAY_B}:${spec.wgoPort}`,
            `AllowedIPs = ${spec.subnet}.2/32`,
            '',
          ].join('\n'),
        );
        pairs.push({ spec, weftIf, weft, wgo, weftDump: () => wgShowDump(a, weftIf) });
      }

      // ---- the first session of each pair, made by the chosen side
      for (const p of pairs) {
        const [from, to] = p.spec.weftInitiates ? [a, `${p.spec.subnet}.2`] : [b, `${p.spec.subnet}.1`];
        await from.exec('ping', ['-c', '1', '-W', '5', to], { timeoutMs: 10_000 });
      }
      const before: { weft: WgPeerDump; wgo: WgPeerDump }[] = [];
      for (const p of pairs) {
        before.push({
          weft: onlyPeer(await p.weftDump(), p.weftIf),
          wgo: onlyPeer(await p.wgo.dump(), p.wgo.ifname),
        });
      }

      // ---- the flows: UDP both ways and a TCP echo through each tunnel
      const flows = pairs.map((p) => {
        const common = {
          durationMs: FLOW_MS,
          intervalMs: INTERVAL_MS,
          drainMs: DRAIN_MS,
          tcpPort: TCP_FLOW_PORT,
        };
        const weftSide = startFlow(a, {
          ...common,
          local: `${p.spec.subnet}.1`,
          udpPort: UDP_FLOW_PORT,
          remote: `${p.spec.subnet}.2`,
          udpRemotePort: UDP_FLOW_PORT,
          tcp: 'client',
          out: lab!.file(`flow-${p.spec.weftIf}.json`),
        });
        const wgoSide = startFlow(b, {
          ...common,
          local: `${p.spec.subnet}.2`,
          udpPort: UDP_FLOW_PORT,
          remote: `${p.spec.subnet}.1`,
          udpRemotePort: UDP_FLOW_PORT,
          tcp: 'server',
          out: lab!.file(`flow-${p.spec.wgoIf}.json`),
        });
        return { weftSide, wgoSide };
      });
      const all = flows.flatMap((f) => [f.weftSide, f.wgoSide]);
      await Promise.all(all.map((f) => f.process.waitForOutput(/^ready$/m, 10_000)));
      const flowStart = Date.now();
      for (const f of all) f.process.write('go\n');

      // ---- shortly before the end (the rekeys are ~12 s past), which keys are the transport messages using?
      await delay(FLOW_MS - 5_000);
      for (const p of pairs) {
        assert.ok(p.weft.running, p.weft.describe());
        assert.ok(p.wgo.process.running, p.wgo.process.describe());
      }
      const transportCapture = await capture(b, bIf, 'udp and udp[8] = 4');
      await delay(1_500);
      await transportCapture.stop();

      const results = await Promise.all(
        flows.map(async (f) => ({
          weftSide: await flowResult(f.weftSide, 5_000 + FLOW_MS + DRAIN_MS - (Date.now() - flowStart)),
          wgoSide: await flowResult(f.wgoSide, 5_000),
        })),
      );
      const afterDumps: { weft: WgPeerDump; wgo: WgPeerDump }[] = [];
      for (const p of pairs) {
        afterDumps.push({
          weft: onlyPeer(await p.weftDump(), p.weftIf),
          wgo: onlyPeer(await p.wgo.dump(), p.wgo.ifname),
        });
      }
      await handshakeCapture.stop();
      const handshakes = await wgMessages(handshakeCapture.file);
      const transport = await wgMessages(transportCapture.file);

      // ---- report everything, then check it
      const failures: string[] = [];
      const check = (ok: boolean, message: string): void => {
        if (!ok) failures.push(message);
      };
      pairs.forEach((p, i) => {
        const { spec } = p;
        const tag = `[${spec.label}]`;
        const [initiatorPort, responderPort] = spec.weftInitiates
          ? [spec.weftPort, spec.wgoPort]
          : [spec.wgoPort, spec.weftPort];
        const mine = handshakes.filter(
          (m) =>
            (m.srcPort === spec.weftPort && m.dstPort === spec.wgoPort) ||
            (m.srcPort === spec.wgoPort && m.dstPort === spec.weftPort),
        );
        const initiations = mine.filter((m) => m.type === 1);
        const responses = mine.filter((m) => m.type === 2);
        const cookies = mine.filter((m) => m.type === 3);
        t.diagnostic(
          `${tag} handshake messages: ${mine
            .map((m) => `${iso(m.t)} type ${m.type} from :${m.srcPort}`)
            .join('; ')}`,
        );
        check(
          initiations.every((m) => m.srcPort === initiatorPort),
          `${tag} every initiation comes from :${initiatorPort}`,
        );
        check(
          responses.every((m) => m.srcPort === responderPort),
          `${tag} every response comes from :${responderPort}`,
        );
        check(cookies.length === 0, `${tag} no cookie replies`);
        check(
          initiations.length === 2 && responses.length === 2,
          `${tag} exactly two handshakes (first + rekey), saw ${initiations.length} initiations / ${responses.length} responses`,
        );
        const [, rekeyInit] = initiations;
        const [firstResp, rekeyResp] = responses;
        let rekeyAt = flowStart + REKEY_AFTER_TIME;
        if (firstResp && rekeyInit && rekeyResp) {
          rekeyAt = rekeyInit.t;
          const age = rekeyInit.t - firstResp.t;
          t.diagnostic(
            `${tag} first session ${iso(firstResp.t)}; rekey initiation ${iso(rekeyInit.t)} = ${round(age)} ms later; ` +
              `rekey response after ${round(rekeyResp.t - rekeyInit.t)} ms`,
          );
          check(firstResp.t < flowStart, `${tag} the first session was made before the flow started`);
          check(
            age >= REKEY_AFTER_TIME && age <= REKEY_AFTER_TIME + REKEY_TIMEOUT,
            `${tag} the rekey initiation came ${round(age)} ms after the first session (want ${REKEY_AFTER_TIME}–${REKEY_AFTER_TIME + REKEY_TIMEOUT})`,
          );
          check(
            rekeyResp.receiver === rekeyInit.sender && rekeyResp.t > rekeyInit.t,
            `${tag} the rekey response answers it`,
          );
          // Transport near the end: initiator → responder carries the responder's new index, and vice versa.
          const toResponder = transport.filter(
            (m) => m.srcPort === initiatorPort && m.dstPort === responderPort,
          );
          const toInitiator = transport.filter(
            (m) => m.srcPort === responderPort && m.dstPort === initiatorPort,
          );
          t.diagnostic(
            `${tag} late transport: ${toResponder.length} to the responder, ${toInitiator.length} to the initiator`,
          );
          check(
            toResponder.length > 20 && toInitiator.length > 20,
            `${tag} transport seen both ways near the end`,
          );
          check(
            toResponder.every((m) => m.receiver === rekeyResp.sender),
            `${tag} the initiator sends on the new session`,
          );
          check(
            toInitiator.every((m) => m.receiver === rekeyInit.sender),
            `${tag} the responder sends on the new session`,
          );
        }

        // wg show: the latest handshake moved past the first by REKEY_AFTER_TIME, on both sides.
        const b0 = before[i]!;
        const a0 = afterDumps[i]!;
        const [initBefore, initAfter, respBefore, respAfter] = spec.weftInitiates
          ? [b0.weft, a0.weft, b0.wgo, a0.wgo]
          : [b0.wgo, a0.wgo, b0.weft, a0.weft];
        t.diagnostic(
          `${tag} wg show latest-handshake: Weft ${iso(b0.weft.latestHandshake * 1000)} → ${iso(a0.weft.latestHandshake * 1000)}, ` +
            `wireguard-go ${iso(b0.wgo.latestHandshake * 1000)} → ${iso(a0.wgo.latestHandshake * 1000)}`,
        );
        check(
          initBefore.latestHandshake > 0 && respBefore.latestHandshake > 0,
          `${tag} both sides had a session`,
        );
        check(
          initAfter.latestHandshake - initBefore.latestHandshake >= REKEY_AFTER_TIME / 1000,
          `${tag} initiator's latest handshake moved ≥ 120 s (${initBefore.latestHandshake} → ${initAfter.latestHandshake})`,
        );
        // The responder's times are the initiator's plus transit (same clock, whole seconds): ≥ the initiator's
        // first + 120 s.
        check(
          respAfter.latestHandshake - initBefore.latestHandshake >= REKEY_AFTER_TIME / 1000,
          `${tag} responder's latest handshake moved ≥ 120 s past the first (${respBefore.latestHandshake} → ${respAfter.latestHandshake})`,
        );
        check(a0.weft.rxBytes > b0.weft.rxBytes && a0.wgo.rxBytes > b0.wgo.rxBytes, `${tag} traffic counted`);

        // The flows.
        const r = results[i]!;
        const directions = [
          ['Weft side → wireguard-go side', r.weftSide, r.wgoSide],
          ['wireguard-go side → Weft side', r.wgoSide, r.weftSide],
        ] as const;
        for (const [name, sender, receiver] of directions) {
          const s = directionStats(sender, receiver, rekeyAt);
          t.diagnostic(
            `${tag} ${name}: sent ${s.sent}, received ${s.received}, lost ${s.lost}, dup ${s.duplicates}, ` +
              `reordered ${s.reordered}; max gap ${round(s.maxGapMs)} ms (ending ${iso(s.maxGapEndedAt)}), ` +
              `max latency ${round(s.maxLatencyMs)} ms; around the rekey (${s.rekeyWindowArrivals} arrivals): ` +
              `max gap ${round(s.rekeyWindowMaxGapMs)} ms, max latency ${round(s.rekeyWindowMaxLatencyMs)} ms; ` +
              `sender's own max send gap ${round(s.senderMaxSendGapMs)} ms`,
          );
          check(
            sender.errors.length === 0 && receiver.errors.length === 0,
            `${tag} ${name}: flow errors ${JSON.stringify([...sender.errors, ...receiver.errors])}`,
          );
          check(
            s.sent >= (FLOW_MS / INTERVAL_MS) * 0.99,
            `${tag} ${name}: the whole flow was sent (${s.sent})`,
          );
          check(
            s.lost === 0 && s.duplicates === 0,
            `${tag} ${name}: ${s.lost} lost, ${s.duplicates} duplicated`,
          );
          check(s.maxGapMs < MAX_STALL_MS, `${tag} ${name}: largest gap ${round(s.maxGapMs)} ms`);
          check(s.maxLatencyMs < MAX_STALL_MS, `${tag} ${name}: largest latency ${round(s.maxLatencyMs)} ms`);
          check(
            s.rekeyWindowArrivals > 100,
            `${tag} ${name}: arrivals around the rekey (${s.rekeyWindowArrivals})`,
          );
        }
        const client = r.weftSide.tcp;
        const server = r.wgoSide.tcp;
        t.diagnostic(`${tag} TCP client ${JSON.stringify(client)}; server ${JSON.stringify(server)}`);
        check(
          !!client && !!server && client.errors.length === 0 && server.errors.length === 0,
          `${tag} TCP: no errors (no reset)`,
        );
        if (client && server) {
          check(
            client.bytesSent > 0 && client.bytesReceived === client.bytesSent,
            `${tag} TCP: every byte echoed`,
          );
          check(client.mismatches === 0, `${tag} TCP: echo intact`);
          check(client.peerEnded && client.closed && !client.closedWithError, `${tag} TCP: orderly close`);
          check(
            server.peerEnded && server.bytesReceived === client.bytesSent,
            `${tag} TCP: the server saw it all`,
          );
          check(
            client.maxEchoGapMs < MAX_STALL_MS,
            `${tag} TCP: largest echo gap ${round(client.maxEchoGapMs)} ms`,
          );
        }
      });
      for (const p of pairs) {
        check(p.weft.running, `Weft ${p.weftIf} still running: ${p.weft.describe()}`);
      }
      assert.deepEqual(failures, [], pairs.map((p) => p.weft.describe()).join('\n'));
    },
  );
});
