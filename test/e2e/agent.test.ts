/** The agent end to end: a real agent in its own namespace (pins on the host's bpffs),
 * networks created and containers attached through the CLI, real pings across the real
 * bridge and port programs, isolation between networks, validation that changes nothing,
 * and an agent killed and restarted while traffic flows. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestAgent } from "../helpers/agent";
import { BINARY, Netns, run, runOk } from "../helpers/netns";

let A: TestAgent;
let agentNs: Netns;
let c1: Netns;
let c2: Netns;
let c3: Netns;

const ctl = (...args: string[]) => A.ctl(...args);
const json = (...args: string[]) => A.json(...args);
const startAgent = () => A.start(["--api-listen", "127.0.0.1:7446", "--api-token-file", `${A.dir}/token`]);
const ping = (ns: Netns, ip: string, n = 2) =>
  ns.exec(["ping", "-c", String(n), "-i", "0.1", "-W", "1", ip]).code === 0;

beforeAll(async () => {
  A = new TestAgent("agt");
  agentNs = A.ns;
  c1 = new Netns("c1");
  c2 = new Netns("c2");
  c3 = new Netns("c3");
  await startAgent();
}, 60_000);

afterAll(() => {
  for (const ns of [c1, c2, c3]) ns?.destroy();
  A?.destroy();
});

describe("networks and endpoints", () => {
  let bridgeMac = "";
  test("the agent made both bridges", () => {
    const names = agentNs.ipJson(["link", "show"]).map((l: any) => l.ifname);
    expect(names).toEqual(expect.arrayContaining(["cnv-mgmt-br0", "cnv-user-br0"]));
    bridgeMac = agentNs.ipJson(["link", "show", "cnv-user-br0"])[0].address;
    expect(bridgeMac).toMatch(/^02:/);
  });

  test("create networks: gateway on the bridge, profiles counted", () => {
    const app = json("network", "create", "--name", "app-net", "--cidr", "10.20.0.0/24", "--gateway", "10.20.0.1");
    expect(app).toMatchObject({
      name: "app-net",
      cidr: "10.20.0.0/24",
      gateway: "10.20.0.1",
      profiles: { total: 254, claimed: 0 },
      endpoints: [],
    });
    json(
      "network",
      "create",
      "--name",
      "db-net",
      "--cidr",
      "10.30.0.0/16",
      "--gateway",
      "10.30.0.1",
      "--dns-forwarder",
      "10.30.0.53",
      "--dns-forwarder",
      "10.30.0.54",
    );
    expect(json("network", "show", "db-net")).toMatchObject({
      profiles: { total: 65534 },
      dnsForwarders: ["10.30.0.53", "10.30.0.54"],
    });
    const addrs = agentNs
      .ipJson(["addr", "show", "cnv-user-br0"])[0]
      .addr_info.map((a: any) => `${a.local}/${a.prefixlen}`);
    expect(addrs).toEqual(expect.arrayContaining(["10.20.0.1/24", "10.30.0.1/16"]));
  });

  test("attach containers: profile MAC inside, port on the bridge with learning off, programs attached", () => {
    const w1 = json("network", "attach", "app-net", "--name", "web-1", "--netns", c1.name, "--configure");
    json("network", "attach", "app-net", "--name", "web-2", "--netns", c2.name, "--configure");
    json("network", "attach", "db-net", "--name", "db-1", "--netns", c3.name, "--configure", "--ip", "10.30.7.9");
    expect(w1).toMatchObject({ name: "web-1", network: "app-net", ip: "10.20.0.2", mac: "02:00:01:00:00:01" });
    expect(json("endpoint", "show", "db-1")).toMatchObject({ ip: "10.30.7.9", network: "db-net" });
    // The gateway's MAC is the bridge's own, not taken from a port: attaching changes nothing for the workloads' ARP.
    expect(agentNs.ipJson(["link", "show", "cnv-user-br0"])[0].address).toBe(bridgeMac);
    const inside = c1.ipJson(["addr", "show", "eth0"])[0];
    expect(inside.address).toBe(w1.mac);
    expect(inside.addr_info.map((a: any) => a.local)).toContain("10.20.0.2");
    const port = JSON.parse(agentNs.execOk(["bridge", "-j", "-d", "link", "show", "dev", w1.interface]))[0];
    expect(port).toMatchObject({ master: "cnv-user-br0", learning: false, flood: false });
    const fdb = JSON.parse(agentNs.execOk(["bridge", "-j", "fdb", "show", "dev", w1.interface]));
    expect(fdb.some((f: any) => f.mac === w1.mac && f.state === "static" && f.master === "cnv-user-br0")).toBe(true);
    expect(filters(w1.interface, "ingress")).toContain("stm_port_in");
    expect(filters(w1.interface, "egress")).toContain("stm_port_out");
  });

  test("containers on one network reach each other and the gateway", () => {
    expect(ping(c1, "10.20.0.3")).toBe(true);
    expect(ping(c2, "10.20.0.2")).toBe(true);
    expect(ping(c1, "10.20.0.1")).toBe(true);
    expect(ping(c3, "10.30.0.1")).toBe(true);
  });

  test("a container of another network cannot reach them at L2", () => {
    c3.execOk(["ip", "route", "add", "10.20.0.0/24", "dev", "eth0"]);
    expect(ping(c3, "10.20.0.2")).toBe(false);
    c3.execOk(["ip", "route", "del", "10.20.0.0/24", "dev", "eth0"]);
  });

  test("bad requests: one line, non-zero exit, nothing changed", () => {
    const before = JSON.stringify([json("network", "list"), json("endpoint", "list")]);
    const cases: Array<[string[], string]> = [
      [
        ["network", "create", "--name", "Bad_Name", "--cidr", "10.40.0.0/24", "--gateway", "10.40.0.1"],
        'invalid network name "Bad_Name"',
      ],
      [["network", "create", "--name", "x", "--cidr", "10.40.0.9/24", "--gateway", "10.40.0.1"], "has host bits set"],
      [
        ["network", "create", "--name", "x", "--cidr", "10.40.0.0/24", "--gateway", "10.41.0.1"],
        "is outside 10.40.0.0/24",
      ],
      [
        ["network", "create", "--name", "x", "--cidr", "10.30.8.0/24", "--gateway", "10.30.8.1"],
        "overlaps network db-net (10.30.0.0/16)",
      ],
      [
        ["network", "create", "--name", "app-net", "--cidr", "10.50.0.0/24", "--gateway", "10.50.0.1"],
        "network app-net already exists",
      ],
      [
        [
          "network",
          "create",
          "--name",
          "x",
          "--cidr",
          "10.40.0.0/24",
          "--gateway",
          "10.40.0.1",
          "--dhcp-range",
          "10.40.1.1-10.40.1.9",
        ],
        "outside the usable addresses",
      ],
      [["network", "attach", "app-net", "--name", "web-1", "--netns", c3.name], "endpoint web-1 already exists"],
      [
        ["network", "attach", "app-net", "--name", "web-9", "--netns", c3.name, "--ip", "10.20.0.2"],
        "10.20.0.2 is already claimed by endpoint web-1",
      ],
      [
        ["network", "attach", "app-net", "--name", "web-9", "--netns", "no-such-ns"],
        "network namespace no-such-ns does not exist",
      ],
      [
        ["network", "attach", "app-net", "--name", "web-9", "--netns", c1.name],
        `interface eth0 already exists in namespace ${c1.name}`,
      ],
      [["network", "delete", "app-net"], "has 2 endpoint(s) attached"],
      // Interface names the kernel would refuse (IFNAMSIZ) are refused first, as bad input.
      [
        ["network", "attach", "app-net", "--name", "vm-9", "--tap", "t".repeat(40)],
        `--tap "${"t".repeat(40)}" is not an interface name: 1-15 letters, digits, '.', '-' or '_'`,
      ],
      [
        ["network", "attach", "app-net", "--name", "web-9", "--netns", c3.name, "--ifname", "i".repeat(40)],
        `--ifname "${"i".repeat(40)}" is not an interface name`,
      ],
      [
        ["network", "attach", "app-net", "--name", "web-9", "--netns", c3.name, "--ifname", "a/b"],
        `--ifname "a/b" is not an interface name`,
      ],
    ];
    for (const [args, msg] of cases) {
      const r = ctl(...args);
      expect({ args, code: r.code === 0 ? 0 : "non-zero" }).toEqual({ args, code: "non-zero" });
      expect(r.stderr).toContain(msg);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
    expect(JSON.stringify([json("network", "list"), json("endpoint", "list")])).toBe(before);
    expect(
      c3
        .ipJson(["link", "show"])
        .map((l: any) => l.ifname)
        .sort(),
    ).toEqual(["eth0", "lo"]);
  }, 30_000); // 15 CLI processes: room for a loaded machine (not a timing claim)
});

test("network set changes the mutable fields and applies the MTU to its ports", () => {
  const n = json(
    "network",
    "set",
    "app-net",
    "--mtu",
    "1400",
    "--default-action",
    "deny",
    "--dns-forwarder",
    "10.20.0.53",
  );
  expect(n).toMatchObject({ mtu: 1400, defaultAction: "deny", dnsForwarders: ["10.20.0.53"], cidr: "10.20.0.0/24" });
  const w1 = json("endpoint", "show", "web-1");
  expect(agentNs.ipJson(["link", "show", w1.interface])[0].mtu).toBe(1400);
  expect(ctl("network", "set", "app-net").stderr).toContain("nothing to change");
  expect(ctl("network", "set", "app-net", "--mtu", "99").stderr).toContain("MTU 99 is outside 576-9000");
  expect(json("network", "set", "app-net", "--mtu", "1500", "--default-action", "allow")).toMatchObject({ mtu: 1500 });
});

test("a VM endpoint: a tap on the bridge with its programs, the profile MAC for the guest", () => {
  const vm = json("network", "attach", "app-net", "--name", "vm-1", "--tap", "vm1tap");
  expect(vm).toMatchObject({
    name: "vm-1",
    kind: "tap",
    interface: "vm1tap",
    ip: "10.20.0.4",
    mac: "02:00:01:00:00:03",
  });
  const tap = agentNs.ipJson(["-d", "link", "show", "vm1tap"])[0];
  expect(tap).toMatchObject({ master: "cnv-user-br0", linkinfo: { info_kind: "tun" } });
  expect(filters("vm1tap", "ingress")).toContain("stm_port_in");
  expect(filters("vm1tap", "egress")).toContain("stm_port_out");
  const r = ctl("network", "attach", "app-net", "--name", "vm-2", "--tap", "vm1tap");
  expect(r.stderr).toContain("interface vm1tap already exists on this node");
  expect(ctl("network", "detach", "app-net", "--name", "vm-1").code).toBe(0);
  expect(agentNs.exec(["ip", "link", "show", "vm1tap"]).code).not.toBe(0);
});

/** A request to the TCP listener from inside the agent's namespace: "STATUS BODY". */
function overTcp(auth: string, path = "/v1/networks", method = "GET"): string {
  const r = agentNs.exec([
    process.execPath,
    "-e",
    `fetch("http://127.0.0.1:7446${path}", { method: "${method}", headers: { authorization: "${auth}" } }).then(async (r) => console.log(r.status, await r.text()))`,
  ]);
  if (r.code !== 0) throw new Error(`probe failed: ${r.stderr}\nagent log:\n${A.logText}`);
  return r.stdout.trim();
}

