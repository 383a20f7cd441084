/** The firewall compiler: a scope's rules (priority order) become the entries of one
 * generation of the datapath's tries (bpf/include/stm_fw.h), and codecs for every firewall
 * map. Rule i is bit i of every bitmap; an address entry holds the rules whose prefix
 * contains it (the longest stored prefix holding an address then yields exactly the rules
 * matching it; the datapath tries the lengths present, longest first),
 * a port entry the rules whose range covers its elementary interval. Pure. */
import { endianness } from "node:os";
import { StratumError } from "../errors";
import { type PackedPrefixes, V6_STRIDE } from "../model/blocklist";
import { type DefaultAction, type Rule, ruleFamily, type StoredRule } from "../model/firewall-rule";
import { parseSubnet, type Subnet } from "../model/ip";

export const FW_WORDS = 160;
export const FW_SUMS = 3;
export const FW_BITS_SIZE = 32 + FW_WORDS * 8;
export const FW_DEFAULT_ID = 0x80000000;
export const FW_SCOPE_F_ON = 1;
export const FW_RULE_F_LOG = 1;
export const FW_ACTION = { allow: 1, deny: 2, reject: 3 } as const;
export const FW_DIR = { ingress: 0, egress: 1 } as const;
export const FW_PCLS = { other: 0, tcp: 1, udp: 2, icmp: 3, icmpv6: 4 } as const;
export { FW_GLOBAL_SCOPE } from "../model/firewall-rule";
/** stm_fw_stats indexes (enum stm_fw_stat in stm_abi.h, same order), by the name metrics use. */
export const FW_STATS = [
  "ct-new",
  "ct-pickup",
  "ct-full",
  "revalidated",
  "cut",
  "frag-miss",
  "reject-sent",
  "log-lost",
] as const;

/** Key and value sizes (stm_abi.h), checked against the C header by test/unit/abi.test.ts. */
export const FW_SIZES = {
  stm_fw_scope: 80,
  stm_fw_addr4_key: 12,
  stm_fw_addr6_key: 24,
  stm_fw_port_key: 16,
  stm_fw_rule_key: 8,
  stm_fw_rule: 8,
  stm_fw_bits: FW_BITS_SIZE,
  stm_ct_key: 44,
  stm_ct: 24,
  stm_frag_key: 44,
} as const;

/** The tries and tables one generation writes, by map name. */
export type FwMapName = "stm_fw_src4" | "stm_fw_dst4" | "stm_fw_src6" | "stm_fw_dst6" | "stm_fw_ports" | "stm_fw_rules";
export const FW_GEN_MAPS: FwMapName[] = [
  "stm_fw_src4",
  "stm_fw_dst4",
  "stm_fw_src6",
  "stm_fw_dst6",
  "stm_fw_ports",
  "stm_fw_rules",
];

export interface CompiledScope {
  gen: number;
  epoch: number;
  /** The rules in priority order, each at its slot. */
  slotted: Slotted[];
  scope: Buffer;
  entries: Record<FwMapName, Array<[Buffer, Buffer]>>;
}

/** A rule bitmap is kept in the datapath's own layout (struct stm_fw_bits): summary words, then
 * the rule words, each 64-bit word as two little-endian 32-bit halves. Edited in place through
 * a 32-bit view (the host is little-endian, as the datapath's maps are). */
if (endianness() !== "LE") throw new Error("the firewall compiler assumes a little-endian host");
const SUM_U32 = 8; // 32 bytes of summary before the words

function u32(b: Buffer): Uint32Array {
  return new Uint32Array(b.buffer, b.byteOffset, FW_BITS_SIZE / 4);
}

export function newBits(): Buffer {
  return Buffer.alloc(FW_BITS_SIZE);
}

/** A copy of a bitmap (its own, aligned memory: never a pooled slice). */
export function copyBits(b: Buffer): Buffer {
  const c = Buffer.alloc(FW_BITS_SIZE);
  c.set(b);
  return c;
}

/** Sets rule slot `i` (and its word's summary bit). */
export function setBit(b: Buffer, i: number): void {
  setBitIn(u32(b), i);
}

/** Clears rule slot `i` (and its word's summary bit once the word is empty). */
export function clearBit(b: Buffer, i: number): void {
  clearBitIn(u32(b), i);
}

