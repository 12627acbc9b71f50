/**
 * Multicast across the overlay: the running gateway's replicator (groups, receivers, senders, packets, drops
 * and why), as `weft multicast list` shows it.
 */
import { z } from 'zod';
import type { ApiContext } from './context.js';

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
          port: z.string().describe('wg:NAME (WireGuard member), ovpn:NAME (OpenVPN member) or host'),
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

export function multicastRoutes(ctx: ApiContext): void {
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
