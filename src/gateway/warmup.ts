/**
 * Warms the live packet path before an interface is handed over.
 *
 * V8 compiles a function to optimised machine code only after it has run many times, and code optimised
 * for other objects than the live ones is thrown away at the first live packet. On an idle tunnel (a ping a
 * second) the packet path would stay in the interpreter for good, where one packet costs hundreds of
 * microseconds instead of a few: the idle round trip measured about 1 ms instead of about 0.5 ms.
 *
 * So, once the interface is up, a throwaway in-process peer drives the real path end to end with the live
 * objects: over loopback UDP into the live socket, through the live device and router, into the live TUN
 * device. The kernel answers each echo request to the interface's own address with a reply that is routed
 * back into the TUN device, then back through the live path to the throwaway peer:
 *
 *   1. pick an address in the interface's IPv4 subnet that no peer's AllowedIPs cover;
 *   2. add the throwaway peer with that address as its AllowedIPs, its endpoint on 127.0.0.1;
 *   3. handshake, then a few thousand echo requests (small and MTU-sized) in small batches;
 *   4. remove the peer. Nothing leaves the host; everything is bounded in count and time, and skipped
 *      when there is no such address or loopback is down.
 */
import { PrivateKey } from '../crypto/keys.js';
import type { InterfaceAddress } from '../config/wg-quick.js';
import { echo } from '../net/icmp.js';
import { hostAddress, prefixContains, sameAddress, type Prefix } from '../net/ip.js';
import { Device, type Action } from '../wireguard/device.js';
import type { Bind, Datagram } from '../io/bind.js';
import { monotonicEpochMs } from '../io/clock.js';
import { openBestBind } from '../io/udp-linux.js';

export interface WarmTarget {
  readonly device: Device;
  readonly listenPort: number;
  readonly addresses: readonly InterfaceAddress[];
  /** Brings the gateway's routes in line with the device's peers. */
  readonly syncRoutes: () => void;
}

export type WarmupResult =
  | { readonly warmed: true; readonly packets: number; readonly ms: number }
  | { readonly warmed: false; readonly reason: string };

/** The highest host address of the subnet that is neither ours nor any peer's (at most 64 tried). */
function pickAddress(own: InterfaceAddress, taken: readonly Prefix[]): Uint8Array | undefined {
  const hostBits = 32 - own.bits;
  if (hostBits < 2) return undefined;
  const last = (1n << BigInt(hostBits)) - 2n;
  for (let host = last; host >= 1n && host > last - 64n; host--) {
    const candidate = hostAddress(own.prefix, host);
    if (sameAddress(candidate, own.address)) continue;
    if (taken.some((p) => prefixContains(p, candidate))) continue;
    return candidate.bytes;
  }
  return undefined;
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export async function warmLivePath(target: WarmTarget, rounds = 600, budgetMs = 3000): Promise<WarmupResult> {
  const started = performance.now();
  const own = target.addresses.find((a) => a.address.family === 4);
  if (!own) return { warmed: false, reason: 'no IPv4 address' };
  const fake = pickAddress(own, target.device.allowedPrefixes());
  if (!fake) return { warmed: false, reason: 'no free address in the subnet' };
  const liveKey = target.device.publicKey;
  if (!liveKey) return { warmed: false, reason: 'no private key' };

  const key = PrivateKey.generate();
  const peer = new Device({ privateKey: key });
  peer.setPeer({
    publicKey: liveKey,
    endpoint: { address: '127.0.0.1', port: target.listenPort },
    allowedIps: [{ family: 4, bytes: new Uint8Array(4), bits: 0 }],
  });
  let bind: Bind | undefined;
  let replies = 0;
  const actions: Action[] = [];
  const flush = (): void => {
    const out: Datagram[] = [];
    for (const a of actions) {
      if (a.type === 'send') out.push({ data: a.data, endpoint: a.endpoint });
      else if (a.type === 'deliver') replies++;
    }
    actions.length = 0;
    if (out.length > 0) bind?.send(out);
  };
  try {
    bind = await openBestBind(0, '127.0.0.1');
    bind.start((datagrams) => {
      const now = monotonicEpochMs();
      for (const d of datagrams) peer.receive(d.data, d.endpoint, now, actions);
      flush();
    });
    target.device.setPeer({
      publicKey: key.publicKey(),
      endpoint: { address: '127.0.0.1', port: bind.port },
      allowedIps: [{ family: 4, bytes: fake, bits: 32 }],
    });
    target.syncRoutes();
    const ownBytes = own.address.bytes;
    const small = echo('request', fake, ownBytes, 0x7765, 1, new Uint8Array(56));
    const large = echo('request', fake, ownBytes, 0x7765, 2, new Uint8Array(Math.min(1392, 1280)));
    let sent = 0;
    for (let r = 0; r < rounds; r++) {
      if (performance.now() - started > budgetMs) break;
      for (const p of [small, large, small, large]) peer.send(p, monotonicEpochMs(), actions);
      sent += 4;
      flush();
      for (let i = 0; i < 200 && replies < sent; i++) {
        if (r === 0) await new Promise((resolve) => setTimeout(resolve, 1));
        else await tick();
      }
      if (replies === 0 && r > 0) break; // loopback down or the kernel does not answer: stop early
    }
    if (replies === 0) return { warmed: false, reason: 'no echo replies (is loopback up?)' };
    return { warmed: true, packets: replies, ms: performance.now() - started };
  } catch (e) {
    return { warmed: false, reason: (e as Error).message };
  } finally {
    target.device.removePeer(key.publicKey());
    target.syncRoutes();
    await bind?.close();
  }
}
