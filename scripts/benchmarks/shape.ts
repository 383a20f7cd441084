/** Egress caps (issue: token-bucket limiter at tc egress).
 *
 * - shape/{tcp,udp}-{20,100,500}m: what iperf3 gets through a network's cap at the uplink
 *   (a real agent, a workload, the uplink, a sink namespace), against the configured rate:
 *   the ratio is achieved / configured. TCP one stream; UDP offered at twice the cap. The
 *   receiver's rate after the first second (-O 1): the burst a full bucket lets through at
 *   once belongs to the cap, not to its rate.
 * - shape/limiter: ns per packet of the limiter alone (stm_shape, passing) against the empty
 *   tc program, BPF_PROG_TEST_RUN on the same frame.
 * - shape/cpu-vs-htb, shape/cpu-vs-tbf: CPU time of the whole machine per gigabit delivered,
 *   TCP through a 500 Mbit/s cap: Stratum's network cap against the kernel's HTB or TBF
 *   qdisc on the same uplink at the same rate (and no Stratum cap).
 * - shape/bucket-one-cpu, shape/bucket-spread: the per-CPU bucket design (cap / CPUs each)
 *   against Stratum's shared bucket, under a flood of test frames on CPU 0 only, and on
 *   every CPU: Mbit/s passed with a 1 Gbit/s cap. shape/bucket-cost-spread: ns per packet
 *   of the two under the spread flood (the shared bucket's lock, contended).
 * Every namespace, qdisc and pin is removed afterwards. */
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { loadObject } from "../../src/datapath/objects";
import {
  decodeShapeState,
  encodeShapeCfg,
  encodeShapeKey,
  SHAPE_KIND,
  SHAPE_STATE_SIZE,
} from "../../src/datapath/shape-maps";
import { BpfObject, numPossibleCpus, pinFd, testRun } from "../../src/sys/bpf";
import { withLibbpfLog } from "../../src/sys/ffi";
import { alloc, SK_BUFF } from "../../src/sys/layout";
import { BenchAgent } from "./agent";
import { type Benchmark, BINARY, ROOT, sh } from "./harness";
import { frame } from "./suite";

const BENCH_OBJECT = join(ROOT, "build/bench-bpf/shape_bench.bpf.o");
const FLOOD = join(import.meta.dir, "shape-flood.ts");

/** The machine's busy CPU time so far (all CPUs), seconds, from /proc/stat. */
function cpuBusySeconds(): number {
  const f = (readFileSync("/proc/stat", "utf8").split("\n")[0] as string).trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f as number[];
  void idle;
  void iowait;
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / 100;
}

const SINK = "10.99.0.2";

/** A real agent with an uplink (veth upl0, a port of the bridge) to a sink namespace, one
 * network (t1, 10.70.1.0/24) and one workload in it. */
class CapLab {
  readonly agent = new BenchAgent();
  ws = "";
  out = "";
  server: Subprocess | undefined;

  ctl(...args: string[]): string {
    return sh([BINARY, ...args, "--api-socket", this.agent.sock]);
  }

