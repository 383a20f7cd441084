/** What the troubleshooting commands (trace, monitor) read without the agent: the pins under
 * the pin root and the agent's state database, opened read-only. They run in the node's
 * network namespace, where the ports' interface indexes mean something. */
import { join } from "node:path";
import { requirePrivilege } from "../datapath/probe";
import { SqliteStore } from "../store/sqlite";
import { type ApiFlags, client } from "./api-flags";
import { DEFAULT_PIN_ROOT } from "./datapath-commands";

export const DEFAULT_STATE_DIR = "/var/lib/stratum";

/** Not given: the running agent's (asked through --api-socket/--api-url), else the defaults. */
export const localArgs = {
  "pin-root": {
    type: "string",
    description: `bpffs directory holding Stratum's pins (default: the running agent's, else ${DEFAULT_PIN_ROOT})`,
    valueHint: "DIR",
  },
  "state-dir": {
    type: "string",
    description: `The agent's state directory: endpoint and network names, rules (default: the running agent's, else ${DEFAULT_STATE_DIR})`,
    valueHint: "DIR",
  },
} as const;

/** The pin root and state directory a troubleshooting command reads: the flags, else those of
 * the agent the API flags name (so `monitor --api-socket X` watches that agent), else the
 * defaults. The agent is asked only when a path is missing, and briefly. */
export async function localPaths(args: ApiFlags & { "pin-root"?: string; "state-dir"?: string }): Promise<{
  pinRoot: string;
  stateDir: string;
  from: "flags" | "agent" | "defaults";
}> {
  const pinRoot = args["pin-root"];
  const stateDir = args["state-dir"];
  if (pinRoot && stateDir) return { pinRoot, stateDir, from: "flags" };
  try {
    const st = await Promise.race([
      client(args).status(),
      Bun.sleep(1000).then(() => {
        throw new Error("timeout");
      }),
    ]);
    return { pinRoot: pinRoot ?? st.pinRoot, stateDir: stateDir ?? st.stateDir, from: "agent" };
  } catch {
    return { pinRoot: pinRoot ?? DEFAULT_PIN_ROOT, stateDir: stateDir ?? DEFAULT_STATE_DIR, from: "defaults" };
  }
}

export function openStateReadOnly(stateDir: string): SqliteStore {
  // The pins (bpffs, mode 0700) and the state (0700) are root's: say so, not "not found".
  requirePrivilege("reading the agent's pins and state");
  return new SqliteStore(join(stateDir, "stratum.db"), { readonly: true });
}
