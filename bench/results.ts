/**
 * The shape of bench/results/*.json. Units are in the names: Mbit/s (mbps), packets per second (pps),
 * milliseconds (Ms), bytes, seconds. `null` means "not applicable" (e.g. CPU of the plaintext configuration,
 * which has no tunnel process).
 */
import type { ConfigId } from './options.js';

export interface Spread {
  median: number;
  min: number;
  max: number;
  values: number[];
}

export interface TcpRun {
  streams: number;
  seconds: number;
  /** Receiver-side goodput. */
  mbps: number;
  /** Bytes received. */
  bytes: number;
  /** Sender-side TCP retransmits (iperf3's count). */
  retransmits: number;
  /** CPU seconds of all tunnel processes during the run. */
  cpuSeconds: number | null;
  /** CPU seconds of the server end's processes during the run. */
  serverCpuSeconds?: number | null;
}

export interface UdpRun {
  seconds: number;
  sentPackets: number;
  receivedPackets: number;
  /** Packets received per second. */
  pps: number;
  lossPercent: number;
  cpuSeconds: number | null;
}

export interface PingResult {
  sent: number;
  received: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface EndResult {
  side: 'server' | 'client';
  impl: string;
  ifname: string;
  pid: number;
  comm: string;
  /** VmHWM, bytes (process plus descendants). */
  peakRss: number;
  /** VmRSS at the end of the measurements, bytes. */
  rss: number;
}

export interface ConfigResult {
  id: ConfigId;
  label: string;
  description: string;
  server: string;
  client: string;
  ok: boolean;
  error?: string;
  tcp1?: { mbps: Spread; retransmits: Spread; runs: TcpRun[] };
  tcp4?: { mbps: Spread; retransmits: Spread; runs: TcpRun[] };
  udp?: { pps: Spread; runs: UdpRun[] };
  /** cpuSeconds: of the tunnel processes (both ends) while the idle pings ran. */
  pingIdle?: PingResult & { cpuSeconds?: number | null };
  pingLoaded?: PingResult & { loadMbps: number };
  /** Over every TCP run (1 and 4 streams). */
  tcpBytes?: number;
  tcpCpuSeconds?: number | null;
  cpuSecondsPerGB?: number | null;
  /** The server end's CPU alone (the configurations that share a client compare their servers by it). */
  serverCpuSecondsPerGB?: number | null;
  retransmitsPerGB?: number | null;
  /** The largest VmHWM of the tunnel processes. */
  peakRssBytes?: number | null;
  ends?: EndResult[];
}

export interface PeersResult {
  ok: boolean;
  error?: string;
  peers: number;
  /** Wall time of the one `wg addconf` that adds them all (over Weft's UAPI socket). */
  addSeconds: number;
  /** Peers `wg show` lists afterwards. */
  listedPeers: number;
  rssBefore: number;
  rssAfter: number;
  peakRss: number;
  limits: { rssBytes: number; addSeconds: number };
}

/** One phase of the flood section: the member's ping and TCP throughput through the gateway. */
export interface FloodPhase {
  ping: PingResult & { lossPercent: number };
  tcpMbps: number;
}

/** The flood section (bench/flood.ts). */
export interface FloodResult {
  ok: boolean;
  error?: string;
  gateway: string;
  member: string;
  /** Pings per phase (every 10 ms) and seconds of the TCP run per phase. */
  pings: number;
  tcpSeconds: number;
  baseline?: FloodPhase;
  flood?: FloodPhase;
  /** What the flooder sent (and its socket refused, buffer full), over `seconds`. */
  flooder?: { sent: number; refused: number; seconds: number; perSecond: number };
  /** The gateway's CPU time over the flood (100 = one core). */
  gatewayCpuPercent?: number;
  /** Datagrams the server namespace's UDP dropped during the flood: receive buffer full / all receive errors. */
  udpRcvbufErrors?: number;
  udpInErrors?: number;
  /** The gateway's VmRSS before, its largest sample during, and after the flood; VmHWM at the end. */
  rssBefore?: number;
  rssPeakDuringFlood?: number;
  rssAfter?: number;
  peakRss?: number;
  limits: { pingLossPercent: number; throughputRatio: number; rssBytes: number };
}

export interface BenchResults {
  schema: 1;
  startedAt: string;
  finishedAt: string;
  host: { hostname: string; kernel: string; cpus: number; cpuModel: string; node: string };
  versions: Record<string, string>;
  options: {
    quick: boolean;
    runs: number;
    tcpSeconds: number;
    udpSeconds: number;
    loadedPingSeconds: number;
    idlePings: number;
    pingIntervalS: number;
    warmupSeconds: number;
    /** TCP runs went from the server side to the client (--reverse); absent in results saved before it. */
    reverse?: boolean;
  };
  configs: ConfigResult[];
  peers?: PeersResult;
  flood?: FloodResult;
  ipsec?: IpsecResult;
  multicast?: MulticastResult;
}

/** One rate step of the multicast section: the sender at a fixed rate for a few seconds. */
export interface MulticastStep {
  /** Packets per second asked of the sender. */
  targetRate: number;
  /** Packets the sender's socket took; those it refused (buffer full). */
  sent: number;
  refused: number;
  seconds: number;
  sentPerSecond: number;
  /** Sealed copies (or unicast packets) counted at the receivers' ports. */
  delivered: number;
  deliveredPerSecond: number;
  /** 1 − delivered / (sent × receivers), in percent. */
  lossPercent: number;
  /** CPU seconds of the gateway process (all threads) during the step and its drain. */
  gatewayCpuSeconds: number;
  /** The gateway's CPU while the sender was sending (100% = one core). */
  gatewayCpuPercent: number;
  /** The gateway namespace's UDP RcvbufErrors / SndbufErrors during the step (where packets were lost). */
  gatewayRcvbufErrors: number;
  gatewaySndbufErrors: number;
  /** From the sender's last packet until the receivers' counters stopped moving (includes 200 ms). */
  drainMs: number;
}

/** The multicast section (bench/multicast.ts): one sender to 20 receivers, beside unicast, same gateway. */
export interface MulticastResult {
  ok: boolean;
  error?: string;
  receivers: number;
  packetBytes: number;
  stepSeconds: number;
  lossLimitPercent: number;
  /** The best clean step (loss under the limit). */
  multicast?: {
    packetsPerSecond: number;
    copiesPerSecond: number;
    cpuSecondsPerMillionCopies: number;
    gatewayCpuPercent: number;
  };
  unicast?: { packetsPerSecond: number; cpuSecondsPerMillionPackets: number; gatewayCpuPercent: number };
  multicastSteps: MulticastStep[];
  unicastSteps: MulticastStep[];
  gatewayPeakRss: number;
  /** Bar: copies/s ≥ barRatio × unicast packets/s. */
  barRatio: number;
}

/** One row of the IPsec section (bench/esp.ts): single-stream TCP through an IPsec pair. */
export interface IpsecRow {
  config: string;
  /** Median over runs. */
  mbps: number;
  /** CPU seconds of both ends' processes per GB received (median). */
  cpuSecondsPerGb: number;
  /** Peak RSS of the larger end, MiB. */
  peakRssMiB: number;
  runsMbps: number[];
  /** TCP retransmissions iperf3 counted at the sender, per run. */
  runsRetransmits?: number[];
}

/** The IPsec section: Weft ↔ Weft ESP, strongSwan ↔ strongSwan and Weft ↔ strongSwan in one run. */
export interface IpsecResult {
  ok: boolean;
  seconds: number;
  runs: number;
  rows: IpsecRow[];
  /** Pairs that could not be measured, with why. */
  failures: string[];
  /** The table as printed. */
  text: string;
}
