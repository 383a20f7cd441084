/** A node's part in the cluster: its mirror of etcd (a full listing at one revision, then a
 * watch from the next one; listed again when etcd compacted the history the watch needed,
 * the pattern of kvstore mirrors elsewhere), its registration under a lease kept alive, and
 * what status and metrics show of both. The datapath never waits on any of it: while etcd is
 * away the node keeps enforcing what its mirror holds, answers reads from it and refuses
 * writes; when etcd is back the watch resumes (or the node lists again) and converges. */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { StratumError } from "../errors";
import { type GatewayGroup, type GatewayGroupSpec, validateGatewayGroup } from "../model/gateway-group";
import { parseSubnet } from "../model/ip";
import type { LbHealthRecord } from "../model/vip";
import type { MirrorChange, MirrorEffects, MirrorRow } from "../store/mirror";
import { MirrorWriter } from "../store/mirror";
import type { SqliteStore } from "../store/sqlite";
import type { Endpoint } from "../store/store";
import { ClusterStore } from "./cluster-store";
import { stateConflicts } from "./conflicts";
import { EtcdClient, type EtcdOptions, type KeepAlive, type KeyValue, type TxnOp, type Watch } from "./etcd-client";
import { EtcdSync } from "./etcd-sync";
import { partialUploadAdvice } from "./init";
import {
  type ClusterIdentity,
  type GatewayActiveRecord,
  K,
  type MemberRecord,
  type MoveRecord,
  mirrored,
  type NodeRecord,
  PREFIX,
  parseKey,
  type StoredGatewayGroup,
} from "./keys";

export interface ClusterOptions extends Omit<EtcdOptions, "endpoints"> {
  endpoints: string[];
  nodeName: string;
  /** The node's underlay (VTEP) address. */
  nodeAddress: string;
  mgmtAddress?: string | null;
  version: string;
  roles?: string[];
  /** Seconds of the node's lease. Default 10. */
  leaseTtl?: number;
  log: (level: "info" | "warn" | "error", msg: string) => void;
}

export type NodeState = "ready" | "unreachable" | "left";

export interface NodeView {
  name: string;
  state: NodeState;
  address: string;
  mgmtAddress: string | null;
  version: string | null;
  roles: string[];
  joinedAt: string;
  startedAt: string | null;
  left: string | null;
  endpoints: number;
  self: boolean;
}

export interface ClusterStatus {
  clusterId: string;
  node: string;
  endpoints: string[];
  etcd: {
    up: boolean;
    members: Array<{ endpoint: string; healthy: boolean; version?: string; leader?: boolean; error?: string }>;
    leader: string | null;
    revision: number | null;
  };
  mirror: { revision: number; lag: number | null; keys: number; invalidKeys: number; lastResync: string | null };
  watch: { events: number; resyncs: number; connected: boolean };
  lease: { id: string | null; ttl: number; renewals: number; missed: number; reRegistered: number };
}

const dec = new TextDecoder();
const enc = new TextEncoder();
const toChange = (kv: KeyValue): MirrorChange => ({ key: kv.key, value: kv.value, revision: kv.modRevision });
const MIRROR_CLUSTER_ID = "clusterId";
/** The order a full listing is applied in, by the key's first segment: what others refer to
 * first (a segment not listed goes last). */
const LIST_ORDER = [
  "cluster",
  "counters",
  "members",
  "nodes",
  "networks",
  "ids",
  "rules",
  "fw",
  "blocklist",
  "dns",
  "endpoints",
  "claims",
  "gateway-groups",
  "gateway-active",
];

/** The rows of a local store that a cluster holds: what a node brings when it joins. */
export function localStateSummary(store: SqliteStore): string[] {
  const out: string[] = [];
  for (const n of store.listNetworks()) out.push(`network ${n.name} (${n.cidr}, id ${n.id})`);
  for (const e of store.listEndpoints()) out.push(`endpoint ${e.name} (${e.ip} in ${e.network})`);
  const rules = [0, ...store.listNetworks().map((n) => n.id)].reduce((a, s) => a + store.listRules(s).length, 0);
  if (rules) out.push(`${rules} firewall rule(s)`);
  const blocks = store.blockCount(4) + store.blockCount(6);
  if (blocks) out.push(`${blocks} blocklisted prefix(es)`);
  const dns = store.listDnsRecords().length;
  if (dns) out.push(`${dns} DNS record(s)`);
  if (store.getGlobalDefault() !== "allow") out.push("the global default is deny");
  return out;
}

/** A batch of changes from the cluster, as this node follows it: the kinds of object changed,
 * and the networks whose objects in this node's kernel it may touch (created networks, and
 * those whose endpoints on other nodes changed), or "all" when only a whole reconcile puts
 * the kernel right (a listing, a network changed or deleted, an endpoint of this node changed). */
