/** Masquerading at the uplink with real traffic: workloads of a masqueraded network reach an
 * "internet" namespace behind a router on the uplink's LAN, which has no route back to the
 * network (only the NAT address answers). TCP (curl to a web server), UDP (a DNS-style
 * exchange), ICMP echo, traceroute (TTL exceeded from the router, translated back), a PMTU
 * probe (fragmentation needed from a narrow link, translated back), IPv4 and IPv6; 10,000
 * concurrent TCP flows; the NAT range outside the kernel's ephemeral ports and around the
 * node's own sockets; exhaustion counted; nothing leaks untranslated; a LAN host cannot reach
 * the masqueraded network; `--nat off` routes again; trace shows the translation. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { TestAgent } from "../helpers/agent";
import { until } from "../helpers/lab";
import { BINARY, Netns } from "../helpers/netns";

let A: TestAgent;
const ns: Record<string, Netns> = {};
const ip: Record<string, string> = {};
const procs: Subprocess[] = [];

const NODE4 = "10.99.0.1";
const NODE6 = "fd99::1";
const RTR4 = "10.99.0.2";
const RTR6 = "fd99::2";
const NET4 = "198.51.100.1"; // the router's side toward the "internet"
const NET6 = "2001:db8:5::1";
const SRV4 = "198.51.100.2";
const SRV6 = "2001:db8:5::2";

const inNs = (n: string) => ns[n] as Netns;

/** A Python one-off in namespace `n`; its stdout. */
function py(n: string, code: string, timeoutMs = 60_000): string {
  const r = inNs(n).exec(["timeout", String(Math.ceil(timeoutMs / 1000)), "/usr/bin/python3", "-c", code]);
  if (r.code !== 0) throw new Error(`python in ${n} exited ${r.code}: ${r.stderr || r.stdout}`);
  return r.stdout.trim();
}

/** The source address and port the server saw, from a TCP connection made by `from`. */
function seenBy(from: string, dst: string, port = 8080): string {
  const url = dst.includes(":") ? `http://[${dst}]:${port}/` : `http://${dst}:${port}/`;
  const r = inNs(from).exec(["curl", "-s", "--max-time", "5", url]);
  if (r.code !== 0) throw new Error(`curl from ${from} to ${url}: exit ${r.code} ${r.stderr}`);
  return r.stdout.trim();
}

