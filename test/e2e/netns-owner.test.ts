/** One agent per network namespace: the bridges, their gateway addresses and the ports are
 * the namespace's, whatever the pin root. With agent A running (two workloads pinging each
 * other through its bridge), a second agent on another pin root refuses, naming A (pid and
 * pin root), and so does `uninstall --pin-root OTHER`; A's links, addresses and traffic are
 * untouched. Once A is killed (SIGKILL: nothing of it runs its cleanup) the marker is gone
 * with it and uninstall works. Also here, because an agent runs: the API and the CLI refuse
 * a reserved subnet with one line (400, exit 2). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestAgent } from "../helpers/agent";
import { BINARY, Netns, PinRoot, run } from "../helpers/netns";

let A: TestAgent;
let c1: Netns;
let c2: Netns;
let other: PinRoot;
let dir: string;

const kernelState = (): { links: string[]; addrs: string[] } => ({
  links: A.ns
    .ipJson(["-d", "link", "show"])
    .map((l: any) => `${l.ifname}:${l.ifindex}:${l.master ?? ""}:${l.operstate}`)
    .sort(),
  addrs: A.ns
    .ipJson(["addr", "show"])
    .flatMap((l: any) => l.addr_info.map((a: any) => `${l.ifname} ${a.local}/${a.prefixlen}`))
    .sort(),
});
const ping = (ns: Netns, ip: string) => ns.exec(["ping", "-c", "2", "-i", "0.1", "-W", "1", ip]).code === 0;
const uninstallOther = (...extra: string[]) =>
  A.ns.enter([
    BINARY,
    "uninstall",
    "--pin-root",
    other.path,
    "--state-dir",
    join(dir, "other-state"),
    "--api-socket",
    join(dir, "other.sock"),
    ...extra,
  ]);

beforeAll(async () => {
  A = new TestAgent("own");
  c1 = new Netns("ownc1");
  c2 = new Netns("ownc2");
  other = new PinRoot("ownx");
  dir = mkdtempSync(join(tmpdir(), "stm-own-"));
  await A.start();
  A.json("network", "create", "--name", "own-net", "--cidr", "10.83.0.0/24", "--gateway", "10.83.0.1");
  A.json("network", "attach", "own-net", "--name", "w1", "--netns", c1.name, "--configure");
  A.json("network", "attach", "own-net", "--name", "w2", "--netns", c2.name, "--configure");
}, 60_000);

afterAll(() => {
  for (const ns of [c1, c2]) ns?.destroy();
  other?.destroy();
  A?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("a second agent on another pin root in the same network namespace refuses, naming the first", () => {
  expect(ping(c1, "10.83.0.3")).toBe(true);
  const before = kernelState();
  const r = run([
    "timeout",
    "30",
    "nsenter",
    `--net=${A.ns.path}`,
    BINARY,
    "agent",
    "--pin-root",
    other.path,
    "--state-dir",
    join(dir, "second-state"),
    "--api-socket",
    join(dir, "second.sock"),
  ]);
  expect(r.code).toBe(9); // CONFLICT; not 124: it refused rather than ran
  const errors = r.stderr.split("\n").filter((l) => l.startsWith("cenvero-str-ctl: "));
  expect(errors).toEqual([
    expect.stringContaining(
      `another agent runs in this network namespace (pid ${A.proc?.pid}, pin root ${A.pins.path}, state ${join(A.dir, "state")}`,
    ),
  ]);
  // It changed nothing: no state, no pins, A's links and addresses as they were.
  expect(run(["ls", "-A", other.path]).stdout).toBe("");
  expect(run(["ls", join(dir, "second-state")]).code).not.toBe(0);
  expect(kernelState()).toEqual(before);
  expect(ping(c1, "10.83.0.3")).toBe(true);
});

test("uninstall for another pin root refuses while the agent runs: its bridges, ports and addresses stay", () => {
  const before = kernelState();
  expect(before.links.some((l) => l.startsWith("cnv-user-br0:"))).toBe(true);
  expect(before.addrs).toContain("cnv-user-br0 10.83.0.1/24");
  for (const extra of [[], ["--dry-run"], ["--purge"]]) {
    const r = uninstallOther(...extra);
    expect({ extra, code: r.code }).toEqual({ extra, code: 9 });
    expect(r.stderr.trimEnd().split("\n")).toEqual([
      expect.stringContaining(
        `another agent runs in this network namespace (pid ${A.proc?.pid}, pin root ${A.pins.path},`,
      ),
    ]);
    expect(r.stderr).toContain("nothing was changed");
  }
  expect(kernelState()).toEqual(before);
  expect(ping(c1, "10.83.0.3")).toBe(true);
  expect(ping(c2, "10.83.0.2")).toBe(true);
  // Its own pin root: refused as before, by the agent's lock (exit 2).
  const own = A.local(["uninstall", "--dry-run"], { api: true });
  expect(own.code).toBe(2);
  expect(own.stderr).toContain(`an agent is running on pin root ${A.pins.path}`);
});

test("a reserved subnet is refused by the CLI (exit 2) and the API (400), one line", async () => {
  const cli = A.ctl("network", "create", "--name", "lo-net", "--cidr", "127.0.0.0/24", "--gateway", "127.0.0.1");
  expect(cli.code).toBe(2);
  expect(cli.stderr.trimEnd().split("\n")).toEqual([
    "cenvero-str-ctl: --cidr 127.0.0.0/24 overlaps 127.0.0.0/8 (loopback): a network's subnet must be ordinary unicast space, e.g. 10.20.0.0/24 or fd20::/64",
  ]);
  const res = await fetch("http://stratum/v1/networks", {
    unix: A.sock,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      name: "all6",
      cidr: "10.84.0.0/24",
      gateway: "10.84.0.1",
      cidr6: "::/0",
      gateway6: "::1",
    }),
  } as RequestInit);
  expect(res.status).toBe(400);
  const body = (await res.json()) as { code: string; message: string };
  expect(body.code).toBe("INVALID");
  expect(body.message).toStartWith("--cidr6 ::/0 overlaps ::/128 (the unspecified address)");
  expect(A.json("network", "list").map((n: any) => n.name)).toEqual(["own-net"]);
});

test("once the agent is gone (killed: no cleanup of its own) the marker is gone too and uninstall works", async () => {
  const pid = A.proc?.pid as number;
  await A.kill("SIGKILL");
  expect(run(["kill", "-0", String(pid)]).code).not.toBe(0);
  const r = uninstallOther();
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("removed bridge cnv-user-br0");
  expect(kernelState().links.some((l) => l.startsWith("cnv-user-br0:"))).toBe(false);
});
