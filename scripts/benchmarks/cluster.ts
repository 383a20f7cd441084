/** Cluster figures on the lab (test/helpers/lab.ts: node namespaces, an underlay switch
 * namespace, etcd there), each against a floor measured in the same run:
 *  - propagation: a network created through node1's API until its gateway address is on
 *    node3's cnv-user-br0 (three agents of one cluster), against an etcd put until the watch
 *    delivers it, both timed inside node3's namespace by cluster-probe.ts; 100 samples a
 *    round, the rows are the 50th and 99th percentiles of all of them; the same with two
 *    agents of a cluster of 400 networks and 60,000 endpoints, 10 samples a round;
 *  - resync: etcd holding 1,000 nodes × 100 endpoints (400 networks of 250), an agent started
 *    from an empty state directory until its API answers (it answers once its first reconcile
 *    is done), against the same agent joining an empty cluster; its peak and current memory;
 *    the mirror alone (Cluster.open on an empty store file, in a process of its own) against
 *    listing the same keys, and that listing against etcdctl's; etcd's bytes per endpoint;
 *  - watch fan-out: etcd's CPU time per endpoint attach while 100 watchers (the JSON
 *    gateway's streams, as each node opens one) watch the keyspace, against one watcher.
 * Opt-in (minutes, labs of their own): `scripts/bench cluster`. Everything (namespaces,
 * processes by PID, pins, directories) is removed afterwards, pass or fail, and on exit. */
import { Database } from "bun:sqlite";
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { ApiClient } from "../../src/api/api-client";
import { killAndWait } from "../../test/helpers/agent";
import { EtcdServer } from "../../test/helpers/etcd-server";
import { Lab, type LabNode } from "../../test/helpers/lab";
import { type Benchmark, BINARY, median, percentile } from "./harness";

const PROBE = join(import.meta.dir, "cluster-probe.ts");
/** Propagation samples per round (and per side). */
const SAMPLES = 100;
/** The simulated cluster. */
const NODES = 1000;
const NETWORKS = 400;
const PER_NETWORK = 250;
const ENDPOINTS = NETWORKS * PER_NETWORK;
const MiB = 1024 * 1024;

/** Runs cluster-probe.ts MODE inside namespace `ns`; its JSON result. */
function probe<T>(ns: string, mode: string, args: unknown): T {
  const r = Bun.spawnSync(["ip", "netns", "exec", ns, process.execPath, PROBE, mode, JSON.stringify(args)], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const line = r.stdout.toString().trim().split("\n").at(-1) ?? "";
  if (r.exitCode !== 0 || !line) throw new Error(`cluster-probe ${mode} in ${ns}: exit ${r.exitCode}: ${r.stderr}`);
  return JSON.parse(line) as T;
}

const note = (lines: string[]) => process.stderr.write(`\n  ${lines.join("\n  ")}`);

/** True from the second call on: the harness's first call of each side is its warm-up, which
 * the notes leave out as the rows do. */
function afterWarmUp(): () => boolean {
  let calls = 0;
  return () => calls++ > 0;
}
const fmt = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));

/** Propagation on three agents of an empty cluster (`big` unset), or on two agents of a
 * cluster holding `big`'s state (written into etcd first, agents of the benchmark's own). */
