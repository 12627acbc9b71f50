/**
 * `weft server run`'s OpenVPN side: the listeners from the settings (UDP 1194 and TCP 443 by default, either
 * one off), Weft's CA and server certificate and the tls-crypt-v2 server key from the store, and members as
 * they are for WireGuard — GatewaySync installs and cuts them on this transport too.
 */
import { randomBytes } from 'node:crypto';
import type { ControlPlane } from '../control/control-plane.js';
import {
  memberForCertificate,
  memberForClientKeyMetadata,
  openVpnServerCredentials,
  type MemberLookup,
} from '../control/pki.js';
import type { Gateway } from '../gateway/gateway.js';
import { OpenVpnInterface, type Identity } from '../gateway/openvpn-interface.js';
import { OpenVpnPathKeeper, warmOpenVpnPath } from '../gateway/openvpn-warmup.js';
import { parseAddress, parsePrefix, type Address } from '../net/ip.js';
import type { DataCipher } from '../openvpn/peer-info.js';
import { openBestBind } from '../io/udp-linux.js';
import { COOKIE_SECRET_LENGTH, StatelessHandshake } from '../openvpn/stateless-handshake.js';
import { NodeTlsServerFactory } from '../openvpn/tls-engine-node.js';
import type { GatewaySync } from './gateway-sync.js';
import { onSharedStore, openVpnPushFor, OPENVPN_SHARED_PING_SECONDS } from './openvpn-push.js';

/** How soon after an OpenVPN session ends its member's status is written (sessions ending together: once). */
const REPORT_AFTER_SESSION_END_MS = 100;

function identity(lookup: MemberLookup): Identity {
  if (lookup.ok) return { ok: true, name: lookup.member.name };
  return { ok: false, reason: lookup.name ? `${lookup.refusal} (member ${lookup.name})` : lookup.refusal };
}

