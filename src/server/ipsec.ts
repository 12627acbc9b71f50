/**
 * `weft server run`'s IPsec side: the sockets (UDP 500, UDP 4500, and the raw ESP socket where the process
 * may open one) and the IPsec shell serving the configured sites through the gateway's router.
 */
import { createSocket } from 'node:dgram';

import type { Gateway } from '../gateway/gateway.js';
import { IpsecInterface, type IpsecInterfaceOptions } from '../gateway/ipsec-interface.js';
import type { Bind } from '../io/bind.js';
import { RawEspBind } from '../io/esp-raw.js';
import { openBestBind } from '../io/udp-linux.js';
import { IKE_PORT, NATT_PORT } from '../ipsec/constants.js';
import type { SiteSpec } from '../ipsec/site-spec.js';

export interface StartIpsecOptions {
  /** The policy hook for packets from sites (all are admitted without it). */
  admit?: IpsecInterfaceOptions['admit'];
  /** Ports other than 500/4500 (tests). */
  ikePort?: number;
  nattPort?: number;
  /** Do not open the raw ESP socket (every CHILD SA is then UDP-encapsulated). */
  noRawEsp?: boolean;
}

/**
 * The source address the kernel would use towards `remote`: a connected UDP socket says it without sending
 * anything.
 */
export function sourceAddressFor(remote: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = createSocket(remote.includes(':') ? 'udp6' : 'udp4');
    const done = (value: string | undefined): void => {
      try {
        s.close();
      } catch {
        // already closed
      }
      resolve(value);
    };
    s.on('error', () => done(undefined));
    s.connect(IKE_PORT, remote, () => {
      try {
        done(s.address().address);
      } catch {
        done(undefined);
      }
    });
  });
}

/** Opens the IPsec sockets and starts the sites; the caller updates them with `update(specs)`. */
export async function startIpsec(
  gateway: Gateway,
  specs: readonly SiteSpec[],
  log: (line: string) => void,
  options: StartIpsecOptions = {},
): Promise<IpsecInterface> {
  const opened: Bind[] = [];
  try {
    const ike = await openBestBind(options.ikePort ?? IKE_PORT);
    opened.push(ike);
    const natt = await openBestBind(options.nattPort ?? NATT_PORT);
    opened.push(natt);
    let raw: Bind | undefined;
    if (options.noRawEsp !== true) {
      try {
        raw = RawEspBind.open();
      } catch (e) {
        log(
          `IPsec: no raw ESP socket (${(e as Error).message}); CHILD SAs will use UDP encapsulation on port ${natt.port}`,
        );
      }
    }
    const ipsec = new IpsecInterface({
      gateway,
      ike,
      natt,
      ...(raw ? { raw } : {}),
      log,
      ...(options.admit ? { admit: options.admit } : {}),
      localAddressFor: sourceAddressFor,
    });
    log(`IPsec listening on UDP ports ${ike.port} and ${natt.port}${raw ? ' and raw ESP' : ''}`);
    ipsec.update(specs);
    return ipsec;
  } catch (e) {
    for (const b of opened) await b.close();
    throw e;
  }
}
