/** `status`: the agent's health and why, version, kernel and features, the store, the last
 * reconcile, the uplink, every port's attach state, map fill levels, recent warnings and
 * errors and, on a cluster node, its part in the cluster, from the agent's API. An agent
 * that does not answer is UNAVAILABLE (exit 7). */
import { type CommandMeta, defineCommand } from "citty";
import type { AgentStatus } from "../observe/status";
import { client } from "./api-flags";
import { apiArg } from "./network-commands";
import { formatBytes as formatOutputBytes, outputArg, parseFormat, printData, printKv, printTable } from "./output";

export const formatBytes = (n: number) => formatOutputBytes(n, { binary: true });

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const parts: string[] = [];
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) parts.push(`${d}d`);
  if (h) parts.push(`${h}h`);
  if (m) parts.push(`${m}m`);
  if (s % 60 || parts.length === 0) parts.push(`${s % 60}s`);
  return parts.join(" ");
}

/** The reconcile loop's lines: how it runs, its runs by trigger, the last drift it repaired. */
function reconcileLoop(st: AgentStatus): Array<[string, string]> {
  const r = st.reconcile;
  if (!r.byTrigger) return [];
  // Runs made by changes from other nodes: a single node has none to count.
  const runs = Object.entries(r.byTrigger)
    .filter(([t]) => t !== "cluster" || st.cluster)
    .map(([t, n]) => `${t} ${n}`)
    .join(", ");
  const how = r.loop
    ? `${r.loop.events ? "on rtnetlink notices" : "no notices"}, ${r.loop.intervalSeconds ? `a full pass every ${r.loop.intervalSeconds} s` : "no periodic pass"}`
    : "off";
  const out: Array<[string, string]> = [["reconcile loop", `${how}; runs: ${runs}`]];
  for (const d of r.loop?.drift ?? []) out.push(["  drift seen", d]);
  const rep = r.lastRepair;
  out.push(["last repair", rep ? `${rep.at} (${rep.trigger}): ${rep.changes.join("; ")}` : "none"]);
  return out;
}

