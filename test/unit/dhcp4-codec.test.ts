/** The DHCPv4 codec: RFC examples for every option builder and reader, hand-built client packets,
 * long options, overload, size limits, and properties (round trips; on any input, parsing and the
 * readers throw nothing but Dhcp4FormatError and never take more than linear time). */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import {
  DHCP4,
  Dhcp4FormatError,
  type Dhcp4Message,
  dec,
  enc,
  encodeDhcp4,
  macOf,
  messageType,
  OPT,
  parseDhcp4,
} from "../../src/dhcp/v4";
import { clientMessage } from "../helpers/dhcp4";

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ""), "hex"));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

/** Fixture files: '#' comment lines, then whitespace-separated hex. */
function fixture(name: string): Uint8Array {
  const text = readFileSync(join(import.meta.dir, "../fixtures/dhcp4", name), "utf8");
  return hex(
    text
      .split("\n")
      .filter((l) => !l.startsWith("#"))
      .join(""),
  );
}
const FIXTURES = ["dhclient-discover.hex", "udhcpc-discover.hex", "relayed-request.hex"];

/** Runs f and lets through only Dhcp4FormatError: anything else is a codec bug. */
function onlyFormatErrors<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch (e) {
    if (!(e instanceof Dhcp4FormatError)) throw e;
    return undefined;
  }
}

function message(over: Partial<Dhcp4Message> = {}): Dhcp4Message {
  return clientMessage("52:54:00:12:34:56", over);
}

/** A raw BOOTP frame with the cookie, for packets the encoder refuses to produce (overload, bad framing). */
function raw(opts: number[], at: { sname?: number[]; file?: number[]; len?: number } = {}): Uint8Array {
  const b = new Uint8Array(Math.max(at.len ?? 0, 240 + opts.length));
  b.set([1, 1, 6, 0]);
  b.set(at.sname ?? [], 44);
  b.set(at.file ?? [], 108);
  b.set([99, 130, 83, 99], 236);
  b.set(opts, 240);
  return b;
}

