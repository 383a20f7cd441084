/** A VM: a tap the VMM opens by name (each of its queues, for a multi-queue tap); the guest
 * brings the profile's MAC (the port enforces it). */
import { createTap, deleteLinkIfExists, type Link, type Rtnl } from "../netlink";
import type { Endpoint, StoredNetwork } from "../store/store";
import type { AttachBackend } from "./backend";
import type { Undo } from "./undo";

export const tapBackend: AttachBackend = {
  kind: "tap",
  plug(ep: Endpoint, n: StoredNetwork, nl: Rtnl, undo: Undo): Link {
    const link = createTap(ep.hostIf, { mtu: n.mtu, multiQueue: (ep.queues ?? 1) > 1 }, nl);
    undo.push(`delete ${ep.hostIf}`, () => deleteLinkIfExists(ep.hostIf, nl));
    return link;
  },
};
