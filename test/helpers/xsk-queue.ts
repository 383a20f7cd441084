/** One queue of a VM on AF_XDP, as a VMM drives it (QEMU's af-xdp with sock-fds): an AF_XDP
 * socket handed over by the agent (already in the sockets' map at the VM's slot) gets its UMEM,
 * its fill, completion, RX and TX rings, and is bound to the VM end's queue in copy mode. Then
 * it sends and receives whole frames like a tap's queue (TestVm takes either). The rings are
 * mmap'ed and driven here through the kernel's documented layout (linux/if_xdp.h). */
import { type Pointer, toArrayBuffer } from "bun:ffi";
import { sysError } from "../../src/errors";
import { errno, libc } from "../../src/sys/ffi";

const SOL_XDP = 283;
const XDP_MMAP_OFFSETS = 1;
const XDP_RX_RING = 2;
const XDP_TX_RING = 3;
const XDP_UMEM_REG = 4;
const XDP_UMEM_FILL_RING = 5;
const XDP_UMEM_COMPLETION_RING = 6;
const XDP_PGOFF_RX_RING = 0n;
const XDP_PGOFF_TX_RING = 0x80000000n;
const XDP_UMEM_PGOFF_FILL_RING = 0x100000000n;
const XDP_UMEM_PGOFF_COMPLETION_RING = 0x180000000n;
const XDP_COPY = 1 << 1;
const AF_XDP = 44;
const PROT_RW = 0x1 | 0x2;
const MAP_SHARED = 0x01;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;
const MAP_POPULATE = 0x8000;
const MSG_DONTWAIT = 0x40;

const FRAMES = 256;
const FRAME = 2048;
const ENTRIES = 256;

interface Ring {
  prod: number; // index into u32
  cons: number;
  desc: number; // byte offset of the descriptors
  u32: Uint32Array;
  view: DataView;
  mask: number;
  ptr: Pointer;
  size: number;
}

function mapRing(
  fd: number,
  off: { producer: number; consumer: number; desc: number },
  descSize: number,
  pgoff: bigint,
): Ring {
  const size = off.desc + ENTRIES * descSize;
  const p = libc().mmap(null, BigInt(size), PROT_RW, MAP_SHARED | MAP_POPULATE, fd, pgoff) as Pointer;
  if (!p || Number(p) >= 2 ** 63) throw sysError("mmap an AF_XDP ring", errno());
  const buf = toArrayBuffer(p, 0, size);
  return {
    prod: off.producer / 4,
    cons: off.consumer / 4,
    desc: off.desc,
    u32: new Uint32Array(buf),
    view: new DataView(buf),
    mask: ENTRIES - 1,
    ptr: p,
    size,
  };
}

export class XskQueue implements Disposable {
  #fd: number;
  readonly #umem: Pointer;
  readonly #mem: Uint8Array;
  readonly #fill: Ring;
  readonly #comp: Ring;
  readonly #rx: Ring;
  readonly #tx: Ring;
  /** UMEM frames free for sending (the second half; the first half is the RX fill). */
  readonly #free: number[] = [];

