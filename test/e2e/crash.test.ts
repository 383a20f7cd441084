/** Crash safety, proven by fault injection. A real agent runs a cycle of operations (a
 * network created, an endpoint attached and capped, rules added and removed in a network's
 * scope and the global one, the blocklist, then all of it undone), while a sequenced UDP
 * stream flows between two workloads with allowed and denied traffic beside it.
 *
 * A clean pass records every kernel change the cycle makes (STRATUM_MUTATION_LOG) and the
 * kernel's state after each operation. Then, for every one of those changes in turn, the
 * agent is started with STRATUM_CRASH_AFTER=k and dies by SIGKILL right after it. While it
 * is down, allowed traffic flows and no denied packet is delivered. Restarted, its kernel
 * state is exactly the state before or after the operation that was cut (whichever the
 * store committed), and a second reconcile changes nothing. The cycle is then finished, and
 * the next crash point runs. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { ApiClient } from "../../src/api/api-client";
import { TestAgent } from "../helpers/agent";
import { readCounts, type TagCount } from "../helpers/counts";
import { type KernelState, kernelState } from "../helpers/kernel-state";
import { BUN, Netns, ROOT } from "../helpers/netns";

let A: TestAgent;
let api: ApiClient;
const ns: Record<"a1" | "a2" | "b1" | "c1", Netns> = {} as never;
const procs: Subprocess[] = [];
const ips: Record<string, string> = {};
let countFile = "";
const PROBE = join(ROOT, "test/helpers/probe.ts");

const DENIED = ["deny", "spoof", "xnet"];

const CRASH_POINTS = Number(process.env.STRATUM_CRASH_POINTS ?? (process.env.STRATUM_LONG === "1" ? 36 : 19));

/** Which of the cycle's kernel changes (1-based) to crash after: every one with
 * STRATUM_CRASH_ALL=1. Otherwise STRATUM_CRASH_POINTS (default 19, the cycle's operations,
 * what keeps the suite's time; 36 with STRATUM_LONG=1): the last change of every operation (the store is committed, the kernel half done),
 * then changes of every other kind (the first change on each map, link or address kind an
 * operation makes), spread evenly, then others. */
function crashPoints(named: string[]): number[] {
  if (process.env.STRATUM_CRASH_ALL === "1") return named.map((_, i) => i + 1);
  const TARGET = CRASH_POINTS;
  const pick = new Set<number>();
  const kinds: number[] = [];
  const seen = new Set<string>();
  named.forEach((n, i) => {
    const op = n.slice(0, n.indexOf(":"));
    if (named[i + 1]?.startsWith(`${op}:`) !== true) pick.add(i + 1);
    const kind = n.replace(/\d+/g, "N"); // the same change on another ifindex or path is not another kind
    if (!seen.has(kind)) kinds.push(i + 1);
    seen.add(kind);
  });
  const spread = (from: number[]) => {
    const room = TARGET - pick.size;
    if (room <= 0) return;
    const left = from.filter((k) => !pick.has(k));
    const step = Math.max(1, left.length / room);
    for (let x = 0; x < left.length && pick.size < TARGET; x += step) pick.add(left[Math.floor(x)] as number);
  };
  spread(kinds);
  spread(named.map((_, i) => i + 1));
  return [...pick].sort((a, b) => a - b);
}

interface Op {
  name: string;
  run: () => Promise<unknown>;
}

/** The cycle: from the base state through changes of every kind and back to the base state. */
const ops: Op[] = [
  {
    name: "network create t3",
    run: () => api.createNetwork({ name: "t3", cidr: "10.71.3.0/24", gateway: "10.71.3.1" }),
  },
  {
    name: "attach c1 to t3",
    run: () => api.attach("t3", { name: "c1", netns: ns.c1.name, configure: true }),
  },
  {
    name: "rule add t3 tcp/22",
    run: () => api.addRule("t3", { priority: 20, proto: "tcp", dport: 22, action: "allow" }),
  },
  { name: "default t3 deny", run: () => api.setDefault("t3", "deny") },
  { name: "cap c1 50mbit", run: () => api.setEndpoint("c1", { egress: { rate: 50_000_000 } }) },
  { name: "block add", run: () => api.blockAdd(["192.0.2.0/24", "2001:db8:99::/48"]) },
  { name: "cap t3 100mbit", run: () => api.setNetwork("t3", { egress: { rate: 100_000_000 } }) },
  {
    name: "rule add t1 udp/7100",
    run: () => api.addRule("t1", { priority: 30, proto: "udp", dport: 7100, action: "allow" }),
  },
  {
    name: "rule add global tcp/8080",
    run: () => api.addRule("global", { priority: 40, proto: "tcp", dport: 8080, action: "deny" }),
  },
  { name: "rule del t1 udp/7100", run: () => delRule("t1", 30) },
  { name: "rule del global tcp/8080", run: () => delRule("global", 40) },
  { name: "uncap c1", run: () => api.setEndpoint("c1", { egress: null }) },
  { name: "uncap t3", run: () => api.setNetwork("t3", { egress: null }) },
  { name: "block del v4", run: () => api.blockDel("192.0.2.0/24") },
  { name: "block del v6", run: () => api.blockDel("2001:db8:99::/48") },
  { name: "detach c1", run: () => api.detach("t3", "c1") },
  { name: "network delete t3", run: () => api.deleteNetwork("t3", false) },
];

