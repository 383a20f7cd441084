/** Masquerading's pure parts: the NAT port range (default beside the kernel's ephemeral range,
 * an operator's range checked against it), NAT addresses (validated, one per family, outside
 * every network), and what a network translates to per family. */
import { expect, test } from "bun:test";
import { StratumError } from "../../src/errors";
import { checkNatAddresses, validateNetwork } from "../../src/model/network";
import { natAddressesOf, natPortRange } from "../../src/services/nat";

const refused = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(StratumError);
    return (e as StratumError).message;
  }
  throw new Error("not refused");
};

test("the default NAT range is the larger side the kernel's ephemeral range leaves", () => {
  expect(natPortRange(undefined, { lo: 32768, hi: 60999 })).toEqual({ lo: 1024, hi: 32767 });
  expect(natPortRange(undefined, { lo: 2000, hi: 40000 })).toEqual({ lo: 40001, hi: 65535 });
  expect(refused(() => natPortRange(undefined, { lo: 1024, hi: 65535 }))).toContain("leave no room for NAT ports");
});

test("an operator's range: well formed, 16 ports at least, outside the ephemeral range", () => {
  const eph = { lo: 32768, hi: 60999 };
  expect(natPortRange("10000-29999", eph)).toEqual({ lo: 10000, hi: 29999 });
  expect(natPortRange("61000-65535", eph)).toEqual({ lo: 61000, hi: 65535 });
  expect(refused(() => natPortRange("30000-40000", eph))).toContain(
    "overlaps the kernel's ephemeral ports 32768-60999",
  );
  expect(refused(() => natPortRange("10000-10010", eph))).toContain("at least 16 ports");
  for (const bad of ["500-2000", "2000-1000", "10000", "a-b", "10000-70000"])
    expect(refused(() => natPortRange(bad, eph))).toContain("give LO-HI");
});

test("NAT addresses: canonical, one per family, unicast, outside every network", () => {
  const nets = [{ name: "app", cidr: "10.20.0.0/24", cidr6: "fd20::/64" }];
  expect(checkNatAddresses(["192.0.2.10", "2001:DB8::0:10"], nets)).toEqual(["192.0.2.10", "2001:db8::10"]);
  expect(refused(() => checkNatAddresses(["192.0.2.1", "192.0.2.2"], nets))).toContain("one IPv4 address at most");
  expect(refused(() => checkNatAddresses(["10.20.0.9"], nets))).toContain("inside network app (10.20.0.0/24)");
  expect(refused(() => checkNatAddresses(["fd20::9"], nets))).toContain("inside network app (fd20::/64)");
  for (const [a, why] of [
    ["127.0.0.1", "loopback"],
    ["224.0.0.5", "multicast"],
    ["fe80::1", "link-local"],
    ["0.0.0.0", "unspecified"],
  ])
    expect(refused(() => checkNatAddresses([a as string], nets))).toContain(why as string);
  // A network's own subnet counts too.
  expect(
    refused(() =>
      validateNetwork({ name: "n", cidr: "10.9.0.0/24", gateway: "10.9.0.1", nat: { addresses: ["10.9.0.7"] } }),
    ),
  ).toContain("inside network n");
});

test("what a network translates to: its own address per family, else the uplink's; IPv6 only with an IPv6 subnet", () => {
  const up = { v4: "192.0.2.1", v6: "2001:db8::1" };
  const v4only = validateNetwork({ name: "a", cidr: "10.9.0.0/24", gateway: "10.9.0.1", nat: { addresses: [] } });
  expect(natAddressesOf(v4only, up)).toEqual({ addr4: "192.0.2.1" });
  const dual = validateNetwork({
    name: "b",
    cidr: "10.8.0.0/24",
    gateway: "10.8.0.1",
    cidr6: "fd08::/64",
    gateway6: "fd08::1",
    nat: { addresses: ["198.51.100.9"] },
  });
  expect(natAddressesOf(dual, up)).toEqual({ addr4: "198.51.100.9", addr6: "2001:db8::1" });
  expect(natAddressesOf(dual, {})).toEqual({ addr4: "198.51.100.9" });
});
