/**
 * Who is calling. An onRequest hook runs the authenticators in order and puts the first actor one proves on
 * `request.actor`; every route not marked public then requires one.
 *
 * Two authenticators, in this order (server.ts):
 *   1. the bearer API token (`Authorization: Bearer weft_...`), actor `token:<name>`;
 *   2. the web console's session cookie (`weft_session`, sessions.ts), actor `admin:<username>`. For every
 *      method but GET and HEAD it also needs the session's CSRF token in X-CSRF-Token (else 403
 *      WEFT_ERR_CSRF), since a browser may attach the cookie to a request another site's page makes; a bearer
 *      token needs no such check, as no browser attaches it by itself. A request with both is judged by its
 *      token alone. A cookie of a session that has ended (expired, logged out, server restarted) is answered
 *      401 and the cookie is cleared, but it is not counted as a guess: the browser sends it on its own, and
 *      256-bit ids are not guessable anyway.
 *
 * Guessing is throttled per client (throttle.ts): a client whose credentials were refused more than 20 times
 * within a minute gets 429 WEFT_ERR_RATE_LIMITED, with Retry-After, on every authenticated route until enough
 * of those failures are a minute old, whatever it sends meanwhile (even a good token, which would otherwise
 * tell a guesser it had found one). What counts as a failure is a credential an authenticator refused; a
 * request that carries none is answered 401 but is not a guess. The client is its address (`request.ip`:
 * the socket's peer, as the server does not trust proxy headers), an IPv6 client its /64, since a single
 * host usually holds a whole /64. Loopback clients are not throttled: on the loopback interface every client
 * is this host (or a reverse proxy on it, where one guesser would otherwise lock everyone out).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ControlPlane } from '../control/control-plane.js';
import { WeftError } from '../control/errors.js';
import { formatPrefix, maskBytes, parseAddress } from '../net/ip.js';
import { RateLimitedError } from './errors.js';
import {
  cookieValues,
  CSRF_HEADER,
  csrfMatches,
  SESSION_COOKIE,
  sessionCookie,
  type Session,
  type SessionTable,
} from './sessions.js';
import type { FailureThrottle } from './throttle.js';

export interface Actor {
  /** What the audit log records as the actor: "token:ci", or "admin:admin" for a console session. */
  readonly audit: string;
  /** How the request proved it. */
  readonly via: 'token' | 'session';
  /** The console session, when `via` is "session". */
  readonly session?: Session;
}

/**
 * A credential that was good once: the cookie of an ended session. Answered like any refused credential (401
 * WEFT_ERR_UNAUTHORIZED), but not counted by the throttle, and the reply clears the cookie.
 */
export class SessionEndedError extends WeftError {
  constructor() {
    super('WEFT_ERR_UNAUTHORIZED', 'the session has ended (it expired or was logged out): log in again');
    this.name = 'SessionEndedError';
  }
}

/**
 * Returns the actor the request's credential of this kind proves; null when the request carries no such
 * credential (the next authenticator is tried); throws WEFT_ERR_UNAUTHORIZED when it carries one that is
 * wrong (no fallback: a client that sent a bad token should hear so, not be let in some other way).
 */
export type Authenticator = (request: FastifyRequest) => Actor | null;

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the auth hook; null on public routes called without credentials. */
    actor: Actor | null;
  }
  interface FastifyContextConfig {
    /** Served without authentication (health, the OpenAPI document). */
    public?: boolean;
  }
}

/** RFC 6750 section 2.1: `Authorization: Bearer <token>`; the scheme name is case-insensitive. */
const BEARER = /^Bearer +(\S+) *$/i;

export function bearerToken(controlPlane: ControlPlane): Authenticator {
  return (request) => {
    const header = request.headers.authorization;
    if (header === undefined) return null;
    const m = BEARER.exec(header);
    const token = m ? controlPlane.authenticateToken(m[1]!) : undefined;
    if (!token)
      throw new WeftError('WEFT_ERR_UNAUTHORIZED', 'the API token is not valid (it may have been revoked)');
    return { audit: `token:${token.name}`, via: 'token' };
  };
}

/** Methods that change nothing (RFC 9110 section 9.2.1), and so need no CSRF token. */
const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD']);

/**
 * The live session the request's cookie names (not marked used); null without a session cookie, undefined
 * when the cookie names no live session.
 */
export function cookieSession(sessions: SessionTable, request: FastifyRequest): Session | null | undefined {
  const ids = cookieValues(request.headers.cookie, SESSION_COOKIE);
  if (ids.length === 0) return null;
  for (const id of ids) {
    const session = sessions.find(id);
    if (session) return session;
  }
  return undefined;
}

