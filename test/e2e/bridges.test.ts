/** Extension bridges end to end (docs/networks.md#capacity): a real agent whose bridges take 5
 * ports each (STRATUM_BRIDGE_PORTS), so cnv-user-br0 (2 endpoints, the link, 2 ports kept for
 * the uplink and the overlay) and one extension (4 endpoints) hold the node's 6 endpoints. Checks where each port goes, the link between the bridges (its programs, flags and
 * cnv-user-br0's FDB entries on it), traffic across it, the refusal of a 7th endpoint (exit 8,
 * nothing changed), a restart that changes nothing, an FDB entry removed by hand and put back,
 * uninstall's plan, and an extension without endpoints collected. The IPv4/IPv6 guarantees
 * across the link are test/e2e/hostile.test.ts's and microseg.test.ts's second run
 * (STRATUM_TEST_EXTENSIONS=1). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { TestAgent } from "../helpers/agent";
import { Netns } from "../helpers/netns";

const NET = "brx";
let A: TestAgent;
const ns: Record<string, Netns> = {};
interface Ep {
  ip: string;
  mac: string;
  interface: string;
}
const eps: Record<string, Ep> = {};
const ep = (name: string): Ep => eps[name] as Ep;
const ENV = { STRATUM_BRIDGE_PORTS: "5" };

const master = (dev: string): string | undefined => A.ns.ipJson(["link", "show", dev])[0]?.master;
const links = (): string[] => A.ns.ipJson(["link", "show"]).map((l: { ifname: string }) => l.ifname);
/** The bridge's static FDB entries on `dev` (not the device's own). */
const fdbOn = (dev: string): string[] =>
  JSON.parse(A.ns.execOk(["bridge", "-j", "fdb", "show", "dev", dev]) || "[]")
    .filter((f: { flags?: string[]; state?: string }) => f.state === "static" && !f.flags?.includes("self"))
    .map((f: { mac: string }) => f.mac);
const ping = (from: string, to: string): boolean =>
  (ns[from] as Netns).exec(["ping", "-c", "1", "-W", "1", to]).code === 0;

beforeAll(async () => {
  A = new TestAgent("brx");
  for (const n of ["m1", "x1"]) ns[n] = new Netns(`brx${n}`);
  await A.start([], ENV);
  A.json("network", "create", "--name", NET, "--cidr", "10.86.0.0/24", "--gateway", "10.86.0.1");
  // cnv-user-br0 takes 2 endpoints, then cnv-user-br1 takes 4.
  const attach = (name: string, how: string[]) => {
    eps[name] = A.json("network", "attach", NET, "--name", name, ...how);
  };
  attach("m1", ["--netns", (ns.m1 as Netns).name, "--configure"]);
  attach("m2", ["--tap", "brxtap2"]);
  attach("x1", ["--netns", (ns.x1 as Netns).name, "--configure"]);
  attach("x2", ["--tap", "brxtap4"]);
  attach("x3", ["--tap", "brxtap5"]);
  attach("x4", ["--tap", "brxtap6"]);
}, 60_000);

afterAll(() => {
  for (const n of Object.values(ns)) n.destroy();
  A?.destroy();
});

test("cnv-user-br0 fills first, then the extension; the link's ends are wired and carry their programs", () => {
  expect(Object.fromEntries(Object.entries(eps).map(([n, e]) => [n, master(e.interface)]))).toEqual({
    m1: "cnv-user-br0",
    m2: "cnv-user-br0",
    x1: "cnv-user-br1",
    x2: "cnv-user-br1",
    x3: "cnv-user-br1",
    x4: "cnv-user-br1",
  });
  expect(master("cnv-user-l1a")).toBe("cnv-user-br0");
  expect(master("cnv-user-l1b")).toBe("cnv-user-br1");
  const brport = (dev: string) => A.ns.ipJson(["-d", "link", "show", dev])[0].linkinfo.info_slave_data;
  expect(brport("cnv-user-l1a")).toMatchObject({ learning: false, flood: false });
  expect(brport("cnv-user-l1b")).toMatchObject({ learning: false, flood: true });
  // Both ends: stm_link_in on ingress, stm_link_out on egress.
  for (const end of ["cnv-user-l1a", "cnv-user-l1b"])
    for (const [dir, prog] of [
      ["ingress", "stm_link_in"],
      ["egress", "stm_link_out"],
    ] as const)
      expect(A.ns.execOk(["tc", "filter", "show", "dev", end, dir])).toContain(prog);
  // cnv-user-br0 sends the extension's endpoints' frames down the link, and nothing else.
  expect(fdbOn("cnv-user-l1a").sort()).toEqual(["x1", "x2", "x3", "x4"].map((n) => ep(n).mac.toLowerCase()).sort());
  const st = A.json("status");
  expect(st.ports.map((p: { state: string }) => p.state)).toEqual(Array(6).fill("ok"));
  // status names each port's bridge.
  expect(Object.fromEntries(st.ports.map((p: { endpoint: string; bridge: string }) => [p.endpoint, p.bridge]))).toEqual(
    Object.fromEntries(Object.keys(eps).map((n) => [n, n.startsWith("m") ? "cnv-user-br0" : "cnv-user-br1"])),
  );
}, 30_000);

test("traffic crosses the link: an extension's endpoint reaches cnv-user-br0's, the gateway and back", () => {
  expect(ping("x1", ep("m1").ip)).toBe(true);
  expect(ping("m1", ep("x1").ip)).toBe(true);
  expect(ping("x1", "10.86.0.1")).toBe(true);
  // The neighbour entries are the profiles' MACs: the frames crossed whole.
  expect((ns.x1 as Netns).execOk(["ip", "neigh", "show", ep("m1").ip])).toContain(ep("m1").mac.toLowerCase());
}, 30_000);

