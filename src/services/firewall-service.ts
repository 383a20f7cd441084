/** Firewall rules and the blocklist as operations. Every change validates the whole resulting
 * set, writes the kernel first (FirewallTables: capacity checked before anything is written,
 * the new generation switched in atomically) and only then the store; when the store write
 * fails, the kernel gets the previous set back. A refused change leaves both as they were.
 * A scope is a network (its id) or the node's global scope (0, named `global`). */
import type {
  BlockAddResult,
  BlockClearResult,
  BlocklistView,
  BlockTestResult,
  DefaultView,
  ImportResult,
  RuleFields,
  RuleListView,
  RuleSetDocument,
  RuleView,
} from "../api/contract";
import { FW_DEFAULT_ID, FW_GLOBAL_SCOPE } from "../datapath/firewall-maps";
import type { FirewallTables } from "../datapath/firewall-tables";
import { StratumError } from "../errors";
import {
  addBlockPrefix,
  badLinesError,
  coveringPrefixes,
  type PackedPrefixes,
  PrefixPacker,
  packedCount,
  packedMinus,
  packSubnets,
  parseBlocklistText,
  parseBlockPrefix,
} from "../model/blocklist";
import {
  checkRuleCount,
  checkRuleSet,
  type DefaultAction,
  parseRule,
  parseRuleCidr,
  type Rule,
  type RuleSpec,
  ruleContentKey,
  ruleSpec,
  type StoredRule,
  withRuleInPlace,
} from "../model/firewall-rule";
import { formatIp, formatSubnet, type Subnet } from "../model/ip";
import { exportRule, exportRuleSet, validateRuleSet } from "../model/ruleset";
import type { Store } from "../store/store";

/** The kernel side the service drives (FirewallTables; a stand-in in unit tests). */
export type FwKernel = Pick<
  FirewallTables,
  | "apply"
  | "adoptAll"
  | "remove"
  | "gc"
  | "hits"
  | "defaultHits"
  | "forgetHits"
  | "blockAdd"
  | "blockDel"
  | "blockDelMany"
  | "blockPacked"
  | "blockIds"
>;

/** A note, kept beside the store, that the blocklist tries hold exactly the store's list:
 * written after every change and check that leaves them so, removed before any change of
 * them. A start that finds it naming the same tries and counts does not walk them (a walk of
 * a million prefixes takes seconds). Only where every change of the list passes through this
 * service (a single node; a cluster's list also changes through its mirror). */
export interface BlockMark {
  read(): string | undefined;
  write(v: string): void;
  clear(): void;
}

/** Lists this long and longer are checked against the kernel at start only (when the mark
 * does not vouch for them), not in every periodic pass. */
export const BLOCK_WALK_MAX = 65_536;

/** The name of the global scope in the API and the CLI (reserved as a network name). */
export const GLOBAL_SCOPE_NAME = "global";

export interface Scope {
  id: number;
  /** `global` or the network's name. */
  name: string;
}

/** A page of the blocklist when the caller names no size. */
export const BLOCKLIST_PAGE = 1000;

/** A rule's fields in the user's words, every one present (null: matches anything). */
export function ruleFields(r: Rule): RuleFields {
  const x = exportRule(r) as Partial<RuleFields> &
    Pick<RuleFields, "priority" | "direction" | "proto" | "action" | "log">;
  return {
    priority: x.priority,
    direction: x.direction,
    src: x.src ?? null,
    dst: x.dst ?? null,
    proto: x.proto,
    sport: x.sport ?? null,
    dport: x.dport ?? null,
    "icmp-type": x["icmp-type"] ?? null,
    action: x.action,
    log: x.log,
  };
}

export interface FirewallRestoreReport {
  scopes: number;
  /** Scopes whose kernel state was already right (nothing written). */
  adopted: number;
  blocklist: { added: number; removed: number };
  collected: string[];
  errors: string[];
}

export class FirewallService {
  #blockMark: BlockMark | undefined;
  /** Whether a restore has checked the blocklist tries in this process. */
  #blockChecked = false;

