/**
 * Credentials: API tokens and download-link tokens (random, stored only as a SHA-256 hash) and the admin
 * password (scrypt, RFC 7914, with a per-password salt). Comparisons are constant-time.
 *
 * One scrypt run costs tens of milliseconds of CPU and 32 MiB of memory (N = 2^15, r = 8). The server process
 * runs the tunnel on its main thread, so a password is hashed and verified on libuv's thread pool
 * (`hashPassword`, `verifyPassword`): a stream of wrong console logins must not delay a single packet.
 * `hashPasswordBlocking` is for the one-shot `weft server init`, which carries no traffic.
 */
import {
  createHash,
  randomBytes,
  scrypt,
  scryptSync,
  timingSafeEqual,
  type ScryptOptions,
} from 'node:crypto';

const SCRYPT = { N: 1 << 15, r: 8, p: 1, keyLength: 32, maxmem: 64 * 1024 * 1024 };

export function newTokenSecret(): string {
  return `weft_${randomBytes(32).toString('base64url')}`;
}

/** 256 random bits, URL-safe: one-time download links (`/dl/<token>`), session ids, CSRF tokens. */
export function randomSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** What is stored of a token, link or session id: its SHA-256. */
export function tokenHash(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Whether two secrets (codes, CSRF tokens) are equal, in time that does not depend on where they differ. */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** A password for people to type once and keep: 20 characters from an alphabet without look-alikes. */
export function newPassword(): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const bytes = randomBytes(40);
  let out = '';
  // 256 is not a multiple of the alphabet's size: reject the top values so every character is equally likely.
  const limit = 256 - (256 % alphabet.length);
  for (const b of bytes) {
    if (b >= limit) continue;
    out += alphabet[b % alphabet.length];
    if (out.length === 20) return out;
  }
  return out + newPassword().slice(0, 20 - out.length);
}

function scryptAsync(
  password: string,
  salt: Buffer,
  keyLength: number,
  options: ScryptOptions,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keyLength, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function encoded(salt: Buffer, hash: Buffer): string {
  const { N, r, p } = SCRYPT;
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** The stored form of a password, computed on the thread pool. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const { N, r, p, keyLength, maxmem } = SCRYPT;
  return encoded(salt, await scryptAsync(password, salt, keyLength, { N, r, p, maxmem }));
}

/** `hashPassword` on the calling thread: only for a process that carries no traffic (`weft server init`). */
export function hashPasswordBlocking(password: string): string {
  const salt = randomBytes(16);
  const { N, r, p, keyLength, maxmem } = SCRYPT;
  return encoded(salt, scryptSync(password, salt, keyLength, { N, r, p, maxmem }));
}

/** Whether `password` is the one `stored` was made from; the scrypt run happens on the thread pool. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  const salt = Buffer.from(parts[4]!, 'base64');
  const expected = Buffer.from(parts[5]!, 'base64');
  if (!Number.isInteger(N) || N > 1 << 20 || expected.length !== SCRYPT.keyLength) return false;
  const actual = await scryptAsync(password, salt, expected.length, { N, r, p, maxmem: SCRYPT.maxmem });
  return timingSafeEqual(actual, expected);
}