function propagationBench(big?: { networks: number; perNetwork: number; samples: number }): Benchmark {
  let lab: Lab | undefined;
  let round = 0;
  const agents: BenchNodeAgent[] = [];
  const parts = { ms: [] as number[], apiMs: [] as number[], watchMs: [] as number[] };
  const counted = afterWarmUp();
  const name = big ? `cluster/propagation-${big.networks}net` : "cluster/propagation";
  // The writer's node and the observer's: node1 and node3 of three, node1 and node2 of two.
  const writer = () => (agents[0] ? agents[0].sock : (lab as Lab).node(1).agent.sock);
  const observer = () => (lab as Lab).node(big ? 2 : 3);
  const endpoints = big ? big.networks * big.perNetwork : 0;
  return {
    name,
    unit: "ms",
    rows: [
      { name: `${name}-p50`, unit: "ms", figure: "ms", percentile: 50 },
      { name: `${name}-p99`, unit: "ms", figure: "ms", percentile: 99 },
    ],
    async setup() {
      if (!big) {
        lab = await Lab.create({ nodes: 3, tag: "bpg" });
        for (const n of lab.nodes) await n.start(n.clusterArgs());
        return;
      }
      lab = await Lab.create({ nodes: 2, tag: "bps" });
      probe(lab.switch.name, "write", {
        etcd: lab.etcd.url,
        nodes: NODES,
        networks: big.networks,
        perNetwork: big.perNetwork,
        parallel: 8,
      });
      for (const n of lab.nodes) agents.push(await spawnAgent(n, lab.etcd.url));
      await Bun.sleep(5000); // each agent's registration reaches the other's watch and is applied
    },
    teardown() {
      if (parts.apiMs.length) {
        const p = (xs: number[]) => `${fmt(percentile(xs, 50))} / ${fmt(percentile(xs, 99))} ms`;
        const o = observer().name;
        note([
          `${name}, p50 / p99 of ${parts.ms.length} samples: to ${o}'s kernel ${p(parts.ms)}; node1's API answered after ${p(parts.apiMs)}; a watch of its own in ${o}'s namespace had the network after ${p(parts.watchMs)}; from there to ${o}'s kernel ${p(parts.ms.map((x, i) => x - (parts.watchMs[i] as number)))}`,
        ]);
      }
      for (const a of agents) removeAgent(a);
      lab?.destroy();
    },
    candidate: {
      label: big
        ? `the same, 2 agents, ${big.networks} networks and ${endpoints.toLocaleString("en")} endpoints in the cluster`
        : "API network create on node1 → its gateway on node3's cnv-user-br0 (rtnetlink)",
      measure() {
        const l = lab as Lab;
        const r = probe<{ ms: number[]; apiMs: number[]; watchMs: number[] }>(observer().ns.name, "propagate", {
          api: writer(),
          etcd: l.etcd.url,
          samples: big ? big.samples : SAMPLES,
          tag: `p${round++}x`,
        });
        if (counted()) {
          parts.ms.push(...r.ms);
          parts.apiMs.push(...r.apiMs);
          parts.watchMs.push(...r.watchMs);
        }
        return { ms: r.ms };
      },
    },
    baseline: {
      label: big
        ? "etcd put → watch event (EtcdClient, in node2's namespace)"
        : "etcd put → watch event (EtcdClient, in node3's namespace)",
      measure() {
        const l = lab as Lab;
        const r = probe<{ ms: number[] }>(observer().ns.name, "floor", {
          etcd: l.etcd.url,
          samples: SAMPLES,
          tag: `f${round++}`,
        });
        return { ms: r.ms };
      },
    },
  };
}

interface WriteResult {
  ms: number;
  endpointWriteMs: number;
  endpoints: number;
  keys: number;
  phase1Keys: number;
  phase2Keys: number;
  recordBytes: number;
  claimBytes: number;
  before: { dbSize: number; dbSizeInUse: number };
  mid: { dbSize: number; dbSizeInUse: number };
  after: { dbSize: number; dbSizeInUse: number };
  event: { bytes: number; events: number };
}

interface AgentStart {
  ms: number;
  hwm: number;
  rss: number;
  /** The agent's own log: "synced N key(s) at revision R in X ms". */
  syncedKeys: number;
  syncMs: number;
  /** From the log's times: first line → "synced" → "reconcile made" → "ready" (ms). */
  phases: { join: number; reconcile: number; rest: number };
  endpoints: number;
}

