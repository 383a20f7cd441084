/** The fabric as one document (docs/declarative.md): what `apply -f` reads, `export` writes and
 * `schema` prints as JSON Schema. Networks (their DHCP and DNS settings, egress cap, firewall
 * scope and DNS records), the global firewall scope and the blocklist. Parsing keeps every
 * node's line: every error names its line, and all of them are reported at once. Pure. */
import { isMap, isSeq, LineCounter, parseDocument } from "yaml";
import { z } from "zod";
import { StratumError } from "../errors";
import { parseBlockPrefix } from "../model/blocklist";
import { type DnsRecord, validateDnsRecord } from "../model/dns-record";
import { parseRate, parseSize, validateCap } from "../model/egress-cap";
import { ACTIONS, DIRECTIONS, PROTOS } from "../model/firewall-rule";
import { buildMicroseg, exportMicroseg, MsegRuleSpecSchema } from "../model/microseg";
import { type Network, NetworkSpecSchema, validateNetwork } from "../model/network";
import { exportRuleSet, validateRuleSet } from "../model/ruleset";

export const FABRIC_VERSION = 1;

const PortOrRange = z.union([z.number().int(), z.string()]).describe("A port, or a range A-B");

/** A firewall rule, its fields named like the flags of `firewall rule add`. */
const RuleDoc = z
  .object({
    priority: z.number().int().describe("Order of evaluation, 1-1000000, lowest first; unique in the scope"),
    action: z.enum(ACTIONS),
    direction: z.enum(DIRECTIONS).optional().describe("From the endpoint's view (default both)"),
    src: z.string().optional().describe("Source address or CIDR"),
    dst: z.string().optional().describe("Destination address or CIDR"),
    proto: z.enum(PROTOS).optional(),
    sport: PortOrRange.optional(),
    dport: PortOrRange.optional(),
    "icmp-type": z.union([z.number().int(), z.string()]).optional().describe("T or T/C"),
    log: z.boolean().optional(),
  })
  .strict();

const Scope = z
  .object({
    default: z.enum(["allow", "deny"]).optional().describe("Traffic no rule matches (absent: left as it is)"),
    rules: z
      .array(RuleDoc)
      .optional()
      .describe("The scope's whole rule set: given, it replaces the rules there (absent: left as they are)"),
  })
  .strict();

const Size = z.union([z.number().int(), z.string()]);

const Record_ = z
  .object({
    name: z.string().describe("Owner, relative to the zone (@: the zone)"),
    type: z.string().describe("A, AAAA, CNAME, TXT, SRV or MX"),
    value: z.string(),
    ttl: z.number().int().optional().describe("Seconds (default 300)"),
  })
  .strict();

const NetworkDoc = z
  .object({
    name: z.string(),
    cidr: z.string().describe("IPv4 subnet (fixed once made)"),
    gateway: z.string().describe("The gateway's IPv4 address (fixed once made)"),
    cidr6: z.string().optional().describe("IPv6 subnet (fixed once made)"),
    gateway6: z.string().optional(),
    mtu: z.number().int().optional(),
    dhcpRange: z.string().optional().describe("FIRST-LAST"),
    dhcpLeaseTime: z.number().int().optional().describe("Seconds"),
    dhcpRoutes: z.array(z.string()).optional().describe('"DST/LEN via GATEWAY"'),
    dhcpOptions: z.array(z.string()).optional().describe('"CODE=TYPE:VALUE"'),
    dnsZone: z.string().optional(),
    dnsForwarders: z.array(z.string()).optional(),
    egress: z
      .object({ rate: Size.describe("bit/s, or 100mbit, 1gbit"), burst: Size.optional().describe("bytes, or 256k") })
      .strict()
      .nullable()
      .optional()
      .describe("Cap on what the network's endpoints send off the node (null: none)"),
    extendToLan: z.boolean().optional(),
    nat: NetworkSpecSchema.shape.nat.describe("Masquerade at the uplink (null: routed)"),
    firewall: Scope.optional().describe("The network's firewall scope"),
    dns: z
      .object({ records: z.array(Record_).describe("Records of the network's zone") })
      .strict()
      .optional(),
  })
  .strict();

