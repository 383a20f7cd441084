/** The firewall's kernel side. One rule added, deleted, moved or changed is written into the
 * scope's active generation, entry by entry in an order where every packet meets the old set
 * or the new; anything more compiles a new generation beside the active one, switches the
 * scope to it with one map update, then removes the old one. Capacity is checked before the
 * first write; a failed write is undone and leaves the active set in place. Also the
 * blocklist tries and the hit counters. */

import { StratumError } from "../errors";
import { type PackedPrefixes, PrefixPacker, packedCount } from "../model/blocklist";
import { type DefaultAction, type Rule, type StoredRule, sameRule } from "../model/firewall-rule";
import type { Subnet } from "../model/ip";
import { insertSorted } from "../model/sorted";
import { BPF_F, type BpfMap } from "../sys/bpf";
import { AddrIndex } from "./addr-index";
import {
  ADDR_MAPS,
  addrKey,
  addrRole,
  anyKey,
  anyMapOf,
  blockKey,
  blockKeys,
  type CompiledScope,
  clearBit,
  compileScope,
  copyBits,
  decodeScope,
  editIntervals,
  encodeU32,
  FW_DEFAULT_ID,
  FW_GEN_MAPS,
  FW_WORDS,
  type FwMapName,
  floorKey,
  hasBit,
  intervalEntries,
  isEmptyBits,
  keyGen,
  maskedKey,
  newBits,
  type PortInterval,
  partitionIntervals,
  partitionRange,
  ruleKey,
  rulePartitions,
  ruleValue,
  type Slotted,
  scopeWithLengths,
  setBit,
} from "./firewall-maps";
import type { PinnedMap } from "./port-datapath";

export interface MapSource {
  map(name: PinnedMap): BpfMap;
}

export interface Hits {
  packets: number;
  bytes: number;
}

type Entries = Map<string, [Buffer, Buffer]>;

/** What a scope's active generation holds: every entry by map (hex key → key, value), the rules
 * at their slots, and the scope entry. */
interface Live {
  gen: number;
  /** The kernel may not hold what this says (a failed edit, a scope adoption refused): the
   * next change writes a new generation, dropping these entries. */
  stale?: boolean;
  /** The rules at their slots by id. */
  byId: Map<number, Slotted>;
  epoch: number;
  def: DefaultAction;
  slotted: Slotted[];
  maps: Record<FwMapName, Entries>;
  scope: Buffer;
  /** The address tables' prefixes in order, built by the first edit that asks (addr-index.ts). */
  idx?: Partial<Record<FwMapName, AddrIndex>>;
  /** Each port partition's intervals (stm_fw_ports holds them as prefixes), computed by the
   * first edit that touches the partition, then edited along. */
  parts?: Map<number, PortInterval[]>;
}

/** One kernel write of an in-place change, with what it replaces (null: nothing) for the undo. */
interface Op {
  map: PinnedMap;
  key: Buffer;
  val: Buffer | null;
  prev: Buffer | null;
}

/** How apply() installed a rule set. */
export interface ApplyResult {
  gen: number;
  /** Map entries written or deleted. */
  writes: number;
  /** "edit": one rule added, deleted or changed in the active generation; "generation": a new
   * generation switched in; "none": the kernel already held the set. */
  how: "edit" | "generation" | "none";
}

const MAX_SLOT = FW_WORDS * 64 - 1;
/** Errnos of a map type without batch operations: EINVAL, EOPNOTSUPP, ENOTSUPP. */
const NO_BATCH = new Set([22, 95, 524]);
/** Where the first rule of an empty scope goes: room before it for rules put ahead. */
const FIRST_SLOT = 16;

/** A slot, or -1 for none: a rule's place in a scope's earlier tables. */
function slotOf(x: number | Slotted | undefined): number {
  if (x === undefined) return -1;
  return typeof x === "number" ? x : x.slot;
}

function liveOf(c: CompiledScope, def: DefaultAction): Live {
  const maps = {} as Record<FwMapName, Entries>;
  for (const m of FW_GEN_MAPS) maps[m] = new Map(c.entries[m].map(([k, v]) => [k.toString("hex"), [k, v]]));
  return {
    gen: c.gen,
    byId: new Map(c.slotted.map((x) => [x.r.id, x])),
    epoch: c.epoch,
    def,
    slotted: c.slotted,
    maps,
    scope: c.scope,
  };
}

