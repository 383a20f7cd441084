/** The fabric document and its plan, without an agent: every problem of a document is reported
 * with its line; a fabric that is what a document says plans nothing, and its export plans
 * nothing either (round trip), for generated documents; the plan's order and --prune's rules. */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import YAML from "yaml";
import { exportDoc } from "../../src/apply/apply";
import { type Desired, fabricJsonSchema, parseFabric } from "../../src/apply/fabric";
import { type Current, plan } from "../../src/apply/plan";
import { fabricDoc } from "../helpers/fabric-gen";

/** The fabric an apply of `d` would leave, had it started empty. */
function applied(d: Desired, endpoints: Record<string, string[]> = {}): Current {
  return {
    networks: d.networks.map(({ net }) => ({
      ...net,
      endpoints: endpoints[net.name] ?? [],
      recordIds: new Map(net.records.map((r, i) => [`${r.name} ${r.type} ${r.value}`, i + 1])),
    })),
    global: { default: d.global?.default ?? "allow", rules: d.global?.rules ?? [] },
    blocklist: d.blocklist ?? [],
    microseg: d.microseg ?? { groups: [], rules: [] },
  };
}

const desired = (doc: unknown): Desired => {
  const p = parseFabric(YAML.stringify(doc));
  expect(p.errors).toEqual([]);
  return p.desired as Desired;
};

const EMPTY: Current = {
  networks: [],
  global: { default: "allow", rules: [] },
  blocklist: [],
  microseg: { groups: [], rules: [] },
};

describe("a fabric document", () => {
  test("every problem is reported at once, each with its line", () => {
    const text = [
      "version: 1", //                                  1
      "networks:", //                                   2
      "  - name: app", //                               3
      "    cidr: 10.30.0.0/24", //                      4
      "    gateway: 10.30.0.1", //                      5
      "    colour: blue", //                            6
      "  - name: db", //                                7
      "    cidr: 10.31.0.0/24", //                      8
      "    gateway: 10.31.0.1", //                      9
      "    mtu: 90000", //                              10
      "  - name: db", //                                11
      "    cidr: 10.32.0.0/24", //                      12
      "    gateway: 10.32.0.1", //                      13
      "    dns: { records: [{ name: www, type: A, value: nope }] }", // 14
      "blocklist: [0.0.0.0/0]", //                      15
      "extra: 1", //                                    16
    ].join("\n");
    const p = parseFabric(text);
    expect(p.desired).toBeNull();
    expect(p.errors.map((e) => [e.line, e.message.split(":")[0]])).toEqual([
      [6, "networks[0]"],
      [10, "networks[1].mtu"],
      [11, "networks[2].name"],
      [15, "blocklist[0]"],
      [16, 'unknown field "extra"'],
    ]);
    expect(p.errors[0]?.message).toContain('unknown field "colour"');
    expect(p.errors[4]?.message).toContain('unknown field "extra"');
  });

  test("broken YAML, an empty document, a missing version are refused by line", () => {
    expect(parseFabric("version: 1\nnetworks: [\n").errors[0]?.line).toBe(3);
    expect(parseFabric("").errors[0]?.message).toBe("the document is empty");
    const p = parseFabric("networks: []\n");
    expect(p.errors[0]?.message).toMatch(/^version: /);
  });

  test("the JSON Schema describes the document (editors check and complete with it)", () => {
    const s = fabricJsonSchema() as any;
    expect(s.type).toBe("object");
    expect(Object.keys(s.properties)).toEqual(["version", "networks", "firewall", "blocklist", "microseg"]);
    expect(s.additionalProperties).toBe(false);
    expect(s.required).toEqual(["version"]);
    const net = s.properties.networks.items;
    expect(net.required).toEqual(["name", "cidr", "gateway"]);
    expect(Object.keys(net.properties)).toContain("dns");
  });
});

