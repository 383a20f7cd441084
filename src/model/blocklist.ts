/** The blocklist as a user writes it: prefixes (a bare address is a host prefix), one per
 * line in a file with `#` comments and blank lines. Every line is checked before anything
 * is applied, and every bad one is reported by line number. Pure. */
import { StratumError } from "../errors";
import { parseRuleCidr } from "./firewall-rule";
import { formatSubnet, type Subnet } from "./ip";

export interface BlockPrefix {
  /** Canonical CIDR (IPv4-mapped IPv6 prefixes become IPv4). */
  prefix: string;
  family: 4 | 6;
  subnet: Subnet;
}

/** Prefixes packed for bulk work (a feed of a million is never a million objects), each
 * family sorted numerically (address, then length) and distinct. IPv4: address·64 + length,
 * exact in a double. IPv6: five numbers each, the address's four 32-bit words (most
 * significant first) and the length. */
export interface PackedPrefixes {
  v4: Float64Array;
  v6: Uint32Array;
}

export const V6_STRIDE = 5;

export function packedCount(p: PackedPrefixes): { 4: number; 6: number } {
  return { 4: p.v4.length, 6: p.v6.length / V6_STRIDE };
}

/** Collects prefixes, then packs them sorted and distinct. */
export class PrefixPacker {
  #v4 = new Float64Array(1024);
  #n4 = 0;
  #v6 = new Uint32Array(V6_STRIDE * 256);
  #n6 = 0;

