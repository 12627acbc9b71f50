/**
 * The REST API's endpoints the console uses, one typed function each (docs/console.md, src/api/routes-*.ts).
 */
import { apiUrl, requestJson, requestText } from './http.js';
import type {
  AuditEntry,
  DownloadLink,
  Group,
  GroupWithCount,
  LoginInput,
  Member,
  MemberInput,
  MemberPage,
  MemberPatch,
  MulticastState,
  GatewayItem,
  NextIp,
  Policy,
  PolicyInput,
  Session,
  Settings,
  SettingsPatch,
  SharedRoute,
  Site,
  SiteInput,
  Status,
  TotpEnrolment,
  TrafficSample,
} from './types.js';

type Signal = AbortSignal | undefined;

const member = (name: string): string => `/members/${encodeURIComponent(name)}`;

// ---- session ----

export const getSession = (signal?: Signal): Promise<Session> =>
  requestJson('GET', '/session', { signal, expectUnauthorized: true });
export const login = (input: LoginInput): Promise<Session> =>
  requestJson('POST', '/session', { body: input, expectUnauthorized: true });
export const logout = (): Promise<void> => requestJson('DELETE', '/session', { expectUnauthorized: true });
export const changePassword = (current: string, next: string): Promise<void> =>
  requestJson('PUT', '/session/password', { body: { current, next } });
export const startTotp = (): Promise<TotpEnrolment> => requestJson('POST', '/session/totp');
export const confirmTotp = (code: string): Promise<{ totpEnabled: boolean }> =>
  requestJson('POST', '/session/totp/confirm', { body: { code } });
export const disableTotp = (code: string): Promise<{ totpEnabled: boolean }> =>
  requestJson('DELETE', '/session/totp', { body: { code } });

// ---- server ----

export const getStatus = (signal?: Signal): Promise<Status> => requestJson('GET', '/status', { signal });
export const getMulticast = (signal?: Signal): Promise<MulticastState> =>
  requestJson('GET', '/multicast', { signal });
export const getGateways = (signal?: Signal): Promise<GatewayItem[]> =>
  requestJson('GET', '/gateways', { signal });
/** 409 WEFT_ERR_GATEWAY_IN_USE while routes or sites name it (the message names them). */
export const removeGateway = (name: string): Promise<void> =>
  requestJson('DELETE', `/gateways/${encodeURIComponent(name)}`);
export const getSettings = (signal?: Signal): Promise<Settings> =>
  requestJson('GET', '/settings', { signal });
export const updateSettings = (patch: SettingsPatch): Promise<Settings> =>
  requestJson('PATCH', '/settings', { body: patch });
export const getTraffic = (since: Date, signal?: Signal): Promise<TrafficSample[]> =>
  requestJson('GET', '/traffic', { query: { since: since.toISOString() }, signal });

// ---- members ----

export const listMembers = (
  query: { search?: string; after?: string; limit?: number },
  signal?: Signal,
): Promise<MemberPage> => requestJson('GET', '/members', { query, signal });
export const nextIp = (signal?: Signal): Promise<NextIp> =>
  requestJson('GET', '/members/next-ip', { signal });
export const addMember = (input: MemberInput): Promise<Member> =>
  requestJson('POST', '/members', { body: input });
export const getMember = (name: string, signal?: Signal): Promise<Member> =>
  requestJson('GET', member(name), { signal });
export const updateMember = (name: string, patch: MemberPatch): Promise<Member> =>
  requestJson('PATCH', member(name), { body: patch });
export const removeMember = (name: string): Promise<void> => requestJson('DELETE', member(name));
export const setMemberDisabled = (name: string, disabled: boolean): Promise<Member> =>
  requestJson('POST', `${member(name)}/${disabled ? 'disable' : 'enable'}`);
export const rotateMember = (name: string, publicKey?: string): Promise<Member> =>
  requestJson('POST', `${member(name)}/rotate`, { body: publicKey ? { publicKey } : {} });
export const getMemberConfig = (name: string, signal?: Signal): Promise<string> =>
  requestText(`${member(name)}/config`, { signal });
