/** North-south over the overlay on the lab (test/helpers/lab.ts): node1 is a gateway (agent
 * --gateway, its uplink on a LAN with a server), node2 and node3 are not and have no way out
 * of their own. A workload on node2 reaches the server through node1: masqueraded to node1's
 * uplink address (TCP, UDP, ping, both directions over the overlay), or routed with its own
 * address (the server routes the network to node1). Workloads on node2 still talk to each
 * other and to node2's own gateway address locally. A node that is not a gateway cannot speak
 * for the gateway MAC (overlay-spoof), and east-west routed traffic never rides the overlay. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { Lab, type LabNode, type LabWorkload, until } from "../helpers/lab";
import { Netns } from "../helpers/netns";

let lab: Lab;
let n1: LabNode;
let n2: LabNode;
let srv: Netns;
let w2: LabWorkload;
let r2: LabWorkload;
const procs: Subprocess[] = [];

const GW_UPLINK = "192.0.2.1";
const SRV = "192.0.2.2";

/** What the server saw as the peer of an HTTP request from `w`, or null when it got nothing. */
function seen(w: LabWorkload): string | null {
  const r = w.exec(["curl", "-s", "--max-time", "3", `http://${SRV}:8080/`]);
  return r.code === 0 ? (r.stdout.trim().split(" ")[0] ?? null) : null;
}

beforeAll(async () => {
  lab = await Lab.create({ nodes: 3, tag: "nso" });
  [n1, n2] = lab.nodes as [LabNode, LabNode];
  srv = new Netns("nsosrv");
  n1.ns.execOk(["ip", "link", "add", "upl0", "type", "veth", "peer", "name", "eth0", "netns", srv.name]);
  n1.ns.execOk(["ip", "link", "set", "upl0", "up"]);
  n1.ns.execOk(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  srv.execOk(["ip", "addr", "add", `${SRV}/24`, "dev", "eth0"]);
  srv.execOk(["ip", "link", "set", "eth0", "up"]);
  srv.execOk(["ip", "route", "add", "10.74.0.0/16", "via", GW_UPLINK]);
  await n1.start([...n1.clusterArgs(), "--uplink", "upl0", "--gateway"]);
  n1.ns.execOk(["ip", "addr", "add", `${GW_UPLINK}/24`, "dev", "cnv-user-br0"]);
  for (const n of lab.nodes.slice(1)) {
    await n.start(n.clusterArgs());
    n.ns.execOk(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  }
  n1.json("network", "create", "--name", "masq", "--cidr", "10.74.1.0/24", "--gateway", "10.74.1.1", "--nat");
  n1.json("network", "create", "--name", "routed", "--cidr", "10.74.2.0/24", "--gateway", "10.74.2.1");
  await until("networks on node2", () => n2.json<any[]>("network", "list").length === 2);
  w2 = n2.workload("w2", "masq");
  r2 = n2.workload("r2", "routed");
  const web = `
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = ("%s %d" % self.client_address[:2]).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()`;
  procs.push(
    Bun.spawn(["ip", "netns", "exec", srv.name, "/usr/bin/python3", "-c", web], { stdout: "ignore", stderr: "ignore" }),
  );
  await until("node2 knows node1 is a gateway", () => seen(w2) !== null, 20_000);
}, 120_000);

afterAll(() => {
  for (const p of procs) p.kill("SIGKILL");
  lab?.destroy();
  srv?.destroy();
});

test("a masqueraded network's workload on a node without a way out reaches the server through the gateway node", () => {
  expect(seen(w2)).toBe(GW_UPLINK);
  expect(w2.ping(SRV)).toBe(true);
  const st = n1.json("status");
  expect(st.nat.counters.translated).toBeGreaterThan(0);
}, 30_000);

test("a routed network's workload: through the gateway node with its own address", () => {
  expect(seen(r2)).toBe(r2.ip);
  expect(r2.ping(SRV)).toBe(true);
}, 30_000);

test("east-west stays local: node2's workloads reach each other's network's gateway and node2 itself", () => {
  // The routed network's gateway on node2 answers (anycast), and routing between the two
  // networks happens on node2, not over the overlay.
  expect(w2.ping("10.74.1.1")).toBe(true);
  expect(w2.ping(r2.ip)).toBe(true);
}, 30_000);

test("trace on the node shows the packet going to a gateway node over the overlay", () => {
  const t = n2.json("trace", "--from", "w2", "--to", SRV, "--proto", "tcp", "--dport", "8080");
  expect(t.verdict).toBe("delivered");
  expect(t.stages.map((s: { stage: string; verdict: string }) => `${s.stage}:${s.verdict}`)).toEqual([
    "port-ingress:pass",
    "overlay:forward",
  ]);
  expect(t.summary).toContain("sent to a gateway node over the overlay");
}, 30_000);

test("the gateway node's status and the other nodes' view", () => {
  const nodes = n2.json<any[]>("node", "list");
  expect(nodes.find((n) => n.name === "node1").roles).toEqual(["gateway"]);
  expect(nodes.find((n) => n.name === "node2").roles).toEqual([]);
  // Nothing was refused on the way: no overlay drops on either side.
  for (const n of [n1, n2]) {
    const ov = n.json("status").overlay;
    expect({ node: n.name, spoof: ov.drops["overlay-spoof"] ?? 0 }).toEqual({ node: n.name, spoof: 0 });
  }
}, 30_000);

test("only a gateway node speaks for the gateway MAC, and only from outside the fabric: forged frames are overlay-spoof", async () => {
  const n3 = lab.nodes[2] as LabNode;
  const vni = n2.json<any>("network", "show", "masq").vni;
  const mac = JSON.parse(n2.ns.execOk(["ip", "-j", "link", "show", "cnv-user-br0"]))[0].address as string;
  const to = { dst_mac: w2.endpoint.mac, dst_ip: w2.ip };
  const forge = (from: LabNode, srcIp: string) => {
    const r = from.ns.exec([
      "/usr/bin/python3",
      join(import.meta.dir, "../helpers/vxlan-forge.py"),
      JSON.stringify({
        outer: { src: from.underlay.ipv4, dst: n2.underlay.ipv4 },
        vni,
        inner: { ...to, src_mac: mac, src_ip: srcIp },
      }),
    ]);
    if (r.code !== 0) throw new Error(`vxlan-forge: ${r.stderr}`);
  };
  const spoofs = () => n2.json("status").overlay.drops["overlay-spoof"] ?? 0;
  const before = spoofs();
  forge(n3, SRV); // node3 is not a gateway
  forge(n1, r2.ip); // a gateway, but the source is inside the fabric (east-west)
  await until("counted", () => spoofs() - before >= 6);
  expect(spoofs() - before).toBe(6);
  // The same from the gateway with an outside source is what a reply looks like: admitted,
  // and delivered to w2 (tcpdump in its namespace), as the forged ones were not.
  const dump = Bun.spawn(
    ["ip", "netns", "exec", w2.ns.name, "tcpdump", "-i", "eth0", "-nn", "-l", "-q", "icmp and icmp[4:2] = 0x5354"],
    { stdout: "pipe", stderr: "ignore" },
  );
  await Bun.sleep(500);
  forge(n1, SRV);
  await Bun.sleep(500);
  dump.kill("SIGINT");
  const lines = (await new Response(dump.stdout).text()).split("\n").filter((l) => l.includes(`${SRV} >`));
  expect(lines.length).toBe(3);
  expect(spoofs() - before).toBe(6);
}, 30_000);
