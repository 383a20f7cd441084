/** The BGP codec (src/gateway/bgp/codec.ts): messages encoded byte for byte as the RFCs lay
 * them out, decoded back, every malformed field answered with the NOTIFICATION code and
 * subcode the RFCs give, and mutated messages (STM_BGP_FUZZ of them, 1,000,000 by default)
 * never throwing anything but a BgpError. */
import { describe, expect, test } from "bun:test";
import { MUTATORS, Rng } from "../../scripts/fuzzing/corpus";
import {
  AFI,
  AS_TRANS,
  BgpError,
  decodeMessage,
  ERR,
  encodeAnnounce,
  encodeEndOfRib,
  encodeKeepalive,
  encodeNotification,
  encodeOpen,
  encodeWithdraw,
  Framer,
  isEndOfRib,
  MARKER,
  MSG,
  type OpenMessage,
  parsePrefix,
  prefixToString,
  SUB,
  type UpdateMessage,
} from "../../src/gateway/bgp/codec";

const hex = (b: Buffer) => b.toString("hex");
const ff16 = "ff".repeat(16);

/** The BgpError `fn` throws, as [code, subcode]. */
function rejects(fn: () => unknown): [number, number] {
  try {
    fn();
  } catch (e) {
    if (e instanceof BgpError) return [e.code, e.subcode];
    throw e;
  }
  throw new Error("accepted");
}

const open = () =>
  encodeOpen({
    asn: 4_200_000_001,
    holdTime: 90,
    bgpId: "10.99.0.1",
    families: [
      { afi: 1, safi: 1 },
      { afi: 2, safi: 1 },
    ],
    gracefulRestart: { restarting: true, time: 120, forwarding: true },
  });