describe("option values", () => {
  test("integers and addresses are big-endian and length-checked", () => {
    expect(toHex(enc.u8(7))).toBe("07");
    expect(toHex(enc.u16(576))).toBe("0240");
    expect(toHex(enc.u32(86400))).toBe("00015180");
    expect(toHex(enc.u32(0xffffffff))).toBe("ffffffff");
    expect(dec.u32(hex("ffffffff"))).toBe(0xffffffff);
    expect(dec.u16(hex("0240"))).toBe(576);
    expect(dec.u8(hex("05"))).toBe(5);
    expect(toHex(enc.ip("10.20.0.1"))).toBe("0a140001");
    expect(dec.ip(hex("c0a80001"))).toBe("192.168.0.1");
    expect(toHex(enc.ips(["1.1.1.1", "9.9.9.9"]))).toBe("0101010109090909");
    expect(dec.ips(hex("0101010109090909"))).toEqual(["1.1.1.1", "9.9.9.9"]);
    for (const [f, v] of [
      [dec.u8, hex("")],
      [dec.u16, hex("01")],
      [dec.u32, hex("010203")],
      [dec.ip, hex("0102030405")],
      [dec.ips, hex("")],
      [dec.ips, hex("010203040506")],
    ] as const)
      expect(() => f(v)).toThrow(Dhcp4FormatError);
    for (const f of [
      () => enc.u8(256),
      () => enc.u16(-1),
      () => enc.u32(2 ** 32),
      () => enc.u8(1.5),
      () => enc.ips([]),
    ])
      expect(f).toThrow(Dhcp4FormatError);
    for (const bad of ["10.0.0", "10.0.0.256", "10.0.0.01", "1.2.3.4.", " 1.2.3.4", "a.b.c.d", ""])
      expect(() => enc.ip(bad)).toThrow(Dhcp4FormatError);
  });

  test("text is UTF-8; trailing NULs are dropped (RFC 2132 §2), embedded NULs and bad UTF-8 refused", () => {
    expect(toHex(enc.text("web-1"))).toBe("7765622d31");
    expect(dec.text(hex("7765622d310000"))).toBe("web-1");
    expect(dec.text(enc.text("héllo"))).toBe("héllo");
    expect(dec.text(enc.text("\ufeffbom"))).toBe("\ufeffbom");
    expect(() => dec.text(hex("61006200"))).toThrow(Dhcp4FormatError);
    expect(() => dec.text(hex("ff"))).toThrow(Dhcp4FormatError);
    expect(() => enc.text("a\0b")).toThrow(Dhcp4FormatError);
    expect(() => enc.text("\ud800")).toThrow(Dhcp4FormatError);
  });

  test("RFC 3442 destination descriptors", () => {
    const gw = "0a000001";
    const table: Array<[string, string]> = [
      ["0.0.0.0/0", "00"],
      ["10.0.0.0/8", "08 0a"],
      ["10.0.0.0/24", "18 0a 00 00"],
      ["10.17.0.0/16", "10 0a 11"],
      ["10.27.129.0/24", "18 0a 1b 81"],
      ["10.229.0.128/25", "19 0a e5 00 80"],
      ["10.198.122.47/32", "20 0a c6 7a 2f"],
    ];
    for (const [dst, desc] of table) {
      const bytes = enc.classlessRoutes([{ dst, via: "10.0.0.1" }]);
      expect(toHex(bytes)).toBe(desc.replace(/\s/g, "") + gw);
      expect(dec.classlessRoutes(bytes)).toEqual([{ dst, via: "10.0.0.1" }]);
    }
    expect(toHex(enc.classlessRoutes([{ dst: "10.0.0.0/8", via: "10.0.0.1" }]))).toBe("080a0a000001");
    const both = [
      { dst: "0.0.0.0/0", via: "10.20.0.1" },
      { dst: "192.168.7.9/32", via: "10.20.0.254" },
    ];
    expect(toHex(enc.classlessRoutes(both))).toBe("000a140001" + "20c0a807090a1400fe");
    expect(dec.classlessRoutes(enc.classlessRoutes(both))).toEqual(both);
  });

  test("RFC 3442 errors: width over 32, truncation, host bits, bad CIDR", () => {
    for (const bad of [
      "21 8000000000 0a000001",
      "21 0a00000000 0a000001",
      "21 0a000000 0a000001",
      "18 0a00 0a000001",
      "08 0a 0a0000",
      "19 0ae50081 0a000001",
      "",
    ])
      expect(() => dec.classlessRoutes(hex(bad))).toThrow(Dhcp4FormatError);
    for (const dst of ["10.0.0.1/8", "10.0.0.0", "10.0.0.0/33", "10.0.0.0/08", "10.0.0.0/", "10.0.0/8"])
      expect(() => enc.classlessRoutes([{ dst, via: "10.0.0.1" }])).toThrow(Dhcp4FormatError);
    expect(() => enc.classlessRoutes([{ dst: "10.0.0.0/8", via: "10.0.0" }])).toThrow(Dhcp4FormatError);
    expect(() => enc.classlessRoutes([])).toThrow(Dhcp4FormatError);
  });

  test("RFC 3397 example: eng.apple.com and marketing.apple.com share apple.com by pointer", () => {
    const want = "03656e67 056170706c65 03636f6d 00 096d61726b6574696e67 c004";
    const bytes = enc.domainSearch(["eng.apple.com", "marketing.apple.com"]);
    expect(toHex(bytes)).toBe(want.replace(/\s/g, ""));
    expect(dec.domainSearch(bytes)).toEqual(["eng.apple.com", "marketing.apple.com"]);
  });

  test("RFC 3397 example split over three option 119 instances reassembles (RFC 3396)", () => {
    const a = "03656e67056170706c";
    const b = "6503636f6d00096d61";
    const c = "726b6574696e67c004";
    const pkt = raw([...hex(`7709${a} 7709${b} 7709${c} ff`)]);
    const m = parseDhcp4(pkt);
    expect(dec.domainSearch(m.options.get(OPT.DOMAIN_SEARCH)!)).toEqual(["eng.apple.com", "marketing.apple.com"]);
  });

  test("domain search: trailing dots, whole-name pointers, limits, loops", () => {
    expect(dec.domainSearch(enc.domainSearch(["example.com.", "example.com"]))).toEqual(["example.com", "example.com"]);
    expect(toHex(enc.domainSearch(["a.b", "a.b"]))).toBe("0161016200c000");
    expect(() => enc.domainSearch([])).toThrow(Dhcp4FormatError);
    expect(() => enc.domainSearch([""])).toThrow(Dhcp4FormatError);
    expect(() => enc.domainSearch(["a..b"])).toThrow(Dhcp4FormatError);
    expect(() => enc.domainSearch(["a b.com"])).toThrow(Dhcp4FormatError);
    expect(() => enc.domainSearch([`${"x".repeat(64)}.com`])).toThrow(Dhcp4FormatError);
    const long = Array.from({ length: 4 }, () => "y".repeat(63)).join("."); // 4 × 64 + 1 = 257 bytes
    expect(() => enc.domainSearch([long])).toThrow(Dhcp4FormatError);
    expect(enc.domainSearch([long.slice(2)]).length).toBe(255);
    for (const bad of [
      "c000", // points at itself
      "0161 c002", // points forward into itself
      "0161 00 c003", // points at itself after a full name
      "0161", // no terminator
      "00", // root name
      "0161 c0", // cut pointer
      "4161 00", // reserved label type
      "0561 00", // label past end
      "03612e62 00", // '.' inside a label
      "026120 00", // space: not printable ASCII
      "0261ff 00", // not ASCII
      "c002 0161 00", // forward pointer, even to a valid name
      `${`3f${"78".repeat(63)} `.repeat(4)}00`, // 257 bytes on the wire
      `3f${"78".repeat(63)} 3f${"78".repeat(63)} 00 3f${"78".repeat(63)} 3f${"78".repeat(63)} c000`, // 257 via a pointer
    ])
      expect(() => dec.domainSearch(hex(bad))).toThrow(Dhcp4FormatError);
    expect(dec.domainSearch(hex("0161 00 c000 0162 c000"))).toEqual(["a", "a", "b.a"]);
  });

  test("domain search: suffixes first seen past 0x3fff are not pointed at (14-bit pointers)", () => {
    const names = Array.from({ length: 300 }, (_, i) => `host${i}-${"p".repeat(50)}.example`);
    names.push(names[299]!, names[0]!);
    const bytes = enc.domainSearch(names);
    expect(bytes.length).toBeGreaterThan(0x4000);
    expect(dec.domainSearch(bytes)).toEqual(names);
  });

  test("domain search pointer chains cannot make decoding quadratic", () => {
    // "a", then 8000 names each a pointer to the previous pointer: chain depth grows by one per name.
    const v = new Uint8Array(3 + 2 * 8000);
    v.set([1, 0x61, 0]);
    for (let i = 0; i < 8000; i++) {
      const at = 3 + 2 * i;
      const target = i === 0 ? 0 : at - 2;
      v[at] = 0xc0 | (target >> 8);
      v[at + 1] = target & 255;
    }
    const t0 = performance.now();
    expect(() => dec.domainSearch(v)).toThrow(Dhcp4FormatError);
    expect(performance.now() - t0).toBeLessThan(200);
  });
});