export const FabricSchema = z
  .object({
    version: z.literal(FABRIC_VERSION).describe("The document's format (1)"),
    networks: z.array(NetworkDoc).optional(),
    firewall: z
      .object({ global: Scope.optional().describe("The node-wide scope, judged before every network's") })
      .strict()
      .optional(),
    blocklist: z
      .array(z.string())
      .optional()
      .describe("Source prefixes dropped before any rule (a bare address is a host prefix)"),
    microseg: z
      .object({
        groups: z
          .array(
            z
              .object({
                name: z.string().describe("prod/web is under prod"),
                parent: z.string().optional(),
                description: z.string().optional(),
              })
              .strict(),
          )
          .default([]),
        rules: z.array(MsegRuleSpecSchema).default([]).describe("Entries: from a group to a group, allow or deny"),
      })
      .strict()
      .optional()
      .describe("Microsegmentation: the whole policy (given, it replaces the policy, as `microseg import`)"),
  })
  .strict()
  .describe("A Stratum fabric: what `cenvero-str-ctl apply -f` makes the fabric be");

export type FabricDoc = z.infer<typeof FabricSchema>;
export type NetworkDoc = z.infer<typeof NetworkDoc>;
export type ScopeDoc = z.infer<typeof Scope>;

/** The document's JSON Schema (what `schema` prints): editors validate and complete with it. */
export function fabricJsonSchema(): Record<string, unknown> {
  return {
    title: "Stratum fabric",
    ...(z.toJSONSchema(FabricSchema, { io: "input" }) as Record<string, unknown>),
  };
}

// ---- canonical forms ----------------------------------------------------------------------

/** A network as the fabric has it (or as a document wants it), canonical, every field. */
export interface CanonNetwork {
  name: string;
  cidr: string;
  gateway: string;
  cidr6: string | null;
  gateway6: string | null;
  mtu: number;
  dhcpRange: string;
  dhcpLeaseTime: number;
  dhcpRoutes: string[];
  dhcpOptions: string[];
  dnsZone: string;
  dnsForwarders: string[];
  egress: { rate: number; burst: number } | null;
  extendToLan: boolean;
  nat: { addresses: string[] } | null;
  firewall: { default: "allow" | "deny"; rules: Array<Record<string, unknown>> };
  records: CanonRecord[];
}

export interface CanonRecord {
  name: string;
  type: string;
  value: string;
  ttl: number;
}

/** A network as the model validates it or the API shows it. */
interface NetworkLike {
  name: string;
  cidr: string;
  gateway: string;
  cidr6?: string | null;
  gateway6?: string | null;
  mtu: number;
  dhcpRange: { first: string; last: string };
  dhcpLeaseTime: number;
  dhcpRoutes: string[];
  dhcpOptions: string[];
  dnsZone: string;
  dnsForwarders: string[];
  egress?: { rate: number; burst: number } | null;
  extendToLan: boolean;
  nat?: { addresses: string[] } | null;
}

/** The canonical form of a network (the model's, or the API's view of one). */
export function canonNetwork(n: NetworkLike, firewall: CanonNetwork["firewall"], records: CanonRecord[]): CanonNetwork {
  return {
    name: n.name,
    cidr: n.cidr,
    gateway: n.gateway,
    cidr6: n.cidr6 ?? null,
    gateway6: n.gateway6 ?? null,
    mtu: n.mtu,
    dhcpRange: `${n.dhcpRange.first}-${n.dhcpRange.last}`,
    dhcpLeaseTime: n.dhcpLeaseTime,
    dhcpRoutes: n.dhcpRoutes,
    dhcpOptions: n.dhcpOptions,
    dnsZone: n.dnsZone,
    dnsForwarders: n.dnsForwarders,
    egress: n.egress ? { rate: n.egress.rate, burst: n.egress.burst } : null,
    extendToLan: n.extendToLan,
    nat: n.nat ? { addresses: n.nat.addresses } : null,
    firewall,
    records,
  };
}

