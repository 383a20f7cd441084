/** The CLI's own start (docs/benchmarks.md#cli-start): what a command costs before it does
 * anything, as an operator's script calling it in a loop feels it.
 *
 * cli/start-version: `cenvero-str-ctl version` (no agent: the binary, libbpf and the kernel's
 * features), cli/start-network-list: `network list` against a running agent with one network;
 * each the median wall time of a process, spawn to exit. The baseline of both: a bare Bun
 * process, an empty program compiled the same way (`bun build --compile`), the runtime's own
 * start on this machine.
 * cli/start-bytecode: `version` of this binary against the same sources compiled without
 * --bytecode (built by the benchmark's set-up): what the bytecode saves. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BenchAgent } from "./agent";
import type { Benchmark } from "./harness";
import { BINARY, ROOT, sh } from "./harness";

const RUNS = 15;

/** The median wall time (ms) of RUNS processes of `cmd`. */
function startMs(cmd: string[]): number {
  const t: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const r = Bun.spawnSync(cmd, { stdout: "ignore", stderr: "pipe" });
    t.push(performance.now() - t0);
    if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: exit ${r.exitCode}: ${r.stderr.toString()}`);
  }
  t.sort((a, b) => a - b);
  return t[RUNS >> 1] as number;
}

/** An empty program compiled as the binary is: the runtime's start alone. */
function bareBun(dir: string): string {
  writeFileSync(join(dir, "empty.ts"), "process.exitCode = 0;\n");
  const out = join(dir, "empty");
  sh([
    join(ROOT, "node_modules/.bin/bun"),
    "build",
    "--compile",
    "--bytecode",
    join(dir, "empty.ts"),
    "--outfile",
    out,
  ]);
  return out;
}

function startBench(
  name: string,
  label: string,
  args: (agent?: BenchAgent) => string[],
  withAgent: boolean,
): Benchmark {
  let dir = "";
  let bare = "";
  let agent: BenchAgent | undefined;
  return {
    name,
    unit: "ms",
    async setup() {
      dir = mkdtempSync(join(tmpdir(), "stm-bench-cli-"));
      bare = bareBun(dir);
      if (withAgent) {
        agent = new BenchAgent();
        await agent.start();
        await agent.api.createNetwork({ name: "n1", cidr: "10.77.0.0/24", gateway: "10.77.0.1" });
      }
    },
    teardown() {
      agent?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
    candidate: { label, measure: () => startMs([BINARY, ...args(agent)]) },
    baseline: { label: "a bare Bun process (an empty program, compiled the same way)", measure: () => startMs([bare]) },
  };
}

/** The same sources compiled as scripts/build does, but without --bytecode. */
function withoutBytecode(dir: string): string {
  const out = join(dir, "no-bytecode");
  sh([
    join(ROOT, "node_modules/.bin/bun"),
    "build",
    "--compile",
    "--minify-syntax",
    join(ROOT, "src/main.ts"),
    join(ROOT, "src/cluster/etcd-worker.ts"),
    "--outfile",
    out,
  ]);
  return out;
}

function bytecodeBench(): Benchmark {
  let dir = "";
  let plain = "";
  return {
    name: "cli/start-bytecode",
    unit: "ms",
    setup() {
      dir = mkdtempSync(join(tmpdir(), "stm-bench-cli-"));
      plain = withoutBytecode(dir);
    },
    teardown() {
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
    candidate: { label: "cenvero-str-ctl version (this build: bytecode)", measure: () => startMs([BINARY, "version"]) },
    baseline: { label: "the same sources compiled without --bytecode", measure: () => startMs([plain, "version"]) },
  };
}

export const CLI_BENCHMARKS: Record<string, () => Benchmark> = {
  "cli/start-version": () =>
    startBench("cli/start-version", "cenvero-str-ctl version (no agent)", () => ["version"], false),
  "cli/start-network-list": () =>
    startBench(
      "cli/start-network-list",
      "cenvero-str-ctl network list (an agent, one network)",
      (a) => ["network", "list", "--api-socket", (a as BenchAgent).sock],
      true,
    ),
  "cli/start-bytecode": bytecodeBench,
};
