/**
 * The gateways of the network: those registered in a shared PostgreSQL store (`weft gateway join`), with their
 * state, region, endpoint, when the store last heard from each and the members online on each, as
 * `weft gateway list` shows them. On SQLite (one gateway, nothing registered) the list is empty. A gateway is
 * removed as `weft gateway remove` does (refused while routes or sites name it as the gateway serving them).
 */
import { z } from 'zod';
import { gatewayOverview, removeGateway } from '../control/gateways.js';
import type { ApiContext } from './context.js';

export const GatewayItem = z.object({
  name: z.string(),
  endpoint: z.string().describe('host:port where members and other gateways reach it'),
  region: z.string().describe('Region or site label ("" when none)'),
  publicKey: z.string().describe("The gateway's own WireGuard public key (for the peering between gateways)"),
  registeredAt: z.string(),
  lastSeen: z.string().describe("The gateway's last heartbeat, by the database's clock (ISO 8601)"),
  silentMs: z.number().int().nonnegative().describe('Milliseconds since lastSeen, by the database clock'),
  state: z.enum(['up', 'silent']).describe('silent: no heartbeat for 15 s'),
  membersOnline: z
    .number()
    .int()
    .nonnegative()
    .nullable()
    .describe(
      'Members whose status says they are online on this gateway; null when the statuses do not name gateways',
    ),
  meshPort: z.number().int().nullable().describe('The UDP port of its mesh interface (null: not recorded)'),
  mesh: z
    .object({
      at: z.string().describe('When it last reported its mesh peers (ISO 8601, database clock)'),
      peers: z.array(z.object({ name: z.string(), lastHandshake: z.string().nullable() }).passthrough()),
    })
    .nullable()
    .describe('Its mesh peers as it last reported them; null before its first report'),
  holds: z.array(z.string()).describe('Shared member-facing addresses it holds now (failover pairs)'),
});

export function gatewayRoutes(ctx: ApiContext): void {
  ctx.routes.add({
    method: 'GET',
    path: '/gateways',
    operationId: 'listGateways',
    summary: 'The registered gateways (shared PostgreSQL store) with state and members online; [] on SQLite',
    tag: 'server',
    errors: ['WEFT_ERR_NOT_INITIALIZED'],
    responses: { 200: { description: 'Every registered gateway', schema: z.array(GatewayItem) } },
    handler: () => gatewayOverview(ctx.controlPlane.store).gateways,
  });

  ctx.routes.add({
    method: 'DELETE',
    path: '/gateways/:name',
    operationId: 'removeGateway',
    summary:
      'Removes a registered gateway; the others drop it from their meshes (refused while it serves routes or sites)',
    tag: 'server',
    params: z.strictObject({ name: z.string() }),
    errors: ['WEFT_ERR_GATEWAY_NOT_FOUND', 'WEFT_ERR_GATEWAY_IN_USE'],
    responses: { 204: { description: 'Removed' } },
    handler: ({ actor, params }) => removeGateway(ctx.controlPlane.store, actor, params.name),
  });
}
