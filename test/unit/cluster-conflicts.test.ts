/** What a node's own state and a cluster disagree on (src/cluster/conflicts.ts): identical state
 * has no conflict, a cluster that holds more has none, and each kind of local object the
 * cluster does not hold as it is here is named, once. In memory: no etcd. */
import { expect, test } from "bun:test";
import { stateConflicts } from "../../src/cluster/conflicts";
import { K, networkValue, parseKey, vniOf } from "../../src/cluster/keys";
import { packPrefixes } from "../../src/model/blocklist";
import { FW_GLOBAL_SCOPE, parseRule } from "../../src/model/firewall-rule";
import { profileMac, validateNetwork } from "../../src/model/network";
import type { MirrorRow } from "../../src/store/mirror";
import { SqliteStore } from "../../src/store/sqlite";

const enc = new TextEncoder();

/** A node's state: two networks, an endpoint, rules, a default, the blocklist, DNS records. */
function node(o: { cidr?: string; priority?: number; def?: "allow" | "deny" } = {}): SqliteStore {
  const s = new SqliteStore(":memory:");
  const app = s.createNetwork(
    validateNetwork({
      name: "app",
      cidr: o.cidr ?? "10.61.0.0/24",
      gateway: (o.cidr ?? "10.61.0.0/24").replace(/0\/24$/, "1"),
      cidr6: "fd61::/64",
      gateway6: "fd61::1",
    }),
  );
  s.createNetwork(validateNetwork({ name: "web", cidr: "10.62.0.0/24", gateway: "10.62.0.1", defaultAction: "deny" }));
  s.claimEndpoint({
    name: "web-1",
    network: "app",
    ip: "10.61.0.10",
    hostIndex: 9,
    mac: profileMac(app.id, 9),
    kind: "tap",
    hostIf: "tap-web1",
  });
  s.addRule(FW_GLOBAL_SCOPE, parseRule({ priority: 10, src: "192.0.2.0/24", action: "deny" }));
  s.addRule(app.id, parseRule({ priority: o.priority ?? 100, proto: "tcp", dport: 443, action: "allow" }));
  s.setGlobalDefault(o.def ?? "deny");
  s.blockAdd(packPrefixes(["198.18.0.0/24"]));
  s.addDnsRecord("app", { name: "api", type: "A", value: "10.61.0.50", ttl: 300 });
  return s;
}

/** What etcd holds for a node's state (as init.ts uploads it), parsed as a joining node parses it. */
function clusterOf(s: SqliteStore, nodeName: string): MirrorRow[] {
  const kvs: Array<[string, string]> = [];
  for (const n of s.listNetworks()) kvs.push([K.network(n.name), networkValue(n, vniOf(n.id))]);
  for (const sc of [FW_GLOBAL_SCOPE, ...s.listNetworks().map((n) => n.id)])
    if (s.listRules(sc).length) kvs.push([K.rules(sc), JSON.stringify({ rules: s.listRules(sc) })]);
  kvs.push([K.globalDefault, JSON.stringify(s.getGlobalDefault())]);
  for (const e of s.listEndpoints()) kvs.push([K.endpoint(e.name), JSON.stringify({ ...e, node: nodeName })]);
  for (const b of s.blockList())
    kvs.push([K.block(b.prefix), JSON.stringify({ family: b.family, addedAt: b.addedAt })]);
  for (const n of s.listNetworks()) {
    const recs = s.listDnsRecords(n.name).map(({ network: _n, ...r }) => r);
    if (recs.length) kvs.push([K.dns(n.id), JSON.stringify({ records: recs })]);
  }
  return kvs.map(([k, v]) => parseKey(k, enc.encode(v)) as MirrorRow);
}

test("identical state has no conflict, on the node the cluster places its endpoints", () => {
  expect(stateConflicts(node(), clusterOf(node(), "node-a"), "node-a")).toEqual([]);
});

