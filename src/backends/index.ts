/** Every attach backend, by the endpoint kind it makes. */
import type { Endpoint } from "../store/store";
import type { AttachBackend } from "./backend";
import { plugMacvtap } from "./macvtap";
import { tapBackend } from "./tap";
import { vethBackend } from "./veth";
import { plugXsk } from "./xsk";

export type { AttachBackend } from "./backend";
export { ensureMacvtapDevice, macvtapDevice, removeMacvtapDevice } from "./macvtap";
export { Undo } from "./undo";
export { wireXskEnd } from "./xsk";

export const BACKENDS: Record<Endpoint["kind"], AttachBackend> = {
  veth: vethBackend,
  tap: tapBackend,
  macvtap: { kind: "macvtap", plug: (ep, n, nl, undo, env) => plugMacvtap(ep, n, nl, undo, env.bridges) },
  xsk: { kind: "xsk", plug: (ep, n, nl, undo, env) => plugXsk(ep, n, nl, undo, env.xsk, env.ipv6Off) },
};
