/** Egress caps under BPF_PROG_TEST_RUN. The bucket arithmetic (stm_shape_take) alone, driven
 * through a test object: a new bucket starts full, refills at one ns per ns up to the burst,
 * a packet costs its bytes at the rate, a clock reading older than the bucket's refills
 * nothing, an idle day or 400 Gbit/s cannot wrap it, a lowered cap clamps the credit; and a
 * fast-check run against a BigInt model of the same rules. Then the real programs: a capped
 * port passes its burst and drops the rest as egress-cap (counted per port and in the
 * bucket), an uncapped one never looks; the uplink charges a packet to the network of its
 * source prefix. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { dropReasonCode } from "../../src/datapath/drops";
import { loadObject } from "../../src/datapath/objects";
import { encodeDropKey, encodeIfindex, encodePort, type PortConfig } from "../../src/datapath/port-maps";
import {
  decodeShapeState,
  encodeShapeCfg,
  encodeShapeKey,
  encodeShapeSrc,
  SHAPE_KIND,
  SHAPE_STATE_SIZE,
} from "../../src/datapath/shape-maps";
import { bucketConfig, type EgressCap, SHAPE_SHIFT } from "../../src/model/egress-cap";
import { profileMac } from "../../src/model/network";
import { type BpfObject, BpfObject as Obj, testRun } from "../../src/sys/bpf";
import { withLibbpfLog } from "../../src/sys/ffi";
import { udp4 } from "../helpers/frames";

const ROOT = join(import.meta.dir, "../..");
const TC_NEXT = -1;
const TC_DROP = 2;
const M64 = (1n << 64n) - 1n;

// ---- the arithmetic ------------------------------------------------------------------------

interface Bucket {
  credit: bigint;
  last: bigint;
  passedPkts: bigint;
  passedBytes: bigint;
  droppedPkts: bigint;
  droppedBytes: bigint;
}
const EMPTY: Bucket = { credit: 0n, last: 0n, passedPkts: 0n, passedBytes: 0n, droppedPkts: 0n, droppedBytes: 0n };

/** The rules of stm_shape_take, in BigInt. */
function model(b: Bucket, cfg: { nsPerByte: bigint; burstNs: bigint }, now: bigint, len: bigint): [boolean, Bucket] {
  const s = { ...b };
  let credit = s.credit > cfg.burstNs ? cfg.burstNs : s.credit;
  if (s.last === 0n) {
    credit = cfg.burstNs;
    s.last = now;
  } else if (now > s.last) {
    const gap = now - s.last;
    credit = gap >= cfg.burstNs - credit ? cfg.burstNs : credit + gap;
    s.last = now;
  }
  const cost = ((len * cfg.nsPerByte) & M64) >> SHAPE_SHIFT;
  const pass = credit >= cost;
  if (pass) {
    s.credit = credit - cost;
    s.passedPkts++;
    s.passedBytes += len;
  } else {
    s.credit = credit;
    s.droppedPkts++;
    s.droppedBytes += len;
  }
  return [pass, s];
}

let math: BpfObject;

function encodeIo(b: Bucket, cfg: { nsPerByte: bigint; burstNs: bigint }, now: bigint, len: bigint): Buffer {
  const io = Buffer.alloc(SHAPE_STATE_SIZE + 16 + 24);
  io.writeBigUInt64LE(b.credit, 8);
  io.writeBigUInt64LE(b.last, 16);
  io.writeBigUInt64LE(b.passedPkts, 24);
  io.writeBigUInt64LE(b.passedBytes, 32);
  io.writeBigUInt64LE(b.droppedPkts, 40);
  io.writeBigUInt64LE(b.droppedBytes, 48);
  io.writeBigUInt64LE(cfg.nsPerByte, 56);
  io.writeBigUInt64LE(cfg.burstNs, 64);
  io.writeBigUInt64LE(now, 72);
  io.writeBigUInt64LE(len, 80);
  return io;
}

