/** `trace` against real traffic: for every scenario (allowed, denied by a rule, denied by the
 * default, rejected, spoofed, another network, blocklisted, the uplink's global scope, a reply
 * of a tracked flow and an unsolicited packet from the other side), the packet is first traced
 * and then sent for real from the source's namespace, and the two must agree: delivered ⇔ the
 * real probe was answered; dropped at a port for reason R ⇔ the real packet moved that port's
 * counter of R; rejected ⇔ the real client got a refusal. The trace itself must not move any
 * live counter or flow. Also: the same answers with the agent stopped (pins and state only). */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { TraceResultView } from "../../src/api/contract";
import { TestAgent } from "../helpers/agent";
import { BUN, Netns, ROOT, run } from "../helpers/netns";

const PROBE = join(ROOT, "test/helpers/probe.ts");
const PORTS = "8080,9090,7070,22";
let A: TestAgent;
const ns: Record<string, Netns> = {};
const ip: Record<string, { ip: string; ip6?: string }> = {};
const servers: Subprocess[] = [];
const OUT = { ip: "10.62.0.200", ip6: "fd62::c8" };
const GW1 = "10.62.0.1";
const GW2 = "10.63.0.1";

type Real =
  | { kind: "tcp" | "udp"; from: string; to: string; port: number; sport?: number; src?: string }
  | { kind: "ping"; from: string; to: string; v6?: boolean };

interface Scenario {
  name: string;
  /** Built when the test runs (addresses are known after the set-up). */
  trace: () => string[];
  real: () => Real;
  /** Trace after the real packet (a reply of the flow it opened). */
  after?: boolean;
  /** Set up before, undone after (spoofing). */
  setup?: () => void;
  undo?: () => void;
}

/** A trace's JSON, checked against the API's strict schema of a trace result. */
function traceJson(args: string[]): any {
  const t = A.json("trace", ...args);
  const parsed = TraceResultView.safeParse(t);
  expect({ args, issues: parsed.success ? [] : parsed.error.issues }).toEqual({ args, issues: [] });
  return t;
}

const EPS = ["a", "b", "c", "d", "e", "f"];

async function allDrops(): Promise<Record<string, Record<string, number>>> {
  const out: Record<string, Record<string, number>> = {};
  for (const e of EPS) out[e] = (await A.api(`/v1/endpoints/${e}`)).drops;
  return out;
}

function sendReal(r: Real): { ok: boolean; error?: string } {
  const src = ns[r.from] as Netns;
  if (r.kind === "ping") {
    const p = src.exec(["ping", ...(r.v6 ? ["-6"] : []), "-c", "1", "-W", "1", r.to]);
    return { ok: p.code === 0, ...(p.code ? { error: p.stdout.includes("filtered") ? "filtered" : "timeout" } : {}) };
  }
  const args = [BUN, PROBE, r.kind, r.to, String(r.port), "--timeout", "700"];
  if (r.sport) args.push("--sport", String(r.sport));
  if (r.src) args.push("--from", r.src);
  const res = src.exec(args);
  const line = JSON.parse(res.stdout.trim().split("\n").at(-1) ?? "{}");
  return { ok: !!line.ok, ...(line.error ? { error: line.error } : {}) };
}

/** Trace arguments and the real address of a destination: an endpoint, a gateway or the outside host. */
function dest(to: string, v6: boolean): { args: string[]; addr: string } {
  if (EPS.includes(to)) return { args: ["--to-endpoint", to], addr: (v6 ? ip[to]?.ip6 : ip[to]?.ip) as string };
  const addr = { out: v6 ? OUT.ip6 : OUT.ip, gw1: v6 ? "fd62::1" : GW1, gw2: GW2 }[to] as string;
  return { args: ["--to", addr], addr };
}

