/** The agent's account of itself (GET /v1/status, `status`): health and why, version, kernel
 * and features, each endpoint port's attach state as the kernel has it (a program on both tc
 * hooks and it is this build's code, a configuration entry, membership of the user bridge),
 * the uplink's two links, map fill levels, the store, the reconcile loop (runs by trigger, the
 * last run, the last drift it repaired), the recent warnings and errors and, on a cluster
 * node, its part in the cluster. Health is "degraded" when a port or the uplink misses a
 * piece, the last reconcile reported errors, or the store does not answer; a nearly full
 * table, or etcd away, is a warning. Read-only: it never repairs what it finds. */
import { existsSync, statSync } from "node:fs";
import type {
  AgentStatus,
  BgpStatus,
  LbStatus,
  MsegStatus,
  NatStatus,
  OverlayStatus,
  PortStatus,
  ServiceStatus,
  StoreStatus,
  UplinkStatus,
} from "../api/contract";
import { clsProgId, pinnedLinkInfo, type TcDirection } from "../datapath/attach";
import type { MapFillInfo } from "../datapath/map-fill";
import { portHooks } from "../datapath/port-datapath";
import { encodeIfindex } from "../datapath/port-maps";
import { macvtapLowerNames, OVERLAY_DEVICE, USER_BRIDGE, userBridgeNumber, xskVmEnd } from "../model/topology";
import { getLink, type Link, listLinks } from "../netlink";
import { SCHEMA_VERSION } from "../store/sqlite";
import { localEndpoints } from "../store/store";
import { clusterSummary } from "./cluster";
import type { AgentRuntime } from "./runtime";

export type Health = "ok" | "degraded";
export type { AgentStatus, OverlayStatus, PortStatus, ServiceStatus, StoreStatus, UplinkStatus };

function serviceStates(rt: AgentRuntime): ServiceStatus[] | undefined {
  if (!rt.addressing) return undefined;
  const x = rt.addressing.stats();
  const sum = (r: Record<string, number>) => Object.values(r).reduce((a, v) => a + v, 0);
  const entry = (name: ServiceStatus["name"], summary: string): ServiceStatus => ({
    name,
    state: x.down[name] ? "down" : "serving",
    problem: x.down[name] || null,
    summary,
  });
  return [
    entry(
      "dhcp",
      `${x.dhcp4.leasesActive} active lease(s), ${sum(x.dhcp4.replies)} repl(ies), ${sum(x.dhcp4.ignored)} ignored, ${x.dhcp4.malformed} malformed, ${x.dhcp4.leasesQuarantined} lease row(s) quarantined`,
    ),
    entry(
      "ipv6",
      `${x.ipv6.raSent} router advertisement(s), ${x.ipv6.rsReceived} solicitation(s), DHCPv6 ${x.ipv6.dhcp6.received} received / ${sum(x.ipv6.dhcp6.replies)} answered`,
    ),
    entry(
      "dns",
      `${x.dns.queries.udp + x.dns.queries.tcp} quer(ies) (${x.dns.queries.tcp} TCP), ${x.dns.forwarded} forwarded, ${x.dns.cacheHits} cache hit(s), ${x.dns.refused} refused`,
    ),
  ];
}

/** A table this full (and not an LRU, which evicts by design) is worth a warning. */
export const FILL_WARNING = 0.9;

/** The program each tc hook of a port runs (a macvtap's the other way round: portHooks). */
function portProgs(macvtap: boolean): Record<TcDirection, string> {
  const h = portHooks(macvtap);
  return { [h.in]: "stm_port_in", [h.out]: "stm_port_out" } as Record<TcDirection, string>;
}

/** Every port of this node's endpoints as the kernel has it (a cluster's other nodes'
 * endpoints are in the store, not in this kernel). */
