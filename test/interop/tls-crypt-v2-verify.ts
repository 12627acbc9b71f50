/**
 * openvpn's `--tls-crypt-v2-verify` command for the interop test: asks Weft's store, through
 * memberForClientKeyMetadata, whether the client key belongs to a member who may connect. openvpn runs it on
 * the client's first packet, before any TLS, with the metadata's type in `metadata_type` and the metadata
 * after the type byte in the file named by `metadata_file` (openvpn's tls_crypt.c,
 * tls_crypt_v2_verify_metadata). Exit status 0 admits the client; anything else drops it.
 *
 * Usage: node tls-crypt-v2-verify.js STORE.db
 */
import { readFileSync } from 'node:fs';
import { memberForClientKeyMetadata } from '../../src/control/pki.js';
import { openSqliteStore } from '../../src/control/store-sqlite.js';

const [storePath] = process.argv.slice(2);
const type = Number(process.env['metadata_type']);
const file = process.env['metadata_file'];
if (storePath === undefined || file === undefined || !Number.isInteger(type)) {
  process.stdout.write('weft-verify: usage: tls-crypt-v2-verify.js STORE.db (run by openvpn)\n');
  process.exit(2);
}
const metadata = new Uint8Array([type, ...readFileSync(file)]);
const store = openSqliteStore(storePath);
try {
  const found = memberForClientKeyMetadata(store, metadata);
  process.stdout.write(
    found.ok
      ? `weft-verify: member ${found.member.name} admitted\n`
      : `weft-verify: refused (${found.refusal}${found.name === undefined ? '' : `, member ${found.name}`})\n`,
  );
  process.exitCode = found.ok ? 0 : 1;
} finally {
  store.close();
}
