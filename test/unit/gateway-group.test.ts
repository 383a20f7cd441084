/** Gateway groups' model and keys: what a declaration must pass (each refusal with its code and
 * line), the flags' parsers, the timers every node derives (RFC 5798's, in ms) and the order of
 * preference; the cluster keys of a group and of its holder (strict values, set aside when they
 * do not parse), and the heartbeat key, which is outside the mirrored keyspace. */
import { describe, expect, test } from "bun:test";
import { HA_BEAT_PREFIX, K, mirrored, PREFIX, parseKey } from "../../src/cluster/keys";
import { StratumError } from "../../src/errors";
import {
  type GatewayGroup,
  type GatewayGroupSpec,
  groupTimers,
  parseInterval,
  parsePriorities,
  preferred,
  validateGatewayGroup,
} from "../../src/model/gateway-group";
import { parseSubnet } from "../../src/model/ip";
import { MirrorWriter } from "../../src/store/mirror";
import { SqliteStore } from "../../src/store/sqlite";

const NORTH: GatewayGroup = {
  name: "north",
  vips: { ipv4: "192.0.2.10", ipv6: "2001:db8::10" },
  nodes: ["node1", "node2"],
  priority: { node1: 200, node2: 100 },
  preempt: true,
  advertIntervalMs: 100,
  createdAt: "2026-12-06T09:00:00.000Z",
};
const ctx = {
  existing: [NORTH],
  subnets: [
    { network: "app-net", subnet: parseSubnet("10.20.0.0/24") },
    { network: "app-net", subnet: parseSubnet("fd20::/64") },
  ],
  members: Array.from({ length: 9 }, (_, i) => `node${i + 1}`),
};
/** A message that starts with `prefix`. */
const startsWith = (prefix: string): string =>
  expect.stringMatching(new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`)) as unknown as string;
const base: GatewayGroupSpec = { name: "south", vips: ["198.51.100.10"], nodes: ["node1", "node2"] };

/** The code and message a declaration is refused with. */
function refusal(change: Partial<GatewayGroupSpec>): { code: string; message: string } | undefined {
  try {
    validateGatewayGroup({ ...base, ...change }, ctx);
    return undefined;
  } catch (e) {
    if (!(e instanceof StratumError)) throw e;
    return { code: e.code, message: e.message };
  }
}

const thrown = (fn: () => unknown): { code: string; message: string } | undefined => {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (!(e instanceof StratumError)) throw e;
    return { code: e.code, message: e.message };
  }
};

describe("validateGatewayGroup", () => {
  test("fills the defaults: priority 100 each, preempt on, advert 100 ms; VIPs in canonical form", () => {
    expect(
      validateGatewayGroup({ ...base, vips: ["198.51.100.10", "2001:DB8:0::0020"], nodes: ["node2", "node1"] }, ctx),
    ).toEqual({
      name: "south",
      vips: { ipv4: "198.51.100.10", ipv6: "2001:db8::20" },
      nodes: ["node2", "node1"],
      priority: { node2: 100, node1: 100 },
      preempt: true,
      advertIntervalMs: 100,
    });
    const v = validateGatewayGroup(
      { ...base, priority: { node1: 254, node2: 1 }, preempt: false, advertIntervalMs: 20 },
      ctx,
    );
    expect(v).toMatchObject({ priority: { node1: 254, node2: 1 }, preempt: false, advertIntervalMs: 20 });
    expect(validateGatewayGroup({ ...base, nodes: ctx.members.slice(0, 8) }, ctx).nodes).toHaveLength(8);
  });

  test("a bad name is refused", () => {
    for (const name of ["North", "-x", "x-", "a_b", "1abc", "", "a".repeat(33), "a.b"])
      expect({ name, r: refusal({ name }) }).toEqual({
        name,
        r: { code: "INVALID", message: startsWith(`invalid gateway group name "${name}"`) },
      });
    expect(refusal({ name: "a" })).toBeUndefined();
    expect(refusal({ name: `a${"b".repeat(31)}` })).toBeUndefined();
  });

  test("a group of that name already: CONFLICT", () => {
    expect(refusal({ name: "north" })).toEqual({ code: "CONFLICT", message: "gateway group north already exists" });
  });

  test("VIPs: at least one, one per family, an address, ordinary unicast, outside every network, not another group's", () => {
    const cases: Array<[string[], string, string]> = [
      [[], "INVALID", "a gateway group needs --vip ADDR[,ADDR6]"],
      [["198.51.100.10", "198.51.100.11"], "INVALID", "--vip: at most one IPv4 address per group"],
      [["2001:db8::1", "2001:db8::2"], "INVALID", "--vip: at most one IPv6 address per group"],
      [
        ["198.51.100.0/24"],
        "INVALID",
        "--vip 198.51.100.0/24: not an IPv4 or IPv6 address (a VIP is one address, no /len)",
      ],
      [["gateway"], "INVALID", "--vip gateway: not an IPv4 or IPv6 address (a VIP is one address, no /len)"],
      [["127.0.0.1"], "INVALID", "--vip 127.0.0.1 is loopback (127.0.0.0/8): a VIP is an ordinary unicast address"],
      [["::1"], "INVALID", "--vip ::1 is loopback (::1/128): a VIP is an ordinary unicast address"],
      [["224.0.0.18"], "INVALID", "--vip 224.0.0.18 is multicast (224.0.0.0/4): a VIP is an ordinary unicast address"],
      [["ff02::12"], "INVALID", "--vip ff02::12 is multicast (ff00::/8): a VIP is an ordinary unicast address"],
      [
        ["169.254.1.1"],
        "INVALID",
        "--vip 169.254.1.1 is link-local (169.254.0.0/16): a VIP is an ordinary unicast address",
      ],
      [["fe80::1"], "INVALID", "--vip fe80::1 is link-local (fe80::/10): a VIP is an ordinary unicast address"],
      [["0.0.0.0"], "INVALID", startsWith("--vip 0.0.0.0 is unspecified")],
      [["255.255.255.255"], "INVALID", startsWith("--vip 255.255.255.255 is reserved")],
      [
        ["10.20.0.5"],
        "INVALID",
        "--vip 10.20.0.5 is inside network app-net: a VIP is a north-side address (on the uplink's LAN)",
      ],
      [
        ["198.51.100.10", "fd20::5"],
        "INVALID",
        "--vip fd20::5 is inside network app-net: a VIP is a north-side address (on the uplink's LAN)",
      ],
      [["192.0.2.10"], "CONFLICT", "--vip 192.0.2.10 is already gateway group north's"],
      [["2001:db8:0:0::10"], "CONFLICT", "--vip 2001:db8::10 is already gateway group north's"],
    ];
    for (const [vips, code, message] of cases)
      expect({ vips, r: refusal({ vips }) }).toEqual({ vips, r: { code, message } });
  });

  test("nodes: 2 to 8 members of the cluster, each once", () => {
    const cases: Array<[string[], string]> = [
      [["node1"], "--nodes: from 2 to 8 gateway nodes that back each other up, not 1"],
      [[], "--nodes: from 2 to 8 gateway nodes that back each other up, not 0"],
      [ctx.members, "--nodes: from 2 to 8 gateway nodes that back each other up, not 9"],
      [["node1", "node1"], "--nodes names node1 twice"],
      [
        ["node1", "elsewhere"],
        "--nodes: elsewhere is not a node of this cluster (cenvero-str-ctl node list shows them)",
      ],
      [["node1", "bad name"], '--nodes: "bad name" is not a node name'],
    ];
    for (const [nodes, message] of cases)
      expect({ nodes, r: refusal({ nodes }) }).toEqual({ nodes, r: { code: "INVALID", message } });
  });

  test("priorities: only for nodes of --nodes, from 1 to 254", () => {
    expect(refusal({ priority: { node3: 200 } })).toEqual({
      code: "INVALID",
      message: "--priority node3=200: node3 is not one of --nodes",
    });
    for (const p of [0, 255, -1, 1.5])
      expect(refusal({ priority: { node1: p } })).toEqual({
        code: "INVALID",
        message: `--priority node1=${p}: from 1 to 254 (higher is preferred)`,
      });
    expect(refusal({ priority: { node1: 1, node2: 254 } })).toBeUndefined();
  });

  test("the advert interval: whole ms from 20 ms to 10 s", () => {
    for (const advertIntervalMs of [10, 19, 10_001, 100.5])
      expect(refusal({ advertIntervalMs })).toEqual({
        code: "INVALID",
        message: `advertIntervalMs ${advertIntervalMs}: from 20 to 10000`,
      });
    expect(refusal({ advertIntervalMs: 10_000 })).toBeUndefined();
  });
});

describe("the flags' parsers", () => {
  test("parseInterval: ms, s and bare milliseconds; anything else, or out of range, refused", () => {
    expect(parseInterval("100ms")).toBe(100);
    expect(parseInterval("1s")).toBe(1000);
    expect(parseInterval("0.25s")).toBe(250);
    expect(parseInterval("150")).toBe(150);
    expect(parseInterval(" 20ms ")).toBe(20);
    expect(parseInterval("10s")).toBe(10_000);
    for (const bad of ["abc", "", "100 ms", "-5ms", "1m", "ms", "1e3"])
      expect({ bad, r: thrown(() => parseInterval(bad)) }).toEqual({
        bad,
        r: { code: "INVALID", message: `--advert-interval ${bad}: a duration such as 100ms or 1s` },
      });
    for (const bad of ["10ms", "5ms", "1.5ms", "11s", "0"])
      expect({ bad, r: thrown(() => parseInterval(bad)) }).toEqual({
        bad,
        r: { code: "INVALID", message: `--advert-interval ${bad}: whole milliseconds from 20ms to 10s` },
      });
  });

  test("parsePriorities: NODE=N, comma-separated; a node once", () => {
    expect(parsePriorities("node1=200,node2=100")).toEqual({ node1: 200, node2: 100 });
    expect(parsePriorities(" node1=200 , ")).toEqual({ node1: 200 });
    expect(parsePriorities("")).toEqual({});
    // A number out of range parses: the model refuses it, naming the range.
    expect(parsePriorities("a=0")).toEqual({ a: 0 });
    for (const bad of ["x", "a=", "=5", "a=-1", "a=1.5", "a=b"])
      expect({ bad, r: thrown(() => parsePriorities(bad)) }).toEqual({
        bad,
        r: { code: "INVALID", message: `--priority ${bad}: NODE=N, e.g. --priority node1=200,node2=100` },
      });
    expect(thrown(() => parsePriorities("a=1,a=2"))).toEqual({
      code: "INVALID",
      message: "--priority names node a twice",
    });
  });
});

describe("timers and preference", () => {
  test("RFC 5798's timers in ms: at 100 ms and priority 100, master-down ≈ 360.94 ms", () => {
    const t = groupTimers({ advertIntervalMs: 100, priority: { a: 100 } }, "a");
    expect(t.advert).toBe(100);
    expect(t.skew).toBeCloseTo(60.94, 2);
    expect(t.masterDown).toBeCloseTo(360.94, 2);
    expect(t.renew).toBe(50);
    expect(t.hold).toBe(250);
    // A node without a priority has the default's; a higher priority waits less.
    expect(groupTimers({ advertIntervalMs: 100, priority: {} }, "x").masterDown).toBeCloseTo(360.94, 2);
    expect(groupTimers({ advertIntervalMs: 100, priority: { a: 254 } }, "a").masterDown).toBeCloseTo(300.78, 2);
    expect(groupTimers({ advertIntervalMs: 1000, priority: { a: 1 } }, "a").masterDown).toBeCloseTo(3996.09, 2);
  });

  test("the holder's deadline is shorter than any standby's takeover, whatever the interval and priority", () => {
    for (const a of [20, 100, 333, 10_000])
      for (let p = 1; p <= 254; p++) {
        const t = groupTimers({ advertIntervalMs: a, priority: { n: p } }, "n");
        expect(t.hold < t.masterDown).toBe(true);
      }
  });

  test("preferred: priority first, then the order of --nodes", () => {
    const g = { nodes: ["c", "a", "b", "d"], priority: { a: 100, b: 200, c: 100, d: 50 } };
    expect(["a", "b", "c", "d"].sort((x, y) => preferred(g, x, y))).toEqual(["b", "c", "a", "d"]);
  });
});

describe("the cluster keys of gateway groups", () => {
  const enc = new TextEncoder();
  const KEY = Buffer.alloc(32, 7).toString("base64");
  const stored = { ...NORTH, key: KEY };
  const parse = (key: string, v: unknown) => parseKey(key, v === null ? null : enc.encode(JSON.stringify(v)));
  const invalid = (key: string, v: unknown) => {
    try {
      parse(key, v);
      return undefined;
    } catch (e) {
      return { code: (e as StratumError).code, message: (e as Error).message };
    }
  };

  test("gateway-groups/<name>: the group with its heartbeat key; deleted: null", () => {
    expect(K.gatewayGroup("north")).toBe(`${PREFIX}gateway-groups/north`);
    expect(K.gatewayGroups).toBe(`${PREFIX}gateway-groups/`);
    expect(parse(K.gatewayGroup("north"), stored)).toEqual({ kind: "gatewayGroup", name: "north", value: stored });
    expect(parse(K.gatewayGroup("north"), null)).toEqual({ kind: "gatewayGroup", name: "north", value: null });
    // One family only: the other is absent.
    const v4 = { ...stored, vips: { ipv4: "192.0.2.10" } };
    expect(parse(K.gatewayGroup("north"), v4)).toEqual({ kind: "gatewayGroup", name: "north", value: v4 });
  });

  test("a group value that does not parse is refused (INVALID), naming the key", () => {
    const key = K.gatewayGroup("north");
    for (const bad of [
      { ...stored, extra: 1 },
      { ...stored, key: undefined },
      { ...stored, key: "c2hvcnQ=" },
      { ...stored, vips: { ipv4: "192.0.2.10", v5: "x" } },
      { ...stored, priority: { node1: 0, node2: 100 } },
      { ...stored, advertIntervalMs: 5 },
      { ...stored, preempt: "yes" },
      { ...stored, name: "south" },
      "north",
    ])
      expect({ bad, r: invalid(key, bad) }).toEqual({
        bad,
        r: { code: "INVALID", message: startsWith(`${key}: `) },
      });
    expect(() => parseKey(key, enc.encode("{not json"))).toThrow(`${key}: the value is not JSON`);
  });

  test("gateway-active/<name>: {node, since, why}, strict", () => {
    const key = K.gatewayActive("north");
    expect(key).toBe(`${PREFIX}gateway-active/north`);
    expect(K.gatewayActives).toBe(`${PREFIX}gateway-active/`);
    const v = { node: "node1", since: "2026-12-06T09:00:01.000Z", why: "highest priority" };
    expect(parse(key, v)).toEqual({ kind: "gatewayActive", name: "north", value: v });
    expect(parse(key, null)).toEqual({ kind: "gatewayActive", name: "north", value: null });
    for (const bad of [{ ...v, epoch: 3 }, { node: "node1", since: "x" }, { ...v, node: "" }, 7])
      expect({ bad, r: invalid(key, bad) }).toEqual({
        bad,
        r: { code: "INVALID", message: startsWith(`${key}: `) },
      });
  });

  test("the heartbeat key is outside the mirrored keyspace: not parsed, not mirrored", () => {
    expect(HA_BEAT_PREFIX).toBe("/stratum/ha/v1/beat/");
    expect(K.haBeat("north")).toBe("/stratum/ha/v1/beat/north");
    expect(K.haBeat("north").startsWith(PREFIX)).toBe(false);
    expect(parseKey(K.haBeat("north"), enc.encode("{}"))).toBeUndefined();
    expect(mirrored(K.haBeat("north"))).toBe(false);
    expect(mirrored(K.gatewayGroup("north"))).toBe(true);
    expect(mirrored(K.gatewayActive("north"))).toBe(true);
    expect(mirrored(K.claim(1, 2))).toBe(false);
  });

  test("the mirror keeps both in cluster_kv only; a value that does not parse is set aside", () => {
    const store = new SqliteStore(":memory:");
    const w = new MirrorWriter(store, parseKey);
    const active = { node: "node1", since: "2026-12-06T09:00:01.000Z", why: "highest priority" };
    w.apply([
      { key: K.gatewayGroup("north"), value: enc.encode(JSON.stringify(stored)), revision: 5 },
      { key: K.gatewayActive("north"), value: enc.encode(JSON.stringify(active)), revision: 6 },
      {
        key: K.gatewayGroup("bad"),
        value: enc.encode(JSON.stringify({ ...stored, name: "bad", key: "x" })),
        revision: 7,
      },
    ]);
    expect([...w.effects.kinds].sort()).toEqual(["gatewayActive", "gatewayGroup"]);
    expect(w.keys(K.gatewayGroups).map((k) => k.key)).toEqual([K.gatewayGroup("bad"), K.gatewayGroup("north")]);
    expect(w.get(K.gatewayActive("north"))?.revision).toBe(6);
    expect([...w.invalid.keys()]).toEqual([K.gatewayGroup("bad")]);
    expect(store.listNetworks()).toEqual([]);
    store.close();
  });
});
