/** The firewall's control plane end to end: a real agent in its own namespace, rules added,
 * listed, moved and deleted through the CLI, a rule set exported as YAML and imported into
 * another network, bad input refused with one line and exit 2 (nothing changed), the
 * blocklist, and the kernel's scope entries (read from the pinned map) following each
 * change, surviving an agent restart untouched and leaving with their network. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { decodeScope, encodeU32, FW_GLOBAL_SCOPE } from "../../src/datapath/firewall-maps";
import { BpfMap } from "../../src/sys/bpf";
import { TestAgent } from "../helpers/agent";

let A: TestAgent;
let appId = 0;
let dbId = 0;
const ids: Record<string, number> = {};

const ctl = (...args: string[]) => A.ctl(...args);
const json = (...args: string[]) => A.json(...args);

/** The kernel's entry for a scope (undefined: none), straight from the pinned map. */
function scope(id: number): ReturnType<typeof decodeScope> | undefined {
  using m = BpfMap.openPinned(`${A.pins.path}/maps/stm_fw_scopes`);
  const v = m.lookup(encodeU32(id));
  return v ? decodeScope(v) : undefined;
}

function trieHas(map: "stm_block4" | "stm_block6", key: number[]): boolean {
  using m = BpfMap.openPinned(`${A.pins.path}/maps/${map}`);
  return m.lookup(Buffer.from(key)) !== null;
}

/** A refused command: exit 2, one line on stderr naming the problem. */
function refused(args: string[], msg: string): void {
  const r = ctl(...args);
  expect({ args, code: r.code }).toEqual({ args, code: 2 });
  expect(r.stderr).toContain(msg);
  expect(r.stderr.trim().split("\n")).toHaveLength(1);
}

beforeAll(async () => {
  A = new TestAgent("fwc");
  await A.start();
  appId = json("network", "create", "--name", "app-net", "--cidr", "10.81.0.0/24", "--gateway", "10.81.0.1").id;
  dbId = json("network", "create", "--name", "db-net", "--cidr", "10.82.0.0/24", "--gateway", "10.82.0.1").id;
}, 60_000);

afterAll(() => {
  A?.destroy();
});

test("a new network has its scope in the kernel: its default, no rules, not enforcing", () => {
  expect(scope(appId)).toMatchObject({ def: "allow", on: false, nsum: 0 });
  expect(scope(FW_GLOBAL_SCOPE)).toMatchObject({ def: "allow", on: false });
});

test("rule add prints the id; -o json the rule; the kernel takes each as a new epoch", () => {
  const epoch0 = scope(appId)?.epoch ?? 0;
  const r = ctl("firewall", "rule", "add", "app-net", "--priority", "100", "--proto", "tcp", "--dport", "443");
  expect(r.code).toBe(2); // --action is required
  const add = ctl(
    "firewall",
    "rule",
    "add",
    "app-net",
    "--priority",
    "100",
    "--proto",
    "tcp",
    "--dport",
    "443",
    "--action",
    "allow",
  );
  expect(add.code).toBe(0);
  expect(add.stdout).toMatch(/^\d+\n$/);
  ids.https = Number(add.stdout);
  const rej = json(
    "firewall",
    "rule",
    "add",
    "app-net",
    "--priority",
    "200",
    "--direction",
    "ingress",
    "--src",
    "10.9.0.0/16",
    "--action",
    "reject",
    "--log",
  );
  expect(rej).toMatchObject({
    priority: 200,
    direction: "ingress",
    src: "10.9.0.0/16",
    proto: "any",
    action: "reject",
    log: true,
    hits: { packets: 0, bytes: 0 },
  });
  ids.reject = rej.id;
  ids.ping = json(
    "firewall",
    "rule",
    "add",
    "app-net",
    "--priority",
    "300",
    "--proto",
    "icmp",
    "--icmp-type",
    "8",
    "--action",
    "allow",
  ).id;
  ids.dns6 = json(
    "firewall",
    "rule",
    "add",
    "app-net",
    "--priority",
    "400",
    "--direction",
    "egress",
    "--dst",
    "2001:db8::/32",
    "--proto",
    "udp",
    "--dport",
    "53-54",
    "--action",
    "deny",
  ).id;
  const s = scope(appId);
  expect(s).toMatchObject({ def: "allow", on: true, nsum: 1 });
  expect(s?.epoch).toBeGreaterThan(epoch0);
});

test("firewall default: the network's default action, in the store and the kernel", () => {
  expect(json("firewall", "default", "app-net", "deny")).toEqual({ scope: "app-net", default: "deny" });
  expect(scope(appId)?.def).toBe("deny");
  expect(json("network", "show", "app-net").defaultAction).toBe("deny");
  refused(["firewall", "default", "app-net", "maybe"], 'the default action is allow or deny, not "maybe"');
});

