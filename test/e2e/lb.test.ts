/** The load balancer with real clients: a gateway agent whose uplink leads to a router (BIRD,
 * and the "outside" client), three endpoints running HTTP and UDP servers as backends, and an
 * endpoint as a client inside. Requests from outside (IPv4, IPv6) and from inside reach every
 * backend and come back from the VIP; UDP too; a keep-alive connection keeps its backend while
 * the table changes; a killed backend leaves the table within its checks' time; with none
 * left BIRD loses the VIP's route, and gets it back when one revives; bad input is refused with
 * nothing changed. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { IPPROTO, ipv4, tcp } from "../../src/datapath/packet";
import { TestAgent } from "../helpers/agent";
import { bird, type Peer } from "../helpers/bgp-peers";
import { eth4, vlanTag } from "../helpers/frames";
import { until } from "../helpers/lab";
import { Netns, ROOT } from "../helpers/netns";

const BACKEND = join(ROOT, "test/helpers/lb-backend.py");
const CLIENT = join(ROOT, "test/helpers/lb-client.py");
const NODE4 = "10.98.0.1";
const NODE6 = "fd98::1";
const RT4 = "10.98.0.2";
const RT6 = "fd98::2";
const VIP4 = "192.0.2.80";
const VIP6 = "2001:db8:80::1";
const NAMES = ["b1", "b2", "b3"];
// Checks every 200 ms, 2 in a row either way: a dead backend is out within ~0.6 s.
const CHECK = ["--check-interval", "200ms", "--check-timeout", "150ms", "--check-rise", "2", "--check-fall", "2"];

let A: TestAgent;
let rt: Netns;
let dir: string;
let peer: Peer;
const ns: Record<string, Netns> = {};
const servers: Record<string, Subprocess> = {};

function client(from: Netns, ...args: string[]): any {
  const r = from.exec(["timeout", "60", "/usr/bin/python3", CLIENT, ...args]);
  const line = r.stdout.trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(`lb-client ${args.join(" ")}: ${r.stderr || r.stdout}`);
  }
}

async function serve(name: string): Promise<void> {
  const p = Bun.spawn(
    ["ip", "netns", "exec", (ns[name] as Netns).name, "/usr/bin/python3", BACKEND, name, "8080", "5353"],
    {
      stdout: "pipe",
      stderr: "ignore",
    },
  );
  servers[name] = p;
  const reader = p.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  if (!new TextDecoder().decode(value).includes("ready")) throw new Error(`backend ${name} did not start`);
}

async function stopServer(name: string): Promise<void> {
  const p = servers[name];
  if (!p) return;
  p.kill("SIGKILL");
  await p.exited;
  delete servers[name];
}

const show = (vip: string) => A.json("lb", "vip", "show", vip);
const healthy = (vip: string) => show(vip).healthy as number;
/** Drops at the uplink by reason (its XDP filter and tc hooks). */
const drops = (reason: string): number => (A.json("status").uplink?.drops?.[reason] as number | undefined) ?? 0;

