/** The load balancer: the stored VIPs, their backends (as their nodes' checks see them) and
 * their Maglev tables in this node's datapath (src/lb/service.ts apply). A run on a kernel that
 * holds them writes nothing; what nothing asks for is removed. A limited run takes it with the
 * firewall (VIPs, published health) and with the cluster's nodes (a node gone takes its
 * backends out). */
import type { Reconciler } from "./reconciler";

export const lb: Reconciler = {
  name: "lb",
  scoped: "firewall",
  restore(run) {
    run.o.lb?.apply();
  },
};
