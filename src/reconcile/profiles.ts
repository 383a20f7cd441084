/** Every endpoint profile of every network in stm_profiles: claimed, the gateway's, or free;
 * and none of a network that is gone or outside its network's subnet (a network deleted on
 * another node of a cluster leaves its profiles here until a run collects them). A whole run
 * reads the map once in batches and compares with that. */
import { profileIdParts } from "../datapath/port-datapath";
import { hostRange, parseSubnet } from "../model/ip";
import type { Reconciler, RunState } from "./reconciler";

const snapshots = new WeakMap<RunState, Map<number, Buffer>>();

export const profiles: Reconciler = {
  name: "profiles",
  scoped: "networks",
  restore(run) {
    if (run.quick) return; // stm_profiles reads as the last whole run left it (seal.ts)
    // A limited run touches a network or two: a lookup per profile is cheaper than the map.
    const have = run.o.only ? undefined : run.svc.dp.profiles();
    if (have) snapshots.set(run, have);
    for (const n of run.networks) run.svc.networks.applyProfiles(n, have);
  },
  prune(run) {
    if (run.quick) return;
    const have = snapshots.get(run) ?? run.svc.dp.profiles();
    const ranges = new Map(
      run.networks.map((n) => {
        const r = hostRange(parseSubnet(n.cidr));
        return [n.id, { first: Number(r.first), last: Number(r.last) }];
      }),
    );
    const gone: number[] = [];
    for (const id of have.keys()) {
      const { netId, ip4 } = profileIdParts(id);
      const r = ranges.get(netId);
      if (!r || ip4 < r.first || ip4 > r.last) gone.push(id);
    }
    if (!gone.length) return;
    run.svc.dp.deleteProfileIds(gone);
    const nets = new Set(gone.map((id) => profileIdParts(id).netId));
    run.collected(`${gone.length} profile(s) of network id(s) ${[...nets].join(", ")}`);
  },
};
