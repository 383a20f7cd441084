/** Permission failures are one line that says what to do, with exit code 10 (PERMISSION):
 * - not root (`nobody`, through setpriv), or root without the capabilities (a bounded set),
 *   for the agent and the agent-less commands (datapath, uninstall, monitor); a kernel that
 *   refuses bpf() to a process that looks privileged (root of a user namespace: EPERM) is a
 *   permission too, not "unsupported";
 * - a state directory, a state database or an API socket directory the agent cannot write:
 *   a read-only mount, an immutable file; a parent that is a file is bad input (exit 2).
 * The read-only cases run in a private mount and network namespace with bpffs unmounted, so
 * the assertion that the agent changed nothing before refusing is exact: no bpffs mounted,
 * no link made. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BINARY, run } from "../helpers/netns";
import { privateMountScript, UNMOUNT_BPFFS } from "../helpers/private-mount";

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

describe("paths the agent cannot write", () => {
  test("read-only mounts, an immutable store and a parent that is a file: one line each, nothing changed", async () => {
    const r = await privateMountScript(
      `
${UNMOUNT_BPFFS}
D="$DIR/ro-cases"
mkdir -p "$D/ro" "$D/rw/state" "$D/db/state" "$D/imm"
mount -t tmpfs -o ro tmpfs "$D/ro"
: >"$D/db/state/stratum.db"                                  # an (empty) SQLite database ...
mount --bind "$D/db/state/stratum.db" "$D/db/state/stratum.db"
mount -o remount,bind,ro "$D/db/state/stratum.db"            # ... read-only in its writable directory
mount -t tmpfs tmpfs "$D/imm" && mkdir "$D/imm/state" && : >"$D/imm/state/stratum.db"
chattr +i "$D/imm/state/stratum.db"
trap 'chattr -i "$D/imm/state/stratum.db" 2>/dev/null' EXIT
: >"$D/file"
agent() { # CASE STATE-DIR API-SOCKET
  "$BIN" agent --state-dir "$2" --pin-root /sys/fs/bpf/stm-perm --api-socket "$3" 2>"$D/$1.err" >/dev/null
  echo "$1: $?"
}
agent ro-dir "$D/ro" "$D/rw/api.sock"
agent ro-parent "$D/ro/sub/state" "$D/rw/api.sock"
agent ro-db "$D/db/state" "$D/rw/api.sock"
agent immutable-db "$D/imm/state" "$D/rw/api.sock"
agent ro-socket-dir "$D/rw/state" "$D/ro/run/api.sock"
agent file-parent "$D/file/state" "$D/rw/api.sock"
echo "bpffs after: $(stat -f -c %T /sys/fs/bpf)"
echo "links after: $(ip -br link | wc -l)"
echo "db after: $(stat -c %s "$D/db/state/stratum.db") $(ls "$D/db/state" | tr '\\n' ' ')"
for f in "$D"/*.err; do echo "== $(basename "$f" .err)"; grep -Ev '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z +INFO ' "$f"; done
`,
      { timeoutMs: 60_000, netns: true, env: { DIR: dir } },
    );
    expect({ code: r.code, timedOut: r.timedOut }, r.stderr).toEqual({ code: 0, timedOut: false });
    const code = (name: string) => r.stdout.match(new RegExp(`^${name}: (\\d+)$`, "m"))?.[1];
    const err = (name: string) => {
      const block = r.stdout.split(`== ${name}\n`)[1]?.split("\n== ")[0]?.trimEnd() ?? "";
      expect(block.split("\n"), `${name}:\n${block}`).toHaveLength(1);
      return block;
    };
    const D = join(dir, "ro-cases");
    expect(code("ro-dir")).toBe("10");
    expect(err("ro-dir")).toBe(
      `cenvero-str-ctl: state directory ${D}/ro is not writable: read-only filesystem (EROFS): remount it read-write, or give the agent another --state-dir`,
    );
    expect(code("ro-parent")).toBe("10");
    expect(err("ro-parent")).toStartWith(
      `cenvero-str-ctl: cannot create state directory ${D}/ro/sub/state: read-only filesystem (EROFS) at ${D}/ro/sub`,
    );
    expect(code("ro-db")).toBe("10");
    expect(err("ro-db")).toBe(
      `cenvero-str-ctl: state database ${D}/db/state/stratum.db is not writable: read-only filesystem (EROFS): remount it read-write, or give the agent another --state-dir`,
    );
    expect(code("immutable-db")).toBe("10");
    expect(err("immutable-db")).toStartWith(
      `cenvero-str-ctl: state database ${D}/imm/state/stratum.db is not writable: operation not permitted (EPERM): is it immutable? (lsattr; chattr -i)`,
    );
    expect(code("ro-socket-dir")).toBe("10");
    expect(err("ro-socket-dir")).toContain(
      `cannot create API socket directory ${D}/ro/run: read-only filesystem (EROFS)`,
    );
    expect(err("ro-socket-dir")).toContain("give the agent another --api-socket");
    expect(code("file-parent")).toBe("2");
    expect(err("file-parent")).toContain(
      `cannot create state directory ${D}/file/state: a parent is not a directory (ENOTDIR)`,
    );
    // Refused before anything was changed: no bpffs mounted, no bridge made, the store untouched.
    expect(r.stdout).toContain("bpffs after: sysfs\n");
    expect(r.stdout).toContain("links after: 1\n");
    expect(r.stdout).toContain("db after: 0 stratum.db \n");
  }, 90_000);
});
