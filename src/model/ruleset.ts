/** A scope's whole rule set as a document: what `firewall export` writes and `firewall import`
 * reads (YAML), and the import API's body (JSON). Top level `default:` (allow|deny) and
 * `rules:`, a list whose fields are the flags of `firewall rule add`. Validation checks every
 * rule and reports the first bad one by index (and, for YAML, its line). Pure. */
import { isMap, isSeq, LineCounter, parseDocument, stringify } from "yaml";
import { StratumError } from "../errors";
import { type DefaultAction, parseRule, type Rule, type RuleSpec, ruleSpec } from "./firewall-rule";

/** The document: `default` absent on import keeps the scope's current default. */
export interface RuleSetDoc {
  default?: DefaultAction;
  rules: Array<Record<string, unknown>>;
}

export interface RuleSet {
  default?: DefaultAction;
  /** Validated, in document order. */
  rules: Rule[];
}

/** A rule in the user's words, single ports and ICMP types as plain numbers. */
export function exportRule(r: Rule): Record<string, unknown> {
  const spec: Record<string, unknown> = ruleSpec(r);
  for (const k of ["sport", "dport", "icmp-type"])
    if (typeof spec[k] === "string" && /^\d+$/.test(spec[k] as string)) spec[k] = Number(spec[k]);
  return spec;
}

export function exportRuleSet(def: DefaultAction, rules: Rule[]): Required<RuleSetDoc> {
  return { default: def, rules: [...rules].sort((a, b) => a.priority - b.priority).map(exportRule) };
}

export function ruleSetYaml(doc: RuleSetDoc): string {
  return stringify(doc, { lineWidth: 0 });
}

/** A validation message of the model (worded for flags) reworded for a document field. */
function fieldMessage(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m
    .replace(/^rule: /, "")
    .replace(/--([a-z][a-z-]*)/g, "$1")
    .replace(/^spec: Unrecognized keys?: (.*)$/, `unknown field $1 (a rule has ${RULE_FIELDS.join(", ")})`);
}

/** The fields of a rule, in the order export writes them: the flags of `firewall rule add`. */
export const RULE_FIELDS = [
  "priority",
  "direction",
  "src",
  "dst",
  "proto",
  "sport",
  "dport",
  "icmp-type",
  "action",
  "log",
] as const;

/** Validates a document: the top level, then each rule (first bad one reported as
 * `rules[i] (priority p): …`, prefixed by `where(i)` when given), then unique priorities. */
export function validateRuleSet(doc: unknown, where: (i: number) => string = () => ""): RuleSet {
  if (doc === null || typeof doc !== "object" || Array.isArray(doc))
    throw new StratumError("INVALID", "a rule set is a map with `default:` (allow or deny) and `rules:` (a list)");
  const d = doc as Record<string, unknown>;
  for (const k of Object.keys(d))
    if (k !== "default" && k !== "rules")
      throw new StratumError("INVALID", `unknown top-level field "${k}" (a rule set has default: and rules:)`);
  if (d.default !== undefined && d.default !== "allow" && d.default !== "deny")
    throw new StratumError("INVALID", `default: must be allow or deny, not ${JSON.stringify(d.default)}`);
  const list = d.rules ?? [];
  if (!Array.isArray(list)) throw new StratumError("INVALID", "rules: must be a list of rules");
  const rules: Rule[] = [];
  const byPriority = new Map<number, number>();
  list.forEach((spec, i) => {
    const pr =
      spec && typeof spec === "object" && "priority" in spec ? ` (priority ${(spec as RuleSpec).priority})` : "";
    let r: Rule;
    try {
      if (spec === null || typeof spec !== "object" || Array.isArray(spec))
        throw new StratumError("INVALID", "a rule is a map of fields (priority, action, ...)");
      r = parseRule(spec as RuleSpec);
    } catch (e) {
      throw new StratumError("INVALID", `${where(i)}rules[${i}]${pr}: ${fieldMessage(e)}`);
    }
    const other = byPriority.get(r.priority);
    if (other !== undefined)
      throw new StratumError(
        "INVALID",
        `${where(i)}rules[${i}] has priority ${r.priority} like rules[${other}]: priorities are unique`,
      );
    byPriority.set(r.priority, i);
    rules.push(r);
  });
  return { ...(d.default !== undefined ? { default: d.default as DefaultAction } : {}), rules };
}

/** Keys a rule set's mappings may hold, as they can appear in the text. */
const KEY_TEXT =
  /(?:^|[\s{,])["']?(?:default|rules|priority|direction|src|dst|proto|sport|dport|icmp-type|action|log)["']?\s*:/gm;

/** The fast path: Bun's native YAML parser (about 10× the yaml library's speed: 0.1 s instead
 * of 1 s for 10,000 rules), taken only when the document validates and every known key in
 * the text is a key of the result (no key given twice, which the native parser would take
 * silently); anything else goes the slow way, for its checks and line numbers. */
function fastRuleSet(text: string): { doc: RuleSetDoc; set: RuleSet } | undefined {
  let doc: unknown;
  try {
    doc = Bun.YAML.parse(text);
  } catch {
    return undefined;
  }
  if (Array.isArray(doc) || doc === null || typeof doc !== "object") return undefined;
  let keys = Object.keys(doc).length;
  const rules = (doc as { rules?: unknown }).rules;
  if (Array.isArray(rules))
    for (const r of rules) if (r && typeof r === "object" && !Array.isArray(r)) keys += Object.keys(r).length;
  if ((text.match(KEY_TEXT)?.length ?? 0) !== keys) return undefined;
  try {
    return { doc: doc as RuleSetDoc, set: validateRuleSet(doc) };
  } catch {
    return undefined;
  }
}

/** Parses and validates a YAML rule set; errors name the file and the line of the bad rule. */
export function parseRuleSetYaml(text: string, file: string): { doc: RuleSetDoc; set: RuleSet } {
  const fast = fastRuleSet(text);
  if (fast) return fast;
  const lc = new LineCounter();
  const yd = parseDocument(text, { lineCounter: lc, prettyErrors: true, uniqueKeys: true });
  const err = yd.errors[0];
  if (err) {
    const pos = err.linePos?.[0];
    const what = (err.message.split("\n")[0] ?? "").replace(/ at line \d+, column \d+:?$/, "");
    throw new StratumError("INVALID", `${file}${pos ? `:${pos.line}` : ""}: not valid YAML: ${what}`);
  }
  const lineOf = (i: number): string => {
    const rules = isMap(yd.contents) ? yd.contents.get("rules", true) : undefined;
    const item = isSeq(rules) ? rules.items[i] : undefined;
    const off = (item as { range?: [number, number, number] } | undefined)?.range?.[0];
    return off === undefined ? `${file}: ` : `${file}:${lc.linePos(off).line}: `;
  };
  const doc = (yd.toJS() ?? {}) as unknown;
  let set: RuleSet;
  try {
    set = validateRuleSet(doc, lineOf);
  } catch (e) {
    const m = (e as Error).message;
    throw new StratumError("INVALID", m.startsWith(file) ? m : `${file}: ${m}`);
  }
  return { doc: doc as RuleSetDoc, set };
}
