/** The `node` and `cluster` commands, `endpoint list` and `status` on a cluster node and on a
 * single node, as a user runs them: against the app served on a unix socket (a stand-in
 * cluster, an in-memory store, no kernel, no etcd). Tables for people, -o json and -o yaml
 * for scripts, one line and an exit code for what is refused, help that teaches. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NOT_A_CLUSTER_NODE } from "../../src/api/app";
import { ClusterStatusView, NodeView } from "../../src/api/contract";
import { complete } from "../../src/cli/completion";
import { CLUSTER_STATUS, fillFixture, kernelFreeApp } from "../helpers/kernel-free";
import { BUN, ROOT, type RunResult, run } from "../helpers/netns";

const notCluster = { code: "INVALID", message: NOT_A_CLUSTER_NODE };

const SUMMARY = {
  clusterId: "c1",
  node: "node-a",
  etcdUp: false,
  mirrorRevision: 41,
  lag: 0,
  lastResync: "2026-12-06T09:00:00.000Z",
  renewalsMissed: 3,
  writesRefused: 2,
};

const dir = mkdtempSync(join(tmpdir(), "stm-cli-cluster-"));
const clusterSock = join(dir, "cluster.sock");
const singleSock = join(dir, "single.sock");
const servers: Array<ReturnType<typeof Bun.serve>> = [];

beforeAll(() => {
  // The status document a cluster node answers: the real one, with its cluster part.
  const base = kernelFreeApp();
  const c = kernelFreeApp({
    status: async () => ({ ...((await (await base.app.request("/v1/status")).json()) as object), cluster: SUMMARY }),
  });
  fillFixture(c);
  // An endpoint of another node, as a cluster node's store holds it.
  c.store.claimEndpoint({
    name: "db-9",
    network: "db-net",
    ip: "10.30.0.90",
    mac: "02:00:02:00:00:5a",
    hostIndex: 90,
    kind: "veth",
    hostIf: "stmdb9",
    netns: "db9",
    ifname: "eth0",
    node: "node-b",
  });
  const s = kernelFreeApp({ cluster: undefined });
  fillFixture(s);
  servers.push(
    Bun.serve({ unix: clusterSock, fetch: c.app.fetch }),
    Bun.serve({ unix: singleSock, fetch: s.app.fetch }),
  );
});
afterAll(() => {
  for (const s of servers) s.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

/** The CLI against a served app: spawned without blocking, so this process can answer it. */
async function cli(sock: string, ...args: string[]): Promise<RunResult> {
  const p = Bun.spawn([BUN, join(ROOT, "src/main.ts"), ...args, "--api-socket", sock], {
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { code, stdout, stderr };
}

describe("node and cluster commands", () => {
  test("node list: a table for people (this node marked), -o json and -o yaml for scripts", async () => {
    const r = await cli(clusterSock, "node", "list");
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+STATE\s+ADDRESS\s+MGMT\s+VERSION\s+ENDPOINTS\s+SINCE$/);
    expect(lines[1]).toMatch(
      /^node-a \(this node\)\s+ready\s+10\.99\.0\.1\s+10\.98\.0\.1\s+0\.0\.0-test\s+2\s+(in )?\S+( ago)?$/,
    );
    expect(lines[2]).toMatch(/^node-b\s+unreachable\s+10\.99\.0\.2\s+-\s+-\s+1\s+-$/);
    expect(lines[3]).toMatch(/^node-c\s+left\s+10\.99\.0\.3\s+10\.98\.0\.3\s+-\s+0\s+(in )?\S+( ago)?$/);
    const j = await cli(clusterSock, "node", "list", "-o", "json");
    expect(NodeView.array().parse(JSON.parse(j.stdout))).toHaveLength(3);
    const y = await cli(clusterSock, "-o", "yaml", "node", "list");
    expect(y.stdout).toContain("- name: node-a\n  state: ready\n");
  });

  test("node show: what the state means, and what to do about a dead node", async () => {
    const r = await cli(clusterSock, "node", "show", "node-b");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("state:        unreachable (its lease expired");
    expect(r.stdout).toContain("`cenvero-str-ctl node remove node-b` forgets it");
    const a = await cli(clusterSock, "node", "show", "node-a");
    expect(a.stdout).toContain("name:         node-a (this node)");
    expect(a.stdout).not.toContain("node remove");
    const missing = await cli(clusterSock, "node", "show", "nope");
    expect(missing).toEqual({
      code: 3,
      stdout: "",
      stderr: "cenvero-str-ctl: node nope is not a member of this cluster\n",
    });
  });

  test("node remove: refused for this node with one line; a dead node's endpoints are listed as freed", async () => {
    const self = await cli(clusterSock, "node", "remove", "node-a");
    expect(self).toEqual({ code: 2, stdout: "", stderr: "cenvero-str-ctl: node node-a is this node\n" });
    const left = await cli(clusterSock, "node", "remove", "node-c", "-o", "json");
    expect(JSON.parse(left.stdout)).toEqual({ node: "node-c", endpoints: [] });
    const r = await cli(clusterSock, "node", "remove", "node-b");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^removed node node-b; freed 1 endpoint\(s\) and their addresses:\n {2}ENDPOINT\s+NETWORK\s+IP\s+IP6\n {2}db-9\s+app-net\s+10\.20\.0\.90\s+-\n$/,
    );
  });

  test("cluster status: etcd, members, mirror, watch, lease, nodes; -o json is the view", async () => {
    const r = await cli(clusterSock, "cluster", "status");
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    for (const line of [
      "cluster:     6c0f1a2e-0000-4000-8000-000000000001",
      "this node:   node-a",
      "etcd:        up; leader http://10.99.0.254:2379; revision 42",
      "  member:    http://10.99.0.253:2379: DOWN: connection refused",
      "  member:    http://10.99.0.254:2379: healthy, etcd 3.5.16, leader",
      "mirror:      revision 42, lag 0; 17 key(s)",
      "last resync: 2026-12-06T09:00:00.500Z",
      "watch:       connected; 12 event(s), 1 full listing(s) since start",
      "lease:       694d8a7b3c2e1f00, ttl 10 s; 55 renewal(s), 0 missed, registered again 0 time(s)",
    ])
      expect(r.stdout).toContain(`${line}\n`);
    expect(r.stdout).toMatch(/nodes: +\d+: \d+ ready, \d+ unreachable, \d+ left\n/);
    const j = await cli(clusterSock, "cluster", "status", "-o", "json");
    expect(ClusterStatusView.parse(JSON.parse(j.stdout))).toEqual(CLUSTER_STATUS);
  });

  test("a single-node agent: every cluster command fails with one line and exit 2 (-o json: {code, message})", async () => {
    for (const args of [
      ["node", "list"],
      ["node", "show", "x"],
      ["node", "remove", "x"],
      ["cluster", "status"],
    ]) {
      const r = await cli(singleSock, ...args);
      expect({ args, ...r }).toEqual({ args, code: 2, stdout: "", stderr: `cenvero-str-ctl: ${NOT_A_CLUSTER_NODE}\n` });
    }
    const j = await cli(singleSock, "node", "list", "-o", "json");
    expect({ code: j.code, err: JSON.parse(j.stderr) }).toEqual({ code: 2, err: notCluster });
  });

  test("endpoint list: a NODE column in a cluster only, GROUP when one is in a group; endpoint show names the node", async () => {
    const single = await cli(singleSock, "endpoint", "list");
    const sl = single.stdout.trimEnd().split("\n");
    expect(sl[0]).toMatch(/^NAME\s+NETWORK\s+IP\s+MAC\s+KIND\s+INTERFACE\s+GROUP$/);
    expect(sl.find((l) => l.startsWith("web-1"))).toMatch(/\s+prod\/web$/);
    expect(sl.find((l) => l.startsWith("vm-1"))).toMatch(/\s+-$/);
    const c = await cli(clusterSock, "endpoint", "list");
    const lines = c.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+NETWORK\s+IP\s+MAC\s+KIND\s+INTERFACE\s+NODE\s+GROUP$/);
    expect(lines.find((l) => l.startsWith("db-9"))).toMatch(/\s+node-b\s+-$/);
    expect(lines.find((l) => l.startsWith("web-1"))).toMatch(/\s+-\s+prod\/web$/);
    const show = await cli(clusterSock, "endpoint", "show", "db-9");
    expect(show.stdout).toContain("node:       node-b\n");
    expect((await cli(singleSock, "endpoint", "show", "web-1")).stdout).not.toContain("node:");
  });

  test("status: the cluster part on a cluster node, none on a single node", async () => {
    const r = await cli(clusterSock, "status");
    for (const line of [
      "cluster:        c1, this node node-a",
      "etcd:           DOWN: enforcing this node's copy of the cluster state; 2 change(s) refused so far",
      "cluster mirror: revision 41, lag 0; last resync 2026-12-06T09:00:00.000Z",
      "cluster lease:  3 renewal(s) missed",
    ])
      expect(r.stdout).toContain(`${line}\n`);
    const single = await cli(singleSock, "status");
    expect(single.stdout).not.toMatch(/^(cluster|etcd)/m);
    expect(JSON.parse((await cli(singleSock, "status", "-o", "json")).stdout).cluster).toBeNull();
  });

  test("completion offers the cluster's node names", async () => {
    const names = JSON.parse((await cli(clusterSock, "node", "list", "-o", "json")).stdout).map(
      (n: NodeView) => n.name,
    );
    expect(names).toContain("node-a");
    expect((await complete("bash", ["--api-socket", clusterSock, "node", "show", ""])).items).toEqual(names);
    expect((await complete("bash", ["--api-socket", singleSock, "node", "remove", ""])).items).toEqual([]);
  });

  test("--help of each teaches with examples; run without the right arguments, one line", async () => {
    const h = run([BUN, join(ROOT, "src/main.ts"), "node", "remove", "--help"]);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain("Refused while it is alive");
    expect(h.stdout).toContain("cenvero-str-ctl node remove node-b");
    const top = run([BUN, join(ROOT, "src/main.ts"), "--help"]);
    expect(top.stdout).toMatch(/\n {2}node +The cluster's nodes/);
    expect(top.stdout).toMatch(/\n {2}cluster +This node's cluster/);
    const missing = run([BUN, join(ROOT, "src/main.ts"), "node", "show"]);
    expect({ code: missing.code, stderr: missing.stderr }).toEqual({
      code: 2,
      stderr: "cenvero-str-ctl: missing NODE (cenvero-str-ctl node show --help)\n",
    });
  });
});
