/** The firewall's control plane without a kernel: rule sets as YAML documents (export →
 * import gives the same set), blocklist files checked line by line, and the service's order
 * of writes (kernel first, then the store; the previous set back when the store fails; a
 * refused change leaves both untouched), on the real store and a stand-in for the tables. */
import { beforeEach, expect, test } from "bun:test";
import fc from "fast-check";
import { parse } from "yaml";
import { FW_GLOBAL_SCOPE } from "../../src/datapath/firewall-maps";
import { StratumError } from "../../src/errors";
import {
  badLinesError,
  packPrefixes,
  parseBlocklistText,
  parseBlockPrefix,
  unpackSubnets,
} from "../../src/model/blocklist";
import {
  parseRule,
  parseRuleCidr,
  type Rule,
  ruleContentKey,
  sameRule,
  withRuleInPlace,
} from "../../src/model/firewall-rule";
import { formatSubnet } from "../../src/model/ip";
import { validateNetwork } from "../../src/model/network";
import { exportRuleSet, parseRuleSetYaml, ruleSetYaml, validateRuleSet } from "../../src/model/ruleset";
import { FirewallService } from "../../src/services/firewall-service";
import { SqliteStore } from "../../src/store/sqlite";
import { FakeFwKernel } from "../helpers/fake-fw";

const VARIED: Rule[] = [
  parseRule({ priority: 100, proto: "tcp", dport: 443, action: "allow" }),
  parseRule({ priority: 110, proto: "tcp", sport: "1024-65535", dport: "8000-8080", action: "allow", log: true }),
  parseRule({ priority: 120, direction: "ingress", src: "10.9.0.0/16", action: "reject" }),
  parseRule({ priority: 130, direction: "egress", dst: "2001:db8::/32", proto: "udp", dport: 53, action: "deny" }),
  parseRule({ priority: 140, proto: "icmp", "icmp-type": "8/0", action: "allow" }),
  parseRule({ priority: 150, proto: "icmpv6", "icmp-type": 128, src: "fd00::/8", action: "allow" }),
  parseRule({ priority: 160, src: "::ffff:192.0.2.0/120", dst: "198.51.100.7", action: "deny" }),
];

let store: SqliteStore;
let kernel: FakeFwKernel;
let fw: FirewallService;
let appId: number;
let dbId: number;

beforeEach(() => {
  store = new SqliteStore(":memory:");
  kernel = new FakeFwKernel();
  fw = new FirewallService(store, kernel);
  appId = store.createNetwork(validateNetwork({ name: "app-net", cidr: "10.20.0.0/24", gateway: "10.20.0.1" })).id;
  dbId = store.createNetwork(validateNetwork({ name: "db-net", cidr: "10.30.0.0/24", gateway: "10.30.0.1" })).id;
});

test("YAML: export → parse gives the same rules; fields are the flag names", () => {
  const yaml = ruleSetYaml(exportRuleSet("deny", VARIED));
  expect(yaml.startsWith("default: deny\nrules:\n")).toBe(true);
  expect(yaml).toContain("    dport: 443\n");
  expect(yaml).toContain("    icmp-type: 8/0\n");
  expect(yaml).toContain("    src: 192.0.2.0/24\n"); // IPv4-mapped became IPv4
  const fields = new Set([...yaml.matchAll(/^ {2}(?:- | {2})([a-z-]+):/gm)].map((m) => m[1]));
  expect([...fields].sort()).toEqual(
    ["action", "direction", "dport", "dst", "icmp-type", "log", "priority", "proto", "sport", "src"].sort(),
  );
  const { set } = parseRuleSetYaml(yaml, "r.yaml");
  expect(set).toEqual({ default: "deny", rules: VARIED });
});

test("YAML: the fast path reads what the yaml library reads, quoted keys and flow style too", () => {
  const texts = [
    ruleSetYaml(exportRuleSet("deny", VARIED)),
    '{"default": "allow", "rules": [{"priority": 3, "action": "deny", "dport": 22, "proto": "tcp"}]}',
    "rules:\n  - {priority: 7, action: allow, src: 10.1.0.0/16}\n  - priority: 8 # src: in a comment\n    action: deny\n",
  ];
  for (const t of texts)
    expect(parseRuleSetYaml(t, "r.yaml")).toEqual({ doc: parse(t), set: validateRuleSet(parse(t)) });
});

