/** Prometheus metrics of the agent (GET /metrics, text exposition format): per-endpoint
 * packets, bytes and drops by reason, uplink drops, firewall rule and default hits, the
 * firewall's and the monitor's own counters, egress caps and their buckets, map fill
 * levels, port health, reconcile runs (by trigger) and the drift they repaired, the agent
 * itself and, on a cluster node, its part in the cluster. A rule's series are labelled by
 * its id, never its priority: `rule move` keeps them. Everything is read at scrape time from the pinned maps, the store and the agent's
 * records; nothing is sampled in between (the kernel's counters are the state, and they
 * survive agent restarts in their pinned maps). A scrape reads one snapshot, then
 * prom-client renders it; concurrent scrapes share one read. Names are `stratum_…`; a
 * counter's series appears once the kernel has counted something for it. */

import { Counter, Gauge, Registry } from "prom-client";
import type { NodeState } from "../cluster/cluster";
import { readStatArray } from "../datapath/counters";
import { dropReasonName } from "../datapath/drops";
import { FW_GLOBAL_SCOPE, FW_STATS } from "../datapath/firewall-maps";
import { readMonStats } from "../datapath/monitor-ring";
import { type BucketCounts, SHAPE_KIND } from "../datapath/shape-maps";
import type { PeerStatusView } from "../gateway/bgp/speaker";
import type { GroupStatus } from "../gateway/ha/service";
import type { EgressCap } from "../model/egress-cap";
import { MSEG } from "../model/microseg";
import type { AddressingStats } from "../services/addressing";
import { GLOBAL_SCOPE_NAME } from "../services/firewall-service";
import { localEndpoints } from "../store/store";
import { nodeCounts } from "./cluster";
import type { AgentRuntime } from "./runtime";
import { buildStatus } from "./status";

export interface PacketsBytes {
  packets: number;
  bytes: number;
}

/** What one scrape reports; plain data, so the rendering is testable without a kernel. */
export interface MetricsSnapshot {
  agent: {
    version: string;
    kernel: string;
    libbpf: string;
    startTimeSeconds: number;
    rssBytes: number;
    healthy: boolean;
    logTotals: { warn: number; error: number };
  };
  endpoints: Array<{ network: string; endpoint: string; fromEndpoint: PacketsBytes; toEndpoint: PacketsBytes }>;
  /** Per device and reason; endpoint rows carry network and endpoint, the uplink's only its device. */
  drops: Array<{ network: string; endpoint: string; device: string; reason: string; packets: number }>;
  rules: Array<{ scope: string; ruleId: number; priority: number; action: string } & PacketsBytes>;
  defaults: Array<{ scope: string; action: string } & PacketsBytes>;
  /** Microsegmentation: every policy entry's hits on this node, and what no entry decided. */
  microseg: {
    groups: number;
    entries: Array<{ id: number; from: string; to: string; action: string } & PacketsBytes>;
    denied: PacketsBytes;
  };
  /** Every VIP's backends on this node: health, whether in the table, what was sent to them. */
  lb: Array<{
    vip: string;
    endpoint: string;
    port: number;
    healthy: boolean;
    inTable: boolean;
    announced: boolean;
    flows: number;
    packets: number;
    bytes: number;
  }>;
  /** Every egress cap the store holds: its rate (bit/s) and burst (bytes), and what its
   * bucket passed and dropped. A network's row has endpoint "". An endpoint's bucket is
   * keyed by its port's ifindex: one whose device is gone has no counts. */
  caps: Array<{ scope: "network" | "endpoint"; network: string; endpoint: string; counts?: BucketCounts } & EgressCap>;
  /** stm_fw_stats by name (FW_STATS). */
  firewall: Record<string, number>;
  /** stm_nat_stats by name (NAT_STATS). */
  nat: Record<string, number>;
  /** stm_mon_stats by outcome (emitted, paced, ring-full). */
  monitor: Record<string, number>;
  /** entries: null for arrays and ring buffers. */
  maps: Array<{ name: string; type: string; capacity: number; entries: number | null }>;
  mapCountSeconds: number;
  ports: { ok: number; degraded: number };
  reconcile: {
    runs: number;
    errors: number;
    lastDurationSeconds?: number;
    lastRunSeconds?: number;
    /** Runs, runs that changed the kernel, and the changes they made, by trigger (start, api, event, periodic). */
    byTrigger: Record<string, number>;
    repairs: Record<string, number>;
    changes: Record<string, number>;
    lastRepairSeconds?: number;
  };
  /** The DHCP, IPv6 and DNS servers' counters (absent when the agent runs none). */
  addressing?: AddressingStats;
  /** A cluster node's part in its cluster (absent on a single node). */
  cluster?: ClusterCounters;
  /** A gateway's BGP sessions (absent on another agent). */
  bgp?: PeerStatusView[];
  /** A gateway's part in its gateway groups (absent on another agent). */
  ha?: GroupStatus[];
}

