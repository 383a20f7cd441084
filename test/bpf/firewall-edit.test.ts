/** One-rule changes written into the active generation (FirewallTables' edits): generated
 * sequences of adds, deletes, moves and changes against the reference evaluator after every
 * step; after every single map write of a change, each probe packet meets the old set or the
 * new; the tables hold exactly what a fresh compile at the same slots holds; a write failing
 * part-way leaves the old set; tracked flows are classified again; a change to a large set
 * touches only the entries it affects. */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { ruleSet } from "../../scripts/benchmarks/firewall";
import { FW_DEFAULT_ID, FW_GEN_MAPS } from "../../src/datapath/firewall-maps";
import { type ApplyResult, FirewallTables, type MapSource } from "../../src/datapath/firewall-tables";
import { loadObject } from "../../src/datapath/objects";
import type { PinnedMap } from "../../src/datapath/port-datapath";
import {
  type DefaultAction,
  evaluate,
  type FwPacket,
  parseRule,
  type RuleSpec,
  type StoredRule,
} from "../../src/model/firewall-rule";
import type { BpfMap, BpfObject } from "../../src/sys/bpf";
import { IPPROTO } from "../helpers/frames";
import {
  clearState,
  expectedRetval,
  genPacket,
  genRule,
  NET,
  type Pkt,
  pick,
  run,
  TC_DROP,
  TC_NEXT,
  useFwObject,
} from "../helpers/fw-harness";
import { prng } from "../helpers/prng";

let obj: BpfObject;
/** Called after every firewall map write while set (the probe of in-between states). */
let afterWrite: (() => void) | undefined;
/** Throws on the write with this number (counting from 1) while set. */
let failAt = 0;
let writes = 0;

/** The object's maps, each write counted, probed and failed on demand. */
const source: MapSource = {
  map(name: PinnedMap): BpfMap {
    const m = obj.map(name);
    return new Proxy(m, {
      get(target, prop, recv) {
        if (prop !== "update" && prop !== "delete") {
          const v = Reflect.get(target, prop, recv);
          return typeof v === "function" ? v.bind(target) : v;
        }
        return (...args: unknown[]) => {
          writes++;
          if (failAt && writes === failAt) throw new Error(`injected failure at write ${writes}`);
          const out = (target[prop] as (...a: unknown[]) => unknown).apply(target, args);
          afterWrite?.();
          return out;
        };
      },
    });
  },
};

let fw: FirewallTables;
let nextId = 1;

beforeAll(() => {
  // Small state tables: the probes clear them before every packet.
  obj = loadObject("port", {
    prepare: (o) => {
      o.setMaxEntries("stm_ct", 1024);
      o.setMaxEntries("stm_frags", 64);
      o.setMaxEntries("stm_fw_hits", 16384);
    },
  });
  useFwObject(obj);
  fw = new FirewallTables(source);
});
afterAll(() => obj?.close());
// Every run reads the hit counters whole: start each test with none.
beforeEach(() => {
  const hits = obj.map("stm_fw_hits");
  for (const k of [...hits.keys()]) hits.delete(k);
});

const stored = (s: RuleSpec): StoredRule => ({ ...parseRule(s), id: nextId++ });

/** The verdict the datapath gives (state cleared first) and the one each rule set wants. */
function verdict(p: Pkt): string {
  clearState();
  const r = run(p);
  return `${r.retval}/${r.hit}`;
}
function want(rules: StoredRule[], def: DefaultAction, p: FwPacket): string {
  const v = evaluate(rules, def, p);
  return `${expectedRetval(v.action)}/${v.ruleId ?? (FW_DEFAULT_ID | NET) >>> 0}`;
}

/** The tables hold exactly the set (adoptable by a fresh agent: same entries, none more). */
function exact(rules: StoredRule[], def: DefaultAction): boolean {
  const fresh = new FirewallTables({ map: (n) => obj.map(n) });
  return fresh.adoptAll([{ scopeId: NET, rules, def }]).has(NET);
}

