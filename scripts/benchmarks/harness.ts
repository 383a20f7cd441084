/** The benchmark harness: each benchmark measures a candidate and its baseline in the
 * same run, interleaved (ABBA order per round) so machine noise hits both alike, and
 * reports medians and the median of the per-round ratios. Never used by tests. */

import { join } from "node:path";

/** The project's root, and the compiled binary the agent benchmarks run. */
export const ROOT = join(import.meta.dir, "../..");
export const BINARY = join(ROOT, "dist/cenvero-str-ctl");

export interface Benchmark {
  name: string;
  /** What one measurement is, e.g. "ns/packet". */
  unit: string;
  candidate: { label: string; measure: () => number | Promise<number> };
  baseline: { label: string; measure: () => number | Promise<number> };
  setup?: () => void | Promise<void>;
  teardown?: () => void | Promise<void>;
}

export interface BenchResult {
  name: string;
  unit: string;
  candidate: string;
  baseline: string;
  rounds: number;
  candidateMedian: number;
  baselineMedian: number;
  /** Median over rounds of candidate / baseline. */
  ratio: number;
  /** Spread of the ratio: lowest and highest round. */
  ratioMin: number;
  ratioMax: number;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

export async function runBenchmark(b: Benchmark, rounds: number, onRound?: (i: number) => void): Promise<BenchResult> {
  try {
    await b.setup?.(); // a set-up that fails half-way is torn down too
    await b.candidate.measure(); // warm-up: JIT, caches, first-touch
    await b.baseline.measure();
    const cand: number[] = [];
    const base: number[] = [];
    const ratios: number[] = [];
    for (let i = 0; i < rounds; i++) {
      let c: number;
      let a: number;
      if (i % 2 === 0) {
        c = await b.candidate.measure();
        a = await b.baseline.measure();
      } else {
        a = await b.baseline.measure();
        c = await b.candidate.measure();
      }
      cand.push(c);
      base.push(a);
      ratios.push(c / a);
      onRound?.(i);
    }
    return {
      name: b.name,
      unit: b.unit,
      candidate: b.candidate.label,
      baseline: b.baseline.label,
      rounds,
      candidateMedian: median(cand),
      baselineMedian: median(base),
      ratio: median(ratios),
      ratioMin: Math.min(...ratios),
      ratioMax: Math.max(...ratios),
    };
  } finally {
    await b.teardown?.();
  }
}

const fmt = (n: number): string => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));

export function formatTable(results: BenchResult[]): string {
  const header = ["benchmark", "candidate", "baseline", "unit", "cand", "base", "ratio", "ratio range"];
  const rows = results.map((r) => [
    r.name,
    r.candidate,
    r.baseline,
    r.unit,
    fmt(r.candidateMedian),
    fmt(r.baselineMedian),
    `${r.ratio.toFixed(2)}x`,
    `${r.ratioMin.toFixed(2)}-${r.ratioMax.toFixed(2)}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] as number))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/** Runs a command to completion; its stdout, or an error with the command and its stderr. */
export function sh(cmd: string[]): string {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0)
    throw new Error(`${cmd.join(" ")}: ${r.stderr.toString().trim() || r.stdout.toString().trim()}`);
  return r.stdout.toString();
}
