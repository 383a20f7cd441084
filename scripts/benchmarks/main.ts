/** scripts/bench entry: runs the named benchmarks (by default all but the opt-in ones) and
 * prints a table, or JSON with --json. A NAME is a benchmark's name or a group's (the part
 * before "/": `cluster` runs every cluster/ benchmark). Soaks (etcd-soak) take minutes and
 * print a report of their own: they run only when named.
 * Usage: scripts/bench [--rounds N] [--json] [--list] [NAME...] */
import { parseArgs } from "node:util";
import { ADDRESSING_BENCHMARKS } from "./addressing";
import { AGENT_BENCHMARKS } from "./agent";
import { BLOCKLIST_BENCHMARKS } from "./blocklist";
import { CLI_BENCHMARKS } from "./cli";
import { CLUSTER_BENCHMARKS } from "./cluster";
import { DECLARATIVE_BENCHMARKS } from "./declarative";
import { FW_APPLY_BENCHMARKS } from "./firewall-apply";
import { GATEWAY_BENCHMARKS } from "./gateway";
import { GATEWAY_HA_BENCHMARKS } from "./gateway-ha";
import { type BenchResult, formatTable, runBenchmark } from "./harness";
import { LB_BENCHMARKS } from "./lb";
import { MSEG_BENCHMARKS } from "./microseg";
import { OVERLAY_BENCHMARKS } from "./overlay";
import { RESTART_BENCHMARKS } from "./restart";
import { SCALE_BENCHMARKS } from "./scale";
import { SHAPE_BENCHMARKS } from "./shape";
import { BENCHMARKS as DATAPATH_BENCHMARKS } from "./suite";
import { VM_BENCHMARKS } from "./vm-backends";
import { VS_NFT_BENCHMARKS } from "./vs-nft";
import { VS_NFT_BRIDGE_BENCHMARKS } from "./vs-nft-bridge";

const BENCHMARKS = {
  ...DATAPATH_BENCHMARKS,
  ...AGENT_BENCHMARKS,
  ...ADDRESSING_BENCHMARKS,
  ...SHAPE_BENCHMARKS,
  ...RESTART_BENCHMARKS,
  ...CLUSTER_BENCHMARKS,
  ...OVERLAY_BENCHMARKS,
  ...GATEWAY_BENCHMARKS,
  ...GATEWAY_HA_BENCHMARKS,
  ...MSEG_BENCHMARKS,
  ...LB_BENCHMARKS,
  ...BLOCKLIST_BENCHMARKS,
  ...CLI_BENCHMARKS,
  ...FW_APPLY_BENCHMARKS,
  ...VS_NFT_BENCHMARKS,
  ...VS_NFT_BRIDGE_BENCHMARKS,
  ...SCALE_BENCHMARKS,
  ...VM_BENCHMARKS,
  ...DECLARATIVE_BENCHMARKS,
};
/** Left out of a run that names nothing: minutes each, with labs and data of their own. */
const OPT_IN = new Set([
  ...Object.keys(CLUSTER_BENCHMARKS),
  ...Object.keys(OVERLAY_BENCHMARKS),
  ...Object.keys(GATEWAY_BENCHMARKS),
  ...Object.keys(GATEWAY_HA_BENCHMARKS),
  "microseg/gbp-throughput",
  "lb/vs-nft-dnat",
]);

/** Runs that print their own report, only when named (after the benchmarks named with them). */
const SOAKS: Record<string, (o: { json: boolean }) => Promise<void>> = {
  "etcd-soak": async (o) => (await import("./etcd-soak")).soak(o),
};

const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  options: {
    rounds: { type: "string", default: "9" },
    json: { type: "boolean", default: false },
    list: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
  allowPositionals: true,
});

if (values.help) {
  process.stdout.write(
    "usage: scripts/bench [--rounds N] [--json] [--list] [NAME...]\n  Runs each benchmark's candidate and baseline interleaved for N rounds and prints medians and the median ratio.\n  NAME: a benchmark, or a group (cluster: every cluster/ benchmark). Without NAME: all but the opt-in ones (cluster/, overlay/, gateway/).\n  etcd-soak (only when named): the etcd clients under etcd crashes, STM_SOAK_SECONDS per client (default 60).\n",
  );
  process.exit(0);
}
if (values.list) {
  process.stdout.write(`${[...Object.keys(BENCHMARKS), ...Object.keys(SOAKS)].join("\n")}\n`);
  process.exit(0);
}
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) {
  process.stderr.write(`bench: --rounds must be a positive integer, not "${values.rounds}"\n`);
  process.exit(2);
}
const soaks = positionals.filter((n) => SOAKS[n]);
const named = positionals.filter((n) => !SOAKS[n]);
const group = (g: string) => Object.keys(BENCHMARKS).filter((n) => n.startsWith(`${g}/`));
const names =
  named.length || soaks.length
    ? [...new Set(named.flatMap((n) => (BENCHMARKS[n] ? [n] : group(n).length ? group(n) : [n])))]
    : Object.keys(BENCHMARKS).filter((n) => !OPT_IN.has(n));
const unknown = names.filter((n) => !BENCHMARKS[n]);
if (unknown.length) {
  process.stderr.write(`bench: unknown benchmark ${unknown.join(", ")} (--list shows them)\n`);
  process.exit(2);
}

const results: BenchResult[] = [];
for (const name of names) {
  const b = (BENCHMARKS[name] as () => import("./harness").Benchmark)();
  process.stderr.write(`bench: ${name} `);
  results.push(...(await runBenchmark(b, rounds, () => process.stderr.write("."))));
  process.stderr.write("\n");
}
if (results.length) {
  if (values.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  else process.stdout.write(`${formatTable(results)}\n`);
}
for (const s of soaks) await (SOAKS[s] as (o: { json: boolean }) => Promise<void>)({ json: values.json });