describe("messages", () => {
  test("dhclient DISCOVER (hand-built, captured-style) parses and re-encodes byte for byte", () => {
    const pkt = fixture("dhclient-discover.hex");
    expect(pkt.length).toBe(300);
    const m = parseDhcp4(pkt);
    expect(m).toMatchObject({ op: 1, htype: 1, hlen: 6, hops: 0, xid: 0x5d1a93c7, secs: 3, flags: 0 });
    expect(m).toMatchObject({ ciaddr: "0.0.0.0", giaddr: "0.0.0.0", sname: "", file: "" });
    expect(macOf(m)).toBe("52:54:00:a1:b2:c3");
    expect(messageType(m)).toBe(DHCP4.DISCOVER);
    expect([...m.options.keys()]).toEqual([53, 50, 12, 55]);
    expect(dec.ip(m.options.get(OPT.REQUESTED_IP)!)).toBe("10.20.0.57");
    expect(dec.text(m.options.get(OPT.HOSTNAME)!)).toBe("web-1");
    expect([...m.options.get(OPT.PARAM_LIST)!]).toEqual([1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42]);
    expect(toHex(encodeDhcp4(m))).toBe(toHex(pkt));
  });

  test("udhcpc DISCOVER: broadcast flag, client id, max size", () => {
    const pkt = fixture("udhcpc-discover.hex");
    const m = parseDhcp4(pkt);
    expect(m.flags).toBe(0x8000);
    expect(macOf(m)).toBe("02:42:ac:11:00:05");
    expect(toHex(m.options.get(OPT.CLIENT_ID)!)).toBe("010242ac110005");
    expect(dec.u16(m.options.get(OPT.MAX_SIZE)!)).toBe(576);
    expect(dec.text(m.options.get(60)!)).toBe("udhcp 1.36.1");
    expect(toHex(encodeDhcp4(m))).toBe(toHex(pkt));
  });

  test("relayed REQUEST: hops, giaddr and option 82 survive", () => {
    const pkt = fixture("relayed-request.hex");
    const m = parseDhcp4(pkt);
    expect(m).toMatchObject({ hops: 1, giaddr: "10.30.0.1", secs: 1 });
    expect(messageType(m)).toBe(DHCP4.REQUEST);
    expect(dec.ip(m.options.get(OPT.SERVER_ID)!)).toBe("10.30.0.1");
    expect(toHex(m.options.get(OPT.RELAY_AGENT)!)).toBe(`0107${toHex(enc.text("eth0:10"))}0206001122334455`);
    expect([...m.options.keys()].at(-1)).toBe(OPT.RELAY_AGENT);
    expect(toHex(encodeDhcp4(m))).toBe(toHex(pkt));
  });

  test("an OFFER is encoded byte-exactly and padded to 300 bytes", () => {
    const m = message({
      op: 2,
      xid: 0xdeadbeef,
      flags: 0x8000,
      yiaddr: "10.20.0.57",
      siaddr: "10.20.0.1",
      options: new Map([
        [OPT.MSG_TYPE, enc.u8(DHCP4.OFFER)],
        [OPT.SERVER_ID, enc.ip("10.20.0.1")],
        [OPT.LEASE_TIME, enc.u32(3600)],
        [OPT.SUBNET_MASK, enc.ip("255.255.255.0")],
        [OPT.ROUTER, enc.ips(["10.20.0.1"])],
      ]),
    });
    const b = encodeDhcp4(m);
    expect(b.length).toBe(300);
    expect(toHex(b.subarray(0, 44))).toBe(
      "02010600 deadbeef 0000 8000 00000000 0a140039 0a140001 00000000 525400123456 00000000000000000000".replace(
        /\s/g,
        "",
      ),
    );
    expect(toHex(b.subarray(236, 240 + 28))).toBe(
      "63825363 350102 36040a140001 33040000 0e10 0104ffffff00 03040a140001 ff".replace(/\s/g, ""),
    );
    expect(b.subarray(268).every((x) => x === 0)).toBe(true);
    expect(parseDhcp4(b)).toEqual(m);
  });

  test("values over 255 bytes split into consecutive instances and reassemble (RFC 3396)", () => {
    const big = Uint8Array.from({ length: 600 }, (_, i) => i & 255);
    const m = message({
      options: new Map([
        [OPT.MSG_TYPE, enc.u8(DHCP4.ACK)],
        [OPT.CLASSLESS_ROUTES, big],
        [80, new Uint8Array(0)],
      ]),
    });
    const b = encodeDhcp4(m);
    // 53: 3 bytes; 121: 255 + 255 + 90 with three headers; 80: empty; END.
    expect(b.length).toBe(240 + 3 + 606 + 2 + 1);
    expect([b[243], b[244], b[243 + 257], b[244 + 257], b[243 + 514], b[244 + 514]]).toEqual([
      121, 255, 121, 255, 121, 90,
    ]);
    expect([b[849], b[850], b[851]]).toEqual([80, 0, 255]);
    expect(parseDhcp4(b)).toEqual(m);
    // Exactly 255 is one instance, 256 two.
    const n255 = encodeDhcp4(message({ options: new Map([[1, new Uint8Array(255)]]) }));
    expect([n255[240], n255[241], n255[240 + 257]]).toEqual([1, 255, 255]);
    const n256 = encodeDhcp4(message({ options: new Map([[1, new Uint8Array(256)]]) }));
    expect([n256[240 + 257], n256[240 + 258]]).toEqual([1, 1]);
  });

  test("interleaved instances of one code concatenate in wire order; Map order is first appearance", () => {
    const m = parseDhcp4(raw([12, 2, 0x61, 0x62, 53, 1, 3, 12, 1, 0x63, 0, 0, 255]));
    expect([...m.options.keys()]).toEqual([12, 53]);
    expect(dec.text(m.options.get(12)!)).toBe("abc");
  });

  test("overload: options from file, then sname, are merged after the options field", () => {
    const pkt = raw([52, 1, 3, 12, 1, 0x61, 255], {
      file: [12, 1, 0x62, 53, 1, 5, 255],
      sname: [12, 1, 0x63, 0, 0, 3, 4, 10, 0, 0, 1, 255],
    });
    const m = parseDhcp4(pkt);
    expect(m.sname).toBe("");
    expect(m.file).toBe("");
    expect([...m.options.keys()]).toEqual([12, 53, 3]);
    expect(dec.text(m.options.get(12)!)).toBe("abc");
    expect(messageType(m)).toBe(DHCP4.ACK);
    expect(m.options.has(OPT.OVERLOAD)).toBe(false);
    // Re-encoding moves everything into the options field.
    expect(parseDhcp4(encodeDhcp4(m))).toEqual(m);
  });

  test("overload 1 uses only file; sname keeps its text; missing END in a field is tolerated", () => {
    const sname = [...Buffer.from("boot.example", "latin1")];
    const m = parseDhcp4(raw([52, 1, 1, 255], { sname, file: [53, 1, 2] }));
    expect(m.sname).toBe("boot.example");
    expect(m.file).toBe("");
    expect(messageType(m)).toBe(DHCP4.OFFER);
    const m2 = parseDhcp4(raw([52, 1, 2, 255], { sname: [53, 1, 2], file: [...Buffer.from("pxelinux.0")] }));
    expect(m2).toMatchObject({ sname: "", file: "pxelinux.0" });
  });

  test("bad overload is refused: value, length, loops through file or sname, options cut at a field end", () => {
    for (const pkt of [
      raw([52, 1, 0, 255]),
      raw([52, 1, 4, 255]),
      raw([52, 0, 255]),
      raw([52, 2, 1, 1, 255]),
      raw([52, 1, 1, 52, 1, 1, 255]),
      raw([52, 1, 1, 255], { file: [52, 1, 2, 255] }),
      raw([52, 1, 2, 255], { sname: [52, 1, 3, 255] }),
      raw([52, 1, 3, 255], { sname: [52, 1, 1] }),
      raw([52, 1, 1, 255], { file: [...new Array(127).fill(0), 12] }),
      raw([52, 1, 2, 255], { sname: [...new Array(62).fill(0), 12, 5] }),
    ])
      expect(() => parseDhcp4(pkt)).toThrow(Dhcp4FormatError);
  });

  test("sname and file are latin1 up to the first NUL; the encoder refuses what would not survive", () => {
    const sname = [0x73, 0xe9, 0x72, 0, 0x67, 0x61, 0x72, 0x62];
    const m = parseDhcp4(raw([255], { sname, file: [...Buffer.from("a".repeat(128))] }));
    expect(m.sname).toBe("sér");
    expect(m.file).toBe("a".repeat(128));
    expect(parseDhcp4(encodeDhcp4(m))).toEqual(m);
    for (const over of [{ sname: "x".repeat(65) }, { file: "x".repeat(129) }, { sname: "a\0b" }, { file: "€" }])
      expect(() => encodeDhcp4(message(over))).toThrow(Dhcp4FormatError);
  });

  test("framing errors: short, bad cookie, bad op, hlen over 16, options past the end", () => {
    expect(() => parseDhcp4(new Uint8Array(239))).toThrow(Dhcp4FormatError);
    const ok = raw([53, 1, 1, 255]);
    expect(messageType(parseDhcp4(ok))).toBe(1);
    const cookie = ok.slice();
    cookie[239] = 0x64;
    expect(() => parseDhcp4(cookie)).toThrow(Dhcp4FormatError);
    for (const op of [0, 3, 255]) {
      const b = ok.slice();
      b[0] = op;
      expect(() => parseDhcp4(b)).toThrow(Dhcp4FormatError);
    }
    const hl = ok.slice();
    hl[2] = 17;
    expect(() => parseDhcp4(hl)).toThrow(Dhcp4FormatError);
    hl[2] = 16;
    expect(parseDhcp4(hl).hlen).toBe(16);
    expect(() => parseDhcp4(raw([53, 5, 1]))).toThrow(Dhcp4FormatError);
    expect(() => parseDhcp4(raw([12, 2, 0x61]))).toThrow(Dhcp4FormatError);
    expect(() => parseDhcp4(raw([52, 1, 2], { sname: [...new Array(61).fill(0), 12, 2, 0x61] }))).toThrow(
      Dhcp4FormatError,
    );
    expect(() => parseDhcp4(raw([52, 1, 1], { file: [...new Array(125).fill(0), 12, 2, 0x61] }))).toThrow(
      Dhcp4FormatError,
    );
    expect(() => parseDhcp4(raw([53, 1, 1, 12]))).toThrow(Dhcp4FormatError);
    expect(() => parseDhcp4(raw([53, 1, 1, 12, 3, 0x61]))).toThrow(Dhcp4FormatError);
    expect(() => parseDhcp4("x" as unknown as Uint8Array)).toThrow(Dhcp4FormatError);
  });

  test("missing END is tolerated when no option is cut short; bytes after END are ignored", () => {
    expect(messageType(parseDhcp4(raw([53, 1, 3])))).toBe(3);
    expect(messageType(parseDhcp4(raw([53, 1, 3, 0, 0])))).toBe(3);
    expect([...parseDhcp4(raw([53, 1, 3, 255, 12, 200])).options.keys()]).toEqual([53]);
    expect(parseDhcp4(raw([])).options.size).toBe(0);
  });

  test("a Buffer slice of a larger pool is read at its own offset", () => {
    const pkt = fixture("dhclient-discover.hex");
    const pool = Buffer.alloc(pkt.length + 100, 0xee);
    pool.set(pkt, 37);
    const m = parseDhcp4(pool.subarray(37, 37 + pkt.length));
    expect(m.xid).toBe(0x5d1a93c7);
    expect(m.chaddr.constructor).toBe(Uint8Array);
    expect(m.options.get(OPT.HOSTNAME)!.constructor).toBe(Uint8Array);
    // Values are copies: recycling the receive buffer must not change a parsed message.
    pool.fill(0);
    expect(dec.text(m.options.get(OPT.HOSTNAME)!)).toBe("web-1");
  });

  test("maxSize bounds the IP datagram: 576 leaves 548 bytes of DHCP payload", () => {
    const withPayload = (n: number) => message({ options: new Map([[43, new Uint8Array(n)]]) });
    // 240 + (2 + n) + END = 548 ⇒ n = 305 (two instances: 4 header bytes) ⇒ n = 303.
    expect(encodeDhcp4(withPayload(303), 576).length).toBe(548);
    expect(() => encodeDhcp4(withPayload(304), 576)).toThrow(Dhcp4FormatError);
    expect(() => encodeDhcp4(withPayload(304), 300)).toThrow(Dhcp4FormatError); // below 576 counts as 576
    expect(encodeDhcp4(withPayload(304), 1500).length).toBe(549);
    expect(encodeDhcp4(withPayload(5000)).length).toBeGreaterThan(5000);
  });

  test("encoder refuses what it cannot represent", () => {
    for (const over of [
      { op: 0 },
      { hlen: 17 },
      { htype: 256 },
      { xid: -1 },
      { secs: 65536 },
      { flags: 1.5 },
      { ciaddr: "1.2.3" },
      { giaddr: "::1" },
      { chaddr: new Uint8Array(17) },
      { options: new Map([[OPT.PAD, new Uint8Array(1)]]) },
      { options: new Map([[OPT.END, new Uint8Array(0)]]) },
      { options: new Map([[OPT.OVERLOAD, enc.u8(3)]]) },
      { options: new Map([[256, new Uint8Array(0)]]) },
      { options: new Map([[12, "x" as unknown as Uint8Array]]) },
    ] as Array<Partial<Dhcp4Message>>)
      expect(() => encodeDhcp4(message(over))).toThrow(Dhcp4FormatError);
    // A short chaddr is zero-padded to its 16 wire bytes.
    const m = parseDhcp4(encodeDhcp4(message({ chaddr: Uint8Array.of(1, 2, 3, 4, 5, 6) })));
    expect(toHex(m.chaddr)).toBe(`010203040506${"00".repeat(10)}`);
  });

  test("macOf needs Ethernet; messageType needs exactly one byte", () => {
    expect(macOf(message())).toBe("52:54:00:12:34:56");
    expect(() => macOf(message({ htype: 6 }))).toThrow(Dhcp4FormatError);
    expect(() => macOf(message({ hlen: 16 }))).toThrow(Dhcp4FormatError);
    expect(messageType(message({ options: new Map() }))).toBeUndefined();
    expect(messageType(message({ options: new Map([[53, Uint8Array.of(1, 1)]]) }))).toBeUndefined();
    expect(messageType(message({ options: new Map([[53, Uint8Array.of(8)]]) }))).toBe(DHCP4.INFORM);
  });

  test("parsing is linear: 32k tiny options of one code and 32k of many codes", () => {
    const same = new Uint8Array(240 + 65536 + 1);
    same.set([1, 1, 6, 0]);
    same.set([99, 130, 83, 99], 236);
    for (let i = 0; i < 32768; i++) same.set([77, 0], 240 + 2 * i);
    same[240 + 65536] = 255;
    const spread = same.slice();
    for (let i = 0; i < 32768; i++) spread.set([1 + (i % 254 === 51 ? 52 : i % 254), 0], 240 + 2 * i);
    const t0 = performance.now();
    expect(parseDhcp4(same).options.get(77)!.length).toBe(0);
    expect(parseDhcp4(spread).options.size).toBe(253);
    expect(performance.now() - t0).toBeLessThan(300);
  });
});

