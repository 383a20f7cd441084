/** The API of a network's DHCP settings, its leases and its DNS records, through
 * app.request(): the real services on an in-memory store, with the kernel left out
 * (no gateway addresses or profile maps; the firewall on a fake). */
import { beforeEach, expect, test } from "bun:test";
import { createApp } from "../../src/api/app";
import type { PortDatapath } from "../../src/datapath/port-datapath";
import type { Rtnl } from "../../src/netlink";
import { SqliteStore } from "../../src/store/sqlite";
import { FakeFwKernel } from "../helpers/fake-fw";
import { KernelFreeServices } from "../helpers/kernel-free";

/** Every kernel call does nothing; every map is boundless (capacity checks pass). */
const noKernel = new Proxy(
  {},
  { get: (_t, k) => (k === "map" ? () => ({ info: { maxEntries: Number.MAX_SAFE_INTEGER } }) : () => {}) },
);

let store: SqliteStore;
let app: ReturnType<typeof createApp>;
beforeEach(() => {
  store = new SqliteStore(":memory:");
  app = createApp(
    new KernelFreeServices(store, noKernel as PortDatapath, noKernel as Rtnl, () => {}, new FakeFwKernel()),
  );
});

const send = (method: string, path: string, body?: unknown) =>
  app.request(path, {
    method,
    ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
  });
const get = async (path: string) => (await app.request(path)).json() as Promise<any>;
const appNet = { name: "app-net", cidr: "10.20.0.0/24", gateway: "10.20.0.1" };

async function expectError(r: Response | Promise<Response>, status: number, code: string, message: string) {
  const res = await r;
  const body = (await res.json()) as { code: string; message: string };
  expect({ status: res.status, code: body.code }).toEqual({ status, code });
  expect(body.message).toContain(message);
}

test("a network's DHCP lease time, routes and options: created, read back, changed, cleared", async () => {
  let r = await send("POST", "/v1/networks", {
    ...appNet,
    dhcpLeaseTime: 43_200,
    dhcpRoutes: ["192.168.50.0/24 via 10.20.0.254", " 10.9.0.0/16  via 10.20.0.253 "],
    dhcpOptions: ["42=ips:10.20.0.1,10.20.0.2", "66=text:tftp.lab", "43=hex:01:02:AB"],
  });
  expect(r.status).toBe(201);
  const want = {
    dhcpLeaseTime: 43_200,
    dhcpRoutes: ["192.168.50.0/24 via 10.20.0.254", "10.9.0.0/16 via 10.20.0.253"],
    dhcpOptions: ["42=ips:10.20.0.1,10.20.0.2", "66=text:tftp.lab", "43=hex:0102ab"],
  };
  expect(await r.json()).toMatchObject(want);
  expect(await get("/v1/networks/app-net")).toMatchObject(want);

  // Defaults when left out.
  await send("POST", "/v1/networks", { name: "db-net", cidr: "10.30.0.0/24", gateway: "10.30.0.1" });
  expect(await get("/v1/networks/db-net")).toMatchObject({ dhcpLeaseTime: 3600, dhcpRoutes: [], dhcpOptions: [] });

  // A patch replaces a list and leaves the other fields.
  r = await send("PATCH", "/v1/networks/app-net", { dhcpLeaseTime: 600, dhcpOptions: ["66=text:boot.lab"] });
  expect(r.status).toBe(200);
  expect(await r.json()).toMatchObject({
    dhcpLeaseTime: 600,
    dhcpRoutes: want.dhcpRoutes,
    dhcpOptions: ["66=text:boot.lab"],
  });
  r = await send("PATCH", "/v1/networks/app-net", { dhcpRoutes: [], dhcpOptions: [] });
  expect(await r.json()).toMatchObject({ dhcpLeaseTime: 600, dhcpRoutes: [], dhcpOptions: [] });
  expect(await get("/v1/networks/app-net")).toMatchObject({ dhcpLeaseTime: 600, dhcpRoutes: [], dhcpOptions: [] });
});

