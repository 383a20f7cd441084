/** The CLI's contract with users and scripts: help that lists commands, one-line errors,
 * stable exit codes, `-o json` for errors and output. */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { EXIT_CODES } from "../../src/cli/run";
import { BINARY, BUN, ROOT, run } from "../helpers/netns";

const cli = (...args: string[]) => run([BUN, join(ROOT, "src/main.ts"), ...args]);

test("--help lists the commands and exits 0", () => {
  const r = cli("--help");
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("version");
  expect(r.stdout).toContain("datapath");
  const sub = cli("datapath", "counter", "attach", "--help");
  expect(sub.code).toBe(0);
  expect(sub.stdout).toContain("cenvero-str-ctl datapath counter attach");
  expect(sub.stdout).toContain("--dev");
});

test("firewall --help teaches: flags, examples; scope mistakes are caught before the agent is asked", () => {
  const top = cli("--help");
  expect(top.stdout).toContain("firewall");
  const add = cli("firewall", "rule", "add", "--help");
  expect(add.code).toBe(0);
  for (const flag of [
    "--priority",
    "--direction",
    "--src",
    "--dst",
    "--proto",
    "--sport",
    "--dport",
    "--icmp-type",
    "--action",
    "--log",
    "--global",
  ])
    expect(add.stdout).toContain(flag);
  expect(add.stdout).toContain("EXAMPLES");
  expect(add.stdout).toContain(
    "cenvero-str-ctl firewall rule add app-net --priority 100 --proto tcp --dport 443 --action allow",
  );
  const sock = ["--api-socket", "/nonexistent/api.sock"];
  for (const [args, msg] of [
    [
      ["firewall", "rule", "add", "--priority", "5", "--action", "deny"],
      "give a NETWORK, or --global for the node-wide scope",
    ],
    [
      ["firewall", "rule", "del", "--global", "net", "7"],
      'unexpected argument "7" (--global takes the place of NETWORK)',
    ],
    [["firewall", "rule", "move", "net", "x", "--priority", "5"], 'ID must be a positive integer, not "x"'],
    [["firewall", "default", "net", "reject"], 'the default action is allow or deny, not "reject"'],
    [["firewall", "import", "net", "/nonexistent.yaml"], "cannot read /nonexistent.yaml: ENOENT"],
  ] as Array<[string[], string]>) {
    const r = cli(...args, ...sock);
    expect({ args, code: r.code }).toEqual({ args, code: 2 });
    expect(r.stderr).toBe(`cenvero-str-ctl: ${msg}\n`);
  }
});

test("no arguments prints usage and exits 2", () => {
  const r = cli();
  expect(r.code).toBe(2);
  expect(r.stdout).toContain("USAGE");
});

test("unknown commands and missing arguments: one line on stderr, exit 2", () => {
  for (const args of [["bogus"], ["datapath", "bogus"], ["datapath", "counter", "attach"], ["datapath"]]) {
    const r = cli(...args);
    expect({ args, code: r.code }).toEqual({ args, code: 2 });
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr.startsWith("cenvero-str-ctl: ")).toBe(true);
  }
});

test("version -o json has the documented shape", () => {
  const r = cli("version", "-o", "json");
  expect(r.code).toBe(0);
  const v = JSON.parse(r.stdout);
  expect(typeof v.version).toBe("string");
  expect(v.libbpf).toMatch(/^v?\d+\.\d+/);
  expect(typeof v.kernel).toBe("string");
  for (const f of ["tcx", "xdp", "ringbuf", "btf", "bpf", "cls_bpf"]) expect(typeof v.features[f]).toBe("boolean");
  expect(cli("--version").stdout.trim()).toBe(v.version);
});

test("exit codes are distinct per class of failure and stable", () => {
  expect(EXIT_CODES).toEqual({
    USAGE: 2,
    INVALID: 2,
    NOT_FOUND: 3,
    CAPACITY: 8,
    CONFLICT: 9,
    PERMISSION: 10,
    UNAUTHORIZED: 11,
    UNSUPPORTED: 4,
    UNAVAILABLE: 7,
    ETCD_UNAVAILABLE: 12,
    SYS: 5,
    NETLINK: 5,
    BPF_LOAD: 6,
    BPF_ATTACH: 6,
    INTERNAL: 70,
  });
});

