/** The counting and sampling programs under BPF_PROG_TEST_RUN, and the libbpf bindings
 * they exercise: load from memory, per-CPU maps, iterate, batch update/delete, pins,
 * ring buffers, and the verifier's log in load errors. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { COUNT_KEY_SIZE, decodeCountKey, encodeCountKey, readCounts, sumCountValue } from "../../src/datapath/counters";
import { loadObject } from "../../src/datapath/objects";
import { udpFrame } from "../../src/datapath/packet";
import { StratumError } from "../../src/errors";
import { BPF_F, BpfMap, type BpfObject, BpfObject as Obj, RingBuffer, testRun } from "../../src/sys/bpf";
import { withLibbpfLog } from "../../src/sys/ffi";
import { expectFixture } from "../helpers/fixture";
import { PinRoot, ROOT } from "../helpers/netns";

const XDP_PASS = 2;
const TC_NEXT = -1;
const LO = 1; // test runs of tc programs see the loopback device of the caller's namespace

const frame = udpFrame({
  srcMac: "02:00:0a:14:00:02",
  dstMac: "02:00:0a:14:00:03",
  src: "10.20.0.2",
  dst: "10.20.0.3",
  sport: 40000,
  dport: 53,
});

let obj: BpfObject;
let counters: BpfMap;
beforeAll(() => {
  obj = loadObject("counter");
  counters = obj.map("stm_counters");
});
afterAll(() => obj?.close());

describe("counting programs", () => {
  test("XDP counter passes the frame unchanged and counts every repetition", () => {
    const prog = obj.program("stm_count_xdp");
    const r = expectFixture(prog.fd, { name: "udp", input: frame, verdict: XDP_PASS, repeat: 1000 }, [counters]);
    const key = Buffer.concat([Buffer.from([LO, 0, 0, 0]), Buffer.from([3, 0, 0, 0])]).toString("hex");
    expect(r.deltas.stm_counters?.[key]).toEqual([1000n, BigInt(1000 * frame.length)]);
  });

  test("tc counters return TCX_NEXT and count per hook", () => {
    for (const [name, hook] of [
      ["stm_count_tc_in", "tc-ingress"],
      ["stm_count_tc_out", "tc-egress"],
    ] as const) {
      const r = expectFixture(obj.program(name).fd, { name, input: frame, verdict: TC_NEXT, repeat: 7 }, [counters]);
      expect(r.deltas.stm_counters?.[encodeCountKey(LO, hook).toString("hex")]).toEqual([7n, BigInt(7 * frame.length)]);
    }
  });

  test("per-CPU values are summed over every possible CPU", () => {
    const raw = counters.lookup(encodeCountKey(LO, "xdp"));
    expect(raw?.length).toBe(counters.valueBufSize);
    expect(counters.valueBufSize).toBe(16 * counters.cpus);
    const sum = sumCountValue(counters, raw as Buffer);
    expect(sum.packets).toBeGreaterThanOrEqual(1000);
    const listed = readCounts(counters).find((c) => c.ifindex === LO && c.hook === "xdp");
    expect(listed?.packets).toBe(sum.packets);
  });
});

describe("map operations", () => {
  const valueFor = (m: BpfMap, packets: number) => {
    const v = Buffer.alloc(m.valueBufSize);
    v.writeBigUInt64LE(BigInt(packets), 0); // CPU 0 only
    return v;
  };

  test("update, lookup, iterate and delete", () => {
    const m = counters;
    const key = encodeCountKey(9999, "tc-egress");
    m.update(key, valueFor(m, 42), BPF_F.NOEXIST);
    expect(() => m.update(key, valueFor(m, 1), BPF_F.NOEXIST)).toThrow("EEXIST");
    expect(sumCountValue(m, m.lookup(key) as Buffer).packets).toBe(42);
    expect([...m.keys()].some((k) => decodeCountKey(k).ifindex === 9999)).toBe(true);
    expect(m.delete(key)).toBe(true);
    expect(m.delete(key)).toBe(false);
    expect(m.lookup(key)).toBeNull();
  });

  test("batch update and delete apply every entry in one call", () => {
    const m = counters;
    const n = 500;
    const keys = Buffer.concat(Array.from({ length: n }, (_, i) => encodeCountKey(100000 + i, "xdp")));
    const values = Buffer.concat(Array.from({ length: n }, (_, i) => valueFor(m, i + 1)));
    expect(m.updateBatch(keys, values)).toBe(n);
    const mine = readCounts(m).filter((c) => c.ifindex >= 100000);
    expect(mine.length).toBe(n);
    expect(mine.reduce((a, c) => a + c.packets, 0)).toBe((n * (n + 1)) / 2);
    expect(m.deleteBatch(keys)).toBe(n);
    expect(readCounts(m).filter((c) => c.ifindex >= 100000)).toEqual([]);
  });

  test("wrong key and value sizes are refused before the syscall", () => {
    expect(() => counters.lookup(Buffer.alloc(COUNT_KEY_SIZE + 1))).toThrow(StratumError);
    expect(() => counters.update(Buffer.alloc(COUNT_KEY_SIZE), Buffer.alloc(3))).toThrow("map wants");
    expect(() => counters.updateBatch(Buffer.alloc(16), Buffer.alloc(1))).toThrow("does not match");
  });

  test("a pinned map is the same map when opened again", () => {
    const root = new PinRoot("pin");
    try {
      const path = `${root.path}/stm_counters`;
      counters.pin(path);
      using again = BpfMap.openPinned(path);
      expect(again.info.id).toBe(counters.info.id);
      expect(again.info).toMatchObject({ name: "stm_counters", keySize: 8, valueSize: 16 });
      const key = encodeCountKey(4242, "xdp");
      again.update(key, valueFor(again, 5));
      expect(sumCountValue(counters, counters.lookup(key) as Buffer).packets).toBe(5);
      counters.delete(key);
      expect(() => BpfMap.openPinned(`${root.path}/nope`)).toThrow("ENOENT");
    } finally {
      root.destroy();
    }
  });

  test("a second object can take over a map by fd (how restarts keep state)", () => {
    using second = loadObject("counter", { reuse: { stm_counters: counters.fd } });
    expect(second.map("stm_counters").info.id).toBe(counters.info.id);
  });
});

describe("ring buffer", () => {
  test("each packet's head arrives as one event", () => {
    const events: Buffer[] = [];
    using rb = new RingBuffer(obj.map("stm_events").fd, (d) => events.push(d));
    const prog = obj.program("stm_sample_tc_in");
    for (let i = 0; i < 3; i++) expect(testRun(prog.fd, { data: frame }).retval).toBe(TC_NEXT);
    expect(rb.poll(100)).toBe(3);
    expect(events.length).toBe(3);
    const ev = events[0] as Buffer;
    expect(ev.length).toBe(88);
    expect(ev.readUInt32LE(8)).toBe(LO); // ifindex
    expect(ev.readUInt32LE(16)).toBe(frame.length); // len
    expect(ev.readUInt32LE(20)).toBe(Math.min(frame.length, 64)); // snap_len
    const snap = Math.min(frame.length, 64);
    expect(ev.subarray(24, 24 + snap).toString("hex")).toBe(frame.subarray(0, snap).toString("hex"));
    expect(ev.subarray(24 + snap).every((b) => b === 0)).toBe(true);
    expect(rb.consume()).toBe(0);
  });
});

describe("load errors", () => {
  test("a verifier rejection fails with BPF_LOAD and carries the verifier's log", () => {
    const bytes = readFileSync(join(ROOT, "build/test-bpf/verifier_reject.bpf.o"));
    let err: unknown;
    try {
      withLibbpfLog(() => Obj.openMem(bytes, "verifier_reject").load());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StratumError);
    const e = err as StratumError;
    expect(e.code).toBe("BPF_LOAD");
    // The one-line message names the program, the verifier's reason and the source line ...
    expect(e.message).toBe(
      "load BPF object verifier_reject: program stm_test_unchecked_read rejected by the verifier: " +
        "invalid access to packet, off=100 size=1, R1(id=0,off=100,r=0) (verifier_reject.bpf.c:10): EACCES (Permission denied)",
    );
    // ... and the whole libbpf and verifier log travels with it.
    expect(e.detail).toContain("-- BEGIN PROG LOAD LOG --");
    expect(e.detail).toContain("processed 2 insns");
  });

  test("bytes that are not an ELF object fail to open with BPF_LOAD", () => {
    expect(() => Obj.openMem(Buffer.from("not an elf object"), "junk")).toThrow(StratumError);
    try {
      Obj.openMem(Buffer.from("not an elf object"), "junk");
    } catch (e) {
      expect((e as StratumError).code).toBe("BPF_LOAD");
    }
  });
});
