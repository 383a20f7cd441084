/** The node's two bridges, up, each with the MAC of this machine (never the lowest of its ports),
 * and the user bridge's extensions with their links (services/user-bridges.ts). */
import { StratumError } from "../errors";
import { bridgeLinkNumber, MGMT_BRIDGE, macvtapLowerNames, USER_BRIDGE, userBridgeName } from "../model/topology";
import { createBridge, getLink, listFdb, NL, type Rtnl, setLink } from "../netlink";
import { bridgeMac } from "../netlink/bridge-mac";
import type { Reconciler } from "./reconciler";

export { anycastInUse, bridgeMac, useAnycastGateway } from "../netlink/bridge-mac";

export function ensureBridge(nl: Rtnl, name: string): void {
  const l = getLink(name, nl);
  const mac = bridgeMac(name);
  if (!l) createBridge(name, { up: true, mac }, nl);
  else if (l.kind !== "bridge")
    throw new StratumError("INVALID", `${name} exists but is a ${l.kind ?? "non-bridge"} device`);
  else if (!l.up || l.mac !== mac) setLink(name, { up: true, mac }, nl);
}

export const bridges: Reconciler = {
  name: "bridges",
  restore(run) {
    const { nl } = run.svc;
    ensureBridge(nl, MGMT_BRIDGE);
    ensureBridge(nl, USER_BRIDGE);
    // A quick pass: the extensions and their links are as the last whole run found them (no
    // notice about them came since).
    if (run.quick) return;
    // The extension bridges there are, each with its link whole (user-bridges.ts).
    const ub = run.svc.ctx.bridges;
    const dump = run.links();
    ub.count(dump);
    const links = new Map(dump.map((l) => [l.name, l]));
    const have = new Set(ub.extensions());
    // A link left without its bridge (a bridge deleted by hand) is the bridge's too.
    for (const l of dump) {
      const n = bridgeLinkNumber(l.name);
      if (n !== undefined) have.add(n);
    }
    let changed = false;
    // One extension that cannot be repaired is that extension's error, not the whole run's.
    for (const n of [...have].sort((a, b) => a - b))
      try {
        changed = ub.ensureExtension(n, links).changed || changed;
      } catch (e) {
        changed = true;
        run.report.errors.push(`extension bridge ${userBridgeName(n)}: ${(e as Error).message}`);
      }
    if (changed) {
      run.dropLinks();
      ub.count(run.links());
    }
  },
  prune(run) {
    // cnv-user-br0's entries on a link for MACs that are no endpoint's of that extension, and
    // extensions left without endpoints. A quick pass: as the last whole run left them.
    if (run.quick) return;
    const { nl } = run.svc;
    const ub = run.svc.ctx.bridges;
    const dump = run.links();
    ub.count(dump);
    // A passthru VM's lower link's inner end is its port on a bridge.
    const byHostIf = new Map(
      run.endpoints.map((e) => [
        e.kind === "macvtap" && e.macvtapMode === "passthru" ? macvtapLowerNames(e).inner : e.hostIf,
        e.mac.toLowerCase(),
      ]),
    );
    const wanted = new Map<number, Set<string>>();
    const used = new Set<number>();
    for (const l of dump) {
      const br = l.master === undefined ? undefined : ub.bridgeOf(l.master);
      const mac = byHostIf.get(l.name);
      if (!br || br.number === 0 || mac === undefined) continue;
      used.add(br.number);
      wanted.set(br.number, (wanted.get(br.number) ?? new Set()).add(mac));
    }
    const ext = ub.extensions();
    if (!ext.length) return;
    const mains = new Map(ext.map((n) => [ub.linkIndex(n), n]));
    for (const f of listFdb({ bridge: USER_BRIDGE, bridgeOnly: true }, nl)) {
      const n = mains.get(f.ifindex);
      const mac = f.mac?.toLowerCase();
      if (n === undefined || !mac || !(f.state & NL.NUD_NOARP) || wanted.get(n)?.has(mac)) continue;
      ub.deleteMainEntry(n, mac);
      run.collected(`${USER_BRIDGE}'s FDB entry ${mac} on the link to ${userBridgeName(n)}`);
    }
    for (const n of ext)
      if (!used.has(n)) {
        ub.removeExtension(n);
        run.dropLinks();
        run.collected(`extension bridge ${userBridgeName(n)} (no endpoint left on it)`);
      }
  },
};
