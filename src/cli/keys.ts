/**
 * `weft genkey`, `weft pubkey`, `weft genpsk`: the same text as `wg genkey`, `wg pubkey`, `wg genpsk`
 * (base64 of 32 bytes and a newline; private keys clamped). Secrets written to a file, whether named with
 * `--output` or by redirecting standard output to a regular file, end up with mode 0600.
 */
import { chmodSync, fchmodSync, fstatSync, writeFileSync } from 'node:fs';
import { UserError } from '../control/errors.js';
import { PresharedKey, PrivateKey } from '../crypto/keys.js';

/** Writes a secret line to `file` (created 0600) or to standard output, tightening a redirect target. */
export function writeSecret(line: string, file: string | undefined): void {
  if (file) {
    writeFileSync(file, line, { mode: 0o600 });
    chmodSync(file, 0o600); // an existing file keeps its old mode on write
    return;
  }
  try {
    if (fstatSync(1).isFile()) fchmodSync(1, 0o600);
  } catch {
    // standard output is not something we may change (a pipe, a terminal, or not ours): leave it
  }
  process.stdout.write(line);
}

export function genkey(): string {
  return `${PrivateKey.generate().toBase64()}\n`;
}

export function genpsk(): string {
  return `${PresharedKey.generate().toBase64()}\n`;
}

/** The public key line for a private key given as text (as read from standard input). */
export function pubkey(input: string): string {
  const parsed = PrivateKey.parse(input);
  if (!parsed.ok) throw new UserError('weft: key is not the correct length or format');
  return `${parsed.key.publicKey().toBase64()}\n`;
}

export async function readStdin(limit = 4096): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > limit) throw new UserError('weft: input too long');
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}