export const createMemberLink = (name: string, ttlMinutes: number): Promise<DownloadLink> =>
  requestJson('POST', `${member(name)}/links`, { body: { ttlMinutes } });
export const getMemberTraffic = (name: string, since: Date, signal?: Signal): Promise<TrafficSample[]> =>
  requestJson('GET', `${member(name)}/traffic`, { query: { since: since.toISOString() }, signal });
/** For <img src> and <a href download>: the browser fetches these itself, with the session cookie. */
export const memberConfigUrl = (name: string): string => apiUrl(`${member(name)}/config`);
/** The inline OpenVPN profile (.ovpn); the first download issues the member's certificate. */
export const memberOpenVpnUrl = (name: string): string =>
  apiUrl(`${member(name)}/config`, { format: 'openvpn' });
export const memberQrUrl = (name: string): string => apiUrl(`${member(name)}/config.svg`);

// ---- groups, routes, policies ----

/** A page of a list endpoint (GET /groups, /routes, /policies: the shape of GET /members). */
interface Page<T> {
  readonly items: readonly T[];
  readonly next: string | null;
  readonly total: number;
}

/** Every item of a paged list, a page of 1000 at a time (the console shows whole lists). */
async function listAll<T>(path: string, signal: Signal): Promise<T[]> {
  const out: T[] = [];
  let after: string | null = null;
  do {
    const query: Record<string, string | number> = { limit: 1000, ...(after === null ? {} : { after }) };
    const page: Page<T> = await requestJson('GET', path, { query, signal });
    out.push(...page.items);
    after = page.next;
  } while (after !== null);
  return out;
}

export const listGroups = (signal?: Signal): Promise<GroupWithCount[]> => listAll('/groups', signal);
export const addGroup = (input: Group): Promise<Group> => requestJson('POST', '/groups', { body: input });
export const updateGroup = (name: string, description: string): Promise<Group> =>
  requestJson('PATCH', `/groups/${encodeURIComponent(name)}`, { body: { description } });
export const removeGroup = (name: string): Promise<void> =>
  requestJson('DELETE', `/groups/${encodeURIComponent(name)}`);

export const listRoutes = (signal?: Signal): Promise<SharedRoute[]> => listAll('/routes', signal);
export const addRoute = (input: Record<string, unknown>): Promise<SharedRoute> =>
  requestJson('POST', '/routes', { body: input });
export const removeRoute = (cidr: string): Promise<void> =>
  requestJson('DELETE', `/routes/${encodeURIComponent(cidr)}`);

export const listPolicies = (signal?: Signal): Promise<Policy[]> => listAll('/policies', signal);
export const addPolicy = (input: PolicyInput): Promise<Policy> =>
  requestJson('POST', '/policies', { body: input });
export const removePolicy = (id: number): Promise<void> => requestJson('DELETE', `/policies/${id}`);

// ---- audit ----

export const listAudit = (
  query: { before?: number; limit?: number; target?: string },
  signal?: Signal,
): Promise<AuditEntry[]> => requestJson('GET', '/audit', { query, signal });

// ---- IPsec sites ----

const site = (name: string): string => `/sites/${encodeURIComponent(name)}`;

export const listSites = async (signal?: Signal): Promise<Site[]> =>
  (await requestJson<{ items: Site[] }>('GET', '/sites', { signal })).items;
export const addSite = (input: SiteInput): Promise<Site & { psk?: string }> =>
  requestJson('POST', '/sites', { body: input });
export const updateSite = (name: string, patch: SiteInput): Promise<Site> =>
  requestJson('PATCH', site(name), { body: patch });
export const removeSite = (name: string): Promise<void> => requestJson('DELETE', site(name));
export const setSiteEnabled = (name: string, enabled: boolean): Promise<Site> =>
  requestJson('POST', `${site(name)}/${enabled ? 'up' : 'down'}`);
export const siteRemoteConfig = (name: string, format: string): Promise<string> =>
  requestText(`${site(name)}/remote-config`, { query: { format } });
