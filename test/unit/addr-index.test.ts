/** The address tables' index (src/datapath/addr-index.ts) against a walk of every key: the
 * prefixes inside a prefix and the lengths present, through adds and removes, both families. */
import { expect, test } from "bun:test";
import fc from "fast-check";
import { AddrIndex } from "../../src/datapath/addr-index";
import { addrKey, addrKeyWithin } from "../../src/datapath/firewall-maps";
import type { Subnet } from "../../src/model/ip";

const GEN = 7;

const v4 = fc
  .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 32 }))
  .map(([a, b, len]): Subnet => {
    const v = BigInt(((10 << 24) | (a << 16) | (b << 8)) >>> 0);
    const mask = len === 0 ? 0n : ((1n << BigInt(len)) - 1n) << BigInt(32 - len);
    return { family: 4, network: v & mask, prefixLen: len };
  });
const v6 = fc
  .tuple(fc.bigInt({ min: 0n, max: (1n << 20n) - 1n }), fc.integer({ min: 0, max: 128 }))
  .map(([a, len]): Subnet => {
    const v = (0x20010db8n << 96n) | (a << 76n);
    const mask = len === 0 ? 0n : ((1n << BigInt(len)) - 1n) << BigInt(128 - len);
    return { family: 6, network: v & mask, prefixLen: len };
  });

const hex = (ks: Buffer[]) => ks.map((k) => k.toString("hex")).sort();

for (const [family, gen] of [
  [4, v4],
  [6, v6],
] as const)
  test(`IPv${family}: within() and lengthsBelow() are what a walk of every key finds, through adds and removes`, () => {
    fc.assert(
      fc.property(
        fc.array(gen, { maxLength: 40 }),
        fc.array(fc.tuple(fc.boolean(), gen), { maxLength: 30 }),
        fc.array(gen, { minLength: 1, maxLength: 8 }),
        (start, steps, probes) => {
          const keys = new Map<string, Buffer>();
          for (const s of start) keys.set(addrKey(GEN, s).toString("hex"), addrKey(GEN, s));
          const ix = new AddrIndex(keys.values());
          for (const [add, s] of steps) {
            const k = addrKey(GEN, s);
            if (add) {
              keys.set(k.toString("hex"), k);
              ix.add(k);
            } else {
              keys.delete(k.toString("hex"));
              ix.remove(k);
            }
          }
          const all = [...keys.values()].filter((k) => k.readUInt32LE(0) > 0);
          expect(ix.size).toBe(all.length);
          for (const p of probes) {
            const pk = addrKey(GEN, p);
            if (p.prefixLen > 0) expect(hex(ix.within(pk))).toEqual(hex(all.filter((k) => addrKeyWithin(k, pk))));
            const lens = [...new Set(all.map((k) => k.readUInt32LE(0)))].filter((l) => l < p.prefixLen);
            expect(ix.lengthsBelow(p.prefixLen)).toEqual(lens.sort((a, b) => b - a));
          }
        },
      ),
      { numRuns: 300 },
    );
  });
