/** Microsegmentation's cost.
 *
 * microseg/classify-*: stm_port_out on a packet to an endpoint in a group, from a group three
 * levels deep, decided by an entry for the source's root (every level of its line is looked
 * up), with 1,000 groups and 10,000 entries compiled into the maps; against the same program
 * with microsegmentation off (no groups), and against 100 entries (flat in the number of
 * entries). The packet is an ICMP echo reply the entry allows: never tracked, so every repeat
 * classifies.
 *
 * microseg/classify-with-firewall: the same with the network's firewall on in both (one rule that
 * allows everything: the port's common set-up), microsegmentation reusing the firewall's parse.
 *
 * microseg/tracked-vs-off: the steady state of an allowed TCP connection (the segment finds its
 * flow in stm_mseg_ct and passes without being classified) against microsegmentation off.
 *
 * microseg/gbp-throughput (opt-in, a two-node lab): iperf3 TCP between grouped endpoints on two
 * nodes (the group in VXLAN-GBP, the policy enforced at the receiver, flows tracked on both
 * ports), against an untagged pair on the same two nodes (no GBP, not segmented). */
import { FirewallTables } from "../../src/datapath/firewall-tables";
import { MsegTables } from "../../src/datapath/mseg-tables";
import { loadObject } from "../../src/datapath/objects";
import { ETH_P, ethernet, IPPROTO, icmp, ipv4, tcp } from "../../src/datapath/packet";
import { encodeIfindex, encodePort } from "../../src/datapath/port-maps";
import { parseRule } from "../../src/model/firewall-rule";
import { addGroup, addRules, emptyMicroseg, type MicrosegDoc, msegStamp } from "../../src/model/microseg";
import { type BpfObject, testRun } from "../../src/sys/bpf";
import { alloc, SK_BUFF } from "../../src/sys/layout";
import { Lab, type LabWorkload } from "../../test/helpers/lab";
import { prng } from "../../test/helpers/prng";
import type { Benchmark } from "./harness";
import { iperf } from "./overlay";

const PORT = 1;
const PEER = 901;
const MAC = "02:00:0a:00:05:07";
const SRC = "10.0.5.8";
const DST = "10.0.5.7";
const frame = ethernet(
  { src: "02:00:0a:00:05:08", dst: MAC, type: ETH_P.IP },
  ipv4(
    { src: SRC, dst: DST, proto: IPPROTO.ICMP },
    icmp({ src: SRC, dst: DST, type: 0, id: 7, seq: 1 }, new Uint8Array(56)),
  ),
);
const REPEAT = 100_000;

/** 1,000 groups: 10 roots, 9 under each, 10 under each of those. */
function tree(): MicrosegDoc {
  let doc = emptyMicroseg();
  for (let r = 0; r < 10; r++) {
    doc = addGroup(doc, { name: `r${r}` }).doc;
    for (let m = 0; m < 9; m++) {
      doc = addGroup(doc, { name: `r${r}/m${m}` }).doc;
      for (let l = 0; l < 10; l++) doc = addGroup(doc, { name: `r${r}/m${m}/l${l}` }).doc;
    }
  }
  return doc;
}

/** `n` entries between random groups (protocols and ports mixed), none between the benchmark
 * pair's source line and its destination but the one that decides: r0 → r9/m8/l9, ICMP allow. */
export function policy(n: number, extra: unknown[] = []): { doc: MicrosegDoc; src: number; dst: number } {
  const base = tree();
  const names = base.groups.map((g) => g.name);
  const r = prng(42);
  const specs: unknown[] = [{ from: "r0", to: "r9/m8/l9", action: "allow", proto: "icmp" }, ...extra];
  while (specs.length < n) {
    const from = names[Math.floor(r() * names.length)] as string;
    const to = names[Math.floor(r() * names.length)] as string;
    if (from.startsWith("r0") && "r9/m8/l9".startsWith(to)) continue;
    const k = r();
    specs.push({
      from,
      to,
      action: r() < 0.5 ? "allow" : "deny",
      ...(k < 0.3 ? { proto: "tcp", dport: 1 + Math.floor(r() * 65535) } : k < 0.5 ? { proto: "udp" } : {}),
    });
  }
  const doc = addRules(base, specs).doc;
  const id = (name: string) => doc.groups.find((g) => g.name === name)?.id as number;
  return { doc, src: id("r0/m0/l0"), dst: id("r9/m8/l9") };
}

