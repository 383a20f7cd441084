/** Permission failures are one line that says what to do, with exit code 10 (PERMISSION):
 * not root (`nobody`, through setpriv), or root without the capabilities (a bounded set),
 * for the agent and the agent-less commands (datapath, uninstall, monitor); a kernel that
 * refuses bpf() to a process that looks privileged (root of a user namespace: EPERM) is a
 * permission too, not "unsupported". */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BINARY, run } from "../helpers/netns";

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "stm-perm-"));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The one-line error of a failed command: stderr has exactly this line. */
function oneLine(r: { stderr: string }): string {
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines).toHaveLength(1);
  return lines[0] as string;
}

const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

describe("not root", () => {
  test("the agent refuses with exit 10 and says to run it as root, creating nothing", () => {
    const state = join(dir, "nobody-state");
    const r = run([
      ...NOBODY,
      BINARY,
      "agent",
      "--state-dir",
      state,
      "--pin-root",
      "/sys/fs/bpf/stm-test-nobody",
      "--api-socket",
      join(dir, "nobody.sock"),
    ]);
    expect(r.code).toBe(10);
    const line = oneLine(r);
    expect(line).toStartWith("cenvero-str-ctl: the agent needs privileges user 65534 lacks (CAP_BPF, CAP_NET_ADMIN)");
    expect(line).toContain("run it as root (sudo), or with CAP_BPF and CAP_NET_ADMIN");
    expect(line).toContain("CAP_SYS_ADMIN");
    expect(line).not.toContain("kernel");
    expect(existsSync(state)).toBe(false);
    expect(existsSync("/sys/fs/bpf/stm-test-nobody")).toBe(false);
  });

  test("agent-less commands refuse the same way", () => {
    const cases: Array<[string[], string]> = [
      [["datapath", "counter", "read"], "the datapath command needs privileges user 65534 lacks"],
      [["datapath", "counter", "attach", "--dev", "lo"], "the datapath command needs privileges user 65534 lacks"],
      [["uninstall", "--dry-run"], "uninstall needs privileges user 65534 lacks"],
      [
        ["monitor", "--drops", "--duration", "1"],
        "reading the agent's pins and state needs privileges user 65534 lacks",
      ],
      [["datapath", "counter", "read", "-o", "json"], `"code":"PERMISSION"`],
    ];
    for (const [args, msg] of cases) {
      const r = run([...NOBODY, BINARY, ...args]);
      expect({ args, code: r.code }).toEqual({ args, code: 10 });
      expect(oneLine(r)).toContain(msg);
    }
  });

  test("root without CAP_BPF, CAP_SYS_ADMIN and CAP_NET_ADMIN (a bounded set) is refused too", () => {
    const r = run(["setpriv", "--bounding-set=-bpf,-sys_admin,-net_admin", BINARY, "datapath", "counter", "read"]);
    expect(r.code).toBe(10);
    expect(oneLine(r)).toContain(
      "the datapath command needs privileges this root process (its capabilities are bounded) lacks (CAP_BPF, CAP_NET_ADMIN)",
    );
  });

  // Root of a user namespace holds every capability there, and none where bpf() checks them.
  const userns = run(["unshare", "-U", "-r", "true"]).code === 0;
  test.skipIf(!userns)(
    "a kernel that refuses bpf() (EPERM) is a permission error, not unsupported (needs unprivileged user namespaces)",
    () => {
      const r = run(["unshare", "-U", "-r", BINARY, "datapath", "counter", "read"]);
      expect(r.code).toBe(10);
      const line = oneLine(r);
      expect(line).toContain("the kernel refuses bpf() to this process (EPERM");
      expect(line).toContain("run it as root");
    },
  );
});
