/** Gateway HA benchmarks (opt-in group `gateway`), on one outside LAN with a client:
 *  - ha-failover: the gap a client pinging the VIP every 2 ms sees (the longest time between
 *    two replies) when the active node of a two-node gateway group fails: its agent killed
 *    with kill -9 (the node stays up: the datapath's deadline fences the VIP), or the node lost
 *    (agent killed and every link cut). Three kills of each kind per measurement; the killed
 *    node comes back (preempt off: roles alternate). Baseline: keepalived 2.2 (Debian), VRRPv3
 *    at the same 100 ms adverts and priority, its master's node lost the same way (a keepalived
 *    killed alone leaves its VIP answering, so only a lost node fails it over).
 *  - ha-split-brain: ARP samples (one request for the VIP every 50 ms, every responder kept)
 *    in which two nodes answered, over partition cycles of the active node's management link
 *    (1 s cut at the switch's port, 1 s healed; Stratum also with etcd cut every other cycle).
 *    Baseline: keepalived with its VRRP adverts on the same kind of management link. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { Lab, type LabNode, type LabWorkload, until } from "../../test/helpers/lab";
import { Netns } from "../../test/helpers/netns";
import { type Benchmark, ROOT, sh } from "./harness";

const VIP = "192.0.2.100";
const KVIP = "192.0.2.200";

/** The longest interval between two consecutive replies of a `ping -D` run, in ms. */
function longestGap(text: string): number {
  const ts = [...text.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from/gm)].map((m) => Number(m[1]) * 1000);
  let gap = 0;
  for (let i = 1; i < ts.length; i++) gap = Math.max(gap, (ts[i] as number) - (ts[i - 1] as number));
  return gap;
}

/** The ARP sampler (test/helpers/arp-sample.py) on the client's bridge. */
function sampler(ns: Netns, target: string): { stop(): Promise<number> } {
  const p = Bun.spawn(
    ["ip", "netns", "exec", ns.name, "/usr/bin/python3", join(ROOT, "test/helpers/arp-sample.py"), "br0", target],
    { stdout: "pipe", stderr: "ignore" },
  );
  return {
    async stop() {
      p.kill("SIGTERM");
      const lines = (await new Response(p.stdout).text()).split("\n").filter(Boolean);
      return lines.filter((l) => (JSON.parse(l) as { macs: string[] }).macs.length > 1).length;
    },
  };
}

/** Two Stratum gateways and two keepalived nodes on one outside LAN (br0 in `out`, the client
 * at 192.0.2.50); keepalived's adverts run over a management bridge of their own. */
export class HaLab {
  constructor(readonly nodes = 2) {}
  lab: Lab | undefined;
  out: Netns | undefined;
  k: Netns[] = [];
  dir = "";
  kprocs = new Map<number, Subprocess>();

  flags(n: LabNode): string[] {
    return [...n.clusterArgs(), "--uplink", "upl0", "--gateway"];
  }

  async setup(): Promise<void> {
    this.dir = mkdtempSync(join(tmpdir(), "stm-ha-bench-"));
    this.lab = await Lab.create({ nodes: this.nodes, tag: "bha" });
    const out = new Netns("bhaout");
    this.out = out;
    sh(["ip", "-n", out.name, "link", "add", "br0", "type", "bridge"]);
    sh(["ip", "-n", out.name, "link", "add", "kmg", "type", "bridge"]);
    sh(["ip", "-n", out.name, "addr", "add", "192.0.2.50/24", "dev", "br0"]);
    for (const b of ["br0", "kmg"]) sh(["ip", "-n", out.name, "link", "set", b, "up"]);
    // The gateways; a third node (SnatLab's) is no gateway and has no uplink.
    for (const n of this.lab.nodes.slice(0, 2)) {
      sh([
        "ip",
        "-n",
        n.ns.name,
        "link",
        "add",
        "upl0",
        "type",
        "veth",
        "peer",
        "name",
        `u${n.index}`,
        "netns",
        out.name,
      ]);
      sh(["ip", "-n", n.ns.name, "link", "set", "upl0", "up"]);
      sh(["ip", "-n", out.name, "link", "set", `u${n.index}`, "master", "br0", "up"]);
      await n.start(this.flags(n));
      sh(["ip", "-n", n.ns.name, "addr", "add", `192.0.2.${n.index}/24`, "dev", "cnv-user-br0"]);
    }
    const n1 = this.lab.node(1);
    const r = n1.cli("gateway", "group", "create", "edge", "--vip", VIP, "--nodes", "node1,node2", "--preempt", "off");
    if (r.code !== 0) throw new Error(`gateway group create: ${r.stderr}`);
    await until("a node active", () => this.active() !== undefined, 20_000);
    await until("the VIP answers", () => this.pingOnce(VIP), 10_000);
    // keepalived: kA, kB with lan0 on br0 (192.0.2.11, .12) and mgmt0 on kmg (10.97.0.1, .2).
    for (const i of [1, 2]) {
      const ns = new Netns(`bhak${i}`);
      this.k.push(ns);
      sh(["ip", "-n", ns.name, "link", "add", "lan0", "type", "veth", "peer", "name", `kl${i}`, "netns", out.name]);
      sh(["ip", "-n", ns.name, "link", "add", "mgmt0", "type", "veth", "peer", "name", `km${i}`, "netns", out.name]);
      sh(["ip", "-n", ns.name, "addr", "add", `192.0.2.1${i}/24`, "dev", "lan0"]);
      sh(["ip", "-n", ns.name, "addr", "add", `10.97.0.${i}/24`, "dev", "mgmt0"]);
      for (const d of ["lan0", "mgmt0", "lo"]) sh(["ip", "-n", ns.name, "link", "set", d, "up"]);
      sh(["ip", "-n", out.name, "link", "set", `kl${i}`, "master", "br0", "up"]);
      sh(["ip", "-n", out.name, "link", "set", `km${i}`, "master", "kmg", "up"]);
      writeFileSync(
        join(this.dir, `k${i}.conf`),
        `global_defs {
  router_id bhak${i}
  vrrp_version 3
  script_user root
}
vrrp_instance VI {
  state BACKUP
  nopreempt
  interface mgmt0
  virtual_router_id 51
  priority 100
  advert_int 0.1
  unicast_src_ip 10.97.0.${i}
  unicast_peer {
    10.97.0.${3 - i}
  }
  virtual_ipaddress {
    ${KVIP}/32 dev lan0
  }
}
`,
      );
      this.startK(i);
    }
    await until("a keepalived master", () => this.kActive() !== undefined, 20_000);
    await until("the keepalived VIP answers", () => this.pingOnce(KVIP), 10_000);
  }

