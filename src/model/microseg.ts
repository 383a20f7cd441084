/** Microsegmentation: groups of endpoints (a tree), policy entries between groups, the
 * reference evaluator (the semantics, stated plainly) and the compiler into the datapath's
 * keys (bpf/include/stm_mseg.h), which must agree with it. Pure.
 *
 * The whole policy is one document (groups, entries, counters of ids): a change reads it,
 * changes it and writes it back in one transaction, so it is atomic everywhere. */
import { z } from "zod";
import defs from "../../bpf/include/stm_mseg.def" with { type: "text" };
import { StratumError } from "../errors";

function parseDefs(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^STM_MSEG_CONST\((\w+),\s*(0x[0-9a-fA-F]+|\d+),\s*"[^"]*"\)\s*$/gm))
    out[m[1] as string] = Number(m[2]);
  return out;
}
const D = parseDefs(defs);
function def(id: string): number {
  const v = D[id];
  if (v === undefined) throw new Error(`stm_mseg.def: ${id} missing`);
  return v;
}

/** The group id space and its carriers (bpf/include/stm_mseg.def: one source with the C side). */
export const MSEG = {
  UNTAGGED: def("UNTAGGED"),
  GROUP_MIN: def("GROUP_MIN"),
  GROUP_MAX: def("GROUP_MAX"),
  MARK_TAG: def("MARK_TAG"),
  MARK_SHIFT: def("MARK_SHIFT"),
  GROUP_MASK: def("GROUP_MASK"),
  DEPTH_MAX: def("DEPTH_MAX"),
  GROUPS_MAX: def("GROUPS_MAX"),
  RULES_MAX: def("RULES_MAX"),
  POLICY_MAX: def("POLICY_MAX"),
  DEFAULT_ID: def("DEFAULT_ID"),
  LOG_ID: def("LOG_ID"),
} as const;

/** The mark a port puts on what its endpoint (in `group`) sends. */
export const msegStamp = (group: number): number =>
  ((MSEG.MARK_TAG << MSEG.MARK_SHIFT) | (group & MSEG.GROUP_MASK)) >>> 0;

/** The source name of what belongs to no group. */
export const UNTAGGED = "untagged";
const RESERVED = new Set([UNTAGGED, "any", "none", "all"]);
const SEGMENT = "[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?";
const GROUP_NAME_RE = new RegExp(`^${SEGMENT}(?:/${SEGMENT})*$`);

export const MSEG_PROTOS = ["tcp", "udp", "icmp", "icmpv6", "sctp"] as const;
export type MsegProto = (typeof MSEG_PROTOS)[number];
export const MSEG_PROTO_NUM: Record<MsegProto, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, sctp: 132 };
export type MsegAction = "allow" | "deny";

export interface MsegGroup {
  name: string;
  /** Stable and never reused: what ports stamp and GBP carries. */
  id: number;
  parent?: string;
  description?: string;
  createdAt: string;
}

export interface MsegRule {
  /** Stable: hit counters hang on it. */
  id: number;
  /** A group, or "untagged". */
  from: string;
  to: string;
  action: MsegAction;
  proto?: MsegProto;
  /** TCP or UDP destination port (with proto). */
  dport?: number;
  log?: boolean;
  description?: string;
}

export interface MicrosegDoc {
  groups: MsegGroup[];
  rules: MsegRule[];
  nextGroupId: number;
  nextRuleId: number;
}

export const emptyMicroseg = (): MicrosegDoc => ({ groups: [], rules: [], nextGroupId: 1, nextRuleId: 1 });

const invalid = (m: string) => new StratumError("INVALID", m);

export function checkGroupName(name: string): string {
  if (RESERVED.has(name)) throw invalid(`group name "${name}" is reserved`);
  if (!GROUP_NAME_RE.test(name) || name.length > 128)
    throw invalid(
      `group name "${name}" is invalid: lower-case letters, digits and '-', starting with a letter, at most 32 per part; parts joined by '/' ("prod/web")`,
    );
  return name;
}

const byName = (doc: MicrosegDoc) => new Map(doc.groups.map((g) => [g.name, g]));

/** A group's line up the tree: itself, its parent, … its root (names). */
export function lineOf(doc: MicrosegDoc | Map<string, MsegGroup>, name: string): string[] {
  const groups = doc instanceof Map ? doc : byName(doc);
  const out: string[] = [];
  let g = groups.get(name);
  while (g) {
    if (out.includes(g.name)) throw invalid(`group "${name}" is in a cycle`); // never stored: checked on create
    out.push(g.name);
    g = g.parent ? groups.get(g.parent) : undefined;
  }
  return out;
}

