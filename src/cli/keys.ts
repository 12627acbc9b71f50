/**
 * `weft genkey`, `weft pubkey`, `weft genpsk`: the same text as `wg genkey`, `wg pubkey`, `wg genpsk`
 * (base64 of 32 bytes and a newline; private keys clamped). Secrets written to a file, whether named with
 * `--output` or by redirecting standard output to a regular file, end up with mode 0600.
 */
import { closeSync, fchmodSync, fstatSync, openSync, writeSync } from 'node:fs';
import { UserError } from '../control/errors.js';
import { PresharedKey, PrivateKey } from '../crypto/keys.js';

/**
 * Writes a secret (a key, a member's config, a token, a QR code of a config) to `file`, created 0600, or to
 * standard output, tightening a redirect target to 0600 first. An existing file is narrowed before the
 * secret goes in, so it is never readable by others with the secret inside.
 */
export function writeSecret(data: string | Uint8Array, file: string | undefined): void {
  if (file) {
    let fd: number;
    try {
      fd = openSync(file, 'w', 0o600);
    } catch (e) {
      throw new UserError(`weft: cannot write ${file}: ${(e as Error).message}`);
    }
    try {
      try {
        fchmodSync(fd, 0o600); // an existing file keeps its old mode on open
      } catch (e) {
        throw new UserError(`weft: cannot make ${file} private (mode 0600): ${(e as Error).message}`);
      }
      const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      for (let off = 0; off < bytes.length;) off += writeSync(fd, bytes, off);
    } finally {
      closeSync(fd);
    }
    return;
  }
  tightenStdout();
  process.stdout.write(data);
}

/** Narrows standard output to 0600 when it is a regular file (`weft member config alice > alice.conf`). */
export function tightenStdout(): void {
  try {
    if (fstatSync(1).isFile()) fchmodSync(1, 0o600);
  } catch {
    // standard output is not something we may change (a pipe, a terminal, or not ours): leave it
  }
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
