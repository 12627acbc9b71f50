/**
 * Accountability and access: the audit log and the API tokens.
 */
import type { ApiContext } from './context.js';
import * as s from './schemas.js';

export function adminRoutes(ctx: ApiContext): void {
  const { routes, controlPlane: cp } = ctx;

  routes.add({
    method: 'GET',
    path: '/audit',
    operationId: 'listAudit',
    summary: 'The audit log, newest first: who changed what, when',
    tag: 'audit',
    query: s.AuditQuery,
    responses: { 200: { description: 'Audit entries', schema: s.AuditEntry.array() } },
    handler: ({ query }) => cp.listAudit(query),
  });

  routes.add({
    method: 'GET',
    path: '/tokens',
    operationId: 'listTokens',
    summary: 'Lists API tokens by id, a page at a time (never their secrets)',
    tag: 'tokens',
    query: s.ListQuery,
    responses: { 200: { description: 'A page of tokens', schema: s.TokenPage } },
    handler: ({ query }) => cp.pageTokens(query),
  });

  routes.add({
    method: 'POST',
    path: '/tokens',
    operationId: 'createToken',
    summary: 'Creates an API token; the answer holds its secret, which is never shown again',
    tag: 'tokens',
    body: s.TokenInput,
    responses: { 201: { description: 'The token and its secret', schema: s.CreatedToken } },
    handler: ({ actor, body, reply }) => {
      void reply.header('cache-control', 'no-store');
      return cp.createToken(actor, body.name);
    },
  });

  routes.add({
    method: 'DELETE',
    path: '/tokens/:id',
    operationId: 'revokeToken',
    summary: 'Revokes an API token; it stops working at once',
    tag: 'tokens',
    params: s.IdParams,
    errors: ['WEFT_ERR_TOKEN_NOT_FOUND'],
    responses: { 204: { description: 'Revoked' } },
    handler: ({ actor, params }) => cp.revokeToken(actor, params.id),
  });
}