  startK(i: number): void {
    const ns = this.k[i - 1] as Netns;
    // A killed keepalived leaves its pid files: a new one would take it for running.
    for (const f of [`k${i}.pid`, `k${i}-vrrp.pid`]) rmSync(join(this.dir, f), { force: true });
    const p = Bun.spawn(
      [
        "ip",
        "netns",
        "exec",
        ns.name,
        "keepalived",
        "-n",
        "-l",
        "-P",
        "-f",
        join(this.dir, `k${i}.conf`),
        "-p",
        join(this.dir, `k${i}.pid`),
        "-r",
        join(this.dir, `k${i}-vrrp.pid`),
      ],
      { stdout: "ignore", stderr: "ignore" },
    );
    this.kprocs.set(i, p);
  }

  /** Kills keepalived of node i (its whole process tree) with SIGKILL. */
  async killK(i: number): Promise<void> {
    const ns = this.k[i - 1] as Netns;
    Bun.spawnSync(["ip", "netns", "pids", ns.name])
      .stdout.toString()
      .split("\n")
      .filter(Boolean)
      .forEach((pid) => {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {}
      });
    await this.kprocs.get(i)?.exited;
  }

  pingOnce(ip: string): boolean {
    return (
      Bun.spawnSync(["ip", "netns", "exec", (this.out as Netns).name, "ping", "-n", "-c", "1", "-W", "1", ip])
        .exitCode === 0
    );
  }

  active(): LabNode | undefined {
    return this.lab?.nodes.find((n) => {
      try {
        return n.running && n.json<any>("gateway", "status").groups[0]?.role === "active";
      } catch {
        return false;
      }
    });
  }

  standbyReady(n: LabNode): boolean {
    try {
      const g = n.json<any>("gateway", "status").groups[0];
      return g?.role === "standby" && g.nodes.some((x: any) => !x.self && x.role === "active" && x.lastHeardMs < 300);
    } catch {
      return false;
    }
  }

  /** Whether keepalived node i holds the VIP. */
  kHas(i: number): boolean {
    return sh(["ip", "-n", (this.k[i - 1] as Netns).name, "-o", "addr", "show", "dev", "lan0"]).includes(`${KVIP}/32`);
  }

  kActive(): number | undefined {
    return [1, 2].find((i) => this.kHas(i));
  }

  /** Runs `fail` under a ping every 2 ms to `ip` until `recovered`, then 300 ms more: the gap. */
  async gap(ip: string, fail: () => Promise<void>, recovered: () => boolean): Promise<number> {
    const p = Bun.spawn(
      ["ip", "netns", "exec", (this.out as Netns).name, "ping", "-n", "-D", "-i", "0.002", "-W", "1", ip],
      {
        stdout: "pipe",
        stderr: "ignore",
      },
    );
    const text = new Response(p.stdout).text();
    await Bun.sleep(300);
    await fail();
    await until("the VIP answers again", recovered, 15_000);
    await Bun.sleep(300);
    p.kill("SIGINT");
    return longestGap(await text);
  }

