/** The metrics rendering and the agent's own records, without a kernel: a snapshot becomes
 * exposition text a real parser reads back to the same numbers and labels (escapes
 * included), series of things that are gone disappear, concurrent scrapes read once; the
 * firewall's counter names follow the C enum; the recent-problems ring and the reconcile
 * record keep what status shows. */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createApp } from "../../src/api/app";
import { formatBytes, formatDuration } from "../../src/cli/status-command";
import { FW_STATS } from "../../src/datapath/firewall-maps";
import { AgentMetrics, type MetricsSnapshot } from "../../src/observe/metrics";
import { RecentLog, ReconcileLog } from "../../src/observe/runtime";
import { fillWarnings } from "../../src/observe/status";
import type { ReconcileReport } from "../../src/reconcile/reconcile";
import { ROOT } from "../helpers/netns";
import { metricValue, parseExposition } from "../helpers/prom";

function snapshot(over: Partial<MetricsSnapshot> = {}): MetricsSnapshot {
  return {
    agent: {
      version: '0.1.0-"odd"\\build\nline',
      kernel: "6.18.0",
      libbpf: "v1.1",
      startTimeSeconds: 1_700_000_000.5,
      rssBytes: 80_000_000,
      healthy: true,
      logTotals: { warn: 2, error: 1 },
    },
    endpoints: [
      {
        network: "app",
        endpoint: "web-1",
        fromEndpoint: { packets: 10, bytes: 980 },
        toEndpoint: { packets: 7, bytes: 686 },
      },
      {
        network: "app",
        endpoint: "web-2",
        fromEndpoint: { packets: 2 ** 40, bytes: 2 ** 50 },
        toEndpoint: { packets: 0, bytes: 0 },
      },
    ],
    drops: [
      { network: "app", endpoint: "web-1", device: "stm0123456789", reason: "fw-default", packets: 3 },
      { network: "", endpoint: "", device: "upl0", reason: "blocklist", packets: 5 },
    ],
    rules: [{ scope: "app", ruleId: 7, priority: 100, action: "allow", packets: 4, bytes: 392 }],
    defaults: [
      { scope: "global", action: "allow", packets: 0, bytes: 0 },
      { scope: "app", action: "deny", packets: 3, bytes: 294 },
    ],
    lb: [
      {
        vip: "web",
        endpoint: "web-1",
        port: 8080,
        healthy: true,
        inTable: true,
        announced: true,
        flows: 9,
        packets: 63,
        bytes: 4200,
      },
      {
        vip: "web",
        endpoint: "web-2",
        port: 8080,
        healthy: false,
        inTable: false,
        announced: true,
        flows: 11,
        packets: 77,
        bytes: 5100,
      },
    ],
    microseg: {
      groups: 3,
      entries: [{ id: 4, from: "prod/web", to: "prod/db", action: "allow", packets: 6, bytes: 444 }],
      denied: { packets: 2, bytes: 120 },
    },
    caps: [
      {
        scope: "network",
        network: "app",
        endpoint: "",
        rate: 500_000_000,
        burst: 18_750_000,
        counts: { passed: { packets: 9, bytes: 9000 }, dropped: { packets: 2, bytes: 3000 } },
      },
      {
        scope: "endpoint",
        network: "app",
        endpoint: "web-1",
        rate: 8_000,
        burst: 131_072,
        counts: { passed: { packets: 5, bytes: 500 }, dropped: { packets: 3, bytes: 4200 } },
      },
      // Its device is gone: the cap, no bucket to read.
      { scope: "endpoint", network: "app", endpoint: "web-2", rate: 1_000_000, burst: 131_072 },
    ],
    firewall: Object.fromEntries(FW_STATS.map((s, i) => [s, i])),
    nat: { translated: 5, exhausted: 2 },
    monitor: { emitted: 1, paced: 2, "ring-full": 0 },
    maps: [
      { name: "stm_ports", type: "hash", capacity: 65536, entries: 2 },
      { name: "stm_fw_stats", type: "percpu_array", capacity: 8, entries: null },
    ],
    mapCountSeconds: 0.012,
    ports: { ok: 2, degraded: 0 },
    reconcile: {
      runs: 6,
      errors: 0,
      lastDurationSeconds: 0.0123,
      lastRunSeconds: 1_700_000_001,
      byTrigger: { start: 1, api: 1, event: 3, periodic: 1 },
      repairs: { start: 1, api: 0, event: 2, periodic: 1 },
      changes: { start: 5, api: 0, event: 4, periodic: 1 },
      lastRepairSeconds: 1_700_000_002,
    },
    ...over,
  };
}

