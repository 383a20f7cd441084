/** The authoritative answers of a network's zones, through the engine (no sockets): A,
 * AAAA, PTR (v4, v6), SRV/MX with additional addresses, CNAME chains, NXDOMAIN vs NODATA,
 * case, EDNS and truncation, FORMERR/NOTIMP/BADVERS, access control, serials and cache
 * invalidation. */
import { describe, expect, test } from "bun:test";
import * as dp from "dns-packet";
import { DnsEngine } from "../../src/dns/engine";
import { decodeMessage } from "../../src/dns/wire";
import { buildZones, reverseName, type ZoneInput } from "../../src/dns/zone";
import { profileIp6 } from "../../src/model/network";

const ZONE = "app-net.internal";
const WEB_MAC = "02:00:01:00:00:04";
const WEB6 = profileIp6("fd00:20::/64", WEB_MAC);

function appNet(extra: Partial<ZoneInput> = {}): ZoneInput {
  return {
    network: {
      name: "app-net",
      cidr: "10.20.0.0/24",
      gateway: "10.20.0.1",
      cidr6: "fd00:20::/64",
      gateway6: "fd00:20::1",
      dnsZone: ZONE,
      dnsForwarders: [],
    },
    endpoints: [
      { name: "web", ip: "10.20.0.5", mac: WEB_MAC },
      { name: "db", ip: "10.20.0.6", mac: "02:00:01:00:00:05" },
    ],
    records: [
      { name: "_http._tcp", type: "SRV", value: "10 5 80 web.app-net.internal", ttl: 300 },
      { name: "@", type: "MX", value: "10 mail.app-net.internal", ttl: 300 },
      { name: "mail", type: "A", value: "10.20.0.50", ttl: 300 },
      { name: "www", type: "CNAME", value: "web.app-net.internal", ttl: 300 },
      { name: "w2", type: "CNAME", value: "www.app-net.internal", ttl: 300 },
      { name: "ext", type: "CNAME", value: "example.com", ttl: 300 },
      { name: "dangling", type: "CNAME", value: "nope.app-net.internal", ttl: 300 },
      { name: "loop1", type: "CNAME", value: "loop2.app-net.internal", ttl: 300 },
      { name: "loop2", type: "CNAME", value: "loop1.app-net.internal", ttl: 300 },
      { name: "a.b.deep", type: "TXT", value: "deep", ttl: 300 },
      ...Array.from({ length: 8 }, (_, i) => ({
        name: "big",
        type: "TXT" as const,
        value: `${i}`.repeat(200),
        ttl: 300,
      })),
      ...Array.from({ length: 3 }, (_, i) => ({
        name: "medium",
        type: "TXT" as const,
        value: `${i}`.repeat(200),
        ttl: 300,
      })),
      { name: "long", type: "TXT", value: "x".repeat(600), ttl: 300 },
    ],
    ...extra,
  };
}

const other: ZoneInput = {
  network: {
    name: "other",
    cidr: "10.30.0.0/16",
    gateway: "10.30.0.1",
    dnsZone: "other.internal",
    dnsForwarders: [],
  },
  endpoints: [{ name: "x", ip: "10.30.1.2", mac: "02:00:02:00:01:01" }],
  records: [],
};

const small: ZoneInput = {
  network: {
    name: "small",
    cidr: "10.40.0.64/26",
    gateway: "10.40.0.65",
    dnsZone: "small.internal",
    dnsForwarders: [],
  },
  endpoints: [{ name: "s1", ip: "10.40.0.70", mac: "02:00:03:00:00:05" }],
  records: [],
};

interface QOpts {
  id?: number;
  rd?: boolean;
  cd?: boolean;
  edns?: { size: number; do?: boolean; version?: number };
  opcode?: number;
  qclass?: dp.RecordClass;
}

function query(name: string, type: dp.RecordType, o: QOpts = {}): Buffer {
  const flags =
    (o.rd === false ? 0 : dp.RECURSION_DESIRED) | (o.cd ? dp.CHECKING_DISABLED : 0) | ((o.opcode ?? 0) << 11);
  const additionals: dp.Answer[] = o.edns
    ? [
        {
          type: "OPT",
          name: ".",
          udpPayloadSize: o.edns.size,
          flags: o.edns.do ? dp.DNSSEC_OK : 0,
          ednsVersion: o.edns.version ?? 0,
        } as dp.Answer,
      ]
    : [];
  return dp.encode({
    id: o.id ?? 0x1234,
    type: "query",
    flags,
    questions: [{ name, type, class: o.qclass ?? "IN" }],
    additionals,
  });
}