  async setup(): Promise<void> {
    this.out = this.agent.netns("out");
    this.ws = this.agent.netns("ws");
    await this.agent.start(["--uplink", "upl0"], () => {
      const node = this.agent.ns;
      sh(["ip", "-n", node, "link", "add", "upl0", "type", "veth", "peer", "name", "ext0", "netns", this.out]);
      sh(["ip", "-n", node, "link", "set", "upl0", "up"]);
      sh(["ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
      sh(["ip", "-n", this.out, "addr", "add", `${SINK}/24`, "dev", "ext0"]);
      sh(["ip", "-n", this.out, "link", "set", "ext0", "up"]);
      sh(["ip", "-n", this.out, "link", "set", "lo", "up"]);
      sh(["ip", "-n", this.out, "route", "add", "10.70.0.0/16", "via", "10.99.0.1"]);
    });
    // The node's address on the uplink's LAN lives on the bridge (the uplink is its port).
    sh(["ip", "-n", this.agent.ns, "addr", "add", "10.99.0.1/24", "dev", "cnv-user-br0"]);
    this.ctl("network", "create", "--name", "t1", "--cidr", "10.70.1.0/24", "--gateway", "10.70.1.1");
    this.ctl("network", "attach", "t1", "--name", "w1", "--netns", this.ws, "--configure");
    this.server = Bun.spawn(["ip", "netns", "exec", this.out, "iperf3", "-s"], { stdout: "ignore", stderr: "ignore" });
    await Bun.sleep(300);
    sh(["ip", "netns", "exec", this.ws, "ping", "-c", "1", "-W", "2", SINK]);
  }

  teardown(): void {
    this.server?.kill("SIGKILL");
    this.agent.stop();
  }

  setCap(rate: string): void {
    this.ctl("network", "set", "t1", "--egress-rate", rate);
  }

  /** iperf3 from the workload to the sink: the receiver's Mbit/s and bytes. */
  iperf(o: { udp?: string; seconds?: number; omit?: boolean }): { mbit: number; bytes: number } {
    const args = ["iperf3", "-c", SINK, "-t", String(o.seconds ?? 4), "-J"];
    if (o.omit !== false) args.push("-O", "1");
    if (o.udp) args.push("-u", "-b", o.udp, "-l", "1400");
    const out = sh(["ip", "netns", "exec", this.ws, ...args]);
    const r = JSON.parse(out).end?.sum_received;
    if (typeof r?.bits_per_second !== "number") throw new Error(`iperf3 gave no receiver figure: ${out.slice(0, 300)}`);
    return { mbit: r.bits_per_second / 1e6, bytes: r.bytes };
  }
}

function rateBench(kind: "tcp" | "udp", mbit: number): Benchmark {
  const lab = new CapLab();
  return {
    name: `shape/${kind}-${mbit}m`,
    unit: "Mbit/s",
    async setup() {
      await lab.setup();
      lab.setCap(`${mbit}mbit`);
    },
    teardown: () => lab.teardown(),
    candidate: {
      label: `iperf3 ${kind.toUpperCase()}${kind === "udp" ? ` at ${2 * mbit}M` : ""} through a ${mbit}mbit network cap`,
      measure: () => lab.iperf(kind === "udp" ? { udp: `${2 * mbit}M` } : {}).mbit,
    },
    baseline: { label: "the configured cap", measure: () => mbit },
  };
}

/** CPU per gigabit through a 500 Mbit/s cap: Stratum's against a kernel qdisc on the uplink. */
function cpuBench(qdisc: "htb" | "tbf"): Benchmark {
  const lab = new CapLab();
  const RATE = "500mbit";
  const tc = (...args: string[]) => sh(["ip", "netns", "exec", lab.agent.ns, "tc", ...args]);
  const perGbit = (): number => {
    const c0 = cpuBusySeconds();
    const r = lab.iperf({ seconds: 4, omit: false });
    const cpu = cpuBusySeconds() - c0;
    achieved.push(r.mbit);
    return (cpu * 1e3) / ((r.bytes * 8) / 1e9);
  };
  const achieved: number[] = [];
  let qdiscAchieved: number[] = [];
  return {
    name: `shape/cpu-vs-${qdisc}`,
    unit: "ms CPU/Gbit",
    async setup() {
      await lab.setup();
    },
    teardown() {
      const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]?.toFixed(0);
      process.stderr.write(`\n  delivered (median Mbit/s): stratum ${med(achieved)}, ${qdisc} ${med(qdiscAchieved)}`);
      lab.teardown();
    },
    candidate: {
      label: `stratum network cap ${RATE} (TCP, whole machine)`,
      measure() {
        lab.setCap(RATE);
        return perGbit();
      },
    },
    baseline: {
      label: `tc ${qdisc} ${RATE} on the uplink, no cap`,
      measure() {
        lab.setCap("none");
        if (qdisc === "htb") {
          tc("qdisc", "replace", "dev", "upl0", "root", "handle", "1:", "htb", "default", "10");
          tc("class", "replace", "dev", "upl0", "parent", "1:", "classid", "1:10", "htb", "rate", RATE);
        } else tc("qdisc", "replace", "dev", "upl0", "root", "tbf", "rate", RATE, "burst", "1mb", "latency", "50ms");
        try {
          const before = achieved.length;
          const v = perGbit();
          qdiscAchieved = [...qdiscAchieved, ...achieved.splice(before)];
          return v;
        } finally {
          tc("qdisc", "del", "dev", "upl0", "root");
        }
      },
    },
  };
}

function loadBenchObject(): BpfObject {
  return withLibbpfLog(() => BpfObject.openMem(new Uint8Array(readFileSync(BENCH_OBJECT)), "stm_shape_bench").load());
}

function limiterBench(): Benchmark {
  let obj: BpfObject | undefined;
  let base: BpfObject | undefined;
  const REPEAT = 200_000;
  const ctx = alloc(SK_BUFF, { ifindex: 1 });
  const ns = (fd: number) => {
    const t0 = Bun.nanoseconds();
    testRun(fd, { data: frame, repeat: REPEAT, ctx });
    return (Bun.nanoseconds() - t0) / REPEAT;
  };
  return {
    name: "shape/limiter",
    unit: "ns/packet",
    setup() {
      obj = loadBenchObject();
      base = loadObject("baseline");
      // A cap no test run can exceed: every packet takes the whole path and passes.
      obj
        .map("stm_shape_cfg")
        .update(encodeShapeKey(SHAPE_KIND.NETWORK, 1), encodeShapeCfg({ rate: 400e9, burst: 1024 ** 3 }));
      const r = testRun(obj.program("stm_bench_shape").fd, { data: frame, repeat: 1000, ctx });
      if (r.retval !== -1) throw new Error(`the limiter dropped the benchmark's frame (verdict ${r.retval})`);
    },
    teardown() {
      obj?.close();
      base?.close();
    },
    candidate: {
      label: "stm_shape (shared bucket, passing)",
      measure: () => ns((obj as BpfObject).program("stm_bench_shape").fd),
    },
    baseline: { label: "stm_empty_tc", measure: () => ns((base as BpfObject).program("stm_empty_tc").fd) },
  };
}

type Design = "shared" | "percpu";

/** The two bucket designs behind pinned programs, flooded by one process per CPU. */
class BucketLab {
  obj: BpfObject | undefined;
  readonly dir = `/sys/fs/bpf/stmshb${process.pid}`;
  readonly cpus = availableParallelism();
  static readonly RATE = 1e9;
  static readonly BURST = 64 * 1024;
  static readonly FRAME = 1000;

