/** The blocklist's two tables: numbers, not text, so a million prefixes go in as fast as
 * SQLite appends rows, and the schema itself refuses what the datapath could not hold (a
 * CHECK on every row, whoever writes it): an address out of range, host bits set, /0, an
 * IPv4-mapped IPv6 prefix (those are listed as IPv4). No audit at open reads them again.
 *
 *   blocklist4 (addr, len, added_at)              addr: the address as an integer
 *   blocklist6 (w0, w1, w2, w3, len, added_at)    w0..w3: the address's 32-bit words
 *
 * Each is keyed by address then length (WITHOUT ROWID: the key is the table, kept in the
 * list's numeric order); added_at is milliseconds since the epoch. */
import type { Database } from "bun:sqlite";
import { StratumError } from "../errors";
import { type PackedPrefixes, packSubnets, parseBlockPrefix, V6_STRIDE } from "../model/blocklist";
import { formatSubnet, type Subnet } from "../model/ip";
import type { BlockEntry } from "./store";

const WORD = (c: string) => `${c} INTEGER NOT NULL CHECK (typeof(${c}) = 'integer' AND ${c} BETWEEN 0 AND 4294967295)`;
/** Host bits of word k clear: the bits of the word below the prefix's length are zero. */
const CLEAR = (k: number) => `(w${k} & ((1 << (32 - max(0, min(32, len - ${32 * k})))) - 1)) = 0`;

export const BLOCKLIST_TABLES = `CREATE TABLE blocklist4 (
     ${WORD("addr")},
     len INTEGER NOT NULL CHECK (typeof(len) = 'integer' AND len BETWEEN 1 AND 32),
     added_at INTEGER NOT NULL CHECK (typeof(added_at) = 'integer'),
     PRIMARY KEY (addr, len),
     CHECK ((addr & ((1 << (32 - len)) - 1)) = 0)
   ) WITHOUT ROWID;
   CREATE TABLE blocklist6 (
     ${WORD("w0")}, ${WORD("w1")}, ${WORD("w2")}, ${WORD("w3")},
     len INTEGER NOT NULL CHECK (typeof(len) = 'integer' AND len BETWEEN 1 AND 128),
     added_at INTEGER NOT NULL CHECK (typeof(added_at) = 'integer'),
     PRIMARY KEY (w0, w1, w2, w3, len),
     CHECK (${CLEAR(0)} AND ${CLEAR(1)} AND ${CLEAR(2)} AND ${CLEAR(3)}),
     CHECK (NOT (w0 = 0 AND w1 = 0 AND w2 = 65535 AND len >= 96))
   ) WITHOUT ROWID;`;

/** Rows per INSERT statement (a statement per row costs more than the row). */
const CHUNK = 500;

const COLS4 = "addr, len, added_at";
const COLS6 = "w0, w1, w2, w3, len, added_at";

function inserter(db: Database, table: string, cols: string, n: number) {
  const one = `(${cols
    .split(",")
    .map(() => "?")
    .join(", ")})`;
  return db.query(`INSERT OR IGNORE INTO ${table} (${cols}) VALUES ${Array(n).fill(one).join(", ")}`);
}

/** Adds packed prefixes (those listed already are ignored); answers how many went in. The
 * caller holds the transaction. */
export function blockInsert(db: Database, p: PackedPrefixes, at: number): number {
  let added = 0;
  const v4 = p.v4;
  const args4: number[] = new Array(CHUNK * 3);
  const full4 = inserter(db, "blocklist4", COLS4, CHUNK);
  for (let i = 0; i < v4.length; i += CHUNK) {
    const n = Math.min(CHUNK, v4.length - i);
    const args = n === CHUNK ? args4 : new Array(n * 3);
    for (let j = 0; j < n; j++) {
      const x = v4[i + j] as number;
      args[j * 3] = Math.floor(x / 64);
      args[j * 3 + 1] = x % 64;
      args[j * 3 + 2] = at;
    }
    added += (n === CHUNK ? full4 : inserter(db, "blocklist4", COLS4, n)).run(...args).changes;
  }
  const v6 = p.v6;
  const rows6 = v6.length / V6_STRIDE;
  const full6 = inserter(db, "blocklist6", COLS6, CHUNK);
  for (let i = 0; i < rows6; i += CHUNK) {
    const n = Math.min(CHUNK, rows6 - i);
    const args: number[] = new Array(n * 6);
    for (let j = 0; j < n; j++) {
      for (let k = 0; k < V6_STRIDE; k++) args[j * 6 + k] = v6[(i + j) * V6_STRIDE + k] as number;
      args[j * 6 + 5] = at;
    }
    added += (n === CHUNK ? full6 : inserter(db, "blocklist6", COLS6, n)).run(...args).changes;
  }
  return added;
}

