/** The cluster's keyspace in etcd: every key under one prefix, one key per object, values JSON.
 * What must be unique has a key of its own that a transaction creates only if absent (a
 * network's name and id, an endpoint's name, a profile claim). Parsing a key and its value
 * gives the row the node's mirror holds; a value that does not parse is set aside, counted,
 * never applied.
 *
 *   cluster                          {id, createdAt, by}: the cluster's identity
 *   init                             {token, by, startedAt}: a `cluster init` upload under
 *                                    way; deleted with the identity's write (init.ts)
 *   counters/network|rule|dns        the last id handed out
 *   networks/<name>                  {id, vni, createdAt, spec}
 *   ids/network/<id>                 <name>: a network id is taken once
 *   endpoints/<name>                 the endpoint, with the node it runs on
 *   claims/<networkId>/<hostIndex>   <endpoint name>: an address is claimed once
 *   rules/<scope>                    {rules: [...]}: a scope's ordered rule set (0: global)
 *   fw/default                       "allow" | "deny": the global scope's default
 *   blocklist/<prefix, "/" as "_">   {family, addedAt}
 *   dns/<networkId>                  {records: [...]}: a network's records
 *   members/<name>                   {name, address, mgmtAddress, joinedAt, left?}: kept
 *   nodes/<name>                     {name, address, mgmtAddress, version, roles, startedAt}:
 *                                    under the node's lease, gone when it expires
 *   moves/<endpoint>                 {id, from, to, at, state, …}: an endpoint moving between
 *                                    nodes, deleted once the new node has taken it
 *   gateway-groups/<name>            a gateway group and `key`, its heartbeat's HMAC key
 *                                    (base64, 32 bytes; never shown)
 *   gateway-active/<name>            {node, since, why}: the node that holds the group's role
 *                                    (the HA engine writes it; its modRevision is the epoch)
 *   microseg                         the microsegmentation policy: {groups, rules, nextGroupId,
 *                                    nextRuleId}; an endpoint's group is in its own record
 *   lb                               the load balancer: {vips, nextBackendId} (src/model/vip.ts)
 *   lb-health/<backend id>           {healthy, since, detail, node}: a backend's health as the
 *                                    node its endpoint runs on checks it
 *
 * Outside the prefix, so never mirrored (renewed ~20 times a second):
 *   /stratum/ha/v1/beat/<name>       the active node's lease-bound heartbeat of a group */
import { z } from "zod";
import { StratumError } from "../errors";
import { parseBlockPrefix } from "../model/blocklist";
import type { StoredRule } from "../model/firewall-rule";
import { ADVERT_RANGE_MS, PRIORITY_RANGE } from "../model/gateway-group";
import { type MicrosegDoc, validateMicroseg } from "../model/microseg";
import { DEFAULT_LEASE_TIME, type Network } from "../model/network";
import { MAX_TAP_QUEUES } from "../model/topology";
import { type LbDoc, type LbHealthRecord, validateLb } from "../model/vip";
import type { GatewayActiveRecord, MirrorRow, MoveRecord, StoredGatewayGroup } from "../store/mirror";
import { type Endpoint, MACVTAP_MODES, type StoredDnsRecord, type StoredNetwork } from "../store/store";

export type {
  ClusterIdentity,
  GatewayActiveRecord,
  MemberRecord,
  MoveRecord,
  NodeRecord,
  StoredGatewayGroup,
} from "../store/mirror";

export const PREFIX = "/stratum/v1/";
/** The HA engine's heartbeat keys: outside PREFIX, so neither the watch nor a listing brings
 * them to the mirror. */
export const HA_BEAT_PREFIX = "/stratum/ha/v1/beat/";

export const K = {
  cluster: `${PREFIX}cluster`,
  init: `${PREFIX}init`,
  counter: (what: "network" | "rule" | "dns") => `${PREFIX}counters/${what}`,
  network: (name: string) => `${PREFIX}networks/${name}`,
  networkId: (id: number) => `${PREFIX}ids/network/${id}`,
  endpoint: (name: string) => `${PREFIX}endpoints/${name}`,
  claim: (networkId: number, hostIndex: number) => `${PREFIX}claims/${networkId}/${hostIndex}`,
  claims: (networkId: number) => `${PREFIX}claims/${networkId}/`,
  rules: (scope: number) => `${PREFIX}rules/${scope}`,
  globalDefault: `${PREFIX}fw/default`,
  block: (prefix: string) => `${PREFIX}blocklist/${prefix.replace("/", "_")}`,
  dns: (networkId: number) => `${PREFIX}dns/${networkId}`,
  member: (name: string) => `${PREFIX}members/${name}`,
  node: (name: string) => `${PREFIX}nodes/${name}`,
  move: (endpoint: string) => `${PREFIX}moves/${endpoint}`,
  moves: `${PREFIX}moves/`,
  gatewayGroup: (name: string) => `${PREFIX}gateway-groups/${name}`,
  gatewayGroups: `${PREFIX}gateway-groups/`,
  gatewayActive: (name: string) => `${PREFIX}gateway-active/${name}`,
  gatewayActives: `${PREFIX}gateway-active/`,
  haBeat: (name: string) => `${HA_BEAT_PREFIX}${name}`,
  microseg: `${PREFIX}microseg`,
  lb: `${PREFIX}lb`,
  lbHealth: (id: number) => `${PREFIX}lb-health/${id}`,
  lbHealths: `${PREFIX}lb-health/`,
};

