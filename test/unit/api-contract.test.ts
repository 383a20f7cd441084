/** The API's contract (src/api/contract.ts) against the app: the OpenAPI document is valid
 * OpenAPI 3.1 by a real validator (which does catch a broken one), the app serves exactly the
 * contract's routes, every route refuses an unknown body key and an unknown query parameter
 * with a 400 that names it and changes nothing, and the real responses of every GET route
 * match their strict response schemas (a key missing from a view fails). */
import { beforeEach, describe, expect, test } from "bun:test";
import { validate } from "@readme/openapi-parser";
import { servedOperations } from "../../src/api/app";
import { type CallArgs, OPERATIONS, type OperationId, ROUTES, type RouteDef, routeUrl } from "../../src/api/contract";
import { openApiDocument } from "../../src/api/openapi";
import { ROUTE_PATHS } from "../../src/api/route-paths";
import { fillFixture, type KernelFree, kernelFreeApp } from "../helpers/kernel-free";

/** A valid call of every operation against the fixture (a mapped type: a new route without a
 * sample does not compile). */
const SAMPLES: { [K in OperationId]: (k: KernelFree) => CallArgs<K> } = {
  listNetworks: () => ({}),
  createNetwork: () => ({ body: { name: "new-net", cidr: "10.50.0.0/24", gateway: "10.50.0.1" } }),
  showNetwork: () => ({ params: { name: "app-net" } }),
  setNetwork: () => ({ params: { name: "app-net" }, body: { mtu: 1400 } }),
  deleteNetwork: () => ({ params: { name: "db-net" }, query: { force: "true" } }),
  attachEndpoint: () => ({ params: { name: "app-net" }, body: { name: "web-9", tap: "tap9" } }),
  detachEndpoint: () => ({ params: { name: "app-net", endpoint: "vm-1" } }),
  listNetworkDnsRecords: () => ({ params: { name: "app-net" } }),
  addDnsRecord: () => ({ params: { name: "app-net" }, body: { name: "db", type: "A", value: "10.20.0.51" } }),
  deleteDnsRecords: () => ({ params: { name: "app-net" }, query: { name: "api" } }),
  deleteDnsRecord: (k) => ({
    params: { name: "app-net", id: String(k.store.listDnsRecords("app-net")[0]?.id) },
  }),
  listDnsRecords: () => ({}),
  listLeases: () => ({ query: { network: "app-net" } }),
  listEndpoints: () => ({ query: { network: "app-net" } }),
  showEndpoint: () => ({ params: { name: "web-1" } }),
  setEndpoint: () => ({ params: { name: "web-1" }, body: { egress: null } }),
  handoffEndpoint: () => ({ params: { name: "vm-1" }, body: { socket: "/run/vmm-vm-1.sock" } }),
  exportNetworkd: () => ({}),
  listRules: () => ({ params: { scope: "app-net" } }),
  addRule: () => ({ params: { scope: "app-net" }, body: { priority: 500, action: "allow" } }),
  deleteRule: (k) => ({ params: { scope: "app-net", id: String(k.svc.firewall.listRules("app-net").rules[0]?.id) } }),
  moveRule: (k) => ({
    params: { scope: "app-net", id: String(k.svc.firewall.listRules("app-net").rules[0]?.id) },
    body: { priority: 600 },
  }),
  setDefault: () => ({ params: { scope: "global" }, body: { action: "deny" } }),
  exportRules: () => ({ params: { scope: "app-net" } }),
  importRules: () => ({
    params: { scope: "db-net" },
    body: { default: "deny", rules: [{ priority: 1, action: "allow" }] },
  }),
  listBlocklist: () => ({ query: { limit: "2" } }),
  addBlocklist: () => ({ body: { prefixes: ["192.0.2.0/24"] } }),
  deleteBlocklistPrefix: () => ({ query: { prefix: "198.51.100.0/24" } }),
  clearBlocklist: () => ({}),
  testBlocklist: () => ({ query: { address: "198.51.100.7" } }),
  listNodes: () => ({}),
  showNode: () => ({ params: { name: "node-a" } }),
  removeNode: () => ({ params: { name: "node-b" } }),
  moveEndpoint: () => ({ params: { name: "web-1" }, body: { to: "node-b" } }),
  getCluster: () => ({}),
  listVips: () => ({}),
  createVip: () => ({ body: { name: "dns", address: "192.0.2.53", port: 53, proto: "udp", check: { kind: "none" } } }),
  showVip: () => ({ params: { name: "web" } }),
  deleteVip: () => ({ params: { name: "spare" } }),
  addBackend: () => ({ params: { name: "spare" }, body: { endpoint: "web-1", port: 8443 } }),
  deleteBackend: () => ({ params: { name: "web", endpoint: "vm-1" }, query: { port: "8080" } }),
  listMsegGroups: () => ({}),
  createMsegGroup: () => ({ body: { name: "prod/api", description: "the API servers" } }),
  showMsegGroup: () => ({ params: { name: "prod/web" } }),
  deleteMsegGroup: () => ({ params: { name: "spare" } }),
  listMsegRules: () => ({}),
  addMsegRule: () => ({ body: { from: "prod", to: "prod/db", action: "deny" } }),
  deleteMsegRule: () => ({ params: { id: "1" } }),
  exportMicroseg: () => ({}),
  importMicroseg: () => ({ body: { groups: [{ name: "prod" }, { name: "prod/web" }], rules: [] } }),
  listGatewayGroups: () => ({}),
  createGatewayGroup: () => ({
    body: { name: "south", vips: ["192.0.2.20"], nodes: ["node-a", "node-b"], priority: { "node-b": 150 } },
  }),
  showGatewayGroup: () => ({ params: { name: "north" } }),
  deleteGatewayGroup: () => ({ params: { name: "north" } }),
  getGatewayStatus: () => ({}),
  getBgpConfig: () => ({}),
  setBgpConfig: () => ({ body: { asn: 65001, routerId: "10.0.0.1" } }),
  deleteBgpConfig: () => ({}),
  listBgpPeers: () => ({}),
  addBgpPeer: () => ({ body: { name: "r2", address: "10.0.0.3", asn: 65000 } }),
  deleteBgpPeer: () => ({ params: { name: "r1" } }),
  listBgpRoutes: () => ({}),
  trace: () => ({ body: { from: "web-1", toEndpoint: "vm-1" } }),
  getStatus: () => ({}),
  reconcile: () => ({}),
  getMetrics: () => ({}),
  getOpenApi: () => ({}),
};

