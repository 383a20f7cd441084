/** The firewall's kernel side: writes a scope's compiled rules as a new generation beside the
 * active one, switches the scope to it with one map update, then removes the old generation.
 * Packets see the old set or the new, never a mixture. Capacity is checked before the first
 * write; a failed write removes what it wrote and leaves the active generation in place.
 * Also the blocklist tries and the hit counters. */

import { StratumError } from "../errors";
import type { DefaultAction, StoredRule } from "../model/firewall-rule";
import { formatSubnet, type Subnet } from "../model/ip";
import { BPF_F, type BpfMap } from "../sys/bpf";
import {
  blockKey,
  type CompiledScope,
  compileScope,
  decodeScope,
  encodeU32,
  FW_DEFAULT_ID,
  FW_GEN_MAPS,
  type FwMapName,
  keyGen,
} from "./firewall-maps";
import type { PinnedMap } from "./port-datapath";

export interface MapSource {
  map(name: PinnedMap): BpfMap;
}

export interface Hits {
  packets: number;
  bytes: number;
}

export class FirewallTables {
  readonly #dp: MapSource;
  /** Entries each scope's active generation holds, per map (for capacity checks and removal). */
  readonly #live = new Map<number, CompiledScope>();
  #nextGen = 1;

  constructor(dp: MapSource) {
    this.#dp = dp;
    for (const [, v] of this.#dp.map("stm_fw_scopes").entries())
      this.#nextGen = Math.max(this.#nextGen, decodeScope(v).gen + 1);
  }

  /** Entries in use per map, by the scopes this agent wrote (and, before the first GC, stale ones). */
  #used(map: FwMapName): number {
    let n = 0;
    for (const c of this.#live.values()) n += c.entries[map].length;
    return n;
  }

  /** Compiles and installs a scope's rules. Throws CAPACITY (nothing written) when a table
   * cannot hold the new generation beside every active one. */
  apply(scopeId: number, rules: StoredRule[], def: DefaultAction): { gen: number; entries: number } {
    const gen = this.#nextGen++;
    const c = compileScope(rules, def, gen);
    for (const m of FW_GEN_MAPS) {
      const max = this.#dp.map(m).info.maxEntries;
      const old = this.#live.get(scopeId)?.entries[m].length ?? 0;
      const need = this.#used(m) + c.entries[m].length;
      if (need > max)
        throw new StratumError(
          "CAPACITY",
          `firewall table ${m} would need ${need} entries during the switch (${c.entries[m].length} new, ${this.#used(m) - old} for other scopes, ${old} for the set being replaced) but holds ${max}: nothing was changed`,
        );
    }
    const written: Array<[FwMapName, Buffer]> = [];
    try {
      for (const m of FW_GEN_MAPS) {
        const map = this.#dp.map(m);
        for (const [k, v] of c.entries[m]) {
          map.update(k, v, BPF_F.NOEXIST);
          written.push([m, k]);
        }
      }
      this.#dp.map("stm_fw_scopes").update(encodeU32(scopeId), c.scope);
    } catch (e) {
      for (const [m, k] of written) this.#dp.map(m).delete(k);
      throw e instanceof StratumError ? e.wrap(`firewall rules of scope ${scopeId}`) : e;
    }
    const prev = this.#live.get(scopeId);
    this.#live.set(scopeId, c);
    if (prev) this.#drop(prev);
    return { gen, entries: FW_GEN_MAPS.reduce((a, m) => a + c.entries[m].length, 0) };
  }

  #drop(c: CompiledScope): void {
    for (const m of FW_GEN_MAPS) {
      const map = this.#dp.map(m);
      for (const [k] of c.entries[m]) map.delete(k);
    }
  }

