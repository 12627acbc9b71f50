/**
 * Declarative state: `weft apply` and `weft export` over HTTP, in JSON or YAML.
 */
import {
  applyState,
  exportState,
  formatStateYaml,
  parseStateYaml,
  STATE_FILE_LIMIT,
} from '../control/desired-state.js';
import type { ApiContext } from './context.js';
import * as s from './schemas.js';

/** Media types read and written as YAML. */
export const YAML_TYPES = ['application/yaml', 'text/yaml', 'application/x-yaml'] as const;

function wantsYaml(accept: string | undefined): boolean {
  if (!accept) return false;
  return accept
    .split(',')
    .map((part) => part.split(';')[0]!.trim().toLowerCase())
    .some((type) => (YAML_TYPES as readonly string[]).includes(type));
}

export function stateRoutes(ctx: ApiContext): void {
  const { routes, controlPlane: cp } = ctx;

  routes.add({
    method: 'POST',
    path: '/apply',
    operationId: 'applyState',
    summary: 'Brings the network to a declared state (as `weft apply`)',
    description:
      'The body is the desired state as JSON, or as YAML with Content-Type application/yaml, at most 4 MiB ' +
      '(as for `weft apply -f`); YAML aliases may expand to at most 100 nodes. With `dryRun=true` nothing ' +
      'changes and the answer lists what would.',
    tag: 'state',
    query: s.ApplyQuery,
    body: s.DesiredState,
    bodyAlsoAs: YAML_TYPES,
    bodyLimit: STATE_FILE_LIMIT,
    decodeBody: (body) => (typeof body === 'string' ? parseStateYaml(body) : body),
    errors: [
      'WEFT_ERR_MEMBER_EXISTS',
      'WEFT_ERR_GROUP_NOT_FOUND',
      'WEFT_ERR_GROUP_IN_USE',
      'WEFT_ERR_IP_OUTSIDE_SUBNET',
      'WEFT_ERR_IP_CONFLICT',
      'WEFT_ERR_KEY_CONFLICT',
      'WEFT_ERR_SUBNET_FULL',
    ],
    responses: { 200: { description: 'The changes made (or, dry run, to be made)', schema: s.ApplyResult } },
    handler: ({ actor, query, body }) => ({
      changes: applyState(cp, actor, body, { dryRun: query.dryRun ?? false }),
    }),
  });

  routes.add({
    method: 'GET',
    path: '/export',
    operationId: 'exportState',
    summary: 'The current state, in the form /apply takes (YAML with Accept: application/yaml)',
    tag: 'state',
    responses: {
      200: { description: 'The state', schema: s.DesiredState, alsoAs: ['application/yaml'] },
    },
    handler: ({ request, reply }) => {
      const state = exportState(cp);
      if (!wantsYaml(request.headers.accept)) return state;
      void reply.type('application/yaml; charset=utf-8');
      return formatStateYaml(state);
    },
  });
}
