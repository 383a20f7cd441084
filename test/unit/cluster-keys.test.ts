/** The hand check of endpoint values (a listing parses 100,000 of them) accepts only what the
 * schema accepts, and as the schema returns it; it passes the values Stratum writes. */
import { expect, test } from "bun:test";
import fc from "fast-check";
import { endpointSchema, K, parseKey, plainEndpoint } from "../../src/cluster/keys";

const valid = fc.record(
  {
    name: fc.string({ minLength: 1, maxLength: 64 }),
    network: fc.string({ minLength: 1, maxLength: 64 }),
    ip: fc.ipV4(),
    mac: fc
      .array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 })
      .map((b) => b.map((x) => x.toString(16).padStart(2, "0")).join(":")),
    hostIndex: fc.nat(),
    kind: fc.constantFrom("veth", "tap"),
    hostIf: fc.string({ minLength: 1, maxLength: 15 }),
    netns: fc.string(),
    ifname: fc.string(),
    createdAt: fc.string(),
    egress: fc.record({ rate: fc.integer({ min: 1 }), burst: fc.integer({ min: 1 }) }),
    node: fc.string({ minLength: 1, maxLength: 64 }),
    queues: fc.integer({ min: 2, max: 256 }),
  },
  { requiredKeys: ["name", "network", "ip", "mac", "hostIndex", "kind", "hostIf", "createdAt", "node"] },
);

/** A valid value with one field replaced, removed or added: most of these the schema refuses. */
const mutated = fc
  .tuple(
    valid,
    // Every field of the schema, one it does not have, and one JSON can carry but objects hide.
    fc.constantFrom(...Object.keys(endpointSchema.shape), "extra", "__proto__"),
    fc.oneof(
      fc.anything(),
      fc.string({ maxLength: 70 }),
      fc.double(),
      fc.integer({ min: -5, max: 2 ** 60 }),
      fc.integer({ min: -1, max: 300 }),
      fc.constant(undefined),
      fc.record({ rate: fc.integer({ min: -1 }), burst: fc.double(), x: fc.nat() }, { requiredKeys: [] }),
    ),
  )
  .map(([v, k, x]) => {
    const o: Record<string, unknown> = JSON.parse(JSON.stringify(v));
    if (x === undefined) delete o[k];
    else Object.defineProperty(o, k, { value: x, enumerable: true, configurable: true, writable: true });
    return JSON.parse(JSON.stringify(o)) as unknown;
  });

test("what the hand check passes, the schema passes, as the same value", () => {
  fc.assert(
    fc.property(fc.oneof(valid, mutated, fc.anything()), (v) => {
      const fast = plainEndpoint(v);
      const slow = endpointSchema.safeParse(v);
      if (fast !== undefined) {
        expect(slow.success).toBe(true);
        expect(fast).toEqual(slow.data as never);
      }
    }),
    { numRuns: 3000 },
  );
});

test("Stratum's own values take the hand check; a bad one still gets the schema's message", () => {
  fc.assert(
    fc.property(valid, (v) => {
      expect(plainEndpoint(JSON.parse(JSON.stringify(v)))).toBeDefined();
    }),
  );
  const enc = new TextEncoder();
  const bad = {
    name: "a",
    network: "n",
    ip: "10.0.0.2",
    mac: "zz",
    hostIndex: 1,
    kind: "tap",
    hostIf: "t",
    createdAt: "x",
    node: "n1",
  };
  expect(() => parseKey(K.endpoint("a"), enc.encode(JSON.stringify(bad)))).toThrow(`${K.endpoint("a")}:`);
  const good = { ...bad, mac: "02:00:00:00:00:01" };
  expect(parseKey(K.endpoint("a"), enc.encode(JSON.stringify(good)))).toEqual({
    kind: "endpoint",
    name: "a",
    value: good as never,
  });
});

test("the load balancer's key: a valid document parses, a damaged one is refused with the key's name", () => {
  const { addBackend, addVip, emptyLb } = require("../../src/model/vip");
  const enc = new TextEncoder();
  let doc = addVip(emptyLb(), { name: "web", address: "192.0.2.80", port: 80, proto: "tcp" }, { networks: [] }).doc;
  doc = addBackend(doc, "web", { endpoint: "w1" }, () => ({ ip4: "10.0.0.2" })).doc;
  expect(parseKey(K.lb, enc.encode(JSON.stringify(doc)))).toEqual({ kind: "lb", value: doc });
  expect(parseKey(K.lb, null)).toEqual({ kind: "lb", value: null });
  const dup = { ...doc, vips: [doc.vips[0], { ...doc.vips[0], name: "web2" }] };
  expect(() => parseKey(K.lb, enc.encode(JSON.stringify(dup)))).toThrow(`${K.lb}:`);
  expect(() => parseKey(K.lb, enc.encode(JSON.stringify({ ...doc, extra: 1 })))).toThrow(`${K.lb}:`);
});
