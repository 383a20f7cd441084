/** Microsegmentation's kernel side (bpf/include/stm_mseg.h): every group's line up the tree
 * (an array by group id: a deleted group's is zeroed),
 * the compiled policy as a new generation beside the active one, one map update to switch to
 * it, then the old generation removed. Packets see the old policy or the new, never a mixture;
 * a write that fails removes what it wrote and leaves the active generation in force. */
import {
  type CompiledMicroseg,
  compileMicroseg,
  type MicrosegDoc,
  MSEG,
  type MsegKey,
  type MsegVal,
} from "../model/microseg";
import type { BpfMap } from "../sys/bpf";
import { encode, get } from "../sys/layout";
import { stmLayout } from "./abi-layouts";
import type { PinnedMap } from "./map-roles";

export const MSEG_CFG = stmLayout("stm_mseg_cfg", 8, { flags: [0, "u32"], gen: [4, "u32"] });
export const MSEG_GROUP = stmLayout("stm_mseg_group", 20, { chain: [0, "u16"], len: [16, "u32"] });
export const MSEG_KEY = stmLayout("stm_mseg_key", 8, {
  dst: [0, "u16"],
  src: [2, "u16"],
  dport: [4, "u16"],
  proto: [6, "u8"],
  gen: [7, "u8"],
});
export const MSEG_VAL = stmLayout("stm_mseg_val", 8, {
  dist: [0, "u8"],
  action: [1, "u8"],
  flags: [2, "u8"],
  id: [4, "u32"],
});
export const MSEG_F_ON = 1;
const V_LOG = 1;
const V_MORE = 2;
/** Monitor log events of microsegmentation entries carry their id with this bit. */
export const MSEG_LOG_ID = MSEG.LOG_ID;

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};

export function encodeMsegKey(k: MsegKey, gen: number): Buffer {
  return encode(MSEG_KEY, { dst: k.dst, src: k.src, dport: k.dport, proto: k.proto, gen: gen & 0xff });
}

function encodeVal(val: MsegVal): Buffer {
  return encode(MSEG_VAL, {
    dist: Math.min(val.dist, 0xff),
    action: val.action,
    flags: (val.log ? V_LOG : 0) | (val.more ? V_MORE : 0),
    id: val.id,
  });
}

function encodeLine(line: number[]): Buffer {
  const b = encode(MSEG_GROUP, { len: line.length });
  line.forEach((id, i) => {
    b.writeUInt16LE(id, MSEG_GROUP.fields.chain[0] + 2 * i);
  });
  return b;
}

export interface MsegMapSource {
  map(name: PinnedMap): BpfMap;
}

export interface MsegApplied {
  gen: number;
  groups: number;
  keys: number;
}

export class MsegTables {
  readonly #dp: MsegMapSource;
  constructor(dp: MsegMapSource) {
    this.#dp = dp;
  }

  /** The active generation (0: never written) and whether segmentation is on. */
  state(): { gen: number; on: boolean } {
    const v = this.#dp.map("stm_mseg_cfg").lookup(u32(0));
    if (!v) return { gen: 0, on: false };
    return { gen: get(v, MSEG_CFG, "gen"), on: (get(v, MSEG_CFG, "flags") & MSEG_F_ON) !== 0 };
  }

  /** Whether the kernel holds exactly this compiled policy (then apply would change nothing). */
  inForce(c: CompiledMicroseg): boolean {
    const st = this.state();
    if (st.on !== c.lines.size > 0) return false;
    // An array by group id: only ids the policy ever gave can hold a line.
    const groups = this.#dp.map("stm_mseg_groups");
    const empty = Buffer.alloc(MSEG_GROUP.size);
    for (let id = 1; id < c.nextGroupId; id++) {
      const line = c.lines.get(id);
      const v = groups.lookup(u32(id));
      if (!v?.equals(line ? encodeLine(line) : empty)) return false;
    }
    let n = 0;
    const genOff = MSEG_KEY.fields.gen[0];
    const want = new Map<string, Buffer>();
    for (const { key, val } of c.policy.values()) want.set(encodeMsegKey(key, st.gen).toString("hex"), encodeVal(val));
    n = 0;
    for (const [k, v] of this.#dp.map("stm_mseg_pol").entries()) {
      if (k[genOff] !== (st.gen & 0xff)) return false;
      const w = want.get(k.toString("hex"));
      if (!w?.equals(v)) return false;
      n++;
    }
    return n === want.size;
  }

  /** Compiles and installs the policy (compile errors throw before anything is written). */
  apply(doc: MicrosegDoc, compiled: CompiledMicroseg = compileMicroseg(doc)): MsegApplied {
    const groups = this.#dp.map("stm_mseg_groups");
    const pol = this.#dp.map("stm_mseg_pol");
    const cfg = this.#dp.map("stm_mseg_cfg");
    const { gen: cur } = this.state();
    const gen = (cur + 1) & 0xff || 1;
    // Lines first: a group's line never changes, so writing them early changes no verdict.
    for (const [id, line] of compiled.lines) {
      const v = encodeLine(line);
      if (!groups.lookup(u32(id))?.equals(v)) groups.update(u32(id), v);
    }
    const written: Buffer[] = [];
    try {
      for (const { key, val } of compiled.policy.values()) {
        const k = encodeMsegKey(key, gen);
        pol.update(k, encodeVal(val));
        written.push(k);
      }
    } catch (e) {
      for (const k of written) pol.delete(k);
      throw e;
    }
    cfg.update(u32(0), encode(MSEG_CFG, { flags: compiled.lines.size > 0 ? MSEG_F_ON : 0, gen }));
    // The old generation (and anything older a crash left), and the lines of deleted groups.
    const genOff = MSEG_KEY.fields.gen[0];
    for (const k of [...pol.keys()]) if (k[genOff] !== gen) pol.delete(k);
    const empty = Buffer.alloc(MSEG_GROUP.size);
    for (let id = 1; id < compiled.nextGroupId; id++)
      if (!compiled.lines.has(id) && !groups.lookup(u32(id))?.equals(empty)) groups.update(u32(id), empty);
    return { gen, groups: compiled.lines.size, keys: compiled.policy.size };
  }

  /** Hits per entry id (MSEG.DEFAULT_ID: what no entry decided), summed over CPUs. */
  hits(): Map<number, { packets: number; bytes: number }> {
    const m = this.#dp.map("stm_mseg_hits");
    const out = new Map<number, { packets: number; bytes: number }>();
    for (const [k, v] of m.entries()) {
      let packets = 0n;
      let bytes = 0n;
      for (const c of m.splitPerCpu(v)) {
        packets += c.readBigUInt64LE(0);
        bytes += c.readBigUInt64LE(8);
      }
      out.set(k.readUInt32LE(0), { packets: Number(packets), bytes: Number(bytes) });
    }
    return out;
  }

  /** Forgets the counters of entries that no longer exist. */
  pruneHits(live: Set<number>): void {
    const m = this.#dp.map("stm_mseg_hits");
    for (const k of [...m.keys()]) {
      const id = k.readUInt32LE(0);
      if (id !== MSEG.DEFAULT_ID && !live.has(id)) m.delete(k);
    }
  }
}