const scenarios: Scenario[] = [];
let sp = 41000;
function l4Case(kind: "tcp" | "udp", name: string, from: string, to: string, port: number) {
  const sport = sp++;
  scenarios.push({
    name: `${name}: ${from} → ${to} ${kind} ${port}`,
    trace: () => [
      "--from",
      from,
      ...dest(to, false).args,
      "--proto",
      kind,
      "--sport",
      String(sport),
      "--dport",
      String(port),
    ],
    real: () => ({ kind, from, to: dest(to, false).addr, port, sport }),
  });
}
const tcpCase = (name: string, from: string, to: string, port: number) => l4Case("tcp", name, from, to, port);
const udpCase = (name: string, from: string, to: string, port: number) => l4Case("udp", name, from, to, port);
function pingCase(name: string, from: string, to: string, v6 = false) {
  scenarios.push({
    name: `${name}: ${from} → ${to} ${v6 ? "icmpv6" : "icmp"} echo`,
    trace: () => ["--from", from, ...dest(to, v6).args, ...(v6 ? ["-6", "--proto", "icmpv6"] : ["--proto", "icmp"])],
    real: () => ({ kind: "ping", from, to: dest(to, v6).addr, v6 }),
  });
}
/** A permanent neighbour entry, so a spoofed packet is not held up by ARP/ND from a spoofed address. */
function pinNeighbour(from: string, addr: string, mac: string): void {
  ns[from]?.execOk(["ip", "neigh", "replace", addr, "lladdr", mac, "dev", "eth0", "nud", "permanent"]);
}
const macOf: Record<string, string> = {};