beforeAll(async () => {
  A = new TestAgent("lb");
  rt = new Netns("lbrt");
  dir = mkdtempSync(join(tmpdir(), "stm-lb-"));
  for (const n of [...NAMES, "b4", "c1"]) ns[n] = new Netns(`lb${n}`);
  A.ns.execOk(["ip", "link", "add", "upl0", "type", "veth", "peer", "name", "lan0", "netns", rt.name]);
  A.ns.execOk(["ip", "link", "set", "upl0", "up"]);
  A.ns.execOk(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  A.ns.execOk(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
  rt.execOk(["ip", "addr", "add", `${RT4}/24`, "dev", "lan0"]);
  rt.execOk(["ip", "addr", "add", `${RT6}/64`, "dev", "lan0", "nodad"]);
  rt.execOk(["ip", "link", "set", "lan0", "up"]);
  // BIRD learns the VIPs; the router's kernel routes them to the node (BIRD exports nothing to it).
  rt.execOk(["ip", "route", "add", `${VIP4}/32`, "via", NODE4]);
  rt.execOk(["ip", "-6", "route", "add", `${VIP6}/128`, "via", NODE6]);
  rt.execOk(["ip", "route", "add", "10.61.0.0/24", "via", NODE4]);
  peer = bird({ rt, dir, routerAddress: RT4, speakerAddress: NODE4, speakerAs: 65001, peerAs: 65000 });
  await peer.start();
  await A.start(["--uplink", "upl0", "--gateway"]);
  A.ns.execOk(["ip", "addr", "add", `${NODE4}/24`, "dev", "cnv-user-br0"]);
  A.ns.execOk(["ip", "addr", "add", `${NODE6}/64`, "dev", "cnv-user-br0", "nodad"]);
  A.json(
    "network",
    "create",
    "--name",
    "app",
    "--cidr",
    "10.61.0.0/24",
    "--gateway",
    "10.61.0.1",
    "--cidr6",
    "fd61::/64",
    "--gateway6",
    "fd61::1",
  );
  for (const n of [...NAMES, "c1"])
    A.json("network", "attach", "app", "--name", n, "--netns", (ns[n] as Netns).name, "--configure");
  for (const n of NAMES) await serve(n);
  A.json("bgp", "config", "--asn", "65001");
  A.json("bgp", "peer", "add", "rt", "--address", RT4, "--asn", "65000");
}, 90_000);

afterAll(async () => {
  for (const n of Object.keys(servers)) await stopServer(n);
  await A?.kill();
  await peer?.stop();
  for (const n of Object.values(ns)) n.destroy();
  rt?.destroy();
  A?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("the load balancer on one gateway", () => {
  test("bad input is refused with one line, and nothing is changed", () => {
    A.json("lb", "vip", "add", "web", "--address", VIP4, "--port", "80", "--proto", "tcp", ...CHECK);
    for (const [args, code, text] of [
      [
        ["lb", "vip", "add", "x", "--address", "10.61.0.200", "--port", "80", "--proto", "tcp"],
        2,
        'inside network "app"',
      ],
      [["lb", "vip", "add", "x", "--address", VIP4, "--port", "80", "--proto", "tcp"], 9, 'is VIP "web" already'],
      [["lb", "vip", "add", "x", "--address", "127.0.0.9", "--port", "80", "--proto", "tcp"], 2, "loopback"],
      [["lb", "vip", "add", "x", "--address", VIP4, "--port", "0", "--proto", "tcp"], 2, "a port is 1 to 65535"],
      [
        ["lb", "vip", "add", "x", "--address", VIP4, "--port", "81", "--proto", "tcp", "--table-size", "1000"],
        2,
        "a prime",
      ],
      [["lb", "backend", "add", "web", "--endpoint", "nope"], 3, 'no endpoint "nope"'],
      [["lb", "backend", "add", "nope", "--endpoint", "b1"], 3, 'no VIP "nope"'],
      [["lb", "vip", "add", "x", "--adress", VIP4], 2, "did you mean --address"],
    ] as const) {
      const r = A.ctl(...args);
      expect({ args, code: r.code }).toEqual({ args, code });
      expect(r.stderr).toContain(text);
      expect(r.stderr.trim().split("\n").length).toBe(1);
    }
    expect(A.json("lb", "vip", "list").map((v: any) => v.name)).toEqual(["web"]);
  });

  test("three backends: they become healthy, and clients outside reach all of them through the VIP", async () => {
    for (const n of NAMES) A.json("lb", "backend", "add", "web", "--endpoint", n, "--port", "8080");
    await until("three healthy backends", () => healthy("web") === 3, 10_000);
    const r = client(rt, "spread", VIP4, "80", "60");
    expect(r.errors).toBe(0);
    expect(Object.keys(r.names).sort()).toEqual(NAMES);
    for (const n of NAMES) expect(r.names[n]).toBeGreaterThanOrEqual(5);
    const v = show("web");
    expect(v.backends.reduce((a: number, b: any) => a + b.hits.flows, 0)).toBeGreaterThanOrEqual(60);
    expect(v.announced).toBe(true);
    // /metrics has the same per backend.
    const m = await (await fetch("http://stratum/metrics", { unix: A.sock } as RequestInit)).text();
    for (const n of NAMES) {
      const line = m
        .split("\n")
        .find((l) => l.startsWith("stratum_lb_backend_flows_total{") && l.includes(`endpoint="${n}"`));
      expect(Number(line?.split(" ").at(-1))).toBe(v.backends.find((b: any) => b.endpoint === n).hits.flows);
    }
  }, 30_000);

  test("an endpoint inside reaches the VIP too, and its replies come from the VIP", () => {
    const r = client(ns.c1 as Netns, "spread", VIP4, "80", "20");
    expect(r.errors).toBe(0);
    expect(Object.keys(r.names).length).toBeGreaterThanOrEqual(2);
    // trace follows the translated packet to its backend; a port no VIP publishes is dropped.
    const t = A.json("trace", "--from", "c1", "--to", VIP4, "--proto", "tcp", "--dport", "80");
    expect(t.verdict).toBe("delivered");
    expect(t.summary).toMatch(
      /^load balancer: VIP web \(192\.0\.2\.80:80\/tcp\) → backend b[123] \(10\.61\.0\.\d+:8080\)/,
    );
    expect(t.to).toMatch(/^b[123]$/);
    const u = A.json("trace", "--from", "c1", "--to", VIP4, "--proto", "udp", "--dport", "81");
    expect([u.verdict, u.stages[0].reason.name]).toEqual(["dropped", "lb-unpublished"]);
  }, 30_000);

  test("no way around policy: the backends' network at default deny drops the VIP's flows at their ports until a rule lets them in", async () => {
    const fwDefault = () => NAMES.reduce((a, n) => a + (A.json("endpoint", "show", n).drops["fw-default"] ?? 0), 0);
    // The node's own checks (from the network's gateway address) may pass; nothing else.
    const checks = A.json(
      "firewall",
      "rule",
      "add",
      "app",
      "--priority",
      "10",
      "--src",
      "10.61.0.1",
      "--proto",
      "tcp",
      "--dport",
      "8080",
      "--action",
      "allow",
    );
    expect(A.ctl("firewall", "default", "app", "deny").code).toBe(0);
    const before = fwDefault();
    expect(client(rt, "spread", VIP4, "80", "2").errors).toBe(2);
    expect(client(ns.c1 as Netns, "spread", VIP4, "80", "1").errors).toBe(1);
    expect(fwDefault()).toBeGreaterThanOrEqual(before + 3);
    expect(healthy("web")).toBe(3);
    const open = A.json(
      "firewall",
      "rule",
      "add",
      "app",
      "--priority",
      "20",
      "--proto",
      "tcp",
      "--dport",
      "8080",
      "--action",
      "allow",
    );
    expect(client(rt, "spread", VIP4, "80", "10").errors).toBe(0);
    for (const r of [open, checks]) expect(A.ctl("firewall", "rule", "del", "app", String(r.id)).code).toBe(0);
    expect(A.ctl("firewall", "default", "app", "allow").code).toBe(0);
  }, 60_000);

  test("IPv6 and UDP: answers from the VIP's own address and port", async () => {
    A.json("lb", "vip", "add", "web6", "--address", VIP6, "--port", "80", "--proto", "tcp", ...CHECK);
    A.json("lb", "vip", "add", "dns", "--address", VIP4, "--port", "53", "--proto", "udp", "--check", "none");
    for (const n of NAMES) {
      A.json("lb", "backend", "add", "web6", "--endpoint", n, "--port", "8080");
      A.json("lb", "backend", "add", "dns", "--endpoint", n, "--port", "5353");
    }
    await until("web6 healthy", () => healthy("web6") === 3, 10_000);
    const r6 = client(rt, "spread", VIP6, "80", "30");
    expect(r6.errors).toBe(0);
    expect(Object.keys(r6.names).length).toBeGreaterThanOrEqual(2);
    for (const from of [rt, ns.c1 as Netns]) {
      const u = client(from, "udp", VIP4, "53");
      expect(u.source).toEqual([VIP4, 53]);
      expect(u.answer).toMatch(/^b[123] hello$/);
    }
  }, 30_000);

  test("DSR: the backends answer from the VIP themselves, outside and inside clients; only its backends may", async () => {
    const VIPD = "192.0.2.90";
    const spoofs = (n: string) => (A.json("endpoint", "show", n).drops["ip4-spoof"] as number | undefined) ?? 0;
    const edge = (port: string, proto: string) =>
      ["lb", "vip", "add", "edge", "--address", VIPD, "--port", port, "--proto", proto, "--mode", "dsr"] as const;
    const refused = A.ctl(...edge("68", "udp"));
    expect([refused.code, refused.stderr]).toEqual([2, expect.stringContaining("a DHCP client's port")]);
    A.json(...edge("8080", "tcp"), ...CHECK);
    try {
      const wrong = A.ctl("lb", "backend", "add", "edge", "--endpoint", "b1", "--port", "9090");
      expect([wrong.code, wrong.stderr]).toEqual([2, expect.stringContaining("is DSR")]);
      // What DSR asks of a backend (docs/load-balancer.md#direct-server-return): the VIP on its
      // loopback, never announced on its link.
      for (const n of NAMES) {
        const b = ns[n] as Netns;
        b.execOk(["ip", "addr", "add", `${VIPD}/32`, "dev", "lo"]);
        b.execOk(["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2"]);
        A.json("lb", "backend", "add", "edge", "--endpoint", n);
      }
      rt.execOk(["ip", "route", "add", `${VIPD}/32`, "via", NODE4]);
      // b1..b3 serve the NAT VIP "web" on 8080 as well: a DSR VIP may share a NAT VIP's backend.
      await until("edge healthy", () => healthy("edge") === 3, 10_000);
      expect(show("edge")).toMatchObject({ mode: "dsr", announced: true });
      const before = NAMES.map(spoofs);
      const r = client(rt, "spread", VIPD, "8080", "30");
      expect(r.errors).toBe(0);
      expect(Object.keys(r.names).length).toBeGreaterThanOrEqual(2);
      // The backend was reached at the VIP (not translated to its own address), and answered
      // from it: from outside and from an endpoint of the fabric.
      for (const from of [rt, ns.c1 as Netns]) {
        const w = client(from, "whoami", VIPD, "8080");
        expect(w.answer).toMatch(new RegExp(`^b[123] ${VIPD.replaceAll(".", "\\.")}$`));
        expect(w.peer).toEqual([VIPD, 8080]);
      }
      // Their answers from the VIP passed their ports: no spoof drop.
      expect(NAMES.map(spoofs)).toEqual(before);
      const t = A.json("trace", "--from", "c1", "--to", VIPD, "--proto", "tcp", "--dport", "8080");
      expect(t.verdict).toBe("delivered");
      expect(t.summary).toMatch(/^load balancer \(DSR\): VIP edge \(192\.0\.2\.90:8080\/tcp\) → backend b[123] /);
      // An endpoint that serves no DSR VIP cannot answer from it: its port drops the SYN-ACK-like
      // packet as any spoof.
      const c1 = ns.c1 as Netns;
      const c1Before = spoofs("c1");
      c1.execOk(["ip", "addr", "add", `${VIPD}/32`, "dev", "lo"]);
      c1.exec([
        "/usr/bin/python3",
        "-c",
        `import socket\ns=socket.socket()\ns.bind(("${VIPD}",8080))\ns.settimeout(1)\ntry: s.connect(("${RT4}",9))\nexcept OSError: pass`,
      ]);
      c1.execOk(["ip", "addr", "del", `${VIPD}/32`, "dev", "lo"]);
      expect(spoofs("c1")).toBeGreaterThan(c1Before);
      // From the LAN, straight to a backend's MAC with the VIP's address and port, VLAN-tagged
      // (the uplink balances untagged frames only): never delivered, vlan-tagged at the port.
      const b1 = A.json("endpoint", "show", "b1");
      const tagDrops = () => (A.json("endpoint", "show", "b1").drops["vlan-tagged"] as number | undefined) ?? 0;
      const tagBefore = tagDrops();
      const rtMac = rt.ipJson<{ address: string }[]>(["link", "show", "lan0"])[0]?.address as string;
      const syn = tcp({ src: RT4, dst: VIPD, sport: 40999, dport: 8080, flags: 2, seq: 1 });
      const tagged = vlanTag(eth4(rtMac, b1.mac, ipv4({ src: RT4, dst: VIPD, proto: IPPROTO.TCP }, syn)), 7);
      // What reaches b1 (its own capture, which a frame its port drops never meets).
      const seen = Bun.spawn(
        ["ip", "netns", "exec", (ns.b1 as Netns).name, "timeout", "3", "tcpdump", "-n", "-i", "eth0", "tcp port 40999"],
        { stdout: "pipe", stderr: "pipe" },
      );
      await Bun.sleep(500);
      rt.execOk([
        "/usr/bin/python3",
        "-c",
        `import socket\ns=socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\ns.bind(("lan0", 0))\nfor _ in range(5): s.send(bytes.fromhex("${tagged.toString("hex")}"))`,
      ]);
      await until("the tagged frames counted at b1's port", () => tagDrops() >= tagBefore + 5, 5_000);
      await seen.exited;
      expect(await new Response(seen.stderr).text()).toContain("0 packets captured");
      // From the LAN: the VIP's address on a port it does not publish is dropped at the uplink.
      const unpublished = drops("lb-unpublished");
      rt.exec([
        "timeout",
        "5",
        "/usr/bin/python3",
        "-c",
        `import socket\ntry: socket.create_connection(("${VIPD}",22),1)\nexcept OSError: pass`,
      ]);
      expect(drops("lb-unpublished")).toBeGreaterThan(unpublished);
    } finally {
      expect(A.json("lb", "vip", "del", "edge")).toEqual({ deleted: "edge" });
      rt.exec(["ip", "route", "del", `${VIPD}/32`]);
      for (const n of NAMES) (ns[n] as Netns).exec(["ip", "addr", "del", `${VIPD}/32`, "dev", "lo"]);
    }
  }, 60_000);

  test("a keep-alive connection keeps its backend while a backend is added and another removed", async () => {
    const p = Bun.spawn(["ip", "netns", "exec", rt.name, "/usr/bin/python3", CLIENT, "hold", VIP4, "80", "4"], {
      stdout: "pipe",
    });
    const reader = p.stdout.getReader();
    const { value } = await reader.read();
    const first = JSON.parse(new TextDecoder().decode(value).trim()).first as string;
    expect(NAMES).toContain(first);
    // While it holds: a new backend with a large weight, and one of the others gone.
    A.json("network", "attach", "app", "--name", "b4", "--netns", (ns.b4 as Netns).name, "--configure");
    await serve("b4");
    A.json("lb", "backend", "add", "web", "--endpoint", "b4", "--port", "8080", "--weight", "5");
    const other = NAMES.find((n) => n !== first) as string;
    expect(A.ctl("lb", "backend", "del", "web", "--endpoint", other).code).toBe(0);
    await until("b4 healthy", () => show("web").backends.some((b: any) => b.endpoint === "b4" && b.inTable), 5_000);
    let rest = "";
    for (;;) {
      const { value: v, done } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(v);
    }
    const last = JSON.parse(rest.trim().split("\n").at(-1) as string);
    expect(last).toEqual({ first, second: first });
    // New connections do reach the new backend.
    expect(client(rt, "spread", VIP4, "80", "30").names.b4).toBeGreaterThan(0);
    expect(A.ctl("lb", "backend", "del", "web", "--endpoint", "b4").code).toBe(0);
    A.json("lb", "backend", "add", "web", "--endpoint", other, "--port", "8080");
    await stopServer("b4");
    expect(A.ctl("network", "detach", "app", "--name", "b4").code).toBe(0);
    await until("three healthy again", () => healthy("web") === 3, 5_000);
  }, 30_000);

  test("a backend killed leaves the table within fall × interval + timeout; its flows go elsewhere", async () => {
    await stopServer("b2");
    const t0 = Date.now();
    await until(
      "b2 unhealthy",
      () => show("web").backends.find((b: any) => b.endpoint === "b2").health === "unhealthy",
      5_000,
    );
    // Detection: at most fall × interval + timeout (0.55 s) after the first failed check.
    expect(Date.now() - t0).toBeLessThan(3_000);
    const r = client(rt, "spread", VIP4, "80", "40");
    expect(r.errors).toBe(0);
    expect(r.names.b2).toBeUndefined();
    expect(Object.keys(r.names).sort()).toEqual(["b1", "b3"]);
    const b2 = show("web").backends.find((b: any) => b.endpoint === "b2");
    expect(b2.inTable).toBe(false);
    expect(b2.detail).toMatch(/refused|timeout|reset/);
  }, 30_000);

  test("every backend down: new flows are dropped (lb-no-backend), BIRD loses the VIP; one back: announced again", async () => {
    // The address stays announced while any VIP on it can serve: the UDP one (unchecked) goes.
    expect(A.ctl("lb", "vip", "del", "dns").code).toBe(0);
    await until("BGP up", () => peer.established(), 20_000);
    await until("BIRD has the VIP", () => `${VIP4}/32` in peer.routes(), 15_000);
    await stopServer("b1");
    await stopServer("b3");
    await until("no healthy backend", () => healthy("web") === 0 && healthy("web6") === 0, 5_000);
    await until("BIRD lost the VIP", () => !(`${VIP4}/32` in peer.routes()), 10_000);
    expect(show("web").announced).toBe(false);
    const before = drops("lb-no-backend");
    const r = client(rt, "spread", VIP4, "80", "2");
    expect(r.errors).toBe(2);
    expect(drops("lb-no-backend")).toBeGreaterThan(before);
    await serve("b3");
    await until("b3 healthy", () => healthy("web") === 1, 5_000);
    await until("BIRD has the VIP again", () => `${VIP4}/32` in peer.routes(), 10_000);
    expect(client(rt, "spread", VIP4, "80", "5").names).toEqual({ b3: 5 });
  }, 60_000);

  test("vip del: the VIP's packets are dropped (lb-unpublished), its route withdrawn; nothing left in the maps", async () => {
    for (const v of ["web", "web6"]) expect(A.ctl("lb", "vip", "del", v).code).toBe(0);
    await until("BIRD lost the VIP", () => !(`${VIP4}/32` in peer.routes()), 10_000);
    expect(A.json("lb", "vip", "list")).toEqual([]);
    const before = drops("lb-unpublished");
    const r = client(rt, "spread", VIP4, "80", "1");
    expect(r.errors).toBe(1);
    // The VIP's address entry is gone with it: the packet is no VIP's (routed back, or dropped).
    expect(drops("lb-unpublished")).toBe(before);
  }, 30_000);
});
