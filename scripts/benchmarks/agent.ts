/** Control-plane benchmarks against a real agent (the compiled binary) running in its own
 * namespace: creating a /16 network end to end against the kernel's batch-update floor,
 * attaching a veth endpoint against iproute2 creating the same veth, and the agent's idle
 * memory against an idle Bun runtime. Every namespace and pin is removed afterwards. */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { ApiClient } from "../../src/api/api-client";
import { loadObject } from "../../src/datapath/objects";
import { PROFILE_KEY_SIZE, PROFILE_SIZE, writeProfile, writeProfileKey } from "../../src/datapath/port-maps";
import { profileMac } from "../../src/model/network";
import { macToBytes } from "../../src/netlink/codec";
import { type Benchmark, BINARY, sh } from "./harness";

/** An agent in a fresh namespace with its own pin root and state, for one benchmark. */
let agents = 0;

export class BenchAgent {
  readonly tag = `stmb${process.pid}${agents++ || ""}`;
  readonly ns = `${this.tag}-node`;
  readonly dir = mkdtempSync(join(tmpdir(), "stm-bench-"));
  readonly pins = `/sys/fs/bpf/${this.tag}`;
  readonly sock = join(this.dir, "api.sock");
  readonly api = new ApiClient(this.sock);
  readonly extraNs: string[] = [];
  proc: Subprocess | undefined;

  /** `before` runs once the namespace exists (e.g. to create the uplink); `extra` flags go to the agent. */
  async start(extra: string[] = [], before?: () => void): Promise<void> {
    sh(["ip", "netns", "add", this.ns]);
    before?.();
    await this.spawn(extra);
  }

  /** Starts the agent process (again) and waits for its API; returns the milliseconds from
   * spawn to the first answer, which the agent gives only once its reconcile is done. */
  async spawn(extra: string[] = []): Promise<number> {
    const t0 = performance.now();
    this.proc = Bun.spawn(
      [
        "nsenter",
        `--net=/run/netns/${this.ns}`,
        BINARY,
        "agent",
        "--state-dir",
        join(this.dir, "state"),
        "--pin-root",
        this.pins,
        "--api-socket",
        this.sock,
        ...extra,
      ],
      { stdout: "ignore", stderr: "ignore" },
    );
    while (performance.now() - t0 < 60_000) {
      try {
        await this.api.listNetworks();
        return performance.now() - t0;
      } catch {
        await Bun.sleep(2);
      }
    }
    throw new Error("bench agent did not start within 60 s");
  }

  /** Stops the agent process (SIGTERM), leaving the node as it is. */
  async halt(): Promise<void> {
    this.proc?.kill("SIGTERM");
    await this.proc?.exited;
    this.proc = undefined;
  }

  netns(name: string): string {
    const ns = `${this.tag}-${name}`;
    sh(["ip", "netns", "add", ns]);
    this.extraNs.push(ns);
    return ns;
  }