  /** Takes over the scopes an earlier agent run (or this one) installed, where the kernel holds
   * exactly the generation the stored rules compile to (the same entries, none more): an
   * agent restart or a second reconcile then writes nothing and established flows are not
   * re-checked. Returns the scopes taken
   * over; the caller applies the others. Also moves the next generation past every
   * generation found in the tables, written by a run that stopped before switching to it. */
  adoptAll(scopes: Array<{ scopeId: number; rules: StoredRule[]; def: DefaultAction }>): Set<number> {
    const keysByGen = new Map<number, Map<FwMapName, Set<string>>>();
    for (const m of FW_GEN_MAPS)
      for (const k of this.#dp.map(m).keys()) {
        const g = keyGen(m, k);
        this.#nextGen = Math.max(this.#nextGen, g + 1);
        const per = keysByGen.get(g) ?? new Map<FwMapName, Set<string>>();
        keysByGen.set(g, per);
        const set = per.get(m) ?? new Set<string>();
        per.set(m, set);
        set.add(k.toString("hex"));
      }
    const adopted = new Set<number>();
    const table = this.#dp.map("stm_fw_scopes");
    for (const { scopeId, rules, def } of scopes) {
      const cur = table.lookup(encodeU32(scopeId));
      if (!cur) continue;
      const c = compileScope(rules, def, decodeScope(cur).gen);
      if (!c.scope.equals(cur)) continue;
      const have = keysByGen.get(c.gen);
      const same = FW_GEN_MAPS.every((m) => {
        const keys = have?.get(m) ?? new Set<string>();
        if (keys.size !== c.entries[m].length) return false;
        const map = this.#dp.map(m);
        // With equal key sets a lookup finds the key itself (the port trie's longest prefix too).
        return c.entries[m].every(([k, v]) => keys.has(k.toString("hex")) && map.lookup(k)?.equals(v) === true);
      });
      if (!same) continue;
      this.#live.set(scopeId, c);
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

  forgetHits(id: number): void {
    this.#dp.map("stm_fw_hits").delete(encodeU32(id));
  }

  // ---- blocklist ---------------------------------------------------------------------

  #blockMap(s: Subnet): BpfMap {
    return this.#dp.map(s.family === 4 ? "stm_block4" : "stm_block6");
  }

  /** Adds prefixes; checks room in both tries first (nothing written when they do not fit).
   * `have`: prefixes already in each trie. */
  blockAdd(prefixes: Subnet[], have: Record<4 | 6, number>): void {
    for (const fam of [4, 6] as const) {
      const add = prefixes.filter((p) => p.family === fam).length;
      if (!add) continue;
      const map = this.#dp.map(fam === 4 ? "stm_block4" : "stm_block6");
      if (have[fam] + add > map.info.maxEntries)
        throw new StratumError(
          "CAPACITY",
          `the IPv${fam} blocklist holds ${map.info.maxEntries} prefixes; ${have[fam]} are in use and ${add} more do not fit: nothing was added`,
        );
    }
    const one = Buffer.alloc(4);
    one.writeUInt32LE(1);
    const done: Subnet[] = [];
    try {
      for (const p of prefixes) {
        this.#blockMap(p).update(blockKey(p), one);
        done.push(p);
      }
    } catch (e) {
      for (const p of done) this.#blockMap(p).delete(blockKey(p));
      throw e;
    }
  }

  blockDel(p: Subnet): boolean {
    return this.#blockMap(p).delete(blockKey(p));
  }

  /** Prefixes in one trie (a walk: the service keeps the count from the store for checks). */
  blockCount(fam: 4 | 6): number {
    let n = 0;
    for (const _ of this.#dp.map(fam === 4 ? "stm_block4" : "stm_block6").keys()) n++;
    return n;
  }

  /** Every prefix in the tries, as CIDRs. */
  blockList(): string[] {
    const out: string[] = [];
    for (const fam of [4, 6] as const) {
      const n = fam === 4 ? 4 : 16;
      for (const k of this.#dp.map(fam === 4 ? "stm_block4" : "stm_block6").keys()) {
        let v = 0n;
        for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(k[4 + i] as number);
        out.push(formatSubnet({ family: fam, network: v, prefixLen: k.readUInt32LE(0) }));
      }
    }
    return out;
  }
}
