/** Drop reasons, read from the same file the C enum is built from
 * (bpf/include/stm_drop_reasons.def): one source, numbers are ABI. */
import defs from "../../bpf/include/stm_drop_reasons.def" with { type: "text" };

export interface DropReasonInfo {
  /** Number in the datapath (ABI). */
  code: number;
  /** C enum name without the STM_DROP_ prefix. */
  id: string;
  /** Name shown to users and used as the JSON key. */
  name: string;
  description: string;
}

function parse(text: string): DropReasonInfo[] {
  const out: DropReasonInfo[] = [];
  for (const m of text.matchAll(/^STM_DROP_REASON\((\d+),\s*(\w+),\s*"([^"]+)",\s*"([^"]*)"\)\s*$/gm))
    out.push({ code: Number(m[1]), id: m[2] as string, name: m[3] as string, description: m[4] as string });
  out.forEach((r, i) => {
    if (r.code !== i) throw new Error(`stm_drop_reasons.def: reason ${r.name} has number ${r.code}, expected ${i}`);
  });
  return out;
}

export const DROP_REASON_LIST: readonly DropReasonInfo[] = parse(defs);

/** Reason number → name. */
export function dropReasonName(code: number): string {
  return DROP_REASON_LIST[code]?.name ?? `reason-${code}`;
}

/** Reason name → number. */
export function dropReasonCode(name: string): number {
  const r = DROP_REASON_LIST.find((x) => x.name === name);
  if (!r) throw new Error(`unknown drop reason ${name}`);
  return r.code;
}