// ---- properties --------------------------------------------------------------------------------

const latin1 = (max: number) =>
  fc.oneof(
    fc.constant(""),
    fc.string({ unit: fc.integer({ min: 1, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: max }),
  );
const optionCode = fc.integer({ min: 1, max: 254 }).filter((c) => c !== OPT.OVERLOAD);
const optionValue = fc.oneof(
  { weight: 5, arbitrary: fc.uint8Array({ maxLength: 16 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 700 }) },
);
const messageArb: fc.Arbitrary<Dhcp4Message> = fc.record({
  op: fc.constantFrom(1, 2),
  htype: fc.integer({ min: 0, max: 255 }),
  hlen: fc.integer({ min: 0, max: 16 }),
  hops: fc.integer({ min: 0, max: 255 }),
  xid: fc.integer({ min: 0, max: 0xffffffff }),
  secs: fc.integer({ min: 0, max: 0xffff }),
  flags: fc.integer({ min: 0, max: 0xffff }),
  ciaddr: fc.ipV4(),
  yiaddr: fc.ipV4(),
  siaddr: fc.ipV4(),
  giaddr: fc.ipV4(),
  chaddr: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  sname: latin1(63),
  file: latin1(127),
  options: fc
    .uniqueArray(fc.tuple(optionCode, optionValue), { selector: (t) => t[0], maxLength: 12 })
    .map((entries) => new Map(entries)),
});

const label = fc.stringMatching(/^[a-zA-Z0-9_-]{1,12}$/);
const domainName = fc.array(label, { minLength: 1, maxLength: 5 }).map((ls) => ls.join("."));
/** Names drawn from a small pool of labels so that compression actually finds shared suffixes. */
const searchList = fc
  .tuple(fc.array(label, { minLength: 1, maxLength: 4 }), fc.array(fc.array(fc.nat(), { minLength: 1, maxLength: 5 })))
  .map(([pool, picks]) => picks.map((p) => p.map((i) => pool[i % pool.length]!).join(".")))
  .filter((l) => l.length > 0);

const route = fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 }), fc.ipV4()).map(([ip, w, via]) => {
  const n = ip.split(".").reduce((a, o) => a * 256 + Number(o), 0);
  const mask = w === 0 ? 0 : (0xffffffff << (32 - w)) >>> 0;
  const net = (n & mask) >>> 0;
  return { dst: `${net >>> 24}.${(net >>> 16) & 255}.${(net >>> 8) & 255}.${net & 255}/${w}`, via };
});

