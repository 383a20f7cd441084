/** The benchmark harness: each benchmark measures a candidate and its baseline in the
 * same run, interleaved (ABBA order per round) so machine noise hits both alike, and
 * reports medians and the median of the per-round ratios (for a row of samples: a
 * percentile of all of them, see FigureRow). Never used by tests. */

import { join } from "node:path";

/** The project's root, and the compiled binary the agent benchmarks run. */
export const ROOT = join(import.meta.dir, "../..");
export const BINARY = join(ROOT, "dist/cenvero-str-ctl");

/** One measurement: a number (the benchmark's one figure), or the named figures of one run
 * for a benchmark with `rows`, each a number or that run's samples. */
export type Measurement = number | Record<string, number | number[]>;

export interface Benchmark {
  name: string;
  /** What one measurement is, e.g. "ns/packet". */
  unit: string;
  candidate: { label: string; measure: () => Measurement | Promise<Measurement> };
  baseline: { label: string; measure: () => Measurement | Promise<Measurement> };
  /** Rows of figures taken from the same measurements (instead of the one row `name`). */
  rows?: FigureRow[];
  setup?: () => void | Promise<void>;
  teardown?: () => void | Promise<void>;
}

/** A row of a benchmark whose measurements are named figures. A figure given as samples is
 * reduced to `percentile`: the row's columns are that percentile of every sample of the run
 * (candidate's, baseline's), its ratio is their quotient, and its range the lowest and highest
 * quotient of one round's samples. A plain figure is treated as every other row is. */
export interface FigureRow {
  name: string;
  unit: string;
  /** The figure's name in the measurements. */
  figure: string;
  /** 0-100; required when the figure is samples. */
  percentile?: number;
  /** Labels of this row (default: the benchmark's). */
  candidate?: string;
  baseline?: string;
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
  /** A row of samples: how many of each side's the columns are taken from. */
  samples?: { candidate: number; baseline: number };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** The p-th percentile (0-100), linear between the closest ranks (the median for p = 50). */
export function percentile(xs: number[], p: number): number {
  if (!xs.length) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const at = ((s.length - 1) * p) / 100;
  const lo = Math.floor(at);
  const hi = Math.min(lo + 1, s.length - 1);
  return (s[lo] as number) + ((s[hi] as number) - (s[lo] as number)) * (at - lo);
}

/** Runs a benchmark: set-up, one warm-up of each side, `rounds` interleaved rounds, tear-down
 * (also when something fails); one result per row. */
export async function runBenchmark(
  b: Benchmark,
  rounds: number,
  onRound?: (i: number) => void,
): Promise<BenchResult[]> {
  try {
    await b.setup?.(); // a set-up that fails half-way is torn down too
    await b.candidate.measure(); // warm-up: JIT, caches, first-touch
    await b.baseline.measure();
    const cand: Measurement[] = [];
    const base: Measurement[] = [];
    for (let i = 0; i < rounds; i++) {
      if (i % 2 === 0) {
        cand.push(await b.candidate.measure());
        base.push(await b.baseline.measure());
      } else {
        base.push(await b.baseline.measure());
        cand.push(await b.candidate.measure());
      }
      onRound?.(i);
    }
    const rows: FigureRow[] = b.rows ?? [{ name: b.name, unit: b.unit, figure: "" }];
    return rows.map((row) => {
      const pick = (m: Measurement): number | number[] => {
        if (!b.rows) {
          if (typeof m !== "number") throw new Error(`${b.name}: a measurement without rows must be a number`);
          return m;
        }
        const v = typeof m === "number" ? undefined : m[row.figure];
        if (v === undefined) throw new Error(`${row.name}: the measurement has no figure "${row.figure}"`);
        return v;
      };
      const c = cand.map(pick);
      const a = base.map(pick);
      const labels = {
        name: row.name,
        unit: row.unit,
        candidate: row.candidate ?? b.candidate.label,
        baseline: row.baseline ?? b.baseline.label,
        rounds,
      };
      if (c.every((x) => typeof x === "number") && a.every((x) => typeof x === "number")) {
        const ratios = c.map((x, i) => (x as number) / (a[i] as number));
        return {
          ...labels,
          candidateMedian: median(c as number[]),
          baselineMedian: median(a as number[]),
          ratio: median(ratios),
          ratioMin: Math.min(...ratios),
          ratioMax: Math.max(...ratios),
        };
      }
      const p = row.percentile;
      if (p === undefined) throw new Error(`${row.name}: samples need a percentile`);
      const samples = (xs: Array<number | number[]>) => xs.map((x) => (typeof x === "number" ? [x] : x));
      const cs = samples(c);
      const as = samples(a);
      const ratios = cs.map((x, i) => percentile(x, p) / percentile(as[i] as number[], p));
      const cp = percentile(cs.flat(), p);
      const ap = percentile(as.flat(), p);
      return {
        ...labels,
        candidateMedian: cp,
        baselineMedian: ap,
        ratio: cp / ap,
        ratioMin: Math.min(...ratios),
        ratioMax: Math.max(...ratios),
        samples: { candidate: cs.flat().length, baseline: as.flat().length },
      };
    });
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