/** A canonical network's settings, as the API's create body and the document both name them. */
export function networkSettings(n: CanonNetwork) {
  return {
    name: n.name,
    cidr: n.cidr,
    gateway: n.gateway,
    ...(n.cidr6 ? { cidr6: n.cidr6, gateway6: n.gateway6 ?? undefined } : {}),
    mtu: n.mtu,
    dhcpRange: n.dhcpRange,
    dhcpLeaseTime: n.dhcpLeaseTime,
    dhcpRoutes: n.dhcpRoutes,
    dhcpOptions: n.dhcpOptions,
    dnsZone: n.dnsZone,
    dnsForwarders: n.dnsForwarders,
    egress: n.egress,
    extendToLan: n.extendToLan,
    nat: n.nat,
  };
}

export const recordKey = (r: Pick<CanonRecord, "name" | "type" | "value">) => `${r.name} ${r.type} ${r.value}`;

/** Fields a document may leave out (left as they are); the rest it must give. */
export const NETWORK_FIELDS = [
  "mtu",
  "dhcpRange",
  "dhcpLeaseTime",
  "dhcpRoutes",
  "dhcpOptions",
  "dnsZone",
  "dnsForwarders",
  "egress",
  "extendToLan",
  "nat",
] as const;
export type NetworkField = (typeof NETWORK_FIELDS)[number];
/** Fields fixed once a network is made. */
export const FIXED_FIELDS = ["cidr", "gateway", "cidr6", "gateway6"] as const;

/** The desired fabric: canonical networks, which of their fields the document gave, the global
 * scope and the blocklist (null: the document does not say). */
export interface Desired {
  networks: Array<{ net: CanonNetwork; given: Set<string>; at: Path }>;
  global: { default?: "allow" | "deny"; rules?: Array<Record<string, unknown>> } | null;
  blocklist: string[] | null;
  /** The policy as `microseg export` writes it (null: the document does not say). */
  microseg: MsegPolicy | null;
}

export interface MsegPolicy {
  groups: Array<Record<string, unknown>>;
  rules: Array<Record<string, unknown>>;
}

export type Path = Array<string | number>;

/** One problem of a document: where (its path, its line) and what. */
export interface DocError {
  path: Path;
  line: number | null;
  message: string;
}

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Canonical, with the same checks the agent makes; problems are collected, not thrown. */
export function canonical(
  doc: Omit<FabricDoc, "networks"> & { networks?: Array<NetworkDoc | undefined> },
  err: (path: Path, message: string) => void,
): Desired {
  const out: Desired = { networks: [], global: null, blocklist: null, microseg: null };
  const made: Network[] = [];
  const names = new Map<string, number>();
  (doc.networks ?? []).forEach((n, i) => {
    if (!n) return; // its shape is wrong: reported already
    const at: Path = ["networks", i];
    const first = names.get(n.name);
    if (first !== undefined) {
      err([...at, "name"], `network "${n.name}" is named twice (first at networks[${first}])`);
      return;
    }
    names.set(n.name, i);
    let net: Network;
    try {
      const { firewall, dns: _, egress: __, ...settings } = n;
      net = validateNetwork(
        {
          ...settings,
          dnsForwarders: n.dnsForwarders ?? [],
          egress: n.egress ? capOf(n.egress) : n.egress,
          extendToLan: n.extendToLan ?? false,
          defaultAction: firewall?.default ?? "allow",
        },
        made,
      );
    } catch (e) {
      const m = messageOf(e);
      const field = FIELD_WORDS.find(([k, re]) => n[k] !== undefined && re.test(m))?.[0];
      err(field ? [...at, field] : at, m);
      return;
    }
    made.push(net);
    let rules: Array<Record<string, unknown>> = [];
    if (n.firewall?.rules)
      try {
        const set = validateRuleSet({ rules: n.firewall.rules });
        rules = exportRuleSet("allow", set.rules).rules;
      } catch (e) {
        err([...at, "firewall"], messageOf(e));
      }
    const records: CanonRecord[] = [];
    const seen = new Set<string>();
    (n.dns?.records ?? []).forEach((r, k) => {
      try {
        const c: DnsRecord = validateDnsRecord(net.dnsZone, r, [], []);
        const key = recordKey(c);
        if (seen.has(key)) throw new StratumError("INVALID", `the record ${key} is given twice`);
        const shared = records.find((o) => o.name === c.name && (o.type === "CNAME" || c.type === "CNAME"));
        if (shared)
          throw new StratumError(
            "INVALID",
            `${c.name} ${c.type} and ${shared.name} ${shared.type}: a CNAME cannot share its name with other records`,
          );
        seen.add(key);
        records.push({ name: c.name, type: c.type, value: c.value, ttl: c.ttl });
      } catch (e) {
        err([...at, "dns", "records", k], messageOf(e));
      }
    });
    const given = new Set<string>(Object.keys(n).filter((k) => n[k as keyof NetworkDoc] !== undefined));
    if (n.firewall?.rules) given.add("firewall.rules");
    if (n.firewall?.default) given.add("firewall.default");
    out.networks.push({
      net: canonNetwork(net, { default: net.defaultAction, rules }, records),
      given,
      at,
    });
  });
  const g = doc.firewall?.global;
  if (g) {
    out.global = {};
    if (g.default) out.global.default = g.default;
    if (g.rules)
      try {
        out.global.rules = exportRuleSet("allow", validateRuleSet({ rules: g.rules }).rules).rules;
      } catch (e) {
        err(["firewall", "global"], messageOf(e));
      }
  }
  if (doc.microseg) {
    const built = buildMicroseg(doc.microseg, (where, message) => err(["microseg", ...pathOf(where)], message));
    out.microseg = exportMicroseg(built) as unknown as MsegPolicy;
  }
  if (doc.blocklist) {
    const set = new Set<string>();
    doc.blocklist.forEach((p, i) => {
      try {
        set.add(parseBlockPrefix(p).prefix);
      } catch (e) {
        err(["blocklist", i], messageOf(e));
      }
    });
    out.blocklist = [...set];
  }
  return out;
}

