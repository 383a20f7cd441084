/** Every attach backend, by the endpoint kind it makes. */
import type { Endpoint } from "../store/store";
import type { AttachBackend } from "./backend";
import { tapBackend } from "./tap";
import { vethBackend } from "./veth";

export type { AttachBackend } from "./backend";
export { Undo } from "./undo";

export const BACKENDS: Record<Endpoint["kind"], AttachBackend> = { veth: vethBackend, tap: tapBackend };
