/**
 * Multicast across the overlay: the running gateway's replicator (groups, receivers, senders, packets, drops
 * and why), as `weft multicast list` shows it.
 */
import { z } from 'zod';
import type { ApiContext } from './context.js';
import { WeftError } from '../control/errors.js';
import { multicastStaticObject } from '../control/desired-state.js';

const count = z.number().int().nonnegative();
const drops = z.record(z.string(), count).describe('Nonzero drop counters by reason');

export const MulticastLive = z.object({
  counters: z.object({ packets: count, copies: count, reports: count }),
  drops,
  groups: z.array(
    z.object({
      group: z.string().describe('The group address (IPv4 224.0.0.0/4 or IPv6 ff00::/8)'),
      receivers: z.array(
        z.object({
          port: z
            .string()
            .describe(
              'wg:NAME (WireGuard member), ovpn:NAME (OpenVPN member), site:NAME (IPsec site), lan:IF or host',
            ),
          expiresInS: count
            .nullable()
            .describe('Seconds until the membership lapses unless renewed; null: static'),
        }),
      ),
      packets: count.describe('Packets sent to the group while it had receivers'),
      copies: count,
      senders: z.array(z.object({ port: z.string(), packets: count })),
    }),
  ),
  ports: z.array(
    z.object({
      port: z.string(),
      sent: count.describe('Packets it sent to groups'),
      received: count.describe('Copies sent to it'),
      drops,
    }),
  ),
});

export const Multicast = z.object({
  on: z.boolean().describe('The multicast setting'),
  live: MulticastLive.nullable().describe(
    'The replicator of the gateway running in this process; null when none runs here with multicast on',
  ),
});

export const MulticastStaticList = z.object({
  items: z.array(multicastStaticObject).describe('Ordered by port, then group'),
});

export function multicastRoutes(ctx: ApiContext): void {
  const cp = ctx.controlPlane;
  ctx.routes.add({
    method: 'GET',
    path: '/multicast/static',
    operationId: 'listMulticastStatic',
    summary: 'Static multicast memberships: ports joined to groups without IGMP/MLD reports',
    tag: 'server',
    errors: ['WEFT_ERR_NOT_INITIALIZED'],
    responses: { 200: { description: 'Every static membership', schema: MulticastStaticList } },
    handler: () => ({ items: [...cp.listMulticastStatic()] }),
  });

  ctx.routes.add({
    method: 'POST',
    path: '/multicast/static',
    operationId: 'addMulticastStatic',
    summary: 'Joins a port (member:NAME, site:NAME or lan) to a group; the running gateway applies it live',
    tag: 'server',
    body: multicastStaticObject,
    errors: ['WEFT_ERR_NOT_INITIALIZED'],
    responses: { 201: { description: 'The membership (canonical)', schema: multicastStaticObject } },
    handler: ({ actor, body }) => cp.addMulticastStatic(actor, body.port, body.group),
  });

  ctx.routes.add({
    method: 'DELETE',
    path: '/multicast/static',
    operationId: 'removeMulticastStatic',
    summary: 'Removes a static membership',
    tag: 'server',
    query: multicastStaticObject,
    errors: ['WEFT_ERR_NOT_INITIALIZED', 'WEFT_ERR_NOT_FOUND'],
    responses: { 204: { description: 'Removed' } },
    handler: ({ actor, query }) => {
      if (!cp.removeMulticastStatic(actor, query.port, query.group))
        throw new WeftError('WEFT_ERR_NOT_FOUND', `no static membership of ${query.port} in ${query.group}`);
    },
  });

  ctx.routes.add({
    method: 'GET',
    path: '/multicast',
    operationId: 'getMulticast',
    summary: 'Multicast groups with their receivers and senders, packets, copies, and drops by reason',
    tag: 'server',
    errors: ['WEFT_ERR_NOT_INITIALIZED'],
    responses: { 200: { description: 'The replicator state', schema: Multicast } },
    handler: () => ({
      on: ctx.controlPlane.settings().multicast === true,
      live: ctx.live?.multicast?.() ?? null,
    }),
  });
}
