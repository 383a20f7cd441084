/** The SQLite store: migrations, one transaction per change, conflicts refused with a
 * one-line error and nothing written, state surviving a reopen (and a kill mid-write), and
 * rows that fail validation at open quarantined, not fatal. */
import { Database } from "bun:sqlite";
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FW_GLOBAL_SCOPE } from "../../src/datapath/firewall-maps";
import { packPrefixes } from "../../src/model/blocklist";
import { parseRule } from "../../src/model/firewall-rule";
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

/** The blocklist as schema versions before its two tables held it (one text table). */
const LEGACY_BLOCKLIST = `DROP TABLE blocklist4; DROP TABLE blocklist6;
  CREATE TABLE blocklist (prefix TEXT PRIMARY KEY, family INTEGER NOT NULL, added_at TEXT NOT NULL);`;

const rule = (priority: number, action: "allow" | "deny" | "reject" = "allow", extra: Record<string, unknown> = {}) =>
  parseRule({ priority, action, ...extra });

test("a schema-1 database is migrated: its networks stay, the firewall tables appear", () => {
  const path = tmpDb();
  let s = new SqliteStore(path);
  s.createNetwork(net("app", "10.20.0.0/24", "10.20.0.1"));
  s.db.exec(
    "DROP TABLE quarantine; DROP TABLE fw_rules; DROP TABLE fw_global; DROP TABLE blocklist4; DROP TABLE blocklist6; DROP TABLE dhcp_leases; DROP TABLE dhcp_lease_quarantine; DROP TABLE dns_records; ALTER TABLE endpoints DROP COLUMN egress_rate; ALTER TABLE endpoints DROP COLUMN egress_burst; PRAGMA user_version = 1",
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
    `DROP TABLE quarantine; DROP TABLE dhcp_leases; DROP TABLE dhcp_lease_quarantine; DROP TABLE dns_records; ALTER TABLE endpoints DROP COLUMN egress_rate; ALTER TABLE endpoints DROP COLUMN egress_burst; ${LEGACY_BLOCKLIST} PRAGMA user_version = 2`,
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
    `DROP TABLE quarantine; ALTER TABLE endpoints DROP COLUMN egress_rate; ALTER TABLE endpoints DROP COLUMN egress_burst; ${LEGACY_BLOCKLIST} PRAGMA user_version = 3`,
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
  const n = s.blockAdd(packPrefixes(["198.51.100.0/24", "203.0.113.7/32", "2001:db8:bad::/48", "198.51.100.0/24"]));
  expect(n).toBe(3);
  expect(s.blockAdd(packPrefixes(["203.0.113.7/32"]))).toBe(0);
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

test("a database from before the blocklist's two tables is migrated: rows kept in numeric order with their time, bad ones quarantined", () => {
  const path = tmpDb();
  let s = new SqliteStore(path);
  s.db.exec(
    `${LEGACY_BLOCKLIST}
     INSERT INTO blocklist VALUES ('9.0.0.0/8', 4, '2024-01-01T00:00:00.000Z'), ('10.0.0.0/8', 4, '2024-01-01T00:00:00.000Z'),
       ('2001:db8::/32', 6, '2024-01-01T00:00:00.000Z'), ('100.0.0.0/8', 4, '2024-01-01T00:00:00.000Z'),
       ('10.0.0.1/8', 4, 'x'), ('2001:DB8:1::/48', 6, 'x'), ('192.0.2.0/24', 6, 'x');
     ALTER TABLE endpoints DROP COLUMN queues;
     ALTER TABLE endpoints DROP COLUMN macvtap_mode;
     PRAGMA user_version = ${SCHEMA_VERSION - 4}`, // before the blocklist's migration (then the host_if index, the taps' queues, the macvtaps' modes)
  );
  s.close();
  s = new SqliteStore(path);
  expect((s.db.query("PRAGMA user_version").get() as { user_version: number }).user_version).toBe(SCHEMA_VERSION);
  expect(s.db.query("SELECT name FROM sqlite_master WHERE name LIKE 'blocklist%' ORDER BY name").all()).toEqual([
    { name: "blocklist4" },
    { name: "blocklist6" },
  ]);
  expect(s.blockList().map((e) => e.prefix)).toEqual(["9.0.0.0/8", "10.0.0.0/8", "100.0.0.0/8", "2001:db8::/32"]);
  expect(s.blockPage({ limit: 2 }).map((e) => e.prefix)).toEqual(["9.0.0.0/8", "10.0.0.0/8"]);
  expect(s.blockList()[0]?.addedAt).toBe("2024-01-01T00:00:00.000Z");
  expect(s.quarantinedAtOpen().map((q) => [q.table, q.what, q.reason])).toEqual([
    ["blocklist", "blocklist prefix 10.0.0.1/8", expect.stringContaining("has host bits set")],
    ["blocklist", "blocklist prefix 2001:DB8:1::/48", "not written canonically (2001:db8:1::/48)"],
    ["blocklist", "blocklist prefix 192.0.2.0/24", "family 6, but the prefix is IPv4"],
  ]);
  expect(s.quarantinedRows()).toBe(3);
  s.close();
  // Converted once: the next open finds nothing to do.
  s = new SqliteStore(path);
  expect([s.quarantinedAtOpen(), s.blockCount(4), s.blockCount(6)]).toEqual([[], 3, 1]);
  s.close();
});

test("the blocklist's tables refuse, whoever writes, a row the datapath could not hold", () => {
  const s = new SqliteStore(":memory:");
  const bad = [
    "INSERT INTO blocklist4 (addr, len, added_at) VALUES (167772161, 8, 0)", // host bits (10.0.0.1/8)
    "INSERT INTO blocklist4 (addr, len, added_at) VALUES (0, 0, 0)", // /0
    "INSERT INTO blocklist4 (addr, len, added_at) VALUES (4294967296, 32, 0)", // past 32 bits
    "INSERT INTO blocklist4 (addr, len, added_at) VALUES ('10.0.0.0', 8, 0)", // text
    "INSERT INTO blocklist4 (addr, len, added_at) VALUES (167772160, 33, 0)",
    "INSERT INTO blocklist6 (w0, w1, w2, w3, len, added_at) VALUES (536939960, 1, 0, 0, 32, 0)", // 2001:db8:0:1::/32
    "INSERT INTO blocklist6 (w0, w1, w2, w3, len, added_at) VALUES (0, 0, 65535, 3221225984, 120, 0)", // IPv4-mapped
    "INSERT INTO blocklist6 (w0, w1, w2, w3, len, added_at) VALUES (0, 0, 0, 1, 129, 0)",
    "INSERT INTO blocklist6 (w0, w1, w2, w3, len, added_at) VALUES (0, 0, 0, 1, 127, 0)", // ::1/127
  ];
  for (const sql of bad) expect(() => s.db.query(sql).run()).toThrow("constraint failed");
  // The same shapes, written right, go in.
  s.db.query("INSERT INTO blocklist4 (addr, len, added_at) VALUES (167772160, 8, 0)").run();
  s.db.query("INSERT INTO blocklist6 (w0, w1, w2, w3, len, added_at) VALUES (536939960, 1, 0, 0, 64, 0)").run();
  s.db.query("INSERT INTO blocklist6 (w0, w1, w2, w3, len, added_at) VALUES (0, 0, 0, 1, 128, 0)").run();
  expect(s.blockList().map((e) => e.prefix)).toEqual(["10.0.0.0/8", "::1/128", "2001:db8:0:1::/64"]);
  s.close();
});

test("a schema-4 database is migrated: the quarantine table appears, empty", () => {
  const path = tmpDb();
  let s = new SqliteStore(path);
  s.createNetwork(net("app", "10.20.0.0/24", "10.20.0.1"));
  s.db.exec(`DROP TABLE quarantine; ${LEGACY_BLOCKLIST} PRAGMA user_version = 4`);
  s.close();
  s = new SqliteStore(path);
  expect((s.db.query("PRAGMA user_version").get() as { user_version: number }).user_version).toBe(SCHEMA_VERSION);
  expect(s.listNetworks().map((n) => n.name)).toEqual(["app"]);
  expect([s.quarantinedRows(), s.quarantinedAtOpen()]).toEqual([0, []]);
  s.close();
});

// ---- quarantine at open ---------------------------------------------------------------------

test("rows that fail validation are quarantined at open, with a reason, dependents with their network; a scope that lost a rule denies by default; the rest is untouched", () => {
  const path = tmpDb();
  let s = new SqliteStore(path);
  const a = s.createNetwork(net("a", "10.1.0.0/24", "10.1.0.1"));
  ep(s, "web", "a", 1, "10.1.0.2");
  s.addRule(a.id, rule(10, "allow", { proto: "tcp", dport: "443" }));
  s.addRule(FW_GLOBAL_SCOPE, rule(5, "deny"));
  s.addDnsRecord("a", { name: "www", type: "A", value: "10.1.0.9", ttl: 60 });
  s.blockAdd(packPrefixes(["198.51.100.0/24"]));
  s.putLease({
    network: "a",
    mac: "02:00:01:00:00:01",
    family: 4,
    ip: "10.1.0.2",
    state: "bound",
    expiresAt: 9,
    updatedAt: 1,
  });
  const contents = (st: SqliteStore) => ({
    network: st.getNetwork("a"),
    endpoints: st.listEndpoints(),
    rules: [st.listRules(a.id), st.listRules(FW_GLOBAL_SCOPE)],
    records: st.listDnsRecords(),
    blocklist: st.blockList(),
    leases: st.loadLeases(),
  });
  const before = contents(s);
  const good = JSON.parse((s.db.query("SELECT spec FROM networks WHERE id = ?").get(a.id) as { spec: string }).spec);
  s.close();

  // Damage it the way a hand edit or an older binary could: bun:sqlite without the store
  // (foreign keys off, as in the sqlite3 shell), check constraints ignored.
  const raw = new Database(path, { strict: true });
  const addNet = (id: number, name: string, spec: string) =>
    raw.query("INSERT INTO networks (id, name, spec, created_at) VALUES (?, ?, ?, 'x')").run(id, name, spec);
  addNet(2, "badjson", "{not json");
  addNet(3, "badcidr", JSON.stringify({ ...good, name: "badcidr", cidr: "10.300.0.0/24" }));
  addNet(4, "overlap", JSON.stringify({ ...good, name: "overlap", cidr: "10.1.0.128/25", gateway: "10.1.0.129" }));
  const addEp = (name: string, netId: number, index: number, ip: string) =>
    raw
      .query(
        "INSERT INTO endpoints (name, network_id, host_index, ip, mac, kind, host_if, netns, ifname, created_at) VALUES (?, ?, ?, ?, ?, 'veth', ?, ?, 'eth0', 'x')",
      )
      .run(name, netId, index, ip, profileMac(netId, index), `stm${name}`, name);
  addEp("orphan", 99, 2, "10.1.0.4");
  addEp("dep", 4, 1, "10.1.0.130");
  addEp("stray", 1, 5, "10.2.0.7");
  const addRule = (scope: number, priority: number, spec: object) =>
    raw
      .query("INSERT INTO fw_rules (scope, priority, spec) VALUES (?, ?, ?)")
      .run(scope, priority, JSON.stringify(spec));
  addRule(a.id, 20, {
    priority: 20,
    direction: "both",
    proto: "tcp",
    dport: [70000, 70000],
    action: "allow",
    log: false,
  });
  addRule(3, 1, { priority: 1, direction: "both", proto: "any", action: "deny", log: false });
  raw
    .query(
      "INSERT INTO dns_records (network_id, name, type, value, ttl, created_at) VALUES (1, 'api', 'A', 'not-an-ip', 60, 'x')",
    )
    .run();
  raw
    .query(
      "INSERT INTO dhcp_leases (network_id, mac, family, ip, state, expires_at, updated_at) VALUES (2, '02:00:02:00:00:01', 4, '10.9.0.2', 'bound', 9, 1)",
    )
    .run();
  // The blocklist's own tables refuse a bad row outright (their CHECKs): nothing to quarantine.
  expect(() => raw.query("INSERT INTO blocklist4 (addr, len, added_at) VALUES (167772161, 8, 0)").run()).toThrow(
    "constraint failed",
  );
  raw.exec("PRAGMA ignore_check_constraints = ON; UPDATE fw_global SET default_action = 'DENY'");
  raw.close();

  s = new SqliteStore(path);
  // Network a lost a rule: it now denies by default (fail closed); the rest is as it was.
  expect(contents(s)).toEqual({ ...before, network: { ...(before.network as StoredNetwork), defaultAction: "deny" } });
  expect(s.listNetworks().map((n) => n.name)).toEqual(["a"]);
  const found = s.quarantinedAtOpen();
  expect(found.map((q) => [q.table, q.what, q.reason])).toEqual([
    ["networks", "network badjson", expect.stringMatching(/^spec is not JSON \(.+\)$/)],
    ["networks", "network badcidr", '"10.300.0.0" is not an IPv4 or IPv6 address'],
    ["networks", "network overlap", "10.1.0.128/25 overlaps network a (10.1.0.0/24)"],
    ["endpoints", "endpoint orphan", "its network (id 99) does not exist"],
    ["endpoints", "endpoint dep", "its network overlap is quarantined"],
    ["endpoints", "endpoint stray", "10.2.0.7 is not a usable address of 10.1.0.0/24"],
    [
      "fw_rules",
      expect.stringMatching(/^rule \d+ of network a$/),
      '--dport "70000" is out of range (0-65535); its network now denies by default (fail closed) until its rules are reviewed',
    ],
    ["fw_rules", expect.stringMatching(/^rule \d+ of network badcidr$/), "its network badcidr is quarantined"],
    [
      "fw_global",
      "the global default action",
      "DENY is neither allow nor deny; the global default is now deny (fail closed) until it is set again",
    ],
    ["dns_records", "DNS record 2 of network a", 'A record value "not-an-ip" is not an IPv4 address'],
    ["dhcp_leases", "DHCP lease of 02:00:02:00:00:01 in network badjson", "its network badjson is quarantined"],
  ]);

  // Each kept whole, with where it came from and why.
  const kept = s.db.query("SELECT table_name, row, reason FROM quarantine ORDER BY id").all() as Array<{
    table_name: string;
    row: string;
    reason: string;
  }>;
  expect(kept).toHaveLength(found.length);
  const network = (name: string) =>
    kept.find((k) => k.table_name === "networks" && JSON.parse(k.row).name === name) as (typeof kept)[number];
  expect(JSON.parse(network("badjson").row)).toEqual({ id: 2, name: "badjson", spec: "{not json", created_at: "x" });
  expect(network("overlap").reason).toBe("network overlap: 10.1.0.128/25 overlaps network a (10.1.0.0/24)");
  // Dependents went first (the endpoints' foreign key), so the network's row is the last one kept.
  expect(kept.at(-1)?.table_name).toBe("networks");
  expect(JSON.parse((kept.find((k) => k.table_name === "endpoints") as (typeof kept)[number]).row)).toMatchObject({
    name: expect.any(String),
    network_id: expect.any(Number),
  });
  expect([s.quarantinedRows(), s.stats().quarantined, s.stats().leasesQuarantined]).toEqual([found.length, 11, 0]);
  expect(s.db.query("PRAGMA foreign_key_check").all()).toEqual([]);

  // The global default that could not be read is deny now; setting it works as ever.
  expect(s.getGlobalDefault()).toBe("deny");
  s.setGlobalDefault("allow");
  expect(s.getGlobalDefault()).toBe("allow");
  s.setGlobalDefault("deny");
  s.close();

  // A second open finds nothing more and keeps what is kept.
  s = new SqliteStore(path);
  expect(s.quarantinedAtOpen()).toEqual([]);
  expect(s.quarantinedRows()).toBe(11);
  expect(s.getGlobalDefault()).toBe("deny");
  expect(s.listEndpoints().map((e) => e.name)).toEqual(["web"]);
  s.close();
});

test("a valid store opens with nothing quarantined, and nothing written", () => {
  const path = tmpDb();
  let s = new SqliteStore(path);
  const app = s.createNetwork(
    validateNetwork({
      name: "app",
      cidr: "10.20.0.0/24",
      gateway: "10.20.0.1",
      cidr6: "fd00:20::/64",
      gateway6: "fd00:20::1",
      dhcpRange: "10.20.0.100-10.20.0.200",
      dhcpRoutes: ["192.168.50.0/24 via 10.20.0.254"],
      dhcpOptions: ["42=ips:10.20.0.1,10.20.0.2", "43=hex:01:02:AB"],
      egress: { rate: 100e6 },
    }),
  );
  s.createNetwork(net("db", "10.30.0.0/24", "10.30.0.1"));
  ep(s, "web", "app", 1, "10.20.0.2");
  s.setEndpointEgress("web", { rate: 10e6, burst: 262_144 });
  s.claimEndpoint({
    name: "vm",
    network: "db",
    ip: "10.30.0.6",
    mac: profileMac(2, 5),
    hostIndex: 5,
    kind: "tap",
    hostIf: "tap-vm",
  });
  s.addRule(app.id, rule(10, "allow", { proto: "tcp", src: "::ffff:10.9.0.0/112", dport: "80-90", log: true }));
  s.addRule(FW_GLOBAL_SCOPE, rule(1, "reject", { proto: "icmp", "icmp-type": "8/0" }));
  s.blockAdd(packPrefixes(["203.0.113.7/32", "2001:db8:bad::/48"]));
  s.addDnsRecord("app", { name: "www", type: "CNAME", value: "web.app.internal", ttl: 60 });
  s.addDnsRecord("app", { name: "_http._tcp", type: "SRV", value: "10 5 8080 web.app.internal", ttl: 60 });
  s.addDnsRecord("app", { name: "@", type: "MX", value: "10 mail.example.com", ttl: 300 });
  s.addDnsRecord("app", { name: "@", type: "TXT", value: "v=spf1 -all", ttl: 300 });
  // An endpoint attached after a record of its name: a state the service allows.
  s.addDnsRecord("db", { name: "vm", type: "A", value: "10.30.0.50", ttl: 60 });
  s.close();
  s = new SqliteStore(path);
  expect(s.quarantinedAtOpen()).toEqual([]);
  expect(s.quarantinedRows()).toBe(0);
  expect(s.listEndpoints().map((e) => e.name)).toEqual(["vm", "web"]);
  expect(s.listDnsRecords()).toHaveLength(5);
  s.close();
});

// ---- one transaction per change -------------------------------------------------------------

test("a change whose later statement fails leaves nothing of its earlier ones", () => {
  const s = new SqliteStore(":memory:");
  const a = s.createNetwork(net("a", "10.1.0.0/24", "10.1.0.1"));
  s.addRule(a.id, rule(1));
  // deleteNetwork deletes the network's rules, then the network: make the second fail.
  s.db.exec("CREATE TRIGGER fail BEFORE DELETE ON networks BEGIN SELECT RAISE(ABORT, 'injected failure'); END;");
  expect(() => s.deleteNetwork("a")).toThrow("injected failure");
  expect(s.listRules(a.id).map((r) => r.priority)).toEqual([1]);
  s.db.exec("DROP TRIGGER fail");

  // A network refused after its insert (ids exhausted) does not stay behind.
  s.db.query("UPDATE sqlite_sequence SET seq = 65535 WHERE name = 'networks'").run();
  expect(() => s.createNetwork(net("z", "10.9.0.0/24", "10.9.0.1"))).toThrow("network ids are exhausted");
  expect(s.listNetworks().map((n) => n.name)).toEqual(["a"]);
  s.close();
});

test("a process killed in the middle of a change leaves the last committed state", () => {
  const path = tmpDb();
  let s = new SqliteStore(path);
  const a = s.createNetwork(net("a", "10.1.0.0/24", "10.1.0.1"));
  s.addRule(a.id, rule(10));
  s.addRule(a.id, rule(20, "deny"));
  const before = s.listRules(a.id);
  s.close();

  // The child commits one change, then dies by SIGKILL inside replaceRules, after its DELETE
  // and two of its four inserts.
  const script = join(path, "..", "..", "kill.ts");
  writeFileSync(
    script,
    `import { parseRule } from ${JSON.stringify(join(import.meta.dir, "../../src/model/firewall-rule"))};
import { SqliteStore } from ${JSON.stringify(join(import.meta.dir, "../../src/store/sqlite"))};
import { packPrefixes } from ${JSON.stringify(join(import.meta.dir, "../../src/model/blocklist"))};
const s = new SqliteStore(process.argv[2]);
s.blockAdd(packPrefixes(["192.0.2.0/24"]));
const rules = [1, 2, 3, 4].map((p) => parseRule({ priority: p, action: "deny" }));
const stringify = JSON.stringify;
let n = 0;
JSON.stringify = ((...a: Parameters<typeof stringify>) => {
  if (++n === 3) {
    process.kill(process.pid, "SIGKILL");
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10_000);
  }
  return stringify(...a);
}) as typeof stringify;
s.replaceRules(${a.id}, rules, "deny");
console.log("not killed");
`,
  );
  const r = Bun.spawnSync([process.execPath, script, path], { stderr: "pipe", stdout: "pipe" });
  expect(r.stdout.toString()).toBe("");
  expect(r.signalCode).toBe("SIGKILL");

  s = new SqliteStore(path);
  expect(s.blockList().map((e) => e.prefix)).toEqual(["192.0.2.0/24"]);
  expect(s.listRules(a.id)).toEqual(before);
  expect(s.scopeDefault(a.id)).toBe("allow");
  expect(s.quarantinedAtOpen()).toEqual([]);
  s.close();
});

test("the rule-set cache: every write path reads back what a fresh connection reads", () => {
  const path = tmpDb();
  const s = new SqliteStore(path);
  const a = s.createNetwork(net("a", "10.1.0.0/24", "10.1.0.1"));
  const b = s.createNetwork(net("b", "10.2.0.0/24", "10.2.0.1"));
  const fresh = (scope: number) => {
    const r = new SqliteStore(path, { readonly: true });
    try {
      return r.listRules(scope);
    } finally {
      r.db.close();
    }
  };
  const same = () => {
    for (const scope of [FW_GLOBAL_SCOPE, a.id, b.id]) expect(s.listRules(scope)).toEqual(fresh(scope));
  };
  const rule = (priority: number, dport: number) =>
    parseRule({ priority, proto: "tcp", dport, action: "allow", direction: "egress" });
  s.replaceRules(a.id, [rule(10, 80), rule(20, 443)]);
  s.listRules(b.id);
  same();
  const [id] = s.allocRuleIds(1) as [number];
  s.addRule(a.id, { ...rule(15, 22), id });
  same();
  s.moveRule(a.id, id, 30);
  same();
  s.deleteRule(a.id, id);
  s.addRule(b.id, rule(5, 53));
  same();
  // A write by another path (here, plain SQL on the same connection) is seen too.
  s.db.query("DELETE FROM fw_rules WHERE scope = ?").run(a.id);
  same();
  expect(s.listRules(a.id)).toEqual([]);
  // A write inside a transaction that is rolled back is not remembered, nor a read inside it.
  expect(() =>
    s.db.transaction(() => {
      s.addRule(b.id, rule(6, 54));
      expect(s.listRules(b.id)).toHaveLength(2);
      throw new Error("roll back");
    })(),
  ).toThrow("roll back");
  same();
  expect(s.listRules(b.id)).toHaveLength(1);
  // What a caller gets is its own array of frozen rules.
  const got = s.listRules(b.id);
  got.pop();
  expect(s.listRules(b.id)).toHaveLength(1);
  expect(() => {
    (s.listRules(b.id)[0] as { priority: number }).priority = 1;
  }).toThrow();
  s.db.close();
});

test("a tap's queues are stored (more than one), and a database from before them is migrated", () => {
  const path = tmpDb();
  let s = new SqliteStore(path);
  const n = s.createNetwork(net("vms", "10.5.0.0/24", "10.5.0.1"));
  const tap = (name: string, hostIndex: number, queues?: number) =>
    s.claimEndpoint({
      name,
      network: "vms",
      ip: `10.5.0.${hostIndex + 1}`,
      hostIndex,
      mac: profileMac(n.id, hostIndex),
      kind: "tap",
      hostIf: `t${name}`,
      ...(queues !== undefined ? { queues } : {}),
    });
  expect(tap("mq", 1, 4).queues).toBe(4);
  expect(tap("one", 2).queues).toBeUndefined();
  expect(tap("one1", 3, 1).queues).toBeUndefined(); // a tap of one queue is a plain tap
  s.close();
  s = new SqliteStore(path);
  expect(s.getEndpoint("mq")?.queues).toBe(4);
  // The same database before the column: migrated, its taps of one queue.
  s.db.exec(
    `ALTER TABLE endpoints DROP COLUMN queues; ALTER TABLE endpoints DROP COLUMN macvtap_mode; PRAGMA user_version = ${SCHEMA_VERSION - 2}`,
  );
  s.close();
  s = new SqliteStore(path);
  expect((s.db.query("PRAGMA user_version").get() as { user_version: number }).user_version).toBe(SCHEMA_VERSION);
  expect(s.getEndpoint("mq")?.queues).toBeUndefined();
  expect(s.listEndpoints("vms").map((e) => e.name)).toEqual(["mq", "one", "one1"]);
  s.close();
});

test("a macvtap's mode is stored; a database from before the column is migrated; a bad mode is quarantined", () => {
  const path = tmpDb();
  let s = new SqliteStore(path);
  const n = s.createNetwork(net("vms", "10.6.0.0/24", "10.6.0.1"));
  const vm = (name: string, hostIndex: number, macvtapMode?: "bridge" | "passthru") =>
    s.claimEndpoint({
      name,
      network: "vms",
      ip: `10.6.0.${hostIndex + 1}`,
      hostIndex,
      mac: profileMac(n.id, hostIndex),
      kind: macvtapMode ? "macvtap" : "tap",
      hostIf: `m${name}`,
      ...(macvtapMode ? { macvtapMode } : {}),
    });
  expect(vm("pt", 1, "passthru")).toMatchObject({ kind: "macvtap", macvtapMode: "passthru" });
  expect(vm("br", 2, "bridge").macvtapMode).toBe("bridge");
  expect(vm("tp", 3).macvtapMode).toBeUndefined();
  s.close();
  s = new SqliteStore(path);
  expect(s.getEndpoint("pt")?.macvtapMode).toBe("passthru");
  // A row whose mode is none of the four (written behind the store's back) is set aside.
  s.db.exec("UPDATE endpoints SET macvtap_mode = 'hub' WHERE name = 'br'");
  s.close();
  s = new SqliteStore(path);
  expect(s.getEndpoint("br")).toBeNull();
  expect(s.quarantinedAtOpen().some((q) => q.reason.includes("a macvtap endpoint with mode"))).toBe(true);
  // The database before the column (no macvtap yet): migrated.
  s.db.exec("DELETE FROM endpoints WHERE kind = 'macvtap'");
  s.db.exec(`ALTER TABLE endpoints DROP COLUMN macvtap_mode; PRAGMA user_version = ${SCHEMA_VERSION - 1}`);
  s.close();
  s = new SqliteStore(path);
  expect((s.db.query("PRAGMA user_version").get() as { user_version: number }).user_version).toBe(SCHEMA_VERSION);
  expect(s.listEndpoints("vms").map((e) => e.name)).toEqual(["tp"]);
  s.close();
});
