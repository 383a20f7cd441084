/** What the troubleshooting commands (trace, monitor) read without the agent: the pins under
 * the pin root and the agent's state database, opened read-only. They run in the node's
 * network namespace, where the ports' interface indexes mean something. */
import { join } from "node:path";
import { requirePrivilege } from "../datapath/probe";
import { getLink } from "../netlink";
import { SqliteStore } from "../store/sqlite";
import { DEFAULT_PIN_ROOT } from "./datapath";

export const localArgs = {
  "pin-root": {
    type: "string",
    description: "bpffs directory holding Stratum's pins",
    default: DEFAULT_PIN_ROOT,
    valueHint: "DIR",
  },
  "state-dir": {
    type: "string",
    description: "The agent's state directory (endpoint and network names, rules)",
    default: "/var/lib/stratum",
    valueHint: "DIR",
  },
} as const;

export function openStateReadOnly(stateDir: string): SqliteStore {
  // The pins (bpffs, mode 0700) and the state (0700) are root's: say so, not "not found".
  requirePrivilege("reading the agent's pins and state");
  return new SqliteStore(join(stateDir, "stratum.db"), { readonly: true });
}

export interface PortName {
  endpoint: string;
  network: string;
  hostIf: string;
}

/** ifindex → endpoint, network and host interface of every endpoint whose port exists here. */
export function portNames(store: SqliteStore): Map<number, PortName> {
  const byIfindex = new Map<number, PortName>();
  for (const e of store.listEndpoints()) {
    const l = getLink(e.hostIf);
    if (l) byIfindex.set(l.index, { endpoint: e.name, network: e.network, hostIf: e.hostIf });
  }
  return byIfindex;
}
