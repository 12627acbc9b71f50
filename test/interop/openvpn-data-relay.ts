/**
 * A helper for openvpn-data.test.ts, run inside a lab namespace: a UDP relay between a real openvpn client
 * and a real openvpn server that hands the test every data-channel datagram and lets it inject its own.
 *
 *   node openvpn-data-relay.js LISTEN_ADDRESS LISTEN_PORT SERVER_ADDRESS SERVER_PORT
 *
 * Datagrams from SERVER_ADDRESS:SERVER_PORT go to the last client address seen; all others come from the
 * client and go to the server. Every P_DATA_V1/V2 datagram is also reported, as a JSON line
 * {"ev":"data","n":N,"from":"client"|"server","hex":...} (N counts reports, so the test can tell new ones
 * from old ones); control packets are only counted. {"cmd":"inject","to":"server"|"client","hex":...} sends a
 * datagram from the relay's socket and answers {"ev":"sent"}. Exits when its standard input closes.
 */
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

const [listenAddress = '0.0.0.0', listenPort = '1194', serverAddress = '127.0.0.1', serverPort = '1195'] =
  process.argv.slice(2);
const server = { address: serverAddress, port: Number(serverPort) };
let client: { address: string; port: number } | undefined;
let reports = 0;
const socket = createSocket('udp4');

function isData(msg: Buffer): boolean {
  const opcode = msg.length > 0 ? msg[0]! >>> 3 : 0;
  return opcode === 6 || opcode === 9;
}

socket.on('message', (msg, rinfo) => {
  const fromServer = rinfo.address === server.address && rinfo.port === server.port;
  if (!fromServer) client = { address: rinfo.address, port: rinfo.port };
  const to = fromServer ? client : server;
  if (isData(msg)) {
    emit({ ev: 'data', n: reports++, from: fromServer ? 'server' : 'client', hex: msg.toString('hex') });
  }
  if (to) socket.send(msg, to.port, to.address);
});
socket.on('error', (error) => {
  emit({ ev: 'error', message: error.message });
  process.exitCode = 1;
});
socket.bind(Number(listenPort), listenAddress, () => emit({ ev: 'ready' }));

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const cmd = JSON.parse(line) as { cmd: string; to: string; hex: string };
  if (cmd.cmd !== 'inject') return;
  const to = cmd.to === 'server' ? server : client;
  if (!to) {
    emit({ ev: 'error', message: 'no client address yet' });
    return;
  }
  socket.send(Buffer.from(cmd.hex, 'hex'), to.port, to.address, (error) => {
    if (error) emit({ ev: 'error', message: error.message });
    else emit({ ev: 'sent' });
  });
});
lines.on('close', () => socket.close());
