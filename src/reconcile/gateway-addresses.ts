/** Each network's gateway addresses on the user bridge (tagged Stratum's, IFA_PROTO), and the
 * local-address entries that keep anyone outside from claiming them. Only Stratum's tagged
 * addresses are ever removed: the node's own address on the bridge is the operator's. */
import { USER_BRIDGE } from "../model/topology";
import { deleteAddress, getLink, listAddresses, STRATUM_ADDR_PROTO } from "../netlink";
import type { Reconciler } from "./reconciler";

export const gatewayAddresses: Reconciler = {
  name: "gateway addresses",
  scoped: "networks",
  restore(run) {
    const index = getLink(USER_BRIDGE, run.svc.nl)?.index ?? 0;
    const addresses = new Map(listAddresses({ dev: index }, run.svc.nl).map((a) => [a.cidr, a]));
    for (const n of run.networks) {
      run.svc.networks.applyGateways(n, { index, addresses });
      run.report.networks++;
    }
  },
  prune(run) {
    const wanted = new Set<string>();
    for (const n of run.networks) for (const g of run.svc.networks.gateways(n)) wanted.add(g.cidr);
    for (const a of listAddresses({ dev: USER_BRIDGE }, run.svc.nl))
      if (a.proto === STRATUM_ADDR_PROTO && !wanted.has(a.cidr)) {
        deleteAddress(USER_BRIDGE, a.cidr, run.svc.nl);
        run.collected(`address ${a.cidr} on ${USER_BRIDGE}`);
      }
  },
};
