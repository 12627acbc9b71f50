/**
 * The web console's login sessions: an in-memory table from session id to who logged in, when, and the CSRF
 * token the console must echo on every unsafe request.
 *
 * - Ids are 256 random bits (base64url) and are kept only as their SHA-256: the table (a heap dump, a debug
 *   log of it) does not hold what the cookie holds. A guess is a hash lookup, so it costs no timing leak.
 * - A session ends SESSION_LIMITS.absoluteMs after login whatever happens, or idleMs after its last use, or
 *   at logout; an ended session is gone for good (no renewal of the same id).
 * - At most maxSessions live at once: logging in past that ends the least recently used session, so memory
 *   stays bounded whatever is done with the login endpoint (which needs the password anyway).
 * - The clock is injected (milliseconds), so a test can step over 30 minutes at once. In memory on purpose:
 *   a restart of the server logs everyone out, and no session secret ever reaches the store's file.
 */
import { randomSecret, sameSecret, tokenHash } from '../control/secrets.js';

export interface SessionLimits {
  /** A session ends this long after login, used or not. */
  readonly absoluteMs: number;
  /** ...or this long after its last use. */
  readonly idleMs: number;
  /** Sessions kept at most. */
  readonly maxSessions: number;
}

/** docs/console.md: 12 hours, or 30 minutes without use. */
export const SESSION_LIMITS: SessionLimits = {
  absoluteMs: 12 * 60 * 60 * 1000,
  idleMs: 30 * 60 * 1000,
  maxSessions: 1000,
};

/** The cookie that carries the session id. */
export const SESSION_COOKIE = 'weft_session';

/** The header that must carry the session's CSRF token on every request other than GET and HEAD. */
export const CSRF_HEADER = 'x-csrf-token';

/** 32 random bytes in base64url, without padding: 43 characters. */
const ID_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export interface Session {
  /** The SHA-256 of the id (hex): the table's key, safe to hold on to and to log. */
  readonly key: string;
  readonly username: string;
  /** Echoed by the console in X-CSRF-Token; not a secret from the console, only from other sites. */
  readonly csrfToken: string;
  readonly createdAt: number;
  lastUsedAt: number;
  /** A TOTP secret being enrolled (POST /session/totp), until confirmed or the session ends. */
  pendingTotpSecret: string | null;
}

export class SessionTable {
  readonly limits: SessionLimits;
  /** Key -> session, least recently used first (a session is moved to the end on each use). */
  readonly #sessions = new Map<string, Session>();

  constructor(
    limits: SessionLimits = SESSION_LIMITS,
    private readonly now: () => number = Date.now,
  ) {
    for (const [name, value] of Object.entries(limits)) {
      if (!Number.isSafeInteger(value) || value < 1)
        throw new RangeError(`SessionTable: ${name} must be a positive integer (got ${String(value)})`);
    }
    this.limits = { ...limits };
  }

  /** Live sessions (expired ones may still be counted until they are next looked at or evicted). */
  get size(): number {
    return this.#sessions.size;
  }

  /** Starts a session; returns its id (for the cookie, never stored) and the session. */
  create(username: string): { id: string; session: Session } {
    const now = this.now();
    this.#sweep(now);
    while (this.#sessions.size >= this.limits.maxSessions) {
      const oldest = this.#sessions.keys().next();
      if (oldest.done === true) break;
      this.#sessions.delete(oldest.value);
    }
    const id = randomSecret();
    const session: Session = {
      key: tokenHash(id),
      username,
      csrfToken: randomSecret(),
      createdAt: now,
      lastUsedAt: now,
      pendingTotpSecret: null,
    };
    this.#sessions.set(session.key, session);
    return { id, session };
  }

  /**
   * The live session of this id, without marking it used; undefined for an unknown, ended or expired one (an
   * expired one is dropped on the way).
   */
  find(id: string): Session | undefined {
    if (!ID_PATTERN.test(id)) return undefined;
    const key = tokenHash(id);
    const session = this.#sessions.get(key);
    if (session === undefined) return undefined;
    if (this.#expired(session, this.now())) {
      this.#sessions.delete(key);
      return undefined;
    }
    return session;
  }

  /** Marks a session used now (its idle time starts again), if it is still in the table. */
  touch(session: Session): void {
    if (this.#sessions.get(session.key) !== session) return;
    session.lastUsedAt = this.now();
    this.#sessions.delete(session.key);
    this.#sessions.set(session.key, session);
  }

  /** `find` and `touch` in one. */
  use(id: string): Session | undefined {
    const session = this.find(id);
    if (session !== undefined) this.touch(session);
    return session;
  }

  /** Ends a session (logout). */
  end(session: Pick<Session, 'key'>): void {
    this.#sessions.delete(session.key);
  }

  /** Ends every session of `username` except `keep` (after a password change). */
  endAllOf(username: string, keep?: Pick<Session, 'key'>): void {
    for (const [key, session] of [...this.#sessions]) {
      if (session.username === username && key !== keep?.key) this.#sessions.delete(key);
    }
  }

  #expired(session: Session, now: number): boolean {
    return (
      now - session.createdAt >= this.limits.absoluteMs || now - session.lastUsedAt >= this.limits.idleMs
    );
  }

  /**
   * Drops expired sessions from the least recently used end, which idles out first; it stops at the first
   * live one (those after it were used later; one of them past its absolute limit is dropped when next used).
   */
  #sweep(now: number): void {
    for (const [key, session] of this.#sessions) {
      if (!this.#expired(session, now)) break;
      this.#sessions.delete(key);
    }
  }
}

/** Whether the CSRF token a request sent is the session's (constant time). */
export function csrfMatches(session: Session, sent: string | undefined): boolean {
  return sent !== undefined && sameSecret(sent, session.csrfToken);
}

/** The values of the cookie `name` in a Cookie header (RFC 6265 section 5.4: "name=value" pairs joined by "; "). */
export function cookieValues(header: string | undefined, name: string): string[] {
  if (header === undefined) return [];
  const out: string[] = [];
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq < 0) continue;
    if (pair.slice(0, eq).trim() !== name) continue;
    let value = pair.slice(eq + 1).trim();
    // RFC 6265 section 4.1.1 allows the value in double quotes.
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    out.push(value);
  }
  return out;
}

export interface CookieOptions {
  /** Sent only over TLS: set when the request came in over HTTPS. */
  readonly secure: boolean;
  /** Seconds; 0 deletes the cookie. */
  readonly maxAge: number;
}

/**
 * The Set-Cookie value of the session cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's
 * page sends it, RFC 6265bis section 8.8), the whole server (Path=/), Secure over TLS.
 */
export function sessionCookie(value: string, options: CookieOptions): string {
  return [
    `${SESSION_COOKIE}=${value}`,
    'Path=/',
    'HttpOnly',
    'SameSite=Strict',
    `Max-Age=${options.maxAge}`,
    ...(options.secure ? ['Secure'] : []),
  ].join('; ');
}
