/** A cluster node's copy of etcd in its SQLite store: every key with its value and the revision
 * it was last changed at (cluster_kv), and the tables the services read, kept equal to what
 * those keys say. A change is applied only when it is newer than what the copy holds, so the
 * same event may come twice (from this node's own write, then from the watch) and in any
 * order with other keys' events. Everything in one SQLite transaction per batch. */
import type { Database } from "bun:sqlite";
import type { DefaultAction, StoredRule } from "../model/firewall-rule";
import type { GatewayGroup } from "../model/gateway-group";
import type { MicrosegDoc } from "../model/microseg";
import type { LbDoc, LbHealthRecord } from "../model/vip";
import { blockPut, blockRemove } from "./blocklist-tables";
import type { SqliteStore } from "./sqlite";
import type { Endpoint, StoredDnsRecord, StoredNetwork } from "./store";

export interface ClusterIdentity {
  id: string;
  createdAt: string;
  by: string;
}

export interface MemberRecord {
  name: string;
  address: string;
  mgmtAddress: string | null;
  joinedAt: string;
  /** Set when the node stopped on purpose and said so. */
  left?: string;
}

export interface NodeRecord {
  name: string;
  address: string;
  mgmtAddress: string | null;
  version: string;
  roles: string[];
  startedAt: string;
}

/** An endpoint moving between nodes (docs/overlay.md#moving-an-endpoint), kept under
 * moves/<endpoint> until the new node has taken it. */
export interface MoveRecord {
  /** Names one move: a step of another move is not taken for this one's. */
  id: string;
  from: string;
  to: string;
  /** When it was asked for. */
  at: string;
  /** requested: the node it runs on hands it over; handed-off: it now belongs to `to`, which
   * plugs its port and takes its connection tracking. */
  state: "requested" | "handed-off";
  /** Taken over without its old node (dead, or gone): no connection tracking came along. */
  forced?: boolean;
  /** The old port had the endpoint's addresses configured in its namespace: the new one too. */
  configure?: boolean;
  /** The connection-tracking entries of the old port: key and value (hex), and how long each
   * had left (ms). */
  ct?: Array<{ k: string; v: string; ttl: number }>;
  /** When the old node handed it over. */
  handedOffAt?: string;
}

/** A gateway group as the cluster stores it: with `key`, its heartbeat's HMAC key (base64 of
 * 32 random bytes), which no view shows. */
export type StoredGatewayGroup = GatewayGroup & { key: string };

/** The node that holds a gateway group's role, as the HA engine wrote it (the key's
 * modRevision is the group's epoch). */
export interface GatewayActiveRecord {
  node: string;
  since: string;
  why: string;
}

/** One key as the mirror holds it: which object, and its value (null: deleted). */
export type MirrorRow =
  | { kind: "cluster"; value: ClusterIdentity | null }
  | { kind: "counter"; name: string }
  | { kind: "network"; name: string; value: (StoredNetwork & { vni: number }) | null }
  | { kind: "networkId"; id: number }
  | { kind: "endpoint"; name: string; value: Endpoint | null }
  | { kind: "claim"; networkId: number; hostIndex: number }
  | { kind: "rules"; scope: number; value: StoredRule[] | null }
  | { kind: "globalDefault"; value: DefaultAction | null }
  | { kind: "block"; prefix: string; value: { family: 4 | 6; addedAt: string } | null }
  | { kind: "dns"; networkId: number; value: Array<Omit<StoredDnsRecord, "network">> | null }
  | { kind: "member"; name: string; value: MemberRecord | null }
  | { kind: "node"; name: string; value: NodeRecord | null }
  | { kind: "move"; name: string; value: MoveRecord | null }
  | { kind: "gatewayGroup"; name: string; value: StoredGatewayGroup | null }
  | { kind: "gatewayActive"; name: string; value: GatewayActiveRecord | null }
  | { kind: "microseg"; value: MicrosegDoc | null }
  | { kind: "lb"; value: LbDoc | null }
  | { kind: "lbHealth"; id: number; value: LbHealthRecord | null };

