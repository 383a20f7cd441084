/** The shape of one reconciler: a resource the kernel must hold as the store says. restore
 * puts back what is missing or wrong, prune removes what nothing in the store asks for; both
 * write only where the kernel differs, so a run on a kernel that is right changes nothing.
 * One run reads the store once (RunState) and reports what it did. */
import type { Attachment } from "../datapath/attach";
import { type Link, listLinks } from "../netlink";
import type { Services } from "../services/services";
import { type Endpoint, localEndpoints, type StoredNetwork } from "../store/store";

export interface ReconcileReport {
  networks: number;
  endpoints: number;
  /** Firewall scopes restored (the global one included), and those already right. */
  firewall: { scopes: number; adopted: number; blocklistAdded: number };
  /** What garbage collection removed. */
  collected: string[];
  /** Endpoints that could not be restored (e.g. their namespace is gone), with why. */
  errors: string[];
  /** Every kernel change this run made, in order: none when the kernel was already right. */
  changes: string[];
  /** The uplink, when the agent has one: its filter as attached (or found) by this run. */
  uplink?: { name: string; ifindex: number; attach: Attachment };
  /** A run limited to some networks (a change from the cluster): their names. Absent: a whole run. */
  only?: string[];
  /** A whole run that checked every port ("whole"), one that trusted the seal for them
   * ("quick": seal.ts), or one limited to some networks ("limited"). */
  pass: "whole" | "quick" | "limited";
  /** A quick pass was asked for and could not be: why (the seal was broken). */
  wholeBecause?: string;
}

export interface ReconcileOptions {
  /** The uplink NIC: its filter goes on, then it joins the user bridge. */
  uplink?: string;
  /** Restore only these networks' objects and this node's endpoints in them (and the
   * firewall when `firewall`), collect nothing: what a change from another node asks for (a
   * network created, endpoints of other nodes claimed or released, rules changed). A change
   * that removes something from this kernel takes a whole run. */
  only?: ReconcileScope;
  /** A cluster node: its overlay (docs/overlay.md). Absent: no overlay, and a whole run removes one. */
  overlay?: OverlayOptions;
  /** The load balancer (the agent's: it knows its backends' health). Absent: its maps are left as they are. */
  lb?: { apply(): { writes: number; tables: number } };
  /** A quick pass (seal.ts): the caller has found the seal unbroken, so the ports, their
   * FDB entries and the endpoints' map entries are as the last whole run found them; every
   * other reconciler runs as in a whole run. Not with `only`. */
  quick?: boolean;
}

export interface OverlayOptions {
  /** This node's underlay address (--node-address): the overlay's local VTEP. */
  address: string;
  /** The cluster's nodes with their addresses, states (members, live or not) and whether each
   * is a gateway (agent --gateway, while it is live). */
  nodes(): Array<{ name: string; address: string; state: string; gateway?: boolean }>;
  /** A network's VNI from its cluster-wide id. */
  vniOf(id: number): number;
  /** This node is a gateway: the others' north-south traffic comes here over the overlay. */
  gateway?: boolean;
  /** Whether a gateway node serves north-south traffic now: a member of gateway groups only
   * while it holds one of them (docs/gateway.md#north-south-in-a-group). Default: every one. */
  serving?(node: string): boolean;
}

export interface ReconcileScope {
  networks: ReadonlySet<string>;
  firewall: boolean;
  /** The cluster's nodes changed: the overlay's node addresses, and every remote entry. */
  nodes?: boolean;
}

/** One run: the services, the store's networks and endpoints as read at its start, the report. */
export class RunState {
  readonly networks: StoredNetwork[];
  readonly report: ReconcileReport;
  /** A quick pass: the reconcilers that check endpoint by endpoint skip that part. */
  readonly quick: boolean;

  constructor(
    readonly svc: Services,
    readonly o: ReconcileOptions,
  ) {
    const only = o.only?.networks;
    this.quick = o.quick === true && !only;
    this.report = {
      networks: 0,
      endpoints: 0,
      firewall: { scopes: 0, adopted: 0, blocklistAdded: 0 },
      collected: [],
      errors: [],
      changes: [],
      pass: only ? "limited" : this.quick ? "quick" : "whole",
    };
    this.networks = only ? svc.store.listNetworks().filter((n) => only.has(n.name)) : svc.store.listNetworks();
    if (only) this.report.only = this.networks.map((n) => n.name);
  }

  #endpoints?: Endpoint[];

  /** The store's endpoints of this run's networks on this node (the others' are in their
   * kernels), read when first asked for: a quick pass may never need them. */
  get endpoints(): Endpoint[] {
    const only = this.o.only;
    this.#endpoints ??= only
      ? this.networks.flatMap((n) => localEndpoints(this.svc.store, n.name))
      : localEndpoints(this.svc.store);
    return this.#endpoints;
  }

  #links?: Link[];

  /** One dump of the links, shared by the reconcilers until one changes them (dropLinks). */
  links(): Link[] {
    this.#links ??= listLinks(this.svc.nl);
    return this.#links;
  }

  /** The links changed: the next links() dumps again. */
  dropLinks(): void {
    this.#links = undefined;
  }

  collected(what: string): void {
    this.report.collected.push(what);
  }

  /** The network an endpoint belongs to, as read at the run's start. */
  networkOf(ep: Endpoint): StoredNetwork | undefined {
    return this.networks.find((n) => n.name === ep.network);
  }
}

export interface Reconciler {
  /** What it keeps, for messages. */
  readonly name: string;
  /** What a limited run (ReconcileOptions.only) restores of it: its networks' part, or the
   * whole of it when the firewall is in the scope; nothing when absent. */
  readonly scoped?: "networks" | "firewall";
  restore?(run: RunState): void;
  prune?(run: RunState): void;
}
