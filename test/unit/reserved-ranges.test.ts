/** Reserved address blocks are never a network's subnet: loopback, multicast, unspecified,
 * link-local, class E / limited broadcast and IPv4-mapped, and anything that overlaps them,
 * in both families. Each refusal is one line that names the block and why. */
import { describe, expect, test } from "bun:test";
import { StratumError } from "../../src/errors";
import { RESERVED_RANGES, validateNetwork } from "../../src/model/network";

const v4 = (cidr: string, gateway: string) => ({ name: "n", cidr, gateway });
const v6 = (cidr6: string, gateway6: string) => ({
  name: "n",
  cidr: "10.20.0.0/24",
  gateway: "10.20.0.1",
  cidr6,
  gateway6,
});

function refusal(spec: Record<string, unknown>): StratumError {
  try {
    validateNetwork(spec as never);
  } catch (e) {
    expect(e).toBeInstanceOf(StratumError);
    return e as StratumError;
  }
  throw new Error(`accepted ${JSON.stringify(spec)}`);
}

describe("IPv4 subnets in reserved blocks are refused", () => {
  const cases: Array<[string, string, string]> = [
    ["127.0.0.0/24", "127.0.0.1", "127.0.0.0/8 (loopback)"],
    ["127.255.0.0/16", "127.255.0.1", "127.0.0.0/8 (loopback)"],
    ["0.0.0.0/24", "0.0.0.1", "0.0.0.0/8 (unspecified"],
    ["0.255.255.0/30", "0.255.255.1", "0.0.0.0/8 (unspecified"],
    ["169.254.0.0/16", "169.254.0.1", "169.254.0.0/16 (link-local)"],
    ["169.254.42.0/24", "169.254.42.1", "169.254.0.0/16 (link-local)"],
    ["224.0.0.0/24", "224.0.0.1", "224.0.0.0/4 (multicast)"],
    ["239.255.255.0/24", "239.255.255.1", "224.0.0.0/4 (multicast)"],
    ["240.0.0.0/24", "240.0.0.1", "240.0.0.0/4 (reserved"],
    ["255.255.255.252/30", "255.255.255.253", "240.0.0.0/4 (reserved (class E and the limited broadcast"],
  ];
  for (const [cidr, gw, named] of cases)
    test(cidr, () => {
      const e = refusal(v4(cidr, gw));
      expect(e.code).toBe("INVALID");
      expect(e.message).toStartWith(`--cidr ${cidr} overlaps ${named}`);
      expect(e.message).not.toContain("\n");
    });
});

describe("IPv6 subnets in reserved blocks are refused", () => {
  const cases: Array<[string, string, string]> = [
    ["::/0", "::2", "::/128 (the unspecified address)"],
    ["::/64", "::2", "::/128 (the unspecified address)"],
    ["::ffff:0:0/96", "::ffff:0:1", "::ffff:0:0/96 (IPv4-mapped)"],
    ["::ffff:0:0/120", "::ffff:0:1", "::ffff:0:0/96 (IPv4-mapped)"],
    ["fe80::/64", "fe80::1", "fe80::/10 (link-local)"],
    ["febf:ffff::/64", "febf:ffff::1", "fe80::/10 (link-local)"],
    ["ff02::/64", "ff02::2", "ff00::/8 (multicast)"],
    ["fe00::/7", "fe00::1", "fe80::/10 (link-local)"], // overlapping, not inside
  ];
  for (const [cidr6, gw, named] of cases)
    test(cidr6, () => {
      const e = refusal(v6(cidr6, gw));
      expect(e.code).toBe("INVALID");
      expect(e.message).toStartWith(`--cidr6 ${cidr6} overlaps ${named}`);
      expect(e.message).not.toContain("\n");
    });
});

test("a subnet that only borders a reserved block is a network", () => {
  expect(validateNetwork(v4("126.255.255.0/24", "126.255.255.1")).cidr).toBe("126.255.255.0/24");
  expect(validateNetwork(v4("128.0.0.0/24", "128.0.0.1")).cidr).toBe("128.0.0.0/24");
  expect(validateNetwork(v4("169.253.0.0/16", "169.253.0.1")).cidr).toBe("169.253.0.0/16");
  expect(validateNetwork(v4("223.255.255.0/24", "223.255.255.1")).cidr).toBe("223.255.255.0/24");
  expect(validateNetwork(v4("1.0.0.0/16", "1.0.0.1")).cidr).toBe("1.0.0.0/16");
  expect(validateNetwork(v6("fd20::/64", "fd20::1")).cidr6).toBe("fd20::/64");
  expect(validateNetwork(v6("fec0::/64", "fec0::1")).cidr6).toBe("fec0::/64");
  expect(validateNetwork(v6("0:0:0:1::/64", "0:0:0:1::1")).cidr6).toBe("0:0:0:1::/64");
});

test("the list covers both families and each block parses as its own network address", () => {
  expect(RESERVED_RANGES.map((r) => r.cidr)).toEqual([
    "0.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "fe80::/10",
    "ff00::/8",
  ]);
});
