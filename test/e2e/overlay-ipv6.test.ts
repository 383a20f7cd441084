/** The overlay over an IPv6 underlay: two lab nodes whose --node-address is their IPv6 address.
 * cnv-vxlan0 takes that address as its local VTEP, a network made there gets the overlay's MTU
 * (1,500 less 70), endpoints on the two nodes reach each other over IPv4 and IPv6, and VXLAN
 * over IPv6 from an underlay host that is not a node is dropped before decapsulation while
 * VXLAN from the other node passes. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { Lab, type LabNode, type LabWorkload, until } from "../helpers/lab";

let lab: Lab;
let n1: LabNode;
let n2: LabNode;
let a: LabWorkload;
let b: LabWorkload;

const PYTHON = "/usr/bin/python3"; // Debian's, with python3-scapy
const FORGE = join(import.meta.dir, "../helpers/vxlan-forge.py");

beforeAll(async () => {
  lab = await Lab.create({ nodes: 2, tag: "ov6" });
  [n1, n2] = [lab.node(1), lab.node(2)];
  for (const n of lab.nodes)
    await n.start(["--cluster", lab.etcd.url, "--node-name", n.name, "--node-address", n.underlay.ipv6]);
  const r = n1.cli(
    "network",
    "create",
    "--name",
    "six",
    "--cidr",
    "10.85.0.0/24",
    "--gateway",
    "10.85.0.1",
    "--cidr6",
    "fd85::/64",
    "--gateway6",
    "fd85::1",
  );
  if (r.code !== 0) throw new Error(`network create: ${r.stderr}`);
  await until("six on node2", () => n2.json<any[]>("network", "list").some((x) => x.name === "six"));
  a = n1.workload("a", "six");
  b = n2.workload("b", "six");
}, 60_000);

afterAll(() => lab?.destroy());

test("cnv-vxlan0's local VTEP is the node's IPv6 address; the network's MTU is 1,500 less 70", () => {
  const link = n1.ns.ipJson<any>(["-d", "link", "show", "cnv-vxlan0"])[0];
  expect(link.linkinfo.info_data).toMatchObject({ external: true, local6: n1.underlay.ipv6, port: 4789 });
  expect(n1.json<any>("status").overlay).toMatchObject({ address: n1.underlay.ipv6, state: "ok", nodes: 1 });
  expect(n1.json<any>("network", "show", "six").mtu).toBe(1430);
  expect(a.ns.ipJson<any>(["link", "show", "eth0"])[0].mtu).toBe(1430);
});

test("endpoints on the two nodes reach each other, IPv4 and IPv6, over the IPv6 underlay", async () => {
  await until("a → b", () => a.ping(b.ip), 10_000);
  expect(a.ping(b.endpoint.ip6)).toBe(true);
  expect(b.ping(a.ip)).toBe(true);
  // 1,402 bytes of ICMP payload fill the 1,430-byte MTU: the frame crosses whole, not fragmented.
  expect(a.exec(["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1402", b.ip]).code).toBe(0);
});

test("VXLAN over IPv6 from a host that is not a node: dropped before decapsulation (vtep-unknown)", () => {
  const vni = n1.json<any>("network", "show", "six").vni;
  const drops = () => n1.json<any>("status").overlay.underlay.drops["vtep-unknown"] as number;
  const before = drops();
  const inner = { src_mac: b.endpoint.mac, dst_mac: a.endpoint.mac, src_ip: b.ip, dst_ip: a.ip };
  const r = lab.switch.exec([
    PYTHON,
    FORGE,
    JSON.stringify({ outer: { src: "fd99::254", dst: n1.underlay.ipv6 }, vni, inner, count: 4 }),
  ]);
  expect(r.code).toBe(0);
  expect(drops() - before).toBe(4);
});
