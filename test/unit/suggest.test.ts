/** nearest(): the suggestion behind "did you mean …?" in the API's and the CLI's messages. */
import { expect, test } from "bun:test";
import fc from "fast-check";
import { editDistance, nearest } from "../../src/model/suggest";

const NETWORK_KEYS = ["name", "cidr", "gateway", "cidr6", "gateway6", "dhcpRange", "dnsZone", "defaultAction", "mtu"];

test("typos find the key that was meant", () => {
  expect(nearest("defaultActoin", NETWORK_KEYS)).toBe("defaultAction");
  expect(nearest("gatway", NETWORK_KEYS)).toBe("gateway");
  expect(nearest("DnsZone", NETWORK_KEYS)).toBe("dnsZone");
  expect(nearest("cidr7", NETWORK_KEYS)).toBe("cidr"); // a tie with cidr6 goes to the earlier candidate
  expect(nearest("porto", ["port", "proto"])).toBe("proto"); // a tie with a swap of its letters goes to the swap
  expect(nearest("netwrk", ["network", "limit", "after"])).toBe("network");
  expect(nearest("mtu", NETWORK_KEYS)).toBe("mtu");
});

test("nothing is suggested for a word that is not near any candidate", () => {
  expect(nearest("x", NETWORK_KEYS)).toBeUndefined();
  expect(nearest("colour", NETWORK_KEYS)).toBeUndefined();
  expect(nearest("force", ["network"])).toBeUndefined();
  expect(nearest("anything", [])).toBeUndefined();
});

test("edit distance: known values, a swap is one edit, symmetric, zero only for equal words", () => {
  expect(editDistance("kitten", "sitting")).toBe(3);
  expect(editDistance("actoin", "action")).toBe(1);
  expect(editDistance("", "abc")).toBe(3);
  expect(editDistance("Mtu", "mtu")).toBe(1); // the distance sees case; nearest() does not
  expect(nearest("MTU", ["mtu", "name"])).toBe("mtu");
  fc.assert(
    fc.property(fc.string({ maxLength: 12 }), fc.string({ maxLength: 12 }), (a, b) => {
      const d = editDistance(a, b);
      expect(d).toBe(editDistance(b, a));
      expect(d === 0).toBe(a === b);
      expect(d).toBeLessThanOrEqual(Math.max(a.length, b.length));
    }),
  );
});