export interface ClusterCounters {
  /** The watch on etcd is connected. */
  up: boolean;
  /** Revisions seen by the watch and not yet in the mirror. */
  lag: number;
  resyncs: number;
  events: number;
  /** Lease keep-alives that failed. */
  missed: number;
  /** Writes refused because etcd did not answer. */
  writesRefused: number;
  /** The cluster's nodes by state. */
  nodes: Record<NodeState, number>;
}

/** Milliseconds as seconds without binary-fraction noise (0.00969, not 0.009689999999999999). */
const seconds = (ms: number) => Number((ms / 1000).toFixed(6));

const sumU64 = (vals: Buffer[] | null, off = 0) => (vals ?? []).reduce((a, v) => a + Number(v.readBigUInt64LE(off)), 0);

/** Reads everything a scrape reports. The map walk yields to the event loop; the rest is a
 * handful of lookups per endpoint and rule. */
export async function readSnapshot(rt: AgentRuntime): Promise<MetricsSnapshot> {
  const st = await buildStatus(rt);
  const dp = rt.svc.dp;
  const kernel = rt.svc.firewall.kernel;

  const where = new Map<number, { network: string; endpoint: string; device: string }>();
  const endpoints: MetricsSnapshot["endpoints"] = [];
  for (const p of st.ports) {
    if (p.ifindex === null) continue;
    where.set(p.ifindex, { network: p.network, endpoint: p.endpoint, device: p.interface });
    const s = dp.portStats(p.ifindex);
    if (s) endpoints.push({ network: p.network, endpoint: p.endpoint, ...s });
  }
  if (st.uplink) where.set(st.uplink.ifindex, { network: "", endpoint: "", device: st.uplink.name });
  if (st.overlay?.ifindex) where.set(st.overlay.ifindex, { network: "", endpoint: "", device: st.overlay.device });
  const under = st.overlay?.underlay;
  if (under) where.set(under.ifindex, { network: "", endpoint: "", device: under.name ?? `ifindex ${under.ifindex}` });

  // One walk of the drop table (only counted (device, reason) pairs have entries) rather
  // than a lookup per endpoint and reason. Entries of devices no longer known are stale.
  const drops: MetricsSnapshot["drops"] = [];
  const dropMap = dp.map("stm_drops");
  for (const [k, v] of dropMap.entries()) {
    const w = where.get(k.readUInt32LE(0));
    if (!w) continue;
    drops.push({ ...w, reason: dropReasonName(k.readUInt32LE(4)), packets: sumU64(dropMap.splitPerCpu(v)) });
  }

  const rules: MetricsSnapshot["rules"] = [];
  const defaults: MetricsSnapshot["defaults"] = [];
  const scopes = [
    { id: FW_GLOBAL_SCOPE, name: GLOBAL_SCOPE_NAME, def: rt.store.getGlobalDefault() as string },
    ...rt.store.listNetworks().map((n) => ({ id: n.id, name: n.name, def: n.defaultAction as string })),
  ];
  for (const s of scopes) {
    for (const r of rt.store.listRules(s.id))
      rules.push({ scope: s.name, ruleId: r.id, priority: r.priority, action: r.action, ...kernel.hits(r.id) });
    defaults.push({ scope: s.name, action: s.def, ...kernel.defaultHits(s.id) });
  }

  const caps: MetricsSnapshot["caps"] = [];
  for (const n of rt.store.listNetworks())
    if (n.egress)
      caps.push({
        scope: "network",
        network: n.name,
        endpoint: "",
        ...n.egress,
        counts: dp.capCounts(SHAPE_KIND.NETWORK, n.id),
      });
  const ifindexOf = new Map(st.ports.map((p) => [p.endpoint, p.ifindex]));
  // Another node's endpoint is capped in that node's kernel, and counted in its metrics.
  for (const e of localEndpoints(rt.svc.store, undefined, rt.store)) {
    if (!e.egress) continue;
    const ifindex = ifindexOf.get(e.name);
    caps.push({
      scope: "endpoint",
      network: e.network,
      endpoint: e.name,
      ...e.egress,
      ...(ifindex ? { counts: dp.capCounts(SHAPE_KIND.ENDPOINT, ifindex) } : {}),
    });
  }

  const firewall: Record<string, number> = readStatArray(dp.map("stm_fw_stats"), FW_STATS);

  const mseg = rt.store.getMicroseg();
  const msegHits = rt.svc.microseg.tables.hits();
  const none = { packets: 0, bytes: 0 };
  const microseg: MetricsSnapshot["microseg"] = {
    groups: mseg.groups.length,
    entries: mseg.rules.map((r) => ({
      id: r.id,
      from: r.from,
      to: r.to,
      action: r.action,
      ...(msegHits.get(r.id) ?? none),
    })),
    denied: msegHits.get(MSEG.DEFAULT_ID) ?? none,
  };

  const lb: MetricsSnapshot["lb"] = (rt.lb?.vips() ?? []).flatMap((v) =>
    v.backends.map((b) => ({
      vip: v.name,
      endpoint: b.endpoint,
      port: b.port,
      healthy: b.health === "healthy" || b.health === "unchecked",
      inTable: b.inTable,
      announced: v.announced,
      ...b.hits,
    })),
  );

  const last = st.reconcile.last;
  const repair = st.reconcile.lastRepair;
  return {
    agent: {
      version: st.version,
      kernel: st.kernel,
      libbpf: st.libbpf,
      startTimeSeconds: rt.startedAt.getTime() / 1000,
      rssBytes: st.rssBytes,
      healthy: st.health.status === "ok",
      logTotals: st.logTotals,
    },
    endpoints,
    drops,
    rules,
    defaults,
    microseg,
    lb,
    caps,
    firewall,
    nat: dp.natStats(),
    monitor: readMonStats(dp.map("stm_mon_stats")),
    maps: st.maps.filter((m) => m.type !== "ringbuf"),
    mapCountSeconds: seconds(st.mapCountMs),
    ports: {
      ok: st.ports.filter((p) => p.state === "ok").length,
      degraded: st.ports.filter((p) => p.state !== "ok").length,
    },
    reconcile: {
      runs: st.reconcile.runs,
      errors: st.reconcile.errors,
      ...(last ? { lastDurationSeconds: seconds(last.durationMs), lastRunSeconds: Date.parse(last.at) / 1000 } : {}),
      byTrigger: st.reconcile.byTrigger,
      repairs: st.reconcile.repairs,
      changes: { ...rt.reconcile.changes },
      ...(repair ? { lastRepairSeconds: Date.parse(repair.at) / 1000 } : {}),
    },
    ...(rt.addressing ? { addressing: rt.addressing.stats() } : {}),
    ...(rt.cluster ? { cluster: { ...rt.cluster.counters, nodes: nodeCounts(rt.cluster.nodes()) } } : {}),
    ...(rt.bgp ? { bgp: rt.bgp.peers() } : {}),
    ...(rt.ha ? { ha: (await rt.ha.status()).filter((g) => g.role !== "none") } : {}),
  };
}

