/** What an apply does: the fabric as it is against the document, as steps in dependency order
 * (creates, then changes, then deletes), each with the API call that makes it and the calls
 * that undo it. Only what the document gives is compared (a field it leaves out is left as it
 * is); nothing is deleted without `prune`, and with it a list the document leaves out (a
 * scope's rules, a network's records, the blocklist) is an empty one. A scope's rule set is one
 * object: a list given replaces it. Pure: the plan is data, apply.ts runs it. */
import type { OperationId } from "../api/contract";
import { formatRate, formatSize } from "../model/egress-cap";
import {
  type CanonNetwork,
  type CanonRecord,
  type Desired,
  FIXED_FIELDS,
  formatPath,
  type MsegPolicy,
  NETWORK_FIELDS,
  networkSettings,
  type Path,
  recordKey,
} from "./fabric";

/** The fabric as it is (state.ts reads it from the agent). */
export interface Current {
  networks: Array<CanonNetwork & { endpoints: string[]; recordIds: Map<string, number> }>;
  global: { default: "allow" | "deny"; rules: Array<Record<string, unknown>> };
  blocklist: string[];
  microseg: MsegPolicy;
}

export interface ApiCall {
  op: OperationId;
  args: { params?: Record<string, string>; query?: Record<string, string>; body?: unknown };
}

export type StepKind = "network" | "firewall" | "dns-record" | "blocklist" | "microseg";

export interface Step {
  action: "create" | "change" | "delete";
  kind: StepKind;
  /** What it is about: a network, a scope, "NETWORK: RECORD", the blocklist. */
  name: string;
  /** Each change in words ("mtu: 1500 → 9000"). */
  changes: string[];
  run: ApiCall;
  /** The calls that undo it, given what `run` answered (none: nothing to undo). */
  undo: (answer: unknown) => ApiCall[];
}

export interface PlanError {
  path: Path;
  message: string;
}

