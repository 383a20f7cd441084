/** A VM on AF_XDP (docs/networks.md#vms-on-af_xdp): a veth pair in the host's namespace. The
 * port is the host end, on the bridge with the port's programs like a container's; the VM end
 * (named `<port>x`, the profile's MAC) stays off the bridge with stm_xsk_rx in XDP, which hands
 * every frame the port delivered to the VM's AF_XDP socket. What the VM sends on its sockets
 * leaves the VM end and enters the port: judged before any other workload sees it. */
import type { XskDatapath } from "../datapath/xsk";
import { xskVmEnd } from "../model/topology";
import { createVeth, deleteLinkIfExists, getLink, type Link, type Rtnl, setLink } from "../netlink";
import type { Endpoint, StoredNetwork } from "../store/store";
import type { Undo } from "./undo";

/** The VM end made whole: IPv6 off (its own stack would speak from the guest's MAC), its range
 * of the sockets' map, its program, up. Idempotent (a restore). */
export function wireXskEnd(ep: Endpoint, nl: Rtnl, xsk: XskDatapath, ipv6Off: (dev: string) => unknown): Link {
  const name = xskVmEnd(ep.hostIf);
  const end = getLink(name, nl);
  if (!end) throw new Error(`the VM end ${name} of endpoint ${ep.name} does not exist`);
  ipv6Off(name);
  xsk.allocate(end.index, 1);
  xsk.attach(end.index);
  if (!end.up) setLink(name, { up: true }, nl);
  return end;
}

export function plugXsk(
  ep: Endpoint,
  n: StoredNetwork,
  nl: Rtnl,
  undo: Undo,
  xsk: XskDatapath,
  ipv6Off: (dev: string) => unknown,
): Link {
  const vmEnd = xskVmEnd(ep.hostIf);
  const link = createVeth(ep.hostIf, vmEnd, { peerMac: ep.mac, mtu: n.mtu }, nl);
  undo.push(`delete ${ep.hostIf}`, () => deleteLinkIfExists(ep.hostIf, nl));
  const end = wireXskEnd(ep, nl, xsk, ipv6Off);
  undo.push(`release ${vmEnd}'s sockets`, () => xsk.release(end.index));
  return link;
}
