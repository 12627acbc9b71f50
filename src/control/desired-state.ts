/**
 * Declarative state: `weft apply -f team.yaml` makes the network match a file, `weft export` prints the
 * network in the same format (without private keys). Applying the same file twice changes nothing.
 *
 * Applying, in one transaction (a failure anywhere changes nothing):
 *   1. settings (only the keys given; the subnets only while the network has no members);
 *   2. groups that are new or whose description changed;
 *   3. routes: new ones added, absent ones removed;
 *   4. members: absent ones removed (freeing their addresses), new ones added, changed ones updated
 *      (groups, expiry, disabled, tunnel mode; a different public key rotates the member's keys);
 *   5. policies: compared by their text form; absent ones removed, new ones added;
 *   6. IPsec sites: absent ones removed, new ones added (a PSK site without `psk` gets a generated key, which
 *      `weft site show NAME --show-psk` prints), changed ones updated (a site without `psk` or `privateKey`
 *      keeps its key);
 *   7. groups absent from the file removed (nothing refers to them any more).
 * `weft export` writes a site's `psk` and a certificate site's `privateKey` only when asked
 * (`--include-secrets`); without them, applying the export keeps every site's keys as they are.
 * A certificate site's `certificate` (ours, then intermediates) and `caCertificates` are PEM text.
 * Every step goes through the control plane, so each change is validated and audited as if typed at the CLI.
 */
import { FRAGMENT_SIZE } from '../ipsec/constants.js';
import { LineCounter, parseDocument, stringify, visit } from 'yaml';
import { z } from 'zod';
import type { ControlPlane, SettingsPatch } from './control-plane.js';
import { WeftError } from './errors.js';
import { describeIssue } from './input-issues.js';
import type { Member, PolicyInput, Settings } from './model.js';
import * as v from './validate.js';

/** The `openvpn` section of the settings (validate.ts openVpnSettings checks the values). */
export const openVpnSettingsObject = z.object({
  udpPort: z.number().int().nullable().describe('UDP port of the OpenVPN listener; null: none'),
  tcpPort: z.number().int().nullable().describe('TCP port of the OpenVPN listener; null: none'),
  dataCiphers: z.array(z.string()).describe('AES-256-GCM, AES-128-GCM, CHACHA20-POLY1305, in order'),
  renegSec: z.number().int().describe('Seconds between data-channel key renegotiations; 0: never'),
  certificateDays: z.number().int().describe('Member certificate lifetime for members without an expiry'),
});

/** The multicast querier's timers (multicast-settings.ts checks the values). */
export const multicastQuerierObject = z.object({
  robustness: z.number().int().describe('Robustness variable, 1-7 (RFC 3376 §8.1)'),
  queryIntervalS: z.number().int().describe('Seconds between general queries, 1-31744'),
  queryResponseIntervalS: z
    .number()
    .describe('Max response time of general queries, s in tenths, below the interval'),
  lastMemberQueryIntervalS: z
    .number()
    .describe('Spacing of group-specific queries after a leave, s in tenths'),
});

/** One static multicast membership. */
export const multicastStaticObject = z
  .object({
    port: z.string().describe('member:NAME, site:NAME or lan'),
    group: z.string().describe('Group address, e.g. 239.1.1.1 or ff15::1'),
  })
  .strict();

/** Settings as the API shows them; a state file may give any subset. */
export const settingsObject = z.object({
  endpoint: z.string(),
  listenPort: z.number().int(),
  interfaceName: z.string(),
  subnet: z.string(),
  subnet6: z.string().nullable(),
  dns: z.array(z.string()),
  natEgress: z.string().nullable(),
  defaultPolicy: z.enum(['allow', 'deny']),
  persistentKeepalive: z.number().int(),
  mtu: z.number().int(),
  apiListen: z.string(),
  openvpn: openVpnSettingsObject,
  multicast: z.boolean().optional(),
  multicastLan: z.string().nullable().optional(),
  multicastQuerier: multicastQuerierObject.optional(),
  multicastStatic: z.array(multicastStaticObject).optional(),
});