test("bad lease times, routes and options are 400 INVALID naming the problem, and change nothing", async () => {
  const bad: Array<[Record<string, unknown>, string]> = [
    [{ dhcpLeaseTime: 5 }, "DHCP lease time 5 s is outside "],
    [{ dhcpLeaseTime: 31_536_001 }, "DHCP lease time 31536001 s is outside "],
    [{ dhcpLeaseTime: 1.5 }, "dhcpLeaseTime: "],
    [{ dhcpLeaseTime: "1h" }, "dhcpLeaseTime: "],
    [{ dhcpRoutes: ["192.168.50.0/24"] }, 'DHCP route "192.168.50.0/24" is not "DST/LEN via GATEWAY"'],
    [{ dhcpRoutes: ["192.168.50.0/24 via 10.99.0.1"] }, "10.99.0.1 is not inside 10.20.0.0/24"],
    [{ dhcpRoutes: ["0.0.0.0/0 via 10.20.0.254"] }, "the default route is always the network's gateway"],
    [{ dhcpOptions: ["42"] }, 'DHCP option "42" is not CODE=TYPE:VALUE'],
    [{ dhcpOptions: ["42=ips:10.20.0.1,nope"] }, '"nope" is not an IPv4'],
    [{ dhcpOptions: ["3=ip:10.20.0.9"] }, "DHCP option 3 is set by the server from the network"],
    [{ dhcpOptions: ["255=u8:1"] }, "DHCP option code 255 is outside 1-254"],
    [{ dhcpOptions: ["23=u8:256"] }, 'DHCP option 23: "256" is not an unsigned 8-bit number'],
    [{ dhcpOptions: ["66=text:a", "66=text:b"] }, "DHCP option 66 is given twice"],
    [{ dhcpOptions: "66=text:a" }, "dhcpOptions: "],
  ];
  for (const [fields, message] of bad)
    await expectError(send("POST", "/v1/networks", { ...appNet, ...fields }), 400, "INVALID", message);
  expect(await get("/v1/networks")).toEqual([]);
  await send("POST", "/v1/networks", appNet);
  for (const [fields, message] of bad)
    await expectError(send("PATCH", "/v1/networks/app-net", fields), 400, "INVALID", message);
  expect(await get("/v1/networks")).toMatchObject([
    { name: "app-net", dhcpLeaseTime: 3600, dhcpRoutes: [], dhcpOptions: [] },
  ]);
  await expectError(send("PATCH", "/v1/networks/nope", { dhcpLeaseTime: 600 }), 404, "NOT_FOUND", "network nope");
});

