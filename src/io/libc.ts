/**
 * libc through koffi (no compiled addon): one typed wrapper per C function, in the order of their man pages'
 * sections. Each wrapper returns what the C function returns; when that signals failure (usually -1), read
 * `errno()` at once, before any other FFI call on the same thread, and turn it into an Error with
 * `systemError()`.
 *
 * Conventions for adding a binding:
 *   - `koffi.load(null)` is the running process (node and the libc it links, glibc or musl), so the same module
 *     works in worker threads (each loads koffi for itself) and needs no library path.
 *   - Declare variadic C functions as variadic (`open`, `fcntl`, `ioctl`): calling a variadic function through
 *     a fixed prototype is undefined behaviour in the C ABI, even if it happens to work on x86-64.
 *   - Pointer arguments take a Uint8Array (or any ArrayBufferView): koffi passes a pointer to its bytes,
 *     honouring byteOffset, without copying; the C side may use it only during the call.
 *   - `ssize_t` is not a koffi type; `long` has its size on every Linux ABI (LP64 and ILP32).
 *   - Constants below are the Linux "asm-generic" values (x86, x86-64, arm, arm64, riscv64, loongarch, s390x);
 *     alpha, mips, parisc, powerpc and sparc differ, and `assertGenericLinuxAbi()` refuses them.
 */
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import koffi from 'koffi';

const libc = koffi.load(null);

// ---------------------------------------------------------------------------------------------------------------
// Constants (Linux UAPI, asm-generic)

/** open(2) flags, include/uapi/asm-generic/fcntl.h. */
export const O_RDWR = 0o2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

/** poll(2) events, include/uapi/asm-generic/poll.h. */
export const POLLIN = 0x001;
export const POLLOUT = 0x004;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;
export const POLLNVAL = 0x020;
/** sizeof(struct pollfd) { int fd; short events; short revents; }. */
export const POLLFD_SIZE = 8;

/** socket(2), include/linux/socket.h and include/linux/net.h. */
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = O_CLOEXEC;
export const SOCK_NONBLOCK = O_NONBLOCK;

/** setsockopt(2) levels and options: include/uapi/asm-generic/socket.h, include/uapi/linux/in.h and in6.h. */
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
/** As SO_SNDBUF / SO_RCVBUF, but past net.core.wmem_max / rmem_max; needs CAP_NET_ADMIN. */
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
export const IPPROTO_IP = 0;
export const IPPROTO_TCP = 6;
export const TCP_NODELAY = 1;
export const IPPROTO_IPV6 = 41;
export const IPV6_V6ONLY = 26;
/** Ask for each datagram's local address as a control message (pktinfo.ts). */
export const IP_PKTINFO = 8;
export const IPV6_RECVPKTINFO = 49;

/** shutdown(2) `how`, include/linux/net.h. */
export const SHUT_RD = 0;
export const SHUT_RDWR = 2;

/** send(2) / recv(2) flags, include/linux/socket.h. */
export const MSG_CTRUNC = 0x08;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;

/** sizeof(struct sockaddr_in) { u16 family; be16 port; be32 addr; u8 zero[8]; }. */
export const SOCKADDR_IN_SIZE = 16;
/** sizeof(struct sockaddr_in6) { u16 family; be16 port; be32 flowinfo; u8 addr[16]; u32 scope_id; }. */
export const SOCKADDR_IN6_SIZE = 28;
/** IF_NAMESIZE, including the terminating NUL. */
export const IF_NAMESIZE = 16;

// Struct layouts that depend on the pointer size (LP64 or ILP32): koffi lays them out by the platform's C ABI.
// Pointer and size_t fields are native-endian words of POINTER_SIZE bytes.

/** sizeof(void *) and sizeof(size_t). */
export const POINTER_SIZE = koffi.sizeof('void *');

const iovecType = koffi.struct({ iov_base: 'void *', iov_len: 'size_t' });
/** struct msghdr as the kernel and glibc define it (musl's padded int fields have the same offsets). */
const msghdrType = koffi.struct({
  msg_name: 'void *',
  msg_namelen: 'uint32_t',
  msg_iov: 'void *',
  msg_iovlen: 'size_t',
  msg_control: 'void *',
  msg_controllen: 'size_t',
  msg_flags: 'int',
});
const mmsghdrType = koffi.struct({ msg_hdr: msghdrType, msg_len: 'unsigned int' });
const cmsghdrType = koffi.struct({ cmsg_len: 'size_t', cmsg_level: 'int', cmsg_type: 'int' });