/** The document with a new group (validated), its id taken from the counter. */
export function addGroup(
  doc: MicrosegDoc,
  spec: { name: string; parent?: string; description?: string },
  now = new Date().toISOString(),
): { doc: MicrosegDoc; group: MsegGroup } {
  const name = checkGroupName(spec.name);
  const groups = byName(doc);
  if (groups.has(name)) throw new StratumError("CONFLICT", `group "${name}" exists already`);
  const slash = name.lastIndexOf("/");
  const implied = slash > 0 ? name.slice(0, slash) : undefined;
  if (implied && spec.parent !== undefined && spec.parent !== implied)
    throw invalid(`group "${name}" is under "${implied}" by its name, not under "${spec.parent}"`);
  const parent = spec.parent ?? implied;
  if (parent !== undefined) {
    if (!groups.has(parent)) throw new StratumError("NOT_FOUND", `no group "${parent}" (the parent of "${name}")`);
    if (lineOf(groups, parent).length + 1 > MSEG.DEPTH_MAX)
      throw invalid(`group "${name}" would be ${MSEG.DEPTH_MAX + 1} levels deep: at most ${MSEG.DEPTH_MAX}`);
  }
  if (doc.groups.length >= MSEG.GROUPS_MAX) throw new StratumError("CAPACITY", `at most ${MSEG.GROUPS_MAX} groups`);
  if (doc.nextGroupId > MSEG.GROUP_MAX)
    throw new StratumError("CAPACITY", `group ids are used up (the last is ${MSEG.GROUP_MAX})`);
  if (spec.description !== undefined && spec.description.length > 200)
    throw invalid("a description is at most 200 characters");
  const group: MsegGroup = {
    name,
    id: doc.nextGroupId,
    ...(parent !== undefined ? { parent } : {}),
    ...(spec.description ? { description: spec.description } : {}),
    createdAt: now,
  };
  return { doc: { ...doc, groups: [...doc.groups, group], nextGroupId: doc.nextGroupId + 1 }, group };
}

/** The document without a group; refused while anything uses it: children, entries, or
 * endpoints (`members`: how many endpoints are in it). */
export function removeGroup(doc: MicrosegDoc, name: string, members: number): MicrosegDoc {
  if (!doc.groups.some((g) => g.name === name)) throw new StratumError("NOT_FOUND", `no group "${name}"`);
  const child = doc.groups.find((g) => g.parent === name);
  if (child)
    throw new StratumError("CONFLICT", `group "${name}" has a group under it ("${child.name}"): delete that first`);
  const rule = doc.rules.find((r) => r.from === name || r.to === name);
  if (rule) throw new StratumError("CONFLICT", `group "${name}" is named by entry ${rule.id}: delete it first`);
  if (members > 0)
    throw new StratumError(
      "CONFLICT",
      `group "${name}" has ${members} endpoint${members === 1 ? "" : "s"}: assign them elsewhere first (group assign EP none)`,
    );
  return { ...doc, groups: doc.groups.filter((g) => g.name !== name) };
}

/** A policy entry as written (CLI flags, YAML). */
export const MsegRuleSpecSchema = z
  .object({
    from: z.string(),
    to: z.string(),
    action: z.enum(["allow", "deny"]),
    proto: z.enum(MSEG_PROTOS).optional(),
    dport: z.union([z.string(), z.number()]).optional(),
    log: z.boolean().optional(),
    description: z.string().max(200).optional(),
  })
  .strict();
export type MsegRuleSpec = z.input<typeof MsegRuleSpecSchema>;

/** A validated entry (without its id) against the document's groups. */
export function parseMsegRule(doc: MicrosegDoc, input: unknown): Omit<MsegRule, "id"> {
  const p = MsegRuleSpecSchema.safeParse(input);
  if (!p.success) {
    const i = p.error.issues[0];
    throw invalid(`policy entry: ${i?.path.join(".") || "entry"}: ${i?.message}`);
  }
  const s = p.data;
  const groups = byName(doc);
  if (s.from !== UNTAGGED && !groups.has(s.from))
    throw new StratumError("NOT_FOUND", `no group "${s.from}" (--from: a group or "${UNTAGGED}")`);
  if (s.to === UNTAGGED) throw invalid(`--to must be a group: traffic to endpoints in no group is not segmented`);
  if (!groups.has(s.to)) throw new StratumError("NOT_FOUND", `no group "${s.to}" (--to)`);
  let dport: number | undefined;
  if (s.dport !== undefined) {
    const t = String(s.dport);
    if (!/^\d{1,5}$/.test(t) || Number(t) < 1 || Number(t) > 65535)
      throw invalid(`--dport "${t}" is not a port (1-65535)`);
    if (s.proto !== "tcp" && s.proto !== "udp") throw invalid("--dport needs --proto tcp or udp");
    dport = Number(t);
  }
  return {
    from: s.from,
    to: s.to,
    action: s.action,
    ...(s.proto ? { proto: s.proto } : {}),
    ...(dport !== undefined ? { dport } : {}),
    ...(s.log ? { log: true } : {}),
    ...(s.description ? { description: s.description } : {}),
  };
}

