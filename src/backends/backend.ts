/** How an endpoint's host side comes to be: one backend per kind of attachment (a veth into a
 * container's namespace, a tap or a macvtap for a VM). A backend creates the
 * device down, with the profile's MAC on the workload's side, and pushes its removal on the
 * undo list; the endpoint service does the rest, the same for every kind (programs, port
 * configuration, bridge, FDB entry, up). */
import type { XskDatapath } from "../datapath/xsk";
import type { Link, Rtnl } from "../netlink";
import type { Endpoint, StoredNetwork } from "../store/store";
import type { Undo } from "./undo";

export interface AttachBackend {
  readonly kind: Endpoint["kind"];
  /** Creates the host-side device of `ep` (down; it is not there yet) and returns it. */
  plug(ep: Endpoint, n: StoredNetwork, nl: Rtnl, undo: Undo, env: BackendEnv): Link;
}

/** What backends ask of the node beyond netlink. */
export interface BackendEnv {
  bridges: MacvtapLowers;
  xsk: XskDatapath;
  /** Turns IPv6 off on a device (services/user-bridges.ts). */
  ipv6Off: (dev: string) => unknown;
}

/** What a macvtap backend asks of the node's bridges (services/user-bridges.ts has it): its
 * lower link made or repaired, and removed. */
export interface MacvtapLowers {
  ensureMacvtapLower(names: { outer: string; inner: string; own: boolean }): { outer: Link };
  removeMacvtapLower(names: { outer: string; inner: string }): void;
}
