/**
 * The web console's session (docs/console.md): logging in and out, and what only a logged-in person may do
 * to the admin account: enrol or remove a TOTP authenticator, change the password.
 *
 * Login, in order:
 *   1. the client's address (IPv4, or its IPv6 /64; loopback included: behind a reverse proxy on this host
 *      every browser is loopback, and a guesser must be slowed down there too) may not have failed
 *      LOGIN_FAILURE_LIMITS times lately (429 with Retry-After);
 *   2. username and password (one answer for either wrong, taking the same time);
 *   3. the TOTP code, when the account has TOTP on (good once);
 *   4. a new session (sessions.ts) and its cookie; a session the request still carried is ended.
 * A wrong password or code counts as a failure; a right password without a code (the console's first step
 * when TOTP is on) does not. A successful login forgets the address's failures. Logins, failures and
 * logouts go into the audit log with the client's address (session.login, session.login.refused,
 * session.logout).
 *
 * The account endpoints need a session (a bearer token is not a person who knows the password) and count
 * wrong passwords and codes toward the same throttle, so a stolen session cannot be used to guess either.
 */
import type { FastifyRequest } from 'fastify';
import { WeftError } from '../control/errors.js';
import { renderQr } from '../control/qr.js';
import { newTotpSecret, otpauthUrl } from '../control/totp.js';
import { clientKey, cookieSession, refuseIfThrottled, setSessionCookie } from './auth.js';
import type { ApiContext } from './context.js';
import * as s from './schemas.js';
import type { Session } from './sessions.js';

