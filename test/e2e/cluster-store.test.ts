/** The cluster's state on a real etcd, without agents: two nodes' stores (each a SQLite mirror
 * with its own Cluster) see each other's writes through the watch; what must be unique is
 * decided once; a stale mirror still writes right; a mirror that missed compacted history
 * lists again and converges; a value that does not parse is set aside, never applied. */
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { Cluster } from "../../src/cluster/cluster";
import { EtcdClient } from "../../src/cluster/etcd-client";
import { K, PREFIX } from "../../src/cluster/keys";
import { packPrefixes } from "../../src/model/blocklist";
import { parseRule } from "../../src/model/firewall-rule";
import { hostAddress, profileMac, validateNetwork } from "../../src/model/network";
import { SqliteStore } from "../../src/store/sqlite";
import { EtcdServer } from "../helpers/etcd-server";
import { TcpProxy } from "../helpers/tcp-proxy";

let etcd: EtcdServer;
let client: EtcdClient;
const open: Cluster[] = [];

beforeAll(async () => {
  etcd = await EtcdServer.start();
  client = new EtcdClient({ endpoints: [etcd.url] });
});
afterEach(async () => {
  for (const c of open.splice(0)) {
    await c.stop();
    c.store.mirror.close();
  }
  await client.delete(PREFIX, { prefix: true });
});
afterAll(() => {
  client.close();
  etcd.destroy();
});

const quiet = () => {};
async function node(name: string, o: { start?: boolean } = {}): Promise<Cluster> {
  const c = await Cluster.open(new SqliteStore(":memory:"), {
    endpoints: [etcd.url],
    nodeName: name,
    nodeAddress: `10.99.0.${open.length + 1}`,
    version: "test",
    leaseTtl: 2,
    log: quiet,
  });
  open.push(c);
  if (o.start !== false) c.start(quiet);
  return c;
}