test("YAML: a bad file names the line, the rule and the field", () => {
  const cases: Array<[string, string]> = [
    [
      "rules:\n  - priority: 1\n    action: allow\n  - priority: 2\n    src: 10.0.0.300/8\n    action: deny\n",
      "r.yaml:4: rules[1] (priority 2): src: ",
    ],
    [
      "rules:\n  - priority: 1\n    action: allow\n  - priority: 1\n    action: deny\n",
      "r.yaml:4: rules[1] has priority 1 like rules[0]",
    ],
    [
      "rules:\n  - priority: 5\n    dports: 80\n    action: allow\n",
      'r.yaml:2: rules[0] (priority 5): unknown field "dports"',
    ],
    [
      "rules:\n  - priority: 5\n    proto: icmp\n    dport: 80\n    action: allow\n",
      "sport/dport need proto tcp or udp",
    ],
    ["default: maybe\nrules: []\n", 'default: must be allow or deny, not "maybe"'],
    ["rule:\n  - priority: 1\n", 'unknown top-level field "rule"'],
    ["rules: [\n", "r.yaml:2: not valid YAML"],
    // A key given twice is refused, not taken last-wins (the native parser's fast path would).
    [
      "rules:\n  - priority: 5\n    action: allow\n    action: deny\n",
      "r.yaml:4: not valid YAML: Map keys must be unique",
    ],
    ["default: allow\ndefault: deny\nrules: []\n", "not valid YAML: Map keys must be unique"],
    ["- 1\n- 2\n", "a rule set is a map"],
  ];
  for (const [text, msg] of cases) expect(() => parseRuleSetYaml(text, "r.yaml")).toThrow(msg);
});

test("blocklist files: comments, blank lines, bare addresses, repeats; every bad line by number", () => {
  const ok = parseBlocklistText(
    "# bad actors\n198.51.100.0/24\n\n203.0.113.7   # one host\n2001:db8:bad::/48\n198.51.100.0/24\n::ffff:192.0.2.1\n",
  );
  expect(ok.bad).toEqual([]);
  expect(ok.lines).toBe(7);
  expect(ok.count).toBe(4);
  // Packed: each family in numeric order, repeats once.
  expect(unpackSubnets(ok.prefixes).map(formatSubnet)).toEqual([
    "192.0.2.1/32",
    "198.51.100.0/24",
    "203.0.113.7/32",
    "2001:db8:bad::/48",
  ]);
  const bad = parseBlocklistText("10.0.0.0/8\nnonsense\n10.0.0.1/8\n0.0.0.0/0\n");
  expect(bad.bad.map((b) => b.line)).toEqual([2, 3, 4]);
  const e = badLinesError("list.txt", bad.bad);
  expect(e.code).toBe("INVALID");
  expect(e.message).toStartWith("list.txt: 3 bad lines (nothing was applied): line 2: ");
  expect(e.message).toContain("line 4: blocklist prefix 0.0.0.0/0 would block every IPv4 source");
  const seen: number[] = [];
  parseBlocklistText("1.1.1.1\n".repeat(25), (n) => seen.push(n), 10);
  expect(seen).toEqual([10, 20]);
});

test("blocklist prefixes: the IPv4 fast path agrees with the general parser", () => {
  const octet = fc.oneof(
    fc.integer({ min: 0, max: 300 }).map(String),
    fc.constantFrom("00", "01", "007", "255", "256"),
  );
  const text = fc
    .tuple(
      octet,
      octet,
      octet,
      octet,
      fc.option(fc.oneof(fc.integer({ min: 0, max: 40 }).map(String), fc.constant("08"))),
    )
    .map(([a, b, c, d, len]) => `${a}.${b}.${c}.${d}${len === null ? "" : `/${len}`}`);
  const general = (t: string) => {
    const s = parseRuleCidr(t, "blocklist prefix");
    if (s.prefixLen === 0) throw new Error("zero");
    return { prefix: formatSubnet(s), family: s.family, subnet: s };
  };
  const outcome = (f: () => unknown) => {
    try {
      return f();
    } catch {
      return "error";
    }
  };
  fc.assert(
    fc.property(text, (t) => {
      expect(outcome(() => parseBlockPrefix(t))).toEqual(outcome(() => general(t)));
    }),
    { numRuns: 3000 },
  );
  for (const t of ["10.0.0.0/8", "192.0.2.1", "10.1.2.0/23", "255.255.255.255/32", "0.0.0.0/1", "128.0.0.0/1"])
    expect(parseBlockPrefix(t)).toEqual(general(t));
});

