/** Every endpoint profile of every network in stm_profiles: claimed, the gateway's, or free. */
import type { Reconciler } from "./reconciler";

export const profiles: Reconciler = {
  name: "profiles",
  restore(run) {
    for (const n of run.networks) run.svc.networks.applyProfiles(n);
  },
};
