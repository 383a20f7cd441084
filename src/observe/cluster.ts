/** A cluster node's account of its cluster, as the API, `status` and `/metrics` show it:
 * etcd's status in the contract's view (every key present, null when unset), the summary that
 * `status` shows (read from the agent's own records, never a request to etcd: status must
 * answer at once while etcd is away), and the nodes counted by state. Read-only. */
import type { ClusterStatusView, ClusterSummary } from "../api/contract";
import type { Cluster, ClusterStatus, NodeState, NodeView } from "../cluster/cluster";

export function clusterStatusView(s: ClusterStatus): ClusterStatusView {
  return {
    clusterId: s.clusterId,
    node: s.node,
    etcd: {
      endpoints: [...s.endpoints],
      up: s.etcd.up,
      members: s.etcd.members.map((m) => ({
        endpoint: m.endpoint,
        healthy: m.healthy,
        version: m.version ?? null,
        leader: m.leader === true,
        error: m.error ?? null,
      })),
      leader: s.etcd.leader,
      revision: s.etcd.revision,
    },
    mirror: { ...s.mirror },
    watch: { ...s.watch },
    lease: { ...s.lease },
  };
}

/** What of a Cluster the summary reads. */
export type ClusterRecords = Pick<Cluster, "clusterId" | "counters"> & {
  o: Pick<Cluster["o"], "nodeName">;
  writer: Pick<Cluster["writer"], "revision" | "meta">;
};

export function clusterSummary(c: ClusterRecords): ClusterSummary {
  const n = c.counters;
  return {
    clusterId: c.clusterId,
    node: c.o.nodeName,
    etcdUp: n.up,
    mirrorRevision: c.writer.revision,
    lag: n.lag,
    lastResync: c.writer.meta("resyncedAt") ?? null,
    renewalsMissed: n.missed,
    writesRefused: n.writesRefused,
  };
}

/** Nodes by state, every state present (0 when none). */
export function nodeCounts(nodes: Pick<NodeView, "state">[]): Record<NodeState, number> {
  const out: Record<NodeState, number> = { ready: 0, unreachable: 0, left: 0 };
  for (const n of nodes) out[n.state]++;
  return out;
}
