/** Address math and network validation: every rule has a one-line error that says what
 * is wrong; properties check the math against brute force. */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { StratumError } from "../../src/errors";
import { contains, formatIp, formatSubnet, overlaps, parseIp, parseSubnet, usableHosts } from "../../src/model/ip";
import {
  checkName,
  hostAddress,
  hostIndex,
  linkLocal,
  type Network,
  profileCount,
  profileIp6,
  profileMac,
  validateNetwork,
} from "../../src/model/network";

const invalid = (f: () => unknown, message: string) => {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(StratumError);
  expect((err as StratumError).code).toBe("INVALID");
  expect((err as StratumError).message).toBe(message);
  expect((err as StratumError).message).not.toContain("\n");
};

describe("address math", () => {
  test("subnets parse strictly and format canonically", () => {
    expect(formatSubnet(parseSubnet("10.20.0.0/24"))).toBe("10.20.0.0/24");
    expect(formatSubnet(parseSubnet("fd00:0::/64"))).toBe("fd00::/64");
    invalid(() => parseSubnet("10.20.0.5/24"), '"10.20.0.5/24" has host bits set (the network is 10.20.0.0/24)');
    invalid(() => parseSubnet("10.20.0.0"), '"10.20.0.0" is not a CIDR (address/prefix-length, e.g. 10.20.0.0/24)');
    invalid(() => parseSubnet("10.20.0.0/33"), '"10.20.0.0/33": prefix length 33 is longer than 32 bits');
    invalid(() => parseSubnet("10.20.0.x/24"), '"10.20.0.x" is not an IPv4 or IPv6 address');
  });

  test("plain IPv4 CIDRs (the fast path) read as the general parser reads them", () => {
    const parts = fc.record({
      o: fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 4, maxLength: 4 }),
      len: fc.integer({ min: 0, max: 34 }),
      strict: fc.boolean(),
    });
    fc.assert(
      fc.property(parts, ({ o, len, strict }) => {
        const text = `${o.join(".")}/${len}`;
        // The general parser's reading: the address by parseIp, the mask by hand.
        let want: unknown;
        try {
          if (o.some((x) => x > 255)) throw new Error("not an address");
          if (len > 32) throw new Error("too long");
          const v = parseIp(o.join(".")).value;
          const net = len === 0 ? 0n : (v >> BigInt(32 - len)) << BigInt(32 - len);
          if (strict && net !== v) throw new Error("host bits");
          want = { family: 4, network: net, prefixLen: len };
        } catch {
          want = "refused";
        }
        let got: unknown;
        try {
          got = parseSubnet(text, strict);
        } catch (e) {
          expect(e).toBeInstanceOf(StratumError);
          got = "refused";
        }
        expect(got).toEqual(want);
      }),
      { numRuns: 2000 },
    );
  });

  test("usable hosts exclude network and broadcast", () => {
    expect(usableHosts(parseSubnet("10.0.0.0/16"))).toBe(65534n);
    expect(usableHosts(parseSubnet("10.0.0.0/30"))).toBe(2n);
    expect(profileCount("10.20.0.0/24")).toBe(254);
  });

  test("overlap agrees with brute force on small IPv4 subnets", () => {
    const arb = fc
      .record({ net: fc.integer({ min: 0, max: 255 }), len: fc.integer({ min: 24, max: 32 }) })
      .map(({ net, len }) => {
        const value = BigInt(0x0a000000 + net) & (((1n << 32n) - 1n) ^ ((1n << BigInt(32 - len)) - 1n));
        return { family: 4 as const, network: value, prefixLen: len };
      });
    fc.assert(
      fc.property(arb, arb, (a, b) => {
        let brute = false;
        for (let v = a.network; v < a.network + (1n << BigInt(32 - a.prefixLen)); v++)
          if (contains(b, { family: 4, value: v })) brute = true;
        expect(overlaps(a, b)).toBe(brute);
        expect(overlaps(b, a)).toBe(brute);
      }),
    );
  });

  test("addresses round-trip through their numeric value", () => {
    fc.assert(fc.property(fc.ipV4(), (ip) => expect(formatIp(parseIp(ip))).toBe(ip)));
  });
});

