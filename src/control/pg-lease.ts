/**
 * A lease on a shared resource (a failover pair's member-facing address), held through PostgreSQL: a
 * session-level advisory lock taken on a connection of its own. PostgreSQL releases such a lock when the session
 * ends, so the holder is whoever has a live session holding it — no lease rows that expire by the clock, no
 * consensus of our own.
 *
 * 1. Acquire: a dedicated connection (never the pool's), the lease's number from `leases` (a name gets a number
 *    once, so two names never share a lock), then `pg_try_advisory_lock(LEASE_LOCK_SPACE, number)`: true makes
 *    this session the holder, false means another live session holds it (no waiting).
 * 2. Hold: the connection runs `SELECT 1` every `heartbeatMs` (500 ms). The lease is lost — `lost` resolves and
 *    the `onLost` callbacks run, once — when the connection reports an error or closes (a server restart ends
 *    every session with 57P01) or at the holder's deadline: `lostAfterMs` (2 s) after it *sent* the last check
 *    that was answered (a silent network, a hung server). A timer is armed for that exact instant, so the
 *    deadline does not depend on the heartbeat's period. The connection is then closed, so the lock cannot stay
 *    with a session the holder no longer trusts.
 * 3. Server side: the session sets `idle_session_timeout` (3 s), so when the holder stops sending heartbeats —
 *    its process hangs or is stopped, its machine or network goes away without closing the socket — PostgreSQL
 *    ends the session and frees the lock 3 s after the last query it received; `tcp_user_timeout` (3 s)
 *    covers a holder that vanishes while the server is sending to it. When the holder's process dies but its
 *    kernel lives (kill -9, a crash), the kernel closes the socket and the lock is free at once.
 *    Why the holder's deadline comes first: the server received the last answered check after the holder sent
 *    it, and went idle after answering it, so the lock is freed no earlier than that send + 3 s; the holder
 *    gives up at that send + 2 s. The difference (`serverTimeoutMs - lostAfterMs`, 1 s) is the margin within
 *    which the holder must act on its loss (remove a shared address) before another session can take the lock.
 * 4. Release: `pg_advisory_unlock`, then the connection is closed (closing alone would free it too).
 */
import pg from 'pg';

/** The first key of every lease's advisory lock ("wlea"), apart from the migration lock's single key. */
export const LEASE_LOCK_SPACE = 0x776c6561;
const HEARTBEAT_MS = 500;
/** The holder's deadline: this long after it sent the last check that was answered. */
const LOST_AFTER_MS = 2000;
/** PostgreSQL ends the holder's session when it has sent nothing for this long (idle_session_timeout). */
const SERVER_TIMEOUT_MS = 3000;
/** And when data it sent stays unacknowledged for this long (tcp_user_timeout: a peer that vanished mid-reply). */
const TCP_USER_TIMEOUT_MS = 3000;

export interface LeaseOptions {
  /** How often the holder checks its session (default 500 ms). */
  readonly heartbeatMs?: number;
  /**
   * The holder gives the lease up this long after it sent the last check that was answered (default 2 s). Must
   * exceed heartbeatMs.
   */
  readonly lostAfterMs?: number;
  /**
   * PostgreSQL ends the session, freeing the lease, when the holder has sent nothing for this long (default
   * 3 s). Must exceed lostAfterMs, so that a cut-off holder gives up before another can take over; the
   * difference is the margin the holder has to act on its loss.
   */
  readonly serverTimeoutMs?: number;
  /**
   * Who holds it (a gateway's name): the session's application_name becomes `weft lease NAME` (PostgreSQL
   * keeps 63 bytes), so `leaseHolders` (store-postgres.ts) can say who holds which lease.
   */
  readonly holder?: string;
}

/** The application_name of a lease's session held by `holder` (PostgreSQL truncates it to 63 bytes). */
export function leaseApplicationName(holder: string | undefined): string {
  const name = holder === undefined || holder === '' ? 'weft lease' : `weft lease ${holder}`;
  let out = '';
  for (const ch of name) {
    if (Buffer.byteLength(out + ch) > 63) break;
    out += ch;
  }
  return out;
}

export interface Lease {
  readonly name: string;
  /** True until the lease is lost or released. */
  readonly held: boolean;
  /** Resolves with the reason when the lease is lost (never on release). */
  readonly lost: Promise<Error>;
  /** Calls `callback` once when the lease is lost (at once if it already is). */
  onLost(callback: (reason: Error) => void): void;
  /** Gives the lease up and closes its connection. */
  release(): Promise<void>;
}

/**
 * Tries to take the lease `name` on a new connection made from `config`: the Lease, or null when another live
 * session holds it. Rejects when the server cannot be reached.
 */
