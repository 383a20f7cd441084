/** A TCP connection signed with TCP MD5 (RFC 2385), for BGP peers that ask for it: the socket is
 * made here (Bun's connect cannot set the key before the SYN), its connect started without
 * blocking, and handed to Bun once connected. */
import { ptr } from "bun:ffi";
import { errno, libc } from "./ffi";

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const IPPROTO_TCP = 6;
const TCP_MD5SIG = 14;
const SOL_SOCKET = 1;
const SO_ERROR = 4;
const POLLOUT = 4;
const EINPROGRESS = 115;
/** The kernel's TCP_MD5SIG_MAXKEYLEN. */
export const MD5_MAX_KEY = 80;

/** sockaddr_in / sockaddr_in6 of the address `addr` (4 or 16 bytes) and `port`, in `size` bytes
 * (its own, or 128 for a sockaddr_storage). */
function sockaddr(addr: Uint8Array, port: number, size?: number): { buf: Buffer; family: number } {
  const v4 = addr.length === 4;
  const b = Buffer.alloc(size ?? (v4 ? 16 : 28));
  b.writeUInt16LE(v4 ? AF_INET : AF_INET6, 0);
  b.writeUInt16BE(port, 2);
  Buffer.from(addr).copy(b, v4 ? 4 : 8);
  return { buf: b, family: v4 ? AF_INET : AF_INET6 };
}

/** A non-blocking socket toward the address `addr` (4 or 16 bytes) and `port` whose segments
 * carry `key` (1 to 80 bytes), its connect under way. Returns the descriptor; throws with the
 * errno on failure. */
export function md5Connect(addr: Uint8Array, port: number, key: Buffer): number {
  if (key.length < 1 || key.length > MD5_MAX_KEY) throw new Error(`a TCP MD5 key is 1 to ${MD5_MAX_KEY} bytes`);
  const c = libc();
  if (addr.length !== 4 && addr.length !== 16) throw new Error(`an address of ${addr.length} bytes`);
  const sa = sockaddr(addr, port);
  const fd = c.socket(sa.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`socket: errno ${errno()}`);
  // struct tcp_md5sig: the peer (sockaddr_storage, 128), flags, prefix length, key length, ifindex, key[80].
  const sig = Buffer.alloc(216);
  sockaddr(addr, 0, 128).buf.copy(sig, 0);
  sig.writeUInt16LE(key.length, 130);
  key.copy(sig, 136);
  if (c.setsockopt(fd, IPPROTO_TCP, TCP_MD5SIG, ptr(sig), sig.length) !== 0) {
    const e = errno();
    c.close(fd);
    throw new Error(`TCP_MD5SIG: errno ${e}`);
  }
  if (c.connect(fd, ptr(sa.buf), sa.buf.length) !== 0) {
    const e = errno();
    if (e !== EINPROGRESS) {
      c.close(fd);
      throw new Error(`connect: errno ${e}`);
    }
  }
  return fd;
}

/** Where a connect started by md5Connect stands: "pending", "connected", or the errno it failed with. */
export function connectState(fd: number): "pending" | "connected" | number {
  const c = libc();
  const pfd = Buffer.alloc(8);
  pfd.writeInt32LE(fd, 0);
  pfd.writeInt16LE(POLLOUT, 4);
  if (c.poll(ptr(pfd), 1, 0) <= 0) return "pending";
  const err = Buffer.alloc(4);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(4);
  if (c.getsockopt(fd, SOL_SOCKET, SO_ERROR, ptr(err), ptr(len)) !== 0) return errno();
  const e = err.readInt32LE(0);
  return e === 0 ? "connected" : e;
}

export function closeSocket(fd: number): void {
  libc().close(fd);
}
