/** A network's authoritative data: its forward zone (SOA, NS, `ns` and `gateway`, one name
 * per endpoint, the user's records) and the reverse zones of its subnets, and the lookup
 * that answers a name and type from them (NXDOMAIN vs NODATA, CNAME chains, additional
 * addresses). Built from plain data, tolerant of conflicting input (what clashes with the
 * built-in and endpoint names is skipped with a warning, never thrown). Pure. */
import { createHash } from "node:crypto";
import type { Answer } from "dns-packet";
import type { DnsRecord } from "../model/dns-record";
import { contains, formatIp, parseIp, parseSubnet, type Subnet } from "../model/ip";
import { profileIp6 } from "../model/network";
import { RCODE, TYPE } from "./wire";

export interface ZoneEndpoint {
  name: string;
  ip: string;
  mac: string;
}

export interface ZoneInput {
  network: {
    name: string;
    cidr: string;
    gateway: string;
    cidr6?: string;
    gateway6?: string;
    dnsZone: string;
    dnsForwarders: string[];
  };
  endpoints: ZoneEndpoint[];
  records: DnsRecord[];
}

/** Endpoints come and go: a short TTL keeps a re-used name from lingering in caches. */
export const ENDPOINT_TTL = 30;
export const BUILTIN_TTL = 300;
/** SOA MINIMUM: how long a resolver may remember that a name does not exist (RFC 2308). */
export const NEGATIVE_TTL = 30;
export const SOA_TIMERS = { refresh: 3600, retry: 600, expire: 86400, minimum: NEGATIVE_TTL } as const;
const MAX_CNAME_CHAIN = 8;

type Node = Map<number, Answer[]>;

const TYPE_NUM: Record<string, number> = {
  A: TYPE.A,
  AAAA: TYPE.AAAA,
  CNAME: TYPE.CNAME,
  TXT: TYPE.TXT,
  SRV: TYPE.SRV,
  MX: TYPE.MX,
  PTR: TYPE.PTR,
  NS: TYPE.NS,
  SOA: TYPE.SOA,
};

/** The reverse space a zone answers for: the addresses of the subnet, written as digits
 * (octets or nibbles) below the apex. */
interface ReverseSpace {
  digits: number;
  radix: number;
  apexDigits: number;
  apexValue: bigint;
  lo: bigint;
  hi: bigint;
}

export class Zone {
  readonly nodes = new Map<string, Node>();
  readonly ents = new Set<string>();
  /** The SOA as it goes into the authority section of a negative answer. */
  negativeSoa!: Answer;
  constructor(
    readonly apex: string,
    private readonly reverse?: ReverseSpace,
  ) {}

  /** True when `name` is this network's to answer: inside the forward zone, or in the
   * reverse zone at or under a prefix that meets the subnet (a /26's /24 zone answers
   * only for the /26's addresses; the rest of the /24 is someone else's). */
  covers(name: string): boolean {
    if (name !== this.apex && !name.endsWith(`.${this.apex}`)) return false;
    const r = this.reverse;
    if (!r || name === this.apex) return true;
    const labels = name.slice(0, -(this.apex.length + 1)).split(".");
    let v = r.apexValue;
    let n = r.apexDigits;
    // From the apex down: digits that are not digits, or too many, make a name that cannot
    // exist; it is ours (NXDOMAIN) when the prefix read so far is.
    for (let i = labels.length - 1; i >= 0 && n < r.digits; i--) {
      const d = parseDigit(labels[i] as string, r.radix);
      if (d < 0) break;
      v = v * BigInt(r.radix) + BigInt(d);
      n++;
    }
    const span = BigInt(r.radix) ** BigInt(r.digits - n);
    const lo = v * span;
    return lo <= r.hi && lo + span - 1n >= r.lo;
  }

  add(name: string, rr: Answer): void {
    const t = TYPE_NUM[rr.type] as number;
    let node = this.nodes.get(name);
    if (!node) {
      node = new Map();
      this.nodes.set(name, node);
      for (let p = parent(name); p !== undefined && p !== this.apex && p.endsWith(this.apex); p = parent(p))
        this.ents.add(p);
    }
    const set = node.get(t);
    if (set) set.push(rr);
    else node.set(t, [rr]);
  }
}