describe("encoding, byte for byte", () => {
  test("KEEPALIVE is the marker, length 19, type 4", () => {
    expect(hex(encodeKeepalive())).toBe(`${ff16}001304`);
  });

  test("NOTIFICATION: code, subcode, data", () => {
    expect(hex(encodeNotification(6, 2, Buffer.from("bye")))).toBe(
      `${ff16}00180306 02${Buffer.from("bye").toString("hex")}`.replace(" ", ""),
    );
  });

  test("OPEN: version 4, AS_TRANS for a 4-byte AS, hold time, id, capabilities", () => {
    const b = open();
    expect(b.subarray(0, 16).equals(MARKER)).toBe(true);
    expect(b.readUInt16BE(16)).toBe(b.length);
    expect(b[18]).toBe(MSG.OPEN);
    expect(b[19]).toBe(4);
    expect(b.readUInt16BE(20)).toBe(AS_TRANS);
    expect(b.readUInt16BE(22)).toBe(90);
    expect([...b.subarray(24, 28)]).toEqual([10, 99, 0, 1]);
    // One capabilities parameter: MP IPv4, MP IPv6, route refresh, graceful restart, AS4.
    const params = b.subarray(29);
    expect(b[28]).toBe(params.length);
    expect(params[0]).toBe(2);
    expect(hex(params.subarray(2, 14))).toBe("010400010001" + "010400020001");
    expect(hex(params.subarray(14, 16))).toBe("0200");
    // GR: restarting bit + 120 s, then each family with its forwarding bit.
    expect(hex(params.subarray(16, 28))).toBe("400a" + "8078" + "00010180" + "00020180");
    expect(hex(params.subarray(28))).toBe(`4104${(4_200_000_001).toString(16)}`);
  });

  test("an IPv4 announce: ORIGIN IGP, AS_PATH of our AS, NEXT_HOP, NLRI with only the prefix's bytes", () => {
    const b = encodeAnnounce({
      asn: 65001,
      prefixes: [parsePrefix("10.20.0.0/24"), parsePrefix("10.128.0.0/9")],
      nextHop: "10.99.0.1",
    });
    const body = b.subarray(19);
    expect(body.readUInt16BE(0)).toBe(0); // no withdrawn routes
    const al = body.readUInt16BE(2);
    expect(hex(body.subarray(4, 4 + al))).toBe(
      "400101" + "00" + "400206" + "0201" + "0000fde9" + "400304" + "0a630001",
    );
    expect(hex(body.subarray(4 + al))).toBe("180a1400" + "090a80");
  });

  test("an IPv6 announce goes in MP_REACH_NLRI with the global and link-local next hops", () => {
    const b = encodeAnnounce({
      asn: 65001,
      prefixes: [parsePrefix("fd20::/64")],
      nextHop: "fd99::1",
      nextHopLocal: "fe80::1",
    });
    const m = decodeMessage(b) as UpdateMessage;
    expect(m.announced).toEqual([]);
    expect(m.mpReach?.afi).toBe(AFI.IPV6);
    expect(m.mpReach?.nextHops).toEqual(["fd99::1", "fe80::1"]);
    expect(m.mpReach?.prefixes.map(prefixToString)).toEqual(["fd20::/64"]);
    expect(m.asPath).toEqual([65001]);
    expect(m.origin).toBe(0);
  });

  test("a standby gateway's worse path: the AS repeated (AS_PATH of four), both families", () => {
    const b = encodeAnnounce({ asn: 65001, prefixes: [parsePrefix("10.20.0.0/24")], nextHop: "10.99.0.1", prepend: 3 });
    const body = b.subarray(19);
    const al = body.readUInt16BE(2);
    expect(hex(body.subarray(4, 4 + al))).toContain(`4002120204${"0000fde9".repeat(4)}`);
    expect((decodeMessage(b) as UpdateMessage).asPath).toEqual([65001, 65001, 65001, 65001]);
    const v6 = decodeMessage(
      encodeAnnounce({ asn: 65001, prefixes: [parsePrefix("fd20::/64")], nextHop: "fd99::1", prepend: 2 }),
    ) as UpdateMessage;
    expect(v6.asPath).toEqual([65001, 65001, 65001]);
  });

  test("withdraws and End-of-RIB, both families", () => {
    const w4 = decodeMessage(encodeWithdraw(1, [parsePrefix("10.20.0.0/24")])) as UpdateMessage;
    expect(w4.withdrawn.map(prefixToString)).toEqual(["10.20.0.0/24"]);
    const w6 = decodeMessage(encodeWithdraw(2, [parsePrefix("fd20::/64")])) as UpdateMessage;
    expect(w6.mpUnreach?.prefixes.map(prefixToString)).toEqual(["fd20::/64"]);
    // RFC 4724: IPv4's is an empty UPDATE (23 bytes), IPv6's an empty MP_UNREACH_NLRI.
    expect(hex(encodeEndOfRib(1))).toBe(`${ff16}00170200000000`);
    for (const afi of [1, 2] as const)
      expect(isEndOfRib(decodeMessage(encodeEndOfRib(afi)) as UpdateMessage)).toBe(true);
    expect(isEndOfRib(w4)).toBe(false);
    expect(isEndOfRib(w6)).toBe(false);
  });

  test("prefixes print as operators write them; host bits are cleared", () => {
    for (const t of ["10.20.0.0/24", "0.0.0.0/0", "fd20::/64", "2001:db8:0:1::/64", "::/0", "fd00:1:2:3:4:5:6:7/128"])
      expect(prefixToString(parsePrefix(t))).toBe(t);
    expect(prefixToString(parsePrefix("10.20.0.7/24"))).toBe("10.20.0.0/24");
    expect(() => parsePrefix("10.20.0.0/33")).toThrow();
  });
});