export async function acquireLease(
  config: pg.ClientConfig,
  name: string,
  options: LeaseOptions = {},
): Promise<Lease | null> {
  const heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
  const lostAfterMs = options.lostAfterMs ?? LOST_AFTER_MS;
  const serverTimeoutMs = options.serverTimeoutMs ?? SERVER_TIMEOUT_MS;
  if (!(heartbeatMs > 0 && lostAfterMs > heartbeatMs && serverTimeoutMs > lostAfterMs))
    throw new RangeError(
      `lease ${JSON.stringify(name)}: heartbeatMs (${heartbeatMs}) < lostAfterMs (${lostAfterMs}) < ` +
        `serverTimeoutMs (${serverTimeoutMs}) must hold`,
    );
  const client = new pg.Client({ ...config, keepAlive: true, keepAliveInitialDelayMillis: 1000 });
  // Until the lease exists, an error event is answered by the rejected query; without a listener it would throw.
  let early: Error | undefined;
  const onEarly = (err: Error): void => {
    early ??= err;
  };
  client.on('error', onEarly);
  // The lock's query counts as the first answered check: the server went idle after it, not before it was sent.
  let lockSentAt = 0;
  try {
    await client.connect();
    await client.query(
      `SET idle_session_timeout = ${Math.floor(serverTimeoutMs)}; SET tcp_user_timeout = ${TCP_USER_TIMEOUT_MS};
       SET application_name = ${pg.escapeLiteral(leaseApplicationName(options.holder))}`,
    );
    await client.query('INSERT INTO leases (name) VALUES ($1) ON CONFLICT (name) DO NOTHING', [name]);
    lockSentAt = Date.now();
    const { rows } = await client.query<{ held: boolean }>(
      'SELECT pg_try_advisory_lock($1, id) AS held FROM leases WHERE name = $2',
      [LEASE_LOCK_SPACE, name],
    );
    if (early !== undefined) throw early;
    if (rows[0]?.held !== true) {
      await client.end().catch(() => {});
      return null;
    }
  } catch (err) {
    await client.end().catch(() => {});
    throw err;
  }
  const lease = new HeldLease(client, name, heartbeatMs, lostAfterMs, lockSentAt);
  client.off('error', onEarly);
  return lease;
}

class HeldLease implements Lease {
  readonly lost: Promise<Error>;
  #held = true;
  #resolveLost!: (reason: Error) => void;
  #timer: NodeJS.Timeout;
  #deadline: NodeJS.Timeout | undefined;
  /** When the last check that was answered had been sent (the deadline counts from it). */
  #answeredSentAt: number;
  #checking = false;

  constructor(
    readonly client: pg.Client,
    readonly name: string,
    heartbeatMs: number,
    private readonly lostAfterMs: number,
    lockSentAt: number,
  ) {
    this.lost = new Promise<Error>((resolve) => (this.#resolveLost = resolve));
    this.#answeredSentAt = lockSentAt;
    this.#arm();
    client.on('error', (err) => this.#lose(err));
    client.on('end', () => this.#lose(new Error(`lease ${JSON.stringify(name)}: the connection was closed`)));
    this.#timer = setInterval(() => {
      if (this.#checking || !this.#held) return;
      this.#checking = true;
      const sentAt = Date.now();
      client.query('SELECT 1').then(
        () => {
          this.#checking = false;
          if (sentAt > this.#answeredSentAt) this.#answeredSentAt = sentAt;
          this.#arm();
        },
        (err: unknown) => {
          this.#checking = false;
          this.#lose(err instanceof Error ? err : new Error(String(err)));
        },
      );
    }, heartbeatMs);
  }

  /** (Re)arms the deadline: lostAfterMs after the send of the last answered check. */
  #arm(): void {
    if (!this.#held) return;
    if (this.#deadline !== undefined) clearTimeout(this.#deadline);
    const at = this.#answeredSentAt + this.lostAfterMs;
    this.#deadline = setTimeout(
      () => {
        const now = Date.now();
        // A timer that fired early (or a check answered meanwhile) re-arms instead.
        if (now < this.#answeredSentAt + this.lostAfterMs) {
          this.#arm();
          return;
        }
        this.#lose(
          new Error(
            `lease ${JSON.stringify(this.name)}: no check answered for ${now - this.#answeredSentAt} ms ` +
              `(deadline ${this.lostAfterMs} ms after the last answered one was sent)`,
          ),
        );
      },
      Math.max(0, at - Date.now()),
    );
  }

  get held(): boolean {
    return this.#held;
  }

  onLost(callback: (reason: Error) => void): void {
    void this.lost.then(callback);
  }

  async release(): Promise<void> {
    if (!this.#held) return;
    this.#held = false;
    clearInterval(this.#timer);
    clearTimeout(this.#deadline);
    try {
      await this.client.query('SELECT pg_advisory_unlock($1, id) FROM leases WHERE name = $2', [
        LEASE_LOCK_SPACE,
        this.name,
      ]);
    } catch {
      // Closing the session below frees the lock as well.
    }
    await this.client.end().catch(() => {});
  }

  #lose(reason: Error): void {
    if (!this.#held) return;
    this.#held = false;
    clearInterval(this.#timer);
    clearTimeout(this.#deadline);
    this.#resolveLost(reason);
    // A session the holder no longer trusts must not keep the lock.
    this.client.end().catch(() => {});
  }
}
