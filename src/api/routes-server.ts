/**
 * The server as a whole: health, the OpenAPI document, status, the network's traffic and settings.
 */
import type { ApiContext } from './context.js';
import { METRICS_CONTENT_TYPE, renderMetrics } from './metrics.js';
import * as s from './schemas.js';

const DAY_MS = 24 * 60 * 60 * 1000;

export function serverRoutes(ctx: ApiContext, document: () => unknown): void {
  const { routes, controlPlane: cp } = ctx;

  routes.add({
    method: 'GET',
    path: '/health',
    operationId: 'health',
    summary: 'Whether the API answers (no authentication)',
    tag: 'server',
    public: true,
    responses: { 200: { description: 'The API is up', schema: s.Health } },
    handler: () => ({ ok: true }),
  });

  routes.add({
    method: 'GET',
    path: '/openapi.json',
    operationId: 'openapi',
    summary: 'This OpenAPI 3.1 document (no authentication)',
    tag: 'server',
    public: true,
    responses: { 200: { description: 'The document', schema: s.OpenApiDocument } },
    handler: () => document(),
  });

  routes.add({
    method: 'GET',
    path: '/status',
    operationId: 'getStatus',
    summary: "The network's settings, the gateway's key and addresses, live figures and member counts",
    tag: 'server',
    errors: ['WEFT_ERR_NOT_INITIALIZED'],
    responses: { 200: { description: 'The status', schema: s.Status } },
    handler: () => {
      const settings = cp.settings();
      const counts = cp.store.memberCounts(new Date().toISOString());
      return {
        settings: {
          endpoint: settings.endpoint,
          listenPort: settings.listenPort,
          interfaceName: settings.interfaceName,
          subnet: settings.subnet,
          subnet6: settings.subnet6,
          defaultPolicy: settings.defaultPolicy,
        },
        gateway: { publicKey: cp.gatewayPublicKey(), ...cp.gatewayAddresses() },
        live: ctx.live?.gateway() ?? null,
        members: { ...counts, active: counts.total - counts.disabled - counts.expired },
      };
    },
  });

  routes.add({
    method: 'GET',
    path: '/metrics',
    operationId: 'getMetrics',
    summary: 'Prometheus metrics (text exposition format 0.0.4): members, traffic, handshakes, drops, memory',
    description:
      'Authenticated like the rest of the API (a bearer API token). Per-member figures are labelled by the ' +
      "member's name and appear while the gateway runs in this process.",
    tag: 'server',
    responses: { 200: { description: 'The metrics', text: ['text/plain'] } },
    handler: ({ reply }) => {
      const counts = cp.store.memberCounts(new Date().toISOString());
      void reply.type(METRICS_CONTENT_TYPE).header('cache-control', 'no-store');
      return renderMetrics({
        members: counts,
        gateway: ctx.live?.metrics?.(),
        residentMemoryBytes: process.memoryUsage.rss(),
      });
    },
  });

  routes.add({
    method: 'GET',
    path: '/traffic',
    operationId: 'getTraffic',
    summary: "The whole network's traffic per minute: every member's summed (the console's dashboard)",
    tag: 'server',
    query: s.TrafficQuery,
    responses: {
      200: { description: 'Samples, oldest first, with the name ""', schema: s.TrafficSample.array() },
    },
    handler: ({ query }) =>
      cp.traffic('', query.since ? new Date(query.since) : new Date(Date.now() - DAY_MS)),
  });

  routes.add({
    method: 'GET',
    path: '/settings',
    operationId: 'getSettings',
    summary: "The network's settings",
    tag: 'server',
    errors: ['WEFT_ERR_NOT_INITIALIZED'],
    responses: { 200: { description: 'The settings', schema: s.Settings } },
    handler: () => cp.settings(),
  });

  routes.add({
    method: 'GET',
    path: '/openvpn/crl',
    operationId: 'getOpenVpnCrl',
    summary:
      "The revocation list of Weft's CA (PEM): member certificates revoked by rotation or removal, valid 30 days",
    tag: 'server',
    responses: { 200: { description: 'A PEM CRL', text: ['application/x-pem-file'] } },
    handler: async ({ reply }) => {
      const crl = await cp.openVpnCrl();
      void reply.type('application/x-pem-file').header('cache-control', 'no-store');
      return crl;
    },
  });

  routes.add({
    method: 'PATCH',
    path: '/settings',
    operationId: 'updateSettings',
    summary: 'Changes settings (not the subnets)',
    tag: 'server',
    body: s.SettingsPatch,
    errors: ['WEFT_ERR_NOT_INITIALIZED'],
    responses: { 200: { description: 'The settings after the change', schema: s.Settings } },
    handler: ({ actor, body }) => cp.updateSettings(actor, body),
  });
}
