/** The cluster's part of the API without etcd: the routes against a stand-in cluster (views
 * that match their strict schemas, a live node's removal refused, an unknown one not found,
 * unknown query parameters and body keys refused), a single-node agent's one line for each of
 * them, etcd's status in the contract's view. */
import { describe, expect, test } from "bun:test";
import { NOT_A_CLUSTER_NODE } from "../../src/api/app";
import { ClusterStatusView, NodeRemovalView, NodeView } from "../../src/api/contract";
import type { ClusterStatus } from "../../src/cluster/cluster";
import { clusterStatusView } from "../../src/observe/cluster";
import { CLUSTER_STATUS, FakeCluster, type KernelFree, kernelFreeApp } from "../helpers/kernel-free";

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

describe("etcd's status", () => {
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
});
