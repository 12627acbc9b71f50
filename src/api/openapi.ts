/**
 * The OpenAPI 3.1 document, generated from the route declarations (route.ts) and their zod schemas.
 *
 * OpenAPI 3.1 schemas are JSON Schema 2020-12, which is what zod's toJSONSchema writes, so request and
 * response schemas go into components.schemas as they come: the shared ones (schemas.ts NAMED_SCHEMAS) under
 * their names, the rest under "<operationId>Body" / "<operationId><status>". Path and query schemas become
 * `parameters`, one per property.
 */
import { z } from 'zod';
import { ERROR_STATUS, type ErrorCode } from '../control/errors.js';
import { fullPath, type AnyRouteSpec } from './route.js';
import { NAMED_SCHEMAS } from './schemas.js';

type Json = Record<string, unknown>;

const REF = '#/components/schemas/';

export interface DocumentInfo {
  readonly title: string;
  readonly version: string;
  readonly description?: string;
}

/** zod writes ±MAX_SAFE_INTEGER bounds for every integer; they say nothing to a reader. */
function dropSafeIntegerBounds(ctx: { jsonSchema: Json }): void {
  const s = ctx.jsonSchema;
  if (s.minimum === Number.MIN_SAFE_INTEGER) delete s.minimum;
  if (s.maximum === Number.MAX_SAFE_INTEGER) delete s.maximum;
}

function toJsonSchema(schema: z.ZodType, io: 'input' | 'output'): Json {
  const out = z.toJSONSchema(schema, { io, unrepresentable: 'any', override: dropSafeIntegerBounds }) as Json;
  delete out.$schema;
  return out;
}

/** "/members/:name" -> "/members/{name}". */
export function openApiPath(fastifyPath: string): string {
  return fastifyPath.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

function parameters(schema: z.ZodType | undefined, location: 'path' | 'query'): Json[] {
  if (!schema) return [];
  // Output: "?limit=25" is documented as the integer it becomes, not as the text it arrives as.
  const json = toJsonSchema(schema, 'output');
  const props = (json.properties ?? {}) as Record<string, Json>;
  const required = new Set((json.required ?? []) as string[]);
  return Object.entries(props).map(([name, prop]) => {
    const { description, ...rest } = prop;
    return {
      name,
      in: location,
      required: location === 'path' || required.has(name),
      ...(typeof description === 'string' ? { description } : {}),
      schema: rest,
    };
  });
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Invalid input',
  401: 'Missing or invalid credentials',
  403: 'Forbidden',
  404: 'Not found',
  409: 'Conflicts with the current state',
  413: 'Request body too large',
  429: 'Too many requests',
  500: 'Internal error',
  503: 'The shared store (PostgreSQL) is unreachable; try again',
};

function errorResponses(spec: AnyRouteSpec): Json {
  const codes: ErrorCode[] = [
    'WEFT_ERR_VALIDATION',
    ...(spec.errors ?? []),
    'WEFT_ERR_INTERNAL',
    'WEFT_ERR_STORE_UNAVAILABLE',
  ];
  if (!spec.public) codes.push('WEFT_ERR_UNAUTHORIZED', 'WEFT_ERR_RATE_LIMITED');
  // A session's request other than GET must carry its CSRF token; a session-only route refuses tokens.
  if (!spec.public && spec.method !== 'GET') codes.push('WEFT_ERR_CSRF');
  if (spec.sessionOnly) codes.push('WEFT_ERR_FORBIDDEN');
  if (spec.body) codes.push('WEFT_ERR_PAYLOAD_TOO_LARGE');
  const byStatus = new Map<number, Set<ErrorCode>>();
  for (const code of codes) {
    const status = ERROR_STATUS[code];
    byStatus.set(status, (byStatus.get(status) ?? new Set()).add(code));
  }
  const out: Json = {};
  for (const [status, set] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    out[String(status)] = {
      description: `${STATUS_TEXT[status] ?? 'Error'}: ${[...set].join(', ')}`,
      content: { 'application/json': { schema: { $ref: `${REF}Error` } } },
    };
  }
  return out;
}

/** Who may call: nobody in particular, a console session only, or an API token or a session. */
function security(spec: AnyRouteSpec): Json[] {
  if (spec.public) return [];
  if (spec.sessionOnly) return [{ session: [] }];
  return [{ bearer: [] }, { session: [] }];
}

export function buildOpenApiDocument(routes: readonly AnyRouteSpec[], info: DocumentInfo): Json {
  // One registry per document: the shared schemas by name, then each route's own.
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(NAMED_SCHEMAS)) registry.add(schema, { id });
  const refTo = (schema: z.ZodType, fallbackId: string): Json => {
    const known = registry.get(schema);
    if (known) return { $ref: `${REF}${known.id}` };
    registry.add(schema, { id: fallbackId });
    return { $ref: `${REF}${fallbackId}` };
  };

  const paths: Record<string, Json> = {};
  for (const spec of routes) {
    const responses: Json = {};
    for (const [status, r] of Object.entries(spec.responses)) {
      const content: Json = {};
      if (r.schema) {
        const schema = refTo(r.schema, `${spec.operationId}${status}`);
        for (const type of ['application/json', ...(r.alsoAs ?? [])]) content[type] = { schema };
      }
      for (const type of r.text ?? []) content[type] = { schema: { type: 'string' } };
      responses[status] = {
        description: r.description,
        ...(Object.keys(content).length > 0 ? { content } : {}),
      };
    }
    const operation: Json = {
      operationId: spec.operationId,
      summary: spec.summary,
      ...(spec.description ? { description: spec.description } : {}),
      tags: [spec.tag],
      security: security(spec),
      parameters: [...parameters(spec.params, 'path'), ...parameters(spec.query, 'query')],
      ...(spec.body
        ? {
            requestBody: {
              required: !spec.bodyOptional,
              content: Object.fromEntries(
                ['application/json', ...(spec.bodyAlsoAs ?? [])].map((type) => [
                  type,
                  { schema: refTo(spec.body!, `${spec.operationId}Body`) },
                ]),
              ),
            },
          }
        : {}),
      responses: { ...responses, ...errorResponses(spec) },
    };
    const path = openApiPath(fullPath(spec));
    paths[path] = { ...paths[path], [spec.method.toLowerCase()]: operation };
  }

  const generated = z.toJSONSchema(registry, {
    io: 'input',
    unrepresentable: 'any',
    override: dropSafeIntegerBounds,
    uri: (id) => `${REF}${id}`,
  }) as { schemas: Record<string, Json> };
  const schemas: Record<string, Json> = {};
  for (const [id, schema] of Object.entries(generated.schemas).sort((a, b) => a[0].localeCompare(b[0]))) {
    const { $schema: _s, $id: _i, ...rest } = schema;
    schemas[id] = rest;
  }

  return {
    openapi: '3.1.0',
    info: {
      title: info.title,
      version: info.version,
      ...(info.description ? { description: info.description } : {}),
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    security: [{ bearer: [] }, { session: [] }],
    paths,
    components: {
      schemas,
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description:
            'An API token ("weft_..."), from `weft server init`, `weft token create` or POST /tokens',
        },
        session: {
          type: 'apiKey',
          in: 'cookie',
          name: 'weft_session',
          description:
            "The web console's session (POST /api/v1/session); every request other than GET and HEAD must " +
            "also carry the session's csrfToken in the X-CSRF-Token header",
        },
      },
    },
  };
}
