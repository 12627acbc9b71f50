/**
 * The REST API of the people VPN, under /api/v1: a thin HTTP skin over ControlPlane, which stays the judge
 * of what is valid; beside it, the web console's files (static.ts) and its one-time download links (/dl/).
 * The caller (the server runner) listens, over TLS when given a certificate; tests use `inject()`.
 *
 * What a request meets, in order:
 *   1. the auth hook: a bearer API token or the console's session cookie with its CSRF token (auth.ts),
 *      except on public routes (health, the OpenAPI document, login, download links, the console's files);
 *      a client with too many refused credentials lately is refused before its credential is looked at
 *      (429, throttle.ts);
 *   2. the body parser: JSON, or YAML as text for /apply; at most BODY_LIMIT bytes;
 *   3. the route's zod schemas for path, query and body (route.ts);
 *   4. the handler, which calls ControlPlane with the actor "token:<name>" or "admin:<user>" for the audit log;
 *   5. on any failure, the one error shape with a stable code (errors.ts);
 *   6. on the way out, the security headers (static.ts), on every response.
 * The OpenAPI document at /api/v1/openapi.json is generated from the same route declarations (openapi.ts).
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { ControlPlane } from '../control/control-plane.js';
import { bearerToken, installAuth, sessionAuth, type Authenticator } from './auth.js';
import type { ApiContext, LiveStatus } from './context.js';
import { frameworkErrorHandler, installErrorHandling, type ErrorLog } from './errors.js';
import { buildOpenApiDocument } from './openapi.js';
import { RouteRegistry } from './route.js';
import { AUTH_FAILURE_LIMITS, FailureThrottle, LOGIN_FAILURE_LIMITS } from './throttle.js';
import { adminRoutes } from './routes-admin.js';
import { downloadRoutes } from './routes-download.js';
import { memberRoutes } from './routes-members.js';
import { multicastRoutes } from './routes-multicast.js';
import { gatewayRoutes } from './routes-gateways.js';
import { networkRoutes } from './routes-network.js';
import { serverRoutes } from './routes-server.js';
import { sessionRoutes } from './routes-session.js';
import { siteRoutes } from './routes-sites.js';
import { stateRoutes, YAML_TYPES } from './routes-state.js';
import { SessionTable } from './sessions.js';
import { defaultWebRoot, installSecurityHeaders, installStatic } from './static.js';

export type { LiveStatus } from './context.js';
export type { Actor, Authenticator } from './auth.js';

/** 1 MiB: far above any real request (a desired state with thousands of members), far below harm. */
export const BODY_LIMIT = 1024 * 1024;

export const API_VERSION = '1.0.0';

export interface ApiOptions {
  controlPlane: ControlPlane;
  logger?: boolean;
  /** Where failures nobody expected are logged, with the request's id (default: standard error). */
  log?: ErrorLog;
  live?: LiveStatus;
  /**
   * Failed-authentication throttle by client address (auth.ts); by default a new one with
   * AUTH_FAILURE_LIMITS. Pass one to share it, or null for none. Failed download links count toward it.
   */
  authThrottle?: FailureThrottle | null;
  /** The console's failed-login throttle (routes-session.ts); by default LOGIN_FAILURE_LIMITS; null: none. */
  loginThrottle?: FailureThrottle | null;
  /** The console's sessions; by default a new table with SESSION_LIMITS and the real clock. */
  sessions?: SessionTable;
  /** Milliseconds, for the throttles (default Date.now). */
  now?: () => number;
  /** The directory of the console's files (default: dist/web beside this module); null serves no console. */
  webRoot?: string | null;
  /** PEM certificate chain and key: the server speaks HTTPS (only for `listen`; inject is unaffected). */
  https?: { readonly cert: string | Buffer; readonly key: string | Buffer } | null;
}

export function buildApi(options: ApiOptions): FastifyInstance {
  const common = {
    logger: options.logger ?? false,
    bodyLimit: BODY_LIMIT,
    frameworkErrors: frameworkErrorHandler(BODY_LIMIT),
  };
  // An HTTPS instance differs from an HTTP one only in the type of its raw server, which nothing here uses.
  const app = options.https
    ? (Fastify({
        ...common,
        https: { cert: options.https.cert, key: options.https.key },
      }) as unknown as FastifyInstance)
    : Fastify(common);
  installErrorHandling(app, BODY_LIMIT, options.log);
  installSecurityHeaders(app);

  const now = options.now ?? Date.now;
  const sessions = options.sessions ?? new SessionTable(undefined, now);
  // The token first: a request that carries one is judged by it alone (auth.ts).
  const authenticators: Authenticator[] = [bearerToken(options.controlPlane), sessionAuth(sessions)];
  const throttle =
    options.authThrottle === undefined ? new FailureThrottle(AUTH_FAILURE_LIMITS) : options.authThrottle;
  const loginThrottle =
    options.loginThrottle === undefined ? new FailureThrottle(LOGIN_FAILURE_LIMITS) : options.loginThrottle;
  installAuth(app, authenticators, throttle === null ? { now } : { throttle, now });

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
  // Every route is declared through the registry, so every route is in the OpenAPI document; the console's
  // files are not endpoints (static.ts marks their routes).
  app.addHook('onRoute', (route) => {
    if (route.config?.static === true) return;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if (!routes.declares(method, route.url))
        throw new Error(`${method} ${route.url} was added without a declaration (src/api/route.ts)`);
    }
  });

  let document: unknown;
  const ctx: ApiContext = {
    routes,
    controlPlane: options.controlPlane,
    live: options.live,
    auth: { sessions, loginThrottle, throttle, now },
  };
  serverRoutes(ctx, () => {
    document ??= buildOpenApiDocument(routes.routes, {
      title: 'Weft API',
      version: API_VERSION,
      description: 'The control plane of the Weft people VPN: members, groups, routes, policies, tokens.',
    });
    return document;
  });
  sessionRoutes(ctx);
  memberRoutes(ctx);
  downloadRoutes(ctx);
  networkRoutes(ctx);
  siteRoutes(ctx);
  multicastRoutes(ctx);
  gatewayRoutes(ctx);
  adminRoutes(ctx);
  stateRoutes(ctx);

  const webRoot = options.webRoot === undefined ? defaultWebRoot() : options.webRoot;
  if (webRoot !== null) installStatic(app, webRoot);
  return app;
}
