/** A gateway agent (agent --gateway) and its BGP speaker against BIRD 2 in a router namespace:
 * `bgp config` / `bgp peer add` start the session, every network's prefixes (IPv4 and IPv6)
 * reach BIRD's RIB with the gateway's next hops as networks are created and go as they are
 * deleted; an agent restart keeps the routes at BIRD (graceful restart) and a stop with
 * --withdraw-on-stop withdraws them; bad input is refused with nothing stored; `bgp status`,
 * `bgp routes` and -o json tell what is going on. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestAgent } from "../helpers/agent";
import { bird, type Peer } from "../helpers/bgp-peers";
import { until } from "../helpers/lab";
import { Netns, run } from "../helpers/netns";

const GW4 = "10.96.0.1";
const RT4 = "10.96.0.2";
const GW6 = "fd96::1";
const RT6 = "fd96::2";

let agent: TestAgent;
let rt: Netns;
let dir: string;
let peer: Peer;

const routes = () => peer.routes();
const keys = () => Object.keys(routes()).sort();

beforeAll(async () => {
  agent = new TestAgent("gwb");
  rt = new Netns("gwr");
  dir = mkdtempSync(join(tmpdir(), "stm-gwb-"));
  run(["ip", "-n", agent.ns.name, "link", "add", "rtr0", "type", "veth", "peer", "name", "gw0", "netns", rt.name]);
  for (const [ns, dev, a4, a6] of [
    [agent.ns, "rtr0", GW4, GW6],
    [rt, "gw0", RT4, RT6],
  ] as const) {
    ns.execOk(["ip", "addr", "add", `${a4}/24`, "dev", dev]);
    ns.execOk(["ip", "addr", "add", `${a6}/64`, "dev", dev, "nodad"]);
    ns.execOk(["ip", "link", "set", dev, "up"]);
  }
  peer = bird({ rt, dir, routerAddress: RT4, speakerAddress: GW4, speakerAs: 65001, peerAs: 65000 });
  await peer.start();
  await agent.start(["--gateway"]);
}, 60_000);

afterAll(async () => {
  await agent?.kill();
  await peer?.stop();
  agent?.destroy();
  rt?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("before any setting: bgp config says how to start; bgp peer add is refused", () => {
  const r = agent.ctl("bgp", "config");
  expect(r.code).toBe(3);
  expect(r.stderr).toContain("bgp config --asn N");
  const p = agent.ctl("bgp", "peer", "add", "bird", "--address", RT4, "--asn", "65000");
  expect(p.code).toBe(3);
});

test("bad input is refused and nothing is stored", () => {
  for (const [args, code, text] of [
    [["bgp", "config", "--asn", "23456"], 2, "AS_TRANS"],
    [["bgp", "config", "--asn", "0"], 2, "AS number"],
    [["bgp", "config", "--asn", "65001", "--router-id", "0.0.0.0"], 2, "router id"],
    [["bgp", "config", "--asn", "65001", "--restart-time", "5000"], 2, "restart time"],
    [["bgp", "config", "--router-id", "10.0.0.1"], 2, "give its AS"],
  ] as const) {
    const r = agent.ctl(...args);
    expect({ args, code: r.code }).toEqual({ args, code });
    expect(r.stderr).toContain(text);
  }
  expect(agent.ctl("bgp", "config").code).toBe(3);
});

test("config and a peer: the session comes up; each network's prefixes reach BIRD with our next hops", async () => {
  const c = agent.json("bgp", "config", "--asn", "65001");
  expect(c).toMatchObject({
    asn: 65001,
    routerId: null,
    routerIdInUse: null, // derived from the first peer, none yet
    restartTime: 120,
    gateway: true,
    running: true,
  });
  for (const [args, code, text] of [
    [["bgp", "peer", "add", "Bad_Name", "--address", RT4, "--asn", "65000"], 2, "peer name"],
    [["bgp", "peer", "add", "x", "--address", "127.0.0.1", "--asn", "65000"], 2, "unicast address"],
    [["bgp", "peer", "add", "x", "--address", RT4, "--asn", "65000", "--hold-time", "2"], 2, "hold time"],
    [
      ["bgp", "peer", "add", "x", "--address", RT4, "--asn", "65000", "--password-file", "/etc/hostname"],
      10,
      "chmod 600",
    ],
    [
      ["bgp", "peer", "add", "x", "--address", RT4, "--asn", "65000", "--password-file", "/nonexistent/key"],
      2,
      "cannot read the TCP MD5 key file",
    ],
  ] as const) {
    const r = agent.ctl(...args);
    expect({ args, code: r.code }).toEqual({ args, code });
    expect(r.stderr).toContain(text);
  }
  expect(agent.json("bgp", "peer", "list")).toEqual([]);
  // A key file only root reads: taken (its path stored, the key read when the session starts).
  const keyFile = join(dir, "md5.key");
  writeFileSync(keyFile, "k3y\n", { mode: 0o600 });
  const md5 = agent.json(
    "bgp",
    "peer",
    "add",
    "signed",
    "--address",
    "10.96.0.9",
    "--asn",
    "65000",
    "--password-file",
    keyFile,
  );
  expect(md5).toMatchObject({ name: "signed", md5: true });
  expect(agent.ctl("bgp", "peer", "list").stdout).toContain("signed (md5)");
  expect(agent.ctl("bgp", "peer", "del", "signed").code).toBe(0);

  const p = agent.json("bgp", "peer", "add", "bird", "--address", RT4, "--asn", "65000", "--hold-time", "9");
  expect(p).toMatchObject({
    name: "bird",
    address: RT4,
    asn: 65000,
    holdTimeConfigured: 9,
    nextHop4: GW4,
    nextHop6: GW6,
  });
  expect(agent.ctl("bgp", "peer", "add", "bird2", "--address", RT4, "--asn", "65000").code).toBe(9); // CONFLICT
  expect(agent.json("bgp", "config").routerIdInUse).toBe(GW4); // this node's address toward its first peer
  await until("established", () => agent.json<any[]>("bgp", "peer", "list")[0]?.state === "established", 20_000);
  expect(peer.established()).toBe(true);

  const n = agent.ctl(
    "network",
    "create",
    "--name",
    "routed",
    "--cidr",
    "10.61.0.0/24",
    "--gateway",
    "10.61.0.1",
    "--cidr6",
    "fd61::/64",
    "--gateway6",
    "fd61::1",
  );
  expect(n.code).toBe(0);
  await until("BIRD has the network", () => keys().length === 2);
  expect(routes()).toEqual({ "10.61.0.0/24": GW4, "fd61::/64": GW6 });
  expect(
    agent.ctl("network", "create", "--name", "second", "--cidr", "10.62.0.0/24", "--gateway", "10.62.0.1").code,
  ).toBe(0);
  await until("and the second", () => keys().includes("10.62.0.0/24"));
  // Masqueraded, a network is reached through its NAT address: withdrawn; routed again: back.
  expect(agent.ctl("network", "set", "second", "--nat").code).toBe(0);
  await until("a masqueraded network is withdrawn", () => !keys().includes("10.62.0.0/24"));
  expect(agent.json("bgp", "routes").wanted.sort()).toEqual(["10.61.0.0/24", "fd61::/64"]);
  expect(agent.ctl("network", "set", "second", "--nat", "off").code).toBe(0);
  await until("announced again when routed", () => keys().includes("10.62.0.0/24"));

  const st = agent.ctl("bgp", "status");
  expect(st.code).toBe(0);
  expect(st.stdout).toContain("established");
  const js = agent.json("bgp", "status");
  expect(js.peers[0]).toMatchObject({
    name: "bird",
    state: "established",
    prefixesSent: 3,
    holdTime: 9,
    peerRouterId: RT4,
  });
  const r = agent.json("bgp", "routes");
  expect(r.wanted.sort()).toEqual(["10.61.0.0/24", "10.62.0.0/24", "fd61::/64"]);
  expect(r.peers[0].announced.sort()).toEqual(r.wanted.sort());
  expect(agent.ctl("bgp", "routes").stdout).toContain("10.62.0.0/24");
  expect(agent.json("status").bgp).toEqual({
    asn: 65001,
    routerId: GW4,
    peers: 1,
    established: 1,
    announced: 3,
    withheld: null,
  });
  expect(agent.ctl("status").stdout).toContain(
    "bgp:            AS 65001, router id 10.96.0.1; 1/1 peer(s) established; 3 prefix(es) announced",
  );
  const m = await (await fetch("http://stratum/metrics", { unix: agent.sock } as RequestInit)).text();
  expect(m).toContain('stratum_bgp_session_up{peer="bird",address="10.96.0.2"} 1');
  expect(m).toContain('stratum_bgp_prefixes_announced{peer="bird"} 3');
  expect(m).toContain('stratum_bgp_sessions_established_total{peer="bird"} 1');

  expect(agent.ctl("network", "delete", "second").code).toBe(0);
  await until("withdrawn with its network", () => !keys().includes("10.62.0.0/24"));
  expect(keys()).toEqual(["10.61.0.0/24", "fd61::/64"]);
}, 60_000);

test("an agent restart keeps the routes at BIRD (graceful restart); --withdraw-on-stop withdraws them", async () => {
  await agent.kill("SIGTERM");
  await until("BIRD sees the session go", () => !peer.established(), 15_000);
  expect(keys()).toEqual(["10.61.0.0/24", "fd61::/64"]);
  await agent.start(["--gateway", "--withdraw-on-stop"]);
  await until("established again", () => agent.json<any[]>("bgp", "peer", "list")[0]?.state === "established", 30_000);
  await until("BIRD has the table", () => peer.established() && keys().length === 2);
  expect(routes()).toEqual({ "10.61.0.0/24": GW4, "fd61::/64": GW6 });
  await agent.kill("SIGTERM");
  await until("withdrawn on stop", () => keys().length === 0, 10_000);
  await agent.start(["--gateway"]);
}, 90_000);

test("a peer removed: its routes are withdrawn; bgp config --off forgets the rest", async () => {
  await until("established", () => agent.json<any[]>("bgp", "peer", "list")[0]?.state === "established", 30_000);
  await until("BIRD has the table", () => keys().length === 2);
  expect(agent.ctl("bgp", "peer", "del", "bird").code).toBe(0);
  await until("withdrawn", () => keys().length === 0);
  expect(agent.ctl("bgp", "peer", "del", "bird").code).toBe(3);
  expect(agent.ctl("bgp", "config", "--off").code).toBe(0);
  expect(agent.ctl("bgp", "config").code).toBe(3);
}, 60_000);

test("the gateway's uplink loses its carrier: every route is withdrawn; back: announced again", async () => {
  const inet = new Netns("gwi");
  try {
    run(["ip", "-n", agent.ns.name, "link", "add", "up0", "type", "veth", "peer", "name", "wan0", "netns", inet.name]);
    inet.execOk(["ip", "link", "set", "wan0", "up"]);
    await agent.kill("SIGTERM");
    await agent.start(["--gateway", "--uplink", "up0"]);
    expect(agent.json("bgp", "config", "--asn", "65001").running).toBe(true);
    agent.json("bgp", "peer", "add", "bird", "--address", RT4, "--asn", "65000");
    await until("BIRD has the table", () => peer.established() && keys().length === 2, 20_000);

    inet.execOk(["ip", "link", "set", "wan0", "down"]); // up0 loses its carrier
    await until("withdrawn", () => keys().length === 0, 10_000);
    expect(peer.established()).toBe(true); // the session stays: it does not run over the uplink
    const r = agent.json("bgp", "routes");
    expect(r.withheld).toBe("the uplink up0 has no carrier");
    expect(r.wanted).toEqual([]);
    expect(agent.ctl("bgp", "routes").stdout).toContain("nothing announced: the uplink up0 has no carrier");

    inet.execOk(["ip", "link", "set", "wan0", "up"]);
    await until("announced again", () => keys().length === 2, 10_000);
    expect(agent.json("bgp", "routes").withheld).toBeNull();
  } finally {
    inet.destroy();
  }
}, 90_000);

test("--import-default: the default routes BIRD announces go into the main table (proto bgp, metric 200), and leave", async () => {
  const defaults = () =>
    [4, 6].flatMap((f) =>
      agent.ns
        .ipJson<any[]>([`-${f}`, "route", "show", "default", "proto", "bgp"])
        .map((r) => `${r.dst} via ${r.gateway} metric ${r.metric}`),
    );
  await peer.stop();
  peer = bird({
    rt,
    dir,
    routerAddress: RT4,
    speakerAddress: GW4,
    speakerAs: 65001,
    peerAs: 65000,
    exportDefault: { nextHop6: RT6 },
  });
  await peer.start();
  await agent.kill("SIGTERM");
  await agent.start(["--gateway"]);
  await until("established", () => agent.json<any[]>("bgp", "peer", "list")[0]?.state === "established", 30_000);
  await Bun.sleep(500);
  expect(defaults()).toEqual([]); // received routes are ignored unless asked for

  expect(agent.json("bgp", "config", "--import-default")).toMatchObject({ importDefault: true, asn: 65001 });
  await until("both defaults installed", () => defaults().length === 2, 20_000);
  expect(defaults()).toEqual([`default via ${RT4} metric 200`, `default via ${RT6} metric 200`]);
  expect(agent.json<any[]>("bgp", "peer", "list")[0].defaults).toEqual([`0.0.0.0/0 via ${RT4}`, `::/0 via ${RT6}`]);
  expect(agent.ctl("bgp", "config").stdout).toContain("imported from the peers");

  // A stop for a restart keeps them, as the peers keep ours; the new agent takes them over.
  await agent.kill("SIGTERM");
  expect(defaults().length).toBe(2);
  await agent.start(["--gateway"]);
  await until("established again", () => agent.json<any[]>("bgp", "peer", "list")[0]?.state === "established", 30_000);
  expect(defaults().length).toBe(2);

  expect(agent.json("bgp", "config", "--no-import-default").importDefault).toBe(false);
  await until("removed", () => defaults().length === 0, 10_000);
  expect(agent.json("bgp", "config").asn).toBe(65001); // the rest kept
}, 120_000);
