/**
 * A helper for openvpn-packet.test.ts, run inside a lab namespace: it owns one UDP socket there and relays
 * datagrams between it and the test process, as JSON lines, so the protocol code under test runs in the test
 * process itself.
 *
 *   node openvpn-udp-relay.js ADDRESS PORT
 *     prints {"ev":"ready"}, then {"ev":"rx","address":...,"port":...,"hex":...} per datagram received;
 *     reads {"cmd":"send","address":...,"port":...,"hex":...} and answers {"ev":"sent"}.
 * It exits when its standard input closes.
 */
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

const [address = '0.0.0.0', portText = '1194'] = process.argv.slice(2);
const socket = createSocket('udp4');
socket.on('message', (msg, rinfo) => {
  emit({ ev: 'rx', address: rinfo.address, port: rinfo.port, hex: msg.toString('hex') });
});
socket.on('error', (error) => {
  emit({ ev: 'error', message: error.message });
  process.exitCode = 1;
});
socket.bind(Number(portText), address, () => emit({ ev: 'ready' }));

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const cmd = JSON.parse(line) as { cmd: string; address: string; port: number; hex: string };
  if (cmd.cmd !== 'send') return;
  socket.send(Buffer.from(cmd.hex, 'hex'), cmd.port, cmd.address, (error) => {
    if (error) emit({ ev: 'error', message: error.message });
    else emit({ ev: 'sent' });
  });
});
lines.on('close', () => socket.close());