test("the port-security page's drop-reason table names every drop reason", () => {
  const { DROP_REASON_LIST } = require("../../src/datapath/drops");
  const page = require("node:fs").readFileSync(
    require("node:path").join(import.meta.dir, "../../docs/port-security.md"),
    "utf8",
  );
  expect(page).toContain("| reason | what was dropped |");
  const table = page.slice(page.indexOf("| reason | what was dropped |"));
  for (const r of DROP_REASON_LIST.slice(1))
    expect({ reason: r.name, documented: table.includes(r.name) }).toEqual({ reason: r.name, documented: true });
});

test("a closed pipe ends the command quietly (cenvero-str-ctl --help | true)", () => {
  for (const args of [["--help"], ["version"], ["completion", "bash"]]) {
    // `true` exits before the binary writes: its writes meet a closed pipe.
    const r = run(["bash", "-c", `"$@" | true; echo "exit \${PIPESTATUS[0]}" >&2`, "bash", BINARY, ...args]);
    expect({ args, stderr: r.stderr }).toEqual({ args, stderr: "exit 0\n" });
  }
});

test("help off a terminal: no colour, no trailing padding, wrapped at 100 columns", () => {
  for (const args of [["--help"], ["network", "create", "--help"], ["firewall", "rule", "add", "-h"]]) {
    const r = cli(...args);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain("\u001b[");
    const body = r.stdout.split("\nEXAMPLES\n")[0] as string;
    for (const line of body.split("\n")) {
      expect({ line, long: line.length > 100 }).toEqual({ line, long: false });
      expect(line).toBe(line.trimEnd());
    }
  }
  expect(cli("--help").stdout).toContain("EXIT CODES");
});

test("-o yaml prints YAML; errors follow -o (json and yaml), before or after the verb", () => {
  const { parse } = require("yaml");
  const y = cli("version", "-o", "yaml");
  expect(y.code).toBe(0);
  expect(parse(y.stdout).version).toBe(JSON.parse(cli("version", "-o", "json").stdout).version);
  const sock = ["--api-socket", "/nonexistent/api.sock"];
  const ej = cli("-o", "json", "network", "list", ...sock);
  expect(ej.code).toBe(7);
  expect(JSON.parse(ej.stderr)).toMatchObject({ code: "UNAVAILABLE" });
  const ey = cli("network", "list", "-o", "yaml", ...sock);
  expect(ey.code).toBe(7);
  expect(parse(ey.stderr)).toMatchObject({ code: "UNAVAILABLE" });
  const bad = cli("-o", "json", "network", "create", "--nmae", "x");
  expect(bad.code).toBe(2);
  expect(JSON.parse(bad.stderr)).toEqual({ code: "INVALID", message: "unknown flag --nmae (did you mean --name?)" });
});

test("not root: the root-only API socket is a permission error (exit 10), not an unreachable agent", async () => {
  const { mkdtempSync, chmodSync, rmSync } = require("node:fs");
  const { join } = require("node:path");
  const dir = mkdtempSync("/tmp/stm-perm-");
  chmodSync(dir, 0o755);
  const sock = join(dir, "api.sock");
  const server = Bun.serve({ unix: sock, fetch: () => Response.json([]) });
  chmodSync(sock, 0o600);
  try {
    const p = Bun.spawn(
      ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", BINARY, "network", "list", "--api-socket", sock],
      {
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const [code, stderr] = await Promise.all([p.exited, new Response(p.stderr).text()]);
    expect(code).toBe(10);
    expect(stderr).toBe(
      `cenvero-str-ctl: permission denied on the agent's socket ${sock}: the API is root's only (run as root, e.g. with sudo)\n`,
    );
  } finally {
    server.stop(true);
    rmSync(dir, { recursive: true, force: true });
  }
});

test("under systemd (JOURNAL_STREAM is stderr) an error line carries the journal's error priority", async () => {
  const { mkdtempSync, openSync, closeSync, readFileSync, statSync, rmSync } = require("node:fs");
  const dir = mkdtempSync("/tmp/stm-journal-");
  const file = `${dir}/stderr`;
  const fd = openSync(file, "w");
  try {
    const st = statSync(file, { bigint: true });
    const p = Bun.spawn([BINARY, "network", "list", "--api-socket", `${dir}/none.sock`], {
      stdout: "ignore",
      stderr: fd,
      env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino}` },
    });
    expect(await p.exited).toBe(7);
    expect(readFileSync(file, "utf8")).toStartWith("<3>cenvero-str-ctl: cannot reach the agent");
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});
