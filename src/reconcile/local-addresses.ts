/** The addresses nobody outside may claim (stm_local): the user bridge's own MAC and
 * link-local address (restored here; gateways' and endpoints' come with them), and none
 * that nothing in the store asks for. */
import { linkLocal } from "../model/network";
import { USER_BRIDGE } from "../model/topology";
import { getLink } from "../netlink";
import { endpointLocals } from "../services/port-config";
import type { Reconciler, RunState } from "./reconciler";

function bridgeLocals(run: RunState): string[] {
  const br = getLink(USER_BRIDGE, run.svc.nl);
  return br?.mac ? [br.mac, linkLocal(br.mac)] : [];
}

export const localAddresses: Reconciler = {
  name: "local addresses",
  restore(run) {
    const br = getLink(USER_BRIDGE, run.svc.nl);
    for (const a of bridgeLocals(run)) run.svc.dp.setLocal(a, br?.index ?? 0, 0);
  },
  prune(run) {
    if (run.quick) return; // stm_local reads as the last whole run left it (seal.ts)
    const wanted = new Set<string>(bridgeLocals(run));
    for (const n of run.networks) for (const g of run.svc.networks.gateways(n)) wanted.add(g.ip);
    for (const ep of run.endpoints) {
      const n = run.networkOf(ep);
      if (n) for (const a of endpointLocals(ep, n)) wanted.add(a);
    }
    for (const a of run.svc.dp.localAddresses())
      if (!wanted.has(a)) {
        run.svc.dp.deleteLocal(a);
        run.collected(`local address ${a}`);
      }
  },
};