export interface ClusterChange {
  kinds: MirrorRow["kind"][];
  networks: string[] | "all";
  /** The networks whose DHCP and DNS answers may have changed ("all": a listing). */
  served: string[] | "all";
}

export class Cluster {
  readonly client: EtcdClient;
  readonly sync: EtcdSync;
  readonly writer: MirrorWriter;
  readonly store: ClusterStore;
  readonly o: ClusterOptions;
  #identity?: ClusterIdentity;
  #watch?: Watch;
  #keepAlive?: KeepAlive;
  #leaseId: string | null = null;
  #stopped = false;
  #onChange: (change: ClusterChange) => void = () => {};
  #stats = { events: 0, resyncs: 0, reRegistered: 0, missedBefore: 0 };
  #etcdUp = false;
  #lastRevision: number | null = null;

  private constructor(mirror: SqliteStore, o: ClusterOptions) {
    this.o = o;
    const etcd: EtcdOptions = {
      endpoints: o.endpoints,
      ca: o.ca,
      cert: o.cert,
      key: o.key,
      username: o.username,
      password: o.password,
      timeoutMs: o.timeoutMs ?? 3000,
    };
    this.client = new EtcdClient({ ...etcd, watchIdleMs: 10_000 });
    this.sync = new EtcdSync(etcd);
    this.writer = new MirrorWriter(mirror, parseKey);
    this.store = new ClusterStore(mirror, this.writer, this.sync, o.nodeName);
  }

  get clusterId(): string {
    return this.#identity?.id ?? this.writer.meta(MIRROR_CLUSTER_ID) ?? "";
  }

  /** Joins (or rejoins) the cluster at `o.endpoints` with the node's store as its mirror.
   * Refuses a store of another cluster, and single-node state the cluster does not hold
   * (`cluster init` uploads that). With etcd away, a node that has synced before starts from
   * its mirror; one that never has cannot start. */
  static async open(mirror: SqliteStore, o: ClusterOptions): Promise<Cluster> {
    const c = new Cluster(mirror, o);
    try {
      await c.#join(mirror);
    } catch (e) {
      c.client.close();
      c.sync.close();
      throw e;
    }
    return c;
  }

