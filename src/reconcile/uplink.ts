/** The uplink: its filter (XDP, and the tcx egress program) goes on and its stm_ifaces entry
 * is written before the NIC joins the user bridge, so nothing from outside reaches a port
 * unfiltered and every port knows a frame bridged from it came straight from the LAN. A cluster
 * node's frames leave it with the NIC's own MAC (bpf/include/stm_uplink_mac.h). */
import { StratumError } from "../errors";
import { bridgeLinkNames, macvtapLowerNames, OVERLAY_DEVICE, USER_BRIDGE } from "../model/topology";
import { getLink, setLink } from "../netlink";
import { anycastInUse, bridgeMac } from "./bridges";
import type { Reconciler } from "./reconciler";

export const uplink: Reconciler = {
  name: "uplink",
  restore(run) {
    const name = run.o.uplink;
    if (!name) return;
    const { dp, nl } = run.svc;
    const up = getLink(name, nl);
    if (!up) throw new StratumError("NOT_FOUND", `uplink ${name} does not exist`);
    const br = getLink(USER_BRIDGE, nl);
    dp.setIface(up.index, { kind: "uplink" });
    // A cluster node speaks on the LAN with the uplink's own MAC, not the anycast gateway's.
    dp.setUplinkMac(anycastInUse() && up.mac ? { anycast: bridgeMac(USER_BRIDGE), own: up.mac } : null);
    const attach = dp.attachUplink(up.index);
    if (up.master !== br?.index || !up.up) setLink(name, { master: USER_BRIDGE, up: true }, nl);
    run.report.uplink = { name, ifindex: up.index, attach };
  },
  prune(run) {
    const keep = run.report.uplink?.ifindex;
    // The overlay device's entry is the overlay's (reconcile/overlay.ts).
    const overlay = run.o.overlay ? getLink(OVERLAY_DEVICE, run.svc.nl)?.index : undefined;
    // The links' ends are the bridges' (reconcile/bridges.ts). A quick pass asks for the
    // known extensions' links by name: a dump carries every port of the node.
    const ub = run.svc.ctx.bridges;
    const links = run.quick
      ? ub.linkEnds(
          ub
            .extensions()
            .flatMap((n) => Object.values(bridgeLinkNames(n)))
            .map((name) => getLink(name, run.svc.nl))
            .filter((l) => l !== null),
        )
      : ub.linkEnds(run.links());
    // VMs' macvtaps and their lower links' inner ends are the endpoints' (endpoint-service.ts).
    const vmNames = run.endpoints
      .filter((e) => e.kind === "macvtap")
      .flatMap((e) => [e.hostIf, macvtapLowerNames(e).inner]);
    if (vmNames.length) {
      const byName = run.quick ? undefined : new Map(run.links().map((l) => [l.name, l.index]));
      for (const name of vmNames) {
        const i = byName ? byName.get(name) : getLink(name, run.svc.nl)?.index;
        if (i !== undefined) links.add(i);
      }
    }
    for (const i of run.svc.dp.ifaceIndexes())
      if (i !== keep && i !== overlay && !links.has(i)) {
        run.svc.dp.deleteIface(i);
        run.collected(`interface entry of ifindex ${i}`);
      }
  },
};
