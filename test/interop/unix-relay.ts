/**
 * A TCP listener that relays each connection to a Unix socket, for a test whose PostgreSQL (postgres-harness.ts,
 * listening on the root namespace's loopback and a Unix socket) must be reached over a network path that the
 * test can cut: run it in a namespace with `HOST PORT SOCKET`; it prints "ready" once listening. Each TCP
 * connection gets a Unix connection of its own; when either side closes or fails, both are ended. It exits after
 * 10 minutes in any case, so a test that fails to stop it leaves nothing running for long. Without arguments
 * (e.g. when a test runner loads the file) it does nothing.
 */
import { connect, createServer } from 'node:net';

const [host, portText, socketPath] = process.argv.slice(2);
if (host !== undefined && portText !== undefined && socketPath !== undefined) {
  const server = createServer((tcp) => {
    const unix = connect(socketPath);
    const end = (): void => {
      tcp.destroy();
      unix.destroy();
    };
    tcp.on('error', end).on('close', end);
    unix.on('error', end).on('close', end);
    tcp.pipe(unix);
    unix.pipe(tcp);
  });
  server.listen(Number(portText), host, () => process.stdout.write('ready\n'));
  setTimeout(() => process.exit(0), 600_000).unref();
  server.on('error', (err) => {
    process.stderr.write(`relay: ${err.message}\n`);
    process.exit(1);
  });
}
