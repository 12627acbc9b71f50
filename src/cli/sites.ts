/**
 * `weft site add|set|remove|list|show|up|down`: IPsec sites (site-to-site tunnels to other firewalls), through
 * the control plane like every other command. `site show NAME --remote-config swanctl|aws|pfsense` prints
 * the settings for the firewall at the other end.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { UserError } from '../control/errors.js';
import { splitPem, type SiteInput, type SiteView } from '../control/sites.js';
import { DEFAULT_DATA_DIR } from '../server/data-dir.js';
import { tightenStdout } from './keys.js';
import { actor, ago, bytes, collect, print, table, withControlPlane, type DataOption } from './people.js';

interface SiteFlags extends DataOption {
  remote?: string;
  localSubnet?: string[];
  remoteSubnet?: string[];
  psk?: string;
  pskFile?: string;
  auth?: string;
  cert?: string;
  key?: string;
  ca?: string[];
  localId?: string;
  remoteId?: string;
  mode?: string;
  ikeProposal?: string[];
  espProposal?: string[];
  ikeLifetime?: string;
  childLifetime?: string;
  dpd?: string;
  dpdAction?: string;
  start?: string;
  group?: string[];
  groups?: boolean;
  /** false: --no-multicast. */
  multicast?: string[] | false;
  allowLegacyGroups?: boolean;
  forceShortPsk?: boolean;
  json?: boolean;
  childSa?: string;
  ikeHardLifetime?: string;
  childHardLifetime?: string;
  fragmentSize?: string;
  childRekeyBytes?: string;
  childLifeBytes?: string;
  gateway?: string;
}

/** "1048576", "512M", "4G", "1T" (powers of 1024) -> bytes; anything else is passed on to be refused. */
export function byteCount(text: string | undefined): number | string | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d{1,16})([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (!m) return text;
  const unit = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[
    (m[2] ?? '').toLowerCase() as '' | 'k'
  ];
  return Number(m[1]) * unit;
}

/** `--child-sa per-pair|shared` -> childPerSubnetPair; anything else is passed on to be refused. */
function childSa(text: string | undefined): boolean | string | undefined {
  if (text === undefined) return undefined;
  return text === 'per-pair' ? true : text === 'shared' ? false : text;
}

/** "3600", "90s", "60m", "8h", "1d" -> seconds; anything else is passed on for the control plane to refuse. */
export function seconds(text: string | undefined): number | string | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d{1,9})([smhd]?)$/.exec(text.trim());
  if (!m) return text;
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

function readPsk(opts: SiteFlags): string | undefined {
  if (opts.psk !== undefined && opts.pskFile !== undefined)
    throw new UserError('weft: --psk or --psk-file, not both');
  if (opts.pskFile === undefined) return opts.psk;
  let text: string;
  try {
    text = readFileSync(opts.pskFile === '-' ? 0 : opts.pskFile, 'utf8');
  } catch (e) {
    throw new UserError(`weft: cannot read ${opts.pskFile}: ${(e as Error).message}`);
  }
  return text.replace(/\r?\n$/, '');
}

/** A PEM file's text (the operator's own certificate, key or CA; Weft does not issue site certificates). */
function readPem(flag: string, file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError(`weft: ${flag}: cannot read ${file}: ${(e as Error).message}`);
  }
}

/** The fields the flags give (an absent flag is undefined: `site set` leaves that field alone). */
function input(opts: SiteFlags): Omit<SiteInput, 'name'> {
  const id = (text: string | undefined) => (text === undefined ? undefined : text === '' ? null : text);
  return {
    remoteAddress: opts.remote,
    localSubnets: opts.localSubnet,
    remoteSubnets: opts.remoteSubnet,
    psk: readPsk(opts),
    auth: opts.auth,
    certificate: readPem('--cert', opts.cert),
    privateKey: readPem('--key', opts.key),
    caCertificates: opts.ca === undefined ? undefined : opts.ca.map((f) => readPem('--ca', f)).join('\n'),
    localId: id(opts.localId),
    remoteId: id(opts.remoteId),
    mode: opts.mode,
    ikeProposals: opts.ikeProposal,
    espProposals: opts.espProposal,
    ikeLifetimeSec: seconds(opts.ikeLifetime),
    childLifetimeSec: seconds(opts.childLifetime),
    dpdIntervalSec: seconds(opts.dpd),
    dpdAction: opts.dpdAction,
    startAction: opts.start,
    groups: opts.groups === false ? [] : opts.group,
    multicast: opts.multicast === false ? [] : opts.multicast,
    allowLegacyGroups: opts.allowLegacyGroups,
    forceShortPsk: opts.forceShortPsk,
    childPerSubnetPair: childSa(opts.childSa),
    ikeHardLifetimeSec: opts.ikeHardLifetime === 'default' ? null : seconds(opts.ikeHardLifetime),
    childHardLifetimeSec: opts.childHardLifetime === 'default' ? null : seconds(opts.childHardLifetime),
    fragmentSize: opts.fragmentSize,
    childRekeyBytes: byteCount(opts.childRekeyBytes),
    childLifeBytes: byteCount(opts.childLifeBytes),
    gateway: opts.gateway,
  };
}

