/** The prebuilt BPF objects, embedded in the compiled binary (scripts/build produces
 * them before bundling), and their loader: bytes in memory → libbpf → loaded object. */
import { readFileSync } from "node:fs";
import baselineObj from "../../build/bpf/baseline.bpf.o" with { type: "file" };
import counterObj from "../../build/bpf/counter.bpf.o" with { type: "file" };
import portObj from "../../build/bpf/port.bpf.o" with { type: "file" };
import xskObj from "../../build/bpf/xsk.bpf.o" with { type: "file" };
import { StratumError } from "../errors";
import { BpfObject } from "../sys/bpf";
import { withLibbpfLog } from "../sys/ffi";

export const OBJECTS = {
  /** Per-(ifindex, hook) packet counters and packet sampling to a ring buffer. */
  counter: counterObj,
  /** Empty programs: the benchmark floor; a second program for replacement tests. */
  baseline: baselineObj,
  /** Workload port programs (tc ingress/egress of each veth or tap on cnv-user-br0). */
  port: portObj,
  /** A VM on AF_XDP: its VM end's XDP program and the sockets' map (bpf/xsk.bpf.c). */
  xsk: xskObj,
} as const;

export type ObjectName = keyof typeof OBJECTS;

const cache = new Map<ObjectName, Uint8Array>();

/** ELF bytes of an embedded object. */
export function objectBytes(name: ObjectName): Uint8Array {
  let b = cache.get(name);
  if (!b) {
    const path = OBJECTS[name];
    if (!path) throw new StratumError("NOT_FOUND", `no embedded BPF object named ${name}`);
    b = new Uint8Array(readFileSync(path));
    cache.set(name, b);
  }
  return b;
}

export interface LoadOptions {
  /** Maps to take over from existing fds (e.g. pinned maps), by map name. */
  reuse?: Record<string, number>;
  pinRoot?: string;
  /** Called between open and load (inspect map definitions, reuse maps …). */
  prepare?: (obj: BpfObject) => void;
}

/** Opens an embedded object without loading it (its programs' names, its maps' definitions). */
export function openObject(name: ObjectName, opts: { pinRoot?: string } = {}): BpfObject {
  return BpfObject.openMem(objectBytes(name), `stm_${name}`, opts);
}

/** Opens and loads an embedded object; a verifier rejection carries libbpf's log in `detail`. */
export function loadObject(name: ObjectName, opts: LoadOptions = {}): BpfObject {
  return withLibbpfLog(() => {
    const obj = openObject(name, { pinRoot: opts.pinRoot });
    try {
      for (const [map, fd] of Object.entries(opts.reuse ?? {})) obj.reuseMap(map, fd);
      opts.prepare?.(obj);
      return obj.load();
    } catch (e) {
      obj.close();
      throw e;
    }
  });
}
