/** Codec for the counter map (struct stm_count_key / stm_count_val in bpf/include/stm_abi.h)
 * and the pin layout of the counting programs. */
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { StratumError } from "../errors";
import { BpfMap, Fd, objGet } from "../sys/bpf";
import {
  type Attachment,
  attachTc,
  attachXdp,
  clsProgId,
  detachCls,
  detachPinnedLink,
  type TcMode,
  type XdpMode,
} from "./attach";
import { loadObject } from "./objects";
import { ensureBpffs } from "./probe";

/** A per-CPU array of u64 statistics (stm_fw_stats, stm_mon_stats, stm_nat_stats), summed over
 * the CPUs, by the names of its indexes in order. */
export function readStatArray<N extends string>(m: BpfMap, names: readonly N[]): Record<N, number> {
  const out = {} as Record<N, number>;
  names.forEach((name, i) => {
    const k = Buffer.alloc(4);
    k.writeUInt32LE(i);
    out[name] = (m.lookupPerCpu(k) ?? []).reduce<number>((a, v) => a + Number(v.readBigUInt64LE(0)), 0);
  });
  return out;
}

export const HOOKS = { "tc-ingress": 1, "tc-egress": 2, xdp: 3 } as const;
export type HookName = keyof typeof HOOKS;
const HOOK_NAMES: Record<number, HookName> = { 1: "tc-ingress", 2: "tc-egress", 3: "xdp" };

export const COUNT_KEY_SIZE = 8;
export const COUNT_VAL_SIZE = 16;

export interface Count {
  ifindex: number;
  hook: HookName | `hook${number}`;
  packets: number;
  bytes: number;
}

export function encodeCountKey(ifindex: number, hook: HookName): Buffer {
  const b = Buffer.alloc(COUNT_KEY_SIZE);
  b.writeUInt32LE(ifindex, 0);
  b.writeUInt32LE(HOOKS[hook], 4);
  return b;
}

export function decodeCountKey(b: Buffer): { ifindex: number; hook: Count["hook"] } {
  const h = b.readUInt32LE(4);
  return { ifindex: b.readUInt32LE(0), hook: HOOK_NAMES[h] ?? `hook${h}` };
}

/** Sums one per-CPU value buffer of stm_count_val. */
export function sumCountValue(map: BpfMap, raw: Buffer): { packets: number; bytes: number } {
  let packets = 0n;
  let bytes = 0n;
  for (const v of map.perCpu ? map.splitPerCpu(raw) : [raw]) {
    packets += v.readBigUInt64LE(0);
    bytes += v.readBigUInt64LE(8);
  }
  return { packets: Number(packets), bytes: Number(bytes) };
}

export function readCounts(map: BpfMap): Count[] {
  const out: Count[] = [];
  for (const [k, v] of map.entries()) out.push({ ...decodeCountKey(k), ...sumCountValue(map, v) });
  return out.sort((a, b) => a.ifindex - b.ifindex || a.hook.localeCompare(b.hook));
}

/** Pins of the counting programs under a pin root. */
export const counterPins = (pinRoot: string) => ({
  dir: `${pinRoot}/counter`,
  map: `${pinRoot}/counter/stm_counters`,
  link: (ifname: string, hook: HookName) => `${pinRoot}/counter/link_${ifname}_${hook}`,
});

// ---- the counting programs on live devices ------------------------------------------------

const PROGRAMS: Record<HookName, string> = {
  "tc-ingress": "stm_count_tc_in",
  "tc-egress": "stm_count_tc_out",
  xdp: "stm_count_xdp",
};

/** Loads the counting program for `hook`, shares the pinned counter map, attaches it to `ifindex` and pins the link. */
export function attachCounter(
  pinRoot: string,
  ifname: string,
  ifindex: number,
  hook: HookName,
  mode: TcMode | XdpMode = "auto",
): Attachment {
  ensureBpffs(pinRoot);
  const pins = counterPins(pinRoot);
  const pin = pins.link(ifname, hook);
  if (existsSync(pin))
    throw new StratumError("INVALID", `a counter is already attached at ${hook} of ${ifname} (${pin})`);
  const reuse: Record<string, number> = {};
  let shared: Fd | undefined;
  if (existsSync(pins.map)) {
    shared = new Fd(objGet(pins.map, "map"));
    reuse.stm_counters = shared.fd;
  }
  try {
    using obj = loadObject("counter", { reuse });
    if (!shared) {
      mkdirSync(pins.dir, { recursive: true });
      obj.map("stm_counters").pin(pins.map);
    }
    const prog = obj.program(PROGRAMS[hook]);
    if (hook === "xdp") return attachXdp(prog.fd, ifindex, { mode: mode as XdpMode, pin });
    const dir = hook === "tc-ingress" ? "ingress" : "egress";
    const a = attachTc(prog.fd, ifindex, dir, { mode: mode as TcMode, pin });
    return a;
  } finally {
    shared?.close();
  }
}

/** Counters from the pinned map; works without any process holding the programs. */
export function readPinnedCounts(pinRoot: string): Count[] {
  const pins = counterPins(pinRoot);
  if (!existsSync(pins.map)) throw new StratumError("NOT_FOUND", `no counters pinned under ${pinRoot}`);
  using map = BpfMap.openPinned(pins.map);
  return readCounts(map);
}

/** Detaches every pinned counter link (and Stratum's cls_bpf filters on `ifindexes`), then removes the pins. */
export function detachCounters(pinRoot: string, ifindexes: number[] = []): { links: number; filters: number } {
  const pins = counterPins(pinRoot);
  let links = 0;
  let filters = 0;
  if (existsSync(pins.dir)) {
    for (const f of readdirSync(pins.dir)) if (f.startsWith("link_") && detachPinnedLink(`${pins.dir}/${f}`)) links++;
  }
  for (const ifindex of ifindexes) {
    for (const dir of ["ingress", "egress"] as const) {
      if (clsProgId(ifindex, dir)) {
        detachCls(ifindex, dir);
        filters++;
      }
    }
  }
  rmSync(pins.dir, { recursive: true, force: true });
  return { links, filters };
}