/** A free slot for a rule between slots `lo` and `hi` (inclusive), avoiding `busy`: after the
 * last rule (`append`) one past a gap (room stays for inserts), else the middle of the widest
 * free run. */
function freeSlot(lo: number, hi: number, busy: number | undefined, append: boolean): number | undefined {
  const runs: Array<[number, number]> =
    busy !== undefined && busy >= lo && busy <= hi
      ? [
          [lo, busy - 1],
          [busy + 1, hi],
        ]
      : [[lo, hi]];
  const ok = runs.filter(([a, b]) => a <= b);
  if (!ok.length) return undefined;
  if (append) {
    const [a, b] = ok[0] as [number, number];
    return a + 1 <= b ? a + 1 : a;
  }
  const [a, b] = ok.reduce((x, y) => (y[1] - y[0] > x[1] - x[0] ? y : x));
  return a + Math.floor((b - a) / 2);
}

export class FirewallTables {
  readonly #dp: MapSource;
  /** Each scope's active generation, entry by entry (for edits, capacity checks and removal). */
  readonly #live = new Map<number, Live>();
  /** Generations and epochs come from one counter, so neither repeats. */
  #nextGen = 1;
  /** Each scope's rule slots as adoptAll found them in the kernel (rule id → slot), for the
   * new generation of a scope it could not take over. */
  readonly #slotHint = new Map<number, Map<number, number>>();

  constructor(dp: MapSource) {
    this.#dp = dp;
    for (const [, v] of this.#dp.map("stm_fw_scopes").entries()) {
      const sc = decodeScope(v);
      this.#nextGen = Math.max(this.#nextGen, sc.gen + 1, sc.epoch + 1);
    }
  }

  /** Entries in use per map, by the scopes this agent wrote (and, before the first GC, stale ones). */
  #used(map: FwMapName): number {
    let n = 0;
    for (const l of this.#live.values()) n += l.maps[map].size;
    return n;
  }

  /** Installs a scope's rules. One rule added, deleted, moved or changed (and a new default)
   * is written into the active generation, touching only the entries it changes; anything
   * more, or a rule with no free slot where its priority puts it, compiles a new generation
   * and switches to it. Either way every packet meets the old set or the new, tracked flows
   * are classified again, and a failure leaves the old set. Throws CAPACITY (nothing written)
   * when the tables cannot hold the change. */
  apply(scopeId: number, rules: readonly StoredRule[], def: DefaultAction): ApplyResult {
    let inOrder = true;
    for (let i = 1; i < rules.length && inOrder; i++)
      inOrder = (rules[i - 1] as StoredRule).priority < (rules[i] as StoredRule).priority;
    const sorted = inOrder ? rules : [...rules].sort((a, b) => a.priority - b.priority);
    const live = this.#live.get(scopeId);
    if (live && !live.stale) {
      const edit = this.#planEdit(scopeId, live, sorted, def);
      if (edit === "same") return { gen: live.gen, writes: 0, how: "none" };
      if (edit) {
        try {
          this.#run(edit.ops, `firewall rules of scope ${scopeId}`);
        } catch (e) {
          edit.undo();
          // The kernel was put back entry by entry; should that have failed too, only a new
          // generation is sure to be right: the next change writes one.
          live.stale = true;
          throw e;
        }
        edit.commit();
        return { gen: live.gen, writes: edit.ops.length, how: "edit" };
      }
    }
    return this.#generation(scopeId, sorted, def);
  }