export function sessionRoutes(ctx: ApiContext): void {
  const { routes, controlPlane: cp, auth } = ctx;
  const { sessions, loginThrottle, now } = auth;
  const tag = 'session';

  /** The login throttle's key for this client, refusing it when it has failed too often lately. */
  const admitted = (request: FastifyRequest): string => {
    const { key } = clientKey(request.ip);
    if (loginThrottle) refuseIfThrottled(loginThrottle, key, now(), 'failed logins');
    return key;
  };
  const failed = (key: string): void => loginThrottle?.fail(key, now());

  /** Runs an account change; a wrong password or code (a validation error on `field`) counts as a failure. */
  const guarded = async <T>(request: FastifyRequest, field: string, fn: () => T | Promise<T>): Promise<T> => {
    const key = admitted(request);
    try {
      return await fn();
    } catch (err) {
      if (err instanceof WeftError && err.code === 'WEFT_ERR_VALIDATION' && err.field === field) failed(key);
      throw err;
    }
  };

  const sessionOf = (request: FastifyRequest): Session => {
    const session = request.actor?.session;
    if (!session) throw new WeftError('WEFT_ERR_UNAUTHORIZED', 'log in first');
    return session;
  };

  const info = (session: Session) => ({
    username: session.username,
    csrfToken: session.csrfToken,
    totpEnabled: cp.adminTotpEnabled(session.username),
  });

  routes.add({
    method: 'POST',
    path: '/session',
    operationId: 'login',
    summary: 'Logs in to the console: sets the session cookie and answers the CSRF token',
    description:
      'A wrong username or password gets WEFT_ERR_UNAUTHORIZED either way; the right password without ' +
      'a valid TOTP code, when TOTP is on, gets WEFT_ERR_TOTP_REQUIRED. After 5 failed logins from one ' +
      'client address within 5 minutes, further attempts get WEFT_ERR_RATE_LIMITED with Retry-After.',
    tag,
    public: true,
    body: s.LoginInput,
    errors: ['WEFT_ERR_UNAUTHORIZED', 'WEFT_ERR_TOTP_REQUIRED', 'WEFT_ERR_RATE_LIMITED'],
    responses: { 200: { description: 'Logged in; the cookie weft_session is set', schema: s.SessionInfo } },
    handler: async ({ body, request, reply }) => {
      const key = admitted(request);
      const result = await cp.verifyAdminLogin(body.username, body.password, body.totp);
      if (!result.ok) {
        if (result.reason !== 'totp-missing') {
          failed(key);
          cp.auditSession('login.refused', body.username, request.ip, result.reason);
        }
        if (result.reason === 'credentials')
          throw new WeftError('WEFT_ERR_UNAUTHORIZED', 'wrong username or password');
        throw new WeftError(
          'WEFT_ERR_TOTP_REQUIRED',
          result.reason === 'totp'
            ? 'the code is wrong, expired or used already: enter the current code of the authenticator app'
            : 'two-factor authentication is on: send the current code of the authenticator app as totp',
          'totp',
        );
      }
      loginThrottle?.forget(key);
      // A session this browser still had ends: one browser, one session.
      const previous = cookieSession(sessions, request);
      if (previous) sessions.end(previous);
      const { id, session } = sessions.create(result.username);
      cp.auditSession('login', result.username, request.ip);
      setSessionCookie(request, reply, id, sessions.limits.absoluteMs);
      void reply.header('cache-control', 'no-store');
      return info(session);
    },
  });

  routes.add({
    method: 'GET',
    path: '/session',
    operationId: 'getSession',
    summary: 'The logged-in user, the CSRF token and whether TOTP is on (401 when not logged in)',
    tag,
    sessionOnly: true,
    responses: { 200: { description: 'The session', schema: s.SessionInfo } },
    handler: ({ request, reply }) => {
      void reply.header('cache-control', 'no-store');
      return info(sessionOf(request));
    },
  });

  routes.add({
    method: 'DELETE',
    path: '/session',
    operationId: 'logout',
    summary: 'Logs out: the session ends and the cookie is cleared',
    tag,
    sessionOnly: true,
    responses: { 204: { description: 'Logged out' } },
    handler: ({ request, reply }) => {
      const session = sessionOf(request);
      sessions.end(session);
      cp.auditSession('logout', session.username, request.ip);
      setSessionCookie(request, reply, null);
    },
  });

  routes.add({
    method: 'POST',
    path: '/session/totp',
    operationId: 'startTotp',
    summary: 'Starts enrolling an authenticator app (RFC 6238: SHA-1, 6 digits, 30 s): a new secret',
    description:
      'The secret is kept with the session until POST /session/totp/confirm proves the app has it; ' +
      'starting again replaces it. Refused while TOTP is on.',
    tag,
    sessionOnly: true,
    errors: ['WEFT_ERR_TOTP_ALREADY_ENABLED'],
    responses: { 200: { description: 'The secret, its URI and QR code', schema: s.TotpEnrolment } },
    handler: async ({ request, reply }) => {
      const session = sessionOf(request);
      if (cp.adminTotpEnabled(session.username))
        throw new WeftError(
          'WEFT_ERR_TOTP_ALREADY_ENABLED',
          'two-factor authentication is already on (turn it off first to enrol another app)',
        );
      const secret = newTotpSecret();
      const url = otpauthUrl(secret, session.username);
      const qrSvg = await renderQr(url, 'svg');
      session.pendingTotpSecret = secret;
      void reply.header('cache-control', 'no-store');
      return { secret, otpauthUrl: url, qrSvg };
    },
  });

  routes.add({
    method: 'POST',
    path: '/session/totp/confirm',
    operationId: 'confirmTotp',
    summary: 'Turns TOTP on with the secret being enrolled, given a current code of the app',
    tag,
    sessionOnly: true,
    body: s.TotpCode,
    errors: ['WEFT_ERR_TOTP_NOT_STARTED', 'WEFT_ERR_TOTP_ALREADY_ENABLED', 'WEFT_ERR_RATE_LIMITED'],
    responses: { 200: { description: 'TOTP is on', schema: s.TotpState } },
    handler: async ({ actor, body, request }) => {
      const session = sessionOf(request);
      const secret = session.pendingTotpSecret;
      if (secret === null)
        throw new WeftError(
          'WEFT_ERR_TOTP_NOT_STARTED',
          'no enrolment is in progress in this session (POST /api/v1/session/totp first)',
        );
      await guarded(request, 'code', () => cp.enableAdminTotp(actor, session.username, secret, body.code));
      session.pendingTotpSecret = null;
      return { totpEnabled: true };
    },
  });

  routes.add({
    method: 'DELETE',
    path: '/session/totp',
    operationId: 'disableTotp',
    summary: 'Turns TOTP off, given a current code of the enrolled app',
    tag,
    sessionOnly: true,
    body: s.TotpCode,
    errors: ['WEFT_ERR_TOTP_NOT_ENABLED', 'WEFT_ERR_RATE_LIMITED'],
    responses: { 200: { description: 'TOTP is off', schema: s.TotpState } },
    handler: async ({ actor, body, request }) => {
      const session = sessionOf(request);
      await guarded(request, 'code', () => cp.disableAdminTotp(actor, session.username, body.code));
      return { totpEnabled: false };
    },
  });

  routes.add({
    method: 'PUT',
    path: '/session/password',
    operationId: 'changePassword',
    summary: "Changes the admin password; the account's other sessions end",
    description:
      'A wrong current password gets WEFT_ERR_VALIDATION on `current` and counts as a failed login; ' +
      'next must have at least 12 characters.',
    tag,
    sessionOnly: true,
    body: s.PasswordChange,
    errors: ['WEFT_ERR_RATE_LIMITED'],
    responses: { 204: { description: 'Changed' } },
    handler: async ({ actor, body, request }) => {
      const session = sessionOf(request);
      await guarded(request, 'current', () =>
        cp.changeAdminPassword(actor, session.username, body.current, body.next),
      );
      sessions.endAllOf(session.username, session);
    },
  });
}
