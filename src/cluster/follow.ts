/** How a node follows a batch of changes from the cluster: whether its address and name
 * servers rebuild what they serve, and what its kernel needs (a whole reconcile, one limited
 * to the networks the batch touched and the firewall, or nothing). Batches that come while a
 * run is under way are merged into the next. */
import type { ClusterChange } from "./cluster";

const SERVED = new Set<string>(["network", "endpoint", "dns"]);
const FIREWALL = new Set<string>(["network", "rules", "globalDefault", "block", "microseg", "lb", "lbHealth"]);

/** What changes the overlay's nodes: membership, and which gateways serve north-south traffic. */
const NODES = new Set<string>(["member", "node", "gatewayGroup", "gatewayActive"]);

/** What a change asks of this node's kernel: a whole run, or a run limited to some networks
 * (and the whole firewall when `firewall`, the overlay's nodes when `nodes`). */
export type ClusterWork = "all" | { networks: Set<string>; firewall: boolean; nodes: boolean };

/** The networks whose DHCP and DNS servers serve something the change touched: "all", some,
 * or none (undefined). */
export function served(c: ClusterChange): "all" | Set<string> | undefined {
  if (!c.kinds.some((k) => SERVED.has(k))) return undefined;
  return c.served === "all" ? "all" : new Set(c.served);
}

/** Two changes' networks to serve again, as one. */
export function mergeServed(
  a: "all" | Set<string> | undefined,
  b: "all" | Set<string> | undefined,
): "all" | Set<string> | undefined {
  if (!a) return b;
  if (!b) return a;
  if (a === "all" || b === "all") return "all";
  return new Set([...a, ...b]);
}

/** The kernel's part of a change; undefined when it has none (counters, DNS records). A node
 * joining, leaving or changing its address changes the overlay's nodes. */
export function clusterWork(c: ClusterChange): ClusterWork | undefined {
  // A gateway group's VIPs may be what this node's masqueraded networks translate to.
  if (c.networks === "all" || c.kinds.includes("gatewayGroup")) return "all";
  const firewall = c.kinds.some((k) => FIREWALL.has(k));
  const nodes = c.kinds.some((k) => NODES.has(k));
  if (!c.networks.length && !firewall && !nodes) return undefined;
  return { networks: new Set(c.networks), firewall, nodes };
}

/** Two changes' work as one run. */
export function mergeWork(a: ClusterWork | undefined, b: ClusterWork): ClusterWork {
  if (!a) return b;
  if (a === "all" || b === "all") return "all";
  return {
    networks: new Set([...a.networks, ...b.networks]),
    firewall: a.firewall || b.firewall,
    nodes: a.nodes || b.nodes,
  };
}
