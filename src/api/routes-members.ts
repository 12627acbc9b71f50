/**
 * Members: the people (devices) of the VPN, their configs, one-time download links of those, and their traffic.
 *
 * GET /members/next-ip is a static path beside /members/:name; fastify's router prefers the static one, and
 * "next-ip" is not a name a member may take (validate.ts RESERVED_MEMBER_NAMES), so neither hides the other.
 */
import { WeftError } from '../control/errors.js';
import { renderQr } from '../control/qr.js';
import type { ApiContext } from './context.js';
import * as s from './schemas.js';

const DAY_MS = 24 * 60 * 60 * 1000;

export function memberRoutes(ctx: ApiContext): void {
  const { routes, controlPlane: cp } = ctx;
  const tag = 'members';
  const notFound = ['WEFT_ERR_MEMBER_NOT_FOUND'] as const;

  routes.add({
    method: 'GET',
    path: '/members',
    operationId: 'listMembers',
    summary: 'Lists members by name, a page at a time',
    tag,
    query: s.MemberListQuery,
    responses: { 200: { description: 'A page of members', schema: s.MemberPage } },
    handler: ({ query }) => cp.listMembers(query),
  });

  routes.add({
    method: 'POST',
    path: '/members',
    operationId: 'addMember',
    summary: 'Adds a member, with a fixed address and (unless it brings its own) a generated key pair',
    tag,
    body: s.MemberInput,
    errors: [
      'WEFT_ERR_MEMBER_EXISTS',
      'WEFT_ERR_GROUP_NOT_FOUND',
      'WEFT_ERR_IP_OUTSIDE_SUBNET',
      'WEFT_ERR_IP_CONFLICT',
      'WEFT_ERR_KEY_CONFLICT',
      'WEFT_ERR_SUBNET_FULL',
    ],
    responses: { 201: { description: 'The new member', schema: s.MemberView } },
    handler: ({ actor, body }) => cp.addMember(actor, body),
  });

  routes.add({
    method: 'GET',
    path: '/members/next-ip',
    operationId: 'nextMemberIp',
    summary: 'The addresses POST /members would give a member added now without `ip` (nothing is reserved)',
    tag,
    errors: ['WEFT_ERR_NOT_INITIALIZED', 'WEFT_ERR_SUBNET_FULL'],
    responses: { 200: { description: 'The next free addresses', schema: s.NextIp } },
    handler: () => cp.suggestIp(),
  });

  routes.add({
    method: 'GET',
    path: '/members/:name',
    operationId: 'getMember',
    summary: 'One member, with its last reported status',
    tag,
    params: s.NameParams,
    errors: notFound,
    responses: { 200: { description: 'The member', schema: s.MemberView } },
    handler: ({ params }) => cp.getMember(params.name),
  });

  routes.add({
    method: 'PATCH',
    path: '/members/:name',
    operationId: 'updateMember',
    summary: "Changes a member's groups, expiry, full-tunnel flag or disabled flag",
    tag,
    params: s.NameParams,
    body: s.MemberPatch,
    errors: [...notFound, 'WEFT_ERR_GROUP_NOT_FOUND'],
    responses: { 200: { description: 'The member after the change', schema: s.MemberView } },
    handler: ({ actor, params, body }) => cp.updateMember(actor, params.name, body),
  });

  routes.add({
    method: 'DELETE',
    path: '/members/:name',
    operationId: 'removeMember',
    summary: 'Removes a member; its key stops working at once',
    tag,
    params: s.NameParams,
    errors: notFound,
    responses: { 204: { description: 'Removed' } },
    handler: ({ actor, params }) => cp.removeMember(actor, params.name),
  });

  for (const [verb, disabled] of [
    ['disable', true],
    ['enable', false],
  ] as const) {
    routes.add({
      method: 'POST',
      path: `/members/:name/${verb}`,
      operationId: `${verb}Member`,
      summary: disabled ? 'Disables a member (it is cut off at once)' : 'Enables a disabled member',
      tag,
      params: s.NameParams,
      errors: notFound,
      responses: { 200: { description: 'The member after the change', schema: s.MemberView } },
      handler: ({ actor, params }) => cp.setDisabled(actor, params.name, disabled),
    });
  }

  routes.add({
    method: 'POST',
    path: '/members/:name/rotate',
    operationId: 'rotateMember',
    summary:
      "Replaces a member's keys (WireGuard key, OpenVPN certificate and tls-crypt-v2 key); the old ones stop " +
      'working at once',
    tag,
    params: s.NameParams,
    body: s.RotateInput,
    bodyOptional: true,
    errors: [...notFound, 'WEFT_ERR_KEY_CONFLICT'],
    responses: { 200: { description: 'The member with its new public key', schema: s.MemberView } },
    handler: ({ actor, params, body }) =>
      cp.rotateMember(actor, params.name, body.publicKey, body.only === undefined ? undefined : [body.only]),
  });

  routes.add({
    method: 'GET',
    path: '/members/:name/config',
    operationId: 'getMemberConfig',
    summary:
      "The member's wg-quick configuration file (holds its private key when the server has it), or with " +
      'format=openvpn its inline OpenVPN profile',
    description:
      'The OpenVPN profile holds the CA, the member certificate and key and its tls-crypt-v2 client key; the ' +
      'certificate is issued on the first request.',
    tag,
    params: s.NameParams,
    query: s.ConfigQuery,
    errors: [...notFound, 'WEFT_ERR_OPENVPN_OFF'],
    responses: {
      200: {
        description: 'A wg-quick .conf file, or an .ovpn profile',
        text: ['text/plain', 'application/x-openvpn-profile'],
      },
    },
    handler: async ({ params, query, reply }) => {
      if (query.format === 'openvpn') {
        const profile = await cp.deliverOpenVpnConfig(params.name);
        void reply
          .type('application/x-openvpn-profile')
          .header('content-disposition', `attachment; filename="${params.name}.ovpn"`)
          .header('cache-control', 'no-store');
        return profile;
      }
      const config = cp.deliverConfig(params.name);
      // The name is validated (letters, digits, "._-"), so it needs no quoting in the header.
      void reply
        .type('text/plain; charset=utf-8')
        .header('content-disposition', `attachment; filename="${params.name}.conf"`)
        .header('cache-control', 'no-store');
      return config;
    },
  });

  routes.add({
    method: 'GET',
    path: '/members/:name/config.svg',
    operationId: 'getMemberConfigQr',
    summary: "The member's configuration as a QR code, for the WireGuard mobile apps",
    description:
      'Only for a member whose private key the server holds: a code with a placeholder key would import ' +
      'into a phone as a tunnel that cannot work.',
    tag,
    params: s.NameParams,
    errors: [...notFound, 'WEFT_ERR_NO_PRIVATE_KEY'],
    responses: { 200: { description: 'An SVG image', text: ['image/svg+xml'] } },
    handler: async ({ params, reply }) => {
      if (!cp.getMember(params.name).hasPrivateKey)
        throw new WeftError(
          'WEFT_ERR_NO_PRIVATE_KEY',
          `member ${params.name} brought its own key, so the server cannot make a complete config to scan`,
          'name',
        );
      const svg = await renderQr(cp.deliverConfig(params.name), 'svg');
      void reply.type('image/svg+xml').header('cache-control', 'no-store');
      return svg;
    },
  });

  routes.add({
    method: 'POST',
    path: '/members/:name/links',
    operationId: 'createMemberLink',
    summary: "A one-time download link of the member's config (GET /dl/{token}, no authentication, once)",
    description:
      'The token is in the answer only: the server keeps its hash. The link stops working when used, when ' +
      'it expires, and when the member is removed.',
    tag,
    params: s.NameParams,
    body: s.LinkInput,
    bodyOptional: true,
    errors: notFound,
    responses: { 201: { description: 'The link', schema: s.CreatedLink } },
    handler: ({ actor, params, body, reply }) => {
      const link = cp.createDownloadLink(actor, params.name, body.ttlMinutes, body.protocol);
      void reply.header('cache-control', 'no-store');
      return { url: `/dl/${link.token}`, expiresAt: link.expiresAt };
    },
  });

  routes.add({
    method: 'GET',
    path: '/members/:name/pack',
    operationId: 'getMemberClientPack',
    summary:
      'A client pack: a script that installs the VPN client unattended with the member config embedded ' +
      '(Windows PowerShell, Linux or macOS sh)',
    description: 'It holds the member private key. Counts as handing out the config of its protocol.',
    tag,
    params: s.NameParams,
    query: s.PackQuery,
    errors: [...notFound, 'WEFT_ERR_OPENVPN_OFF'],
    responses: { 200: { description: 'A script', text: ['text/plain', 'text/x-shellscript'] } },
    handler: async ({ params, query, reply }) => {
      const pack = await cp.deliverClientPack(params.name, query.os, query.protocol ?? 'openvpn');
      void reply
        .type(`${pack.mediaType}; charset=utf-8`)
        .header('content-disposition', `attachment; filename="${pack.fileName}"`)
        .header('cache-control', 'no-store');
      return pack.script;
    },
  });

  routes.add({
    method: 'GET',
    path: '/members/:name/traffic',
    operationId: 'getMemberTraffic',
    summary: "A member's traffic per minute",
    tag,
    params: s.NameParams,
    query: s.TrafficQuery,
    errors: notFound,
    responses: { 200: { description: 'Samples, oldest first', schema: s.TrafficSample.array() } },
    handler: ({ params, query }) =>
      cp.traffic(params.name, query.since ? new Date(query.since) : new Date(Date.now() - DAY_MS)),
  });
}
