/** The DNS server without its sockets: which network a query arrived for (by the local
 * address), whether its source may ask (inside that network's subnets, else REFUSED), and
 * the reply: authoritative answers from the network's zones, served from a cache of encoded
 * replies in which only the ID, RD/CD and the question's case are patched per query, and the
 * rest forwarded. `handle` never throws: a reply, nothing (drop), or a promise of either. */
import { StratumError } from "../errors";
import { contains, formatIp, parseIp, parseSubnet, type Subnet } from "../model/ip";
import { type ForwardCounters, Forwarder, type ForwardQuestion, type UpstreamAnswer } from "./forward";
import {
  BADVERS,
  CLASS_ANY,
  CLASS_IN,
  DnsFormatError,
  EDNS_UDP_SIZE,
  encodeMessage,
  FLAG,
  header,
  optRecord,
  type ParsedQuery,
  PLAIN_UDP_SIZE,
  parseQuery,
  RCODE,
  RCODE_NAMES,
  TYPE,
} from "./wire";
import { buildZones, type LookupResult, type NetworkZones, type ZoneInput } from "./zone";

export interface DnsStats {
  queries: { udp: number; tcp: number };
  /** Replies sent, by rcode name. */
  responses: Record<string, number>;
  /** Queries sent to forwarders (each attempt, UDP or TCP). */
  forwarded: number;
  /** Answers served from the forwarding cache. */
  cacheHits: number;
  /** Queries refused because their source is outside the network they asked. */
  refused: number;
  truncated: number;
  /** Messages dropped or answered FORMERR because they did not parse. */
  malformed: number;
  /** Upstream replies ignored: wrong source, ID or question, or unreadable. */
  forgedDropped: number;
  upstreamTimeouts: number;
  /** UDP replies the kernel would not take (send buffer full); counted by the server. */
  sendDropped: number;
  /** Entries in the forwarding cache. */
  cacheEntries: number;
}

type Log = (level: "info" | "warn", msg: string) => void;

export interface EngineOptions {
  log?: Log;
  forwarderPort?: number;
  upstreamTimeoutMs?: number;
  /** Clock (ms) for cache ages; tests move it. */
  now?: () => number;
}

/** Encoded replies kept per network; a flood of random names evicts the oldest. */
export const MAX_AUTH_CACHE = 20_000;
const MAX_MESSAGE = 65535;

interface AuthEntry {
  full: Buffer;
  /** The same reply with TC set and no records, for when `full` exceeds the UDP limit. */
  trunc: Buffer;
  rcode: number;
}

/** Parses dotted-quad text without allocating; -1 when it is not one. */
function v4Int(s: string): number {
  let v = 0;
  let part = -1;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (part < 0 || dots === 3) return -1;
      v = v * 256 + part;
      part = -1;
      dots++;
    } else if (c >= 48 && c <= 57) {
      part = part < 0 ? c - 48 : part * 10 + c - 48;
      if (part > 255) return -1;
    } else return -1;
  }
  if (part < 0 || dots !== 3) return -1;
  return v * 256 + part;
}

/** Whether two inputs build the same zones: the network's DNS fields, its endpoints and its
 * records. Compared in place, not as one string of every endpoint (an attach to a network of
 * thousands changed a string of all of them on every call); an endpoint more or fewer is
 * told by the count alone. */
function sameZoneInput(a: ZoneInput, b: ZoneInput): boolean {
  const x = a.network;
  const y = b.network;
  if (
    x.name !== y.name ||
    x.cidr !== y.cidr ||
    x.gateway !== y.gateway ||
    (x.cidr6 ?? "") !== (y.cidr6 ?? "") ||
    (x.gateway6 ?? "") !== (y.gateway6 ?? "") ||
    x.dnsZone !== y.dnsZone ||
    x.dnsForwarders.length !== y.dnsForwarders.length ||
    a.endpoints.length !== b.endpoints.length ||
    a.records.length !== b.records.length
  )
    return false;
  for (let i = 0; i < x.dnsForwarders.length; i++) if (x.dnsForwarders[i] !== y.dnsForwarders[i]) return false;
  for (let i = 0; i < a.endpoints.length; i++) {
    const e = a.endpoints[i] as ZoneInput["endpoints"][number];
    const f = b.endpoints[i] as ZoneInput["endpoints"][number];
    if (e.name !== f.name || e.ip !== f.ip || e.mac !== f.mac) return false;
  }
  return JSON.stringify(a.records) === JSON.stringify(b.records);
}

