/**
 * One declaration per endpoint: method, path, zod schemas for its input, its responses and the handler. The
 * same declaration registers the fastify route and describes the operation in the OpenAPI document, so an
 * endpoint cannot exist without being documented (server.ts refuses any route added another way).
 *
 * A request to a declared route goes through:
 *   1. the auth hook (auth.ts), unless the route is public; a session-only route then refuses a bearer token
 *      (403 WEFT_ERR_FORBIDDEN);
 *   2. fastify's body parser (JSON, or a declared extra media type such as YAML, as text);
 *   3. `decodeBody`, when the route has one (YAML text -> object);
 *   4. the zod schemas of the path, the query and the body, the first problem becoming a WeftError that
 *      names the field (errors.ts);
 *   5. the handler; what it returns is sent with the route's success status.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { WeftError, type ErrorCode } from '../control/errors.js';
import { auditActor } from './auth.js';
import { fromZod, type InputSource } from './errors.js';

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** Everything under this prefix; paths in declarations are relative to it. */
export const API_PREFIX = '/api/v1';

export interface ResponseSpec {
  readonly description: string;
  /** The JSON body's schema; absent for a response without a body. */
  readonly schema?: z.ZodType;
  /** Media types of a text body instead of JSON ("text/plain"). */
  readonly text?: readonly string[];
  /** Media types the same schema may also be sent as ("application/yaml"). */
  readonly alsoAs?: readonly string[];
}

export interface RouteInput<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType> {
  readonly params: z.output<P>;
  readonly query: z.output<Q>;
  readonly body: z.output<B>;
  /** The audit actor ("token:ci"); reading it on a public route throws WEFT_ERR_UNAUTHORIZED. */
  readonly actor: string;
  readonly request: FastifyRequest;
  readonly reply: FastifyReply;
}

export interface RouteSpec<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType> {
  readonly method: Method;
  /** Fastify syntax, relative to API_PREFIX ("/members/:name"), or to the server's root when `root` is set. */
  readonly path: string;
  /** The path is from the server's root, outside API_PREFIX (the download links' "/dl/:token"). */
  readonly root?: boolean;
  readonly operationId: string;
  readonly summary: string;
  readonly description?: string;
  readonly tag: string;
  /** Served without authentication. */
  readonly public?: boolean;
  /** Only for a console session: a bearer token gets 403 WEFT_ERR_FORBIDDEN (the session's own endpoints). */
  readonly sessionOnly?: boolean;
  /**
   * A GET that HEAD must not run (fastify answers HEAD by running the GET handler): one whose handler uses
   * something up, such as a one-time download link.
   */
  readonly noHead?: boolean;
  readonly params?: P;
  readonly query?: Q;
  readonly body?: B;
  /** The body may be left out (it is then `{}`). */
  readonly bodyOptional?: boolean;
  /** The largest body this route takes, in bytes, when not the server's BODY_LIMIT. */
  readonly bodyLimit?: number;
  /** Media types the body may also come in (server.ts registers their parsers; `decodeBody` reads them). */
  readonly bodyAlsoAs?: readonly string[];
  /** Turns a body in one of `bodyAlsoAs` into what `body` describes. */
  decodeBody?(body: unknown, mediaType: string): unknown;
  /** Keyed by status; the lowest 2xx one is what a successful call answers. */
  readonly responses: Readonly<Record<number, ResponseSpec>>;
  /** Codes the route may answer with besides validation, authentication and internal errors. */
  readonly errors?: readonly ErrorCode[];
  handler(input: RouteInput<P, Q, B>): unknown;
}

/** A declaration with its types erased, as the registry and the OpenAPI generator hold it. */
export type AnyRouteSpec = RouteSpec<z.ZodType, z.ZodType, z.ZodType>;

export function fullPath(spec: Pick<AnyRouteSpec, 'path' | 'root'>): string {
  return spec.root ? spec.path : `${API_PREFIX}${spec.path}`;
}

export function successStatus(spec: Pick<AnyRouteSpec, 'responses'>): number {
  const ok = Object.keys(spec.responses)
    .map(Number)
    .filter((s) => s >= 200 && s < 300)
    .sort((a, b) => a - b)[0];
  if (ok === undefined) throw new Error('a route needs a 2xx response');
  return ok;
}

function parse<S extends z.ZodType>(schema: S | undefined, value: unknown, source: InputSource): z.output<S> {
  if (schema === undefined) return undefined as z.output<S>;
  const result = schema.safeParse(value);
  if (!result.success) throw fromZod(result.error, source, value);
  return result.data;
}

function mediaType(request: FastifyRequest): string {
  return (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

/** Declares endpoints on one fastify instance and keeps the declarations for the OpenAPI document. */
export class RouteRegistry {
  readonly #routes: AnyRouteSpec[] = [];

  constructor(private readonly app: FastifyInstance) {}

  get routes(): readonly AnyRouteSpec[] {
    return this.#routes;
  }

  /** Whether a route fastify is adding was declared here (HEAD routes fastify adds for GET count). */
  declares(method: string, url: string): boolean {
    return this.#routes.some(
      (r) => fullPath(r) === url && (r.method === method || (method === 'HEAD' && r.method === 'GET')),
    );
  }

  add<
    P extends z.ZodType = z.ZodUndefined,
    Q extends z.ZodType = z.ZodUndefined,
    B extends z.ZodType = z.ZodUndefined,
  >(spec: RouteSpec<P, Q, B>): void {
    const status = successStatus(spec);
    this.#routes.push(spec as unknown as AnyRouteSpec);
    this.app.route({
      method: spec.method,
      url: fullPath(spec),
      config: { public: spec.public === true },
      ...(spec.noHead ? { exposeHeadRoute: false } : {}),
      ...(spec.bodyLimit === undefined ? {} : { bodyLimit: spec.bodyLimit }),
      handler: async (request, reply) => {
        if (spec.sessionOnly && request.actor?.via !== 'session')
          throw new WeftError(
            'WEFT_ERR_FORBIDDEN',
            'this endpoint is for a console session (log in with POST /api/v1/session), not an API token',
          );
        let raw: unknown = request.body;
        if (raw === undefined && spec.bodyOptional) raw = {};
        const type = mediaType(request);
        if (spec.decodeBody && spec.bodyAlsoAs?.includes(type)) raw = spec.decodeBody(raw, type);
        const input: RouteInput<P, Q, B> = {
          params: parse(spec.params, request.params, 'path'),
          query: parse(spec.query, request.query, 'query'),
          body: parse(spec.body, raw, 'body'),
          get actor() {
            return auditActor(request);
          },
          request,
          reply,
        };
        const result = await spec.handler(input);
        void reply.code(status);
        if (status === 204 || result === undefined) return reply.send();
        return reply.send(result);
      },
    });
  }
}