/** A state file's settings: any subset, and any subset of the openvpn section. */
const settingsSchema = settingsObject
  .extend({
    openvpn: openVpnSettingsObject.partial().strict(),
    multicastQuerier: multicastQuerierObject.partial().strict(),
  })
  .partial()
  .strict();

const groupSchema = z.union([
  z.string(),
  z.object({ name: z.string(), description: z.string().optional() }).strict(),
]);

const routeSchema = z.union([
  z.string(),
  z.object({ cidr: z.string(), description: z.string().optional(), gateway: z.string().optional() }).strict(),
]);

/**
 * `{allow: eng, to: "10.20.0.0/24:tcp/443"}` or `{deny: "*", to: any}`; a multicast receive rule has
 * `receive: true` (`{allow: eng, to: "239.1.0.0/16", receive: true}`).
 */
const policySchema = z.union([
  z.object({ allow: z.string(), to: z.string(), receive: z.boolean().optional() }).strict(),
  z.object({ deny: z.string(), to: z.string(), receive: z.boolean().optional() }).strict(),
]);

const memberSchema = z
  .object({
    name: z.string(),
    ip: z.string().optional(),
    ip6: z.string().nullable().optional(),
    publicKey: z.string().optional(),
    groups: z.array(z.string()).optional(),
    expires: z.string().nullable().optional(),
    disabled: z.boolean().optional(),
    fullTunnel: z.boolean().optional(),
  })
  .strict();

const siteSchema = z
  .object({
    name: z.string(),
    enabled: z.boolean().optional(),
    remoteAddress: z.string().nullable().optional(),
    localId: z.string().nullable().optional(),
    remoteId: z.string().nullable().optional(),
    auth: z.string().optional(),
    psk: z.string().optional(),
    forceShortPsk: z.boolean().optional(),
    certificate: z.string().optional(),
    privateKey: z.string().optional(),
    caCertificates: z.string().optional(),
    localSubnets: z.array(z.string()),
    remoteSubnets: z.array(z.string()),
    mode: z.string().optional(),
    ikeProposals: z.array(z.string()).optional(),
    espProposals: z.array(z.string()).optional(),
    allowLegacyGroups: z.boolean().optional(),
    ikeLifetimeSec: z.number().int().optional(),
    childLifetimeSec: z.number().int().optional(),
    dpdIntervalSec: z.number().int().optional(),
    dpdAction: z.string().optional(),
    startAction: z.string().optional(),
    groups: z.array(z.string()).optional(),
    multicast: z.array(z.string()).optional(),
    childPerSubnetPair: z.boolean().optional(),
    ikeHardLifetimeSec: z.number().int().nullable().optional(),
    childHardLifetimeSec: z.number().int().nullable().optional(),
    fragmentSize: z.number().int().optional(),
    childRekeyBytes: z.number().int().optional(),
    childLifeBytes: z.number().int().optional(),
    /** The registered gateway serving the site (shared store); absent: every gateway. */
    gateway: z.string().optional(),
  })
  .strict();

