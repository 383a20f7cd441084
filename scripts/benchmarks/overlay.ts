/** Overlay figures on the lab (test/helpers/lab.ts), each against a floor measured in the same
 * run (docs/overlay.md):
 *  - throughput: iperf3 TCP between endpoints of one network on node1 and node2, through
 *    Stratum's overlay (ports, cnv-vxlan0 and their programs), against plain kernel VXLAN
 *    between namespaces of the same two nodes (a bridge, a VXLAN device with a fixed VNI and
 *    remote, veths; no programs of Stratum on its path but the underlay's XDP check, which
 *    passes its port 4790 untouched); both at the overlay's MTU (1450);
 *  - move: `endpoint move` of an endpoint between node1 and node2 while node3's endpoint pings
 *    it every 10 ms and it streams TCP to node3 in a default-deny network: the longest gap
 *    between echo replies across a move, against the longest gap over an equal window
 *    without one; the TCP stream's longest stall (100 ms intervals) and whether it survived;
 *  - attach → forward: an attach request to node1's API until node3's overlay has the
 *    endpoint (its stm_remote entry, read from node3's pinned map every 0.2 ms; the FDB entry
 *    is written right after it in the same run), against the request itself;
 *  - underlay broadcasts: VXLAN frames carrying a broadcast or multicast inner frame per 1,000
 *    VXLAN frames on the underlay, while endpoints on three nodes resolve and ping each other
 *    from empty neighbour caches (IPv4 and IPv6), against plain kernel VXLAN (flood and learn
 *    to the other node) doing the same;
 *  - neighbour answers: the first echo's round trip after the requester's neighbour cache is
 *    flushed (resolution included), answered by Stratum's port program (the target set never
 *    to answer ARP itself), against a plain bridge that floods the request to the target,
 *    which answers (one agent; namespaces of their own). The bridge's neigh_suppress, the
 *    other candidate, answered nothing on this kernel with a permanent neighbour entry and a
 *    static FDB entry (docs/overlay.md).
 * Opt-in (labs of their own): `scripts/bench overlay`. Everything (namespaces, processes by
 * PID, pins, directories) is removed afterwards, pass or fail, and on exit. */

import { encodeMacKey } from "../../src/datapath/port-maps";
import { profileMac } from "../../src/model/network";
import { BpfMap } from "../../src/sys/bpf";
import { TestAgent } from "../../test/helpers/agent";
import { apiCall, Lab, type LabNode, type LabWorkload } from "../../test/helpers/lab";
import { Netns } from "../../test/helpers/netns";
import { type Benchmark, BINARY, median, percentile } from "./harness";

const note = (lines: string[]) => process.stderr.write(`\n  ${lines.join("\n  ")}`);
const fmt = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));

function sh(ns: { name: string }, lines: string[]): void {
  const r = Bun.spawnSync(["ip", "-n", ns.name, "-batch", "-"], { stdin: Buffer.from(`${lines.join("\n")}\n`) });
  if (r.exitCode !== 0) throw new Error(`ip -n ${ns.name} -batch: ${r.stderr}`);
}

export function exec(ns: { name: string }, cmd: string[]): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(["ip", "netns", "exec", ns.name, ...cmd], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}