function flags(c: Command): Command {
  return c
    .option('--remote <addr>', "the peer's outer address, or %any (it only answers)")
    .option('--local-subnet <prefix>', 'a prefix on our side (repeatable)', collect)
    .option('--remote-subnet <prefix>', 'a prefix behind the peer (repeatable)', collect)
    .option('--psk <key>', 'the pre-shared key (visible in the process list: prefer --psk-file)')
    .option('--psk-file <file>', 'read the pre-shared key from FILE ("-" for standard input)')
    .option('--auth <kind>', 'psk or cert (--cert alone implies cert)')
    .option('--cert <file>', 'our certificate (PEM), followed by intermediate CAs to send with it')
    .option('--key <file>', 'the private key of --cert (PEM; stored as a secret)')
    .option('--ca <file>', "a CA (PEM) the peer's certificate must chain to (repeatable)", collect)
    .option(
      '--local-id <id>',
      'our IKE identity: an address, fqdn:NAME, email:ADDR or keyid:HEX ("" for our address)',
    )
    .option('--remote-id <id>', 'the identity the peer must present ("" for its address)')
    .option('--mode <mode>', 'tunnel or transport')
    .option(
      '--ike-proposal <proposal>',
      'IKE proposal, e.g. aes256gcm16-prfsha256-x25519 (repeatable, in order)',
      collect,
    )
    .option('--esp-proposal <proposal>', 'ESP proposal, e.g. aes256gcm16 (repeatable, in order)', collect)
    .option('--ike-lifetime <time>', 'IKE SA rekey time: seconds, or 30m, 4h, 1d')
    .option('--child-lifetime <time>', 'CHILD SA rekey time: seconds, or 30m, 1h')
    .option('--dpd <time>', 'liveness check interval (0 turns it off)')
    .option('--dpd-action <action>', 'when the peer stops answering: restart, clear or hold')
    .option('--start <action>', 'initiate, wait or on-traffic')
    .option('--group <group>', 'policy group the site belongs to (repeatable)', collect)
    .option(
      '--multicast <range>',
      'a multicast group range the site sends and receives, e.g. 239.0.0.0/8 (repeatable; docs/multicast.md)',
      collect,
    )
    .option('--allow-legacy-groups', 'allow DH groups 2 and 5 (modp1024, modp1536)')
    .option('--force-short-psk', 'accept a pre-shared key under 20 characters')
    .option('--child-sa <how>', 'as initiator: shared (one CHILD SA for all subnets) or per-pair')
    .option(
      '--ike-hard-lifetime <time>',
      'delete the IKE SA after this even if its rekey failed (or "default")',
    )
    .option(
      '--child-hard-lifetime <time>',
      'the same for each CHILD SA (or "default": 110% of the rekey time)',
    )
    .option('--fragment-size <bytes>', 'largest datagram of one IKE fragment, 576 to 9000 (default 1280)')
    .option('--child-rekey-bytes <size>', 'rekey a CHILD SA after this many bytes, e.g. 4G (0: no limit)')
    .option('--child-life-bytes <size>', 'delete a CHILD SA after this many bytes (0: no limit)')
    .option(
      '--gateway <name>',
      'the registered gateway that runs IKE for the site (the others route its subnets there; "" for every one)',
    )
    .option('--json', 'print JSON');
}

function state(s: SiteView): string {
  if (!s.enabled) return 'disabled';
  return s.status?.state ?? 'no status';
}