function portWith(
  n: number | "off",
  extra: unknown[] = [],
  firewall = false,
): { obj: BpfObject; mark: number; keys: number } {
  const obj = loadObject("port");
  if (firewall)
    new FirewallTables({ map: (m) => obj.map(m) }).apply(
      1,
      [{ ...parseRule({ priority: 1, action: "allow" }), id: 1 }],
      "deny",
    );
  const p = policy(n === "off" ? 1 : n, extra);
  const cfg = { netId: 1, ip4: DST, mac: MAC, cidr4: "10.0.0.0/8", gw4: "10.0.0.1" };
  obj.map("stm_ports").update(encodeIfindex(PORT), encodePort({ ...cfg, group: n === "off" ? 0 : p.dst }));
  obj.map("stm_ports").update(encodeIfindex(PEER), encodePort({ ...cfg, ip4: SRC, mac: "02:00:0a:00:05:08" }));
  const applied = n === "off" ? { keys: 0 } : new MsegTables({ map: (m) => obj.map(m) }).apply(p.doc);
  const mark = n === "off" ? 0 : msegStamp(p.src);
  const r = testRun(obj.program("stm_port_out").fd, { data: frame, ctx: ctxOf(mark) });
  if (r.retval !== -1) throw new Error(`the benchmark packet does not pass with ${n} entries (${r.retval})`);
  if (n !== "off" && obj.map("stm_mseg_hits").lookup(Buffer.from([1, 0, 0, 0])) === null)
    throw new Error("the benchmark packet was not decided by its entry");
  return { obj, mark, keys: applied.keys };
}

const ctxOf = (mark: number) => alloc(SK_BUFF, { ifindex: PORT, ingress_ifindex: PEER, mark });

function nsPerPacket(p: { obj: BpfObject; mark: number }): number {
  const ctx = ctxOf(p.mark);
  const t0 = Bun.nanoseconds();
  testRun(p.obj.program("stm_port_out").fd, { data: frame, repeat: REPEAT, ctx });
  return (Bun.nanoseconds() - t0) / REPEAT;
}

function withFirewallBench(): Benchmark {
  let cand: ReturnType<typeof portWith> | undefined;
  let base: ReturnType<typeof portWith> | undefined;
  return {
    name: "microseg/classify-with-firewall",
    unit: "ns/packet",
    setup() {
      cand = portWith(10_000, [], true);
      base = portWith("off", [], true);
    },
    teardown() {
      cand?.obj.close();
      base?.obj.close();
    },
    candidate: {
      label: "stm_port_out, firewall on (1 rule) + 1,000 groups, 10,000 entries, source 3 levels deep",
      measure: () => nsPerPacket(cand as ReturnType<typeof portWith>),
    },
    baseline: {
      label: "stm_port_out, firewall on (1 rule), microsegmentation off",
      measure: () => nsPerPacket(base as ReturnType<typeof portWith>),
    },
  };
}

function classifyBench(base: 100 | "off"): Benchmark {
  let cand: ReturnType<typeof portWith> | undefined;
  let other: ReturnType<typeof portWith> | undefined;
  return {
    name: base === "off" ? "microseg/classify-10000-vs-off" : "microseg/classify-10000-vs-100",
    unit: "ns/packet",
    setup() {
      cand = portWith(10_000);
      other = portWith(base);
      process.stderr.write(
        `microseg: 10,000 entries compile to ${cand.keys} keys${base === 100 ? `, 100 to ${other.keys}` : ""}\n`,
      );
    },
    teardown() {
      cand?.obj.close();
      other?.obj.close();
    },
    candidate: {
      label: "stm_port_out, 1,000 groups, 10,000 entries, source 3 levels deep",
      measure: () => nsPerPacket(cand as ReturnType<typeof portWith>),
    },
    baseline: {
      label:
        base === "off" ? "stm_port_out, microsegmentation off (no groups)" : "stm_port_out, 1,000 groups, 100 entries",
      measure: () => nsPerPacket(other as ReturnType<typeof portWith>),
    },
  };
}

