/** Output for humans (aligned tables, key: value lines) and for scripts (`-o json`, `-o yaml`). */
import YAML from "yaml";
import { StratumError } from "../errors";
import { GLOBAL_ARGS } from "./args";

export type OutputFormat = "table" | "json" | "yaml";

/** -o/--output: a global flag; a command's table names it to read it as `args.output`. */
export const outputArg = { output: GLOBAL_ARGS.output } as const;

export function parseFormat(v: unknown): OutputFormat {
  if (v === "json" || v === "table" || v === "yaml") return v;
  throw new StratumError("INVALID", `unknown output format "${String(v)}" (use table, json or yaml)`);
}

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

/** The document in a script's format: JSON (indented) or YAML (one document). */
export function printData(fmt: Exclude<OutputFormat, "table">, v: unknown): void {
  if (fmt === "json") printJson(v);
  else process.stdout.write(YAML.stringify(v, { lineWidth: 0 }));
}

/** One record of a stream (monitor): a JSON line, or a YAML document starting with ---. */
export function printRecord(fmt: Exclude<OutputFormat, "table">, v: unknown): void {
  process.stdout.write(fmt === "json" ? `${JSON.stringify(v)}\n` : `---\n${YAML.stringify(v, { lineWidth: 0 })}`);
}

/** Columns padded to their widest cell; `rows` are already strings. */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  process.stdout.write(`${[line(header), ...rows.map(line)].join("\n")}\n`);
}

export function printKv(pairs: Array<[string, string]>): void {
  const w = Math.max(...pairs.map(([k]) => k.length));
  process.stdout.write(`${pairs.map(([k, v]) => `${`${k}:`.padEnd(w + 2)}${v}`).join("\n")}\n`);
}

/** A byte count for people: decimal units (kB, MB: traffic) or, with `binary`, KiB, MiB (memory, files). */
export function formatBytes(n: number, o: { binary?: boolean } = {}): string {
  const step = o.binary ? 1024 : 1000;
  const units = o.binary ? ["B", "KiB", "MiB", "GiB", "TiB"] : ["B", "kB", "MB", "GB", "TB"];
  let v = n;
  let i = 0;
  while (v >= step && i < units.length - 1) {
    v /= step;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}
