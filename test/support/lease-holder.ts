/**
 * A process that holds a lease, for the failover test in test/interop/store-postgres.test.ts: opens the
 * PostgreSQL store at argv[2], takes the lease argv[3], prints "held" (or "busy") and then waits to be killed.
 * It exits after 60 s in any case, so a test that fails to kill it leaves nothing running for long. Without
 * arguments (e.g. when a test runner loads the file) it does nothing.
 */
import { openPostgresStore } from '../../src/control/store-postgres.js';

const [url, name] = process.argv.slice(2);
if (url !== undefined && name !== undefined) {
  const store = await openPostgresStore(url, { poolSize: 1 });
  const lease = await store.acquireLease(name);
  process.stdout.write(lease === null ? 'busy\n' : 'held\n');
  lease?.onLost((reason) => process.stdout.write(`lost ${reason.message}\n`));
  setTimeout(() => process.exit(2), 60_000);
}