// Allowed, by rule.
tcpCase("allowed by rule", "a", "b", 8080);
tcpCase("allowed by rule", "b", "a", 8080);
tcpCase("allowed by rule", "c", "a", 8080);
tcpCase("allowed by rule", "a", "c", 8080);
tcpCase("allowed by rule", "a", "out", 8080);
tcpCase("allowed by rule", "b", "out", 8080);
tcpCase("allowed by rule", "a", "b", 9090);
tcpCase("allowed by rule", "b", "c", 9090);
tcpCase("allowed by rule", "a", "out", 9090);
udpCase("allowed by rule", "a", "b", 9090);
udpCase("allowed by rule", "b", "c", 9090);
udpCase("allowed by rule", "c", "a", 9090);
udpCase("allowed by rule", "a", "out", 9090);
pingCase("allowed by rule", "a", "out");
pingCase("allowed by rule", "a", "gw1");
pingCase("allowed by rule", "a", "b", true);
pingCase("allowed by rule", "b", "a", true);
pingCase("allowed by rule", "c", "out", true);
// Denied by a rule, by the default, at the destination, by the global scope at the uplink.
tcpCase("denied by rule", "c", "b", 9090);
tcpCase("denied by rule", "c", "a", 9090);
tcpCase("denied by rule", "c", "out", 9090);
tcpCase("denied by default", "a", "b", 23);
tcpCase("denied by default", "a", "c", 22);
tcpCase("denied by default", "b", "out", 23);
udpCase("denied by default", "a", "b", 8080);
udpCase("denied by default", "b", "out", 7070);
tcpCase("denied at the destination", "a", "b", 7070);
tcpCase("denied at the destination", "c", "a", 7070);
pingCase("denied at the destination", "a", "b");
pingCase("denied at the destination", "c", "a");
tcpCase("denied by the global scope", "a", "out", 7070);
tcpCase("denied by the global scope", "c", "out", 7070);
// Rejected: a reset or an unreachable goes back.
tcpCase("rejected", "a", "b", 22);
tcpCase("rejected", "c", "b", 22);
udpCase("rejected", "a", "b", 22);
udpCase("rejected", "b", "a", 22);
udpCase("rejected", "a", "out", 22);
// Another network: not on the link, and the node does not route between networks.
tcpCase("other network", "a", "d", 8080);
tcpCase("other network", "d", "a", 8080);
udpCase("other network", "d", "b", 9090);
pingCase("other network", "d", "a");
pingCase("other network", "a", "d");
// A network without policy.
tcpCase("no policy", "d", "f", 8080);
udpCase("no policy", "f", "d", 9090);
pingCase("no policy", "d", "gw2");
// Blocklisted source.
tcpCase("blocklisted", "e", "a", 8080);
udpCase("blocklisted", "e", "b", 9090);
pingCase("blocklisted", "e", "out");
tcpCase("blocklisted", "e", "out", 8080);
// A reply of a flow the real client opened, and packets from the other side with no flow behind them.
scenarios.push({
  name: "reply of a tracked flow: b → a udp 9090 → 45000",
  real: () => ({ kind: "udp", from: "a", to: ip.b?.ip as string, port: 9090, sport: 45000 }),
  trace: () => ["--from", "b", "--to-endpoint", "a", "--proto", "udp", "--sport", "9090", "--dport", "45000"],
  after: true,
});
scenarios.push({
  name: "a tracked flow's next segment: a → out tcp 45001 → 8080 ack",
  real: () => ({ kind: "tcp", from: "a", to: OUT.ip, port: 8080, sport: 45001 }),
  trace: () => [
    "--from",
    "a",
    "--to",
    OUT.ip,
    "--proto",
    "tcp",
    "--sport",
    "45001",
    "--dport",
    "8080",
    "--flags",
    "ack",
  ],
  after: true,
});
udpCase("unsolicited from the other side", "b", "a", 45002);
tcpCase("unsolicited from the other side", "b", "a", 45003);
// Spoofed: another address (IPv4, IPv6) or another MAC.
const SPOOF = "10.62.0.77";
scenarios.push({
  name: `spoofed IPv4 source: a claims ${SPOOF} → b tcp 8080`,
  trace: () => [
    "--from",
    "a",
    "--to-endpoint",
    "b",
    "--proto",
    "tcp",
    "--dport",
    "8080",
    "--sport",
    "46000",
    "--src",
    SPOOF,
  ],
  real: () => ({ kind: "tcp", from: "a", to: ip.b?.ip as string, port: 8080, sport: 46000, src: SPOOF }),
  setup: () => {
    ns.a?.execOk(["ip", "addr", "add", `${SPOOF}/32`, "dev", "eth0"]);
    pinNeighbour("a", ip.b?.ip as string, macOf.b as string);
  },
  undo: () => ns.a?.execOk(["ip", "addr", "del", `${SPOOF}/32`, "dev", "eth0"]),
});
scenarios.push({
  name: "spoofed IPv4 source: c claims b's address → out udp 9090",
  trace: () => [
    "--from",
    "c",
    "--to",
    OUT.ip,
    "--proto",
    "udp",
    "--dport",
    "9090",
    "--sport",
    "46001",
    "--src",
    ip.b?.ip as string,
  ],
  real: () => ({ kind: "udp", from: "c", to: OUT.ip, port: 9090, sport: 46001, src: ip.b?.ip as string }),
  setup: () => {
    ns.c?.execOk(["ip", "addr", "add", `${ip.b?.ip}/32`, "dev", "eth0"]);
    pinNeighbour("c", OUT.ip, macOf.out as string);
  },
  undo: () => ns.c?.execOk(["ip", "addr", "del", `${ip.b?.ip}/32`, "dev", "eth0"]),
});
scenarios.push({
  name: "spoofed IPv6 source: a claims fd62::99 → b udp 9090",
  trace: () => [
    "--from",
    "a",
    "--to-endpoint",
    "b",
    "-6",
    "--proto",
    "udp",
    "--dport",
    "9090",
    "--sport",
    "46002",
    "--src",
    "fd62::99",
  ],
  real: () => ({ kind: "udp", from: "a", to: ip.b?.ip6 as string, port: 9090, sport: 46002, src: "fd62::99" }),
  setup: () => {
    ns.a?.execOk(["ip", "-6", "addr", "add", "fd62::99/128", "dev", "eth0", "nodad"]);
    pinNeighbour("a", ip.b?.ip6 as string, macOf.b as string);
  },
  undo: () => ns.a?.execOk(["ip", "-6", "addr", "del", "fd62::99/128", "dev", "eth0"]),
});
scenarios.push({
  name: "spoofed MAC: a sends as 02:66:66:66:66:66 → b tcp 8080",
  trace: () => [
    "--from",
    "a",
    "--to-endpoint",
    "b",
    "--proto",
    "tcp",
    "--dport",
    "8080",
    "--sport",
    "46003",
    "--src-mac",
    "02:66:66:66:66:66",
  ],
  real: () => ({ kind: "tcp", from: "a", to: ip.b?.ip as string, port: 8080, sport: 46003 }),
  setup: () => {
    ns.a?.execOk(["ip", "link", "set", "eth0", "address", "02:66:66:66:66:66"]);
    pinNeighbour("a", ip.b?.ip as string, macOf.b as string);
  },
  undo: () => ns.a?.execOk(["ip", "link", "set", "eth0", "address", macOf.a as string]),
});