test("the API socket is root-only; the TCP listener wants the bearer token", () => {
  expect(statSync(A.sock).mode & 0o777).toBe(0o600);
  expect(overTcp("Bearer wrong")).toBe('401 {"code":"UNAUTHORIZED","message":"wrong bearer token"}');
  const ok = overTcp("Bearer s3cret-token-for-the-tcp-listener");
  expect(ok.startsWith("200 ")).toBe(true);
  expect(ok).toContain('"name":"app-net"');
});

test("the CLI reaches the TCP listener through STRATUM_API_URL and STRATUM_API_TOKEN_FILE", () => {
  const viaTcp = (tokenFile: string, ...out: string[]) =>
    run(["nsenter", `--net=${agentNs.path}`, BINARY, "network", "list", ...out], {
      env: { STRATUM_API_URL: "http://127.0.0.1:7446", STRATUM_API_TOKEN_FILE: tokenFile },
    });
  const ok = viaTcp(join(A.dir, "token"), "-o", "json");
  expect({ code: ok.code, stderr: ok.stderr }).toEqual({ code: 0, stderr: "" });
  expect(JSON.parse(ok.stdout).map((n: any) => n.name)).toContain("app-net");
  const missing = viaTcp(join(A.dir, "no-such-token"));
  expect({ code: missing.code, stderr: missing.stderr }).toEqual({
    code: 2,
    stderr: `cenvero-str-ctl: cannot read the API token file ${join(A.dir, "no-such-token")}: ENOENT\n`,
  });
});

