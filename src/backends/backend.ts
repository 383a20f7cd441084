/** How an endpoint's host side comes to be: one backend per kind of attachment (a veth into a
 * container's namespace, a tap or a macvtap for a VM). A backend creates the
 * device down, with the profile's MAC on the workload's side, and pushes its removal on the
 * undo list; the endpoint service does the rest, the same for every kind (programs, port
 * configuration, bridge, FDB entry, up). */
import type { Link, Rtnl } from "../netlink";
import type { Endpoint, StoredNetwork } from "../store/store";
import type { Undo } from "./undo";

export interface AttachBackend {
  readonly kind: Endpoint["kind"];
  /** Creates the host-side device of `ep` (down; it is not there yet) and returns it. */
  plug(ep: Endpoint, n: StoredNetwork, nl: Rtnl, undo: Undo, env: { bridges: MacvtapLowers }): Link;
}

/** What a macvtap backend asks of the node's bridges (services/user-bridges.ts has it): its
 * lower link made or repaired, and removed. */
export interface MacvtapLowers {
  ensureMacvtapLower(names: { outer: string; inner: string; own: boolean }): { outer: Link };
  removeMacvtapLower(names: { outer: string; inner: string }): void;
}