test("rule list: priority order, hit counters, the default's last", () => {
  const v = json("firewall", "rule", "list", "app-net");
  expect(v).toMatchObject({ scope: "app-net", default: "deny", defaultHits: { packets: 0, bytes: 0 } });
  expect(v.rules.map((r: any) => [r.id, r.priority])).toEqual([
    [ids.https, 100],
    [ids.reject, 200],
    [ids.ping, 300],
    [ids.dns6, 400],
  ]);
  expect(v.rules[3]).toMatchObject({ dst: "2001:db8::/32", dport: "53-54", direction: "egress" });
  const table = ctl("firewall", "rule", "list", "app-net").stdout.trim().split("\n");
  expect(table[0]).toMatch(
    /^ID\s+PRIORITY\s+DIRECTION\s+SRC\s+DST\s+PROTO\s+PORTS\/ICMP\s+ACTION\s+LOG\s+PACKETS\s+BYTES$/,
  );
  expect(table[1]).toMatch(
    new RegExp(`^${ids.https}\\s+100\\s+both\\s+\\*\\s+\\*\\s+tcp\\s+dport 443\\s+allow\\s+-\\s+0\\s+0 B$`),
  );
  expect(table.at(-1)).toBe("default: deny (0 packets, 0 B)");
});

test("bad input: exit 2, one line, nothing changed in the store or the kernel", () => {
  const before = [JSON.stringify(json("firewall", "export", "app-net")), scope(appId)?.gen];
  refused(
    ["firewall", "rule", "add", "app-net", "--priority", "5", "--src", "10.0.0.300/8", "--action", "deny"],
    "--src: ",
  );
  refused(
    ["firewall", "rule", "add", "app-net", "--priority", "5", "--src", "10.0.0.1/8", "--action", "deny"],
    "has host bits set",
  );
  refused(
    ["firewall", "rule", "add", "app-net", "--priority", "100", "--action", "deny"],
    `priority 100 is taken by rule ${ids.https}`,
  );
  refused(
    ["firewall", "rule", "add", "app-net", "--priority", "5", "--proto", "icmp", "--dport", "80", "--action", "deny"],
    "--sport/--dport need --proto tcp or udp",
  );
  refused(
    ["firewall", "rule", "add", "app-net", "--priority", "x", "--action", "deny"],
    "--priority must be a positive integer",
  );
  refused(
    ["firewall", "rule", "add", "--global", "app-net", "--priority", "5", "--action", "deny"],
    'unexpected argument "app-net"',
  );
  refused(["firewall", "rule", "add", "--priority", "5", "--action", "deny"], "give a NETWORK, or --global");
  refused(
    ["firewall", "rule", "move", "app-net", String(ids.ping), "--priority", "200"],
    `priority 200 is taken by rule ${ids.reject}`,
  );
  refused(
    ["network", "create", "--name", "global", "--cidr", "10.83.0.0/24", "--gateway", "10.83.0.1"],
    'network name "global" is reserved',
  );
  const missing = ctl("firewall", "rule", "del", "app-net", "99999");
  expect(missing.code).toBe(3);
  expect(missing.stderr).toContain("app-net has no rule 99999");
  expect(ctl("firewall", "rule", "list", "no-net").code).toBe(3);
  expect([JSON.stringify(json("firewall", "export", "app-net")), scope(appId)?.gen]).toEqual(before);
});

test("export YAML → import into another network: the same set; a bad file changes nothing", () => {
  const yaml = ctl("firewall", "export", "app-net");
  expect(yaml.code).toBe(0);
  const doc = parse(yaml.stdout);
  expect(doc.default).toBe("deny");
  expect(doc.rules).toHaveLength(4);
  expect(doc.rules[0]).toEqual({
    priority: 100,
    direction: "both",
    proto: "tcp",
    dport: 443,
    action: "allow",
    log: false,
  });
  const file = join(A.dir, "app-net.yaml");
  writeFileSync(file, yaml.stdout);
  expect(json("firewall", "import", "db-net", file)).toEqual({ scope: "db-net", default: "deny", rules: 4, kept: 0 });
  expect(ctl("firewall", "export", "db-net").stdout).toBe(yaml.stdout);
  expect(scope(dbId)).toMatchObject({ def: "deny", on: true, nsum: 1 });

  // Importing the same file again changes no rule: ids (and their counters) stay.
  const idsBefore = json("firewall", "rule", "list", "db-net").rules.map((r: any) => r.id);
  expect(json("firewall", "import", "db-net", file)).toMatchObject({ rules: 4, kept: 4 });
  expect(json("firewall", "rule", "list", "db-net").rules.map((r: any) => r.id)).toEqual(idsBefore);

  const bad = join(A.dir, "bad.yaml");
  writeFileSync(bad, `${yaml.stdout}  - priority: 500\n    proto: tcp\n    dport: 99999\n    action: allow\n`);
  const gen = scope(dbId)?.gen;
  refused(
    ["firewall", "import", "db-net", bad],
    `${bad}:${yaml.stdout.split("\n").length}: rules[4] (priority 500): dport "99999" is out of range`,
  );
  expect(scope(dbId)?.gen).toBe(gen);
  expect(ctl("firewall", "export", "db-net").stdout).toBe(yaml.stdout);
});