function parseDigit(label: string, radix: number): number {
  if (radix === 16) return /^[0-9a-f]$/.test(label) ? Number.parseInt(label, 16) : -1;
  if (!/^(0|[1-9][0-9]{0,2})$/.test(label)) return -1;
  const n = Number(label);
  return n <= 255 ? n : -1;
}

function parent(name: string): string | undefined {
  const i = name.indexOf(".");
  return i < 0 ? undefined : name.slice(i + 1);
}

/** The in-addr.arpa / ip6.arpa name of an address. */
export function reverseName(ip: string): string {
  const a = parseIp(ip);
  if (a.family === 4) {
    const o = [24n, 16n, 8n, 0n].map((s) => Number((a.value >> s) & 0xffn));
    return `${o.reverse().join(".")}.in-addr.arpa`;
  }
  const nibbles = a.value.toString(16).padStart(32, "0").split("");
  return `${nibbles.reverse().join(".")}.ip6.arpa`;
}

/** The smallest octet (IPv4) or nibble (IPv6) aligned reverse zone holding the subnet. */
export function reverseZone(s: Subnet): { apex: string; space: ReverseSpace } {
  const v4 = s.family === 4;
  const bitsPer = v4 ? 8 : 4;
  const digits = v4 ? 4 : 32;
  const apexDigits = Math.floor(s.prefixLen / bitsPer);
  const apexValue = s.network >> BigInt((digits - apexDigits) * bitsPer);
  const ds: string[] = [];
  for (let i = 0; i < apexDigits; i++) {
    const d = Number((apexValue >> BigInt((apexDigits - 1 - i) * bitsPer)) & BigInt((1 << bitsPer) - 1));
    ds.push(v4 ? String(d) : d.toString(16));
  }
  const suffix = v4 ? "in-addr.arpa" : "ip6.arpa";
  const apex = ds.length ? `${ds.reverse().join(".")}.${suffix}` : suffix;
  const hi = s.network + (1n << BigInt((v4 ? 32 : 128) - s.prefixLen)) - 1n;
  return { apex, space: { digits, radix: v4 ? 256 : 16, apexDigits, apexValue, lo: s.network, hi } };
}

export interface LookupResult {
  rcode: number;
  answers: Answer[];
  authorities: Answer[];
  additionals: Answer[];
}

/** A network's zones, ready to answer. */
export class NetworkZones {
  constructor(
    readonly network: string,
    /** Longest apex first, so the most specific zone wins. */
    readonly zones: Zone[],
    readonly serial: number,
    /** Digest of the content (serial excluded): equal digests, equal answers. */
    readonly hash: string,
    readonly warnings: string[],
  ) {}

  find(name: string): Zone | undefined {
    for (const z of this.zones) if (z.covers(name)) return z;
    return undefined;
  }

