/** Restart and upgrade figures against a real agent (the compiled binary):
 *  - start to fully reconciled on a node with 100 endpoints (veths in 100 namespaces, four
 *    networks) and 1,000 firewall rules (250 per network), both after a plain restart (the
 *    kernel is right: nothing to change) and after `uninstall` kept the store (every
 *    interface, map entry and program made again); the baseline is the same agent starting
 *    with an empty store (the fixed cost: runtime, objects, pins, bridges);
 *  - the traffic gap of a program swap: a sequenced UDP stream of 20 datagrams per ms
 *    between two workloads, its longest silence and its delivered share while 100 rounds of
 *    in-place swaps of both ports' programs run, against the same stream with no swap.
 * The agent answers its API only after its reconcile, so spawn → first answer is the time
 * to fully reconciled. */
import { join } from "node:path";
import type { Subprocess } from "bun";
import { BenchAgent } from "./agent";
import { type Benchmark, BINARY, ROOT, sh } from "./harness";

const ENDPOINTS = 100;
const NETWORKS = 4;
const RULES_PER_NETWORK = 250;

/** An agent holding 100 endpoints and 1,000 rules. */
async function loadedNode(agent: BenchAgent): Promise<void> {
  await agent.start();
  for (let n = 0; n < NETWORKS; n++) {
    const name = `n${n}`;
    await agent.api.createNetwork({ name, cidr: `10.80.${n}.0/24`, gateway: `10.80.${n}.1` });
    const rules = Array.from({ length: RULES_PER_NETWORK }, (_, i) => ({
      priority: i + 1,
      proto: i % 2 ? "tcp" : "udp",
      dport: 1000 + i,
      src: `10.${(i >> 4) & 255}.${i & 15}.0/24`,
      action: i % 3 ? "allow" : "deny",
    }));
    await agent.api.importRules(name, { default: "deny", rules });
  }
  for (let i = 0; i < ENDPOINTS; i++)
    await agent.api.attach(`n${i % NETWORKS}`, { name: `ep${i}`, netns: agent.netns(`e${i}`) });
}

function uninstallKeepingStore(agent: BenchAgent): void {
  sh([
    "nsenter",
    `--net=/run/netns/${agent.ns}`,
    BINARY,
    "uninstall",
    "--state-dir",
    join(agent.dir, "state"),
    "--pin-root",
    agent.pins,
    "--api-socket",
    agent.sock,
  ]);
}

function startBench(cold: boolean): Benchmark {
  const loaded = new BenchAgent();
  const empty = new BenchAgent();
  return {
    name: cold ? "agent/start-rebuild-100ep-1000r" : "agent/start-reconciled-100ep-1000r",
    unit: "ms",
    async setup() {
      await loadedNode(loaded);
      await empty.start();
    },
    teardown() {
      loaded.stop();
      empty.stop();
    },
    candidate: {
      label: cold
        ? "start after uninstall (store kept): 100 endpoints, 1,000 rules rebuilt"
        : "restart: 100 endpoints, 1,000 rules, kernel already right",
      async measure() {
        await loaded.halt();
        if (cold) uninstallKeepingStore(loaded);
        const ms = await loaded.spawn();
        const st = await loaded.api.status();
        const last = (st as { reconcile: { last?: { endpoints: number } } }).reconcile.last;
        if (last?.endpoints !== ENDPOINTS) throw new Error(`reconciled ${last?.endpoints} endpoints, not ${ENDPOINTS}`);
        return ms;
      },
    },
    baseline: {
      label: "agent start, empty store",
      async measure() {
        await empty.halt();
        return empty.spawn();
      },
    },
  };
}

interface GapResult {
  n: number;
  lost: number;
  maxGapUs: number;
}

/** A stream from namespace `a` to the receiver in `b` for `ms`; with `swapper` (a swap tool
 * loaded and waiting), the swaps start once the stream flows. Returns what the receiver saw. */
async function stream(a: string, b: string, ip: string, ms: number, swapper?: Subprocess): Promise<GapResult> {
  const gap = join(import.meta.dir, "udp-gap.ts");
  const recv = Bun.spawn(["ip", "netns", "exec", b, process.execPath, gap, "recv", "9100", String(ms + 300)], {
    stdout: "pipe",
  });
  const reader = recv.stdout.getReader();
  await reader.read(); // "ready"
  const send = Bun.spawn(["ip", "netns", "exec", a, process.execPath, gap, "send", ip, "9100", String(ms), "20"]);
  await Bun.sleep(300);
  swapper?.kill("SIGUSR1");
  await send.exited;
  await swapper?.exited;
  const { value } = await reader.read();
  await recv.exited;
  return JSON.parse(new TextDecoder().decode(value).trim()) as GapResult;
}

function swapBench(which: "gap" | "delivered"): Benchmark {
  const agent = new BenchAgent();
  let a = "";
  let b = "";
  let ipB = "";
  let ports = "";
  /** The swap tool in the agent's namespace, loaded and waiting for its signal. */
  const swapper = async () => {
    const p = Bun.spawn(
      [
        "nsenter",
        `--net=/run/netns/${agent.ns}`,
        process.execPath,
        join(ROOT, "test/helpers/swap.ts"),
        agent.pins,
        "100",
        ports,
        "--on-signal",
      ],
      { stdout: "pipe" },
    );
    await p.stdout.getReader().read(); // "ready"
    return p;
  };
  const value = (r: GapResult) => (which === "gap" ? r.maxGapUs : (100 * r.n) / (r.n + r.lost));
  return {
    name: which === "gap" ? "agent/program-swap-gap" : "agent/program-swap-delivered",
    unit: which === "gap" ? "µs max gap" : "% delivered",
    async setup() {
      await agent.start();
      await agent.api.createNetwork({ name: "s", cidr: "10.81.0.0/24", gateway: "10.81.0.1" });
      a = agent.netns("sa");
      b = agent.netns("sb");
      const ea = await agent.api.attach("s", { name: "sa", netns: a, configure: true });
      const eb = await agent.api.attach("s", { name: "sb", netns: b, configure: true });
      ipB = eb.ip;
      ports = [ea, eb].map((e) => e.interface).join(",");
    },
    teardown: () => agent.stop(),
    candidate: {
      label: "20 datagrams/ms while 100 rounds swap both ports' programs in place",
      async measure() {
        return value(await stream(a, b, ipB, 1500, await swapper()));
      },
    },
    baseline: {
      label: "the same stream, the swap tool loaded but idle",
      async measure() {
        const idle = await swapper();
        const r = value(await stream(a, b, ipB, 1500));
        idle.kill("SIGKILL");
        return r;
      },
    },
  };
}

export const RESTART_BENCHMARKS: Record<string, () => Benchmark> = {
  "agent/start-reconciled-100ep-1000r": () => startBench(false),
  "agent/start-rebuild-100ep-1000r": () => startBench(true),
  "agent/program-swap-gap": () => swapBench("gap"),
  "agent/program-swap-delivered": () => swapBench("delivered"),
};
