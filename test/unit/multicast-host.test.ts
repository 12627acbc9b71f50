/**
 * The gateway's host as a multicast receiver, on a simulated clock: it is queried through the TUN device
 * (IGMP from 0.0.0.0, never from the gateway's own address; MLD from fe80::1), and a host that answers the
 * queries keeps its membership past the group membership interval, while one that stops answering lapses.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Gateway } from '../../src/gateway/gateway.js';
import { Replicator, type MulticastPort } from '../../src/gateway/multicast.js';
import { MemoryTun } from '../../src/io/memory.js';
import { CHANGE_TO_EXCLUDE, MODE_IS_EXCLUDE } from '../../src/multicast/constants.js';
import { buildReport, parseMembership } from '../../src/multicast/messages.js';
import { groupKey } from '../../src/multicast/querier.js';
import { formatAddress, parseAddress } from '../../src/net/ip.js';

const addr = (text: string): Uint8Array => {
  const a = parseAddress(text);
  if (!a.ok) throw new Error(text);
  return a.value.bytes;
};

const GATEWAY4 = addr('10.66.0.1');
const GATEWAY_LL = addr('fe80::1');
/** The host's own addresses on its TUN device: the gateway's address, and a link-local of the kernel's. */
const HOST4 = GATEWAY4;
const HOST_LL = addr('fe80::8e3a:11ff:fe00:2');
const G4 = addr('239.5.5.5');
const G6 = addr('ff15::5:5');
// Short timers, as `weft multicast querier` sets them: group membership interval 2 × 2 s + 1 s = 5 s.
const TIMERS = { robustness: 2, queryIntervalMs: 2_000, queryResponseIntervalMs: 1_000 };
const GMI = 5_000;

function setup(): { tun: MemoryTun; replicator: Replicator; host: MulticastPort; clock: { now: number } } {
  const clock = { now: 1_000 };
  const tun = new MemoryTun('weft0');
  const gateway = new Gateway(tun, () => clock.now);
  const replicator = new Replicator({ querier: TIMERS, querySource4: GATEWAY4, querySource6: GATEWAY_LL });
  gateway.start();
  const host = gateway.attachMulticast(replicator, [4, 6], clock.now);
  return { tun, replicator, host, clock };
}

/** The queries the gateway wrote to the TUN device since `from`: family, source, destination. */
function queries(tun: MemoryTun, from: number): { family: 4 | 6; source: string; destination: string }[] {
  return tun.written.slice(from).flatMap((p) => {
    const m = parseMembership(p);
    if (!m.ok || m.message.kind !== 'query') return [];
    const family = (p[0]! >> 4) as 4 | 6;
    const [s, d] = family === 4 ? [12, 16] : [8, 24];
    const len = family === 4 ? 4 : 16;
    return [
      {
        family,
        source: formatAddress({ family, bytes: p.subarray(s, s + len) }),
        destination: formatAddress({ family, bytes: p.subarray(d, d + len) }),
      },
    ];
  });
}

const joined = (r: Replicator, family: 4 | 6, group: Uint8Array): boolean =>
  r.querier.group(groupKey(family, group))?.receivers.some((p) => p.id === 'host') ?? false;

describe('the host as a receiver (simulated clock)', () => {
  it('is queried through the TUN device: IGMP from 0.0.0.0 (not its own address), MLD from fe80::1', () => {
    const { tun, replicator, clock } = setup();
    replicator.tick(clock.now); // the startup queries go out with the next batch
    const q = queries(tun, 0);
    assert.deepEqual(q, [
      { family: 4, source: '0.0.0.0', destination: '224.0.0.1' },
      { family: 6, source: 'fe80::1', destination: 'ff02::1' },
    ]);
    assert.ok(!q.some((x) => x.source === formatAddress({ family: 4, bytes: HOST4 })));
  });

  it('answering each query keeps its membership past the group membership interval; silence lapses it', () => {
    const { tun, replicator, clock } = setup();
    // The host's kernel reports its joins (a socket joined on the TUN device): TO_EX({}) for each group.
    tun.inject(buildReport(4, HOST4, [{ type: CHANGE_TO_EXCLUDE, group: G4 }]));
    tun.inject(buildReport(6, HOST_LL, [{ type: CHANGE_TO_EXCLUDE, group: G6 }]));
    assert.ok(joined(replicator, 4, G4) && joined(replicator, 6, G6), 'joins learned from the TUN side');

    // For 4 membership intervals the host answers every general query (as its kernel does) with IS_EX({}).
    let seen = tun.written.length;
    let answered = 0;
    const end = clock.now + 4 * GMI;
    for (; clock.now <= end; clock.now += 100) {
      replicator.tick(clock.now);
      for (const q of queries(tun, seen)) {
        const source = q.family === 4 ? HOST4 : HOST_LL;
        tun.inject(
          buildReport(q.family, source, [{ type: MODE_IS_EXCLUDE, group: q.family === 4 ? G4 : G6 }]),
        );
        answered++;
      }
      seen = tun.written.length;
      assert.ok(joined(replicator, 4, G4), `still joined to 239.5.5.5 at +${clock.now} ms`);
      assert.ok(joined(replicator, 6, G6), `still joined to ff15::5:5 at +${clock.now} ms`);
    }
    assert.ok(answered >= 2 * 8, `the host was queried and answered over both families: ${answered}`);

    // It stops answering (its socket closed without a leave): the membership lapses within one interval.
    const silentFrom = clock.now;
    while (joined(replicator, 4, G4) && clock.now < silentFrom + 2 * GMI) {
      clock.now += 100;
      replicator.tick(clock.now);
    }
    assert.ok(!joined(replicator, 4, G4), 'lapsed without answers');
    assert.ok(clock.now - silentFrom <= GMI, `lapsed within the interval: ${clock.now - silentFrom} ms`);
    assert.ok(!joined(replicator, 6, G6));
  });

  it('unqueried (no family), as before, a membership lapses after the interval even while the host is joined', () => {
    const clock = { now: 0 };
    const tun = new MemoryTun('weft1');
    const gateway = new Gateway(tun, () => clock.now);
    const replicator = new Replicator({ querier: TIMERS, querySource4: GATEWAY4 });
    gateway.start();
    gateway.attachMulticast(replicator, [], clock.now);
    tun.inject(buildReport(4, HOST4, [{ type: CHANGE_TO_EXCLUDE, group: G4 }]));
    for (; clock.now <= GMI + 200; clock.now += 100) replicator.tick(clock.now);
    assert.equal(queries(tun, 0).length, 0, 'no query reached the host');
    assert.ok(!joined(replicator, 4, G4), 'without queries nothing renews the membership');
  });
});
