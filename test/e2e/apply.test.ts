/** The fabric as a document, against real agents (docs/declarative.md): `apply --dry-run` prints
 * the plan and changes nothing; `apply` makes the fabric, and a second apply changes nothing and
 * says so; `diff` exits 1 while the fabric differs; generated documents round-trip (applied to
 * one agent, exported, applied with --prune to a second, whose export is the same); a failing
 * apply undoes what it did; --prune deletes what the document does not name, never a network
 * with endpoints; every problem of a bad document is reported with its line, nothing applied;
 * `network edit` applies what the editor saved. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import YAML from "yaml";
import { TestAgent } from "../helpers/agent";
import { fabricDoc } from "../helpers/fabric-gen";
import { BINARY, Netns, run } from "../helpers/netns";

let A: TestAgent;
let B: TestAgent;
let c1: Netns;
let dir: string;

const DOC = `version: 1
networks:
  - name: app
    cidr: 10.30.0.0/24
    gateway: 10.30.0.1
    dnsZone: app.internal
    egress: { rate: 100mbit }
    firewall:
      default: deny
      rules:
        - { priority: 10, proto: tcp, dport: 443, action: allow }
        - { priority: 20, src: 10.30.0.5, proto: icmp, action: allow }
    dns:
      records:
        - { name: www, type: A, value: 10.30.0.10 }
        - { name: mail, type: MX, value: "10 mx.app.internal" }
  - name: db
    cidr: 10.31.0.0/24
    gateway: 10.31.0.1
    cidr6: fd00:31::/64
    gateway6: fd00:31::1
firewall:
  global:
    rules:
      - { priority: 5, dst: 192.0.2.0/24, action: deny }
blocklist: [198.51.100.0/24, 203.0.113.7]
microseg:
  groups: [{ name: prod }, { name: prod/web }, { name: prod/db }]
  rules:
    - { from: prod/web, to: prod/db, action: allow, proto: tcp, dport: 5432 }
`;

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** The fabric as `export` prints it (YAML, parsed). */
const exported = (a: TestAgent) => YAML.parse(a.ctl("export").stdout);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "stm-apply-"));
  A = new TestAgent("apa");
  B = new TestAgent("apb");
  c1 = new Netns("apc1");
  await Promise.all([A.start(), B.start()]);
}, 60_000);