  setup(): void {
    this.obj = loadBenchObject();
    mkdirSync(this.dir, { recursive: true });
    pinFd(this.obj.program("stm_bench_shape").fd, `${this.dir}/shared`, "program");
    pinFd(this.obj.program("stm_bench_shape_percpu").fd, `${this.dir}/percpu`, "program");
    this.obj
      .map("stm_shape_cfg")
      .update(encodeShapeKey(SHAPE_KIND.NETWORK, 1), encodeShapeCfg({ rate: BucketLab.RATE, burst: BucketLab.BURST }));
    this.obj
      .map("stm_bench_percpu_cfg")
      .update(
        Buffer.alloc(4),
        encodeShapeCfg({ rate: Math.round(BucketLab.RATE / this.cpus), burst: BucketLab.BURST }),
      );
  }

  teardown(): void {
    this.obj?.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  #reset(d: Design): void {
    const o = this.obj as BpfObject;
    if (d === "shared") o.map("stm_shape_state").delete(encodeShapeKey(SHAPE_KIND.NETWORK, 1));
    else o.map("stm_bench_percpu").update(Buffer.alloc(4), Buffer.alloc(SHAPE_STATE_SIZE * numPossibleCpus()));
  }

  #passedBytes(d: Design): number {
    const o = this.obj as BpfObject;
    if (d === "shared") {
      const v = o.map("stm_shape_state").lookup(encodeShapeKey(SHAPE_KIND.NETWORK, 1));
      return v ? decodeShapeState(v).passed.bytes : 0;
    }
    const per = o.map("stm_bench_percpu").lookupPerCpu(Buffer.alloc(4)) ?? [];
    return per.reduce((a, b) => a + decodeShapeState(b).passed.bytes, 0);
  }

