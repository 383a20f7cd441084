/** The HTTP contract of the agent's API through app.request(): routes, validation, status
 * codes, {code, message} errors without stacks, the OpenAPI document. The service behind
 * it is a kernel-free stand-in built on the real store and the real validation. */
import { beforeEach, expect, test } from "bun:test";
import { createApp } from "../../src/api/app";
import type { openApiDocument } from "../../src/api/openapi";
import { StratumError } from "../../src/errors";
import { hostAddress, profileCount, profileMac, validateNetwork } from "../../src/model/network";
import { FirewallService } from "../../src/services/firewall-service";
import type { Services } from "../../src/services/services";
import { SqliteStore } from "../../src/store/sqlite";
import { FakeFwKernel } from "../helpers/fake-fw";

function standIn(store: SqliteStore, kernel = new FakeFwKernel()): Services {
  const view = (name: string) => {
    const n = store.getNetwork(name);
    if (!n) throw new StratumError("NOT_FOUND", `network ${name} does not exist`);
    const eps = store.listEndpoints(name);
    return { ...n, profiles: { total: profileCount(n.cidr), claimed: eps.length }, endpoints: eps.map((e) => e.name) };
  };
  const networks = {
    list: () => store.listNetworks().map((n) => view(n.name)),
    show: view,
    create: (spec: never) => view(store.createNetwork(validateNetwork(spec, store.listNetworks())).name),
    set: (name: string, patch: never) => {
      store.updateNetwork(name, patch);
      return view(name);
    },
    delete: (name: string) => store.deleteNetwork(name),
  };
  const endpoints = {
    attach: (req: { network: string; name: string; netns?: string }) => {
      const n = store.getNetwork(req.network);
      if (!n) throw new StratumError("NOT_FOUND", `network ${req.network} does not exist`);
      const i = store.claimedIndexes(n.name).size + 1;
      const e = store.claimEndpoint({
        name: req.name,
        network: n.name,
        ip: hostAddress(n.cidr, i),
        mac: profileMac(n.id, i),
        hostIndex: i,
        kind: "veth",
        hostIf: `stm${req.name}`,
        netns: req.netns,
        ifname: "eth0",
      });
      return { ...e, interface: e.hostIf };
    },
    detach: (_n: string, name: string) => store.releaseEndpoint(name),
    list: (network?: string) => store.listEndpoints(network).map((e) => ({ ...e, interface: e.hostIf })),
    show: (name: string) => {
      const e = store.getEndpoint(name);
      if (!e) throw new StratumError("NOT_FOUND", `endpoint ${name} does not exist`);
      return { ...e, interface: e.hostIf };
    },
  };
  return { firewall: new FirewallService(store, kernel), networks, endpoints } as unknown as Services;
}

let app: ReturnType<typeof createApp>;
let kernel: FakeFwKernel;
beforeEach(() => {
  kernel = new FakeFwKernel();
  app = createApp(standIn(new SqliteStore(":memory:"), kernel), { status: () => ({ ok: true }) });
});

const post = (path: string, body: unknown) =>
  app.request(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

test("create, list, show, attach, detach, delete", async () => {
  let r = await post("/v1/networks", { name: "app-net", cidr: "10.20.0.0/24", gateway: "10.20.0.1" });
  expect(r.status).toBe(201);
  expect(await r.json()).toMatchObject({ name: "app-net", cidr: "10.20.0.0/24", profiles: { total: 254, claimed: 0 } });
  r = await post("/v1/networks/app-net/endpoints", { name: "web-1", netns: "web1" });
  expect(r.status).toBe(201);
  expect(await r.json()).toMatchObject({ name: "web-1", network: "app-net", ip: "10.20.0.2", interface: "stmweb-1" });
  expect(await (await app.request("/v1/networks/app-net")).json()).toMatchObject({
    profiles: { claimed: 1 },
    endpoints: ["web-1"],
  });
  expect(((await (await app.request("/v1/endpoints?network=app-net")).json()) as unknown[]).length).toBe(1);
  expect((await app.request("/v1/networks/app-net/endpoints/web-1", { method: "DELETE" })).status).toBe(204);
  expect((await app.request("/v1/networks/app-net", { method: "DELETE" })).status).toBe(204);
  expect(await (await app.request("/v1/networks")).json()).toEqual([]);
});

test("errors are {code, message} with the right status and no stack", async () => {
  const cases: Array<[Response | Promise<Response>, number, string, string]> = [
    [
      post("/v1/networks", { name: "x", cidr: "10.0.0.5/24", gateway: "10.0.0.1" }),
      400,
      "INVALID",
      '"10.0.0.5/24" has host bits set (the network is 10.0.0.0/24)',
    ],
    [post("/v1/networks", { name: "x" }), 400, "INVALID", "cidr: Invalid input: expected string, received undefined"],
    [app.request("/v1/networks", { method: "POST", body: "{not json" }), 400, "INVALID", "request body is not JSON"],
    [app.request("/v1/networks/nope"), 404, "NOT_FOUND", "network nope does not exist"],
    [app.request("/v1/nothing"), 404, "NOT_FOUND", "no route GET /v1/nothing"],
    [
      app.request("/v1/networks/nope", {
        method: "PATCH",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ cidr: "1.0.0.0/8" }),
      }),
      400,
      "INVALID",
      'unknown key "cidr" (expected one of mtu, defaultAction, dnsForwarders, dhcpRange, dnsZone, dhcpLeaseTime, dhcpRoutes, dhcpOptions, egress, extendToLan, nat)',
    ],
  ];
  for (const [p, status, code, message] of cases) {
    const r = await p;
    const body = (await r.json()) as Record<string, unknown>;
    expect({ status: r.status, body }).toEqual({ status, body: { code, message } });
  }
});

