/** VMs on macvtaps, end to end, with a guest's frames made by hand on the macvtap's character
 * device (/dev/tapN opened as a VMM opens it; test/helpers/vm.ts). The port's programs sit on
 * the macvtap the other way round from a tap's (what the guest writes leaves through its tc
 * egress): the VM gets its profile address by DHCP, pings a container and answers its ping;
 * frames from another MAC, another IPv4 address or an ARP claiming another address are dropped
 * at the macvtap and counted; the network's default deny holds; an egress cap holds. Unicast
 * to a container takes the fast path (not through the lower link) and is still judged at the
 * container's port. Another network's workload and a host on the LAN (unicast to the VM's MAC,
 * ARP broadcast, a source of the network's own) reach it no way. The four
 * modes mean what docs/networks.md says: bridge VMs reach each other (straight through the lower
 * link, still judged by both ports), a VEPA VM reaches them through cnv-user-br0 (reflected),
 * a private VM reaches the container but no VM beside it (counted vm-private), a passthru VM
 * has a lower link of its own. A detach leaves nothing: macvtap, device node, port entry, the
 * lower link once the last VM is gone. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { TestAgent } from "../helpers/agent";
import { Netns } from "../helpers/netns";
import { TestVm } from "../helpers/vm";
import {
  expectDefaultDenyHolds,
  expectEgressCapHolds,
  expectOtherNetworkHeld,
  expectPingsBothWays,
  expectSpoofsDropped,
  expectTracedAndMonitored,
  type VmCase,
} from "../helpers/vm-checks";

const NET = "mvn";
let A: TestAgent;
let c1: Netns;
let lan: Netns;
let ct: { ip: string; mac: string };
const vms = new Map<string, { vm: TestVm; ep: any }>();

const drops = (name: string): Record<string, number> => A.json("endpoint", "show", name).drops ?? {};
const grew = (before: Record<string, number>, after: Record<string, number>, r: string) =>
  (after[r] ?? 0) - (before[r] ?? 0);

const vmCase = (name: string): VmCase => {
  const { vm, ep } = vms.get(name) as { vm: TestVm; ep: any };
  return { A, net: NET, name, ip: ep.ip, vm, ct: { ns: c1.name, ip: ct.ip, mac: ct.mac } };
};

/** Attaches a VM on a macvtap in `mode` and opens its device as its VMM would. */
function attachVm(name: string, mode: string): { vm: TestVm; ep: any } {
  const ep = A.json("network", "attach", NET, "--name", name, "--macvtap", mode);
  const vm = new TestVm(ep.interface, A.ns.path, ep.mac, { device: ep.macvtap.device });
  vms.set(name, { vm, ep });
  return { vm, ep };
}

function detachVm(name: string): void {
  vms.get(name)?.vm.close();
  vms.delete(name);
  expect(A.ctl("network", "detach", NET, "--name", name).code).toBe(0);
}

beforeAll(async () => {
  A = new TestAgent("mvt");
  c1 = new Netns("mvtc1");
  // A host on the LAN behind the uplink (the network is not extended onto it).
  lan = new Netns("mvtlan");
  A.ns.execOk(["ip", "link", "add", "upl0", "type", "veth", "peer", "name", "ext0", "netns", lan.name]);
  A.ns.execOk(["ip", "link", "set", "upl0", "up"]);
  lan.execOk(["ip", "link", "set", "ext0", "up"]);
  await A.start(["--uplink", "upl0"]);
  A.json("network", "create", "--name", NET, "--cidr", "10.94.0.0/24", "--gateway", "10.94.0.1");
  ct = A.json("network", "attach", NET, "--name", "c-1", "--netns", c1.name, "--configure");
}, 60_000);

afterAll(() => {
  for (const { vm } of vms.values()) vm.close();
  c1?.destroy();
  lan?.destroy();
  A?.destroy();
});