test("move and delete by id; the global scope with --global", () => {
  expect(json("firewall", "rule", "move", "app-net", String(ids.ping), "--priority", "50")).toMatchObject({
    id: ids.ping,
    priority: 50,
  });
  expect(ctl("firewall", "rule", "del", "app-net", String(ids.dns6)).stdout).toBe(
    `deleted rule ${ids.dns6} of app-net\n`,
  );
  expect(json("firewall", "rule", "list", "app-net").rules.map((r: any) => r.id)).toEqual([
    ids.ping,
    ids.https,
    ids.reject,
  ]);

  const g = json(
    "firewall",
    "rule",
    "add",
    "--global",
    "--priority",
    "10",
    "--src",
    "192.0.2.0/24",
    "--action",
    "deny",
  );
  expect(json("firewall", "rule", "list", "--global")).toMatchObject({
    scope: "global",
    default: "allow",
    rules: [{ id: g.id }],
  });
  expect(scope(FW_GLOBAL_SCOPE)).toMatchObject({ def: "allow", on: true });
  expect(json("firewall", "default", "--global", "deny")).toEqual({ scope: "global", default: "deny" });
  expect(scope(FW_GLOBAL_SCOPE)?.def).toBe("deny");
  expect(json("firewall", "default", "--global", "allow").default).toBe("allow");
});

test("blocklist: add, list, del, import; bad lines by number, nothing added", () => {
  expect(json("firewall", "blocklist", "add", "198.51.100.0/24", "2001:db8:bad::/48", "203.0.113.7")).toEqual({
    given: 3,
    added: 3,
    listed: 0,
    counts: { ipv4: 2, ipv6: 1 },
  });
  expect(trieHas("stm_block4", [24, 0, 0, 0, 198, 51, 100, 0])).toBe(true);
  expect(trieHas("stm_block6", [48, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad, ...Array(10).fill(0)])).toBe(true);
  const v = json("firewall", "blocklist", "list");
  expect(v.counts).toEqual({ ipv4: 2, ipv6: 1 });
  expect(v.prefixes.map((p: any) => p.prefix)).toEqual(["198.51.100.0/24", "203.0.113.7/32", "2001:db8:bad::/48"]);
  expect(ctl("firewall", "blocklist", "del", "203.0.113.7").code).toBe(0);
  expect(trieHas("stm_block4", [32, 0, 0, 0, 203, 0, 113, 7])).toBe(false);
  expect(ctl("firewall", "blocklist", "del", "203.0.113.7").code).toBe(3);
  refused(["firewall", "blocklist", "add", "192.0.2.1/24"], "has host bits set");

  const bad = join(A.dir, "bad.txt");
  writeFileSync(bad, "# bad actors\n192.0.2.0/24\nnot-an-address\n\n10.0.0.0/33\n");
  refused(["firewall", "blocklist", "import", bad], `${bad}: 2 bad lines (nothing was applied): line 3: `);
  expect(json("firewall", "blocklist", "list").counts).toEqual({ ipv4: 1, ipv6: 1 });
  const good = join(A.dir, "good.txt");
  writeFileSync(
    good,
    `# bad actors\n${Array.from({ length: 300 }, (_, i) => `100.64.${i >> 8}.${i & 255}`).join("\n")}\n198.51.100.0/24 # again\n`,
  );
  const r = ctl("firewall", "blocklist", "import", good);
  expect(r.code).toBe(0);
  expect(r.stdout).toBe(
    `${good}: 301 prefixes in 302 lines: 300 added, 1 listed already; blocklist: 301 IPv4, 1 IPv6\n`,
  );
  expect(trieHas("stm_block4", [32, 0, 0, 0, 100, 64, 1, 43])).toBe(true);
});

