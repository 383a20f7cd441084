/** The firewall under real traffic: a real agent with an uplink, a client and a server
 * workload in one network and an outside namespace beyond the uplink. Real TCP, UDP and ICMP
 * clients (Bun sockets, ping) check allowed, denied and reply traffic, a connection that
 * lives through rule changes, reject (a reset, an unreachable; at a port and at the uplink) and
 * the blocklist at the uplink.
 *
 * With STRATUM_TEST_EXTENSIONS=1 (scripts/test runs the file a second time so, with
 * STRATUM_LONG=1) the agent's
 * bridges take 4 ports each: srv is a port of cnv-user-br0, cli of the extension bridge
 * cnv-user-br1, so every flow and every reject's answer crosses the link between them. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { TestAgent } from "../helpers/agent";
import { BUN, Netns, ROOT } from "../helpers/netns";

const PROBE = join(ROOT, "test/helpers/probe.ts");
const NET = "fwt";
/** The run with the workloads split over cnv-user-br0 and an extension bridge. */
const EXTENSIONS = process.env.STRATUM_TEST_EXTENSIONS === "1";
let A: TestAgent;
let out: Netns;
let cliNs: Netns;
let srvNs: Netns;
let srv: { ip: string; ip6: string };
let cli: { ip: string };
const servers: Subprocess[] = [];

function probe(ns: Netns, ...args: string[]): { ok?: boolean; error?: string; sent?: number; echoed?: number } {
  const r = ns.exec([BUN, PROBE, ...args]);
  const line = r.stdout.trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(`probe ${args.join(" ")}: ${r.stderr || r.stdout}`);
  }
}

const ping = (ns: Netns, ip: string, count = 2) => ns.exec(["ping", "-c", String(count), "-W", "1", "-i", "0.2", ip]);
const drops = (ep: string): Record<string, number> => A.json("endpoint", "show", ep).drops;

function rule(...args: string[]): number {
  const r = A.json("firewall", "rule", "add", NET, ...args);
  return r.id as number;
}

beforeAll(async () => {
  const tag = EXTENSIONS ? "fwx" : "fwt";
  A = new TestAgent(tag);
  out = new Netns(`${tag}out`);
  cliNs = new Netns(`${tag}c`);
  srvNs = new Netns(`${tag}s`);
  A.ns.execOk(["ip", "link", "add", "upl0", "type", "veth", "peer", "name", "ext0", "netns", out.name]);
  out.execOk(["ip", "link", "set", "ext0", "up"]);
  out.execOk(["ip", "addr", "add", "10.73.0.200/24", "dev", "ext0"]);
  // Bridges of 4 ports: cnv-user-br0 takes srv, the link and the uplink (and keeps one for an
  // overlay); cnv-user-br1 takes cli.
  await A.start(["--uplink", "upl0"], EXTENSIONS ? { STRATUM_BRIDGE_PORTS: "4" } : {});
  A.json(
    "network",
    "create",
    "--name",
    NET,
    "--cidr",
    "10.73.0.0/24",
    "--gateway",
    "10.73.0.1",
    "--cidr6",
    "fd73::/64",
    "--gateway6",
    "fd73::1",
    // The outside host has an address of the subnet: the network is extended onto its LAN.
    "--extend-to-lan",
  );
  srv = A.json("network", "attach", NET, "--name", "srv", "--netns", srvNs.name, "--configure");
  cli = A.json("network", "attach", NET, "--name", "cli", "--netns", cliNs.name, "--configure");
  if (EXTENSIONS)
    expect(
      ["srv", "cli"].map((n) => A.ns.ipJson(["link", "show", A.json("endpoint", "show", n).interface])[0].master),
    ).toEqual(["cnv-user-br0", "cnv-user-br1"]);
  for (const ns of [srvNs, cliNs]) {
    const p = Bun.spawn(["ip", "netns", "exec", ns.name, BUN, PROBE, "serve", "8080"], {
      stdout: "ignore",
      stderr: "ignore",
    });
    servers.push(p);
    const q = Bun.spawn(["ip", "netns", "exec", ns.name, BUN, PROBE, "serve", "23"], {
      stdout: "ignore",
      stderr: "ignore",
    });
    servers.push(q);
  }
  await Bun.sleep(500);
}, 60_000);

afterAll(() => {
  for (const p of servers) p.kill("SIGKILL");
  for (const ns of [cliNs, srvNs, out]) ns?.destroy();
  A?.destroy();
});

test("default allow: everything flows before any policy", () => {
  expect(ping(cliNs, srv.ip).code).toBe(0);
  expect(probe(cliNs, "tcp", srv.ip, "8080")).toEqual({ ok: true });
  expect(probe(srvNs, "tcp", cli.ip, "8080")).toEqual({ ok: true });
}, 30_000);

test("default deny, one TCP port opened: the allowed flow and its replies pass, nothing else", () => {
  A.ctl("firewall", "default", NET, "deny");
  expect(ping(cliNs, srv.ip).code).not.toBe(0);
  expect(probe(cliNs, "tcp", srv.ip, "8080").error).toBe("ETIMEDOUT");
  const id = rule("--priority", "100", "--proto", "tcp", "--dport", "8080", "--action", "allow");
  expect(probe(cliNs, "tcp", srv.ip, "8080")).toEqual({ ok: true }); // SYN out, SYN-ACK and echo back
  expect(probe(srvNs, "tcp", cli.ip, "8080")).toEqual({ ok: true }); // the rule is "both": the other way too
  const before = drops("srv")["fw-default"] ?? 0;
  expect(probe(srvNs, "udp", cli.ip, "8080").error).toBe("ETIMEDOUT"); // UDP is not opened
  expect((drops("srv")["fw-default"] ?? 0) - before).toBeGreaterThanOrEqual(1);
  const list = A.json("firewall", "rule", "list", NET);
  const hits = JSON.stringify(list);
  expect(hits).toContain(`"id":${id}`);
}, 30_000);