test("DNS records: add, list per network and for all, delete by id and by selector", async () => {
  await send("POST", "/v1/networks", appNet);
  await send("POST", "/v1/networks", { name: "db-net", cidr: "10.30.0.0/24", gateway: "10.30.0.1" });
  let r = await send("POST", "/v1/networks/app-net/dns/records", { name: "db", type: "A", value: "10.20.0.50" });
  expect(r.status).toBe(201);
  const a = (await r.json()) as { id: number };
  expect(a).toMatchObject({ network: "app-net", name: "db", type: "A", value: "10.20.0.50" });
  expect(typeof a.id).toBe("number");
  r = await send("POST", "/v1/networks/app-net/dns/records", {
    name: "_http._tcp",
    type: "SRV",
    value: "10 5 8080 web-1",
    ttl: 60,
  });
  expect(r.status).toBe(201);
  const srv = (await r.json()) as { id: number; value: string };
  expect(srv).toMatchObject({ name: "_http._tcp", type: "SRV", ttl: 60 });
  expect(srv.value).toStartWith("10 5 8080 web-1");
  await send("POST", "/v1/networks/app-net/dns/records", { name: "www", type: "A", value: "10.20.0.60" });
  await send("POST", "/v1/networks/app-net/dns/records", { name: "www", type: "A", value: "10.20.0.61" });
  await send("POST", "/v1/networks/app-net/dns/records", { name: "www", type: "TXT", value: "hello" });
  r = await send("POST", "/v1/networks/db-net/dns/records", { name: "@", type: "MX", value: "10 mail" });
  expect(r.status).toBe(201);

  const names = (rs: Array<{ name: string; type: string }>) => rs.map((x) => `${x.name} ${x.type}`);
  expect(names(await get("/v1/networks/app-net/dns/records"))).toEqual([
    "_http._tcp SRV",
    "db A",
    "www A",
    "www A",
    "www TXT",
  ]);
  const every = (await get("/v1/dns/records")) as Array<{ network: string; name: string; type: string }>;
  expect(every.map((x) => x.network)).toEqual(["app-net", "app-net", "app-net", "app-net", "app-net", "db-net"]);
  expect(every.at(-1)).toMatchObject({ network: "db-net", name: "@", type: "MX" });

  // By id: the answer is what went.
  r = await send("DELETE", `/v1/networks/app-net/dns/records/${a.id}`);
  expect(r.status).toBe(200);
  expect(await r.json()).toMatchObject([{ id: a.id, name: "db", type: "A", value: "10.20.0.50" }]);
  await expectError(
    send("DELETE", `/v1/networks/app-net/dns/records/${a.id}`),
    404,
    "NOT_FOUND",
    "no DNS record in network app-net matches",
  );
  // By selector: name and type and value, then name and type, then name.
  r = await send("DELETE", "/v1/networks/app-net/dns/records?name=www&type=A&value=10.20.0.61");
  expect(await r.json()).toMatchObject([{ name: "www", type: "A", value: "10.20.0.61" }]);
  r = await send(
    "DELETE",
    `/v1/networks/app-net/dns/records?name=_http._tcp&type=srv&value=${encodeURIComponent(srv.value)}`,
  );
  expect(await r.json()).toMatchObject([{ id: srv.id }]);
  await send("POST", "/v1/networks/app-net/dns/records", { name: "www", type: "A", value: "10.20.0.62" });
  r = await send("DELETE", "/v1/networks/app-net/dns/records?name=www&type=A");
  expect(((await r.json()) as Array<{ value: string }>).map((x) => x.value).sort()).toEqual([
    "10.20.0.60",
    "10.20.0.62",
  ]);
  r = await send("DELETE", "/v1/networks/app-net/dns/records?name=www");
  expect(await r.json()).toMatchObject([{ name: "www", type: "TXT" }]);
  expect(await get("/v1/networks/app-net/dns/records")).toEqual([]);
  expect(await get("/v1/dns/records")).toMatchObject([{ network: "db-net" }]);
});

test("DNS record errors: bad records 400, unknown network or record 404, bad selectors 400", async () => {
  await send("POST", "/v1/networks", appNet);
  await send("POST", "/v1/networks/app-net/dns/records", { name: "db", type: "A", value: "10.20.0.50" });
  const add = (rec: unknown) => send("POST", "/v1/networks/app-net/dns/records", rec);
  await expectError(add({ name: "db", type: "A" }), 400, "INVALID", "value: ");
  await expectError(add({ name: "db", type: "A", value: "10.20.0.51", ttl: "60" }), 400, "INVALID", "ttl: ");
  await expectError(add({ name: "db", type: "A", value: "10.20.0.51", extra: 1 }), 400, "INVALID", "extra");
  await expectError(add({ name: "db", type: "A", value: "not-an-address" }), 400, "INVALID", "not-an-address");
  await expectError(add({ name: "db", type: "BOGUS", value: "x" }), 400, "INVALID", "BOGUS");
  await expectError(
    add({ name: "db", type: "A", value: "10.20.0.50" }),
    400,
    "INVALID",
    "already has this A record (10.20.0.50)",
  );
  await expectError(
    send("POST", "/v1/networks/nope/dns/records", { name: "db", type: "A", value: "10.20.0.50" }),
    404,
    "NOT_FOUND",
    "network nope does not exist",
  );
  await expectError(app.request("/v1/networks/nope/dns/records"), 404, "NOT_FOUND", "network nope does not exist");
  await expectError(send("DELETE", "/v1/networks/nope/dns/records/1"), 404, "NOT_FOUND", "network nope does not exist");
  await expectError(
    send("DELETE", "/v1/networks/nope/dns/records?name=db"),
    404,
    "NOT_FOUND",
    "network nope does not exist",
  );
  await expectError(
    send("DELETE", "/v1/networks/app-net/dns/records/x"),
    400,
    "INVALID",
    'record id "x" is not a number',
  );
  await expectError(
    send("DELETE", "/v1/networks/app-net/dns/records"),
    400,
    "INVALID",
    "DELETE /v1/networks/NAME/dns/records/ID or ?name=OWNER[&type=TYPE][&value=VALUE]",
  );
  await expectError(send("DELETE", "/v1/networks/app-net/dns/records?type=A"), 400, "INVALID", "name: ");
  await expectError(send("DELETE", "/v1/networks/app-net/dns/records?name=db&force=1"), 400, "INVALID", '"force"');
  await expectError(
    send("DELETE", "/v1/networks/app-net/dns/records?name=db&type=AAAA"),
    404,
    "NOT_FOUND",
    "no DNS record in network app-net matches",
  );
  expect(await get("/v1/networks/app-net/dns/records")).toMatchObject([{ name: "db", value: "10.20.0.50" }]);
});

