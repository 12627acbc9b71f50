/**
 * GET /metrics: Prometheus text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format): a HELP and a TYPE line per
 * metric family, then one sample per line, label values escaped (backslash, double quote, line feed).
 *
 * Members are labelled by name, never by key or address. Drop reasons are read from the counters as they
 * are (the WireGuard core's `Device.drops`, the router's and the member firewall's), not from a list kept
 * here, so a reason added to the core shows up without a change to this file.
 */
import type { MemberMetrics } from '../server/gateway-sync.js';
import type { LiveFailover, LiveStore } from './context.js';

/** What the running gateway adds to /metrics. */
export interface GatewayMetrics {
  readonly members: readonly MemberMetrics[];
  /** Dropped packets by where they were dropped ("wireguard", "router", "firewall"), then by reason. */
  readonly drops: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** The store as the gateway sees it. */
  readonly store?: LiveStore;
  /** The shared address's failover, when the gateway has one. */
  readonly failover?: LiveFailover;
}

export interface MetricsInput {
  /** Members in the store. */
  readonly members: { readonly total: number; readonly disabled: number; readonly expired: number };
  /** Undefined while no gateway runs in this process. */
  readonly gateway: GatewayMetrics | undefined;
  readonly residentMemoryBytes: number;
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labels(pairs: Readonly<Record<string, string>>): string {
  const text = Object.entries(pairs)
    .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
    .join(',');
  return text === '' ? '' : `{${text}}`;
}

function value(n: number): string {
  return Number.isFinite(n) ? String(n) : 'NaN';
}

class Exposition {
  private readonly lines: string[] = [];

  family(name: string, type: 'counter' | 'gauge', help: string): this {
    this.lines.push(
      `# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`,
      `# TYPE ${name} ${type}`,
    );
    return this;
  }

  sample(name: string, n: number, pairs: Readonly<Record<string, string>> = {}): this {
    this.lines.push(`${name}${labels(pairs)} ${value(n)}`);
    return this;
  }

  text(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

export function renderMetrics(input: MetricsInput): string {
  const out = new Exposition();
  const { members, gateway } = input;
  out
    .family('weft_members', 'gauge', 'Members in the store')
    .sample('weft_members', members.total)
    .family('weft_members_active', 'gauge', 'Members that are enabled and not expired')
    .sample('weft_members_active', members.total - members.disabled - members.expired)
    .family('weft_gateway_up', 'gauge', 'Whether the gateway runs in this process (1) or not (0)')
    .sample('weft_gateway_up', gateway ? 1 : 0)
    .family('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes')
    .sample('process_resident_memory_bytes', input.residentMemoryBytes);
  if (!gateway) return out.text();

  const list = gateway.members;
  out
    .family('weft_members_online', 'gauge', 'Members with a handshake within the last 180 s')
    .sample('weft_members_online', list.filter((m) => m.online).length);
  out.family('weft_member_online', 'gauge', 'Whether the member is online (1) or not (0)');
  for (const m of list) out.sample('weft_member_online', m.online ? 1 : 0, { member: m.name });
  out.family(
    'weft_member_receive_bytes_total',
    'counter',
    'Bytes received from the member (since installed)',
  );
  for (const m of list) out.sample('weft_member_receive_bytes_total', m.rxBytes, { member: m.name });
  out.family('weft_member_transmit_bytes_total', 'counter', 'Bytes sent to the member (since installed)');
  for (const m of list) out.sample('weft_member_transmit_bytes_total', m.txBytes, { member: m.name });
  out.family('weft_member_handshakes_total', 'counter', 'Completed handshakes with the member');
  for (const m of list) out.sample('weft_member_handshakes_total', m.handshakes, { member: m.name });
  out.family('weft_member_policy_drops_total', 'counter', 'Packets from the member its policy dropped');
  for (const m of list) out.sample('weft_member_policy_drops_total', m.policyDrops, { member: m.name });
  out.family('weft_handshakes_total', 'counter', 'Completed handshakes with every member').sample(
    'weft_handshakes_total',
    list.reduce((sum, m) => sum + m.handshakes, 0),
  );
  out.family('weft_drops_total', 'counter', 'Dropped packets by where they were dropped and why');
  for (const [source, reasons] of Object.entries(gateway.drops))
    for (const [reason, n] of Object.entries(reasons)) out.sample('weft_drops_total', n, { source, reason });
  const store = gateway.store;
  if (store) {
    const kind = { kind: store.kind, role: store.role };
    out
      .family('weft_store_up', 'gauge', 'Whether the gateway reaches its store (1) or not (0)')
      .sample('weft_store_up', store.reachable ? 1 : 0, kind)
      .family('weft_store_revision', 'gauge', 'The change-feed revision the gateway has applied')
      .sample('weft_store_revision', store.revision, kind)
      .family(
        'weft_store_lag_seconds',
        'gauge',
        'Seconds since the gateway last reached the head of the feed',
      )
      .sample('weft_store_lag_seconds', store.lagSeconds, kind);
  }
  const failover = gateway.failover;
  if (failover) {
    const address = { address: failover.address };
    out
      .family(
        'weft_failover_holder',
        'gauge',
        'Whether this gateway holds the shared address (1) or stands by (0)',
      )
      .sample('weft_failover_holder', failover.role === 'holder' ? 1 : 0, address)
      .family('weft_failover_takeovers_total', 'counter', 'Times this gateway took the shared address over')
      .sample('weft_failover_takeovers_total', failover.takeovers, address);
  }
  return out.text();
}