/** One random single-rule change of `rules`. */
function change(r: () => number, rules: StoredRule[], fam: 4 | 6 | 0): { next: StoredRule[]; what: string } {
  const free = () => {
    const taken = new Set(rules.map((x) => x.priority));
    for (;;) {
      const p = 1 + Math.floor(r() * 5000);
      if (!taken.has(p)) return p;
    }
  };
  const famOf = () => (fam === 0 ? pick(r, [0, 4, 6] as const) : fam);
  const k = rules.length < 3 ? 0 : Math.floor(r() * 4);
  if (k === 0) {
    const add = stored(genRule(r, free(), famOf()));
    return { next: [...rules, add], what: `add ${add.id}` };
  }
  const victim = pick(r, rules);
  if (k === 1) return { next: rules.filter((x) => x !== victim), what: `delete ${victim.id}` };
  if (k === 2) {
    const priority = free();
    return {
      next: rules.map((x) => (x === victim ? { ...x, priority } : x)),
      what: `move ${victim.id} to ${priority}`,
    };
  }
  const edited = { ...parseRule(genRule(r, victim.priority, famOf())), id: victim.id };
  return { next: rules.map((x) => (x === victim ? edited : x)), what: `change ${victim.id}` };
}

const sorted = (rules: StoredRule[]) => [...rules].sort((a, b) => a.priority - b.priority);