export function blockCountOf(db: Database, family: 4 | 6): number {
  return (db.query(`SELECT count(*) AS n FROM blocklist${family}`).get() as { n: number }).n;
}

/** Of these, the prefixes not listed (an empty table answers all without a look-up). */
export function blockMissing(db: Database, p: PackedPrefixes): PackedPrefixes {
  let v4 = p.v4;
  if (v4.length && blockCountOf(db, 4)) {
    const q = db.query("SELECT 1 FROM blocklist4 WHERE addr = ? AND len = ?");
    v4 = v4.filter((x) => q.get(Math.floor(x / 64), x % 64) === null);
  }
  let v6 = p.v6;
  if (v6.length && blockCountOf(db, 6)) {
    const q = db.query("SELECT 1 FROM blocklist6 WHERE w0 = ? AND w1 = ? AND w2 = ? AND w3 = ? AND len = ?");
    const keep: number[] = [];
    for (let i = 0; i < v6.length; i += V6_STRIDE)
      if (q.get(...(Array.from(v6.subarray(i, i + V6_STRIDE)) as [number])) === null)
        for (let k = 0; k < V6_STRIDE; k++) keep.push(v6[i + k] as number);
    v6 = Uint32Array.from(keep);
  }
  return { v4, v6 };
}

/** A canonical prefix's row key: [family, ...columns]. */
function rowKey(s: Subnet): [4 | 6, number[]] {
  const p = packSubnets([s]);
  if (s.family === 4) {
    const x = p.v4[0] as number;
    return [4, [Math.floor(x / 64), x % 64]];
  }
  return [6, Array.from(p.v6)];
}

const WHERE4 = "addr = ? AND len = ?";
const WHERE6 = "w0 = ? AND w1 = ? AND w2 = ? AND w3 = ? AND len = ?";

/** A prefix's table and the WHERE that finds its row (with its arguments); undefined for one
 * that is not a blocklist prefix at all. */
function rowOf(
  prefix: string,
): { family: 4 | 6; table: string; where: string; key: number[]; cols: string } | undefined {
  let s: Subnet;
  try {
    s = parseBlockPrefix(prefix).subnet;
  } catch {
    return undefined;
  }
  const [family, key] = rowKey(s);
  return family === 4
    ? { family, table: "blocklist4", where: WHERE4, key, cols: COLS4 }
    : { family, table: "blocklist6", where: WHERE6, key, cols: COLS6 };
}

/** Whether a prefix (any spelling the blocklist accepts) is listed; false for one that is
 * not a blocklist prefix at all. */
export function blockHas(db: Database, prefix: string): boolean {
  const r = rowOf(prefix);
  return r !== undefined && db.query(`SELECT 1 FROM ${r.table} WHERE ${r.where}`).get(...r.key) !== null;
}

/** Lists (or re-lists, with its time) one prefix; throws for one that is not a blocklist prefix. */
export function blockPut(db: Database, prefix: string, at: number): void {
  const r = rowOf(prefix);
  if (!r) throw new StratumError("INVALID", parseError(prefix));
  db.query(`INSERT OR REPLACE INTO ${r.table} (${r.cols}) VALUES (${r.key.map(() => "?").join(", ")}, ?)`).run(
    ...r.key,
    at,
  );
}

function parseError(prefix: string): string {
  try {
    parseBlockPrefix(prefix);
    return `blocklist prefix ${prefix} is not a prefix`;
  } catch (e) {
    return (e as Error).message;
  }
}

export function blockRemove(db: Database, prefix: string): boolean {
  const r = rowOf(prefix);
  return r !== undefined && db.query(`DELETE FROM ${r.table} WHERE ${r.where}`).run(...r.key).changes > 0;
}

export function blockDeleteAll(db: Database): number {
  return db.query("DELETE FROM blocklist4").run().changes + db.query("DELETE FROM blocklist6").run().changes;
}

type Row4 = [number, number, number];
type Row6 = [number, number, number, number, number, number];