describe("the plan", () => {
  test("a fabric that is what a generated document says plans nothing; its export plans nothing", () => {
    fc.assert(
      fc.property(fabricDoc, (doc) => {
        const d = desired(doc);
        const cur = applied(d);
        expect(plan(cur, d).steps.map((s) => `${s.action} ${s.kind} ${s.name}`)).toEqual([]);
        expect(plan(cur, d, { prune: true }).steps.map((s) => `${s.action} ${s.kind} ${s.name}`)).toEqual([]);
        const back = desired(YAML.parse(YAML.stringify(exportDoc(cur))));
        expect(plan(cur, back, { prune: true }).steps.map((s) => `${s.action} ${s.kind} ${s.name}`)).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });

  test("from nothing: creates in dependency order (a network before its scope and records); no deletes", () => {
    fc.assert(
      fc.property(fabricDoc, (doc) => {
        const d = desired(doc);
        const steps = plan(EMPTY, d).steps;
        expect(steps.every((s) => s.action !== "delete")).toBe(true);
        for (const [i, s] of steps.entries())
          if (s.kind === "dns-record" || (s.kind === "firewall" && s.name !== "global")) {
            const net = s.name.split(":")[0];
            const made = steps.findIndex((x) => x.kind === "network" && x.name === net);
            expect(made).toBeGreaterThanOrEqual(0);
            expect(made).toBeLessThan(i);
          }
        expect(steps.filter((s) => s.kind === "network").length).toBe(d.networks.length);
      }),
      { numRuns: 100 },
    );
  });

  test("a field the document leaves out is left as it is; one it gives is changed, with its undo", () => {
    const cur = applied(
      desired({ version: 1, networks: [{ name: "app", cidr: "10.30.0.0/24", gateway: "10.30.0.1", mtu: 1400 }] }),
    );
    const want = desired({ version: 1, networks: [{ name: "app", cidr: "10.30.0.0/24", gateway: "10.30.0.1" }] });
    expect(plan(cur, want).steps).toEqual([]);
    const s = plan(
      cur,
      desired({ version: 1, networks: [{ name: "app", cidr: "10.30.0.0/24", gateway: "10.30.0.1", mtu: 9000 }] }),
    ).steps;
    expect(s.map((x) => [x.action, x.kind, x.changes])).toEqual([["change", "network", ["mtu: 1400 → 9000"]]]);
    expect(s[0]?.run).toEqual({ op: "setNetwork", args: { params: { name: "app" }, body: { mtu: 9000 } } });
    expect(s[0]?.undo(undefined)).toEqual([
      { op: "setNetwork", args: { params: { name: "app" }, body: { mtu: 1400 } } },
    ]);
  });

  test("a fixed field is refused, never re-created; --prune refuses a network with endpoints", () => {
    const d = desired({ version: 1, networks: [{ name: "app", cidr: "10.30.0.0/24", gateway: "10.30.0.1" }] });
    const cur = applied(d, { app: ["c-1"] });
    const moved = plan(
      cur,
      desired({ version: 1, networks: [{ name: "app", cidr: "10.33.0.0/24", gateway: "10.33.0.1" }] }),
    );
    expect(moved.errors.map((e) => e.path.join("."))).toEqual(["networks.0.cidr", "networks.0.gateway"]);
    const gone = plan(cur, desired({ version: 1 }), { prune: true });
    expect(gone.errors[0]?.message).toContain('network "app", which has 1 endpoint (c-1)');
    expect(plan(cur, desired({ version: 1 })).steps).toEqual([]);
  });

  test("a CNAME to another target is a change of it (delete, then add); two records on a CNAME's name are refused", () => {
    const net = (value: string) => ({
      version: 1,
      networks: [
        {
          name: "app",
          cidr: "10.30.0.0/24",
          gateway: "10.30.0.1",
          dns: { records: [{ name: "api", type: "CNAME", value }] },
        },
      ],
    });
    const s = plan(applied(desired(net("web-2"))), desired(net("web-1"))).steps;
    expect(s.map((x) => `${x.action} ${x.kind} ${x.name} ${x.changes.join("; ")}`)).toEqual([
      "delete dns-record app: api CNAME web-2.app.internal ",
      "change dns-record app: api CNAME web-1.app.internal value: web-2.app.internal → web-1.app.internal",
    ]);
    const both = net("web-1") as any;
    both.networks[0].dns.records.push({ name: "api", type: "TXT", value: "x" });
    expect(parseFabric(YAML.stringify(both)).errors[0]?.message).toContain("a CNAME cannot share its name");
  });

  test("the microsegmentation policy is one object: checked by the model, replaced whole, left alone when left out", () => {
    const policy = {
      groups: [{ name: "prod/web" }, { name: "prod" }, { name: "prod/db", description: "databases" }],
      rules: [{ from: "prod/web", to: "prod/db", action: "allow", proto: "tcp", dport: "5432" }],
    };
    const d = desired({ version: 1, microseg: policy });
    // Parents first, as `microseg export` writes it; the port as a number.
    expect(d.microseg).toEqual({
      groups: [{ name: "prod" }, { name: "prod/web" }, { name: "prod/db", description: "databases" }],
      rules: [{ from: "prod/web", to: "prod/db", action: "allow", proto: "tcp", dport: 5432 }],
    });
    const s = plan(EMPTY, d).steps;
    expect(s.map((x) => [x.action, x.kind, x.changes])).toEqual([
      ["create", "microseg", ["groups: 0 → 3", "entries: 0 → 1"]],
    ]);
    expect(s[0]?.run.op).toBe("importMicroseg");
    expect(s[0]?.undo(undefined)).toEqual([{ op: "importMicroseg", args: { body: { groups: [], rules: [] } } }]);
    expect(plan(applied(d), d).steps).toEqual([]);
    expect(plan(applied(d), desired({ version: 1 }), { prune: true }).steps).toEqual([]);
    const bad = parseFabric(
      YAML.stringify({
        version: 1,
        microseg: { groups: [{ name: "Prod" }], rules: [{ from: "x", to: "y", action: "allow" }] },
      }),
    );
    expect(bad.errors.map((e) => e.message.split(":")[0])).toEqual(["microseg.groups[0]", "microseg.rules[0]"]);
  });

  test("--prune deletes what the document does not name, after every create and change", () => {
    const cur = applied(
      desired({
        version: 1,
        networks: [
          {
            name: "app",
            cidr: "10.30.0.0/24",
            gateway: "10.30.0.1",
            dns: { records: [{ name: "a", type: "A", value: "10.30.0.5" }] },
          },
          { name: "old", cidr: "10.31.0.0/24", gateway: "10.31.0.1" },
        ],
        blocklist: ["198.51.100.0/24"],
      }),
    );
    const want = desired({
      version: 1,
      networks: [{ name: "app", cidr: "10.30.0.0/24", gateway: "10.30.0.1", mtu: 9000 }],
    });
    expect(plan(cur, want).steps.map((s) => `${s.action} ${s.kind} ${s.name}`)).toEqual(["change network app"]);
    expect(plan(cur, want, { prune: true }).steps.map((s) => `${s.action} ${s.kind} ${s.name}`)).toEqual([
      "change network app",
      "delete dns-record app: a A 10.30.0.5",
      "delete blocklist 198.51.100.0/24",
      "delete network old",
    ]);
  });
});
