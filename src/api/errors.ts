/**
 * Every error the API answers with has one shape, `{ error: { code, message, field? } }`, and its HTTP status
 * comes from ERROR_STATUS (src/control/errors.ts), the one place codes map to statuses.
 *
 * What can fail, and the code it becomes:
 *   1. the control plane's WeftErrors, as they are;
 *   2. request input that does not fit its zod schema (body, path or query) -> WEFT_ERR_VALIDATION, `field`
 *      naming the failing path as the control plane names fields ("groups[1]", "ports.from");
 *   3. fastify's own client errors (malformed JSON, body over the limit, unsupported media type, bad URL)
 *      -> WEFT_ERR_VALIDATION / WEFT_ERR_PAYLOAD_TOO_LARGE / ..., by their status;
 *   4. the shared store unreachable (StoreUnavailable, a gateway on PostgreSQL while the database is down)
 *      -> 503 WEFT_ERR_STORE_UNAVAILABLE with Retry-After: nothing was written, the client may try again;
 *   5. anything else -> 500 WEFT_ERR_INTERNAL with a fixed message and the request's id: the real error goes
 *      to the log only, under that id.
 * Two codes add a header: 401 says how to authenticate (WWW-Authenticate, RFC 6750 section 3), 429 when to
 * come back (Retry-After, RFC 9110 section 10.2.3, from RateLimitedError).
 */
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import type { z } from 'zod';
import { ERROR_STATUS, WeftError, type ErrorCode } from '../control/errors.js';
import { describeIssue } from '../control/input-issues.js';

export interface ErrorBody {
  readonly error: { readonly code: ErrorCode; readonly message: string; readonly field?: string };
}

/** Where a piece of request input came from, for messages about input that has no field name. */
export type InputSource = 'body' | 'path' | 'query';

const SOURCE_NAME: Record<InputSource, string> = {
  body: 'request body',
  path: 'path',
  query: 'query',
};

/** The first problem zod found in `input`, as a WeftError naming its field (input-issues.ts). */
export function fromZod(error: z.ZodError, source: InputSource, input?: unknown): WeftError {
  const issue = error.issues[0];
  if (!issue) return new WeftError('WEFT_ERR_VALIDATION', `${SOURCE_NAME[source]}: invalid`);
  const { field, message } = describeIssue(issue, input);
  if (issue.code === 'unrecognized_keys')
    return new WeftError('WEFT_ERR_VALIDATION', `${field}: is not a field of this request`, field);
  if (field === '') return new WeftError('WEFT_ERR_VALIDATION', `${SOURCE_NAME[source]}: ${message}`);
  return new WeftError('WEFT_ERR_VALIDATION', `${field}: ${message}`, field);
}

