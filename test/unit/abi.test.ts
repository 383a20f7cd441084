/** Every hand-laid struct layout and every kernel constant Stratum writes by hand is
 * checked against the real headers: a C program is compiled with the system compiler
 * and prints sizes, offsets and values. */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { C_HEADERS, NL } from "../../src/netlink/constants";
import { ALL_LAYOUTS } from "../../src/sys/layout";
import { runOk } from "../helpers/netns";

function compileAndRun(source: string): string {
  const dir = mkdtempSync(join(tmpdir(), "stm-abi-"));
  try {
    writeFileSync(join(dir, "probe.c"), source);
    runOk(["cc", "-o", join(dir, "probe"), join(dir, "probe.c")]);
    return runOk([join(dir, "probe")]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("struct layouts match the C headers", () => {
  const headers = new Set(["stddef.h", "stdio.h", ...Object.values(ALL_LAYOUTS).map((l) => l.header)]);
  const lines: string[] = [];
  for (const [name, l] of Object.entries(ALL_LAYOUTS)) {
    lines.push(`printf("${name} size %zu\\n", sizeof(${l.ctype}));`);
    for (const f of Object.keys(l.fields)) lines.push(`printf("${name} ${f} %zu\\n", offsetof(${l.ctype}, ${f}));`);
  }
  const src = `${[...headers].map((h) => `#include <${h}>`).join("\n")}\nint main(void){\n${lines.join("\n")}\nreturn 0;}\n`;
  const got = new Map(
    compileAndRun(src)
      .trim()
      .split("\n")
      .map((l) => {
        const [n, f, v] = l.split(" ");
        return [`${n}.${f}`, Number(v)] as const;
      }),
  );

  for (const [name, l] of Object.entries(ALL_LAYOUTS)) {
    test(`${l.ctype}`, () => {
      // The kernel accepts larger info structs than the headers know; our size must cover at least the header's.
      if (l.header === "linux/bpf.h") expect(l.size).toBeGreaterThanOrEqual(got.get(`${name}.size`) as number);
      else expect(l.size).toBe(got.get(`${name}.size`) as number);
      for (const [f, [off]] of Object.entries(l.fields))
        expect({ f, off }).toEqual({ f, off: got.get(`${name}.${f}`) as number });
    });
  }
});

test("rtnetlink and tun constants match the kernel headers", () => {
  const missing = new Set(["SOL_NETLINK"]); // glibc names it in <sys/socket.h> only with _GNU_SOURCE
  const body = Object.keys(NL)
    .map((k) => `printf("${k} %ld\\n", (long)(${k}));`)
    .join("\n");
  const src = `#define _GNU_SOURCE\n#include <stdio.h>\n${C_HEADERS.map((h) => `#include <${h}>`).join("\n")}\nint main(void){\n${body}\nreturn 0;}\n`;
  const out = compileAndRun(src);
  const got = Object.fromEntries(
    out
      .trim()
      .split("\n")
      .map((l) => {
        const [k, v] = l.split(" ");
        return [k, Number(v)];
      }),
  );
  for (const [k, v] of Object.entries(NL)) if (!missing.has(k)) expect({ k, v }).toEqual({ k, v: got[k] });
  expect(Object.keys(got).length).toBe(Object.keys(NL).length);
});

test("stm_abi.h structs match their codecs", () => {
  const src = `#include <stddef.h>\n#include <stdio.h>\n#include <linux/types.h>\ntypedef __u8 u8;\n#include "${join(import.meta.dir, "../../bpf/include/stm_abi.h")}"\nint main(void){printf("%zu %zu %zu %zu\\n", sizeof(struct stm_count_key), sizeof(struct stm_count_val), offsetof(struct stm_count_key, hook), sizeof(struct stm_pkt_event));return 0;}\n`;
  const [key, val, hookOff, ev] = compileAndRun(src).trim().split(" ").map(Number);
  const { COUNT_KEY_SIZE, COUNT_VAL_SIZE } = require("../../src/datapath/counters");
  expect([key, val, hookOff, ev]).toEqual([COUNT_KEY_SIZE, COUNT_VAL_SIZE, 4, 88]);
});
