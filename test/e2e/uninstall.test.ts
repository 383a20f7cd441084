/** `uninstall` end to end: a node with an uplink, two networks (one capped, one with rules),
 * a container and VM endpoints (a tap, macvtaps), a blocklist and a pinned counter. Refused while the agent
 * runs; --dry-run changes nothing; uninstall leaves the namespace with its loopback and the
 * operator's NIC (out of the bridge, without programs), no address of Stratum's and no pin
 * root, but the store; an agent started again restores everything from it; --purge then
 * removes the store too. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { TestAgent } from "../helpers/agent";
import { BINARY, Netns } from "../helpers/netns";

let A: TestAgent;
let c1: Netns;
let out: Netns;

const uninstall = (...extra: string[]) => A.local(["uninstall", ...extra], { api: true });
const links = () => A.ns.ipJson(["-d", "link", "show"]) as any[];
const linkNames = () =>
  links()
    .map((l) => l.ifname as string)
    .sort();
const startAgent = () => A.start(["--uplink", "upl0"]);

beforeAll(async () => {
  A = new TestAgent("uni");
  c1 = new Netns("unic1");
  out = new Netns("uniout");
  A.ns.execOk(["ip", "link", "add", "upl0", "type", "veth", "peer", "name", "ext0", "netns", out.name]);
  A.ns.execOk(["ip", "link", "set", "upl0", "up"]);
  await startAgent();
  A.json(
    "network",
    "create",
    "--name",
    "u1",
    "--cidr",
    "10.72.1.0/24",
    "--gateway",
    "10.72.1.1",
    "--egress-rate",
    "100mbit",
  );
  A.json("network", "create", "--name", "u2", "--cidr", "10.72.2.0/24", "--gateway", "10.72.2.1");
  A.json("network", "attach", "u1", "--name", "web", "--netns", c1.name, "--configure");
  A.json("network", "attach", "u2", "--name", "vm", "--tap", "unitap0");
  // VMs on macvtaps: the shared lower link, and a passthru VM's own.
  A.json("network", "attach", "u2", "--name", "vm-mb", "--macvtap", "bridge");
  A.json("network", "attach", "u2", "--name", "vm-mp", "--macvtap", "passthru");
  A.json("firewall", "rule", "add", "u2", "--priority", "10", "--proto", "tcp", "--dport", "22", "--action", "allow");
  A.json("firewall", "blocklist", "add", "192.0.2.0/24");
  const counter = A.ns.enter([BINARY, "datapath", "counter", "attach", "--dev", "upl0", "--pin-root", A.pins.path]);
  expect(counter.code).toBe(0);
}, 60_000);

afterAll(() => {
  A?.destroy();
  c1?.destroy();
  out?.destroy();
});

test("refused while the agent runs, nothing changed", () => {
  const before = linkNames();
  const r = uninstall();
  expect(r.code).toBe(2);
  expect(r.stderr).toContain(`an agent is running on pin root ${A.pins.path}: stop it first`);
  expect(linkNames()).toEqual(before);
  expect(A.json("endpoint", "list")).toHaveLength(4);
});

test("--dry-run lists every piece and changes nothing", async () => {
  await A.kill("SIGTERM");
  const before = linkNames();
  const r = uninstall("--dry-run", "-o", "json");
  expect(r.code).toBe(0);
  const plan = JSON.parse(r.stdout);
  expect(plan.dryRun).toBe(true);
  const whats: string[] = plan.steps.map((s: any) => s.what);
  const web = whats.find((w) => w.includes("(endpoint web)"));
  expect(web).toBeDefined();
  expect(whats).toContain("interface unitap0 (endpoint vm)");
  expect(whats).toContain("uplink upl0 from cnv-user-br0 (the NIC itself stays)");
  expect(whats.some((w) => w.includes("links/uplink-xdp"))).toBe(true);
  expect(whats).toEqual(
    expect.arrayContaining(["bridge cnv-user-br0", "bridge cnv-mgmt-br0", "macvtap lower link cnv-user-mvla"]),
  );
  // The shared lower link's bridge end is Stratum's, not an uplink to take off the bridge.
  expect(whats.some((w: string) => w.includes("uplink cnv-user-mvl"))).toBe(false);
  expect(plan.steps.every((s: any) => s.done === false)).toBe(true);
  expect(linkNames()).toEqual(before);
  expect(existsSync(A.pins.path)).toBe(true);
});

test("uninstall: only loopback and the operator's NIC remain, no address of Stratum's, no pin root; the store stays", () => {
  const r = uninstall();
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("removed bridge cnv-user-br0");
  expect(r.stdout).toContain("note: the store");
  expect(linkNames()).toEqual(["lo", "upl0"]);
  const upl = links().find((l) => l.ifname === "upl0");
  expect(upl.master).toBeUndefined();
  expect(upl.xdp).toBeUndefined();
  // No tcx or cls_bpf program left on the NIC.
  const net = JSON.parse(A.ns.execOk(["bpftool", "-j", "net", "show", "dev", "upl0"]))[0];
  expect([...(net.xdp ?? []), ...(net.tc ?? [])]).toEqual([]);
  const addrs = (A.ns.ipJson(["addr", "show"]) as any[]).flatMap((l) =>
    l.addr_info.filter((a: any) => a.scope === "global").map((a: any) => `${l.ifname} ${a.local}`),
  );
  expect(addrs).toEqual([]);
  expect(existsSync(A.pins.path)).toBe(false);
  // The container's end went with the host's.
  expect(c1.ipJson(["link", "show"]).map((l: any) => l.ifname)).toEqual(["lo"]);
  expect(existsSync(join(A.dir, "state", "stratum.db"))).toBe(true);
  // A second run finds nothing to do.
  expect(uninstall().stdout).toContain("nothing of Stratum's is on this node");
});

test("an agent started again restores everything from the store; --purge then removes the store too", async () => {
  await startAgent();
  const eps = A.json("endpoint", "list").map((e: any) => e.name);
  expect(eps).toEqual(["vm", "vm-mb", "vm-mp", "web"]);
  // The container's interface is back with its profile MAC; its address is the workload's
  // own business (DHCP, or as here by hand).
  const web = A.json("endpoint", "show", "web");
  expect(c1.ipJson(["link", "show", "eth0"])[0].address).toBe(web.mac);
  c1.execOk(["ip", "addr", "add", `${web.ip}/24`, "dev", "eth0"]);
  c1.execOk(["ip", "link", "set", "eth0", "up"]);
  expect(c1.exec(["ping", "-c", "1", "-W", "2", "10.72.1.1"]).code).toBe(0);
  expect(A.json("firewall", "blocklist", "list").prefixes.map((p: any) => p.prefix)).toEqual(["192.0.2.0/24"]);
  await A.kill("SIGTERM");
  const r = uninstall("--purge");
  expect(r.code).toBe(0);
  expect(linkNames()).toEqual(["lo", "upl0"]);
  expect(existsSync(A.pins.path)).toBe(false);
  expect(existsSync(join(A.dir, "state", "stratum.db"))).toBe(false);
  expect(existsSync(A.sock)).toBe(false);
});

test("what another program pinned under the pin root is left alone, and the pin root with it", async () => {
  await startAgent();
  await A.kill("SIGTERM");
  mkdirSync(join(A.pins.path, "other"));
  const r = uninstall("--purge");
  expect(r.code).toBe(0);
  expect(r.stdout).toContain(`note: ${A.pins.path} also holds other, not Stratum's: left there`);
  expect(readdirSync(A.pins.path)).toEqual(["other"]);
  expect(linkNames()).toEqual(["lo", "upl0"]);
});