type Labels = Record<string, string | number>;
type Emit = (labels: Labels, value: number) => void;

export interface Scrape {
  contentType: string;
  body: string;
}

/** The registry and its metric families; `source` gives the snapshot of each scrape. */
export class AgentMetrics {
  readonly registry = new Registry();
  #snap: MetricsSnapshot | undefined;
  #inflight: Promise<Scrape> | undefined;

  /** `cluster`: the agent is a cluster node (the stratum_cluster_* families exist only there). */
  constructor(
    readonly source: () => Promise<MetricsSnapshot>,
    o: { cluster?: boolean; gateway?: boolean } = {},
  ) {
    this.#define();
    if (o.cluster) this.#defineCluster();
    if (o.gateway) this.#defineBgp();
    if (o.gateway && o.cluster) this.#defineHa();
  }

  /** One rendering of every family; a scrape that arrives while one runs gets its result. */
  scrape(): Promise<Scrape> {
    this.#inflight ??= (async () => {
      try {
        this.#snap = await this.source();
        return { contentType: this.registry.contentType, body: await this.registry.metrics() };
      } finally {
        this.#snap = undefined;
        this.#inflight = undefined;
      }
    })();
    return this.#inflight;
  }

  /** A family whose series are all rewritten from the snapshot at each scrape (series that
   * are gone, e.g. a detached endpoint's, disappear). */
  #family(
    kind: "counter" | "gauge",
    name: string,
    help: string,
    labelNames: string[],
    fill: (s: MetricsSnapshot, emit: Emit) => void,
  ): void {
    const registers = [this.registry];
    const collect = (m: Counter | Gauge) => {
      m.reset();
      const s = this.#snap;
      if (!s) return;
      fill(s, (labels, v) => {
        const l = Object.fromEntries(Object.entries(labels).map(([k, x]) => [k, String(x)]));
        if (m instanceof Counter) m.inc(l, v);
        else m.set(l, v);
      });
    };
    if (kind === "counter") {
      const c: Counter = new Counter({ name, help, labelNames, registers, collect: () => collect(c) });
    } else {
      const g: Gauge = new Gauge({ name, help, labelNames, registers, collect: () => collect(g) });
    }
  }

  #define(): void {
    const f = this.#family.bind(this);
    f(
      "gauge",
      "stratum_agent_info",
      "The agent's version, kernel and libbpf (value 1).",
      ["version", "kernel", "libbpf"],
      (s, e) => e({ version: s.agent.version, kernel: s.agent.kernel, libbpf: s.agent.libbpf }, 1),
    );
    f("gauge", "stratum_agent_start_time_seconds", "When the agent started, seconds since the epoch.", [], (s, e) =>
      e({}, s.agent.startTimeSeconds),
    );
    f("gauge", "stratum_agent_healthy", "1 when `status` says ok, 0 when degraded.", [], (s, e) =>
      e({}, s.agent.healthy ? 1 : 0),
    );
    f("gauge", "stratum_agent_resident_memory_bytes", "Resident memory of the agent process.", [], (s, e) =>
      e({}, s.agent.rssBytes),
    );
    f(
      "counter",
      "stratum_agent_log_messages_total",
      "Warnings and errors the agent logged since it started.",
      ["level"],
      (s, e) => {
        e({ level: "warn" }, s.agent.logTotals.warn);
        e({ level: "error" }, s.agent.logTotals.error);
      },
    );

    const dirs = (s: MetricsSnapshot, e: Emit, k: keyof PacketsBytes) => {
      for (const x of s.endpoints) {
        e({ network: x.network, endpoint: x.endpoint, direction: "from_endpoint" }, x.fromEndpoint[k]);
        e({ network: x.network, endpoint: x.endpoint, direction: "to_endpoint" }, x.toEndpoint[k]);
      }
    };
    const epLabels = ["network", "endpoint", "direction"];
    f(
      "counter",
      "stratum_endpoint_packets_total",
      "Packets the endpoint's port programs saw, by direction.",
      epLabels,
      (s, e) => dirs(s, e, "packets"),
    );
    f(
      "counter",
      "stratum_endpoint_bytes_total",
      "Bytes the endpoint's port programs saw, by direction.",
      epLabels,
      (s, e) => dirs(s, e, "bytes"),
    );
    f(
      "counter",
      "stratum_drops_total",
      "Packets the datapath dropped, by device and reason (the uplink's, the overlay device's and the underlay's rows have no network or endpoint).",
      ["network", "endpoint", "device", "reason"],
      (s, e) => {
        for (const d of s.drops)
          e({ network: d.network, endpoint: d.endpoint, device: d.device, reason: d.reason }, d.packets);
      },
    );

    // A rule is its id in its scope; its action never changes. Its priority does (`rule
    // move`): as a label it would start a new series each time, so it is a gauge of its own.
    const ruleLabels = ["scope", "rule_id", "action"];
    const rules = (s: MetricsSnapshot, e: Emit, k: keyof PacketsBytes) => {
      for (const r of s.rules) e({ scope: r.scope, rule_id: r.ruleId, action: r.action }, r[k]);
    };
    f(
      "gauge",
      "stratum_firewall_rule_priority",
      "A firewall rule's priority (lower first); join on scope and rule_id.",
      ["scope", "rule_id"],
      (s, e) => {
        for (const r of s.rules) e({ scope: r.scope, rule_id: r.ruleId }, r.priority);
      },
    );
    f(
      "counter",
      "stratum_firewall_rule_hits_total",
      "Packets a firewall rule decided (new flows; established ones pass on conntrack).",
      ruleLabels,
      (s, e) => rules(s, e, "packets"),
    );
    f(
      "counter",
      "stratum_firewall_rule_bytes_total",
      "Bytes of the packets a firewall rule decided.",
      ruleLabels,
      (s, e) => rules(s, e, "bytes"),
    );
    // A microsegmentation entry is its id; its groups and action never change.
    const msegLabels = ["entry_id", "from", "to", "action"];
    const msegEntries = (s: MetricsSnapshot, e: Emit, k: keyof PacketsBytes) => {
      for (const r of s.microseg.entries) e({ entry_id: r.id, from: r.from, to: r.to, action: r.action }, r[k]);
      e({ entry_id: "none", from: "", to: "", action: "deny" }, s.microseg.denied[k]);
    };
    f(
      "counter",
      "stratum_microseg_hits_total",
      "Packets a microsegmentation entry decided on this node (entry_id none: no entry applied, denied); flows let in count their first packet.",
      msegLabels,
      (s, e) => msegEntries(s, e, "packets"),
    );
    f(
      "counter",
      "stratum_microseg_bytes_total",
      "Bytes of the packets a microsegmentation entry decided on this node.",
      msegLabels,
      (s, e) => msegEntries(s, e, "bytes"),
    );
    f("gauge", "stratum_microseg_groups", "Microsegmentation groups in the policy.", [], (s, e) =>
      e({}, s.microseg.groups),
    );
    // A backend is its VIP, endpoint and port.
    const lbLabels = ["vip", "endpoint", "port"];
    const lbRows = (s: MetricsSnapshot, e: Emit, v: (b: MetricsSnapshot["lb"][number]) => number) => {
      for (const b of s.lb) e({ vip: b.vip, endpoint: b.endpoint, port: b.port }, v(b));
    };
    f(
      "gauge",
      "stratum_lb_backend_healthy",
      "1 while a load-balancer backend passes its checks (as this node knows it).",
      lbLabels,
      (s, e) => lbRows(s, e, (b) => (b.healthy ? 1 : 0)),
    );
    f("gauge", "stratum_lb_backend_in_table", "1 while a backend takes new flows on this node.", lbLabels, (s, e) =>
      lbRows(s, e, (b) => (b.inTable ? 1 : 0)),
    );
    f("counter", "stratum_lb_backend_flows_total", "Flows this node gave a backend.", lbLabels, (s, e) =>
      lbRows(s, e, (b) => b.flows),
    );
    f(
      "counter",
      "stratum_lb_backend_packets_total",
      "Packets this node sent a backend through its VIP.",
      lbLabels,
      (s, e) => lbRows(s, e, (b) => b.packets),
    );
    f(
      "counter",
      "stratum_lb_backend_bytes_total",
      "Bytes this node sent a backend through its VIP.",
      lbLabels,
      (s, e) => lbRows(s, e, (b) => b.bytes),
    );
    const defaults = (s: MetricsSnapshot, e: Emit, k: keyof PacketsBytes) => {
      for (const d of s.defaults) e({ scope: d.scope, action: d.action }, d[k]);
    };
    f(
      "counter",
      "stratum_firewall_default_hits_total",
      "Packets no rule matched, decided by the scope's default action.",
      ["scope", "action"],
      (s, e) => defaults(s, e, "packets"),
    );
    f(
      "counter",
      "stratum_firewall_default_bytes_total",
      "Bytes of the packets a scope's default action decided.",
      ["scope", "action"],
      (s, e) => defaults(s, e, "bytes"),
    );
    this.#defineCaps();
    f(
      "counter",
      "stratum_firewall_stats_total",
      "Firewall events: ct-new, ct-pickup, ct-full, revalidated, cut, frag-miss, reject-sent, log-lost.",
      ["stat"],
      (s, e) => {
        for (const [stat, v] of Object.entries(s.firewall)) e({ stat }, v);
      },
    );
    f(
      "counter",
      "stratum_nat_events_total",
      "Masquerading at the uplink: translated (new flows), exhausted (new flows refused, no free NAT port toward the destination; also the nat-exhausted drop), reclaimed (ports of ended flows reused), socket-skip (ports a socket of the node holds), icmp-error (ICMP errors translated), fragment (later fragments translated).",
      ["event"],
      (s, e) => {
        for (const [event, v] of Object.entries(s.nat)) e({ event }, v);
      },
    );
    f(
      "counter",
      "stratum_monitor_events_total",
      "Monitoring events: emitted to the ring, held back by the pace, or lost to a full ring.",
      ["outcome"],
      (s, e) => {
        for (const [outcome, v] of Object.entries(s.monitor)) e({ outcome }, v);
      },
    );

    f("gauge", "stratum_map_entries", "Entries in a pinned hash, LRU or LPM map.", ["map"], (s, e) => {
      for (const m of s.maps) if (m.entries !== null) e({ map: m.name }, m.entries);
    });
    f("gauge", "stratum_map_capacity", "max_entries of a pinned map (arrays are always full).", ["map"], (s, e) => {
      for (const m of s.maps) e({ map: m.name }, m.capacity);
    });
    f(
      "gauge",
      "stratum_map_count_duration_seconds",
      "How long counting the maps' entries took in this scrape.",
      [],
      (s, e) => e({}, s.mapCountSeconds),
    );
    f(
      "gauge",
      "stratum_ports",
      "Endpoint ports by state (degraded: a program, the configuration or the bridge is missing).",
      ["state"],
      (s, e) => {
        e({ state: "ok" }, s.ports.ok);
        e({ state: "degraded" }, s.ports.degraded);
      },
    );

    const byTrigger = (counts: Record<string, number>, e: Emit) => {
      for (const [trigger, v] of Object.entries(counts)) e({ trigger }, v);
    };
    f(
      "counter",
      "stratum_reconcile_runs_total",
      "Reconcile runs since the agent started, by trigger: start, api (a `reconcile`), event (rtnetlink notices of drift), periodic (the full pass).",
      ["trigger"],
      (s, e) => byTrigger(s.reconcile.byTrigger, e),
    );
    f(
      "counter",
      "stratum_reconcile_drift_repairs_total",
      "Reconcile runs that found the kernel differing from the store and changed it, by trigger.",
      ["trigger"],
      (s, e) => byTrigger(s.reconcile.repairs, e),
    );
    f(
      "counter",
      "stratum_reconcile_changes_total",
      "Kernel changes reconcile runs made, by trigger.",
      ["trigger"],
      (s, e) => byTrigger(s.reconcile.changes, e),
    );
    f(
      "gauge",
      "stratum_reconcile_last_repair_timestamp_seconds",
      "When the last run that changed the kernel started.",
      [],
      (s, e) => {
        if (s.reconcile.lastRepairSeconds !== undefined) e({}, s.reconcile.lastRepairSeconds);
      },
    );
    f(
      "counter",
      "stratum_reconcile_errors_total",
      "Errors reconcile runs reported since the agent started.",
      [],
      (s, e) => e({}, s.reconcile.errors),
    );
    f("gauge", "stratum_reconcile_duration_seconds", "Duration of the last reconcile run.", [], (s, e) => {
      if (s.reconcile.lastDurationSeconds !== undefined) e({}, s.reconcile.lastDurationSeconds);
    });
    this.#defineAddressing();
    f("gauge", "stratum_reconcile_last_run_timestamp_seconds", "When the last reconcile run started.", [], (s, e) => {
      if (s.reconcile.lastRunSeconds !== undefined) e({}, s.reconcile.lastRunSeconds);
    });
  }

  /** Egress caps: the configured rate and burst, and what each bucket passed and dropped
   * (its drops are also in stratum_drops_total, reason egress-cap, on the device where the
   * bucket is checked: the endpoint's port, or the uplink for a network). */
  #defineCaps(): void {
    const f = this.#family.bind(this);
    const capLabels = ["scope", "network", "endpoint"];
    const where = (c: MetricsSnapshot["caps"][number]) => ({
      scope: c.scope,
      network: c.network,
      endpoint: c.endpoint,
    });
    f(
      "gauge",
      "stratum_egress_cap_rate_bits",
      "Configured egress cap of a network (off the node) or an endpoint (every path), in bits per second.",
      capLabels,
      (s, e) => {
        for (const c of s.caps) e(where(c), c.rate);
      },
    );
    f(
      "gauge",
      "stratum_egress_cap_burst_bytes",
      "Depth of an egress cap's token bucket in bytes (what may pass at once above the rate).",
      capLabels,
      (s, e) => {
        for (const c of s.caps) e(where(c), c.burst);
      },
    );
    const counts = (s: MetricsSnapshot, e: Emit, k: keyof PacketsBytes) => {
      for (const c of s.caps) {
        if (!c.counts) continue;
        e({ ...where(c), verdict: "passed" }, c.counts.passed[k]);
        e({ ...where(c), verdict: "dropped" }, c.counts.dropped[k]);
      }
    };
    f(
      "counter",
      "stratum_egress_cap_packets_total",
      "Packets an egress cap's token bucket passed or dropped (over the rate); a rate change keeps the counts, removing the cap resets them.",
      [...capLabels, "verdict"],
      (s, e) => counts(s, e, "packets"),
    );
    f(
      "counter",
      "stratum_egress_cap_bytes_total",
      "Bytes an egress cap's token bucket passed or dropped (over the rate); a rate change keeps the counts, removing the cap resets them.",
      [...capLabels, "verdict"],
      (s, e) => counts(s, e, "bytes"),
    );
  }

  /** A cluster node's view of etcd: is it there, how far behind is the mirror, how often
   * did the node list everything again, what did the watch bring, which keep-alives failed,
   * which writes were refused; and the cluster's nodes by state. */
  #defineCluster(): void {
    const f = this.#family.bind(this);
    const c = (fill: (x: ClusterCounters, e: Emit) => void) => (s: MetricsSnapshot, e: Emit) => {
      if (s.cluster) fill(s.cluster, e);
    };
    f(
      "gauge",
      "stratum_cluster_etcd_up",
      "1 when this node's watch on etcd is connected, 0 while etcd does not answer (the datapath keeps enforcing; changes are refused).",
      [],
      c((x, e) => e({}, x.up ? 1 : 0)),
    );
    f(
      "gauge",
      "stratum_cluster_watch_lag_revisions",
      "Revisions of etcd the watch has seen and this node's copy of the cluster state has not applied yet.",
      [],
      c((x, e) => e({}, x.lag)),
    );
    f(
      "counter",
      "stratum_cluster_resyncs_total",
      "Full listings of the cluster state (at start, and when etcd compacted the history the watch needed).",
      [],
      c((x, e) => e({}, x.resyncs)),
    );
    f(
      "counter",
      "stratum_cluster_watch_events_total",
      "Changes of the cluster state the watch brought.",
      [],
      c((x, e) => e({}, x.events)),
    );
    f(
      "counter",
      "stratum_cluster_lease_renewals_missed_total",
      "Keep-alives of this node's lease that failed (past its TTL the others see the node unreachable).",
      [],
      c((x, e) => e({}, x.missed)),
    );
    f(
      "counter",
      "stratum_cluster_writes_refused_total",
      "Changes refused because etcd did not answer.",
      [],
      c((x, e) => e({}, x.writesRefused)),
    );
    f(
      "gauge",
      "stratum_cluster_nodes",
      "The cluster's nodes by state: ready (lease kept alive), unreachable (lease expired), left (stopped cleanly).",
      ["state"],
      c((x, e) => {
        for (const [state, n] of Object.entries(x.nodes)) e({ state }, n);
      }),
    );
  }

  /** A gateway's BGP sessions, by peer. */
  #defineBgp(): void {
    const f = this.#family.bind(this);
    const b = (fill: (p: PeerStatusView, e: Emit) => void) => (s: MetricsSnapshot, e: Emit) => {
      for (const p of s.bgp ?? []) fill(p, e);
    };
    f(
      "gauge",
      "stratum_bgp_session_up",
      "1 while the BGP session with the peer is established, else 0.",
      ["peer", "address"],
      b((p, e) => e({ peer: p.name, address: p.address }, p.state === "established" ? 1 : 0)),
    );
    f(
      "gauge",
      "stratum_bgp_prefixes_announced",
      "Prefixes the peer has from this node (the routed networks' subnets it was sent and not withdrawn).",
      ["peer"],
      b((p, e) => e({ peer: p.name }, p.prefixesSent)),
    );
    f(
      "counter",
      "stratum_bgp_sessions_established_total",
      "Times the session with the peer came up since the agent started (more than one: it flapped).",
      ["peer"],
      b((p, e) => e({ peer: p.name }, p.counts.established)),
    );
    f(
      "counter",
      "stratum_bgp_notifications_total",
      "BGP NOTIFICATIONs sent to and received from the peer since the agent started (each ends a session).",
      ["peer", "direction"],
      b((p, e) => {
        e({ peer: p.name, direction: "sent" }, p.counts.notificationsSent);
        e({ peer: p.name, direction: "received" }, p.counts.notificationsReceived);
      }),
    );
    f(
      "counter",
      "stratum_bgp_updates_received_total",
      "UPDATE messages received from the peer since the agent started (read and checked, not imported).",
      ["peer"],
      b((p, e) => e({ peer: p.name }, p.updatesReceived)),
    );
  }

  /** A gateway's gateway groups (docs/gateway.md#how-a-group-fails-over), by group. */
  #defineHa(): void {
    const f = this.#family.bind(this);
    const h = (fill: (g: GroupStatus, e: Emit) => void) => (s: MetricsSnapshot, e: Emit) => {
      for (const g of s.ha ?? []) fill(g, e);
    };
    f(
      "gauge",
      "stratum_gateway_role",
      "1 for this node's role in the gateway group (active, standby, init), 0 for the others.",
      ["group", "role"],
      h((g, e) => {
        for (const role of ["active", "standby", "init"]) e({ group: g.name, role }, g.role === role ? 1 : 0);
      }),
    );
    f(
      "counter",
      "stratum_gateway_transitions_total",
      "Changes of this node's role in the group since the agent started (the agent log says why).",
      ["group"],
      h((g, e) => e({ group: g.name }, g.counters.transitions)),
    );
    f(
      "counter",
      "stratum_gateway_adverts_total",
      "Heartbeat adverts on the management bridge: sent, received, missed (gaps in the other nodes' sequence numbers), rejected (bad signature, not of the group).",
      ["group", "outcome"],
      h((g, e) => {
        e({ group: g.name, outcome: "sent" }, g.counters.advertsSent);
        e({ group: g.name, outcome: "received" }, g.counters.advertsReceived);
        e({ group: g.name, outcome: "missed" }, g.counters.advertsMissed);
        e({ group: g.name, outcome: "rejected" }, g.counters.advertsRejected);
      }),
    );
    f(
      "counter",
      "stratum_gateway_lease_renewals_total",
      "Renewals of the group's lease in etcd by this node while active: done, and failed (etcd did not answer in time).",
      ["group", "outcome"],
      h((g, e) => {
        e({ group: g.name, outcome: "renewed" }, g.counters.renewals);
        e({ group: g.name, outcome: "failed" }, g.counters.renewFailures);
      }),
    );
    f(
      "gauge",
      "stratum_gateway_epoch",
      "The revision at which the group's active node took its lease (0: no node holds it).",
      ["group"],
      h((g, e) => e({ group: g.name }, g.epoch ?? 0)),
    );
  }

  /** DHCPv4, router advertisements and DHCPv6, DNS. */
  #defineAddressing(): void {
    const f = this.#family.bind(this);
    const a = (fill: (x: AddressingStats, e: Emit) => void) => (s: MetricsSnapshot, e: Emit) => {
      if (s.addressing) fill(s.addressing, e);
    };
    f(
      "counter",
      "stratum_dhcp_requests_total",
      "DHCPv4 requests received, by message type.",
      ["type"],
      a((x, e) => {
        for (const [type, v] of Object.entries(x.dhcp4.received)) e({ type }, v);
      }),
    );
    f(
      "counter",
      "stratum_dhcp_replies_total",
      "DHCPv4 replies sent, by message type (offer, ack, nak).",
      ["type"],
      a((x, e) => {
        for (const [type, v] of Object.entries(x.dhcp4.replies)) e({ type }, v);
      }),
    );
    f(
      "counter",
      "stratum_dhcp_ignored_total",
      "DHCPv4 requests not answered, by why (unknown-client: no claimed profile holds the MAC; relayed; malformed; …).",
      ["reason"],
      a((x, e) => {
        for (const [reason, v] of Object.entries(x.dhcp4.ignored)) e({ reason }, v);
        e({ reason: "malformed" }, x.dhcp4.malformed);
        e({ reason: "send-error" }, x.dhcp4.sendErrors);
      }),
    );
    f(
      "counter",
      "stratum_dhcp_lease_events_total",
      "Leases ended by the client: released, or declined (another host answers for the address).",
      ["event"],
      a((x, e) => {
        e({ event: "released" }, x.dhcp4.releases);
        e({ event: "declined" }, x.dhcp4.declines);
      }),
    );
    f(
      "gauge",
      "stratum_dhcp_leases_active",
      "DHCPv4 leases bound and not expired.",
      [],
      a((x, e) => e({}, x.dhcp4.leasesActive)),
    );
    f(
      "counter",
      "stratum_dhcp_leases_quarantined_total",
      "Stored lease rows set aside at start because they failed validation.",
      [],
      a((x, e) => e({}, x.dhcp4.leasesQuarantined)),
    );
    f(
      "counter",
      "stratum_ipv6_ra_total",
      "Router advertisements sent, router solicitations received and ignored (unknown sender).",
      ["event"],
      a((x, e) => {
        e({ event: "ra-sent" }, x.ipv6.raSent);
        e({ event: "rs-received" }, x.ipv6.rsReceived);
        e({ event: "rs-ignored" }, x.ipv6.rsIgnored);
      }),
    );
    f(
      "counter",
      "stratum_dhcp6_messages_total",
      "DHCPv6: messages received, replies by type, and messages not answered by why.",
      ["event"],
      a((x, e) => {
        const d = x.ipv6.dhcp6;
        e({ event: "received" }, d.received);
        for (const [t, v] of Object.entries(d.replies)) e({ event: `reply-${t}` }, v);
        e({ event: "ignored" }, d.ignored);
        e({ event: "malformed" }, d.malformed);
        e({ event: "relay-refused" }, d.relayRefused);
      }),
    );
    f(
      "counter",
      "stratum_dns_queries_total",
      "DNS queries received, by transport.",
      ["transport"],
      a((x, e) => {
        e({ transport: "udp" }, x.dns.queries.udp);
        e({ transport: "tcp" }, x.dns.queries.tcp);
      }),
    );
    f(
      "counter",
      "stratum_dns_responses_total",
      "DNS responses sent, by response code.",
      ["rcode"],
      a((x, e) => {
        for (const [rcode, v] of Object.entries(x.dns.responses)) e({ rcode }, v);
      }),
    );
    f(
      "counter",
      "stratum_dns_events_total",
      "DNS server events: forwarded, cache-hit, refused (source outside the network), truncated, malformed, forged-dropped (a forwarder reply that did not match), upstream-timeout, send-dropped (a reply the kernel would not take: the send buffer was full).",
      ["event"],
      a((x, e) => {
        const d = x.dns;
        e({ event: "forwarded" }, d.forwarded);
        e({ event: "cache-hit" }, d.cacheHits);
        e({ event: "refused" }, d.refused);
        e({ event: "truncated" }, d.truncated);
        e({ event: "malformed" }, d.malformed);
        e({ event: "forged-dropped" }, d.forgedDropped);
        e({ event: "upstream-timeout" }, d.upstreamTimeouts);
        e({ event: "send-dropped" }, d.sendDropped);
      }),
    );
    f(
      "gauge",
      "stratum_dns_cache_entries",
      "Answers from forwarders held in the cache.",
      [],
      a((x, e) => e({}, x.dns.cacheEntries)),
    );
    f(
      "gauge",
      "stratum_service_up",
      "1 when an address service (dhcp, ipv6, dns) serves, 0 when it failed to start.",
      ["service"],
      a((x, e) => {
        for (const svc of ["dhcp", "ipv6", "dns"]) e({ service: svc }, x.down[svc] ? 0 : 1);
      }),
    );
  }
}