/** A key's change: its value (null: deleted) at `revision`. */
export interface MirrorChange {
  key: string;
  value: Uint8Array | null;
  revision: number;
}

/** What a batch changed, for what follows the mirror (the node's kernel, its servers). */
export interface MirrorEffects {
  /** The kinds of object changed. */
  kinds: Set<MirrorRow["kind"]>;
  /** Networks created, and the networks of endpoints changed (before and after the change). */
  networks: Set<string>;
  /** The nodes of endpoints changed (before and after). */
  nodes: Set<string>;
  /** A network changed or deleted (its addresses, caps or flags may be gone from the kernel). */
  networkChanged: boolean;
  /** Networks whose DHCP and DNS answers may have changed: any change of the network, its
   * endpoints or its DNS records. */
  served: Set<string>;
}

const noEffects = (): MirrorEffects => ({
  kinds: new Set(),
  networks: new Set(),
  nodes: new Set(),
  networkChanged: false,
  served: new Set(),
});

/** The row a key and value stand for (value null: the deleted row); undefined for a key this
 * binary does not know; throws for a value that does not parse. */
export type MirrorParser = (key: string, value: Uint8Array | null) => MirrorRow | undefined;

export class MirrorWriter {
  readonly db: Database;
  /** Keys whose value did not parse, with why: kept in cluster_kv, applied to nothing. */
  readonly invalid = new Map<string, string>();

  #listing = false;
  /** What the last apply or replaceAll changed (a listing: its kinds only). */
  effects: MirrorEffects = noEffects();

  constructor(
    readonly store: SqliteStore,
    readonly parse: MirrorParser,
  ) {
    this.db = store.db;
  }

