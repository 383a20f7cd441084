/** Reading the fabric (the current state, and `export`'s document) and running a plan, both
 * through the API's operations (`Call`: the CLI's client, or the agent's own routes): step by
 * step, and on the first failure every step done is undone, last first. What cannot be undone
 * is said exactly. */
import type { BlocklistView, DnsRecordView, NetworkView, OperationId, RuleSetDocument } from "../api/contract";
import { StratumError } from "../errors";
import {
  canonNetwork,
  FABRIC_VERSION,
  type FabricDoc,
  type MsegPolicy,
  type NetworkDoc,
  networkSettings,
  recordKey,
} from "./fabric";
import { type ApiCall, type Current, type Plan, type Step, stepView } from "./plan";

/** One operation of the API with its path parameters, query and body; answers its result. */
export type Call = (op: OperationId, args: ApiCall["args"]) => Promise<unknown>;

/** The fabric as the agent has it, canonical (as plan.ts compares). */
export async function readCurrent(call: Call): Promise<Current> {
  const [nets, records, global, microseg] = (await Promise.all([
    call("listNetworks", {}),
    call("listDnsRecords", {}),
    call("exportRules", { params: { scope: "global" } }),
    call("exportMicroseg", {}),
  ])) as [NetworkView[], DnsRecordView[], RuleSetDocument, MsegPolicy];
  const scopes = (await Promise.all(
    nets.map((n) => call("exportRules", { params: { scope: n.name } })),
  )) as RuleSetDocument[];
  const blocklist: string[] = [];
  let after: string | null = null;
  do {
    const page = (await call("listBlocklist", {
      query: { limit: "100000", ...(after === null ? {} : { after }) },
    })) as BlocklistView;
    for (const p of page.prefixes) blocklist.push(p.prefix);
    after = page.next;
  } while (after !== null);
  return {
    networks: nets.map((n: NetworkView, i) => {
      const mine = records.filter((r) => r.network === n.name);
      const scope = scopes[i] as { default: "allow" | "deny"; rules: Array<Record<string, unknown>> };
      return {
        ...canonNetwork(
          n,
          { default: scope.default, rules: scope.rules },
          mine.map((r) => ({ name: r.name, type: r.type, value: r.value, ttl: r.ttl })),
        ),
        recordIds: new Map(mine.map((r) => [recordKey(r), r.id])),
        endpoints: n.endpoints,
      };
    }),
    global: global as Current["global"],
    blocklist,
    microseg,
  };
}

/** The current fabric as a document that applies back to it (every field, explicit). */
export function exportDoc(cur: Current): FabricDoc {
  const networks: NetworkDoc[] = cur.networks.map((n) => ({
    ...networkSettings(n),
    firewall: { default: n.firewall.default, rules: n.firewall.rules as never },
    dns: { records: n.records.map((r) => ({ name: r.name, type: r.type, value: r.value, ttl: r.ttl })) },
  }));
  return {
    version: FABRIC_VERSION,
    networks,
    firewall: { global: { default: cur.global.default, rules: cur.global.rules as never } },
    blocklist: cur.blocklist,
    microseg: cur.microseg as FabricDoc["microseg"],
  };
}

export interface ApplyReport {
  /** Steps done (all of them, on success). */
  applied: ReturnType<typeof stepView>[];
  /** On failure: the step that failed, why, and how the undo went. */
  failed?: { step: ReturnType<typeof stepView>; message: string };
  undone?: ReturnType<typeof stepView>[];
  /** Undo calls that failed themselves: what is left applied. */
  notUndone?: Array<{ step: ReturnType<typeof stepView>; message: string }>;
}

/** Runs the plan; on a failure undoes what was done (last first) and throws with the report. */
export async function runPlan(
  call: Call,
  p: Plan,
  progress: (done: number, total: number, s: Step) => void = () => {},
): Promise<ApplyReport> {
  const done: Array<{ step: Step; answer: unknown }> = [];
  for (const [i, s] of p.steps.entries()) {
    progress(i, p.steps.length, s);
    try {
      done.push({ step: s, answer: await call(s.run.op, s.run.args) });
    } catch (e) {
      const report: ApplyReport = {
        applied: [],
        failed: { step: stepView(s), message: (e as Error).message },
        undone: [],
        notUndone: [],
      };
      for (const d of done.reverse()) {
        try {
          for (const u of d.step.undo(d.answer)) await call(u.op, u.args);
          report.undone?.push(stepView(d.step));
        } catch (ue) {
          report.notUndone?.push({ step: stepView(d.step), message: (ue as Error).message });
        }
      }
      throw new ApplyError(report, e);
    }
  }
  progress(p.steps.length, p.steps.length, p.steps.at(-1) as Step);
  return { applied: done.map((d) => stepView(d.step)) };
}

export class ApplyError extends StratumError {
  constructor(
    readonly report: ApplyReport,
    cause: unknown,
  ) {
    const f = report.failed as NonNullable<ApplyReport["failed"]>;
    const left = report.notUndone ?? [];
    const what = `${f.step.action} ${f.step.kind} ${f.step.name}`;
    const tail = left.length
      ? `; ${report.undone?.length ?? 0} step(s) undone, ${left.length} could not be: ${left.map((l) => `${l.step.action} ${l.step.kind} ${l.step.name} (${l.message})`).join("; ")} is still applied`
      : `; everything this apply did is undone (${report.undone?.length ?? 0} step${report.undone?.length === 1 ? "" : "s"})`;
    super(cause instanceof StratumError ? cause.code : "INTERNAL", `apply failed at "${what}": ${f.message}${tail}`);
  }
}