/** Whether a node's mirror holds a key: every key under PREFIX but the address claims (they
 * exist for etcd's transactions to decide an address once; the endpoint records say the same). */
export const mirrored = (key: string): boolean => key.startsWith(PREFIX) && !key.startsWith(`${PREFIX}claims/`);

export { VNI_BASE, vniOf } from "../model/network";

export type Row = MirrorRow;

const NAME = z.string().min(1).max(64);
export const endpointSchema = z
  .object({
    name: NAME,
    network: NAME,
    ip: z.string(),
    mac: z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i),
    hostIndex: z.number().int().nonnegative(),
    kind: z.enum(["veth", "tap", "macvtap", "xsk"]),
    hostIf: z.string().min(1).max(15),
    netns: z.string().optional(),
    ifname: z.string().optional(),
    createdAt: z.string(),
    egress: z.object({ rate: z.number().int().positive(), burst: z.number().int().positive() }).optional(),
    node: NAME,
    group: z.string().min(1).max(128).optional(),
    queues: z.number().int().min(2).max(MAX_TAP_QUEUES).optional(),
    macvtapMode: z.enum(MACVTAP_MODES).optional(),
  })
  .strict();
const ENDPOINT_KEYS = new Set([
  "name",
  "network",
  "ip",
  "mac",
  "hostIndex",
  "kind",
  "hostIf",
  "netns",
  "ifname",
  "createdAt",
  "egress",
  "node",
  "group",
  "queues",
  "macvtapMode",
]);
const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i;
const isName = (x: unknown) => typeof x === "string" && x.length >= 1 && x.length <= 64;
const isPositiveInt = (x: unknown) => Number.isSafeInteger(x) && (x as number) > 0;

/** An endpoint value endpointSchema accepts, checked by hand (a fraction of the schema's
 * cost); undefined for anything else, which then goes through the schema (so nothing is
 * accepted that it refuses, and every refusal has its message). */
export function plainEndpoint(v: unknown): Endpoint | undefined {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  for (const k in o) if (!ENDPOINT_KEYS.has(k)) return undefined;
  if (!isName(o.name) || !isName(o.network) || !isName(o.node)) return undefined;
  if (typeof o.ip !== "string" || typeof o.createdAt !== "string") return undefined;
  if (typeof o.mac !== "string" || !MAC.test(o.mac)) return undefined;
  if (!Number.isSafeInteger(o.hostIndex) || (o.hostIndex as number) < 0) return undefined;
  if (o.kind !== "veth" && o.kind !== "tap" && o.kind !== "macvtap" && o.kind !== "xsk") return undefined;
  if (o.macvtapMode !== undefined && !(MACVTAP_MODES as readonly unknown[]).includes(o.macvtapMode)) return undefined;
  if (typeof o.hostIf !== "string" || o.hostIf.length < 1 || o.hostIf.length > 15) return undefined;
  if (o.netns !== undefined && typeof o.netns !== "string") return undefined;
  if (o.ifname !== undefined && typeof o.ifname !== "string") return undefined;
  if (o.group !== undefined && !(typeof o.group === "string" && o.group.length >= 1 && o.group.length <= 128))
    return undefined;
  if (
    o.queues !== undefined &&
    !(isPositiveInt(o.queues) && (o.queues as number) >= 2 && (o.queues as number) <= MAX_TAP_QUEUES)
  )
    return undefined;
  if (o.egress !== undefined) {
    const e = o.egress as Record<string, unknown>;
    if (typeof e !== "object" || e === null || Array.isArray(e)) return undefined;
    for (const k in e) if (k !== "rate" && k !== "burst") return undefined;
    if (!isPositiveInt(e.rate) || !isPositiveInt(e.burst)) return undefined;
  }
  return o as unknown as Endpoint;
}

const ruleSchema = z.object({ id: z.number().int().positive(), priority: z.number().int() }).passthrough();
const dnsSchema = z
  .object({
    id: z.number().int().positive(),
    name: z.string(),
    type: z.string(),
    value: z.string(),
    ttl: z.number().int(),
    createdAt: z.string(),
  })
  .passthrough();