test("an agent refuses a token file others can read, before it touches anything", () => {
  const dir = mkdtempSync(join(tmpdir(), "stm-agt-token-"));
  try {
    const token = join(dir, "token");
    writeFileSync(token, `${A.token}\n`, { mode: 0o644 });
    chmodSync(token, 0o644);
    const r = run([
      "timeout",
      "20",
      "nsenter",
      `--net=${agentNs.path}`,
      BINARY,
      "agent",
      "--state-dir",
      join(dir, "state"),
      "--pin-root",
      A.pins.path,
      "--api-socket",
      join(dir, "api.sock"),
      "--api-listen",
      "127.0.0.1:7447",
      "--api-token-file",
      token,
    ]);
    expect({ code: r.code, out: r.stderr + r.stdout }).toEqual({
      code: 10,
      out: expect.stringContaining(
        `the API token file ${token} is readable or writable by group or others (mode 0644): chmod 600 ${token}`,
      ),
    });
    expect(existsSync(join(dir, "state"))).toBe(false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("every change through the API is in the audit log once: who, what, result", async () => {
  const before = auditLines().length;
  expect(ctl("network", "create", "--name", "audit-net", "--cidr", "10.77.0.0/24", "--gateway", "10.77.0.1").code).toBe(
    0,
  );
  expect(ctl("network", "create", "--name", "audit-net", "--cidr", "10.78.0.0/24", "--gateway", "10.78.0.1").code).toBe(
    9,
  );
  expect(json("network", "list").length).toBeGreaterThan(0); // a read: not audited
  expect(overTcp("Bearer wrong", "/v1/networks/audit-net", "DELETE")).toStartWith("401 ");
  expect(overTcp("Bearer s3cret-token-for-the-tcp-listener", "/v1/networks/audit-net", "DELETE")).toBe("204");
  let lines: string[] = [];
  for (let i = 0; i < 40 && lines.length < 4; i++) {
    await Bun.sleep(50); // the agent's log is written as it goes
    lines = auditLines().slice(before);
  }
  expect(lines).toEqual([
    expect.stringMatching(/uid=0 pid=\d+: POST \/v1\/networks \(createNetwork name=audit-net\) → 201$/),
    expect.stringMatching(/uid=0 pid=\d+: POST \/v1\/networks \(createNetwork name=audit-net\) → 409 CONFLICT$/),
    expect.stringMatching(
      /unauthenticated from 127\.0\.0\.1:\d+: DELETE \/v1\/networks\/audit-net \(unauthenticated\) → 401 UNAUTHORIZED$/,
    ),
    expect.stringMatching(
      /bearer token "token" from 127\.0\.0\.1:\d+: DELETE \/v1\/networks\/audit-net \(deleteNetwork name=audit-net\) → 204$/,
    ),
  ]);
  // The pid is the CLI process's, not the agent's.
  expect(lines[0]).not.toContain(`pid=${A.proc?.pid}:`);
});

/** The agent's audit lines so far. */
function auditLines(): string[] {
  return A.logText.split("\n").filter((l) => / audit: /.test(l));
}

/** Stratum's cls_bpf filter on a port, as tc shows it (program name and id). */
function filters(dev: string, dir: "ingress" | "egress"): string {
  return agentNs.execOk(["tc", "filter", "show", "dev", dev, dir]);
}

function ls(p: string): string[] {
  return require("node:fs").readdirSync(p);
}

test("reconcile repairs drift and lists each change; a second changes nothing; an operator's bridge address stays", () => {
  const first = json("reconcile");
  expect(first.changes).toEqual([]);
  const web1 = json("endpoint", "show", "web-1");
  const logFrom = A.logText.length;
  // Drift made by hand: a gateway address, a port's egress program, its FDB entry, its link state.
  agentNs.execOk(["ip", "addr", "del", "10.20.0.1/24", "dev", "cnv-user-br0"]);
  agentNs.execOk(["tc", "filter", "del", "dev", web1.interface, "egress"]);
  agentNs.execOk(["bridge", "fdb", "del", web1.mac, "dev", web1.interface, "master"]);
  agentNs.execOk(["ip", "link", "set", web1.interface, "down"]);
  // And an address of the operator's own on the user bridge (the node's LAN address, say).
  agentNs.execOk(["ip", "addr", "add", "192.0.2.10/24", "dev", "cnv-user-br0"]);
  const r = ctl("reconcile");
  expect(r.code).toBe(0);
  // The agent reconciles continuously: what rtnetlink reported may have been repaired by the
  // loop before this run (its runs and this one never overlap); each change is in one of them.
  const byLoop = A.logText
    .slice(logFrom)
    .split("\n")
    .filter((l) => l.includes("drift repaired: "))
    .join("\n");
  for (const c of [
    "add address 10.20.0.1/24 to cnv-user-br0",
    "attach cls_bpf filter (egress)",
    `add FDB entry ${web1.mac} on ${web1.interface}`,
    `change link ${web1.interface} (up)`,
  ])
    expect(`${r.stdout}\n${byLoop}`).toContain(c);
  expect(json("reconcile").changes).toEqual([]);
  expect(ping(c1, "10.20.0.3")).toBe(true);
  const addrs = agentNs.ipJson(["addr", "show", "dev", "cnv-user-br0"])[0].addr_info.map((a: any) => a.local);
  expect(addrs).toEqual(expect.arrayContaining(["10.20.0.1", "192.0.2.10"]));
  agentNs.execOk(["ip", "addr", "del", "192.0.2.10/24", "dev", "cnv-user-br0"]);
  expect(json("status").reconcile.last.changes).toEqual([]);
});

test("an agent killed and restarted while traffic flows: no packet lost, nothing changed", async () => {
  const linksBefore = agentNs
    .ipJson(["-d", "link", "show"])
    .map((l: any) => `${l.ifname}:${l.ifindex}:${l.master ?? ""}`);
  const ports = json("endpoint", "list").map((e: any) => e.interface as string);
  const programsBefore = ports.map((p: string) => filters(p, "ingress") + filters(p, "egress"));
  const flow = Bun.spawn(["ip", "netns", "exec", c1.name, "ping", "-c", "60", "-i", "0.05", "-W", "1", "10.20.0.3"], {
    stdout: "pipe",
  });
  await Bun.sleep(500);
  await A.kill("SIGKILL");
  expect(ping(c2, "10.20.0.2")).toBe(true); // enforcement and forwarding without any agent
  await startAgent();
  const out = await new Response(flow.stdout).text();
  await flow.exited;
  expect(out).toContain("60 packets transmitted, 60 received, 0% packet loss");
  const linksAfter = agentNs
    .ipJson(["-d", "link", "show"])
    .map((l: any) => `${l.ifname}:${l.ifindex}:${l.master ?? ""}`);
  expect(linksAfter).toEqual(linksBefore);
  // The restarted agent loaded new program ids but found the same code on every port: nothing replaced.
  expect(ports.map((p: string) => filters(p, "ingress") + filters(p, "egress"))).toEqual(programsBefore);
  expect(json("endpoint", "list").map((e: any) => e.name)).toEqual(["db-1", "web-1", "web-2"]);
});

test("one agent per pin root: a second refuses to start and the first goes on", () => {
  // The first agent was SIGKILLed and restarted above: the kernel dropped its lock with it.
  const dir = mkdtempSync(join(tmpdir(), "stm-agt2-"));
  try {
    const second = run([
      "timeout",
      "20",
      "nsenter",
      `--net=${agentNs.path}`,
      BINARY,
      "agent",
      "--state-dir",
      join(dir, "state"),
      "--pin-root",
      A.pins.path,
      "--api-socket",
      join(dir, "api.sock"),
    ]);
    expect(second.code).not.toBe(0);
    expect(second.code).not.toBe(124); // refused, not left running until the timeout
    expect(second.stderr + second.stdout).toContain(`another agent owns the pin root ${A.pins.path}`);
    expect(json("network", "list").length).toBeGreaterThan(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("detach and delete remove interfaces, programs and the gateway", () => {
  const w2 = json("endpoint", "show", "web-2");
  expect(ctl("network", "detach", "app-net", "--name", "web-2").code).toBe(0);
  expect(agentNs.exec(["ip", "link", "show", w2.interface]).code).not.toBe(0);
  expect(c2.ipJson(["link", "show"]).map((l: any) => l.ifname)).toEqual(["lo"]);
  expect(ctl("network", "delete", "app-net", "--force").code).toBe(0);
  expect(ctl("network", "delete", "db-net", "--force").code).toBe(0);
  expect(json("network", "list")).toEqual([]);
  expect(ls(`${A.pins.path}/maps`).sort()).toEqual([
    "stm_block4",
    "stm_block6",
    "stm_ct",
    "stm_drops",
    "stm_frags",
    "stm_fw_dst4",
    "stm_fw_dst6",
    "stm_fw_hits",
    "stm_fw_ports",
    "stm_fw_rules",
    "stm_fw_scopes",
    "stm_fw_src4",
    "stm_fw_src6",
    "stm_fw_stats",
    "stm_gw",
    "stm_ifaces",
    "stm_lb_backends",
    "stm_lb_bsrc",
    "stm_lb_cfg",
    "stm_lb_ct",
    "stm_lb_dsr",
    "stm_lb_hits",
    "stm_lb_rings",
    "stm_lb_stats",
    "stm_lb_vips",
    "stm_local",
    "stm_mon_cfg",
    "stm_mon_pace",
    "stm_mon_ring",
    "stm_mon_stats",
    "stm_mseg_cfg",
    "stm_mseg_ct",
    "stm_mseg_groups",
    "stm_mseg_hits",
    "stm_mseg_pol",
    "stm_nat",
    "stm_nat_addrs",
    "stm_nat_cfg",
    "stm_nat_frags",
    "stm_nat_nets",
    "stm_nat_scratch",
    "stm_nat_stats",
    "stm_port_stats",
    "stm_ports",
    "stm_profiles",
    "stm_remote",
    "stm_shape_cfg",
    "stm_shape_src",
    "stm_shape_state",
    "stm_subnets",
    "stm_uplink_mac",
    "stm_vip",
    "stm_vteps",
  ]);
  // No port configuration, profile, endpoint address or network firewall scope is left
  // behind; the local addresses left are the bridge's own MAC and link-local address, the
  // firewall scope the node's global one.
  const entries = (m: string) =>
    JSON.parse(runOk(["bpftool", "-j", "map", "dump", "pinned", `${A.pins.path}/maps/${m}`])).length;
  expect({
    ports: entries("stm_ports"),
    profiles: entries("stm_profiles"),
    local: entries("stm_local"),
    scopes: entries("stm_fw_scopes"),
    caps: entries("stm_shape_cfg"),
    subnets: entries("stm_subnets"),
  }).toEqual({ ports: 0, profiles: 0, local: 2, scopes: 1, caps: 0, subnets: 0 });
  const addrs = agentNs.ipJson(["addr", "show", "cnv-user-br0"])[0].addr_info.filter((a: any) => a.family === "inet");
  expect(addrs).toEqual([]);
});
