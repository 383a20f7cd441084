/** The store of a cluster node: reads from the node's mirror of etcd (its SQLite store, kept up
 * to date by the watch), writes as etcd transactions. What must be unique is decided by the
 * transaction (a network's name and id, an endpoint's name, an address's claim); a change to
 * an object is made against the revision it was read at and retried when another node changed
 * it meanwhile. A write that etcd accepted is in the mirror before the call returns (the
 * watch brings the same change again later, and it is ignored then). DHCP leases and the
 * quarantine stay on the node. */

import { StratumError } from "../errors";
import { type PackedPrefixes, unpackSubnets } from "../model/blocklist";
import type { DnsRecord } from "../model/dns-record";
import type { EgressCap } from "../model/egress-cap";
import { type DefaultAction, FW_GLOBAL_SCOPE, type Rule, type StoredRule } from "../model/firewall-rule";
import { formatSubnet } from "../model/ip";
import { emptyMicroseg, type MicrosegDoc, MSEG } from "../model/microseg";
import type { Network } from "../model/network";
import { emptyLb, type LbDoc } from "../model/vip";
import type { MirrorChange, MirrorWriter } from "../store/mirror";
import type { SqliteStore } from "../store/sqlite";
import type {
  BlockEntry,
  Endpoint,
  Lease,
  QuarantinedRow,
  RawLeaseRow,
  Store,
  StoredDnsRecord,
  StoredNetwork,
} from "../store/store";
import type { Compare, KeyValue, TxnOp, TxnResult } from "./etcd-client";
import type { EtcdSync } from "./etcd-sync";
import { K, mirrored, networkValue, parseKey, vniOf } from "./keys";

const enc = new TextEncoder();
const dec = new TextDecoder();
/** etcd refuses a transaction of more operations than this (its --max-txn-ops default). */
const MAX_TXN_OPS = 128;
const RETRIES = 8;

export class ClusterStore implements Store {
  constructor(
    readonly mirror: SqliteStore,
    readonly writer: MirrorWriter,
    readonly etcd: EtcdSync,
    readonly node: string,
  ) {}

  // ---- the write path ----

