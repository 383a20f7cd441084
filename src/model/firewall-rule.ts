/** Firewall rules: validation of what a user writes (flags, YAML) into normalised rules, and
 * the reference evaluator — the semantics the datapath's compiled tries must reproduce,
 * stated as a plain first-match walk. Pure. */
import { z } from "zod";
import { StratumError } from "../errors";
import { type Family, formatSubnet, parseIp, parseSubnet, type Subnet } from "./ip";
import { insertSorted } from "./sorted";

/** The node-wide firewall scope's id (networks are scopes by their ids, from 1). */
export const FW_GLOBAL_SCOPE = 0;

export const DIRECTIONS = ["ingress", "egress", "both"] as const;
export const PROTOS = ["any", "tcp", "udp", "icmp", "icmpv6"] as const;
export const ACTIONS = ["allow", "deny", "reject"] as const;
export type Direction = (typeof DIRECTIONS)[number];
export type Proto = (typeof PROTOS)[number];
export type Action = (typeof ACTIONS)[number];
export type DefaultAction = "allow" | "deny";

/** Most rules one scope holds (the datapath's rule bitmap width). */
export const MAX_RULES_PER_SCOPE = 160 * 64;
export const MAX_PRIORITY = 1_000_000;

/** A rule as written by a user: the CLI flags and the YAML fields, by the same names. */
export const RuleSpecSchema = z
  .object({
    priority: z.coerce.number().int().min(1).max(MAX_PRIORITY),
    direction: z.enum(DIRECTIONS).default("both"),
    src: z.string().optional(),
    dst: z.string().optional(),
    proto: z.enum(PROTOS).default("any"),
    sport: z.union([z.string(), z.number()]).optional(),
    dport: z.union([z.string(), z.number()]).optional(),
    "icmp-type": z.union([z.string(), z.number()]).optional(),
    action: z.enum(ACTIONS),
    log: z.boolean().default(false),
  })
  .strict();
export type RuleSpec = z.input<typeof RuleSpecSchema>;

/** A validated rule. Addresses are canonical CIDRs; IPv4-mapped IPv6 prefixes become IPv4. */
export interface Rule {
  priority: number;
  direction: Direction;
  src?: string;
  dst?: string;
  proto: Proto;
  sport?: [number, number];
  dport?: [number, number];
  icmpType?: number;
  icmpCode?: number;
  action: Action;
  log: boolean;
}

/** A stored rule: the id is stable across edits and generations (hit counters hang on it). */
export interface StoredRule extends Rule {
  id: number;
}

const MAPPED_PREFIX = 0xffffn << 32n;

/** Parses an address or CIDR; a bare address is a host prefix, ::ffff:a.b.c.d/N (N ≥ 96) is IPv4. */
export function parseRuleCidr(text: string, what: string): Subnet {
  const t = String(text).trim();
  let s: Subnet;
  try {
    s = t.includes("/")
      ? parseSubnet(t)
      : (() => {
          const ip = parseIp(t);
          return { family: ip.family, network: ip.value, prefixLen: ip.family === 4 ? 32 : 128 };
        })();
  } catch (e) {
    throw new StratumError("INVALID", `${what}: ${(e as Error).message}`);
  }
  if (s.family === 6 && s.prefixLen >= 96 && s.network >> 32n === MAPPED_PREFIX >> 32n)
    return { family: 4, network: s.network & 0xffffffffn, prefixLen: s.prefixLen - 96 };
  return s;
}

function parseRange(v: string | number, what: string, max: number): [number, number] {
  const t = String(v).trim();
  const m = t.match(/^(\d+)(?:-(\d+))?$/);
  if (!m) throw new StratumError("INVALID", `${what} "${t}" is not a number or a range A-B`);
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo > max || hi > max) throw new StratumError("INVALID", `${what} "${t}" is out of range (0-${max})`);
  if (lo > hi) throw new StratumError("INVALID", `${what} "${t}": ${lo} is greater than ${hi}`);
  return [lo, hi];
}

/** The address family a rule applies to: from its prefixes, else its protocol, else both. */
export function ruleFamily(r: Pick<Rule, "src" | "dst" | "proto">): Family | undefined {
  if (r.src) return parseSubnet(r.src).family;
  if (r.dst) return parseSubnet(r.dst).family;
  if (r.proto === "icmp") return 4;
  if (r.proto === "icmpv6") return 6;
  return undefined;
}

