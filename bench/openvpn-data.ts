/**
 * Micro-benchmark of the OpenVPN data channel (src/openvpn/data-channel.ts): seal and open of 1400-byte
 * payloads, per cipher, in one thread, no I/O. Prints packets per second, ns per packet and the payload rate.
 *
 *   node dist/bench/openvpn-data.js [--packets N] [--size BYTES]
 *
 * Not part of `npm run bench` (which measures whole tunnels between namespaces); this isolates the cost of
 * the data channel's crypto and framing.
 */
import { parseArgs } from 'node:util';
import { DATA_V2_HEADER, DataChannel, isDrop } from '../src/openvpn/data-channel.js';
import { DATA_CIPHERS, type DataCipherName } from '../src/openvpn/data-channel-keys.js';

const { values } = parseArgs({
  options: {
    packets: { type: 'string', default: '200000' },
    size: { type: 'string', default: '1400' },
  },
});
const PACKETS = Number(values.packets);
const SIZE = Number(values.size);
if (!(PACKETS > 0) || !(SIZE > 0 && SIZE <= 65_000)) {
  console.error('usage: openvpn-data.js [--packets N] [--size BYTES]');
  process.exit(2);
}

interface Row {
  cipher: DataCipherName;
  op: 'seal' | 'open';
  backend: string;
  pps: number;
  ns: number;
  mbps: number;
}

function measure(cipher: DataCipherName): Row[] {
  const block = new Uint8Array(256).map((_, i) => (i * 37 + 11) & 0xff);
  const client = new DataChannel({ role: 'client', peerId: 1 });
  const server = new DataChannel({ role: 'server', peerId: 1 });
  client.installKey(0, block, cipher);
  server.installKey(0, block, cipher);
  const payload = new Uint8Array(SIZE).map((_, i) => i & 0xff);
  payload[0] = 0x45;
  const wire = new Uint8Array(SIZE + DATA_V2_HEADER);
  const plain = new Uint8Array(SIZE);

  // Seal: one reused output buffer, as the I/O shell would use.
  for (let i = 0; i < 2_000; i++) client.seal(payload, wire); // warm-up
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < PACKETS; i++) client.seal(payload, wire);
  const sealNs = Number(process.hrtime.bigint() - t0) / PACKETS;

  // Open: pre-seal a batch with fresh packet ids (the replay window refuses repeats), then open it.
  const batch = 4_096;
  const packets = Array.from({ length: batch }, () => new Uint8Array(SIZE + DATA_V2_HEADER));
  let opened = 0;
  let openTotal = 0n;
  while (opened < PACKETS) {
    const n = Math.min(batch, PACKETS - opened);
    for (let i = 0; i < n; i++) client.seal(payload, packets[i]!);
    t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const result = server.open(packets[i]!, plain, 0);
      if (isDrop(result)) throw new Error(`open dropped a packet: ${result}`);
    }
    openTotal += process.hrtime.bigint() - t0;
    opened += n;
  }
  const openNs = Number(openTotal) / PACKETS;
  const backend = client.backend ?? 'none';
  client.dispose();
  server.dispose();
  const row = (op: 'seal' | 'open', ns: number): Row => ({
    cipher,
    op,
    backend,
    pps: 1e9 / ns,
    ns,
    mbps: (SIZE * 8 * 1e9) / ns / 1e6,
  });
  return [row('seal', sealNs), row('open', openNs)];
}

const rows = DATA_CIPHERS.flatMap(measure);
console.log(
  `OpenVPN data channel, ${SIZE}-byte payloads, ${PACKETS} packets per measurement, one thread (WEFT_CRYPTO=${process.env.WEFT_CRYPTO ?? 'default'})`,
);
console.log('| cipher            | op   | backend     |   packets/s | ns/packet | payload Mbit/s |');
console.log('| ----------------- | ---- | ----------- | ----------: | --------: | -------------: |');
for (const r of rows) {
  console.log(
    `| ${r.cipher.padEnd(17)} | ${r.op} | ${r.backend.padEnd(11)} | ${Math.round(r.pps).toLocaleString('en-US').padStart(11)} | ${r.ns.toFixed(0).padStart(9)} | ${r.mbps.toFixed(0).padStart(14)} |`,
  );
}