  constructor(
    readonly store: Store,
    readonly kernel: FwKernel,
    readonly log: (msg: string) => void = () => {},
  ) {}

  useBlockMark(mark: BlockMark): void {
    this.#blockMark = mark;
  }

  /** What the mark says when the tries hold the store's list (of `counts` prefixes). */
  #blockState(counts = this.#counts()): string {
    const [id4, id6] = this.kernel.blockIds();
    return JSON.stringify({ id4, id6, ...counts });
  }

  /** Runs a change of the tries with the mark removed first, written again once it is through. */
  #blockChange<T>(change: () => T): T {
    this.#blockMark?.clear();
    const out = change();
    this.#blockMark?.write(this.#blockState());
    return out;
  }

  /** `global` or a network's name → the scope. */
  scope(name: string): Scope {
    if (name === GLOBAL_SCOPE_NAME) return { id: FW_GLOBAL_SCOPE, name };
    const n = this.store.getNetwork(name);
    if (!n) throw new StratumError("NOT_FOUND", `network ${name} does not exist (the global scope is "global")`);
    return { id: n.id, name: n.name };
  }

  #state(s: Scope): { rules: StoredRule[]; def: DefaultAction } {
    return { rules: this.store.listRules(s.id), def: this.store.scopeDefault(s.id) };
  }

  /** Kernel first, then `write` (the store); a failing write puts the previous set back. */
  #commit<T>(
    s: Scope,
    prev: { rules: StoredRule[]; def: DefaultAction },
    next: { rules: StoredRule[]; def: DefaultAction },
    write: () => T,
  ): T {
    const what = s.id === FW_GLOBAL_SCOPE ? "firewall (global scope)" : `firewall of network ${s.name}`;
    try {
      this.kernel.apply(s.id, checkRuleSet(next.rules), next.def);
    } catch (e) {
      throw e instanceof StratumError ? e.wrap(what) : e;
    }
    try {
      return write();
    } catch (e) {
      try {
        this.kernel.apply(s.id, prev.rules, prev.def);
      } catch (e2) {
        this.log(`${what}: restoring the previous rules after a failed store write: ${(e2 as Error).message}`);
      }
      throw e;
    }
  }

  #view(r: StoredRule): RuleView {
    return { id: r.id, ...ruleFields(r), hits: this.kernel.hits(r.id) };
  }

  #taken(rules: StoredRule[], priority: number, except?: number): void {
    const holder = rules.find((r) => r.priority === priority && r.id !== except);
    if (holder)
      throw new StratumError(
        "INVALID",
        `priority ${priority} is taken by rule ${holder.id}: priorities are unique in a scope (pick another, or move rule ${holder.id} first)`,
      );
  }

  listRules(scopeName: string): RuleListView {
    const s = this.scope(scopeName);
    const { rules, def } = this.#state(s);
    return {
      scope: s.name,
      default: def,
      defaultHits: this.kernel.defaultHits(s.id),
      rules: rules.map((r) => this.#view(r)),
    };
  }

  addRule(scopeName: string, spec: RuleSpec): RuleView {
    const s = this.scope(scopeName);
    const rule = parseRule(spec);
    const prev = this.#state(s);
    this.#taken(prev.rules, rule.priority);
    checkRuleCount(prev.rules.length + 1); // before an id is spent; #taken checked the priority
    const [id] = this.store.allocRuleIds(1) as [number];
    const stored: StoredRule = { ...rule, id };
    const rules = withRuleInPlace(prev.rules, stored);
    this.#commit(s, prev, { rules, def: prev.def }, () => this.store.addRule(s.id, stored));
    return this.#view(stored);
  }

  deleteRule(scopeName: string, id: number): void {
    const s = this.scope(scopeName);
    const prev = this.#state(s);
    if (!prev.rules.some((r) => r.id === id))
      throw new StratumError(
        "NOT_FOUND",
        `${s.name === GLOBAL_SCOPE_NAME ? "the global scope" : s.name} has no rule ${id}`,
      );
    const rules = prev.rules.filter((r) => r.id !== id);
    this.#commit(s, prev, { rules, def: prev.def }, () => this.store.deleteRule(s.id, id));
    this.kernel.forgetHits([id]);
  }

  moveRule(scopeName: string, id: number, priority: number): RuleView {
    const s = this.scope(scopeName);
    const prev = this.#state(s);
    const r = prev.rules.find((x) => x.id === id);
    if (!r)
      throw new StratumError(
        "NOT_FOUND",
        `${s.name === GLOBAL_SCOPE_NAME ? "the global scope" : s.name} has no rule ${id}`,
      );
    const moved = { ...parseRule({ ...ruleSpec(r), priority }), id };
    this.#taken(prev.rules, moved.priority, id);
    const rules = prev.rules.map((x) => (x.id === id ? moved : x));
    return this.#view(this.#commit(s, prev, { rules, def: prev.def }, () => this.store.moveRule(s.id, id, priority)));
  }

  setDefault(scopeName: string, def: DefaultAction): DefaultView {
    const s = this.scope(scopeName);
    this.changeDefault(s, def, () =>
      s.id === FW_GLOBAL_SCOPE
        ? this.store.setGlobalDefault(def)
        : this.store.updateNetwork(s.name, { defaultAction: def }),
    );
    return { scope: s.name, default: def };
  }

  /** Switches a scope's default action in the kernel around a store write that records it
   * (`network set --default-action` comes through here too). */
  changeDefault<T>(s: Scope, def: DefaultAction, write: () => T): T {
    const prev = this.#state(s);
    return this.#commit(s, prev, { rules: prev.rules, def }, write);
  }

  exportRules(scopeName: string): RuleSetDocument {
    const s = this.scope(scopeName);
    const { rules, def } = this.#state(s);
    return exportRuleSet(def, rules) as RuleSetDocument;
  }

  /** Replaces a scope's whole rule set (and its default, when the document has one) at once. */
  importRules(scopeName: string, doc: unknown): ImportResult {
    const s = this.scope(scopeName);
    const set = validateRuleSet(doc);
    const prev = this.#state(s);
    checkRuleSet(set.rules.map((r) => ({ ...r, id: 0 })));
    const def = set.default ?? prev.def;
    const old = new Map(prev.rules.map((r) => [ruleContentKey(r), r.id]));
    const fresh = set.rules.filter((r) => !old.has(ruleContentKey(r)));
    const ids = fresh.length ? this.store.allocRuleIds(fresh.length) : [];
    let k = 0;
    const rules: StoredRule[] = set.rules.map((r) => ({
      ...r,
      id: old.get(ruleContentKey(r)) ?? (ids[k++] as number),
    }));
    this.#commit(s, prev, { rules, def }, () => this.store.replaceRules(s.id, rules, def));
    const keep = new Set(rules.map((r) => r.id));
    this.kernel.forgetHits(prev.rules.filter((r) => !keep.has(r.id)).map((r) => r.id));
    return { scope: s.name, default: def, rules: rules.length, kept: rules.length - fresh.length };
  }

  // ---- scopes of networks --------------------------------------------------------------

  /** Installs a network's scope from the store (a new network: no rules, its default). */
  applyScope(scopeId: number): void {
    const rules = this.store.listRules(scopeId);
    this.kernel.apply(scopeId, rules, this.store.scopeDefault(scopeId));
  }

  /** Removes a network's scope from the kernel and forgets its hit counters; the store
   * drops its rules with the network. */
  removeScope(scopeId: number): void {
    const ids = this.store.listRules(scopeId).map((r) => r.id);
    this.kernel.remove(scopeId);
    this.kernel.forgetHits([...ids, (FW_DEFAULT_ID | scopeId) >>> 0]);
  }

  // ---- blocklist -----------------------------------------------------------------------

  /** A page of the blocklist in numeric order (family, address, length): `limit` entries
   * after the prefix `after` (the previous page's `next`), only those covering `contains`
   * (an address or prefix) when given. */
  blockPage(q: { contains?: string; limit?: number; after?: string } = {}): BlocklistView {
    const limit = q.limit ?? BLOCKLIST_PAGE;
    let after: string | undefined;
    if (q.after !== undefined)
      try {
        after = parseBlockPrefix(q.after).prefix;
      } catch (e) {
        throw new StratumError("INVALID", `after: ${(e as Error).message} (give the previous page's next)`);
      }
    const only = q.contains === undefined ? undefined : coveringPrefixes(parseRuleCidr(q.contains, "contains"));
    const rows = this.store.blockPage({ after, limit: limit + 1, only });
    const prefixes = rows.slice(0, limit);
    return {
      counts: this.#counts(),
      prefixes,
      next: rows.length > limit ? (prefixes.at(-1)?.prefix ?? null) : null,
    };
  }

  /** Which listed prefixes cover an address (or every address of a prefix), longest first:
   * the first is the one the datapath's longest-prefix match finds. */
  blockTest(text: string): BlockTestResult {
    const s: Subnet = parseRuleCidr(text, "address");
    const bits = s.family === 4 ? 32 : 128;
    const listed = this.store.blockListed(coveringPrefixes(s));
    const matches = [...listed].sort((a, b) => Number(b.split("/")[1]) - Number(a.split("/")[1]));
    return {
      address: s.prefixLen === bits ? formatIp({ family: s.family, value: s.network }) : formatSubnet(s),
      blocked: matches.length > 0,
      match: matches[0] ?? null,
      matches,
    };
  }

  /** Removes every prefix: from the tries first (whatever they hold), then the store; a
   * failure puts the tries back. */
  blockClear(): BlockClearResult {
    return this.#blockChange(() => this.#blockClear());
  }

  #blockClear(): BlockClearResult {
    const held = this.kernel.blockPacked();
    let removed: number;
    try {
      this.kernel.blockDelMany(held);
      removed = this.store.blockClear();
    } catch (e) {
      // Puts back what went (an update of what stayed writes the same).
      this.kernel.blockAdd(held, { 4: 0, 6: 0 });
      throw e;
    }
    return { removed, counts: this.#counts() };
  }

  #counts(): { ipv4: number; ipv6: number } {
    return { ipv4: this.store.blockCount(4), ipv6: this.store.blockCount(6) };
  }

  /** Adds prefixes: all are validated first (the bad ones reported by index, nothing added),
   * room in the tries is checked next, then the kernel, then the store. */
  blockAdd(texts: string[]): BlockAddResult {
    const out = new PrefixPacker();
    const bad: string[] = [];
    texts.forEach((t, i) => {
      try {
        addBlockPrefix(String(t), out);
      } catch (e) {
        bad.push(`prefixes[${i}]: ${(e as Error).message}`);
      }
    });
    if (bad.length)
      throw new StratumError(
        "INVALID",
        `${bad.length} bad prefix${bad.length === 1 ? "" : "es"} (nothing was added): ${bad.slice(0, 5).join("; ")}${bad.length > 5 ? `; and ${bad.length - 5} more` : ""}`,
      );
    return this.#blockChange(() => this.#blockAdd(out.pack()));
  }

  /** Adds the prefixes of a blocklist file's text (one a line, `#` comments): every line is
   * checked first, the bad ones reported by line number and nothing added; `file` names it in
   * the message. Answers the lines read besides. */
  blockAddText(text: string, file = "the list"): BlockAddResult & { lines: number } {
    const parsed = parseBlocklistText(text);
    if (parsed.bad.length) throw badLinesError(file, parsed.bad);
    return { ...this.#blockChange(() => this.#blockAdd(parsed.prefixes)), lines: parsed.lines };
  }

  #blockAdd(given: PackedPrefixes): BlockAddResult {
    const n = packedCount(given);
    const add = this.store.blockMissing(given);
    const a = packedCount(add);
    if (a[4] + a[6]) {
      this.kernel.blockAdd(add, { 4: this.store.blockCount(4), 6: this.store.blockCount(6) });
      try {
        this.store.blockAdd(add);
      } catch (e) {
        this.kernel.blockDelMany(add);
        throw e;
      }
    }
    const total = n[4] + n[6];
    return { given: total, added: a[4] + a[6], listed: total - a[4] - a[6], counts: this.#counts() };
  }

  blockDel(text: string): { deleted: string } {
    return this.#blockChange(() => this.#blockDel(text));
  }

  #blockDel(text: string): { deleted: string } {
    const p = parseBlockPrefix(text);
    if (!this.store.blockListed([p.prefix]).has(p.prefix))
      throw new StratumError("NOT_FOUND", `${p.prefix} is not on the blocklist`);
    const sn = p.subnet;
    this.kernel.blockDel(sn);
    try {
      this.store.blockDel(p.prefix);
    } catch (e) {
      this.kernel.blockAdd(packSubnets([sn]), { 4: 0, 6: 0 });
      throw e;
    }
    return { deleted: p.prefix };
  }

  // ---- restore (agent start) -------------------------------------------------------------

  /** Makes the kernel match the store: every scope (taken over as is where it is already
   * right), then the tables and scopes nothing asks for go, then the blocklist tries. */
  restore(): FirewallRestoreReport {
    const report: FirewallRestoreReport = {
      scopes: 0,
      adopted: 0,
      blocklist: { added: 0, removed: 0 },
      collected: [],
      errors: [],
    };
    const scopes = [
      { scopeId: FW_GLOBAL_SCOPE, name: "the global scope", def: this.store.getGlobalDefault() },
      ...this.store.listNetworks().map((n) => ({ scopeId: n.id, name: `network ${n.name}`, def: n.defaultAction })),
    ].map((s) => ({ ...s, rules: this.store.listRules(s.scopeId) }));
    const adopted = this.kernel.adoptAll(scopes);
    for (const s of scopes) {
      report.scopes++;
      if (adopted.has(s.scopeId)) {
        report.adopted++;
        continue;
      }
      try {
        this.kernel.apply(s.scopeId, s.rules, s.def);
      } catch (e) {
        report.errors.push(`firewall of ${s.name}: ${(e as Error).message}`);
      }
    }
    const gone = this.kernel.gc(new Set(scopes.map((s) => s.scopeId)));
    if (gone) report.collected.push(`${gone} firewall table entr${gone === 1 ? "y" : "ies"} of no scope`);

    // The blocklist: at start unless the mark vouches for the tries, later while it is short.
    const first = !this.#blockChecked;
    this.#blockChecked = true;
    const mark = this.#blockMark;
    if (mark) {
      const counts = this.#counts();
      const long = counts.ipv4 + counts.ipv6 >= BLOCK_WALK_MAX;
      if ((first || long) && mark.read() === this.#blockState(counts)) return report;
      mark.clear();
    }
    this.#restoreBlocklist(report);
    this.#blockMark?.write(this.#blockState());
    return report;
  }

  /** Makes the tries hold the store's list: adds what is missing, removes what is not listed. */
  #restoreBlocklist(report: FirewallRestoreReport): void {
    const want = this.store.blockPacked();
    const have = this.kernel.blockPacked();
    const missing = packedMinus(want, have);
    let extra = packedMinus(have, want);
    const inTrie = packedCount(have);
    const collect = () => {
      report.blocklist.removed += this.kernel.blockDelMany(extra);
      extra = { v4: new Float64Array(0), v6: new Uint32Array(0) };
    };
    const m = packedCount(missing);
    if (m[4] + m[6]) {
      try {
        this.kernel.blockAdd(missing, inTrie);
      } catch (e) {
        const x = packedCount(extra);
        if (!(e instanceof StratumError && e.code === "CAPACITY") || x[4] + x[6] === 0) throw e;
        // Stale prefixes hold the room: collect them first, then restore.
        const room = { 4: inTrie[4] - x[4], 6: inTrie[6] - x[6] };
        collect();
        this.kernel.blockAdd(missing, room);
      }
      report.blocklist.added = m[4] + m[6];
    }
    collect();
    if (report.blocklist.removed)
      report.collected.push(`${report.blocklist.removed} blocklist prefix(es) not in the store`);
  }
}
