/** The netlink codec: exact bytes of requests, decoding of attributes, errors and
 * addresses, and properties (round trips; decoders never throw anything but their own error). */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { AddressFormatError } from "../../src/model/ip";
import {
  Attrs,
  bytesToIp,
  bytesToMac,
  decodeError,
  decodeIfInfo,
  encodeIfInfo,
  ipToBytes,
  MessageBuilder,
  macToBytes,
  NetlinkDecodeError,
  NL,
  parseCidr,
  parseMessages,
} from "../../src/netlink";
import { decodeLink } from "../../src/netlink/link";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

describe("encoding", () => {
  test("bridge creation request is byte-exact", () => {
    const b = new MessageBuilder(
      NL.RTM_NEWLINK,
      NL.NLM_F_REQUEST | NL.NLM_F_ACK | NL.NLM_F_CREATE | NL.NLM_F_EXCL,
      encodeIfInfo({}),
    );
    b.str(NL.IFLA_IFNAME, "br0");
    b.nest(NL.IFLA_LINKINFO, (li) => {
      li.str(NL.IFLA_INFO_KIND, "bridge");
      li.nest(NL.IFLA_INFO_DATA, (d) => d.u32(NL.IFLA_BR_STP_STATE, 0));
    });
    const got = b.finish(7, 0);
    const want = hex(`
      44000000 1000 0506 07000000 00000000
      00 00 0000 00000000 00000000 00000000
      0800 0300 62723000
      1c00 1280
        0b00 0100 62726964676500 00
        0c00 0280
          0800 0500 00000000`);
    expect(got.toString("hex")).toBe(want.toString("hex"));
  });

  test("attributes are padded to 4 bytes and lengths exclude the padding", () => {
    const b = new MessageBuilder(1, 0, Buffer.alloc(0));
    b.attr(9, Buffer.from([1, 2, 3, 4, 5]));
    const m = b.finish(0);
    expect(m.length).toBe(16 + 12);
    expect(m.readUInt16LE(16)).toBe(9);
    expect(m.subarray(25, 28)).toEqual(Buffer.from([0, 0, 0]));
  });

  test("unbalanced nesting is refused", () => {
    const b = new MessageBuilder(1, 0, Buffer.alloc(0)).begin(1);
    expect(() => b.finish(0)).toThrow("unterminated");
    expect(() => new MessageBuilder(1, 0, Buffer.alloc(0)).end()).toThrow("without begin");
  });
});

