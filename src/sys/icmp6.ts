/** A non-blocking raw ICMPv6 socket tied to one interface, for a router's neighbour discovery:
 * it receives only the ICMPv6 types asked for, joins the given multicast groups on the interface,
 * and sends with hop limit 255 (RFC 4861 drops ND packets with any other). Addresses cross this
 * boundary as 16-byte buffers; failures are StratumError SYS with errno. */
import { dlopen, read, FFIType as T } from "bun:ffi";
import { sysError } from "../errors";

const symbols = {
  __errno_location: { args: [], returns: T.ptr },
  socket: { args: [T.i32, T.i32, T.i32], returns: T.i32 },
  setsockopt: { args: [T.i32, T.i32, T.i32, T.ptr, T.u32], returns: T.i32 },
  sendto: { args: [T.i32, T.ptr, T.u64, T.i32, T.ptr, T.u32], returns: T.i64 },
  recvfrom: { args: [T.i32, T.ptr, T.u64, T.i32, T.ptr, T.ptr], returns: T.i64 },
  close: { args: [T.i32], returns: T.i32 },
} as const;

type Syms = ReturnType<typeof dlopen<typeof symbols>>["symbols"];
let lib: Syms | undefined;
const c = (): Syms => {
  if (!lib) lib = dlopen("libc.so.6", symbols).symbols;
  return lib;
};

function errno(): number {
  const p = c().__errno_location();
  return p ? read.i32(p, 0) : 0;
}

const AF_INET6 = 10;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const IPPROTO_IPV6 = 41;
const IPPROTO_ICMPV6 = 58;
const SOL_SOCKET = 1;
const SO_BINDTODEVICE = 25;
const IPV6_UNICAST_HOPS = 16;
const IPV6_MULTICAST_HOPS = 18;
const IPV6_MULTICAST_LOOP = 19;
const IPV6_ADD_MEMBERSHIP = 20;
const ICMP6_FILTER = 1;
const EINTR = 4;
const EAGAIN = 11;
/** struct sockaddr_in6: family u16, port u16, flowinfo u32, addr[16], scope_id u32. */
const SOCKADDR_IN6_SIZE = 28;

export interface Icmp6Packet {
  /** The ICMPv6 message (raw IPv6 sockets never include the IPv6 header). */
  data: Buffer;
  /** Source address, 16 bytes. */
  from: Buffer;
  scopeId: number;
}

export class Icmp6Socket implements Disposable {
  #fd: number;
  readonly #rx = Buffer.alloc(2048);
  readonly #sa = Buffer.alloc(SOCKADDR_IN6_SIZE);
  readonly #salen = Buffer.alloc(4);

  /** Opens the socket on `device` (ifindex `ifindex`) receiving only `types`, member of `groups` (16 bytes each). */
  constructor(o: { device: string; ifindex: number; types: number[]; groups: Uint8Array[] }) {
    const fd = c().socket(AF_INET6, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMPV6);
    if (fd < 0) throw sysError("open raw ICMPv6 socket", errno());
    this.#fd = fd;
    try {
      this.#setInt(IPPROTO_IPV6, IPV6_UNICAST_HOPS, 255, "IPV6_UNICAST_HOPS");
      this.#setInt(IPPROTO_IPV6, IPV6_MULTICAST_HOPS, 255, "IPV6_MULTICAST_HOPS");
      this.#setInt(IPPROTO_IPV6, IPV6_MULTICAST_LOOP, 0, "IPV6_MULTICAST_LOOP");
      // struct icmp6_filter: 256 bits, a set bit blocks that type.
      const filter = Buffer.alloc(32, 0xff);
      for (const t of o.types) filter[t >> 3] = (filter[t >> 3] as number) & ~(1 << (t & 7));
      this.#set(IPPROTO_ICMPV6, ICMP6_FILTER, filter, "ICMP6_FILTER");
      const dev = Buffer.alloc(16);
      dev.write(o.device, 0, 15, "utf8");
      this.#set(SOL_SOCKET, SO_BINDTODEVICE, dev, `SO_BINDTODEVICE ${o.device}`);
      for (const g of o.groups) {
        // struct ipv6_mreq: the group, then the interface index.
        const mreq = Buffer.alloc(20);
        mreq.set(g, 0);
        mreq.writeUInt32LE(o.ifindex, 16);
        this.#set(IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, mreq, `join multicast group on ${o.device}`);
      }
    } catch (e) {
      c().close(fd);
      this.#fd = -1;
      throw e;
    }
  }

  #setInt(level: number, name: number, value: number, what: string): void {
    const v = Buffer.alloc(4);
    v.writeInt32LE(value);
    this.#set(level, name, v, what);
  }

  #set(level: number, name: number, value: Buffer, what: string): void {
    if (c().setsockopt(this.fd, level, name, value, value.length) < 0)
      throw sysError(`set ${what} on raw ICMPv6 socket`, errno());
  }

  get fd(): number {
    if (this.#fd < 0) throw sysError("use closed raw ICMPv6 socket", 9);
    return this.#fd;
  }

  /** Sends one ICMPv6 message (checksum left to the kernel). Returns bytes sent or -errno. */
  sendTo(msg: Uint8Array, to: Uint8Array, scopeId: number): number {
    const sa = Buffer.alloc(SOCKADDR_IN6_SIZE);
    sa.writeUInt16LE(AF_INET6, 0);
    // sin6_port stays 0: for raw sockets it would have to equal the protocol.
    sa.set(to, 8);
    sa.writeUInt32LE(scopeId, 24);
    for (;;) {
      const n = Number(c().sendto(this.fd, msg, BigInt(msg.length), 0, sa, SOCKADDR_IN6_SIZE));
      if (n >= 0) return n;
      const e = errno();
      if (e !== EINTR) return -e;
    }
  }

  /** The next queued message, or null when none is (never blocks). */
  recv(): Icmp6Packet | null {
    for (;;) {
      this.#salen.writeUInt32LE(SOCKADDR_IN6_SIZE);
      const n = Number(c().recvfrom(this.fd, this.#rx, BigInt(this.#rx.length), 0, this.#sa, this.#salen));
      if (n >= 0)
        return {
          data: Buffer.from(this.#rx.subarray(0, n)),
          from: Buffer.from(this.#sa.subarray(8, 24)),
          scopeId: this.#sa.readUInt32LE(24),
        };
      const e = errno();
      if (e === EINTR) continue;
      if (e === EAGAIN) return null;
      throw sysError("receive on raw ICMPv6 socket", e);
    }
  }

  close(): void {
    if (this.#fd >= 0) c().close(this.#fd);
    this.#fd = -1;
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