  /** `fd`: an AF_XDP socket not bound yet (the agent's handoff); `ifindex`, `queue`: where to
   * bind it (the VM end). */
  constructor(fd: number, ifindex: number, queue = 0) {
    this.#fd = fd;
    const len = FRAMES * FRAME;
    const mem = libc().mmap(null, BigInt(len), PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0n) as Pointer;
    if (!mem || Number(mem) >= 2 ** 63) throw sysError("mmap the UMEM", errno());
    this.#umem = mem;
    this.#mem = new Uint8Array(toArrayBuffer(mem, 0, len));
    const reg = Buffer.alloc(32); // struct xdp_umem_reg
    reg.writeBigUInt64LE(BigInt(Number(mem)), 0);
    reg.writeBigUInt64LE(BigInt(len), 8);
    reg.writeUInt32LE(FRAME, 16);
    this.#opt(XDP_UMEM_REG, reg, "register the UMEM");
    const n = Buffer.alloc(4);
    n.writeUInt32LE(ENTRIES);
    for (const [opt, what] of [
      [XDP_UMEM_FILL_RING, "fill"],
      [XDP_UMEM_COMPLETION_RING, "completion"],
      [XDP_RX_RING, "RX"],
      [XDP_TX_RING, "TX"],
    ] as const)
      this.#opt(opt, n, `size the ${what} ring`);
    const offs = Buffer.alloc(128); // struct xdp_mmap_offsets: rx, tx, fr, cr
    const olen = Buffer.alloc(4);
    olen.writeUInt32LE(128);
    if (libc().getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, offs, olen) < 0)
      throw sysError("read the ring offsets", errno());
    const at = (i: number) => ({
      producer: Number(offs.readBigUInt64LE(i * 32)),
      consumer: Number(offs.readBigUInt64LE(i * 32 + 8)),
      desc: Number(offs.readBigUInt64LE(i * 32 + 16)),
    });
    this.#rx = mapRing(fd, at(0), 16, XDP_PGOFF_RX_RING);
    this.#tx = mapRing(fd, at(1), 16, XDP_PGOFF_TX_RING);
    this.#fill = mapRing(fd, at(2), 8, XDP_UMEM_PGOFF_FILL_RING);
    this.#comp = mapRing(fd, at(3), 8, XDP_UMEM_PGOFF_COMPLETION_RING);
    // The first half of the frames waits for what arrives; the second half is for sending.
    for (let i = 0; i < FRAMES / 2; i++) this.#fillOne(i * FRAME);
    for (let i = FRAMES / 2; i < FRAMES; i++) this.#free.push(i * FRAME);
    const sa = Buffer.alloc(16); // struct sockaddr_xdp
    sa.writeUInt16LE(AF_XDP, 0);
    sa.writeUInt16LE(XDP_COPY, 2);
    sa.writeUInt32LE(ifindex, 4);
    sa.writeUInt32LE(queue, 8);
    if (libc().bind(fd, sa, sa.length) < 0)
      throw sysError(`bind an AF_XDP socket to ifindex ${ifindex} queue ${queue}`, errno());
  }

  #opt(opt: number, v: Buffer, what: string): void {
    if (libc().setsockopt(this.#fd, SOL_XDP, opt, v, v.length) < 0) throw sysError(what, errno());
  }

  #fillOne(addr: number): void {
    const r = this.#fill;
    const prod = Atomics.load(r.u32, r.prod);
    r.view.setBigUint64(r.desc + (prod & r.mask) * 8, BigInt(addr), true);
    Atomics.store(r.u32, r.prod, prod + 1);
  }

  #reclaim(): void {
    const r = this.#comp;
    let cons = Atomics.load(r.u32, r.cons);
    const prod = Atomics.load(r.u32, r.prod);
    while (cons !== prod) {
      this.#free.push(Number(r.view.getBigUint64(r.desc + (cons & r.mask) * 8, true)));
      cons = (cons + 1) >>> 0;
    }
    Atomics.store(r.u32, r.cons, cons);
  }

  get fd(): number {
    return this.#fd;
  }

  /** Descriptors put on the TX ring since the last kick. */
  #pending = 0;
  /** Kick the kernel once this many descriptors wait (a VMM's batch); `flush` kicks the rest. */
  batch = 1;

  /** Queues one frame for sending (waits for a free UMEM frame only as long as completions
   * take); the kernel is kicked once `batch` frames wait. */
  send(frame: Uint8Array): void {
    this.#reclaim();
    let addr = this.#free.pop();
    for (let tries = 0; addr === undefined && tries < 1000; tries++) {
      this.#kick();
      this.#reclaim();
      addr = this.#free.pop();
    }
    if (addr === undefined) throw new Error("AF_XDP: no UMEM frame free to send");
    this.#mem.set(frame, addr);
    const r = this.#tx;
    const prod = Atomics.load(r.u32, r.prod);
    const d = r.desc + (prod & r.mask) * 16;
    r.view.setBigUint64(d, BigInt(addr), true);
    r.view.setUint32(d + 8, frame.length, true);
    r.view.setUint32(d + 12, 0, true);
    Atomics.store(r.u32, r.prod, prod + 1);
    if (++this.#pending >= this.batch) this.#kick();
  }

  /** Kicks the kernel for whatever waits on the TX ring. */
  flush(): void {
    if (this.#pending) this.#kick();
  }

  #kick(): void {
    this.#pending = 0;
    libc().sendto(this.#fd, null, 0n, MSG_DONTWAIT, null, 0);
  }

  /** The next frame received on this queue, or null when none waits. */
  recv(): Buffer | null {
    const r = this.#rx;
    const cons = Atomics.load(r.u32, r.cons);
    if (cons === Atomics.load(r.u32, r.prod)) return null;
    const d = r.desc + (cons & r.mask) * 16;
    const addr = Number(r.view.getBigUint64(d, true));
    const len = r.view.getUint32(d + 8, true);
    const f = Buffer.from(this.#mem.subarray(addr, addr + len));
    Atomics.store(r.u32, r.cons, cons + 1);
    this.#fillOne(addr - (addr % FRAME));
    return f;
  }

  close(): void {
    if (this.#fd < 0) return;
    for (const r of [this.#rx, this.#tx, this.#fill, this.#comp]) libc().munmap(r.ptr, BigInt(r.size));
    libc().close(this.#fd);
    libc().munmap(this.#umem, BigInt(FRAMES * FRAME));
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
