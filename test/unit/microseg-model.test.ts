/** Microsegmentation's model: names, the tree, entries, a whole document's validation, the
 * reference evaluator's specificity rules and the compiler's keys. */
import { describe, expect, test } from "bun:test";
import {
  addGroup,
  addRules,
  compileMicroseg,
  emptyMicroseg,
  lineOf,
  type MicrosegDoc,
  MSEG,
  msegDecide,
  msegStamp,
  removeGroup,
  removeRules,
  validateMicroseg,
} from "../../src/model/microseg";

function tree(): MicrosegDoc {
  let d = emptyMicroseg();
  for (const [name, parent] of [
    ["prod", undefined],
    ["prod/web", undefined],
    ["prod/db", undefined],
    ["api", "prod/web"],
  ] as const)
    d = addGroup(d, { name, ...(parent ? { parent } : {}) }, "2026-01-01T00:00:00Z").doc;
  return d;
}

describe("groups", () => {
  test("ids come from the counter and are never reused; a slash names the parent", () => {
    let d = tree();
    expect(d.groups.map((g) => [g.name, g.id, g.parent])).toEqual([
      ["prod", 1, undefined],
      ["prod/web", 2, "prod"],
      ["prod/db", 3, "prod"],
      ["api", 4, "prod/web"],
    ]);
    d = removeGroup(d, "api", 0);
    d = addGroup(d, { name: "api2" }).doc;
    expect(d.groups.find((g) => g.name === "api2")?.id).toBe(5);
    expect(lineOf(tree(), "api")).toEqual(["api", "prod/web", "prod"]);
  });

  test("bad names, unknown or contradicting parents, duplicates and depth are refused", () => {
    const d = tree();
    expect(() => addGroup(d, { name: "Web" })).toThrow(/invalid/);
    expect(() => addGroup(d, { name: "untagged" })).toThrow(/reserved/);
    expect(() => addGroup(d, { name: "x", parent: "nope" })).toThrow(/no group "nope"/);
    expect(() => addGroup(d, { name: "nope/x" })).toThrow(/no group "nope"/);
    expect(() => addGroup(d, { name: "prod/x", parent: "api" })).toThrow(/under "prod" by its name/);
    expect(() => addGroup(d, { name: "prod" })).toThrow(/exists already/);
    let deep = emptyMicroseg();
    let parent: string | undefined;
    for (let i = 0; i < MSEG.DEPTH_MAX; i++) {
      deep = addGroup(deep, { name: `l${i}`, ...(parent ? { parent } : {}) }).doc;
      parent = `l${i}`;
    }
    expect(() => addGroup(deep, { name: "toodeep", parent })).toThrow(/levels deep/);
  });

  test("a group in use is not deleted: children, entries, endpoints", () => {
    let d = tree();
    expect(() => removeGroup(d, "prod/web", 0)).toThrow(/has a group under it/);
    d = addRules(d, [{ from: "api", to: "prod/db", action: "allow" }]).doc;
    expect(() => removeGroup(d, "api", 0)).toThrow(/named by entry 1/);
    d = removeRules(d, [1]);
    expect(() => removeGroup(d, "api", 2)).toThrow(/has 2 endpoints/);
    expect(removeGroup(d, "api", 0).groups.map((g) => g.name)).not.toContain("api");
    expect(() => removeGroup(d, "nope", 0)).toThrow(/no group/);
  });

  test("a document with a cycle, a missing parent or a duplicate id does not validate", () => {
    const base = tree();
    const cyc = {
      ...base,
      groups: [
        ...base.groups,
        { name: "a", id: 10, parent: "b", createdAt: "" },
        { name: "b", id: 11, parent: "a", createdAt: "" },
      ],
    };
    expect(() => validateMicroseg(cyc)).toThrow(/cycle/);
    const orphan = { ...base, groups: [...base.groups, { name: "a", id: 10, parent: "zz", createdAt: "" }] };
    expect(() => validateMicroseg(orphan)).toThrow(/no group "zz"/);
    const dup = { ...base, groups: [...base.groups, { name: "a", id: 1, createdAt: "" }] };
    expect(() => validateMicroseg(dup)).toThrow(/not a free id/);
    expect(validateMicroseg(base)).toEqual(base);
  });
});

describe("entries", () => {
  test("unknown groups, untagged as a destination, a port without tcp/udp are refused", () => {
    const d = tree();
    expect(() => addRules(d, [{ from: "x", to: "prod", action: "allow" }])).toThrow(/no group "x"/);
    expect(() => addRules(d, [{ from: "prod", to: "untagged", action: "allow" }])).toThrow(/--to must be a group/);
    expect(() => addRules(d, [{ from: "prod", to: "prod", action: "allow", proto: "icmp", dport: 1 }])).toThrow(
      /--dport needs --proto tcp or udp/,
    );
    expect(() => addRules(d, [{ from: "prod", to: "prod", action: "allow", proto: "tcp", dport: 70000 }])).toThrow(
      /not a port/,
    );
    expect(() => addRules(d, [{ from: "prod", to: "prod", action: "permit" }])).toThrow(/action/);
    expect(() => addRules(d, [{ from: "prod", to: "prod", action: "allow", color: "red" }])).toThrow();
    expect(() => removeRules(d, [9])).toThrow(/no policy entry 9/);
  });
});

describe("specificity", () => {
  const pkt = (from: string | null, to: string, dport = 80) => ({ from, to, proto: 6, dport });

  test("the destination nearest in the tree first, then the source, then protocol and port", () => {
    const d = addRules(tree(), [
      { from: "prod/web", to: "prod", action: "allow" }, // 1: near source, far destination
      { from: "prod", to: "prod/db", action: "deny" }, // 2: far source, near destination
      { from: "api", to: "prod/db", action: "allow", proto: "tcp" }, // 3
      { from: "api", to: "prod/db", action: "deny", proto: "tcp", dport: 22 }, // 4
    ]).doc;
    expect(msegDecide(d, pkt("prod/web", "prod/db")).rule?.id).toBe(2);
    expect(msegDecide(d, pkt("api", "prod/db")).rule?.id).toBe(3);
    expect(msegDecide(d, pkt("api", "prod/db", 22)).rule?.id).toBe(4);
    expect(msegDecide(d, pkt("api", "prod/web")).rule?.id).toBe(1);
    expect(msegDecide(d, pkt(null, "prod/web"))).toEqual({ action: "deny" });
  });

  test("equally specific entries that disagree: deny; untagged only by its own entry", () => {
    const d = addRules(tree(), [
      { from: "prod", to: "prod", action: "allow" },
      { from: "prod", to: "prod", action: "deny" },
      { from: "untagged", to: "prod/web", action: "allow" },
    ]).doc;
    expect(msegDecide(d, pkt("api", "prod/db"))).toMatchObject({ action: "deny", rule: { id: 2 } });
    expect(msegDecide(d, pkt(null, "prod/web"))).toMatchObject({ action: "allow", rule: { id: 3 } });
    expect(msegDecide(d, pkt(null, "prod/db")).action).toBe("deny");
    const c = compileMicroseg(d);
    // prod (1) as source, prod/db (3) as destination: the deny (entry 2) at distance 1.
    expect(c.policy.get("3:1:0:0")?.val).toMatchObject({ dist: 1, action: 2, id: 2 });
    expect(c.lines.get(4)).toEqual([4, 2, 1]);
  });

  test("the stamp: the tag in the high half, the group in the low", () => {
    expect(msegStamp(0x1234).toString(16)).toBe(`${MSEG.MARK_TAG.toString(16)}1234`);
  });
});
