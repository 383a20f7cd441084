/** Every hand-laid struct layout and every kernel constant Stratum writes by hand is
 * checked against the real headers: a C program is compiled with the system compiler
 * and prints sizes, offsets and values. */

import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHAPE_SHIFT } from "../../src/model/egress-cap";
import { IFADDRMSG, IFINFOMSG, NDMSG, RTMSG, TCMSG } from "../../src/netlink/codec";
import { C_HEADERS, NL } from "../../src/netlink/constants";
import { type Layout, ALL_LAYOUTS as SYS_LAYOUTS } from "../../src/sys/layout";

/** Every layout of a C header: the FFI's and the netlink family headers. */
const ALL_LAYOUTS = { ...SYS_LAYOUTS, IFINFOMSG, IFADDRMSG, RTMSG, NDMSG, TCMSG };

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
    for (const [f, [, , c]] of Object.entries(l.fields))
      lines.push(`printf("${name} ${f} %zu\\n", offsetof(${l.ctype}, ${c ?? f}));`);
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
  const { COUNT_KEY_SIZE, COUNT_VAL_SIZE } = require("../../src/datapath/counters");
  const port = require("../../src/datapath/port-maps");
  const fw = require("../../src/datapath/firewall-maps");
  const mon = require("../../src/datapath/monitor-ring");
  const shape = require("../../src/datapath/shape-maps");
  const sizes: Record<string, number> = {
    stm_count_key: COUNT_KEY_SIZE,
    stm_count_val: COUNT_VAL_SIZE,
    stm_pkt_event: 88,
    stm_port: port.PORT_SIZE,
    stm_profile_key: port.PROFILE_KEY_SIZE,
    stm_profile: port.PROFILE_SIZE,
    stm_drop_key: 8,
    stm_local_key: port.LOCAL_KEY_SIZE,
    stm_local: port.LOCAL_SIZE,
    stm_lpm4_key: 8,
    stm_lpm6_key: 20,
    ...fw.FW_SIZES,
    stm_port_stats: port.PORT_STATS_SIZE,
    stm_mon_cfg: mon.MON_CFG_SIZE,
    stm_mon_event: mon.MON_EVENT_SIZE,
    stm_shape_key: shape.SHAPE_KEY_SIZE,
    stm_shape_cfg: shape.SHAPE_CFG_SIZE,
    stm_shape_state: shape.SHAPE_STATE_SIZE,
  };
  // Every field of every stm_abi.h layout the codecs read and write through (datapath/abi-layouts.ts).
  const { STM_LAYOUTS } = require("../../src/datapath/abi-layouts");
  const offsets: Record<string, number> = { "stm_count_key.hook": 4 };
  for (const [name, l] of Object.entries(STM_LAYOUTS as Record<string, Layout>)) {
    expect(sizes[name] ?? l.size).toBe(l.size);
    sizes[name] = l.size;
    for (const [f, [off]] of Object.entries(l.fields)) offsets[`${name}.${f}`] = off;
  }
  expect(Object.keys(STM_LAYOUTS).length).toBeGreaterThanOrEqual(13);
  const consts: Record<string, number> = {
    STM_PORT_F_IP6: port.PORT_F.IP6,
    STM_PORT_F_SHAPED: port.PORT_F.SHAPED,
    STM_PORT_F_LAN: port.PORT_F.LAN,
    STM_IFACE_UPLINK: port.IFACE_KIND.uplink,
    STM_SUBNET_F_LAN: port.SUBNET_F.LAN,
    STM_SHAPE_ENDPOINT: shape.SHAPE_KIND.ENDPOINT,
    STM_SHAPE_NETWORK: shape.SHAPE_KIND.NETWORK,
    STM_SHAPE_SHIFT: Number(SHAPE_SHIFT),
    STM_PROFILE_F_CLAIMED: port.PROFILE_F.CLAIMED,
    STM_PROFILE_F_GATEWAY: port.PROFILE_F.GATEWAY,
    STM_LOCAL_MAC: port.LOCAL_KIND.MAC,
    STM_LOCAL_IP4: port.LOCAL_KIND.IP4,
    STM_LOCAL_IP6: port.LOCAL_KIND.IP6,
    STM_FW_WORDS: fw.FW_WORDS,
    STM_FW_SUMS: fw.FW_SUMS,
    STM_FW_DEFAULT_ID: fw.FW_DEFAULT_ID,
    STM_FW_SCOPE_F_ON: fw.FW_SCOPE_F_ON,
    STM_FW_RULE_F_LOG: fw.FW_RULE_F_LOG,
    STM_FW_ALLOW: fw.FW_ACTION.allow,
    STM_FW_DENY: fw.FW_ACTION.deny,
    STM_FW_REJECT: fw.FW_ACTION.reject,
    STM_FW_INGRESS: fw.FW_DIR.ingress,
    STM_FW_EGRESS: fw.FW_DIR.egress,
    STM_PCLS_OTHER: fw.FW_PCLS.other,
    STM_PCLS_TCP: fw.FW_PCLS.tcp,
    STM_PCLS_UDP: fw.FW_PCLS.udp,
    STM_PCLS_ICMP: fw.FW_PCLS.icmp,
    STM_PCLS_ICMP6: fw.FW_PCLS.icmpv6,
    STM_MON_DROP: mon.MON_KIND.drop,
    STM_MON_LOG: mon.MON_KIND.log,
    STM_MON_FLOW: mon.MON_KIND.flow,
    STM_MON_SNAP: mon.MON_SNAP,
    STM_MON_STAT_MAX: mon.MON_STATS.length,
  };
  const body = [
    ...Object.keys(sizes).map((t) => `printf("${t} %zu\\n", sizeof(struct ${t}));`),
    ...Object.keys(offsets).map((k) => {
      const [t, f] = k.split(".");
      return `printf("${k} %zu\\n", offsetof(struct ${t}, ${f}));`;
    }),
    ...Object.keys(consts).map((c) => `printf("${c} %ld\\n", (long)(${c}));`),
  ].join("\n");
  const src = `#include <stddef.h>\n#include <stdio.h>\n#include <linux/types.h>\n#include <linux/bpf.h>\n#include "${join(import.meta.dir, "../../bpf/include/stm_abi.h")}"\nint main(void){\n${body}\nreturn 0;}\n`;
  const got = Object.fromEntries(
    compileAndRun(src)
      .trim()
      .split("\n")
      .map((l) => l.split(" "))
      .map(([k, v]) => [k, Number(v)]),
  );
  expect(got).toEqual({ ...sizes, ...offsets, ...consts });
});

test("drop reasons: the TypeScript table is what the C enum is built from", () => {
  const { DROP_REASON_LIST } = require("../../src/datapath/drops");
  const def = join(import.meta.dir, "../../bpf/include/stm_drop_reasons.def");
  const src = `#include <stdio.h>\nint main(void){\n#define STM_DROP_REASON(num, id, name, what) printf("%d %s %s\\n", num, #id, name);\n#include "${def}"\nreturn 0;}\n`;
  const got = compileAndRun(src).trim().split("\n");
  expect(got).toEqual(
    DROP_REASON_LIST.map((r: { code: number; id: string; name: string }) => `${r.code} ${r.id} ${r.name}`),
  );
  expect(got.length).toBeGreaterThanOrEqual(19);
});