async function until(what: string, fn: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

/** Gbit/s of `seconds` of iperf3 TCP from `client` to `server` (a server started for the run),
 * the first second (slow start) left out. The client runs on CPU 0 and the server on CPU 1 for
 * both sides of a comparison: on two cores, where the scheduler puts them moves a single
 * stream by ±15%, more than what is measured. */
export async function iperf(
  client: { name: string },
  server: { name: string },
  ip: string,
  seconds: number,
): Promise<number> {
  const srv = Bun.spawn(["ip", "netns", "exec", server.name, "iperf3", "-s", "-1", "-p", "5400"], {
    stdout: "ignore",
    stderr: "ignore",
  });
  try {
    await Bun.sleep(200);
    const r = exec(client, ["iperf3", "-c", ip, "-p", "5400", "-t", String(seconds), "-O", "1", "-A", "0,1", "-J"]);
    if (r.code !== 0) throw new Error(`iperf3 to ${ip}: ${r.out.slice(-300)} ${r.err}`);
    return JSON.parse(r.out).end.sum_received.bits_per_second / 1e9;
  } finally {
    srv.kill();
    await srv.exited;
  }
}

/** A cluster of `n` nodes with one network (default `deny` or allow) and the lab. */
async function overlayLab(n: number, tag: string, defaultAction: "allow" | "deny" = "allow"): Promise<Lab> {
  const lab = await Lab.create({ nodes: n, tag });
  for (const node of lab.nodes) await node.start(node.clusterArgs());
  const n1 = lab.node(1);
  const r = n1.cli(
    "network",
    "create",
    "--name",
    "bench",
    "--cidr",
    "10.80.0.0/24",
    "--gateway",
    "10.80.0.1",
    "--cidr6",
    "fd80::/64",
    "--gateway6",
    "fd80::1",
    "--default-action",
    defaultAction,
  );
  if (r.code !== 0) throw new Error(`network create: ${r.stderr}`);
  for (const node of lab.nodes)
    await until(`bench on ${node.name}`, () => node.json<any[]>("network", "list").some((x) => x.name === "bench"));
  return lab;
}

/** Plain kernel VXLAN between node1 and node2 of `lab`: a bridge, a VXLAN device (VNI 4242, UDP
 * 4790, the other node as its remote, learning on: the kernel's own flood and learn), and a
 * workload namespace on each, 10.81.0.1 and .2 at MTU 1450. */
function plainVxlan(lab: Lab, tag: string): Netns[] {
  const out: Netns[] = [];
  for (const i of [1, 2]) {
    const node = lab.node(i);
    const other = lab.node(3 - i);
    const w = new Netns(`${tag}p${i}`);
    out.push(w);
    sh(node.ns, [
      `link add pbr0 type bridge`,
      `link add pvx0 type vxlan id 4242 dstport 4790 local ${node.underlay.ipv4} remote ${other.underlay.ipv4}`,
      `link set pvx0 master pbr0 up`,
      `link add pv${i} type veth peer name eth0 netns ${w.name}`,
      `link set pv${i} master pbr0 mtu 1450 up`,
      `link set pbr0 up`,
    ]);
    sh(w, [`link set eth0 mtu 1450 up`, `addr add 10.81.0.${i}/24 dev eth0`, `addr add fd81::${i}/64 dev eth0 nodad`]);
  }
  return out;
}

function throughputBench(): Benchmark {
  let lab: Lab | undefined;
  let plain: Netns[] = [];
  let w: LabWorkload[] = [];
  const SECONDS = 5;
  return {
    name: "overlay/throughput",
    unit: "Gbit/s",
    async setup() {
      lab = await overlayLab(2, "bot");
      w = [lab.node(1).workload("t1", "bench"), lab.node(2).workload("t2", "bench")];
      plain = plainVxlan(lab, "bot");
      await until("t1 → t2", () => (w[0] as LabWorkload).ping((w[1] as LabWorkload).ip));
      await until("p1 → p2", () => exec(plain[0] as Netns, ["ping", "-c1", "-W1", "10.81.0.2"]).code === 0);
    },
    teardown() {
      for (const p of plain) p.destroy();
      lab?.destroy();
    },
    candidate: {
      label: "iperf3 TCP node1 → node2 through Stratum's overlay (ports, cnv-vxlan0, their programs)",
      measure: () => iperf((w[0] as LabWorkload).ns, (w[1] as LabWorkload).ns, (w[1] as LabWorkload).ip, SECONDS),
    },
    baseline: {
      label: "the same through plain kernel VXLAN between the same nodes (bridge, VXLAN device, veths)",
      measure: () => iperf(plain[0] as Netns, plain[1] as Netns, "10.81.0.2", SECONDS),
    },
  };
}

/** The longest gap between consecutive echo replies of a `ping -D` log, in ms. */
function longestGap(out: string): number {
  const t = [...out.matchAll(/^\[(\d+\.\d+)\].*icmp_seq=/gm)].map((m) => Number(m[1]) * 1000);
  let max = 0;
  for (let i = 1; i < t.length; i++) max = Math.max(max, (t[i] as number) - (t[i - 1] as number));
  return max;
}

function moveBench(): Benchmark {
  let lab: Lab | undefined;
  let mover: LabWorkload | undefined;
  let peer: LabWorkload | undefined;
  let at = 1;
  const MOVES = 5;
  const tcpStalls: number[] = [];
  let resets = 0;
  let moves = 0;
  /** The mover pinged every 10 ms and streaming to the peer for as long as `during` takes; the
   * longest gap between replies, and the TCP stream's longest stall (ms) and whether it survived. */
  async function traffic(during: () => Promise<void>): Promise<{ gap: number; stall: number; ok: boolean }> {
    const p = peer as LabWorkload;
    const m = mover as LabWorkload;
    const srv = Bun.spawn(["ip", "netns", "exec", p.ns.name, "iperf3", "-s", "-1", "-p", "5300"], {
      stdout: "ignore",
      stderr: "ignore",
    });
    await Bun.sleep(200);
    const stream = Bun.spawn(
      ["ip", "netns", "exec", m.ns.name, "iperf3", "-c", p.ip, "-p", "5300", "-t", "3", "-i", "0.1", "-b", "50M", "-J"],
      { stdout: "pipe", stderr: "ignore" },
    );
    const ping = Bun.spawn(
      ["ip", "netns", "exec", p.ns.name, "ping", "-D", "-n", "-i", "0.01", "-c", "250", "-W", "1", m.ip],
      {
        stdout: "pipe",
      },
    );
    try {
      await Bun.sleep(700);
      await during();
      const out = await new Response(ping.stdout).text();
      const res = JSON.parse((await new Response(stream.stdout).text()) || "{}");
      await stream.exited;
      const ok = stream.exitCode === 0 && !res.error;
      let stall = 0;
      let run = 0;
      for (const i of res.intervals ?? []) {
        run = i.sum.bytes > 0 ? 0 : run + i.sum.seconds * 1000;
        stall = Math.max(stall, run);
      }
      return { gap: longestGap(out), stall, ok };
    } finally {
      ping.kill();
      stream.kill();
      srv.kill();
      await srv.exited;
    }
  }
  return {
    name: "overlay/move",
    unit: "ms",
    rows: [
      {
        name: "overlay/move-ping-gap-p50",
        unit: "ms",
        figure: "gap",
        percentile: 50,
        baseline: "the same window without a move",
      },
      {
        name: "overlay/move-ping-gap-p95",
        unit: "ms",
        figure: "gap",
        percentile: 95,
        baseline: "the same window without a move",
      },
    ],
    async setup() {
      lab = await overlayLab(3, "bmv", "deny");
      const n1 = lab.node(1);
      for (const args of [
        ["--priority", "10", "--proto", "icmp", "--action", "allow"],
        ["--priority", "20", "--direction", "egress", "--proto", "tcp", "--dport", "5300", "--action", "allow"],
        ["--priority", "21", "--direction", "ingress", "--proto", "tcp", "--dport", "5300", "--action", "allow"],
      ])
        if (n1.cli("firewall", "rule", "add", "bench", ...args).code !== 0) throw new Error("rule add");
      mover = n1.workload("mover", "bench");
      peer = lab.node(3).workload("peer", "bench");
      for (const n of lab.nodes)
        await until(`rules on ${n.name}`, () => n.json<any>("firewall", "rule", "list", "bench").rules?.length === 3);
      await until("peer → mover", () => (peer as LabWorkload).ping((mover as LabWorkload).ip));
    },
    teardown() {
      if (moves)
        note([
          `overlay/move: ${moves} moves under a 10 ms ping and an iperf3 TCP stream (default-deny network): TCP's longest stall p50 ${fmt(median(tcpStalls))} / p95 ${fmt(percentile(tcpStalls, 95))} ms (100 ms intervals), ${resets} stream(s) reset or failed`,
        ]);
      lab?.destroy();
    },
    candidate: {
      label: `endpoint move node1 ⇄ node2 under a 10 ms ping from node3 and a TCP stream (longest gap between replies, ${MOVES} moves a round)`,
      async measure() {
        const gaps: number[] = [];
        for (let i = 0; i < MOVES; i++) {
          const r = await traffic(async () => {
            at = at === 1 ? 2 : 1;
            const node = (lab as Lab).node(at);
            const m = node.cli("endpoint", "move", "mover", "--to", node.name, "-o", "json");
            if (m.code !== 0) throw new Error(`endpoint move: ${m.stderr}`);
          });
          gaps.push(r.gap);
          tcpStalls.push(r.stall);
          if (!r.ok) resets++;
          moves++;
        }
        return { gap: gaps };
      },
    },
    baseline: {
      label: "the same traffic without a move",
      async measure() {
        const gaps: number[] = [];
        for (let i = 0; i < MOVES; i++) gaps.push((await traffic(async () => {})).gap);
        return { gap: gaps };
      },
    },
  };
}

/** POST an attach to node1's API (the socket; no CLI process). */
async function apiAttach(node: LabNode, host: number, ns: string): Promise<void> {
  const r = await apiCall(node, "POST", "/v1/networks/bench/endpoints", {
    name: `b${host}`,
    netns: ns,
    ip: `10.80.0.${host}`,
  });
  if (r.status !== 201) throw new Error(`attach b${host}: ${r.status} ${JSON.stringify(r.body)}`);
}

function attachBench(): Benchmark {
  let lab: Lab | undefined;
  let remote: BpfMap | undefined;
  let next = 0;
  const SAMPLES = 20;
  return {
    name: "overlay/attach-to-forward",
    unit: "ms",
    rows: [
      { name: "overlay/attach-to-forward-p50", unit: "ms", figure: "ms", percentile: 50 },
      { name: "overlay/attach-to-forward-p99", unit: "ms", figure: "ms", percentile: 99 },
    ],
    async setup() {
      lab = await overlayLab(3, "bat");
      remote = BpfMap.openPinned(`${lab.node(3).agent.pins.path}/maps/stm_remote`);
    },
    teardown() {
      remote?.close();
      lab?.destroy();
    },
    candidate: {
      label: "an attach request to node1's API → node3's overlay forwards to it (its stm_remote entry)",
      async measure() {
        const l = lab as Lab;
        const id = l.node(1).json<any>("network", "show", "bench").id as number;
        const ms: number[] = [];
        for (let i = 0; i < SAMPLES; i++) {
          const host = 10 + (next++ % 200);
          const key = encodeMacKey(profileMac(id, host - 1));
          const ns = new Netns(`bat${host}`);
          try {
            const t0 = performance.now();
            const call = apiAttach(l.node(1), host, ns.name);
            let seen = 0;
            while (!seen) {
              if ((remote as BpfMap).lookup(key)) seen = performance.now() - t0;
              else if (performance.now() - t0 > 10_000) throw new Error(`10.80.0.${host} never reached node3`);
              else await Bun.sleep(0.2);
            }
            ms.push(seen);
            await call;
          } finally {
            detach(l.node(1), host);
            ns.destroy();
          }
        }
        return { ms };
      },
    },
    baseline: {
      label: "the attach request itself, until node1's API answers",
      async measure() {
        const l = lab as Lab;
        const ms: number[] = [];
        for (let i = 0; i < SAMPLES; i++) {
          const host = 10 + (next++ % 200);
          const ns = new Netns(`bat${host}`);
          try {
            const t0 = performance.now();
            await apiAttach(l.node(1), host, ns.name);
            ms.push(performance.now() - t0);
          } finally {
            detach(l.node(1), host);
            ns.destroy();
          }
        }
        return { ms };
      },
    },
  };
}

/** Detaches a sample's endpoint again (its address is used anew 200 samples later). */
function detach(node: LabNode, host: number): void {
  node.cli("network", "detach", "bench", "--name", `b${host}`);
}

/** VXLAN frames on the switch's underlay bridge while `traffic` runs, and of those the ones whose
 * inner destination is a group address. */
async function underlayCount(lab: Lab, port: number, traffic: () => void): Promise<{ all: number; group: number }> {
  const file = `/tmp/stm-bench-underlay-${process.pid}.pcap`;
  const p = Bun.spawn(
    ["ip", "netns", "exec", lab.switch.name, "tcpdump", "-i", "br-und", "-nn", "-w", file, `udp port ${port}`],
    { stdout: "ignore", stderr: "ignore" },
  );
  try {
    await Bun.sleep(500);
    traffic();
    await Bun.sleep(300);
  } finally {
    p.kill("SIGINT");
    await p.exited;
  }
  const count = (filter: string) =>
    exec(lab.switch, ["tcpdump", "-r", file, "-nn", filter])
      .out.split("\n")
      .filter((l) => l.trim()).length;
  const r = { all: count(`udp port ${port}`), group: count(`udp port ${port} and udp[16] & 1 = 1`) };
  Bun.spawnSync(["rm", "-f", file]);
  return r;
}

function broadcastBench(): Benchmark {
  let lab: Lab | undefined;
  let w: LabWorkload[] = [];
  let plain: Netns[] = [];
  const frames = { stratum: 0, plain: 0 };
  const pings = (pairs: Array<[Netns, string]>) => {
    for (const [from, to] of pairs) {
      exec(from, ["ip", "neigh", "flush", "all"]);
      const fam = to.includes(":") ? ["-6"] : [];
      exec(from, ["ping", ...fam, "-n", "-q", "-c", "20", "-i", "0.01", "-W", "1", to]);
    }
  };
  return {
    name: "overlay/underlay-broadcasts",
    unit: "per 1,000 VXLAN frames",
    async setup() {
      lab = await overlayLab(3, "bbc");
      w = [1, 2, 3].map((i) => (lab as Lab).node(i).workload(`c${i}`, "bench"));
      plain = plainVxlan(lab, "bbc");
      await until("c1 → c2", () => (w[0] as LabWorkload).ping((w[1] as LabWorkload).ip));
    },
    teardown() {
      note([
        `overlay/underlay-broadcasts: ${frames.stratum} VXLAN frames captured through Stratum's overlay, ${frames.plain} through plain VXLAN`,
      ]);
      for (const p of plain) p.destroy();
      lab?.destroy();
    },
    candidate: {
      label:
        "Stratum's overlay: endpoints on 3 nodes resolve and ping each other (20 each way, IPv4 and IPv6) from empty neighbour caches",
      async measure() {
        const [a, b, c] = w as [LabWorkload, LabWorkload, LabWorkload];
        const r = await underlayCount(lab as Lab, 4789, () =>
          pings([
            [a.ns, b.ip],
            [b.ns, c.ip],
            [c.ns, a.ip],
            [a.ns, b.endpoint.ip6],
            [c.ns, b.endpoint.ip6],
          ]),
        );
        frames.stratum += r.all;
        return (1000 * r.group) / Math.max(1, r.all);
      },
    },
    baseline: {
      label: "plain kernel VXLAN (flood and learn) between two nodes, the same pings",
      async measure() {
        const [p1, p2] = plain as [Netns, Netns];
        const r = await underlayCount(lab as Lab, 4790, () =>
          pings([
            [p1, "10.81.0.2"],
            [p2, "10.81.0.1"],
            [p1, "fd81::2"],
          ]),
        );
        frames.plain += r.all;
        return (1000 * r.group) / Math.max(1, r.all);
      },
    },
  };
}

/** The first echo's round trip (ms) after `from`'s neighbour cache is flushed. */
function firstRtt(from: Netns, to: string): number {
  exec(from, ["ip", "neigh", "flush", "all"]);
  const r = exec(from, ["ping", "-n", "-c", "1", "-W", "1", to]);
  const m = /time=([\d.]+) ms/.exec(r.out);
  if (!m) throw new Error(`ping ${to}: ${r.out} ${r.err}`);
  return Number(m[1]);
}

function neighbourBench(): Benchmark {
  let agent: TestAgent | undefined;
  let plain: Netns | undefined;
  const ws: Netns[] = [];
  const ips: string[] = [];
  const SAMPLES = 50;
  return {
    name: "overlay/neighbour-answer",
    unit: "ms",
    rows: [{ name: "overlay/neighbour-answer-p50", unit: "ms", figure: "ms", percentile: 50 }],
    async setup() {
      agent = new TestAgent("bna");
      await agent.start();
      const ctl = (...a: string[]) => {
        const r = Bun.spawnSync(
          ["nsenter", `--net=${agent?.ns.path}`, BINARY, ...a, "--api-socket", agent?.sock ?? ""],
          {
            stdout: "pipe",
            stderr: "pipe",
          },
        );
        if (r.exitCode !== 0) throw new Error(`${a.join(" ")}: ${r.stderr}`);
        return JSON.parse(r.stdout.toString() || "{}");
      };
      ctl("network", "create", "--name", "na", "--cidr", "10.82.0.0/24", "--gateway", "10.82.0.1", "-o", "json");
      for (const i of [1, 2]) {
        const ns = new Netns(`bna${i}`);
        ws.push(ns);
        ips.push(
          ctl("network", "attach", "na", "--name", `na${i}`, "--netns", ns.name, "--configure", "-o", "json").ip,
        );
      }
      // The floor: a plain bridge floods the request and the target answers it itself.
      plain = new Netns("bnap");
      const q1 = new Netns("bnaq1");
      const q2 = new Netns("bnaq2");
      ws.push(q1, q2);
      sh(plain, [
        "link add br0 type bridge",
        "link set br0 up",
        `link add v1 type veth peer name eth0 netns ${q1.name}`,
        `link add v2 type veth peer name eth0 netns ${q2.name}`,
        "link set v1 master br0 up",
        "link set v2 master br0 up",
      ]);
      sh(q1, ["link set eth0 up", "addr add 10.83.0.1/24 dev eth0"]);
      sh(q2, ["link set eth0 up", "addr add 10.83.0.2/24 dev eth0"]);
      // Stratum's target never answers ARP itself: what answers is its node's port program.
      exec(ws[1] as Netns, ["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=8"]);
      if (firstRtt(q1, "10.83.0.2") <= 0 || firstRtt(ws[0] as Netns, ips[1] as string) <= 0)
        throw new Error("no answer");
    },
    teardown() {
      for (const n of ws) n.destroy();
      plain?.destroy();
      agent?.destroy();
    },
    candidate: {
      label: "first echo after a neighbour flush, the ARP answered by Stratum's port program",
      measure: () => ({ ms: Array.from({ length: SAMPLES }, () => firstRtt(ws[0] as Netns, ips[1] as string)) }),
    },
    baseline: {
      label: "the same on a plain bridge: the request floods it, the target answers",
      measure: () => ({ ms: Array.from({ length: SAMPLES }, () => firstRtt(ws[2] as Netns, "10.83.0.2")) }),
    },
  };
}

export const OVERLAY_BENCHMARKS: Record<string, () => Benchmark> = {
  "overlay/throughput": throughputBench,
  "overlay/move": moveBench,
  "overlay/attach-to-forward": attachBench,
  "overlay/underlay-broadcasts": broadcastBench,
  "overlay/neighbour-answer": neighbourBench,
};
