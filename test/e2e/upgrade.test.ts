/** Hitless restarts, program swaps and upgrades, under traffic. Two workloads of a
 * default-deny network exchange a sequenced UDP stream (allowed), 20 long-lived TCP
 * connections (allowed one way, their replies carried by conntrack), and three streams that
 * must never be delivered (a denied port, a spoofed source, another network). Meanwhile:
 *   - the agent is restarted 20 times, by SIGTERM and by SIGKILL;
 *   - the port programs are swapped 100 times in place;
 *   - the agent is upgraded to another build whose maps differ (conntrack and profile tables
 *     of other sizes): its maps are staged, filled (conntrack copied), every program swapped
 *     on its existing filter or link, then its pins take over;
 *   - a build whose load fails leaves everything as it was;
 *   - an upgrade cut short by a crash (after the first program swap, or while its pins move)
 *     is rolled forward at the next start, its staged maps taken over as they are;
 *   - one cut short and followed by the previous build is rolled back: the staged maps
 *     are discarded and every port returns to the pinned ones;
 *   - and the node goes back to the first build the same way.
 * At the end: not one allowed UDP datagram lost, no TCP connection broken, nothing denied
 * delivered. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { ApiClient } from "../../src/api/api-client";
import { BpfMap, Fd, objGet, progFdById, progInfo, progMapIds } from "../../src/sys/bpf";
import { TestAgent } from "../helpers/agent";
import { readCounts, type TagCount } from "../helpers/counts";
import { BUN, Netns, ROOT, run } from "../helpers/netns";
import { buildVariant, type Variant } from "../helpers/variant";

const PROBE = join(ROOT, "test/helpers/probe.ts");
const CONNECTIONS = 20;
let A: TestAgent;
let api: ApiClient;
let a1: Netns;
let a2: Netns;
let b1: Netns;
let out: Netns; // the uplink's far side
let next: Variant; // another build: other table sizes
let broken: Variant; // a build whose load fails
const procs: Subprocess[] = [];
let tcp: Subprocess[] = [];
const ips: Record<string, string> = {};
let countFile = "";

/** What the receivers in a2 and b1 counted, by tag (another network's traffic counts in b1). */
function counts(): Record<string, TagCount> {
  return { ...readCounts(countFile), xnet: readCounts(`${countFile}.b1`).xnet as TagCount };
}

const spawnIn = (n: Netns, args: string[], stdout: "ignore" | "pipe" = "ignore") => {
  const p = Bun.spawn(["ip", "netns", "exec", n.name, BUN, PROBE, ...args], { stdout, stderr: "ignore" });
  procs.push(p);
  return p;
};

/** Program ids and the map ids they use, of both filters of every port. */
function portPrograms(): Record<string, { id: number; maps: number[] }> {
  const out: Record<string, { id: number; maps: number[] }> = {};
  for (const l of A.ns.ipJson(["link", "show"]) as any[]) {
    if (!String(l.ifname).startsWith("stm")) continue;
    for (const dir of ["ingress", "egress"]) {
      const m = A.ns.execOk(["tc", "filter", "show", "dev", l.ifname, dir]).match(/ id (\d+) /);
      const id = Number(m?.[1] ?? 0);
      using fd = new Fd(progFdById(id));
      out[`${l.ifname}/${dir}`] = { id, maps: progMapIds(fd.fd) };
    }
  }
  return out;
}

/** Id of each pinned map, by name. */
function pinnedMapIds(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of readdirSync(join(A.pins.path, "maps"))) {
    const m = BpfMap.openPinned(join(A.pins.path, "maps", f));
    out[f] = m.info.id;
    m.close();
  }
  return out;
}

/** Every port runs programs bound to the pinned conntrack table (the one the upgrades
 * replace that the port programs use), none to a staged or discarded one. */
function expectPortsOnPinnedMaps(): void {
  const pinned = pinnedMapIds();
  for (const [port, p] of Object.entries(portPrograms()))
    expect({ port, ct: p.maps.includes(pinned.stm_ct as number) }).toEqual({ port, ct: true });
  expect(readdirSync(A.pins.path)).not.toContain("maps-next");
}

/** Every start has the uplink: its XDP and tcx links are upgraded in place too. */
const UPLINK = ["--uplink", "upl0"];
const startWith = (binary: string) => A.start(UPLINK, {}, binary);

/** Starts the agent (the first build, or `binary`) so that it dies (SIGKILL) right after the
 * first kernel change whose description holds `at`, and waits until it has. */
async function startToCrash(at: string, binary?: string): Promise<void> {
  await A.kill("SIGTERM");
  await A.start(UPLINK, { STRATUM_CRASH_AT: at }, binary).catch(() => {});
  await A.proc?.exited;
  A.proc = undefined;
}

