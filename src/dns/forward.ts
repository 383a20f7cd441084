/** Forwarding of the names a network does not own to its forwarders, as a stub resolver
 * that does not trust the path: a random ID and a fresh source port per upstream query, a
 * reply accepted only from the address and port it was sent to with that ID and question
 * (anything else is counted and dropped, never cached), identical outstanding queries
 * coalesced into one, TC answered by a retry over TCP, and answers cached by their TTL
 * (negative ones by the SOA's, SERVFAIL never) in a bounded cache. */
import { randomBytes } from "node:crypto";
import { parseIp } from "../model/ip";
import {
  CLASS_IN,
  DnsFormatError,
  EDNS_UDP_SIZE,
  FLAG,
  header,
  nameToWire,
  RCODE,
  type Rr,
  TYPE,
  type WalkedMessage,
  walkMessage,
} from "./wire";

/** An upstream answer, ready to be copied into a reply to any client that asked the same:
 * the records after the question (compression pointers into the question stay valid,
 * because every client's question has the same length) without the upstream's OPT. */
export interface UpstreamAnswer {
  rcode: number;
  ad: boolean;
  body: Buffer;
  an: number;
  ns: number;
  ar: number;
  /** TTL field offsets in `body`, and the TTLs as received, to age them when served later. */
  ttlOffs: number[];
  ttls: number[];
  storedAt: number;
}

export interface ForwardCounters {
  forwarded: number;
  forgedDropped: number;
  upstreamTimeouts: number;
  cacheHits: number;
}

export interface ForwardQuestion {
  qname: string;
  qtype: number;
  qclass: number;
  dnssecOk: boolean;
}

export interface ForwarderOptions {
  port: number;
  timeoutMs: number;
  now: () => number;
  counters: ForwardCounters;
  log: (level: "info" | "warn", msg: string) => void;
}

export const MAX_CACHE_ENTRIES = 10_000;
/** RFC 2308 §5: negative answers are not worth remembering longer than this. */
export const MAX_NEGATIVE_TTL = 3600;
export const MAX_POSITIVE_TTL = 86400;
/** Upstream queries in flight; beyond that a client gets SERVFAIL instead of another socket. */
export const MAX_OUTSTANDING = 1024;

const sameAddr = (a: string, b: string): boolean => {
  if (a === b) return true;
  try {
    const x = parseIp(a);
    const y = parseIp(b);
    return x.family === y.family && x.value === y.value;
  } catch {
    return false;
  }
};

function queryBytes(id: number, q: ForwardQuestion): Buffer {
  const name = nameToWire(q.qname);
  const tail = Buffer.alloc(4 + 11);
  tail.writeUInt16BE(q.qtype, 0);
  tail.writeUInt16BE(q.qclass, 2);
  // OPT: root, type 41, our UDP size, DO as the client asked.
  tail.writeUInt16BE(TYPE.OPT, 5);
  tail.writeUInt16BE(EDNS_UDP_SIZE, 7);
  tail.writeUInt16BE(q.dnssecOk ? 0x8000 : 0, 11);
  return Buffer.concat([header(id, FLAG.RD, 1, 0, 0, 1), name, tail]);
}

const randomId = (): number => randomBytes(2).readUInt16BE(0);

export class Forwarder {
  readonly #o: ForwarderOptions;
  readonly #cache = new Map<string, { a: UpstreamAnswer; expires: number }>();
  readonly #pending = new Map<string, Promise<UpstreamAnswer | undefined>>();
  readonly #closers = new Set<() => void>();
  #closed = false;

  constructor(o: ForwarderOptions) {
    this.#o = o;
  }

  get size(): number {
    return this.#cache.size;
  }

  static key(servers: string[], q: ForwardQuestion): string {
    return `${servers.join(",")}|${q.qname}|${q.qtype}|${q.qclass}|${q.dnssecOk ? 1 : 0}`;
  }

