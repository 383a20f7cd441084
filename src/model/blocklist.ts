/** The blocklist as a user writes it: prefixes (a bare address is a host prefix), one per
 * line in a file with `#` comments and blank lines. Every line is checked before anything
 * is applied, and every bad one is reported by line number. Pure. */
import { StratumError } from "../errors";
import { parseRuleCidr } from "./firewall-rule";
import { formatSubnet, parseSubnet, type Subnet } from "./ip";

export interface BlockPrefix {
  /** Canonical CIDR (IPv4-mapped IPv6 prefixes become IPv4). */
  prefix: string;
  family: 4 | 6;
  subnet: Subnet;
}

/** Plain dotted IPv4 with an optional length, no leading zeros: the common line of a big
 * feed. Anything else takes the general parser. */
const PLAIN_V4 = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})(?:\/(0|[1-9]\d?))?$/;

/** The fast path of parseBlockPrefix (a million-line file is checked twice: by the CLI, for
 * line numbers, and by the agent); undefined when the general parser must decide. */
function plainV4(t: string): BlockPrefix | undefined {
  const m = PLAIN_V4.exec(t);
  if (!m) return undefined;
  const o = [m[1], m[2], m[3], m[4]].map(Number) as [number, number, number, number];
  const len = m[5] === undefined ? 32 : Number(m[5]);
  if (o.some((x) => x > 255) || len > 32 || len === 0) return undefined;
  const v = ((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0;
  const mask = len === 32 ? 0xffffffff : ~(0xffffffff >>> len) >>> 0;
  if ((v & mask) >>> 0 !== v) return undefined;
  return { prefix: `${o.join(".")}/${len}`, family: 4, subnet: { family: 4, network: BigInt(v), prefixLen: len } };
}

/** Validates one prefix; the message names it. */
export function parseBlockPrefix(text: string): BlockPrefix {
  const fast = plainV4(text.trim());
  if (fast) return fast;
  const s = parseRuleCidr(text, "blocklist prefix");
  if (s.prefixLen === 0)
    throw new StratumError("INVALID", `blocklist prefix ${formatSubnet(s)} would block every IPv${s.family} source`);
  return { prefix: formatSubnet(s), family: s.family, subnet: s };
}

/** The order of the blocklist as bytes (memcmp order): family, address, length. IPv4 comes
 * before IPv6, addresses sort numerically, and a prefix comes before its longer ones at the
 * same address ("10.0.0.0/8" < "10.0.0.0/16" < "10.0.0.1/32" < "11.0.0.0/8"). */
export function blockSortKey(p: Subnet | string): Uint8Array {
  const s = typeof p === "string" ? (plainV4(p)?.subnet ?? parseSubnet(p)) : p;
  if (s.family === 4) {
    const v = Number(s.network);
    return new Uint8Array([4, v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255, s.prefixLen]);
  }
  const n = 16;
  const k = new Uint8Array(n + 2);
  k[0] = s.family;
  let v = s.network;
  for (let i = n; i >= 1; i--) {
    k[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  k[n + 1] = s.prefixLen;
  return k;
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
  prefixes: BlockPrefix[];
  bad: BadLine[];
  /** Lines read, comments and blank ones included. */
  lines: number;
}

/** Parses a blocklist file: one prefix per line; `#` starts a comment (whole line or after a
 * prefix); blank lines are ignored. Duplicates are kept once. `progress` is called every
 * `every` lines. */
export function parseBlocklistText(text: string, progress?: (lines: number) => void, every = 100_000): ParsedBlocklist {
  const prefixes: BlockPrefix[] = [];
  const seen = new Set<string>();
  const bad: BadLine[] = [];
  let lines = 0;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    lines++;
    const raw = text.slice(start, end);
    start = end + 1;
    const hash = raw.indexOf("#");
    const t = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
    if (t) {
      try {
        const p = parseBlockPrefix(t);
        if (!seen.has(p.prefix)) {
          seen.add(p.prefix);
          prefixes.push(p);
        }
      } catch (e) {
        bad.push({ line: lines, message: (e as Error).message });
      }
    }
    if (progress && lines % every === 0) progress(lines);
  }
  return { prefixes, bad, lines };
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
