/** A VM: a tap the VMM opens by name; the guest brings the profile's MAC (the port enforces it). */
import { createTap, deleteLinkIfExists, type Link, type Rtnl } from "../netlink";
import type { Endpoint, StoredNetwork } from "../store/store";
import type { AttachBackend } from "./backend";
import type { Undo } from "./undo";

export const tapBackend: AttachBackend = {
  kind: "tap",
  plug(ep: Endpoint, n: StoredNetwork, nl: Rtnl, undo: Undo): Link {
    const link = createTap(ep.hostIf, { mtu: n.mtu }, nl);
    undo.push(`delete ${ep.hostIf}`, () => deleteLinkIfExists(ep.hostIf, nl));
    return link;
  },
};