  /** Floods design `d` from the given CPUs for one second: Mbit/s passed, ns per packet. */
  async flood(d: Design, cpus: number[]): Promise<{ mbit: number; ns: number }> {
    this.#reset(d);
    const start = Date.now() + 600; // every process up and waiting
    const end = start + 1000;
    const procs = cpus.map((c) =>
      Bun.spawn(
        [
          "taskset",
          "-c",
          String(c),
          process.execPath,
          FLOOD,
          `${this.dir}/${d}`,
          String(BucketLab.FRAME),
          String(start),
          String(end),
        ],
        { stdout: "pipe", stderr: "pipe" },
      ),
    );
    const outs = await Promise.all(
      procs.map(async (p) => {
        const [o, e, code] = await Promise.all([
          new Response(p.stdout).text(),
          new Response(p.stderr).text(),
          p.exited,
        ]);
        if (code !== 0) throw new Error(`flood process exited ${code}: ${e}`);
        return JSON.parse(o) as { packets: number; nsPerPacket: number };
      }),
    );
    const bytes = Math.max(0, this.#passedBytes(d) - BucketLab.BURST * (d === "shared" ? 1 : this.cpus));
    const packets = outs.reduce((a, o) => a + o.packets, 0);
    return { mbit: (bytes * 8) / 1e6, ns: outs.reduce((a, o) => a + o.nsPerPacket * o.packets, 0) / packets };
  }
}

function bucketBench(kind: "one-cpu" | "spread" | "cost-spread"): Benchmark {
  const lab = new BucketLab();
  const cpus = kind === "one-cpu" ? [0] : Array.from({ length: lab.cpus }, (_, i) => i);
  const where = kind === "one-cpu" ? "flood on CPU 0" : `flood on CPUs 0-${lab.cpus - 1}`;
  const cost = kind === "cost-spread";
  const pick = (r: { mbit: number; ns: number }) => (cost ? r.ns : r.mbit);
  return {
    name: `shape/bucket-${kind}`,
    unit: cost ? "ns/packet" : "Mbit/s",
    setup: () => lab.setup(),
    teardown: () => lab.teardown(),
    candidate: cost
      ? { label: `shared bucket under its lock, ${where}`, measure: async () => pick(await lab.flood("shared", cpus)) }
      : {
          label: `per-CPU buckets (cap / ${lab.cpus} each), ${where}`,
          measure: async () => pick(await lab.flood("percpu", cpus)),
        },
    baseline: cost
      ? { label: `per-CPU buckets, ${where}`, measure: async () => pick(await lab.flood("percpu", cpus)) }
      : {
          label: `shared bucket (Stratum), 1gbit cap, ${where}`,
          measure: async () => pick(await lab.flood("shared", cpus)),
        },
  };
}

export const SHAPE_BENCHMARKS: Record<string, () => Benchmark> = {
  "shape/tcp-20m": () => rateBench("tcp", 20),
  "shape/tcp-100m": () => rateBench("tcp", 100),
  "shape/tcp-500m": () => rateBench("tcp", 500),
  "shape/udp-20m": () => rateBench("udp", 20),
  "shape/udp-100m": () => rateBench("udp", 100),
  "shape/udp-500m": () => rateBench("udp", 500),
  "shape/limiter": limiterBench,
  "shape/cpu-vs-htb": () => cpuBench("htb"),
  "shape/cpu-vs-tbf": () => cpuBench("tbf"),
  "shape/bucket-one-cpu": () => bucketBench("one-cpu"),
  "shape/bucket-spread": () => bucketBench("spread"),
  "shape/bucket-cost-spread": () => bucketBench("cost-spread"),
};
