/** What a port is, from its endpoint and network: the configuration its programs check, the
 * addresses the uplink must never accept from outside, the FDB entries by port, and the
 * interface names the kernel takes. Pure. */
import type { PortConfig } from "../datapath/port-maps";
import { StratumError } from "../errors";
import { linkLocal, profileIp6 } from "../model/network";
import type { Endpoint, StoredNetwork } from "../store/store";

/** What a port's programs check for an endpoint of network `n` (in microsegmentation group
 * `group`, 0: none). */
export function portConfig(
  ep: Pick<Endpoint, "ip" | "mac" | "egress" | "kind" | "macvtapMode">,
  n: StoredNetwork,
  group = 0,
): PortConfig {
  return {
    ...(group ? { group } : {}),
    ...(ep.kind === "macvtap" ? { macvtap: true } : {}),
    ...(ep.macvtapMode === "private" ? { vmPrivate: true } : {}),
    ...(ep.egress ? { shaped: true } : {}),
    ...(n.extendToLan ? { lan: true } : {}),
    netId: n.id,
    ip4: ep.ip,
    mac: ep.mac,
    cidr4: n.cidr,
    gw4: n.gateway,
    ...(n.cidr6 ? { ip6: profileIp6(n.cidr6, ep.mac), cidr6: n.cidr6 } : {}),
    ...(n.gateway6 ? { gw6: n.gateway6 } : {}),
  };
}

/** The addresses of an endpoint the uplink must never accept from outside. */
export function endpointLocals(ep: Pick<Endpoint, "ip" | "mac">, n: StoredNetwork): string[] {
  return [ep.mac, ep.ip, linkLocal(ep.mac), ...(n.cidr6 ? [profileIp6(n.cidr6, ep.mac)] : [])];
}

/** An interface name the kernel takes (IFNAMSIZ: at most 15 bytes; no '/', ':' or white space;
 * not "." or ".."), checked before anything is claimed or created. */
export function checkIfName(name: string, what: string): string {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name) || name === "." || name === "..")
    throw new StratumError(
      "INVALID",
      `${what} "${name.length > 40 ? `${name.slice(0, 40)}…` : name}" is not an interface name: 1-15 letters, digits, '.', '-' or '_'`,
    );
  return name;
}

/** MACs of FDB entries by port ifindex. */
export function fdbMacs(entries: Array<{ ifindex: number; mac?: string }>): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const f of entries) {
    if (!f.mac) continue;
    const list = out.get(f.ifindex);
    if (list) list.push(f.mac.toLowerCase());
    else out.set(f.ifindex, [f.mac.toLowerCase()]);
  }
  return out;
}