beforeAll(async () => {
  A = new TestAgent("trc");
  for (const n of [...EPS, "out"]) ns[n] = new Netns(`trc${n}`);
  const out = ns.out as Netns;
  A.ns.execOk(["ip", "link", "add", "upl0", "type", "veth", "peer", "name", "ext0", "netns", out.name]);
  out.execOk(["ip", "link", "set", "ext0", "up"]);
  out.execOk(["ip", "addr", "add", `${OUT.ip}/24`, "dev", "ext0"]);
  out.execOk(["ip", "-6", "addr", "add", `${OUT.ip6}/64`, "dev", "ext0", "nodad"]);
  await A.start(["--uplink", "upl0"]);
  A.json(
    "network",
    "create",
    "--name",
    "n1",
    "--cidr",
    "10.62.0.0/24",
    "--gateway",
    GW1,
    "--cidr6",
    "fd62::/64",
    "--gateway6",
    "fd62::1",
    // The outside host has an address of n1's subnet: n1 is extended onto its LAN.
    "--extend-to-lan",
  );
  A.json("network", "create", "--name", "n2", "--cidr", "10.63.0.0/24", "--gateway", GW2);
  for (const [e, net] of [
    ["a", "n1"],
    ["b", "n1"],
    ["c", "n1"],
    ["e", "n1"],
    ["d", "n2"],
    ["f", "n2"],
  ] as const) {
    const v = A.json("network", "attach", net, "--name", e, "--netns", (ns[e] as Netns).name, "--configure");
    ip[e] = { ip: v.ip, ...(v.ip6 ? { ip6: v.ip6 } : {}) };
    macOf[e] = v.mac;
  }
  macOf.out = JSON.parse(out.execOk(["ip", "-j", "link", "show", "ext0"]))[0].address;
  for (const h of Object.values(ns))
    servers.push(
      Bun.spawn(["ip", "netns", "exec", h.name, BUN, PROBE, "serve", PORTS], { stdout: "ignore", stderr: "ignore" }),
    );
  const rule = (...x: string[]) => A.json("firewall", "rule", "add", "n1", ...x);
  A.json("firewall", "default", "n1", "deny");
  rule("--priority", "10", "--proto", "tcp", "--dport", "8080", "--action", "allow");
  rule("--priority", "15", "--direction", "egress", "--proto", "tcp", "--dport", "7070", "--action", "allow");
  rule("--priority", "20", "--proto", "tcp", "--dport", "9090", "--src", `${ip.c?.ip}/32`, "--action", "deny");
  rule("--priority", "30", "--proto", "tcp", "--dport", "9090", "--action", "allow");
  rule("--priority", "40", "--proto", "udp", "--dport", "22", "--action", "reject");
  rule("--priority", "45", "--proto", "tcp", "--dport", "22", "--dst", `${ip.b?.ip}/32`, "--action", "reject");
  rule("--priority", "50", "--proto", "udp", "--dport", "9090", "--action", "allow");
  rule("--priority", "60", "--direction", "egress", "--proto", "icmp", "--action", "allow");
  rule("--priority", "70", "--proto", "icmpv6", "--action", "allow");
  A.json(
    "firewall",
    "rule",
    "add",
    "--global",
    "--priority",
    "10",
    "--direction",
    "egress",
    "--proto",
    "tcp",
    "--dport",
    "7070",
    "--action",
    "deny",
  );
  A.json("firewall", "blocklist", "add", `${ip.e?.ip}/32`);
  await Bun.sleep(800);
}, 60_000);