beforeAll(async () => {
  A = new TestAgent("nat");
  for (const n of ["w1", "w2", "r1", "rtr", "srv", "lan"]) ns[n] = new Netns(`nat${n}`);
  // Uplink upl0 ↔ rtr (the LAN router); rtr ↔ srv through a link of MTU 1280 (the PMTU probe).
  A.ns.execOk(["ip", "link", "add", "upl0", "type", "veth", "peer", "name", "lan0", "netns", inNs("rtr").name]);
  A.ns.execOk(["ip", "link", "set", "upl0", "up"]);
  A.ns.execOk(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  A.ns.execOk(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
  const rtr = inNs("rtr");
  rtr.execOk([
    "ip",
    "link",
    "add",
    "wan0",
    "mtu",
    "1280",
    "type",
    "veth",
    "peer",
    "name",
    "eth0",
    "netns",
    inNs("srv").name,
  ]);
  rtr.execOk(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  rtr.execOk(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
  for (const [dev, a4, a6] of [
    ["lan0", `${RTR4}/24`, `${RTR6}/64`],
    ["wan0", `${NET4}/24`, `${NET6}/64`],
  ] as const) {
    rtr.execOk(["ip", "addr", "add", a4, "dev", dev]);
    rtr.execOk(["ip", "addr", "add", a6, "dev", dev, "nodad"]);
    rtr.execOk(["ip", "link", "set", dev, "up"]);
  }
  const srv = inNs("srv");
  srv.execOk(["ip", "link", "set", "eth0", "mtu", "1280", "up"]);
  srv.execOk(["ip", "addr", "add", `${SRV4}/24`, "dev", "eth0"]);
  srv.execOk(["ip", "addr", "add", `${SRV6}/64`, "dev", "eth0", "nodad"]);
  srv.execOk(["ip", "route", "add", "default", "via", NET4]);
  srv.execOk(["ip", "-6", "route", "add", "default", "via", NET6]);
  // A host on the uplink's LAN that knows a route to the masqueraded network (it must not work).
  const lan = inNs("lan");
  rtr.execOk(["ip", "link", "add", "br-lan", "type", "bridge"]);
  rtr.execOk(["ip", "link", "set", "lan0", "master", "br-lan"]);
  rtr.execOk(["ip", "addr", "flush", "dev", "lan0"]);
  rtr.execOk(["ip", "addr", "add", `${RTR4}/24`, "dev", "br-lan"]);
  rtr.execOk(["ip", "addr", "add", `${RTR6}/64`, "dev", "br-lan", "nodad"]);
  rtr.execOk(["ip", "link", "set", "br-lan", "up"]);
  rtr.execOk(["ip", "link", "add", "lanh", "type", "veth", "peer", "name", "eth0", "netns", lan.name]);
  rtr.execOk(["ip", "link", "set", "lanh", "master", "br-lan", "up"]);
  lan.execOk(["ip", "addr", "add", "10.99.0.3/24", "dev", "eth0"]);
  lan.execOk(["ip", "link", "set", "eth0", "up"]);
  lan.execOk(["ip", "route", "add", "10.71.0.0/16", "via", NODE4]);

  await A.start(["--uplink", "upl0", "--nat-ports", "10000-29999"]);
  A.ns.execOk(["ip", "addr", "add", `${NODE4}/24`, "dev", "cnv-user-br0"]);
  A.ns.execOk(["ip", "addr", "add", `${NODE6}/64`, "dev", "cnv-user-br0", "nodad"]);
  A.ns.execOk(["ip", "route", "add", "default", "via", RTR4]);
  A.ns.execOk(["ip", "-6", "route", "add", "default", "via", RTR6]);
  A.json(
    "network",
    "create",
    "--name",
    "masq",
    "--cidr",
    "10.71.1.0/24",
    "--gateway",
    "10.71.1.1",
    "--cidr6",
    "fd71:1::/64",
    "--gateway6",
    "fd71:1::1",
    "--nat",
  );
  A.json("network", "create", "--name", "routed", "--cidr", "10.71.2.0/24", "--gateway", "10.71.2.1");
  for (const [e, net] of [
    ["w1", "masq"],
    ["w2", "masq"],
    ["r1", "routed"],
  ] as const) {
    const v = A.json("network", "attach", net, "--name", e, "--netns", inNs(e).name, "--configure");
    ip[e] = v.ip;
    if (v.ip6) ip[`${e}6`] = v.ip6;
  }
  // A web server that answers with the peer it sees, on both families.
  const web = `
import http.server, socketserver, socket, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = ("%s %d" % (self.client_address[0].replace("::ffff:", ""), self.client_address[1])).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
class S6(socketserver.ThreadingMixIn, http.server.HTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
S6(("::", 8080), H).serve_forever()`;
  // A UDP echo that answers with the peer it sees.
  const udp = `
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 5353))
while True:
    d, a = s.recvfrom(2048)
    s.sendto(("%s %d" % (a[0].replace("::ffff:", ""), a[1])).encode(), a)`;
  for (const code of [web, udp])
    procs.push(
      Bun.spawn(["ip", "netns", "exec", srv.name, "/usr/bin/python3", "-c", code], {
        stdout: "ignore",
        stderr: "ignore",
      }),
    );
  // The TCP sink of the many-flows test: accepts and holds every connection.
  procs.push(
    Bun.spawn(
      [
        "ip",
        "netns",
        "exec",
        srv.name,
        "/usr/bin/python3",
        "-c",
        `
import socket, select
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9000)); s.listen(4096); held = []
while True:
    c, _ = s.accept(); held.append(c)`,
      ],
      { stdout: "ignore", stderr: "ignore" },
    ),
  );
  await until("the servers answer", () => {
    try {
      return seenBy("w1", SRV4).length > 0;
    } catch {
      return false;
    }
  });
}, 90_000);

afterAll(() => {
  for (const p of procs) p.kill("SIGKILL");
  A?.destroy();
  for (const n of Object.values(ns)) n.destroy();
});

const natPort = (s: string) => Number(s.split(" ")[1]);

describe("a masqueraded network", () => {
  test("TCP leaves with the uplink's address and a port of the NAT range, IPv4 and IPv6", () => {
    for (const [dst, addr] of [
      [SRV4, NODE4],
      [SRV6, NODE6],
    ] as const) {
      const seen = seenBy("w1", dst);
      expect(seen.split(" ")[0]).toBe(addr);
      expect(natPort(seen)).toBeGreaterThanOrEqual(10000);
      expect(natPort(seen)).toBeLessThanOrEqual(29999);
    }
    // A routed network keeps its own address (the server has no route back: it never answers).
    const r = inNs("r1").exec(["curl", "-s", "--max-time", "2", `http://${SRV4}:8080/`]);
    expect(r.code).not.toBe(0);
  }, 30_000);

  test("UDP and its reply, both families", () => {
    for (const [dst, addr] of [
      [SRV4, NODE4],
      [SRV6, NODE6],
    ] as const) {
      const out = py(
        "w2",
        `
import socket
fam = socket.AF_INET6 if ":" in "${dst}" else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(b"hi", ("${dst}", 5353)); print(s.recvfrom(100)[0].decode())`,
      );
      expect(out.split(" ")[0]).toBe(addr);
      expect(natPort(out)).toBeGreaterThanOrEqual(10000);
    }
  }, 30_000);

  test("ICMP echo, both families", () => {
    expect(inNs("w1").exec(["ping", "-c", "2", "-W", "2", "-i", "0.2", SRV4]).code).toBe(0);
    expect(inNs("w1").exec(["ping", "-6", "-c", "2", "-W", "2", "-i", "0.2", SRV6]).code).toBe(0);
  }, 30_000);

  test("traceroute: the router's TTL exceeded comes back translated", () => {
    for (const [dst, hop, flag] of [
      [SRV4, RTR4, "-4"],
      [SRV6, RTR6, "-6"],
    ] as const) {
      const r = inNs("w1").exec(["traceroute", flag, "-n", "-w", "2", "-q", "1", "-m", "5", dst]);
      expect(r.code).toBe(0);
      const hops = r.stdout.split("\n").slice(1);
      // The gateway, then the LAN router (its error to the NAT address, translated back), then the server.
      expect(hops.some((h) => h.includes(hop))).toBe(true);
      expect(hops.some((h) => h.includes(dst))).toBe(true);
    }
  }, 30_000);

  test("PMTU: the narrow link's fragmentation needed / packet too big comes back translated", () => {
    // DF set, 1400 bytes: the router's 1280 link refuses and says so to the NAT address.
    const v4 = inNs("w2").exec(["ping", "-M", "do", "-s", "1372", "-c", "2", "-W", "2", SRV4]);
    expect(`${v4.stdout}${v4.stderr}`).toMatch(/mtu = 1280|Frag needed/i);
    expect(inNs("w2").exec(["ip", "route", "get", SRV4]).stdout).toContain("mtu 1280");
    inNs("w2").exec(["ping", "-6", "-s", "1400", "-c", "2", "-W", "2", SRV6]);
    expect(inNs("w2").exec(["ip", "-6", "route", "get", SRV6]).stdout).toContain("mtu 1280");
  }, 30_000);

  test("nothing leaves untranslated, and the LAN cannot reach the network", () => {
    const st = A.json("status");
    expect(st.uplink.drops["nat-untranslatable"] ?? 0).toBe(0);
    // A LAN host with a route to the network: dropped at the uplink (nat-inbound).
    expect(inNs("lan").exec(["ping", "-c", "1", "-W", "1", ip.w1 as string]).code).not.toBe(0);
    expect(A.json("status").uplink.drops["nat-inbound"]).toBeGreaterThan(0);
  }, 30_000);

  test("10,000 concurrent TCP flows to one server port", () => {
    const ok = py(
      "w1",
      `
import socket, select, resource, time
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
socks = []
for i in range(10000):
    s = socket.socket(); s.setblocking(False); s.connect_ex(("${SRV4}", 9000)); socks.append(s)
    if i % 500 == 499: time.sleep(0.05)
ep = select.epoll(); fds = {}
for s in socks: ep.register(s.fileno(), select.EPOLLOUT); fds[s.fileno()] = s
ok, left, end = 0, len(socks), time.time() + 60
while left and time.time() < end:
    for fd, _ in ep.poll(1):
        ep.unregister(fd); left -= 1
        ok += fds[fd].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
print(ok)
time.sleep(1)`,
      120_000,
    );
    expect(Number(ok)).toBe(10000);
    expect(A.json("status").uplink.drops["nat-exhausted"] ?? 0).toBe(0);
  }, 180_000);
});

describe("the global firewall scope judges workloads' own addresses, both ways", () => {
  test("a global rule on the masqueraded subnet or a workload matches its traffic; default deny still lets the replies in", () => {
    // Default deny at the uplink, one egress allow for the masqueraded network's web traffic:
    // the replies come back translated and pass as the flow's (its conntrack entry from the way out).
    A.json("firewall", "default", "--global", "deny");
    A.json(
      "firewall",
      "rule",
      "add",
      "--global",
      "--priority",
      "10",
      "--direction",
      "egress",
      "--src",
      "10.71.1.0/24",
      "--proto",
      "tcp",
      "--dport",
      "8080",
      "--action",
      "allow",
    );
    try {
      expect(seenBy("w1", SRV4).split(" ")[0]).toBe(NODE4);
      // Another port of the server: no rule allows it.
      expect(inNs("w1").exec(["curl", "-s", "--max-time", "2", `http://${SRV4}:8081/`]).code).not.toBe(0);
      // A rule on the workload's own address, not the NAT address, denies it.
      A.json(
        "firewall",
        "rule",
        "add",
        "--global",
        "--priority",
        "5",
        "--direction",
        "egress",
        "--src",
        ip.w1 as string,
        "--action",
        "deny",
      );
      expect(inNs("w1").exec(["curl", "-s", "--max-time", "2", `http://${SRV4}:8080/`]).code).not.toBe(0);
      expect(seenBy("w2", SRV4).split(" ")[0]).toBe(NODE4);
    } finally {
      A.json("firewall", "default", "--global", "allow");
      for (const r of A.json("firewall", "rule", "list", "--global").rules ?? [])
        A.ctl("firewall", "rule", "del", "--global", String(r.id));
    }
    expect(seenBy("w2", SRV4).split(" ")[0]).toBe(NODE4);
  }, 30_000);
});

describe("the operator's view", () => {
  test("network show, status, metrics and trace tell what is masqueraded and to what", async () => {
    const n = A.json("network", "show", "masq");
    expect(n.nat).toEqual({ addresses: [], v4: NODE4, v6: NODE6 });
    expect(A.ctl("network", "show", "masq").stdout).toContain(
      `nat:             masquerade at the uplink, IPv4 to ${NODE4}, IPv6 to ${NODE6} (the uplink's address); not announced`,
    );
    expect(A.json("network", "show", "routed").nat).toBeNull();
    const st = A.json("status").nat;
    expect(st.portRange).toEqual({ lo: 10000, hi: 29999 });
    expect(st.networks).toEqual([{ name: "masq", v4: NODE4, v6: NODE6 }]);
    expect(st.flows).toBeGreaterThan(0);
    expect(st.counters.translated).toBeGreaterThan(0);
    expect(st.counters["icmp-error"]).toBeGreaterThan(0);
    expect(A.ctl("status").stdout).toMatch(
      /nat: +masq → 10\.99\.0\.1, fd99::1; ports 10000-29999; \d+ flow\(s\); 0 refused/,
    );
    const m = await (await fetch("http://stratum/metrics", { unix: A.sock } as RequestInit)).text();
    expect(m).toMatch(/stratum_nat_events_total\{event="translated"\} [1-9]/);
    // trace: the uplink's egress shows what the packet leaves as.
    const t = A.json("trace", "--from", "w1", "--to", SRV4, "--proto", "tcp", "--dport", "443");
    const up = t.stages.find((s: { stage: string }) => s.stage === "uplink-egress");
    expect(up.translation.kind).toBe("masquerade");
    expect(up.translation.from).toBe(`${ip.w1}:40000`);
    expect(up.translation.to).toMatch(/^10\.99\.0\.1:\d+$/);
    expect(A.ctl("trace", "--from", "w1", "--to", SRV4, "--proto", "tcp", "--dport", "443").stdout).toContain(
      `masquerade: ${ip.w1}:40000 → ${NODE4}:`,
    );
    // Another network's gateway address is the node's own: delivered there, nothing translated.
    const g = A.json("trace", "--from", "w1", "--to", "10.71.2.1", "--proto", "icmp");
    expect(g.summary).toBe("delivered to the node (gateway 10.71.2.1)");
    expect(g.stages.some((s: { translation: unknown }) => s.translation)).toBe(false);
    // The routed network's packets leave as they are.
    const r = A.json("trace", "--from", "r1", "--to", SRV4, "--proto", "udp", "--dport", "53");
    expect(r.stages.find((s: { stage: string }) => s.stage === "uplink-egress").translation).toBeNull();
  }, 30_000);

  test("bad input is refused and changes nothing", () => {
    for (const [args, text] of [
      [["network", "set", "masq", "--nat-address", "10.71.1.9"], "inside network masq"],
      [["network", "set", "masq", "--nat-address", "127.0.0.1"], "loopback"],
      [
        ["network", "set", "masq", "--nat-address", "192.0.2.1", "--nat-address", "192.0.2.2"],
        "one IPv4 address at most",
      ],
      [["network", "set", "masq", "--nat-address", "nope"], "not an IPv4 or IPv6 address"],
      [["network", "set", "masq", "--nat=maybe"], "--nat must be"],
      [["network", "set", "masq", "--nat", "off", "--nat-address", "192.0.2.1"], "goes with --nat"],
    ] as const) {
      const r = A.ctl(...args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toContain(text);
    }
    expect(A.json("network", "show", "masq").nat).toEqual({ addresses: [], v4: NODE4, v6: NODE6 });
    // A NAT range inside the kernel's ephemeral ports: refused before anything is created.
    const dir = join(A.dir, "refused");
    const r = A.ns.exec([
      BINARY,
      "agent",
      "--nat-ports",
      "30000-40000",
      "--state-dir",
      dir,
      "--pin-root",
      `${dir}-pins`,
      "--api-socket",
      join(dir, "s"),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("overlaps the kernel's ephemeral ports");
    expect(existsSync(dir)).toBe(false);
  }, 30_000);

  test("--nat-address: the packets leave with it; --nat off routes the network again", () => {
    // An address the LAN router sends to this node: a second one on the bridge.
    A.ns.execOk(["ip", "addr", "add", "10.99.0.10/24", "dev", "cnv-user-br0"]);
    const n = A.json("network", "set", "masq", "--nat-address", "10.99.0.10");
    expect(n.nat).toEqual({ addresses: ["10.99.0.10"], v4: "10.99.0.10", v6: NODE6 });
    expect(seenBy("w2", SRV4).split(" ")[0]).toBe("10.99.0.10");
    expect(A.json("network", "set", "masq", "--nat").nat.addresses).toEqual([]);
    expect(seenBy("w2", SRV4).split(" ")[0]).toBe(NODE4);
    expect(A.json("network", "set", "masq", "--nat", "off").nat).toBeNull();
    expect(A.json("status").nat).toBeNull();
    // Routed: it leaves with its own address, and the server has no route back.
    expect(inNs("w2").exec(["curl", "-s", "--max-time", "2", `http://${SRV4}:8080/`]).code).not.toBe(0);
    expect(A.json("network", "set", "masq", "--nat").nat.v4).toBe(NODE4);
    expect(seenBy("w2", SRV4).split(" ")[0]).toBe(NODE4);
  }, 30_000);
});

describe("the NAT port range", () => {
  test("a port a socket of the node holds is skipped; a range in use toward a destination is exhaustion, counted", async () => {
    // 32 ports; the node's own UDP sockets hold the first 16 of them.
    await A.kill("SIGTERM");
    await A.start(["--uplink", "upl0", "--nat-ports", "61000-61031"]);
    const holders = Bun.spawn(
      [
        "ip",
        "netns",
        "exec",
        A.ns.name,
        "/usr/bin/python3",
        "-c",
        "import socket,time\nss=[socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]\nfor i,s in enumerate(ss): s.bind(('0.0.0.0', 61000+i))\ntime.sleep(60)",
      ],
      { stdout: "ignore", stderr: "ignore" },
    );
    procs.push(holders);
    // Until all 16 are bound (python's start is no fixed time on a loaded machine).
    for (let i = 0; i < 100; i++) {
      const bound = A.ns.exec(["ss", "-Hnul", "sport", ">=", ":61000", "and", "sport", "<=", ":61015"]).stdout;
      if (bound.trim().split("\n").filter(Boolean).length >= 16) break;
      await Bun.sleep(50);
    }
    const out = py(
      "w2",
      `
import socket
seen = []
# Every socket kept open: a closed one's port may come back to the next, the same flow again.
socks = []
for i in range(24):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1); socks.append(s)
    s.sendto(b"x", ("${SRV4}", 5353))
    try: seen.append(s.recvfrom(100)[0].decode().split()[1])
    except socket.timeout: seen.append("-")
print(" ".join(seen))`,
    );
    const ports = out.split(" ");
    const got = ports.filter((p) => p !== "-").map(Number);
    // Never a held port; at most the 16 free ones; the rest refused as exhaustion.
    expect(got.every((p) => p >= 61016 && p <= 61031)).toBe(true);
    expect(new Set(got).size).toBe(got.length);
    expect(got.length).toBeGreaterThan(8);
    expect(got.length).toBeLessThanOrEqual(16);
    const st = A.json("status");
    expect(st.uplink.drops["nat-exhausted"]).toBeGreaterThan(0);
    holders.kill("SIGKILL");
  }, 60_000);
});
