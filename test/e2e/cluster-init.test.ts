/** `cluster init` on a real etcd (test/helpers/etcd-server.ts): a node's single-node state
 * (networks, endpoints, rules, the defaults, a blocklist bigger than one transaction, DNS
 * records, a lease) uploaded with every id kept and the counters above every id ever handed
 * out; the node then joins its own cluster and has lost nothing; a second init is refused;
 * an upload cut short is not a cluster (no agent adopts it; --force-clean-partial starts
 * over); joining with conflicting state is refused naming each conflict, identical state
 * joins. Last, the command itself in an agent's namespace: uploads, the agent starts with
 * --cluster on the same ids and MACs, and a second init is refused while the agent runs. The
 * tests run in order: the first makes the cluster the second and fourth join. */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Cluster } from "../../src/cluster/cluster";
import { EtcdClient } from "../../src/cluster/etcd-client";
import { INIT_TXN_PUTS, initCluster } from "../../src/cluster/init";
import { K, PREFIX, parseKey, vniOf } from "../../src/cluster/keys";
import { packPrefixes } from "../../src/model/blocklist";
import { FW_GLOBAL_SCOPE, parseRule } from "../../src/model/firewall-rule";
import { hostAddress, profileMac, validateNetwork } from "../../src/model/network";
import { MirrorWriter } from "../../src/store/mirror";
import { SqliteStore } from "../../src/store/sqlite";
import { TestAgent } from "../helpers/agent";
import { EtcdServer } from "../helpers/etcd-server";
import { BUN, Netns, ROOT } from "../helpers/netns";

const made: Array<{ destroy(): void }> = [];
const stores: SqliteStore[] = [];
afterAll(() => {
  for (const s of stores.splice(0))
    try {
      s.close();
    } catch {}
  for (const m of made.splice(0).reverse()) m.destroy();
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "stm-cinit-"));
  made.push({ destroy: () => rmSync(d, { recursive: true, force: true }) });
  return d;
}

const BLOCKS = 300;
const dec = new TextDecoder();

/** A node's state: networks app (IPv4 and IPv6) and web (default deny), a third created and
 * deleted (its id is never handed out again), two endpoints (one capped) with a lease, rules
 * in three scopes and ids reserved past them, the global default deny, 302 blocklisted
 * prefixes, DNS records (the last one deleted). `variant`: what a conflicting node has. */
function makeState(dir: string, o: { variant?: "conflicting"; endpoints?: boolean } = {}): SqliteStore {
  mkdirSync(dir, { recursive: true });
  const s = new SqliteStore(join(dir, "stratum.db"));
  stores.push(s);
  const appCidr = o.variant === "conflicting" ? "10.71.0.0/24" : "10.61.0.0/24";
  const app = s.createNetwork(
    validateNetwork({
      name: "app",
      cidr: appCidr,
      gateway: appCidr.replace(/0\/24$/, "1"),
      cidr6: "fd61::/64",
      gateway6: "fd61::1",
    }),
  );
  const web = s.createNetwork(
    validateNetwork({ name: "web", cidr: "10.62.0.0/24", gateway: "10.62.0.1", defaultAction: "deny" }),
  );
  s.createNetwork(validateNetwork({ name: "tmp", cidr: "10.63.0.0/24", gateway: "10.63.0.1" }));
  s.deleteNetwork("tmp");
  if (o.endpoints !== false) {
    const ep = (name: string, net: { id: number; name: string; cidr: string }, i: number) =>
      s.claimEndpoint({
        name,
        network: net.name,
        ip: hostAddress(net.cidr, i),
        hostIndex: i,
        mac: profileMac(net.id, i),
        kind: "tap",
        hostIf: `ci-${name}`,
      });
    const w = ep("web-1", app, 9);
    ep("db-1", web, 19);
    s.setEndpointEgress("db-1", { rate: 10_000_000, burst: 131_072 });
    if (o.variant === "conflicting") ep("stray", web, 29);
    s.putLease({
      network: "app",
      mac: w.mac,
      family: 4,
      ip: w.ip,
      endpoint: "web-1",
      hostname: "web-1",
      state: "bound",
      expiresAt: Date.now() + 3_600_000,
      updatedAt: Date.now(),
    });
  }
  s.addRule(FW_GLOBAL_SCOPE, parseRule({ priority: 10, src: "192.0.2.0/24", action: "deny" }));
  s.addRule(app.id, parseRule({ priority: 100, proto: "tcp", dport: 443, action: "allow" }));
  s.addRule(app.id, parseRule({ priority: 200, proto: "udp", dport: o.variant ? 5353 : 53, action: "allow" }));
  s.addRule(web.id, parseRule({ priority: 50, proto: "icmp", action: "allow" }));
  s.allocRuleIds(5);
  s.setGlobalDefault(o.variant ? "allow" : "deny");
  const blocks = Array.from({ length: BLOCKS }, (_, i) => `198.18.${i >> 8}.${i & 0xff}/32`);
  s.blockAdd(packPrefixes([...blocks, "2001:db8:1::/48", "2001:db8:2::/48"]));
  if (o.variant) s.blockAdd(packPrefixes(["203.0.113.0/24"]));
  s.addDnsRecord("app", { name: "api", type: "A", value: "10.61.0.50", ttl: 300 });
  s.addDnsRecord("app", { name: "www", type: "CNAME", value: "api.app.internal", ttl: o.variant ? 60 : 300 });
  s.addDnsRecord("web", { name: "db", type: "A", value: "10.62.0.20", ttl: 300 });
  const gone = s.addDnsRecord("web", { name: "old", type: "A", value: "10.62.0.99", ttl: 300 });
  s.deleteDnsRecords("web", [gone.id]);
  return s;
}