test("export → import into another network gives the same set; identical rules keep ids and hits", () => {
  for (const r of VARIED) fw.addRule("app-net", exportRuleSet("allow", [r]).rules[0] as never);
  fw.setDefault("app-net", "deny");
  const doc = fw.exportRules("app-net");
  const yaml = ruleSetYaml(doc);
  const r = fw.importRules("db-net", parseRuleSetYaml(yaml, "x.yaml").doc);
  expect(r).toEqual({ scope: "db-net", default: "deny", rules: VARIED.length, kept: 0 });
  expect(fw.exportRules("db-net")).toEqual(doc);
  expect(kernel.scopes.get(dbId)?.rules.map((x) => x.priority)).toEqual(VARIED.map((x) => x.priority));
  expect(kernel.scopes.get(dbId)?.def).toBe("deny");

  // Re-import with one rule changed: the others keep their ids (and counters).
  const before = store.listRules(dbId);
  kernel.hitsOf.set(before[0]?.id as number, { packets: 5, bytes: 300 });
  const changed = { ...doc, rules: doc.rules.map((x) => (x.priority === 120 ? { ...x, action: "deny" } : x)) };
  expect(fw.importRules("db-net", changed)).toMatchObject({ rules: VARIED.length, kept: VARIED.length - 1 });
  const after = store.listRules(dbId);
  const old120 = before.find((x) => x.priority === 120)?.id;
  expect(after.filter((x) => x.priority !== 120).map((x) => x.id)).toEqual(
    before.filter((x) => x.priority !== 120).map((x) => x.id),
  );
  expect(after.find((x) => x.priority === 120)?.id).not.toBe(old120);
  expect(kernel.forgotten).toEqual([old120 as number]);
  expect(fw.listRules("db-net").rules[0]?.hits).toEqual({ packets: 5, bytes: 300 });

  // Without default: the default stays; an empty list empties the scope.
  expect(fw.importRules("db-net", { rules: [] })).toMatchObject({ default: "deny", rules: 0 });
  expect(store.listRules(dbId)).toEqual([]);
});