/** Every reader on every option value: any of them may refuse, none may crash. */
function readAll(m: Dhcp4Message): void {
  for (const v of m.options.values()) {
    for (const f of [dec.u8, dec.u16, dec.u32, dec.ip, dec.ips, dec.text, dec.domainSearch, dec.classlessRoutes])
      onlyFormatErrors(() => f(v));
  }
  onlyFormatErrors(() => macOf(m));
  messageType(m);
}

type Mutation =
  | { kind: "flip"; pos: number; bit: number }
  | { kind: "set"; pos: number; value: number }
  | { kind: "truncate"; pos: number }
  | { kind: "insert"; pos: number; bytes: Uint8Array };

const position = fc.integer({ min: 0, max: 1999 });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), pos: position, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({
    kind: fc.constant("set" as const),
    pos: position,
    // Huge lengths (255), overload (52), END/PAD and loops back into the fields are the interesting values.
    value: fc.oneof(fc.constantFrom(0, 1, 2, 3, 52, 119, 121, 0xc0, 255), fc.integer({ min: 0, max: 255 })),
  }),
  fc.record({ kind: fc.constant("truncate" as const), pos: position }),
  fc.record({
    kind: fc.constant("insert" as const),
    pos: position,
    bytes: fc.uint8Array({ minLength: 1, maxLength: 6 }),
  }),
);

