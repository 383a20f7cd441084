/** The named benchmarks. Each compares Stratum's code with the floor it cannot beat,
 * measured in the same run: a program against the empty program of the same hook, an
 * FFI call against a plain JS call, a map lookup against the bare FFI crossing. */
import { loadObject } from "../../src/datapath/objects";
import { arp, ETH_P, ethernet, IPPROTO, ipv4, ipv6, tcp, udpFrame } from "../../src/datapath/packet";
import { encodeIfindex, encodePort } from "../../src/datapath/port-maps";
import { profileIp6, profileMac } from "../../src/model/network";
import { type BpfObject, testRun } from "../../src/sys/bpf";
import { libbpf } from "../../src/sys/ffi";
import { alloc, SK_BUFF } from "../../src/sys/layout";
import { classifyBench, firewallOnBench } from "./firewall";
import type { Benchmark } from "./harness";
import { monitorBench } from "./monitor";
import { throughputBench } from "./throughput";

/** A UDP frame every program benchmark runs on (the empty programs too). */
export const frame = udpFrame({
  srcMac: "02:00:0a:14:00:02",
  dstMac: "02:00:0a:14:00:03",
  src: "10.20.0.2",
  dst: "10.20.0.3",
  sport: 40000,
  dport: 53,
});

/** Wall-clock ns per packet over `repeat` runs inside the kernel (one syscall). */
function nsPerPacket(progFd: number, repeat: number, data: Uint8Array = frame, ctx?: Uint8Array): number {
  const t0 = Bun.nanoseconds();
  testRun(progFd, { data, repeat, ctx });
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

// Port ingress: a configured port (network 1, 10.20.0.0/24 and fd20::/64) and its legitimate traffic.
const PORT_MAC = profileMac(1, 1);
const PORT_IP = "10.20.0.2";
const PORT_IP6 = profileIp6("fd20::/64", PORT_MAC);
const PORT_FRAMES = {
  "ipv4-tcp": ethernet(
    { src: PORT_MAC, dst: profileMac(1, 2), type: ETH_P.IP },
    ipv4(
      { src: PORT_IP, dst: "10.20.0.3", proto: IPPROTO.TCP },
      tcp({ src: PORT_IP, dst: "10.20.0.3", sport: 40000, dport: 80, flags: 16 }, new Uint8Array(64)),
    ),
  ),
  arp: ethernet(
    { src: PORT_MAC, dst: "ff:ff:ff:ff:ff:ff", type: ETH_P.ARP },
    arp({ op: "request", senderMac: PORT_MAC, senderIp: PORT_IP, targetIp: "10.20.0.3" }),
  ),
  "ipv6-tcp": ethernet(
    { src: PORT_MAC, dst: profileMac(1, 2), type: ETH_P.IPV6 },
    ipv6(
      { src: PORT_IP6, dst: "fd20::3", next: IPPROTO.TCP },
      tcp({ src: PORT_IP6, dst: "fd20::3", sport: 40000, dport: 80, flags: 16 }, new Uint8Array(64)),
    ),
  ),
} as const;

/** stm_port_in on a legitimate frame against the empty tc program on the same frame. */
function portBench(kind: keyof typeof PORT_FRAMES): Benchmark {
  let port: BpfObject | undefined;
  let base: BpfObject | undefined;
  const REPEAT = 200_000;
  const data = PORT_FRAMES[kind];
  const ctx = alloc(SK_BUFF, { ifindex: 1 }); // lo: the test run's device
  return {
    name: `prog/port-in-${kind}`,
    unit: "ns/packet",
    setup() {
      port = loadObject("port");
      base = loadObject("baseline");
      port.map("stm_ports").update(
        encodeIfindex(1),
        encodePort({
          netId: 1,
          ip4: PORT_IP,
          mac: PORT_MAC,
          cidr4: "10.20.0.0/24",
          gw4: "10.20.0.1",
          ip6: PORT_IP6,
          cidr6: "fd20::/64",
        }),
      );
      const r = testRun(port.program("stm_port_in").fd, { data, ctx });
      if (r.retval !== -1) throw new Error(`stm_port_in drops the benchmark's ${kind} frame (verdict ${r.retval})`);
    },
    teardown() {
      port?.close();
      base?.close();
    },
    candidate: {
      label: `stm_port_in (${kind})`,
      measure: () => nsPerPacket((port as BpfObject).program("stm_port_in").fd, REPEAT, data, ctx),
    },
    baseline: {
      label: "stm_empty_tc",
      measure: () => nsPerPacket((base as BpfObject).program("stm_empty_tc").fd, REPEAT, data, ctx),
    },
  };
}

export const BENCHMARKS: Record<string, () => Benchmark> = {
  "prog/xdp-counter": () => progBench("prog/xdp-counter", "stm_count_xdp", "stm_empty_xdp"),
  "prog/tc-counter": () => progBench("prog/tc-counter", "stm_count_tc_in", "stm_empty_tc"),
  "prog/port-in-ipv4-tcp": () => portBench("ipv4-tcp"),
  "prog/port-in-arp": () => portBench("arp"),
  "prog/port-in-ipv6-tcp": () => portBench("ipv6-tcp"),
  "fw/classify-1-vs-off": firewallOnBench,
  "fw/classify-64": () => classifyBench(64),
  "fw/classify-1000": () => classifyBench(1000),
  "fw/classify-10000": () => classifyBench(10000),
  "fw/classify-10000-worst": () => classifyBench(10000, true),
  "mon/drop-paced-vs-off": () => monitorBench("drop", "paced"),
  "mon/drop-emit-vs-off": () => monitorBench("drop", "emit"),
  "mon/pass-paced-vs-off": () => monitorBench("pass", "paced"),
  "net/port-throughput": throughputBench,
  "ffi/libbpf-call": ffiBench,
  "ffi/map-lookup": lookupBench,
};