type Loose = { params?: Record<string, unknown>; query?: Record<string, unknown>; body?: unknown };

function send(k: KernelFree, op: OperationId, a: Loose): Promise<Response> {
  const r = ROUTES[op] as RouteDef;
  const body = a.body === undefined ? undefined : JSON.stringify(a.body);
  return Promise.resolve(
    k.app.request(routeUrl(op, a.params, a.query), {
      method: r.method.toUpperCase(),
      ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body }),
    }),
  );
}

/** Everything a refused request must leave as it was: every table of the store, the
 * firewall's tables, and the providers (none called). */
function snapshot(k: KernelFree): string {
  const tables = k.store.db
    .query("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name")
    .all() as Array<{
    name: string;
    sql: string;
  }>;
  // A WITHOUT ROWID table (the blocklist's) is read in its key's order.
  const order = (t: { sql: string }) => (/WITHOUT ROWID/i.test(t.sql) ? "" : " ORDER BY rowid");
  const rows = Object.fromEntries(
    tables.map((t) => [t.name, k.store.db.query(`SELECT * FROM "${t.name}"${order(t)}`).all()]),
  );
  return JSON.stringify({ rows, scopes: [...k.kernel.scopes], block: [...k.kernel.block].sort(), calls: k.calls });
}

describe("the OpenAPI document", () => {
  test("is valid OpenAPI 3.1 by @readme/openapi-parser, and the validator catches a broken one", async () => {
    const doc = openApiDocument();
    const ok = await validate(structuredClone(doc) as never);
    expect({ valid: ok.valid, errors: ok.valid ? [] : ok.errors }).toEqual({ valid: true, errors: [] });
    expect(ok.warnings).toEqual([]);

    // The same document with one path parameter left undeclared and one operationId repeated.
    const broken = structuredClone(doc) as any;
    broken.paths["/v1/networks/{name}"].get.parameters = [];
    broken.paths["/v1/endpoints"].get.operationId = "listNetworks";
    const bad = await validate(broken);
    expect(bad.valid).toBe(false);
    const messages = bad.valid ? [] : bad.errors.map((e) => String(e.message));
    expect(messages).toEqual([
      "`/paths/v1/networks/{name}/get` is missing path parameter(s) for `{name}`.",
      "The operationId `listNetworks` is duplicated and must be made unique.",
    ]);
    // And a schema error: a response without its description.
    const broken2 = structuredClone(doc) as any;
    delete broken2.paths["/v1/status"].get.responses["200"].description;
    const bad2 = await validate(broken2);
    expect(bad2.valid ? [] : bad2.errors.map((e) => String(e.message).split("\n")[0])).toEqual([
      "REQUIRED must have required property 'description'",
    ]);
  });

  test("has every route once, with its operationId, parameters, body, responses and the bearer scheme", () => {
    const doc = openApiDocument() as any;
    const seen: string[] = [];
    for (const op of OPERATIONS) {
      const r = ROUTES[op] as RouteDef;
      const o = doc.paths[r.path]?.[r.method];
      expect({ op, has: !!o }).toEqual({ op, has: true });
      seen.push(o.operationId);
      const declared = (o.parameters ?? []).map((p: any) => `${p.in}:${p.name}`);
      for (const name of r.path.match(/\{(\w+)\}/g) ?? []) expect(declared).toContain(`path:${name.slice(1, -1)}`);
      for (const name of Object.keys(r.query?.shape ?? {})) expect(declared).toContain(`query:${name}`);
      expect(!!o.requestBody).toBe(!!r.body);
      const ok = o.responses[String(r.status)];
      expect(ok?.description).toBeString();
      if (r.response) expect(ok.content["application/json"].schema).toBeObject();
      expect(o.responses["400"]).toEqual({ $ref: "#/components/responses/Error" });
    }
    expect(seen).toEqual([...OPERATIONS]);
    expect(new Set(seen).size).toBe(seen.length);
    expect(doc.components.securitySchemes.bearerToken).toMatchObject({ type: "http", scheme: "bearer" });
    expect(doc.security).toEqual([{}, { bearerToken: [] }]);
    // A view's document is strict and lists every key as required (present, null when unset).
    const ep = doc.components.schemas.EndpointView;
    expect(ep.additionalProperties).toBe(false);
    expect(ep.required).toEqual(Object.keys(ep.properties));
    expect(ep.properties).not.toHaveProperty("hostIf");
  });
});

