/** Microsegmentation: groups, their endpoints, and the policy between groups (docs/microseg.md).
 * Every change is one store transaction on the policy document (validated and compiled before
 * it is written: nothing is half-applied), then this node's datapath gets the new generation;
 * other nodes' agents follow the store (the microseg reconciler). */
import type { MsegDocument, MsegGroupView, MsegRuleView } from "../api/contract";
import { MsegTables } from "../datapath/mseg-tables";
import { StratumError } from "../errors";
import {
  addGroup,
  addRules,
  type CompiledMicroseg,
  compileMicroseg,
  exportMicroseg,
  lineOf,
  type MicrosegDoc,
  MSEG,
  type MsegGroup,
  type MsegRule,
  msegParentsFirst,
  removeGroup,
  removeRules,
  validateMicroseg,
} from "../model/microseg";
import type { ServiceContext } from "./service-context";

/** What the service needs of the datapath (a stand-in without a kernel gives the same). */
export type MsegKernel = Pick<MsegTables, "state" | "inForce" | "apply" | "hits" | "pruneHits">;

export class MicrosegService {
  readonly tables: MsegKernel;
  constructor(
    readonly ctx: ServiceContext,
    tables?: MsegKernel,
  ) {
    this.tables = tables ?? new MsegTables(ctx.dp);
  }

  get store() {
    return this.ctx.store;
  }

  /** Writes the stored policy to this node's datapath unless the kernel holds it already. */
  apply(
    doc: MicrosegDoc = this.store.getMicroseg(),
    c: CompiledMicroseg = compileMicroseg(doc),
  ): { gen: number; keys: number; changed: boolean } {
    if (this.tables.inForce(c)) return { gen: this.tables.state().gen, keys: c.policy.size, changed: false };
    const r = this.tables.apply(doc, c);
    this.tables.pruneHits(new Set(doc.rules.map((x) => x.id)));
    return { gen: r.gen, keys: r.keys, changed: true };
  }

