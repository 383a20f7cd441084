/** The cluster's part of the API without etcd: the routes against a stand-in cluster (views
 * that match their strict schemas, a live node's removal refused, an unknown one not found,
 * unknown query parameters and body keys refused), a single-node agent's one line for each of
 * them, etcd's status in the contract's view, the cluster part of status and the
 * stratum_cluster_* metrics (only on a cluster node). */
import { describe, expect, test } from "bun:test";
import { NOT_A_CLUSTER_NODE } from "../../src/api/app";
import {
  AgentStatusView,
  ClusterStatusView,
  ClusterSummaryView,
  NodeRemovalView,
  NodeView,
} from "../../src/api/contract";
import type { ClusterStatus } from "../../src/cluster/cluster";
import { clusterStatusView, clusterSummary, nodeCounts } from "../../src/observe/cluster";
import { AgentMetrics, type MetricsSnapshot } from "../../src/observe/metrics";
import { CLUSTER_STATUS, FakeCluster, type KernelFree, kernelFreeApp } from "../helpers/kernel-free";
import { metricValue, parseExposition } from "../helpers/prom";

const notCluster = { code: "INVALID", message: NOT_A_CLUSTER_NODE };

async function call(k: KernelFree, method: string, path: string, body?: unknown) {
  const res = await k.app.request(path, {
    method,
    ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
  });
  return { status: res.status, body: res.status === 204 ? undefined : await res.json() };
}

describe("the cluster routes", () => {
  test("list, show and cluster status answer views that match their strict schemas", async () => {
    const k = kernelFreeApp();
    const list = await call(k, "GET", "/v1/nodes");
    expect(list.status).toBe(200);
    expect(
      NodeView.array()
        .parse(list.body)
        .map((n) => `${n.name} ${n.state}`),
    ).toEqual(["node-a ready", "node-b unreachable", "node-c left"]);
    const one = await call(k, "GET", "/v1/nodes/node-b");
    expect(NodeView.parse(one.body)).toMatchObject({ name: "node-b", state: "unreachable", version: null });
    const st = await call(k, "GET", "/v1/cluster");
    expect(ClusterStatusView.parse(st.body)).toEqual(CLUSTER_STATUS);
  });

  test("remove: a live node and this node are refused, an unknown one is not found, a dead one goes", async () => {
    const k = kernelFreeApp();
    expect(await call(k, "DELETE", "/v1/nodes/node-a")).toEqual({
      status: 400,
      body: { code: "INVALID", message: "node node-a is this node" },
    });
    expect((await call(k, "DELETE", "/v1/nodes/nope")).status).toBe(404);
    const r = await call(k, "DELETE", "/v1/nodes/node-b");
    expect(r.status).toBe(200);
    expect(NodeRemovalView.parse(r.body)).toEqual({
      node: "node-b",
      endpoints: [{ name: "db-9", network: "app-net", ip: "10.20.0.90", ip6: null }],
    });
    expect((await call(k, "GET", "/v1/nodes/node-b")).status).toBe(404);
    // A live node other than this one: refused by the cluster, with its line.
    const fake = new FakeCluster();
    (fake.list[1] as NodeView).state = "ready";
    expect(await call(kernelFreeApp({ cluster: fake }), "DELETE", "/v1/nodes/node-b")).toEqual({
      status: 400,
      body: { code: "INVALID", message: "node node-b is alive" },
    });
  });

  test("strict: an unknown query parameter or body key is refused, and nothing is removed", async () => {
    const k = kernelFreeApp();
    expect(await call(k, "GET", "/v1/nodes?state=ready")).toEqual({
      status: 400,
      body: { code: "INVALID", message: 'unknown query parameter "state" (this route takes none)' },
    });
    expect(await call(k, "GET", "/v1/cluster?verbose=1")).toEqual({
      status: 400,
      body: { code: "INVALID", message: 'unknown query parameter "verbose" (this route takes none)' },
    });
    expect(await call(k, "DELETE", "/v1/nodes/node-b", { force: true })).toEqual({
      status: 400,
      body: { code: "INVALID", message: 'unknown key "force" (this route takes no body)' },
    });
    expect((await call(k, "GET", "/v1/nodes/node-b")).status).toBe(200);
    expect((await call(k, "POST", "/v1/nodes")).status).toBe(405);
  });

  test("a single-node agent answers every cluster route with one line: not a cluster node (400)", async () => {
    const k = kernelFreeApp({ cluster: undefined });
    for (const [method, path] of [
      ["GET", "/v1/nodes"],
      ["GET", "/v1/nodes/node-a"],
      ["DELETE", "/v1/nodes/node-a"],
      ["GET", "/v1/cluster"],
    ] as const)
      expect({ path, ...(await call(k, method, path)) }).toEqual({ path, status: 400, body: notCluster });
    // Still served and documented: the routes exist, this agent has no cluster.
    const doc = (await (await k.app.request("/openapi.json")).json()) as any;
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/v1/nodes", "/v1/nodes/{name}", "/v1/cluster"]));
  });
});

