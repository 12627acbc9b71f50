/**
 * The packet-path warm-up at start (src/gateway/warmup.ts): it runs over loopback and the interface's own
 * TUN device only, leaves no peer behind, and is skipped where the interface has no spare address.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { capture, DEFAULT_TOOLS, interopSkip, Lab } from './harness.js';
import {
  generateKeyPair,
  linkedPair,
  readCapture,
  startWeft,
  stopWeftInterfaces,
  tunnelAddress,
} from './gateway-lab.js';

describe('packet path warm-up at `weft up`', { skip: interopSkip(DEFAULT_TOOLS) }, () => {
  let lab: Lab;

  before(async () => {
    lab = await Lab.create('warmup', { tools: DEFAULT_TOOLS });
  });

  after(async () => {
    if (!lab) return;
    try {
      await stopWeftInterfaces(lab);
    } finally {
      await lab.cleanup();
    }
  });

  it('warms through loopback and the TUN device: nothing on the wire, no peer left behind', async (t) => {
    const pair = await linkedPair(lab, 'wua', 'wub', 11);
    const wire = await capture(pair.a, pair.aIf);
    const peer = generateKeyPair();
    const own = tunnelAddress(11, 1);
    const w = await startWeft(pair.a, lab.ifname('wu'), {
      privateKey: generateKeyPair().privateKey,
      listenPort: 51820,
      addresses: [`${own.v4}/24`],
      peers: [
        {
          publicKey: peer.publicKey,
          endpoint: `${pair.b4}:51820`,
          allowedIps: [tunnelAddress(11, 2).v4 + '/32'],
        },
      ],
    });
    await w.process!.waitForOutput(/packet path (not )?warmed/, 10_000);
    const log = w.process!.describe();
    const m = /packet path warmed: (\d+) echo replies in (\d+) ms/.exec(log);
    assert.ok(m, `no warm-up line in: ${log}`);
    t.diagnostic(`warm-up: ${m[1]} echo replies in ${m[2]} ms`);
    assert.ok(Number(m[1]) >= 1000, log);
    const dump = await w.dump();
    assert.deepEqual(
      dump.peers.map((p) => p.publicKey),
      [peer.publicKey],
    );
    // Nothing was sent toward the peer: no traffic asked for it, and the warm-up never leaves the host.
    await wire.stop();
    // Everything but the kernel's own ICMPv6 (neighbour discovery, MLD) on the new link.
    const packets = (await readCapture(wire.file)).filter((p) => p.protocol !== 58);
    assert.deepEqual(packets, [], JSON.stringify(packets));
    await w.stop();
  });

  it('is skipped when the interface has no spare address in its subnet (a /32)', async () => {
    const ns = await lab.netns('wuc');
    const w = await startWeft(ns, lab.ifname('wv'), {
      privateKey: generateKeyPair().privateKey,
      listenPort: 51821,
      addresses: [`${tunnelAddress(12, 1).v4}/32`],
    });
    await w.process!.waitForOutput(/packet path not warmed: no free address/, 10_000);
    assert.equal((await w.dump()).peers.length, 0);
    await w.stop();
  });
});