function setBitIn(v: Uint32Array, i: number): void {
  v[SUM_U32 + (i >>> 5)] = ((v[SUM_U32 + (i >>> 5)] as number) | (1 << (i & 31))) >>> 0;
  const w = i >>> 6;
  const s = ((w >>> 6) << 1) + ((w >>> 5) & 1);
  v[s] = ((v[s] as number) | (1 << (w & 31))) >>> 0;
}

function clearBitIn(v: Uint32Array, i: number): void {
  v[SUM_U32 + (i >>> 5)] = ((v[SUM_U32 + (i >>> 5)] as number) & ~(1 << (i & 31))) >>> 0;
  const w = i >>> 6;
  if (v[SUM_U32 + w * 2] || v[SUM_U32 + w * 2 + 1]) return;
  const s = ((w >>> 6) << 1) + ((w >>> 5) & 1);
  v[s] = ((v[s] as number) & ~(1 << (w & 31))) >>> 0;
}

/** Read in place: an edit tests every entry of a table, a view each would cost more. */
export function hasBit(b: Buffer, i: number): boolean {
  return (b.readUInt32LE((SUM_U32 + (i >>> 5)) * 4) & (1 << (i & 31))) !== 0;
}

export const isEmptyBits = (b: Buffer): boolean => {
  for (let i = 0; i < SUM_U32; i++) if (b.readUInt32LE(i * 4)) return false;
  return true;
};

/** Prefix lengths present in address entries, as the scope's length masks: bit (bits - len). */
export function lengthMask(keys: Iterable<Buffer>, family: 4 | 6): bigint {
  const bits = family === 4 ? 32 : 128;
  const lens = new Set<number>();
  for (const k of keys) lens.add(k.readUInt32LE(0));
  let m = 0n;
  for (const len of lens) m |= 1n << BigInt(bits - len);
  return m;
}

export interface ScopeLengths {
  len4: [bigint, bigint];
  len6: [bigint, bigint];
}

/** A scope entry. `slots`: one past the highest rule slot in use (it sizes the summary scan);
 * `epoch`: what tracked flows compare against (a new epoch classifies them again). */
export function encodeScope(
  gen: number,
  def: DefaultAction,
  on: boolean,
  slots: number,
  lens: ScopeLengths = { len4: [0n, 0n], len6: [0n, 0n] },
  epoch = gen,
): Buffer {
  const b = Buffer.alloc(FW_SIZES.stm_fw_scope);
  b.writeUInt32LE(gen, 0);
  b.writeUInt8(FW_ACTION[def], 4);
  b.writeUInt8(on ? FW_SCOPE_F_ON : 0, 5);
  b.writeUInt16LE(Math.ceil(Math.ceil(slots / 64) / 64), 6);
  for (const side of [0, 1]) {
    b.writeBigUInt64LE(lens.len4[side] as bigint, 8 + side * 8);
    const m6 = lens.len6[side] as bigint;
    for (let w = 0; w < 3; w++)
      b.writeBigUInt64LE((m6 >> BigInt(64 * w)) & 0xffffffffffffffffn, 24 + side * 24 + w * 8);
  }
  b.writeUInt32LE(epoch, 72);
  return b;
}

export function decodeScope(b: Buffer): {
  gen: number;
  def: DefaultAction;
  on: boolean;
  nsum: number;
  epoch: number;
} {
  return {
    gen: b.readUInt32LE(0),
    def: b.readUInt8(4) === FW_ACTION.deny ? "deny" : "allow",
    on: (b.readUInt8(5) & FW_SCOPE_F_ON) !== 0,
    nsum: b.readUInt16LE(6),
    epoch: b.length >= 76 ? b.readUInt32LE(72) : b.readUInt32LE(0),
  };
}

export function encodeU32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

export function addrKey(gen: number, s: Subnet): Buffer {
  const n = s.family === 4 ? 4 : 16;
  const b = Buffer.alloc(8 + n);
  b.writeUInt32LE(s.prefixLen, 0);
  b.writeUInt32LE(gen, 4);
  let v = s.network;
  for (let i = n - 1; i >= 0; i--, v >>= 8n) b[8 + i] = Number(v & 0xffn);
  return b;
}

