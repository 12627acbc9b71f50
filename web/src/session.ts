/**
 * The logged-in admin's session as the API described it (username, CSRF token, whether TOTP is on).
 */
import { setCsrfToken } from './http.js';
import type { Session } from './types.js';

let current: Session | null = null;

export function currentSession(): Session | null {
  return current;
}

export function setCurrentSession(session: Session | null): void {
  current = session;
  setCsrfToken(session?.csrfToken ?? null);
}

export function setTotpEnabled(totpEnabled: boolean): void {
  if (current) current = { ...current, totpEnabled };
}