function setup(inputs: ZoneInput[] = [appNet(), other, small]) {
  const logs: string[] = [];
  const engine = new DnsEngine({ log: (_l, m) => logs.push(m) });
  engine.setZones(inputs);
  const raw = (msg: Uint8Array, src = "10.20.0.9", local = "10.20.0.1", tcp = false) => {
    const r = engine.handle(local, src, msg, tcp);
    expect(r instanceof Promise).toBe(false);
    return r as Buffer | undefined;
  };
  const ask = (name: string, type: dp.RecordType, o: QOpts & { src?: string; local?: string; tcp?: boolean } = {}) => {
    const r = raw(query(name, type, o), o.src, o.local, o.tcp);
    expect(r).toBeDefined();
    const d = decodeMessage(r as Buffer) as dp.DecodedPacket & { rcode: string };
    return { ...d, bytes: r as Buffer };
  };
  return { engine, ask, raw, logs };
}

const soaSerial = (rrs: dp.Answer[] | undefined) => ((rrs ?? [])[0] as dp.SoaAnswer).data.serial as number;
const ttlOf = (a: dp.Answer | undefined) => (a as { ttl?: number } | undefined)?.ttl;
const data = (rrs: dp.Answer[] | undefined) =>
  (rrs ?? []).map((a) => `${a.name} ${a.type} ${JSON.stringify((a as { data?: unknown }).data)}`);