/** Whether address key `inner` lies inside address key `outer` (same family). */
export function addrKeyWithin(inner: Buffer, outer: Buffer): boolean {
  const len = outer.readUInt32LE(0);
  if (inner.readUInt32LE(0) < len) return false;
  const full = len >>> 3;
  for (let i = 0; i < full; i++) if (inner[8 + i] !== outer[8 + i]) return false;
  const rest = len & 7;
  if (!rest) return true;
  const m = (0xff << (8 - rest)) & 0xff;
  return ((inner[8 + full] as number) & m) === ((outer[8 + full] as number) & m);
}

function portKey(gen: number, sel: number, dir: number, pcls: number, port: number, plen: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(32 + 24 + plen, 0);
  b.writeUInt32LE(gen, 4);
  b[8] = sel;
  b[9] = dir;
  b[10] = pcls;
  b.writeUInt16BE(port, 11);
  return b;
}

/** The partition (sel, direction, protocol class) a port key belongs to. */
export function portPartition(key: Buffer): number {
  return ((key[8] as number) << 16) | ((key[9] as number) << 8) | (key[10] as number);
}

export function ruleKey(gen: number, idx: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(gen, 0);
  b.writeUInt32LE(idx, 4);
  return b;
}

export function ruleValue(r: StoredRule): Buffer {
  const v = Buffer.alloc(8);
  v.writeUInt32LE(r.id, 0);
  v.writeUInt8(FW_ACTION[r.action], 4);
  v.writeUInt8(r.log ? FW_RULE_F_LOG : 0, 5);
  return v;
}

/** The generation a key of `map` belongs to. */
export function keyGen(map: FwMapName, key: Buffer): number {
  return key.readUInt32LE(map === "stm_fw_rules" ? 0 : 4);
}

/** [lo, hi] as aligned prefixes of a 16-bit space: [value, prefix length]. */
export function rangePrefixes(lo: number, hi: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let a = lo;
  while (a <= hi) {
    let size = a === 0 ? 1 << 16 : a & -a;
    while (a + size - 1 > hi) size >>>= 1;
    out.push([a, 16 - Math.log2(size)]);
    a += size;
  }
  return out;
}

export const PCLS_OF_PROTO: Record<Rule["proto"], number[]> = {
  any: [0, 1, 2, 3, 4],
  tcp: [FW_PCLS.tcp],
  udp: [FW_PCLS.udp],
  icmp: [FW_PCLS.icmp],
  icmpv6: [FW_PCLS.icmpv6],
};

/** The directions a rule applies to. */
export function ruleDirs(r: Rule): number[] {
  return r.direction === "both" ? [FW_DIR.ingress, FW_DIR.egress] : [FW_DIR[r.direction]];
}

/** A rule at its slot (bit) of the generation. */
export interface Slotted {
  r: StoredRule;
  slot: number;
}

/** The rule slots of a fresh generation of `n` rules: in priority order with free slots spread
 * before, between and after them, so that one rule added, moved or changed later usually
 * finds a free slot where its priority puts it (no new generation needed). */
export function assignSlots(n: number): number[] {
  const cap = Math.min(FW_WORDS * 64, Math.max(256, Math.ceil((n * 3) / 64) * 64));
  const spare = cap - n;
  const inner = spare - Math.floor(spare / 2);
  return Array.from({ length: n }, (_, i) => i + Math.floor(((i + 1) * inner) / (n + 1)));
}

export type AddrMap = "stm_fw_src4" | "stm_fw_dst4" | "stm_fw_src6" | "stm_fw_dst6";
export const ADDR_MAPS: Array<{ map: AddrMap; side: "src" | "dst"; family: 4 | 6 }> = [
  { map: "stm_fw_src4", side: "src", family: 4 },
  { map: "stm_fw_dst4", side: "dst", family: 4 },
  { map: "stm_fw_src6", side: "src", family: 6 },
  { map: "stm_fw_dst6", side: "dst", family: 6 },
];

/** How a rule bears on one address table: its prefix there, every address (no prefix on that
 * side, and its family allows this one), or nothing. */
