/**
 * Who is calling. An onRequest hook runs the authenticators in order and puts the first actor one proves on
 * `request.actor`; every route not marked public then requires one.
 *
 * Today there is one authenticator, the bearer API token. The seam for the web console: a session
 * authenticator (cookie + CSRF token) goes into the list server.ts passes, returning an actor such as
 * `{ audit: 'admin', via: 'session' }`. It must check the CSRF token itself for unsafe methods (throwing
 * WEFT_ERR_CSRF), since a browser sends the cookie on cross-site requests; a bearer token needs no such
 * check, as no browser attaches it by itself.
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
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ControlPlane } from '../control/control-plane.js';
import { WeftError } from '../control/errors.js';
import { formatPrefix, maskBytes, parseAddress } from '../net/ip.js';
import { RateLimitedError } from './errors.js';
import type { FailureThrottle } from './throttle.js';

export interface Actor {
  /** What the audit log records as the actor: "token:ci" (later "admin" for a console session). */
  readonly audit: string;
  /** How the request proved it. */
  readonly via: 'token' | 'session';
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

/** RFC 4291 section 2.5.5.2: ::ffff:a.b.c.d is the IPv4 client a.b.c.d (a dual-stack listener's view). */
const V4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/**
 * The key a client's failures are counted under: its IPv4 address, or its IPv6 /64 (RFC 4291 section 2.5.4:
 * the interface identifier is the low 64 bits, which a host picks freely, e.g. RFC 8981 temporary
 * addresses). Null for loopback clients, which are not throttled; an address that does not parse is its
 * own key.
 */
export function throttleKey(ip: string): string | null {
  const parsed = parseAddress(ip);
  if (!parsed.ok) return ip;
  let { family, bytes } = parsed.value;
  if (family === 6 && V4_MAPPED_PREFIX.every((b, i) => bytes[i] === b)) {
    family = 4;
    bytes = bytes.subarray(12);
  }
  if (family === 4) return bytes[0] === 127 ? null : bytes.join('.');
  if (bytes.subarray(0, 15).every((b) => b === 0) && bytes[15] === 1) return null;
  return formatPrefix({ family: 6, bytes: maskBytes(bytes, 64), bits: 64 });
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
  app.addHook('onRequest', async (request) => {
    // Public routes take no credentials; unknown paths answer 404 either way (the OpenAPI document already
    // says which paths exist).
    if (request.routeOptions.config.public || request.is404) return;
    const key = throttle === undefined ? null : throttleKey(request.ip);
    if (throttle !== undefined && key !== null) {
      const waitMs = throttle.retryAfter(key, now());
      if (waitMs > 0) {
        const seconds = Math.ceil(waitMs / 1000);
        throw new RateLimitedError(
          `too many failed authentication attempts from this address; try again in ${seconds} s`,
          seconds,
        );
      }
    }
    for (const authenticate of authenticators) {
      let actor: Actor | null;
      try {
        actor = authenticate(request);
      } catch (err) {
        if (throttle !== undefined && key !== null && isAuthFailure(err)) throttle.fail(key, now());
        throw err;
      }
      if (actor) {
        request.actor = actor;
        return;
      }
    }
    throw new WeftError(
      'WEFT_ERR_UNAUTHORIZED',
      'authentication required: send an API token as "Authorization: Bearer weft_..."',
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