describe("dns zone: forward names", () => {
  const { ask } = setup();

  test("A, with the question's case echoed byte for byte, AA, RD copied, no RA without forwarders", () => {
    const r = ask("WeB.App-Net.INTERNAL", "A", { id: 777 });
    expect(r.id).toBe(777);
    expect(r.rcode).toBe("NOERROR");
    expect(r.questions?.[0]?.name).toBe("WeB.App-Net.INTERNAL");
    expect(r.flag_aa).toBe(true);
    expect(r.flag_rd).toBe(true);
    expect(r.flag_ra).toBe(false);
    expect(data(r.answers)).toEqual([`web.${ZONE} A "10.20.0.5"`]);
    expect(ttlOf(r.answers?.[0])).toBe(30);
    // The same (cached) answer to a differently cased query with RD clear.
    const r2 = ask("WEB.APP-NET.INTERNAL", "A", { id: 778, rd: false, cd: true });
    expect(r2.questions?.[0]?.name).toBe("WEB.APP-NET.INTERNAL");
    expect(r2.id).toBe(778);
    expect(r2.flag_rd).toBe(false);
    expect(r2.flag_cd).toBe(true);
    expect(data(r2.answers)).toEqual([`web.${ZONE} A "10.20.0.5"`]);
  });

  test("AAAA is the endpoint's EUI-64 address in the network's /64", () => {
    const r = ask(`web.${ZONE}`, "AAAA");
    expect(data(r.answers)).toEqual([`web.${ZONE} AAAA "${WEB6}"`]);
  });

  test("gateway and ns carry the gateway's addresses; SOA and NS at the apex", () => {
    expect(data(ask(`gateway.${ZONE}`, "A").answers)).toEqual([`gateway.${ZONE} A "10.20.0.1"`]);
    expect(data(ask(`gateway.${ZONE}`, "AAAA").answers)).toEqual([`gateway.${ZONE} AAAA "fd00:20::1"`]);
    const ns = ask(ZONE, "NS");
    expect(data(ns.answers)).toEqual([`${ZONE} NS "ns.${ZONE}"`]);
    expect(data(ns.additionals)).toEqual([`ns.${ZONE} A "10.20.0.1"`, `ns.${ZONE} AAAA "fd00:20::1"`]);
    const soa = ask(ZONE, "SOA").answers?.[0] as dp.SoaAnswer;
    expect(soa.data).toMatchObject({
      mname: `ns.${ZONE}`,
      rname: `hostmaster.${ZONE}`,
      refresh: 3600,
      retry: 600,
      expire: 86400,
      minimum: 30,
    });
    expect(soa.data.serial).toBeGreaterThan(0);
  });

  test("SRV and MX bring the in-zone target's addresses in the additional section", () => {
    const srv = ask(`_http._tcp.${ZONE}`, "SRV");
    expect(data(srv.answers)).toEqual([
      `_http._tcp.${ZONE} SRV {"priority":10,"weight":5,"port":80,"target":"web.${ZONE}"}`,
    ]);
    expect(data(srv.additionals)).toEqual([`web.${ZONE} A "10.20.0.5"`, `web.${ZONE} AAAA "${WEB6}"`]);
    const mx = ask(ZONE, "MX");
    expect(data(mx.answers)).toEqual([`${ZONE} MX {"preference":10,"exchange":"mail.${ZONE}"}`]);
    expect(data(mx.additionals)).toEqual([`mail.${ZONE} A "10.20.0.50"`]);
  });

  test("ANY at the apex lists its records", () => {
    const types = (ask(ZONE, "ANY" as dp.RecordType).answers ?? []).map((a) => a.type).sort();
    expect(types).toEqual(["MX", "NS", "SOA"]);
  });

  test("CNAME chains are followed inside the zone, the answer holds the chain", () => {
    expect(data(ask(`w2.${ZONE}`, "A").answers)).toEqual([
      `w2.${ZONE} CNAME "www.${ZONE}"`,
      `www.${ZONE} CNAME "web.${ZONE}"`,
      `web.${ZONE} A "10.20.0.5"`,
    ]);
    expect(data(ask(`w2.${ZONE}`, "CNAME").answers)).toEqual([`w2.${ZONE} CNAME "www.${ZONE}"`]);
    const ext = ask(`ext.${ZONE}`, "A");
    expect(ext.rcode).toBe("NOERROR");
    expect(data(ext.answers)).toEqual([`ext.${ZONE} CNAME "example.com"`]);
    const dangling = ask(`dangling.${ZONE}`, "A");
    expect(dangling.rcode).toBe("NXDOMAIN");
    expect(data(dangling.answers)).toEqual([`dangling.${ZONE} CNAME "nope.${ZONE}"`]);
    expect(dangling.authorities?.[0]?.type).toBe("SOA");
    const loop = ask(`loop1.${ZONE}`, "A");
    expect(loop.rcode).toBe("NOERROR");
    expect(data(loop.answers)).toEqual([`loop1.${ZONE} CNAME "loop2.${ZONE}"`, `loop2.${ZONE} CNAME "loop1.${ZONE}"`]);
    // A CNAME's target's NODATA: the chain, then the SOA.
    const nodata = ask(`www.${ZONE}`, "TXT");
    expect(nodata.rcode).toBe("NOERROR");
    expect(data(nodata.answers)).toEqual([`www.${ZONE} CNAME "web.${ZONE}"`]);
    expect(nodata.authorities?.[0]?.type).toBe("SOA");
  });

  test("NXDOMAIN vs NODATA (other types, empty non-terminal), SOA with the negative TTL", () => {
    const nodata = ask(`web.${ZONE}`, "TXT");
    expect(nodata.rcode).toBe("NOERROR");
    expect(nodata.answers).toEqual([]);
    expect(nodata.flag_aa).toBe(true);
    expect(nodata.authorities?.[0]?.name).toBe(ZONE);
    expect(nodata.authorities?.[0]?.type).toBe("SOA");
    expect(ttlOf(nodata.authorities?.[0])).toBe(30);
    for (const ent of [`deep.${ZONE}`, `b.deep.${ZONE}`, `_tcp.${ZONE}`]) {
      const r = ask(ent, "A");
      expect(r.rcode).toBe("NOERROR");
      expect(r.answers).toEqual([]);
      expect(r.authorities?.[0]?.type).toBe("SOA");
    }
    for (const nx of [`nope.${ZONE}`, `x.web.${ZONE}`, `c.b.deep.${ZONE}`]) {
      const r = ask(nx, "A");
      expect(r.rcode).toBe("NXDOMAIN");
      expect(ttlOf(r.authorities?.[0])).toBe(30);
    }
  });
});

