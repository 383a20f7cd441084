/** Thin libc wrappers for what the rest of Stratum needs from the OS besides libbpf:
 * raw netlink sockets, opening files (namespace handles, /dev/net/tun), ioctls for
 * TAP devices, interface name lookups, bpffs mounts, this process's capabilities and
 * unix-socket addresses (paths and abstract names). Return values or throw
 * StratumError with errno; no retries, no policy. */
import { readFileSync } from "node:fs";
import { ERRNO, StratumError, sysError } from "../errors";
import { addressOf, cstr, errno, libc } from "./ffi";
import { IFREQ, SOCKADDR_NL } from "./layout";
import { mutated } from "./mutations";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const SOL_NETLINK = 270;
const O_RDONLY = 0;
const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;

/** A bound AF_NETLINK socket. Blocking receive; one request in flight at a time. */
export class NetlinkSocket implements Disposable {
  #fd: number;
  readonly portId: number;
  readonly #rx = Buffer.alloc(1 << 20);

  constructor(protocol: number) {
    const fd = libc().socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    if (fd < 0) throw sysError(`open netlink socket (protocol ${protocol})`, errno());
    this.#fd = fd;
    try {
      const sa = Buffer.alloc(SOCKADDR_NL.size);
      sa.writeUInt16LE(AF_NETLINK, 0);
      if (libc().bind(fd, sa, sa.length) < 0) throw sysError("bind netlink socket", errno());
      const len = Buffer.alloc(4);
      len.writeUInt32LE(sa.length);
      if (libc().getsockname(fd, sa, len) < 0) throw sysError("read netlink socket address", errno());
      this.portId = sa.readUInt32LE(SOCKADDR_NL.fields.nl_pid[0]);
    } catch (e) {
      libc().close(fd);
      throw e;
    }
  }

  setIntOption(level: number, name: number, value: number): void {
    const v = Buffer.alloc(4);
    v.writeInt32LE(value);
    if (libc().setsockopt(this.fd, level, name, v, 4) < 0) throw sysError(`set netlink socket option ${name}`, errno());
  }

  setNetlinkOption(name: number, value: number): void {
    this.setIntOption(SOL_NETLINK, name, value);
  }

