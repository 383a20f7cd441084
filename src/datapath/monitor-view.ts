/** One monitoring event as scripts and the web view read it: every key present (null when it
 * does not apply), the time as wall-clock RFC 3339, the port by endpoint and network when known.
 * What `monitor -o json` prints a line of and the web view's live feed sends. */
import { FW_DEFAULT_ID } from "./firewall-maps";
import type { MonEvent } from "./monitor-ring";
import { MSEG_LOG_ID } from "./mseg-tables";
import { frameView } from "./packet";

export interface PortWho {
  endpoint: string;
  network: string;
}

export function monEventView(e: MonEvent, at: Date, who: PortWho | undefined, device: string) {
  const byDefault = e.ruleId !== undefined && (e.ruleId & FW_DEFAULT_ID) !== 0;
  const mseg = e.ruleId !== undefined && !byDefault && (e.ruleId & MSEG_LOG_ID) !== 0;
  return {
    time: at.toISOString(),
    kind: e.kind,
    ifindex: e.ifindex,
    endpoint: who?.endpoint ?? null,
    network: who?.network ?? null,
    device,
    hook: e.hook ?? null,
    reason: e.reason ?? null,
    direction: e.dir ?? null,
    action: e.action ?? null,
    rule: e.ruleId === undefined ? null : byDefault ? "default" : mseg ? "microseg" : "rule",
    ruleId: e.ruleId === undefined || byDefault ? null : mseg ? (e.ruleId & ~MSEG_LOG_ID) >>> 0 : e.ruleId,
    len: e.len,
    packet: frameView(e.packet),
  };
}
export type MonEventView = ReturnType<typeof monEventView>;