class NetState {
  readonly cache = new Map<string, AuthEntry>();
  readonly #net4: number;
  readonly #size4: number;
  readonly #sub6?: Subnet;
  readonly #memo6 = new Map<string, boolean>();

  constructor(
    readonly zones: NetworkZones,
    readonly forwarders: string[],
    /** Everything a cached reply depends on: when it changes, the cache goes. */
    readonly sig: string,
    sub4: Subnet,
    sub6: Subnet | undefined,
  ) {
    this.#net4 = Number(sub4.network);
    this.#size4 = 2 ** (32 - sub4.prefixLen);
    this.#sub6 = sub6;
  }

  /** Whether `src` (the query's source) is inside the subnet of the family it arrived on. */
  allows(src: string, v6: boolean): boolean {
    if (!v6) {
      const ip = v4Int(src.startsWith("::ffff:") ? src.slice(7) : src);
      return ip >= this.#net4 && ip < this.#net4 + this.#size4;
    }
    const sub = this.#sub6;
    if (!sub) return false;
    let ok = this.#memo6.get(src);
    if (ok === undefined) {
      try {
        ok = contains(sub, parseIp(src));
      } catch {
        ok = false;
      }
      if (this.#memo6.size >= 4096) this.#memo6.clear();
      this.#memo6.set(src, ok);
    }
    return ok;
  }
}

/** A network as the engine has it: its input, and its zones once a query needed them. */
class NetEntry {
  built?: NetState;

  constructor(
    readonly input: ZoneInput,
    /** The network's zones before this input (their serial goes on, their cache stays when
     * the content is the same), until this entry's are built. */
    public prev: NetState | undefined,
  ) {}

  /** The last zones built for the network: this entry's, or those before it. */
  last(): NetState | undefined {
    return this.built ?? this.prev;
  }
}

/** Canonical text of an address, the key listeners and the engine agree on. */
export const canonicalAddr = (a: string): string => formatIp(parseIp(a));

export class DnsEngine {
  readonly #log: Log;
  readonly #now: () => number;
  readonly #fwd: Forwarder;
  #states = new Map<string, NetEntry>();
  #byAddr = new Map<string, { entry: NetEntry; v6: boolean }>();
  readonly #c: ForwardCounters & { udp: number; tcp: number; refused: number; truncated: number; malformed: number } = {
    udp: 0,
    tcp: 0,
    refused: 0,
    truncated: 0,
    malformed: 0,
    forwarded: 0,
    forgedDropped: 0,
    upstreamTimeouts: 0,
    cacheHits: 0,
  };
  readonly #rcodes = new Array<number>(32).fill(0);
  #internalErrors = 0;