test("DHCP leases: every network's or one's, with whether each is still active", async () => {
  await send("POST", "/v1/networks", appNet);
  await send("POST", "/v1/networks", { name: "db-net", cidr: "10.30.0.0/24", gateway: "10.30.0.1" });
  const now = Date.now();
  store.putLease({
    network: "app-net",
    mac: "02:00:00:00:00:03",
    family: 4,
    ip: "10.20.0.3",
    endpoint: "web-2",
    hostname: "web2",
    state: "bound",
    expiresAt: now + 3_600_000,
    updatedAt: now,
  });
  store.putLease({
    network: "app-net",
    mac: "02:00:00:00:00:02",
    family: 4,
    ip: "10.20.0.2",
    state: "bound",
    expiresAt: now - 60_000,
    updatedAt: now - 3_660_000,
  });
  store.putLease({
    network: "app-net",
    mac: "02:00:00:00:00:02",
    family: 6,
    ip: "fd00:20::ff:fe00:2",
    state: "released",
    expiresAt: now + 60_000,
    updatedAt: now,
  });
  store.putLease({
    network: "db-net",
    mac: "02:00:00:00:01:02",
    family: 4,
    ip: "10.30.0.2",
    state: "declined",
    expiresAt: now + 60_000,
    updatedAt: now,
  });
  const all = (await get("/v1/dhcp/leases")) as Array<Record<string, unknown>>;
  expect(all.map((l) => [l.network, l.ip, l.state, l.active])).toEqual([
    ["app-net", "10.20.0.2", "bound", false],
    ["app-net", "10.20.0.3", "bound", true],
    ["app-net", "fd00:20::ff:fe00:2", "released", false],
    ["db-net", "10.30.0.2", "declined", false],
  ]);
  expect(all[1]).toEqual({
    network: "app-net",
    mac: "02:00:00:00:00:03",
    family: 4,
    ip: "10.20.0.3",
    endpoint: "web-2",
    hostname: "web2",
    state: "bound",
    expiresAt: new Date(now + 3_600_000).toISOString(),
    updatedAt: new Date(now).toISOString(),
    active: true,
  });
  expect(all[0]).toMatchObject({ endpoint: null, hostname: null });
  const db = (await get("/v1/dhcp/leases?network=db-net")) as Array<Record<string, unknown>>;
  expect(db.map((l) => l.ip)).toEqual(["10.30.0.2"]);
  await expectError(app.request("/v1/dhcp/leases?network=nope"), 404, "NOT_FOUND", "network nope does not exist");
});

test("the OpenAPI document lists the DHCP and DNS routes", async () => {
  const doc = (await get("/openapi.json")) as { paths: Record<string, Record<string, any>> };
  for (const p of [
    "/v1/dhcp/leases",
    "/v1/dns/records",
    "/v1/networks/{name}/dns/records",
    "/v1/networks/{name}/dns/records/{id}",
  ])
    expect(Object.keys(doc.paths)).toContain(p);
  const rec = doc.paths["/v1/networks/{name}/dns/records"]?.post?.requestBody?.content?.["application/json"]?.schema;
  expect(rec.required).toEqual(expect.arrayContaining(["name", "type", "value"]));
  const patch = doc.paths["/v1/networks/{name}"]?.patch?.requestBody?.content?.["application/json"]?.schema;
  expect(Object.keys(patch.properties)).toEqual(expect.arrayContaining(["dhcpLeaseTime", "dhcpRoutes", "dhcpOptions"]));
});