export function portStates(rt: AgentRuntime): PortStatus[] {
  const dp = rt.svc.dp;
  const links = new Map<string, Link>(listLinks(rt.svc.nl).map((l) => [l.name, l]));
  // cnv-user-br0 or one of its extensions (services/user-bridges.ts), by ifindex.
  const bridges = new Map(
    [...links.values()].filter((l) => userBridgeNumber(l.name) !== undefined).map((l) => [l.index, l.name]),
  );
  const ports = dp.map("stm_ports");
  const local = rt.svc.store;
  return localEndpoints(local, undefined, rt.store).map((ep) => {
    const problems: string[] = [];
    const link = links.get(ep.hostIf);
    const base = {
      endpoint: ep.name,
      network: ep.network,
      kind: ep.kind,
      interface: ep.hostIf,
      attach: "cls_bpf" as const,
    };
    if (!link)
      return {
        ...base,
        ifindex: null,
        ingressProgId: 0,
        egressProgId: 0,
        config: false,
        bridged: false,
        bridge: null,
        up: false,
        state: "degraded" as const,
        problems: [`interface ${ep.hostIf} does not exist`],
      };
    const ids = { ingress: 0, egress: 0 };
    const PORT_PROGS = portProgs(ep.kind === "macvtap");
    for (const dir of ["ingress", "egress"] as const) {
      try {
        ids[dir] = clsProgId(link.index, dir, rt.svc.nl);
      } catch (e) {
        problems.push(`tc ${dir}: ${(e as Error).message}`);
        continue;
      }
      if (!ids[dir]) problems.push(`no program at tc ${dir}`);
      else if (!dp.isCurrent(ids[dir], PORT_PROGS[dir]))
        problems.push(`tc ${dir} runs program ${ids[dir]}, not this build's ${PORT_PROGS[dir]} on its maps`);
    }
    if (ep.kind === "xsk") {
      // The VM end: there, with stm_xsk_rx through its pinned link (datapath/xsk.ts).
      const end = links.get(xskVmEnd(ep.hostIf));
      if (!end) problems.push(`its VM end ${xskVmEnd(ep.hostIf)} does not exist`);
      else if (!existsSync(rt.svc.ctx.xsk.linkPin(end.index)))
        problems.push(`no XDP program on its VM end ${xskVmEnd(ep.hostIf)}`);
    }
    const config = ports.lookup(encodeIfindex(link.index)) !== null;
    if (!config) problems.push("no configuration entry in stm_ports");
    // A macvtap is on its lower link (whose inner end is a bridge's port), not a bridge's port.
    const lower = ep.kind === "macvtap" ? links.get(macvtapLowerNames(ep).outer) : undefined;
    const bridged =
      ep.kind === "macvtap"
        ? lower !== undefined && link.link === lower.index
        : link.master !== undefined && bridges.has(link.master);
    if (!bridged)
      problems.push(
        ep.kind === "macvtap"
          ? `not on its lower device ${macvtapLowerNames(ep).outer}`
          : `not a port of ${USER_BRIDGE}`,
      );
    return {
      ...base,
      ifindex: link.index,
      ingressProgId: ids.ingress,
      egressProgId: ids.egress,
      config,
      bridged,
      bridge: link.master === undefined ? null : (bridges.get(link.master) ?? null),
      up: link.up,
      state: problems.length ? ("degraded" as const) : ("ok" as const),
      problems,
    };
  });
}

