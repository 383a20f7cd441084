/** One node at scale (docs/benchmarks.md#one-node-at-scale), against a real agent: tap endpoints
 * (a VM's tap each, no namespace to make) attached through the API into one /16.
 *
 * scale/attach: the attach that brings the node to N endpoints (the median of 11 around it),
 * at N = 100, 1,000, 1,020 (past cnv-user-br0's last port: extension bridges from 1,007 on,
 * docs/networks.md#capacity) and 4,000, against the same attach on an empty network.
 * scale/reconcile-noop: an API reconcile with nothing to repair at 4,000 endpoints (quick:
 * nothing touched the ports since the last whole run; docs/operations.md#quick-reconcile),
 * against one with none; scale/reconcile-full: the same with --full (every port checked). scale/rss-per-endpoint: the agent's RSS growth per endpoint from 100 to 4,000
 * (KiB), against the growth per endpoint of the same count in its store alone. */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { BenchAgent } from "./agent";
import type { Benchmark } from "./harness";

const AROUND = 11;

function rssKiB(pid: number): number {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) : Number.NaN;
}

/** The agent's own pid (the bench spawns it through nsenter, which execs it). */
function agentPid(a: BenchAgent): number {
  return a.proc?.pid as number;
}

async function attachMs(a: BenchAgent, name: string): Promise<number> {
  const t0 = performance.now();
  await a.api.attach("s16", { name, tap: `t${name}` });
  return performance.now() - t0;
}

function scaleBench(): Benchmark {
  const agent = new BenchAgent();
  let n = 0;
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1] as number;
  /** Attaches until the node has `upto` endpoints; returns the attaches' times around the end. */
  const fill = async (upto: number): Promise<number[]> => {
    const t: number[] = [];
    while (n < upto) {
      const ms = await attachMs(agent, `e${n}`);
      n++;
      if (n > upto - AROUND) t.push(ms);
    }
    return t;
  };
  let figures: Record<string, number> = {};
  let base: Record<string, number> = {};
  return {
    name: "scale",
    unit: "ms",
    rows: [
      {
        name: "scale/attach-at-100",
        unit: "ms",
        figure: "attach100",
        candidate: "API attach of a tap, the 90th to 100th endpoint",
        baseline: "the first attaches (1 to 11)",
      },
      {
        name: "scale/attach-at-1000",
        unit: "ms",
        figure: "attach1000",
        candidate: "the same, 990th to 1,000th",
        baseline: "the first attaches (1 to 11)",
      },
      {
        name: "scale/attach-at-1020",
        unit: "ms",
        figure: "attach1020",
        candidate: "the same, 1,010th to 1,020th (the first on an extension bridge)",
        baseline: "the first attaches (1 to 11)",
      },
      {
        name: "scale/attach-at-4000",
        unit: "ms",
        figure: "attach4000",
        candidate: "the same, 3,990th to 4,000th (on cnv-user-br3)",
        baseline: "the first attaches (1 to 11)",
      },
      {
        name: "scale/attach-4000-vs-100",
        unit: "ms",
        figure: "attach4000vs100",
        candidate: "the 3,990th to 4,000th attach",
        baseline: "the 90th to 100th (goal: within 1.2x)",
      },
      {
        name: "scale/reconcile-noop-4000",
        unit: "ms",
        figure: "reconcile",
        candidate: "API reconcile, nothing to repair, 4,000 endpoints on 4 bridges (a quick pass)",
        baseline: "the same, no endpoint",
      },
      {
        name: "scale/reconcile-full-4000",
        unit: "ms",
        figure: "reconcileFull",
        candidate: "API reconcile --full (every port checked), nothing to repair, 4,000 endpoints",
        baseline: "the same, no endpoint",
      },
      {
        name: "scale/rss-per-endpoint",
        unit: "KiB",
        figure: "rssPerEp",
        candidate: "the agent's RSS growth per endpoint, 100 to 4,000",
        baseline: "the store's growth per endpoint (its file)",
      },
    ],
    async setup() {
      await agent.start();
      await agent.api.createNetwork({ name: "s16", cidr: "10.80.0.0/16", gateway: "10.80.0.1" });
      /** Five API reconciles' times (after one that seals the kernel for the quick ones);
       * each must have been the pass asked for. */
      const reconciles = async (full: boolean): Promise<number[]> => {
        await agent.api.reconcile({ full: true });
        const t: number[] = [];
        for (let i = 0; i < 5; i++) {
          const t0 = performance.now();
          const r = await agent.api.reconcile({ full });
          t.push(performance.now() - t0);
          if (r.pass !== (full ? "whole" : "quick") || r.changes.length)
            throw new Error(
              `reconcile ${i}: a ${r.pass} pass (${r.wholeBecause ?? ""}), ${r.changes.length} change(s)`,
            );
        }
        return t;
      };
      const reconcile0 = await reconciles(false);
      const reconcileFull0 = await reconciles(true);
      const db = join(agent.dir, "state", "stratum.db");
      const wal = `${db}-wal`;
      const size = () => statSync(db).size + (statSync(wal, { throwIfNoEntry: false })?.size ?? 0);
      const db0 = size();
      const first = await fill(AROUND);
      const a100 = await fill(100);
      // From the 100th: the agent's start-up garbage, freed or not by then, is not the endpoints'.
      const rss100 = rssKiB(agentPid(agent));
      const a1000 = await fill(1000);
      const a1020 = await fill(1020);
      const a4000 = await fill(4000);
      const rss4000 = rssKiB(agentPid(agent));
      const db4000 = size();
      const rec = await reconciles(false);
      const recFull = await reconciles(true);
      figures = {
        attach100: median(a100),
        attach1000: median(a1000),
        attach1020: median(a1020),
        attach4000: median(a4000),
        attach4000vs100: median(a4000),
        reconcile: median(rec),
        reconcileFull: median(recFull),
        rssPerEp: (rss4000 - rss100) / 3900,
      };
      base = {
        attach100: median(first),
        attach1000: median(first),
        attach1020: median(first),
        attach4000: median(first),
        attach4000vs100: median(a100),
        reconcile: median(reconcile0),
        reconcileFull: median(reconcileFull0),
        rssPerEp: (db4000 - db0) / 1024 / 4000,
      };
    },
    teardown() {
      agent.stop();
    },
    // One fill is the measurement: the rounds report the same figures.
    candidate: { label: "see rows", measure: () => figures },
    baseline: { label: "see rows", measure: () => base },
  };
}

export const SCALE_BENCHMARKS: Record<string, () => Benchmark> = {
  scale: scaleBench,
};