export function addrRole(r: Rule, side: "src" | "dst", family: 4 | 6): Subnet | "any" | undefined {
  const a = parsedAddrs(r);
  const s = a[side];
  if (s) return s.family === family ? s : undefined;
  return a.family === undefined || a.family === family ? "any" : undefined;
}

/** A rule's prefixes parsed, once per rule object (the store hands out the same frozen rules
 * until they change, so a recompile or an edit does not parse 10,000 prefixes again). */
const parsed = new WeakMap<Rule, { src?: Subnet; dst?: Subnet; family?: 4 | 6 }>();
function parsedAddrs(r: Rule): { src?: Subnet; dst?: Subnet; family?: 4 | 6 } {
  let p = parsed.get(r);
  if (!p) {
    const src = r.src ? parseSubnet(r.src) : undefined;
    const dst = r.dst ? parseSubnet(r.dst) : undefined;
    p = { src, dst, family: src?.family ?? dst?.family ?? ruleFamily({ proto: r.proto }) };
    parsed.set(r, p);
  }
  return p;
}

/** The key of the entry holding the rules for any address of `family` on one side: in that
 * side's IPv6 table, length 0, the family in the address's first byte (stm_fw.h fw_addr_any). */
export function anyKey(gen: number, family: 4 | 6): Buffer {
  const b = Buffer.alloc(FW_SIZES.stm_fw_addr6_key);
  b.writeUInt32LE(gen, 4);
  b[8] = family;
  return b;
}

/** The table a side's any-address entries live in. */
export const anyMapOf = (side: "src" | "dst"): AddrMap => (side === "src" ? "stm_fw_src6" : "stm_fw_dst6");

/** The empty /0 entry of a family's table: where the longest-prefix search ends. */
export const floorKey = (gen: number, family: 4 | 6): Buffer => addrKey(gen, { family, network: 0n, prefixLen: 0 });

/** One side and family of the address tables, for rules that bear on it (addrRole): an entry
 * per distinct prefix but /0, holding the rules whose prefix contains it (its nearest stored
 * ancestor's rules plus its own), the empty /0 entry, and the any-address entry (rules with no
 * prefix there, or /0) the datapath ORs into every look-up. Nothing when no rule bears on it. */
export function addressEntries(
  rules: Slotted[],
  gen: number,
  side: "src" | "dst",
  family: 4 | 6,
): { table: Array<[Buffer, Buffer]>; any?: [Buffer, Buffer] } {
  const own = new Map<string, { key: Buffer; slots: number[] }>();
  const anyBits = newBits();
  let bears = false;
  for (const { r, slot } of rules) {
    const role = addrRole(r, side, family);
    if (role === undefined) continue;
    bears = true;
    if (role === "any" || role.prefixLen === 0) {
      setBit(anyBits, slot);
      continue;
    }
    const key = addrKey(gen, role);
    const hex = key.toString("hex");
    const e = own.get(hex) ?? { key, slots: [] };
    e.slots.push(slot);
    own.set(hex, e);
  }
  if (!bears) return { table: [] };
  // Shorter prefixes first: an entry's ancestors are built before it.
  const sorted = [...own.values()].sort((a, b) => a.key.readUInt32LE(0) - b.key.readUInt32LE(0));
  const lens = [...new Set(sorted.map((e) => e.key.readUInt32LE(0)))];
  const built = new Map<string, Buffer>();
  // One zeroed allocation for every value of the table (Buffer.alloc per entry dominated).
  const slab = Buffer.alloc((sorted.length + 1) * FW_BITS_SIZE);
  let used = 0;
  const next = () => slab.subarray(used++ * FW_BITS_SIZE, used * FW_BITS_SIZE);
  const table: Array<[Buffer, Buffer]> = [[floorKey(gen, family), next()]];
  const probe = Buffer.alloc(sorted[0]?.key.length ?? 0);
  for (const e of sorted) {
    const len = e.key.readUInt32LE(0);
    const val = next();
    for (let j = lens.indexOf(len) - 1; j >= 0; j--) {
      maskedKey(e.key, lens[j] as number, probe);
      const anc = built.get(probe.toString("hex"));
      if (anc) {
        val.set(anc);
        break;
      }
    }
    const view = u32(val);
    for (const s of e.slots) setBitIn(view, s);
    built.set(e.key.toString("hex"), val);
    table.push([e.key, val]);
  }
  return { table, any: [anyKey(gen, family), anyBits] };
}

