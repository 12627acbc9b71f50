/**
 * An OpenVPN shell (OpenVpnInterface) for tests of its warm-up sessions: on a given socket, with a router, the
 * packets it delivers to the TUN side copied into `delivered`, every member admitted, and no TLS (a warm-up
 * session has no control channel: anything that would reach it throws).
 */
import { randomBytes } from 'node:crypto';
import { OpenVpnInterface } from '../../src/gateway/openvpn-interface.js';
import { Router } from '../../src/gateway/router.js';
import type { Bind } from '../../src/io/bind.js';
import { StatelessHandshake } from '../../src/openvpn/stateless-handshake.js';
import type { TlsEngineFactory } from '../../src/openvpn/tls-engine.js';

export interface WarmShell {
  ovpn: OpenVpnInterface;
  router: Router;
  delivered: Uint8Array[];
}

export function warmShell(
  udp: Bind,
  timing: { tickMs: number; idleTimeoutMs?: number } = { tickMs: 60_000 },
): WarmShell {
  const router = new Router();
  const delivered: Uint8Array[] = [];
  const refuse = (): never => {
    throw new Error('not used by a warm-up session');
  };
  const ovpn = new OpenVpnInterface({
    udp,
    handshake: new StatelessHandshake({ kind: 'none' }, new Uint8Array(randomBytes(32))),
    tls: refuse as unknown as TlsEngineFactory,
    router,
    deliver: (packets) => void delivered.push(...packets.map((p) => p.slice())),
    admit: () => true,
    identifyCertificate: () => ({ ok: false, reason: 'not used' }),
    pushFor: refuse,
    ...timing,
  });
  return { ovpn, router, delivered };
}
