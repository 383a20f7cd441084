/** Against a real agent: command lines with a misspelled, unknown or repeated flag change
 * nothing. Each is refused with one line and exit 2 before the agent is asked, and the
 * networks, rules and defaults read the same afterwards. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { TestAgent } from "../helpers/agent";

let A: TestAgent;

beforeAll(async () => {
  A = new TestAgent("strict");
  await A.start();
  A.json("network", "create", "--name", "app-net", "--cidr", "10.71.0.0/24", "--gateway", "10.71.0.1");
  A.json(
    "firewall",
    "rule",
    "add",
    "app-net",
    "--priority",
    "10",
    "--proto",
    "tcp",
    "--dport",
    "443",
    "--action",
    "allow",
  );
}, 60_000);

afterAll(() => A?.destroy());

const state = () =>
  JSON.stringify([
    A.json("network", "list"),
    A.json("firewall", "export", "app-net"),
    A.json("firewall", "export", "--global"),
    A.json("endpoint", "list"),
  ]);

test("misspelled, unknown and repeated flags change nothing", () => {
  const before = state();
  const cases: Array<[string[], string]> = [
    // Would have been a deny-everything rule.
    [
      ["firewall", "rule", "add", "app-net", "--priority", "20", "--sorce=10.9.0.0/16", "--action", "deny"],
      "unknown flag --sorce (did you mean --src?)",
    ],
    // Would have allowed all TCP.
    [
      ["firewall", "rule", "add", "app-net", "--priority", "21", "--proto", "tcp", "--dprot=22", "--action", "allow"],
      "unknown flag --dprot (did you mean --dport?)",
    ],
    // Would have been an allow network.
    [
      [
        "network",
        "create",
        "--name",
        "db-net",
        "--cidr",
        "10.72.0.0/24",
        "--gateway",
        "10.72.0.1",
        "--default-actoin",
        "deny",
      ],
      "unknown flag --default-actoin (did you mean --default-action?)",
    ],
    // Would have replaced the rule set.
    [["firewall", "import", "app-net", "-", "--dry-run"], "unknown flag --dry-run"],
    // Would have kept only 23.
    [
      [
        "firewall",
        "rule",
        "add",
        "app-net",
        "--priority",
        "22",
        "--proto",
        "tcp",
        "--dport",
        "22",
        "--dport",
        "23",
        "--action",
        "allow",
      ],
      "--dport is given more than once",
    ],
    [["network", "set", "app-net", "--mtu", "9000", "--mtu", "1400"], "--mtu is given more than once"],
    [["firewall", "default", "app-net", "deny", "--globl"], "unknown flag --globl (did you mean --global?)"],
    [["network", "delete", "app-net", "--froce"], "unknown flag --froce (did you mean --force?)"],
  ];
  for (const [args, msg] of cases) {
    const r = A.ctl(...args);
    expect({ args, code: r.code, stdout: r.stdout }).toEqual({ args, code: 2, stdout: "" });
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toStartWith(`cenvero-str-ctl: ${msg}`);
  }
  expect(state()).toBe(before);
});

test("the agent refuses an unknown flag instead of starting with the default paths", () => {
  const r = A.ctl("agent", "--bogus", "--state-dir", `${A.dir}/other`);
  expect(r.code).toBe(2);
  expect(r.stderr).toBe("cenvero-str-ctl: unknown flag --bogus (cenvero-str-ctl agent --help lists the flags)\n");
});
