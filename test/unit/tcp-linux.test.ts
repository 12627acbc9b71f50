/**
 * TCP in the poll loop (src/io/tcp-linux.ts) on loopback: connections accepted and read in the Poller, writes
 * queued under backpressure and flushed on POLLOUT, and the bounds — connection count, unread bytes per
 * connection — enforced by closing, not by buffering.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { Poller } from '../../src/io/poller.js';
import {
  TcpListener,
  type TcpCloseReason,
  type TcpConnection,
  type TcpEvents,
} from '../../src/io/tcp-linux.js';

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Resolves when `cond` holds, checking every 5 ms; fails after `ms`. */
async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function client(port: number, host = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host }, () => resolve(s));
    s.once('error', reject);
  });
}

interface Rig {
  listener: TcpListener;
  closes: { conn: TcpConnection; reason: TcpCloseReason }[];
  accepted: TcpConnection[];
}

function echoServer(
  options: { maxConnections?: number; maxQueuedBytes?: number; address?: string } = {},
): Rig {
  const closes: Rig['closes'] = [];
  const accepted: TcpConnection[] = [];
  const events: TcpEvents = {
    onAccept: (conn) => {
      accepted.push(conn);
      return true;
    },
    onData: (conn, bytes) => void conn.write(bytes),
    onClose: (conn, reason) => void closes.push({ conn, reason }),
  };
  const listener = TcpListener.listen({ port: 0, poller: new Poller(), ...options }, events);
  return { listener, closes, accepted };
}

describe('TcpListener (loopback)', () => {
  it('echoes 8 MiB intact through queued writes, over IPv4 and IPv6', async () => {
    const rig = echoServer({ address: '::' });
    try {
      for (const host of ['127.0.0.1', '::1']) {
        const s = await client(rig.listener.port, host);
        const data = new Uint8Array(randomBytes(8 * 1024 * 1024));
        const got: Buffer[] = [];
        let received = 0;
        s.on('data', (b: Buffer) => {
          got.push(b);
          received += b.length;
        });
        s.write(data);
        await until(() => received >= data.length, 20_000, 'the echo');
        assert.equal(sha256(Buffer.concat(got)), sha256(data));
        const conn = rig.accepted.at(-1)!;
        assert.equal(conn.remote.address, host);
        assert.equal(conn.remote.port, s.localPort);
        assert.equal(conn.counters.rxBytes, data.length);
        assert.equal(conn.counters.txBytes, data.length);
        s.end();
        await until(() => rig.closes.some((c) => c.conn === conn), 5000, 'the close');
        assert.equal(rig.closes.find((c) => c.conn === conn)?.reason, 'peer-closed');
        s.destroy();
      }
    } finally {
      rig.listener.close();
    }
  });

  it('closes a connection whose peer leaves more than the limit unread', async () => {
    const rig = echoServer({ maxQueuedBytes: 256 * 1024 });
    try {
      const s = await client(rig.listener.port);
      s.pause(); // never reads: the echo backs up in the kernel, then in the queue
      const chunk = new Uint8Array(64 * 1024);
      const closed = (): boolean => rig.closes.length > 0;
      for (let i = 0; i < 400 && !closed(); i++) {
        s.write(chunk);
        await new Promise((r) => setTimeout(r, 2));
      }
      await until(closed, 10_000, 'queue-full');
      assert.equal(rig.closes[0]!.reason, 'queue-full');
      assert.equal(rig.listener.connectionCount, 0);
      s.destroy();
    } finally {
      rig.listener.close();
    }
  });

  it('keeps at most maxConnections; the rest are closed on arrival', async () => {
    const rig = echoServer({ maxConnections: 2 });
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) sockets.push(await client(rig.listener.port));
      await until(() => rig.listener.connectionCount === 2, 5000, 'two connections');
      const third = await client(rig.listener.port);
      sockets.push(third);
      const ended = new Promise<void>((resolve) => third.once('close', () => resolve()));
      third.on('error', () => {});
      await ended;
      assert.equal(rig.listener.counters.overLimit, 1);
      assert.equal(rig.listener.connectionCount, 2);
      // The two kept still work.
      let echoed = '';
      sockets[0]!.on('data', (b: Buffer) => void (echoed += b.toString()));
      sockets[0]!.write('still here');
      await until(() => echoed === 'still here', 5000, 'the echo');
    } finally {
      for (const s of sockets) s.destroy();
      rig.listener.close();
    }
  });

  it('a connection refused by onAccept is closed; close() ends every connection', async () => {
    const closes: TcpCloseReason[] = [];
    let accept = false;
    const listener = TcpListener.listen(
      { port: 0, address: '127.0.0.1', poller: new Poller() },
      {
        onAccept: () => accept,
        onData: () => {},
        onClose: (_c, reason) => void closes.push(reason),
      },
    );
    const sockets: Socket[] = [];
    try {
      const refused = await client(listener.port);
      sockets.push(refused);
      refused.on('error', () => {});
      await new Promise<void>((resolve) => refused.once('close', () => resolve()));
      assert.equal(listener.counters.refused, 1);
      accept = true;
      const kept = await client(listener.port);
      sockets.push(kept);
      kept.on('error', () => {});
      await until(() => listener.connectionCount === 1, 5000, 'the connection');
      const ended = new Promise<void>((resolve) => kept.once('close', () => resolve()));
      listener.close();
      await ended;
      assert.deepEqual(closes, ['closed-locally', 'closed-locally']);
      listener.close(); // again: nothing happens
    } finally {
      for (const s of sockets) s.destroy();
      listener.close();
    }
  });

  it('reports a port in use with the syscall and the port', () => {
    const first = TcpListener.listen(
      { port: 0, address: '127.0.0.1', poller: new Poller() },
      {
        onAccept: () => true,
        onData: () => {},
        onClose: () => {},
      },
    );
    try {
      assert.throws(
        () =>
          TcpListener.listen(
            { port: first.port, address: '127.0.0.1', poller: new Poller() },
            {
              onAccept: () => true,
              onData: () => {},
              onClose: () => {},
            },
          ),
        new RegExp(`TCP listener on port ${first.port}: bind: EADDRINUSE`),
      );
    } finally {
      first.close();
    }
  });
});
