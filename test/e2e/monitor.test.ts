/** `monitor` against a real agent and real traffic: a spoofed frame shows up within a second
 * with its reason, port and headers; a rule marked `log` and a new flow show up with the rule;
 * --drops and --endpoint filter; the datapath's pace holds a flood back and the monitor says
 * how much; one monitor at a time; stopping gives the lease back (no events are produced with
 * nobody listening). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { TestAgent } from "../helpers/agent";
import { BINARY, BUN, Netns, ROOT, run } from "../helpers/netns";

const PROBE = join(ROOT, "test/helpers/probe.ts");
let A: TestAgent;
let nsA: Netns;
let nsB: Netns;
let a: { ip: string; mac: string };
let b: { ip: string };
let logRule: number;
let server: Subprocess | undefined;

interface Line {
  at: number;
  ev: any;
}

/** A running monitor: its JSON lines with the time each arrived. */
class Monitor {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  readonly lines: Line[] = [];
  #reading: Promise<void>;

  /** `paths`: the pin root and state directory as flags, or (false) found through --api-socket. */
  constructor(args: string[], paths = true) {
    this.proc = Bun.spawn(
      [
        "nsenter",
        `--net=${A.ns.path}`,
        BINARY,
        "monitor",
        "-o",
        "json",
        ...(paths ? A.localFlags : ["--api-socket", A.sock]),
        ...args,
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    const out = this.proc.stdout;
    this.#reading = (async () => {
      const dec = new TextDecoder();
      let buf = "";
      for await (const chunk of out) {
        buf += dec.decode(chunk);
        let i = buf.indexOf("\n");
        while (i >= 0) {
          this.lines.push({ at: Date.now(), ev: JSON.parse(buf.slice(0, i)) });
          buf = buf.slice(i + 1);
          i = buf.indexOf("\n");
        }
      }
    })();
  }

  async waitFor(pred: (e: any) => boolean, ms = 3000): Promise<Line | undefined> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const l = this.lines.find((x) => pred(x.ev));
      if (l) return l;
      await Bun.sleep(20);
    }
    return undefined;
  }

  async stop(): Promise<{ code: number; stderr: string }> {
    this.proc.kill("SIGINT");
    const code = await this.proc.exited;
    await this.#reading;
    return { code, stderr: await new Response(this.proc.stderr).text() };
  }
}

const SPOOF = "10.64.0.77";

beforeAll(async () => {
  A = new TestAgent("mon");
  nsA = new Netns("mona");
  nsB = new Netns("monb");
  await A.start();
  A.json("network", "create", "--name", "mnet", "--cidr", "10.64.0.0/24", "--gateway", "10.64.0.1");
  a = A.json("network", "attach", "mnet", "--name", "a", "--netns", nsA.name, "--configure");
  b = A.json("network", "attach", "mnet", "--name", "b", "--netns", nsB.name, "--configure");
  server = Bun.spawn(["ip", "netns", "exec", nsB.name, BUN, PROBE, "serve", "8080"], {
    stdout: "ignore",
    stderr: "ignore",
  });
  A.json("firewall", "default", "mnet", "deny");
  logRule = A.json(
    "firewall",
    "rule",
    "add",
    "mnet",
    "--priority",
    "10",
    "--proto",
    "tcp",
    "--dport",
    "8080",
    "--action",
    "allow",
    "--log",
  ).id;
  A.json("firewall", "rule", "add", "mnet", "--priority", "20", "--proto", "icmp", "--action", "allow");
  nsA.execOk(["ip", "addr", "add", `${SPOOF}/32`, "dev", "eth0"]);
  // Let a's neighbour entry for b be settled, so spoofed packets are not held up by ARP.
  nsA.exec(["ping", "-c", "1", "-W", "1", b.ip]);
  await Bun.sleep(300);
}, 60_000);

afterAll(() => {
  server?.kill("SIGKILL");
  A?.destroy();
  nsA?.destroy();
  nsB?.destroy();
});

test("a spoofed frame shows up within a second, with reason, port and headers", async () => {
  const m = new Monitor(["--drops"]);
  try {
    await Bun.sleep(400); // the lease is taken at start
    const sent = Date.now();
    nsA.exec([BUN, PROBE, "udp", b.ip, "9999", "--from", SPOOF, "--sport", "5353", "--timeout", "300"]);
    const l = await m.waitFor((e) => e.reason === "ip4-spoof");
    expect(l).toBeDefined();
    expect((l as Line).at - sent).toBeLessThan(1000 + 400); // the probe itself takes ~300 ms to start
    expect((l as Line).ev).toMatchObject({
      kind: "drop",
      endpoint: "a",
      network: "mnet",
      hook: "tc-ingress",
      packet: { src: SPOOF, dst: b.ip, proto: "udp", sport: 5353, dport: 9999, srcMac: a.mac },
    });
    // --drops: the log rule's hit is not shown.
    nsA.exec([BUN, PROBE, "tcp", b.ip, "8080"]);
    await Bun.sleep(500);
    expect(m.lines.filter((x) => x.ev.kind === "log")).toEqual([]);
  } finally {
    const r = await m.stop();
    expect(r.code).toBe(0);
  }
});

