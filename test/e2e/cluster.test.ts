/** Three nodes of one cluster on the lab (test/helpers/lab.ts): each an agent in its own
 * namespace, etcd on the underlay switch. What one node's API changes, every node has, in its
 * store and its kernel; what must be unique is decided once under a real race; with etcd
 * gone the datapath keeps enforcing, reads answer and writes are refused in one line; a node
 * restarted meanwhile starts from its mirror; everyone catches up once etcd is back; a node
 * that missed compacted history lists again; bad input over any node's API changes nothing
 * anywhere. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { apiCall, Lab, type LabNode, until } from "../helpers/lab";

let lab: Lab;
let n1: LabNode;
let n2: LabNode;
let n3: LabNode;

beforeAll(async () => {
  lab = await Lab.create({ nodes: 3 });
  [n1, n2, n3] = lab.nodes as [LabNode, LabNode, LabNode];
  for (const n of lab.nodes) await n.start(n.clusterArgs());
}, 60_000);
afterAll(() => lab?.destroy());

/** etcd's current revision, read from inside a node (etcdctl endpoint status). */
function etcdRevision(n: LabNode): number {
  const r = n.exec(["etcdctl", "--endpoints", lab.etcd.url, "endpoint", "status", "-w", "json"]);
  if (r.code !== 0) throw new Error(`etcdctl endpoint status: ${r.stderr}`);
  return Number(JSON.parse(r.stdout)[0].Status.header.revision);
}

const gatewayOn = (n: LabNode, cidr: string) =>
  n.exec(["ip", "-o", "addr", "show", "dev", "cnv-user-br0"]).stdout.includes(cidr);

test("a network made on one node is on every node: store, gateway address, one anycast gateway MAC", async () => {
  const made = n1.cli("network", "create", "--name", "app", "--cidr", "10.60.0.0/24", "--gateway", "10.60.0.1");
  expect(made.stderr).toBe("");
  for (const n of [n2, n3]) {
    await until(`app on ${n.name}`, () => n.json<any[]>("network", "list").find((x) => x.name === "app"));
    await until(`app's gateway in ${n.name}'s kernel`, () => gatewayOn(n, "10.60.0.1/24"));
  }
  const ids = lab.nodes.map((n) => n.json<any>("network", "show", "app").id);
  expect(new Set(ids).size).toBe(1);
  const macOf = (n: LabNode, dev: string) =>
    /link\/ether ([0-9a-f:]{17})/.exec(n.exec(["ip", "-o", "link", "show", "dev", dev]).stdout)?.[1];
  const macs = lab.nodes.map((n) => macOf(n, "cnv-user-br0"));
  expect(macs[0]).toMatch(/^02:/);
  expect(new Set(macs).size).toBe(1);
  // The management bridge stays each node's own.
  const mgmt = lab.nodes.map((n) => macOf(n, "cnv-mgmt-br0"));
  expect(new Set(mgmt).size).toBe(3);
  // A rule added on node 3 is in node 1's list (and its kernel: the counters come from there).
  expect(
    n3.cli("firewall", "rule", "add", "app", "--priority", "100", "--proto", "tcp", "--dport", "22", "--action", "deny")
      .code,
  ).toBe(0);
  await until("the rule on node1", () => n1.json<any>("firewall", "rule", "list", "app").rules?.length === 1);
});

test("two nodes race 100 claims each for the same 100 addresses: each claimed once, every loser told", async () => {
  expect(n1.cli("network", "create", "--name", "race", "--cidr", "10.61.0.0/24", "--gateway", "10.61.0.1").code).toBe(
    0,
  );
  await until("race on node2", () => n2.json<any[]>("network", "list").some((x) => x.name === "race"));
  const attempts = (n: LabNode, tag: string) =>
    Array.from({ length: 100 }, (_, i) =>
      apiCall(n, "POST", "/v1/networks/race/endpoints", {
        name: `${tag}${i}`,
        tap: `${tag}${i}`,
        ip: `10.61.0.${i + 2}`,
      }),
    );
  const [a, b] = await Promise.all([Promise.all(attempts(n1, "ra")), Promise.all(attempts(n2, "rb"))]);
  const won = new Map<string, string>();
  for (const [i, r] of [...a.map((r) => ["node1", r] as const), ...b.map((r) => ["node2", r] as const)].entries()) {
    const [node, res] = r;
    if (res.status === 200 || res.status === 201) {
      const ip = res.body.ip as string;
      expect(won.has(ip)).toBe(false); // never twice
      won.set(ip, node);
    } else {
      expect(res.status).toBe(400);
      expect(res.body.message).toMatch(
        /^(attach r[ab]\d+ to race: )?10\.61\.0\.\d+ is already claimed by endpoint r[ab]\d+ on node node[12]$/,
      );
    }
    void i;
  }
  expect(won.size).toBe(100);
  // Every node agrees on who holds what; each winner's tap is in its own node's kernel only.
  await until(
    "node3 has all 100",
    () => n3.json<any[]>("endpoint", "list").filter((e) => e.network === "race").length === 100,
  );
  const eps = n3.json<any[]>("endpoint", "list").filter((e) => e.network === "race");
  for (const e of eps) expect(won.get(e.ip)).toBe(e.node);
  const winner = eps[0] as { interface: string; node: string };
  const owner = winner.node === "node1" ? n1 : n2;
  const other = winner.node === "node1" ? n2 : n1;
  expect(owner.exec(["ip", "link", "show", winner.interface]).code).toBe(0);
  expect(other.exec(["ip", "link", "show", winner.interface]).code).not.toBe(0);
  // Detaching another node's endpoint is refused, naming the node.
  const d = other.cli("network", "detach", "race", "--name", (eps[0] as { name: string }).name);
  expect(d.code).not.toBe(0);
  expect(d.stderr).toContain(`runs on node ${winner.node}`);
}, 60_000);