test("the OpenAPI document describes every route with schemas from the validators", async () => {
  const doc = (await (await app.request("/openapi.json")).json()) as ReturnType<typeof openApiDocument>;
  expect(doc.openapi).toBe("3.1.0");
  const paths = doc.paths as Record<string, Record<string, any>>;
  expect(Object.keys(paths)).toContain("/v1/networks/{name}/endpoints");
  expect(Object.keys(paths)).toContain("/v1/firewall/{scope}/rules");
  const rule = paths["/v1/firewall/{scope}/rules"]?.post?.requestBody?.content?.["application/json"]?.schema;
  expect(rule.required).toEqual(expect.arrayContaining(["priority", "action"]));
  const schema = paths["/v1/networks"]?.post?.requestBody?.content?.["application/json"]?.schema;
  expect(schema.required).toEqual(expect.arrayContaining(["name", "cidr", "gateway"]));
});

const send = async (method: string, path: string, body?: unknown) =>
  app.request(path, {
    method,
    ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
  });

test("firewall: rules of a network and of the global scope, default, export and import", async () => {
  await post("/v1/networks", { name: "app-net", cidr: "10.20.0.0/24", gateway: "10.20.0.1" });
  await post("/v1/networks", { name: "db-net", cidr: "10.30.0.0/24", gateway: "10.30.0.1" });
  let r = await post("/v1/firewall/app-net/rules", { priority: 100, proto: "tcp", dport: "443", action: "allow" });
  expect(r.status).toBe(201);
  const a = (await r.json()) as { id: number };
  expect(a).toMatchObject({ priority: 100, direction: "both", proto: "tcp", dport: 443, action: "allow", log: false });
  r = await post("/v1/firewall/app-net/rules", { priority: 200, src: "10.9.0.0/16", action: "reject", log: true });
  const b = (await r.json()) as { id: number };
  expect((await send("PUT", "/v1/firewall/app-net/default", { action: "deny" })).status).toBe(200);
  expect(await (await app.request("/v1/firewall/app-net/rules")).json()).toMatchObject({
    scope: "app-net",
    default: "deny",
    defaultHits: { packets: 0, bytes: 0 },
    rules: [
      { id: a.id, priority: 100 },
      { id: b.id, priority: 200, src: "10.9.0.0/16", hits: { packets: 0, bytes: 0 } },
    ],
  });
  expect(await (await post(`/v1/firewall/app-net/rules/${b.id}/move`, { priority: 50 })).json()).toMatchObject({
    id: b.id,
    priority: 50,
  });
  const doc = await (await app.request("/v1/firewall/app-net/export")).json();
  expect(doc).toEqual({
    default: "deny",
    rules: [
      { priority: 50, direction: "both", src: "10.9.0.0/16", proto: "any", action: "reject", log: true },
      { priority: 100, direction: "both", proto: "tcp", dport: 443, action: "allow", log: false },
    ],
  });
  expect(await (await send("PUT", "/v1/firewall/db-net/import", doc)).json()).toEqual({
    scope: "db-net",
    default: "deny",
    rules: 2,
    kept: 0,
  });
  expect(await (await app.request("/v1/firewall/db-net/export")).json()).toEqual(doc);
  expect((await send("DELETE", `/v1/firewall/app-net/rules/${a.id}`)).status).toBe(204);
  r = await post("/v1/firewall/global/rules", { priority: 1, dst: "2001:db8::/32", action: "deny" });
  expect(r.status).toBe(201);
  expect(await (await app.request("/v1/firewall/global/rules")).json()).toMatchObject({
    scope: "global",
    default: "allow",
    rules: [{ priority: 1, dst: "2001:db8::/32" }],
  });
  expect(kernel.scopes.get(0)?.rules).toHaveLength(1);
});