/** Which field a network's message is about, by its words (the line to point at). */
const FIELD_WORDS: Array<[keyof NetworkDoc, RegExp]> = [
  ["name", /^network name|reserved/i],
  ["dhcpRange", /DHCP range/i],
  ["dhcpLeaseTime", /lease time/i],
  ["dhcpRoutes", /route/i],
  ["dhcpOptions", /DHCP option|option \d/i],
  ["dnsForwarders", /forwarder/i],
  ["dnsZone", /zone/i],
  ["mtu", /MTU/],
  ["egress", /egress|rate|burst/i],
  ["nat", /NAT|masquerad/i],
  ["gateway6", /gateway6|IPv6 gateway/i],
  ["cidr6", /cidr6|IPv6/i],
  ["gateway", /gateway/i],
  ["cidr", /cidr|subnet|overlaps|prefix/i],
];

/** "groups[2]" → ["groups", 2]. */
const pathOf = (where: string): Path =>
  where
    .split(/[.[\]]+/)
    .filter(Boolean)
    .map((k) => (/^\d+$/.test(k) ? Number(k) : k));

function capOf(c: { rate: number | string; burst?: number | string }): { rate: number; burst: number } {
  const rate = typeof c.rate === "string" ? parseRate(c.rate) : c.rate;
  const burst = c.burst === undefined ? undefined : typeof c.burst === "string" ? parseSize(c.burst) : c.burst;
  return validateCap({ rate, burst });
}

// ---- reading a document ---------------------------------------------------------------------

export interface Parsed {
  doc: FabricDoc | null;
  desired: Desired | null;
  errors: DocError[];
  /** The line a path of the document starts on (its nearest ancestor's when it has none). */
  lineOf: (path: Path) => number | null;
}

