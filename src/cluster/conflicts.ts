/** What of a node's own (single-node) state a cluster does not hold exactly so: the reasons a
 * node with state of its own may not join. Joining replaces the node's state with the
 * cluster's, so every local object must be there as it is here: a network with the same id,
 * subnets, gateways and settings; an endpoint with the same network, address and MAC, on this
 * node; each rule at its priority; the defaults; every blocklisted prefix; every DNS record.
 * What the cluster has beyond that comes to the node, and is no conflict. Pure. */
import type { DefaultAction, StoredRule } from "../model/firewall-rule";
import { FW_GLOBAL_SCOPE } from "../model/firewall-rule";
import type { MirrorRow } from "../store/mirror";
import type { Endpoint, StoredDnsRecord, StoredNetwork } from "../store/store";

/** The local state, as a store reads it. */
export interface LocalState {
  listNetworks(): StoredNetwork[];
  listEndpoints(): Endpoint[];
  listRules(scope: number): StoredRule[];
  getGlobalDefault(): DefaultAction;
  blockList(): Array<{ prefix: string }>;
  listDnsRecords(): StoredDnsRecord[];
}

/** One line per conflict, local objects in order: networks, endpoints, rules, defaults,
 * blocklist, DNS records. `rows`: the cluster's keys, parsed. */
export function stateConflicts(local: LocalState, rows: Iterable<MirrorRow>, node: string): string[] {
  const nets = new Map<string, StoredNetwork & { vni: number }>();
  const netById = new Map<number, string>();
  const eps = new Map<string, Endpoint>();
  const rules = new Map<number, StoredRule[]>();
  const dns = new Map<number, Array<Omit<StoredDnsRecord, "network">>>();
  const blocks = new Set<string>();
  let globalDefault: DefaultAction = "allow";
  for (const r of rows)
    switch (r.kind) {
      case "network":
        if (r.value) {
          nets.set(r.name, r.value);
          netById.set(r.value.id, r.name);
        }
        break;
      case "endpoint":
        if (r.value) eps.set(r.name, r.value);
        break;
      case "rules":
        if (r.value) rules.set(r.scope, r.value);
        break;
      case "dns":
        if (r.value) dns.set(r.networkId, r.value);
        break;
      case "block":
        if (r.value) blocks.add(r.prefix);
        break;
      case "globalDefault":
        globalDefault = r.value ?? "allow";
        break;
    }

  const out: string[] = [];
  const localNets = local.listNetworks();
  for (const n of localNets) {
    const c = nets.get(n.name);
    if (!c) {
      const holder = netById.get(n.id);
      out.push(
        `network ${n.name} (${n.cidr}, id ${n.id}) is not in the cluster${holder ? ` (id ${n.id} is network ${holder} there)` : ""}`,
      );
      continue;
    }
    if (c.id !== n.id)
      out.push(`network ${n.name} has id ${n.id} here and ${c.id} in the cluster (its profile MACs would change)`);
    for (const field of specFields(n, c))
      out.push(`network ${n.name}: ${field} is ${show(at(n, field))} here and ${show(at(c, field))} in the cluster`);
  }

  for (const e of local.listEndpoints()) {
    const c = eps.get(e.name);
    if (!c) {
      out.push(`endpoint ${e.name} (${e.ip} in ${e.network}) is not in the cluster`);
      continue;
    }
    const diff: string[] = [];
    if (c.network !== e.network) diff.push(`network ${e.network} here, ${c.network} in the cluster`);
    if (c.ip !== e.ip) diff.push(`address ${e.ip} here, ${c.ip} in the cluster`);
    if (c.mac !== e.mac) diff.push(`MAC ${e.mac} here, ${c.mac} in the cluster`);
    if (!same(c.egress, e.egress))
      diff.push(`egress cap ${show(e.egress ?? "none")} here, ${show(c.egress ?? "none")} in the cluster`);
    if (c.node !== node) diff.push(`it runs on node ${c.node} in the cluster, not on this node (${node})`);
    if (diff.length) out.push(`endpoint ${e.name}: ${diff.join("; ")}`);
  }

  const scopes: Array<{ local: number; cluster: number | undefined; name: string }> = [
    { local: FW_GLOBAL_SCOPE, cluster: FW_GLOBAL_SCOPE, name: "the global scope" },
    ...localNets.map((n) => ({ local: n.id, cluster: nets.get(n.name)?.id, name: `network ${n.name}` })),
  ];
  for (const s of scopes) {
    const mine = local.listRules(s.local);
    // A network the cluster lacks is a conflict above already; its rules go with it.
    if (!mine.length || s.cluster === undefined) continue;
    const theirs = new Map((rules.get(s.cluster) ?? []).map((r) => [r.priority, r]));
    for (const r of mine) {
      const c = theirs.get(r.priority);
      if (!c) out.push(`${s.name}: rule ${r.id} (priority ${r.priority}: ${describeRule(r)}) is not in the cluster`);
      else if (!same(ruleBody(r), ruleBody(c)))
        out.push(
          `${s.name}: the rule at priority ${r.priority} is "${describeRule(r)}" here and "${describeRule(c)}" in the cluster`,
        );
    }
  }

  const def = local.getGlobalDefault();
  if (def !== globalDefault) out.push(`the global default is ${def} here and ${globalDefault} in the cluster`);

  const missing = local
    .blockList()
    .map((b) => b.prefix)
    .filter((p) => !blocks.has(p));
  if (missing.length)
    out.push(
      `${missing.length} blocklisted prefix(es) here are not in the cluster: ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", …" : ""}`,
    );

  for (const r of local.listDnsRecords()) {
    const netId = nets.get(r.network)?.id;
    if (netId === undefined) continue; // the network's conflict says it
    const c = (dns.get(netId) ?? []).find((x) => x.name === r.name && x.type === r.type && x.value === r.value);
    const what = `network ${r.network}: DNS record ${r.name} ${r.type} ${r.value}`;
    if (!c) out.push(`${what} is not in the cluster`);
    else if (c.ttl !== r.ttl) out.push(`${what} has TTL ${r.ttl} here and ${c.ttl} in the cluster`);
  }
  return out;
}

