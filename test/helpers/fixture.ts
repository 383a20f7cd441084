/** BPF_PROG_TEST_RUN fixtures: a packet goes into a loaded program; the verdict, the
 * output bytes and the change of any counter map come out, compared with expectations. */
import { expect } from "bun:test";
import type { BpfMap } from "../../src/sys/bpf";
import { testRun } from "../../src/sys/bpf";

export interface Fixture {
  name: string;
  input: Uint8Array;
  /** Expected program return value (XDP_PASS, TC verdict …). */
  verdict: number;
  /** Expected output packet; defaults to "unchanged". */
  output?: Uint8Array;
  repeat?: number;
  ctx?: Uint8Array;
}

export interface FixtureResult {
  retval: number;
  output: Buffer;
  /** Map name → key (hex) → summed u64 deltas of each 8-byte column of the value. */
  deltas: Record<string, Record<string, bigint[]>>;
}

/** Sums each 8-byte column of a (per-CPU) value. */
function columns(map: BpfMap, raw: Buffer): bigint[] {
  const parts = map.perCpu ? map.splitPerCpu(raw) : [raw];
  const n = Math.floor(map.info.valueSize / 8);
  const out = Array<bigint>(n).fill(0n);
  for (const p of parts) for (let i = 0; i < n; i++) out[i] = (out[i] as bigint) + p.readBigUInt64LE(i * 8);
  return out;
}

function snapshot(map: BpfMap): Map<string, bigint[]> {
  const m = new Map<string, bigint[]>();
  for (const [k, v] of map.entries()) m.set(k.toString("hex"), columns(map, v));
  return m;
}

export function runFixture(progFd: number, f: Fixture, maps: BpfMap[] = []): FixtureResult {
  const before = maps.map(snapshot);
  const r = testRun(progFd, { data: f.input, repeat: f.repeat, ctx: f.ctx });
  const deltas: FixtureResult["deltas"] = {};
  maps.forEach((map, i) => {
    const after = snapshot(map);
    const d: Record<string, bigint[]> = {};
    for (const [k, cols] of after) {
      const prev = before[i]?.get(k) ?? cols.map(() => 0n);
      const diff = cols.map((c, j) => c - (prev[j] as bigint));
      if (diff.some((x) => x !== 0n)) d[k] = diff;
    }
    deltas[map.name] = d;
  });
  return { retval: r.retval, output: r.dataOut, deltas };
}

/** Runs a fixture and asserts verdict and output bytes. */
export function expectFixture(progFd: number, f: Fixture, maps: BpfMap[] = []): FixtureResult {
  const r = runFixture(progFd, f, maps);
  expect({ name: f.name, verdict: r.retval }).toEqual({ name: f.name, verdict: f.verdict });
  expect(r.output.toString("hex")).toBe(Buffer.from(f.output ?? f.input).toString("hex"));
  return r;
}
