/** Every endpoint's port: its device, configuration, cap, local addresses, programs, bridge
 * membership, flags and static FDB entry (two passes: every port's map entries, then every
 * port's programs). A port entry whose device no endpoint has is collected. */
import { listFdb } from "../netlink";
import { fdbMacs } from "../services/port-config";
import type { Reconciler } from "./reconciler";

export const ports: Reconciler = {
  name: "ports",
  scoped: "networks",
  restore(run) {
    if (run.quick) {
      // The seal vouches for every port as the last whole run found it (seal.ts).
      run.report.endpoints = run.endpoints.length;
      return;
    }
    if (run.o.only && !run.endpoints.length) return; // a limited run with none of this node's endpoints
    // Every bridge's entries, in one dump (an extension's endpoints have theirs on its bridge,
    // and one on its link in cnv-user-br0's).
    const fdbs = fdbMacs(listFdb({ bridgeOnly: true }, run.svc.nl));
    const eps = run.svc.dp.readPortMapsOnce(() => run.svc.endpoints.restore(run.endpoints, fdbs, run.links()));
    run.dropLinks(); // ports made or moved
    run.report.endpoints = eps.restored;
    run.report.errors.push(...eps.errors);
  },
  prune(run) {
    if (run.quick) return; // stm_ports is as the last whole run left it
    // One dump of the links, not a request per endpoint.
    const index = new Map(run.links().map((l) => [l.name, l.index]));
    const wanted = new Set(run.endpoints.map((e) => index.get(e.hostIf)).filter((x): x is number => x !== undefined));
    for (const ifindex of run.svc.dp.portIfindexes())
      if (!wanted.has(ifindex)) {
        run.svc.dp.deletePort(ifindex);
        run.collected(`port entry of ifindex ${ifindex}`);
      }
  },
};