export function addRules(doc: MicrosegDoc, specs: unknown[]): { doc: MicrosegDoc; rules: MsegRule[] } {
  const rules = specs.map((s, i) => ({ ...parseMsegRule(doc, s), id: doc.nextRuleId + i }));
  if (doc.rules.length + rules.length > MSEG.RULES_MAX)
    throw new StratumError("CAPACITY", `at most ${MSEG.RULES_MAX} policy entries`);
  return { doc: { ...doc, rules: [...doc.rules, ...rules], nextRuleId: doc.nextRuleId + rules.length }, rules };
}

export function removeRules(doc: MicrosegDoc, ids: number[]): MicrosegDoc {
  for (const id of ids)
    if (!doc.rules.some((r) => r.id === id)) throw new StratumError("NOT_FOUND", `no policy entry ${id}`);
  const gone = new Set(ids);
  return { ...doc, rules: doc.rules.filter((r) => !gone.has(r.id)) };
}

/** Checks a whole document (an import, a stored value): names, the tree, ids, entries. */
export function validateMicroseg(doc: MicrosegDoc): MicrosegDoc {
  let out = emptyMicroseg();
  const ids = new Set<number>();
  // Parents first: a group comes after the one it is under.
  const pending = [...doc.groups];
  while (pending.length) {
    const i = pending.findIndex((g) => g.parent === undefined || out.groups.some((o) => o.name === g.parent));
    if (i < 0) {
      const g = pending[0] as MsegGroup;
      if (pending.some((p) => p.name === g.parent) || g.parent === g.name)
        throw invalid(`groups ${pending.map((p) => `"${p.name}"`).join(", ")} form a cycle`);
      throw new StratumError("NOT_FOUND", `no group "${g.parent}" (the parent of "${g.name}")`);
    }
    const g = pending.splice(i, 1)[0] as MsegGroup;
    if (!Number.isInteger(g.id) || g.id < MSEG.GROUP_MIN || g.id > MSEG.GROUP_MAX || ids.has(g.id))
      throw invalid(`group "${g.name}": id ${g.id} is not a free id in ${MSEG.GROUP_MIN}-${MSEG.GROUP_MAX}`);
    ids.add(g.id);
    out = addGroup({ ...out, nextGroupId: g.id }, g, g.createdAt).doc;
  }
  const ruleIds = new Set<number>();
  for (const r of doc.rules) {
    if (!Number.isInteger(r.id) || r.id < 1 || ruleIds.has(r.id))
      throw invalid(`policy entry id ${r.id} is not unique`);
    ruleIds.add(r.id);
    const { id: _id, ...spec } = r;
    out.rules.push({ ...parseMsegRule(out, spec), id: r.id });
  }
  const maxGroup = Math.max(0, ...ids);
  const maxRule = Math.max(0, ...ruleIds);
  return {
    groups: doc.groups.map((g) => out.groups.find((o) => o.name === g.name) as MsegGroup),
    rules: out.rules,
    nextGroupId: Math.max(doc.nextGroupId, maxGroup + 1),
    nextRuleId: Math.max(doc.nextRuleId, maxRule + 1),
  };
}

// ---- the semantics --------------------------------------------------------------------------

export interface MsegPacket {
  /** The sender's group (name), or null: untagged. */
  from: string | null;
  /** The destination endpoint's group. */
  to: string;
  /** IP protocol number. */
  proto: number;
  /** TCP/UDP destination port; absent for other protocols. */
  dport?: number;
}

export interface MsegDecision {
  action: MsegAction;
  /** The entry that decided; absent: none applied (denied). */
  rule?: MsegRule;
  /** How far up the tree the entry's destination and source are (0: the groups themselves). */
  dist?: number;
  level?: number;
}