export function uplinkState(rt: AgentRuntime): UplinkStatus | null {
  const up = rt.uplink;
  if (!up) return null;
  const dp = rt.svc.dp;
  const problems: string[] = [];
  const dev = getLink(up.name, rt.svc.nl);
  if (!dev) problems.push(`device ${up.name} does not exist`);
  else if (dev.index !== up.ifindex) problems.push(`device ${up.name} has ifindex ${dev.index}, not ${up.ifindex}`);
  const check = (what: string, pin: string, prog: string): number => {
    const l = pinnedLinkInfo(pin);
    if (!l) {
      problems.push(`${what} link is not pinned at ${pin}`);
      return 0;
    }
    if (l.ifindex !== up.ifindex)
      problems.push(
        l.ifindex ? `${what} link is on ifindex ${l.ifindex}` : `${what} link is detached (its device is gone)`,
      );
    if (!dp.isCurrent(l.progId, prog)) problems.push(`${what} link runs program ${l.progId}, not this build's ${prog}`);
    return l.progId;
  };
  const progId = check("XDP", dp.uplinkPin, "stm_uplink_in");
  const tcxEgressProgId = check("tcx egress", dp.uplinkOutPin, "stm_uplink_out");
  const tcxIngressProgId = check("tcx ingress", dp.uplinkInPin, "stm_uplink_nat_in");
  return {
    name: up.name,
    ifindex: up.ifindex,
    xdpMode: up.attach.xdpMode ?? null,
    progId,
    tcxEgressProgId,
    tcxIngressProgId,
    state: problems.length ? "degraded" : "ok",
    problems,
    drops: dp.drops(up.ifindex),
  };
}

/** A gateway's BGP speaker: its identity, how many sessions are up, what it announces. */
export function bgpState(rt: AgentRuntime): BgpStatus | null {
  const sp = rt.bgp;
  const c = rt.store.bgpConfig();
  if (!sp || !c) return null;
  const peers = sp.peers();
  return {
    asn: c.asn,
    routerId: sp.routerId(c),
    peers: peers.length,
    established: peers.filter((p) => p.state === "established").length,
    announced: sp.wanted().length,
    withheld: sp.withheld,
  };
}

/** Masquerading on this node: the port range, the masqueraded networks and what each is
 * translated to, the flows the datapath holds (`natEntries`: stm_nat's count, two per flow),
 * and its counters (exhaustion among them). Null when no network is masqueraded. */
/** Microsegmentation as the store has it and the datapath enforces it (null: nothing defined). */
export function msegState(rt: AgentRuntime): MsegStatus | null {
  const doc = rt.store.getMicroseg();
  if (!doc.groups.length && !doc.rules.length) return null;
  const k = rt.svc.microseg.tables.state();
  return {
    groups: doc.groups.length,
    entries: doc.rules.length,
    grouped: localEndpoints(rt.svc.store, undefined, rt.store).filter((e) => e.group !== undefined).length,
    generation: k.gen,
    enforcing: k.on,
  };
}

/** The load balancer on this node (null: no VIP, or no load balancer in this process). */
export function lbState(rt: AgentRuntime): LbStatus | null {
  const vips = rt.lb?.vips() ?? [];
  if (!vips.length) return null;
  return {
    vips: vips.length,
    backends: vips.reduce((a, v) => a + v.backends.length, 0),
    inTable: vips.reduce((a, v) => a + v.healthy, 0),
    announced: vips.filter((v) => v.announced).length,
    down: vips.filter((v) => v.healthy === 0).map((v) => v.name),
  };
}

export function natState(rt: AgentRuntime, natEntries: number | null): NatStatus | null {
  const dp = rt.svc.dp;
  const kernel = dp.natNets();
  const nets = rt.store.listNetworks().filter((n) => n.nat);
  if (!nets.length) return null;
  const warnings: string[] = [];
  const networks = nets.map((n) => {
    const k = kernel.get(n.id);
    const v4 = k?.addr4 ?? null;
    const v6 = n.cidr6 ? (k?.addr6 ?? null) : null;
    if (!v4) warnings.push(`${n.name}: no IPv4 address to masquerade to (none given, none on the uplink)`);
    if (n.cidr6 && !v6) warnings.push(`${n.name}: no IPv6 address to masquerade to (none given, none on the uplink)`);
    return { name: n.name, v4, v6 };
  });
  return {
    portRange: { ...rt.svc.ctx.natPorts },
    networks,
    flows: natEntries === null ? null : Math.floor(natEntries / 2),
    counters: dp.natStats(),
    warnings,
  };
}