describe("a VM on a macvtap", () => {
  test("attach makes the macvtap on the lower link, with its device node, its programs the other way round", () => {
    const { ep } = attachVm("vm-b1", "bridge");
    expect(ep.kind).toBe("macvtap");
    expect(ep.macvtap.mode).toBe("bridge");
    expect(ep.macvtap.lower).toBe("cnv-user-mvla");
    expect(ep.macvtap.device).toMatch(/^\/dev\/tap\d+$/);
    expect(existsSync(ep.macvtap.device)).toBe(true);
    expect(A.ns.execOk(["ip", "-d", "link", "show", ep.interface])).toMatch(/macvtap +mode bridge/);
    const port = A.json("status").ports.find((p: any) => p.endpoint === "vm-b1");
    expect({ state: port.state, problems: port.problems }).toEqual({ state: "ok", problems: [] });
    // stm_port_in on tc egress, stm_port_out on tc ingress.
    const filters = (dir: string) => A.ns.execOk(["tc", "filter", "show", "dev", ep.interface, dir]);
    expect(filters("egress")).toContain("stm_port_in");
    expect(filters("ingress")).toContain("stm_port_out");
    expect(A.ctl("endpoint", "show", "vm-b1").stdout).toMatch(/^macvtap: +bridge mode, on cnv-user-mvla$/m);
  });

  test("DHCP leases the VM its profile address; it pings a container and answers the container's ping", async () => {
    const { vm, ep } = vms.get("vm-b1") as { vm: TestVm; ep: any };
    expect(await vm.dhcp()).toBe(ep.ip);
    await expectPingsBothWays(vmCase("vm-b1"));
  });

  test("unicast to a container skips the lower link (the fast path); the container's port still judges it", async () => {
    const { vm } = vms.get("vm-b1") as { vm: TestVm; ep: any };
    const tx = () =>
      JSON.parse(A.ns.execOk(["ip", "-s", "-j", "link", "show", "cnv-user-mvla"]))[0].stats64.tx.packets as number;
    // The gateway is no endpoint: what goes to it crosses the lower link (the counter is live).
    let before = tx();
    const gwMac = await vm.resolve("10.94.0.1");
    expect(gwMac).toMatch(/^[0-9a-f:]{17}$/);
    expect(await vm.ping("10.94.0.1", gwMac as string)).toBe(true);
    expect(tx() - before).toBeGreaterThanOrEqual(2);
    before = tx();
    for (let i = 0; i < 10; i++) expect(await vm.ping(ct.ip, ct.mac)).toBe(true);
    expect(tx() - before).toBeLessThan(5);
    // Denied on the way into the container only: its own port's stm_port_out drops it.
    const rule = A.json(
      "firewall",
      "rule",
      "add",
      NET,
      "--priority",
      "10",
      "--direction",
      "ingress",
      "--dst",
      `${ct.ip}/32`,
      "--proto",
      "icmp",
      "--action",
      "deny",
    );
    try {
      const b = drops("c-1");
      expect(await vm.ping(ct.ip, ct.mac, {}, 300)).toBe(false);
      expect(grew(b, drops("c-1"), "fw-rule")).toBe(1);
    } finally {
      expect(A.ctl("firewall", "rule", "del", NET, String(rule.id)).code).toBe(0);
    }
    expect(await vm.ping(ct.ip, ct.mac)).toBe(true);
  });

  test("frames from another MAC, another IPv4 address, or an ARP claiming another address are dropped at the macvtap and counted", () =>
    expectSpoofsDropped(vmCase("vm-b1"), "10.94.0.77", "02:00:00:00:99:98"));

  test("the network's default deny holds for the VM; allow again lets it through", () =>
    expectDefaultDenyHolds(vmCase("vm-b1")));

  test("an egress cap holds for what the VM sends", () => expectEgressCapHolds(vmCase("vm-b1")));

  test("trace follows the VM's packet through its port (delivered; a spoofed MAC dropped), monitor shows the drop", () =>
    expectTracedAndMonitored(vmCase("vm-b1"), "02:00:00:00:99:97"));

  test("another network's workload reaches the VM neither way at L2 (dropped other-network at the receiving port)", async () => {
    A.json("network", "create", "--name", "mvo", "--cidr", "10.95.0.0/24", "--gateway", "10.95.0.1");
    const o = A.json("network", "attach", "mvo", "--name", "vm-o", "--tap", "mvotap");
    const ovm = new TestVm("mvotap", A.ns.path, o.mac);
    try {
      ovm.ip = o.ip;
      await expectOtherNetworkHeld(vmCase("vm-b1"), { name: "vm-o", ip: o.ip, mac: o.mac, vm: ovm });
    } finally {
      ovm.close();
      expect(A.ctl("network", "detach", "mvo", "--name", "vm-o").code).toBe(0);
      expect(A.ctl("network", "delete", "mvo").code).toBe(0);
    }
  });

  test("a host on the LAN reaches the VM neither by unicast to its MAC nor by ARP broadcast, nor claiming the network's addresses", async () => {
    const { vm, ep } = vms.get("vm-b1") as { vm: TestVm; ep: any };
    const uplinkDrops = (): Record<string, number> => A.json("status").uplink.drops;
    // The LAN host's own address, the VM's on its link (as if the network were there).
    lan.execOk(["ip", "addr", "add", "10.99.0.5/24", "dev", "ext0"]);
    lan.execOk(["ip", "route", "add", `${ep.ip}/32`, "dev", "ext0"]);
    try {
      const answering = vm.serve(6000);
      // Unicast to its MAC: through the uplink, dropped at the VM's port.
      let before = drops("vm-b1");
      lan.execOk(["ip", "neigh", "replace", ep.ip, "lladdr", ep.mac, "dev", "ext0", "nud", "permanent"]);
      expect(lan.exec(["ping", "-c", "2", "-i", "0.2", "-W", "1", ep.ip]).code).not.toBe(0);
      expect(grew(before, drops("vm-b1"), "lan-direct")).toBe(2);
      // From an address of the network: the uplink's filter drops it first.
      before = drops("vm-b1");
      const ub = uplinkDrops();
      lan.execOk(["ip", "addr", "add", "10.94.0.200/32", "dev", "ext0"]);
      expect(lan.exec(["ping", "-c", "2", "-i", "0.2", "-W", "1", "-I", "10.94.0.200", ep.ip]).code).not.toBe(0);
      expect(grew(ub, uplinkDrops(), "subnet-spoof")).toBe(2);
      expect(grew(before, drops("vm-b1"), "lan-direct")).toBe(0);
      // Without a neighbour entry its kernel asks by ARP broadcast: dropped the same way.
      before = drops("vm-b1");
      lan.execOk(["ip", "addr", "del", "10.94.0.200/32", "dev", "ext0"]);
      lan.execOk(["ip", "neigh", "del", ep.ip, "dev", "ext0"]);
      expect(lan.exec(["ping", "-c", "1", "-W", "2", ep.ip]).code).not.toBe(0);
      expect(grew(before, drops("vm-b1"), "lan-direct")).toBeGreaterThanOrEqual(1);
      await answering;
    } finally {
      lan.exec(["ip", "neigh", "flush", "dev", "ext0"]);
      lan.exec(["ip", "addr", "flush", "dev", "ext0"]);
    }
  }, 20_000);

  test("bridge mode: two VMs reach each other straight through the lower link, both ports still judging", async () => {
    const a = vms.get("vm-b1") as { vm: TestVm; ep: any };
    const b = attachVm("vm-b2", "bridge");
    expect(await b.vm.dhcp()).toBe(b.ep.ip);
    a.vm.ip = a.ep.ip;
    const answering = b.vm.serve(1500);
    expect(await a.vm.resolve(b.ep.ip)).toBe(b.ep.mac);
    expect(await a.vm.ping(b.ep.ip, b.ep.mac)).toBe(true);
    // A spoofed frame to the sibling is dropped at the sender's macvtap, never reaching it.
    const before = drops("vm-b1");
    expect(await a.vm.ping(b.ep.ip, b.ep.mac, { ip: "10.94.0.78" }, 300)).toBe(false);
    expect(grew(before, drops("vm-b1"), "ip4-spoof")).toBe(1);
    await answering;
  });

  test("vepa mode: the VM reaches a bridge-mode VM through cnv-user-br0 (reflected by its hairpin)", async () => {
    const a = vms.get("vm-b1") as { vm: TestVm; ep: any };
    const v = attachVm("vm-v1", "vepa");
    expect(await v.vm.dhcp()).toBe(v.ep.ip);
    expect(A.ns.execOk(["ip", "-d", "link", "show", "cnv-user-mvlb"])).toContain("hairpin on");
    const answering = a.vm.serve(1500);
    expect(await v.vm.resolve(a.ep.ip)).toBe(a.ep.mac);
    expect(await v.vm.ping(a.ep.ip, a.ep.mac)).toBe(true);
    await answering;
    expect(await v.vm.ping(ct.ip, ct.mac)).toBe(true);
  });

  test("private mode: the VM reaches the container, never a VM beside it (counted vm-private)", async () => {
    const a = vms.get("vm-b1") as { vm: TestVm; ep: any };
    const p = attachVm("vm-p1", "private");
    expect(await p.vm.dhcp()).toBe(p.ep.ip);
    expect(await p.vm.ping(ct.ip, ct.mac)).toBe(true);
    const before = drops("vm-b1");
    const answering = a.vm.serve(800);
    expect(await p.vm.ping(a.ep.ip, a.ep.mac, {}, 600)).toBe(false);
    await answering;
    expect(grew(before, drops("vm-b1"), "vm-private")).toBeGreaterThan(0);
    // Nor from the other side.
    a.vm.ip = a.ep.ip;
    const pAnswering = p.vm.serve(800);
    expect(await a.vm.ping(p.ep.ip, p.ep.mac, {}, 600)).toBe(false);
    await pAnswering;
  });

  test("passthru mode: a lower link of its own; DHCP and ping; its detach takes the lower link too", async () => {
    const t = attachVm("vm-t1", "passthru");
    expect(t.ep.macvtap.lower).toBe(`${t.ep.interface}l`);
    expect(A.ns.execOk(["ip", "-d", "link", "show", t.ep.interface])).toMatch(/macvtap +mode passthru/);
    expect(await t.vm.dhcp()).toBe(t.ep.ip);
    expect(await t.vm.ping(ct.ip, ct.mac)).toBe(true);
    const before = drops("vm-t1");
    expect(await t.vm.ping(ct.ip, ct.mac, { mac: "02:00:00:00:99:97" }, 300)).toBe(false);
    expect(grew(before, drops("vm-t1"), "mac-spoof")).toBe(1);
    detachVm("vm-t1");
    for (const dev of [t.ep.interface, `${t.ep.interface}l`, `${t.ep.interface}b`])
      expect(A.ns.exec(["ip", "link", "show", dev]).code).not.toBe(0);
    expect(existsSync(t.ep.macvtap.device)).toBe(false);
  });

  test("--macvtap is refused with the wrong mode or beside another kind, with nothing changed", () => {
    const before = A.json("endpoint", "list").length;
    const cases: Array<[string[], string]> = [
      [["--macvtap", "hub"], "--macvtap hub: give one of bridge, vepa, private, passthru"],
      [
        ["--macvtap", "bridge", "--tap", "mvx"],
        "give exactly one of --netns (container), --tap, --macvtap or --xsk (VM)",
      ],
      [["--macvtap", "bridge", "--configure"], "--configure applies to --netns endpoints"],
      [["--macvtap", "bridge", "--queues", "2"], "--queues applies to --tap endpoints"],
    ];
    for (const [flags, msg] of cases) {
      const r = A.ctl("network", "attach", NET, "--name", "vm-x", ...flags);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(msg);
    }
    expect(A.json("endpoint", "list").length).toBe(before);
  });

  test("a reconcile finds every VM's port right and changes nothing", () => {
    const r = A.json("reconcile", "--full");
    expect(r.errors).toEqual([]);
    expect(r.repaired ?? []).toEqual([]);
    for (const p of A.json("status").ports)
      expect({ ep: p.endpoint, problems: p.problems }).toEqual({ ep: p.endpoint, problems: [] });
  });

  test("a detach leaves nothing: macvtap, device node, port entry; the lower link goes with the last VM", () => {
    const devices = [...vms.values()].map(({ ep }) => ({
      name: ep.name,
      dev: ep.macvtap.device,
      ifname: ep.interface,
    }));
    for (const d of devices) {
      detachVm(d.name);
      expect(A.ns.exec(["ip", "link", "show", d.ifname]).code).not.toBe(0);
      expect(existsSync(d.dev)).toBe(false);
    }
    expect(A.ns.exec(["ip", "link", "show", "cnv-user-mvla"]).code).not.toBe(0);
    expect(A.ns.exec(["ip", "link", "show", "cnv-user-mvlb"]).code).not.toBe(0);
    expect(A.json("endpoint", "list").map((e: any) => e.name)).toEqual(["c-1"]);
    const ports = A.json("status").ports.map((p: any) => p.endpoint);
    expect(ports).toEqual(["c-1"]);
  });
});
