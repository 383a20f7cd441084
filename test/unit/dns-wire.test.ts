/** Properties of the DNS wire layer: dns-packet round-trips what we generate; the hand
 * pre-parser agrees with it on valid queries; random and mutated bytes (pointer loops,
 * lengths past the end, oversized names, cut headers) make the parsers throw only
 * DnsFormatError and leave the engine's handle path answering or dropping, never failing. */
import { describe, expect, test } from "bun:test";
import * as dp from "dns-packet";
import fc from "fast-check";
import { DnsEngine } from "../../src/dns/engine";
import {
  DnsFormatError,
  decodeMessage,
  encodeMessage,
  nameToWire,
  parseQuery,
  readName,
  walkMessage,
} from "../../src/dns/wire";
import type { ZoneInput } from "../../src/dns/zone";

const RUNS = { numRuns: 400 };

const label = fc.stringMatching(/^[a-zA-Z0-9_-]{1,20}$/);
const name = fc.array(label, { minLength: 1, maxLength: 5 }).map((l) => l.join("."));
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const ttl = fc.integer({ min: 0, max: 0x7fffffff });

const rr: fc.Arbitrary<dp.Answer> = fc.oneof(
  fc.record({ type: fc.constant("A" as const), name, ttl, data: fc.ipV4() }),
  fc.record({
    type: fc.constant("AAAA" as const),
    name,
    ttl,
    data: fc.array(u16, { minLength: 8, maxLength: 8 }).map((g) => g.map((x) => x.toString(16)).join(":")),
  }),
  fc.record({ type: fc.constantFrom("CNAME" as const, "NS" as const, "PTR" as const), name, ttl, data: name }),
  fc.record({
    type: fc.constant("TXT" as const),
    name,
    ttl,
    data: fc.array(
      fc.uint8Array({ maxLength: 255 }).map((b) => Buffer.from(b)),
      { minLength: 1, maxLength: 4 },
    ),
  }),
  fc.record({
    type: fc.constant("SRV" as const),
    name,
    ttl,
    data: fc.record({ priority: u16, weight: u16, port: u16, target: name }),
  }),
  fc.record({ type: fc.constant("MX" as const), name, ttl, data: fc.record({ preference: u16, exchange: name }) }),
  fc.record({
    type: fc.constant("SOA" as const),
    name,
    ttl,
    data: fc.record({ mname: name, rname: name, serial: u32, refresh: u32, retry: u32, expire: u32, minimum: u32 }),
  }),
) as fc.Arbitrary<dp.Answer>;

const TYPE_NUM: Record<string, number> = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  CAA: 257,
};
const qtype = fc.constantFrom<dp.RecordType>("A", "AAAA", "CNAME", "TXT", "SRV", "MX", "PTR", "NS", "SOA", "CAA");

const packet: fc.Arbitrary<dp.Packet> = fc.record({
  id: u16,
  type: fc.constantFrom("query" as const, "response" as const),
  flags: fc.integer({ min: 0, max: 0x7fff }),
  questions: fc.array(fc.record({ name, type: qtype, class: fc.constant("IN" as const) }), { maxLength: 2 }),
  answers: fc.array(rr, { maxLength: 4 }),
  authorities: fc.array(rr, { maxLength: 2 }),
  additionals: fc.array(rr, { maxLength: 2 }),
});

const ednsQuery = fc.record({
  id: u16,
  qname: name,
  qtype,
  rd: fc.boolean(),
  edns: fc.option(fc.record({ size: u16, do: fc.boolean() }), { nil: undefined }),
});

function queryBytes(q: {
  id: number;
  qname: string;
  qtype: dp.RecordType;
  rd: boolean;
  edns?: { size: number; do: boolean };
}) {
  return dp.encode({
    id: q.id,
    type: "query",
    flags: q.rd ? dp.RECURSION_DESIRED : 0,
    questions: [{ name: q.qname, type: q.qtype, class: "IN" }],
    additionals: q.edns
      ? [{ type: "OPT", name: ".", udpPayloadSize: q.edns.size, flags: q.edns.do ? dp.DNSSEC_OK : 0 } as dp.Answer]
      : [],
  });
}