/** A cluster node's overlay as the kernel has it: the device, bridged and up, this build's
 * programs on both hooks, its interface entry; the underlay's tc check; how many nodes and
 * remote endpoints the maps hold. `remoteEntries`: stm_remote's count from the fill read. */
export function overlayState(rt: AgentRuntime, remoteEntries: number | null): OverlayStatus | null {
  const address = rt.overlayAddress;
  if (!address) return null;
  const dp = rt.svc.dp;
  const problems: string[] = [];
  const dev = getLink(OVERLAY_DEVICE, rt.svc.nl);
  const bridge = getLink(USER_BRIDGE, rt.svc.nl);
  const prog = (dir: TcDirection, name: string): number => {
    if (!dev) return 0;
    const id = clsProgId(dev.index, dir, rt.svc.nl) ?? 0;
    if (!id) problems.push(`no program on its tc ${dir}`);
    else if (!dp.isCurrent(id, name)) problems.push(`tc ${dir} runs program ${id}, not this build's ${name}`);
    return id;
  };
  if (!dev) problems.push(`device ${OVERLAY_DEVICE} does not exist`);
  else {
    if (dev.master !== bridge?.index) problems.push(`not a port of ${USER_BRIDGE}`);
    if (!dev.up) problems.push("down");
    if (!dp.map("stm_ifaces").lookup(encodeIfindex(dev.index))) problems.push("no interface entry");
  }
  const ingressProgId = prog("ingress", "stm_overlay_in");
  const egressProgId = prog("egress", "stm_overlay_out");
  const l = pinnedLinkInfo(dp.underlayPin);
  const underlay = l
    ? {
        name: getLink(l.ifindex, rt.svc.nl)?.name ?? null,
        ifindex: l.ifindex,
        progId: l.progId,
        drops: dp.drops(l.ifindex),
      }
    : null;
  const keys = dp.vtepKeys();
  return {
    device: OVERLAY_DEVICE,
    ifindex: dev?.index ?? null,
    address,
    ingressProgId,
    egressProgId,
    underlay,
    nodes: Math.max(0, keys.length - 2), // the switch and this node are not others
    remoteEndpoints: remoteEntries ?? 0,
    state: problems.length ? "degraded" : "ok",
    problems,
    drops: dev ? dp.drops(dev.index) : {},
  };
}

function fileSize(path: string): number {
  try {
    return existsSync(path) ? statSync(path).size : 0;
  } catch {
    return 0;
  }
}

export function storeState(rt: AgentRuntime): StoreStatus {
  const base = { path: rt.dbPath, binarySchemaVersion: SCHEMA_VERSION };
  const files = { sizeBytes: fileSize(rt.dbPath), walBytes: fileSize(`${rt.dbPath}-wal`) };
  try {
    const st = rt.store.stats();
    return {
      ...base,
      state: "ok",
      schemaVersion: st.schemaVersion,
      journalMode: st.journalMode,
      ...files,
      networks: st.networks,
      endpoints: st.endpoints,
      rules: st.rules,
      blocklist: st.blocklist,
      leases: st.leases,
      leasesQuarantined: st.leasesQuarantined,
      quarantined: st.quarantined,
      dnsRecords: st.dnsRecords,
    };
  } catch (e) {
    return {
      ...base,
      state: (e as Error).message,
      schemaVersion: null,
      journalMode: null,
      ...files,
      networks: null,
      endpoints: null,
      rules: null,
      blocklist: null,
      leases: null,
      leasesQuarantined: null,
      quarantined: null,
      dnsRecords: null,
    };
  }
}

/** Warnings for tables close to full (LRU tables evict instead and are left out). */
export function fillWarnings(maps: MapFillInfo[]): string[] {
  const out: string[] = [];
  for (const m of maps) {
    if (m.entries === null || m.capacity === 0 || m.type.startsWith("lru")) continue;
    if (m.entries / m.capacity >= FILL_WARNING)
      out.push(`map ${m.name} is ${Math.floor((100 * m.entries) / m.capacity)}% full (${m.entries} of ${m.capacity})`);
  }
  return out;
}

