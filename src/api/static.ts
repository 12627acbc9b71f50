/**
 * The web console's files (index.html, the compiled modules, styles) at `/` and `/<file>`, without
 * authentication, and the security headers on every response of the server (docs/console.md).
 *
 * Serving a file, in order:
 *   1. the URL's path (never decoded: a file name needs no percent-encoding) is split at "/"; every segment
 *      must be plain (letters, digits, "_", "-", "." but not first, no ".."), which refuses traversal ("..",
 *      "%2e%2e", backslashes, NUL) and hidden files before the file system is touched;
 *   2. each segment must be an entry of the directory listing it is looked up in: a directory on the way, a
 *      regular file at the end (so no symbolic link leads out of the console's directory);
 *   3. the file goes out with its type, `Cache-Control: no-cache` and an ETag (the hash of its bytes), or as
 *      304 when the browser has it already.
 * Anything else is the API's 404, in the API's error shape.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** What the console's pages may load: their own files only, no framing, no inline script or style. */
export const CONSOLE_CSP =
  "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/** API answers are data, never a page: nothing may load from one, nor frame it (e.g. an SVG opened directly). */
export const API_CSP = "default-src 'none'; frame-ancestors 'none'";

/** The compiled console beside the compiled server: dist/src/api/static.js -> dist/web/. */
export function defaultWebRoot(): string {
  return fileURLToPath(new URL('../../web/', import.meta.url));
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

/** A plain file or directory name: no "..", nothing hidden, nothing that needs encoding in a URL. */
const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$/;

/** The file a URL path names inside `root`, or undefined (refused or missing). */
export function resolveStaticFile(root: string, urlPath: string): string | undefined {
  const relative = urlPath === '/' ? 'index.html' : urlPath.slice(1);
  if (!urlPath.startsWith('/') || relative.includes('..')) return undefined;
  const segments = relative.split('/');
  if (!segments.every((segment) => SEGMENT.test(segment))) return undefined;
  let dir = root;
  for (const [i, segment] of segments.entries()) {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return undefined;
    }
    const last = i === segments.length - 1;
    const entry = entries.find((e) => e.name === segment && (last ? e.isFile() : e.isDirectory()));
    if (!entry) return undefined;
    dir = join(dir, segment);
  }
  return dir;
}

interface Cached {
  readonly mtimeMs: number;
  readonly size: number;
  readonly body: Buffer;
  readonly etag: string;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A console file route: not an API endpoint, so not in the OpenAPI document (server.ts). */
    static?: boolean;
  }
}

/** Serves `root` at `/` and `/<path>` (GET and HEAD). */
export function installStatic(app: FastifyInstance, root: string): void {
  // Files are small and few; a changed file (a rebuild while running) is read again.
  const cache = new Map<string, Cached>();
  const load = (file: string): Cached => {
    const stat = statSync(file);
    const known = cache.get(file);
    if (known && known.mtimeMs === stat.mtimeMs && known.size === stat.size) return known;
    const body = readFileSync(file);
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
    const loaded = { mtimeMs: stat.mtimeMs, size: stat.size, body, etag };
    cache.set(file, loaded);
    return loaded;
  };

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const path = request.url.split('?')[0] ?? '';
    const file = resolveStaticFile(root, path);
    let loaded: Cached | undefined;
    try {
      loaded = file === undefined ? undefined : load(file);
    } catch {
      loaded = undefined;
    }
    if (file === undefined || loaded === undefined) return reply.callNotFound();
    void reply.header('cache-control', 'no-cache').header('etag', loaded.etag);
    const match = request.headers['if-none-match'];
    if (match !== undefined && match.split(',').some((tag) => tag.trim().replace(/^W\//, '') === loaded.etag))
      return reply.code(304).send();
    return reply
      .type(CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream')
      .send(loaded.body);
  };

  const config = { public: true, static: true };
  app.route({ method: 'GET', url: '/', config, handler });
  // Static and parametric routes (the API) win over this wildcard in fastify's router.
  app.route({ method: 'GET', url: '/*', config, handler });
}

/**
 * The headers every response gets: nosniff, no referrer, no framing, and a content security policy (the
 * console's on its files, the strict API one on everything else).
 */
export function installSecurityHeaders(app: FastifyInstance): void {
  app.addHook('onSend', async (request, reply, payload) => {
    void reply
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('x-frame-options', 'DENY')
      .header(
        'content-security-policy',
        request.routeOptions.config.static === true && reply.statusCode < 400 ? CONSOLE_CSP : API_CSP,
      );
    return payload;
  });
}