/** Calls `f`; anything thrown must be a DnsFormatError. */
function onlyFormatErrors(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof DnsFormatError)) throw new Error(`threw ${(e as Error)?.name}: ${(e as Error)?.message}`);
  }
}

const input: ZoneInput = {
  network: {
    name: "app-net",
    cidr: "10.20.0.0/24",
    gateway: "10.20.0.1",
    cidr6: "fd00:20::/64",
    gateway6: "fd00:20::1",
    dnsZone: "app-net.internal",
    dnsForwarders: [],
  },
  endpoints: [{ name: "web", ip: "10.20.0.5", mac: "02:00:01:00:00:04" }],
  records: [
    { name: "_http._tcp", type: "SRV", value: "10 5 80 web.app-net.internal", ttl: 300 },
    { name: "www", type: "CNAME", value: "web.app-net.internal", ttl: 300 },
    { name: "t", type: "TXT", value: "x".repeat(700), ttl: 300 },
  ],
};

const logs: string[] = [];
const engine = new DnsEngine({ log: (_l, m) => logs.push(m) });
engine.setZones([input]);

/** The handle path: a reply that decodes and carries the query's ID, or nothing; never a
 * throw, never the engine's own internal-error log. */
function handleIsTotal(bytes: Uint8Array, tcp = false): void {
  const before = logs.length;
  const r = engine.handle("10.20.0.1", "10.20.0.9", bytes, tcp);
  expect(r instanceof Promise).toBe(false); // no forwarders: nothing is asynchronous
  expect(logs.slice(before).filter((l) => l.startsWith("dns: "))).toEqual([]);
  if (r === undefined) return;
  const d = decodeMessage(r as Uint8Array);
  expect(d.type).toBe("response");
  expect(d.id).toBe(((bytes[0] as number) << 8) | (bytes[1] as number));
  if (!tcp) expect((r as Uint8Array).length).toBeLessThanOrEqual(1232);
}

const seeds: Buffer[] = [
  queryBytes({ id: 1, qname: "WEB.app-net.internal", qtype: "A", rd: true, edns: { size: 1232, do: true } }),
  queryBytes({ id: 2, qname: "_http._tcp.app-net.internal", qtype: "SRV", rd: true }),
  queryBytes({ id: 3, qname: "www.app-net.internal", qtype: "AAAA", rd: false }),
  queryBytes({ id: 4, qname: "5.0.20.10.in-addr.arpa", qtype: "PTR", rd: true, edns: { size: 512, do: false } }),
  queryBytes({ id: 5, qname: "t.app-net.internal", qtype: "TXT", rd: true }),
];
seeds.push(engine.handle("10.20.0.1", "10.20.0.9", seeds[1] as Buffer, false) as Buffer);