describe("dns zone: reverse names", () => {
  const { ask } = setup();

  test("PTR (IPv4) for endpoints and the gateway; a free address of the subnet is NXDOMAIN", () => {
    expect(reverseName("10.20.0.5")).toBe("5.0.20.10.in-addr.arpa");
    expect(data(ask("5.0.20.10.IN-ADDR.ARPA", "PTR").answers)).toEqual([`5.0.20.10.in-addr.arpa PTR "web.${ZONE}"`]);
    expect(data(ask("1.0.20.10.in-addr.arpa", "PTR").answers)).toEqual([
      `1.0.20.10.in-addr.arpa PTR "gateway.${ZONE}"`,
    ]);
    const nx = ask("99.0.20.10.in-addr.arpa", "PTR");
    expect(nx.rcode).toBe("NXDOMAIN");
    expect(nx.flag_aa).toBe(true);
    expect(nx.authorities?.[0]?.name).toBe("0.20.10.in-addr.arpa");
    const apex = ask("0.20.10.in-addr.arpa", "SOA");
    expect(apex.answers?.[0]?.type).toBe("SOA");
    expect(data(ask("0.20.10.in-addr.arpa", "NS").answers)).toEqual([`0.20.10.in-addr.arpa NS "ns.${ZONE}"`]);
  });

  test("PTR (IPv6) in the nibble zone of the /64", () => {
    const name = reverseName(WEB6);
    expect(name.endsWith(".0.0.0.0.0.0.0.0.0.2.0.0.0.0.d.f.ip6.arpa")).toBe(true);
    expect(data(ask(name, "PTR").answers)).toEqual([`${name} PTR "web.${ZONE}"`]);
    expect(data(ask(reverseName("fd00:20::1"), "PTR").answers)).toEqual([
      `${reverseName("fd00:20::1")} PTR "gateway.${ZONE}"`,
    ]);
    const nx = ask(reverseName("fd00:20::1234"), "PTR");
    expect(nx.rcode).toBe("NXDOMAIN");
    expect(nx.authorities?.[0]?.name).toBe("0.0.0.0.0.0.0.0.0.2.0.0.0.0.d.f.ip6.arpa");
  });

  test("a /16 gets its /16 zone; a /26 the /24 zone, answered only inside the /26", () => {
    const { ask: ask2 } = setup();
    const o = ask2("2.1.30.10.in-addr.arpa", "PTR", { src: "10.30.9.9", local: "10.30.0.1" });
    expect(data(o.answers)).toEqual(['2.1.30.10.in-addr.arpa PTR "x.other.internal"']);
    const ent = ask2("1.30.10.in-addr.arpa", "PTR", { src: "10.30.9.9", local: "10.30.0.1" });
    expect(ent.rcode).toBe("NOERROR");
    expect(ent.authorities?.[0]?.name).toBe("30.10.in-addr.arpa");
    const s = { src: "10.40.0.66", local: "10.40.0.65" };
    expect(data(ask2("70.0.40.10.in-addr.arpa", "PTR", s).answers)).toEqual([
      '70.0.40.10.in-addr.arpa PTR "s1.small.internal"',
    ]);
    expect(ask2("71.0.40.10.in-addr.arpa", "PTR", s).rcode).toBe("NXDOMAIN");
    expect(ask2("0.40.10.in-addr.arpa", "SOA", s).answers?.[0]?.type).toBe("SOA");
    // 10.40.0.5 is in the /24 zone but not in the /26: not ours (no forwarders: REFUSED).
    expect(ask2("5.0.40.10.in-addr.arpa", "PTR", s).rcode).toBe("REFUSED");
  });
});

describe("dns zone: EDNS and truncation", () => {
  const { ask } = setup();

  test("a query with OPT gets our OPT (1232, DO echoed)", () => {
    const r = ask(`web.${ZONE}`, "A", { edns: { size: 4096, do: true } });
    const opt = r.additionals?.find((a) => a.type === "OPT") as dp.OptAnswer;
    expect(opt.udpPayloadSize).toBe(1232);
    expect(opt.flag_do).toBe(true);
    const plain = ask(`web.${ZONE}`, "A");
    expect(plain.additionals?.some((a) => a.type === "OPT")).toBe(false);
  });

  test("over UDP, larger than the limit: TC, no records, question kept; over TCP the whole answer", () => {
    const tc = ask(`MEDIUM.${ZONE}`, "TXT");
    expect(tc.flag_tc).toBe(true);
    expect(tc.answers).toEqual([]);
    expect(tc.questions?.[0]?.name).toBe(`MEDIUM.${ZONE}`);
    expect(tc.bytes.length).toBeLessThanOrEqual(512);
    const edns = ask(`medium.${ZONE}`, "TXT", { edns: { size: 1232 } });
    expect(edns.flag_tc).toBe(false);
    expect(edns.answers?.length).toBe(3);
    const small512 = ask(`medium.${ZONE}`, "TXT", { edns: { size: 100 } });
    expect(small512.flag_tc).toBe(true); // below 512 counts as 512
    const big = ask(`big.${ZONE}`, "TXT", { edns: { size: 65000 } });
    expect(big.flag_tc).toBe(true); // we never send more than 1232 over UDP
    expect(big.additionals?.some((a) => a.type === "OPT")).toBe(true);
    const tcp = ask(`big.${ZONE}`, "TXT", { tcp: true });
    expect(tcp.flag_tc).toBe(false);
    expect(tcp.answers?.length).toBe(8);
  });

  test("TXT longer than 255 bytes goes out as 255-byte strings", () => {
    const r = ask(`long.${ZONE}`, "TXT", { tcp: true });
    const d = ((r.answers ?? [])[0] as dp.TxtAnswer).data as Buffer[];
    expect(d.map((b) => b.length)).toEqual([255, 255, 90]);
  });

  test("EDNS version 1: BADVERS", () => {
    const r = ask(`web.${ZONE}`, "A", { edns: { size: 1232, version: 1 } });
    const opt = r.additionals?.find((a) => a.type === "OPT") as dp.OptAnswer;
    expect(opt.extendedRcode).toBe(1);
    expect(r.answers).toEqual([]);
  });
});

