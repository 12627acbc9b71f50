/**
 * The one place the console talks HTTP. Every call:
 *   1. goes to the same origin with the session cookie (`credentials: 'same-origin'`);
 *   2. carries `X-CSRF-Token` when it is not a GET or HEAD (docs/console.md: the server refuses it otherwise);
 *   3. sends and reads JSON (or reads text, for a member's config);
 *   4. turns any failure into an ApiError with the API's stable code, message and field;
 *   5. on 401, unless the caller expects one (the login itself), tells the app to show the login page.
 */
import type { ErrorBody } from './types.js';

export class ApiError extends Error {
  constructor(
    /** The HTTP status; 0 when the server could not be reached at all. */
    readonly status: number,
    /** A stable WEFT_ERR_* code. */
    readonly code: string,
    message: string,
    /** The request field the error is about ("ip", "groups[1]", "ports.from"). */
    readonly field?: string,
    /** From Retry-After, on 429. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export type Query = Readonly<Record<string, string | number | undefined>>;

export interface RequestOptions {
  readonly body?: unknown;
  readonly query?: Query;
  readonly signal?: AbortSignal;
  /** A 401 is an answer the caller handles (logging in), not a lost session. */
  readonly expectUnauthorized?: boolean;
}

let csrfToken: string | null = null;
let onUnauthorized: () => void = () => undefined;
let refreshSession: (() => Promise<void>) | null = null;

/** The token from the session response; sent with every change. */
export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

/** Called when a request answers 401: the session has ended (expired, or logged out elsewhere). */
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

/**
 * How to get a fresh CSRF token: when this browser logged in again in another tab, the cookie names a new
 * session and the token this tab holds is refused (403 WEFT_ERR_CSRF); the change is then retried once.
 */
export function setSessionRefresher(refresh: () => Promise<void>): void {
  refreshSession = refresh;
}

export const API_BASE = '/api/v1';

export function apiUrl(path: string, query?: Query): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== '') params.set(k, String(v));
  const qs = params.toString();
  return `${API_BASE}${path}${qs ? `?${qs}` : ''}`;
}

/** Whether an error only says that the caller gave up on the request (it navigated away). */
export function isAbort(err: unknown): boolean {
  return err instanceof DOMException && err.name === 'AbortError';
}

function isErrorBody(value: unknown): value is ErrorBody {
  if (typeof value !== 'object' || value === null || !('error' in value)) return false;
  const e = (value as { error: unknown }).error;
  return typeof e === 'object' && e !== null && typeof (e as { message?: unknown }).message === 'string';
}

async function errorFrom(res: Response): Promise<ApiError> {
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  const retry = Number(res.headers.get('retry-after'));
  const retryAfter = Number.isFinite(retry) && retry > 0 ? retry : undefined;
  if (isErrorBody(body))
    return new ApiError(res.status, body.error.code, body.error.message, body.error.field, retryAfter);
  return new ApiError(res.status, 'WEFT_ERR_HTTP', `the server answered ${res.status} ${res.statusText}`);
}

async function send(
  method: string,
  path: string,
  options: RequestOptions,
  accept: string,
  retried = false,
): Promise<Response> {
  const headers: Record<string, string> = { accept };
  if (method !== 'GET' && method !== 'HEAD' && csrfToken !== null) headers['x-csrf-token'] = csrfToken;
  let body: string | undefined;
  if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  let res: Response;
  try {
    res = await fetch(apiUrl(path, options.query), {
      method,
      headers,
      body,
      credentials: 'same-origin',
      signal: options.signal,
      cache: 'no-store',
    });
  } catch (err) {
    if (isAbort(err)) throw err;
    throw new ApiError(0, 'WEFT_ERR_NETWORK', 'cannot reach the Weft server; check that it is running');
  }
  if (res.ok) return res;
  const error = await errorFrom(res);
  if (res.status === 401 && !options.expectUnauthorized) onUnauthorized();
  if (error.code === 'WEFT_ERR_CSRF' && !retried && refreshSession) {
    await refreshSession();
    return send(method, path, options, accept, true);
  }
  throw error;
}

/** A JSON call; a 204 answers undefined. */
export async function requestJson<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const res = await send(method, path, options, 'application/json');
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** A call whose answer is text (a wg-quick config). */
export async function requestText(path: string, options: RequestOptions = {}): Promise<string> {
  const res = await send('GET', path, options, 'text/plain');
  return res.text();
}