describe("decoding", () => {
  test("a link message decodes kind, MAC, flags and bridge-port data", () => {
    const b = new MessageBuilder(NL.RTM_NEWLINK, 0, encodeIfInfo({ index: 5, flags: NL.IFF_UP | 0x10000 }));
    b.str(NL.IFLA_IFNAME, "vnet0");
    b.u32(NL.IFLA_MTU, 1450);
    b.attr(NL.IFLA_ADDRESS, macToBytes("02:00:0a:14:00:07"));
    b.u32(NL.IFLA_MASTER, 3);
    b.nest(NL.IFLA_LINKINFO, (li) => {
      li.str(NL.IFLA_INFO_KIND, "veth");
      li.str(NL.IFLA_INFO_SLAVE_KIND, "bridge");
      li.nest(NL.IFLA_INFO_SLAVE_DATA, (d) => {
        d.u8(NL.IFLA_BRPORT_LEARNING, 0);
        d.u8(NL.IFLA_BRPORT_UNICAST_FLOOD, 1);
      });
    });
    const [m] = parseMessages(b.finish(1));
    const l = decodeLink((m as { payload: Buffer }).payload);
    expect(l).toMatchObject({
      index: 5,
      name: "vnet0",
      kind: "veth",
      mtu: 1450,
      mac: "02:00:0a:14:00:07",
      master: 3,
      up: true,
      lowerUp: true,
      bridgePort: { learning: false, unicastFlood: true },
    });
  });

  test("NLMSG_ERROR carries errno and the extended-ACK text", () => {
    const tlv = new MessageBuilder(0, 0, Buffer.alloc(0))
      .str(NL.NLMSGERR_ATTR_MSG, "Unknown device type")
      .finish(0)
      .subarray(16);
    const payload = Buffer.concat([Buffer.from([0xea, 0xff, 0xff, 0xff]), Buffer.alloc(16), tlv]); // -22, echoed header
    payload.writeUInt32LE(16, 4);
    const msg = { type: NL.NLMSG_ERROR, flags: NL.NLM_F_ACK_TLVS | 0x100, seq: 1, portId: 0, payload };
    expect(decodeError(msg)).toEqual({ error: -22, message: "Unknown device type" });
    expect(decodeError({ ...msg, flags: 0 })).toEqual({ error: -22 });
  });

  test("truncated input raises NetlinkDecodeError", () => {
    expect(() => parseMessages(hex("ff000000 1000 0000 00000000 00000000"))).toThrow(NetlinkDecodeError);
    expect(() => new Attrs(hex("0900 0100 0102"))).toThrow(NetlinkDecodeError);
    expect(() => decodeIfInfo(Buffer.alloc(8))).toThrow(NetlinkDecodeError);
  });

  test("decoders throw nothing but NetlinkDecodeError on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const buf = Buffer.from(bytes);
        for (const f of [() => parseMessages(buf), () => new Attrs(buf), () => decodeLink(buf)]) {
          try {
            f();
          } catch (e) {
            if (!(e instanceof NetlinkDecodeError)) throw e;
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  test("attributes survive encode → decode, nested or not", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            type: fc.integer({ min: 1, max: 0x3fff }),
            data: fc.uint8Array({ maxLength: 40 }),
            nest: fc.boolean(),
          }),
          {
            maxLength: 12,
          },
        ),
        (attrs) => {
          const b = new MessageBuilder(1, 0, Buffer.alloc(0));
          for (const a of attrs) {
            if (a.nest) b.nest(a.type, (n) => n.attr(1, a.data));
            else b.attr(a.type, a.data);
          }
          const [m] = parseMessages(b.finish(3));
          const decoded = new Attrs((m as { payload: Buffer }).payload);
          expect(decoded.all.length).toBe(attrs.length);
          decoded.all.forEach(([type, payload], i) => {
            const a = attrs[i] as (typeof attrs)[number];
            expect(type).toBe(a.type);
            const data = a.nest ? new Attrs(payload).get(1) : payload;
            expect(Buffer.from(data as Buffer).equals(Buffer.from(a.data))).toBe(true);
          });
        },
      ),
    );
  });
});

describe("addresses", () => {
  test("IPv6 text follows RFC 5952", () => {
    expect(bytesToIp(ipToBytes("fd00:0:0:0:0:0:0:1"))).toBe("fd00::1");
    expect(bytesToIp(ipToBytes("2001:db8:0:0:1:0:0:1"))).toBe("2001:db8::1:0:0:1");
    expect(bytesToIp(ipToBytes("::"))).toBe("::");
    expect(bytesToIp(ipToBytes("::ffff:10.0.0.1"))).toBe("::ffff:a00:1");
    expect(bytesToIp(ipToBytes("1:0:1:1:1:1:1:1"))).toBe("1:0:1:1:1:1:1:1");
  });

  test("IPv4 and IPv6 round-trip through bytes", () => {
    fc.assert(fc.property(fc.ipV4(), (ip) => expect(bytesToIp(ipToBytes(ip))).toBe(ip)));
    fc.assert(
      fc.property(fc.ipV6(), (ip) => {
        const b = ipToBytes(ip);
        expect(ipToBytes(bytesToIp(b)).equals(b)).toBe(true);
      }),
    );
  });

  test("bad addresses, MACs and prefixes are refused", () => {
    for (const bad of ["10.0.0", "10.0.0.256", "1::2::3", "1:2:3:4:5:6:7:8:9", "zz::1", ""])
      expect(() => ipToBytes(bad)).toThrow(AddressFormatError);
    expect(() => macToBytes("02:00:00:00:00")).toThrow(AddressFormatError);
    expect(() => parseCidr("10.0.0.1/33")).toThrow(NetlinkDecodeError);
    expect(() => parseCidr("10.0.0.1/2x")).toThrow(NetlinkDecodeError);
    expect(parseCidr("fd00::1/64")).toEqual({ ip: "fd00::1", prefixLen: 64, family: NL.AF_INET6 });
    expect(bytesToMac(macToBytes("2:0:A:b:0:ff"))).toBe("02:00:0a:0b:00:ff");
  });
});
