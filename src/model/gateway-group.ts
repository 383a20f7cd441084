/** Gateway groups (docs/gateway.md#high-availability): gateway nodes that back each other up
 * for a set of north-side addresses (the VIPs), and the timing their heartbeat follows. What a
 * declaration must pass before it is stored, and the timers every node of a group derives
 * from it. Pure. */
import { StratumError } from "../errors";
import { contains, formatIp, parseIp, parseSubnet, type Subnet } from "./ip";
import { RESERVED_RANGES } from "./network";

const NAME_RE = /^[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?$/;
const NODE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const MAX_GROUP_NODES = 8;
/** VRRP's range (RFC 5798 §5.2.4): 0 is "the master stops", 255 the address owner. */
export const PRIORITY_RANGE = [1, 254] as const;
export const DEFAULT_PRIORITY = 100;
export const ADVERT_RANGE_MS = [20, 10_000] as const;
export const DEFAULT_ADVERT_MS = 100;

export interface GatewayGroup {
  name: string;
  /** At most one of each family. */
  vips: { ipv4?: string; ipv6?: string };
  /** In order of preference: on equal priority the node listed first wins. */
  nodes: string[];
  /** Every node's priority (1-254). */
  priority: Record<string, number>;
  /** A node of higher priority takes the role back from a lower one that holds it. */
  preempt: boolean;
  advertIntervalMs: number;
  createdAt: string;
}

export interface GatewayGroupSpec {
  name: string;
  vips: string[];
  nodes: string[];
  priority?: Record<string, number>;
  preempt?: boolean;
  advertIntervalMs?: number;
}

const RESERVED = RESERVED_RANGES.map((r) => ({ ...r, subnet: parseSubnet(r.cidr) }));

/** "100ms", "1s", "0.25s", "150" (milliseconds) → milliseconds. */
export function parseInterval(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text.trim());
  if (!m) throw new StratumError("INVALID", `--advert-interval ${text}: a duration such as 100ms or 1s`);
  const ms = Number(m[1]) * (m[2] === "s" ? 1000 : 1);
  if (!Number.isInteger(ms) || ms < ADVERT_RANGE_MS[0] || ms > ADVERT_RANGE_MS[1])
    throw new StratumError(
      "INVALID",
      `--advert-interval ${text}: whole milliseconds from ${ADVERT_RANGE_MS[0]}ms to ${ADVERT_RANGE_MS[1] / 1000}s`,
    );
  return ms;
}

/** "a=200,b=100" → {a: 200, b: 100}. */
export function parsePriorities(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of text.split(",").filter((p) => p.trim() !== "")) {
    const m = /^([^=\s]+)=(\d+)$/.exec(part.trim());
    if (!m) throw new StratumError("INVALID", `--priority ${part}: NODE=N, e.g. --priority node1=200,node2=100`);
    const [, node, n] = m as unknown as [string, string, string];
    if (node in out) throw new StratumError("INVALID", `--priority names node ${node} twice`);
    out[node] = Number(n);
  }
  return out;
}

/** Validates a declaration against the groups that exist and the networks' subnets (a VIP is a
 * north-side address: never inside a network). `members`: the cluster's node names. */