const live = new Set<Subprocess>();
const dirs = new Set<string>();
process.prependListener("exit", () => {
  for (const p of live) killAndWait(p.pid);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The agent's start in phases, from the times its log lines carry: joining the cluster (up
 * to "synced …"), the first reconcile (to "reconcile made …"), the rest (the address and name
 * servers of every network, the API) to "ready". */
function phases(log: string): AgentStart["phases"] {
  const at = (re: RegExp) => {
    const line = log.split("\n").find((l) => re.test(l));
    return line ? Date.parse(line.slice(0, 24)) : Number.NaN;
  };
  const first = at(/^\d{4}-/);
  const synced = at(/ cluster: synced /);
  const reconciled = at(/ agent: reconcile made /);
  const ready = at(/ agent: ready in /);
  return { join: synced - first, reconcile: reconciled - synced, rest: ready - reconciled };
}

/** An agent of the benchmark's own in a lab node's namespace (its own UTS namespace with the
 * node's host name, as the lab's agents have), from an empty state directory and pin root:
 * the lab's TestAgent waits a few seconds for its API, an agent mirroring 100,000 endpoints
 * takes longer. */
interface BenchNodeAgent {
  node: LabNode;
  proc: Subprocess;
  dir: string;
  pins: string;
  sock: string;
  log: string;
  /** Spawn to the API's first answer (which comes once the first reconcile is done). */
  ms: number;
}

async function spawnAgent(node: LabNode, cluster: string): Promise<BenchNodeAgent> {
  const dir = mkdtempSync(join(tmpdir(), "stm-bench-agent-"));
  dirs.add(dir);
  const pins = `/sys/fs/bpf/stm-bench-${process.pid}-${node.name}`;
  dirs.add(pins);
  const sock = join(dir, "api.sock");
  const log = join(dir, "agent.log");
  mkdirSync(join(dir, "state"));
  const out = openSync(log, "a");
  const t0 = performance.now();
  const proc = Bun.spawn(
    [
      "nsenter",
      `--net=${node.ns.path}`,
      "unshare",
      "--uts",
      "sh",
      "-c",
      'echo "$0" > /proc/sys/kernel/hostname && exec "$@"',
      node.name,
      BINARY,
      "agent",
      "--state-dir",
      join(dir, "state"),
      "--pin-root",
      pins,
      "--api-socket",
      sock,
      "--cluster",
      cluster,
      "--node-name",
      node.name,
      "--node-address",
      node.underlay.ipv4,
    ],
    { stdout: out, stderr: out },
  );
  closeSync(out);
  live.add(proc);
  const agent: BenchNodeAgent = { node, proc, dir, pins, sock, log, ms: 0 };
  const api = new ApiClient(sock);
  try {
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null)
        throw new Error(
          `the agent exited (${proc.exitCode ?? proc.signalCode}): ${readFileSync(log, "utf8").slice(-2000)}`,
        );
      try {
        await api.listNetworks();
        agent.ms = performance.now() - t0;
        return agent;
      } catch {
        if (performance.now() - t0 > 180_000) throw new Error("the agent did not answer in 180 s");
        await Bun.sleep(2);
      }
    }
  } catch (e) {
    removeAgent(agent);
    throw e;
  }
}

/** One resync measurement's figures: the agent's start, the mirror's, a listing's time, bytes. */
const figures = (a: AgentStart, m: { ms: number; hwm: number }, listMs: number, bytes: number) => ({
  agentMs: a.ms,
  agentHwm: a.hwm,
  agentRss: a.rss,
  mirrorMs: m.ms,
  mirrorHwm: m.hwm,
  listMs,
  bytes,
});

/** Kills the agent (if it still runs) and removes what it made in the node: its bridge (the
 * gateways with it), its pins, its state. */
function removeAgent(a: BenchNodeAgent): void {
  // STRATUM_BENCH_LOGS=DIR keeps every agent's log there (where a start or a run spent its time).
  const keep = process.env.STRATUM_BENCH_LOGS;
  if (keep) {
    mkdirSync(keep, { recursive: true });
    copyFileSync(a.log, join(keep, `${a.node.name}-${Date.now()}.log`));
  }
  if (live.has(a.proc)) {
    killAndWait(a.proc.pid);
    live.delete(a.proc);
  }
  Bun.spawnSync(["ip", "-n", a.node.ns.name, "link", "del", "cnv-user-br0"], { stderr: "ignore" });
  rmSync(a.pins, { recursive: true, force: true });
  rmSync(a.dir, { recursive: true, force: true });
  dirs.delete(a.pins);
  dirs.delete(a.dir);
}