  add4(addr: number, len: number): void {
    if (this.#n4 === this.#v4.length) {
      const next = new Float64Array(this.#v4.length * 2);
      next.set(this.#v4);
      this.#v4 = next;
    }
    this.#v4[this.#n4++] = addr * 64 + len;
  }

  add6(w0: number, w1: number, w2: number, w3: number, len: number): void {
    if (this.#n6 === this.#v6.length) {
      const next = new Uint32Array(this.#v6.length * 2);
      next.set(this.#v6);
      this.#v6 = next;
    }
    const v = this.#v6;
    const i = this.#n6;
    v[i] = w0;
    v[i + 1] = w1;
    v[i + 2] = w2;
    v[i + 3] = w3;
    v[i + 4] = len;
    this.#n6 += V6_STRIDE;
  }

  addSubnet(s: Subnet): void {
    if (s.family === 4) this.add4(Number(s.network), s.prefixLen);
    else {
      const w = (k: number) => Number((s.network >> BigInt(96 - 32 * k)) & 0xffffffffn);
      this.add6(w(0), w(1), w(2), w(3), s.prefixLen);
    }
  }

  pack(): PackedPrefixes {
    const v4 = this.#v4.subarray(0, this.#n4).sort();
    let n = 0;
    for (let i = 0; i < v4.length; i++) if (i === 0 || v4[i] !== v4[n - 1]) v4[n++] = v4[i] as number;
    const raw = this.#v6;
    const idx = Array.from({ length: this.#n6 / V6_STRIDE }, (_, i) => i * V6_STRIDE);
    idx.sort((a, b) => cmp6(raw, a, raw, b));
    const v6 = new Uint32Array(idx.length * V6_STRIDE);
    let m = 0;
    for (const i of idx) {
      if (m > 0 && cmp6(raw, i, v6, m - V6_STRIDE) === 0) continue;
      v6.set(raw.subarray(i, i + V6_STRIDE), m);
      m += V6_STRIDE;
    }
    return { v4: v4.slice(0, n), v6: v6.slice(0, m) };
  }
}

/** Numeric order of two packed IPv6 prefixes. */
export function cmp6(a: Uint32Array, i: number, b: Uint32Array, j: number): number {
  for (let k = 0; k < V6_STRIDE; k++) {
    const d = (a[i + k] as number) - (b[j + k] as number);
    if (d) return d;
  }
  return 0;
}

/** The prefixes of `a` not in `b` (both packed: sorted and distinct). */
export function packedMinus(a: PackedPrefixes, b: PackedPrefixes): PackedPrefixes {
  const v4: number[] = [];
  for (let i = 0, j = 0; i < a.v4.length; i++) {
    const x = a.v4[i] as number;
    while (j < b.v4.length && (b.v4[j] as number) < x) j++;
    if (b.v4[j] !== x) v4.push(x);
  }
  const v6: number[] = [];
  for (let i = 0, j = 0; i < a.v6.length; i += V6_STRIDE) {
    while (j < b.v6.length && cmp6(b.v6, j, a.v6, i) < 0) j += V6_STRIDE;
    if (j >= b.v6.length || cmp6(b.v6, j, a.v6, i) !== 0)
      for (let k = 0; k < V6_STRIDE; k++) v6.push(a.v6[i + k] as number);
  }
  return { v4: Float64Array.from(v4), v6: Uint32Array.from(v6) };
}

export function packSubnets(subnets: Iterable<Subnet>): PackedPrefixes {
  const p = new PrefixPacker();
  for (const s of subnets) p.addSubnet(s);
  return p.pack();
}

/** The packed prefixes as subnets, IPv4 first. */
export function unpackSubnets(p: PackedPrefixes): Subnet[] {
  const out: Subnet[] = [];
  for (const x of p.v4) out.push({ family: 4, network: BigInt(Math.floor(x / 64)), prefixLen: x % 64 });
  for (let i = 0; i < p.v6.length; i += V6_STRIDE) {
    let v = 0n;
    for (let k = 0; k < 4; k++) v = (v << 32n) | BigInt(p.v6[i + k] as number);
    out.push({ family: 6, network: v, prefixLen: p.v6[i + 4] as number });
  }
  return out;
}

/** Decimal digits of t[i..end) with no leading zero, at most `max` digits; -1 otherwise. */
function decimal(t: string, i: number, end: number, max: number): number {
  if (i >= end || end - i > max || (end - i > 1 && t.charCodeAt(i) === 48)) return -1;
  let v = 0;
  for (; i < end; i++) {
    const c = t.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

const group = new Uint32Array(8);

/** The fast path of a prefix in t[start..end) (trimmed): plain dotted IPv4 or plain hex IPv6
 * (no embedded IPv4, no zone), an optional length without leading zeros, host bits clear, not
 * /0, not IPv4-mapped. Adds it and answers true; false when the general parser must decide
 * (it also writes the message of a bad one). */
export function scanPrefix(t: string, start: number, end: number, out: PrefixPacker): boolean {
  let slash = end;
  let dot = false;
  for (let i = start; i < end; i++) {
    const c = t.charCodeAt(i);
    if (c === 46) dot = true;
    else if (c === 47) {
      slash = i;
      break;
    }
  }
  if (dot) {
    let addr = 0;
    let i = start;
    for (let o = 0; o < 4; o++) {
      let j = i;
      while (j < slash && t.charCodeAt(j) !== 46) j++;
      if (o < 3 !== j < slash) return false;
      const v = decimal(t, i, j, 3);
      if (v < 0 || v > 255) return false;
      addr = addr * 256 + v;
      i = j + 1;
    }
    const len = slash === end ? 32 : decimal(t, slash + 1, end, 2);
    if (len < 1 || len > 32 || addr % 2 ** (32 - len) !== 0) return false;
    out.add4(addr, len);
    return true;
  }
  // IPv6: groups of 1-4 hex digits, at most one "::" (standing for at least one group).
  let n = 0;
  let gap = -1;
  let i = start;
  if (t.charCodeAt(i) === 58) {
    if (t.charCodeAt(i + 1) !== 58 || i + 1 >= slash) return false;
    gap = 0;
    i += 2;
  }
  while (i < slash) {
    const s = i;
    let v = 0;
    for (; i < slash; i++) {
      const c = t.charCodeAt(i);
      const h = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
      if (h < 0) break;
      v = v * 16 + h;
    }
    if (i === s || i - s > 4 || n === 8) return false;
    group[n++] = v;
    if (i === slash) break;
    if (t.charCodeAt(i) !== 58) return false;
    i++;
    if (t.charCodeAt(i) === 58 && i < slash) {
      if (gap >= 0) return false;
      gap = n;
      i++;
    } else if (i >= slash) return false;
  }
  if (gap < 0 ? n !== 8 : n > 7) return false;
  const w = [0, 0, 0, 0];
  for (let g = 0; g < n; g++) {
    const at = gap >= 0 && g >= gap ? g + 8 - n : g;
    w[at >> 1] = ((w[at >> 1] as number) + (at & 1 ? (group[g] as number) : (group[g] as number) * 65536)) >>> 0;
  }
  const len = slash === end ? 128 : decimal(t, slash + 1, end, 3);
  if (len < 1 || len > 128) return false;
  if (w[0] === 0 && w[1] === 0 && w[2] === 0xffff && len >= 96) return false;
  for (let k = 0; k < 4; k++) {
    const bits = Math.max(0, Math.min(32, len - 32 * k));
    if (bits < 32 && (w[k] as number) % 2 ** (32 - bits) !== 0) return false;
  }
  out.add6(w[0] as number, w[1] as number, w[2] as number, w[3] as number, len);
  return true;
}

/** Validates one prefix; the message names it. */
export function parseBlockPrefix(text: string): BlockPrefix {
  const s = parseRuleCidr(text, "blocklist prefix");
  if (s.prefixLen === 0)
    throw new StratumError("INVALID", `blocklist prefix ${formatSubnet(s)} would block every IPv${s.family} source`);
  return { prefix: formatSubnet(s), family: s.family, subnet: s };
}

/** Prefixes (any spelling the blocklist accepts) packed; throws for the first bad one. */
export function packPrefixes(texts: Iterable<string>): PackedPrefixes {
  const out = new PrefixPacker();
  for (const t of texts) addBlockPrefix(t, out);
  return out.pack();
}

/** Adds one prefix (the fast path, else the general parser, which throws for a bad one). */
export function addBlockPrefix(text: string, out: PrefixPacker): void {
  const t = String(text);
  let a = 0;
  let b = t.length;
  while (a < b && t.charCodeAt(a) <= 32) a++;
  while (b > a && t.charCodeAt(b - 1) <= 32) b--;
  if (a === b || !scanPrefix(t, a, b, out)) out.addSubnet(parseBlockPrefix(t).subnet);
}

/** Every prefix that covers `s` (the whole of it), from /1 to its own length, canonical:
 * the blocklist entries that could match it. */
export function coveringPrefixes(s: Subnet): string[] {
  const bits = s.family === 4 ? 32 : 128;
  const out: string[] = [];
  for (let len = 1; len <= s.prefixLen; len++) {
    const mask = ((1n << BigInt(len)) - 1n) << BigInt(bits - len);
    out.push(formatSubnet({ family: s.family, network: s.network & mask, prefixLen: len }));
  }
  return out;
}

export interface BadLine {
  line: number;
  message: string;
}

export interface ParsedBlocklist {
  prefixes: PackedPrefixes;
  /** Distinct prefixes. */
  count: number;
  bad: BadLine[];
  /** Lines read, comments and blank ones included. */
  lines: number;
}

/** Parses a blocklist file: one prefix per line; `#` starts a comment (whole line or after a
 * prefix); blank lines are ignored. Duplicates are kept once. `progress` is called every
 * `every` lines. */
export function parseBlocklistText(text: string, progress?: (lines: number) => void, every = 100_000): ParsedBlocklist {
  const out = new PrefixPacker();
  const bad: BadLine[] = [];
  let lines = 0;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    lines++;
    let a = start;
    let b = end;
    start = end + 1;
    for (let i = a; i < b; i++)
      if (text.charCodeAt(i) === 35) {
        b = i;
        break;
      }
    while (a < b && text.charCodeAt(a) <= 32) a++;
    while (b > a && text.charCodeAt(b - 1) <= 32) b--;
    if (a < b && !scanPrefix(text, a, b, out))
      try {
        out.addSubnet(parseBlockPrefix(text.slice(a, b)).subnet);
      } catch (e) {
        bad.push({ line: lines, message: (e as Error).message });
      }
    if (progress && lines % every === 0) progress(lines);
  }
  const prefixes = out.pack();
  const n = packedCount(prefixes);
  return { prefixes, count: n[4] + n[6], bad, lines };
}

/** One line for a file with bad lines: how many, and the first few with their line numbers. */
export function badLinesError(file: string, bad: BadLine[], show = 5): StratumError {
  const first = bad
    .slice(0, show)
    .map((b) => `line ${b.line}: ${b.message}`)
    .join("; ");
  const more = bad.length > show ? `; and ${bad.length - show} more` : "";
  return new StratumError(
    "INVALID",
    `${file}: ${bad.length} bad line${bad.length === 1 ? "" : "s"} (nothing was applied): ${first}${more}`,
  );
}
