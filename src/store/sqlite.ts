/** SQLite store (bun:sqlite, WAL): the single-node implementation of Store. Schema
 * changes are numbered migrations applied in one transaction at open; PRAGMA user_version
 * records how far a database has come. Every change is one transaction (or one statement),
 * so a process killed mid-write leaves the last committed state. At open, every row that fails
 * validation (audit.ts) is moved to the quarantine table in one transaction: counted and kept,
 * never served, never fatal. */

import { Database } from "bun:sqlite";
import { existsSync } from "node:fs";
import { dirname } from "node:path";
import { StratumError } from "../errors";
import type { BgpConfig, BgpPeer } from "../model/bgp";
import type { PackedPrefixes } from "../model/blocklist";
import type { DnsRecord } from "../model/dns-record";
import type { EgressCap } from "../model/egress-cap";
import type { DefaultAction, Rule, StoredRule } from "../model/firewall-rule";
import { byPriority, FW_GLOBAL_SCOPE, withRuleInPlace } from "../model/firewall-rule";
import { emptyMicroseg, type MicrosegDoc } from "../model/microseg";
import { DEFAULT_LEASE_TIME, type Network } from "../model/network";
import { emptyLb, type LbDoc } from "../model/vip";
import { writableDir, writableFile } from "../sys/paths";
import { AUDITED_TABLES, type Finding, type RawRow, RowAudit } from "./audit";
import {
  BLOCKLIST_TABLES,
  blockCountOf,
  blockDeleteAll,
  blockHas,
  blockInsert,
  blockMissing,
  blockPackedAll,
  blockPageRows,
  blockRemove,
  blockRows,
  convertLegacyRows,
} from "./blocklist-tables";
import type {
  BlockEntry,
  Endpoint,
  EndpointKind,
  Lease,
  MacvtapMode,
  QuarantinedRow,
  RawLeaseRow,
  Store,
  StoredDnsRecord,
  StoredNetwork,
} from "./store";

/** Proves the database at `path` can be opened for writing: its directory (created if
 * missing) and its files. SQLite would open a read-only file read-only without a word and
 * fail at the first write ("attempt to write a readonly database"), or fail to make its WAL
 * beside it ("unable to open database file"): this says which path, and why (PERMISSION). */
export function checkWritableStore(path: string): void {
  const hint = "give the agent another --state-dir";
  writableDir(dirname(path), "state directory", hint);
  for (const f of [path, `${path}-wal`, `${path}-shm`]) writableFile(f, "state database", hint);
}

