/**
 * The REST API of the people VPN, under /api/v1: a thin HTTP skin over ControlPlane, which stays the judge
 * of what is valid. The caller (the server runner) listens; tests use `inject()`.
 *
 * What a request meets, in order:
 *   1. the auth hook: a bearer API token (auth.ts), except on /health and /openapi.json; a client with too many
 *      refused credentials lately is refused before its credential is looked at (429, throttle.ts);
 *   2. the body parser: JSON, or YAML as text for /apply; at most BODY_LIMIT bytes;
 *   3. the route's zod schemas for path, query and body (route.ts);
 *   4. the handler, which calls ControlPlane with the actor "token:<name>" for the audit log;
 *   5. on any failure, the one error shape with a stable code (errors.ts).
 * The OpenAPI document at /api/v1/openapi.json is generated from the same route declarations (openapi.ts).
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { ControlPlane } from '../control/control-plane.js';
import { bearerToken, installAuth, type Authenticator } from './auth.js';
import type { ApiContext, LiveStatus } from './context.js';
import { frameworkErrorHandler, installErrorHandling } from './errors.js';
import { buildOpenApiDocument } from './openapi.js';
import { RouteRegistry } from './route.js';
import { AUTH_FAILURE_LIMITS, FailureThrottle } from './throttle.js';
import { adminRoutes } from './routes-admin.js';
import { memberRoutes } from './routes-members.js';
import { networkRoutes } from './routes-network.js';
import { serverRoutes } from './routes-server.js';
import { stateRoutes, YAML_TYPES } from './routes-state.js';

export type { LiveStatus } from './context.js';
export type { Actor, Authenticator } from './auth.js';

/** 1 MiB: far above any real request (a desired state with thousands of members), far below harm. */
export const BODY_LIMIT = 1024 * 1024;

export const API_VERSION = '1.0.0';

export interface ApiOptions {
  controlPlane: ControlPlane;
  logger?: boolean;
  live?: LiveStatus;
  /**
   * Failed-authentication throttle by client address (auth.ts); by default a new one with
   * AUTH_FAILURE_LIMITS. Pass one to share it (the web console's login), or null for none.
   */
  authThrottle?: FailureThrottle | null;
}

export function buildApi(options: ApiOptions): FastifyInstance {
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: BODY_LIMIT,
    frameworkErrors: frameworkErrorHandler(BODY_LIMIT),
  });
  installErrorHandling(app, BODY_LIMIT);

  // The web console's session authenticator goes here, after the token (see auth.ts).
  const authenticators: Authenticator[] = [bearerToken(options.controlPlane)];
  const throttle =
    options.authThrottle === undefined ? new FailureThrottle(AUTH_FAILURE_LIMITS) : options.authThrottle;
  installAuth(app, authenticators, throttle === null ? {} : { throttle });

  // JSON as fastify parses it (prototype-poisoning checks included), except that an empty body is no body:
  // clients send "Content-Type: application/json" on a bodiless POST or DELETE too.
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') done(null, undefined);
    else json(request, body.toString(), done);
  });
  app.addContentTypeParser([...YAML_TYPES], { parseAs: 'string' }, (_request, body, done) =>
    done(null, body),
  );

  const routes = new RouteRegistry(app);
  // Every route is declared through the registry, so every route is in the OpenAPI document.
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if (!routes.declares(method, route.url))
        throw new Error(`${method} ${route.url} was added without a declaration (src/api/route.ts)`);
    }
  });

  let document: unknown;
  const ctx: ApiContext = { routes, controlPlane: options.controlPlane, live: options.live };
  serverRoutes(ctx, () => {
    document ??= buildOpenApiDocument(routes.routes, {
      title: 'Weft API',
      version: API_VERSION,
      description: 'The control plane of the Weft people VPN: members, groups, routes, policies, tokens.',
    });
    return document;
  });
  memberRoutes(ctx);
  networkRoutes(ctx);
  adminRoutes(ctx);
  stateRoutes(ctx);
  return app;
}