/** The reference evaluator. Entries apply whose destination is the packet's destination group
 * or above it, whose source is the sender's group or above it ("untagged": only untagged
 * packets), and whose protocol and port (when they have them) are the packet's. The most
 * specific decides: the destination nearest in the tree first, then the source, then an entry
 * with a port before one with only a protocol before one with neither. Entries equally
 * specific (the same groups, protocol and port) that disagree: deny. None: deny. */
export function msegDecide(doc: MicrosegDoc, p: MsegPacket): MsegDecision {
  const groups = byName(doc);
  const dLine = lineOf(groups, p.to);
  const sLine = p.from === null ? [UNTAGGED] : groups.has(p.from) ? lineOf(groups, p.from) : [p.from];
  let best: { rank: [number, number, number]; rules: MsegRule[] } | undefined;
  for (const r of doc.rules) {
    const j = dLine.indexOf(r.to);
    const i = sLine.indexOf(r.from);
    if (j < 0 || i < 0) continue;
    if (r.proto && MSEG_PROTO_NUM[r.proto] !== p.proto) continue;
    if (r.dport !== undefined && r.dport !== p.dport) continue;
    const rank: [number, number, number] = [j, i, r.dport !== undefined ? 0 : r.proto ? 1 : 2];
    const cmp = best ? rank[0] - best.rank[0] || rank[1] - best.rank[1] || rank[2] - best.rank[2] : -1;
    if (cmp < 0) best = { rank, rules: [r] };
    else if (cmp === 0) best?.rules.push(r);
  }
  if (!best) return { action: "deny" };
  const deny = best.rules.filter((r) => r.action === "deny").sort((a, b) => a.id - b.id)[0];
  const rule = deny ?? [...best.rules].sort((a, b) => a.id - b.id)[0];
  return { action: rule?.action ?? "deny", ...(rule ? { rule } : {}), dist: best.rank[0], level: best.rank[1] };
}

// ---- the compiler ---------------------------------------------------------------------------

export interface MsegKey {
  dst: number;
  src: number;
  proto: number;
  dport: number;
}
export interface MsegVal {
  dist: number;
  /** 0 none (only more specific keys of the pair), 1 allow, 2 deny. */
  action: 0 | 1 | 2;
  log: boolean;
  more: boolean;
  id: number;
}

export interface CompiledMicroseg {
  /** Group id → its line up the tree (ids). */
  lines: Map<number, number[]>;
  /** Every id below this one may have been given (and deleted since). */
  nextGroupId: number;
  /** key (dst:src:proto:dport) → value. */
  policy: Map<string, { key: MsegKey; val: MsegVal }>;
}

export const msegKeyText = (k: MsegKey) => `${k.dst}:${k.src}:${k.proto}:${k.dport}`;

/** The datapath's keys: for each group D and each entry whose destination is D or above it
 * (at distance j), the key (D, source, protocol, port) holds the nearest entry; equal distance,
 * different actions: the deny (the lowest id of them). A pair with protocol keys gets an
 * any-protocol key flagged `more` (with no action when no entry of its own). */
export function compileMicroseg(doc: MicrosegDoc): CompiledMicroseg {
  const groups = byName(doc);
  const idOf = (n: string) => (n === UNTAGGED ? MSEG.UNTAGGED : (groups.get(n) as MsegGroup).id);
  const lines = new Map<number, number[]>();
  for (const g of doc.groups) lines.set(g.id, lineOf(groups, g.name).map(idOf));
  const rulesTo = new Map<string, MsegRule[]>();
  for (const r of doc.rules) {
    const l = rulesTo.get(r.to);
    if (l) l.push(r);
    else rulesTo.set(r.to, [r]);
  }
  const policy = new Map<string, { key: MsegKey; val: MsegVal }>();
  const better = (r: MsegRule, j: number, cur: MsegVal) =>
    j < cur.dist ||
    (j === cur.dist &&
      cur.action !== 0 &&
      ((r.action === "deny" && cur.action === 1) || ((r.action === "deny") === (cur.action === 2) && r.id < cur.id)));
  for (const g of doc.groups) {
    const line = lineOf(groups, g.name);
    for (let j = 0; j < line.length; j++) {
      for (const r of rulesTo.get(line[j] as string) ?? []) {
        const key: MsegKey = {
          dst: g.id,
          src: idOf(r.from),
          proto: r.proto ? MSEG_PROTO_NUM[r.proto] : 0,
          dport: r.dport ?? 0,
        };
        const k = msegKeyText(key);
        const cur = policy.get(k);
        const val: MsegVal = {
          dist: j,
          action: r.action === "allow" ? 1 : 2,
          log: !!r.log,
          more: cur?.val.more ?? false,
          id: r.id,
        };
        if (!cur || cur.val.action === 0 || better(r, j, cur.val)) policy.set(k, { key, val });
        if (key.proto !== 0) {
          const anyKey = { ...key, proto: 0, dport: 0 };
          const ak = msegKeyText(anyKey);
          const a = policy.get(ak);
          if (a) a.val.more = true;
          else policy.set(ak, { key: anyKey, val: { dist: 0xff, action: 0, log: false, more: true, id: 0 } });
        }
      }
    }
  }
  if (policy.size > MSEG.POLICY_MAX)
    throw new StratumError(
      "CAPACITY",
      `the policy compiles to ${policy.size} keys, more than the datapath holds (${MSEG.POLICY_MAX}): entries high in a large tree apply to every group below them`,
    );
  return { lines, policy, nextGroupId: doc.nextGroupId };
}

