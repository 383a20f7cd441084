/** Microsegmentation across nodes on the three-node lab: the sender's group rides VXLAN-GBP
 * (seen on the underlay's wire: the G flag and the group id), the receiving node enforces the
 * policy on it, replies come back, a forged group from a host that is not a node or from a
 * node that does not run the endpoint gets nowhere, and a moved endpoint keeps its group. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { Lab, type LabNode, type LabWorkload, until } from "../helpers/lab";
import { BUN, type Netns, ROOT } from "../helpers/netns";

const PROBE = join(ROOT, "test/helpers/probe.ts");
const PYTHON = "/usr/bin/python3";
const FORGE = join(import.meta.dir, "../helpers/vxlan-forge.py");

let lab: Lab;
let n1: LabNode;
let n2: LabNode;
let n3: LabNode;
let web: LabWorkload;
let db: LabWorkload;
let free: LabWorkload;
const servers: Array<ReturnType<typeof Bun.spawn>> = [];
const ids: Record<string, number> = {};

const probe = (w: LabWorkload, mode: "tcp" | "udp", ip: string, port = 8080) =>
  w.exec([BUN, PROBE, mode, ip, String(port), "--timeout", "1200"]).stdout.includes('"ok":true');

beforeAll(async () => {
  lab = await Lab.create({ nodes: 3, tag: "msc" });
  [n1, n2, n3] = lab.nodes as [LabNode, LabNode, LabNode];
  for (const n of lab.nodes) await n.start(n.clusterArgs());
  n1.json(
    "network",
    "create",
    "--name",
    "seg",
    "--cidr",
    "10.77.0.0/24",
    "--gateway",
    "10.77.0.1",
    "--cidr6",
    "fd77::/64",
    "--gateway6",
    "fd77::1",
  );
  for (const n of [n2, n3]) await until(`network on ${n.name}`, () => n.json<any[]>("network", "list").length === 1);
  for (const g of ["prod", "prod/web", "prod/db"]) ids[g] = n1.json<any>("group", "create", g).id;
  web = n1.workload("web", "seg", ["--group", "prod/web"]);
  db = n2.workload("db", "seg");
  free = n3.workload("free", "seg");
  // Assigned from another node than the endpoint's: the store is the cluster's.
  n3.json("group", "assign", "db", "prod/db");
  for (const w of [web, db, free])
    servers.push(Bun.spawn(["ip", "netns", "exec", w.ns.name, BUN, PROBE, "serve", "8080"], { stdout: "ignore" }));
  n2.json(
    "microseg",
    "rule",
    "add",
    "--from",
    "prod/web",
    "--to",
    "prod/db",
    "--proto",
    "tcp",
    "--dport",
    "8080",
    "--action",
    "allow",
  );
  await until("web → db over the overlay", () => probe(web, "tcp", db.ip), 15_000);
}, 120_000);

afterAll(() => {
  for (const s of servers) s.kill("SIGKILL");
  lab?.destroy();
});

test("across nodes: the entry lets web reach db's TCP 8080 only, both families; db's replies return; untagged is denied", () => {
  expect(probe(web, "tcp", db.ip)).toBe(true);
  expect(probe(web, "tcp", db.endpoint.ip6)).toBe(true);
  expect(probe(web, "udp", db.ip)).toBe(false);
  expect(web.ping(db.ip)).toBe(false);
  expect(probe(db, "tcp", web.ip)).toBe(false);
  expect(probe(free, "tcp", db.ip)).toBe(false);
  expect(probe(web, "tcp", free.ip)).toBe(true); // free is in no group: not segmented
  expect(n2.json<any>("endpoint", "show", "db").drops["microseg-deny"]).toBeGreaterThanOrEqual(3);
  // The hits are counted where the policy is enforced: on db's node.
  const hits = n2.json<any>("microseg", "rule", "list").rules[0].hits.packets;
  expect(hits).toBeGreaterThanOrEqual(1);
}, 60_000);

test("on the wire: the sender's group in the VXLAN-GBP header (G flag, policy id), none for untagged", async () => {
  const file = `/tmp/stm-mseg-${process.pid}.pcap`;
  const cap = Bun.spawn(
    // Immediate mode: packets are written as they come, not a second's buffer later.
    [
      "ip",
      "netns",
      "exec",
      lab.switch.name,
      "tcpdump",
      "--immediate-mode",
      "-i",
      "br-und",
      "-nn",
      "-w",
      file,
      "udp port 4789",
    ],
    { stdout: "ignore", stderr: "ignore" },
  );
  try {
    await Bun.sleep(500);
    expect(probe(web, "tcp", db.ip)).toBe(true);
    expect(probe(web, "tcp", free.ip)).toBe(true); // free answers untagged
    await Bun.sleep(300);
  } finally {
    cap.kill("SIGINT");
    await cap.exited;
  }
  try {
    const count = (filter: string) =>
      lab.switch
        .exec(["tcpdump", "-r", file, "-nn", filter])
        .stdout.split("\n")
        .filter((l) => l.trim()).length;
    // The VXLAN header at the UDP payload: flags (0x80 G, 0x08 I), then the 16-bit policy id.
    expect(count(`udp port 4789 and udp[8] = 0x88 and udp[10:2] = ${ids["prod/web"]}`)).toBeGreaterThanOrEqual(3);
    expect(count(`udp port 4789 and udp[8] = 0x88 and udp[10:2] = ${ids["prod/db"]}`)).toBeGreaterThanOrEqual(2);
    // free is untagged: its answers carry no group.
    expect(count("udp port 4789 and udp[8] = 0x08")).toBeGreaterThanOrEqual(2);
    expect(count("udp port 4789 and udp[8] != 0x08 and udp[8] != 0x88")).toBe(0);
  } finally {
    rmSync(file, { force: true });
  }
}, 30_000);

test("a forged group gets nowhere: from an underlay host (vtep-unknown), from a node that does not run the endpoint (overlay-spoof)", () => {
  const vni = n1.json<any>("network", "show", "seg").vni;
  const forge = (ns: Netns, f: unknown) => {
    const r = ns.exec([PYTHON, FORGE, JSON.stringify(f)]);
    if (r.code !== 0) throw new Error(r.stderr);
  };
  const inner = { src_mac: web.endpoint.mac, dst_mac: db.endpoint.mac, src_ip: web.ip, dst_ip: db.ip };
  const drops = () => n2.json<any>("status").overlay;
  const before = drops();
  forge(lab.switch, {
    outer: { src: "10.99.0.254", dst: n2.underlay.ipv4 },
    vni,
    inner,
    gbp: ids["prod/web"],
    count: 3,
  });
  forge(n3.ns, { outer: { src: n3.underlay.ipv4, dst: n2.underlay.ipv4 }, vni, inner, gbp: ids["prod/web"], count: 2 });
  const after = drops();
  expect((after.underlay?.drops?.["vtep-unknown"] ?? 0) - (before.underlay?.drops?.["vtep-unknown"] ?? 0)).toBe(3);
  expect((after.drops["overlay-spoof"] ?? 0) - (before.drops["overlay-spoof"] ?? 0)).toBe(2);
}, 30_000);

test("a moved endpoint keeps its group: the policy holds on its new node", async () => {
  const m = n1.cli("endpoint", "move", "db", "--to", "node3", "-o", "json");
  expect(m.stderr).toBe("");
  expect(JSON.parse(m.stdout)).toMatchObject({ node: "node3", group: "prod/db" });
  await until("web → db on node3", () => probe(web, "tcp", db.ip), 15_000);
  expect(probe(web, "udp", db.ip)).toBe(false);
  expect(probe(free, "tcp", db.ip)).toBe(false); // free and db on one node now: the mark, not GBP
  expect(n3.json<any>("endpoint", "show", "db").drops["microseg-deny"]).toBeGreaterThanOrEqual(2);
}, 60_000);
