/** One agent per network namespace. The bridges (cnv-mgmt-br0, cnv-user-br0), their gateway
 * addresses and the uplink belong to the namespace, not to a pin root: a second agent, or an
 * uninstall for another pin root, would take them from the agent that runs there. A running
 * agent therefore listens on the abstract unix socket @stratum-agent. Abstract names are
 * scoped to the network namespace and released by the kernel when their process dies, however
 * it dies (as the pin root's flock), so no stale marker survives a crash; binding one is
 * atomic, so two agents starting at once cannot both win. A client that connects reads one
 * JSON line: who the agent is. The kernel's SO_PEERCRED names its pid even if it is too busy
 * to answer. */
import { askUnixSocket } from "../sys/os";

/** The abstract name (without its leading NUL) every agent of a network namespace listens on. */
export const OWNER_SOCKET = "stratum-agent";

export interface AgentIdentity {
  pid: number;
  version: string;
  pinRoot: string;
  stateDir: string;
  apiSocket: string;
  startedAt: string;
}

export interface NetnsAgent {
  /** From the kernel (SO_PEERCRED). */
  pid: number;
  /** What the agent said of itself; undefined when it did not answer in time, or not as an agent. */
  identity?: AgentIdentity;
}

/** The live agent of this network namespace, if any. */
export function netnsAgent(timeoutMs = 5000): NetnsAgent | undefined {
  const r = askUnixSocket(`@${OWNER_SOCKET}`, timeoutMs);
  if (!r) return undefined;
  try {
    const id = JSON.parse(r.reply) as AgentIdentity;
    if (typeof id.pinRoot === "string" && typeof id.pid === "number") return { pid: r.pid, identity: id };
  } catch {}
  return { pid: r.pid };
}

/** "pid 123, pin root /sys/fs/bpf/stratum, state /var/lib/stratum, API /run/stratum/api.sock". */
export function describeAgent(a: NetnsAgent): string {
  const id = a.identity;
  if (!id) return `pid ${a.pid}, which holds @${OWNER_SOCKET} but did not say which pin root it uses`;
  return `pid ${id.pid}, pin root ${id.pinRoot}, state ${id.stateDir}, API ${id.apiSocket}`;
}

/** Listens on @stratum-agent, answering every connection with `id`. undefined when another
 * process holds the name (the caller asks netnsAgent() who). */
export function claimNetns(id: AgentIdentity): { stop(): void } | undefined {
  const line = `${JSON.stringify(id)}\n`;
  try {
    const listener = Bun.listen({
      unix: `\0${OWNER_SOCKET}`,
      socket: {
        open(s) {
          s.end(line);
        },
        data() {},
        error() {},
      },
    });
    // The marker alone must not keep a process alive: an agent that fails to start exits.
    listener.unref();
    return { stop: () => listener.stop(true) };
  } catch (e) {
    if ((e as { code?: string }).code === "EADDRINUSE") return undefined;
    throw e;
  }
}
