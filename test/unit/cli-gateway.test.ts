/** The `gateway` commands as a user runs them: against the app served on a unix socket (a
 * stand-in GatewayApi, no etcd, no kernel) and on a single node. Tables for people, -o json for
 * scripts, and bad --preempt, --advert-interval and --priority refused with one line before
 * any agent is asked. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NOT_A_CLUSTER_NODE } from "../../src/api/app";
import { GatewayGroupView, GatewayStatusView } from "../../src/api/contract";
import { complete } from "../../src/cli/completion";
import { kernelFreeApp } from "../helpers/kernel-free";
import { BUN, ROOT, type RunResult, run } from "../helpers/netns";

const dir = mkdtempSync(join(tmpdir(), "stm-cli-gateway-"));
const clusterSock = join(dir, "cluster.sock");
const singleSock = join(dir, "single.sock");
const servers: Array<ReturnType<typeof Bun.serve>> = [];

beforeAll(() => {
  servers.push(
    Bun.serve({ unix: clusterSock, fetch: kernelFreeApp().app.fetch }),
    Bun.serve({ unix: singleSock, fetch: kernelFreeApp({ cluster: undefined, gateway: undefined }).app.fetch }),
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

describe("gateway commands", () => {
  test("group list: NAME, VIPS, NODES with priorities, PREEMPT, ADVERT, ACTIVE; -o json is the views", async () => {
    const r = await cli(clusterSock, "gateway", "group", "list");
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+VIPS\s+NODES\s+PREEMPT\s+ADVERT\s+ACTIVE$/);
    expect(lines[1]).toMatch(/^north\s+192\.0\.2\.10,2001:db8::10\s+node-a=200,node-b=100\s+on\s+100ms\s+node-a$/);
    const j = await cli(clusterSock, "gateway", "group", "list", "-o", "json");
    expect(
      GatewayGroupView.array()
        .parse(JSON.parse(j.stdout))
        .map((g) => g.name),
    ).toEqual(["north"]);
  });

  test("group show: each node's priority and master-down, the longest wait, the holder", async () => {
    const r = await cli(clusterSock, "gateway", "group", "show", "north");
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    for (const line of [
      "name:                  north",
      "VIPs:                  192.0.2.10, 2001:db8::10",
      "node node-a:           priority 200, master-down 321.9 ms",
      "node node-b:           priority 100, master-down 360.9 ms",
      "preempt:               on (a node of higher priority takes the role back)",
      "advert interval:       100 ms",
      "longest takeover wait: 360.9 ms (the master-down of the node of lowest priority)",
    ])
      expect(r.stdout).toContain(`${line}\n`);
    expect(r.stdout).toMatch(
      /\nactive: +node-a \(epoch 57\) since 2026-12-06T09:00:01\.000Z \(.+\): highest priority\n/,
    );
    const missing = await cli(clusterSock, "gateway", "group", "show", "nope");
    expect(missing).toEqual({ code: 3, stdout: "", stderr: "cenvero-str-ctl: no gateway group nope\n" });
  });

  test("group create and del: one line each; -o json is the view; refusals with their exit code", async () => {
    const c = await cli(
      clusterSock,
      "gateway",
      "group",
      "create",
      "south",
      "--vip",
      "198.51.100.10,2001:db8::20",
      "--nodes",
      "node-a,node-b",
      "--priority",
      "node-b=150",
      "--preempt",
      "off",
      "--advert-interval",
      "0.5s",
    );
    expect(c).toEqual({
      code: 0,
      stdout:
        "created gateway group south: 198.51.100.10, 2001:db8::20 on node-a=100,node-b=150 (preempt off, advert 500 ms, longest takeover wait 1804.7 ms)\n",
      stderr: "",
    });
    const j = await cli(
      clusterSock,
      "gateway",
      "group",
      "create",
      "west",
      "--vip",
      "198.51.100.11",
      "--nodes",
      "node-a,node-c",
      "-o",
      "json",
    );
    expect(GatewayGroupView.parse(JSON.parse(j.stdout))).toMatchObject({
      name: "west",
      preempt: true,
      advertIntervalMs: 100,
      nodes: [
        { name: "node-a", priority: 100 },
        { name: "node-c", priority: 100 },
      ],
    });
    expect(JSON.parse(j.stdout)).not.toHaveProperty("key");
    const taken = await cli(
      clusterSock,
      "gateway",
      "group",
      "create",
      "east",
      "--vip",
      "192.0.2.10",
      "--nodes",
      "node-a,node-b",
    );
    expect(taken).toEqual({
      code: 9,
      stdout: "",
      stderr: "cenvero-str-ctl: --vip 192.0.2.10 is already gateway group north's\n",
    });
    const d = await cli(clusterSock, "gateway", "group", "del", "south");
    expect(d).toEqual({ code: 0, stdout: "deleted gateway group south\n", stderr: "" });
    expect((await cli(clusterSock, "gateway", "group", "del", "south")).code).toBe(3);
    expect((await cli(clusterSock, "gateway", "group", "del", "west")).code).toBe(0);
  });

  test("status: the groups, then this node's groups' nodes: priority, role, when heard, etcd", async () => {
    const r = await cli(clusterSock, "gateway", "status");
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^GROUP\s+VIPS\s+ACTIVE\s+EPOCH\s+THIS NODE\s+SINCE\s+WHY$/);
    expect(lines[1]).toMatch(
      /^north\s+192\.0\.2\.10,2001:db8::10\s+node-a\s+57\s+active\s+\S+( ago)?\s+highest priority$/,
    );
    expect(lines[2]).toBe("");
    expect(lines[3]).toBe("north: node-a is active; lets go in 212.5 ms unless renewed");
    expect(lines[4]).toBe(
      "  adverts 1200 sent, 1180 received, 0 rejected, 2 missed; 1 transition(s); 2400 renewal(s), 0 failed",
    );
    expect(lines[5]).toMatch(/^ {2}NODE\s+PRIORITY\s+ROLE\s+HEARD\s+ETCD$/);
    expect(lines[6]).toMatch(/^ {2}node-a\s+200\s+active\s+\(this node\)\s+-$/);
    expect(lines[7]).toMatch(/^ {2}node-b\s+100\s+standby\s+42 ms ago\s+yes$/);
    const j = await cli(clusterSock, "gateway", "status", "-o", "json");
    expect(GatewayStatusView.parse(JSON.parse(j.stdout)).groups.map((g) => g.role)).toEqual(["active"]);
  });

  test("bad --preempt, --advert-interval and --priority: one line, exit 2, no agent asked", async () => {
    const none = join(dir, "no-agent.sock");
    const create = ["gateway", "group", "create", "g", "--vip", "198.51.100.1", "--nodes", "node-a,node-b"];
    const cases: Array<[string[], string]> = [
      [["--preempt", "maybe"], '--preempt must be on or off, not "maybe"'],
      [["--preempt=yes"], '--preempt must be on or off, not "yes"'],
      [["--advert-interval", "5ms"], "--advert-interval 5ms: whole milliseconds from 20ms to 10s"],
      [["--advert-interval", "fast"], "--advert-interval fast: a duration such as 100ms or 1s"],
      [["--priority", "x"], "--priority x: NODE=N, e.g. --priority node1=200,node2=100"],
      [["--priority", "node-a=1,node-a=2"], "--priority names node node-a twice"],
    ];
    for (const [extra, message] of cases) {
      const r = await cli(none, ...create, ...extra);
      expect({ extra, ...r }).toEqual({ extra, code: 2, stdout: "", stderr: `cenvero-str-ctl: ${message}\n` });
    }
    // The same line, well formed, does ask the agent (and finds none).
    expect((await cli(none, ...create, "--preempt", "on", "--advert-interval", "200ms")).code).toBe(7);
  });

  test("a single-node agent: every gateway command fails with one line and exit 2", async () => {
    for (const args of [
      ["gateway", "group", "list"],
      ["gateway", "group", "show", "north"],
      ["gateway", "group", "del", "north"],
      ["gateway", "group", "create", "g", "--vip", "198.51.100.1", "--nodes", "a,b"],
      ["gateway", "status"],
    ]) {
      const r = await cli(singleSock, ...args);
      expect({ args, ...r }).toEqual({ args, code: 2, stdout: "", stderr: `cenvero-str-ctl: ${NOT_A_CLUSTER_NODE}\n` });
    }
  });

  test("completion offers the groups' names; --help teaches what a group is and the defaults", async () => {
    expect((await complete("bash", ["--api-socket", clusterSock, "gateway", "group", "show", ""])).items).toEqual([
      "north",
    ]);
    expect((await complete("bash", ["gateway", "group", "create", "g", "--preempt", ""])).items).toEqual(["off", "on"]);
    expect((await complete("bash", ["gateway", ""])).items).toEqual(["group", "status"]);
    const h = run([BUN, join(ROOT, "src/main.ts"), "gateway", "group", "create", "--help"]);
    expect(h.code).toBe(0);
    const text = h.stdout.replace(/\s+/g, " ");
    for (const s of [
      "One node is active at a time",
      "a lease in etcd decides",
      "cnv-mgmt-br0",
      "priority 100",
      "preempt on",
      "advert 100ms",
      "≈ 361 ms",
    ])
      expect({ s, has: text.includes(s) }).toEqual({ s, has: true });
    const top = run([BUN, join(ROOT, "src/main.ts"), "--help"]);
    expect(top.stdout).toMatch(/\n {2}gateway +Gateway groups/);
  });
});
