/** Masquerading: the masqueraded networks' NAT addresses, the set of NAT addresses and the port
 * range, from every network of the store (services/nat.ts writes them whole: what no network
 * asks for goes in the same pass). The uplink's address can change under it (DHCP on the node):
 * each pass reads it again. */
import { applyNat } from "../services/nat";
import type { Reconciler } from "./reconciler";

export const masquerading: Reconciler = {
  name: "masquerading",
  scoped: "networks",
  restore(run) {
    applyNat(run.svc.ctx, run.svc.store.listNetworks());
  },
};
