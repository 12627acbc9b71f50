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
export const POLLERR = 0x008;
export const POLLHUP = 0x010;
export const POLLNVAL = 0x020;
/** sizeof(struct pollfd) { int fd; short events; short revents; }. */
export const POLLFD_SIZE = 8;

/** socket(2), include/linux/socket.h and include/linux/net.h. */
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_DGRAM = 2;
export const SOCK_CLOEXEC = O_CLOEXEC;

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

const socketNative = libc.func('int socket(int domain, int type, int protocol)');

/** socket(2): a new socket descriptor, or -1. */
export function socket(domain: number, type: number, protocol: number): number {
  return socketNative(domain, type, protocol) as number;
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