test("an extension only switches: its own stack takes nothing, it and the links speak no IPv6", () => {
  expect(A.ns.execOk(["tc", "filter", "show", "dev", "cnv-user-br1", "ingress"])).toContain("stm_extbr_in");
  for (const dev of ["cnv-user-br1", "cnv-user-l1a", "cnv-user-l1b"]) {
    expect(A.ns.execOk(["cat", `/proc/sys/net/ipv6/conf/${dev}/disable_ipv6`]).trim()).toBe("1");
    expect(A.ns.ipJson(["-6", "addr", "show", "dev", dev])[0]?.addr_info ?? []).toEqual([]);
  }
  // The workloads' gateway is cnv-user-br0's MAC, whichever bridge they are on.
  const gw = A.ns.ipJson(["link", "show", "cnv-user-br0"])[0].address;
  expect(ping("x1", "10.86.0.1")).toBe(true);
  expect((ns.x1 as Netns).execOk(["ip", "neigh", "show", "10.86.0.1"])).toContain(gw);
}, 30_000);

test("fail closed: a link end without stm_link_in drops what crosses it (link-unmarked); the reconcile puts it back", () => {
  // Sealed: nothing touched the ports since a whole run, so a reconcile is quick...
  A.json("reconcile");
  expect(A.json("reconcile").pass).toBe("quick");
  A.ns.execOk(["tc", "filter", "del", "dev", "cnv-user-l1b", "ingress"]);
  const before = A.json("endpoint", "show", "x1").drops["link-unmarked"] ?? 0;
  expect(ping("m1", ep("x1").ip)).toBe(false);
  expect(A.json("endpoint", "show", "x1").drops["link-unmarked"] ?? 0).toBeGreaterThan(before);
  // ...until the link end's filter goes: its notice makes the next one whole.
  const run = A.json("reconcile");
  expect(run.pass).toBe("whole");
  expect(run.wholeBecause).toContain("a notice about a filter on cnv-user-l1b");
  const changes = run.changes as string[];
  expect(changes.length).toBeGreaterThan(0);
  expect(A.ns.execOk(["tc", "filter", "show", "dev", "cnv-user-l1b", "ingress"])).toContain("stm_link_in");
  expect(ping("m1", ep("x1").ip)).toBe(true);
}, 30_000);

test("a 7th endpoint is refused up front (exit 8) and nothing changes", () => {
  const before = { links: links().sort(), eps: A.json("endpoint", "list") };
  const r = A.ctl("network", "attach", NET, "--name", "x9", "--tap", "brxtap9");
  expect(r.code).toBe(8);
  expect(r.stderr).toContain(
    "this node holds at most 6 endpoints (cnv-user-br0 and 1 extension bridges of 5 ports each, less the links between them and 2 ports kept for the uplink and the overlay); 6 are attached: nothing was changed",
  );
  expect({ links: links().sort(), eps: A.json("endpoint", "list") }).toEqual(before);
}, 30_000);

test("a restart changes nothing; cnv-user-br0's entry removed by hand comes back at the next reconcile", async () => {
  await A.kill("SIGTERM");
  await A.start([], ENV);
  expect(A.json("reconcile").changes).toEqual([]);
  A.ns.execOk(["bridge", "fdb", "del", ep("x1").mac, "dev", "cnv-user-l1a", "master"]);
  expect(fdbOn("cnv-user-l1a")).not.toContain(ep("x1").mac.toLowerCase());
  const changes = A.json("reconcile").changes as string[];
  expect(changes.join("\n")).toContain(ep("x1").mac.toLowerCase());
  expect(fdbOn("cnv-user-l1a")).toContain(ep("x1").mac.toLowerCase());
  expect(ping("m1", ep("x1").ip)).toBe(true);
}, 60_000);

test("uninstall's plan names the extension and its link", async () => {
  await A.kill("SIGTERM");
  const r = A.local(["uninstall", "--dry-run", "-o", "json"], { api: true });
  expect(r.code).toBe(0);
  const whats: string[] = JSON.parse(r.stdout).steps.map((s: { what: string }) => s.what);
  expect(whats).toContain("bridge cnv-user-br1");
  expect(whats).toContain("link cnv-user-l1a between user bridges");
  expect(whats.filter((w) => w.startsWith("uplink"))).toEqual([]);
  expect(master("cnv-user-l1a")).toBe("cnv-user-br0"); // a dry run
  await A.start([], ENV);
}, 30_000);

test("an extension left without endpoints is collected with its link and cnv-user-br0's entries", () => {
  for (const n of ["x1", "x2", "x3", "x4"]) A.json("network", "detach", NET, "--name", n);
  expect(fdbOn("cnv-user-l1a")).toEqual([]);
  const r = A.json("reconcile");
  expect(r.collected).toContain("extension bridge cnv-user-br1 (no endpoint left on it)");
  expect(links().filter((l) => l.startsWith("cnv-user-"))).toEqual(["cnv-user-br0"]);
  expect(A.json("reconcile").changes).toEqual([]);
  // The next endpoint past cnv-user-br0's two makes it again.
  A.json("network", "attach", NET, "--name", "x5", "--tap", "brxtap8");
  expect(master(A.json("endpoint", "show", "x5").interface)).toBe("cnv-user-br1");
  expect(A.json("status").ports.every((p: { state: string }) => p.state === "ok")).toBe(true);
}, 30_000);
