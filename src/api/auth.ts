/**
 * Who is calling. An onRequest hook runs the authenticators in order and puts the first actor one proves on
 * `request.actor`; every route not marked public then requires one.
 *
 * Today there is one authenticator, the bearer API token. The seam for the web console: a session
 * authenticator (cookie + CSRF token) goes into the list server.ts passes, returning an actor such as
 * `{ audit: 'admin', via: 'session' }`. It must check the CSRF token itself for unsafe methods (throwing
 * WEFT_ERR_CSRF), since a browser sends the cookie on cross-site requests; a bearer token needs no such
 * check, as no browser attaches it by itself.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ControlPlane } from '../control/control-plane.js';
import { WeftError } from '../control/errors.js';

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

export function installAuth(app: FastifyInstance, authenticators: readonly Authenticator[]): void {
  app.decorateRequest('actor', null);
  app.addHook('onRequest', async (request) => {
    // Public routes take no credentials; unknown paths answer 404 either way (the OpenAPI document already
    // says which paths exist).
    if (request.routeOptions.config.public || request.is404) return;
    for (const authenticate of authenticators) {
      const actor = authenticate(request);
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

/** The audit actor of an authenticated request. */
export function auditActor(request: FastifyRequest): string {
  if (!request.actor) throw new WeftError('WEFT_ERR_UNAUTHORIZED', 'authentication required');
  return request.actor.audit;
}