/** Parses and checks a document (YAML or JSON text): every problem, each with its line. */
export function parseFabric(text: string): Parsed {
  const lc = new LineCounter();
  const yd = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  const errors: DocError[] = [];
  for (const e of yd.errors)
    errors.push({ path: [], line: e.linePos?.[0]?.line ?? lc.linePos(e.pos[0]).line, message: e.message });
  if (errors.length) return { doc: null, desired: null, errors, lineOf: () => null };
  const lineOf = (path: Path): number | null => {
    for (let p = path; ; p = p.slice(0, -1)) {
      const node = p.length ? yd.getIn(p, true) : yd.contents;
      const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
      if (range) return lc.linePos(range[0]).line;
      // A key of a mapping whose value is missing: the mapping's line.
      if (!p.length) return null;
    }
  };
  const raw = yd.toJS();
  if (raw === null || raw === undefined)
    return { doc: null, desired: null, errors: [{ path: [], line: 1, message: "the document is empty" }], lineOf };
  if (!isMap(yd.contents) && !isSeq(yd.contents) && typeof raw !== "object")
    return {
      doc: null,
      desired: null,
      errors: [{ path: [], line: 1, message: "a fabric document is a mapping" }],
      lineOf,
    };
  const check = (path: Path, message: string) =>
    errors.push({ path, line: lineOf(path), message: `${formatPath(path)}: ${message}` });
  const r = FabricSchema.safeParse(raw);
  if (!r.success) {
    const bad = new Set<string>();
    for (const i of r.error.issues) {
      const path = i.path.filter((k): k is string | number => typeof k !== "symbol");
      const where = i.code === "unrecognized_keys" ? [...path, ...(i.keys.slice(0, 1) as string[])] : path;
      errors.push({ path, line: lineOf(where), message: issueMessage(i, path) });
      bad.add(path.slice(0, 2).join("."));
    }
    // The parts whose shape is right are checked too: every problem at once.
    const part = partial(raw as Record<string, unknown>, bad);
    if (part) canonical(part, check);
    return { doc: null, desired: null, errors: sortErrors(errors), lineOf };
  }
  const desired = canonical(r.data, check);
  return { doc: r.data, desired: errors.length ? null : desired, errors: sortErrors(errors), lineOf };
}

/** What of a document that failed its schema can still be checked: each network, the global
 * scope and the blocklist whose own shape is right (`bad`: "networks.2", "blocklist", ...). */
function partial(raw: Record<string, unknown>, bad: Set<string>): Parameters<typeof canonical>[0] | null {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return null;
  const nets = Array.isArray(raw.networks) ? raw.networks : [];
  const networks = nets.map((n, i) => {
    if (bad.has(`networks.${i}`) || bad.has("networks")) return undefined;
    const one = NetworkDoc.safeParse(n);
    return one.success ? one.data : undefined;
  });
  const fw = FabricSchema.shape.firewall.safeParse(raw.firewall);
  const bl = FabricSchema.shape.blocklist.safeParse(raw.blocklist);
  const ms = FabricSchema.shape.microseg.safeParse(raw.microseg);
  return {
    version: FABRIC_VERSION,
    networks,
    ...(fw.success && !bad.has("firewall.global") ? { firewall: fw.data } : {}),
    ...(bl.success && !bad.has("blocklist") ? { blocklist: bl.data } : {}),
    ...(ms.success && ![...bad].some((b) => b.startsWith("microseg")) ? { microseg: ms.data } : {}),
  };
}

function sortErrors(e: DocError[]): DocError[] {
  return e.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
}

function issueMessage(i: z.core.$ZodIssue, path: Path): string {
  const at = path.length ? `${formatPath(path)}: ` : "";
  if (i.code === "unrecognized_keys")
    return `${at}unknown field${i.keys.length > 1 ? "s" : ""} ${i.keys.map((k) => `"${k}"`).join(", ")}`;
  if (i.code === "invalid_type" && i.input === undefined) return `${at}missing (${i.expected} expected)`;
  return `${at}${i.message}`;
}

export function formatPath(path: Path): string {
  return path.map((k, n) => (typeof k === "number" ? `[${k}]` : n ? `.${k}` : k)).join("");
}

/** A document's errors as one StratumError (each on its own line, with its line number). */
export function docErrors(file: string, errors: DocError[]): StratumError {
  const lines = errors.map((e) => `${file}${e.line ? `:${e.line}` : ""}: ${e.message}`);
  return new StratumError(
    "INVALID",
    `${file}: ${errors.length} problem${errors.length === 1 ? "" : "s"}, nothing applied\n${lines.join("\n")}`,
  );
}
