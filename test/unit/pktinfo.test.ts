/**
 * The IP_PKTINFO / IPV6_PKTINFO control messages (src/io/pktinfo.ts), for the LP64 and the ILP32 layout of
 * struct cmsghdr: what is sent (checked byte by byte against the C definitions, written out here by hand) and
 * what is read from what the kernel writes (IPv4 socket, IPv6, v4-mapped on a dual-stack socket, several
 * messages, truncated ones).
 */
import assert from 'node:assert/strict';
import { endianness } from 'node:os';
import { describe, it } from 'node:test';
import { CONTROL_SLOT, PktinfoCodec } from '../../src/io/pktinfo.js';

const LE = endianness() === 'LE';

/** struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; } on LP64 (x86-64, arm64) and ILP32. */
const LAYOUTS = [
  { name: 'LP64', pointerSize: 8, header: { size: 16, len: 0, level: 8, type: 12 }, data: 16 },
  { name: 'ILP32', pointerSize: 4, header: { size: 12, len: 0, level: 4, type: 8 }, data: 12 },
] as const;

/** Native-endian u32s of 16 address bytes. */
function words(bytes: readonly number[]): number[] {
  assert.equal(bytes.length, 16);
  return [...new Uint32Array(Uint8Array.from(bytes).buffer)];
}
const V4_10_251_1_1 = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 251, 1, 1];
const V6_FD51_1 = [0xfd, 0x51, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/** Writes one control message as the kernel does (put_cmsg): header, data, then padding up to CMSG_SPACE. */
function cmsg(
  view: DataView,
  at: number,
  layout: (typeof LAYOUTS)[number],
  level: number,
  type: number,
  data: readonly number[],
): number {
  const len = layout.data + data.length;
  if (layout.pointerSize === 8) view.setBigUint64(at, BigInt(len), LE);
  else view.setUint32(at, len, LE);
  view.setInt32(at + layout.header.level, level, LE);
  view.setInt32(at + layout.header.type, type, LE);
  data.forEach((b, i) => view.setUint8(at + layout.data + i, b));
  return at + Math.ceil(len / layout.pointerSize) * layout.pointerSize;
}

for (const layout of LAYOUTS) {
  describe(`pktinfo control messages (${layout.name})`, () => {
    const codec = new PktinfoCodec(layout.header, layout.pointerSize);

    it('has the sizes of CMSG_SPACE(sizeof(struct in_pktinfo / in6_pktinfo))', () => {
      assert.equal(codec.dataOffset, layout.data);
      assert.equal(codec.spaceV4, layout.pointerSize === 8 ? 32 : 24);
      assert.equal(codec.spaceV6, layout.pointerSize === 8 ? 40 : 32);
      assert.ok(codec.spaceV6 <= CONTROL_SLOT);
    });

    it('sends IPV6_PKTINFO { ipi6_addr, ipi6_ifindex 0 } for an IPv6 source', () => {
      const mem = new Uint32Array(32).fill(0xdeadbeef);
      const space = codec.writeHeader(mem, 8, true);
      const [w0, w1, w2, w3] = words(V6_FD51_1) as [number, number, number, number];
      codec.setSource(mem, 8, true, w0, w1, w2, w3);
      const view = new DataView(mem.buffer, 8);
      const len = layout.pointerSize === 8 ? Number(view.getBigUint64(0, LE)) : view.getUint32(0, LE);
      assert.equal(len, layout.data + 20); // CMSG_LEN(sizeof(struct in6_pktinfo))
      assert.equal(view.getInt32(layout.header.level, LE), 41); // IPPROTO_IPV6
      assert.equal(view.getInt32(layout.header.type, LE), 50); // IPV6_PKTINFO
      assert.deepEqual([...new Uint8Array(mem.buffer, 8 + layout.data, 16)], V6_FD51_1);
      assert.equal(view.getInt32(layout.data + 16, LE), 0); // ipi6_ifindex: the route picks the interface
      assert.equal(space, codec.spaceV6);
      assert.equal(mem[1], 0xdeadbeef, 'nothing written before the message');
      assert.equal(mem[(8 + space) >> 2], 0xdeadbeef, 'nothing written past CMSG_SPACE');
    });

    it('sends a v4-mapped IPV6_PKTINFO for an IPv4 source on a dual-stack socket', () => {
      const mem = new Uint32Array(16);
      codec.writeHeader(mem, 0, true);
      const [w0, w1, w2, w3] = words(V4_10_251_1_1) as [number, number, number, number];
      codec.setSource(mem, 0, true, w0, w1, w2, w3);
      assert.deepEqual([...new Uint8Array(mem.buffer, layout.data, 16)], V4_10_251_1_1);
    });

    it('sends IP_PKTINFO { ipi_ifindex 0, ipi_spec_dst, ipi_addr 0 } on an IPv4 socket', () => {
      const mem = new Uint32Array(16).fill(0xdeadbeef);
      const space = codec.writeHeader(mem, 0, false);
      const [w0, w1, w2, w3] = words(V4_10_251_1_1) as [number, number, number, number];
      codec.setSource(mem, 0, false, w0, w1, w2, w3);
      const view = new DataView(mem.buffer);
      const len = layout.pointerSize === 8 ? Number(view.getBigUint64(0, LE)) : view.getUint32(0, LE);
      assert.equal(len, layout.data + 12); // CMSG_LEN(sizeof(struct in_pktinfo))
      assert.equal(view.getInt32(layout.header.level, LE), 0); // IPPROTO_IP
      assert.equal(view.getInt32(layout.header.type, LE), 8); // IP_PKTINFO
      assert.deepEqual(
        [...new Uint8Array(mem.buffer, layout.data, 12)],
        [0, 0, 0, 0, 10, 251, 1, 1, 0, 0, 0, 0],
      );
      assert.equal(space, codec.spaceV4);
      assert.equal(mem[space >> 2], 0xdeadbeef);
    });

    describe('reads the local address the kernel reports', () => {
      function read(build: (view: DataView) => number): { found: boolean; bytes: number[] } {
        const mem = new Uint32Array(CONTROL_SLOT >> 2);
        const length = build(new DataView(mem.buffer));
        const into = new Uint32Array(6).fill(0xffffffff);
        const found = codec.readLocal(mem, 0, length, into, 1);
        assert.equal(into[0], 0xffffffff);
        assert.equal(into[5], 0xffffffff);
        return { found, bytes: [...new Uint8Array(into.buffer, 4, 16)] };
      }

      it('IPV6_PKTINFO (IPv6 datagram)', () => {
        const r = read((v) => cmsg(v, 0, layout, 41, 50, [...V6_FD51_1, 3, 0, 0, 0]));
        assert.deepEqual(r, { found: true, bytes: V6_FD51_1 });
      });

      it('IPV6_PKTINFO with a v4-mapped address (IPv4 datagram on a dual-stack socket)', () => {
        const r = read((v) => cmsg(v, 0, layout, 41, 50, [...V4_10_251_1_1, 3, 0, 0, 0]));
        assert.deepEqual(r, { found: true, bytes: V4_10_251_1_1 });
      });

      it('IP_PKTINFO: ipi_spec_dst, as v4-mapped (IPv4 socket)', () => {
        // ipi_ifindex 3, ipi_spec_dst 10.251.1.1, ipi_addr 10.251.1.255 (a broadcast: not an address to use)
        const r = read((v) => cmsg(v, 0, layout, 0, 8, [3, 0, 0, 0, 10, 251, 1, 1, 10, 251, 1, 255]));
        assert.deepEqual(r, { found: true, bytes: V4_10_251_1_1 });
      });

      it('after another control message', () => {
        const r = read((v) => {
          const next = cmsg(v, 0, layout, 1, 29, [1, 2, 3, 4, 5]); // SOL_SOCKET, another type
          return cmsg(v, next, layout, 41, 50, [...V6_FD51_1, 0, 0, 0, 0]);
        });
        assert.deepEqual(r, { found: true, bytes: V6_FD51_1 });
      });

      it('none: no control data, another message only, truncated or malformed ones', () => {
        const none = { found: false, bytes: new Array<number>(16).fill(0) };
        assert.deepEqual(
          read(() => 0),
          none,
        );
        assert.deepEqual(
          read((v) => cmsg(v, 0, layout, 1, 29, [1, 2, 3, 4])),
          none,
        );
        // MSG_CTRUNC: the kernel wrote less than the message (msg_controllen cut short).
        assert.deepEqual(
          read((v) => cmsg(v, 0, layout, 41, 50, [...V6_FD51_1, 0, 0, 0, 0]) - 12),
          none,
        );
        // cmsg_len shorter than in6_pktinfo, and cmsg_len 0 (which must not loop forever).
        assert.deepEqual(
          read((v) => cmsg(v, 0, layout, 41, 50, [1, 2, 3, 4])),
          none,
        );
        assert.deepEqual(
          read((v) => {
            cmsg(v, 0, layout, 41, 50, []);
            v.setUint32(0, 0, LE);
            return 32;
          }),
          none,
        );
      });
    });
  });
}
