/** The firewall compiler: a scope's rules (priority order) become the entries of one
 * generation of the datapath's tries (bpf/include/stm_fw.h), and codecs for every firewall
 * map. Rule i is bit i of every bitmap; an address entry holds the rules whose prefix
 * contains it (the longest stored prefix holding an address then yields exactly the rules
 * matching it; the datapath tries the lengths present, longest first),
 * a port entry the rules whose range covers its elementary interval. Pure. */
import { StratumError } from "../errors";
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
  stm_fw_scope: 72,
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
  scope: Buffer;
  entries: Record<FwMapName, Array<[Buffer, Buffer]>>;
}

/** A rule bitmap: 32-bit halves, little-endian words as the datapath reads them. */
type Bits = Uint32Array;
const newBits = (): Bits => new Uint32Array(FW_WORDS * 2);
const setBit = (b: Bits, i: number) => {
  b[i >>> 5] = ((b[i >>> 5] as number) | (1 << (i & 31))) >>> 0;
};
const clearBit = (b: Bits, i: number) => {
  b[i >>> 5] = ((b[i >>> 5] as number) & ~(1 << (i & 31))) >>> 0;
};
const isEmpty = (b: Bits) => b.every((x) => x === 0);
const sameBits = (a: Bits, b: Bits) => a.every((x, i) => x === b[i]);

export function encodeBits(b: Bits): Buffer {
  const out = Buffer.alloc(FW_BITS_SIZE);
  for (let w = 0; w < FW_WORDS; w++) {
    const lo = b[w * 2] as number;
    const hi = b[w * 2 + 1] as number;
    out.writeUInt32LE(lo, 32 + w * 8);
    out.writeUInt32LE(hi, 32 + w * 8 + 4);
    if (lo || hi) {
      const s = w >>> 6;
      const bit = w & 63;
      const off = s * 8 + (bit >= 32 ? 4 : 0);
      out.writeUInt32LE((out.readUInt32LE(off) | (1 << (bit & 31))) >>> 0, off);
    }
  }
  return out;
}

/** Prefix lengths present in address entries, as the scope's length masks: bit (bits - len). */
export function lengthMask(keys: Buffer[], family: 4 | 6): bigint {
  const bits = family === 4 ? 32 : 128;
  let m = 0n;
  for (const k of keys) m |= 1n << BigInt(bits - k.readUInt32LE(0));
  return m;
}

export interface ScopeLengths {
  len4: [bigint, bigint];
  len6: [bigint, bigint];
}

export function encodeScope(
  gen: number,
  def: DefaultAction,
  on: boolean,
  nrules: number,
  lens: ScopeLengths = { len4: [0n, 0n], len6: [0n, 0n] },
): Buffer {
  const b = Buffer.alloc(FW_SIZES.stm_fw_scope);
  b.writeUInt32LE(gen, 0);
  b.writeUInt8(FW_ACTION[def], 4);
  b.writeUInt8(on ? FW_SCOPE_F_ON : 0, 5);
  b.writeUInt16LE(Math.ceil(Math.ceil(nrules / 64) / 64), 6);
  for (const side of [0, 1]) {
    b.writeBigUInt64LE(lens.len4[side] as bigint, 8 + side * 8);
    const m6 = lens.len6[side] as bigint;
    for (let w = 0; w < 3; w++)
      b.writeBigUInt64LE((m6 >> BigInt(64 * w)) & 0xffffffffffffffffn, 24 + side * 24 + w * 8);
  }
  return b;
}

export function decodeScope(b: Buffer): { gen: number; def: DefaultAction; on: boolean; nsum: number } {
  return {
    gen: b.readUInt32LE(0),
    def: b.readUInt8(4) === FW_ACTION.deny ? "deny" : "allow",
    on: (b.readUInt8(5) & FW_SCOPE_F_ON) !== 0,
    nsum: b.readUInt16LE(6),
  };
}

export function encodeU32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

