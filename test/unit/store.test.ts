/** The SQLite store: migrations, one transaction per change, conflicts refused with a
 * one-line error and nothing written, state surviving a reopen. */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { profileMac, validateNetwork } from "../../src/model/network";
import { SCHEMA_VERSION, SqliteStore } from "../../src/store/sqlite";

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
