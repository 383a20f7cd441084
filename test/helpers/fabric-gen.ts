/** Generated fabric documents (fast-check) for the declarative tests: up to four networks with
 * some of their optional settings, firewall rules of unique priorities, DNS records inside their
 * subnets, the global scope and a blocklist; every one valid. */
import fc from "fast-check";

const NAMES = ["app", "db", "web", "cache", "edge", "ops"];
const RATES = ["10mbit", "100mbit", "1gbit", 50_000_000];

const rule = (net: number) =>
  fc.record(
    {
      action: fc.constantFrom("allow", "deny", "reject"),
      proto: fc.constantFrom("tcp", "udp", "icmp", "any"),
      direction: fc.constantFrom("ingress", "egress", "both"),
      src: fc.integer({ min: 2, max: 250 }).map((h) => `10.${120 + net}.0.${h}`),
      log: fc.boolean(),
    },
    { requiredKeys: ["action"] },
  );

const network = (i: number) =>
  fc
    .record(
      {
        mtu: fc.integer({ min: 1280, max: 9000 }),
        dnsZone: fc.constantFrom(`z${i}.internal`, `net${i}.example`),
        dnsForwarders: fc.subarray(["192.0.2.53", "198.51.100.53"]),
        dhcpLeaseTime: fc.constantFrom(600, 3600, 86400),
        egress: fc.option(fc.record({ rate: fc.constantFrom(...RATES) }, { requiredKeys: ["rate"] }), { nil: null }),
        extendToLan: fc.boolean(),
        v6: fc.boolean(),
        def: fc.constantFrom("allow", "deny"),
        rules: fc.array(rule(i), { maxLength: 3 }),
        records: fc.uniqueArray(fc.integer({ min: 2, max: 250 }), { maxLength: 3 }),
        txt: fc.boolean(),
      },
      { requiredKeys: ["v6", "def", "rules", "records", "txt"] },
    )
    .map((o) => {
      const n: Record<string, unknown> = {
        name: NAMES[i],
        cidr: `10.${120 + i}.0.0/24`,
        gateway: `10.${120 + i}.0.1`,
      };
      if (o.v6) Object.assign(n, { cidr6: `fd00:${120 + i}::/64`, gateway6: `fd00:${120 + i}::1` });
      for (const k of ["mtu", "dnsZone", "dnsForwarders", "dhcpLeaseTime", "egress", "extendToLan"] as const)
        if (o[k] !== undefined) n[k] = o[k];
      n.firewall = { default: o.def, rules: o.rules.map((r, k) => ({ priority: 10 * (k + 1), ...r })) };
      const records: Array<Record<string, unknown>> = o.records.map((h, k) => ({
        name: `h${k}`,
        type: "A",
        value: `10.${120 + i}.0.${h}`,
      }));
      if (o.txt) records.push({ name: "@", type: "TXT", value: `v=stratum ${i}`, ttl: 60 });
      n.dns = { records };
      return n;
    });

/** A valid fabric document (as plain data; stringify it with YAML). */
export const fabricDoc = fc
  .record({
    count: fc.integer({ min: 0, max: 4 }),
    global: fc.option(fc.array(rule(0), { maxLength: 2 }), { nil: undefined }),
    blocklist: fc.option(fc.subarray(["198.51.100.0/24", "203.0.113.7", "2001:db8:dead::/48", "192.0.2.128/25"]), {
      nil: undefined,
    }),
    microseg: fc.option(
      fc.record({
        groups: fc.subarray(["prod/web", "prod/db", "dev"]),
        rules: fc.subarray([
          { from: "prod/web", to: "prod/db", action: "allow", proto: "tcp", dport: 5432 },
          { from: "untagged", to: "prod", action: "deny" },
          { from: "dev", to: "prod", action: "deny", log: true },
        ]),
      }),
      { nil: undefined },
    ),
  })
  .chain(({ count, global, blocklist, microseg }) =>
    fc.tuple(...Array.from({ length: count }, (_, i) => network(i))).map((networks) => {
      const doc: Record<string, unknown> = { version: 1, networks };
      if (global) doc.firewall = { global: { rules: global.map((r, k) => ({ priority: 5 * (k + 1), ...r })) } };
      if (blocklist) doc.blocklist = blocklist;
      if (microseg) {
        // Entries only between groups the document has (prod comes with any prod/...).
        const groups = [...new Set(microseg.groups.flatMap((g) => (g.startsWith("prod/") ? ["prod", g] : [g])))];
        const has = (g: string) => g === "untagged" || groups.includes(g);
        doc.microseg = {
          groups: groups.map((name) => ({ name })),
          rules: microseg.rules.filter((r) => has(r.from) && has(r.to)),
        };
      }
      return doc;
    }),
  );