  /** Answers `qname` (lower-case presentation, no trailing dot) and `qtype`; undefined when
   * the name is not this network's. */
  lookup(qname: string, qtype: number): LookupResult | undefined {
    let zone = this.find(qname);
    if (!zone) return undefined;
    const answers: Answer[] = [];
    const seen = new Set<string>();
    let name = qname;
    for (;;) {
      const node = zone.nodes.get(name);
      if (!node) {
        const rcode = zone.ents.has(name) ? RCODE.NOERROR : RCODE.NXDOMAIN;
        return { rcode, answers, authorities: [zone.negativeSoa], additionals: [] };
      }
      const cname = node.get(TYPE.CNAME);
      if (cname && qtype !== TYPE.CNAME && qtype !== TYPE.ANY) {
        answers.push(...cname);
        seen.add(name);
        const target = (cname[0] as Answer & { data: string }).data;
        const next = this.find(target);
        // Out of our zones (the client's resolver follows it), or a loop: the chain so far.
        if (!next || seen.has(target) || seen.size >= MAX_CNAME_CHAIN)
          return { rcode: RCODE.NOERROR, answers, authorities: [], additionals: [] };
        zone = next;
        name = target;
        continue;
      }
      const hits = qtype === TYPE.ANY ? [...node.values()].flat() : (node.get(qtype) ?? []);
      if (!hits.length) return { rcode: RCODE.NOERROR, answers, authorities: [zone.negativeSoa], additionals: [] };
      answers.push(...hits);
      return { rcode: RCODE.NOERROR, answers, authorities: [], additionals: this.#additional(hits) };
    }
  }

  /** Addresses of in-zone SRV targets, MX exchanges and NS hosts (saves the client a query). */
  #additional(rrs: Answer[]): Answer[] {
    const out: Answer[] = [];
    const done = new Set<string>();
    for (const rr of rrs) {
      const target =
        rr.type === "SRV" ? rr.data.target : rr.type === "MX" ? rr.data.exchange : rr.type === "NS" ? rr.data : "";
      if (!target || done.has(target)) continue;
      done.add(target);
      const node = this.find(target)?.nodes.get(target);
      if (!node) continue;
      out.push(...(node.get(TYPE.A) ?? []), ...(node.get(TYPE.AAAA) ?? []));
    }
    return out;
  }
}

function txtStrings(text: string): Buffer[] {
  const b = Buffer.from(text);
  if (!b.length) return [b];
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += 255) out.push(b.subarray(i, i + 255));
  return out;
}

function userAnswer(owner: string, r: DnsRecord): Answer {
  const base = { name: owner, ttl: r.ttl, class: "IN" as const };
  switch (r.type) {
    case "A":
    case "AAAA":
    case "CNAME":
      return { ...base, type: r.type, data: r.value };
    case "TXT":
      return { ...base, type: "TXT", data: txtStrings(r.value) };
    case "SRV": {
      const [p, w, port, target] = r.value.split(" ");
      return {
        ...base,
        type: "SRV",
        data: { priority: Number(p), weight: Number(w), port: Number(port), target: target as string },
      };
    }
    case "MX": {
      const [pref, exchange] = r.value.split(" ");
      return { ...base, type: "MX", data: { preference: Number(pref), exchange: exchange as string } };
    }
  }
}

/** Builds a network's zones. `prev` is what the last build of this network produced: the
 * serial is kept when the content is the same, and moves forward (to the clock, or by one)
 * when it changed, so secondaries and caches can tell. */
