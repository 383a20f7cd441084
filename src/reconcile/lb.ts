/** The load balancer: the stored VIPs, their backends (as this node's checks see them) and
 * their Maglev tables in this node's datapath (src/lb/service.ts apply). A run on a kernel that
 * holds them writes nothing; what nothing asks for is removed. */
import type { Reconciler } from "./reconciler";

export const lb: Reconciler = {
  name: "lb",
  scoped: "firewall",
  restore(run) {
    run.o.lb?.apply();
  },
};