const LIMIT_TEXT = (bytes: number): string =>
  bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MiB` : `${bytes} bytes`;

/** The code a client error of this status gets when nothing more specific is known. */
function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 401:
      return 'WEFT_ERR_UNAUTHORIZED';
    case 403:
      return 'WEFT_ERR_FORBIDDEN';
    case 404:
      return 'WEFT_ERR_NOT_FOUND';
    case 413:
      return 'WEFT_ERR_PAYLOAD_TOO_LARGE';
    case 429:
      return 'WEFT_ERR_RATE_LIMITED';
    default:
      // 405, 415 and the rest have no code of their own: they are all a request the API cannot take.
      return 'WEFT_ERR_VALIDATION';
  }
}

function isFastifyError(err: unknown): err is FastifyError {
  return err instanceof Error && ('statusCode' in err || 'validation' in err);
}

/** Whatever was thrown, as the WeftError the client sees. */
export function toWeftError(err: unknown, bodyLimit: number): WeftError {
  if (err instanceof WeftError) return err;
  // By name: the class lives with the PostgreSQL store, which this module does not load.
  if (err instanceof Error && err.name === 'StoreUnavailable')
    return new WeftError(
      'WEFT_ERR_STORE_UNAVAILABLE',
      'the store is unreachable; nothing was changed, try again shortly',
    );
  if (!isFastifyError(err)) return new WeftError('WEFT_ERR_INTERNAL', 'internal error');
  if (err.validation && err.validation.length > 0) {
    // Fastify's own (ajv) validation; the API validates with zod, but a route with a JSON schema would land here.
    const first = err.validation[0]!;
    const missing = (first.params as { missingProperty?: unknown } | undefined)?.missingProperty;
    const path = `${first.instancePath.replace(/^\//, '').replace(/\//g, '.')}${
      typeof missing === 'string' ? (first.instancePath ? `.${missing}` : missing) : ''
    }`;
    const message = first.message ?? 'is invalid';
    return path === ''
      ? new WeftError('WEFT_ERR_VALIDATION', `${err.validationContext ?? 'request'}: ${message}`)
      : new WeftError('WEFT_ERR_VALIDATION', `${path}: ${message}`, path);
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new WeftError(
        'WEFT_ERR_PAYLOAD_TOO_LARGE',
        `the request body is larger than ${LIMIT_TEXT(bodyLimit)}`,
      );
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new WeftError('WEFT_ERR_VALIDATION', 'request body: is not valid JSON');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new WeftError('WEFT_ERR_VALIDATION', 'request body: is empty, but Content-Type says JSON');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new WeftError(
        'WEFT_ERR_VALIDATION',
        'content-type: is not a media type this API takes (send application/json)',
        'content-type',
      );
  }
  const status = err.statusCode ?? 500;
  if (status >= 400 && status < 500) return new WeftError(codeForStatus(status), err.message);
  return new WeftError('WEFT_ERR_INTERNAL', 'internal error');
}

/** WEFT_ERR_RATE_LIMITED with the time the client must wait, sent as Retry-After. */
export class RateLimitedError extends WeftError {
  constructor(
    message: string,
    /** Whole seconds, at least 1. */
    readonly retryAfterSeconds: number,
  ) {
    super('WEFT_ERR_RATE_LIMITED', message);
    this.name = 'RateLimitedError';
  }
}

export function errorBody(err: WeftError): ErrorBody {
  return { error: err.toJSON() };
}

/**
 * For fastify's `frameworkErrors` option: errors met before routing (a URL that does not decode), which
 * the error handler never sees.
 */
export function frameworkErrorHandler(bodyLimit: number) {
  return (err: FastifyError, _request: unknown, reply: FastifyReply): void => {
    const weft = toWeftError(err, bodyLimit);
    void reply.code(ERROR_STATUS[weft.code]).send(errorBody(weft));
  };
}

/** Where the API writes a line about a failure nobody expected (default: standard error, with the time). */
export type ErrorLog = (line: string) => void;

export const stderrLog: ErrorLog = (line) =>
  void process.stderr.write(`${new Date().toISOString()} ${line}\n`);

/** Installs the error and not-found handlers: after this, nothing leaves the server in another shape. */
export function installErrorHandling(
  app: FastifyInstance,
  bodyLimit: number,
  log: ErrorLog = stderrLog,
): void {
  app.setErrorHandler((err, request, reply) => {
    let weft = toWeftError(err, request.routeOptions.bodyLimit ?? bodyLimit);
    const status = ERROR_STATUS[weft.code];
    if (weft.code === 'WEFT_ERR_STORE_UNAVAILABLE') {
      const path = request.url.split('?')[0] ?? '';
      log(
        `api: request ${request.id} ${request.method} ${path}: ${err instanceof Error ? err.message : String(err)}`,
      );
      void reply.header('retry-after', '2');
    } else if (status >= 500) {
      const path = request.url.split('?')[0] ?? '';
      const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
      log(`api: request ${request.id} ${request.method} ${path} failed: ${detail}`);
      weft = new WeftError(
        weft.code,
        `internal error (request ${request.id}; the server's log has the details)`,
      );
    }
    if (weft.code === 'WEFT_ERR_UNAUTHORIZED') void reply.header('www-authenticate', 'Bearer realm="weft"');
    if (weft instanceof RateLimitedError) void reply.header('retry-after', String(weft.retryAfterSeconds));
    return reply.code(status).send(errorBody(weft));
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    const weft = new WeftError('WEFT_ERR_NOT_FOUND', `no endpoint ${request.method} ${path}`);
    return reply.code(ERROR_STATUS[weft.code]).send(errorBody(weft));
  });
}
