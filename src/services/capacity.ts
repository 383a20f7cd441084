/** Room in the maps the agent fills from its store (profiles, local addresses, ports, egress
 * caps), checked before a request writes anything: a request that would overfill one fails
 * with CAPACITY and changes nothing, instead of failing half-way in the kernel or, for
 * stm_shape_state, not failing at all (stm_shape passes every packet of a cap it finds no
 * room to make a bucket for). What is in use is counted from the store, which is what
 * reconcile puts in the maps, not by walking them: cheaper (a network's profiles are its
 * host count), and what a restart must fit in either way. */

import type { MapSource } from "../datapath/firewall-tables";
import { StratumError } from "../errors";
import { type Network, profileCount } from "../model/network";
import { BRIDGE_PORTS_MAX, EXTENSION_BRIDGES_MAX, USER_BRIDGE } from "../model/topology";
import { type Endpoint, localEndpoints, type Store } from "../store/store";

export const ROOM_MAPS = [
  "stm_profiles",
  "stm_local",
  "stm_ports",
  "stm_shape_cfg",
  "stm_shape_state",
  "stm_shape_src",
  "stm_fw_scopes",
] as const;
export type RoomMap = (typeof ROOM_MAPS)[number];
export type Entries = Record<RoomMap, number>;

/** What each map's entries are, for the message. */
const TABLES: Record<RoomMap, string> = {
  stm_profiles: "the endpoint profile table",
  stm_local: "the local address table",
  stm_ports: "the port table",
  stm_shape_cfg: "the egress cap table",
  stm_shape_state: "the egress bucket table",
  stm_shape_src: "the capped source prefix table",
  stm_fw_scopes: "the firewall scope table",
};

/** The user bridge's MAC and link-local address: reconcile marks them local on every start. */
export const BRIDGE_LOCALS = 2;

const none = (): Entries => ({
  stm_profiles: 0,
  stm_local: 0,
  stm_ports: 0,
  stm_shape_cfg: 0,
  stm_shape_state: 0,
  stm_shape_src: 0,
  stm_fw_scopes: 0,
});

/** Entries a network takes itself: a profile per usable IPv4 host, its gateway address(es)
 * (NetworkService.gateways), its firewall scope, and with a cap the bucket and one source
 * prefix per subnet. (Its rules are checked by the firewall's own tables when they come.) */
export function networkEntries(n: Network): Entries {
  const capped = n.egress ? 1 : 0;
  return {
    ...none(),
    stm_profiles: profileCount(n.cidr),
    stm_local: n.cidr6 && n.gateway6 ? 2 : 1,
    stm_shape_cfg: capped,
    stm_shape_state: capped,
    stm_shape_src: capped * (n.cidr6 ? 2 : 1),
    stm_fw_scopes: 1,
  };
}

/** Entries an endpoint of `n` takes (its profile is one of the network's): a port, its
 * addresses (endpointLocals: MAC, IPv4, link-local and the IPv6 profile address when the
 * network has a subnet for it), and with a cap the bucket. */
export function endpointEntries(ep: Pick<Endpoint, "egress">, n: Network): Entries {
  const capped = ep.egress ? 1 : 0;
  return { ...none(), stm_ports: 1, stm_local: n.cidr6 ? 4 : 3, stm_shape_cfg: capped, stm_shape_state: capped };
}

/** What going from `from` to `to` adds (shrinking needs no room). */
export function growth(from: Entries, to: Entries): Entries {
  const out = none();
  for (const m of ROOM_MAPS) out[m] = Math.max(0, to[m] - from[m]);
  return out;
}

function add(into: Entries, e: Entries, times = 1): void {
  for (const m of ROOM_MAPS) into[m] += e[m] * times;
}

/** Entries the store's networks and endpoints take, exact for the maps in `maps` (others may
 * be left short). Endpoint rows are read only when a cap count is asked for: ports and
 * addresses come from each network's claimed count, which keeps an attach on a node of
 * many endpoints from decoding all of them. */