function addrKey(gen: number, s: Subnet): Buffer {
  const n = s.family === 4 ? 4 : 16;
  const b = Buffer.alloc(8 + n);
  b.writeUInt32LE(s.prefixLen, 0);
  b.writeUInt32LE(gen, 4);
  let v = s.network;
  for (let i = n - 1; i >= 0; i--, v >>= 8n) b[8 + i] = Number(v & 0xffn);
  return b;
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

export function ruleKey(gen: number, idx: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(gen, 0);
  b.writeUInt32LE(idx, 4);
  return b;
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

const PCLS_OF_PROTO: Record<Rule["proto"], number[]> = {
  any: [0, 1, 2, 3, 4],
  tcp: [FW_PCLS.tcp],
  udp: [FW_PCLS.udp],
  icmp: [FW_PCLS.icmp],
  icmpv6: [FW_PCLS.icmpv6],
};

/** The range a rule allows for one port field (sel 0: source port or ICMP type; 1: destination
 * port or ICMP code) in a protocol class. */
function ruleRange(r: Rule, sel: number, pcls: number): [number, number] {
  if (pcls === FW_PCLS.tcp || pcls === FW_PCLS.udp) return (sel === 0 ? r.sport : r.dport) ?? [0, 65535];
  if (pcls === FW_PCLS.icmp || pcls === FW_PCLS.icmpv6) {
    const v = sel === 0 ? r.icmpType : r.icmpCode;
    return v === undefined ? [0, 65535] : [v, v];
  }
  return [0, 65535];
}

function addressEntries(rules: Rule[], gen: number, side: "src" | "dst", family: 4 | 6): Array<[Buffer, Buffer]> {
  const bits = family === 4 ? 32 : 128;
  const byPrefix = new Map<string, { s: Subnet; rules: number[] }>();
  const wild: number[] = [];
  rules.forEach((r, i) => {
    const cidr = r[side];
    if (cidr) {
      const s = parseSubnet(cidr);
      if (s.family !== family) return;
      const k = `${s.prefixLen}/${s.network}`;
      const e = byPrefix.get(k) ?? { s, rules: [] };
      e.rules.push(i);
      byPrefix.set(k, e);
    } else {
      const f = ruleFamily(r);
      if (f === undefined || f === family) wild.push(i);
    }
  });
  const entries: Subnet[] = [...byPrefix.values()].map((e) => e.s);
  if (wild.length && !byPrefix.has("0/0")) entries.push({ family, network: 0n, prefixLen: 0 });
  const lens = [...new Set([...byPrefix.values()].map((e) => e.s.prefixLen))].sort((a, b) => a - b);
  const out: Array<[Buffer, Buffer]> = [];
  for (const p of entries) {
    const b = newBits();
    for (const i of wild) setBit(b, i);
    for (const len of lens) {
      if (len > p.prefixLen) break;
      const net = len === 0 ? 0n : (p.network >> BigInt(bits - len)) << BigInt(bits - len);
      const e = byPrefix.get(`${len}/${net}`);
      if (e) for (const i of e.rules) setBit(b, i);
    }
    out.push([addrKey(gen, p), encodeBits(b)]);
  }
  return out;
}

function portEntries(rules: Rule[], gen: number): Array<[Buffer, Buffer]> {
  const out: Array<[Buffer, Buffer]> = [];
  for (const dir of [FW_DIR.ingress, FW_DIR.egress]) {
    const dname = dir === FW_DIR.ingress ? "ingress" : "egress";
    for (let pcls = 0; pcls <= 4; pcls++) {
      const rel: number[] = [];
      rules.forEach((r, i) => {
        if ((r.direction === "both" || r.direction === dname) && PCLS_OF_PROTO[r.proto].includes(pcls)) rel.push(i);
      });
      if (rel.length === 0) continue;
      for (const sel of [0, 1]) {
        // Sweep the elementary intervals: at each boundary rules start or end covering.
        const starts = new Map<number, number[]>();
        const ends = new Map<number, number[]>();
        for (const i of rel) {
          const [lo, hi] = ruleRange(rules[i] as Rule, sel, pcls);
          starts.set(lo, [...(starts.get(lo) ?? []), i]);
          ends.set(hi + 1, [...(ends.get(hi + 1) ?? []), i]);
        }
        const cuts = [...new Set([...starts.keys(), ...ends.keys()])].filter((x) => x <= 65535).sort((a, b) => a - b);
        const cur = newBits();
        const intervals: Array<{ lo: number; hi: number; bits: Bits }> = [];
        for (let c = 0; c < cuts.length; c++) {
          const at = cuts[c] as number;
          for (const i of ends.get(at) ?? []) clearBit(cur, i);
          for (const i of starts.get(at) ?? []) setBit(cur, i);
          const hi = (cuts[c + 1] ?? 65536) - 1;
          if (isEmpty(cur)) continue;
          const last = intervals[intervals.length - 1];
          if (last && last.hi === at - 1 && sameBits(last.bits, cur)) last.hi = hi;
          else intervals.push({ lo: at, hi, bits: cur.slice() });
        }
        for (const iv of intervals) {
          const val = encodeBits(iv.bits);
          for (const [port, plen] of rangePrefixes(iv.lo, iv.hi))
            out.push([portKey(gen, sel, dir, pcls, port, plen), val]);
        }
      }
    }
  }
  return out;
}

/** Compiles a scope's rules (sorted by priority, validated) into generation `gen`. */
export function compileScope(rules: StoredRule[], def: DefaultAction, gen: number): CompiledScope {
  if (rules.length > FW_WORDS * 64)
    throw new StratumError("CAPACITY", `${rules.length} rules exceed the ${FW_WORDS * 64} one scope can hold`);
  const ruleEntries: Array<[Buffer, Buffer]> = rules.map((r, i) => {
    const v = Buffer.alloc(8);
    v.writeUInt32LE(r.id, 0);
    v.writeUInt8(FW_ACTION[r.action], 4);
    v.writeUInt8(r.log ? FW_RULE_F_LOG : 0, 5);
    return [ruleKey(gen, i), v];
  });
  const src4 = addressEntries(rules, gen, "src", 4);
  const dst4 = addressEntries(rules, gen, "dst", 4);
  const src6 = addressEntries(rules, gen, "src", 6);
  const dst6 = addressEntries(rules, gen, "dst", 6);
  const mask = (e: Array<[Buffer, Buffer]>, f: 4 | 6) =>
    lengthMask(
      e.map(([k]) => k),
      f,
    );
  return {
    gen,
    scope: encodeScope(gen, def, rules.length > 0 || def === "deny", rules.length, {
      len4: [mask(src4, 4), mask(dst4, 4)],
      len6: [mask(src6, 6), mask(dst6, 6)],
    }),
    entries: {
      stm_fw_src4: src4,
      stm_fw_dst4: dst4,
      stm_fw_src6: src6,
      stm_fw_dst6: dst6,
      stm_fw_ports: portEntries(rules, gen),
      stm_fw_rules: ruleEntries,
    },
  };
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
