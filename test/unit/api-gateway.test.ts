/** The gateway routes without etcd or an HA engine: against a stand-in GatewayApi (the real
 * model's checks, groups in memory) the views match their strict schemas, create is 201 and
 * delete 204, an unknown body key is refused and nothing is created; a single-node agent
 * answers every route with one line. The views' builder and its adapter over a Cluster never
 * show a group's heartbeat key. */
import { describe, expect, test } from "bun:test";
import { type AuditEntry, NOT_A_CLUSTER_NODE } from "../../src/api/app";
import { GatewayGroupView, GatewayStatusView } from "../../src/api/contract";
import { clusterGatewayGroups, gatewayGroupView, masterDownMs } from "../../src/api/gateway-groups";
import type { StoredGatewayGroup } from "../../src/cluster/keys";
import { StratumError } from "../../src/errors";
import { validateGatewayGroup } from "../../src/model/gateway-group";
import { fillFixture, type KernelFree, kernelFreeApp, NORTH_GROUP } from "../helpers/kernel-free";

const notCluster = { code: "INVALID", message: NOT_A_CLUSTER_NODE };

async function call(k: KernelFree, method: string, path: string, body?: unknown) {
  const res = await k.app.request(path, {
    method,
    ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text === "" ? undefined : JSON.parse(text) };
}

const SOUTH = { name: "south", vips: ["198.51.100.10", "2001:db8::20"], nodes: ["node-b", "node-a"] };

describe("the gateway routes", () => {
  test("list and show: the groups' views, with the holder and the longest takeover wait", async () => {
    const k = kernelFreeApp();
    const list = await call(k, "GET", "/v1/gateway/groups");
    expect(list.status).toBe(200);
    const north = {
      name: "north",
      vips: { ipv4: "192.0.2.10", ipv6: "2001:db8::10" },
      nodes: [
        { name: "node-a", priority: 200 },
        { name: "node-b", priority: 100 },
      ],
      preempt: true,
      advertIntervalMs: 100,
      masterDownMs: 360.9,
      createdAt: "2026-12-06T09:00:00.000Z",
      active: { node: "node-a", epoch: 57, since: "2026-12-06T09:00:01.000Z", why: "highest priority" },
    };
    expect(GatewayGroupView.array().parse(list.body)).toEqual([north]);
    const one = await call(k, "GET", "/v1/gateway/groups/north");
    expect({ status: one.status, body: GatewayGroupView.parse(one.body) }).toEqual({ status: 200, body: north });
    expect(await call(k, "GET", "/v1/gateway/groups/nope")).toEqual({
      status: 404,
      body: { code: "NOT_FOUND", message: "no gateway group nope" },
    });
  });

  test("create: 201 and the view (defaults filled in, nobody holds it yet); audited with its name", async () => {
    const audit: AuditEntry[] = [];
    const k = kernelFreeApp({ audit: (e) => audit.push(e) });
    const r = await call(k, "POST", "/v1/gateway/groups", { ...SOUTH, priority: { "node-a": 150 } });
    expect(r.status).toBe(201);
    expect(GatewayGroupView.parse(r.body)).toEqual({
      name: "south",
      vips: { ipv4: "198.51.100.10", ipv6: "2001:db8::20" },
      nodes: [
        { name: "node-b", priority: 100 },
        { name: "node-a", priority: 150 },
      ],
      preempt: true,
      advertIntervalMs: 100,
      masterDownMs: 360.9,
      createdAt: "2026-12-06T10:00:00.000Z",
      active: null,
    });
    expect(r.body).not.toHaveProperty("key");
    expect(((await call(k, "GET", "/v1/gateway/groups")).body as GatewayGroupView[]).map((g) => g.name)).toEqual([
      "north",
      "south",
    ]);
    expect(audit.map((e) => `${e.what} → ${e.status}`)).toEqual(["createGatewayGroup name=south → 201"]);
  });

  test("create: the model's refusals with their status; an unknown body key or a bad type, and nothing is created", async () => {
    const k = kernelFreeApp();
    fillFixture(k);
    const cases: Array<[unknown, number, string, string]> = [
      [{ ...SOUTH, name: "north" }, 409, "CONFLICT", "gateway group north already exists"],
      [{ ...SOUTH, vips: ["192.0.2.10"] }, 409, "CONFLICT", "--vip 192.0.2.10 is already gateway group north's"],
      [
        { ...SOUTH, vips: ["10.20.0.9"] },
        400,
        "INVALID",
        "--vip 10.20.0.9 is inside network app-net: a VIP is a north-side address (on the uplink's LAN)",
      ],
      [
        { ...SOUTH, nodes: ["node-a", "node-z"] },
        400,
        "INVALID",
        "--nodes: node-z is not a node of this cluster (cenvero-str-ctl node list shows them)",
      ],
      [{ ...SOUTH, advertIntervalMs: 10 }, 400, "INVALID", "advertIntervalMs 10: from 20 to 10000"],
      [
        { ...SOUTH, colour: "red" },
        400,
        "INVALID",
        'unknown key "colour" (expected one of name, vips, nodes, priority, preempt, advertIntervalMs)',
      ],
      [{ ...SOUTH, preemt: false }, 400, "INVALID", 'unknown key "preemt" (did you mean "preempt"?)'],
      [{ ...SOUTH, key: "AAAA" }, 400, "INVALID", expect.stringContaining('unknown key "key"')],
      [{ ...SOUTH, preempt: "on" }, 400, "INVALID", expect.stringContaining("preempt: ")],
      [{ ...SOUTH, vips: [] }, 400, "INVALID", expect.stringContaining("vips: ")],
      [
        { ...SOUTH, vips: ["192.0.2.1", "2001:db8::1", "192.0.2.2"] },
        400,
        "INVALID",
        expect.stringContaining("vips: "),
      ],
    ];
    for (const [body, status, code, message] of cases)
      expect({ body, r: await call(k, "POST", "/v1/gateway/groups", body) }).toEqual({
        body,
        r: { status, body: { code, message } },
      });
    expect(((await call(k, "GET", "/v1/gateway/groups")).body as GatewayGroupView[]).map((g) => g.name)).toEqual([
      "north",
    ]);
  });

  test("delete: 204, then not found; a body is refused", async () => {
    const k = kernelFreeApp();
    expect(await call(k, "DELETE", "/v1/gateway/groups/north", { force: true })).toEqual({
      status: 400,
      body: { code: "INVALID", message: 'unknown key "force" (this route takes no body)' },
    });
    expect(await call(k, "DELETE", "/v1/gateway/groups/north")).toEqual({ status: 204, body: undefined });
    expect((await call(k, "GET", "/v1/gateway/groups/north")).status).toBe(404);
    expect(await call(k, "DELETE", "/v1/gateway/groups/north")).toEqual({
      status: 404,
      body: { code: "NOT_FOUND", message: "no gateway group north" },
    });
    expect((await call(k, "GET", "/v1/gateway/groups")).body).toEqual([]);
    expect((await call(k, "PUT", "/v1/gateway/groups/north")).status).toBe(405);
  });

  test("status: this node's part in each group, in the strict view", async () => {
    const k = kernelFreeApp();
    const r = await call(k, "GET", "/v1/gateway/status");
    expect(r.status).toBe(200);
    const s = GatewayStatusView.parse(r.body);
    expect(s.node).toBe("node-a");
    expect(s.groups.map((g) => [g.name, g.member, g.role, g.active, g.epoch])).toEqual([
      ["north", true, "active", "node-a", 57],
    ]);
    expect(s.groups[0]?.nodes).toEqual([
      { name: "node-a", priority: 200, role: "active", lastHeardMs: null, etcd: null, self: true },
      { name: "node-b", priority: 100, role: "standby", lastHeardMs: 42, etcd: true, self: false },
    ]);
    expect(await call(k, "GET", "/v1/gateway/status?verbose=1")).toEqual({
      status: 400,
      body: { code: "INVALID", message: 'unknown query parameter "verbose" (this route takes none)' },
    });
  });

  test("a single-node agent answers every gateway route with one line: not a cluster node (400)", async () => {
    const k = kernelFreeApp({ gateway: undefined });
    for (const [method, path, body] of [
      ["GET", "/v1/gateway/groups", undefined],
      ["POST", "/v1/gateway/groups", SOUTH],
      ["GET", "/v1/gateway/groups/north", undefined],
      ["DELETE", "/v1/gateway/groups/north", undefined],
      ["GET", "/v1/gateway/status", undefined],
    ] as const)
      expect({ method, path, ...(await call(k, method, path, body)) }).toEqual({
        method,
        path,
        status: 400,
        body: notCluster,
      });
    // Still served and documented: the routes exist, this agent has no cluster.
    const doc = (await (await k.app.request("/openapi.json")).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(["/v1/gateway/groups", "/v1/gateway/groups/{name}", "/v1/gateway/status"]),
    );
  });
});

describe("the views and the adapter over a Cluster", () => {
  const KEY = Buffer.alloc(32, 9).toString("base64");

  test("masterDownMs: the node of lowest priority's master-down, to 0.1 ms", () => {
    expect(masterDownMs(NORTH_GROUP)).toBe(360.9);
    expect(masterDownMs({ ...NORTH_GROUP, priority: { "node-a": 254, "node-b": 200 } })).toBe(321.9);
    expect(masterDownMs({ ...NORTH_GROUP, advertIntervalMs: 1000, priority: { "node-a": 1, "node-b": 1 } })).toBe(
      3996.1,
    );
  });

  test("a stored group's key is never in its view", () => {
    const stored: StoredGatewayGroup = { ...NORTH_GROUP, key: KEY };
    const v = gatewayGroupView(stored, null);
    expect(GatewayGroupView.parse(v)).toEqual(v);
    expect(JSON.stringify(v)).not.toContain(KEY);
  });

  test("clusterGatewayGroups: sorted views with the holder and its epoch; NOT_FOUND; create and delete go to the cluster", () => {
    const groups: StoredGatewayGroup[] = [
      { ...NORTH_GROUP, name: "zeta", vips: { ipv4: "192.0.2.30" }, key: KEY },
      { ...NORTH_GROUP, key: KEY },
    ];
    const deleted: string[] = [];
    const api = clusterGatewayGroups({
      gatewayGroups: () => structuredClone(groups),
      gatewayActive: (name) =>
        name === "north"
          ? { node: "node-b", since: "2026-12-06T09:30:00.000Z", why: "node-a went silent", epoch: 90 }
          : null,
      createGatewayGroup: (spec) => {
        const g = {
          ...validateGatewayGroup(spec, { existing: groups, subnets: [], members: ["node-a", "node-b"] }),
          createdAt: "2026-12-06T10:00:00.000Z",
        };
        groups.push({ ...g, key: KEY });
        return g;
      },
      deleteGatewayGroup: (name) => {
        if (!groups.some((g) => g.name === name)) throw new StratumError("NOT_FOUND", `no gateway group ${name}`);
        deleted.push(name);
      },
    });
    const list = api.groups();
    expect(list.map((g) => [g.name, g.active?.node ?? null, g.active?.epoch ?? null])).toEqual([
      ["north", "node-b", 90],
      ["zeta", null, null],
    ]);
    expect(JSON.stringify(list)).not.toContain(KEY);
    expect(api.group("zeta").vips).toEqual({ ipv4: "192.0.2.30", ipv6: null });
    expect(() => api.group("nope")).toThrow("no gateway group nope");
    const made = api.createGroup({ name: "south", vips: ["198.51.100.1"], nodes: ["node-a", "node-b"] });
    expect(made).toMatchObject({ name: "south", active: null, masterDownMs: 360.9 });
    expect(JSON.stringify(made)).not.toContain(KEY);
    api.deleteGroup("south");
    expect(deleted).toEqual(["south"]);
    expect(() => api.deleteGroup("nope")).toThrow("no gateway group nope");
  });
});
