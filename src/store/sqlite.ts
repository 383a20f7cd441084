/** SQLite store (bun:sqlite, WAL): the single-node implementation of Store. Schema
 * changes are numbered migrations applied in one transaction at open; PRAGMA user_version
 * records how far a database has come. */
import { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { StratumError } from "../errors";
import type { Network } from "../model/network";
import type { Endpoint, Store, StoredNetwork } from "./store";

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
];

export const SCHEMA_VERSION = MIGRATIONS.length;

interface NetworkRow {
  id: number;
  name: string;
  spec: string;
  created_at: string;
}
interface EndpointRow {
  name: string;
  network: string;
  host_index: number;
  ip: string;
  mac: string;
  kind: "veth" | "tap";
  host_if: string;
  netns: string | null;
  ifname: string | null;
  created_at: string;
}

export class SqliteStore implements Store {
  readonly db: Database;

  /** Opens (creating if needed) the database at `path` (":memory:" for tests). */
  constructor(path: string) {
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.db = new Database(path, { create: true, strict: true });
    this.db.exec(
      "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
    );
    this.#migrate();
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

  #toNetwork(r: NetworkRow): StoredNetwork {
    return { ...(JSON.parse(r.spec) as Network), name: r.name, id: r.id, createdAt: r.created_at };
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
      const r = this.db
        .query("INSERT INTO networks (name, spec, created_at) VALUES (?, ?, ?) RETURNING *")
        .get(net.name, JSON.stringify(net), new Date().toISOString()) as NetworkRow;
      if (r.id > 0xffff)
        throw new StratumError("INVALID", "network ids are exhausted (65,535 networks created on this node)");
      return this.#toNetwork(r);
    } catch (e) {
      if (String(e).includes("UNIQUE")) throw new StratumError("INVALID", `network ${net.name} already exists`);
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
    };
  }

  listEndpoints(network?: string): Endpoint[] {
    const rows = network
      ? this.db.query(`${this.#endpointSelect} WHERE n.name = ? ORDER BY e.name`).all(network)
      : this.db.query(`${this.#endpointSelect} ORDER BY e.name`).all();
    return (rows as EndpointRow[]).map((r) => this.#toEndpoint(r));
  }

  getEndpoint(name: string): Endpoint | null {
    const r = this.db.query(`${this.#endpointSelect} WHERE e.name = ?`).get(name) as EndpointRow | null;
    return r ? this.#toEndpoint(r) : null;
  }

  claimEndpoint(ep: Omit<Endpoint, "createdAt">): Endpoint {
    return this.db.transaction(() => {
      const net = this.getNetwork(ep.network);
      if (!net) throw new StratumError("NOT_FOUND", `network ${ep.network} does not exist`);
      if (this.getEndpoint(ep.name)) throw new StratumError("INVALID", `endpoint ${ep.name} already exists`);
      const holder = this.db
        .query("SELECT name FROM endpoints WHERE network_id = ? AND host_index = ?")
        .get(net.id, ep.hostIndex) as { name: string } | null;
      if (holder) throw new StratumError("INVALID", `${ep.ip} is already claimed by endpoint ${holder.name}`);
      this.db
        .query(
          "INSERT INTO endpoints (name, network_id, host_index, ip, mac, kind, host_if, netns, ifname, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        );
      return this.getEndpoint(ep.name) as Endpoint;
    })();
  }

  releaseEndpoint(name: string): void {
    const r = this.db.query("DELETE FROM endpoints WHERE name = ?").run(name);
    if (r.changes === 0) throw new StratumError("NOT_FOUND", `endpoint ${name} does not exist`);
  }

  claimedIndexes(network: string): Set<number> {
    const rows = this.db
      .query("SELECT e.host_index FROM endpoints e JOIN networks n ON n.id = e.network_id WHERE n.name = ?")
      .all(network) as Array<{ host_index: number }>;
    return new Set(rows.map((r) => r.host_index));
  }

  close(): void {
    this.db.close();
  }
}