describe("dns wire: round trips and agreement", () => {
  test("decode(encode(m)) re-encodes to the same bytes and keeps the fields", () => {
    fc.assert(
      fc.property(packet, (p) => {
        const bytes = encodeMessage(p);
        const d = decodeMessage(bytes);
        expect(encodeMessage(d)).toEqual(bytes);
        expect(d.id).toBe(p.id as number);
        expect(d.questions?.map((q) => q.name)).toEqual(p.questions?.map((q) => q.name) as string[]);
        expect(d.answers?.map((a) => [a.name, a.type])).toEqual(p.answers?.map((a) => [a.name, a.type]) as never);
      }),
      RUNS,
    );
  });

  test("the hand pre-parser reads what dns-packet reads (name lower-cased, type, class, EDNS)", () => {
    fc.assert(
      fc.property(ednsQuery, (q) => {
        const bytes = queryBytes(q);
        const p = parseQuery(bytes);
        const d = decodeMessage(bytes);
        expect(p.id).toBe(d.id as number);
        expect(p.qname).toBe(String(d.questions?.[0]?.name).toLowerCase());
        expect(p.qtype).toBe(TYPE_NUM[q.qtype] as number);
        expect(p.qclass).toBe(1);
        expect(Buffer.from(bytes.subarray(12, p.qnameEnd)).equals(nameToWire(q.qname))).toBe(true);
        expect(nameToWire(p.qname)).toEqual(nameToWire(q.qname.toLowerCase()));
        expect(p.questionEnd).toBe(p.qnameEnd + 4);
        const opt = d.additionals?.find((a) => a.type === "OPT") as dp.OptAnswer | undefined;
        expect(p.edns?.udpSize).toBe(opt?.udpPayloadSize);
        expect(p.edns?.do).toBe(opt ? opt.flag_do : undefined);
        expect(p.flags & 0x0100).toBe(q.rd ? 0x0100 : 0);
      }),
      RUNS,
    );
  });

  test("walkMessage finds the records dns-packet finds", () => {
    fc.assert(
      fc.property(
        packet.filter((p) => p.questions?.length === 1),
        (p) => {
          const bytes = encodeMessage(p);
          const w = walkMessage(bytes);
          const d = decodeMessage(bytes);
          const all = [...(d.answers ?? []), ...(d.authorities ?? []), ...(d.additionals ?? [])];
          expect(w.rrs.length).toBe(all.length);
          expect(w.rrs.map((r) => r.ttl)).toEqual(all.map((a) => (a as { ttl: number }).ttl));
          expect(w.end).toBe(bytes.length);
        },
      ),
      RUNS,
    );
  });

  test("compressed names: readName follows backward pointers like dns-packet", () => {
    // question "web.app-net.internal", then "api" + pointer to "app-net.internal" (offset 16).
    const q = queryBytes({ id: 9, qname: "web.app-net.internal", qtype: "A", rd: true });
    const rrName = Buffer.from([3, 0x61, 0x70, 0x69, 0xc0, 16]);
    const msg = Buffer.concat([q, rrName, Buffer.from([0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1])]);
    msg.writeUInt16BE(1, 6);
    expect(readName(msg, q.length).name).toBe("api.app-net.internal");
    expect(readName(msg, q.length).end).toBe(q.length + rrName.length);
    expect(decodeMessage(msg).answers?.[0]?.name).toBe("api.app-net.internal");
    expect(walkMessage(msg).rrs[0]?.rdlen).toBe(4);
  });
});