describe("decoding", () => {
  test("an OPEN comes back with its capabilities", () => {
    const m = decodeMessage(open()) as OpenMessage;
    expect(m).toMatchObject({ type: MSG.OPEN, version: 4, myAs: AS_TRANS, holdTime: 90, bgpId: "10.99.0.1" });
    expect(m.caps.as4).toBe(4_200_000_001);
    expect(m.caps.families).toEqual([
      { afi: 1, safi: 1 },
      { afi: 2, safi: 1 },
    ]);
    expect(m.caps.routeRefresh).toBe(true);
    expect(m.caps.gracefulRestart).toEqual({
      restarting: true,
      time: 120,
      families: [
        { afi: 1, safi: 1, forwarding: true },
        { afi: 2, safi: 1, forwarding: true },
      ],
    });
  });

  test("the framer splits a stream at any cut and rejects a bad header as soon as it is in", () => {
    const stream = Buffer.concat([
      open(),
      encodeKeepalive(),
      encodeAnnounce({ asn: 1, prefixes: [parsePrefix("10.0.0.0/8")], nextHop: "1.1.1.1" }),
    ]);
    for (let cut = 1; cut < stream.length; cut += 7) {
      const f = new Framer();
      const msgs = [...f.push(stream.subarray(0, cut)), ...f.push(stream.subarray(cut))];
      expect(msgs.map((m) => m[18])).toEqual([1, 4, 2]);
      expect(f.pending).toBe(0);
    }
    const bad = Buffer.from(encodeKeepalive());
    bad[3] = 0;
    expect(rejects(() => new Framer().push(bad))).toEqual([ERR.HEADER, SUB.HEADER_NOT_SYNCHRONIZED]);
    const long = Buffer.from(encodeKeepalive());
    long.writeUInt16BE(5000, 16);
    expect(rejects(() => new Framer().push(long))).toEqual([ERR.HEADER, SUB.HEADER_BAD_LENGTH]);
  });

  const withByte = (b: Buffer, off: number, v: number) => {
    const c = Buffer.from(b);
    c[off] = v;
    return c;
  };

  test("each broken rule gets its code and subcode", () => {
    const ka = encodeKeepalive();
    const o = open();
    const up = encodeAnnounce({ asn: 65001, prefixes: [parsePrefix("10.20.0.0/24")], nextHop: "10.99.0.1" });
    const cases: Array<[string, Buffer, [number, number]]> = [
      ["unknown type", withByte(ka, 18, 9), [ERR.HEADER, SUB.HEADER_BAD_TYPE]],
      [
        "KEEPALIVE with a body",
        Buffer.concat([ka.subarray(0, 16), Buffer.from([0, 20, 4, 0])]),
        [ERR.HEADER, SUB.HEADER_BAD_LENGTH],
      ],
      ["OPEN version 3", withByte(o, 19, 3), [ERR.OPEN, SUB.OPEN_UNSUPPORTED_VERSION]],
      ["hold time 1 s", withByte(withByte(o, 22, 0), 23, 1), [ERR.OPEN, SUB.OPEN_UNACCEPTABLE_HOLD_TIME]],
      [
        "BGP id 0.0.0.0",
        Buffer.concat([o.subarray(0, 24), Buffer.alloc(4), o.subarray(28)]),
        [ERR.OPEN, SUB.OPEN_BAD_BGP_ID],
      ],
      ["optional parameter type 1", withByte(o, 29, 1), [ERR.OPEN, SUB.OPEN_UNSUPPORTED_PARAMETER]],
      ["ORIGIN 7", withByte(up, 26, 7), [ERR.UPDATE, SUB.UPDATE_INVALID_ORIGIN]],
      ["ORIGIN marked optional", withByte(up, 23, 0xc0), [ERR.UPDATE, SUB.UPDATE_ATTRIBUTE_FLAGS]],
      ["AS_PATH segment type 9", withByte(up, 30, 9), [ERR.UPDATE, SUB.UPDATE_MALFORMED_AS_PATH]],
      ["NLRI /40", withByte(up, up.length - 4, 40), [ERR.UPDATE, SUB.UPDATE_INVALID_NETWORK_FIELD]],
    ];
    for (const [what, b, want] of cases)
      expect({ what, got: rejects(() => decodeMessage(b)) }).toEqual({ what, got: want });
    // A route without NEXT_HOP: ORIGIN, AS_PATH and NLRI only.
    const noNh = Buffer.from(up);
    const body = noNh.subarray(19);
    const al = body.readUInt16BE(2);
    const trimmed = Buffer.concat([body.subarray(0, 4 + al - 7), body.subarray(4 + al)]);
    trimmed.writeUInt16BE(al - 7, 2);
    const msg = Buffer.concat([MARKER, Buffer.from([0, 19 + trimmed.length, 2]), trimmed]);
    expect(rejects(() => decodeMessage(msg))).toEqual([ERR.UPDATE, SUB.UPDATE_MISSING_WELL_KNOWN]);
  });
});

