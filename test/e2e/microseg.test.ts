/** Microsegmentation on one node under real traffic: a real agent with an uplink; web and db in
 * groups of one network, an untagged workload beside them, a workload of another network
 * (routed through the gateway) and a host on the LAN. Real TCP, UDP and ICMP clients check
 * what the policy allows, what it denies, replies, fragments, a flow cut by a new entry, a
 * workload that sets its own mark, IPv4 and IPv6; the CLI refuses bad input and changes
 * nothing; export and import round-trip.
 *
 * With STRATUM_TEST_EXTENSIONS=1 (scripts/test runs the file a second time so) the agent's
 * bridges take 5 ports each: web and free are ports of cnv-user-br0, db and other of the
 * extension bridge cnv-user-br1, so each group crosses the link between them (its stamp carried
 * by stm_link_out/stm_link_in) and other's routed traffic crosses it twice. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { MSEG } from "../../src/model/microseg";
import { TestAgent } from "../helpers/agent";
import { BINARY, BUN, Netns, ROOT } from "../helpers/netns";

const PROBE = join(ROOT, "test/helpers/probe.ts");
/** The run with the workloads split over cnv-user-br0 and an extension bridge. */
const EXTENSIONS = process.env.STRATUM_TEST_EXTENSIONS === "1";
const NET = "msa";
const NET_B = "msb";
let A: TestAgent;
let lan: Netns;
const ns: Record<string, Netns> = {};
const ep: Record<string, { ip: string; ip6: string | null }> = {};
const servers: Subprocess[] = [];

function probe(n: Netns, ...args: string[]): { ok?: boolean; error?: string; sent?: number; echoed?: number } {
  const r = n.exec([BUN, PROBE, ...args]);
  const line = r.stdout.trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(`probe ${args.join(" ")}: ${r.stderr || r.stdout}`);
  }
}
// Short timeouts: an answer across the node's own bridge takes well under a millisecond, so
// what these wait out is only ever a packet that was dropped.
const tcp = (from: Netns, to: string, port = 8080) =>
  probe(from, "tcp", to, String(port), "--timeout", "700").ok === true;
const udp = (from: Netns, to: string, port = 8080) =>
  probe(from, "udp", to, String(port), "--timeout", "500").ok === true;
const ping = (from: Netns, to: string, ...extra: string[]) =>
  from.exec(["ping", "-c", "2", "-W", "0.5", "-i", "0.2", ...extra, to]).code === 0;
const drops = (name: string, reason = "microseg-deny"): number => A.json("endpoint", "show", name).drops[reason] ?? 0;
const entry = (...args: string[]): number => A.json("microseg", "rule", "add", ...args).id as number;