// ---- the whole policy as a document (microseg export/import, the fabric document) ----

/** A group as a document names it: its parent only when its name does not imply it. */
export interface MsegGroupDoc {
  name: string;
  parent?: string;
  description?: string;
}

/** The whole policy as a document: groups (a parent before its children) and entries. */
export interface MsegPolicyDoc {
  groups: MsegGroupDoc[];
  rules: MsegRuleSpec[];
}

/** The policy as `microseg export` writes it: parents first, only what is set. */
export function exportMicroseg(doc: MicrosegDoc): {
  groups: MsegGroupDoc[];
  rules: Array<Record<string, unknown>> & MsegRuleSpec[];
} {
  const byDepth = [...doc.groups].sort((a, b) => lineOf(doc, a.name).length - lineOf(doc, b.name).length);
  return {
    groups: byDepth.map((g) => ({
      name: g.name,
      ...(g.parent !== undefined && g.parent !== g.name.slice(0, g.name.lastIndexOf("/")) ? { parent: g.parent } : {}),
      ...(g.description ? { description: g.description } : {}),
    })),
    rules: doc.rules.map((r) => ({
      from: r.from,
      to: r.to,
      action: r.action,
      ...(r.proto ? { proto: r.proto } : {}),
      ...(r.dport !== undefined ? { dport: r.dport } : {}),
      ...(r.log ? { log: true } : {}),
      ...(r.description ? { description: r.description } : {}),
    })),
  };
}

/** A document's groups with each parent before its children (their indexes kept, for errors).
 * A cycle is refused, naming its groups; a parent that is nowhere is left for addGroup to
 * refuse (NOT_FOUND, by index). */
export function msegParentsFirst<G extends MsegGroupDoc>(groups: G[]): Array<{ spec: G; i: number }> {
  const parentOf = (g: G) => g.parent ?? (g.name.includes("/") ? g.name.slice(0, g.name.lastIndexOf("/")) : undefined);
  const named = new Set(groups.map((g) => g.name));
  const out: Array<{ spec: G; i: number }> = [];
  const placed = new Set<string>();
  let left = groups.map((spec, i) => ({ spec, i }));
  while (left.length) {
    const ready = left.filter(({ spec }) => {
      const p = parentOf(spec);
      return p === undefined || placed.has(p) || (!named.has(p) && p !== spec.name);
    });
    if (!ready.length)
      throw new StratumError(
        "INVALID",
        `groups ${left.map(({ spec, i }) => `[${i}] "${spec.name}"`).join(", ")} form a cycle: every group has one parent, up to a root`,
      );
    for (const r of ready) {
      out.push(r);
      placed.add(r.spec.name);
    }
    left = left.filter((x) => !ready.includes(x));
  }
  return out;
}

/** A policy document built on nothing (no endpoint, no earlier ids): every group and entry
 * checked as an import checks them; `err` gets each problem with where it is. */
export function buildMicroseg(input: MsegPolicyDoc, err: (where: string, message: string) => void): MicrosegDoc {
  let doc = emptyMicroseg();
  let order: Array<{ spec: MsegGroupDoc; i: number }>;
  try {
    order = msegParentsFirst(input.groups);
  } catch (e) {
    err("groups", (e as Error).message);
    return doc;
  }
  for (const { spec, i } of order)
    try {
      doc = addGroup(doc, spec, "1970-01-01T00:00:00.000Z").doc;
    } catch (e) {
      err(`groups[${i}]`, (e as Error).message);
    }
  input.rules.forEach((spec, i) => {
    try {
      doc = addRules(doc, [spec]).doc;
    } catch (e) {
      err(`rules[${i}]`, (e as Error).message);
    }
  });
  return doc;
}