/** Validates and normalises one rule; the message names the field at fault. */
export function parseRule(spec: RuleSpec): Rule {
  const parsed = RuleSpecSchema.safeParse(spec);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new StratumError("INVALID", `rule: ${i?.path.join(".") || "spec"}: ${i?.message ?? "invalid"}`);
  }
  const p = parsed.data;
  const src = p.src !== undefined ? parseRuleCidr(p.src, "--src") : undefined;
  const dst = p.dst !== undefined ? parseRuleCidr(p.dst, "--dst") : undefined;
  if (src && dst && src.family !== dst.family)
    throw new StratumError(
      "INVALID",
      `--src ${formatSubnet(src)} is IPv${src.family} but --dst ${formatSubnet(dst)} is IPv${dst.family}`,
    );
  const fam = src?.family ?? dst?.family;
  if (p.proto === "icmp" && fam === 6)
    throw new StratumError("INVALID", "--proto icmp is IPv4: use --proto icmpv6 with IPv6 addresses");
  if (p.proto === "icmpv6" && fam === 4)
    throw new StratumError("INVALID", "--proto icmpv6 is IPv6: use --proto icmp with IPv4 addresses");
  const ported = p.proto === "tcp" || p.proto === "udp";
  if ((p.sport !== undefined || p.dport !== undefined) && !ported)
    throw new StratumError("INVALID", `--sport/--dport need --proto tcp or udp (not ${p.proto})`);
  const icmp = p.proto === "icmp" || p.proto === "icmpv6";
  if (p["icmp-type"] !== undefined && !icmp)
    throw new StratumError("INVALID", `--icmp-type needs --proto icmp or icmpv6 (not ${p.proto})`);
  const rule: Rule = { priority: p.priority, direction: p.direction, proto: p.proto, action: p.action, log: p.log };
  if (src) rule.src = formatSubnet(src);
  if (dst) rule.dst = formatSubnet(dst);
  if (p.sport !== undefined) rule.sport = parseRange(p.sport, "--sport", 65535);
  if (p.dport !== undefined) rule.dport = parseRange(p.dport, "--dport", 65535);
  if (p["icmp-type"] !== undefined) {
    const m = String(p["icmp-type"])
      .trim()
      .match(/^(\d{1,3})(?:\/(\d{1,3}))?$/);
    if (!m) throw new StratumError("INVALID", `--icmp-type "${p["icmp-type"]}" is not TYPE or TYPE/CODE`);
    const type = Number(m[1]);
    const code = m[2] === undefined ? undefined : Number(m[2]);
    if (type > 255 || (code !== undefined && code > 255))
      throw new StratumError("INVALID", `--icmp-type "${p["icmp-type"]}": type and code are 0-255`);
    rule.icmpType = type;
    if (code !== undefined) rule.icmpCode = code;
  }
  return rule;
}

/** The rule back in the user's words (YAML export, API). */
export function ruleSpec(r: Rule): RuleSpec & Record<string, unknown> {
  const range = (x: [number, number]) => (x[0] === x[1] ? `${x[0]}` : `${x[0]}-${x[1]}`);
  return {
    priority: r.priority,
    direction: r.direction,
    ...(r.src ? { src: r.src } : {}),
    ...(r.dst ? { dst: r.dst } : {}),
    proto: r.proto,
    ...(r.sport ? { sport: range(r.sport) } : {}),
    ...(r.dport ? { dport: range(r.dport) } : {}),
    ...(r.icmpType !== undefined
      ? { "icmp-type": r.icmpCode !== undefined ? `${r.icmpType}/${r.icmpCode}` : `${r.icmpType}` }
      : {}),
    action: r.action,
    log: r.log,
  };
}

/** Whether two rules say the same thing (priority included; the id aside): what keeps a rule's
 * id across an import, and its slot across an edit of the firewall's tables. The key and the
 * comparison read the same fields. */
export function ruleContentKey(r: Rule): string {
  return `${r.priority}|${r.direction}|${r.src ?? ""}|${r.dst ?? ""}|${r.proto}|${r.sport ?? ""}|${r.dport ?? ""}|${r.icmpType ?? ""}|${r.icmpCode ?? ""}|${r.action}|${r.log}`;
}

/** ruleContentKey(a) === ruleContentKey(b), without building the keys (an edit compares every
 * rule of a scope). */
export function sameRule(a: Rule, b: Rule): boolean {
  return (
    a.priority === b.priority &&
    a.direction === b.direction &&
    a.src === b.src &&
    a.dst === b.dst &&
    a.proto === b.proto &&
    a.sport?.[0] === b.sport?.[0] &&
    a.sport?.[1] === b.sport?.[1] &&
    a.dport?.[0] === b.dport?.[0] &&
    a.dport?.[1] === b.dport?.[1] &&
    a.icmpType === b.icmpType &&
    a.icmpCode === b.icmpCode &&
    a.action === b.action &&
    a.log === b.log
  );
}

