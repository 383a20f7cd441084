/** A VM on a tap endpoint, end to end, with a guest's frames made by hand on a queue of the
 * tap (test/helpers/vm.ts: /dev/net/tun attached by name, as a VMM holds it): the VM gets its
 * profile address by DHCP, pings a container and answers the container's ping; frames it
 * sends from another MAC, another IPv4 address or an ARP claiming another address are dropped
 * at its port and counted by reason; a firewall rule holds for it; a detach leaves nothing. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { TestAgent } from "../helpers/agent";
import { arp, ethArp } from "../helpers/frames";
import { Netns, run } from "../helpers/netns";
import { TestVm } from "../helpers/vm";

const NET = "vmn";
const TAP = "vmtap0";
let A: TestAgent;
let c1: Netns;
let vm: TestVm | undefined;
let ep: { ip: string; mac: string; interface: string };
let ct: { ip: string; mac: string };

const drops = (): Record<string, number> => A.json("endpoint", "show", "vm-1").drops ?? {};

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

  test("the VM pings a container, and answers the container's ping", async () => {
    const v = vm as TestVm;
    expect(await v.resolve(ct.ip)).toBe(ct.mac);
    expect(await v.ping(ct.ip, ct.mac)).toBe(true);
    const p = Bun.spawn(["ip", "netns", "exec", c1.name, "ping", "-c", "3", "-i", "0.2", "-W", "1", ep.ip], {
      stdout: "ignore",
      stderr: "ignore",
    });
    await v.serve(1500);
    expect(await p.exited).toBe(0);
  });

  test("frames from another MAC, another IPv4 address, or an ARP claiming another address are dropped and counted", async () => {
    const v = vm as TestVm;
    const before = drops();
    expect(await v.ping(ct.ip, ct.mac, { mac: "02:00:00:00:99:99" }, 300)).toBe(false);
    expect(await v.ping(ct.ip, ct.mac, { ip: "10.93.0.77" }, 300)).toBe(false);
    v.send(
      ethArp(
        v.mac,
        "ff:ff:ff:ff:ff:ff",
        arp({ op: "request", senderMac: v.mac, senderIp: "10.93.0.77", targetIp: ct.ip }),
      ),
    );
    await Bun.sleep(200);
    const after = drops();
    const grew = (r: string) => (after[r] ?? 0) - (before[r] ?? 0);
    expect({ mac: grew("mac-spoof"), ip4: grew("ip4-spoof"), arp: grew("arp-spoof") }).toEqual({
      mac: 1,
      ip4: 1,
      arp: 1,
    });
    // The VM's own frames still pass.
    expect(await v.ping(ct.ip, ct.mac)).toBe(true);
  });

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