test("the kernel is written first: a refused apply changes nothing, a failed store write restores it", () => {
  const a = fw.addRule("app-net", { priority: 100, proto: "tcp", dport: 443, action: "allow" });
  expect(kernel.scopes.get(appId)?.rules.map((r) => r.id)).toEqual([a.id]);
  expect(a).toMatchObject({ priority: 100, proto: "tcp", dport: 443, action: "allow", hits: { packets: 0, bytes: 0 } });

  kernel.failNext = new StratumError("CAPACITY", "firewall table stm_fw_ports would need 200000 entries");
  let err: unknown;
  try {
    fw.addRule("app-net", { priority: 200, action: "deny" });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(StratumError);
  expect((err as StratumError).code).toBe("CAPACITY");
  expect((err as StratumError).message).toStartWith("firewall of network app-net: firewall table stm_fw_ports");
  expect(store.listRules(appId).map((r) => r.priority)).toEqual([100]);

  const orig = store.addRule.bind(store);
  store.addRule = () => {
    throw new Error("disk full");
  };
  expect(() => fw.addRule("app-net", { priority: 300, action: "deny" })).toThrow("disk full");
  store.addRule = orig;
  expect(store.listRules(appId).map((r) => r.priority)).toEqual([100]);
  expect(kernel.scopes.get(appId)?.rules.map((r) => r.priority)).toEqual([100]);

  const applies = kernel.applies;
  expect(() => fw.addRule("app-net", { priority: 100, action: "deny" })).toThrow(
    `priority 100 is taken by rule ${a.id}`,
  );
  expect(() => fw.addRule("app-net", { priority: 5, src: "10.0.0.300", action: "deny" })).toThrow("--src: ");
  expect(() => fw.addRule("nope", { priority: 5, action: "deny" })).toThrow("network nope does not exist");
  expect(kernel.applies).toBe(applies);
});

test("move, delete, defaults: global and per network", () => {
  const a = fw.addRule("global", { priority: 10, src: "192.0.2.0/24", action: "deny" });
  const b = fw.addRule("global", { priority: 20, action: "allow" });
  expect(fw.moveRule("global", b.id, 5)).toMatchObject({ id: b.id, priority: 5 });
  expect(kernel.scopes.get(FW_GLOBAL_SCOPE)?.rules.map((r) => r.id)).toEqual([b.id, a.id]);
  expect(() => fw.moveRule("global", a.id, 5)).toThrow(`priority 5 is taken by rule ${b.id}`);
  expect(() => fw.moveRule("global", 999, 1)).toThrow("the global scope has no rule 999");
  fw.deleteRule("global", b.id);
  expect(kernel.forgotten).toEqual([b.id]);
  expect(fw.listRules("global")).toMatchObject({ scope: "global", default: "allow", rules: [{ id: a.id }] });

  expect(fw.setDefault("global", "deny")).toEqual({ scope: "global", default: "deny" });
  expect(store.getGlobalDefault()).toBe("deny");
  expect(kernel.scopes.get(FW_GLOBAL_SCOPE)?.def).toBe("deny");
  fw.setDefault("app-net", "deny");
  expect(store.getNetwork("app-net")?.defaultAction).toBe("deny");
  expect(kernel.scopes.get(appId)).toEqual({ rules: [], def: "deny" });
});

test("blocklist: all checked before anything is written; capacity first; repeats counted", () => {
  expect(fw.blockAdd(["198.51.100.0/24", "203.0.113.7", "2001:db8:bad::/48", "203.0.113.7/32"])).toEqual({
    given: 3,
    added: 3,
    listed: 0,
    counts: { ipv4: 2, ipv6: 1 },
  });
  expect(fw.blockAdd(["198.51.100.0/24", "192.0.2.0/24"])).toMatchObject({ added: 1, listed: 1 });
  expect(() => fw.blockAdd(["192.0.2.9/24", "10.0.0.0/8", "bogus"])).toThrow(
    "2 bad prefixes (nothing was added): prefixes[0]: ",
  );
  kernel.blockMax = 4;
  expect(() => fw.blockAdd(["10.0.0.0/8", "10.1.0.0/16"])).toThrow("holds 4 prefixes");
  expect(store.blockCount(4)).toBe(3);
  expect([...kernel.block].sort()).toEqual(
    store
      .blockList()
      .map((e) => e.prefix)
      .sort(),
  );
  expect(fw.blockDel("203.0.113.7")).toEqual({ deleted: "203.0.113.7/32" });
  expect(() => fw.blockDel("203.0.113.7")).toThrow("203.0.113.7/32 is not on the blocklist");
  expect(kernel.block.has("203.0.113.7/32")).toBe(false);
});

test("blocklist pages: numeric order (family, address, length), every entry once, a cursor per page", () => {
  const given = [
    "2001:db8::/32",
    "10.0.0.0/8",
    "9.0.0.0/8",
    "100.64.0.0/10",
    "10.0.0.0/16",
    "10.0.0.1/32",
    "192.0.2.0/24",
    "::ffff:1.2.3.0/120", // IPv4 (mapped)
    "2001:db8::/48",
    "fd00::/8",
    "2001:db8:0:1::/64",
  ];
  fw.blockAdd(given);
  const order = [
    "1.2.3.0/24",
    "9.0.0.0/8",
    "10.0.0.0/8",
    "10.0.0.0/16",
    "10.0.0.1/32",
    "100.64.0.0/10",
    "192.0.2.0/24",
    "2001:db8::/32",
    "2001:db8::/48",
    "2001:db8:0:1::/64",
    "fd00::/8",
  ];
  expect(fw.blockPage().prefixes.map((e) => e.prefix)).toEqual(order);
  expect(fw.blockPage()).toMatchObject({ counts: { ipv4: 7, ipv6: 4 }, next: null });
  // Pages of 3: every entry once, in order; the last page's next is null.
  const seen: string[] = [];
  const nexts: Array<string | null> = [];
  let after: string | undefined;
  do {
    const p = fw.blockPage({ limit: 3, ...(after ? { after } : {}) });
    seen.push(...p.prefixes.map((e) => e.prefix));
    nexts.push(p.next);
    after = p.next ?? undefined;
  } while (after);
  expect(seen).toEqual(order);
  expect(nexts).toEqual(["10.0.0.0/8", "100.64.0.0/10", "2001:db8::/48", null]);
  // A cursor that is no longer listed still pages on from where it was.
  fw.blockDel("10.0.0.0/16");
  expect(fw.blockPage({ limit: 2, after: "10.0.0.0/16" }).prefixes.map((e) => e.prefix)).toEqual([
    "10.0.0.1/32",
    "100.64.0.0/10",
  ]);
  // contains: the prefixes covering an address or a prefix.
  expect(fw.blockPage({ contains: "10.0.0.1" }).prefixes.map((e) => e.prefix)).toEqual(["10.0.0.0/8", "10.0.0.1/32"]);
  expect(fw.blockPage({ contains: "2001:db8:0:1::/64" }).prefixes.map((e) => e.prefix)).toEqual([
    "2001:db8::/32",
    "2001:db8::/48",
    "2001:db8:0:1::/64",
  ]);
  expect(fw.blockPage({ contains: "8.8.8.8" }).prefixes).toEqual([]);
  expect(() => fw.blockPage({ after: "nope" })).toThrow("after: ");
  expect(() => fw.blockPage({ contains: "10.0.0.300" })).toThrow("contains: ");
});

test("blocklist order is numeric for any prefixes (property)", () => {
  const v4 = fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 1, max: 32 })).map(([a, len]) =>
    formatSubnet({
      family: 4,
      network: BigInt(a) & (((1n << BigInt(len)) - 1n) << BigInt(32 - len)),
      prefixLen: len,
    }),
  );
  const v6 = fc
    .tuple(fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), fc.integer({ min: 1, max: 128 }))
    .map(([a, len]) =>
      formatSubnet({ family: 6, network: a & (((1n << BigInt(len)) - 1n) << BigInt(128 - len)), prefixLen: len }),
    );
  fc.assert(
    fc.property(fc.uniqueArray(fc.oneof(v4, v6), { maxLength: 40 }), (ps) => {
      const s = new SqliteStore(":memory:");
      const f = new FirewallService(s, new FakeFwKernel());
      if (ps.length) f.blockAdd(ps);
      const key = (p: string) => {
        const sn = parseRuleCidr(p, "p");
        return [sn.family, sn.network, sn.prefixLen] as const;
      };
      const want = [...ps].sort((a, b) => {
        const [fa, na, la] = key(a);
        const [fb, nb, lb] = key(b);
        return fa - fb || (na < nb ? -1 : na > nb ? 1 : 0) || la - lb;
      });
      expect(f.blockPage({ limit: 100 }).prefixes.map((e) => e.prefix)).toEqual(want);
      s.close();
    }),
    { numRuns: 50 },
  );
});