export function inUse(store: Store, maps: readonly RoomMap[] = ROOM_MAPS): Entries {
  const used = none();
  used.stm_local = BRIDGE_LOCALS;
  used.stm_fw_scopes = 1; // the global scope
  const networks = store.listNetworks();
  for (const n of networks) add(used, networkEntries(n));
  if (maps.includes("stm_shape_cfg") || maps.includes("stm_shape_state") || store.node !== undefined) {
    // A cluster node's kernel holds its own endpoints' ports, addresses and caps only: the
    // other nodes' are in the store, not in these maps.
    const byName = new Map(networks.map((n) => [n.name, n]));
    for (const ep of localEndpoints(store)) {
      const n = byName.get(ep.network);
      if (n) add(used, endpointEntries(ep, n));
    }
  } else if (maps.includes("stm_ports") || maps.includes("stm_local")) {
    for (const n of networks) add(used, endpointEntries({}, n), store.endpointCount(n.name));
  }
  return used;
}

/** How many ports each user bridge takes and how many extension bridges a node may have.
 * `STRATUM_BRIDGE_PORTS` (4 to 1,023) lowers the ports per bridge, for tests that fill bridges
 * with a few dozen endpoints; the extensions follow (each takes a port of cnv-user-br0). */
export interface BridgeLimits {
  ports: number;
  extensions: number;
}

export function bridgeLimits(): BridgeLimits {
  const v = Number(process.env.STRATUM_BRIDGE_PORTS);
  const ports = Number.isInteger(v) && v >= 4 && v <= BRIDGE_PORTS_MAX ? v : BRIDGE_PORTS_MAX;
  return { ports, extensions: Math.min(EXTENSION_BRIDGES_MAX, Math.floor((ports - 2) / 2)) };
}

/** Ports of cnv-user-br0 kept for the uplink and the overlay's device, whether they are there
 * yet or not (a restore plugs the ports before the uplink joins; an overlay may come later). */
export const DEVICE_PORTS = 2;

/** The endpoints cnv-user-br0 holds: its ports less one for each extension's link and the
 * devices' (DEVICE_PORTS). */
export const mainEndpointsMax = (l: BridgeLimits = bridgeLimits()): number => l.ports - l.extensions - DEVICE_PORTS;

/** The endpoints a node holds: cnv-user-br0's, and each extension's ports less its link's end. */
export const nodeEndpointsMax = (l: BridgeLimits = bridgeLimits()): number =>
  mainEndpointsMax(l) + l.extensions * (l.ports - 1);

/** Throws CAPACITY when `need` more entries do not fit in a map beside what the store's
 * networks and endpoints take; `what` (the request) leads the message. */
export function checkRoom(store: Store, maps: MapSource, need: Partial<Entries>, what: string): void {
  const asked = ROOM_MAPS.filter((m) => (need[m] ?? 0) > 0);
  if (!asked.length) return;
  const used = inUse(store, asked);
  const ports = need.stm_ports ?? 0;
  if (ports > 0) {
    const l = bridgeLimits();
    const max = nodeEndpointsMax(l);
    if (used.stm_ports + ports > max)
      throw new StratumError(
        "CAPACITY",
        `${what}: this node holds at most ${max} endpoints (${USER_BRIDGE} and ${l.extensions} extension bridges of ${l.ports} ports each, less the links between them and ${DEVICE_PORTS} ports kept for the uplink and the overlay); ${used.stm_ports} are attached: nothing was changed`,
      );
  }
  for (const m of asked) {
    const more = need[m] ?? 0;
    const max = maps.map(m).info.maxEntries;
    if (used[m] + more > max)
      throw new StratumError(
        "CAPACITY",
        `${what}: ${TABLES[m]} ${m} holds ${max}; ${used[m]} are in use and ${more} more do not fit: nothing was changed`,
      );
  }
}