describe("the app and the contract", () => {
  test("the app serves exactly the contract's routes (method and path), each once", () => {
    const k = kernelFreeApp();
    // A route with a body limit is two entries (the limit, then the handler): one route.
    const served = [
      ...new Set(
        k.app.routes.filter((r) => r.method !== "ALL").map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, "{$1}")}`),
      ),
    ];
    const contract = OPERATIONS.map((op) => `${ROUTES[op].method.toUpperCase()} ${ROUTES[op].path}`);
    expect(served.sort()).toEqual(contract.sort());
    expect(servedOperations(k.app)).toEqual([...OPERATIONS]);
    // Without its provider an optional route is not served (404, not 405), and not documented.
    const bare = kernelFreeApp({ trace: undefined, reconcile: undefined, metrics: undefined });
    expect(servedOperations(bare.app)).toEqual(OPERATIONS.filter((op) => !(ROUTES[op] as RouteDef).optional));
  });

  test("an optional route without its provider is 404 and missing from /openapi.json", async () => {
    const bare = kernelFreeApp({ trace: undefined, reconcile: undefined, metrics: undefined });
    expect((await bare.app.request("/v1/trace", { method: "POST", body: "{}" })).status).toBe(404);
    const doc = (await (await bare.app.request("/openapi.json")).json()) as any;
    expect(doc.paths).not.toHaveProperty("/v1/trace");
    expect(doc.paths).not.toHaveProperty("/metrics");
    expect(doc.paths).toHaveProperty("/v1/status");
  });
});

describe("every route refuses what it does not know, and changes nothing", () => {
  for (const op of OPERATIONS) {
    const r = ROUTES[op] as RouteDef;
    test(`${op} (${r.method.toUpperCase()} ${r.path})`, async () => {
      const k = kernelFreeApp();
      fillFixture(k);
      const sample = SAMPLES[op](k) as Loose;
      const before = snapshot(k);

      let res = await send(k, op, { ...sample, query: { ...sample.query, bogus: "1" } });
      expect({ status: res.status, body: await res.json() }).toEqual({
        status: 400,
        body: { code: "INVALID", message: expect.stringContaining('unknown query parameter "bogus"') },
      });
      expect(snapshot(k)).toBe(before);

      if (r.method !== "get") {
        const body = r.body ? { ...(sample.body as object), bogus: 1 } : { bogus: 1 };
        res = await send(k, op, { ...sample, body });
        expect({ status: res.status, body: await res.json() }).toEqual({
          status: 400,
          body: { code: "INVALID", message: expect.stringContaining('unknown key "bogus"') },
        });
        expect(snapshot(k)).toBe(before);
      }

      // The same call without the unknown key succeeds: it was refused for that key alone.
      res = await send(k, op, sample);
      expect({ op, status: res.status }).toEqual({ op, status: r.status });
    });
  }

  test("a typo gets the nearest key or parameter; several unknown keys are named together", async () => {
    const k = kernelFreeApp();
    fillFixture(k);
    const cases: Array<[OperationId, Loose, string]> = [
      [
        "createNetwork",
        { body: { name: "x-net", cidr: "10.60.0.0/24", gateway: "10.60.0.1", defaultActoin: "deny" } },
        'unknown key "defaultActoin" (did you mean "defaultAction"?)',
      ],
      [
        "setNetwork",
        { params: { name: "app-net" }, body: { egress: { rate: 8000000, burts: 1 } } },
        'egress: unknown key "burts" (did you mean "burst"?)',
      ],
      ["listEndpoints", { query: { netwrk: "app-net" } }, 'unknown query parameter "netwrk" (did you mean "network"?)'],
      ["clearBlocklist", { query: { all: "1" } }, 'unknown query parameter "all" (this route takes none)'],
      ["reconcile", { body: { force: true, now: 1 } }, 'unknown keys "force", "now" (this route takes no body)'],
      [
        "addRule",
        { params: { scope: "app-net" }, body: { priority: 7, action: "allow", port: 80 } },
        'unknown key "port" (did you mean "sport"?)',
      ],
      [
        "addRule",
        { params: { scope: "app-net" }, body: { priority: 7, action: "allow", colour: "red" } },
        'unknown key "colour" (expected one of priority, direction, src, dst, proto, sport, dport, icmp-type, action, log)',
      ],
    ];
    for (const [op, a, message] of cases) {
      const res = await send(k, op, a);
      expect({ op, status: res.status, body: await res.json() }).toEqual({
        op,
        status: 400,
        body: { code: "INVALID", message },
      });
    }
    expect(k.store.getNetwork("x-net")).toBeNull();
    // A repeated query parameter is refused too (which one would count?).
    const res = await k.app.request("/v1/endpoints?network=app-net&network=db-net");
    expect(await res.json()).toEqual({ code: "INVALID", message: 'query parameter "network" is given 2 times' });
  });
});

describe("responses match their strict schemas", () => {
  let k: KernelFree;
  beforeEach(() => {
    k = kernelFreeApp();
    fillFixture(k);
  });

  test("every GET route's real response, with every key of its view present", async () => {
    const gets = OPERATIONS.filter((op) => ROUTES[op].method === "get");
    for (const op of gets) {
      const r = ROUTES[op] as RouteDef;
      const res = await send(k, op, SAMPLES[op](k) as Loose);
      expect({ op, status: res.status }).toEqual({ op, status: 200 });
      if (r.text) {
        expect(res.headers.get("content-type")).toStartWith("text/plain");
        expect(await res.text()).not.toBe("");
        continue;
      }
      const body = await res.json();
      const parsed = (r.response as NonNullable<RouteDef["response"]>).safeParse(body);
      expect({ op, issues: parsed.success ? [] : parsed.error.issues }).toEqual({ op, issues: [] });
    }
    // The lists the fixture fills are not empty: the schemas were checked against real items.
    const lens = await Promise.all(
      ["/v1/networks", "/v1/endpoints", "/v1/dhcp/leases", "/v1/dns/records"].map(
        async (p) => ((await (await k.app.request(p)).json()) as unknown[]).length,
      ),
    );
    expect(lens).toEqual([2, 2, 2, 2]);
  });

  test("the other routes' responses too (the changes, trace, reconcile)", async () => {
    for (const op of OPERATIONS.filter((o) => ROUTES[o].method !== "get")) {
      const r = ROUTES[op] as RouteDef;
      const fresh = kernelFreeApp();
      fillFixture(fresh);
      const res = await send(fresh, op, SAMPLES[op](fresh) as Loose);
      expect({ op, status: res.status }).toEqual({ op, status: r.status });
      if (!r.response) {
        expect(await res.text()).toBe("");
        continue;
      }
      const parsed = r.response.safeParse(await res.json());
      expect({ op, issues: parsed.success ? [] : parsed.error.issues }).toEqual({ op, issues: [] });
    }
  });

  test("a key missing from a view fails its schema; unset keys are null, times RFC 3339", async () => {
    const ep = (await (await k.app.request("/v1/endpoints/vm-1")).json()) as Record<string, unknown>;
    expect(ep).toMatchObject({ interface: "tap2", netns: null, ifname: null, egress: null, ip6: expect.any(String) });
    expect(ep).not.toHaveProperty("hostIf");
    expect(ep.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const { netns: _, ...missing } = ep;
    expect(ROUTES.showEndpoint.response.safeParse(missing).success).toBe(false);
    expect(ROUTES.showEndpoint.response.safeParse({ ...ep, extra: 1 }).success).toBe(false);
    const net = (await (await k.app.request("/v1/networks/db-net")).json()) as Record<string, unknown>;
    expect(net).toMatchObject({ cidr6: null, gateway6: null, egress: null, egressCounts: null });
    const lease = ((await (await k.app.request("/v1/dhcp/leases")).json()) as Array<Record<string, unknown>>)[1];
    expect(lease).toMatchObject({ endpoint: null, hostname: null, state: "released", active: false });
    expect(Date.parse(lease?.expiresAt as string)).toBeLessThan(Date.now());
    const rules = (await (await k.app.request("/v1/firewall/app-net/rules")).json()) as any;
    expect(rules.rules[0]).toMatchObject({ src: null, dst: null, sport: null, dport: 443, "icmp-type": null });
    expect(rules.rules[1]).toMatchObject({ sport: "1000-2000", proto: "udp" });
  });
});

test("the client's plain route table is the contract's: every operation, its method and path", () => {
  const fromContract = Object.fromEntries(
    Object.entries(ROUTES).map(([op, r]) => [
      op,
      { method: r.method, path: r.path, ...((r as { text?: true }).text ? { text: true } : {}) },
    ]),
  );
  // After a change of the contract: bun scripts/gen-route-paths.ts rewrites src/api/route-paths.ts.
  expect(ROUTE_PATHS as Record<string, unknown>).toEqual(fromContract);
});