  /** One failover of the Stratum group: "agent" (kill -9) or "node" (kill -9 and every link
   * cut); the node then comes back and stands by. */
  async stratumKill(kind: "agent" | "node"): Promise<number> {
    const a = this.active() as LabNode;
    const other = (this.lab as Lab).nodes.find((n) => n !== a) as LabNode;
    const links = ["upl0", "mgmt0", "und0"];
    const g = await this.gap(
      VIP,
      async () => {
        await a.kill();
        if (kind === "node") for (const l of links) sh(["ip", "-n", a.ns.name, "link", "set", l, "down"]);
      },
      () => this.pingOnce(VIP) && this.active() === other,
    );
    if (kind === "node") for (const l of links) sh(["ip", "-n", a.ns.name, "link", "set", l, "up"]);
    await a.start(this.flags(a));
    await until("the killed node stands by", () => this.standbyReady(a), 20_000);
    return g;
  }

  /** One failover of keepalived: its master's node lost (keepalived killed, lan0 and mgmt0
   * down), then back (addresses as after a reboot) as a backup. */
  async keepalivedKill(): Promise<number> {
    const i = this.kActive() as number;
    const ns = this.k[i - 1] as Netns;
    const g = await this.gap(
      KVIP,
      async () => {
        await this.killK(i);
        for (const l of ["lan0", "mgmt0"]) sh(["ip", "-n", ns.name, "link", "set", l, "down"]);
      },
      () => this.pingOnce(KVIP) && this.kHas(3 - i),
    );
    Bun.spawnSync(["ip", "-n", ns.name, "addr", "del", `${KVIP}/32`, "dev", "lan0"]);
    for (const l of ["lan0", "mgmt0"]) sh(["ip", "-n", ns.name, "link", "set", l, "up"]);
    this.startK(i);
    await Bun.sleep(1000);
    return g;
  }