/** An agent started, its memory read once its API answers, stopped (SIGTERM: it leaves the
 * cluster), its store's endpoints counted, and everything it made removed. */
async function startAgent(node: LabNode, cluster: string): Promise<AgentStart> {
  const a = await spawnAgent(node, cluster);
  try {
    const status = readFileSync(`/proc/${a.proc.pid}/status`, "utf8");
    const kib = (f: string) => Number(new RegExp(`${f}:\\s+(\\d+) kB`).exec(status)?.[1] ?? Number.NaN);
    const text = readFileSync(a.log, "utf8");
    const synced = /synced (\d+) key\(s\) at revision \d+ in (\d+) ms/.exec(text);
    a.proc.kill("SIGTERM");
    await a.proc.exited;
    live.delete(a.proc);
    const db = new Database(join(a.dir, "state", "stratum.db"), { readonly: true });
    const endpoints = (db.query("SELECT count(*) AS n FROM endpoints").get() as { n: number }).n;
    db.close();
    return {
      ms: a.ms,
      hwm: kib("VmHWM") / 1024,
      rss: kib("VmRSS") / 1024,
      syncedKeys: Number(synced?.[1] ?? Number.NaN),
      syncMs: Number(synced?.[2] ?? Number.NaN),
      phases: phases(text),
      endpoints,
    };
  } finally {
    removeAgent(a);
  }
}