beforeAll(async () => {
  const tag = EXTENSIONS ? "msx" : "msg";
  A = new TestAgent(tag);
  lan = new Netns(`${tag}lan`);
  for (const n of ["web", "db", "free", "other"]) ns[n] = new Netns(`${tag}${n}`);
  A.ns.execOk(["ip", "link", "add", "upl0", "type", "veth", "peer", "name", "lan0", "netns", lan.name]);
  lan.execOk(["ip", "link", "set", "lan0", "up"]);
  lan.execOk(["ip", "addr", "add", "10.74.0.200/24", "dev", "lan0"]);
  A.ns.execOk(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  await A.start(["--uplink", "upl0"], EXTENSIONS ? { STRATUM_BRIDGE_PORTS: "5" } : {});
  A.json(
    "network",
    "create",
    "--name",
    NET,
    "--cidr",
    "10.74.0.0/24",
    "--gateway",
    "10.74.0.1",
    "--cidr6",
    "fd74::/64",
    "--gateway6",
    "fd74::1",
    "--extend-to-lan",
  );
  A.json("network", "create", "--name", NET_B, "--cidr", "10.75.0.0/24", "--gateway", "10.75.0.1");
  // Split over two bridges (web and free on cnv-user-br0, db and other on cnv-user-br1) with
  // STRATUM_TEST_EXTENSIONS: the order of attaching decides.
  for (const n of EXTENSIONS ? ["web", "free", "db"] : ["web", "db", "free"])
    ep[n] = A.json("network", "attach", NET, "--name", n, "--netns", (ns[n] as Netns).name, "--configure");
  ep.other = A.json("network", "attach", NET_B, "--name", "other", "--netns", (ns.other as Netns).name, "--configure");
  if (EXTENSIONS)
    for (const [n, br] of Object.entries({ web: 0, free: 0, db: 1, other: 1 }))
      expect(A.ns.ipJson(["link", "show", A.json("endpoint", "show", n).interface])[0].master).toBe(`cnv-user-br${br}`);
  for (const n of ["web", "db", "free", "other"]) {
    servers.push(
      Bun.spawn(["ip", "netns", "exec", (ns[n] as Netns).name, BUN, PROBE, "serve", "8080,9090"], {
        stdout: "ignore",
        stderr: "ignore",
      }),
    );
  }
  await Bun.sleep(600);
}, 60_000);

afterAll(() => {
  for (const p of servers) p.kill("SIGKILL");
  for (const n of Object.values(ns)) n.destroy();
  lan?.destroy();
  A?.destroy();
});

const web = () => ns.web as Netns;
const db = () => ns.db as Netns;
const dbIp = () => ep.db?.ip as string;

describe("microsegmentation on one node", () => {
  test("no groups: nothing is segmented", () => {
    expect(tcp(web(), dbIp())).toBe(true);
    expect(tcp(ns.other as Netns, dbIp())).toBe(true);
    expect(tcp(lan, dbIp())).toBe(true);
    expect(A.json("group", "list")).toEqual([]);
  }, 30_000);

  test("groups and one entry: web reaches db's port 8080 only; db's replies pass, db cannot open to web", () => {
    A.json("group", "create", "prod");
    A.json("group", "create", "prod/web");
    A.json("group", "create", "prod/db");
    A.json("group", "assign", "web", "prod/web");
    A.json("group", "assign", "db", "prod/db");
    // Grouped, no entry: denied (zero trust).
    const before = drops("db");
    expect(tcp(web(), dbIp())).toBe(false);
    expect(drops("db")).toBeGreaterThan(before);
    const id = entry("--from", "prod/web", "--to", "prod/db", "--proto", "tcp", "--dport", "8080", "--action", "allow");
    expect(tcp(web(), dbIp())).toBe(true); // SYN in, SYN-ACK back to web as a reply
    expect(tcp(web(), dbIp(), 9090)).toBe(false);
    expect(udp(web(), dbIp())).toBe(false);
    expect(ping(web(), dbIp())).toBe(false);
    expect(tcp(db(), ep.web?.ip as string)).toBe(false); // db → web: no entry
    const l = A.json("microseg", "rule", "list");
    expect(l.rules.find((r: { id: number }) => r.id === id).hits.packets).toBeGreaterThanOrEqual(1);
    expect(l.defaultHits.packets).toBeGreaterThanOrEqual(3);
  }, 30_000);

  test("IPv6 as IPv4: the same entry allows TCP 8080, nothing else", () => {
    expect(tcp(web(), ep.db?.ip6 as string)).toBe(true);
    expect(udp(web(), ep.db?.ip6 as string)).toBe(false);
    expect(ping(web(), ep.db?.ip6 as string)).toBe(false);
  }, 30_000);

  test("replies of a flow db opened pass; ICMP both families; fragments follow the first", () => {
    entry("--from", "prod/web", "--to", "prod/db", "--proto", "icmp", "--action", "allow");
    entry("--from", "prod/web", "--to", "prod/db", "--proto", "icmpv6", "--action", "allow");
    expect(ping(web(), dbIp())).toBe(true); // the echo replies pass web's port: web opened the flow
    expect(ping(web(), ep.db?.ip6 as string)).toBe(true);
    expect(ping(db(), ep.web?.ip as string)).toBe(false); // web is in a group: db needs an entry to it
    // 3,000 bytes: fragmented; the later fragments pass by their first fragment's verdict.
    expect(ping(web(), dbIp(), "-s", "3000")).toBe(true);
  }, 30_000);

  test("untagged: an endpoint in no group and the LAN need an entry from untagged", () => {
    expect(tcp(ns.free as Netns, dbIp())).toBe(false);
    expect(tcp(lan, dbIp())).toBe(false);
    expect(tcp(ns.free as Netns, ep.web?.ip as string)).toBe(false);
    // The free endpoint is not segmented itself: web may reach it.
    expect(tcp(web(), ep.free?.ip as string)).toBe(true);
    const u = entry("--from", "untagged", "--to", "prod/db", "--proto", "tcp", "--dport", "8080", "--action", "allow");
    expect(tcp(ns.free as Netns, dbIp())).toBe(true);
    expect(tcp(lan, dbIp())).toBe(true);
    expect(tcp(lan, ep.web?.ip as string)).toBe(false);
    A.ctl("microseg", "rule", "del", String(u));
    expect(tcp(lan, dbIp())).toBe(false);
  }, 30_000);

  test("another network, routed through the gateway: judged by its endpoint's group", () => {
    expect(tcp(ns.other as Netns, dbIp())).toBe(false); // untagged
    A.json("group", "assign", "other", "prod/web");
    expect(tcp(ns.other as Netns, dbIp())).toBe(true);
    expect(tcp(ns.other as Netns, dbIp(), 9090)).toBe(false);
    A.json("group", "assign", "other", "none");
    expect(tcp(ns.other as Netns, dbIp())).toBe(false);
  }, 30_000);

  test("a hostile workload's own mark (SO_MARK, the group's stamp) is never its group", () => {
    A.json("group", "assign", "free", "prod");
    const webId = A.json("group", "show", "prod/web").id as number;
    const stamp = `0x${(((MSEG.MARK_TAG << MSEG.MARK_SHIFT) | webId) >>> 0).toString(16)}`;
    // prod → prod/db has no entry: the forged prod/web stamp must not pass as prod/web's.
    expect(ping(ns.free as Netns, dbIp(), "-m", stamp)).toBe(false);
    expect(probe(ns.free as Netns, "tcp", dbIp(), "8080", "--timeout", "700").ok).toBeUndefined();
    A.json("group", "assign", "free", "none");
  }, 30_000);

  test("equal specificity, disagreeing: deny; a new deny cuts a flow already let in", async () => {
    const stream = Bun.spawn(["ip", "netns", "exec", web().name, BUN, PROBE, "stream", dbIp(), "8080", "2000"], {
      stdout: "pipe",
    });
    await Bun.sleep(500);
    const deny = entry(
      "--from",
      "prod/web",
      "--to",
      "prod/db",
      "--proto",
      "tcp",
      "--dport",
      "8080",
      "--action",
      "deny",
    );
    const r = JSON.parse((await new Response(stream.stdout).text()).trim().split("\n").at(-1) as string);
    expect(r.sent).toBeGreaterThan(5);
    expect(r.echoed).toBeLessThan(r.sent);
    expect(tcp(web(), dbIp())).toBe(false);
    A.ctl("microseg", "rule", "del", String(deny));
    expect(tcp(web(), dbIp())).toBe(true);
  }, 30_000);

  test("trace shows each side's group and the deciding entry; monitor the drops and logged hits; /metrics the hits", async () => {
    const t = A.json("trace", "--from", "web", "--to-endpoint", "db", "--proto", "tcp", "--dport", "8080");
    expect(t.verdict).toBe("delivered");
    const stage = (x: any, name: string) => x.stages.find((s: any) => s.stage === name);
    expect(stage(t, "port-ingress").microseg).toMatchObject({ decision: "stamped", source: { group: "prod/web" } });
    expect(stage(t, "port-egress").microseg).toMatchObject({
      decision: "entry",
      action: "allow",
      source: { group: "prod/web" },
      destination: { group: "prod/db" },
      entry: { from: "prod/web", to: "prod/db", proto: "tcp", dport: 8080 },
    });
    const u = A.json("trace", "--from", "free", "--to-endpoint", "db", "--proto", "udp", "--dport", "8080");
    expect(u.verdict).toBe("dropped");
    expect(stage(u, "port-egress")).toMatchObject({
      reason: { name: "microseg-deny" },
      microseg: { decision: "default", action: "deny", source: { group: null, id: 0 } },
    });
    const text = A.ctl("trace", "--from", "web", "--to-endpoint", "db", "--proto", "udp", "--dport", "8080").stdout;
    expect(text).toContain("microseg: prod/web");
    expect(text).toContain("no entry → deny");
    // The trace moved no live counter.
    const hits = () => A.json("microseg", "rule", "list").defaultHits.packets as number;
    const h0 = hits();
    A.json("trace", "--from", "free", "--to-endpoint", "db", "--proto", "udp", "--dport", "8080");
    expect(hits()).toBe(h0);

    // Monitor: a logged entry's hit and a denied packet, as they happen.
    const logged = entry(
      "--from",
      "prod/web",
      "--to",
      "prod/db",
      "--proto",
      "udp",
      "--dport",
      "9090",
      "--action",
      "allow",
      "--log",
    );
    const mon = Bun.spawn(
      ["nsenter", `--net=${A.ns.path}`, BINARY, "monitor", "-o", "json", "--duration", "3", ...A.localFlags],
      {
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    await Bun.sleep(700);
    expect(udp(web(), dbIp(), 9090)).toBe(true);
    expect(udp(web(), dbIp(), 8080)).toBe(false);
    await mon.exited;
    const events = (await new Response(mon.stdout).text())
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    expect(
      events.some((e) => e.kind === "log" && e.rule === "microseg" && e.ruleId === logged && e.action === "allow"),
    ).toBe(true);
    expect(events.some((e) => e.kind === "drop" && e.reason === "microseg-deny" && e.endpoint === "db")).toBe(true);

    const res = await fetch("http://stratum/metrics", { unix: A.sock } as RequestInit);
    const m = await res.text();
    expect(m).toMatch(
      new RegExp(
        `stratum_microseg_hits_total\\{entry_id="${logged}",from="prod/web",to="prod/db",action="allow"\\} [1-9]`,
      ),
    );
    expect(m).toMatch(/stratum_microseg_hits_total\{entry_id="none",from="",to="",action="deny"\} [1-9]/);
    expect(m).toContain("stratum_microseg_groups 3");
    // status: the policy's size, this node's grouped endpoints, the generation in force.
    const st = A.json("status").microseg;
    expect(st).toMatchObject({ groups: 3, grouped: 2, enforcing: true });
    expect(st.entries).toBeGreaterThanOrEqual(4);
    expect(st.generation).toBeGreaterThan(0);
    expect(A.ctl("status").stdout).toMatch(
      /microseg: +3 group\(s\), \d+ entries; 2 endpoint\(s\) of this node in a group; generation \d+ in the datapath/,
    );
    A.ctl("microseg", "rule", "del", String(logged));
  }, 30_000);

  test("bad input is refused with one line and nothing changes", () => {
    const before = JSON.stringify(A.json("microseg", "export"));
    const cases: Array<[string[], RegExp, number]> = [
      [["group", "create", "prod/db/x/"], /invalid/, 2],
      [["group", "create", "web2", "--parent", "nope"], /no group "nope"/, 3],
      [["group", "create", "prod"], /exists already/, 9],
      [["group", "delete", "prod"], /has a group under it/, 9],
      [["group", "delete", "prod/db"], /named by entry/, 9],
      [["group", "assign", "web", "nope"], /no group "nope"/, 3],
      [["microseg", "rule", "add", "--from", "nope", "--to", "prod/db", "--action", "allow"], /no group "nope"/, 3],
      [
        ["microseg", "rule", "add", "--from", "prod", "--to", "untagged", "--action", "allow"],
        /--to must be a group/,
        2,
      ],
      [
        ["microseg", "rule", "add", "--from", "prod", "--to", "prod/db", "--action", "allow", "--dport", "80"],
        /--dport needs --proto/,
        2,
      ],
      [["microseg", "rule", "add", "--from", "prod", "--to", "prod/db", "--action", "permit"], /allow|deny/, 2],
      [["microseg", "rule", "del", "999"], /no policy entry 999/, 3],
      [["microseg", "rule", "ad"], /add/, 2],
    ];
    for (const [args, msg, code] of cases) {
      const r = A.ctl(...args);
      expect({ args, code: r.code }).toEqual({ args, code });
      expect(r.stderr.trim().split("\n").length).toBe(1);
      expect(r.stderr).toMatch(msg);
    }
    expect(JSON.stringify(A.json("microseg", "export"))).toBe(before);
  }, 30_000);

  test("export and import round-trip; an import that drops a group with endpoints changes nothing", () => {
    const doc = A.json("microseg", "export");
    const ids = new Map(A.json("group", "list").map((g: { name: string; id: number }) => [g.name, g.id]));
    const file = join(A.dir, "policy.yaml");
    writeFileSync(file, A.ctl("microseg", "export").stdout);
    const r = A.json("microseg", "import", file);
    expect(r.groups).toEqual({ added: 0, removed: 0, kept: 3 });
    expect(A.json("microseg", "export")).toEqual(doc);
    // Same names, same ids: what packets carry does not change.
    expect(new Map(A.json("group", "list").map((g: { name: string; id: number }) => [g.name, g.id]))).toEqual(ids);
    expect(tcp(web(), dbIp())).toBe(true);
    // A cycle (in any order), a group its own parent: refused, nothing changed.
    for (const text of [
      "groups:\n  - name: aa\n    parent: bb\n  - name: bb\n    parent: aa\nrules: []\n",
      "groups:\n  - name: aa\n    parent: aa\nrules: []\n",
    ]) {
      writeFileSync(file, text);
      const cyc = A.ctl("microseg", "import", file);
      expect(cyc.code).toBe(2);
      expect(cyc.stderr).toMatch(/form a cycle/);
    }
    expect(A.json("microseg", "export")).toEqual(doc);
    writeFileSync(file, "groups:\n  - name: prod\nrules: []\n");
    const bad = A.ctl("microseg", "import", file);
    expect(bad.code).toBe(9);
    expect(bad.stderr).toMatch(/group "prod\/(web|db)" has 1 endpoint and is not in the document/);
    expect(A.json("microseg", "export")).toEqual(doc);
    expect(tcp(web(), dbIp())).toBe(true);
  }, 30_000);
});
