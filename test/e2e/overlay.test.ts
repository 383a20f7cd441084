/** The overlay on the three-node lab (test/helpers/lab.ts): endpoints of one network on
 * different nodes talk as on one bridge (ping, TCP, UDP; IPv4 and IPv6), two networks stay
 * apart across nodes, nothing floods the underlay, and forged VXLAN gets nowhere: from an
 * underlay host that is not a node (vtep-unknown, before decapsulation), and from a real node
 * speaking for an endpoint it does not run (overlay-spoof). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Lab, type LabNode, type LabWorkload, until } from "../helpers/lab";
import type { Netns } from "../helpers/netns";

let lab: Lab;
let n1: LabNode;
let n2: LabNode;
let n3: LabNode;
let a1: LabWorkload;
let a2: LabWorkload;
let a3: LabWorkload;
let b2: LabWorkload;

beforeAll(async () => {
  lab = await Lab.create({ nodes: 3, tag: "ov" });
  [n1, n2, n3] = lab.nodes as [LabNode, LabNode, LabNode];
  for (const n of lab.nodes) await n.start(n.clusterArgs());
  expect(
    n1.cli(
      "network",
      "create",
      "--name",
      "blue",
      "--cidr",
      "10.70.0.0/24",
      "--cidr6",
      "fd70::/64",
      "--gateway6",
      "fd70::1",
      "--gateway",
      "10.70.0.1",
    ).stderr,
  ).toBe("");
  expect(n1.cli("network", "create", "--name", "red", "--cidr", "10.71.0.0/24", "--gateway", "10.71.0.1").stderr).toBe(
    "",
  );
  for (const n of [n2, n3]) await until(`networks on ${n.name}`, () => n.json<any[]>("network", "list").length === 2);
  a1 = n1.workload("a1", "blue");
  a2 = n2.workload("a2", "blue");
  a3 = n3.workload("a3", "blue");
  b2 = n2.workload("b2", "red");
}, 90_000);
afterAll(() => lab?.destroy());

test("endpoints of one network on three nodes ping each other, IPv4 and IPv6", async () => {
  await until("a1 → a2", () => a1.ping(a2.ip), 10_000);
  expect(a1.ping(a3.ip)).toBe(true);
  expect(a3.ping(a2.ip)).toBe(true);
  const v6 = (w: LabWorkload) => w.endpoint.ip6 as string;
  expect(v6(a2)).toMatch(/^fd70::/);
  await until("a1 → a2 over IPv6", () => a1.exec(["ping", "-6", "-n", "-q", "-c", "1", "-W", "2", v6(a2)]).code === 0);
  expect(a3.exec(["ping", "-6", "-n", "-q", "-c", "1", "-W", "2", v6(a1)]).code).toBe(0);
}, 30_000);

const PYTHON = "/usr/bin/python3"; // Debian's, with python3-scapy
const FORGE = join(import.meta.dir, "../helpers/vxlan-forge.py");

interface Forged {
  outer: { src: string; dst: string };
  vni: number;
  inner: { src_mac: string; dst_mac: string; src_ip: string; dst_ip: string };
  kind?: "icmp" | "arp";
  count?: number;
}

/** Sends forged VXLAN from inside `ns` (a node's namespace or the switch's). */
function forge(ns: Netns, f: Forged): void {
  const r = ns.exec([PYTHON, FORGE, JSON.stringify(f)]);
  if (r.code !== 0) throw new Error(`vxlan-forge in ${ns.name}: ${r.stderr}`);
}

const overlayDrops = (n: LabNode): Record<string, number> => n.json<any>("status").overlay.drops;
const underlayDrops = (n: LabNode): Record<string, number> => n.json<any>("status").overlay.underlay?.drops ?? {};
const delta = (after: Record<string, number>, before: Record<string, number>) =>
  Object.fromEntries(
    Object.entries(after)
      .map(([k, v]) => [k, v - (before[k] ?? 0)] as const)
      .filter(([, v]) => v !== 0),
  );