function v4Text(addr: number, len: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 255}.${(addr >>> 8) & 255}.${addr & 255}/${len}`;
}

function entry4(r: Row4): BlockEntry {
  return { prefix: v4Text(r[0], r[1]), family: 4, addedAt: new Date(r[2]).toISOString() };
}

function entry6(r: Row6): BlockEntry {
  let v = 0n;
  for (let k = 0; k < 4; k++) v = (v << 32n) | BigInt(r[k] as number);
  return {
    prefix: formatSubnet({ family: 6, network: v, prefixLen: r[4] }),
    family: 6,
    addedAt: new Date(r[5]).toISOString(),
  };
}

const ORDER4 = "ORDER BY addr, len";
const ORDER6 = "ORDER BY w0, w1, w2, w3, len";

/** Every entry, IPv4 first, each numerically. */
export function blockRows(db: Database): BlockEntry[] {
  return [
    ...(db.query(`SELECT ${COLS4} FROM blocklist4 ${ORDER4}`).values() as Row4[]).map(entry4),
    ...(db.query(`SELECT ${COLS6} FROM blocklist6 ${ORDER6}`).values() as Row6[]).map(entry6),
  ];
}

/** The whole list packed (for the kernel's diff at start). */
export function blockPackedAll(db: Database): PackedPrefixes {
  const v4 = Float64Array.from(
    db.query(`SELECT addr * 64 + len FROM blocklist4 ${ORDER4}`).values() as Array<[number]>,
    (r) => r[0],
  );
  const v6 = Uint32Array.from(
    (db.query(`SELECT w0, w1, w2, w3, len FROM blocklist6 ${ORDER6}`).values() as number[][]).flat(),
  );
  return { v4, v6 };
}

/** Up to `limit` entries in the list's order after the prefix `after` (canonical), only those
 * named in `only` (canonical prefixes) when given. */
export function blockPageRows(db: Database, o: { after?: string; limit: number; only?: string[] }): BlockEntry[] {
  const after = o.after === undefined ? undefined : rowKey(parseBlockPrefix(o.after).subnet);
  if (o.only) {
    const found: Array<{ key: [4 | 6, number[]]; entry: BlockEntry }> = [];
    for (const text of o.only) {
      const r = rowOf(text);
      if (!r) throw new StratumError("INVALID", parseError(text));
      const row = db.query(`SELECT ${r.cols} FROM ${r.table} WHERE ${r.where}`).values(...r.key)[0];
      const key: [4 | 6, number[]] = [r.family, r.key];
      if (!row || (after && compareRowKeys(key, after) <= 0)) continue;
      found.push({ key, entry: r.family === 4 ? entry4(row as Row4) : entry6(row as Row6) });
    }
    return found
      .sort((a, b) => compareRowKeys(a.key, b.key))
      .slice(0, o.limit)
      .map((f) => f.entry);
  }
  const out: BlockEntry[] = [];
  if (!after || after[0] === 4) {
    const where = after ? "WHERE (addr, len) > (?, ?)" : "";
    const rows = db
      .query(`SELECT ${COLS4} FROM blocklist4 ${where} ${ORDER4} LIMIT ?`)
      .values(...(after?.[1] ?? []), o.limit);
    out.push(...(rows as Row4[]).map(entry4));
  }
  if (out.length < o.limit) {
    const where = after?.[0] === 6 ? "WHERE (w0, w1, w2, w3, len) > (?, ?, ?, ?, ?)" : "";
    const args = after?.[0] === 6 ? after[1] : [];
    const rows = db
      .query(`SELECT ${COLS6} FROM blocklist6 ${where} ${ORDER6} LIMIT ?`)
      .values(...args, o.limit - out.length);
    out.push(...(rows as Row6[]).map(entry6));
  }
  return out;
}

/** The list's order of two row keys: IPv4 first, then by address, then by length. */
function compareRowKeys(a: [4 | 6, number[]], b: [4 | 6, number[]]): number {
  if (a[0] !== b[0]) return a[0] - b[0];
  for (let k = 0; k < a[1].length; k++) if (a[1][k] !== b[1][k]) return (a[1][k] as number) - (b[1][k] as number);
  return 0;
}

/** Rows of the blocklist table of schema versions before the two tables, converted: the
 * valid ones listed again with their time, the others answered for the quarantine. */
export function convertLegacyRows(
  db: Database,
  rows: Iterable<Record<string, unknown>>,
): Array<{ row: Record<string, unknown>; reason: string }> {
  const bad: Array<{ row: Record<string, unknown>; reason: string }> = [];
  for (const row of rows) {
    const text = row.prefix;
    let reason: string | undefined;
    if (typeof text !== "string") reason = "its prefix is not text";
    else
      try {
        const p = parseBlockPrefix(text);
        if (p.prefix !== text) reason = `not written canonically (${p.prefix})`;
        else if (p.family !== row.family) reason = `family ${String(row.family)}, but the prefix is IPv${p.family}`;
        else {
          const t = Date.parse(String(row.added_at));
          blockPut(db, text, Number.isFinite(t) ? t : Date.now());
        }
      } catch (e) {
        reason = (e as Error).message;
      }
    if (reason) bad.push({ row, reason });
  }
  return bad;
}
