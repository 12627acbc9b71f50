/**
 * Reading the file of `weft apply -f FILE` (or "-", standard input) with the size cap of state files
 * (STATE_FILE_LIMIT): a larger file is refused after reading at most one byte more than the cap, so a
 * mistaken `-f /var/log/huge.log` costs neither time nor memory.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { STATE_FILE_LIMIT } from '../control/desired-state.js';
import { WeftError } from '../control/errors.js';
import { UserError } from '../control/errors.js';

export function readStateFile(file: string, limit: number = STATE_FILE_LIMIT): string {
  let fd: number;
  try {
    fd = file === '-' ? 0 : openSync(file, 'r');
  } catch (e) {
    throw new UserError(`weft: cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    const chunks: Buffer[] = [];
    let size = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(64 * 1024, limit + 1 - size));
      let n: number;
      try {
        n = readSync(fd, chunk, 0, chunk.length, null);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EAGAIN') continue;
        if ((e as NodeJS.ErrnoException).code === 'EOF') break;
        throw new UserError(`weft: cannot read ${file}: ${(e as Error).message}`);
      }
      if (n === 0) break;
      chunks.push(chunk.subarray(0, n));
      size += n;
      if (size > limit)
        throw new WeftError(
          'WEFT_ERR_PAYLOAD_TOO_LARGE',
          `${file === '-' ? 'standard input' : file}: a state file is at most ${limit / (1024 * 1024)} MiB`,
        );
    }
    return Buffer.concat(chunks, size).toString('utf8');
  } finally {
    if (fd !== 0) closeSync(fd);
  }
}