/** The human form: key: value lines, then tables of ports, maps and recent problems. */
export function printStatus(st: AgentStatus): void {
  const out = (s: string) => process.stdout.write(s);
  const f = st.features;
  const missing = Object.keys(f).filter((k) => !f[k]);
  const store = st.store;
  const last = st.reconcile.last;
  const pairs: Array<[string, string]> = [
    ["health", st.health.status],
    ...st.health.reasons.map((r) => ["  why", r] as [string, string]),
    ...st.health.warnings.map((w) => ["  warning", w] as [string, string]),
    ["version", `${st.version} (pid ${st.pid}, up ${formatDuration(st.uptimeSeconds)} since ${st.startedAt})`],
    ["kernel", `${st.kernel} (libbpf ${st.libbpf}, ${st.libbpfPath})`],
    [
      "features",
      `${Object.keys(f)
        .filter((k) => f[k])
        .join(", ")}${missing.length ? ` (missing: ${missing.join(", ")})` : ""}`,
    ],
    ["pin root", st.pinRoot],
    ["memory", formatBytes(st.rssBytes)],
    [
      "store",
      store.state === "ok"
        ? `${store.path}: schema ${store.schemaVersion}, ${formatBytes(store.sizeBytes)} (+${formatBytes(store.walBytes)} WAL); ${store.networks} network(s), ${store.endpoints} endpoint(s), ${store.rules} rule(s), ${store.blocklist} blocklisted prefix(es), ${store.leases} lease(s), ${store.dnsRecords} DNS record(s)${store.leasesQuarantined ? `, ${store.leasesQuarantined} quarantined lease row(s)` : ""}${store.quarantined ? `, ${store.quarantined} quarantined row(s)` : ""}`
        : `${store.path}: ${store.state}`,
    ],
    [
      "last reconcile",
      last
        ? `${last.at} (${last.trigger}${last.only ? `, limited to ${last.only.length} network(s)` : ""}), ${last.durationMs} ms: ${last.networks} network(s), ${last.endpoints} endpoint(s), ${last.firewall.scopes} firewall scope(s) (${last.firewall.adopted} unchanged), ${last.changes.length} kernel change(s), ${last.collected.length} collected, ${last.errors.length} error(s)`
        : "none yet",
    ],
    ...(last?.errors ?? []).map((e) => ["  error", e] as [string, string]),
    ...reconcileLoop(st),
  ];
  const up = st.uplink;
  pairs.push([
    "uplink",
    up
      ? `${up.name} (ifindex ${up.ifindex}): ${up.state}; XDP ${up.xdpMode ?? "?"} program ${up.progId || "none"}, tcx egress program ${up.tcxEgressProgId || "none"}, tcx ingress program ${up.tcxIngressProgId || "none"}${up.problems.length ? `; ${up.problems.join("; ")}` : ""}`
      : "none",
  ]);
  const ov = st.overlay;
  if (ov) {
    const dropped = (d: Record<string, number>) =>
      Object.entries(d)
        .filter(([, n]) => n > 0)
        .map(([r, n]) => `${r} ${n}`)
        .join(", ");
    pairs.push([
      "overlay",
      `${ov.device} (ifindex ${ov.ifindex ?? "none"}) from ${ov.address}: ${ov.state}; ${ov.nodes} other node(s), ${ov.remoteEndpoints} remote endpoint(s)${ov.problems.length ? `; ${ov.problems.join("; ")}` : ""}${dropped(ov.drops) ? `; dropped ${dropped(ov.drops)}` : ""}`,
    ]);
    pairs.push([
      "underlay check",
      ov.underlay
        ? `tc ingress program ${ov.underlay.progId} on ${ov.underlay.name ?? `ifindex ${ov.underlay.ifindex}`}${dropped(ov.underlay.drops) ? `; dropped ${dropped(ov.underlay.drops)}` : ""}`
        : "the uplink's filter, or none (VXLAN from unknown sources is then dropped after decapsulation)",
    ]);
  }
  const b = st.bgp;
  if (b)
    pairs.push([
      "bgp",
      `AS ${b.asn}, router id ${b.routerId ?? "none yet"}; ${b.established}/${b.peers} peer(s) established; ${b.withheld ? `nothing announced: ${b.withheld}` : `${b.announced} prefix(es) announced`}`,
    ]);
  const nat = st.nat;
  if (nat)
    pairs.push([
      "nat",
      `${nat.networks.map((n) => `${n.name} → ${[n.v4, n.v6].filter(Boolean).join(", ") || "nothing"}`).join("; ")}; ports ${nat.portRange.lo}-${nat.portRange.hi}; ${nat.flows ?? "?"} flow(s); ${nat.counters.exhausted ?? 0} refused for want of a port${nat.warnings.length ? `; ${nat.warnings.join("; ")}` : ""}`,
    ]);
  const m = st.microseg;
  if (m)
    pairs.push([
      "microseg",
      `${m.groups} group(s), ${m.entries} entr${m.entries === 1 ? "y" : "ies"}; ${m.grouped} endpoint(s) of this node in a group; ${m.enforcing ? `generation ${m.generation} in the datapath` : "NOT in the datapath"}`,
    ]);
  const lb = st.lb;
  if (lb)
    pairs.push([
      "lb",
      `${lb.vips} VIP(s), ${lb.inTable}/${lb.backends} backend(s) taking flows, ${lb.announced} announced${lb.down.length ? `; none for ${lb.down.join(", ")}` : ""}`,
    ]);
  for (const v of st.services ?? [])
    pairs.push([v.name, v.state === "serving" ? `serving: ${v.summary}` : `DOWN: ${v.problem}`]);
  const c = st.cluster;
  if (c)
    pairs.push(
      ["cluster", `${c.clusterId}, this node ${c.node}`],
      [
        "etcd",
        c.etcdUp
          ? "up (watch connected)"
          : `DOWN: enforcing this node's copy of the cluster state; ${c.writesRefused} change(s) refused so far`,
      ],
      ["cluster mirror", `revision ${c.mirrorRevision}, lag ${c.lag}; last resync ${c.lastResync ?? "none"}`],
      ["cluster lease", `${c.renewalsMissed} renewal(s) missed`],
    );
  printKv(pairs);

  out(`\nPORTS (${st.ports.length})\n`);
  if (st.ports.length)
    printTable(
      ["ENDPOINT", "NETWORK", "INTERFACE", "IFINDEX", "BRIDGE", "ATTACH", "INGRESS", "EGRESS", "CONFIG", "STATE"],
      st.ports.map((p) => [
        p.endpoint,
        p.network,
        p.interface,
        p.ifindex === null ? "-" : String(p.ifindex),
        p.bridge ?? "-",
        p.attach,
        p.ingressProgId ? String(p.ingressProgId) : "none",
        p.egressProgId ? String(p.egressProgId) : "none",
        p.config ? "yes" : "no",
        p.state === "ok" ? "ok" : `degraded: ${p.problems.join("; ")}`,
      ]),
    );

  out(`\nMAPS (counted in ${st.mapCountMs} ms)\n`);
  printTable(
    ["NAME", "TYPE", "ENTRIES", "CAPACITY", "FILL"],
    st.maps.map((m) => [
      m.name,
      m.type,
      m.entries === null ? "-" : String(m.entries),
      m.type === "ringbuf" ? formatBytes(m.capacity) : String(m.capacity),
      m.entries === null || !m.capacity ? "-" : `${((100 * m.entries) / m.capacity).toFixed(1)}%`,
    ]),
  );

  out(`\nRECENT WARNINGS AND ERRORS (${st.logTotals.warn} warning(s), ${st.logTotals.error} error(s) since start)\n`);
  if (st.recentErrors.length)
    printTable(
      ["AT", "LEVEL", "MESSAGE"],
      st.recentErrors.map((e) => [e.at, e.level, e.tag ? `[${e.tag}] ${e.message}` : e.message]),
    );
}

export const statusCommand = defineCommand({
  meta: {
    name: "status",
    description:
      "Show the agent's health, ports, uplink, maps, store, last reconcile and recent errors; exit 1 when degraded",
    examples: [
      "cenvero-str-ctl status",
      "cenvero-str-ctl status -o json | jq .health",
      "# Exit 0 when healthy, 1 when degraded (the reasons are printed), 7 when the agent does not answer:",
      "cenvero-str-ctl status > /dev/null || echo 'look at this node'",
    ],
  } as CommandMeta,
  args: { ...apiArg, ...outputArg },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const st = await client(args).status();
    if (fmt !== "table") printData(fmt, st);
    else printStatus(st);
    return st.health.status === "ok" ? 0 : 1;
  },
});