/** max_entries of the pinned conntrack table: which build's it is. */
function pinnedCtSize(): number {
  const m = BpfMap.openPinned(join(A.pins.path, "maps/stm_ct"));
  const n = m.info.maxEntries;
  m.close();
  return n;
}

/** The agent's log once it holds `text` (its stdout reaches the file in blocks): fails after 10 s. */
async function logWith(text: string): Promise<string> {
  for (let i = 0; i < 200 && !A.logText.includes(text); i++) await Bun.sleep(50);
  expect(A.logText).toContain(text);
  return A.logText;
}

beforeAll(async () => {
  next = buildVariant("next", ["STM_CT_MAX=300000", "STM_PROFILES_MAX=1000000"]);
  broken = buildVariant("broken", ["STM_CT_MAX=0"]);
  A = new TestAgent("upg");
  api = new ApiClient(A.sock);
  a1 = new Netns("upga1");
  a2 = new Netns("upga2");
  b1 = new Netns("upgb1");
  out = new Netns("upgout");
  A.ns.execOk(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  A.ns.execOk(["ip", "link", "add", "upl0", "type", "veth", "peer", "name", "ext0", "netns", out.name]);
  A.ns.execOk(["ip", "link", "set", "upl0", "up"]);
  await A.start(UPLINK);
  await api.createNetwork({ name: "t1", cidr: "10.73.1.0/24", gateway: "10.73.1.1" });
  await api.createNetwork({ name: "t2", cidr: "10.73.2.0/24", gateway: "10.73.2.1" });
  for (const [e, ns, net] of [
    ["a1", a1, "t1"],
    ["a2", a2, "t1"],
    ["b1", b1, "t2"],
  ] as const)
    ips[e] = (await api.attach(net, { name: e, netns: ns.name, configure: true })).ip;
  await api.addRule("t1", { priority: 10, proto: "udp", dport: 7000, action: "allow" });
  await api.addRule("t1", { priority: 20, proto: "tcp", dport: 5001, action: "allow" });
  await api.setDefault("t1", "deny");
  await api.setDefault("t2", "deny");
  a1.execOk(["ip", "addr", "add", "10.73.1.250/32", "dev", "eth0"]);
  countFile = join(A.dir, "counts.json");
  spawnIn(a2, ["count", "7000,7001", countFile]);
  spawnIn(b1, ["count", "7000", `${countFile}.b1`]);
  spawnIn(a2, ["serve", "5001"]);
  await Bun.sleep(300);
  spawnIn(a1, ["send", `ok@${ips.a2}:7000,deny@${ips.a2}:7001,xnet@${ips.b1}:7000`, "2"]);
  spawnIn(a1, ["send", `spoof@${ips.a2}:7000`, "5", "--from", "10.73.1.250"]);
  // Long-lived connections: each sends a line every 20 ms and counts the echoes until the end.
  tcp = Array.from({ length: CONNECTIONS }, () => spawnIn(a1, ["stream", ips.a2 as string, "5001", "60000"], "pipe"));
  // The probes are Bun processes: on a fresh clone (no transpile cache, 2 busy cores) they can
  // take seconds to start; the stream must flow before the test begins.
  for (let i = 0; i < 300 && !counts().ok; i++) await Bun.sleep(50);
}, 60_000);

afterAll(() => {
  for (const p of procs) p.kill("SIGKILL");
  A?.destroy();
  for (const n of [a1, a2, b1, out]) n?.destroy();
  next?.remove();
  broken?.remove();
});

/** Restarts: 10 in the suite (its time budget), 20 with STRATUM_LONG=1. */
const RESTARTS = process.env.STRATUM_LONG === "1" ? 20 : 10;

test(`${RESTARTS} restarts, by SIGTERM and by SIGKILL: nothing changes in the kernel`, async () => {
  expect(counts().ok?.n ?? 0).toBeGreaterThan(0);
  const programs = portPrograms();
  for (let i = 0; i < RESTARTS; i++) {
    await A.kill(i % 2 ? "SIGKILL" : "SIGTERM");
    await A.start(UPLINK);
  }
  expect((await api.reconcile()).changes).toEqual([]);
  expect(portPrograms()).toEqual(programs); // the same programs on every filter: none swapped
}, 120_000);

/** What the agent's latest start said of its programs: taken from their pins, or loaded. */
function lastDatapathLine(): string {
  return A.logText.match(/datapath: [^\n]*/g)?.at(-1) ?? "";
}

test("a restart of the same build takes its programs from their pins; a pin gone, it loads them and pins them again", async () => {
  const progs = join(A.pins.path, "progs");
  const builds = readdirSync(progs);
  expect(builds).toHaveLength(1);
  const dir = join(progs, builds[0] as string);
  const pinned = readdirSync(dir).sort();
  expect(pinned).toContain("stm_port_in");
  expect(pinned).toContain("stm_uplink_in");
  const programs = portPrograms();
  await A.kill("SIGTERM");
  await A.start(UPLINK);
  await logWith("datapath: ");
  expect(lastDatapathLine()).toContain("taken from their pins");
  // The ports run the very programs pinned: their ids.
  const ids = new Set(
    pinned.map((p) => {
      using fd = new Fd(objGet(join(dir, p), "program"));
      return progInfo(fd.fd).id;
    }),
  );
  for (const p of Object.values(portPrograms())) expect(ids.has(p.id)).toBe(true);
  // A program's pin removed by hand: the set is not whole, so the next start loads and verifies.
  await A.kill("SIGTERM");
  rmSync(join(dir, "stm_port_out"));
  const before = A.logText.length;
  await A.start(UPLINK);
  for (let i = 0; i < 200 && !A.logText.slice(before).includes("datapath: "); i++) await Bun.sleep(50);
  expect(lastDatapathLine()).toContain("programs loaded and verified");
  expect(readdirSync(dir).sort()).toEqual(pinned); // whole again
  expect((await api.reconcile()).changes).toEqual([]);
  // The new load's programs are the same build on the same maps: no port was swapped for them.
  expect(portPrograms()).toEqual(programs);
  expect(counts().ok?.n ?? 0).toBeGreaterThan(0);
}, 60_000);

test("100 in-place swaps of every port's programs", () => {
  const ports = Object.keys(portPrograms())
    .filter((k) => k.endsWith("/ingress"))
    .map((k) => k.split("/")[0])
    .join(",");
  const before = portPrograms();
  const out = A.ns.enter([BUN, join(ROOT, "test/helpers/swap.ts"), A.pins.path, "100", ports, "2"]);
  expect(out.code).toBe(0);
  expect(JSON.parse(out.stdout).swaps).toBe(100 * 2 * ports.split(",").length);
  const after = portPrograms();
  const pinned = new Set(Object.values(pinnedMapIds()));
  const shared = (p?: { maps: number[] }) => p?.maps.filter((m) => pinned.has(m));
  for (const k of Object.keys(before)) {
    expect(after[k]?.id).not.toBe(before[k]?.id); // another program…
    expect(shared(after[k])).toEqual(shared(before[k]) as number[]); // …with the same pinned maps
  }
}, 120_000);

test("upgrade to a build with other map layouts: staged, filled, every program swapped, then the pins move", async () => {
  const before = pinnedMapIds();
  const buildsBefore = readdirSync(join(A.pins.path, "progs"));
  const programs = portPrograms();
  const uplinkBefore = (await api.status()).uplink;
  await A.kill("SIGTERM");
  await startWith(next.binary);
  const log = await logWith("upgrade complete: 2 map(s) replaced (stm_profiles, stm_ct)");
  expect(log).toContain("pinned maps of another layout (another build): stm_profiles, stm_ct");
  expect(log).toContain("entries of stm_ct copied");
  const after = pinnedMapIds();
  expect(after.stm_ct).not.toBe(before.stm_ct);
  expect(after.stm_profiles).not.toBe(before.stm_profiles);
  expect(after.stm_ports).toBe(before.stm_ports as number); // same layout: taken over
  for (const [k, p] of Object.entries(portPrograms())) expect(p.id).not.toBe(programs[k]?.id);
  expectPortsOnPinnedMaps();
  expect(pinnedCtSize()).toBe(300000);
  expect((await api.reconcile()).changes).toEqual([]);
  // The new build's programs are pinned once its maps moved in; the old build's pins went.
  expect(readdirSync(join(A.pins.path, "progs"))).toHaveLength(1);
  expect(readdirSync(join(A.pins.path, "progs"))).not.toEqual(buildsBefore);
  // status checks every port's and the uplink's programs are this build's, on its maps.
  const st = await api.status();
  expect(st.uplink?.state).toBe("ok");
  expect(st.uplink?.progId).not.toBe(uplinkBefore?.progId);
  expect(st.health.status).toBe("ok");
}, 60_000);

test("a build whose load fails: the agent stops with the loader's reason, pins and programs stay as they were", async () => {
  const pins = pinnedMapIds();
  const programs = portPrograms();
  await A.kill("SIGTERM");
  const r = run([
    "timeout",
    "20",
    "nsenter",
    `--net=${A.ns.path}`,
    broken.binary,
    "agent",
    ...A.localFlags,
    "--api-socket",
    A.sock,
  ]);
  expect(r.code).not.toBe(0);
  expect(r.code).not.toBe(124);
  expect(r.stderr + r.stdout).toContain("load BPF object stm_port: EINVAL");
  expect(r.stderr + r.stdout).toContain("the previous build's datapath keeps running");
  expect(pinnedMapIds()).toEqual(pins);
  expect(portPrograms()).toEqual(programs);
  expect(readdirSync(A.pins.path)).not.toContain("maps-next");
  await startWith(next.binary);
  expect((await api.reconcile()).changes).toEqual([]);
  expect(portPrograms()).toEqual(programs);
}, 60_000);

test("an upgrade cut short after its first program swap is rolled forward at the next start", async () => {
  // Back to the first build, dying right after the first port's first program is swapped.
  await startToCrash("attach cls_bpf filter");
  await logWith("crash injected after kernel change");
  const staged = readdirSync(join(A.pins.path, "maps-next"));
  expect(staged.sort()).toEqual(["stm_ct", "stm_profiles"]);
  // While it is down: one port's ingress runs the first build's program on the staged
  // conntrack table, the rest the other build's; traffic keeps its policy (the streams,
  // checked at the end, flow on).
  const pinnedCt = pinnedMapIds().stm_ct as number;
  const onOld = Object.values(portPrograms()).filter((p) => !p.maps.includes(pinnedCt));
  expect(onOld).toHaveLength(1);
  await Bun.sleep(500);
  await A.start(UPLINK);
  await logWith("an upgrade was cut short: its staged maps stm_profiles, stm_ct are taken over as they are");
  expectPortsOnPinnedMaps();
  expect(pinnedCtSize()).toBe(262144);
  expect((await api.reconcile()).changes).toEqual([]);
}, 60_000);

test("an upgrade cut short while its pins move: the next start takes the staged maps over and finishes", async () => {
  await startToCrash("move pin of map stm_profiles", next.binary);
  // One pin moved, the other still staged.
  expect(readdirSync(join(A.pins.path, "maps-next"))).toEqual(["stm_ct"]);
  await startWith(next.binary);
  await logWith("its staged maps stm_ct are taken over as they are");
  expectPortsOnPinnedMaps();
  expect(pinnedCtSize()).toBe(300000);
  expect((await api.reconcile()).changes).toEqual([]);
}, 60_000);

test("an upgrade cut short, then the previous build started again: the staged maps are discarded, every port back on the pinned ones", async () => {
  // To the first build, dying after its first program swap; then the other build again.
  await startToCrash("attach cls_bpf filter");
  expect(readdirSync(join(A.pins.path, "maps-next")).sort()).toEqual(["stm_ct", "stm_profiles"]);
  await startWith(next.binary);
  const log = await logWith("staged maps of another build (an upgrade cut short) discarded: ");
  expect(
    log
      .match(/discarded: (.*)/)?.[1]
      ?.split(", ")
      .sort(),
  ).toEqual(["stm_ct", "stm_profiles"]);
  expectPortsOnPinnedMaps();
  expect((await api.reconcile()).changes).toEqual([]);
  expect((await api.status()).health.status).toBe("ok");
}, 60_000);

test("through all of it: no allowed datagram lost, no TCP connection broken, nothing denied delivered", async () => {
  await Bun.sleep(300);
  // The connections first (their echo server must outlive them): each reports and ends.
  for (const p of tcp) p.kill("SIGTERM");
  const reports = await Promise.all(
    tcp.map(async (p) => JSON.parse((await new Response(p.stdout as ReadableStream).text()).trim())),
  );
  for (const p of procs.filter((x) => !tcp.includes(x))) p.kill("SIGTERM");
  await Bun.sleep(200);
  // Every connection lived through it all: no reset, no close, every line echoed.
  expect(reports).toHaveLength(CONNECTIONS);
  for (const r of reports) {
    expect(r.error).toBeUndefined();
    expect(r.sent).toBeGreaterThan(500);
    expect(r.echoed).toBe(r.sent);
  }
  const c = counts();
  const ok = c.ok as { n: number; first: number; last: number };
  expect(ok.n).toBeGreaterThan(1000);
  expect(ok.last - ok.first + 1 - ok.n).toBe(0);
  expect({ deny: c.deny?.n ?? 0, spoof: c.spoof?.n ?? 0, xnet: c.xnet?.n ?? 0 }).toEqual({
    deny: 0,
    spoof: 0,
    xnet: 0,
  });
}, 60_000);
