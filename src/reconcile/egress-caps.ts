/** Egress caps: each capped network's bucket and the source prefixes that fill it (restored
 * here), each capped endpoint's bucket (restored with its port); nothing else. */
import { encodeShapeSrc, SHAPE_KIND, type ShapeKind } from "../datapath/shape-maps";
import { getLink } from "../netlink";
import type { Reconciler } from "./reconciler";

export const egressCaps: Reconciler = {
  name: "egress caps",
  scoped: "networks",
  restore(run) {
    for (const n of run.networks) run.svc.networks.applyEgress(n);
  },
  prune(run) {
    // A quick pass: stm_shape_cfg and stm_shape_src read as the last whole run left them.
    if (run.quick) return;
    const { dp, nl } = run.svc;
    const wantedCaps = new Set<string>();
    const wantedSources = new Set<string>();
    for (const n of run.networks)
      if (n.egress) {
        wantedCaps.add(`${SHAPE_KIND.NETWORK}/${n.id}`);
        for (const c of [n.cidr, ...(n.cidr6 ? [n.cidr6] : [])]) wantedSources.add(encodeShapeSrc(c).toString("hex"));
      }
    for (const ep of run.endpoints) {
      const i = ep.egress ? getLink(ep.hostIf, nl)?.index : undefined;
      if (i !== undefined) wantedCaps.add(`${SHAPE_KIND.ENDPOINT}/${i}`);
    }
    for (const src of dp.capSources())
      if (!wantedSources.has(src.key.toString("hex"))) {
        dp.deleteCapSourceKey(src.key);
        run.collected(`egress cap source of network id ${src.netId}`);
      }
    for (const c of dp.caps())
      if (!wantedCaps.has(`${c.kind}/${c.id}`)) {
        dp.deleteCap(c.kind as ShapeKind, c.id);
        run.collected(`egress cap ${c.kind === SHAPE_KIND.NETWORK ? "of network id" : "of ifindex"} ${c.id}`);
      }
  },
};