test("UDP and ICMP: replies of allowed flows pass, the unsolicited way does not", () => {
  rule(
    "--priority",
    "110",
    "--direction",
    "egress",
    "--proto",
    "udp",
    "--dport",
    "8080",
    "--src",
    `${cli.ip}/32`,
    "--action",
    "allow",
  );
  rule(
    "--priority",
    "111",
    "--direction",
    "ingress",
    "--proto",
    "udp",
    "--dport",
    "8080",
    "--dst",
    `${srv.ip}/32`,
    "--action",
    "allow",
  );
  expect(probe(cliNs, "udp", srv.ip, "8080")).toEqual({ ok: true });
  expect(probe(srvNs, "udp", cli.ip, "8080").error).toBe("ETIMEDOUT");
  rule("--priority", "120", "--proto", "icmp", "--icmp-type", "8", "--src", `${cli.ip}/32`, "--action", "allow");
  expect(ping(cliNs, srv.ip).code).toBe(0);
  expect(ping(srvNs, cli.ip).code).not.toBe(0);
}, 30_000);

test("an established connection lives through unrelated rule changes; a deny of its own cuts it", async () => {
  const stream = Bun.spawn(["ip", "netns", "exec", cliNs.name, BUN, PROBE, "stream", srv.ip, "8080", "3000"], {
    stdout: "pipe",
  });
  await Bun.sleep(400);
  for (let i = 0; i < 10; i++) {
    const id = rule("--priority", String(500 + i), "--proto", "udp", "--dport", String(6000 + i), "--action", "deny");
    if (i % 2) A.ctl("firewall", "rule", "del", NET, String(id));
    await Bun.sleep(100);
  }
  const res = JSON.parse((await new Response(stream.stdout).text()).trim().split("\n").at(-1) as string);
  expect(res.error).toBeUndefined();
  expect(res.sent).toBeGreaterThan(50);
  expect(res.echoed).toBe(res.sent);

  const cut = Bun.spawn(["ip", "netns", "exec", cliNs.name, BUN, PROBE, "stream", srv.ip, "8080", "2000"], {
    stdout: "pipe",
  });
  await Bun.sleep(500);
  const deny = rule(
    "--priority",
    "50",
    "--proto",
    "tcp",
    "--dst",
    `${srv.ip}/32`,
    "--dport",
    "8080",
    "--action",
    "deny",
  );
  const r2 = JSON.parse((await new Response(cut.stdout).text()).trim().split("\n").at(-1) as string);
  expect(r2.echoed).toBeLessThan(r2.sent); // the flow stopped when the deny landed
  A.ctl("firewall", "rule", "del", NET, String(deny));
}, 30_000);

test("reject: a TCP reset (refused at once) and an ICMP administratively-prohibited", () => {
  rule("--priority", "60", "--proto", "tcp", "--dport", "23", "--action", "reject");
  const t0 = performance.now();
  expect(probe(cliNs, "tcp", srv.ip, "23").error).toBe("ECONNREFUSED");
  expect(performance.now() - t0).toBeLessThan(1500);
  rule("--priority", "61", "--proto", "icmp", "--dst", `${srv.ip}/32`, "--action", "reject");
  const p = ping(cliNs, srv.ip, 1);
  expect(p.code).not.toBe(0);
  expect(p.stdout).toMatch(/Packet filtered|Prohibited/i);
}, 30_000);

test("reject at the uplink: the global scope's reject answers the workload with a reset", () => {
  const tcp24 = ["--direction", "egress", "--proto", "tcp", "--dport", "24"];
  const id = A.json("firewall", "rule", "add", "--global", "--priority", "70", ...tcp24, "--action", "reject")
    .id as number;
  // The network denies by default (above): its own egress rule lets the SYN out of cli's port.
  // (The reset would pass cli's port as the flow's reply even without the reject's pass-once
  // mark, which crosses a link as tc_index: this checks the answer arrives, either way.)
  const out24 = rule("--priority", "71", ...tcp24, "--action", "allow");
  const before = (A.json("status").uplink.drops["fw-reject"] as number) ?? 0;
  const t0 = performance.now();
  expect(probe(cliNs, "tcp", "10.73.0.200", "24").error).toBe("ECONNREFUSED");
  expect(performance.now() - t0).toBeLessThan(1500);
  expect(A.json("status").uplink.drops["fw-reject"]).toBe(before + 1);
  A.ctl("firewall", "rule", "del", "--global", String(id));
  A.ctl("firewall", "rule", "del", NET, String(out24));
}, 30_000);

test("a blocklisted source is dropped at the uplink", async () => {
  // The outside may ping the server (ahead of the ICMP reject above).
  rule("--priority", "40", "--src", "10.73.0.200/32", "--proto", "icmp", "--action", "allow");
  expect(ping(out, srv.ip).code).toBe(0);
  A.ctl("firewall", "blocklist", "add", "10.73.0.192/28");
  const before = (await A.api("/v1/status")).uplink.drops.blocklist ?? 0;
  expect(ping(out, srv.ip, 3).code).not.toBe(0);
  expect((await A.api("/v1/status")).uplink.drops.blocklist - before).toBeGreaterThanOrEqual(3);
  A.ctl("firewall", "blocklist", "del", "10.73.0.192/28");
  expect(ping(out, srv.ip).code).toBe(0);
}, 30_000);