describe("dns zone: malformed and odd queries", () => {
  const { ask, raw, engine } = setup();

  test("QDCOUNT 0 or 2: FORMERR; an unreadable question: FORMERR; short header or QR=1: dropped", () => {
    const q0 = dp.encode({ id: 5, type: "query", questions: [] });
    const r0 = decodeMessage(raw(q0) as Buffer) as dp.DecodedPacket & { rcode: string };
    expect(r0.rcode).toBe("FORMERR");
    expect(r0.id).toBe(5);
    const q2 = dp.encode({
      id: 6,
      type: "query",
      questions: [
        { name: "a.app-net.internal", type: "A" },
        { name: "b.app-net.internal", type: "A" },
      ],
    });
    expect((decodeMessage(raw(q2) as Buffer) as unknown as { rcode: string }).rcode).toBe("FORMERR");
    const cut = query(`web.${ZONE}`, "A").subarray(0, 20);
    expect((decodeMessage(raw(cut) as Buffer) as unknown as { rcode: string }).rcode).toBe("FORMERR");
    // A compression pointer in the question (to the header): FORMERR, not a crash.
    const ptr = Buffer.concat([query(`web.${ZONE}`, "A").subarray(0, 12), Buffer.from([0xc0, 0x00, 0, 1, 0, 1])]);
    expect((decodeMessage(raw(ptr) as Buffer) as unknown as { rcode: string }).rcode).toBe("FORMERR");
    const before = engine.stats().malformed;
    expect(raw(Buffer.from([1, 2, 3]))).toBeUndefined();
    expect(engine.stats().malformed).toBe(before + 1);
    const resp = query(`web.${ZONE}`, "A");
    resp[2] = (resp[2] as number) | 0x80;
    expect(raw(resp)).toBeUndefined();
  });

  test("unknown opcode: NOTIMP with the question echoed", () => {
    const r = ask(`web.${ZONE}`, "A", { opcode: 2 });
    expect(r.rcode).toBe("NOTIMP");
    expect(r.questions?.[0]?.name).toBe(`web.${ZONE}`);
    expect(ask(`web.${ZONE}`, "A", { opcode: 5 }).rcode).toBe("NOTIMP");
  });

  test("class CH and zone transfers: REFUSED", () => {
    expect(ask("version.bind", "TXT", { qclass: "CH" }).rcode).toBe("REFUSED");
    expect(ask(ZONE, "AXFR" as dp.RecordType).rcode).toBe("REFUSED");
  });
});

describe("dns zone: who may ask what", () => {
  test("a source outside the network's subnet is REFUSED; garbage from it is dropped", () => {
    const { ask, raw, engine } = setup();
    const r = ask(`web.${ZONE}`, "A", { src: "192.0.2.7" });
    expect(r.rcode).toBe("REFUSED");
    expect(r.answers).toEqual([]);
    expect(r.flag_ra).toBe(false);
    expect(engine.stats().refused).toBe(1);
    expect(raw(Buffer.from("0000000000000000", "hex"), "192.0.2.7")).toBeUndefined();
    // Another network's client asking this network's address: refused too.
    expect(ask(`web.${ZONE}`, "A", { src: "10.30.0.9" }).rcode).toBe("REFUSED");
    // IPv6: a source in cidr6 on the gateway6 listener.
    expect(data(ask(`web.${ZONE}`, "A", { src: "fd00:20::99", local: "fd00:20::1" }).answers)).toEqual([
      `web.${ZONE} A "10.20.0.5"`,
    ]);
    expect(ask(`web.${ZONE}`, "A", { src: "fd00:99::1", local: "fd00:20::1" }).rcode).toBe("REFUSED");
    // An address we do not serve: nothing.
    expect(raw(query(`web.${ZONE}`, "A"), "10.20.0.9", "10.99.0.1")).toBeUndefined();
  });

  test("another network's zone is not visible; outside names without forwarders are REFUSED", () => {
    const { ask } = setup();
    expect(ask("x.other.internal", "A").rcode).toBe("REFUSED");
    expect(data(ask("x.other.internal", "A", { src: "10.30.0.9", local: "10.30.0.1" }).answers)).toEqual([
      'x.other.internal A "10.30.1.2"',
    ]);
    expect(ask("example.com", "A").rcode).toBe("REFUSED");
  });
});