  get fd(): number {
    if (this.#fd < 0) throw sysError("use closed netlink socket", 9);
    return this.#fd;
  }

  send(msg: Uint8Array): void {
    const sa = Buffer.alloc(SOCKADDR_NL.size);
    sa.writeUInt16LE(AF_NETLINK, 0); // pid 0: the kernel
    const n = Number(libc().sendto(this.fd, msg, BigInt(msg.length), 0, sa, sa.length));
    if (n < 0) throw sysError("send netlink message", errno());
  }

  /** One datagram (possibly many netlink messages). `wait: false` returns null when none is queued. */
  recv(wait = true): Buffer | null {
    for (;;) {
      const n = Number(libc().recv(this.fd, this.#rx, BigInt(this.#rx.length), wait ? 0 : MSG_DONTWAIT));
      if (n >= 0) return Buffer.from(this.#rx.subarray(0, n));
      const e = errno();
      if (e === ERRNO.EINTR) continue;
      if (!wait && e === ERRNO.EAGAIN) return null;
      throw sysError("receive netlink message", e);
    }
  }

  close(): void {
    if (this.#fd >= 0) libc().close(this.#fd);
    this.#fd = -1;
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

const CLONE_NEWNET = 0x40000000;

/** Runs `fn` with this thread switched into the network namespace at `nsPath`, and back.
 * Only for short synchronous work such as opening a socket: a socket keeps the namespace
 * it was created in, so it can be used from the original namespace afterwards. */
export function inNetns<T>(nsPath: string, fn: () => T): T {
  const orig = openReadOnly("/proc/thread-self/ns/net");
  let target = -1;
  try {
    target = openReadOnly(nsPath);
    if (libc().setns(target, CLONE_NEWNET) < 0) throw sysError(`enter network namespace ${nsPath}`, errno());
    try {
      return fn();
    } finally {
      if (libc().setns(orig, CLONE_NEWNET) < 0) {
        // Staying in the wrong namespace would send every later netlink request astray.
        process.stderr.write(`fatal: cannot return to the original network namespace (errno ${errno()})\n`);
        process.exit(70);
      }
    }
  } finally {
    closeFd(target);
    closeFd(orig);
  }
}

/** Opens `path` read-only (e.g. /run/netns/NAME for IFLA_NET_NS_FD). Caller closes. */
export function openReadOnly(path: string): number {
  const fd = libc().open(cstr(path), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) throw sysError(`open ${path}`, errno());
  return fd;
}

export function closeFd(fd: number): void {
  if (fd >= 0) libc().close(fd);
}

const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;

/** Takes an exclusive flock on directory `path` for the life of the process (the kernel
 * drops it when the process exits, however it exits: no stale lock survives a crash).
 * Returns the fd holding it, or undefined when another process holds it. */
export function lockDirectory(path: string): number | undefined {
  const fd = openReadOnly(path);
  if (libc().flock(fd, LOCK_EX | LOCK_NB) === 0) return fd;
  const e = errno();
  closeFd(fd);
  if (e === EWOULDBLOCK) return undefined;
  throw sysError(`flock ${path}`, e);
}

const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;
const SO_SNDBUF = 7;
const SO_SNDBUFFORCE = 32;

/** Sets a socket's receive or send buffer to `bytes` (the kernel doubles it for its own
 * bookkeeping). Past net.core.[rw]mem_max only with CAP_NET_ADMIN (the *FORCE options, which
 * the agent has); without it the plain option gives what the limit allows. Returns the size
 * the kernel reports afterwards. */
export function setSocketBuffer(fd: number, which: "receive" | "send", bytes: number): number {
  const v = Buffer.alloc(4);
  v.writeInt32LE(bytes);
  const [force, plain] = which === "receive" ? [SO_RCVBUFFORCE, SO_RCVBUF] : [SO_SNDBUFFORCE, SO_SNDBUF];
  if (libc().setsockopt(fd, SOL_SOCKET, force, v, 4) < 0 && libc().setsockopt(fd, SOL_SOCKET, plain, v, 4) < 0)
    throw sysError(`set the ${which} buffer of socket ${fd}`, errno());
  const out = Buffer.alloc(4);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(4);
  if (libc().getsockopt(fd, SOL_SOCKET, plain, out, len) < 0)
    throw sysError(`read the ${which} buffer of socket ${fd}`, errno());
  return out.readInt32LE(0);
}

const SO_PEERCRED = 17;

const SO_BINDTODEVICE = 25;

/** Ties socket `fd` to device `ifname`: it receives only what arrives there, and what it
 * sends leaves there without a route (a broadcast reply on a node with no default route). */
export function bindToDevice(fd: number, ifname: string): void {
  const name = Buffer.from(`${ifname}\0`);
  if (libc().setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, name.length) < 0)
    throw sysError(`bind socket ${fd} to ${ifname}`, errno());
}

/** The process at the other end of a connected unix socket, as the kernel recorded it when
 * the connection was made (SO_PEERCRED: struct ucred). */
export function peerCredentials(fd: number): { pid: number; uid: number; gid: number } {
  const cred = Buffer.alloc(12);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(12);
  if (libc().getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, len) < 0)
    throw sysError(`read the peer credentials of socket ${fd}`, errno());
  return { pid: cred.readInt32LE(0), uid: cred.readUInt32LE(4), gid: cred.readUInt32LE(8) };
}

export function ifNameToIndex(name: string): number {
  const idx = libc().if_nametoindex(cstr(name));
  if (idx === 0) throw sysError(`find interface ${name}`, errno() || 19);
  return idx;
}

export const TUN = {
  IFF_TUN: 1,
  IFF_TAP: 2,
  IFF_NO_PI: 0x1000,
  IFF_VNET_HDR: 0x4000,
  IFF_MULTI_QUEUE: 0x100,
  TUNSETIFF: 0x400454ca,
  TUNSETPERSIST: 0x400454cb,
  TUNSETOWNER: 0x400454cc,
} as const;

/** Attaches an open /dev/net/tun to tap `name` (TUNSETIFF: creating it when there is none);
 * false with errno set when the kernel refuses. */
function tunSetIff(fd: number, name: string, o: { vnetHdr?: boolean; multiQueue?: boolean }): boolean {
  const ifr = Buffer.alloc(IFREQ.size);
  ifr.write(name, 0, 15, "utf8");
  let flags = TUN.IFF_TAP | TUN.IFF_NO_PI;
  if (o.vnetHdr) flags |= TUN.IFF_VNET_HDR;
  if (o.multiQueue) flags |= TUN.IFF_MULTI_QUEUE;
  ifr.writeUInt16LE(flags, IFREQ.fields.ifr_flags[0]);
  return libc().ioctl(fd, BigInt(TUN.TUNSETIFF), ifr) >= 0;
}

/** Creates a persistent TAP device (it outlives this process; delete it through rtnetlink). */
export function createPersistentTap(
  name: string,
  opts: { vnetHdr?: boolean; multiQueue?: boolean; owner?: number } = {},
) {
  if (Buffer.byteLength(name) > 15) throw sysError(`create tap ${name}: name longer than 15 bytes`, 22, "INVALID");
  const fd = libc().open(cstr("/dev/net/tun"), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) throw sysError(`create tap ${name}: open /dev/net/tun`, errno());
  try {
    if (!tunSetIff(fd, name, opts)) throw sysError(`create tap ${name}`, errno());
    if (opts.owner !== undefined && libc().ioctl(fd, BigInt(TUN.TUNSETOWNER), opts.owner as never) < 0)
      throw sysError(`set owner of tap ${name}`, errno());
    if (libc().ioctl(fd, BigInt(TUN.TUNSETPERSIST), 1 as never) < 0)
      throw sysError(`make tap ${name} persistent`, errno());
    mutated(`create tap ${name}`);
  } finally {
    libc().close(fd);
  }
}

const O_NONBLOCK = 0o4000;
const EAGAIN = 11;
const EEXIST = 17;

/** One queue of an existing tap, as a VMM holds it: /dev/net/tun attached to the tap by name
 * (TUNSETIFF, in this thread's network namespace), reading and writing whole Ethernet frames
 * without blocking. The flags must be the tap's own (a multi-queue tap takes IFF_MULTI_QUEUE,
 * any other refuses it). */
export class TapQueue implements Disposable {
  #fd: number;
  readonly #rx = Buffer.alloc(65536);

  /** A queue of tap `name` (/dev/net/tun attached by name); or, with `device`, a queue of a
   * macvtap through its character device (/dev/tapN: each open is a queue), its virtio-net
   * header turned off (a frame is read and written bare). */
  constructor(name: string, o: { multiQueue?: boolean; vnetHdr?: boolean; device?: string } = {}) {
    const path = o.device ?? "/dev/net/tun";
    const fd = libc().open(cstr(path), O_RDWR | O_CLOEXEC | O_NONBLOCK, 0);
    if (fd < 0) throw sysError(`open a queue of ${name}: open ${path}`, errno());
    if (!tunSetIff(fd, o.device ? "" : name, o)) {
      const e = errno();
      libc().close(fd);
      throw sysError(`open a queue of ${name}`, e);
    }
    this.#fd = fd;
  }

  get fd(): number {
    return this.#fd;
  }

  /** Writes one frame; throws when the tap refuses it. */
  send(frame: Uint8Array): void {
    const n = Number(libc().write(this.#fd, frame, BigInt(frame.length)));
    if (n < 0) throw sysError("write to a tap queue", errno());
  }

  /** The next frame the tap holds for this queue, or null when none waits. */
  recv(): Buffer | null {
    const n = Number(libc().read(this.#fd, this.#rx, BigInt(this.#rx.length)));
    if (n < 0) {
      const e = errno();
      if (e === EAGAIN) return null;
      throw sysError("read from a tap queue", e);
    }
    return Buffer.from(this.#rx.subarray(0, n));
  }

  close(): void {
    if (this.#fd >= 0) libc().close(this.#fd);
    this.#fd = -1;
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/** glibc's makedev(): a device number as stat's st_rdev holds it. */
export function makedev(major: number, minor: number): number {
  return Number(
    (BigInt(major & 0xfff) << 8n) |
      BigInt(minor & 0xff) |
      (BigInt(minor & ~0xff) << 12n) |
      (BigInt(major & ~0xfff) << 32n),
  );
}

/** Makes the character device node `path` for device `major`:`minor` (mode 0600; one already
 * there is left). */
export function mknodChar(path: string, major: number, minor: number): void {
  if (libc().mknod(cstr(path), 0o20600, BigInt(makedev(major, minor))) < 0) {
    const e = errno();
    if (e !== EEXIST) throw sysError(`make device node ${path}`, e);
  }
}

const BPF_FS_MAGIC = 0xcafe4a11;

/** Mounts bpffs at `dir` (which must exist). */
export function mountBpffs(dir: string): void {
  if (libc().mount(cstr("bpffs"), cstr(dir), cstr("bpf"), 0n, null) < 0)
    throw sysError(`mount bpffs on ${dir}`, errno());
}

export { BPF_FS_MAGIC };

const AF_PACKET = 17;
const ETH_P_ALL_BE = 0x0300; // htons(ETH_P_ALL)
const SOL_PACKET = 263;
const PACKET_IGNORE_OUTGOING = 23;

/** A raw AF_PACKET socket bound to one interface: sends whole Ethernet frames and receives
 * every frame arriving there (its own sends excluded), or, `sendOnly`, receives nothing (the
 * kernel queues no copy of the traffic for it). Created inside `netns` when given, and usable
 * from anywhere afterwards. */
export class PacketSocket implements Disposable {
  #fd: number;
  readonly ifindex: number;
  readonly #rx = Buffer.alloc(65536);

  constructor(ifname: string, opts: { netns?: string; rcvbuf?: number; sendOnly?: boolean } = {}) {
    // Protocol 0: no frame is delivered to the socket.
    const proto = opts.sendOnly ? 0 : ETH_P_ALL_BE;
    const open = (): [number, number] => {
      const ifindex = ifNameToIndex(ifname);
      const fd = libc().socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, proto);
      if (fd < 0) throw sysError(`open packet socket on ${ifname}`, errno());
      return [fd, ifindex];
    };
    const [fd, ifindex] = opts.netns ? inNetns(opts.netns, open) : open();
    this.#fd = fd;
    this.ifindex = ifindex;
    try {
      const sll = Buffer.alloc(20); // struct sockaddr_ll
      sll.writeUInt16LE(AF_PACKET, 0);
      sll.writeUInt16LE(proto, 2);
      sll.writeInt32LE(ifindex, 4);
      if (libc().bind(fd, sll, sll.length) < 0) throw sysError(`bind packet socket to ${ifname}`, errno());
      this.#setInt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
      if (opts.rcvbuf) this.#setInt(SOL_SOCKET, SO_RCVBUFFORCE, opts.rcvbuf);
    } catch (e) {
      libc().close(fd);
      throw e;
    }
  }

  #setInt(level: number, name: number, value: number): void {
    const v = Buffer.alloc(4);
    v.writeInt32LE(value);
    if (libc().setsockopt(this.#fd, level, name, v, 4) < 0) throw sysError(`set packet socket option ${name}`, errno());
  }

  /** Sends one frame `count` times; returns how many the kernel accepted. */
  send(frame: Uint8Array, count = 1): number {
    let sent = 0;
    for (let i = 0; i < count; i++) {
      const n = Number(libc().sendto(this.#fd, frame, BigInt(frame.length), 0, null, 0));
      if (n < 0) {
        const e = errno();
        if (e === ERRNO.EINTR || e === ERRNO.EAGAIN || e === ERRNO.ENOBUFS) continue; // the frame is not sent
        throw sysError("send frame", e);
      }
      sent++;
    }
    return sent;
  }

  /** Every frame queued now, without waiting. */
  drain(): Buffer[] {
    const out: Buffer[] = [];
    for (;;) {
      const n = Number(libc().recv(this.#fd, this.#rx, BigInt(this.#rx.length), MSG_DONTWAIT));
      if (n < 0) {
        const e = errno();
        if (e === ERRNO.EINTR) continue;
        if (e === ERRNO.EAGAIN) return out;
        throw sysError("receive frame", e);
      }
      out.push(Buffer.from(this.#rx.subarray(0, n)));
    }
  }

  close(): void {
    if (this.#fd >= 0) libc().close(this.#fd);
    this.#fd = -1;
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

const CLOCK_MONOTONIC = 1;
const timespec = Buffer.alloc(16);

/** CLOCK_MONOTONIC in nanoseconds: the clock of bpf_ktime_get_ns(), for deadlines the
 * datapath compares against. */
export function monotonicNs(): bigint {
  if (libc().clock_gettime(CLOCK_MONOTONIC, timespec) < 0) throw sysError("clock_gettime", errno());
  return timespec.readBigInt64LE(0) * 1_000_000_000n + timespec.readBigInt64LE(8);
}

/** Capability numbers (linux/capability.h) Stratum asks about. */
export const CAP = {
  NET_BIND_SERVICE: 10,
  NET_ADMIN: 12,
  NET_RAW: 13,
  SYS_ADMIN: 21,
  PERFMON: 38,
  BPF: 39,
} as const;

/** This process's effective capability set (CapEff of /proc/self/status). */
export function effectiveCapabilities(): bigint {
  const m = readFileSync("/proc/self/status", "utf8").match(/^CapEff:\s*([0-9a-f]+)$/m);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

export function hasCapability(caps: bigint, cap: number): boolean {
  return ((caps >> BigInt(cap)) & 1n) === 1n;
}

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SUN_PATH_MAX = 108;

/** struct sockaddr_un for `name`: a path, or an abstract name written with a leading '@'
 * (sun_path starts with a NUL byte and the length covers the name exactly, as systemd and
 * `ss` write them). */
export function unixAddress(name: string): Buffer {
  const abstract = name.startsWith("@");
  const bytes = Buffer.from(abstract ? name.slice(1) : name, "utf8");
  if (bytes.length === 0 || bytes.length + 1 > SUN_PATH_MAX)
    throw new StratumError(
      "INVALID",
      `unix socket address "${name}" must be 1 to ${SUN_PATH_MAX - 1} bytes (a path, or '@' and an abstract name)`,
    );
  // Both kinds are 2 + 1 + length bytes: the family, then the name after a NUL (abstract)
  // or before one (a path).
  const sa = Buffer.alloc(3 + bytes.length);
  sa.writeUInt16LE(AF_UNIX, 0);
  bytes.copy(sa, abstract ? 3 : 2);
  return sa;
}

const POLLIN = 1;

/** Connects to the listening unix stream socket `name` (path or '@abstract') and reads what
 * it writes until it closes, for at most `timeoutMs`. undefined: nobody listens there.
 * `pid` is the listener's, as the kernel recorded it (SO_PEERCRED), whatever it writes;
 * `complete` is false when it did not finish in time. Synchronous: for start-up checks. */
export function askUnixSocket(
  name: string,
  timeoutMs: number,
): { pid: number; reply: string; complete: boolean } | undefined {
  const fd = libc().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw sysError("open unix socket", errno());
  try {
    const sa = unixAddress(name);
    if (libc().connect(fd, sa, sa.length) < 0) {
      const e = errno();
      if (e === ERRNO.ECONNREFUSED || e === ERRNO.ENOENT /* no such path */) return undefined;
      // EAGAIN: the listener's backlog is full (it accepts nothing): it is alive, and silent.
      if (e !== ERRNO.EAGAIN && e !== ERRNO.EINPROGRESS) throw sysError(`connect to ${name}`, e);
    }
    const cred = Buffer.alloc(12); // struct ucred: pid, uid, gid
    const len = Buffer.alloc(4);
    len.writeUInt32LE(12);
    const pid = libc().getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, len) === 0 ? cred.readInt32LE(0) : 0;
    const chunks: Buffer[] = [];
    const rx = Buffer.alloc(4096);
    const pfd = Buffer.alloc(8); // struct pollfd: fd, events, revents
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) return { pid, reply: Buffer.concat(chunks).toString("utf8"), complete: false };
      pfd.writeInt32LE(fd, 0);
      pfd.writeInt16LE(POLLIN, 4);
      pfd.writeInt16LE(0, 6);
      if (libc().poll(pfd, 1n, left) < 0 && errno() !== ERRNO.EINTR) throw sysError(`wait for ${name}`, errno());
      const n = Number(libc().recv(fd, rx, BigInt(rx.length), MSG_DONTWAIT));
      if (n === 0) return { pid, reply: Buffer.concat(chunks).toString("utf8"), complete: true };
      if (n > 0) chunks.push(Buffer.from(rx.subarray(0, n)));
      else {
        const e = errno();
        if (e === ERRNO.EINTR || e === ERRNO.EAGAIN) continue;
        if (e === ERRNO.ECONNRESET) return { pid, reply: Buffer.concat(chunks).toString("utf8"), complete: true };
        throw sysError(`read from ${name}`, e);
      }
    }
  } finally {
    libc().close(fd);
  }
}

const SOCK_DGRAM = 2;
const MSG_NOSIGNAL = 0x4000;
const AF_XDP = 44;

/** A listening unix stream socket at `path` (a path, or '@' and an abstract name). */
export function listenUnix(path: string): number {
  const sa = unixAddress(path);
  const fd = libc().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw sysError("open unix socket", errno());
  if (libc().bind(fd, sa, sa.length) < 0 || libc().listen(fd, 4) < 0) {
    const e = errno();
    libc().close(fd);
    throw sysError(`listen on ${path}`, e);
  }
  return fd;
}

/** Takes the next connection on listening socket `fd` (waiting at most `timeoutMs`) and reads
 * its one message: its data and the descriptors it carried (SCM_RIGHTS; they are the
 * caller's to close). */
export function acceptFds(fd: number, timeoutMs: number): { data: Buffer; fds: number[] } {
  const pfd = Buffer.alloc(8);
  pfd.writeInt32LE(fd, 0);
  pfd.writeInt16LE(POLLIN, 4);
  if (libc().poll(pfd, 1n, timeoutMs) <= 0) throw new StratumError("UNAVAILABLE", `no connection in ${timeoutMs} ms`);
  const c = libc().accept4(fd, null, null, SOCK_CLOEXEC);
  if (c < 0) throw sysError("accept", errno());
  try {
    const data = Buffer.alloc(4096);
    const iov = Buffer.alloc(16);
    iov.writeBigUInt64LE(BigInt(addressOf(data)), 0);
    iov.writeBigUInt64LE(BigInt(data.length), 8);
    const control = Buffer.alloc(16 + 4 * SCM_MAX_FD + 8);
    const msg = Buffer.alloc(56);
    msg.writeBigUInt64LE(BigInt(addressOf(iov)), 16);
    msg.writeBigUInt64LE(1n, 24);
    msg.writeBigUInt64LE(BigInt(addressOf(control)), 32);
    msg.writeBigUInt64LE(BigInt(control.length), 40);
    const n = Number(libc().recvmsg(c, msg, 0));
    if (n < 0) throw sysError("receive a message", errno());
    const fds: number[] = [];
    const clen = Number(msg.readBigUInt64LE(40));
    for (let off = 0; off + 16 <= clen; ) {
      const len = Number(control.readBigUInt64LE(off));
      if (len < 16) break;
      if (control.readInt32LE(off + 8) === SOL_SOCKET && control.readInt32LE(off + 12) === SCM_RIGHTS)
        for (let p = off + 16; p + 4 <= off + len; p += 4) fds.push(control.readInt32LE(p));
      off += (len + 7) & ~7;
    }
    return { data: Buffer.from(data.subarray(0, n)), fds };
  } finally {
    libc().close(c);
  }
}

/** A new AF_XDP socket, not bound: its owner (a VMM) registers its UMEM, rings and binding. */
export function xdpSocket(): number {
  const fd = libc().socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) throw sysError("open an AF_XDP socket", errno());
  return fd;
}
const SCM_RIGHTS = 1;
/** The most descriptors one SCM_RIGHTS message carries (the kernel's SCM_MAX_FD). */
export const SCM_MAX_FD = 253;

/** Connects to the unix stream socket `name` (path or '@abstract') and sends `data` in one
 * message with the descriptors `fds` (SCM_RIGHTS: the receiver gets its own copies), then
 * closes the connection. The caller keeps (and closes) its `fds`. */
export function sendFds(name: string, data: Uint8Array, fds: readonly number[]): void {
  if (!fds.length || fds.length > SCM_MAX_FD)
    throw new StratumError("INVALID", `a message carries 1 to ${SCM_MAX_FD} descriptors, not ${fds.length}`);
  if (!data.length) throw new StratumError("INVALID", "a message with descriptors needs at least one byte of data");
  const sa = unixAddress(name);
  const fd = libc().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw sysError("open unix socket", errno());
  try {
    if (libc().connect(fd, sa, sa.length) < 0) throw sysError(`connect to ${name}`, errno());
    // struct iovec { base, len }; struct cmsghdr { len (size_t), level, type } + the fds,
    // padded to 8; struct msghdr { name, namelen, iov, iovlen, control, controllen, flags }.
    const payload = Buffer.from(data);
    const iov = Buffer.alloc(16);
    iov.writeBigUInt64LE(BigInt(addressOf(payload)), 0);
    iov.writeBigUInt64LE(BigInt(payload.length), 8);
    const cmsgLen = 16 + 4 * fds.length;
    const control = Buffer.alloc((cmsgLen + 7) & ~7);
    control.writeBigUInt64LE(BigInt(cmsgLen), 0);
    control.writeInt32LE(SOL_SOCKET, 8);
    control.writeInt32LE(SCM_RIGHTS, 12);
    for (const [i, f] of fds.entries()) control.writeInt32LE(f, 16 + 4 * i);
    const msg = Buffer.alloc(56);
    msg.writeBigUInt64LE(BigInt(addressOf(iov)), 16);
    msg.writeBigUInt64LE(1n, 24);
    msg.writeBigUInt64LE(BigInt(addressOf(control)), 32);
    msg.writeBigUInt64LE(BigInt(control.length), 40);
    for (;;) {
      const n = Number(libc().sendmsg(fd, msg, MSG_NOSIGNAL));
      if (n === payload.length) return;
      if (n >= 0) throw new StratumError("SYS", `send to ${name}: ${n} of ${payload.length} bytes sent`);
      const e = errno();
      if (e !== ERRNO.EINTR) throw sysError(`send to ${name}`, e);
    }
  } finally {
    libc().close(fd);
  }
}

/** Sends one datagram to the unix datagram socket `name` (path or '@abstract'). */
export function sendUnixDatagram(name: string, data: string): void {
  const sa = unixAddress(name);
  const fd = libc().socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw sysError("open unix datagram socket", errno());
  try {
    const msg = Buffer.from(data, "utf8");
    for (;;) {
      const n = Number(libc().sendto(fd, msg, BigInt(msg.length), MSG_NOSIGNAL, sa, sa.length));
      if (n >= 0) return;
      const e = errno();
      if (e !== 4) throw sysError(`send to ${name}`, e);
    }
  } finally {
    libc().close(fd);
  }
}
