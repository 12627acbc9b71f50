/**
 * IPsec sites: tunnels to the firewalls of other sites and clouds. The pre-shared key is write-only: no answer
 * holds it, except the one creating a site without one (the generated key, once) and the remote-end config,
 * which the operator hands to the other firewall.
 */
import type { ApiContext } from './context.js';
import * as s from './schemas.js';

export function siteRoutes(ctx: ApiContext): void {
  const { routes, controlPlane: cp } = ctx;
  const tag = 'sites';
  const notFound = ['WEFT_ERR_SITE_NOT_FOUND'] as const;
  const conflicts = ['WEFT_ERR_GROUP_NOT_FOUND', 'WEFT_ERR_SUBNET_CONFLICT'] as const;

  routes.add({
    method: 'GET',
    path: '/sites',
    operationId: 'listSites',
    summary: 'Lists sites by name, each with the status the gateway last reported',
    tag,
    responses: { 200: { description: 'Every site', schema: s.SiteList } },
    handler: () => ({ items: cp.listSites() }),
  });

  routes.add({
    method: 'POST',
    path: '/sites',
    operationId: 'addSite',
    summary: 'Adds a site; without `psk` a key is generated and returned this once',
    tag,
    body: s.SiteInput,
    errors: ['WEFT_ERR_SITE_EXISTS', ...conflicts],
    responses: { 201: { description: 'The new site', schema: s.CreatedSite } },
    handler: ({ actor, body, reply }) => {
      const { site, generatedPsk } = cp.addSite(actor, body);
      void reply.header('cache-control', 'no-store');
      return generatedPsk === null ? site : { ...site, psk: generatedPsk };
    },
  });

  routes.add({
    method: 'GET',
    path: '/sites/:name',
    operationId: 'getSite',
    summary: 'One site, with its IKE and CHILD SAs as last reported',
    tag,
    params: s.NameParams,
    errors: notFound,
    responses: { 200: { description: 'The site', schema: s.SiteView } },
    handler: ({ params }) => cp.getSite(params.name),
  });

  routes.add({
    method: 'PATCH',
    path: '/sites/:name',
    operationId: 'updateSite',
    summary: 'Changes the fields given',
    tag,
    params: s.NameParams,
    body: s.SitePatch,
    errors: [...notFound, ...conflicts],
    responses: { 200: { description: 'The site after the change', schema: s.SiteView } },
    handler: ({ actor, params, body }) => cp.updateSite(actor, params.name, body),
  });

  routes.add({
    method: 'DELETE',
    path: '/sites/:name',
    operationId: 'removeSite',
    summary: 'Removes a site; its tunnel goes down',
    tag,
    params: s.NameParams,
    errors: notFound,
    responses: { 204: { description: 'Removed' } },
    handler: ({ actor, params }) => cp.removeSite(actor, params.name),
  });

  for (const [verb, enabled] of [
    ['up', true],
    ['down', false],
  ] as const) {
    routes.add({
      method: 'POST',
      path: `/sites/:name/${verb}`,
      operationId: `${verb}Site`,
      summary: enabled ? 'Enables a site: the gateway starts it' : 'Disables a site: its SAs are deleted',
      tag,
      params: s.NameParams,
      errors: notFound,
      responses: { 200: { description: 'The site after the change', schema: s.SiteView } },
      handler: ({ actor, params }) => cp.setSiteEnabled(actor, params.name, enabled),
    });
  }

  routes.add({
    method: 'GET',
    path: '/sites/:name/remote-config',
    operationId: 'siteRemoteConfig',
    summary: 'The settings for the firewall at the other end (swanctl.conf, AWS tunnel options, pfSense)',
    description: 'Holds the pre-shared key.',
    tag,
    params: s.NameParams,
    query: s.RemoteConfigQuery,
    errors: notFound,
    responses: { 200: { description: 'The settings, as text', text: ['text/plain'] } },
    handler: ({ params, query, reply }) => {
      const text = cp.siteRemoteConfig(params.name, query.format);
      const ext = query.format === 'swanctl' ? 'conf' : 'txt';
      void reply
        .type('text/plain; charset=utf-8')
        .header('content-disposition', `attachment; filename="${params.name}-${query.format}.${ext}"`)
        .header('cache-control', 'no-store');
      return text;
    },
  });
}