  async #join(mirror: SqliteStore): Promise<void> {
    const mine = this.writer.meta(MIRROR_CLUSTER_ID);
    let identity: KeyValue | undefined;
    try {
      identity = await this.client.get(K.cluster);
      this.#etcdUp = true;
    } catch (e) {
      if ((e as StratumError).code !== "ETCD_UNAVAILABLE") throw e;
      if (!mine)
        throw new StratumError(
          "ETCD_UNAVAILABLE",
          `etcd at ${this.o.endpoints.join(",")} does not answer, and this node has never synced with a cluster: nothing to start from (${(e as Error).message})${tlsHint((e as Error).message)}`,
        );
      this.o.log(
        "warn",
        `etcd does not answer: starting from this node's copy of cluster ${mine} (revision ${this.writer.revision}); writes are refused until etcd is back`,
      );
      return;
    }
    const local = mine ? [] : localStateSummary(mirror);
    if (!identity) {
      if (mine)
        throw new StratumError(
          "CONFLICT",
          `this node's state is a copy of cluster ${mine}, and etcd at ${this.o.endpoints.join(",")} holds no cluster: point --cluster at that cluster's etcd, or move the state directory away to start a new one`,
        );
      // Keys without an identity: a `cluster init` under way, or one cut short. Not a cluster.
      const { count } = await this.client.range(PREFIX, { prefix: true, countOnly: true });
      if (count)
        throw new StratumError(
          "CONFLICT",
          partialUploadAdvice(this.o.endpoints, count, (await this.client.get(K.init))?.value),
        );
      if (local.length)
        throw new StratumError(
          "CONFLICT",
          `this node has state of its own and the cluster at ${this.o.endpoints.join(",")} is empty: upload it with \`cenvero-str-ctl cluster init --cluster ${this.o.endpoints.join(",")} --node-name ${this.o.nodeName}\` (agent stopped), or start from an empty state directory. Local state: ${local.slice(0, 10).join("; ")}${local.length > 10 ? `; and ${local.length - 10} more` : ""}`,
        );
      // The first node of an empty cluster makes it.
      const id: ClusterIdentity = { id: crypto.randomUUID(), createdAt: new Date().toISOString(), by: this.o.nodeName };
      // Not while a `cluster init` uploads: its state would be taken for this empty cluster's.
      const r = await this.client.txn({
        compare: [
          { key: K.cluster, target: "version", value: 0 },
          { key: K.init, target: "version", value: 0 },
        ],
        success: [{ type: "put", key: K.cluster, value: JSON.stringify(id) }],
        failure: [{ type: "range", key: K.cluster }],
      });
      identity = r.succeeded
        ? {
            key: K.cluster,
            value: new TextEncoder().encode(JSON.stringify(id)),
            createRevision: r.revision,
            modRevision: r.revision,
            version: 1,
            lease: "0",
          }
        : r.responses[0]?.type === "range"
          ? r.responses[0].kvs[0]
          : undefined;
      if (!identity)
        throw new StratumError(
          "CONFLICT",
          `a \`cluster init\` began uploading into etcd at ${this.o.endpoints.join(",")} as this node joined: start the agent again once it is done`,
        );
      if (r.succeeded) this.o.log("info", `created cluster ${id.id} in etcd at ${this.o.endpoints.join(",")}`);
    }
    const row = parseKey(identity.key, identity.value);
    if (row?.kind !== "cluster" || !row.value)
      throw new StratumError("INVALID", `${K.cluster}: not a cluster identity`);
    this.#identity = row.value;
    if (mine && mine !== row.value.id)
      throw new StratumError(
        "CONFLICT",
        `this node's state is a copy of cluster ${mine}, and etcd at ${this.o.endpoints.join(",")} holds cluster ${row.value.id}: point --cluster at its own cluster, or move the state directory away to join this one`,
      );
    if (!mine && local.length) {
      const conflicts = await this.#conflicts(mirror);
      if (conflicts.length)
        throw new StratumError(
          "CONFLICT",
          `this node's own state conflicts with cluster ${row.value.id}, so it cannot join: ${conflicts.slice(0, 20).join("; ")}${conflicts.length > 20 ? `; and ${conflicts.length - 20} more` : ""}. Move the state directory away (or delete those objects) and start again`,
        );
    }
    await this.resync(true);
    this.writer.setMeta(MIRROR_CLUSTER_ID, row.value.id);
  }

  /** What of a node's single-node state the cluster does not hold exactly so (conflicts.ts). */
  async #conflicts(mirror: SqliteStore): Promise<string[]> {
    const { kvs } = await this.client.list(PREFIX, { pageSize: 20_000, grpc: true });
    const rows: MirrorRow[] = [];
    for (const kv of kvs) {
      const r = safeParse(kv.key, kv.value);
      if (r) rows.push(r);
    }
    return stateConflicts(mirror, rows, this.o.nodeName);
  }

  /** Lists everything at one revision into the mirror (one SQLite transaction), then watches
   * from the next revision. `streaming` (a node joining, before it serves anything): the
   * endpoints, the bulk of a cluster, go into the transaction page by page as etcd gives them,
   * while it works on the next page; otherwise everything is listed first and written at once
   * (the transaction never stays open while the node serves requests). */
  async resync(
    streaming = false,
  ): Promise<{ keys: number; revision: number; put: number; deleted: number; ms: number }> {
    const t0 = performance.now();
    const { revision } = await this.client.range(K.cluster);
    const grpcBefore = { ...this.client.grpc };
    let keys = 0;
    let listed = t0;
    let r: { put: number; deleted: number };
    if (!streaming) {
      const kvs = await this.listAll(revision);
      listed = performance.now();
      keys = kvs.length;
      // listAll gives the parts in LIST_ORDER: networks before the endpoints that name them.
      r = this.writer.replaceAll(kvs.map(toChange), revision, PREFIX);
    } else {
      const listing = this.writer.beginListing();
      const add = (kvs: KeyValue[]) => {
        keys += kvs.length;
        listing.add(kvs.map(toChange));
      };
      let ready = false;
      const queued: KeyValue[][] = [];
      const endpoints = this.client.list(`${PREFIX}endpoints/`, {
        pageSize: 20_000,
        revision,
        grpc: true,
        onPage: (kvs) => (ready ? add(kvs) : queued.push(kvs)),
      });
      endpoints.catch(() => {}); // awaited below; a failure before then is the other parts'
      try {
        add(await this.listAll(revision, ["endpoints"]));
        ready = true;
        for (const page of queued.splice(0)) add(page);
        await endpoints;
        listed = performance.now();
        r = listing.finish(revision, PREFIX);
      } catch (e) {
        listing.abort();
        throw e;
      }
    }
    this.#stats.resyncs++;
    this.#lastRevision = revision;
    const ms = Math.round(performance.now() - t0);
    for (const [key, why] of this.writer.invalid) this.o.log("warn", `${key} set aside: ${why}`);
    const g = this.client.grpc;
    const viaJson = g.fallbacks - grpcBefore.fallbacks;
    const over =
      g.unusable && g.pages === grpcBefore.pages
        ? `through the JSON gateway (${g.unusable})`
        : viaJson
          ? `over gRPC, ${viaJson} page(s) through the JSON gateway (${g.last})`
          : "over gRPC";
    if (g.unusable && !grpcBefore.unusable)
      this.o.log(
        "warn",
        `etcd's gRPC cannot be used (${g.unusable}): listings go through the JSON gateway, at several times etcd's CPU`,
      );
    const how = streaming
      ? `listed and written page by page: the last page ${ms - Math.round(listed - t0)} ms before the end`
      : `listing ${Math.round(listed - t0)} ms, mirror ${ms - Math.round(listed - t0)} ms`;
    this.o.log(
      "info",
      `synced ${keys} key(s) at revision ${revision} in ${ms} ms (${how}, ${over}; ${r.put} changed, ${r.deleted} removed)`,
    );
    return { keys, revision, ...r, ms };
  }

  /** Every key the mirror holds at `revision` (but the segments in `without`), in LIST_ORDER:
   * each part of the keyspace listed on its own, in parallel, claims left out (they exist
   * for etcd's transactions; the endpoint records say the same). Pages are large: etcd 3.4
   * counts the rest of the range for every page it answers. */
  async listAll(revision: number, without: string[] = []): Promise<KeyValue[]> {
    const parts = await Promise.all(
      LIST_ORDER.filter((seg) => seg !== "claims" && !without.includes(seg)).map((seg) =>
        seg === "cluster"
          ? this.client.range(K.cluster, { revision }).then((r) => r.kvs)
          : this.client.list(`${PREFIX}${seg}/`, { pageSize: 20_000, revision, grpc: true }).then((r) => r.kvs),
      ),
    );
    return parts.flat();
  }

  /** Starts the watch and the node's registration; `onChange` after every batch applied. */
  start(onChange: (change: ClusterChange) => void): void {
    this.#onChange = onChange;
    this.#startWatch();
    void this.#register();
  }

  #startWatch(): void {
    if (this.#stopped) return;
    const from = this.writer.revision + 1;
    this.#watch = this.client.watch(
      PREFIX,
      { prefix: true, startRevision: from, progressNotify: true },
      {
        onEvents: (events, revision) => {
          if (!this.#etcdUp) this.o.log("info", "etcd is back: the watch resumed from where it was");
          this.#etcdUp = true;
          this.#lastRevision = Math.max(this.#lastRevision ?? 0, revision);
          if (!events.length) {
            if (revision > this.writer.revision) this.writer.apply([], revision);
            return;
          }
          this.#stats.events += events.length;
          const changes = events
            .filter((e) => mirrored(e.kv.key))
            .map((e) =>
              e.type === "put" ? toChange(e.kv) : { key: e.kv.key, value: null, revision: e.kv.modRevision },
            );
          const applied = this.writer.apply(changes, revision);
          if (applied) this.#changed(this.writer.effects);
        },
        onCompacted: (rev) => {
          this.o.log("warn", `etcd compacted the history this node needed (revision ${rev}): listing again`);
          void this.#relist();
        },
        onError: (e) => {
          if (e.code === "ETCD_UNAVAILABLE") {
            if (this.#etcdUp)
              this.o.log("warn", `etcd unreachable: ${e.message}; the datapath keeps enforcing, writes are refused`);
            this.#etcdUp = false;
          } else this.o.log("warn", `cluster watch: ${e.message}`);
        },
      },
    );
    void this.#watch.ready.then(() => {
      if (!this.#etcdUp) this.o.log("info", "etcd is back: the watch resumed from where it was");
      this.#etcdUp = true;
    });
    void this.#watch.done.then((end) => {
      if (this.#stopped || end === "compacted") return;
      if (end === "failed") setTimeout(() => this.#startWatch(), 1000);
    });
  }

  async #relist(): Promise<void> {
    for (let delay = 500; !this.#stopped; delay = Math.min(delay * 2, 5000)) {
      try {
        this.#watch?.close();
        await this.resync();
        this.#changed("all");
        this.#startWatch();
        return;
      } catch (e) {
        this.o.log("warn", `listing again failed: ${(e as Error).message}; retrying`);
        await Bun.sleep(delay);
      }
    }
  }

  /** What a batch applied to the mirror means for this node (a listing: everything). */
  #changed(fx: MirrorEffects | "all"): void {
    if (fx === "all") {
      this.#onChange({
        kinds: ["network", "endpoint", "rules", "globalDefault", "block", "dns"],
        networks: "all",
        served: "all",
      });
      return;
    }
    if (!fx.kinds.size) return;
    // A network changed or gone, or an endpoint of this node changed elsewhere (its port,
    // addresses and cap are in this kernel): only a whole run restores and collects it all.
    const whole = fx.networkChanged || fx.nodes.has(this.o.nodeName);
    this.#onChange({ kinds: [...fx.kinds], networks: whole ? "all" : [...fx.networks], served: [...fx.served] });
  }

  /** The node's record under a fresh lease, and its member record; again whenever the lease is lost. */
  async #register(): Promise<void> {
    const ttl = this.o.leaseTtl ?? 10;
    for (let delay = 500; !this.#stopped; delay = Math.min(delay * 2, 3000)) {
      try {
        const lease = await this.client.leaseGrant(ttl);
        const now = new Date().toISOString();
        const node: NodeRecord = {
          name: this.o.nodeName,
          address: this.o.nodeAddress,
          mgmtAddress: this.o.mgmtAddress ?? null,
          version: this.o.version,
          roles: this.o.roles ?? [],
          startedAt: now,
        };
        const prev = await this.client.get(K.member(this.o.nodeName));
        const prevMember = prev
          ? (parseKey(prev.key, prev.value) as { value: MemberRecord | null } | undefined)
          : undefined;
        const member: MemberRecord = {
          name: this.o.nodeName,
          address: this.o.nodeAddress,
          mgmtAddress: this.o.mgmtAddress ?? null,
          joinedAt: prevMember?.value?.joinedAt ?? now,
        };
        await this.client.txn({
          success: [
            { type: "put", key: K.node(this.o.nodeName), value: JSON.stringify(node), lease: lease.id },
            { type: "put", key: K.member(this.o.nodeName), value: JSON.stringify(member) },
          ],
        });
        if (this.#stopped) {
          await this.client.leaseRevoke(lease.id).catch(() => {});
          return;
        }
        if (this.#leaseId) this.#stats.reRegistered++;
        this.#stats.missedBefore += this.#keepAlive?.failures ?? 0;
        this.#leaseId = lease.id;
        this.#keepAlive = this.client.keepAlive(lease.id, {
          onLost: () => {
            this.o.log(
              "warn",
              `this node's lease ${lease.id} expired (etcd was away longer than ${ttl} s): registering again`,
            );
            void this.#register();
          },
        });
        this.o.log("info", `node ${this.o.nodeName} registered (lease ${lease.id}, ttl ${lease.ttl} s)`);
        return;
      } catch (e) {
        if (this.#stopped) return;
        this.o.log("warn", `cannot register this node yet: ${(e as Error).message}`);
        await Bun.sleep(delay);
      }
    }
  }

  #records(): { members: Map<string, MemberRecord>; live: Map<string, NodeRecord> } {
    const members = new Map<string, MemberRecord>();
    const live = new Map<string, NodeRecord>();
    for (const kv of this.writer.keys(`${PREFIX}members/`)) {
      const r = safeParse(kv.key, kv.value);
      if (r?.kind === "member" && r.value) members.set(r.value.name, r.value);
    }
    for (const kv of this.writer.keys(`${PREFIX}nodes/`)) {
      const r = safeParse(kv.key, kv.value);
      if (r?.kind === "node" && r.value) live.set(r.value.name, r.value);
    }
    return { members, live };
  }

  /** Every member's underlay address and state, from the mirror (no endpoint counts): what the
   * overlay needs. */
  nodeAddresses(): Array<{ name: string; address: string; state: NodeState; gateway: boolean }> {
    const { members, live } = this.#records();
    return [...members.values()].map((m) => {
      const n = live.get(m.name);
      return {
        name: m.name,
        address: n?.address ?? m.address,
        state: n ? "ready" : m.left ? "left" : "unreachable",
        gateway: n?.roles.includes("gateway") === true,
      };
    });
  }

  /** Every node the cluster knows: members, live or not. */
  nodes(): NodeView[] {
    const { members, live } = this.#records();
    const counts = new Map<string, number>();
    for (const e of this.store.listEndpoints()) counts.set(e.node ?? "", (counts.get(e.node ?? "") ?? 0) + 1);
    return [...members.values()]
      .map((m): NodeView => {
        const n = live.get(m.name);
        return {
          name: m.name,
          state: n ? "ready" : m.left ? "left" : "unreachable",
          address: n?.address ?? m.address,
          mgmtAddress: n?.mgmtAddress ?? m.mgmtAddress,
          version: n?.version ?? null,
          roles: n?.roles ?? [],
          joinedAt: m.joinedAt,
          startedAt: n?.startedAt ?? null,
          left: m.left ?? null,
          endpoints: counts.get(m.name) ?? 0,
          self: m.name === this.o.nodeName,
        };
      })
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  node(name: string): NodeView {
    const n = this.nodes().find((x) => x.name === name);
    if (!n) throw new StratumError("NOT_FOUND", `node ${name} is not a member of this cluster`);
    return n;
  }

  /** Forgets a node that is gone: its member record, and its endpoints' records and claims
   * (their addresses become free). Refused while it is alive. */
  removeNode(name: string): { endpoints: string[] } {
    const n = this.node(name);
    if (n.self)
      throw new StratumError("INVALID", `node ${name} is this node: stop its agent, then remove it from another node`);
    const liveKv = this.sync.range(K.node(name)).kvs[0];
    if (liveKv)
      throw new StratumError(
        "INVALID",
        `node ${name} is alive (its lease is kept alive): stop its agent first, then remove it`,
      );
    const eps = this.store.listEndpoints().filter((e) => e.node === name);
    for (const e of eps) this.store.releaseEndpoint(e.name);
    this.sync.txn({
      compare: [{ key: K.node(name), target: "version", value: 0 }],
      success: [{ type: "delete", key: K.member(name) }],
    });
    this.writer.apply([{ key: K.member(name), value: null, revision: this.writer.get(K.member(name))?.revision ?? 0 }]);
    return { endpoints: eps.map((e) => e.name) };
  }

  // ---- moving endpoints (docs/overlay.md#moving-an-endpoint) -------------------------------

  /** Every move under way, as this node's mirror has it. */
  moves(): Array<{ name: string; move: MoveRecord }> {
    const out: Array<{ name: string; move: MoveRecord }> = [];
    for (const kv of this.writer.keys(K.moves)) {
      const r = safeParse(kv.key, kv.value);
      if (r?.kind === "move" && r.value) out.push({ name: r.name, move: r.value });
    }
    return out;
  }

  /** The endpoint's record and the move's, read from etcd (not the mirror, which may lag). */
  #moveState(name: string): { ep: KeyValue; endpoint: Endpoint; move?: KeyValue; record?: MoveRecord } {
    const r = this.sync.txn({
      success: [
        { type: "range", key: K.endpoint(name) },
        { type: "range", key: K.move(name) },
      ],
    });
    const [epKv, moveKv] = r.responses.map((x) => (x.type === "range" ? x.kvs[0] : undefined));
    const row = epKv && parseKey(epKv.key, epKv.value);
    if (!epKv || row?.kind !== "endpoint" || !row.value)
      throw new StratumError("NOT_FOUND", `endpoint ${name} does not exist`);
    const m = moveKv && parseKey(moveKv.key, moveKv.value);
    return {
      ep: epKv,
      endpoint: row.value,
      ...(moveKv && m?.kind === "move" && m.value ? { move: moveKv, record: m.value } : {}),
    };
  }

  /** A transaction on an endpoint's and its move's keys, compared on both revisions; what it
   * wrote goes into the mirror. False when either changed meanwhile. */
  #moveTxn(st: { ep: KeyValue; move?: KeyValue }, name: string, ops: TxnOp[]): boolean {
    const r = this.sync.txn({
      compare: [
        { key: K.endpoint(name), target: "modRevision", value: st.ep.modRevision },
        { key: K.move(name), target: "modRevision", value: st.move?.modRevision ?? 0 },
      ],
      success: ops,
    });
    if (!r.succeeded) return false;
    this.writer.apply(
      ops.flatMap((op): MirrorChange[] =>
        op.type === "put"
          ? [
              {
                key: op.key,
                value: typeof op.value === "string" ? new TextEncoder().encode(op.value) : op.value,
                revision: r.revision,
              },
            ]
          : op.type === "delete"
            ? [{ key: op.key, value: null, revision: r.revision }]
            : [],
      ),
    );
    return true;
  }

  /** Asks for endpoint `name` to move to node `to`. The node it runs on hands it over (its
   * connection tracking, its port unplugged) and `to` takes it; when that node is not alive,
   * `to` takes it at once, without. Two requests at once: one wins in etcd, the other is
   * refused. */
  requestMove(name: string, to: string): MoveRecord {
    const st = this.#moveState(name);
    const from = st.endpoint.node;
    if (!from) throw new StratumError("INVALID", `endpoint ${name} has no node`);
    if (from === to) throw new StratumError("INVALID", `endpoint ${name} runs on node ${to} already`);
    const target = this.node(to);
    if (target.state !== "ready")
      throw new StratumError(
        "INVALID",
        `node ${to} is ${target.state}: an endpoint moves to a node whose agent runs (\`node list\`)`,
      );
    if (st.record) {
      const still = this.sync.range(K.node(st.record.to)).kvs[0];
      if (still)
        throw new StratumError(
          "CONFLICT",
          `endpoint ${name} is moving to node ${st.record.to} already (since ${st.record.at})`,
        );
    }
    const fromAlive = this.sync.range(K.node(from)).kvs[0] !== undefined;
    const at = new Date().toISOString();
    const move: MoveRecord = fromAlive
      ? { id: crypto.randomUUID(), from, to, at, state: "requested" }
      : { id: crypto.randomUUID(), from, to, at, state: "handed-off", forced: true, handedOffAt: at };
    const ops: TxnOp[] = [{ type: "put", key: K.move(name), value: JSON.stringify(move) }];
    if (!fromAlive)
      ops.push({ type: "put", key: K.endpoint(name), value: JSON.stringify({ ...st.endpoint, node: to }) });
    if (!this.#moveTxn(st, name, ops))
      throw new StratumError(
        "CONFLICT",
        `endpoint ${name} changed while its move was asked for (another move, a detach): look again and retry`,
      );
    return move;
  }

  /** The old node's step: the endpoint becomes `to`'s, with what its port carried. False when
   * the move is not this one any more (cancelled, replaced). */
  handOff(name: string, id: string, carried: { ct: MoveRecord["ct"]; configure: boolean }): boolean {
    const st = this.#moveState(name);
    if (st.record?.id !== id || st.record.state !== "requested") return false;
    const move: MoveRecord = {
      ...st.record,
      state: "handed-off",
      configure: carried.configure,
      ...(carried.ct?.length ? { ct: carried.ct } : {}),
      handedOffAt: new Date().toISOString(),
    };
    return this.#moveTxn(st, name, [
      { type: "put", key: K.move(name), value: JSON.stringify(move) },
      { type: "put", key: K.endpoint(name), value: JSON.stringify({ ...st.endpoint, node: st.record.to }) },
    ]);
  }

  /** The new node's last step: the move is done. */
  finishMove(name: string, id: string): boolean {
    const st = this.#moveState(name);
    if (st.record?.id !== id) return false;
    return this.#moveTxn(st, name, [{ type: "delete", key: K.move(name) }]);
  }

  // ---- gateway groups (docs/gateway.md#high-availability-gateway-groups) -------------------

  /** A backend's health as its endpoint's node published it (the mirror's). */
  lbHealth(id: number): LbHealthRecord | undefined {
    const kv = this.writer.get(K.lbHealth(id));
    const r = kv && safeParse(K.lbHealth(id), kv.value);
    return r?.kind === "lbHealth" && r.value ? r.value : undefined;
  }

  /** Publishes (or with null withdraws) a backend's health, as the node that checks it. */
  publishLbHealth(id: number, rec: LbHealthRecord | null): void {
    this.sync.txn({
      success: [
        rec
          ? { type: "put", key: K.lbHealth(id), value: JSON.stringify(rec) }
          : { type: "delete", key: K.lbHealth(id) },
      ],
    });
  }

  /** Every gateway group, as this node's mirror has it, with its heartbeat key (never shown). */
  gatewayGroups(): StoredGatewayGroup[] {
    const out: StoredGatewayGroup[] = [];
    for (const kv of this.writer.keys(K.gatewayGroups)) {
      const r = safeParse(kv.key, kv.value);
      if (r?.kind === "gatewayGroup" && r.value) out.push(r.value);
    }
    return out;
  }

  /** The node that holds group `name`'s role, and the epoch (the revision it was written at). */
  gatewayActive(name: string): (GatewayActiveRecord & { epoch: number }) | null {
    const kv = this.writer.get(K.gatewayActive(name));
    const r = kv && safeParse(K.gatewayActive(name), kv.value);
    return kv && r?.kind === "gatewayActive" && r.value ? { ...r.value, epoch: kv.revision } : null;
  }

  /** Declares a gateway group: validated against the groups and networks this node knows; the
   * transaction creates it only if absent, and only while no group changed that this node has
   * not seen (two groups given one VIP at once: the second is checked again). A stale holder
   * record or heartbeat of an earlier group of that name goes with the same transaction. */
  createGatewayGroup(spec: GatewayGroupSpec): GatewayGroup {
    for (let attempt = 0; attempt < 3; attempt++) {
      const existing = this.gatewayGroups();
      const subnets = this.store
        .listNetworks()
        .flatMap((n) =>
          [n.cidr, ...(n.cidr6 ? [n.cidr6] : [])].map((c) => ({ network: n.name, subnet: parseSubnet(c) })),
        );
      const g: GatewayGroup = {
        ...validateGatewayGroup(spec, { existing, subnets, members: this.nodes().map((n) => n.name) }),
        createdAt: new Date().toISOString(),
      };
      const key = K.gatewayGroup(g.name);
      const value = JSON.stringify({ ...g, key: randomBytes(32).toString("base64") } satisfies StoredGatewayGroup);
      const seen = Math.max(this.writer.revision, ...this.writer.keys(K.gatewayGroups).map((k) => k.revision));
      const r = this.sync.txn({
        compare: [
          { key, target: "createRevision", value: 0 },
          { key: K.gatewayGroups, prefix: true, target: "modRevision", op: "<", value: seen + 1 },
        ],
        success: [
          { type: "put", key, value },
          { type: "delete", key: K.gatewayActive(g.name) },
          { type: "delete", key: K.haBeat(g.name) },
        ],
        failure: [{ type: "range", key: K.gatewayGroups, prefix: true }],
      });
      if (r.succeeded) {
        this.writer.apply([
          { key, value: enc.encode(value), revision: r.revision },
          { key: K.gatewayActive(g.name), value: null, revision: r.revision },
        ]);
        return g;
      }
      // What the failure read is newer than the mirror: take it in, then judge again.
      const read = r.responses[0]?.type === "range" ? r.responses[0].kvs : [];
      this.writer.apply(read.map(toChange));
      if (read.some((kv) => kv.key === key))
        throw new StratumError("CONFLICT", `gateway group ${g.name} already exists`);
    }
    throw new StratumError("CONFLICT", "gateway groups are being changed by another node: try again");
  }

  /** Deletes a gateway group, its holder record and its heartbeat in one transaction. */
  deleteGatewayGroup(name: string): void {
    const key = K.gatewayGroup(name);
    const r = this.sync.txn({
      compare: [{ key, target: "createRevision", op: ">", value: 0 }],
      success: [
        { type: "delete", key },
        { type: "delete", key: K.gatewayActive(name) },
        { type: "delete", key: K.haBeat(name) },
      ],
    });
    const at = r.succeeded ? r.revision : Math.max(this.writer.get(key)?.revision ?? 0, this.writer.revision);
    this.writer.apply([
      { key, value: null, revision: at },
      ...(r.succeeded ? [{ key: K.gatewayActive(name), value: null, revision: at }] : []),
    ]);
    if (!r.succeeded) throw new StratumError("NOT_FOUND", `no gateway group ${name}`);
  }

  async status(): Promise<ClusterStatus> {
    const members: ClusterStatus["etcd"]["members"] = [];
    let leader: string | null = null;
    let revision: number | null = null;
    await Promise.all(
      this.client.endpoints.map(async (ep) => {
        try {
          const s = await this.client.status(ep);
          members.push({ endpoint: ep, healthy: true, version: s.version, leader: s.leader === s.memberId });
          if (s.leader === s.memberId) leader = ep;
          revision = Math.max(revision ?? 0, s.revision);
        } catch (e) {
          members.push({ endpoint: ep, healthy: false, error: (e as Error).message });
        }
      }),
    );
    members.sort((a, b) => a.endpoint.localeCompare(b.endpoint));
    const up = members.some((m) => m.healthy);
    const mirrorRev = this.writer.revision;
    return {
      clusterId: this.clusterId,
      node: this.o.nodeName,
      endpoints: [...this.client.endpoints],
      etcd: { up, members, leader, revision },
      mirror: {
        revision: mirrorRev,
        lag: revision === null ? null : Math.max(0, revision - mirrorRev),
        keys: this.writer.count(),
        invalidKeys: this.writer.invalid.size,
        lastResync: this.writer.meta("resyncedAt") ?? null,
      },
      watch: { events: this.#stats.events, resyncs: this.#stats.resyncs, connected: this.#etcdUp },
      lease: {
        id: this.#leaseId,
        ttl: this.#keepAlive?.ttl ?? 0,
        renewals: this.#keepAlive?.renewals ?? 0,
        missed: this.#stats.missedBefore + (this.#keepAlive?.failures ?? 0),
        reRegistered: this.#stats.reRegistered,
      },
    };
  }

  /** What metrics read without asking etcd. */
  get counters(): { up: boolean; lag: number; resyncs: number; events: number; missed: number; writesRefused: number } {
    return {
      up: this.#etcdUp,
      lag: Math.max(0, (this.#lastRevision ?? this.writer.revision) - this.writer.revision),
      resyncs: this.#stats.resyncs,
      events: this.#stats.events,
      missed: this.#stats.missedBefore + (this.#keepAlive?.failures ?? 0),
      writesRefused: this.sync.unavailable,
    };
  }

  /** Stops watching and renewing. `leave`: says so in the member record and drops the lease
   * (the others see "left" at once rather than "unreachable" after the lease's TTL). */
  async stop(o: { leave?: boolean } = {}): Promise<void> {
    this.#stopped = true;
    this.#watch?.close();
    this.#keepAlive?.stop();
    if (o.leave && this.#leaseId) {
      try {
        const prev = this.writer.get(K.member(this.o.nodeName));
        const m = prev ? (JSON.parse(dec.decode(prev.value)) as MemberRecord) : undefined;
        await Promise.race([
          (async () => {
            if (m)
              await this.client.put(
                K.member(this.o.nodeName),
                JSON.stringify({ ...m, left: new Date().toISOString() }),
              );
            await this.client.leaseRevoke(this.#leaseId as string);
          })(),
          Bun.sleep(1500),
        ]);
      } catch {}
    }
    this.client.close();
    this.sync.close();
  }
}

/** What to check when a TLS handshake failed: the CA, or the client certificate. */
function tlsHint(message: string): string {
  if (/UNABLE_TO_VERIFY|SELF_SIGNED|CERT_|certificate/i.test(message))
    return "; etcd's certificate was not trusted: give --etcd-ca the CA that signed it, and check that it names the address in --cluster";
  if (/handshake|SSL|TLS|ECONNRESET/i.test(message) && /https:/.test(message))
    return "; the TLS handshake failed: does etcd want a client certificate (--etcd-cert, --etcd-key)?";
  return "";
}

function safeParse(key: string, value: Uint8Array): MirrorRow | undefined {
  try {
    return parseKey(key, value);
  } catch {
    return undefined;
  }
}

export const defaultNodeName = () => hostname();