/** One stm_shape_take in the kernel: the verdict and the bucket after. */
function take(b: Bucket, cfg: { nsPerByte: bigint; burstNs: bigint }, now: bigint, len: bigint): [boolean, Bucket] {
  const m = math.map("stm_test_shape_io");
  const key = encodeIfindex(0);
  m.update(key, encodeIo(b, cfg, now, len));
  const r = testRun(math.program("stm_test_shape").fd, { data: new Uint8Array(64) });
  const out = m.lookup(key) as Buffer;
  const s = decodeShapeState(out.subarray(0, SHAPE_STATE_SIZE));
  const pass = out.readBigUInt64LE(88) === 1n;
  expect(r.retval).toBe(pass ? 1 : 0);
  return [
    pass,
    {
      credit: s.creditNs,
      last: s.lastNs,
      passedPkts: out.readBigUInt64LE(24),
      passedBytes: out.readBigUInt64LE(32),
      droppedPkts: out.readBigUInt64LE(40),
      droppedBytes: out.readBigUInt64LE(48),
    },
  ];
}

const CAP_100M: EgressCap = { rate: 100e6, burst: 150_000 };

beforeAll(() => {
  const bytes = readFileSync(join(ROOT, "build/test-bpf/shape_math.bpf.o"));
  math = withLibbpfLog(() => Obj.openMem(bytes, "shape_math").load());
});

afterAll(() => math?.close());

describe("bucket arithmetic (stm_shape_take)", () => {
  const cfg = bucketConfig(CAP_100M);

  test("the fixed-point rate: 100 Mbit/s is 80 ns a byte; the burst as time", () => {
    expect(cfg.nsPerByte).toBe(80n << 20n);
    expect(cfg.burstNs).toBe(150_000n * 80n);
  });

  test("a new bucket starts full: the burst passes, one more byte does not", () => {
    const t0 = 5_000_000_000n;
    let [pass, b] = take(EMPTY, cfg, t0, 150_000n);
    expect(pass).toBe(true);
    expect(b).toMatchObject({ credit: 0n, last: t0, passedPkts: 1n, passedBytes: 150_000n });
    [pass, b] = take(b, cfg, t0, 1n);
    expect(pass).toBe(false);
    expect(b).toMatchObject({ credit: 0n, droppedPkts: 1n, droppedBytes: 1n });
  });

  test("refill: one ns of credit per ns, so a 1500-byte packet needs 120 µs at 100 Mbit/s", () => {
    const t0 = 1_000_000n;
    const empty = { ...EMPTY, last: t0 };
    expect(take(empty, cfg, t0 + 119_999n, 1500n)[0]).toBe(false);
    const [pass, b] = take(empty, cfg, t0 + 120_000n, 1500n);
    expect(pass).toBe(true);
    expect(b.credit).toBe(0n);
    expect(b.last).toBe(t0 + 120_000n);
  });

  test("credit stops at the burst however long the bucket was idle (an idle day, 400 Gbit/s)", () => {
    const fast = bucketConfig({ rate: 400e9, burst: 1024 ** 3 });
    const t0 = 1n;
    const day = 86_400n * 1_000_000_000n;
    const [pass, b] = take({ ...EMPTY, last: t0, credit: 7n }, fast, t0 + day, 0n);
    expect(pass).toBe(true);
    expect(b.credit).toBe(fast.burstNs);
    // Near the clock's end: no wrap either.
    const [, c] = take({ ...EMPTY, last: 1n, credit: fast.burstNs - 1n }, fast, M64, 0n);
    expect(c.credit).toBe(fast.burstNs);
  });

  test("a clock reading older than the bucket's (another CPU was first) refills nothing", () => {
    const [pass, b] = take({ ...EMPTY, last: 10_000_000n, credit: 1000n }, cfg, 9_000_000n, 0n);
    expect(pass).toBe(true);
    expect(b).toMatchObject({ credit: 1000n, last: 10_000_000n });
  });

  test("a lowered cap clamps the credit to the new burst", () => {
    const small = bucketConfig({ rate: 100e6, burst: 65_536 });
    const [, b] = take({ ...EMPTY, last: 5n, credit: cfg.burstNs }, small, 5n, 0n);
    expect(b.credit).toBe(small.burstNs);
  });

  test("the largest skb at the slowest rate costs what it should: no overflow", () => {
    const slow = bucketConfig({ rate: 8000, burst: 1024 ** 3 });
    const len = (1n << 24n) - 1n;
    const [pass, b] = take({ ...EMPTY, last: 1n, credit: slow.burstNs }, slow, 1n, len);
    expect(pass).toBe(true);
    expect(b.credit).toBe(slow.burstNs - ((len * slow.nsPerByte) >> SHAPE_SHIFT));
    expect(slow.burstNs - b.credit).toBe(16_777_215_000_000n); // a second per 1000 bytes
  });

  test("fast-check: 300 random sequences agree with the model, packet by packet", () => {
    fc.assert(
      fc.property(
        fc.record({
          rate: fc.integer({ min: 8000, max: 400e9 }),
          burst: fc.integer({ min: 65_536, max: 1024 ** 3 }),
        }),
        fc.array(
          fc.record({
            dt: fc.oneof(fc.bigInt({ min: -50_000n, max: 2_000_000n }), fc.bigInt({ min: 0n, max: 10n ** 13n })),
            len: fc.bigInt({ min: 0n, max: (1n << 24n) - 1n }),
          }),
          { minLength: 1, maxLength: 12 },
        ),
        (cap, steps) => {
          const c = bucketConfig(cap);
          let kb = EMPTY;
          let mb = EMPTY;
          let now = 1_000_000_000n;
          for (const s of steps) {
            now = now + s.dt > 0n ? now + s.dt : 1n;
            const [kp, k2] = take(kb, c, now, s.len);
            const [mp, m2] = model(mb, c, now, s.len);
            expect(kp).toBe(mp);
            expect(k2).toEqual(m2);
            kb = k2;
            mb = m2;
          }
        },
      ),
      { numRuns: 300, seed: 7 },
    );
  });
});

