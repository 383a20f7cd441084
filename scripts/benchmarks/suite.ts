/** The named benchmarks. Each compares Stratum's code with the floor it cannot beat,
 * measured in the same run: a program against the empty program of the same hook, an
 * FFI call against a plain JS call, a map lookup against the bare FFI crossing. */
import { loadObject } from "../../src/datapath/objects";
import { udpFrame } from "../../src/datapath/packet";
import { type BpfObject, testRun } from "../../src/sys/bpf";
import { libbpf } from "../../src/sys/ffi";
import type { Benchmark } from "./harness";

const frame = udpFrame({
  srcMac: "02:00:0a:14:00:02",
  dstMac: "02:00:0a:14:00:03",
  src: "10.20.0.2",
  dst: "10.20.0.3",
  sport: 40000,
  dport: 53,
});

/** Wall-clock ns per packet over `repeat` runs inside the kernel (one syscall). */
function nsPerPacket(progFd: number, repeat: number): number {
  const t0 = Bun.nanoseconds();
  testRun(progFd, { data: frame, repeat });
  return (Bun.nanoseconds() - t0) / repeat;
}

function progBench(name: string, hookProg: string, emptyProg: string): Benchmark {
  let counter: BpfObject | undefined;
  let base: BpfObject | undefined;
  const REPEAT = 200_000;
  return {
    name,
    unit: "ns/packet",
    setup() {
      counter = loadObject("counter");
      base = loadObject("baseline");
    },
    teardown() {
      counter?.close();
      base?.close();
    },
    candidate: { label: hookProg, measure: () => nsPerPacket((counter as BpfObject).program(hookProg).fd, REPEAT) },
    baseline: { label: emptyProg, measure: () => nsPerPacket((base as BpfObject).program(emptyProg).fd, REPEAT) },
  };
}

// Kept out of reach of the optimiser: the call goes through an array slot it cannot prove constant.
const jsTargets: Array<() => number> = [() => 1, () => 2];

function ffiBench(): Benchmark {
  const N = 1_000_000;
  return {
    name: "ffi/libbpf-call",
    unit: "ns/call",
    candidate: {
      label: "libbpf_major_version()",
      measure() {
        const f = libbpf().libbpf_major_version;
        let acc = 0;
        const t0 = Bun.nanoseconds();
        for (let i = 0; i < N; i++) acc += f();
        const dt = Bun.nanoseconds() - t0;
        if (acc === -1) throw new Error("unreachable");
        return dt / N;
      },
    },
    baseline: {
      label: "JS function call",
      measure() {
        let acc = 0;
        const t0 = Bun.nanoseconds();
        for (let i = 0; i < N; i++) acc += (jsTargets[i & 1] as () => number)();
        const dt = Bun.nanoseconds() - t0;
        if (acc === -1) throw new Error("unreachable");
        return dt / N;
      },
    },
  };
}

function lookupBench(): Benchmark {
  let obj: BpfObject | undefined;
  const N = 200_000;
  return {
    name: "ffi/map-lookup",
    unit: "ns/call",
    setup() {
      obj = loadObject("counter");
    },
    teardown() {
      obj?.close();
    },
    candidate: {
      label: "bpf_map_lookup_elem (syscall)",
      measure() {
        const fd = (obj as BpfObject).map("stm_counters").fd;
        const key = Buffer.alloc(8);
        const val = Buffer.alloc(16 * 64);
        const lookup = libbpf().bpf_map_lookup_elem;
        const t0 = Bun.nanoseconds();
        for (let i = 0; i < N; i++) lookup(fd, key, val);
        return (Bun.nanoseconds() - t0) / N;
      },
    },
    baseline: {
      label: "libbpf_major_version()",
      measure() {
        const f = libbpf().libbpf_major_version;
        const t0 = Bun.nanoseconds();
        for (let i = 0; i < N; i++) f();
        return (Bun.nanoseconds() - t0) / N;
      },
    },
  };
}

export const BENCHMARKS: Record<string, () => Benchmark> = {
  "prog/xdp-counter": () => progBench("prog/xdp-counter", "stm_count_xdp", "stm_empty_xdp"),
  "prog/tc-counter": () => progBench("prog/tc-counter", "stm_count_tc_in", "stm_empty_tc"),
  "ffi/libbpf-call": ffiBench,
  "ffi/map-lookup": lookupBench,
};