test("blocklist test: the covering prefixes, longest (the datapath's match) first; clear removes all", () => {
  fw.blockAdd(["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", "2001:db8::/32"]);
  expect(fw.blockTest("10.1.2.3")).toEqual({
    address: "10.1.2.3",
    blocked: true,
    match: "10.1.2.3/32",
    matches: ["10.1.2.3/32", "10.1.0.0/16", "10.0.0.0/8"],
  });
  expect(fw.blockTest("::ffff:10.1.9.9")).toMatchObject({ address: "10.1.9.9", match: "10.1.0.0/16" });
  expect(fw.blockTest("10.1.0.0/24")).toMatchObject({ address: "10.1.0.0/24", match: "10.1.0.0/16" });
  expect(fw.blockTest("2001:db8:1::5")).toMatchObject({ blocked: true, match: "2001:db8::/32" });
  expect(fw.blockTest("192.0.2.1")).toEqual({ address: "192.0.2.1", blocked: false, match: null, matches: [] });
  expect(() => fw.blockTest("not-an-address")).toThrow("address: ");

  kernel.block.add("172.16.0.0/12"); // a stray in the tries goes too
  expect(fw.blockClear()).toEqual({ removed: 4, counts: { ipv4: 0, ipv6: 0 } });
  expect([...kernel.block]).toEqual([]);
  expect(store.blockList()).toEqual([]);
  expect(fw.blockClear()).toEqual({ removed: 0, counts: { ipv4: 0, ipv6: 0 } });
});

test("blocklist clear: a store that fails puts the tries back as they were", () => {
  fw.blockAdd(["10.0.0.0/8", "2001:db8::/32"]);
  const clear = store.blockClear.bind(store);
  store.blockClear = () => {
    throw new StratumError("SYS", "disk I/O error");
  };
  try {
    expect(() => fw.blockClear()).toThrow("disk I/O error");
  } finally {
    store.blockClear = clear;
  }
  expect([...kernel.block].sort()).toEqual(["10.0.0.0/8", "2001:db8::/32"]);
  expect(store.blockCount(4) + store.blockCount(6)).toBe(2);
});