const moveSchema = z
  .object({
    id: z.string().min(1).max(64),
    from: NAME,
    to: NAME,
    at: z.string(),
    state: z.enum(["requested", "handed-off"]),
    forced: z.boolean().optional(),
    configure: z.boolean().optional(),
    ct: z
      .array(
        z
          .object({ k: z.string().regex(/^[0-9a-f]+$/), v: z.string().regex(/^[0-9a-f]+$/), ttl: z.number().min(0) })
          .strict(),
      )
      .max(100_000)
      .optional(),
    handedOffAt: z.string().optional(),
  })
  .strict();

const memberSchema = z
  .object({
    name: NAME,
    address: z.string(),
    mgmtAddress: z.string().nullable(),
    joinedAt: z.string(),
    left: z.string().optional(),
  })
  .strict();
const nodeSchema = z
  .object({
    name: NAME,
    address: z.string(),
    mgmtAddress: z.string().nullable(),
    version: z.string(),
    roles: z.array(z.string()),
    startedAt: z.string(),
  })
  .strict();
const networkSchema = z
  .object({
    id: z.number().int().min(1).max(0xffff),
    vni: z.number().int().min(1).max(0xffffff),
    createdAt: z.string(),
    spec: z.record(z.string(), z.unknown()),
  })
  .strict();

const gatewayGroupSchema = z
  .object({
    name: NAME,
    vips: z.object({ ipv4: z.string().optional(), ipv6: z.string().optional() }).strict(),
    nodes: z.array(NAME).min(1),
    priority: z.record(NAME, z.number().int().min(PRIORITY_RANGE[0]).max(PRIORITY_RANGE[1])),
    preempt: z.boolean(),
    advertIntervalMs: z.number().int().min(ADVERT_RANGE_MS[0]).max(ADVERT_RANGE_MS[1]),
    createdAt: z.string(),
    key: z.string().regex(/^[A-Za-z0-9+/]{43}=$/, "the heartbeat key is not 32 bytes of base64"),
  })
  .strict();
const lbHealthSchema = z
  .object({ healthy: z.boolean(), since: z.string(), detail: z.string().max(300), node: NAME })
  .strict();
const lbSchema = z
  .object({
    vips: z.array(
      z
        .object({
          name: z.string(),
          id: z.number().int(),
          backends: z.array(z.object({ id: z.number().int() }).passthrough()),
        })
        .passthrough(),
    ),
    nextBackendId: z.number().int().positive(),
  })
  .strict();
const microsegSchema = z
  .object({
    groups: z.array(
      z
        .object({
          name: z.string(),
          id: z.number().int(),
          parent: z.string().optional(),
          description: z.string().optional(),
          createdAt: z.string(),
        })
        .strict(),
    ),
    rules: z.array(z.object({ id: z.number().int() }).passthrough()),
    nextGroupId: z.number().int().positive(),
    nextRuleId: z.number().int().positive(),
  })
  .strict();
const gatewayActiveSchema = z.object({ node: NAME, since: z.string(), why: z.string() }).strict();

const dec = new TextDecoder();

/** The row a key and its value stand for; throws INVALID (with why) for a value that does not
 * parse, undefined for a key outside the keyspace this binary knows (a newer one's). */