/** `key` cut to prefix length `len`, written into `out`. */
export function maskedKey(key: Buffer, len: number, out: Buffer): void {
  out.writeUInt32LE(len, 0);
  for (let i = 4; i < 8; i++) out[i] = key[i] as number;
  const n = key.length - 8;
  for (let i = 0; i < n; i++) {
    const keep = Math.max(0, Math.min(8, len - i * 8));
    out[8 + i] = (key[8 + i] as number) & ((0xff << (8 - keep)) & 0xff);
  }
}

/** All partitions (sel, direction, protocol class) a rule has entries in. */
export function rulePartitions(r: Rule): number[] {
  const out: number[] = [];
  for (const dir of ruleDirs(r))
    for (const pcls of PCLS_OF_PROTO[r.proto]) for (const sel of [0, 1]) out.push((sel << 16) | (dir << 8) | pcls);
  return out;
}

/** partitionEntries' events: a slot, offset by EV_SLOTS for a start, at a position times EV_STRIDE. */
const EV_SLOTS = FW_WORDS * 64;
const EV_STRIDE = 2 * EV_SLOTS;
/** Room for the events, kept from call to call (a new array a call cost more than the sort). */
let evScratch = new Float64Array(0);

/** One elementary interval of a port partition: [lo, hi] and the rules (slots) that cover it. */
export interface PortInterval {
  lo: number;
  hi: number;
  bits: Buffer;
}

/** The range rule `r` covers in partition `part` (its field there), or undefined when it has
 * no entries in that partition (another direction or protocol class). */
export function partitionRange(r: Rule, part: number): [number, number] | undefined {
  const sel = part >>> 16;
  const dir = (part >>> 8) & 0xff;
  const pcls = part & 0xff;
  if (!(r.direction === "both" || r.direction === (dir === FW_DIR.ingress ? "ingress" : "egress"))) return undefined;
  if (r.proto !== "any" && PCLS_OF_PROTO[r.proto][0] !== pcls) return undefined;
  if (pcls === FW_PCLS.tcp || pcls === FW_PCLS.udp) {
    const range = sel === 0 ? r.sport : r.dport;
    return range ? [range[0], range[1]] : [0, 65535];
  }
  if (pcls === FW_PCLS.icmp || pcls === FW_PCLS.icmpv6) {
    const v = sel === 0 ? r.icmpType : r.icmpCode;
    return v !== undefined ? [v, v] : [0, 65535];
  }
  return [0, 65535];
}

/** The elementary intervals of one partition (its field, sel 0: source port or ICMP type, 1:
 * destination port or ICMP code): where the rules covering a port stay the same and are not
 * none, in order, neighbours with the same rules joined. */
export function partitionIntervals(rules: Slotted[], part: number): PortInterval[] {
  // Each rule's range as two events, packed in one number to sort: position, then ends before
  // starts at one position (a rule that ends where another starts), then the slot.
  if (evScratch.length < rules.length * 2) evScratch = new Float64Array(rules.length * 4);
  const ev = evScratch;
  let n = 0;
  for (const { r, slot } of rules) {
    const range = partitionRange(r, part);
    if (!range) continue;
    ev[n++] = range[0] * EV_STRIDE + EV_SLOTS + slot;
    if (range[1] < 65535) ev[n++] = (range[1] + 1) * EV_STRIDE + slot;
  }
  const intervals: PortInterval[] = [];
  if (!n) return intervals;
  const sorted = ev.subarray(0, n).sort();
  const cur = newBits();
  const view = u32(cur);
  for (let i = 0; i < n; ) {
    const at = Math.floor((sorted[i] as number) / EV_STRIDE);
    for (; i < n && Math.floor((sorted[i] as number) / EV_STRIDE) === at; i++) {
      const x = (sorted[i] as number) % EV_STRIDE;
      if (x >= EV_SLOTS) setBitIn(view, x - EV_SLOTS);
      else clearBitIn(view, x);
    }
    const hi = (i < n ? Math.floor((sorted[i] as number) / EV_STRIDE) : 65536) - 1;
    if (isEmptyBits(cur)) continue;
    const last = intervals[intervals.length - 1];
    if (last && last.hi === at - 1 && last.bits.equals(cur)) last.hi = hi;
    else intervals.push({ lo: at, hi, bits: copyBits(cur) });
  }
  return intervals;
}

