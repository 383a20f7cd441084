/** The HTTP contract of the agent's API through app.request(): routes, validation, status
 * codes, {code, message} errors without stacks, the OpenAPI document. The service behind
 * it is a kernel-free stand-in built on the real store and the real validation. */
import { beforeEach, expect, test } from "bun:test";
import type { NetworkService } from "../../src/agent/service";
import { createApp, type openApiDocument } from "../../src/api/app";
import { StratumError } from "../../src/errors";
import { hostAddress, profileCount, profileMac, validateNetwork } from "../../src/model/network";
import { SqliteStore } from "../../src/store/sqlite";

function standIn(store: SqliteStore): NetworkService {
  const view = (name: string) => {
    const n = store.getNetwork(name);
    if (!n) throw new StratumError("NOT_FOUND", `network ${name} does not exist`);
    const eps = store.listEndpoints(name);
    return { ...n, profiles: { total: profileCount(n.cidr), claimed: eps.length }, endpoints: eps.map((e) => e.name) };
  };
  return {
    listNetworks: () => store.listNetworks().map((n) => view(n.name)),
    showNetwork: view,
    createNetwork: (spec: never) => view(store.createNetwork(validateNetwork(spec, store.listNetworks())).name),
    setNetwork: (name: string, patch: never) => (store.updateNetwork(name, patch), view(name)),
    deleteNetwork: (name: string) => store.deleteNetwork(name),
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
    listEndpoints: (network?: string) => store.listEndpoints(network).map((e) => ({ ...e, interface: e.hostIf })),
    showEndpoint: (name: string) => {
      const e = store.getEndpoint(name);
      if (!e) throw new StratumError("NOT_FOUND", `endpoint ${name} does not exist`);
      return { ...e, interface: e.hostIf };
    },
  } as unknown as NetworkService;
}

let app: ReturnType<typeof createApp>;
beforeEach(() => {
  app = createApp(standIn(new SqliteStore(":memory:")), () => ({ ok: true }));
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
      'body: Unrecognized key: "cidr"',
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
  const schema = paths["/v1/networks"]?.post?.requestBody?.content?.["application/json"]?.schema;
  expect(schema.required).toEqual(expect.arrayContaining(["name", "cidr", "gateway"]));
});