/** Everything a node's state holds, to compare before and after (endpoints without their node). */
function snapshot(s: SqliteStore) {
  const nets = s.listNetworks();
  return {
    networks: nets,
    endpoints: s.listEndpoints().map(({ node: _n, ...e }) => e),
    rules: [FW_GLOBAL_SCOPE, ...nets.map((n) => n.id)].map((scope) => ({ scope, rules: s.listRules(scope) })),
    globalDefault: s.getGlobalDefault(),
    blocklist: s.blockList(),
    dns: s.listDnsRecords(),
    leases: s.loadLeases().map(({ rowid: _r, ...l }) => l),
  };
}

async function etcdKeys(url: string): Promise<Map<string, string>> {
  const c = new EtcdClient({ endpoints: [url] });
  try {
    const { kvs } = await c.list(PREFIX);
    return new Map(kvs.map((kv) => [kv.key, dec.decode(kv.value)]));
  } finally {
    c.close();
  }
}

const joinOptions = (url: string, nodeName: string) => ({
  endpoints: [url],
  nodeName,
  nodeAddress: "10.0.0.1",
  version: "test",
  log: () => {},
});

/** The rejection's message of a promise that must fail. */
async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return { code: (e as { code: string }).code, message: (e as Error).message };
  }
  throw new Error("expected a refusal, got success");
}

let etcd: EtcdServer;
let clusterId = "";
let uploaded: ReturnType<typeof snapshot>;
let first: SqliteStore;

