/**
 * A REST API client that stays running (for interop tests that make many calls): it reads one JSON request a
 * line on stdin — {"id", "method", "path", "body"?} — sends it to $WEFT_API + path with the bearer token
 * $WEFT_TOKEN (each within $WEFT_API_TIMEOUT_MS, default 10 s), and prints one JSON line per answer: {"ev":
 * "reply", "id", "status", "body", "sentAt", "doneAt"} (times: ms since the epoch, this machine's clock). Prints
 * {"ev": "ready"} first. Run it inside the namespace whose loopback the API listens on.
 */
import { createInterface } from 'node:readline';

const base = process.env['WEFT_API'] ?? '';
const token = process.env['WEFT_TOKEN'] ?? '';
/** How long one request may take ($WEFT_API_TIMEOUT_MS; a bulk /apply of 10,000 members takes longer). */
const timeoutMs = Number(process.env['WEFT_API_TIMEOUT_MS'] ?? 10_000);
const out = (event: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(event)}\n`);

interface ApiRequest {
  readonly id: number;
  readonly method: string;
  readonly path: string;
  readonly body?: unknown;
}

out({ ev: 'ready' });
const lines = createInterface({ input: process.stdin });
let chain = Promise.resolve();
lines.on('line', (line) => {
  const r = JSON.parse(line) as ApiRequest;
  chain = chain.then(async () => {
    const sentAt = Date.now();
    try {
      const res = await fetch(`${base}${r.path}`, {
        method: r.method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(r.body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(r.body === undefined ? {} : { body: JSON.stringify(r.body) }),
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: kept as text
      }
      out({ ev: 'reply', id: r.id, status: res.status, body, sentAt, doneAt: Date.now() });
    } catch (err) {
      out({ ev: 'reply', id: r.id, status: 0, body: (err as Error).message, sentAt, doneAt: Date.now() });
    }
  });
});
lines.on('close', () => void chain.then(() => process.exit(0)));
