/** A container: a veth pair, the workload's end moved into its network namespace under its
 * interface name with the profile's MAC, the host's end named for the endpoint. */
import { existsSync } from "node:fs";
import { StratumError } from "../errors";
import { createVeth, deleteLinkIfExists, type Link, netnsPath, type Rtnl } from "../netlink";
import type { Endpoint, StoredNetwork } from "../store/store";
import type { AttachBackend } from "./backend";
import type { Undo } from "./undo";

export const vethBackend: AttachBackend = {
  kind: "veth",
  plug(ep: Endpoint, n: StoredNetwork, nl: Rtnl, undo: Undo): Link {
    if (!ep.netns || !existsSync(netnsPath(ep.netns)))
      throw new StratumError("NOT_FOUND", `network namespace ${ep.netns} of endpoint ${ep.name} does not exist`);
    const link = createVeth(ep.hostIf, ep.ifname ?? "eth0", { peerNetns: ep.netns, peerMac: ep.mac, mtu: n.mtu }, nl);
    undo.push(`delete ${ep.hostIf}`, () => deleteLinkIfExists(ep.hostIf, nl));
    return link;
  },
};
