/** The SQLite store: migrations, one transaction per change, conflicts refused with a
 * one-line error and nothing written, state surviving a reopen. */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FW_GLOBAL_SCOPE } from "../../src/datapath/firewall";
import { parseRule } from "../../src/model/firewall";
import { profileMac, validateNetwork } from "../../src/model/network";
import { SCHEMA_VERSION, SqliteStore } from "../../src/store/sqlite";
import type { StoredNetwork } from "../../src/store/store";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tmpDb = () => {
  const d = mkdtempSync(join(tmpdir(), "stm-store-"));
  dirs.push(d);
  return join(d, "state", "stratum.db");
};

const net = (name: string, cidr: string, gateway: string) => validateNetwork({ name, cidr, gateway });
const ep = (s: SqliteStore, name: string, network: string, hostIndex: number, ip: string) =>
  s.claimEndpoint({
    name,
    network,
    ip,
    hostIndex,
    mac: profileMac(s.getNetwork(network)?.id ?? 1, hostIndex),
    kind: "veth",
    hostIf: `stm${name}`,
    netns: name,
    ifname: "eth0",
  });

test("a new database is migrated to the current schema in WAL mode", () => {
  const s = new SqliteStore(tmpDb());
  expect((s.db.query("PRAGMA user_version").get() as { user_version: number }).user_version).toBe(SCHEMA_VERSION);
  expect((s.db.query("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode).toBe("wal");
  s.close();
});

test("a database from a newer binary is refused, not damaged", () => {
  const path = tmpDb();
  const s = new SqliteStore(path);
  s.db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
  s.close();
  expect(() => new SqliteStore(path)).toThrow("newer than this binary understands");
});

test("networks get stable ids that are never reused", () => {
  const s = new SqliteStore(":memory:");
  const a = s.createNetwork(net("a", "10.1.0.0/24", "10.1.0.1"));
  const b = s.createNetwork(net("b", "10.2.0.0/24", "10.2.0.1"));
  expect([a.id, b.id]).toEqual([1, 2]);
  s.deleteNetwork("b");
  expect(s.createNetwork(net("c", "10.3.0.0/24", "10.3.0.1")).id).toBe(3);
  expect(() => s.createNetwork(net("a", "10.9.0.0/24", "10.9.0.1"))).toThrow("network a already exists");
  expect(s.listNetworks().map((n) => n.name)).toEqual(["a", "c"]);
});

test("endpoints: claims conflict on name and address; a failed claim writes nothing", () => {
  const s = new SqliteStore(":memory:");
  s.createNetwork(net("app", "10.20.0.0/24", "10.20.0.1"));
  ep(s, "web-1", "app", 1, "10.20.0.2");
  expect(() => ep(s, "web-1", "app", 2, "10.20.0.3")).toThrow("endpoint web-1 already exists");
  expect(() => ep(s, "web-2", "app", 1, "10.20.0.2")).toThrow("10.20.0.2 is already claimed by endpoint web-1");
  expect(() => ep(s, "web-3", "nope", 5, "10.20.0.6")).toThrow("network nope does not exist");
  expect(s.listEndpoints().map((e) => e.name)).toEqual(["web-1"]);
  expect([...s.claimedIndexes("app")]).toEqual([1]);
  expect(() => s.deleteNetwork("app")).toThrow("network app still has 1 endpoint(s) attached");
  s.releaseEndpoint("web-1");
  expect(() => s.releaseEndpoint("web-1")).toThrow("endpoint web-1 does not exist");
  s.deleteNetwork("app");
});

test("state survives close and reopen; updates keep identity", () => {
  const path = tmpDb();
  let s = new SqliteStore(path);
  s.createNetwork(net("app", "10.20.0.0/24", "10.20.0.1"));
  ep(s, "web-1", "app", 1, "10.20.0.2");
  s.updateNetwork("app", { mtu: 1450, defaultAction: "deny" });
  s.close();
  s = new SqliteStore(path);
  expect(s.getNetwork("app")).toMatchObject({
    id: 1,
    name: "app",
    cidr: "10.20.0.0/24",
    mtu: 1450,
    defaultAction: "deny",
  });
  expect(s.getEndpoint("web-1")).toMatchObject({
    network: "app",
    ip: "10.20.0.2",
    mac: "02:00:01:00:00:01",
    netns: "web-1",
  });
  expect(() => s.updateNetwork("nope", { mtu: 1400 })).toThrow("network nope does not exist");
  s.close();
});

// ---- firewall -----------------------------------------------------------------------------

const rule = (priority: number, action: "allow" | "deny" | "reject" = "allow", extra: Record<string, unknown> = {}) =>
  parseRule({ priority, action, ...extra });

test("a schema-1 database is migrated: its networks stay, the firewall tables appear", () => {
  const path = tmpDb();
  let s = new SqliteStore(path);
  s.createNetwork(net("app", "10.20.0.0/24", "10.20.0.1"));
  s.db.exec(
    "DROP TABLE fw_rules; DROP TABLE fw_global; DROP TABLE blocklist; DROP TABLE dhcp_leases; DROP TABLE dhcp_lease_quarantine; DROP TABLE dns_records; ALTER TABLE endpoints DROP COLUMN egress_rate; ALTER TABLE endpoints DROP COLUMN egress_burst; PRAGMA user_version = 1",
  );
  s.close();
  s = new SqliteStore(path);
  expect((s.db.query("PRAGMA user_version").get() as { user_version: number }).user_version).toBe(SCHEMA_VERSION);
  expect(s.listNetworks().map((n) => n.name)).toEqual(["app"]);
  expect(s.getGlobalDefault()).toBe("allow");
  expect(s.listRules(FW_GLOBAL_SCOPE)).toEqual([]);
  s.close();
});

test("a schema-2 database is migrated: networks written before the DHCP fields get their defaults; leases and records appear", () => {
  const path = tmpDb();
  let s = new SqliteStore(path);
  s.createNetwork(net("app", "10.20.0.0/24", "10.20.0.1"));
  const { dhcpLeaseTime: _l, dhcpRoutes: _r, dhcpOptions: _o, ...old } = s.getNetwork("app") as StoredNetwork;
  s.db.query("UPDATE networks SET spec = ?").run(JSON.stringify(old));
  s.db.exec(
    "DROP TABLE dhcp_leases; DROP TABLE dhcp_lease_quarantine; DROP TABLE dns_records; ALTER TABLE endpoints DROP COLUMN egress_rate; ALTER TABLE endpoints DROP COLUMN egress_burst; PRAGMA user_version = 2",
  );
  s.close();
  s = new SqliteStore(path);
  expect((s.db.query("PRAGMA user_version").get() as { user_version: number }).user_version).toBe(SCHEMA_VERSION);
  expect(s.getNetwork("app")).toMatchObject({ dhcpLeaseTime: 3600, dhcpRoutes: [], dhcpOptions: [] });
  expect(s.loadLeases()).toEqual([]);
  s.putLease({
    network: "app",
    mac: "02:00:01:00:00:05",
    family: 4,
    ip: "10.20.0.6",
    state: "bound",
    expiresAt: 5,
    updatedAt: 1,
  });
  expect(s.addDnsRecord("app", { name: "www", type: "A", value: "10.20.0.9", ttl: 60 }).id).toBeGreaterThan(0);
  s.close();
  s = new SqliteStore(path);
  expect(s.loadLeases()).toHaveLength(1);
  expect(s.listDnsRecords("app").map((r) => r.value)).toEqual(["10.20.0.9"]);
  // Leases and records go with their network.
  s.deleteNetwork("app");
  expect(s.loadLeases()).toEqual([]);
  expect(s.listDnsRecords()).toEqual([]);
  s.close();
});

test("a schema-3 database is migrated: its endpoints have no egress cap until one is set", () => {
  const path = tmpDb();
  let s = new SqliteStore(path);
  s.createNetwork(net("app", "10.20.0.0/24", "10.20.0.1"));
  s.claimEndpoint({
    name: "web",
    network: "app",
    ip: "10.20.0.5",
    mac: "02:00:01:00:00:04",
    hostIndex: 4,
    kind: "tap",
    hostIf: "t-web",
  });
  s.db.exec(
    "ALTER TABLE endpoints DROP COLUMN egress_rate; ALTER TABLE endpoints DROP COLUMN egress_burst; PRAGMA user_version = 3",
  );
  s.close();
  s = new SqliteStore(path);
  expect((s.db.query("PRAGMA user_version").get() as { user_version: number }).user_version).toBe(SCHEMA_VERSION);
  expect(s.getEndpoint("web")?.egress).toBeUndefined();
  expect(s.setEndpointEgress("web", { rate: 100e6, burst: 262_144 }).egress).toEqual({ rate: 100e6, burst: 262_144 });
  s.close();
  s = new SqliteStore(path);
  expect(s.getEndpoint("web")?.egress).toEqual({ rate: 100e6, burst: 262_144 });
  expect(s.setEndpointEgress("web", null).egress).toBeUndefined();
  expect(() => s.setEndpointEgress("nope", null)).toThrow("endpoint nope does not exist");
  s.close();
});

test("a network's egress cap is stored, and a validated network without one clears it", () => {
  const s = new SqliteStore(":memory:");
  const spec = { name: "app", cidr: "10.20.0.0/24", gateway: "10.20.0.1" };
  s.createNetwork(validateNetwork({ ...spec, egress: { rate: 100e6 } }));
  expect(s.getNetwork("app")?.egress).toEqual({ rate: 100e6, burst: 3_750_000 });
  s.updateNetwork("app", validateNetwork({ ...spec, egress: null }));
  expect(s.getNetwork("app")?.egress).toBeUndefined();
  s.close();
});

test("rules: per scope, by priority, unique priorities, stable ids never reused", () => {
  const s = new SqliteStore(":memory:");
  const app = s.createNetwork(net("app", "10.20.0.0/24", "10.20.0.1"));
  const a = s.addRule(app.id, rule(200, "deny", { src: "10.9.0.0/16" }));
  const b = s.addRule(app.id, rule(100, "allow", { proto: "tcp", dport: "443" }));
  const g = s.addRule(FW_GLOBAL_SCOPE, rule(100, "deny"));
  expect(s.listRules(app.id).map((r) => [r.id, r.priority])).toEqual([
    [b.id, 100],
    [a.id, 200],
  ]);
  expect(s.listRules(app.id)[0]).toEqual({ ...rule(100, "allow", { proto: "tcp", dport: "443" }), id: b.id });
  expect(s.listRules(FW_GLOBAL_SCOPE).map((r) => r.id)).toEqual([g.id]);
  expect(() => s.addRule(app.id, rule(200))).toThrow(`priority 200 is taken by rule ${a.id} in network app`);
  expect(() => s.addRule(999, rule(1))).toThrow("no network has id 999");

  // Reserved ids are never handed out again, even when the change that asked was abandoned.
  const [r1, r2] = s.allocRuleIds(2) as [number, number];
  expect(r2).toBe(r1 + 1);
  expect(r1).toBeGreaterThan(g.id);
  const c = s.addRule(app.id, rule(300));
  expect(c.id).toBe(r2 + 1);
  const d = s.addRule(app.id, { ...rule(400), id: r1 });
  expect(d.id).toBe(r1);

  expect(s.moveRule(app.id, a.id, 50)).toMatchObject({ id: a.id, priority: 50, action: "deny", src: "10.9.0.0/16" });
  expect(() => s.moveRule(app.id, a.id, 100)).toThrow(`priority 100 is taken by rule ${b.id}`);
  expect(() => s.moveRule(app.id, 12345, 7)).toThrow("network app has no rule 12345");
  expect(() => s.deleteRule(FW_GLOBAL_SCOPE, a.id)).toThrow(`the global scope has no rule ${a.id}`);
  s.deleteRule(app.id, c.id);
  expect(s.listRules(app.id).map((r) => r.priority)).toEqual([50, 100, 400]);
  expect(s.addRule(app.id, rule(300)).id).toBeGreaterThan(r2 + 1);
});

test("replaceRules swaps a scope's set and default in one transaction; a failure keeps the old", () => {
  const s = new SqliteStore(":memory:");
  const app = s.createNetwork(net("app", "10.20.0.0/24", "10.20.0.1"));
  const keep = s.addRule(app.id, rule(10));
  s.addRule(app.id, rule(20, "deny"));
  const before = s.listRules(app.id);
  expect(() => s.replaceRules(app.id, [rule(1), rule(1, "deny")], "deny")).toThrow("priority 1 is taken");
  expect(s.listRules(app.id)).toEqual(before);
  expect(s.getNetwork("app")?.defaultAction).toBe("allow");

  const out = s.replaceRules(app.id, [{ ...rule(10), id: keep.id }, rule(5, "reject")], "deny");
  expect(out.map((r) => [r.priority, r.action])).toEqual([
    [5, "reject"],
    [10, "allow"],
  ]);
  expect(out[1]?.id).toBe(keep.id);
  expect(s.getNetwork("app")?.defaultAction).toBe("deny");
  expect(s.scopeDefault(app.id)).toBe("deny");

  s.replaceRules(FW_GLOBAL_SCOPE, [rule(7, "deny")], "deny");
  expect(s.getGlobalDefault()).toBe("deny");
  s.setGlobalDefault("allow");
  expect(s.scopeDefault(FW_GLOBAL_SCOPE)).toBe("allow");
});

test("deleting a network deletes its rules, not the others'", () => {
  const s = new SqliteStore(":memory:");
  const a = s.createNetwork(net("a", "10.1.0.0/24", "10.1.0.1"));
  const b = s.createNetwork(net("b", "10.2.0.0/24", "10.2.0.1"));
  s.addRule(a.id, rule(1));
  s.addRule(b.id, rule(1));
  s.addRule(FW_GLOBAL_SCOPE, rule(1));
  s.deleteNetwork("a");
  expect(s.db.query("SELECT scope FROM fw_rules ORDER BY scope").all()).toEqual([{ scope: 0 }, { scope: b.id }]);
});

test("blocklist: many in one transaction, repeats ignored, counted per family, kept across a reopen", () => {
  const path = tmpDb();
  let s = new SqliteStore(path);
  const n = s.blockAdd([
    { prefix: "198.51.100.0/24", family: 4 },
    { prefix: "203.0.113.7/32", family: 4 },
    { prefix: "2001:db8:bad::/48", family: 6 },
    { prefix: "198.51.100.0/24", family: 4 },
  ]);
  expect(n).toBe(3);
  expect(s.blockAdd([{ prefix: "203.0.113.7/32", family: 4 }])).toBe(0);
  expect([s.blockCount(4), s.blockCount(6)]).toEqual([2, 1]);
  expect([...s.blockListed(["203.0.113.7/32", "192.0.2.0/24"])]).toEqual(["203.0.113.7/32"]);
  s.close();
  s = new SqliteStore(path);
  expect(s.blockList().map((e) => e.prefix)).toEqual(["198.51.100.0/24", "203.0.113.7/32", "2001:db8:bad::/48"]);
  expect(s.blockDel("198.51.100.0/24")).toBe(true);
  expect(s.blockDel("198.51.100.0/24")).toBe(false);
  expect(s.blockList()[0]).toMatchObject({ prefix: "203.0.113.7/32", family: 4 });
  expect(s.blockList()[0]?.addedAt).toMatch(/^\d{4}-\d\d-\d\dT/);
  s.close();
});