function resyncBench(): Benchmark {
  let lab: Lab | undefined;
  let empty: EtcdServer | undefined;
  let written: WriteResult | undefined;
  const syncMs: number[] = [];
  const agentPhases: AgentStart["phases"][] = [];
  const etcdCpu = { list: [] as number[], etcdctl: [] as number[], mirror: [] as number[] };
  const counted = { candidate: afterWarmUp(), baseline: afterWarmUp() };
  const perEndpoint = () => {
    const w = written as WriteResult;
    return {
      db: (w.after.dbSizeInUse - w.mid.dbSizeInUse) / w.endpoints,
      file: (w.after.dbSize - w.mid.dbSize) / w.endpoints,
      kv: (w.recordBytes + w.claimBytes) / w.endpoints,
    };
  };
  return {
    name: "cluster/resync-100k",
    unit: "ms",
    rows: [
      {
        name: "cluster/resync-agent-100k",
        unit: "ms",
        figure: "agentMs",
        candidate: "agent start, empty state, cluster of 1,000 nodes × 100 endpoints: spawn → API answers",
        baseline: "the same, joining an empty cluster",
      },
      {
        name: "cluster/resync-agent-100k-hwm",
        unit: "MiB",
        figure: "agentHwm",
        candidate: "that agent's peak RSS (VmHWM) when its API answers",
        baseline: "the same, empty cluster",
      },
      {
        name: "cluster/resync-agent-100k-rss",
        unit: "MiB",
        figure: "agentRss",
        candidate: "that agent's RSS (VmRSS) when its API answers",
        baseline: "the same, empty cluster",
      },
      {
        name: "cluster/resync-mirror-100k",
        unit: "ms",
        figure: "mirrorMs",
        candidate: "Cluster.open, empty store file: list + one SQLite transaction",
        baseline: "EtcdClient.list of the same keys",
      },
      {
        name: "cluster/resync-list-100k",
        unit: "ms",
        figure: "listMs",
        candidate: "EtcdClient.list: pages of 2,000 keys (JSON gateway)",
        baseline: "etcdctl get --prefix (gRPC, one response)",
      },
      {
        name: "cluster/resync-mirror-100k-hwm",
        unit: "MiB",
        figure: "mirrorHwm",
        candidate: "that process's peak RSS (VmHWM)",
        baseline: "the list's process, same modules loaded",
      },
      {
        name: "cluster/etcd-bytes-per-endpoint",
        unit: "bytes",
        figure: "bytes",
        candidate: "etcd db in use, growth per endpoint (record + claim)",
        baseline: "key + value bytes per endpoint",
      },
    ],
    async setup() {
      lab = await Lab.create({ nodes: 2, tag: "brs" });
      // The empty cluster of the baseline: an etcd of its own, in node2's namespace.
      empty = await EtcdServer.start({ netns: lab.node(2).ns.name, host: lab.node(2).underlay.ipv4 });
      const etcdRss = () => {
        const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${lab?.etcd.pid}/status`, "utf8"));
        return Number(m?.[1] ?? 0) / 1024;
      };
      const rssBefore = etcdRss();
      written = probe<WriteResult>(lab.switch.name, "write", {
        etcd: lab.etcd.url,
        nodes: NODES,
        networks: NETWORKS,
        perNetwork: PER_NETWORK,
        parallel: 8,
      });
      if (written.endpoints !== ENDPOINTS) throw new Error(`wrote ${written.endpoints} endpoints, not ${ENDPOINTS}`);
      const w = written;
      const pe = perEndpoint();
      note([
        `etcd: ${w.keys} keys (${w.phase1Keys} of nodes, members, networks; ${w.phase2Keys} of endpoints and claims), written in ${(w.ms / 1000).toFixed(1)} s (endpoints and claims ${(w.endpointWriteMs / 1000).toFixed(1)} s, 128 operations a transaction, 8 at a time)`,
        `per endpoint: 2 keys; record ${(w.recordBytes / w.endpoints).toFixed(0)} + claim ${(w.claimBytes / w.endpoints).toFixed(0)} bytes of key and value; etcd db in use +${pe.db.toFixed(0)} bytes, db file +${pe.file.toFixed(0)} bytes (db ${(w.after.dbSize / MiB).toFixed(1)} MiB, ${(w.after.dbSizeInUse / MiB).toFixed(1)} MiB in use)`,
        `a watch of the whole keyspace (JSON gateway) got the first transaction as ${w.event.bytes} bytes for ${w.event.events} events (${((2 * w.event.bytes) / Math.max(1, w.event.events)).toFixed(0)} bytes an endpoint: record and claim)`,
        `etcd's RSS: ${rssBefore.toFixed(0)} MiB before, ${etcdRss().toFixed(0)} MiB after`,
      ]);
    },
    teardown() {
      if (syncMs.length)
        note([
          `the agent's own log, medians: synced the cluster's keys in ${fmt(median(syncMs))} ms (list + mirror); its start from the first line to "synced" ${fmt(median(agentPhases.map((p) => p.join)))} ms, then its first reconcile ${fmt(median(agentPhases.map((p) => p.reconcile)))} ms, then the networks' address and name servers and the API ${fmt(median(agentPhases.map((p) => p.rest)))} ms`,
          `etcd's CPU time for one listing, median: ${fmt(median(etcdCpu.list))} ms (EtcdClient.list, JSON gateway), ${fmt(median(etcdCpu.etcdctl))} ms (etcdctl), ${fmt(median(etcdCpu.mirror))} ms (Cluster.open: its listing over gRPC)`,
        ]);
      empty?.destroy();
      lab?.destroy();
    },
    candidate: {
      label: "cluster of 1,000 nodes × 100 endpoints",
      async measure() {
        const l = lab as Lab;
        const a = await startAgent(l.node(1), l.etcd.url);
        // Every key but the address claims (one an endpoint), which a mirror leaves out.
        if (a.endpoints !== ENDPOINTS || !(a.syncedKeys >= (written as WriteResult).keys - ENDPOINTS))
          throw new Error(`the agent mirrored ${a.endpoints} endpoints of ${ENDPOINTS}, ${a.syncedKeys} keys`);
        const keep = counted.candidate();
        if (keep) {
          syncMs.push(a.syncMs);
          agentPhases.push(a.phases);
        }
        const m = probe<{ ms: number; hwm: number; endpoints: number; etcdCpuMs: number }>(
          l.node(1).ns.name,
          "resync",
          { etcd: l.etcd.url, etcdPid: l.etcd.pid },
        );
        if (keep) etcdCpu.mirror.push(m.etcdCpuMs);
        if (m.endpoints !== ENDPOINTS)
          throw new Error(`Cluster.open mirrored ${m.endpoints} endpoints of ${ENDPOINTS}`);
        const list = probe<{ ms: number; etcdCpuMs: number }>(l.node(1).ns.name, "list", {
          etcd: l.etcd.url,
          etcdPid: l.etcd.pid,
        });
        if (keep) etcdCpu.list.push(list.etcdCpuMs);
        return figures(a, m, list.ms, perEndpoint().db);
      },
    },
    baseline: {
      label: "empty cluster",
      async measure() {
        const l = lab as Lab;
        const a = await startAgent(l.node(1), (empty as EtcdServer).url);
        const m = probe<{ ms: number; hwm: number; keys: number }>(l.node(1).ns.name, "list", { etcd: l.etcd.url });
        const ctl = probe<{ ms: number; etcdCpuMs: number }>(l.node(1).ns.name, "etcdctl", {
          etcd: l.etcd.url,
          etcdPid: l.etcd.pid,
        });
        if (counted.baseline()) etcdCpu.etcdctl.push(ctl.etcdCpuMs);
        return figures(a, m, ctl.ms, perEndpoint().kv);
      },
    },
  };
}

