/** The systemd unit (deploy/cenvero-stratum.service). systemd is not PID 1 on the machines
 * the suite runs on, so the unit cannot be started for real; instead:
 * - `systemd-analyze security --offline` parses it without a warning and rates it at most
 *   2.6 (it was 9.6 UNSAFE before hardening);
 * - the agent runs under what the unit imposes that can be reproduced here: exactly its
 *   CapabilityBoundingSet (setpriv), NoNewPrivileges, and its file system: everything
 *   read-only (ProtectSystem=strict, ProtectKernelTunables: /sys and /proc/sys too) except
 *   the state and runtime directories and the pin root's bpffs, home directories hidden
 *   (ProtectHome). In its own network namespace, with a private bpffs, it does the whole
 *   job: the uplink's XDP filter, a network with DHCP and DNS (ports 67 and 53), a container
 *   (setns into its namespace), a VM tap (/dev/net/tun), a firewall rule; a workload gets
 *   its address from DHCP, resolves a name and pings the gateway, and nothing was refused.
 * (SystemCallFilter, RestrictAddressFamilies and DevicePolicy cannot be applied without
 * systemd: docs/operations.md records how they were derived, from strace of such a run.) */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Netns, ROOT, run } from "../helpers/netns";
import { privateMountScript, UNMOUNT_BPFFS } from "../helpers/private-mount";

const UNIT = join(ROOT, "deploy/cenvero-stratum.service");
const unit = readFileSync(UNIT, "utf8");

/** Every value of a [Service] key, in order. */
function values(key: string): string[] {
  return [...unit.matchAll(new RegExp(`^${key}=(.*)$`, "gm"))].map((m) => (m[1] as string).trim());
}

const haveAnalyze = run(["systemd-analyze", "--version"]).code === 0;

