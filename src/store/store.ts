/** The state store: desired state of this node (networks, endpoints, firewall rules, the
 * blocklist). One interface, two implementations planned: SQLite for a single node
 * (sqlite.ts) and etcd for a cluster. Every method is one transaction; conflicts surface as
 * StratumError INVALID. A row that fails validation at open is quarantined (kept aside,
 * counted), never fatal. */

import type { PackedPrefixes } from "../model/blocklist";
import type { DnsRecord } from "../model/dns-record";
import type { EgressCap } from "../model/egress-cap";
import type { DefaultAction, Rule, StoredRule } from "../model/firewall-rule";
import type { MicrosegDoc } from "../model/microseg";
import type { Network } from "../model/network";
import type { MacvtapMode } from "../model/topology";
import type { LbDoc } from "../model/vip";

export interface StoredNetwork extends Network {
  /** Stable, never reused: part of every profile MAC of the network. */
  id: number;
  createdAt: string;
}

export type EndpointKind = "veth" | "tap" | "macvtap" | "xsk";

export { MACVTAP_MODES, type MacvtapMode } from "../model/topology";

export interface Endpoint {
  name: string;
  network: string;
  ip: string;
  mac: string;
  hostIndex: number;
  kind: EndpointKind;
  /** Host-side interface on cnv-user-br0. */
  hostIf: string;
  /** veth: namespace and interface name inside it. */
  netns?: string;
  ifname?: string;
  createdAt: string;
  /** Cap on what the endpoint sends, on every path; absent: none. */
  egress?: EgressCap;
  /** The cluster node it runs on; absent on a single node. */
  node?: string;
  /** Its microsegmentation group; absent: untagged. */
  group?: string;
  /** tap: the queues a VMM may open on it (a multi-queue tap, IFF_MULTI_QUEUE, when more
   * than one); absent: one. */
  queues?: number;
  /** macvtap: its mode (present exactly for a macvtap). */
  macvtapMode?: MacvtapMode;
}

export interface Store {
  /** In a cluster: this node's name (an endpoint of another node is in the store, not in
   * this node's kernel). Absent on a single node. */
  readonly node?: string;

  listNetworks(): StoredNetwork[];
  getNetwork(name: string): StoredNetwork | null;
  /** Inserts a validated network and assigns its id. */
  createNetwork(net: Network): StoredNetwork;
  updateNetwork(name: string, patch: Partial<Omit<Network, "name" | "cidr" | "gateway">>): StoredNetwork;
  deleteNetwork(name: string): void;

  /** Endpoints, of one network when given, of one node when given (by name, ordered). */
  listEndpoints(network?: string, node?: string): Endpoint[];
  getEndpoint(name: string): Endpoint | null;
  /** The endpoint whose host-side interface is `hostIf`: of node `node` (absent: a single
   * node's store; an interface name is unique per node only), if any. */
  getEndpointByHostIf(hostIf: string, node?: string): Endpoint | null;
  /** Claims the endpoint's profile; refused when the name or the address is taken. */
  claimEndpoint(ep: Omit<Endpoint, "createdAt">): Endpoint;
  releaseEndpoint(name: string): void;
  /** Sets (or with null removes) an endpoint's egress cap; NOT_FOUND when there is no such endpoint. */
  setEndpointEgress(name: string, cap: EgressCap | null): Endpoint;
  /** Puts an endpoint in a group (null: in none); NOT_FOUND for no such endpoint or group. */
  setEndpointGroup(name: string, group: string | null): Endpoint;

  /** The microsegmentation policy: groups and entries (empty when none was ever written). */
  getMicroseg(): MicrosegDoc;
  /** Reads the policy, changes it and writes it back in one transaction: `fn` returns the new
   * document (or none: nothing to write) and what to return; `members` counts a group's
   * endpoints as the transaction sees them. */
  updateMicroseg<T>(fn: (doc: MicrosegDoc, members: (group: string) => number) => { doc?: MicrosegDoc; result: T }): T;

  /** The load balancer's VIPs and backends (empty when none was ever written). */
  getLb(): LbDoc;
  /** Reads the document, changes it and writes it back in one transaction (`fn` returns the new
   * document, or none: nothing to write). */
  updateLb<T>(fn: (doc: LbDoc) => { doc?: LbDoc; result: T }): T;

  /** Host indexes claimed in a network (to find the next free address). */
  claimedIndexes(network: string): Set<number>;
  /** How many endpoints a network has (counted, not read). */
  endpointCount(network: string): number;
  /** The lowest host index of a network, below `total` and other than `skip` (its gateway's),
   * that no endpoint claims; undefined when none is left. */
  firstFreeIndex(network: string, skip: number, total: number): number | undefined;
  /** The names of a network's endpoints, ordered (a network's view lists them: reading whole
   * rows for 100,000 endpoints of a cluster took most of a network list). */
  endpointNames(network: string): string[];