  #row(key: string, value: Uint8Array | null): MirrorRow | undefined {
    try {
      const r = this.parse(key, value);
      this.invalid.delete(key);
      return r;
    } catch (e) {
      if (value !== null) this.invalid.set(key, (e as Error).message);
      else this.invalid.delete(key);
      return undefined;
    }
  }

  meta(k: string): string | undefined {
    const r = this.db.query("SELECT v FROM cluster_meta WHERE k = ?").get(k) as { v: string } | null;
    return r?.v;
  }

  setMeta(k: string, v: string): void {
    this.db
      .query("INSERT INTO cluster_meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v")
      .run(k, v);
  }

  /** The revision every event up to has been applied (0: never synced). */
  get revision(): number {
    return Number(this.meta("revision") ?? 0);
  }

  /** Every key under `prefix` the copy holds, with its value. */
  keys(prefix: string): Array<{ key: string; value: Uint8Array; revision: number }> {
    return (
      this.db
        .query("SELECT key, value, mod_revision FROM cluster_kv WHERE key >= ? AND key < ? ORDER BY key")
        .all(prefix, `${prefix}\uffff`) as Array<{ key: string; value: Uint8Array; mod_revision: number }>
    ).map((r) => ({ key: r.key, value: r.value, revision: r.mod_revision }));
  }

  get(key: string): { value: Uint8Array; revision: number } | undefined {
    const r = this.db.query("SELECT value, mod_revision FROM cluster_kv WHERE key = ?").get(key) as {
      value: Uint8Array;
      mod_revision: number;
    } | null;
    return r ? { value: r.value, revision: r.mod_revision } : undefined;
  }

  count(): number {
    return (this.db.query("SELECT count(*) AS n FROM cluster_kv").get() as { n: number }).n;
  }

  /** Applies changes (in order) and, when given, records the revision the copy is now at. */
  apply(changes: MirrorChange[], revision?: number): number {
    return this.db.transaction(() => {
      this.#ids.clear();
      this.effects = noEffects();
      let applied = 0;
      for (const c of changes) if (this.#one(c)) applied++;
      if (revision !== undefined && revision > this.revision) this.setMeta("revision", String(revision));
      return applied;
    })();
  }

  /** A full listing at `revision`: every key it has is put, every key the copy holds and it
   * has not is deleted; nothing that did not change is rewritten. One transaction. */
  replaceAll(changes: MirrorChange[], revision: number, prefix: string): { put: number; deleted: number } {
    const l = this.beginListing();
    try {
      l.add(changes);
      return l.finish(revision, prefix);
    } catch (e) {
      l.abort();
      throw e;
    }
  }

  /** replaceAll in parts, as a listing comes (in the order it is to be applied): one SQLite
   * transaction from here to finish() (abort() takes it all back). Between the parts the
   * connection holds that transaction open: only while nothing else uses the store (a node
   * joining, before it serves anything). */
  beginListing(): {
    add(changes: MirrorChange[]): void;
    finish(revision: number, prefix: string): { put: number; deleted: number };
    abort(): void;
  } {
    this.db.exec("BEGIN IMMEDIATE");
    let open = true;
    const listed = new Set<string>();
    const empty = this.count() === 0;
    this.#ids.clear();
    this.effects = noEffects();
    this.#listing = true;
    let put = 0;
    const end = (sql: string) => {
      if (!open) return;
      open = false;
      this.#listing = false;
      this.db.exec(sql);
    };
    return {
      add: (changes) => {
        if (!open) throw new Error("the listing is over");
        for (const c of changes) {
          listed.add(c.key);
          if (this.#one(c, true, empty)) put++;
        }
      },
      finish: (revision, prefix) => {
        if (!open) throw new Error("the listing is over");
        let deleted = 0;
        const gone = (
          this.db
            .query("SELECT key FROM cluster_kv WHERE key >= ? AND key < ?")
            .all(prefix, `${prefix}\uffff`) as Array<{
            key: string;
          }>
        ).filter((r) => !listed.has(r.key));
        for (const g of gone) {
          this.db.query("DELETE FROM cluster_kv WHERE key = ?").run(g.key);
          const row = this.#row(g.key, null);
          if (row) this.#domain(row);
          deleted++;
        }
        this.setMeta("revision", String(revision));
        this.setMeta("resyncedAt", new Date().toISOString());
        end("COMMIT");
        return { put, deleted };
      },
      abort: () => end("ROLLBACK"),
    };
  }

  /** One change; false when the copy already had it or something newer. `force`: a listing
   * (equal revision, equal value: nothing to do). */
  #one(c: MirrorChange, force = false, empty = false): boolean {
    // A first listing into an empty copy has nothing to compare with.
    const cur = empty ? undefined : this.get(c.key);
    if (c.value === null) {
      if (!cur || cur.revision > c.revision) return false;
      this.db.query("DELETE FROM cluster_kv WHERE key = ?").run(c.key);
    } else {
      if (cur && (cur.revision > c.revision || (cur.revision === c.revision && !force))) return false;
      if (cur && cur.revision === c.revision && Buffer.from(cur.value).equals(Buffer.from(c.value))) return false;
      this.db
        .query(
          "INSERT INTO cluster_kv (key, value, mod_revision) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision",
        )
        .run(c.key, c.value, c.revision);
    }
    const row = this.#row(c.key, c.value);
    if (row) this.#domain(row);
    return true;
  }

  /** Network ids by name, within one batch (a listing applies 100,000 endpoints of a few
   * hundred networks); cleared when a network changes. */
  #ids = new Map<string, number>();

  #networkId(name: string): number | undefined {
    const known = this.#ids.get(name);
    if (known !== undefined) return known;
    const id = (this.db.query("SELECT id FROM networks WHERE name = ?").get(name) as { id: number } | null)?.id;
    if (id !== undefined) this.#ids.set(name, id); // a network not there yet may come in this batch
    return id;
  }

  /** A network and everything of it the copy holds (its leases go with it by cascade). */
  #dropNetwork(id: number): void {
    this.db.query("DELETE FROM endpoints WHERE network_id = ?").run(id);
    this.db.query("DELETE FROM fw_rules WHERE scope = ?").run(id);
    this.db.query("DELETE FROM networks WHERE id = ?").run(id);
  }

  #domain(r: MirrorRow): void {
    const db = this.db;
    const fx = this.effects;
    fx.kinds.add(r.kind);
    switch (r.kind) {
      case "network": {
        this.#ids.clear();
        fx.served.add(r.name);
        if (!r.value) {
          const id = this.#networkId(r.name);
          if (id !== undefined) this.#dropNetwork(id);
          fx.networkChanged = true;
          return;
        }
        const n = r.value;
        // Another network under this name (deleted and created again while this node was away).
        const other = this.#networkId(n.name);
        if (other !== undefined && other !== n.id) this.#dropNetwork(other);
        if (other !== undefined) fx.networkChanged = true;
        else fx.networks.add(n.name);
        const { id, createdAt, vni: _vni, ...spec } = n;
        db.query(
          "INSERT INTO networks (id, name, spec, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, spec = excluded.spec, created_at = excluded.created_at",
        ).run(id, n.name, JSON.stringify(spec), createdAt);
        return;
      }
      case "endpoint": {
        // A listing changes everything anyway (and reads no row before writing it).
        if (!this.#listing) {
          const was = db
            .query(
              "SELECT n.name AS network, e.node FROM endpoints e JOIN networks n ON n.id = e.network_id WHERE e.name = ?",
            )
            .get(r.name) as { network: string; node: string } | null;
          if (was) {
            fx.networks.add(was.network);
            fx.served.add(was.network);
            fx.nodes.add(was.node);
          }
          if (r.value) {
            fx.networks.add(r.value.network);
            fx.served.add(r.value.network);
            fx.nodes.add(r.value.node ?? "");
          }
        }
        if (!r.value) {
          db.query("DELETE FROM endpoints WHERE name = ?").run(r.name);
          return;
        }
        const e = r.value;
        const netId = this.#networkId(e.network);
        if (netId === undefined) return; // its network comes later (a listing applies networks first)
        db.query(
          `INSERT OR REPLACE INTO endpoints (name, network_id, host_index, ip, mac, kind, host_if, netns, ifname, created_at, egress_rate, egress_burst, node, mseg_group, queues, macvtap_mode)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(
          e.name,
          netId,
          e.hostIndex,
          e.ip,
          e.mac,
          e.kind,
          e.hostIf,
          e.netns ?? null,
          e.ifname ?? null,
          e.createdAt,
          e.egress?.rate ?? 0,
          e.egress?.burst ?? 0,
          e.node ?? "",
          e.group ?? null,
          e.queues && e.queues > 1 ? e.queues : null,
          e.macvtapMode ?? null,
        );
        return;
      }
      case "rules": {
        db.query("DELETE FROM fw_rules WHERE scope = ?").run(r.scope);
        const ins = db.query("INSERT OR REPLACE INTO fw_rules (id, scope, priority, spec) VALUES (?, ?, ?, ?)");
        for (const rule of r.value ?? []) {
          const { id, priority, ...spec } = rule;
          ins.run(id, r.scope, priority, JSON.stringify(spec));
        }
        return;
      }
      case "globalDefault":
        db.query(
          "INSERT INTO fw_global (id, default_action) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET default_action = excluded.default_action",
        ).run(r.value ?? "allow");
        return;
      case "block":
        if (!r.value) blockRemove(db, r.prefix);
        else {
          const t = Date.parse(r.value.addedAt);
          blockPut(db, r.prefix, Number.isFinite(t) ? t : Date.now());
        }
        return;
      case "dns": {
        const owner = db.query("SELECT name FROM networks WHERE id = ?").get(r.networkId) as { name: string } | null;
        if (owner) fx.served.add(owner.name);
        db.query("DELETE FROM dns_records WHERE network_id = ?").run(r.networkId);
        const ins = db.query(
          "INSERT OR REPLACE INTO dns_records (id, network_id, name, type, value, ttl, created_at) SELECT ?, id, ?, ?, ?, ?, ? FROM networks WHERE id = ?",
        );
        for (const d of r.value ?? []) ins.run(d.id, d.name, d.type, d.value, d.ttl, d.createdAt, r.networkId);
        return;
      }
      case "microseg":
        this.store.putMicroseg(r.value);
        return;
      case "lb":
        this.store.putLb(r.value);
        return;
      default:
        return; // kept in cluster_kv only
    }
  }
}
