/** The store's first free host index (an attach's address) against a plain scan of the claims,
 * for generated claims and gateways: the lowest index below the total, not the gateway's, that
 * no endpoint claims. */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { hostAddress, type NetworkSpec, profileMac, validateNetwork } from "../../src/model/network";
import { SqliteStore } from "../../src/store/sqlite";

const dir = mkdtempSync(join(tmpdir(), "stm-free-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("firstFreeIndex and endpointCount agree with the claims", () => {
  let run = 0;
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uniqueArray(fc.integer({ min: 0, max: 29 }), { maxLength: 30 }),
        // Claimed from the bottom without a gap (the quick path), up to every index.
        fc.integer({ min: 0, max: 30 }).map((k) => [...Array(k).keys()]),
      ),
      fc.integer({ min: 0, max: 29 }),
      (claims, gw) => {
        const store = new SqliteStore(join(dir, `s${run++}.db`));
        try {
          const cidr = "10.9.0.0/27"; // 30 host addresses: indexes 0 to 29
          store.createNetwork(validateNetwork({ name: "n", cidr, gateway: hostAddress(cidr, gw) } as NetworkSpec));
          const id = store.getNetwork("n")?.id as number;
          for (const i of claims.filter((x) => x !== gw))
            store.claimEndpoint({
              name: `e${i}`,
              network: "n",
              ip: hostAddress(cidr, i),
              mac: profileMac(id, i),
              hostIndex: i,
              kind: "tap",
              hostIf: `t${i}`,
            });
          const taken = new Set(claims);
          let want: number | undefined;
          for (let i = 0; i < 30; i++)
            if (i !== gw && !taken.has(i)) {
              want = i;
              break;
            }
          expect(store.firstFreeIndex("n", gw, 30)).toBe(want);
          expect(store.endpointCount("n")).toBe(claims.filter((x) => x !== gw).length);
        } finally {
          store.close();
        }
      },
    ),
    { numRuns: 150 },
  );
});