export async function buildStatus(rt: AgentRuntime): Promise<AgentStatus> {
  const fill = await rt.mapFill.read();
  const ports = portStates(rt);
  const uplink = uplinkState(rt);
  const store = storeState(rt);
  const last = rt.reconcile.last;
  const reasons: string[] = [];
  for (const p of ports)
    if (p.state !== "ok") reasons.push(`endpoint ${p.endpoint} (${p.interface}): ${p.problems.join("; ")}`);
  if (uplink?.state === "degraded") reasons.push(`uplink ${uplink.name}: ${uplink.problems.join("; ")}`);
  const overlay = overlayState(rt, fill.maps.find((m) => m.name === "stm_remote")?.entries ?? null);
  if (overlay?.state === "degraded") reasons.push(`overlay ${overlay.device}: ${overlay.problems.join("; ")}`);
  if (last?.errors.length)
    reasons.push(`the last reconcile (${last.at}) reported ${last.errors.length} error(s): ${last.errors[0]}`);
  if (store.state !== "ok") reasons.push(`store ${store.path}: ${store.state}`);
  const services = serviceStates(rt);
  const cluster = rt.cluster ? clusterSummary(rt.cluster) : null;
  // Enforcement depends on neither: a service down, or etcd away, is a warning, not degraded health.
  const nat = natState(rt, fill.maps.find((m) => m.name === "stm_nat")?.entries ?? null);
  const microseg = msegState(rt);
  const lb = lbState(rt);
  const warnings = [
    ...(lb?.down.length ? [`load balancer: no backend takes flows for VIP(s) ${lb.down.join(", ")}`] : []),
    ...(microseg && microseg.groups > 0 && !microseg.enforcing
      ? ["microsegmentation: the datapath does not hold the policy yet (a reconcile writes it)"]
      : []),
    ...fillWarnings(fill.maps),
    ...(nat?.warnings.map((w) => `masquerading: ${w}`) ?? []),
    ...(services ?? []).filter((v) => v.state === "down").map((v) => `${v.name} is not serving: ${v.problem}`),
    ...(cluster && !cluster.etcdUp
      ? [
          `etcd does not answer: this node enforces its copy of the cluster state (revision ${cluster.mirrorRevision}) and refuses changes until etcd is back`,
        ]
      : []),
  ];
  return {
    health: { status: reasons.length ? "degraded" : "ok", reasons, warnings },
    version: rt.version,
    pid: process.pid,
    startedAt: rt.startedAt.toISOString(),
    uptimeSeconds: Math.round((Date.now() - rt.startedAt.getTime()) / 1000),
    kernel: rt.probe.kernel,
    libbpf: rt.probe.libbpf,
    libbpfPath: rt.probe.libbpfPath,
    features: { ...rt.probe.features },
    pinRoot: rt.pinRoot,
    stateDir: rt.stateDir,
    rssBytes: process.memoryUsage().rss,
    networks: store.networks ?? 0,
    endpoints: store.endpoints ?? ports.length,
    ports,
    uplink,
    overlay,
    bgp: bgpState(rt),
    nat,
    microseg,
    lb,
    maps: fill.maps,
    mapCountMs: Math.round(fill.seconds * 100_000) / 100,
    store,
    reconcile: {
      runs: rt.reconcile.runs,
      errors: rt.reconcile.errors,
      last: last ?? null,
      byTrigger: { ...rt.reconcile.byTrigger },
      repairs: { ...rt.reconcile.repairs },
      lastRepair: rt.reconcile.lastRepair ?? null,
      loop: rt.loop ? rt.loop.state : null,
    },
    recentErrors: rt.recent.list(),
    logTotals: { ...rt.recent.totals },
    services: services ?? null,
    cluster,
  };
}