  /** Firewall rules of a scope (FW_GLOBAL_SCOPE, or a network's id), by priority. */
  listRules(scope: number): StoredRule[];
  /** Reserves `n` fresh rule ids: never handed out again, even when the change that asked
   * for them is abandoned (the kernel is written with them before the store). */
  allocRuleIds(n: number): number[];
  /** Inserts a validated rule, with its reserved id or a new one; a taken priority is INVALID. */
  addRule(scope: number, rule: Rule | StoredRule): StoredRule;
  deleteRule(scope: number, id: number): void;
  moveRule(scope: number, id: number, priority: number): StoredRule;
  /** Replaces a scope's whole rule set (and its default action when given): the import. */
  replaceRules(scope: number, rules: Array<Rule | StoredRule>, def?: DefaultAction): StoredRule[];
  /** Default action of a scope: the global one, or the network's. */
  scopeDefault(scope: number): DefaultAction;
  getGlobalDefault(): DefaultAction;
  setGlobalDefault(def: DefaultAction): void;

  /** Adds prefixes to the blocklist; those already listed are ignored. Returns how many
   * were new. */
  blockAdd(p: PackedPrefixes): number;
  /** Of these prefixes, the ones not listed. */
  blockMissing(p: PackedPrefixes): PackedPrefixes;
  /** Which of these prefixes (canonical) are listed already. */
  blockListed(prefixes: string[]): Set<string>;
  /** Removes a prefix; false when it was not listed. */
  blockDel(prefix: string): boolean;
  /** Every entry, IPv4 first, then by address, then by length. */
  blockList(): BlockEntry[];
  /** The whole list, packed. */
  blockPacked(): PackedPrefixes;
  /** Up to `limit` entries in that order, those after the prefix `after` (canonical), only
   * those named in `only` when given. */
  blockPage(o: { after?: string; limit: number; only?: string[] }): BlockEntry[];
  /** Removes every entry; returns how many there were. */
  blockClear(): number;
  blockCount(family: 4 | 6): number;

  /** DHCP leases, as stored (validated by the DHCP service, which quarantines bad rows). */
  loadLeases(): RawLeaseRow[];
  /** Inserts or replaces the lease of (network, mac, family). */
  putLease(l: Lease): void;
  /** Several leases in one transaction (all or none). */
  putLeases(ls: Lease[]): void;
  deleteLease(network: string, mac: string, family: 4 | 6): void;
  quarantineLease(rowid: number, row: string, reason: string): void;
  quarantinedLeases(): number;

  /** Rows set aside at this open because they failed validation (the agent logs each). */
  quarantinedAtOpen(): QuarantinedRow[];
  /** Rows in quarantine, from every open so far. */
  quarantinedRows(): number;

  /** The user's DNS records (all networks, or one), by owner name and type. */
  listDnsRecords(network?: string): StoredDnsRecord[];
  /** Inserts a validated record; a duplicate (name, type, value) is INVALID. */
  addDnsRecord(network: string, rec: DnsRecord): StoredDnsRecord;
  /** Deletes records by id in one transaction; returns how many went. */
  deleteDnsRecords(network: string, ids: number[]): number;

  close(): void;
}

/** Whether an endpoint runs on this node (always, on a single node): only those are in its kernel. */
export function isLocalEndpoint(store: Pick<Store, "node">, e: Endpoint): boolean {
  return store.node === undefined || e.node === store.node;
}

/** The endpoints that run on this node (of one network when given), read without going
 * through the whole cluster's: `from` is the store to read (the mirror itself will do), `of`
 * says which node this is. */
export function localEndpoints(
  of: Pick<Store, "node">,
  network?: string,
  from: Pick<Store, "listEndpoints"> = of as Pick<Store, "listEndpoints">,
): Endpoint[] {
  return from.listEndpoints(network, of.node);
}

export type LeaseState = "bound" | "released" | "declined";

/** What a network's DHCP server told a client: the profile address it holds and until when. */
export interface Lease {
  network: string;
  mac: string;
  family: 4 | 6;
  ip: string;
  endpoint?: string;
  /** The host name the client sent, if any. */
  hostname?: string;
  state: LeaseState;
  /** ms since the epoch. */
  expiresAt: number;
  updatedAt: number;
}

/** A lease row before validation: any column may hold anything. */
export interface RawLeaseRow {
  rowid: number;
  network: unknown;
  mac: unknown;
  family: unknown;
  ip: unknown;
  endpoint: unknown;
  hostname: unknown;
  state: unknown;
  expires_at: unknown;
  updated_at: unknown;
}

export interface StoredDnsRecord extends DnsRecord {
  id: number;
  network: string;
  createdAt: string;
}

/** A stored row that failed validation and was moved out of service, kept for the operator. */
export interface QuarantinedRow {
  /** The table it came from. */
  table: string;
  /** The row in words: "network app", "endpoint web-1", "blocklist prefix 10.0.0.1/8". */
  what: string;
  /** One line: what is wrong with it. */
  reason: string;
}

export interface BlockEntry {
  /** Canonical CIDR. */
  prefix: string;
  family: 4 | 6;
  addedAt: string;
}
