/** End to end on real devices: the compiled binary, copied alone to an empty directory,
 * loads the counting program from bytes embedded in itself, attaches it with tcx (and
 * cls_bpf, and XDP) to a veth in a namespace, real pings cross it, and the counters are
 * read back from the pinned map after the attaching process has exited. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BINARY, PinRoot, vethPair } from "../helpers/netns";

let pair: ReturnType<typeof vethPair>;
let pins: PinRoot;
let dir: string;
let bin: string;

beforeAll(() => {
  if (!existsSync(BINARY)) throw new Error(`${BINARY} is missing: run scripts/build first (scripts/test does)`);
  dir = mkdtempSync(join(tmpdir(), "stm-bin-"));
  bin = join(dir, "cenvero-str-ctl");
  copyFileSync(BINARY, bin);
  pair = vethPair("cnt", 78);
  pins = new PinRoot("cnt");
});
afterAll(() => {
  pair?.destroy();
  pins?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const ctl = (...args: string[]) => pair.a.enter([bin, ...args, "--pin-root", pins.path]);
const json = (...args: string[]) => {
  const r = ctl(...args, "-o", "json");
  if (r.code !== 0) throw new Error(`${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
};
const pings = (n: number) => pair.b.exec(["ping", "-c", String(n), "-i", "0.05", "-W", "1", pair.ipA]);
const count = (hook: string) => {
  const rows = json("datapath", "counter", "read", "--dev", pair.devA) as Array<{
    hook: string;
    packets: number;
    bytes: number;
  }>;
  return rows.find((r) => r.hook === hook) ?? { packets: 0, bytes: 0 };
};

test("the binary alone reports version, libbpf and kernel features", () => {
  const r = pair.a.enter([bin, "version", "-o", "json"]);
  expect(r.code).toBe(0);
  const v = JSON.parse(r.stdout);
  expect(Object.keys(v)).toEqual(expect.arrayContaining(["version", "libbpf", "kernel", "features"]));
  expect(v.features).toMatchObject({ bpf: true, tcx: true, xdp: true, ringbuf: true });
  expect(readdirSync(dir)).toEqual(["cenvero-str-ctl"]);
});

describe("tcx", () => {
  test("attach pins a tcx link and the attaching process exits", () => {
    const a = json("datapath", "counter", "attach", "--dev", pair.devA, "--hook", "tc-ingress");
    expect(a).toMatchObject({ kind: "tcx", hook: "tc-ingress", dev: pair.devA });
    expect(existsSync(a.pin)).toBe(true);
    const ipLink = pair.a.ipJson(["link", "show", pair.devA])[0];
    expect(ipLink.ifindex).toBe(a.ifindex);
  });

  test("real pings are counted, packets and bytes", () => {
    const before = count("tc-ingress");
    const r = pings(10);
    expect(r.code).toBe(0);
    const after = count("tc-ingress");
    // 10 echo requests (84 bytes of IP + 14 of Ethernet), plus any ARP the first ping needed.
    expect(after.packets - before.packets).toBeGreaterThanOrEqual(10);
    expect(after.packets - before.packets).toBeLessThanOrEqual(12);
    expect(after.bytes - before.bytes).toBeGreaterThanOrEqual(10 * 98);
  });

  test("a second attach at the same hook is refused and changes nothing", () => {
    const r = ctl("datapath", "counter", "attach", "--dev", pair.devA, "--hook", "tc-ingress");
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("already attached");
  });
});

test("cls_bpf fallback counts egress", () => {
  const a = json("datapath", "counter", "attach", "--dev", pair.devA, "--hook", "tc-egress", "--mode", "cls_bpf");
  expect(a.kind).toBe("cls_bpf");
  const filters = pair.a.execOk(["tc", "filter", "show", "dev", pair.devA, "egress"]);
  expect(filters).toContain("stm_count_tc_ou");
  const before = count("tc-egress");
  expect(pings(5).code).toBe(0);
  expect(count("tc-egress").packets - before.packets).toBeGreaterThanOrEqual(5);
});

test("XDP attach (native on veth) counts received frames", () => {
  const a = json("datapath", "counter", "attach", "--dev", pair.devA, "--hook", "xdp");
  expect(a).toMatchObject({ kind: "xdp", xdpMode: "native" });
  const before = count("xdp");
  expect(pings(5).code).toBe(0);
  expect(count("xdp").packets - before.packets).toBeGreaterThanOrEqual(5);
});

test("bad input: one line, stable exit codes", () => {
  const cases: Array<[string[], number, string]> = [
    [["datapath", "counter", "attach", "--dev", "nope0"], 3, "link nope0 does not exist"],
    [
      ["datapath", "counter", "attach", "--dev", pair.devA, "--hook", "sideways"],
      2,
      '--hook must be tc-ingress, tc-egress or xdp, not "sideways"',
    ],
    [["datapath", "counter", "attach", "--dev", pair.devA, "--hook", "xdp", "--mode", "tcx"], 2, "does not apply"],
    [["datapath", "counter", "read", "-o", "xml"], 2, '--output must be table, json or yaml, not "xml"'],
  ];
  for (const [args, code, msg] of cases) {
    const r = ctl(...args);
    expect({ args, code: r.code }).toEqual({ args, code });
    expect(r.stderr).toContain(msg);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  }
  const r = ctl("datapath", "counter", "attach", "--dev", "nope0", "-o", "json");
  expect(JSON.parse(r.stderr)).toEqual({ code: "NOT_FOUND", message: "link nope0 does not exist" });
});

test("detach removes every link, filter and pin", () => {
  const r = json("datapath", "counter", "detach", "--dev", pair.devA);
  expect(r).toEqual({ links: 2, filters: 1 });
  expect(readdirSync(pins.path)).toEqual([]);
  expect(pair.a.execOk(["tc", "filter", "show", "dev", pair.devA, "egress"]).trim()).toBe("");
  const link = pair.a.ipJson(["-d", "link", "show", pair.devA])[0];
  expect(link.xdp).toBeUndefined();
  const before = pings(3);
  expect(before.code).toBe(0);
  expect(ctl("datapath", "counter", "read").code).toBe(3); // nothing pinned any more
});

test("program replacement inside a pinned link is atomic, refuses a stale expectation, and XDP live frames inject", () => {
  const r = pair.a.scenario(join(import.meta.dir, "scenarios/replace-and-live.ts"), {
    dev: pair.devA,
    pinRoot: pins.path,
    peerNs: pair.b.name,
    ip: pair.ipA,
  });
  expect(r).toMatchObject({
    kind: "tcx",
    pingCounting: true,
    swapToDrop: true,
    pingDropped: false,
    pingRestored: true,
    linkProg: true,
    linkIfindex: true,
    detached: true,
    detachedAgain: false,
  });
  expect(r.staleRefused).toContain("expected");
  expect(r.countedPackets).toBeGreaterThanOrEqual(2);
  // Each of the 256 frames is counted twice: once by the test run itself, and once more when
  // the XDP_PASS verdict injected it into lo's receive path, where the attached copy ran on it.
  expect(r.live).toEqual({ kind: "xdp", mode: "generic", retval: 0, counted: 512 });
  expect(readdirSync(pins.path)).toEqual([]);
});
