/**
 * A datagram's local address as a control message (cmsg(3)), so that a gateway with several addresses answers
 * a peer from the address the peer wrote to: a reply from another address is a different flow to the peer's
 * NAT or stateful firewall, which drops it.
 *
 * Receive (the socket option is set once, at open):
 *   - AF_INET socket, IP_PKTINFO (ip(7)): struct in_pktinfo { int ipi_ifindex; struct in_addr ipi_spec_dst;
 *     struct in_addr ipi_addr; }. ipi_spec_dst is the local address to answer from (the header's destination
 *     for unicast, a local address for a broadcast); it is the one kept.
 *   - AF_INET6 socket, IPV6_RECVPKTINFO (ipv6(7), RFC 3542 §6.1): an IPV6_PKTINFO message,
 *     struct in6_pktinfo { struct in6_addr ipi6_addr; int ipi6_ifindex; }, the header's destination. On a
 *     dual-stack socket Linux sends it for IPv4 datagrams too, with a v4-mapped ipi6_addr (and no IP_PKTINFO
 *     unless that option is set as well, which is why only IPV6_RECVPKTINFO is).
 * Send (sendmsg(2) / sendmmsg(2) with msg_control):
 *   - AF_INET socket: IP_PKTINFO with ipi_spec_dst = the source address, ipi_ifindex 0.
 *   - AF_INET6 socket: IPV6_PKTINFO with ipi6_addr = the source address, ipi6_ifindex 0 (RFC 3542 §6.1); to a
 *     v4-mapped destination Linux takes a v4-mapped ipi6_addr as the IPv4 source.
 *   Interface index 0: the route lookup for (source, destination) picks the interface, as WireGuard's kernel
 *   module does. A source that is no longer an address of the host makes the send fail with EINVAL (or
 *   EADDRNOTAVAIL): the caller forgets it and sends again without one (udp-linux.ts).
 *
 * Addresses are passed as four native-endian u32s of the 16 address bytes, IPv4 v4-mapped (::ffff:a.b.c.d);
 * all zeros means "none" (:: is never a datagram's destination). Nothing here calls libc, so the encoding is
 * tested without sockets, for both the LP64 and the ILP32 layout of struct cmsghdr.
 */
import { endianness } from 'node:os';

/** Linux UAPI: include/uapi/linux/in.h and in6.h (the same on every architecture). */
export const IPPROTO_IP = 0;
export const IPPROTO_IPV6 = 41;
export const IP_PKTINFO = 8;
export const IPV6_PKTINFO = 50;

/** sizeof(struct in_pktinfo) and sizeof(struct in6_pktinfo). */
const IN_PKTINFO_SIZE = 12;
const IN6_PKTINFO_SIZE = 20;

/** Room for received control messages per datagram: one IPV6_PKTINFO needs 40 bytes on LP64, 32 on ILP32. */
export const CONTROL_SLOT = 64;

const LITTLE_ENDIAN = endianness() === 'LE';
/** Bytes 00 00 ff ff (the third word of a v4-mapped address) as a native-endian u32. */
const MAPPED_WORD = LITTLE_ENDIAN ? 0xffff0000 : 0x0000ffff;

/** struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; }: size and offsets (libc.CMSGHDR). */
export interface CmsghdrLayout {
  readonly size: number;
  readonly len: number;
  readonly level: number;
  readonly type: number;
}

export class PktinfoCodec {
  /** CMSG_ALIGN(sizeof(struct cmsghdr)): where a control message's data starts. */
  readonly dataOffset: number;
  /** CMSG_SPACE of an IP_PKTINFO / IPV6_PKTINFO message: what msg_controllen is set to on send. */
  readonly spaceV4: number;
  readonly spaceV6: number;
  readonly #header: CmsghdrLayout;
  /** sizeof(size_t), the CMSG_ALIGN unit. */
  readonly #wordSize: number;
  /** Index of the u32 holding cmsg_len's value (the low half of a 64-bit size_t). */
  readonly #lenLo: number;
  readonly #lenHi: number;

