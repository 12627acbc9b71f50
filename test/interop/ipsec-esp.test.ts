/**
 * Weft ↔ Weft ESP through namespaces, as root: two ESP endpoints (esp-gateway-host.ts: LinuxTun, Gateway,
 * EspPort, IpsecSite) with mirror-image CHILD SAs made here, and a host in a subnet behind each:
 *
 *   ha 10.1.0.2 / fd00:1::2 ── gwA [TUN] 192.168.N.1 ══ ESP ══ 192.168.N.2 [TUN] gwB ── hb 10.2.0.2 / fd00:2::2
 *
 * Tunnel mode over UDP 4500 and over raw ESP (protocol 50): pings both ways (IPv4 and IPv6 inner), a
 * sha256-checked 20 MB transfer, a captured ESP packet re-injected (dropped as a replay, counted) and the same
 * packet with a wrong SPI (dropped, counted). Transport mode between the two gateways over both carriers:
 * ping and a sha256-checked transfer. Over raw ESP the test also checks that this kernel, which has no ESP
 * module, delivers protocol 50 to the raw socket and answers nothing (no ICMP protocol-unreachable).
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';

import { Lab, capture, interopSkip, parsePcap, type JsonLinesProcess } from './harness.js';
import { ping, verifiedTransfer } from './gateway-lab.js';
import { espTopology, type HostEvent } from './esp-lab.js';

const TOOLS = ['ip', 'tcpdump', 'ping'];
const skip = interopSkip(TOOLS);

const labs: Lab[] = [];
after(async () => {
  for (const lab of labs) await lab.cleanup();
});

/** The ESP packets (from the SPI on) in a capture of UDP 4500 or protocol 50 on an Ethernet link. */
async function espPackets(file: string): Promise<Buffer[]> {
  const pcap = parsePcap(await fsp.readFile(file));
  const out: Buffer[] = [];
  for (const r of pcap.records) {
    const ip = r.data.subarray(14);
    if (ip[0]! >> 4 !== 4) continue;
    const ihl = (ip[0]! & 0x0f) * 4;
    if (ip[9] === 50) out.push(ip.subarray(ihl));
    else if (ip[9] === 17) out.push(ip.subarray(ihl + 8));
  }
  return out;
}

async function status(host: JsonLinesProcess<HostEvent>): Promise<HostEvent> {
  return host.request({ op: 'status' }, 'status');
}

for (const [i, carrier] of (['udp', 'raw'] as const).entries()) {
  describe(
    `Weft ↔ Weft ESP, tunnel mode over ${carrier === 'udp' ? 'UDP 4500' : 'raw ESP (protocol 50)'}`,
    { skip },
    () => {
      it(
        'pings both ways (IPv4, IPv6), moves 20 MB intact, drops a replay and a wrong SPI',
        { timeout: 180_000 },
        async () => {
          const lab = await Lab.create('esp', { tools: TOOLS });
          labs.push(lab);
          const t = await espTopology(lab, carrier, 'tunnel', 60 + i);
          const icmp = carrier === 'raw' ? await capture(t.gwB, t.bIf, 'icmp') : undefined;
          for (const [from, to] of [
            [t.ha, '10.2.0.2'],
            [t.hb, '10.1.0.2'],
            [t.ha, 'fd00:2::2'],
            [t.hb, 'fd00:1::2'],
          ] as const) {
            const r = await ping(from, to, { count: 3 });
            assert.equal(r.received, 3, `ping ${to}: ${r.output}`);
          }
          const transfer = await verifiedTransfer(t.ha, t.hb, '10.2.0.2', {
            bytes: 20 << 20,
            timeoutMs: 90_000,
          });
          assert.equal(transfer.received.bytes, 20 << 20);
          assert.equal(transfer.received.sha256, transfer.expectedSha256);
          process.stdout.write(`# ESP ${carrier}: 20 MB in ${transfer.ms} ms\n`);

          // Capture one ESP packet from A to B, then send it again, and once more with a wrong SPI.
          const filter =
            carrier === 'udp' ? `udp dst port 4500 and src host ${t.a4}` : `ip proto 50 and src host ${t.a4}`;
          const cap = await capture(t.gwB, t.bIf, filter);
          assert.equal((await ping(t.ha, '10.2.0.2', { count: 1 })).received, 1);
          await cap.stop();
          const packets = await espPackets(cap.file);
          assert.ok(packets.length >= 1, 'captured the echo request');
          const replayed = packets[0]!;
          const before = await status(t.hostB);
          const replaysBefore = before.sas![0]!.inbound.drops.replay ?? 0;
          await t.hostA.request({ op: 'inject', hex: replayed.toString('hex'), carrier }, 'injected');
          const wrong = Buffer.from(replayed);
          wrong[0]! ^= 0x5a;
          await t.hostA.request({ op: 'inject', hex: wrong.toString('hex'), carrier }, 'injected');
          let after = before;
          for (let k = 0; k < 50; k++) {
            after = await status(t.hostB);
            if (
              (after.sas![0]!.inbound.drops.replay ?? 0) > replaysBefore &&
              after.set!.unknownSpi > before.set!.unknownSpi
            )
              break;
            await new Promise((r) => setTimeout(r, 50));
          }
          assert.equal(
            after.sas![0]!.inbound.drops.replay,
            replaysBefore + 1,
            'the replay is dropped and counted',
          );
          assert.equal(
            after.set!.unknownSpi,
            before.set!.unknownSpi + 1,
            'the wrong SPI is dropped and counted',
          );
          if (icmp) {
            await icmp.stop();
            const unreachable = parsePcap(await fsp.readFile(icmp.file)).records.filter((r) => {
              const ip = r.data.subarray(14);
              return ip[9] === 1 && ip[(ip[0]! & 0x0f) * 4] === 3;
            });
            const described = unreachable.map((r) => {
              const ip = r.data.subarray(14);
              const at = (ip[0]! & 0x0f) * 4;
              return `${[...ip.subarray(12, 16)].join('.')}>${[...ip.subarray(16, 20)].join('.')} code ${ip[at + 1]} about proto ${ip[at + 8 + 9]} quoted ${Buffer.from(ip.subarray(at + 8 + 20, at + 8 + 28)).toString('hex')}`;
            });
            assert.deepEqual(described, [], 'no ICMP unreachable: the raw socket took protocol 50');
            assert.ok((after.raw?.received ?? 0) > 1000, 'B read ESP from its raw socket');
          }
          await t.hostA.request({ op: 'exit' }, 'status', 1).catch(() => undefined);
        },
      );
    },
  );

  describe(
    `Weft ↔ Weft ESP, transport mode over ${carrier === 'udp' ? 'UDP 4500' : 'raw ESP'}`,
    { skip },
    () => {
      it('pings and moves 4 MB intact between the two hosts', { timeout: 120_000 }, async () => {
        const lab = await Lab.create('esp', { tools: TOOLS });
        labs.push(lab);
        const t = await espTopology(lab, carrier, 'transport', 70 + i);
        const r = await ping(t.gwA, t.b4, { count: 3 });
        assert.equal(r.received, 3, r.output);
        const transfer = await verifiedTransfer(t.gwA, t.gwB, t.b4, { bytes: 4 << 20, timeoutMs: 60_000 });
        assert.equal(transfer.received.sha256, transfer.expectedSha256);
        const s = await status(t.hostB);
        assert.ok(s.sas![0]!.inbound.packets > 100, 'the traffic went through ESP');
      });
    },
  );
}