/** Watchers of the fan-out row, and attaches written per measurement. */
const WATCHERS = 100;
const FANOUT_WRITES = 500;

function fanoutBench(): Benchmark {
  let lab: Lab | undefined;
  let round = 0;
  const bytes: number[] = [];
  const lastMs: number[] = [];
  const counted = afterWarmUp();
  const run = (watchers: number) => {
    const l = lab as Lab;
    const r = probe<{ cpuUsPerWrite: number; bytesPerWrite: number; lastMs: number[] }>(l.node(1).ns.name, "fanout", {
      etcd: l.etcd.url,
      watchers,
      writes: FANOUT_WRITES,
      etcdPid: l.etcd.pid,
      tag: `w${round++}`,
    });
    if (watchers === WATCHERS && counted()) {
      bytes.push(r.bytesPerWrite);
      lastMs.push(...r.lastMs);
    }
    return r.cpuUsPerWrite;
  };
  return {
    name: "cluster/watch-fanout-100",
    unit: "µs CPU",
    async setup() {
      lab = await Lab.create({ nodes: 1, tag: "bfo" });
    },
    teardown() {
      if (bytes.length)
        note([
          `fan-out: each watcher got ${fmt(median(bytes))} bytes an attach; the last of ${WATCHERS} watchers (one process, parsing little) had it after ${fmt(percentile(lastMs, 50))} ms (p50), ${fmt(percentile(lastMs, 99))} ms (p99)`,
        ]);
      lab?.destroy();
    },
    candidate: {
      label: `etcd CPU per endpoint attach (record + claim), ${WATCHERS} watchers of the keyspace (JSON gateway)`,
      measure: () => run(WATCHERS),
    },
    baseline: { label: "the same, one watcher", measure: () => run(1) },
  };
}

export const CLUSTER_BENCHMARKS: Record<string, () => Benchmark> = {
  "cluster/propagation": () => propagationBench(),
  // 150 endpoints a network, not 250: with 100,000 in the cluster every node refuses a new
  // network (its capacity check counts every node's endpoints in its own tables).
  "cluster/propagation-400net": () => propagationBench({ networks: NETWORKS, perNetwork: 150, samples: 10 }),
  "cluster/resync-100k": resyncBench,
  "cluster/watch-fanout-100": fanoutBench,
};