  constructor(o: EngineOptions = {}) {
    this.#log = o.log ?? (() => {});
    this.#now = o.now ?? Date.now;
    this.#fwd = new Forwarder({
      port: o.forwarderPort ?? 53,
      timeoutMs: o.upstreamTimeoutMs ?? 1500,
      now: this.#now,
      counters: this.#c,
      log: this.#log,
    });
  }

  /** Takes the networks' zones as they are now; a network's zones are built when a query
   * first needs them (a cluster node serves hundreds of networks and rebuilding them all on
   * every change anywhere, or at start, took seconds: its own workloads query a few). A
   * network whose input did not change keeps its zones; one whose content did not change
   * keeps its serial and its reply cache. Returns the local addresses to serve (canonical)
   * and the network of each. Throws (changing nothing) when two networks claim one address.
   * `unchanged`: networks the caller knows did not change since the last call (their input
   * is not even compared). */
  setZones(inputs: ZoneInput[], unchanged?: ReadonlySet<string>): Map<string, string> {
    const states = new Map<string, NetEntry>();
    const byAddr = new Map<string, { entry: NetEntry; v6: boolean }>();
    const addrs = new Map<string, string>();
    for (const input of inputs) {
      const n = input.network;
      const prev = this.#states.get(n.name);
      const same = prev !== undefined && (unchanged?.has(n.name) === true || sameZoneInput(prev.input, input));
      const entry = prev && same ? prev : new NetEntry(input, prev?.last());
      for (const [a, v6] of [
        [n.gateway, false],
        [n.gateway6, true],
      ] as const) {
        if (!a) continue;
        const addr = canonicalAddr(a);
        const other = addrs.get(addr);
        if (other)
          throw new StratumError("INVALID", `gateway ${addr} is network ${other}'s too`).wrap(
            `DNS zones of network ${n.name}`,
          );
        addrs.set(addr, n.name);
        byAddr.set(addr, { entry, v6 });
      }
      states.set(n.name, entry);
    }
    this.#states = states;
    this.#byAddr = byAddr;
    return addrs;
  }

  /** The zones of a network (built now if no query needed them yet), for status and tests. */
  zones(network: string): NetworkZones | undefined {
    const e = this.#states.get(network);
    return e ? this.#state(e).zones : undefined;
  }

  /** A network's zones and cache, built from its input the first time they are needed. */
  #state(e: NetEntry): NetState {
    if (e.built) return e.built;
    const n = e.input.network;
    const prev = e.prev;
    const zones = buildZones(e.input, prev?.zones, this.#now());
    const forwarders = n.dnsForwarders.map(canonicalAddr);
    const sig = [zones.hash, n.cidr, n.cidr6 ?? "", forwarders.join(",")].join("|");
    if (prev && prev.sig === sig) e.built = prev;
    else {
      e.built = new NetState(zones, forwarders, sig, parseSubnet(n.cidr), n.cidr6 ? parseSubnet(n.cidr6) : undefined);
      for (const w of zones.warnings) this.#log("warn", `dns network ${zones.network}: ${w}`);
    }
    e.prev = undefined;
    return e.built;
  }

  /** Answers `msg`, which arrived on local address `local` from `src`. A returned promise
   * never rejects. */
  handle(
    local: string,
    src: string,
    msg: Uint8Array,
    tcp: boolean,
  ): Uint8Array | undefined | Promise<Uint8Array | undefined> {
    try {
      return this.#handle(local, src, msg, tcp);
    } catch (e) {
      // A bug, not the client's fault: say so once in a while, and drop.
      if (this.#internalErrors++ % 1000 === 0) this.#log("warn", `dns: ${(e as Error)?.stack ?? e}`);
      return undefined;
    }
  }

  stats(): DnsStats {
    const c = this.#c;
    const responses: Record<string, number> = {};
    this.#rcodes.forEach((n, rc) => {
      if (n) responses[RCODE_NAMES[rc] ?? `RCODE${rc}`] = n;
    });
    return {
      queries: { udp: c.udp, tcp: c.tcp },
      responses,
      forwarded: c.forwarded,
      cacheHits: c.cacheHits,
      refused: c.refused,
      truncated: c.truncated,
      malformed: c.malformed,
      forgedDropped: c.forgedDropped,
      upstreamTimeouts: c.upstreamTimeouts,
      sendDropped: 0,
      cacheEntries: this.#fwd.size,
    };
  }

  close(): void {
    this.#fwd.close();
  }

  #handle(
    local: string,
    src: string,
    msg: Uint8Array,
    tcp: boolean,
  ): Uint8Array | undefined | Promise<Uint8Array | undefined> {
    if (tcp) this.#c.tcp++;
    else this.#c.udp++;
    const l = this.#byAddr.get(local);
    if (!l) return undefined;
    if (msg.length < 12) {
      this.#c.malformed++;
      return undefined;
    }
    const flags = ((msg[2] as number) << 8) | (msg[3] as number);
    // Never answer an answer: two servers would bounce it forever.
    if (flags & FLAG.QR) return undefined;
    const qd = ((msg[4] as number) << 8) | (msg[5] as number);
    let q: ParsedQuery | undefined;
    if (qd === 1)
      try {
        q = parseQuery(msg);
      } catch (e) {
        if (!(e instanceof DnsFormatError)) throw e;
      }
    const st = this.#state(l.entry);
    if (!st.allows(src, l.v6)) {
      this.#c.refused++;
      // Garbage from outside is not worth a reply.
      return q ? this.#reply(q, msg, RCODE.REFUSED, false) : undefined;
    }
    if ((flags >> 11) & 0xf) return q ? this.#reply(q, msg, RCODE.NOTIMP, false) : this.#bare(msg, RCODE.NOTIMP);
    if (!q) {
      this.#c.malformed++;
      return this.#bare(msg, RCODE.FORMERR);
    }
    const ra = st.forwarders.length > 0;
    if (q.edns && q.edns.version !== 0) return this.#reply(q, msg, BADVERS, ra);
    if ((q.qclass !== CLASS_IN && q.qclass !== CLASS_ANY) || q.qtype === TYPE.AXFR || q.qtype === TYPE.IXFR)
      return this.#reply(q, msg, RCODE.REFUSED, ra);
    if (q.qtype === TYPE.OPT) return this.#reply(q, msg, RCODE.FORMERR, ra);

    const key = `${q.qname}|${q.qtype}|${q.qclass}|${q.edns ? (q.edns.do ? 2 : 1) : 0}`;
    let e = st.cache.get(key);
    if (!e) {
      const r = st.zones.lookup(q.qname, q.qtype);
      if (r) {
        e = this.#authEntry(q, msg, r, ra);
        st.cache.set(key, e);
        if (st.cache.size > MAX_AUTH_CACHE) st.cache.delete(st.cache.keys().next().value as string);
      }
    }
    if (e) return this.#serve(e, q, msg, tcp);
    return this.#forward(st, q, msg, tcp);
  }

  #limit(q: ParsedQuery, tcp: boolean): number {
    if (tcp) return MAX_MESSAGE;
    return q.edns ? Math.min(Math.max(PLAIN_UDP_SIZE, q.edns.udpSize), EDNS_UDP_SIZE) : PLAIN_UDP_SIZE;
  }

  #authEntry(q: ParsedQuery, msg: Uint8Array, r: LookupResult, ra: boolean): AuthEntry {
    const flags = FLAG.QR | FLAG.AA | (ra ? FLAG.RA : 0) | r.rcode;
    const question = msg.subarray(12, q.questionEnd);
    const opt = q.edns ? [optRecord(q.edns.do)] : [];
    // dns-packet does not compress, so its sections can be spliced after our own question.
    const body = encodeMessage({ answers: r.answers, authorities: r.authorities, additionals: r.additionals }).subarray(
      12,
    );
    const ar = r.additionals.length + opt.length;
    let full = Buffer.concat([header(0, flags, 1, r.answers.length, r.authorities.length, ar), question, body, ...opt]);
    const trunc = Buffer.concat([header(0, flags | FLAG.TC, 1, 0, 0, opt.length), question, ...opt]);
    if (full.length > MAX_MESSAGE) {
      this.#log("warn", `dns: the answer to ${q.qname} type ${q.qtype} exceeds 64 KiB; answering SERVFAIL`);
      full = Buffer.concat([
        header(0, (flags & ~0xf & ~FLAG.AA) | RCODE.SERVFAIL, 1, 0, 0, opt.length),
        question,
        ...opt,
      ]);
      return { full, trunc: full, rcode: RCODE.SERVFAIL };
    }
    return { full, trunc, rcode: r.rcode };
  }

  /** The cached reply with this query's ID, RD and CD bits, and question case. */
  #serve(e: AuthEntry, q: ParsedQuery, msg: Uint8Array, tcp: boolean): Uint8Array {
    let src = e.full;
    if (src.length > this.#limit(q, tcp)) {
      src = e.trunc;
      this.#c.truncated++;
    }
    // A plain Uint8Array and a byte loop for the name: cheaper than Buffer.allocUnsafe and a
    // subarray view for replies this small.
    const out = new Uint8Array(src.length);
    out.set(src);
    out[0] = msg[0] as number;
    out[1] = msg[1] as number;
    out[2] = ((out[2] as number) & ~0x01) | ((msg[2] as number) & 0x01);
    out[3] = ((out[3] as number) & ~0x10) | ((msg[3] as number) & 0x10);
    for (let i = 12; i < q.qnameEnd; i++) out[i] = msg[i] as number;
    this.#rcodes[e.rcode]!++;
    return out;
  }

  /** A reply with the question (and our OPT when the query had one) and no records. */
  #reply(q: ParsedQuery, msg: Uint8Array, rcode: number, ra: boolean): Buffer {
    const flags = FLAG.QR | (q.flags & (0x7800 | FLAG.RD | FLAG.CD)) | (ra ? FLAG.RA : 0) | (rcode & 0xf);
    const opt = q.edns ? [optRecord(q.edns.do, rcode >> 4)] : [];
    this.#rcodes[rcode]!++;
    return Buffer.concat([header(q.id, flags, 1, 0, 0, opt.length), msg.subarray(12, q.questionEnd), ...opt]);
  }

  /** A header-only reply, for a query whose question cannot be read or echoed. */
  #bare(msg: Uint8Array, rcode: number): Buffer {
    const flags = ((msg[2] as number) << 8) | (msg[3] as number);
    this.#rcodes[rcode]!++;
    return header(
      ((msg[0] as number) << 8) | (msg[1] as number),
      FLAG.QR | (flags & (0x7800 | FLAG.RD)) | rcode,
      0,
      0,
      0,
      0,
    );
  }

  #forward(st: NetState, q: ParsedQuery, msg: Uint8Array, tcp: boolean): Buffer | Promise<Uint8Array | undefined> {
    // Other networks' zones are outside names here too: a network sees only its own.
    if (!st.forwarders.length) return this.#reply(q, msg, RCODE.REFUSED, false);
    const fq: ForwardQuestion = { qname: q.qname, qtype: q.qtype, qclass: q.qclass, dnssecOk: q.edns?.do ?? false };
    const key = Forwarder.key(st.forwarders, fq);
    const hit = this.#fwd.cached(key);
    if (hit) return this.#forwarded(hit, q, msg, tcp);
    // The receive buffer is not ours after this call returns: keep what the reply needs.
    const head = Buffer.from(msg.subarray(0, q.questionEnd));
    return this.#fwd
      .resolve(key, st.forwarders, fq)
      .then((a) => (a ? this.#forwarded(a, q, head, tcp) : this.#reply(q, head, RCODE.SERVFAIL, true)))
      .catch((e) => {
        if (this.#internalErrors++ % 1000 === 0) this.#log("warn", `dns: ${(e as Error)?.stack ?? e}`);
        return undefined;
      });
  }

  /** An upstream answer as a reply to this client: its ID, flags and question case, TTLs
   * aged by the time the answer spent in the cache, our OPT (or none) instead of theirs. */
  #forwarded(a: UpstreamAnswer, q: ParsedQuery, msg: Uint8Array, tcp: boolean): Buffer {
    const dnssecOk = q.edns?.do ?? false;
    const flags =
      FLAG.QR |
      (q.flags & (FLAG.RD | FLAG.CD)) |
      FLAG.RA |
      (a.ad && (dnssecOk || q.flags & FLAG.AD) ? FLAG.AD : 0) |
      a.rcode;
    const qlen = q.questionEnd - 12;
    const opt = q.edns ? optRecord(dnssecOk) : undefined;
    const total = 12 + qlen + a.body.length + (opt ? opt.length : 0);
    if (total > this.#limit(q, tcp)) {
      this.#c.truncated++;
      this.#rcodes[a.rcode]!++;
      return Buffer.concat([
        header(q.id, flags | FLAG.TC, 1, 0, 0, opt ? 1 : 0),
        msg.subarray(12, q.questionEnd),
        ...(opt ? [opt] : []),
      ]);
    }
    const out = Buffer.allocUnsafe(total);
    header(q.id, flags, 1, a.an, a.ns, a.ar + (opt ? 1 : 0)).copy(out, 0);
    out.set(msg.subarray(12, q.questionEnd), 12);
    a.body.copy(out, 12 + qlen);
    const age = Math.max(0, Math.floor((this.#now() - a.storedAt) / 1000));
    for (let i = 0; i < a.ttlOffs.length; i++)
      out.writeUInt32BE(Math.max(0, (a.ttls[i] as number) - age), 12 + qlen + (a.ttlOffs[i] as number));
    if (opt) opt.copy(out, 12 + qlen + a.body.length);
    this.#rcodes[a.rcode]!++;
    return out;
  }
}
