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
  const sizes = [
    "stm_count_key",
    "stm_count_val",
    "stm_pkt_event",
    "stm_port",
    "stm_profile_key",
    "stm_profile",
    "stm_drop_key",
  ];
  const offs: Array<[string, string]> = [
    ["stm_count_key", "hook"],
    ["stm_port", "ip4"],
    ["stm_port", "mac"],
    ["stm_port", "flags"],
    ["stm_profile", "flags"],
    ["stm_drop_key", "reason"],
  ];
  const body = [
    ...sizes.map((t) => `printf("${t} %zu\\n", sizeof(struct ${t}));`),
    ...offs.map(([t, f]) => `printf("${t}.${f} %zu\\n", offsetof(struct ${t}, ${f}));`),
  ].join("\n");
  const src = `#include <stddef.h>\n#include <stdio.h>\n#include <linux/types.h>\n#include "${join(import.meta.dir, "../../bpf/include/stm_abi.h")}"\nint main(void){\n${body}\nreturn 0;}\n`;
  const got = Object.fromEntries(
    compileAndRun(src)
      .trim()
      .split("\n")
      .map((l) => l.split(" "))
      .map(([k, v]) => [k, Number(v)]),
  );
  const { COUNT_KEY_SIZE, COUNT_VAL_SIZE } = require("../../src/datapath/counters");
  const { PORT_SIZE, PROFILE_KEY_SIZE, PROFILE_SIZE } = require("../../src/datapath/port");
  expect(got).toEqual({
    stm_count_key: COUNT_KEY_SIZE,
    stm_count_val: COUNT_VAL_SIZE,
    stm_pkt_event: 88,
    stm_port: PORT_SIZE,
    stm_profile_key: PROFILE_KEY_SIZE,
    stm_profile: PROFILE_SIZE,
    stm_drop_key: 8,
    "stm_count_key.hook": 4,
    // encodePort writes ip4 at 4, mac at 8, flags at 14; writeProfile writes flags at 6; drop reason at 4
    "stm_port.ip4": 4,
    "stm_port.mac": 8,
    "stm_port.flags": 14,
    "stm_profile.flags": 6,
    "stm_drop_key.reason": 4,
  });
});