/** Append only: a database at version N runs migrations N.. at open. */
const MIGRATIONS: string[] = [
  `CREATE TABLE networks (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     name TEXT NOT NULL UNIQUE,
     spec TEXT NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE TABLE endpoints (
     name TEXT PRIMARY KEY,
     network_id INTEGER NOT NULL REFERENCES networks(id),
     host_index INTEGER NOT NULL,
     ip TEXT NOT NULL,
     mac TEXT NOT NULL,
     kind TEXT NOT NULL,
     host_if TEXT NOT NULL UNIQUE,
     netns TEXT,
     ifname TEXT,
     created_at TEXT NOT NULL,
     UNIQUE (network_id, host_index)
   );`,
  // Firewall: rules per scope (0 = the node's global scope, else a network id; a network's
  // rules go with it in deleteNetwork, a foreign key cannot express scope 0), the global
  // scope's default action (a network's lives in its spec), and the blocklist.
  `CREATE TABLE fw_rules (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     scope INTEGER NOT NULL,
     priority INTEGER NOT NULL,
     spec TEXT NOT NULL,
     UNIQUE (scope, priority)
   );
   CREATE TABLE fw_global (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     default_action TEXT NOT NULL CHECK (default_action IN ('allow', 'deny'))
   );
   INSERT INTO fw_global (id, default_action) VALUES (1, 'allow');
   CREATE TABLE blocklist (
     prefix TEXT PRIMARY KEY,
     family INTEGER NOT NULL CHECK (family IN (4, 6)),
     added_at TEXT NOT NULL
   );
   CREATE INDEX blocklist_family ON blocklist (family);`,
  // DHCP leases (one row per client MAC and family in a network; the address is the
  // profile's, the row records what the client was told), rows that failed validation at
  // load (kept for the operator, never served), and the user's DNS records per network.
  `CREATE TABLE dhcp_leases (
     network_id INTEGER NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
     mac TEXT NOT NULL,
     family INTEGER NOT NULL,
     ip TEXT NOT NULL,
     endpoint TEXT,
     hostname TEXT,
     state TEXT NOT NULL,
     expires_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (network_id, mac, family)
   );
   CREATE TABLE dhcp_lease_quarantine (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     row TEXT NOT NULL,
     reason TEXT NOT NULL,
     at TEXT NOT NULL
   );
   CREATE TABLE dns_records (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     network_id INTEGER NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
     name TEXT NOT NULL,
     type TEXT NOT NULL,
     value TEXT NOT NULL,
     ttl INTEGER NOT NULL,
     created_at TEXT NOT NULL,
     UNIQUE (network_id, name, type, value)
   );`,
  // Egress caps of endpoints (a network's lives in its spec); 0: none.
  `ALTER TABLE endpoints ADD COLUMN egress_rate INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE endpoints ADD COLUMN egress_burst INTEGER NOT NULL DEFAULT 0;`,
  // Rows of any other table that failed validation at open: where from, every column as
  // JSON (enough to put the row back by hand once fixed), and why.
  `CREATE TABLE quarantine (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     table_name TEXT NOT NULL,
     row TEXT NOT NULL,
     reason TEXT NOT NULL,
     at TEXT NOT NULL
   );`,
  // The blocklist in numeric order (family, address, length: blockSortKey) for paging; a
  // rebuild rather than ADD COLUMN so it applies to any earlier form of the table. Keys are
  // filled in at open (#fillBlockKeys): SQL cannot parse addresses.
  `CREATE TABLE blocklist_next (
     prefix TEXT PRIMARY KEY,
     family INTEGER NOT NULL CHECK (family IN (4, 6)),
     added_at TEXT NOT NULL,
     sort_key BLOB
   );
   INSERT INTO blocklist_next (prefix, family, added_at) SELECT prefix, family, added_at FROM blocklist;
   DROP TABLE blocklist;
   ALTER TABLE blocklist_next RENAME TO blocklist;
   CREATE INDEX blocklist_family ON blocklist (family);
   CREATE INDEX blocklist_order ON blocklist (sort_key);`,
  // The cluster: the node an endpoint runs on ('' on a single node; a TAP's name is unique per
  // node only, so host_if is too), every key of etcd this node mirrors with its revision, and
  // what the mirror knows of itself (the cluster's id, the revision it has caught up to).
  `CREATE TABLE endpoints_next (
     name TEXT PRIMARY KEY,
     network_id INTEGER NOT NULL REFERENCES networks(id),
     host_index INTEGER NOT NULL,
     ip TEXT NOT NULL,
     mac TEXT NOT NULL,
     kind TEXT NOT NULL,
     host_if TEXT NOT NULL,
     netns TEXT,
     ifname TEXT,
     created_at TEXT NOT NULL,
     egress_rate INTEGER NOT NULL DEFAULT 0,
     egress_burst INTEGER NOT NULL DEFAULT 0,
     node TEXT NOT NULL DEFAULT '',
     UNIQUE (network_id, host_index),
     UNIQUE (node, host_if)
   );
   INSERT INTO endpoints_next (name, network_id, host_index, ip, mac, kind, host_if, netns, ifname, created_at, egress_rate, egress_burst)
     SELECT name, network_id, host_index, ip, mac, kind, host_if, netns, ifname, created_at, egress_rate, egress_burst FROM endpoints;
   DROP TABLE endpoints;
   ALTER TABLE endpoints_next RENAME TO endpoints;
   CREATE TABLE IF NOT EXISTS cluster_kv (
     key TEXT PRIMARY KEY,
     value BLOB NOT NULL,
     mod_revision INTEGER NOT NULL
   );
   CREATE TABLE IF NOT EXISTS cluster_meta (
     k TEXT PRIMARY KEY,
     v TEXT NOT NULL
   );`,
  // The gateway's BGP speaker: this node's own settings, never the cluster's.
  `CREATE TABLE IF NOT EXISTS bgp_config (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     asn INTEGER NOT NULL,
     router_id TEXT,
     restart_time INTEGER NOT NULL,
     import_default INTEGER NOT NULL DEFAULT 0
   );
   CREATE TABLE IF NOT EXISTS bgp_peers (
     name TEXT PRIMARY KEY,
     address TEXT NOT NULL UNIQUE,
     asn INTEGER NOT NULL,
     hold_time INTEGER NOT NULL,
     password_file TEXT,
     created_at TEXT NOT NULL
   );`,
  // Microsegmentation: the policy document (one row) and each endpoint's group.
  `CREATE TABLE IF NOT EXISTS microseg (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     doc TEXT NOT NULL,
     rev INTEGER NOT NULL
   );
   ALTER TABLE endpoints ADD COLUMN mseg_group TEXT;`,
  // The load balancer: its document (one row).
  `CREATE TABLE IF NOT EXISTS lb (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     doc TEXT NOT NULL,
     rev INTEGER NOT NULL
   );`,
  // The blocklist as numbers in two tables (blocklist-tables.ts); the text table's rows are
  // converted at open (#convertLegacyBlocklist: SQL cannot parse addresses), then it goes.
  `${BLOCKLIST_TABLES}
   ALTER TABLE blocklist RENAME TO blocklist_legacy;`,
  // An endpoint by its port's name on any node (the drift watch, on every link notice): the
  // UNIQUE (node, host_if) index serves only look-ups that name the node.
  `CREATE INDEX IF NOT EXISTS endpoints_host_if ON endpoints (host_if);`,
  // A VM's multi-queue tap: the queues its VMM may open (NULL: a tap of one queue, a veth).
  `ALTER TABLE endpoints ADD COLUMN queues INTEGER;`,
  // A VM's macvtap: its mode (NULL: not a macvtap).
  `ALTER TABLE endpoints ADD COLUMN macvtap_mode TEXT;`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

interface NetworkRow {
  id: number;
  name: string;
  spec: string;
  created_at: string;
}
interface RuleRow {
  id: number;
  scope: number;
  priority: number;
  spec: string;
}
interface EndpointRow {
  name: string;
  network: string;
  host_index: number;
  ip: string;
  mac: string;
  kind: EndpointKind;
  host_if: string;
  netns: string | null;
  ifname: string | null;
  created_at: string;
  egress_rate: number;
  egress_burst: number;
  node: string;
  mseg_group: string | null;
  queues: number | null;
  macvtap_mode: MacvtapMode | null;
}

/** A row as JSON for the quarantine table: blobs as hex, so nothing is lost in the text. */
function rowJson(row: Record<string, unknown>): string {
  return JSON.stringify(row, (_k, v) =>
    v instanceof Uint8Array ? `x'${Buffer.from(v).toString("hex")}'` : typeof v === "bigint" ? String(v) : v,
  );
}

export class SqliteStore implements Store {
  readonly db: Database;
  #quarantinedAtOpen: QuarantinedRow[] = [];
  readonly #readonly: boolean;

  /** Opens (creating if needed) the database at `path` (":memory:" for tests). `readonly`:
   * for tools that read the agent's state beside it (trace, monitor): nothing is created or
   * migrated, and a schema newer than this binary's is refused. */
  constructor(path: string, o: { readonly?: boolean } = {}) {
    this.#readonly = o.readonly === true;
    if (o.readonly) {
      if (!existsSync(path)) throw new StratumError("NOT_FOUND", `no state database at ${path} (use --state-dir)`);
      this.db = new Database(path, { readonly: true, strict: true });
      this.db.exec("PRAGMA busy_timeout = 5000;");
      const v = (this.db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
      if (v !== MIGRATIONS.length)
        throw new StratumError(
          "INVALID",
          `state database ${path} has schema version ${v}, this binary reads ${MIGRATIONS.length}: use the agent's binary`,
        );
      return;
    }
    if (path !== ":memory:") checkWritableStore(path);
    try {
      this.db = new Database(path, { create: true, strict: true });
      // A page cache up to 128 MiB (taken as the file grows): a cluster node's first listing
      // writes 100,000 endpoints in one transaction, and with SQLite's default 8 MiB it
      // spills to the WAL mid-way (3.6 s instead of 1.6 s, measured on 46 MB of state).
      this.db.exec(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA cache_size = -131072;",
      );
    } catch (e) {
      throw new StratumError("SYS", `open state database ${path}: ${(e as Error).message}`, { cause: e });
    }
    this.#migrate();
    const legacy = this.#convertLegacyBlocklist();
    this.#quarantinedAtOpen = [...legacy, ...this.#quarantineInvalid()];
  }

  /** The blocklist's rows from before its two tables, moved into them in one transaction
   * (a crash leaves the old table, converted again at the next open); rows that fail the
   * checks go to the quarantine. */
  #convertLegacyBlocklist(): QuarantinedRow[] {
    const has = this.db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'blocklist_legacy'").get();
    if (!has) return [];
    return this.db
      .transaction(() => {
        const rows = this.db.query("SELECT * FROM blocklist_legacy").iterate() as IterableIterator<
          Record<string, unknown>
        >;
        const bad = convertLegacyRows(this.db, rows);
        const keep = this.db.query("INSERT INTO quarantine (table_name, row, reason, at) VALUES (?, ?, ?, ?)");
        const at = new Date().toISOString();
        const out: QuarantinedRow[] = [];
        for (const b of bad) {
          const what = `blocklist prefix ${typeof b.row.prefix === "string" ? b.row.prefix : "?"}`;
          keep.run("blocklist", rowJson(b.row), `${what}: ${b.reason}`, at);
          out.push({ table: "blocklist", what, reason: b.reason });
        }
        this.db.exec("DROP TABLE blocklist_legacy");
        return out;
      })
      .immediate();
  }

  #migrate(): void {
    const row = this.db.query("PRAGMA user_version").get() as { user_version: number };
    const from = row.user_version;
    if (from > MIGRATIONS.length)
      throw new StratumError(
        "INVALID",
        `state database schema version ${from} is newer than this binary understands (${MIGRATIONS.length}): use the newer binary`,
      );
    if (from === MIGRATIONS.length) return;
    this.db.transaction(() => {
      for (let v = from; v < MIGRATIONS.length; v++) this.db.exec(MIGRATIONS[v] as string);
      this.db.exec(`PRAGMA user_version = ${MIGRATIONS.length}`);
    })();
  }

  /** One transaction: every row of the audited tables is checked; those that fail are copied
   * to `quarantine` and deleted, dependents before their networks (the endpoints' foreign key
   * would refuse otherwise, and the leases' and records' cascade would lose them unrecorded). */
  #quarantineInvalid(): QuarantinedRow[] {
    // IMMEDIATE: takes the write lock up front; a deferred one upgraded to write could fail
    // with SQLITE_BUSY (no busy wait on a snapshot that went stale) and refuse the open.
    return this.db
      .transaction(() => {
        const audit = new RowAudit();
        const found: Finding[] = [];
        for (const table of AUDITED_TABLES)
          for (const row of this.db
            .query(`SELECT rowid AS rowid_, * FROM ${table} ORDER BY rowid`)
            .iterate() as IterableIterator<RawRow>) {
            const f = audit.check(table, row);
            if (f) found.push(f);
          }
        if (!found.length) return [];
        // Fail closed: a scope that lost a rule, or a global default that could not be read,
        // denies by default until the operator looks (a lost deny rule must not open a port).
        const closed = new Set<number>();
        for (const f of found) {
          if (f.table === "fw_global") {
            closed.add(FW_GLOBAL_SCOPE);
            f.reason = f.reason.replace(/ \(the default is allow until it is set again\)$/, "");
            f.reason += "; the global default is now deny (fail closed) until it is set again";
          } else if (f.table === "fw_rules") {
            const scope = f.row.scope as number;
            const alive =
              scope === FW_GLOBAL_SCOPE ||
              (this.db.query("SELECT 1 FROM networks WHERE id = ?").get(scope) !== null &&
                !found.some((g) => g.table === "networks" && g.row.id === scope));
            if (!alive) continue;
            closed.add(scope);
            f.reason += `; ${scope === FW_GLOBAL_SCOPE ? "the global scope" : "its network"} now denies by default (fail closed) until its rules are reviewed`;
          }
        }
        const keep = this.db.query("INSERT INTO quarantine (table_name, row, reason, at) VALUES (?, ?, ?, ?)");
        const at = new Date().toISOString();
        for (const table of [...AUDITED_TABLES].reverse()) {
          const del = this.db.query(`DELETE FROM ${table} WHERE rowid = ?`);
          for (const f of found) {
            if (f.table !== table) continue;
            const { rowid_, ...row } = f.row;
            keep.run(table, rowJson(row), `${f.what}: ${f.reason}`, at);
            del.run(rowid_);
          }
        }
        for (const scope of closed)
          if (scope === FW_GLOBAL_SCOPE)
            this.db
              .query(
                "INSERT INTO fw_global (id, default_action) VALUES (1, 'deny') ON CONFLICT (id) DO UPDATE SET default_action = 'deny'",
              )
              .run();
          else
            this.db
              .query("UPDATE networks SET spec = json_set(spec, '$.defaultAction', 'deny') WHERE id = ?")
              .run(scope);
        return found.map((f) => ({ table: f.table, what: f.what, reason: f.reason }));
      })
      .immediate();
  }

  quarantinedAtOpen(): QuarantinedRow[] {
    return [...this.#quarantinedAtOpen];
  }

  quarantinedRows(): number {
    return (this.db.query("SELECT count(*) AS n FROM quarantine").get() as { n: number }).n;
  }

  #toNetwork(r: NetworkRow): StoredNetwork {
    // Specs written before a field existed get its default.
    const spec = {
      dhcpLeaseTime: DEFAULT_LEASE_TIME,
      dhcpRoutes: [],
      dhcpOptions: [],
      extendToLan: false,
      ...(JSON.parse(r.spec) as Partial<Network>),
    } as Network;
    return { ...spec, name: r.name, id: r.id, createdAt: r.created_at };
  }

  listNetworks(): StoredNetwork[] {
    return (this.db.query("SELECT * FROM networks ORDER BY name").all() as NetworkRow[]).map((r) => this.#toNetwork(r));
  }

  getNetwork(name: string): StoredNetwork | null {
    const r = this.db.query("SELECT * FROM networks WHERE name = ?").get(name) as NetworkRow | null;
    return r ? this.#toNetwork(r) : null;
  }

  createNetwork(net: Network): StoredNetwork {
    try {
      // A transaction: the id is known only after the insert, and a refused one must not stay.
      return this.db.transaction(() => {
        const r = this.db
          .query("INSERT INTO networks (name, spec, created_at) VALUES (?, ?, ?) RETURNING *")
          .get(net.name, JSON.stringify(net), new Date().toISOString()) as NetworkRow;
        if (r.id > 0xffff)
          throw new StratumError("INVALID", "network ids are exhausted (65,535 networks created on this node)");
        return this.#toNetwork(r);
      })();
    } catch (e) {
      if (String(e).includes("UNIQUE")) throw new StratumError("CONFLICT", `network ${net.name} already exists`);
      throw e;
    }
  }

  updateNetwork(name: string, patch: Partial<Network>): StoredNetwork {
    return this.db.transaction(() => {
      const cur = this.getNetwork(name);
      if (!cur) throw new StratumError("NOT_FOUND", `network ${name} does not exist`);
      const { id: _id, createdAt: _c, ...spec } = cur;
      const next = { ...spec, ...patch, name };
      this.db.query("UPDATE networks SET spec = ? WHERE name = ?").run(JSON.stringify(next), name);
      return this.getNetwork(name) as StoredNetwork;
    })();
  }

  deleteNetwork(name: string): void {
    this.db.transaction(() => {
      const n = this.getNetwork(name);
      if (!n) throw new StratumError("NOT_FOUND", `network ${name} does not exist`);
      const eps = this.listEndpoints(name).length;
      if (eps) throw new StratumError("INVALID", `network ${name} still has ${eps} endpoint(s) attached`);
      this.db.query("DELETE FROM fw_rules WHERE scope = ?").run(n.id);
      this.db.query("DELETE FROM networks WHERE id = ?").run(n.id);
    })();
  }

  #endpointSelect = "SELECT e.*, n.name AS network FROM endpoints e JOIN networks n ON n.id = e.network_id";

  #toEndpoint(r: EndpointRow): Endpoint {
    return {
      name: r.name,
      network: r.network,
      ip: r.ip,
      mac: r.mac,
      hostIndex: r.host_index,
      kind: r.kind,
      hostIf: r.host_if,
      netns: r.netns ?? undefined,
      ifname: r.ifname ?? undefined,
      createdAt: r.created_at,
      ...(r.egress_rate ? { egress: { rate: r.egress_rate, burst: r.egress_burst } } : {}),
      ...(r.node ? { node: r.node } : {}),
      ...(r.mseg_group ? { group: r.mseg_group } : {}),
      ...(r.queues && r.queues > 1 ? { queues: r.queues } : {}),
      ...(r.macvtap_mode ? { macvtapMode: r.macvtap_mode } : {}),
    };
  }

  setEndpointEgress(name: string, cap: EgressCap | null): Endpoint {
    const r = this.db
      .query("UPDATE endpoints SET egress_rate = ?, egress_burst = ? WHERE name = ?")
      .run(cap?.rate ?? 0, cap?.burst ?? 0, name);
    if (r.changes === 0) throw new StratumError("NOT_FOUND", `endpoint ${name} does not exist`);
    return this.getEndpoint(name) as Endpoint;
  }

  setEndpointGroup(name: string, group: string | null): Endpoint {
    return this.db.transaction(() => {
      if (group !== null && !this.getMicroseg().groups.some((g) => g.name === group))
        throw new StratumError("NOT_FOUND", `no group "${group}" (group list shows them)`);
      const r = this.db.query("UPDATE endpoints SET mseg_group = ? WHERE name = ?").run(group, name);
      if (r.changes === 0) throw new StratumError("NOT_FOUND", `endpoint ${name} does not exist`);
      return this.getEndpoint(name) as Endpoint;
    })();
  }

  groupMembers(group: string): number {
    return (this.db.query("SELECT count(*) AS n FROM endpoints WHERE mseg_group = ?").get(group) as { n: number }).n;
  }

  /** The parsed policy, while the row's revision is the one it was read at (a rolled-back write
   * brings the old revision back, so the cache is never ahead of the table). */
  #mseg?: { rev: number; doc: MicrosegDoc };

  getMicroseg(): MicrosegDoc {
    const r = this.db.query("SELECT rev FROM microseg WHERE id = 1").get() as { rev: number } | null;
    if (!r) return emptyMicroseg();
    if (this.#mseg?.rev === r.rev) return this.#mseg.doc;
    const d = this.db.query("SELECT doc FROM microseg WHERE id = 1").get() as { doc: string };
    const doc = JSON.parse(d.doc) as MicrosegDoc;
    this.#mseg = { rev: r.rev, doc };
    return doc;
  }

  /** Writes the policy document (the mirror, a single node's services). */
  putMicroseg(doc: MicrosegDoc | null): void {
    this.#mseg = undefined;
    if (!doc) this.db.query("DELETE FROM microseg").run();
    else
      this.db
        .query(
          "INSERT INTO microseg (id, doc, rev) VALUES (1, ?, 1) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, rev = rev + 1",
        )
        .run(JSON.stringify(doc));
  }

  updateMicroseg<T>(fn: (doc: MicrosegDoc, members: (group: string) => number) => { doc?: MicrosegDoc; result: T }): T {
    return this.db.transaction(() => {
      const out = fn(this.getMicroseg(), (g) => this.groupMembers(g));
      if (out.doc) this.putMicroseg(out.doc);
      return out.result;
    })();
  }

  #lb?: { rev: number; doc: LbDoc };

  getLb(): LbDoc {
    const r = this.db.query("SELECT rev FROM lb WHERE id = 1").get() as { rev: number } | null;
    if (!r) return emptyLb();
    if (this.#lb?.rev === r.rev) return this.#lb.doc;
    const d = this.db.query("SELECT doc FROM lb WHERE id = 1").get() as { doc: string };
    const doc = JSON.parse(d.doc) as LbDoc;
    this.#lb = { rev: r.rev, doc };
    return doc;
  }

  /** Writes the load balancer's document (the mirror, a single node's services). */
  putLb(doc: LbDoc | null): void {
    this.#lb = undefined;
    if (!doc) this.db.query("DELETE FROM lb").run();
    else
      this.db
        .query(
          "INSERT INTO lb (id, doc, rev) VALUES (1, ?, 1) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, rev = rev + 1",
        )
        .run(JSON.stringify(doc));
  }

  updateLb<T>(fn: (doc: LbDoc) => { doc?: LbDoc; result: T }): T {
    return this.db.transaction(() => {
      const out = fn(this.getLb());
      if (out.doc) this.putLb(out.doc);
      return out.result;
    })();
  }

  listEndpoints(network?: string, node?: string): Endpoint[] {
    const where = [...(network ? ["n.name = ?"] : []), ...(node !== undefined ? ["e.node = ?"] : [])];
    const args = [...(network ? [network] : []), ...(node !== undefined ? [node] : [])];
    const rows = this.db
      .query(`${this.#endpointSelect}${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY e.name`)
      .all(...args);
    return (rows as EndpointRow[]).map((r) => this.#toEndpoint(r));
  }

  getEndpoint(name: string): Endpoint | null {
    const r = this.db.query(`${this.#endpointSelect} WHERE e.name = ?`).get(name) as EndpointRow | null;
    return r ? this.#toEndpoint(r) : null;
  }

  getEndpointByHostIf(hostIf: string, node?: string): Endpoint | null {
    const r = (
      node === undefined
        ? this.db.query(`${this.#endpointSelect} WHERE e.host_if = ?`).get(hostIf)
        : this.db.query(`${this.#endpointSelect} WHERE e.host_if = ? AND e.node = ?`).get(hostIf, node)
    ) as EndpointRow | null;
    return r ? this.#toEndpoint(r) : null;
  }

  claimEndpoint(ep: Omit<Endpoint, "createdAt">): Endpoint {
    return this.db.transaction(() => {
      const net = this.getNetwork(ep.network);
      if (!net) throw new StratumError("NOT_FOUND", `network ${ep.network} does not exist`);
      if (this.getEndpoint(ep.name)) throw new StratumError("CONFLICT", `endpoint ${ep.name} already exists`);
      if (ep.group !== undefined && !this.getMicroseg().groups.some((g) => g.name === ep.group))
        throw new StratumError("NOT_FOUND", `no group "${ep.group}" (group list shows them)`);
      const holder = this.db
        .query("SELECT name FROM endpoints WHERE network_id = ? AND host_index = ?")
        .get(net.id, ep.hostIndex) as { name: string } | null;
      if (holder) throw new StratumError("INVALID", `${ep.ip} is already claimed by endpoint ${holder.name}`);
      this.db
        .query(
          "INSERT INTO endpoints (name, network_id, host_index, ip, mac, kind, host_if, netns, ifname, created_at, node, mseg_group, queues, macvtap_mode) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .run(
          ep.name,
          net.id,
          ep.hostIndex,
          ep.ip,
          ep.mac,
          ep.kind,
          ep.hostIf,
          ep.netns ?? null,
          ep.ifname ?? null,
          new Date().toISOString(),
          ep.node ?? "",
          ep.group ?? null,
          ep.queues && ep.queues > 1 ? ep.queues : null,
          ep.macvtapMode ?? null,
        );
      return this.getEndpoint(ep.name) as Endpoint;
    })();
  }

  releaseEndpoint(name: string): void {
    const r = this.db.query("DELETE FROM endpoints WHERE name = ?").run(name);
    if (r.changes === 0) throw new StratumError("NOT_FOUND", `endpoint ${name} does not exist`);
  }

  endpointNames(network: string): string[] {
    return (
      this.db
        .query("SELECT e.name FROM endpoints e JOIN networks n ON n.id = e.network_id WHERE n.name = ? ORDER BY e.name")
        .all(network) as Array<{ name: string }>
    ).map((r) => r.name);
  }

  endpointCount(network: string): number {
    const r = this.db
      .query("SELECT COUNT(*) AS n FROM endpoints e JOIN networks n ON n.id = e.network_id WHERE n.name = ?")
      .get(network) as { n: number };
    return r.n;
  }

  firstFreeIndex(network: string, skip: number, total: number): number | undefined {
    // Claimed without a gap (the usual case: addresses are handed out from the bottom): one
    // past the highest, found from a count and the index's last entry alone.
    const d = this.db
      .query(
        "SELECT COUNT(*) AS n, MAX(e.host_index) AS m FROM endpoints e WHERE e.network_id = (SELECT id FROM networks WHERE name = ?)",
      )
      .get(network) as { n: number; m: number | null };
    const top = d.m ?? -1;
    if (d.n === top + 1 - (skip >= 0 && skip <= top ? 1 : 0)) {
      let c = top + 1;
      if (c === skip) c++;
      return c < total ? c : undefined;
    }
    // The lowest free index is 0, one past a claimed one, or one past the gateway's: the
    // candidates, less the claimed ones and the gateway's, searched in the index.
    const r = this.db
      .query(
        `WITH claimed AS (SELECT e.host_index AS h FROM endpoints e JOIN networks n ON n.id = e.network_id WHERE n.name = ?1)
         SELECT MIN(c) AS free FROM (SELECT 0 AS c UNION SELECT ?2 + 1 UNION SELECT h + 1 FROM claimed)
         WHERE c < ?3 AND c != ?2 AND c NOT IN (SELECT h FROM claimed)`,
      )
      .get(network, skip, total) as { free: number | null };
    return r.free ?? undefined;
  }

  claimedIndexes(network: string): Set<number> {
    const rows = this.db
      .query("SELECT e.host_index FROM endpoints e JOIN networks n ON n.id = e.network_id WHERE n.name = ?")
      .all(network) as Array<{ host_index: number }>;
    return new Set(rows.map((r) => r.host_index));
  }

  // ---- firewall ------------------------------------------------------------------------

  #toRule(r: RuleRow): StoredRule {
    return { ...(JSON.parse(r.spec) as Rule), id: r.id, priority: r.priority };
  }

  #scopeName(scope: number): string {
    if (scope === FW_GLOBAL_SCOPE) return "the global scope";
    const r = this.db.query("SELECT name FROM networks WHERE id = ?").get(scope) as { name: string } | null;
    if (!r) throw new StratumError("NOT_FOUND", `no network has id ${scope}`);
    return `network ${r.name}`;
  }

  /** Rule sets read since the connection last changed a row, by scope: a one-rule change to a
   * scope of 10,000 rules then costs no re-read (10 ms or more). Any write on this connection
   * (the only one that writes) moves SQLite's change counter and drops them; the rules are
   * frozen, each caller gets its own array. */
  #rulesCache = new Map<number, { changes: number; rules: readonly StoredRule[] }>();

  #changes(): number {
    return (this.db.query("SELECT total_changes() AS n").get() as { n: number }).n;
  }

  /** After a write of one scope's rules (that started at change count `before`): the scope's
   * cached set gets the same edit, and the other scopes' sets, valid before, stay valid. */
  #rulesWritten(
    scope: number,
    before: number,
    edit: (rules: readonly StoredRule[]) => readonly StoredRule[],
    /** The edit gives the whole new set: cached even when the old one was not. */
    whole = false,
  ): void {
    // Inside a caller's transaction the write may still be rolled back: forget everything.
    if (this.db.inTransaction) {
      this.#rulesCache.clear();
      return;
    }
    const after = this.#changes();
    for (const [s, c] of this.#rulesCache) {
      if (c.changes !== before) this.#rulesCache.delete(s);
      else if (s !== scope) c.changes = after;
    }
    const hit = this.#rulesCache.get(scope) ?? (whole ? { changes: after, rules: [] } : undefined);
    if (hit)
      this.#rulesCache.set(scope, {
        changes: after,
        // A whole new set is frozen here; an edit freezes the one rule it brings (10,000
        // checks of the others a change were most of this).
        rules: byPriority(whole ? edit(hit.rules).map((r) => Object.freeze({ ...r })) : edit(hit.rules)),
      });
  }

  #readRules(scope: number): StoredRule[] {
    return (this.db.query("SELECT * FROM fw_rules WHERE scope = ? ORDER BY priority").all(scope) as RuleRow[]).map(
      (r) => Object.freeze(this.#toRule(r)),
    );
  }

  /** Runs a transaction that writes rules of `scope` (-1: none) and gives the cache the same
   * edit of that scope's set (#rulesWritten). */
  #rulesTx<T>(
    scope: number,
    body: () => T,
    edit: (rules: readonly StoredRule[], out: T) => readonly StoredRule[],
    whole = false,
  ): T {
    const before = this.#changes();
    const out = this.db.transaction(body)();
    this.#rulesWritten(scope, before, (rs) => edit(rs, out), whole);
    return out;
  }

  listRules(scope: number): StoredRule[] {
    // What a transaction reads may be rolled back; a read-only connection sees others' writes
    // without its counter moving: neither is cached.
    if (this.db.inTransaction || this.#readonly) return this.#readRules(scope);
    const changes = this.#changes();
    const hit = this.#rulesCache.get(scope);
    if (hit && hit.changes === changes) return [...hit.rules];
    if (hit || this.#rulesCache.size > 64) this.#rulesCache.clear();
    const rules = this.#readRules(scope);
    this.#rulesCache.set(scope, { changes, rules });
    return [...rules];
  }

  allocRuleIds(n: number): number[] {
    // No rule changes (-1): the cached sets stay valid past the sequence's update.
    return this.#rulesTx(
      -1,
      () => {
        const seq = this.db.query("SELECT seq FROM sqlite_sequence WHERE name = 'fw_rules'").get() as {
          seq: number;
        } | null;
        const max = (this.db.query("SELECT max(id) AS m FROM fw_rules").get() as { m: number | null }).m ?? 0;
        const first = Math.max(seq?.seq ?? 0, max) + 1;
        const last = first + n - 1;
        // Rule ids share the datapath's 32-bit hit-counter key with the defaults' (high bit set).
        if (last >= 0x80000000) throw new StratumError("CAPACITY", "firewall rule ids are exhausted (2^31 created)");
        if (seq) this.db.query("UPDATE sqlite_sequence SET seq = ? WHERE name = 'fw_rules'").run(last);
        else this.db.query("INSERT INTO sqlite_sequence (name, seq) VALUES ('fw_rules', ?)").run(last);
        return Array.from({ length: n }, (_, i) => first + i);
      },
      (rs) => rs,
    );
  }

  #insertRule(scope: number, rule: Rule | StoredRule): StoredRule {
    const { id, ...spec } = rule as StoredRule;
    try {
      const r = this.db
        .query("INSERT INTO fw_rules (id, scope, priority, spec) VALUES (?, ?, ?, ?) RETURNING *")
        .get(id ?? null, scope, spec.priority, JSON.stringify(spec)) as RuleRow;
      return this.#toRule(r);
    } catch (e) {
      if (!String(e).includes("UNIQUE")) throw e;
      const holder = this.db
        .query("SELECT id FROM fw_rules WHERE scope = ? AND priority = ?")
        .get(scope, spec.priority) as { id: number } | null;
      if (holder)
        throw new StratumError(
          "INVALID",
          `priority ${spec.priority} is taken by rule ${holder.id} in ${this.#scopeName(scope)}: priorities are unique`,
        );
      throw new StratumError("INVALID", `rule id ${id} is already in use`);
    }
  }

  addRule(scope: number, rule: Rule | StoredRule): StoredRule {
    return this.#rulesTx(
      scope,
      () => {
        this.#scopeName(scope);
        return this.#insertRule(scope, rule);
      },
      // In its place by priority: the set stays in order, checked rather than sorted again.
      (rs, r) => withRuleInPlace(rs, Object.freeze({ ...r })),
    );
  }

  #mustRule(scope: number, id: number): StoredRule {
    const r = this.db.query("SELECT * FROM fw_rules WHERE scope = ? AND id = ?").get(scope, id) as RuleRow | null;
    if (!r) throw new StratumError("NOT_FOUND", `${this.#scopeName(scope)} has no rule ${id}`);
    return this.#toRule(r);
  }

  deleteRule(scope: number, id: number): void {
    this.#rulesTx(
      scope,
      () => {
        this.#mustRule(scope, id);
        this.db.query("DELETE FROM fw_rules WHERE id = ?").run(id);
      },
      (rs) => rs.filter((x) => x.id !== id),
    );
  }

  moveRule(scope: number, id: number, priority: number): StoredRule {
    return this.#rulesTx(
      scope,
      () => {
        const { id: _id, ...rule } = this.#mustRule(scope, id);
        const holder = this.db
          .query("SELECT id FROM fw_rules WHERE scope = ? AND priority = ? AND id != ?")
          .get(scope, priority, id) as { id: number } | null;
        if (holder)
          throw new StratumError(
            "INVALID",
            `priority ${priority} is taken by rule ${holder.id} in ${this.#scopeName(scope)}: priorities are unique`,
          );
        this.db
          .query("UPDATE fw_rules SET priority = ?, spec = ? WHERE id = ?")
          .run(priority, JSON.stringify({ ...rule, priority }), id);
        return this.#mustRule(scope, id);
      },
      (rs, moved) => {
        const frozen = Object.freeze({ ...moved });
        return rs.map((x) => (x.id === id ? frozen : x));
      },
    );
  }

  #setScopeDefault(scope: number, def: DefaultAction): void {
    if (scope === FW_GLOBAL_SCOPE) {
      // An upsert: the row is gone after its value was quarantined.
      this.db
        .query(
          "INSERT INTO fw_global (id, default_action) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET default_action = excluded.default_action",
        )
        .run(def);
      return;
    }
    const r = this.db.query("SELECT spec FROM networks WHERE id = ?").get(scope) as { spec: string } | null;
    if (!r) throw new StratumError("NOT_FOUND", `no network has id ${scope}`);
    const spec = { ...(JSON.parse(r.spec) as Network), defaultAction: def };
    this.db.query("UPDATE networks SET spec = ? WHERE id = ?").run(JSON.stringify(spec), scope);
  }

  replaceRules(scope: number, rules: Array<Rule | StoredRule>, def?: DefaultAction): StoredRule[] {
    return this.#rulesTx(
      scope,
      () => {
        this.#scopeName(scope);
        this.db.query("DELETE FROM fw_rules WHERE scope = ?").run(scope);
        const out = rules.map((r) => this.#insertRule(scope, r)).sort((a, b) => a.priority - b.priority);
        if (def !== undefined) this.#setScopeDefault(scope, def);
        return out;
      },
      (_, out) => out,
      true,
    );
  }

  scopeDefault(scope: number): DefaultAction {
    if (scope === FW_GLOBAL_SCOPE) return this.getGlobalDefault();
    const r = this.db.query("SELECT spec FROM networks WHERE id = ?").get(scope) as { spec: string } | null;
    if (!r) throw new StratumError("NOT_FOUND", `no network has id ${scope}`);
    return (JSON.parse(r.spec) as Network).defaultAction ?? "allow";
  }

  getGlobalDefault(): DefaultAction {
    const r = this.db.query("SELECT default_action FROM fw_global WHERE id = 1").get() as {
      default_action: DefaultAction;
    } | null;
    return r?.default_action ?? "allow";
  }

  setGlobalDefault(def: DefaultAction): void {
    this.#setScopeDefault(FW_GLOBAL_SCOPE, def);
  }

  // ---- blocklist -----------------------------------------------------------------------

  blockAdd(p: PackedPrefixes): number {
    const at = Date.now();
    return this.db.transaction(() => blockInsert(this.db, p, at))();
  }

  blockMissing(p: PackedPrefixes): PackedPrefixes {
    return this.db.transaction(() => blockMissing(this.db, p))();
  }

  blockListed(prefixes: string[]): Set<string> {
    const out = new Set<string>();
    this.db.transaction(() => {
      for (const p of prefixes) if (blockHas(this.db, p)) out.add(p);
    })();
    return out;
  }

  blockDel(prefix: string): boolean {
    return blockRemove(this.db, prefix);
  }

  blockList(): BlockEntry[] {
    return this.db.transaction(() => blockRows(this.db))();
  }

  blockPacked(): PackedPrefixes {
    return this.db.transaction(() => blockPackedAll(this.db))();
  }

  blockPage(o: { after?: string; limit: number; only?: string[] }): BlockEntry[] {
    return this.db.transaction(() => blockPageRows(this.db, o))();
  }

  blockClear(): number {
    return this.db.transaction(() => blockDeleteAll(this.db))();
  }

  blockCount(family: 4 | 6): number {
    return blockCountOf(this.db, family);
  }

  // ---- DHCP leases and DNS records ------------------------------------------------------

  /** Every lease row as stored, unvalidated: the DHCP service checks each and quarantines
   * what fails (a hand-edited or corrupt row must not stop the agent). */
  loadLeases(): RawLeaseRow[] {
    return this.db
      .query(
        "SELECT l.rowid AS rowid, n.name AS network, l.mac, l.family, l.ip, l.endpoint, l.hostname, l.state, l.expires_at, l.updated_at FROM dhcp_leases l JOIN networks n ON n.id = l.network_id",
      )
      .all() as RawLeaseRow[];
  }

  putLease(l: Lease): void {
    const r = this.db
      .query(
        `INSERT INTO dhcp_leases (network_id, mac, family, ip, endpoint, hostname, state, expires_at, updated_at)
         SELECT id, ?, ?, ?, ?, ?, ?, ?, ? FROM networks WHERE name = ?
         ON CONFLICT (network_id, mac, family) DO UPDATE SET ip = excluded.ip, endpoint = excluded.endpoint,
           hostname = excluded.hostname, state = excluded.state, expires_at = excluded.expires_at, updated_at = excluded.updated_at`,
      )
      .run(l.mac, l.family, l.ip, l.endpoint ?? null, l.hostname ?? null, l.state, l.expiresAt, l.updatedAt, l.network);
    if (r.changes === 0) throw new StratumError("NOT_FOUND", `network ${l.network} does not exist`);
  }

  putLeases(ls: Lease[]): void {
    this.db.transaction(() => {
      for (const l of ls) this.putLease(l);
    })();
  }

  deleteLease(network: string, mac: string, family: 4 | 6): void {
    this.db
      .query(
        "DELETE FROM dhcp_leases WHERE network_id = (SELECT id FROM networks WHERE name = ?) AND mac = ? AND family = ?",
      )
      .run(network, mac, family);
  }

  /** Moves a lease row out of service, keeping its text and why, in one transaction. */
  quarantineLease(rowid: number, row: string, reason: string): void {
    this.db.transaction(() => {
      this.db
        .query("INSERT INTO dhcp_lease_quarantine (row, reason, at) VALUES (?, ?, ?)")
        .run(row, reason, new Date().toISOString());
      this.db.query("DELETE FROM dhcp_leases WHERE rowid = ?").run(rowid);
    })();
  }

  quarantinedLeases(): number {
    return (this.db.query("SELECT count(*) AS n FROM dhcp_lease_quarantine").get() as { n: number }).n;
  }

  // ---- the gateway's BGP speaker (this node's own; a cluster node keeps them here too) ----

  bgpConfig(): BgpConfig | null {
    const r = this.db
      .query("SELECT asn, router_id, restart_time, import_default FROM bgp_config WHERE id = 1")
      .get() as {
      asn: number;
      router_id: string | null;
      restart_time: number;
      import_default: number;
    } | null;
    return r
      ? { asn: r.asn, routerId: r.router_id, restartTime: r.restart_time, importDefault: r.import_default !== 0 }
      : null;
  }

  setBgpConfig(c: BgpConfig | null): void {
    if (!c) {
      this.db.transaction(() => {
        this.db.run("DELETE FROM bgp_peers");
        this.db.run("DELETE FROM bgp_config");
      })();
      return;
    }
    this.db.run(
      "INSERT INTO bgp_config (id, asn, router_id, restart_time, import_default) VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET asn = excluded.asn, router_id = excluded.router_id, restart_time = excluded.restart_time, import_default = excluded.import_default",
      [c.asn, c.routerId, c.restartTime, c.importDefault ? 1 : 0],
    );
  }

  bgpPeers(): BgpPeer[] {
    return (
      this.db.query("SELECT name, address, asn, hold_time, password_file FROM bgp_peers ORDER BY name").all() as Array<{
        name: string;
        address: string;
        asn: number;
        hold_time: number;
        password_file: string | null;
      }>
    ).map((r) => ({
      name: r.name,
      address: r.address,
      asn: r.asn,
      holdTime: r.hold_time,
      passwordFile: r.password_file,
    }));
  }

  addBgpPeer(p: BgpPeer): void {
    this.db.run(
      "INSERT INTO bgp_peers (name, address, asn, hold_time, password_file, created_at) VALUES (?, ?, ?, ?, ?, ?)",
      [p.name, p.address, p.asn, p.holdTime, p.passwordFile, new Date().toISOString()],
    );
  }

  /** False when there was no such peer. */
  deleteBgpPeer(name: string): boolean {
    return this.db.run("DELETE FROM bgp_peers WHERE name = ?", [name]).changes > 0;
  }

  listDnsRecords(network?: string): StoredDnsRecord[] {
    const sql =
      "SELECT r.id, n.name AS network, r.name, r.type, r.value, r.ttl, r.created_at FROM dns_records r JOIN networks n ON n.id = r.network_id";
    const rows = network
      ? this.db.query(`${sql} WHERE n.name = ? ORDER BY r.name, r.type, r.id`).all(network)
      : this.db.query(`${sql} ORDER BY n.name, r.name, r.type, r.id`).all();
    return (rows as Array<Omit<StoredDnsRecord, "createdAt"> & { created_at: string }>).map(
      ({ created_at, ...r }) => ({ ...r, createdAt: created_at }) as StoredDnsRecord,
    );
  }

  addDnsRecord(network: string, rec: DnsRecord): StoredDnsRecord {
    try {
      const r = this.db
        .query(
          `INSERT INTO dns_records (network_id, name, type, value, ttl, created_at)
           SELECT id, ?, ?, ?, ?, ? FROM networks WHERE name = ? RETURNING id`,
        )
        .get(rec.name, rec.type, rec.value, rec.ttl, new Date().toISOString(), network) as { id: number } | null;
      if (!r) throw new StratumError("NOT_FOUND", `network ${network} does not exist`);
      return this.listDnsRecords(network).find((x) => x.id === r.id) as StoredDnsRecord;
    } catch (e) {
      if (String(e).includes("UNIQUE"))
        throw new StratumError("CONFLICT", `${rec.name} ${rec.type} ${rec.value} already exists in network ${network}`);
      throw e;
    }
  }

  deleteDnsRecords(network: string, ids: number[]): number {
    return this.db.transaction(() => {
      let n = 0;
      for (const id of ids)
        n += this.db
          .query("DELETE FROM dns_records WHERE id = ? AND network_id = (SELECT id FROM networks WHERE name = ?)")
          .run(id, network).changes;
      return n;
    })();
  }

  /** What `status` shows of the store: the schema version the file is at and row counts
   * (`quarantined`: every row the quarantine table holds, from this open and earlier ones). */
  stats(): {
    schemaVersion: number;
    journalMode: string;
    networks: number;
    endpoints: number;
    rules: number;
    blocklist: number;
    leases: number;
    leasesQuarantined: number;
    quarantined: number;
    dnsRecords: number;
  } {
    const count = (table: string) => (this.db.query(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    return {
      schemaVersion: (this.db.query("PRAGMA user_version").get() as { user_version: number }).user_version,
      journalMode: (this.db.query("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode,
      networks: count("networks"),
      endpoints: count("endpoints"),
      rules: count("fw_rules"),
      blocklist: count("blocklist4") + count("blocklist6"),
      leases: count("dhcp_leases"),
      leasesQuarantined: count("dhcp_lease_quarantine"),
      quarantined: count("quarantine"),
      dnsRecords: count("dns_records"),
    };
  }

  close(): void {
    this.db.close();
  }
}
