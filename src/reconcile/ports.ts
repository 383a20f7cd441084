/** Every endpoint's port: its device, configuration, cap, local addresses, programs, bridge
 * membership, flags and static FDB entry (two passes: every port's map entries, then every
 * port's programs). A port entry whose device no endpoint has is collected. */
import { listFdb, listLinks } from "../netlink";
import { fdbMacs } from "../services/port-config";
import type { Reconciler } from "./reconciler";

export const ports: Reconciler = {
  name: "ports",
  scoped: "networks",
  restore(run) {
    if (run.o.only && !run.endpoints.length) return; // a limited run with none of this node's endpoints
    // Every user bridge's FDB (an extension's endpoints have theirs there, and an entry on
    // their link in cnv-user-br0's).
    const entries = [];
    for (const b of run.svc.ctx.bridges.fill()) entries.push(...listFdb({ bridge: b.name }, run.svc.nl));
    const fdbs = fdbMacs(entries);
    const eps = run.svc.endpoints.restore(run.endpoints, fdbs);
    run.report.endpoints = eps.restored;
    run.report.errors.push(...eps.errors);
  },
  prune(run) {
    // One dump of the links, not a request per endpoint.
    const index = new Map(listLinks(run.svc.nl).map((l) => [l.name, l.index]));
    const wanted = new Set(run.endpoints.map((e) => index.get(e.hostIf)).filter((x): x is number => x !== undefined));
    for (const ifindex of run.svc.dp.portIfindexes())
      if (!wanted.has(ifindex)) {
        run.svc.dp.deletePort(ifindex);
        run.collected(`port entry of ifindex ${ifindex}`);
      }
  },
};