export interface Plan {
  steps: Step[];
  errors: PlanError[];
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

const show = (field: string, v: unknown): string => {
  if (v === null || v === undefined) return "none";
  if (field === "egress" && typeof v === "object") {
    const c = v as { rate: number; burst: number };
    return `${formatRate(c.rate)} (burst ${formatSize(c.burst)})`;
  }
  if (field === "nat" && typeof v === "object") {
    const a = (v as { addresses: string[] }).addresses;
    return a.length ? `masquerade as ${a.join(", ")}` : "masquerade";
  }
  if (Array.isArray(v)) return v.length ? v.join(", ") : "[]";
  return String(v);
};

/** The API's network body of a canonical network (create: every field). */
function createBody(n: CanonNetwork): Record<string, unknown> {
  return { ...networkSettings(n), defaultAction: n.firewall.default };
}

/** What a record is, for a plan: its owner, type and value; a CNAME's owner and type alone
 * (a name has one CNAME: another value is a change of it). */
const identity = (r: CanonRecord) => (r.type === "CNAME" ? `${r.name} CNAME` : recordKey(r));

const recordBody = (r: CanonRecord) => ({ name: r.name, type: r.type, value: r.value, ttl: r.ttl });

/** The id a record add answered with (for its undo). */
const idOf = (answer: unknown) => String((answer as { id: number }).id);

function addRecord(net: string, r: CanonRecord, action: "create" | "change" = "create", was?: CanonRecord): Step {
  return {
    action,
    kind: "dns-record",
    name: `${net}: ${recordKey(r)}`,
    changes: was
      ? [
          ...(was.value !== r.value ? [`value: ${was.value} → ${r.value}`] : []),
          ...(was.ttl !== r.ttl ? [`ttl: ${was.ttl} → ${r.ttl}`] : []),
        ]
      : [`ttl ${r.ttl}`],
    run: { op: "addDnsRecord", args: { params: { name: net }, body: recordBody(r) } },
    undo: (answer) => [{ op: "deleteDnsRecord", args: { params: { name: net, id: idOf(answer) } } }],
  };
}

function deleteRecord(net: string, r: CanonRecord, id: number): Step {
  return {
    action: "delete",
    kind: "dns-record",
    name: `${net}: ${recordKey(r)}`,
    changes: [],
    run: { op: "deleteDnsRecord", args: { params: { name: net, id: String(id) } } },
    undo: () => [{ op: "addDnsRecord", args: { params: { name: net }, body: recordBody(r) } }],
  };
}

/** A scope's rule set to `want` (rules and default; `rules` absent: only the default). */
function scopeSteps(
  scope: string,
  have: { default: "allow" | "deny"; rules: Array<Record<string, unknown>> },
  want: { default?: "allow" | "deny"; rules?: Array<Record<string, unknown>> },
  fresh: boolean,
): Step[] {
  const def = want.default ?? have.default;
  const rulesChange = want.rules !== undefined && !same(want.rules, have.rules);
  const defChange = def !== have.default;
  if (!rulesChange && !defChange) return [];
  const changes: string[] = [];
  if (defChange) changes.push(`default: ${have.default} → ${def}`);
  if (rulesChange) {
    const a = new Set(have.rules.map((r) => JSON.stringify(r)));
    const b = new Set((want.rules ?? []).map((r) => JSON.stringify(r)));
    const added = [...b].filter((r) => !a.has(r)).length;
    const removed = [...a].filter((r) => !b.has(r)).length;
    changes.push(`rules: ${have.rules.length} → ${want.rules?.length} (${added} added, ${removed} removed)`);
  }
  const undo = (): ApiCall[] => [
    { op: "importRules", args: { params: { scope }, body: { default: have.default, rules: have.rules } } },
  ];
  if (!rulesChange)
    return [
      {
        action: fresh ? "create" : "change",
        kind: "firewall",
        name: scope,
        changes,
        run: { op: "setDefault", args: { params: { scope }, body: { action: def } } },
        undo: () => [{ op: "setDefault", args: { params: { scope }, body: { action: have.default } } }],
      },
    ];
  return [
    {
      action: fresh ? "create" : "change",
      kind: "firewall",
      name: scope,
      changes,
      run: { op: "importRules", args: { params: { scope }, body: { default: def, rules: want.rules } } },
      undo,
    },
  ];
}

/** The steps from `cur` to `want`; `prune`: also delete what the document does not name. */
export function plan(cur: Current, want: Desired, o: { prune?: boolean } = {}): Plan {
  const creates: Step[] = [];
  const changes: Step[] = [];
  const deletes: Step[] = [];
  const errors: PlanError[] = [];
  const have = new Map(cur.networks.map((n) => [n.name, n]));
  const named = new Set(want.networks.map((w) => w.net.name));

  for (const { net: w, given, at } of want.networks) {
    const h = have.get(w.name);
    if (!h) {
      creates.push({
        action: "create",
        kind: "network",
        name: w.name,
        changes: [`${w.cidr} gateway ${w.gateway}${w.cidr6 ? `, ${w.cidr6}` : ""}`],
        run: { op: "createNetwork", args: { body: createBody(w) } },
        undo: () => [{ op: "deleteNetwork", args: { params: { name: w.name } } }],
      });
      if (w.firewall.rules.length)
        creates.push(...scopeSteps(w.name, { default: w.firewall.default, rules: [] }, w.firewall, true));
      for (const r of w.records) creates.push(addRecord(w.name, r));
      continue;
    }
    // Fixed once made: a change is refused, never a silent re-creation.
    const fixed = FIXED_FIELDS.filter((f) => given.has(f) || f === "cidr" || f === "gateway").filter(
      (f) => !same(h[f], w[f]),
    );
    for (const f of fixed)
      errors.push({
        path: [...at, f],
        message: `${formatPath([...at, f])}: network "${w.name}" has ${f} ${h[f] ?? "none"}, the document ${w[f] ?? "none"}: fixed once made (delete the network, or give it another name)`,
      });
    if (fixed.length) continue;
    const patch: Record<string, unknown> = {};
    const undo: Record<string, unknown> = {};
    const words: string[] = [];
    for (const f of NETWORK_FIELDS) {
      if (!given.has(f) || same(h[f], w[f])) continue;
      patch[f] = w[f];
      undo[f] = h[f];
      words.push(`${f}: ${show(f, h[f])} → ${show(f, w[f])}`);
    }
    if (words.length)
      changes.push({
        action: "change",
        kind: "network",
        name: w.name,
        changes: words,
        run: { op: "setNetwork", args: { params: { name: w.name }, body: patch } },
        undo: () => [{ op: "setNetwork", args: { params: { name: w.name }, body: undo } }],
      });
    changes.push(
      ...scopeSteps(
        w.name,
        h.firewall,
        {
          ...(given.has("firewall.default") ? { default: w.firewall.default } : {}),
          ...(given.has("firewall.rules") || o.prune ? { rules: w.firewall.rules } : {}),
        },
        false,
      ),
    );
    if (given.has("dns") || o.prune) {
      const hr = new Map(h.records.map((r) => [identity(r), r]));
      const wr = new Map(w.records.map((r) => [identity(r), r]));
      const idOf = (r: CanonRecord) => h.recordIds.get(recordKey(r)) as number;
      for (const [k, r] of wr) {
        const old = hr.get(k);
        if (!old) changes.push(addRecord(w.name, r));
        else if (old.ttl !== r.ttl || old.value !== r.value) {
          changes.push(deleteRecord(w.name, old, idOf(old)));
          changes.push(addRecord(w.name, r, "change", old));
        }
      }
      if (o.prune) for (const [k, r] of hr) if (!wr.has(k)) deletes.push(deleteRecord(w.name, r, idOf(r)));
    }
  }

  // The policy is one object: given, it replaces the policy (left out: left, even with prune,
  // as its groups may hold endpoints the document cannot name).
  if (want.microseg && !same(want.microseg, cur.microseg)) {
    const was = cur.microseg;
    const w = want.microseg;
    changes.push({
      action: cur.microseg.groups.length || cur.microseg.rules.length ? "change" : "create",
      kind: "microseg",
      name: "policy",
      changes: [
        `groups: ${was.groups.length} → ${w.groups.length}`,
        `entries: ${was.rules.length} → ${w.rules.length}`,
      ],
      run: { op: "importMicroseg", args: { body: w } },
      undo: () => [{ op: "importMicroseg", args: { body: was } }],
    });
  }

  // With prune, a list the document leaves out is an empty one.
  const global = o.prune ? { rules: [], ...want.global } : want.global;
  if (global) changes.push(...scopeSteps("global", cur.global, global, false));

  const blocklist = want.blocklist ?? (o.prune ? [] : null);
  if (blocklist) {
    const h = new Set(cur.blocklist);
    const w = new Set(blocklist);
    const add = [...w].filter((p) => !h.has(p));
    if (add.length)
      changes.push({
        action: "create",
        kind: "blocklist",
        name: "blocklist",
        changes: [`${add.length} prefix${add.length === 1 ? "" : "es"} added: ${sample(add)}`],
        run: { op: "addBlocklist", args: { body: { prefixes: add } } },
        undo: () => add.map((p) => ({ op: "deleteBlocklistPrefix", args: { query: { prefix: p } } }) as ApiCall),
      });
    if (o.prune)
      for (const p of [...h].filter((x) => !w.has(x)))
        deletes.push({
          action: "delete",
          kind: "blocklist",
          name: p,
          changes: [],
          run: { op: "deleteBlocklistPrefix", args: { query: { prefix: p } } },
          undo: () => [{ op: "addBlocklist", args: { body: { prefixes: [p] } } }],
        });
  }

  if (o.prune)
    for (const h of cur.networks) {
      if (named.has(h.name)) continue;
      if (h.endpoints.length) {
        errors.push({
          path: ["networks"],
          message: `--prune would delete network "${h.name}", which has ${h.endpoints.length} endpoint${h.endpoints.length === 1 ? "" : "s"} (${sample(h.endpoints)}): detach them first, or name the network in the document`,
        });
        continue;
      }
      deletes.push({
        action: "delete",
        kind: "network",
        name: h.name,
        changes: [`${h.cidr}${h.records.length ? `, its ${h.records.length} DNS records` : ""}`],
        run: { op: "deleteNetwork", args: { params: { name: h.name } } },
        // Made again as it was: its settings, its rule set, its records.
        undo: () => [
          { op: "createNetwork", args: { body: createBody(h) } },
          ...(h.firewall.rules.length
            ? [
                {
                  op: "importRules",
                  args: { params: { scope: h.name }, body: { default: h.firewall.default, rules: h.firewall.rules } },
                } as ApiCall,
              ]
            : []),
          ...h.records.map(
            (r) => ({ op: "addDnsRecord", args: { params: { name: h.name }, body: recordBody(r) } }) as ApiCall,
          ),
        ],
      });
    }

  return { steps: [...creates, ...changes, ...deletes], errors };
}

function sample(xs: string[], n = 3): string {
  return xs.length <= n ? xs.join(", ") : `${xs.slice(0, n).join(", ")} … (${xs.length - n} more)`;
}

/** A step as JSON and for people (no functions). */
export function stepView(s: Step): { action: string; kind: StepKind; name: string; changes: string[] } {
  return { action: s.action, kind: s.kind, name: s.name, changes: s.changes };
}
