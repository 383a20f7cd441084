/** Makes the kernel match the store: every reconciler's restore in order, then every prune
 * (restore first, garbage-collect after); or, limited to some networks (a change from another
 * node), their reconcilers' restores only. Idempotent: on a kernel that is already right it
 * changes nothing, and its report's `changes` (every kernel change it made, in order, from the
 * mutation journal) is empty. A new resource adds a file and a line here. */

import type { Services } from "../services/services";
import { recordMutations } from "../sys/mutations";
import { bridges } from "./bridges";
import { egressCaps } from "./egress-caps";
import { firewallScopes } from "./firewall-scopes";
import { gatewayAddresses } from "./gateway-addresses";
import { lb } from "./lb";
import { localAddresses } from "./local-addresses";
import { masquerading } from "./masquerading";
import { microseg } from "./microseg";
import { overlay } from "./overlay";
import { ports } from "./ports";
import { profiles } from "./profiles";
import { type ReconcileOptions, type ReconcileReport, type Reconciler, RunState } from "./reconciler";
import { subnets } from "./subnets";
import { uplink } from "./uplink";

export { bridgeMac, ensureBridge, useAnycastGateway } from "./bridges";
export type { OverlayOptions, ReconcileOptions, ReconcileReport, Reconciler, ReconcileScope } from "./reconciler";

/** Restored in this order: the bridges; each network's gateways, profiles, subnets, masquerading
 * and cap;
 * the firewall's scopes before the ports (a port restored into a network finds its scope in
 * place); the ports; the bridge's own local addresses; the uplink, once everything its filter
 * reads is in place (masquerading's maps with them); and last the overlay (other nodes' endpoints reach ports that are ready). */
export const RESTORE_ORDER: Reconciler[] = [
  bridges,
  gatewayAddresses,
  profiles,
  subnets,
  masquerading,
  egressCaps,
  firewallScopes,
  microseg,
  lb,
  ports,
  localAddresses,
  uplink,
  overlay,
];

/** Collected in this order, after every restore. */
export const PRUNE_ORDER: Reconciler[] = [
  ports,
  bridges,
  egressCaps,
  uplink,
  overlay,
  subnets,
  profiles,
  localAddresses,
  gatewayAddresses,
];

export function reconcile(svc: Services, o: ReconcileOptions = {}): ReconcileReport {
  const { result, changes } = recordMutations(() => {
    const run = new RunState(svc, o);
    const only = o.only;
    if (!only) {
      for (const r of RESTORE_ORDER) r.restore?.(run);
      run.dropLinks(); // the restores made ports, moved the uplink
      for (const r of PRUNE_ORDER) r.prune?.(run);
      return run.report;
    }
    // A limited run: the same order, only what the scope names, nothing collected.
    for (const r of RESTORE_ORDER)
      if (
        (r.scoped === "networks" && run.networks.length) ||
        (r.scoped === "firewall" && only.firewall) ||
        ((r === overlay || r === lb) && only.nodes)
      )
        r.restore?.(run);
    return run.report;
  });
  result.changes = changes;
  return result;
}