/** Positions under 1000 land in the options and fields (offset 44 on), the rest anywhere. */
function place(pos: number, len: number): number {
  if (len === 0) return 0;
  return pos < 1000 && len > 44 ? 44 + (pos % (len - 44)) : pos % len;
}

function mutate(base: Uint8Array, ms: Mutation[]): Uint8Array {
  let b = base.slice();
  for (const m of ms) {
    const at = place(m.pos, b.length);
    if (m.kind === "flip" && b.length > 0) b[at] = b[at]! ^ (1 << m.bit);
    else if (m.kind === "set" && b.length > 0) b[at] = m.value;
    else if (m.kind === "truncate") b = b.slice(0, at);
    else if (m.kind === "insert") {
      const n = new Uint8Array(b.length + m.bytes.length);
      n.set(b.subarray(0, at));
      n.set(m.bytes, at);
      n.set(b.subarray(at), at + m.bytes.length);
      b = n;
    }
  }
  return b;
}

const overloaded = [
  raw([52, 1, 3, 12, 1, 0x61, 255], { file: [12, 1, 0x62, 53, 1, 5, 255], sname: [119, 3, 1, 0x61, 0, 255] }),
  raw([52, 1, 1, 255], { file: [52, 1, 1, 255] }),
  raw([52, 1, 3, 255], { file: [52, 1, 2, 121, 5, 0, 10, 0, 0, 1], sname: [52, 1, 1, 255] }),
];
const bases = fc.oneof(
  fc.constantFrom(...FIXTURES.map(fixture), ...overloaded),
  messageArb.map((m) => encodeDhcp4(m)),
);