async function until<T>(what: string, fn: () => T | null | undefined | false, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

const net = (name: string, cidr: string, gateway: string) => validateNetwork({ name, cidr, gateway });
const claim = (c: Cluster, name: string, network: string, hostIndex: number) => {
  const n = c.store.getNetwork(network);
  if (!n) throw new Error(`no network ${network}`);
  return c.store.claimEndpoint({
    name,
    network,
    ip: hostAddress(n.cidr, hostIndex),
    hostIndex,
    mac: profileMac(n.id, hostIndex),
    kind: "tap",
    hostIf: `tap-${name}`.slice(0, 15),
  });
};

test("a write on one node is in the other's mirror, with the same ids; names are decided once", async () => {
  const a = await node("a");
  const b = await node("b");
  const app = a.store.createNetwork(net("app", "10.20.0.0/24", "10.20.0.1"));
  const seen = await until("network on b", () => b.store.getNetwork("app"));
  expect(seen.id).toBe(app.id);
  expect(seen.cidr).toBe("10.20.0.0/24");
  // The same name from the other node: refused by etcd, whatever b's mirror says.
  expect(() => b.store.createNetwork(net("app", "10.21.0.0/24", "10.21.0.1"))).toThrow("network app already exists");
  // Ids are cluster-wide: the next network on b gets the next id.
  const web = b.store.createNetwork(net("web", "10.22.0.0/24", "10.22.0.1"));
  expect(web.id).toBe(app.id + 1);
  // An endpoint records its node; the other node sees it, not as its own.
  const e = claim(a, "w1", "app", 5);
  expect(e.node).toBe("a");
  const eb = await until("endpoint on b", () => b.store.getEndpoint("w1"));
  expect(eb).toMatchObject({ node: "a", ip: "10.20.0.6", mac: profileMac(app.id, 5) });
  expect(() => claim(b, "w1", "web", 3)).toThrow("endpoint w1 already exists on node a");
  expect(() => claim(b, "w2", "app", 5)).toThrow("10.20.0.6 is already claimed by endpoint w1 on node a");
  // A node that joins now gets everything in one listing: networks, endpoints, records.
  a.store.addDnsRecord("app", { name: "db", type: "A", value: "10.20.0.9", ttl: 60 });
  claim(b, "w9", "web", 4); // an endpoint of the network listed last
  const c = await node("c");
  expect(c.store.getEndpoint("w1")).toMatchObject({ node: "a", network: "app" });
  expect(c.store.getEndpoint("w9")).toMatchObject({ node: "b", network: "web" });
  expect(c.store.listDnsRecords("app").map((r) => r.name)).toEqual(["db"]);
  expect(c.store.listNetworks().map((n) => [n.name, n.id])).toEqual([
    ["app", app.id],
    ["web", web.id],
  ]);
  // Released on b (a node that is gone is forgotten from another): the address is free again.
  b.store.releaseEndpoint("w1");
  await until("release on a", () => !a.store.getEndpoint("w1"));
  expect(claim(a, "w3", "app", 5).ip).toBe("10.20.0.6");
});

test("a node whose mirror is behind still changes the latest: rules, defaults, blocklist, DNS", async () => {
  const a = await node("a");
  const b = await node("b", { start: false }); // no watch: b's mirror stays as it listed
  const app = a.store.createNetwork(net("app", "10.30.0.0/24", "10.30.0.1"));
  // b has not seen app: a write naming it by id reads etcd, not the mirror.
  a.store.addRule(0, parseRule({ priority: 10, action: "deny", proto: "tcp", dport: 22 }));
  const r2 = b.store.addRule(0, { ...parseRule({ priority: 20, action: "allow" }) });
  expect(() => b.store.addRule(0, parseRule({ priority: 10, action: "allow" }))).toThrow("priority 10 is taken");
  await until("both rules on a", () => a.store.listRules(0).length === 2);
  expect(a.store.listRules(0).map((r) => r.priority)).toEqual([10, 20]);
  expect(new Set(a.store.listRules(0).map((r) => r.id)).size).toBe(2);
  b.store.moveRule(0, r2.id, 5);
  await until("the move on a", () => a.store.listRules(0)[0]?.id === r2.id);
  a.store.setGlobalDefault("deny");
  expect(a.store.blockAdd(packPrefixes(["192.0.2.0/24"]))).toBe(1);
  a.store.addDnsRecord("app", { name: "db", type: "A", value: "10.30.0.9", ttl: 60 });
  b.start(quiet);
  await until("b caught up", () => b.store.getGlobalDefault() === "deny" && b.store.listDnsRecords("app").length === 1);
  expect(b.store.blockList().map((x) => x.prefix)).toEqual(["192.0.2.0/24"]);
  expect(b.store.getNetwork("app")?.id).toBe(app.id);
  // Replacing a network's rule set and its default in one go.
  b.store.replaceRules(app.id, [parseRule({ priority: 1, action: "reject" })], "deny");
  await until("replace on a", () => a.store.scopeDefault(app.id) === "deny" && a.store.listRules(app.id).length === 1);
  // Deleting the network takes its rules and records with it, everywhere.
  a.store.deleteNetwork("app");
  await until("delete on b", () => !b.store.getNetwork("app"));
  expect(b.store.listDnsRecords()).toEqual([]);
  expect((await client.range(K.rules(app.id))).kvs).toEqual([]);
});

test("a mirror that missed compacted history lists again and converges; a bad value is set aside", async () => {
  const a = await node("a");
  const b = await node("b");
  a.store.createNetwork(net("one", "10.40.0.0/24", "10.40.0.1"));
  await until("one on b", () => b.store.getNetwork("one"));
  await b.stop(); // b goes away (its watch with it)
  open.splice(open.indexOf(b), 1);
  a.store.createNetwork(net("two", "10.41.0.0/24", "10.41.0.1"));
  a.store.deleteNetwork("one");
  await client.put(`${PREFIX}networks/broken`, "{not json");
  const { revision } = await client.range(PREFIX, { prefix: true, countOnly: true });
  await client.compact(revision);
  // b comes back over the same mirror: its watch would start before the compaction.
  const back = await Cluster.open(b.store.mirror, {
    endpoints: [etcd.url],
    nodeName: "b",
    nodeAddress: "10.99.0.2",
    version: "test",
    log: quiet,
  });
  open.push(back);
  back.start(quiet);
  expect(back.store.listNetworks().map((n) => n.name)).toEqual(["two"]);
  expect(back.writer.invalid.get(`${PREFIX}networks/broken`)).toContain("not JSON");
  // And the watch runs from there.
  a.store.createNetwork(net("three", "10.42.0.0/24", "10.42.0.1"));
  await until("three on b", () => back.store.getNetwork("three"));
  expect((await back.status()).mirror.lag).toBe(0);
});

test("a watch cut off while etcd compacted what it needed lists again and converges", async () => {
  const a = await node("a");
  const relay = TcpProxy.start(etcd.url);
  try {
    const b = await Cluster.open(new SqliteStore(":memory:"), {
      endpoints: [relay.url],
      nodeName: "b",
      nodeAddress: "10.99.0.2",
      version: "test",
      log: quiet,
    });
    open.push(b);
    b.start(quiet);
    a.store.createNetwork(net("one", "10.45.0.0/24", "10.45.0.1"));
    await until("one on b", () => b.store.getNetwork("one"));
    expect((await b.status()).watch.resyncs).toBe(1);
    relay.cut(); // b's watch loses etcd; etcd and a go on
    a.store.createNetwork(net("two", "10.46.0.0/24", "10.46.0.1"));
    a.store.deleteNetwork("one");
    const { revision } = await client.range(PREFIX, { prefix: true, countOnly: true });
    await client.compact(revision);
    relay.restore();
    await until("b relisted", () => b.store.getNetwork("two") && !b.store.getNetwork("one"), 10_000);
    const st = await b.status();
    expect(st.watch.resyncs).toBe(2); // the start's listing, and the one the compaction forced
    expect(st.mirror.lag).toBe(0);
    // The new watch runs from there.
    a.store.createNetwork(net("three", "10.47.0.0/24", "10.47.0.1"));
    await until("three on b", () => b.store.getNetwork("three"));
  } finally {
    relay.destroy();
  }
});

test("members: a node under its lease is ready, one whose lease expired is unreachable, a clean stop is left", async () => {
  const a = await node("a");
  const b = await node("b");
  const c = await node("c");
  await until("three ready", () => a.nodes().filter((n) => n.state === "ready").length === 3);
  a.store.createNetwork(net("app", "10.50.0.0/24", "10.50.0.1"));
  await until("app on c", () => c.store.getNetwork("app"));
  claim(c, "on-c", "app", 7);
  // c stops renewing without a word (a crash): its lease (2 s) runs out.
  const cLease = (await c.status()).lease.id;
  expect(cLease).not.toBeNull();
  (c as unknown as { client: EtcdClient }).client.close();
  await until("c unreachable", () => a.nodes().find((n) => n.name === "c")?.state === "unreachable", 8000);
  expect(a.store.getEndpoint("on-c")?.node).toBe("c"); // marked, not deleted
  expect(() => a.removeNode("b")).toThrow("node b is alive");
  expect(a.removeNode("c").endpoints).toEqual(["on-c"]);
  await until("c forgotten on b", () => !b.nodes().some((n) => n.name === "c") && !b.store.getEndpoint("on-c"));
  await b.stop({ leave: true });
  await until("b left", () => a.nodes().find((n) => n.name === "b")?.state === "left");
});
