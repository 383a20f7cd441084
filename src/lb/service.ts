/** The load balancer (docs/load-balancer.md): VIPs and their backends in the store (one document,
 * one transaction per change: nothing half-applied), this node's datapath made to hold them
 * (src/lb/state.ts), and the health checks this node runs on every backend. A backend takes new
 * flows while its checks pass; a VIP is announced over BGP while one of its backends does. */
import type { BackendView, VipView } from "../api/contract";
import type { LbKernelVip, LbTables } from "../datapath/lb-tables";
import { StratumError } from "../errors";
import { profileIp6 } from "../model/network";
import {
  addBackend,
  addVip,
  type BackendSpec,
  type LbDoc,
  type LbVip,
  removeBackend,
  removeVip,
  type VipSpec,
} from "../model/vip";
import type { Store } from "../store/store";
import { type HealthCheck, HealthChecker, type HealthState, type HealthTarget, initialHealth } from "./health";
import { type BackendAddress, kernelVips } from "./state";

/** What the service needs of the datapath (a stand-in without a kernel gives the same). */
export type LbKernel = Pick<LbTables, "apply" | "hits" | "up">;

export interface LbServiceOptions {
  /** Other uses of an address ("gateway group g1's VIP"): a VIP may not take them. */
  taken?: (address: string) => string | undefined;
  /** Called when the VIPs to announce change (a backend's health, a VIP added or removed). */
  onAnnounce?: () => void;
  log?: (msg: string) => void;
}

export class LbService {
  readonly #health = new Map<number, HealthState>();
  #seeded = false;
  #checker?: HealthChecker;
  #announced = "";

  constructor(
    readonly store: Store,
    readonly kernel: LbKernel,
    readonly o: LbServiceOptions = {},
  ) {}

  /** Every endpoint's addresses (IPv6 from its network's prefix and its MAC). */
  #endpoints(): (name: string) => BackendAddress | undefined {
    const nets = new Map(this.store.listNetworks().map((n) => [n.name, n]));
    const eps = new Map(this.store.listEndpoints().map((e) => [e.name, e]));
    return (name) => {
      const e = eps.get(name);
      if (!e) return undefined;
      const n = nets.get(e.network);
      return { ip4: e.ip, ...(n?.cidr6 ? { ip6: profileIp6(n.cidr6, e.mac) } : {}) };
    };
  }

  #healthy(vip: LbVip, id: number): boolean {
    return vip.check.kind === "none" || !!this.#health.get(id)?.healthy;
  }

  state(doc: LbDoc = this.store.getLb()): LbKernelVip[] {
    return kernelVips(doc, this.#endpoints(), (v, id) => this.#healthy(v, id));
  }

  /** Makes this node's datapath hold the stored VIPs, and its checks watch their backends. */
  apply(doc: LbDoc = this.store.getLb()): { writes: number; tables: number } {
    this.#seed();
    const r = this.kernel.apply(this.state(doc));
    this.#retarget(doc);
    this.#announce(doc);
    return r;
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
        if (!address) continue;
        ids.add(b.id);
        const healthy = this.#health.get(b.id)?.healthy === true;
        targets.push({ id: String(b.id), address, port: b.port, check, timing, ...(healthy ? { healthy } : {}) });
      }
    }
    for (const id of [...this.#health.keys()]) if (!ids.has(id)) this.#health.delete(id);
    this.#checker.set(targets);
  }

  /** The VIPs to announce over BGP: those with a healthy backend, as /32 or /128. */
  announced(doc: LbDoc = this.store.getLb()): string[] {
    const out = new Set<string>();
    for (const v of doc.vips)
      if (v.backends.some((b) => this.#healthy(v, b.id))) out.add(`${v.address}/${v.address.includes(":") ? 128 : 32}`);
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
      const h = this.#health.get(b.id);
      const health: BackendView["health"] = !address
        ? "missing"
        : v.check.kind === "none"
          ? "unchecked"
          : h?.healthy
            ? "healthy"
            : "unhealthy";
      return {
        id: b.id,
        endpoint: b.endpoint,
        address,
        port: b.port,
        weight: b.weight,
        health,
        detail: h?.lastDetail || null,
        since: h?.lastChange ? new Date(h.lastChange).toISOString() : null,
        inTable: !!address && b.weight > 0 && (health === "healthy" || health === "unchecked"),
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
