/** How an endpoint's host side comes to be: one backend per kind of attachment (a veth into a
 * container's namespace, a tap for a VM; macvtap and AF_XDP later). A backend creates the
 * device down, with the profile's MAC on the workload's side, and pushes its removal on the
 * undo list; the endpoint service does the rest, the same for every kind (programs, port
 * configuration, bridge, FDB entry, up). */
import type { Link, Rtnl } from "../netlink";
import type { Endpoint, StoredNetwork } from "../store/store";
import type { Undo } from "./undo";

export interface AttachBackend {
  readonly kind: Endpoint["kind"];
  /** Creates the host-side device of `ep` (down; it is not there yet) and returns it. */
  plug(ep: Endpoint, n: StoredNetwork, nl: Rtnl, undo: Undo): Link;
}
