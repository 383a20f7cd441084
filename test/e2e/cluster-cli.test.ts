/** The cluster as an operator sees it, end to end: a real etcd and two real agents on the lab
 * (each node a network namespace with its own agent; a switch namespace joins them, etcd runs
 * there). `node list` on either node shows both ready with their addresses; `cluster status`
 * shows etcd up and no lag after a write; removing a live node is refused with one line; a
 * node killed (SIGKILL) turns unreachable once its lease expires, its endpoint still listed
 * with its node's name, and `node remove` then frees it (the address can be claimed again); a
 * clean stop (SIGTERM) shows "left"; status and /metrics have the cluster part; a single-node
 * agent answers the cluster commands with one line and exit 2. Everything made here
 * (namespaces, links, processes by PID, pins, directories) goes, pass or fail. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { NOT_A_CLUSTER_NODE } from "../../src/api/app";
import { ClusterStatusView, EndpointView, NodeView } from "../../src/api/contract";
import { TestAgent } from "../helpers/agent";
import { Lab, type LabNode } from "../helpers/lab";
import { metricValue, parseExposition } from "../helpers/prom";

let lab: Lab;
let A: LabNode;
let B: LabNode;
let S: TestAgent;

/** Polls `fn` until it returns something other than undefined, for at most `ms`. */
async function until<T>(what: string, fn: () => T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await Bun.sleep(100);
  }
}

const nodes = (n: LabNode): NodeView[] => NodeView.array().parse(n.json("node", "list"));
const stateOf = (n: LabNode, name: string) => nodes(n).find((x) => x.name === name)?.state;
const scrape = async (sock: string) =>
  parseExposition(await (await fetch("http://stratum/metrics", { unix: sock } as RequestInit)).text());

beforeAll(async () => {
  lab = await Lab.create({ nodes: 2, tag: "clc" });
  A = lab.node(1);
  B = lab.node(2);
  await A.start(A.clusterArgs());
  await B.start(B.clusterArgs());
  S = new TestAgent("cls");
  await S.start();
}, 60_000);

afterAll(() => {
  lab?.destroy(); // its agents and etcd by PID, waited for; then namespaces, pins, directories
  S?.destroy();
});