describe("the cluster's part of status and metrics", () => {
  test("etcd's status in the contract's view: every key present, null when unset", () => {
    const s: ClusterStatus = {
      clusterId: "c1",
      node: "node-a",
      endpoints: ["http://a:2379", "http://b:2379"],
      etcd: {
        up: true,
        members: [
          { endpoint: "http://a:2379", healthy: true, version: "3.5.16", leader: true },
          { endpoint: "http://b:2379", healthy: false, error: "ECONNREFUSED" },
        ],
        leader: "http://a:2379",
        revision: 9,
      },
      mirror: { revision: 9, lag: 0, keys: 3, invalidKeys: 0, lastResync: null },
      watch: { events: 2, resyncs: 1, connected: true },
      lease: { id: null, ttl: 0, renewals: 0, missed: 0, reRegistered: 0 },
    };
    const v = ClusterStatusView.parse(clusterStatusView(s));
    expect(v.etcd).toEqual({
      endpoints: ["http://a:2379", "http://b:2379"],
      up: true,
      members: [
        { endpoint: "http://a:2379", healthy: true, version: "3.5.16", leader: true, error: null },
        { endpoint: "http://b:2379", healthy: false, version: null, leader: false, error: "ECONNREFUSED" },
      ],
      leader: "http://a:2379",
      revision: 9,
    });
    // etcd away: no revision, no lag.
    const down = clusterStatusView({
      ...s,
      etcd: { up: false, members: [], leader: null, revision: null },
      mirror: { ...s.mirror, lag: null },
    });
    expect(ClusterStatusView.safeParse(down).success).toBe(true);
  });

  test("the status summary reads the agent's records; a single node's status has cluster: null", async () => {
    const records = {
      clusterId: "c1",
      o: { nodeName: "node-a" },
      writer: { revision: 41, meta: (k: string) => (k === "resyncedAt" ? "2026-12-06T09:00:00.000Z" : undefined) },
      counters: { up: false, lag: 2, resyncs: 1, events: 5, missed: 3, writesRefused: 4 },
    };
    expect(ClusterSummaryView.parse(clusterSummary(records))).toEqual({
      clusterId: "c1",
      node: "node-a",
      etcdUp: false,
      mirrorRevision: 41,
      lag: 2,
      lastResync: "2026-12-06T09:00:00.000Z",
      renewalsMissed: 3,
      writesRefused: 4,
    });
    const k = kernelFreeApp();
    const st = AgentStatusView.parse(await (await k.app.request("/v1/status")).json());
    expect(st.cluster).toBeNull();
  });

  const snap = (cluster?: MetricsSnapshot["cluster"]): MetricsSnapshot => ({
    agent: {
      version: "0",
      kernel: "6",
      libbpf: "1",
      startTimeSeconds: 1,
      rssBytes: 1,
      healthy: true,
      logTotals: { warn: 0, error: 0 },
    },
    endpoints: [],
    drops: [],
    rules: [],
    defaults: [],
    microseg: { groups: 0, entries: [], denied: { packets: 0, bytes: 0 } },
    lb: [],
    caps: [],
    firewall: {},
    nat: {},
    monitor: {},
    maps: [],
    mapCountSeconds: 0,
    ports: { ok: 0, degraded: 0 },
    reconcile: { runs: 0, errors: 0, byTrigger: {}, repairs: {}, changes: {} },
    ...(cluster ? { cluster } : {}),
  });

  test("stratum_cluster_* on a cluster node, with their values; none at all on a single node", async () => {
    const cluster = {
      up: true,
      lag: 3,
      resyncs: 2,
      events: 17,
      missed: 1,
      writesRefused: 4,
      nodes: nodeCounts([{ state: "ready" }, { state: "ready" }, { state: "unreachable" }]),
    };
    const f = parseExposition((await new AgentMetrics(async () => snap(cluster), { cluster: true }).scrape()).body);
    expect(metricValue(f, "stratum_cluster_etcd_up")).toBe(1);
    expect(metricValue(f, "stratum_cluster_watch_lag_revisions")).toBe(3);
    expect(metricValue(f, "stratum_cluster_resyncs_total")).toBe(2);
    expect(metricValue(f, "stratum_cluster_watch_events_total")).toBe(17);
    expect(metricValue(f, "stratum_cluster_lease_renewals_missed_total")).toBe(1);
    expect(metricValue(f, "stratum_cluster_writes_refused_total")).toBe(4);
    expect(f.get("stratum_cluster_nodes")?.samples).toEqual([
      { labels: { state: "ready" }, value: 2 },
      { labels: { state: "unreachable" }, value: 1 },
      { labels: { state: "left" }, value: 0 },
    ]);
    expect(f.get("stratum_cluster_etcd_up")?.type).toBe("gauge");
    expect(f.get("stratum_cluster_resyncs_total")?.type).toBe("counter");
    const down = parseExposition(
      (await new AgentMetrics(async () => snap({ ...cluster, up: false }), { cluster: true }).scrape()).body,
    );
    expect(metricValue(down, "stratum_cluster_etcd_up")).toBe(0);
    const single = (await new AgentMetrics(async () => snap()).scrape()).body;
    expect(single).not.toContain("stratum_cluster_");
  });
});
