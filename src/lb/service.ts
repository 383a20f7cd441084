/** The load balancer (docs/load-balancer.md): VIPs and their backends in the store (one document,
 * one transaction per change: nothing half-applied), this node's datapath made to hold them
 * (src/lb/state.ts), and the health checks of the backends whose endpoints run here. In a
 * cluster a node publishes its backends' health and takes the others' from their nodes (a node
 * gone takes its backends with it). A backend takes new flows while its checks pass; a VIP is
 * announced over BGP while one of its backends does. */
import type { BackendView, VipView } from "../api/contract";
import type { LbKernelVip, LbTables } from "../datapath/lb-tables";
import { StratumError } from "../errors";
import { profileIp6 } from "../model/network";
import {
  addBackend,
  addVip,
  type BackendSpec,
  type LbDoc,
  type LbHealthRecord,
  type LbVip,
  removeBackend,
  removeVip,
  type VipSpec,
} from "../model/vip";
import type { Endpoint, Store, StoredNetwork } from "../store/store";
import { type HealthCheck, HealthChecker, type HealthState, type HealthTarget, initialHealth } from "./health";
import { type BackendAddress, kernelVips } from "./state";

/** What the service needs of the datapath (a stand-in without a kernel gives the same). */
export type LbKernel = Pick<LbTables, "apply" | "hits" | "up">;

/** A cluster node's side of the health checks: its name, its backends' health published, the
 * others' read, and whether a node is up. */
export interface LbClusterHealth {
  node: string;
  publish(id: number, rec: LbHealthRecord | null): void;
  read(id: number): LbHealthRecord | undefined;
  live(node: string): boolean;
}

export interface LbServiceOptions {
  /** In a cluster (absent: every backend is this node's). */
  cluster?: LbClusterHealth;
  /** Other uses of an address ("gateway group g1's VIP"): a VIP may not take them. */
  taken?: (address: string) => string | undefined;
  /** Called when the VIPs to announce change (a backend's health, a VIP added or removed). */
  onAnnounce?: () => void;
  log?: (msg: string) => void;
}

export class LbService {
  readonly #health = new Map<number, HealthState>();
  /** Backends whose health this node published (a cluster node's own). */
  readonly #published = new Set<number>();
  #seeded = false;
  /** Whether the last apply had VIPs (their tables to empty when they go). */
  #hadVips = true;
  #checker?: HealthChecker;
  #announced = "";

  constructor(
    readonly store: Store,
    readonly kernel: LbKernel,
    readonly o: LbServiceOptions = {},
  ) {}