/** Packets matching `filter` that `ns`'s `dev` saw while `action` ran (tcpdump). */
async function seen(ns: Netns, dev: string, filter: string, action: () => void | Promise<void>): Promise<number> {
  const p = Bun.spawn(["ip", "netns", "exec", ns.name, "tcpdump", "-i", dev, "-nn", "-l", "-q", filter], {
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    await Bun.sleep(500); // listening
    await action();
    await Bun.sleep(500);
  } finally {
    p.kill("SIGINT");
  }
  const out = await new Response(p.stdout).text();
  await p.exited;
  return out.split("\n").filter((l) => l.trim()).length;
}

test("status shows the overlay on every node: device, programs, nodes, remote endpoints, the underlay check", () => {
  for (const n of lab.nodes) {
    const ov = n.json<any>("status").overlay;
    expect(ov).toMatchObject({ device: "cnv-vxlan0", address: n.underlay.ipv4, state: "ok", nodes: 2 });
    expect(ov.remoteEndpoints).toBe(4 - n.workloads.length);
    expect(ov.ingressProgId).toBeGreaterThan(0);
    expect(ov.underlay).toMatchObject({ name: "und0" });
  }
  const link = n1.ns.ipJson<any>(["-d", "link", "show", "cnv-vxlan0"])[0];
  expect(link.linkinfo.info_data).toMatchObject({ external: true, learning: false, gbp: true, port: 4789 });
  expect(link.master).toBe("cnv-user-br0");
}, 30_000);

test("the underlay check is a tcx ingress link; an XDP one an earlier agent pinned is replaced on restart", async () => {
  const root = n1.agent.pins.path;
  // Debian's bpftool predates tcx: the pinned link and status's program stand for it.
  const tcxOn = (n: LabNode) =>
    n.ns.ipJson<any>(["-d", "link", "show", "und0"])[0]?.xdp === undefined &&
    existsSync(`${n.agent.pins.path}/links/underlay-tc-in`) &&
    n.json<any>("status").overlay.underlay?.progId > 0;
  expect(tcxOn(n1)).toBe(true);
  // What an agent before the tc check left: an XDP link on und0, pinned at links/underlay-xdp.
  const c = n1.cli("datapath", "counter", "attach", "--dev", "und0", "--hook", "xdp", "--pin-root", root);
  expect(c.code).toBe(0);
  renameSync(`${root}/counter/link_und0_xdp`, `${root}/links/underlay-xdp`);
  expect(n1.ns.ipJson<any>(["-d", "link", "show", "und0"])[0].xdp).toBeDefined();
  await n1.restart();
  await until("node1's overlay ok", () => n1.json<any>("status").overlay?.state === "ok");
  expect(existsSync(`${root}/links/underlay-xdp`)).toBe(false);
  expect(tcxOn(n1)).toBe(true);
  expect(n1.json<any>("status").overlay.underlay).toMatchObject({ name: "und0" });
  expect(a1.ping(a2.ip)).toBe(true);
}, 60_000);

test("TCP and UDP between nodes, IPv4 and IPv6 (iperf3)", () => {
  const srv = Bun.spawn(["ip", "netns", "exec", a2.ns.name, "iperf3", "-s", "-1", "-p", "5201"], { stdout: "ignore" });
  try {
    Bun.sleepSync(300);
    const tcp = a1.exec(["iperf3", "-c", a2.ip, "-p", "5201", "-t", "1", "-J"]);
    expect(tcp.code).toBe(0);
    expect(JSON.parse(tcp.stdout).end.sum_received.bytes).toBeGreaterThan(100_000);
  } finally {
    srv.kill();
  }
  const srv6 = Bun.spawn(["ip", "netns", "exec", a3.ns.name, "iperf3", "-s", "-1", "-p", "5202"], { stdout: "ignore" });
  try {
    Bun.sleepSync(300);
    const udp6 = a1.exec(["iperf3", "-6", "-c", a3.endpoint.ip6, "-p", "5202", "-u", "-b", "10M", "-t", "1", "-J"]);
    expect(udp6.code).toBe(0);
    const end = JSON.parse(udp6.stdout).end.sum;
    if (!end) throw new Error(`iperf3 UDP: ${udp6.stdout.slice(-600)}`);
    expect(end.packets).toBeGreaterThan(100);
    expect(end.lost_packets).toBe(0);
  } finally {
    srv6.kill();
  }
}, 30_000);

test("forged VXLAN from an underlay host that is not a node: dropped before decapsulation (vtep-unknown), IPv4 and IPv6 outer", async () => {
  const vni = n1.json<any>("network", "show", "blue").vni;
  expect(vni).toBeGreaterThan(0);
  const before = underlayDrops(n1);
  const inner = { src_mac: a2.endpoint.mac, dst_mac: a1.endpoint.mac, src_ip: a2.ip, dst_ip: a1.ip };
  const got = await seen(a1.ns, "eth0", "icmp and icmp[4:2] = 0x5354", () => {
    forge(lab.switch, { outer: { src: "10.99.0.254", dst: n1.underlay.ipv4 }, vni, inner, count: 3 });
    forge(lab.switch, { outer: { src: "fd99::254", dst: n1.underlay.ipv6 }, vni, inner, count: 2 });
  });
  expect(got).toBe(0);
  expect(delta(underlayDrops(n1), before)).toEqual({ "vtep-unknown": 5 });
}, 30_000);

test("forged inner sources from a real node: another node's endpoint, another address, another network; dropped (overlay-spoof)", async () => {
  const blue = n1.json<any>("network", "show", "blue").vni;
  const red = n1.json<any>("network", "show", "red").vni;
  const outer = { src: n2.underlay.ipv4, dst: n1.underlay.ipv4 };
  const to = { dst_mac: a1.endpoint.mac, dst_ip: a1.ip };
  const before = overlayDrops(n1);
  const got = await seen(a1.ns, "eth0", "icmp and icmp[4:2] = 0x5354", () => {
    // node2 speaking for node3's endpoint a3
    forge(n2.ns, { outer, vni: blue, inner: { ...to, src_mac: a3.endpoint.mac, src_ip: a3.ip } });
    // its own endpoint a2, with a3's address
    forge(n2.ns, { outer, vni: blue, inner: { ...to, src_mac: a2.endpoint.mac, src_ip: a3.ip } });
    // a2 in red's VNI
    forge(n2.ns, { outer, vni: red, inner: { ...to, src_mac: a2.endpoint.mac, src_ip: a2.ip } });
    // an ARP from a2 claiming a3's address
    forge(n2.ns, {
      outer,
      vni: blue,
      kind: "arp",
      inner: { ...to, src_mac: a2.endpoint.mac, src_ip: a3.ip },
    });
  });
  expect(got).toBe(0);
  // (The node's own multicast meets the device too: overlay-flood counts it, whenever it comes.)
  const { "overlay-flood": _f1, ...spoofs } = delta(overlayDrops(n1), before);
  expect(spoofs).toEqual({ "overlay-spoof": 12 });
  // The same frame with a2's own addresses is delivered: the checks are what stopped the rest.
  const ok = await seen(a1.ns, "eth0", "icmp and icmp[4:2] = 0x5354", () =>
    forge(n2.ns, { outer, vni: blue, inner: { ...to, src_mac: a2.endpoint.mac, src_ip: a2.ip }, count: 2 }),
  );
  expect(ok).toBeGreaterThanOrEqual(2);
}, 30_000);

test("two networks stay apart across nodes: a frame to another network's remote endpoint goes nowhere (other-network)", async () => {
  const before = overlayDrops(n2);
  const got = await seen(a1.ns, "eth0", "icmp and icmp[4:2] = 0x5354", () => {
    // b2 (red, node2) sends straight to a1's MAC (blue, node1), with its own addresses.
    const r = b2.exec([
      PYTHON,
      "-c",
      `from scapy.all import *; conf.verb=0; sendp(Ether(src="${b2.endpoint.mac}", dst="${a1.endpoint.mac}")/IP(src="${b2.ip}", dst="${a1.ip}")/ICMP(id=0x5354), iface="eth0", count=3)`,
    ]);
    expect(r.code).toBe(0);
  });
  expect(got).toBe(0);
  const { "overlay-flood": _f2, ...isolated } = delta(overlayDrops(n2), before);
  expect(isolated).toEqual({ "other-network": 3 });
  // Routed through its gateway it does not cross either: the overlay carries endpoints' own frames.
  expect(b2.ping(a1.ip)).toBe(false);
}, 30_000);

test("no broadcast crosses the underlay between known endpoints: ARP and ND are answered on the node", async () => {
  for (const w of [a1, a2, a3]) w.exec(["ip", "neigh", "flush", "all"]);
  const file = `/tmp/stm-overlay-${process.pid}.pcap`;
  const p = Bun.spawn(
    ["ip", "netns", "exec", lab.switch.name, "tcpdump", "-i", "br-und", "-nn", "-w", file, "udp port 4789"],
    {
      stdout: "ignore",
      stderr: "ignore",
    },
  );
  try {
    await Bun.sleep(500);
    expect(a1.ping(a2.ip, 3)).toBe(true);
    expect(a3.ping(a1.ip, 3)).toBe(true);
    expect(a2.exec(["ping", "-6", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2", a3.endpoint.ip6]).code).toBe(0);
    await Bun.sleep(300);
  } finally {
    p.kill("SIGINT");
    await p.exited;
  }
  try {
    const count = (filter: string) =>
      lab.switch
        .exec(["tcpdump", "-r", file, "-nn", filter])
        .stdout.split("\n")
        .filter((l) => l.trim()).length;
    expect(count("udp port 4789")).toBeGreaterThanOrEqual(18); // 3 pings × 2 ways × 3 pairs
    // The inner frame's destination MAC at the UDP payload's byte 8: its group bit.
    expect(count("udp port 4789 and udp[16] & 1 = 1")).toBe(0);
  } finally {
    rmSync(file, { force: true });
  }
}, 30_000);

test("MTU: a network made on a cluster node fits the overlay (1500 - 50): the workload's link and DHCP option 26 carry it", async () => {
  expect(n1.json<any>("network", "show", "blue").mtu).toBe(1450);
  expect(a1.ns.ipJson<any>(["link", "show", "eth0"])[0].mtu).toBe(1450);
  // A workload that configures itself: udhcpc asks, the node's DHCP server answers 1450.
  const d = n3.workload("d3", "blue", [], { configure: false });
  const log = `/tmp/stm-overlay-udhcpc-${process.pid}`;
  const script = `${log}.sh`;
  writeFileSync(script, `#!/bin/sh\necho "$1 mtu=$mtu" >> ${log}\n`, { mode: 0o755 });
  try {
    d.exec(["ip", "link", "set", "eth0", "up"]);
    const r = d.exec(["udhcpc", "-i", "eth0", "-n", "-q", "-f", "-s", script, "-O", "mtu", "-t", "5", "-T", "1"]);
    expect(r.code).toBe(0);
    expect(readFileSync(log, "utf8")).toContain("bound mtu=1450");
  } finally {
    rmSync(log, { force: true });
    rmSync(script, { force: true });
  }
}, 30_000);

test("MTU: a network that asks for more than the overlay carries gets ICMP errors back, and TCP finds the path's MTU", async () => {
  expect(
    n1.cli(
      "network",
      "create",
      "--name",
      "wide",
      "--cidr",
      "10.72.0.0/24",
      "--cidr6",
      "fd72::/64",
      "--gateway6",
      "fd72::1",
      "--gateway",
      "10.72.0.1",
      "--mtu",
      "1500",
    ).stderr,
  ).toBe("");
  await until("wide on node2", () => n2.json<any[]>("network", "list").some((n) => n.name === "wide"));
  const w1 = n1.workload("w1", "wide");
  const w2 = n2.workload("w2", "wide");
  expect(w1.ns.ipJson<any>(["link", "show", "eth0"])[0].mtu).toBe(1500);
  await until("w1 → w2", () => w1.ping(w2.ip));
  const ping4 = w1.exec(["ping", "-n", "-c", "2", "-i", "0.3", "-W", "1", "-M", "do", "-s", "1472", w2.ip]);
  expect(ping4.code).not.toBe(0);
  expect(ping4.stdout + ping4.stderr).toMatch(/mtu = 1450|Frag needed/i);
  expect(w1.exec(["ip", "route", "get", w2.ip]).stdout).toMatch(/mtu 1450/);
  const ping6 = w1.exec(["ping", "-6", "-n", "-c", "2", "-i", "0.3", "-W", "1", "-s", "1452", w2.endpoint.ip6]);
  expect(ping6.stdout + ping6.stderr).toMatch(/mtu = 1450|Packet too big/i);
  // One error each (IPv4, IPv6): after it the sender knows the path's MTU.
  expect(n1.json<any>("endpoint", "show", "w1").drops["overlay-mtu"]).toBe(2);
  // What fits goes through; TCP learns the path's MTU and moves its data.
  expect(w1.exec(["ping", "-n", "-c", "1", "-W", "2", "-s", "1400", w2.ip]).code).toBe(0);
  const srv = Bun.spawn(["ip", "netns", "exec", w2.ns.name, "iperf3", "-s", "-1", "-p", "5203"], { stdout: "ignore" });
  try {
    await Bun.sleep(300);
    const tcp = w1.exec(["iperf3", "-c", w2.ip, "-p", "5203", "-t", "1", "-J"]);
    expect(tcp.code).toBe(0);
    expect(JSON.parse(tcp.stdout).end.sum_received.bytes).toBeGreaterThan(100_000);
  } finally {
    srv.kill();
  }
}, 30_000);

test("trace --from EP --to REMOTE shows the overlay hop: node, VNI, device", () => {
  const t = n1.json<any>("trace", "--from", "a1", "--to", a2.ip);
  expect(t.verdict).toBe("delivered");
  expect(t.to).toBe("node node2");
  const hop = t.stages.find((s: any) => s.stage === "overlay");
  expect(hop).toMatchObject({ verdict: "pass", device: { name: "cnv-vxlan0" }, program: { name: "stm_overlay_out" } });
  const vni = n1.json<any>("network", "show", "blue").vni;
  expect(hop.note).toContain(`node node2 at ${n2.underlay.ipv4}, VNI ${vni}`);
  const text = n1.cli("trace", "--from", "a1", "--to", a2.ip);
  expect(text.stdout).toContain("overlay");
  expect(text.stdout).toContain(`VNI ${vni}`);
}, 30_000);

test("spoofed frames from a workload never reach a remote endpoint: dropped at its own port", async () => {
  const before = n1.json<any>("endpoint", "show", "a1").drops;
  const send = (frame: string) => {
    const r = a1.exec([PYTHON, "-c", `from scapy.all import *; conf.verb=0; sendp(${frame}, iface="eth0", count=3)`]);
    expect(r.code).toBe(0);
  };
  const icmp = "ICMP(id=0x5354)/b'forged'";
  const got = await seen(a2.ns, "eth0", "icmp and icmp[4:2] = 0x5354", () => {
    // a3's MAC (an endpoint of node3), a3's address, and both.
    send(`Ether(src="${a3.endpoint.mac}", dst="${a2.endpoint.mac}")/IP(src="${a1.ip}", dst="${a2.ip}")/${icmp}`);
    send(`Ether(src="${a1.endpoint.mac}", dst="${a2.endpoint.mac}")/IP(src="${a3.ip}", dst="${a2.ip}")/${icmp}`);
    send(
      `Ether(src="${a1.endpoint.mac}", dst="${a2.endpoint.mac}")/IPv6(src="${a3.endpoint.ip6}", dst="${a2.endpoint.ip6}")/ICMPv6EchoRequest(id=0x5354)`,
    );
  });
  expect(got).toBe(0);
  const after = n1.json<any>("endpoint", "show", "a1").drops;
  expect(delta(after, before)).toEqual({ "mac-spoof": 3, "ip4-spoof": 3, "ip6-spoof": 3 });
}, 30_000);
