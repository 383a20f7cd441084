/** Which endpoint a port is, by the port's ifindex: what `monitor` and the web view's live feed
 * name an event's port by. From the store's endpoints and this namespace's links. */
import { getLink } from "../netlink";
import type { Store } from "../store/store";

export interface PortName {
  endpoint: string;
  network: string;
  hostIf: string;
}

/** ifindex → endpoint, network and host interface of every endpoint whose port exists here. */
export function portNames(store: Pick<Store, "listEndpoints">): Map<number, PortName> {
  const byIfindex = new Map<number, PortName>();
  for (const e of store.listEndpoints()) {
    const l = getLink(e.hostIf);
    if (l) byIfindex.set(l.index, { endpoint: e.name, network: e.network, hostIf: e.hostIf });
  }
  return byIfindex;
}