afterAll(() => {
  c1?.destroy();
  A?.destroy();
  B?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("apply", () => {
  test("--dry-run prints the plan and changes nothing; apply makes it; again, it changes nothing and says so", () => {
    const f = file("fabric.yaml", DOC);
    const dry = A.ctl("apply", "-f", f, "--dry-run");
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain("create  network     app");
    expect(dry.stdout).toContain("7 to create, 1 to change, 0 to delete");
    expect(A.json("network", "list")).toEqual([]);

    const r = A.ctl("apply", "-f", f);
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
    expect(r.stdout).toContain("applied: 8 steps");
    expect(r.stderr).toContain("[8/8] create blocklist blocklist");
    expect(A.json("group", "list").map((g: any) => g.name)).toEqual(["prod", "prod/db", "prod/web"]);
    expect(A.json("microseg", "rule", "list").rules.map((x: any) => `${x.from} ${x.to} ${x.dport}`)).toEqual([
      "prod/web prod/db 5432",
    ]);
    const app = A.json("network", "show", "app");
    expect({ zone: app.dnsZone, egress: app.egress.rate, def: app.defaultAction }).toEqual({
      zone: "app.internal",
      egress: 100_000_000,
      def: "deny",
    });
    expect(A.json("firewall", "export", "app").rules.map((x: any) => x.priority)).toEqual([10, 20]);
    expect(
      A.json("dns", "record", "list", "app")
        .map((x: any) => `${x.name} ${x.type}`)
        .sort(),
    ).toEqual(["mail MX", "www A"]);
    expect(A.json("network", "show", "db").cidr6).toBe("fd00:31::/64");
    expect(A.json("firewall", "blocklist", "list").prefixes.map((p: any) => p.prefix)).toEqual([
      "198.51.100.0/24",
      "203.0.113.7/32",
    ]);

    const again = A.ctl("apply", "-f", f);
    expect({ code: again.code, out: again.stdout }).toEqual({
      code: 0,
      out: `no changes: the fabric is as ${f} says\n`,
    });
    expect(A.ctl("diff", "-f", f).code).toBe(0);
  });

  test("diff exits 1 with what would change (-o json for scripts); what the document leaves out is left alone", () => {
    const f = file(
      "changed.yaml",
      `version: 1
networks:
  - { name: app, cidr: 10.30.0.0/24, gateway: 10.30.0.1, mtu: 9000, dns: { records: [{ name: www, type: A, value: 10.30.0.11, ttl: 60 }] } }
`,
    );
    const d = A.ctl("diff", "-f", f, "-o", "json");
    expect(d.code).toBe(1);
    const plan = JSON.parse(d.stdout);
    expect(plan.differs).toBe(true);
    expect(plan.plan.map((s: any) => `${s.action} ${s.kind} ${s.name}`)).toEqual([
      "change network app",
      "create dns-record app: www A 10.30.0.11",
    ]);
    const pruned = JSON.parse(A.ctl("diff", "-f", f, "--prune", "-o", "json").stdout);
    expect(pruned.plan.map((s: any) => `${s.action} ${s.kind} ${s.name}`)).toEqual([
      "change network app",
      "change firewall app",
      "create dns-record app: www A 10.30.0.11",
      "change firewall global",
      "delete dns-record app: mail MX 10 mx.app.internal",
      "delete dns-record app: www A 10.30.0.10",
      "delete blocklist 198.51.100.0/24",
      "delete blocklist 203.0.113.7/32",
      "delete network db",
    ]);
  });

  test("a failing apply undoes everything it did, and says so", () => {
    const before = exported(A);
    const f = file(
      "fails.yaml",
      `version: 1
networks:
  - { name: app, cidr: 10.30.0.0/24, gateway: 10.30.0.1, mtu: 1400 }
  - { name: n1, cidr: 10.60.0.0/24, gateway: 10.60.0.1, dns: { records: [{ name: www, type: A, value: 10.60.0.9 }] } }
  - { name: n2, cidr: 10.31.0.0/25, gateway: 10.31.0.1 }
`,
    );
    // n2 overlaps db, which the document does not name: the agent refuses it part-way.
    const r = A.ctl("apply", "-f", f);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('apply failed at "create network n2"');
    expect(r.stderr).toContain("overlaps network db");
    expect(r.stderr).toContain("everything this apply did is undone (2 steps)");
    expect(r.stderr).toContain("undone: create network n1");
    expect(exported(A)).toEqual(before);
  });

  test("every problem of a bad document is reported with its line; nothing is applied", () => {
    const before = exported(A);
    const f = file(
      "bad.yaml",
      `version: 1
networks:
  - name: app
    cidr: 10.30.0.0/24
    gateway: 10.30.0.1
    colour: blue
  - name: x
    cidr: 10.40.0.0/24
    gateway: 10.50.0.1
blocklist: [0.0.0.0/0]
`,
    );
    const r = A.ctl("apply", "-f", f);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${f}: 3 problems, nothing applied`);
    expect(r.stderr).toContain(`${f}:6: networks[0]: unknown field "colour"`);
    expect(r.stderr).toContain(`${f}:9: networks[1].gateway: gateway 10.50.0.1 is outside 10.40.0.0/24`);
    expect(r.stderr).toContain(`${f}:10: blocklist[0]`);
    const fixed = A.ctl(
      "apply",
      "-f",
      file("fixed.yaml", "version: 1\nnetworks:\n  - { name: db, cidr: 10.39.0.0/24, gateway: 10.39.0.1 }\n"),
    );
    expect(fixed.code).toBe(2);
    expect(fixed.stderr).toContain('fixed.yaml:3: networks[0].cidr: network "db" has cidr 10.31.0.0/24');
    expect(A.ctl("apply", "-f", join(dir, "missing.yaml")).stderr).toContain("cannot read");
    expect(exported(A)).toEqual(before);
  });

  test("--prune deletes what the document does not name, never a network with endpoints", () => {
    A.json("network", "attach", "db", "--name", "c-1", "--netns", c1.name);
    const f = file(
      "app-only.yaml",
      "version: 1\nnetworks:\n  - { name: app, cidr: 10.30.0.0/24, gateway: 10.30.0.1 }\n",
    );
    expect(A.ctl("apply", "-f", f).stdout).toContain("no changes");
    const r = A.ctl("apply", "-f", f, "--prune");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--prune would delete network "db", which has 1 endpoint (c-1)');
    expect(A.ctl("network", "detach", "db", "--name", "c-1").code).toBe(0);
    const ok = A.ctl("apply", "-f", f, "--prune");
    expect(ok.code).toBe(0);
    expect(A.json("network", "list").map((n: any) => n.name)).toEqual(["app"]);
    expect(A.json("firewall", "blocklist", "list").prefixes).toEqual([]);
    expect(A.json("firewall", "export", "global").rules).toEqual([]);
  });

  test("network edit applies what the editor saved; unchanged, nothing; a bad edit is kept and nothing applied", () => {
    const editor = (name: string, script: string) => {
      const p = join(dir, name);
      writeFileSync(p, `#!/bin/sh\n${script}\n`);
      chmodSync(p, 0o755);
      return p;
    };
    const edit = (ed: string) =>
      run([BINARY, "network", "edit", "app", "--api-socket", A.sock], { env: { EDITOR: ed, VISUAL: "" } });
    const mtu = edit(editor("mtu.sh", `sed -i 's/^    mtu: .*/    mtu: 1450/' "$1"`));
    expect({ code: mtu.code, out: mtu.stdout }).toMatchObject({ code: 0 });
    expect(mtu.stdout).toContain("mtu: 1500 → 1450");
    expect(A.json("network", "show", "app").mtu).toBe(1450);
    expect(edit(editor("same.sh", "true")).stdout).toBe("no changes\n");
    const bad = edit(editor("bad.sh", `sed -i 's/^    mtu: .*/    mtu: 99999/' "$1"`));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/app\.yaml:\d+: networks\[0\]\.mtu: MTU 99999 is outside/);
    const kept = /your edit is kept in (\S+):/.exec(bad.stderr)?.[1] as string;
    expect(readFileSync(kept, "utf8")).toContain("mtu: 99999");
    rmSync(join(kept, ".."), { recursive: true, force: true });
    expect(A.json("network", "show", "app").mtu).toBe(1450);
    expect(run([BINARY, "network", "edit", "nope", "--api-socket", A.sock]).stderr).toContain(
      'network "nope" does not exist',
    );
  });

  test("generated documents round-trip: applied, diff is clean; exported and applied with --prune to another agent, the same export", () => {
    const docs = fc.sample(fabricDoc, { numRuns: 4, seed: 28 });
    docs.push(
      fc.sample(
        fabricDoc.filter((d) => (d.networks as unknown[]).length === 4),
        { numRuns: 1, seed: 7 },
      )[0] as Record<string, unknown>,
    );
    const empty = file("empty.yaml", "version: 1\n");
    for (const [i, doc] of docs.entries()) {
      // A network's subnets are fixed once made: each document starts from an empty fabric.
      for (const a of [A, B]) expect(a.ctl("apply", "-f", empty, "--prune").code).toBe(0);
      const f = file(`gen-${i}.yaml`, YAML.stringify(doc));
      const r = A.ctl("apply", "-f", f, "--prune");
      expect({ i, code: r.code, stderr: r.stderr }).toMatchObject({ i, code: 0 });
      expect({ i, diff: A.ctl("diff", "-f", f, "--prune").code }).toEqual({ i, diff: 0 });
      const exp = A.ctl("export").stdout;
      const g = file(`exp-${i}.yaml`, exp);
      const rb = B.ctl("apply", "-f", g, "--prune");
      expect({ i, code: rb.code, stderr: rb.stderr }).toMatchObject({ i, code: 0 });
      expect(exported(B)).toEqual(YAML.parse(exp));
      expect(B.ctl("apply", "-f", g, "--prune").stdout).toContain("no changes");
    }
  }, 120_000);
});

describe("schema", () => {
  test("prints the document's JSON Schema", () => {
    const s = JSON.parse(run([BINARY, "schema"]).stdout);
    expect(s.$schema).toBe("https://json-schema.org/draft/2020-12/schema");
    expect(s.required).toEqual(["version"]);
    expect(Object.keys(s.properties.networks.items.properties)).toContain("firewall");
  });
});