async function delRule(scope: string, priority: number): Promise<void> {
  const r = (await api.listRules(scope)).rules.find((x) => x.priority === priority);
  if (!r) throw new Error(`no rule at priority ${priority} in ${scope}`);
  await api.deleteRule(scope, r.id);
}

async function snapshot(): Promise<KernelState> {
  const nets = new Map((await api.listNetworks()).map((n) => [n.id, n.name]));
  return kernelState(A.ns, A.pins.path, nets);
}

/** What the receivers in a2 and b1 counted, by tag (another network's traffic counts in b1). */
function counts(): Record<string, TagCount> {
  const a2 = readCounts(countFile);
  return { ...a2, xnet: readCounts(`${countFile}.b1`).xnet as TagCount, ...(a2.xnet ? { xnetA2: a2.xnet } : {}) };
}

function deniedDelivered(): Record<string, number> {
  const c = counts();
  return Object.fromEntries(DENIED.map((t) => [t, c[t]?.n ?? 0]));
}

const probe = (n: Netns, args: string[]) => {
  const p = Bun.spawn(["ip", "netns", "exec", n.name, BUN, PROBE, ...args], { stdout: "ignore", stderr: "ignore" });
  procs.push(p);
  return p;
};

beforeAll(async () => {
  A = new TestAgent("crash");
  api = new ApiClient(A.sock);
  for (const k of ["a1", "a2", "b1", "c1"] as const) ns[k] = new Netns(`cr${k}`);
  A.ns.execOk(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  await A.start();
  await api.createNetwork({ name: "t1", cidr: "10.71.1.0/24", gateway: "10.71.1.1" });
  await api.createNetwork({ name: "t2", cidr: "10.71.2.0/24", gateway: "10.71.2.1" });
  for (const [e, net] of [
    ["a1", "t1"],
    ["a2", "t1"],
    ["b1", "t2"],
  ] as const)
    ips[e] = (await api.attach(net, { name: e, netns: ns[e].name, configure: true })).ip;
  await api.addRule("t1", { priority: 10, proto: "udp", dport: 7000, action: "allow" });
  await api.setDefault("t1", "deny");
  await api.setDefault("t2", "deny");
  // A source address that is not a1's profile: port security drops what a1 sends from it.
  ns.a1.execOk(["ip", "addr", "add", "10.71.1.250/32", "dev", "eth0"]);
  countFile = join(A.dir, "counts.json");
  probe(ns.a2, ["count", "7000,7001", countFile]);
  probe(ns.b1, ["count", "7000", `${countFile}.b1`]);
  await Bun.sleep(300);
  probe(ns.a1, ["send", `ok@${ips.a2}:7000,deny@${ips.a2}:7001,xnet@${ips.b1}:7000`, "5"]);
  probe(ns.a1, ["send", `spoof@${ips.a2}:7000`, "5", "--from", "10.71.1.250"]);
  // The probes are Bun processes: on a fresh clone (no transpile cache, 2 busy cores) they can
  // take seconds to start; the stream must flow before the test begins.
  for (let i = 0; i < 300 && !counts().ok; i++) await Bun.sleep(50);
}, 60_000); // the wait above alone may take 15 s: bun's default hook timeout (5 s) cut it short

afterAll(async () => {
  for (const p of procs) p.kill("SIGKILL");
  A?.destroy();
  for (const n of Object.values(ns)) n?.destroy();
});

test("a crash after any kernel change of the cycle: no denied packet while down, restart reaches the store's state, a second reconcile changes nothing", async () => {
  expect(counts().ok?.n ?? 0).toBeGreaterThan(0); // the allowed stream flows
  // Clean pass: a restarted agent on a right kernel changes nothing; then every operation's
  // kernel changes and the state after it.
  const log = join(A.dir, "mutations.log");
  rmSync(log, { force: true });
  await A.kill("SIGTERM");
  await A.start([], { STRATUM_MUTATION_LOG: log });
  const lines = () => {
    try {
      return readFileSync(log, "utf8").split("\n").filter(Boolean);
    } catch {
      return [];
    }
  };
  expect(lines()).toEqual([]);
  const states: KernelState[] = [await snapshot()];
  const ends: number[] = [0];
  for (const op of ops) {
    await op.run();
    states.push(await snapshot());
    ends.push(lines().length);
  }
  expect(states.at(-1)).toEqual(states[0] as KernelState); // the cycle comes back to its start
  const changes = lines().map((l) => l.split("\t")[1] as string);
  const total = changes.length;
  // Every operation changes the kernel; together they give the crash points.
  for (let i = 1; i < ends.length; i++) expect(ends[i] as number).toBeGreaterThan(ends[i - 1] as number);
  expect(total).toBeGreaterThanOrEqual(50);

  const opOf = (k: number) => ends.findIndex((e) => e >= k) - 1; // index into ops of the op making change k
  const points = crashPoints(changes.map((what, i) => `${ops[opOf(i + 1)]?.name}: ${what}`));
  expect(points.length).toBeGreaterThanOrEqual(Math.min(CRASH_POINTS, total));
  console.log(`crash test: ${points.length} crash points of the cycle's ${total} kernel changes`);
  const problems: string[] = [];
  const missed: number[] = [];
  for (const k of points) {
    const point = `crash point ${k} (${ops[opOf(k)]?.name}: ${changes[k - 1]})`;
    await A.kill("SIGTERM");
    await A.start([], { STRATUM_CRASH_AFTER: String(k) });
    // The operation the agent dies in: the clean pass's, or a neighbour when a change that
    // depends on traffic (a bucket's state, made by its first packet) came or went.
    let j = -1;
    for (let i = 0; i < ops.length; i++) {
      try {
        await (ops[i] as Op).run();
      } catch {
        j = i;
        break;
      }
    }
    if (j < 0) {
      // This run made fewer changes than the clean pass (a bucket no packet had filled yet has
      // no state to delete): the cycle is complete and the point was not reached.
      missed.push(k);
      continue;
    }
    await A.proc?.exited;
    A.proc = undefined;
    // Down: the allowed stream goes on, nothing denied is delivered.
    const before = counts().ok?.n ?? 0;
    await Bun.sleep(250);
    if ((counts().ok?.n ?? 0) <= before) problems.push(`${point}: allowed traffic stopped while the agent was down`);
    const denied = deniedDelivered();
    if (Object.values(denied).some((n) => n > 0))
      problems.push(`${point}: denied packets delivered: ${JSON.stringify(denied)}`);

    await A.start();
    const again = await api.reconcile();
    if (again.changes.length)
      problems.push(`${point}: the reconcile after restart changed ${again.changes.join("; ")}`);
    const s = await snapshot();
    const committed = Bun.deepEquals(s, states[j + 1]);
    if (!committed && !Bun.deepEquals(s, states[j])) {
      const want = states[j] as KernelState;
      const diff = (Object.keys(s) as Array<keyof KernelState>).filter(
        (key) => JSON.stringify(s[key]) !== JSON.stringify(want[key]),
      );
      problems.push(`${point}: kernel state is neither before nor after the operation (differs in ${diff.join(", ")})`);
      if (process.env.STRATUM_CRASH_DEBUG)
        await Bun.write(
          process.env.STRATUM_CRASH_DEBUG,
          JSON.stringify({ got: s, before: states[j], after: states[j + 1], log: A.logText }, null, 1),
        );
      break;
    }
    // Finish the cycle from where the store stands.
    for (let i = committed ? j + 1 : j; i < ops.length; i++) await (ops[i] as Op).run();
  }
  expect(problems).toEqual([]);
  expect(missed.filter((k) => k < total - 2)).toEqual([]);
  // Only the last changes of the cycle may be left untried (the agent ends before them).
  expect(points.length - missed.length).toBeGreaterThanOrEqual(Math.min(CRASH_POINTS, total) - 2);
  const end = await snapshot();
  expect(end).toEqual(states[0] as KernelState);
  // The allowed stream lost nothing over all of it; the denied ones delivered nothing.
  const ok = counts().ok;
  expect(ok && ok.last - ok.first + 1 - ok.n).toBe(0);
  expect(deniedDelivered()).toEqual({ deny: 0, spoof: 0, xnet: 0 });
}, 600_000);
