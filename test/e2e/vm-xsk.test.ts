/** A VM on AF_XDP, end to end. `network attach --xsk` makes a veth pair: the port on the bridge
 * (the port's programs, as a container's) and the VM end with stm_xsk_rx in XDP. `endpoint
 * handoff` sends the VMM AF_XDP sockets already in the pinned sockets' map at the VM's slot (as
 * QEMU's af-xdp takes them: sock-fds= with inhibit=on); the test's VM (test/helpers/xsk-queue.ts)
 * registers its UMEM and rings on them and binds them to the VM end, as QEMU does. The VM gets
 * its lease, pings a container and answers; what it sends through AF_XDP with another MAC, IPv4
 * address or ARP claim is dropped at the port (the host end's tc ingress) and counted, before
 * any other workload sees it; default deny and an egress cap hold; an agent restart keeps the
 * socket in its slot; a detach leaves nothing. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestAgent } from "../helpers/agent";
import { udp4 } from "../helpers/frames";
import { Netns, run } from "../helpers/netns";
import { handoffHere, TestVm } from "../helpers/vm";
import {
  expectDefaultDenyHolds,
  expectEgressCapHolds,
  expectOtherNetworkHeld,
  expectPingsBothWays,
  expectSpoofsDropped,
  expectTracedAndMonitored,
  type VmCase,
} from "../helpers/vm-checks";
import { XskQueue } from "../helpers/xsk-queue";

const NET = "xsn";
let A: TestAgent;
let c1: Netns;
let dir: string;
let ct: { ip: string; mac: string };
let ep: any;
let vm: TestVm | undefined;

const vmCase = (): VmCase => ({
  A,
  net: NET,
  name: "vm-x",
  ip: ep.ip,
  vm: vm as TestVm,
  ct: { ns: c1.name, ip: ct.ip, mac: ct.mac },
});

beforeAll(async () => {
  A = new TestAgent("xsk");
  c1 = new Netns("xskc1");
  dir = mkdtempSync(join(tmpdir(), "stm-xsk-"));
  await A.start();
  A.json("network", "create", "--name", NET, "--cidr", "10.97.0.0/24", "--gateway", "10.97.0.1");
  ct = A.json("network", "attach", NET, "--name", "c-1", "--netns", c1.name, "--configure");
}, 60_000);

afterAll(() => {
  vm?.close();
  c1?.destroy();
  A?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("a VM on AF_XDP", () => {
  test("attach makes the port and the VM end with its XDP program and slot; status ok", () => {
    ep = A.json("network", "attach", NET, "--name", "vm-x", "--xsk");
    expect(ep.kind).toBe("xsk");
    expect(ep.xsk.device).toBe(`${ep.interface}x`);
    expect(ep.xsk.base).toBe(0);
    expect(ep.xsk.map).toBe(`${A.pins.path}/xsk/stm_xsks`);
    expect(existsSync(ep.xsk.map)).toBe(true);
    const end = JSON.parse(A.ns.execOk(["ip", "-d", "-j", "link", "show", ep.xsk.device]))[0];
    expect(end.xdp?.prog?.name ?? end.xdp?.attached?.[0]?.prog?.name).toBe("stm_xsk_rx");
    expect(end.master).toBeUndefined(); // off the bridge
    expect(end.address).toBe(ep.mac);
    const port = A.json("status").ports.find((p: any) => p.endpoint === "vm-x");
    expect({ state: port.state, problems: port.problems }).toEqual({ state: "ok", problems: [] });
  });

  test("handoff sends sockets already in the map; bound by the VM, it gets its lease and pings both ways", async () => {
    const h = await handoffHere(A, "vm-x", dir);
    expect(h.about).toMatchObject({ kind: "xsk", interface: ep.xsk.device, queues: 1, base: 0, map: ep.xsk.map });
    expect(h.fds).toHaveLength(1);
    const ifindex = JSON.parse(A.ns.execOk(["ip", "-j", "link", "show", ep.xsk.device]))[0].ifindex;
    vm = new TestVm(ep.xsk.device, A.ns.path, ep.mac, { frameQueues: [new XskQueue(h.fds[0] as number, ifindex, 0)] });
    expect(await vm.dhcp()).toBe(ep.ip);
    await expectPingsBothWays(vmCase());
  });

  test("spoofed frames sent through AF_XDP are dropped at the port and counted, before the container sees them", async () => {
    const v = vm as TestVm;
    // The container's side: the first frame it sees from the VM's spoofs or of a legitimate probe
    // sent after them (UDP to port 9) is the probe.
    const cap = Bun.spawn(
      [
        "ip",
        "netns",
        "exec",
        c1.name,
        "tcpdump",
        "-l",
        "-i",
        "eth0",
        "-n",
        "-c",
        "1",
        "-Q",
        "in",
        "src host 10.97.0.77 or ether src 02:00:00:00:99:96 or udp dst port 9",
      ],
      { stdout: "pipe", stderr: "ignore" },
    );
    await Bun.sleep(700);
    await expectSpoofsDropped(vmCase(), "10.97.0.77", "02:00:00:00:99:96");
    v.send(udp4({ mac: v.mac, dstMac: ct.mac, src: ep.ip, dst: ct.ip, sport: 4001, dport: 9 }));
    const seen = await Promise.race([new Response(cap.stdout).text(), Bun.sleep(3000).then(() => "(nothing)")]);
    cap.kill();
    expect(seen).toContain(`${ep.ip}.4001 > ${ct.ip}.9`);
    expect(seen).not.toContain("10.97.0.77");
  });

  test("default deny and an egress cap hold for the VM", async () => {
    await expectDefaultDenyHolds(vmCase());
    await expectEgressCapHolds(vmCase());
  });

  test("trace follows the VM's packet through its port (delivered; a spoofed MAC dropped), monitor shows the drop", () =>
    expectTracedAndMonitored(vmCase(), "02:00:00:00:99:97"));

  test("another network's workload reaches the VM neither way at L2 (dropped other-network at the receiving port)", async () => {
    A.json("network", "create", "--name", "xso", "--cidr", "10.98.0.0/24", "--gateway", "10.98.0.1");
    const o = A.json("network", "attach", "xso", "--name", "vm-o", "--tap", "xsotap");
    const ovm = new TestVm("xsotap", A.ns.path, o.mac);
    try {
      ovm.ip = o.ip;
      await expectOtherNetworkHeld(vmCase(), { name: "vm-o", ip: o.ip, mac: o.mac, vm: ovm });
    } finally {
      ovm.close();
      expect(A.ctl("network", "detach", "xso", "--name", "vm-o").code).toBe(0);
      expect(A.ctl("network", "delete", "xso").code).toBe(0);
    }
  });

  test("an agent restart keeps the VM's socket in its slot: the VM still pings, with no new handoff", async () => {
    const mapId = () => JSON.parse(run(["bpftool", "-j", "map", "show", "pinned", ep.xsk.map]).stdout).id;
    const before = mapId();
    await A.kill("SIGTERM");
    await A.start();
    expect(await (vm as TestVm).ping(ct.ip, ct.mac)).toBe(true);
    // The same map, taken over from its pin (a new one would hold no socket).
    A.json("endpoint", "show", "vm-x");
    expect(mapId()).toBe(before);
    const port = A.json("status").ports.find((p: any) => p.endpoint === "vm-x");
    expect({ state: port.state, problems: port.problems }).toEqual({ state: "ok", problems: [] });
  });

  test("--xsk is refused beside another kind, with nothing changed", () => {
    const before = A.json("endpoint", "list").length;
    for (const [flags, msg] of [
      [["--xsk", "--tap", "xt0"], "give exactly one of --netns (container), --tap, --macvtap or --xsk (VM)"],
      [["--xsk", "--queues", "2"], "--queues applies to --tap endpoints"],
    ] as Array<[string[], string]>) {
      const r = A.ctl("network", "attach", NET, "--name", "vm-y", ...flags);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(msg);
    }
    expect(A.json("endpoint", "list").length).toBe(before);
  });

  test("a detach leaves nothing: the pair, the XDP link's pin, the slot", () => {
    vm?.close();
    vm = undefined;
    const ifindex = JSON.parse(A.ns.execOk(["ip", "-j", "link", "show", ep.xsk.device]))[0].ifindex;
    expect(A.ctl("network", "detach", NET, "--name", "vm-x").code).toBe(0);
    for (const dev of [ep.interface, ep.xsk.device]) expect(A.ns.exec(["ip", "link", "show", dev]).code).not.toBe(0);
    expect(existsSync(`${A.pins.path}/links/xsk-${ifindex}`)).toBe(false);
    const left = run(["bpftool", "-j", "map", "dump", "pinned", `${A.pins.path}/xsk/stm_xsk_base`]);
    expect(JSON.parse(left.stdout)).toEqual([]);
  });
});
