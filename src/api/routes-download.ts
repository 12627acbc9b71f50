/**
 * One-time download links of member configs: GET /dl/{token}, outside /api/v1 and without authentication, so
 * the person the link is sent to can open it in any browser. The 256-bit token is the credential; it works
 * once, until it expires, and while its member exists (ControlPlane.redeemDownloadLink).
 *
 *   1. a client with too many refused credentials lately (the API's throttle, auth.ts) is refused (429);
 *   2. the token is used up in one transaction with its audit entry;
 *   3. a token that does not work (unknown, used, expired) is 404 WEFT_ERR_LINK_INVALID, one answer for all,
 *      and counts as a refused credential of the client;
 *   4. the config goes out as an attachment, never cached (it holds the member's private key).
 * HEAD is not answered: fastify would run the handler for it and use the link up without sending anything.
 */
import { WeftError } from '../control/errors.js';
import { refuseIfThrottled, throttleKey } from './auth.js';
import type { ApiContext } from './context.js';
import * as s from './schemas.js';

export function downloadRoutes(ctx: ApiContext): void {
  const { routes, controlPlane: cp, auth } = ctx;
  const { throttle, now } = auth;

  routes.add({
    method: 'GET',
    path: '/dl/:token',
    root: true,
    noHead: true,
    operationId: 'downloadMemberConfig',
    summary:
      "A member's wg-quick config or OpenVPN profile (as the link was made for) through a one-time link " +
      '(no authentication; works once)',
    tag: 'members',
    public: true,
    params: s.TokenParams,
    errors: ['WEFT_ERR_LINK_INVALID', 'WEFT_ERR_RATE_LIMITED'],
    responses: {
      200: {
        description: 'A wg-quick .conf file or an .ovpn profile',
        text: ['text/plain', 'application/x-openvpn-profile'],
      },
    },
    handler: async ({ params, request, reply }) => {
      void reply.header('cache-control', 'no-store');
      const key = throttle === null ? null : throttleKey(request.ip);
      if (throttle !== null && key !== null) refuseIfThrottled(throttle, key, now(), 'failed requests');
      let link: { name: string; config: string; protocol: 'wireguard' | 'openvpn' };
      try {
        link = await cp.redeemLink(params.token, request.ip);
      } catch (err) {
        if (
          throttle !== null &&
          key !== null &&
          err instanceof WeftError &&
          err.code === 'WEFT_ERR_LINK_INVALID'
        )
          throttle.fail(key, now());
        throw err;
      }
      // Member names are letters, digits and "._-": no quoting needed in the header.
      if (link.protocol === 'openvpn')
        void reply
          .type('application/x-openvpn-profile')
          .header('content-disposition', `attachment; filename="${link.name}.ovpn"`);
      else
        void reply
          .type('text/plain; charset=utf-8')
          .header('content-disposition', `attachment; filename="${link.name}.conf"`);
      return link.config;
    },
  });
}
