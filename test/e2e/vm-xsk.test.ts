/** A VM on AF_XDP, end to end. `network attach --xsk` makes a veth pair: the port on the bridge
 * (the port's programs, as a container's) and the VM end with stm_xsk_rx in XDP. `endpoint
 * handoff` sends the VMM AF_XDP sockets already in the pinned sockets' map at the VM's slot (as
 * QEMU's af-xdp takes them: sock-fds= with inhibit=on); the test's VM (test/helpers/xsk-queue.ts)
 * registers its UMEM and rings on them and binds them to the VM end, as QEMU does. The VM gets
 * its lease, pings a container and answers; what it sends through AF_XDP with another MAC, IPv4
 * address or ARP claim is dropped at the port (the host end's tc ingress) and counted, before
 * any other workload sees it; default deny and an egress cap hold; a detach leaves nothing. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { acceptFds, closeFd, listenUnix } from "../../src/sys/os";
import { TestAgent } from "../helpers/agent";
import { arp, ethArp, udp4 } from "../helpers/frames";
import { BINARY, Netns, run } from "../helpers/netns";
import { TestVm } from "../helpers/vm";
import { XskQueue } from "../helpers/xsk-queue";

const NET = "xsn";
let A: TestAgent;
let c1: Netns;
let dir: string;
let ct: { ip: string; mac: string };
let ep: any;
let vm: TestVm | undefined;

const drops = (): Record<string, number> => A.json("endpoint", "show", "vm-x").drops ?? {};
const grew = (b: Record<string, number>, a: Record<string, number>, r: string) => (a[r] ?? 0) - (b[r] ?? 0);

/** Hands the VM's sockets over (the CLI in its own process) to a socket this test listens on;
 * returns what arrived. */
async function handoff(name: string): Promise<{ about: any; fds: number[] }> {
  const path = join(dir, `${name}.sock`);
  const l = listenUnix(path);
  try {
    const cli = Bun.spawn([BINARY, "endpoint", "handoff", name, "--socket", path, "--api-socket", A.sock], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const got = acceptFds(l, 10_000);
    expect(await cli.exited).toBe(0);
    return { about: JSON.parse(got.data.toString().trim()), fds: got.fds };
  } finally {
    closeFd(l);
  }
}

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
    const h = await handoff("vm-x");
    expect(h.about).toMatchObject({ kind: "xsk", interface: ep.xsk.device, queues: 1, base: 0, map: ep.xsk.map });
    expect(h.fds).toHaveLength(1);
    const ifindex = JSON.parse(A.ns.execOk(["ip", "-j", "link", "show", ep.xsk.device]))[0].ifindex;
    vm = new TestVm(ep.xsk.device, A.ns.path, ep.mac, { frameQueues: [new XskQueue(h.fds[0] as number, ifindex, 0)] });
    expect(await vm.dhcp()).toBe(ep.ip);
    expect(await vm.resolve(ct.ip)).toBe(ct.mac);
    expect(await vm.ping(ct.ip, ct.mac)).toBe(true);
    const p = Bun.spawn(["ip", "netns", "exec", c1.name, "ping", "-c", "3", "-i", "0.2", "-W", "1", ep.ip], {
      stdout: "ignore",
      stderr: "ignore",
    });
    await vm.serve(1500);
    expect(await p.exited).toBe(0);
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
    const before = drops();
    expect(await v.ping(ct.ip, ct.mac, { mac: "02:00:00:00:99:96" }, 300)).toBe(false);
    expect(await v.ping(ct.ip, ct.mac, { ip: "10.97.0.77" }, 300)).toBe(false);
    v.send(
      ethArp(
        v.mac,
        "ff:ff:ff:ff:ff:ff",
        arp({ op: "request", senderMac: v.mac, senderIp: "10.97.0.77", targetIp: ct.ip }),
      ),
    );
    await Bun.sleep(300);
    const after = drops();
    expect({
      mac: grew(before, after, "mac-spoof"),
      ip4: grew(before, after, "ip4-spoof"),
      arp: grew(before, after, "arp-spoof"),
    }).toEqual({ mac: 1, ip4: 1, arp: 1 });
    v.send(udp4({ mac: v.mac, dstMac: ct.mac, src: ep.ip, dst: ct.ip, sport: 4001, dport: 9 }));
    const seen = await Promise.race([new Response(cap.stdout).text(), Bun.sleep(3000).then(() => "(nothing)")]);
    cap.kill();
    expect(seen).toContain(`${ep.ip}.4001 > ${ct.ip}.9`);
    expect(seen).not.toContain("10.97.0.77");
    expect(await v.ping(ct.ip, ct.mac)).toBe(true);
  });

  test("default deny and an egress cap hold for the VM", async () => {
    const v = vm as TestVm;
    A.json("firewall", "default", NET, "deny");
    try {
      const before = drops();
      expect(await v.ping(ct.ip, ct.mac, {}, 500)).toBe(false);
      expect(grew(before, drops(), "fw-default")).toBeGreaterThan(0);
    } finally {
      A.json("firewall", "default", NET, "allow");
    }
    A.json("endpoint", "set", "vm-x", "--egress-rate", "1mbit", "--egress-burst", "64k");
    try {
      const before = drops();
      const frame = udp4({
        mac: v.mac,
        dstMac: ct.mac,
        src: ep.ip,
        dst: ct.ip,
        sport: 4000,
        dport: 9,
        payload: new Uint8Array(1000),
      });
      for (let i = 0; i < 200; i++) v.send(frame);
      await Bun.sleep(200);
      const capped = grew(before, drops(), "egress-cap");
      expect(capped).toBeGreaterThan(100);
      expect(capped).toBeLessThan(200);
    } finally {
      A.json("endpoint", "set", "vm-x", "--egress-rate", "none");
    }
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
