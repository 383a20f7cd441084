/** The load balancer's kernel side (bpf/include/stm_lb.h): VIPs with their address entries,
 * backends, each VIP's Maglev table, and the switch. A table is a map of its own, built whole
 * and swapped in by one update of the VIP's slot in stm_lb_rings, so a packet sees the old table
 * or the new one. A table is rebuilt only when its set of live backends changes (the set's
 * signature rides in the VIP's entry): a run on a kernel that holds the state writes nothing. */
import { ipToBytes, macToBytes } from "../model/ip";
import { BPF_F, BPF_MAP_TYPE, BpfMap, mapFdById } from "../sys/bpf";
import { decode, encode } from "../sys/layout";
import { stmLayout } from "./abi-layouts";
import type { PinnedMap } from "./map-roles";

export const LB_CFG = stmLayout("stm_lb_cfg", 8, { vips: [0, "u32"], flags: [4, "u32"] });
export const LB_VIP_KEY = stmLayout("stm_lb_vip_key", 20, {
  addr: [0, "u8"],
  port: [16, "u16"],
  proto: [18, "u8"],
  family: [19, "u8"],
});
export const LB_VIP = stmLayout("stm_lb_vip", 16, {
  id: [0, "u32"],
  size: [4, "u32"],
  flags: [8, "u32"],
  sig: [12, "u32"],
});
export const LB_BACKEND = stmLayout("stm_lb_backend", 36, {
  addr: [0, "u8"],
  port: [16, "u16"],
  family: [18, "u8"],
  flags: [19, "u8"],
  vip: [20, "u32"],
  mac: [24, "u8"],
  net_id: [32, "u32"],
});
export const LB_CT_KEY = stmLayout("stm_lb_ct_key", 40, {
  src: [0, "u8"],
  dst: [16, "u8"],
  sport: [32, "u16"],
  dport: [34, "u16"],
  proto: [36, "u8"],
  dir: [37, "u8"],
  family: [38, "u8"],
});
export const LB_CT = stmLayout("stm_lb_ct", 40, {
  addr: [0, "u8"],
  port: [16, "u16"],
  backend: [20, "u32"],
  vip: [24, "u32"],
  seen: [32, "u64"],
});
export const LB_HIT = stmLayout("stm_lb_hit", 24, { packets: [0, "u64"], bytes: [8, "u64"], flows: [16, "u64"] });

const F_ADDR = 1;
const F_DSR = 2;
export const LB_DSR_KEY = stmLayout("stm_lb_dsr_key", 12, { mac: [0, "u8"], vip: [8, "u32"] });
const B_UP = 1;
/** A table slot without a backend. */
export const LB_NONE = 0xffffffff;
export const LB_STAT = { new: 0, repick: 1, rev: 2 } as const;
const PROTO = { tcp: 6, udp: 17 } as const;

export interface LbKernelBackend {
  id: number;
  address: string;
  port: number;
  weight: number;
  up: boolean;
  /** Its endpoint's MAC and network id: a client of that network sends to it directly. */
  mac?: string;
  netId?: number;
}

export interface LbKernelVip {
  /** 1 … STM_LB_VIPS_MAX: its slot in stm_lb_rings. */
  id: number;
  address: string;
  port: number;
  proto: "tcp" | "udp";
  /** Maglev table size (a prime). */
  size: number;
  /** Direct server return: frames go to the backend's MAC, the VIP kept; its backends' ports
   * answer from the VIP (stm_lb_dsr). */
  dsr?: boolean;
  backends: LbKernelBackend[];
  /** Its table, when a backend is up: `sig` names the set it is built from (a table whose
   * signature the kernel holds is not rebuilt), `build` makes it (src/lb/maglev.ts). */
  table?: { sig: number; build: () => Uint32Array };
}

export interface LbMapSource {
  map(name: PinnedMap): BpfMap;
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};
const family = (ip: string) => (ip.includes(":") ? 6 : 4);

/** An address as the datapath keeps it: IPv4 in the first 4 of 16 bytes. */
export function lbAddr(ip: string): Buffer {
  const b = Buffer.alloc(16);
  ipToBytes(ip).copy(b);
  return b;
}

function vipKey(address: string, port: number, proto: number): Buffer {
  const k = encode(LB_VIP_KEY, { port, proto, family: family(address) });
  lbAddr(address).copy(k, 0);
  return k;
}

/** Sets of keys (value 1) kept as `want` says: the missing added first, the stale removed after
 * (apply orders the two around the VIPs' own writes). Each returns how many it wrote. */