describe("metrics rendering", () => {
  test("a snapshot renders to exposition text a real parser reads back exactly", async () => {
    const m = new AgentMetrics(async () => snapshot());
    const { contentType, body } = await m.scrape();
    expect(contentType).toStartWith("text/plain; version=0.0.4");
    const f = parseExposition(body);
    expect(f.get("stratum_agent_info")?.samples[0]?.labels.version).toBe('0.1.0-"odd"\\build\nline');
    const ep = { network: "app", endpoint: "web-1" };
    expect(metricValue(f, "stratum_endpoint_packets_total", { ...ep, direction: "from_endpoint" })).toBe(10);
    expect(metricValue(f, "stratum_endpoint_bytes_total", { ...ep, direction: "to_endpoint" })).toBe(686);
    expect(metricValue(f, "stratum_endpoint_packets_total", { endpoint: "web-2", direction: "from_endpoint" })).toBe(
      2 ** 40,
    );
    expect(metricValue(f, "stratum_drops_total", { ...ep, reason: "fw-default" })).toBe(3);
    expect(metricValue(f, "stratum_drops_total", { device: "upl0", reason: "blocklist" })).toBe(5);
    expect(f.get("stratum_drops_total")?.samples.find((s) => s.labels.device === "upl0")?.labels).toEqual({
      network: "",
      endpoint: "",
      device: "upl0",
      reason: "blocklist",
    });
    // A rule's series are its id's: its priority (which `rule move` changes) is a gauge of its own.
    expect(f.get("stratum_firewall_rule_hits_total")?.samples).toEqual([
      { labels: { scope: "app", rule_id: "7", action: "allow" }, value: 4 },
    ]);
    expect(f.get("stratum_firewall_rule_priority")?.samples).toEqual([
      { labels: { scope: "app", rule_id: "7" }, value: 100 },
    ]);
    expect(f.get("stratum_firewall_rule_priority")?.type).toBe("gauge");
    expect(metricValue(f, "stratum_firewall_rule_bytes_total", { rule_id: "7" })).toBe(392);
    expect(metricValue(f, "stratum_firewall_default_hits_total", { scope: "app", action: "deny" })).toBe(3);
    // Microsegmentation: one series per entry (its groups and action never change), and "none".
    expect(f.get("stratum_microseg_hits_total")?.samples).toEqual([
      { labels: { entry_id: "4", from: "prod/web", to: "prod/db", action: "allow" }, value: 6 },
      { labels: { entry_id: "none", from: "", to: "", action: "deny" }, value: 2 },
    ]);
    expect(metricValue(f, "stratum_microseg_bytes_total", { entry_id: "4" })).toBe(444);
    expect(metricValue(f, "stratum_microseg_groups", {})).toBe(3);
    const web = (endpoint: string) => ({ vip: "web", endpoint, port: "8080" });
    expect(metricValue(f, "stratum_lb_backend_healthy", web("web-1"))).toBe(1);
    expect(metricValue(f, "stratum_lb_backend_healthy", web("web-2"))).toBe(0);
    expect(metricValue(f, "stratum_lb_backend_in_table", web("web-2"))).toBe(0);
    expect(metricValue(f, "stratum_lb_backend_flows_total", web("web-2"))).toBe(11);
    expect(metricValue(f, "stratum_lb_backend_bytes_total", web("web-1"))).toBe(4200);
    const net = { scope: "network", network: "app", endpoint: "" };
    const web1 = { scope: "endpoint", network: "app", endpoint: "web-1" };
    expect(metricValue(f, "stratum_egress_cap_rate_bits", net)).toBe(500_000_000);
    expect(metricValue(f, "stratum_egress_cap_burst_bytes", net)).toBe(18_750_000);
    expect(metricValue(f, "stratum_egress_cap_rate_bits", web1)).toBe(8_000);
    expect(metricValue(f, "stratum_egress_cap_packets_total", { ...net, verdict: "dropped" })).toBe(2);
    expect(metricValue(f, "stratum_egress_cap_bytes_total", { ...net, verdict: "passed" })).toBe(9000);
    expect(metricValue(f, "stratum_egress_cap_packets_total", { ...web1, verdict: "passed" })).toBe(5);
    expect(metricValue(f, "stratum_egress_cap_bytes_total", { ...web1, verdict: "dropped" })).toBe(4200);
    expect(metricValue(f, "stratum_egress_cap_rate_bits", { endpoint: "web-2" })).toBe(1_000_000);
    expect(f.get("stratum_egress_cap_packets_total")?.samples.some((s) => s.labels.endpoint === "web-2")).toBe(false);
    expect(f.get("stratum_egress_cap_packets_total")?.type).toBe("counter");
    expect(f.get("stratum_egress_cap_rate_bits")?.type).toBe("gauge");
    expect(metricValue(f, "stratum_firewall_stats_total", { stat: "log-lost" })).toBe(7);
    expect(metricValue(f, "stratum_nat_events_total", { event: "exhausted" })).toBe(2);
    expect(metricValue(f, "stratum_monitor_events_total", { outcome: "paced" })).toBe(2);
    expect(metricValue(f, "stratum_map_entries", { map: "stm_ports" })).toBe(2);
    expect(f.get("stratum_map_entries")?.samples.map((s) => s.labels.map)).toEqual(["stm_ports"]); // arrays: no fill
    expect(metricValue(f, "stratum_map_capacity", { map: "stm_fw_stats" })).toBe(8);
    expect(metricValue(f, "stratum_reconcile_duration_seconds")).toBe(0.0123);
    expect(metricValue(f, "stratum_reconcile_runs_total")).toBe(6);
    expect(f.get("stratum_reconcile_runs_total")?.samples).toEqual([
      { labels: { trigger: "start" }, value: 1 },
      { labels: { trigger: "api" }, value: 1 },
      { labels: { trigger: "event" }, value: 3 },
      { labels: { trigger: "periodic" }, value: 1 },
    ]);
    expect(metricValue(f, "stratum_reconcile_drift_repairs_total", { trigger: "event" })).toBe(2);
    expect(metricValue(f, "stratum_reconcile_changes_total", { trigger: "start" })).toBe(5);
    expect(metricValue(f, "stratum_reconcile_last_repair_timestamp_seconds")).toBe(1_700_000_002);
    expect(metricValue(f, "stratum_agent_log_messages_total", { level: "error" })).toBe(1);
    expect(metricValue(f, "stratum_agent_start_time_seconds")).toBe(1_700_000_000.5);
    expect(f.get("stratum_endpoint_packets_total")?.type).toBe("counter");
    expect(f.get("stratum_map_entries")?.type).toBe("gauge");
    for (const name of f.keys()) expect(name).toStartWith("stratum_");
  });

  test("series of an endpoint that is gone disappear at the next scrape", async () => {
    let snap = snapshot();
    const m = new AgentMetrics(async () => snap);
    parseExposition((await m.scrape()).body);
    snap = snapshot({ endpoints: [], drops: [], rules: [], caps: [] });
    const f = parseExposition((await m.scrape()).body);
    expect(f.get("stratum_egress_cap_rate_bits")?.samples).toEqual([]);
    expect(f.get("stratum_egress_cap_packets_total")?.samples).toEqual([]);
    expect(f.get("stratum_endpoint_packets_total")?.samples).toEqual([]);
    expect(f.get("stratum_drops_total")?.samples).toEqual([]);
    expect(f.get("stratum_firewall_rule_hits_total")?.samples).toEqual([]);
  });

  test("concurrent scrapes share one read; the next scrape reads again", async () => {
    let reads = 0;
    const m = new AgentMetrics(async () => {
      reads++;
      await Bun.sleep(20);
      return snapshot();
    });
    const [a, b] = await Promise.all([m.scrape(), m.scrape()]);
    expect(reads).toBe(1);
    expect(a.body).toBe(b.body);
    await m.scrape();
    expect(reads).toBe(2);
  });

  test("a failing read fails the scrape and the next one reads again", async () => {
    let fail = true;
    const m = new AgentMetrics(async () => {
      if (fail) throw new Error("map gone");
      return snapshot();
    });
    await expect(m.scrape()).rejects.toThrow("map gone");
    fail = false;
    expect(parseExposition((await m.scrape()).body).size).toBeGreaterThan(10);
  });

  test("GET /metrics serves a scrape with the exposition content type; no provider, no route", async () => {
    const m = new AgentMetrics(async () => snapshot());
    const app = createApp({ fw: {} } as never, {
      status: async () => ({ health: { status: "ok" } }),
      metrics: () => m.scrape(),
    });
    const r = await app.request("/metrics");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    expect(metricValue(parseExposition(await r.text()), "stratum_map_entries", { map: "stm_ports" })).toBe(2);
    expect(await (await app.request("/v1/status")).json()).toEqual({ health: { status: "ok" } });
    const bare = createApp({ fw: {} } as never);
    expect((await bare.request("/metrics")).status).toBe(404);
  });

  test("the parser helper rejects what a strict scraper would", () => {
    expect(() => parseExposition('# HELP x_total x\n# TYPE x_total counter\nx_total{a="b} 1\n')).toThrow();
    expect(() => parseExposition("# HELP x x\n# TYPE x counter\nx 1\n")).toThrow("_total");
    expect(() => parseExposition("# HELP x x\n# TYPE x gauge\nx 1\nx 2\n")).toThrow("sample lines"); // the parser merges them
    expect(() => parseExposition("# HELP x x\n# TYPE x gauge\nx abc\n")).toThrow("malformed");
  });
});

