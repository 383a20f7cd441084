/** A kernel-free stand-in for FirewallTables: keeps what was applied per scope and the
 * blocklist in memory, counts writes, and fails on demand (capacity or a kernel error), so
 * the service's ordering and rollbacks can be tested without BPF maps. */
import type { ApplyResult, Hits } from "../../src/datapath/firewall-tables";
import { StratumError } from "../../src/errors";
import { type PackedPrefixes, packedCount, packPrefixes, unpackSubnets } from "../../src/model/blocklist";
import type { DefaultAction, StoredRule } from "../../src/model/firewall-rule";
import { formatSubnet, type Subnet } from "../../src/model/ip";
import type { FwKernel } from "../../src/services/firewall-service";

export class FakeFwKernel implements FwKernel {
  scopes = new Map<number, { rules: StoredRule[]; def: DefaultAction }>();
  block = new Set<string>();
  blockMax = 1_000_000;
  applies = 0;
  hitsOf = new Map<number, Hits>();
  forgotten: number[] = [];
  /** The next apply throws this (once). */
  failNext: StratumError | undefined;
  /** Scopes adoptAll reports as already right. */
  adoptable = new Set<number>();

  apply(scopeId: number, rules: readonly StoredRule[], def: DefaultAction): ApplyResult {
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = undefined;
      throw e;
    }
    this.applies++;
    this.scopes.set(scopeId, { rules: rules.map((r) => ({ ...r })), def });
    return { gen: this.applies, writes: rules.length, how: "generation" };
  }

  adoptAll(scopes: Array<{ scopeId: number; rules: StoredRule[]; def: DefaultAction }>): Set<number> {
    const out = new Set<number>();
    for (const s of scopes)
      if (this.adoptable.has(s.scopeId)) {
        this.scopes.set(s.scopeId, { rules: s.rules, def: s.def });
        out.add(s.scopeId);
      }
    return out;
  }

  remove(scopeId: number): void {
    this.scopes.delete(scopeId);
  }

  gc(keep: Set<number>): number {
    let n = 0;
    for (const id of [...this.scopes.keys()])
      if (!keep.has(id)) {
        this.scopes.delete(id);
        n++;
      }
    return n;
  }

  hits(id: number): Hits {
    return this.hitsOf.get(id) ?? { packets: 0, bytes: 0 };
  }

  defaultHits(scopeId: number): Hits {
    return this.hits((0x80000000 | scopeId) >>> 0);
  }

  forgetHits(ids: number[]): void {
    this.forgotten.push(...ids);
    for (const id of ids) this.hitsOf.delete(id);
  }

  blockAdd(p: PackedPrefixes, have: Record<4 | 6, number>): void {
    const n = packedCount(p);
    for (const fam of [4, 6] as const)
      if (n[fam] && have[fam] + n[fam] > this.blockMax)
        throw new StratumError("CAPACITY", `the IPv${fam} blocklist holds ${this.blockMax} prefixes`);
    for (const s of unpackSubnets(p)) this.block.add(formatSubnet(s));
  }

  blockDel(p: Subnet): boolean {
    return this.block.delete(formatSubnet(p));
  }

  blockDelMany(p: PackedPrefixes): number {
    let n = 0;
    for (const s of unpackSubnets(p)) if (this.block.delete(formatSubnet(s))) n++;
    return n;
  }

  blockPacked(): PackedPrefixes {
    this.blockWalks++;
    return packPrefixes(this.block);
  }

  blockList(): string[] {
    return [...this.block];
  }

  /** Walks of the tries so far (blockPacked calls). */
  blockWalks = 0;
  /** The tries' ids (another pair: the tries were recreated). */
  ids: [number, number] = [11, 12];

  blockIds(): [number, number] {
    return this.ids;
  }
}
