/** The check every stored row passes at open before the agent serves it: the model's own
 * validators, plus what ties rows together (a network's CIDR clear of the earlier ones, an
 * endpoint's address and MAC in its network, a rule's scope existing). A row that fails gets a
 * one-line reason; the store sets it aside rather than let one hand edit, torn write or older
 * binary's mistake stop the agent, or fail it later half-way through a reconcile. Rows that
 * hang on a failed network fail with it. Pure. */

import { type DnsRecord, validateDnsRecord } from "../model/dns-record";
import { validateCap } from "../model/egress-cap";
import { FW_GLOBAL_SCOPE, parseRule, type Rule, ruleSpec } from "../model/firewall-rule";
import { checkName, hostIndex, type Network, type NetworkSpec, profileMac, validateNetwork } from "../model/network";
import { MACVTAP_MODES } from "./store";

/** Parents before dependents: the order rows are checked in. Deleting goes the other way. */
export const AUDITED_TABLES = ["networks", "endpoints", "fw_rules", "fw_global", "dns_records", "dhcp_leases"] as const;
export type AuditedTable = (typeof AUDITED_TABLES)[number];

/** A row as SQLite hands it back: a column may hold anything (its type is only a hint), and
 * `rowid_` says which row it is. */
export type RawRow = { rowid_: number } & Record<string, unknown>;

export interface Finding {
  table: AuditedTable;
  row: RawRow;
  /** The row in words: "network app", "endpoint web-1", "rule 7 of the global scope". */
  what: string;
  /** One line: what is wrong with it. */
  reason: string;
}

/** Spec fields every network has had since the first schema. */
const NETWORK_FIELDS = ["dhcpRange", "dnsZone", "dnsForwarders", "mtu", "defaultAction"] as const;

const oneLine = (s: string) => s.replace(/\s+/g, " ").trim().slice(0, 300);
const label = (v: unknown) => (typeof v === "string" ? v : (JSON.stringify(v) ?? String(v)));

/** Runs `fn`; whatever it throws (a validator's StratumError, or a TypeError from a column
 * holding the wrong kind of value) is the reason. */
function attempt(fn: () => string | undefined): string | undefined {
  try {
    return fn();
  } catch (e) {
    return oneLine(e instanceof Error ? e.message : String(e));
  }
}

/** The JSON object a spec column holds, or why there is none. */
function jsonObject(text: unknown): Record<string, unknown> | string {
  if (typeof text !== "string") return "spec is not text";
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return `spec is not JSON (${oneLine((e as Error).message)})`;
  }
  return typeof v === "object" && v !== null && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : "spec is not a JSON object";
}

/** Checks rows one at a time, table by table in AUDITED_TABLES order, remembering the
 * networks that passed. (The blocklist's rows are checked by its tables' own CHECKs at every
 * write: blocklist-tables.ts.) */
export class RowAudit {
  readonly #nets = new Map<number, Network & { id: number }>();
  /** Networks that failed, by id: their dependents fail with them. */
  readonly #failed = new Map<number, string>();
  readonly #records = new Map<number, DnsRecord[]>();

  check(table: AuditedTable, row: RawRow): Finding | undefined {
    const [what, reason] = this.#check(table, row);
    return reason === undefined ? undefined : { table, row, what, reason };
  }

