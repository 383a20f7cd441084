/** Every network's subnets in stm_subnets (the uplink's anti-spoofing), with whether the
 * network is extended onto the LAN. */
import { encodeSubnetKey, formatSubnetKey } from "../datapath/port-maps";
import type { Reconciler } from "./reconciler";

export const subnets: Reconciler = {
  name: "subnets",
  scoped: "networks",
  restore(run) {
    for (const n of run.networks) run.svc.networks.applySubnets(n);
  },
  prune(run) {
    const wanted = new Set<string>();
    for (const n of run.networks)
      for (const c of [n.cidr, ...(n.cidr6 ? [n.cidr6] : [])]) wanted.add(encodeSubnetKey(c).toString("hex"));
    for (const k of run.svc.dp.subnetKeys())
      if (!wanted.has(k.toString("hex"))) {
        run.svc.dp.deleteSubnetKey(k);
        run.collected(`subnet entry ${formatSubnetKey(k)}`);
      }
  },
};
