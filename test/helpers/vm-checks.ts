/** What every VM backend's test proves the same way (vm-tap, vm-macvtap, vm-xsk): the VM pings a
 * container and answers its ping; frames from another MAC, another IPv4 address or an ARP claim
 * of another address are dropped at its port and counted; the network's default deny holds; an
 * egress cap holds for what it sends; another network's workload reaches it neither way; `trace`
 * and `monitor` see its packets as they see a container's. */
import { expect } from "bun:test";
import type { TestAgent } from "./agent";
import { arp, ethArp, udp4 } from "./frames";
import { BINARY } from "./netns";
import type { TestVm } from "./vm";

export interface VmCase {
  A: TestAgent;
  net: string;
  /** The VM's endpoint name, address and its TestVm. */
  name: string;
  ip: string;
  vm: TestVm;
  /** The container it talks to (its namespace, address, MAC). */
  ct: { ns: string; ip: string; mac: string };
}

const drops = (c: VmCase): Record<string, number> => c.A.json("endpoint", "show", c.name).drops ?? {};
const grew = (b: Record<string, number>, a: Record<string, number>, r: string) => (a[r] ?? 0) - (b[r] ?? 0);

export async function expectPingsBothWays(c: VmCase): Promise<void> {
  expect(await c.vm.resolve(c.ct.ip)).toBe(c.ct.mac);
  expect(await c.vm.ping(c.ct.ip, c.ct.mac)).toBe(true);
  const p = Bun.spawn(["ip", "netns", "exec", c.ct.ns, "ping", "-c", "3", "-i", "0.2", "-W", "1", c.ip], {
    stdout: "ignore",
    stderr: "ignore",
  });
  await c.vm.serve(1500);
  expect(await p.exited).toBe(0);
}

/** Spoofs from `spoofIp` and `spoofMac`: one of each kind dropped and counted by reason; the
 * VM's own frames still pass. */
export async function expectSpoofsDropped(c: VmCase, spoofIp: string, spoofMac: string): Promise<void> {
  const v = c.vm;
  const before = drops(c);
  expect(await v.ping(c.ct.ip, c.ct.mac, { mac: spoofMac }, 300)).toBe(false);
  expect(await v.ping(c.ct.ip, c.ct.mac, { ip: spoofIp }, 300)).toBe(false);
  v.send(
    ethArp(v.mac, "ff:ff:ff:ff:ff:ff", arp({ op: "request", senderMac: v.mac, senderIp: spoofIp, targetIp: c.ct.ip })),
  );
  await Bun.sleep(200);
  const after = drops(c);
  expect({
    mac: grew(before, after, "mac-spoof"),
    ip4: grew(before, after, "ip4-spoof"),
    arp: grew(before, after, "arp-spoof"),
  }).toEqual({ mac: 1, ip4: 1, arp: 1 });
  expect(await v.ping(c.ct.ip, c.ct.mac)).toBe(true);
}

/** The network's default deny drops the VM's ping (counted fw-default); allow lets it through. */
export async function expectDefaultDenyHolds(c: VmCase): Promise<void> {
  c.A.json("firewall", "default", c.net, "deny");
  try {
    const before = drops(c);
    expect(await c.vm.ping(c.ct.ip, c.ct.mac, {}, 500)).toBe(false);
    expect(grew(before, drops(c), "fw-default")).toBeGreaterThan(0);
  } finally {
    c.A.json("firewall", "default", c.net, "allow");
  }
  expect(await c.vm.ping(c.ct.ip, c.ct.mac)).toBe(true);
}

/** 200 kB sent at once against a 64 KiB bucket at 1 Mbit/s: the bucket's worth passes, the rest
 * (about 135 frames) is dropped, counted egress-cap. */
export async function expectEgressCapHolds(c: VmCase): Promise<void> {
  const v = c.vm;
  c.A.json("endpoint", "set", c.name, "--egress-rate", "1mbit", "--egress-burst", "64k");
  try {
    const before = drops(c);
    const frame = udp4({
      mac: v.mac,
      dstMac: c.ct.mac,
      src: c.ip,
      dst: c.ct.ip,
      sport: 4000,
      dport: 9,
      payload: new Uint8Array(1000),
    });
    for (let i = 0; i < 200; i++) v.send(frame);
    await Bun.sleep(200);
    const capped = grew(before, drops(c), "egress-cap");
    expect(capped).toBeGreaterThan(100);
    expect(capped).toBeLessThan(200);
  } finally {
    c.A.json("endpoint", "set", c.name, "--egress-rate", "none");
  }
}

/** Another network's workload `o` (a VM of its own, which writes raw frames) sends unicast straight to
 * the VM's MAC, and the VM to it: neither frame is delivered, each dropped and counted
 * other-network at the receiving port. */
export async function expectOtherNetworkHeld(
  c: VmCase,
  o: { name: string; ip: string; mac: string; vm: TestVm },
): Promise<void> {
  const of = (name: string): Record<string, number> => c.A.json("endpoint", "show", name).drops ?? {};
  const vb = drops(c);
  const ob = of(o.name);
  const answering = c.vm.serve(700);
  expect(await o.vm.ping(c.ip, c.vm.mac, {}, 300)).toBe(false);
  await answering;
  const va = drops(c);
  expect(grew(vb, va, "other-network")).toBe(1);
  const oAnswering = o.vm.serve(700);
  expect(await c.vm.ping(o.ip, o.mac, {}, 300)).toBe(false);
  await oAnswering;
  expect(grew(ob, of(o.name), "other-network")).toBe(1);
}

/** `trace` follows the VM's packet through its live programs (delivered; with another source MAC,
 * dropped at its port: mac-spoof), and `monitor` shows the VM's spoofed frame as it is dropped,
 * named by endpoint and network. */
export async function expectTracedAndMonitored(c: VmCase, spoofMac: string): Promise<void> {
  const trace = (...more: string[]) => c.A.json("trace", "--from", c.name, "--to", c.ct.ip, "--proto", "icmp", ...more);
  const ok = trace();
  expect({ verdict: ok.verdict, summary: ok.summary }).toMatchObject({ verdict: "delivered" });
  const bad = trace("--src-mac", spoofMac);
  expect({ verdict: bad.verdict, reason: bad.stages.at(-1)?.reason?.name }).toEqual({
    verdict: "dropped",
    reason: "mac-spoof",
  });
  const m = Bun.spawn(
    [
      "nsenter",
      `--net=${c.A.ns.path}`,
      BINARY,
      "monitor",
      "-o",
      "json",
      "--api-socket",
      c.A.sock,
      "--drops",
      "--endpoint",
      c.name,
      "--count",
      "1",
      "--duration",
      "10",
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  try {
    // The monitor is listening once its first spoof is seen; send until then.
    const out = new Response(m.stdout).text();
    for (let i = 0; i < 40 && m.exitCode === null; i++) {
      await c.vm.ping(c.ct.ip, c.ct.mac, { mac: spoofMac }, 100);
    }
    const lines = (await out).trim().split("\n").filter(Boolean);
    const ev = lines.length ? JSON.parse(lines[0] as string) : undefined;
    expect(ev).toMatchObject({ kind: "drop", endpoint: c.name, network: c.net, reason: "mac-spoof" });
  } finally {
    m.kill();
    await m.exited;
  }
}