test("two nodes attaching without an address at once: every attach gets an address of its own", async () => {
  expect(n1.cli("network", "create", "--name", "auto", "--cidr", "10.67.0.0/24", "--gateway", "10.67.0.1").code).toBe(
    0,
  );
  await until("auto on node2", () => n2.json<any[]>("network", "list").some((x) => x.name === "auto"));
  const attempts = (n: LabNode, tag: string) =>
    Array.from({ length: 40 }, (_, i) =>
      apiCall(n, "POST", "/v1/networks/auto/endpoints", { name: `${tag}${i}`, tap: `${tag}${i}` }),
    );
  const all = (await Promise.all([Promise.all(attempts(n1, "aa")), Promise.all(attempts(n2, "ab"))])).flat();
  for (const r of all) expect(r.status, JSON.stringify(r.body)).toBeLessThan(300);
  expect(new Set(all.map((r) => r.body.ip)).size).toBe(80);
}, 60_000);

/** A profile's flags in a node's stm_profiles (1: claimed, 2: the gateway's), from bpftool. */
function profileFlags(n: LabNode, netId: number, ip: string): number | undefined {
  const key = [netId & 0xff, (netId >> 8) & 0xff, 0, 0, ...ip.split(".").map(Number)].map(String);
  const r = Bun.spawnSync([
    "bpftool",
    "-j",
    "map",
    "lookup",
    "pinned",
    `${n.agent.pins.path}/maps/stm_profiles`,
    "key",
    ...key,
  ]);
  if (r.exitCode !== 0) return undefined;
  const v = (JSON.parse(r.stdout.toString()) as { value: string[] }).value.map((b) => Number(b));
  return (v[6] as number) | ((v[7] as number) << 8);
}

test("another node's change reconciles only the networks it touched; a deletion elsewhere takes a whole run", async () => {
  const last = (n: LabNode) => n.json<any>("status").reconcile.last;
  expect(n1.cli("network", "create", "--name", "lim", "--cidr", "10.68.0.0/24", "--gateway", "10.68.0.1").code).toBe(0);
  await until("lim's gateway on node2", () => gatewayOn(n2, "10.68.0.1/24"));
  await until("node2's run limited to lim", () => {
    const l = last(n2);
    return l.trigger === "cluster" && JSON.stringify(l.only) === '["lim"]' && l.networks === 1;
  });
  const id = n2.json<any>("network", "show", "lim").id as number;
  expect(profileFlags(n2, id, "10.68.0.1")).toBe(2);
  expect(profileFlags(n2, id, "10.68.0.9")).toBe(0);

  // Another node's endpoint claims a profile: node2's kernel has it claimed, by a limited run.
  expect(n1.cli("network", "attach", "lim", "--name", "lim-a", "--tap", "tlima", "--ip", "10.68.0.9").code).toBe(0);
  await until("the claim in node2's kernel", () => profileFlags(n2, id, "10.68.0.9") === 1);
  expect(last(n2).only).toEqual(["lim"]);
  // node2's name server answers for node1's endpoint, and for a record added on node1 (its
  // servers rebuild only the networks a change names).
  const ask = (name: string) =>
    n2.exec(["dig", "@10.68.0.1", "+short", "+time=1", "+tries=1", `${name}.lim.internal`]).stdout.trim();
  await until("node2's DNS has lim-a", () => ask("lim-a") === "10.68.0.9");
  expect(n1.cli("dns", "record", "add", "lim", "db", "A", "10.68.0.50").code).toBe(0);
  await until("node2's DNS has node1's record", () => ask("db") === "10.68.0.50");
  expect(n1.cli("network", "detach", "lim", "--name", "lim-a").code).toBe(0);
  await until("the release in node2's kernel", () => profileFlags(n2, id, "10.68.0.9") === 0);
  await until("lim-a gone from node2's DNS", () => ask("lim-a") === "");

  // Deleted on node1: gone from node2's kernel (a whole run: something had to be collected).
  expect(n1.cli("network", "delete", "lim").code).toBe(0);
  await until("lim's gateway gone from node2", () => !gatewayOn(n2, "10.68.0.1/24"));
  await until("node2's whole run", () => {
    const l = last(n2);
    return l.trigger === "cluster" && l.only === undefined;
  });
  expect(profileFlags(n2, id, "10.68.0.1")).toBeUndefined();
}, 60_000);

