/** The MACs of the node's bridges: stable across restarts, distinct between nodes, and in a
 * cluster the user bridge's the same on every node (the anycast gateway). */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { USER_BRIDGE } from "../model/topology";

/** The MAC a bridge of this node always has: derived from the machine id and the host name,
 * so it is stable across restarts and distinct between nodes. Left to itself a bridge takes
 * the lowest MAC of its ports and changes it as ports come and go, and every workload's ARP
 * entry for the gateway would go stale. `host`: another UTS namespace's name (the test lab's
 * nodes share this machine's id). In a cluster the user bridge's is the cluster's instead. */
export function bridgeMac(name: string, host = hostname()): string {
  if (name === USER_BRIDGE && anycastSeed !== undefined) {
    const h = createHash("sha256").update(`stratum-anycast-gateway/${anycastSeed}`).digest();
    return [0x02, h[0], h[1], h[2], h[3], h[4]].map((x) => (x as number).toString(16).padStart(2, "0")).join(":");
  }
  let id = "";
  for (const f of ["/etc/machine-id", "/var/lib/dbus/machine-id", "/proc/sys/kernel/random/boot_id"]) {
    try {
      id = readFileSync(f, "utf8").trim();
      if (id) break;
    } catch {}
  }
  const h = createHash("sha256").update(`${id}/${host}/${name}`).digest();
  return [0x02, h[0], h[1], h[2], h[3], h[4]].map((x) => (x as number).toString(16).padStart(2, "0")).join(":");
}

/** In a cluster: the cluster's id. The user bridge's MAC is every network's gateway MAC, and
 * in a cluster it is the same on every node (a distributed anycast gateway: an endpoint that
 * moves keeps a valid neighbour entry for its gateway). */
/** Whether the user bridge carries the cluster's anycast gateway MAC. */
export const anycastInUse = (): boolean => anycastSeed !== undefined;

let anycastSeed: string | undefined;
export function useAnycastGateway(clusterId: string | undefined): void {
  anycastSeed = clusterId;
}
