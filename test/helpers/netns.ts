/** Namespace end-to-end helpers. A network namespace is per thread and bun runs every
 * test file in one process, so namespaces are driven through subprocesses only:
 * `ip netns exec` for ordinary tools, `nsenter --net` for anything that pins BPF objects
 * (it keeps the host's mount namespace, so pins land on the host's bpffs). Every name is
 * unique per run; everything created is removed on destroy(), on process exit, pass or fail. */
import { existsSync, mkdirSync, rmSync, statfsSync } from "node:fs";
import { join } from "node:path";

export const ROOT = join(import.meta.dir, "../..");
export const BUN = process.execPath;
export const BINARY = join(ROOT, "dist/cenvero-str-ctl");

let counter = 0;
const live = new Set<{ destroy(): void }>();
process.on("exit", () => {
  for (const r of [...live]) r.destroy();
});

/** A short unique name: interface names are limited to 15 bytes. */
export function uniqueName(tag: string): string {
  counter++;
  return `${tag.slice(0, 5)}${(process.pid % 10000).toString(36)}${counter.toString(36)}`.slice(0, 15);
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(cmd: string[], opts: { env?: Record<string, string>; input?: string } = {}): RunResult {
  const p = Bun.spawnSync(cmd, {
    env: { ...process.env, ...opts.env },
    stdin: opts.input === undefined ? "ignore" : Buffer.from(opts.input),
  });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

/** Runs and throws with the command's stderr when it fails. */
export function runOk(cmd: string[], opts: { env?: Record<string, string> } = {}): string {
  const r = run(cmd, opts);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

export class Netns {
  readonly name: string;
  #alive = true;

  constructor(tag: string) {
    this.name = uniqueName(`${tag}`);
    runOk(["ip", "netns", "add", this.name]);
    live.add(this);
    runOk(["ip", "netns", "exec", this.name, "ip", "link", "set", "lo", "up"]);
  }

  get path(): string {
    return `/run/netns/${this.name}`;
  }

  /** Runs a tool inside the namespace (its own /sys; not for BPF pins). */
  exec(cmd: string[], opts: { env?: Record<string, string>; input?: string } = {}): RunResult {
    return run(["ip", "netns", "exec", this.name, ...cmd], opts);
  }
  execOk(cmd: string[]): string {
    return runOk(["ip", "netns", "exec", this.name, ...cmd]);
  }
  /** Parsed `ip -j …` output from inside the namespace. */
  ipJson<T = any>(args: string[]): T {
    return JSON.parse(this.execOk(["ip", "-j", ...args]) || "[]");
  }

  /** Runs inside the namespace with the host's mount namespace (host bpffs, host /run). */
  enter(cmd: string[], opts: { env?: Record<string, string> } = {}): RunResult {
    return run(["nsenter", `--net=${this.path}`, ...cmd], opts);
  }

  /** Runs a TypeScript scenario module (default export: (args) => result) inside the namespace; returns its result. */
  scenario<T = any>(file: string, args: unknown = {}): T {
    const r = this.enter([BUN, join(ROOT, "test/helpers/scenario-runner.ts"), file, JSON.stringify(args)]);
    const line = r.stdout.trim().split("\n").at(-1) ?? "";
    let parsed: { ok: boolean; result?: T; error?: string };
    try {
      parsed = JSON.parse(line);
    } catch {
      throw new Error(`scenario ${file} printed no result (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
    }
    if (!parsed.ok) throw new Error(`scenario ${file} failed: ${parsed.error}`);
    return parsed.result as T;
  }

  destroy(): void {
    if (!this.#alive) return;
    this.#alive = false;
    live.delete(this);
    run(["ip", "netns", "del", this.name]);
  }
}

const BPFFS = "/sys/fs/bpf";

/** A unique pin root on the host's bpffs (mounted if needed), removed on destroy(). */
export class PinRoot {
  readonly path: string;
  #alive = true;

  constructor(tag: string) {
    if (statfsSync(BPFFS).type !== 0xcafe4a11) runOk(["mount", "-t", "bpf", "bpffs", BPFFS]);
    this.path = join(BPFFS, `stm-test-${uniqueName(tag)}`);
    mkdirSync(this.path);
    live.add(this);
  }

  destroy(): void {
    if (!this.#alive) return;
    this.#alive = false;
    live.delete(this);
    if (existsSync(this.path)) rmSync(this.path, { recursive: true, force: true });
  }
}

/** Two namespaces joined by a veth pair with addresses 10.<n>.0.1/24 ↔ 10.<n>.0.2/24. */
export function vethPair(
  tag: string,
  subnet = 77,
): { a: Netns; b: Netns; devA: string; devB: string; ipA: string; ipB: string; destroy(): void } {
  const a = new Netns(`${tag}a`);
  const b = new Netns(`${tag}b`);
  const devA = "eth0";
  const devB = "eth0";
  const ipA = `10.${subnet}.0.1`;
  const ipB = `10.${subnet}.0.2`;
  // No IPv6 on the pair: router solicitations and MLD reports would add packets at random times.
  for (const ns of [a, b])
    for (const scope of ["all", "default"]) ns.execOk(["sysctl", "-qw", `net.ipv6.conf.${scope}.disable_ipv6=1`]);
  a.execOk(["ip", "link", "add", devA, "type", "veth", "peer", "name", "tmppeer", "netns", b.name]);
  b.execOk(["ip", "link", "set", "tmppeer", "name", devB]);
  a.execOk(["ip", "addr", "add", `${ipA}/24`, "dev", devA]);
  b.execOk(["ip", "addr", "add", `${ipB}/24`, "dev", devB]);
  a.execOk(["ip", "link", "set", devA, "up"]);
  b.execOk(["ip", "link", "set", devB, "up"]);
  return {
    a,
    b,
    devA,
    devB,
    ipA,
    ipB,
    destroy() {
      a.destroy();
      b.destroy();
    },
  };
}