// ---- the programs ----------------------------------------------------------------------------

const PORT = 1; // lo: a test run's device must exist in the caller's namespace
const ME = { mac: profileMac(1, 4), ip: "10.20.0.5" };
const OUTSIDE = "198.51.100.7";
const GW_MAC = "02:00:00:00:00:01";

let obj: BpfObject;

const port = (shaped: boolean): PortConfig => ({
  netId: 1,
  ip4: ME.ip,
  mac: ME.mac,
  cidr4: "10.20.0.0/24",
  gw4: "10.20.0.1",
  shaped,
});

function dropCount(ifindex: number): bigint {
  const v = obj.map("stm_drops").lookupPerCpu(encodeDropKey(ifindex, dropReasonCode("egress-cap")));
  return (v ?? []).reduce((a, b) => a + b.readBigUInt64LE(0), 0n);
}

function bucket(kind: 1 | 2, id: number) {
  const v = obj.map("stm_shape_state").lookup(encodeShapeKey(kind, id));
  return v ? decodeShapeState(v) : undefined;
}

beforeAll(() => {
  obj = loadObject("port");
});

afterAll(() => obj?.close());

describe("the port and uplink programs", () => {
  // 1,042-byte frames at 8 kbit/s (1,000 bytes a second) against the smallest bucket (64 KiB):
  // 62 fit, and the test's few microseconds refill nothing.
  const frame = () =>
    udp4({
      mac: ME.mac,
      dstMac: GW_MAC,
      src: ME.ip,
      dst: OUTSIDE,
      sport: 4000,
      dport: 53,
      payload: new Uint8Array(1000),
    });

  test("a capped port passes its burst, then drops as egress-cap, counted on the port and in its bucket", () => {
    obj
      .map("stm_shape_cfg")
      .update(encodeShapeKey(SHAPE_KIND.ENDPOINT, PORT), encodeShapeCfg({ rate: 8000, burst: 65_536 }));
    obj.map("stm_ports").update(encodeIfindex(PORT), encodePort(port(true)));
    const f = frame();
    const len = f.length;
    const fits = Math.floor(65_536 / len);
    const before = dropCount(PORT);
    const verdicts: number[] = [];
    for (let i = 0; i < fits + 3; i++) verdicts.push(testRun(obj.program("stm_port_in").fd, { data: f }).retval);
    expect(verdicts.slice(0, fits)).toEqual(Array(fits).fill(TC_NEXT));
    expect(verdicts.slice(fits)).toEqual([TC_DROP, TC_DROP, TC_DROP]);
    expect(dropCount(PORT) - before).toBe(3n);
    expect(bucket(1, PORT)).toMatchObject({
      passed: { packets: fits, bytes: fits * len },
      dropped: { packets: 3, bytes: 3 * len },
    });
  });

  test("the cap raised in place: the same bucket (its counts carry on) passes again at once", () => {
    obj
      .map("stm_shape_cfg")
      .update(encodeShapeKey(SHAPE_KIND.ENDPOINT, PORT), encodeShapeCfg({ rate: 400e9, burst: 1 << 20 }));
    const before = bucket(1, PORT);
    expect(testRun(obj.program("stm_port_in").fd, { data: frame() }).retval).toBe(TC_NEXT);
    expect(bucket(1, PORT)?.passed.packets).toBe((before?.passed.packets ?? 0) + 1);
  });

  test("an unshaped port never consults a bucket, even with a cap left in the map", () => {
    obj
      .map("stm_shape_cfg")
      .update(encodeShapeKey(SHAPE_KIND.ENDPOINT, PORT), encodeShapeCfg({ rate: 8000, burst: 65_536 }));
    obj.map("stm_shape_state").delete(encodeShapeKey(SHAPE_KIND.ENDPOINT, PORT));
    obj.map("stm_ports").update(encodeIfindex(PORT), encodePort(port(false)));
    for (let i = 0; i < 100; i++)
      expect(testRun(obj.program("stm_port_in").fd, { data: frame() }).retval).toBe(TC_NEXT);
    expect(bucket(1, PORT)).toBeUndefined();
  });

  test("the uplink charges a leaving packet to its source's network; others pass untouched", () => {
    const NET = 7;
    obj
      .map("stm_shape_cfg")
      .update(encodeShapeKey(SHAPE_KIND.NETWORK, NET), encodeShapeCfg({ rate: 8000, burst: 65_536 }));
    const v = Buffer.alloc(4);
    v.writeUInt32LE(NET);
    obj.map("stm_shape_src").update(encodeShapeSrc("10.20.0.0/24"), v);
    // A test run takes at most about a page: 3,000-byte datagrams, 21 of which fit in 64 KiB.
    const leaving = (src: string) =>
      udp4({
        mac: GW_MAC,
        dstMac: "02:00:00:00:00:02",
        src,
        dst: OUTSIDE,
        sport: 5000,
        dport: 443,
        payload: new Uint8Array(3000),
      });
    const mine = leaving(ME.ip);
    const other = leaving("10.99.0.5");
    const fits = Math.floor(65_536 / mine.length);
    const out = (f: Uint8Array) => testRun(obj.program("stm_uplink_out").fd, { data: f }).retval;
    const verdicts = Array.from({ length: fits + 2 }, () => out(mine));
    expect(verdicts).toEqual([...Array(fits).fill(TC_NEXT), TC_DROP, TC_DROP]);
    for (let i = 0; i < 10; i++) expect(out(other)).toBe(TC_NEXT);
    expect(bucket(2, NET)).toMatchObject({ passed: { packets: fits }, dropped: { packets: 2 } });
  });
});