describe("two nodes and etcd", () => {
  test("node list on either node: both ready, with their addresses; -o json is the view", async () => {
    for (const agent of [A, B])
      await until("both nodes ready", () =>
        nodes(agent).filter((n) => n.state === "ready").length === 2 ? true : undefined,
      );
    const a = nodes(A);
    expect(a.map((n) => [n.name, n.state, n.address, n.mgmtAddress, n.self])).toEqual([
      ["node1", "ready", A.underlay.ipv4, A.mgmt.ipv4, true],
      ["node2", "ready", B.underlay.ipv4, B.mgmt.ipv4, false],
    ]);
    expect(nodes(B).map((n) => [n.name, n.self])).toEqual([
      ["node1", false],
      ["node2", true],
    ]);
    // The shape scripts rely on: every key present, times RFC 3339.
    const raw = A.json("node", "list")[0];
    expect(Object.keys(raw).sort()).toEqual(
      [
        "address",
        "endpoints",
        "joinedAt",
        "left",
        "mgmtAddress",
        "name",
        "roles",
        "self",
        "startedAt",
        "state",
        "version",
      ].sort(),
    );
    expect(raw.version).toBeString();
    expect(Date.parse(raw.startedAt)).toBeGreaterThan(Date.now() - 120_000);
    // The table for people: this node marked.
    const t = A.cli("node", "list");
    expect(t.code).toBe(0);
    const lines = t.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+STATE\s+ADDRESS\s+MGMT\s+VERSION\s+ENDPOINTS\s+SINCE$/);
    expect(lines[1]).toMatch(/^node1 \(this node\)\s+ready\s+10\.99\.0\.1\s+10\.98\.0\.1\s/);
    expect(lines[2]).toMatch(/^node2\s+ready\s+10\.99\.0\.2\s+10\.98\.0\.2\s/);
    expect(NodeView.parse(B.json("node", "show", "node1"))).toMatchObject({ name: "node1", state: "ready" });
  });

  test("cluster status: etcd up, its leader and revision; no lag once a write has come through", async () => {
    expect(
      A.cli("network", "create", "--name", "app-net", "--cidr", "10.20.0.0/24", "--gateway", "10.20.0.1").code,
    ).toBe(0);
    // The other node has it, and its mirror is where etcd is.
    await until("app-net on node2", () => (B.json("network", "list").length === 1 ? true : undefined));
    const s = await until("no lag on node2", () => {
      const v = ClusterStatusView.parse(B.json("cluster", "status"));
      return v.mirror.lag === 0 ? v : undefined;
    });
    expect(s.etcd).toMatchObject({ up: true, leader: lab.etcd.url, endpoints: [lab.etcd.url] });
    expect(s.etcd.members).toEqual([
      { endpoint: lab.etcd.url, healthy: true, version: expect.any(String), leader: true, error: null },
    ]);
    expect(s.mirror.revision).toBe(s.etcd.revision as number);
    expect(s).toMatchObject({ node: "node2", watch: { connected: true } });
    expect(s.lease.id).toBeString();
    const t = A.cli("cluster", "status");
    expect(t.code).toBe(0);
    expect(t.stdout).toContain(`etcd:        up; leader ${lab.etcd.url}; revision `);
    expect(t.stdout).toMatch(/\nnodes: +2: 2 ready, 0 unreachable, 0 left\n/);
  });

  test("status and /metrics: the cluster part", async () => {
    const st = A.json("status");
    expect(st.cluster).toMatchObject({ node: "node1", etcdUp: true, lag: 0, renewalsMissed: 0 });
    expect(st.cluster.clusterId).toBe(ClusterStatusView.parse(A.json("cluster", "status")).clusterId);
    const t = A.cli("status");
    expect(t.stdout).toContain(`cluster:        ${st.cluster.clusterId}, this node node1\n`);
    expect(t.stdout).toContain("etcd:           up (watch connected)\n");
    const f = await scrape(A.agent.sock);
    expect(metricValue(f, "stratum_cluster_etcd_up")).toBe(1);
    expect(metricValue(f, "stratum_cluster_watch_lag_revisions")).toBe(0);
    expect(metricValue(f, "stratum_cluster_resyncs_total")).toBeGreaterThanOrEqual(1);
    expect(metricValue(f, "stratum_cluster_watch_events_total")).toBeGreaterThanOrEqual(1); // node2's registration
    expect(metricValue(f, "stratum_cluster_lease_renewals_missed_total")).toBe(0);
    expect(metricValue(f, "stratum_cluster_writes_refused_total")).toBe(0);
    expect(metricValue(f, "stratum_cluster_nodes", { state: "ready" })).toBe(2);
    expect(metricValue(f, "stratum_cluster_nodes", { state: "unreachable" })).toBe(0);
  });

  test("a live node cannot be removed: one line, exit 2, nothing changed", () => {
    const r = A.cli("node", "remove", "node2");
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({
      code: 2,
      stdout: "",
      stderr: "cenvero-str-ctl: node node2 is alive (its lease is kept alive): stop its agent first, then remove it\n",
    });
    expect(A.cli("node", "remove", "node1").stderr).toStartWith("cenvero-str-ctl: node node1 is this node");
    expect(stateOf(A, "node2")).toBe("ready");
  });

  let freed: EndpointView;
  test("a killed node turns unreachable; its endpoint stays, with its node's name", async () => {
    freed = EndpointView.parse(B.json("network", "attach", "app-net", "--name", "vm-b", "--tap", "tapvmb"));
    expect(freed.node).toBe("node2");
    await until("vm-b on node1", () =>
      A.json("endpoint", "list").some((e: EndpointView) => e.name === "vm-b") ? true : undefined,
    );
    await B.kill();
    const t0 = Date.now();
    await until("node2 unreachable on node1", () => (stateOf(A, "node2") === "unreachable" ? true : undefined), 20_000);
    expect(Date.now() - t0).toBeLessThan(16_000);
    const ep = EndpointView.array()
      .parse(A.json("endpoint", "list"))
      .find((e) => e.name === "vm-b");
    expect(ep).toMatchObject({ node: "node2", nodeState: "unreachable", ip: freed.ip });
    const list = A.cli("endpoint", "list").stdout.trimEnd().split("\n");
    expect(list[0]).toMatch(/\sNODE$/);
    expect(list.find((l) => l.startsWith("vm-b"))).toMatch(/\snode2 \(unreachable\)$/);
    expect(A.json("endpoint", "show", "vm-b").nodeState).toBe("unreachable");
    expect(A.cli("node", "show", "node2").stdout).toContain("state:        unreachable (its lease expired");
    // Only this node's endpoints are its ports: another node's is no missing port here.
    expect(A.json("status").health.status).toBe("ok");
    const f = await scrape(A.agent.sock);
    expect(metricValue(f, "stratum_cluster_nodes", { state: "unreachable" })).toBe(1);
  }, 30_000);

  test("node remove forgets it and frees its endpoint: the address can be claimed again", async () => {
    const r = A.cli("node", "remove", "node2");
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(r.stdout).toStartWith("removed node node2; freed 1 endpoint(s) and their addresses:\n");
    expect(r.stdout).toMatch(new RegExp(`\\n {2}vm-b\\s+app-net\\s+${freed.ip.replaceAll(".", "\\.")}\\s`));
    expect(nodes(A).map((n) => n.name)).toEqual(["node1"]);
    expect(A.json("endpoint", "list").map((e: EndpointView) => e.name)).not.toContain("vm-b");
    expect(A.cli("node", "show", "node2").code).toBe(3);
    const again = EndpointView.parse(
      A.json("network", "attach", "app-net", "--name", "vm-a", "--tap", "tapvma", "--ip", freed.ip),
    );
    expect(again).toMatchObject({ ip: freed.ip, node: "node1" });
  });

  test("a clean stop (SIGTERM) shows left at once", async () => {
    // node2 comes back (its state directory is a copy of this cluster), then stops cleanly.
    await B.start(B.clusterArgs());
    await until("node2 ready again", () => (stateOf(A, "node2") === "ready" ? true : undefined));
    await B.stop();
    await until("node2 left", () => (stateOf(A, "node2") === "left" ? true : undefined), 5000);
    const n = NodeView.parse(A.json("node", "show", "node2"));
    expect(n).toMatchObject({ state: "left", version: null });
    expect(Date.parse(n.left as string)).toBeGreaterThan(Date.now() - 30_000);
    expect(A.cli("node", "list").stdout).toMatch(/\nnode2\s+left\s+10\.99\.0\.2\s/);
    const f = await scrape(A.agent.sock);
    expect(metricValue(f, "stratum_cluster_nodes", { state: "left" })).toBe(1);
  }, 20_000);
});

describe("a single-node agent", () => {
  test("answers the cluster commands with one line and exit 2; its output has no cluster part", async () => {
    for (const args of [
      ["node", "list"],
      ["node", "remove", "node1"],
      ["cluster", "status"],
    ]) {
      const r = S.ctl(...args);
      expect({ args, code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({
        args,
        code: 2,
        stdout: "",
        stderr: `cenvero-str-ctl: ${NOT_A_CLUSTER_NODE}\n`,
      });
    }
    const j = S.ctl("node", "list", "-o", "json");
    expect(JSON.parse(j.stderr)).toEqual({ code: "INVALID", message: NOT_A_CLUSTER_NODE });
    expect(S.json("status").cluster).toBeNull();
    expect(S.ctl("status").stdout).not.toMatch(/^(cluster|etcd)/m);
    expect(S.ctl("endpoint", "list").stdout).toBe("NAME  NETWORK  IP  MAC  KIND  INTERFACE\n");
    const text = await (await fetch("http://stratum/metrics", { unix: S.sock } as RequestInit)).text();
    expect(text).not.toContain("stratum_cluster_");
  });
});