  #check(table: AuditedTable, r: RawRow): [string, string | undefined] {
    switch (table) {
      case "networks":
        return [`network ${label(r.name)}`, this.#network(r)];
      case "endpoints":
        return [`endpoint ${label(r.name)}`, this.#parent(r.network_id) ?? attempt(() => this.#endpoint(r))];
      case "fw_rules": {
        const global = r.scope === FW_GLOBAL_SCOPE;
        const scope = global ? "the global scope" : `network ${this.#netName(r.scope)}`;
        return [
          `rule ${label(r.id)} of ${scope}`,
          (global ? undefined : this.#parent(r.scope)) ?? attempt(() => rule(r)),
        ];
      }
      case "fw_global":
        return [
          "the global default action",
          r.default_action === "allow" || r.default_action === "deny"
            ? undefined
            : `${label(r.default_action)} is neither allow nor deny (the default is allow until it is set again)`,
        ];
      case "dns_records":
        return [
          `DNS record ${label(r.id)} of network ${this.#netName(r.network_id)}`,
          this.#parent(r.network_id) ?? attempt(() => this.#dnsRecord(r)),
        ];
      case "dhcp_leases":
        // Their columns are the DHCP service's to check (it quarantines its own rows): here only
        // whether the network is still there, before the cascade of its delete takes them.
        return [`DHCP lease of ${label(r.mac)} in network ${this.#netName(r.network_id)}`, this.#parent(r.network_id)];
    }
  }

  #netName(id: unknown): string {
    return this.#nets.get(id as number)?.name ?? this.#failed.get(id as number) ?? `id ${label(id)}`;
  }

  /** Why a row's network cannot hold it, if it cannot. */
  #parent(id: unknown): string | undefined {
    if (this.#nets.has(id as number)) return undefined;
    const name = this.#failed.get(id as number);
    return name !== undefined ? `its network ${name} is quarantined` : `its network (id ${label(id)}) does not exist`;
  }

  #network(r: RawRow): string | undefined {
    const reason = attempt(() => {
      const id = r.id as number;
      if (!Number.isInteger(id) || id < 1 || id > 0xffff) return `id ${label(id)} is outside 1-65535`;
      if (typeof r.name !== "string") return "its name is not text";
      const spec = jsonObject(r.spec);
      if (typeof spec === "string") return spec;
      // Fields every spec has had since the first: the model's defaults would hide their absence
      // here, and the agent, which reads the spec as stored, would find them undefined.
      for (const k of NETWORK_FIELDS) if (spec[k] === undefined) return `spec has no ${k}`;
      const range = spec.dhcpRange as { first?: unknown; last?: unknown } | null;
      if (
        typeof range !== "object" ||
        range === null ||
        typeof range.first !== "string" ||
        typeof range.last !== "string"
      )
        return "spec dhcpRange is not {first, last}";
      // Earlier networks (by id) win an overlap: they were there first, and their endpoints with them.
      const net = validateNetwork({ ...spec, name: r.name, dhcpRange: `${range.first}-${range.last}` } as NetworkSpec, [
        ...this.#nets.values(),
      ]);
      this.#nets.set(id, { ...net, id });
      return undefined;
    });
    if (reason !== undefined) this.#failed.set(r.id as number, label(r.name));
    return reason;
  }

  #endpoint(r: RawRow): string | undefined {
    const n = this.#nets.get(r.network_id as number) as Network & { id: number };
    if (typeof r.name !== "string") return "its name is not text";
    checkName("endpoint", r.name);
    if (r.kind !== "veth" && r.kind !== "tap" && r.kind !== "macvtap" && r.kind !== "xsk")
      return `kind ${label(r.kind)} is not veth, tap, macvtap or xsk`;
    if (r.kind === "macvtap" && !(MACVTAP_MODES as readonly unknown[]).includes(r.macvtap_mode))
      return `a macvtap endpoint with mode ${label(r.macvtap_mode)}`;
    if (typeof r.ip !== "string") return "its ip is not text";
    const index = hostIndex(n.cidr, r.ip);
    if (index !== r.host_index)
      return `ip ${r.ip} is host ${index} of ${n.cidr}, not host_index ${label(r.host_index)}`;
    if (index === hostIndex(n.cidr, n.gateway)) return `ip ${r.ip} is the gateway of network ${n.name}`;
    const mac = profileMac(n.id, index);
    if (r.mac !== mac) return `mac ${label(r.mac)} is not the profile MAC of its address (${mac})`;
    if (typeof r.host_if !== "string" || !r.host_if) return "it has no host interface";
    if (r.kind === "veth" && (typeof r.netns !== "string" || !r.netns || typeof r.ifname !== "string" || !r.ifname))
      return "a veth endpoint without its namespace and interface name";
    if (r.egress_rate !== 0) validateCap({ rate: r.egress_rate as number, burst: r.egress_burst as number });
    return undefined;
  }

  #dnsRecord(r: RawRow): string | undefined {
    const n = this.#nets.get(r.network_id as number) as Network & { id: number };
    for (const k of ["name", "type", "value"] as const) if (typeof r[k] !== "string") return `its ${k} is not text`;
    const earlier = this.#records.get(n.id) ?? [];
    // No endpoint names: attaching an endpoint does not look at records, so one may come to
    // share a record's name legitimately (its own address answers for it).
    const rec = validateDnsRecord(
      n.dnsZone,
      { name: r.name as string, type: r.type as string, value: r.value as string, ttl: r.ttl as number },
      earlier,
      [],
    );
    // The server matches the type as stored.
    if (rec.type !== r.type) return `type ${r.type} is not written as ${rec.type}`;
    this.#records.set(n.id, [...earlier, rec]);
    return undefined;
  }
}

function rule(r: RawRow): string | undefined {
  const id = r.id as number;
  // Rule ids share the datapath's 32-bit hit-counter key with the defaults' (high bit set).
  if (!Number.isInteger(id) || id < 1 || id >= 0x80000000) return `id ${label(id)} is outside 1-2147483647`;
  if (!Number.isInteger(r.priority)) return `priority ${label(r.priority)} is not an integer`;
  const spec = jsonObject(r.spec);
  if (typeof spec === "string") return spec;
  for (const k of ["sport", "dport"] as const)
    if (spec[k] !== undefined && !(Array.isArray(spec[k]) && (spec[k] as unknown[]).length === 2))
      return `spec ${k} is not [low, high]`;
  // Back into the user's words and through the parser a new rule passes (the row's priority
  // column is the one the store serves).
  parseRule(ruleSpec({ ...spec, priority: r.priority } as unknown as Rule));
  return undefined;
}