export function validateGatewayGroup(
  spec: GatewayGroupSpec,
  ctx: { existing: GatewayGroup[]; subnets: Array<{ network: string; subnet: Subnet }>; members: string[] },
): Omit<GatewayGroup, "createdAt"> {
  const name = spec.name;
  if (!NAME_RE.test(name))
    throw new StratumError(
      "INVALID",
      `invalid gateway group name "${name}": 1-32 characters, lower-case letters, digits and '-', starting with a letter and not ending with '-'`,
    );
  if (ctx.existing.some((g) => g.name === name))
    throw new StratumError("CONFLICT", `gateway group ${name} already exists`);

  const vips: GatewayGroup["vips"] = {};
  if (!spec.vips.length) throw new StratumError("INVALID", "a gateway group needs --vip ADDR[,ADDR6]");
  for (const text of spec.vips) {
    let ip: ReturnType<typeof parseIp>;
    try {
      ip = parseIp(text.trim());
    } catch {
      throw new StratumError("INVALID", `--vip ${text}: not an IPv4 or IPv6 address (a VIP is one address, no /len)`);
    }
    const addr = formatIp(ip);
    const key = ip.family === 4 ? "ipv4" : "ipv6";
    if (vips[key]) throw new StratumError("INVALID", `--vip: at most one IPv${ip.family} address per group`);
    const r = RESERVED.find((x) => x.subnet.family === ip.family && contains(x.subnet, ip));
    if (r)
      throw new StratumError("INVALID", `--vip ${addr} is ${r.why} (${r.cidr}): a VIP is an ordinary unicast address`);
    const inside = ctx.subnets.find((s) => s.subnet.family === ip.family && contains(s.subnet, ip));
    if (inside)
      throw new StratumError(
        "INVALID",
        `--vip ${addr} is inside network ${inside.network}: a VIP is a north-side address (on the uplink's LAN)`,
      );
    const other = ctx.existing.find((g) => g.vips.ipv4 === addr || g.vips.ipv6 === addr);
    if (other) throw new StratumError("CONFLICT", `--vip ${addr} is already gateway group ${other.name}'s`);
    vips[key] = addr;
  }

  const nodes = spec.nodes.map((n) => n.trim()).filter((n) => n !== "");
  if (nodes.length < 2 || nodes.length > MAX_GROUP_NODES)
    throw new StratumError(
      "INVALID",
      `--nodes: from 2 to ${MAX_GROUP_NODES} gateway nodes that back each other up, not ${nodes.length}`,
    );
  for (const n of nodes) {
    if (!NODE_RE.test(n)) throw new StratumError("INVALID", `--nodes: "${n}" is not a node name`);
    if (nodes.indexOf(n) !== nodes.lastIndexOf(n)) throw new StratumError("INVALID", `--nodes names ${n} twice`);
    if (!ctx.members.includes(n))
      throw new StratumError(
        "INVALID",
        `--nodes: ${n} is not a node of this cluster (cenvero-str-ctl node list shows them)`,
      );
  }

  const priority: Record<string, number> = {};
  for (const [n, p] of Object.entries(spec.priority ?? {})) {
    if (!nodes.includes(n)) throw new StratumError("INVALID", `--priority ${n}=${p}: ${n} is not one of --nodes`);
    if (!Number.isInteger(p) || p < PRIORITY_RANGE[0] || p > PRIORITY_RANGE[1])
      throw new StratumError(
        "INVALID",
        `--priority ${n}=${p}: from ${PRIORITY_RANGE[0]} to ${PRIORITY_RANGE[1]} (higher is preferred)`,
      );
  }
  for (const n of nodes) priority[n] = spec.priority?.[n] ?? DEFAULT_PRIORITY;

  const advertIntervalMs = spec.advertIntervalMs ?? DEFAULT_ADVERT_MS;
  if (
    !Number.isInteger(advertIntervalMs) ||
    advertIntervalMs < ADVERT_RANGE_MS[0] ||
    advertIntervalMs > ADVERT_RANGE_MS[1]
  )
    throw new StratumError(
      "INVALID",
      `advertIntervalMs ${advertIntervalMs}: from ${ADVERT_RANGE_MS[0]} to ${ADVERT_RANGE_MS[1]}`,
    );
  return { name, vips, nodes, priority, preempt: spec.preempt ?? true, advertIntervalMs };
}

/** The timers of one node of a group, from RFC 5798 §6.1 with the advert interval in ms:
 * skew = (256 − priority) × advert / 256; master-down = 3 × advert + skew (≈ 361 ms at
 * 100 ms and priority 100). The holder's own deadline (`hold`) is shorter than any standby's
 * takeover (master-down at the least), so the holder has let go before anyone takes over. */
export function groupTimers(g: Pick<GatewayGroup, "advertIntervalMs" | "priority">, node: string) {
  const a = g.advertIntervalMs;
  const prio = g.priority[node] ?? DEFAULT_PRIORITY;
  const skew = ((256 - prio) * a) / 256;
  return {
    advert: a,
    skew,
    masterDown: 3 * a + skew,
    /** How often the holder renews its lease in etcd. */
    renew: a / 2,
    /** How long a renewal (or the standbys' word) holds the role: 2.5 × advert. */
    hold: 2.5 * a,
  };
}

/** The order nodes are preferred in: priority, then the order of --nodes. */
export function preferred(g: Pick<GatewayGroup, "nodes" | "priority">, a: string, b: string): number {
  const pa = g.priority[a] ?? 0;
  const pb = g.priority[b] ?? 0;
  if (pa !== pb) return pb - pa;
  return g.nodes.indexOf(a) - g.nodes.indexOf(b);
}
