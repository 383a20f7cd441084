/** The views of gateway groups (contract.ts), and the group half of GatewayApi over a cluster
 * node's Cluster: what its mirror holds, created and deleted through etcd. A group's heartbeat
 * key never leaves here. */
import type { Cluster } from "../cluster/cluster";
import { StratumError } from "../errors";
import { type GatewayGroup, groupTimers } from "../model/gateway-group";
import type { GatewayApi } from "./app";
import type { GatewayGroupView } from "./contract";

/** The holder of a group's role as the cluster records it; `epoch`: the record's revision. */
export interface GatewayHolder {
  node: string;
  since: string;
  why: string;
  epoch: number;
}

/** The longest takeover wait of a group: the master-down interval of its node of lowest
 * priority, in ms rounded to 0.1. */
export function masterDownMs(g: Pick<GatewayGroup, "nodes" | "priority" | "advertIntervalMs">): number {
  const longest = Math.max(0, ...g.nodes.map((n) => groupTimers(g, n).masterDown));
  return Math.round(longest * 10) / 10;
}

/** A group's view; only the fields of GatewayGroup are read (a stored group's key is not). */
export function gatewayGroupView(g: GatewayGroup, active: GatewayHolder | null): GatewayGroupView {
  return {
    name: g.name,
    vips: { ipv4: g.vips.ipv4 ?? null, ipv6: g.vips.ipv6 ?? null },
    nodes: g.nodes.map((name) => ({ name, priority: g.priority[name] as number })),
    preempt: g.preempt,
    advertIntervalMs: g.advertIntervalMs,
    masterDownMs: masterDownMs(g),
    createdAt: g.createdAt,
    active: active ? { node: active.node, epoch: active.epoch, since: active.since, why: active.why } : null,
  };
}

type GroupSource = Pick<Cluster, "gatewayGroups" | "gatewayActive" | "createGatewayGroup" | "deleteGatewayGroup">;

/** GatewayApi's groups, group, createGroup and deleteGroup on a Cluster (status is the HA
 * engine's). */
export function clusterGatewayGroups(c: GroupSource): Omit<GatewayApi, "status"> {
  const view = (g: GatewayGroup) => gatewayGroupView(g, c.gatewayActive(g.name));
  return {
    groups: () =>
      c
        .gatewayGroups()
        .sort((a, b) => a.name.localeCompare(b.name))
        .map(view),
    group: (name) => {
      const g = c.gatewayGroups().find((x) => x.name === name);
      if (!g) throw new StratumError("NOT_FOUND", `no gateway group ${name}`);
      return view(g);
    },
    createGroup: (body) => view(c.createGatewayGroup(body)),
    deleteGroup: (name) => c.deleteGatewayGroup(name),
  };
}