/** The settings of two networks that differ (identity and timestamps aside). */
function specFields(a: StoredNetwork, b: StoredNetwork): string[] {
  const skip = new Set(["name", "id", "vni", "createdAt"]);
  // Subnets and gateways first: the differences that matter most read first.
  const first = ["cidr", "gateway", "cidr6", "gateway6"];
  const keys = [...new Set([...first, ...Object.keys(a), ...Object.keys(b)])].filter((k) => !skip.has(k));
  return keys.filter((k) => !same(at(a, k), at(b, k)));
}

const at = (o: object, k: string): unknown => (o as Record<string, unknown>)[k];

/** Equal as JSON with keys in order; absent, undefined and null are one. */
function same(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  if (v === undefined || v === null) return "null";
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (typeof v === "object")
    return `{${Object.keys(v as object)
      .filter((k) => at(v as object, k) !== undefined && at(v as object, k) !== null)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(at(v as object, k))}`)
      .join(",")}}`;
  return JSON.stringify(v);
}

function show(v: unknown): string {
  if (v === undefined || v === null) return "unset";
  if (typeof v === "string") return v;
  const range = v as { first?: unknown; last?: unknown };
  if (typeof range.first === "string" && typeof range.last === "string") return `${range.first}-${range.last}`;
  return JSON.stringify(v);
}

/** A rule without its id: ids are handed out per node, what a rule does is the rest. */
function ruleBody(r: StoredRule): Omit<StoredRule, "id"> {
  const { id: _id, ...body } = r;
  return body;
}

/** "allow ingress tcp from 10.0.0.0/8 to any port 443": enough to find the rule. */
export function describeRule(r: StoredRule): string {
  const ports = (p?: [number, number]) => (p ? (p[0] === p[1] ? `${p[0]}` : `${p[0]}-${p[1]}`) : undefined);
  const parts: string[] = [r.action, r.direction, r.proto];
  if (r.src) parts.push(`from ${r.src}`);
  if (ports(r.sport)) parts.push(`sport ${ports(r.sport)}`);
  if (r.dst) parts.push(`to ${r.dst}`);
  if (ports(r.dport)) parts.push(`dport ${ports(r.dport)}`);
  if (r.icmpType !== undefined)
    parts.push(`icmp-type ${r.icmpType}${r.icmpCode !== undefined ? `/${r.icmpCode}` : ""}`);
  if (r.log) parts.push("log");
  return parts.join(" ");
}
