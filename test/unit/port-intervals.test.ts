/** A one-rule firewall edit updates a port partition's intervals from the intervals alone
 * (editIntervals) instead of from every rule sharing the partition: after any sequence of
 * rules put in and taken out, the intervals must be exactly what partitionIntervals computes
 * from the whole set, the intervals an edit reports unchanged must be the same objects, and
 * what it reports as old and new must cover everything that differs. */
import { expect, test } from "bun:test";
import fc from "fast-check";
import {
  editIntervals,
  FW_DIR,
  FW_PCLS,
  intervalEntries,
  type PortInterval,
  partitionIntervals,
  partitionRange,
  rulePartitions,
  type Slotted,
} from "../../src/datapath/firewall-maps";
import type { StoredRule } from "../../src/model/firewall-rule";

const show = (ivs: PortInterval[]) =>
  ivs.map((iv) => `${iv.lo}-${iv.hi}:${iv.bits.toString("hex").replace(/(00)+$/, "")}`);

/** Ranges near each other, so that they overlap, touch and share ends often. */
const range = fc
  .tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 12 }))
  .map(([a, n]): [number, number] => [a, Math.min(65535, a + n)]);
const rule = fc.record({
  direction: fc.constantFrom("ingress", "egress", "both"),
  proto: fc.constantFrom("tcp", "udp", "icmp", "any"),
  sport: fc.option(range, { nil: undefined }),
  dport: fc.option(fc.oneof(range, fc.constant<[number, number]>([65530, 65535])), { nil: undefined }),
  icmpType: fc.option(fc.integer({ min: 0, max: 20 }), { nil: undefined }),
});

test("editIntervals: intervals after any sequence of rules in and out are the whole set's", () => {
  const parts = [0, 1].flatMap((sel) =>
    [FW_DIR.ingress, FW_DIR.egress].flatMap((dir) =>
      [FW_PCLS.other, FW_PCLS.tcp, FW_PCLS.udp, FW_PCLS.icmp, FW_PCLS.icmpv6].map((p) => (sel << 16) | (dir << 8) | p),
    ),
  );
  fc.assert(
    fc.property(fc.array(fc.tuple(rule, fc.boolean()), { minLength: 1, maxLength: 40 }), (steps) => {
      const set: Slotted[] = [];
      const ivs = new Map<number, PortInterval[]>(parts.map((p) => [p, []]));
      let slot = 0;
      for (const [spec, remove] of steps) {
        let x: Slotted;
        let on = true;
        if (remove && set.length) {
          x = set.splice(slot % set.length, 1)[0] as Slotted;
          on = false;
        } else {
          const r = { id: slot, priority: slot, action: "allow", log: false, ...spec } as StoredRule;
          if (r.proto !== "icmp") delete r.icmpType;
          if (r.proto !== "tcp" && r.proto !== "udp") {
            delete r.sport;
            delete r.dport;
          }
          x = { r, slot: (slot * 37) % 300 };
          if (set.some((y) => y.slot === x.slot)) continue;
          set.push(x);
        }
        slot++;
        for (const part of rulePartitions(x.r)) {
          const rg = partitionRange(x.r, part);
          if (!rg) continue;
          const before = ivs.get(part) as PortInterval[];
          const e = editIntervals(before, rg[0], rg[1], x.slot, on);
          // Every interval not reported as old is kept as the same object.
          const kept = before.filter((iv) => !e.old.includes(iv));
          expect(kept.every((iv) => e.intervals.includes(iv))).toBe(true);
          expect(e.intervals.filter((iv) => !kept.includes(iv))).toEqual(e.now);
          // The entries written (new) and removed (old) turn the partition's old entries into its new ones.
          const entries = (l: PortInterval[]) =>
            new Map(intervalEntries(1, part, l).map(([k, v]) => [k.toString("hex"), v.toString("hex")]));
          const after = entries(before);
          for (const k of entries(e.old).keys()) after.delete(k);
          for (const [k, v] of entries(e.now)) after.set(k, v);
          expect(after).toEqual(entries(partitionIntervals(set, part)));
          ivs.set(part, e.intervals);
        }
        for (const part of parts)
          expect(show(ivs.get(part) as PortInterval[])).toEqual(show(partitionIntervals(set, part)));
      }
    }),
    { numRuns: 300 },
  );
});

test("editIntervals: a range put in beside an equal neighbour joins it; taken out, the neighbour stays whole", () => {
  const r = (id: number, dport: [number, number]) =>
    ({ id, priority: id, direction: "ingress", proto: "tcp", dport, action: "allow", log: false }) as StoredRule;
  const part = (1 << 16) | (FW_DIR.ingress << 8) | FW_PCLS.tcp;
  const a: Slotted = { r: r(1, [10, 19]), slot: 3 };
  const b: Slotted = { r: r(2, [20, 29]), slot: 3 }; // the same slot: the same bits on 20-29
  const one = partitionIntervals([a], part);
  const joined = editIntervals(one, 20, 29, b.slot, true);
  expect(show(joined.intervals)).toEqual(show([{ lo: 10, hi: 29, bits: (one[0] as PortInterval).bits }]));
  expect(joined.old).toEqual(one);
  const back = editIntervals(joined.intervals, 20, 29, b.slot, false);
  expect(show(back.intervals)).toEqual(show(one));
});
