/** A machine without bpffs on /sys/fs/bpf: in a private mount namespace every bpffs stacked
 * there is unmounted (one more is stacked first, so the loop is proven), then the agent starts
 * with a pin root under /sys/fs/bpf. It mounts bpffs itself before it creates the pin root,
 * pins its maps there, serves the API (a network is created through it) and its status lists
 * bpffs among the features. An agent-less command that makes a pin root (`datapath counter
 * attach`) does the same. The agent is stopped, and uninstall run, in that same mount
 * namespace; the host's bpffs never sees the pins. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Netns, uniqueName } from "../helpers/netns";
import { privateMountScript, UNMOUNT_BPFFS } from "../helpers/private-mount";

let ns: Netns;
let dir: string;
let pins: string;

beforeAll(() => {
  ns = new Netns("bpffs");
  dir = mkdtempSync(join(tmpdir(), "stm-bpffs-"));
  pins = `/sys/fs/bpf/stm-test-${uniqueName("bpffs")}`;
});

afterAll(() => {
  ns?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const lines = (out: string, key: string) =>
  out
    .split("\n")
    .filter((l) => l.startsWith(`${key}: `))
    .map((l) => l.slice(key.length + 2));

test("the agent mounts bpffs on a machine without it, pins there and serves the API", async () => {
  const r = await privateMountScript(
    `
mount -t bpf bpffs /sys/fs/bpf   # a second one stacked: every one of them goes
${UNMOUNT_BPFFS}
echo "before: $(stat -f -c %T /sys/fs/bpf)"
cd "$DIR"
nsenter --net="$NS" "$BIN" agent --state-dir "$DIR/state" --pin-root "$PINS" --api-socket "$DIR/api.sock" >"$DIR/agent.log" 2>&1 &
AGENT=$!
cleanup() {
  kill -TERM "$AGENT" 2>/dev/null && wait "$AGENT"
  nsenter --net="$NS" "$BIN" uninstall --purge --state-dir "$DIR/state" --pin-root "$PINS" --api-socket "$DIR/api.sock" >"$DIR/uninstall.log" 2>&1
  echo "uninstall: $?"
  echo "pins left: $(ls -A "$PINS" 2>/dev/null | wc -l)"
  umount /sys/fs/bpf 2>/dev/null
}
trap cleanup EXIT
for _ in $(seq 200); do "$BIN" network list --api-socket "$DIR/api.sock" >/dev/null 2>&1 && break; sleep 0.1; done
echo "mount: $(findmnt -n -o FSTYPE,SOURCE /sys/fs/bpf | tr -s ' ')"
echo "pin root fs: $(stat -f -c %T "$PINS")"
echo "maps: $(ls "$PINS/maps" | tr '\\n' ' ')"
"$BIN" network create --name bpf-net --cidr 10.81.0.0/24 --gateway 10.81.0.1 -o json --api-socket "$DIR/api.sock" >/dev/null
echo "create: $?"
"$BIN" status -o json --api-socket "$DIR/api.sock" >"$DIR/status.json"
echo "status: $?"
echo "profiles: $(bpftool -j map show pinned "$PINS/maps/stm_profiles" | grep -o '"name":"[a-z_]*"')"
`,
    { timeoutMs: 60_000, env: { DIR: dir, NS: ns.path, PINS: pins } },
  );
  const log = `${r.stdout}\n${r.stderr}\n${Bun.file(join(dir, "agent.log")).size ? await Bun.file(join(dir, "agent.log")).text() : ""}`;
  expect({ code: r.code, timedOut: r.timedOut }, log).toEqual({ code: 0, timedOut: false });
  expect(Number(lines(r.stdout, "unmounted bpffs")[0])).toBeGreaterThanOrEqual(2);
  expect(lines(r.stdout, "before")).toEqual(["sysfs"]);
  // The agent mounted it, said so, and pinned on it.
  expect(await Bun.file(join(dir, "agent.log")).text()).toContain("mounted bpffs on /sys/fs/bpf");
  expect(lines(r.stdout, "mount")).toEqual(["bpf bpffs"]);
  expect(lines(r.stdout, "pin root fs")).toEqual(["bpf_fs"]);
  expect(lines(r.stdout, "maps")[0]?.split(" ")).toEqual(
    expect.arrayContaining(["stm_profiles", "stm_ports", "stm_ct"]),
  );
  expect(lines(r.stdout, "profiles")).toEqual(['"name":"stm_profiles"']);
  // It serves the API, and its status sees bpffs now.
  expect(lines(r.stdout, "create")).toEqual(["0"]);
  const status = JSON.parse(await Bun.file(join(dir, "status.json")).text());
  expect(status.features.bpffs).toBe(true);
  // Stopped and uninstalled in the same mount namespace: nothing left there.
  expect(lines(r.stdout, "uninstall")).toEqual(["0"]);
  expect(lines(r.stdout, "pins left")).toEqual(["0"]);
  // The host's bpffs never held them.
  expect(existsSync(pins)).toBe(false);
  expect(ns.ipJson(["link", "show"]).map((l: any) => l.ifname)).toEqual(["lo"]);
}, 90_000);

test("datapath counter attach mounts bpffs too, before it makes its pin root", async () => {
  const r = await privateMountScript(
    `
${UNMOUNT_BPFFS}
ip -n "$NSNAME" link add stmd0 type veth peer name stmd1 && ip -n "$NSNAME" link set stmd0 up
cleanup() {
  nsenter --net="$NS" "$BIN" datapath counter detach --pin-root "$PINS" >/dev/null 2>&1
  echo "detach: $?"
  rm -rf "$PINS"
  ip -n "$NSNAME" link del stmd0
  umount /sys/fs/bpf 2>/dev/null
}
trap cleanup EXIT
nsenter --net="$NS" "$BIN" datapath counter attach --dev stmd0 --hook tc-ingress --pin-root "$PINS" -o json >/dev/null
echo "attach: $?"
echo "mount: $(findmnt -n -o FSTYPE /sys/fs/bpf)"
echo "pins: $(find "$PINS" -type f | sed "s|$PINS/||" | sort | tr '\\n' ' ')"
`,
    { timeoutMs: 60_000, env: { NS: ns.path, NSNAME: ns.name, PINS: pins } },
  );
  expect({ code: r.code, timedOut: r.timedOut }, `${r.stdout}\n${r.stderr}`).toEqual({ code: 0, timedOut: false });
  expect(lines(r.stdout, "attach")).toEqual(["0"]);
  expect(lines(r.stdout, "mount")).toEqual(["bpf"]);
  expect(lines(r.stdout, "pins")[0]?.trim().split(" ")).toEqual(
    expect.arrayContaining(["counter/stm_counters", expect.stringMatching(/^counter\/.*stmd0/)]),
  );
  expect(lines(r.stdout, "detach")).toEqual(["0"]);
  expect(existsSync(pins)).toBe(false);
}, 90_000);