test("init uploads every object with its ids, counters above every id, in transactions under 128 operations", async () => {
  etcd = await EtcdServer.start();
  made.push(etcd);
  const s = makeState(tempDir());
  first = s;
  uploaded = snapshot(s);
  const lines: string[] = [];
  const r = await initCluster(s, { endpoints: [etcd.url], nodeName: "node-a", progress: (l) => lines.push(l) });
  clusterId = r.clusterId;
  const puts = 3 + 2 * 2 + 3 + 1 + 2 * 2 + (BLOCKS + 2) + 2;
  expect(r).toEqual({
    clusterId: expect.any(String),
    networks: 2,
    endpoints: 2,
    rules: 4,
    blocklist: BLOCKS + 2,
    dnsRecords: 3,
    // A fresh etcd is at revision 1: the marker, the batches, the identity.
    revision: 1 + 1 + Math.ceil(puts / INIT_TXN_PUTS) + 1,
    keys: puts + 1,
  });
  expect(lines[0]).toBe(
    `uploading ${puts} key(s) to etcd at ${etcd.url}: 2 network(s), 2 endpoint(s), 4 firewall rule(s), ${BLOCKS + 2} blocklisted prefix(es), 3 DNS record(s)`,
  );
  expect(lines.at(-1)).toBe(`uploaded ${puts}/${puts} key(s)`);

  const kv = await etcdKeys(etcd.url);
  expect(kv.size).toBe(puts + 1);
  expect(kv.has(K.init)).toBe(false);
  expect(JSON.parse(kv.get(K.cluster) as string)).toEqual({
    id: clusterId,
    createdAt: expect.any(String),
    by: "node-a",
  });
  // Ids as they were: tmp (id 3) is gone, and no counter hands out an id this node ever did.
  const [app, web] = uploaded.networks as [(typeof uploaded.networks)[0], (typeof uploaded.networks)[0]];
  expect([app.id, web.id]).toEqual([1, 2]);
  expect(kv.get(K.counter("network"))).toBe("3");
  expect(kv.get(K.counter("rule"))).toBe("9");
  expect(kv.get(K.counter("dns"))).toBe("4");
  expect(kv.get(K.networkId(1))).toBe("app");
  expect(kv.get(K.networkId(2))).toBe("web");
  const row = (key: string) => parseKey(key, new TextEncoder().encode(kv.get(key) as string));
  for (const n of uploaded.networks) {
    expect(row(K.network(n.name))).toEqual({ kind: "network", name: n.name, value: { ...n, vni: vniOf(n.id) } });
  }
  for (const e of uploaded.endpoints) {
    expect(row(K.endpoint(e.name))).toEqual({ kind: "endpoint", name: e.name, value: { ...e, node: "node-a" } });
    const netId = uploaded.networks.find((n) => n.name === e.network)?.id as number;
    expect(kv.get(K.claim(netId, e.hostIndex))).toBe(e.name);
  }
  for (const { scope, rules } of uploaded.rules)
    expect(row(K.rules(scope))).toEqual({ kind: "rules", scope, value: rules });
  expect(kv.get(K.globalDefault)).toBe('"deny"');
  for (const b of uploaded.blocklist)
    expect(JSON.parse(kv.get(K.block(b.prefix)) as string)).toEqual({ family: b.family, addedAt: b.addedAt });
  for (const n of uploaded.networks)
    expect(row(K.dns(n.id))).toEqual({
      kind: "dns",
      networkId: n.id,
      value: uploaded.dns.filter((d) => d.network === n.name).map(({ network: _n, ...d }) => d),
    });

  // The store is now a copy of that cluster that has seen nothing yet: the agent lists everything.
  const w = new MirrorWriter(s, parseKey);
  expect([w.meta("clusterId"), w.revision]).toEqual([clusterId, 0]);
  expect(s.listEndpoints().map((e) => e.node)).toEqual(["node-a", "node-a"]);

  // Not twice: etcd is a cluster now, and this store is a copy of it.
  const other = makeState(tempDir());
  const again = await refusal(initCluster(other, { endpoints: [etcd.url], nodeName: "node-b" }));
  expect(again.code).toBe("CONFLICT");
  expect(again.message).toContain(
    `etcd at ${etcd.url} already holds cluster ${clusterId} (${puts + 1} key(s) under ${PREFIX})`,
  );
  expect(again.message).toContain("nothing was uploaded");
  const twice = await refusal(initCluster(s, { endpoints: [etcd.url], nodeName: "node-a" }));
  expect(twice.message).toStartWith(`this node's state is already a copy of cluster ${clusterId}`);
  expect((await etcdKeys(etcd.url)).size).toBe(puts + 1);
}, 30_000);

test("the node joins its own cluster and has lost nothing: ids, MACs, rules, blocklist, DNS, leases", async () => {
  // The store init stamped: the agent's first start lists everything into it.
  const s = first;
  const c = await Cluster.open(s, joinOptions(etcd.url, "node-a"));
  try {
    expect(c.clusterId).toBe(clusterId);
    expect(snapshot(s)).toEqual(uploaded);
    expect(s.listEndpoints().every((e) => e.node === "node-a")).toBe(true);
    // The mirror holds every key but the address claims (the endpoint records say the same).
    const kv = await etcdKeys(etcd.url);
    expect(c.writer.count()).toBe([...kv.keys()].filter((k) => !k.startsWith(`${PREFIX}claims/`)).length);
    expect(c.writer.revision).toBeGreaterThan(0);
  } finally {
    await c.stop();
  }
}, 30_000);