test("the firewall's counter names follow enum stm_fw_stat in stm_abi.h", () => {
  const h = readFileSync(join(ROOT, "bpf/include/stm_abi.h"), "utf8");
  const body = h.match(/enum stm_fw_stat \{([\s\S]*?)\};/)?.[1] ?? "";
  const entries = [...body.matchAll(/STM_FW_STAT_(\w+)\s*=\s*(\d+)/g)].map((m) => [m[1] as string, Number(m[2])]);
  const max = entries.find(([n]) => n === "MAX")?.[1];
  expect(max).toBe(FW_STATS.length);
  // Each C name, lower-cased with dashes, ends with the TypeScript name (CT_NEW: ct-new, CT_CUT: cut).
  for (const [name, i] of entries.filter(([n]) => n !== "MAX"))
    expect((name as string).toLowerCase().replaceAll("_", "-")).toEndWith(FW_STATS[i as number] as string);
});

describe("the agent's records", () => {
  test("the recent-problems ring keeps the last N warnings and errors and counts them all", () => {
    const r = new RecentLog(3);
    const log = (level: number, ...args: unknown[]) =>
      r.reporter.log({ level, type: "x", tag: "agent", args, date: new Date(0) } as never, {} as never);
    log(3, "info is not a problem");
    for (let i = 0; i < 5; i++) log(1, `warn ${i}`);
    log(0, new Error("boom"));
    expect(r.totals).toEqual({ warn: 5, error: 1 });
    expect(r.list().map((p) => `${p.level} ${p.message}`)).toEqual(["warn warn 3", "warn warn 4", "error boom"]);
    expect(r.list()[0]).toMatchObject({ tag: "agent", at: "1970-01-01T00:00:00.000Z" });
  });

  test("reconcile runs are timed and their errors counted, a run that throws included", () => {
    const rec = new ReconcileLog();
    const report: ReconcileReport = {
      networks: 2,
      endpoints: 3,
      firewall: { scopes: 3, adopted: 1, blocklistAdded: 0 },
      collected: ["port entry of ifindex 9"],
      errors: ["endpoint x: namespace gone"],
      pass: "whole",
      changes: ["update map stm_ports"],
    };
    expect(rec.run(() => report, "start")).toBe(report);
    expect(rec.last).toMatchObject({
      trigger: "start",
      networks: 2,
      endpoints: 3,
      errors: ["endpoint x: namespace gone"],
      changes: ["update map stm_ports"],
    });
    expect(rec.last?.durationMs).toBeGreaterThanOrEqual(0);
    expect(() =>
      rec.run(() => {
        throw new Error("netlink down");
      }),
    ).toThrow("netlink down");
    expect(rec.runs).toBe(2);
    expect(rec.errors).toBe(2);
    expect(rec.last?.errors).toEqual(["reconcile failed: netlink down"]);
    expect(rec.last?.trigger).toBe("api"); // the default: a run someone asked for
    // Runs by trigger; those that changed the kernel are repairs, the last one kept.
    rec.run(() => ({ ...report, errors: [], changes: [] }), "periodic");
    rec.run(() => ({ ...report, errors: [], changes: ["change link stm0 (up)", "add FDB entry x"] }), "event");
    rec.run(() => ({ ...report, errors: [], changes: [] }), "event");
    expect(rec.byTrigger).toEqual({ start: 1, api: 1, event: 2, periodic: 1, cluster: 0 });
    expect(rec.repairs).toEqual({ start: 1, api: 0, event: 1, periodic: 0, cluster: 0 });
    expect(rec.changes).toEqual({ start: 1, api: 0, event: 2, periodic: 0, cluster: 0 });
    expect(rec.lastRepair).toMatchObject({ trigger: "event", changes: ["change link stm0 (up)", "add FDB entry x"] });
    expect(rec.last?.changes).toEqual([]);
  });

  test("fill warnings: hash tables at 90% and more, never LRU tables or arrays", () => {
    const m = (name: string, type: string, entries: number | null, capacity = 100) => ({
      name,
      type,
      keySize: 4,
      valueSize: 4,
      capacity,
      entries,
    });
    expect(
      fillWarnings([
        m("a", "hash", 89),
        m("b", "hash", 90),
        m("c", "lru_hash", 100),
        m("d", "percpu_array", null),
        m("e", "lpm_trie", 100),
      ]),
    ).toEqual(["map b is 90% full (90 of 100)", "map e is 100% full (100 of 100)"]);
  });

  test("status formatting", () => {
    expect(formatDuration(0)).toBe("0s");
    expect(formatDuration(3723)).toBe("1h 2m 3s");
    expect(formatDuration(86400 + 60)).toBe("1d 1m");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
  });
});
