/** A real agent for end-to-end tests: the compiled binary in its own network namespace
 * (pins on the host's bpffs, state in a temporary directory), driven through the CLI and
 * the API. destroy() kills it by its PID, waits until it has died, and removes the namespace
 * (unless the caller gave it), the pins and the state; on process exit, pass or fail. */
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { BINARY, Netns, PinRoot, type RunResult, run } from "./netns";

export interface TestAgentOptions {
  /** Run in this namespace, which the caller owns and removes, instead of a new one. */
  ns?: Netns;
  /** Run in a UTS namespace of its own with this host name, as a machine of its own would
   * (a lab's nodes: the agent derives its bridges' MACs from the host name). */
  hostname?: string;
}

/** A process that has ended: gone, or a zombie waiting to be reaped (it holds nothing then). */
export function processEnded(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

/** Kills by PID and waits (synchronously: safe on exit) until the process has ended. */
export function killAndWait(pid: number, timeoutMs = 5000): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {}
  const end = Date.now() + timeoutMs;
  while (!processEnded(pid) && Date.now() < end) Bun.sleepSync(2);
}

const live = new Set<TestAgent>();
// Before netns.ts's own exit handler removes the namespaces and pin roots: a live agent goes first.
process.prependListener("exit", () => {
  for (const a of [...live]) a.destroy();
});

export class TestAgent {
  readonly ns: Netns;
  readonly pins: PinRoot;
  readonly dir: string;
  readonly sock: string;
  readonly hostname?: string;
  readonly token = "s3cret-token-for-the-tcp-listener";
  proc: Subprocess | undefined;
  #log = -1;
  #ownsNs: boolean;
  #alive = true;

  constructor(tag: string, o: TestAgentOptions = {}) {
    this.#ownsNs = !o.ns;
    this.ns = o.ns ?? new Netns(tag);
    this.hostname = o.hostname;
    this.pins = new PinRoot(tag);
    this.dir = mkdtempSync(join(tmpdir(), `stm-${tag}-`));
    this.sock = join(this.dir, "api.sock");
    // Only its owner may read a token file: the agent refuses one that others can read.
    writeFileSync(join(this.dir, "token"), `${this.token}\n`, { mode: 0o600 });
    live.add(this);
  }

  /** The agent's PID while it runs (nsenter, unshare and sh exec it: the PID is the agent's). */
  get pid(): number | undefined {
    const p = this.proc;
    return p && p.exitCode === null && p.signalCode === null ? p.pid : undefined;
  }

  get logText(): string {
    try {
      return readFileSync(join(this.dir, "agent.log"), "utf8");
    } catch {
      return "";
    }
  }

  /** Starts the agent (extra flags such as --uplink or --api-listen appended, `env` added to
   * its environment; `binary`: another build's) and waits for its API. */
  async start(extra: string[] = [], env: Record<string, string> = {}, binary = BINARY): Promise<void> {
    // One append-mode file for stdout and stderr: nobody reads the log during the run, and a full pipe would block it.
    if (this.#log < 0) this.#log = openSync(join(this.dir, "agent.log"), "a");
    // The host name is written from inside the new UTS namespace, then sh execs the agent.
    const uts = this.hostname
      ? ["unshare", "--uts", "sh", "-c", 'echo "$0" > /proc/sys/kernel/hostname && exec "$@"', this.hostname]
      : [];
    this.proc = Bun.spawn(
      [
        "nsenter",
        `--net=${this.ns.path}`,
        ...uts,
        binary,
        "agent",
        "--state-dir",
        join(this.dir, "state"),
        "--pin-root",
        this.pins.path,
        "--api-socket",
        this.sock,
        ...extra,
      ],
      { stdout: this.#log, stderr: this.#log, env: { ...process.env, ...env } },
    );
    for (let i = 0; i < 100; i++) {
      if (this.ctl("network", "list").code === 0) return;
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) break; // exited, or killed (a crash test)
      await Bun.sleep(50);
    }
    throw new Error(`agent did not come up:\n${this.logText}`);
  }

  async kill(signal: "SIGKILL" | "SIGTERM" = "SIGKILL"): Promise<void> {
    this.proc?.kill(signal);
    await this.proc?.exited;
    this.proc = undefined;
  }

  /** Flags that point an agent-less command (trace, monitor, uninstall) at this agent's pins and state. */
  get localFlags(): string[] {
    return ["--pin-root", this.pins.path, "--state-dir", join(this.dir, "state")];
  }

  /** Runs a CLI command inside the agent's namespace with localFlags, and the API socket with `api`. */
  local(args: string[], o: { api?: boolean } = {}): RunResult {
    return run([
      "nsenter",
      `--net=${this.ns.path}`,
      BINARY,
      ...args,
      ...this.localFlags,
      ...(o.api ? ["--api-socket", this.sock] : []),
    ]);
  }

  ctl(...args: string[]): RunResult {
    return run([BINARY, ...args, "--api-socket", this.sock]);
  }

  /** Runs a CLI command with `-o json` and parses its output; throws with stderr on failure. */
  json<T = any>(...args: string[]): T {
    const r = this.ctl(...args, "-o", "json");
    // status exits 1 when degraded, with its whole document on stdout.
    const ok = r.code === 0 || (args[0] === "status" && r.code === 1 && r.stdout.length > 0);
    if (!ok) throw new Error(`${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  }

  /** GET on the API's unix socket. */
  async api<T = any>(path: string): Promise<T> {
    const res = await fetch(`http://stratum${path}`, { unix: this.sock } as RequestInit);
    if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  /** Synchronous: safe in afterAll and on exit. The agent has ended before its pins go, so
   * it cannot pin anything again into a removed root. */
  destroy(): void {
    if (!this.#alive) return;
    this.#alive = false;
    live.delete(this);
    const pid = this.pid;
    if (pid) killAndWait(pid);
    if (this.#log >= 0) closeSync(this.#log);
    this.#log = -1;
    if (this.#ownsNs) this.ns.destroy();
    this.pins.destroy();
    if (existsSync(this.dir)) rmSync(this.dir, { recursive: true, force: true });
  }
}