/** "CN=gw (until 2027-01-01)" for each certificate in a PEM bundle. */
function certSummary(pem: string | null): string {
  if (pem === null) return '-';
  return splitPem(pem)
    .map((c) => {
      try {
        const x = new X509Certificate(c);
        return `${x.subject.replace(/\n/g, ', ')} (until ${new Date(x.validTo).toISOString().slice(0, 10)})`;
      } catch {
        return '(unreadable certificate)';
      }
    })
    .join(' + ');
}

function siteDetail(s: SiteView, psk: string | undefined): string {
  const lines = [
    `site:            ${s.name} (${s.enabled ? 'enabled' : 'disabled'})`,
    `remote:          ${s.remoteAddress ?? '%any'}`,
    `local id:        ${s.localId ?? '(our address)'}`,
    `remote id:       ${s.remoteId ?? '(its address)'}`,
    `authentication:  ${s.auth === 'cert' ? `certificate ${certSummary(s.certificate)}; trusts ${certSummary(s.caCertificates)}` : 'pre-shared key'}`,
    ...(psk === undefined ? [] : [`pre-shared key:  ${psk}`]),
    `local subnets:   ${s.localSubnets.join(', ')}`,
    `remote subnets:  ${s.remoteSubnets.join(', ')}`,
    `mode:            ${s.mode}`,
    `ike proposals:   ${s.ikeProposals.join(', ')}`,
    `esp proposals:   ${s.espProposals.join(', ')}`,
    `legacy groups:   ${s.allowLegacyGroups ? 'allowed' : 'no'}`,
    `lifetimes:       IKE ${s.ikeLifetimeSec}s, CHILD ${s.childLifetimeSec}s` +
      `; hard IKE ${s.ikeHardLifetimeSec === null ? '110%' : `${s.ikeHardLifetimeSec}s`}, CHILD ${s.childHardLifetimeSec === null ? '110%' : `${s.childHardLifetimeSec}s`}`,
    `child bytes:     ${s.childRekeyBytes === 0 && s.childLifeBytes === 0 ? 'no limit' : `rekey after ${s.childRekeyBytes === 0 ? '-' : bytes(s.childRekeyBytes)}, delete after ${s.childLifeBytes === 0 ? '-' : bytes(s.childLifeBytes)}`}`,
    `child SAs:       ${s.childPerSubnetPair ? 'one per subnet pair' : 'one for all subnets'}`,
    `ike fragments:   up to ${s.fragmentSize} bytes`,
    `dpd:             ${s.dpdIntervalSec === 0 ? 'off' : `every ${s.dpdIntervalSec}s, then ${s.dpdAction}`}`,
    `start:           ${s.startAction}`,
    `groups:          ${s.groups.join(', ') || '-'}`,
    `multicast:       ${s.multicast.join(', ') || '-'}`,
    `gateway:         ${s.gateway ?? '(every gateway)'}`,
  ];
  const st = s.status;
  if (!st) {
    lines.push('status:          none reported (is `weft server run` running?)');
    return lines.join('\n');
  }
  lines.push(`status:          ${st.state} (reported ${ago(st.at)})`);
  if (st.ike) {
    const i = st.ike;
    lines.push(
      `IKE SA:          ${i.proposal}, ${i.initiator ? 'we initiated' : 'peer initiated'}, peer ${i.peerId} at ${i.remote}` +
        `${i.encapsulated ? ' (UDP-encapsulated)' : ''}`,
      `                 SPIs ${i.spiI}/${i.spiR}, up since ${i.establishedAt}, last rekey ${i.rekeyedAt ?? 'never'}`,
    );
  } else lines.push('IKE SA:          none');
  for (const c of st.children) {
    const drops = Object.entries(c.drops)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
    lines.push(
      `CHILD SA:        ${c.proposal} ${c.mode} over ${c.carrier === 'udp' ? 'UDP 4500' : 'ESP'}, SPIs in ${c.inboundSpi} out ${c.outboundSpi}`,
      `                 ${c.localSubnets.join(', ')} <-> ${c.remoteSubnets.join(', ')}`,
      `                 in ${bytes(c.bytesIn)} (${c.packetsIn} packets), out ${bytes(c.bytesOut)} (${c.packetsOut} packets)`,
      `                 up since ${c.establishedAt}, last rekey ${c.rekeyedAt ?? 'never'}${drops ? `, drops: ${drops}` : ''}`,
    );
  }
  lines.push(`last error:      ${st.lastError ? `${st.lastError.message} (${st.lastError.at})` : 'none'}`);
  return lines.join('\n');
}