  constructor(header: CmsghdrLayout, pointerSize: number, littleEndian = LITTLE_ENDIAN) {
    this.#header = header;
    this.#wordSize = pointerSize;
    this.dataOffset = this.#align(header.size);
    this.spaceV4 = this.dataOffset + this.#align(IN_PKTINFO_SIZE);
    this.spaceV6 = this.dataOffset + this.#align(IN6_PKTINFO_SIZE);
    const lowFirst = pointerSize === 4 || littleEndian;
    this.#lenLo = (header.len >> 2) + (lowFirst ? 0 : 1);
    this.#lenHi = pointerSize === 4 ? -1 : (header.len >> 2) + (lowFirst ? 1 : 0);
    if (header.len % 4 !== 0 || header.level % 4 !== 0 || header.type % 4 !== 0) {
      throw new Error(`unexpected struct cmsghdr layout: ${JSON.stringify(header)}`);
    }
  }

  #align(n: number): number {
    return Math.ceil(n / this.#wordSize) * this.#wordSize;
  }

  /**
   * Writes a send-side control message at byte `at` (a multiple of 8) of `words`' memory: the header and a
   * zero interface index, once per slot; the address goes in with setSource for each datagram. Returns the
   * message's CMSG_SPACE (the msg_controllen to send it with).
   */
  writeHeader(words: Uint32Array, at: number, v6: boolean): number {
    const h = this.#header;
    const space = v6 ? this.spaceV6 : this.spaceV4;
    words.fill(0, at >> 2, (at + space) >> 2);
    words[(at >> 2) + this.#lenLo] = this.dataOffset + (v6 ? IN6_PKTINFO_SIZE : IN_PKTINFO_SIZE);
    words[(at + h.level) >> 2] = v6 ? IPPROTO_IPV6 : IPPROTO_IP;
    words[(at + h.type) >> 2] = v6 ? IPV6_PKTINFO : IP_PKTINFO;
    return space;
  }

  /**
   * Sets the source address of the control message written by writeHeader at byte `at`: four native-endian u32s
   * (IPv4 v4-mapped). An IP_PKTINFO message (v6 false) takes only the IPv4 word, `w3`.
   */
  setSource(
    words: Uint32Array,
    at: number,
    v6: boolean,
    w0: number,
    w1: number,
    w2: number,
    w3: number,
  ): void {
    const d = (at + this.dataOffset) >> 2;
    if (v6) {
      words[d] = w0; // ipi6_addr
      words[d + 1] = w1;
      words[d + 2] = w2;
      words[d + 3] = w3;
    } else {
      words[d + 1] = w3; // ipi_spec_dst
    }
  }

  /**
   * Finds the local address among the received control messages in bytes [at, at + length) of `words`' memory
   * (msg_control and the msg_controllen the kernel wrote back) and writes it to into[intoAt .. intoAt+3] as
   * native-endian u32s, IPv4 v4-mapped. Returns false, with zeros written, if there is none (or only a
   * malformed or truncated one).
   */
  readLocal(words: Uint32Array, at: number, length: number, into: Uint32Array, intoAt: number): boolean {
    const h = this.#header;
    const end = at + length;
    let off = at;
    while (off + this.dataOffset <= end) {
      const w = off >> 2;
      const len = words[this.#lenLo + w]!;
      if ((this.#lenHi >= 0 && words[this.#lenHi + w] !== 0) || len < this.dataOffset || off + len > end)
        break;
      const level = words[(off + h.level) >> 2];
      const type = words[(off + h.type) >> 2];
      const d = (off + this.dataOffset) >> 2;
      if (level === IPPROTO_IPV6 && type === IPV6_PKTINFO && len >= this.dataOffset + IN6_PKTINFO_SIZE) {
        into[intoAt] = words[d]!;
        into[intoAt + 1] = words[d + 1]!;
        into[intoAt + 2] = words[d + 2]!;
        into[intoAt + 3] = words[d + 3]!;
        return true;
      }
      if (level === IPPROTO_IP && type === IP_PKTINFO && len >= this.dataOffset + IN_PKTINFO_SIZE) {
        into[intoAt] = 0;
        into[intoAt + 1] = 0;
        into[intoAt + 2] = MAPPED_WORD;
        into[intoAt + 3] = words[d + 1]!; // ipi_spec_dst
        return true;
      }
      off += this.#align(len);
    }
    into[intoAt] = 0;
    into[intoAt + 1] = 0;
    into[intoAt + 2] = 0;
    into[intoAt + 3] = 0;
    return false;
  }
}