/** The port trie entries of intervals of partition `part`: each interval as aligned prefixes
 * holding its rules (one bitmap object an interval, shared by its prefixes). */
export function intervalEntries(gen: number, part: number, intervals: PortInterval[]): Array<[Buffer, Buffer]> {
  const sel = part >>> 16;
  const dir = (part >>> 8) & 0xff;
  const pcls = part & 0xff;
  const out: Array<[Buffer, Buffer]> = [];
  for (const iv of intervals)
    for (const [port, plen] of rangePrefixes(iv.lo, iv.hi))
      out.push([portKey(gen, sel, dir, pcls, port, plen), iv.bits]);
  return out;
}

/** The port trie entries of one partition: its intervals as aligned prefixes. */
export function partitionEntries(rules: Slotted[], gen: number, part: number): Array<[Buffer, Buffer]> {
  return intervalEntries(gen, part, partitionIntervals(rules, part));
}

/** A partition's intervals with rule slot `slot` put in (`on`) or taken out over [lo, hi]: what
 * partitionIntervals gives for the set with that rule added or removed, computed from the
 * intervals alone. Only the intervals that overlap [lo, hi] or touch it can change (a
 * neighbour may join a changed one): `old` are those, `now` what replaces them, in order,
 * and `intervals` the whole list (the input is not changed; unchanged bitmaps are shared). */
export function editIntervals(
  intervals: PortInterval[],
  lo: number,
  hi: number,
  slot: number,
  on: boolean,
): { intervals: PortInterval[]; old: PortInterval[]; now: PortInterval[] } {
  // The first interval ending at or after lo - 1, and the first starting after hi + 1.
  let a = 0;
  let b = intervals.length;
  while (a < b) {
    const m = (a + b) >>> 1;
    if ((intervals[m] as PortInterval).hi < lo - 1) a = m + 1;
    else b = m;
  }
  const i0 = a;
  let i1 = i0;
  while (i1 < intervals.length && (intervals[i1] as PortInterval).lo <= hi + 1) i1++;
  const old = intervals.slice(i0, i1);
  // The pieces: every boundary of the old intervals and of the range, in order.
  const cuts = new Set<number>([lo, hi + 1]);
  for (const iv of old) cuts.add(iv.lo).add(iv.hi + 1);
  const points = [...cuts].sort((x, y) => x - y);
  const now: PortInterval[] = [];
  let k = 0;
  for (let j = 0; j + 1 < points.length; j++) {
    const p = points[j] as number;
    const q = (points[j + 1] as number) - 1;
    while (k < old.length && (old[k] as PortInterval).hi < p) k++;
    const base = k < old.length && (old[k] as PortInterval).lo <= p ? (old[k] as PortInterval).bits : undefined;
    let bits = base;
    if (p >= lo && q <= hi) {
      bits = base ? copyBits(base) : newBits();
      if (on) setBit(bits, slot);
      else clearBit(bits, slot);
      if (isEmptyBits(bits)) bits = undefined;
    }
    if (!bits) continue;
    const last = now[now.length - 1];
    if (last && last.hi === p - 1 && (last.bits === bits || last.bits.equals(bits))) last.hi = q;
    else now.push({ lo: p, hi: q, bits });
  }
  return { intervals: [...intervals.slice(0, i0), ...now, ...intervals.slice(i1)], old, now };
}

/** Every partition any rule of the set has entries in. */
function partitionsOf(rules: Slotted[]): number[] {
  const parts = new Set<number>();
  for (const { r } of rules) for (const p of rulePartitions(r)) parts.add(p);
  return [...parts].sort((a, b) => a - b);
}

export function portEntries(rules: Slotted[], gen: number): Array<[Buffer, Buffer]> {
  return partitionsOf(rules).flatMap((p) => partitionEntries(rules, gen, p));
}

