/** Microsegmentation: the stored policy (groups' lines, the compiled entries) in this node's
 * datapath. A run on a kernel that holds it already writes nothing; otherwise the whole policy
 * goes in as a new generation (stm_mseg.h), which also removes what nothing asks for. Ports'
 * groups are the ports' own (ports.ts). */
import type { Reconciler } from "./reconciler";

export const microseg: Reconciler = {
  name: "microseg",
  scoped: "firewall",
  restore(run) {
    run.svc.microseg.apply();
  },
};