test("an upload cut short is no cluster: agents refuse it, init names the way out, --force-clean-partial starts over", async () => {
  const e2 = await EtcdServer.start();
  made.push(e2);
  const s = makeState(tempDir());
  const before = snapshot(s);
  const cut = await refusal(
    initCluster(s, {
      endpoints: [e2.url],
      nodeName: "node-a",
      progress: (l) => {
        if (l.startsWith("uploaded")) throw new Error("power cut");
      },
    }),
  );
  expect(cut.message).toMatch(
    /^the upload stopped after (\d+) of \1 key\(s\): power cut\. etcd holds a partial upload/,
  );
  expect(cut.message).toContain(`etcdctl --endpoints ${e2.url} del --prefix ${PREFIX}`);
  expect(cut.message).toContain("--force-clean-partial");
  const kv = await etcdKeys(e2.url);
  expect(kv.has(K.cluster)).toBe(false);
  expect(JSON.parse(kv.get(K.init) as string)).toMatchObject({ by: "node-a" });
  // This node's state is as it was: not a copy of anything.
  expect(new MirrorWriter(s, parseKey).meta("clusterId")).toBeUndefined();
  expect(snapshot(s)).toEqual(before);

  // An agent with no state of its own would otherwise make a cluster over the half upload.
  const empty = new SqliteStore(":memory:");
  stores.push(empty);
  const agent = await refusal(Cluster.open(empty, joinOptions(e2.url, "node-b")));
  expect(agent.code).toBe("CONFLICT");
  expect(agent.message).toStartWith(
    `etcd at ${e2.url} holds ${kv.size} key(s) under ${PREFIX} but no cluster: an upload by \`cluster init\` on node node-a`,
  );
  expect((await etcdKeys(e2.url)).has(K.cluster)).toBe(false);

  const again = await refusal(initCluster(s, { endpoints: [e2.url], nodeName: "node-a" }));
  expect(again.code).toBe("CONFLICT");
  expect(again.message).toContain("--force-clean-partial");
  const lines: string[] = [];
  const r = await initCluster(s, {
    endpoints: [e2.url],
    nodeName: "node-a",
    forceCleanPartial: true,
    progress: (l) => lines.push(l),
  });
  expect(lines[0]).toBe(`deleted ${kv.size} key(s) of an upload that did not finish`);
  const done = await etcdKeys(e2.url);
  expect(done.size).toBe(r.keys);
  expect(done.has(K.init)).toBe(false);
  expect(JSON.parse(done.get(K.cluster) as string).id).toBe(r.clusterId);
}, 30_000);

test("joining with conflicting state is refused naming each conflict; identical state joins", async () => {
  // Same names, another subnet for app, an endpoint the cluster lacks, a rule, the default,
  // a prefix, a TTL: nothing of it may be lost silently.
  const bad = makeState(tempDir(), { variant: "conflicting" });
  const before = snapshot(bad);
  const r = await refusal(Cluster.open(bad, joinOptions(etcd.url, "node-a")));
  expect(r.code).toBe("CONFLICT");
  expect(r.message).toStartWith(`this node's own state conflicts with cluster ${clusterId}, so it cannot join: `);
  for (const conflict of [
    "network app: cidr is 10.71.0.0/24 here and 10.61.0.0/24 in the cluster",
    "network app: gateway is 10.71.0.1 here and 10.61.0.1 in the cluster",
    "endpoint web-1: address 10.71.0.10 here, 10.61.0.10 in the cluster",
    "endpoint stray (10.62.0.30 in web) is not in the cluster",
    'network app: the rule at priority 200 is "allow both udp dport 5353" here and "allow both udp dport 53" in the cluster',
    "the global default is allow here and deny in the cluster",
    "1 blocklisted prefix(es) here are not in the cluster: 203.0.113.0/24",
    "network app: DNS record www CNAME api.app.internal has TTL 60 here and 300 in the cluster",
  ])
    expect(r.message).toContain(conflict);
  // Refused before anything changed: the node keeps its state, not a copy of the cluster.
  expect(snapshot(bad)).toEqual(before);
  expect(new MirrorWriter(bad, parseKey).meta("clusterId")).toBeUndefined();

  // The same state, its endpoints on another node: they would leave this one.
  const elsewhere = await refusal(Cluster.open(makeState(tempDir()), joinOptions(etcd.url, "node-b")));
  expect(elsewhere.message).toContain(
    "endpoint web-1: it runs on node node-a in the cluster, not on this node (node-b)",
  );

  // Identical state joins: as the node the endpoints run on, or without endpoints as another.
  for (const [nodeName, endpoints] of [
    ["node-a", true],
    ["node-b", false],
  ] as const) {
    const s = makeState(tempDir(), { endpoints });
    const c = await Cluster.open(s, joinOptions(etcd.url, nodeName));
    try {
      expect(c.clusterId).toBe(clusterId);
      expect(s.listEndpoints().map((e) => `${e.name} ${e.mac} ${e.node}`)).toEqual([
        `db-1 ${profileMac(2, 19)} node-a`,
        `web-1 ${profileMac(1, 9)} node-a`,
      ]);
    } finally {
      await c.stop();
    }
  }
}, 30_000);

