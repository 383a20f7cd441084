/** What the running agent knows about itself beyond the store and the kernel, for `status`
 * and `/metrics`: when it started, how its reconcile runs went, the last warnings and errors
 * it logged, and the handles both read from. One per agent process; nothing here is kept
 * across restarts (the kernel's counters are, in their pinned maps). */

import type { ConsolaReporter, LogObject } from "consola";
import type { LoggedProblem, ReconcileRepair, ReconcileRun, VipView } from "../api/contract";
import type { Cluster } from "../cluster/cluster";
import type { Attachment } from "../datapath/attach";
import type { MapFill } from "../datapath/map-fill";
import type { ProbeReport } from "../datapath/probe";
import type { BgpSpeaker } from "../gateway/bgp/speaker";
import type { GroupStatus } from "../gateway/ha/service";
import { type ReconcileTrigger, TRIGGERS } from "../reconcile/loop";
import type { ReconcileReport } from "../reconcile/reconcile";
import type { Addressing } from "../services/addressing";
import type { Services } from "../services/services";
import type { SqliteStore } from "../store/sqlite";

export type { LoggedProblem, ReconcileRepair, ReconcileRun };

/** The last `max` warnings and errors, as a consola reporter sees them, and how many there
 * were in all. It counts every logger of the process once added as a sink (logging.ts). */
export class RecentLog {
  readonly #max: number;
  #items: LoggedProblem[] = [];
  readonly totals = { warn: 0, error: 0 };

  constructor(max = 20) {
    this.#max = max;
  }

  readonly reporter: ConsolaReporter = {
    log: (o: LogObject) => {
      // consola levels: 0 fatal and error, 1 warn; the rest is not a problem.
      if (o.level > 1) return;
      const message = o.args.map((a) => (a instanceof Error ? a.message : String(a))).join(" ");
      this.add(o.level === 1 ? "warn" : "error", message, o.tag || undefined, o.date);
    },
  };

  add(level: "warn" | "error", message: string, tag?: string, at: Date = new Date()): void {
    this.totals[level]++;
    this.#items.push({ at: at.toISOString(), level, tag: tag ?? null, message });
    if (this.#items.length > this.#max) this.#items.splice(0, this.#items.length - this.#max);
  }

  /** Oldest first. */
  list(): LoggedProblem[] {
    return [...this.#items];
  }
}

const perTrigger = (): Record<ReconcileTrigger, number> =>
  Object.fromEntries(TRIGGERS.map((t) => [t, 0])) as Record<ReconcileTrigger, number>;

/** Every reconcile run goes through here: its trigger, its duration, what it restored and
 * changed, and its errors. */
export class ReconcileLog {
  runs = 0;
  /** Errors over all runs (a run that threw counts one). */
  errors = 0;
  last: ReconcileRun | undefined;
  /** Runs by what made them. */
  readonly byTrigger = perTrigger();
  /** Runs that changed the kernel (repaired drift), by what made them. */
  readonly repairs = perTrigger();
  /** Kernel changes made, by what made the run. */
  readonly changes = perTrigger();
  lastRepair: ReconcileRepair | undefined;

  run(fn: () => ReconcileReport, trigger: ReconcileTrigger = "api"): ReconcileReport {
    const at = new Date();
    const t0 = performance.now();
    let report: ReconcileReport | undefined;
    let thrown: unknown;
    try {
      report = fn();
      return report;
    } catch (e) {
      thrown = e;
      throw e;
    } finally {
      const errors = report?.errors ?? [`reconcile failed: ${(thrown as Error)?.message ?? String(thrown)}`];
      const durationMs = Math.round((performance.now() - t0) * 100) / 100;
      const changes = report?.changes ?? [];
      this.runs++;
      this.byTrigger[trigger]++;
      this.errors += errors.length;
      this.changes[trigger] += changes.length;
      if (changes.length) {
        this.repairs[trigger]++;
        this.lastRepair = { at: at.toISOString(), trigger, durationMs, changes };
      }
      this.last = {
        at: at.toISOString(),
        trigger,
        durationMs,
        networks: report?.networks ?? 0,
        endpoints: report?.endpoints ?? 0,
        firewall: report?.firewall ?? { scopes: 0, adopted: 0, blocklistAdded: 0 },
        collected: report?.collected ?? [],
        errors,
        changes,
        ...(report?.only ? { only: report.only } : {}),
        pass: report?.pass ?? "whole",
        ...(report?.wholeBecause ? { wholeBecause: report.wholeBecause } : {}),
      };
    }
  }
}

export interface UplinkRuntime {
  name: string;
  ifindex: number;
  /** The XDP attachment as made at start-up (its mode does not change while attached). */
  attach: Attachment;
}

/** Everything status and metrics read. */
export interface AgentRuntime {
  version: string;
  startedAt: Date;
  probe: ProbeReport;
  pinRoot: string;
  stateDir: string;
  dbPath: string;
  svc: Services;
  store: SqliteStore;
  uplink?: UplinkRuntime;
  reconcile: ReconcileLog;
  /** The loop that keeps the kernel reconciled (absent in tools that run without one). */
  loop?: { state: { events: boolean; intervalSeconds: number; drift: string[] } };
  recent: RecentLog;
  mapFill: MapFill;
  /** DHCP, router advertisements and DHCPv6, DNS (absent in tools that run without them). */
  addressing?: Addressing;
  /** A cluster node's part in the cluster (absent on a single node). */
  cluster?: Cluster;
  /** A cluster node's underlay address: its overlay's local VTEP (absent on a single node). */
  overlayAddress?: string;
  /** A gateway's BGP speaker (absent on another agent). */
  bgp?: BgpSpeaker;
  /** A gateway cluster node's HA engine. */
  ha?: { status(): GroupStatus[] | Promise<GroupStatus[]> };
  /** The load balancer (absent in tools that run without one). */
  lb?: { vips(): VipView[] };
}
