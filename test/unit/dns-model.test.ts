/** The user's DNS records: owner and value normalisation, and every refusal as a one-line
 * INVALID message that says what to do. */
import { describe, expect, test } from "bun:test";
import { StratumError } from "../../src/errors";
import { type DnsRecord, relativeOwner, validateDnsRecord } from "../../src/model/dns-record";

const ZONE = "app-net.internal";
const v = (
  spec: { name: string; type: string; value: string; ttl?: number },
  existing: DnsRecord[] = [],
  eps = ["web"],
) => validateDnsRecord(ZONE, spec, existing, eps);

const invalid = (f: () => unknown, pattern: RegExp) => {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(StratumError);
  expect((err as StratumError).code).toBe("INVALID");
  expect((err as StratumError).message).toMatch(pattern);
  expect((err as StratumError).message).not.toContain("\n");
};

describe("validateDnsRecord: normalisation", () => {
  test("owner names: relative, absolute inside the zone, apex", () => {
    expect(v({ name: "API", type: "A", value: "10.20.0.9" }).name).toBe("api");
    expect(v({ name: "api.app-net.internal.", type: "A", value: "10.20.0.9" }).name).toBe("api");
    expect(v({ name: "api.app-net.internal", type: "A", value: "10.20.0.9" }).name).toBe("api");
    expect(v({ name: "_http._tcp", type: "SRV", value: "0 0 80 web" }).name).toBe("_http._tcp");
    expect(v({ name: "@", type: "TXT", value: "hello" }).name).toBe("@");
    expect(v({ name: "app-net.internal.", type: "MX", value: "10 mail" }).name).toBe("@");
    expect(relativeOwner(ZONE, "X.App-Net.Internal.")).toBe("x");
  });

  test("values are canonical", () => {
    expect(v({ name: "a", type: "aaaa", value: "FD00:0:0::0001" })).toEqual({
      name: "a",
      type: "AAAA",
      value: "fd00::1",
      ttl: 300,
    });
    expect(v({ name: "c", type: "CNAME", value: "Web" }).value).toBe("web.app-net.internal");
    expect(v({ name: "c", type: "CNAME", value: "example.com." }).value).toBe("example.com");
    expect(v({ name: "c", type: "CNAME", value: "example.com" }).value).toBe("example.com");
    expect(v({ name: "s", type: "SRV", value: " 10  5 8080   web " }).value).toBe("10 5 8080 web.app-net.internal");
    expect(v({ name: "m", type: "MX", value: "10 mail.example.com." }).value).toBe("10 mail.example.com");
    expect(v({ name: "m", type: "MX", value: "0 ." }).value).toBe("0 .");
    expect(v({ name: "t", type: "TXT", value: "Hello World", ttl: 0 })).toEqual({
      name: "t",
      type: "TXT",
      value: "Hello World",
      ttl: 0,
    });
    expect(v({ name: "t", type: "TXT", value: "x".repeat(600) }).value.length).toBe(600);
  });

  test("extra TXT/SRV/MX on an endpoint's name is fine", () => {
    expect(v({ name: "web", type: "TXT", value: "v=1" }).name).toBe("web");
    expect(v({ name: "web", type: "MX", value: "10 web" }).name).toBe("web");
    expect(v({ name: "_x._tcp.web", type: "SRV", value: "1 1 1 web" }).name).toBe("_x._tcp.web");
  });
});

describe("validateDnsRecord: refusals", () => {
  const api: DnsRecord = { name: "api", type: "A", value: "10.20.0.9", ttl: 300 };
  const alias: DnsRecord = { name: "alias", type: "CNAME", value: "web.app-net.internal", ttl: 300 };

  test("type", () =>
    invalid(() => v({ name: "a", type: "NS", value: "x" }), /type "NS" is not supported: use one of A, AAAA/));
  test("names outside the zone and bad labels", () => {
    invalid(
      () => v({ name: "api.example.com.", type: "A", value: "1.2.3.4" }),
      /outside zone app-net.internal: give a name/,
    );
    invalid(() => v({ name: "", type: "A", value: "1.2.3.4" }), /name is empty/);
    invalid(() => v({ name: "a..b", type: "A", value: "1.2.3.4" }), /empty label/);
    invalid(() => v({ name: "bad!name", type: "A", value: "1.2.3.4" }), /label "bad!name" must be 1-63 letters/);
    invalid(() => v({ name: "x".repeat(64), type: "A", value: "1.2.3.4" }), /must be 1-63/);
    invalid(
      () => v({ name: Array(60).fill("abcd").join("."), type: "A", value: "1.2.3.4" }),
      /longer than 253 characters/,
    );
    invalid(() => v({ name: "*", type: "A", value: "1.2.3.4" }), /label "\*"/);
  });
  test("TTL", () => {
    invalid(() => v({ name: "a", type: "A", value: "1.2.3.4", ttl: -1 }), /TTL -1 is outside 0-604800/);
    invalid(() => v({ name: "a", type: "A", value: "1.2.3.4", ttl: 604801 }), /TTL 604801/);
    invalid(() => v({ name: "a", type: "A", value: "1.2.3.4", ttl: 1.5 }), /TTL 1.5/);
  });
  test("values", () => {
    invalid(() => v({ name: "a", type: "A", value: "fd00::1" }), /A record value "fd00::1" is not an IPv4 address/);
    invalid(() => v({ name: "a", type: "AAAA", value: "10.0.0.1" }), /not an IPv6 address/);
    invalid(() => v({ name: "s", type: "SRV", value: "10 5 web" }), /must be "priority weight port target"/);
    invalid(() => v({ name: "s", type: "SRV", value: "10 5 70000 web" }), /SRV port "70000" is not a number 0-65535/);
    invalid(() => v({ name: "m", type: "MX", value: "mail" }), /must be "preference exchange"/);
    invalid(() => v({ name: "c", type: "CNAME", value: "." }), /CNAME target "." is not a host name/);
    invalid(() => v({ name: "c", type: "CNAME", value: "c" }), /points to itself/);
    invalid(
      () => v({ name: "t", type: "TXT", value: "x".repeat(4001) }),
      /TXT record value is 4001 bytes: at most 4000/,
    );
  });
  test("CNAME at the apex", () =>
    invalid(() => v({ name: "@", type: "CNAME", value: "web" }), /a CNAME cannot be at the zone apex/));
  test("CNAME next to other records, either direction", () => {
    invalid(
      () => v({ name: "api", type: "CNAME", value: "web" }, [api]),
      /already has A records: a CNAME cannot share/,
    );
    invalid(() => v({ name: "alias", type: "TXT", value: "x" }, [alias]), /alias.app-net.internal is a CNAME to web/);
    invalid(() => v({ name: "alias", type: "CNAME", value: "other" }, [alias]), /is a CNAME to/);
  });
  test("clashes with an endpoint's or the server's own addresses", () => {
    invalid(() => v({ name: "web", type: "CNAME", value: "x" }), /endpoint web's own name .* choose another name/);
    invalid(() => v({ name: "WEB", type: "A", value: "10.20.0.7" }), /endpoint web's own name/);
    invalid(() => v({ name: "gateway", type: "A", value: "10.20.0.7" }), /server's own name for the gateway/);
    invalid(() => v({ name: "ns", type: "CNAME", value: "x" }), /server's own name/);
  });
  test("duplicates", () =>
    invalid(() => v({ name: "API", type: "A", value: "10.20.0.9" }, [api]), /already has this A record \(10.20.0.9\)/));
});
