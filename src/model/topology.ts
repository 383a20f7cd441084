/** The node's fixed shape: its two bridges, and the host-side name of a veth endpoint. Pure. */
import { createHash } from "node:crypto";

/** All workload traffic: every network's ports, its gateways, the uplink. */
export const USER_BRIDGE = "cnv-user-br0";
/** A cluster node's VXLAN device (external mode): every network's frames to and from the
 * other nodes, a port of USER_BRIDGE (docs/overlay.md). */
export const OVERLAY_DEVICE = "cnv-vxlan0";
/** The overlay's UDP port (IANA VXLAN). */
export const VXLAN_PORT = 4789;
/** Agent control traffic, cluster communication, the gateway HA heartbeat: never workload policy. */
export const MGMT_BRIDGE = "cnv-mgmt-br0";

/** Host-side interface name of a veth endpoint: short, stable, unique per name. */
export function hostIfName(endpoint: string): string {
  return `stm${createHash("sha256").update(endpoint).digest("hex").slice(0, 10)}`;
}
