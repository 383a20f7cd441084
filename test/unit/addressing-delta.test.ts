/** The address and name servers take one changed endpoint into the network's list they keep
 * (withEndpoint) instead of reading the network again: the list must come out as the store
 * would list it (by name), whatever the change. Checked against a naive rebuild. */
import { expect, test } from "bun:test";
import fc from "fast-check";
import { withEndpoint } from "../../src/services/addressing";
import type { Endpoint } from "../../src/store/store";

const ep = (name: string, ip = "10.0.0.2"): Endpoint =>
  ({ name, network: "n", ip, mac: "02:00:00:01:00:02", hostIndex: 1, kind: "tap", hostIf: name }) as Endpoint;

test("withEndpoint: replace, add or remove one endpoint, the list stays by name, the input untouched", () => {
  const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,6}$/);
  fc.assert(
    fc.property(fc.uniqueArray(name, { maxLength: 40 }), name, fc.boolean(), (names, changed, present) => {
      const list = [...names].sort().map((n) => ep(n));
      const copy = list.map((e) => e.name);
      const e = present ? ep(changed, "10.0.0.99") : null;
      const out = withEndpoint(list, changed, e);
      const want = [...names.filter((n) => n !== changed), ...(present ? [changed] : [])].sort();
      expect(out.map((x) => x.name)).toEqual(want);
      if (present) expect(out.find((x) => x.name === changed)?.ip).toBe("10.0.0.99");
      expect(list.map((x) => x.name)).toEqual(copy);
    }),
    { numRuns: 500 },
  );
});
