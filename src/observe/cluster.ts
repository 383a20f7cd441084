/** A cluster node's account of its cluster, as the API shows it: etcd's status in the
 * contract's view (every key present, null when unset). Read-only. */
import type { ClusterStatusView } from "../api/contract";
import type { ClusterStatus } from "../cluster/cluster";

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
