/**
 * Multicast constants. The first part is the specifications' (values a peer relies on); the second is this
 * implementation's choice.
 */

// ------------------------------------------------------------------ from the specifications

/** IPv4 protocol number of IGMP (RFC 1112 §4, RFC 3376 §4). */
export const PROTO_IGMP = 2;
/** IPv6 next-header values on the path to MLD (RFC 8200 §4.3, RFC 4443 §2.1). */
export const NEXT_HOP_BY_HOP = 0;
export const NEXT_ICMPV6 = 58;

/** IGMP message types (RFC 3376 §4, RFC 2236 §2.1, RFC 1112 appendix I). */
export const IGMP_QUERY = 0x11;
export const IGMP_V1_REPORT = 0x12;
export const IGMP_V2_REPORT = 0x16;
export const IGMP_V2_LEAVE = 0x17;
export const IGMP_V3_REPORT = 0x22;

/** MLD message types (RFC 2710 §3, RFC 3810 §5). */
export const MLD_QUERY = 130;
export const MLD_V1_REPORT = 131;
export const MLD_V1_DONE = 132;
export const MLD_V2_REPORT = 143;

/** Group record types of IGMPv3 and MLDv2 reports (RFC 3376 §4.2.12, RFC 3810 §5.2.12). */
export const MODE_IS_INCLUDE = 1;
export const MODE_IS_EXCLUDE = 2;
export const CHANGE_TO_INCLUDE = 3;
export const CHANGE_TO_EXCLUDE = 4;
export const ALLOW_NEW_SOURCES = 5;
export const BLOCK_OLD_SOURCES = 6;

/**
 * IGMP's own destinations (RFC 3376 §4.1.12: general queries go to 224.0.0.1; §4.2.14: IGMPv3 reports to
 * 224.0.0.22; RFC 2236 §3: IGMPv2 leaves to 224.0.0.2). Group-specific queries and IGMPv1/v2 reports go to
 * the group itself.
 */
export const IGMP_ALL_SYSTEMS = '224.0.0.1';
export const IGMP_ALL_ROUTERS = '224.0.0.2';
export const IGMP_V3_REPORTS = '224.0.0.22';

/**
 * MLD's own destinations (RFC 3810 §5.1.15: general queries to ff02::1; §5.2.14: MLDv2 reports to ff02::16;
 * RFC 2710 §3.8: MLDv1 done messages to ff02::2), and the prefix its sources come from: MLD is sent from
 * link-local addresses (RFC 3810 §5.1.14, §5.2.13), which are fe80::/64 in practice (RFC 4291 §2.5.6).
 */
export const MLD_ALL_NODES = 'ff02::1';
export const MLD_ALL_ROUTERS = 'ff02::2';
export const MLD_V2_REPORTS = 'ff02::16';
export const MLD_SOURCES = 'fe80::/64';

/** IPv4 Router Alert option (RFC 2113 §2.1): type 148, length 4, value 0. */
export const IPV4_ROUTER_ALERT = Uint8Array.of(0x94, 0x04, 0x00, 0x00);
/** IPv6 Router Alert hop-by-hop option (RFC 2711 §2.1): type 5, length 2, value 0 (MLD). */
export const IPV6_OPTION_ROUTER_ALERT = 5;

/** Lengths of the fixed parts (RFC 3376 §4.1, §4.2; RFC 2710 §3; RFC 3810 §5.1, §5.2). */
export const IGMP_V2_LENGTH = 8;
export const IGMP_V3_QUERY_MIN = 12;
export const IGMP_V3_REPORT_MIN = 8;
export const IGMP_V3_RECORD_MIN = 8;
export const MLD_V1_LENGTH = 24;
export const MLD_V2_QUERY_MIN = 28;
export const MLD_V2_REPORT_MIN = 8;
export const MLD_V2_RECORD_MIN = 20;

/**
 * Querier defaults (RFC 3376 §8, RFC 3810 §9): robustness variable, query interval, query response interval,
 * last member query interval. Startup query interval and count, group membership interval and last member
 * query count/time derive from them (§8.4, §8.6, §8.8).
 */
export const DEFAULT_ROBUSTNESS = 2;
export const DEFAULT_QUERY_INTERVAL_MS = 125_000;
export const DEFAULT_QUERY_RESPONSE_INTERVAL_MS = 10_000;
export const DEFAULT_LAST_MEMBER_QUERY_INTERVAL_MS = 1_000;

// ------------------------------------------------------------------ this implementation's

/** Group records read from one report at most; the rest of a longer report is ignored (and counted). */
export const MAX_RECORDS_PER_REPORT = 64;
/** Receiver ports per group, and groups per port, at most: a member cannot grow the table without bound. */
export const MAX_GROUPS_PER_PORT = 256;
/** Groups known at once, at most. */
export const MAX_GROUPS = 16_384;
/**
 * A packet seen again within this time (same source, group, IP ID/flow and payload prefix) is not copied.
 * Short on purpose: Linux sends unconnected UDP with DF set and IP ID 0, so an application repeating the same
 * datagram (an mDNS query resent after a second) looks like a duplicate; a loop repeats within milliseconds.
 */
export const DUPLICATE_WINDOW_MS = 50;
/** Slots of the duplicate guard (a hash table that forgets the oldest entry in a slot). */
export const DUPLICATE_SLOTS = 4096;
/** Bytes of payload after the IP header that go into a packet's duplicate-guard fingerprint. */
export const DUPLICATE_PREFIX_BYTES = 32;
/** Default rate limits: packets per second and burst, per sending port and per group. */
export const DEFAULT_SOURCE_RATE = 20_000;
export const DEFAULT_SOURCE_BURST = 2_000;
export const DEFAULT_GROUP_RATE = 40_000;
export const DEFAULT_GROUP_BURST = 4_000;
/** Token buckets kept at most (per kind); the least recently used is dropped beyond. */
export const MAX_BUCKETS = 16_384;
