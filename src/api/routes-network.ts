/**
 * The network's shape: groups, shared routes (subnets behind the gateway) and the policies between them.
 */
import { WeftError } from '../control/errors.js';
import type { ApiContext } from './context.js';
import * as s from './schemas.js';

/**
 * ControlPlane.addPolicy names fields as `weft apply` sees them ("policy.group"); the API's body is the policy
 * itself, so its fields are "group", "ports.from", and an error about the policy as a whole has no field.
 */
function asBodyFields<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof WeftError) || err.field === undefined || !/^policy(\.|$)/.test(err.field)) throw err;
    const field = err.field === 'policy' ? undefined : err.field.slice('policy.'.length);
    const message = err.message.startsWith(`${err.field}: `)
      ? `${field ?? 'policy'}: ${err.message.slice(err.field.length + 2)}`
      : err.message;
    throw new WeftError(err.code, message, field);
  }
}

export function networkRoutes(ctx: ApiContext): void {
  const { routes, controlPlane: cp } = ctx;

  // ---- groups ----

  routes.add({
    method: 'GET',
    path: '/groups',
    operationId: 'listGroups',
    summary: 'Lists groups by name, a page at a time, with how many members each has',
    tag: 'groups',
    query: s.ListQuery,
    responses: { 200: { description: 'A page of groups', schema: s.GroupPage } },
    handler: ({ query }) => cp.pageGroups(query),
  });

  routes.add({
    method: 'POST',
    path: '/groups',
    operationId: 'addGroup',
    summary: 'Adds a group',
    tag: 'groups',
    body: s.GroupInput,
    errors: ['WEFT_ERR_GROUP_EXISTS'],
    responses: { 201: { description: 'The new group', schema: s.Group } },
    handler: ({ actor, body }) => cp.addGroup(actor, body),
  });

  routes.add({
    method: 'PATCH',
    path: '/groups/:name',
    operationId: 'updateGroup',
    summary: "Changes a group's description",
    tag: 'groups',
    params: s.NameParams,
    body: s.GroupPatch,
    errors: ['WEFT_ERR_GROUP_NOT_FOUND'],
    responses: { 200: { description: 'The group after the change', schema: s.Group } },
    handler: ({ actor, params, body }) => cp.updateGroup(actor, params.name, body.description),
  });

  routes.add({
    method: 'DELETE',
    path: '/groups/:name',
    operationId: 'removeGroup',
    summary: 'Removes a group that no member or policy uses',
    tag: 'groups',
    params: s.NameParams,
    errors: ['WEFT_ERR_GROUP_NOT_FOUND', 'WEFT_ERR_GROUP_IN_USE'],
    responses: { 204: { description: 'Removed' } },
    handler: ({ actor, params }) => cp.removeGroup(actor, params.name),
  });

  // ---- shared routes ----

  routes.add({
    method: 'GET',
    path: '/routes',
    operationId: 'listRoutes',
    summary: 'Lists the subnets behind the gateway that members may reach, a page at a time',
    tag: 'routes',
    query: s.ListQuery,
    responses: { 200: { description: 'A page of routes', schema: s.RoutePage } },
    handler: ({ query }) => cp.pageRoutes(query),
  });

  routes.add({
    method: 'POST',
    path: '/routes',
    operationId: 'addRoute',
    summary: 'Adds a subnet behind the gateway',
    tag: 'routes',
    body: s.RouteInput,
    errors: ['WEFT_ERR_ROUTE_EXISTS'],
    responses: { 201: { description: 'The new route', schema: s.SharedRoute } },
    handler: ({ actor, body }) => cp.addRoute(actor, body),
  });

  routes.add({
    method: 'DELETE',
    path: '/routes/:cidr',
    operationId: 'removeRoute',
    summary: 'Removes a route',
    tag: 'routes',
    params: s.CidrParams,
    errors: ['WEFT_ERR_ROUTE_NOT_FOUND'],
    responses: { 204: { description: 'Removed' } },
    handler: ({ actor, params }) => cp.removeRoute(actor, params.cidr),
  });

  routes.add({
    method: 'DELETE',
    path: '/routes/:address/:bits',
    operationId: 'removeRouteByParts',
    summary: 'Removes a route named with its slash as it is (DELETE /routes/10.20.0.0/24)',
    description:
      'The same as DELETE /routes/{cidr} with the slash percent-encoded: a client that does not encode it ' +
      'reaches this path, and the prefix is its two segments.',
    tag: 'routes',
    params: s.CidrPartsParams,
    errors: ['WEFT_ERR_ROUTE_NOT_FOUND'],
    responses: { 204: { description: 'Removed' } },
    handler: ({ actor, params }) => cp.removeRoute(actor, `${params.address}/${params.bits}`),
  });

  // ---- policies ----

  routes.add({
    method: 'GET',
    path: '/policies',
    operationId: 'listPolicies',
    summary: 'Lists policies by id, a page at a time',
    tag: 'policies',
    query: s.ListQuery,
    responses: { 200: { description: 'A page of policies', schema: s.PolicyPage } },
    handler: ({ query }) => cp.pagePolicies(query),
  });

  routes.add({
    method: 'POST',
    path: '/policies',
    operationId: 'addPolicy',
    summary:
      'Adds a policy: allow or deny a group traffic to a destination, or (direction receive) copies of multicast groups',
    tag: 'policies',
    body: s.PolicyInput,
    errors: ['WEFT_ERR_GROUP_NOT_FOUND', 'WEFT_ERR_POLICY_EXISTS'],
    responses: { 201: { description: 'The new policy', schema: s.Policy } },
    handler: ({ actor, body }) =>
      asBodyFields(() =>
        cp.addPolicy(actor, {
          ...body,
          ports: body.ports ? { from: body.ports.from, to: body.ports.to ?? body.ports.from } : body.ports,
        }),
      ),
  });

  routes.add({
    method: 'DELETE',
    path: '/policies/:id',
    operationId: 'removePolicy',
    summary: 'Removes a policy',
    tag: 'policies',
    params: s.IdParams,
    errors: ['WEFT_ERR_POLICY_NOT_FOUND'],
    responses: { 204: { description: 'Removed' } },
    handler: ({ actor, params }) => cp.removePolicy(actor, params.id),
  });
}