export function registerSiteCommands(program: Command): void {
  const data = (c: Command): Command =>
    c.option('-d, --data <dir>', `data directory (default: $WEFT_DATA or ${DEFAULT_DATA_DIR})`);
  const site = program
    .command('site')
    .description('IPsec sites: tunnels to the firewalls of other sites and clouds (docs/sites.md)');

  data(
    flags(site.command('add').argument('<name>').description('add a site (a key is generated unless given)')),
  ).action((name: string, opts: SiteFlags) =>
    withControlPlane(opts, (cp) => {
      const { site: s, generatedPsk } = cp.addSite(actor(), { name, ...input(opts) });
      if (opts.json) {
        print({ ...s, ...(generatedPsk === null ? {} : { psk: generatedPsk }) }, true, () => '');
        return;
      }
      console.log(
        `added site ${s.name}: ${s.localSubnets.join(', ')} <-> ${s.remoteSubnets.join(', ')} via ${s.remoteAddress ?? '%any'}`,
      );
      if (generatedPsk !== null) {
        tightenStdout();
        console.log(
          `pre-shared key (give it to the other end; shown again only with --show-psk): ${generatedPsk}`,
        );
      }
    }),
  );
  data(
    flags(
      site.command('set').argument('<name>').description("change a site's settings (only the flags given)"),
    )
      .option('--no-groups', 'take the site out of every group')
      .option('--no-multicast', 'the site is no multicast port any more')
      .option('--no-allow-legacy-groups', 'stop allowing DH groups 2 and 5')
      .option('--no-force-short-psk', 'require a key of at least 20 characters again'),
  ).action((name: string, opts: SiteFlags) =>
    withControlPlane(opts, (cp) => {
      const s = cp.updateSite(actor(), name, input(opts));
      print(s, opts.json, () => siteDetail(s, undefined));
    }),
  );
  data(site.command('remove').argument('<name>').description('remove a site; its tunnel goes down')).action(
    (name: string, opts: DataOption) =>
      withControlPlane(opts, (cp) => {
        cp.removeSite(actor(), name);
        console.log(`removed site ${name}`);
      }),
  );
  for (const [verb, enabled] of [
    ['up', true],
    ['down', false],
  ] as const) {
    data(
      site
        .command(verb)
        .argument('<name>')
        .description(
          enabled ? 'enable a site: the gateway starts it' : 'disable a site: its SAs are deleted',
        ),
    ).action((name: string, opts: DataOption) =>
      withControlPlane(opts, (cp) => {
        const s = cp.setSiteEnabled(actor(), name, enabled);
        console.log(`site ${s.name} is ${s.enabled ? 'enabled' : 'disabled'}`);
      }),
    );
  }
  data(
    site
      .command('list')
      .description('sites with their state as last reported')
      .option('--json', 'print JSON'),
  ).action((opts: DataOption & { json?: boolean }) =>
    withControlPlane(opts, (cp) => {
      const sites = cp.listSites();
      print(sites, opts.json, () =>
        table(
          ['NAME', 'REMOTE', 'LOCAL', 'REMOTE SUBNETS', 'STATE'],
          sites.map((s) => [
            s.name,
            s.remoteAddress ?? '%any',
            s.localSubnets.join(','),
            s.remoteSubnets.join(','),
            state(s),
          ]),
        ),
      );
    }),
  );
  data(
    site
      .command('show')
      .argument('<name>')
      .description("a site's settings and its IKE and CHILD SAs as last reported")
      .option('--json', 'print JSON')
      .option('--show-psk', 'include the pre-shared key')
      .option('--remote-config <format>', 'print the settings for the other end: swanctl, aws or pfsense'),
  ).action((name: string, opts: DataOption & { json?: boolean; showPsk?: boolean; remoteConfig?: string }) =>
    withControlPlane(opts, (cp) => {
      if (opts.remoteConfig !== undefined) {
        // It holds the pre-shared key.
        tightenStdout();
        process.stdout.write(cp.siteRemoteConfig(name, opts.remoteConfig));
        return;
      }
      const s = cp.getSite(name);
      const psk = opts.showPsk ? cp.sitePsk(name) : undefined;
      if (psk !== undefined) tightenStdout();
      print(psk === undefined ? s : { ...s, psk }, opts.json, () => siteDetail(s, psk));
    }),
  );
}