export function sessionAuth(sessions: SessionTable): Authenticator {
  return (request) => {
    const session = cookieSession(sessions, request);
    if (session === null) return null;
    if (session === undefined) throw new SessionEndedError();
    if (!SAFE_METHODS.has(request.method)) {
      const sent = request.headers[CSRF_HEADER];
      if (!csrfMatches(session, typeof sent === 'string' ? sent : undefined))
        throw new WeftError(
          'WEFT_ERR_CSRF',
          'a request other than GET or HEAD with a session cookie must carry the csrfToken of the session ' +
            '(GET /api/v1/session) in the X-CSRF-Token header',
        );
    }
    // Only a request that passed every check counts as use of the session.
    sessions.touch(session);
    return { audit: `admin:${session.username}`, via: 'session', session };
  };
}

/** Refuses (429 with Retry-After) a client that failed too often lately; `what` names the failures. */
export function refuseIfThrottled(throttle: FailureThrottle, key: string, nowMs: number, what: string): void {
  const waitMs = throttle.retryAfter(key, nowMs);
  if (waitMs <= 0) return;
  const seconds = Math.ceil(waitMs / 1000);
  throw new RateLimitedError(`too many ${what} from this address; try again in ${seconds} s`, seconds);
}

/** Whether the request came in over TLS (a reply's cookies are then Secure). */
export function overTls(request: FastifyRequest): boolean {
  return request.protocol === 'https';
}

/** Sets the session cookie on a reply (`id`), or clears it (null). */
export function setSessionCookie(
  request: FastifyRequest,
  reply: FastifyReply,
  id: string | null,
  maxAgeMs = 0,
): void {
  void reply.header(
    'set-cookie',
    sessionCookie(id ?? '', {
      secure: overTls(request),
      maxAge: id === null ? 0 : Math.floor(maxAgeMs / 1000),
    }),
  );
}

/** RFC 4291 section 2.5.5.2: ::ffff:a.b.c.d is the IPv4 client a.b.c.d (a dual-stack listener's view). */
const V4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/**
 * The key a client's failures are counted under: its IPv4 address, or its IPv6 /64 (RFC 4291 section 2.5.4:
 * the interface identifier is the low 64 bits, which a host picks freely, e.g. RFC 8981 temporary
 * addresses); an address that does not parse is its own key. `loopback` says whether it is this host.
 */
export function clientKey(ip: string): { key: string; loopback: boolean } {
  const parsed = parseAddress(ip);
  if (!parsed.ok) return { key: ip, loopback: false };
  let { family, bytes } = parsed.value;
  if (family === 6 && V4_MAPPED_PREFIX.every((b, i) => bytes[i] === b)) {
    family = 4;
    bytes = bytes.subarray(12);
  }
  if (family === 4) return { key: bytes.join('.'), loopback: bytes[0] === 127 };
  return {
    key: formatPrefix({ family: 6, bytes: maskBytes(bytes, 64), bits: 64 }),
    loopback: bytes.subarray(0, 15).every((b) => b === 0) && bytes[15] === 1,
  };
}

/** The API's throttle key (clientKey): null for loopback clients, which that throttle leaves alone. */
export function throttleKey(ip: string): string | null {
  const { key, loopback } = clientKey(ip);
  return loopback ? null : key;
}

export interface AuthOptions {
  /** Failed-authentication throttle by client (throttleKey); none when omitted. */
  readonly throttle?: FailureThrottle;
  /** Milliseconds, for the throttle. */
  readonly now?: () => number;
}

export function installAuth(
  app: FastifyInstance,
  authenticators: readonly Authenticator[],
  options: AuthOptions = {},
): void {
  const { throttle, now = Date.now } = options;
  app.decorateRequest('actor', null);
  app.addHook('onRequest', async (request, reply) => {
    // Public routes take no credentials; unknown paths answer 404 either way (the OpenAPI document already
    // says which paths exist).
    if (request.routeOptions.config.public || request.is404) return;
    const key = throttle === undefined ? null : throttleKey(request.ip);
    if (throttle !== undefined && key !== null)
      refuseIfThrottled(throttle, key, now(), 'failed authentication attempts');
    for (const authenticate of authenticators) {
      let actor: Actor | null;
      try {
        actor = authenticate(request);
      } catch (err) {
        if (err instanceof SessionEndedError) setSessionCookie(request, reply, null);
        else if (throttle !== undefined && key !== null && isAuthFailure(err)) throttle.fail(key, now());
        throw err;
      }
      if (actor) {
        request.actor = actor;
        return;
      }
    }
    throw new WeftError(
      'WEFT_ERR_UNAUTHORIZED',
      'authentication required: log in to the console, or send an API token as "Authorization: Bearer weft_..."',
    );
  });
}

function isAuthFailure(err: unknown): boolean {
  return err instanceof WeftError && err.code === 'WEFT_ERR_UNAUTHORIZED';
}

/** The audit actor of an authenticated request. */
export function auditActor(request: FastifyRequest): string {
  if (!request.actor) throw new WeftError('WEFT_ERR_UNAUTHORIZED', 'authentication required');
  return request.actor.audit;
}