describe("one-rule changes in the active generation", () => {
  test("generated sequences: the reference evaluator's verdicts after every change, exact tables", () => {
    const mismatches: string[] = [];
    const how: Record<string, number> = {};
    let steps = 0;
    for (let seq = 0; seq < 6; seq++) {
      const seed = 7000 + seq;
      const r = prng(seed);
      const fam = ([4, 6, 0] as const)[seq % 3] as 4 | 6 | 0;
      let def: DefaultAction = seq % 2 ? "allow" : "deny";
      let rules = sorted(
        Array.from({ length: 3 + Math.floor(r() * 40) }, (_, i) =>
          stored(genRule(r, 10 * (i + 1), fam === 0 ? 4 : fam)),
        ),
      );
      fw.apply(NET, rules, def);
      for (let step = 0; step < 30; step++) {
        const c = change(r, rules, fam);
        rules = sorted(c.next);
        if (r() < 0.05) def = def === "deny" ? "allow" : "deny";
        const res: ApplyResult = fw.apply(NET, rules, def);
        how[res.how] = (how[res.how] ?? 0) + 1;
        steps++;
        if (!exact(rules, def)) mismatches.push(`seed ${seed} step ${step} (${c.what}): tables differ from a compile`);
        for (let i = 0; i < 12; i++) {
          const p = genPacket(r, fam === 0 ? pick(r, [4, 6] as const) : fam);
          const got = verdict(p);
          const exp = want(rules, def, p);
          if (got !== exp)
            mismatches.push(`seed ${seed} step ${step} (${c.what}) ${JSON.stringify(p)}: ${got} ≠ ${exp}`);
        }
      }
    }
    expect(mismatches).toEqual([]);
    // Nearly every change is an edit; a new generation only when no slot is free.
    expect(how.edit ?? 0).toBeGreaterThanOrEqual(steps * 0.85);
  }, 120_000);

  test("after every single write of a change, each probe meets the old set or the new", () => {
    const bad: string[] = [];
    let probed = 0;
    let edits = 0;
    for (let seq = 0; seq < 3; seq++) {
      const seed = 7100 + seq;
      const r = prng(seed);
      const fam = ([4, 6] as const)[seq % 2] as 4 | 6;
      let rules = sorted(Array.from({ length: 12 }, (_, i) => stored(genRule(r, 10 * (i + 1), fam))));
      fw.apply(NET, rules, "deny");
      for (let step = 0; step < 10; step++) {
        const c = change(r, rules, fam);
        const next = sorted(c.next);
        // Probes: packets the rule taken out or the rule put in matches (where an order that
        // hid both, or showed the new one half-written, would show), and a few others.
        const changed = [...rules.filter((x) => !next.includes(x)), ...next.filter((x) => !rules.includes(x))];
        const probes: Pkt[] = [];
        for (let i = 0; i < 2000 && probes.length < 8; i++) {
          const p = genPacket(r, fam);
          if (changed.some((x) => evaluate([x], "deny", p).ruleId === x.id) || probes.length < 2) probes.push(p);
        }
        // The harness writes through the object itself, so the probes' own writes are not probed.
        afterWrite = () => {
          for (const p of probes) {
            const got = verdict(p);
            probed++;
            if (got !== want(rules, "deny", p) && got !== want(next, "deny", p))
              bad.push(`seed ${seed} step ${step} (${c.what}) ${JSON.stringify(p)}: ${got}`);
          }
        };
        try {
          if (fw.apply(NET, next, "deny").how === "edit") edits++;
        } finally {
          afterWrite = undefined;
        }
        rules = next;
      }
    }
    expect(bad).toEqual([]);
    expect(edits).toBeGreaterThanOrEqual(25);
    expect(probed).toBeGreaterThan(500);
  }, 120_000);

  test("a write failing part-way leaves the old set, exactly", () => {
    const r = prng(7200);
    const rules = sorted(Array.from({ length: 20 }, (_, i) => stored(genRule(r, 10 * (i + 1), 4))));
    fw.apply(NET, rules, "deny");
    let failed = 0;
    for (let step = 0; step < 15; step++) {
      const c = change(r, rules, 4);
      const next = sorted(c.next);
      writes = 0;
      failAt = 2 + (step % 4);
      try {
        fw.apply(NET, next, "deny");
      } catch (e) {
        failed++;
        expect(String(e)).toContain("injected failure");
      } finally {
        failAt = 0;
      }
      expect({ step, exact: exact(rules, "deny") }).toEqual({ step, exact: true });
      for (let i = 0; i < 10; i++) {
        const p = genPacket(r, 4);
        expect(verdict(p)).toBe(want(rules, "deny", p));
      }
      // The failed change then goes through.
      fw.apply(NET, next, "deny");
      expect(exact(next, "deny")).toBe(true);
      fw.apply(NET, rules, "deny");
    }
    expect(failed).toBeGreaterThanOrEqual(10);
  }, 60_000);

  test("a deny added as an edit cuts the established flow it covers; an allow elsewhere does not", () => {
    const A = "10.0.0.1";
    const B = "10.0.0.2";
    const allow = stored({ priority: 100, direction: "egress", proto: "tcp", dport: "443", action: "allow" });
    fw.apply(NET, [allow], "deny");
    clearState();
    const syn: Pkt = { dir: "egress", src: A, dst: B, proto: IPPROTO.TCP, sport: 41000, dport: 443, tcpFlags: 2 };
    const reply: Pkt = { dir: "ingress", src: B, dst: A, proto: IPPROTO.TCP, sport: 443, dport: 41000, tcpFlags: 0x12 };
    expect(run(syn).retval).toBe(TC_NEXT);
    expect(run(reply).retval).toBe(TC_NEXT);
    const dns = stored({ priority: 200, direction: "ingress", proto: "udp", dport: "53", action: "allow" });
    expect(fw.apply(NET, [allow, dns], "deny").how).toBe("edit");
    expect(run({ ...reply, tcpFlags: 0x10 }).retval).toBe(TC_NEXT);
    const deny = stored({ priority: 50, direction: "egress", proto: "tcp", dst: `${B}/32`, action: "deny" });
    expect(fw.apply(NET, [deny, allow, dns], "deny").how).toBe("edit");
    expect(run({ ...reply, tcpFlags: 0x10 }).retval).toBe(TC_DROP);
    expect(run({ ...syn, tcpFlags: 0x10 }).retval).toBe(TC_DROP);
  });

  test("a rule change with a new default is a new generation: no moment of the old default", () => {
    const r1 = stored({ priority: 10, direction: "ingress", proto: "tcp", dport: 22, action: "deny" });
    fw.apply(NET, [r1], "allow");
    const r2 = stored({ priority: 20, direction: "ingress", proto: "tcp", dport: 80, action: "allow" });
    const probe: Pkt = { dir: "ingress", src: "10.0.0.2", dst: "10.0.0.1", proto: IPPROTO.TCP, sport: 4000, dport: 22 };
    const seen = new Set<string>();
    afterWrite = () => {
      seen.add(verdict(probe));
    };
    try {
      expect(fw.apply(NET, [r2], "deny").how).toBe("generation");
    } finally {
      afterWrite = undefined;
    }
    // Denied by r1, then by the new default: never allowed in between.
    expect([...seen].every((v) => v.startsWith(`${TC_DROP}/`))).toBe(true);
    expect(exact([r2], "deny")).toBe(true);
  });

  test("a scope the kernel lost is written again: adoption refused, the next apply repairs it", () => {
    const rules = [stored({ priority: 10, proto: "udp", dport: 53, action: "allow" })];
    fw.apply(NET, rules, "deny");
    const key = Buffer.alloc(4);
    key.writeUInt32LE(NET);
    obj.map("stm_fw_scopes").delete(key); // by hand, under the agent
    expect(fw.adoptAll([{ scopeId: NET, rules, def: "deny" }]).has(NET)).toBe(false);
    expect(fw.apply(NET, rules, "deny").how).toBe("generation");
    expect(exact(rules, "deny")).toBe(true);
  });

  test("no free slot where the priority puts a rule: a new generation, still right", () => {
    const r = prng(7300);
    let rules = [stored({ priority: 1, action: "deny", proto: "udp" }), stored({ priority: 1000, action: "allow" })];
    fw.apply(NET, rules, "deny");
    const seen = new Set<string>();
    // Keep inserting right after priority 1: the free slots there run out.
    for (let i = 0; i < 80; i++) {
      rules = sorted([...rules, stored(genRule(r, 999 - i, 4))]);
      seen.add(fw.apply(NET, rules, "deny").how);
      expect(exact(rules, "deny")).toBe(true);
    }
    expect([...seen].sort()).toEqual(["edit", "generation"]);
    for (let i = 0; i < 40; i++) {
      const p = genPacket(r, 4);
      expect(verdict(p)).toBe(want(rules, "deny", p));
    }
  }, 60_000);

  test("one rule added to 10,000 writes only the entries it changes", () => {
    const big = ruleSet(10000).map((x) => ({ ...x, id: nextId++ }));
    expect(fw.apply(NET, big, "deny").how).toBe("generation");
    const entries = FW_GEN_MAPS.reduce((a, m) => a + [...obj.map(m).keys()].length, 0);
    expect(entries).toBeGreaterThan(20000);
    const one = stored({
      priority: 20000,
      direction: "egress",
      src: "10.9.9.0/24",
      proto: "tcp",
      dport: 8443,
      action: "allow",
    });
    const res = fw.apply(NET, [...big, one], "deny");
    expect(res.how).toBe("edit");
    // Its rule entry, its source prefix, the destination /0, its port intervals, the scope.
    expect(res.writes).toBeLessThan(30);
    expect(exact([...big, one], "deny")).toBe(true);
    const del = fw.apply(NET, big, "deny");
    expect(del.how).toBe("edit");
    expect(del.writes).toBeLessThan(30);
    // A rule for any address is one entry per side, not one per prefix.
    const wild = stored({ priority: 20001, direction: "both", proto: "udp", dport: 9000, action: "allow" });
    const w = fw.apply(NET, [...big, wild], "deny");
    expect(w.how).toBe("edit");
    expect(w.writes).toBeLessThan(40);
    expect(exact([...big, wild], "deny")).toBe(true);
    expect(fw.apply(NET, big, "deny").writes).toBeLessThan(40);
    fw.apply(NET, [], "deny");
  }, 60_000);
});

describe("hit counters of rules that are gone", () => {
  test("forgetting many ids deletes the counters that exist and leaves the others", () => {
    const hits = obj.map("stm_fw_hits");
    const one = Buffer.alloc(hits.valueBufSize);
    const key = (id: number) => Buffer.from(new Uint32Array([id]).buffer);
    for (const id of [5, 70, 99, 500]) hits.update(key(id), one);
    fw.forgetHits(Array.from({ length: 100 }, (_, i) => i)); // 0..99: more than a handful
    expect([...hits.keys()].map((k) => k.readUInt32LE(0)).sort((a, b) => a - b)).toEqual([500]);
    fw.forgetHits([500]);
    expect([...hits.keys()]).toEqual([]);
  });
});
