/** The node's fixed shape: its two bridges, and the host-side name of a veth endpoint. Pure. */
import { createHash } from "node:crypto";

/** All workload traffic: every network's ports, its gateways, the uplink. */
export const USER_BRIDGE = "cnv-user-br0";
/** A cluster node's VXLAN device (external mode): every network's frames to and from the
 * other nodes, a port of USER_BRIDGE (docs/overlay.md). */
export const OVERLAY_DEVICE = "cnv-vxlan0";
/** The overlay's UDP port (IANA VXLAN). */
export const VXLAN_PORT = 4789;
/** A Linux bridge numbers its ports 1 to 1,023 (BR_MAX_PORTS is 1,024; 0 is not a port's)
 * and refuses the next with EXFULL. */
export const BRIDGE_PORTS_MAX = 1023;
/** Endpoints beyond what USER_BRIDGE holds sit on extension bridges cnv-user-br1 …, each joined
 * to USER_BRIDGE by a veth pair (docs/networks.md#capacity). */
export const EXTENSION_BRIDGES_MAX = 15;

/** cnv-user-br0 (0) or extension bridge `i`. */
export const userBridgeName = (i: number): string => `cnv-user-br${i}`;

/** The number of a user bridge's name (0 for USER_BRIDGE), or undefined for another name. */
export function userBridgeNumber(name: string): number | undefined {
  const m = /^cnv-user-br(\d{1,2})$/.exec(name);
  if (!m) return undefined;
  const i = Number(m[1]);
  return i <= EXTENSION_BRIDGES_MAX && String(i) === m[1] ? i : undefined;
}

/** The two ends of extension bridge `i`'s link: `main` a port of USER_BRIDGE, `ext` of cnv-user-br`i`. */
export const bridgeLinkNames = (i: number): { main: string; ext: string } => ({
  main: `cnv-user-l${i}a`,
  ext: `cnv-user-l${i}b`,
});

/** The extension bridge a link end belongs to, or undefined for another name. */
export function bridgeLinkNumber(name: string): number | undefined {
  const m = /^cnv-user-l(\d{1,2})[ab]$/.exec(name);
  if (!m) return undefined;
  const i = Number(m[1]);
  return i >= 1 && i <= EXTENSION_BRIDGES_MAX && String(i) === m[1] ? i : undefined;
}

/** A macvtap's mode (docs/networks.md#vms-on-a-macvtap): what it means between VMs on one node. */
export const MACVTAP_MODES = ["bridge", "vepa", "private", "passthru"] as const;
export type MacvtapMode = (typeof MACVTAP_MODES)[number];

/** The macvtap lower link (docs/networks.md#vms-on-a-macvtap): a veth pair whose outer end is
 * the lower device of the VMs' macvtaps (bridge, vepa and private modes) and whose inner end is
 * a port of USER_BRIDGE (hairpin on: the bridge reflects VEPA traffic back). A passthru macvtap
 * has a pair of its own (the mode takes its lower device whole): `<port>l` and `<port>b`. */
export const MACVTAP_LOWER = { outer: "cnv-user-mvla", inner: "cnv-user-mvlb" } as const;

export function macvtapLowerNames(ep: { hostIf: string; macvtapMode?: string }): {
  outer: string;
  inner: string;
  own: boolean;
} {
  return ep.macvtapMode === "passthru"
    ? { outer: `${ep.hostIf}l`, inner: `${ep.hostIf}b`, own: true }
    : { ...MACVTAP_LOWER, own: false };
}

/** A VM on AF_XDP: the VM end of its veth pair (its AF_XDP sockets bind there), named for its port. */
export const xskVmEnd = (hostIf: string): string => `${hostIf}x`;

/** Agent control traffic, cluster communication, the gateway HA heartbeat: never workload policy. */
export const MGMT_BRIDGE = "cnv-mgmt-br0";

/** Host-side interface name of a veth endpoint: short, stable, unique per name. */
export function hostIfName(endpoint: string): string {
  return `stm${createHash("sha256").update(endpoint).digest("hex").slice(0, 10)}`;
}

/** The most queues a tap takes (the kernel's MAX_TAP_QUEUES): a VM's multi-queue tap. */
export const MAX_TAP_QUEUES = 256;