afterAll(() => {
  for (const s of servers) s.kill("SIGKILL");
  A?.destroy();
  for (const n of Object.values(ns)) n.destroy();
});

const SUMMARY: Array<{ name: string; verdict: string }> = [];

describe("the trace verdict is what real traffic gets", () => {
  test.each(scenarios.map((s) => [s.name, s] as const))(
    "%s",
    async (_name, s) => {
      s.setup?.();
      try {
        let t: any;
        let real: { ok: boolean; error?: string };
        let before: Record<string, Record<string, number>>;
        if (s.after) {
          real = sendReal(s.real());
          before = await allDrops();
          t = traceJson(s.trace());
        } else {
          t = traceJson(s.trace());
          before = await allDrops();
          real = sendReal(s.real());
        }
        const after = await allDrops();
        SUMMARY.push({ name: s.name, verdict: t.verdict });
        const moved: string[] = [];
        for (const [e, d] of Object.entries(after))
          for (const [r, n] of Object.entries(d)) if (n > (before[e]?.[r] ?? 0)) moved.push(`${e}:${r}`);
        const ctx = { scenario: s.name, trace: t.summary, real, moved };
        if (t.verdict === "delivered") {
          expect({ ...ctx, ok: real.ok }).toEqual({ ...ctx, ok: true });
        } else {
          expect({ ...ctx, ok: real.ok }).toEqual({ ...ctx, ok: false });
          const last = t.stages.at(-1);
          if (t.verdict === "rejected")
            expect({ ...ctx, error: real.error }).toMatchObject({
              error: expect.stringMatching(/ECONNREFUSED|ECONNRESET|EHOSTUNREACH|EACCES|filtered/),
            });
          if (last.device?.endpoint && !s.after)
            expect(moved).toContain(`${last.device.endpoint}:${last.reason?.name ?? "fw-reject"}`);
        }
      } finally {
        s.undo?.();
      }
    },
    20_000,
  );

  test("the scenarios cover every kind of outcome", () => {
    expect(scenarios.length).toBeGreaterThanOrEqual(50);
    const kinds = new Set(SUMMARY.map((s) => s.verdict));
    expect([...kinds].sort()).toEqual(["delivered", "dropped", "rejected"]);
  });
});

test("a trace changes no live counter and no live flow", async () => {
  // What these traces would move if they ran on the live maps: their rules' and the defaults'
  // hit counters, the drop counters of their ports, and flows from source port 40000.
  const hits = () => ({
    n1: A.json("firewall", "rule", "list", "n1").rules.map((r: any) => [r.id, r.hits.packets]),
    global: A.json("firewall", "rule", "list", "--global").rules.map((r: any) => [r.id, r.hits.packets]),
  });
  const flows40000 = () =>
    JSON.parse(run(["bpftool", "-j", "map", "dump", "pinned", `${A.pins.path}/maps/stm_ct`]).stdout).filter(
      (e: any) => e.formatted.key.pa === 40000 || e.formatted.key.pb === 40000,
    ).length;
  const pick = (d: Record<string, Record<string, number>>) => ({
    c: d.c?.["fw-rule"],
    e: d.e?.blocklist,
    a: [d.a?.["fw-rule"], d.a?.["fw-reject"], d.a?.["ip4-spoof"]],
  });
  const before = { hits: hits(), drops: pick(await allDrops()), flows: flows40000() };
  expect(before.flows).toBe(0);
  for (const args of [
    ["--from", "a", "--to-endpoint", "b", "--proto", "tcp", "--dport", "8080"],
    ["--from", "c", "--to-endpoint", "b", "--proto", "tcp", "--dport", "9090"],
    ["--from", "e", "--to-endpoint", "a", "--proto", "udp", "--dport", "9090"],
    ["--from", "a", "--to", OUT.ip, "--proto", "tcp", "--dport", "7070"],
    ["--from", "a", "--to-endpoint", "b", "--proto", "tcp", "--dport", "22"],
    ["--from", "a", "--to-endpoint", "b", "--src", "10.62.0.99"],
  ])
    expect(traceJson(args).verdict).toBeOneOf(["delivered", "dropped", "rejected"]);
  expect({ hits: hits(), drops: pick(await allDrops()), flows: flows40000() }).toEqual(before);
});