  /** A change of the document: validated and compiled inside the store's transaction, then
   * applied here. */
  #change<T>(fn: (doc: MicrosegDoc, members: (g: string) => number) => { doc: MicrosegDoc; result: T }): T {
    // The document and its compiled keys as the transaction that wrote them had them (a retried
    // transaction compiles again): compiled once, for CAPACITY before anything is written and
    // for the datapath after.
    let written: { doc: MicrosegDoc; compiled: CompiledMicroseg } | undefined;
    const out = this.store.updateMicroseg((doc, members) => {
      const r = fn(doc, members);
      written = { doc: r.doc, compiled: compileMicroseg(r.doc) };
      return r;
    });
    try {
      if (written) this.apply(written.doc, written.compiled);
    } catch (e) {
      this.ctx.log(`microsegmentation: the policy is stored but not in the datapath yet: ${(e as Error).message}`);
      throw new StratumError(
        "SYS",
        `the policy is stored; writing it to the datapath failed: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
    return out;
  }

  // ---- groups ----

  #members(): Map<string, string[]> {
    const m = new Map<string, string[]>();
    for (const e of this.store.listEndpoints())
      if (e.group) {
        const l = m.get(e.group);
        if (l) l.push(e.name);
        else m.set(e.group, [e.name]);
      }
    return m;
  }

  #view(doc: MicrosegDoc, g: MsegGroup, members: Map<string, string[]>): MsegGroupView {
    return {
      name: g.name,
      id: g.id,
      parent: g.parent ?? null,
      line: lineOf(doc, g.name),
      children: doc.groups.filter((c) => c.parent === g.name).map((c) => c.name),
      description: g.description ?? null,
      members: members.get(g.name) ?? [],
      createdAt: g.createdAt,
    };
  }

  groups(): MsegGroupView[] {
    const doc = this.store.getMicroseg();
    const members = this.#members();
    return [...doc.groups].sort((a, b) => a.name.localeCompare(b.name)).map((g) => this.#view(doc, g, members));
  }

  group(name: string): MsegGroupView {
    const doc = this.store.getMicroseg();
    const g = doc.groups.find((x) => x.name === name);
    if (!g) throw new StratumError("NOT_FOUND", `no group "${name}"`);
    return this.#view(doc, g, this.#members());
  }

  createGroup(spec: { name: string; parent?: string; description?: string }): MsegGroupView {
    const g = this.#change((doc) => {
      const r = addGroup(doc, spec);
      return { doc: r.doc, result: r.group };
    });
    return this.group(g.name);
  }

  deleteGroup(name: string): void {
    this.#change((doc, members) => ({ doc: removeGroup(doc, name, members(name)), result: undefined }));
  }

  // ---- entries ----

  #ruleView(r: MsegRule, hits: Map<number, { packets: number; bytes: number }>): MsegRuleView {
    return {
      id: r.id,
      from: r.from,
      to: r.to,
      action: r.action,
      proto: r.proto ?? null,
      dport: r.dport ?? null,
      log: !!r.log,
      description: r.description ?? null,
      hits: hits.get(r.id) ?? { packets: 0, bytes: 0 },
    };
  }

  rules(): { rules: MsegRuleView[]; defaultHits: { packets: number; bytes: number } } {
    const hits = this.tables.hits();
    return {
      rules: this.store.getMicroseg().rules.map((r) => this.#ruleView(r, hits)),
      defaultHits: hits.get(MSEG.DEFAULT_ID) ?? { packets: 0, bytes: 0 },
    };
  }

  addRule(spec: unknown): MsegRuleView {
    const r = this.#change((doc) => {
      const out = addRules(doc, [spec]);
      return { doc: out.doc, result: out.rules[0] as MsegRule };
    });
    return this.#ruleView(r, new Map());
  }

  deleteRule(id: number): void {
    this.#change((doc) => ({ doc: removeRules(doc, [id]), result: undefined }));
  }

  // ---- the whole policy ----

  export(): MsegDocument {
    return exportMicroseg(this.store.getMicroseg());
  }

  /** Replaces the whole policy: a group of the same name (and parent) keeps its id, others are
   * added with new ids or removed (refused while an endpoint is in one); every entry is new. */
  import(input: MsegDocument): { groups: { added: number; removed: number; kept: number }; rules: number } {
    return this.#change((doc, members) => {
      const old = new Map(doc.groups.map((g) => [g.name, g]));
      let next: MicrosegDoc = { groups: [], rules: [], nextGroupId: doc.nextGroupId, nextRuleId: doc.nextRuleId };
      let added = 0;
      let kept = 0;
      for (const { spec, i } of msegParentsFirst(input.groups)) {
        const parent =
          spec.parent ?? (spec.name.includes("/") ? spec.name.slice(0, spec.name.lastIndexOf("/")) : undefined);
        const was = old.get(spec.name);
        try {
          if (was && was.parent === parent) {
            // Same place in the tree: same id (what packets in flight and other nodes carry).
            const r = addGroup({ ...next, nextGroupId: was.id }, { ...spec, parent }, was.createdAt);
            next = { ...r.doc, nextGroupId: next.nextGroupId };
            kept++;
          } else {
            next = addGroup(next, { ...spec, ...(parent !== undefined ? { parent } : {}) }).doc;
            added++;
          }
        } catch (e) {
          throw e instanceof StratumError ? e.wrap(`groups[${i}]`) : e;
        }
      }
      const removed = doc.groups.filter((g) => !next.groups.some((n) => n.name === g.name && n.id === g.id));
      for (const g of removed) {
        const n = members(g.name);
        if (n > 0 && !next.groups.some((x) => x.name === g.name))
          throw new StratumError(
            "CONFLICT",
            `group "${g.name}" has ${n} endpoint${n === 1 ? "" : "s"} and is not in the document: assign them elsewhere first`,
          );
        if (n > 0)
          throw new StratumError(
            "CONFLICT",
            `group "${g.name}" has ${n} endpoint${n === 1 ? "" : "s"} and would move in the tree: a group keeps its parent`,
          );
      }
      input.rules.forEach((spec, i) => {
        try {
          next = addRules(next, [spec]).doc;
        } catch (e) {
          throw e instanceof StratumError ? e.wrap(`rules[${i}]`) : e;
        }
      });
      const doc2 = validateMicroseg(next);
      return {
        doc: doc2,
        result: { groups: { added, removed: removed.length, kept }, rules: doc2.rules.length },
      };
    });
  }
}