describe("properties", () => {
  test("parseDhcp4(encodeDhcp4(m)) deep-equals m", () => {
    fc.assert(
      fc.property(messageArb, (m) => {
        expect(parseDhcp4(encodeDhcp4(m))).toEqual(m);
      }),
      { numRuns: 2000 },
    );
  });

  test("domain search lists and classless routes round-trip", () => {
    fc.assert(
      fc.property(fc.oneof(searchList, fc.array(domainName, { minLength: 1, maxLength: 8 })), (names) => {
        const bytes = enc.domainSearch(names);
        expect(dec.domainSearch(bytes)).toEqual(names);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.array(route, { minLength: 1, maxLength: 10 }), (routes) => {
        expect(dec.classlessRoutes(enc.classlessRoutes(routes))).toEqual(routes);
      }),
      { numRuns: 2000 },
    );
  });

  test("arbitrary bytes: parseDhcp4 and every reader throw nothing but Dhcp4FormatError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.boolean(), (bytes, framed) => {
        // Half the inputs get a valid header and cookie so that the option scanner sees random data.
        const b = framed ? raw([...bytes]) : bytes;
        const m = onlyFormatErrors(() => parseDhcp4(b));
        if (m !== undefined) readAll(m);
        for (const f of [dec.u8, dec.u16, dec.u32, dec.ip, dec.ips, dec.text, dec.domainSearch, dec.classlessRoutes])
          onlyFormatErrors(() => f(bytes));
      }),
      { numRuns: 2000 },
    );
  });

  test("mutated valid packets: only Dhcp4FormatError, and whatever parses re-encodes to the same message", () => {
    fc.assert(
      fc.property(bases, fc.array(mutation, { minLength: 1, maxLength: 4 }), (base, ms) => {
        const m = onlyFormatErrors(() => parseDhcp4(mutate(base, ms)));
        if (m === undefined) return;
        readAll(m);
        expect(parseDhcp4(encodeDhcp4(m))).toEqual(m);
      }),
      { numRuns: 3000 },
    );
  });
});