/** `rules` in priority order: the array itself when it already is (the store keeps sets so,
 * and an edit's copy is in order: a copy of 10,000 each time added up), else a sorted copy.
 * Callers never change the array they get. */
export function byPriority<R extends { priority: number }>(rules: readonly R[]): readonly R[] {
  for (let i = 1; i < rules.length; i++)
    if ((rules[i - 1] as R).priority > (rules[i] as R).priority)
      return rules.slice().sort((a, b) => a.priority - b.priority);
  return rules;
}

/** A copy of `rules` (in priority order) with `r` in its place: still in order, so the checks
 * after it need not sort. */
export function withRuleInPlace<R extends { priority: number }>(rules: readonly R[], r: R): R[] {
  return insertSorted(rules, r, (x) => x.priority);
}

/** Refuses a scope of `n` rules when that is more than one scope holds. */
export function checkRuleCount(n: number): void {
  if (n > MAX_RULES_PER_SCOPE)
    throw new StratumError(
      "CAPACITY",
      `${n} rules exceed the ${MAX_RULES_PER_SCOPE} one network (or the global scope) can hold`,
    );
}

/** Checks a whole rule set: unique priorities and the size limit. Returns it sorted (itself
 * when it already is: byPriority). */
export function checkRuleSet<R extends Rule>(rules: readonly R[]): readonly R[] {
  checkRuleCount(rules.length);
  const sorted = byPriority(rules);
  for (let i = 1; i < sorted.length; i++)
    if (sorted[i]?.priority === sorted[i - 1]?.priority)
      throw new StratumError("INVALID", `two rules have priority ${sorted[i]?.priority}: priorities are unique`);
  return sorted;
}

// ---- reference evaluator ---------------------------------------------------------------

/** A packet as classification sees it. For ICMP, sport is the type and dport the code. */
export interface FwPacket {
  dir: "ingress" | "egress";
  src: string;
  dst: string;
  /** IP protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6, ...). */
  proto: number;
  sport: number;
  dport: number;
}

export interface FwVerdict {
  action: Action;
  /** The deciding rule's id; undefined: the default action. */
  ruleId?: number;
}

/** IPv4-mapped IPv6 addresses count as IPv4. */
function normAddr(text: string): { family: Family; value: bigint } {
  const ip = parseIp(text);
  if (ip.family === 6 && ip.value >> 32n === 0xffffn) return { family: 4, value: ip.value & 0xffffffffn };
  return ip;
}

function addrMatches(cidr: string | undefined, fam: Family | undefined, a: { family: Family; value: bigint }): boolean {
  if (!cidr) return fam === undefined || fam === a.family;
  const s = parseSubnet(cidr);
  if (s.family !== a.family) return false;
  const bits = s.family === 4 ? 32 : 128;
  return a.value >> BigInt(bits - s.prefixLen) === s.network >> BigInt(bits - s.prefixLen);
}

/** The protocol class of a packet: which `proto` values of a rule it can match. */
export function protoClass(family: Family, proto: number): "tcp" | "udp" | "icmp" | "icmpv6" | "other" {
  if (proto === 6) return "tcp";
  if (proto === 17) return "udp";
  if (proto === 1 && family === 4) return "icmp";
  if (proto === 58 && family === 6) return "icmpv6";
  return "other";
}

export function ruleMatches(r: Rule, p: FwPacket, family: Family): boolean {
  if (r.direction !== "both" && r.direction !== p.dir) return false;
  const pc = protoClass(family, p.proto);
  if (r.proto !== "any" && r.proto !== pc) return false;
  const fam = ruleFamily(r);
  if (!addrMatches(r.src, fam, normAddr(p.src))) return false;
  if (!addrMatches(r.dst, fam, normAddr(p.dst))) return false;
  const inRange = (x: [number, number] | undefined, v: number) => !x || (v >= x[0] && v <= x[1]);
  if (pc === "tcp" || pc === "udp") return inRange(r.sport, p.sport) && inRange(r.dport, p.dport);
  if (r.icmpType !== undefined && r.icmpType !== p.sport) return false;
  if (r.icmpCode !== undefined && r.icmpCode !== p.dport) return false;
  return true;
}

/** First match in priority order, else the default. */
export function evaluate(rules: StoredRule[], def: DefaultAction, p: FwPacket): FwVerdict {
  const family = parseIp(p.src).family;
  for (const r of [...rules].sort((a, b) => a.priority - b.priority))
    if (ruleMatches(r, p, family)) return { action: r.action, ruleId: r.id };
  return { action: def };
}
