/** Router advertisements: the gateway's RA is byte-exact against one built by hand from RFC 4861
 * and RFC 8106, solicitations are validated, and the codec round-trips and throws only NdFormatError. */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  buildRa,
  decodeRa,
  decodeRs,
  dnsLifetime,
  encodeRa,
  encodeRs,
  NdFormatError,
  type NdOption,
  type RouterAdvert,
  slaacPrefix,
} from "../../src/dhcp/ra";
import { bytesToIp } from "../../src/netlink/codec";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

const NET = { cidr6: "fd00:77::/64", gateway6: "fd00:77::1", mtu: 1400, dnsZone: "net1.internal" };

describe("the gateway's RA", () => {
  test("is byte-exact", () => {
    const got = encodeRa(buildRa({ network: NET, routerMac: "02:aa:00:00:00:01", dnsLifetime: 1800 }));
    const want = hex(`
      86 00 0000  40  c0  0708  00000000  00000000
      01 01 02aa00000001
      05 01 0000 00000578
      03 04 40 c0 00015180 00003840 00000000 fd000077000000000000000000000000
      19 03 0000 00000708 fd000077000000000000000000000001
      1f 03 0000 00000708 046e657431 08696e7465726e616c 00 00
    `);
    // type 134; hop limit 64; M|O; router lifetime 1800 s; then source link-layer address, MTU
    // 1400, prefix fd00:77::/64 with L|A valid 86400 preferred 14400, RDNSS and DNSSL (padded to 8).
    expect(got.toString("hex")).toBe(want.toString("hex"));
  });

  test("advertises the first /64 of a larger IPv6 subnet, where profile addresses live", () => {
    expect(slaacPrefix("fd00:1:2::/48")).toBe("fd00:1:2::");
    const ra = decodeRa(
      encodeRa(
        buildRa({ network: { ...NET, cidr6: "2001:db8:5::/48" }, routerMac: "02:aa:00:00:00:01", dnsLifetime: 60 }),
      ),
    );
    const p = ra.options.find((o) => o.kind === "prefixInfo");
    expect(p).toMatchObject({ prefix: "2001:db8:5::", prefixLength: 64, onLink: true, autonomous: true });
  });

  test("the DNS lifetime covers at least three intervals", () => {
    expect(dnsLifetime(10_000)).toBe(1800);
    expect(dnsLifetime(1_000_000)).toBeGreaterThanOrEqual(3000);
  });

  test("decodes back to what was built", () => {
    const ra = buildRa({ network: NET, routerMac: "02:aa:00:00:00:01", dnsLifetime: 1800 });
    expect(decodeRa(encodeRa(ra))).toEqual(ra);
  });
});

describe("router solicitations", () => {
  test("a kernel's RS with its source link-layer address", () => {
    const rs = decodeRs(hex("85 00 1234 00000000 01 01 020001000005"));
    expect(rs.options).toEqual([{ kind: "sourceLinkAddr", mac: "02:00:01:00:00:05" }]);
  });

  test("malformed: short, wrong type or code, zero-length or overrunning option", () => {
    for (const h of [
      "85 00 0000",
      "86 00 0000 00000000",
      "85 01 0000 00000000",
      "85 00 0000 00000000 01 00",
      "85 00 0000 00000000 01 02 020001000005",
    ])
      expect(() => decodeRs(hex(h))).toThrow(NdFormatError);
  });
});

// ---- properties ----------------------------------------------------------------------------------

const mac = fc
  .uint8Array({ minLength: 6, maxLength: 6 })
  .map((b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":"));
const ip6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => bytesToIp(b));
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const domain = fc
  .array(fc.stringMatching(/^[a-zA-Z0-9_-]{1,20}$/), { minLength: 1, maxLength: 4 })
  .map((l) => l.join("."));
const KNOWN = new Set([1, 2, 3, 5, 25, 31]);
const ndOption: fc.Arbitrary<NdOption> = fc.oneof(
  mac.map((m) => ({ kind: "sourceLinkAddr" as const, mac: m })),
  mac.map((m) => ({ kind: "targetLinkAddr" as const, mac: m })),
  fc.record({
    kind: fc.constant("prefixInfo" as const),
    prefix: ip6,
    prefixLength: fc.integer({ min: 0, max: 255 }),
    onLink: fc.boolean(),
    autonomous: fc.boolean(),
    valid: u32,
    preferred: u32,
  }),
  u32.map((m) => ({ kind: "mtu" as const, mtu: m })),
  fc.record({
    kind: fc.constant("rdnss" as const),
    lifetime: u32,
    servers: fc.array(ip6, { minLength: 1, maxLength: 4 }),
  }),
  fc.record({
    kind: fc.constant("dnssl" as const),
    lifetime: u32,
    domains: fc.array(domain, { minLength: 1, maxLength: 3 }),
  }),
  fc
    .record({
      type: fc.integer({ min: 0, max: 255 }).filter((t) => !KNOWN.has(t)),
      units: fc.integer({ min: 1, max: 4 }),
      seed: fc.uint8Array({ minLength: 30, maxLength: 30 }),
    })
    .map(({ type, units, seed }) => ({
      kind: "unknown" as const,
      type,
      data: Buffer.from(seed.subarray(0, units * 8 - 2)),
    })),
);
const ra: fc.Arbitrary<RouterAdvert> = fc.record({
  curHopLimit: fc.integer({ min: 0, max: 255 }),
  managed: fc.boolean(),
  other: fc.boolean(),
  routerLifetime: fc.integer({ min: 0, max: 0xffff }),
  reachableTime: u32,
  retransTimer: u32,
  options: fc.array(ndOption, { maxLength: 6 }),
});

describe("properties", () => {
  test("decodeRa ∘ encodeRa = id", () => {
    fc.assert(fc.property(ra, (r) => expect(decodeRa(encodeRa(r))).toEqual(r)));
  });

  test("decodeRs ∘ encodeRs = id", () => {
    fc.assert(
      fc.property(fc.array(ndOption, { maxLength: 4 }), (options) =>
        expect(decodeRs(encodeRs({ options }))).toEqual({ options }),
      ),
    );
  });

  const onlyNdErrors = (b: Uint8Array) => {
    for (const f of [decodeRa, decodeRs])
      try {
        f(b);
      } catch (e) {
        if (!(e instanceof NdFormatError)) throw e;
      }
  };

  test("random bytes throw only NdFormatError", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), onlyNdErrors), { numRuns: 2000 });
  });

  test("mutated advertisements throw only NdFormatError", () => {
    fc.assert(
      fc.property(
        ra,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
        fc.nat(),
        (r, flips, cut) => {
          const b = encodeRa(r);
          for (const [i, v] of flips) b[i % b.length] = v;
          onlyNdErrors(b.subarray(0, b.length - (cut % (b.length + 1))));
        },
      ),
      { numRuns: 2000 },
    );
  });
});