function gbpThroughputBench(): Benchmark {
  let lab: Lab | undefined;
  let w: LabWorkload[] = [];
  const SECONDS = 5;
  return {
    name: "microseg/gbp-throughput",
    unit: "Gbit/s",
    async setup() {
      lab = await Lab.create({ nodes: 2, tag: "mgb" });
      for (const node of lab.nodes) await node.start(node.clusterArgs());
      const [n1, n2] = [lab.node(1), lab.node(2)];
      n1.json("network", "create", "--name", "bench", "--cidr", "10.82.0.0/24", "--gateway", "10.82.0.1");
      const deadline = Date.now() + 10_000;
      while (!n2.json<any[]>("network", "list").length) {
        if (Date.now() > deadline) throw new Error("the network did not reach node2");
        await Bun.sleep(50);
      }
      for (const g of ["a", "b"]) n1.json("group", "create", g);
      n1.json("microseg", "rule", "add", "--from", "a", "--to", "b", "--proto", "tcp", "--action", "allow");
      w = [
        n1.workload("ga", "bench", ["--group", "a"]),
        n2.workload("gb", "bench", ["--group", "b"]),
        n1.workload("ua", "bench"),
        n2.workload("ub", "bench"),
      ];
      for (const [x, y] of [
        [0, 1],
        [2, 3],
      ] as const) {
        const end = Date.now() + 15_000;
        while (
          !(w[x] as LabWorkload)
            .exec(["bash", "-c", `echo > /dev/tcp/${(w[y] as LabWorkload).ip}/22`])
            .stderr.includes("refused")
        ) {
          if (Date.now() > end)
            throw new Error(`${(w[x] as LabWorkload).name} → ${(w[y] as LabWorkload).name}: no answer`);
          await Bun.sleep(100);
        }
      }
    },
    teardown() {
      lab?.destroy();
    },
    candidate: {
      label: "iperf3 TCP node1 → node2 between grouped endpoints (GBP carried, policy enforced, flows tracked)",
      measure: () => iperf((w[0] as LabWorkload).ns, (w[1] as LabWorkload).ns, (w[1] as LabWorkload).ip, SECONDS),
    },
    baseline: {
      label: "the same between untagged endpoints on the same nodes (no GBP, not segmented)",
      measure: () => iperf((w[2] as LabWorkload).ns, (w[3] as LabWorkload).ns, (w[3] as LabWorkload).ip, SECONDS),
    },
  };
}

const tcpFrame = (flags: number) =>
  ethernet(
    { src: "02:00:0a:00:05:08", dst: MAC, type: ETH_P.IP },
    ipv4(
      { src: SRC, dst: DST, proto: IPPROTO.TCP },
      tcp({ src: SRC, dst: DST, sport: 40000, dport: 5432, flags }, new Uint8Array(64)),
    ),
  );

function trackedBench(): Benchmark {
  let cand: ReturnType<typeof portWith> | undefined;
  let off: ReturnType<typeof portWith> | undefined;
  const ack = tcpFrame(0x10);
  const run = (p: ReturnType<typeof portWith>) => {
    const ctx = ctxOf(p.mark);
    const t0 = Bun.nanoseconds();
    testRun(p.obj.program("stm_port_out").fd, { data: ack, repeat: REPEAT, ctx });
    return (Bun.nanoseconds() - t0) / REPEAT;
  };
  return {
    name: "microseg/tracked-vs-off",
    unit: "ns/packet",
    setup() {
      cand = portWith(10_000, [{ from: "r0", to: "r9/m8/l9", action: "allow", proto: "tcp", dport: 5432 }]);
      off = portWith("off");
      // The SYN opens the flow (let in by the entry); its ACKs then pass on the tracked flow.
      const syn = testRun(cand.obj.program("stm_port_out").fd, { data: tcpFrame(0x02), ctx: ctxOf(cand.mark) });
      if (syn.retval !== -1 || [...cand.obj.map("stm_mseg_ct").keys()].length !== 1)
        throw new Error("the SYN did not open a tracked flow");
    },
    teardown() {
      cand?.obj.close();
      off?.obj.close();
    },
    candidate: {
      label: "stm_port_out, a TCP segment of a flow let in (tracked), 1,000 groups, 10,000 entries",
      measure: () => run(cand as ReturnType<typeof portWith>),
    },
    baseline: {
      label: "stm_port_out, microsegmentation off (no groups)",
      measure: () => run(off as ReturnType<typeof portWith>),
    },
  };
}

export const MSEG_BENCHMARKS: Record<string, () => Benchmark> = {
  "microseg/classify-10000-vs-off": () => classifyBench("off"),
  "microseg/classify-10000-vs-100": () => classifyBench(100),
  "microseg/classify-with-firewall": withFirewallBench,
  "microseg/tracked-vs-off": trackedBench,
  "microseg/gbp-throughput": gbpThroughputBench,
};