/** Starts the OpenVPN listeners the settings ask for; undefined when both are off. */
export async function startOpenVpn(
  cp: ControlPlane,
  sync: GatewaySync,
  gateway: Gateway,
  log: (line: string) => void,
): Promise<OpenVpnInterface | undefined> {
  const settings = cp.settings();
  const s = settings.openvpn;
  if (!s || (s.udpPort === null && s.tcpPort === null)) return undefined;
  const credentials = openVpnServerCredentials(cp.store);
  const tls = new NodeTlsServerFactory({
    cert: credentials.certificate,
    key: credentials.privateKey,
    ca: credentials.ca,
  });
  const handshake = new StatelessHandshake(
    { kind: 'tls-crypt-v2', serverKey: credentials.tlsCryptV2ServerKey },
    new Uint8Array(randomBytes(COOKIE_SECRET_LENGTH)),
  );
  const udp = s.udpPort !== null ? await openBestBind(s.udpPort) : undefined;
  // A session that ends (explicit-exit-notify, a disable) shows as offline now, not at the next 5 s report:
  // one report shortly after, however many sessions end meanwhile.
  let reportSoon: NodeJS.Timeout | undefined;
  const sessionEnded = (): void => {
    if (reportSoon !== undefined) return;
    reportSoon = setTimeout(() => {
      reportSoon = undefined;
      try {
        sync.report();
      } catch (e) {
        log(`status report: ${(e as Error).message}`);
      }
    }, REPORT_AFTER_SESSION_END_MS);
    reportSoon.unref();
  };
  // The packet path is warmed at start, and once more as soon as the first client has connected
  // (openvpn-warmup.ts says why): set below, once the interface exists.
  let warmAfterFirstClient: ((cipher: DataCipher) => void) | undefined;
  let keeper: OpenVpnPathKeeper | undefined;
  const sessionConnected = (_member: string, cipher: DataCipher): void => {
    const warm = warmAfterFirstClient;
    warmAfterFirstClient = undefined;
    warm?.(cipher);
    keeper?.follow(cipher);
  };
  const make = (tcpPort: number | null): OpenVpnInterface =>
    new OpenVpnInterface({
      ...(udp ? { udp } : {}),
      ...(tcpPort !== null ? { tcp: { port: tcpPort } } : {}),
      handshake,
      // The clients are told to restart after 5 s of silence on a shared store (openvpn-push.ts): ping sooner.
      ...(onSharedStore(cp) ? { pingIntervalMs: OPENVPN_SHARED_PING_SECONDS * 1000 } : {}),
      tls: tls.create,
      ciphers: s.dataCiphers,
      ...(s.renegSec > 0 ? { renegotiateAfterMs: s.renegSec * 1000 } : {}),
      router: gateway.router,
      deliver: gateway.deliver,
      admit: sync.admitMember,
      identifyKey: (metadata) => identity(memberForClientKeyMetadata(cp.store, metadata)),
      identifyCertificate: (der) => identity(memberForCertificate(cp.store, der)),
      pushFor: (member) => openVpnPushFor(cp, member.record),
      log,
      onSessionEnded: sessionEnded,
      onSessionConnected: sessionConnected,
    });
  let ovpn: OpenVpnInterface;
  try {
    try {
      ovpn = make(s.tcpPort);
    } catch (e) {
      // The TCP port is taken (a web server on 443, say): OpenVPN over UDP still serves.
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || s.tcpPort === null || !udp) throw e;
      log(
        `OpenVPN: TCP port ${s.tcpPort} is in use, so OpenVPN over TCP is off (choose another port in the settings)`,
      );
      ovpn = make(null);
    }
  } catch (e) {
    await udp?.close();
    throw e;
  }
  sync.attach(ovpn);
  const live = ovpn;
  // The packet path optimised before the first client, not after thousands of its packets.
  // Members' addresses, and those warm-up sessions hold (the keeper's and a warm-up's must differ).
  const takenAddresses = (): Address[] => {
    const taken: Address[] = live.warmAddresses();
    for (const m of cp.store.allMembers()) {
      const a = parseAddress(m.ip);
      if (a.ok) taken.push(a.value);
    }
    return taken;
  };
  const subnet = parsePrefix(settings.subnet);
  const gatewayIp = parseAddress(cp.gatewayAddresses().ip);
  const warm = async (cipher: DataCipher, again: boolean): Promise<void> => {
    if (!subnet.ok || !gatewayIp.ok) return;
    const result = await warmOpenVpnPath({
      openvpn: live,
      gateway: gatewayIp.value,
      subnet: subnet.value,
      taken: takenAddresses(),
      cipher,
    });
    const when = again ? ' again (first client connected)' : '';
    log(
      result.warmed
        ? `OpenVPN packet path warmed${when}: ${result.packets} echo replies in ${result.ms.toFixed(0)} ms`
        : `OpenVPN packet path not warmed${when}: ${result.reason}`,
    );
  };
  await warm(s.dataCiphers[0] ?? 'AES-256-GCM', false);
  // Between a client's sparse packets, the path is kept warm (openvpn-warmup.ts).
  if (subnet.ok && gatewayIp.ok) {
    const started = await OpenVpnPathKeeper.start({
      openvpn: live,
      gateway: gatewayIp.value,
      subnet: subnet.value,
      taken: takenAddresses,
      cipher: s.dataCiphers[0] ?? 'AES-256-GCM',
    });
    if (typeof started === 'string') log(`OpenVPN packet path keeper off: ${started}`);
    else keeper = started;
  }
  warmAfterFirstClient = (cipher) => {
    // After this turn: the session's own actions (its push, its first packets) go first.
    setImmediate(() => {
      warm(cipher, true).catch((e: Error) => log(`OpenVPN warm-up: ${e.message}`));
    });
  };
  const where = [
    ovpn.udpPort !== undefined ? `UDP port ${ovpn.udpPort}` : null,
    ovpn.tcpPort !== undefined ? `TCP port ${ovpn.tcpPort}` : null,
  ].filter((x) => x !== null);
  log(`OpenVPN listening on ${where.join(' and ')}`);
  return ovpn;
}