/** struct iovec: size and field offsets. */
export const IOVEC = {
  size: koffi.sizeof(iovecType),
  base: koffi.offsetof(iovecType, 'iov_base'),
  len: koffi.offsetof(iovecType, 'iov_len'),
} as const;

/** struct mmsghdr (a struct msghdr at offset 0, then unsigned int msg_len): size and field offsets. */
export const MMSGHDR = {
  size: koffi.sizeof(mmsghdrType),
  name: koffi.offsetof(msghdrType, 'msg_name'),
  namelen: koffi.offsetof(msghdrType, 'msg_namelen'),
  iov: koffi.offsetof(msghdrType, 'msg_iov'),
  iovlen: koffi.offsetof(msghdrType, 'msg_iovlen'),
  control: koffi.offsetof(msghdrType, 'msg_control'),
  controllen: koffi.offsetof(msghdrType, 'msg_controllen'),
  flags: koffi.offsetof(msghdrType, 'msg_flags'),
  len: koffi.offsetof(mmsghdrType, 'msg_len'),
} as const;

/**
 * struct cmsghdr (cmsg(3)): size and field offsets. Its data starts at CMSG_ALIGN(size), and each control
 * message takes CMSG_SPACE(n) = CMSG_ALIGN(size) + CMSG_ALIGN(n) bytes; CMSG_ALIGN rounds up to sizeof(size_t).
 */
export const CMSGHDR = {
  size: koffi.sizeof(cmsghdrType),
  len: koffi.offsetof(cmsghdrType, 'cmsg_len'),
  level: koffi.offsetof(cmsghdrType, 'cmsg_level'),
  type: koffi.offsetof(cmsghdrType, 'cmsg_type'),
} as const;

const GENERIC_ABI_ARCHES: ReadonlySet<string> = new Set([
  'x64',
  'ia32',
  'arm',
  'arm64',
  'riscv64',
  'loong64',
  's390x',
]);

