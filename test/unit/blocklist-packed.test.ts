/** The blocklist's bulk path: the fast prefix reader agrees with the general parser on
 * everything it takes (and leaves the rest to it), packing sorts and drops repeats, and the
 * difference of two packed lists is the set difference. */
import { expect, test } from "bun:test";
import fc from "fast-check";
import {
  PrefixPacker,
  packedMinus,
  packPrefixes,
  parseBlockPrefix,
  scanPrefix,
  unpackSubnets,
} from "../../src/model/blocklist";
import { formatSubnet } from "../../src/model/ip";

const general = (t: string): string | undefined => {
  try {
    return parseBlockPrefix(t).prefix;
  } catch {
    return undefined;
  }
};

/** A prefix with its host bits cleared half the time (so the fast path takes many). */
const v4 = fc.tuple(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.integer({ min: 0, max: 34 }), fc.boolean());
const v6 = fc.tuple(fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), fc.integer({ min: 0, max: 130 }), fc.boolean());

test("the fast reader gives what the general parser gives, on whatever it takes", () => {
  let taken = 0;
  const check = (t: string) => {
    const out = new PrefixPacker();
    if (!scanPrefix(t, 0, t.length, out)) return;
    taken++;
    expect(formatSubnet(unpackSubnets(out.pack())[0] as never)).toBe(general(t) as string);
  };
  fc.assert(
    fc.property(
      fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended()),
      fc.option(fc.integer({ min: 0, max: 140 })),
      (ip, len) => {
        check(len === null ? ip : `${ip}/${len}`);
        check((len === null ? ip : `${ip}/${len}`).toUpperCase());
      },
    ),
    { numRuns: 5000 },
  );
  fc.assert(
    fc.property(v4, ([a, len, clear]) => {
      const addr = clear && len <= 32 ? (len === 0 ? 0 : a - (a % 2 ** (32 - len))) : a;
      check(`${addr >>> 24}.${(addr >>> 16) & 255}.${(addr >>> 8) & 255}.${addr & 255}/${len}`);
    }),
    { numRuns: 5000 },
  );
  fc.assert(
    fc.property(v6, ([a, len, clear]) => {
      const net = clear && len <= 128 ? a & (((1n << BigInt(len)) - 1n) << BigInt(128 - len)) : a;
      const words = Array.from({ length: 8 }, (_, i) => ((net >> BigInt(112 - 16 * i)) & 0xffffn).toString(16));
      check(`${words.join(":")}/${len}`);
      if (len <= 128) check(formatSubnet({ family: 6, network: net, prefixLen: len }));
    }),
    { numRuns: 5000 },
  );
  expect(taken).toBeGreaterThan(4000);
});

test("what the fast reader leaves to the general parser", () => {
  for (const t of [
    "10.0.0.1/8", // host bits: the message comes from the general parser
    "0.0.0.0/0",
    "010.0.0.0/8",
    "10.0.0.0/024",
    "::ffff:192.0.2.0/120", // IPv4-mapped: listed as IPv4
    "::ffff:0:0/96",
    "fe80::1%eth0",
    "1::2::3",
    "1:2:3:4:5:6:7:8:9",
    "12345::",
    "1:",
    ":1",
  ]) {
    const out = new PrefixPacker();
    expect([t, scanPrefix(t, 0, t.length, out)]).toEqual([t, false]);
  }
});

const prefixText = fc.oneof(
  fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 8, max: 32 })).map(([a, len]) => `10.${a}.0.0/${len}`),
  fc
    .tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 32, max: 128 }))
    .map(([a, len]) => `2001:db8:${a.toString(16)}::/${len}`),
);
const valid = (ts: string[]) => ts.filter((t) => general(t) !== undefined);

test("packing sorts each family numerically and keeps every prefix once; a difference is a set difference", () => {
  fc.assert(
    fc.property(fc.array(prefixText, { maxLength: 60 }), fc.array(prefixText, { maxLength: 60 }), (xs, ys) => {
      const a = valid(xs);
      const b = valid(ys);
      const pa = packPrefixes(a);
      const texts = unpackSubnets(pa).map(formatSubnet);
      expect(new Set(texts).size).toBe(texts.length);
      expect(new Set(texts)).toEqual(new Set(a.map((t) => general(t) as string)));
      const subnets = unpackSubnets(pa);
      for (let i = 1; i < subnets.length; i++) {
        const p = subnets[i - 1] as (typeof subnets)[number];
        const q = subnets[i] as (typeof subnets)[number];
        expect(
          p.family < q.family ||
            (p.family === q.family &&
              (p.network < q.network || (p.network === q.network && p.prefixLen < q.prefixLen))),
        ).toBe(true);
      }
      const inB = new Set(b.map((t) => general(t) as string));
      expect(unpackSubnets(packedMinus(pa, packPrefixes(b))).map(formatSubnet)).toEqual(
        texts.filter((t) => !inB.has(t)),
      );
    }),
    { numRuns: 300 },
  );
});