test.skipIf(!haveAnalyze)(
  "systemd-analyze security rates the unit 2.6 or better, and parses it without a warning (needs systemd-analyze)",
  () => {
    const r = run(["systemd-analyze", "security", "--offline=true", "--no-pager", UNIT]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    const m = r.stdout.match(/Overall exposure level for cenvero-stratum\.service: (\d+\.\d+) (\w+)/);
    expect(m, r.stdout).not.toBeNull();
    expect(Number(m?.[1])).toBeLessThanOrEqual(2.6);
    expect(m?.[2]).toBe("OK");
  },
);

test("the unit is Type=notify, after the host's bpffs, with the agent's defaults", () => {
  expect(values("Type")).toEqual(["notify"]);
  expect(values("Requires")).toContain("sys-fs-bpf.mount");
  expect(values("After").join(" ")).toContain("sys-fs-bpf.mount");
  expect(values("ExecStart")).toEqual([
    "/usr/local/bin/cenvero-str-ctl agent --state-dir /var/lib/stratum --pin-root /sys/fs/bpf/stratum --api-socket /run/stratum/api.sock",
  ]);
  expect(values("ReadWritePaths")).toEqual(["/sys/fs/bpf"]);
  expect(values("StateDirectory")).toEqual(["stratum"]);
  expect(values("RuntimeDirectory")).toEqual(["stratum"]);
  expect(values("NoNewPrivileges")).toEqual(["yes"]);
  expect(values("ProtectSystem")).toEqual(["strict"]);
});

let node: Netns;
let c1: Netns;
let c2: Netns;
let out: Netns;
let dir: string;

beforeAll(() => {
  node = new Netns("svc");
  c1 = new Netns("svcc1");
  c2 = new Netns("svcc2");
  out = new Netns("svcout");
  node.execOk(["ip", "link", "add", "upl0", "type", "veth", "peer", "name", "ext0", "netns", out.name]);
  node.execOk(["ip", "link", "set", "upl0", "up"]);
  dir = mkdtempSync(join(tmpdir(), "stm-svc-"));
});

afterAll(() => {
  for (const ns of [c1, c2, out, node]) ns?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("the agent does its whole job with the unit's capabilities, NoNewPrivileges and read-only file system", async () => {
  const caps = (values("CapabilityBoundingSet")[0] ?? "").split(/\s+/).filter(Boolean);
  expect(caps.length).toBeGreaterThan(0);
  const bounding = ["-all", ...caps.map((c) => `+${c.replace(/^CAP_/, "").toLowerCase()}`)].join(",");
  const r = await privateMountScript(
    `
${UNMOUNT_BPFFS}
mount -t bpf bpffs /sys/fs/bpf          # the host's bpffs stands in for systemd's (a private one: it goes with this namespace)
mount -t tmpfs tmpfs "$DIR"             # what StateDirectory= and RuntimeDirectory= make writable
mkdir -p "$DIR/lib/stratum" "$DIR/run/stratum" && chmod 0700 "$DIR/lib/stratum"
S="$DIR/lib/stratum" RUN="$DIR/run/stratum" PINS=/sys/fs/bpf/stratum
# ProtectSystem=strict: every file system read-only but those; ProtectKernelTunables: /sys
# and /proc/sys too (bpffs is a mount of its own, and ReadWritePaths= keeps it writable).
for m in $(findmnt -rn -o TARGET | sort -r); do
  case $m in /proc|/proc/*|/dev|/dev/*|/sys/fs/bpf|"$DIR") continue ;; esac
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
# ProtectHome=yes
for h in /root /home /run/user; do [ -d "$h" ] && mount -t tmpfs -o ro,mode=000 tmpfs "$h"; done
touch /probe-write 2>/dev/null && echo "root writable" || echo "root read-only"
mkdir /sys/fs/bpf/probe && rmdir /sys/fs/bpf/probe && echo "bpffs writable"
nsenter --net="$NODE" setpriv --no-new-privs --inh-caps=-all --bounding-set="$BOUNDING" \\
  "$BIN" agent --state-dir "$S" --pin-root "$PINS" --api-socket "$RUN/api.sock" --uplink upl0 >"$DIR/agent.log" 2>&1 &
AGENT=$!
cleanup() {
  kill -TERM "$AGENT" 2>/dev/null && wait "$AGENT"
  echo "agent stopped: $?"
  echo "== log"; cat "$DIR/agent.log"
  nsenter --net="$NODE" "$BIN" uninstall --purge --state-dir "$S" --pin-root "$PINS" --api-socket "$RUN/api.sock" >/dev/null 2>&1
  echo "uninstall: $?"
}
trap cleanup EXIT
export STRATUM_API_SOCKET="$RUN/api.sock"
for _ in $(seq 200); do "$BIN" network list >/dev/null 2>&1 && break; sleep 0.1; done
echo "caps: $(grep ^CapEff /proc/$AGENT/status | cut -f2)"
echo "nnp: $(grep ^NoNewPrivs /proc/$AGENT/status | cut -f2)"
"$BIN" network create --name svc-net --cidr 10.87.0.0/24 --gateway 10.87.0.1 --cidr6 fd87::/64 --gateway6 fd87::1 >/dev/null; echo "create: $?"
"$BIN" network attach svc-net --name w1 --netns "$C1" --configure >/dev/null; echo "attach veth: $?"
"$BIN" network attach svc-net --name w2 --netns "$C2" >/dev/null; echo "attach unconfigured: $?"
"$BIN" network attach svc-net --name vm1 --tap svctap0 >/dev/null; echo "attach tap: $?"
"$BIN" firewall rule add svc-net --priority 10 --proto tcp --dport 22 --action allow >/dev/null; echo "rule: $?"
ip netns exec "$C2" ip link set eth0 up
ip netns exec "$C2" udhcpc -q -n -i eth0 -s /bin/true -t 5 -T 1 >/dev/null 2>&1; echo "dhcp: $?"
echo "dns: $(ip netns exec "$C1" dig @10.87.0.1 +short +time=2 +tries=2 w1.svc-net.internal)"
ip netns exec "$C1" ping -c 2 -i 0.2 -W 2 -q 10.87.0.1 >/dev/null; echo "ping: $?"
"$BIN" status -o json >"$DIR/status.json"
echo "health: $(tr -d ' \n' <"$DIR/status.json" | grep -o '"health":{"status":"[a-z]*"' | cut -d'"' -f6)"
echo "warnings: $(tr -d ' \n' <"$DIR/status.json" | grep -o '"warnings":[[^]]*]' | head -1)"
echo "uplink xdp: $(ip -n "$NODENAME" -d link show upl0 | grep -c 'prog/xdp')"
`,
    {
      timeoutMs: 120_000,
      env: {
        DIR: dir,
        NODE: node.path,
        NODENAME: node.name,
        C1: c1.name,
        C2: c2.name,
        BOUNDING: bounding,
      },
    },
  );
  const get = (key: string) => r.stdout.match(new RegExp(`^${key}: (.*)$`, "m"))?.[1];
  expect({ code: r.code, timedOut: r.timedOut }, `${r.stdout}\n${r.stderr}`).toEqual({ code: 0, timedOut: false });
  expect(r.stdout).toContain("root read-only");
  expect(r.stdout).toContain("bpffs writable");
  // Exactly the unit's bounding set, and no way to gain more.
  const bits: Record<string, number> = {
    CAP_NET_BIND_SERVICE: 10,
    CAP_NET_ADMIN: 12,
    CAP_NET_RAW: 13,
    CAP_SYS_ADMIN: 21,
    CAP_PERFMON: 38,
    CAP_BPF: 39,
  };
  const want = caps.reduce((m, c) => m | (1n << BigInt(bits[c] ?? -1)), 0n);
  expect(BigInt(`0x${get("caps")}`)).toBe(want);
  expect(get("nnp")).toBe("1");
  for (const step of ["create", "attach veth", "attach unconfigured", "attach tap", "rule", "dhcp", "ping"])
    expect({ step, code: get(step) }, r.stdout).toEqual({ step, code: "0" });
  expect(get("dns")).toBe("10.87.0.2");
  expect(get("health")).toBe("ok");
  expect(get("warnings")).toBe('"warnings":[]');
  expect(get("uplink xdp")).toBe("1");
  // Nothing it tried was refused.
  const log = r.stdout.split("== log\n")[1] ?? "";
  expect(log).toContain("ready in");
  expect(log).not.toMatch(/EPERM|EACCES|EROFS|not permitted|read-only/);
  expect(get("agent stopped")).toBe("0");
  expect(get("uninstall")).toBe("0");
}, 150_000);

// PR_SET_MDWE (kernel 6.3+) is the kernel's own MemoryDenyWriteExecute, the one systemd uses
// where it exists; elsewhere systemd's seccomp filter refuses the same W+X mappings.
const MDWE = `import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(77)
os.execv(sys.argv[1], [sys.argv[1], "version"])`;
const haveMdwe = run(["python3", "-c", MDWE, "/bin/true"]).code !== 77;

test.skipIf(!haveMdwe)(
  "MemoryDenyWriteExecute stays off: without W+X memory the binary cannot run at all (needs PR_SET_MDWE, kernel 6.3+)",
  () => {
    expect(values("MemoryDenyWriteExecute")).toEqual(["no"]);
    const r = run(["python3", "-c", MDWE, join(ROOT, "dist/cenvero-str-ctl")]);
    // When a Bun release runs here, turn MemoryDenyWriteExecute on in the unit.
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("bun:ffi requires the JIT");
  },
);