test("with the agent stopped, trace reads the pins and the state and answers the same", async () => {
  const cases = [
    ["--from", "a", "--to-endpoint", "b", "--proto", "tcp", "--dport", "8080"],
    ["--from", "c", "--to-endpoint", "b", "--proto", "tcp", "--dport", "9090"],
    ["--from", "a", "--to", OUT.ip, "--proto", "tcp", "--dport", "7070"],
  ];
  const live = cases.map((c) => traceJson(c));
  await A.kill("SIGTERM");
  try {
    const local = cases.map((c) => {
      const r = A.local(["trace", ...c, "-o", "json"], { api: true });
      expect(r.stderr).toBe("");
      expect(TraceResultView.safeParse(JSON.parse(r.stdout)).success).toBe(true);
      return JSON.parse(r.stdout);
    });
    expect(local).toEqual(live);
    const human = A.local(["trace", ...(cases[1] as string[])], { api: true });
    expect(human.stdout).toContain("firewall n1: rule");
    expect(human.stdout).toContain("verdict: dropped at port ingress of c: fw-rule");
  } finally {
    await A.start(["--uplink", "upl0"]);
  }
}, 60_000);

test("--exit-code: 1 for a dropped packet, 0 for a delivered one; without it, 0 either way", () => {
  const dropped = ["--from", "c", "--to-endpoint", "b", "--proto", "tcp", "--dport", "9090"];
  const delivered = ["--from", "a", "--to-endpoint", "b", "--proto", "tcp", "--dport", "8080"];
  expect(traceJson(dropped).verdict).toBe("dropped");
  expect(traceJson(delivered).verdict).toBe("delivered");
  expect(A.ctl("trace", ...dropped, "--exit-code").code).toBe(1);
  expect(A.ctl("trace", ...dropped, "--exit-code", "-o", "json").code).toBe(1);
  expect(A.ctl("trace", ...delivered, "--exit-code").code).toBe(0);
  expect(A.ctl("trace", ...dropped).code).toBe(0);
});

test("bad input gets a clear error and an exit code", () => {
  const cases: Array<[string[], number, RegExp]> = [
    [["--from", "nobody", "--to", "10.62.0.9"], 3, /endpoint nobody does not exist/],
    [["--from", "a"], 2, /give one of --to IP or --to-endpoint/],
    [["--from", "a", "--to", "10.62.0.9", "--proto", "sctp"], 2, /--proto must be one of/],
    [["--from", "a", "--to", "10.62.0.9", "--dport", "70000"], 2, /port/],
    [["--from", "a", "--to", "10.62.0.9", "--flags", "syn,bogus"], 2, /unknown TCP flag "bogus"/],
    [["--from", "a", "--to", "fd62::5", "--proto", "icmp"], 2, /icmp is IPv4/],
    [["--from", "d", "--to-endpoint", "a", "-6"], 2, /no IPv6 subnet/],
  ];
  for (const [args, code, msg] of cases) {
    const r = A.ctl("trace", ...args);
    expect({ args, code: r.code, stderr: r.stderr }).toMatchObject({ args, code, stderr: expect.stringMatching(msg) });
  }
});