test("firewall: the blocklist", async () => {
  let r = await post("/v1/firewall/blocklist", { prefixes: ["198.51.100.0/24", "2001:db8:bad::/48", "203.0.113.7"] });
  expect(await r.json()).toEqual({ given: 3, added: 3, listed: 0, counts: { ipv4: 2, ipv6: 1 } });
  r = await app.request("/v1/firewall/blocklist");
  expect(((await r.json()) as { prefixes: Array<{ prefix: string }> }).prefixes.map((p) => p.prefix)).toEqual([
    "198.51.100.0/24",
    "203.0.113.7/32",
    "2001:db8:bad::/48",
  ]);
  expect((await send("DELETE", "/v1/firewall/blocklist?prefix=203.0.113.7")).status).toBe(204);
  expect((await send("DELETE", "/v1/firewall/blocklist?prefix=203.0.113.7")).status).toBe(404);
  expect([...kernel.block].sort()).toEqual(["198.51.100.0/24", "2001:db8:bad::/48"]);
});

test("firewall errors: bad fields 400, taken priority 400, unknown scope or rule 404, capacity 409", async () => {
  await post("/v1/networks", { name: "app-net", cidr: "10.20.0.0/24", gateway: "10.20.0.1" });
  await post("/v1/firewall/app-net/rules", { priority: 100, action: "allow" });
  kernel.blockMax = 1;
  const cases: Array<[Response | Promise<Response>, number, string, string]> = [
    [
      post("/v1/firewall/app-net/rules", { priority: 5, src: "10.0.0.1/8", action: "deny" }),
      400,
      "INVALID",
      '--src: "10.0.0.1/8" has host bits set (the network is 10.0.0.0/8)',
    ],
    [post("/v1/firewall/app-net/rules", { priority: 5, action: "drop" }), 400, "INVALID", "action: "],
    [post("/v1/firewall/app-net/rules", { priority: 100, action: "deny" }), 400, "INVALID", "priority 100 is taken"],
    [post("/v1/firewall/nope/rules", { priority: 1, action: "deny" }), 404, "NOT_FOUND", "network nope does not exist"],
    [send("DELETE", "/v1/firewall/app-net/rules/999"), 404, "NOT_FOUND", "app-net has no rule 999"],
    [send("DELETE", "/v1/firewall/app-net/rules/x"), 400, "INVALID", 'rule id "x" is not a number'],
    [send("PUT", "/v1/firewall/app-net/default", { action: "reject" }), 400, "INVALID", "action: "],
    [
      send("PUT", "/v1/firewall/app-net/import", { rules: [{ priority: 1, action: "allow" }, { priority: 1 }] }),
      400,
      "INVALID",
      "rules[1] (priority 1): action: ",
    ],
    [post("/v1/firewall/blocklist", { prefixes: ["1.2.3.4/33"] }), 400, "INVALID", "prefixes[0]: "],
    [post("/v1/firewall/blocklist", { prefixes: ["1.0.0.0/8", "2.0.0.0/8"] }), 409, "CAPACITY", "holds 1 prefixes"],
    [send("DELETE", "/v1/firewall/blocklist"), 400, "INVALID", "give the prefix to delete"],
    [
      post("/v1/networks", { name: "global", cidr: "10.40.0.0/24", gateway: "10.40.0.1" }),
      400,
      "INVALID",
      'network name "global" is reserved',
    ],
  ];
  for (const [p, status, code, message] of cases) {
    const r = await p;
    const body = (await r.json()) as { code: string; message: string };
    expect({ status: r.status, code: body.code }).toEqual({ status, code });
    expect(body.message).toContain(message);
  }
  expect((await (await app.request("/v1/firewall/app-net/rules")).json()) as unknown).toMatchObject({
    rules: [{ priority: 100 }],
  });
});