describe("fuzz", () => {
  const N = Number(process.env.STM_BGP_FUZZ ?? 1_000_000);
  const seeds = [
    open(),
    encodeOpen({ asn: 65001, holdTime: 0, bgpId: "1.2.3.4", families: [{ afi: 1, safi: 1 }] }),
    encodeKeepalive(),
    encodeNotification(6, 4, Buffer.from("reset")),
    encodeAnnounce({
      asn: 65001,
      prefixes: ["10.0.0.0/8", "10.20.0.0/24", "192.168.7.0/25"].map(parsePrefix),
      nextHop: "10.99.0.1",
    }),
    encodeAnnounce({
      asn: 65001,
      prefixes: ["fd20::/64", "2001:db8::/32"].map(parsePrefix),
      nextHop: "fd99::1",
      nextHopLocal: "fe80::1",
    }),
    encodeAnnounce({
      asn: 65001,
      prefixes: Array.from({ length: 80 }, (_, i) => parsePrefix(`10.${i}.0.0/16`)),
      nextHop: "10.99.0.1",
    }),
    encodeWithdraw(1, [parsePrefix("10.20.0.0/24")]),
    encodeWithdraw(2, [parsePrefix("fd20::/64")]),
    encodeEndOfRib(1),
    encodeEndOfRib(2),
    Buffer.concat([MARKER, Buffer.from([0, 23, 5, 0, 1, 0, 1])]),
  ];
  const names = Object.keys(MUTATORS);

  test(`${N.toLocaleString("en-US")} mutated messages: decoding throws nothing but BgpError, the framer neither`, () => {
    const r = new Rng(20_261_206);
    let rejected = 0;
    for (let i = 0; i < N; i++) {
      let b: Uint8Array = Buffer.from(r.pick(seeds));
      const rounds = 1 + r.int(3);
      for (let k = 0; k < rounds; k++) {
        const mut = MUTATORS[r.pick(names)] as (r: Rng, b: Uint8Array, other: () => Uint8Array) => Uint8Array;
        b = mut(r, b, () => r.pick(seeds));
      }
      // Half keep a consistent header, so the body's rules are reached too.
      const msg = Buffer.from(b);
      if (msg.length >= 19 && r.chance(0.5)) {
        MARKER.copy(msg);
        msg.writeUInt16BE(Math.min(msg.length, 0xffff), 16);
      }
      try {
        decodeMessage(msg, { as4: r.chance(0.8) });
      } catch (e) {
        if (!(e instanceof BgpError)) throw new Error(`#${i} ${msg.toString("hex")}: ${(e as Error).stack}`);
        rejected++;
      }
      try {
        new Framer().push(msg);
      } catch (e) {
        if (!(e instanceof BgpError)) throw new Error(`framer #${i} ${msg.toString("hex")}: ${(e as Error).stack}`);
      }
    }
    // The mutations do reach the rules: most are rejected, some still decode.
    expect(rejected).toBeGreaterThan(N / 4);
    expect(rejected).toBeLessThan(N);
  }, 300_000);
});