test("etcd gone: traffic enforced as before, reads answer, writes refused in one line; then everyone catches up", async () => {
  const w1 = n1.workload("w1", "app");
  const w2 = n1.workload("w2", "app");
  // Allowed: ping; denied: tcp 22 (the rule from node 3).
  const tcp22 = () => w1.exec(["timeout", "1", "bash", "-c", `echo > /dev/tcp/${w2.ip}/22`]).code;
  expect(w1.ping(w2.ip)).toBe(true);
  await lab.etcd.kill();
  try {
    for (let i = 0; i < 3; i++) {
      expect(w1.ping(w2.ip)).toBe(true);
      expect(tcp22()).not.toBe(0);
      expect(w2.ping("10.60.0.1")).toBe(true);
    }
    expect(n2.json<any[]>("network", "list").map((x) => x.name)).toContain("app");
    const refused = n2.cli("network", "create", "--name", "later", "--cidr", "10.62.0.0/24", "--gateway", "10.62.0.1");
    expect(refused.code).toBe(12);
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    expect(refused.stderr).toContain("etcd");
    // A node restarted while etcd is down starts from its mirror, kernel and all.
    await n3.kill();
    await n3.start(n3.clusterArgs());
    expect(n3.json<any[]>("network", "list").map((x) => x.name)).toEqual(["app", "auto", "race"]);
    expect(gatewayOn(n3, "10.60.0.1/24")).toBe(true);
  } finally {
    await lab.etcd.resume();
  }
  // Back: a write on node 2 reaches node 3 (restarted in the dark) and node 1.
  await until(
    "writes accepted again",
    () => n2.cli("network", "create", "--name", "later", "--cidr", "10.62.0.0/24", "--gateway", "10.62.0.1").code === 0,
  );
  for (const n of [n1, n3]) await until(`later on ${n.name}`, () => gatewayOn(n, "10.62.0.1/24"));
  expect(w1.ping(w2.ip)).toBe(true);
  expect(tcp22()).not.toBe(0);
}, 60_000);

test("a node that missed compacted history lists again; bad input over any node's API changes nothing anywhere", async () => {
  await n3.kill();
  expect(
    n1.cli("network", "create", "--name", "while-away", "--cidr", "10.63.0.0/24", "--gateway", "10.63.0.1").code,
  ).toBe(0);
  expect(n1.cli("network", "delete", "later").code).toBe(0);
  // Everything node 3 missed is compacted away: its watch could not resume, it must list.
  const rev = etcdRevision(n1);
  expect(n1.exec(["etcdctl", "--endpoints", lab.etcd.url, "compact", String(rev)]).code).toBe(0);
  await n3.start(n3.clusterArgs());
  const names = n3.json<any[]>("network", "list").map((x) => x.name);
  expect(names).toContain("while-away");
  expect(names).not.toContain("later");
  expect(gatewayOn(n3, "10.62.0.1/24")).toBe(false);

  const before = etcdRevision(n1);
  for (const [n, body] of [
    [n2, { name: "bad", cidr: "10.64.0.0/33", gateway: "10.64.0.1" }],
    [n3, { name: "bad", cidr: "10.64.0.0/24", gateway: "10.65.0.1" }],
    [n1, { name: "bad", cidr: "10.64.0.0/24", gateway: "10.64.0.1", bogus: 1 }],
    [n2, { name: "app", cidr: "10.66.0.0/24", gateway: "10.66.0.1" }],
  ] as const) {
    const r = await apiCall(n, "POST", "/v1/networks", body);
    expect([400, 409]).toContain(r.status);
    expect(r.body.message).toBeTruthy();
    expect(r.body.message).not.toContain("\n");
  }
  const rule = await apiCall(n3, "POST", "/v1/firewall/app/rules", { priority: 100, action: "allow" });
  expect(rule.status).toBe(400);
  expect(rule.body.message).toContain("priority 100 is taken");
  expect(etcdRevision(n1)).toBe(before);
  for (const n of lab.nodes) expect(n.json<any[]>("network", "list").map((x) => x.name)).not.toContain("bad");
}, 60_000);
