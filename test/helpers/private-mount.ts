/** Scripts run in a private mount namespace (`unshare -m --propagation private`): what they
 * mount or unmount there (bpffs, a read-only tmpfs) is invisible to the host and to every other
 * test, and goes with the namespace's last process. Each script runs in a session of its own,
 * so when it overruns its time, or the test ends, its whole process group is killed by id:
 * nothing it started (an agent) survives it. Cleanup of what the script made inside its
 * namespace (pins, bridges) is the script's own job, in a trap, in that same namespace. */
import { BINARY } from "./netns";

/** Unmounts every bpffs stacked on /sys/fs/bpf ("unmounted bpffs: N"), leaving sysfs's directory. */
export const UNMOUNT_BPFFS = `n=0
while [ "$(stat -f -c %T /sys/fs/bpf)" = bpf_fs ]; do umount /sys/fs/bpf || exit 97; n=$((n + 1)); done
echo "unmounted bpffs: $n"`;

export interface ScriptResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

const running = new Set<number>();
process.on("exit", () => {
  for (const pid of running) killGroup(pid);
});

function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {}
}

/** Runs `script` (bash, `set -u`) in a private mount namespace with BIN set to the binary;
 * `netns: true` also gives it a network namespace of its own (unshare -n). */
export async function privateMountScript(
  script: string,
  o: { timeoutMs: number; netns?: boolean; env?: Record<string, string> },
): Promise<ScriptResult> {
  const proc = Bun.spawn(
    [
      "setsid",
      "unshare",
      "-m",
      ...(o.netns ? ["-n"] : []),
      "--propagation",
      "private",
      "bash",
      "-c",
      `set -u\n${script}`,
    ],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, BIN: BINARY, ...o.env } },
  );
  running.add(proc.pid);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(proc.pid);
  }, o.timeoutMs);
  try {
    const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    const code = await proc.exited;
    return { code, stdout, stderr, timedOut };
  } finally {
    clearTimeout(timer);
    // Whatever the script left running in its session (it should have stopped it) goes now.
    killGroup(proc.pid);
    running.delete(proc.pid);
  }
}