  /** Every endpoint's addresses (IPv6 from its network's prefix and its MAC). The store is read
   * at the first look-up: a node without VIPs (every endpoint change applies) reads nothing. */
  #endpoints(): (name: string) => BackendAddress | undefined {
    let read: { nets: Map<string, StoredNetwork>; eps: Map<string, Endpoint> } | undefined;
    return (name) => {
      read ??= {
        nets: new Map(this.store.listNetworks().map((n) => [n.name, n])),
        eps: new Map(this.store.listEndpoints().map((e) => [e.name, e])),
      };
      const { nets, eps } = read;
      const e = eps.get(name);
      if (!e) return undefined;
      const n = nets.get(e.network);
      return {
        ip4: e.ip,
        ...(n?.cidr6 ? { ip6: profileIp6(n.cidr6, e.mac) } : {}),
        ...(e.node !== undefined ? { node: e.node } : {}),
        mac: e.mac,
        ...(n ? { netId: n.id } : {}),
      };
    };
  }

  /** Whether this node checks a backend on `node` itself. */
  #local(node: string | undefined): boolean {
    return !this.o.cluster || node === undefined || node === this.o.cluster.node;
  }

  /** A backend's health: this node's checks for its own, the published record for another
   * node's while that node is up. */
  #healthy(vip: LbVip, id: number, node: string | undefined): boolean {
    if (vip.check.kind === "none") return true;
    if (this.#local(node)) return !!this.#health.get(id)?.healthy;
    const c = this.o.cluster as LbClusterHealth;
    const r = c.read(id);
    return !!r?.healthy && r.node === node && c.live(node as string);
  }

  state(doc: LbDoc = this.store.getLb()): LbKernelVip[] {
    return kernelVips(
      doc,
      this.#endpoints(),
      (v, id, node) => this.#healthy(v, id, node),
      (node) => this.#local(node),
    );
  }

  /** Makes this node's datapath hold the stored VIPs, and its checks watch their backends. */
  apply(doc: LbDoc = this.store.getLb()): { writes: number; tables: number } {
    this.#seed();
    this.#hadVips = doc.vips.length > 0;
    const r = this.kernel.apply(this.state(doc));
    this.#retarget(doc);
    this.#announce(doc);
    return r;
  }

  /** After endpoints changed: applies when a VIP may use them, or the last apply had VIPs. A
   * node without VIPs does not read its tables back on every attach (a few milliseconds);
   * the reconcile applies in full either way. */
  applyChange(): void {
    const doc = this.store.getLb();
    if (doc.vips.length || this.#hadVips) this.apply(doc);
  }

  // ---- health ----

  /** Once: the backends the datapath has up count as healthy until their checks say otherwise,
   * so an agent that starts again takes no backend out of a table. */
  #seed(): void {
    if (this.#seeded) return;
    this.#seeded = true;
    const now = Date.now();
    for (const id of this.kernel.up()) this.#health.set(id, initialHealth(now, true));
  }

  /** Starts this node's checks (the agent; without them every checked backend is down). */
  startHealth(): void {
    if (this.#checker) return;
    this.#checker = new HealthChecker({
      onChange: (id, st) => {
        this.#health.set(Number(id), st);
        this.o.log?.(`backend ${id} is ${st.healthy ? "healthy" : "unhealthy"}: ${st.lastDetail}`);
        this.#publish(Number(id), st);
        try {
          this.apply();
        } catch (e) {
          this.o.log?.(`the datapath did not take backend ${id}'s health: ${(e as Error).message}`);
        }
      },
    });
    this.#retarget(this.store.getLb());
  }

  stopHealth(): void {
    this.#checker?.stop();
    this.#checker = undefined;
  }

  #retarget(doc: LbDoc): void {
    if (!this.#checker) return;
    const ep = this.#endpoints();
    const targets: HealthTarget[] = [];
    const ids = new Set<number>();
    for (const v of doc.vips) {
      if (v.check.kind === "none") continue;
      const check: HealthCheck =
        v.check.kind === "http"
          ? { kind: "http", path: v.check.path ?? "/", expect: v.check.expect ?? 200 }
          : { kind: "tcp" };
      const timing = {
        intervalMs: v.check.intervalMs,
        timeoutMs: v.check.timeoutMs,
        rise: v.check.rise,
        fall: v.check.fall,
      };
      for (const b of v.backends) {
        const a = ep(b.endpoint);
        const address = v.address.includes(":") ? a?.ip6 : a?.ip4;
        if (!address || !this.#local(a?.node)) continue;
        ids.add(b.id);
        const healthy = this.#health.get(b.id)?.healthy === true;
        targets.push({ id: String(b.id), address, port: b.port, check, timing, ...(healthy ? { healthy } : {}) });
      }
    }
    for (const id of [...this.#health.keys()]) if (!ids.has(id)) this.#health.delete(id);
    for (const id of [...this.#published]) if (!ids.has(id)) this.#publish(id, null);
    this.#checker.set(targets);
    // What this node published agrees with its checks (a publish that failed, a record left
    // from before a restart): every apply, which the reconcile loop runs.
    const c = this.o.cluster;
    if (c)
      for (const id of ids) {
        const st = this.#checker.state(String(id));
        const rec = c.read(id);
        if (st && (rec?.healthy !== st.healthy || rec?.node !== c.node) && (st.checks > 0 || rec?.node === c.node))
          this.#publish(id, st);
      }
  }

  /** A cluster node tells the others what its checks found (null: it checks the backend no more). */
  #publish(id: number, st: HealthState | null): void {
    const c = this.o.cluster;
    if (!c) return;
    // Another node's record (the endpoint moved there) is not this node's to withdraw.
    if (!st && c.read(id)?.node !== c.node) {
      this.#published.delete(id);
      return;
    }
    try {
      c.publish(
        id,
        st && {
          healthy: st.healthy,
          since: new Date(st.lastChange).toISOString(),
          detail: st.lastDetail.slice(0, 300),
          node: c.node,
        },
      );
      if (st) this.#published.add(id);
      else this.#published.delete(id);
    } catch (e) {
      this.o.log?.(`backend ${id}'s health not published: ${(e as Error).message}`);
    }
  }

  /** The VIPs to announce over BGP: those with a healthy backend, as /32 or /128 (a DSR VIP: a
   * healthy backend on this node, the only ones its table holds). */
  announced(doc: LbDoc = this.store.getLb()): string[] {
    const out = new Set<string>();
    const ep = this.#endpoints();
    for (const v of doc.vips)
      if (
        v.backends.some((b) => {
          const e = ep(b.endpoint);
          return b.weight > 0 && e && (v.mode !== "dsr" || this.#local(e.node)) && this.#healthy(v, b.id, e.node);
        })
      )
        out.add(`${v.address}/${v.address.includes(":") ? 128 : 32}`);
    return [...out].sort();
  }

  #announce(doc: LbDoc): void {
    const now = this.announced(doc).join(",");
    if (now === this.#announced) return;
    this.#announced = now;
    this.o.onAnnounce?.();
  }

  // ---- changes ----

  #change<T>(fn: (doc: LbDoc) => { doc: LbDoc; result: T }): T {
    let written: LbDoc | undefined;
    const out = this.store.updateLb((doc) => {
      const r = fn(doc);
      written = r.doc;
      return r;
    });
    try {
      if (written) this.apply(written);
    } catch (e) {
      this.o.log?.(`stored, but not in the datapath yet: ${(e as Error).message}`);
      throw new StratumError("SYS", `stored; writing it to the datapath failed: ${(e as Error).message}`, { cause: e });
    }
    return out;
  }

  createVip(spec: VipSpec): VipView {
    const networks = this.store.listNetworks();
    const v = this.#change((doc) => {
      const r = addVip(doc, spec, { networks, taken: this.o.taken });
      return { doc: r.doc, result: r.vip };
    });
    return this.vip(v.name);
  }

  deleteVip(name: string): void {
    this.#change((doc) => ({ doc: removeVip(doc, name), result: undefined }));
  }

  addBackend(vip: string, spec: BackendSpec): VipView {
    const ep = this.#endpoints();
    this.#change((doc) => {
      const r = addBackend(doc, vip, spec, ep);
      return { doc: r.doc, result: r.backend };
    });
    return this.vip(vip);
  }

  removeBackend(vip: string, endpoint: string, port?: number): void {
    this.#change((doc) => ({ doc: removeBackend(doc, vip, endpoint, port), result: undefined }));
  }

  // ---- views ----

  vips(): VipView[] {
    const doc = this.store.getLb();
    const hits = this.kernel.hits();
    const ep = this.#endpoints();
    const announced = new Set(this.announced(doc));
    return [...doc.vips].sort((a, b) => a.name.localeCompare(b.name)).map((v) => this.#view(v, hits, ep, announced));
  }

  vip(name: string): VipView {
    const doc = this.store.getLb();
    const v = doc.vips.find((x) => x.name === name);
    if (!v) throw new StratumError("NOT_FOUND", `no VIP "${name}"`);
    return this.#view(v, this.kernel.hits(), this.#endpoints(), new Set(this.announced(doc)));
  }

  #view(
    v: LbVip,
    hits: Map<number, { packets: number; bytes: number; flows: number }>,
    ep: (name: string) => BackendAddress | undefined,
    announced: Set<string>,
  ): VipView {
    const v6 = v.address.includes(":");
    const backends: BackendView[] = v.backends.map((b) => {
      const a = ep(b.endpoint);
      const address = (v6 ? a?.ip6 : a?.ip4) ?? null;
      const local = this.#local(a?.node);
      const h = local ? this.#health.get(b.id) : undefined;
      const r = local ? undefined : this.o.cluster?.read(b.id);
      const health: BackendView["health"] = !address
        ? "missing"
        : v.check.kind === "none"
          ? "unchecked"
          : this.#healthy(v, b.id, a?.node)
            ? "healthy"
            : "unhealthy";
      return {
        id: b.id,
        endpoint: b.endpoint,
        address,
        port: b.port,
        weight: b.weight,
        health,
        detail: (r ? `${r.node}: ${r.detail}` : h?.lastDetail) || null,
        since: r?.since ?? (h?.lastChange ? new Date(h.lastChange).toISOString() : null),
        // A DSR VIP's table on this node holds this node's backends only.
        inTable:
          !!address && b.weight > 0 && (v.mode !== "dsr" || local) && (health === "healthy" || health === "unchecked"),
        hits: hits.get(b.id) ?? { packets: 0, bytes: 0, flows: 0 },
      };
    });
    return {
      name: v.name,
      id: v.id,
      address: v.address,
      port: v.port,
      proto: v.proto,
      mode: v.mode,
      tableSize: v.tableSize,
      check: v.check,
      description: v.description ?? null,
      healthy: backends.filter((b) => b.inTable).length,
      announced: announced.has(`${v.address}/${v6 ? 128 : 32}`),
      backends,
      createdAt: v.createdAt,
    };
  }
}
