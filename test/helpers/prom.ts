/** Prometheus text exposition as a scraper reads it: parsed by a real parser
 * (parse-prometheus-text-format), then held to what that parser lets through: every sample
 * line is well formed (label escapes included) and belongs to a family with HELP and TYPE,
 * names are valid, counters end in _total, values are finite numbers, no series twice. */
import parsePrometheusTextFormat from "parse-prometheus-text-format";

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge";
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
// name{label="value",...} value — escapes in label values are \\, \" and \n only.
const SAMPLE_LINE =
  /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? (-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|NaN|[+-]Inf)( -?[0-9]+)?$/;

/** Families by name; throws on the first thing a strict scraper would reject. */
export function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith("\n")) throw new Error("exposition does not end with a newline");
  const lines = text.split("\n").filter((l) => l !== "");
  const sampleLines = lines.filter((l) => !l.startsWith("#"));
  for (const l of sampleLines) if (!SAMPLE_LINE.test(l)) throw new Error(`malformed sample line: ${l}`);
  for (const l of lines.filter((x) => x.startsWith("#")))
    if (!/^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* \S/.test(l)) throw new Error(`malformed comment line: ${l}`);

  const parsed = parsePrometheusTextFormat(text);
  const out = new Map<string, Family>();
  let series = 0;
  for (const f of parsed) {
    if (!NAME.test(f.name)) throw new Error(`bad metric name ${f.name}`);
    if (out.has(f.name)) throw new Error(`family ${f.name} appears twice`);
    if (f.type !== "COUNTER" && f.type !== "GAUGE") throw new Error(`family ${f.name} has type ${f.type}`);
    if (!f.help) throw new Error(`family ${f.name} has no HELP`);
    if (f.type === "COUNTER" && !f.name.endsWith("_total")) throw new Error(`counter ${f.name} does not end in _total`);
    const seen = new Set<string>();
    const samples: Sample[] = f.metrics.map((m) => {
      const labels = m.labels ?? {};
      for (const k of Object.keys(labels))
        if (!LABEL.test(k) || k.startsWith("__")) throw new Error(`bad label name ${k} in ${f.name}`);
      const key = JSON.stringify(Object.entries(labels).sort());
      if (seen.has(key)) throw new Error(`series ${f.name}${key} appears twice`);
      seen.add(key);
      const value = Number(m.value);
      if (m.value === undefined || !Number.isFinite(value)) throw new Error(`${f.name}${key}: value ${m.value}`);
      if (f.type === "COUNTER" && value < 0) throw new Error(`counter ${f.name}${key} is negative`);
      return { labels, value };
    });
    series += samples.length;
    out.set(f.name, { name: f.name, help: f.help, type: f.type === "COUNTER" ? "counter" : "gauge", samples });
  }
  // The parser merges lines it takes for the same series and skips what it cannot place:
  // each sample line must have become exactly one series.
  if (series !== sampleLines.length)
    throw new Error(`${sampleLines.length} sample lines, but the parser read ${series} series`);
  return out;
}

/** Sum of a family's samples whose labels include `match`; the family must exist. */
export function metricValue(fams: Map<string, Family>, name: string, match: Record<string, string> = {}): number {
  const f = fams.get(name);
  if (!f) throw new Error(`no metric family ${name}`);
  return f.samples
    .filter((s) => Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}