  /** A live cached answer; touching it keeps it from eviction (LRU by Map order). */
  cached(key: string): UpstreamAnswer | undefined {
    const e = this.#cache.get(key);
    if (!e) return undefined;
    this.#cache.delete(key);
    if (e.expires <= this.#o.now()) return undefined;
    this.#cache.set(key, e);
    this.#o.counters.cacheHits++;
    return e.a;
  }

  /** Asks the forwarders in order; undefined when none gave a usable answer (SERVFAIL). */
  resolve(key: string, servers: string[], q: ForwardQuestion): Promise<UpstreamAnswer | undefined> {
    const p = this.#pending.get(key);
    if (p) return p;
    if (this.#closed || this.#pending.size >= MAX_OUTSTANDING) return Promise.resolve(undefined);
    const run = this.#run(key, servers, q)
      .catch((e) => {
        this.#o.log("warn", `dns forward ${q.qname}: ${(e as Error)?.message ?? e}`);
        return undefined;
      })
      .finally(() => this.#pending.delete(key));
    this.#pending.set(key, run);
    return run;
  }

  clear(): void {
    this.#cache.clear();
  }

  close(): void {
    this.#closed = true;
    for (const c of [...this.#closers]) c();
    this.#cache.clear();
  }

  async #run(key: string, servers: string[], q: ForwardQuestion): Promise<UpstreamAnswer | undefined> {
    for (const server of servers) {
      if (this.#closed) return undefined;
      const got = await this.#udp(server, q);
      if (got === "timeout") {
        this.#o.counters.upstreamTimeouts++;
        continue;
      }
      if (got === undefined) continue;
      let w = got.w;
      let msg = got.msg;
      if (w.flags & FLAG.TC) {
        const t = await this.#tcp(server, q);
        if (!t) continue;
        ({ w, msg } = t);
      }
      const a = this.#answer(msg, w);
      if (!a) continue;
      const ttl = cacheTtl(msg, w, a);
      if (ttl > 0) {
        this.#cache.set(key, { a, expires: a.storedAt + ttl * 1000 });
        while (this.#cache.size > MAX_CACHE_ENTRIES) this.#cache.delete(this.#cache.keys().next().value as string);
      }
      return a;
    }
    return undefined;
  }

  /** Checks a reply against what we asked; undefined (and counted) when it is not ours. */
  #check(buf: Uint8Array, id: number, q: ForwardQuestion): WalkedMessage | undefined {
    let w: WalkedMessage;
    try {
      w = walkMessage(buf);
    } catch (e) {
      if (!(e instanceof DnsFormatError)) throw e;
      return undefined;
    }
    if (!(w.flags & FLAG.QR) || w.id !== id || w.qname !== q.qname || w.qtype !== q.qtype || w.qclass !== q.qclass)
      return undefined;
    return w;
  }

  #udp(server: string, q: ForwardQuestion): Promise<{ msg: Buffer; w: WalkedMessage } | "timeout" | undefined> {
    const id = randomId();
    const query = queryBytes(id, q);
    const { port, timeoutMs } = this.#o;
    return new Promise((resolve) => {
      let done = false;
      let sock: { close(): void } | undefined;
      const finish = (v: { msg: Buffer; w: WalkedMessage } | "timeout" | undefined) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.#closers.delete(abort);
        sock?.close();
        resolve(v);
      };
      const abort = () => finish(undefined);
      this.#closers.add(abort);
      const timer = setTimeout(() => finish("timeout"), timeoutMs);
      // A new socket per query: the kernel picks a fresh random source port.
      Bun.udpSocket({
        hostname: server.includes(":") ? "::" : "0.0.0.0",
        port: 0,
        socket: {
          data: (_s, buf, fromPort, from) => {
            if (done) return;
            const w = fromPort === port && sameAddr(from, server) ? this.#check(buf, id, q) : undefined;
            if (!w) {
              this.#o.counters.forgedDropped++;
              return;
            }
            finish({ msg: Buffer.from(buf), w });
          },
          // The forwarder refused (port unreachable): the timeout moves on to the next one.
          error: () => {},
        },
      }).then(
        (s) => {
          if (done) {
            s.close();
            return;
          }
          sock = s;
          this.#o.counters.forwarded++;
          if (!s.send(query, port, server)) finish(undefined);
        },
        (e) => {
          this.#o.log("warn", `dns forward to ${server}: ${(e as Error)?.message ?? e}`);
          finish(undefined);
        },
      );
    });
  }

  #tcp(server: string, q: ForwardQuestion): Promise<{ msg: Buffer; w: WalkedMessage } | undefined> {
    const id = randomId();
    const query = queryBytes(id, q);
    const frame = Buffer.concat([Buffer.from([query.length >> 8, query.length & 0xff]), query]);
    const { port, timeoutMs } = this.#o;
    return new Promise((resolve) => {
      let done = false;
      let sock: { end(): void } | undefined;
      let acc = Buffer.alloc(0);
      const finish = (v: { msg: Buffer; w: WalkedMessage } | undefined) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.#closers.delete(abort);
        sock?.end();
        resolve(v);
      };
      const abort = () => finish(undefined);
      this.#closers.add(abort);
      const timer = setTimeout(() => {
        this.#o.counters.upstreamTimeouts++;
        finish(undefined);
      }, timeoutMs * 2);
      Bun.connect({
        hostname: server,
        port,
        socket: {
          open: (s) => {
            sock = s;
            if (done) s.end();
            else {
              this.#o.counters.forwarded++;
              s.write(frame);
            }
          },
          data: (_s, d) => {
            acc = Buffer.concat([acc, d]);
            if (acc.length < 2 || acc.length < 2 + acc.readUInt16BE(0)) return;
            const msg = Buffer.from(acc.subarray(2, 2 + acc.readUInt16BE(0)));
            const w = this.#check(msg, id, q);
            if (!w) this.#o.counters.forgedDropped++;
            finish(w ? { msg, w } : undefined);
          },
          close: () => finish(undefined),
          error: () => finish(undefined),
          connectError: () => finish(undefined),
        },
      }).catch(() => finish(undefined));
    });
  }

  /** The reusable part of a good reply; undefined for answers worth asking the next forwarder. */
  #answer(msg: Buffer, w: WalkedMessage): UpstreamAnswer | undefined {
    const rcode = w.flags & 0xf;
    if (rcode !== RCODE.NOERROR && rcode !== RCODE.NXDOMAIN) return undefined;
    // An extended rcode (BADCOOKIE, BADVERS…) is between that server and us.
    if (w.opt && w.opt.ttl >>> 24 !== 0) return undefined;
    // Our OPT replaces theirs; cutting it out is only safe at the end, where nothing can
    // point into it.
    if (w.opt && w.opt.end !== w.end) return undefined;
    const end = w.opt ? w.opt.start : w.end;
    const rrs = w.rrs.filter((r) => r !== w.opt);
    const count = (s: number) => rrs.filter((r) => r.section === s).length;
    return {
      rcode,
      ad: (w.flags & FLAG.AD) !== 0,
      body: Buffer.from(msg.subarray(w.questionEnd, end)),
      an: count(1),
      ns: count(2),
      ar: count(3),
      ttlOffs: rrs.map((r) => r.ttlOff - w.questionEnd),
      // RFC 2181 §8: a TTL with the top bit set is zero.
      ttls: rrs.map((r) => (r.ttl > 0x7fffffff ? 0 : r.ttl)),
      storedAt: this.#o.now(),
    };
  }
}

/** Seconds to keep an answer: the smallest answer TTL; for a negative answer the SOA's
 * (the lesser of its TTL and MINIMUM); 0 (do not keep) when there is nothing to go by. */
function cacheTtl(msg: Buffer, w: WalkedMessage, a: UpstreamAnswer): number {
  const rrs = w.rrs.filter((r) => r !== w.opt);
  if (a.rcode === RCODE.NOERROR && a.an > 0) {
    let min = MAX_POSITIVE_TTL;
    rrs.forEach((r, i) => {
      if (r.section === 1) min = Math.min(min, a.ttls[i] as number);
    });
    return min;
  }
  const soa = rrs.find((r: Rr) => r.section === 2 && r.type === TYPE.SOA && r.klass === CLASS_IN);
  if (!soa || soa.rdlen < 22) return 0;
  const minimum = msg.readUInt32BE(soa.rdata + soa.rdlen - 4);
  return Math.min(soa.ttl > 0x7fffffff ? 0 : soa.ttl, minimum, MAX_NEGATIVE_TTL);
}