export const desiredStateSchema = z
  .object({
    settings: settingsSchema.optional(),
    groups: z.array(groupSchema).optional(),
    routes: z.array(routeSchema).optional(),
    policies: z.array(policySchema).optional(),
    members: z.array(memberSchema).optional(),
    sites: z.array(siteSchema).optional(),
    /** The querier's timers and the static memberships (settings multicastQuerier, multicastStatic). */
    multicast: z
      .object({
        querier: multicastQuerierObject.partial().strict().optional(),
        static: z.array(multicastStaticObject).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export type DesiredState = z.infer<typeof desiredStateSchema>;

export interface StateChange {
  readonly op: 'add' | 'update' | 'remove';
  readonly kind: 'settings' | 'group' | 'member' | 'route' | 'policy' | 'site';
  readonly target: string;
  readonly detail?: Readonly<Record<string, unknown>>;
}

/** Checks the shape of a state document (from YAML or JSON); errors name the field. */
export function parseState(value: unknown): DesiredState {
  const r = desiredStateSchema.safeParse(value ?? {});
  if (r.success) return r.data;
  const { field, message } = describeIssue(r.error.issues[0]!, value ?? {});
  const named = field || '(document)';
  throw new WeftError('WEFT_ERR_VALIDATION', `${named}: ${message}`, named);
}

/**
 * The largest state file `weft apply` and POST /apply take: 4 MiB holds tens of thousands of members (some
 * 70,000 short entries, or about 30,000 with keys and addresses). Parsing a full one took about 5 s and
 * 450 MB on a small machine; larger files are refused before they are parsed.
 */
export const STATE_FILE_LIMIT = 4 * 1024 * 1024;

/**
 * How many aliases the file's aliases may expand to, in all (the yaml package's `maxAliasCount`): enough to
 * share a list of groups between members, far too few for a "billion laughs" file.
 */
export const STATE_FILE_MAX_ALIASES = 100;

function yamlError(message: string, at?: { line: number; col: number }): WeftError {
  const where = at ? `YAML, line ${at.line}, column ${at.col}` : 'YAML';
  return new WeftError('WEFT_ERR_VALIDATION', `${where}: ${message}`, '(document)');
}

/**
 * Reads a state file's text. Every failure is a WEFT_ERR_VALIDATION naming the line and column (or
 * WEFT_ERR_PAYLOAD_TOO_LARGE over STATE_FILE_LIMIT); nothing the YAML parser throws leaks out as it is.
 */
export function parseStateYaml(text: string): DesiredState {
  if (Buffer.byteLength(text, 'utf8') > STATE_FILE_LIMIT)
    throw new WeftError(
      'WEFT_ERR_PAYLOAD_TOO_LARGE',
      `the state file is larger than ${STATE_FILE_LIMIT / (1024 * 1024)} MiB`,
    );
  const lineCounter = new LineCounter();
  let js: unknown;
  let firstAlias: { line: number; col: number } | undefined;
  const aliases = new Map<string, { line: number; col: number }>();
  try {
    const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false, lineCounter });
    const err = doc.errors[0];
    if (err) {
      // The parser's message ends with where it is, which is said here in the one form.
      const message = err.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      throw yamlError(message, lineCounter.linePos(err.pos[0]));
    }
    visit(doc, {
      Alias: (_key, node) => {
        const at = node.range ? lineCounter.linePos(node.range[0]) : undefined;
        firstAlias ??= at;
        if (at && !aliases.has(node.source)) aliases.set(node.source, at);
      },
    });
    js = doc.toJS({ maxAliasCount: STATE_FILE_MAX_ALIASES });
  } catch (e) {
    if (e instanceof WeftError) throw e;
    const message = e instanceof Error ? e.message : String(e);
    if (/Excessive alias count/.test(message))
      throw yamlError(
        `aliases expand to more than ${STATE_FILE_MAX_ALIASES} nodes; write the values out instead`,
        firstAlias,
      );
    const unresolved = /^Unresolved alias.*: (.*)$/.exec(message);
    if (unresolved)
      throw yamlError(`alias *${unresolved[1]} has no anchor before it`, aliases.get(unresolved[1]!));
    if (e instanceof RangeError) throw yamlError('nested too deeply');
    throw yamlError(`cannot be read (${message.split('\n')[0]!.slice(0, 200)})`);
  }
  return parseState(js);
}

/** Runs `fn`, prefixing any field error with `path` ("members[2]" + "groups[0]"). */
function within<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof WeftError) {
      const field = e.field ? `${path}.${e.field}` : path;
      const message = e.message.startsWith(`${e.field ?? '\0'}:`)
        ? `${path}.${e.message}`
        : `${path}: ${e.message}`;
      throw new WeftError(e.code, message, field);
    }
    throw e;
  }
}

class Rollback extends Error {}

const EXPORTED_SETTINGS = [
  'endpoint',
  'subnet',
  'subnet6',
  'dns',
  'natEgress',
  'defaultPolicy',
  'persistentKeepalive',
  'mtu',
  'openvpn',
] as const;

