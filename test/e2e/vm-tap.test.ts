/** A VM on a tap endpoint, end to end, with a guest's frames made by hand on a queue of the
 * tap (test/helpers/vm.ts: /dev/net/tun attached by name, as a VMM holds it): the VM gets its
 * profile address by DHCP, pings a container and answers the container's ping; frames it
 * sends from another MAC, another IPv4 address or an ARP claiming another address are dropped
 * at its port and counted by reason; a firewall rule, the network's default deny and an egress
 * cap hold for it; a detach leaves nothing.
 * A multi-queue tap (--queues 4): the VM opens it four times, DHCP and ping work on every
 * queue, a spoofed frame on any queue is dropped the same; --queues is refused where it
 * does not apply. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { TestAgent } from "../helpers/agent";
import { Netns, run } from "../helpers/netns";
import { TestVm } from "../helpers/vm";
import {
  expectDefaultDenyHolds,
  expectEgressCapHolds,
  expectPingsBothWays,
  expectSpoofsDropped,
  expectTracedAndMonitored,
  type VmCase,
} from "../helpers/vm-checks";

const NET = "vmn";
const TAP = "vmtap0";
let A: TestAgent;
let c1: Netns;
let vm: TestVm | undefined;
let ep: { ip: string; mac: string; interface: string };
let ct: { ip: string; mac: string };

const vmCase = (): VmCase => ({
  A,
  net: NET,
  name: "vm-1",
  ip: ep.ip,
  vm: vm as TestVm,
  ct: { ns: c1.name, ip: ct.ip, mac: ct.mac },
});

beforeAll(async () => {
  A = new TestAgent("vmt");
  c1 = new Netns("vmtc1");
  await A.start();
  A.json("network", "create", "--name", NET, "--cidr", "10.93.0.0/24", "--gateway", "10.93.0.1");
  ct = A.json("network", "attach", NET, "--name", "c-1", "--netns", c1.name, "--configure");
  ep = A.json("network", "attach", NET, "--name", "vm-1", "--tap", TAP);
  vm = new TestVm(TAP, A.ns.path, ep.mac);
}, 60_000);

afterAll(() => {
  vm?.close();
  c1?.destroy();
  A?.destroy();
});

describe("a VM on a tap", () => {
  test("DHCP leases the VM its profile address", async () => {
    expect(await vm?.dhcp()).toBe(ep.ip);
  });

  test("the VM pings a container, and answers the container's ping", () => expectPingsBothWays(vmCase()));

  test("frames from another MAC, another IPv4 address, or an ARP claiming another address are dropped and counted", () =>
    expectSpoofsDropped(vmCase(), "10.93.0.77", "02:00:00:00:99:99"));

  test("a firewall rule denying ICMP holds for the VM; deleting it lets the ping through again", async () => {
    const v = vm as TestVm;
    const r = A.json(
      "firewall",
      "rule",
      "add",
      NET,
      "--priority",
      "10",
      "--direction",
      "both",
      "--proto",
      "icmp",
      "--action",
      "deny",
    );
    expect(await v.ping(ct.ip, ct.mac, {}, 500)).toBe(false);
    A.ctl("firewall", "rule", "del", NET, String(r.id));
    expect(await v.ping(ct.ip, ct.mac)).toBe(true);
  });

  test("the network's default deny holds for the VM; an egress cap holds for what it sends", async () => {
    await expectDefaultDenyHolds(vmCase());
    await expectEgressCapHolds(vmCase());
  });

  test("trace follows the VM's packet through its port (delivered; a spoofed MAC dropped), monitor shows the drop", () =>
    expectTracedAndMonitored(vmCase(), "02:00:00:00:99:97"));

  test("a multi-queue tap: the VM opens every queue; DHCP and ping work on each, and a spoofed frame on any is dropped", async () => {
    const mq = A.json("network", "attach", NET, "--name", "vm-4q", "--tap", "vmtap4", "--queues", "4");
    expect(mq.queues).toBe(4);
    expect(A.ctl("endpoint", "show", "vm-4q").stdout).toMatch(/^interface: +vmtap4 \(multi-queue: 4 queues\)$/m);
    expect(A.ns.execOk(["ip", "-d", "link", "show", "vmtap4"])).toContain("multi_queue");
    // A VMM asking for one queue is refused by a multi-queue tap (and the other way round).
    expect(() => new TestVm("vmtap4", A.ns.path, mq.mac)).toThrow(/EINVAL/);
    expect(() => new TestVm(TAP, A.ns.path, ep.mac, { queues: 2 })).toThrow(/EINVAL/);
    const v = new TestVm("vmtap4", A.ns.path, mq.mac, { queues: 4 });
    try {
      for (let q = 0; q < 4; q++) {
        v.sendQueue = q;
        v.ip = undefined;
        expect(await v.dhcp()).toBe(mq.ip);
        expect(await v.resolve(ct.ip)).toBe(ct.mac);
        expect(await v.ping(ct.ip, ct.mac)).toBe(true);
      }
      const before = A.json("endpoint", "show", "vm-4q").drops ?? {};
      for (let q = 0; q < 4; q++) {
        v.sendQueue = q;
        expect(await v.ping(ct.ip, ct.mac, { ip: `10.93.0.${80 + q}` }, 200)).toBe(false);
      }
      const after = A.json("endpoint", "show", "vm-4q").drops ?? {};
      expect((after["ip4-spoof"] ?? 0) - (before["ip4-spoof"] ?? 0)).toBe(4);
    } finally {
      v.close();
    }
    expect(A.ctl("network", "detach", NET, "--name", "vm-4q").code).toBe(0);
    expect(A.ns.exec(["ip", "link", "show", "vmtap4"]).code).not.toBe(0);
  });

  test("--queues is refused where it does not apply, with nothing changed", () => {
    const before = A.json("endpoint", "list").length;
    const cases: Array<[string[], string]> = [
      [["--netns", c1.name, "--queues", "2"], "--queues applies to --tap endpoints"],
      [["--tap", "vmtapx", "--queues", "0"], "--queues 0: give a whole number from 1 to 256"],
      [["--tap", "vmtapx", "--queues", "257"], "--queues 257: give a whole number from 1 to 256"],
      [["--tap", "vmtapx", "--queues", "two"], "--queues two: give a whole number of queues"],
    ];
    for (const [flags, msg] of cases) {
      const r = A.ctl("network", "attach", NET, "--name", "vm-x", ...flags);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(msg);
    }
    expect(A.json("endpoint", "list").length).toBe(before);
    expect(A.ns.exec(["ip", "link", "show", "vmtapx"]).code).not.toBe(0);
  });

  test("a detach leaves nothing of the VM: its tap, its port entry", () => {
    vm?.close();
    vm = undefined;
    const ifindex = A.json("status").ports.find((p: any) => p.endpoint === "vm-1").ifindex as number;
    expect(A.ctl("network", "detach", NET, "--name", "vm-1").code).toBe(0);
    expect(A.ns.exec(["ip", "link", "show", TAP]).code).not.toBe(0);
    const key = Buffer.alloc(4);
    key.writeUInt32LE(ifindex);
    const lookup = [
      "bpftool",
      "map",
      "lookup",
      "pinned",
      `${A.pins.path}/maps/stm_ports`,
      "key",
      ...[...key].map(String),
    ];
    expect(run(lookup).code).not.toBe(0);
    expect(A.json("endpoint", "list").some((e: any) => e.name === "vm-1")).toBe(false);
  });
});