  teardown(): void {
    for (const [i] of this.kprocs) void this.killK(i);
    for (const ns of this.k) ns.destroy();
    this.lab?.destroy();
    this.out?.destroy();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

const KILLS = 3;

function failoverBench(): Benchmark {
  const lab = new HaLab();
  const row = (p: number, figure: string, label: string) => ({
    name: `gateway/ha-failover-${figure === "agent" ? "agent-" : ""}p${p}`,
    unit: "ms",
    figure,
    percentile: p,
    candidate: label,
  });
  return {
    name: "gateway/ha-failover",
    unit: "ms",
    setup: () => lab.setup(),
    teardown: () => lab.teardown(),
    rows: [
      row(50, "node", "Stratum group: the active node lost (agent killed, every link cut)"),
      row(95, "node", "Stratum group: the active node lost (agent killed, every link cut)"),
      row(50, "agent", "Stratum group: the active agent killed (-9), its node up and fenced by its deadline"),
      row(95, "agent", "Stratum group: the active agent killed (-9), its node up and fenced by its deadline"),
    ],
    candidate: {
      label: "Stratum gateway group, 100 ms adverts",
      async measure() {
        const node: number[] = [];
        const agent: number[] = [];
        for (let i = 0; i < KILLS; i++) {
          node.push(await lab.stratumKill("node"));
          agent.push(await lab.stratumKill("agent"));
        }
        return { node, agent };
      },
    },
    baseline: {
      label: "keepalived VRRPv3, 100 ms adverts: the master's node lost",
      async measure() {
        const node: number[] = [];
        for (let i = 0; i < KILLS; i++) node.push(await lab.keepalivedKill());
        return { node, agent: node };
      },
    },
  };
}

const CYCLES = 10;

/** Cuts (or heals) a management link at the switch: the bridge port disabled, the node's own
 * link still up (a link that goes down puts keepalived's instance in FAULT, which gives the
 * VIP up: a cut elsewhere on the path does not). */
function portState(sw: Netns, port: string, forwarding: boolean): void {
  sh(["bridge", "-n", sw.name, "link", "set", "dev", port, "state", forwarding ? "3" : "0"]);
}

function splitBrainBench(): Benchmark {
  const lab = new HaLab();
  return {
    name: "gateway/ha-split-brain",
    unit: "samples",
    setup: () => lab.setup(),
    teardown: () => lab.teardown(),
    candidate: {
      label: `ARP samples with two answers, Stratum group, ${CYCLES} cuts of the active node's management link (and etcd, every other one)`,
      async measure() {
        const s = sampler(lab.out as Netns, VIP);
        for (let i = 0; i < CYCLES; i++) {
          const a = lab.active() as LabNode;
          const cut = (on: boolean) => {
            portState(lab.lab?.switch as Netns, `mgmt${a.index}`, !on);
            if (i % 2) sh(["ip", "-n", a.ns.name, "route", on ? "add" : "del", "blackhole", "10.99.0.254/32"]);
          };
          cut(true);
          await Bun.sleep(1000);
          cut(false);
          await until("an active node", () => lab.active() !== undefined, 10_000);
          await Bun.sleep(1000);
        }
        return s.stop();
      },
    },
    baseline: {
      label: `the same, keepalived VRRPv3 (${CYCLES} cuts of its master's management link)`,
      async measure() {
        const s = sampler(lab.out as Netns, KVIP);
        for (let i = 0; i < CYCLES; i++) {
          const port = `km${lab.kActive() ?? 1}`;
          portState(lab.out as Netns, port, false);
          await Bun.sleep(1000);
          portState(lab.out as Netns, port, true);
          await Bun.sleep(1000);
        }
        return s.stop();
      },
    },
  };
}

/** The server and the connection holder of test/helpers/tcp-hold.py. */
const TCP_HOLD = join(ROOT, "test/helpers/tcp-hold.py");

const CONNS = 20;

/** A masqueraded network's workload on a node that is no gateway (node3) holds CONNS TCP
 * connections to a server on the LAN through the group's active node. */
class SnatLab extends HaLab {
  w: LabWorkload | undefined;
  echo: Subprocess | undefined;

  override async setup(): Promise<void> {
    await super.setup();
    const lab = this.lab as Lab;
    const n3 = lab.node(3);
    await n3.start(n3.clusterArgs());
    for (const n of lab.nodes) sh(["ip", "netns", "exec", n.ns.name, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    const n1 = lab.node(1);
    const r = n1.cli(
      "network",
      "create",
      "--name",
      "masq",
      "--cidr",
      "10.78.0.0/24",
      "--gateway",
      "10.78.0.1",
      "--nat",
    );
    if (r.code !== 0) throw new Error(`network create: ${r.stderr}`);
    await until("masq on node3", () => n3.json<any[]>("network", "list").some((x) => x.name === "masq"), 10_000);
    this.w = n3.workload("bw3", "masq");
    this.echo = Bun.spawn(
      ["ip", "netns", "exec", (this.out as Netns).name, "/usr/bin/python3", TCP_HOLD, "server", "9000"],
      {
        stdout: "ignore",
        stderr: "ignore",
      },
    );
    await until("the workload reaches the server's LAN", () => (this.w as LabWorkload).ping("192.0.2.50"), 20_000);
  }

  /** The share (%) of CONNS connections that answer after `between` ran. */
  async survive(between: () => Promise<void>): Promise<number> {
    const p = Bun.spawn(
      [
        "ip",
        "netns",
        "exec",
        (this.w as LabWorkload).ns.name,
        "/usr/bin/python3",
        TCP_HOLD,
        "hold",
        "192.0.2.50",
        "9000",
        String(CONNS),
      ],
      { stdin: "pipe", stdout: "pipe", stderr: "pipe" },
    );
    const reader = p.stdout.getReader();
    let buf = "";
    const line = async () => {
      while (!buf.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`connection holder ended: ${await new Response(p.stderr).text()}`);
        buf += new TextDecoder().decode(value);
      }
      const i = buf.indexOf("\n");
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      return JSON.parse(l);
    };
    try {
      await line();
      await Bun.sleep(1000); // the translations reach the standby
      await between();
      p.stdin.write("go\n");
      p.stdin.flush();
      return ((await line()).alive / CONNS) * 100;
    } finally {
      p.kill("SIGKILL");
    }
  }

  override teardown(): void {
    this.echo?.kill("SIGKILL");
    super.teardown();
  }
}

function snatSurvivalBench(): Benchmark {
  const lab = new SnatLab(3);
  return {
    name: "gateway/ha-snat-survival",
    unit: "% alive",
    setup: () => lab.setup(),
    teardown: () => lab.teardown(),
    candidate: {
      label: `masqueraded TCP connections (${CONNS}, from a node that is no gateway) still answering after the active agent is killed`,
      measure: () =>
        lab.survive(async () => {
          const a = lab.active() as LabNode;
          const other = (lab.lab as Lab).nodes.find((n) => n !== a && n.index !== 3) as LabNode;
          await a.kill();
          await until("the standby active", () => lab.active() === other, 10_000);
          await a.start(lab.flags(a));
          await until("the killed node stands by", () => lab.standbyReady(a), 20_000);
        }),
    },
    baseline: {
      label: "the same connections over the same time without a failover",
      measure: () => lab.survive(() => Bun.sleep(3000)),
    },
  };
}

export const GATEWAY_HA_BENCHMARKS: Record<string, () => Benchmark> = {
  "gateway/ha-failover": failoverBench,
  "gateway/ha-split-brain": splitBrainBench,
  "gateway/ha-snat-survival": snatSurvivalBench,
};