test("restore: scopes already right are taken over, the rest applied, strays collected; the blocklist matched", () => {
  store.addRule(appId, parseRule({ priority: 1, action: "deny" }));
  store.blockAdd(packPrefixes(["198.51.100.0/24", "2001:db8::/32"]));
  kernel.adoptable.add(appId);
  kernel.scopes.set(77, { rules: [], def: "deny" }); // a network deleted while the agent was down
  kernel.block.add("192.0.2.0/24"); // written by hand
  kernel.block.add("198.51.100.0/24");
  const r = fw.restore();
  expect(r).toMatchObject({ scopes: 3, adopted: 1, blocklist: { added: 1, removed: 1 }, errors: [] });
  expect(kernel.applies).toBe(2); // global and db-net; app-net was already right
  expect([...kernel.scopes.keys()].sort()).toEqual([FW_GLOBAL_SCOPE, appId, dbId].sort());
  expect([...kernel.block].sort()).toEqual(["198.51.100.0/24", "2001:db8::/32"]);
});

test("the blocklist mark: a start it vouches for does not walk the tries; a change or other tries void it", () => {
  let note: string | undefined;
  const mark = {
    read: () => note,
    write: (v: string) => {
      note = v;
    },
    clear: () => {
      note = undefined;
    },
  };
  fw.useBlockMark(mark);
  fw.blockAdd(["198.51.100.0/24", "2001:db8::/32"]);
  expect(note).toBeDefined();
  // A restart: a new service over the same store and tries, the mark as left.
  const again = () => {
    const s = new FirewallService(store, kernel);
    s.useBlockMark(mark);
    return s;
  };
  const walks = kernel.blockWalks;
  again().restore();
  expect(kernel.blockWalks).toBe(walks);
  // A change cut short (a crash between the kernel and the store) leaves no mark: the next start walks.
  mark.clear();
  kernel.block.add("192.0.2.0/24");
  again().restore();
  expect(kernel.blockWalks).toBe(walks + 1);
  expect([...kernel.block].sort()).toEqual(["198.51.100.0/24", "2001:db8::/32"]);
  expect(note).toBeDefined();
  // Other tries (pins recreated): walked and refilled.
  kernel.ids = [21, 22];
  kernel.block.clear();
  again().restore();
  expect(kernel.blockWalks).toBe(walks + 2);
  expect([...kernel.block].sort()).toEqual(["198.51.100.0/24", "2001:db8::/32"]);
  // A short list is still checked in every later pass, vouched or not.
  const s = again();
  s.restore();
  s.restore();
  expect(kernel.blockWalks).toBe(walks + 3);
});

test("sameRule and ruleContentKey agree: two rules are the same exactly when their keys are", () => {
  const spec = fc.record({
    priority: fc.constantFrom(1, 2),
    direction: fc.constantFrom("ingress", "egress", "both"),
    src: fc.constantFrom(undefined, "10.0.0.0/8", "10.1.0.0/16"),
    proto: fc.constantFrom("tcp", "udp"),
    dport: fc.constantFrom(undefined, 80, "80-81"),
    action: fc.constantFrom("allow", "deny"),
    log: fc.boolean(),
  });
  const rule = (x: Record<string, unknown>) =>
    parseRule(Object.fromEntries(Object.entries(x).filter(([, v]) => v !== undefined)) as never);
  fc.assert(
    fc.property(spec, spec, (a, b) => {
      const [ra, rb] = [rule(a), rule(b)];
      expect(sameRule(ra, rb)).toBe(ruleContentKey(ra) === ruleContentKey(rb));
    }),
    { numRuns: 3000 },
  );
});

test("validateRuleSet reports by index for the API", () => {
  expect(() => validateRuleSet({ rules: [{ priority: 1, action: "allow" }, { priority: 2 }] })).toThrow(
    "rules[1] (priority 2): action: ",
  );
});

test('"global" is not a network name', () => {
  expect(() => validateNetwork({ name: "global", cidr: "10.1.0.0/24", gateway: "10.1.0.1" })).toThrow(
    'network name "global" is reserved',
  );
});

test("withRuleInPlace: a rule put into a set in priority order leaves it as a sort would", () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 500 }), { minLength: 1, maxLength: 60 }), (ps) => {
      const [p, ...rest] = ps as [number, ...number[]];
      const set = rest.sort((a, b) => a - b).map((priority) => ({ priority }));
      const copy = [...set];
      const out = withRuleInPlace(set, { priority: p });
      expect(out.map((r) => r.priority)).toEqual([...rest, p].sort((a, b) => a - b));
      expect(set).toEqual(copy); // the input is left as it was
    }),
  );
});