function addMissing(m: BpfMap, have: Map<string, Buffer>, want: Map<string, Buffer>): number {
  let n = 0;
  for (const [hex, k] of want)
    if (!have.has(hex)) {
      m.update(k, u32(1));
      n++;
    }
  return n;
}

function removeStale(m: BpfMap, have: Map<string, Buffer>, want: Map<string, Buffer>): number {
  let n = 0;
  for (const hex of have.keys()) if (!want.has(hex) && m.delete(Buffer.from(hex, "hex"))) n++;
  return n;
}

export class LbTables {
  readonly #dp: LbMapSource;
  constructor(dp: LbMapSource) {
    this.#dp = dp;
  }

  /** Makes the kernel hold exactly `vips`; returns how many entries and tables it wrote. */
  apply(vips: LbKernelVip[]): { writes: number; tables: number } {
    const vipsMap = this.#dp.map("stm_lb_vips");
    const backends = this.#dp.map("stm_lb_backends");
    const rings = this.#dp.map("stm_lb_rings");
    const hits = this.#dp.map("stm_lb_hits");
    const bsrc = this.#dp.map("stm_lb_bsrc");
    const dsr = this.#dp.map("stm_lb_dsr");
    let writes = 0;
    // Read once, written where they differ: a table of 1,000 backends is one batch read, not
    // 2,000 lookups.
    const haveBackends = backends.snapshot();
    const haveHits = hits.snapshot();
    const haveSrc = bsrc.snapshot();
    const haveDsr = dsr.snapshot();
    // What NAT replies come from: every backend's address, port and protocol. The ports that
    // serve a DSR VIP: its backends' MACs.
    const wantSrc = new Map<string, Buffer>();
    const wantDsr = new Map<string, Buffer>();
    for (const v of vips)
      for (const b of v.backends) {
        if (v.dsr) {
          if (!b.mac) continue;
          const k = encode(LB_DSR_KEY, { vip: v.id });
          macToBytes(b.mac).copy(k, 0);
          wantDsr.set(k.toString("hex"), k);
          continue;
        }
        const k = vipKey(b.address, b.port, PROTO[v.proto]);
        wantSrc.set(k.toString("hex"), k);
      }
    writes += addMissing(bsrc, haveSrc, wantSrc) + addMissing(dsr, haveDsr, wantDsr);
    let tables = 0;
    const wantBackends = new Set<string>();
    for (const v of vips)
      for (const b of v.backends) {
        const k = u32(b.id);
        const hex = k.toString("hex");
        wantBackends.add(hex);
        const val = encode(LB_BACKEND, {
          port: b.port,
          family: family(b.address),
          flags: b.up ? B_UP : 0,
          vip: v.id,
          net_id: b.netId ?? 0,
        });
        lbAddr(b.address).copy(val, 0);
        if (b.mac) macToBytes(b.mac).copy(val, LB_BACKEND.fields.mac[0]);
        if (!haveBackends.get(hex)?.equals(val)) {
          backends.update(k, val);
          writes++;
        }
        if (!haveHits.has(hex)) {
          hits.update(k, Buffer.alloc(hits.valueBufSize));
          writes++;
        }
      }
    // The VIPs' keys, and those that go removed first: a VIP id freed and given to a new VIP in
    // the same run never serves the old VIP's packets with the new one's table.
    const wantVips = new Set<string>();
    for (const v of vips)
      for (const port of [v.port, 0]) wantVips.add(vipKey(v.address, port, port ? PROTO[v.proto] : 0).toString("hex"));
    for (const k of [...vipsMap.keys()]) if (!wantVips.has(k.toString("hex")) && vipsMap.delete(k)) writes++;
    const wantRings = new Set<number>();
    // One VIP that cannot be written (a table the kernel has no memory for) does not keep the
    // others, or the removals below, from being written: its error comes at the end.
    const failed: string[] = [];
    for (const v of vips) {
      try {
        const key = vipKey(v.address, v.port, PROTO[v.proto]);
        const sig = v.table?.sig ?? 0;
        const cur = vipsMap.lookup(key);
        const d = cur ? decode(LB_VIP, cur) : undefined;
        const ringSet = rings.lookup(u32(v.id)) !== null;
        if (v.table) wantRings.add(v.id);
        const current =
          d &&
          d.id === v.id &&
          d.size === v.size &&
          d.sig === sig &&
          d.flags === (v.dsr ? F_DSR : 0) &&
          ringSet === !!v.table;
        if (!current) {
          if (v.table) {
            const table = v.table.build();
            if (table.length !== v.size)
              throw new Error(`VIP ${v.id}: a table of ${table.length} slots, not ${v.size}`);
            using inner = BpfMap.create(BPF_MAP_TYPE.ARRAY, `stm_lb_ring_${v.id}`, 4, 4, v.size, BPF_F.INNER_MAP);
            const keys = new Uint32Array(v.size);
            for (let i = 0; i < v.size; i++) keys[i] = i;
            inner.updateBatch(
              new Uint8Array(keys.buffer),
              new Uint8Array(table.buffer, table.byteOffset, table.byteLength),
            );
            rings.update(u32(v.id), u32(inner.fd));
            tables++;
          } else if (ringSet) rings.delete(u32(v.id));
          vipsMap.update(key, encode(LB_VIP, { id: v.id, size: v.size, flags: v.dsr ? F_DSR : 0, sig }));
          writes++;
        }
        const akey = vipKey(v.address, 0, 0);
        if (vipsMap.ensure(akey, encode(LB_VIP, { id: 0, size: 0, flags: F_ADDR, sig: 0 }))) writes++;
      } catch (e) {
        failed.push(`VIP ${v.id} (${v.address}:${v.port}/${v.proto}): ${(e as Error).message}`);
      }
    }
    if (this.#dp.map("stm_lb_cfg").ensure(u32(0), encode(LB_CFG, { vips: vips.length, flags: 0 }))) writes++;
    // What nothing asks for any more (the VIPs went first): their tables and backends (a flow
    // still holding one is given another at its next packet).
    for (let id = 1; id < rings.info.maxEntries; id++)
      if (!wantRings.has(id) && rings.lookup(u32(id)) !== null && rings.delete(u32(id))) writes++;
    writes += removeStale(bsrc, haveSrc, wantSrc) + removeStale(dsr, haveDsr, wantDsr);
    for (const hex of haveBackends.keys())
      if (!wantBackends.has(hex)) {
        backends.delete(Buffer.from(hex, "hex"));
        hits.delete(Buffer.from(hex, "hex"));
        writes++;
      }
    if (failed.length) throw new Error(`the load balancer's tables: ${failed.join("; ")}`);
    return { writes, tables };
  }

  /** The backends the datapath has up (an agent starting again takes them as healthy). */
  up(): Set<number> {
    const out = new Set<number>();
    for (const [k, v] of this.#dp.map("stm_lb_backends").entries())
      if ((decode(LB_BACKEND, v).flags ?? 0) & B_UP) out.add(k.readUInt32LE(0));
    return out;
  }

  /** The table in force for VIP `id` (null: none). */
  table(id: number): Uint32Array | null {
    const v = this.#dp.map("stm_lb_rings").lookup(u32(id));
    if (!v) return null;
    using inner = BpfMap.fromFd(mapFdById(v.readUInt32LE(0)), true);
    const out = new Uint32Array(inner.info.maxEntries).fill(LB_NONE);
    for (const [k, val] of inner.entries()) out[k.readUInt32LE(0)] = val.readUInt32LE(0);
    return out;
  }

  /** Packets, bytes and new flows per backend id, summed over CPUs. */
  hits(): Map<number, { packets: number; bytes: number; flows: number }> {
    const m = this.#dp.map("stm_lb_hits");
    const out = new Map<number, { packets: number; bytes: number; flows: number }>();
    for (const [k, raw] of m.entries()) {
      const t = { packets: 0, bytes: 0, flows: 0 };
      for (const c of m.splitPerCpu(raw)) {
        const d = decode(LB_HIT, c);
        t.packets += Number(d.packets);
        t.bytes += Number(d.bytes);
        t.flows += Number(d.flows);
      }
      out.set(k.readUInt32LE(0), t);
    }
    return out;
  }

  /** Flows placed by a table, flows moved off a backend that went, replies given their VIP. */
  stats(): { new: number; repick: number; rev: number } {
    const m = this.#dp.map("stm_lb_stats");
    const sum = (i: number) => {
      const raw = m.lookup(u32(i));
      return raw ? m.splitPerCpu(raw).reduce((a, c) => a + Number(c.readBigUInt64LE(0)), 0) : 0;
    };
    return { new: sum(LB_STAT.new), repick: sum(LB_STAT.repick), rev: sum(LB_STAT.rev) };
  }
}