test("the command in an agent's namespace: uploads, the agent starts on the same ids and MACs, a second init is refused while it runs", async () => {
  const A = new TestAgent("cinit");
  made.push(A);
  const e3 = await EtcdServer.start({ netns: A.ns.name });
  made.push(e3);
  const stateDir = join(A.dir, "state");
  const s = makeState(stateDir);
  const before = snapshot(s);
  s.close();
  // Another namespace (no agent's marker there) for what is seen from outside the agent's.
  const other = new Netns("cinito");
  made.push(other);
  const cli = (args: string[], o: { outside?: boolean } = {}) =>
    (o.outside ? other : A.ns).enter([BUN, join(ROOT, "test/helpers/cluster-cli.ts"), "cluster", "init", ...args]);
  const line = ["--cluster", e3.url, "--node-name", "node-a", "--state-dir", stateDir, "--api-socket", A.sock];
  const r = cli([...line, "-o", "json"]);
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: expect.any(String) });
  const summary = JSON.parse(r.stdout);
  expect(Object.keys(summary)).toEqual([
    "clusterId",
    "networks",
    "endpoints",
    "rules",
    "blocklist",
    "dnsRecords",
    "revision",
  ]);
  expect(summary).toMatchObject({ networks: 2, endpoints: 2, rules: 4, blocklist: BLOCKS + 2, dnsRecords: 3 });
  expect(r.stderr).toContain("uploading ");

  await A.start(["--cluster", e3.url, "--node-name", "node-a", "--node-address", "10.0.0.1"]);
  const nets = A.json<Array<{ name: string; id: number }>>("network", "list");
  expect(nets.map((n) => `${n.name} ${n.id}`).sort()).toEqual(before.networks.map((n) => `${n.name} ${n.id}`));
  const eps = A.json<Array<{ name: string; ip: string; mac: string; node: string | null }>>("endpoint", "list");
  expect(eps.map((e) => `${e.name} ${e.ip} ${e.mac} ${e.node}`).sort()).toEqual(
    before.endpoints.map((e) => `${e.name} ${e.ip} ${e.mac} node-a`),
  );
  const leases = A.json<Array<{ mac: string; ip: string }>>("dhcp", "leases");
  expect(leases.map((l) => `${l.mac} ${l.ip}`)).toEqual([`${profileMac(1, 9)} 10.61.0.10`]);
  // The agent listed the cluster into the stamped store: its copy of that cluster, caught up.
  const seen = new SqliteStore(join(stateDir, "stratum.db"), { readonly: true });
  try {
    const w = new MirrorWriter(seen, parseKey);
    expect(w.meta("clusterId")).toBe(summary.clusterId);
    expect(w.revision).toBeGreaterThanOrEqual(summary.revision);
  } finally {
    seen.close();
  }

  // While the agent runs: refused in its namespace (its marker), from elsewhere through its API
  // socket, and from anywhere through the state directory's lock.
  const inside = cli(line);
  expect(inside.code).toBe(2);
  expect(inside.stderr).toContain(`an agent is running on the state directory ${stateDir} (pid `);
  const bySocket = cli(line, { outside: true });
  expect(bySocket.code).toBe(2);
  expect(bySocket.stderr).toContain(`an agent is serving ${A.sock} on the state directory ${stateDir}`);
  const byLock = cli(
    ["--cluster", e3.url, "--node-name", "node-a", "--state-dir", stateDir, "--api-socket", join(A.dir, "none.sock")],
    { outside: true },
  );
  expect(byLock.code).toBe(2);
  expect(byLock.stderr).toContain(`another process holds the state directory ${stateDir}`);
}, 60_000);
