/**
 * The OpenVPN shell's warm-up session (openvpn-warmup.ts drives it at start and again after the first client
 * connected): its traffic goes the live path both ways, and at its end its own packets and drops are taken off
 * the shell's counters while what strangers and clients did meanwhile stays counted.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { MemoryNetwork } from '../../src/io/memory.js';
import { echo } from '../../src/net/icmp.js';
import { readIpHeader } from '../../src/net/ip-packet.js';
import { DATA_KEY_BLOCK_LENGTH } from '../../src/openvpn/data-channel-keys.js';
import { DataChannel, DATA_V2_HEADER } from '../../src/openvpn/data-channel.js';
import { warmShell } from '../support/openvpn-shell.js';

const GATEWAY = new Uint8Array([10, 66, 0, 1]);
const WARM = new Uint8Array([10, 66, 0, 254]);

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function linkLocalPacket(): Uint8Array {
  const from = new Uint8Array(16);
  from.set([0xfe, 0x80]);
  from[15] = 1;
  const to = new Uint8Array(16);
  to.set([0xff, 0x02]);
  to[15] = 2;
  return echo('request', from, to, 7, 1, new Uint8Array(8));
}

describe('OpenVPN warm-up session', () => {
  it('carries packets both ways; at its end only its own are taken off the counters', async () => {
    const net = new MemoryNetwork();
    const serverBind = net.bind('10.0.0.1', 1194);
    const clientBind = net.bind('10.0.0.2', 40000);
    const strangerBind = net.bind('10.0.0.3', 5000);
    const { ovpn, router, delivered } = warmShell(serverBind);
    try {
      const block = new Uint8Array(randomBytes(DATA_KEY_BLOCK_LENGTH));
      const session = ovpn.openWarmSession(
        { address: '10.0.0.2', port: 40000 },
        { family: 4, bytes: WARM, bits: 32 },
        block,
        'AES-256-GCM',
      );
      assert.ok(session);
      assert.deepEqual(ovpn.describe(), [], 'a warm-up session never shows in status');
      const client = new DataChannel({ role: 'client', peerId: session.peerId });
      client.installKey(0, block, 'AES-256-GCM');
      const replies: string[] = [];
      const opened = new Uint8Array(2048);
      clientBind.start((datagrams) => {
        for (const d of datagrams) replies.push(String(client.open(d.data, opened, 0)));
      });
      const sealed = (payload: Uint8Array): Uint8Array => {
        const out = new Uint8Array(DATA_V2_HEADER + payload.length);
        const n = client.seal(payload, out);
        assert.equal(typeof n, 'number');
        return out;
      };
      const to = { address: '10.0.0.1', port: 1194 };
      const request = echo('request', WARM, GATEWAY, 7, 1, new Uint8Array(56));
      clientBind.send([
        { data: sealed(request), endpoint: to },
        { data: sealed(linkLocalPacket()), endpoint: to },
      ]);
      // A stranger's junk meanwhile: counted, and still counted after the warm-up.
      strangerBind.send([{ data: new Uint8Array([0x38, 1, 2, 3]), endpoint: to }]);
      await settle();
      assert.equal(delivered.length, 1, 'the echo request reached the TUN side');
      assert.deepEqual(delivered[0], request);
      // The kernel's answer, routed to the session and sealed back to the client.
      const reply = echo('reply', GATEWAY, WARM, 7, 1, new Uint8Array(56));
      assert.ok(readIpHeader(reply));
      assert.equal(router.route(reply, 0), true);
      router.flush();
      await settle();
      assert.deepEqual(replies, ['ip']);
      assert.equal(ovpn.drops.get('spoofed-source'), 1, 'the link-local packet went the drop path');

      ovpn.closeWarmSession(session);
      const c = ovpn.counters;
      assert.equal(c.datagramsIn, 1, "the stranger's datagram stays counted");
      assert.deepEqual([c.packetsIn, c.packetsOut, c.datagramsOut, c.sessionsEnded], [0, 0, 0, 0]);
      assert.equal(ovpn.drops.has('spoofed-source'), false);
      assert.equal(
        [...ovpn.drops.values()].reduce((a, b) => a + b, 0),
        1,
        "the stranger's drop stays",
      );
      assert.equal(router.route(reply, 0), false, 'its route is gone');
    } finally {
      await ovpn.close();
    }
    assert.equal(
      ovpn.openWarmSession(
        { address: '10.0.0.2', port: 40000 },
        { family: 4, bytes: WARM, bits: 32 },
        new Uint8Array(DATA_KEY_BLOCK_LENGTH),
        'AES-256-GCM',
      ),
      undefined,
      'no warm-up once closing',
    );
  });
});