  stop(): void {
    this.proc?.kill("SIGKILL");
    for (const ns of [...this.extraNs, this.ns]) Bun.spawnSync(["ip", "netns", "del", ns]);
    rmSync(this.pins, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function rssMiB(pid: number): number {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

function createNetworkBench(viaCli: boolean): Benchmark {
  const agent = new BenchAgent();
  let floor: { keys: Buffer; vals: Buffer; close(): void; update(): void } | undefined;
  let round = 0;
  return {
    name: viaCli ? "agent/network-create-16-cli" : "agent/network-create-16",
    unit: "ms",
    async setup() {
      await agent.start();
      // The floor: the same 65,534 profile entries written by one batch update from this process.
      const obj = loadObject("port");
      const map = obj.map("stm_profiles");
      const n = 65534;
      const keys = Buffer.alloc(n * PROFILE_KEY_SIZE);
      const vals = Buffer.alloc(n * PROFILE_SIZE);
      const ip = Buffer.alloc(4);
      for (let i = 0; i < n; i++) {
        ip.writeUInt32BE(0x0a630001 + i);
        writeProfileKey(keys, i * PROFILE_KEY_SIZE, 1, ip);
        writeProfile(vals, i * PROFILE_SIZE, macToBytes(profileMac(1, i)), 0);
      }
      floor = { keys, vals, close: () => obj.close(), update: () => map.updateBatch(keys, vals) };
    },
    teardown() {
      floor?.close();
      agent.stop();
    },
    candidate: {
      label: viaCli ? "cenvero-str-ctl network create (process)" : "API create network /16",
      async measure() {
        const name = `bench-${round++}`;
        const t0 = performance.now();
        if (viaCli) {
          sh([
            BINARY,
            "network",
            "create",
            "--name",
            name,
            "--cidr",
            "10.99.0.0/16",
            "--gateway",
            "10.99.0.1",
            "--api-socket",
            agent.sock,
          ]);
        } else {
          await agent.api.createNetwork({ name, cidr: "10.99.0.0/16", gateway: "10.99.0.1" });
        }
        const dt = performance.now() - t0;
        await agent.api.deleteNetwork(name, true);
        return dt;
      },
    },
    baseline: {
      label: "bpf batch update, 65,534 entries",
      measure() {
        const t0 = performance.now();
        floor?.update();
        return performance.now() - t0;
      },
    },
  };
}

function attachBench(): Benchmark {
  const agent = new BenchAgent();
  let round = 0;
  return {
    name: "agent/network-attach",
    unit: "ms",
    async setup() {
      await agent.start();
      await agent.api.createNetwork({ name: "bench", cidr: "10.98.0.0/24", gateway: "10.98.0.1" });
    },
    teardown: () => agent.stop(),
    candidate: {
      label: "API attach veth + programs",
      async measure() {
        const ns = agent.netns(`a${round++}`);
        const t0 = performance.now();
        await agent.api.attach("bench", { name: `ep-${round}`, netns: ns });
        const dt = performance.now() - t0;
        await agent.api.detach("bench", `ep-${round}`);
        return dt;
      },
    },
    baseline: {
      label: "ip link add veth peer netns (process)",
      measure() {
        const ns = agent.netns(`b${round++}`);
        const t0 = performance.now();
        sh(["ip", "-n", agent.ns, "link", "add", "stmbenchv", "type", "veth", "peer", "name", "eth0", "netns", ns]);
        const dt = performance.now() - t0;
        sh(["ip", "-n", agent.ns, "link", "del", "stmbenchv"]);
        return dt;
      },
    },
  };
}

function rssBench(): Benchmark {
  const agent = new BenchAgent();
  let idle: Subprocess | undefined;
  return {
    name: "agent/idle-rss",
    unit: "MiB",
    async setup() {
      await agent.start();
      await agent.api.createNetwork({ name: "bench", cidr: "10.97.0.0/16", gateway: "10.97.0.1" });
      idle = Bun.spawn([process.execPath, "-e", "setInterval(() => {}, 1000)"], { stdout: "ignore" });
      await Bun.sleep(1000);
    },
    teardown() {
      idle?.kill("SIGKILL");
      agent.stop();
    },
    candidate: { label: "agent, one /16 network, idle", measure: () => rssMiB(agent.proc?.pid ?? 0) },
    baseline: { label: "idle Bun process", measure: () => rssMiB(idle?.pid ?? 0) },
  };
}

/** One packet path traced (web → db, tcp/8080 allowed by a rule: port ingress, bridge, port
 * egress): through the agent, whose trace instance of the programs stays loaded, against the
 * agent-less CLI, which loads its own from the pins every time. */
function traceBench(): Benchmark {
  const agent = new BenchAgent();
  const req = { from: "web", toEndpoint: "db", proto: "tcp", dport: 8080 } as const;
  return {
    name: "trace/one-path",
    unit: "ms",
    async setup() {
      await agent.start();
      await agent.api.createNetwork({ name: "bench", cidr: "10.96.0.0/24", gateway: "10.96.0.1" });
      await agent.api.attach("bench", { name: "web", netns: agent.netns("web") });
      await agent.api.attach("bench", { name: "db", netns: agent.netns("db") });
      await agent.api.setDefault("bench", "deny");
      await agent.api.addRule("bench", { priority: 10, proto: "tcp", dport: 8080, action: "allow" });
    },
    teardown: () => agent.stop(),
    candidate: {
      label: "trace via the agent (API, loaded)",
      async measure() {
        const n = 20;
        const t0 = performance.now();
        for (let i = 0; i < n; i++) {
          const r = await agent.api.trace(req);
          if (r.verdict !== "delivered") throw new Error(`trace said ${r.verdict}`);
        }
        return (performance.now() - t0) / n;
      },
    },
    baseline: {
      label: "cenvero-str-ctl trace --local (process)",
      measure() {
        const t0 = performance.now();
        sh([
          "nsenter",
          `--net=/run/netns/${agent.ns}`,
          BINARY,
          "trace",
          "--local",
          "--from",
          "web",
          "--to-endpoint",
          "db",
          "--proto",
          "tcp",
          "--dport",
          "8080",
          "--pin-root",
          agent.pins,
          "--state-dir",
          join(agent.dir, "state"),
        ]);
        return performance.now() - t0;
      },
    },
  };
}

export const AGENT_BENCHMARKS: Record<string, () => Benchmark> = {
  "trace/one-path": traceBench,
  "agent/network-create-16": () => createNetworkBench(false),
  "agent/network-create-16-cli": () => createNetworkBench(true),
  "agent/network-attach": attachBench,
  "agent/idle-rss": rssBench,
};