/** Throws unless this is Linux on an architecture whose constants are the asm-generic ones used here. */
export function assertGenericLinuxAbi(): void {
  if (process.platform !== 'linux' || !GENERIC_ABI_ARCHES.has(process.arch)) {
    throw new Error(
      `libc bindings: unsupported platform ${process.platform}/${process.arch} (Linux asm-generic ABI only)`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Bindings

/** The calling thread's errno, as left by the previous FFI call on this thread (koffi reads it live). */
export function errno(): number {
  return koffi.errno();
}

const strerrorNative = libc.func('const char *strerror(int errnum)');

/** strerror(3): the C library's text for an errno value, e.g. "Device or resource busy". */
export function strerror(errnum: number): string {
  return strerrorNative(errnum) as string;
}

const openNative = libc.func('int open(const char *pathname, int flags, ...)');

/** open(2): a new file descriptor, or -1. */
export function open(pathname: string, flags: number, mode = 0): number {
  return openNative(pathname, flags, 'unsigned int', mode) as number;
}

const closeNative = libc.func('int close(int fd)');

/** close(2): 0, or -1. (Linux releases the descriptor even when it fails, so never retry.) */
export function close(fd: number): number {
  return closeNative(fd) as number;
}

/** fcntl(2) commands and descriptor flags, include/uapi/asm-generic/fcntl.h. */
export const F_GETFD = 1;
export const F_SETFD = 2;
export const FD_CLOEXEC = 1;

const fcntlNative = libc.func('int fcntl(int fd, int cmd, ...)');

/** fcntl(fd, F_GETFD): the descriptor's flags, or -1. */
export function getDescriptorFlags(fd: number): number {
  return fcntlNative(fd, F_GETFD) as number;
}

/** fcntl(fd, F_SETFD, flags): 0, or -1. */
export function setDescriptorFlags(fd: number, flags: number): number {
  return fcntlNative(fd, F_SETFD, 'int', flags) as number;
}

const execvNative = libc.func('int execv(const char *path, const char **argv)');

/** execv(3): replaces the process image (same PID); returns only on failure (-1). */
export function execv(path: string, argv: readonly string[]): number {
  return execvNative(path, [...argv, null]) as number;
}

const readNative = libc.func('long read(int fd, void *buf, unsigned long count)');

/** read(2) into `buf` (at most `count` bytes, which must not exceed buf.byteLength): bytes read, or -1. */
export function read(fd: number, buf: ArrayBufferView, count: number): number {
  if (count > buf.byteLength) throw new RangeError(`read: count ${count} exceeds buffer (${buf.byteLength})`);
  return readNative(fd, buf, count) as number;
}

const writeNative = libc.func('long write(int fd, const void *buf, unsigned long count)');

/** write(2) from `buf` (the first `count` bytes, at most buf.byteLength): bytes written, or -1. */
export function write(fd: number, buf: ArrayBufferView, count: number): number {
  if (count > buf.byteLength)
    throw new RangeError(`write: count ${count} exceeds buffer (${buf.byteLength})`);
  return writeNative(fd, buf, count) as number;
}

const pollNative = libc.func('int poll(void *fds, unsigned long nfds, int timeout)');

/**
 * poll(2) over `nfds` struct pollfd records in `fds` (POLLFD_SIZE bytes each, native byte order): the number of
 * ready descriptors, 0 on timeout, or -1. `timeoutMs` -1 waits forever.
 */
export function poll(fds: ArrayBufferView, nfds: number, timeoutMs: number): number {
  if (nfds * POLLFD_SIZE > fds.byteLength) throw new RangeError(`poll: ${nfds} pollfd records exceed buffer`);
  return pollNative(fds, nfds, timeoutMs) as number;
}

const ioctlNative = libc.func('int ioctl(int fd, unsigned long request, ...)');

/** ioctl(2) with a pointer argument (e.g. a struct ifreq): usually 0, or -1. */
export function ioctl(fd: number, request: number, arg: ArrayBufferView): number {
  return ioctlNative(fd, request, 'void *', arg) as number;
}

/** ioctl(2) whose argument is an integer passed by value (e.g. TUNSETOFFLOAD): the result, or -1. */
export function ioctlValue(fd: number, request: number, value: number): number {
  return ioctlNative(fd, request, 'unsigned long', value) as number;
}

const socketNative = libc.func('int socket(int domain, int type, int protocol)');

/** socket(2): a new socket descriptor, or -1. */
export function socket(domain: number, type: number, protocol: number): number {
  return socketNative(domain, type, protocol) as number;
}

const setsockoptNative = libc.func(
  'int setsockopt(int sockfd, int level, int optname, const void *optval, uint32_t optlen)',
);

/** setsockopt(2) with the first `optlen` bytes of `optval` (e.g. an Int32Array(1) for an int option): 0, or -1. */
export function setsockopt(
  fd: number,
  level: number,
  optname: number,
  optval: ArrayBufferView,
  optlen: number,
): number {
  if (optlen > optval.byteLength) {
    throw new RangeError(`setsockopt: optlen ${optlen} exceeds buffer (${optval.byteLength})`);
  }
  return setsockoptNative(fd, level, optname, optval, optlen) as number;
}

const getsockoptNative = libc.func(
  'int getsockopt(int sockfd, int level, int optname, void *optval, uint32_t *optlen)',
);

/**
 * getsockopt(2) into `optval`; `optlen[0]` is its room in bytes on entry (at most optval.byteLength) and the
 * option's size on return: 0, or -1.
 */
export function getsockopt(
  fd: number,
  level: number,
  optname: number,
  optval: ArrayBufferView,
  optlen: Uint32Array,
): number {
  if ((optlen[0] ?? Infinity) > optval.byteLength) {
    throw new RangeError(`getsockopt: optlen ${optlen[0]} exceeds buffer (${optval.byteLength})`);
  }
  return getsockoptNative(fd, level, optname, optval, optlen) as number;
}

const bindNative = libc.func('int bind(int sockfd, const void *addr, uint32_t addrlen)');

/** bind(2) to the struct sockaddr in the first `addrlen` bytes of `addr`: 0, or -1. */
export function bind(fd: number, addr: ArrayBufferView, addrlen: number): number {
  if (addrlen > addr.byteLength)
    throw new RangeError(`bind: addrlen ${addrlen} exceeds buffer (${addr.byteLength})`);
  return bindNative(fd, addr, addrlen) as number;
}

const getsocknameNative = libc.func('int getsockname(int sockfd, void *addr, uint32_t *addrlen)');

/**
 * getsockname(2) into `addr`; `addrlen[0]` is its room in bytes on entry (at most addr.byteLength) and the
 * address's full size on return (larger than the room if it was truncated): 0, or -1.
 */
export function getsockname(fd: number, addr: ArrayBufferView, addrlen: Uint32Array): number {
  if ((addrlen[0] ?? Infinity) > addr.byteLength) {
    throw new RangeError(`getsockname: addrlen ${addrlen[0]} exceeds buffer (${addr.byteLength})`);
  }
  return getsocknameNative(fd, addr, addrlen) as number;
}

const listenNative = libc.func('int listen(int sockfd, int backlog)');

/** listen(2): 0, or -1. */
export function listen(fd: number, backlog: number): number {
  return listenNative(fd, backlog) as number;
}

const accept4Native = libc.func('int accept4(int sockfd, void *addr, uint32_t *addrlen, int flags)');

/**
 * accept4(2): a new connected socket (with `flags`, e.g. SOCK_NONBLOCK | SOCK_CLOEXEC) and its peer's address
 * in `addr` (`addrlen[0]` its room on entry, the address's size on return), or -1.
 */
export function accept4(fd: number, addr: ArrayBufferView, addrlen: Uint32Array, flags: number): number {
  if ((addrlen[0] ?? Infinity) > addr.byteLength) {
    throw new RangeError(`accept4: addrlen ${addrlen[0]} exceeds buffer (${addr.byteLength})`);
  }
  return accept4Native(fd, addr, addrlen, flags) as number;
}

const recvmmsgNative = libc.func(
  'int recvmmsg(int sockfd, void *msgvec, unsigned int vlen, int flags, void *timeout)',
);

/**
 * recvmmsg(2) into `vlen` struct mmsghdr records (MMSGHDR.size bytes each) in `msgvec`, without a timeout: the
 * number of messages received, or -1. The records' pointers (msg_name, msg_iov and the iovecs' iov_base) are
 * raw addresses the caller wrote, which must stay valid for the call (see `address()`); the kernel writes each
 * msg_namelen, msg_flags and msg_len back.
 */
export function recvmmsg(fd: number, msgvec: ArrayBufferView, vlen: number, flags: number): number {
  if (vlen * MMSGHDR.size > msgvec.byteLength) {
    throw new RangeError(`recvmmsg: ${vlen} mmsghdr records exceed buffer (${msgvec.byteLength})`);
  }
  return recvmmsgNative(fd, msgvec, vlen, flags, null) as number;
}

const sendmmsgNative = libc.func('int sendmmsg(int sockfd, void *msgvec, unsigned int vlen, int flags)');

/**
 * sendmmsg(2) of `vlen` struct mmsghdr records (MMSGHDR.size bytes each) in `msgvec`: the number of messages
 * sent (possibly fewer than vlen: the first error after at least one message ends the call and is reported by
 * the next one), or -1. The records' pointers are raw addresses, as for recvmmsg.
 */
export function sendmmsg(fd: number, msgvec: ArrayBufferView, vlen: number, flags: number): number {
  if (vlen * MMSGHDR.size > msgvec.byteLength) {
    throw new RangeError(`sendmmsg: ${vlen} mmsghdr records exceed buffer (${msgvec.byteLength})`);
  }
  return sendmmsgNative(fd, msgvec, vlen, flags) as number;
}

const recvfromNative = libc.func(
  'long recvfrom(int sockfd, void *buf, unsigned long len, int flags, void *src_addr, uint32_t *addrlen)',
);

/**
 * recvfrom(2) into `buf` (at most `len` bytes), the sender's struct sockaddr into `addr` (`addrlen[0]` its room
 * on entry, the address's size on return): bytes received, or -1.
 */
export function recvfrom(
  fd: number,
  buf: ArrayBufferView,
  len: number,
  flags: number,
  addr: ArrayBufferView,
  addrlen: Uint32Array,
): number {
  if (len > buf.byteLength) throw new RangeError(`recvfrom: len ${len} exceeds buffer (${buf.byteLength})`);
  return recvfromNative(fd, buf, len, flags, addr, addrlen) as number;
}

const sendtoNative = libc.func(
  'long sendto(int sockfd, const void *buf, unsigned long len, int flags, const void *dest_addr, uint32_t addrlen)',
);

/** sendto(2) of the first `len` bytes of `buf` to the struct sockaddr in `addr`: bytes sent, or -1. */
export function sendto(
  fd: number,
  buf: ArrayBufferView,
  len: number,
  flags: number,
  addr: ArrayBufferView,
  addrlen: number,
): number {
  if (len > buf.byteLength) throw new RangeError(`sendto: len ${len} exceeds buffer (${buf.byteLength})`);
  return sendtoNative(fd, buf, len, flags, addr, addrlen) as number;
}

const shutdownNative = libc.func('int shutdown(int sockfd, int how)');

/**
 * shutdown(2): 0, or -1. On a UDP socket it fails with ENOTCONN unless connected, but still marks the socket
 * shut down and wakes every thread blocked in poll(2) on it (POLLIN | POLLRDHUP for SHUT_RD).
 */
export function shutdown(fd: number, how: number): number {
  return shutdownNative(fd, how) as number;
}

const usleepNative = libc.func('int usleep(unsigned int usec)');

/** usleep(3): the calling thread sleeps `us` microseconds (plus the kernel's timer slack); 0, or -1 (EINTR). */
export function usleep(us: number): number {
  return usleepNative(us) as number;
}

const schedYieldNative = libc.func('int sched_yield(void)');

/** sched_yield(2): lets another thread that is ready on this CPU run first; returns at once if there is none. */
export function schedYield(): void {
  schedYieldNative();
}

const ifNametoindexNative = libc.func('unsigned int if_nametoindex(const char *ifname)');

/** if_nametoindex(3): the index of network interface `name`, or 0 (errno set) if there is none. */
export function ifNameToIndex(name: string): number {
  return ifNametoindexNative(name) as number;
}

const ifIndextonameNative = libc.func('void *if_indextoname(unsigned int ifindex, void *ifname)');

/** if_indextoname(3): the name of the network interface with index `index`, or undefined (errno set). */
export function ifIndexToName(index: number): string | undefined {
  const name = new Uint8Array(IF_NAMESIZE);
  if (ifIndextonameNative(index, name) === null) return undefined;
  const end = name.indexOf(0);
  return new TextDecoder().decode(name.subarray(0, end < 0 ? IF_NAMESIZE : end));
}

// ---------------------------------------------------------------------------------------------------------------
// Raw memory

/**
 * The address of the first byte of `view`, for pointer fields inside structs built in JS memory (struct iovec,
 * struct msghdr). It stays valid only as long as the ArrayBuffer is reachable and neither transferred nor
 * detached: keep a reference for as long as any struct holds the address. Allocate such memory with
 * `new ArrayBuffer(n)`: an ArrayBuffer's bytes live outside the garbage-collected heap and never move (unlike a
 * small `new Uint8Array(n)`, which V8 may keep on the heap until something asks for its buffer).
 */
export function address(view: ArrayBufferView): bigint {
  return koffi.address(view);
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

/** The symbolic name of an errno value ("EBUSY"), or "errno N" when neither libuv nor node:os knows it. */
export function errnoName(errnum: number): string {
  const fromUv = getSystemErrorName(-errnum);
  if (!fromUv.startsWith('Unknown')) return fromUv;
  for (const [name, value] of Object.entries(osConstants.errno)) if (value === errnum) return name;
  return `errno ${errnum}`;
}

/**
 * An Error shaped like Node's own system errors (`code` "EBUSY", `errno` negative as in libuv, `syscall`), with
 * the message `${context}: ${syscall}: EBUSY (Device or resource busy)${hint}`.
 */
export function systemError(
  syscall: string,
  errnum: number,
  context: string,
  hint = '',
): NodeJS.ErrnoException {
  const code = errnoName(errnum);
  const error: NodeJS.ErrnoException = new Error(
    `${context}: ${syscall}: ${code} (${strerror(errnum)})${hint ? `: ${hint}` : ''}`,
  );
  error.code = code;
  error.errno = -errnum;
  error.syscall = syscall;
  return error;
}