describe("network validation", () => {
  const base = { name: "app-net", cidr: "10.20.0.0/24", gateway: "10.20.0.1" };

  test("a valid network is normalised with defaults", () => {
    expect(validateNetwork(base)).toEqual({
      name: "app-net",
      cidr: "10.20.0.0/24",
      gateway: "10.20.0.1",
      cidr6: undefined,
      gateway6: undefined,
      dhcpRange: { first: "10.20.0.2", last: "10.20.0.254" },
      dnsZone: "app-net.internal",
      dnsForwarders: [],
      mtu: 1500,
      defaultAction: "allow",
      dhcpLeaseTime: 3600,
      dhcpRoutes: [],
      dhcpOptions: [],
      extendToLan: false,
    });
    const v6 = validateNetwork({
      ...base,
      cidr6: "fd20:0:0:0::/64",
      gateway6: "fd20::1",
      dnsForwarders: ["10.0.0.53"],
    });
    expect([v6.cidr6, v6.gateway6, v6.dnsForwarders]).toEqual(["fd20::/64", "fd20::1", ["10.0.0.53"]]);
  });

  test("each bad declaration gets its own one-line error", () => {
    const existing: Network[] = [validateNetwork({ name: "db-net", cidr: "10.30.0.0/16", gateway: "10.30.0.1" })];
    const cases: Array<[Record<string, unknown>, string]> = [
      [
        { name: "App_Net" },
        "invalid network name \"App_Net\": 1-32 characters, lower-case letters, digits and '-', starting with a letter and not ending with '-'",
      ],
      [{ cidr: "10.20.0.7/24" }, '"10.20.0.7/24" has host bits set (the network is 10.20.0.0/24)'],
      [{ gateway: "10.21.0.1" }, "gateway 10.21.0.1 is outside 10.20.0.0/24"],
      [{ gateway: "10.20.0.0" }, "gateway 10.20.0.0 is the network address of 10.20.0.0/24"],
      [{ gateway: "10.20.0.255" }, "gateway 10.20.0.255 is the broadcast address of 10.20.0.0/24"],
      [{ gateway: "fd00::1" }, "gateway fd00::1 is not an IPv4 address like 10.20.0.0/24"],
      [{ cidr: "10.30.5.0/24", gateway: "10.30.5.1" }, "10.30.5.0/24 overlaps network db-net (10.30.0.0/16)"],
      [
        { cidr: "10.20.0.0/31", gateway: "10.20.0.1" },
        "10.20.0.0/31 is too small to hold a gateway and endpoints (at most /30)",
      ],
      [
        { cidr: "10.0.0.0/8", gateway: "10.0.0.1" },
        "10.0.0.0/8 is too large: every address becomes an endpoint profile, at most a /16 (65,534 endpoints)",
      ],
      [
        { dhcpRange: "10.20.0.10-10.20.1.20" },
        "DHCP range 10.20.0.10-10.20.1.20 is outside the usable addresses of 10.20.0.0/24",
      ],
      [{ dhcpRange: "10.20.0.50-10.20.0.10" }, "DHCP range 10.20.0.50-10.20.0.10 ends before it starts"],
      [{ cidr6: "fd00::/64" }, "--cidr6 and --gateway6 go together"],
      [{ mtu: 100 }, "MTU 100 is outside 576-9000"],
      [{ dnsZone: "bad_zone!" }, 'invalid DNS zone "bad_zone!"'],
      [{ mtu: 1500.5 }, "network mtu: Invalid input: expected int, received number"],
    ];
    for (const [patch, message] of cases)
      invalid(() => validateNetwork({ ...base, ...patch } as never, existing), message);
    // A taken name is a conflict (HTTP 409, exit 9), not bad input.
    expect(() =>
      validateNetwork({ ...base, name: "db-net", cidr: "10.40.0.0/24", gateway: "10.40.0.1" } as never, existing),
    ).toThrow(expect.objectContaining({ code: "CONFLICT", message: "network db-net already exists" }));
  });

  test("names", () => {
    for (const ok of ["a", "web-1", "x".repeat(32)]) expect(checkName("endpoint", ok)).toBe(ok);
    for (const bad of ["", "1web", "web-", "Web", "a".repeat(33), "we b"])
      expect(() => checkName("endpoint", bad)).toThrow(StratumError);
  });
});

describe("profiles", () => {
  test("MACs are locally administered, unicast and unique across networks", () => {
    const seen = new Set<string>();
    for (const net of [1, 2, 0x1234])
      for (const i of [0, 1, 253, 65533]) {
        const mac = profileMac(net, i);
        const first = Number.parseInt(mac.slice(0, 2), 16);
        expect(first & 0x02).toBe(2); // locally administered
        expect(first & 0x01).toBe(0); // unicast
        seen.add(mac);
      }
    expect(seen.size).toBe(12);
    expect(profileMac(1, 0)).toBe("02:00:01:00:00:00");
  });

  test("host index and address are inverse", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 65533 }), (i) =>
        expect(hostIndex("10.50.0.0/16", hostAddress("10.50.0.0/16", i))).toBe(i),
      ),
    );
    expect(hostAddress("10.20.0.0/24", 0)).toBe("10.20.0.1");
    invalid(() => hostIndex("10.20.0.0/24", "10.20.0.255"), "10.20.0.255 is not a usable address of 10.20.0.0/24");
  });
});

describe("IPv6 profile addresses", () => {
  test("link-local and profile addresses carry the EUI-64 of the profile MAC", () => {
    expect(linkLocal("02:00:01:00:00:04")).toBe("fe80::1ff:fe00:4");
    expect(profileIp6("fd20::/64", "02:00:01:00:00:04")).toBe("fd20::1ff:fe00:4");
    // A shorter prefix: its first /64.
    expect(profileIp6("fd20:1::/48", "02:12:34:56:78:9a")).toBe("fd20:1::12:34ff:fe56:789a");
  });
  test("IPv6 subnets longer than /64 are refused", () => {
    expect(() =>
      validateNetwork({ name: "n", cidr: "10.0.0.0/24", gateway: "10.0.0.1", cidr6: "fd00::/96", gateway6: "fd00::1" }),
    ).toThrow("IPv6 subnets are /64 or larger");
  });
});