export function parseKey(key: string, value: Uint8Array | null): Row | undefined {
  if (!key.startsWith(PREFIX)) return undefined;
  const path = key.slice(PREFIX.length).split("/");
  const json = () => {
    if (value === null) return null;
    try {
      return JSON.parse(dec.decode(value)) as unknown;
    } catch {
      throw new StratumError("INVALID", `${key}: the value is not JSON`);
    }
  };
  const check = <T>(schema: z.ZodType<T>, v: unknown): T => {
    const r = schema.safeParse(v);
    if (!r.success) throw new StratumError("INVALID", `${key}: ${r.error.issues[0]?.message ?? "invalid"}`);
    return r.data;
  };
  const [a, b, c] = path;
  switch (a) {
    case "cluster":
      return {
        kind: "cluster",
        value:
          value === null
            ? null
            : check(z.object({ id: z.string(), createdAt: z.string(), by: z.string() }).strict(), json()),
      };
    case "counters":
      return b ? { kind: "counter", name: b } : undefined;
    case "networks": {
      if (!b) return undefined;
      const v = json();
      if (v === null) return { kind: "network", name: b, value: null };
      const n = check(networkSchema, v);
      if (typeof n.spec.cidr !== "string" || typeof n.spec.gateway !== "string")
        throw new StratumError("INVALID", `${key}: the network has no cidr or gateway`);
      const spec = {
        dhcpLeaseTime: DEFAULT_LEASE_TIME,
        dhcpRoutes: [],
        dhcpOptions: [],
        extendToLan: false,
        ...n.spec,
      } as unknown as Network;
      return { kind: "network", name: b, value: { ...spec, name: b, id: n.id, vni: n.vni, createdAt: n.createdAt } };
    }
    case "ids":
      return b === "network" && c ? { kind: "networkId", id: Number(c) } : undefined;
    case "endpoints": {
      if (!b) return undefined;
      const v = json();
      if (v === null) return { kind: "endpoint", name: b, value: null };
      // A listing brings 100,000 of these: the plain check first, the schema (and its message)
      // only for a value the plain check does not pass.
      return { kind: "endpoint", name: b, value: plainEndpoint(v) ?? (check(endpointSchema, v) as Endpoint) };
    }
    case "claims":
      return b && c ? { kind: "claim", networkId: Number(b), hostIndex: Number(c) } : undefined;
    case "rules": {
      if (b === undefined || !/^\d+$/.test(b)) return undefined;
      const v = json();
      return {
        kind: "rules",
        scope: Number(b),
        value:
          v === null ? null : (check(z.object({ rules: z.array(ruleSchema) }), v).rules as unknown as StoredRule[]),
      };
    }
    case "fw":
      return b === "default"
        ? { kind: "globalDefault", value: value === null ? null : check(z.enum(["allow", "deny"]), json()) }
        : undefined;
    case "blocklist": {
      if (!b) return undefined;
      const v = json();
      const prefix = b.replace("_", "/");
      let canonical: string;
      try {
        canonical = parseBlockPrefix(prefix).prefix;
      } catch (e) {
        throw new StratumError("INVALID", `${key}: ${(e as Error).message}`);
      }
      if (canonical !== prefix) throw new StratumError("INVALID", `${key}: not written canonically (${canonical})`);
      return {
        kind: "block",
        prefix,
        value:
          v === null
            ? null
            : check(z.object({ family: z.union([z.literal(4), z.literal(6)]), addedAt: z.string() }).strict(), v),
      };
    }
    case "dns": {
      if (!b || !/^\d+$/.test(b)) return undefined;
      const v = json();
      return {
        kind: "dns",
        networkId: Number(b),
        value:
          v === null
            ? null
            : (check(z.object({ records: z.array(dnsSchema) }), v).records as Array<Omit<StoredDnsRecord, "network">>),
      };
    }
    case "members": {
      if (!b) return undefined;
      const v = json();
      return { kind: "member", name: b, value: v === null ? null : check(memberSchema, v) };
    }
    case "nodes": {
      if (!b) return undefined;
      const v = json();
      return { kind: "node", name: b, value: v === null ? null : check(nodeSchema, v) };
    }
    case "moves": {
      if (!b) return undefined;
      const v = json();
      return { kind: "move", name: b, value: v === null ? null : (check(moveSchema, v) as MoveRecord) };
    }
    case "gateway-groups": {
      if (!b) return undefined;
      const v = json();
      if (v === null) return { kind: "gatewayGroup", name: b, value: null };
      const g = check(gatewayGroupSchema, v) as StoredGatewayGroup;
      if (g.name !== b) throw new StratumError("INVALID", `${key}: the value names gateway group ${g.name}`);
      return { kind: "gatewayGroup", name: b, value: g };
    }
    case "gateway-active": {
      if (!b) return undefined;
      const v = json();
      return {
        kind: "gatewayActive",
        name: b,
        value: v === null ? null : (check(gatewayActiveSchema, v) as GatewayActiveRecord),
      };
    }
    case "microseg": {
      if (b !== undefined) return undefined;
      const v = json();
      if (v === null) return { kind: "microseg", value: null };
      try {
        return { kind: "microseg", value: validateMicroseg(check(microsegSchema, v) as unknown as MicrosegDoc) };
      } catch (e) {
        throw new StratumError("INVALID", `${key}: ${(e as Error).message}`);
      }
    }
    case "lb-health": {
      if (!b || !/^\d{1,9}$/.test(b) || c !== undefined) return undefined;
      const v = json();
      return {
        kind: "lbHealth",
        id: Number(b),
        value: v === null ? null : (check(lbHealthSchema, v) as LbHealthRecord),
      };
    }
    case "lb": {
      if (b !== undefined) return undefined;
      const v = json();
      if (v === null) return { kind: "lb", value: null };
      try {
        return { kind: "lb", value: validateLb(check(lbSchema, v) as unknown as LbDoc) };
      } catch (e) {
        throw new StratumError("INVALID", `${key}: ${(e as Error).message}`);
      }
    }
    default:
      return undefined;
  }
}

/** The value a network is stored with. */
export function networkValue(n: StoredNetwork, vni: number): string {
  const { id, createdAt, ...spec } = n;
  return JSON.stringify({ id, vni, createdAt, spec });
}
