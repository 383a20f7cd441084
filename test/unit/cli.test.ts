/** The CLI's contract with users and scripts: help that lists commands, one-line errors,
 * stable exit codes, `-o json` for errors and output. */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { EXIT_CODES } from "../../src/cli";
import { BUN, ROOT, run } from "../helpers/netns";

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
    UNSUPPORTED: 4,
    UNAVAILABLE: 7,
    SYS: 5,
    NETLINK: 5,
    BPF_LOAD: 6,
    BPF_ATTACH: 6,
    INTERNAL: 70,
  });
});

test("the README's drop-reason table names every drop reason", () => {
  const { DROP_REASON_LIST } = require("../../src/datapath/drops");
  const readme = require("node:fs").readFileSync(require("node:path").join(import.meta.dir, "../../README.md"), "utf8");
  const table = readme.slice(readme.indexOf("| reason | what was dropped |"));
  for (const r of DROP_REASON_LIST.slice(1))
    expect({ reason: r.name, documented: table.includes(r.name) }).toEqual({ reason: r.name, documented: true });
});
