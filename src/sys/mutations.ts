/** Every call that changes kernel state (a map write or delete, a pin or unpin, an attach,
 * detach or program swap, an rtnetlink request that is not a read, a tap's ioctl) reports
 * itself here, after it succeeded. That gives three things:
 *  - a reconcile counts the changes it made: a kernel already right shows none;
 *  - `STRATUM_MUTATION_LOG=FILE` appends one line per change ("N<TAB>what"), so a test can
 *    name every point where the agent could die;
 *  - `STRATUM_CRASH_AFTER=N` kills the process with SIGKILL right after its Nth change: the
 *    crash-injection switch. Nothing runs after it (no finally, no exit handler), exactly as
 *    when the power goes. `STRATUM_CRASH_AT=TEXT` does the same after the first change whose
 *    description contains TEXT ("attach cls_bpf filter": mid-way through an upgrade). */
import { appendFileSync, writeSync } from "node:fs";

let count = 0;
const recorders = new Set<string[]>();

function envNumber(name: string): number {
  const v = process.env[name];
  if (!v) return 0;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}=${v} is not a positive integer`);
  return n;
}

const crashAfter = envNumber("STRATUM_CRASH_AFTER");
const crashAt = process.env.STRATUM_CRASH_AT || undefined;
const logFile = process.env.STRATUM_MUTATION_LOG || undefined;

/** Reports one kernel change that has just succeeded. */
export function mutated(what: string): void {
  count++;
  for (const r of recorders) r.push(what);
  if (logFile) appendFileSync(logFile, `${count}\t${what}\n`);
  if ((crashAfter && count >= crashAfter) || (crashAt && what.includes(crashAt))) {
    writeSync(2, `crash injected after kernel change ${count}: ${what}\n`);
    process.kill(process.pid, "SIGKILL");
  }
}

/** Kernel changes this process has made so far. */
export function mutationCount(): number {
  return count;
}

/** Runs `fn` and returns what it changed in the kernel, in order (its result as well). */
export function recordMutations<T>(fn: () => T): { result: T; changes: string[] } {
  const changes: string[] = [];
  recorders.add(changes);
  try {
    return { result: fn(), changes };
  } finally {
    recorders.delete(changes);
  }
}