describe("dns wire: hostile bytes", () => {
  const header = (qd: number, an: number) => Buffer.from([0xab, 0xcd, 1, 0, 0, qd, 0, an, 0, 0, 0, 0]);
  const q = (...parts: number[][]) => Buffer.from(parts.flat());

  const cases: Record<string, Buffer> = {
    "pointer to itself": Buffer.concat([header(1, 0), q([0xc0, 12, 0, 1, 0, 1])]),
    "answer pointer to itself": Buffer.concat([header(1, 1), q([1, 97, 0, 0, 1, 0, 1]), q([0xc0, 19, 0, 1, 0, 1])]),
    "pointers to each other": Buffer.concat([
      header(1, 2),
      q([1, 97, 0, 0, 1, 0, 1]),
      q([0xc0, 31, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0]),
      q([0xc0, 19, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0]),
    ]),
    "label past the end": Buffer.concat([header(1, 0), q([50, 97, 98, 99])]),
    "rdlength past the end": Buffer.concat([
      header(1, 1),
      q([0, 0, 1, 0, 1]),
      q([0, 0, 1, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 1]),
    ]),
    "oversized name": Buffer.concat([header(1, 0), Buffer.from(Array(130).fill([1, 97]).flat()), q([0, 0, 1, 0, 1])]),
    "oversized name through pointers": (() => {
      // 120 one-byte labels, then a name of 70 labels pointing back into them.
      const first = Array(120).fill([1, 97]).flat();
      const m = Buffer.concat([header(1, 1), q(first, [0, 0, 1, 0, 1]), q(Array(70).fill([1, 98]).flat(), [0xc0, 12])]);
      return Buffer.concat([m, q([0, 1, 0, 1, 0, 0, 0, 1, 0, 0])]);
    })(),
    "reserved label type": Buffer.concat([header(1, 0), q([0x40, 1, 97, 0, 0, 1, 0, 1])]),
    "count larger than the records": Buffer.concat([header(1, 200), q([0, 0, 1, 0, 1])]),
    "two OPTs": Buffer.concat([
      Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 2]),
      q([0, 0, 1, 0, 1]),
      q([0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0]),
      q([0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0]),
    ]),
    "OPT option past its record": Buffer.concat([
      Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1]),
      q([0, 0, 1, 0, 1]),
      q([0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 4, 0, 10, 0, 8]),
    ]),
  };

  for (const [what, bytes] of Object.entries(cases))
    test(`${what}: DnsFormatError from every parser; the engine answers FORMERR or drops`, () => {
      expect(() => decodeMessage(bytes)).toThrow(DnsFormatError);
      expect(() => walkMessage(bytes)).toThrow(DnsFormatError);
      if (bytes.readUInt16BE(4) === 1) expect(() => parseQuery(bytes)).toThrow(DnsFormatError);
      handleIsTotal(bytes);
      const r = engine.handle("10.20.0.1", "10.20.0.9", bytes, false) as Buffer | undefined;
      if (r) expect((decodeMessage(r) as unknown as { rcode: string }).rcode).toBe("FORMERR");
    });

  test("headers shorter than 12 bytes are dropped", () => {
    for (let n = 0; n < 12; n++) {
      const b = (seeds[0] as Buffer).subarray(0, n);
      expect(() => decodeMessage(b)).toThrow(DnsFormatError);
      expect(() => parseQuery(b)).toThrow(DnsFormatError);
      expect(engine.handle("10.20.0.1", "10.20.0.9", b, false)).toBeUndefined();
    }
  });

  test("random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (b, tcp) => {
        onlyFormatErrors(() => decodeMessage(b));
        onlyFormatErrors(() => parseQuery(b));
        onlyFormatErrors(() => walkMessage(b));
        handleIsTotal(b, tcp);
      }),
      { numRuns: 2000 },
    );
  });

  test("random bytes behind a plausible query header", () => {
    fc.assert(
      fc.property(u16, fc.integer({ min: 0, max: 3 }), fc.uint8Array({ maxLength: 300 }), (id, counts, body) => {
        const b = Buffer.concat([
          Buffer.from([id >> 8, id & 0xff, 1, 0, 0, 1, 0, counts & 1, 0, 0, 0, counts >> 1]),
          body,
        ]);
        onlyFormatErrors(() => decodeMessage(b));
        onlyFormatErrors(() => parseQuery(b));
        onlyFormatErrors(() => walkMessage(b));
        handleIsTotal(b);
      }),
      { numRuns: 2000 },
    );
  });

  test("mutated valid messages: overwritten bytes, cuts, junk appended", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...seeds),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
        fc.option(fc.nat(), { nil: undefined }),
        fc.uint8Array({ maxLength: 8 }),
        fc.boolean(),
        (seed, pokes, cut, tail, tcp) => {
          let b = Buffer.from(seed);
          for (const [at, v] of pokes) b[at % b.length] = v;
          if (cut !== undefined) b = b.subarray(0, cut % (b.length + 1));
          b = Buffer.concat([b, tail]);
          onlyFormatErrors(() => decodeMessage(b));
          onlyFormatErrors(() => parseQuery(b));
          onlyFormatErrors(() => walkMessage(b));
          handleIsTotal(b, tcp);
        },
      ),
      { numRuns: 3000 },
    );
  });

  test("valid queries with any case: the reply's question is the query's, byte for byte", () => {
    fc.assert(
      fc.property(ednsQuery, (q) => {
        const bytes = queryBytes({ ...q, qname: `${q.qname}.app-net.internal` });
        const r = Buffer.from(engine.handle("10.20.0.1", "10.20.0.9", bytes, false) as Uint8Array);
        const p = parseQuery(bytes);
        expect(Buffer.from(r.subarray(12, p.questionEnd))).toEqual(Buffer.from(bytes.subarray(12, p.questionEnd)));
        expect(r.readUInt16BE(0)).toBe(q.id);
        expect(r[2]! & 1).toBe(q.rd ? 1 : 0);
      }),
      RUNS,
    );
  });
});
