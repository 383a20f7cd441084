/** The node's fixed shape: its two bridges, and the host-side name of a veth endpoint. Pure. */
import { createHash } from "node:crypto";

/** All workload traffic: every network's ports, its gateways, the uplink. */
export const USER_BRIDGE = "cnv-user-br0";
/** Agent control traffic, cluster communication, the gateway HA heartbeat: never workload policy. */
export const MGMT_BRIDGE = "cnv-mgmt-br0";

/** Host-side interface name of a veth endpoint: short, stable, unique per name. */
export function hostIfName(endpoint: string): string {
  return `stm${createHash("sha256").update(endpoint).digest("hex").slice(0, 10)}`;
}