  /** Runs a transaction; when it succeeds, its puts and deletes go into the mirror at its revision. */
  #txn(t: { compare?: Compare[]; success: TxnOp[]; failure?: TxnOp[] }): TxnResult {
    const r = this.etcd.txn(t);
    if (r.succeeded) {
      const changes: MirrorChange[] = [];
      for (const op of t.success)
        if (op.type === "put")
          changes.push({
            key: op.key,
            value: typeof op.value === "string" ? enc.encode(op.value) : op.value,
            revision: r.revision,
          });
        else if (op.type === "delete") {
          const keys = op.prefix ? this.writer.keys(op.key).map((k) => k.key) : [op.key];
          for (const key of keys) changes.push({ key, value: null, revision: r.revision });
        }
      this.writer.apply(changes.filter((c) => mirrored(c.key)));
    } else {
      // What the failure branch read is newer than the mirror: take it in.
      const changes: MirrorChange[] = [];
      for (const resp of r.responses)
        if (resp.type === "range")
          for (const kv of resp.kvs)
            if (mirrored(kv.key)) changes.push({ key: kv.key, value: kv.value, revision: kv.modRevision });
      if (changes.length) this.writer.apply(changes);
    }
    return r;
  }

  #get(key: string): KeyValue | undefined {
    const kv = this.etcd.range(key).kvs[0];
    if (kv && mirrored(kv.key)) this.writer.apply([{ key: kv.key, value: kv.value, revision: kv.modRevision }]);
    return kv;
  }

  /** Read, change, write back if nobody changed it meanwhile (else again, with what they wrote).
   * `fn` gets the current value (undefined: no such key) and returns the new value, the extra
   * operations and compares of the same transaction, and what to return. */
  #update<T>(
    key: string,
    fn: (cur: KeyValue | undefined) => { value?: string | null; ops?: TxnOp[]; compare?: Compare[]; result: T },
  ): T {
    for (let i = 0; i < RETRIES; i++) {
      const cur = this.#get(key);
      const out = fn(cur);
      const ops: TxnOp[] = [...(out.ops ?? [])];
      if (out.value === null) ops.unshift({ type: "delete", key });
      else if (out.value !== undefined) ops.unshift({ type: "put", key, value: out.value });
      if (!ops.length) return out.result;
      const r = this.#txn({
        compare: [{ key, target: "modRevision", value: cur?.modRevision ?? 0 }, ...(out.compare ?? [])],
        success: ops,
      });
      if (r.succeeded) return out.result;
    }
    throw new StratumError(
      "CONFLICT",
      `${key.split("/").slice(3).join(" ")} is being changed by another node: try again`,
    );
  }

  /** `n` fresh ids of a counter, never handed out again. */
  #alloc(what: "network" | "rule" | "dns", n: number, max: number): number[] {
    return this.#update(K.counter(what), (cur) => {
      const last = cur ? Number(dec.decode(cur.value)) : this.#seed(what);
      if (last + n > max) throw new StratumError("CAPACITY", `${what} ids are exhausted`);
      return { value: String(last + n), result: Array.from({ length: n }, (_, i) => last + 1 + i) };
    });
  }

  /** Where a counter starts when the cluster has none yet: above every id the mirror holds. */
  #seed(what: "network" | "rule" | "dns"): number {
    const ids =
      what === "network"
        ? this.mirror.listNetworks().map((n) => n.id)
        : what === "rule"
          ? [FW_GLOBAL_SCOPE, ...this.mirror.listNetworks().map((n) => n.id)].flatMap((s) =>
              this.mirror.listRules(s).map((r) => r.id),
            )
          : this.mirror.listDnsRecords().map((r) => r.id);
    return Math.max(0, ...ids);
  }

  #network(name: string): StoredNetwork & { vni: number } {
    const kv = this.#get(K.network(name));
    const row = kv && parseKey(kv.key, kv.value);
    if (row?.kind !== "network" || !row.value) throw new StratumError("NOT_FOUND", `network ${name} does not exist`);
    return row.value;
  }

  #scopeNetwork(scope: number): (StoredNetwork & { vni: number }) | undefined {
    if (scope === FW_GLOBAL_SCOPE) return undefined;
    const n = this.mirror.listNetworks().find((x) => x.id === scope);
    if (!n) throw new StratumError("NOT_FOUND", `no network has id ${scope}`);
    return this.#network(n.name);
  }

  #scopeName(scope: number): string {
    return scope === FW_GLOBAL_SCOPE ? "the global scope" : `network ${this.#scopeNetwork(scope)?.name}`;
  }

  // ---- networks ----

  listNetworks(): StoredNetwork[] {
    return this.mirror.listNetworks();
  }

  getNetwork(name: string): StoredNetwork | null {
    return this.mirror.getNetwork(name);
  }

  createNetwork(net: Network): StoredNetwork {
    for (let i = 0; i < RETRIES; i++) {
      const counter = this.#get(K.counter("network"));
      const last = counter ? Number(dec.decode(counter.value)) : this.#seed("network");
      const id = last + 1;
      if (id > 0xffff) throw new StratumError("INVALID", "network ids are exhausted (65,535 networks created)");
      const stored: StoredNetwork = { ...net, id, createdAt: new Date().toISOString() };
      const r = this.#txn({
        compare: [
          { key: K.network(net.name), target: "version", value: 0 },
          { key: K.counter("network"), target: "modRevision", value: counter?.modRevision ?? 0 },
          { key: K.networkId(id), target: "version", value: 0 },
        ],
        success: [
          { type: "put", key: K.counter("network"), value: String(id) },
          { type: "put", key: K.network(net.name), value: networkValue(stored, vniOf(id)) },
          { type: "put", key: K.networkId(id), value: net.name },
        ],
        failure: [{ type: "range", key: K.network(net.name) }],
      });
      if (r.succeeded) return stored;
      const taken = r.responses[0]?.type === "range" && r.responses[0].kvs.length > 0;
      if (taken) throw new StratumError("CONFLICT", `network ${net.name} already exists`);
    }
    throw new StratumError("CONFLICT", "networks are being created on other nodes at the same time: try again");
  }

  updateNetwork(name: string, patch: Partial<Omit<Network, "name" | "cidr" | "gateway">>): StoredNetwork {
    return this.#update(K.network(name), (cur) => {
      const row = cur && parseKey(cur.key, cur.value);
      if (row?.kind !== "network" || !row.value) throw new StratumError("NOT_FOUND", `network ${name} does not exist`);
      const { vni, ...n } = row.value;
      const next: StoredNetwork = { ...n, ...patch, name };
      return { value: networkValue(next, vni), result: next };
    });
  }

  deleteNetwork(name: string): void {
    const n = this.#network(name);
    const claims = this.etcd.range(K.claims(n.id), { prefix: true, countOnly: true }).count;
    if (claims) throw new StratumError("INVALID", `network ${name} still has ${claims} endpoint(s) attached`);
    this.#update(K.network(name), (cur) => {
      if (!cur) throw new StratumError("NOT_FOUND", `network ${name} does not exist`);
      return {
        value: null,
        ops: [
          { type: "delete", key: K.networkId(n.id) },
          { type: "delete", key: K.rules(n.id) },
          { type: "delete", key: K.dns(n.id) },
          { type: "delete", key: K.claims(n.id), prefix: true },
        ],
        result: undefined,
      };
    });
  }

  // ---- endpoints ----

  listEndpoints(network?: string, node?: string): Endpoint[] {
    return this.mirror.listEndpoints(network, node);
  }

  getEndpoint(name: string): Endpoint | null {
    return this.mirror.getEndpoint(name);
  }

  getEndpointByHostIf(hostIf: string, node?: string): Endpoint | null {
    return this.mirror.getEndpointByHostIf(hostIf, node);
  }

  claimEndpoint(ep: Omit<Endpoint, "createdAt">): Endpoint {
    const net = this.mirror.getNetwork(ep.network);
    if (!net) throw new StratumError("NOT_FOUND", `network ${ep.network} does not exist`);
    const stored: Endpoint = { ...ep, node: this.node, createdAt: new Date().toISOString() };
    // In a group: the group must still be there (its deletion compares the policy key too).
    const pol = ep.group !== undefined ? this.#get(K.microseg) : undefined;
    if (ep.group !== undefined && !this.#microseg(pol).groups.some((g) => g.name === ep.group))
      throw new StratumError("NOT_FOUND", `no group "${ep.group}" (group list shows them)`);
    const r = this.#txn({
      compare: [
        { key: K.endpoint(ep.name), target: "version", value: 0 },
        { key: K.claim(net.id, ep.hostIndex), target: "version", value: 0 },
        { key: K.network(net.name), target: "version", op: ">", value: 0 },
        ...(pol ? [{ key: K.microseg, target: "modRevision" as const, value: pol.modRevision }] : []),
      ],
      success: [
        { type: "put", key: K.endpoint(ep.name), value: JSON.stringify(stored) },
        { type: "put", key: K.claim(net.id, ep.hostIndex), value: ep.name },
        ...(pol ? [{ type: "put" as const, key: K.microseg, value: pol.value }] : []),
      ],
      failure: [
        { type: "range", key: K.endpoint(ep.name) },
        { type: "range", key: K.claim(net.id, ep.hostIndex) },
        { type: "range", key: K.network(net.name) },
      ],
    });
    if (r.succeeded) return stored;
    const [epKv, claimKv, netKv] = r.responses.map((x) => (x.type === "range" ? x.kvs[0] : undefined));
    if (!netKv) throw new StratumError("NOT_FOUND", `network ${ep.network} does not exist`);
    if (epKv) {
      const other = parseKey(epKv.key, epKv.value);
      const where = other?.kind === "endpoint" && other.value?.node ? ` on node ${other.value.node}` : "";
      throw new StratumError("CONFLICT", `endpoint ${ep.name} already exists${where}`);
    }
    if (claimKv) {
      const holder = dec.decode(claimKv.value);
      // The holder's record, when this node's mirror has not got it yet: from etcd.
      let e = this.mirror.getEndpoint(holder);
      if (!e) {
        const kv = this.#get(K.endpoint(holder));
        const row = kv && parseKey(kv.key, kv.value);
        e = row?.kind === "endpoint" ? row.value : null;
      }
      throw new StratumError(
        "INVALID",
        `${ep.ip} is already claimed by endpoint ${holder}${e?.node ? ` on node ${e.node}` : ""}`,
      );
    }
    throw new StratumError("CONFLICT", `endpoint ${ep.name}: the claim or the groups changed meanwhile: try again`);
  }

  releaseEndpoint(name: string): void {
    this.#update(K.endpoint(name), (cur) => {
      const row = cur && parseKey(cur.key, cur.value);
      if (row?.kind !== "endpoint" || !row.value)
        throw new StratumError("NOT_FOUND", `endpoint ${name} does not exist`);
      const net = this.mirror.getNetwork(row.value.network);
      return {
        value: null,
        ops: net ? [{ type: "delete", key: K.claim(net.id, row.value.hostIndex) }] : [],
        result: undefined,
      };
    });
  }

  setEndpointEgress(name: string, cap: EgressCap | null): Endpoint {
    return this.#update(K.endpoint(name), (cur) => {
      const row = cur && parseKey(cur.key, cur.value);
      if (row?.kind !== "endpoint" || !row.value)
        throw new StratumError("NOT_FOUND", `endpoint ${name} does not exist`);
      const { egress: _e, ...rest } = row.value;
      const next: Endpoint = cap ? { ...rest, egress: cap } : rest;
      return { value: JSON.stringify(next), result: next };
    });
  }

  // ---- microsegmentation ----

  getMicroseg(): MicrosegDoc {
    return this.mirror.getMicroseg();
  }

  #microseg(cur: KeyValue | undefined): MicrosegDoc {
    const row = cur && parseKey(cur.key, cur.value);
    return row?.kind === "microseg" && row.value ? row.value : emptyMicroseg();
  }

  /** The policy key is the one every change of groups and memberships compares: an endpoint
   * put in a group rewrites it unchanged, so a group's deletion (which counts its members from
   * etcd itself, not the mirror) and an assignment to it never both succeed. */
  updateMicroseg<T>(fn: (doc: MicrosegDoc, members: (group: string) => number) => { doc?: MicrosegDoc; result: T }): T {
    return this.#update(K.microseg, (cur) => {
      let all: Endpoint[] | undefined;
      const members = (g: string) => {
        all ??= this.etcd
          .range(K.endpoint(""), { prefix: true })
          .kvs.map((kv) => parseKey(kv.key, kv.value))
          .flatMap((r) => (r?.kind === "endpoint" && r.value ? [r.value] : []));
        return all.filter((e) => e.group === g).length;
      };
      const out = fn(this.#microseg(cur), members);
      return { ...(out.doc ? { value: JSON.stringify(out.doc) } : {}), result: out.result };
    });
  }

  // ---- load balancer ----

  getLb(): LbDoc {
    return this.mirror.getLb();
  }

  updateLb<T>(fn: (doc: LbDoc) => { doc?: LbDoc; result: T }): T {
    return this.#update(K.lb, (cur) => {
      const row = cur && parseKey(cur.key, cur.value);
      const out = fn(row?.kind === "lb" && row.value ? row.value : emptyLb());
      return { ...(out.doc ? { value: JSON.stringify(out.doc) } : {}), result: out.result };
    });
  }

  setEndpointGroup(name: string, group: string | null): Endpoint {
    return this.#update(K.endpoint(name), (cur) => {
      const row = cur && parseKey(cur.key, cur.value);
      if (row?.kind !== "endpoint" || !row.value)
        throw new StratumError("NOT_FOUND", `endpoint ${name} does not exist`);
      const pol = this.#get(K.microseg);
      if (group !== null && !this.#microseg(pol).groups.some((g) => g.name === group))
        throw new StratumError("NOT_FOUND", `no group "${group}" (group list shows them)`);
      const { group: _g, ...rest } = row.value;
      const next: Endpoint = group !== null ? { ...rest, group } : rest;
      return {
        value: JSON.stringify(next),
        compare: [{ key: K.microseg, target: "modRevision", value: pol?.modRevision ?? 0 }],
        ops: pol ? [{ type: "put", key: K.microseg, value: pol.value }] : [],
        result: next,
      };
    });
  }

  endpointNames(network: string): string[] {
    return this.mirror.endpointNames(network);
  }

  claimedIndexes(network: string): Set<number> {
    return this.mirror.claimedIndexes(network);
  }

  endpointCount(network: string): number {
    return this.mirror.endpointCount(network);
  }

  firstFreeIndex(network: string, skip: number, total: number): number | undefined {
    return this.mirror.firstFreeIndex(network, skip, total);
  }

  // ---- firewall ----

  listRules(scope: number): StoredRule[] {
    return this.mirror.listRules(scope);
  }

  allocRuleIds(n: number): number[] {
    // Below MSEG.LOG_ID: a monitor log event tells a microsegmentation entry from a rule by that bit.
    return this.#alloc("rule", n, MSEG.LOG_ID - 1);
  }

  #rules(cur: KeyValue | undefined): StoredRule[] {
    const row = cur && parseKey(cur.key, cur.value);
    return row?.kind === "rules" && row.value ? row.value : [];
  }

  #taken(rules: StoredRule[], priority: number, scope: number, except?: number): void {
    const holder = rules.find((r) => r.priority === priority && r.id !== except);
    if (holder)
      throw new StratumError(
        "INVALID",
        `priority ${priority} is taken by rule ${holder.id} in ${this.#scopeName(scope)}: priorities are unique`,
      );
  }

  #rulesValue(rules: StoredRule[]): string | null {
    return rules.length ? JSON.stringify({ rules: [...rules].sort((a, b) => a.priority - b.priority) }) : null;
  }

  addRule(scope: number, rule: Rule | StoredRule): StoredRule {
    this.#scopeName(scope);
    const id = (rule as StoredRule).id ?? (this.allocRuleIds(1)[0] as number);
    return this.#update(K.rules(scope), (cur) => {
      const rules = this.#rules(cur);
      this.#taken(rules, rule.priority, scope);
      if (rules.some((r) => r.id === id)) throw new StratumError("INVALID", `rule id ${id} is already in use`);
      const stored = { ...rule, id } as StoredRule;
      return { value: this.#rulesValue([...rules, stored]), result: stored };
    });
  }

  deleteRule(scope: number, id: number): void {
    this.#update(K.rules(scope), (cur) => {
      const rules = this.#rules(cur);
      if (!rules.some((r) => r.id === id))
        throw new StratumError("NOT_FOUND", `${this.#scopeName(scope)} has no rule ${id}`);
      return { value: this.#rulesValue(rules.filter((r) => r.id !== id)), result: undefined };
    });
  }

  moveRule(scope: number, id: number, priority: number): StoredRule {
    return this.#update(K.rules(scope), (cur) => {
      const rules = this.#rules(cur);
      const r = rules.find((x) => x.id === id);
      if (!r) throw new StratumError("NOT_FOUND", `${this.#scopeName(scope)} has no rule ${id}`);
      this.#taken(rules, priority, scope, id);
      const moved = { ...r, priority };
      return { value: this.#rulesValue(rules.map((x) => (x.id === id ? moved : x))), result: moved };
    });
  }

  replaceRules(scope: number, rules: Array<Rule | StoredRule>, def?: DefaultAction): StoredRule[] {
    const net = this.#scopeNetwork(scope);
    const missing = rules.filter((r) => (r as StoredRule).id === undefined).length;
    const fresh = missing ? this.allocRuleIds(missing) : [];
    const out: StoredRule[] = rules.map(
      (r) => ({ ...r, id: (r as StoredRule).id ?? (fresh.shift() as number) }) as StoredRule,
    );
    const seen = new Map<number, number>();
    for (const r of out) {
      const other = seen.get(r.priority);
      if (other !== undefined)
        throw new StratumError(
          "INVALID",
          `priority ${r.priority} is taken by rule ${other} in ${this.#scopeName(scope)}: priorities are unique`,
        );
      seen.set(r.priority, r.id);
    }
    const defOp: TxnOp[] =
      def === undefined
        ? []
        : net
          ? (() => {
              const { vni, ...n } = net;
              return [
                { type: "put", key: K.network(net.name), value: networkValue({ ...n, defaultAction: def }, vni) },
              ];
            })()
          : [{ type: "put", key: K.globalDefault, value: JSON.stringify(def) }];
    this.#update(K.rules(scope), () => ({
      value: this.#rulesValue(out),
      ops: defOp,
      compare: net ? [{ key: K.network(net.name), target: "version", op: ">", value: 0 }] : [],
      result: undefined,
    }));
    return out.sort((a, b) => a.priority - b.priority);
  }

  scopeDefault(scope: number): DefaultAction {
    return this.mirror.scopeDefault(scope);
  }

  getGlobalDefault(): DefaultAction {
    return this.mirror.getGlobalDefault();
  }

  setGlobalDefault(def: DefaultAction): void {
    this.#txn({ success: [{ type: "put", key: K.globalDefault, value: JSON.stringify(def) }] });
  }

  // ---- blocklist ----

  blockAdd(p: PackedPrefixes): number {
    const fresh = unpackSubnets(this.mirror.blockMissing(p));
    const addedAt = new Date().toISOString();
    // In transactions of etcd's largest size: each is whole, the list as a whole is not one
    // (an add is idempotent: what went in stays, the same command again adds the rest).
    for (let i = 0; i < fresh.length; i += MAX_TXN_OPS)
      this.#txn({
        success: fresh.slice(i, i + MAX_TXN_OPS).map((s) => ({
          type: "put" as const,
          key: K.block(formatSubnet(s)),
          value: JSON.stringify({ family: s.family, addedAt }),
        })),
      });
    return fresh.length;
  }

  blockMissing(p: PackedPrefixes): PackedPrefixes {
    return this.mirror.blockMissing(p);
  }

  blockPacked(): PackedPrefixes {
    return this.mirror.blockPacked();
  }

  blockListed(prefixes: string[]): Set<string> {
    return this.mirror.blockListed(prefixes);
  }

  blockDel(prefix: string): boolean {
    const r = this.#txn({
      compare: [{ key: K.block(prefix), target: "version", op: ">", value: 0 }],
      success: [{ type: "delete", key: K.block(prefix) }],
    });
    return r.succeeded;
  }

  blockList(): BlockEntry[] {
    return this.mirror.blockList();
  }

  blockPage(o: { after?: string; limit: number; only?: string[] }): BlockEntry[] {
    return this.mirror.blockPage(o);
  }

  blockClear(): number {
    const n = this.etcd.range(`${K.block("")}`, { prefix: true, countOnly: true }).count;
    this.#txn({ success: [{ type: "delete", key: K.block(""), prefix: true }] });
    return n;
  }

  blockCount(family: 4 | 6): number {
    return this.mirror.blockCount(family);
  }

  // ---- DHCP leases: this node's ----

  loadLeases(): RawLeaseRow[] {
    return this.mirror.loadLeases();
  }
  putLease(l: Lease): void {
    this.mirror.putLease(l);
  }
  putLeases(ls: Lease[]): void {
    this.mirror.putLeases(ls);
  }
  deleteLease(network: string, mac: string, family: 4 | 6): void {
    this.mirror.deleteLease(network, mac, family);
  }
  quarantineLease(rowid: number, row: string, reason: string): void {
    this.mirror.quarantineLease(rowid, row, reason);
  }
  quarantinedLeases(): number {
    return this.mirror.quarantinedLeases();
  }
  quarantinedAtOpen(): QuarantinedRow[] {
    return this.mirror.quarantinedAtOpen();
  }
  quarantinedRows(): number {
    return this.mirror.quarantinedRows();
  }

  // ---- DNS records ----

  listDnsRecords(network?: string): StoredDnsRecord[] {
    return this.mirror.listDnsRecords(network);
  }

  #records(cur: KeyValue | undefined): Array<Omit<StoredDnsRecord, "network">> {
    const row = cur && parseKey(cur.key, cur.value);
    return row?.kind === "dns" && row.value ? row.value : [];
  }

  addDnsRecord(network: string, rec: DnsRecord): StoredDnsRecord {
    const net = this.#network(network);
    const [id] = this.#alloc("dns", 1, 0x7fffffff) as [number];
    return this.#update(K.dns(net.id), (cur) => {
      const recs = this.#records(cur);
      if (recs.some((r) => r.name === rec.name && r.type === rec.type && r.value === rec.value))
        throw new StratumError("CONFLICT", `${rec.name} ${rec.type} ${rec.value} already exists in network ${network}`);
      const stored = { ...rec, id, createdAt: new Date().toISOString() };
      return {
        value: JSON.stringify({ records: [...recs, stored] }),
        compare: [{ key: K.network(network), target: "version", op: ">", value: 0 }],
        result: { ...stored, network } as StoredDnsRecord,
      };
    });
  }

  deleteDnsRecords(network: string, ids: number[]): number {
    const net = this.mirror.getNetwork(network);
    if (!net) return 0;
    return this.#update(K.dns(net.id), (cur) => {
      const recs = this.#records(cur);
      const keep = recs.filter((r) => !ids.includes(r.id));
      const gone = recs.length - keep.length;
      if (!gone) return { result: 0 };
      return { value: keep.length ? JSON.stringify({ records: keep }) : null, result: gone };
    });
  }

  close(): void {
    this.etcd.close();
    this.mirror.close();
  }
}