describe("dns zone: building and changes", () => {
  test("the serial stays while the content does and moves forward when it changes", () => {
    const a = buildZones(appNet(), undefined, 1_000_000);
    const b = buildZones(appNet(), a, 2_000_000);
    expect(b.serial).toBe(a.serial);
    expect(b.hash).toBe(a.hash);
    const c = buildZones(appNet({ records: [] }), b, 2_000_000);
    expect(c.serial).toBe(2000); // the clock, when it is ahead
    const d = buildZones(appNet(), c, 2_000_000);
    expect(d.serial).toBe(2001); // one more, when it is not
    const e = buildZones(appNet({ records: [] }), d, 9_000_000_000);
    expect(e.serial).toBe(9_000_000);
  });

  test("a zone change invalidates cached answers", () => {
    const { engine, ask } = setup([appNet()]);
    expect(ask(`new.${ZONE}`, "A").rcode).toBe("NXDOMAIN");
    const serial1 = soaSerial(ask(ZONE, "SOA").answers) as number;
    const input = appNet();
    input.endpoints.push({ name: "new", ip: "10.20.0.77", mac: "02:00:01:00:00:4c" });
    engine.setZones([input]);
    expect(data(ask(`new.${ZONE}`, "A").answers)).toEqual([`new.${ZONE} A "10.20.0.77"`]);
    expect(data(ask("77.0.20.10.in-addr.arpa", "PTR").answers)).toEqual([`77.0.20.10.in-addr.arpa PTR "new.${ZONE}"`]);
    expect(soaSerial(ask(ZONE, "SOA").answers)).toBeGreaterThan(serial1);
    // Forwarders appear: RA is set from now on.
    engine.setZones([{ ...input, network: { ...input.network, dnsForwarders: ["192.0.2.53"] } }]);
    expect(ask(`new.${ZONE}`, "A").flag_ra).toBe(true);
  });

  test("conflicting input is skipped with a warning, never thrown", () => {
    const z = buildZones(
      appNet({
        endpoints: [
          { name: "gateway", ip: "10.20.0.8", mac: "02:00:01:00:00:07" },
          { name: "web", ip: "10.20.0.5", mac: WEB_MAC },
          { name: "far", ip: "10.99.0.5", mac: "02:00:01:00:00:08" },
        ],
        records: [
          { name: "web", type: "A", value: "10.20.0.99", ttl: 300 },
          { name: "web", type: "CNAME", value: "x.app-net.internal", ttl: 300 },
          { name: "c", type: "CNAME", value: "web.app-net.internal", ttl: 300 },
          { name: "c", type: "TXT", value: "x", ttl: 300 },
        ],
      }),
    );
    expect(z.warnings.length).toBe(5);
    expect(z.lookup(`gateway.${ZONE}`, 1)?.answers.map((a) => (a as { data: string }).data)).toEqual(["10.20.0.1"]);
    expect(z.lookup(`web.${ZONE}`, 1)?.answers.map((a) => (a as { data: string }).data)).toEqual(["10.20.0.5"]);
    expect(z.lookup(`c.${ZONE}`, 16)?.answers.map((a) => a.type)).toEqual(["CNAME"]);
    expect(z.lookup("example.com", 1)).toBeUndefined();
  });

  test("two networks on one gateway address: INVALID, nothing changes", () => {
    const { engine, ask } = setup([appNet()]);
    const clash = { ...other, network: { ...other.network, gateway: "10.20.0.1" } };
    expect(() => engine.setZones([appNet(), clash])).toThrow(/gateway 10.20.0.1 is network app-net's too/);
    expect(ask(`web.${ZONE}`, "A").rcode).toBe("NOERROR");
  });
});