function policyOf(p: NonNullable<DesiredState['policies']>[number], field: string): PolicyInput {
  const action = 'allow' in p ? 'allow' : 'deny';
  const group = 'allow' in p ? p.allow : p.deny;
  const spec = v.destinationSpec(`${field}.to`, p.to);
  const direction = p.receive === true ? 'receive' : 'send';
  try {
    return v.policy(field, { action, group, ...spec, direction });
  } catch (err) {
    // The file names the destination `to`.
    if (err instanceof WeftError && err.field === `${field}.destination`)
      throw new WeftError(err.code, `${field}.to${err.message.slice(err.field.length)}`, `${field}.to`);
    throw err;
  }
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function applyState(
  cp: ControlPlane,
  actor: string,
  state: DesiredState,
  options: { dryRun?: boolean } = {},
): StateChange[] {
  const changes: StateChange[] = [];
  try {
    cp.store.transaction(() => {
      applyInTransaction(cp, actor, state, changes);
      if (changes.length > 0 && !options.dryRun)
        cp.store.appendAudit({
          at: new Date().toISOString(),
          actor,
          action: 'apply',
          target: 'state',
          detail: { changes: changes.length },
        });
      if (options.dryRun) throw new Rollback();
    });
  } catch (e) {
    if (!(e instanceof Rollback)) throw e;
  }
  return changes;
}

function applyInTransaction(
  cp: ControlPlane,
  actor: string,
  state: DesiredState,
  changes: StateChange[],
): void {
  // 1. settings (the multicast section is settings too)
  const m = state.multicast;
  const given =
    m === undefined
      ? state.settings
      : {
          ...state.settings,
          ...(m.querier !== undefined ? { multicastQuerier: m.querier } : {}),
          ...(m.static !== undefined ? { multicastStatic: m.static } : {}),
        };
  if (given) {
    const s = given;
    const current = cp.settings();
    const patch: Record<string, unknown> = {};
    for (const [k, value] of Object.entries(s)) {
      if (!same(value, current[k as keyof Settings])) patch[k] = value;
    }
    if ('subnet' in patch || 'subnet6' in patch) {
      within('settings', () =>
        cp.changeSubnets(
          actor,
          s.subnet ?? current.subnet,
          s.subnet6 === undefined ? current.subnet6 : s.subnet6,
        ),
      );
      delete patch['subnet'];
      delete patch['subnet6'];
    }
    if (Object.keys(patch).length > 0)
      within('settings', () => cp.updateSettings(actor, patch as SettingsPatch));
    const after = cp.settings();
    const changed = Object.keys(s).filter(
      (k) => !same(after[k as keyof Settings], current[k as keyof Settings]),
    );
    if (changed.length > 0)
      changes.push({
        op: 'update',
        kind: 'settings',
        target: changed.join(','),
        detail: Object.fromEntries(changed.map((k) => [k, after[k as keyof Settings]])),
      });
  }

  // 2. groups (new or changed)
  const wantedGroups = state.groups?.map((g, i) =>
    within(`groups[${i}]`, () => {
      const o = typeof g === 'string' ? { name: g } : g;
      return { name: v.name('name', o.name), description: v.text('description', o.description) };
    }),
  );
  if (wantedGroups) {
    const existing = new Map(cp.listGroups().map((g) => [g.name, g]));
    wantedGroups.forEach((g, i) =>
      within(`groups[${i}]`, () => {
        const had = existing.get(g.name);
        if (!had) {
          cp.addGroup(actor, g);
          changes.push({ op: 'add', kind: 'group', target: g.name });
        } else if (had.description !== g.description) {
          cp.updateGroup(actor, g.name, g.description);
          changes.push({ op: 'update', kind: 'group', target: g.name });
        }
      }),
    );
  }

  // 3. routes
  if (state.routes) {
    const wanted = state.routes.map((r, i) =>
      within(`routes[${i}]`, () => {
        const o = typeof r === 'string' ? { cidr: r } : r;
        const p = v.prefix('cidr', o.cidr);
        return {
          cidr: `${v.destination('cidr', o.cidr)}`,
          description: v.text('description', o.description),
          gateway: 'gateway' in o && o.gateway !== '' ? o.gateway : undefined,
          p,
        };
      }),
    );
    const existing = new Map(cp.listRoutes().map((r) => [r.cidr, r]));
    const wantedKeys = new Set(wanted.map((r) => r.cidr));
    for (const r of existing.values()) {
      if (!wantedKeys.has(r.cidr)) {
        cp.removeRoute(actor, r.cidr);
        changes.push({ op: 'remove', kind: 'route', target: r.cidr });
      }
    }
    wanted.forEach((r, i) =>
      within(`routes[${i}]`, () => {
        const had = existing.get(r.cidr);
        if (had && had.description === r.description && had.gateway === r.gateway) return;
        if (had) cp.removeRoute(actor, r.cidr);
        cp.addRoute(actor, { cidr: r.cidr, description: r.description, gateway: r.gateway });
        changes.push({ op: had ? 'update' : 'add', kind: 'route', target: r.cidr });
      }),
    );
  }

  // 4. members
  if (state.members) {
    const seen = new Set<string>();
    state.members.forEach((m, i) =>
      within(`members[${i}]`, () => {
        const name = v.name('name', m.name);
        if (seen.has(name)) throw new WeftError('WEFT_ERR_VALIDATION', `name: ${name} appears twice`, 'name');
        seen.add(name);
      }),
    );
    for (const m of cp.store.allMembers()) {
      if (!seen.has(m.name)) {
        cp.removeMember(actor, m.name);
        changes.push({ op: 'remove', kind: 'member', target: m.name });
      }
    }
    state.members.forEach((m, i) =>
      within(`members[${i}]`, () => {
        const existing = cp.store.getMember(m.name);
        if (!existing) {
          const added = cp.addMember(actor, {
            name: m.name,
            ip: m.ip,
            groups: m.groups,
            // Checked here so an error names the file's key, "expires".
            expiresAt: m.expires === undefined ? undefined : v.expiry('expires', m.expires),
            publicKey: m.publicKey,
            fullTunnel: m.fullTunnel,
            disabled: m.disabled,
          });
          if (m.ip6 !== undefined && m.ip6 !== added.ip6)
            throw new WeftError(
              'WEFT_ERR_VALIDATION',
              `ip6: would be ${added.ip6 ?? 'none'}, not ${m.ip6}`,
              'ip6',
            );
          changes.push({ op: 'add', kind: 'member', target: m.name, detail: { ip: added.ip } });
          return;
        }
        updateMember(cp, actor, existing, m, changes);
      }),
    );
  }

  // 5. policies
  if (state.policies) {
    const wanted = state.policies.map((p, i) => policyOf(p, `policies[${i}]`));
    const wantedText = new Set(wanted.map((p) => v.policyText(p)));
    const existing = cp.listPolicies();
    const existingText = new Set(existing.map((p) => v.policyText(p)));
    for (const p of existing) {
      if (!wantedText.has(v.policyText(p))) {
        cp.removePolicy(actor, p.id);
        changes.push({ op: 'remove', kind: 'policy', target: v.policyText(p) });
      }
    }
    wanted.forEach((p, i) =>
      within(`policies[${i}]`, () => {
        const text = v.policyText(p);
        if (existingText.has(text)) return;
        existingText.add(text);
        cp.addPolicy(actor, p);
        changes.push({ op: 'add', kind: 'policy', target: text });
      }),
    );
  }

  // 6. sites
  if (state.sites) applySites(cp, actor, state.sites, changes);

  // 7. groups absent from the file
  if (wantedGroups) {
    const keep = new Set(wantedGroups.map((g) => g.name));
    for (const g of cp.listGroups()) {
      if (keep.has(g.name)) continue;
      within(`groups`, () => cp.removeGroup(actor, g.name));
      changes.push({ op: 'remove', kind: 'group', target: g.name });
    }
  }
}

function applySites(
  cp: ControlPlane,
  actor: string,
  sites: NonNullable<DesiredState['sites']>,
  changes: StateChange[],
): void {
  const seen = new Set<string>();
  sites.forEach((site, i) =>
    within(`sites[${i}]`, () => {
      const name = v.name('name', site.name);
      if (seen.has(name)) throw new WeftError('WEFT_ERR_VALIDATION', `name: ${name} appears twice`, 'name');
      seen.add(name);
    }),
  );
  // Removed first, so a remote subnet can move from a removed site to a new one in the same file.
  for (const existing of cp.store.listSites()) {
    if (seen.has(existing.name)) continue;
    cp.removeSite(actor, existing.name);
    changes.push({ op: 'remove', kind: 'site', target: existing.name });
  }
  sites.forEach((site, i) =>
    within(`sites[${i}]`, () => {
      const before = cp.store.getSite(site.name);
      if (!before) {
        const added = cp.addSite(actor, site);
        changes.push({
          op: 'add',
          kind: 'site',
          target: site.name,
          ...(added.generatedPsk === null ? {} : { detail: { psk: 'generated' } }),
        });
        return;
      }
      const { name: _name, ...given } = site;
      // The file says which gateway serves the site: absent means every one (as on add).
      const fields = { ...given, gateway: given.gateway ?? null };
      cp.updateSite(actor, site.name, fields);
      const after = cp.store.getSite(site.name);
      if (after && after.updatedAt !== before.updatedAt) {
        const changed = Object.keys(fields).filter(
          (k) => !same(after[k as keyof typeof after], before[k as keyof typeof before]),
        );
        changes.push({ op: 'update', kind: 'site', target: site.name, detail: { changed } });
      }
    }),
  );
}

function updateMember(
  cp: ControlPlane,
  actor: string,
  existing: Member,
  m: NonNullable<DesiredState['members']>[number],
  changes: StateChange[],
): void {
  if (m.ip !== undefined && m.ip !== existing.ip) {
    const ip = v.address('ip', m.ip);
    if (v.destination('ip', m.ip) !== `${existing.ip}/${ip.family === 4 ? 32 : 128}`)
      throw new WeftError(
        'WEFT_ERR_VALIDATION',
        `ip: ${m.name} has ${existing.ip}; a member's address does not change (remove and add it to move it)`,
        'ip',
      );
  }
  const detail: Record<string, unknown> = {};
  if (m.publicKey !== undefined && v.publicKey('publicKey', m.publicKey) !== existing.publicKey) {
    // A state file carries WireGuard keys only: the member's OpenVPN certificate is not its business.
    cp.rotateMember(actor, existing.name, m.publicKey, ['wireguard']);
    detail['publicKey'] = m.publicKey;
  }
  const patch = {
    groups: m.groups === undefined ? undefined : [...new Set(m.groups)].sort(),
    expiresAt: m.expires === undefined ? undefined : v.expiry('expires', m.expires),
    disabled: m.disabled,
    fullTunnel: m.fullTunnel,
  };
  const differs =
    (patch.groups !== undefined && !same(patch.groups, existing.groups)) ||
    (patch.expiresAt !== undefined && patch.expiresAt !== existing.expiresAt) ||
    (patch.disabled !== undefined && patch.disabled !== existing.disabled) ||
    (patch.fullTunnel !== undefined && patch.fullTunnel !== existing.fullTunnel);
  if (differs) {
    cp.updateMember(actor, existing.name, patch);
    Object.assign(
      detail,
      Object.fromEntries(
        Object.entries(patch).filter(
          ([k, val]) => val !== undefined && !same(val, existing[k as keyof Member]),
        ),
      ),
    );
  }
  if (Object.keys(detail).length > 0)
    changes.push({ op: 'update', kind: 'member', target: existing.name, detail });
}

/**
 * The network as a state document: settings, groups, routes, policies, members (public keys only), sites
 * (their pre-shared keys only with `includeSecrets`).
 */
export function exportState(cp: ControlPlane, options: { includeSecrets?: boolean } = {}): DesiredState {
  const s = cp.settings();
  const settings = Object.fromEntries(EXPORTED_SETTINGS.map((k) => [k, s[k]])) as DesiredState['settings'];
  const multicast = {
    ...(s.multicastQuerier ? { querier: s.multicastQuerier } : {}),
    ...(s.multicastStatic && s.multicastStatic.length > 0 ? { static: [...s.multicastStatic] } : {}),
  };
  return {
    settings,
    ...(Object.keys(multicast).length > 0 ? { multicast } : {}),
    groups: cp
      .listGroups()
      .map((g) => (g.description ? { name: g.name, description: g.description } : g.name)),
    routes: cp.listRoutes().map((r) =>
      r.description || r.gateway !== undefined
        ? {
            cidr: r.cidr,
            ...(r.description ? { description: r.description } : {}),
            ...(r.gateway === undefined ? {} : { gateway: r.gateway }),
          }
        : r.cidr,
    ),
    policies: cp.listPolicies().map((p) => {
      const to = v.policyTarget(p);
      const receive = p.direction === 'receive' ? { receive: true } : {};
      return p.action === 'allow' ? { allow: p.group, to, ...receive } : { deny: p.group, to, ...receive };
    }),
    members: cp.store.allMembers().map((m) => ({
      name: m.name,
      ip: m.ip,
      publicKey: m.publicKey,
      groups: [...m.groups],
      ...(m.expiresAt ? { expires: m.expiresAt } : {}),
      ...(m.disabled ? { disabled: true } : {}),
      ...(m.fullTunnel ? { fullTunnel: true } : {}),
    })),
    sites: cp.store.listSites().map((site) => ({
      name: site.name,
      ...(site.enabled ? {} : { enabled: false }),
      remoteAddress: site.remoteAddress ?? '%any',
      ...(site.localId === null ? {} : { localId: site.localId }),
      ...(site.remoteId === null ? {} : { remoteId: site.remoteId }),
      ...(site.auth === 'cert'
        ? {
            auth: 'cert',
            certificate: site.certificate ?? '',
            ...(options.includeSecrets ? { privateKey: site.privateKey ?? '' } : {}),
            caCertificates: site.caCertificates ?? '',
          }
        : options.includeSecrets
          ? { psk: site.psk }
          : {}),
      ...(site.forceShortPsk ? { forceShortPsk: true } : {}),
      localSubnets: [...site.localSubnets],
      remoteSubnets: [...site.remoteSubnets],
      mode: site.mode,
      ikeProposals: [...site.ikeProposals],
      espProposals: [...site.espProposals],
      ...(site.allowLegacyGroups ? { allowLegacyGroups: true } : {}),
      ikeLifetimeSec: site.ikeLifetimeSec,
      childLifetimeSec: site.childLifetimeSec,
      dpdIntervalSec: site.dpdIntervalSec,
      dpdAction: site.dpdAction,
      startAction: site.startAction,
      groups: [...site.groups],
      ...(site.multicast.length > 0 ? { multicast: [...site.multicast] } : {}),
      // IKE/ESP details, when not the defaults.
      ...(site.childPerSubnetPair ? { childPerSubnetPair: true } : {}),
      ...(site.ikeHardLifetimeSec === null ? {} : { ikeHardLifetimeSec: site.ikeHardLifetimeSec }),
      ...(site.childHardLifetimeSec === null ? {} : { childHardLifetimeSec: site.childHardLifetimeSec }),
      ...(site.fragmentSize === FRAGMENT_SIZE ? {} : { fragmentSize: site.fragmentSize }),
      ...(site.childRekeyBytes === 0 ? {} : { childRekeyBytes: site.childRekeyBytes }),
      ...(site.childLifeBytes === 0 ? {} : { childLifeBytes: site.childLifeBytes }),
      ...(site.gateway === undefined ? {} : { gateway: site.gateway }),
    })),
  };
}

export function formatStateYaml(state: DesiredState): string {
  const header = '# Weft network state: `weft apply -f FILE` makes a network match it.\n';
  return header + stringify(state, { lineWidth: 0 });
}
