/** AF_XDP for VMs (docs/networks.md#vms-on-af_xdp): the xsk object (bpf/xsk.bpf.c), its maps
 * pinned under <pin-root>/xsk (taken over by name on restart), its XDP program on each VM end
 * through a pinned link (<pin-root>/links/xsk-<ifindex>), and each VM's range of the sockets'
 * map. The sockets themselves are made at a handoff and go to the VMM. The maps are pinned here,
 * not by libbpf (a loader of the object without a pin root, a test's, pins nothing). */
import { existsSync, mkdirSync } from "node:fs";
import { ERRNO, StratumError } from "../errors";
import { type BpfObject, objGet, pinFd } from "../sys/bpf";
import { closeFd } from "../sys/os";
import { attachXdp, detachPinnedLink, openPinnedLink } from "./attach";
import { loadObject } from "./objects";

const XSK_MAPS = ["stm_xsks", "stm_xsk_base"] as const;

/** The sockets' map holds this many (struct stm_xsks in bpf/xsk.bpf.c). */
export const XSK_SLOTS = 1024;

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

export class XskDatapath {
  #obj: BpfObject | undefined;

  constructor(readonly pinRoot: string) {}

  get dir(): string {
    return `${this.pinRoot}/xsk`;
  }

  /** Where the sockets' map is pinned (QEMU's af-xdp map-path). */
  get mapPath(): string {
    return `${this.dir}/stm_xsks`;
  }

  /** The object, its maps taken over from their pins when there (a restart), pinned when new. */
  #load(): BpfObject {
    if (!this.#obj) {
      mkdirSync(this.dir, { recursive: true });
      const reuse: Record<string, number> = {};
      try {
        for (const name of XSK_MAPS)
          if (existsSync(`${this.dir}/${name}`)) reuse[name] = objGet(`${this.dir}/${name}`, "map");
        const obj = loadObject("xsk", { reuse });
        for (const name of XSK_MAPS)
          if (!(name in reuse)) pinFd(obj.map(name).fd, `${this.dir}/${name}`, `map ${name}`);
        this.#obj = obj;
      } finally {
        for (const fd of Object.values(reuse)) closeFd(fd);
      }
    }
    return this.#obj;
  }

  linkPin(ifindex: number): string {
    return `${this.pinRoot}/links/xsk-${ifindex}`;
  }

  /** The VM end's range: its own, or the lowest free one of `queues` slots. */
  allocate(ifindex: number, queues: number): { base: number; queues: number } {
    const m = this.#load().map("stm_xsk_base");
    const mine = m.lookup(u32(ifindex));
    if (mine && mine.readUInt32LE(4) === queues) return { base: mine.readUInt32LE(0), queues };
    const used: Array<[number, number]> = [];
    for (const [k, v] of m.entries())
      if (k.readUInt32LE(0) !== ifindex) used.push([v.readUInt32LE(0), v.readUInt32LE(4)]);
    used.sort((a, b) => a[0] - b[0]);
    let base = 0;
    for (const [b, n] of used) {
      if (base + queues <= b) break;
      base = Math.max(base, b + n);
    }
    if (base + queues > XSK_SLOTS)
      throw new StratumError("CAPACITY", `no ${queues} free slot(s) left among ${XSK_SLOTS} AF_XDP sockets`);
    const v = Buffer.alloc(8);
    v.writeUInt32LE(base, 0);
    v.writeUInt32LE(queues, 4);
    m.update(u32(ifindex), v);
    return { base, queues };
  }

  range(ifindex: number): { base: number; queues: number } | undefined {
    const v = this.#load().map("stm_xsk_base").lookup(u32(ifindex));
    return v ? { base: v.readUInt32LE(0), queues: v.readUInt32LE(4) } : undefined;
  }

  /** Puts socket `fd` at slot `slot` of the sockets' map. */
  setSocket(slot: number, fd: number): void {
    this.#load().map("stm_xsks").update(u32(slot), u32(fd));
  }

  /** stm_xsk_rx on the VM end (native XDP, generic where the driver has none), kept when its
   * pinned link is there. */
  attach(ifindex: number): void {
    const pin = this.linkPin(ifindex);
    const held = openPinnedLink(pin);
    if (held) {
      held.close();
      return;
    }
    mkdirSync(`${this.pinRoot}/links`, { recursive: true });
    attachXdp(this.#load().program("stm_xsk_rx").fd, ifindex, { pin });
  }

  /** The VM end's program, range and sockets out (its device may be gone already). */
  release(ifindex: number): void {
    detachPinnedLink(this.linkPin(ifindex));
    const r = this.range(ifindex);
    if (!r) return;
    const socks = this.#load().map("stm_xsks");
    for (let i = 0; i < r.queues; i++)
      try {
        socks.delete(u32(r.base + i));
      } catch (e) {
        if (!(e instanceof StratumError && e.errno === ERRNO.ENOENT)) throw e;
      }
    this.#load().map("stm_xsk_base").delete(u32(ifindex));
  }

  close(): void {
    this.#obj?.close();
    this.#obj = undefined;
  }
}