export function buildZones(
  input: ZoneInput,
  prev?: { hash: string; serial: number },
  nowMs: number = Date.now(),
): NetworkZones {
  const net = input.network;
  const apex = net.dnsZone.toLowerCase().replace(/\.$/, "");
  const warnings: string[] = [];
  const subnet = parseSubnet(net.cidr);
  const subnet6 = net.cidr6 ? parseSubnet(net.cidr6) : undefined;
  const fwd = new Zone(apex);
  const rev4 = reverseZone(subnet);
  const zones = [fwd, new Zone(rev4.apex, rev4.space)];
  if (subnet6) {
    const rev6 = reverseZone(subnet6);
    zones.push(new Zone(rev6.apex, rev6.space));
  }
  const nsName = `ns.${apex}`;
  const gwName = `gateway.${apex}`;
  const rr = (name: string, type: "A" | "AAAA" | "PTR" | "NS", data: string, ttl: number): Answer => ({
    name,
    type,
    ttl,
    class: "IN",
    data,
  });
  /** Names whose addresses the server owns (built-in and endpoint names): user records may
   * not add A/AAAA/CNAME there. */
  const owned = new Set<string>();

  for (const z of zones) z.add(z.apex, rr(z.apex, "NS", nsName, BUILTIN_TTL));
  for (const name of [nsName, gwName]) {
    owned.add(name);
    fwd.add(name, rr(name, "A", net.gateway, BUILTIN_TTL));
    if (net.gateway6) fwd.add(name, rr(name, "AAAA", net.gateway6, BUILTIN_TTL));
  }
  const rev = (ip: string, target: string, ttl: number) => {
    const name = reverseName(ip);
    const z = zones.find((x) => x !== fwd && x.covers(name));
    if (z) z.add(name, rr(name, "PTR", target, ttl));
  };
  rev(net.gateway, gwName, BUILTIN_TTL);
  if (net.gateway6) rev(net.gateway6, gwName, BUILTIN_TTL);

  for (const ep of [...input.endpoints].sort((a, b) => a.name.localeCompare(b.name))) {
    const label = ep.name.toLowerCase();
    const name = `${label}.${apex}`;
    if (!/^[a-z0-9_-]{1,63}$/.test(label)) {
      warnings.push(`endpoint ${ep.name}: not a DNS label, no DNS name`);
      continue;
    }
    if (owned.has(name)) {
      warnings.push(`endpoint ${ep.name}: ${name} is the server's own name (or another endpoint's), no DNS name`);
      continue;
    }
    let ip: ReturnType<typeof parseIp>;
    try {
      ip = parseIp(ep.ip);
    } catch {
      warnings.push(`endpoint ${ep.name}: "${ep.ip}" is not an address, no DNS name`);
      continue;
    }
    if (!contains(subnet, ip)) {
      warnings.push(`endpoint ${ep.name}: ${ep.ip} is outside ${net.cidr}, no DNS name`);
      continue;
    }
    owned.add(name);
    const v4 = formatIp(ip);
    fwd.add(name, rr(name, "A", v4, ENDPOINT_TTL));
    rev(v4, name, ENDPOINT_TTL);
    if (net.cidr6) {
      try {
        const v6 = profileIp6(net.cidr6, ep.mac);
        fwd.add(name, rr(name, "AAAA", v6, ENDPOINT_TTL));
        rev(v6, name, ENDPOINT_TTL);
      } catch {
        warnings.push(`endpoint ${ep.name}: MAC "${ep.mac}" gives no IPv6 address`);
      }
    }
  }

  const seen = new Set<string>();
  for (const r of input.records) {
    const owner = r.name === "@" ? apex : `${r.name}.${apex}`;
    const what = `DNS record ${owner} ${r.type} ${r.value}`;
    const key = `${owner} ${r.type} ${r.value}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const node = fwd.nodes.get(owner);
    if (owned.has(owner) && (r.type === "A" || r.type === "AAAA" || r.type === "CNAME")) {
      warnings.push(`${what}: the name is an endpoint's or the server's own, skipped`);
      continue;
    }
    if (r.type === "CNAME" && (owner === apex || node)) {
      warnings.push(`${what}: a CNAME cannot share its name with other records, skipped`);
      continue;
    }
    if (node?.has(TYPE.CNAME)) {
      warnings.push(`${what}: ${owner} is a CNAME, skipped`);
      continue;
    }
    fwd.add(owner, userAnswer(owner, r));
  }

  const hash = contentHash(zones);
  const serial =
    prev && prev.hash === hash ? prev.serial : Math.max(((prev?.serial ?? 0) + 1) >>> 0, Math.floor(nowMs / 1000));
  for (const z of zones) {
    const soa = (ttl: number): Answer => ({
      name: z.apex,
      type: "SOA",
      ttl,
      class: "IN",
      data: { mname: nsName, rname: `hostmaster.${apex}`, serial, ...SOA_TIMERS },
    });
    z.add(z.apex, soa(BUILTIN_TTL));
    z.negativeSoa = soa(NEGATIVE_TTL);
  }
  zones.sort((a, b) => b.apex.length - a.apex.length);
  return new NetworkZones(net.name, zones, serial, hash, warnings);
}

function contentHash(zones: Zone[]): string {
  const h = createHash("sha256");
  for (const z of zones) {
    h.update(`zone ${z.apex}\n`);
    for (const name of [...z.nodes.keys()].sort()) {
      for (const [t, rrs] of [...(z.nodes.get(name) as Node).entries()].sort((a, b) => a[0] - b[0]))
        for (const r of rrs)
          h.update(`${name} ${t} ${(r as { ttl?: number }).ttl} ${JSON.stringify((r as { data?: unknown }).data)}\n`);
    }
  }
  return h.digest("hex");
}