test("a cluster that holds more than the node is no conflict: it comes to the node", () => {
  const more = node();
  more.createNetwork(validateNetwork({ name: "extra", cidr: "10.63.0.0/24", gateway: "10.63.0.1" }));
  more.addRule(FW_GLOBAL_SCOPE, parseRule({ priority: 20, proto: "udp", dport: 53, action: "allow" }));
  more.blockAdd(packPrefixes(["198.18.1.0/24"]));
  more.addDnsRecord("app", { name: "www", type: "A", value: "10.61.0.51", ttl: 300 });
  const mine = node();
  mine.releaseEndpoint("web-1");
  expect(stateConflicts(mine, clusterOf(more, "node-a"), "node-b")).toEqual([]);
});

test("each disagreement is named: subnet, id, endpoint, its node, rule, default, blocklist, DNS", () => {
  const local = node({ cidr: "10.71.0.0/24", priority: 101, def: "allow" });
  local.claimEndpoint({
    name: "stray",
    network: "web",
    ip: "10.62.0.30",
    hostIndex: 29,
    mac: profileMac(2, 29),
    kind: "tap",
    hostIf: "tap-stray",
  });
  local.blockAdd(packPrefixes(["203.0.113.0/24"]));
  local.addDnsRecord("app", { name: "api", type: "TXT", value: "only here", ttl: 60 });
  const cluster = clusterOf(node(), "node-a");
  expect(stateConflicts(local, cluster, "node-b")).toEqual([
    "network app: cidr is 10.71.0.0/24 here and 10.61.0.0/24 in the cluster",
    "network app: gateway is 10.71.0.1 here and 10.61.0.1 in the cluster",
    "network app: dhcpRange is 10.71.0.2-10.71.0.254 here and 10.61.0.2-10.61.0.254 in the cluster",
    "endpoint stray (10.62.0.30 in web) is not in the cluster",
    "endpoint web-1: it runs on node node-a in the cluster, not on this node (node-b)",
    "network app: rule 2 (priority 101: allow both tcp dport 443) is not in the cluster",
    "the global default is allow here and deny in the cluster",
    "1 blocklisted prefix(es) here are not in the cluster: 203.0.113.0/24",
    "network app: DNS record api TXT only here is not in the cluster",
  ]);
});

test("a network under another id, and a rule changed at its priority", () => {
  const local = new SqliteStore(":memory:");
  local.createNetwork(validateNetwork({ name: "skip", cidr: "10.60.0.0/24", gateway: "10.60.0.1" }));
  local.deleteNetwork("skip");
  const app = local.createNetwork(
    validateNetwork({
      name: "app",
      cidr: "10.61.0.0/24",
      gateway: "10.61.0.1",
      cidr6: "fd61::/64",
      gateway6: "fd61::1",
    }),
  );
  local.addRule(app.id, parseRule({ priority: 100, proto: "tcp", dport: 8443, action: "allow" }));
  local.setGlobalDefault("deny");
  const cluster = clusterOf(node(), "node-a");
  expect(stateConflicts(local, cluster, "node-a")).toEqual([
    "network app has id 2 here and 1 in the cluster (its profile MACs would change)",
    'network app: the rule at priority 100 is "allow both tcp dport 8443" here and "allow both tcp dport 443" in the cluster',
  ]);
  const same = new SqliteStore(":memory:");
  const app1 = same.createNetwork(
    validateNetwork({
      name: "app",
      cidr: "10.61.0.0/24",
      gateway: "10.61.0.1",
      cidr6: "fd61::/64",
      gateway6: "fd61::1",
    }),
  );
  same.addRule(app1.id, parseRule({ priority: 100, proto: "tcp", dport: 8443, action: "allow" }));
  same.setGlobalDefault("deny");
  expect(stateConflicts(same, cluster, "node-a")).toEqual([
    'network app: the rule at priority 100 is "allow both tcp dport 8443" here and "allow both tcp dport 443" in the cluster',
  ]);
});