test("an agent restart finds every scope right and writes nothing; the blocklist stays", async () => {
  const before = [scope(FW_GLOBAL_SCOPE), scope(appId), scope(dbId)];
  const list = JSON.stringify(json("firewall", "rule", "list", "app-net"));
  await A.kill("SIGKILL");
  await A.start();
  expect([scope(FW_GLOBAL_SCOPE), scope(appId), scope(dbId)]).toEqual(before);
  expect(A.logText).toContain("3 firewall scope(s) (3 unchanged)");
  expect(JSON.stringify(json("firewall", "rule", "list", "app-net"))).toBe(list);
  expect(json("firewall", "blocklist", "list").counts).toEqual({ ipv4: 301, ipv6: 1 });
  expect(trieHas("stm_block4", [24, 0, 0, 0, 198, 51, 100, 0])).toBe(true);
});

test("blocklist: list streams every page in numeric order, --contains filters, test names the match, clear empties it", () => {
  // 25,000 more host prefixes: three pages of the CLI's 10,000, in an order strings would get wrong.
  const feed = join(A.dir, "feed.txt");
  const hosts = Array.from({ length: 25_000 }, (_, i) => `10.${(i * 7) % 251}.${(i * 13) % 256}.${i % 250}`);
  const unique = [...new Set(hosts)];
  writeFileSync(feed, `${hosts.join("\n")}\n`);
  expect(ctl("firewall", "blocklist", "import", feed).code).toBe(0);
  const num = (p: string) => p.split(/[./]/).reduce((a, x, i) => (i < 4 ? a * 256 + Number(x) : a), 0);
  const v4 = [
    ...unique.map((h) => `${h}/32`),
    ...Array.from({ length: 300 }, (_, i) => `100.64.${i >> 8}.${i & 255}/32`),
    "198.51.100.0/24",
  ];
  const want = [...v4.sort((a, b) => num(a) - num(b)), "2001:db8:bad::/48"];
  const all = json("firewall", "blocklist", "list");
  expect(all.counts).toEqual({ ipv4: v4.length, ipv6: 1 });
  expect(all.next).toBeNull();
  expect(all.prefixes.length).toBe(want.length);
  expect(all.prefixes.map((p: any) => p.prefix)).toEqual(want);
  const table = ctl("firewall", "blocklist", "list");
  const lines = table.stdout.trimEnd().split("\n");
  expect(lines[0]).toMatch(/^PREFIX +ADDED$/);
  expect(lines.slice(1, -1).map((l) => l.split(/ +/)[0])).toEqual(want);
  expect(lines.at(-1)).toBe(`${v4.length.toLocaleString("en-US")} IPv4 and 1 IPv6 prefixes`);

  const over = ctl("firewall", "blocklist", "list", "--contains", "198.51.100.9");
  expect(over.stdout.split("\n").slice(1, 2)[0]).toMatch(/^198\.51\.100\.0\/24 +\d{4}-\d\d-\d\dT/);
  expect(over.stdout).toContain(
    `1 listed prefix covers 198.51.100.9 (of ${v4.length.toLocaleString("en-US")} IPv4 and 1 IPv6)`,
  );
  expect(ctl("firewall", "blocklist", "test", "198.51.100.9").stdout).toBe(
    "198.51.100.9 is blocked by 198.51.100.0/24\n",
  );
  expect(json("firewall", "blocklist", "test", "2001:db8:bad::1")).toEqual({
    address: "2001:db8:bad::1",
    blocked: true,
    match: "2001:db8:bad::/48",
    matches: ["2001:db8:bad::/48"],
  });
  const free = ctl("firewall", "blocklist", "test", "192.0.2.1");
  expect({ code: free.code, out: free.stdout }).toEqual({
    code: 0,
    out: "192.0.2.1 is not blocked: no listed prefix covers it\n",
  });
  refused(["firewall", "blocklist", "test", "192.0.2.300"], "address: ");

  const cleared = ctl("firewall", "blocklist", "clear");
  expect({ code: cleared.code, out: cleared.stdout }).toEqual({
    code: 0,
    out: `removed ${(v4.length + 1).toLocaleString("en-US")} prefixes from the blocklist\n`,
  });
  expect(trieHas("stm_block4", [24, 0, 0, 0, 198, 51, 100, 0])).toBe(false);
  expect(trieHas("stm_block6", [48, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad, ...Array(10).fill(0)])).toBe(false);
  expect(json("firewall", "blocklist", "list")).toEqual({ counts: { ipv4: 0, ipv6: 0 }, prefixes: [], next: null });
  expect(ctl("firewall", "blocklist", "list").stdout).toBe("0 IPv4 and 0 IPv6 prefixes\n");
  expect(json("firewall", "blocklist", "clear")).toEqual({ removed: 0, counts: { ipv4: 0, ipv6: 0 } });
}, 30_000);

test("deleting a network removes its scope from the kernel", () => {
  expect(ctl("network", "delete", "db-net").code).toBe(0);
  expect(scope(dbId)).toBeUndefined();
  expect(scope(appId)).toBeDefined();
  expect(ctl("firewall", "rule", "list", "db-net").code).toBe(3);
});