test("log hits and new flows carry the rule that decided", async () => {
  const m = new Monitor(["--flows"]);
  try {
    await Bun.sleep(400);
    const r = JSON.parse(nsA.execOk([BUN, PROBE, "tcp", b.ip, "8080", "--sport", "47001"]).trim());
    expect(r).toEqual({ ok: true });
    const log = await m.waitFor((e) => e.kind === "log" && e.packet.sport === 47001);
    expect(log?.ev).toMatchObject({
      kind: "log",
      action: "allow",
      ruleId: logRule,
      endpoint: "a",
      direction: "egress",
      packet: { dst: b.ip, dport: 8080, proto: "tcp" },
    });
    const flow = await m.waitFor((e) => e.kind === "flow" && e.packet.sport === 47001 && e.endpoint === "b");
    expect(flow?.ev).toMatchObject({ kind: "flow", ruleId: logRule, direction: "ingress" });
    // A second monitor is refused while this one reads.
    const second = A.local(["monitor", "--duration", "1"]);
    expect(second.code).toBe(2);
    expect(second.stderr).toContain("another monitor");
  } finally {
    await m.stop();
  }
});

test("--api-socket alone: the monitor asks that agent for its pin root and state", async () => {
  const m = new Monitor(["--drops"], false);
  try {
    await Bun.sleep(400);
    nsA.exec([BUN, PROBE, "udp", b.ip, "9999", "--from", SPOOF, "--timeout", "200"]);
    const hit = await m.waitFor((e) => e.kind === "drop" && e.packet.src === SPOOF);
    expect(hit?.ev).toMatchObject({ endpoint: "a", network: "mnet", reason: "ip4-spoof" });
  } finally {
    const r = await m.stop();
    expect(r.stderr).not.toContain("no Stratum datapath");
  }
});

test("--endpoint shows that port's events only", async () => {
  const m = new Monitor(["--endpoint", "b"]);
  try {
    await Bun.sleep(400);
    nsA.exec([BUN, PROBE, "udp", b.ip, "9999", "--from", SPOOF, "--timeout", "200"]); // dropped at a
    nsA.exec([BUN, PROBE, "tcp", b.ip, "8080"]); // logged at a (egress) and at b (ingress)
    await m.waitFor((e) => e.kind === "log" && e.endpoint === "b");
    await Bun.sleep(300);
    const eps = new Set(m.lines.filter((x) => x.ev.kind !== "lost").map((x) => x.ev.endpoint));
    expect([...eps]).toEqual(["b"]);
  } finally {
    await m.stop();
  }
});

test("the datapath paces a flood of drops and the monitor counts what it held back", async () => {
  const m = new Monitor(["--drops", "--rate", "5", "--burst", "5"]);
  try {
    await Bun.sleep(400);
    nsA.exec(["ping", "-I", SPOOF, "-c", "300", "-i", "0.002", "-W", "1", b.ip]);
    await Bun.sleep(1300); // a renewal reports the counts
  } finally {
    await m.stop();
  }
  const drops = m.lines.filter((x) => x.ev.kind === "drop");
  const lost = m.lines.filter((x) => x.ev.kind === "lost").at(-1)?.ev;
  // 300 drops in ~0.6 s: each CPU lets a burst of 5 and 5 a second through, the rest is counted.
  expect(drops.length).toBeGreaterThanOrEqual(5);
  expect(drops.length).toBeLessThanOrEqual(2 * (5 + 5 * 3));
  expect(lost.paced).toBeGreaterThanOrEqual(300 - drops.length - 5);
}, 20_000);

test("stopping gives the lease back: with nobody listening, nothing is emitted", async () => {
  const stats = () =>
    JSON.parse(run(["bpftool", "-j", "map", "dump", "pinned", `${A.pins.path}/maps/stm_mon_stats`]).stdout).map(
      (e: any) => e.formatted.values.reduce((s: number, v: any) => s + Number(v.value), 0),
    );
  const before = stats();
  const spoofDrops = () => A.json("endpoint", "show", "a").drops["ip4-spoof"];
  const dropsBefore = spoofDrops();
  nsA.exec(["ping", "-I", SPOOF, "-c", "20", "-i", "0.01", "-W", "1", b.ip]);
  expect(spoofDrops() - dropsBefore).toBeGreaterThanOrEqual(20); // the drops happened ...
  expect(stats()).toEqual(before); // ... and no event was emitted, paced or lost
  expect(before.length).toBe(3);
  const cfg = JSON.parse(run(["bpftool", "-j", "map", "dump", "pinned", `${A.pins.path}/maps/stm_mon_cfg`]).stdout);
  expect(cfg[0].formatted.value.kinds).toBe(0);
});