/** The scope entry of a generation whose tables hold `entries`. */
export function scopeOf(
  gen: number,
  def: DefaultAction,
  rules: Slotted[],
  entries: Pick<Record<FwMapName, Iterable<[Buffer, Buffer]>>, AddrMap>,
  epoch: number,
): Buffer {
  function* keys(m: AddrMap): Generator<Buffer> {
    for (const [k] of entries[m]) yield k;
  }
  return scopeWithLengths(
    gen,
    def,
    rules,
    {
      len4: [lengthMask(keys("stm_fw_src4"), 4), lengthMask(keys("stm_fw_dst4"), 4)],
      len6: [lengthMask(keys("stm_fw_src6"), 6), lengthMask(keys("stm_fw_dst6"), 6)],
    },
    epoch,
  );
}

/** scopeOf with the address tables' prefix lengths known (lengthMask of each table's keys). */
export function scopeWithLengths(
  gen: number,
  def: DefaultAction,
  rules: Slotted[],
  lengths: ScopeLengths,
  epoch: number,
): Buffer {
  let end = 0;
  for (const { slot } of rules) end = Math.max(end, slot + 1);
  return encodeScope(gen, def, rules.length > 0 || def === "deny", end, lengths, epoch);
}

/** Compiles a scope's rules (sorted by priority, validated) into generation `gen`, each rule at
 * the slot `slots` gives it (default: spread with free slots, assignSlots). */
export function compileScope(
  rules: readonly StoredRule[],
  def: DefaultAction,
  gen: number,
  opts: { slots?: number[]; epoch?: number } = {},
): CompiledScope {
  if (rules.length > FW_WORDS * 64)
    throw new StratumError("CAPACITY", `${rules.length} rules exceed the ${FW_WORDS * 64} one scope can hold`);
  const slots = opts.slots ?? assignSlots(rules.length);
  const slotted: Slotted[] = rules.map((r, i) => ({ r, slot: slots[i] as number }));
  const side = (sd: "src" | "dst") => {
    const v4 = addressEntries(slotted, gen, sd, 4);
    const v6 = addressEntries(slotted, gen, sd, 6);
    return { v4: v4.table, v6: [...v6.table, ...(v4.any ? [v4.any] : []), ...(v6.any ? [v6.any] : [])] };
  };
  const src = side("src");
  const dst = side("dst");
  const entries: Record<FwMapName, Array<[Buffer, Buffer]>> = {
    stm_fw_src4: src.v4,
    stm_fw_dst4: dst.v4,
    stm_fw_src6: src.v6,
    stm_fw_dst6: dst.v6,
    stm_fw_ports: portEntries(slotted, gen),
    stm_fw_rules: slotted.map(({ r, slot }) => [ruleKey(gen, slot), ruleValue(r)]),
  };
  const epoch = opts.epoch ?? gen;
  return { gen, epoch, slotted, scope: scopeOf(gen, def, slotted, entries, epoch), entries };
}

/** Blocklist LPM key (stm_lpm4_key / stm_lpm6_key) of a prefix. */
export function blockKey(s: Subnet): Buffer {
  const n = s.family === 4 ? 4 : 16;
  const b = Buffer.alloc(4 + n);
  b.writeUInt32LE(s.prefixLen, 0);
  let v = s.network;
  for (let i = n - 1; i >= 0; i--, v >>= 8n) b[4 + i] = Number(v & 0xffn);
  return b;
}

/** The trie keys of one family of packed prefixes, end to end (8 bytes each for IPv4, 20 for
 * IPv6: the length, then the address in network order). */
export function blockKeys(p: PackedPrefixes, fam: 4 | 6): Buffer {
  if (fam === 4) {
    const b = Buffer.alloc(p.v4.length * 8);
    for (let i = 0; i < p.v4.length; i++) {
      const x = p.v4[i] as number;
      b.writeUInt32LE(x % 64, i * 8);
      b.writeUInt32BE(Math.floor(x / 64), i * 8 + 4);
    }
    return b;
  }
  const n = p.v6.length / V6_STRIDE;
  const b = Buffer.alloc(n * 20);
  for (let i = 0; i < n; i++) {
    const o = i * V6_STRIDE;
    b.writeUInt32LE(p.v6[o + 4] as number, i * 20);
    for (let k = 0; k < 4; k++) b.writeUInt32BE(p.v6[o + k] as number, i * 20 + 4 + 4 * k);
  }
  return b;
}