  /** Compiles the rules into a new generation, writes it beside the active one, switches the
   * scope to it with one update and removes the old one. */
  #generation(scopeId: number, rules: readonly StoredRule[], def: DefaultAction): ApplyResult {
    const gen = this.#nextGen++;
    // Rules keep the slots they had (in the tables this run knew, or found at its start) when
    // every one has one, in order: a new generation of the same rules is then the same tables
    // (a restart after a change cut short puts back exactly what was there).
    const known = this.#slotHint.get(scopeId) ?? this.#live.get(scopeId)?.byId;
    const kept = known ? rules.map((r) => slotOf(known.get(r.id))) : [];
    const ordered = kept.length > 0 && kept.every((x, i) => x >= 0 && (i === 0 || x > (kept[i - 1] as number)));
    this.#slotHint.delete(scopeId);
    const c = compileScope(rules, def, gen, ordered ? { slots: kept } : {});
    for (const m of FW_GEN_MAPS) {
      const max = this.#dp.map(m).info.maxEntries;
      const old = this.#live.get(scopeId)?.maps[m].size ?? 0;
      const used = this.#used(m);
      const need = used + c.entries[m].length;
      if (need > max)
        throw new StratumError(
          "CAPACITY",
          `firewall table ${m} would need ${need} entries during the switch (${c.entries[m].length} new, ${used - old} for other scopes, ${old} for the set being replaced) but holds ${max}: nothing was changed`,
        );
    }
    const touched: FwMapName[] = [];
    try {
      for (const m of FW_GEN_MAPS) {
        touched.push(m);
        this.#writeAll(m, c.entries[m]);
      }
      this.#dp.map("stm_fw_scopes").update(encodeU32(scopeId), c.scope);
    } catch (e) {
      // The generation is new: every key of it in a map it reached is this attempt's.
      for (const m of touched) for (const [k] of c.entries[m]) this.#dp.map(m).delete(k);
      throw e instanceof StratumError ? e.wrap(`firewall rules of scope ${scopeId}`) : e;
    }
    const prev = this.#live.get(scopeId);
    this.#live.set(scopeId, liveOf(c, def));
    if (prev) this.#drop(prev);
    const writes = FW_GEN_MAPS.reduce((a, m) => a + c.entries[m].length, 1);
    return { gen, writes, how: "generation" };
  }

  /** The writes that take the active generation from `live` to `rules`, when they differ by at
   * most one rule taken out and one put in (a move or a change is both) and the new one finds a
   * free slot; undefined otherwise (a new generation is needed); "same" when nothing differs.
   *
   * The order keeps every packet's verdict one of the old set's or the new set's:
   * 1. the new rule's slot is filled (its rule entry, then its bit in every entry whose value
   *    it matches, new entries for its prefix and port intervals, stale intervals last), and the
   *    scope made to see all of it: old and new rule present, which decides each packet as one
   *    of the two sets does;
   * 2. the old rule's bit is cleared everywhere and what only it needed removed;
   * 3. the scope entry switches to the final lengths and a new epoch (tracked flows are
   *    classified again under the final set); then the old slot's rule entry goes. */
  #planEdit(
    scopeId: number,
    live: Live,
    rules: readonly StoredRule[],
    def: DefaultAction,
  ): { ops: Op[]; undo: () => void; commit: () => void } | "same" | undefined {
    const byId = live.byId;
    let keptN = 0;
    const added: StoredRule[] = [];
    for (const r of rules) {
      const l = byId.get(r.id);
      // The store hands back the same rule objects while they do not change: most compare by
      // identity. The same rule as another object (read again) is taken as it is now, so the
      // next change compares it by identity too.
      if (l && l.r !== r && sameRule(l.r, r)) l.r = r;
      if (l && l.r === r) keptN++;
      else added.push(r);
      if (added.length > 1) return undefined;
    }
    // Each kept rule is one live entry: the others were taken out (or changed).
    if (live.slotted.length - keptN > 1) return undefined;
    const removed = live.slotted.length > keptN ? [this.#takenOut(live, rules, added[0])] : [];
    if (!added.length && !removed.length && def === live.def) return "same";
    // A rule change and a new default together: while both rules show, the old default would
    // decide what neither rule matches, which is neither set's verdict. A new generation.
    if ((added.length || removed.length) && def !== live.def) return undefined;

    const gen = live.gen;
    const out = removed[0];
    let put: Slotted | undefined;
    if (added[0]) {
      const at = rules.indexOf(added[0]);
      let pred: Slotted | undefined;
      let succ: Slotted | undefined;
      for (let i = at - 1; i >= 0 && !pred; i--) pred = byId.get((rules[i] as StoredRule).id);
      for (let i = at + 1; i < rules.length && !succ; i++) succ = byId.get((rules[i] as StoredRule).id);
      const slot =
        !pred && !succ && out === undefined
          ? FIRST_SLOT
          : freeSlot(pred ? pred.slot + 1 : 0, succ ? succ.slot - 1 : MAX_SLOT, out?.slot, !succ);
      if (slot === undefined) return undefined;
      put = { r: added[0], slot };
    }
    // The sets in slot order: the live one with the rule taken out and/or the new one put in.
    const insert = (set: Slotted[], x: Slotted) => insertSorted(set, x, (y) => y.slot);
    const keptSlotted = out ? live.slotted.filter((x) => x !== out) : live.slotted;
    const finalSet = put ? insert(keptSlotted, put) : keptSlotted;
    const unionSet = out ? insert(finalSet, out) : finalSet;

    // The scope's tables are edited in place as the writes will leave them (no copy of
    // 10,000 entries per change); undo() puts them back if the change does not go through.
    const w = live.maps;
    const peak = Object.fromEntries(FW_GEN_MAPS.map((m) => [m, w[m].size])) as Record<FwMapName, number>;
    const others = Object.fromEntries(FW_GEN_MAPS.map((m) => [m, this.#used(m) - w[m].size])) as Record<
      FwMapName,
      number
    >;
    const ops: Op[] = [];
    // The prefixes of an address table in order (built once per generation, then kept along).
    const idx = (m: FwMapName): AddrIndex => {
      live.idx ??= {};
      let x = live.idx[m];
      if (!x) {
        x = new AddrIndex([...w[m].values()].map(([k]) => k));
        live.idx[m] = x;
      }
      return x;
    };
    const write = (m: FwMapName, key: Buffer, val: Buffer | null) => {
      const hex = key.toString("hex");
      const prev = w[m].get(hex)?.[1] ?? null;
      if (val === null && prev === null) return;
      if (val && prev?.equals(val)) return;
      ops.push({ map: m, key, val, prev });
      if (val) {
        w[m].set(hex, [key, val]);
        if (!prev) live.idx?.[m]?.add(key);
      } else {
        w[m].delete(hex);
        live.idx?.[m]?.remove(key);
      }
      peak[m] = Math.max(peak[m], w[m].size);
    };
    const undo = () => {
      for (let j = ops.length - 1; j >= 0; j--) {
        const o = ops[j] as Op;
        if (o.map === "stm_fw_scopes") continue;
        const m = o.map as FwMapName;
        if (o.prev) {
          w[m].set(o.key.toString("hex"), [o.key, o.prev]);
          if (!o.val) live.idx?.[m]?.add(o.key);
        } else {
          w[m].delete(o.key.toString("hex"));
          live.idx?.[m]?.remove(o.key);
        }
      }
    };
    /** Writes each [key, value] a scan of a table collected (a table is not edited while read). */
    const writeAll = (m: FwMapName, list: Array<[Buffer, Buffer | null]>) => {
      for (const [k, v] of list) write(m, k, v);
    };
    // The port partitions' intervals as this edit leaves them (into live.parts on commit).
    const parts = new Map<number, PortInterval[]>();
    const intervalsOf = (part: number): PortInterval[] => {
      const ivs = parts.get(part) ?? live.parts?.get(part);
      if (ivs) return ivs;
      const fresh = partitionIntervals(live.slotted, part);
      live.parts ??= new Map();
      live.parts.set(part, fresh);
      return fresh;
    };
    /** Puts `x`'s slot in (or takes it out of) its port partitions: only the intervals its
     * range overlaps or touches change, and only their prefixes are written. */
    const ports = (x: Slotted, on: boolean) => {
      for (const part of rulePartitions(x.r)) {
        const range = partitionRange(x.r, part);
        if (!range) continue;
        const e = editIntervals(intervalsOf(part), range[0], range[1], x.slot, on);
        parts.set(part, e.intervals);
        const wantHex = new Set<string>();
        for (const [k, v] of intervalEntries(gen, part, e.now)) {
          wantHex.add(k.toString("hex"));
          write("stm_fw_ports", k, v);
        }
        const stale: Array<[Buffer, null]> = [];
        for (const [k] of intervalEntries(gen, part, e.old)) if (!wantHex.has(k.toString("hex"))) stale.push([k, null]);
        writeAll("stm_fw_ports", stale);
      }
    };
    let scopeNow = live.scope;
    // lengthMask of a table's keys, from its index and its length-0 entries (the /0 entry; in
    // the IPv6 tables also the any-address entries), without a walk.
    const mask = (m: FwMapName, family: 4 | 6): bigint => {
      const bits = family === 4 ? 32 : 128;
      let v = 0n;
      for (const len of idx(m).lengthsBelow(bits + 1)) v |= 1n << BigInt(bits - len);
      const zero =
        w[m].has(floorKey(gen, family).toString("hex")) ||
        (family === 6 && (w[m].has(anyKey(gen, 4).toString("hex")) || w[m].has(anyKey(gen, 6).toString("hex"))));
      return zero ? v | (1n << BigInt(bits)) : v;
    };
    const scopeWrite = (set: Slotted[], d: DefaultAction, epoch: number) => {
      const v = scopeWithLengths(
        gen,
        d,
        set,
        {
          len4: [mask("stm_fw_src4", 4), mask("stm_fw_dst4", 4)],
          len6: [mask("stm_fw_src6", 6), mask("stm_fw_dst6", 6)],
        },
        epoch,
      );
      if (!v.equals(scopeNow)) ops.push({ map: "stm_fw_scopes", key: encodeU32(scopeId), val: v, prev: scopeNow });
      scopeNow = v;
    };

    if (put) {
      write("stm_fw_rules", ruleKey(gen, put.slot), ruleValue(put.r));
      for (const { map, side, family } of ADDR_MAPS) {
        const role = addrRole(put.r, side, family);
        if (role === undefined) continue;
        // The side and family's empty /0 entry and its any-address entry, if it had no rule.
        const anyMap = anyMapOf(side);
        const ak = anyKey(gen, family);
        if (!w[map].has(floorKey(gen, family).toString("hex"))) write(map, floorKey(gen, family), newBits());
        if (!w[anyMap].has(ak.toString("hex"))) write(anyMap, ak, newBits());
        if (role === "any" || role.prefixLen === 0) {
          const v = copyBits((w[anyMap].get(ak.toString("hex")) as [Buffer, Buffer])[1]);
          setBit(v, put.slot);
          write(anyMap, ak, v);
          continue;
        }
        const pk = addrKey(gen, role);
        const ix = idx(map);
        if (!w[map].has(pk.toString("hex"))) {
          // A new prefix starts from its nearest stored ancestor's rules.
          let anc: [Buffer, Buffer] | undefined;
          const probe = Buffer.alloc(pk.length);
          for (const len of ix.lengthsBelow(role.prefixLen)) {
            maskedKey(pk, len, probe);
            anc = w[map].get(probe.toString("hex"));
            if (anc) break;
          }
          const v = anc ? copyBits(anc[1]) : newBits();
          setBit(v, put.slot);
          write(map, pk, v);
        }
        const inside: Array<[Buffer, Buffer]> = [];
        for (const k of ix.within(pk)) {
          const v = (w[map].get(k.toString("hex")) as [Buffer, Buffer])[1];
          if (hasBit(v, put.slot)) continue;
          const nv = copyBits(v);
          setBit(nv, put.slot);
          inside.push([k, nv]);
        }
        writeAll(map, inside);
      }
      ports(put, true);
      if (out) scopeWrite(unionSet, live.def, live.epoch);
    }
    if (out) {
      const cleared = (v: Buffer): Buffer => {
        const nv = copyBits(v);
        clearBit(nv, out.slot);
        return nv;
      };
      for (const { map, side, family } of ADDR_MAPS) {
        const role = addrRole(out.r, side, family);
        if (role === undefined) continue;
        const anyMap = anyMapOf(side);
        const ak = anyKey(gen, family);
        const anyE = w[anyMap].get(ak.toString("hex"));
        if (anyE && hasBit(anyE[1], out.slot)) write(anyMap, anyE[0], cleared(anyE[1]));
        if (role !== "any" && role.prefixLen > 0) {
          // The rule's bit is on its prefix and every prefix inside it, nowhere else.
          const had: Array<[Buffer, Buffer]> = [];
          for (const k of idx(map).within(addrKey(gen, role))) {
            const v = (w[map].get(k.toString("hex")) as [Buffer, Buffer])[1];
            if (hasBit(v, out.slot)) had.push([k, cleared(v)]);
          }
          writeAll(map, had);
          // Its prefix goes unless another rule has it.
          const cidr = out.r[side];
          if (!finalSet.some((x) => x.r[side] === cidr)) write(map, addrKey(gen, role), null);
        }
        // No rule left on this side and family: its /0 and any-address entries go too.
        const anyNow = w[anyMap].get(ak.toString("hex"));
        const prefixes = idx(map).size > 0;
        if (!prefixes && anyNow && isEmptyBits(anyNow[1])) {
          write(anyMap, ak, null);
          write(map, floorKey(gen, family), null);
        }
      }
      ports(out, false);
    }
    scopeWrite(finalSet, def, this.#nextGen++);
    if (out) write("stm_fw_rules", ruleKey(gen, out.slot), null);

    for (const m of FW_GEN_MAPS) {
      const max = this.#dp.map(m).info.maxEntries;
      const need = others[m] + peak[m];
      if (need > max) {
        undo();
        throw new StratumError(
          "CAPACITY",
          `firewall table ${m} would need ${need} entries for this change but holds ${max}: nothing was changed`,
        );
      }
    }
    const scope = scopeNow;
    return {
      ops,
      undo,
      commit: () => {
        if (out) byId.delete(out.r.id);
        if (put) byId.set(put.r.id, put);
        live.epoch = decodeScope(scope).epoch;
        live.def = def;
        live.slotted = finalSet;
        live.scope = scope;
        live.parts ??= new Map();
        for (const [part, ivs] of parts) live.parts.set(part, ivs);
      },
    };
  }

  /** The one live entry `rules` no longer hold as it is: the old version of a changed rule (the
   * same id as `added`), or a deleted rule, found walking both in order (a live set is in slot
   * order, which is priority order, and so is `rules`), or else by id. */
  #takenOut(live: Live, rules: readonly StoredRule[], added: StoredRule | undefined): Slotted {
    const same = added && live.byId.get(added.id);
    if (same) return same;
    if (!added) {
      let i = 0;
      for (const x of live.slotted) {
        if (rules[i] === x.r) i++;
        else if (!rules.some((r) => r.id === x.r.id)) return x;
        else break; // not in the order assumed: by id below
      }
    }
    const ids = new Set(rules.map((r) => r.id));
    return live.slotted.find((x) => !ids.has(x.r.id)) as Slotted;
  }

  /** Writes `ops` in order; on a failure undoes the ones done, newest first. */
  #run(ops: Op[], what: string): void {
    const put = (o: Op, v: Buffer | null) => {
      if (v) this.#dp.map(o.map).update(o.key, v);
      else this.#dp.map(o.map).delete(o.key);
    };
    let i = 0;
    try {
      for (; i < ops.length; i++) put(ops[i] as Op, (ops[i] as Op).val);
    } catch (e) {
      for (let j = i - 1; j >= 0; j--) put(ops[j] as Op, (ops[j] as Op).prev);
      throw e instanceof StratumError ? e.wrap(what) : e;
    }
  }

  /** Writes a new generation's entries of one map: one batch (a syscall, not one per entry),
   * or entry by entry where the map type has no batch update. */
  #writeAll(m: FwMapName, entries: Array<[Buffer, Buffer]>): void {
    const map = this.#dp.map(m);
    if (entries.length > 1)
      try {
        map.updateBatch(
          Buffer.concat(entries.map(([k]) => k)),
          Buffer.concat(entries.map(([, v]) => v)),
          // Batch updates take no NOEXIST; the generation is new, its keys cannot exist.
          BPF_F.ANY,
        );
        return;
      } catch (e) {
        if (!(e instanceof StratumError && NO_BATCH.has(e.errno ?? 0))) throw e;
      }
    for (const [k, v] of entries) map.update(k, v, BPF_F.NOEXIST);
  }

  #drop(l: Live): void {
    for (const m of FW_GEN_MAPS) {
      const map = this.#dp.map(m);
      const keys = [...l.maps[m].values()].map(([k]) => k);
      if (keys.length > 1)
        try {
          map.deleteBatch(Buffer.concat(keys));
          continue;
        } catch {
          // No batch delete here, or a key already gone: one by one, absent ones skipped.
        }
      for (const k of keys) map.delete(k);
    }
  }

  /** Takes over the scopes an earlier agent run (or this one) installed, where the kernel holds
   * exactly what the stored rules compile to at the slots the kernel has them in (the same
   * entries, none more): an agent restart or a second reconcile then writes nothing and
   * established flows are not re-checked. Returns the scopes taken over; the caller applies
   * the others. Also moves the next generation past every generation found in the tables,
   * written by a run that stopped before switching to it. */
  adoptAll(scopes: Array<{ scopeId: number; rules: StoredRule[]; def: DefaultAction }>): Set<number> {
    const keysByGen = new Map<number, Map<FwMapName, Set<string>>>();
    /** Each generation's rule slots: rule id → slot. */
    const slotsByGen = new Map<number, Map<number, number>>();
    for (const m of FW_GEN_MAPS)
      for (const k of this.#dp.map(m).keys()) {
        const g = keyGen(m, k);
        this.#nextGen = Math.max(this.#nextGen, g + 1);
        const per = keysByGen.get(g) ?? new Map<FwMapName, Set<string>>();
        keysByGen.set(g, per);
        const set = per.get(m) ?? new Set<string>();
        per.set(m, set);
        set.add(k.toString("hex"));
        if (m === "stm_fw_rules") {
          const v = this.#dp.map(m).lookup(k);
          const slots = slotsByGen.get(g) ?? new Map<number, number>();
          slotsByGen.set(g, slots);
          if (v) slots.set(v.readUInt32LE(0), k.readUInt32LE(4));
        }
      }
    const adopted = new Set<number>();
    const table = this.#dp.map("stm_fw_scopes");
    for (const { scopeId, rules: given, def } of scopes) {
      // Until proven right below, what this run knew of the scope is not trusted.
      const known = this.#live.get(scopeId);
      if (known) known.stale = true;
      const cur = table.lookup(encodeU32(scopeId));
      if (!cur || cur.length !== 80) continue;
      const { gen, epoch } = decodeScope(cur);
      const rules = [...given].sort((a, b) => a.priority - b.priority);
      const have = slotsByGen.get(gen) ?? new Map<number, number>();
      this.#slotHint.set(scopeId, have);
      const slots = rules.map((r) => have.get(r.id) ?? -1);
      if (slots.some((s, i) => s < 0 || (i > 0 && s <= (slots[i - 1] as number)))) continue;
      const c = compileScope(rules, def, gen, { slots, epoch });
      if (!c.scope.equals(cur)) continue;
      const keysOf = keysByGen.get(gen);
      const same = FW_GEN_MAPS.every((m) => {
        const keys = keysOf?.get(m) ?? new Set<string>();
        if (keys.size !== c.entries[m].length) return false;
        const map = this.#dp.map(m);
        // With equal key sets a lookup finds the key itself (the port trie's longest prefix too).
        return c.entries[m].every(([k, v]) => keys.has(k.toString("hex")) && map.lookup(k)?.equals(v) === true);
      });
      if (!same) continue;
      this.#live.set(scopeId, liveOf(c, def));
      this.#slotHint.delete(scopeId);
      adopted.add(scopeId);
    }
    return adopted;
  }

  /** Removes a scope (its network is gone): the scope entry first, then its generation. */
  remove(scopeId: number): void {
    this.#dp.map("stm_fw_scopes").delete(encodeU32(scopeId));
    const prev = this.#live.get(scopeId);
    this.#live.delete(scopeId);
    if (prev) this.#drop(prev);
  }

  /** Deletes entries of generations no scope uses (an earlier agent run's), and scopes not in
   * `keep`. Returns how many entries went. */
  gc(keep: Set<number>): number {
    let n = 0;
    const scopes = this.#dp.map("stm_fw_scopes");
    for (const k of [...scopes.keys()]) if (!keep.has(k.readUInt32LE(0)) && scopes.delete(k)) n++;
    const active = new Set<number>();
    for (const [, v] of scopes.entries()) active.add(decodeScope(v).gen);
    for (const m of FW_GEN_MAPS) {
      const map = this.#dp.map(m);
      for (const k of [...map.keys()]) if (!active.has(keyGen(m, k)) && map.delete(k)) n++;
    }
    return n;
  }

  /** Hits of rules (by id) and of a scope's default action, summed over CPUs. */
  hits(id: number): Hits {
    const perCpu = this.#dp.map("stm_fw_hits").lookupPerCpu(encodeU32(id));
    let packets = 0;
    let bytes = 0;
    for (const v of perCpu ?? []) {
      packets += Number(v.readBigUInt64LE(0));
      bytes += Number(v.readBigUInt64LE(8));
    }
    return { packets, bytes };
  }

  defaultHits(scopeId: number): Hits {
    return this.hits((FW_DEFAULT_ID | scopeId) >>> 0);
  }

  /** Drops the hit counters of rules (by id) that are gone. Counters exist only for rules
   * that were hit: for many ids, the table's keys are read once and only those deleted
   * (10,000 deletes of absent keys cost 0.1 s or more). */
  forgetHits(ids: number[]): void {
    const map = this.#dp.map("stm_fw_hits");
    if (ids.length <= 64) {
      for (const id of ids) map.delete(encodeU32(id));
      return;
    }
    const gone = new Set(ids);
    for (const k of [...map.keys()]) if (gone.has(k.readUInt32LE(0))) map.delete(k);
  }

  // ---- blocklist ---------------------------------------------------------------------

  #trie(fam: 4 | 6): BpfMap {
    return this.#dp.map(fam === 4 ? "stm_block4" : "stm_block6");
  }

  /** Deletes one family's trie keys (blockKeys' layout) one at a time, those not there
   * skipped; answers how many went. */
  #deleteKeys(fam: 4 | 6, keys: Buffer): number {
    const size = fam === 4 ? 8 : 20;
    const map = this.#trie(fam);
    let gone = 0;
    for (let o = 0; o < keys.length; o += size) if (map.delete(keys.subarray(o, o + size))) gone++;
    return gone;
  }

  /** Adds packed prefixes; checks room in both tries first (nothing written when they do not
   * fit). `have`: prefixes already in each trie. */
  blockAdd(p: PackedPrefixes, have: Record<4 | 6, number>): void {
    const n = packedCount(p);
    for (const fam of [4, 6] as const) {
      const max = this.#trie(fam).info.maxEntries;
      if (n[fam] && have[fam] + n[fam] > max)
        throw new StratumError(
          "CAPACITY",
          `the IPv${fam} blocklist holds ${max} prefixes; ${have[fam]} are in use and ${n[fam]} more do not fit: nothing was added`,
        );
    }
    // One batch update per trie (a million single updates took 15 s; a batch, 0.7 s); a failure
    // takes out whatever of the batch went in.
    const written: Array<[4 | 6, Buffer]> = [];
    try {
      for (const fam of [4, 6] as const) {
        if (!n[fam]) continue;
        const keys = blockKeys(p, fam);
        written.push([fam, keys]);
        const ones = new Uint32Array(n[fam]).fill(1);
        this.#trie(fam).updateBatch(keys, new Uint8Array(ones.buffer));
      }
    } catch (e) {
      for (const [fam, keys] of written) this.#deleteKeys(fam, keys);
      throw e;
    }
  }

  /** Removes packed prefixes (those not in the tries are skipped); answers how many went. */
  blockDelMany(p: PackedPrefixes): number {
    return this.#deleteKeys(4, blockKeys(p, 4)) + this.#deleteKeys(6, blockKeys(p, 6));
  }

  blockDel(p: Subnet): boolean {
    return this.#trie(p.family).delete(blockKey(p));
  }

  /** The tries' map ids: another id means another trie (pins recreated, another layout). */
  blockIds(): [number, number] {
    return [this.#trie(4).info.id, this.#trie(6).info.id];
  }

  /** Every prefix in the tries, packed (a walk of both). */
  blockPacked(): PackedPrefixes {
    const out = new PrefixPacker();
    for (const k of this.#trie(4).keys()) out.add4(k.readUInt32BE(4), k.readUInt32LE(0));
    for (const k of this.#trie(6).keys())
      out.add6(k.readUInt32BE(4), k.readUInt32BE(8), k.readUInt32BE(12), k.readUInt32BE(16), k.readUInt32LE(0));
    return out.pack();
  }
}
